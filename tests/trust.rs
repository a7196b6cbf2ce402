//! regcred must never cause the pull failures it exists to prevent: it never
//! strips, clobbers or forges what pods pull with. Against a real
//! kube-apiserver + etcd, the operator running as the built binary.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use regcred::api::RegistryCredential;
use regcred_testenv::eventually;
use regcred_testenv::fakes::Fault;
use regcred_testenv::fakes::google::{TokenServer, service_account_key_json};
use serde_json::json;
use support::*;

const HUB: &str = "https://index.docker.io/v1/";

fn static_rc(name: &str, source: &str, target: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "regcred.dev/v1alpha1",
        "kind": "RegistryCredential",
        "metadata": {"name": name},
        "spec": {
            "provider": {"static": {"registry": "docker.io", "secretRef": {"name": source}}},
            "target": target,
            "healthCheck": {"mode": "Disabled"},
        }
    })
}

/// Deny every Secret write in namespaces labelled `secrets=frozen`, with a
/// real ValidatingAdmissionPolicy, and wait until the API server enforces it.
async fn freeze_secrets(client: &Client, ns: &str) {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "freeze-secrets"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["secrets"]}]},
            "validations": [{"expression": "false", "message": "Secrets are frozen in this namespace by policy"}]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": "freeze-secrets"},
        "spec": {
            "policyName": "freeze-secrets",
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"secrets": "frozen"}}}
        }
    }))
    .unwrap();
    let ssa = PatchParams::apply("test").force();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch("freeze-secrets", &ssa, &Patch::Apply(&policy))
        .await
        .expect("policy applied");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch("freeze-secrets", &ssa, &Patch::Apply(&binding))
        .await
        .expect("binding applied");
    label_namespace(client, ns, &[("secrets", "frozen")]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, "the policy to deny Secret writes", || {
        let secrets = secrets.clone();
        async move {
            let probe = Secret {
                metadata: kube::api::ObjectMeta {
                    generate_name: Some("probe-".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &probe).await {
                Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422 => Some(()),
                Ok(s) => {
                    let _ = secrets.delete(&s.name_any(), &Default::default()).await;
                    None
                }
                Err(_) => None,
            }
        }
    })
    .await;
}

fn failed_in<'a>(s: &'a regcred::api::RegistryCredentialStatus, ns: &str) -> Option<&'a str> {
    s.failed_namespaces
        .iter()
        .find(|f| f.namespace == ns)
        .map(|f| f.reason.as_str())
}

/// Item 1: a denied Secret write leaves the ServiceAccount's entry in
/// place, so pods created meanwhile still carry the (last good) Secret.
#[tokio::test]
async fn a_denied_secret_write_never_strips_the_service_account() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "first").await;
    namespace_with_default_sa(&h.client, "frozen", &[]).await;
    namespace_with_default_sa(&h.client, "open", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["frozen", "open"]}})).await;
    h.wait_pull_secrets("frozen", "default", &["hub"]).await;
    h.wait_status("hub", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;

    freeze_secrets(&h.client, "frozen").await;
    put_source_secret(&h.client, "hub", "me", "second").await;
    h.wait_secret("open", "hub", "rotated in the open namespace", |s| {
        password_for(s, HUB).as_deref() == Some("second")
    })
    .await;
    let status = h
        .wait_status("hub", "frozen reported", |s| {
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
        ["hub"],
        "a failed write stripped the ServiceAccount"
    );
    let kept = h.secrets("frozen").get("hub").await.unwrap();
    assert_eq!(
        password_for(&kept, HUB).as_deref(),
        Some("first"),
        "the last good Secret stays"
    );
}

/// Item 2: two RegistryCredentials with one Secret name in one namespace:
/// the second reports a conflict naming the owner and writes nothing.
#[tokio::test]
async fn two_credentials_on_one_secret_name_do_not_fight() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "both", &[]).await;
    apply_rc(
        &h.client,
        static_rc(
            "first",
            "hub",
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
            "hub",
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
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let sa_after = h.sas("both").get("default").await.unwrap();
    let secret_after = h.secrets("both").get("pull").await.unwrap();
    let sa_writes = sa_after.resource_version() != sa_before.resource_version();
    println!(
        "two RegistryCredentials on one Secret name, {}s: ServiceAccount changed: {sa_writes}, Secret changed: {}",
        window.as_secs(),
        secret_after.resource_version() != secret_before.resource_version()
    );
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
    eventually(WAIT, "second gone", || {
        let api = h.rcs();
        async move { api.get_opt("second").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let sa = h.sas("both").get("default").await.unwrap();
    assert_eq!(pull_secret_names(&sa), ["pull"]);
    assert!(h.secrets("both").get_opt("pull").await.unwrap().is_some());
}

/// The YAML block of the README's quick start, verbatim.
fn readme_quick_start() -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find("3. Apply a RegistryCredential")
        .expect("quick start step 3");
    let block = &readme[start..];
    let yaml = &block[block.find("```yaml").unwrap() + 7..];
    let yaml = &yaml[..yaml.find("```").unwrap()];
    yaml.lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn apply_yaml(client: &Client, yaml: &str) -> Vec<String> {
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let rc: RegistryCredential = serde::Deserialize::deserialize(doc).expect("a RegistryCredential");
        names.push(rc.name_any());
        Api::<RegistryCredential>::all(client.clone())
            .create(&PostParams::default(), &rc)
            .await
            .expect("created");
    }
    names
}

/// Item 3: the README's quick start and the static examples, verbatim with
/// the source Secrets they name in the credentials namespace, sync every
/// namespace but the credentials namespace; `Adopt` never takes a source.
#[tokio::test]
async fn readme_quick_start_and_static_examples_sync_and_never_touch_their_sources() {
    let h = Harness::start().await;
    // Step 2 of the quick start: `kubectl -n regcred-system create secret generic dockerhub ...`.
    put_source_secret(&h.client, "dockerhub", "me", "dckr_pat_example").await;
    // static-dockerconfigjson.yaml reads a dockerconfigjson Secret named like its target.
    let ghcr = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("ghcr-pull".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(br#"{"auths":{"ghcr.io":{"username":"me","password":"ghp_example"}}}"#.to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    h.secrets(CREDS_NS).create(&PostParams::default(), &ghcr).await.unwrap();
    for ns in ["app-a", "app-b"] {
        namespace_with_default_sa(&h.client, ns, &[]).await;
    }
    let all = Api::<k8s_openapi::api::core::v1::Namespace>::all(h.client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len() as u32;
    let all_but_kube_system = all - 1;
    let mut names = apply_yaml(&h.client, &readme_quick_start()).await;
    assert_eq!(names, ["dockerhub"]);
    // The dockerhub example has the quick start's name: apply it after.
    names.extend(apply_yaml(&h.client, include_str!("../examples/static-dockerconfigjson.yaml")).await);

    for name in &names {
        let status = h
            .wait_status(name, "Issued and Synced", |s| {
                is_condition(s, "Issued", "True") && is_condition(s, "Synced", "True")
            })
            .await;
        assert_eq!(status.namespaces.targeted, status.namespaces.synced, "{name}");
        let selected = if name == "dockerhub" { all_but_kube_system } else { all };
        assert_eq!(
            status.namespaces.targeted,
            selected - 1,
            "{name}: every selected namespace but {CREDS_NS}"
        );
        assert!(
            status.failed_namespaces.is_empty(),
            "{name}: {:?}",
            status.failed_namespaces
        );
        // Offline, docker.io and ghcr.io cannot be reached; that is all that keeps Ready from True.
        let ready = condition(&status, "Ready");
        assert!(
            ready.status == "True" || ready.reason == "Unreachable",
            "{name}: Ready {} {}",
            ready.status,
            ready.reason
        );
    }
    let sas = h.sas("app-a");
    eventually(WAIT, "app-a/default to reference both Secrets", || {
        let sas = sas.clone();
        async move {
            let mut names = pull_secret_names(&sas.get("default").await.ok()?);
            names.sort();
            (names == ["dockerhub", "ghcr-pull"]).then_some(())
        }
    })
    .await;

    // Following the old advice (Adopt) must not touch the sources either.
    patch_rc(
        &h.client,
        "dockerhub",
        json!({"spec": {"target": {"existingSecretPolicy": "Adopt"}}}),
    )
    .await;
    patch_rc(
        &h.client,
        "ghcr",
        json!({"spec": {"target": {"existingSecretPolicy": "Adopt"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let namespaces = ["app-a".to_string(), "app-b".to_string(), CREDS_NS.to_string()];
    let before = resource_versions(&h, &namespaces, "dockerhub").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = resource_versions(&h, &namespaces, "dockerhub").await;
    let changed: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).collect();
    assert!(changed.is_empty(), "writes while nothing changed: {changed:?}");
    for source in ["dockerhub", "ghcr-pull"] {
        let s = h.secrets(CREDS_NS).get(source).await.unwrap();
        assert!(
            !s.labels().contains_key("app.kubernetes.io/managed-by"),
            "{source} was taken over"
        );
    }

    // A password change reaches every copy; deleting leaves the sources.
    put_source_secret(&h.client, "dockerhub", "me", "dckr_pat_rotated").await;
    h.wait_secret("app-b", "dockerhub", "rotated", |s| {
        password_for(s, HUB).as_deref() == Some("dckr_pat_rotated")
    })
    .await;
    delete_rc(&h.client, "dockerhub").await;
    delete_rc(&h.client, "ghcr").await;
    h.wait_secret_gone("app-a", "dockerhub").await;
    h.wait_secret_gone("app-a", "ghcr-pull").await;
    assert!(h.secrets(CREDS_NS).get_opt("dockerhub").await.unwrap().is_some());
    assert!(h.secrets(CREDS_NS).get_opt("ghcr-pull").await.unwrap().is_some());
}

/// Item 4: a Secret another controller controls is reported, not fought over.
#[tokio::test]
async fn a_secret_controlled_by_another_controller_is_reported_not_adopted() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
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
        "metadata": {"name": "hub", "ownerReferences": [{
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
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"names": ["owned"]}, "existingSecretPolicy": "Adopt"}),
    )
    .await;
    let status = h
        .wait_status("hub", "SecretControlledElsewhere", |s| {
            failed_in(s, "owned") == Some("SecretControlledElsewhere")
        })
        .await;
    assert!(status.failed_namespaces[0].message.contains("ConfigMap owner"));
    let s = h.secrets("owned").get("hub").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"), "left as it was");
    assert_eq!(s.owner_references().len(), 1);
    let sa = h.sas("owned").get("default").await.unwrap();
    assert!(pull_secret_names(&sa).is_empty());
}

fn gcr_rc(namespaces: &[&str]) -> serde_json::Value {
    json!({
        "apiVersion": "regcred.dev/v1alpha1",
        "kind": "RegistryCredential",
        "metadata": {"name": "gcr"},
        "spec": {
            "provider": {"gcr": {"registries": ["gcr.io"], "auth": {"serviceAccountKey": {"secretRef": {"name": "gcp-sa", "key": "key.json"}}}}},
            "target": {"namespaces": {"names": namespaces}},
            "healthCheck": {"mode": "Disabled"},
        }
    })
}

async fn start_gcr(h: &Harness, google: &TokenServer, token: &str, namespaces: &[&str]) {
    put_secret(
        &h.client,
        "gcp-sa",
        &[("key.json", &service_account_key_json(&google.token_uri()))],
    )
    .await;
    for ns in namespaces {
        namespace_with_default_sa(&h.client, ns, &[]).await;
    }
    google.set_token(token.to_string(), Duration::from_secs(3600));
    apply_rc(&h.client, gcr_rc(namespaces)).await;
    let n = namespaces.len();
    h.wait_status("gcr", "all synced", |s| s.summary == Some(format!("{n}/{n}")))
        .await;
}

/// Item 5: a look-alike Secret a tenant forges in their own namespace is
/// never taken back after a restart, so no other namespace receives it.
#[tokio::test]
async fn a_forged_secret_is_never_recovered_after_a_restart() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let mut h = Harness::start().await;
    let real = canary("real");
    // "aaa" comes first in any listing.
    start_gcr(&h, &google, &real, &["aaa", "zzz"]).await;
    h.operator.stop();

    // The tenant of aaa rewrites their copy, labels and annotations kept.
    let forged_password = canary("forged");
    let mut forged = h.secrets("aaa").get("gcr").await.unwrap();
    let json =
        format!(r#"{{"auths":{{"gcr.io":{{"username":"evil","password":"{forged_password}","auth":"ZXZpbA=="}}}}}}"#);
    forged.data = Some([(".dockerconfigjson".to_string(), ByteString(json.into_bytes()))].into());
    forged.metadata.managed_fields = None;
    h.secrets("aaa")
        .replace("gcr", &PostParams::default(), &forged)
        .await
        .unwrap();
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

/// Item 6: a restart during a provider outage keeps the still-valid
/// credential: status keeps its expiry, new namespaces still get it.
#[tokio::test]
async fn a_restart_during_an_outage_keeps_the_valid_credential() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let mut h = Harness::start().await;
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

/// Item 8: a provider that hands back the same token and expiry at renewal
/// time (GKE's metadata server) is asked at most once a minute, and status
/// is not rewritten for nothing.
#[tokio::test]
async fn a_provider_repeating_its_token_is_not_hammered() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let h = Harness::start().await;
    let token = canary("cached");
    // Renewal due after 100 s (a third before the expiry at 150 s); every
    // later answer is the same token with the same expiry.
    google.cache_token(token.clone(), Duration::from_secs(150));
    put_secret(
        &h.client,
        "gcp-sa",
        &[("key.json", &service_account_key_json(&google.token_uri()))],
    )
    .await;
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

/// Item 14: a selector that would silently match nothing is InvalidSpec, naming the field.
#[tokio::test]
async fn an_invalid_label_selector_is_reported_with_its_field() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]}}}),
    )
    .await;
    let status = h
        .wait_status("hub", "InvalidSpec", |s| {
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

/// Item 10: a namespace whose writes are denied does not block deletion
/// forever; what could not be cleaned is reported.
#[tokio::test]
async fn deletion_finishes_and_reports_what_it_could_not_clean() {
    let h = Harness::start().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "locked", &[]).await;
    namespace_with_default_sa(&h.client, "free", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["locked", "free"]}})).await;
    h.wait_status("hub", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;
    freeze_secrets(&h.client, "locked").await;

    let started = Instant::now();
    delete_rc(&h.client, "hub").await;
    h.wait_secret_gone("free", "hub").await;
    eventually(Duration::from_secs(180), "the RegistryCredential to be gone", || {
        let api = h.rcs();
        async move { api.get_opt("hub").await.ok()?.is_none().then_some(()) }
    })
    .await;
    println!(
        "deletion with a denied namespace finished after {:?}",
        started.elapsed()
    );
    let events: Api<Event> = Api::all(h.client.clone());
    let list = events.list(&Default::default()).await.unwrap();
    let report = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("CleanupIncomplete"))
        .expect("a CleanupIncomplete Event");
    assert!(
        report.note.as_deref().unwrap_or_default().contains("locked/hub"),
        "{:?}",
        report.note
    );
    assert!(
        h.secrets("locked").get_opt("hub").await.unwrap().is_some(),
        "the denied Secret stays"
    );
}
