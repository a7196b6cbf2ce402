//! Wiring: watches, caches and the controller loop.
//!
//! Watches are narrow: RegistryCredentials, Namespaces, ServiceAccounts,
//! Secrets carrying regcred's managed-by label, and Secrets of the
//! credentials namespace. Never a cluster-wide watch of all Secrets.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::api::RegistryCredential;
use crate::reconcile::{self, Caches, Context, build};
use crate::telemetry::Health;

pub struct ControllerConfig {
    pub credentials_namespace: String,
    pub concurrency: u16,
    pub http: reqwest::Client,
    pub health: Arc<Health>,
    /// Follow the kubelet's image-pull failures, diagnose and repair them.
    pub diagnose_pulls: bool,
}

/// A cache of `api` filtered by `wc`, and the stream of changes that feeds it.
fn cached<K>(api: Api<K>, wc: watcher::Config) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, wc.any_semantic()).default_backoff().modify(|o: &mut K| {
            // Managed fields are never read; dropping them halves the cache.
            o.meta_mut().managed_fields = None;
        }),
    )
    .touched_objects()
    .filter_map(move |r| {
        let kind = kind.clone();
        async move {
            match r {
                Ok(_) => Some(()),
                Err(e) => {
                    warn!(kind = %kind, error = %e, "watch error; retrying with backoff");
                    None
                }
            }
        }
    });
    (store, stream)
}

/// Run until `shutdown` resolves.
pub async fn run(client: Client, config: ControllerConfig, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (namespaces, ns_changes) = cached(Api::<Namespace>::all(client.clone()), watcher::Config::default());
    let (service_accounts, sa_changes) = cached(Api::<ServiceAccount>::all(client.clone()), watcher::Config::default());
    let (managed_secrets, managed_changes) = cached(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(build::MANAGED_SELECTOR),
    );
    let (source_secrets, source_changes) = cached(
        Api::<Secret>::namespaced(client.clone(), &config.credentials_namespace),
        watcher::Config::default(),
    );
    // Any change of these may concern any RegistryCredential (a namespace that
    // starts or stops matching, a new ServiceAccount, a Secret edited by someone
    // else, a source Secret rotated); there are few RegistryCredentials, so all
    // are reconciled and each finds what, if anything, to write.
    let changes = futures::stream::select_all([
        ns_changes.boxed(),
        sa_changes.boxed(),
        managed_changes.boxed(),
        source_changes.boxed(),
    ]);

    let reporter = Reporter {
        controller: "regcred".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.credentials_namespace.clone(),
        Caches {
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
        },
        Recorder::new(client.clone(), reporter),
        config.http,
        config.health.metrics.clone(),
    ));
    let warm = ctx.clone();
    let health = config.health.clone();
    tokio::spawn(async move {
        warm.wait_ready().await;
        health.set_ready();
        info!("caches are warm");
    });

    let resyncs = ctx.resyncs().expect("the controller takes the resync stream once");
    if config.diagnose_pulls {
        tokio::spawn(crate::diagnosis::watch::run(ctx.clone()));
    }
    info!(credentials_namespace = %config.credentials_namespace, "controller starting");
    Controller::new(
        Api::<RegistryCredential>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .with_config(
        controller::Config::default()
            .concurrency(config.concurrency)
            .debounce(Duration::from_millis(50)),
    )
    .reconcile_all_on(changes)
    .reconcile_all_on(resyncs)
    .graceful_shutdown_on(shutdown)
    .run(reconcile::reconcile, reconcile::error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            match e {
                controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                other => warn!(error = %other, "controller"),
            }
        }
    })
    .await;
    info!("controller stopped");
}
