//! Namespaces that refuse Secret writes, as a cluster's policy would: a real
//! ValidatingAdmissionPolicy, binding only the namespace it freezes, so
//! tests on a shared control plane freeze only their own.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use regcred_testenv::eventually;
use serde_json::json;

use super::WAIT;

/// What the policy answers a denied write.
const FROZEN: &str = "Secrets are frozen in this namespace by policy";

/// The name of the policy and binding freezing `ns`.
fn policy_name(ns: &str) -> String {
    format!("{ns}-freeze")
}

/// Deny `operations` (`CREATE`, `UPDATE`, `DELETE`) on Secrets in namespace
/// `ns`, for everyone, regcred included, and wait until the API server
/// enforces it: until a dry run of the first operation is denied (an
/// `UPDATE` or `DELETE` first is tried on the Secret named like `ns`, which
/// must exist).
pub async fn freeze_secrets(client: &Client, ns: &str, operations: &[&str]) {
    let name = policy_name(ns);
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": operations, "resources": ["secrets"],
            }]},
            "validations": [{"expression": "false", "message": FROZEN}],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
        },
    }))
    .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy created");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let denied = |result: Result<Secret, kube::Error>| matches!(result, Err(kube::Error::Api(s)) if s.code == 403 || s.code == 422);
    eventually(
        WAIT,
        &format!("the admission policy freezing Secrets in {ns}"),
        || async {
            let result = match operations[0] {
                "CREATE" => secrets.create(&dry, &probe()).await,
                _ => {
                    let patch = json!({"metadata": {"annotations": {"regcred-test/probe": "x"}}});
                    let params = PatchParams {
                        dry_run: true,
                        ..Default::default()
                    };
                    secrets.patch(ns, &params, &Patch::Merge(&patch)).await
                }
            };
            denied(result).then_some(())
        },
    )
    .await;
}

/// Undo [`freeze_secrets`] (a `CREATE` freeze): once a dry-run create passes.
pub async fn thaw_secrets(client: &Client, ns: &str) {
    let name = policy_name(ns);
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(&name, &Default::default())
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(&name, &Default::default())
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, &format!("Secrets in {ns} thawed"), || async {
        secrets.create(&dry, &probe()).await.ok().map(|_| ())
    })
    .await;
}

/// The Secret a dry run tries to create.
fn probe() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("regcred-test-probe".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}
