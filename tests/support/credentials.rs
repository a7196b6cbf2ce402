//! RegistryCredentials as tests write them (JSON, as `kubectl apply` takes
//! them), their sources, and what their status says.

use kube::Client;
use regcred::api::RegistryCredentialStatus;
use regcred_testenv::fakes::Fault;
use regcred_testenv::fakes::google::{TokenServer, service_account_key_json};
use regcred_testenv::registry::{Auth, Registry};
use serde_json::{Value, json};

use super::put_secret;

/// The key of Docker Hub in a `.dockerconfigjson`.
pub const HUB: &str = "https://index.docker.io/v1/";

/// A RegistryCredential `name` with `spec`.
pub fn registry_credential(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "regcred.dev/v1alpha1",
        "kind": "RegistryCredential",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A RegistryCredential `name` minting with `provider` into the namespaces
/// `namespaces` selects (`{"names": …}` or `{"selector": …}`). Pull-auth
/// checks are disabled: tests of the checks turn them on themselves, and
/// elsewhere there is no registry behind the hosts, or the pulls are the proof.
pub fn rc(name: &str, provider: Value, namespaces: Value) -> Value {
    registry_credential(
        name,
        json!({"provider": provider, "target": {"namespaces": namespaces}, "healthCheck": {"mode": "Disabled"}}),
    )
}

/// A RegistryCredential `name` with the static provider for `registry`,
/// reading source Secret `secret`, writing to `target` (the whole
/// `spec.target`), pull-auth checks disabled as in [`rc`].
pub fn static_rc(name: &str, registry: &str, secret: &str, target: Value) -> Value {
    registry_credential(
        name,
        json!({
            "provider": {"static": {"registry": registry, "secretRef": {"name": secret}}},
            "target": target,
            "healthCheck": {"mode": "Disabled"},
        }),
    )
}

/// RegistryCredential `gcr`: the GCR provider for `gcr.io` with the
/// service-account key in Secret `gcp-sa` ([`put_gcp_key`]), writing to
/// `namespaces`, pull-auth checks disabled.
pub fn gcr_rc(namespaces: &[&str]) -> Value {
    let provider = json!({"gcr": {"registries": ["gcr.io"], "auth": {"serviceAccountKey": {"secretRef": {"name": "gcp-sa", "key": "key.json"}}}}});
    rc("gcr", provider, json!({"names": namespaces}))
}

/// A service-account key whose `token_uri` is `google`, as `key.json` in the
/// Secret `name` of the credentials namespace.
pub async fn put_gcp_key(client: &Client, name: &str, google: &TokenServer) {
    put_secret(
        client,
        name,
        &[("key.json", &service_account_key_json(&google.token_uri()))],
    )
    .await;
}

/// The reason `status` gives for namespace `ns` in `failedNamespaces`.
pub fn failed_in<'a>(status: &'a RegistryCredentialStatus, ns: &str) -> Option<&'a str> {
    status
        .failed_namespaces
        .iter()
        .find(|f| f.namespace == ns)
        .map(|f| f.reason.as_str())
}

/// A registry (Bearer, user `alice` / `pw`) whose token endpoint answers
/// 400, which says nothing about the credential: every check of it ends
/// `Unknown`. Its token requests count the checks.
pub async fn registry_answering_unknown() -> Registry {
    let registry = Registry::start(Auth::Token {
        users: vec![("alice".into(), "pw".into())],
        grants: vec![("alice".into(), "team/app".into())],
    })
    .await
    .expect("docker-registry starts");
    registry.set_token_fault(Fault::Status {
        code: 400,
        retry_after: None,
    });
    registry
}

/// A `127.0.0.1:<port>` nothing listens on: connections are refused.
pub fn closed_registry() -> String {
    format!("127.0.0.1:{}", regcred_testenv::free_port())
}
