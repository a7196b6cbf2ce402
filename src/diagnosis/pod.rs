//! One pod's failed pulls, diagnosed: its containers waiting in
//! `ErrImagePull` or `ImagePullBackOff`, the kubelet's Events about them, and
//! a [`Diagnosis`] each. The operator's watch and `regcred diagnose` both
//! call [`diagnose_pod`].

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::gather::not_read;
use super::{Diagnosis, Evidence, Target, decide, gather};

/// Waiting reasons of a container whose image pull failed.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
/// Reasons of the kubelet's Events about image pulls.
const EVENT_REASONS: [&str; 5] = [
    "Failed",
    "BackOff",
    "FailedToRetrieveImagePullSecret",
    "ErrImageNeverPull",
    "InspectFailed",
];

/// The containers of `pod` waiting on a failed pull.
fn failing_containers(pod: &Pod) -> Vec<&ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
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
pub fn pull_failing(pod: &Pod) -> bool {
    !failing_containers(pod).is_empty()
}

/// A diagnosis per container of `pod` that is waiting on a failed pull.
pub async fn diagnose_pod(client: &Client, http: &reqwest::Client, pod: &Pod) -> Vec<Diagnosis> {
    let failing = failing_containers(pod);
    if failing.is_empty() {
        return Vec::new();
    }
    let events = pull_events(client, pod).await;
    let mut diagnoses = Vec::new();
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
                    evidence.push(Evidence::new("kubelet's FailedToRetrieveImagePullSecret", message));
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
        let target = Target {
            pod,
            container: &status.name,
            image: &image,
            messages,
            evidence,
        };
        diagnoses.push(decide(gather(client, http, target).await));
    }
    diagnoses
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
