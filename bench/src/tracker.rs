//! Watches what the operator writes and says when a goal is reached.
//!
//! One watch of the managed (and floor) Secrets and one of the `default`
//! ServiceAccounts feed a map of (namespace → password per Secret name) and
//! (namespace → pull-secret names). A goal is "these Secret names hold this
//! password in these namespaces and each `default` ServiceAccount lists
//! them"; the set of namespaces still pending shrinks as events arrive, so
//! the harness does O(1) work per event rather than rescanning 10,000
//! namespaces, and the moment the last one arrives is recorded by the
//! watch task itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

/// regcred's Secrets and the raw floor's: the API server streams both to the
/// harness, so the floor and the operator are measured under the same watch load.
pub const WATCH_SELECTOR: &str = "app.kubernetes.io/managed-by in (regcred,bench-floor)";

#[derive(Default)]
struct State {
    secrets: HashMap<String, HashMap<String, String>>,
    sa: HashMap<String, Vec<String>>,
    secrets_synced: bool,
    sa_synced: bool,
    /// Watch events after the first full list: writes that changed something.
    secret_events: u64,
    sa_events: u64,
    goal: Option<Goal>,
}

struct Goal {
    names: Vec<String>,
    password: String,
    pending: HashSet<String>,
    done_at: Option<Instant>,
}

impl State {
    fn namespace_done(&self, goal: &Goal, ns: &str) -> bool {
        let secrets = self.secrets.get(ns);
        let sa = self.sa.get(ns);
        goal.names
            .iter()
            .all(|n| secrets.and_then(|s| s.get(n)) == Some(&goal.password) && sa.is_some_and(|l| l.contains(n)))
    }

    fn touched(&mut self, ns: &str) {
        let Some(mut goal) = self.goal.take() else { return };
        if goal.pending.contains(ns) && self.namespace_done(&goal, ns) {
            goal.pending.remove(ns);
            if goal.pending.is_empty() && goal.done_at.is_none() {
                goal.done_at = Some(Instant::now());
            }
        }
        self.goal = Some(goal);
    }
}

/// Counts of watch events seen since the watches were in sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct Events {
    pub secrets: u64,
    pub service_accounts: u64,
}

pub struct Tracker {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The first password of a `.dockerconfigjson` (the benchmark's Secrets hold one registry).
fn password(secret: &Secret) -> String {
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(".dockerconfigjson")) else {
        return String::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes.0).unwrap_or_default();
    v["auths"]
        .as_object()
        .and_then(|a| a.values().next())
        .and_then(|e| e["password"].as_str())
        .unwrap_or_default()
        .to_string()
}

impl Tracker {
    /// Start both watches and wait until each has listed everything.
    pub async fn start(client: Client) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let secrets = {
            let (state, changed) = (state.clone(), changed.clone());
            let api: Api<Secret> = Api::all(client.clone());
            let stream = watcher::watcher(api, watcher::Config::default().labels(WATCH_SELECTOR));
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    let mut s = state.lock().expect("tracker lock");
                    match ev {
                        Ok(Event::Apply(o) | Event::InitApply(o)) => {
                            let ns = o.namespace().unwrap_or_default();
                            s.secrets
                                .entry(ns.clone())
                                .or_default()
                                .insert(o.name_any(), password(&o));
                            if s.secrets_synced {
                                s.secret_events += 1;
                            }
                            s.touched(&ns);
                        }
                        Ok(Event::Delete(o)) => {
                            let ns = o.namespace().unwrap_or_default();
                            if let Some(m) = s.secrets.get_mut(&ns) {
                                m.remove(&o.name_any());
                            }
                            s.secret_events += 1;
                        }
                        Ok(Event::InitDone) => s.secrets_synced = true,
                        Ok(Event::Init) => {}
                        Err(e) => eprintln!("bench: Secret watch error (retrying): {e}"),
                    }
                    drop(s);
                    changed.notify_waiters();
                }
            })
        };
        let sas = {
            let (state, changed) = (state.clone(), changed.clone());
            let api: Api<ServiceAccount> = Api::all(client);
            let stream = watcher::watcher(api, watcher::Config::default().fields("metadata.name=default"));
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    let mut s = state.lock().expect("tracker lock");
                    match ev {
                        Ok(Event::Apply(o) | Event::InitApply(o)) => {
                            let ns = o.namespace().unwrap_or_default();
                            let names = o.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
                            s.sa.insert(ns.clone(), names);
                            if s.sa_synced {
                                s.sa_events += 1;
                            }
                            s.touched(&ns);
                        }
                        Ok(Event::Delete(o)) => {
                            s.sa.remove(&o.namespace().unwrap_or_default());
                            s.sa_events += 1;
                        }
                        Ok(Event::InitDone) => s.sa_synced = true,
                        Ok(Event::Init) => {}
                        Err(e) => eprintln!("bench: ServiceAccount watch error (retrying): {e}"),
                    }
                    drop(s);
                    changed.notify_waiters();
                }
            })
        };
        let tracker = Self {
            state,
            changed,
            tasks: vec![secrets, sas],
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            {
                let s = tracker.state.lock().expect("tracker lock");
                if s.secrets_synced && s.sa_synced {
                    break;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the harness's watches did not sync within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(tracker)
    }

    /// From now on, wait for `names` to hold `password` in `namespaces` with
    /// every `default` ServiceAccount listing them. Set before acting.
    pub fn set_goal(&self, names: &[String], password: &str, namespaces: &[String]) {
        let mut s = self.state.lock().expect("tracker lock");
        let mut goal = Goal {
            names: names.to_vec(),
            password: password.into(),
            pending: HashSet::new(),
            done_at: None,
        };
        goal.pending = namespaces
            .iter()
            .filter(|ns| !s.namespace_done(&goal, ns))
            .cloned()
            .collect();
        if goal.pending.is_empty() {
            goal.done_at = Some(Instant::now());
        }
        s.goal = Some(goal);
    }

    /// When the goal was reached, or how many namespaces were still pending at `timeout`.
    pub async fn wait_goal(&self, timeout: Duration) -> Result<Instant, usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let s = self.state.lock().expect("tracker lock");
                let goal = s.goal.as_ref().expect("a goal is set");
                if let Some(at) = goal.done_at {
                    return Ok(at);
                }
                if Instant::now() >= deadline {
                    return Err(goal.pending.len());
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    pub fn events(&self) -> Events {
        let s = self.state.lock().expect("tracker lock");
        Events {
            secrets: s.secret_events,
            service_accounts: s.sa_events,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
