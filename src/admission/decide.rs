//! Which of regcred's Secrets a pod being created should name, and the
//! patch that makes it so. Pure: the same targeting decision the fan-out
//! makes ([`targets::namespace_targeted`], [`targets::service_account_selected`]),
//! over what the caches hold.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::LocalObjectReference;

use crate::api::Target;
use crate::cache::KeptNamespace;
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
            },
            Offer {
                credential: "b",
                secret: "b-pull".into(),
                target: &everywhere_builders,
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
