//! The test bed of the real-node tests (tests/node.rs, tests/diagnose.rs,
//! tests/diagnose_containerd2.rs): one control plane, node and operator
//! shared by the tests of a binary running at once, gone with the last of
//! them. The node runs [`RUNTIME`].

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use regcred_testenv::{ControlPlane, Node, NodeOptions, Operator, Runtime};

use regcred_testenv::fakes::google::TokenServer;
use regcred_testenv::registry::{Auth, Registry};

use super::{
    CREDS_NS, Cluster, app_image, apply_rc, create_namespace, namespace_with_default_sa, print_log_tail, put_gcp_key,
    rc, start_operator_with,
};

/// How long a pod may take to pull and run, or to fail its pull.
pub const POD_TIMEOUT: Duration = Duration::from_secs(90);

/// The container runtime of this test binary's node: containerd 2.x in the
/// test crates whose name ends in `_containerd2` (which compile another
/// crate's tests again, e.g. tests/diagnose_containerd2.rs), Debian's
/// containerd 1.6 in every other.
pub const RUNTIME: Runtime = if ends_with(env!("CARGO_CRATE_NAME").as_bytes(), b"_containerd2") {
    Runtime::Containerd2
} else {
    Runtime::Containerd16
};

const fn ends_with(s: &[u8], suffix: &[u8]) -> bool {
    if s.len() < suffix.len() {
        return false;
    }
    let offset = s.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if s[offset + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The label of the namespaces whose pods the bed's admission webhook sees.
pub const ADMISSION_LABEL: (&str, &str) = ("regcred-test/admission", "on");
const ADMISSION_CONFIG: &str = "regcred-node";

/// The control plane, node and operator shared by the tests running at once.
pub struct Bed {
    // Field order is drop order.
    pub operator: Operator,
    /// The operator's `/metrics` URL.
    pub metrics: String,
    pub node: Node,
    pub cp: ControlPlane,
}

/// The running bed, or a new one if no test holds it any more.
pub async fn bed() -> Arc<Bed> {
    static BED: tokio::sync::Mutex<Weak<Bed>> = tokio::sync::Mutex::const_new(Weak::new());
    let mut shared = BED.lock().await;
    if let Some(bed) = shared.upgrade() {
        return bed;
    }
    let started = Instant::now();
    let cp = ControlPlane::start_for_nodes().await.expect("control plane for a node");
    cp.install_crd(&regcred::api::crd_yaml()).await.expect("CRD installs");
    let client = cp.client().await.unwrap();
    create_namespace(&client, CREDS_NS, &[]).await;
    let node_started = Instant::now();
    // As on a Kubernetes 1.35 node, where the gate is beta and on by default
    // (alpha, off by default, in the pinned 1.34): a cached image serves only
    // pods whose credentials pulled it.
    let options = NodeOptions {
        feature_gates: vec![("KubeletEnsureSecretPulledImages", true)],
        ..Default::default()
    };
    let node = Node::start_on(&cp, RUNTIME, options)
        .await
        .unwrap_or_else(|e| panic!("node on {} starts and goes Ready: {e:#}", RUNTIME.describe()));
    eprintln!(
        "node {} ({}) Ready in {:?}",
        node.name(),
        RUNTIME.describe(),
        node_started.elapsed()
    );
    // The operator trusts the test registries' CA, as a cluster's operator
    // is given its private registries' CA (`--ca-bundle`), so that its
    // diagnoses can ask the registry; and serves metrics on a known port.
    let ca = cp.kubeconfig().with_file_name("registries-ca.pem");
    std::fs::write(&ca, regcred_testenv::registry::shared_ca_pem()).expect("writing the registries' CA");
    let metrics = format!("127.0.0.1:{}", regcred_testenv::free_port());
    // Admission as the chart configures it, for the namespaces that opt in
    // with ADMISSION_LABEL only: the diagnosis tests here need pods admitted
    // without regcred's Secret, as when admission is unavailable or bypassed.
    let admission_port = regcred_testenv::free_port();
    let mut args = vec![
        format!("--ca-bundle={}", ca.display()),
        format!("--metrics-addr={metrics}"),
    ];
    args.extend(super::admission_args(admission_port, ADMISSION_CONFIG));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = start_operator_with(&cp, &args, &[("POD_NAMESPACE", CREDS_NS)]);
    let opt_in = serde_json::json!({"key": ADMISSION_LABEL.0, "operator": "In", "values": [ADMISSION_LABEL.1]});
    super::install_admission_webhook(&client, ADMISSION_CONFIG, admission_port, &[opt_in]).await;
    eprintln!("test bed (control plane, node, operator) up in {:?}", started.elapsed());
    let bed = Arc::new(Bed {
        operator,
        metrics: format!("http://{metrics}/metrics"),
        node,
        cp,
    });
    *shared = Arc::downgrade(&bed);
    bed
}

/// A test's view of the bed, with a client bound to the test's own runtime.
pub struct Scene {
    pub bed: Arc<Bed>,
    pub client: Client,
    pub started: Instant,
    pub name: &'static str,
}

impl Scene {
    pub async fn new(name: &'static str) -> Self {
        let bed = bed().await;
        let client = bed.cp.client().await.unwrap();
        Self {
            bed,
            client,
            started: Instant::now(),
            name,
        }
    }

    pub fn node(&self) -> &Node {
        &self.bed.node
    }

    /// A pod as a user would write it for this node, running as the
    /// `default` ServiceAccount; returns it as admitted.
    pub async fn create_pod(&self, ns: &str, name: &str, image: &str) -> Pod {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nodeName": self.node().name(),
                "hostNetwork": true,
                "dnsPolicy": "Default",
                "serviceAccountName": "default",
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always"}],
            },
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"))
    }

    pub fn report(&self) {
        eprintln!("{}: {:?} on the node", self.name, self.started.elapsed());
    }
}

impl Cluster for Scene {
    fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for Scene {
    /// A failing test shows what the operator said.
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail(
                &format!("{}: last operator log lines", self.name),
                &self.bed.operator,
                40,
            );
        }
    }
}

/// A Google token endpoint issuing tokens that live `lifetime`, a registry
/// at `host` (routed on the node) that accepts them only until they expire,
/// and a GCR RegistryCredential `name` (source Secret `<name>-gcp`)
/// targeting namespace `name` (created with `labels`), its Secret in place.
pub async fn short_lived_google(
    s: &Scene,
    name: &str,
    host: &str,
    lifetime: Duration,
    labels: &[(&str, &str)],
) -> (TokenServer, Registry) {
    let google = TokenServer::start().await.expect("google token endpoint");
    google.issue_fresh_tokens(format!("ya29.{name}"), lifetime);
    let unexpired = google.unexpired_check();
    let registry = Registry::start(Auth::Verified {
        verify: Arc::new(move |user, password| user == "oauth2accesstoken" && unexpired(password)),
        repositories: vec!["team/app".into()],
    })
    .await
    .expect("registry accepting only unexpired Google tokens");
    app_image(&registry, "team/app").await;
    s.bed.node.route_registry(host, &registry).unwrap();
    let source = format!("{name}-gcp");
    put_gcp_key(&s.client, &source, &google).await;
    namespace_with_default_sa(&s.client, name, labels).await;
    let provider = serde_json::json!({"gcr": {"registries": [host], "auth": {"serviceAccountKey": {"secretRef": {"name": source, "key": "key.json"}}}}});
    apply_rc(&s.client, rc(name, provider, serde_json::json!({"names": [name]}))).await;
    s.wait_pull_secrets(name, "default", &[name]).await;
    (google, registry)
}
