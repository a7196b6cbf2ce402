//! The `regcred.dev/v1alpha1` API: `RegistryCredential` and its status.

pub mod conditions;
mod grammar;
mod spec;
mod status;

pub use spec::*;
pub use status::*;

use kube::CustomResourceExt;

/// The CRD as committed under `crds/`, rendered as YAML.
pub fn crd_yaml() -> String {
    let crd = RegistryCredential::crd();
    serde_yaml::to_string(&crd).expect("a CustomResourceDefinition always serializes")
}
