//! The kubelet's keyring: which `auths` entries of a pod's pull Secrets it
//! sends for an image. Pure; the rules of kubernetes/kubernetes
//! `pkg/credentialprovider/keyring.go` and `config.go`:
//!
//! - the image is normalized as `ParseImageName` does (`nginx` →
//!   `docker.io/library/nginx`), tag and digest dropped
//!   ([`crate::registry::repo_to_pull`]);
//! - a key gets `https://` if it has no scheme; its host (with port) and
//!   path are kept, a leading `/v1/` or `/v2/` counts as no path;
//! - a key matches when the ports are identical (`""` ≠ `"5000"`), the host
//!   has as many dot-labels as the image's, each label matches as a glob
//!   (`*` is one label, never several), and the key's path is a string
//!   prefix of the image's path;
//! - every matching entry is returned, keys in reverse-sorted order (more
//!   specific paths first); only when none matches, an `index.docker.io`
//!   entry serves Docker Hub images (`docker.io` ↔ `index.docker.io`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

use crate::redact::Sensitive;
use crate::registry::{self, DOCKER_HUB, DOCKER_HUB_INDEX, repo_to_pull};

/// One credential of the keyring: the Secret it came from and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The Secret's name.
    pub secret: String,
    /// The `auths` key as written, e.g. `https://index.docker.io/v1/`.
    pub key: String,
    pub username: String,
    pub password: Sensitive<String>,
}

/// Why a Secret gives the kubelet no credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("has no .dockerconfigjson or .dockercfg key")]
    NoConfig,
    #[error("is not a docker config JSON document")]
    Malformed,
    #[error("has an auth field that is not base64(username:password)")]
    BadAuth,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize, Default)]
struct RawEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// The entries of one pull Secret's data, as the kubelet reads them: the
/// `.dockerconfigjson` key's `auths`, or the older `.dockercfg` map; `auth`
/// wins over `username`/`password`.
pub fn entries(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Entry>, SecretError> {
    let raw: BTreeMap<String, RawEntry> = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfigJson>(json)
            .map_err(|_| SecretError::Malformed)?
            .auths
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice(json).map_err(|_| SecretError::Malformed)?
    } else {
        return Err(SecretError::NoConfig);
    };
    raw.into_iter()
        .map(|(key, e)| {
            let (username, password) = match e.auth.filter(|a| !a.is_empty()) {
                Some(auth) => decode_auth(&auth)?,
                None => (e.username.unwrap_or_default(), e.password.unwrap_or_default()),
            };
            Ok(Entry {
                secret: secret.to_string(),
                key,
                username,
                password: Sensitive::new(password),
            })
        })
        .collect()
}

fn decode_auth(auth: &str) -> Result<(String, String), SecretError> {
    let raw = STANDARD
        .decode(auth.trim())
        .or_else(|_| STANDARD_NO_PAD.decode(auth.trim()))
        .map_err(|_| SecretError::BadAuth)?;
    let text = String::from_utf8(raw).map_err(|_| SecretError::BadAuth)?;
    let (user, password) = text.split_once(':').ok_or(SecretError::BadAuth)?;
    Ok((user.to_string(), password.to_string()))
}

/// The entries the kubelet sends for `image`, in the order it tries them.
pub fn lookup<'a>(entries: &'a [Entry], image: &str) -> Vec<&'a Entry> {
    let repo = repo_to_pull(image);
    let mut keyed: Vec<(String, &Entry)> = entries
        .iter()
        .filter_map(|e| Some((normalize_key(&e.key)?, e)))
        .collect();
    // Reverse-sorted keys, as the kubelet's index: more specific paths first.
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    let matched: Vec<&Entry> = keyed
        .iter()
        .filter(|(key, _)| urls_match(key, &repo))
        .map(|(_, e)| *e)
        .collect();
    if !matched.is_empty() {
        return matched;
    }
    if is_default_registry_match(&repo) {
        return keyed
            .iter()
            .filter(|(key, _)| key == DOCKER_HUB_INDEX)
            .map(|(_, e)| *e)
            .collect();
    }
    Vec::new()
}

/// Whether an `auths` key (or a registry host written as one) would be used
/// for `image`: the same matching, for a single key.
pub fn key_matches(key: &str, image: &str) -> bool {
    let repo = repo_to_pull(image);
    match normalize_key(key) {
        Some(k) => urls_match(&k, &repo) || (k == DOCKER_HUB_INDEX && is_default_registry_match(&repo)),
        None => false,
    }
}

/// `BasicDockerKeyring.Add`'s key: `host[:port][/path]`, `/v1/` and `/v2/` dropped.
fn normalize_key(key: &str) -> Option<String> {
    let (host, path) = split_url(key)?;
    let path = match path.strip_prefix("/v2/").or_else(|| path.strip_prefix("/v1/")) {
        Some(rest) => format!("/{rest}"),
        None => path.to_string(),
    };
    if path.is_empty() || path == "/" {
        Some(host.to_string())
    } else {
        Some(format!("{host}{path}"))
    }
}

/// `https://` added when there is no scheme, then (host with port, path).
fn split_url(text: &str) -> Option<(&str, &str)> {
    let (host, path) = registry::split(text);
    (!host.is_empty()).then_some((host, path))
}

/// (hostname, port) of `host[:port]` (`[v6]:port` too); no port is `""`.
fn host_port(host: &str) -> (&str, &str) {
    if let Some((name, tail)) = host.strip_prefix('[').and_then(|h| h.split_once(']')) {
        return (name, tail.strip_prefix(':').unwrap_or_default());
    }
    host.rsplit_once(':').unwrap_or((host, ""))
}

/// `URLsMatch`: port identical, as many labels, each a glob match, path prefix.
fn urls_match(glob: &str, target: &str) -> bool {
    let (Some((glob_host, glob_path)), Some((target_host, target_path))) = (split_url(glob), split_url(target)) else {
        return false;
    };
    let (glob_name, glob_port) = host_port(glob_host);
    let (target_name, target_port) = host_port(target_host);
    if glob_port != target_port {
        return false;
    }
    let glob_labels: Vec<&str> = glob_name.split('.').collect();
    let target_labels: Vec<&str> = target_name.split('.').collect();
    if glob_labels.len() != target_labels.len() {
        return false;
    }
    if !target_path.starts_with(glob_path) {
        return false;
    }
    glob_labels
        .iter()
        .zip(&target_labels)
        .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
}

/// `isDefaultRegistryMatch`.
fn is_default_registry_match(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    if first.is_empty() {
        return false;
    }
    if parts.next().is_none() {
        return true;
    }
    first == DOCKER_HUB || first == DOCKER_HUB_INDEX || !first.contains(['.', ':'])
}

/// `filepath.Match` on one label: `*`, `?` and `[...]` classes (`^` negates).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let (negated, class) = match rest[..end].split_first() {
                Some((b'^', class)) => (true, class),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && glob_match(&rest[end + 1..], text_rest)
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(secret: &str, key: &str) -> Entry {
        Entry {
            secret: secret.into(),
            key: key.into(),
            username: "u".into(),
            password: Sensitive::new("p".into()),
        }
    }

    fn keys(entries: &[Entry], image: &str) -> Vec<String> {
        lookup(entries, image).iter().map(|e| e.key.clone()).collect()
    }

    #[test]
    fn keyring_matching_cases() {
        // (name, key, image, matches)
        let cases = [
            (
                "a key with a scheme and /v1/ is its host",
                "https://quay.io/v1/",
                "quay.io/org/app",
                true,
            ),
            (
                "a key with /v2/ is its host",
                "https://myreg:5000/v2/",
                "myreg:5000/app",
                true,
            ),
            ("a bare host matches its images", "gcr.io", "gcr.io/p/app:1", true),
            (
                "an http scheme is dropped like https",
                "http://gcr.io",
                "gcr.io/p/app",
                true,
            ),
            ("a port must be identical", "myreg", "myreg:5000/app", false),
            (
                "a port in the key needs it in the image",
                "myreg:5000",
                "myreg/app",
                false,
            ),
            ("ports that differ do not match", "myreg:5000", "myreg:5001/app", false),
            ("a glob matches one label", "*.azurecr.io", "team.azurecr.io/app", true),
            (
                "a glob never spans two labels",
                "*.azurecr.io",
                "a.b.azurecr.io/app",
                false,
            ),
            (
                "a glob does not match another domain",
                "*.docker.io",
                "not.right.io/app",
                false,
            ),
            (
                "a glob inside a label matches",
                "*.dkr.ecr.*.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
                true,
            ),
            ("? matches one character", "gcr.i?", "gcr.io/app", true),
            ("a class matches a range", "reg[0-9].io", "reg7.io/app", true),
            ("a negated class excludes", "reg[^0-9].io", "reg7.io/app", false),
            (
                "a path key is a prefix of the image's path",
                "quay.io/org",
                "quay.io/org/app",
                true,
            ),
            (
                "a path key is a plain string prefix",
                "quay.io/org",
                "quay.io/organization/app",
                true,
            ),
            (
                "a path key does not match another path",
                "quay.io/org",
                "quay.io/other/app",
                false,
            ),
            (
                "a path after /v2/ is kept",
                "https://reg.io/v2/team",
                "reg.io/team/app",
                true,
            ),
            (
                "docker.io matches Docker Hub images directly",
                "docker.io",
                "nginx",
                true,
            ),
            (
                "index.docker.io serves Docker Hub images through the fallback",
                "https://index.docker.io/v1/",
                "team/app",
                true,
            ),
            (
                "index.docker.io does not serve other registries",
                "https://index.docker.io/v1/",
                "quay.io/team/app",
                false,
            ),
            ("a different host does not match", "ghcr.io", "gcr.io/app", false),
        ];
        for (name, key, image, want) in cases {
            assert_eq!(key_matches(key, image), want, "{name}: key {key:?}, image {image:?}");
        }
    }

    #[test]
    fn every_match_is_returned_more_specific_paths_first() {
        let all = [
            entry("a", "quay.io"),
            entry("b", "quay.io/org"),
            entry("c", "ghcr.io"),
            entry("d", "quay.io/org/app"),
        ];
        assert_eq!(
            keys(&all, "quay.io/org/app:1"),
            ["quay.io/org/app", "quay.io/org", "quay.io"]
        );
    }

    #[test]
    fn the_docker_hub_fallback_applies_only_when_nothing_matched() {
        let both = [entry("idx", "https://index.docker.io/v1/"), entry("hub", "docker.io")];
        assert_eq!(keys(&both, "nginx"), ["docker.io"]);
        let index_only = [entry("idx", "https://index.docker.io/v1/")];
        assert_eq!(keys(&index_only, "nginx"), ["https://index.docker.io/v1/"]);
        assert!(keys(&index_only, "gcr.io/app").is_empty());
    }

    #[test]
    fn secrets_are_read_as_the_kubelet_reads_them() {
        let auth = STANDARD.encode("alice:s3cret");
        let json = format!(r#"{{"auths":{{"reg.io":{{"auth":"{auth}","username":"ignored","password":"ignored"}}}}}}"#);
        let data = BTreeMap::from([(".dockerconfigjson".to_string(), json.into_bytes())]);
        let got = entries("pull", &data).unwrap();
        assert_eq!(got[0].username, "alice");
        assert_eq!(got[0].password.expose(), "s3cret");
        assert_eq!(got[0].secret, "pull");

        let unpadded = STANDARD_NO_PAD.encode("bob:pw");
        let cfg = format!(r#"{{"old.io":{{"auth":"{unpadded}"}}}}"#);
        let data = BTreeMap::from([(".dockercfg".to_string(), cfg.into_bytes())]);
        assert_eq!(entries("legacy", &data).unwrap()[0].username, "bob");

        let data = BTreeMap::from([(".dockerconfigjson".to_string(), b"nope".to_vec())]);
        assert_eq!(entries("x", &data), Err(SecretError::Malformed));
        let no_colon = STANDARD.encode("nocolon");
        let json = format!(r#"{{"auths":{{"reg.io":{{"auth":"{no_colon}"}}}}}}"#);
        let data = BTreeMap::from([(".dockerconfigjson".to_string(), json.into_bytes())]);
        assert_eq!(entries("x", &data), Err(SecretError::BadAuth));
        assert_eq!(entries("x", &BTreeMap::new()), Err(SecretError::NoConfig));
    }
}
