//! The Helm chart under `charts/regcred`: it lints, it renders, the apiserver
//! accepts every manifest it renders, its pods pass the `restricted` Pod
//! Security Standard, and — the point of a least-privilege ClusterRole — the
//! operator does its whole job running as the chart's ServiceAccount with
//! exactly the chart's RBAC, and cannot do what it has no business doing.

mod support;

use std::path::{Path, PathBuf};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use regcred_testenv::tools::pinned;
use regcred_testenv::{ControlPlane, eventually, free_port};
use serde::Deserialize;
use serde_json::{Value, json};
use support::*;

const RELEASE: &str = "regcred";
/// Every optional part of the chart switched on.
const FULL_VALUES: &str = "ci/full-values.yaml";
const CRD_FILE: &str = "regcred.dev_registrycredentials.yaml";
const FIELD_MANAGER: &str = "helm-test";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/regcred")
}

/// Run helm in the chart directory; its stdout, or a panic with its stderr.
fn helm(args: &[&str]) -> String {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    regcred_testenv::tools::helm(&chart_dir(), &args)
}

/// `helm template` of the chart (CRDs included) into `namespace`, as JSON objects.
fn render(namespace: &str, values: Option<&str>) -> Vec<Value> {
    let kube_version = pinned("K8S_VERSION");
    let mut args = vec![
        "template",
        RELEASE,
        ".",
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        "--include-crds",
    ];
    if let Some(v) = values {
        args.extend(["--values", v]);
    }
    let yaml = helm(&args);
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).expect("helm renders valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().expect("every manifest has a kind")
}

fn one<'a>(objects: &'a [Value], k: &str) -> &'a Value {
    let mut found = objects.iter().filter(|o| kind(o) == k);
    let first = found.next().unwrap_or_else(|| panic!("no {k} rendered"));
    assert!(found.next().is_none(), "more than one {k} rendered");
    first
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = objects.iter().map(kind).collect();
    kinds.sort();
    kinds
}

/// An Api for a rendered object of any kind, found through discovery.
async fn api_for(client: &Client, obj: &DynamicObject) -> Api<DynamicObject> {
    let types = obj.types.as_ref().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("a valid apiVersion");
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("{} {} is not served: {e}", types.api_version, types.kind));
    match caps.scope {
        Scope::Namespaced => {
            let ns = obj.metadata.namespace.as_deref().unwrap_or_else(|| {
                panic!(
                    "{} {} is namespaced but rendered without metadata.namespace",
                    types.kind,
                    obj.name_any()
                )
            });
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side apply of rendered objects, for real or as a dry run.
async fn apply(client: &Client, objects: &[&Value], dry_run: bool) {
    for obj in objects {
        let obj: DynamicObject = serde_json::from_value((*obj).clone()).expect("a Kubernetes object");
        let api = api_for(client, &obj).await;
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        let what = format!(
            "{} {}",
            obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default(),
            obj.name_any()
        );
        api.patch(&obj.name_any(), &params, &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("the apiserver rejected {what}: {e}"));
    }
}

/// A namespace where the apiserver's PodSecurity admission enforces `restricted`.
async fn restricted_namespace(client: &Client, name: &str) {
    create_namespace(
        client,
        name,
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await;
}

/// The Deployment's pod template as a Pod, created as a dry run (admission,
/// including PodSecurity, runs; nothing is stored).
async fn dry_run_pod(client: &Client, namespace: &str, deployment: &Value) -> Result<Pod, kube::Error> {
    let template = &deployment["spec"]["template"];
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "regcred-pod-check", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }))
    .expect("the pod template is a Pod spec");
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&params, &pod)
        .await
}

/// Enough of prometheus-operator's CRD for the apiserver to serve ServiceMonitors.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what} must be refused with 403 Forbidden, got {other:?}"),
    }
}

#[test]
fn chart_lints_with_default_and_full_values() {
    helm(&["lint", ".", "--strict"]);
    helm(&["lint", ".", "--strict", "--values", FULL_VALUES]);
}

#[test]
fn chart_crd_is_the_repository_crd() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(CRD_FILE);
    let chart = chart_dir().join("crds").join(CRD_FILE);
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    assert!(
        read(&repo) == read(&chart),
        "charts/regcred/crds is out of date: run `make crds`"
    );
}

#[test]
fn every_rbac_rule_says_why() {
    for file in ["clusterrole.yaml", "role.yaml"] {
        let path = chart_dir().join("templates").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        let mut rules = 0;
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("- apiGroups:") {
                continue;
            }
            rules += 1;
            // Template actions alone on a line ({{- if ... }}) render to nothing.
            let previous = lines[..i]
                .iter()
                .map(|l| l.trim())
                .rfind(|l| !(l.starts_with("{{") && l.ends_with("}}")));
            assert!(
                previous.is_some_and(|p| p.starts_with('#')),
                "{file}:{}: RBAC rule without a comment saying why it is needed",
                i + 1
            );
        }
        // Every rule starts with apiGroups, so counting those counts the rules.
        let verbs = lines.iter().filter(|l| l.trim_start().starts_with("verbs:")).count();
        assert_eq!(rules, verbs, "{file}: each rule must start with `- apiGroups:`");
        assert!(rules > 0, "{file}: no rules found");
    }
}

#[test]
fn deployment_is_restricted_and_wired_as_documented() {
    let objects = render("regcred-system", None);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    );
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // The container's own securityContext wins over the pod's.
    let effective = |field: &str| {
        let c = &container["securityContext"][field];
        if c.is_null() {
            pod["securityContext"][field].clone()
        } else {
            c.clone()
        }
    };
    assert_eq!(effective("runAsNonRoot"), true);
    assert_eq!(effective("runAsUser"), 65532);
    assert_eq!(effective("readOnlyRootFilesystem"), true);
    assert_eq!(effective("allowPrivilegeEscalation"), false);
    assert_eq!(effective("capabilities")["drop"], json!(["ALL"]));
    assert_eq!(effective("seccompProfile")["type"], "RuntimeDefault");

    assert_eq!(
        container["args"],
        json!([
            "run",
            "--leader-election",
            "--leader-election-namespace=regcred-system",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--credentials-namespace=regcred-system",
            "--diagnose-pulls=true",
        ])
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")]
    );
    assert_eq!(
        pod["serviceAccountName"],
        one(&objects, "ServiceAccount")["metadata"]["name"]
    );

    let full = render("regcred-system", Some(FULL_VALUES));
    let container = &one(&full, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--ca-bundle=/etc/regcred/ca-bundle/ca.crt"), "{args:?}");
    assert!(args.contains(&"--credentials-namespace=regcred-sources"), "{args:?}");
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AWS_ENDPOINT_URL_STS"),
        "extraEnv reaches the container"
    );
    let sa = one(&full, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/regcred"
    );
    let labels = &one(&full, "Deployment")["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["azure.workload.identity/use"], "true");
    assert_eq!(one(&full, "ServiceMonitor")["spec"]["endpoints"][0]["port"], "metrics");
    // Source credentials in another namespace: the Secret rule moves there.
    let roles: Vec<&str> = full
        .iter()
        .filter(|o| kind(o) == "Role")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["regcred-system", "regcred-sources"]);
}

#[tokio::test]
async fn rendered_manifests_pass_server_side_dry_run() {
    let cp = ControlPlane::start().await.expect("test control plane");
    cp.install_crd(&regcred::api::crd_yaml()).await.expect("CRD installs");
    cp.install_crd(SERVICE_MONITOR_CRD)
        .await
        .expect("ServiceMonitor CRD installs");
    let client = cp.client().await.unwrap();

    for (namespace, values) in [("regcred-system", None), ("regcred-full", Some(FULL_VALUES))] {
        let objects = render(namespace, values);
        restricted_namespace(&client, namespace).await;
        if values.is_some() {
            create_namespace(&client, "regcred-sources", &[]).await;
        }
        let all: Vec<&Value> = objects.iter().collect();
        apply(&client, &all, true).await;

        // PodSecurity only warns about Deployments; it enforces on Pods.
        let deployment = one(&objects, "Deployment");
        dry_run_pod(&client, namespace, deployment)
            .await
            .unwrap_or_else(|e| panic!("the operator pod ({values:?}) violates the restricted profile: {e}"));
    }

    // The check above has teeth: the same pod without its securityContext is refused.
    let mut loose = one(&render("regcred-system", None), "Deployment").clone();
    loose["spec"]["template"]["spec"]["securityContext"] = json!({});
    loose["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({});
    assert_forbidden(
        dry_run_pod(&client, "regcred-system", &loose).await,
        "a pod without the restricted securityContext",
    );
}

/// Install only the chart's identity and RBAC (for real), then run the
/// operator as that ServiceAccount through a full static scenario.
/// The chart's ServiceAccount, (Cluster)Roles and bindings applied to `cp`,
/// and a kubeconfig for that ServiceAccount's identity.
async fn chart_identity(cp: &regcred_testenv::ControlPlane) -> (Vec<Value>, PathBuf) {
    let admin = cp.client().await.unwrap();
    let objects = render(CREDS_NS, None);
    let identity: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&kind(o))
        })
        .collect();
    apply(&admin, &identity, false).await;
    let sa = one(&objects, "ServiceAccount")["metadata"]["name"].as_str().unwrap();
    let user = format!("system:serviceaccount:{CREDS_NS}:{sa}");
    let kubeconfig = cp
        .kubeconfig_for(
            &user,
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{CREDS_NS}"),
                "system:authenticated",
            ],
        )
        .unwrap();
    (objects, kubeconfig)
}

#[tokio::test]
async fn operator_does_its_job_with_exactly_the_charts_rbac() {
    let cp = Harness::control_plane().await;
    let admin = cp.client().await.unwrap();
    let (objects, kubeconfig) = chart_identity(&cp).await;

    // The chart's own flags, but metrics on a free loopback port and the
    // credentials namespace passed by the harness.
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("--metrics-addr={metrics_addr}");
    let deployment = one(&objects, "Deployment");
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| *a != "run" && !a.starts_with("--credentials-namespace="))
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                metrics.as_str()
            } else {
                a
            }
        })
        .collect();
    assert!(args.contains(&"--leader-election"), "{args:?}");
    let operator = start_operator_as(&kubeconfig, &args, &[("POD_NAME", "regcred-0")]);
    let client = cp.client().await.unwrap();
    let mut h = Harness { client, operator, cp };

    // Two target namespaces whose default ServiceAccounts already hold a
    // foreign pull secret, and one holding a foreign Secret named like ours.
    put_source_secret(&admin, "hub", "me", "pw").await;
    for ns in ["rbac-a", "rbac-b"] {
        create_namespace(&admin, ns, &[("rbac", "on"), ("team", ns)]).await;
        create_service_account(&admin, ns, "default", &["foreign"]).await;
    }
    namespace_with_default_sa(&admin, "rbac-taken", &[]).await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("hub".into()),
            ..Default::default()
        },
        string_data: Some([("note".to_string(), "not regcred's".to_string())].into()),
        ..Default::default()
    };
    let foreign = h
        .secrets("rbac-taken")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();

    create_hub_rc(
        &admin,
        json!({"namespaces": {"selector": {"matchLabels": {"rbac": "on"}}}}),
    )
    .await;
    for ns in ["rbac-a", "rbac-b"] {
        h.wait_secret(ns, "hub", "managed Secret", |s| {
            password_for(s, "https://index.docker.io/v1/").as_deref() == Some("pw")
        })
        .await;
        h.wait_pull_secrets(ns, "default", &["foreign", "hub"]).await;
    }
    h.wait_status("hub", "Ready=True, 2/2", |s| {
        is_condition(s, "Ready", "True") && s.summary.as_deref() == Some("2/2")
    })
    .await;

    // The chart's probes and the ServiceMonitor's endpoint answer.
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let url = format!("http://{metrics_addr}{path}");
        eventually(WAIT, &format!("{url} answering 200"), || {
            let request = http.get(&url);
            async move { request.send().await.ok()?.status().is_success().then_some(()) }
        })
        .await;
    }

    // A rotated source re-mints: the managed Secrets are updated in place.
    put_source_secret(&admin, "hub", "me", "rotated").await;
    for ns in ["rbac-a", "rbac-b"] {
        h.wait_secret(ns, "hub", "rotated password", |s| {
            password_for(s, "https://index.docker.io/v1/").as_deref() == Some("rotated")
        })
        .await;
    }

    // The foreign Secret is reported, with a Warning Event.
    label_namespace(&admin, "rbac-taken", &[("rbac", "on")]).await;
    h.wait_status("hub", "rbac-taken reported as SecretExists", |s| {
        s.failed_namespaces
            .iter()
            .any(|f| f.namespace == "rbac-taken" && f.reason == "SecretExists")
    })
    .await;
    wait_event(&admin, "SecretExists", Some("Warning")).await;
    let untouched = h.secrets("rbac-taken").get("hub").await.unwrap();
    assert_eq!(untouched.resource_version(), foreign.resource_version());

    // A selector change cleans what stops matching.
    let narrowed = json!({"spec": {"target": {"namespaces": {"selector": {"matchLabels": {"team": "rbac-a"}}}}}});
    h.rcs()
        .patch("hub", &PatchParams::default(), &Patch::Merge(&narrowed))
        .await
        .unwrap();
    h.wait_secret_gone("rbac-b", "hub").await;
    h.wait_pull_secrets("rbac-b", "default", &["foreign"]).await;
    h.wait_status("hub", "Ready=True, 1/1", |s| {
        is_condition(s, "Ready", "True") && s.summary.as_deref() == Some("1/1") && s.failed_namespaces.is_empty()
    })
    .await;

    // Leader election took the Lease in the release namespace.
    let lease = eventually(WAIT, "the leader-election Lease", || {
        let leases: Api<Lease> = Api::namespaced(admin.clone(), CREDS_NS);
        async move { leases.get_opt("regcred").await.ok().flatten() }
    })
    .await;
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "the Lease has a holder"
    );

    // Deletion: the finalizer cleans up, then lets go.
    delete_rc(&admin, "hub").await;
    eventually(WAIT, "RegistryCredential gone (finalizer removed)", || {
        let rcs = h.rcs();
        async move { rcs.get_opt("hub").await.ok().and_then(|r| r.is_none().then_some(())) }
    })
    .await;
    h.wait_secret_gone("rbac-a", "hub").await;
    h.wait_pull_secrets("rbac-a", "default", &["foreign"]).await;
    let managed = Api::<Secret>::all(admin.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=regcred"))
        .await
        .unwrap();
    assert!(managed.items.is_empty(), "managed Secrets left behind");
    assert_eq!(
        h.secrets("rbac-taken").get("hub").await.unwrap().resource_version(),
        foreign.resource_version()
    );

    // SIGTERM, as Kubernetes stops a pod: the leader releases its Lease.
    let exit = h.operator.stop();
    assert!(
        exit.is_some_and(|s| s.success()),
        "regcred exited with {exit:?} on SIGTERM"
    );
    // Denials show up in the log (watches, status, finalizer) or, for writes
    // into target namespaces, in Events.
    let logs = h.operator.logs();
    assert!(logs.contains("reconciled"), "operator logs are captured:\n{logs}");
    assert!(
        !logs.contains("forbidden") && !logs.contains("Forbidden"),
        "the operator hit an RBAC denial with the chart's RBAC:\n{logs}"
    );
    let events = Api::<Event>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let events = serde_json::to_string(&events).unwrap();
    assert!(
        !events.contains("forbidden") && !events.contains("Forbidden"),
        "an Event reports an RBAC denial with the chart's RBAC:\n{events}"
    );
}

/// Least privilege: with the chart's identity, everything regcred does not
/// need is denied.
#[tokio::test]
async fn the_charts_rbac_denies_the_rest() {
    let cp = Harness::control_plane().await;
    let admin = cp.client().await.unwrap();
    let (_, kubeconfig) = chart_identity(&cp).await;
    for ns in ["rbac-a", "rbac-taken"] {
        namespace_with_default_sa(&admin, ns, &[]).await;
    }
    let me = cp.client_from(&kubeconfig).await.unwrap();
    // What leader election needs: read and watch the Lease of its namespace.
    Api::<Lease>::namespaced(me.clone(), CREDS_NS)
        .list(&ListParams::default())
        .await
        .expect("listing Leases in the release namespace is allowed");
    // RBAC cannot tie list to a label selector: the managed-Secret watch needs
    // cluster-wide list, so listing every Secret of any namespace is allowed.
    Api::<Secret>::namespaced(me.clone(), "rbac-taken")
        .list(&ListParams::default())
        .await
        .expect("list Secrets without a selector is allowed (RBAC cannot express the selector)");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    assert_forbidden(
        Api::<Pod>::namespaced(me.clone(), "rbac-a").create(&dry, &pod).await,
        "creating a Pod",
    );
    assert_forbidden(
        Api::<ConfigMap>::namespaced(me.clone(), CREDS_NS).get("any").await,
        "reading a ConfigMap",
    );
    // Deleting pods is only for recreatePodsMissingLink, off by default.
    assert_forbidden(
        Api::<Pod>::namespaced(me.clone(), "rbac-a")
            .delete("any", &DeleteParams::default().dry_run())
            .await,
        "deleting a Pod (diagnosis.recreatePods is off)",
    );
    assert_forbidden(
        Api::<Namespace>::all(me.clone())
            .delete("rbac-a", &DeleteParams::default().dry_run())
            .await,
        "deleting a Namespace",
    );
    let mut whole = Secret::default();
    whole.metadata.name = Some("hub".into());
    assert_forbidden(
        Api::<Secret>::namespaced(me.clone(), "rbac-taken")
            .replace("hub", &dry, &whole)
            .await,
        "replacing a whole Secret (regcred only ever merge-patches its own keys)",
    );
    assert_forbidden(
        Api::<ServiceAccount>::namespaced(me.clone(), "rbac-a")
            .delete("default", &DeleteParams::default().dry_run())
            .await,
        "deleting a ServiceAccount",
    );
    assert_forbidden(
        Api::<Lease>::namespaced(me.clone(), "rbac-a")
            .list(&ListParams::default())
            .await,
        "Leases outside the release namespace",
    );
    assert_forbidden(
        Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(
            me.clone(),
        )
        .list(&ListParams::default())
        .await,
        "listing CRDs (only registrycredentials.regcred.dev can be read)",
    );
}
