//! What a registry asks for: its `WWW-Authenticate` challenges, and whether
//! an error code it names is fit to repeat.

use reqwest::Response;
use reqwest::header::WWW_AUTHENTICATE;

/// The challenge a client answers.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    /// A Bearer challenge's `error`, e.g. `insufficient_scope`, when sanitized.
    pub error: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
    Other(String),
}

pub(crate) fn challenges(response: &Response) -> Option<Challenge> {
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
pub fn parse_challenge<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
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

/// Whether a registry's error code (or a challenge's `error`) looks like one:
/// codes are a fixed vocabulary of words, and anything else is not repeated.
pub(crate) fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
