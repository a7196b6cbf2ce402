//! Stable digests of what a credential is minted from and of what it is.
//!
//! Both are persisted (a Secret annotation, the RegistryCredential's status)
//! and compared after a restart or an upgrade, so they are SHA-256, never
//! `DefaultHasher`, whose output may change between Rust releases.

use aws_lc_rs::digest::{Context, SHA256};
use k8s_openapi::api::core::v1::Secret;

use crate::api::RegistryCredential;

/// A hex digest of the inputs of a mint: the provider spec, `renewBefore`
/// and the *content* of the source Secret (type and data). Metadata of the
/// source (annotations, its resourceVersion) does not count, so annotating
/// it, or regcred's own writes, never trigger a re-mint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(rc: &RegistryCredential, source: Option<&Secret>) -> Self {
        let mut ctx = Context::new(&SHA256);
        let mut field = |label: &str, bytes: &[u8]| {
            // Length-prefixed fields: no two different inputs share a byte stream.
            ctx.update(label.as_bytes());
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(
            "provider",
            serde_json::to_string(&rc.spec.provider).unwrap_or_default().as_bytes(),
        );
        let renew_before = rc.spec.renew_before.map(|d| std::time::Duration::from(d).as_millis());
        field("renewBefore", format!("{renew_before:?}").as_bytes());
        if let Some(source) = source {
            field("type", source.type_.as_deref().unwrap_or_default().as_bytes());
            // BTreeMap: keys in a stable order.
            for (key, value) in source.data.iter().flatten() {
                field("key", key.as_bytes());
                field("value", &value.0);
            }
            for (key, value) in source.string_data.iter().flatten() {
                field("key", key.as_bytes());
                field("value", value.as_bytes());
            }
        }
        Self(hex(ctx.finish().as_ref()))
    }

    /// From a persisted value (the `regcred.dev/source-hash` annotation).
    pub fn parse(text: &str) -> Self {
        Self(text.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use crate::managed::credential_digest;

/// A number in `[0, 1)` that depends only on `parts`: the same credential
/// always gets the same jitter, so re-planning never rewrites status.
pub fn unit_interval(parts: &[&str]) -> f64 {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    let d = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) % 10_000) as f64 / 10_000.0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::rc;
    use k8s_openapi::ByteString;

    fn source(password: &str) -> Secret {
        Secret {
            data: Some(
                [
                    ("username".to_string(), ByteString(b"me".to_vec())),
                    ("password".to_string(), ByteString(password.as_bytes().to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn digests_are_plain_sha256() {
        // Persisted values: they must not depend on the Rust release.
        assert_eq!(
            credential_digest("uid", b"{}"),
            "sha256:4b44f139e60d02e7c98576d84138874d538fd713b8423890b54968aa290baf16"
        );
        assert_eq!(Fingerprint::of(&rc(), None).as_str().len(), 64);
    }

    #[test]
    fn follows_content_not_metadata() {
        let a = source("pw");
        let mut annotated = a.clone();
        annotated.metadata.resource_version = Some("42".into());
        annotated
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("note".into(), "x".into());
        assert_eq!(
            Fingerprint::of(&rc(), Some(&a)),
            Fingerprint::of(&rc(), Some(&annotated))
        );
        assert_ne!(
            Fingerprint::of(&rc(), Some(&a)),
            Fingerprint::of(&rc(), Some(&source("pw2")))
        );
        assert_ne!(Fingerprint::of(&rc(), Some(&a)), Fingerprint::of(&rc(), None));
        let mut later = rc();
        later.spec.renew_before = Some(std::time::Duration::from_secs(3600).into());
        assert_ne!(Fingerprint::of(&rc(), Some(&a)), Fingerprint::of(&later, Some(&a)));
    }

    #[test]
    fn jitter_is_a_stable_unit_interval() {
        let j = unit_interval(&["uid", "2026-11-22T10:00:00Z"]);
        assert!((0.0..1.0).contains(&j));
        assert_eq!(j, unit_interval(&["uid", "2026-11-22T10:00:00Z"]));
        assert_ne!(j, unit_interval(&["uid", "2026-11-22T11:00:00Z"]));
    }
}
