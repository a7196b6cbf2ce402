//! What the operator does about a diagnosis, pure: which repair applies
//! (the contract's table), how often, and the words of its Events.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::{Cause, Detail, Diagnosis};
use crate::api::ProviderKind;

/// At most one `ImagePullDiagnosed` Event per pod, image and cause in this window.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// At most one mint asked for by repairs per RegistryCredential in this window.
pub const MINT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// At most one re-sync per RegistryCredential and namespace in this window.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// A repair of regcred's own making.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repair {
    /// Reconcile the RegistryCredential now: the namespace's Secret and
    /// ServiceAccounts are rewritten where they differ.
    Resync,
    /// Mint a new credential now, then re-sync.
    Mint,
    /// Delete the pod so that its controller recreates it with the link.
    RecreatePod,
}

impl Repair {
    /// The `action` label of `regcred_image_pull_repairs_total`.
    pub fn action(self) -> &'static str {
        match self {
            Repair::Resync => "resync",
            Repair::Mint => "mint",
            Repair::RecreatePod => "recreate-pod",
        }
    }
}

/// Kinds of controller whose pods come back when deleted.
const RECREATING_CONTROLLERS: [&str; 4] = ["ReplicaSet", "StatefulSet", "DaemonSet", "Job"];

/// The pod's controller, if it is one that recreates deleted pods.
pub fn recreating_controller(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && RECREATING_CONTROLLERS.contains(&o.kind.as_str()))
        .map(|o| format!("{} {}", o.kind, o.name))
}

/// The repair the contract prescribes for `d`, if any: `provider` is the
/// covering credential's, `recreate` its `spec.target.recreatePodsMissingLink`.
pub fn repair_for(d: &Diagnosis, provider: Option<ProviderKind>, recreate: bool, pod: &Pod) -> Option<Repair> {
    d.credential.as_ref()?;
    match (d.cause, d.detail) {
        (Cause::CredentialMissing, Some(Detail::SecretMissing | Detail::ServiceAccountNotLinked))
        | (Cause::CredentialRejected, Some(Detail::StaleCopy)) => Some(Repair::Resync),
        (Cause::CredentialExpired, _) => Some(Repair::Mint),
        (Cause::CredentialRejected, Some(Detail::Refused)) if provider.is_some_and(|p| p != ProviderKind::Static) => {
            Some(Repair::Mint)
        }
        (Cause::CredentialMissing, Some(Detail::PodAdmittedBeforeLink))
            if recreate && recreating_controller(pod).is_some() =>
        {
            Some(Repair::RecreatePod)
        }
        _ => None,
    }
}

/// The `ImagePullDiagnosed` Event's message: `<cause>[/<detail>]: <what was
/// found>. Fix: <what to do>.`
pub fn event_message(d: &Diagnosis) -> String {
    format!("{}: {}. Fix: {}.", d.label(), sentence(&d.message), sentence(&d.fix))
}

fn sentence(s: &str) -> &str {
    s.trim().trim_end_matches('.')
}

/// Lets one thing per key happen per interval; forgets keys older than
/// the longest interval so memory follows the failures, not history.
pub struct Limiter<K> {
    last: HashMap<K, Instant>,
}

impl<K> Default for Limiter<K> {
    fn default() -> Self {
        Self { last: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// Whether `key` may act now; if so, the time is recorded.
    pub fn allow(&mut self, key: &K, interval: Duration, now: Instant) -> bool {
        if self.last.len() > 1024 {
            self.last
                .retain(|_, t| now.saturating_duration_since(*t) < EVENT_INTERVAL.max(interval));
        }
        match self.last.get(key) {
            Some(t) if now.saturating_duration_since(*t) < interval => false,
            _ => {
                self.last.insert(key.clone(), now);
                true
            }
        }
    }

    /// Forget `key`, so that it may act again at once (an attempt that did not happen).
    pub fn forget(&mut self, key: &K) {
        self.last.remove(key);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Paces the diagnoses of one thing (a pod): the first at once, then
/// after `first`, doubling up to `max` while it keeps failing, so that pods
/// that fail for hours cost little and a new failure is diagnosed at once.
pub struct Pacer<K> {
    first: Duration,
    max: Duration,
    next: HashMap<K, (Instant, Duration)>,
}

impl<K: Hash + Eq + Clone> Pacer<K> {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: HashMap::new(),
        }
    }

    /// Whether `key` may be diagnosed now; if so, when it may be next.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if self.next.len() > 1024 {
            let max = self.max;
            self.next.retain(|_, (at, _)| now.saturating_duration_since(*at) < max);
        }
        let interval = match self.next.get(key) {
            Some((at, _)) if now < *at => return false,
            // Quiet for a long while: a new failure, not the same one going on.
            Some((at, _)) if now.saturating_duration_since(*at) >= self.max => self.first,
            Some((_, interval)) => (*interval * 2).min(self.max),
            None => self.first,
        };
        self.next.insert(key.clone(), (now + interval, interval));
        true
    }

    /// Forget `key` (it was not failing after all): the next Event looks again.
    pub fn forget(&mut self, key: &K) {
        self.next.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diagnosis(cause: Cause, detail: Option<Detail>, credential: Option<&str>) -> Diagnosis {
        Diagnosis {
            namespace: "team".into(),
            pod: "app".into(),
            container: "app".into(),
            image: "r.example/app:1".into(),
            cause,
            detail,
            message: "Found it.".into(),
            fix: "Do this.".into(),
            evidence: Vec::new(),
            credential: credential.map(Into::into),
        }
    }

    fn pod(owner: Option<(&str, bool)>) -> Pod {
        let owners: Vec<_> = owner
            .map(|(kind, controller)| {
                json!({"apiVersion": "apps/v1", "kind": kind, "name": "app-1", "uid": "u", "controller": controller})
            })
            .into_iter()
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "app", "ownerReferences": owners}})).unwrap()
    }

    #[test]
    fn the_contracts_table() {
        use Cause::*;
        use Detail::*;
        let rs = pod(Some(("ReplicaSet", true)));
        // (diagnosis, covering provider, recreatePodsMissingLink, pod, repair)
        type Case<'a> = (Diagnosis, Option<ProviderKind>, bool, &'a Pod, Option<Repair>);
        let cases: Vec<Case> = vec![
            (
                diagnosis(CredentialMissing, Some(SecretMissing), Some("c")),
                None,
                false,
                &rs,
                Some(Repair::Resync),
            ),
            (
                diagnosis(CredentialMissing, Some(ServiceAccountNotLinked), Some("c")),
                None,
                false,
                &rs,
                Some(Repair::Resync),
            ),
            (
                diagnosis(CredentialRejected, Some(StaleCopy), Some("c")),
                None,
                false,
                &rs,
                Some(Repair::Resync),
            ),
            (
                diagnosis(CredentialExpired, None, Some("c")),
                Some(ProviderKind::Ecr),
                false,
                &rs,
                Some(Repair::Mint),
            ),
            (
                diagnosis(CredentialRejected, Some(Refused), Some("c")),
                Some(ProviderKind::Gcr),
                false,
                &rs,
                Some(Repair::Mint),
            ),
            // A static credential refused: a new mint reads the same password.
            (
                diagnosis(CredentialRejected, Some(Refused), Some("c")),
                Some(ProviderKind::Static),
                false,
                &rs,
                None,
            ),
            (
                diagnosis(CredentialMissing, Some(PodAdmittedBeforeLink), Some("c")),
                None,
                true,
                &rs,
                Some(Repair::RecreatePod),
            ),
            // Off by default.
            (
                diagnosis(CredentialMissing, Some(PodAdmittedBeforeLink), Some("c")),
                None,
                false,
                &rs,
                None,
            ),
            // Nothing covers the host: nothing of regcred's to repair.
            (
                diagnosis(CredentialMissing, Some(NotCovered), None),
                None,
                true,
                &rs,
                None,
            ),
            (diagnosis(ImageNotFound, Some(Tag), Some("c")), None, true, &rs, None),
            (
                diagnosis(RateLimited, Some(Anonymous), Some("c")),
                None,
                true,
                &rs,
                None,
            ),
            (
                diagnosis(RegistryUnreachable, Some(Dns), Some("c")),
                None,
                true,
                &rs,
                None,
            ),
            (diagnosis(Unknown, None, Some("c")), None, true, &rs, None),
        ];
        for (d, provider, recreate, pod, want) in cases {
            assert_eq!(repair_for(&d, provider, recreate, pod), want, "{}", d.label());
        }
    }

    #[test]
    fn only_pods_of_a_recreating_controller_are_deleted() {
        let d = diagnosis(Cause::CredentialMissing, Some(Detail::PodAdmittedBeforeLink), Some("c"));
        for (owner, want) in [
            (None, None),
            (Some(("ReplicaSet", false)), None),
            (Some(("ConfigMap", true)), None),
            (Some(("StatefulSet", true)), Some(Repair::RecreatePod)),
            (Some(("DaemonSet", true)), Some(Repair::RecreatePod)),
            (Some(("Job", true)), Some(Repair::RecreatePod)),
        ] {
            assert_eq!(repair_for(&d, None, true, &pod(owner)), want, "{owner:?}");
        }
    }

    #[test]
    fn the_event_reads_cause_found_fix() {
        let d = diagnosis(Cause::CredentialMissing, Some(Detail::SecretMissing), Some("c"));
        assert_eq!(
            event_message(&d),
            "CredentialMissing/SecretMissing: Found it. Fix: Do this."
        );
        let d = diagnosis(Cause::CredentialExpired, None, Some("c"));
        assert!(event_message(&d).starts_with("CredentialExpired: "));
    }

    #[test]
    fn the_limiter_allows_one_per_interval_and_forgets() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(600);
        let key = |k: &str| k.to_string();
        assert!(l.allow(&key("a"), every, t0));
        assert!(!l.allow(&key("a"), every, t0 + Duration::from_secs(599)));
        assert!(
            l.allow(&key("b"), every, t0 + Duration::from_secs(1)),
            "keys are independent"
        );
        assert!(l.allow(&key("a"), every, t0 + Duration::from_secs(600)));
        l.forget(&key("a"));
        assert!(l.allow(&key("a"), every, t0 + Duration::from_secs(601)));
        // Keys older than the longest interval are dropped once many are held.
        for i in 0..2000 {
            l.allow(&format!("k{i}"), every, t0);
        }
        l.allow(&key("late"), every, t0 + Duration::from_secs(3600));
        assert!(l.len() < 10, "{} keys kept", l.len());
    }

    #[test]
    fn a_pod_failing_for_long_is_diagnosed_less_and_less_often() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer::new(s(30), s(600));
        let key = "team/app".to_string();
        let mut diagnosed = Vec::new();
        for second in (0..3600).step_by(5) {
            if p.allow(&key, t0 + s(second)) {
                diagnosed.push(second);
            }
        }
        assert_eq!(&diagnosed[..6], &[0, 30, 90, 210, 450, 930], "{diagnosed:?}");
        assert!(diagnosed.windows(2).all(|w| w[1] - w[0] <= 600), "{diagnosed:?}");
        assert!(p.allow(&"other".to_string(), t0 + s(1)), "another pod at once");
        // Quiet for the longest interval: a new failure is diagnosed at once, then after 30 s.
        let later = t0 + s(3600 + 1200);
        assert!(p.allow(&key, later));
        assert!(!p.allow(&key, later + s(29)));
        assert!(p.allow(&key, later + s(30)));
        p.forget(&key);
        assert!(p.allow(&key, later + s(31)));
    }
}
