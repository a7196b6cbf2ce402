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
//! The scheme is always https ([`registry::api_base_url`]), as the kubelet's
//! runtime assumes for any registry not configured as insecure; a registry
//! with a private CA is trusted through the operator's `--ca-bundle`. Docker
//! Hub (`docker.io`) serves its API at `registry-1.docker.io`. Every 401 is
//! answered one way, as `docker pull` answers it (`Session::send_answering`).
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

use reqwest::Client;
use reqwest::header::ACCEPT;

use crate::api::PullAuthResult;
use crate::dockerconfig::RegistryAuth;
use crate::registry;

mod challenge;
mod manifest;
mod session;
mod verdict;

use self::challenge::challenges;
pub use self::challenge::{Challenge, Scheme, parse_challenge};
pub use self::manifest::{ManifestCheck, check_manifest};
use self::session::Session;
pub use self::session::TokenResponse;
use self::verdict::{Outcome, Step, judge, registry_error_code};
/// The parser of `healthCheck.image`, the image [`check`] takes.
pub use crate::registry::ImageRef;

/// Upper bound for one whole check, redirects and token request included.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Manifest media types a pull accepts: multi-platform indexes and
/// single-platform manifests, OCI and Docker.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
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

/// `Ok` is the final (healthy) outcome, `Err` the first failing one.
async fn probe(http: &Client, auth: &RegistryAuth, image: Option<&str>) -> Result<Outcome, Outcome> {
    let registry = auth.registry.as_str();
    let base = registry::api_base_url(registry);
    let target = image.map(|text| (text, ImageRef::parse(text, registry::is_docker_hub(registry))));
    let scope = match &target {
        Some((_, Some(image))) => Some(format!("repository:{}:pull", image.repository)),
        _ => None,
    };
    let mut session = Session::new(http, registry, Some(auth));

    let v2 = format!("{base}/v2/");
    let response = session.send_answering(|c| c.get(&v2), &v2, scope.as_deref()).await?;
    let status = response.status();
    let code = registry_error_code(response).await;
    let base_outcome = judge(registry, Step::Base, status, code.as_deref());
    if base_outcome.result != PullAuthResult::Healthy {
        return Err(base_outcome);
    }

    let Some((text, parsed)) = target else {
        if !session.answered() {
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
    // A registry that lets anyone read /v2/ may still ask for credentials here.
    let response = session.send_answering(head, &manifest, scope.as_deref()).await?;
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

#[cfg(test)]
mod tests {
    use super::challenge::*;
    use super::verdict::*;
    use super::*;
    use PullAuthResult::*;
    use reqwest::StatusCode;

    fn bearer(realm: &str, service: Option<&str>) -> Scheme {
        Scheme::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
        }
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
        let url = reqwest::Url::parse("https://u:p@auth.example/token?service=s&scope=x").unwrap();
        assert_eq!(endpoint_of(&url), "https://auth.example/token");
    }
}
