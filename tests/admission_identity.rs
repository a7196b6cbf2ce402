//! The Pod admission webhook with `identity: PerServiceAccount` against a
//! real API server (and the Google STS fake): a pod names its
//! ServiceAccount's own Secret when the ServiceAccount names its identity,
//! before the Secret exists (admission never mints: the exchange is paced),
//! and nothing when it names none. The shared mode's admission is in
//! tests/admission.rs.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use regcred_testenv::fakes::Fault;
use regcred_testenv::fakes::google_sts::{Endpoint, GoogleSts};
use regcred_testenv::{eventually, free_port};
use serde_json::json;
use support::*;

const NS: &str = "adm-identity";
const GSA: &str = "builder@proj.iam.gserviceaccount.com";
const PROVIDER: &str = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k";
/// Long enough for a retry after the exchange's backoff.
const MINT_WAIT: Duration = Duration::from_secs(180);

/// A pod as a workload would be created (no node: nothing runs it here).
async fn create_pod(client: &Client, name: &str, service_account: &str) -> Vec<String> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "gar.regcred.test/team/app:1"}],
        },
    }))
    .unwrap();
    let admitted = Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    admitted
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .collect()
}

#[tokio::test]
async fn pods_name_their_service_accounts_own_secret_before_it_is_written_and_nothing_without_an_identity() {
    let port = free_port();
    let args = admission_args(port, "regcred-admission-identity");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Harness::start_with(&args, &[("POD_NAMESPACE", CREDS_NS)]).await;
    install_admission_webhook(&h.client, "regcred-admission-identity", port, &[]).await;
    let sts = GoogleSts::start().await.expect("Google STS fake");
    // No exchange succeeds until the test says so: the Secret cannot exist
    // when the first pod is admitted.
    sts.set_fault(
        Endpoint::Token,
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
    );
    namespace_with_default_sa(&h.client, NS, &[]).await;
    let builder: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "builder", "namespace": NS,
                     "annotations": {"iam.gke.io/gcp-service-account": GSA}},
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &builder)
        .await
        .expect("ServiceAccount builder");
    let provider = json!({"gcr": {
        "registries": ["gar.regcred.test"],
        "identity": "PerServiceAccount",
        "workloadIdentityProvider": PROVIDER,
        "stsEndpointUrl": sts.url(),
        "iamCredentialsEndpointUrl": sts.url(),
    }});
    let spec = json!({
        "provider": provider,
        "target": {"namespaces": {"names": [NS]}, "serviceAccounts": {"names": ["default", "builder"]}},
        "healthCheck": {"mode": "Disabled"},
    });
    apply_rc(&h.client, registry_credential("gar", spec)).await;
    // The operator has seen the RegistryCredential (so admission has too).
    h.wait_status("gar", "both ServiceAccounts failing", |s| {
        s.failed_service_accounts.len() == 2
    })
    .await;
    let secrets = Api::<Secret>::namespaced(h.client.clone(), NS);

    let started = Instant::now();
    assert_eq!(create_pod(&h.client, "builder-1", "builder").await, ["gar-builder"]);
    println!(
        "BENCH admission_identity first_pod_admitted_ms={}",
        started.elapsed().as_millis()
    );
    assert!(
        secrets.get_opt("gar-builder").await.unwrap().is_none(),
        "admission names the Secret before the reconcile writes it, and writes nothing itself"
    );
    assert!(
        create_pod(&h.client, "plain", "default").await.is_empty(),
        "a ServiceAccount without the annotation gets nothing"
    );

    // Once the exchange succeeds, the reconcile writes the Secret the pod names.
    sts.set_fault(Endpoint::Token, Fault::None);
    let written = Instant::now();
    eventually(MINT_WAIT, "Secret adm-identity/gar-builder written", || async {
        secrets.get_opt("gar-builder").await.ok().flatten()
    })
    .await;
    println!(
        "BENCH admission_identity secret_written_after_fault_cleared_ms={}",
        written.elapsed().as_millis()
    );
    h.wait_pull_secrets(NS, "builder", &["gar-builder"]).await;
    assert!(
        secrets.get_opt("gar-default").await.unwrap().is_none(),
        "no Secret for the ServiceAccount without an identity"
    );
    assert_eq!(
        create_pod(&h.client, "builder-2", "builder").await,
        ["gar-builder"],
        "named once, when the ServiceAccount's own list is copied too"
    );
    assert!(create_pod(&h.client, "plain-2", "default").await.is_empty());
}
