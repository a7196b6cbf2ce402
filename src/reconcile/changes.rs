//! What regcred changed in each namespace, and when: the Secrets it
//! created where none was, and the credentials it rewrote. A diagnosis that
//! runs after regcred has already repaired a failed pull (its re-sync after
//! a restart, a retried write, a renewal) finds here what the pull lacked
//! and when regcred put it right, instead of a registry that now serves the
//! image and no cause.
//!
//! Kept in memory by the process that made the change, which is the one that
//! diagnoses: a restarted operator records its restart re-sync as it writes,
//! before its diagnoses of the pulls that failed while it was away can ask.
//! Only changes of the last [`KEEP`] are kept (the diagnosis looks at pulls
//! of the last 10 minutes), at most [`PER_NAMESPACE`] per namespace, so a
//! renewal at 10,000 namespaces costs one small entry each, for a while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::managed::{CACHED_DATA_DIGEST, NOT_AFTER_ANNOTATION, cached_digest};
use crate::renewal;

/// How long a change is kept.
pub const KEEP: Duration = Duration::from_secs(15 * 60);
/// At most this many changes are kept per namespace, the newest.
pub const PER_NAMESPACE: usize = 8;
/// Namespaces recorded before the first pruning of old changes.
const PRUNE_FROM: usize = 1024;

/// One Secret regcred wrote because its credential was not there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: Timestamp,
    /// The RegistryCredential the Secret is for.
    pub credential: String,
    pub secret: String,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The namespace held no Secret of regcred's under that name.
    Created,
    /// The Secret held another credential (its data differed).
    Rewritten {
        /// The replaced credential's `regcred.dev/not-after`, if it had one.
        previous_not_after: Option<Timestamp>,
        /// Whether the new credential is another issue (its not-after
        /// differs: a renewal); else the copy had been altered or left behind.
        renewed: bool,
    },
}

/// What stood in the namespace before a write: its cache form's data digest
/// and not-after (`None`: no Secret of regcred's was there).
#[derive(Clone, Debug, Default)]
pub struct Before(Option<(Option<String>, Option<Timestamp>)>);

impl Before {
    /// `cached` is the managed Secret as the cache holds it (data as a digest).
    pub fn of(cached: Option<&Secret>) -> Self {
        Self(cached.map(|s| (s.annotations().get(CACHED_DATA_DIGEST).cloned(), not_after(s))))
    }
}

/// The changes of every namespace.
#[derive(Default)]
pub struct Changes {
    per: Mutex<HashMap<String, Vec<Change>>>,
    /// Namespaces past which the next write prunes every namespace's old
    /// changes (0: [`PRUNE_FROM`]); twice what is left after a pruning, so
    /// that a fan-out over 10,000 namespaces prunes a handful of times, not
    /// at every write.
    prune_above: AtomicUsize,
    /// When old changes were last pruned: at least every [`KEEP`] too.
    pruned_at: Mutex<Option<Timestamp>>,
    /// Secret writes under way, per namespace: a diagnosis that reads the
    /// Secret a moment after the API server took a write must not look
    /// here before the writer has recorded it ([`Changes::settled`]).
    writing: Mutex<HashMap<String, usize>>,
    written: tokio::sync::Notify,
}

/// A Secret write under way in a namespace, from before the request until
/// it is recorded (dropped).
pub struct Writing<'a> {
    changes: &'a Changes,
    namespace: String,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut writing = self.changes.writing.lock().expect("writing lock");
        if let Some(n) = writing.get_mut(&self.namespace) {
            *n -= 1;
            if *n == 0 {
                writing.remove(&self.namespace);
            }
        }
        self.changes.written.notify_waiters();
    }
}

impl Changes {
    /// Record that `desired` was written where `before` stood, if that
    /// changed the credential the namespace holds (not merely a label).
    pub fn secret_written(&self, credential: &str, before: Before, desired: &Secret, at: Timestamp) {
        let kind = match before.0 {
            None => ChangeKind::Created,
            Some((digest, _)) if digest.is_some() && digest == cached_digest(desired) => return,
            Some((_, previous_not_after)) => ChangeKind::Rewritten {
                previous_not_after,
                renewed: previous_not_after != not_after(desired),
            },
        };
        let change = Change {
            at,
            credential: credential.to_string(),
            secret: desired.name_any(),
            kind,
        };
        self.put(&desired.namespace().unwrap_or_default(), change);
    }

    /// Mark a Secret write in `namespace` under way until the guard drops.
    pub fn writing(&self, namespace: &str) -> Writing<'_> {
        *self
            .writing
            .lock()
            .expect("writing lock")
            .entry(namespace.to_string())
            .or_default() += 1;
        Writing {
            changes: self,
            namespace: namespace.to_string(),
        }
    }

    /// Wait, for at most `at_most`, until no Secret write in `namespace` is
    /// under way, so that [`Changes::since`] holds every write the API
    /// server has taken there.
    pub async fn settled(&self, namespace: &str, at_most: Duration) {
        let deadline = tokio::time::Instant::now() + at_most;
        loop {
            let notified = self.written.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.writing.lock().expect("writing lock").contains_key(namespace) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    fn put(&self, namespace: &str, change: Change) {
        let mut per = self.per.lock().expect("changes lock");
        let at = change.at;
        let fresh = |c: &Change| at < renewal::add(c.at, KEEP);
        let prune_above = self.prune_above.load(Ordering::Relaxed).max(PRUNE_FROM);
        let mut pruned_at = self.pruned_at.lock().expect("pruned_at lock");
        let due = pruned_at.is_none_or(|p| at >= renewal::add(p, KEEP));
        if per.len() > prune_above || (per.len() > PRUNE_FROM && due) {
            *pruned_at = Some(at);
            per.retain(|_, list| {
                list.retain(fresh);
                !list.is_empty()
            });
            self.prune_above.store(2 * per.len(), Ordering::Relaxed);
        }
        let list = per.entry(namespace.to_string()).or_default();
        list.retain(fresh);
        list.push(change);
        if list.len() > PER_NAMESPACE {
            list.remove(0);
        }
    }

    /// The changes to `credential`'s Secret in `namespace` at or after
    /// `since`, oldest first.
    pub fn since(&self, namespace: &str, credential: &str, since: Timestamp) -> Vec<Change> {
        let per = self.per.lock().expect("changes lock");
        per.get(namespace)
            .into_iter()
            .flatten()
            .filter(|c| c.credential == credential && c.at >= since)
            .cloned()
            .collect()
    }

    /// How many namespaces have changes kept (for tests of the bound).
    pub fn namespaces(&self) -> usize {
        self.per.lock().expect("changes lock").len()
    }
}

fn not_after(secret: &Secret) -> Option<Timestamp> {
    secret.annotations().get(NOT_AFTER_ANNOTATION)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::cache_form;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(ns: &str, password: &str, not_after: Option<&str>) -> Secret {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "hub", "namespace": ns, "annotations": {}},
            "type": "kubernetes.io/dockerconfigjson",
        }))
        .unwrap();
        s.data = Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(password.as_bytes().to_vec()),
            )]
            .into(),
        );
        if let Some(t) = not_after {
            s.annotations_mut().insert(NOT_AFTER_ANNOTATION.into(), t.into());
        }
        s
    }

    fn cached(s: &Secret) -> Secret {
        let mut c = s.clone();
        cache_form(&mut c);
        c
    }

    /// Old changes go once many namespaces are recorded, but a fan-out over
    /// thousands of namespaces does not scan them all at every write.
    #[test]
    fn old_changes_are_pruned_now_and_then_not_at_every_write() {
        let changes = Changes::default();
        let old = Timestamp::from_second(1_800_000_000).unwrap();
        changes.secret_written("hub", Before::of(None), &secret("gone", "p", None), old);
        let now = renewal::add(old, KEEP + Duration::from_secs(1));
        for n in 0..3 * PRUNE_FROM {
            changes.secret_written("hub", Before::of(None), &secret(&format!("ns-{n}"), "p", None), now);
        }
        assert!(
            changes.since("gone", "hub", old).is_empty(),
            "pruned once past {PRUNE_FROM}"
        );
        assert_eq!(changes.since("ns-0", "hub", old).len(), 1);
        let prune_above = changes.prune_above.load(Ordering::Relaxed);
        assert!(prune_above >= 2 * PRUNE_FROM, "the next pruning waits: {prune_above}");
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_created_secret_a_restored_copy_and_a_renewal_are_told_apart() {
        let changes = Changes::default();
        let at = t("2026-12-06T10:00:00Z");
        let current = secret("a", "new", Some("2026-12-06T11:00:00Z"));
        changes.secret_written("hub", Before::of(None), &current, at);
        let edited = cached(&secret("a", "old", Some("2026-12-06T11:00:00Z")));
        changes.secret_written("hub", Before::of(Some(&edited)), &current, at);
        let expired = cached(&secret("a", "old", Some("2026-12-06T09:00:00Z")));
        changes.secret_written("hub", Before::of(Some(&expired)), &current, at);
        let kinds: Vec<ChangeKind> = changes.since("a", "hub", at).into_iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ChangeKind::Created,
                ChangeKind::Rewritten {
                    previous_not_after: Some(t("2026-12-06T11:00:00Z")),
                    renewed: false
                },
                ChangeKind::Rewritten {
                    previous_not_after: Some(t("2026-12-06T09:00:00Z")),
                    renewed: true
                },
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_diagnosis_waits_for_a_write_under_way_to_be_recorded() {
        let changes = std::sync::Arc::new(Changes::default());
        changes.settled("a", Duration::from_secs(5)).await;
        let writing = changes.writing("a");
        let other = changes.writing("b");
        let waiter = {
            let changes = changes.clone();
            tokio::spawn(async move {
                changes.settled("a", Duration::from_secs(5)).await;
                changes.since("a", "hub", t("2026-12-06T10:00:00Z")).len()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "a write in the namespace is under way");
        changes.secret_written(
            "hub",
            Before::default(),
            &secret("a", "x", None),
            t("2026-12-06T10:00:01Z"),
        );
        drop(writing);
        assert_eq!(
            waiter.await.unwrap(),
            1,
            "the write recorded before the diagnosis looks"
        );
        let started = tokio::time::Instant::now();
        changes.settled("b", Duration::from_secs(2)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "bounded when a write never ends"
        );
        drop(other);
    }

    #[test]
    fn a_write_that_keeps_the_credential_is_no_change() {
        let changes = Changes::default();
        let current = secret("a", "same", None);
        changes.secret_written(
            "hub",
            Before::of(Some(&cached(&current))),
            &current,
            t("2026-12-06T10:00:00Z"),
        );
        assert_eq!(changes.namespaces(), 0);
    }

    #[test]
    fn only_recent_changes_of_the_credential_since_the_time_asked_are_kept() {
        let changes = Changes::default();
        let t0 = t("2026-12-06T10:00:00Z");
        let later = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        changes.secret_written("hub", Before::default(), &secret("a", "x", None), t0);
        changes.secret_written("other", Before::default(), &secret("a", "x", None), later(10));
        assert_eq!(changes.since("a", "hub", t0).len(), 1);
        assert!(changes.since("a", "hub", later(1)).is_empty(), "before the time asked");
        assert!(changes.since("b", "hub", t0).is_empty(), "another namespace");
        for i in 0..20 {
            changes.secret_written("hub", Before::default(), &secret("a", "x", None), later(20 + i));
        }
        assert_eq!(changes.since("a", "hub", t0).len(), PER_NAMESPACE);
        // A write after KEEP drops what is older, here and, once many namespaces are kept, everywhere.
        for i in 0..1100 {
            let ns = format!("n{i}");
            changes.secret_written("hub", Before::default(), &secret(&ns, "x", None), t0);
        }
        changes.secret_written("hub", Before::default(), &secret("a", "x", None), later(3600));
        assert_eq!(changes.since("a", "hub", t0).len(), 1);
        changes.secret_written("hub", Before::default(), &secret("z", "x", None), later(3600));
        assert!(changes.namespaces() < 10, "{} namespaces kept", changes.namespaces());
    }
}
