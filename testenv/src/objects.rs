//! Kubernetes objects as tests and the demo create them: one home for the
//! builders, so every caller means the same thing by "a namespace with
//! labels" or "a ServiceAccount with these pull secrets".

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Metadata with a name and labels.
pub fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: (!labels.is_empty()).then(|| labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: meta(name, labels),
        ..Default::default()
    }
}

/// A ServiceAccount whose `imagePullSecrets` name `pull`, in order.
pub fn service_account(name: &str, pull: &[&str]) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, &[]),
        image_pull_secrets: (!pull.is_empty()).then(|| {
            pull.iter()
                .map(|n| LocalObjectReference { name: n.to_string() })
                .collect()
        }),
        ..Default::default()
    }
}

/// An Opaque Secret with string values.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(name, &[]),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The names a ServiceAccount's `imagePullSecrets` list, in order.
pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect()
}
