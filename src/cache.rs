//! What regcred keeps in memory of the Namespaces, ServiceAccounts and
//! managed Secrets it watches: for each object only the fields its steps
//! read, in compact records ([`Kept`]), not the API types.
//!
//! An API object costs about 1.2 KiB in a kube reflector store even with
//! its managed fields and data stripped (an `ObjectMeta` of fifteen
//! optional fields, a 544-byte B-tree node per label or annotation map, a
//! string per name, version and uid, and the store's key repeating them):
//! 95 MiB at 10,000 namespaces. The records here are a few hundred bytes.
//! Steps that decide on a ServiceAccount or Secret get an API object back
//! ([`KeptServiceAccount::object`], [`KeptSecret::object`]) holding what
//! was kept; writes change only the fields regcred owns (JSON merge patches
//! with a resourceVersion precondition), so nothing a record leaves out is
//! ever written back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::managed;

/// Labels or annotations, sorted by key: a slice instead of a B-tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs(Box<[(Box<str>, Box<str>)]>);

impl Pairs {
    /// The pairs of `map` whose key `keep` accepts.
    fn of(map: Option<&BTreeMap<String, String>>, keep: impl Fn(&str) -> bool) -> Self {
        Self::with(map, keep, None)
    }

    /// The pairs of `map` whose key `keep` accepts, and `extra`.
    fn with(
        map: Option<&BTreeMap<String, String>>,
        keep: impl Fn(&str) -> bool,
        extra: Option<(&str, String)>,
    ) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = map
            .into_iter()
            .flatten()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        pairs.extend(extra.map(|(k, v)| (k.into(), v.into())));
        pairs.sort();
        Self(pairs.into())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// As the API types hold them; `None` when empty.
    fn to_map(&self) -> Option<BTreeMap<String, String>> {
        (!self.0.is_empty()).then(|| self.0.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

/// A namespace that is being deleted: nothing new can be created in it.
pub fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// A record kept for each object of kind [`Kept::Object`].
pub trait Kept: Sized + Send + Sync + 'static {
    type Object: kube::Resource<DynamicType = ()>;
    fn keep(object: &Self::Object) -> Self;
}

/// What selection reads of a Namespace: name, labels, whether it is going away.
#[derive(Debug, PartialEq, Eq)]
pub struct KeptNamespace {
    pub name: Box<str>,
    pub labels: Pairs,
    pub terminating: bool,
}

impl Kept for KeptNamespace {
    type Object = Namespace;
    fn keep(ns: &Namespace) -> Self {
        Self {
            name: ns.name_any().into(),
            labels: Pairs::of(ns.metadata.labels.as_ref(), |_| true),
            terminating: is_terminating(ns),
        }
    }
}

/// What regcred reads of a ServiceAccount: selection (name, labels), its
/// `imagePullSecrets` names, regcred's record of the entries it added, and
/// the version they were read at.
#[derive(Debug, PartialEq, Eq)]
pub struct KeptServiceAccount {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub resource_version: Option<Box<str>>,
    pub labels: Pairs,
    pub recorded: Option<Box<str>>,
    pub pull_secrets: Box<[Box<str>]>,
    /// Only for a ServiceAccount that names a cloud identity
    /// ([`crate::identity::ANNOTATIONS`]): its uid and those annotations.
    /// One pointer for every other ServiceAccount.
    pub identity: Option<Box<SaIdentity>>,
}

/// The identity annotations of a ServiceAccount, and its uid (the key of
/// its own credential: a ServiceAccount deleted and created again under the
/// same name is another).
#[derive(Debug, PartialEq, Eq)]
pub struct SaIdentity {
    pub uid: Box<str>,
    pub annotations: Pairs,
}

impl Kept for KeptServiceAccount {
    type Object = ServiceAccount;
    fn keep(sa: &ServiceAccount) -> Self {
        Self {
            namespace: sa.namespace().unwrap_or_default().into(),
            name: sa.name_any().into(),
            resource_version: sa.metadata.resource_version.as_deref().map(Into::into),
            labels: Pairs::of(sa.metadata.labels.as_ref(), |_| true),
            recorded: sa
                .annotations()
                .get(managed::PULL_SECRETS_ANNOTATION)
                .map(|v| v.as_str().into()),
            pull_secrets: sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str().into())
                .collect(),
            identity: {
                let annotations = Pairs::of(sa.metadata.annotations.as_ref(), |k| {
                    crate::identity::ANNOTATIONS.contains(&k)
                });
                (!annotations.0.is_empty()).then(|| {
                    Box::new(SaIdentity {
                        uid: sa.uid().unwrap_or_default().into(),
                        annotations,
                    })
                })
            },
        }
    }
}

impl KeptServiceAccount {
    /// The value of identity annotation `key` ([`crate::identity::ANNOTATIONS`]).
    pub fn identity_annotation(&self, key: &str) -> Option<&str> {
        self.identity.as_ref()?.annotations.get(key)
    }

    /// The uid, kept only for a ServiceAccount with an identity annotation.
    pub fn uid(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| &*i.uid)
    }

    /// The ServiceAccount as far as it was kept.
    pub fn object(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: Some(self.namespace.to_string()),
                resource_version: self.resource_version.as_deref().map(Into::into),
                labels: self.labels.to_map(),
                annotations: self
                    .recorded
                    .as_deref()
                    .map(|r| BTreeMap::from([(managed::PULL_SECRETS_ANNOTATION.to_string(), r.to_string())])),
                ..Default::default()
            },
            image_pull_secrets: (!self.pull_secrets.is_empty()).then(|| {
                self.pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.to_string() })
                    .collect()
            }),
            ..Default::default()
        }
    }
}

/// What regcred reads of a Secret it manages: identity and version, type,
/// owners, its own labels and annotations (those it writes, by
/// [`managed::regcred_keys`]) and a digest of the one data key it writes.
#[derive(Debug, PartialEq)]
pub struct KeptSecret {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub uid: Option<Box<str>>,
    pub resource_version: Option<Box<str>>,
    pub type_: Option<Box<str>>,
    pub labels: Pairs,
    pub annotations: Pairs,
    pub owners: Box<[OwnerReference]>,
}

impl Kept for KeptSecret {
    type Object = Secret;
    fn keep(secret: &Secret) -> Self {
        let keep = managed::regcred_keys(secret);
        let meta = &secret.metadata;
        // The digest is computed here: one found on the object vouches for nothing.
        let digest = managed::cached_digest(secret).map(|d| (managed::CACHED_DATA_DIGEST, d));
        Self {
            namespace: secret.namespace().unwrap_or_default().into(),
            name: secret.name_any().into(),
            uid: meta.uid.as_deref().map(Into::into),
            resource_version: meta.resource_version.as_deref().map(Into::into),
            type_: secret.type_.as_deref().map(Into::into),
            labels: Pairs::of(meta.labels.as_ref(), &keep),
            annotations: Pairs::with(
                meta.annotations.as_ref(),
                |k| k != managed::CACHED_DATA_DIGEST && keep(k),
                digest,
            ),
            owners: meta.owner_references.clone().unwrap_or_default().into(),
        }
    }
}

impl KeptSecret {
    /// The Secret in [`managed::cache_form`], as far as it was kept.
    pub fn object(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: Some(self.namespace.to_string()),
                uid: self.uid.as_deref().map(Into::into),
                resource_version: self.resource_version.as_deref().map(Into::into),
                labels: self.labels.to_map(),
                annotations: self.annotations.to_map(),
                owner_references: (!self.owners.is_empty()).then(|| self.owners.to_vec()),
                ..Default::default()
            },
            type_: self.type_.as_deref().map(Into::into),
            ..Default::default()
        }
    }

    /// The RegistryCredential this Secret belongs to, by its labels.
    pub fn credential(&self) -> Option<&str> {
        (self.labels.get(managed::MANAGED_BY_LABEL) == Some(managed::MANAGED_BY_VALUE))
            .then(|| self.labels.get(managed::CREDENTIAL_LABEL))
            .flatten()
    }
}

type Map<T> = HashMap<Box<str>, Arc<T>>;

/// Records by `namespace/name` (a Namespace by its name), fed by a watch.
pub struct Cache<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    map: RwLock<Map<T>>,
    ready: tokio::sync::watch::Sender<bool>,
}

fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into(),
        None => name.into(),
    }
}

impl<T: Kept> Cache<T> {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                map: RwLock::default(),
                ready: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// The record of `name` in `namespace` (`None` for a Namespace).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<T>> {
        self.shared
            .map
            .read()
            .expect("cache lock")
            .get(&key(namespace, name))
            .cloned()
    }

    /// Every record, in no particular order.
    pub fn state(&self) -> Vec<Arc<T>> {
        self.shared.map.read().expect("cache lock").values().cloned().collect()
    }

    /// Wait until the first complete list is in.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Fold one watch event in. A (re-)list is gathered aside and swapped
    /// in whole at its end, so a reader never sees half a list, and what
    /// it no longer lists (deleted meanwhile) goes.
    pub fn apply(&self, event: &watcher::Event<T::Object>, relist: &mut Option<Map<T>>) {
        let key_of = |o: &T::Object| {
            key(
                o.meta().namespace.as_deref(),
                o.meta().name.as_deref().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Init => *relist = Some(Map::new()),
            watcher::Event::InitApply(o) => {
                relist.get_or_insert_default().insert(key_of(o), Arc::new(T::keep(o)));
            }
            watcher::Event::InitDone => {
                let mut fresh = relist.take().unwrap_or_default();
                fresh.shrink_to_fit();
                *self.shared.map.write().expect("cache lock") = fresh;
                self.shared.ready.send_replace(true);
            }
            watcher::Event::Apply(o) => {
                let kept = Arc::new(T::keep(o));
                self.shared.map.write().expect("cache lock").insert(key_of(o), kept);
            }
            watcher::Event::Delete(o) => {
                self.shared.map.write().expect("cache lock").remove(&key_of(o));
            }
        }
    }

    /// A cache holding `objects`, complete (for tests of the steps that read it).
    pub fn of(objects: impl IntoIterator<Item = T::Object>) -> Self {
        let cache = Self::new();
        let mut relist = None;
        cache.apply(&watcher::Event::Init, &mut relist);
        for o in objects {
            cache.apply(&watcher::Event::InitApply(o), &mut relist);
        }
        cache.apply(&watcher::Event::InitDone, &mut relist);
        cache
    }
}

impl<T: Kept> Default for Cache<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        let mut s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "pull", "namespace": "a", "uid": "u-1", "resourceVersion": "7",
                "labels": {
                    "app.kubernetes.io/managed-by": "regcred", "regcred.dev/credential": "hub",
                    "team": "a", "someone-elses": "x"
                },
                "annotations": {
                    "regcred.dev/managed-metadata": "{\"labels\":[\"team\"],\"annotations\":[\"note\"]}",
                    "note": "n", "kubectl.kubernetes.io/last-applied-configuration": "{…}"
                },
                "ownerReferences": [{"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
                                     "name": "hub", "uid": "rc-1", "controller": true}],
                "managedFields": [{"manager": "regcred"}]
            },
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30=", "other": "eA=="}
        }))
        .unwrap();
        s.metadata.creation_timestamp = None;
        s
    }

    #[test]
    fn a_kept_secret_is_its_cache_form_less_the_keys_regcred_never_wrote() {
        let kept = KeptSecret::keep(&secret());
        assert_eq!(kept.credential(), Some("hub"));
        let mut want = secret();
        managed::cache_form(&mut want);
        want.metadata.managed_fields = None;
        let labels = want.metadata.labels.as_mut().unwrap();
        labels.remove("someone-elses");
        let annotations = want.metadata.annotations.as_mut().unwrap();
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        assert_eq!(kept.object(), want);
    }

    #[test]
    fn a_kept_service_account_keeps_selection_entries_and_record() {
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "default", "namespace": "a", "resourceVersion": "3",
                         "labels": {"team": "a"},
                         "annotations": {"regcred.dev/pull-secrets": "pull=hub", "big": "…"}},
            "imagePullSecrets": [{"name": "theirs"}, {"name": "pull"}],
            "secrets": [{"name": "token"}],
            "automountServiceAccountToken": false
        }))
        .unwrap();
        let back = KeptServiceAccount::keep(&sa).object();
        assert_eq!(back.labels(), sa.labels());
        assert_eq!(back.annotations().len(), 1);
        assert!(crate::reconcile::build::recorded_by(&back, "pull", "hub"));
        assert_eq!(back.image_pull_secrets, sa.image_pull_secrets);
        assert_eq!(back.resource_version(), sa.resource_version());
    }

    #[test]
    fn terminating_namespaces_are_recognized() {
        let mut n = Namespace::default();
        assert!(!is_terminating(&n));
        n.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(is_terminating(&n));
        assert!(KeptNamespace::keep(&n).terminating);
    }

    #[test]
    fn pairs_find_every_key_they_hold_and_no_other() {
        let map: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("c", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let pairs = Pairs::of(Some(&map), |k| k != "c");
        assert_eq!(
            (pairs.get("a"), pairs.get("b"), pairs.get("c")),
            (Some("1"), Some("2"), None)
        );
        assert_eq!(Pairs::of(None, |_| true).to_map(), None);
    }

    #[test]
    fn a_relist_replaces_the_whole_content_at_its_end() {
        let ns = |n: &str| Namespace {
            metadata: ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let cache = Cache::<KeptNamespace>::of([ns("a"), ns("b")]);
        let mut relist = None;
        cache.apply(&watcher::Event::Init, &mut relist);
        cache.apply(&watcher::Event::InitApply(ns("b")), &mut relist);
        // Mid-list, readers still see the old content.
        assert!(cache.get(None, "a").is_some());
        cache.apply(&watcher::Event::InitDone, &mut relist);
        assert!(cache.get(None, "a").is_none());
        assert_eq!(cache.get(None, "b").unwrap().name.as_ref(), "b");
        cache.apply(&watcher::Event::Delete(ns("b")), &mut relist);
        assert!(cache.state().is_empty());
    }
}
