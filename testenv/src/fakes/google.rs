//! Google's OAuth 2.0 token endpoint, the `token_uri` of a service-account
//! key: `gcp_auth::CustomServiceAccount` posts a self-signed JWT there and
//! follows whatever URI the key names, plain http included.
//!
//! What the operator should know about gcp_auth 0.12 as a client of this:
//! it caches a token per scope set until 20 s before `expires_in` runs out
//! (a second `token()` call does not reach the server), it retries a failed
//! request 5 times within about 750 ms (so one 500 costs 5 calls), and it has
//! no timeout of its own ([`Fault::Hang`] hangs it until the caller's timeout).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;

use super::{Fault, Server, Switchboard, form, jwt_claims};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN: &str = "token";

/// A token endpoint answering every well-formed JWT-bearer grant with the
/// configured access token. Stopped on drop.
pub struct TokenServer {
    server: Server,
    board: Switchboard,
    state: Arc<Mutex<Issued>>,
}

struct Issued {
    access_token: String,
    expires_in: Duration,
    /// With [`TokenServer::issue_fresh_tokens`]: the prefix of a new token per request.
    fresh_prefix: Option<String>,
    /// With [`TokenServer::cache_token`]: one token, one absolute expiry.
    cached_until: Option<SystemTime>,
    /// Every token handed out, with its expiry.
    log: Vec<(String, SystemTime)>,
    last_claims: Option<serde_json::Value>,
}

impl TokenServer {
    /// Serve `POST /token`, issuing `ya29.fake-google-access-token` valid for
    /// one hour until [`TokenServer::set_token`] says otherwise.
    pub async fn start() -> anyhow::Result<Self> {
        let board = Switchboard::default();
        let state = Arc::new(Mutex::new(Issued {
            access_token: "ya29.fake-google-access-token".into(),
            expires_in: Duration::from_secs(3600),
            fresh_prefix: None,
            cached_until: None,
            log: Vec::new(),
            last_claims: None,
        }));
        let app = Router::new()
            .route("/token", post(token))
            .with_state((board.clone(), state.clone()));
        let server = Server::start("google-token", app, None)?;
        Ok(Self { server, board, state })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The `token_uri` to put in a service-account key.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url())
    }

    /// Token requests received, faulted ones included.
    pub fn calls(&self) -> usize {
        self.board.calls(TOKEN)
    }

    /// How token requests are answered from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.board.set_fault(TOKEN, fault);
    }

    /// The access token and lifetime issued from now on.
    pub fn set_token(&self, access_token: impl Into<String>, expires_in: Duration) {
        let mut state = self.state.lock().expect("token state lock");
        state.access_token = access_token.into();
        state.expires_in = expires_in;
        state.cached_until = None;
    }

    /// From now on, answer every request with a new access token
    /// `<prefix>-<n>`, valid for `expires_in`, as Google does.
    pub fn issue_fresh_tokens(&self, prefix: impl Into<String>, expires_in: Duration) {
        let mut state = self.state.lock().expect("token state lock");
        state.fresh_prefix = Some(prefix.into());
        state.expires_in = expires_in;
    }

    /// From now on, answer every request with the same `access_token` and
    /// the same absolute expiry, `valid_for` from now, as GKE's metadata
    /// server does: it caches a token until shortly before it expires.
    pub fn cache_token(&self, access_token: impl Into<String>, valid_for: Duration) {
        let mut state = self.state.lock().expect("token state lock");
        state.access_token = access_token.into();
        state.fresh_prefix = None;
        state.cached_until = Some(SystemTime::now() + valid_for);
    }

    /// A check, for a registry standing in for Google's, that a token was
    /// issued here and has not expired.
    pub fn unexpired_check(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move |token| {
            let now = SystemTime::now();
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.log.iter().any(|(t, expiry)| t == token && now < *expiry)
        }
    }

    /// How many tokens were handed out.
    pub fn issued(&self) -> usize {
        self.state.lock().expect("token state lock").log.len()
    }

    /// The claims of the last assertion received (`iss`, `scope`, `aud`, ...).
    pub fn last_claims(&self) -> Option<serde_json::Value> {
        self.state.lock().expect("token state lock").last_claims.clone()
    }
}

async fn token(State((board, state)): State<(Switchboard, Arc<Mutex<Issued>>)>, body: Bytes) -> Response {
    if let Some(faulted) = board.enter(TOKEN, TOKEN).await {
        return faulted;
    }
    let form = form(&body);
    if form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
        return oauth_error("unsupported_grant_type", "grant_type must be a JWT bearer grant");
    }
    let Some(claims) = form.get("assertion").and_then(|jwt| jwt_claims(jwt)) else {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    };
    let mut state = state.lock().expect("token state lock");
    state.last_claims = Some(claims);
    if let Some(prefix) = &state.fresh_prefix {
        state.access_token = format!("{prefix}-{}", state.log.len() + 1);
    }
    if let Some(until) = state.cached_until {
        state.expires_in = until.duration_since(SystemTime::now()).unwrap_or_default();
    }
    let issued = (state.access_token.clone(), SystemTime::now() + state.expires_in);
    state.log.push(issued);
    Json(serde_json::json!({
        "access_token": state.access_token,
        "expires_in": state.expires_in.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// A complete service-account key whose `token_uri` is `token_uri`, with a
/// freshly generated RSA 2048 private key (PKCS#8 PEM, as Google issues it).
pub fn service_account_key_json(token_uri: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("generating an RSA 2048 key");
    // Any key-specific id will do; Google's are 40 hex digits. These 20
    // bytes lie inside the modulus, past its DER header.
    let key_id: String = key
        .public_key_raw()
        .iter()
        .skip(16)
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect();
    let email = "regcred-test@regcred-test.iam.gserviceaccount.com";
    serde_json::json!({
        "type": "service_account",
        "project_id": "regcred-test",
        "private_key_id": key_id,
        "private_key": key.serialize_pem(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{email}"),
        "universe_domain": "googleapis.com",
    })
    .to_string()
}
