//! Fixtures shared by the operator integration tests: a control plane of the
//! test's own with the CRD installed and regcred running against it
//! ([`Harness`]), one shared by the tests of a binary ([`shared::Tenant`]),
//! and the helpers every such test writes with.
#![allow(dead_code)] // each test binary uses a different subset

mod cluster;
mod confine;
mod credentials;
mod freeze;
mod metrics;
pub mod node_bed;
pub mod shared;

#[allow(unused_imports)] // each test binary uses a different subset
pub use {cluster::Cluster, confine::*, credentials::*, freeze::*, metrics::*};

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use regcred::api::RegistryCredential;
use regcred_testenv::{ControlPlane, Operator, eventually, objects};

pub const CREDS_NS: &str = "regcred-system";
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub client: Client,
    pub operator: Operator,
    pub cp: ControlPlane,
}

impl Harness {
    /// A control plane with the CRD and the credentials namespace, and regcred running.
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// Like [`Harness::start`], with extra `regcred run` flags and environment.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let cp = Self::control_plane().await;
        let operator = start_operator_with(&cp, args, env);
        let client = cp.client().await.unwrap();
        Self { client, operator, cp }
    }

    /// Like [`Harness::start`], but regcred runs as the chart runs it: as
    /// its ServiceAccount (a real token), with exactly the chart's RBAC and
    /// its confinement policies enforced ([`confine`]). Every operator the
    /// test starts again on this control plane ([`start_operator`]) runs so too.
    pub async fn confined() -> Self {
        Self::confined_with(&[], &[]).await
    }

    /// [`Harness::confined`] with extra `regcred run` flags and environment.
    pub async fn confined_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let cp = Self::control_plane().await;
        confine(&cp, &[]).await;
        let operator = start_operator_with(&cp, args, env);
        let client = cp.client().await.unwrap();
        Self { client, operator, cp }
    }

    /// The control plane alone (CRD installed, credentials namespace created).
    pub async fn control_plane() -> ControlPlane {
        let cp = ControlPlane::start().await.expect("test control plane");
        prepare(&cp).await;
        cp
    }
}

/// Install the CRD and create the credentials namespace: what regcred needs
/// before it starts.
pub async fn prepare(cp: &ControlPlane) {
    cp.install_crd(&regcred::api::crd_yaml()).await.expect("CRD installs");
    let client = cp.client().await.unwrap();
    create_namespace(&client, CREDS_NS, &[]).await;
}

impl Cluster for Harness {
    fn client(&self) -> &Client {
        &self.client
    }
}

pub fn start_operator(cp: &ControlPlane) -> Operator {
    start_operator_with(cp, &[], &[])
}

/// The operator on `cp`, with extra flags and environment: as regcred's
/// ServiceAccount once [`confine`] has run on `cp`, as admin before.
pub fn start_operator_with(cp: &ControlPlane, args: &[&str], env: &[(&str, &str)]) -> Operator {
    let chart_args = operator_chart_args(cp);
    let args: Vec<&str> = chart_args
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    start_operator_as(&operator_kubeconfig(cp), &args, env)
}

/// The operator with `kubeconfig` (another user, a path through a proxy).
pub fn start_operator_as(kubeconfig: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Operator {
    // No cloud metadata services here: the SDKs must not wait for them.
    let mut env = env.to_vec();
    env.push(("AWS_EC2_METADATA_DISABLED", "true"));
    Operator::start_with_kubeconfig(
        std::path::Path::new(env!("CARGO_BIN_EXE_regcred")),
        kubeconfig,
        CREDS_NS,
        args,
        &env,
    )
    .expect("operator starts")
}

/// The test workload (a static binary that runs until stopped) as image
/// `repository:1` in `registry`.
pub async fn app_image(registry: &regcred_testenv::registry::Registry, repository: &str) {
    let app = regcred_testenv::images::app().expect("static app binary");
    registry
        .push_binary_image(repository, "1", &app)
        .await
        .expect("pushing the app image");
}

/// A Secret with arbitrary string data in the credentials namespace.
pub async fn put_secret(client: &Client, name: &str, data: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), CREDS_NS);
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&objects::secret(name, data)),
    )
    .await
    .expect("secret written");
}

/// A projected ServiceAccount token from the test apiserver's TokenRequest
/// API, written to a file as the kubelet would (IRSA / workload identity).
pub async fn projected_token_file(client: &Client, dir: &std::path::Path, audience: &str) -> std::path::PathBuf {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), CREDS_NS);
    if sas.get_opt("regcred").await.unwrap().is_none() {
        create_service_account(client, CREDS_NS, "regcred", &[]).await;
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.into()],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request("regcred", &PostParams::default(), &request)
        .await
        .expect("TokenRequest served by the test apiserver");
    let jwt = token.status.expect("token issued").token;
    let path = dir.join(format!("token-{}", audience.replace(['/', ':'], "_")));
    std::fs::write(&path, jwt).unwrap();
    path
}

/// AWS access keys in the Secret `aws-creds` (moto accepts any); a new
/// `secret_access_key` is a changed source, which re-mints at once.
pub async fn put_aws_keys(client: &Client, secret_access_key: &str) {
    put_secret(
        client,
        "aws-creds",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", secret_access_key),
        ],
    )
    .await;
}

/// JSON-merge-patch a RegistryCredential, as `kubectl patch --type merge` would.
pub async fn patch_rc(client: &Client, name: &str, patch: serde_json::Value) {
    Api::<RegistryCredential>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("RegistryCredential patched");
}

/// Wait for an Event with `reason` (and, if given, type `Warning`/`Normal`).
pub async fn wait_event(client: &Client, reason: &str, type_: Option<&str>) {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::all(client.clone());
    let what = format!("an Event {} with reason {reason}", type_.unwrap_or("of any type"));
    eventually(WAIT, &what, || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason) && type_.is_none_or(|t| e.type_.as_deref() == Some(t)))
                .then_some(())
        }
    })
    .await;
}

/// The name of the object an Event is about.
pub fn regarding(event: &k8s_openapi::api::events::v1::Event) -> Option<&str> {
    event.regarding.as_ref()?.name.as_deref()
}

/// Create a RegistryCredential from JSON.
pub async fn apply_rc(client: &Client, rc: serde_json::Value) {
    let rc: RegistryCredential = serde_json::from_value(rc).expect("valid RegistryCredential");
    Api::<RegistryCredential>::all(client.clone())
        .create(&PostParams::default(), &rc)
        .await
        .expect("RegistryCredential created");
}

pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    objects::pull_secret_names(sa)
}

pub async fn create_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Namespace {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &objects::namespace(name, labels))
        .await
        .expect("namespace created")
}

/// Set a namespace's labels (server-side apply by the test's own field manager).
pub async fn label_namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<_, _> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("namespace labelled");
}

pub async fn create_service_account(client: &Client, ns: &str, name: &str, pull: &[&str]) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &objects::service_account(name, pull))
        .await
        .expect("service account created")
}

/// A namespace with its `default` ServiceAccount, as the controller-manager would make it.
pub async fn namespace_with_default_sa(client: &Client, name: &str, labels: &[(&str, &str)]) {
    create_namespace(client, name, labels).await;
    create_service_account(client, name, "default", &[]).await;
}

/// A source Secret with username/password keys in the credentials namespace.
pub async fn put_source_secret(client: &Client, name: &str, username: &str, password: &str) {
    put_secret(client, name, &[("username", username), ("password", password)]).await;
}

/// Create RegistryCredential `hub`: the static provider for docker.io reading
/// source Secret `hub`, with `target` as JSON and pull-auth checks disabled.
pub async fn create_hub_rc(client: &Client, target: serde_json::Value) {
    apply_rc(client, static_rc("hub", "docker.io", "hub", target)).await;
}

pub async fn delete_rc(client: &Client, name: &str) {
    Api::<RegistryCredential>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("RegistryCredential deleted");
}

/// The `.dockerconfigjson` of a Secret, parsed.
pub fn docker_config(secret: &Secret) -> serde_json::Value {
    let bytes = &secret.data.as_ref().expect("data")[".dockerconfigjson"].0;
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// The password stored for `host` in a managed Secret.
pub fn password_for(secret: &Secret, host: &str) -> Option<String> {
    docker_config(secret)["auths"][host]["password"]
        .as_str()
        .map(String::from)
}

pub fn is_condition(status: &regcred::api::RegistryCredentialStatus, type_: &str, value: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_ && c.status == value)
}

pub fn condition<'a>(
    status: &'a regcred::api::RegistryCredentialStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("condition {type_} missing in {status:?}"))
}

/// resourceVersions of every Secret and ServiceAccount in `namespaces`, plus the RC.
pub async fn resource_versions(h: &impl Cluster, namespaces: &[String], rc: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for s in h.secrets(ns).list(&Default::default()).await.unwrap() {
            out.insert(format!("secret/{ns}/{}", s.name_any()), s.resource_version().unwrap());
        }
        for sa in h.sas(ns).list(&Default::default()).await.unwrap() {
            out.insert(format!("sa/{ns}/{}", sa.name_any()), sa.resource_version().unwrap());
        }
    }
    let rc = h.rcs().get(rc).await.unwrap();
    out.insert(format!("rc/{}", rc.name_any()), rc.resource_version().unwrap());
    out
}

/// A password nobody would write by accident, to grep for.
pub fn canary(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("canary-{tag}-{nanos:09}-do-not-log")
}

impl Drop for Harness {
    /// A failing test shows what the operator said.
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail("last operator log lines", &self.operator, 60);
        }
    }
}

/// The last `lines` lines `operator` logged, under `title` (for a failing test).
pub fn print_log_tail(title: &str, operator: &Operator, lines: usize) {
    let logs = operator.logs();
    let tail: Vec<&str> = logs.lines().rev().take(lines).collect();
    eprintln!("--- {title} ---");
    for line in tail.iter().rev() {
        eprintln!("{line}");
    }
}

/// The flags of an operator serving the admission webhook on 127.0.0.1:`port`
/// (HTTPS, the certificate regcred makes for 127.0.0.1) and keeping the
/// caBundle of the MutatingWebhookConfiguration `config`. The certificate
/// Secret lives in the credentials namespace (`POD_NAMESPACE`).
pub fn admission_args(port: u16, config: &str) -> Vec<String> {
    vec![
        format!("--admission-addr=127.0.0.1:{port}"),
        "--admission-dns-names=127.0.0.1".to_string(),
        format!("--admission-webhook-config={config}"),
        format!("--admission-cert-secret={config}-tls"),
    ]
}

/// The chart's MutatingWebhookConfiguration (rendered by helm from
/// charts/regcred, so tests call the webhook exactly as the chart
/// configures it), named `name` and calling 127.0.0.1:`port` by URL, since
/// these control planes have no Service routing. `also` adds namespace
/// selector expressions (a test bed's opt-in label). Waits until regcred
/// has patched its caBundle.
pub async fn install_admission_webhook(client: &Client, name: &str, port: u16, also: &[serde_json::Value]) {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let objects = render_chart(&[]);
    let [config] = of_kind(&objects, "MutatingWebhookConfiguration")[..] else {
        panic!("the chart renders one MutatingWebhookConfiguration")
    };
    let mut config = config.clone();
    config["metadata"] = serde_json::json!({"name": name});
    for webhook in config["webhooks"].as_array_mut().expect("webhooks") {
        webhook["clientConfig"] = serde_json::json!({"url": format!("https://127.0.0.1:{port}/mutate-pods")});
        let expressions = webhook["namespaceSelector"]["matchExpressions"]
            .as_array_mut()
            .expect("the chart selects namespaces");
        expressions.extend(also.iter().cloned());
    }
    let config: MutatingWebhookConfiguration = serde_json::from_value(config).expect("a MutatingWebhookConfiguration");
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.create(&PostParams::default(), &config)
        .await
        .expect("MutatingWebhookConfiguration created");
    eventually(WAIT, &format!("regcred patches the caBundle of {name}"), || {
        let api = api.clone();
        async move {
            let config = api.get(name).await.ok()?;
            let webhooks = config.webhooks?;
            webhooks
                .iter()
                .all(|w| w.client_config.ca_bundle.is_some())
                .then_some(())
        }
    })
    .await;
}
