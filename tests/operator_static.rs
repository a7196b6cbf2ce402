//! regcred end to end with the static provider, against a real
//! kube-apiserver + etcd, the operator running as the built binary.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use regcred::api::RegistryCredential;
use regcred_testenv::eventually;
use serde_json::json;
use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn new_namespaces_get_the_secret_and_default_sa_reference() {
    let h = Harness::start().await;
    let password = canary("latency");
    put_source_secret(&h.client, "hub", "me", &password).await;
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {"team": "lat"}}}}),
    )
    .await;
    h.wait_status("hub", "Issued=True", |s| is_condition(s, "Issued", "True"))
        .await;

    let mut delays = Vec::new();
    for i in 0..50 {
        let ns = format!("lat-{i:02}");
        let start = Instant::now();
        namespace_with_default_sa(&h.client, &ns, &[("team", "lat")]).await;
        h.wait_pull_secrets(&ns, "default", &["hub"]).await;
        h.wait_secret(&ns, "hub", "managed Secret", |_| true).await;
        delays.push(start.elapsed());
    }
    delays.sort();
    println!(
        "new-namespace latency over {} namespaces (namespace+SA created -> Secret written and SA patched): p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().unwrap()
    );

    let secret = h.secrets("lat-00").get("hub").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(secret.labels()["app.kubernetes.io/managed-by"], "regcred");
    assert_eq!(secret.labels()["regcred.dev/credential"], "hub");
    let owner = &secret.owner_references()[0];
    let rc = h.rcs().get("hub").await.unwrap();
    // Added on the first pass, before anything is written, and only once.
    assert_eq!(rc.finalizers(), ["regcred.dev/cleanup"]);
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("RegistryCredential", rc.uid().unwrap().as_str())
    );
    let config = docker_config(&secret);
    assert_eq!(config["auths"][HUB]["username"], "me");
    assert_eq!(config["auths"][HUB]["password"], password.as_str());
    let auth = base64_decode(config["auths"][HUB]["auth"].as_str().unwrap());
    assert_eq!(auth, format!("me:{password}"));

    let status = h
        .wait_status("hub", "50/50 synced", |s| s.summary.as_deref() == Some("50/50"))
        .await;
    assert_eq!(status.provider.map(|p| p.as_str()), Some("Static"));
    assert_eq!(status.registries, ["docker.io"]);
    assert_eq!(status.not_after, None, "static credentials do not expire");
    assert_eq!(status.service_accounts.patched, 50);
    for t in ["Issued", "Synced", "Ready"] {
        assert_eq!(condition(&status, t).status, "True", "{t}");
        assert_eq!(condition(&status, t).observed_generation, rc.metadata.generation);
    }
    assert_eq!(condition(&status, "PullAuthHealthy").status, "Unknown");
    // Namespaces outside the selector are untouched (CREDS_NS holds only the source Secret).
    let source = h.secrets(CREDS_NS).get("hub").await.unwrap();
    assert!(!source.labels().contains_key("app.kubernetes.io/managed-by"));
}

fn base64_decode(s: &str) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

#[tokio::test]
async fn foreign_pull_secrets_keep_their_order_under_a_concurrent_writer() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    create_namespace(&h.client, "shared", &[]).await;
    create_service_account(&h.client, "shared", "default", &["a", "b", "c"]).await;

    // Another controller keeps adding and removing its own entry, with
    // resourceVersion preconditions, while regcred patches the same list.
    let sas = h.sas("shared");
    let writer = tokio::spawn(async move {
        let (mut writes, mut conflicts) = (0, 0);
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let mut sa = sas.get("default").await.unwrap();
            let list = sa.image_pull_secrets.get_or_insert_default();
            if let Some(i) = list.iter().position(|r| r.name == "writer") {
                list.remove(i);
            } else {
                list.push(LocalObjectReference { name: "writer".into() });
            }
            match sas.replace("default", &PostParams::default(), &sa).await {
                Ok(_) => writes += 1,
                Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                Err(e) => panic!("writer: {e}"),
            }
        }
        // Leave without its entry.
        loop {
            let mut sa = sas.get("default").await.unwrap();
            let list = sa.image_pull_secrets.get_or_insert_default();
            let Some(i) = list.iter().position(|r| r.name == "writer") else {
                break;
            };
            list.remove(i);
            if sas.replace("default", &PostParams::default(), &sa).await.is_ok() {
                break;
            }
        }
        (writes, conflicts)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["shared"]}})).await;
    let (writes, conflicts) = writer.await.unwrap();
    println!("concurrent writer: {writes} writes, {conflicts} conflicts");

    let sa = h.wait_pull_secrets("shared", "default", &["a", "b", "c", "hub"]).await;
    assert_eq!(
        sa.annotations()["regcred.dev/pull-secrets"],
        "hub=hub",
        "the entry and the RegistryCredential it belongs to"
    );
    // And it stays that way: a later reconcile adds nothing twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pull_secret_names(&h.sas("shared").get("default").await.unwrap()),
        ["a", "b", "c", "hub"]
    );
}

#[tokio::test]
async fn foreign_secret_is_untouched_under_fail_and_taken_over_under_adopt() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "taken", &[]).await;
    namespace_with_default_sa(&h.client, "free", &[]).await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("hub".into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some([("note".to_string(), ByteString(b"someone else's".to_vec()))].into()),
        ..Default::default()
    };
    let foreign = h
        .secrets("taken")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();

    create_hub_rc(&h.client, json!({"namespaces": {"names": ["taken", "free"]}})).await;
    let status = h
        .wait_status("hub", "taken reported as SecretExists", |s| {
            s.failed_namespaces
                .iter()
                .any(|f| f.namespace == "taken" && f.reason == "SecretExists")
                && s.summary.as_deref() == Some("1/2")
        })
        .await;
    let synced = condition(&status, "Synced");
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "SecretExists")
    );
    assert!(
        synced.message.contains("existingSecretPolicy: Adopt"),
        "{}",
        synced.message
    );
    assert_eq!(condition(&status, "Ready").reason, "SecretExists");

    let after = h.secrets("taken").get("hub").await.unwrap();
    assert_eq!(
        after.resource_version(),
        foreign.resource_version(),
        "foreign Secret must not be written"
    );
    assert_eq!(after.data, foreign.data);
    assert_eq!(after.type_.as_deref(), Some("Opaque"));
    assert!(pull_secret_names(&h.sas("taken").get("default").await.unwrap()).is_empty());
    h.wait_pull_secrets("free", "default", &["hub"]).await;

    wait_event(&h.client, "SecretExists", Some("Warning")).await;

    let adopt = json!({"spec": {"target": {"existingSecretPolicy": "Adopt"}}});
    patch_rc(&h.client, "hub", adopt).await;
    let adopted = h
        .wait_secret("taken", "hub", "adopted Secret", |s| {
            s.type_.as_deref() == Some("kubernetes.io/dockerconfigjson")
        })
        .await;
    assert_eq!(adopted.labels()["regcred.dev/credential"], "hub");
    assert_eq!(password_for(&adopted, HUB).as_deref(), Some("pw"));
    h.wait_pull_secrets("taken", "default", &["hub"]).await;
    let status = h
        .wait_status("hub", "2/2 after adopting", |s| s.summary.as_deref() == Some("2/2"))
        .await;
    assert!(status.failed_namespaces.is_empty());
}

#[tokio::test]
async fn managed_secret_deleted_or_edited_is_restored() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "good").await;
    namespace_with_default_sa(&h.client, "app", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["app"]}})).await;
    h.wait_secret("app", "hub", "managed Secret", |_| true).await;

    h.secrets("app").delete("hub", &DeleteParams::default()).await.unwrap();
    let start = Instant::now();
    h.wait_secret("app", "hub", "Secret restored after deletion", |s| {
        password_for(s, HUB).as_deref() == Some("good")
    })
    .await;
    println!("restored after deletion in {:?}", start.elapsed());

    let tampered = json!({"data": {".dockerconfigjson": "e30="}, "type": "kubernetes.io/dockerconfigjson"});
    h.secrets("app")
        .patch("hub", &PatchParams::default(), &Patch::Merge(&tampered))
        .await
        .unwrap();
    let start = Instant::now();
    h.wait_secret("app", "hub", "Secret restored after an edit", |s| {
        password_for(s, HUB).as_deref() == Some("good")
    })
    .await;
    println!("restored after an edit in {:?}", start.elapsed());

    // Someone strips regcred's reference from the SA: it comes back.
    let mut sa = h.sas("app").get("default").await.unwrap();
    sa.image_pull_secrets = None;
    h.sas("app")
        .replace("default", &PostParams::default(), &sa)
        .await
        .unwrap();
    h.wait_pull_secrets("app", "default", &["hub"]).await;
}

#[tokio::test]
async fn secret_labels_and_annotations_follow_the_spec_and_spare_foreign_keys() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "app", &[]).await;
    let target = json!({
        "namespaces": {"names": ["app"]},
        "secretLabels": {"team": "a", "tier": "gold"},
        "secretAnnotations": {"note": "from-spec"},
    });
    create_hub_rc(&h.client, target).await;
    h.wait_secret("app", "hub", "Secret with the spec's metadata", |s| {
        s.labels().get("tier").map(String::as_str) == Some("gold")
            && s.annotations().get("note").map(String::as_str) == Some("from-spec")
    })
    .await;
    // Another tool labels and annotates the managed Secret.
    let foreign = json!({"metadata": {"labels": {"audit": "yes"}, "annotations": {"backup": "daily"}}});
    h.secrets("app")
        .patch("hub", &PatchParams::default(), &Patch::Merge(&foreign))
        .await
        .unwrap();

    let change = json!({"spec": {"target": {
        "secretLabels": {"team": "b", "tier": null},
        "secretAnnotations": null,
    }}});
    patch_rc(&h.client, "hub", change).await;
    let secret = h
        .wait_secret("app", "hub", "team=b, without tier and note", |s| {
            s.labels().get("team").map(String::as_str) == Some("b")
                && !s.labels().contains_key("tier")
                && !s.annotations().contains_key("note")
        })
        .await;
    assert_eq!(secret.labels()["audit"], "yes", "a foreign label survives");
    assert_eq!(secret.annotations()["backup"], "daily", "a foreign annotation survives");
    assert_eq!(secret.labels()["regcred.dev/credential"], "hub");
    assert_eq!(password_for(&secret, HUB).as_deref(), Some("pw"));
}

#[tokio::test]
async fn changing_the_source_secret_updates_every_managed_secret() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "first").await;
    let names: Vec<String> = (0..5).map(|i| format!("src-{i}")).collect();
    for n in &names {
        namespace_with_default_sa(&h.client, n, &[("src", "yes")]).await;
    }
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {"src": "yes"}}}}),
    )
    .await;
    for n in &names {
        h.wait_secret(n, "hub", "first password", |s| {
            password_for(s, HUB).as_deref() == Some("first")
        })
        .await;
    }
    put_source_secret(&h.client, "hub", "me", "second").await;
    let start = Instant::now();
    for n in &names {
        h.wait_secret(n, "hub", "rotated password", |s| {
            password_for(s, HUB).as_deref() == Some("second")
        })
        .await;
    }
    println!(
        "source rotation reached {} namespaces in {:?}",
        names.len(),
        start.elapsed()
    );

    // A broken source keeps the last good Secrets and says why.
    let api: Api<Secret> = Api::namespaced(h.client.clone(), CREDS_NS);
    let broken = json!({"data": {"password": null}});
    api.patch("hub", &PatchParams::default(), &Patch::Merge(&broken))
        .await
        .unwrap();
    let status = h
        .wait_status("hub", "Issued=False", |s| is_condition(s, "Issued", "False"))
        .await;
    let issued = condition(&status, "Issued");
    assert_eq!(issued.reason, "SourceSecretInvalid");
    assert!(issued.message.contains("has no key \"password\""), "{}", issued.message);
    assert_eq!(status.failed_attempts, 1);
    for n in &names {
        let s = h.secrets(n).get("hub").await.unwrap();
        assert_eq!(
            password_for(&s, HUB).as_deref(),
            Some("second"),
            "last good Secret kept in {n}"
        );
    }
    put_source_secret(&h.client, "hub", "me", "third").await;
    h.wait_status("hub", "recovered", |s| {
        is_condition(s, "Issued", "True") && s.failed_attempts == 0
    })
    .await;
    h.wait_secret(&names[0], "hub", "third password", |s| {
        password_for(s, HUB).as_deref() == Some("third")
    })
    .await;
}

#[tokio::test]
async fn selector_changes_move_secrets_and_deletion_cleans_up_exactly() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    for (ns, team) in [("alpha", "x"), ("beta", "y"), ("gamma", "x")] {
        create_namespace(&h.client, ns, &[("team", team)]).await;
        create_service_account(&h.client, ns, "default", &["keep"]).await;
        create_service_account(&h.client, ns, "builder", &[]).await;
    }
    // Something regcred must never touch.
    let other = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("other".into()),
            ..Default::default()
        },
        string_data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let other = h.secrets("beta").create(&PostParams::default(), &other).await.unwrap();

    let target =
        json!({"namespaces": {"selector": {"matchLabels": {"team": "x"}}}, "serviceAccounts": {"names": ["*"]}});
    create_hub_rc(&h.client, target).await;
    h.wait_pull_secrets("alpha", "default", &["keep", "hub"]).await;
    h.wait_pull_secrets("alpha", "builder", &["hub"]).await;
    h.wait_pull_secrets("gamma", "default", &["keep", "hub"]).await;

    // Move to team y: alpha and gamma are cleaned at once, beta gets it.
    let moved = json!({"spec": {"target": {"namespaces": {"selector": {"matchLabels": {"team": "y"}}}}}});
    patch_rc(&h.client, "hub", moved).await;
    h.wait_pull_secrets("beta", "default", &["keep", "hub"]).await;
    for ns in ["alpha", "gamma"] {
        h.wait_secret_gone(ns, "hub").await;
        let sa = h.wait_pull_secrets(ns, "default", &["keep"]).await;
        assert!(!sa.annotations().contains_key("regcred.dev/pull-secrets"));
        h.wait_pull_secrets(ns, "builder", &[]).await;
    }

    // Narrowing the ServiceAccount selection removes regcred's entry from the rest.
    let only_default = json!({"spec": {"target": {"serviceAccounts": {"names": ["default"]}}}});
    patch_rc(&h.client, "hub", only_default).await;
    h.wait_pull_secrets("beta", "builder", &[]).await;

    // A namespace that stops matching by its own labels is cleaned too.
    label_namespace(&h.client, "beta", &[("team", "z")]).await;
    h.wait_secret_gone("beta", "hub").await;
    h.wait_pull_secrets("beta", "default", &["keep"]).await;
    h.wait_status("hub", "0 targeted", |s| s.namespaces.targeted == 0).await;

    label_namespace(&h.client, "beta", &[("team", "y")]).await;
    h.wait_pull_secrets("beta", "default", &["keep", "hub"]).await;
    delete_rc(&h.client, "hub").await;
    h.wait_rc_gone("hub", WAIT).await;
    h.wait_secret_gone("beta", "hub").await;
    let sa = h.sas("beta").get("default").await.unwrap();
    assert_eq!(pull_secret_names(&sa), ["keep"]);
    assert!(!sa.annotations().contains_key("regcred.dev/pull-secrets"));
    let all = Api::<Secret>::all(h.client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=regcred"))
        .await
        .unwrap();
    assert!(
        all.items.is_empty(),
        "managed Secrets left: {:?}",
        all.items.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    );
    let after = h.secrets("beta").get("other").await.unwrap();
    assert_eq!(after.resource_version(), other.resource_version());
    assert_eq!(
        pull_secret_names(&h.sas("alpha").get("default").await.unwrap()),
        ["keep"]
    );
}

#[tokio::test]
async fn terminating_namespaces_are_skipped_without_errors() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "stays", &[("t", "1")]).await;
    namespace_with_default_sa(&h.client, "goes", &[("t", "1")]).await;
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {"t": "1"}}}}),
    )
    .await;
    h.wait_status("hub", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;
    // No namespace controller runs here, so the namespace stays Terminating.
    Api::<Namespace>::all(h.client.clone())
        .delete("goes", &DeleteParams::default())
        .await
        .unwrap();
    let status = h.wait_status("hub", "1 targeted", |s| s.namespaces.targeted == 1).await;
    assert!(status.failed_namespaces.is_empty(), "{:?}", status.failed_namespaces);
    assert!(is_condition(&status, "Ready", "True"));
}

#[tokio::test]
async fn a_resync_with_nothing_to_do_makes_zero_writes() {
    let mut h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    let names: Vec<String> = (0..4).map(|i| format!("quiet-{i}")).collect();
    for n in &names {
        namespace_with_default_sa(&h.client, n, &[("q", "1")]).await;
        create_service_account(&h.client, n, "builder", &["foreign"]).await;
    }
    let target = json!({"namespaces": {"selector": {"matchLabels": {"q": "1"}}}, "serviceAccounts": {"names": ["*"]}});
    create_hub_rc(&h.client, target).await;
    h.wait_status("hub", "4/4 Ready", |s| {
        s.summary.as_deref() == Some("4/4") && is_condition(s, "Ready", "True")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = resource_versions(&h, &names, "hub").await;

    // A restart reconciles everything from scratch (and re-reads the source).
    h.operator.stop();
    h.operator = start_operator(&h.cp);
    eventually(WAIT, "the restarted operator to reconcile", || {
        let logs = h.operator.logs();
        async move { logs.contains("reconciled").then_some(()) }
    })
    .await;
    // Unrelated events trigger more reconciles: a namespace nobody targets.
    create_namespace(&h.client, "unrelated", &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reconciles = h.operator.logs().matches("reconciled").count();
    assert!(reconciles >= 2, "expected several reconciles, saw {reconciles}");
    let after = resource_versions(&h, &names, "hub").await;
    assert_eq!(before, after, "a resync with nothing to do must not write anything");
    assert_eq!(
        before.len(),
        4 * 3 + 1,
        "3 objects per namespace and the RegistryCredential"
    );
}

#[tokio::test]
async fn the_password_never_appears_in_logs_events_or_status() {
    let mut h = Harness::start().await;
    let password = canary("static");
    put_source_secret(&h.client, "hub", "me", &password).await;
    namespace_with_default_sa(&h.client, "c1", &[]).await;
    namespace_with_default_sa(&h.client, "c2", &[]).await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("hub".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    h.secrets("c2").create(&PostParams::default(), &foreign).await.unwrap();
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["c1", "c2"]}})).await;
    h.wait_secret("c1", "hub", "canary written", |s| {
        password_for(s, HUB).as_deref() == Some(password.as_str())
    })
    .await;
    h.wait_status("hub", "c2 failed", |s| !s.failed_namespaces.is_empty())
        .await;
    // Exercise the error paths too: an invalid source and a deleted one.
    let api: Api<Secret> = Api::namespaced(h.client.clone(), CREDS_NS);
    api.patch(
        "hub",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"username": null}})),
    )
    .await
    .unwrap();
    h.wait_status("hub", "Issued=False", |s| is_condition(s, "Issued", "False"))
        .await;
    api.delete("hub", &DeleteParams::default()).await.unwrap();
    h.wait_status("hub", "SourceSecretMissing", |s| {
        condition(s, "Issued").reason == "SourceSecretMissing"
    })
    .await;
    h.operator.stop();

    let logs = h.operator.logs();
    assert!(logs.contains("reconciled"), "operator logs are captured:\n{logs}");
    assert!(!logs.contains(&password), "password leaked into the operator's logs");
    let rc = h.rcs().get("hub").await.unwrap();
    let status = serde_json::to_string(&rc.status).unwrap();
    assert!(!status.contains(&password), "password leaked into status");
    let events = Api::<Event>::all(h.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(!events.items.is_empty());
    let events = serde_json::to_string(&events.items).unwrap();
    assert!(!events.contains(&password), "password leaked into Events");
    assert!(
        events.contains("SourceSecretMissing"),
        "mint failures are announced as Events"
    );
    let _ = RegistryCredential::kind(&());
}

#[tokio::test]
async fn fans_out_to_200_namespaces() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    for i in 0..200 {
        namespace_with_default_sa(&h.client, &format!("fan-{i:03}"), &[("fan", "out")]).await;
    }
    let start = Instant::now();
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {"fan": "out"}}}}),
    )
    .await;
    let status = h
        .wait_status("hub", "200/200 synced", |s| {
            s.summary.as_deref() == Some("200/200") && s.service_accounts.patched == 200
        })
        .await;
    println!(
        "fan-out to 200 namespaces (Secret + default SA each): {:?} until status showed 200/200",
        start.elapsed()
    );
    assert!(is_condition(&status, "Ready", "True"));
    let managed = Api::<Secret>::all(h.client.clone())
        .list(&ListParams::default().labels("regcred.dev/credential=hub"))
        .await
        .unwrap();
    assert_eq!(managed.items.len(), 200);
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.operator.pid())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    println!("operator memory with 200 namespaces (200 Secrets, 201 ServiceAccounts cached): {rss}");
}

/// The `key=value` fields of the operator's `reconciled` log lines written
/// after byte `from` of its log (ANSI colours removed).
fn reconciled_fields(logs: &str, from: usize, key: &str) -> Vec<u64> {
    let mut plain = String::with_capacity(logs.len());
    let mut chars = logs[from..].chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (`m`).
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|l| l.contains(" reconciled "))
        .filter_map(|l| {
            let (_, rest) = l.split_once(&format!("{key}="))?;
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// A new namespace costs work in that namespace, not in every namespace
/// times every RegistryCredential: after it, each of three
/// RegistryCredentials targeting all of 40-odd namespaces looks at one
/// namespace per reconcile (its own status write brings a reconcile that
/// looks at none), where each used to go over all of them.
#[tokio::test]
async fn a_new_namespace_is_reconciled_in_that_namespace_only() {
    const RCS: usize = 3;
    const NAMESPACES: usize = 40;
    let h = Harness::start().await;
    for n in 0..NAMESPACES {
        namespace_with_default_sa(&h.client, &format!("scope-{n}"), &[]).await;
    }
    for r in 0..RCS {
        let name = format!("scope-rc-{r}");
        put_source_secret(&h.client, &name, "alice", &canary(&name)).await;
        apply_rc(
            &h.client,
            registry_credential(
                &name,
                json!({"provider": {"static": {"registry": format!("r{r}.example"), "secretRef": {"name": name}}},
                       "healthCheck": {"mode": "Disabled"}}),
            ),
        )
        .await;
    }
    let mut targeted = 0;
    for r in 0..RCS {
        let status = h
            .wait_status(&format!("scope-rc-{r}"), "all namespaces synced", |s| {
                s.namespaces.targeted as usize > NAMESPACES && s.namespaces.synced == s.namespaces.targeted
            })
            .await;
        targeted = status.namespaces.targeted;
    }
    // Let the echoes of the fan-out (its own writes, status) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = h.operator.logs().len();

    namespace_with_default_sa(&h.client, "scope-fresh", &[]).await;
    let want: Vec<String> = (0..RCS).map(|r| format!("scope-rc-{r}")).collect();
    let sas = h.sas("scope-fresh");
    // In whichever order the three reconciles added them.
    eventually(
        WAIT,
        "every RegistryCredential's entry on scope-fresh/default",
        || async {
            let mut names = pull_secret_names(&sas.get("default").await.ok()?);
            names.sort();
            (names == want).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let logs = h.operator.logs();
    let looked_at = reconciled_fields(&logs, from, "looked_at");
    eprintln!(
        "after one new namespace, {} reconciles of {RCS} RegistryCredentials over {targeted} targeted namespaces looked at {looked_at:?} namespaces",
        looked_at.len()
    );
    assert!(
        looked_at.len() >= RCS,
        "a reconcile per RegistryCredential: {looked_at:?}"
    );
    assert!(
        looked_at.iter().all(|n| *n <= 1),
        "each reconcile looks at the new namespace only: {looked_at:?}"
    );
}
