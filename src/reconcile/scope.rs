//! Which namespaces a reconcile looks at. A change to one namespace (the
//! namespace itself, a ServiceAccount or a managed Secret in it) costs work
//! in that namespace, not in every namespace times every RegistryCredential:
//! the watches record *which* namespaces changed ([`Touched`]), and a
//! RegistryCredential whose own inputs did not change since its last pass
//! looks only at those, keeping what it found in the others ([`Pass`]).
//!
//! Everything else — a first pass, a changed spec or credential, a re-list
//! of a watch, a changed source Secret, and a reconcile with no namespace
//! changed at all (a requeue, a retry, the RegistryCredential's own event)
//! — looks at every namespace, as before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use super::fanout::NsOutcome;
use crate::renewal;

/// What a watch saw change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Something in (or of) this namespace.
    Namespace(String),
    /// Anything: a re-list, a source Secret.
    All,
}

/// The namespaces changed since a mark, as the watches report them.
#[derive(Default)]
pub struct Touched(Mutex<TouchedState>);

#[derive(Default)]
struct TouchedState {
    seq: u64,
    /// The last [`Change::All`].
    all: u64,
    /// The last change of each namespace.
    namespaces: HashMap<String, u64>,
}

/// The namespaces changed since a mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    All,
    Namespaces(BTreeSet<String>),
}

impl Touched {
    pub fn touch(&self, change: Change) {
        let mut s = self.0.lock().expect("touched lock");
        s.seq += 1;
        let seq = s.seq;
        match change {
            Change::All => s.all = seq,
            Change::Namespace(ns) => {
                s.namespaces.insert(ns, seq);
            }
        }
    }

    /// The mark to pass to [`Touched::since`] next time; taken before the
    /// caches are read, so a change made during the pass is seen next time.
    pub fn mark(&self) -> u64 {
        self.0.lock().expect("touched lock").seq
    }

    pub fn since(&self, mark: u64) -> Since {
        let s = self.0.lock().expect("touched lock");
        if s.all > mark {
            return Since::All;
        }
        Since::Namespaces(
            s.namespaces
                .iter()
                .filter(|(_, seq)| **seq > mark)
                .map(|(ns, _)| ns.clone())
                .collect(),
        )
    }

    /// Forget changes every RegistryCredential has seen (those at or
    /// before `mark`, the oldest mark still in use).
    pub fn prune(&self, mark: u64) {
        self.0
            .lock()
            .expect("touched lock")
            .namespaces
            .retain(|_, seq| *seq > mark);
    }
}

/// Every namespace is looked at again at least this often, whatever the
/// watches said (the requeue every 30 minutes brings it).
pub const EVERY_AT_LEAST: Duration = Duration::from_secs(25 * 60);

/// What one RegistryCredential's last pass found, to build on next time.
#[derive(Clone, Debug)]
pub struct Pass {
    pub mark: u64,
    /// When a pass last looked at every namespace.
    pub every_at: Timestamp,
    pub generation: Option<i64>,
    /// Digest of the credential it wrote (`None`: none held).
    pub digest: Option<String>,
    /// The outcome in every targeted namespace.
    pub outcomes: BTreeMap<String, NsOutcome>,
}

impl Pass {
    /// This pass, its outcomes moved out rather than copied (a copy would
    /// cost every namespace on each reconcile); its mark stays behind, so
    /// the oldest mark in use still counts it until the next pass is kept.
    pub fn take(&mut self) -> Pass {
        Pass {
            outcomes: std::mem::take(&mut self.outcomes),
            ..self.clone()
        }
    }
}

/// Where this pass looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Every,
    Only(BTreeSet<String>),
}

/// The scope of a pass, pure: when the RegistryCredential's spec and
/// credential are what they were at its last pass, and every namespace was
/// looked at within [`EVERY_AT_LEAST`], only the namespaces changed since
/// (none, for a requeue or its own status echo) and those that failed;
/// every namespace otherwise.
pub fn scope(
    last: Option<&Pass>,
    since: Since,
    generation: Option<i64>,
    digest: Option<&str>,
    now: Timestamp,
) -> Scope {
    let Some(last) = last else { return Scope::Every };
    if last.generation != generation
        || last.digest.as_deref() != digest
        || now >= renewal::add(last.every_at, EVERY_AT_LEAST)
    {
        return Scope::Every;
    }
    match since {
        Since::All => Scope::Every,
        // The namespaces that failed last time are tried again too (a
        // retry after refused writes changes nothing the watches see).
        Since::Namespaces(mut changed) => {
            changed.extend(
                last.outcomes
                    .iter()
                    .filter(|(_, o)| o.failure.is_some() || o.sa_failed > 0)
                    .map(|(ns, _)| ns.clone()),
            );
            Scope::Only(changed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changes_are_seen_once_per_mark() {
        let t = Touched::default();
        let m0 = t.mark();
        t.touch(Change::Namespace("a".into()));
        t.touch(Change::Namespace("b".into()));
        assert_eq!(t.since(m0), Since::Namespaces(set(&["a", "b"])));
        let m1 = t.mark();
        assert_eq!(t.since(m1), Since::Namespaces(set(&[])));
        t.touch(Change::Namespace("a".into()));
        assert_eq!(t.since(m1), Since::Namespaces(set(&["a"])));
        assert_eq!(
            t.since(m0),
            Since::Namespaces(set(&["a", "b"])),
            "an older mark sees both"
        );
        t.touch(Change::All);
        assert_eq!(t.since(m1), Since::All);
        let m2 = t.mark();
        assert_eq!(t.since(m2), Since::Namespaces(set(&[])));
        t.prune(m1);
        assert_eq!(t.since(m0), Since::All, "pruned, but the re-list is remembered");
    }

    #[test]
    fn only_changed_namespaces_when_nothing_else_changed() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let failed = NsOutcome {
            failure: Some(crate::api::FailedNamespace {
                namespace: "denied".into(),
                reason: "NamespaceWriteFailed".into(),
                message: "denied".into(),
            }),
            ..Default::default()
        };
        let synced = NsOutcome {
            synced: true,
            ..Default::default()
        };
        let last = Pass {
            mark: 7,
            every_at: at("2026-11-30T10:00:00Z"),
            generation: Some(2),
            digest: Some("sha256:x".into()),
            outcomes: [("denied".to_string(), failed), ("fine".to_string(), synced)].into(),
        };
        let now = at("2026-11-30T10:05:00Z");
        let changed = || Since::Namespaces(set(&["team-a"]));
        let x = Some("sha256:x");
        let cases = [
            ("first pass", None, changed(), Some(2), x, now, Scope::Every),
            (
                "one namespace changed: it, and the one that failed",
                Some(&last),
                changed(),
                Some(2),
                x,
                now,
                Scope::Only(set(&["denied", "team-a"])),
            ),
            (
                "nothing changed (a requeue, its own status): only the failed one",
                Some(&last),
                Since::Namespaces(set(&[])),
                Some(2),
                x,
                now,
                Scope::Only(set(&["denied"])),
            ),
            (
                "the spec changed",
                Some(&last),
                changed(),
                Some(3),
                x,
                now,
                Scope::Every,
            ),
            (
                "a new credential",
                Some(&last),
                changed(),
                Some(2),
                Some("sha256:y"),
                now,
                Scope::Every,
            ),
            (
                "a credential held at last",
                Some(&last),
                changed(),
                Some(2),
                None,
                now,
                Scope::Every,
            ),
            ("a re-list", Some(&last), Since::All, Some(2), x, now, Scope::Every),
            (
                "every namespace not looked at for 25 minutes",
                Some(&last),
                changed(),
                Some(2),
                x,
                at("2026-11-30T10:25:00Z"),
                Scope::Every,
            ),
        ];
        for (name, last, since, generation, digest, now, want) in cases {
            assert_eq!(scope(last, since, generation, digest, now), want, "{name}");
        }
    }
}
