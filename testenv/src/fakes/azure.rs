//! Entra ID (client credentials, workload identity), App Service style
//! managed identity, and ACR's `/oauth2/exchange`, all on one HTTPS server:
//! azure_identity refuses an authority host that is not https, and the
//! registry host is https in real life too.
//!
//! Clients must trust [`Azure::ca_pem`]. With reqwest 0.13 (azure_core's
//! default transport) either point `SSL_CERT_FILE` at a PEM file holding it
//! before the client is built, or build the client with
//! `reqwest::ClientBuilder::tls_certs_merge` and hand it to azure_identity as
//! `ClientOptions::transport`.
//!
//! Managed identity, as azure_identity 1.x asks for it when `IDENTITY_ENDPOINT`
//! and `IDENTITY_HEADER` are set (App Service): `GET <IDENTITY_ENDPOINT>
//! ?api-version=2019-08-01&resource=<scope without /.default>` plus
//! `client_id=`, `object_id=` or `msi_res_id=` for a user-assigned identity,
//! with headers `x-identity-header: <IDENTITY_HEADER>` and `metadata: true`;
//! it expects `{access_token, expires_on, token_type, resource}` where
//! `expires_on` is Unix seconds *as a string*.
//!
//! Per-identity answers: an access token carries the client id as `appid`,
//! and the ACR refresh token it is exchanged for carries it as `sub`, so two
//! clients (two tenants' workload identities) get different refresh tokens,
//! that is different registry passwords; [`Azure::refresh_token_owner`] tells
//! a registry whose a refresh token is. Every `client_assertion` request is
//! recorded with the assertion's claims (never the assertion), and
//! [`Azure::deny_client`] refuses a client as Entra ID refuses an assertion
//! no federated identity credential matches (400 `invalid_client`,
//! AADSTS700213).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};

use super::{Fault, Server, Switchboard, form, jwt_claims, unix_now, unsigned_jwt};
use crate::pki::TestCa;

/// The lifetime of an access token from Entra ID or managed identity.
const ACCESS_TOKEN_SECS: u64 = 3599;
/// ACR documents its refresh tokens as valid for 3 hours.
const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 3600);
const API_VERSION: &str = "2019-08-01";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The endpoints of the fake, for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /{tenant}/oauth2/v2.0/token` (Entra ID).
    Token,
    /// `GET /msi/token` (managed identity).
    ManagedIdentity,
    /// `POST /oauth2/exchange` (ACR).
    Exchange,
}

impl Endpoint {
    fn key(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::ManagedIdentity => "managed-identity",
            Endpoint::Exchange => "exchange",
        }
    }
}

/// How a client proved its identity to the Entra ID token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `client_secret` (service principal with a secret).
    ClientSecret,
    /// `client_assertion` (workload identity: a federated token).
    ClientAssertion,
}

impl Grant {
    fn counter(self) -> &'static str {
        match self {
            Grant::ClientSecret => "token:secret",
            Grant::ClientAssertion => "token:assertion",
        }
    }
}

/// The last request the Entra ID token endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    pub grant: Grant,
}

/// One `client_assertion` request to the Entra ID token endpoint, as
/// received (faulted and refused ones included).
#[derive(Clone, Debug, PartialEq)]
pub struct AssertionCall {
    pub tenant: String,
    pub client_id: String,
    /// The assertion's claims (`sub`, `aud`, `iss`, ...), unverified; `Null`
    /// if it is not a JWT.
    pub claims: serde_json::Value,
}

/// The last request the managed-identity endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedIdentityRequest {
    /// The scope without `/.default`, e.g. `https://containerregistry.azure.net`.
    pub resource: String,
    /// Set for a user-assigned identity chosen by client id.
    pub client_id: Option<String>,
}

/// The last request the ACR exchange endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeRequest {
    pub service: String,
    pub tenant: Option<String>,
}

/// Entra ID, managed identity and an ACR registry's token exchange on one
/// HTTPS port. Stopped on drop.
pub struct Azure {
    server: Server,
    board: Switchboard,
    state: Arc<Mutex<AzureState>>,
    ca_pem: String,
}

struct AzureState {
    identity_header: String,
    /// Access tokens issued so far; the exchange accepts only these.
    issued: HashSet<String>,
    refresh_token_lifetime: Duration,
    last_token: Option<TokenRequest>,
    last_managed_identity: Option<ManagedIdentityRequest>,
    last_exchange: Option<ExchangeRequest>,
    assertion_calls: Vec<AssertionCall>,
    denied_clients: HashSet<String>,
    /// Refresh tokens issued: token → client id.
    refresh_tokens: HashMap<String, String>,
}

type Shared = (Switchboard, Arc<Mutex<AzureState>>);

fn lock(state: &Mutex<AzureState>) -> MutexGuard<'_, AzureState> {
    state.lock().expect("azure fake state lock")
}

impl Azure {
    pub async fn start() -> anyhow::Result<Self> {
        let ca = TestCa::new("regcred-testenv-azure-ca");
        // Distinct per instance, so a client configured for another fake is refused.
        let identity_header = format!(
            "testenv-{:x}",
            std::time::UNIX_EPOCH.elapsed().unwrap_or_default().as_nanos()
        );
        let board = Switchboard::default();
        let state = Arc::new(Mutex::new(AzureState {
            identity_header,
            issued: HashSet::new(),
            refresh_token_lifetime: DEFAULT_REFRESH_TOKEN_LIFETIME,
            last_token: None,
            last_managed_identity: None,
            last_exchange: None,
            assertion_calls: Vec::new(),
            denied_clients: HashSet::new(),
            refresh_tokens: HashMap::new(),
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(entra_token))
            .route("/msi/token", get(managed_identity_token))
            .route("/oauth2/exchange", post(acr_exchange))
            .with_state((board.clone(), state.clone()));
        let server = Server::start("azure", app, Some(&ca.server(&[])))?;
        Ok(Self {
            server,
            board,
            state,
            ca_pem: ca.cert_pem().to_string(),
        })
    }

    /// For `AZURE_AUTHORITY_HOST` or a custom cloud's authority host:
    /// `https://127.0.0.1:<port>/`.
    pub fn authority_host(&self) -> String {
        format!("https://{}/", self.server.addr())
    }

    /// The registry's login server, `127.0.0.1:<port>` (the same server):
    /// the exchange is `POST https://<registry_host>/oauth2/exchange`.
    pub fn registry_host(&self) -> String {
        self.server.addr().to_string()
    }

    /// For `IDENTITY_ENDPOINT`.
    pub fn identity_endpoint(&self) -> String {
        format!("https://{}/msi/token", self.server.addr())
    }

    /// For `IDENTITY_HEADER`; requests without it are refused.
    pub fn identity_header(&self) -> String {
        lock(&self.state).identity_header.clone()
    }

    /// The CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Entra ID token requests with this grant, faulted ones included.
    pub fn token_calls(&self, grant: Grant) -> usize {
        self.board.calls(grant.counter())
    }

    /// Managed-identity token requests, faulted ones included.
    pub fn managed_identity_calls(&self) -> usize {
        self.board.calls(Endpoint::ManagedIdentity.key())
    }

    /// ACR exchange requests, faulted ones included.
    pub fn exchange_calls(&self) -> usize {
        self.board.calls(Endpoint::Exchange.key())
    }

    pub fn last_token_request(&self) -> Option<TokenRequest> {
        lock(&self.state).last_token.clone()
    }

    pub fn last_managed_identity_request(&self) -> Option<ManagedIdentityRequest> {
        lock(&self.state).last_managed_identity.clone()
    }

    pub fn last_exchange_request(&self) -> Option<ExchangeRequest> {
        lock(&self.state).last_exchange.clone()
    }

    /// How `endpoint` answers from now on.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.board.set_fault(endpoint.key(), fault);
    }

    /// Every `client_assertion` token request received, in order.
    pub fn assertion_calls(&self) -> Vec<AssertionCall> {
        lock(&self.state).assertion_calls.clone()
    }

    /// From now on, a `client_assertion` request for `client_id` answers 400
    /// `invalid_client` AADSTS700213, as Entra ID does when no federated
    /// identity credential of the app matches the assertion's subject.
    pub fn deny_client(&self, client_id: &str) {
        lock(&self.state).denied_clients.insert(client_id.to_string());
    }

    /// Lift [`Azure::deny_client`].
    pub fn allow_client(&self, client_id: &str) {
        lock(&self.state).denied_clients.remove(client_id);
    }

    /// For a registry standing in for ACR: the client id a refresh token
    /// was issued to (by the exchange, from that client's access token), if
    /// it was issued here and has not expired.
    pub fn refresh_token_owner(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let state = self.state.clone();
        move |token| {
            let client = lock(&state).refresh_tokens.get(token).cloned()?;
            let exp = jwt_claims(token)?["exp"].as_u64()?;
            (unix_now() < exp).then_some(client)
        }
    }

    /// The lifetime (`exp - iat`) of the refresh tokens issued from now on;
    /// ACR documents 3 hours but has been seen issuing 75 minutes.
    pub fn set_refresh_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state).refresh_token_lifetime = lifetime;
    }
}

impl AzureState {
    fn issue_access_token(&mut self, audience: &str, tenant: &str, client_id: &str) -> String {
        let now = unix_now();
        let token = unsigned_jwt(&serde_json::json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TOKEN_SECS,
            "appid": client_id,
            "tid": tenant,
            "uti": self.issued.len(),
        }));
        self.issued.insert(token.clone());
        token
    }
}

async fn entra_token(State((board, state)): State<Shared>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let form = form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let grant = if form.contains_key("client_assertion") {
        Some(Grant::ClientAssertion)
    } else if form.contains_key("client_secret") {
        Some(Grant::ClientSecret)
    } else {
        None
    };
    let counter = grant.map_or("token:other", Grant::counter);
    let subject = (grant == Some(Grant::ClientAssertion)).then(|| record_assertion(&state, &tenant, &form));
    if let Some(faulted) = board.enter(counter, Endpoint::Token.key()).await {
        return faulted;
    }
    let Some(grant) = grant else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000216: client_secret or client_assertion is required.",
        );
    };
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: only client_credentials is served here.",
        );
    }
    if grant == Grant::ClientAssertion && field("client_assertion_type") != ASSERTION_TYPE {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS700023: client_assertion_type must be a JWT bearer.",
        );
    }
    let (client_id, scope) = (field("client_id"), field("scope"));
    if client_id.is_empty() || scope.is_empty() {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: client_id and scope are required.",
        );
    }
    let mut state = lock(&state);
    if let Some(subject) = subject
        && state.denied_clients.contains(client_id)
    {
        let description = format!(
            "AADSTS700213: No matching federated identity record found for presented assertion subject \
             '{subject}'. Please check your federated identity credential Subject, Audience and Issuer against the \
             presented assertion."
        );
        return aad_error(StatusCode::BAD_REQUEST, "invalid_client", &description);
    }
    let audience = scope.strip_suffix("/.default").unwrap_or(scope);
    let access_token = state.issue_access_token(audience, &tenant, client_id);
    state.last_token = Some(TokenRequest {
        tenant,
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        grant,
    });
    Json(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECS,
        "ext_expires_in": ACCESS_TOKEN_SECS,
        "access_token": access_token,
    }))
    .into_response()
}

async fn managed_identity_token(
    State((board, state)): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(faulted) = board
        .enter(Endpoint::ManagedIdentity.key(), Endpoint::ManagedIdentity.key())
        .await
    {
        return faulted;
    }
    let mut state = lock(&state);
    let secret = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if secret != Some(state.identity_header.as_str()) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "x-identity-header is missing or wrong.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version must be 2019-08-01.",
        );
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return aad_error(StatusCode::BAD_REQUEST, "invalid_request", "resource is required.");
    };
    let client_id = query.get("client_id").cloned();
    let access_token = state.issue_access_token(
        resource,
        "managed-identity",
        client_id.as_deref().unwrap_or("system-assigned"),
    );
    state.last_managed_identity = Some(ManagedIdentityRequest {
        resource: resource.clone(),
        client_id,
    });
    Json(serde_json::json!({
        "access_token": access_token,
        "expires_on": (unix_now() + ACCESS_TOKEN_SECS).to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn acr_exchange(State((board, state)): State<Shared>, body: Bytes) -> Response {
    if let Some(faulted) = board.enter(Endpoint::Exchange.key(), Endpoint::Exchange.key()).await {
        return faulted;
    }
    let form = form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "access_token" {
        return acr_error(StatusCode::BAD_REQUEST, "grant_type must be access_token");
    }
    let service = field("service");
    if service.is_empty() {
        return acr_error(StatusCode::BAD_REQUEST, "service is required");
    }
    let mut state = lock(&state);
    let access_token = field("access_token");
    if !state.issued.contains(access_token) {
        return acr_error(
            StatusCode::UNAUTHORIZED,
            "the access token was not issued by this tenant",
        );
    }
    let client_id = jwt_claims(access_token)
        .and_then(|claims| claims["appid"].as_str().map(String::from))
        .unwrap_or_default();
    let now = unix_now();
    let refresh_token = unsigned_jwt(&serde_json::json!({
        "sub": client_id,
        "iss": "Azure Container Registry",
        "aud": service,
        "iat": now,
        "nbf": now,
        "exp": now + state.refresh_token_lifetime.as_secs(),
        "grant_type": "refresh_token",
        "jti": format!("{:x}", state.refresh_tokens.len() + 1),
        "tenant": form.get("tenant"),
        "version": "1.0",
    }));
    state.refresh_tokens.insert(refresh_token.clone(), client_id);
    state.last_exchange = Some(ExchangeRequest {
        service: service.to_string(),
        tenant: form.get("tenant").cloned(),
    });
    Json(serde_json::json!({"refresh_token": refresh_token})).into_response()
}

/// Record a `client_assertion` request; returns the assertion's subject.
fn record_assertion(state: &Mutex<AzureState>, tenant: &str, form: &HashMap<String, String>) -> String {
    let assertion = form.get("client_assertion").map_or("", String::as_str);
    let claims = jwt_claims(assertion).unwrap_or_default();
    let subject = claims["sub"].as_str().unwrap_or_default().to_string();
    lock(state).assertion_calls.push(AssertionCall {
        tenant: tenant.to_string(),
        client_id: form.get("client_id").cloned().unwrap_or_default(),
        claims,
    });
    subject
}

fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn acr_error(status: StatusCode, message: &str) -> Response {
    let code = if status == StatusCode::UNAUTHORIZED {
        "UNAUTHORIZED"
    } else {
        "BAD_REQUEST"
    };
    (
        status,
        Json(serde_json::json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}
