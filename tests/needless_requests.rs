//! regcred asks a provider, a registry or the API server again only when
//! the answer could have changed: a provider handing back the same token,
//! a pull-auth check that could not tell, a Secret it does not manage. The
//! tests count requests, writes and reconciles, so each has a control plane
//! and operator of its own, where nothing else adds to the counts.
//! regcred runs as the chart runs it: its ServiceAccount, the chart's RBAC
//! and confinement policies (`support::confine`).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PostParams;
use regcred::api::PullAuthResult;
use regcred_testenv::fakes::google::TokenServer;
use serde_json::json;
use support::*;

/// A provider that hands back the same token and expiry at renewal
/// time (GKE's metadata server) is asked at most once a minute, and status
/// is not rewritten for nothing.
#[tokio::test]
async fn a_provider_repeating_its_token_is_not_hammered() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let h = Harness::confined().await;
    let token = canary("cached");
    // Renewal due after 100 s (a third before the expiry at 150 s); every
    // later answer is the same token with the same expiry.
    google.cache_token(token.clone(), Duration::from_secs(150));
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    namespace_with_default_sa(&h.client, "gke", &[]).await;
    apply_rc(&h.client, gcr_rc(&["gke"])).await;
    h.wait_status("gcr", "1/1", |s| s.summary.as_deref() == Some("1/1"))
        .await;
    let started = Instant::now();
    let rc_version = || async { h.rcs().get("gcr").await.unwrap().resource_version().unwrap() };
    let mut versions = vec![rc_version().await];
    while started.elapsed() < Duration::from_secs(130) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let v = rc_version().await;
        if versions.last() != Some(&v) {
            versions.push(v);
        }
    }
    let calls = google.calls();
    println!(
        "same token handed back at renewal, over {:?}: {calls} token requests, {} status writes",
        started.elapsed(),
        versions.len() - 1
    );
    // One at the start, one at the renewal time, at most one more a minute later.
    assert!(calls <= 3, "{calls} token requests in about two minutes");
    assert!(versions.len() - 1 <= 4, "{} status writes", versions.len() - 1);
    let s = h.secrets("gke").get("gcr").await.unwrap();
    assert_eq!(password_for(&s, "gcr.io").as_deref(), Some(token.as_str()));
}

/// An `Unknown` pull-auth result is not probed again before
/// `healthCheck.interval`, however many reconciles run meanwhile.
#[tokio::test]
async fn an_unknown_pull_auth_result_is_not_probed_again_before_the_interval() {
    let registry = registry_answering_unknown().await;
    let ca = registry.ca_path().to_str().unwrap().to_string();
    let addr = metrics_addr();
    let h = Harness::confined_with(&["--ca-bundle", &ca, "--metrics-addr", &addr], &[]).await;
    put_source_secret(&h.client, "unknown", "alice", "pw").await;
    namespace_with_default_sa(&h.client, "probe-00", &[("probe", "unknown")]).await;
    apply_rc(
        &h.client,
        json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "unknown"},
            "spec": {"provider": {"static": {"registry": registry.host(), "secretRef": {"name": "unknown"}}},
                     "target": {"namespaces": {"selector": {"matchLabels": {"probe": "unknown"}}}},
                     "healthCheck": {"interval": "10m"}}}),
    )
    .await;
    let status = h.wait_pull_auth("unknown", PullAuthResult::Unknown).await;
    println!(
        "Unknown: {}; PullAuthHealthy {} {} ({}); Ready {} {} ({})",
        status.pull_auth.as_ref().unwrap().message,
        condition(&status, "PullAuthHealthy").status,
        condition(&status, "PullAuthHealthy").reason,
        condition(&status, "PullAuthHealthy").message,
        condition(&status, "Ready").status,
        condition(&status, "Ready").reason,
        condition(&status, "Ready").message,
    );
    let probes_before = registry.token_requests();
    let reconciles_before = reconciles(&addr).await;
    let started = Instant::now();
    let added = 20;
    for i in 1..=added {
        namespace_with_default_sa(&h.client, &format!("probe-{i:02}"), &[("probe", "unknown")]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let want = format!("{}/{}", added + 1, added + 1);
    h.wait_status("unknown", &want, |s| s.summary.as_deref() == Some(want.as_str()))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probes = registry.token_requests() - probes_before;
    let reconciled = reconciles(&addr).await - reconciles_before;
    println!(
        "Unknown pull-auth result, {:?}, interval 10m: {reconciled} reconciles, {probes} probes (token requests)",
        started.elapsed()
    );
    assert!(
        reconciled >= added as u64,
        "only {reconciled} reconciles: the window proves nothing"
    );
    assert_eq!(probes, 0, "probed again before the interval");
}

/// A namespace holding a same-named Secret regcred does not
/// manage costs no API request on every reconcile (it is remembered).
#[tokio::test]
async fn a_foreign_secret_is_not_read_again_on_every_reconcile() {
    let addr = metrics_addr();
    let h = Harness::confined_with(&["--metrics-addr", &addr], &[]).await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "foreign", &[]).await;
    namespace_with_default_sa(&h.client, "own", &[]).await;
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hub"}, "type": "Opaque", "data": {"x": "eA=="}
    }))
    .unwrap();
    h.secrets("foreign")
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["foreign", "own"]}})).await;
    h.wait_status("hub", "SecretExists in foreign", |s| {
        failed_in(s, "foreign") == Some("SecretExists") && s.namespaces.synced == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Secret requests as the API server counts them (the test makes none meanwhile).
    let secret_requests = || async {
        let text = h.cp.metrics().await.expect("apiserver /metrics");
        let count = |verb: &str| {
            metric_sum(
                &text,
                "apiserver_request_total",
                &[r#"resource="secrets""#, format!(r#"verb="{verb}""#).as_str()],
            ) as u64
        };
        (count("GET"), count("POST"))
    };
    let (gets_before, posts_before) = secret_requests().await;
    let reconciles_before = reconciles(&addr).await;
    let started = Instant::now();
    // A change in the namespace itself: each one is a reconcile that looks at it.
    let nudges: u64 = 30;
    for i in 0..nudges {
        let value = i.to_string();
        label_namespace(&h.client, "foreign", &[("nudge", value.as_str())]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (gets_after, posts_after) = secret_requests().await;
    let reconciled = reconciles(&addr).await - reconciles_before;
    let (gets, posts) = (gets_after - gets_before, posts_after - posts_before);
    println!(
        "foreign Secret in a nudged namespace, {:?}: {reconciled} reconciles, {gets} Secret GETs, {posts} Secret POSTs",
        started.elapsed()
    );
    assert!(
        reconciled >= nudges / 2,
        "only {reconciled} reconciles: the window proves nothing"
    );
    assert_eq!((gets, posts), (0, 0), "Secret requests while nothing changed");
    let status = h.rcs().get("hub").await.unwrap().status.unwrap();
    assert_eq!(failed_in(&status, "foreign"), Some("SecretExists"), "still reported");
}

/// Reconciles the operator at `addr` has finished.
async fn reconciles(addr: &str) -> u64 {
    metric_sum(&scrape(addr).await, "regcred_reconcile_duration_seconds_count", &[]) as u64
}
