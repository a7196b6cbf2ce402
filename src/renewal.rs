//! When to mint next: renewal before expiry, and backoff after failures.
//! Pure functions of time, unit-tested with fixed clocks.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Lifetime assumed when a provider reports no expiry, one in the past, or
/// an implausibly distant one (moto's ECR fake answers 2015-01-01).
pub const FALLBACK_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Longest lifetime believed from a short-lived-token provider.
pub const MAX_PLAUSIBLE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// At most one mint per RegistryCredential in this time, whatever the
/// provider answers: a token that lives only seconds, or a provider that
/// hands back the same almost-expired token (GKE's metadata server caches
/// them), never makes a hot loop.
pub const MIN_MINT_INTERVAL: Duration = Duration::from_secs(60);
/// A reported lifetime shorter than this is not believed (clamped).
const MIN_PLAUSIBLE_LIFETIME: Duration = Duration::from_secs(10);
/// Jitter spreads renewals of many credentials over up to this share of the wait.
const JITTER_SHARE: f64 = 0.05;
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

/// The plan for a freshly minted short-lived credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The expiry written to status and Secrets (after clamping).
    pub not_after: Timestamp,
    /// When to mint the next credential, whole seconds.
    pub renew_at: Timestamp,
    /// Whether the provider's expiry was replaced by [`FALLBACK_LIFETIME`].
    pub clamped: bool,
}

/// Plan the renewal of a credential issued at `issued` that the provider says
/// expires at `reported`, planned at `now` (later than `issued` when a
/// provider hands back a credential regcred already holds).
/// `renew_before` defaults to a third of the lifetime; `jitter` in `[0, 1)`
/// moves the renewal earlier by up to 5 % of the wait. Never sooner than
/// [`MIN_MINT_INTERVAL`] after `now`.
pub fn schedule(
    issued: Timestamp,
    now: Timestamp,
    reported: Option<Timestamp>,
    renew_before: Option<Duration>,
    jitter: f64,
) -> Schedule {
    let plausible = |t: &Timestamp| {
        let lifetime = t.duration_since(issued);
        lifetime > SignedDuration::try_from(MIN_PLAUSIBLE_LIFETIME).unwrap_or_default()
            && lifetime <= SignedDuration::try_from(MAX_PLAUSIBLE_LIFETIME).unwrap_or_default()
    };
    let (not_after, clamped) = match reported.filter(plausible) {
        Some(t) => (t, false),
        None => (add(issued, FALLBACK_LIFETIME), true),
    };
    let lifetime = not_after.duration_since(issued).unsigned_abs();
    let before = renew_before.unwrap_or(lifetime / 3);
    // A renewBefore longer than the lifetime would renew at once, forever:
    // keep at least a tenth of the lifetime between mints.
    let earliest = lifetime / 10;
    let wait = lifetime.saturating_sub(before).max(earliest);
    let jittered = wait
        .saturating_sub(wait.mul_f64(JITTER_SHARE * jitter.clamp(0.0, 1.0)))
        .max(earliest);
    let renew_at = add(issued, jittered).max(add(now, MIN_MINT_INTERVAL));
    Schedule {
        not_after: truncate(not_after),
        renew_at: truncate(renew_at),
        clamped,
    }
}

/// How long to wait after the `failures`-th consecutive failure: 10 s
/// doubling to 5 min, or longer when the provider asked for it.
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let delay = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
    retry_after.map_or(delay, |r| delay.max(r.min(BACKOFF_MAX * 2)))
}

pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Whole seconds, as status shows them.
pub fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn renews_a_third_before_expiry_by_default() {
        let s = schedule(
            t("2026-11-22T00:00:00Z"),
            t("2026-11-22T00:00:00Z"),
            Some(t("2026-11-22T12:00:00Z")),
            None,
            0.0,
        );
        assert_eq!(s.renew_at, t("2026-11-22T08:00:00Z"));
        assert_eq!(s.not_after, t("2026-11-22T12:00:00Z"));
        assert!(!s.clamped);
    }

    #[test]
    fn honours_renew_before() {
        let s = schedule(
            t("2026-11-22T00:00:00Z"),
            t("2026-11-22T00:00:00Z"),
            Some(t("2026-11-22T12:00:00Z")),
            Some(H),
            0.0,
        );
        assert_eq!(s.renew_at, t("2026-11-22T11:00:00Z"));
    }

    #[test]
    fn jitter_moves_earlier_by_at_most_five_percent_in_whole_seconds() {
        let s = schedule(
            t("2026-11-22T00:00:00.123Z"),
            t("2026-11-22T00:00:00.123Z"),
            Some(t("2026-11-22T12:00:00Z")),
            None,
            0.999,
        );
        let base = t("2026-11-22T08:00:00Z");
        assert!(
            s.renew_at < base && s.renew_at >= t("2026-11-22T07:36:00Z"),
            "{}",
            s.renew_at
        );
        assert_eq!(s.renew_at.subsec_nanosecond(), 0);
    }

    #[test]
    fn clamps_past_missing_and_absurd_expiries() {
        let issued = t("2026-11-22T00:00:00Z");
        for reported in [Some(t("2015-01-01T00:00:00Z")), None, Some(t("2100-01-01T00:00:00Z"))] {
            let s = schedule(issued, issued, reported, None, 0.0);
            assert!(s.clamped);
            assert_eq!(s.not_after, t("2026-11-22T01:00:00Z"));
            assert_eq!(s.renew_at, t("2026-11-22T00:40:00Z"));
        }
    }

    #[test]
    fn renew_before_longer_than_lifetime_is_no_hot_loop() {
        let s = schedule(
            t("2026-11-22T00:00:00Z"),
            t("2026-11-22T00:00:00Z"),
            Some(t("2026-11-22T01:00:00Z")),
            Some(5 * H),
            0.0,
        );
        assert_eq!(s.renew_at, t("2026-11-22T00:06:00Z"));
    }

    #[test]
    fn short_lived_tokens_renew_no_sooner_than_a_minute() {
        let now = t("2026-11-22T00:00:00Z");
        let s = schedule(now, now, Some(t("2026-11-22T00:00:30Z")), Some(H), 0.0);
        assert_eq!(s.renew_at, t("2026-11-22T00:01:00Z"));
        assert_eq!(s.not_after, t("2026-11-22T00:00:30Z"), "the real expiry is reported");
        assert!(!s.clamped);
    }

    #[test]
    fn a_credential_handed_back_already_due_is_renewed_a_minute_later() {
        // Issued at midnight, expiring at 01:00; the provider answers the same at 00:50.
        let issued = t("2026-11-22T00:00:00Z");
        let now = t("2026-11-22T00:50:00Z");
        let s = schedule(issued, now, Some(t("2026-11-22T01:00:00Z")), None, 0.0);
        assert_eq!(s.renew_at, t("2026-11-22T00:51:00Z"));
    }

    /// A provider that stays down: the retry times a user would see, on a
    /// virtual timeline, then recovery on the first attempt after it is back.
    #[test]
    fn outage_timeline_backs_off_and_recovers() {
        let mut now = t("2026-11-22T00:00:00Z");
        let back_at = t("2026-11-22T00:20:00Z");
        let mut failures = 0;
        let mut waits = Vec::new();
        while now < back_at {
            failures += 1;
            let wait = backoff(failures, None);
            waits.push(wait.as_secs());
            now = add(now, wait);
        }
        assert_eq!(&waits[..7], [10, 20, 40, 80, 160, 300, 300]);
        assert!(waits.iter().all(|w| *w <= 300));
        // First attempt after the provider is back happens within one max backoff.
        assert!(now.duration_since(back_at).unsigned_abs() <= BACKOFF_MAX);
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n, None).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(100, None), BACKOFF_MAX);
    }

    #[test]
    fn backoff_honours_retry_after() {
        assert_eq!(backoff(1, Some(Duration::from_secs(90))).as_secs(), 90);
        assert_eq!(backoff(6, Some(Duration::from_secs(5))).as_secs(), 300);
    }
}
