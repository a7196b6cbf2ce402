//! One pod's failed pulls, diagnosed: its containers waiting in
//! `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName` or
//! `ErrImageNeverPull`, the kubelet's Events about them, and
//! a [`Diagnosis`] each. The operator's watch and `regcred diagnose` both
//! call [`diagnose_pod`].

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::decide::FAILED_TO_RETRIEVE;
use super::gather::not_read;
use super::{Diagnosis, Evidence, Target, decide, gather};

/// Waiting reasons of a container whose image the kubelet could not get:
/// a failed pull and its back-off, a reference that does not parse, and a
/// pull policy of Never.
pub(super) const PULL_FAILURES: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
/// Reasons of the kubelet's Events about image pulls.
const EVENT_REASONS: [&str; 5] = [
    "Failed",
    "BackOff",
    "FailedToRetrieveImagePullSecret",
    "ErrImageNeverPull",
    "InspectFailed",
];

/// The statuses of `pod`'s init containers, then of its containers.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status.iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    })
}

/// The containers of `pod` waiting on a failed pull.
fn failing_containers(pod: &Pod) -> Vec<&ContainerStatus> {
    container_statuses(pod)
        .filter(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .is_some_and(|r| PULL_FAILURES.contains(&r))
        })
        .collect()
}

/// Whether a container of `pod` waits on a failed pull now.
fn pull_failing(pod: &Pod) -> bool {
    !failing_containers(pod).is_empty()
}

/// Where a pod named by one of the kubelet's pull Events stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// A container waits on a failed pull.
    Failing,
    /// A container has not started and waits on nothing else: its pull may
    /// be under way, or failed a moment before the kubelet's status says so.
    Pending,
    /// Every container started, ended, or waits for another reason (a
    /// crash loop, a missing ConfigMap): nothing to wait for. The kubelet
    /// repeats `FailedToRetrieveImagePullSecret` at each sync of a running
    /// pod whose pull Secret is missing.
    Settled,
}

/// Waiting reasons of a container that has not started yet and may still
/// be pulling.
const NOT_STARTED: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Where `pod` stands, from its status alone.
pub fn pull_state(pod: &Pod) -> PullState {
    if pull_failing(pod) {
        return PullState::Failing;
    }
    let Some(status) = pod.status.as_ref() else {
        return PullState::Pending;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return PullState::Settled;
    }
    let statuses: Vec<&ContainerStatus> = container_statuses(pod).collect();
    let declared = pod
        .spec
        .as_ref()
        .map(|s| s.init_containers.as_ref().map_or(0, Vec::len) + s.containers.len())
        .unwrap_or_default();
    let not_started = statuses.iter().any(|c| {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        c.state
            .as_ref()
            .is_none_or(|s| s.running.is_none() && s.terminated.is_none() && s.waiting.is_none())
            || waiting.is_some_and(|w| w.reason.as_deref().is_none_or(|r| NOT_STARTED.contains(&r)))
    });
    if statuses.len() < declared || not_started {
        PullState::Pending
    } else {
        PullState::Settled
    }
}

/// A diagnosis per container of `pod` that is waiting on a failed pull.
/// For one the kubelet will not pull for (`ErrImageNeverPull`), whether its
/// node holds the image is evidence too (`regcred diagnose` only: the
/// operator is not given Nodes to read, and its Events carry no evidence).
pub async fn diagnose_pod(client: &Client, http: &reqwest::Client, pod: &Pod) -> Vec<Diagnosis> {
    let mut diagnoses = Vec::new();
    for mut target in pull_targets(client, pod).await {
        if waiting_reason(pod, &target.container) == Some("ErrImageNeverPull") {
            let held = node_holds_image(client, pod, &target.image).await;
            target.evidence.push(held);
        }
        diagnoses.push(decide(gather(client, http, target).await));
    }
    diagnoses
}

/// The waiting reason of `container` of `pod`.
fn waiting_reason<'p>(pod: &'p Pod, container: &str) -> Option<&'p str> {
    failing_containers(pod)
        .into_iter()
        .find(|c| c.name == container)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
}

/// Whether the pod's node lists `image` in its `status.images`: absent, or
/// present and refused to this pod because its credentials did not pull it
/// (Kubernetes 1.35+, `KubeletEnsureSecretPulledImages`), which the kubelet
/// reports alike.
async fn node_holds_image(client: &Client, pod: &Pod, image: &str) -> Evidence {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let check = format!("node {node} holds {image}");
    let node = match Api::<Node>::all(client.clone()).get(&node).await {
        Ok(node) => node,
        Err(e) => return Evidence::new(check, not_read(&e)),
    };
    let want = normalized(image);
    let held = node
        .status
        .iter()
        .flat_map(|s| s.images.iter().flatten())
        .flat_map(|i| i.names.iter().flatten())
        .any(|name| normalized(name) == want);
    Evidence::new(
        check,
        if held {
            "yes, in its status.images: the kubelet refused a cached image that no credential of this pod pulled \
             (Kubernetes 1.35+, KubeletEnsureSecretPulledImages)"
        } else {
            "no, not in its status.images (which lists at most 50 images, the largest first)"
        },
    )
}

/// `repository:tag` or `repository@digest`, the repository as the kubelet
/// normalizes it (`nginx` → `docker.io/library/nginx`), the tag `latest` by default.
fn normalized(image: &str) -> String {
    let repository = crate::registry::repo_to_pull(image);
    match image.split_once('@') {
        Some((_, digest)) => format!("{repository}@{digest}"),
        None => match image.rsplit_once(':') {
            Some((_, tag)) if !tag.contains('/') => format!("{repository}:{tag}"),
            _ => format!("{repository}:latest"),
        },
    }
}

/// Each container of `pod` waiting on a failed pull, with what the kubelet
/// said about it.
pub async fn pull_targets<'a>(client: &Client, pod: &'a Pod) -> Vec<Target<'a>> {
    let failing = failing_containers(pod);
    if failing.is_empty() {
        return Vec::new();
    }
    let events = pull_events(client, pod).await;
    let mut targets = Vec::new();
    for status in failing {
        let image = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .find(|c| c.name == status.name)
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| status.image.clone());
        let mut messages: Vec<String> = status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.clone())
            .into_iter()
            .collect();
        let mut evidence = Vec::new();
        match &events {
            Ok(events) => {
                let mut reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
                reasons.sort_unstable();
                reasons.dedup();
                evidence.push(Evidence::new(
                    "kubelet Events",
                    if reasons.is_empty() {
                        "none left about image pulls".to_string()
                    } else {
                        format!("reasons [{}]", reasons.join(", "))
                    },
                ));
                if let Some(message) = events
                    .iter()
                    .find(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
                    .and_then(|e| e.message.clone())
                {
                    evidence.push(Evidence::new(FAILED_TO_RETRIEVE, message));
                }
                let field_path = format!("{{{}}}", status.name);
                messages.extend(
                    events
                        .iter()
                        .filter(|e| {
                            e.involved_object
                                .field_path
                                .as_deref()
                                .is_none_or(|p| p.is_empty() || p.ends_with(&field_path))
                        })
                        .filter_map(|e| e.message.clone()),
                );
            }
            Err(why) => evidence.push(Evidence::new("kubelet Events", why.clone())),
        }
        targets.push(Target {
            pod,
            container: status.name.clone(),
            image,
            messages,
            evidence,
            failed_at: events.as_deref().ok().and_then(super::history::last_failure),
        });
    }
    targets
}

/// The kubelet's image-pull Events about this pod (this incarnation), newest first.
async fn pull_events(client: &Client, pod: &Pod) -> Result<Vec<Event>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=Pod,involvedObject.name={}",
        pod.name_any()
    ));
    let list = Api::<Event>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await
        .map_err(|e| not_read(&e))?;
    let uid = pod.uid();
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| uid.is_none() || e.involved_object.uid == uid)
        .filter(|e| e.reason.as_deref().is_some_and(|r| EVENT_REASONS.contains(&r)))
        .collect();
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| std::cmp::Reverse(when(e)));
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::{PullState, normalized, pull_state};
    use k8s_openapi::api::core::v1::Pod;

    fn pod(phase: &str, states: &[serde_json::Value]) -> Pod {
        let statuses: Vec<serde_json::Value> = states
            .iter()
            .enumerate()
            .map(|(i, state)| serde_json::json!({"name": format!("c{i}"), "image": "app:1", "imageID": "", "ready": false, "restartCount": 0, "state": state}))
            .collect();
        let containers: Vec<serde_json::Value> = (0..states.len().max(1))
            .map(|i| serde_json::json!({"name": format!("c{i}"), "image": "app:1"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"containers": containers},
            "status": {"phase": phase, "containerStatuses": statuses},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_is_waited_for_only_while_a_pull_may_be_under_way() {
        let waiting = |reason: &str| serde_json::json!({"waiting": {"reason": reason}});
        let running = serde_json::json!({"running": {}});
        let cases = [
            ("no status yet", pod("Pending", &[]), PullState::Pending),
            (
                "creating",
                pod("Pending", &[waiting("ContainerCreating")]),
                PullState::Pending,
            ),
            (
                "back-off",
                pod("Pending", &[waiting("ImagePullBackOff")]),
                PullState::Failing,
            ),
            (
                "one running, one failing",
                pod("Pending", &[running.clone(), waiting("ErrImagePull")]),
                PullState::Failing,
            ),
            (
                "running",
                pod("Running", std::slice::from_ref(&running)),
                PullState::Settled,
            ),
            (
                "crash loop",
                pod("Running", &[waiting("CrashLoopBackOff")]),
                PullState::Settled,
            ),
            (
                "one running, one creating",
                pod("Pending", &[running, waiting("ContainerCreating")]),
                PullState::Pending,
            ),
            (
                "done",
                pod("Succeeded", &[serde_json::json!({"terminated": {"exitCode": 0}})]),
                PullState::Settled,
            ),
        ];
        for (what, pod, want) in cases {
            assert_eq!(pull_state(&pod), want, "{what}");
        }
    }

    #[test]
    fn images_compare_as_the_kubelet_names_them() {
        assert_eq!(normalized("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalized("docker.io/library/nginx:latest"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(normalized("127.0.0.1:5000/team/app:1"), "127.0.0.1:5000/team/app:1");
        assert_eq!(normalized("127.0.0.1:5000/team/app"), "127.0.0.1:5000/team/app:latest");
        assert_eq!(normalized("reg.io/team/app@sha256:abcd"), "reg.io/team/app@sha256:abcd");
    }
}
