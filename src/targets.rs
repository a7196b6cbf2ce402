//! Target selection: which namespaces get the Secret and which
//! ServiceAccounts reference it. Pure functions over the objects' metadata.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Expression, Selector};

use crate::cache::{KeptNamespace, KeptServiceAccount};

use crate::api::{NamespaceSelection, ServiceAccountSelection};

/// What selection reads of a Namespace or ServiceAccount: the API object
/// (a Namespace read for diagnosis) or what the cache kept of it.
pub trait Selectable {
    fn name(&self) -> &str;
    fn label(&self, key: &str) -> Option<&str>;
}

impl Selectable for Namespace {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels().get(key).map(String::as_str)
    }
}

impl Selectable for ServiceAccount {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels().get(key).map(String::as_str)
    }
}

impl Selectable for KeptNamespace {
    fn name(&self) -> &str {
        &self.name
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

impl Selectable for KeptServiceAccount {
    fn name(&self) -> &str {
        &self.name
    }
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

/// Whether a label selector from the spec matches `object`'s labels. kube
/// parses it; a selector the API server accepted but that cannot be parsed
/// matches nothing. The expressions are evaluated here, by label lookup,
/// because kube's matcher wants the labels as a `BTreeMap`, which the cache
/// does not keep.
fn selector_matches(selector: &LabelSelector, object: &impl Selectable) -> bool {
    let Ok(parsed) = Selector::try_from(selector.clone()) else {
        return false;
    };
    parsed.into_iter().all(|e| match e {
        Expression::In(k, values) => object.label(&k).is_some_and(|v| values.contains(v)),
        Expression::NotIn(k, values) => object.label(&k).is_none_or(|v| !values.contains(v)),
        Expression::Exists(k) => object.label(&k).is_some(),
        Expression::DoesNotExist(k) => object.label(&k).is_none(),
        Expression::Equal(k, v) => object.label(&k) == Some(v.as_str()),
        Expression::NotEqual(k, v) => object.label(&k) != Some(v.as_str()),
    })
}

/// Whether `ns` is selected by `sel` (ignoring whether it is terminating).
pub fn namespace_selected(sel: &NamespaceSelection, ns: &impl Selectable) -> bool {
    let name = ns.name();
    if sel.exclude.iter().any(|e| e == name) {
        return false;
    }
    if sel.selector.is_none() && sel.names.is_empty() {
        return true;
    }
    sel.names.iter().any(|n| n == name) || sel.selector.as_ref().is_some_and(|s| selector_matches(s, ns))
}

/// Whether a RegistryCredential selecting `sel` writes its Secret into
/// `ns`: selected, not terminating, and not the credentials namespace. The
/// fan-out's plan and the admission webhook both decide with this.
pub fn namespace_targeted(sel: &NamespaceSelection, credentials_namespace: &str, ns: &KeptNamespace) -> bool {
    !ns.terminating && &*ns.name != credentials_namespace && namespace_selected(sel, ns)
}

/// Where one RegistryCredential writes and what it cleans.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// Namespaces that should hold the Secret, sorted.
    pub write: BTreeSet<String>,
    /// `(namespace, secret)` of this credential's Secrets that should go:
    /// outside the targets, or under a name the spec no longer uses.
    pub clean: Vec<(String, String)>,
}

/// Plan the fan-out of the Secret `secret_name` over `namespaces`, given
/// the `(namespace, name)` of the Secrets this credential already manages.
/// The credentials namespace is never a target: it holds the sources, and a
/// managed copy there would shadow or replace one.
pub fn plan(
    sel: &NamespaceSelection,
    credentials_namespace: &str,
    secret_name: &str,
    namespaces: &[Arc<KeptNamespace>],
    ours: impl IntoIterator<Item = (String, String)>,
) -> TargetPlan {
    let write: BTreeSet<String> = namespaces
        .iter()
        .filter(|ns| namespace_targeted(sel, credentials_namespace, ns))
        .map(|ns| ns.name.to_string())
        .collect();
    let mut clean: Vec<(String, String)> = ours
        .into_iter()
        .filter(|(ns, name)| !write.contains(ns) || name != secret_name)
        .collect();
    clean.sort();
    TargetPlan { write, clean }
}

/// Deletion's plan: write nowhere; clean every Secret the credential
/// manages (`ours`) and its entry for `secret_name` wherever it recorded
/// one on a ServiceAccount (`recorded_in`), also where the Secret is gone.
pub fn deletion_plan(
    ours: impl IntoIterator<Item = (String, String)>,
    recorded_in: impl IntoIterator<Item = String>,
    secret_name: &str,
) -> TargetPlan {
    let mut clean: BTreeSet<(String, String)> = ours.into_iter().collect();
    clean.extend(recorded_in.into_iter().map(|ns| (ns, secret_name.to_string())));
    TargetPlan {
        write: BTreeSet::new(),
        clean: clean.into_iter().collect(),
    }
}

/// Whether `sa` should reference the managed Secret.
pub fn service_account_selected(sel: &ServiceAccountSelection, sa: &impl Selectable) -> bool {
    let name = sa.name();
    sel.names.iter().any(|n| n == "*" || n == name) || sel.selector.as_ref().is_some_and(|s| selector_matches(s, sa))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Kept;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

    fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: meta(name, labels),
            ..Default::default()
        }
    }

    fn sa(name: &str, labels: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            metadata: meta(name, labels),
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn deletion_cleans_every_secret_and_every_recorded_entry_and_writes_nothing() {
        let ours = [
            ("a".to_string(), "pull".to_string()),
            ("b".to_string(), "old-name".to_string()),
        ];
        // `c` holds only an entry: its Secret is already gone.
        let plan = deletion_plan(ours, ["a".to_string(), "c".to_string()], "pull");
        assert!(plan.write.is_empty());
        assert_eq!(
            plan.clean,
            [("a", "pull"), ("b", "old-name"), ("c", "pull")].map(|(n, s)| (n.to_string(), s.to_string()))
        );
    }

    #[test]
    fn plan_skips_the_credentials_namespace_and_cleans_what_left() {
        let all: Vec<Arc<KeptNamespace>> = ["a", "b", "regcred-system"]
            .iter()
            .map(|n| Arc::new(KeptNamespace::keep(&ns(n, &[]))))
            .collect();
        let ours = [
            ("a".to_string(), "hub".to_string()),
            ("a".to_string(), "old-name".to_string()),
            ("gone".to_string(), "hub".to_string()),
            ("regcred-system".to_string(), "hub".to_string()),
        ];
        let p = plan(&NamespaceSelection::default(), "regcred-system", "hub", &all, ours);
        assert_eq!(p.write.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            p.clean,
            [
                ("a".to_string(), "old-name".to_string()),
                ("gone".to_string(), "hub".to_string()),
                ("regcred-system".to_string(), "hub".to_string()),
            ]
        );
    }

    #[test]
    fn every_namespace_by_default() {
        assert!(namespace_selected(&NamespaceSelection::default(), &ns("anything", &[])));
    }

    #[test]
    fn selector_and_names_are_ored_and_exclude_wins() {
        let sel = NamespaceSelection {
            selector: Some(labels(&[("team", "payments")])),
            names: vec!["ci".into(), "kube-system".into()],
            exclude: vec!["kube-system".into()],
        };
        assert!(namespace_selected(&sel, &ns("pay", &[("team", "payments")])));
        assert!(namespace_selected(&sel, &ns("ci", &[])));
        assert!(!namespace_selected(&sel, &ns("kube-system", &[("team", "payments")])));
        assert!(!namespace_selected(&sel, &ns("other", &[("team", "search")])));
    }

    #[test]
    fn exclude_alone_means_everything_else() {
        let sel = NamespaceSelection {
            exclude: vec!["kube-system".into()],
            ..Default::default()
        };
        assert!(namespace_selected(&sel, &ns("default", &[])));
        assert!(!namespace_selected(&sel, &ns("kube-system", &[])));
    }

    #[test]
    fn match_expressions_work() {
        let sel = NamespaceSelection {
            selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into(), "staging".into()]),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(namespace_selected(&sel, &ns("a", &[("env", "prod")])));
        assert!(!namespace_selected(&sel, &ns("b", &[("env", "dev")])));
    }

    #[test]
    fn service_accounts_by_name_wildcard_and_selector() {
        let default = ServiceAccountSelection::default();
        assert!(service_account_selected(&default, &sa("default", &[])));
        assert!(!service_account_selected(&default, &sa("builder", &[])));

        let all = ServiceAccountSelection {
            names: vec!["*".into()],
            selector: None,
        };
        assert!(service_account_selected(&all, &sa("builder", &[])));

        let by_label = ServiceAccountSelection {
            names: vec![],
            selector: Some(labels(&[("pulls", "private")])),
        };
        assert!(service_account_selected(&by_label, &sa("app", &[("pulls", "private")])));
        assert!(!service_account_selected(&by_label, &sa("default", &[])));
    }
}
