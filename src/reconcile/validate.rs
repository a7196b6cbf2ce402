//! The *validate* step: what the API server's schema cannot say about a
//! spec, reported as `InvalidSpec` naming the field, never retried.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cond::Cond;
use crate::api::conditions::reason;
use crate::api::{ProviderSpec, RegistryCredential};

/// The provider to mint with, or the `InvalidSpec` condition saying what to fix.
pub fn spec(rc: &RegistryCredential) -> Result<ProviderSpec<'_>, Cond> {
    let invalid = |message: String| Cond::new("False", reason::INVALID_SPEC, message);
    let provider = rc
        .spec
        .provider
        .selected()
        .ok_or_else(|| invalid("spec.provider must set exactly one of ecr, gcr, acr or static.".into()))?;
    let target = &rc.spec.target;
    for (path, selector) in [
        ("spec.target.namespaces.selector", target.namespaces.selector.as_ref()),
        (
            "spec.target.serviceAccounts.selector",
            target.service_accounts.selector.as_ref(),
        ),
    ] {
        if let Some(problem) = selector.and_then(selector_problem) {
            return Err(invalid(format!("{path}: {problem}")));
        }
    }
    Ok(provider)
}

/// What is wrong with a label selector, in the words `kubectl` would use.
pub fn selector_problem(selector: &LabelSelector) -> Option<String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if !is_label_key(key) {
            return Some(format!("matchLabels key {key:?} is not a valid label key"));
        }
        if !is_label_value(value) {
            return Some(format!(
                "matchLabels value {value:?} of {key:?} is not a valid label value"
            ));
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("matchExpressions[{i}]");
        if !is_label_key(&req.key) {
            return Some(format!("{at}.key {:?} is not a valid label key", req.key));
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Some(format!("{at}: operator {} needs at least one value", req.operator));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Some(format!("{at}: operator {} takes no values", req.operator));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Some(format!(
                    "{at}.operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                ));
            }
        }
        if let Some(bad) = values.iter().find(|v| !is_label_value(v)) {
            return Some(format!("{at}.values: {bad:?} is not a valid label value"));
        }
    }
    None
}

/// `[prefix/]name`: a DNS subdomain prefix of at most 253 characters and a
/// name of at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Empty, or at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_that_would_silently_match_nothing_are_named() {
        let cases = [
            (expr("team", "Equals", &["a"]), "not one of In"),
            (expr("team", "In", &[]), "needs at least one value"),
            (expr("team", "Exists", &["a"]), "takes no values"),
            (expr("bad key!", "Exists", &[]), "not a valid label key"),
            (expr("team", "In", &["no spaces"]), "not a valid label value"),
        ];
        for (selector, want) in cases {
            let problem = selector_problem(&selector).unwrap_or_default();
            assert!(problem.contains(want), "{problem:?} should say {want:?}");
        }
        let fine = [
            expr("example.com/team", "In", &["a", "b"]),
            expr("team", "DoesNotExist", &[]),
            LabelSelector {
                match_labels: Some([("app.kubernetes.io/name".to_string(), String::new())].into()),
                ..Default::default()
            },
        ];
        for selector in fine {
            assert_eq!(selector_problem(&selector), None, "{selector:?}");
        }
    }
}
