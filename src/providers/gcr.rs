//! Google Container Registry / Artifact Registry: an OAuth2 access token from
//! gcp_auth (service-account key or the metadata server), written for every
//! host in `registries` with the username `oauth2accesstoken`.

use gcp_auth::{CustomServiceAccount, MetadataServiceAccount, TokenProvider};
use jiff::Timestamp;

use super::{Credential, MintError, MintInput, Provider};
use crate::api::{GcrProvider, ProviderKind};
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

pub const USERNAME: &str = "oauth2accesstoken";
pub(super) const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];

impl Provider for GcrProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gcr
    }

    fn source_secret(&self) -> Option<&str> {
        self.auth
            .as_ref()
            .map(|a| a.service_account_key.secret_ref.name.as_str())
    }

    fn hosts(&self) -> Vec<String> {
        self.registries.clone()
    }

    async fn mint(&self, input: &MintInput<'_>) -> Result<Credential, MintError> {
        // A new provider per mint: gcp_auth caches tokens inside it, and a
        // renewal must fetch a fresh one.
        let token = match &self.auth {
            Some(auth) => {
                let r = &auth.service_account_key.secret_ref;
                let json = input.source_value(&r.name, &r.key)?;
                let account = CustomServiceAccount::from_json(&json).map_err(|_| MintError::SourceSecretInvalid {
                    namespace: input.credentials_namespace.into(),
                    name: r.name.clone(),
                    problem: format!("key {:?} is not a valid Google service-account key (JSON)", r.key),
                })?;
                account.token(SCOPES).await
            }
            None => match MetadataServiceAccount::new().await {
                Ok(account) => account.token(SCOPES).await,
                Err(e) => Err(e),
            },
        }
        .map_err(|e| MintError::MintFailed(format!("getting a Google access token failed: {}", describe(&e))))?;
        Ok(credential(
            &self.registries,
            token.as_str(),
            token.expires_at().timestamp(),
        ))
    }
}

pub(super) fn credential(registries: &[String], access_token: &str, expires_at: i64) -> Credential {
    Credential {
        auths: registries
            .iter()
            .map(|host| RegistryAuth {
                registry: host.clone(),
                username: USERNAME.into(),
                password: Sensitive::new(access_token.to_string()),
            })
            .collect(),
        not_after: Timestamp::from_second(expires_at).ok(),
    }
}

/// gcp_auth's error without its source chain: a JSON error's text can quote
/// the response body, which may hold a token.
fn describe(e: &gcp_auth::Error) -> String {
    match e {
        gcp_auth::Error::Http(what, _) | gcp_auth::Error::Json(what, _) | gcp_auth::Error::Other(what, _) => {
            (*what).into()
        }
        gcp_auth::Error::Io(what, io) => format!("{what}: {}", io.kind()),
        gcp_auth::Error::Str(what) => (*what).into(),
        _ => "no usable Google credentials (service-account key or metadata server)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_registry_with_the_oauth2_username() {
        let c = credential(
            &["gcr.io".into(), "us-docker.pkg.dev".into()],
            "ya29.token",
            1_800_000_000,
        );
        assert_eq!(c.registries(), ["gcr.io", "us-docker.pkg.dev"]);
        assert!(
            c.auths
                .iter()
                .all(|a| a.username == "oauth2accesstoken" && a.password.expose() == "ya29.token")
        );
        assert_eq!(c.not_after.unwrap().as_second(), 1_800_000_000);
    }

    #[tokio::test]
    async fn without_a_metadata_server_the_error_says_so() {
        // Outside GCP the metadata host does not resolve: the default path must
        // fail with a message, not hang or panic.
        crate::connect::init_crypto();
        let p = GcrProvider {
            registries: vec!["gcr.io".into()],
            auth: None,
            ..Default::default()
        };
        let input = MintInput {
            source: None,
            credentials_namespace: "ns",
            http: &reqwest::Client::new(),
        };
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), p.mint(&input))
            .await
            .expect("metadata lookup gives up")
            .unwrap_err();
        assert_eq!(err.reason(), "MintFailed");
        assert!(err.to_string().contains("Google access token"), "{err}");
    }
}
