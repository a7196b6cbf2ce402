//! What makes a Secret regcred's, and whether it holds the current
//! credential: the labels and annotations regcred writes, the digests it
//! keeps, and [`holds_current`], the one answer reconcile, admission and the
//! diagnosis give to "does this Secret hold what status vouches for?".

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::api::RegistryCredential;
use crate::dockerconfig;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "regcred";
pub const CREDENTIAL_LABEL: &str = "regcred.dev/credential";
pub const NOT_AFTER_ANNOTATION: &str = "regcred.dev/not-after";
/// A digest of the spec and source Secret content the credential was minted
/// from (no secret material), so a restarted operator knows whether inputs changed.
pub const FINGERPRINT_ANNOTATION: &str = "regcred.dev/source-hash";
/// On a managed Secret: the label and annotation keys regcred wrote, so keys
/// dropped from the spec (or `not-after`, when a provider stops expiring) are
/// removed while keys others added stay.
pub const MANAGED_METADATA_ANNOTATION: &str = "regcred.dev/managed-metadata";
/// On a ServiceAccount: the `imagePullSecrets` entries regcred added and the
/// RegistryCredential each belongs to, comma-separated `secret=credential`
/// (a bare `secret` was written before owners were recorded).
pub const PULL_SECRETS_ANNOTATION: &str = "regcred.dev/pull-secrets";
/// In the managed-Secret cache only, never written: a digest of the
/// `.dockerconfigjson` the Secret holds, which the cache keeps instead of the
/// data ([`cache_form`]).
pub const CACHED_DATA_DIGEST: &str = "regcred.dev/cached-data-sha256";
pub const FINALIZER: &str = "regcred.dev/cleanup";
/// Label selector for every Secret regcred manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=regcred";

/// The Secret name in every target namespace.
pub fn secret_name(rc: &RegistryCredential) -> String {
    rc.spec.target.secret_name.clone().unwrap_or_else(|| rc.name_any())
}

/// Whether `secret` was written by regcred for `rc`.
pub fn is_managed_by(secret: &Secret, rc_name: &str) -> bool {
    let labels = secret.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(CREDENTIAL_LABEL).map(String::as_str) == Some(rc_name)
}

/// The RegistryCredential a regcred-managed Secret belongs to, whichever it is.
pub fn managing_credential(secret: &Secret) -> Option<&str> {
    let labels = secret.labels();
    (labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE))
        .then(|| labels.get(CREDENTIAL_LABEL).map(String::as_str))
        .flatten()
}

/// A Secret as regcred keeps it in memory: its data replaced by a digest of
/// the one key regcred writes (in the [`CACHED_DATA_DIGEST`] annotation,
/// computed here, so a Secret carrying such an annotation vouches for
/// nothing). Regcred compares and patches only that key, and a token is
/// kilobytes at 10,000 namespaces (an ECR one is 3 KiB). Every Secret regcred
/// decides on goes through this: the managed-Secret cache, and a Secret read
/// because a create found one in the way.
pub fn cache_form(secret: &mut Secret) {
    let digest = cached_digest(secret);
    secret.data = None;
    secret.string_data = None;
    let annotations = secret.annotations_mut();
    match digest {
        Some(d) => annotations.insert(CACHED_DATA_DIGEST.into(), d),
        None => annotations.remove(CACHED_DATA_DIGEST),
    };
}

/// The digest [`cache_form`] keeps of `secret`'s data.
pub fn cached_digest(secret: &Secret) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(dockerconfig::DATA_KEY).map(|v| data_digest(&v.0)))
}

pub fn data_digest(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    base64::engine::general_purpose::STANDARD.encode(sum.as_ref())
}

/// `sha256:<hex>` of a credential's `.dockerconfigjson`, salted with the
/// RegistryCredential's uid. Kept in status so that a restarted operator
/// takes back only the credential it wrote, never one a tenant forged into a
/// look-alike Secret in their own namespace.
pub fn credential_digest(uid: &str, config_json: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(uid.as_bytes());
    ctx.update(&[0]);
    ctx.update(config_json);
    let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The metadata keys regcred wrote on a Secret (`regcred.dev/managed-metadata`).
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManagedMetadata {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub annotations: Vec<String>,
}

impl ManagedMetadata {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What `secret` records; nothing for a Secret regcred has not written
    /// (or whose record someone mangled: then no key is removed).
    pub fn of(secret: &Secret) -> Self {
        secret
            .annotations()
            .get(MANAGED_METADATA_ANNOTATION)
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }
}

/// The label and annotation keys of `secret` that regcred reads or wrote:
/// its own (`regcred.dev/…`, the managed-by label) and those its
/// `regcred.dev/managed-metadata` record lists (from the spec). Others'
/// keys are never read or written, so the cache need not keep them.
pub fn regcred_keys(secret: &Secret) -> impl Fn(&str) -> bool + use<> {
    let written = ManagedMetadata::of(secret);
    move |k: &str| {
        k.starts_with("regcred.dev/")
            || k == MANAGED_BY_LABEL
            || written.labels.iter().chain(&written.annotations).any(|w| w == k)
    }
}

/// Whether `secret` holds `rc`'s current credential: it is regcred's for
/// `rc` and its `.dockerconfigjson` has the digest `status.credentialDigest`
/// vouches for. `None` when status vouches for none (yet).
pub fn holds_current(secret: &Secret, rc: &RegistryCredential) -> Option<bool> {
    let digest = rc.status.as_ref()?.credential_digest.as_deref()?;
    let json = secret.data.as_ref().and_then(|d| d.get(dockerconfig::DATA_KEY));
    Some(
        is_managed_by(secret, &rc.name_any())
            && json.is_some_and(|j| credential_digest(&rc.uid().unwrap_or_default(), &j.0) == digest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn only_regcreds_own_copy_of_the_vouched_credential_is_current() {
        let mut rc: RegistryCredential = serde_json::from_value(serde_json::json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": "hub", "uid": "u-1"},
            "spec": {"provider": {"static": {"registry": "docker.io", "secretRef": {"name": "hub"}}}},
        }))
        .unwrap();
        let secret = |labels: serde_json::Value, json: &str| -> Secret {
            let mut s: Secret =
                serde_json::from_value(serde_json::json!({"metadata": {"name": "hub", "labels": labels}})).unwrap();
            s.data = Some([(dockerconfig::DATA_KEY.to_string(), ByteString(json.as_bytes().to_vec()))].into());
            s
        };
        let ours = serde_json::json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, CREDENTIAL_LABEL: "hub"});
        assert_eq!(
            holds_current(&secret(ours.clone(), "{}"), &rc),
            None,
            "status vouches for nothing yet"
        );
        rc.status = Some(crate::api::RegistryCredentialStatus {
            credential_digest: Some(credential_digest("u-1", b"{}")),
            ..Default::default()
        });
        assert_eq!(holds_current(&secret(ours.clone(), "{}"), &rc), Some(true));
        assert_eq!(
            holds_current(&secret(ours, "{\"old\":1}"), &rc),
            Some(false),
            "a stale copy"
        );
        let look_alike = serde_json::json!({CREDENTIAL_LABEL: "hub"});
        assert_eq!(
            holds_current(&secret(look_alike, "{}"), &rc),
            Some(false),
            "not regcred's"
        );
    }
}
