//! In-process tests of the pipeline's pure steps chained as reconcile
//! chains them: plan → desired Secrets → status → Events. No control plane;
//! the integration tests under tests/ run the same paths for real.

use std::time::Duration;

use super::fixtures::*;
use super::{RESYNC, error_backoff, requeue_after, write_retry_backoff};
use super::{build, status};
use crate::api::{ProviderKind, RegistryCredentialStatus, conditions};
use crate::targets;

fn cond<'a>(s: &'a RegistryCredentialStatus, type_: &str) -> (&'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.type_ == type_).expect("condition");
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_fresh_credential_is_planned_for_every_namespace_but_the_credentials_namespace() {
    let rc = rc();
    let all = namespaces(&["a", "b", "regcred-system"]);
    let plan = targets::plan(&rc.spec.target.namespaces, "regcred-system", "hub", &all, []);
    assert_eq!(plan.write.len(), 2);
    let held = current("pw", t("2026-11-22T00:00:00Z"));
    for ns in &plan.write {
        let secret = build::desired_secret(&rc, ns, &held.config_json, None, held.fingerprint.as_str());
        assert_eq!(secret.metadata.namespace.as_deref(), Some(ns.as_str()));
        assert!(build::is_managed_by(&secret, "hub"));
        let mut cached = secret.clone();
        build::cache_form(&mut cached);
        assert!(build::secret_up_to_date(&cached, &secret));
    }
    let cred = reused(Some(held));
    let now = t("2026-11-22T00:00:01Z");
    let new = status::compose(
        &rc,
        ProviderKind::Static,
        &Default::default(),
        &cred,
        &fanout(2, &[]),
        &not_checked(),
        now,
    );
    assert_eq!(new.summary.as_deref(), Some("2/2"));
    assert_eq!(cond(&new, conditions::READY), ("True", "Ready"));
    assert!(
        new.credential_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let events = status::transitions(&Default::default(), &new);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, "Synced");
}

#[test]
fn a_conflicting_namespace_makes_ready_false_with_its_reason_and_one_event() {
    let rc = rc();
    let cred = reused(Some(current("pw", t("2026-11-22T00:00:00Z"))));
    let now = t("2026-11-22T00:00:01Z");
    let fan = fanout(3, &[("shared", "SecretConflict")]);
    let first = status::compose(
        &rc,
        ProviderKind::Static,
        &Default::default(),
        &cred,
        &fan,
        &not_checked(),
        now,
    );
    assert_eq!(first.summary.as_deref(), Some("2/3"));
    assert_eq!(cond(&first, conditions::SYNCED), ("False", "SecretConflict"));
    assert_eq!(cond(&first, conditions::READY), ("False", "SecretConflict"));
    let events = status::transitions(&Default::default(), &first);
    assert_eq!(events.iter().filter(|e| e.warning).count(), 1);

    // The same outcome again: no Event, no status write.
    let later = t("2026-11-22T00:05:00Z");
    let again = status::compose(&rc, ProviderKind::Static, &first, &cred, &fan, &not_checked(), later);
    assert!(status::transitions(&first, &again).is_empty());
    assert!(!status::needs_write(Some(&first), &again));
}

#[test]
fn without_a_credential_nothing_counts_as_synced_and_ready_is_false() {
    let rc = rc();
    let cred = reused(None);
    let now = t("2026-11-22T00:00:01Z");
    let mut fan = fanout(2, &[]);
    fan.synced = 0;
    let new = status::compose(
        &rc,
        ProviderKind::Static,
        &Default::default(),
        &cred,
        &fan,
        &not_checked(),
        now,
    );
    assert_eq!(new.summary.as_deref(), Some("0/2"));
    assert_eq!(cond(&new, conditions::SYNCED), ("Unknown", "Pending"));
    assert_eq!(cond(&new, conditions::READY), ("False", "SourceSecretMissing"));
    assert_eq!(new.credential_digest, None);
}

#[test]
fn a_namespace_that_stops_matching_is_cleaned_and_its_service_account_entry_removed() {
    let mut rc = rc();
    rc.spec.target.namespaces.exclude = vec!["gone".into()];
    let all = namespaces(&["kept", "gone"]);
    let ours = [
        ("kept".to_string(), "hub".to_string()),
        ("gone".to_string(), "hub".to_string()),
    ];
    let plan = targets::plan(&rc.spec.target.namespaces, "regcred-system", "hub", &all, ours);
    assert_eq!(plan.clean, [("gone".to_string(), "hub".to_string())]);
    let sa = service_account("gone", "default");
    let linked = build::apply_sa_change(&sa, "hub", "hub", build::SaChange::Add);
    assert_eq!(
        build::sa_change(&linked, "hub", "hub", false),
        Some(build::SaChange::Remove)
    );
    // Another credential's entry of the same name is never this one's to remove.
    assert_eq!(build::sa_change(&linked, "hub", "other", false), None);
}

#[test]
fn requeues_at_the_earliest_planned_time() {
    let now = t("2026-11-22T00:00:00Z");
    let at = |s| Some(t(s));
    assert_eq!(
        requeue_after([at("2026-11-22T00:10:00Z"), at("2026-11-22T00:02:00Z")], now),
        Duration::from_secs(120)
    );
    assert_eq!(requeue_after([None, None], now), RESYNC);
    assert_eq!(requeue_after([at("2026-11-22T05:00:00Z")], now), RESYNC);
    // Overdue: soon, never a negative or zero wait.
    assert_eq!(requeue_after([at("2026-11-21T23:59:00Z")], now), Duration::from_secs(1));
}

#[test]
fn failed_reconciles_back_off_to_minutes() {
    let secs: Vec<u64> = (1..=9).map(|n| error_backoff(n).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
}

#[test]
fn refused_writes_are_tried_again_from_30_s_doubling_to_5_min() {
    let secs: Vec<u64> = (1..=7).map(|n| write_retry_backoff(n).as_secs()).collect();
    assert_eq!(secs, [30, 60, 120, 240, 300, 300, 300]);
    assert_eq!(write_retry_backoff(u32::MAX).as_secs(), 300);
}

/// A Context over empty caches, with a client whose requests go nowhere
/// (the steps under test make none).
fn context() -> super::Context {
    use tower_test::mock;
    let (service, _handle) = mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let client = kube::Client::new(service, "default");
    let reporter = kube::runtime::events::Reporter {
        controller: "regcred".into(),
        instance: None,
    };
    super::Context::new(
        client.clone(),
        "regcred-system".into(),
        super::Caches {
            namespaces: Default::default(),
            service_accounts: Default::default(),
            managed_secrets: Default::default(),
            source_secrets: kube::runtime::reflector::store().0,
            credentials: kube::runtime::reflector::store().0,
            touched: Default::default(),
        },
        kube::runtime::events::Recorder::new(client, reporter),
        reqwest::Client::new(),
        Default::default(),
    )
}

#[tokio::test]
async fn a_deleted_credential_leaves_no_tally_behind() {
    let ctx = context();
    let rc = rc();
    let refused = fanout(2, &[("a", conditions::reason::NAMESPACE_WRITE_FAILED)]);
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(30)));
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(60)));
    ctx.forget(&rc);
    // A new RegistryCredential of the same name starts from the first backoff.
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(30)));
}
