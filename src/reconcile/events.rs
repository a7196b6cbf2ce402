//! Events as data: steps return [`Note`]s, and [`publish`] sends them, the
//! one place where reconcile talks to the Events API.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use crate::api::RegistryCredential;

/// One Event to publish on the RegistryCredential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub action: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            action,
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, action: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, message)
        }
    }
}

/// regcred's Events, each note its own Event. kube's [`Recorder`] folds an
/// Event with the type, reason and action of one it published on the same
/// object in the last 6 minutes into that one's series and keeps the first
/// note; regcred's later notes say something new (a diagnosis its registry
/// check refined, a repair after a diagnosis, another namespace refused).
/// Repeats are limited where they arise instead: Events on a
/// RegistryCredential mark transitions, and those on a pod come once per
/// pod, image and cause in 10 minutes (`diagnosis::repair::EVENT_INTERVAL`).
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
}

impl Publisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Create `event` about `regarding` as a new Event (never a series
    /// update of an earlier one).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(event, regarding)
            .await
    }
}

/// Publish `notes` on `rc`. A failed publish is logged, never an error:
/// Events are for people, and the next transition brings the next one.
pub async fn publish(publisher: &Publisher, rc: &RegistryCredential, notes: Vec<Note>) {
    for note in notes {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason,
            note: Some(note.message.chars().take(1000).collect()),
            action: note.action.into(),
            secondary: None,
        };
        if let Err(e) = publisher.publish(&event, &rc.object_ref(&())).await {
            warn!(error = %e, "publishing an Event failed");
        }
    }
}
