//! The demo's cluster helpers: waiting, objects, and what a user looks at.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use regcred_testenv::objects;
use regcred_testenv::{ControlPlane, Operator, poll_until};
use serde_json::Value;

use crate::output::{print_table, say, secs};
use crate::{CREDS_NS, MANAGED_BY};

/// Poll `check` until it returns `Ok(Ok(value))`; an `Err` ends the wait
/// at once, `Ok(Err(state))` is "not yet" with what was seen. Fails when the
/// operator exits or after `timeout`. Returns the value and the time waited.
pub(crate) async fn wait_for<T, F, Fut>(
    operator: &mut Operator,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let started = Instant::now();
    let waited = poll_until(timeout, || {
        let exited = operator.exited();
        let next = check();
        async move {
            if let Some(status) = exited {
                return ControlFlow::Break(Err(anyhow::anyhow!(
                    "the operator exited ({status}) while waiting for {what}"
                )));
            }
            match next.await {
                Ok(Ok(value)) => ControlFlow::Break(Ok(value)),
                Ok(Err(state)) => ControlFlow::Continue(state),
                Err(e) => ControlFlow::Break(Err(e)),
            }
        }
    })
    .await;
    match waited {
        Ok(done) => done.map(|value| (value, started.elapsed())),
        Err(state) => bail!(
            "timed out after {} waiting for {what}; last seen: {state}",
            secs(timeout)
        ),
    }
}

pub(crate) fn rc_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("regcred.dev", "v1alpha1", "RegistryCredential");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "registrycredentials"),
    )
}

pub(crate) async fn create_namespace(client: &Client, name: &str, demo: bool) -> anyhow::Result<()> {
    let labels: &[(&str, &str)] = if demo { &[("demo", "yes")] } else { &[] };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &objects::namespace(name, labels))
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// There is no controller-manager here to create a namespace's `default` ServiceAccount.
pub(crate) async fn create_default_sa(client: &Client, ns: &str, pull: &[&str]) -> anyhow::Result<()> {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &objects::service_account("default", pull))
        .await
        .with_context(|| format!("creating ServiceAccount {ns}/default"))?;
    Ok(())
}

pub(crate) async fn put_source_secret(client: &Client, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
    Api::<Secret>::namespaced(client.clone(), CREDS_NS)
        .create(&PostParams::default(), &objects::secret(name, data))
        .await
        .with_context(|| format!("creating Secret {CREDS_NS}/{name}"))?;
    Ok(())
}

/// `(status, reason, message)` of a condition in a status object.
pub(crate) fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str() == Some(type_))?;
    Some((text(&c["status"]), text(&c["reason"]), text(&c["message"])))
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `kubectl get registrycredentials -o wide`, or the same table from the
/// API server's Table API when kubectl is not installed.
pub(crate) async fn show_table(cp: &ControlPlane, client: &Client) -> anyhow::Result<()> {
    if let Some(kubectl) = find_on_path("kubectl") {
        let kubeconfig = cp.kubeconfig().to_path_buf();
        say(&format!(
            "$ kubectl --kubeconfig {} get registrycredentials -o wide",
            kubeconfig.display()
        ));
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["get", "registrycredentials", "-o", "wide"])
                .env_remove("KUBECONFIG")
                .output()
        })
        .await?;
        match output {
            Ok(out) if out.status.success() => {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    say(line);
                }
                return Ok(());
            }
            Ok(out) => say(&format!(
                "(kubectl failed: {}; asking the API server for the table instead)",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => say(&format!(
                "(running kubectl: {e}; asking the API server for the table instead)"
            )),
        }
    } else {
        say("kubectl is not installed; the same table from the API server's Table API:");
        say("$ GET /apis/regcred.dev/v1alpha1/registrycredentials  (Accept: ...;as=Table;g=meta.k8s.io)");
    }
    let request = http::Request::get("/apis/regcred.dev/v1alpha1/registrycredentials")
        .header(http::header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    let table: Value = client
        .request(request)
        .await
        .context("GET the RegistryCredential table")?;
    let header: Vec<String> = table["columnDefinitions"]
        .as_array()
        .context("a Table without columnDefinitions")?
        .iter()
        .map(|c| text(&c["name"]).to_uppercase())
        .collect();
    let rows: Vec<Vec<String>> = table["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row["cells"].as_array().into_iter().flatten().map(text).collect())
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header, &rows, 4);
    Ok(())
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// One row per managed Secret in `ns`: never its data, only the hosts it authenticates to.
pub(crate) async fn managed_secrets(client: &Client, ns: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let list = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(MANAGED_BY))
        .await
        .with_context(|| format!("listing the managed Secrets in {ns}"))?;
    Ok(list
        .items
        .iter()
        .map(|s| {
            let label = |k: &str| s.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
            let annotation = |k: &str| s.metadata.annotations.as_ref().and_then(|a| a.get(k)).cloned();
            let hosts = s
                .data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
                .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
                .and_then(|config| {
                    config["auths"]
                        .as_object()
                        .map(|auths| auths.keys().cloned().collect::<Vec<_>>().join(", "))
                })
                .unwrap_or_else(|| "<unreadable>".into());
            vec![
                ns.to_string(),
                s.metadata.name.clone().unwrap_or_default(),
                s.type_.clone().unwrap_or_default(),
                label("regcred.dev/credential").unwrap_or_else(|| "<none>".into()),
                annotation("regcred.dev/not-after").unwrap_or_else(|| "<none>".into()),
                hosts,
            ]
        })
        .collect())
}

/// The series a user alerts on, from the operator's /metrics.
pub(crate) async fn metrics(http: &reqwest::Client, addr: &str) -> anyhow::Result<Vec<String>> {
    let body = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(body
        .lines()
        .filter(|l| {
            [
                "regcred_credential_expiry_timestamp_seconds{",
                "regcred_pull_auth{",
                "regcred_namespaces_synced{",
                "regcred_mint_attempts_total{",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect())
}
