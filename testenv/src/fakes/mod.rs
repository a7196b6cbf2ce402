//! Stand-ins for the cloud endpoints regcred mints credentials from, so the
//! real SDK code paths run offline: AWS through moto behind a counting proxy
//! ([`moto`]), Google's OAuth token endpoint ([`google`]), Google's workload
//! identity federation (STS and IAM Credentials, [`google_sts`]), Entra ID and
//! ACR's token exchange ([`azure`]).
//!
//! Every fake serves 127.0.0.1 from a thread of its own with its own tokio
//! runtime, so it works from any test (sync or async, current-thread or not)
//! and is not starved by a test that blocks its runtime. Dropping the fake
//! stops that runtime, which closes the listener and every open connection,
//! also those held by [`Fault::Hang`].
//!
//! Every fake counts the requests it receives per endpoint, including those
//! answered with an injected fault, and lets a test switch a [`Fault`] on and
//! off while the operator runs.

pub mod azure;
pub mod google;
pub mod google_sts;
pub mod moto;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;

use crate::pki::CertKey;

/// How a fake answers the requests of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this status, a small JSON error body and, if given, a
    /// `Retry-After` header in seconds (e.g. 429 or 503 throttling, 500).
    Status { code: u16, retry_after: Option<u32> },
    /// Never answer: the connection stays open until the client gives up or
    /// the fake is dropped.
    Hang,
    /// Answer 200 with this body instead of the real one (malformed JSON, an
    /// empty or oversized token, a canary to look for in logs).
    Body(String),
}

impl Fault {
    /// The response that replaces the real one, if any. Never returns for
    /// [`Fault::Hang`].
    async fn respond(self) -> Option<Response> {
        match self {
            Fault::None => None,
            Fault::Status { code, retry_after } => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = serde_json::json!({
                    "error": "injected_fault",
                    "error_description": format!("fault injected by regcred-testenv: HTTP {code}"),
                    "message": format!("fault injected by regcred-testenv: HTTP {code}"),
                });
                let mut response = (status, axum::Json(body)).into_response();
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                Some(response)
            }
            Fault::Hang => std::future::pending().await,
            Fault::Body(body) => Some(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
        }
    }
}

/// The counters and faults of one fake, shared by its handle and its server.
#[derive(Clone, Default)]
pub(crate) struct Switchboard(Arc<Mutex<Board>>);

#[derive(Default)]
struct Board {
    calls: HashMap<String, usize>,
    faults: HashMap<&'static str, Fault>,
}

impl Switchboard {
    fn board(&self) -> MutexGuard<'_, Board> {
        // A panicking handler cannot leave the maps half-updated.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count one request under `counter`, then apply the fault set for
    /// `endpoint`: `Some` is the response to send instead of the real one.
    pub(crate) async fn enter(&self, counter: &str, endpoint: &'static str) -> Option<Response> {
        let fault = {
            let mut board = self.board();
            *board.calls.entry(counter.to_string()).or_default() += 1;
            board.faults.get(endpoint).cloned().unwrap_or_default()
        };
        fault.respond().await
    }

    pub(crate) fn calls(&self, counter: &str) -> usize {
        self.board().calls.get(counter).copied().unwrap_or(0)
    }

    pub(crate) fn set_fault(&self, endpoint: &'static str, fault: Fault) {
        self.board().faults.insert(endpoint, fault);
    }
}

/// An axum app served on 127.0.0.1 from a dedicated thread; stopped on drop.
pub(crate) struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serve `app` on a fresh port, over TLS with `tls` if given. The
    /// listener is bound before this returns, so the fake is reachable at once.
    pub(crate) fn start(name: &str, app: Router, tls: Option<&CertKey>) -> anyhow::Result<Self> {
        let tls = tls.map(acceptor).transpose()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a port on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
                    tokio::select! {
                        _ = stop => {}
                        _ = accept_loop(listener, app, tls) => {}
                    }
                });
                // Connection tasks (hanging ones included) are dropped here
                // rather than awaited.
                runtime.shutdown_background();
            })
            .context("starting the fake's thread")?;
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Router, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: let it pass, do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            // Errors here are clients hanging up or failing the handshake;
            // the client under test reports those itself.
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

fn acceptor(cert: &CertKey) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    crate::init_crypto();
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The fields of a form body. Parsed by hand rather than with axum's `Form`
/// so that a request with a missing or wrong content type is still counted
/// (and answered like the real endpoint would: as a bad request).
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JWT with a well-formed header and payload and a meaningless signature:
/// what clients that only read claims (such as `exp`) without verifying see.
pub fn unsigned_jwt(claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "regcred-testenv"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"not-a-signature"),
    )
}

/// The claims of a JWT, without verifying it; `None` if it is not one.
pub(crate) fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    let mut parts = jwt.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    // gcp_auth pads its base64url; JWTs proper do not.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
