//! What an answer means: HTTP statuses and transport errors as results and sentences.

use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use super::challenge::is_code;
use crate::api::PullAuthResult;

/// A result with its message; what every step either passes on or stops with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(super) result: PullAuthResult,
    pub(super) message: String,
}

impl Outcome {
    pub(super) fn new(result: PullAuthResult, message: String) -> Self {
        Self { result, message }
    }
}

/// Which request a status answered, for the mapping and the message.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step<'a> {
    /// `GET /v2/`.
    Base,
    /// The token request to a Bearer challenge's realm.
    Token { endpoint: &'a str },
    /// `HEAD /v2/<repo>/manifests/<ref>` for `healthCheck.image`.
    Manifest { image: &'a str },
}

impl Step<'_> {
    pub(crate) fn place(&self) -> String {
        match self {
            Step::Base => "on /v2/".to_string(),
            Step::Token { endpoint } => format!("from the token endpoint {endpoint}"),
            Step::Manifest { image } => format!("on the manifest of {image}"),
        }
    }
}

/// Map one HTTP status to a result. `detail` is the registry's error code or
/// the challenge's `error` (e.g. `insufficient_scope`), already sanitized.
pub(crate) fn judge(registry: &str, step: Step<'_>, status: StatusCode, detail: Option<&str>) -> Outcome {
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
pub(crate) fn unreachable(registry: &str, url: &str, error: &reqwest::Error) -> Outcome {
    let endpoint = Url::parse(url).map(|u| endpoint_of(&u)).unwrap_or_default();
    let (cause, hint) = transport_cause(error);
    Outcome::new(
        PullAuthResult::Unreachable,
        format!("cannot reach registry {registry} at {endpoint}: {cause}; {hint}"),
    )
}

pub(crate) fn transport_cause(error: &reqwest::Error) -> (String, &'static str) {
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
pub(crate) fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

/// The registry's error code from an OCI error body (`{"errors":[{"code":..}]}`),
/// if it looks like one: codes are a fixed vocabulary of upper-case words.
pub(crate) async fn registry_error_code(response: Response) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: String,
    }
    let body = crate::bounded::read(response, crate::bounded::MAX_BODY).await.ok()?;
    let body: Envelope = serde_json::from_slice(&body).ok()?;
    let code = body.errors.into_iter().next()?.code;
    is_code(&code).then_some(code)
}

/// A realm for messages: scheme, host, port and path, never a query.
pub(crate) fn endpoint_of(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}
