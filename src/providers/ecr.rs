//! Amazon ECR: `ecr:GetAuthorizationToken` through aws-sdk-ecr.
//!
//! Credentials: static keys from the source Secret, or the SDK default chain
//! (IRSA web identity, EKS Pod Identity, environment, instance profile),
//! optionally followed by `sts:AssumeRole`.

use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig, retry::RetryConfig};
use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;

use super::{Credential, MintError, MintInput, Provider};
use crate::api::{EcrProvider, ProviderKind};
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

const SESSION_NAME: &str = "regcred";

impl Provider for EcrProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Ecr
    }

    fn source_secret(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.secret_ref.name.as_str())
    }

    /// Every host of every `registryIds` account: which endpoint ECR names
    /// is known only once it answers. Without `registryIds`, the caller's
    /// own account is known only then too.
    fn hosts(&self) -> Vec<String> {
        self.registry_ids
            .iter()
            .flat_map(|id| hosts(id, &self.region))
            .collect()
    }

    async fn mint(&self, input: &MintInput<'_>) -> Result<Credential, MintError> {
        let region = Region::new(self.region.clone());
        let mut loader = loader(&self.region);
        if let Some(auth) = &self.auth {
            let r = &auth.secret_ref;
            let key_id = input.source_value(&r.name, &r.access_key_id_key)?;
            let secret = input.source_value(&r.name, &r.secret_access_key_key)?;
            let session = r
                .session_token_key
                .as_ref()
                .map(|k| input.source_value(&r.name, k))
                .transpose()?;
            loader =
                loader.credentials_provider(Credentials::new(key_id, secret, session, None, "regcred-source-secret"));
        }
        let mut config = loader.load().await;
        if let Some(role) = &self.assume_role {
            let mut builder = AssumeRoleProvider::builder(&role.role_arn)
                .session_name(SESSION_NAME)
                .region(region)
                .configure(&config);
            if let Some(id) = &role.external_id {
                builder = builder.external_id(id);
            }
            let provider = builder.build().await;
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        self.authorization(&config).await
    }
}

/// The AWS SDK settings of every call regcred makes: the spec's region, one
/// retry, bounded connect and operation times.
pub(super) fn loader(region: &str) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
}

impl EcrProvider {
    /// `ecr:GetAuthorizationToken` with the credentials of `config`, at
    /// `endpointUrl`, for the registries of `registryIds` or else the caller's own.
    pub(super) async fn authorization(&self, config: &SdkConfig) -> Result<Credential, MintError> {
        // endpointUrl overrides ECR only; STS keeps its own (AWS_ENDPOINT_URL_STS).
        let mut ecr_config = aws_sdk_ecr::config::Builder::from(config);
        if let Some(url) = &self.endpoint_url {
            ecr_config = ecr_config.endpoint_url(url);
        }
        let client = aws_sdk_ecr::Client::from_conf(ecr_config.build());
        let out = client.get_authorization_token().send().await.map_err(|e| {
            classify(
                e,
                "ECR GetAuthorizationToken",
                "check the IAM permission ecr:GetAuthorizationToken",
            )
        })?;

        // One token serves every registry the principal may pull from; ECR
        // names the caller's own, and registryIds add others in the region.
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| MintError::InvalidProviderResponse("ECR returned no authorization data".into()))?;
        let own = registry_host(data.proxy_endpoint().unwrap_or_default(), &self.region)?;
        let (username, password) = decode_token(data.authorization_token().unwrap_or_default())?;
        let hosts = if self.registry_ids.is_empty() {
            vec![own.clone()]
        } else {
            let suffix = own.split_once('.').map(|(_, s)| s.to_string()).unwrap_or_default();
            self.registry_ids.iter().map(|id| format!("{id}.{suffix}")).collect()
        };
        let auths = hosts
            .into_iter()
            .map(|registry| RegistryAuth {
                registry,
                username: username.clone(),
                password: Sensitive::new(password.clone()),
            })
            .collect();
        let not_after = data.expires_at().and_then(|t| Timestamp::from_second(t.secs()).ok());
        Ok(Credential { auths, not_after })
    }
}

/// `base64("AWS:<password>")` → (`AWS`, password).
pub fn decode_token(token: &str) -> Result<(String, String), MintError> {
    let invalid =
        || MintError::InvalidProviderResponse("the ECR authorization token is not base64 of user:password".into());
    if token.is_empty() {
        return Err(MintError::InvalidProviderResponse(
            "ECR returned an empty authorization token".into(),
        ));
    }
    if token.len() > super::MAX_SECRET_LEN * 2 {
        return Err(MintError::InvalidProviderResponse(format!(
            "the ECR authorization token is longer than {} bytes",
            super::MAX_SECRET_LEN * 2
        )));
    }
    let raw = STANDARD.decode(token.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => Ok((user.to_string(), pass.to_string())),
        _ => Err(invalid()),
    }
}

/// The registry host of a `proxyEndpoint`, which must be an ECR registry in
/// the configured region: a credential is never written for a host the spec
/// did not ask for.
pub fn registry_host(proxy_endpoint: &str, region: &str) -> Result<String, MintError> {
    let host = proxy_endpoint
        .strip_prefix("https://")
        .unwrap_or(proxy_endpoint)
        .trim_end_matches('/');
    let unexpected = || {
        MintError::InvalidProviderResponse(format!(
            "ECR returned proxyEndpoint {proxy_endpoint:?}, which is not an ECR registry in {region}"
        ))
    };
    let (account, _) = host.split_once('.').ok_or_else(unexpected)?;
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    if !account_ok || !hosts(account, region).iter().any(|h| h == host) {
        return Err(unexpected());
    }
    Ok(host.to_string())
}

/// The hosts ECR serves account `account`'s registry at in `region`: the
/// standard endpoint, the FIPS one and the China regions' one. What the
/// provider accepts from ECR and what diagnosis counts as covered, both.
pub fn hosts(account: &str, region: &str) -> [String; 3] {
    [
        format!("{account}.dkr.ecr.{region}.amazonaws.com"),
        format!("{account}.dkr.ecr-fips.{region}.amazonaws.com"),
        format!("{account}.dkr.ecr.{region}.amazonaws.com.cn"),
    ]
}

/// An AWS SDK error of `operation` as users should read it; `hint` says
/// what to check when the service refused.
pub(super) fn classify<E>(err: SdkError<E>, operation: &str, hint: &str) -> MintError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            if matches!(
                code,
                "ThrottlingException" | "TooManyRequestsException" | "Throttling" | "RequestLimitExceeded"
            ) {
                let header = service.raw().headers().get("retry-after");
                return MintError::Throttled {
                    retry_after: header.and_then(|v| super::retry_after(v, Timestamp::now())),
                };
            }
            MintError::MintFailed(format!(
                "{operation} failed: {code}: {}; {hint}",
                e.message().unwrap_or("no message")
            ))
        }
        SdkError::TimeoutError(_) => MintError::MintFailed(format!("{operation} timed out")),
        _ => MintError::MintFailed(format!("{operation} failed: {}", DisplayErrorContext(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_aws_token() {
        let token = STANDARD.encode("AWS:secret-part");
        assert_eq!(decode_token(&token).unwrap(), ("AWS".into(), "secret-part".into()));
        assert!(decode_token("").is_err());
        assert!(decode_token("!!!").is_err());
        assert!(decode_token(&STANDARD.encode("no-colon")).is_err());
        let huge = "A".repeat(1 << 20);
        let err = decode_token(&huge).unwrap_err().to_string();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn accepts_only_ecr_hosts_of_the_region() {
        assert_eq!(
            registry_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1").unwrap(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert!(registry_host("https://123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "us-east-1").is_ok());
        assert!(registry_host("https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1").is_ok());
        for bad in [
            "https://evil.example.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://12345.dkr.ecr.us-east-1.amazonaws.com",
            "",
        ] {
            assert!(registry_host(bad, "us-east-1").is_err(), "{bad}");
        }
    }
}
