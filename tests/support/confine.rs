//! regcred as the chart runs it: its ServiceAccount, exactly the chart's
//! RBAC, and the chart's confinement policies (ValidatingAdmissionPolicies
//! matching that ServiceAccount), rendered by helm from charts/regcred and
//! applied to a test's control plane. The operator then authenticates with
//! a real ServiceAccount token (TokenRequest), so the API server authorizes
//! and admits its requests as it would in a cluster.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use regcred_testenv::{ControlPlane, eventually};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CREDS_NS, WAIT};

/// The chart's ServiceAccount (the release `regcred`'s full name).
pub const OPERATOR_SA: &str = "regcred";
/// The kinds that make regcred's identity and confinement.
const IDENTITY_KINDS: [&str; 7] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// `helm template` of charts/regcred as release `regcred` into the
/// credentials namespace, with `sets` (`key=value`), as JSON objects.
pub fn render_chart(sets: &[&str]) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/regcred");
    let mut args = vec![
        "template",
        "regcred",
        ".",
        "--namespace",
        CREDS_NS,
        "--kube-version",
        regcred_testenv::tools::pinned("K8S_VERSION"),
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let yaml = regcred_testenv::tools::helm(&chart, &args);
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).expect("helm renders valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The rendered objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Server-side apply `objects` (cluster-scoped or in their namespace).
pub async fn apply_objects(client: &Client, objects: &[&Value]) {
    for object in objects {
        let (group, version) = match object["apiVersion"].as_str().expect("apiVersion").split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", object["apiVersion"].as_str().unwrap()),
        };
        let kind = object["kind"].as_str().expect("kind");
        let plural = match kind {
            "ValidatingAdmissionPolicy" => "validatingadmissionpolicies".to_string(),
            k => format!("{}s", k.to_lowercase()),
        };
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
        let name = object["metadata"]["name"].as_str().expect("name");
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &PatchParams::apply("regcred-test").force(), &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
}

/// The path of the kubeconfig [`confine`] writes for `cp`.
fn confined_kubeconfig_path(cp: &ControlPlane) -> PathBuf {
    cp.dir().join("regcred-serviceaccount.kubeconfig")
}

fn chart_args_path(cp: &ControlPlane) -> PathBuf {
    cp.dir().join("regcred-chart-args")
}

/// The `regcred run` flags of the chart's Deployment that shape what
/// regcred may touch (today `--excluded-namespaces`): a confined operator
/// runs with them, as in the chart, so that it does not try what the
/// policies deny.
fn chart_args(objects: &[Value]) -> Vec<String> {
    let deployment = of_kind(objects, "Deployment");
    let args = deployment[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the chart's Deployment has args");
    args.iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("--excluded-namespaces="))
        .map(String::from)
        .collect()
}

/// The chart's flags a confined operator on `cp` runs with ([`chart_args`]);
/// none before [`confine`] has run there.
pub fn operator_chart_args(cp: &ControlPlane) -> Vec<String> {
    std::fs::read_to_string(chart_args_path(cp))
        .map(|s| s.lines().filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

/// The kubeconfig regcred runs with on `cp`: its ServiceAccount's once
/// [`confine`] has run there, the admin's before.
pub fn operator_kubeconfig(cp: &ControlPlane) -> PathBuf {
    let confined = confined_kubeconfig_path(cp);
    if confined.is_file() {
        confined
    } else {
        cp.kubeconfig().to_path_buf()
    }
}

/// Apply the chart's ServiceAccount, RBAC and confinement policies (chart
/// defaults, with `sets`) to `cp`, wait until the API server enforces the
/// policies for regcred's ServiceAccount, and write the kubeconfig with
/// that ServiceAccount's token that every operator later started on `cp`
/// runs with. The credentials namespace must exist.
pub async fn confine(cp: &ControlPlane, sets: &[&str]) -> PathBuf {
    let started = std::time::Instant::now();
    let admin = cp.client().await.unwrap();
    let objects = render_chart(sets);
    let identity: Vec<&Value> = IDENTITY_KINDS.iter().flat_map(|k| of_kind(&objects, k)).collect();
    assert!(
        !of_kind(&objects, "ValidatingAdmissionPolicy").is_empty(),
        "the chart renders no confinement policy"
    );
    apply_objects(&admin, &identity).await;
    std::fs::write(chart_args_path(cp), chart_args(&objects).join("\n")).unwrap();
    let path = confined_kubeconfig_path(cp);
    let kubeconfig = token_kubeconfig(cp, CREDS_NS, OPERATOR_SA).await;
    std::fs::write(&path, kubeconfig).unwrap();
    let regcred = cp.client_from(&path).await.unwrap();
    wait_enforced(&regcred).await;
    println!(
        "BENCH confine: chart rendered, {} objects applied, token issued and policies enforced in {} ms",
        identity.len(),
        started.elapsed().as_millis()
    );
    path
}

/// A kubeconfig for `cp` authenticating with a token of ServiceAccount
/// `ns/name` from the TokenRequest API (valid for a day).
pub async fn token_kubeconfig(cp: &ControlPlane, ns: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let admin = cp.client().await.unwrap();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin, ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest served by the test apiserver")
        .status
        .expect("token issued")
        .token;
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    config["users"] = json!([{"name": "envtest-user", "user": {"token": token}}]);
    serde_yaml::to_string(&config).unwrap()
}

/// Until a dry-run create of an Opaque Secret by regcred is denied by the
/// confinement policy (policies take a moment to be loaded).
async fn wait_enforced(regcred: &Client) {
    let secrets: Api<Secret> = Api::namespaced(regcred.clone(), "default");
    let probe: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred-confinement-probe"},
        "type": "Opaque",
    }))
    .unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, "the confinement policy enforced for regcred", || {
        let secrets = secrets.clone();
        let (probe, dry) = (probe.clone(), dry.clone());
        async move {
            match secrets.create(&dry, &probe).await {
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("dockerconfigjson") => Some(()),
                _ => None,
            }
        }
    })
    .await;
    // The API server loads each policy and binding on its own: the one the
    // chart applies last is probed too. Until it holds, the probe is given a
    // token of regcred's own ServiceAccount, which it already has.
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let own: Api<ServiceAccount> = Api::namespaced(regcred.clone(), CREDS_NS);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    eventually(WAIT, "the token policy enforced for regcred", || {
        let (own, request) = (own.clone(), request.clone());
        async move {
            match own
                .create_token_request(OPERATOR_SA, &PostParams::default(), &request)
                .await
            {
                Err(kube::Error::Api(s))
                    if s.code == 403 && s.message.contains("may not request ServiceAccount tokens") =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
}

/// The message of a request denied by the API server (403), or a panic
/// saying what happened instead.
pub fn denial<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => s.message,
        other => panic!("{what}: expected a denial (403), got {other:?}"),
    }
}

/// A client for user `user`, a tenant with the built-in `edit` rights in
/// namespace `ns` only (a RoleBinding to `system:aggregate-to-edit`, the
/// rules `edit` aggregates; these control planes run no controller-manager
/// to aggregate them into `edit` itself).
pub async fn tenant_with_edit(cp: &ControlPlane, ns: &str, user: &str) -> Client {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-edit"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:aggregate-to-edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(cp.client().await.unwrap(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("tenant RoleBinding created");
    let kubeconfig = cp.kubeconfig_for(user, &["system:authenticated"]).unwrap();
    cp.client_from(&kubeconfig).await.unwrap()
}
