//! The *build* step: the objects regcred wants, computed from the spec, the
//! credential and what the caches hold. Pure: no client, no clock.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::RegistryCredential;
use crate::dockerconfig;

pub use crate::managed::{
    CACHED_DATA_DIGEST, CREDENTIAL_LABEL, FINALIZER, FINGERPRINT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    MANAGED_METADATA_ANNOTATION, MANAGED_SELECTOR, ManagedMetadata, NOT_AFTER_ANNOTATION, PULL_SECRETS_ANNOTATION,
    cache_form, cached_digest, data_digest, is_managed_by, managing_credential, regcred_keys, secret_name,
};

/// The managed Secret for one namespace.
pub fn desired_secret(
    rc: &RegistryCredential,
    namespace: &str,
    config_json: &[u8],
    not_after: Option<&str>,
    fingerprint: &str,
) -> Secret {
    let mut ours = vec![(FINGERPRINT_ANNOTATION, fingerprint.to_string())];
    ours.extend(not_after.map(|t| (NOT_AFTER_ANNOTATION, t.to_string())));
    secret_with(rc, namespace, &secret_name(rc), config_json, ours)
}

/// A managed Secret named `name` in `namespace` holding `config_json`, with
/// regcred's labels, the spec's labels and annotations, and `ours`.
pub fn secret_with(
    rc: &RegistryCredential,
    namespace: &str,
    name: &str,
    config_json: &[u8],
    ours: Vec<(&str, String)>,
) -> Secret {
    let target = &rc.spec.target;
    let mut labels = target.secret_labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(CREDENTIAL_LABEL.into(), rc.name_any());
    let mut annotations = target.secret_annotations.clone();
    annotations.extend(ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    let written = ManagedMetadata {
        labels: labels.keys().cloned().collect(),
        annotations: annotations.keys().cloned().collect(),
    };
    annotations.insert(MANAGED_METADATA_ANNOTATION.into(), written.encode());
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(rc)]),
            ..Default::default()
        },
        type_: Some(dockerconfig::SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            dockerconfig::DATA_KEY.to_string(),
            ByteString(config_json.to_vec()),
        )])),
        ..Default::default()
    }
}

fn owner_reference(rc: &RegistryCredential) -> OwnerReference {
    rc.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
        api_version: RegistryCredential::api_version(&()).into(),
        kind: RegistryCredential::kind(&()).into(),
        name: rc.name_any(),
        uid: rc.uid().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    })
}

/// Whether `existing` (in [`cache_form`]) already carries everything of
/// `desired`: type, data, our labels and annotations, the owner reference.
/// Others' extra labels, annotations and data keys are left alone and do not count.
pub fn secret_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let contains = |have: Option<&BTreeMap<String, String>>, want: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    let held = existing.annotations().get(CACHED_DATA_DIGEST);
    let data_ok = desired
        .data
        .iter()
        .flatten()
        .all(|(k, v)| k == dockerconfig::DATA_KEY && held == Some(&data_digest(&v.0)));
    let owner_ok = desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .all(|o| existing.owner_references().iter().any(|e| e.uid == o.uid));
    existing.type_ == desired.type_
        && data_ok
        && owner_ok
        && contains(existing.metadata.labels.as_ref(), desired.metadata.labels.as_ref())
        && contains(
            existing.metadata.annotations.as_ref(),
            desired.metadata.annotations.as_ref(),
        )
}

/// `existing` updated to carry `desired`, keeping what others added and
/// dropping the keys regcred wrote before that `desired` no longer has.
pub fn merged_secret(existing: &Secret, desired: &Secret) -> Secret {
    let mut out = existing.clone();
    out.metadata.managed_fields = None;
    let previous = ManagedMetadata::of(existing);
    if let Some(labels) = out.metadata.labels.as_mut() {
        let keep = desired.metadata.labels.as_ref();
        labels.retain(|k, _| !previous.labels.contains(k) || keep.is_some_and(|d| d.contains_key(k)));
    }
    if let Some(annotations) = out.metadata.annotations.as_mut() {
        let keep = desired.metadata.annotations.as_ref();
        annotations.retain(|k, _| !previous.annotations.contains(k) || keep.is_some_and(|d| d.contains_key(k)));
    }
    out.type_ = desired.type_.clone();
    out.data
        .get_or_insert_default()
        .extend(desired.data.clone().unwrap_or_default());
    out.metadata
        .labels
        .get_or_insert_default()
        .extend(desired.metadata.labels.clone().unwrap_or_default());
    out.metadata
        .annotations
        .get_or_insert_default()
        .extend(desired.metadata.annotations.clone().unwrap_or_default());
    let owners = out.metadata.owner_references.get_or_insert_default();
    for o in desired.metadata.owner_references.iter().flatten() {
        if !owners.iter().any(|e| e.uid == o.uid) {
            owners.push(o.clone());
        }
    }
    out
}

/// The JSON merge patch that turns `existing` (in [`cache_form`]) into
/// `merged` ([`merged_secret`]): regcred's data key, the labels and
/// annotations that differ (removed ones as `null`), the owner references
/// when they differ, and `existing`'s resourceVersion, so that a Secret
/// changed meanwhile answers 409 instead of being overwritten. Data keys of
/// others are not in it and stay as they are.
pub fn secret_patch(existing: &Secret, merged: &Secret) -> serde_json::Value {
    use serde_json::{Map, Value};
    fn diff(have: Option<&BTreeMap<String, String>>, want: Option<&BTreeMap<String, String>>) -> Map<String, Value> {
        let mut out = Map::new();
        for k in have.into_iter().flatten().map(|(k, _)| k) {
            if k != CACHED_DATA_DIGEST && !want.is_some_and(|w| w.contains_key(k)) {
                out.insert(k.clone(), Value::Null);
            }
        }
        for (k, v) in want.into_iter().flatten() {
            if k != CACHED_DATA_DIGEST && have.and_then(|h| h.get(k)) != Some(v) {
                out.insert(k.clone(), Value::String(v.clone()));
            }
        }
        out
    }
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), existing.resource_version().into());
    let labels = diff(existing.metadata.labels.as_ref(), merged.metadata.labels.as_ref());
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    let annotations = diff(
        existing.metadata.annotations.as_ref(),
        merged.metadata.annotations.as_ref(),
    );
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if existing.owner_references() != merged.owner_references() {
        metadata.insert(
            "ownerReferences".into(),
            serde_json::to_value(merged.owner_references()).unwrap_or_default(),
        );
    }
    let mut patch = Map::new();
    patch.insert("metadata".into(), Value::Object(metadata));
    if let Some(data) = merged.data.as_ref().and_then(|d| d.get(dockerconfig::DATA_KEY)) {
        patch.insert(
            "data".into(),
            serde_json::json!({ dockerconfig::DATA_KEY: serde_json::to_value(data).unwrap_or_default() }),
        );
    }
    Value::Object(patch)
}

/// One `imagePullSecrets` entry regcred added, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub secret: String,
    /// The RegistryCredential that added it; `None` for records written
    /// before owners were kept (taken as the adding credential's).
    pub owner: Option<String>,
}

impl Recorded {
    /// Whether `rc` may treat this entry as its own.
    fn belongs_to(&self, rc: &str) -> bool {
        self.owner.as_deref().is_none_or(|o| o == rc)
    }
}

/// The entries regcred recorded as added to this ServiceAccount.
pub fn recorded_entries(sa: &ServiceAccount) -> Vec<Recorded> {
    sa.annotations()
        .get(PULL_SECRETS_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|e| match e.split_once('=') {
                    Some((secret, owner)) => Recorded {
                        secret: secret.into(),
                        owner: Some(owner.into()),
                    },
                    None => Recorded {
                        secret: e.into(),
                        owner: None,
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `rc` recorded an entry for `secret` on `sa`.
pub fn recorded_by(sa: &ServiceAccount, secret: &str, rc: &str) -> bool {
    recorded_entries(sa)
        .iter()
        .any(|r| r.secret == secret && r.belongs_to(rc))
}

fn set_recorded(sa: &mut ServiceAccount, entries: &[Recorded]) {
    let annotations = sa.annotations_mut();
    if entries.is_empty() {
        annotations.remove(PULL_SECRETS_ANNOTATION);
    } else {
        let text: Vec<String> = entries
            .iter()
            .map(|r| match &r.owner {
                Some(o) => format!("{}={o}", r.secret),
                None => r.secret.clone(),
            })
            .collect();
        annotations.insert(PULL_SECRETS_ANNOTATION.into(), text.join(","));
    }
}

fn references(sa: &ServiceAccount, secret: &str) -> bool {
    sa.image_pull_secrets.iter().flatten().any(|r| r.name == secret)
}

/// What a ServiceAccount needs for one managed Secret name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaChange {
    /// Append the reference and record it.
    Add,
    /// Remove the reference regcred added (and only if this credential added it).
    Remove,
}

/// The change `sa` needs given whether it is `selected` to reference `secret`
/// for RegistryCredential `rc`. An entry recorded by another
/// RegistryCredential is never removed.
pub fn sa_change(sa: &ServiceAccount, secret: &str, rc: &str, selected: bool) -> Option<SaChange> {
    let ours = recorded_by(sa, secret, rc);
    match (selected, references(sa, secret), ours) {
        (true, false, _) => Some(SaChange::Add),
        (false, true, true) => Some(SaChange::Remove),
        // Recorded but already gone (someone removed it): forget the record.
        (false, false, true) => Some(SaChange::Remove),
        _ => None,
    }
}

/// `sa` with `change` applied to its atomic `imagePullSecrets` list. Entries
/// of others stay in place and in order.
pub fn apply_sa_change(sa: &ServiceAccount, secret: &str, rc: &str, change: SaChange) -> ServiceAccount {
    let mut out = sa.clone();
    out.metadata.managed_fields = None;
    let mut recorded = recorded_entries(sa);
    match change {
        SaChange::Add => {
            if !references(sa, secret) {
                out.image_pull_secrets
                    .get_or_insert_default()
                    .push(LocalObjectReference { name: secret.into() });
                recorded.retain(|r| r.secret != secret);
                recorded.push(Recorded {
                    secret: secret.into(),
                    owner: Some(rc.into()),
                });
            }
        }
        SaChange::Remove => {
            if recorded.iter().any(|r| r.secret == secret && r.belongs_to(rc))
                && let Some(list) = out.image_pull_secrets.as_mut()
            {
                list.retain(|r| r.name != secret);
            }
            recorded.retain(|r| !(r.secret == secret && r.belongs_to(rc)));
        }
    }
    set_recorded(&mut out, &recorded);
    out
}

/// The JSON merge patch that turns `current` into `updated`
/// ([`apply_sa_change`]): the whole `imagePullSecrets` list (an atomic list,
/// replaced as one), regcred's record annotation, and `current`'s
/// resourceVersion, so that a ServiceAccount changed meanwhile answers 409
/// instead of losing the other writer's entries. Nothing else of the
/// ServiceAccount is in it: the cache need not keep the rest.
pub fn sa_patch(current: &ServiceAccount, updated: &ServiceAccount) -> serde_json::Value {
    let pulls = updated
        .image_pull_secrets
        .as_ref()
        .filter(|l| !l.is_empty())
        .map_or(serde_json::Value::Null, |l| serde_json::json!(l));
    serde_json::json!({
        "metadata": {
            "resourceVersion": current.resource_version(),
            "annotations": { PULL_SECRETS_ANNOTATION: updated.annotations().get(PULL_SECRETS_ANNOTATION) },
        },
        "imagePullSecrets": pulls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture credential with a label of its own to copy.
    fn rc() -> RegistryCredential {
        let mut rc = super::super::fixtures::rc();
        rc.spec.target.secret_labels.insert("team".into(), "a".into());
        rc
    }

    fn sa(pull: &[&str], recorded: Option<&str>) -> ServiceAccount {
        let mut sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            image_pull_secrets: Some(
                pull.iter()
                    .map(|n| LocalObjectReference { name: n.to_string() })
                    .collect(),
            ),
            ..Default::default()
        };
        if let Some(r) = recorded {
            sa.annotations_mut().insert(PULL_SECRETS_ANNOTATION.into(), r.into());
        }
        sa
    }

    fn names(sa: &ServiceAccount) -> Vec<&str> {
        sa.image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn desired_secret_carries_type_labels_annotations_and_owner() {
        let s = desired_secret(&rc(), "ci", b"{}", Some("2026-11-22T10:00:00Z"), "fp");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        assert_eq!(s.metadata.name.as_deref(), Some("hub"));
        assert_eq!(s.labels()["app.kubernetes.io/managed-by"], "regcred");
        assert_eq!(s.labels()["regcred.dev/credential"], "hub");
        assert_eq!(s.labels()["team"], "a");
        assert_eq!(s.annotations()["regcred.dev/not-after"], "2026-11-22T10:00:00Z");
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("RegistryCredential", "uid-hub")
        );
        // blockOwnerDeletion would need registrycredentials/finalizers update,
        // which the chart does not grant.
        assert_eq!(owner.block_owner_deletion, None);
        assert!(is_managed_by(&s, "hub"));
        assert!(!is_managed_by(&s, "other"));
    }

    #[test]
    fn up_to_date_ignores_what_others_added_but_not_our_fields() {
        let desired = desired_secret(&rc(), "ci", b"{\"auths\":{}}", None, "fp");
        let mut existing = desired.clone();
        existing.labels_mut().insert("extra".into(), "x".into());
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("other".into(), ByteString(b"x".to_vec()));
        assert!(secret_up_to_date(&cached(&existing), &desired));

        let mut edited = existing.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert(".dockerconfigjson".into(), ByteString(b"{}".to_vec()));
        assert!(!secret_up_to_date(&cached(&edited), &desired));
        let merged = merged_secret(&cached(&edited), &desired);
        assert!(secret_up_to_date(&cached(&merged), &desired));
        assert_eq!(merged.labels()["extra"], "x");

        let mut opaque = existing.clone();
        opaque.type_ = Some("Opaque".into());
        assert!(!secret_up_to_date(&cached(&opaque), &desired));
    }

    fn cached(secret: &Secret) -> Secret {
        let mut s = secret.clone();
        cache_form(&mut s);
        s
    }

    #[test]
    fn the_cache_keeps_a_digest_not_the_data_and_a_forged_digest_counts_for_nothing() {
        let desired = desired_secret(&rc(), "ci", b"{\"auths\":{\"r\":{\"auth\":\"dTpw\"}}}", None, "fp");
        let kept = cached(&desired);
        assert!(kept.data.is_none());
        assert!(!format!("{kept:?}").contains("dTpw"), "no secret material in the cache");
        assert!(secret_up_to_date(&kept, &desired));
        // An emptied Secret that carries a copied digest annotation is not up to date.
        let mut forged = desired.clone();
        forged.data = None;
        forged.annotations_mut().insert(
            CACHED_DATA_DIGEST.into(),
            kept.annotations()[CACHED_DATA_DIGEST].clone(),
        );
        assert!(!secret_up_to_date(&cached(&forged), &desired));
    }

    #[test]
    fn the_patch_carries_our_key_and_what_differs_never_the_cache_digest() {
        let mut existing = desired_secret(&rc(), "ci", b"old", None, "fp");
        existing.metadata.resource_version = Some("41".into());
        existing.labels_mut().insert("extra".into(), "x".into());
        existing
            .annotations_mut()
            .insert(NOT_AFTER_ANNOTATION.into(), "2026-11-22T10:00:00Z".into());
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("other".into(), ByteString(b"x".to_vec()));
        let existing = cached(&existing);
        let desired = desired_secret(&rc(), "ci", b"new", None, "fp2");
        let patch = secret_patch(&existing, &merged_secret(&existing, &desired));
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        assert_eq!(patch["data"][".dockerconfigjson"], "bmV3");
        assert!(patch["data"].get("other").is_none(), "others' keys are left alone");
        assert_eq!(
            patch["metadata"]["annotations"][NOT_AFTER_ANNOTATION],
            serde_json::Value::Null
        );
        assert_eq!(patch["metadata"]["annotations"][FINGERPRINT_ANNOTATION], "fp2");
        assert!(patch["metadata"]["annotations"].get(CACHED_DATA_DIGEST).is_none());
        assert!(patch["metadata"].get("labels").is_none(), "labels unchanged");
        assert!(patch["metadata"].get("ownerReferences").is_none(), "owner unchanged");
    }

    #[test]
    fn keys_dropped_from_the_spec_leave_the_secret_but_foreign_keys_stay() {
        let mut before = rc();
        before.spec.target.secret_annotations.insert("note".into(), "n".into());
        let mut existing = desired_secret(&before, "ci", b"{}", Some("2026-11-22T10:00:00Z"), "fp");
        existing.labels_mut().insert("extra".into(), "x".into());
        existing
            .annotations_mut()
            .insert("kubectl.kubernetes.io/x".into(), "y".into());

        // Labels and annotations removed from the spec; a static source has no expiry.
        let mut after = rc();
        after.spec.target.secret_labels.clear();
        let desired = desired_secret(&after, "ci", b"{}", None, "fp");
        let existing = cached(&existing);
        assert!(!secret_up_to_date(&existing, &desired), "a dropped key is a change");

        let merged = merged_secret(&existing, &desired);
        assert!(secret_up_to_date(&cached(&merged), &desired));
        assert!(!merged.labels().contains_key("team"));
        assert!(!merged.annotations().contains_key("note"));
        assert!(!merged.annotations().contains_key(NOT_AFTER_ANNOTATION));
        assert_eq!(merged.labels()["extra"], "x");
        assert_eq!(merged.annotations()["kubectl.kubernetes.io/x"], "y");
        assert_eq!(merged.labels()[CREDENTIAL_LABEL], "hub");
    }

    #[test]
    fn an_adopted_secret_without_a_record_loses_nothing() {
        let mut foreign = Secret::default();
        foreign.labels_mut().insert("team".into(), "old".into());
        foreign.labels_mut().insert("keep".into(), "me".into());
        foreign
            .annotations_mut()
            .insert(MANAGED_METADATA_ANNOTATION.into(), "not json".into());
        let merged = merged_secret(&foreign, &desired_secret(&rc(), "ci", b"{}", None, "fp"));
        assert_eq!(merged.labels()["keep"], "me");
        assert_eq!(merged.labels()["team"], "a");
    }
    #[test]
    fn adds_once_and_keeps_foreign_entries_in_order() {
        let before = sa(&["a", "b", "c"], None);
        assert_eq!(sa_change(&before, "hub", "hub-rc", true), Some(SaChange::Add));
        let after = apply_sa_change(&before, "hub", "hub-rc", SaChange::Add);
        assert_eq!(names(&after), ["a", "b", "c", "hub"]);
        assert_eq!(after.annotations()[PULL_SECRETS_ANNOTATION], "hub=hub-rc");
        assert_eq!(sa_change(&after, "hub", "hub-rc", true), None);
    }

    #[test]
    fn removes_only_what_it_added() {
        // A record from before owners were kept counts as the remover's.
        let ours = sa(&["a", "hub", "c"], Some("hub"));
        assert_eq!(sa_change(&ours, "hub", "hub-rc", false), Some(SaChange::Remove));
        let after = apply_sa_change(&ours, "hub", "hub-rc", SaChange::Remove);
        assert_eq!(names(&after), ["a", "c"]);
        assert!(!after.annotations().contains_key(PULL_SECRETS_ANNOTATION));

        // Someone else put a same-named entry there: never ours to remove.
        let theirs = sa(&["hub"], None);
        assert_eq!(sa_change(&theirs, "hub", "hub-rc", false), None);
        assert_eq!(sa_change(&theirs, "hub", "hub-rc", true), None);
    }

    #[test]
    fn never_removes_an_entry_another_credential_recorded() {
        let other = sa(&["a", "hub"], Some("hub=first"));
        assert_eq!(sa_change(&other, "hub", "second", false), None);
        let unchanged = apply_sa_change(&other, "hub", "second", SaChange::Remove);
        assert_eq!(names(&unchanged), ["a", "hub"]);
        assert_eq!(unchanged.annotations()[PULL_SECRETS_ANNOTATION], "hub=first");
        assert_eq!(sa_change(&other, "hub", "first", false), Some(SaChange::Remove));
    }

    #[test]
    fn keeps_records_of_other_credentials() {
        let both = sa(&["x", "hub", "ecr"], Some("hub=hub,ecr=ecr"));
        let after = apply_sa_change(&both, "hub", "hub", SaChange::Remove);
        assert_eq!(names(&after), ["x", "ecr"]);
        assert_eq!(after.annotations()[PULL_SECRETS_ANNOTATION], "ecr=ecr");
    }
}
