//! Credential providers behind one small trait: mint → credential with expiry.

pub mod acr;
pub mod ecr;
mod gcr;
mod static_creds;
pub mod workload;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use crate::api::{ProviderKind, ProviderSpec};
use crate::dockerconfig::RegistryAuth;

/// Longest username or password regcred accepts from a provider or a source
/// Secret. Real registry tokens are a few KiB; anything larger is a broken or
/// hostile answer and must not reach every namespace.
pub const MAX_SECRET_LEN: usize = 32 * 1024;
/// Longest a single mint may take, all SDK retries included.
pub const MINT_TIMEOUT: Duration = Duration::from_secs(60);

/// A freshly minted credential: one username/password per registry host.
#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    pub auths: Vec<RegistryAuth>,
    /// When the registry stops accepting it; `None` for long-lived credentials.
    pub not_after: Option<Timestamp>,
}

impl Credential {
    pub fn registries(&self) -> Vec<String> {
        self.auths.iter().map(|a| a.registry.clone()).collect()
    }
}

/// Why a mint failed. Variant names double as condition reasons and metric labels.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("source Secret {namespace}/{name} does not exist; create it in the credentials namespace")]
    SourceSecretMissing { namespace: String, name: String },
    #[error("source Secret {namespace}/{name} {problem}")]
    SourceSecretInvalid {
        namespace: String,
        name: String,
        problem: String,
    },
    #[error("{0}")]
    MintFailed(String),
    /// The cloud refused the identity a ServiceAccount names
    /// (`identity: PerServiceAccount`): its trust configuration does not
    /// admit that ServiceAccount. `identity` is what a user reads, e.g.
    /// `role arn:aws:iam::111111111111:role/team-a`.
    #[error("{identity}: {message}")]
    IdentityRefused { identity: String, message: String },
    #[error("the provider throttled the request; retrying later")]
    Throttled { retry_after: Option<Duration> },
    #[error("the provider's answer was rejected: {0}")]
    InvalidProviderResponse(String),
    /// A changed credential the registry itself refused, checked before fan-out.
    #[error("{0}")]
    CredentialRejected(String),
}

impl MintError {
    /// The CamelCase reason for the `Issued` condition and metrics.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reason;
        match self {
            Self::SourceSecretMissing { .. } => reason::SOURCE_SECRET_MISSING,
            Self::SourceSecretInvalid { .. } => reason::SOURCE_SECRET_INVALID,
            Self::MintFailed(_) => reason::MINT_FAILED,
            Self::IdentityRefused { .. } => reason::IDENTITY_REFUSED,
            Self::Throttled { .. } => reason::THROTTLED,
            Self::InvalidProviderResponse(_) => reason::INVALID_PROVIDER_RESPONSE,
            Self::CredentialRejected(_) => reason::CREDENTIAL_REJECTED,
        }
    }

    /// A server's hint of when to try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// What a provider may use while minting, besides its own spec.
pub struct MintInput<'a> {
    /// The spec's source Secret, read from the credentials namespace (`None` if absent).
    pub source: Option<&'a Secret>,
    pub credentials_namespace: &'a str,
    /// The operator's HTTP client (timeouts, extra CA bundle) for calls without an SDK.
    pub http: &'a reqwest::Client,
}

impl MintInput<'_> {
    /// The source Secret named `name`, or the error users should see.
    fn require_source(&self, name: &str) -> Result<&Secret, MintError> {
        self.source.ok_or_else(|| MintError::SourceSecretMissing {
            namespace: self.credentials_namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// The UTF-8 value of `key` in the source Secret `name`.
    fn source_value(&self, name: &str, key: &str) -> Result<String, MintError> {
        let secret = self.require_source(name)?;
        let invalid = |problem: String| MintError::SourceSecretInvalid {
            namespace: self.credentials_namespace.to_string(),
            name: name.to_string(),
            problem,
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| invalid(format!("has no key {key:?}")))?;
        let value =
            String::from_utf8(bytes.0.clone()).map_err(|_| invalid(format!("key {key:?} is not UTF-8 text")))?;
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(invalid(format!("key {key:?} is empty")));
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(invalid(format!("key {key:?} is longer than {MAX_SECRET_LEN} bytes")));
        }
        Ok(value)
    }
}

/// A source of registry credentials.
pub trait Provider {
    fn kind(&self) -> ProviderKind;
    /// The Secret in the credentials namespace this provider reads, if any.
    fn source_secret(&self) -> Option<&str>;
    /// The registry hosts a credential from this spec may be written for, as
    /// far as the spec alone says: the one place that tells, before the first
    /// mint, which pulls a RegistryCredential covers.
    fn hosts(&self) -> Vec<String>;
    /// Obtain a credential. One call per renewal, however many namespaces are targeted.
    fn mint(&self, input: &MintInput<'_>) -> impl Future<Output = Result<Credential, MintError>> + Send;
}

impl ProviderSpec<'_> {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Ecr(p) => p.kind(),
            Self::Gcr(p) => p.kind(),
            Self::Acr(p) => p.kind(),
            Self::Static(p) => p.kind(),
        }
    }

    pub fn source_secret(&self) -> Option<&str> {
        match self {
            Self::Ecr(p) => p.source_secret(),
            Self::Gcr(p) => p.source_secret(),
            Self::Acr(p) => p.source_secret(),
            Self::Static(p) => p.source_secret(),
        }
    }

    pub fn hosts(&self) -> Vec<String> {
        match self {
            Self::Ecr(p) => p.hosts(),
            Self::Gcr(p) => p.hosts(),
            Self::Acr(p) => p.hosts(),
            Self::Static(p) => p.hosts(),
        }
    }

    pub async fn mint(&self, input: &MintInput<'_>) -> Result<Credential, MintError> {
        guarded(self.kind(), async {
            match self {
                Self::Ecr(p) => p.mint(input).await,
                Self::Gcr(p) => p.mint(input).await,
                Self::Acr(p) => p.mint(input).await,
                Self::Static(p) => p.mint(input).await,
            }
        })
        .await
    }
}

/// What every mint, shared or per ServiceAccount, goes through: a deadline
/// and the [`check`] of its answer.
async fn guarded(
    kind: ProviderKind,
    mint: impl Future<Output = Result<Credential, MintError>>,
) -> Result<Credential, MintError> {
    // Not every SDK bounds its own calls (gcp_auth has no timeout): a
    // hanging provider must not hold a reconcile worker forever.
    let credential = tokio::time::timeout(MINT_TIMEOUT, mint).await.map_err(|_| {
        MintError::MintFailed(format!(
            "the {} provider did not answer within {}s",
            kind.as_str(),
            MINT_TIMEOUT.as_secs()
        ))
    })??;
    check(&credential)?;
    Ok(credential)
}

/// A `Retry-After` value, delay-seconds or an HTTP date, as the wait from
/// `now`; a date in the past is no wait.
fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(now.duration_until(at).try_into().unwrap_or(Duration::ZERO))
}

/// Reject answers that must not be fanned out: no entries, empty or oversized values.
fn check(credential: &Credential) -> Result<(), MintError> {
    if credential.auths.is_empty() {
        return Err(MintError::InvalidProviderResponse(
            "it contained no registry credentials".into(),
        ));
    }
    for a in &credential.auths {
        let password = a.password.expose();
        if a.username.is_empty() || password.is_empty() {
            return Err(MintError::InvalidProviderResponse(format!(
                "the credential for {} has an empty username or password",
                a.registry
            )));
        }
        if a.username.len() > MAX_SECRET_LEN || password.len() > MAX_SECRET_LEN {
            return Err(MintError::InvalidProviderResponse(format!(
                "the credential for {} is longer than {MAX_SECRET_LEN} bytes",
                a.registry
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GcrAuth, GcrProvider, SecretKeyRef, ServiceAccountKey};
    use k8s_openapi::ByteString;

    /// A token endpoint that accepts connections and never answers: the mint
    /// is cut off at MINT_TIMEOUT on tokio's paused clock, in no real time.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_provider_is_cut_off_at_the_mint_timeout() {
        crate::connect::init_crypto();
        // The kernel completes connections to a listening socket that never accepts.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let token_uri = format!("http://{}/token", listener.local_addr().unwrap());
        let key = regcred_testenv::fakes::google::service_account_key_json(&token_uri);
        let source = Secret {
            data: Some([("key.json".to_string(), ByteString(key.into_bytes()))].into()),
            ..Default::default()
        };
        let gcr = GcrProvider {
            registries: vec!["gcr.io".into()],
            auth: Some(GcrAuth {
                service_account_key: ServiceAccountKey {
                    secret_ref: SecretKeyRef {
                        name: "gcp".into(),
                        key: "key.json".into(),
                    },
                },
            }),
            ..Default::default()
        };
        let input = MintInput {
            source: Some(&source),
            credentials_namespace: "regcred-system",
            http: &reqwest::Client::new(),
        };
        let real = std::time::Instant::now();
        let virtual_start = tokio::time::Instant::now();
        let err = ProviderSpec::Gcr(&gcr).mint(&input).await.unwrap_err();
        assert_eq!(err.reason(), "MintFailed");
        assert!(err.to_string().contains("did not answer within 60s"), "{err}");
        assert!(virtual_start.elapsed() >= MINT_TIMEOUT);
        assert!(
            real.elapsed() < Duration::from_secs(20),
            "took {:?} of real time",
            real.elapsed()
        );
        drop(listener);
    }
}
