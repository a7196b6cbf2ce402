//! A RegistryCredential as the watch hands it over (JSON): validation never
//! panics, and a label selector it passes can be evaluated.
#![no_main]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use libfuzzer_sys::fuzz_target;
use regcred::api::RegistryCredential;
use regcred::reconcile::validate::{selector_problem, spec};

fuzz_target!(|data: &[u8]| {
    let Ok(rc) = serde_json::from_slice::<RegistryCredential>(data) else {
        return;
    };
    let passed = spec(&rc).is_ok();
    let target = &rc.spec.target;
    for selector in [&target.namespaces.selector, &target.service_accounts.selector]
        .into_iter()
        .flatten()
    {
        if selector_problem(selector).is_none() {
            assert!(
                Selector::try_from(LabelSelector::clone(selector)).is_ok(),
                "{selector:?}"
            );
        } else {
            assert!(!passed);
        }
    }
});
