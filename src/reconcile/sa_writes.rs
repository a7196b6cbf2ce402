//! ServiceAccount writes, one at a time per ServiceAccount, with the entries
//! several RegistryCredentials want at about the same time folded into one
//! write.
//!
//! Every RegistryCredential that selects a namespace wants an entry on the
//! same `default` ServiceAccount. Written separately, N credentials reacting
//! to one new namespace make N read-modify-writes racing for one
//! resourceVersion: most lose with `409 Conflict` and pay a read and another
//! write (6,869 conflicts in a burst of 500 namespaces under 20
//! RegistryCredentials). Here the first entry for a ServiceAccount starts a
//! writer task; entries that arrive while it writes wait for it and go
//! together in its next write, which starts from the object its previous
//! write returned instead of the (older) cache.
//!
//! Entries that come one after another (each RegistryCredential reaches a
//! namespace at its own moment) cannot share a write, but the cache learns
//! of each write only when its watch echo arrives: a write from the cache's
//! older copy would lose with 409 and cost a read. So for a while after its
//! writes regcred keeps what they made of each ServiceAccount, and starts
//! from that while the cache still shows a version those writes replaced.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::channel::oneshot;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Client, ResourceExt};

use super::apply::{self, SaEntry};
use crate::cache::{Kept, KeptServiceAccount};

type Key = (String, String);
type Done = oneshot::Sender<Result<u32, apply::Error>>;

/// The writers in flight, by (namespace, name). A ServiceAccount is here
/// only while a writer runs for it.
#[derive(Default)]
pub struct SaWrites {
    queues: Mutex<HashMap<Key, Queue>>,
    recent: Mutex<Recent>,
    /// Writers started, to tell a writer's queue from its successor's.
    started: std::sync::atomic::AtomicU64,
}

/// How long regcred's own last write of a ServiceAccount stands in for the
/// cache's copy: longer than a watch echo takes on a busy API server, short
/// enough that a fan-out to 10,000 namespaces keeps few copies.
const RECENT: Duration = Duration::from_secs(5);
/// Versions remembered as replaced, per ServiceAccount: more than the
/// writes the cache can fall behind by while 20 RegistryCredentials write.
const SUPERSEDED_KEPT: usize = 32;

/// What regcred's own writes made of each ServiceAccount in the last [`RECENT`].
#[derive(Default)]
struct Recent {
    by_key: HashMap<Key, Written>,
    order: VecDeque<(Instant, Key)>,
}

struct Written {
    at: Instant,
    /// What the cache would keep of the object written.
    object: KeptServiceAccount,
    /// resourceVersions these writes replaced: a cached copy at one of them is behind.
    superseded: Vec<String>,
}

impl Recent {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < RECENT {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.by_key.get(&key).is_some_and(|w| w.at <= at)
            {
                self.by_key.remove(&key);
            }
        }
    }

    /// The copy to start from: what regcred wrote, while the cache still
    /// shows a version that write replaced; otherwise the cache's.
    fn base(&mut self, key: &Key, cached: &ServiceAccount) -> ServiceAccount {
        let rv = cached.resource_version();
        match self.by_key.get(key) {
            Some(w) if rv.as_ref().is_some_and(|rv| w.superseded.contains(rv)) => w.object.object(),
            // The cache caught up, or someone else wrote since: the cache's copy it is.
            Some(_) => {
                self.by_key.remove(key);
                cached.clone()
            }
            None => cached.clone(),
        }
    }

    fn record(&mut self, key: &Key, object: &ServiceAccount, replaced: String, now: Instant) {
        let mut superseded = self.by_key.remove(key).map(|w| w.superseded).unwrap_or_default();
        superseded.push(replaced);
        let extra = superseded.len().saturating_sub(SUPERSEDED_KEPT);
        superseded.drain(..extra);
        self.order.push_back((now, key.clone()));
        self.by_key.insert(
            key.clone(),
            Written {
                at: now,
                object: KeptServiceAccount::keep(object),
                superseded,
            },
        );
    }
}

struct Queue {
    /// The writer that drains it.
    writer: u64,
    waiting: Vec<(SaEntry, Done)>,
}

impl SaWrites {
    /// Bring `cached` in line with `entry`, together with whatever else is
    /// waiting for the same ServiceAccount. Returns the writes counted for
    /// this entry.
    pub async fn write(
        self: &Arc<Self>,
        client: &Client,
        cached: &ServiceAccount,
        entry: SaEntry,
    ) -> Result<u32, apply::Error> {
        let key = (cached.namespace().unwrap_or_default(), cached.name_any());
        let stopped = apply::Error::PatchServiceAccount {
            namespace: key.0.clone(),
            name: key.1.clone(),
            secret: entry.secret.clone(),
            verb: "updating",
            cause: "its writer stopped; will retry".into(),
        };
        let (done, result) = oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().expect("sa writes lock");
            match queues.get_mut(&key) {
                Some(queue) => {
                    queue.waiting.push((entry, done));
                    None
                }
                None => {
                    let writer = self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let waiting = vec![(entry, done)];
                    queues.insert(key.clone(), Queue { writer, waiting });
                    Some(writer)
                }
            }
        };
        if let Some(writer) = start {
            tokio::spawn(self.clone().drain(client.clone(), key, writer, cached.clone()));
        }
        result.await.unwrap_or(Err(stopped))
    }

    /// Write what is waiting for `key`, batch after batch, until nothing is.
    async fn drain(self: Arc<Self>, client: Client, key: Key, writer: u64, cached: ServiceAccount) {
        // However the task ends, its queue goes with it: entries still
        // waiting get an error instead of waiting forever.
        let _gone = Gone {
            writes: &self,
            key: &key,
            writer,
        };
        let mut base = {
            let mut recent = self.recent.lock().expect("sa writes lock");
            recent.expire(Instant::now());
            recent.base(&key, &cached)
        };
        loop {
            let batch = {
                let mut queues = self.queues.lock().expect("sa writes lock");
                match queues.get_mut(&key) {
                    // Gone in the same breath as found empty: an entry that
                    // comes after starts a writer of its own.
                    Some(queue) if queue.writer == writer && queue.waiting.is_empty() => {
                        queues.remove(&key);
                        return;
                    }
                    Some(queue) if queue.writer == writer => std::mem::take(&mut queue.waiting),
                    _ => return,
                }
            };
            let (entries, dones): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let (results, latest) = apply::write_service_account(&client, base.clone(), &entries).await;
            for (done, result) in dones.into_iter().zip(results) {
                let _ = done.send(result);
            }
            // Unknown after a failure: the next batch starts from the last
            // object known, and a conflict costs it one read.
            if let Some((written, replaced)) = latest {
                let mut recent = self.recent.lock().expect("sa writes lock");
                recent.record(&key, &written, replaced, Instant::now());
                base = written;
            }
        }
    }
}

/// Removes a writer's queue (not a successor's) when the writer ends.
struct Gone<'a> {
    writes: &'a SaWrites,
    key: &'a Key,
    writer: u64,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        if let Ok(mut queues) = self.writes.queues.lock()
            && queues.get(self.key).is_some_and(|q| q.writer == self.writer)
        {
            queues.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{Expect, Scenario, Served, status};
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    const PATH: &str = "/api/v1/namespaces/a/serviceaccounts/default";

    fn sa(rv: &str, refs: &[&str]) -> ServiceAccount {
        let mut sa = regcred_testenv::objects::service_account("default", &[]);
        sa.metadata.namespace = Some("a".into());
        sa.metadata.resource_version = Some(rv.into());
        sa.image_pull_secrets = Some(
            refs.iter()
                .map(|n| LocalObjectReference { name: n.to_string() })
                .collect(),
        );
        sa
    }

    fn entry(i: usize) -> SaEntry {
        SaEntry {
            secret: format!("pull-{i}"),
            rc_name: format!("rc-{i}"),
            selected: true,
        }
    }

    /// One ServiceAccount as the API server holds it: merge patches with its
    /// current resourceVersion win, others get 409.
    #[derive(Clone)]
    struct Stored(Arc<Mutex<ServiceAccount>>);

    impl Stored {
        fn new(sa: ServiceAccount) -> Self {
            Self(Arc::new(Mutex::new(sa)))
        }

        fn now(&self) -> ServiceAccount {
            self.0.lock().unwrap().clone()
        }

        fn get(&self) -> Expect {
            let stored = self.clone();
            Expect::get(PATH).reply_with(move |_| (200, serde_json::to_value(stored.now()).unwrap()))
        }

        fn patch(&self) -> Expect {
            let stored = self.clone();
            Expect::patch(PATH).reply_with(move |patch| {
                let mut sa = stored.0.lock().unwrap();
                if patch["metadata"]["resourceVersion"].as_str() != sa.resource_version().as_deref() {
                    return (409, status(409, "Conflict", "the object has been modified"));
                }
                let rv: u64 = sa.resource_version().unwrap().parse().unwrap();
                let mut doc = serde_json::to_value(&*sa).unwrap();
                json_patch::merge(&mut doc, patch);
                *sa = serde_json::from_value(doc).unwrap();
                sa.metadata.resource_version = Some((rv + 1).to_string());
                (200, serde_json::to_value(&*sa).unwrap())
            })
        }
    }

    fn methods(served: &[Served]) -> Vec<String> {
        served.iter().map(|s| s.method.clone()).collect()
    }

    fn names(sa: &ServiceAccount) -> Vec<String> {
        sa.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect()
    }

    #[tokio::test]
    async fn entries_that_arrive_together_go_in_one_write() {
        let stored = Stored::new(sa("1", &["theirs"]));
        let (client, server) = Scenario::new().then(stored.patch()).serve();
        let writes = Arc::new(SaWrites::default());
        let cached = sa("1", &["theirs"]);
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let (writes, client, cached) = (writes.clone(), client.clone(), cached.clone());
                tokio::spawn(async move { writes.write(&client, &cached, entry(i)).await })
            })
            .collect();
        let mut counted = 0;
        for t in tasks {
            counted += t.await.unwrap().expect("written");
        }
        assert_eq!(counted, 1, "one write, counted once");
        assert!(writes.queues.lock().unwrap().is_empty(), "the writer is gone once done");
        let log = methods(&server.done().await);
        let stored = stored.now();
        assert_eq!(log, ["PATCH"], "five credentials, one request");
        assert_eq!(
            names(&stored),
            ["theirs", "pull-0", "pull-1", "pull-2", "pull-3", "pull-4"]
        );
        for i in 0..5 {
            assert!(super::super::build::recorded_by(
                &stored,
                &format!("pull-{i}"),
                &format!("rc-{i}")
            ));
        }
    }

    #[tokio::test]
    async fn a_conflict_is_read_again_and_keeps_what_others_wrote() {
        // The cache is behind: someone added `new` since.
        let stored = Stored::new(sa("7", &["theirs", "new"]));
        let (client, server) = Scenario::new()
            .then(stored.patch())
            .then(stored.get())
            .then(stored.patch())
            .serve();
        let writes = Arc::new(SaWrites::default());
        let counted = writes
            .write(&client, &sa("6", &["theirs"]), entry(0))
            .await
            .expect("written");
        let log = methods(&server.done().await);
        assert_eq!(counted, 1);
        assert_eq!(log, ["PATCH", "GET", "PATCH"]);
        assert_eq!(names(&stored.now()), ["theirs", "new", "pull-0"]);
    }

    #[tokio::test]
    async fn one_after_another_from_a_stale_cache_costs_no_conflict() {
        let stored = Stored::new(sa("1", &["theirs"]));
        let (client, server) = Scenario::new()
            .then(stored.patch())
            .then(stored.patch())
            .then(stored.patch())
            .serve();
        let writes = Arc::new(SaWrites::default());
        // The cache keeps showing version 1: the watch echoes have not arrived.
        let stale = sa("1", &["theirs"]);
        for i in 0..3 {
            assert_eq!(writes.write(&client, &stale, entry(i)).await.expect("written"), 1);
        }
        let log = methods(&server.done().await);
        assert_eq!(log, ["PATCH", "PATCH", "PATCH"], "no 409, no read");
        assert_eq!(names(&stored.now()), ["theirs", "pull-0", "pull-1", "pull-2"]);
    }

    #[tokio::test]
    async fn a_write_from_what_the_cache_kept_leaves_the_rest_of_the_object_alone() {
        let mut full = sa("1", &["theirs"]);
        full.annotations_mut().insert("theirs/note".into(), "kept".into());
        full.automount_service_account_token = Some(false);
        full.secrets = Some(vec![Default::default()]);
        let stored = Stored::new(full.clone());
        let (client, server) = Scenario::new().then(stored.patch()).serve();
        let writes = Arc::new(SaWrites::default());
        let kept = KeptServiceAccount::keep(&full).object();
        assert_eq!(writes.write(&client, &kept, entry(0)).await.expect("written"), 1);
        server.done().await;
        let stored = stored.now();
        assert_eq!(names(&stored), ["theirs", "pull-0"]);
        assert_eq!(
            stored.annotations().get("theirs/note").map(String::as_str),
            Some("kept")
        );
        assert_eq!(stored.automount_service_account_token, Some(false));
        assert_eq!(stored.secrets, full.secrets);
    }

    #[tokio::test]
    async fn nothing_to_change_costs_no_request() {
        let (client, server) = Scenario::new().serve();
        let writes = Arc::new(SaWrites::default());
        let mut linked = sa("1", &["pull-0"]);
        linked.annotations_mut().insert(
            super::super::build::PULL_SECRETS_ANNOTATION.into(),
            "pull-0=rc-0".into(),
        );
        assert_eq!(writes.write(&client, &linked, entry(0)).await.unwrap(), 0);
        assert!(server.done().await.is_empty());
    }
}
