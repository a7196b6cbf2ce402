//! Registry pull-auth health: prove a credential against a registry's `/v2/`
//! endpoint and, optionally, a manifest.
//!
//! The flow is the one `docker login` and `docker pull` follow (OCI
//! distribution spec, Docker token authentication): `GET /v2/` without
//! credentials, answer its `WWW-Authenticate` challenge (`Basic`: send the
//! credential; `Bearer`: trade it for a token at the challenge's realm), `GET
//! /v2/` again with that, and for `healthCheck.image` `HEAD` the manifest with
//! a token scoped to that repository. Every check is bounded by
//! [`CHECK_TIMEOUT`], whatever the HTTP client's own timeouts.
//!
//! The scheme is always https ([`base_url`]), as the kubelet's runtime
//! assumes for any registry not configured as insecure; a registry with a
//! private CA is trusted through the operator's `--ca-bundle`. Docker Hub
//! (`docker.io`) serves its API at `registry-1.docker.io`.
//!
//! Why not `oci-client` (0.18), which implements this protocol for pulls:
//! - `Client::auth` needs an image reference and always requests a repository
//!   scope, so it cannot make the scopeless `/v2/` login check;
//! - on a `Basic` challenge it hands the credential back without sending it,
//!   and after a `Bearer` token it never retries `/v2/`, so a wrong password
//!   on an htpasswd registry would look healthy;
//! - a refused token request is `AuthenticationFailure(<response body>)`
//!   without the HTTP status: telling 401 from 503 would mean matching body
//!   text, and the body would reach status messages verbatim;
//! - it builds its own reqwest client and cannot use the operator's (CA
//!   bundle, timeouts).
//!
//! What is left is three requests over the shared client; the challenge
//! grammar (quoted, comma-holding `scope` values) is parsed by `http-auth`,
//! the parser oci-client itself uses.
//!
//! Messages name the registry, the step and the HTTP status, and never carry
//! the password, a token, an `Authorization` header or a response body: at
//! most the registry's error `code` (e.g. `UNAUTHORIZED`).

use std::time::Duration;

use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use crate::api::PullAuthResult;
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

/// Upper bound for one whole check, redirects and token request included.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Where Docker Hub serves the registry API (`docker.io` serves a website).
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Manifest media types a pull accepts: multi-platform indexes and
/// single-platform manifests, OCI and Docker.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The outcome of one check, for `status.pullAuth` and the `PullAuthHealthy` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub result: PullAuthResult,
    /// The registry as the credential names it (e.g. `docker.io`).
    pub registry: String,
    /// One sentence saying what the registry answered and what to do about it.
    pub message: String,
}

/// Prove `auth` against its registry and, with `image` (`team/app:1.2.3`,
/// `team/app@sha256:…`, no host, default tag `latest`), pull access to that
/// image's manifest. Never fails: every failure is a [`Probe`] result.
pub async fn check(http: &Client, auth: &RegistryAuth, image: Option<&str>) -> Probe {
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe(http, auth, image)).await {
        Ok(Ok(outcome) | Err(outcome)) => outcome,
        Err(_) => Outcome::new(
            PullAuthResult::Unreachable,
            format!(
                "registry {} did not finish answering within {}s: check the network path from the operator \
                 to the registry and its token endpoint",
                auth.registry,
                CHECK_TIMEOUT.as_secs()
            ),
        ),
    };
    Probe {
        result: outcome.result,
        registry: auth.registry.clone(),
        message: outcome.message,
    }
}

/// The base URL of a registry's API: https, on the host of `registry` (a
/// scheme or path written with it is dropped), Docker Hub on its API host.
pub fn base_url(registry: &str) -> String {
    let host = host_of(registry);
    if is_docker_hub(host) {
        format!("https://{DOCKER_HUB_API}")
    } else {
        format!("https://{host}")
    }
}

fn host_of(registry: &str) -> &str {
    let registry = registry.trim();
    let registry = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    registry.split('/').next().unwrap_or_default()
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        host_of(registry).to_ascii_lowercase().as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// A result with its message; what every step either passes on or stops with.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    result: PullAuthResult,
    message: String,
}

impl Outcome {
    fn new(result: PullAuthResult, message: String) -> Self {
        Self { result, message }
    }
}

/// `Ok` is the final (healthy) outcome, `Err` the first failing one.
async fn probe(http: &Client, auth: &RegistryAuth, image: Option<&str>) -> Result<Outcome, Outcome> {
    let registry = auth.registry.as_str();
    let base = base_url(registry);
    let target = image.map(|text| (text, ImageRef::parse(text, is_docker_hub(registry))));
    let scope = match &target {
        Some((_, Some(image))) => Some(format!("repository:{}:pull", image.repository)),
        _ => None,
    };
    let mut session = Session {
        http,
        auth,
        credential: None,
    };

    let v2 = format!("{base}/v2/");
    let mut response = session.send(|c| c.get(&v2), &v2).await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        session.authenticate(&response, scope.as_deref()).await?;
        response = session.send(|c| c.get(&v2), &v2).await?;
    }
    let status = response.status();
    let code = registry_error_code(response).await;
    let base_outcome = judge(registry, Step::Base, status, code.as_deref());
    if base_outcome.result != PullAuthResult::Healthy {
        return Err(base_outcome);
    }

    let Some((text, parsed)) = target else {
        if session.credential.is_none() {
            return Ok(Outcome::new(
                PullAuthResult::Healthy,
                format!(
                    "registry {registry} answers /v2/ without asking for credentials, so the credential was not \
                     exercised: set spec.healthCheck.image to prove pull access"
                ),
            ));
        }
        return Ok(base_outcome);
    };
    let Some(image) = parsed else {
        return Err(Outcome::new(
            PullAuthResult::ImageNotFound,
            format!(
                "registry {registry} accepted the credential, but spec.healthCheck.image {text:?} is not an image \
                 reference without the registry host, like team/app:1.2.3 or team/app@sha256:<digest>: fix it"
            ),
        ));
    };
    let manifest = format!("{base}/v2/{}/manifests/{}", image.repository, image.reference);
    let head = |c: &Client| c.head(&manifest).header(ACCEPT, MANIFEST_ACCEPT);
    let mut response = session.send(head, &manifest).await?;
    // A registry that lets anyone read /v2/ may still ask for credentials here.
    if response.status() == StatusCode::UNAUTHORIZED && session.credential.is_none() {
        session.authenticate(&response, scope.as_deref()).await?;
        response = session.send(head, &manifest).await?;
    }
    let denial = challenges(&response).and_then(|c| c.error);
    let outcome = judge(
        registry,
        Step::Manifest { image: text },
        response.status(),
        denial.as_deref(),
    );
    match outcome.result {
        PullAuthResult::Healthy => Ok(outcome),
        _ => Err(outcome),
    }
}

/// The requests of one check, with the credential once a challenge asked for it.
struct Session<'a> {
    http: &'a Client,
    auth: &'a RegistryAuth,
    credential: Option<Credential>,
}

enum Credential {
    Basic,
    Bearer(Sensitive<String>),
}

impl Session<'_> {
    async fn send(&self, build: impl Fn(&Client) -> RequestBuilder, url: &str) -> Result<Response, Outcome> {
        let mut request = build(self.http);
        request = match &self.credential {
            None => request,
            Some(Credential::Basic) => request.basic_auth(&self.auth.username, Some(self.auth.password.expose())),
            Some(Credential::Bearer(token)) => request.bearer_auth(token.expose()),
        };
        request
            .send()
            .await
            .map_err(|e| unreachable(&self.auth.registry, url, &e))
    }

    /// Answer the challenge of a 401: keep the credential for Basic, trade it
    /// for a token for Bearer.
    async fn authenticate(&mut self, response: &Response, scope: Option<&str>) -> Result<(), Outcome> {
        let registry = &self.auth.registry;
        // A 401 without a challenge is answered with Basic, the one scheme that needs no parameters.
        let challenge = challenges(response).unwrap_or(Challenge {
            scheme: Scheme::Basic,
            error: None,
        });
        self.credential = Some(match challenge.scheme {
            Scheme::Basic => Credential::Basic,
            Scheme::Bearer { realm, service } => {
                Credential::Bearer(self.token(&realm, service.as_deref(), scope).await?)
            }
            Scheme::Other(scheme) => {
                return Err(Outcome::new(
                    PullAuthResult::Unknown,
                    format!(
                        "registry {registry} asks for {scheme:?} authentication, which neither regcred nor container \
                         runtimes speak (only Basic and Bearer): check the registry host"
                    ),
                ));
            }
        });
        Ok(())
    }

    /// A token from the realm of a Bearer challenge, requested with the credential.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Sensitive<String>, Outcome> {
        let registry = &self.auth.registry;
        let unknown = |why: &str| Outcome::new(PullAuthResult::Unknown, format!("registry {registry} {why}"));
        let mut url = Url::parse(realm)
            .map_err(|_| unknown("names a token endpoint that is not a URL: check the registry host"))?;
        if url.scheme() != "https" {
            return Err(unknown(&format!(
                "names a token endpoint without TLS ({}), where regcred does not send credentials: serve it over \
                 https",
                endpoint_of(&url)
            )));
        }
        let endpoint = endpoint_of(&url);
        if service.is_some() || scope.is_some() {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .basic_auth(&self.auth.username, Some(self.auth.password.expose()))
            .send()
            .await
            .map_err(|e| unreachable(registry, &endpoint, &e))?;
        let status = response.status();
        if !status.is_success() {
            let code = registry_error_code(response).await;
            return Err(judge(
                registry,
                Step::Token { endpoint: &endpoint },
                status,
                code.as_deref(),
            ));
        }
        let body: TokenResponse = response.json().await.map_err(|_| {
            unknown(&format!(
                "answered the token request at {endpoint} with something other than a token: check the registry host"
            ))
        })?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .map(Sensitive::new)
            .ok_or_else(|| {
                unknown(&format!(
                    "answered the token request at {endpoint} without a token: check the registry host"
                ))
            })
    }
}

/// Docker token authentication's answer; older servers say `access_token`.
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// A realm for messages: scheme, host, port and path, never a query.
fn endpoint_of(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Which request a status answered, for the mapping and the message.
#[derive(Clone, Copy, Debug)]
enum Step<'a> {
    /// `GET /v2/`.
    Base,
    /// The token request to a Bearer challenge's realm.
    Token { endpoint: &'a str },
    /// `HEAD /v2/<repo>/manifests/<ref>` for `healthCheck.image`.
    Manifest { image: &'a str },
}

impl Step<'_> {
    fn place(&self) -> String {
        match self {
            Step::Base => "on /v2/".to_string(),
            Step::Token { endpoint } => format!("from the token endpoint {endpoint}"),
            Step::Manifest { image } => format!("on the manifest of {image}"),
        }
    }
}

/// Map one HTTP status to a result. `detail` is the registry's error code or
/// the challenge's `error` (e.g. `insufficient_scope`), already sanitized.
fn judge(registry: &str, step: Step<'_>, status: StatusCode, detail: Option<&str>) -> Outcome {
    use PullAuthResult::*;
    let http = match detail {
        Some(detail) => format!("HTTP {} {detail}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    let place = step.place();
    let (result, message) = match (step, status) {
        (Step::Manifest { image }, s) if s.is_success() => (
            Healthy,
            format!("registry {registry} accepted the credential for pulling {image}"),
        ),
        (_, s) if s.is_success() => (Healthy, format!("registry {registry} accepted the credential")),
        (Step::Manifest { image }, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            if status == StatusCode::FORBIDDEN
                || detail.is_some_and(|d| d.eq_ignore_ascii_case("insufficient_scope")) =>
        {
            (
                Unauthorized,
                format!(
                    "registry {registry} denied pulling {image} with this credential ({http}): grant it pull access \
                     to that repository, or fix spec.healthCheck.image"
                ),
            )
        }
        (Step::Manifest { image }, StatusCode::UNAUTHORIZED) => (
            Unauthorized,
            format!(
                "registry {registry} rejected the credential for {image} ({http}): check the source credentials \
                 and their access to that repository"
            ),
        ),
        (_, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => (
            Unauthorized,
            format!("registry {registry} rejected the credential ({http} {place}): check the source credentials"),
        ),
        (Step::Manifest { image }, StatusCode::NOT_FOUND) => (
            ImageNotFound,
            format!(
                "registry {registry} has no image {image} ({http} on its manifest): check spec.healthCheck.image \
                 and that the image was pushed"
            ),
        ),
        (_, StatusCode::NOT_FOUND) => (
            Unreachable,
            format!(
                "registry {registry} answered {http} {place}: nothing serves the registry API there; check the \
                 registry host"
            ),
        ),
        (_, StatusCode::TOO_MANY_REQUESTS) => (
            Unreachable,
            format!("registry {registry} throttled the check ({http} {place}): it is checked again later"),
        ),
        (_, s) if s.is_server_error() => (
            Unreachable,
            format!("registry {registry} is failing ({http} {place}): it is checked again later"),
        ),
        _ => (
            Unknown,
            format!(
                "registry {registry} answered {http} {place}, which says nothing about the credential: check the \
                 registry host"
            ),
        ),
    };
    Outcome::new(result, message)
}

/// A transport failure (connect, DNS, TLS, timeout) in words, without the
/// request's URL query or headers.
fn unreachable(registry: &str, url: &str, error: &reqwest::Error) -> Outcome {
    let endpoint = Url::parse(url).map(|u| endpoint_of(&u)).unwrap_or_default();
    let (cause, hint) = transport_cause(error);
    Outcome::new(
        PullAuthResult::Unreachable,
        format!("cannot reach registry {registry} at {endpoint}: {cause}; {hint}"),
    )
}

fn transport_cause(error: &reqwest::Error) -> (String, &'static str) {
    const NETWORK: &str = "check the registry host and the network path from the operator";
    if error.is_timeout() {
        return ("the request timed out".into(), NETWORK);
    }
    // reqwest's own message names the URL with its query; the causes below it do not.
    let mut innermost = None;
    for cause in causes(error).skip(1) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return (
                format!("the TLS handshake failed ({tls})"),
                "if the registry's certificate comes from a private CA, give regcred that CA with --ca-bundle",
            );
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ("connection refused".into(), NETWORK),
                std::io::ErrorKind::TimedOut => return ("the connection timed out".into(), NETWORK),
                _ => {}
            }
        }
        innermost = Some(cause);
    }
    let cause = match innermost {
        Some(e) => e.to_string(),
        None if error.is_connect() => "the connection failed".into(),
        None => "the request failed".into(),
    };
    (cause, NETWORK)
}

/// An error and its causes, looking inside `io::Error`s, whose `source` skips
/// the error they wrap (rustls' errors come wrapped, sometimes twice).
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

/// The registry's error code from an OCI error body (`{"errors":[{"code":..}]}`),
/// if it looks like one: codes are a fixed vocabulary of upper-case words.
async fn registry_error_code(response: Response) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: String,
    }
    let body: Envelope = response.json().await.ok()?;
    let code = body.errors.into_iter().next()?.code;
    is_code(&code).then_some(code)
}

fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The challenge a client answers.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: Scheme,
    /// A Bearer challenge's `error`, e.g. `insufficient_scope`, when sanitized.
    error: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
    Other(String),
}

fn challenges(response: &Response) -> Option<Challenge> {
    parse_challenge(
        response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The challenge to answer among those of the `WWW-Authenticate` headers:
/// Bearer (with a realm) before Basic before anything else. Unparseable
/// headers are ignored.
fn parse_challenge<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    for header in headers {
        let Ok(parsed) = http_auth::parse_challenges(header) else {
            continue;
        };
        for challenge in parsed {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let scheme = if challenge.scheme.eq_ignore_ascii_case("basic") {
                Scheme::Basic
            } else if challenge.scheme.eq_ignore_ascii_case("bearer")
                && let Some(realm) = param("realm")
            {
                Scheme::Bearer {
                    realm,
                    service: param("service"),
                }
            } else {
                Scheme::Other(challenge.scheme.to_string())
            };
            let error = param("error").filter(|e| is_code(e));
            found.push(Challenge { scheme, error });
        }
    }
    let rank = |c: &Challenge| match c.scheme {
        Scheme::Bearer { .. } => 0,
        Scheme::Basic => 1,
        Scheme::Other(_) => 2,
    };
    found.into_iter().min_by_key(rank)
}

/// `healthCheck.image` as a repository and a tag or digest.
#[derive(Debug, PartialEq, Eq)]
struct ImageRef {
    repository: String,
    reference: String,
}

impl ImageRef {
    /// `None` unless `image` is `repo[:tag]` or `repo@<alg>:<hex>` without a
    /// host. Docker Hub's official images live under `library/`.
    fn parse(image: &str, docker_hub: bool) -> Option<Self> {
        let (name, reference) = match image.split_once('@') {
            Some((name, digest)) => (strip_tag(name), digest.to_string()),
            None => match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (image, "latest".to_string()),
            },
        };
        let valid_reference = match reference.split_once(':') {
            Some((alg, hex)) => {
                !alg.is_empty()
                    && alg
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                    && hex.len() >= 32
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }
            None => {
                (1..=128).contains(&reference.len())
                    && !reference.starts_with(['.', '-'])
                    && reference
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            }
        };
        let valid_name = name.split('/').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !valid_reference || !valid_name {
            return None;
        }
        let repository = if docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        };
        Some(Self { repository, reference })
    }
}

/// `team/app:1.0` of `team/app:1.0@sha256:…`: the digest wins, as in docker.
fn strip_tag(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PullAuthResult::*;

    fn bearer(realm: &str, service: Option<&str>) -> Scheme {
        Scheme::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
        }
    }

    #[test]
    fn docker_hub_is_probed_on_its_api_host() {
        assert_eq!(base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(base_url("https://index.docker.io/v1/"), "https://registry-1.docker.io");
        assert_eq!(base_url("gcr.io"), "https://gcr.io");
        assert_eq!(base_url("127.0.0.1:5000"), "https://127.0.0.1:5000");
        assert_eq!(
            base_url("https://123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        // Plain http is never used, even when written.
        assert_eq!(base_url("http://registry.local:5000"), "https://registry.local:5000");
    }

    #[test]
    fn bearer_challenge_with_quoted_scope() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:team/app:pull,push",error="insufficient_scope""#;
        assert_eq!(
            parse_challenge([header]),
            Some(Challenge {
                scheme: bearer("https://auth.docker.io/token", Some("registry.docker.io")),
                error: Some("insufficient_scope".into()),
            })
        );
    }

    #[test]
    fn basic_challenge() {
        assert_eq!(
            parse_challenge([r#"Basic realm="basic-realm""#]),
            Some(Challenge {
                scheme: Scheme::Basic,
                error: None
            })
        );
        assert_eq!(parse_challenge(["basic"]).map(|c| c.scheme), Some(Scheme::Basic));
    }

    #[test]
    fn bearer_is_preferred_and_needs_a_realm() {
        let picked = parse_challenge([r#"Basic realm="r""#, r#"Bearer realm="https://t/token""#]);
        assert_eq!(picked.map(|c| c.scheme), Some(bearer("https://t/token", None)));
        let picked = parse_challenge([r#"Negotiate, Basic realm="r""#]);
        assert_eq!(picked.map(|c| c.scheme), Some(Scheme::Basic));
        let picked = parse_challenge([r#"Bearer service="x""#]);
        assert_eq!(picked.map(|c| c.scheme), Some(Scheme::Other("Bearer".into())));
    }

    #[test]
    fn malformed_or_absent_challenges_are_ignored() {
        assert_eq!(parse_challenge([]), None);
        assert_eq!(parse_challenge([r#"Bearer realm="unterminated"#]), None);
        let picked = parse_challenge(["Basic realm=\"r\", error error", r#"Bearer realm="https://t""#]);
        assert_eq!(picked.map(|c| c.scheme), Some(bearer("https://t", None)));
    }

    #[test]
    fn challenge_error_is_kept_only_when_it_looks_like_a_code() {
        let picked = parse_challenge([r#"Bearer realm="https://t",error="<script>oops</script>""#]);
        assert_eq!(picked.and_then(|c| c.error), None);
    }

    #[test]
    fn image_references() {
        let parse = |s: &str| ImageRef::parse(s, false).map(|r| (r.repository, r.reference));
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parse("team/app:1.2.3"), pair("team/app", "1.2.3"));
        assert_eq!(parse("team/app"), pair("team/app", "latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse(&format!("team/app@{digest}")), pair("team/app", &digest));
        assert_eq!(parse(&format!("team/app:1.0@{digest}")), pair("team/app", &digest));
        assert_eq!(parse("Team/App:1"), None);
        assert_eq!(parse("team//app"), None);
        assert_eq!(parse("team/app:"), None);
        assert_eq!(parse("team/app@sha256:xyz"), None);
        assert_eq!(parse(""), None);
        let hub = ImageRef::parse("nginx:1.27", true).unwrap();
        assert_eq!(hub.repository, "library/nginx");
        assert_eq!(ImageRef::parse("team/app", true).unwrap().repository, "team/app");
    }

    fn judged(step: Step<'_>, status: u16, detail: Option<&str>) -> Outcome {
        judge("r.example", step, StatusCode::from_u16(status).unwrap(), detail)
    }

    #[test]
    fn outcome_mapping() {
        let token = Step::Token {
            endpoint: "https://auth.example/token",
        };
        let manifest = Step::Manifest { image: "team/app:1" };
        let cases = [
            (Step::Base, 200, Healthy),
            (Step::Base, 401, Unauthorized),
            (Step::Base, 403, Unauthorized),
            (Step::Base, 404, Unreachable),
            (Step::Base, 429, Unreachable),
            (Step::Base, 503, Unreachable),
            (Step::Base, 400, Unknown),
            (token, 401, Unauthorized),
            (token, 500, Unreachable),
            (manifest, 200, Healthy),
            (manifest, 401, Unauthorized),
            (manifest, 403, Unauthorized),
            (manifest, 404, ImageNotFound),
            (manifest, 502, Unreachable),
        ];
        for (step, status, expected) in cases {
            assert_eq!(judged(step, status, None).result, expected, "{step:?} HTTP {status}");
        }
    }

    #[test]
    fn messages_say_where_and_what_to_do() {
        let token = Step::Token {
            endpoint: "https://auth.example/token",
        };
        assert_eq!(
            judged(token, 401, None).message,
            "registry r.example rejected the credential (HTTP 401 from the token endpoint \
             https://auth.example/token): check the source credentials"
        );
        assert_eq!(
            judged(Step::Base, 401, Some("UNAUTHORIZED")).message,
            "registry r.example rejected the credential (HTTP 401 UNAUTHORIZED on /v2/): check the source credentials"
        );
        let denied = judged(Step::Manifest { image: "team/secret" }, 401, Some("insufficient_scope"));
        assert_eq!(denied.result, Unauthorized);
        assert!(
            denied.message.contains("denied pulling team/secret"),
            "{}",
            denied.message
        );
        assert!(denied.message.contains("insufficient_scope"), "{}", denied.message);
        let missing = judged(Step::Manifest { image: "team/app:9" }, 404, None);
        assert!(
            missing.message.contains("spec.healthCheck.image"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn error_codes_are_words_only() {
        assert!(is_code("UNAUTHORIZED"));
        assert!(is_code("insufficient_scope"));
        assert!(!is_code(""));
        assert!(!is_code("a b"));
        assert!(!is_code(&"A".repeat(65)));
    }

    #[test]
    fn realms_are_shown_without_query_or_userinfo() {
        let url = Url::parse("https://u:p@auth.example/token?service=s&scope=x").unwrap();
        assert_eq!(endpoint_of(&url), "https://auth.example/token");
    }
}
