//! A failed pull's cause after regcred has repaired it. Pure, and run after
//! [`decide`](super::decide): `decide` judges the namespace as it is now, and
//! once regcred has put the Secret back (its re-sync after a restart, a
//! retried write, a renewal) the registry serves the image with the pod's
//! credential and nothing now explains the failure. "Whatever failed has
//! passed" is not a cause: the kubelet's Events say how the pull failed and
//! when, regcred's record of what it changed in the namespace ([`Change`])
//! says what it put right and when, and together they name the cause with
//! the repair's time.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use super::classify::Hint;
use super::decide::Findings;
use super::{Cause, Detail, Diagnosis, Evidence};
use crate::api::PullAuthResult;
use crate::reconcile::changes::{Change, ChangeKind};

/// When the kubelet's last pull failed, from its Events about the pod: the
/// latest `Failed to pull image` or `FailedToRetrieveImagePullSecret` (each
/// pull attempt repeats them). Not `Back-off pulling image` nor
/// `Error: ImagePullBackOff`, which repeat while the kubelet waits, not pulls.
pub fn last_failure(events: &[Event]) -> Option<Timestamp> {
    events
        .iter()
        .filter(|e| match e.reason.as_deref() {
            Some("Failed") => e
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("Failed to pull image") || m.contains("ErrImagePull")),
            Some("FailedToRetrieveImagePullSecret") => true,
            _ => false,
        })
        .filter_map(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        })
        .max()
}

/// Diagnoses that a repair already made can stand behind: the registry
/// serves the image now (`Unknown`), or the kubelet's text alone, which
/// describes the pull that failed rather than the namespace as it is now.
/// A diagnosis that straddles regcred's write (the pod's Secret read just
/// before it, the managed one just after) finds no entry for the image: a
/// `CredentialMissing` without detail.
fn recallable(d: &Diagnosis) -> bool {
    match d.cause {
        Cause::Unknown | Cause::CredentialRejected | Cause::CredentialExpired => true,
        Cause::CredentialMissing => matches!(d.detail, None | Some(Detail::NotYetReadable)),
        _ => false,
    }
}

/// Name the cause regcred has since repaired, if `changes` (regcred's
/// changes to the namespace since the kubelet's first failed pull at
/// `failed_at`) explain the failure; returns the repair's time. Leaves `d`
/// as it is when the namespace does not hold the current credential now,
/// when the registry still refuses it, or when no change explains what the
/// kubelet said.
pub fn recall(d: &mut Diagnosis, f: &Findings, failed_at: Timestamp, changes: &[Change]) -> Option<Timestamp> {
    // A Secret write repairs only a pod that names the Secret.
    let c = f
        .credential
        .as_ref()
        .filter(|c| c.secret_current == Some(true) && c.pod_links)?;
    // Only a refusal of the current credential belies the repair: the pod's
    // Secrets may have been read a moment before regcred's write, and then
    // the HEAD went out with the old credential, or none.
    let still_refused = f
        .manifests
        .iter()
        .any(|m| m.pods && m.current && m.check.result == PullAuthResult::Unauthorized);
    if still_refused || !recallable(d) {
        return None;
    }
    // The kubelet's Event times are whole seconds: a change in the second
    // of the failure may have come before it, so one surely after is preferred.
    let explaining: Vec<&Change> = changes
        .iter()
        .filter(|ch| ch.secret == c.secret_name && ch.credential == c.name && ch.at >= failed_at)
        .filter(|ch| explains(&ch.kind, f.hint))
        .collect();
    let surely_after = failed_at + jiff::SignedDuration::from_secs(1);
    let change = *explaining
        .iter()
        .find(|ch| ch.at >= surely_after)
        .or(explaining.first())?;
    let secret = format!("{}/{}", f.namespace, c.secret_name);
    let pulled = format!("when the kubelet pulled at {failed_at} ({})", f.hint.describe());
    let at = change.at;
    let (cause, detail, message) = match change.kind {
        ChangeKind::Created => (
            Cause::CredentialMissing,
            Some(Detail::SecretMissing),
            format!(
                "namespace {} had no Secret {} of RegistryCredential {} {pulled}; regcred created it at {at}",
                f.namespace, c.secret_name, c.name
            ),
        ),
        ChangeKind::Rewritten {
            previous_not_after,
            renewed,
        } => rewritten(
            &secret,
            &c.name,
            &pulled,
            at,
            f.hint,
            failed_at,
            previous_not_after,
            renewed,
        ),
    };
    d.cause = cause;
    d.detail = detail;
    d.message = message;
    d.fix = format!(
        "nothing: regcred repaired it at {at}; the kubelet's next retry pulls with Secret {secret} (recreate the pod \
         to retry at once)"
    );
    d.evidence.push(Evidence::new(
        format!("regcred's record of namespace {}", f.namespace),
        describe(change),
    ));
    Some(at)
}

/// Whether a change of `kind` made after the failure can be what the
/// kubelet's text describes: a missing Secret leaves the pull without a
/// credential, a rewritten one had sent a refused or expired one.
fn explains(kind: &ChangeKind, hint: Hint) -> bool {
    match kind {
        ChangeKind::Created => matches!(
            hint,
            Hint::SecretMissing
                | Hint::NoCredential
                | Hint::Unauthorized
                | Hint::Forbidden
                | Hint::DeniedOrMissing
                | Hint::BackOffOnly
        ),
        ChangeKind::Rewritten { .. } => matches!(
            hint,
            Hint::Unauthorized | Hint::Forbidden | Hint::DeniedOrMissing | Hint::Expired | Hint::BackOffOnly
        ),
    }
}

/// The cause a rewritten credential repaired: it had expired when the pull
/// used it, or it was an older copy than regcred's (altered, or left by a
/// write that did not go through), or regcred's own was refused and a
/// renewal replaced it.
#[allow(clippy::too_many_arguments)]
fn rewritten(
    secret: &str,
    credential: &str,
    pulled: &str,
    at: Timestamp,
    hint: Hint,
    failed_at: Timestamp,
    previous_not_after: Option<Timestamp>,
    renewed: bool,
) -> (Cause, Option<Detail>, String) {
    let expired_then = previous_not_after.is_some_and(|t| t <= failed_at);
    if hint == Hint::Expired || expired_then {
        let expiry = previous_not_after
            .map(|t| format!(" (notAfter {t})"))
            .unwrap_or_default();
        return (
            Cause::CredentialExpired,
            None,
            format!(
                "the credential in Secret {secret} had expired{expiry} {pulled}; regcred wrote a renewed one at {at}"
            ),
        );
    }
    if !renewed {
        return (
            Cause::CredentialRejected,
            Some(Detail::StaleCopy),
            format!(
                "Secret {secret} held an older credential than RegistryCredential {credential}'s current one {pulled}; \
                 regcred rewrote it at {at}"
            ),
        );
    }
    (
        Cause::CredentialRejected,
        Some(Detail::Refused),
        format!(
            "the registry refused RegistryCredential {credential}'s credential in Secret {secret} {pulled}; regcred \
             wrote a renewed one at {at}"
        ),
    )
}

fn describe(change: &Change) -> String {
    match change.kind {
        ChangeKind::Created => format!("created Secret {} at {}", change.secret, change.at),
        ChangeKind::Rewritten { renewed, .. } => format!(
            "rewrote Secret {} at {} with {}",
            change.secret,
            change.at,
            if renewed {
                "a renewed credential"
            } else {
                "the current credential (it held another)"
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::decide::{CredentialFacts, Manifest};
    use crate::pull_auth::ManifestCheck;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const FAILED: &str = "2026-12-06T10:00:00Z";
    const REPAIRED: &str = "2026-12-06T10:02:00Z";

    fn findings(hint: Hint, current: Option<bool>, registry: Option<PullAuthResult>) -> Findings {
        Findings {
            namespace: "team".into(),
            pod: "app".into(),
            container: "app".into(),
            image: "r.example/app:1".into(),
            host: "r.example".into(),
            hint,
            text: Some("401 Unauthorized".into()),
            pod_secrets: Vec::new(),
            sent: Some(vec![("hub".into(), "r.example".into())]),
            credential: Some(CredentialFacts {
                name: "hub".into(),
                secret_name: "hub".into(),
                targeted: Some(true),
                secret_exists: Some(true),
                secret_foreign: false,
                secret_current: current,
                not_after: None,
                service_account: "default".into(),
                service_account_links: Some(true),
                pod_links: true,
                identity: None,
            }),
            credentials_listed: true,
            manifests: registry
                .map(|result| Manifest {
                    with: "the pod's credential".into(),
                    current: true,
                    pods: true,
                    check: ManifestCheck {
                        result,
                        status: None,
                        repository_exists: None,
                        ratelimit_remaining: None,
                        message: String::new(),
                    },
                })
                .into_iter()
                .collect(),
            now: t("2026-12-06T10:03:00Z"),
            evidence: Vec::new(),
        }
    }

    fn diagnosis(cause: Cause, detail: Option<Detail>) -> Diagnosis {
        Diagnosis {
            namespace: "team".into(),
            pod: "app".into(),
            container: "app".into(),
            image: "r.example/app:1".into(),
            cause,
            detail,
            message: "registry r.example now serves r.example/app:1: whatever failed has passed".into(),
            fix: "wait".into(),
            evidence: Vec::new(),
            credential: Some("hub".into()),
        }
    }

    fn change(at: &str, kind: ChangeKind) -> Change {
        Change {
            at: t(at),
            credential: "hub".into(),
            secret: "hub".into(),
            kind,
        }
    }

    fn rewritten(previous_not_after: Option<&str>, renewed: bool) -> ChangeKind {
        ChangeKind::Rewritten {
            previous_not_after: previous_not_after.map(t),
            renewed,
        }
    }

    /// Each case: the kubelet's text, the diagnosis of the namespace as it
    /// is now, regcred's record, and the cause named with the repair's time.
    #[test]
    fn a_cause_regcred_has_since_repaired_is_named_with_the_repairs_time() {
        use Cause::*;
        let healthy = Some(PullAuthResult::Healthy);
        let cases = [
            (
                "a rewritten Secret does not explain one the kubelet could not find",
                Hint::SecretMissing,
                diagnosis(Unknown, None),
                rewritten(None, false),
                None,
            ),
            (
                "a Secret deleted while the operator was away and created by its re-sync",
                Hint::SecretMissing,
                diagnosis(Unknown, None),
                ChangeKind::Created,
                Some((CredentialMissing, Some(Detail::SecretMissing))),
            ),
            (
                "the kubelet's first read failing, then regcred creating the Secret",
                Hint::SecretMissing,
                diagnosis(CredentialMissing, Some(Detail::NotYetReadable)),
                ChangeKind::Created,
                Some((CredentialMissing, Some(Detail::SecretMissing))),
            ),
            (
                "a copy edited to an old password, restored by the re-sync",
                Hint::Unauthorized,
                diagnosis(Unknown, None),
                rewritten(Some("2026-12-06T11:00:00Z"), false),
                Some((CredentialRejected, Some(Detail::StaleCopy))),
            ),
            (
                "a token that had expired, replaced by a scheduled renewal",
                Hint::Unauthorized,
                diagnosis(Unknown, None),
                rewritten(Some("2026-12-06T09:59:30Z"), true),
                Some((CredentialExpired, None)),
            ),
            (
                "the registry's word that the token expired, and a renewal since",
                Hint::Expired,
                diagnosis(CredentialExpired, None),
                rewritten(None, true),
                Some((CredentialExpired, None)),
            ),
            (
                "an unexpired credential refused, then renewed",
                Hint::Forbidden,
                diagnosis(CredentialRejected, Some(Detail::Refused)),
                rewritten(Some("2026-12-06T11:00:00Z"), true),
                Some((CredentialRejected, Some(Detail::Refused))),
            ),
            (
                "a missing tag is no credential's doing",
                Hint::NotFound,
                diagnosis(Unknown, None),
                ChangeKind::Created,
                None,
            ),
            (
                "a cause the namespace shows now is left as it is",
                Hint::SecretMissing,
                diagnosis(CredentialMissing, Some(Detail::ServiceAccountNotLinked)),
                ChangeKind::Created,
                None,
            ),
        ];
        for (case, hint, d, kind, want) in cases {
            let mut d = d;
            let got = recall(
                &mut d,
                &findings(hint, Some(true), healthy),
                t(FAILED),
                &[change(REPAIRED, kind)],
            );
            match want {
                Some((cause, detail)) => {
                    assert_eq!(got, Some(t(REPAIRED)), "{case}");
                    assert_eq!((d.cause, d.detail), (cause, detail), "{case}: {}", d.message);
                    assert!(d.message.contains(REPAIRED), "{case}: {}", d.message);
                    assert!(
                        d.evidence.iter().any(|e| e.check.contains("regcred's record")),
                        "{case}"
                    );
                }
                None => assert_eq!(got, None, "{case}: {}", d.label()),
            }
        }
    }

    /// The diagnosis read the pod's Secret a moment before the re-sync put
    /// it back, and the Secret regcred manages a moment after: its HEAD went
    /// out without a credential and was refused, which says nothing of now.
    #[test]
    fn a_refusal_of_what_the_pod_held_before_the_write_does_not_belie_it() {
        let mut f = findings(Hint::Unauthorized, Some(true), Some(PullAuthResult::Unauthorized));
        f.manifests[0].current = false;
        let mut d = diagnosis(Cause::CredentialRejected, Some(Detail::Refused));
        let got = recall(&mut d, &f, t(FAILED), &[change(REPAIRED, ChangeKind::Created)]);
        assert_eq!(got, Some(t(REPAIRED)));
        assert_eq!(d.label(), "CredentialMissing/SecretMissing");
    }

    fn event(reason: &str, message: &str, last: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app.1"},
            "involvedObject": {"kind": "Pod", "name": "app"},
            "reason": reason,
            "message": message,
            "firstTimestamp": "2026-12-06T09:50:00Z",
            "lastTimestamp": last,
        }))
        .unwrap()
    }

    /// The kubelet repeats its back-off Events while it waits; only a pull
    /// that failed tells when the namespace last let it down.
    #[test]
    fn the_last_failure_is_the_last_pull_not_the_last_back_off() {
        let events = [
            event(
                "Failed",
                "Failed to pull image \"r.example/app:1\": 401 Unauthorized",
                "2026-12-06T10:00:00Z",
            ),
            event("Failed", "Error: ErrImagePull", "2026-12-06T10:00:01Z"),
            event(
                "FailedToRetrieveImagePullSecret",
                "Unable to retrieve some image pull secrets (hub)",
                "2026-12-06T10:00:02Z",
            ),
            event(
                "BackOff",
                "Back-off pulling image \"r.example/app:1\"",
                "2026-12-06T10:05:00Z",
            ),
            event("Failed", "Error: ImagePullBackOff", "2026-12-06T10:05:00Z"),
        ];
        assert_eq!(last_failure(&events), Some(t("2026-12-06T10:00:02Z")));
        assert_eq!(last_failure(&events[3..]), None, "back-off alone says no pull failed");
    }

    /// The kubelet's Event says 10:00:00 for a failure at 10:00:00.9: a
    /// change at 10:00:00.5 may be the write before it, so a later one is the repair.
    #[test]
    fn a_change_surely_after_the_failure_is_preferred_to_one_in_its_second() {
        let mut d = diagnosis(Cause::Unknown, None);
        let f = findings(Hint::Unauthorized, Some(true), Some(PullAuthResult::Healthy));
        let changes = [
            change("2026-12-06T10:00:00.5Z", ChangeKind::Created),
            change(REPAIRED, ChangeKind::Created),
        ];
        assert_eq!(recall(&mut d, &f, t(FAILED), &changes), Some(t(REPAIRED)));
        let mut d = diagnosis(Cause::Unknown, None);
        assert_eq!(
            recall(&mut d, &f, t(FAILED), &changes[..1]),
            Some(t("2026-12-06T10:00:00.5Z")),
            "the only one there is"
        );
    }

    #[test]
    fn no_repair_is_claimed_that_the_namespace_or_the_registry_belies() {
        let created = [change(REPAIRED, ChangeKind::Created)];
        let unknown = || diagnosis(Cause::Unknown, None);
        let cases = [
            (
                "the Secret is not the current credential now",
                findings(Hint::SecretMissing, Some(false), None),
                t(FAILED),
                &created[..],
            ),
            (
                "the registry still refuses the current credential",
                findings(Hint::Unauthorized, Some(true), Some(PullAuthResult::Unauthorized)),
                t(FAILED),
                &created[..],
            ),
            (
                "the change came before the failure",
                findings(Hint::SecretMissing, Some(true), None),
                t("2026-12-06T10:05:00Z"),
                &created[..],
            ),
            (
                "the pod does not name the Secret: writing it repairs nothing of this pod",
                {
                    let mut f = findings(Hint::SecretMissing, Some(true), None);
                    f.credential.as_mut().unwrap().pod_links = false;
                    f
                },
                t(FAILED),
                &created[..],
            ),
            (
                "regcred changed nothing",
                findings(Hint::SecretMissing, Some(true), None),
                t(FAILED),
                &[][..],
            ),
        ];
        for (case, f, failed_at, changes) in cases {
            let mut d = unknown();
            assert_eq!(recall(&mut d, &f, failed_at, changes), None, "{case}");
            assert_eq!(d, unknown(), "{case}");
        }
    }
}
