//! In-process tests of the pipeline's pure steps chained as reconcile
//! chains them: plan → desired Secrets → status → Events; and of the
//! requests `apply_credential` and `cleanup` send, against the
//! [`Scenario`] stand-in. No control plane; the integration tests under
//! tests/ run the same paths for real.

use std::time::Duration;

use super::fixtures::*;
use super::{RESYNC, error_backoff, requeue_after, write_retry_backoff};
use super::{build, status};
use crate::api::{HealthCheckMode, ProviderKind, RegistryCredential, RegistryCredentialStatus, conditions};
use crate::cache::Cache;
use crate::targets;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

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

#[tokio::test]
async fn a_deleted_credential_leaves_no_tally_behind() {
    let (client, server) = Scenario::new().serve();
    let ctx = context(client);
    let rc = rc();
    let refused = fanout(2, &[("a", conditions::reason::NAMESPACE_WRITE_FAILED)]);
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(30)));
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(60)));
    ctx.forget(&rc);
    // A new RegistryCredential of the same name starts from the first backoff.
    assert_eq!(ctx.write_retry(&rc, &refused), Some(Duration::from_secs(30)));
    assert!(server.done().await.is_empty(), "no request");
}

fn namespace_objects(names: &[&str]) -> Vec<Namespace> {
    names
        .iter()
        .map(|n| Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(n.to_string()),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect()
}

/// `sa` after a merge patch, as the API server would store it.
fn merged(sa: &ServiceAccount, patch: &Value) -> ServiceAccount {
    let mut doc = serde_json::to_value(sa).unwrap();
    json_patch::merge(&mut doc, patch);
    serde_json::from_value(doc).unwrap()
}

#[tokio::test]
async fn a_static_credential_is_written_linked_and_reported_in_three_requests() {
    let mut rc = rc();
    // No registry to probe here.
    rc.spec.health_check.mode = HealthCheckMode::Disabled;
    let sa = service_account("a", "default");
    let reply_sa = sa.clone();
    let status_of = rc.clone();
    let (client, server) = Scenario::new()
        .then(
            Expect::post("/api/v1/namespaces/a/secrets")
                .query("fieldManager", "regcred")
                .body(|body| {
                    let secret: Secret = serde_json::from_value(body.clone()).unwrap();
                    assert_eq!(secret.type_.as_deref(), Some(crate::dockerconfig::SECRET_TYPE));
                    assert!(build::is_managed_by(&secret, "hub"));
                    let json = &secret.data.as_ref().unwrap()[crate::dockerconfig::DATA_KEY].0;
                    let auth = crate::dockerconfig::decode_entry(json, "docker.io").unwrap();
                    assert_eq!(auth.username, "me");
                    assert_eq!(auth.password.expose(), "pw");
                })
                .reply_with(|body| (201, body.clone())),
        )
        .then(
            Expect::patch("/api/v1/namespaces/a/serviceaccounts/default")
                .query("fieldManager", "regcred")
                .reply_with(move |patch| {
                    let linked = merged(&reply_sa, patch);
                    assert_eq!(pull_secret_names(&linked), ["hub"]);
                    assert!(build::recorded_by(&linked, "hub", "hub"));
                    (200, serde_json::to_value(linked).unwrap())
                }),
        )
        .then(
            Expect::patch("/apis/regcred.dev/v1alpha1/registrycredentials/hub/status")
                .query("fieldManager", "regcred")
                .query("force", "true")
                .reply_with(move |patch| {
                    let status: RegistryCredentialStatus = serde_json::from_value(patch["status"].clone()).unwrap();
                    assert_eq!(status.summary.as_deref(), Some("1/1"));
                    assert_eq!(cond(&status, conditions::READY), ("True", "Ready"));
                    let mut written: RegistryCredential = status_of;
                    written.status = Some(status);
                    (200, serde_json::to_value(written).unwrap())
                }),
        )
        .serve();
    let mut ctx = context(client);
    ctx.namespaces = Cache::of(namespace_objects(&["a", "regcred-system"]));
    ctx.service_accounts = Cache::of([sa]);
    ctx.source_secrets = source_secrets([source_secret("me", "pw")]);

    let (notes, result) = super::apply_credential(&rc, &ctx).await;
    let served = server.done().await;
    assert_eq!(
        served.len(),
        3,
        "the Secret, the ServiceAccount, the status; no finalizer here"
    );
    assert_eq!(result.expect("reconciled"), Action::requeue(RESYNC));
    let reasons: Vec<&str> = notes.iter().map(|n| n.reason.as_str()).collect();
    assert_eq!(reasons, ["Issued", "Synced"]);
}

#[tokio::test]
async fn a_deleted_credential_unlinks_its_service_account_and_deletes_its_secret() {
    let mut rc = rc();
    rc.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(
        "2026-11-22T00:00:00Z",
    )));
    rc.metadata.finalizers = Some(vec![build::FINALIZER.into()]);
    let held = current("pw", t("2026-11-21T00:00:00Z"));
    let mut secret = build::desired_secret(&rc, "a", &held.config_json, None, held.fingerprint.as_str());
    secret.metadata.uid = Some("uid-secret".into());
    let mut linked = build::apply_sa_change(&service_account("a", "default"), "hub", "hub", build::SaChange::Add);
    linked.metadata.resource_version = Some("5".into());
    let (reply_sa, reply_secret) = (linked.clone(), secret.clone());
    let (client, server) = Scenario::new()
        .then(
            Expect::patch("/api/v1/namespaces/a/serviceaccounts/default").reply_with(move |patch| {
                assert_eq!(patch["metadata"]["resourceVersion"], "5");
                let unlinked = merged(&reply_sa, patch);
                assert!(pull_secret_names(&unlinked).is_empty());
                assert!(!build::recorded_by(&unlinked, "hub", "hub"));
                (200, serde_json::to_value(unlinked).unwrap())
            }),
        )
        .then(Expect::get("/api/v1/namespaces/a/secrets/hub").reply(200, reply_secret))
        .then(
            Expect::delete("/api/v1/namespaces/a/secrets/hub")
                .body(|options| assert_eq!(options["preconditions"]["uid"], "uid-secret"))
                .reply(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        )
        .serve();
    let mut ctx = context(client);
    ctx.namespaces = Cache::of(namespace_objects(&["a"]));
    ctx.service_accounts = Cache::of([linked]);
    ctx.managed_secrets = Cache::of([secret]);

    let (notes, result) = super::cleanup(&rc, &ctx).await;
    let served = server.done().await;
    let methods: Vec<&str> = served.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "GET", "DELETE"]);
    assert_eq!(result.expect("cleaned"), Action::await_change());
    assert!(notes.is_empty(), "{notes:?}");
}
