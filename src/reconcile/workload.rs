//! `identity: PerServiceAccount`: the reconcile step that gives each
//! selected ServiceAccount a credential of its own cloud identity.
//!
//! For every selected ServiceAccount of a targeted namespace:
//! - without the annotation its mode needs ([`PerServiceAccount::identity`])
//!   it gets nothing, and status lists it (`IdentityMissing`);
//! - with one, its Secret (`<secretName>-<sa>`) is kept while it holds a
//!   credential of that identity, for that ServiceAccount's uid, from the
//!   same spec, not yet due for renewal ([`still_good`]: all read from the
//!   Secret's own annotations and the cache's digest of its data, so a
//!   restarted operator re-mints nothing that is still valid);
//! - otherwise regcred requests a token for that ServiceAccount alone
//!   (TokenRequest, the mode's audience, a short lifetime), exchanges it
//!   ([`crate::providers::workload::mint_for`]) at the provider's pace
//!   ([`super::pace`]), writes the Secret and links it from that
//!   ServiceAccount only. The token lives in memory for that exchange only.
//!
//! A failed exchange keeps the last good Secret of the same identity and
//! retries with backoff (the provider's `Retry-After` when it gives one);
//! a Secret of another identity or ServiceAccount uid (re-annotated,
//! re-created) goes. Secrets of ServiceAccounts no longer selected, no
//! longer annotated, or gone are cleaned with their links.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use super::apply;
use super::build;
use super::changes::{Before, Changes};
use super::credential::not_after_annotation;
use super::events::Note;
use super::pace::Pacers;
use super::sa_writes::SaWrites;
use crate::api::conditions::reason;
use crate::api::{FailedServiceAccount, IdentityCounts, ProviderSpec, RegistryCredential};
use crate::cache::{Cache, KeptNamespace, KeptSecret, KeptServiceAccount};
use crate::dockerconfig;
use crate::identity::{self, PerServiceAccount, WorkloadIdentity};
use crate::providers::{self, MintError, MintInput};
use crate::redact::Sensitive;
use crate::renewal;
use crate::targets;
use crate::telemetry::Metrics;

/// Exchanges in flight at once (the pacer sets the rate).
const CONCURRENCY: usize = 16;
/// On a per-ServiceAccount Secret: the ServiceAccount it is for, its uid,
/// the identity it was minted with, when regcred renews it, and a digest of
/// the data regcred wrote.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "regcred.dev/service-account";
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "regcred.dev/service-account-uid";
pub const IDENTITY_ANNOTATION: &str = "regcred.dev/identity";
pub const RENEW_AT_ANNOTATION: &str = "regcred.dev/renew-at";
pub const DATA_DIGEST_ANNOTATION: &str = "regcred.dev/data-sha256";
pub const REGISTRIES_ANNOTATION: &str = "regcred.dev/registries";
/// Longest list of ServiceAccounts in status.
const MAX_LISTED: usize = 50;

/// What the step reads and writes with.
pub struct Env<'a> {
    pub client: &'a Client,
    pub namespaces: &'a Cache<KeptNamespace>,
    pub service_accounts: &'a Cache<KeptServiceAccount>,
    pub managed_secrets: &'a Cache<KeptSecret>,
    pub credentials_namespace: &'a str,
    pub http: &'a reqwest::Client,
    pub metrics: &'a Metrics,
    pub sa_writes: &'a Arc<SaWrites>,
    pub changes: &'a Changes,
    pub pacers: &'a Pacers,
    pub held: &'a std::sync::Mutex<Held>,
}

/// The failed attempts of one RegistryCredential's ServiceAccounts, by uid:
/// the backoff survives between reconciles (not restarts: a restarted
/// operator tries each once more).
#[derive(Default)]
pub struct Held {
    attempts: HashMap<String, Attempt>,
    /// Credentials written by this process, until the Secret cache shows
    /// them: a reconcile that its own writes' watch events start must not
    /// take a Secret the cache has not caught up with for a missing one.
    written: HashMap<String, Written>,
}

/// A credential written for a ServiceAccount (by uid).
#[derive(Clone)]
struct Written {
    identity: String,
    fingerprint: String,
    at: Timestamp,
    kept: Kept,
}

/// How long a write is believed without the cache showing it.
const CACHE_LAG: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Attempt {
    identity: String,
    failures: u32,
    retry_at: Timestamp,
    failure: FailedServiceAccount,
}

/// What the step found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub counts: IdentityCounts,
    pub failed: Vec<FailedServiceAccount>,
    pub targeted: u32,
    /// Namespaces whose every selected ServiceAccount holds a valid credential.
    pub synced: u32,
    pub registries: BTreeSet<String>,
    /// The earliest expiry among the valid credentials.
    pub not_after: Option<Timestamp>,
    /// The earliest renewal or retry.
    pub next: Option<Timestamp>,
    pub exchanges: u32,
    pub writes: u32,
    pub clean_errors: Vec<apply::Error>,
    pub notes: Vec<Note>,
}

/// One selected ServiceAccount and what it needs.
struct Item {
    sa: Arc<KeptServiceAccount>,
    secret: String,
    identity: Option<WorkloadIdentity>,
}

/// A ServiceAccount's Secret as the last write left it.
#[derive(Clone)]
struct Kept {
    not_after: Option<Timestamp>,
    renew_at: Timestamp,
    registries: Vec<String>,
}

pub async fn step(
    env: &Env<'_>,
    rc: &RegistryCredential,
    mode: &PerServiceAccount,
    provider: ProviderSpec<'_>,
    now: Timestamp,
) -> Outcome {
    let base = build::secret_name(rc);
    let fingerprint = super::credential::Fingerprint::of(rc, None);
    let (targeted, items) = selected(env, rc, mode, &base);
    forget_stale(env.held, &items, now);
    let mut out = Outcome {
        targeted: targeted.len() as u32,
        ..Default::default()
    };
    let mut due = Vec::new();
    for item in &items {
        out.counts.selected += 1;
        let Some(identity) = &item.identity else {
            out.counts.without_identity += 1;
            out.failed.push(missing(mode, &item.sa));
            continue;
        };
        let good = still_good(env, rc, item, identity, fingerprint.as_str(), now)
            .or_else(|| just_written(env.held, &item.sa, identity, fingerprint.as_str(), now));
        match good {
            Some(kept) => {
                out.counts.valid += 1;
                out.note_valid(&kept);
                refresh_metadata(env, rc, item, &mut out).await;
                out.linked(link(env, rc, &item.sa, &item.secret).await);
            }
            None => due.push(item),
        }
    }
    let pass = Pass {
        env,
        rc,
        mode,
        provider,
        fingerprint: fingerprint.as_str(),
        now,
    };
    let minted = exchange_all(pass, &due).await;
    for (result, linked) in minted {
        out.linked(linked);
        match result {
            Ok(kept) => {
                out.counts.valid += 1;
                out.exchanges += 1;
                out.writes += 1;
                out.note_valid(&kept);
            }
            Err(failure) => {
                out.counts.failed += 1;
                out.next = earliest(out.next, failure.retry_time.as_ref().map(|t| t.0));
                out.failed.push(*failure);
            }
        }
    }
    out.synced = synced_namespaces(&targeted, &out.failed);
    clean(env, rc, &items, &mut out).await;
    out.failed
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

impl Outcome {
    fn note_valid(&mut self, kept: &Kept) {
        self.registries.extend(kept.registries.iter().cloned());
        if let Some(t) = kept.not_after {
            self.not_after = earliest(self.not_after, Some(t));
        }
        self.next = earliest(self.next, Some(kept.renew_at));
    }

    /// The failures as status lists them.
    pub fn listed(&self) -> Vec<FailedServiceAccount> {
        self.failed.iter().take(MAX_LISTED).cloned().collect()
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The targeted namespaces, and the selected ServiceAccounts in them.
fn selected(
    env: &Env<'_>,
    rc: &RegistryCredential,
    mode: &PerServiceAccount,
    base: &str,
) -> (BTreeSet<String>, Vec<Item>) {
    let target = &rc.spec.target;
    let targeted: BTreeSet<String> = env
        .namespaces
        .state()
        .iter()
        .filter(|ns| targets::namespace_targeted(&target.namespaces, env.credentials_namespace, ns))
        .map(|ns| ns.name.to_string())
        .collect();
    let mut items: Vec<Item> = env
        .service_accounts
        .state()
        .into_iter()
        .filter(|sa| targeted.contains(&*sa.namespace))
        .filter(|sa| targets::service_account_selected(&target.service_accounts, &**sa))
        .map(|sa| Item {
            secret: identity::secret_name(base, &sa.name),
            identity: mode.identity(|k| sa.identity_annotation(k)),
            sa,
        })
        .collect();
    items.sort_by(|a, b| (&a.sa.namespace, &a.sa.name).cmp(&(&b.sa.namespace, &b.sa.name)));
    (targeted, items)
}

fn missing(mode: &PerServiceAccount, sa: &KeptServiceAccount) -> FailedServiceAccount {
    FailedServiceAccount {
        namespace: sa.namespace.to_string(),
        name: sa.name.to_string(),
        reason: reason::IDENTITY_MISSING.into(),
        message: format!(
            "ServiceAccount {}/{} has no {} annotation, so it gets no credential; annotate it with the identity it pulls as",
            sa.namespace,
            sa.name,
            mode.annotation()
        ),
        identity: None,
        retry_time: None,
    }
}

/// The ServiceAccount's Secret, if it holds a credential regcred minted for
/// this ServiceAccount (uid), identity and spec, not yet due for renewal.
fn still_good(
    env: &Env<'_>,
    rc: &RegistryCredential,
    item: &Item,
    identity: &WorkloadIdentity,
    fingerprint: &str,
    now: Timestamp,
) -> Option<Kept> {
    let secret = env.managed_secrets.get(Some(&item.sa.namespace), &item.secret)?;
    let get = |k: &str| secret.annotations.get(k);
    let ours = secret.credential() == Some(rc.name_any().as_str())
        && get(SERVICE_ACCOUNT_UID_ANNOTATION) == item.sa.uid()
        && get(IDENTITY_ANNOTATION) == Some(identity.name().as_str())
        && get(build::FINGERPRINT_ANNOTATION) == Some(fingerprint)
        && get(DATA_DIGEST_ANNOTATION).is_some()
        && get(DATA_DIGEST_ANNOTATION) == get(build::CACHED_DATA_DIGEST);
    if !ours {
        return None;
    }
    let renew_at: Timestamp = get(RENEW_AT_ANNOTATION)?.parse().ok()?;
    if renew_at <= now {
        return None;
    }
    Some(Kept {
        not_after: get(build::NOT_AFTER_ANNOTATION).and_then(|t| t.parse().ok()),
        renew_at,
        registries: get(REGISTRIES_ANNOTATION)
            .map(|r| r.split(',').filter(|h| !h.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

/// Drop writes the cache has had time to show, and attempts of
/// ServiceAccounts no longer selected.
fn forget_stale(held: &std::sync::Mutex<Held>, items: &[Item], now: Timestamp) {
    let live: std::collections::HashSet<&str> = items.iter().filter_map(|i| i.sa.uid()).collect();
    let mut held = held.lock().expect("held lock");
    held.written.retain(|_, w| now < renewal::add(w.at, CACHE_LAG));
    held.attempts.retain(|uid, _| live.contains(uid.as_str()));
}

/// What this process wrote for the ServiceAccount within [`CACHE_LAG`],
/// for this identity and spec.
fn just_written(
    held: &std::sync::Mutex<Held>,
    sa: &KeptServiceAccount,
    identity: &WorkloadIdentity,
    fingerprint: &str,
    now: Timestamp,
) -> Option<Kept> {
    let held = held.lock().expect("held lock");
    let w = held.written.get(sa.uid()?)?;
    let recent = now < renewal::add(w.at, CACHE_LAG) && w.kept.renew_at > now;
    (recent && w.identity == identity.name() && w.fingerprint == fingerprint).then(|| w.kept.clone())
}

/// The annotations regcred writes on a per-ServiceAccount Secret along
/// with its credential, carried over when only the spec's labels or
/// annotations change.
const CREDENTIAL_ANNOTATIONS: [&str; 8] = [
    build::FINGERPRINT_ANNOTATION,
    build::NOT_AFTER_ANNOTATION,
    RENEW_AT_ANNOTATION,
    SERVICE_ACCOUNT_ANNOTATION,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    IDENTITY_ANNOTATION,
    DATA_DIGEST_ANNOTATION,
    REGISTRIES_ANNOTATION,
];

/// A still-valid Secret gets the spec's current `secretLabels` and
/// `secretAnnotations` (and loses dropped ones) without a new exchange:
/// its data is left as it is.
async fn refresh_metadata(env: &Env<'_>, rc: &RegistryCredential, item: &Item, out: &mut Outcome) {
    let Some(kept) = env.managed_secrets.get(Some(&item.sa.namespace), &item.secret) else {
        return;
    };
    let existing = kept.object();
    let carried: Vec<(&str, String)> = CREDENTIAL_ANNOTATIONS
        .iter()
        .filter_map(|k| existing.annotations().get(*k).map(|v| (*k, v.clone())))
        .collect();
    let mut desired = build::secret_with(rc, &item.sa.namespace, &item.secret, &[], carried);
    desired.data = None;
    if build::secret_up_to_date(&existing, &desired)
        && build::ManagedMetadata::of(&existing) == build::ManagedMetadata::of(&desired)
    {
        return;
    }
    let policy = rc.spec.target.existing_secret_policy;
    let uid = rc.uid().unwrap_or_default();
    match apply::ensure_secret(
        env.client,
        &rc.name_any(),
        &uid,
        &desired,
        Some(Arc::new(existing)),
        policy,
    )
    .await
    {
        Ok(w) => out.writes += w.writes,
        Err(f) => {
            warn!(namespace = %f.namespace, message = %f.message, "updating a per-ServiceAccount Secret's metadata failed")
        }
    }
}

/// What every exchange of one pass shares.
#[derive(Clone, Copy)]
struct Pass<'a> {
    env: &'a Env<'a>,
    rc: &'a RegistryCredential,
    mode: &'a PerServiceAccount,
    provider: ProviderSpec<'a>,
    fingerprint: &'a str,
    now: Timestamp,
}

/// Exchange, write and link for every ServiceAccount in `due`, paced;
/// each one's result.
async fn exchange_all<'i>(pass: Pass<'_>, due: &[&'i Item]) -> Vec<(Result<Kept, Box<FailedServiceAccount>>, Linked)> {
    // Boxed futures made up front: a closure returning borrowing futures
    // trips the compiler's `Send` check of the reconcile future.
    let exchanges: Vec<_> = due
        .iter()
        .map(|item| {
            let item: &'i Item = item;
            Box::pin(async move {
                let result = one(pass, item).await;
                // Linked as soon as its Secret is written, not after the
                // whole (paced) pass: a pod created meanwhile pulls with it.
                let linked = match &result {
                    Ok(_) => link(pass.env, pass.rc, &item.sa, &item.secret).await,
                    Err(_) => Ok(0),
                };
                (result, linked)
            })
        })
        .collect();
    futures::stream::iter(exchanges)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// One ServiceAccount: unless its backoff holds it, a token, an exchange
/// and its Secret.
async fn one(pass: Pass<'_>, item: &Item) -> Result<Kept, Box<FailedServiceAccount>> {
    let Pass {
        env,
        rc,
        fingerprint,
        now,
        ..
    } = pass;
    let identity = item
        .identity
        .as_ref()
        .expect("only ServiceAccounts with an identity are due");
    let uid = item.sa.uid().unwrap_or_default().to_string();
    let waiting = {
        let held = env.held.lock().expect("held lock");
        held.attempts
            .get(&uid)
            .filter(|a| a.identity == identity.name() && a.retry_at > now)
            .map(|a| Box::new(a.failure.clone()))
    };
    if let Some(failure) = waiting {
        drop_other_identity(env, rc, item, identity).await;
        return Err(failure);
    }
    let result = mint_and_write(pass, item, identity).await;
    let result = record(env.held, &uid, item, (identity, fingerprint), result, now);
    if result.is_err() {
        drop_other_identity(env, rc, item, identity).await;
    }
    result
}

/// Keep the outcome of an exchange: a success clears the ServiceAccount's
/// backoff, a failure extends it.
fn record(
    held: &std::sync::Mutex<Held>,
    uid: &str,
    item: &Item,
    (identity, fingerprint): (&WorkloadIdentity, &str),
    result: Result<Kept, Failure>,
    now: Timestamp,
) -> Result<Kept, Box<FailedServiceAccount>> {
    let mut held = held.lock().expect("held lock");
    let (reason, message, retry_after) = match result {
        Ok(kept) => {
            held.attempts.remove(uid);
            let written = Written {
                identity: identity.name(),
                fingerprint: fingerprint.to_string(),
                at: now,
                kept: kept.clone(),
            };
            held.written.insert(uid.to_string(), written);
            return Ok(kept);
        }
        Err(e) => e,
    };
    let failures = held
        .attempts
        .get(uid)
        .filter(|a| a.identity == identity.name())
        .map_or(1, |a| a.failures.saturating_add(1));
    let retry_at = renewal::add(now, renewal::backoff(failures, retry_after));
    let failure = FailedServiceAccount {
        namespace: item.sa.namespace.to_string(),
        name: item.sa.name.to_string(),
        reason,
        message,
        identity: Some(identity.name()),
        retry_time: Some(Time(renewal::truncate(retry_at))),
    };
    held.attempts.insert(
        uid.to_string(),
        Attempt {
            identity: identity.name(),
            failures,
            retry_at,
            failure: failure.clone(),
        },
    );
    Err(Box::new(failure))
}

type Failure = (String, String, Option<Duration>);

async fn mint_and_write(pass: Pass<'_>, item: &Item, identity: &WorkloadIdentity) -> Result<Kept, Failure> {
    let Pass {
        env,
        rc,
        mode,
        provider,
        fingerprint,
        now,
    } = pass;
    let pacer = env.pacers.of(mode.kind);
    pacer.acquire().await;
    let token = request_token(env.client, &item.sa, mode).await?;
    let input = MintInput {
        source: None,
        credentials_namespace: env.credentials_namespace,
        http: env.http,
    };
    let session = format!("regcred.{}.{}", item.sa.namespace, item.sa.name);
    let minted = providers::workload::mint_for(provider, identity, &token, &session, &input).await;
    drop(token);
    env.metrics
        .mint(mode.kind.as_str(), minted.as_ref().err().map(MintError::reason));
    let credential = minted.map_err(|e| {
        if let Some(wait) = e.retry_after() {
            pacer.pause(wait);
        }
        (e.reason().to_string(), e.to_string(), e.retry_after())
    })?;
    let jitter = super::credential::unit_interval(&[&rc.uid().unwrap_or_default(), &item.sa.name]);
    let renew_before = rc.spec.renew_before.map(Duration::from);
    let schedule = renewal::schedule(now, now, credential.not_after, renew_before, jitter);
    let json = dockerconfig::encode(&credential.auths);
    let desired = build::secret_with(
        rc,
        &item.sa.namespace,
        &item.secret,
        &json,
        vec![
            (build::FINGERPRINT_ANNOTATION, fingerprint.to_string()),
            (build::NOT_AFTER_ANNOTATION, not_after_annotation(schedule.not_after)),
            (RENEW_AT_ANNOTATION, not_after_annotation(schedule.renew_at)),
            (SERVICE_ACCOUNT_ANNOTATION, item.sa.name.to_string()),
            (
                SERVICE_ACCOUNT_UID_ANNOTATION,
                item.sa.uid().unwrap_or_default().to_string(),
            ),
            (IDENTITY_ANNOTATION, identity.name()),
            (DATA_DIGEST_ANNOTATION, build::data_digest(&json)),
            (REGISTRIES_ANNOTATION, credential.registries().join(",")),
        ],
    );
    write(env, rc, &desired).await?;
    debug!(namespace = %item.sa.namespace, service_account = %item.sa.name, "wrote a per-ServiceAccount credential");
    Ok(Kept {
        not_after: Some(schedule.not_after),
        renew_at: schedule.renew_at,
        registries: credential.registries(),
    })
}

/// A token for this ServiceAccount alone, with the mode's audience and lifetime.
async fn request_token(
    client: &Client,
    sa: &KeptServiceAccount,
    mode: &PerServiceAccount,
) -> Result<Sensitive<String>, Failure> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &sa.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![mode.audience.clone()],
            expiration_seconds: Some(mode.expiration_seconds),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let failed = |cause: String| {
        (
            reason::TOKEN_REQUEST_FAILED.to_string(),
            format!(
                "requesting a token for ServiceAccount {}/{} failed: {cause}; regcred needs create on serviceaccounts/token",
                sa.namespace, sa.name
            ),
            None,
        )
    };
    let answer = api
        .create_token_request(&sa.name, &PostParams::default(), &request)
        .await
        .map_err(|e| failed(apply::describe(&e)))?;
    answer
        .status
        .map(|s| Sensitive::new(s.token))
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| failed("the API server returned no token".into()))
}

async fn write(env: &Env<'_>, rc: &RegistryCredential, desired: &Secret) -> Result<(), Failure> {
    let ns = desired.namespace().unwrap_or_default();
    let cached = env
        .managed_secrets
        .get(Some(&ns), &desired.name_any())
        .map(|s| Arc::new(s.object()));
    let before = Before::of(cached.as_deref());
    let _writing = env.changes.writing(&ns);
    let rc_name = rc.name_any();
    let uid = rc.uid().unwrap_or_default();
    let policy = rc.spec.target.existing_secret_policy;
    match apply::ensure_secret(env.client, &rc_name, &uid, desired, cached, policy).await {
        Ok(_) => {
            env.changes.secret_written(&rc_name, before, desired, Timestamp::now());
            Ok(())
        }
        Err(f) => Err((f.reason, f.message, None)),
    }
}

/// Reference `secret` from `sa` (only it), if it does not yet.
async fn link(env: &Env<'_>, rc: &RegistryCredential, sa: &KeptServiceAccount, secret: &str) -> Linked {
    let rc_name = rc.name_any();
    let object = sa.object();
    if build::sa_change(&object, secret, &rc_name, true).is_none() {
        return Ok(0);
    }
    let entry = apply::SaEntry {
        secret: secret.into(),
        rc_name,
        selected: true,
    };
    env.sa_writes.write(env.client, &object, entry).await.map_err(|e| {
        warn!(namespace = %sa.namespace, service_account = %sa.name, error = %e, "ServiceAccount not linked");
        Box::new(FailedServiceAccount {
            namespace: sa.namespace.to_string(),
            name: sa.name.to_string(),
            reason: reason::SERVICE_ACCOUNT_PATCH_FAILED.into(),
            message: e.to_string(),
            identity: None,
            retry_time: None,
        })
    })
}

/// The writes of a ServiceAccount's link, or why it failed.
type Linked = Result<u32, Box<FailedServiceAccount>>;

impl Outcome {
    fn linked(&mut self, linked: Linked) {
        match linked {
            Ok(n) => self.writes += n,
            Err(f) => self.failed.push(*f),
        }
    }
}

/// After a failed exchange: a Secret minted for another identity or
/// another ServiceAccount of the same name must not keep serving it.
async fn drop_other_identity(env: &Env<'_>, rc: &RegistryCredential, item: &Item, identity: &WorkloadIdentity) {
    let Some(secret) = env.managed_secrets.get(Some(&item.sa.namespace), &item.secret) else {
        return;
    };
    let a = &secret.annotations;
    let same = a.get(IDENTITY_ANNOTATION) == Some(identity.name().as_str())
        && a.get(SERVICE_ACCOUNT_UID_ANNOTATION) == item.sa.uid();
    if same || secret.credential() != Some(rc.name_any().as_str()) {
        return;
    }
    let sas = [Arc::new(item.sa.object())];
    if let Err(e) = apply::clean_namespace(env.client, &rc.name_any(), &item.sa.namespace, &item.secret, &sas).await {
        warn!(error = %e, "removing a Secret of a former identity failed");
    }
}

/// Namespaces whose every selected ServiceAccount holds a valid credential.
fn synced_namespaces(targeted: &BTreeSet<String>, failed: &[FailedServiceAccount]) -> u32 {
    let failing: BTreeSet<&str> = failed.iter().map(|f| f.namespace.as_str()).collect();
    targeted.iter().filter(|ns| !failing.contains(ns.as_str())).count() as u32
}

/// Remove this credential's Secrets that no selected, annotated
/// ServiceAccount holds any more (and the shared Secret of `Shared` mode),
/// with their links.
async fn clean(env: &Env<'_>, rc: &RegistryCredential, items: &[Item], out: &mut Outcome) {
    let keep: BTreeSet<(&str, &str)> = items
        .iter()
        .filter(|i| i.identity.is_some())
        .map(|i| (&*i.sa.namespace, i.secret.as_str()))
        .collect();
    let rc_name = rc.name_any();
    let mut stale = super::ours(env.managed_secrets, &rc_name);
    stale.retain(|(ns, name)| !keep.contains(&(ns.as_str(), name.as_str())));
    if stale.is_empty() {
        return;
    }
    let namespaces: BTreeSet<&str> = stale.iter().map(|(ns, _)| ns.as_str()).collect();
    let mut sas_by_ns: HashMap<&str, Vec<Arc<ServiceAccount>>> = HashMap::new();
    let all = env.service_accounts.state();
    for sa in &all {
        if namespaces.contains(&*sa.namespace) {
            sas_by_ns.entry(&sa.namespace).or_default().push(Arc::new(sa.object()));
        }
    }
    for (ns, secret) in &stale {
        let sas = sas_by_ns.get(ns.as_str()).map(Vec::as_slice).unwrap_or_default();
        match apply::clean_namespace(env.client, &rc_name, ns, secret, sas).await {
            Ok(n) => out.writes += n,
            Err(e) => {
                warn!(error = %e, "cleaning a per-ServiceAccount Secret failed");
                out.clean_errors.push(e);
            }
        }
    }
}
