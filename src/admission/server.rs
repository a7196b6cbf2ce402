//! HTTPS for the admission webhook: every connection is served with the
//! certificate [`ServingCert`] holds at its handshake, so a rotated
//! certificate takes effect for new connections without a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use super::certs::ServingCert;
use super::{Admission, PATH};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's routes: `POST /mutate-pods`.
pub fn router(admission: Arc<Admission>) -> Router {
    Router::new().route(PATH, post(review)).with_state(admission)
}

async fn review(State(admission): State<Arc<Admission>>, body: Bytes) -> impl IntoResponse {
    let review = admission.review(&body).await;
    // An AdmissionReview always serializes.
    let json = serde_json::to_vec(&review).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// Serve `app` over TLS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, serving: Arc<ServingCert>, app: Router) -> std::io::Result<()> {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    info!(addr = %listener.local_addr()?, path = PATH, "serving the admission webhook");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                debug!(error = %e, "accepting a webhook connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}
