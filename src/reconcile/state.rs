//! What regcred keeps in memory about each RegistryCredential between
//! reconciles, in one place and by uid, so that a deleted one is forgotten
//! whole ([`Memory::forget`]). Each step keeps its own type for what it
//! stores and the rules over it; only the storage is here.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

use super::credential::{self, Slot};
use super::fanout::{self, Foreign};
use super::pull_auth;
use super::scope::Pass;

/// Everything kept about one RegistryCredential.
#[derive(Default)]
pub struct CredentialState {
    /// The credential held, the last failed attempt, a requested mint.
    pub slot: Slot,
    /// When its pull-auth check last ran.
    pub last_check: Option<Timestamp>,
    /// Namespaces where a Secret of its name belongs to someone else.
    pub foreign: Foreign,
    /// What its last fan-out found, to build on next time.
    pub pass: Option<Pass>,
    /// Consecutive failed reconciles, for the error backoff.
    pub failures: u32,
    /// Consecutive reconciles in which the API server refused a Secret or
    /// ServiceAccount write, for the write retry.
    pub refused_writes: u32,
    /// `PerServiceAccount` mode: the failed exchanges of its ServiceAccounts.
    pub identities: std::sync::Arc<Mutex<super::workload::Held>>,
}

/// The [`CredentialState`] of every RegistryCredential, by uid.
#[derive(Default)]
pub struct Memory {
    per: Mutex<HashMap<String, CredentialState>>,
}

impl Memory {
    /// `f` over the state of `uid`, an empty one if nothing is kept yet.
    pub fn with<T>(&self, uid: &str, f: impl FnOnce(&mut CredentialState) -> T) -> T {
        f(self.lock().entry(uid.to_string()).or_default())
    }

    /// `f` over the state of `uid` if anything is kept: a read (admission
    /// on a standby) or a reset (after the deletion's last reconcile) keeps
    /// nothing for a RegistryCredential that has none.
    pub fn existing<T>(&self, uid: &str, f: impl FnOnce(&mut CredentialState) -> T) -> Option<T> {
        self.lock().get_mut(uid).map(f)
    }

    /// Forget all that is kept about `uid` (deleted).
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// The oldest mark any RegistryCredential's last pass still builds on.
    pub fn oldest_mark(&self) -> Option<u64> {
        self.lock()
            .values()
            .filter_map(|s| s.pass.as_ref())
            .map(|p| p.mark)
            .min()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CredentialState>> {
        self.per.lock().expect("memory lock")
    }
}

impl credential::Slots for Memory {
    fn slot<T>(&self, uid: &str, f: impl FnOnce(&mut Slot) -> T) -> T {
        self.with(uid, |s| f(&mut s.slot))
    }
}

impl pull_auth::LastChecks for Memory {
    fn last_check<T>(&self, uid: &str, f: impl FnOnce(&mut Option<Timestamp>) -> T) -> T {
        self.with(uid, |s| f(&mut s.last_check))
    }
}

impl fanout::Foreigns for Memory {
    fn foreign<T>(&self, uid: &str, f: impl FnOnce(&mut Foreign) -> T) -> T {
        self.with(uid, |s| f(&mut s.foreign))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{current, t};
    use super::*;
    use crate::api::FailedNamespace;

    #[test]
    fn a_forgotten_credential_keeps_nothing_and_no_other_loses_anything() {
        let memory = Memory::default();
        let at = t("2026-11-30T10:00:00Z");
        let pass = |mark| Pass {
            mark,
            every_at: at,
            generation: Some(1),
            digest: None,
            outcomes: [("a".to_string(), Default::default())].into(),
        };
        for uid in ["gone", "kept"] {
            memory.with(uid, |s| {
                s.slot.current = Some(current("pw", at));
                s.slot.failed_fingerprint = Some(credential::Fingerprint::parse("inputs"));
                s.slot.request_mint();
                s.last_check = Some(at);
                s.pass = Some(pass(if uid == "gone" { 1 } else { 2 }));
                s.failures = 3;
                s.refused_writes = 4;
                let failure = FailedNamespace {
                    namespace: "a".into(),
                    reason: "SecretExists".into(),
                    message: "someone else's".into(),
                };
                s.foreign.put((1, "a".into()), at, failure);
            });
        }
        assert_eq!(memory.oldest_mark(), Some(1));

        memory.forget("gone");

        assert!(memory.existing("gone", |_| ()).is_none());
        let fresh = memory.with("gone", |s| {
            (
                s.slot.current.is_none() && s.slot.failed_fingerprint.is_none() && !s.slot.mint_requested,
                s.last_check,
                s.foreign.get(&(1, "a".into()), at),
                s.pass.is_none(),
                (s.failures, s.refused_writes),
            )
        });
        assert_eq!(
            fresh,
            (true, None, None, true, (0, 0)),
            "a new one of the uid starts afresh"
        );
        memory.forget("gone");
        let kept = memory.existing("kept", |s| {
            (
                s.slot.current.is_some() && s.slot.mint_requested,
                s.last_check,
                s.foreign.get(&(1, "a".into()), at).is_some(),
                (s.failures, s.refused_writes),
            )
        });
        assert_eq!(kept, Some((true, Some(at), true, (3, 4))));
        assert_eq!(
            memory.oldest_mark(),
            Some(2),
            "the forgotten pass no longer holds changes back"
        );
    }
}
