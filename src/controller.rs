//! Wiring: watches, caches and the controller loop.
//!
//! Watches are narrow: RegistryCredentials, Namespaces, ServiceAccounts,
//! Secrets carrying regcred's managed-by label, and Secrets of the
//! credentials namespace. Never a cluster-wide watch of all Secrets.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::api::RegistryCredential;
use crate::cache::{Cache, Kept, KeptNamespace, KeptSecret, KeptServiceAccount};
use crate::diagnosis;
use crate::reconcile::scope::{Change, Touched};
use crate::reconcile::{self, Caches, Context, build};
use crate::telemetry::Health;

pub struct ControllerConfig {
    pub credentials_namespace: String,
    pub concurrency: u16,
    pub http: reqwest::Client,
    pub health: Arc<Health>,
    /// Follow the kubelet's image-pull failures, diagnose and repair them.
    pub diagnose_pulls: bool,
    /// Namespaces never written into (`--excluded-namespaces`): left out of
    /// the namespace and managed-Secret watches, so nothing targets them.
    pub excluded_namespaces: Vec<String>,
}

/// A field selector leaving out `excluded` by `field` (`metadata.name` of a
/// Namespace, `metadata.namespace` of a namespaced object).
fn excluding(wc: watcher::Config, field: &str, excluded: &[String]) -> watcher::Config {
    if excluded.is_empty() {
        return wc;
    }
    let selector: Vec<String> = excluded.iter().map(|ns| format!("{field}!={ns}")).collect();
    wc.fields(&selector.join(","))
}

/// A store of `api`'s objects filtered by `wc` (the few source Secrets,
/// kept whole: their content is the credential), and the stream of changes
/// that feeds it. The stream must be polled for the store to stay current;
/// it never ends and never fails (errors are logged and waited out, see
/// [`recover`]).
fn cached<K>(
    api: Api<K>,
    wc: watcher::Config,
    recovery: &Recovery,
) -> (Store<K>, impl Stream<Item = Change> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let events = reflector::reflector(
        writer,
        watcher(api, wc.any_semantic()).modify(|o: &mut K| {
            o.meta_mut().managed_fields = None;
        }),
    );
    (store, changes(recover(events, kind, recovery.clone())))
}

/// As [`cached`], keeping only a compact record of each object ([`cache`]).
fn kept<T>(
    api: Api<T::Object>,
    wc: watcher::Config,
    recovery: &Recovery,
) -> (Cache<T>, impl Stream<Item = Change> + Send + 'static)
where
    T: Kept,
    T::Object: Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let cache = Cache::new();
    let feed = cache.clone();
    let kind = T::Object::kind(&()).to_string();
    let mut relist = None;
    let events = watcher(api, wc.any_semantic()).map_ok(move |event| {
        feed.apply(&event, &mut relist);
        event
    });
    (cache, changes(recover(events, kind, recovery.clone())))
}

/// The namespaces that watch `events` show changing.
fn changes<K: Resource>(events: impl Stream<Item = watcher::Event<K>>) -> impl Stream<Item = Change> {
    events.filter_map(|event| {
        // A change, or the end of a (re-)list: the store has just been
        // updated. A re-list (after `410 Gone`, a restart of the API server)
        // reveals what was deleted meanwhile only by what it no longer
        // lists, so its end must trigger reconciles, while its single
        // objects need not (the store swaps them in at the end).
        futures::future::ready(match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => Some(changed(&o)),
            watcher::Event::InitDone => Some(Change::All),
            watcher::Event::Init | watcher::Event::InitApply(_) => None,
        })
    })
}

/// The namespace an object is in, or is (a Namespace).
fn changed<K: Resource>(o: &K) -> Change {
    let meta = o.meta();
    match meta.namespace.clone().or_else(|| meta.name.clone()) {
        Some(ns) => Change::Namespace(ns),
        None => Change::All,
    }
}

/// Shared by the watches of one controller: when one of them gets through
/// again after errors (the API server is back), the others stop waiting
/// out their backoff and retry at once.
#[derive(Clone)]
struct Recovery(Arc<tokio::sync::watch::Sender<u64>>);

impl Recovery {
    fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }

    fn announce(&self) {
        self.0.send_modify(|epoch| *epoch = epoch.wrapping_add(1));
    }
}

/// Watch errors are waited out here rather than with kube's default
/// backoff (0.8 s doubling to 30 s, reset only by a success), which after
/// a 30 s outage of the API server left every watch asleep for up to 30 s
/// more after its return:
/// - `410 Gone` (`too old resource version`: the history was compacted or
///   the API server restarted) is a healthy server asking for a re-list,
///   which starts at once (a second one in a row backs off);
/// - `429 Too Many Requests` waits at least the server's `Retry-After`;
/// - anything else waits 250 ms doubling to 4 s, jittered, or until
///   another watch of this controller gets through again.
fn recover<K: Send + 'static>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    kind: String,
    recovery: Recovery,
) -> impl Stream<Item = watcher::Event<K>> + Send + 'static {
    struct State<S> {
        events: std::pin::Pin<Box<S>>,
        failures: u32,
        last_gone: bool,
        recovered: tokio::sync::watch::Receiver<u64>,
    }
    let recovered = recovery.0.subscribe();
    let state = State {
        events: Box::pin(events),
        failures: 0,
        last_gone: false,
        recovered,
    };
    futures::stream::unfold(state, move |mut state| {
        let kind = kind.clone();
        let recovery = recovery.clone();
        async move {
            loop {
                let error = match state.events.next().await? {
                    Ok(event) => {
                        if state.failures > 0 {
                            info!(kind = %kind, failures = state.failures, "watch recovered");
                            state.failures = 0;
                            state.last_gone = false;
                            recovery.announce();
                        }
                        return Some((event, state));
                    }
                    Err(error) => error,
                };
                state.failures = state.failures.saturating_add(1);
                let wait = watch_retry_delay(&error, state.failures, state.last_gone);
                state.last_gone = is_gone(&error);
                if matches!(wait, WatchRetry::Now) {
                    info!(kind = %kind, error = %error, "watch expired; re-listing");
                    continue;
                }
                warn!(kind = %kind, error = %error, retry_in_ms = wait.delay().as_millis() as u64, "watch error; retrying");
                state.recovered.borrow_and_update();
                match wait {
                    WatchRetry::After(delay) => {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = state.recovered.changed() => {}
                        }
                    }
                    // The server said when; being woken early would only earn another 429.
                    WatchRetry::NotBefore(delay) => tokio::time::sleep(delay).await,
                    WatchRetry::Now => {}
                }
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum WatchRetry {
    Now,
    /// Back off, or less if another watch recovers.
    After(Duration),
    /// The server's `Retry-After`.
    NotBefore(Duration),
}

impl WatchRetry {
    fn delay(self) -> Duration {
        match self {
            WatchRetry::Now => Duration::ZERO,
            WatchRetry::After(d) | WatchRetry::NotBefore(d) => d,
        }
    }
}

/// The API's answer inside a watch error, if it carries one.
fn api_status(error: &watcher::Error) -> Option<&kube::core::Status> {
    match error {
        watcher::Error::WatchError(status) => Some(status.as_ref()),
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.as_ref()),
        _ => None,
    }
}

fn is_gone(error: &watcher::Error) -> bool {
    api_status(error).is_some_and(|s| s.code == 410)
}

/// When to retry after the `failures`-th watch error in a row;
/// `after_gone`: the previous one was a `410 Gone` too.
fn watch_retry_delay(error: &watcher::Error, failures: u32, after_gone: bool) -> WatchRetry {
    let backoff = jittered(
        WATCH_BACKOFF_MIN
            .saturating_mul(1 << failures.saturating_sub(1).min(8))
            .min(WATCH_BACKOFF_MAX),
    );
    match api_status(error) {
        Some(s) if s.code == 410 && !after_gone => WatchRetry::Now,
        Some(s) if s.code == 429 => {
            let retry_after = s.details.as_ref().map_or(0, |d| d.retry_after_seconds);
            WatchRetry::NotBefore(backoff.max(Duration::from_secs(retry_after.into())))
        }
        _ => WatchRetry::After(backoff),
    }
}

const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(250);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Between half and all of `d`, so that watches failing together do not
/// retry together.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    d / 2 + d.mul_f64((random % 1024) as f64 / 2048.0)
}

/// The backoff kube's Controller applies to its triggers after an error of
/// its own RegistryCredential watch. While it sleeps no trigger at all is
/// taken, the caches' changes included, so it is kept short: 100 ms
/// doubling to 1 s, reset by the next event.
#[derive(Default)]
struct TriggerBackoff {
    failures: u32,
}

impl Iterator for TriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = Duration::from_millis(100).saturating_mul(1 << self.failures.min(4));
        self.failures = self.failures.saturating_add(1);
        Some(jittered(d.min(Duration::from_secs(1))))
    }
}

impl kube::runtime::utils::Backoff for TriggerBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Poll `changes` on a task of its own, so that the caches stay current
/// whatever the Controller does with its triggers (it stops taking them
/// while it backs off), and hand on whether anything changed: one pending
/// trigger stands for any number, since every reconcile reads the caches
/// as they are when it runs. At most one trigger per [`TRIGGER_INTERVAL`]:
/// a lone change is acted on at once, a stream of them every interval.
///
/// This replaces the Controller's debounce, which postpones a reconcile
/// until changes pause for the debounce period: under a steady stream of
/// changes faster than that (another controller editing ServiceAccounts
/// every few milliseconds) no reconcile ran for minutes.
fn spawn_triggers(
    tasks: &mut tokio::task::JoinSet<()>,
    changes: impl Stream<Item = ()> + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    tasks.spawn(changes.for_each(move |()| {
        let _ = tx.try_send(());
        futures::future::ready(())
    }));
    let start = tokio::time::Instant::now();
    futures::stream::unfold((rx, start), |(mut rx, last)| async move {
        tokio::time::sleep_until(last + TRIGGER_INTERVAL).await;
        rx.recv().await?;
        Some(((), (rx, tokio::time::Instant::now())))
    })
}

const TRIGGER_INTERVAL: Duration = Duration::from_millis(50);

/// The watches and caches of one replica, started whether or not it leads:
/// admission answers from the caches on every replica; the controller runs
/// on the leader only ([`run`]). The watches run on tasks of their own, which
/// end when this is dropped.
pub struct Watches {
    pub ctx: Arc<Context>,
    changes: std::pin::Pin<Box<dyn Stream<Item = ()> + Send>>,
    tasks: tokio::task::JoinSet<()>,
    recovery: Recovery,
}

/// Start the watches and fill the caches; the returned [`Context`] is warm
/// once [`Context::warm_up`] returns.
pub fn start(client: Client, config: &ControllerConfig) -> Watches {
    let recovery = Recovery::new();
    let excluded = &config.excluded_namespaces;
    let (namespaces, ns_changes) = kept::<KeptNamespace>(
        Api::all(client.clone()),
        excluding(watcher::Config::default(), "metadata.name", excluded),
        &recovery,
    );
    let (service_accounts, sa_changes) =
        kept::<KeptServiceAccount>(Api::all(client.clone()), watcher::Config::default(), &recovery);
    let (managed_secrets, managed_changes) = kept::<KeptSecret>(
        Api::all(client.clone()),
        excluding(
            watcher::Config::default().labels(build::MANAGED_SELECTOR),
            "metadata.namespace",
            excluded,
        ),
        &recovery,
    );
    let (source_secrets, source_changes) = cached(
        Api::<Secret>::namespaced(client.clone(), &config.credentials_namespace),
        watcher::Config::default(),
        &recovery,
    );
    let (credentials, credential_changes) = cached(
        Api::<RegistryCredential>::all(client.clone()),
        watcher::Config::default(),
        &recovery,
    );
    // Any change of these may concern any RegistryCredential (a namespace that
    // starts or stops matching, a new ServiceAccount, a Secret edited by someone
    // else, a source Secret rotated); there are few RegistryCredentials, so all
    // are reconciled, each in the namespaces that changed (`reconcile::scope`).
    // A source Secret may concern any namespace. The RegistryCredential store
    // is for admission (the controller keeps its own); its changes only need
    // to keep it current.
    let touched = Arc::new(Touched::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(credential_changes.for_each(|_| futures::future::ready(())));
    let changes = spawn_triggers(
        &mut tasks,
        futures::stream::select_all([
            ns_changes.boxed(),
            sa_changes.boxed(),
            managed_changes.boxed(),
            source_changes.map(|_| Change::All).boxed(),
        ])
        .map({
            let touched = touched.clone();
            move |change| touched.touch(change)
        }),
    );

    let reporter = Reporter {
        controller: "regcred".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.credentials_namespace.clone(),
        Caches {
            namespaces,
            service_accounts,
            managed_secrets,
            source_secrets,
            credentials,
            touched,
        },
        reconcile::events::Publisher::new(client, reporter),
        config.http.clone(),
        config.health.metrics.clone(),
    ));
    Watches {
        ctx,
        changes: changes.boxed(),
        tasks,
        recovery,
    }
}

/// Run the controller over `watches` until `shutdown` resolves.
pub async fn run(
    watches: Watches,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Watches {
        ctx,
        changes,
        mut tasks,
        recovery,
    } = watches;
    let resyncs = ctx.resyncs().expect("the controller takes the resync stream once");
    if config.diagnose_pulls {
        // The kubelet's Events, on the controller's task set and under the
        // same recovery rules as its other watches.
        let events = watcher(Api::<Event>::all(ctx.client.clone()), diagnosis::watch::config());
        let events = recover(events, "Event".into(), recovery);
        tasks.spawn(diagnosis::watch::run(ctx.clone(), events));
    }
    info!(credentials_namespace = %config.credentials_namespace, "controller starting");
    let controller = Controller::new(
        Api::<RegistryCredential>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let shutdown = shutdown.shared();
    let unstarted = stopped_before_first_list(controller.store(), shutdown.clone());
    controller
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .trigger_backoff(TriggerBackoff::default())
        .reconcile_all_on(changes)
        .reconcile_all_on(resyncs)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .take_until(unstarted)
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "controller"),
                }
            }
        })
        .await;
    tasks.abort_all();
    info!("controller stopped");
}

/// Resolves when `shutdown` comes before the controller's own store has
/// listed the RegistryCredentials once; never otherwise.
///
/// kube holds the controller's reconciles until that first list, and its
/// graceful shutdown stops the watch that would complete it: a stop in that
/// window (SIGTERM a moment after winning the Lease) would wait forever for
/// the graceful end, and the Lease would stay held. Nothing has run then,
/// so the controller can end at once. The store is asked only after the
/// stop, and once: a pending ask takes the one waker kube's store keeps
/// (see [`Context::warm_up`]), which matters no longer once stopping.
async fn stopped_before_first_list(store: Store<RegistryCredential>, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    if store.wait_until_ready().now_or_never().is_some() {
        std::future::pending::<()>().await;
    }
    info!("stopping before the first list of RegistryCredentials: no reconcile has begun");
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusDetails};

    fn status(code: u16, retry_after_seconds: u32) -> Box<Status> {
        Box::new(Status {
            code,
            details: Some(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds,
            }),
            ..Default::default()
        })
    }

    #[test]
    fn an_expired_watch_relists_at_once_but_not_twice_in_a_row() {
        let gone = watcher::Error::WatchError(status(410, 0));
        assert_eq!(watch_retry_delay(&gone, 1, false), WatchRetry::Now);
        assert_eq!(
            watch_retry_delay(&gone, 7, false),
            WatchRetry::Now,
            "after an outage's connection errors too"
        );
        let again = watch_retry_delay(&gone, 2, true);
        assert!(matches!(again, WatchRetry::After(d) if d > Duration::ZERO), "{again:?}");
    }

    #[test]
    fn a_throttled_watch_waits_at_least_the_servers_retry_after() {
        let throttled = watcher::Error::InitialListFailed(kube::Error::Api(status(429, 3)));
        let wait = watch_retry_delay(&throttled, 1, false);
        assert!(
            matches!(wait, WatchRetry::NotBefore(d) if d >= Duration::from_secs(3)),
            "{wait:?}"
        );
    }

    #[test]
    fn other_watch_errors_back_off_from_a_quarter_second_to_four_seconds() {
        let refused = watcher::Error::WatchStartFailed(kube::Error::Api(status(503, 0)));
        let first = watch_retry_delay(&refused, 1, false).delay();
        assert!(
            (WATCH_BACKOFF_MIN / 2..=WATCH_BACKOFF_MIN).contains(&first),
            "{first:?}"
        );
        for failures in [6, 30, u32::MAX] {
            let d = watch_retry_delay(&refused, failures, false).delay();
            assert!(
                (WATCH_BACKOFF_MAX / 2..=WATCH_BACKOFF_MAX).contains(&d),
                "{failures}: {d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_changes_still_triggers_every_interval() {
        let mut tasks = tokio::task::JoinSet::new();
        // A change every 5 ms, for ever: a debounce of 50 ms would never fire.
        let changes = futures::stream::repeat(()).then(|()| tokio::time::sleep(Duration::from_millis(5)));
        let start = tokio::time::Instant::now();
        let at: Vec<Duration> = spawn_triggers(&mut tasks, changes)
            .take(5)
            .map(|()| start.elapsed())
            .collect()
            .await;
        assert!(at[4] <= TRIGGER_INTERVAL * 6, "{at:?}");
        assert!(at.windows(2).all(|w| w[1] - w[0] >= TRIGGER_INTERVAL), "{at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_triggers_once() {
        let mut tasks = tokio::task::JoinSet::new();
        let changes = futures::stream::iter([()]).chain(futures::stream::pending());
        let mut triggers = Box::pin(spawn_triggers(&mut tasks, changes));
        assert!(triggers.next().await.is_some());
        let again = tokio::time::timeout(Duration::from_secs(10), triggers.next()).await;
        assert!(again.is_err(), "one change, one trigger");
    }

    #[test]
    fn the_controllers_trigger_backoff_stays_under_a_second_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut backoff = TriggerBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(40).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)), "{delays:?}");
        assert!(delays[39] >= Duration::from_millis(500), "{delays:?}");
        backoff.reset();
        assert!(backoff.next().unwrap() <= Duration::from_millis(100));
    }
}
