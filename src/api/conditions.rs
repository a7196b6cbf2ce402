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
    /// `PerServiceAccount`: a selected ServiceAccount lacks the annotation naming its identity.
    pub const IDENTITY_MISSING: &str = "IdentityMissing";
    /// `PerServiceAccount`: the cloud refused a ServiceAccount's identity (trust policy, unknown role).
    pub const IDENTITY_REFUSED: &str = "IdentityRefused";
    /// `PerServiceAccount`: the API server did not issue a ServiceAccount's token.
    pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";

    /// Every reason above, each documented in `docs/api.md`.
    pub const ALL: [&str; 29] = [
        PENDING,
        ISSUED,
        MINT_FAILED,
        SOURCE_SECRET_MISSING,
        SOURCE_SECRET_INVALID,
        INVALID_PROVIDER_RESPONSE,
        THROTTLED,
        EXPIRED,
        INVALID_SPEC,
        SYNCED,
        NO_NAMESPACES,
        NAMESPACE_WRITE_FAILED,
        SECRET_EXISTS,
        SERVICE_ACCOUNT_PATCH_FAILED,
        HEALTHY,
        UNAUTHORIZED,
        IMAGE_NOT_FOUND,
        UNREACHABLE,
        CHECK_DISABLED,
        NOT_CHECKED,
        CHECK_INCONCLUSIVE,
        READY,
        CREDENTIAL_REJECTED,
        SECRET_CONFLICT,
        SECRET_CONTROLLED_ELSEWHERE,
        CLEANUP_INCOMPLETE,
        IDENTITY_MISSING,
        IDENTITY_REFUSED,
        TOKEN_REQUEST_FAILED,
    ];
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{ALL, reason};

    const DOCS: &str = include_str!("../../docs/api.md");

    /// The values of the `pub const NAME: &str = "...";` items of `mod
    /// reason` in this file's own source.
    fn declared_reasons() -> BTreeSet<&'static str> {
        let source = include_str!("conditions.rs");
        let start = source.find("pub mod reason {").expect("mod reason is in this file");
        let end = source[start..]
            .find("\n}")
            .expect("mod reason ends with a brace in column 0");
        source[start..start + end]
            .lines()
            .filter_map(|line| line.trim().strip_prefix("pub const "))
            .filter(|decl| decl.contains(": &str = \""))
            .filter_map(|decl| decl.split('"').nth(1))
            .collect()
    }

    #[test]
    fn reason_all_lists_every_reason_declared() {
        let listed: BTreeSet<&str> = reason::ALL.into_iter().collect();
        assert_eq!(listed.len(), reason::ALL.len(), "a reason is listed twice");
        assert_eq!(listed, declared_reasons());
    }

    #[test]
    fn the_user_docs_name_every_condition_type_and_reason() {
        let missing: Vec<&str> = ALL
            .into_iter()
            .chain(reason::ALL)
            .filter(|name| !DOCS.contains(&format!("`{name}`")))
            .collect();
        assert!(missing.is_empty(), "docs/api.md does not name {missing:?}");
    }
}
