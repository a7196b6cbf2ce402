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

use std::path::PathBuf;
use std::process::Command;
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

use super::{Fault, Server, Switchboard};
use crate::free_port;
use crate::process::Process;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const ECR_TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const ECR: &str = "ecr";
const STS: &str = "sts";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A moto server for this test, reached through [`Moto::url`]. Dropping it
/// stops the proxy and kills moto.
pub struct Moto {
    // Field order is drop order: the proxy goes before the server it fronts.
    proxy: Server,
    board: Switchboard,
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
        let proxy = Proxy {
            // The proxy's own client: pooled connections belong to the
            // runtime that opened them, which is the proxy thread's.
            client: Client::builder(TokioExecutor::new()).build_http(),
            upstream,
            board: board.clone(),
        };
        let proxy = Server::start("moto-proxy", Router::new().fallback(forward).with_state(proxy), None)?;
        Ok(Self {
            proxy,
            board,
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

    /// The last `lines` lines moto logged (one line per request it served).
    pub fn log_tail(&self, lines: usize) -> String {
        self.moto.log_tail(lines)
    }
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
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("reading the request body: {e}")).into_response(),
    };
    if let Some((counter, endpoint)) = classify(&parts, &body)
        && let Some(faulted) = proxy.board.enter(&counter, endpoint).await
    {
        return faulted;
    }

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = http::Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", proxy.upstream));
    let headers = upstream.headers_mut().expect("a request builder without errors");
    *headers = end_to_end(parts.headers);
    // HTTP/2 clients send the authority as a pseudo-header, not as Host.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let upstream = match upstream.body(Full::new(body)) {
        Ok(upstream) => upstream,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("rebuilding the request: {e}")).into_response(),
    };
    let response = match proxy.client.request(upstream).await {
        Ok(response) => response,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("moto_server unreachable: {e}")).into_response(),
    };
    let (mut parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("reading moto_server's answer: {e}")).into_response(),
    };
    parts.headers = end_to_end(parts.headers);
    Response::from_parts(parts, body.into())
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
