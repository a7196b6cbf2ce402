//! A RegistryCredential as the watch hands it over (JSON): validation never
//! panics, and a label selector it passes can be evaluated.
//!
//! Durations are limited to what the CRD admits: kube's Go-duration parser
//! panics on text outside that grammar (`1h-5m`, a negative part; or a part
//! past u64 seconds), which the API server never stores.
#![no_main]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use libfuzzer_sys::fuzz_target;
use regcred::api::{DURATION_UNITS, RegistryCredential};
use regcred::reconcile::validate::{selector_problem, spec};
use serde_json::Value;

/// Go's `time.ParseDuration` grammar without a sign, within Go's range: the
/// CRD's rule for `renewBefore` and `healthCheck.interval`, with the units
/// regcred's own duration check uses.
fn admitted(duration: &str) -> bool {
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = duration;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let (number, tail) = rest.split_at(rest.find(|c| !is_number(c)).unwrap_or(rest.len()));
        let (unit, tail) = tail.split_at(tail.find(is_number).unwrap_or(tail.len()));
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let Some((_, scale)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return false;
        };
        if !digits(whole) || !digits(fraction) {
            return false;
        }
        seconds += number.parse::<f64>().unwrap_or(f64::INFINITY) * scale;
        rest = tail;
    }
    !duration.is_empty() && seconds < 9.2e9
}

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let durations = [
        &object["spec"]["renewBefore"],
        &object["spec"]["healthCheck"]["interval"],
    ];
    if durations.iter().any(|d| d.as_str().is_some_and(|d| !admitted(d))) {
        return;
    }
    let Ok(rc) = serde_json::from_value::<RegistryCredential>(object) else {
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
