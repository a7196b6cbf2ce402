//! The reconcile pipeline for one RegistryCredential, one module per step:
//! [`validate`] → *resolve* the source (cache) → [`credential`] (reuse or
//! mint) → plan ([`crate::targets::plan`]) → [`fanout`] (using [`build`]
//! and [`apply`]) → [`pull_auth`] check → [`status`] compose and write,
//! with the steps' [`events`] published in one place.

pub mod apply;
pub mod build;
pub mod changes;
pub mod cond;
mod credential;
pub mod events;
mod fanout;
#[cfg(test)]
pub(crate) mod fixtures;
mod pace;
mod pull_auth;
mod sa_writes;
pub mod scope;
mod state;
pub mod status;
mod tamper;
pub mod validate;
pub mod workload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tracing::{debug, info, instrument, warn};

pub use self::credential::credential_digest;
use self::events::Note;
use self::scope::{Scope, Since};
use crate::api::RegistryCredential;
use crate::api::conditions::reason;
use crate::cache::{Cache, KeptNamespace, KeptSecret, KeptServiceAccount};
use crate::error::{Error, Result};
use crate::renewal;
use crate::targets;
use crate::telemetry::{ErrorLabels, Metrics};

/// Requeue even when nothing is due, to catch anything a watch missed.
const RESYNC: Duration = Duration::from_secs(30 * 60);
/// Retries after a failed reconcile: 5 s doubling to 5 min.
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
/// How long deletion keeps retrying a cleanup that fails before it lets the
/// RegistryCredential go and reports what it could not clean.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);

/// Shared state of the controller: the client, the caches, and the credentials held in memory.
pub struct Context {
    pub client: Client,
    pub credentials_namespace: String,
    pub namespaces: Cache<KeptNamespace>,
    pub service_accounts: Cache<KeptServiceAccount>,
    pub managed_secrets: Cache<KeptSecret>,
    pub source_secrets: Store<Secret>,
    /// Every RegistryCredential, for admission on any replica (the
    /// controller on the leader keeps its own store).
    pub credentials: Store<RegistryCredential>,
    pub events: events::Publisher,
    /// HTTP client for provider calls without an SDK (ACR exchange) and registry checks.
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// What is kept about each RegistryCredential between reconciles.
    memory: state::Memory,
    /// ServiceAccount writes, several RegistryCredentials' entries in one.
    sa_writes: Arc<sa_writes::SaWrites>,
    /// Namespaces the watches saw change, and what each RegistryCredential's
    /// last pass found: a change in one namespace is reconciled there only.
    pub touched: Arc<scope::Touched>,
    /// What regcred changed in each namespace, and when (the diagnosis's
    /// evidence of a repair already made).
    pub changes: Arc<changes::Changes>,
    /// Whether every cache holds a complete list ([`Context::warm_up`]).
    ready: tokio::sync::watch::Sender<bool>,
    /// Reconciles asked for out of band (a diagnosed pull failure's repair).
    resync: UnboundedSender<()>,
    /// The pace of per-ServiceAccount exchanges, per provider.
    pacers: std::sync::OnceLock<pace::Pacers>,
    /// `--registry-checks`, set once at startup ([`Context::limit_registry_checks`]).
    registry_checks: std::sync::OnceLock<crate::diagnosis::reach::RegistryChecks>,
    resyncs: Mutex<Option<UnboundedReceiver<()>>>,
}

/// The caches reconcile reads instead of the API server.
pub struct Caches {
    pub namespaces: Cache<KeptNamespace>,
    pub service_accounts: Cache<KeptServiceAccount>,
    /// Secrets with the managed-by label only.
    pub managed_secrets: Cache<KeptSecret>,
    /// Secrets of the credentials namespace only.
    pub source_secrets: Store<Secret>,
    pub credentials: Store<RegistryCredential>,
    /// The namespaces the watches saw change.
    pub touched: Arc<scope::Touched>,
}

impl Context {
    pub fn new(
        client: Client,
        credentials_namespace: String,
        caches: Caches,
        events: events::Publisher,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Caches {
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
            credentials,
            touched,
        } = caches;
        let (resync, resyncs) = futures::channel::mpsc::unbounded();
        Self {
            client,
            credentials_namespace,
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
            credentials,
            events,
            http,
            metrics,
            memory: state::Memory::default(),
            sa_writes: Arc::default(),
            touched,
            changes: Arc::default(),
            ready: tokio::sync::watch::Sender::new(false),
            resync,
            resyncs: Mutex::new(Some(resyncs)),
            registry_checks: std::sync::OnceLock::new(),
            pacers: std::sync::OnceLock::new(),
        }
    }

    /// `--identity-exchange-rate`: per-ServiceAccount exchanges per second,
    /// for every provider; set once at startup. Unset: each provider's default.
    pub fn pace_identity_exchanges(&self, per_second: Option<f64>) {
        let _ = self.pacers.set(pace::Pacers::new(per_second));
    }

    fn pacers(&self) -> &pace::Pacers {
        self.pacers.get_or_init(pace::Pacers::default)
    }

    /// Which registry hosts the operator's pull diagnosis may contact; set
    /// once, before the controller runs. Unset: the default, covered hosts only.
    pub fn limit_registry_checks(&self, checks: crate::diagnosis::reach::RegistryChecks) {
        let _ = self.registry_checks.set(checks);
    }

    pub fn registry_checks(&self) -> crate::diagnosis::reach::RegistryChecks {
        self.registry_checks.get().copied().unwrap_or_default()
    }

    /// The stream of reconciles asked for with [`Context::resync`], for the
    /// controller; `None` after the first call.
    pub fn resyncs(&self) -> Option<UnboundedReceiver<()>> {
        self.resyncs.lock().expect("resyncs lock").take()
    }

    /// Re-sync namespace `ns` now: the Secrets and ServiceAccounts there are
    /// checked and rewritten where they differ, as after a watch event in it.
    pub fn resync_namespace(&self, ns: &str) {
        self.touched.touch(scope::Change::Namespace(ns.to_string()));
        // Fails only when the controller has stopped.
        let _ = self.resync.unbounded_send(());
    }

    /// Mint a new credential for `rc` at its next reconcile (within its
    /// failure backoff, past the one-mint-a-minute floor), and reconcile it now.
    pub fn mint_now(&self, rc: &RegistryCredential) {
        self.memory
            .with(&rc.uid().unwrap_or_default(), |s| s.slot.request_mint());
        let _ = self.resync.unbounded_send(());
    }

    /// Wait until every cache holds a complete list, then tell every
    /// [`Context::wait_ready`]. Call it from one task only: kube's
    /// `Store::wait_until_ready` wakes only the task that polled it last
    /// (a oneshot receiver keeps one waker), so a reconcile waiting on it
    /// beside another task could wait forever, and with it every later
    /// reconcile of its RegistryCredential.
    pub async fn warm_up(&self) {
        let _ = futures::join!(
            self.namespaces.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.managed_secrets.wait_until_ready(),
            self.source_secrets.wait_until_ready(),
            self.credentials.wait_until_ready(),
        );
        self.ready.send_replace(true);
    }

    /// Wait until [`Context::warm_up`] has seen every cache complete; any
    /// number of tasks may wait at once.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        // Fails only if the sender is gone, with the Context.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The Secret `rc` wants in namespace `ns`, as the fan-out would write
    /// it: from the credential this replica holds (the leader), else from a
    /// copy `status.credentialDigest` vouches for, taken back as after a
    /// restart ([`credential::recover_from_secrets`]; a standby holds no credential).
    /// `None` when neither exists.
    pub async fn desired_secret(&self, rc: &RegistryCredential, ns: &str) -> Option<Secret> {
        let uid = rc.uid().unwrap_or_default();
        if let Some(current) = self.memory.existing(&uid, |s| s.slot.current.clone()).flatten() {
            return Some(current.desired_secret(rc, ns));
        }
        let status = rc.status.as_ref()?;
        let current =
            credential::recover_from_secrets(&self.client, &self.managed_secrets, rc, status, Timestamp::now()).await?;
        Some(current.desired_secret(rc, ns))
    }

    fn credential_env(&self) -> credential::Env<'_, state::Memory> {
        credential::Env {
            client: &self.client,
            held: &self.memory,
            managed_secrets: &self.managed_secrets,
            credentials_namespace: &self.credentials_namespace,
            http: &self.http,
            metrics: &self.metrics,
        }
    }

    fn fanout_env(&self) -> fanout::Env<'_, state::Memory> {
        fanout::Env {
            client: &self.client,
            managed_secrets: &self.managed_secrets,
            service_accounts: &self.service_accounts,
            foreign: &self.memory,
            sa_writes: &self.sa_writes,
            changes: &self.changes,
        }
    }

    fn workload_env<'a>(&'a self, held: &'a Mutex<workload::Held>) -> workload::Env<'a> {
        workload::Env {
            client: &self.client,
            namespaces: &self.namespaces,
            service_accounts: &self.service_accounts,
            managed_secrets: &self.managed_secrets,
            credentials_namespace: &self.credentials_namespace,
            http: &self.http,
            metrics: &self.metrics,
            sa_writes: &self.sa_writes,
            changes: &self.changes,
            pacers: self.pacers(),
            held,
        }
    }

    fn pull_auth_env(&self) -> pull_auth::Env<'_, state::Memory> {
        pull_auth::Env {
            http: &self.http,
            metrics: &self.metrics,
            last_checks: &self.memory,
        }
    }

    /// When to try again after the API server refused some of this
    /// reconcile's writes (a 429, a 5xx, a webhook or policy that denies):
    /// 30 s doubling to 5 min while they keep failing; `None` once all went
    /// through. Without it, nothing would look again before the next watch
    /// event or the 30-minute resync.
    fn write_retry(&self, rc: &RegistryCredential, fanout: &fanout::FanOut) -> Option<Duration> {
        let refused = fanout.sa_failed > 0 || fanout.failed.iter().any(|f| f.reason == reason::NAMESPACE_WRITE_FAILED);
        let refusals = self.memory.with(&rc.uid().unwrap_or_default(), |s| {
            s.refused_writes = if refused { s.refused_writes.saturating_add(1) } else { 0 };
            s.refused_writes
        });
        refused.then(|| write_retry_backoff(refusals))
    }

    /// Forget everything kept for `rc` (deleted): its state and its metric series.
    fn forget(&self, rc: &RegistryCredential) {
        self.memory.forget(&rc.uid().unwrap_or_default());
        self.metrics.forget(&rc.name_any());
    }

    /// The plan of this pass: over every namespace, or over those changed
    /// since the last one (with the Secret regcred manages in each).
    fn plan(&self, rc: &RegistryCredential, scope: &Scope) -> targets::TargetPlan {
        let secret_name = build::secret_name(rc);
        let rc_name = rc.name_any();
        match scope {
            Scope::Every => targets::plan(
                &rc.spec.target.namespaces,
                &self.credentials_namespace,
                &secret_name,
                &self.namespaces.state(),
                self.ours(&rc_name),
            ),
            Scope::Only(changed) => {
                let namespaces: Vec<_> = changed.iter().filter_map(|ns| self.namespaces.get(None, ns)).collect();
                // The spec is what it was at the last full pass, which cleaned
                // Secrets under older names: only the current name is ours here.
                let ours: Vec<_> = changed
                    .iter()
                    .filter(|ns| {
                        self.managed_secrets
                            .get(Some(ns), &secret_name)
                            .is_some_and(|s| s.credential() == Some(rc_name.as_str()))
                    })
                    .map(|ns| (ns.clone(), secret_name.clone()))
                    .collect();
                targets::plan(
                    &rc.spec.target.namespaces,
                    &self.credentials_namespace,
                    &secret_name,
                    &namespaces,
                    ours,
                )
            }
        }
    }

    /// This pass's fan-out: over every namespace, or over those changed
    /// since the last pass ([`scope`]); the namespaces it does not look at
    /// keep what the last pass found.
    async fn fan_out(
        &self,
        rc: &RegistryCredential,
        current: Option<&credential::Current>,
        mark: u64,
        now: Timestamp,
    ) -> fanout::FanOut {
        let uid = rc.uid().unwrap_or_default();
        let last = self.memory.with(&uid, |s| s.pass.as_mut().map(scope::Pass::take));
        let digest = current.map(|c| c.digest.clone());
        let since = last.as_ref().map_or(Since::All, |l| self.touched.since(l.mark));
        let scope = scope::scope(last.as_ref(), since, rc.metadata.generation, digest.as_deref(), now);
        let every_at = match (&scope, &last) {
            (Scope::Only(_), Some(last)) => last.every_at,
            _ => now,
        };
        let plan = self.plan(rc, &scope);
        let desired = current.map(|c| move |ns: &str| c.desired_secret(rc, ns));
        let desired_ref = desired.as_ref().map(|d| d as &(dyn Fn(&str) -> Secret + Sync));
        let pass = fanout::run(&self.fanout_env(), rc, &plan, desired_ref, now).await;
        let mut outcomes = match (&scope, last) {
            (Scope::Only(changed), Some(last)) => {
                let mut kept = last.outcomes;
                kept.retain(|ns, _| !changed.contains(ns));
                kept
            }
            _ => Default::default(),
        };
        outcomes.extend(pass.outcomes);
        let mut out = fanout::FanOut::tally(&outcomes, pass.writes, pass.clean_errors);
        out.overwrites = pass.overwrites;
        out.looked_at = plan.write.len();
        out.stale = plan.clean.len();
        let pass = scope::Pass {
            mark,
            every_at,
            generation: rc.metadata.generation,
            digest,
            outcomes,
        };
        self.memory.with(&uid, |s| s.pass = Some(pass));
        if let Some(oldest) = self.memory.oldest_mark() {
            self.touched.prune(oldest);
        }
        out
    }

    /// `(namespace, name)` of every Secret the cache says `rc_name` manages.
    fn ours(&self, rc_name: &str) -> Vec<(String, String)> {
        ours(&self.managed_secrets, rc_name)
    }
}

/// `(namespace, name)` of every Secret `managed_secrets` says `rc_name` manages.
fn ours(managed_secrets: &Cache<KeptSecret>, rc_name: &str) -> Vec<(String, String)> {
    managed_secrets
        .state()
        .iter()
        .filter(|s| s.credential() == Some(rc_name))
        .map(|s| (s.namespace.to_string(), s.name.to_string()))
        .collect()
}

/// Entry point from the controller.
#[instrument(skip_all, fields(registrycredential = %rc.name_any()))]
pub async fn reconcile(rc: Arc<RegistryCredential>, ctx: Arc<Context>) -> Result<Action> {
    ctx.wait_ready().await;
    let _timer = ctx.metrics.reconcile_timer();
    let api: Api<RegistryCredential> = Api::all(ctx.client.clone());
    let uid = rc.uid().unwrap_or_default();
    let rc = with_finalizer(&api, rc).await;
    let result = finalizer(&api, build::FINALIZER, rc, |event| async {
        let (rc, (notes, result)) = match event {
            FinalizerEvent::Apply(rc) => {
                let out = apply_credential(&rc, &ctx).await;
                (rc, out)
            }
            FinalizerEvent::Cleanup(rc) => {
                let out = cleanup(&rc, &ctx).await;
                (rc, out)
            }
        };
        // Every Event a reconcile raises goes out here, whatever its outcome.
        events::publish(&ctx.events, &rc, notes).await;
        result
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        // Not kept anew for a RegistryCredential whose deletion just forgot it.
        ctx.memory.existing(&uid, |s| s.failures = 0);
    }
    result
}

/// `rc` with regcred's finalizer added, as the API server returns it, so
/// that a new RegistryCredential's first pass starts now: kube's
/// [`finalizer`] adds it and returns, and the pass would wait for the watch
/// to bring the change back (a round trip and a reschedule). The write is
/// conditional on the resourceVersion read; if it fails for any reason,
/// `rc` goes on unchanged and [`finalizer`] adds it its own way.
async fn with_finalizer(api: &Api<RegistryCredential>, rc: Arc<RegistryCredential>) -> Arc<RegistryCredential> {
    if rc.metadata.deletion_timestamp.is_some() || rc.finalizers().iter().any(|f| f == build::FINALIZER) {
        return rc;
    }
    let mut finalizers = rc.finalizers().to_vec();
    finalizers.push(build::FINALIZER.into());
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": rc.resource_version(), "finalizers": finalizers},
    });
    match api
        .patch(&rc.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(patched) => Arc::new(patched),
        Err(e) => {
            debug!(error = %e, "adding the finalizer; kube's finalizer helper tries again");
            rc
        }
    }
}

/// Transient errors: retry with exponential backoff (5 s doubling to
/// 5 min). Invalid input never reaches here; it is reported in status and
/// waits for a change.
pub fn error_policy(rc: Arc<RegistryCredential>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.memory.with(&rc.uid().unwrap_or_default(), |s| {
        s.failures = s.failures.saturating_add(1);
        s.failures
    });
    let wait = error_backoff(failures);
    warn!(registrycredential = %rc.name_any(), error = %error, retry_in_secs = wait.as_secs(), "reconcile failed; retrying");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.label().into(),
        })
        .inc();
    Action::requeue(wait)
}

fn error_backoff(failures: u32) -> Duration {
    ERROR_BACKOFF_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(ERROR_BACKOFF_MAX)
}

async fn apply_credential(rc: &RegistryCredential, ctx: &Context) -> (Vec<Note>, Result<Action>) {
    let now = Timestamp::now();
    let previous = rc.status.clone().unwrap_or_default();
    let provider = match validate::spec(rc) {
        Ok(provider) => provider,
        Err(invalid) => {
            let written = status::write(&ctx.client, rc, status::invalid(rc, &previous, &invalid, now)).await;
            return (Vec::new(), written.map(|()| Action::await_change()));
        }
    };
    if let Some(mode) = crate::identity::PerServiceAccount::of(provider) {
        return apply_per_service_account(rc, ctx, &mode, provider, &previous, now).await;
    }
    let source = provider.source_secret().and_then(|n| {
        ctx.source_secrets
            .get(&ObjectRef::new(n).within(&ctx.credentials_namespace))
    });
    // Before any cache is read: what changes after this is seen next time.
    let mark = ctx.touched.mark();
    let mut cred = credential::step(&ctx.credential_env(), rc, provider, source.as_deref(), &previous, now).await;
    let fanout = ctx.fan_out(rc, cred.current.as_ref(), mark, now).await;
    let current = cred.current.as_ref();
    let checked = pull_auth::step(&ctx.pull_auth_env(), rc, current, cred.minted_now, &previous, now).await;
    let new = status::compose(rc, provider.kind(), &previous, &cred, &fanout, &checked, now);
    let mut notes = std::mem::take(&mut cred.notes);
    notes.extend(status::transitions(&previous, &new));
    notes.extend(tamper::note(&fanout.overwrites));
    record_metrics(ctx, rc, &new, &fanout);
    let retry_writes = ctx.write_retry(rc, &fanout).map(|wait| renewal::add(now, wait));
    let planned = [new.renewal_time.as_ref().map(|t| t.0), checked.next_check, retry_writes];
    let result = match status::write(&ctx.client, rc, new).await {
        Err(e) => Err(e),
        Ok(()) if !fanout.clean_errors.is_empty() => Err(Error::Clean(fanout.clean_errors)),
        Ok(()) => Ok(Action::requeue(requeue_after(planned, now))),
    };
    (notes, result)
}

/// `identity: PerServiceAccount`: each selected ServiceAccount's own
/// credential ([`workload`]), then status.
async fn apply_per_service_account(
    rc: &RegistryCredential,
    ctx: &Context,
    mode: &crate::identity::PerServiceAccount,
    provider: crate::api::ProviderSpec<'_>,
    previous: &crate::api::RegistryCredentialStatus,
    now: Timestamp,
) -> (Vec<Note>, Result<Action>) {
    let held = ctx.memory.with(&rc.uid().unwrap_or_default(), |s| s.identities.clone());
    let out = workload::step(&ctx.workload_env(&held), rc, mode, provider, now).await;
    let new = status::compose_identities(rc, provider.kind(), previous, &out, now);
    let mut notes = status::transitions(previous, &new);
    notes.extend(status::identity_transitions(previous, &new));
    let name = rc.name_any();
    ctx.metrics
        .set_expiry(&name, &new.registries, new.not_after.as_ref().map(|t| t.0.as_second()));
    ctx.metrics.set_namespaces(&name, out.targeted, out.synced);
    if out.exchanges > 0 || out.writes > 0 {
        info!(
            exchanges = out.exchanges,
            writes = out.writes,
            valid = out.counts.valid,
            selected = out.counts.selected,
            "per-ServiceAccount credentials written"
        );
    }
    let result = match status::write(&ctx.client, rc, new).await {
        Err(e) => Err(e),
        Ok(()) if !out.clean_errors.is_empty() => Err(Error::Clean(out.clean_errors)),
        Ok(()) => Ok(Action::requeue(requeue_after([out.next], now))),
    };
    (notes, result)
}

fn record_metrics(
    ctx: &Context,
    rc: &RegistryCredential,
    new: &crate::api::RegistryCredentialStatus,
    fanout: &fanout::FanOut,
) {
    let name = rc.name_any();
    ctx.metrics
        .set_expiry(&name, &new.registries, new.not_after.as_ref().map(|t| t.0.as_second()));
    ctx.metrics
        .set_namespaces(&name, new.namespaces.targeted, new.namespaces.synced);
    ctx.metrics.managed_secret_overwritten(&name, fanout.overwrites.len());
    for o in &fanout.overwrites {
        warn!(namespace = %o.namespace, secret = %o.secret, field_manager = %o.manager, "restored a managed Secret someone else changed");
    }
    if fanout.writes > 0 {
        info!(
            writes = fanout.writes,
            targeted = fanout.targeted,
            synced = fanout.synced,
            "fan-out wrote changes"
        );
    }
    debug!(
        writes = fanout.writes,
        targeted = fanout.targeted,
        synced = fanout.synced,
        stale = fanout.stale,
        looked_at = fanout.looked_at,
        "reconciled"
    );
}

/// 30 s doubling to 5 min.
fn write_retry_backoff(refusals: u32) -> Duration {
    Duration::from_secs(30)
        .saturating_mul(1 << refusals.saturating_sub(1).min(4))
        .min(Duration::from_secs(5 * 60))
}

/// Wake up at the earliest planned time (a time already past: in a second),
/// and at least every [`RESYNC`].
fn requeue_after(planned: impl IntoIterator<Item = Option<Timestamp>>, now: Timestamp) -> Duration {
    planned
        .into_iter()
        .flatten()
        .map(|t| {
            let until = t.duration_since(now);
            if until.is_negative() {
                Duration::ZERO
            } else {
                until.unsigned_abs()
            }
        })
        .fold(RESYNC, Duration::min)
        .max(Duration::from_secs(1))
}

/// Deletion: remove this credential's ServiceAccount entries and every
/// Secret it manages, as a fan-out that writes nothing and cleans all
/// ([`targets::deletion_plan`]). What cannot be cleaned within
/// [`CLEANUP_GRACE`] of the deletion is reported in a Warning Event, and the
/// RegistryCredential is let go (the garbage collector still removes its
/// Secrets through their ownerReference).
async fn cleanup(rc: &RegistryCredential, ctx: &Context) -> (Vec<Note>, Result<Action>) {
    let now = Timestamp::now();
    let name = rc.name_any();
    let secret_name = build::secret_name(rc);
    let recorded_in = ctx
        .service_accounts
        .state()
        .into_iter()
        .filter(|sa| sa.recorded.is_some() && build::recorded_by(&sa.object(), &secret_name, &name))
        .map(|sa| sa.namespace.to_string());
    let plan = targets::deletion_plan(ctx.ours(&name), recorded_in, &secret_name);
    let errors = fanout::run(&ctx.fanout_env(), rc, &plan, None, now).await.clean_errors;
    let mut notes = Vec::new();
    if !errors.is_empty() {
        let deleting_since = rc.metadata.deletion_timestamp.as_ref().map(|t| t.0);
        let grace_over = deleting_since.is_some_and(|t| now >= renewal::add(t, CLEANUP_GRACE));
        if !grace_over {
            return (notes, Err(Error::Clean(errors)));
        }
        let listed: Vec<String> = errors.iter().take(10).map(ToString::to_string).collect();
        let message = format!(
            "Deleted without cleaning {} namespaces after trying for {}s; remove these by hand: {}",
            errors.len(),
            CLEANUP_GRACE.as_secs(),
            listed.join("; ")
        );
        warn!(%message, "cleanup incomplete");
        notes.push(Note::warning(reason::CLEANUP_INCOMPLETE, "Cleanup", message));
    }
    ctx.forget(rc);
    info!(namespaces = plan.clean.len(), "cleaned up before deletion");
    (notes, Ok(Action::await_change()))
}

#[cfg(test)]
mod tests;
