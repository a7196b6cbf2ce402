//! The chart's confinement (charts/regcred/templates/validatingadmissionpolicy.yaml)
//! enforced by a real kube-apiserver: requests made with regcred's
//! ServiceAccount token are denied, with the policy's message, whenever they
//! write what is not regcred's (an Opaque or TLS Secret, a Secret without
//! regcred's label, one in kube-system, another tool's fields of a
//! ServiceAccount, a pod no controller recreates), and everything regcred
//! does write passes. A denial met by the running operator is reported in
//! status as NamespaceWriteFailed with the policy's message.

mod support;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;

/// A target namespace of the tests below.
const TEAM: &str = "team-a";

fn secret(value: Value) -> Secret {
    serde_json::from_value(value).expect("a Secret")
}

/// A `.dockerconfigjson` Secret `name`, with `labels`.
fn docker_secret(name: &str, labels: Value) -> Secret {
    secret(json!({
        "metadata": {"name": name, "labels": labels},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": "{\"auths\":{}}"},
    }))
}

/// regcred's labels on a Secret of RegistryCredential `rc`.
fn managed(rc: &str) -> Value {
    json!({"app.kubernetes.io/managed-by": "regcred", "regcred.dev/credential": rc})
}

fn merge(patch: Value) -> Patch<Value> {
    Patch::Merge(patch)
}

/// Assert `result` is a denial whose message contains every one of `says`.
fn assert_denied<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>, says: &[&str]) {
    let message = denial(what, result);
    println!("denied, as it should be: {what}: {message}");
    for s in says {
        assert!(message.contains(s), "{what}: the denial does not say {s:?}: {message}");
    }
}

/// Assert `result` succeeded.
fn assert_allowed<T>(what: &str, result: Result<T, kube::Error>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: regcred's own write was refused: {e}"))
}

/// The control plane with the chart's identity and confinement (diagnosis
/// able to recreate pods, so that the pod rule is in force), an admin
/// client and a client with regcred's ServiceAccount token.
async fn confined_plane() -> (regcred_testenv::ControlPlane, Client, Client) {
    let cp = Harness::control_plane().await;
    let kubeconfig = confine(&cp, &["diagnosis.recreatePods=true"]).await;
    let admin = cp.client().await.unwrap();
    let regcred = cp.client_from(&kubeconfig).await.unwrap();
    namespace_with_default_sa(&admin, TEAM, &[]).await;
    (cp, admin, regcred)
}

/// Secrets that are not regcred's are denied, with the policy's message:
/// any type but `.dockerconfigjson`, one without regcred's label, any in
/// kube-system or the credentials namespace.
#[tokio::test]
async fn regcreds_token_is_denied_secrets_not_its_own() {
    let (_cp, admin, regcred) = confined_plane().await;
    let theirs: Api<Secret> = Api::namespaced(admin.clone(), TEAM);
    let ours: Api<Secret> = Api::namespaced(regcred.clone(), TEAM);
    let pp = PostParams::default();
    let mp = PatchParams::default();

    // Denied: an Opaque Secret, even labelled as regcred's.
    let opaque = secret(json!({"metadata": {"name": "opaque", "labels": managed("hub")}, "type": "Opaque"}));
    assert_denied(
        "an Opaque Secret",
        ours.create(&pp, &opaque).await,
        &["kubernetes.io/dockerconfigjson", "CREATE", "team-a/opaque", "Opaque"],
    );
    // Denied: a .dockerconfigjson Secret without regcred's label.
    assert_denied(
        "a Secret without the label",
        ours.create(&pp, &docker_secret("unlabelled", json!({}))).await,
        &["app.kubernetes.io/managed-by=regcred", "team-a/unlabelled"],
    );
    // Denied: a TLS Secret in a target namespace, created, patched or deleted.
    let tls = secret(json!({
        "metadata": {"name": "ingress-tls"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "", "tls.key": ""},
    }));
    theirs.create(&pp, &tls).await.unwrap();
    assert_denied(
        "a TLS Secret created",
        ours.create(&pp, &secret(json!({"metadata": {"name": "tls-2", "labels": managed("hub")}, "type": "kubernetes.io/tls", "stringData": {"tls.crt": "", "tls.key": ""}}))).await,
        &["kubernetes.io/dockerconfigjson", "kubernetes.io/tls"],
    );
    assert_denied(
        "a TLS Secret patched",
        ours.patch("ingress-tls", &mp, &merge(json!({"stringData": {"tls.key": "stolen"}})))
            .await,
        &[
            "kubernetes.io/dockerconfigjson",
            "UPDATE",
            "team-a/ingress-tls",
            "kubernetes.io/tls",
        ],
    );
    assert_denied(
        "a TLS Secret deleted",
        ours.delete("ingress-tls", &DeleteParams::default()).await,
        &["kubernetes.io/dockerconfigjson", "DELETE", "team-a/ingress-tls"],
    );
    // Nobody else is confined: the admin deletes what regcred may not.
    theirs.delete("ingress-tls", &DeleteParams::default()).await.unwrap();
    // Denied: a managed-looking Secret in kube-system or the credentials namespace.
    for ns in ["kube-system", CREDS_NS] {
        let api: Api<Secret> = Api::namespaced(regcred.clone(), ns);
        assert_denied(
            &format!("a Secret in {ns}"),
            api.create(&pp, &docker_secret("hub", managed("hub"))).await,
            &["may not write Secrets in namespace", ns],
        );
    }
}

/// Secrets regcred writes pass: its own created, updated and deleted, one
/// it adopts, and its webhook certificate created and replaced.
#[tokio::test]
async fn regcreds_token_writes_its_own_secrets_adopts_and_renews_its_certificate() {
    let (_cp, admin, regcred) = confined_plane().await;
    let theirs: Api<Secret> = Api::namespaced(admin.clone(), TEAM);
    let ours: Api<Secret> = Api::namespaced(regcred.clone(), TEAM);
    let pp = PostParams::default();
    let mp = PatchParams::default();
    // Allowed: a managed Secret created, updated, and deleted.
    assert_allowed("create", ours.create(&pp, &docker_secret("hub", managed("hub"))).await);
    let update = json!({"stringData": {".dockerconfigjson": "{\"auths\":{\"x\":{}}}"}, "metadata": {"annotations": {"regcred.dev/not-after": "x"}}});
    assert_allowed("update", ours.patch("hub", &mp, &merge(update)).await);
    // Denied: the label taken off (the Secret would no longer be regcred's).
    assert_denied(
        "the label removed",
        ours.patch(
            "hub",
            &mp,
            &merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}})),
        )
        .await,
        &["app.kubernetes.io/managed-by=regcred", "would not be labelled"],
    );
    assert_allowed("delete", ours.delete("hub", &DeleteParams::default()).await);

    // Adoption: an unlabelled .dockerconfigjson Secret gaining the label passes;
    // deleting or changing one without taking it does not.
    theirs
        .create(&pp, &docker_secret("adoptable", json!({"team": "a"})))
        .await
        .unwrap();
    assert_denied(
        "a foreign .dockerconfigjson Secret changed without adopting it",
        ours.patch(
            "adoptable",
            &mp,
            &merge(json!({"stringData": {".dockerconfigjson": "{}"}})),
        )
        .await,
        &["app.kubernetes.io/managed-by=regcred", "which is not regcred's"],
    );
    assert_denied(
        "a foreign .dockerconfigjson Secret deleted",
        ours.delete("adoptable", &DeleteParams::default()).await,
        &["app.kubernetes.io/managed-by=regcred", "DELETE"],
    );
    let adopt = json!({"metadata": {"labels": managed("hub")}, "stringData": {".dockerconfigjson": "{}"}});
    let adopted = assert_allowed("adoption", ours.patch("adoptable", &mp, &merge(adopt)).await);
    assert_eq!(adopted.labels()["team"], "a", "the other labels stay");

    // regcred's webhook certificate: created and replaced in its namespace, never deleted.
    let certs: Api<Secret> = Api::namespaced(regcred.clone(), CREDS_NS);
    let cert = secret(json!({
        "metadata": {"name": "regcred-webhook-tls", "labels": {"app.kubernetes.io/part-of": "regcred"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "a", "tls.key": "b"},
    }));
    let mut created = assert_allowed("the certificate created", certs.create(&pp, &cert).await);
    created.string_data = Some([("tls.crt".to_string(), "c".to_string())].into());
    created.metadata.managed_fields = None;
    assert_allowed(
        "the certificate replaced",
        certs.replace("regcred-webhook-tls", &pp, &created).await,
    );
    assert_denied(
        "the certificate deleted",
        certs.delete("regcred-webhook-tls", &DeleteParams::default()).await,
        &["may not write Secrets in namespace regcred-system"],
    );
    let mut other = cert.clone();
    other.metadata.name = Some("another-tls".into());
    assert_denied(
        "another TLS Secret in regcred's namespace",
        certs.create(&pp, &other).await,
        &["may not write Secrets in namespace regcred-system"],
    );
}

/// ServiceAccounts: regcred changes only the `imagePullSecrets` entries it
/// records, and its record; another tool's annotation, the `secrets` field
/// and the rest are denied, with the policy's message.
#[tokio::test]
async fn regcreds_token_changes_only_its_links_on_service_accounts() {
    let (_cp, admin, regcred) = confined_plane().await;
    let theirs: Api<ServiceAccount> = Api::namespaced(admin.clone(), TEAM);
    let ours: Api<ServiceAccount> = Api::namespaced(regcred.clone(), TEAM);
    let mp = PatchParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "builder", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/a"}},
        "imagePullSecrets": [{"name": "foreign"}],
        "secrets": [{"name": "builder-token"}],
    }))
    .unwrap();
    theirs.create(&PostParams::default(), &sa).await.unwrap();

    // Allowed: regcred's entry added with its record, as regcred patches.
    let link = json!({
        "metadata": {"annotations": {"regcred.dev/pull-secrets": "hub=hub"}},
        "imagePullSecrets": [{"name": "foreign"}, {"name": "hub"}],
    });
    assert_allowed("link", ours.patch("builder", &mp, &merge(link)).await);

    // Denied: the secrets field, another tool's annotation, a label.
    assert_denied(
        "the secrets field changed",
        ours.patch("builder", &mp, &merge(json!({"secrets": [{"name": "stolen-token"}]})))
            .await,
        &["imagePullSecrets", "secrets", "team-a/builder"],
    );
    assert_denied(
        "another tool's annotation changed",
        ours.patch(
            "builder",
            &mp,
            &merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::2:role/admin"}}})),
        )
        .await,
        &["only its own annotation regcred.dev/pull-secrets", "team-a/builder"],
    );
    assert_denied(
        "an annotation added",
        ours.patch(
            "builder",
            &mp,
            &merge(json!({"metadata": {"annotations": {"example.com/x": "y"}}})),
        )
        .await,
        &["only its own annotation regcred.dev/pull-secrets"],
    );
    assert_denied(
        "a label changed",
        ours.patch("builder", &mp, &merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await,
        &["labels"],
    );
    assert_denied(
        "automountServiceAccountToken changed",
        ours.patch("builder", &mp, &merge(json!({"automountServiceAccountToken": true})))
            .await,
        &["automountServiceAccountToken"],
    );
    // Denied: an entry that is not regcred's, removed or added unrecorded.
    assert_denied(
        "a foreign entry removed",
        ours.patch("builder", &mp, &merge(json!({"imagePullSecrets": [{"name": "hub"}]})))
            .await,
        &["imagePullSecrets entries its annotation regcred.dev/pull-secrets records"],
    );
    assert_denied(
        "an unrecorded entry added",
        ours.patch(
            "builder",
            &mp,
            &merge(json!({"imagePullSecrets": [{"name": "foreign"}, {"name": "hub"}, {"name": "evil"}]})),
        )
        .await,
        &["imagePullSecrets entries its annotation regcred.dev/pull-secrets records"],
    );
    // Allowed: regcred's entry and record removed.
    let unlink = json!({
        "metadata": {"annotations": {"regcred.dev/pull-secrets": null}},
        "imagePullSecrets": [{"name": "foreign"}],
    });
    let unlinked = assert_allowed("unlink", ours.patch("builder", &mp, &merge(unlink)).await);
    assert_eq!(pull_secret_names(&unlinked), ["foreign"]);
    assert_eq!(unlinked.secrets.as_ref().map(Vec::len), Some(1));
    // A ServiceAccount in kube-system is never regcred's to change.
    create_service_account(&admin, "kube-system", "builder", &[]).await;
    let system: Api<ServiceAccount> = Api::namespaced(regcred.clone(), "kube-system");
    let link = json!({
        "metadata": {"annotations": {"regcred.dev/pull-secrets": "hub=hub"}},
        "imagePullSecrets": [{"name": "hub"}],
    });
    assert_denied(
        "a ServiceAccount in kube-system",
        system.patch("builder", &mp, &merge(link)).await,
        &["may not change ServiceAccounts in namespace kube-system"],
    );
}

/// Pods (with diagnosis.recreatePods): a bare pod would be gone for good,
/// and is not deleted; one of a ReplicaSet comes back, and is.
#[tokio::test]
async fn regcreds_token_deletes_only_pods_a_controller_recreates() {
    let (_cp, admin, regcred) = confined_plane().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), TEAM);
    let pod = |name: &str, owners: Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owners},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("bare", json!([])))
        .await
        .unwrap();
    let owned = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-1", "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]);
    pods.create(&PostParams::default(), &pod("replica", owned))
        .await
        .unwrap();
    let regcreds_pods: Api<Pod> = Api::namespaced(regcred.clone(), TEAM);
    assert_denied(
        "a bare pod deleted",
        regcreds_pods.delete("bare", &DeleteParams::default()).await,
        &[
            "may only delete a pod its ReplicaSet, StatefulSet, DaemonSet or Job recreates",
            "team-a/bare",
        ],
    );
    assert_allowed(
        "a ReplicaSet's pod deleted",
        regcreds_pods.delete("replica", &DeleteParams::default()).await,
    );
}

/// A write the running operator is denied by the policy is reported in
/// status as NamespaceWriteFailed with the policy's message: under
/// existingSecretPolicy Adopt, a foreign Opaque Secret of the Secret's name
/// cannot be taken (its type is immutable, so taking it would mean
/// deleting it), and kube-system is never a target; the other namespace is
/// served.
#[tokio::test]
async fn a_policy_denial_is_reported_as_namespace_write_failed_with_its_message() {
    let h = Harness::confined().await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    for ns in ["taken", "served"] {
        namespace_with_default_sa(&h.client, ns, &[]).await;
    }
    let foreign = secret(json!({"metadata": {"name": "hub"}, "type": "Opaque", "stringData": {"config": "theirs"}}));
    h.secrets("taken")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"names": ["taken", "kube-system", "served"]}, "existingSecretPolicy": "Adopt"}),
    )
    .await;
    h.wait_pull_secrets("served", "default", &["hub"]).await;
    let status = h
        .wait_status("hub", "taken reported", |s| !s.failed_namespaces.is_empty())
        .await;
    println!("{:#?}", status.failed_namespaces);
    let [taken] = status.failed_namespaces.as_slice() else {
        panic!("only taken fails: {:?}", status.failed_namespaces)
    };
    assert_eq!(taken.namespace, "taken");
    assert_eq!(taken.reason, "NamespaceWriteFailed");
    assert!(
        taken
            .message
            .contains("regcred may write only Secrets of type kubernetes.io/dockerconfigjson")
            && taken.message.contains("taken/hub"),
        "{}",
        taken.message
    );
    // kube-system, named outright, is in the chart's confinement.excludedNamespaces:
    // the operator runs with --excluded-namespaces=kube-system and does not
    // even try (the policy would deny it: regcreds_token_is_denied_secrets_not_its_own).
    assert_eq!(status.namespaces.targeted, 2, "taken and served, not kube-system");
    let kept = h.secrets("taken").get("hub").await.unwrap();
    assert_eq!(
        kept.type_.as_deref(),
        Some("Opaque"),
        "the foreign Secret stays as it was"
    );
    assert!(h.secrets("kube-system").get_opt("hub").await.unwrap().is_none());
}

/// RegistryCredentials: regcred adds and removes its finalizer and nothing
/// else; a changed spec is denied, with the policy's message.
#[tokio::test]
async fn regcreds_token_changes_only_its_finalizer_on_registry_credentials() {
    use regcred::api::RegistryCredential;
    let (_cp, admin, regcred) = confined_plane().await;
    apply_rc(
        &admin,
        static_rc("hub", "docker.io", "hub", json!({"namespaces": {"names": [TEAM]}})),
    )
    .await;
    let rcs: Api<RegistryCredential> = Api::all(regcred.clone());
    let mp = PatchParams::default();
    let add = json!({"metadata": {"finalizers": ["regcred.dev/cleanup"]}});
    assert_allowed("the finalizer added", rcs.patch("hub", &mp, &merge(add)).await);
    assert_denied(
        "the spec changed",
        rcs.patch(
            "hub",
            &mp,
            &merge(json!({"spec": {"target": {"namespaces": {"names": [TEAM, "kube-public"]}}}})),
        )
        .await,
        &["only its finalizer regcred.dev/cleanup", "UPDATE", "hub"],
    );
    let remove = json!({"metadata": {"finalizers": null}});
    assert_allowed("the finalizer removed", rcs.patch("hub", &mp, &merge(remove)).await);
}

/// The webhook configuration: regcred patches its caBundle, and nothing else.
#[tokio::test]
async fn regcreds_token_changes_only_the_ca_bundle_of_its_webhook() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let (_cp, admin, regcred) = confined_plane().await;
    let objects = render_chart(&[]);
    apply_objects(&admin, &of_kind(&objects, "MutatingWebhookConfiguration")).await;
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(regcred.clone());
    let mp = PatchParams::default();
    let ca = json!([{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "LS0tLS0K"}]);
    let patch = |ops: Value| Patch::<()>::Json(serde_json::from_value(ops).unwrap());
    assert_allowed("the caBundle patched", mwcs.patch("regcred", &mp, &patch(ca)).await);
    let url = json!([{"op": "replace", "path": "/webhooks/0/rules/0/resources", "value": ["pods", "secrets"]}]);
    assert_denied(
        "the rules widened",
        mwcs.patch("regcred", &mp, &patch(url)).await,
        &["only the caBundle of its MutatingWebhookConfiguration regcred"],
    );
}

/// ServiceAccount tokens (`identity: PerServiceAccount`): regcred may ask
/// for one only for a cloud audience (confinement.tokenAudiences or a
/// Google pool), for at most an hour, outside the excluded namespaces;
/// never for the API server, whose token would let it act as that
/// ServiceAccount in the cluster.
#[tokio::test]
async fn regcreds_token_requests_only_cloud_audience_tokens() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let (_cp, admin, regcred) = confined_plane().await;
    create_service_account(&admin, "kube-system", "default", &[]).await;
    let request = |audiences: &[&str], seconds: i64| TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(seconds),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let pp = PostParams::default();
    let team: Api<ServiceAccount> = Api::namespaced(regcred.clone(), TEAM);
    for audience in [
        "sts.amazonaws.com",
        "api://AzureADTokenExchange",
        "https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/cluster",
    ] {
        let answer = assert_allowed(
            audience,
            team.create_token_request("default", &pp, &request(&[audience], 600))
                .await,
        );
        let token = answer.status.expect("a token").token;
        assert!(!token.is_empty(), "{audience}: an empty token");
    }
    assert_denied(
        "a token for the API server",
        team.create_token_request(
            "default",
            &pp,
            &request(&["https://kubernetes.default.svc.cluster.local"], 600),
        )
        .await,
        &["only for one cloud audience", "default"],
    );
    assert_denied(
        "a token with the API server's default audience (none named)",
        team.create_token_request("default", &pp, &request(&[], 600)).await,
        &["only for one cloud audience"],
    );
    assert_denied(
        "two audiences",
        team.create_token_request("default", &pp, &request(&["sts.amazonaws.com", "kubernetes"], 600))
            .await,
        &["only for one cloud audience"],
    );
    assert_denied(
        "a day-long token",
        team.create_token_request("default", &pp, &request(&["sts.amazonaws.com"], 86_400))
            .await,
        &["at most 3600 seconds"],
    );
    let system: Api<ServiceAccount> = Api::namespaced(regcred.clone(), "kube-system");
    assert_denied(
        "a token in kube-system",
        system
            .create_token_request("default", &pp, &request(&["sts.amazonaws.com"], 600))
            .await,
        &["may not request ServiceAccount tokens in namespace kube-system"],
    );
}
