//! Pull-auth health in status: the operator proves the credential it wrote
//! against a real registry (Debian's docker-registry with htpasswd, TLS from
//! a test CA) and says in status whether pulls will authenticate.

mod support;

use std::time::Duration;

use kube::ResourceExt;
use regcred_testenv::eventually;
use regcred_testenv::registry::{Auth, Registry};
use serde_json::json;
use support::*;

async fn wait_pull_auth(h: &Harness, result: &str) -> regcred::api::RegistryCredentialStatus {
    let api = h.rcs();
    eventually(Duration::from_secs(60), &format!("pullAuth {result}"), || {
        let api = api.clone();
        async move {
            let s = api.get("local").await.ok()?.status?;
            (s.pull_auth.as_ref().map(|p| format!("{:?}", p.result)).as_deref() == Some(result)).then_some(s)
        }
    })
    .await
}

#[tokio::test]
async fn status_says_whether_pulls_authenticate() {
    let mut registry = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), "right-password".into())],
    })
    .await
    .expect("docker-registry starts");
    registry.push_image("team/app", "1.0").await.expect("image pushed");
    let ca = registry.ca_path().to_str().unwrap().to_string();
    let h = Harness::start_with(&["--ca-bundle", &ca], &[]).await;
    put_source_secret(&h.client, "local", "alice", "right-password").await;
    namespace_with_default_sa(&h.client, "app", &[]).await;
    let rc = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "local"},
        "spec": {"provider": {"static": {"registry": registry.host(), "secretRef": {"name": "local"}}},
                 "target": {"namespaces": {"names": ["app"]}},
                 "healthCheck": {"image": "team/app:1.0", "interval": "2s"}}});
    apply_rc(&h.client, rc).await;

    let status = wait_pull_auth(&h, "Healthy").await;
    let pull = status.pull_auth.as_ref().unwrap();
    assert_eq!(pull.registry.as_deref(), Some(registry.host()));
    assert!(pull.checked_time.is_some());
    assert_eq!(condition(&status, "PullAuthHealthy").status, "True");
    assert!(is_condition(&status, "Ready", "True"));

    // A wrong password in the source: the registry refuses it before it
    // replaces the good credential, so every namespace keeps pulling.
    let before = h.secrets("app").get("local").await.unwrap();
    put_source_secret(&h.client, "local", "alice", "wrong-password").await;
    let status = h
        .wait_status("local", "CredentialRejected", |s| {
            condition(s, "Issued").reason == "CredentialRejected"
        })
        .await;
    assert_eq!(condition(&status, "Ready").reason, "CredentialRejected");
    let message = &condition(&status, "Issued").message;
    assert!(message.contains("keep the last good credential"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    wait_event(&h.client, "CredentialRejected", Some("Warning")).await;
    let kept = h.secrets("app").get("local").await.unwrap();
    assert_eq!(
        kept.resource_version(),
        before.resource_version(),
        "the good Secret is untouched"
    );
    assert_eq!(password_for(&kept, registry.host()).as_deref(), Some("right-password"));

    // Right password, wrong tag.
    put_source_secret(&h.client, "local", "alice", "right-password").await;
    wait_pull_auth(&h, "Healthy").await;
    let patch = json!({"spec": {"healthCheck": {"image": "team/app:2.0"}}});
    patch_rc(&h.client, "local", patch).await;
    let status = wait_pull_auth(&h, "ImageNotFound").await;
    assert!(
        status.pull_auth.as_ref().unwrap().message.contains("team/app"),
        "{:?}",
        status.pull_auth
    );

    // The registry goes away, then comes back.
    registry.stop();
    let status = wait_pull_auth(&h, "Unreachable").await;
    assert_eq!(condition(&status, "Ready").reason, "Unreachable");
    registry.restart().await.expect("registry restarts");
    let patch = json!({"spec": {"healthCheck": {"image": "team/app:1.0"}}});
    patch_rc(&h.client, "local", patch).await;
    wait_pull_auth(&h, "Healthy").await;

    // Disabled says so.
    let patch = json!({"spec": {"healthCheck": {"mode": "Disabled"}}});
    patch_rc(&h.client, "local", patch).await;
    let status = wait_pull_auth(&h, "Disabled").await;
    assert_eq!(condition(&status, "PullAuthHealthy").reason, "CheckDisabled");
    assert!(is_condition(&status, "Ready", "True"));
    assert!(!h.operator.logs().contains("right-password"));
}

/// The first credential has nothing better to protect: it is written, and
/// status says the registry refuses it.
#[tokio::test]
async fn a_refused_first_credential_is_written_and_reported() {
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), "right-password".into())],
    })
    .await
    .expect("docker-registry starts");
    let ca = registry.ca_path().to_str().unwrap().to_string();
    let h = Harness::start_with(&["--ca-bundle", &ca], &[]).await;
    put_source_secret(&h.client, "local", "alice", "wrong-password").await;
    namespace_with_default_sa(&h.client, "app", &[]).await;
    let rc = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "local"},
        "spec": {"provider": {"static": {"registry": registry.host(), "secretRef": {"name": "local"}}},
                 "target": {"namespaces": {"names": ["app"]}}}});
    apply_rc(&h.client, rc).await;
    let status = wait_pull_auth(&h, "Unauthorized").await;
    assert_eq!(condition(&status, "PullAuthHealthy").reason, "Unauthorized");
    assert_eq!(condition(&status, "Ready").reason, "Unauthorized");
    assert!(is_condition(&status, "Synced", "True"));
    let message = &status.pull_auth.as_ref().unwrap().message;
    assert!(!message.contains("wrong-password"), "{message}");
}
