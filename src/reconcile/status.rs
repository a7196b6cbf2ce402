//! The *status* step: [`compose`] the status from what the other steps
//! found (pure), [`transitions`] as Events, and [`write`] it only when
//! something other than a timestamp changed.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::cond::Cond;
use super::credential;
use super::events::Note;
use super::fanout::FanOut;
use super::pull_auth;
use crate::api::conditions::{self, reason};
use crate::api::{
    FailedNamespace, NamespaceCounts, ProviderKind, PullAuthResult, RegistryCredential, RegistryCredentialStatus,
    ServiceAccountCounts,
};
use crate::error::{Error, Result};
use crate::renewal;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The status after a reconcile that got as far as fan-out.
pub fn compose(
    rc: &RegistryCredential,
    provider: ProviderKind,
    previous: &RegistryCredentialStatus,
    cred: &credential::Step,
    fanout: &FanOut,
    checked: &pull_auth::Step,
    now: Timestamp,
) -> RegistryCredentialStatus {
    let current = cred.current.as_ref();
    let synced_cond = if current.is_none() {
        Cond::new("Unknown", reason::PENDING, "Waiting for a credential to write.")
    } else {
        synced_condition(fanout.targeted, fanout.synced, &fanout.failed, fanout.sa_failed)
    };
    let pull_auth = pull_auth_condition(
        checked.pull_auth.as_ref().map(|p| p.result),
        checked.pull_auth.as_ref().map_or("", |p| p.message.as_str()),
    );
    let ready = ready_condition(&cred.issued, &synced_cond, &pull_auth);
    let schedule = current.and_then(|c| c.schedule);
    RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        provider: Some(provider),
        registries: current.map(|c| c.credential.registries()).unwrap_or_default(),
        not_after: schedule.map(|s| Time(s.not_after)),
        renewal_time: cred.next_attempt.map(Time),
        last_issued_time: current.map(|c| Time(renewal::truncate(c.issued))),
        credential_digest: current.map(|c| c.digest.clone()),
        failed_attempts: cred.failed_attempts,
        last_failure_time: cred.last_failure_time.clone(),
        namespaces: NamespaceCounts {
            targeted: fanout.targeted,
            synced: fanout.synced,
        },
        failed_namespaces: bounded_failures(fanout.failed.clone()),
        service_accounts: ServiceAccountCounts {
            patched: fanout.sa_patched,
            failed: fanout.sa_failed,
        },
        identities: None,
        failed_service_accounts: Vec::new(),
        summary: Some(format!("{}/{}", fanout.synced, fanout.targeted)),
        pull_auth: checked.pull_auth.clone(),
        // Written by the diagnosis alone (its own field manager).
        pull_failures: Vec::new(),
        conditions: conditions(
            &previous.conditions,
            rc.metadata.generation,
            &Time(renewal::truncate(now)),
            [
                (conditions::ISSUED, &cred.issued),
                (conditions::SYNCED, &synced_cond),
                (conditions::PULL_AUTH_HEALTHY, &pull_auth),
                (conditions::READY, &ready),
            ],
        ),
    }
}

/// The status after a pass of `identity: PerServiceAccount` mode: each
/// selected ServiceAccount's own credential. `Issued` says whether every
/// exchange succeeded, `Synced` whether every selected ServiceAccount holds
/// one (those without the identity annotation do not), and the pull-auth
/// check, which proves one shared credential, does not run.
pub fn compose_identities(
    rc: &RegistryCredential,
    provider: ProviderKind,
    previous: &RegistryCredentialStatus,
    out: &super::workload::Outcome,
    now: Timestamp,
) -> RegistryCredentialStatus {
    let counts = &out.counts;
    let (issued, synced) = identity_conditions(out);
    let pull_auth = Cond::new(
        "Unknown",
        reason::NOT_CHECKED,
        "Each ServiceAccount holds its own credential; the shared pull-auth check does not apply (regcred diagnoses failed pulls per ServiceAccount).",
    );
    let ready = if issued.is_true() && synced.is_true() {
        Cond::new(
            "True",
            reason::READY,
            "Every selected ServiceAccount holds a valid credential of its own identity; the registry's answer to each is seen in its pulls (see pullFailures).",
        )
    } else {
        ready_condition(&issued, &synced, &pull_auth)
    };
    RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        provider: Some(provider),
        registries: out.registries.iter().cloned().collect(),
        not_after: out.not_after.map(Time),
        renewal_time: out.next.map(|t| Time(renewal::truncate(t))),
        namespaces: NamespaceCounts {
            targeted: out.targeted,
            synced: out.synced,
        },
        identities: Some(counts.clone()),
        failed_service_accounts: out.listed(),
        summary: Some(format!("{}/{} SA", counts.valid, counts.selected)),
        conditions: conditions(
            &previous.conditions,
            rc.metadata.generation,
            &Time(renewal::truncate(now)),
            [
                (conditions::ISSUED, &issued),
                (conditions::SYNCED, &synced),
                (conditions::PULL_AUTH_HEALTHY, &pull_auth),
                (conditions::READY, &ready),
            ],
        ),
        ..Default::default()
    }
}

/// `Issued` and `Synced` of `PerServiceAccount` mode.
fn identity_conditions(out: &super::workload::Outcome) -> (Cond, Cond) {
    let counts = &out.counts;
    let exchange_failed = out
        .failed
        .iter()
        .find(|f| f.reason != reason::IDENTITY_MISSING && f.reason != reason::SERVICE_ACCOUNT_PATCH_FAILED);
    let described = |f: &crate::api::FailedServiceAccount, n: usize| {
        let more = if n > 1 {
            format!(" (and {} more, see status.failedServiceAccounts)", n - 1)
        } else {
            String::new()
        };
        format!("{}/{}: {}{more}", f.namespace, f.name, f.message)
    };
    let issued = match exchange_failed {
        Some(f) => Cond::new("False", &f.reason, described(f, counts.failed as usize)),
        None if counts.selected == 0 => {
            Cond::new("Unknown", reason::PENDING, "No selected ServiceAccount to mint for.")
        }
        None => Cond::new(
            "True",
            reason::ISSUED,
            format!(
                "Every ServiceAccount that names an identity holds its own credential ({} of {}).",
                counts.valid, counts.selected
            ),
        ),
    };
    let synced = match out.failed.first() {
        _ if out.targeted == 0 => Cond::new(
            "True",
            reason::NO_NAMESPACES,
            "No namespace matches spec.target.namespaces.",
        ),
        Some(f) => Cond::new(
            "False",
            &f.reason,
            format!(
                "{}/{} ServiceAccounts hold a valid credential; {}",
                counts.valid,
                counts.selected,
                described(f, out.failed.len())
            ),
        ),
        None => Cond::new(
            "True",
            reason::SYNCED,
            format!(
                "All {} selected ServiceAccounts hold a valid credential of their own identity.",
                counts.selected
            ),
        ),
    };
    (issued, synced)
}

/// A Warning Event for each ServiceAccount that newly failed (not for
/// those merely without the annotation: status lists them).
pub fn identity_transitions(old: &RegistryCredentialStatus, new: &RegistryCredentialStatus) -> Vec<Note> {
    let key = |f: &crate::api::FailedServiceAccount| (f.namespace.clone(), f.name.clone(), f.reason.clone());
    let before: BTreeSet<_> = old.failed_service_accounts.iter().map(key).collect();
    new.failed_service_accounts
        .iter()
        .filter(|f| f.reason != reason::IDENTITY_MISSING && !before.contains(&key(f)))
        .map(|f| {
            Note::warning(
                &f.reason,
                "MintForServiceAccount",
                format!("ServiceAccount {}/{}: {}", f.namespace, f.name, f.message),
            )
        })
        .collect()
}

/// The status of a RegistryCredential whose spec cannot be acted on: what
/// was known stays, the conditions say why.
pub fn invalid(
    rc: &RegistryCredential,
    previous: &RegistryCredentialStatus,
    invalid: &Cond,
    now: Timestamp,
) -> RegistryCredentialStatus {
    let unknown = Cond::new("Unknown", reason::PENDING, "Waiting for a valid spec.");
    let pull = pull_auth_condition(None, "");
    RegistryCredentialStatus {
        observed_generation: rc.metadata.generation,
        conditions: conditions(
            &previous.conditions,
            rc.metadata.generation,
            &Time(renewal::truncate(now)),
            [
                (conditions::ISSUED, invalid),
                (conditions::SYNCED, &unknown),
                (conditions::PULL_AUTH_HEALTHY, &pull),
                (conditions::READY, invalid),
            ],
        ),
        pull_failures: Vec::new(),
        ..previous.clone()
    }
}

/// Events for what changed between two statuses: new failed namespaces,
/// a flipped pull-auth check, Synced becoming True.
pub fn transitions(old: &RegistryCredentialStatus, new: &RegistryCredentialStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    let find = |s: &RegistryCredentialStatus, t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let old_failed: BTreeSet<(&str, &str)> = old
        .failed_namespaces
        .iter()
        .map(|f| (f.namespace.as_str(), f.reason.as_str()))
        .collect();
    for f in &new.failed_namespaces {
        if !old_failed.contains(&(f.namespace.as_str(), f.reason.as_str())) {
            notes.push(Note::warning(&f.reason, "Sync", f.message.clone()));
        }
    }
    let pull = find(new, conditions::PULL_AUTH_HEALTHY);
    if pull != find(old, conditions::PULL_AUTH_HEALTHY)
        && let Some((status, reason)) = pull
        && status != "Unknown"
    {
        let message = new.pull_auth.as_ref().map(|p| p.message.clone()).unwrap_or_default();
        notes.push(if status == "True" {
            Note::normal(&reason, "PullAuthCheck", message)
        } else {
            Note::warning(&reason, "PullAuthCheck", message)
        });
    }
    let synced = find(new, conditions::SYNCED);
    if synced != find(old, conditions::SYNCED)
        && let Some((status, reason)) = synced
        && status == "True"
    {
        let message = format!("{} namespaces hold the current Secret", new.namespaces.synced);
        notes.push(Note::normal(&reason, "Sync", message));
    }
    notes
}

/// Server-side apply of `new` as the status, unless only timestamps changed.
pub async fn write(client: &Client, rc: &RegistryCredential, new: RegistryCredentialStatus) -> Result<()> {
    if !needs_write(rc.status.as_ref(), &new) {
        return Ok(());
    }
    let api: Api<RegistryCredential> = Api::all(client.clone());
    let patch = serde_json::json!({
        "apiVersion": RegistryCredential::api_version(&()),
        "kind": RegistryCredential::kind(&()),
        "status": new,
    });
    let name = rc.name_any();
    let params = PatchParams::apply("regcred").force();
    match tokio::time::timeout(WRITE_TIMEOUT, api.patch_status(&name, &params, &Patch::Apply(&patch))).await {
        Ok(result) => result
            .map(|_| ())
            .map_err(Error::kube(format!("writing status of RegistryCredential {name}"))),
        Err(_) => Err(Error::StatusTimeout(name)),
    }
}

/// At most this many failed namespaces are listed in status.
pub const MAX_FAILED_LISTED: usize = 20;

/// The `Synced` condition from the fan-out's outcome.
pub fn synced_condition(targeted: u32, synced: u32, failed: &[FailedNamespace], sa_failed: u32) -> Cond {
    if let Some(first) = failed.first() {
        let more = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} more namespaces, see status.failedNamespaces)", n - 1),
        };
        return Cond::new(
            "False",
            &first.reason,
            format!(
                "{synced}/{targeted} namespaces synced; {}: {}{more}",
                first.namespace, first.message
            ),
        );
    }
    if sa_failed > 0 {
        return Cond::new(
            "False",
            reason::SERVICE_ACCOUNT_PATCH_FAILED,
            format!("{sa_failed} ServiceAccounts could not be patched"),
        );
    }
    if targeted == 0 {
        return Cond::new(
            "True",
            reason::NO_NAMESPACES,
            "No namespace matches spec.target.namespaces.",
        );
    }
    Cond::new(
        "True",
        reason::SYNCED,
        format!("All {targeted} targeted namespaces hold the current Secret."),
    )
}

/// The `PullAuthHealthy` condition from the last check's result.
pub fn pull_auth_condition(result: Option<PullAuthResult>, message: &str) -> Cond {
    let detail = |default: &str| {
        if message.is_empty() {
            default.to_string()
        } else {
            message.to_string()
        }
    };
    match result {
        Some(PullAuthResult::Healthy) => {
            Cond::new("True", reason::HEALTHY, detail("The registry accepted the credential."))
        }
        Some(PullAuthResult::Unauthorized) => Cond::new(
            "False",
            reason::UNAUTHORIZED,
            detail("The registry rejected the credential."),
        ),
        Some(PullAuthResult::ImageNotFound) => Cond::new(
            "False",
            reason::IMAGE_NOT_FOUND,
            detail("The image to check does not exist."),
        ),
        Some(PullAuthResult::Unreachable) => Cond::new(
            "False",
            reason::UNREACHABLE,
            detail("The registry could not be reached."),
        ),
        Some(PullAuthResult::Disabled) => Cond::new(
            "Unknown",
            reason::CHECK_DISABLED,
            "Pull-auth checks are disabled (spec.healthCheck.mode).",
        ),
        Some(PullAuthResult::Unknown) => Cond::new(
            "Unknown",
            reason::CHECK_INCONCLUSIVE,
            detail("The last check could not tell whether the registry accepts the credential."),
        ),
        None => Cond::new("Unknown", reason::NOT_CHECKED, "No pull-auth check has run yet."),
    }
}

/// `Ready`: Issued and Synced are True and PullAuthHealthy is not False.
pub fn ready_condition(issued: &Cond, synced: &Cond, pull_auth: &Cond) -> Cond {
    if let Some(failing) = [issued, synced, pull_auth].into_iter().find(|c| c.is_false()) {
        return Cond::new("False", &failing.reason, failing.message.clone());
    }
    if let Some(unknown) = [issued, synced].into_iter().find(|c| !c.is_true()) {
        return Cond::new("Unknown", &unknown.reason, unknown.message.clone());
    }
    // Only a check that passed may say that pulls authenticate.
    let unchecked = match pull_auth.reason.as_str() {
        _ if pull_auth.is_true() => None,
        reason::CHECK_DISABLED => {
            Some("whether the registry accepts it is not checked (spec.healthCheck.mode: Disabled)")
        }
        reason::CHECK_INCONCLUSIVE => {
            Some("the last check could not tell whether the registry accepts it (see PullAuthHealthy)")
        }
        _ => Some("the registry has not been checked yet"),
    };
    match unchecked {
        Some(why) => Cond::new(
            "True",
            reason::READY,
            format!("Every targeted namespace holds the current Secret; {why}."),
        ),
        None => Cond::new(
            "True",
            reason::READY,
            "Pulls from the registry authenticate in every targeted namespace.",
        ),
    }
}

/// The four conditions in order, keeping `lastTransitionTime` of those whose
/// status did not flip.
pub fn conditions(
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
    conds: [(&str, &Cond); 4],
) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|(type_, c)| {
            let before = previous.iter().find(|p| p.type_ == type_);
            let last_transition_time = match before {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: type_.into(),
                status: c.status.into(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition types, in the order [`conditions`] takes them.
pub const ORDER: [&str; 4] = conditions::ALL;

/// Whether `new` differs from `old` in more than timestamps that only say
/// "checked again" (condition transition times, the pull-auth check time).
pub fn needs_write(old: Option<&RegistryCredentialStatus>, new: &RegistryCredentialStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &RegistryCredentialStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        if let Some(p) = s.pull_auth.as_mut() {
            p.checked_time = None;
        }
        // Not reconcile's field: the diagnosis writes it with its own manager.
        s.pull_failures.clear();
        s
    };
    strip(old) != strip(new)
}

/// Keep the list bounded, sorted by namespace for stable output.
pub fn bounded_failures(mut failed: Vec<FailedNamespace>) -> Vec<FailedNamespace> {
    failed.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    failed.truncate(MAX_FAILED_LISTED);
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn ready_says_pulls_authenticate_only_after_a_check_that_passed() {
        let issued = Cond::new("True", reason::ISSUED, "issued");
        let synced = Cond::new("True", reason::SYNCED, "synced");
        let ready = |result| ready_condition(&issued, &synced, &pull_auth_condition(result, "")).message;
        assert!(ready(Some(PullAuthResult::Healthy)).contains("authenticate"));
        for result in [None, Some(PullAuthResult::Unknown), Some(PullAuthResult::Disabled)] {
            let message = ready(result);
            assert!(!message.contains("authenticate"), "{result:?}: {message}");
            assert!(message.starts_with("Every targeted namespace holds the current Secret; "));
        }
        assert_eq!(
            pull_auth_condition(Some(PullAuthResult::Unknown), "").reason,
            reason::CHECK_INCONCLUSIVE
        );
    }

    fn failed(ns: &str) -> FailedNamespace {
        FailedNamespace {
            namespace: ns.into(),
            reason: "SecretExists".into(),
            message: "a Secret named hub exists".into(),
        }
    }

    #[test]
    fn ready_follows_the_failing_condition() {
        let issued = Cond::new("True", "Issued", "ok");
        let synced = synced_condition(3, 2, &[failed("ci")], 0);
        assert!(synced.is_false());
        assert_eq!(synced.reason, "SecretExists");
        let pull = pull_auth_condition(None, "");
        let ready = ready_condition(&issued, &synced, &pull);
        assert_eq!((ready.status, ready.reason.as_str()), ("False", "SecretExists"));

        let synced = synced_condition(3, 3, &[], 0);
        let ready = ready_condition(&issued, &synced, &pull);
        assert_eq!(ready.status, "True", "PullAuthHealthy Unknown must not block Ready");

        let unauthorized = pull_auth_condition(Some(PullAuthResult::Unauthorized), "401");
        assert_eq!(ready_condition(&issued, &synced, &unauthorized).reason, "Unauthorized");

        let minting = Cond::new("Unknown", "Pending", "not yet");
        assert_eq!(ready_condition(&minting, &synced, &pull).status, "Unknown");
    }

    #[test]
    fn ready_does_not_claim_pulls_authenticate_when_nothing_was_checked() {
        let issued = Cond::new("True", "Issued", "ok");
        let synced = synced_condition(3, 3, &[], 0);
        let disabled = pull_auth_condition(Some(PullAuthResult::Disabled), "");
        let ready = ready_condition(&issued, &synced, &disabled);
        assert_eq!(ready.status, "True");
        assert!(ready.message.contains("not checked"), "{}", ready.message);
        assert!(!ready.message.contains("authenticate"), "{}", ready.message);
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = time("2026-11-22T00:00:00Z");
        let t1 = time("2026-11-22T01:00:00Z");
        let c = Cond::new("True", "Issued", "ok");
        let first = conditions(
            &[],
            Some(1),
            &t0,
            [("Issued", &c), ("Synced", &c), ("PullAuthHealthy", &c), ("Ready", &c)],
        );
        let changed_msg = Cond::new("True", "Issued", "renewed");
        let flipped = Cond::new("False", "MintFailed", "boom");
        let second = conditions(
            &first,
            Some(2),
            &t1,
            [
                ("Issued", &changed_msg),
                ("Synced", &flipped),
                ("PullAuthHealthy", &c),
                ("Ready", &c),
            ],
        );
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].observed_generation, Some(2));
        assert_eq!(second[1].last_transition_time, t1);
    }

    #[test]
    fn timestamp_only_changes_are_not_written() {
        let t0 = time("2026-11-22T00:00:00Z");
        let c = Cond::new("True", "Synced", "ok");
        let mut old = RegistryCredentialStatus {
            conditions: conditions(
                &[],
                Some(1),
                &t0,
                [("Issued", &c), ("Synced", &c), ("PullAuthHealthy", &c), ("Ready", &c)],
            ),
            ..Default::default()
        };
        let mut new = old.clone();
        new.conditions[0].last_transition_time = time("2026-11-22T05:00:00Z");
        assert!(!needs_write(Some(&old), &new));
        new.namespaces.synced = 4;
        assert!(needs_write(Some(&old), &new));
        old.namespaces.synced = 4;
        assert!(!needs_write(Some(&old), &new));
        assert!(needs_write(None, &new));
    }

    #[test]
    fn failed_namespaces_are_bounded_and_sorted() {
        let many: Vec<_> = (0..30).rev().map(|i| failed(&format!("ns-{i:02}"))).collect();
        let listed = bounded_failures(many);
        assert_eq!(listed.len(), 20);
        assert_eq!(listed[0].namespace, "ns-00");
        let c = synced_condition(30, 0, &listed, 0);
        assert!(c.message.contains("and 19 more"), "{}", c.message);
    }

    fn sa_failure(ns: &str, reason_: &str) -> crate::api::FailedServiceAccount {
        crate::api::FailedServiceAccount {
            namespace: ns.into(),
            name: "default".into(),
            reason: reason_.into(),
            message: format!("{reason_} in {ns}"),
            identity: None,
            retry_time: None,
        }
    }

    /// Per ServiceAccount: a missing annotation fails Synced but not
    /// Issued; a refused identity fails both; the summary counts
    /// ServiceAccounts, and the shared pull-auth check is not claimed.
    #[test]
    fn per_service_account_status_names_what_each_service_account_lacks() {
        let rc = super::super::fixtures::rc();
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let mut out = crate::reconcile::workload::Outcome {
            targeted: 3,
            synced: 1,
            counts: crate::api::IdentityCounts {
                selected: 3,
                valid: 1,
                without_identity: 1,
                failed: 0,
            },
            failed: vec![sa_failure("b", reason::IDENTITY_MISSING)],
            ..Default::default()
        };
        let s = compose_identities(&rc, ProviderKind::Ecr, &Default::default(), &out, now);
        let cond = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(s.summary.as_deref(), Some("1/3 SA"));
        assert_eq!(cond("Issued").status, "True");
        assert_eq!(
            (cond("Synced").status.as_str(), cond("Synced").reason.as_str()),
            ("False", "IdentityMissing")
        );
        assert_eq!(cond("PullAuthHealthy").reason, "NotChecked");
        assert_eq!(cond("Ready").status, "False");

        out.counts.failed = 1;
        out.failed.push(sa_failure("c", reason::IDENTITY_REFUSED));
        let s2 = compose_identities(&rc, ProviderKind::Ecr, &s, &out, now);
        let issued = s2.conditions.iter().find(|c| c.type_ == "Issued").unwrap();
        assert_eq!(
            (issued.status.as_str(), issued.reason.as_str()),
            ("False", "IdentityRefused")
        );
        assert!(issued.message.contains("c/default"), "{}", issued.message);
        assert_eq!(s2.failed_service_accounts.len(), 2);
        let events = identity_transitions(&s, &s2);
        assert_eq!(
            events.len(),
            1,
            "one Warning for the newly refused ServiceAccount, none for the missing annotation"
        );
        assert!(
            identity_transitions(&s2, &s2).is_empty(),
            "no repeat while it stays refused"
        );
    }
}
