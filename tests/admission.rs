//! The Pod admission webhook against a real API server: the API server calls
//! regcred (the chart's webhook configuration, by URL), regcred answers from
//! its caches, writes a missing Secret first, never on a dry run, keeps its
//! serving certificate fresh, and never blocks a pod: with regcred stopped
//! or hung, pods are admitted unchanged within the webhook's timeout.
//!
//! Pulls on a real node are in tests/node.rs; the chart serving admission
//! through its Service in tests/chart_node.rs.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use regcred_testenv::{eventually, free_port};
use serde_json::json;
use support::*;

const TEAM: (&str, &str) = ("regcred-test/team", "a");
/// The chart's timeoutSeconds, which the rendered configuration carries.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// A pod as a workload would be created (no node: nothing runs it here).
fn pod(name: &str, labels: &[(&str, &str)], service_account: &str, own: &[&str]) -> Pod {
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut spec = json!({
        "serviceAccountName": service_account,
        "automountServiceAccountToken": false,
        "containers": [{"name": "app", "image": "docker.io/library/app:1"}],
    });
    if !own.is_empty() {
        spec["imagePullSecrets"] = own.iter().map(|n| json!({"name": n})).collect();
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

async fn create_pod(client: &Client, ns: &str, pod: &Pod, dry_run: bool) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    api.create(&pp, pod).await.expect("pod created")
}

fn named(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .collect()
}

/// RegistryCredential `hub` for namespaces labelled [`TEAM`], ServiceAccount
/// `default`; waits until it has issued (status vouches for a credential).
async fn hub_for_team(h: &Harness) {
    put_source_secret(&h.client, "hub", "admission-user", &canary("admission")).await;
    create_hub_rc(
        &h.client,
        json!({"namespaces": {"selector": {"matchLabels": {TEAM.0: TEAM.1}}}}),
    )
    .await;
    h.wait_status("hub", "a credential digest", |s| s.credential_digest.is_some())
        .await;
}

async fn secret_now(client: &Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test]
async fn pods_name_the_secret_of_the_credential_that_targets_them() {
    let port = free_port();
    let args = admission_args(port, "regcred-admission");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Harness::start_with(&args, &[("POD_NAMESPACE", CREDS_NS)]).await;
    install_admission_webhook(&h.client, "regcred-admission", port, &[]).await;
    hub_for_team(&h).await;

    // A namespace, its ServiceAccount and its pod in one go, as GitOps
    // tools apply them: the pod names the Secret, and the Secret is in the
    // namespace by the time the API server has admitted the pod.
    for i in 0..20 {
        let ns = format!("adm-new-{i:02}");
        namespace_with_default_sa(&h.client, &ns, &[TEAM]).await;
        let admitted = create_pod(&h.client, &ns, &pod("app", &[], "default", &[]), false).await;
        assert_eq!(named(&admitted), ["hub"], "{ns}");
        let secret = secret_now(&h.client, &ns, "hub").await;
        assert!(
            secret.is_some_and(|s| s.type_.as_deref() == Some("kubernetes.io/dockerconfigjson")),
            "{ns}: the Secret is there when the pod is admitted"
        );
    }

    namespace_with_default_sa(&h.client, "adm-team", &[TEAM]).await;
    h.wait_secret("adm-team", "hub", "written by the fan-out", |_| true)
        .await;
    create_service_account(&h.client, "adm-team", "builder", &[]).await;
    // The pod's own entries stay first; regcred's is appended after them
    // (the API server copies the ServiceAccount's list only into a pod that
    // names none, so such a pod would otherwise never carry it).
    let own = create_pod(&h.client, "adm-team", &pod("own", &[], "default", &["theirs"]), false).await;
    assert_eq!(named(&own), ["theirs", "hub"]);
    let again = create_pod(
        &h.client,
        "adm-team",
        &pod("again", &[], "default", &["hub", "theirs"]),
        false,
    )
    .await;
    assert_eq!(
        named(&again),
        ["hub", "theirs"],
        "nothing removed, reordered or repeated"
    );
    // Not selected, opted out, or not targeted: the pod is left as it came.
    let builder = create_pod(&h.client, "adm-team", &pod("builder", &[], "builder", &[]), false).await;
    assert!(named(&builder).is_empty(), "ServiceAccount builder is not selected");
    let out = pod("out", &[("regcred.dev/admission", "disabled")], "default", &[]);
    assert!(named(&create_pod(&h.client, "adm-team", &out, false).await).is_empty());
    namespace_with_default_sa(&h.client, "adm-out", &[TEAM, ("regcred.dev/admission", "disabled")]).await;
    assert!(named(&create_pod(&h.client, "adm-out", &pod("app", &[], "default", &[]), false).await).is_empty());
    namespace_with_default_sa(&h.client, "adm-other", &[]).await;
    assert!(named(&create_pod(&h.client, "adm-other", &pod("app", &[], "default", &[]), false).await).is_empty());
    assert!(secret_now(&h.client, "adm-other", "hub").await.is_none());

    // A body that is no AdmissionReview: allowed, never a denial or a crash.
    let ca = webhook_ca(&h.client, "regcred-admission").await;
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
        .build()
        .unwrap();
    for body in ["not json", r#"{"request": {"uid": "u-1", "object": 7}}"#] {
        let answer: serde_json::Value = http
            .post(format!("https://127.0.0.1:{port}/mutate-pods"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the webhook answers")
            .json()
            .await
            .expect("an AdmissionReview");
        assert_eq!(answer["response"]["allowed"], true, "{body}: {answer}");
    }
    let pod_after = create_pod(&h.client, "adm-team", &pod("after", &[], "default", &[]), false).await;
    assert_eq!(named(&pod_after), ["hub"], "still serving after bad input");
    assert!(
        !h.operator.logs().contains(&canary("admission")),
        "the webhook never logs Secret values"
    );
}

/// The caBundle regcred patched into the configuration `name`.
async fn webhook_ca(client: &Client, name: &str) -> Vec<u8> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let config = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .unwrap();
    config.webhooks.unwrap()[0].client_config.ca_bundle.clone().unwrap().0
}

/// A standby (another replica holds the Lease) serves admission: it writes a
/// new namespace's Secret itself, from a copy status vouches for, and on a
/// dry run writes nothing. Then regcred hangs, then stops: pods are
/// admitted unchanged, within the webhook's timeout, and at once.
#[tokio::test]
async fn a_standby_serves_admission_a_dry_run_writes_nothing_and_a_stopped_regcred_blocks_nothing() {
    let port = free_port();
    let mut args = admission_args(port, "regcred-standby");
    args.extend(["--leader-election".to_string(), "--lease-name=adm-standby".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("POD_NAMESPACE", CREDS_NS)];
    let mut h = Harness::start_with(&args, &env).await;
    install_admission_webhook(&h.client, "regcred-standby", port, &[]).await;
    hub_for_team(&h).await;
    namespace_with_default_sa(&h.client, "stb-seed", &[TEAM]).await;
    let seed = h
        .wait_secret("stb-seed", "hub", "written by the leader", |_| true)
        .await;

    // The leader stops (releasing the Lease), another holder takes the
    // Lease for an hour, and regcred comes back as a standby.
    h.operator.stop();
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), CREDS_NS);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "adm-standby"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now},
    }))
    .unwrap();
    leases
        .replace("adm-standby", &PostParams::default(), &{
            let mut l = lease;
            l.metadata.resource_version = leases.get("adm-standby").await.unwrap().resource_version();
            l
        })
        .await
        .expect("the Lease taken by someone else");
    h.operator = start_operator_with(&h.cp, &args, &env);
    namespace_with_default_sa(&h.client, "stb-ready", &[TEAM]).await;
    eventually(WAIT, "the standby answers admission", || {
        let client = h.client.clone();
        async move {
            let p = create_pod(&client, "stb-ready", &pod("probe", &[], "default", &[]), true).await;
            (named(&p) == ["hub"]).then_some(())
        }
    })
    .await;
    assert!(h.operator.logs().contains("waiting to become the leader"), "a standby");

    // `kubectl create --dry-run=server`: the answer, and nothing written.
    namespace_with_default_sa(&h.client, "stb-new", &[TEAM]).await;
    let dry = create_pod(&h.client, "stb-new", &pod("app", &[], "default", &[]), true).await;
    assert_eq!(named(&dry), ["hub"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        secret_now(&h.client, "stb-new", "hub").await.is_none(),
        "a dry run writes nothing"
    );
    // The real thing: the standby writes the Secret before the pod is admitted.
    let admitted = create_pod(&h.client, "stb-new", &pod("app", &[], "default", &[]), false).await;
    assert_eq!(named(&admitted), ["hub"]);
    let written = secret_now(&h.client, "stb-new", "hub")
        .await
        .expect("written by admission");
    assert_eq!(written.data, seed.data, "the credential status vouches for");
    assert_eq!(written.labels(), seed.labels());

    // Hung (SIGSTOP): the API server waits out the timeout, then admits.
    h.operator.freeze();
    let hung = time_pods(&h.client, "stb-new", "hung", 3).await;
    h.operator.thaw();
    // Stopped: connection refused, admitted at once.
    h.operator.kill();
    let stopped = time_pods(&h.client, "stb-new", "stopped", 20).await;
    let max = |t: &[Duration]| t.iter().max().copied().unwrap_or_default();
    let median = |t: &[Duration]| {
        let mut t = t.to_vec();
        t.sort();
        t[t.len() / 2]
    };
    println!(
        "BENCH admission: pod creation with regcred hung: max {:?} (timeoutSeconds {:?}); with regcred stopped: median {:?}, max {:?}",
        max(&hung),
        WEBHOOK_TIMEOUT,
        median(&stopped),
        max(&stopped)
    );
    assert!(max(&hung) < WEBHOOK_TIMEOUT + Duration::from_secs(2), "{hung:?}");
    assert!(max(&stopped) < Duration::from_secs(1), "{stopped:?}");
}

/// Create `n` pods named `<prefix>-<i>`; how long each creation took. Each
/// is admitted, unchanged (nobody answered for regcred).
async fn time_pods(client: &Client, ns: &str, prefix: &str, n: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let p = create_pod(client, ns, &pod(&format!("{prefix}-{i}"), &[], "default", &[]), false).await;
        took.push(started.elapsed());
        if !named(&p).is_empty() {
            let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
                .get("default")
                .await
                .ok()
                .and_then(|sa| sa.image_pull_secrets);
            panic!(
                "pod {ns}/{prefix}-{i} was changed at admission: it names {:?} after {:?}; ServiceAccount default references {sa:?}",
                named(&p),
                started.elapsed()
            );
        }
    }
    took
}

/// The serving certificate renews every 20 s (30 s lifetime) while pods are
/// created four times a second: no pod misses its Secret, and fresh TLS
/// handshakes see each new certificate, trusted by the unchanged caBundle.
#[tokio::test]
async fn a_certificate_rotation_during_pod_creation_loses_no_admission() {
    let port = free_port();
    let mut args = admission_args(port, "regcred-rotation");
    args.push("--admission-cert-validity=30s".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Harness::start_with(&args, &[("POD_NAMESPACE", CREDS_NS)]).await;
    install_admission_webhook(&h.client, "regcred-rotation", port, &[]).await;
    hub_for_team(&h).await;
    namespace_with_default_sa(&h.client, "rot", &[TEAM]).await;
    h.wait_secret("rot", "hub", "written by the fan-out", |_| true).await;
    let ca = webhook_ca(&h.client, "regcred-rotation").await;

    let mut served = std::collections::BTreeSet::new();
    let mut without = Vec::new();
    let mut created = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(50) {
        if created % 20 == 0 {
            served.insert(served_certificate(port, &ca).await);
        }
        let name = format!("p-{created:03}");
        let p = create_pod(&h.client, "rot", &pod(&name, &[], "default", &[]), false).await;
        if named(&p) != ["hub"] {
            without.push(name);
        }
        created += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "BENCH admission: {created} pods created across {} serving certificates; {} admitted without the Secret",
        served.len(),
        without.len()
    );
    assert!(
        served.len() >= 2,
        "the certificate rotated during the run: {}",
        served.len()
    );
    assert!(without.is_empty(), "admitted without the Secret: {without:?}");
    assert_eq!(
        webhook_ca(&h.client, "regcred-rotation").await,
        ca,
        "the caBundle stays"
    );
}

/// The certificate the webhook presents to a new connection, verified
/// against `ca` (the caBundle); its DER.
async fn served_certificate(port: u16, ca: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("the served certificate is trusted by the caBundle");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
