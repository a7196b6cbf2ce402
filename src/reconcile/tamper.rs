//! Tamper evidence: who changed a managed Secret that regcred has just put
//! back. The restore itself is the fan-out's ordinary update; this names the
//! editor, from the Secret's `managedFields`, for a Warning Event and the
//! `regcred_managed_secret_overwrites_total` counter.
//!
//! The editor is the field manager other than regcred that owns one of the
//! fields regcred writes (its data key, its type, its labels and
//! annotations): the API server moves a field to whoever last changed it.
//! An edit that only removes one of regcred's keys leaves no owner to name,
//! and a deletion leaves no object; both are restored but not reported,
//! since the API keeps no record of who made them (an audit log does).
//! Never a value: only namespace, Secret name and manager.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::ResourceExt;
use kube::api::Api;

use super::build;
use super::events::Note;
use crate::dockerconfig;

pub const REASON: &str = "ManagedSecretOverwritten";

/// Someone else's change to a managed Secret, undone by regcred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overwrite {
    pub namespace: String,
    pub secret: String,
    /// The field manager that made it (`kubectl-edit`, `helm`, ...).
    pub manager: String,
}

/// Whether regcred's own bookkeeping on `existing` (in [`build::cache_form`])
/// still says it holds what `desired` holds: then a difference in what it
/// carries was made by someone else, and is worth a read of its
/// `managedFields`. A rotation or a spec change rewrites these annotations
/// too, so regcred's own updates cost no read.
pub fn suspect(existing: &Secret, desired: &Secret) -> bool {
    let bookkeeping = [build::FINGERPRINT_ANNOTATION, build::NOT_AFTER_ANNOTATION];
    bookkeeping
        .iter()
        .all(|k| existing.annotations().get(*k) == desired.annotations().get(*k))
}

/// The editor of the managed Secret `desired` stands for, read from the API
/// server (metadata only: never the data). `None` when it cannot be told.
pub async fn editor(api: &Api<Secret>, desired: &Secret, own_manager: &str) -> Option<String> {
    let meta = api.get_metadata(&desired.name_any()).await.ok()?;
    overwritten_by(
        meta.metadata.managed_fields.as_deref().unwrap_or_default(),
        desired,
        own_manager,
    )
}

/// The latest field manager other than `own_manager` that owns a field
/// regcred writes on `desired`.
pub fn overwritten_by(entries: &[ManagedFieldsEntry], desired: &Secret, own_manager: &str) -> Option<String> {
    let labels: BTreeSet<String> = desired.labels().keys().map(|k| format!("f:{k}")).collect();
    let annotations: BTreeSet<String> = desired.annotations().keys().map(|k| format!("f:{k}")).collect();
    let data_key = format!("f:{}", dockerconfig::DATA_KEY);
    let owns_ours = |fields: &serde_json::Value| {
        let any_of = |v: &serde_json::Value, keys: &BTreeSet<String>| {
            v.as_object().is_some_and(|o| o.keys().any(|k| keys.contains(k)))
        };
        fields.get("f:type").is_some()
            || fields.pointer("/f:data").is_some_and(|d| d.get(&data_key).is_some())
            || fields
                .pointer("/f:metadata/f:labels")
                .is_some_and(|l| any_of(l, &labels))
            || fields
                .pointer("/f:metadata/f:annotations")
                .is_some_and(|a| any_of(a, &annotations))
    };
    entries
        .iter()
        .filter(|e| e.manager.as_deref().is_some_and(|m| m != own_manager))
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| owns_ours(&f.0)))
        .max_by_key(|e| e.time.as_ref().map(|t| t.0))
        .and_then(|e| e.manager.clone())
}

/// One Warning Event for a pass's overwrites, naming each namespace and
/// editor (the first 20; the counter has them all).
pub fn note(overwrites: &[Overwrite]) -> Option<Note> {
    let first = overwrites.first()?;
    let listed: Vec<String> = overwrites
        .iter()
        .take(20)
        .map(|o| format!("{} (by field manager {:?})", o.namespace, o.manager))
        .collect();
    let more = overwrites.len().saturating_sub(listed.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let message = format!(
        "Managed Secret {} was changed by someone other than regcred and has been restored in {} namespace(s): {}{more}",
        first.secret,
        overwrites.len(),
        listed.join(", ")
    );
    Some(Note::warning(REASON, "Restore", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};

    use super::super::fixtures::rc;

    fn entry(manager: &str, second: i64, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            time: Some(Time(jiff::Timestamp::from_second(second).expect("time"))),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn the_editor_is_the_latest_other_manager_owning_a_field_regcred_writes() {
        let desired = build::desired_secret(&rc(), "a", b"{}", None, "fp");
        let data = serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}});
        let own_label = serde_json::json!({"f:metadata": {"f:labels": {"f:regcred.dev/credential": {}}}});
        let other_annotation = serde_json::json!({"f:metadata": {"f:annotations": {"f:team": {}}}});
        let cases: [(&str, Vec<ManagedFieldsEntry>, Option<&str>); 5] = [
            (
                "only regcred's own writes name nobody",
                vec![entry("regcred", 10, data.clone())],
                None,
            ),
            (
                "a tool that added its own annotation is not an editor",
                vec![
                    entry("regcred", 10, data.clone()),
                    entry("kubectl-annotate", 20, other_annotation),
                ],
                None,
            ),
            (
                "whoever took over the data key is",
                vec![
                    entry("regcred", 10, own_label.clone()),
                    entry("kubectl-edit", 20, data.clone()),
                ],
                Some("kubectl-edit"),
            ),
            (
                "of two, the later one",
                vec![entry("helm", 30, own_label), entry("kubectl-edit", 20, data.clone())],
                Some("helm"),
            ),
            ("no managed fields name nobody", vec![], None),
        ];
        for (name, entries, want) in cases {
            assert_eq!(overwritten_by(&entries, &desired, "regcred").as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_rotation_is_not_suspected_but_a_changed_value_under_regcreds_bookkeeping_is() {
        let mut existing = build::desired_secret(&rc(), "a", b"old", Some("2026-01-01T00:00:00Z"), "fp");
        build::cache_form(&mut existing);
        let same_credential = build::desired_secret(&rc(), "a", b"new", Some("2026-01-01T00:00:00Z"), "fp");
        let rotated = build::desired_secret(&rc(), "a", b"new", Some("2026-01-02T00:00:00Z"), "fp");
        assert!(suspect(&existing, &same_credential));
        assert!(!suspect(&existing, &rotated));
    }

    #[test]
    fn the_event_names_namespaces_and_managers_never_values() {
        let o = |ns: &str, m: &str| Overwrite {
            namespace: ns.into(),
            secret: "hub".into(),
            manager: m.into(),
        };
        let note = note(&[o("team-a", "kubectl-edit"), o("team-b", "helm")]).expect("a note");
        assert!(note.warning);
        assert_eq!(note.reason, REASON);
        for word in ["hub", "team-a", "kubectl-edit", "team-b", "helm"] {
            assert!(note.message.contains(word), "{word}: {}", note.message);
        }
        assert!(super::note(&[]).is_none());
    }
}
