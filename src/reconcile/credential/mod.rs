//! The *credential* step: reuse the credential held for a RegistryCredential,
//! or mint a new one when [`decide`] says so, and record the outcome.
//!
//! The decision is pure ([`decide`]); this module only gathers its facts
//! (memory, status, the managed-Secret cache after a restart), calls the
//! provider, and returns what happened as data, Events included.

mod decide;
mod fingerprint;

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

pub use self::decide::{Decision, Facts, HeldView, decide};
pub use self::fingerprint::{Fingerprint, credential_digest, unit_interval};
use super::build;
use super::cond::Cond;
use super::events::Note;
use crate::api::conditions::reason;
use crate::api::{
    HealthCheckMode, ProviderKind, ProviderSpec, PullAuthResult, RegistryCredential, RegistryCredentialStatus,
};
use crate::cache::{Cache, KeptSecret};
use crate::dockerconfig;
use crate::providers::{Credential, MintError, MintInput};
use crate::pull_auth;
use crate::renewal::{self, Schedule};
use crate::telemetry::Metrics;

/// What the step keeps for one RegistryCredential between reconciles.
#[derive(Default)]
pub struct Slot {
    /// The credential held, once this replica (the leader) has reconciled
    /// the RegistryCredential.
    pub(super) current: Option<Current>,
    /// Fingerprint of the inputs of the last failed attempt: a change retries at once.
    pub(super) failed_fingerprint: Option<Fingerprint>,
    /// A diagnosed pull failure asked for a new credential now (expired or refused).
    pub(super) mint_requested: bool,
}

impl Slot {
    /// Ask for a new credential at the next reconcile, whatever its renewal
    /// time, within the failure backoff (a diagnosed pull found the
    /// credential in the Secrets expired or refused). The caller rate-limits.
    pub fn request_mint(&mut self) {
        self.mint_requested = true;
    }
}

/// Where each RegistryCredential's [`Slot`] is kept, by uid.
pub trait Slots: Sync {
    /// `f` over the slot of `uid`, an empty one if none is kept yet.
    fn slot<T>(&self, uid: &str, f: impl FnOnce(&mut Slot) -> T) -> T;
}

/// The credential now in the Secrets.
#[derive(Clone)]
pub struct Current {
    pub credential: Credential,
    pub config_json: Vec<u8>,
    /// The inputs it was minted from.
    pub fingerprint: Fingerprint,
    /// [`credential_digest`] of `config_json`.
    pub digest: String,
    pub issued: Timestamp,
    pub schedule: Option<Schedule>,
}

impl Current {
    /// The managed Secret holding this credential in namespace `ns`.
    pub fn desired_secret(&self, rc: &RegistryCredential, ns: &str) -> Secret {
        let not_after = self.schedule.map(|s| not_after_annotation(s.not_after));
        build::desired_secret(
            rc,
            ns,
            &self.config_json,
            not_after.as_deref(),
            self.fingerprint.as_str(),
        )
    }
}

/// What the step reads besides the RegistryCredential.
pub struct Env<'a, K> {
    /// To read a Secret back in full after a restart.
    pub client: &'a Client,
    pub held: &'a K,
    /// To take the credential back after a restart.
    pub managed_secrets: &'a Cache<KeptSecret>,
    pub credentials_namespace: &'a str,
    pub http: &'a reqwest::Client,
    pub metrics: &'a Metrics,
}

/// The outcome of the credential step, for fan-out and status.
pub struct Step {
    pub current: Option<Current>,
    pub issued: Cond,
    /// A new credential reached regcred in this reconcile.
    pub minted_now: bool,
    pub failed_attempts: u32,
    pub last_failure_time: Option<Time>,
    /// When the next mint is planned (renewal or retry), whole seconds.
    pub next_attempt: Option<Timestamp>,
    pub notes: Vec<Note>,
}

pub async fn step(
    env: &Env<'_, impl Slots>,
    rc: &RegistryCredential,
    provider: ProviderSpec<'_>,
    source: Option<&Secret>,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Step {
    let uid = rc.uid().unwrap_or_default();
    let fp = Fingerprint::of(rc, source);
    let current = held_or_recovered(env, rc, previous, now).await;
    let (last_failed, mint_requested) = env
        .held
        .slot(&uid, |s| (s.failed_fingerprint.clone(), s.mint_requested));
    let decision = decide(&Facts {
        now,
        fingerprint: &fp,
        held: current.as_ref().map(|c| HeldView {
            fingerprint: &c.fingerprint,
            renew_at: c.schedule.map(|s| s.renew_at),
        }),
        last_failed: last_failed.as_ref(),
        mint_requested,
        previous,
    });
    if decision == Decision::Mint {
        // Answered by this attempt, whatever its outcome; a failure has its own backoff.
        env.held.slot(&uid, |s| s.mint_requested = false);
    }

    let mut step = Step {
        issued: issued_true(current.as_ref()),
        minted_now: false,
        failed_attempts: previous.failed_attempts,
        last_failure_time: previous.last_failure_time.clone(),
        next_attempt: current.as_ref().and_then(|c| c.schedule).map(|s| s.renew_at),
        current,
        notes: Vec::new(),
    };
    match decision {
        Decision::Reuse => return step,
        Decision::Wait { until } => {
            step.next_attempt = Some(until);
            step.issued = match (&step.current, previous_issued(previous)) {
                (Some(c), _) if is_expired(c, now) => expired(c, "the last attempt failed"),
                (_, Some(prev)) if previous.failed_attempts > 0 => prev,
                (Some(c), _) => issued_true(Some(c)),
                (None, _) => Cond::new("Unknown", reason::PENDING, "Waiting to retry the mint."),
            };
            return step;
        }
        Decision::Mint => {}
    }

    let input = MintInput {
        source,
        credentials_namespace: env.credentials_namespace,
        http: env.http,
    };
    let mut result = provider.mint(&input).await;
    if let Ok(credential) = &result
        && let Some(refused) = refused_change(env, rc, provider, step.current.as_ref(), credential).await
    {
        result = Err(refused);
    }
    env.metrics
        .mint(provider.kind().as_str(), result.as_ref().err().map(|e| e.reason()));
    match result {
        Ok(credential) => record_success(env, rc, provider, previous, step, credential, fp, now),
        Err(err) => {
            env.held.slot(&uid, |s| s.failed_fingerprint = Some(fp));
            record_failure(previous, step, &err, now)
        }
    }
}

/// The credential held for `rc`, or after a restart the one its Secrets
/// hold and status vouches for (then held from now on).
async fn held_or_recovered(
    env: &Env<'_, impl Slots>,
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Option<Current> {
    let uid = rc.uid().unwrap_or_default();
    if let Some(held) = env.held.slot(&uid, |s| s.current.clone()) {
        return Some(held);
    }
    let recovered = recover_from_secrets(env.client, env.managed_secrets, rc, previous, now).await?;
    info!(not_after = ?recovered.schedule.map(|s| s.not_after), "took the current credential back from its Secrets after a restart");
    env.held.slot(&uid, |s| s.current = Some(recovered.clone()));
    Some(recovered)
}

/// A changed static credential is proved against its registry before it
/// replaces a good one everywhere: a refusal keeps the last good credential.
/// An unreachable registry does not block the rollout.
async fn refused_change(
    env: &Env<'_, impl Slots>,
    rc: &RegistryCredential,
    provider: ProviderSpec<'_>,
    held: Option<&Current>,
    new: &Credential,
) -> Option<MintError> {
    let held = held?;
    if provider.kind() != ProviderKind::Static
        || rc.spec.health_check.mode == HealthCheckMode::Disabled
        || held.credential.auths == new.auths
    {
        return None;
    }
    for auth in &new.auths {
        let probe = pull_auth::check(env.http, auth, None).await;
        if probe.result == PullAuthResult::Unauthorized {
            return Some(MintError::CredentialRejected(format!(
                "the registry refused the changed credential in source Secret {}/{}: {}",
                env.credentials_namespace,
                provider.source_secret().unwrap_or_default(),
                probe.message
            )));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn record_success(
    env: &Env<'_, impl Slots>,
    rc: &RegistryCredential,
    provider: ProviderSpec<'_>,
    previous: &RegistryCredentialStatus,
    mut step: Step,
    credential: Credential,
    fp: Fingerprint,
    now: Timestamp,
) -> Step {
    let uid = rc.uid().unwrap_or_default();
    let config_json = dockerconfig::encode(&credential.auths);
    let digest = credential_digest(&uid, &config_json);
    // The same credential as before (after a restart, or a provider that
    // caches tokens): keep its issue time, announce nothing.
    let same = previous.credential_digest.as_deref() == Some(digest.as_str())
        || step.current.as_ref().is_some_and(|c| c.digest == digest);
    let issued_at = match (&step.current, &previous.last_issued_time) {
        (Some(c), _) if same => c.issued,
        (None, Some(t)) if same => t.0,
        _ => now,
    };
    let short_lived = provider.kind() != ProviderKind::Static;
    let schedule = short_lived.then(|| {
        let jitter_key = credential.not_after.map(|t| t.to_string()).unwrap_or_default();
        renewal::schedule(
            issued_at,
            now,
            credential.not_after,
            rc.spec.renew_before.map(Into::into),
            fingerprint::unit_interval(&[&uid, &jitter_key]),
        )
    });
    if let Some(s) = schedule.filter(|s| s.clamped) {
        let message = format!(
            "The provider reported no plausible expiry ({}); treating the credential as valid until {}",
            credential.not_after.map_or("none".to_string(), |t| t.to_string()),
            s.not_after
        );
        warn!(%message, "expiry clamped");
        if !same {
            step.notes.push(Note::warning("ExpiryClamped", "Mint", message));
        }
    }
    if !same {
        info!(provider = provider.kind().as_str(), registries = ?credential.registries(), not_after = ?schedule.map(|s| s.not_after), "credential issued");
        step.notes
            .push(Note::normal(reason::ISSUED, "Mint", issued_note(&credential, schedule)));
    }
    let current = Current {
        credential,
        config_json,
        fingerprint: fp,
        digest,
        issued: issued_at,
        schedule,
    };
    env.held.slot(&uid, |s| {
        s.current = Some(current.clone());
        s.failed_fingerprint = None;
    });
    step.issued = issued_true(Some(&current));
    step.minted_now = !same;
    step.failed_attempts = 0;
    step.next_attempt = schedule.map(|s| s.renew_at);
    step.current = Some(current);
    step
}

fn issued_note(credential: &Credential, schedule: Option<Schedule>) -> String {
    let registries = credential.registries().join(", ");
    match schedule {
        Some(s) => format!("Issued a credential for {registries} valid until {}", s.not_after),
        None => format!("Issued a credential for {registries}"),
    }
}

fn record_failure(previous: &RegistryCredentialStatus, mut step: Step, err: &MintError, now: Timestamp) -> Step {
    step.failed_attempts = previous.failed_attempts + 1;
    step.last_failure_time = Some(Time(renewal::truncate(now)));
    let wait = renewal::backoff(step.failed_attempts, err.retry_after());
    step.next_attempt = Some(renewal::truncate(renewal::add(now, wait)));
    warn!(reason = err.reason(), error = %err, attempts = step.failed_attempts, retry_in_secs = wait.as_secs(), "mint failed");
    step.notes.push(Note::warning(
        err.reason(),
        "Mint",
        format!("{err}; retrying in {}s", wait.as_secs()),
    ));
    step.issued = match &step.current {
        Some(c) if is_expired(c, now) => expired(c, &err.to_string()),
        Some(c) => {
            let until = c
                .schedule
                .map(|s| format!(" (valid until {})", s.not_after))
                .unwrap_or_default();
            Cond::new(
                "False",
                err.reason(),
                format!("Minting a new credential failed: {err}. The Secrets keep the last good credential{until}."),
            )
        }
        None => Cond::new("False", err.reason(), format!("Minting a credential failed: {err}.")),
    };
    step
}

fn is_expired(c: &Current, now: Timestamp) -> bool {
    c.schedule.is_some_and(|s| now >= s.not_after)
}

fn expired(c: &Current, why: &str) -> Cond {
    let at = c.schedule.map(|s| s.not_after.to_string()).unwrap_or_default();
    Cond::new(
        "False",
        reason::EXPIRED,
        format!(
            "The credential in the Secrets expired at {at} and no new one could be minted: {why}. The Secrets are kept until one can."
        ),
    )
}

fn issued_true(current: Option<&Current>) -> Cond {
    let message = match current.and_then(|c| c.schedule) {
        Some(s) => format!("Credential valid until {}; renewal at {}.", s.not_after, s.renew_at),
        None => "Credential issued; it has no expiry and is re-read when its source Secret changes.".into(),
    };
    Cond::new("True", reason::ISSUED, message)
}

/// The Issued condition as it was, when nothing was attempted this time.
fn previous_issued(previous: &RegistryCredentialStatus) -> Option<Cond> {
    previous
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::ISSUED)
        .map(|c| Cond {
            status: match c.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            },
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

/// After a restart: take back the credential that status says is in the
/// Secrets: only from a managed Secret whose content matches
/// `status.credentialDigest` (a tenant can write look-alike Secrets in their
/// own namespace, not this RegistryCredential's status). Also during a
/// provider outage: a credential that is still valid is kept until it
/// expires.
/// Secrets read in full, at most, to take a credential back after a restart
/// (or to copy it into a new namespace at admission, [`vouched_copy`]).
const RECOVERY_READS: usize = 3;

/// After a restart: the credential status vouches for, read back from one
/// of its Secrets. The cache holds only a digest of their data
/// ([`build::cache_form`]), so the copy most of them agree on is read in
/// full first; a forged or stale copy differs from the rest, and [`recover`]
/// takes nothing whose digest status does not vouch for.
pub async fn recover_from_secrets(
    client: &Client,
    managed_secrets: &Cache<KeptSecret>,
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Option<Current> {
    previous.credential_digest.as_deref()?;
    let full = vouched_copy(client, managed_secrets, rc).await?;
    recover(&[std::sync::Arc::new(full)], rc, previous, now)
}

/// One of `rc`'s Secrets, read in full, whose credential is the one
/// `status.credentialDigest` vouches for ([`crate::managed::holds_current`]). The cache holds only a
/// digest of their data ([`build::cache_form`]), so the copy most of them
/// agree on is read first, at most [`RECOVERY_READS`] of them; a forged or
/// stale copy differs from the rest and is never taken.
async fn vouched_copy(client: &Client, managed_secrets: &Cache<KeptSecret>, rc: &RegistryCredential) -> Option<Secret> {
    rc.status.as_ref()?.credential_digest.as_ref()?;
    let name = rc.name_any();
    let mut copies: HashMap<String, (usize, std::sync::Arc<KeptSecret>)> = HashMap::new();
    for s in managed_secrets.state() {
        if let Some(data_digest) = (s.credential() == Some(name.as_str()))
            .then(|| s.annotations.get(build::CACHED_DATA_DIGEST).map(str::to_string))
            .flatten()
        {
            copies.entry(data_digest).or_insert((0, s)).0 += 1;
        }
    }
    let mut copies: Vec<_> = copies.into_values().collect();
    copies.sort_by(|(n, s), (m, t)| m.cmp(n).then_with(|| s.namespace.cmp(&t.namespace)));
    for (_, s) in copies.into_iter().take(RECOVERY_READS) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &s.namespace);
        match api.get_opt(&s.name).await {
            Ok(Some(full)) if crate::managed::holds_current(&full, rc) == Some(true) => return Some(full),
            Ok(Some(_)) => {}
            Ok(None) => {}
            Err(e) => warn!(error = %e, "reading a managed Secret back failed"),
        }
    }
    None
}

fn recover(
    managed: &[std::sync::Arc<Secret>],
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Option<Current> {
    let digest = previous.credential_digest.as_deref()?;
    let uid = rc.uid().unwrap_or_default();
    let name = rc.name_any();
    let (secret, config_json) = managed.iter().find_map(|s| {
        let json = s.data.as_ref()?.get(dockerconfig::DATA_KEY)?.0.clone();
        (build::is_managed_by(s, &name) && credential_digest(&uid, &json) == digest).then_some((s, json))
    })?;
    let mut auths = dockerconfig::decode_all(&config_json).ok()?;
    // The order the provider gave (status.registries), not the JSON's: the
    // first registry is the one `healthCheck.image` lives in.
    auths.sort_by_key(|a| {
        previous
            .registries
            .iter()
            .position(|r| *r == a.registry)
            .unwrap_or(usize::MAX)
    });
    let fingerprint = Fingerprint::parse(
        secret
            .annotations()
            .get(build::FINGERPRINT_ANNOTATION)
            .map(String::as_str)
            .unwrap_or_default(),
    );
    let issued = previous.last_issued_time.as_ref().map_or(now, |t| t.0);
    let schedule = previous.not_after.as_ref().map(|not_after| Schedule {
        not_after: not_after.0,
        // After failures the credential was due when they started.
        renew_at: match (
            previous.failed_attempts,
            &previous.renewal_time,
            &previous.last_failure_time,
        ) {
            (0, Some(t), _) => t.0,
            (_, _, Some(t)) => t.0,
            _ => now,
        },
        clamped: false,
    });
    Some(Current {
        credential: Credential {
            auths,
            not_after: schedule.map(|s| s.not_after),
        },
        config_json,
        fingerprint,
        digest: digest.to_string(),
        issued,
        schedule,
    })
}

/// The `regcred.dev/not-after` annotation value: RFC 3339, whole seconds.
pub fn not_after_annotation(t: Timestamp) -> String {
    renewal::truncate(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::api::{GcrProvider, Provider, RegistryCredentialSpec};
    use crate::redact::Sensitive;

    fn rc() -> RegistryCredential {
        let mut rc = RegistryCredential::new(
            "gcr",
            RegistryCredentialSpec {
                provider: Provider {
                    gcr: Some(GcrProvider {
                        registries: vec!["us-docker.pkg.dev".into(), "gcr.io".into()],
                        auth: None,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                target: Default::default(),
                renew_before: None,
                health_check: Default::default(),
            },
        );
        rc.metadata.uid = Some("uid-gcr".into());
        rc
    }

    fn managed(ns: &str, password: &str) -> (Arc<Secret>, Vec<u8>) {
        let auths: Vec<_> = ["us-docker.pkg.dev", "gcr.io"]
            .iter()
            .map(|r| dockerconfig::RegistryAuth {
                registry: r.to_string(),
                username: "oauth2accesstoken".into(),
                password: Sensitive::new(password.into()),
            })
            .collect();
        let json = dockerconfig::encode(&auths);
        let mut secret = build::desired_secret(&rc(), ns, &json, Some("2026-11-22T01:00:00Z"), "inputs");
        secret.data = Some([(dockerconfig::DATA_KEY.to_string(), ByteString(json.clone()))].into());
        (Arc::new(secret), json)
    }

    fn status(digest: &str) -> RegistryCredentialStatus {
        RegistryCredentialStatus {
            registries: vec!["us-docker.pkg.dev".into(), "gcr.io".into()],
            not_after: Some(Time("2026-11-22T01:00:00Z".parse().unwrap())),
            renewal_time: Some(Time("2026-11-22T00:40:00Z".parse().unwrap())),
            credential_digest: Some(digest.into()),
            ..Default::default()
        }
    }

    #[test]
    fn recovery_takes_only_the_secret_status_vouches_for_in_the_providers_order() {
        let (forged, _) = managed("aaa", "forged");
        let (real, json) = managed("zzz", "real");
        let digest = credential_digest("uid-gcr", &json);
        let now: Timestamp = "2026-11-22T00:10:00Z".parse().unwrap();
        let current = recover(&[forged.clone(), real], &rc(), &status(&digest), now).expect("recovered");
        assert!(current.credential.auths.iter().all(|a| a.password.expose() == "real"));
        // Not the JSON's (alphabetical) order: healthCheck.image belongs to the first.
        assert_eq!(current.credential.registries(), ["us-docker.pkg.dev", "gcr.io"]);
        assert_eq!(
            current.schedule.map(|s| s.renew_at.to_string()).as_deref(),
            Some("2026-11-22T00:40:00Z")
        );
        assert!(
            recover(&[forged], &rc(), &status(&digest), now).is_none(),
            "a look-alike is never taken"
        );
        assert!(recover(&[], &rc(), &RegistryCredentialStatus::default(), now).is_none());
    }
}
