//! The chart deployed on a real node, as a user installs it: regcred's image
//! (built without a Docker engine, by the code behind `make image`) pushed
//! to a local registry, `helm install charts/regcred` into a namespace that
//! enforces the `restricted` Pod Security profile, two replicas made by the
//! Deployment and ReplicaSet controllers and bound by the scheduler
//! (`regcred_testenv::Controllers`), on a node whose pods have a network of
//! their own (`NodeOptions::pod_network`; restricted forbids `hostNetwork`).
//!
//! The operator pods reach the API server by a host name
//! (`IN_CLUSTER_HOST`, which the API server's certificate carries): the
//! chart's `hostAliases` send it to the pod network's gateway, which the node
//! forwards to the API server on 127.0.0.1, and `apiServer.host`/`port`
//! stand in for the `kubernetes` Service's variables, since this node has no
//! kube-proxy. So glibc's resolver in the image is exercised (NSS `files`),
//! not only an address. These two values exist for such set-ups; in a
//! cluster they stay empty.
//!
//! The RegistryCredential's health checks are Disabled: its registry listens
//! on the host's 127.0.0.1, where the node's containerd pulls from but pods
//! do not reach; the pull by the kubelet is the proof.
//!
//! The chart's Pod admission webhook is called as in a cluster: through its
//! Service (`clientConfig.service`), which the API server resolves to the
//! operator pods' addresses on the pod network
//! (`--enable-aggregator-routing=true`, from the EndpointSlices and
//! Endpoints the controller-manager keeps; this node has no kube-proxy to
//! route a ClusterIP), with the certificate and caBundle regcred made. A
//! namespace applied together with its workloads (a bare pod, a Deployment,
//! a Job) has every pod pull the private image on its first try.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use regcred_testenv::registry::{Auth, Registry};
use regcred_testenv::{
    ControlPlane, Controllers, IN_CLUSTER_HOST, Node, NodeOptions, eventually, images, objects, operator_image,
};
use serde_json::json;
use support::*;

/// The release's namespace (also where source credentials live).
const NS: &str = CREDS_NS;
const RELEASE: &str = "regcred";
/// The chart's ServiceAccount: the release's full name.
const OPERATOR_USER: &str = "system:serviceaccount:regcred-system:regcred";
const SELECTOR: &str = "app.kubernetes.io/name=regcred";
const POD_TIMEOUT: Duration = Duration::from_secs(180);
const TEAM_LABEL: (&str, &str) = ("regcred.dev/chart-node", "served");
/// The chart's webhook Service (`<fullname>-webhook`) and the name of its
/// MutatingWebhookConfiguration and webhook.
const WEBHOOK_SERVICE: &str = "regcred-webhook";
const WEBHOOK_CONFIG: &str = RELEASE;
const WEBHOOK: &str = "pods.regcred.dev";
/// The chart's metrics port (`metrics.port`), on each operator pod.
const METRICS_PORT: u16 = 8080;
/// Which of the workloads a pod belongs to.
const WORKLOAD_LABEL: &str = "regcred.dev/chart-node-workload";
/// Who creates each workload's pod, as the API server's audit log names them.
const ADMIN_USER: &str = "regcred-envtest-admin";
const POD_CREATORS: [(&str, &str); 3] = [
    ("pod", ADMIN_USER),
    ("deployment", "system:serviceaccount:kube-system:replicaset-controller"),
    ("job", "system:serviceaccount:kube-system:job-controller"),
];

/// Who wrote Secrets, and which admission webhooks each pod creation went
/// through (the `mutation.webhook.admission.k8s.io/*` annotations), from the
/// API server's audit log: level Metadata for Secret writes and pod
/// creations, nothing else.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
    verbs: [create, update, patch]
  - level: Metadata
    resources: [{group: "", resources: ["pods"]}]
    verbs: [create]
  - level: None
"#;

/// One pod creation request, from the API server's audit log.
#[derive(Debug)]
struct PodAdmission {
    user: String,
    /// The response's status code (201: created; refused otherwise).
    code: i64,
    /// regcred's webhook answered: whether its patch changed the pod.
    mutated_by_regcred: Option<bool>,
    /// Webhooks the API server went on without (failurePolicy Ignore).
    failed_open: Vec<String>,
}

struct Bed {
    client: Client,
    audit_log: std::path::PathBuf,
    // Field order is drop order: the node before the controllers and the
    // control plane, the registries last.
    node: Node,
    controllers: Controllers,
    cp: ControlPlane,
    /// regcred's image's and the team's private registry.
    registries: [Registry; 2],
}

impl Bed {
    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The operator pods that are Ready, by name.
    async fn ready_operators(&self) -> Vec<String> {
        let pods = self
            .pods(NS)
            .list(&ListParams::default().labels(SELECTOR))
            .await
            .unwrap();
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .map(|p| p.name_any())
            .collect()
    }

    /// What a failing wait shows: the operator pods' states, Events in the
    /// namespace, their logs, and the node's and controllers' last words.
    async fn diagnosis(&self, ns: &str) -> String {
        let mut out = String::new();
        for p in self.pods(ns).list(&ListParams::default()).await.unwrap() {
            out += &format!(
                "pod {}: phase {:?}, conditions {:?}, waiting {:?}\n",
                p.name_any(),
                p.status.as_ref().and_then(|s| s.phase.clone()),
                p.status.as_ref().and_then(|s| s.conditions.as_ref()).map(|c| c
                    .iter()
                    .map(|c| format!("{}={}", c.type_, c.status))
                    .collect::<Vec<_>>()),
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first()?.state.as_ref()?.waiting.clone())
                    .map(|w| format!("{}: {}", w.reason.unwrap_or_default(), w.message.unwrap_or_default())),
            );
        }
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        for e in events.list(&ListParams::default()).await.unwrap() {
            out += &format!(
                "event {} {}: {}\n",
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
        }
        out += &container_logs(self.node.dir(), ns);
        out += &format!(
            "--- kubelet ---\n{}\n{}",
            self.node.kubelet_log_tail(30),
            self.controllers.log_tail(15)
        );
        out
    }

    /// Wait until `count` operator pods are Ready; their names.
    async fn wait_operators_ready(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + POD_TIMEOUT;
        loop {
            let ready = self.ready_operators().await;
            if ready.len() == count {
                return ready;
            }
            if Instant::now() > deadline {
                panic!(
                    "{count} operator pods not Ready within {POD_TIMEOUT:?} (Ready: {ready:?})\n{}",
                    self.diagnosis(NS).await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The audit log's Secret writes in `ns`: (verb, user).
    fn secret_writers(&self, ns: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["objectRef"]["resource"] == "secrets" && e["objectRef"]["namespace"] == ns)
            .filter(|e| e["responseStatus"]["code"].as_i64().is_some_and(|c| c < 300))
            .map(|e| {
                (
                    e["verb"].as_str().unwrap_or_default().to_string(),
                    e["user"]["username"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The pod creation requests in `ns`, from the audit log.
    fn pod_admissions(&self, ns: &str) -> Vec<PodAdmission> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["objectRef"]["resource"] == "pods"
                    && e["objectRef"]["subresource"].is_null()
                    && e["objectRef"]["namespace"] == ns
                    && e["verb"] == "create"
            })
            .map(|e| {
                let mut admission = PodAdmission {
                    user: e["user"]["username"].as_str().unwrap_or_default().to_string(),
                    code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
                    mutated_by_regcred: None,
                    failed_open: Vec::new(),
                };
                for (key, value) in e["annotations"].as_object().into_iter().flatten() {
                    let value = value.as_str().unwrap_or_default();
                    if key.starts_with("mutation.webhook.admission.k8s.io/") {
                        // {"configuration":..,"webhook":..,"mutated":..}, per round.
                        let call: serde_json::Value = serde_json::from_str(value).unwrap_or_default();
                        if call["configuration"] == WEBHOOK_CONFIG && call["webhook"] == WEBHOOK {
                            let mutated = call["mutated"].as_bool().unwrap_or(false);
                            admission.mutated_by_regcred =
                                Some(admission.mutated_by_regcred.unwrap_or(false) || mutated);
                        }
                    } else if key.starts_with("failed-open.mutation.webhook.admission.k8s.io/") {
                        admission.failed_open.push(value.to_string());
                    }
                }
                admission
            })
            .collect()
    }

    /// regcred's admission reviews answered, by outcome, summed over the
    /// operator pods' metrics (scraped at their pod addresses).
    async fn admission_reviews(&self) -> BTreeMap<String, u64> {
        let http = reqwest::Client::new();
        let mut out = BTreeMap::new();
        for pod in self
            .pods(NS)
            .list(&ListParams::default().labels(SELECTOR))
            .await
            .unwrap()
        {
            let Some(ip) = pod.status.and_then(|s| s.pod_ip) else {
                continue;
            };
            let Ok(response) = http
                .get(format!("http://{ip}:{METRICS_PORT}/metrics"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            else {
                continue;
            };
            for line in response.text().await.unwrap_or_default().lines() {
                let Some(rest) = line.strip_prefix("regcred_admission_reviews_total{outcome=\"") else {
                    continue;
                };
                let Some((outcome, value)) = rest.split_once("\"} ") else {
                    continue;
                };
                *out.entry(outcome.to_string()).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            }
        }
        out
    }

    /// Wait for regcred's Secret in `ns`, and check who wrote it.
    async fn wait_served(&self, ns: &str, rc: &str) -> Secret {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = eventually(POD_TIMEOUT, &format!("regcred's Secret {ns}/{rc}"), || async {
            secrets.get_opt(rc).await.ok().flatten()
        })
        .await;
        let managers: Vec<String> = secret
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert_eq!(managers, ["regcred"], "regcred's field manager alone wrote {ns}/{rc}");
        let writers = self.secret_writers(ns);
        assert!(
            !writers.is_empty() && writers.iter().all(|(_, user)| user == OPERATOR_USER),
            "the API server saw {OPERATOR_USER} (the pod's own ServiceAccount token) write Secrets in {ns}, and no one else: {writers:?}"
        );
        secret
    }

    /// The Lease's holder.
    async fn leader(&self) -> Option<String> {
        Api::<Lease>::namespaced(self.client.clone(), NS)
            .get_opt("regcred")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The last lines each container of `ns` logged on the node.
fn container_logs(node_dir: &Path, ns: &str) -> String {
    let mut out = String::new();
    let root = node_dir.join("kubelet/pods-logs");
    for pod in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if !pod.file_name().to_string_lossy().starts_with(&format!("{ns}_")) {
            continue;
        }
        for container in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
            for log in std::fs::read_dir(container.path()).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out += &format!(
                    "--- {} ---\n{}\n",
                    log.path().display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                );
            }
        }
    }
    out
}

fn helm(args: &[&str], kubeconfig: &Path) {
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.extend(["--kubeconfig".as_ref(), kubeconfig.as_os_str()]);
    regcred_testenv::tools::helm(Path::new(env!("CARGO_MANIFEST_DIR")), &args);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_serves_credentials_from_a_restricted_namespace_and_hands_over() {
    let started = Instant::now();
    // Declared first, so removed last, once everything using it is stopped.
    let dir = regcred_testenv::scratch::dir("chart-node").unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let audit_log = dir.path().join("audit.log");
    let cp = ControlPlane::start_for_nodes_with_flags(&[
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", audit_log.display()),
        // Webhook Services resolved to their endpoints' (pods') addresses:
        // there is no kube-proxy for a ClusterIP.
        "--enable-aggregator-routing=true",
    ])
    .await
    .expect("control plane for a node");
    let mut controllers = Controllers::start(&cp).expect("kube-controller-manager and kube-scheduler start");
    let node_started = Instant::now();
    let node = Node::start_with(
        &cp,
        NodeOptions {
            pod_network: true,
            ..Default::default()
        },
    )
    .await
    .expect("node with a pod network starts and goes Ready");
    let network = node.pod_network().expect("the node has a pod network");
    eprintln!(
        "node {} with pod network {} (gateway {}) Ready in {:?}",
        node.name(),
        network.subnet(),
        network.gateway(),
        node_started.elapsed()
    );
    let gateway = network.gateway().to_string();
    let gateway_octets = network.gateway().octets();

    // The operator's image, built as `make image` builds it, from the binary
    // under test, in a registry of its own.
    let image_started = Instant::now();
    let (image, packages) =
        operator_image::build(Path::new(env!("CARGO_BIN_EXE_regcred"))).expect("building regcred's image");
    let images_registry = Registry::start(Auth::Anonymous).await.expect("image registry");
    images_registry
        .push_oci_image("regcred", "test", &image)
        .await
        .expect("pushing regcred's image");
    node.trust_registry(&images_registry).unwrap();
    eprintln!(
        "image {} ({} MB, base {}) built and pushed in {:?}",
        image.digest(),
        image.size() / 1_000_000,
        packages.join(" "),
        image_started.elapsed()
    );

    // The private registry whose image a team's pod pulls.
    let password = canary("chart-node");
    let private = Registry::start(Auth::Htpasswd {
        users: vec![("carol".into(), password.clone())],
    })
    .await
    .expect("htpasswd registry");
    let app = images::app().expect("static app binary");
    private
        .push_binary_image("team/app", "1", &app)
        .await
        .expect("pushing the app image");
    node.trust_registry(&private).unwrap();

    controllers.check().expect("controllers still running");
    let client = cp.client().await.unwrap();
    let bed = Bed {
        client: client.clone(),
        audit_log,
        node,
        controllers,
        cp,
        registries: [images_registry, private],
    };
    let registry_host = bed.registries[0].host().to_string();
    let private_host = bed.registries[1].host().to_string();

    // The release's namespace enforces restricted, with no exemption (the
    // API server has no PodSecurity admission configuration); a hostNetwork
    // pod shows the enforcement is on.
    create_namespace(
        &client,
        NS,
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await;
    let host_network: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "host-network"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    let refused = bed
        .pods(NS)
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &host_network,
        )
        .await
        .expect_err("restricted refuses a hostNetwork pod");
    assert!(refused.to_string().contains("violates PodSecurity"), "{refused}");

    let install_started = Instant::now();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({
            "replicaCount": 2,
            "image": {"repository": format!("{registry_host}/regcred"), "tag": "test"},
            "apiServer": {"host": IN_CLUSTER_HOST, "port": bed.cp.port().to_string()},
            "hostAliases": [{"ip": gateway, "hostnames": [IN_CLUSTER_HOST]}],
            "logFormat": "text",
        }))
        .unwrap(),
    )
    .unwrap();
    helm(
        &[
            "install",
            RELEASE,
            "charts/regcred",
            "--namespace",
            NS,
            "--values",
            values.to_str().unwrap(),
        ],
        bed.cp.kubeconfig(),
    );
    let operators = bed.wait_operators_ready(2).await;
    eprintln!(
        "helm install to 2 Ready operator pods ({operators:?}) in {:?}",
        install_started.elapsed()
    );
    let mut operator_ips = BTreeSet::new();
    for name in &operators {
        let pod = bed.pods(NS).get(name).await.unwrap();
        let ip: std::net::Ipv4Addr = pod.status.and_then(|s| s.pod_ip).unwrap().parse().unwrap();
        assert!(
            pod.spec.unwrap().host_network != Some(true) && ip.octets()[..3] == gateway_octets[..3],
            "{name} runs on the pod network, not the host's: {ip}"
        );
        operator_ips.insert(ip.to_string());
    }
    let leader = eventually(POD_TIMEOUT, "a leader-election Lease holder", || bed.leader()).await;
    assert!(
        operators.contains(&leader),
        "the leader {leader} is one of {operators:?}"
    );

    // The chart's webhook is called through its Service: the configuration
    // names the Service (no URL), regcred has put its CA in the caBundle,
    // and the Service's endpoints are both operator pods (each replica
    // serves admission), where the API server sends the reviews.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = eventually(POD_TIMEOUT, "regcred to patch the webhook's caBundle", || async {
        let config = configs.get_opt(WEBHOOK_CONFIG).await.ok()??;
        let webhooks = config.webhooks.as_ref()?;
        webhooks
            .iter()
            .all(|w| w.client_config.ca_bundle.is_some())
            .then_some(config)
    })
    .await;
    let webhooks = config.webhooks.unwrap();
    assert_eq!(webhooks.len(), 1, "one webhook: {webhooks:?}");
    let client_config = &webhooks[0].client_config;
    let service = client_config
        .service
        .as_ref()
        .expect("the chart calls its webhook through a Service");
    assert!(client_config.url.is_none(), "{client_config:?}");
    assert_eq!(
        (
            service.namespace.as_str(),
            service.name.as_str(),
            service.port,
            service.path.as_deref()
        ),
        (NS, WEBHOOK_SERVICE, Some(443), Some("/mutate-pods"))
    );
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let selector = format!("kubernetes.io/service-name={WEBHOOK_SERVICE}");
    eventually(
        POD_TIMEOUT,
        &format!("the webhook Service's ready endpoints to be the operator pods {operator_ips:?}"),
        || async {
            let list = slices.list(&ListParams::default().labels(&selector)).await.ok()?;
            let ready: BTreeSet<String> = list
                .items
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            let ports: Vec<(Option<&str>, Option<i32>)> = list
                .items
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .map(|p| (p.name.as_deref(), p.port))
                .collect();
            (ready == operator_ips && ports == [(Some("webhook"), Some(9443))]).then_some(())
        },
    )
    .await;

    // A team's namespace, its `default` ServiceAccount made by the
    // serviceaccount controller, served by the in-cluster operator.
    put_source_secret(&client, "private", "carol", &password).await;
    create_namespace(&client, "team-a", &[TEAM_LABEL]).await;
    let rc = json!({
        "apiVersion": "regcred.dev/v1alpha1",
        "kind": "RegistryCredential",
        "metadata": {"name": "private"},
        "spec": {
            "provider": {"static": {"registry": private_host, "secretRef": {"name": "private"}}},
            "target": {"namespaces": {"selector": {"matchLabels": {TEAM_LABEL.0: TEAM_LABEL.1}}}},
            "healthCheck": {"mode": "Disabled"},
        },
    });
    // helm installed the CRD; it may take a moment to be served.
    let rcs: Api<regcred::api::RegistryCredential> = Api::all(client.clone());
    let rc: regcred::api::RegistryCredential = serde_json::from_value(rc).unwrap();
    eventually(
        Duration::from_secs(30),
        "the RegistryCredential to be created",
        || async { rcs.create(&PostParams::default(), &rc).await.ok() },
    )
    .await;
    bed.wait_served("team-a", "private").await;
    let sas = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), "team-a");
    eventually(
        POD_TIMEOUT,
        "team-a's default ServiceAccount to list the Secret",
        || async { (pull_secret_names(&sas.get_opt("default").await.ok()??) == ["private"]).then_some(()) },
    )
    .await;

    // A pod of the team, as its users would write it: scheduled, on the
    // pod network, with its token mounted, pulling the private image.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": format!("{private_host}/team/app:1"), "imagePullPolicy": "Always"}],
        },
    }))
    .unwrap();
    bed.pods("team-a").create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        let pod = bed.pods("team-a").get("app").await.unwrap();
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            break;
        }
        if Instant::now() > deadline {
            panic!("team-a/app not Running:\n{}", bed.diagnosis("team-a").await);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("team-a/app pulled with regcred's Secret and Running");

    // A namespace applied together with its workloads, as Helm or Argo CD
    // apply them: the namespace, its `default` ServiceAccount (created here,
    // so pods are not refused while the serviceaccount controller has yet to
    // make it; either one's create may find the other's) and a bare pod, a
    // Deployment and a Job, back to back. Nothing waits for regcred: each
    // pod is admitted naming regcred's Secret, which is in the namespace
    // before the pod is, and pulls on its first try.
    let reviews_before = bed.admission_reviews().await;
    let team = "team-c";
    let container = json!({
        "name": "app",
        "image": format!("{private_host}/team/app:1"),
        "imagePullPolicy": "Always",
    });
    // dnsPolicy Default: this node's kubelet has no cluster DNS, and a
    // ClusterFirst pod gets a Warning (MissingClusterDNS) for it.
    let pod_spec = |restart_policy: &str| {
        json!({
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": restart_policy,
            "dnsPolicy": "Default",
            "containers": [container.clone()],
        })
    };
    let applied = Instant::now();
    create_namespace(&client, team, &[TEAM_LABEL]).await;
    match Api::<ServiceAccount>::namespaced(client.clone(), team)
        .create(&PostParams::default(), &objects::service_account("default", &[]))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating {team}'s default ServiceAccount: {e}"),
    }
    let mut created_at = BTreeMap::new();
    created_at.insert("pod", Instant::now());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "labels": {WORKLOAD_LABEL: "pod"}},
        "spec": pod_spec("Always"),
    }))
    .unwrap();
    bed.pods(team).create(&PostParams::default(), &pod).await.unwrap();
    created_at.insert("deployment", Instant::now());
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {WORKLOAD_LABEL: "deployment"}},
            "template": {"metadata": {"labels": {WORKLOAD_LABEL: "deployment"}}, "spec": pod_spec("Always")},
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), team)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    created_at.insert("job", Instant::now());
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "app"},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {WORKLOAD_LABEL: "job"}}, "spec": pod_spec("Never")},
        },
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), team)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let applied_in = applied.elapsed();

    // Each workload's pod Running (the Job's container runs until stopped),
    // timed from its object's creation.
    let mut running: BTreeMap<&str, (String, Duration)> = BTreeMap::new();
    let deadline = Instant::now() + POD_TIMEOUT;
    while running.len() < created_at.len() {
        for pod in bed
            .pods(team)
            .list(&ListParams::default().labels(WORKLOAD_LABEL))
            .await
            .unwrap()
        {
            let workload = pod.labels()[WORKLOAD_LABEL].clone();
            let (&workload, at) = created_at.get_key_value(workload.as_str()).expect("one of ours");
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                running
                    .entry(workload)
                    .or_insert_with(|| (pod.name_any(), at.elapsed()));
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{team}'s pods not all Running (Running: {running:?}):\n{}",
                bed.diagnosis(team).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods = bed
        .pods(team)
        .list(&ListParams::default().labels(WORKLOAD_LABEL))
        .await
        .unwrap();
    assert_eq!(
        pods.items.len(),
        3,
        "one pod per workload, none replaced: {:?}",
        pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    // Each names regcred's Secret, started on its first try, and had no
    // Warning: no FailedToRetrieveImagePullSecret, no failed pull.
    let events: Api<Event> = Api::namespaced(client.clone(), team);
    for (workload, (name, _)) in &running {
        let pod = bed.pods(team).get(name).await.unwrap();
        let named: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(named, ["private"], "{workload} pod {name} names regcred's Secret");
        let restarts: Vec<i32> = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .collect();
        assert_eq!(restarts, [0], "{workload} pod {name} started on its first try");
        let uid = pod.uid().unwrap();
        let pod_events = eventually(
            Duration::from_secs(30),
            &format!("the Started Event of {team}/{name}"),
            || async {
                let list = events
                    .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("Started"))
                    .then_some(list.items)
            },
        )
        .await;
        let described: Vec<String> = pod_events
            .iter()
            .map(|e| {
                format!(
                    "{} {} x{}: {}",
                    e.type_.as_deref().unwrap_or_default(),
                    e.reason.as_deref().unwrap_or_default(),
                    e.count.unwrap_or(1),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            pod_events.iter().all(|e| e.type_.as_deref() == Some("Normal")),
            "{workload} pod {name}: no Warning Event:\n{}",
            described.join("\n")
        );
        let pulls: i32 = pod_events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Pulling"))
            .map(|e| e.count.unwrap_or(1))
            .sum();
        assert_eq!(pulls, 1, "{workload} pod {name} pulled once:\n{}", described.join("\n"));
    }
    // The API server reached regcred's webhook through the Service for each
    // pod (its answer is in the audit log; none went on without it).
    let admissions = eventually(
        Duration::from_secs(30),
        &format!("the audit log's 3 pod creations in {team}"),
        || async {
            let admissions = bed.pod_admissions(team);
            (admissions.len() >= 3).then_some(admissions)
        },
    )
    .await;
    let users: BTreeSet<&str> = admissions.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(
        users,
        POD_CREATORS.iter().map(|(_, user)| *user).collect(),
        "{admissions:?}"
    );
    assert!(
        admissions.len() == 3 && admissions.iter().all(|a| a.code == 201),
        "three pods created, none refused or retried: {admissions:?}"
    );
    for admission in &admissions {
        assert!(
            admission.mutated_by_regcred.is_some() && admission.failed_open.is_empty(),
            "the API server called {WEBHOOK} through {NS}/{WEBHOOK_SERVICE} and had its answer: {admission:?}"
        );
    }
    let mutated: Vec<&str> = POD_CREATORS
        .iter()
        .filter(|(_, user)| {
            admissions
                .iter()
                .any(|a| a.user == *user && a.mutated_by_regcred == Some(true))
        })
        .map(|(workload, _)| *workload)
        .collect();
    bed.wait_served(team, "private").await;
    let reviews_after = bed.admission_reviews().await;
    let delta = |outcome: &str| {
        reviews_after
            .get(outcome)
            .copied()
            .unwrap_or(0)
            .saturating_sub(reviews_before.get(outcome).copied().unwrap_or(0))
    };
    let ms = |workload: &str| running[workload].1.as_millis();
    eprintln!(
        "BENCH chart_node: {team} applied (namespace, ServiceAccount, pod, Deployment, Job) in {} ms; Running after \
         pod {} ms, Deployment's pod {} ms, Job's pod {} ms, each on its first pull, no Warning Event; admitted \
         through the webhook Service: 3/3, Secret added by regcred's patch: {}/3 {mutated:?} (the others already \
         named it, from their ServiceAccount); operator reviews: injected +{}, in_place +{}, not_targeted +{}, error +{}",
        applied_in.as_millis(),
        ms("pod"),
        ms("deployment"),
        ms("job"),
        mutated.len(),
        delta("injected"),
        delta("in_place"),
        delta("not_targeted"),
        delta("error"),
    );

    // `kubectl delete pod <leader>`: the other replica takes over.
    let deleted = Instant::now();
    bed.pods(NS).delete(&leader, &DeleteParams::default()).await.unwrap();
    let new_leader = eventually(POD_TIMEOUT, "another pod to hold the Lease", || async {
        bed.leader().await.filter(|h| *h != leader)
    })
    .await;
    let handover = deleted.elapsed();
    eprintln!(
        "leader {leader} deleted; {new_leader} holds the Lease after {handover:?} ({})",
        if operators.contains(&new_leader) {
            "the standby"
        } else {
            "the replacement pod"
        }
    );
    // Once the old leader's pod is gone, a new namespace is served.
    eventually(POD_TIMEOUT, &format!("pod {leader} to be gone"), || async {
        bed.pods(NS).get_opt(&leader).await.ok()?.is_none().then_some(())
    })
    .await;
    create_namespace(&client, "team-b", &[TEAM_LABEL]).await;
    bed.wait_served("team-b", "private").await;
    assert_eq!(bed.leader().await.as_deref(), Some(new_leader.as_str()));
    bed.wait_operators_ready(2).await;
    eprintln!("chart on the node: {:?} in all", started.elapsed());
}
