//! AWS ECR and STS: PyPI moto's `moto_server` behind a counting,
//! fault-injecting reverse proxy.
//!
//! The proxy forwards method, path, query, headers (Host included) and body
//! verbatim, so a SigV4 signature computed for the proxy's URL stays valid.
//! moto does not check signatures; it picks the service from the credential
//! scope of the `Authorization` header (or, unsigned, from the STS `Action`).
//!
//! What moto answers, as regcred sees it: `GetAuthorizationToken` returns the
//! token `base64("AWS:123456789012-auth-token")`, `proxyEndpoint`
//! `https://123456789012.dkr.ecr.<region>.amazonaws.com` and an `expiresAt`
//! fixed at 2015-01-01T00:00:00Z (1420070400), so the operator's expiry clamp
//! is always exercised. `AssumeRole` and `AssumeRoleWithWebIdentity` succeed
//! without validating the role or the web identity token.
//!
//! Credentials from `AssumeRole*` belong to the role's account in moto 5.2
//! (it maps the `ASIA…` access key it issued back to the role), so ECR's
//! token and `proxyEndpoint` are per *account*: `<account>-auth-token`, the
//! same for two roles of one account (checked against moto_server 5.2.5).
//! Real ECR passwords differ per caller, and a tenant test needs two roles to
//! get two passwords, so for credentials issued by `AssumeRoleWithWebIdentity`
//! the proxy rewrites every `authorizationToken` of the ECR answer to
//! `base64("AWS:" + ecr_password_for_role(role))`, that is
//! `base64("AWS:<account>-<role name>-auth-token")`; it learns which role an
//! access key belongs to from the `<AccessKeyId>` of the STS answer as it
//! passes through. `proxyEndpoint` and `expiresAt` stay moto's (per account,
//! 2015). Static keys and `AssumeRole` credentials get moto's answer untouched.
//!
//! Web identity, beyond moto: every `AssumeRoleWithWebIdentity` is recorded
//! ([`Moto::web_identity_calls`], the token's claims only, never the token);
//! [`Moto::deny_role`] refuses a role as a trust policy does (403
//! `AccessDenied`), and [`Moto::throttle_web_identity`] answers the next calls
//! 400 `Throttling` as STS does past its rate limit. Both answer with STS's XML
//! error document, so the SDK sees a modelled error code.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Fault, Server, Switchboard, jwt_claims};
use crate::free_port;
use crate::process::Process;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const ECR_TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const ECR: &str = "ecr";
const STS: &str = "sts";
const WEB_IDENTITY: &str = "AssumeRoleWithWebIdentity";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A moto server for this test, reached through [`Moto::url`]. Dropping it
/// stops the proxy and kills moto.
pub struct Moto {
    // Field order is drop order: the proxy goes before the server it fronts.
    proxy: Server,
    board: Switchboard,
    web_identity: Arc<Mutex<WebIdentity>>,
    moto: Process,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Start `moto_server` (from `REGCRED_MOTO_SERVER`, else the workspace's
    /// `.venv`) and the proxy in front of it; returns once moto answers.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = moto_server()?;
        let dir = crate::scratch::dir("moto")?;
        let port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut moto = Process::spawn("moto_server", cmd, &dir.path().join("moto.log"))
            .with_context(|| format!("starting {}", binary.display()))?;
        let upstream = format!("http://127.0.0.1:{port}");
        wait_ready(&mut moto, &upstream).await?;

        let board = Switchboard::default();
        let web_identity = Arc::default();
        let proxy = Proxy {
            // The proxy's own client: pooled connections belong to the
            // runtime that opened them, which is the proxy thread's.
            client: Client::builder(TokioExecutor::new()).build_http(),
            upstream,
            board: board.clone(),
            web_identity: Arc::clone(&web_identity),
        };
        let proxy = Server::start("moto-proxy", Router::new().fallback(forward).with_state(proxy), None)?;
        Ok(Self {
            proxy,
            board,
            web_identity,
            moto,
            _dir: dir,
        })
    }

    /// The endpoint to give the AWS SDK (`AWS_ENDPOINT_URL`, or the spec's
    /// `endpointUrl`), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy.addr())
    }

    /// ECR `GetAuthorizationToken` requests received, faulted ones included.
    pub fn ecr_token_calls(&self) -> usize {
        self.board.calls("ecr:GetAuthorizationToken")
    }

    /// STS requests with this `Action` (`AssumeRole`,
    /// `AssumeRoleWithWebIdentity`, ...) received, faulted ones included.
    pub fn sts_calls(&self, action: &str) -> usize {
        self.board.calls(&format!("sts:{action}"))
    }

    /// How every ECR request is answered from now on (STS is unaffected).
    pub fn set_ecr_fault(&self, fault: Fault) {
        self.board.set_fault(ECR, fault);
    }

    /// How every STS request is answered from now on (ECR is unaffected).
    pub fn set_sts_fault(&self, fault: Fault) {
        self.board.set_fault(STS, fault);
    }

    /// Every `AssumeRoleWithWebIdentity` received, in order, denied,
    /// throttled and faulted ones included.
    pub fn web_identity_calls(&self) -> Vec<WebIdentityCall> {
        lock(&self.web_identity).calls.clone()
    }

    /// From now on, `AssumeRoleWithWebIdentity` for `role_arn` is refused as
    /// STS refuses a web identity the role's trust policy does not admit:
    /// HTTP 403, `Sender`/`AccessDenied`, "Not authorized to perform
    /// sts:AssumeRoleWithWebIdentity". Other roles still reach moto.
    pub fn deny_role(&self, role_arn: &str) {
        lock(&self.web_identity).denied.insert(role_arn.to_string());
    }

    /// Lift [`Moto::deny_role`] for `role_arn`.
    pub fn allow_role(&self, role_arn: &str) {
        lock(&self.web_identity).denied.remove(role_arn);
    }

    /// Answer the next `times` `AssumeRoleWithWebIdentity` calls (any role)
    /// as STS does past its rate limit: HTTP 400, `Sender`/`Throttling`,
    /// "Rate exceeded". The AWS SDK's standard retry treats `Throttling` as
    /// retryable, so one SDK call may use up several. Replaces any count left.
    pub fn throttle_web_identity(&self, times: usize) {
        lock(&self.web_identity).throttle = times;
    }

    /// The last `lines` lines moto logged (one line per request it served).
    pub fn log_tail(&self, lines: usize) -> String {
        self.moto.log_tail(lines)
    }
}

/// One `AssumeRoleWithWebIdentity` request as the proxy received it.
#[derive(Clone, Debug, PartialEq)]
pub struct WebIdentityCall {
    pub role_arn: String,
    pub session_name: String,
    /// The claims of the `WebIdentityToken` (`sub`, `aud`, `exp`, ...),
    /// unverified; `Null` if the token is not a JWT.
    pub claims: serde_json::Value,
}

/// The ECR password (the part after `AWS:` of the decoded
/// `authorizationToken`) the proxy answers for credentials of `role_arn`
/// obtained through `AssumeRoleWithWebIdentity`:
/// `arn:aws:iam::111111111111:role/team-a` → `111111111111-team-a-auth-token`.
/// The role name is the ARN's last path segment.
pub fn ecr_password_for_role(role_arn: &str) -> String {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let name = role_arn.rsplit(['/', ':']).next().unwrap_or_default();
    format!("{account}-{name}-auth-token")
}

/// What the proxy knows about web identity: calls, refusals, and which
/// access key moto issued for which role.
#[derive(Default)]
struct WebIdentity {
    calls: Vec<WebIdentityCall>,
    denied: HashSet<String>,
    throttle: usize,
    roles_by_access_key: HashMap<String, String>,
}

fn lock(state: &Mutex<WebIdentity>) -> MutexGuard<'_, WebIdentity> {
    // A panicking handler cannot leave the maps half-updated.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How the proxy treats one request beyond forwarding it.
enum Intercept {
    None,
    /// An `AssumeRoleWithWebIdentity` for this role: learn its access key.
    WebIdentity(String),
    /// An ECR `GetAuthorizationToken` by credentials of this role.
    EcrToken(String),
}

impl WebIdentity {
    /// Record a web identity call; `Some` is STS's refusal to send instead.
    fn enter(&mut self, form: &HashMap<String, String>) -> (String, Option<Response>) {
        let field = |name: &str| form.get(name).cloned().unwrap_or_default();
        let role_arn = field("RoleArn");
        self.calls.push(WebIdentityCall {
            role_arn: role_arn.clone(),
            session_name: field("RoleSessionName"),
            claims: jwt_claims(&field("WebIdentityToken")).unwrap_or_default(),
        });
        let refusal = if self.throttle > 0 {
            self.throttle -= 1;
            Some(sts_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"))
        } else if self.denied.contains(&role_arn) {
            Some(sts_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            ))
        } else {
            None
        };
        (role_arn, refusal)
    }
}

/// STS's query-protocol error document.
fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = format!(
        "{:032x}",
        std::time::UNIX_EPOCH.elapsed().unwrap_or_default().as_nanos()
    );
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>{request_id}</RequestId></ErrorResponse>"
    );
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn moto_server() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("REGCRED_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
    };
    if !path.is_file() {
        bail!(
            "moto_server not found at {}: run `make tools` (hack/install-tools.sh installs moto into .venv)",
            path.display()
        );
    }
    Ok(path)
}

async fn wait_ready(moto: &mut Process, upstream: &str) -> anyhow::Result<()> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{upstream}/moto-api/").parse()?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = moto.exited() {
            bail!(
                "moto_server exited with {status} before answering:\n{}",
                moto.log_tail(20)
            );
        }
        let probe = client.request(http::Request::get(uri.clone()).body(Full::default())?);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "moto_server did not answer on {upstream} within {START_TIMEOUT:?}:\n{}",
                moto.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Clone)]
struct Proxy {
    client: HttpClient,
    upstream: String,
    board: Switchboard,
    web_identity: Arc<Mutex<WebIdentity>>,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("reading the request body: {e}")).into_response(),
    };
    let mut intercept = Intercept::None;
    if let Some((counter, endpoint)) = classify(&parts, &body) {
        let refusal;
        (intercept, refusal) = proxy.inspect(&counter, &parts, &body);
        if let Some(faulted) = proxy.board.enter(&counter, endpoint).await {
            return faulted;
        }
        if let Some(refusal) = refusal {
            return refusal;
        }
    }
    let (mut parts, body) = match proxy.send_upstream(parts, body).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    parts.headers = end_to_end(parts.headers);
    let body = match intercept {
        Intercept::None => body,
        _ if parts.status != StatusCode::OK => body,
        Intercept::WebIdentity(role_arn) => {
            if let Some(access_key) = xml_text(&body, "AccessKeyId") {
                lock(&proxy.web_identity)
                    .roles_by_access_key
                    .insert(access_key, role_arn);
            }
            body
        }
        Intercept::EcrToken(role_arn) => {
            // The length changes; hyper sets it again from the body.
            parts.headers.remove(header::CONTENT_LENGTH);
            per_role_ecr_token(&body, &role_arn)
        }
    };
    Response::from_parts(parts, body.into())
}

impl Proxy {
    /// Record what the proxy tracks of this request; `Some` is the refusal to
    /// answer instead of moto's (after the switchboard's fault, if any).
    fn inspect(&self, counter: &str, parts: &Parts, body: &[u8]) -> (Intercept, Option<Response>) {
        if counter == format!("{STS}:{WEB_IDENTITY}") {
            let query = parts.uri.query().unwrap_or_default().as_bytes();
            let mut form = super::form(query);
            form.extend(super::form(body));
            let (role_arn, refusal) = lock(&self.web_identity).enter(&form);
            return (Intercept::WebIdentity(role_arn), refusal);
        }
        if counter == format!("{ECR}:GetAuthorizationToken")
            && let Some(access_key) = access_key_id(&parts.headers)
            && let Some(role_arn) = lock(&self.web_identity).roles_by_access_key.get(access_key)
        {
            return (Intercept::EcrToken(role_arn.clone()), None);
        }
        (Intercept::None, None)
    }

    /// Forward the request verbatim; `Err` is the proxy's own error answer.
    async fn send_upstream(&self, parts: Parts, body: Bytes) -> Result<(http::response::Parts, Bytes), Response> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut upstream = http::Request::builder()
            .method(parts.method)
            .uri(format!("{}{path}", self.upstream));
        let headers = upstream.headers_mut().expect("a request builder without errors");
        *headers = end_to_end(parts.headers);
        // HTTP/2 clients send the authority as a pseudo-header, not as Host.
        if !headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, host);
        }
        let upstream = upstream
            .body(Full::new(body))
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("rebuilding the request: {e}")).into_response())?;
        let response = self
            .client
            .request(upstream)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, format!("moto_server unreachable: {e}")).into_response())?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, format!("reading moto_server's answer: {e}")).into_response())?;
        Ok((parts, body.to_bytes()))
    }
}

/// The access key id of a SigV4 `Authorization` header
/// (`... Credential=<id>/<date>/<region>/<service>/aws4_request, ...`).
fn access_key_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = value.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// The text of the first `<tag>` element of an XML document.
fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..end].to_string())
}

/// moto's `GetAuthorizationToken` answer with every token replaced by the
/// per-role one; an answer that is not the expected JSON passes unchanged.
fn per_role_ecr_token(body: &Bytes, role_arn: &str) -> Bytes {
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    let token = STANDARD.encode(format!("AWS:{}", ecr_password_for_role(role_arn)));
    let Some(entries) = answer["authorizationData"].as_array_mut() else {
        return body.clone();
    };
    for entry in entries {
        entry["authorizationToken"] = serde_json::Value::String(token.clone());
    }
    Bytes::from(answer.to_string())
}

/// The counter and fault endpoint of an ECR (JSON protocol, `X-Amz-Target`)
/// or STS (query protocol, `Action` in the form body or query) request.
fn classify(parts: &Parts, body: &[u8]) -> Option<(String, &'static str)> {
    if let Some(operation) = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.strip_prefix(ECR_TARGET_PREFIX))
    {
        return Some((format!("ecr:{operation}"), ECR));
    }
    let query = parts.uri.query().unwrap_or_default().as_bytes();
    form_urlencoded::parse(body)
        .chain(form_urlencoded::parse(query))
        .find(|(k, _)| k == "Action")
        .map(|(_, action)| (format!("sts:{action}"), STS))
}

/// `headers` without the hop-by-hop ones, which describe a single connection
/// and are never part of a signature.
fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers
}
