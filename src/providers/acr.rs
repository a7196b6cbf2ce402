//! Azure Container Registry: an Entra ID token from azure_identity (workload
//! identity, managed identity or a service principal), exchanged at the
//! registry's `/oauth2/exchange` for an ACR refresh token, which the kubelet
//! uses as the password of the all-zero user.

use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use super::{Credential, MAX_SECRET_LEN, MintError, MintInput, Provider};
use crate::api::{AcrProvider, ProviderKind};
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

/// The docker username for ACR refresh tokens.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
pub(super) const SCOPE: &str = "https://containerregistry.azure.net/.default";
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

impl Provider for AcrProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Acr
    }

    fn source_secret(&self) -> Option<&str> {
        self.auth
            .as_ref()
            .and_then(|a| a.service_principal.as_ref())
            .map(|sp| sp.secret_ref.name.as_str())
    }

    fn hosts(&self) -> Vec<String> {
        vec![self.registry.clone()]
    }

    async fn mint(&self, input: &MintInput<'_>) -> Result<Credential, MintError> {
        let credential = self.credential(input)?;
        let aad = credential.get_token(&[SCOPE], None).await.map_err(|e| {
            MintError::MintFailed(format!("getting an Entra ID token failed: {}", short(&e.to_string())))
        })?;
        redeem(input.http, &self.registry, &self.tenant_id, aad.token.secret()).await
    }
}

/// The registry's credential for an Entra ID token of `tenant`: the
/// exchanged refresh token as the password of the all-zero user.
pub(super) async fn redeem(
    http: &reqwest::Client,
    registry: &str,
    tenant: &str,
    aad_token: &str,
) -> Result<Credential, MintError> {
    let refresh = exchange(http, registry, tenant, aad_token).await?;
    let not_after = jwt_expiry(&refresh)?;
    Ok(Credential {
        auths: vec![RegistryAuth {
            registry: registry.to_string(),
            username: USERNAME.into(),
            password: Sensitive::new(refresh),
        }],
        not_after: Some(not_after),
    })
}

impl AcrProvider {
    pub(super) fn client_options(&self, input: &MintInput<'_>) -> ClientOptions {
        ClientOptions {
            // One HTTP client for everything regcred calls, with the operator's CA bundle.
            transport: Some(Transport::new(Arc::new(input.http.clone()))),
            // azure_core would retry a 429 for up to a minute inside one mint;
            // regcred's own backoff (which honours Retry-After) does that job.
            retry: RetryOptions::none(),
            cloud: self.authority_host.as_ref().map(|host| {
                let mut custom = CustomConfiguration::default();
                custom.authority_host = host.clone();
                Arc::new(CloudConfiguration::Custom(custom))
            }),
            ..Default::default()
        }
    }

    fn credential(&self, input: &MintInput<'_>) -> Result<Arc<dyn TokenCredential>, MintError> {
        let options = self.client_options(input);
        let failed = |e: azure_core::Error| {
            MintError::MintFailed(format!(
                "configuring the Azure credential failed: {}",
                short(&e.to_string())
            ))
        };
        let auth = self.auth.clone().unwrap_or_default();
        if let Some(sp) = &auth.service_principal {
            let secret = input.source_value(&sp.secret_ref.name, &sp.secret_ref.key)?;
            let c = ClientSecretCredential::new(
                &self.tenant_id,
                sp.client_id.clone(),
                AzureSecret::new(secret),
                Some(ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .map_err(failed)?;
            return Ok(c);
        }
        if let Some(mi) = &auth.managed_identity {
            let c = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: mi.client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))
            .map_err(failed)?;
            return Ok(c);
        }
        let client_id = auth.workload_identity.and_then(|w| w.client_id);
        let c = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id,
            tenant_id: Some(self.tenant_id.clone()),
            ..Default::default()
        }))
        .map_err(failed)?;
        Ok(c)
    }
}

/// `POST https://<registry>/oauth2/exchange`: Entra ID access token → ACR refresh token.
pub async fn exchange(
    http: &reqwest::Client,
    registry: &str,
    tenant: &str,
    aad_token: &str,
) -> Result<String, MintError> {
    let url = format!("https://{registry}/oauth2/exchange");
    let response = http
        .post(&url)
        .timeout(EXCHANGE_TIMEOUT)
        .form(&[
            ("grant_type", "access_token"),
            ("service", registry),
            ("tenant", tenant),
            ("access_token", aad_token),
        ])
        .send()
        .await
        .map_err(|e| MintError::MintFailed(format!("ACR token exchange at {url} failed: {}", transport_error(&e))))?;
    let status = response.status();
    if status.as_u16() == 429 {
        return Err(MintError::Throttled {
            retry_after: retry_after(&response),
        });
    }
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(MintError::MintFailed(format!(
            "ACR {registry} rejected the Entra ID token (HTTP {status}); grant the identity the AcrPull role on the registry"
        )));
    }
    if !status.is_success() {
        return Err(MintError::MintFailed(format!(
            "ACR token exchange at {url} answered HTTP {status}"
        )));
    }
    #[derive(serde::Deserialize)]
    struct Exchanged {
        #[serde(default)]
        refresh_token: String,
    }
    let body = crate::bounded::read(response, MAX_SECRET_LEN * 2)
        .await
        .map_err(|e| match e {
            crate::bounded::BodyError::TooLarge(n) => {
                MintError::InvalidProviderResponse(format!("the ACR token exchange answer is larger than {n} bytes"))
            }
            crate::bounded::BodyError::Transport(e) => MintError::MintFailed(format!(
                "reading the ACR token exchange answer failed: {}",
                transport_error(&e)
            )),
        })?;
    let parsed: Exchanged = serde_json::from_slice(&body).map_err(|_| {
        MintError::InvalidProviderResponse("the ACR token exchange answer is not the expected JSON".into())
    })?;
    if parsed.refresh_token.is_empty() {
        return Err(MintError::InvalidProviderResponse(
            "ACR returned an empty refresh token".into(),
        ));
    }
    Ok(parsed.refresh_token)
}

/// The `exp` claim of a JWT (not verified: the registry verifies it).
pub fn jwt_expiry(jwt: &str) -> Result<Timestamp, MintError> {
    let invalid = || MintError::InvalidProviderResponse("the ACR refresh token is not a JWT with an exp claim".into());
    let payload = jwt.split('.').nth(1).ok_or_else(invalid)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(invalid)?;
    Timestamp::from_second(exp).map_err(|_| invalid())
}

/// The `Retry-After` of an answer, if it has one.
pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    super::retry_after(value, Timestamp::now())
}

/// A reqwest error in a few words.
pub(super) fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        short(&e.to_string())
    }
}

pub(super) fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default();
    first.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_the_exp_claim() {
        assert_eq!(
            jwt_expiry(&jwt(r#"{"exp":1800000000,"aud":"x"}"#)).unwrap().as_second(),
            1_800_000_000
        );
        for bad in ["", "a.b", &jwt("{}"), &jwt(r#"{"exp":"soon"}"#), "x.!!!.y"] {
            assert_eq!(
                jwt_expiry(bad).unwrap_err().reason(),
                "InvalidProviderResponse",
                "{bad}"
            );
        }
    }
}
