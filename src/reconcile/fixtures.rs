//! Objects for in-process tests of the pipeline's pure steps: the world a
//! reconcile sees, without a control plane.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cond::Cond;
use super::credential::{self, Current, Fingerprint};
use super::fanout::FanOut;
use super::pull_auth;
use crate::api::{
    FailedNamespace, Provider, RegistryCredential, RegistryCredentialSpec, StaticProvider, StaticSecretRef,
};
use crate::cache::{Kept, KeptNamespace};
use crate::dockerconfig::{self, RegistryAuth};
use crate::providers::Credential;
use crate::redact::Sensitive;

pub fn t(s: &str) -> Timestamp {
    s.parse().expect("RFC 3339")
}

/// RegistryCredential `hub`: static, docker.io, source Secret `hub`, uid `uid-hub`.
pub fn rc() -> RegistryCredential {
    let mut rc = RegistryCredential::new(
        "hub",
        RegistryCredentialSpec {
            provider: Provider {
                static_: Some(StaticProvider {
                    registry: "docker.io".into(),
                    secret_ref: StaticSecretRef {
                        name: "hub".into(),
                        username_key: "username".into(),
                        password_key: "password".into(),
                    },
                }),
                ..Default::default()
            },
            target: Default::default(),
            renew_before: None,
            health_check: Default::default(),
        },
    );
    rc.metadata.uid = Some("uid-hub".into());
    rc.metadata.generation = Some(1);
    rc
}

pub fn namespaces(names: &[&str]) -> Vec<Arc<KeptNamespace>> {
    names
        .iter()
        .map(|n| {
            Arc::new(KeptNamespace::keep(&Namespace {
                metadata: ObjectMeta {
                    name: Some(n.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            }))
        })
        .collect()
}

pub fn service_account(ns: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A held static credential for docker.io.
pub fn current(password: &str, issued: Timestamp) -> Current {
    let auths = vec![RegistryAuth {
        registry: "docker.io".into(),
        username: "me".into(),
        password: Sensitive::new(password.into()),
    }];
    let config_json = dockerconfig::encode(&auths);
    Current {
        digest: credential::credential_digest("uid-hub", &config_json),
        credential: Credential { auths, not_after: None },
        config_json,
        fingerprint: Fingerprint::parse("inputs"),
        issued,
        schedule: None,
    }
}

/// The credential step's outcome when `current` is held and nothing was minted.
pub fn reused(current: Option<Current>) -> credential::Step {
    credential::Step {
        issued: match &current {
            Some(_) => Cond::new("True", "Issued", "Credential issued."),
            None => Cond::new("False", "SourceSecretMissing", "source Secret missing"),
        },
        current,
        minted_now: false,
        failed_attempts: 0,
        last_failure_time: None,
        next_attempt: None,
        notes: Vec::new(),
    }
}

pub fn fanout(targeted: u32, failed: &[(&str, &str)]) -> FanOut {
    FanOut {
        targeted,
        synced: targeted - failed.len() as u32,
        failed: failed
            .iter()
            .map(|(ns, reason)| FailedNamespace {
                namespace: ns.to_string(),
                reason: reason.to_string(),
                message: format!("{ns}: {reason}"),
            })
            .collect(),
        sa_patched: targeted - failed.len() as u32,
        ..Default::default()
    }
}

pub fn not_checked() -> pull_auth::Step {
    pull_auth::Step {
        pull_auth: None,
        next_check: None,
    }
}
