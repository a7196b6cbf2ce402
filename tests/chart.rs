//! The Helm chart under `charts/regcred`: it lints, it renders, the apiserver
//! accepts every manifest it renders, its pods pass the `restricted` Pod
//! Security Standard, its Pod admission webhook fails open and stays out of
//! the system's way, and — the point of a least-privilege ClusterRole — the
//! operator does its whole job (the webhook's certificate and caBundle
//! included) running as the chart's ServiceAccount with exactly the chart's
//! RBAC, and cannot do what it has no business doing.

mod support;

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
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
    match values {
        Some(v) => render_with(namespace, &["--values", v]),
        None => render_with(namespace, &[]),
    }
}

/// The arguments of `helm template` into `namespace`, with `extra` (values) last.
fn template_args<'a>(namespace: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "template",
        RELEASE,
        ".",
        "--namespace",
        namespace,
        "--kube-version",
        pinned("K8S_VERSION"),
        "--include-crds",
    ];
    args.extend(extra);
    args
}

/// [`render`] with extra `helm template` arguments (`--set`, `--values`).
fn render_with(namespace: &str, extra: &[&str]) -> Vec<Value> {
    manifests(&helm(&template_args(namespace, extra)))
}

/// The objects of a multi-document YAML stream, as JSON.
fn manifests(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
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

/// The one rendered object of kind `k` named `name`.
fn named<'a>(objects: &'a [Value], k: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == k && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {k} {name} rendered"))
}

/// Names of the rendered objects of kind `k`, sorted.
fn names<'a>(objects: &'a [Value], k: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = objects
        .iter()
        .filter(|o| kind(o) == k)
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    names
}

/// The operator container of the rendered Deployment.
fn container(objects: &[Value]) -> &Value {
    &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

/// The container's arguments that start with `prefix`, in order.
fn args_with<'a>(objects: &'a [Value], prefix: &str) -> Vec<&'a str> {
    container(objects)["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with(prefix))
        .collect()
}

/// The rules of the one rendered `k` (ClusterRole or Role) in `namespace`
/// (ignored for a ClusterRole) that name `resource`.
fn rules_for<'a>(objects: &'a [Value], k: &str, namespace: &str, resource: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| kind(o) == k && (k == "ClusterRole" || o["metadata"]["namespace"] == namespace))
        .flat_map(|o| o["rules"].as_array().unwrap())
        .filter(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
        .collect()
}

/// Whether a Kubernetes LabelSelector (matchLabels, matchExpressions with
/// In, NotIn, Exists, DoesNotExist) selects an object with `labels`.
fn selects(selector: &Value, labels: &[(&str, &str)]) -> bool {
    let value = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let by_label = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| value(k) == v.as_str());
    let by_expression = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap();
        let listed = |v: &str| e["values"].as_array().unwrap().iter().any(|x| x == v);
        match (e["operator"].as_str().unwrap(), value(key)) {
            ("In", Some(v)) => listed(v),
            ("In", None) => false,
            ("NotIn", Some(v)) => !listed(v),
            ("NotIn", None) => true,
            ("Exists", v) => v.is_some(),
            ("DoesNotExist", v) => v.is_none(),
            (op, _) => panic!("unknown selector operator {op}"),
        }
    });
    by_label && by_expression
}

/// The confinement policies and their bindings (`confinement.enabled`, on
/// by default): Secrets, ServiceAccounts, pods, RegistryCredentials, the
/// webhook configuration and ServiceAccount tokens; `tests/confinement.rs`
/// proves what they do.
const CONFINEMENT_KINDS: [&str; 12] = [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicyBinding",
];

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

/// Enough of another project's namespaced CRD (prometheus-operator's
/// ServiceMonitor, cert-manager's Issuer and Certificate) for the apiserver
/// to serve its kind at `group`/v1.
fn stub_crd(group: &str, kind: &str) -> String {
    let singular = kind.to_lowercase();
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {singular}s.{group}
spec:
  group: {group}
  names: {{kind: {kind}, listKind: {kind}List, plural: {singular}s, singular: {singular}}}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#
    )
}

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
            "MutatingWebhookConfiguration",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
        ]
        .into_iter()
        .chain(CONFINEMENT_KINDS)
        .collect::<Vec<_>>()
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
            "--registry-checks=covered",
            "--excluded-namespaces=kube-system",
            "--admission-addr=0.0.0.0:9443",
            "--admission-cert-secret=regcred-webhook-tls",
            "--admission-certs=regcred",
            "--admission-webhook-config=regcred",
            "--admission-dns-names=regcred-webhook.regcred-system.svc,regcred-webhook.regcred-system.svc.cluster.local",
        ])
    );
    assert_eq!(
        container["ports"],
        json!([
            {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
            {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
        ])
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
    // The alerts and the dashboard (tests/alerts.rs tests what they say).
    assert!(one(&full, "PrometheusRule")["spec"]["groups"][0]["rules"].is_array());
    assert_eq!(
        named(&full, "ConfigMap", "regcred-dashboard")["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    // Source credentials in another namespace: the Secret rule moves there.
    let roles: Vec<&str> = full
        .iter()
        .filter(|o| kind(o) == "Role")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["regcred-system", "regcred-sources"]);
}

/// The admission webhook with default values: registered to fail open,
/// quickly, on Pod creation only, never for kube-system, the release's own
/// namespace or what opts out; served by every replica; its CA made by
/// regcred, which may patch that one MutatingWebhookConfiguration and
/// write that one Secret, and nothing more.
#[test]
fn admission_webhook_fails_open_and_stays_out_of_the_way() {
    let objects = render("regcred-system", None);
    let mwc = one(&objects, "MutatingWebhookConfiguration");
    assert_eq!(mwc["metadata"]["name"], "regcred");
    assert!(mwc["metadata"]["namespace"].is_null(), "cluster-scoped: {mwc}");
    assert!(
        mwc["metadata"]["annotations"].is_null(),
        "no cert-manager CA injection without cert-manager: {mwc}"
    );
    let webhooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1, "{webhooks:?}");
    let webhook = &webhooks[0];
    assert_eq!(webhook["name"], "pods.regcred.dev");
    assert_eq!(webhook["failurePolicy"], "Ignore", "the webhook must fail open");
    assert_eq!(webhook["sideEffects"], "NoneOnDryRun");
    let timeout = webhook["timeoutSeconds"].as_u64().unwrap();
    assert!(
        (1..=10).contains(&timeout),
        "an unreachable webhook delays pod creation by timeoutSeconds: keep it short, not {timeout}"
    );
    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(webhook["matchPolicy"], "Equivalent");
    assert_eq!(webhook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        webhook["rules"],
        json!([{
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }])
    );
    // No caBundle in the template: regcred patches it into the live object.
    assert_eq!(
        webhook["clientConfig"],
        json!({"service": {
            "name": "regcred-webhook",
            "namespace": "regcred-system",
            "path": "/mutate-pods",
            "port": 443,
        }})
    );

    // Which namespaces and pods the API server sends to the webhook.
    let namespaces = &webhook["namespaceSelector"];
    let namespace = |name: &str, extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("kubernetes.io/metadata.name", name)];
        labels.extend_from_slice(extra);
        selects(namespaces, &labels)
    };
    assert!(namespace("team-a", &[]), "a team's namespace is covered");
    assert!(namespace("default", &[("team", "a")]));
    assert!(namespace("team-a", &[("regcred.dev/admission", "enabled")]));
    assert!(!namespace("kube-system", &[]), "kube-system is never covered");
    assert!(
        !namespace("regcred-system", &[]),
        "the release namespace is never covered"
    );
    assert!(
        !namespace("team-a", &[("regcred.dev/admission", "disabled")]),
        "a namespace opts out"
    );
    let pods = &webhook["objectSelector"];
    assert!(selects(pods, &[]));
    assert!(selects(pods, &[("app", "web")]));
    assert!(
        !selects(pods, &[("regcred.dev/admission", "disabled")]),
        "a pod opts out"
    );
    // The release namespace is the one excluded, whichever it is.
    let elsewhere = render("platform", None);
    let namespaces = &one(&elsewhere, "MutatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"];
    assert!(!selects(namespaces, &[("kubernetes.io/metadata.name", "platform")]));
    assert!(!selects(namespaces, &[("kubernetes.io/metadata.name", "kube-system")]));
    assert!(selects(
        namespaces,
        &[("kubernetes.io/metadata.name", "regcred-system")]
    ));

    // The Service the webhook names selects every replica (leader and
    // standbys: the Deployment's own selector, nothing narrower) on the
    // container port named `webhook`.
    let service = named(&objects, "Service", "regcred-webhook");
    let client_service = &webhook["clientConfig"]["service"];
    assert_eq!(service["metadata"]["name"], client_service["name"]);
    assert_eq!(service["metadata"]["namespace"], client_service["namespace"]);
    let deployment = one(&objects, "Deployment");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let pod_labels: Vec<(&str, &str)> = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert!(selects(
        &json!({"matchLabels": service["spec"]["selector"]}),
        &pod_labels
    ));
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
    );
    assert!(
        container(&objects)["ports"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "webhook", "containerPort": 9443, "protocol": "TCP"}))
    );

    // The operator serves it with a certificate for the Service's names, and
    // patches the caBundle of the MutatingWebhookConfiguration rendered above.
    assert_eq!(
        args_with(&objects, "--admission-"),
        [
            "--admission-addr=0.0.0.0:9443",
            "--admission-cert-secret=regcred-webhook-tls",
            "--admission-certs=regcred",
            "--admission-webhook-config=regcred",
            "--admission-dns-names=regcred-webhook.regcred-system.svc,regcred-webhook.regcred-system.svc.cluster.local",
        ]
    );

    // RBAC: get and patch of that one MutatingWebhookConfiguration; create of
    // Secrets, and the rest of that one Secret, in the release namespace.
    assert_eq!(
        rules_for(&objects, "ClusterRole", "", "mutatingwebhookconfigurations"),
        [&json!({
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["regcred"],
            "verbs": ["get", "patch"],
        })]
    );
    let secrets = rules_for(&objects, "Role", "regcred-system", "secrets");
    assert!(
        secrets.contains(&&json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]})),
        "{secrets:?}"
    );
    assert!(
        secrets.contains(&&json!({
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["regcred-webhook-tls"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        })),
        "{secrets:?}"
    );

    // The Secret's name is a value; args and RBAC follow it.
    let renamed = render_with("regcred-system", &["--set", "admission.certSecretName=my-webhook-tls"]);
    assert!(args_with(&renamed, "--admission-cert-secret=").contains(&"--admission-cert-secret=my-webhook-tls"));
    assert!(
        rules_for(&renamed, "Role", "regcred-system", "secrets")
            .iter()
            .any(|r| r["resourceNames"] == json!(["my-webhook-tls"]))
    );
}

/// `admission.enabled=false`: no webhook, no webhook Service, no webhook
/// RBAC, no admission flags or port; the rest as with the defaults.
#[test]
fn admission_disabled_renders_no_webhook() {
    let objects = render_with("regcred-system", &["--set", "admission.enabled=false"]);
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
        .into_iter()
        .chain(CONFINEMENT_KINDS)
        .collect::<Vec<_>>()
    );
    assert_eq!(names(&objects, "Service"), ["regcred-metrics"]);
    assert_eq!(args_with(&objects, "--admission"), Vec::<&str>::new());
    assert_eq!(
        container(&objects)["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert!(rules_for(&objects, "ClusterRole", "", "mutatingwebhookconfigurations").is_empty());
    // The confinement policies are admissionregistration objects themselves;
    // no other object may mention the API group.
    let others: Vec<&Value> = objects
        .iter()
        .filter(|o| !kind(o).starts_with("ValidatingAdmissionPolicy"))
        .collect();
    let text = serde_json::to_string(&others).unwrap();
    assert!(!text.contains("admissionregistration"), "webhook RBAC rendered");
    // The release namespace's Secrets rule is the source credentials' one,
    // unchanged: no create, no rule for the certificate Secret.
    assert_eq!(
        rules_for(&objects, "Role", "regcred-system", "secrets"),
        [&json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]})]
    );
    let env: Vec<&str> = container(&objects)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"POD_NAMESPACE"), "{env:?}");
}

/// With cert-manager: a Certificate for the webhook Service's names into the
/// Secret regcred reads, its CA injected by annotation, regcred told the
/// certificate is external, and no RBAC for webhook configurations or for
/// writing Secrets. Without issuerRef the chart bootstraps its own CA.
#[test]
fn admission_with_cert_manager_renders_a_certificate() {
    let objects = render_with("regcred-system", &["--set", "admission.certManager.enabled=true"]);
    let mwc = one(&objects, "MutatingWebhookConfiguration");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "regcred-system/regcred-webhook"
    );
    assert!(mwc["webhooks"][0]["clientConfig"]["caBundle"].is_null());
    assert_eq!(mwc["webhooks"][0]["failurePolicy"], "Ignore");

    assert_eq!(names(&objects, "Certificate"), ["regcred-ca", "regcred-webhook"]);
    let serving = named(&objects, "Certificate", "regcred-webhook");
    assert_eq!(serving["metadata"]["namespace"], "regcred-system");
    assert_eq!(serving["spec"]["secretName"], "regcred-webhook-tls");
    assert_eq!(
        serving["spec"]["dnsNames"],
        json!([
            "regcred-webhook.regcred-system.svc",
            "regcred-webhook.regcred-system.svc.cluster.local",
        ])
    );
    assert_eq!(
        serving["spec"]["issuerRef"],
        json!({"name": "regcred-ca", "kind": "Issuer", "group": "cert-manager.io"})
    );
    // The bootstrap: self-signed Issuer -> CA Certificate -> CA Issuer.
    assert_eq!(names(&objects, "Issuer"), ["regcred-ca", "regcred-selfsigned"]);
    assert_eq!(
        named(&objects, "Issuer", "regcred-selfsigned")["spec"],
        json!({"selfSigned": {}})
    );
    let ca = named(&objects, "Certificate", "regcred-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "regcred-selfsigned");
    assert_eq!(
        named(&objects, "Issuer", "regcred-ca")["spec"],
        json!({"ca": {"secretName": ca["spec"]["secretName"]}})
    );

    assert_eq!(
        args_with(&objects, "--admission-"),
        [
            "--admission-addr=0.0.0.0:9443",
            "--admission-cert-secret=regcred-webhook-tls",
            "--admission-certs=external",
        ]
    );
    assert!(rules_for(&objects, "ClusterRole", "", "mutatingwebhookconfigurations").is_empty());
    let secrets = rules_for(&objects, "Role", "regcred-system", "secrets");
    assert!(
        secrets.contains(&&json!({
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["regcred-webhook-tls"],
            "verbs": ["get", "list", "watch"],
        })),
        "{secrets:?}"
    );
    assert!(
        !secrets.iter().any(|r| r["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v != "get" && v != "list" && v != "watch")),
        "regcred writes no Secret of its namespace with cert-manager: {secrets:?}"
    );

    // An issuer of the cluster's own: only the serving Certificate.
    let own = render_with(
        "regcred-system",
        &[
            "--set",
            "admission.certManager.enabled=true",
            "--set",
            "admission.certManager.issuerRef.name=corporate",
            "--set",
            "admission.certManager.issuerRef.kind=ClusterIssuer",
            "--set",
            "admission.certManager.issuerRef.group=cert-manager.io",
        ],
    );
    assert_eq!(names(&own, "Issuer"), Vec::<&str>::new());
    assert_eq!(names(&own, "Certificate"), ["regcred-webhook"]);
    assert_eq!(
        one(&own, "Certificate")["spec"]["issuerRef"],
        json!({"name": "corporate", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );

    // The full values: cert-manager with a Secret and port of their own.
    let full = render("regcred-full", Some(FULL_VALUES));
    assert_eq!(
        args_with(&full, "--admission-"),
        [
            "--admission-addr=0.0.0.0:10443",
            "--admission-cert-secret=regcred-serving-cert",
            "--admission-certs=external",
        ]
    );
    assert_eq!(
        named(&full, "Certificate", "regcred-webhook")["spec"]["secretName"],
        "regcred-serving-cert"
    );
    assert_eq!(
        one(&full, "MutatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"],
        3
    );
}

/// The API server takes 1 to 30 seconds; the chart says so itself.
#[test]
fn admission_timeout_out_of_range_is_refused() {
    for timeout in ["0", "31"] {
        let set = format!("admission.timeoutSeconds={timeout}");
        let out = std::process::Command::new(regcred_testenv::tools::helm_binary())
            .args(template_args("regcred-system", &["--set", &set]))
            .current_dir(chart_dir())
            .output()
            .expect("running helm");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("admission.timeoutSeconds must be between 1 and 30"),
            "timeoutSeconds={timeout} must be refused: {stderr}"
        );
    }
}

#[tokio::test]
async fn rendered_manifests_pass_server_side_dry_run() {
    let cp = ControlPlane::start().await.expect("test control plane");
    cp.install_crd(&regcred::api::crd_yaml()).await.expect("CRD installs");
    for (group, kind) in [
        ("monitoring.coreos.com", "ServiceMonitor"),
        ("monitoring.coreos.com", "PrometheusRule"),
        ("cert-manager.io", "Issuer"),
        ("cert-manager.io", "Certificate"),
    ] {
        cp.install_crd(&stub_crd(group, kind))
            .await
            .unwrap_or_else(|e| panic!("{kind} CRD installs: {e}"));
    }
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

    // An upgrade keeps the caBundle regcred patched into the live
    // MutatingWebhookConfiguration (the template has none; helm's lookup
    // reads the live one), unless cert-manager injects it.
    // As `helm install` left it: with the release's ownership annotations.
    let rendered = render("regcred-system", None);
    let mut mwc = one(&rendered, "MutatingWebhookConfiguration").clone();
    mwc["metadata"]["annotations"] = json!({
        "meta.helm.sh/release-name": RELEASE,
        "meta.helm.sh/release-namespace": "regcred-system",
    });
    apply(&client, &[&mwc], false).await;
    let ca_bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let patched = json!({"webhooks": [{"name": "pods.regcred.dev", "clientConfig": {"caBundle": ca_bundle}}]});
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .patch("regcred", &PatchParams::default(), &Patch::Strategic(&patched))
        .await
        .unwrap();
    let kubeconfig = format!("--kubeconfig={}", cp.kubeconfig().display());
    for (extra, kept) in [(None, true), (Some("admission.certManager.enabled=true"), false)] {
        // Templates only (the CRD in crds/ is not the release's here).
        let mut args = vec![
            "template",
            RELEASE,
            ".",
            "--namespace",
            "regcred-system",
            "--dry-run=server",
            &kubeconfig,
        ];
        if let Some(set) = extra {
            args.extend(["--set", set]);
        }
        let upgraded = manifests(&helm(&args));
        let webhook = &one(&upgraded, "MutatingWebhookConfiguration")["webhooks"][0];
        let expected = if kept { json!(ca_bundle) } else { Value::Null };
        assert_eq!(webhook["clientConfig"]["caBundle"], expected, "{extra:?}");
    }
}

/// The chart's ServiceAccount, (Cluster)Roles and bindings applied to `cp`
/// for real, with its MutatingWebhookConfiguration (whose caBundle regcred
/// patches; nothing here creates pods, and it fails open anyway), and a
/// kubeconfig for that ServiceAccount's identity.
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
                "MutatingWebhookConfiguration",
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

/// Install only the chart's identity, RBAC and webhook registration, then
/// run the operator as that ServiceAccount through a full static scenario.
#[tokio::test]
async fn operator_does_its_job_with_exactly_the_charts_rbac() {
    let cp = Harness::control_plane().await;
    let admin = cp.client().await.unwrap();
    let (objects, kubeconfig) = chart_identity(&cp).await;

    // The chart's own flags, but metrics and the admission webhook on free
    // loopback ports and the credentials namespace passed by the harness.
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("--metrics-addr={metrics_addr}");
    let admission_port = free_port();
    let admission = format!("--admission-addr=127.0.0.1:{admission_port}");
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
            } else if a.starts_with("--admission-addr=") {
                admission.as_str()
            } else {
                a
            }
        })
        .collect();
    assert!(args.contains(&"--leader-election"), "{args:?}");
    assert!(args.contains(&admission.as_str()), "{args:?}");
    // The Deployment's downward-API environment.
    let operator = start_operator_as(
        &kubeconfig,
        &args,
        &[("POD_NAME", "regcred-0"), ("POD_NAMESPACE", CREDS_NS)],
    );
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

    // The admission webhook: regcred made its certificate Secret and patched
    // its CA into the chart's MutatingWebhookConfiguration, and answers an
    // AdmissionReview over HTTPS, as the API server would call it: by the
    // Service's name (the chart's --admission-dns-names), trusting that
    // caBundle, at the path the chart registers.
    let mwc_name = one(&objects, "MutatingWebhookConfiguration")["metadata"]["name"]
        .as_str()
        .unwrap();
    let secret_name = one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--admission-cert-secret="))
        .expect("--admission-cert-secret");
    h.wait_secret(CREDS_NS, secret_name, "the webhook's certificate Secret", |s| {
        s.data
            .as_ref()
            .is_some_and(|d| d.contains_key("tls.crt") && d.contains_key("tls.key"))
    })
    .await;
    let ca_bundle = eventually(WAIT, "regcred to patch the webhook's caBundle", || {
        let mwcs: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
        async move {
            let mwc = mwcs.get(mwc_name).await.ok()?;
            let webhook = mwc.webhooks?.into_iter().next()?;
            webhook.client_config.ca_bundle.filter(|b| !b.0.is_empty())
        }
    })
    .await;
    let webhook_host = format!("regcred-webhook.{CREDS_NS}.svc");
    let admission_addr: std::net::SocketAddr = format!("127.0.0.1:{admission_port}").parse().unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_bundle.0).expect("the caBundle is PEM")])
        .resolve(&webhook_host, admission_addr)
        .build()
        .unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "6b2c1f0e-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": "rbac-a",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "rbac-a"},
                // A pull secret of its own: the ServiceAccount admission
                // plugin left the ServiceAccount's list (with regcred's
                // Secret) out, so regcred must add its Secret itself.
                "spec": {
                    "serviceAccountName": "default",
                    "imagePullSecrets": [{"name": "own"}],
                    "containers": [{"name": "web", "image": "docker.io/library/nginx"}],
                },
            },
            "oldObject": null,
            "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    });
    let url = format!("https://{webhook_host}:{admission_port}/mutate-pods");
    let answer: Value = eventually(WAIT, &format!("{url} answering an AdmissionReview"), || {
        let request = https.post(&url).json(&review);
        async move { request.send().await.ok()?.error_for_status().ok()?.json().await.ok() }
    })
    .await;
    let response = &answer["response"];
    assert_eq!(response["uid"], review["request"]["uid"], "{answer}");
    assert_eq!(response["allowed"], true, "{answer}");
    // rbac-a is targeted: the pod gets the Secret in its imagePullSecrets,
    // after its own.
    assert_eq!(response["patchType"], "JSONPatch", "{answer}");
    // JSON []byte: a base64 string, or (as kube-rs serializes it, and Go's
    // encoding/json also reads) an array of byte values.
    let patch: Vec<u8> = match &response["patch"] {
        Value::String(b64) => {
            base64::engine::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64")
        }
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).expect("a byte"))
            .collect(),
        _ => panic!("a patch: {answer}"),
    };
    let patch = String::from_utf8(patch).unwrap();
    assert!(
        patch.contains("imagePullSecrets") && patch.contains("\"hub\""),
        "{patch}"
    );

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
    h.wait_rc_gone("hub", WAIT).await;
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

    // Admission registration: the chart's one MutatingWebhookConfiguration,
    // read and patched, and nothing else.
    let mwcs = Api::<MutatingWebhookConfiguration>::all(me.clone());
    mwcs.get("regcred")
        .await
        .expect("reading the chart's MutatingWebhookConfiguration is allowed");
    assert_forbidden(
        mwcs.list(&ListParams::default()).await,
        "listing MutatingWebhookConfigurations",
    );
    assert_forbidden(
        mwcs.patch(
            "someone-elses",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await,
        "patching another MutatingWebhookConfiguration",
    );
    assert_forbidden(
        mwcs.delete("regcred", &DeleteParams::default().dry_run()).await,
        "deleting the chart's MutatingWebhookConfiguration",
    );
    assert_forbidden(
        Api::<ValidatingWebhookConfiguration>::all(me.clone()).get("any").await,
        "reading a ValidatingWebhookConfiguration",
    );
    // Replacing a Secret whole is allowed for the webhook's certificate
    // Secret in the release namespace only.
    let mut cert = Secret::default();
    cert.metadata.name = Some("regcred-webhook-tls".into());
    assert_forbidden(
        Api::<Secret>::namespaced(me.clone(), "rbac-taken")
            .replace("regcred-webhook-tls", &dry, &cert)
            .await,
        "replacing a Secret named like the certificate Secret elsewhere",
    );
    let mut other = Secret::default();
    other.metadata.name = Some("other".into());
    assert_forbidden(
        Api::<Secret>::namespaced(me.clone(), CREDS_NS)
            .replace("other", &dry, &other)
            .await,
        "replacing another Secret of the release namespace",
    );
}

/// The Role's rules for the webhook's certificate Secret suffice on their own
/// (the ClusterRole's cluster-wide secrets rule covers them today, so the
/// test above cannot tell): bound alone to an identity, in a release whose
/// source credentials live elsewhere (no namespace-wide Secrets rule), they
/// let it create the Secret, then read, list and watch it by name, patch and
/// replace it, and nothing more. With cert-manager: read, list and watch
/// by name only.
#[tokio::test]
async fn the_webhook_secret_rules_stand_on_their_own() {
    let cp = ControlPlane::start().await.expect("test control plane");
    let admin = cp.client().await.unwrap();
    let secret = "regcred-webhook-tls";
    for (namespace, cert_manager) in [("regcred-own-ca", false), ("regcred-cert-manager", true)] {
        create_namespace(&admin, namespace, &[]).await;
        let mut extra = vec!["--set", "credentialsNamespace=elsewhere"];
        if cert_manager {
            extra.extend(["--set", "admission.certManager.enabled=true"]);
        }
        let objects = render_with(namespace, &extra);
        let role = objects
            .iter()
            .find(|o| kind(o) == "Role" && o["metadata"]["namespace"] == namespace)
            .unwrap();
        let user = format!("webhook-only-{namespace}");
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": user, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        });
        apply(&admin, &[role, &binding], false).await;
        let kubeconfig = cp.kubeconfig_for(&user, &["system:authenticated"]).unwrap();
        let me = cp.client_from(&kubeconfig).await.unwrap();
        let mine: Api<Secret> = Api::namespaced(me.clone(), namespace);
        let mut tls = Secret::default();
        tls.metadata.name = Some(secret.into());
        tls.string_data = Some([("tls.crt".to_string(), "x".to_string())].into());
        let tls = if cert_manager {
            assert_forbidden(
                mine.create(&PostParams::default(), &tls).await,
                "creating the certificate Secret with cert-manager",
            );
            Api::<Secret>::namespaced(admin.clone(), namespace)
                .create(&PostParams::default(), &tls)
                .await
                .unwrap()
        } else {
            mine.create(&PostParams::default(), &tls)
                .await
                .expect("creating the certificate Secret is allowed")
        };
        mine.get(secret)
            .await
            .expect("reading the certificate Secret is allowed");
        let by_name = format!("metadata.name={secret}");
        let listed = mine
            .list(&ListParams::default().fields(&by_name))
            .await
            .expect("listing the certificate Secret by name is allowed");
        assert_eq!(listed.items.len(), 1);
        let mut events = mine
            .watch(&WatchParams::default().fields(&by_name).timeout(5), "0")
            .await
            .expect("watching the certificate Secret by name is allowed")
            .boxed();
        match events.next().await {
            Some(Ok(WatchEvent::Added(s))) => assert_eq!(s.name_any(), secret),
            other => panic!("watching the certificate Secret by name: {other:?}"),
        }
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"rotated": "yes"}}}));
        if cert_manager {
            assert_forbidden(
                mine.patch(secret, &PatchParams::default(), &patch).await,
                "patching the certificate Secret with cert-manager",
            );
            assert_forbidden(
                mine.replace(secret, &PostParams::default(), &tls).await,
                "replacing the certificate Secret with cert-manager",
            );
        } else {
            mine.patch(secret, &PatchParams::default(), &patch)
                .await
                .expect("patching the certificate Secret is allowed");
            let current = mine.get(secret).await.unwrap();
            mine.replace(secret, &PostParams::default(), &current)
                .await
                .expect("replacing the certificate Secret is allowed");
        }
        assert_forbidden(
            mine.list(&ListParams::default()).await,
            "listing every Secret of the release namespace",
        );
        assert_forbidden(
            mine.list(&ListParams::default().fields("metadata.name=other")).await,
            "listing another Secret by name",
        );
        assert_forbidden(mine.get("other").await, "reading another Secret");
        assert_forbidden(
            mine.delete(secret, &DeleteParams::default().dry_run()).await,
            "deleting the certificate Secret",
        );
    }
}
