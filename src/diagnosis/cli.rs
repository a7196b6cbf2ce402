//! `regcred diagnose` (and `kubectl regcred diagnose`): every container of
//! the namespace's pods (or of one pod) waiting in `ErrImagePull` or
//! `ImagePullBackOff` now, diagnosed with the user's kubeconfig and only the
//! reads their RBAC allows. Never writes; works whether or not the operator runs.

use std::process::ExitCode;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::gather::not_read;
use super::{Diagnosis, Evidence, Target, decide, gather};
use crate::cli::{DiagnoseArgs, OutputFormat};

/// Waiting reasons of a container whose image pull failed.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
/// Reasons of the kubelet's Events about image pulls.
const EVENT_REASONS: [&str; 5] = [
    "Failed",
    "BackOff",
    "FailedToRetrieveImagePullSecret",
    "ErrImageNeverPull",
    "InspectFailed",
];

/// The JSON document `-o json` prints.
#[derive(Serialize)]
struct Output<'a> {
    diagnoses: &'a [Diagnosis],
}

pub fn main(args: DiagnoseArgs) -> ExitCode {
    crate::operator::init_crypto();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(diagnoses) => {
            match args.output {
                OutputFormat::Json => {
                    let json = serde_json::to_string_pretty(&Output { diagnoses: &diagnoses })
                        .expect("a diagnosis always serializes");
                    println!("{json}");
                }
                OutputFormat::Text => print!("{}", render_text(&diagnoses)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &DiagnoseArgs) -> Result<Vec<Diagnosis>, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig or in-cluster config: {e}"))?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| format!("building the Kubernetes client: {e}"))?;
    let http = crate::operator::http_client(args.ca_bundle.as_deref()).map_err(|e| e.to_string())?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = match &args.pod {
        Some(name) => vec![
            pods.get(name)
                .await
                .map_err(|e| format!("reading pod {namespace}/{name}: {e}"))?,
        ],
        None => {
            pods.list(&ListParams::default())
                .await
                .map_err(|e| format!("listing pods in namespace {namespace}: {e}"))?
                .items
        }
    };
    let mut diagnoses = Vec::new();
    for pod in &pods {
        diagnoses.extend(diagnose_pod(&client, &http, pod).await);
    }
    Ok(diagnoses)
}

/// The containers of `pod` waiting on a failed pull.
fn failing_containers(pod: &Pod) -> Vec<&ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .filter(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .is_some_and(|r| PULL_FAILURES.contains(&r))
        })
        .collect()
}

/// Whether a container of `pod` waits on a failed pull now.
pub fn pull_failing(pod: &Pod) -> bool {
    !failing_containers(pod).is_empty()
}

/// A diagnosis per container of `pod` that is waiting on a failed pull.
pub async fn diagnose_pod(client: &Client, http: &reqwest::Client, pod: &Pod) -> Vec<Diagnosis> {
    let failing = failing_containers(pod);
    if failing.is_empty() {
        return Vec::new();
    }
    let events = pull_events(client, pod).await;
    let mut diagnoses = Vec::new();
    for status in failing {
        let image = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .find(|c| c.name == status.name)
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| status.image.clone());
        let mut messages: Vec<String> = status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.clone())
            .into_iter()
            .collect();
        let mut evidence = Vec::new();
        match &events {
            Ok(events) => {
                let mut reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
                reasons.sort_unstable();
                reasons.dedup();
                evidence.push(Evidence::new(
                    "kubelet Events",
                    if reasons.is_empty() {
                        "none left about image pulls".to_string()
                    } else {
                        format!("reasons [{}]", reasons.join(", "))
                    },
                ));
                if let Some(message) = events
                    .iter()
                    .find(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
                    .and_then(|e| e.message.clone())
                {
                    evidence.push(Evidence::new("kubelet's FailedToRetrieveImagePullSecret", message));
                }
                let field_path = format!("{{{}}}", status.name);
                messages.extend(
                    events
                        .iter()
                        .filter(|e| {
                            e.involved_object
                                .field_path
                                .as_deref()
                                .is_none_or(|p| p.is_empty() || p.ends_with(&field_path))
                        })
                        .filter_map(|e| e.message.clone()),
                );
            }
            Err(why) => evidence.push(Evidence::new("kubelet Events", why.clone())),
        }
        let target = Target {
            pod,
            container: &status.name,
            image: &image,
            messages,
            evidence,
        };
        diagnoses.push(decide(gather(client, http, target).await));
    }
    diagnoses
}

/// The kubelet's image-pull Events about this pod (this incarnation), newest first.
async fn pull_events(client: &Client, pod: &Pod) -> Result<Vec<Event>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={}",
        pod.name_any()
    ));
    let list = Api::<Event>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await
        .map_err(|e| not_read(&e))?;
    let uid = pod.uid();
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| uid.is_none() || e.involved_object.uid == uid)
        .filter(|e| e.reason.as_deref().is_some_and(|r| EVENT_REASONS.contains(&r)))
        .collect();
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| std::cmp::Reverse(when(e)));
    Ok(events)
}

/// The text output: one block per container.
pub fn render_text(diagnoses: &[Diagnosis]) -> String {
    if diagnoses.is_empty() {
        return "No container is waiting in ErrImagePull or ImagePullBackOff.\n".to_string();
    }
    let mut out = String::new();
    for d in diagnoses {
        out.push_str(&format!(
            "{}/{} container {}: {}\n  {}: {}\n  Fix: {}\n",
            d.namespace,
            d.pod,
            d.container,
            d.image,
            d.label(),
            d.message,
            d.fix
        ));
        if let Some(credential) = &d.credential {
            out.push_str(&format!("  RegistryCredential: {credential}\n"));
        }
        out.push_str("  Evidence:\n");
        for e in &d.evidence {
            out.push_str(&format!("    {}: {}\n", e.check, e.result));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::{Cause, Detail};

    #[test]
    fn text_output_names_the_pod_the_cause_the_fix_and_every_check() {
        let d = Diagnosis {
            namespace: "team".into(),
            pod: "app".into(),
            container: "main".into(),
            image: "reg.io/team/app:1".into(),
            cause: Cause::CredentialMissing,
            detail: Some(Detail::PodAdmittedBeforeLink),
            message: "admitted before the link".into(),
            fix: "recreate the pod".into(),
            evidence: vec![Evidence::new("pod imagePullSecrets", "[]")],
            credential: Some("reg".into()),
        };
        assert_eq!(
            render_text(&[d]),
            "team/app container main: reg.io/team/app:1\n  CredentialMissing/PodAdmittedBeforeLink: admitted before \
             the link\n  Fix: recreate the pod\n  RegistryCredential: reg\n  Evidence:\n    pod imagePullSecrets: \
             []\n\n"
        );
        assert_eq!(
            render_text(&[]),
            "No container is waiting in ErrImagePull or ImagePullBackOff.\n"
        );
    }
}
