//! The *pull-auth* step: prove the held credential against its registries
//! after every mint and every `healthCheck.interval`. It runs after fan-out,
//! so a slow or failing registry never delays minting or writing Secrets.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::credential::Current;
use crate::api::{HealthCheckMode, PullAuth, PullAuthResult, RegistryCredential, RegistryCredentialStatus};
use crate::pull_auth as probe;
use crate::renewal;
use crate::telemetry::Metrics;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Where the time each RegistryCredential (by uid) was last checked is
/// kept: a check whose result did not change does not rewrite status, so
/// status alone cannot say when the next one is due.
pub trait LastChecks: Sync {
    /// `f` over the last check of `uid`, `None` if none is kept.
    fn last_check<T>(&self, uid: &str, f: impl FnOnce(&mut Option<Timestamp>) -> T) -> T;
}

pub struct Step {
    pub pull_auth: Option<PullAuth>,
    /// When the next check is due.
    pub next_check: Option<Timestamp>,
}

/// What the step reads and records with.
pub struct Env<'a, K> {
    pub http: &'a reqwest::Client,
    pub metrics: &'a Metrics,
    pub last_checks: &'a K,
}

pub async fn step(
    env: &Env<'_, impl LastChecks>,
    rc: &RegistryCredential,
    current: Option<&Current>,
    minted_now: bool,
    previous: &RegistryCredentialStatus,
    now: Timestamp,
) -> Step {
    let spec = &rc.spec.health_check;
    if spec.mode == HealthCheckMode::Disabled {
        return Step {
            pull_auth: Some(PullAuth {
                result: PullAuthResult::Disabled,
                registry: None,
                checked_time: None,
                message: "Pull-auth checks are disabled (spec.healthCheck.mode).".into(),
            }),
            next_check: None,
        };
    }
    let Some(current) = current else {
        return Step {
            pull_auth: previous.pull_auth.clone(),
            next_check: None,
        };
    };
    let interval = spec.interval.map(Duration::from).unwrap_or(DEFAULT_INTERVAL);
    let uid = rc.uid().unwrap_or_default();
    let last = env.last_checks.last_check(&uid, |t| *t);
    // Checks were just turned on: check now. An `Unknown` result is not a
    // reason to probe again before the interval (a probe can take 15 s).
    let turned_on = previous
        .pull_auth
        .as_ref()
        .is_none_or(|p| p.result == PullAuthResult::Disabled);
    let due = minted_now || turned_on || last.is_none_or(|t| now >= renewal::add(t, interval));
    if !due {
        return Step {
            pull_auth: previous.pull_auth.clone(),
            next_check: last.map(|t| renewal::add(t, interval)),
        };
    }

    // Every registry's /v2/; the image only where it lives: the first
    // registry in the provider's order (kept across restarts).
    let mut probes = Vec::new();
    for (i, auth) in current.credential.auths.iter().enumerate() {
        let image = if i == 0 { spec.image.as_deref() } else { None };
        probes.push(probe::check(env.http, auth, image).await);
    }
    env.last_checks.last_check(&uid, |t| *t = Some(now));
    let worst = probes
        .iter()
        .find(|p| p.result != PullAuthResult::Healthy)
        .or(probes.first())
        .cloned();
    let pull_auth = worst.map(|p| {
        env.metrics
            .set_pull_auth(&rc.name_any(), &p.registry, &format!("{:?}", p.result));
        PullAuth {
            result: p.result,
            registry: Some(p.registry),
            checked_time: Some(Time(renewal::truncate(now))),
            message: p.message,
        }
    });
    Step {
        pull_auth,
        next_check: Some(renewal::add(now, interval)),
    }
}
