//! The operator's side of diagnosis: follow the kubelet's image-pull
//! Events, diagnose the pod each one names, say so on the pod, count it,
//! record it in the covering RegistryCredential's status, and repair what
//! is regcred's own (`repair.rs` says which and how often).
//!
//! No cache of Pods or Events: a watch of Warning Events about Pods flows
//! through, and only a pod an image-pull Event names is read, once per
//! [`POD_INTERVAL`]. Memory follows the failing pods, not the cluster.
//!
//! The contract gives 2 s from the kubelet's Event to ours. The reads at the
//! API server answer in milliseconds, a registry that hangs only at the
//! probe's bound: a registry check that has not answered within [`QUICK`]
//! is left running, what is known is said on the pod, and the check's answer
//! is said again only if it changes the cause. Both answers pass through
//! [`history::recall`], which names a cause regcred has repaired since the
//! pull failed (from `Context::changes`) instead of a registry that now serves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event as Note, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::gather::{self, RegistryCheck};
use super::pod::PullState;
use super::repair::{self, EVENT_INTERVAL, Limiter, MINT_INTERVAL, Pacer, RESYNC_INTERVAL, Repair};
use super::{Cause, Detail, Diagnosis, Evidence, Findings, decide, history, pod};
use crate::api::{PullFailure, RegistryCredential};
use crate::managed::{self, secret_name};
use crate::reconcile::Context;
use crate::reconcile::changes::ChangeKind;
use crate::telemetry::{PullFailureLabels, RepairLabels};

/// A pod is diagnosed again at most this soon, however many Events name
/// it; the interval doubles while it keeps failing, up to [`POD_INTERVAL_MAX`].
const POD_INTERVAL: Duration = Duration::from_secs(30);
const POD_INTERVAL_MAX: Duration = Duration::from_secs(10 * 60);
/// Events older than this are history, not a failing pull.
const RECENT: Duration = Duration::from_secs(10 * 60);
/// Diagnoses reading the API server at once (each reads a few objects).
const CONCURRENT: usize = 8;
/// Registry checks (manifest HEADs) running at once; each is bounded by the probe's timeout.
const CHECKING: usize = 32;
/// How long the registry check may take before the diagnosis is said
/// without it: the contract gives 2 s from the kubelet's Event to ours.
const QUICK: Duration = Duration::from_millis(500);
/// How long a diagnosis waits for a Secret write under way in the pod's
/// namespace to be recorded before it asks what regcred changed there.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a repair is given to take effect before it is called failed.
const REPAIR_WAIT: Duration = Duration::from_secs(30);
/// The field manager of `status.pullFailures`; reconcile never writes it.
const FIELD_MANAGER: &str = "regcred-diagnosis";
/// At most this many entries in `status.pullFailures`.
pub const MAX_PULL_FAILURES: usize = 20;

/// Whether an Event is the kubelet's about an image pull (and not, say, a
/// container restart back-off, which shares the reason `BackOff`).
pub fn is_pull_event(reason: &str, message: &str) -> bool {
    match reason {
        "FailedToRetrieveImagePullSecret" | "ErrImageNeverPull" | "InspectFailed" => true,
        "Failed" => {
            message.starts_with("Failed to pull image")
                || message.contains("ErrImagePull")
                || message.contains("ImagePullBackOff")
                || message.contains("InvalidImageName")
        }
        "BackOff" => message.starts_with("Back-off pulling image"),
        _ => false,
    }
}

struct Watch {
    ctx: Arc<Context>,
    pods: Mutex<Pacer<(String, String)>>,
    announced: Mutex<Limiter<(String, String, &'static str)>>,
    repairs: Mutex<Limiter<(String, String, Repair)>>,
    /// Status entries, per pod, image and diagnosis (cause and detail).
    recorded: Mutex<Limiter<(String, String, String)>>,
    /// Serializes writes of `status.pullFailures` (read, modify, apply).
    status: tokio::sync::Mutex<()>,
    running: Semaphore,
    checking: Semaphore,
}

/// Follow `events` (the kubelet's Warning Events about pods, from a watch
/// the controller runs with its own recovery rules) until they end.
pub async fn run(ctx: Arc<Context>, events: impl Stream<Item = watcher::Event<Event>> + Send) {
    let watch = Arc::new(Watch {
        ctx: ctx.clone(),
        pods: Mutex::new(Pacer::new(POD_INTERVAL, POD_INTERVAL_MAX)),
        announced: Mutex::default(),
        repairs: Mutex::default(),
        recorded: Mutex::default(),
        status: tokio::sync::Mutex::default(),
        running: Semaphore::new(CONCURRENT),
        checking: Semaphore::new(CHECKING),
    });
    info!("following the kubelet's image-pull failures");
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            watcher::Event::Apply(event) | watcher::Event::InitApply(event) => watch.consider(event),
            watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}

/// The watch [`run`] follows: Warning Events about pods, cluster-wide
/// (nothing is cached).
pub fn config() -> watcher::Config {
    watcher::Config::default().fields("type=Warning,involvedObject.kind=Pod")
}

impl Watch {
    fn consider(self: &Arc<Self>, event: Event) {
        let (Some(reason), Some(message)) = (event.reason.as_deref(), event.message.as_deref()) else {
            return;
        };
        if !is_pull_event(reason, message) || !recent(&event) {
            return;
        }
        let object = &event.involved_object;
        let (Some(namespace), Some(name)) = (object.namespace.clone(), object.name.clone()) else {
            return;
        };
        let key = (namespace, name);
        if !self.pods.lock().expect("pods lock").allow(&key, Instant::now()) {
            return;
        }
        let this = self.clone();
        let uid = object.uid.clone();
        // The pod's Events, read with the pod, say it better; this one if they cannot be read.
        let failed_at = history::last_failure(std::slice::from_ref(&event));
        tokio::spawn(async move {
            let (namespace, name) = &key;
            let Some(pod) = this.failing_pod(namespace, name, uid.as_deref()).await else {
                // Not failing (yet or any more): let the next Event look again.
                this.pods.lock().expect("pods lock").forget(&key);
                return;
            };
            // Taken once the pod fails: waiting for its status holds none,
            // so pods that never fail cannot hold up those that do.
            let Ok(permit) = this.running.acquire().await else {
                return;
            };
            let mut read = Vec::new();
            for target in pod::pull_targets(&this.ctx.client, &pod).await {
                let failed_at = target.failed_at.or(failed_at);
                let (findings, check) = gather::read(&this.ctx.client, target, this.ctx.registry_checks()).await;
                read.push((findings, check, failed_at));
            }
            // Registry checks and repairs wait; other pods' reads need not.
            drop(permit);
            let pod = &pod;
            let this = &this;
            futures::future::join_all(read.into_iter().map(|(findings, check, failed_at)| async move {
                let judged = this.refine(pod, findings, check, failed_at).await;
                this.handle(pod, judged, failed_at).await;
            }))
            .await;
        });
    }

    /// The diagnosis once the registry check has answered. When it takes
    /// longer than [`QUICK`] (a registry that hangs answers only at the
    /// probe's bound), what the API server showed is said on the pod first;
    /// the final diagnosis is said again only if its cause differs.
    async fn refine(
        &self,
        pod: &Pod,
        findings: Findings,
        check: Option<RegistryCheck>,
        failed_at: Option<Timestamp>,
    ) -> Judged {
        let Some(check) = check else {
            return self.judge(findings, failed_at).await;
        };
        let known = findings.clone();
        let run = async {
            let _slot = self.checking.acquire().await;
            check.run(&self.ctx.http, findings).await
        };
        let mut run = std::pin::pin!(run);
        if let Ok(found) = tokio::time::timeout(QUICK, &mut run).await {
            return self.judge(found, failed_at).await;
        }
        let mut early = self.judge(known, failed_at).await;
        early.d.evidence.push(Evidence::new(
            "registry check",
            format!(
                "still running after {}ms; a later Event follows if its answer changes the cause",
                QUICK.as_millis()
            ),
        ));
        self.announce(pod, &early.d, &pod.uid().unwrap_or_default()).await;
        let found = run.await;
        self.judge(found, failed_at).await
    }

    /// [`decide`], then [`history::recall`] with regcred's record of the
    /// namespace: a cause regcred has repaired since the pull failed.
    async fn judge(&self, findings: Findings, failed_at: Option<Timestamp>) -> Judged {
        let mut d = decide(findings.clone());
        let repaired_at = match (failed_at, d.credential.clone()) {
            (Some(failed_at), Some(credential)) => {
                self.ctx.changes.settled(&d.namespace, SETTLE).await;
                let changes = self.ctx.changes.since(&d.namespace, &credential, failed_at);
                debug!(pod = %format!("{}/{}", d.namespace, d.pod), %failed_at, changes = changes.len(), diagnosis = %d.label(), evidence = ?d.evidence, "regcred's changes since the pull failed");
                history::recall(&mut d, &findings, failed_at, &changes)
            }
            _ => None,
        };
        Judged { d, repaired_at }
    }

    /// The pod once the kubelet has marked its pull failed (its Event may
    /// come a moment before the status), or `None` if it does not: at once
    /// when nothing of it waits to start ([`PullState::Settled`]).
    async fn failing_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Option<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);
        for _ in 0..25 {
            match pods.get_opt(name).await {
                Ok(Some(pod)) if uid.is_some() && pod.uid().as_deref() != uid => return None,
                Ok(Some(pod)) => match pod::pull_state(&pod) {
                    PullState::Failing => return Some(pod),
                    PullState::Settled => return None,
                    PullState::Pending => {}
                },
                Ok(None) => return None,
                Err(e) => {
                    debug!(error = %e, pod = %format!("{namespace}/{name}"), "reading a pod named by a pull failure failed");
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// What the operator does with a diagnosis, in order: count it, say it
    /// on the pod, repair what is regcred's own (or say that regcred already
    /// has), and record it in the covering RegistryCredential's status. A
    /// cause of regcred's own that this diagnosis does not repair (its
    /// interval has not passed, or the repair did not take effect) is
    /// announced repaired when another part of regcred (a re-sync, a
    /// scheduled or retried renewal) puts the credential back.
    async fn handle(&self, pod: &Pod, judged: Judged, failed_at: Option<Timestamp>) {
        let Judged { d, repaired_at } = judged;
        let uid = pod.uid().unwrap_or_default();
        self.count(&d);
        let announced = self.announce(pod, &d, &uid).await;
        let Some(rc) = self.covering(&d).await else {
            return;
        };
        let repaired_at = match (repaired_at, self.due_repair(&rc, pod, &d, &uid)) {
            (Some(at), _) => {
                self.repaired_before(pod, &d, at).await;
                Some(at)
            }
            (None, Some(repair)) => self.attempt(&rc, pod, &d, repair).await.then(Timestamp::now),
            (None, None) => None,
        };
        // Asked whatever the others answer: it remembers the diagnosis.
        let changed = self.changed(&d, &uid);
        if announced || repaired_at.is_some() || changed {
            self.record(&rc, &d, repaired_at).await;
        }
        if repaired_at.is_none()
            && own_repair(&rc, pod, &d).is_some()
            && secret_write_repairs(&d)
            && let Some(at) = self.repaired_elsewhere(&rc, pod, &d, failed_at).await
        {
            self.record(&rc, &d, Some(at)).await;
        }
    }

    /// Say on the pod that regcred had repaired the cause before this
    /// diagnosis ran (once per pod and image), and count the repair.
    async fn repaired_before(&self, pod: &Pod, d: &Diagnosis, at: Timestamp) {
        if !self.first_repair_news(pod, d) {
            return;
        }
        let action = match d.cause {
            Cause::CredentialMissing => Repair::Resync,
            _ if d.detail == Some(Detail::StaleCopy) => Repair::Resync,
            _ => Repair::Mint,
        };
        self.count_repair(d, action);
        let message = format!(
            "{} repaired at {at}, before this diagnosis, by regcred's {}: {}",
            d.label(),
            if action == Repair::Resync { "re-sync" } else { "renewal" },
            d.message
        );
        self.publish(pod, EventType::Normal, "ImagePullRepaired", "Repair", message)
            .await;
    }

    /// Whether a repair found after the fact is news for this pod and image:
    /// one such `ImagePullRepaired` in [`EVENT_INTERVAL`], however many
    /// diagnoses of the pod find it.
    fn first_repair_news(&self, pod: &Pod, d: &Diagnosis) -> bool {
        let key = (pod.uid().unwrap_or_default(), d.image.clone(), "ImagePullRepaired");
        self.announced
            .lock()
            .expect("announced lock")
            .allow(&key, EVENT_INTERVAL, Instant::now())
    }

    /// Wait, for at most [`MINT_INTERVAL`], for another part of regcred to
    /// change the namespace's Secret after the failed pull and the namespace
    /// to hold the current credential; then say so on the pod. The time of
    /// the change, if it came.
    async fn repaired_elsewhere(
        &self,
        rc: &RegistryCredential,
        pod: &Pod,
        d: &Diagnosis,
        failed_at: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let (name, secret, ns) = (rc.name_any(), secret_name(rc), &d.namespace);
        let since = failed_at.unwrap_or_else(Timestamp::now);
        let deadline = Instant::now() + MINT_INTERVAL;
        let change = loop {
            let change = self.ctx.changes.since(ns, &name, since).pop();
            if let Some(change) = change
                && self.namespace_current(&name, ns, &secret, None).await.is_some()
            {
                break change;
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let by = match change.kind {
            ChangeKind::Created => "re-sync created",
            ChangeKind::Rewritten { renewed: true, .. } => "renewal rewrote",
            ChangeKind::Rewritten { renewed: false, .. } => "re-sync rewrote",
        };
        let message = format!(
            "{}: RegistryCredential {name}'s {by} Secret {ns}/{secret} at {}; it holds the current credential, \
             the kubelet's next pull uses it",
            d.label(),
            change.at
        );
        if self.first_repair_news(pod, d) {
            self.publish(pod, EventType::Normal, "ImagePullRepaired", "Repair", message)
                .await;
        }
        Some(change.at)
    }

    /// Count the failure by its credential and cause.
    fn count(&self, d: &Diagnosis) {
        self.ctx
            .metrics
            .image_pull_failures
            .get_or_create(&PullFailureLabels {
                credential: credential_label(d),
                cause: d.cause.as_str().into(),
            })
            .inc();
    }

    /// Log the diagnosis and say it on the pod (`ImagePullDiagnosed`), once
    /// per pod, image and cause in [`EVENT_INTERVAL`]; whether it did.
    async fn announce(&self, pod: &Pod, d: &Diagnosis, uid: &str) -> bool {
        let announce = self.announced.lock().expect("announced lock").allow(
            &(uid.to_string(), d.image.clone(), d.cause.as_str()),
            EVENT_INTERVAL,
            Instant::now(),
        );
        if announce {
            info!(pod = %format!("{}/{}", d.namespace, d.pod), image = %d.image, diagnosis = %d.label(), "image pull failure diagnosed");
            self.publish(
                pod,
                EventType::Warning,
                "ImagePullDiagnosed",
                "Diagnose",
                repair::event_message(d),
            )
            .await;
        }
        announce
    }

    /// The RegistryCredential covering the image's registry, as it is now.
    async fn covering(&self, d: &Diagnosis) -> Option<RegistryCredential> {
        let name = d.credential.as_ref()?;
        Api::<RegistryCredential>::all(self.ctx.client.clone())
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    /// The repair for `d`, if there is one and its interval allows it now
    /// (per namespace for a re-sync, per credential for a mint, per pod for
    /// recreating it).
    fn due_repair(&self, rc: &RegistryCredential, pod: &Pod, d: &Diagnosis, uid: &str) -> Option<Repair> {
        let repair = own_repair(rc, pod, d)?;
        let (key, every) = match repair {
            Repair::Resync => (d.namespace.clone(), RESYNC_INTERVAL),
            Repair::Mint => (String::new(), MINT_INTERVAL),
            Repair::RecreatePod => (uid.to_string(), EVENT_INTERVAL),
        };
        self.repairs
            .lock()
            .expect("repairs lock")
            .allow(&(credential_label(d), key, repair), every, Instant::now())
            .then_some(repair)
    }

    /// Carry out `repair`, log and count the outcome; whether it took effect.
    async fn attempt(&self, rc: &RegistryCredential, pod: &Pod, d: &Diagnosis, repair: Repair) -> bool {
        match self.repair(rc, pod, d, repair).await {
            Ok(()) => {
                self.count_repair(d, repair);
                true
            }
            Err(why) => {
                warn!(pod = %format!("{}/{}", d.namespace, d.pod), action = repair.action(), %why, "repair did not take effect");
                false
            }
        }
    }

    fn count_repair(&self, d: &Diagnosis, repair: Repair) {
        info!(pod = %format!("{}/{}", d.namespace, d.pod), action = repair.action(), "image pull failure repaired");
        self.ctx
            .metrics
            .image_pull_repairs
            .get_or_create(&RepairLabels {
                credential: credential_label(d),
                action: repair.action().into(),
            })
            .inc();
    }

    /// Whether the diagnosis (cause and detail) of this pod and image is
    /// new in [`EVENT_INTERVAL`]. A new diagnosis of the same cause (say
    /// NotCovered, then PodAdmittedBeforeLink once the credential exists) is
    /// not announced again within the Event interval, but status shows it.
    fn changed(&self, d: &Diagnosis, uid: &str) -> bool {
        self.recorded.lock().expect("recorded lock").allow(
            &(uid.to_string(), d.image.clone(), d.label()),
            EVENT_INTERVAL,
            Instant::now(),
        )
    }

    /// Carry out `repair`, wait until it has taken effect and announce it
    /// on the pod (`ImagePullRepaired`); or say why it did not take effect.
    async fn repair(&self, rc: &RegistryCredential, pod: &Pod, d: &Diagnosis, repair: Repair) -> Result<(), String> {
        let name = rc.name_any();
        let secret = pods_secret(rc, pod);
        let ns = &d.namespace;
        match repair {
            Repair::Resync => {
                self.ctx.resync_namespace(ns);
                let service_account =
                    (d.detail == Some(Detail::ServiceAccountNotLinked)).then(|| service_account_of(pod));
                self.until(|| self.namespace_current(&name, ns, &secret, service_account.as_deref()))
                    .await?;
                let message = match service_account {
                    Some(sa) => format!(
                        "Re-synced namespace {ns}: ServiceAccount {sa} references Secret {secret} of RegistryCredential {name} again; pods created from now on carry it"
                    ),
                    None => format!(
                        "Re-synced namespace {ns}: Secret {ns}/{secret} holds RegistryCredential {name}'s current credential; the kubelet's next pull uses it"
                    ),
                };
                self.publish(pod, EventType::Normal, "ImagePullRepaired", "Repair", message)
                    .await;
                Ok(())
            }
            Repair::Mint => {
                let before = rc.status.as_ref().and_then(|s| s.credential_digest.clone());
                self.ctx.mint_now(rc);
                self.until(|| async {
                    let digest = self.current_digest(&name).await?;
                    if Some(&digest) == before.as_ref() {
                        return None;
                    }
                    self.namespace_current(&name, ns, &secret, None).await
                })
                .await?;
                let message = format!(
                    "Minted a new credential for RegistryCredential {name} and wrote it to Secret {ns}/{secret}; the kubelet's next pull uses it"
                );
                self.publish(pod, EventType::Normal, "ImagePullRepaired", "Repair", message)
                    .await;
                Ok(())
            }
            Repair::RecreatePod => {
                let controller = repair::recreating_controller(pod).unwrap_or_default();
                let message = format!(
                    "Deleted pod {ns}/{} (admitted before ServiceAccount {} referenced Secret {secret}) so that {controller} recreates it with the reference (spec.target.recreatePodsMissingLink)",
                    d.pod,
                    service_account_of(pod)
                );
                // Said before the pod goes, so that the Event finds its object.
                self.publish(pod, EventType::Normal, "ImagePullRepaired", "Repair", message)
                    .await;
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pod.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                Api::<Pod>::namespaced(self.ctx.client.clone(), ns)
                    .delete(&d.pod, &params)
                    .await
                    .map_err(|e| format!("deleting the pod: {e}"))?;
                Ok(())
            }
        }
    }

    /// Poll `check` until it answers, for at most [`REPAIR_WAIT`].
    async fn until<F, Fut>(&self, mut check: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<()>>,
    {
        let deadline = Instant::now() + REPAIR_WAIT;
        loop {
            if check().await.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not in effect after {}s", REPAIR_WAIT.as_secs()));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn current_digest(&self, rc: &str) -> Option<String> {
        Api::<RegistryCredential>::all(self.ctx.client.clone())
            .get_opt(rc)
            .await
            .ok()??
            .status?
            .credential_digest
    }

    /// Whether `ns` holds `rc`'s current credential in `secret` (and
    /// `service_account`, if given, references it).
    async fn namespace_current(&self, rc: &str, ns: &str, secret: &str, service_account: Option<&str>) -> Option<()> {
        let current = Api::<RegistryCredential>::all(self.ctx.client.clone())
            .get_opt(rc)
            .await
            .ok()??;
        let held = Api::<Secret>::namespaced(self.ctx.client.clone(), ns)
            .get_opt(secret)
            .await
            .ok()??;
        managed::holds_current(&held, &current)?.then_some(())?;
        if let Some(sa) = service_account {
            let sa = Api::<ServiceAccount>::namespaced(self.ctx.client.clone(), ns)
                .get_opt(sa)
                .await
                .ok()??;
            sa.image_pull_secrets.iter().flatten().find(|r| r.name == secret)?;
        }
        Some(())
    }

    async fn publish(&self, pod: &Pod, type_: EventType, reason: &str, action: &str, message: String) {
        let note = Note {
            type_,
            reason: reason.into(),
            note: Some(message.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.ctx.events.publish(&note, &pod.object_ref(&())).await {
            warn!(error = %e, "publishing an Event on a pod failed");
        }
    }

    /// Put `d` at the head of the RegistryCredential's `status.pullFailures`.
    async fn record(&self, rc: &RegistryCredential, d: &Diagnosis, repaired_at: Option<Timestamp>) {
        let _serial = self.status.lock().await;
        let api: Api<RegistryCredential> = Api::all(self.ctx.client.clone());
        let name = rc.name_any();
        let Ok(Some(fresh)) = api.get_opt(&name).await else {
            return;
        };
        let entry = PullFailure {
            namespace: d.namespace.clone(),
            pod: d.pod.clone(),
            image: d.image.clone(),
            cause: d.cause.as_str().into(),
            detail: d.detail.map(|x| x.as_str().into()),
            message: repair::event_message(d),
            last_seen: Time(Timestamp::now()),
            repaired: repaired_at.is_some(),
            repaired_at: repaired_at.map(Time),
        };
        let list = with_failure(fresh.status.map(|s| s.pull_failures).unwrap_or_default(), entry);
        let patch = serde_json::json!({
            "apiVersion": RegistryCredential::api_version(&()),
            "kind": RegistryCredential::kind(&()),
            "status": {"pullFailures": list},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
            warn!(error = %e, registrycredential = %name, "recording a pull failure in status failed");
        }
    }
}

/// `entry` first, the same pod and image once, at most [`MAX_PULL_FAILURES`].
pub fn with_failure(mut list: Vec<PullFailure>, entry: PullFailure) -> Vec<PullFailure> {
    list.retain(|f| !(f.namespace == entry.namespace && f.pod == entry.pod && f.image == entry.image));
    list.insert(0, entry);
    list.truncate(MAX_PULL_FAILURES);
    list
}

/// A diagnosis, and when regcred repaired its cause if it already has.
struct Judged {
    d: Diagnosis,
    repaired_at: Option<Timestamp>,
}

/// The repair the contract prescribes for `d` under `rc`'s spec, if any.
/// With `identity: PerServiceAccount`, only recreating a pod: a re-sync and
/// a mint are of the shared Secret, which that mode does not have, and the
/// reconcile mints each ServiceAccount's credential at the provider's pace.
fn own_repair(rc: &RegistryCredential, pod: &Pod, d: &Diagnosis) -> Option<Repair> {
    let provider = rc.spec.provider.selected();
    let repair = repair::repair_for(
        d,
        provider.map(|p| p.kind()),
        rc.spec.target.recreate_pods_missing_link,
        pod,
    )?;
    let per_service_account = provider.and_then(crate::identity::PerServiceAccount::of).is_some();
    (!per_service_account || repair == Repair::RecreatePod).then_some(repair)
}

/// Whether a write of the namespace's Secret (a re-sync, a renewal) is what
/// repairs `d`'s cause: not a ServiceAccount's link, nor a pod to recreate.
fn secret_write_repairs(d: &Diagnosis) -> bool {
    matches!(
        (d.cause, d.detail),
        (Cause::CredentialMissing, Some(Detail::SecretMissing))
            | (Cause::CredentialRejected, Some(Detail::StaleCopy | Detail::Refused))
            | (Cause::CredentialExpired, _)
    )
}

/// The covering RegistryCredential's name, as metrics and repair intervals
/// key it (empty when none covers the image).
fn credential_label(d: &Diagnosis) -> String {
    d.credential.clone().unwrap_or_default()
}

/// The Secret of `rc` the pod should carry: the shared one, or with
/// `identity: PerServiceAccount` its ServiceAccount's own.
fn pods_secret(rc: &RegistryCredential, pod: &Pod) -> String {
    let per_service_account = rc
        .spec
        .provider
        .selected()
        .and_then(crate::identity::PerServiceAccount::of);
    match per_service_account {
        Some(_) => crate::identity::secret_name(&secret_name(rc), &service_account_of(pod)),
        None => secret_name(rc),
    }
}

fn service_account_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Whether the Event was seen within [`RECENT`] (the kubelet updates its
/// Events' `lastTimestamp` each time the failure repeats).
fn recent(event: &Event) -> bool {
    let seen = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0));
    seen.is_none_or(|t| Timestamp::now().duration_since(t).as_secs() < RECENT.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_events_are_told_from_other_warnings() {
        for (reason, message) in [
            (
                "Failed",
                "Failed to pull image \"r.example/app:1\": rpc error: code = NotFound",
            ),
            ("Failed", "Error: ErrImagePull"),
            ("Failed", "Error: ImagePullBackOff"),
            ("Failed", "Error: InvalidImageName"),
            ("BackOff", "Back-off pulling image \"r.example/app:1\""),
            (
                "FailedToRetrieveImagePullSecret",
                "Unable to retrieve some image pull secrets (ecr); attempting to pull the image may not succeed.",
            ),
            (
                "ErrImageNeverPull",
                "Container image \"app:1\" is not present with pull policy of Never",
            ),
            ("InspectFailed", "Failed to inspect image \"app\": rpc error"),
        ] {
            assert!(is_pull_event(reason, message), "{reason}: {message}");
        }
        for (reason, message) in [
            (
                "BackOff",
                "Back-off restarting failed container app in pod app_team(uid)",
            ),
            ("Failed", "Error: failed to create containerd task"),
            ("Unhealthy", "Readiness probe failed"),
            ("FailedScheduling", "0/3 nodes are available"),
        ] {
            assert!(!is_pull_event(reason, message), "{reason}: {message}");
        }
    }

    fn failure(pod: &str, image: &str) -> PullFailure {
        PullFailure {
            namespace: "team".into(),
            pod: pod.into(),
            image: image.into(),
            cause: "CredentialExpired".into(),
            detail: None,
            message: "m".into(),
            last_seen: Time(Timestamp::UNIX_EPOCH),
            repaired: false,
            repaired_at: None,
        }
    }

    #[test]
    fn pull_failures_are_newest_first_once_each_and_bounded() {
        let mut list = Vec::new();
        for i in 0..30 {
            list = with_failure(list, failure(&format!("p{i}"), "a:1"));
        }
        assert_eq!(list.len(), MAX_PULL_FAILURES);
        assert_eq!(list[0].pod, "p29");
        list = with_failure(list, failure("p20", "a:1"));
        assert_eq!(list[0].pod, "p20");
        assert_eq!(
            list.iter().filter(|f| f.pod == "p20").count(),
            1,
            "the same pod and image once"
        );
        list = with_failure(list, failure("p20", "b:1"));
        assert_eq!(
            list.iter().filter(|f| f.pod == "p20").count(),
            2,
            "another image is another entry"
        );
    }

    #[test]
    fn old_events_are_history() {
        let mut event = Event::default();
        assert!(recent(&event), "no time: taken as now");
        event.last_timestamp = Some(Time(Timestamp::now()));
        assert!(recent(&event));
        event.last_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!recent(&event));
    }
}
