//! Which hosts regcred's operator contacts (`--registry-checks`, chart
//! `registryChecks`): under `covered` a host that no RegistryCredential
//! covers, named by a failing pod's image, is never contacted; under `all`
//! it is, and `regcred diagnose` (its user's own network position) always
//! checks it. The chart's optional egress NetworkPolicy renders as
//! documented. Against a real API server; the kubelet's side (a pod waiting
//! in ErrImagePull and its `Failed` Event) is written by the test.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use regcred_testenv::eventually;
use serde_json::{Value, json};
use support::*;

/// A TCP listener on 127.0.0.1 standing for an internal service, counting
/// the connections made to it (it accepts and closes each).
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a listener");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self {
            port,
            connections,
            task,
        }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pod `name` in `ns` as the kubelet leaves one whose pull of `image` was
/// refused: its container waiting in ErrImagePull, and the kubelet's
/// `Failed` Event about it.
async fn failing_pod(client: &Client, ns: &str, name: &str, image: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.expect("pod created");
    let host = image.split('/').next().unwrap();
    let refused = format!(
        "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": failed to do request: \
         Head \"https://{host}/v2/team/app/manifests/1\": dial tcp {host}: connect: connection refused"
    );
    let status = json!({"status": {
        "phase": "Pending",
        "containerStatuses": [{
            "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": refused}},
        }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status written as the kubelet would");
    let now = jiff::Timestamp::now();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.pull"), "namespace": ns},
        "involvedObject": {
            "kind": "Pod", "namespace": ns, "name": name, "uid": pod.uid(), "apiVersion": "v1",
            "fieldPath": "spec.containers{app}",
        },
        "type": "Warning",
        "reason": "Failed",
        "message": format!("Failed to pull image \"{image}\": {refused}"),
        "source": {"component": "kubelet", "host": "node-x"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
    .unwrap();
    Api::<Event>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &event)
        .await
        .expect("the kubelet's Event created");
    pod
}

/// The operator's `ImagePullDiagnosed` note on pod `name`.
async fn diagnosed(client: &Client, ns: &str, name: &str) -> String {
    let events: Api<NewEvent> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, &format!("the operator's diagnosis of pod {ns}/{name}"), || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ImagePullDiagnosed") && regarding(e) == Some(name))
                .map(|e| e.note.unwrap_or_default())
        }
    })
    .await
}

/// `regcred diagnose -n ns -o json` as a user with the admin kubeconfig.
async fn cli_diagnose(kubeconfig: &std::path::Path, ns: &str) -> Value {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regcred"));
    command
        .args(["diagnose", "-n", ns, "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .env_remove("KUBECONFIG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("running regcred diagnose");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("diagnose -o json")
}

#[tokio::test]
async fn under_covered_an_uncovered_host_a_pod_names_is_never_contacted() {
    let target = Listener::start().await;
    let image = format!("127.0.0.1:{}/team/app:1", target.port);
    // The default setting; a RegistryCredential covers docker.io only.
    let mut h = Harness::start().await;
    let client = h.client.clone();
    put_source_secret(&client, "hub", "me", &canary("reach")).await;
    create_hub_rc(&client, json!({"namespaces": {"names": ["probe"]}})).await;
    namespace_with_default_sa(&client, "probe", &[]).await;

    failing_pod(&client, "probe", "scan", &image).await;
    let note = diagnosed(&client, "probe", "scan").await;
    println!("covered: {note}");
    assert!(
        note.contains("ConnectionRefused"),
        "diagnosed from the kubelet's text: {note}"
    );
    // The diagnosis is out; give a stray late check time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        target.count(),
        0,
        "the operator contacted an uncovered host under covered"
    );
    assert!(
        h.operator.logs().contains("image pull failure diagnosed"),
        "{}",
        h.operator.logs()
    );

    // The CLI checks every host, from its user's position, and says so.
    let doc = cli_diagnose(h.cp.kubeconfig(), "probe").await;
    assert!(target.count() > 0, "regcred diagnose did not check the host: {doc:#}");
    let contacted_by_cli = target.count();

    // Under `all`, the operator contacts it: the assertion above can fail.
    h.operator.stop();
    let _all = start_operator_with(&h.cp, &["--registry-checks=all"], &[]);
    failing_pod(&client, "probe", "scan-all", &image).await;
    let note = diagnosed(&client, "probe", "scan-all").await;
    println!("all: {note}");
    eventually(WAIT, "the operator under all to contact the host", || async {
        (target.count() > contacted_by_cli).then_some(())
    })
    .await;
    println!(
        "BENCH reach: connections to the uncovered host: operator under covered 0, regcred diagnose {contacted_by_cli}, operator under all {}",
        target.count() - contacted_by_cli
    );
}

/// The chart's egress NetworkPolicy: off by default; on, the API server,
/// DNS, and the registries and cloud endpoints given, and a clear error
/// without the API server's addresses. The flag follows `registryChecks`.
#[test]
fn the_egress_network_policy_renders_only_what_regcred_contacts() {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/regcred");
    let helm = |args: &[&str]| {
        let mut full = vec!["template", "regcred", ".", "--namespace", "regcred"];
        full.extend(args);
        let full: Vec<&std::ffi::OsStr> = full.iter().map(std::ffi::OsStr::new).collect();
        regcred_testenv::tools::helm(&chart, &full)
    };
    let objects = |yaml: &str| -> Vec<Value> {
        use serde::Deserialize;
        serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| Value::deserialize(doc).expect("valid YAML"))
            .filter(|v| !v.is_null())
            .collect()
    };
    let defaults = objects(&helm(&[]));
    assert!(
        !defaults.iter().any(|o| o["kind"] == "NetworkPolicy"),
        "no NetworkPolicy by default"
    );
    let deployment = defaults.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--registry-checks=covered"), "{args}");

    let on = objects(&helm(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "--set",
        "networkPolicy.registries[0].cidr=203.0.113.0/24",
        "--set",
        "networkPolicy.cloudEndpoints[0].cidr=198.51.100.0/24",
        "--set",
        "registryChecks=all",
    ]));
    let policy = on
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .expect("a NetworkPolicy");
    println!("{policy:#}");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "regcred"
    );
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let to = |cidr: &str| {
        egress
            .iter()
            .find(|rule| rule["to"][0]["ipBlock"]["cidr"] == cidr)
            .unwrap_or_else(|| panic!("no rule to {cidr}: {egress:#?}"))
    };
    assert_eq!(to("10.0.0.1/32")["ports"][1], json!({"protocol": "TCP", "port": 6443}));
    assert_eq!(to("203.0.113.0/24")["ports"], json!([{"protocol": "TCP", "port": 443}]));
    assert_eq!(
        to("198.51.100.0/24")["ports"],
        json!([{"protocol": "TCP", "port": 443}])
    );
    let dns = egress
        .iter()
        .find(|rule| rule["to"][0]["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns")
        .expect("a DNS rule");
    assert_eq!(dns["ports"][0], json!({"protocol": "UDP", "port": 53}));
    assert_eq!(egress.len(), 4, "nothing else: {egress:#?}");
    let deployment = on.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--registry-checks=all"), "{args}");

    let refused = std::process::Command::new(regcred_testenv::tools::helm_binary())
        .current_dir(&chart)
        .args(["template", "regcred", ".", "--set", "networkPolicy.enabled=true"])
        .output()
        .expect("running helm");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("networkPolicy.apiServer.cidrs"), "{stderr}");
}
