//! Faults: regcred against an API server that goes away and comes back.
//!
//! Every test prints its figures (`FAULTS …` lines) and asserts with
//! generous timeouts; the figure to reach is in the message.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const HUB: &str = "https://index.docker.io/v1/";

/// How long the API server stays down (the scenario: 30 s).
fn outage() -> Duration {
    let secs = std::env::var("REGCRED_FAULTS_OUTAGE_SECS")
        .ok()
        .map(|s| s.parse().expect("REGCRED_FAULTS_OUTAGE_SECS is a number of seconds"))
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn converges_within_seconds_after_an_api_server_outage() {
    let mut h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    let names: Vec<String> = (0..20).map(|i| format!("out-{i:02}")).collect();
    for n in &names {
        namespace_with_default_sa(&h.client, n, &[("outage", "yes")]).await;
        create_service_account(&h.client, n, "builder", &["foreign"]).await;
    }
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {"outage": "yes"}}}, "serviceAccounts": {"names": ["*"]}}),
    )
    .await;
    h.wait_status("hub", "20/20 synced", |s| s.summary.as_deref() == Some("20/20"))
        .await;

    let outage = outage();
    h.cp.stop_apiserver();
    tokio::time::sleep(outage).await;
    let restart = Instant::now();
    h.cp.start_apiserver().await.expect("kube-apiserver restarts");
    let back = Instant::now();
    println!(
        "FAULTS outage: kube-apiserver killed for {outage:?}, ready {:?} after its restart",
        back - restart
    );
    // Connections of the old client died with the old process.
    h.client = h.cp.client().await.unwrap();

    // Right after the return: a managed Secret deleted, one tampered with,
    // and regcred's entry stripped from a ServiceAccount.
    h.secrets(&names[0])
        .delete("hub", &DeleteParams::default())
        .await
        .expect("deleting a managed Secret after the return");
    let tampered = json!({"data": {".dockerconfigjson": "e30="}});
    h.secrets(&names[1])
        .patch("hub", &PatchParams::default(), &Patch::Merge(&tampered))
        .await
        .expect("tampering with a managed Secret after the return");
    let mut sa = h.sas(&names[2]).get("builder").await.unwrap();
    sa.image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
        name: "foreign".into(),
    }]);
    h.sas(&names[2])
        .replace("builder", &PostParams::default(), &sa)
        .await
        .unwrap();
    let changed = Instant::now();

    let restored = |s: &Secret| password_for(s, HUB).as_deref() == Some("pw");
    h.wait_secret(&names[0], "hub", "the deleted Secret restored", restored)
        .await;
    let deleted = changed.elapsed();
    h.wait_secret(&names[1], "hub", "the tampered Secret restored", restored)
        .await;
    let edited = changed.elapsed();
    h.wait_pull_secrets(&names[2], "builder", &["foreign", "hub"]).await;
    let stripped = changed.elapsed();
    let converged = back.elapsed();
    println!(
        "FAULTS outage: after {outage:?} down, converged {converged:?} after the API server was ready \
         (deleted Secret restored {deleted:?}, tampered Secret {edited:?}, stripped ServiceAccount entry {stripped:?} after the change; goal <= 5s)"
    );
    assert!(
        converged < Duration::from_secs(60),
        "regcred took {converged:?} to converge after the API server returned (goal 5 s)"
    );
    // The rest was not disturbed, and nothing was written twice.
    for n in &names {
        let s = h.secrets(n).get("hub").await.unwrap();
        assert!(restored(&s), "{n}: Secret holds the current credential");
        let sa = h.sas(n).get("builder").await.unwrap();
        assert_eq!(pull_secret_names(&sa), ["foreign", "hub"], "{n}: builder");
    }
    assert!(h.operator.exited().is_none(), "regcred exited:\n{}", h.operator.logs());
}
