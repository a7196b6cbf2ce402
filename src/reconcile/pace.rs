//! Pacing of per-ServiceAccount exchanges: one steady rate per provider,
//! shared by every RegistryCredential of that provider, and a pause when
//! the provider says to slow down (`Retry-After`, throttling errors).
//!
//! Defaults, each well under what the provider documents, which other
//! callers in the account share: ECR's `GetAuthorizationToken` quota is
//! 200 requests/s per account and Region (Amazon ECR service quotas), and
//! every ECR exchange also makes one STS `AssumeRoleWithWebIdentity` call
//! (STS throttles per account and Region too) → 50/s. Google's STS and IAM
//! Credentials and Entra ID publish per-project or per-tenant quotas rather
//! than a per-call rate; regcred takes 20/s for Google and 10/s for ACR
//! (Entra plus the registry's exchange). `--identity-exchange-rate`
//! overrides all three.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::ProviderKind;

/// Exchanges allowed back to back before the rate applies.
const BURST: u32 = 10;

/// The pacers of the three providers with exchanges.
pub struct Pacers {
    ecr: Pacer,
    gcr: Pacer,
    acr: Pacer,
}

impl Default for Pacers {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Pacers {
    /// Per-provider defaults, or `rate` exchanges per second for all.
    pub fn new(rate: Option<f64>) -> Self {
        let of = |default: f64| Pacer::new(rate.unwrap_or(default));
        Self {
            ecr: of(50.0),
            gcr: of(20.0),
            acr: of(10.0),
        }
    }

    pub fn of(&self, kind: ProviderKind) -> &Pacer {
        match kind {
            ProviderKind::Ecr => &self.ecr,
            ProviderKind::Gcr => &self.gcr,
            ProviderKind::Acr | ProviderKind::Static => &self.acr,
        }
    }
}

/// A steady rate with a small burst (GCRA: each call takes the next free
/// slot), and a pause no call passes.
pub struct Pacer {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    /// The theoretical time of the next free slot.
    next: Option<Instant>,
    paused_until: Option<Instant>,
}

impl Pacer {
    pub fn new(per_second: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second),
            state: Mutex::new(State {
                next: None,
                paused_until: None,
            }),
        }
    }

    /// Wait for this call's slot.
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// Hold every call until `for_` from now has passed.
    pub fn pause(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut s = self.state.lock().expect("pacer lock");
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// The slot of a call made at `now`.
    fn reserve(&self, now: Instant) -> Instant {
        let mut s = self.state.lock().expect("pacer lock");
        let earliest = s.paused_until.map_or(now, |p| p.max(now));
        let burst = self.interval * BURST;
        let floor = earliest.checked_sub(burst).unwrap_or(earliest);
        let slot = s.next.map_or(floor, |n| n.max(floor)).max(floor);
        s.next = Some(slot + self.interval);
        slot.max(earliest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..(BURST + 20) {
            pacer.acquire().await;
        }
        let took = start.elapsed();
        // The burst is free; 20 more at 10/s take 2 s.
        assert!(
            took >= Duration::from_millis(1900) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_call() {
        let pacer = Pacer::new(1000.0);
        pacer.pause(Duration::from_secs(30));
        let start = Instant::now();
        pacer.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(30));
    }
}
