//! The reconcile pipeline for one RegistryCredential:
//! *resolve* (caches) → *validate* → *credential* (mint or reuse) →
//! *build* (pure, [`build`]) → *apply* ([`apply`]) → *status* ([`status`]).

pub mod apply;
pub mod build;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
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
use crate::api::{FailedNamespace, NamespaceCounts, RegistryCredential, RegistryCredentialStatus, ServiceAccountCounts};
use crate::dockerconfig;
use crate::error::{Error, Result};
use crate::providers::{Credential, MintError, MintInput};
use crate::renewal::{self, Schedule};
use crate::targets;

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
    held: Mutex<HashMap<String, Held>>,
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

/// A credential regcred holds for one RegistryCredential (by uid).
struct Held {
    credential: Credential,
    config_json: Vec<u8>,
    /// Spec and source Secret version it was minted from.
    fingerprint: u64,
    issued: Timestamp,
    schedule: Option<Schedule>,
    /// Fingerprint of the last failed attempt, so a fix re-mints at once.
    failed_fingerprint: Option<u64>,
}

impl Context {
    pub fn new(client: Client, credentials_namespace: String, caches: Caches, recorder: Recorder) -> Self {
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
            held: Mutex::new(HashMap::new()),
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
pub fn error_policy(rc: Arc<RegistryCredential>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(registrycredential = %rc.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// A stable hash of what a credential is minted from.
fn fingerprint(rc: &RegistryCredential, source: Option<&Secret>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&rc.spec.provider).unwrap_or_default().hash(&mut h);
    rc.spec.renew_before.map(|d| std::time::Duration::from(d).as_millis()).hash(&mut h);
    source.map(|s| (s.uid(), s.resource_version())).hash(&mut h);
    h.finish()
}

/// What the credential step decided.
enum CredentialOutcome {
    /// A credential is held (minted now or earlier); the Issued condition.
    Held { issued: Cond, minted_now: bool },
    /// No credential: the mint failed or waits for its backoff.
    Missing { issued: Cond },
}

async fn apply_credential(rc: &RegistryCredential, ctx: &Context) -> Result<Action> {
    let name = rc.name_any();
    let uid = rc.uid().unwrap_or_default();
    let now = Timestamp::now();
    let previous = rc.status.clone().unwrap_or_default();

    // validate
    let Some(provider) = rc.spec.provider.selected() else {
        let invalid = Cond::new("False", reason::INVALID_SPEC, "spec.provider must set exactly one of ecr, gcr, acr or static.");
        write_status(rc, ctx, invalid_status(rc, &previous, &invalid, now)).await?;
        return Ok(Action::await_change());
    };
    let secret_name = build::secret_name(rc);

    // resolve
    let source = provider
        .source_secret()
        .and_then(|n| ctx.source_secrets.get(&ObjectRef::new(n).within(&ctx.credentials_namespace)));
    let fp = fingerprint(rc, source.as_deref());

    // credential: reuse what is held unless due, changed, or absent
    let mut failed_attempts = previous.failed_attempts;
    let mut last_failure_time = previous.last_failure_time.clone();
    let mut next_attempt: Option<Timestamp> = None;
    let outcome = {
        let (due, changed_since_failure) = {
            let held = ctx.held.lock().expect("held lock");
            match held.get(&uid) {
                Some(h) => (
                    h.fingerprint != fp || h.schedule.is_some_and(|s| now >= s.renew_at),
                    h.failed_fingerprint.is_some_and(|f| f != fp) || h.fingerprint != fp,
                ),
                None => (true, false),
            }
        };
        let backoff_until = last_failure_time
            .as_ref()
            .filter(|_| failed_attempts > 0)
            .map(|t| renewal::add(t.0, renewal::backoff(failed_attempts, None)));
        let in_backoff = backoff_until.is_some_and(|t| now < t) && !changed_since_failure;
        if due && !in_backoff {
            let input = MintInput {
                source: source.as_deref(),
                credentials_namespace: &ctx.credentials_namespace,
            };
            match provider.mint(&input).await {
                Ok(credential) => {
                    let config_json = dockerconfig::encode(&credential.auths);
                    // After a restart the same credential may already be in the
                    // Secrets: keep its issue time so status does not change.
                    let already_written = previous.last_issued_time.clone().filter(|_| {
                        ctx.managed_secrets.state().iter().any(|s| {
                            build::is_managed_by(s, &name)
                                && s.data.as_ref().and_then(|d| d.get(dockerconfig::DATA_KEY)).map(|b| &b.0) == Some(&config_json)
                        })
                    });
                    let issued_at = already_written.as_ref().map_or(now, |t| t.0);
                    let schedule = credential
                        .not_after
                        .is_some()
                        .then(|| renewal::schedule(issued_at, credential.not_after, rc.spec.renew_before.map(Into::into), jitter(&uid)));
                    if already_written.is_none() {
                        info!(provider = provider.kind().as_str(), registries = ?credential.registries(), "credential issued");
                    }
                    failed_attempts = 0;
                    ctx.held.lock().expect("held lock").insert(
                        uid.clone(),
                        Held {
                            credential,
                            config_json,
                            fingerprint: fp,
                            issued: issued_at,
                            schedule,
                            failed_fingerprint: None,
                        },
                    );
                    CredentialOutcome::Held {
                        issued: Cond::new("True", reason::ISSUED, issued_message(schedule.as_ref())),
                        minted_now: issued_at == now,
                    }
                }
                Err(err) => {
                    failed_attempts += 1;
                    last_failure_time = Some(Time(renewal::truncate(now)));
                    let wait = renewal::backoff(failed_attempts, err.retry_after());
                    next_attempt = Some(renewal::truncate(renewal::add(now, wait)));
                    warn!(reason = err.reason(), error = %err, attempts = failed_attempts, retry_in = ?wait, "mint failed");
                    publish(ctx, rc, EventType::Warning, err.reason(), "Mint", &format!("{err}; retrying in {}s", wait.as_secs())).await;
                    mint_failed(ctx, &uid, fp, &err, now)
                }
            }
        } else if in_backoff && ctx.held.lock().expect("held lock").get(&uid).is_none_or(|h| h.fingerprint != fp || due) {
            next_attempt = backoff_until.map(renewal::truncate);
            let issued = previous_issued(&previous).unwrap_or_else(|| Cond::new("Unknown", reason::PENDING, "Waiting to retry the mint."));
            match ctx.held.lock().expect("held lock").get(&uid) {
                Some(_) => CredentialOutcome::Held { issued, minted_now: false },
                None => CredentialOutcome::Missing { issued },
            }
        } else {
            let held = ctx.held.lock().expect("held lock");
            let h = held.get(&uid);
            CredentialOutcome::Held {
                issued: Cond::new("True", reason::ISSUED, issued_message(h.and_then(|h| h.schedule.as_ref()))),
                minted_now: false,
            }
        }
    };

    let (config_json, registries, schedule, issued_at) = {
        let held = ctx.held.lock().expect("held lock");
        match held.get(&uid) {
            Some(h) => (
                Some(h.config_json.clone()),
                h.credential.registries(),
                h.schedule,
                Some(h.issued),
            ),
            None => (None, Vec::new(), None, None),
        }
    };
    let not_after_text = schedule.map(|s| Time(s.not_after)).and_then(|t| serde_json::to_value(&t).ok()).and_then(|v| v.as_str().map(String::from));

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
        sas_by_ns.entry(sa.namespace().unwrap_or_default()).or_default().push(sa);
    }

    let outcomes: Vec<apply::NamespaceOutcome> = futures::stream::iter(targeted_names.iter().cloned())
        .map(|ns_name| {
            let sas = sas_by_ns.get(&ns_name).cloned().unwrap_or_default();
            let desired = config_json
                .as_deref()
                .map(|json| build::desired_secret(rc, &ns_name, json, not_after_text.as_deref()));
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
    let synced = (outcomes.len() - failed.len()) as u32;
    let sa_patched = outcomes.iter().map(|o| o.sa_patched).sum();
    let sa_failed = outcomes.iter().map(|o| o.sa_failed).sum();
    let writes: u32 = outcomes.iter().map(|o| o.writes).sum();
    let targeted_count = targeted.len() as u32;
    let (issued, minted_now) = match outcome {
        CredentialOutcome::Held { issued, minted_now } => (issued, minted_now),
        CredentialOutcome::Missing { issued } => (issued, false),
    };
    let synced_cond = if config_json.is_none() {
        Cond::new("Unknown", reason::PENDING, "Waiting for a credential to write.")
    } else {
        status::synced_condition(targeted_count, synced, &failed, sa_failed)
    };
    let pull_auth = status::pull_auth_condition(previous.pull_auth.as_ref().map(|p| p.result), previous.pull_auth.as_ref().map_or("", |p| p.message.as_str()));
    let ready = status::ready_condition(&issued, &synced_cond, &pull_auth);
    failed = status::bounded_failures(failed);
    let now_time = Time(renewal::truncate(now));
    let renewal_time = next_attempt.or(schedule.map(|s| s.renew_at)).map(Time);
    let new_status = RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        provider: Some(provider.kind()),
        registries,
        not_after: schedule.map(|s| Time(s.not_after)),
        renewal_time: renewal_time.clone(),
        last_issued_time: issued_at.map(|t| Time(renewal::truncate(t))),
        failed_attempts,
        last_failure_time,
        namespaces: NamespaceCounts {
            targeted: targeted_count,
            synced: if config_json.is_some() { synced } else { 0 },
        },
        failed_namespaces: failed.clone(),
        service_accounts: ServiceAccountCounts {
            patched: sa_patched,
            failed: sa_failed,
        },
        summary: Some(format!("{}/{}", if config_json.is_some() { synced } else { 0 }, targeted_count)),
        pull_auth: previous.pull_auth.clone(),
        conditions: status::conditions(
            &previous.conditions,
            rc.metadata.generation,
            &now_time,
            [(cond::ISSUED, &issued), (cond::SYNCED, &synced_cond), (cond::PULL_AUTH_HEALTHY, &pull_auth), (cond::READY, &ready)],
        ),
    };
    announce_transitions(ctx, rc, &previous, &new_status, minted_now).await;
    if writes > 0 {
        info!(writes, targeted = targeted_count, synced, "fan-out wrote changes");
    }
    debug!(writes, targeted = targeted_count, synced, stale = stale.len(), "reconciled");
    write_status(rc, ctx, new_status).await?;
    if !cleanup_errors.is_empty() {
        return Err(Error::Cleanup(cleanup_errors.join("; ")));
    }

    let mut next = RESYNC;
    if let Some(t) = renewal_time {
        let until = t.0.duration_since(Timestamp::now());
        next = next.min(until.unsigned_abs().max(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next))
}

fn issued_message(schedule: Option<&Schedule>) -> String {
    match schedule {
        Some(s) if s.clamped => format!(
            "Credential issued; the provider reported no plausible expiry, so it is treated as valid until {} and renewed at {}.",
            s.not_after, s.renew_at
        ),
        Some(s) => format!("Credential valid until {}; renewal at {}.", s.not_after, s.renew_at),
        None => "Credential issued; it has no expiry and is re-read when its source changes.".into(),
    }
}

/// Record a failed attempt; the Issued condition says whether the Secrets still work.
fn mint_failed(ctx: &Context, uid: &str, fp: u64, err: &MintError, now: Timestamp) -> CredentialOutcome {
    let mut held = ctx.held.lock().expect("held lock");
    match held.get_mut(uid) {
        Some(h) => {
            h.failed_fingerprint = Some(fp);
            let expired = h.schedule.is_some_and(|s| now >= s.not_after);
            let issued = if expired {
                Cond::new(
                    "False",
                    reason::EXPIRED,
                    format!("The credential in the Secrets expired and a new one could not be minted: {err}"),
                )
            } else {
                let until = h.schedule.map(|s| format!(" (still valid until {})", s.not_after)).unwrap_or_default();
                Cond::new("False", err.reason(), format!("Minting a new credential failed: {err}. The Secrets keep the last good credential{until}."))
            };
            CredentialOutcome::Held { issued, minted_now: false }
        }
        None => CredentialOutcome::Missing {
            issued: Cond::new("False", err.reason(), format!("Minting a credential failed: {err}.")),
        },
    }
}

/// The Issued condition as it was, when nothing was attempted this time.
fn previous_issued(previous: &RegistryCredentialStatus) -> Option<Cond> {
    previous.conditions.iter().find(|c| c.type_ == cond::ISSUED).map(|c| Cond {
        status: match c.status.as_str() {
            "True" => "True",
            "False" => "False",
            _ => "Unknown",
        },
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
}

/// A per-credential jitter in `[0, 1)`, stable across restarts.
fn jitter(uid: &str) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (uid, Timestamp::now().as_second() / 60).hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
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
        Some(desired) => match apply::ensure_secret(&ctx.client, &rc_name, desired, cached, rc.spec.target.existing_secret_policy).await {
            Ok(n) => {
                out.writes += n;
                true
            }
            Err(f) => {
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
        if !selected && !build::recorded_entries(sa).iter().any(|e| *e == secret_name) {
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
async fn announce_transitions(ctx: &Context, rc: &RegistryCredential, old: &RegistryCredentialStatus, new: &RegistryCredentialStatus, minted_now: bool) {
    let find = |s: &RegistryCredentialStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()));
    if minted_now {
        let note = match &new.not_after {
            Some(t) => format!("Issued a credential for {} valid until {}", new.registries.join(", "), t.0),
            None => format!("Issued a credential for {}", new.registries.join(", ")),
        };
        publish(ctx, rc, EventType::Normal, reason::ISSUED, "Mint", &note).await;
    }
    let old_failed: BTreeSet<(&str, &str)> = old.failed_namespaces.iter().map(|f| (f.namespace.as_str(), f.reason.as_str())).collect();
    for f in &new.failed_namespaces {
        if !old_failed.contains(&(f.namespace.as_str(), f.reason.as_str())) {
            publish(ctx, rc, EventType::Warning, &f.reason, "Sync", &f.message).await;
        }
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

async fn publish(ctx: &Context, rc: &RegistryCredential, type_: EventType, reason: &str, action: &str, note: &str) {
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

fn invalid_status(rc: &RegistryCredential, previous: &RegistryCredentialStatus, invalid: &Cond, now: Timestamp) -> RegistryCredentialStatus {
    let unknown = Cond::new("Unknown", reason::PENDING, "Waiting for a valid spec.");
    let pull = status::pull_auth_condition(None, "");
    RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        conditions: status::conditions(
            &previous.conditions,
            rc.metadata.generation,
            &Time(renewal::truncate(now)),
            [(cond::ISSUED, invalid), (cond::SYNCED, &unknown), (cond::PULL_AUTH_HEALTHY, &pull), (cond::READY, invalid)],
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
        Ok(result) => result.map(|_| ()).map_err(Error::kube(format!("writing status of RegistryCredential {name}"))),
        Err(_) => Err(Error::Cleanup(format!("writing status of RegistryCredential {name} timed out"))),
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
    let mut pairs: BTreeSet<(String, String)> = list.items.iter().map(|s| (s.namespace().unwrap_or_default(), s.name_any())).collect();
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
    ctx.held.lock().expect("held lock").remove(&rc.uid().unwrap_or_default());
    info!(namespaces = pairs.len(), "cleaned up before deletion");
    Ok(Action::await_change())
}
