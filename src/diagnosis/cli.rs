//! `regcred diagnose` (and `kubectl regcred diagnose`): every container of
//! the namespace's pods (or of one pod) waiting on its image now
//! (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`,
//! `ErrImageNeverPull`), diagnosed with the user's kubeconfig and only the
//! reads their RBAC allows. Never writes; works whether or not the operator runs.

use std::process::ExitCode;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::Diagnosis;
use super::pod::{PULL_FAILURES, diagnose_pod};
use crate::cli::{DiagnoseArgs, OutputFormat};
use crate::connect;

/// The JSON document `-o json` prints.
#[derive(Serialize)]
struct Output<'a> {
    diagnoses: &'a [Diagnosis],
}

pub fn main(args: DiagnoseArgs) -> ExitCode {
    crate::connect::init_crypto();
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
    let config = connect::kube_config(args.kubeconfig.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = connect::kube_client(config).map_err(|e| e.to_string())?;
    let http = connect::http_client(args.ca_bundle.as_deref()).map_err(|e| e.to_string())?;

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

/// The text output: one block per container.
pub fn render_text(diagnoses: &[Diagnosis]) -> String {
    if diagnoses.is_empty() {
        return format!("No container is waiting in {}.\n", PULL_FAILURES.join(", "));
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
    use crate::diagnosis::{Cause, Detail, Evidence};

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
            "No container is waiting in ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull.\n"
        );
    }
}
