//! `regcred run`: connect, wait for the CRD, run the controller until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, CustomResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info, warn};

use crate::admission;
use crate::api::RegistryCredential;
use crate::cli::RunArgs;
use crate::connect;
use crate::controller::{self, ControllerConfig};
use crate::error::{Error, Result};
use crate::telemetry::{self, Health, Metrics};

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub fn main(args: RunArgs) -> ExitCode {
    crate::telemetry::init_logging(args.log_format);
    connect::init_crypto();
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
    let client = connect::kube_client(connect::kube_config(args.kubeconfig.as_deref()).await?)?;
    let http = connect::http_client(args.ca_bundle.as_deref())?;
    let health = Health::new(Arc::new(Metrics::default()));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| Error::Config(format!("listening on --metrics-addr {}: {e}", args.metrics_addr)))?;
    tokio::spawn(telemetry::serve(listener, health.clone()));
    wait_for_crd(&client, args.crd_wait_timeout.into()).await?;
    let config = ControllerConfig {
        credentials_namespace: credentials_namespace.clone(),
        concurrency: args.concurrency,
        http,
        health: health.clone(),
        diagnose_pulls: args.diagnose_pulls,
        excluded_namespaces: args.excluded_namespaces.clone(),
    };
    // Every replica keeps the caches: admission answers from them on any
    // replica, and a standby that becomes the leader starts warm.
    let watches = controller::start(client.clone(), &config);
    watches.ctx.limit_registry_checks(args.registry_checks);
    watches.ctx.pace_identity_exchanges(args.identity_exchange_rate);
    let serving = match args.admission_addr {
        Some(addr) => Some(start_admission(&args, addr, &client, &watches, &credentials_namespace).await?),
        None => None,
    };
    let ctx = watches.ctx.clone();
    let ready = health.clone();
    tokio::spawn(async move {
        // The one task waiting on the caches themselves (see `Context::warm_up`).
        ctx.warm_up().await;
        info!("caches are warm");
        if let Some(serving) = serving {
            while serving.current().is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            info!("admission webhook certificate loaded");
        }
        ready.set_ready();
    });
    if !args.leader_election {
        controller::run(watches, config, shutdown_signal()).await;
        return Ok(());
    }

    lead(&args, client, credentials_namespace, watches, config).await
}

/// Leader election: wait for the Lease, run the controller while holding
/// it, exit the moment it is lost so no two replicas ever write at once.
/// Admission and the caches serve all along.
async fn lead(
    args: &RunArgs,
    client: Client,
    credentials_namespace: String,
    watches: controller::Watches,
    config: ControllerConfig,
) -> Result<()> {
    let namespace = args.leader_election_namespace.clone().unwrap_or(credentials_namespace);
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("regcred-{}", std::process::id()));
    let duration = std::time::Duration::from(args.lease_duration).as_secs().max(2);
    let manager = || async {
        LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "setting up leader election on Lease {namespace}/{}: {e}",
                    args.lease_name
                ))
            })
    };
    let (mut leader, mut lease_task) = manager().await?.watch().await;
    info!(lease = %args.lease_name, namespace = %namespace, identity = %identity, "waiting to become the leader");
    let mut shutdown = Box::pin(shutdown_signal());
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let mut rearm_at = tokio::time::Instant::now();
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() {
                return Err(Error::Config("leader election stopped".into()));
            },
            // The lease manager only looks again when the Lease would
            // expire; a leader that stopped gracefully released it, so ask
            // again at once with a fresh manager.
            _ = async {
                tokio::time::sleep_until(rearm_at).await;
                released(&leases, &args.lease_name).await;
            } => {
                drop(leader);
                let _ = lease_task.await;
                (leader, lease_task) = manager().await?.watch().await;
                // Give the new manager time to take the Lease before looking again.
                rearm_at = tokio::time::Instant::now() + Duration::from_secs(2);
            },
            _ = &mut shutdown => return Ok(()),
        }
    }
    info!(identity = %identity, "became the leader");
    let lost = async move {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                return leader;
            }
        }
    };
    let stopped = tokio::select! {
        _ = controller::run(watches, config, shutdown) => true,
        _ = lost => false,
    };
    if !stopped {
        error!(identity = %identity, "lost the leader-election Lease; exiting so a standby takes over");
        std::process::exit(2);
    }
    release(lease_task, &args.lease_name).await;
    Ok(())
}

/// After a graceful stop: the `lost` future, and with it the last receiver
/// of the lease channel, is gone; the manager releases the Lease when it
/// sees that, so a standby takes over at once instead of after the lease
/// duration. Aborting the task instead would leave the Lease held.
async fn release(
    lease_task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    lease_name: &str,
) {
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!(lease = %lease_name, "released the leader-election Lease"),
        Ok(Ok(Err(e))) => {
            warn!(error = %e, "releasing the leader-election Lease failed; a standby takes over when it expires")
        }
        Ok(Err(e)) => warn!(error = %e, "the leader-election task failed"),
        Err(_) => warn!("releasing the leader-election Lease timed out; a standby takes over when it expires"),
    }
}

/// Start the admission webhook: its certificate loop and its HTTPS server.
/// Returns the certificate it serves (none until the loop has loaded one).
async fn start_admission(
    args: &RunArgs,
    addr: std::net::SocketAddr,
    client: &Client,
    watches: &controller::Watches,
    credentials_namespace: &str,
) -> Result<Arc<admission::certs::ServingCert>> {
    let own_namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| credentials_namespace.to_string());
    if args.admission_certs == admission::certs::Source::Regcred && args.admission_dns_names.is_empty() {
        return Err(Error::Config(
            "--admission-addr with --admission-certs=regcred needs --admission-dns-names (the webhook Service's names)"
                .into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("listening on --admission-addr {addr}: {e}")))?;
    let serving = Arc::new(admission::certs::ServingCert::default());
    let certs = admission::certs::CertConfig {
        namespace: own_namespace.clone(),
        secret: args.admission_cert_secret.clone(),
        source: args.admission_certs,
        webhook_config: args.admission_webhook_config.clone(),
        names: args.admission_dns_names.clone(),
        validity: args.admission_cert_validity.into(),
        ca_validity: args.admission_ca_validity.into(),
    };
    tokio::spawn(admission::certs::run(client.clone(), certs, serving.clone()));
    let handler = Arc::new(admission::Admission::new(
        watches.ctx.clone(),
        admission::Config {
            own_namespace,
            excluded_namespaces: args.excluded_namespaces.clone(),
            write_timeout: args.admission_write_timeout.into(),
        },
    ));
    tokio::spawn(admission::server::serve(
        listener,
        serving.clone(),
        admission::server::router(handler),
    ));
    Ok(serving)
}

/// Resolves once the Lease `name` is held by nobody (released by a leader
/// that stopped); keeps waiting while the API server is unreachable.
async fn released(leases: &Api<Lease>, name: &str) {
    let free = |lease: Option<&Lease>| {
        lease
            .and_then(|l| l.spec.as_ref())
            .is_some_and(|s| s.holder_identity.as_deref().is_none_or(str::is_empty))
    };
    loop {
        match kube::runtime::wait::await_condition(leases.clone(), name, free).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "watching the leader-election Lease failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Wait until the RegistryCredential CRD is established, saying what to do meanwhile.
async fn wait_for_crd(client: &Client, timeout: Duration) -> Result<()> {
    let name = RegistryCredential::crd_name();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let started = Instant::now();
    let mut warned = false;
    let mut unreachable_for = 0u32;
    loop {
        let established = match api.get_opt(name).await {
            Ok(Some(crd)) => crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            Ok(None) => false,
            // The API server refused us: a configuration problem, not a wait.
            Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
                return Err(Error::kube(format!("reading CustomResourceDefinition {name}"))(
                    kube::Error::Api(s),
                ));
            }
            // Unreachable (starting, restarting, a network blip): wait for it,
            // saying why, instead of exiting.
            Err(e) => {
                unreachable_for += 1;
                let wait = Duration::from_secs(1 << unreachable_for.min(5)).min(Duration::from_secs(30));
                warn!(error = %e, retry_in_secs = wait.as_secs(), "cannot reach the API server; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
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
