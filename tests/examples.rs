//! The README's quick start and the examples, applied verbatim with the
//! source Secrets their comments tell users to create, issue and sync, and
//! never touch those sources. Each test targets every namespace (or needs
//! the operator's environment), so each has a control plane of its own.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use regcred::api::{PullAuthResult, RegistryCredential};
use regcred_testenv::eventually;
use regcred_testenv::fakes::google::TokenServer;
use serde_json::json;
use support::*;

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

/// Create the RegistryCredentials of a YAML stream, as `kubectl create -f`
/// would; their names, in order.
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

/// How many namespaces there are: what a credential without a target selects.
async fn namespace_count(client: &Client) -> u32 {
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    namespaces.items.len() as u32
}

/// An applied example's status once it is Issued and Synced and a pull-auth
/// check has answered; printed with the time since `started`.
async fn issued_synced_and_checked(
    h: &Harness,
    name: &str,
    started: Instant,
) -> regcred::api::RegistryCredentialStatus {
    let status = h
        .wait_status(name, "Issued, Synced and a pull-auth result", |s| {
            is_condition(s, "Issued", "True")
                && is_condition(s, "Synced", "True")
                && s.pull_auth
                    .as_ref()
                    .is_some_and(|p| p.result != PullAuthResult::Unknown)
        })
        .await;
    println!(
        "{name}: {} after {:?}, Ready {} {}",
        status.summary.as_deref().unwrap_or_default(),
        started.elapsed(),
        condition(&status, "Ready").status,
        condition(&status, "Ready").reason
    );
    status
}

/// The README's quick start and the static examples, verbatim with
/// the source Secrets they name in the credentials namespace, sync every
/// namespace but the credentials namespace; `Adopt` never takes a source.
#[tokio::test]
async fn readme_quick_start_and_static_examples_sync_and_never_touch_their_sources() {
    let h = Harness::confined().await;
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
    // The confined operator runs with the chart's --excluded-namespaces=kube-system:
    // whatever an example selects, kube-system is never a target.
    let all_but_kube_system = namespace_count(&h.client).await - 1;
    let mut names = apply_yaml(&h.client, &readme_quick_start()).await;
    assert_eq!(names, ["dockerhub"]);
    // examples/static-dockerhub.yaml has the quick start's name: it runs in
    // a test of its own (the_dockerhub_example_applied_verbatim_...).
    names.extend(apply_yaml(&h.client, include_str!("../examples/static-dockerconfigjson.yaml")).await);

    for name in &names {
        let status = h
            .wait_status(name, "Issued and Synced", |s| {
                is_condition(s, "Issued", "True") && is_condition(s, "Synced", "True")
            })
            .await;
        assert_eq!(status.namespaces.targeted, status.namespaces.synced, "{name}");
        assert_eq!(
            status.namespaces.targeted,
            all_but_kube_system - 1,
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

/// examples/static-dockerhub.yaml verbatim, with the source Secret
/// its comment tells to create, issues and syncs every namespace but the
/// credentials namespace, and leaves its source alone.
#[tokio::test]
async fn the_dockerhub_example_applied_verbatim_syncs_every_namespace_and_leaves_its_source() {
    let h = Harness::confined().await;
    // `kubectl -n regcred-system create secret generic dockerhub --from-literal=username=myuser --from-literal=password=dckr_pat_...`
    put_source_secret(&h.client, "dockerhub", "myuser", "dckr_pat_example").await;
    for ns in ["app-a", "app-b"] {
        namespace_with_default_sa(&h.client, ns, &[]).await;
    }
    let all = namespace_count(&h.client).await;
    let started = Instant::now();
    let names = apply_yaml(&h.client, include_str!("../examples/static-dockerhub.yaml")).await;
    assert_eq!(names, ["dockerhub"]);
    let status = issued_synced_and_checked(&h, "dockerhub", started).await;
    // No target in the example: every namespace but the credentials namespace
    // and kube-system (the chart's --excluded-namespaces, which the confined
    // operator runs with).
    assert_eq!(status.namespaces.targeted, all - 2);
    assert!(h.secrets("kube-system").get_opt("dockerhub").await.unwrap().is_none());
    assert_eq!(status.namespaces.synced, status.namespaces.targeted);
    assert!(status.failed_namespaces.is_empty(), "{:?}", status.failed_namespaces);
    // The example turns the pull-auth check on (healthCheck.image), and this
    // sandbox is offline: registry-1.docker.io does not resolve, so the check
    // can only say Unreachable, which makes PullAuthHealthy and therefore
    // Ready False with reason Unreachable. Issued and Synced True is all of
    // "Ready" that can be had here; with network access Docker Hub would
    // answer Unauthorized to this made-up token instead.
    let pull = status.pull_auth.as_ref().unwrap();
    assert_eq!(pull.result, PullAuthResult::Unreachable, "{}", pull.message);
    assert_eq!(pull.registry.as_deref(), Some("docker.io"));
    assert_eq!(condition(&status, "PullAuthHealthy").status, "False");
    let ready = condition(&status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Unreachable"));

    for ns in ["app-a", "app-b", "default"] {
        let s = h.secrets(ns).get("dockerhub").await.unwrap();
        assert_eq!(password_for(&s, HUB).as_deref(), Some("dckr_pat_example"), "{ns}");
        let sa = h.sas(ns).get_opt("default").await.unwrap();
        if let Some(sa) = sa {
            assert_eq!(pull_secret_names(&sa), ["dockerhub"], "{ns}");
        }
    }
    let source = h.secrets(CREDS_NS).get("dockerhub").await.unwrap();
    assert_eq!(source.type_.as_deref(), Some("Opaque"), "the source is left as it was");
    assert!(!source.labels().contains_key("app.kubernetes.io/managed-by"));

    delete_rc(&h.client, "dockerhub").await;
    h.wait_secret_gone("app-a", "dockerhub").await;
    assert!(h.secrets(CREDS_NS).get_opt("dockerhub").await.unwrap().is_some());
}

/// The cloud examples: examples/ecr-static-keys.yaml and
/// examples/gcr-service-account-key.yaml applied verbatim, with the source
/// Secrets they name, issue and sync. Only what the test bed must provide
/// is substituted, outside the YAML: the AWS endpoint is moto, given to the
/// operator as `AWS_ENDPOINT_URL_ECR` (the example has no `endpointUrl`, as
/// a real one would not), and the service-account key's `token_uri` is the
/// Google token fake (the key file is the user's, not the example's).
#[tokio::test]
async fn the_ecr_and_gcr_examples_applied_verbatim_issue_and_sync() {
    let moto = regcred_testenv::fakes::moto::Moto::start().await.expect("moto");
    let google = TokenServer::start().await.expect("google token endpoint");
    let h = Harness::confined_with(&[], &[("AWS_ENDPOINT_URL_ECR", &moto.url())]).await;
    // The commands in the examples' comments.
    put_secret(
        &h.client,
        "aws-ecr-pull",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ],
    )
    .await;
    put_gcp_key(&h.client, "gcp-artifact-reader", &google).await;
    namespace_with_default_sa(&h.client, "app", &[]).await;
    let started = Instant::now();
    let mut names = apply_yaml(&h.client, include_str!("../examples/ecr-static-keys.yaml")).await;
    names.extend(apply_yaml(&h.client, include_str!("../examples/gcr-service-account-key.yaml")).await);
    assert_eq!(names, ["ecr-static-keys", "gcr-service-account-key"]);
    let expect = [
        ("ecr-static-keys", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "AWS"),
        ("gcr-service-account-key", "us-docker.pkg.dev", "oauth2accesstoken"),
    ];
    for (name, registry, username) in expect {
        let status = issued_synced_and_checked(&h, name, started).await;
        assert_eq!(status.registries, [registry], "{name}");
        assert!(status.not_after.is_some(), "{name}: a short-lived token's expiry");
        assert_eq!(status.namespaces.targeted, status.namespaces.synced, "{name}");
        assert!(
            status.failed_namespaces.is_empty(),
            "{name}: {:?}",
            status.failed_namespaces
        );
        // Checks are on by default and the registries are the real cloud
        // hosts, which do not resolve offline: Unreachable, hence Ready False
        // with that reason. Everything regcred does itself is True.
        assert_eq!(
            status.pull_auth.as_ref().unwrap().result,
            PullAuthResult::Unreachable,
            "{name}"
        );
        assert_eq!(condition(&status, "Ready").reason, "Unreachable", "{name}");
        let secret = h.secrets("app").get(name).await.unwrap();
        let config = docker_config(&secret);
        assert_eq!(config["auths"][registry]["username"], username, "{name}");
        assert!(password_for(&secret, registry).is_some_and(|p| !p.is_empty()), "{name}");
    }
    assert_eq!(moto.ecr_token_calls(), 1);
    assert_eq!(google.calls(), 1);
}
