//! `RegistryCredential.status`: what regcred observed, for users and for itself
//! (renewal time and failure count survive an operator restart).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a RegistryCredential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredentialStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Provider kind: ECR, GCR, ACR or Static.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,

    /// Registry hosts the credential is written for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,

    /// Expiry of the credential now in the Secrets (absent for Static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,

    /// When regcred will mint the next credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,

    /// When the credential now in the Secrets was minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_issued_time: Option<Time>,

    /// `sha256:` digest of the credential now in the Secrets, salted with this
    /// object's uid. A restarted operator takes back only a Secret whose
    /// content matches it, never a look-alike written by someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_digest: Option<String>,

    /// Consecutive failed mints; drives the retry backoff.
    #[serde(default)]
    pub failed_attempts: u32,

    /// When the last mint failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,

    /// How many namespaces are targeted and how many hold the current Secret.
    #[serde(default)]
    pub namespaces: NamespaceCounts,

    /// Namespaces that could not be synced (at most 20 are listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["namespace".into()]))]
    pub failed_namespaces: Vec<FailedNamespace>,

    /// How many ServiceAccounts reference the Secret and how many could not be patched.
    #[serde(default)]
    pub service_accounts: ServiceAccountCounts,

    /// `identity: PerServiceAccount` only: how many selected ServiceAccounts
    /// hold a valid credential of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<IdentityCounts>,

    /// `identity: PerServiceAccount` only: selected ServiceAccounts without a
    /// valid credential, and why (at most 50 are listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_service_accounts: Vec<FailedServiceAccount>,

    /// `synced/targeted` namespaces, e.g. `12/12`; with `identity:
    /// PerServiceAccount`, `valid/selected` ServiceAccounts, e.g. `3/4 SA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,

    /// Result of the last pull-authentication check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_auth: Option<PullAuth>,

    /// Failed image pulls on this credential's registries that regcred
    /// diagnosed, newest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_failures: Vec<PullFailure>,

    /// `Issued`, `Synced`, `PullAuthHealthy` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The kind of provider, as shown in the PROVIDER column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ProviderKind {
    #[serde(rename = "ECR")]
    Ecr,
    #[serde(rename = "GCR")]
    Gcr,
    #[serde(rename = "ACR")]
    Acr,
    Static,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ecr => "ECR",
            Self::Gcr => "GCR",
            Self::Acr => "ACR",
            Self::Static => "Static",
        }
    }
}

/// Namespace counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub struct NamespaceCounts {
    /// Namespaces selected by `spec.target.namespaces`.
    #[serde(default)]
    pub targeted: u32,
    /// Of those, namespaces holding the current Secret with every selected ServiceAccount patched.
    #[serde(default)]
    pub synced: u32,
}

/// A namespace regcred could not sync, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct FailedNamespace {
    /// The namespace.
    pub namespace: String,
    /// CamelCase reason, e.g. `SecretExists`.
    pub reason: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// ServiceAccounts of `identity: PerServiceAccount` mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityCounts {
    /// Selected ServiceAccounts in targeted namespaces.
    #[serde(default)]
    pub selected: u32,
    /// Of those, ServiceAccounts holding an unexpired credential of their own identity.
    #[serde(default)]
    pub valid: u32,
    /// Of those, ServiceAccounts without the annotation naming their identity (they get nothing).
    #[serde(default)]
    pub without_identity: u32,
    /// Of those, ServiceAccounts whose exchange or write failed.
    #[serde(default)]
    pub failed: u32,
}

/// A ServiceAccount without a valid credential of its own, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedServiceAccount {
    pub namespace: String,
    /// The ServiceAccount's name.
    pub name: String,
    /// `IdentityMissing`, `IdentityRefused`, `Throttled`, `TokenRequestFailed`,
    /// `MintFailed`, `InvalidProviderResponse` or a write failure's reason.
    pub reason: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The identity the ServiceAccount names: a role ARN, a Google service
    /// account, or `<tenant>/<client id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// When regcred tries this ServiceAccount again (backoff, or the
    /// provider's `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_time: Option<Time>,
}

/// ServiceAccount counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub struct ServiceAccountCounts {
    /// ServiceAccounts that reference the Secret.
    #[serde(default)]
    pub patched: u32,
    /// ServiceAccounts that could not be patched.
    #[serde(default)]
    pub failed: u32,
}

/// A failed image pull regcred diagnosed (see `regcred diagnose`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullFailure {
    pub namespace: String,
    pub pod: String,
    pub image: String,
    /// `ImageNotFound`, `CredentialMissing`, `CredentialRejected`,
    /// `CredentialExpired`, `RateLimited`, `RegistryUnreachable` or `Unknown`.
    pub cause: String,
    /// The cause's detail, e.g. `SecretMissing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What was found and what to do.
    pub message: String,
    /// When the failure was last diagnosed.
    pub last_seen: Time,
    /// Whether regcred repaired what it could (see Events `ImagePullRepaired`).
    #[serde(default)]
    pub repaired: bool,
    /// When regcred's repair took effect: the diagnosis's own repair, or a
    /// re-sync or renewal that put the credential back after the pull failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_at: Option<Time>,
}

/// Outcome of the last pull-authentication check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullAuth {
    /// Healthy, Unauthorized, ImageNotFound, Unreachable, Disabled or Unknown.
    pub result: PullAuthResult,
    /// The registry the result is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// When the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_time: Option<Time>,
    /// What the registry answered, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Result of a pull-authentication check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullAuthResult {
    /// The registry accepted the credential.
    Healthy,
    /// The registry rejected the credential.
    Unauthorized,
    /// The credential works but `healthCheck.image` does not exist.
    ImageNotFound,
    /// The registry could not be reached.
    Unreachable,
    /// Checks are disabled.
    Disabled,
    /// A check ran but could not tell whether the registry accepts the credential.
    Unknown,
}
