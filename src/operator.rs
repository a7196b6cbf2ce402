//! `regcred run`: connect, wait for the CRD, run the controller until SIGTERM.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, CustomResourceExt};
use tracing::{error, info, warn};

use crate::api::RegistryCredential;
use crate::cli::RunArgs;
use crate::controller::{self, ControllerConfig};
use crate::error::{Error, Result};

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Install the process-wide rustls crypto provider shared by kube and the cloud SDKs.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn main(args: RunArgs) -> ExitCode {
    crate::telemetry::init_logging(args.log_format);
    init_crypto();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "regcred stopped");
            ExitCode::FAILURE
        }
    }
}

async fn client(args: &RunArgs) -> Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(format!("no in-cluster config or kubeconfig: {e}")))?,
    };
    Client::try_from(config).map_err(|e| Error::Config(format!("building the Kubernetes client: {e}")))
}

fn credentials_namespace(args: &RunArgs) -> Result<String> {
    if let Some(ns) = &args.credentials_namespace {
        return Ok(ns.clone());
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE") {
        return Ok(ns);
    }
    std::fs::read_to_string(SA_NAMESPACE_FILE)
        .map(|s| s.trim().to_string())
        .map_err(|_| Error::Config("cannot tell which namespace holds source credentials: pass --credentials-namespace (outside a cluster) or set POD_NAMESPACE".into()))
}

async fn run(args: RunArgs) -> Result<()> {
    let credentials_namespace = credentials_namespace(&args)?;
    let client = client(&args).await?;
    let http = http_client(args.ca_bundle.as_deref())?;
    wait_for_crd(&client, args.crd_wait_timeout.into()).await?;
    controller::run(
        client,
        ControllerConfig {
            credentials_namespace,
            concurrency: args.concurrency,
            http,
        },
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// The HTTP client for provider calls and registry checks: bounded timeouts,
/// system roots plus the optional CA bundle.
pub fn http_client(ca_bundle: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("regcred/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_bundle {
        let pem =
            std::fs::read(path).map_err(|e| Error::Config(format!("reading --ca-bundle {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("--ca-bundle {} is not a PEM bundle: {e}", path.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))
}

/// Wait until the RegistryCredential CRD is established, saying what to do meanwhile.
async fn wait_for_crd(client: &Client, timeout: Duration) -> Result<()> {
    let name = RegistryCredential::crd_name();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let started = Instant::now();
    let mut warned = false;
    loop {
        let established = match api.get_opt(name).await {
            Ok(Some(crd)) => crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            Ok(None) => false,
            Err(e) => return Err(Error::kube(format!("reading CustomResourceDefinition {name}"))(e)),
        };
        if established {
            info!(crd = name, "CRD is installed");
            return Ok(());
        }
        if !timeout.is_zero() && started.elapsed() >= timeout {
            return Err(Error::CrdMissing(format!(
                "{name} not established after {timeout:?}; install it with `kubectl apply -f crds/` or the Helm chart"
            )));
        }
        if !warned {
            warn!(
                crd = name,
                "the RegistryCredential CRD is not installed yet; install it with `kubectl apply -f crds/` or the Helm chart. Waiting"
            );
            warned = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    info!("shutting down");
}
