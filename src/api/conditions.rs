//! Condition types and reasons: the names users script against.

pub const ISSUED: &str = "Issued";
pub const SYNCED: &str = "Synced";
pub const PULL_AUTH_HEALTHY: &str = "PullAuthHealthy";
pub const READY: &str = "Ready";

/// Every condition type, in the order they are written.
pub const ALL: [&str; 4] = [ISSUED, SYNCED, PULL_AUTH_HEALTHY, READY];

/// CamelCase reasons.
pub mod reason {
    pub const PENDING: &str = "Pending";
    pub const ISSUED: &str = "Issued";
    pub const MINT_FAILED: &str = "MintFailed";
    pub const SOURCE_SECRET_MISSING: &str = "SourceSecretMissing";
    pub const SOURCE_SECRET_INVALID: &str = "SourceSecretInvalid";
    pub const INVALID_PROVIDER_RESPONSE: &str = "InvalidProviderResponse";
    pub const THROTTLED: &str = "Throttled";
    pub const EXPIRED: &str = "Expired";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SYNCED: &str = "Synced";
    pub const NO_NAMESPACES: &str = "NoNamespaces";
    pub const NAMESPACE_WRITE_FAILED: &str = "NamespaceWriteFailed";
    pub const SECRET_EXISTS: &str = "SecretExists";
    pub const SERVICE_ACCOUNT_PATCH_FAILED: &str = "ServiceAccountPatchFailed";
    pub const HEALTHY: &str = "Healthy";
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const IMAGE_NOT_FOUND: &str = "ImageNotFound";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const CHECK_DISABLED: &str = "CheckDisabled";
    pub const NOT_CHECKED: &str = "NotChecked";
    /// A pull-auth check ran but could not tell whether the registry accepts the credential.
    pub const CHECK_INCONCLUSIVE: &str = "CheckInconclusive";
    pub const READY: &str = "Ready";
    /// A changed static credential that the registry refused; the Secrets keep the last good one.
    pub const CREDENTIAL_REJECTED: &str = "CredentialRejected";
    /// The Secret name in a namespace is managed by another RegistryCredential.
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    /// A same-named Secret is controlled by another controller; regcred cannot adopt it.
    pub const SECRET_CONTROLLED_ELSEWHERE: &str = "SecretControlledElsewhere";
    /// Cleanup on deletion could not remove everything; the finalizer was released anyway.
    pub const CLEANUP_INCOMPLETE: &str = "CleanupIncomplete";
}
