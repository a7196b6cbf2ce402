//! A real container registry for pull-auth checks: Debian's `docker-registry`
//! (distribution 2.8) on a free loopback port, over TLS with a certificate
//! from the process's registry CA (trust [`Registry::ca_path`] or [`shared_ca_pem`]), storing in a
//! temporary directory, with one of these kinds of authentication:
//!
//! - [`Auth::Anonymous`]: none (anyone may pull);
//! - [`Auth::Htpasswd`]: Basic, against bcrypt lines written here;
//! - [`Auth::Token`]: Bearer, with a token server of the harness at the realm
//!   issuing ES256 JWTs (certificate chain in `x5c`, signed by the same CA,
//!   which is the registry's `rootcertbundle`). A user gets `pull` on the
//!   repositories granted to them and nothing else, so the registry answers
//!   any other repository with `insufficient_scope`; wrong credentials get 401;
//! - [`Auth::Verified`]: the same token server, for whoever a check accepts;
//! - [`Auth::Grants`]: the same token server, the repositories a user may
//!   pull decided by a function of username *and password*, as cloud
//!   registries decide by whose token the password is (ECR, Artifact
//!   Registry and ACR tenants share one username).
//!
//! [`Registry::push_image`] pushes a tiny image with plain HTTP calls, as an
//! admin user the harness adds to the htpasswd file or the token server.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode, Uri, header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::fakes::{Fault, Server, Switchboard, unix_now};
use crate::oci;
use crate::pki::TestCa;
use crate::process::Process;

/// Where Debian's `docker-registry` package puts the binary.
pub const BINARY: &str = "/usr/bin/docker-registry";
/// The `service` of the token flow (the JWT audience).
pub const SERVICE: &str = "regcred-testenv-registry";
/// The `iss` of the harness's tokens.
const ISSUER: &str = "regcred-testenv-token-server";
const ADMIN: &str = "regcred-testenv-admin";
const TOKEN: &str = "token";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How the registry authenticates.
#[derive(Clone)]
pub enum Auth {
    /// No authentication: anyone may pull and push.
    Anonymous,
    /// Basic authentication; `users` are `(username, password)`.
    Htpasswd { users: Vec<(String, String)> },
    /// Bearer tokens from the harness's token server; `users` are
    /// `(username, password)`, `grants` are `(username, repository)` pairs
    /// allowed to pull.
    Token {
        users: Vec<(String, String)>,
        grants: Vec<(String, String)>,
    },
    /// Bearer tokens from the harness's token server for whoever `verify`
    /// accepts at the time of the token request (e.g. only unexpired cloud
    /// tokens), allowed to pull `repositories`.
    Verified {
        verify: Verifier,
        repositories: Vec<String>,
    },
    /// Bearer tokens from the harness's token server; at each token request
    /// `grants(username, password)` lists the repositories those credentials
    /// may pull. An empty list means the credentials are not accepted (401);
    /// credentials granted other repositories get a token without the access
    /// asked for, which the registry answers with `insufficient_scope`.
    Grants { grants: Grants },
}

/// Which repositories a username and password may pull, asked at each token
/// request; empty for credentials that are not accepted.
pub type Grants = Arc<dyn Fn(&str, &str) -> Vec<String> + Send + Sync>;

/// What credentials accepted by a function may pull: `None` if not accepted.
type Dynamic = Arc<dyn Fn(&str, &str) -> Option<HashSet<String>> + Send + Sync>;

/// Decides, at each token request, whether a username and password may pull.
pub type Verifier = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

impl std::fmt::Debug for Auth {
    /// The kind and the user names, never a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |users: &[(String, String)]| users.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>();
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Htpasswd { users } => f.debug_struct("Htpasswd").field("users", &names(users)).finish(),
            Auth::Token { users, grants } => f
                .debug_struct("Token")
                .field("users", &names(users))
                .field("grants", grants)
                .finish(),
            Auth::Verified { repositories, .. } => {
                f.debug_struct("Verified").field("repositories", repositories).finish()
            }
            Auth::Grants { .. } => f.write_str("Grants"),
        }
    }
}

/// A running registry; the process, its token server and its storage go away on drop.
pub struct Registry {
    process: Option<Process>,
    token_server: Option<Server>,
    admin: Admin,
    board: Switchboard,
    host: String,
    config: PathBuf,
    log: PathBuf,
    ca_path: PathBuf,
    ca_pem: String,
    http: reqwest::Client,
    // Last: removed once the process is gone.
    dir: tempfile::TempDir,
}

/// The CA that signs every registry (and token server) of this process, as
/// one private CA signs an organisation's registries: an operator started
/// with `--ca-bundle` of [`shared_ca_pem`] trusts them all. The node trusts
/// each registry on its own ([`crate::Node::trust_registry`]).
fn shared_ca() -> &'static TestCa {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| TestCa::new("regcred-testenv registry CA"))
}

/// PEM of the CA of every [`Registry`] this process starts.
pub fn shared_ca_pem() -> &'static str {
    shared_ca().cert_pem()
}

impl Registry {
    /// Start a registry with `auth` and wait until it answers `/v2/`.
    ///
    /// Fails (never skips) when the binary is missing, saying how to get it.
    pub async fn start(auth: Auth) -> anyhow::Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!(
                "docker-registry not found at {BINARY}: run `make tools` (hack/install-tools.sh installs Debian's \
                 docker-registry)"
            );
        }
        crate::init_crypto();
        let dir = crate::scratch::dir("registry")?;
        let ca = shared_ca();
        let tls = ca.server(&[]);
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem())?;
        std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem)?;
        std::fs::write(dir.path().join("tls.key"), &tls.key_pem)?;
        let admin_password = random_hex(16);
        let host = format!("127.0.0.1:{}", crate::free_port());
        let board = Switchboard::default();

        let (auth_config, token_server, admin) = match auth {
            Auth::Anonymous => (None, None, Admin::Anonymous),
            Auth::Htpasswd { users } => {
                let path = dir.path().join("htpasswd");
                let mut lines = String::new();
                for (user, password) in users.iter().chain([&(ADMIN.to_string(), admin_password.clone())]) {
                    let hash = bcrypt::hash_with_result(password, 4)
                        .context("hashing a password with bcrypt")?
                        .format_for_version(bcrypt::Version::TwoY);
                    lines.push_str(&format!("{user}:{hash}\n"));
                }
                std::fs::write(&path, lines)?;
                let config = serde_json::json!({"htpasswd": {"realm": "regcred-testenv", "path": path}});
                let basic = STANDARD.encode(format!("{ADMIN}:{admin_password}"));
                (Some(config), None, Admin::Basic(format!("Basic {basic}")))
            }
            auth @ (Auth::Token { .. } | Auth::Verified { .. } | Auth::Grants { .. }) => {
                let (users, grants, dynamic) = match auth {
                    Auth::Token { users, grants } => (users, grants, None),
                    Auth::Verified { verify, repositories } => {
                        let repositories: HashSet<String> = repositories.into_iter().collect();
                        let dynamic: Dynamic =
                            Arc::new(move |user, password| verify(user, password).then(|| repositories.clone()));
                        (Vec::new(), Vec::new(), Some(dynamic))
                    }
                    Auth::Grants { grants } => {
                        let dynamic: Dynamic = Arc::new(move |user, password| {
                            let repositories: HashSet<String> = grants(user, password).into_iter().collect();
                            (!repositories.is_empty()).then_some(repositories)
                        });
                        (Vec::new(), Vec::new(), Some(dynamic))
                    }
                    Auth::Anonymous | Auth::Htpasswd { .. } => unreachable!("matched above"),
                };
                let issuer = Arc::new(Issuer::new(ca)?);
                let state = Arc::new(TokenState {
                    users: users.into_iter().collect(),
                    grants: grants.into_iter().collect(),
                    dynamic,
                    admin_password: admin_password.clone(),
                    issuer: issuer.clone(),
                    board: board.clone(),
                });
                let app = Router::new().route("/token", get(token)).with_state(state);
                let server = Server::start("registry-token", app, Some(&tls))?;
                let config = serde_json::json!({"token": {
                    "realm": realm(&server),
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": ca_path,
                }});
                (Some(config), Some(server), Admin::Token(issuer))
            }
        };

        let mut config = serde_json::json!({
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": dir.path().join("storage")},
                "delete": {"enabled": true},
                "maintenance": {"uploadpurging": {"enabled": false}},
            },
            // No `http.debug`: the debug server stays off.
            "http": {
                "addr": host,
                "secret": random_hex(16),
                "tls": {"certificate": dir.path().join("tls.crt"), "key": dir.path().join("tls.key")},
            },
        });
        if let Some(auth_config) = auth_config {
            config["auth"] = auth_config;
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;

        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?])
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut registry = Self {
            process: None,
            token_server,
            admin,
            board,
            log: dir.path().join("registry.log"),
            host,
            config: config_path,
            ca_path,
            ca_pem: ca.cert_pem().to_string(),
            http,
            dir,
        };
        registry.spawn().await?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`, the registry host as a credential names it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// PEM file of the CA behind the registry's and the token server's
    /// certificates (what the operator gets as `--ca-bundle`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The token endpoint, for [`Auth::Token`].
    pub fn realm(&self) -> Option<String> {
        self.token_server.as_ref().map(realm)
    }

    /// Requests the token server received (faulted ones included); the
    /// harness's own pushes do not go through it.
    pub fn token_requests(&self) -> usize {
        self.board.calls(TOKEN)
    }

    /// How the token server answers from now on (e.g. 503, or hang).
    pub fn set_token_fault(&self, fault: Fault) {
        self.board.set_fault(TOKEN, fault);
    }

    /// The last `lines` lines the registry logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stop the registry process: its port refuses connections until
    /// [`Registry::restart`]. Storage and the token server stay.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(5));
        }
    }

    /// Start the registry again on the same port with the same storage.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve").arg(&self.config);
        // distribution reads REGISTRY_* variables over its config file.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let mut process = Process::spawn("docker-registry", cmd, &self.log).context("starting docker-registry")?;
        let url = format!("https://{}/v2/", self.host);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if self.http.get(&url).send().await.is_ok() {
                self.process = Some(process);
                return Ok(());
            }
            if let Some(status) = process.exited() {
                bail!("docker-registry exited ({status}):\n{}", self.log_tail(20));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "docker-registry did not answer {url} within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Push a one-layer image (an empty tar) as `repository:tag`, as the
    /// admin user; returns the manifest digest (`sha256:…`).
    pub async fn push_image(&self, repository: &str, tag: &str) -> anyhow::Result<String> {
        let config = serde_json::json!({"Labels": {"org.opencontainers.image.ref.name": tag}});
        // An empty tar archive: two zero blocks.
        self.push_layer_image(repository, tag, vec![0u8; 1024], config).await
    }

    /// Push a one-layer image whose only file is the executable `binary`, at
    /// `/<file name>`, which is also its entrypoint: what a container runtime
    /// needs to run it (a static binary, e.g. from `crate::images`).
    pub async fn push_binary_image(&self, repository: &str, tag: &str, binary: &Path) -> anyhow::Result<String> {
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", binary.display()))?;
        let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes.as_slice())?;
        let layer = tar.into_inner()?;
        let config = serde_json::json!({"Entrypoint": [format!("/{name}")], "WorkingDir": "/"});
        self.push_layer_image(repository, tag, layer, config).await
    }

    /// Push `layer` (an uncompressed tar) as the one layer of
    /// `repository:tag`, with `config` as the image's runtime config, as the
    /// admin user; returns the manifest digest (`sha256:…`).
    async fn push_layer_image(
        &self,
        repository: &str,
        tag: &str,
        layer: Vec<u8>,
        config: serde_json::Value,
    ) -> anyhow::Result<String> {
        self.push_oci_image(repository, tag, &oci::Image::new(vec![layer], config))
            .await
    }

    /// Push `image` as `repository:tag`, as the admin user; returns the
    /// manifest digest (`sha256:…`).
    pub async fn push_oci_image(&self, repository: &str, tag: &str, image: &oci::Image) -> anyhow::Result<String> {
        let authorization = match &self.admin {
            Admin::Anonymous => None,
            Admin::Basic(header) => Some(header.clone()),
            Admin::Token(issuer) => {
                let access = vec![Access::repository(repository, &["pull", "push"])];
                Some(format!("Bearer {}", issuer.mint(ADMIN, access)?))
            }
        };
        image
            .push(
                &self.http,
                &format!("https://{}", self.host),
                repository,
                tag,
                authorization.as_deref(),
            )
            .await
    }

    /// The directory holding the config, certificates, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The token endpoint is named `localhost`, not `127.0.0.1` like the registry:
/// rustls 0.23.46 clients keep one TLS session cache per server name, and after
/// resuming a session of the (Go) registry they drop the resumption offer on a
/// HelloRetryRequest from the (rustls) token server, which that server rejects
/// with a `MissingExtension` alert. Real registries and their token services
/// differ in name or implementation.
fn realm(server: &Server) -> String {
    format!("https://localhost:{}/token", server.addr().port())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).expect("system randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the harness's admin user authenticates its pushes.
enum Admin {
    Anonymous,
    /// The `Authorization` header value.
    Basic(String),
    /// Tokens minted in-process, so pushes do not count as token requests.
    Token(Arc<Issuer>),
}

/// One entry of a token's `access` claim.
#[derive(serde::Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl Access {
    fn repository(name: &str, actions: &[&str]) -> Self {
        Self {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// Signs registry tokens: ES256 with the certificate in `x5c`.
struct Issuer {
    key: EcdsaKeyPair,
    x5c: String,
}

impl Issuer {
    fn new(ca: &TestCa) -> anyhow::Result<Self> {
        // A serving certificate: Go's chain verification in distribution
        // wants the server-auth usage unless told otherwise.
        let signing = ca.server(&[]);
        let cert = CertificateDer::from_pem_slice(signing.cert_pem.as_bytes())?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(signing.key_pem.as_bytes())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.secret_pkcs8_der())
            .map_err(|e| anyhow::anyhow!("loading the token signing key: {e}"))?;
        Ok(Self {
            key,
            x5c: STANDARD.encode(cert.as_ref()),
        })
    }

    fn mint(&self, subject: &str, access: Vec<Access>) -> anyhow::Result<String> {
        let now = unix_now();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "iat": now,
            "nbf": now.saturating_sub(10),
            "exp": now + 300,
            "jti": random_hex(8),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing a token: {e}"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

struct TokenState {
    users: HashMap<String, String>,
    /// `(user, repository)` pairs allowed to pull.
    grants: HashSet<(String, String)>,
    /// [`Auth::Verified`] and [`Auth::Grants`]: what credentials accepted
    /// by a function may pull.
    dynamic: Option<Dynamic>,
    admin_password: String,
    issuer: Arc<Issuer>,
    board: Switchboard,
}

/// `GET /token?service=..&scope=repository:<name>:<actions>...` with Basic
/// credentials, as Docker token authentication specifies.
async fn token(State(state): State<Arc<TokenState>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(fault) = state.board.enter(TOKEN, TOKEN).await {
        return fault;
    }
    let Some((user, password)) = basic_credentials(&headers) else {
        return denied("authentication required");
    };
    let is_admin = user == ADMIN && password == state.admin_password;
    let dynamic = state.dynamic.as_ref().and_then(|grants| grants(&user, &password));
    if !is_admin && dynamic.is_none() && state.users.get(&user) != Some(&password) {
        return denied("incorrect username or password");
    }
    let mut access = Vec::new();
    for (key, scope) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if key != "scope" {
            continue;
        }
        // repository:<name>:<actions>
        let Some(("repository", rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                is_admin
                    || (*action == "pull"
                        && (state.grants.contains(&(user.clone(), name.to_string()))
                            || dynamic.as_ref().is_some_and(|repos| repos.contains(name))))
            })
            .collect();
        // Like Docker Hub: a token without the access asked for, not an error.
        if !granted.is_empty() {
            access.push(Access::repository(name, &granted));
        }
    }
    match state.issuer.mint(&user, access) {
        Ok(token) => axum::Json(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": 300,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn denied(message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]});
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"regcred-testenv\"")],
        axum::Json(body),
    )
        .into_response()
}
