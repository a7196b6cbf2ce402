//! The `.dockerconfigjson` codec: `{"auths":{"<host>":{"username","password","auth"}}}`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::redact::Sensitive;
use crate::registry::{self, DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DATA_KEY: &str = ".dockerconfigjson";
/// The Secret type regcred writes, and the only one.
pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// Username and password for one registry host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAuth {
    /// Registry host as written in the spec or returned by the provider, e.g. `gcr.io`.
    pub registry: String,
    pub username: String,
    pub password: Sensitive<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("is not a valid docker config JSON document")]
    Malformed,
    #[error("has no entry for registry {0}")]
    NoEntry(String),
    #[error("has an entry for registry {0} without a username and password")]
    Incomplete(String),
}

#[derive(Serialize, Deserialize)]
struct DockerConfig {
    auths: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize, Default)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
}

/// The key under `auths` for a registry host. Docker Hub is written the way
/// docker and the kubelet look it up.
pub fn config_key(registry: &str) -> String {
    if registry::is_docker_hub(registry) {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Encode the auths into `.dockerconfigjson` bytes. Deterministic: the same
/// auths always give the same bytes, so unchanged Secrets are not rewritten.
pub fn encode(auths: &[RegistryAuth]) -> Vec<u8> {
    let config = DockerConfig {
        auths: auths
            .iter()
            .map(|a| {
                let password = a.password.expose();
                let entry = Entry {
                    username: Some(a.username.clone()),
                    password: Some(password.clone()),
                    auth: Some(STANDARD.encode(format!("{}:{password}", a.username))),
                };
                (config_key(&a.registry), entry)
            })
            .collect(),
    };
    serde_json::to_vec(&config).expect("a docker config always serializes")
}

/// The entry for `registry` in a `.dockerconfigjson` document.
pub fn decode_entry(json: &[u8], registry: &str) -> Result<RegistryAuth, DecodeError> {
    let config: DockerConfig = serde_json::from_slice(json).map_err(|_| DecodeError::Malformed)?;
    let wanted = registry::canonical(registry);
    let entry = config
        .auths
        .into_iter()
        .find(|(k, _)| registry::canonical(k) == wanted)
        .map(|(_, e)| e)
        .ok_or_else(|| DecodeError::NoEntry(registry.to_string()))?;
    let (username, password) = match (entry.username, entry.password, entry.auth) {
        (Some(u), Some(p), _) if !u.is_empty() && !p.is_empty() => (u, p),
        (_, _, Some(auth)) => {
            let raw = STANDARD
                .decode(auth.trim())
                .map_err(|_| DecodeError::Incomplete(registry.into()))?;
            let text = String::from_utf8(raw).map_err(|_| DecodeError::Incomplete(registry.into()))?;
            match text.split_once(':') {
                Some((u, p)) if !u.is_empty() && !p.is_empty() => (u.to_string(), p.to_string()),
                _ => return Err(DecodeError::Incomplete(registry.into())),
            }
        }
        _ => return Err(DecodeError::Incomplete(registry.into())),
    };
    Ok(RegistryAuth {
        registry: registry.to_string(),
        username,
        password: Sensitive::new(password),
    })
}

/// Every entry of a `.dockerconfigjson` document regcred wrote, by host.
pub fn decode_all(json: &[u8]) -> Result<Vec<RegistryAuth>, DecodeError> {
    let config: DockerConfig = serde_json::from_slice(json).map_err(|_| DecodeError::Malformed)?;
    config
        .auths
        .keys()
        .map(|k| {
            let host = if k == DOCKER_HUB_CONFIG_KEY {
                DOCKER_HUB.to_string()
            } else {
                k.clone()
            };
            decode_entry(json, &host)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(registry: &str, user: &str, pass: &str) -> RegistryAuth {
        RegistryAuth {
            registry: registry.into(),
            username: user.into(),
            password: Sensitive::new(pass.into()),
        }
    }

    #[test]
    fn encodes_the_kubelet_format() {
        let bytes = encode(&[auth("gcr.io", "oauth2accesstoken", "tok")]);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["auths"]["gcr.io"]["username"], "oauth2accesstoken");
        assert_eq!(v["auths"]["gcr.io"]["password"], "tok");
        assert_eq!(v["auths"]["gcr.io"]["auth"], STANDARD.encode("oauth2accesstoken:tok"));
    }

    #[test]
    fn docker_hub_uses_the_index_key() {
        let bytes = encode(&[auth("docker.io", "me", "p")]);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["auths"]["https://index.docker.io/v1/"].is_object());
    }

    #[test]
    fn encoding_is_deterministic() {
        let a = [auth("b.io", "u", "p"), auth("a.io", "u", "p")];
        let b = [auth("a.io", "u", "p"), auth("b.io", "u", "p")];
        assert_eq!(encode(&a), encode(&b));
    }

    #[test]
    fn round_trips() {
        let auths = vec![
            auth("docker.io", "me", "p:with:colons"),
            auth("127.0.0.1:5000", "u", "pw"),
        ];
        let mut back = decode_all(&encode(&auths)).unwrap();
        back.sort_by(|a, b| b.registry.cmp(&a.registry));
        assert_eq!(back, auths);
    }

    #[test]
    fn decodes_aliases_and_auth_only_entries() {
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"https://ghcr.io/":{{"username":"x","password":"y"}}}}}}"#,
            STANDARD.encode("me:secret")
        );
        let hub = decode_entry(json.as_bytes(), "docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.expose().as_str()),
            ("me", "secret")
        );
        let ghcr = decode_entry(json.as_bytes(), "ghcr.io").unwrap();
        assert_eq!(ghcr.username, "x");
    }

    #[test]
    fn reports_missing_and_incomplete_entries() {
        assert_eq!(decode_entry(b"not json", "a.io"), Err(DecodeError::Malformed));
        assert_eq!(
            decode_entry(br#"{"auths":{}}"#, "a.io"),
            Err(DecodeError::NoEntry("a.io".into()))
        );
        assert_eq!(
            decode_entry(br#"{"auths":{"a.io":{"username":"u"}}}"#, "a.io"),
            Err(DecodeError::Incomplete("a.io".into()))
        );
    }
}
