//! The credential decision, pure: from the clock, the credential held, the
//! previous status and the inputs' fingerprint to *reuse*, *wait until* or
//! *mint*. Each rule is a named check, tested with a fixed clock.

use jiff::Timestamp;

use super::fingerprint::Fingerprint;
use crate::api::RegistryCredentialStatus;
use crate::renewal::{self, MIN_MINT_INTERVAL};

/// What the decision needs to know about the credential held.
#[derive(Clone, Copy, Debug)]
pub struct HeldView<'a> {
    /// The inputs it was minted from.
    pub fingerprint: &'a Fingerprint,
    /// When it is due for renewal; `None` for credentials that never expire.
    pub renew_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub now: Timestamp,
    /// The inputs as they are now.
    pub fingerprint: &'a Fingerprint,
    pub held: Option<HeldView<'a>>,
    /// The inputs of the last failed attempt, if regcred remembers one.
    pub last_failed: Option<&'a Fingerprint>,
    /// A diagnosed pull failure found the credential in the Secrets expired
    /// or refused and asked for a new one (rate-limited by the diagnosis).
    pub mint_requested: bool,
    pub previous: &'a RegistryCredentialStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The held credential is current.
    Reuse,
    /// A mint is due but not allowed before `until` (backoff, a server's
    /// `Retry-After`, or the one-mint-a-minute floor).
    Wait {
        until: Timestamp,
    },
    Mint,
}

pub fn decide(f: &Facts<'_>) -> Decision {
    if !due(f) {
        return Decision::Reuse;
    }
    // Changed inputs (a fixed source Secret, an edited spec) are a user's
    // action: tried at once, whatever the backoff.
    if inputs_changed(f) {
        return Decision::Mint;
    }
    // A repair: the pods cannot pull with what they hold, so the
    // one-mint-a-minute floor gives way; the failure backoff does not.
    if f.mint_requested {
        return match backoff_until(f.previous) {
            Some(until) if f.now < until => Decision::Wait { until },
            _ => Decision::Mint,
        };
    }
    match not_before(f.previous) {
        Some(until) if f.now < until => Decision::Wait { until },
        _ => Decision::Mint,
    }
}

/// No credential held, inputs changed since it was minted, its renewal
/// time has come, or a repair asked for a new one.
fn due(f: &Facts<'_>) -> bool {
    if f.mint_requested {
        return true;
    }
    match f.held {
        None => true,
        Some(h) => h.fingerprint != f.fingerprint || h.renew_at.is_some_and(|t| f.now >= t),
    }
}

/// The last attempt had other inputs. After failures that means the failed
/// attempt's inputs, which only memory knows: after a restart, a failure
/// is taken to be with today's inputs, so its backoff (and any
/// `Retry-After`) holds.
fn inputs_changed(f: &Facts<'_>) -> bool {
    let last = if f.previous.failed_attempts > 0 {
        f.last_failed
    } else {
        f.held.map(|h| h.fingerprint)
    };
    last.is_some_and(|last| last != f.fingerprint)
}

/// The earliest time another mint with the same inputs may start, from
/// status alone, so it holds across restarts: after failures, the retry
/// planned then (`renewalTime`, which honoured any `Retry-After`) or the
/// backoff, whichever is later; and never within [`MIN_MINT_INTERVAL`] of
/// the last successful mint, whatever the provider answered. (Failures
/// have their own exponential backoff, from 10 s.)
pub fn not_before(previous: &RegistryCredentialStatus) -> Option<Timestamp> {
    let floor = previous
        .last_issued_time
        .as_ref()
        .map(|t| renewal::add(t.0, MIN_MINT_INTERVAL));
    backoff_until(previous).max(floor).map(renewal::truncate)
}

/// After failures, the retry planned then (`renewalTime`, which honoured
/// any `Retry-After`) or the backoff, whichever is later.
fn backoff_until(previous: &RegistryCredentialStatus) -> Option<Timestamp> {
    (previous.failed_attempts > 0)
        .then(|| {
            let computed = previous
                .last_failure_time
                .as_ref()
                .map(|t| renewal::add(t.0, renewal::backoff(previous.failed_attempts, None)));
            let planned = previous.renewal_time.as_ref().map(|t| t.0);
            computed.max(planned)
        })
        .flatten()
        .map(renewal::truncate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fp(s: &str) -> Fingerprint {
        Fingerprint::parse(s)
    }

    struct Case {
        name: &'static str,
        now: &'static str,
        inputs: &'static str,
        held: Option<(&'static str, Option<&'static str>)>,
        last_failed: Option<&'static str>,
        requested: bool,
        status: RegistryCredentialStatus,
        want: Decision,
    }

    fn status(
        issued: Option<&str>,
        failures: u32,
        last_failure: Option<&str>,
        renewal: Option<&str>,
    ) -> RegistryCredentialStatus {
        RegistryCredentialStatus {
            last_issued_time: issued.map(|s| Time(t(s))),
            failed_attempts: failures,
            last_failure_time: last_failure.map(|s| Time(t(s))),
            renewal_time: renewal.map(|s| Time(t(s))),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let cases = [
            Case {
                name: "nothing held and nothing tried: mint",
                now: "2026-11-22T00:00:00Z",
                inputs: "a",
                held: None,
                last_failed: None,
                requested: false,
                status: status(None, 0, None, None),
                want: Decision::Mint,
            },
            Case {
                name: "a held credential before its renewal time is reused",
                now: "2026-11-22T01:00:00Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T08:00:00Z"))),
                last_failed: None,
                requested: false,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, Some("2026-11-22T08:00:00Z")),
                want: Decision::Reuse,
            },
            Case {
                name: "a static credential is reused forever while its inputs stay",
                now: "2027-11-22T01:00:00Z",
                inputs: "a",
                held: Some(("a", None)),
                last_failed: None,
                requested: false,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, None),
                want: Decision::Reuse,
            },
            Case {
                name: "renewal time reached: mint",
                now: "2026-11-22T08:00:00Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T08:00:00Z"))),
                last_failed: None,
                requested: false,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, Some("2026-11-22T08:00:00Z")),
                want: Decision::Mint,
            },
            Case {
                name: "changed inputs mint at once, even within a minute of the last mint",
                now: "2026-11-22T00:00:20Z",
                inputs: "b",
                held: Some(("a", None)),
                last_failed: None,
                requested: false,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, None),
                want: Decision::Mint,
            },
            Case {
                name: "a provider handing back an already-due credential is asked again only after a minute",
                now: "2026-11-22T00:00:01Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T00:00:00Z"))),
                last_failed: None,
                requested: false,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, Some("2026-11-22T00:00:00Z")),
                want: Decision::Wait {
                    until: t("2026-11-22T00:01:00Z"),
                },
            },
            Case {
                name: "after a failure the backoff is waited out",
                now: "2026-11-22T00:00:05Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T00:00:00Z"))),
                last_failed: Some("a"),
                requested: false,
                status: status(None, 1, Some("2026-11-22T00:00:00Z"), Some("2026-11-22T00:00:10Z")),
                want: Decision::Wait {
                    until: t("2026-11-22T00:00:10Z"),
                },
            },
            Case {
                name: "Retry-After recorded as renewalTime outlives the computed backoff and a restart",
                now: "2026-11-22T00:03:00Z",
                inputs: "a",
                // After a restart: nothing in memory but what status says.
                held: None,
                last_failed: None,
                requested: false,
                status: status(None, 3, Some("2026-11-22T00:00:00Z"), Some("2026-11-22T00:10:00Z")),
                want: Decision::Wait {
                    until: t("2026-11-22T00:10:00Z"),
                },
            },
            Case {
                name: "after a restart, a failure whose inputs are unknown keeps its Retry-After",
                now: "2026-11-22T00:01:00Z",
                inputs: "b",
                // Recovered from the Secrets: minted from other inputs than today's.
                held: Some(("a", None)),
                last_failed: None,
                requested: false,
                status: status(
                    Some("2026-11-21T00:00:00Z"),
                    1,
                    Some("2026-11-22T00:00:00Z"),
                    Some("2026-11-22T00:02:00Z"),
                ),
                want: Decision::Wait {
                    until: t("2026-11-22T00:02:00Z"),
                },
            },
            Case {
                name: "Retry-After waited out: mint",
                now: "2026-11-22T00:10:00Z",
                inputs: "a",
                held: None,
                last_failed: Some("a"),
                requested: false,
                status: status(None, 3, Some("2026-11-22T00:00:00Z"), Some("2026-11-22T00:10:00Z")),
                want: Decision::Mint,
            },
            Case {
                name: "a fixed source Secret is tried at once during backoff",
                now: "2026-11-22T00:00:05Z",
                inputs: "b",
                held: None,
                last_failed: Some("a"),
                requested: false,
                status: status(None, 4, Some("2026-11-22T00:00:00Z"), Some("2026-11-22T00:02:40Z")),
                want: Decision::Mint,
            },
            Case {
                name: "a credential recovered after a restart during an outage keeps its backoff",
                now: "2026-11-22T08:00:30Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T08:00:00Z"))),
                last_failed: None,
                requested: false,
                status: status(
                    Some("2026-11-22T00:00:00Z"),
                    2,
                    Some("2026-11-22T08:00:20Z"),
                    Some("2026-11-22T08:00:40Z"),
                ),
                want: Decision::Wait {
                    until: t("2026-11-22T08:00:40Z"),
                },
            },
            Case {
                name: "a repair asks for a new credential before its renewal time, within the minute floor",
                now: "2026-11-22T00:00:30Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T00:01:00Z"))),
                last_failed: None,
                requested: true,
                status: status(Some("2026-11-22T00:00:00Z"), 0, None, Some("2026-11-22T00:01:00Z")),
                want: Decision::Mint,
            },
            Case {
                name: "a repair waits out the failure backoff",
                now: "2026-11-22T00:00:05Z",
                inputs: "a",
                held: Some(("a", Some("2026-11-22T00:00:00Z"))),
                last_failed: Some("a"),
                requested: true,
                status: status(
                    Some("2026-11-21T23:00:00Z"),
                    2,
                    Some("2026-11-22T00:00:00Z"),
                    Some("2026-11-22T00:00:20Z"),
                ),
                want: Decision::Wait {
                    until: t("2026-11-22T00:00:20Z"),
                },
            },
        ];
        for c in cases {
            let inputs = fp(c.inputs);
            let held_fp = c.held.map(|(f, _)| fp(f));
            let last_failed = c.last_failed.map(fp);
            let facts = Facts {
                now: t(c.now),
                fingerprint: &inputs,
                held: c.held.map(|(_, renew)| HeldView {
                    fingerprint: held_fp.as_ref().unwrap(),
                    renew_at: renew.map(t),
                }),
                last_failed: last_failed.as_ref(),
                mint_requested: c.requested,
                previous: &c.status,
            };
            assert_eq!(decide(&facts), c.want, "{}", c.name);
        }
    }

    /// A provider that answers the same credential every time (GKE's
    /// metadata server caches tokens): mints over two virtual minutes.
    #[test]
    fn a_provider_repeating_itself_is_asked_at_most_once_a_minute() {
        let start = t("2026-11-22T00:00:00Z");
        let inputs = fp("a");
        let mut status = RegistryCredentialStatus::default();
        let mut held_renew: Option<Timestamp> = None;
        let mut mints = 0;
        for second in 0..120 {
            let now = renewal::add(start, std::time::Duration::from_secs(second));
            let facts = Facts {
                now,
                fingerprint: &inputs,
                held: held_renew.map(|r| HeldView {
                    fingerprint: &inputs,
                    renew_at: Some(r),
                }),
                last_failed: None,
                mint_requested: false,
                previous: &status,
            };
            if decide(&facts) == Decision::Mint {
                mints += 1;
                // The same token, already due: renewal planned in the past.
                status.last_issued_time = Some(Time(now));
                held_renew = Some(start);
            }
        }
        assert_eq!(mints, 2, "one mint at 0 s and one at 60 s");
    }
}
