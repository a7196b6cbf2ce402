//! Objects for in-process tests of the pipeline: the world a reconcile
//! sees, without a control plane, and one stand-in for the API server's HTTP
//! side ([`Scenario`]) for fast tests of the steps' request sequences. The
//! stand-in checks what regcred sends, not what the API server would do with
//! it: behaviour against the real API server is tested under tests/.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::channel::oneshot;
use http::{Method, Request, Response};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use serde::Serialize;
use serde_json::Value;
use tower_test::mock;

use super::cond::Cond;
use super::credential::{self, Current, Fingerprint};
use super::fanout::FanOut;
use super::pull_auth;
use crate::api::{
    FailedNamespace, Provider, RegistryCredential, RegistryCredentialSpec, StaticProvider, StaticSecretRef,
};
use crate::cache::{Kept, KeptNamespace};
use crate::dockerconfig::{self, RegistryAuth};
use crate::providers::Credential;
use crate::redact::Sensitive;

pub fn t(s: &str) -> Timestamp {
    s.parse().expect("RFC 3339")
}

/// RegistryCredential `hub`: static, docker.io, source Secret `hub`, uid `uid-hub`.
pub fn rc() -> RegistryCredential {
    let mut rc = RegistryCredential::new(
        "hub",
        RegistryCredentialSpec {
            provider: Provider {
                static_: Some(StaticProvider {
                    registry: "docker.io".into(),
                    secret_ref: StaticSecretRef {
                        name: "hub".into(),
                        username_key: "username".into(),
                        password_key: "password".into(),
                    },
                }),
                ..Default::default()
            },
            target: Default::default(),
            renew_before: None,
            health_check: Default::default(),
        },
    );
    rc.metadata.uid = Some("uid-hub".into());
    rc.metadata.generation = Some(1);
    rc
}

pub fn namespaces(names: &[&str]) -> Vec<Arc<KeptNamespace>> {
    names
        .iter()
        .map(|n| {
            Arc::new(KeptNamespace::keep(&Namespace {
                metadata: ObjectMeta {
                    name: Some(n.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            }))
        })
        .collect()
}

pub fn service_account(ns: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A held static credential for docker.io.
pub fn current(password: &str, issued: Timestamp) -> Current {
    let auths = vec![RegistryAuth {
        registry: "docker.io".into(),
        username: "me".into(),
        password: Sensitive::new(password.into()),
    }];
    let config_json = dockerconfig::encode(&auths);
    Current {
        digest: credential::credential_digest("uid-hub", &config_json),
        credential: Credential { auths, not_after: None },
        config_json,
        fingerprint: Fingerprint::parse("inputs"),
        issued,
        schedule: None,
    }
}

/// The credential step's outcome when `current` is held and nothing was minted.
pub fn reused(current: Option<Current>) -> credential::Step {
    credential::Step {
        issued: match &current {
            Some(_) => Cond::new("True", "Issued", "Credential issued."),
            None => Cond::new("False", "SourceSecretMissing", "source Secret missing"),
        },
        current,
        minted_now: false,
        failed_attempts: 0,
        last_failure_time: None,
        next_attempt: None,
        notes: Vec::new(),
    }
}

pub fn fanout(targeted: u32, failed: &[(&str, &str)]) -> FanOut {
    FanOut {
        targeted,
        synced: targeted - failed.len() as u32,
        failed: failed
            .iter()
            .map(|(ns, reason)| FailedNamespace {
                namespace: ns.to_string(),
                reason: reason.to_string(),
                message: format!("{ns}: {reason}"),
            })
            .collect(),
        sa_patched: targeted - failed.len() as u32,
        ..Default::default()
    }
}

pub fn not_checked() -> pull_auth::Step {
    pull_auth::Step {
        pull_auth: None,
        next_check: None,
    }
}

/// A Context over empty caches whose client talks to `client` (a
/// [`Scenario`]'s stand-in). The caches are public fields: fill them with
/// [`crate::cache::Cache::of`] and [`source_secrets`].
pub fn context(client: kube::Client) -> super::Context {
    let reporter = kube::runtime::events::Reporter {
        controller: "regcred".into(),
        instance: None,
    };
    super::Context::new(
        client.clone(),
        "regcred-system".into(),
        super::Caches {
            namespaces: Default::default(),
            service_accounts: Default::default(),
            managed_secrets: Default::default(),
            source_secrets: kube::runtime::reflector::store().0,
            credentials: kube::runtime::reflector::store().0,
            touched: Default::default(),
        },
        super::events::Publisher::new(client, reporter),
        reqwest::Client::new(),
        Default::default(),
    )
}

/// A reflector store holding `secrets`, as the source-Secret watch fills it.
pub fn source_secrets(secrets: impl IntoIterator<Item = Secret>) -> kube::runtime::reflector::Store<Secret> {
    use kube::runtime::watcher::Event;
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for s in secrets {
        writer.apply_watcher_event(&Event::InitApply(s));
    }
    writer.apply_watcher_event(&Event::InitDone);
    store
}

/// The static source Secret `regcred-system/hub` of [`rc`].
pub fn source_secret(username: &str, password: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("hub".into()),
            namespace: Some("regcred-system".into()),
            ..Default::default()
        },
        data: Some(
            [("username", username), ("password", password)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

// The API server stand-in.

type Check = Box<dyn FnOnce(&Value) + Send>;
type Respond = Box<dyn FnOnce(&Value) -> (u16, Value) + Send>;

/// One request a [`Scenario`] expects, and the answer it gets.
pub struct Expect {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    check: Option<Check>,
    respond: Option<Respond>,
}

impl Expect {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            check: None,
            respond: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// The query string must carry `key=value` (compared as sent, URL-encoded).
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Assertions on the request's JSON body (`null` when it has none).
    pub fn body(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }

    /// Answer with `status` and `body`.
    pub fn reply(self, status: u16, body: impl Serialize) -> Self {
        let body = serde_json::to_value(body).expect("reply serializes");
        self.reply_with(move |_| (status, body))
    }

    /// Answer with what `respond` makes of the request's JSON body.
    pub fn reply_with(mut self, respond: impl FnOnce(&Value) -> (u16, Value) + Send + 'static) -> Self {
        self.respond = Some(Box::new(respond));
        self
    }

    fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match query.is_empty() {
            true => format!("{} {}", self.method, self.path),
            false => format!("{} {}?…{}", self.method, self.path, query.join("&")),
        }
    }
}

/// A request the stand-in served.
#[derive(Clone, Debug)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Content-Type` header (the patch flavour), empty without one.
    pub content_type: String,
    pub body: Value,
}

impl Served {
    fn describe(&self) -> String {
        match self.query.is_empty() {
            true => format!("{} {}", self.method, self.path),
            false => format!("{} {}?{}", self.method, self.path, self.query),
        }
    }
}

/// What the API server is expected to see, in order, with its answers: a
/// stand-in serves them on a task and fails the test on any other request,
/// or when [`Server::done`] finds expectations left unserved.
#[derive(Default)]
pub struct Scenario {
    expected: VecDeque<Expect>,
}

impl Scenario {
    /// A scenario expecting no request at all.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn then(mut self, expect: Expect) -> Self {
        self.expected.push_back(expect);
        self
    }

    /// A client whose requests this scenario answers, and the running stand-in.
    pub fn serve(self) -> (kube::Client, Server) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(handle, stopped));
        (kube::Client::new(service, "default"), Server { stop, task })
    }

    async fn run(
        mut self,
        mut handle: mock::Handle<Request<Body>, Response<Body>>,
        mut stopped: oneshot::Receiver<()>,
    ) -> Vec<Served> {
        let mut served: Vec<Served> = Vec::new();
        loop {
            // Requests already sent are answered before a stop is noticed.
            let (request, send) = tokio::select! {
                biased;
                next = handle.next_request() => match next {
                    Some(next) => next,
                    None => break,
                },
                _ = &mut stopped => break,
            };
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = match bytes.is_empty() {
                true => Value::Null,
                false => serde_json::from_slice(&bytes).expect("request body is JSON"),
            };
            let query = parts.uri.query().unwrap_or_default().to_string();
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let seen = Served {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query,
                content_type,
                body,
            };
            let Some(expect) = self.expected.pop_front() else {
                panic!(
                    "unexpected request {}: the scenario expected no more (served: {})",
                    seen.describe(),
                    list(&served)
                );
            };
            let pairs: Vec<&str> = seen.query.split('&').collect();
            let query_matches = expect
                .query
                .iter()
                .all(|(k, v)| pairs.contains(&format!("{k}={v}").as_str()));
            if parts.method != expect.method || seen.path != expect.path || !query_matches {
                panic!(
                    "unexpected request {}: the scenario expected {} next (served: {})",
                    seen.describe(),
                    expect.describe(),
                    list(&served)
                );
            }
            if let Some(check) = expect.check {
                check(&seen.body);
            }
            let respond = expect
                .respond
                .unwrap_or_else(|| panic!("the scenario gives no reply to {}", seen.path));
            let (status, reply) = respond(&seen.body);
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
                    .expect("response"),
            );
            served.push(seen);
        }
        if !self.expected.is_empty() {
            let left: Vec<String> = self.expected.iter().map(Expect::describe).collect();
            panic!(
                "the scenario's requests were not all made: {} never came (served: {})",
                left.join(", "),
                list(&served)
            );
        }
        served
    }
}

fn list(served: &[Served]) -> String {
    let all: Vec<String> = served.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    format!("[{}]", all.join(", "))
}

/// A running [`Scenario`].
pub struct Server {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Served>>,
}

impl Server {
    /// Stop serving once the requests already sent are answered: the
    /// requests served, in order. Fails the test if a request was not the
    /// one expected, or an expected one never came.
    pub async fn done(self) -> Vec<Served> {
        let _ = self.stop.send(());
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await {
            Ok(Ok(served)) => served,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("the API server stand-in failed: {e}"),
            Err(_) => panic!("the API server stand-in did not stop within 5 s"),
        }
    }
}

/// A `Status` body as the API server sends with an error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

/// The stand-in's own checks: a test built on it fails when the requests differ.
mod checks {
    use super::{Expect, Scenario};
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;

    #[tokio::test]
    #[should_panic(
        expected = "unexpected request GET /api/v1/namespaces/a/secrets/x: the scenario expected GET \
                               /api/v1/namespaces/a/secrets/y next"
    )]
    async fn a_request_other_than_the_next_expected_fails_the_test() {
        let (client, server) = Scenario::new()
            .then(Expect::get("/api/v1/namespaces/a/secrets/y").reply(200, Secret::default()))
            .serve();
        let _ = Api::<Secret>::namespaced(client, "a").get("x").await;
        server.done().await;
    }

    #[tokio::test]
    #[should_panic(expected = "unexpected request GET /api/v1/namespaces/a/secrets/x: the scenario expected no more")]
    async fn a_request_beyond_the_scenario_fails_the_test() {
        let (client, server) = Scenario::new().serve();
        let _ = Api::<Secret>::namespaced(client, "a").get("x").await;
        server.done().await;
    }

    #[tokio::test]
    #[should_panic(expected = "not all made: DELETE /api/v1/namespaces/a/secrets/x?…dryRun=All never came")]
    async fn an_expected_request_that_never_comes_fails_the_test() {
        let (_client, server) = Scenario::new()
            .then(Expect::delete("/api/v1/namespaces/a/secrets/x").query("dryRun", "All"))
            .serve();
        server.done().await;
    }
}
