//! Events as data: steps return [`Note`]s, and [`publish`] sends them, the
//! one place where reconcile talks to the Events API.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
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

/// Publish `notes` on `rc`. A failed publish is logged, never an error:
/// Events are for people, and the next transition brings the next one.
pub async fn publish(recorder: &Recorder, rc: &RegistryCredential, notes: Vec<Note>) {
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
        if let Err(e) = recorder.publish(&event, &rc.object_ref(&())).await {
            warn!(error = %e, "publishing an Event failed");
        }
    }
}
