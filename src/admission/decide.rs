//! Which of regcred's Secrets a pod being created should name, and the
//! patch that makes it so. Pure: the same targeting decision the fan-out
//! makes ([`targets::namespace_targeted`], [`targets::service_account_selected`]),
//! over what the caches hold. In `identity: PerServiceAccount` mode the
//! pod names its ServiceAccount's own Secret ([`pull_secret`]).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::LocalObjectReference;

use crate::api::Target;
use crate::cache::{KeptNamespace, KeptServiceAccount};
use crate::identity::{self, PerServiceAccount};
use crate::targets::{self, Selectable};

/// On a namespace or a pod: `regcred.dev/admission: disabled` keeps the
/// webhook away from it (the chart's selectors skip it; the handler checks too).
pub const OPT_OUT_LABEL: &str = "regcred.dev/admission";
pub const OPT_OUT_VALUE: &str = "disabled";

/// The namespaces the webhook never touches, whatever a RegistryCredential
/// selects: the cluster's own, and regcred's (whose pods must start for
/// admission to work at all).
pub fn excluded_namespace(namespace: &str, own_namespace: &str, excluded: &[String]) -> bool {
    namespace == "kube-system" || namespace == own_namespace || excluded.iter().any(|e| e == namespace)
}

/// Whether a label set says "leave me alone".
pub fn opted_out(labels: &impl Selectable) -> bool {
    labels.label(OPT_OUT_LABEL) == Some(OPT_OUT_VALUE)
}

impl Selectable for k8s_openapi::api::core::v1::Pod {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }
}

/// One RegistryCredential as admission sees it.
pub struct Offer<'a> {
    pub credential: &'a str,
    /// `spec.target.secretName` or the RegistryCredential's name.
    pub secret: String,
    pub target: &'a Target,
    /// `Some` when the RegistryCredential mints per ServiceAccount.
    pub per_service_account: Option<PerServiceAccount>,
}

/// The identity annotations of a ServiceAccount, as far as admission knows them.
pub trait Annotated {
    fn identity_annotation(&self, key: &str) -> Option<&str>;
}

impl Annotated for KeptServiceAccount {
    fn identity_annotation(&self, key: &str) -> Option<&str> {
        KeptServiceAccount::identity_annotation(self, key)
    }
}

/// The Secret a pod of ServiceAccount `sa` should name for `offer` (which
/// [`linked`] took in): the shared Secret, or in `PerServiceAccount` mode
/// that ServiceAccount's own (`<secret>-<sa>`), whether or not it is written
/// yet; `None` for a ServiceAccount that names no identity of the mode's
/// kind, which gets nothing (as the reconcile gives it nothing).
pub fn pull_secret(offer: &Offer<'_>, sa: &(impl Selectable + Annotated)) -> Option<String> {
    let Some(mode) = &offer.per_service_account else {
        return Some(offer.secret.clone());
    };
    mode.identity(|key| sa.identity_annotation(key))?;
    Some(identity::secret_name(&offer.secret, sa.name()))
}

/// Whether any offer mints per ServiceAccount: then admission needs the
/// ServiceAccount's annotations, not only its name.
pub fn needs_sa_annotations(offers: &[Offer<'_>]) -> bool {
    offers.iter().any(|o| o.per_service_account.is_some())
}

/// The offers whose targets take in a pod of ServiceAccount `sa` in `ns`.
/// A RegistryCredential without a credential yet is not offered at all
/// (the caller filters): the fan-out links nothing for it either.
pub fn linked<'a, 'o>(
    offers: &'o [Offer<'a>],
    credentials_namespace: &str,
    ns: &KeptNamespace,
    sa: &impl Selectable,
) -> Vec<&'o Offer<'a>> {
    offers
        .iter()
        .filter(|o| {
            targets::namespace_targeted(&o.target.namespaces, credentials_namespace, ns)
                && targets::service_account_selected(&o.target.service_accounts, sa)
        })
        .collect()
}

/// The offers that take in a pod of ServiceAccount `sa` in `ns`, each with
/// the Secret the pod should name for it ([`pull_secret`]).
pub fn pull_secrets<'a, 'o>(
    offers: &'o [Offer<'a>],
    credentials_namespace: &str,
    ns: &KeptNamespace,
    sa: &(impl Selectable + Annotated),
) -> Vec<(&'o Offer<'a>, String)> {
    linked(offers, credentials_namespace, ns, sa)
        .into_iter()
        .filter_map(|o| Some((o, pull_secret(o, sa)?)))
        .collect()
}

/// Whether selecting the ServiceAccount needs its labels (a selector), or
/// its name is enough.
pub fn needs_sa_labels(offers: &[Offer<'_>]) -> bool {
    offers.iter().any(|o| o.target.service_accounts.selector.is_some())
}

/// A ServiceAccount known by name only: a pod names one that is not (yet)
/// in the cache, and no offer selects by label.
pub struct NamedServiceAccount<'a>(pub &'a str);

impl Selectable for NamedServiceAccount<'_> {
    fn name(&self) -> &str {
        self.0
    }
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl Annotated for NamedServiceAccount<'_> {
    fn identity_annotation(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// The JSON patch appending `add` (in order, without repeats) to the pod's
/// `spec.imagePullSecrets` (`existing`, as the pod names them), skipping
/// names it already holds: nothing the pod names is removed or reordered,
/// and a second run finds nothing to add (`reinvocationPolicy: IfNeeded`).
/// `None` when there is nothing to add.
pub fn pull_secrets_patch(existing: Option<&[LocalObjectReference]>, add: &[String]) -> Option<Patch> {
    let mut names: Vec<&str> = existing.unwrap_or_default().iter().map(|r| r.name.as_str()).collect();
    let mut new = Vec::new();
    for name in add {
        if !names.contains(&name.as_str()) {
            names.push(name);
            new.push(name.as_str());
        }
    }
    if new.is_empty() {
        return None;
    }
    let entry = |name: &str| serde_json::json!({ "name": name });
    let ops = match existing {
        // No list yet (or `null`): add the whole list at once.
        None => vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "imagePullSecrets"]),
            value: serde_json::Value::Array(new.into_iter().map(entry).collect()),
        })],
        Some(_) => new
            .into_iter()
            .map(|name| {
                PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["spec", "imagePullSecrets", "-"]),
                    value: entry(name),
                })
            })
            .collect(),
    };
    Some(Patch(ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NamespaceSelection, ServiceAccountSelection};
    use crate::cache::Kept;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn ns(name: &str, labels: &[(&str, &str)]) -> KeptNamespace {
        KeptNamespace::keep(&Namespace {
            metadata: regcred_meta(name, labels),
            ..Default::default()
        })
    }

    fn regcred_meta(name: &str, labels: &[(&str, &str)]) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    fn target(namespaces: NamespaceSelection, service_accounts: ServiceAccountSelection) -> Target {
        Target {
            namespaces,
            service_accounts,
            ..Default::default()
        }
    }

    fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
        names
            .iter()
            .map(|n| LocalObjectReference { name: n.to_string() })
            .collect()
    }

    /// The pod's list after the patch, as the API server would apply it.
    fn applied(existing: Option<&[&str]>, add: &[&str]) -> Option<Vec<String>> {
        let existing = existing.map(refs);
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        let patch = pull_secrets_patch(existing.as_deref(), &add)?;
        let mut pod = serde_json::to_value(Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                image_pull_secrets: existing,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod it was made for");
        let pod: Pod = serde_json::from_value(pod).unwrap();
        Some(
            pod.spec
                .unwrap()
                .image_pull_secrets
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect(),
        )
    }

    #[test]
    fn appends_without_removing_or_reordering_and_is_idempotent() {
        assert_eq!(applied(None, &["hub"]).unwrap(), ["hub"]);
        assert_eq!(applied(Some(&[]), &["hub"]).unwrap(), ["hub"]);
        assert_eq!(
            applied(Some(&["theirs", "other"]), &["hub", "ecr"]).unwrap(),
            ["theirs", "other", "hub", "ecr"]
        );
        assert_eq!(
            applied(Some(&["hub", "theirs"]), &["hub", "ecr"]).unwrap(),
            ["hub", "theirs", "ecr"]
        );
        // Already there: no patch at all (a reinvocation changes nothing).
        assert!(applied(Some(&["theirs", "hub"]), &["hub"]).is_none());
        assert!(applied(None, &[]).is_none());
        // Two RegistryCredentials writing one name: added once.
        assert_eq!(applied(None, &["hub", "hub"]).unwrap(), ["hub"]);
    }

    #[test]
    fn links_exactly_what_the_fan_out_targets() {
        let labelled = target(
            NamespaceSelection {
                selector: Some(LabelSelector {
                    match_labels: Some([("team".to_string(), "a".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ServiceAccountSelection::default(),
        );
        let everywhere_builders = target(
            NamespaceSelection {
                exclude: vec!["excluded".into()],
                ..Default::default()
            },
            ServiceAccountSelection {
                names: vec!["builder".into()],
                selector: None,
            },
        );
        let offers = [
            Offer {
                credential: "a",
                secret: "a-pull".into(),
                target: &labelled,
                per_service_account: None,
            },
            Offer {
                credential: "b",
                secret: "b-pull".into(),
                target: &everywhere_builders,
                per_service_account: None,
            },
        ];
        let names = |ns: &KeptNamespace, sa: &str| -> Vec<&str> {
            linked(&offers, "regcred-system", ns, &NamedServiceAccount(sa))
                .into_iter()
                .map(|o| o.credential)
                .collect()
        };
        assert_eq!(names(&ns("team-a", &[("team", "a")]), "default"), ["a"]);
        assert_eq!(names(&ns("team-a", &[("team", "a")]), "builder"), ["b"]);
        assert!(names(&ns("other", &[]), "default").is_empty());
        assert!(names(&ns("excluded", &[]), "builder").is_empty());
        // The credentials namespace is never a target, as in the fan-out.
        assert!(names(&ns("regcred-system", &[("team", "a")]), "default").is_empty());
        // Nor a terminating namespace.
        let mut terminating = ns("team-a", &[("team", "a")]);
        terminating.terminating = true;
        assert!(names(&terminating, "default").is_empty());
        assert!(!needs_sa_labels(&offers));
    }

    /// A ServiceAccount as the cache keeps it, with `annotations`.
    fn kept_sa(name: &str, annotations: &[(&str, &str)]) -> KeptServiceAccount {
        let mut meta = regcred_meta(name, &[]);
        meta.namespace = Some("team-a".into());
        meta.uid = Some(format!("uid-{name}"));
        meta.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        KeptServiceAccount::keep(&k8s_openapi::api::core::v1::ServiceAccount {
            metadata: meta,
            ..Default::default()
        })
    }

    #[test]
    fn per_service_account_mode_names_each_service_accounts_own_secret_or_nothing() {
        use crate::api::{AcrProvider, EcrProvider, Identity, ProviderSpec};
        use crate::identity::{AWS_ROLE_ANNOTATION, AZURE_CLIENT_ID_ANNOTATION};
        let everywhere = target(
            NamespaceSelection::default(),
            ServiceAccountSelection {
                names: vec!["*".into()],
                selector: None,
            },
        );
        let ecr = EcrProvider {
            identity: Identity::PerServiceAccount,
            ..Default::default()
        };
        let shared = EcrProvider::default();
        let offer = |credential, provider| Offer {
            credential,
            secret: format!("{credential}-pull"),
            target: &everywhere,
            per_service_account: PerServiceAccount::of(provider),
        };
        let offers = [
            offer("per-sa", ProviderSpec::Ecr(&ecr)),
            offer("shared", ProviderSpec::Ecr(&shared)),
        ];
        assert!(needs_sa_annotations(&offers));
        assert!(!needs_sa_annotations(&offers[1..]));
        let team = ns("team-a", &[]);
        let names = |sa: KeptServiceAccount| -> Vec<String> {
            pull_secrets(&offers, "regcred-system", &team, &sa)
                .into_iter()
                .map(|(_, secret)| secret)
                .collect()
        };
        let role = "arn:aws:iam::111111111111:role/team-a";
        assert_eq!(
            names(kept_sa("builder", &[(AWS_ROLE_ANNOTATION, role)])),
            ["per-sa-pull-builder", "shared-pull"],
            "the annotated ServiceAccount's own Secret, and the shared one of the other credential"
        );
        assert_eq!(
            names(kept_sa("default", &[])),
            ["shared-pull"],
            "no annotation: nothing of the per-ServiceAccount credential"
        );
        assert_eq!(
            names(kept_sa("default", &[(AWS_ROLE_ANNOTATION, " ")])),
            ["shared-pull"],
            "an empty annotation names no identity"
        );
        assert_eq!(
            names(kept_sa("web", &[(AZURE_CLIENT_ID_ANNOTATION, "c1")])),
            ["shared-pull"],
            "another provider's annotation is not this mode's"
        );
        // Known by name only (not in the cache, not readable): no annotation known, nothing.
        let named: Vec<String> = pull_secrets(&offers, "regcred-system", &team, &NamedServiceAccount("builder"))
            .into_iter()
            .map(|(_, secret)| secret)
            .collect();
        assert_eq!(named, ["shared-pull"]);
        // Azure: the client id alone names it (the tenant defaults to the spec's).
        let acr = AcrProvider {
            identity: Identity::PerServiceAccount,
            tenant_id: "t".into(),
            ..Default::default()
        };
        let azure = offer("acr", ProviderSpec::Acr(&acr));
        let sa = kept_sa("web", &[(AZURE_CLIENT_ID_ANNOTATION, "c1")]);
        assert_eq!(pull_secret(&azure, &sa).as_deref(), Some("acr-pull-web"));
        // Not selected: nothing, whatever it is annotated with.
        let builders = target(
            NamespaceSelection::default(),
            ServiceAccountSelection {
                names: vec!["builder".into()],
                selector: None,
            },
        );
        let only_builders = [Offer {
            target: &builders,
            ..offer("per-sa", ProviderSpec::Ecr(&ecr))
        }];
        let web = kept_sa("web", &[(AWS_ROLE_ANNOTATION, role)]);
        assert!(pull_secrets(&only_builders, "regcred-system", &team, &web).is_empty());
    }

    #[test]
    fn opt_out_and_exclusions() {
        assert!(opted_out(&ns("a", &[(OPT_OUT_LABEL, OPT_OUT_VALUE)])));
        assert!(!opted_out(&ns("a", &[(OPT_OUT_LABEL, "enabled")])));
        let excluded = ["tenant-infra".to_string()];
        assert!(excluded_namespace("kube-system", "regcred-system", &[]));
        assert!(excluded_namespace("regcred-system", "regcred-system", &[]));
        assert!(!excluded_namespace("default", "regcred-system", &[]));
        assert!(excluded_namespace("tenant-infra", "regcred-system", &excluded));
        assert!(!excluded_namespace("tenant-infra", "regcred-system", &[]));
    }
}
