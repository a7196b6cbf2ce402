//! Target selection over namespaces as the API server lists them:
//! `{"selection": <spec.target.namespaces>, "namespaces": [<Namespace>],
//! "ours": [[<namespace>, <secret>]]}`. The plan never targets the
//! credentials namespace, never writes and cleans the same Secret, and
//! forgets none of the Secrets regcred owns.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use libfuzzer_sys::fuzz_target;
use regcred::api::NamespaceSelection;
use regcred::targets::{is_terminating, namespace_selected, plan};

const CREDENTIALS_NAMESPACE: &str = "regcred-system";
const SECRET: &str = "regcred";

#[derive(serde::Deserialize)]
struct Input {
    selection: NamespaceSelection,
    namespaces: Vec<Namespace>,
    #[serde(default)]
    ours: Vec<(String, String)>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let sel = &input.selection;
    let namespaces: Vec<Arc<Namespace>> = input.namespaces.into_iter().map(Arc::new).collect();
    let p = plan(sel, CREDENTIALS_NAMESPACE, SECRET, &namespaces, input.ours.clone());
    assert!(!p.write.contains(CREDENTIALS_NAMESPACE));
    let wanted: BTreeSet<String> = namespaces
        .iter()
        .filter(|ns| namespace_selected(sel, ns) && !is_terminating(ns))
        .map(|ns| ns.name_any())
        .filter(|name| name != CREDENTIALS_NAMESPACE)
        .collect();
    assert_eq!(p.write, wanted);
    for ns in &namespaces {
        if sel.exclude.contains(&ns.name_any()) {
            assert!(!namespace_selected(sel, ns));
        }
    }
    for (ns, secret) in &input.ours {
        let kept = secret == SECRET && p.write.contains(ns);
        assert_eq!(p.clean.contains(&(ns.clone(), secret.clone())), !kept, "{ns}/{secret}");
    }
    assert!(p.clean.windows(2).all(|w| w[0] <= w[1]));
});
