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

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use regcred_testenv::registry::{Auth, Registry};
use regcred_testenv::{
    ControlPlane, Controllers, IN_CLUSTER_HOST, Node, NodeOptions, eventually, images, operator_image,
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

/// Who wrote Secrets, from the API server's audit log: level Metadata for
/// Secret writes, nothing else.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
    verbs: [create, update, patch]
  - level: None
"#;

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
    ])
    .await
    .expect("control plane for a node");
    let mut controllers = Controllers::start(&cp).expect("kube-controller-manager and kube-scheduler start");
    let node_started = Instant::now();
    let node = Node::start_with(&cp, NodeOptions { pod_network: true })
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
    for name in &operators {
        let pod = bed.pods(NS).get(name).await.unwrap();
        let ip: std::net::Ipv4Addr = pod.status.and_then(|s| s.pod_ip).unwrap().parse().unwrap();
        assert!(
            pod.spec.unwrap().host_network != Some(true) && ip.octets()[..3] == gateway_octets[..3],
            "{name} runs on the pod network, not the host's: {ip}"
        );
    }
    let leader = eventually(POD_TIMEOUT, "a leader-election Lease holder", || bed.leader()).await;
    assert!(
        operators.contains(&leader),
        "the leader {leader} is one of {operators:?}"
    );

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
