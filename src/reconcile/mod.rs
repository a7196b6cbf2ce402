//! The reconcile pipeline for one RegistryCredential:
//! *resolve* (caches) → *validate* → *credential* (mint or reuse) →
//! *build* (pure, [`build`]) → *apply* ([`apply`]) → *status* ([`status`]).

pub mod apply;
pub mod build;
mod credential;
mod pull_auth;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use self::status::Cond;
use crate::api::conditions::{self as cond, reason};
use crate::api::{
    FailedNamespace, NamespaceCounts, RegistryCredential, RegistryCredentialStatus, ServiceAccountCounts,
};
use crate::error::{Error, Result};
use crate::renewal;
use crate::targets;
use crate::telemetry::{ErrorLabels, Metrics};

/// Requeue even when nothing is due, to catch anything a watch missed.
const RESYNC: Duration = Duration::from_secs(30 * 60);
/// Namespaces written at once during fan-out.
const FANOUT_CONCURRENCY: usize = 16;
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the controller: the client, the caches, and the credentials held in memory.
pub struct Context {
    pub client: Client,
    pub credentials_namespace: String,
    pub namespaces: Store<Namespace>,
    pub service_accounts: Store<ServiceAccount>,
    pub managed_secrets: Store<Secret>,
    pub source_secrets: Store<Secret>,
    pub recorder: Recorder,
    /// HTTP client for provider calls without an SDK (ACR exchange) and registry checks.
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    held: credential::Held,
    pull_checks: pull_auth::LastChecks,
}

/// The caches reconcile reads instead of the API server.
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub service_accounts: Store<ServiceAccount>,
    /// Secrets with the managed-by label only.
    pub managed_secrets: Store<Secret>,
    /// Secrets of the credentials namespace only.
    pub source_secrets: Store<Secret>,
}

impl Context {
    pub fn new(
        client: Client,
        credentials_namespace: String,
        caches: Caches,
        recorder: Recorder,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Caches {
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
        } = caches;
        Self {
            client,
            credentials_namespace,
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
            recorder,
            http,
            metrics,
            held: credential::Held::default(),
            pull_checks: pull_auth::LastChecks::default(),
        }
    }

    /// Wait until every cache holds a complete list.
    pub async fn wait_ready(&self) {
        let _ = futures::join!(
            self.namespaces.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.managed_secrets.wait_until_ready(),
            self.source_secrets.wait_until_ready(),
        );
    }
}

/// Entry point from the controller.
#[instrument(skip_all, fields(registrycredential = %rc.name_any()))]
pub async fn reconcile(rc: Arc<RegistryCredential>, ctx: Arc<Context>) -> Result<Action> {
    ctx.wait_ready().await;
    let _timer = ctx.metrics.reconcile_timer();
    let api: Api<RegistryCredential> = Api::all(ctx.client.clone());
    finalizer(&api, build::FINALIZER, rc, |event| async {
        match event {
            FinalizerEvent::Apply(rc) => apply_credential(&rc, &ctx).await,
            FinalizerEvent::Cleanup(rc) => cleanup(&rc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Transient errors: retry soon. Invalid input never reaches here; it is
/// reported in status and waits for a change.
pub fn error_policy(rc: Arc<RegistryCredential>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(registrycredential = %rc.name_any(), error = %error, "reconcile failed; retrying");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.label().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

async fn apply_credential(rc: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let name = rc.name_any();
    let now = Timestamp::now();
    let previous = rc.status.clone().unwrap_or_default();

    // validate
    let Some(provider) = rc.spec.provider.selected() else {
        let invalid = Cond::new(
            "False",
            reason::INVALID_SPEC,
            "spec.provider must set exactly one of ecr, gcr, acr or static.",
        );
        write_status(rc, ctx, invalid_status(rc, &previous, &invalid, now)).await?;
        return Ok(Action::await_change());
    };
    let secret_name = build::secret_name(rc);

    // resolve
    let source = provider.source_secret().and_then(|n| {
        ctx.source_secrets
            .get(&ObjectRef::new(n).within(&ctx.credentials_namespace))
    });

    let step = credential::step(ctx, rc, provider, source.as_deref(), &previous, now).await;
    // The Secrets carry the fingerprint of the credential they hold, which
    // differs from the inputs' while a re-mint after a change keeps failing.
    let held = step.current.as_ref().map(|c| (c.config_json.clone(), c.fingerprint));
    let schedule = step.current.as_ref().and_then(|c| c.schedule);
    let not_after_text = schedule.map(|s| credential::not_after_annotation(s.not_after));

    // build + apply
    let all_namespaces = ctx.namespaces.state();
    let targeted: Vec<Arc<Namespace>> = all_namespaces
        .iter()
        .filter(|ns| targets::namespace_selected(&rc.spec.target.namespaces, ns) && !targets::is_terminating(ns))
        .cloned()
        .collect();
    let targeted_names: BTreeSet<String> = targeted.iter().map(|n| n.name_any()).collect();
    let mut sas_by_ns: HashMap<String, Vec<Arc<ServiceAccount>>> = HashMap::new();
    for sa in ctx.service_accounts.state() {
        sas_by_ns
            .entry(sa.namespace().unwrap_or_default())
            .or_default()
            .push(sa);
    }

    let outcomes: Vec<apply::NamespaceOutcome> = futures::stream::iter(targeted_names.iter().cloned())
        .map(|ns_name| {
            let sas = sas_by_ns.get(&ns_name).cloned().unwrap_or_default();
            let desired = held
                .as_ref()
                .map(|(json, fp)| build::desired_secret(rc, &ns_name, json, not_after_text.as_deref(), *fp));
            sync_namespace(ctx, rc, ns_name, secret_name.clone(), desired, sas)
        })
        .buffer_unordered(FANOUT_CONCURRENCY)
        .collect()
        .await;

    // clean what stopped matching: managed Secrets outside the target set or under an old name
    let stale: Vec<(String, String)> = ctx
        .managed_secrets
        .state()
        .iter()
        .filter(|s| build::is_managed_by(s, &name))
        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
        .filter(|(ns, n)| !targeted_names.contains(ns) || *n != secret_name)
        .collect();
    let mut cleanup_errors = Vec::new();
    for (ns, secret) in &stale {
        let sas = sas_by_ns.get(ns).cloned().unwrap_or_default();
        match apply::clean_namespace(&ctx.client, &name, ns, secret, &sas).await {
            Ok(n) => debug!(namespace = %ns, secret = %secret, writes = n, "cleaned namespace that stopped matching"),
            Err(e) => cleanup_errors.push(e),
        }
    }

    // status
    let mut failed: Vec<FailedNamespace> = outcomes.iter().filter_map(|o| o.failure.clone()).collect();
    // Without a credential nothing is current, whatever the namespaces hold.
    let synced = if held.is_some() {
        (outcomes.len() - failed.len()) as u32
    } else {
        0
    };
    let sa_patched = outcomes.iter().map(|o| o.sa_patched).sum();
    let sa_failed = outcomes.iter().map(|o| o.sa_failed).sum();
    let writes: u32 = outcomes.iter().map(|o| o.writes).sum();
    let targeted_count = targeted.len() as u32;
    let issued = step.issued.clone();
    let synced_cond = if held.is_none() {
        Cond::new("Unknown", reason::PENDING, "Waiting for a credential to write.")
    } else {
        status::synced_condition(targeted_count, synced, &failed, sa_failed)
    };
    let checked = pull_auth::step(ctx, rc, step.current.as_ref(), step.minted_now, &previous, now).await;
    let pull_auth = status::pull_auth_condition(
        checked.pull_auth.as_ref().map(|p| p.result),
        checked.pull_auth.as_ref().map_or("", |p| p.message.as_str()),
    );
    let ready = status::ready_condition(&issued, &synced_cond, &pull_auth);
    failed = status::bounded_failures(failed);
    let now_time = Time(renewal::truncate(now));
    let renewal_time = step.next_attempt.map(Time);
    let new_status = RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        provider: Some(provider.kind()),
        registries: step
            .current
            .as_ref()
            .map(|c| c.credential.registries())
            .unwrap_or_default(),
        not_after: schedule.map(|s| Time(s.not_after)),
        renewal_time: renewal_time.clone(),
        last_issued_time: step.current.as_ref().map(|c| Time(renewal::truncate(c.issued))),
        failed_attempts: step.failed_attempts,
        last_failure_time: step.last_failure_time.clone(),
        namespaces: NamespaceCounts {
            targeted: targeted_count,
            synced,
        },
        failed_namespaces: failed.clone(),
        service_accounts: ServiceAccountCounts {
            patched: sa_patched,
            failed: sa_failed,
        },
        summary: Some(format!("{synced}/{targeted_count}")),
        pull_auth: checked.pull_auth.clone(),
        conditions: status::conditions(
            &previous.conditions,
            rc.metadata.generation,
            &now_time,
            [
                (cond::ISSUED, &issued),
                (cond::SYNCED, &synced_cond),
                (cond::PULL_AUTH_HEALTHY, &pull_auth),
                (cond::READY, &ready),
            ],
        ),
    };
    announce_transitions(ctx, rc, &previous, &new_status, step.minted_now).await;
    ctx.metrics
        .set_expiry(&name, &new_status.registries, schedule.map(|s| s.not_after.as_second()));
    ctx.metrics
        .set_namespaces(&name, new_status.namespaces.targeted, new_status.namespaces.synced);
    if writes > 0 {
        info!(writes, targeted = targeted_count, synced, "fan-out wrote changes");
    }
    debug!(
        writes,
        targeted = targeted_count,
        synced,
        stale = stale.len(),
        "reconciled"
    );
    write_status(rc, ctx, new_status).await?;
    if !cleanup_errors.is_empty() {
        return Err(Error::Cleanup(cleanup_errors.join("; ")));
    }

    Ok(Action::requeue(requeue_after(
        [renewal_time.map(|t| t.0), checked.next_check],
        Timestamp::now(),
    )))
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

async fn sync_namespace(
    ctx: &Context,
    rc: &RegistryCredential,
    ns: String,
    secret_name: String,
    desired: Option<Secret>,
    sas: Vec<Arc<ServiceAccount>>,
) -> apply::NamespaceOutcome {
    let mut out = apply::NamespaceOutcome::default();
    let rc_name = rc.name_any();
    let cached = ctx.managed_secrets.get(&ObjectRef::new(&secret_name).within(&ns));
    let secret_ready = match &desired {
        Some(desired) => match apply::ensure_secret(
            &ctx.client,
            &rc_name,
            desired,
            cached,
            rc.spec.target.existing_secret_policy,
        )
        .await
        {
            Ok(n) => {
                out.writes += n;
                true
            }
            Err(f) => {
                // A foreign Secret under Fail is a reported state, not an error.
                if f.reason == reason::SECRET_EXISTS {
                    debug!(namespace = %f.namespace, message = %f.message, "namespace not synced");
                } else {
                    warn!(namespace = %f.namespace, reason = %f.reason, message = %f.message, "namespace not synced");
                }
                out.failure = Some(f);
                false
            }
        },
        // No credential yet: keep whatever is there; patch SAs only where our Secret exists.
        None => cached.is_some_and(|s| build::is_managed_by(&s, &rc_name)),
    };
    let mut sa_errors = Vec::new();
    for sa in &sas {
        let selected = secret_ready && targets::service_account_selected(&rc.spec.target.service_accounts, sa);
        if !selected && !build::recorded_entries(sa).contains(&secret_name) {
            continue;
        }
        match apply::reconcile_service_account(&ctx.client, sa, &secret_name, selected).await {
            Ok(n) => {
                out.writes += n;
                if selected {
                    out.sa_patched += 1;
                }
            }
            Err(e) => {
                out.sa_failed += 1;
                warn!(namespace = %ns, error = %e, "ServiceAccount not patched");
                sa_errors.push(e);
            }
        }
    }
    if out.failure.is_none()
        && let Some(first) = sa_errors.first()
    {
        out.failure = Some(FailedNamespace {
            namespace: ns.clone(),
            reason: reason::SERVICE_ACCOUNT_PATCH_FAILED.into(),
            message: first.clone(),
        });
    }
    out
}

/// Events on transitions, not on every reconcile.
async fn announce_transitions(
    ctx: &Context,
    rc: &RegistryCredential,
    old: &RegistryCredentialStatus,
    new: &RegistryCredentialStatus,
    minted_now: bool,
) {
    let find = |s: &RegistryCredentialStatus, t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    if minted_now {
        let note = match &new.not_after {
            Some(t) => format!(
                "Issued a credential for {} valid until {}",
                new.registries.join(", "),
                t.0
            ),
            None => format!("Issued a credential for {}", new.registries.join(", ")),
        };
        publish(ctx, rc, EventType::Normal, reason::ISSUED, "Mint", &note).await;
    }
    let old_failed: BTreeSet<(&str, &str)> = old
        .failed_namespaces
        .iter()
        .map(|f| (f.namespace.as_str(), f.reason.as_str()))
        .collect();
    for f in &new.failed_namespaces {
        if !old_failed.contains(&(f.namespace.as_str(), f.reason.as_str())) {
            publish(ctx, rc, EventType::Warning, &f.reason, "Sync", &f.message).await;
        }
    }
    let pull = find(new, cond::PULL_AUTH_HEALTHY);
    if pull != find(old, cond::PULL_AUTH_HEALTHY)
        && let Some((status, reason)) = pull
        && status != "Unknown"
    {
        let type_ = if status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let note = new.pull_auth.as_ref().map(|p| p.message.clone()).unwrap_or_default();
        publish(ctx, rc, type_, &reason, "PullAuthCheck", &note).await;
    }
    let synced = find(new, cond::SYNCED);
    if synced != find(old, cond::SYNCED)
        && let Some((status, reason)) = synced
        && status == "True"
    {
        let note = format!("{} namespaces hold the current Secret", new.namespaces.synced);
        publish(ctx, rc, EventType::Normal, &reason, "Sync", &note).await;
    }
}

pub(crate) async fn publish(
    ctx: &Context,
    rc: &RegistryCredential,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rc.object_ref(&())).await {
        warn!(error = %e, "publishing an Event failed");
    }
}

fn invalid_status(
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    invalid: &Cond,
    now: Timestamp,
) -> RegistryCredentialStatus {
    let unknown = Cond::new("Unknown", reason::PENDING, "Waiting for a valid spec.");
    let pull = status::pull_auth_condition(None, "");
    RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        conditions: status::conditions(
            &previous.conditions,
            rc.metadata.generation,
            &Time(renewal::truncate(now)),
            [
                (cond::ISSUED, invalid),
                (cond::SYNCED, &unknown),
                (cond::PULL_AUTH_HEALTHY, &pull),
                (cond::READY, invalid),
            ],
        ),
        ..previous.clone()
    }
}

async fn write_status(rc: &RegistryCredential, ctx: &Context, new: RegistryCredentialStatus) -> Result<()> {
    if !status::needs_write(rc.status.as_ref(), &new) {
        return Ok(());
    }
    let api: Api<RegistryCredential> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": RegistryCredential::api_version(&()),
        "kind": RegistryCredential::kind(&()),
        "status": new,
    });
    let name = rc.name_any();
    let params = PatchParams::apply("regcred").force();
    match tokio::time::timeout(STATUS_TIMEOUT, api.patch_status(&name, &params, &Patch::Apply(&patch))).await {
        Ok(result) => result
            .map(|_| ())
            .map_err(Error::kube(format!("writing status of RegistryCredential {name}"))),
        Err(_) => Err(Error::Cleanup(format!(
            "writing status of RegistryCredential {name} timed out"
        ))),
    }
}

/// Deletion: remove regcred's SA entries and every managed Secret of this credential.
async fn cleanup(rc: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let name = rc.name_any();
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let selector = format!("{},{}={}", build::MANAGED_SELECTOR, build::CREDENTIAL_LABEL, name);
    let list = secrets
        .list_metadata(&kube::api::ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(format!("listing Secrets of RegistryCredential {name}")))?;
    let mut pairs: BTreeSet<(String, String)> = list
        .items
        .iter()
        .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    // Entries regcred recorded where the Secret is already gone.
    let secret_name = build::secret_name(rc);
    for sa in ctx.service_accounts.state() {
        if build::recorded_entries(&sa).contains(&secret_name) {
            let ns = sa.namespace().unwrap_or_default();
            let other_owner = ctx
                .managed_secrets
                .get(&ObjectRef::new(&secret_name).within(&ns))
                .is_some_and(|s| !build::is_managed_by(&s, &name));
            if !other_owner {
                pairs.insert((ns, secret_name.clone()));
            }
        }
    }
    let mut errors = Vec::new();
    for (ns, secret) in &pairs {
        let sas: Vec<_> = ctx
            .service_accounts
            .state()
            .into_iter()
            .filter(|sa| sa.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        if let Err(e) = apply::clean_namespace(&ctx.client, &name, ns, secret, &sas).await {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(Error::Cleanup(errors.join("; ")));
    }
    ctx.held.forget(&rc.uid().unwrap_or_default());
    ctx.pull_checks.forget(&rc.uid().unwrap_or_default());
    ctx.metrics.forget(&name);
    info!(namespaces = pairs.len(), "cleaned up before deletion");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn requeues_at_the_earliest_planned_time() {
        let now = t("2026-11-22T00:00:00Z");
        let at = |s| Some(t(s));
        assert_eq!(
            requeue_after([at("2026-11-22T00:10:00Z"), at("2026-11-22T00:02:00Z")], now),
            Duration::from_secs(120)
        );
        assert_eq!(requeue_after([None, None], now), RESYNC);
        assert_eq!(requeue_after([at("2026-11-22T05:00:00Z")], now), RESYNC);
        // Overdue: soon, never a negative or zero wait.
        assert_eq!(requeue_after([at("2026-11-21T23:59:00Z")], now), Duration::from_secs(1));
    }
}
