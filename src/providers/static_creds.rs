//! The static provider: long-lived credentials (e.g. a Docker Hub access
//! token) copied from a Secret in the credentials namespace.

use super::{Credential, MintError, MintInput, Provider};
use crate::api::{ProviderKind, StaticProvider};
use crate::dockerconfig::{self, RegistryAuth};
use crate::redact::Sensitive;

impl Provider for StaticProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Static
    }

    fn source_secret(&self) -> Option<&str> {
        Some(&self.secret_ref.name)
    }

    fn hosts(&self) -> Vec<String> {
        vec![self.registry.clone()]
    }

    async fn mint(&self, input: &MintInput<'_>) -> Result<Credential, MintError> {
        let name = &self.secret_ref.name;
        let secret = input.require_source(name)?;
        let auth = if secret.type_.as_deref() == Some(dockerconfig::SECRET_TYPE) {
            let json = secret
                .data
                .as_ref()
                .and_then(|d| d.get(dockerconfig::DATA_KEY))
                .ok_or_else(|| MintError::SourceSecretInvalid {
                    namespace: input.credentials_namespace.into(),
                    name: name.clone(),
                    problem: format!("has no key {:?}", dockerconfig::DATA_KEY),
                })?;
            dockerconfig::decode_entry(&json.0, &self.registry).map_err(|e| MintError::SourceSecretInvalid {
                namespace: input.credentials_namespace.into(),
                name: name.clone(),
                problem: e.to_string(),
            })?
        } else {
            RegistryAuth {
                registry: self.registry.clone(),
                username: input.source_value(name, &self.secret_ref.username_key)?,
                password: Sensitive::new(input.source_value(name, &self.secret_ref.password_key)?),
            }
        };
        // The kubelet splits `auth` at the first colon: a username with one
        // would send the wrong credential while everything looked fine.
        if auth.username.contains(':') {
            return Err(MintError::SourceSecretInvalid {
                namespace: input.credentials_namespace.into(),
                name: name.clone(),
                problem: "has a username containing ':', which registries and the kubelet cannot tell from the \
                          separator of username and password"
                    .into(),
            });
        }
        Ok(Credential {
            auths: vec![auth],
            not_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StaticSecretRef;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;

    fn provider() -> StaticProvider {
        StaticProvider {
            registry: "docker.io".into(),
            secret_ref: StaticSecretRef {
                name: "hub".into(),
                username_key: "username".into(),
                password_key: "password".into(),
            },
        }
    }

    fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            type_: type_.map(Into::into),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    async fn mint(source: Option<&Secret>) -> Result<Credential, MintError> {
        provider()
            .mint(&MintInput {
                source,
                credentials_namespace: "regcred-system",
                http: &reqwest::Client::new(),
            })
            .await
    }

    #[tokio::test]
    async fn reads_username_and_password_keys() {
        let s = secret(None, &[("username", b"me"), ("password", b"tok\n")]);
        let c = mint(Some(&s)).await.unwrap();
        assert_eq!(c.auths[0].username, "me");
        assert_eq!(c.auths[0].password.expose(), "tok");
        assert_eq!(c.not_after, None);
    }

    #[tokio::test]
    async fn reads_a_dockerconfigjson_source() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"username":"me","password":"tok"}}}"#;
        let s = secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockerconfigjson", json)]);
        let c = mint(Some(&s)).await.unwrap();
        assert_eq!(c.auths[0].username, "me");
    }

    #[tokio::test]
    async fn says_what_is_wrong_without_the_value() {
        let err = mint(None).await.unwrap_err();
        assert_eq!(err.reason(), "SourceSecretMissing");
        assert!(err.to_string().contains("regcred-system/hub"), "{err}");

        let s = secret(None, &[("username", b"me"), ("password", b"  ")]);
        let err = mint(Some(&s)).await.unwrap_err();
        assert_eq!(err.reason(), "SourceSecretInvalid");
        assert!(err.to_string().contains("\"password\" is empty"), "{err}");

        let s = secret(None, &[("username", b"me")]);
        let err = mint(Some(&s)).await.unwrap_err();
        assert!(err.to_string().contains("has no key \"password\""), "{err}");
    }

    #[tokio::test]
    async fn a_username_with_a_colon_is_refused() {
        let s = secret(None, &[("username", b"me:more"), ("password", b"pw")]);
        let err = mint(Some(&s)).await.unwrap_err();
        assert_eq!(err.reason(), "SourceSecretInvalid");
        assert!(err.to_string().contains("containing ':'"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
