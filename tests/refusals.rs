//! When regcred may not write, or must not: a namespace whose policy
//! denies Secret writes, a Secret another credential or controller owns, a
//! source or selector that is invalid. regcred reports it, keeps the last
//! good state and never strips what pods pull with. Against a real
//! kube-apiserver + etcd, the operator running as the built binary, as
//! the chart runs it (its ServiceAccount, the chart's RBAC and confinement
//! policies: `support::confine`); the
//! tests share one control plane and operator, each with its own
//! namespaces and RegistryCredentials, unless a test says otherwise.

mod support;

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use support::shared::Tenant;
use support::*;

/// A denied Secret write leaves the ServiceAccount's entry in
/// place, so pods created meanwhile still carry the (last good) Secret.
#[tokio::test]
async fn a_denied_secret_write_never_strips_the_service_account() {
    let h = Tenant::join_confined().await;
    put_source_secret(&h.client, "denied", "me", "first").await;
    namespace_with_default_sa(&h.client, "frozen", &[]).await;
    namespace_with_default_sa(&h.client, "open", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "denied",
            "docker.io",
            "denied",
            json!({"namespaces": {"names": ["frozen", "open"]}}),
        ),
    )
    .await;
    h.wait_pull_secrets("frozen", "default", &["denied"]).await;
    h.wait_status("denied", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;

    freeze_secrets(&h.client, "frozen", &["CREATE", "UPDATE", "DELETE"]).await;
    put_source_secret(&h.client, "denied", "me", "second").await;
    h.wait_secret("open", "denied", "rotated in the open namespace", |s| {
        password_for(s, HUB).as_deref() == Some("second")
    })
    .await;
    let status = h
        .wait_status("denied", "frozen reported", |s| {
            failed_in(s, "frozen") == Some("NamespaceWriteFailed")
        })
        .await;
    assert!(
        status.failed_namespaces[0]
            .message
            .contains("Secrets are frozen in this namespace by policy"),
        "{:?}",
        status.failed_namespaces
    );
    // Several reconciles later, the entry is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sa = h.sas("frozen").get("default").await.unwrap();
    assert_eq!(
        pull_secret_names(&sa),
        ["denied"],
        "a failed write stripped the ServiceAccount"
    );
    let kept = h.secrets("frozen").get("denied").await.unwrap();
    assert_eq!(
        password_for(&kept, HUB).as_deref(),
        Some("first"),
        "the last good Secret stays"
    );
}

/// A namespace whose writes are denied does not block deletion
/// forever; what could not be cleaned is reported.
///
/// On an operator of its own: the let-go after the grace period waits for
/// the next retry, whose backoff grows with every failed reconcile, and on
/// a shared operator other tests' events add failed reconciles enough to
/// push that retry to its 5-minute cap.
#[tokio::test]
async fn a_deletion_with_denied_writes_finishes_and_reports_what_it_could_not_clean() {
    let h = Harness::confined().await;
    put_source_secret(&h.client, "cleanup", "me", "pw").await;
    namespace_with_default_sa(&h.client, "locked", &[]).await;
    namespace_with_default_sa(&h.client, "free", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "cleanup",
            "docker.io",
            "cleanup",
            json!({"namespaces": {"names": ["locked", "free"]}}),
        ),
    )
    .await;
    h.wait_status("cleanup", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;
    freeze_secrets(&h.client, "locked", &["CREATE", "UPDATE", "DELETE"]).await;

    let started = Instant::now();
    delete_rc(&h.client, "cleanup").await;
    h.wait_secret_gone("free", "cleanup").await;
    h.wait_rc_gone("cleanup", Duration::from_secs(180)).await;
    println!(
        "deletion with a denied namespace finished after {:?}",
        started.elapsed()
    );
    let events: Api<Event> = Api::all(h.client.clone());
    let list = events.list(&Default::default()).await.unwrap();
    let report = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("CleanupIncomplete") && regarding(e) == Some("cleanup"))
        .expect("a CleanupIncomplete Event");
    assert!(
        report.note.as_deref().unwrap_or_default().contains("locked/cleanup"),
        "{:?}",
        report.note
    );
    assert!(
        h.secrets("locked").get_opt("cleanup").await.unwrap().is_some(),
        "the denied Secret stays"
    );
}

/// Two RegistryCredentials with one Secret name in one namespace:
/// the second reports a conflict naming the owner and writes nothing.
#[tokio::test]
async fn two_credentials_on_one_secret_name_do_not_fight() {
    let h = Tenant::join_confined().await;
    put_source_secret(&h.client, "both", "me", "pw").await;
    namespace_with_default_sa(&h.client, "both", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "first",
            "docker.io",
            "both",
            json!({"secretName": "pull", "namespaces": {"names": ["both"]}}),
        ),
    )
    .await;
    h.wait_pull_secrets("both", "default", &["pull"]).await;
    h.wait_status("first", "first Ready", |s| is_condition(s, "Ready", "True"))
        .await;
    apply_rc(
        &h.client,
        static_rc(
            "second",
            "docker.io",
            "both",
            json!({"secretName": "pull", "namespaces": {"names": ["both"]}, "existingSecretPolicy": "Adopt"}),
        ),
    )
    .await;
    let second = h
        .wait_status("second", "SecretConflict", |s| {
            failed_in(s, "both") == Some("SecretConflict")
        })
        .await;
    assert!(
        second.failed_namespaces[0].message.contains("RegistryCredential first"),
        "names the owner: {:?}",
        second.failed_namespaces
    );
    assert_eq!(condition(&second, "Ready").reason, "SecretConflict");

    let sa_before = h.sas("both").get("default").await.unwrap();
    let secret_before = h.secrets("both").get("pull").await.unwrap();
    // Two minutes, as the issue asks: before the fix the two fought at
    // about 17 ServiceAccount writes a second for as long as both existed.
    let window = Duration::from_secs(120);
    let (sa_writes, secret_writes) = tokio::join!(
        count_writes(h.sas("both"), window),
        count_writes(h.secrets("both"), window)
    );
    let sa_after = h.sas("both").get("default").await.unwrap();
    let secret_after = h.secrets("both").get("pull").await.unwrap();
    println!(
        "two RegistryCredentials on one Secret name, {}s: {sa_writes} ServiceAccount writes, {secret_writes} Secret \
         writes (watch events in namespace both)",
        window.as_secs(),
    );
    assert_eq!(sa_writes, 0, "ServiceAccount writes while both credentials exist");
    assert_eq!(secret_writes, 0, "Secret writes while both credentials exist");
    assert_eq!(
        sa_after.resource_version(),
        sa_before.resource_version(),
        "no ServiceAccount writes"
    );
    assert_eq!(
        secret_after.resource_version(),
        secret_before.resource_version(),
        "no Secret writes"
    );
    assert_eq!(pull_secret_names(&sa_after), ["pull"]);
    assert_eq!(sa_after.annotations()["regcred.dev/pull-secrets"], "pull=first");
    let first = h.rcs().get("first").await.unwrap().status.unwrap();
    assert!(is_condition(&first, "Ready", "True"));

    // Deleting the loser takes nothing from the winner.
    delete_rc(&h.client, "second").await;
    h.wait_rc_gone("second", WAIT).await;
    let sa = h.sas("both").get("default").await.unwrap();
    assert_eq!(pull_secret_names(&sa), ["pull"]);
    assert!(h.secrets("both").get_opt("pull").await.unwrap().is_some());
}

/// A Secret another controller controls is reported, not fought over.
#[tokio::test]
async fn a_secret_controlled_by_another_controller_is_reported_not_adopted() {
    let h = Tenant::join_confined().await;
    put_source_secret(&h.client, "owned", "me", "pw").await;
    namespace_with_default_sa(&h.client, "owned", &[]).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(h.client.clone(), "owned");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": cm.uid().unwrap(), "controller": true}]},
        "type": "Opaque",
        "data": {"x": "eA=="}
    }))
    .unwrap();
    h.secrets("owned")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    apply_rc(
        &h.client,
        static_rc(
            "owned",
            "docker.io",
            "owned",
            json!({"namespaces": {"names": ["owned"]}, "existingSecretPolicy": "Adopt"}),
        ),
    )
    .await;
    let status = h
        .wait_status("owned", "SecretControlledElsewhere", |s| {
            failed_in(s, "owned") == Some("SecretControlledElsewhere")
        })
        .await;
    assert!(status.failed_namespaces[0].message.contains("ConfigMap owner"));
    let s = h.secrets("owned").get("owned").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"), "left as it was");
    assert_eq!(s.owner_references().len(), 1);
    let sa = h.sas("owned").get("default").await.unwrap();
    assert!(pull_secret_names(&sa).is_empty());
}

/// A username with ':' (the separator of `auth`) is refused with
/// SourceSecretInvalid: a first credential is not written at all, and a
/// changed one leaves the last good Secret untouched.
#[tokio::test]
async fn a_username_with_a_colon_is_refused_and_nothing_is_written() {
    let h = Tenant::join_confined().await;
    put_source_secret(&h.client, "colon", "me", "good").await;
    namespace_with_default_sa(&h.client, "colon", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "colon",
            "docker.io",
            "colon",
            json!({"namespaces": {"names": ["colon"]}}),
        ),
    )
    .await;
    h.wait_status("colon", "Ready", |s| is_condition(s, "Ready", "True"))
        .await;
    let good = h.secrets("colon").get("colon").await.unwrap();

    put_source_secret(&h.client, "colon", "me:admin", "changed").await;
    let status = h
        .wait_status("colon", "SourceSecretInvalid", |s| {
            condition(s, "Issued").reason == "SourceSecretInvalid"
        })
        .await;
    let issued = condition(&status, "Issued");
    assert_eq!(issued.status, "False");
    assert!(issued.message.contains("':'"), "{}", issued.message);
    assert!(
        !issued.message.contains("changed"),
        "no secret material: {}",
        issued.message
    );
    assert_eq!(condition(&status, "Ready").reason, "SourceSecretInvalid");
    // Reconciles keep coming (the source changed); the Secret stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = h.secrets("colon").get("colon").await.unwrap();
    assert_eq!(
        kept.resource_version(),
        good.resource_version(),
        "the Secret was rewritten"
    );
    assert_eq!(password_for(&kept, HUB).as_deref(), Some("good"));

    // A first credential with a colon: nothing is written.
    put_source_secret(&h.client, "fresh", "me:admin", "pw").await;
    namespace_with_default_sa(&h.client, "colon-fresh", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "fresh",
            "docker.io",
            "fresh",
            json!({"namespaces": {"names": ["colon-fresh"]}}),
        ),
    )
    .await;
    let status = h
        .wait_status("fresh", "SourceSecretInvalid", |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Issued" && c.reason == "SourceSecretInvalid")
        })
        .await;
    assert_eq!(condition(&status, "Ready").status, "False");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.secrets("colon-fresh").get_opt("fresh").await.unwrap().is_none());
    let sa = h.sas("colon-fresh").get("default").await.unwrap();
    assert!(pull_secret_names(&sa).is_empty());
}

/// A selector that would silently match nothing is InvalidSpec, naming the field.
#[tokio::test]
async fn an_invalid_label_selector_is_reported_with_its_field() {
    let h = Tenant::join_confined().await;
    put_source_secret(&h.client, "selector", "me", "pw").await;
    apply_rc(
        &h.client,
        static_rc(
            "selector",
            "docker.io",
            "selector",
            json!({"namespaces": {"selector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]}}}),
        ),
    )
    .await;
    let status = h
        .wait_status("selector", "InvalidSpec", |s| {
            condition_reason(s, "Ready") == Some("InvalidSpec")
        })
        .await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("spec.target.namespaces.selector"),
        "{}",
        ready.message
    );
    assert!(ready.message.contains("Equals"), "{}", ready.message);
}

fn condition_reason<'a>(s: &'a regcred::api::RegistryCredentialStatus, t: &str) -> Option<&'a str> {
    s.conditions.iter().find(|c| c.type_ == t).map(|c| c.reason.as_str())
}

/// Writes to the objects `api` lists (watch events: added, modified,
/// deleted) during `window`, from the list's resourceVersion on.
async fn count_writes<K>(api: Api<K>, window: Duration) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let version = api
        .list_metadata(&Default::default())
        .await
        .expect("listed")
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    let params = WatchParams::default().timeout(window.as_secs() as u32 + 60);
    let mut events = Box::pin(api.watch(&params, &version).await.expect("watch started"));
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    let mut writes = 0;
    loop {
        tokio::select! {
            _ = &mut deadline => return writes,
            event = events.try_next() => match event.expect("watch event") {
                Some(WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_)) => writes += 1,
                Some(WatchEvent::Bookmark(_)) => {}
                Some(WatchEvent::Error(e)) => panic!("watch failed: {e:?}"),
                None => panic!("the watch ended before the window did"),
            },
        }
    }
}
