//! What regcred holds across a restart of its own: the credential it
//! issued (taken back from its Secrets, never from a copy a tenant
//! forged), its expiry in status and metrics during a provider outage, and
//! which registry its pull-auth check asks. Each test stops and starts the
//! operator, so each has a control plane of its own. regcred runs, and is
//! restarted, as the chart runs it: its ServiceAccount, the chart's RBAC
//! and confinement policies (`support::confine`).

mod support;

use std::time::Duration;

use k8s_openapi::ByteString;
use kube::api::PostParams;
use regcred::api::PullAuthResult;
use regcred_testenv::eventually;
use regcred_testenv::fakes::Fault;
use regcred_testenv::fakes::google::TokenServer;
use regcred_testenv::registry::{Auth, Registry};
use serde_json::json;
use support::*;

/// RegistryCredential `gcr` ([`gcr_rc`]) holding `token` from `google`, once
/// synced into `namespaces` (created here).
async fn start_gcr(h: &Harness, google: &TokenServer, token: &str, namespaces: &[&str]) {
    put_gcp_key(&h.client, "gcp-sa", google).await;
    for ns in namespaces {
        namespace_with_default_sa(&h.client, ns, &[]).await;
    }
    google.set_token(token.to_string(), Duration::from_secs(3600));
    apply_rc(&h.client, gcr_rc(namespaces)).await;
    let n = namespaces.len();
    h.wait_status("gcr", "all synced", |s| s.summary == Some(format!("{n}/{n}")))
        .await;
}

/// A look-alike Secret a tenant (with `edit` in their namespace) forges
/// there is never taken back after a restart, so no other namespace
/// receives it; the tenant cannot make regcred adopt or spread anything.
#[tokio::test]
async fn a_forged_secret_is_never_recovered_after_a_restart() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let mut h = Harness::confined().await;
    let real = canary("real");
    // "aaa" comes first in any listing.
    start_gcr(&h, &google, &real, &["aaa", "zzz"]).await;
    h.operator.stop();

    // The tenant of aaa, with `edit` there and nothing more, rewrites their
    // copy, labels and annotations kept ...
    let tenant = tenant_with_edit(&h.cp, "aaa", "tenant-aaa").await;
    let theirs: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(tenant.clone(), "aaa");
    let forged_password = canary("forged");
    let mut forged = theirs.get("gcr").await.unwrap();
    let json =
        format!(r#"{{"auths":{{"gcr.io":{{"username":"evil","password":"{forged_password}","auth":"ZXZpbA=="}}}}}}"#);
    forged.data = Some([(".dockerconfigjson".to_string(), ByteString(json.into_bytes()))].into());
    forged.metadata.managed_fields = None;
    theirs.replace("gcr", &PostParams::default(), &forged).await.unwrap();
    // ... and can neither change the RegistryCredential (Adopt, other
    // namespaces) nor write in another namespace.
    let adopt = json!({"spec": {"target": {"existingSecretPolicy": "Adopt"}}});
    let denied = kube::Api::<regcred::api::RegistryCredential>::all(tenant.clone())
        .patch(
            "gcr",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&adopt),
        )
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "{denied:?}"
    );
    let elsewhere = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(tenant, "zzz")
        .replace("gcr", &PostParams::default(), &forged)
        .await;
    assert!(
        matches!(&elsewhere, Err(kube::Error::Api(s)) if s.code == 403),
        "{elsewhere:?}"
    );
    namespace_with_default_sa(&h.client, "new", &[]).await;
    patch_rc(
        &h.client,
        "gcr",
        json!({"spec": {"target": {"namespaces": {"names": ["aaa", "zzz", "new"]}}}}),
    )
    .await;

    h.operator = start_operator(&h.cp);
    h.wait_secret("new", "gcr", "the new namespace served", |_| true).await;
    h.wait_secret("aaa", "gcr", "the forged copy restored", |s| {
        password_for(s, "gcr.io").as_deref() == Some(real.as_str())
    })
    .await;
    for ns in ["new", "zzz"] {
        let s = h.secrets(ns).get("gcr").await.unwrap();
        assert_eq!(password_for(&s, "gcr.io").as_deref(), Some(real.as_str()), "{ns}");
    }
    assert_eq!(
        google.calls(),
        1,
        "the real credential was taken back, not minted again"
    );
    let status = h.rcs().get("gcr").await.unwrap().status.unwrap();
    assert!(
        status
            .credential_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(!serde_json::to_string(&status).unwrap().contains(&real));
}

/// A restart during a provider outage keeps the still-valid
/// credential: status keeps its expiry, new namespaces still get it.
#[tokio::test]
async fn a_restart_during_an_outage_keeps_the_valid_credential() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let mut h = Harness::confined().await;
    let token = canary("outage");
    start_gcr(&h, &google, &token, &["one"]).await;
    let before = h.rcs().get("gcr").await.unwrap().status.unwrap();
    h.operator.stop();

    google.set_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    // Inputs changed while down (renewBefore), so regcred must try to mint, and fails.
    patch_rc(&h.client, "gcr", json!({"spec": {"renewBefore": "59m"}})).await;
    h.operator = start_operator(&h.cp);
    let failed = h.wait_status("gcr", "a failed mint", |s| s.failed_attempts >= 1).await;
    assert_eq!(
        failed.not_after, before.not_after,
        "the expiry of the credential in the Secrets stays"
    );
    assert_eq!(failed.registries, ["gcr.io"]);
    assert_eq!(condition(&failed, "Issued").status, "False");
    assert!(
        condition(&failed, "Issued")
            .message
            .contains("keep the last good credential")
    );
    namespace_with_default_sa(&h.client, "two", &[]).await;
    patch_rc(
        &h.client,
        "gcr",
        json!({"spec": {"target": {"namespaces": {"names": ["one", "two"]}}}}),
    )
    .await;
    h.wait_secret("two", "gcr", "the held credential in a new namespace", |s| {
        password_for(s, "gcr.io").as_deref() == Some(token.as_str())
    })
    .await;
}

/// After a restart during a provider outage the expiry series is
/// still exported with the held credential's notAfter (so the README's
/// alert can fire), and once that passes, status says Expired.
#[tokio::test]
async fn after_a_restart_in_an_outage_the_expiry_series_stays_and_expiry_is_reported() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let addr = metrics_addr();
    let mut h = Harness::confined_with(&["--metrics-addr", &addr], &[]).await;
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    namespace_with_default_sa(&h.client, "one", &[]).await;
    let token = canary("expiring");
    google.set_token(token.clone(), Duration::from_secs(60));
    apply_rc(&h.client, gcr_rc(&["one"])).await;
    let before = h
        .wait_status("gcr", "1/1", |s| {
            s.summary.as_deref() == Some("1/1") && s.not_after.is_some()
        })
        .await;
    let not_after = before.not_after.clone().unwrap().0;
    let series = format!(
        r#"regcred_credential_expiry_timestamp_seconds{{credential="gcr",registry="gcr.io"}} {}"#,
        not_after.as_second()
    );
    let has_series = |addr: String| {
        let series = series.clone();
        async move { scrape(&addr).await.contains(&series).then_some(()) }
    };
    eventually(WAIT, "the expiry series", || has_series(addr.clone())).await;

    h.operator.stop();
    google.set_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    // Inputs changed while down: the restarted operator mints at once, and fails.
    patch_rc(&h.client, "gcr", json!({"spec": {"renewBefore": "2m"}})).await;
    let addr = metrics_addr();
    h.operator = start_operator_with(&h.cp, &["--metrics-addr", &addr], &[]);
    let failed = h.wait_status("gcr", "a failed mint", |s| s.failed_attempts >= 1).await;
    assert!(
        jiff::Timestamp::now() < not_after,
        "the credential expired before the check: the machine is too slow for this test"
    );
    assert_eq!(failed.not_after, before.not_after);
    eventually(Duration::from_secs(10), "the expiry series after the restart", || {
        has_series(addr.clone())
    })
    .await;
    println!("after a restart with the provider down: {series}");

    let expired = eventually(Duration::from_secs(180), "Issued=False Expired", || {
        let api = h.rcs();
        async move {
            let s = api.get("gcr").await.ok()?.status?;
            (condition(&s, "Issued").reason == "Expired").then_some(s)
        }
    })
    .await;
    let late = jiff::Timestamp::now().duration_since(not_after);
    println!(
        "Expired reported {:.1}s after notAfter, after {} failed attempts",
        late.as_secs_f64(),
        expired.failed_attempts
    );
    assert_eq!(condition(&expired, "Ready").reason, "Expired");
    assert_eq!(expired.not_after, before.not_after, "the held credential's expiry");
    assert!(
        scrape(&addr).await.contains(&series),
        "the expiry series stays while the Secrets hold the expired credential"
    );
    let s = h.secrets("one").get("gcr").await.unwrap();
    assert_eq!(
        password_for(&s, "gcr.io").as_deref(),
        Some(token.as_str()),
        "Secrets kept"
    );
}

/// After a restart, `healthCheck.image` is checked at its own
/// registry (the provider's first), not at the alphabetically first one.
#[tokio::test]
async fn after_a_restart_the_health_image_is_checked_at_its_own_registry() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let token = canary("image");
    google.set_token(token.clone(), Duration::from_secs(3600));
    let users = || Auth::Htpasswd {
        users: vec![("oauth2accesstoken".into(), token.clone())],
    };
    let a = Registry::start(users()).await.expect("docker-registry starts");
    let b = Registry::start(users()).await.expect("docker-registry starts");
    // The image lives in the registry listed first, which sorts last.
    let (right, wrong) = if a.host() > b.host() { (a, b) } else { (b, a) };
    right.push_image("team/app", "1.0").await.expect("image pushed");
    let ca = right.ca_path().to_str().unwrap().to_string();
    let mut h = Harness::confined_with(&["--ca-bundle", &ca], &[]).await;
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    namespace_with_default_sa(&h.client, "img", &[]).await;
    apply_rc(
        &h.client,
        json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "gcr"},
            "spec": {"provider": {"gcr": {"registries": [right.host(), wrong.host()],
                                          "auth": {"serviceAccountKey": {"secretRef": {"name": "gcp-sa", "key": "key.json"}}}}},
                     "target": {"namespaces": {"names": ["img"]}},
                     // Short, so the image change below is checked soon; a
                     // restart checks at once whatever the interval.
                     "healthCheck": {"image": "team/app:1.0", "interval": "3s"}}}),
    )
    .await;
    let status = h.wait_pull_auth("gcr", PullAuthResult::Healthy).await;
    assert_eq!(status.registries, [right.host(), wrong.host()]);

    // Before the restart, the check says something a correct check after it will not.
    patch_rc(
        &h.client,
        "gcr",
        json!({"spec": {"healthCheck": {"image": "team/app:0.9"}}}),
    )
    .await;
    let status = h.wait_pull_auth("gcr", PullAuthResult::ImageNotFound).await;
    assert_eq!(status.pull_auth.unwrap().registry.as_deref(), Some(right.host()));
    h.operator.stop();
    patch_rc(
        &h.client,
        "gcr",
        json!({"spec": {"healthCheck": {"image": "team/app:1.0"}}}),
    )
    .await;
    h.operator = start_operator_with(&h.cp, &["--ca-bundle", &ca], &[]);
    let status = h
        .wait_status("gcr", "a check after the restart", |s| {
            s.pull_auth
                .as_ref()
                .is_some_and(|p| p.result != PullAuthResult::ImageNotFound)
                || s.pull_auth.as_ref().and_then(|p| p.registry.as_deref()) == Some(wrong.host())
        })
        .await;
    let pull = status.pull_auth.unwrap();
    println!(
        "after the restart: {:?} at {:?} ({})",
        pull.result, pull.registry, pull.message
    );
    assert_eq!(google.calls(), 1, "taken back after the restart, not minted again");
    assert_eq!(pull.result, PullAuthResult::Healthy, "{}", pull.message);
    assert_eq!(status.registries, [right.host(), wrong.host()]);
}
