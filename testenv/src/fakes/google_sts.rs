//! Google workload identity federation, the two calls a Kubernetes
//! ServiceAccount token takes to become a Google access token, on one plain
//! http server (the operator takes endpoint overrides for both):
//!
//! 1. STS token exchange, `POST /v1/token` (form or JSON body) with
//!    `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//!    `audience=//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/K`,
//!    `scope`, `requested_token_type=urn:ietf:params:oauth:token-type:access_token`,
//!    `subject_token=<the ServiceAccount JWT>` and
//!    `subject_token_type=urn:ietf:params:oauth:token-type:jwt`. It answers
//!    `{access_token, issued_token_type, token_type: "Bearer", expires_in}`
//!    with a federated token `ya29.federated-<n>`, valid one hour.
//! 2. IAM Credentials, `POST /v1/projects/-/serviceAccounts/<gsa>:generateAccessToken`
//!    with `Authorization: Bearer <federated token>` and
//!    `{"scope": [...], "lifetime": "3600s"}`. It answers
//!    `{accessToken, expireTime}` (RFC 3339, UTC) with the token
//!    [`access_token_for`]`(gsa, n)`, `ya29.<local part of gsa>-<n>` for the
//!    n-th token of that GSA, so two GSAs never share a token. Its lifetime is
//!    the one asked for (default 1 h) unless [`GoogleSts::set_lifetime`] says
//!    otherwise.
//!
//! Refusals are Google's: a malformed exchange gets 400 `invalid_request`
//! (or `invalid_grant` for a subject token that is not a JWT), a missing or
//! unknown federated token 401 `UNAUTHENTICATED`, and a GSA refused with
//! [`GoogleSts::deny_service_account`] 403 `PERMISSION_DENIED`. Signatures
//! are not verified; what was presented is recorded (claims, never tokens).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, header};

use super::{Server, Switchboard, form, jwt_claims};
use crate::fakes::Fault;

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const FEDERATED_TOKEN_SECS: u64 = 3600;
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const GENERATE_SUFFIX: &str = ":generateAccessToken";

/// The endpoints of the fake, for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/token` (STS).
    Token,
    /// `POST /v1/projects/-/serviceAccounts/<gsa>:generateAccessToken` (IAM Credentials).
    GenerateAccessToken,
}

impl Endpoint {
    fn key(self) -> &'static str {
        match self {
            Endpoint::Token => "sts-token",
            Endpoint::GenerateAccessToken => "generate-access-token",
        }
    }
}

/// One STS token exchange as received (faulted and refused ones included).
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    /// The `audience` parameter (the workload identity provider).
    pub audience: String,
    pub scope: String,
    /// The subject token's claims, unverified; `Null` if it is not a JWT.
    pub claims: serde_json::Value,
}

/// One `generateAccessToken` call as received (faulted and refused ones included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generate {
    /// The GSA email of the path.
    pub service_account: String,
    pub scope: Vec<String>,
    /// As sent, e.g. `3600s`.
    pub lifetime: Option<String>,
}

/// STS and IAM Credentials on one http port. Stopped on drop.
pub struct GoogleSts {
    server: Server,
    board: Switchboard,
    state: Arc<Mutex<StsState>>,
}

#[derive(Default)]
struct StsState {
    federated: HashSet<String>,
    /// Access tokens issued: token → (GSA, expiry).
    issued: HashMap<String, (String, SystemTime)>,
    /// Tokens issued per GSA, for the `-<n>` suffix.
    per_account: HashMap<String, usize>,
    denied: HashSet<String>,
    lifetime: Option<Duration>,
    exchanges: Vec<Exchange>,
    generates: Vec<Generate>,
}

type Shared = (Switchboard, Arc<Mutex<StsState>>);

fn lock(state: &Mutex<StsState>) -> MutexGuard<'_, StsState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `n`-th (from 1) access token the fake issues for `service_account`:
/// `ya29.<local part>-<n>`, e.g. `ya29.team-a-1` for `team-a@p.iam.gserviceaccount.com`.
pub fn access_token_for(service_account: &str, n: usize) -> String {
    let local = service_account.split('@').next().unwrap_or_default();
    format!("ya29.{local}-{n}")
}

impl GoogleSts {
    pub async fn start() -> anyhow::Result<Self> {
        let board = Switchboard::default();
        let state = Arc::new(Mutex::new(StsState::default()));
        let app = Router::new()
            .route("/v1/token", post(token_exchange))
            .route(
                "/v1/projects/{project}/serviceAccounts/{call}",
                post(generate_access_token),
            )
            .with_state((board.clone(), state.clone()));
        let server = Server::start("google-sts", app, None)?;
        Ok(Self { server, board, state })
    }

    /// `http://127.0.0.1:<port>`: the base of both STS and IAM Credentials
    /// (`<url>/v1/token`, `<url>/v1/projects/-/serviceAccounts/...`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Requests to `endpoint`, faulted and refused ones included.
    pub fn calls(&self, endpoint: Endpoint) -> usize {
        self.board.calls(endpoint.key())
    }

    /// How `endpoint` answers from now on (e.g. 429 with `Retry-After`).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.board.set_fault(endpoint.key(), fault);
    }

    /// From now on, `generateAccessToken` for this GSA answers 403
    /// `PERMISSION_DENIED`, as when the federated principal lacks
    /// `roles/iam.workloadIdentityUser` on it.
    pub fn deny_service_account(&self, email: &str) {
        lock(&self.state).denied.insert(email.to_string());
    }

    /// Lift [`GoogleSts::deny_service_account`].
    pub fn allow_service_account(&self, email: &str) {
        lock(&self.state).denied.remove(email);
    }

    /// The lifetime of access tokens issued from now on, whatever the
    /// request asks (by default the requested `lifetime`, else 1 h).
    pub fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.state).lifetime = Some(lifetime);
    }

    /// Every token exchange received, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.state).exchanges.clone()
    }

    /// Every `generateAccessToken` call received, in order.
    pub fn generate_calls(&self) -> Vec<Generate> {
        lock(&self.state).generates.clone()
    }

    /// Access tokens issued for `service_account` so far.
    pub fn issued_for(&self, service_account: &str) -> usize {
        lock(&self.state).per_account.get(service_account).copied().unwrap_or(0)
    }

    /// For a registry standing in for Artifact Registry: the GSA an access
    /// token was issued to, if it was issued here and has not expired.
    pub fn token_owner(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let state = self.state.clone();
        move |token| {
            let state = lock(&state);
            let (gsa, expiry) = state.issued.get(token)?;
            (SystemTime::now() < *expiry).then(|| gsa.clone())
        }
    }
}

/// Form or JSON parameters, as Google's STS accepts both.
fn params(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return form(body);
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
        return HashMap::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
        .collect()
}

async fn token_exchange(State((board, state)): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let params = params(&headers, &body);
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let claims = jwt_claims(field("subject_token"));
    lock(&state).exchanges.push(Exchange {
        audience: field("audience").to_string(),
        scope: field("scope").to_string(),
        claims: claims.clone().unwrap_or_default(),
    });
    if let Some(faulted) = board.enter(Endpoint::Token.key(), Endpoint::Token.key()).await {
        return faulted;
    }
    if let Some(problem) = exchange_problem(&params) {
        return oauth_error("invalid_request", &problem);
    }
    if claims.is_none() {
        return oauth_error("invalid_grant", "The incoming token is not a valid JWT.");
    }
    let mut state = lock(&state);
    let token = format!("ya29.federated-{}", state.federated.len() + 1);
    state.federated.insert(token.clone());
    Json(serde_json::json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": FEDERATED_TOKEN_SECS,
    }))
    .into_response()
}

/// What is wrong with a token exchange's parameters, worded like STS.
fn exchange_problem(params: &HashMap<String, String>) -> Option<String> {
    let field = |name: &str| params.get(name).map_or("", String::as_str);
    let expected = [
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token_type", JWT_TOKEN_TYPE),
    ];
    if let Some((name, want)) = expected.iter().find(|(name, want)| field(name) != *want) {
        return Some(format!("Invalid value for \"{name}\": expected \"{want}\"."));
    }
    let audience = field("audience");
    let provider = audience
        .strip_prefix("//iam.googleapis.com/projects/")
        .and_then(|rest| rest.split_once("/locations/global/workloadIdentityPools/"))
        .and_then(|(_, rest)| rest.split_once("/providers/"))
        .is_some_and(|(pool, provider)| !pool.is_empty() && !provider.is_empty() && !provider.contains('/'));
    if !provider {
        return Some(format!("Invalid value for \"audience\": \"{audience}\"."));
    }
    if field("scope").is_empty() {
        return Some("Missing required parameter: \"scope\".".into());
    }
    None
}

async fn generate_access_token(
    State((board, state)): State<Shared>,
    Path((_project, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service_account = call.strip_suffix(GENERATE_SUFFIX).unwrap_or_default().to_string();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let scope: Vec<String> = request["scope"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let lifetime = request["lifetime"].as_str().map(String::from);
    lock(&state).generates.push(Generate {
        service_account: service_account.clone(),
        scope: scope.clone(),
        lifetime: lifetime.clone(),
    });
    let key = Endpoint::GenerateAccessToken.key();
    if let Some(faulted) = board.enter(key, key).await {
        return faulted;
    }
    if service_account.is_empty() {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    }
    let mut state = lock(&state);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| state.federated.contains(token)) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential.",
        );
    }
    if state.denied.contains(&service_account) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let requested = lifetime.as_deref().map(parse_seconds);
    let lifetime = match (state.lifetime, requested) {
        _ if scope.iter().all(|s| s.is_empty()) => None,
        (Some(configured), _) => Some(configured),
        (None, None) => Some(DEFAULT_LIFETIME),
        (None, Some(requested)) => requested,
    };
    let Some(lifetime) = lifetime else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
        );
    };
    let n = {
        let count = state.per_account.entry(service_account.clone()).or_default();
        *count += 1;
        *count
    };
    let token = access_token_for(&service_account, n);
    let expiry = SystemTime::now() + lifetime;
    state.issued.insert(token.clone(), (service_account, expiry));
    Json(serde_json::json!({"accessToken": token, "expireTime": rfc3339(expiry)})).into_response()
}

/// `"3600s"` → 3600 s.
fn parse_seconds(lifetime: &str) -> Option<Duration> {
    let secs: f64 = lifetime.strip_suffix('s')?.parse().ok()?;
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `2026-12-06T13:22:09Z`: how the fake writes `expireTime` (UTC, whole
/// seconds, so two such strings compare in time order).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": status.as_u16(), "message": message, "status": reason}});
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_563_329)), "2026-12-06T13:22:09Z");
    }
}
