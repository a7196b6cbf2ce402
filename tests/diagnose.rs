//! `regcred diagnose` on a real node: the kubelet (with containerd and runc,
//! `regcred_testenv::Node`) fails the pulls and writes the Events; the CLI
//! binary runs as a user would (`regcred diagnose -n NS -o json`) with a
//! kubeconfig, and names the cause the contract's vocabulary gives it.
//!
//! Every failure here is the kubelet's own; nothing is posted by the test.
//! The tests running at once share one control plane, node and operator
//! (which maintains the Secrets and ServiceAccounts as it would in a
//! cluster); each has its own registry and namespaces.
//!
//! The node runs Debian's containerd 1.6 here; tests/diagnose_containerd2.rs
//! compiles these same tests again for a node running containerd 2.x
//! (`support::node_bed::RUNTIME`), whose error texts all differ.

mod support;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use regcred_testenv::eventually;
use regcred_testenv::fakes::Fault;
use regcred_testenv::node_hosts::route_host;
use regcred_testenv::registry::{Auth, Registry};
use serde_json::{Value, json};
use support::node_bed::{POD_TIMEOUT, RUNTIME, Scene, short_lived_google};
use support::*;

/// Whether the kubelet's Event says the registry asked for a credential the
/// pull did not send: containerd 1.6 passes the registry's `401
/// Unauthorized` on, 2.x says `authorization failed: no basic auth
/// credentials`.
fn says_no_credential_sent(event: &str) -> bool {
    match RUNTIME {
        regcred_testenv::Runtime::Containerd16 => event.contains("401 Unauthorized"),
        regcred_testenv::Runtime::Containerd2 => event.contains("no basic auth credentials"),
    }
}

impl Scene {
    /// Wait until the kubelet has failed the pod's pull: its `Failed to pull
    /// image` Event is there and the container waits in ErrImagePull or
    /// ImagePullBackOff. Returns the newest such Event's message.
    ///
    /// When every Secret the pod names exists but the kubelet could not read
    /// one (`FailedToRetrieveImagePullSecret`: on a loaded node its Secret
    /// cache may not sync within the kubelet's one second, and it pulls
    /// without), that pull is not the one the test set up: the kubelet's
    /// next, carrying the credential, is waited for.
    async fn wait_pull_failed(&self, ns: &str, pod: &str) -> String {
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns);
        let events = Api::<Event>::namespaced(self.client.clone(), ns);
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), ns);
        eventually(
            POD_TIMEOUT,
            &format!("the kubelet to fail the pull of {ns}/{pod}"),
            || async {
                let p = pods.get(pod).await.ok()?;
                let named: Vec<String> = p
                    .spec
                    .as_ref()?
                    .image_pull_secrets
                    .iter()
                    .flatten()
                    .map(|r| r.name.clone())
                    .collect();
                let reason = p.status?.container_statuses?.first()?.state.clone()?.waiting?.reason?;
                if reason != "ErrImagePull" && reason != "ImagePullBackOff" {
                    return None;
                }
                let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
                let listed = events.list(&params).await.ok()?.items;
                let newest = |wanted: &dyn Fn(&Event) -> bool| {
                    listed
                        .iter()
                        .filter(|e| wanted(e))
                        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
                        .map(|e| {
                            (
                                e.last_timestamp.as_ref().map(|t| t.0),
                                e.message.clone().unwrap_or_default(),
                            )
                        })
                };
                let (failed_at, message) = newest(&|e| {
                    e.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("Failed to pull image"))
                })?;
                let unreadable = newest(&|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"));
                if let Some((unreadable_at, _)) = unreadable
                    && failed_at <= unreadable_at
                {
                    let mut all_exist = true;
                    for name in &named {
                        all_exist &= secrets.get_opt(name).await.ok()?.is_some();
                    }
                    if all_exist {
                        return None;
                    }
                }
                Some(message)
            },
        )
        .await
    }

    /// The operator's Events `reason` about the pod (`ImagePullDiagnosed`,
    /// `ImagePullRepaired`), once one of them satisfies `wanted`; their notes.
    async fn wait_operator_event(
        &self,
        ns: &str,
        pod: &str,
        reason: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let events = Api::<Event>::namespaced(self.client.clone(), ns);
        let params = ListParams::default().fields(&format!("involvedObject.name={pod},reason={reason}"));
        let found = regcred_testenv::poll_until(timeout, || async {
            let Ok(list) = events.list(&params).await else {
                return ControlFlow::Continue(());
            };
            let notes: Vec<String> = list.items.into_iter().filter_map(|e| e.message).collect();
            match notes.iter().any(|n| wanted(n)) {
                true => ControlFlow::Break(notes),
                false => ControlFlow::Continue(()),
            }
        })
        .await;
        match found {
            Ok(notes) => notes,
            Err(()) => panic!(
                "timed out after {timeout:?} waiting for the operator's {reason} Event on {ns}/{pod}; {}",
                self.what_happened(ns, pod).await
            ),
        }
    }

    /// What a failed wait on `ns/pod` shows, for the panic message (a CI
    /// log keeps its head): the pod's state, every Event about it, and the
    /// operator's log lines naming the namespace.
    async fn what_happened(&self, ns: &str, pod: &str) -> String {
        let state = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get(pod)
            .await
            .ok()
            .and_then(|p| p.status)
            .map(|s| {
                let waiting = s
                    .container_statuses
                    .and_then(|c| c.first()?.state.clone()?.waiting?.reason)
                    .unwrap_or_default();
                format!("{} {waiting}", s.phase.unwrap_or_default())
            });
        let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        let events: Vec<String> = Api::<Event>::namespaced(self.client.clone(), ns)
            .list(&params)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                // The kubelet's Events carry lastTimestamp; the events.k8s.io
                // ones regcred publishes carry eventTime only.
                let at = (e.last_timestamp.map(|t| t.0))
                    .or(e.event_time.map(|t| t.0))
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let message: String = e.message.unwrap_or_default().chars().take(300).collect();
                format!(
                    "{at} {} x{}: {message}",
                    e.reason.unwrap_or_default(),
                    e.count.unwrap_or(1)
                )
            })
            .collect();
        let needle = format!("{ns}/");
        let logs: Vec<String> = self
            .bed
            .operator
            .logs()
            .lines()
            .filter(|l| l.contains(&needle) || l.contains(&format!("\"{ns}\"")) || l.contains(&format!("={ns}")))
            .map(|l| l.chars().take(2500).collect())
            .collect();
        format!(
            "pod {ns}/{pod}: {state:?}\nits Events:\n  {}\nthe operator's log lines on {ns}:\n  {}",
            events.join("\n  "),
            logs.join("\n  ")
        )
    }

    /// The entry for `pod` in RegistryCredential `rc`'s `status.pullFailures`,
    /// once it reads `label` (`Cause/Detail`).
    async fn wait_pull_failure(&self, rc: &str, pod: &str, label: &str) -> regcred::api::PullFailure {
        let rcs = Api::<regcred::api::RegistryCredential>::all(self.client.clone());
        eventually(
            POD_TIMEOUT,
            &format!("{label} for pod {pod} in {rc}'s status.pullFailures"),
            || async {
                let status = rcs.get(rc).await.ok()?.status?;
                status.pull_failures.into_iter().find(|f| {
                    let got = match &f.detail {
                        Some(d) => format!("{}/{d}", f.cause),
                        None => f.cause.clone(),
                    };
                    f.pod == pod && got == label
                })
            },
        )
        .await
    }

    /// The value of the operator's metric line holding every one of `parts`.
    async fn metric(&self, parts: &[&str]) -> Option<f64> {
        let text = reqwest::get(&self.bed.metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// The operator, following the kubelet's Events, names the same cause on
/// the pod (`ImagePullDiagnosed`) as the CLI.
async fn operator_says(s: &Scene, ns: &str, pod: &str, label: &str) {
    let prefix = format!("{label}: ");
    s.wait_operator_event(ns, pod, "ImagePullDiagnosed", POD_TIMEOUT, |n| n.starts_with(&prefix))
        .await;
}

/// What `regcred diagnose` printed, and its exit status.
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run the built `regcred diagnose` as a user would.
async fn diagnose(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regcred"));
    command.arg("diagnose").arg("--kubeconfig").arg(kubeconfig).args(args);
    command.env_remove("KUBECONFIG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("running regcred diagnose");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `regcred diagnose -n NS -o json`: the diagnoses, by pod name. Also prints
/// the text output, which the README quotes.
async fn diagnoses(s: &Scene, ns: &str, ca: Option<&Path>) -> Vec<Value> {
    let mut args = vec!["-n", ns];
    let ca = ca.map(|p| p.display().to_string());
    if let Some(ca) = &ca {
        args.extend(["--ca-bundle", ca]);
    }
    let kubeconfig = s.bed.cp.kubeconfig();
    let started = Instant::now();
    let text = diagnose(kubeconfig, &args).await;
    let elapsed = started.elapsed();
    assert!(text.status.success(), "regcred diagnose failed: {}", text.stderr);
    eprintln!("{}: $ regcred diagnose -n {ns} ({elapsed:?})\n{}", s.name, text.stdout);
    args.extend(["-o", "json"]);
    let run = diagnose(kubeconfig, &args).await;
    assert!(run.status.success(), "regcred diagnose -o json failed: {}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    doc["diagnoses"].as_array().expect("a diagnoses array").clone()
}

/// The one diagnosis for `pod`, checked against the contract's shape.
fn of<'a>(all: &'a [Value], pod: &str) -> &'a Value {
    let found: Vec<&Value> = all.iter().filter(|d| d["pod"] == pod).collect();
    assert_eq!(found.len(), 1, "one diagnosis for pod {pod}: {all:#?}");
    let d = found[0];
    for key in [
        "namespace",
        "pod",
        "container",
        "image",
        "cause",
        "detail",
        "message",
        "fix",
        "evidence",
        "credential",
    ] {
        assert!(d.get(key).is_some(), "{key} missing in {d:#}");
    }
    assert!(
        d["evidence"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["check"].is_string() && x["result"].is_string())),
        "{d:#}"
    );
    d
}

fn assert_cause(d: &Value, cause: &str, detail: Option<&str>) {
    assert_eq!(
        (d["cause"].as_str(), d["detail"].as_str()),
        (Some(cause), detail),
        "diagnosis: {d:#}"
    );
}

fn evidence(d: &Value, check_contains: &str) -> String {
    d["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["check"].as_str().unwrap().contains(check_contains))
        .unwrap_or_else(|| panic!("no evidence {check_contains:?} in {d:#}"))["result"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An htpasswd registry with `team/app:1`, trusted by the node, and a
/// RegistryCredential `name` for it targeting `target`; returns the
/// registry and the password.
/// A registry only `alice` with `password` may pull from, holding
/// `team/app:1`, whose CA the node trusts.
async fn alice_registry(s: &Scene, password: &str) -> Registry {
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), password.to_string())],
    })
    .await
    .expect("htpasswd registry");
    app_image(&registry, "team/app").await;
    s.bed.node.trust_registry(&registry).unwrap();
    registry
}

async fn covered_registry(s: &Scene, name: &str, target: Value) -> (Registry, String) {
    let password = canary(name);
    let registry = alice_registry(s, &password).await;
    put_source_secret(&s.client, name, "alice", &password).await;
    apply_rc(&s.client, static_rc(name, registry.host(), name, target)).await;
    (registry, password)
}

#[tokio::test]
async fn missing_tag_and_missing_repository_are_image_not_found() {
    let s = Scene::new("image_not_found").await;
    namespace_with_default_sa(&s.client, "dx-missing", &[]).await;
    let (registry, password) =
        covered_registry(&s, "dx-missing", json!({"namespaces": {"names": ["dx-missing"]}})).await;
    s.wait_pull_secrets("dx-missing", "default", &["dx-missing"]).await;
    let host = registry.host();
    s.create_pod("dx-missing", "no-tag", &format!("{host}/team/app:2"))
        .await;
    s.create_pod("dx-missing", "no-repo", &format!("{host}/team/nothing:1"))
        .await;
    let event = s.wait_pull_failed("dx-missing", "no-tag").await;
    assert!(event.contains("not found"), "{event}");
    s.wait_pull_failed("dx-missing", "no-repo").await;

    let all = diagnoses(&s, "dx-missing", Some(registry.ca_path())).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let tag = of(&all, "no-tag");
    assert_cause(tag, "ImageNotFound", Some("Tag"));
    assert_eq!(tag["credential"], "dx-missing");
    assert!(evidence(tag, "manifest HEAD").starts_with("404"), "{tag:#}");
    assert_cause(of(&all, "no-repo"), "ImageNotFound", Some("Repository"));
    assert!(!serde_json::to_string(&all).unwrap().contains(&password));

    // The operator, following the kubelet's Events, says the same on the
    // pod and in the RegistryCredential's status, without the password.
    let notes = s
        .wait_operator_event("dx-missing", "no-tag", "ImagePullDiagnosed", POD_TIMEOUT, |n| {
            n.starts_with("ImageNotFound/Tag: ")
        })
        .await;
    assert!(notes.iter().all(|n| n.contains(". Fix: ")), "{notes:#?}");
    s.wait_operator_event("dx-missing", "no-repo", "ImagePullDiagnosed", POD_TIMEOUT, |n| {
        n.starts_with("ImageNotFound/Repository: ")
    })
    .await;
    let entry = s.wait_pull_failure("dx-missing", "no-tag", "ImageNotFound/Tag").await;
    assert_eq!((entry.namespace.as_str(), entry.repaired), ("dx-missing", false));
    assert_eq!(entry.image, format!("{host}/team/app:2"));
    let events = Api::<Event>::namespaced(s.client.clone(), "dx-missing")
        .list(&ListParams::default())
        .await
        .unwrap();
    let rc = Api::<regcred::api::RegistryCredential>::all(s.client.clone())
        .get("dx-missing")
        .await
        .unwrap();
    for text in [
        serde_json::to_string(&events).unwrap(),
        serde_json::to_string(&rc).unwrap(),
        s.bed.operator.logs(),
    ] {
        assert!(!text.contains(&password), "the password leaked");
    }
    let counted = s
        .metric(&[
            "regcred_image_pull_failures_total{",
            "credential=\"dx-missing\"",
            "cause=\"ImageNotFound\"",
        ])
        .await;
    assert!(counted.is_some_and(|n| n >= 2.0), "{counted:?}");
    s.report();
}

/// How long after the kubelet's Event about a failed pull the operator's
/// `ImagePullDiagnosed` is there, as a client watching the namespace sees
/// both: a benchmark line (p50/p99 over a burst of pods), not an assertion.
#[tokio::test]
async fn the_operator_diagnoses_soon_after_the_kubelets_event() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    const PODS: usize = 12;
    let s = Scene::new("diagnosis_latency").await;
    namespace_with_default_sa(&s.client, "dx-latency", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-latency", json!({"namespaces": {"names": ["dx-latency"]}})).await;
    s.wait_pull_secrets("dx-latency", "default", &["dx-latency"]).await;
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        (Option<Instant>, Option<Instant>),
    >::new()));
    let watching = {
        let seen = seen.clone();
        let events = Api::<Event>::namespaced(s.client.clone(), "dx-latency");
        tokio::spawn(async move {
            let mut stream = watcher(events, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(e)) = stream.next().await {
                let now = Instant::now();
                let pod = e.involved_object.name.clone().unwrap_or_default();
                let message = e.message.clone().unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(pod).or_default();
                match e.reason.as_deref() {
                    Some("Failed") if message.starts_with("Failed to pull image") => {
                        entry.0.get_or_insert(now);
                    }
                    Some("ImagePullDiagnosed") => {
                        entry.1.get_or_insert(now);
                    }
                    _ => {}
                }
            }
        })
    };
    let host = registry.host().to_string();
    for i in 0..PODS {
        s.create_pod(
            "dx-latency",
            &format!("app-{i}"),
            &format!("{host}/team/app:missing-{i}"),
        )
        .await;
    }
    let latencies = eventually(
        Duration::from_secs(120),
        "every pod's pull failure diagnosed",
        || async {
            let seen = seen.lock().unwrap();
            let mut latencies: Vec<Duration> = seen
                .values()
                .filter_map(|(kubelet, operator)| {
                    Some(operator.as_ref()?.saturating_duration_since(*kubelet.as_ref()?))
                })
                .collect();
            latencies.sort();
            (latencies.len() == PODS).then_some(latencies)
        },
    )
    .await;
    watching.abort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    eprintln!(
        "bench: kubelet Event -> ImagePullDiagnosed over {PODS} pods failing at once: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    s.report();
}

/// The "automatic token rotation overnight" promise, broken on purpose and
/// repaired: a Google token lives 20 s and regcred renews at most once a
/// minute, so for 40 s of every minute the namespace holds an expired
/// token. A pod pulling then is refused; the operator diagnoses
/// `CredentialExpired`, mints at once (the repair), and the kubelet's next
/// pull succeeds — before the scheduled renewal would have come.
#[tokio::test]
async fn an_expired_credential_is_minted_anew_and_the_next_pull_succeeds() {
    const HOST: &str = "gar-renew.regcred.test";
    const LIFETIME: Duration = Duration::from_secs(20);
    let s = Scene::new("expired_repair").await;
    let (google, _registry) = short_lived_google(&s, "dx-renew", HOST, LIFETIME, &[]).await;
    let rcs = Api::<regcred::api::RegistryCredential>::all(s.client.clone());
    let status = eventually(WAIT, "the first credential's expiry in status", || async {
        let status = rcs.get("dx-renew").await.ok()?.status?;
        (status.not_after.is_some() && status.last_issued_time.is_some()).then_some(status)
    })
    .await;
    let (issued, not_after) = (status.last_issued_time.unwrap().0, status.not_after.unwrap().0);
    // Without a repair, the next mint comes a minute after this one.
    let scheduled = issued + jiff::SignedDuration::from_secs(60);
    let left = not_after.duration_since(jiff::Timestamp::now()).as_secs_f64().max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(left + 1.0)).await;
    assert!(
        jiff::Timestamp::now() < scheduled - jiff::SignedDuration::from_secs(25),
        "too late to tell a repair from the schedule"
    );
    s.create_pod("dx-renew", "app", &format!("{HOST}/team/app:1")).await;
    let event = s.wait_pull_failed("dx-renew", "app").await;
    assert!(event.contains("401 Unauthorized"), "{event}");
    s.wait_operator_event("dx-renew", "app", "ImagePullDiagnosed", POD_TIMEOUT, |n| {
        n.starts_with("CredentialExpired: ")
    })
    .await;
    let repaired = s
        .wait_operator_event("dx-renew", "app", "ImagePullRepaired", POD_TIMEOUT, |n| {
            n.contains("Minted a new credential for RegistryCredential dx-renew")
        })
        .await;
    eprintln!("{}: {repaired:?}", s.name);
    let pods = Api::<Pod>::namespaced(s.client.clone(), "dx-renew");
    let started = eventually(POD_TIMEOUT, "the pod running after the repair", || async {
        let pod = pods.get("app").await.ok()?;
        pod.status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .running?
            .started_at
    })
    .await;
    assert!(
        started.0 < scheduled,
        "the container started at {} — after the scheduled renewal at {scheduled}, so the repair did not help",
        started.0
    );
    assert!(google.issued() >= 2, "{} tokens issued", google.issued());
    let entry = s.wait_pull_failure("dx-renew", "app", "CredentialExpired").await;
    assert!(entry.repaired, "{entry:?}");
    for (metric, label) in [
        ("regcred_image_pull_failures_total{", "cause=\"CredentialExpired\""),
        ("regcred_image_pull_repairs_total{", "action=\"mint\""),
    ] {
        let value = s.metric(&[metric, "credential=\"dx-renew\"", label]).await;
        assert!(value.is_some_and(|n| n >= 1.0), "{metric} {label}: {value:?}");
    }
    s.report();
}

/// regcred's Secret deleted while the API server refused to let it back
/// (a policy, then lifted): regcred tries again only 30 s later, but a pod
/// that fails meanwhile is diagnosed `SecretMissing`, the repair re-syncs
/// the namespace at once, and the kubelet's next pull succeeds. A change
/// that reconciles every namespace (a source Secret written by another
/// test of this binary) may write the Secret between the pull and the
/// diagnosis; the diagnosis then names that re-sync as the repair.
#[tokio::test]
async fn a_secret_missing_after_refused_writes_is_restored_by_the_repair() {
    let s = Scene::new("resync_repair").await;
    namespace_with_default_sa(&s.client, "dx-restore", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-restore", json!({"namespaces": {"names": ["dx-restore"]}})).await;
    s.wait_pull_secrets("dx-restore", "default", &["dx-restore"]).await;
    freeze_secrets(&s.client, "dx-restore", &["CREATE"]).await;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "dx-restore");
    secrets.delete("dx-restore", &Default::default()).await.unwrap();
    let rcs = Api::<regcred::api::RegistryCredential>::all(s.client.clone());
    eventually(WAIT, "the refused write in status", || async {
        let status = rcs.get("dx-restore").await.ok()?.status?;
        status
            .failed_namespaces
            .iter()
            .any(|f| f.reason == "NamespaceWriteFailed")
            .then_some(())
    })
    .await;
    thaw_secrets(&s.client, "dx-restore").await;
    let thawed = Instant::now();
    s.create_pod("dx-restore", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    // Two orders are right, and CI has seen both: the diagnosis re-syncs
    // the namespace itself, or another reconcile wrote the Secret first.
    let notes = s
        .wait_operator_event("dx-restore", "app", "ImagePullRepaired", POD_TIMEOUT, |n| {
            n.starts_with("Re-synced namespace dx-restore")
                || (n.starts_with("CredentialMissing/SecretMissing repaired at ")
                    && n.contains(", before this diagnosis, by regcred's re-sync: "))
        })
        .await;
    eprintln!("{}: repaired {:?} after the thaw: {notes:?}", s.name, thawed.elapsed());
    s.wait_operator_event("dx-restore", "app", "ImagePullDiagnosed", POD_TIMEOUT, |n| {
        n.starts_with("CredentialMissing/SecretMissing: ")
    })
    .await;
    let pods = Api::<Pod>::namespaced(s.client.clone(), "dx-restore");
    eventually(POD_TIMEOUT, "the pod running after the repair", || async {
        let pod = pods.get("app").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let entry = s
        .wait_pull_failure("dx-restore", "app", "CredentialMissing/SecretMissing")
        .await;
    assert!(entry.repaired, "{entry:?}");
    let value = s
        .metric(&[
            "regcred_image_pull_repairs_total{",
            "credential=\"dx-restore\"",
            "action=\"resync\"",
        ])
        .await;
    assert!(value.is_some_and(|n| n >= 1.0), "{value:?}");
    s.report();
}

/// With `recreatePodsMissingLink`, a pod of a controller (a ReplicaSet
/// here; nothing but regcred acts on it, as no controller-manager runs)
/// that was admitted before its ServiceAccount had the link is deleted for
/// its controller to recreate; a bare pod in the same state is only
/// diagnosed, never deleted.
#[tokio::test]
async fn a_controller_owned_pod_admitted_before_the_link_is_recreated_when_opted_in() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let s = Scene::new("recreate").await;
    namespace_with_default_sa(&s.client, "dx-recreate", &[]).await;
    let password = canary("dx-recreate");
    let registry = alice_registry(&s, &password).await;
    let image = format!("{}/team/app:1", registry.host());
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(s.client.clone(), "dx-recreate")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let owned: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "owned",
            "labels": {"app": "app"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app", "uid": rs.metadata.uid, "controller": true}],
        },
        "spec": {
            "nodeName": s.bed.node.name(),
            "hostNetwork": true,
            "dnsPolicy": "Default",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Always"}],
        },
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(s.client.clone(), "dx-recreate");
    let owned = pods.create(&PostParams::default(), &owned).await.unwrap();
    let bare = s.create_pod("dx-recreate", "bare", &image).await;
    s.wait_pull_failed("dx-recreate", "owned").await;
    s.wait_pull_failed("dx-recreate", "bare").await;
    put_source_secret(&s.client, "dx-recreate", "alice", &password).await;
    let target = json!({"namespaces": {"names": ["dx-recreate"]}, "recreatePodsMissingLink": true});
    apply_rc(
        &s.client,
        static_rc("dx-recreate", registry.host(), "dx-recreate", target),
    )
    .await;
    s.wait_pull_secrets("dx-recreate", "default", &["dx-recreate"]).await;

    // The kubelet keeps retrying; the next failure is diagnosed anew. The
    // operator paces a failing pod's diagnoses (30 s, doubling): when the
    // ones before the RegistryCredential took longer on a loaded machine, the
    // next comes up to 2 min after it exists, the kubelet's back-off on top.
    let repair_timeout = Duration::from_secs(300);
    let notes = s
        .wait_operator_event("dx-recreate", "owned", "ImagePullRepaired", repair_timeout, |n| {
            n.starts_with("Deleted pod dx-recreate/owned")
        })
        .await;
    let deleted = notes.iter().find(|n| n.starts_with("Deleted pod dx-recreate/owned"));
    assert!(
        deleted.is_some_and(|n| n.contains("ReplicaSet app recreates it")),
        "{notes:?}"
    );
    eventually(POD_TIMEOUT, "the owned pod deleted", || async {
        let now = pods.get_opt("owned").await.ok()?;
        (now.and_then(|p| p.metadata.uid) != owned.metadata.uid).then_some(())
    })
    .await;
    s.wait_pull_failure("dx-recreate", "bare", "CredentialMissing/PodAdmittedBeforeLink")
        .await;
    let still = pods.get("bare").await.expect("the bare pod is never deleted");
    assert_eq!(still.metadata.uid, bare.metadata.uid);
    s.report();
}

#[tokio::test]
async fn a_registry_no_credential_covers_is_not_covered() {
    let s = Scene::new("not_covered").await;
    let password = canary("dx-uncovered");
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), password)],
    })
    .await
    .expect("htpasswd registry");
    app_image(&registry, "team/app").await;
    s.bed.node.trust_registry(&registry).unwrap();
    namespace_with_default_sa(&s.client, "dx-uncovered", &[]).await;
    s.create_pod("dx-uncovered", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    let event = s.wait_pull_failed("dx-uncovered", "app").await;
    assert!(says_no_credential_sent(&event), "{event}");

    let all = diagnoses(&s, "dx-uncovered", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("NotCovered"));
    assert_eq!(d["credential"], Value::Null);
    assert!(evidence(d, "keyring").contains("no entry matches"), "{d:#}");

    // One pod by name; a pod that does not exist is an error.
    let kubeconfig = s.bed.cp.kubeconfig();
    let one = diagnose(kubeconfig, &["-n", "dx-uncovered", "app", "-o", "json"]).await;
    assert!(one.status.success(), "{}", one.stderr);
    let doc: Value = serde_json::from_str(&one.stdout).unwrap();
    assert_cause(
        of(doc["diagnoses"].as_array().unwrap(), "app"),
        "CredentialMissing",
        Some("NotCovered"),
    );
    let none = diagnose(kubeconfig, &["-n", "dx-uncovered", "nope"]).await;
    assert!(!none.status.success());
    assert!(none.stderr.contains("reading pod dx-uncovered/nope"), "{}", none.stderr);

    // `kubectl regcred diagnose` runs the kubectl-regcred binary with the same arguments.
    let ca = registry.ca_path().display().to_string();
    let plugin = tokio::task::spawn_blocking({
        let kubeconfig = s.bed.cp.kubeconfig().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-regcred"))
                .args(["diagnose", "-n", "dx-uncovered", "-o", "json", "--ca-bundle", &ca])
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .output()
        }
    })
    .await
    .unwrap()
    .expect("running kubectl-regcred");
    assert!(plugin.status.success(), "{}", String::from_utf8_lossy(&plugin.stderr));
    let doc: Value = serde_json::from_slice(&plugin.stdout).unwrap();
    assert_cause(
        of(doc["diagnoses"].as_array().unwrap(), "app"),
        "CredentialMissing",
        Some("NotCovered"),
    );
    operator_says(&s, "dx-uncovered", "app", "CredentialMissing/NotCovered").await;
    s.report();
}

#[tokio::test]
async fn a_namespace_the_credential_does_not_target_is_not_covered() {
    let s = Scene::new("not_targeted").await;
    namespace_with_default_sa(&s.client, "dx-in", &[]).await;
    namespace_with_default_sa(&s.client, "dx-out", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-target", json!({"namespaces": {"names": ["dx-in"]}})).await;
    s.wait_pull_secrets("dx-in", "default", &["dx-target"]).await;
    s.create_pod("dx-out", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    s.wait_pull_failed("dx-out", "app").await;

    let all = diagnoses(&s, "dx-out", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("NotCovered"));
    assert_eq!(d["credential"], "dx-target");
    assert_eq!(evidence(d, "targeted by"), "no");
    operator_says(&s, "dx-out", "app", "CredentialMissing/NotCovered").await;
    s.report();
}

#[tokio::test]
async fn a_service_account_without_the_entry_is_not_linked() {
    let s = Scene::new("sa_unlinked").await;
    namespace_with_default_sa(&s.client, "dx-sa", &[]).await;
    create_service_account(&s.client, "dx-sa", "deployer", &[]).await;
    let target = json!({"namespaces": {"names": ["dx-sa"]}, "serviceAccounts": {"names": ["deployer"]}});
    let (registry, _) = covered_registry(&s, "dx-sa", target).await;
    s.wait_pull_secrets("dx-sa", "deployer", &["dx-sa"]).await;
    s.create_pod("dx-sa", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    s.wait_pull_failed("dx-sa", "app").await;

    let all = diagnoses(&s, "dx-sa", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("ServiceAccountNotLinked"));
    assert_eq!(evidence(d, "ServiceAccount dx-sa/default"), "[]");
    operator_says(&s, "dx-sa", "app", "CredentialMissing/ServiceAccountNotLinked").await;
    s.report();
}

#[tokio::test]
async fn a_pod_admitted_before_the_link_must_be_recreated() {
    let s = Scene::new("admitted_before_link").await;
    namespace_with_default_sa(&s.client, "dx-early", &[]).await;
    let password = canary("dx-early");
    let registry = alice_registry(&s, &password).await;
    // The pod comes first, as when a GitOps tool applies everything at once.
    let pod = s
        .create_pod("dx-early", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    assert!(pod.spec.unwrap().image_pull_secrets.is_none());
    s.wait_pull_failed("dx-early", "app").await;
    put_source_secret(&s.client, "dx-early", "alice", &password).await;
    let target = json!({"namespaces": {"names": ["dx-early"]}});
    apply_rc(&s.client, static_rc("dx-early", registry.host(), "dx-early", target)).await;
    s.wait_pull_secrets("dx-early", "default", &["dx-early"]).await;

    let all = diagnoses(&s, "dx-early", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("PodAdmittedBeforeLink"));
    assert!(
        d["fix"]
            .as_str()
            .unwrap()
            .contains("kubectl delete pod -n dx-early app"),
        "{d:#}"
    );
    s.wait_pull_failure("dx-early", "app", "CredentialMissing/PodAdmittedBeforeLink")
        .await;
    s.report();
}

#[tokio::test]
async fn a_wrong_password_in_the_source_is_refused() {
    let s = Scene::new("refused").await;
    let right = canary("dx-right");
    let wrong = canary("dx-wrong");
    let registry = alice_registry(&s, &right).await;
    namespace_with_default_sa(&s.client, "dx-refused", &[]).await;
    put_source_secret(&s.client, "dx-refused", "alice", &wrong).await;
    let target = json!({"namespaces": {"names": ["dx-refused"]}});
    apply_rc(
        &s.client,
        static_rc("dx-refused", registry.host(), "dx-refused", target),
    )
    .await;
    s.wait_pull_secrets("dx-refused", "default", &["dx-refused"]).await;
    s.create_pod("dx-refused", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    let event = s.wait_pull_failed("dx-refused", "app").await;
    assert!(event.contains("401 Unauthorized"), "{event}");

    let all = diagnoses(&s, "dx-refused", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialRejected", Some("Refused"));
    assert!(evidence(d, "manifest HEAD").starts_with("401"), "{d:#}");
    assert!(
        evidence(d, "of RegistryCredential dx-refused").contains("the current credential"),
        "{d:#}"
    );
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains(&wrong) && !text.contains(&right),
        "no password in the output"
    );
    operator_says(&s, "dx-refused", "app", "CredentialRejected/Refused").await;
    // The operator logs its diagnoses' evidence (debug): names, never values.
    let logs = s.bed.operator.logs();
    assert!(logs.contains("manifest HEAD"), "the diagnosis's evidence is logged");
    assert!(
        !logs.contains(&wrong) && !logs.contains(&right),
        "no password in the operator's log"
    );
    s.report();
}

#[tokio::test]
async fn connection_refused_and_an_unresolvable_host_are_unreachable() {
    let s = Scene::new("unreachable").await;
    namespace_with_default_sa(&s.client, "dx-net", &[]).await;
    // A port nothing listens on, and a name that never resolves (RFC 2606).
    let closed = closed_registry();
    s.create_pod("dx-net", "refused", &format!("{closed}/team/app:1")).await;
    s.create_pod("dx-net", "dns", "registry.regcred-test.invalid/team/app:1")
        .await;
    let refused = s.wait_pull_failed("dx-net", "refused").await;
    assert!(refused.contains("connection refused"), "{refused}");
    let dns = s.wait_pull_failed("dx-net", "dns").await;
    assert!(dns.contains("lookup registry.regcred-test.invalid"), "{dns}");

    let all = diagnoses(&s, "dx-net", None).await;
    assert_cause(of(&all, "refused"), "RegistryUnreachable", Some("ConnectionRefused"));
    assert_cause(of(&all, "dns"), "RegistryUnreachable", Some("DNS"));
    operator_says(&s, "dx-net", "refused", "RegistryUnreachable/ConnectionRefused").await;
    operator_says(&s, "dx-net", "dns", "RegistryUnreachable/DNS").await;
    s.report();
}

/// A same-named Secret that someone else wrote sits where regcred's would:
/// regcred leaves it alone (`SecretExists`), so the namespace lacks
/// regcred's credential.
#[tokio::test]
async fn a_foreign_secret_in_place_of_regcreds_is_secret_missing() {
    let s = Scene::new("secret_missing").await;
    namespace_with_default_sa(&s.client, "dx-foreign", &[]).await;
    let foreign = k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some("dx-foreign".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        string_data: Some([(".dockerconfigjson".to_string(), r#"{"auths":{}}"#.to_string())].into()),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "dx-foreign")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let (registry, _) = covered_registry(&s, "dx-foreign", json!({"namespaces": {"names": ["dx-foreign"]}})).await;
    wait_event(&s.client, "SecretExists", Some("Warning")).await;
    s.create_pod("dx-foreign", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    s.wait_pull_failed("dx-foreign", "app").await;

    let all = diagnoses(&s, "dx-foreign", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("SecretMissing"));
    assert!(
        evidence(d, "of RegistryCredential dx-foreign").contains("not written by regcred"),
        "{d:#}"
    );
    operator_says(&s, "dx-foreign", "app", "CredentialMissing/SecretMissing").await;
    s.report();
}

/// A registry whose certificate the node does not trust (its host routed
/// with another CA), and a server that accepts connections and never
/// answers: the kubelet's texts say TLS and timeout.
#[tokio::test]
async fn an_untrusted_certificate_and_a_silent_server_are_unreachable() {
    let s = Scene::new("tls_timeout").await;
    let registry = Registry::start(Auth::Anonymous).await.expect("anonymous registry");
    app_image(&registry, "team/app").await;
    let other_ca = regcred_testenv::pki::TestCa::new("a CA that signed nothing here");
    route_host(
        &s.bed.node,
        "untrusted.regcred.test",
        registry.host(),
        other_ca.cert_pem(),
    )
    .unwrap();
    // Accepts every connection, then says nothing: the TLS handshake never ends.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    route_host(&s.bed.node, "silent.regcred.test", &silent_addr, other_ca.cert_pem()).unwrap();
    namespace_with_default_sa(&s.client, "dx-tls", &[]).await;
    s.create_pod("dx-tls", "untrusted", "untrusted.regcred.test/team/app:1")
        .await;
    s.create_pod("dx-tls", "silent", "silent.regcred.test/team/app:1").await;
    let untrusted = s.wait_pull_failed("dx-tls", "untrusted").await;
    assert!(untrusted.contains("x509"), "{untrusted}");
    let silent = s.wait_pull_failed("dx-tls", "silent").await;
    assert!(silent.contains("timeout"), "{silent}");

    let all = diagnoses(&s, "dx-tls", None).await;
    assert_cause(of(&all, "untrusted"), "RegistryUnreachable", Some("TLS"));
    assert_cause(of(&all, "silent"), "RegistryUnreachable", Some("Timeout"));
    held.abort();
    operator_says(&s, "dx-tls", "untrusted", "RegistryUnreachable/TLS").await;
    operator_says(&s, "dx-tls", "silent", "RegistryUnreachable/Timeout").await;
    s.report();
}

/// A Google token that lives 20 s, a registry that refuses it once it has
/// expired, and a token endpoint that fails from then on: the Secret keeps
/// the expired token (regcred never empties it), and a pod pulling with it
/// is refused.
#[tokio::test]
async fn a_credential_past_its_expiry_is_expired() {
    const HOST: &str = "gar.regcred.test";
    const LIFETIME: Duration = Duration::from_secs(20);
    let s = Scene::new("expired").await;
    let (google, _registry) = short_lived_google(&s, "dx-expired", HOST, LIFETIME, &[]).await;
    google.set_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "dx-expired");
    let not_after: jiff::Timestamp =
        secrets.get("dx-expired").await.unwrap().metadata.annotations.unwrap()["regcred.dev/not-after"]
            .parse()
            .unwrap();
    let left = not_after.duration_since(jiff::Timestamp::now()).as_secs_f64().max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(left + 1.0)).await;
    s.create_pod("dx-expired", "app", &format!("{HOST}/team/app:1")).await;
    let event = s.wait_pull_failed("dx-expired", "app").await;
    assert!(event.contains("401 Unauthorized"), "{event}");

    let all = diagnoses(&s, "dx-expired", None).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialExpired", None);
    assert!(
        evidence(d, "of RegistryCredential dx-expired").contains("expired"),
        "{d:#}"
    );
    operator_says(&s, "dx-expired", "app", "CredentialExpired").await;
    s.report();
}

/// A token endpoint that answers 429, as a throttled registry does: a pod
/// with regcred's credential is throttled as its account, a pod without
/// any as anonymous.
#[tokio::test]
async fn a_throttled_registry_is_rate_limited_authenticated_or_anonymous() {
    let s = Scene::new("rate_limited").await;
    let password = canary("dx-rate");
    let registry = Registry::start(Auth::Token {
        users: vec![("bob".into(), password.clone())],
        grants: vec![("bob".into(), "team/app".into())],
    })
    .await
    .expect("token-auth registry");
    app_image(&registry, "team/app").await;
    s.bed.node.trust_registry(&registry).unwrap();
    namespace_with_default_sa(&s.client, "dx-rate", &[]).await;
    namespace_with_default_sa(&s.client, "dx-rate-anon", &[]).await;
    put_source_secret(&s.client, "dx-rate", "bob", &password).await;
    let target = json!({"namespaces": {"names": ["dx-rate"]}});
    apply_rc(&s.client, static_rc("dx-rate", registry.host(), "dx-rate", target)).await;
    s.wait_pull_secrets("dx-rate", "default", &["dx-rate"]).await;
    registry.set_token_fault(Fault::Status {
        code: 429,
        retry_after: Some(60),
    });
    let image = format!("{}/team/app:1", registry.host());
    s.create_pod("dx-rate", "app", &image).await;
    s.create_pod("dx-rate-anon", "app", &image).await;
    let event = s.wait_pull_failed("dx-rate", "app").await;
    assert!(event.contains("429"), "{event}");
    s.wait_pull_failed("dx-rate-anon", "app").await;

    let all = diagnoses(&s, "dx-rate", Some(registry.ca_path())).await;
    assert_cause(of(&all, "app"), "RateLimited", Some("Authenticated"));
    let all = diagnoses(&s, "dx-rate-anon", Some(registry.ca_path())).await;
    assert_cause(of(&all, "app"), "RateLimited", Some("Anonymous"));
    operator_says(&s, "dx-rate", "app", "RateLimited/Authenticated").await;
    operator_says(&s, "dx-rate-anon", "app", "RateLimited/Anonymous").await;
    s.report();
}

/// A namespace whose Secrets an admission policy freezes: regcred cannot
/// roll the corrected source credential out there, so the namespace keeps
/// the older, wrong one while every other namespace gets the new one.
#[tokio::test]
async fn an_older_credential_left_in_a_namespace_is_a_stale_copy() {
    let s = Scene::new("stale_copy").await;
    let good = canary("dx-stale-good");
    let registry = alice_registry(&s, &good).await;
    namespace_with_default_sa(&s.client, "dx-stale", &[]).await;
    put_source_secret(&s.client, "dx-stale", "alice", &canary("dx-stale-old")).await;
    let target = json!({"namespaces": {"names": ["dx-stale"]}});
    apply_rc(&s.client, static_rc("dx-stale", registry.host(), "dx-stale", target)).await;
    s.wait_pull_secrets("dx-stale", "default", &["dx-stale"]).await;
    let rcs = Api::<regcred::api::RegistryCredential>::all(s.client.clone());
    let old_digest = eventually(WAIT, "the first credentialDigest", || async {
        rcs.get("dx-stale").await.ok()?.status?.credential_digest
    })
    .await;

    freeze_secrets(&s.client, "dx-stale", &["UPDATE", "DELETE"]).await;

    put_source_secret(&s.client, "dx-stale", "alice", &good).await;
    eventually(WAIT, "a new credentialDigest", || async {
        let digest = rcs.get("dx-stale").await.ok()?.status?.credential_digest?;
        (digest != old_digest).then_some(())
    })
    .await;
    s.create_pod("dx-stale", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    let event = s.wait_pull_failed("dx-stale", "app").await;
    assert!(event.contains("401 Unauthorized"), "{event}");

    let all = diagnoses(&s, "dx-stale", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialRejected", Some("StaleCopy"));
    assert!(
        evidence(d, "of RegistryCredential dx-stale").contains("older credential"),
        "{d:#}"
    );
    operator_says(&s, "dx-stale", "app", "CredentialRejected/StaleCopy").await;
    s.report();
}

/// regcred's Secret deleted where an admission policy stops it from coming
/// back: the kubelet reports the Secret it cannot retrieve
/// (`FailedToRetrieveImagePullSecret`) and pulls without it.
#[tokio::test]
async fn a_deleted_secret_regcred_cannot_restore_is_secret_missing() {
    let s = Scene::new("secret_deleted").await;
    namespace_with_default_sa(&s.client, "dx-deleted", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-deleted", json!({"namespaces": {"names": ["dx-deleted"]}})).await;
    s.wait_pull_secrets("dx-deleted", "default", &["dx-deleted"]).await;
    freeze_secrets(&s.client, "dx-deleted", &["CREATE"]).await;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "dx-deleted")
        .delete("dx-deleted", &Default::default())
        .await
        .unwrap();
    let pod = s
        .create_pod("dx-deleted", "app", &format!("{}/team/app:1", registry.host()))
        .await;
    assert_eq!(pod.spec.unwrap().image_pull_secrets.unwrap()[0].name, "dx-deleted");
    s.wait_pull_failed("dx-deleted", "app").await;

    let all = diagnoses(&s, "dx-deleted", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "CredentialMissing", Some("SecretMissing"));
    assert_eq!(evidence(d, "pod's Secret dx-deleted/dx-deleted"), "absent");
    assert!(
        evidence(d, "FailedToRetrieveImagePullSecret")
            .contains("Unable to retrieve some image pull secrets (dx-deleted)"),
        "{d:#}"
    );
    operator_says(&s, "dx-deleted", "app", "CredentialMissing/SecretMissing").await;
    s.report();
}

/// A user who may read pods, Events and ServiceAccounts in one namespace
/// only: the checks they may not run are listed as such, and the command
/// still answers (exit 0).
#[tokio::test]
async fn a_namespace_scoped_user_gets_an_answer_with_forbidden_checks_listed() {
    let s = Scene::new("namespace_scoped").await;
    namespace_with_default_sa(&s.client, "dx-rbac", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-rbac", json!({"namespaces": {"names": ["dx-rbac"]}})).await;
    s.wait_pull_secrets("dx-rbac", "default", &["dx-rbac"]).await;
    s.create_pod("dx-rbac", "app", &format!("{}/team/app:404", registry.host()))
        .await;
    s.wait_pull_failed("dx-rbac", "app").await;

    let role = Role {
        metadata: ObjectMeta {
            name: Some("pod-reader".into()),
            namespace: Some("dx-rbac".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["pods".into(), "events".into(), "serviceaccounts".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(s.client.clone(), "dx-rbac")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("pod-reader".into()),
            namespace: Some("dx-rbac".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "pod-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "dev".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(s.client.clone(), "dx-rbac")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let kubeconfig = s.bed.cp.kubeconfig_for("dev", &[]).unwrap();
    let ca = registry.ca_path().display().to_string();
    let run = diagnose(&kubeconfig, &["-n", "dx-rbac", "-o", "json", "--ca-bundle", &ca]).await;
    assert!(run.status.success(), "exit 0 with forbidden checks: {}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = of(doc["diagnoses"].as_array().unwrap(), "app");
    eprintln!("{}: as a namespace-scoped user:\n{d:#}", s.name);
    assert!(
        evidence(d, "kubelet's message").contains("not found"),
        "Events were read: {d:#}"
    );
    assert!(evidence(d, "RegistryCredentials").contains("forbidden"), "{d:#}");
    assert!(
        evidence(d, "pod's Secret dx-rbac/dx-rbac").contains("forbidden"),
        "{d:#}"
    );

    // A user who may not even list the pods gets an error and a failure status.
    let outsider = s.bed.cp.kubeconfig_for("outsider", &[]).unwrap();
    let run = diagnose(&outsider, &["-n", "dx-rbac"]).await;
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("listing pods in namespace dx-rbac"),
        "{}",
        run.stderr
    );
    s.report();
}

/// For each of `pods` (name, image) created in `ns`: how long after the
/// kubelet's `Failed to pull image` Event the operator's first
/// `ImagePullDiagnosed` is there, as a client watching the namespace sees
/// both. Also the operator's first label for each pod.
async fn diagnosis_latencies(s: &Scene, ns: &str, pods: &[(String, String)]) -> Vec<(Duration, String)> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    type Seen = std::collections::BTreeMap<String, (Option<Instant>, Option<(Instant, String)>)>;
    let seen = Arc::new(std::sync::Mutex::new(Seen::new()));
    let watching = {
        let seen = seen.clone();
        let events = Api::<Event>::namespaced(s.client.clone(), ns);
        tokio::spawn(async move {
            let mut stream = watcher(events, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(e)) = stream.next().await {
                let now = Instant::now();
                let message = e.message.clone().unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                let entry = seen
                    .entry(e.involved_object.name.clone().unwrap_or_default())
                    .or_default();
                match e.reason.as_deref() {
                    Some("Failed") if message.starts_with("Failed to pull image") => {
                        entry.0.get_or_insert(now);
                    }
                    Some("ImagePullDiagnosed") => {
                        let label = message.split(": ").next().unwrap_or_default().to_string();
                        entry.1.get_or_insert((now, label));
                    }
                    _ => {}
                }
            }
        })
    };
    // The watch is established before the first pod exists.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, image) in pods {
        s.create_pod(ns, name, image).await;
    }
    let latencies = eventually(
        Duration::from_secs(240),
        "every pod's pull failure diagnosed",
        || async {
            let seen = seen.lock().unwrap();
            let all: Vec<(Duration, String)> = seen
                .iter()
                .filter(|(pod, _)| pods.iter().any(|(name, _)| name == *pod))
                .filter_map(|(_, (kubelet, operator))| {
                    let (at, label) = operator.as_ref()?;
                    Some((at.saturating_duration_since(*kubelet.as_ref()?), label.clone()))
                })
                .collect();
            (all.len() == pods.len()).then_some(all)
        },
    )
    .await;
    watching.abort();
    latencies
}

fn bench_line(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    eprintln!(
        "BENCH diagnosis: {what}: kubelet Event -> ImagePullDiagnosed over {} pods: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}

/// The operator's `ImagePullDiagnosed` follows the kubelet's Event soon,
/// with a registry that answers and with one that accepts connections and
/// never answers (its check runs to the probe's bound: the diagnosis is
/// said first from what the API server and the kubelet's text show). Both
/// registries are covered by a RegistryCredential, so the operator checks
/// them (`--registry-checks=covered`).
/// Benchmark lines, not assertions on time; the causes are asserted.
#[tokio::test]
async fn the_diagnosis_follows_the_kubelet_at_once_even_when_the_registry_hangs() {
    const PODS: usize = 10;
    let s = Scene::new("diagnosis_latency_hanging").await;
    namespace_with_default_sa(&s.client, "dx-quick", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-quick", json!({"namespaces": {"names": ["dx-quick"]}})).await;
    s.wait_pull_secrets("dx-quick", "default", &["dx-quick"]).await;
    let answering: Vec<(String, String)> = (0..PODS)
        .map(|i| (format!("tag-{i}"), format!("{}/team/app:missing-{i}", registry.host())))
        .collect();
    // Accepts every connection, then says nothing: the node's pull and the
    // operator's check both wait for their own timeouts. The node pulls
    // from it over https only, as from the test registries.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let ca = regcred_testenv::registry::shared_ca_pem();
    route_host(&s.bed.node, &silent_addr, &silent_addr, ca).unwrap();
    namespace_with_default_sa(&s.client, "dx-hang", &[]).await;
    put_source_secret(&s.client, "dx-hang", "alice", "any").await;
    let target = json!({"namespaces": {"names": ["dx-hang"]}});
    apply_rc(&s.client, static_rc("dx-hang", &silent_addr, "dx-hang", target)).await;
    s.wait_pull_secrets("dx-hang", "default", &["dx-hang"]).await;
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let hanging: Vec<(String, String)> = (0..PODS)
        .map(|i| (format!("hang-{i}"), format!("{silent_addr}/team/app:{i}")))
        .collect();
    let (first, second) = futures::join!(
        diagnosis_latencies(&s, "dx-quick", &answering),
        diagnosis_latencies(&s, "dx-hang", &hanging),
    );
    held.abort();
    for (_, label) in &first {
        assert_eq!(label, "ImageNotFound/Tag", "{first:?}");
    }
    for (_, label) in &second {
        assert!(label.starts_with("RegistryUnreachable"), "{second:?}");
    }
    bench_line(
        "registry answering (missing tag)",
        first.into_iter().map(|(d, _)| d).collect(),
    );
    bench_line(
        "registry hanging (accepts TCP, never answers)",
        second.into_iter().map(|(d, _)| d).collect(),
    );
    s.report();
}

/// The operator away (frozen: its watches and writes stop) while one
/// namespace's Secret is deleted and another's copy is edited to an old
/// password; a pod in each fails to pull; the operator comes back. Its
/// re-sync repairs both namespaces — often before its diagnosis runs, when
/// the registry already serves the image with the pod's credential. Either
/// way the diagnosis names what the pull lacked, repaired, with the repair's
/// time, and an `ImagePullRepaired` Event follows on each pod.
#[tokio::test]
async fn a_cause_repaired_while_the_operator_came_back_is_named_with_the_repair() {
    use k8s_openapi::api::core::v1::Secret;
    let s = Scene::new("repaired_after_the_fact").await;
    let target = json!({"namespaces": {"names": ["dx-gone", "dx-edited"]}});
    for ns in ["dx-gone", "dx-edited"] {
        namespace_with_default_sa(&s.client, ns, &[]).await;
    }
    let (registry, _) = covered_registry(&s, "dx-after", target).await;
    for ns in ["dx-gone", "dx-edited"] {
        s.wait_pull_secrets(ns, "default", &["dx-after"]).await;
    }
    let image = format!("{}/team/app:1", registry.host());
    s.bed.operator.freeze();
    let away = Instant::now();
    Api::<Secret>::namespaced(s.client.clone(), "dx-gone")
        .delete("dx-after", &Default::default())
        .await
        .unwrap();
    use base64::Engine as _;
    let old = base64::engine::general_purpose::STANDARD.encode("alice:an-old-password");
    let config = json!({"auths": {registry.host(): {"auth": old}}}).to_string();
    let patch = json!({"data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}});
    Api::<Secret>::namespaced(s.client.clone(), "dx-edited")
        .patch(
            "dx-after",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    for ns in ["dx-gone", "dx-edited"] {
        s.create_pod(ns, "app", &image).await;
    }
    let gone = s.wait_pull_failed("dx-gone", "app").await;
    let edited = s.wait_pull_failed("dx-edited", "app").await;
    s.bed.operator.thaw();
    eprintln!(
        "{}: operator away {:?}; the kubelet said {gone:?} and {edited:?}",
        s.name,
        away.elapsed()
    );
    for (ns, label) in [
        ("dx-gone", "CredentialMissing/SecretMissing"),
        ("dx-edited", "CredentialRejected/StaleCopy"),
    ] {
        operator_says(&s, ns, "app", label).await;
        let repaired = s
            .wait_operator_event(ns, "app", "ImagePullRepaired", POD_TIMEOUT, |_| true)
            .await;
        eprintln!("{}: {ns}: {repaired:?}", s.name);
        let pods = Api::<Pod>::namespaced(s.client.clone(), ns);
        eventually(POD_TIMEOUT, &format!("pod {ns}/app running"), || async {
            let pod = pods.get("app").await.ok()?;
            (pod.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
        let entry = eventually(WAIT, &format!("{ns}/app repaired in status.pullFailures"), || async {
            let status = Api::<regcred::api::RegistryCredential>::all(s.client.clone())
                .get("dx-after")
                .await
                .ok()?
                .status?;
            status
                .pull_failures
                .into_iter()
                .find(|f| f.namespace == ns && f.repaired)
        })
        .await;
        let got = format!("{}/{}", entry.cause, entry.detail.clone().unwrap_or_default());
        assert_eq!(got, label, "{entry:?}");
        assert!(entry.repaired_at.is_some(), "the repair's time: {entry:?}");
    }
    s.report();
}

/// A pod of `image` in `ns` as [`Scene::create_pod`] writes it, with
/// `imagePullPolicy` and `imagePullSecrets` of the test's choosing.
async fn create_pod_with(s: &Scene, ns: &str, name: &str, image: &str, policy: &str, secrets: &[&str]) -> Pod {
    let secrets: Vec<Value> = secrets.iter().map(|n| json!({"name": n})).collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": s.node().name(),
            "hostNetwork": true,
            "dnsPolicy": "Default",
            "serviceAccountName": "default",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": secrets,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": policy}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(s.client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"))
}

/// Wait until the pod's container waits with `reason`; returns its waiting message.
async fn wait_waiting(s: &Scene, ns: &str, pod: &str, reason: &str) -> String {
    let pods = Api::<Pod>::namespaced(s.client.clone(), ns);
    eventually(POD_TIMEOUT, &format!("{ns}/{pod} waiting in {reason}"), || async {
        let p = pods.get(pod).await.ok()?;
        let waiting = p.status?.container_statuses?.first()?.state.clone()?.waiting?;
        (waiting.reason.as_deref() == Some(reason)).then(|| waiting.message.unwrap_or_default())
    })
    .await
}

/// The kubelet's own refusals, before any registry: a reference that does
/// not parse (`InvalidImageName`) and `imagePullPolicy: Never` for an image
/// the node does not hold (`ErrImageNeverPull`).
#[tokio::test]
async fn an_invalid_reference_and_a_never_pull_policy_are_named() {
    let s = Scene::new("kubelet_refusals").await;
    namespace_with_default_sa(&s.client, "dx-kubelet", &[]).await;
    create_pod_with(&s, "dx-kubelet", "invalid", "Team/App:1", "IfNotPresent", &[]).await;
    create_pod_with(
        &s,
        "dx-kubelet",
        "never",
        "registry.regcred-test.invalid/team/app:1",
        "Never",
        &[],
    )
    .await;
    let invalid = wait_waiting(&s, "dx-kubelet", "invalid", "InvalidImageName").await;
    let never = wait_waiting(&s, "dx-kubelet", "never", "ErrImageNeverPull").await;
    eprintln!("{}: the kubelet said {invalid:?} and {never:?}", s.name);

    let all = diagnoses(&s, "dx-kubelet", None).await;
    let d = of(&all, "invalid");
    assert_cause(d, "InvalidImage", Some("Reference"));
    assert!(
        d["message"].as_str().unwrap().contains("not a valid image reference"),
        "{d:#}"
    );
    let d = of(&all, "never");
    assert_cause(d, "ImageNotPresent", Some("PullPolicyNever"));
    assert!(
        !d["evidence"].to_string().contains("manifest HEAD"),
        "nothing to ask a registry: {d:#}"
    );
    assert!(
        evidence(d, "holds registry.regcred-test.invalid/team/app:1").starts_with("no"),
        "{d:#}"
    );
    operator_says(&s, "dx-kubelet", "invalid", "InvalidImage/Reference").await;
    operator_says(&s, "dx-kubelet", "never", "ImageNotPresent/PullPolicyNever").await;
    s.report();
}

/// Issue 20's reproduction: `regcred diagnose` where the registry's CA is
/// not trusted (no `--ca-bundle`), and as a user who may read only pods and
/// Events, names a missing tag from the kubelet's `not found` and says what
/// it could not confirm and how to; with the CA it proves it.
#[tokio::test]
async fn without_the_registrys_ca_or_the_rbac_a_missing_tag_is_still_image_not_found() {
    let s = Scene::new("degraded").await;
    namespace_with_default_sa(&s.client, "dx-noca", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-noca", json!({"namespaces": {"names": ["dx-noca"]}})).await;
    s.wait_pull_secrets("dx-noca", "default", &["dx-noca"]).await;
    s.create_pod("dx-noca", "app", &format!("{}/team/app:2", registry.host()))
        .await;
    let event = s.wait_pull_failed("dx-noca", "app").await;
    assert!(event.contains("not found"), "{event}");

    let all = diagnoses(&s, "dx-noca", None).await;
    let d = of(&all, "app");
    assert_cause(d, "ImageNotFound", Some("Tag"));
    assert!(evidence(d, "manifest HEAD").starts_with("no answer"), "{d:#}");
    let note = evidence(d, "not confirmed with registry");
    assert!(note.contains("--ca-bundle"), "{d:#}");

    let role = json!({"metadata": {"name": "pod-reader", "namespace": "dx-noca"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list"]}]});
    Api::<Role>::namespaced(s.client.clone(), "dx-noca")
        .create(&PostParams::default(), &serde_json::from_value(role).unwrap())
        .await
        .unwrap();
    let binding = json!({"metadata": {"name": "pod-reader", "namespace": "dx-noca"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "dx-noca-dev", "apiGroup": "rbac.authorization.k8s.io"}]});
    Api::<RoleBinding>::namespaced(s.client.clone(), "dx-noca")
        .create(&PostParams::default(), &serde_json::from_value(binding).unwrap())
        .await
        .unwrap();
    let kubeconfig = s.bed.cp.kubeconfig_for("dx-noca-dev", &[]).unwrap();
    let ca = registry.ca_path().display().to_string();
    let run = diagnose(&kubeconfig, &["-n", "dx-noca", "-o", "json", "--ca-bundle", &ca]).await;
    assert!(run.status.success(), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = of(doc["diagnoses"].as_array().unwrap(), "app");
    eprintln!("{}: as a user who reads pods and Events only:\n{d:#}", s.name);
    assert_cause(d, "ImageNotFound", Some("Tag"));
    assert!(
        evidence(d, "not confirmed with registry").contains("get Secrets in namespace dx-noca"),
        "{d:#}"
    );

    let all = diagnoses(&s, "dx-noca", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "ImageNotFound", Some("Tag"));
    assert!(evidence(d, "manifest HEAD").starts_with("404"), "{d:#}");
    assert!(!d["evidence"].to_string().contains("not confirmed"), "proven: {d:#}");
    s.report();
}

/// A manifest whose layer the registry no longer holds (a pull-through
/// cache that lost it): the manifest HEAD answers 200, the layer's fetch 404.
#[tokio::test]
async fn a_layer_missing_behind_its_manifest_is_image_not_found_blob() {
    let s = Scene::new("blob").await;
    let registry = Registry::start(Auth::Anonymous).await.expect("anonymous registry");
    // A layer of its own, so that the node's content store cannot hold it already.
    let file = registry.dir().join("only-here.txt");
    std::fs::write(&file, canary("dx-blob")).unwrap();
    let layer = regcred_testenv::oci::layer_from_files(&[("/only-here.txt", &file, 0o644)]).unwrap();
    let digest = regcred_testenv::oci::sha256(&layer);
    let image = regcred_testenv::oci::Image::new(vec![layer], json!({"Entrypoint": ["/nothing"]}));
    registry.push_oci_image("team/blob", "1", &image).await.unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(registry.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let deleted = http
        .delete(format!("https://{}/v2/team/blob/blobs/{digest}", registry.host()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "deleting the layer: {deleted:?}");
    s.bed.node.trust_registry(&registry).unwrap();
    namespace_with_default_sa(&s.client, "dx-blob", &[]).await;
    s.create_pod("dx-blob", "app", &format!("{}/team/blob:1", registry.host()))
        .await;
    let event = s.wait_pull_failed("dx-blob", "app").await;
    eprintln!("{}: the kubelet said {event:?}", s.name);

    let all = diagnoses(&s, "dx-blob", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "ImageNotFound", Some("Blob"));
    assert!(evidence(d, "manifest HEAD").starts_with("200"), "{d:#}");
    operator_says(&s, "dx-blob", "app", "ImageNotFound/Blob").await;
    s.report();
}

/// A pod naming a pull Secret created only after its pulls began: the
/// kubelet says `FailedToRetrieveImagePullSecret` and pulls without it;
/// once the Secret is there the diagnosis says its next retry passes, and
/// it does.
#[tokio::test]
async fn a_secret_created_after_the_pull_began_is_not_yet_readable() {
    let s = Scene::new("not_yet_readable").await;
    let password = canary("dx-late");
    let registry = alice_registry(&s, &password).await;
    namespace_with_default_sa(&s.client, "dx-late", &[]).await;
    let image = format!("{}/team/app:1", registry.host());
    create_pod_with(&s, "dx-late", "app", &image, "Always", &["late"]).await;
    // Two failed pulls: the kubelet's next retry is then 20 s away, time to ask.
    let events = Api::<Event>::namespaced(s.client.clone(), "dx-late");
    let params = ListParams::default().fields("involvedObject.name=app,reason=Failed");
    eventually(POD_TIMEOUT, "two failed pulls of dx-late/app", || async {
        let failed: i32 = (events.list(&params).await.ok()?.items.into_iter())
            .filter(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Failed to pull image"))
            })
            .map(|e| e.count.unwrap_or(1))
            .sum();
        (failed >= 2).then_some(())
    })
    .await;
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let config = json!({"auths": {registry.host(): {"auth": auth}}}).to_string();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "late"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "dx-late")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ca = registry.ca_path().display().to_string();
    let run = diagnose(
        s.bed.cp.kubeconfig(),
        &["-n", "dx-late", "-o", "json", "--ca-bundle", &ca],
    )
    .await;
    assert!(run.status.success(), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let d = of(doc["diagnoses"].as_array().unwrap(), "app");
    eprintln!("{}: {d:#}", s.name);
    assert_cause(d, "CredentialMissing", Some("NotYetReadable"));
    assert!(
        evidence(d, "FailedToRetrieveImagePullSecret").contains("(late)"),
        "{d:#}"
    );
    assert!(!run.stdout.contains(&password), "no password in the output");
    let pods = Api::<Pod>::namespaced(s.client.clone(), "dx-late");
    eventually(POD_TIMEOUT, "the kubelet's next retry to pass", || async {
        let pod = pods.get("app").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    s.report();
}

/// A Google token lives 20 s and regcred renews once a minute. A first pod
/// refused with an expired token has the diagnosis mint at once (its
/// repair); a second, refused when that token has expired in turn, falls
/// within the repairs' five minutes, so the scheduled renewal repairs it:
/// the diagnosis names `CredentialExpired`, and `ImagePullRepaired` follows
/// on the pod when the renewal has rewritten the namespace's Secret.
#[tokio::test]
async fn a_scheduled_renewal_that_repairs_an_expired_pull_is_announced() {
    const HOST: &str = "gar-scheduled.regcred.test";
    const LIFETIME: Duration = Duration::from_secs(20);
    let s = Scene::new("renewal_repairs").await;
    let (google, _registry) = short_lived_google(&s, "dx-scheduled", HOST, LIFETIME, &[]).await;
    let rcs = Api::<regcred::api::RegistryCredential>::all(s.client.clone());
    let issued = || async {
        let status = rcs.get("dx-scheduled").await.ok()?.status?;
        Some((status.last_issued_time?.0, status.not_after?.0))
    };
    let until_expired = |not_after: jiff::Timestamp| {
        let left = not_after.duration_since(jiff::Timestamp::now()).as_secs_f64().max(0.0);
        tokio::time::sleep(Duration::from_secs_f64(left + 1.0))
    };
    let (_, not_after) = eventually(WAIT, "the first credential in status", issued).await;
    until_expired(not_after).await;
    s.create_pod("dx-scheduled", "first", &format!("{HOST}/team/app:1"))
        .await;
    s.wait_operator_event("dx-scheduled", "first", "ImagePullRepaired", POD_TIMEOUT, |n| {
        n.contains("Minted a new credential")
    })
    .await;
    let (minted, not_after) = eventually(WAIT, "the minted credential in status", issued).await;
    until_expired(not_after).await;
    let scheduled = minted + jiff::SignedDuration::from_secs(60);
    assert!(
        jiff::Timestamp::now() < scheduled - jiff::SignedDuration::from_secs(15),
        "too late to fail before the scheduled renewal"
    );
    s.create_pod("dx-scheduled", "second", &format!("{HOST}/team/app:1"))
        .await;
    let event = s.wait_pull_failed("dx-scheduled", "second").await;
    assert!(event.contains("401 Unauthorized"), "{event}");
    operator_says(&s, "dx-scheduled", "second", "CredentialExpired").await;
    let repaired = s
        .wait_operator_event("dx-scheduled", "second", "ImagePullRepaired", POD_TIMEOUT, |_| true)
        .await;
    eprintln!("{}: second pod: {repaired:?}", s.name);
    assert!(
        repaired.iter().all(|n| !n.contains("Minted a new credential")),
        "within five minutes of the first mint the diagnosis does not mint again: {repaired:?}"
    );
    let entry = eventually(WAIT, "the second pod repaired in status", || async {
        let status = rcs.get("dx-scheduled").await.ok()?.status?;
        status
            .pull_failures
            .into_iter()
            .find(|f| f.pod == "second" && f.repaired)
    })
    .await;
    assert_eq!(entry.cause, "CredentialExpired", "{entry:?}");
    let at = entry.repaired_at.as_ref().expect("the repair's time").0;
    assert!(
        at >= scheduled - jiff::SignedDuration::from_secs(5),
        "{at} vs {scheduled}"
    );
    // Whether the pod then runs depends on the kubelet's back-off landing
    // within the renewed token's 20 s, which this test does not control.
    assert!(google.issued() >= 3, "{} tokens issued", google.issued());
    s.report();
}

/// Kubernetes 1.35's default, `KubeletEnsureSecretPulledImages` (on in the
/// test node's kubelet): an image a pod of a targeted namespace pulled with
/// regcred's credential is on the node, but a pod of a namespace regcred
/// does not target, with `imagePullPolicy: Never`, may not use it. The
/// kubelet says ErrImageNeverPull as if the image were absent; the
/// diagnosis names ImageNotPresent/PullPolicyNever, and its evidence shows
/// that the node holds the image.
#[tokio::test]
async fn a_cached_image_the_pods_credentials_did_not_pull_is_not_present_under_never() {
    let s = Scene::new("ensure_secret_pulled").await;
    namespace_with_default_sa(&s.client, "dx-pulled", &[]).await;
    namespace_with_default_sa(&s.client, "dx-unpulled", &[]).await;
    let (registry, _) = covered_registry(&s, "dx-pulled", json!({"namespaces": {"names": ["dx-pulled"]}})).await;
    s.wait_pull_secrets("dx-pulled", "default", &["dx-pulled"]).await;
    let image = format!("{}/team/app:1", registry.host());
    s.create_pod("dx-pulled", "app", &image).await;
    let pods = Api::<Pod>::namespaced(s.client.clone(), "dx-pulled");
    eventually(POD_TIMEOUT, "the targeted namespace's pod running", || async {
        let pod = pods.get("app").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(s.client.clone());
    eventually(POD_TIMEOUT, "the node listing the image", || async {
        let node = nodes.get(s.node().name()).await.ok()?;
        let images = node.status?.images?;
        images
            .iter()
            .flat_map(|i| i.names.iter().flatten())
            .any(|n| *n == image)
            .then_some(())
    })
    .await;

    create_pod_with(&s, "dx-unpulled", "app", &image, "Never", &[]).await;
    let never = wait_waiting(&s, "dx-unpulled", "app", "ErrImageNeverPull").await;
    eprintln!("{}: the kubelet said {never:?}", s.name);
    let all = diagnoses(&s, "dx-unpulled", Some(registry.ca_path())).await;
    let d = of(&all, "app");
    assert_cause(d, "ImageNotPresent", Some("PullPolicyNever"));
    assert!(evidence(d, &format!("holds {image}")).starts_with("yes"), "{d:#}");
    operator_says(&s, "dx-unpulled", "app", "ImageNotPresent/PullPolicyNever").await;
    s.report();
}

/// `identity: PerServiceAccount` (GCR, against the Google STS fake): a pod
/// whose ServiceAccount names no Google service account is
/// `CredentialMissing/IdentityMissing` with the annotation to add, and one
/// whose Google service account the fake refuses is
/// `CredentialRejected/Refused` naming it and what must trust whom. Both
/// pulls are the kubelet's own, without a credential: regcred wrote none.
#[tokio::test]
async fn per_service_account_pulls_name_the_missing_annotation_and_the_refused_identity() {
    use regcred_testenv::fakes::google_sts::GoogleSts;
    const HOST: &str = "psa.gar.regcred.test";
    const NS: &str = "dx-identity";
    const REFUSED: &str = "refused@proj.iam.gserviceaccount.com";
    const PROVIDER: &str = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k";
    let s = Scene::new("per_service_account").await;
    let sts = GoogleSts::start().await.expect("Google STS fake");
    sts.deny_service_account(REFUSED);
    let owner = sts.token_owner();
    let registry = Registry::start(Auth::Verified {
        verify: Arc::new(move |user, password| user == "oauth2accesstoken" && owner(password).is_some()),
        repositories: vec!["team/app".into()],
    })
    .await
    .expect("registry accepting only the fake's Google tokens");
    app_image(&registry, "team/app").await;
    s.bed.node.route_registry(HOST, &registry).unwrap();
    namespace_with_default_sa(&s.client, NS, &[]).await;
    let builder: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "builder", "namespace": NS,
                     "annotations": {"iam.gke.io/gcp-service-account": REFUSED}},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(s.client.clone(), NS)
        .create(&PostParams::default(), &builder)
        .await
        .expect("ServiceAccount builder");
    let provider = json!({"gcr": {
        "registries": [HOST],
        "identity": "PerServiceAccount",
        "workloadIdentityProvider": PROVIDER,
        "stsEndpointUrl": sts.url(),
        "iamCredentialsEndpointUrl": sts.url(),
    }});
    let spec = json!({
        "provider": provider,
        "target": {"namespaces": {"names": [NS]}, "serviceAccounts": {"names": ["default", "builder"]}},
        "healthCheck": {"mode": "Disabled"},
    });
    apply_rc(&s.client, registry_credential(NS, spec)).await;
    let rcs = Api::<regcred::api::RegistryCredential>::all(s.client.clone());
    let failed = eventually(
        POD_TIMEOUT,
        "both ServiceAccounts in status.failedServiceAccounts",
        || async {
            let failed = rcs.get(NS).await.ok()?.status?.failed_service_accounts;
            let reason = |sa: &str| failed.iter().find(|f| f.name == sa).map(|f| f.reason.clone());
            (reason("default")? == "IdentityMissing" && reason("builder")? == "IdentityRefused").then_some(failed)
        },
    )
    .await;
    eprintln!("{}: status.failedServiceAccounts {failed:#?}", s.name);

    for (pod, sa) in [("plain", "default"), ("builder", "builder")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": pod, "namespace": NS},
            "spec": {
                "nodeName": s.node().name(),
                "hostNetwork": true,
                "dnsPolicy": "Default",
                "serviceAccountName": sa,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": format!("{HOST}/team/app:1"), "imagePullPolicy": "Always"}],
            },
        }))
        .unwrap();
        Api::<Pod>::namespaced(s.client.clone(), NS)
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod created");
    }
    s.wait_pull_failed(NS, "plain").await;
    s.wait_pull_failed(NS, "builder").await;

    let all = diagnoses(&s, NS, None).await;
    let plain = of(&all, "plain");
    assert_cause(plain, "CredentialMissing", Some("IdentityMissing"));
    let fix = plain["fix"].as_str().unwrap();
    assert!(
        fix.starts_with(&format!(
            "annotate ServiceAccount {NS}/default with iam.gke.io/gcp-service-account=<Google service account email>"
        )) && fix.contains("Secret dx-identity-default"),
        "{plain:#}"
    );
    assert!(
        evidence(plain, "annotation iam.gke.io/gcp-service-account").starts_with("absent"),
        "{plain:#}"
    );
    let refused = of(&all, "builder");
    assert_cause(refused, "CredentialRejected", Some("Refused"));
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Google service account {REFUSED}")),
        "{refused:#}"
    );
    let fix = refused["fix"].as_str().unwrap();
    assert!(
        fix.contains("roles/iam.workloadIdentityUser")
            && fix.contains(&format!(
                "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/\
                 system:serviceaccount:{NS}:builder"
            )),
        "{refused:#}"
    );
    assert!(
        evidence(refused, "status.failedServiceAccounts").starts_with("IdentityRefused"),
        "{refused:#}"
    );
    operator_says(&s, NS, "plain", "CredentialMissing/IdentityMissing").await;
    operator_says(&s, NS, "builder", "CredentialRejected/Refused").await;
    s.report();
}
