//! Logs (text or JSON, one span per reconcile), Prometheus metrics and the
//! HTTP endpoints `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub credential: String,
    pub registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    /// `success`, `error` or `throttled`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullAuthLabels {
    pub credential: String,
    pub registry: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullFailureLabels {
    /// The RegistryCredential covering the image's registry; empty when none does.
    pub credential: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    pub credential: String,
    /// `resync`, `mint` or `recreate-pod`.
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `injected`, `in_place`, `not_targeted` or `error`.
    pub outcome: String,
}

/// Every series regcred exports.
pub struct Metrics {
    registry: Registry,
    /// Unix time at which the credential now in the Secrets expires.
    pub expiry: Family<RegistryLabels, Gauge>,
    pub mint_attempts: Family<ProviderLabels, Counter>,
    pub mint_failures: Family<FailureLabels, Counter>,
    pub provider_calls: Family<CallLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub namespaces_targeted: Family<CredentialLabels, Gauge>,
    pub namespaces_synced: Family<CredentialLabels, Gauge>,
    /// Others' changes to a managed Secret that regcred undid.
    pub managed_secret_overwrites: Family<CredentialLabels, Counter>,
    /// 1 for the result of the last check, per credential and registry.
    pub pull_auth: Family<PullAuthLabels, Gauge>,
    /// Failed image pulls diagnosed, by covering credential and cause.
    pub image_pull_failures: Family<PullFailureLabels, Counter>,
    /// Repairs of failed image pulls that took effect.
    pub image_pull_repairs: Family<RepairLabels, Counter>,
    /// Pod admission reviews answered, by outcome.
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    /// Time to answer one review.
    pub admission_duration: Histogram,
    /// Requests to the API server made while answering reviews (0 when the
    /// Secret is already in place).
    pub admission_api_requests: Counter,
    /// Registries with an expiry series, per credential, to remove them later
    /// (a metric family cannot be iterated).
    expiry_registries: Mutex<HashMap<String, Vec<String>>>,
    /// Registries with a pull-auth series, per credential, likewise.
    pull_auth_registries: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
}

const PULL_AUTH_RESULTS: [&str; 6] = [
    "Healthy",
    "Unauthorized",
    "ImageNotFound",
    "Unreachable",
    "Disabled",
    "Unknown",
];

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            expiry: Family::default(),
            mint_attempts: Family::default(),
            mint_failures: Family::default(),
            provider_calls: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            reconcile_errors: Family::default(),
            namespaces_targeted: Family::default(),
            namespaces_synced: Family::default(),
            managed_secret_overwrites: Family::default(),
            pull_auth: Family::default(),
            image_pull_failures: Family::default(),
            image_pull_repairs: Family::default(),
            admission_reviews: Family::default(),
            admission_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            admission_api_requests: Counter::default(),
            expiry_registries: Mutex::default(),
            pull_auth_registries: Mutex::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::with_prefix("regcred");
        m.register_credential_series(&mut registry);
        m.register_reconcile_series(&mut registry);
        m.register_image_pull_series(&mut registry);
        m.register_admission_series(&mut registry);
        Self { registry, ..m }
    }
}

/// Registration, one group of series at a time, in the order `/metrics` lists them.
impl Metrics {
    fn register_credential_series(&self, registry: &mut Registry) {
        registry.register(
            "credential_expiry_timestamp_seconds",
            "Unix time at which the credential in the managed Secrets expires (the chart's alert RegcredCredentialExpiringSoon watches it)",
            self.expiry.clone(),
        );
        registry.register(
            "mint_attempts",
            "Credential mints attempted",
            self.mint_attempts.clone(),
        );
        registry.register(
            "mint_failures",
            "Credential mints that failed, by reason",
            self.mint_failures.clone(),
        );
        registry.register(
            "provider_calls",
            "Calls to credential providers, by outcome",
            self.provider_calls.clone(),
        );
    }

    fn register_reconcile_series(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one RegistryCredential",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "namespaces_targeted",
            "Namespaces a RegistryCredential targets",
            self.namespaces_targeted.clone(),
        );
        registry.register(
            "namespaces_synced",
            "Targeted namespaces holding the current Secret",
            self.namespaces_synced.clone(),
        );
        registry.register(
            "managed_secret_overwrites",
            "Changes someone other than regcred made to a managed Secret and regcred restored",
            self.managed_secret_overwrites.clone(),
        );
    }

    fn register_image_pull_series(&self, registry: &mut Registry) {
        registry.register(
            "pull_auth",
            "Result of the last pull-auth check (1 for the current result)",
            self.pull_auth.clone(),
        );
        registry.register(
            "image_pull_failures",
            "Failed image pulls regcred diagnosed, by the RegistryCredential covering the registry (empty: none) and cause",
            self.image_pull_failures.clone(),
        );
        registry.register(
            "image_pull_repairs",
            "Repairs of failed image pulls that took effect, by RegistryCredential and action",
            self.image_pull_repairs.clone(),
        );
    }

    fn register_admission_series(&self, registry: &mut Registry) {
        registry.register(
            "admission_reviews",
            "Pod admission reviews answered, by outcome (every answer allows the pod)",
            self.admission_reviews.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one pod admission review",
            self.admission_duration.clone(),
        );
        registry.register(
            "admission_api_requests",
            "Requests to the API server made while answering admission reviews (none when the Secret is in place)",
            self.admission_api_requests.clone(),
        );
    }
}

impl Metrics {
    /// Record a mint outcome.
    pub fn mint(&self, provider: &str, failure: Option<&str>) {
        self.mint_attempts
            .get_or_create(&ProviderLabels {
                provider: provider.into(),
            })
            .inc();
        let status = match failure {
            None => "success",
            Some("Throttled") => "throttled",
            Some(_) => "error",
        };
        self.provider_calls
            .get_or_create(&CallLabels {
                provider: provider.into(),
                status: status.into(),
            })
            .inc();
        if let Some(reason) = failure {
            self.mint_failures
                .get_or_create(&FailureLabels {
                    provider: provider.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// The expiry series of one credential: exactly `registries`, at `not_after` (unix seconds).
    pub fn set_expiry(&self, credential: &str, registries: &[String], not_after: Option<i64>) {
        self.forget_expiry(credential);
        if let Some(t) = not_after {
            self.expiry_registries
                .lock()
                .expect("metrics lock")
                .insert(credential.into(), registries.to_vec());
            for r in registries {
                self.expiry
                    .get_or_create(&RegistryLabels {
                        credential: credential.into(),
                        registry: r.clone(),
                    })
                    .set(t);
            }
        }
    }

    /// `count` managed Secrets of `credential` restored after someone else changed them.
    pub fn managed_secret_overwritten(&self, credential: &str, count: usize) {
        if count > 0 {
            self.managed_secret_overwrites
                .get_or_create(&CredentialLabels {
                    credential: credential.into(),
                })
                .inc_by(count as u64);
        }
    }

    fn forget_expiry(&self, credential: &str) {
        let registries = self.expiry_registries.lock().expect("metrics lock").remove(credential);
        for registry in registries.unwrap_or_default() {
            self.expiry.remove(&RegistryLabels {
                credential: credential.into(),
                registry,
            });
        }
    }

    /// One pod admission review answered.
    pub fn admission(&self, outcome: &str, took: std::time::Duration, api_requests: u32) {
        self.admission_reviews
            .get_or_create(&AdmissionLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.admission_duration.observe(took.as_secs_f64());
        self.admission_api_requests.inc_by(api_requests.into());
    }

    /// Observes the reconcile duration when dropped, whichever way reconcile ends.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: std::time::Instant::now(),
        }
    }

    pub fn set_namespaces(&self, credential: &str, targeted: u32, synced: u32) {
        let l = CredentialLabels {
            credential: credential.into(),
        };
        self.namespaces_targeted.get_or_create(&l).set(targeted.into());
        self.namespaces_synced.get_or_create(&l).set(synced.into());
    }

    /// The pull-auth series of one credential: 1 for `result`, others removed.
    pub fn set_pull_auth(&self, credential: &str, registry: &str, result: &str) {
        self.pull_auth_registries
            .lock()
            .expect("metrics lock")
            .entry(credential.into())
            .or_default()
            .insert(registry.into());
        for r in PULL_AUTH_RESULTS {
            let l = PullAuthLabels {
                credential: credential.into(),
                registry: registry.into(),
                result: r.into(),
            };
            if r == result {
                self.pull_auth.get_or_create(&l).set(1);
            } else {
                self.pull_auth.remove(&l);
            }
        }
    }

    /// Drop every series of a deleted credential.
    pub fn forget(&self, credential: &str) {
        self.forget_expiry(credential);
        let l = CredentialLabels {
            credential: credential.into(),
        };
        self.namespaces_targeted.remove(&l);
        self.namespaces_synced.remove(&l);
        self.managed_secret_overwrites.remove(&l);
        let registries = self
            .pull_auth_registries
            .lock()
            .expect("metrics lock")
            .remove(credential);
        for registry in registries.unwrap_or_default() {
            for result in PULL_AUTH_RESULTS {
                self.pull_auth.remove(&PullAuthLabels {
                    credential: credential.into(),
                    registry: registry.clone(),
                    result: result.into(),
                });
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// What the HTTP endpoints report.
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set once this replica is either a warm leader or a waiting standby.
    pub ready: AtomicBool,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if h.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not warm yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_series_and_forgets_deleted_credentials() {
        let m = Metrics::default();
        m.mint("ECR", None);
        m.mint("ECR", Some("Throttled"));
        m.set_expiry("ecr", &["a.io".into(), "b.io".into()], Some(1_800_000_000));
        m.set_namespaces("ecr", 3, 2);
        m.set_pull_auth("ecr", "a.io", "Healthy");
        let text = m.encode();
        for series in [
            r#"regcred_mint_attempts_total{provider="ECR"} 2"#,
            r#"regcred_mint_failures_total{provider="ECR",reason="Throttled"} 1"#,
            r#"regcred_provider_calls_total{provider="ECR",status="throttled"} 1"#,
            r#"regcred_credential_expiry_timestamp_seconds{credential="ecr",registry="b.io"} 1800000000"#,
            r#"regcred_namespaces_synced{credential="ecr"} 2"#,
            r#"regcred_pull_auth{credential="ecr",registry="a.io",result="Healthy"} 1"#,
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
        m.set_expiry("ecr", &["a.io".into()], Some(1_800_000_100));
        let text = m.encode();
        assert!(!text.contains(r#"registry="b.io"} 1800000000"#), "{text}");
        m.set_pull_auth("ecr", "a.io", "Unauthorized");
        assert!(!m.encode().contains(r#"result="Healthy""#));
        m.forget("ecr");
        let text = m.encode();
        assert!(!text.contains(r#"regcred_credential_expiry_timestamp_seconds{credential="ecr""#));
        // Alerts on a deleted credential's pull-auth series must stop.
        assert!(!text.contains(r#"regcred_pull_auth{credential="ecr""#), "{text}");
    }
}
