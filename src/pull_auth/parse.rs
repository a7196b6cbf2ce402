//! Parsers for what registries and users write: `WWW-Authenticate` challenges and image references.

use reqwest::Response;
use reqwest::header::WWW_AUTHENTICATE;

use super::verdict::is_code;

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

/// `healthCheck.image` as a repository and a tag or digest.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub reference: String,
}

impl ImageRef {
    /// `None` unless `image` is `repo[:tag]` or `repo@<alg>:<hex>` without a
    /// host. Docker Hub's official images live under `library/`.
    pub fn parse(image: &str, docker_hub: bool) -> Option<Self> {
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
pub(crate) fn strip_tag(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}
