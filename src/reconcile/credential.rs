//! The *credential* step: reuse the credential held for a RegistryCredential,
//! or mint a new one when it is due, its inputs changed, or none is held;
//! after failures, wait out the backoff recorded in status.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::status::Cond;
use super::{Context, build};
use crate::api::conditions::reason;
use crate::api::{ProviderSpec, RegistryCredential, RegistryCredentialStatus};
use crate::dockerconfig;
use crate::providers::{Credential, MintInput};
use crate::renewal::{self, Schedule};

/// What regcred holds per RegistryCredential (by uid), in memory.
#[derive(Default)]
pub struct Held {
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Default)]
struct Slot {
    current: Option<Current>,
    /// Fingerprint of the inputs of the last failed attempt: a change retries at once.
    failed_fingerprint: Option<u64>,
}

/// The credential now in the Secrets.
#[derive(Clone)]
pub struct Current {
    pub credential: Credential,
    pub config_json: Vec<u8>,
    /// Fingerprint of the spec and source Secret it was minted from.
    pub fingerprint: u64,
    pub issued: Timestamp,
    pub schedule: Option<Schedule>,
}

impl Held {
    fn current(&self, uid: &str) -> Option<Current> {
        self.slots
            .lock()
            .expect("held lock")
            .get(uid)
            .and_then(|s| s.current.clone())
    }

    fn failed_fingerprint(&self, uid: &str) -> Option<u64> {
        self.slots
            .lock()
            .expect("held lock")
            .get(uid)
            .and_then(|s| s.failed_fingerprint)
    }

    fn store(&self, uid: &str, current: Current) {
        let mut slots = self.slots.lock().expect("held lock");
        let slot = slots.entry(uid.to_string()).or_default();
        slot.current = Some(current);
        slot.failed_fingerprint = None;
    }

    fn fail(&self, uid: &str, fingerprint: u64) {
        self.slots
            .lock()
            .expect("held lock")
            .entry(uid.to_string())
            .or_default()
            .failed_fingerprint = Some(fingerprint);
    }

    pub fn forget(&self, uid: &str) {
        self.slots.lock().expect("held lock").remove(uid);
    }
}

/// A stable hash of what a credential is minted from: the provider spec,
/// `renewBefore` and the source Secret's version.
pub fn fingerprint(rc: &RegistryCredential, source: Option<&Secret>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&rc.spec.provider)
        .unwrap_or_default()
        .hash(&mut h);
    rc.spec
        .renew_before
        .map(|d| std::time::Duration::from(d).as_millis())
        .hash(&mut h);
    source.map(|s| (s.uid(), s.resource_version())).hash(&mut h);
    h.finish()
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
}

pub async fn step(
    ctx: &Context,
    rc: &RegistryCredential,
    provider: ProviderSpec<'_>,
    source: Option<&Secret>,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Step {
    let uid = rc.uid().unwrap_or_default();
    let fp = fingerprint(rc, source);
    let current = ctx.held.current(&uid).or_else(|| recover(ctx, rc, previous, fp, now));
    let due = current
        .as_ref()
        .is_none_or(|c| c.fingerprint != fp || c.schedule.is_some_and(|s| now >= s.renew_at));
    // Backoff applies to retries with the same inputs; new inputs (a fixed
    // source Secret, an edited spec) are tried at once.
    let last_attempt = ctx
        .held
        .failed_fingerprint(&uid)
        .or(current.as_ref().map(|c| c.fingerprint));
    let inputs_changed = last_attempt.is_some_and(|f| f != fp);
    let backoff_until = previous
        .last_failure_time
        .as_ref()
        .filter(|_| previous.failed_attempts > 0)
        .map(|t| renewal::truncate(renewal::add(t.0, renewal::backoff(previous.failed_attempts, None))));
    let in_backoff = backoff_until.is_some_and(|t| now < t) && !inputs_changed;

    let mut step = Step {
        issued: Cond::new("True", reason::ISSUED, String::new()),
        minted_now: false,
        failed_attempts: previous.failed_attempts,
        last_failure_time: previous.last_failure_time.clone(),
        next_attempt: current.as_ref().and_then(|c| c.schedule).map(|s| s.renew_at),
        current,
    };
    if !due {
        step.issued = issued_true(step.current.as_ref());
        return step;
    }
    if in_backoff {
        step.next_attempt = backoff_until;
        step.issued = match (&step.current, previous_issued(previous)) {
            (Some(c), _) if is_expired(c, now) => expired(c, "the last attempt failed"),
            (_, Some(prev)) => prev,
            (_, None) => Cond::new("Unknown", reason::PENDING, "Waiting to retry the mint."),
        };
        return step;
    }

    let input = MintInput {
        source,
        credentials_namespace: &ctx.credentials_namespace,
        http: &ctx.http,
    };
    let result = provider.mint(&input).await;
    ctx.metrics
        .mint(provider.kind().as_str(), result.as_ref().err().map(|e| e.reason()));
    match result {
        Ok(credential) => {
            let config_json = dockerconfig::encode(&credential.auths);
            // After a restart the same credential may already be in the
            // Secrets: keep its issue time so nothing changes needlessly.
            let name = rc.name_any();
            let already_written = previous.last_issued_time.clone().filter(|_| {
                ctx.managed_secrets.state().iter().any(|s| {
                    build::is_managed_by(s, &name)
                        && s.data
                            .as_ref()
                            .and_then(|d| d.get(dockerconfig::DATA_KEY))
                            .map(|b| &b.0)
                            == Some(&config_json)
                })
            });
            let issued_at = already_written.as_ref().map_or(now, |t| t.0);
            let schedule = credential.not_after.is_some().then(|| {
                renewal::schedule(
                    issued_at,
                    credential.not_after,
                    rc.spec.renew_before.map(Into::into),
                    jitter(&uid),
                )
            });
            // Static credentials have no expiry; short-lived ones without a
            // plausible one are clamped, and users should know.
            let clamped = provider.kind() != crate::api::ProviderKind::Static && schedule.is_none_or(|s| s.clamped);
            let schedule = schedule.or_else(|| {
                (provider.kind() != crate::api::ProviderKind::Static)
                    .then(|| renewal::schedule(issued_at, None, rc.spec.renew_before.map(Into::into), jitter(&uid)))
            });
            if clamped {
                let note = format!(
                    "The provider reported no plausible expiry ({}); treating the credential as valid for {}s",
                    credential.not_after.map_or("none".to_string(), |t| t.to_string()),
                    renewal::FALLBACK_LIFETIME.as_secs()
                );
                warn!(%note, "expiry clamped");
                super::publish(ctx, rc, EventType::Warning, "ExpiryClamped", "Mint", &note).await;
            }
            if already_written.is_none() {
                info!(provider = provider.kind().as_str(), registries = ?credential.registries(), not_after = ?schedule.map(|s| s.not_after), "credential issued");
            }
            let current = Current {
                credential,
                config_json,
                fingerprint: fp,
                issued: issued_at,
                schedule,
            };
            ctx.held.store(&uid, current.clone());
            step.issued = issued_true(Some(&current));
            step.minted_now = already_written.is_none();
            step.failed_attempts = 0;
            step.next_attempt = schedule.map(|s| s.renew_at);
            step.current = Some(current);
        }
        Err(err) => {
            ctx.held.fail(&uid, fp);
            step.failed_attempts = previous.failed_attempts + 1;
            step.last_failure_time = Some(Time(renewal::truncate(now)));
            let wait = renewal::backoff(step.failed_attempts, err.retry_after());
            step.next_attempt = Some(renewal::truncate(renewal::add(now, wait)));
            warn!(reason = err.reason(), error = %err, attempts = step.failed_attempts, retry_in_secs = wait.as_secs(), "mint failed");
            let note = format!("{err}; retrying in {}s", wait.as_secs());
            super::publish(ctx, rc, EventType::Warning, err.reason(), "Mint", &note).await;
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
                        format!(
                            "Minting a new credential failed: {err}. The Secrets keep the last good credential{until}."
                        ),
                    )
                }
                None => Cond::new("False", err.reason(), format!("Minting a credential failed: {err}.")),
            };
        }
    }
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

/// After a restart: take the credential back from a managed Secret when
/// status says it is current, so a restart does not mint again.
fn recover(
    ctx: &Context,
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    fp: u64,
    now: Timestamp,
) -> Option<Current> {
    let not_after = previous.not_after.as_ref()?.0;
    let renew_at = previous.renewal_time.as_ref()?.0;
    if previous.failed_attempts > 0 || now >= renew_at {
        return None;
    }
    let name = rc.name_any();
    let not_after_text = not_after_annotation(not_after);
    let fp_text = fp.to_string();
    let secret = ctx.managed_secrets.state().into_iter().find(|s| {
        build::is_managed_by(s, &name)
            && s.annotations().get(build::NOT_AFTER_ANNOTATION) == Some(&not_after_text)
            && s.annotations().get(build::FINGERPRINT_ANNOTATION) == Some(&fp_text)
    })?;
    let config_json = secret.data.as_ref()?.get(dockerconfig::DATA_KEY)?.0.clone();
    let auths = dockerconfig::decode_all(&config_json).ok()?;
    let issued = previous.last_issued_time.as_ref().map_or(now, |t| t.0);
    info!(not_after = %not_after, "took the current credential back from its Secrets after a restart");
    let current = Current {
        credential: Credential {
            auths,
            not_after: Some(not_after),
        },
        config_json,
        fingerprint: fp,
        issued,
        schedule: Some(Schedule {
            not_after,
            renew_at,
            clamped: false,
        }),
    };
    ctx.held.store(&rc.uid().unwrap_or_default(), current.clone());
    Some(current)
}

/// The `regcred.dev/not-after` annotation value: RFC 3339, whole seconds.
pub fn not_after_annotation(t: Timestamp) -> String {
    renewal::truncate(t).to_string()
}

/// A per-credential jitter in `[0, 1)`.
fn jitter(uid: &str) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (uid, Timestamp::now().as_second()).hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}
