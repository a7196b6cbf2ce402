//! Why a pod cannot pull its image, with evidence.
//!
//! The kubelet's Event carries the runtime's error text, which cannot tell
//! the credential cases apart (with containerd, no credential and a wrong
//! password both read `401 Unauthorized`). The diagnosis runs in two stages:
//!
//! 1. [`classify`]: the text alone, pure — every message form the kubelet
//!    and the runtimes (containerd, CRI-O, dockershim) produce, with or
//!    without the gRPC prefix, bracketed lists of several credentials' failures;
//! 2. [`gather`] then [`decide`]: what only regcred can know — which
//!    RegistryCredential covers the image's host, whether the namespace holds
//!    its current Secret, whether the ServiceAccount and the pod reference it,
//!    what the kubelet's own keyring matching ([`keyring`]) picks from the
//!    pod's Secrets, the Secret's expiry, and a manifest HEAD at the
//!    registry. `gather` only reads (the API server, the registry) and turns
//!    what it may not read into evidence; `decide` is pure.
//!
//! The vocabulary (`cause`, `detail`) is the user-facing contract in
//! `docs/diagnosis.md` (tests below keep it complete); a diagnosis never
//! holds a secret value.

pub mod classify;
pub mod cli;
mod decide;
mod gather;
pub mod history;
pub mod keyring;
pub mod pod;
pub mod reach;
pub mod repair;
pub mod watch;

pub use self::classify::{Classification, Hint, Network, classify};
pub use self::decide::{CredentialFacts, Findings, IdentityFacts, Manifest, PodSecret, decide};
pub use self::gather::{Target, gather};

use serde::Serialize;

/// What made the pull fail: the `cause` field everywhere.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The repository, tag or a layer does not exist: proven with a credential
    /// the registry accepts where regcred can ask it, else taken from the
    /// kubelet's text (the evidence says what could not be confirmed).
    ImageNotFound,
    /// The image reference itself is wrong; nothing was pulled.
    InvalidImage,
    /// `imagePullPolicy: Never` and the kubelet will not pull.
    ImageNotPresent,
    /// The pull carried no credential for the image's registry.
    CredentialMissing,
    /// A credential was sent and refused, and it was not expired.
    CredentialRejected,
    /// The credential the pull used had passed its expiry.
    CredentialExpired,
    /// The registry throttled pulls.
    RateLimited,
    /// The node could not talk to the registry.
    RegistryUnreachable,
    /// None of the above could be established; the runtime's text is kept.
    Unknown,
}

/// The `detail` of a cause.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    Tag,
    Repository,
    /// The manifest exists, one of its layers does not.
    Blob,
    /// `InvalidImageName`: not a valid image reference.
    Reference,
    /// `ErrImageNeverPull`.
    PullPolicyNever,
    NotCovered,
    SecretMissing,
    ServiceAccountNotLinked,
    PodAdmittedBeforeLink,
    /// The pod names the Secret and it exists, but the kubelet could not read it when it pulled.
    NotYetReadable,
    /// `identity: PerServiceAccount`: the pod's ServiceAccount names no identity, so it gets no credential.
    IdentityMissing,
    StaleCopy,
    Refused,
    Anonymous,
    Authenticated,
    #[serde(rename = "DNS")]
    Dns,
    ConnectionRefused,
    Timeout,
    #[serde(rename = "TLS")]
    Tls,
}

impl Cause {
    /// Every cause, in declaration order.
    pub const ALL: [Cause; 9] = [
        Cause::ImageNotFound,
        Cause::InvalidImage,
        Cause::ImageNotPresent,
        Cause::CredentialMissing,
        Cause::CredentialRejected,
        Cause::CredentialExpired,
        Cause::RateLimited,
        Cause::RegistryUnreachable,
        Cause::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ImageNotFound => "ImageNotFound",
            Cause::InvalidImage => "InvalidImage",
            Cause::ImageNotPresent => "ImageNotPresent",
            Cause::CredentialMissing => "CredentialMissing",
            Cause::CredentialRejected => "CredentialRejected",
            Cause::CredentialExpired => "CredentialExpired",
            Cause::RateLimited => "RateLimited",
            Cause::RegistryUnreachable => "RegistryUnreachable",
            Cause::Unknown => "Unknown",
        }
    }
}

impl Detail {
    /// Every detail, in declaration order.
    pub const ALL: [Detail; 19] = [
        Detail::Tag,
        Detail::Repository,
        Detail::Blob,
        Detail::Reference,
        Detail::PullPolicyNever,
        Detail::NotCovered,
        Detail::SecretMissing,
        Detail::ServiceAccountNotLinked,
        Detail::PodAdmittedBeforeLink,
        Detail::NotYetReadable,
        Detail::IdentityMissing,
        Detail::StaleCopy,
        Detail::Refused,
        Detail::Anonymous,
        Detail::Authenticated,
        Detail::Dns,
        Detail::ConnectionRefused,
        Detail::Timeout,
        Detail::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detail::Tag => "Tag",
            Detail::Repository => "Repository",
            Detail::Blob => "Blob",
            Detail::Reference => "Reference",
            Detail::PullPolicyNever => "PullPolicyNever",
            Detail::NotCovered => "NotCovered",
            Detail::SecretMissing => "SecretMissing",
            Detail::ServiceAccountNotLinked => "ServiceAccountNotLinked",
            Detail::PodAdmittedBeforeLink => "PodAdmittedBeforeLink",
            Detail::NotYetReadable => "NotYetReadable",
            Detail::IdentityMissing => "IdentityMissing",
            Detail::StaleCopy => "StaleCopy",
            Detail::Refused => "Refused",
            Detail::Anonymous => "Anonymous",
            Detail::Authenticated => "Authenticated",
            Detail::Dns => "DNS",
            Detail::ConnectionRefused => "ConnectionRefused",
            Detail::Timeout => "Timeout",
            Detail::Tls => "TLS",
        }
    }
}

/// One check and what it answered, e.g. `pod imagePullSecrets` → `[ecr]`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub check: String,
    pub result: String,
}

impl Evidence {
    pub fn new(check: impl Into<String>, result: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            result: result.into(),
        }
    }
}

/// The answer for one container of one pod, in the contract's JSON shape.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    pub cause: Cause,
    pub detail: Option<Detail>,
    /// What was found, in one or two sentences.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    pub evidence: Vec<Evidence>,
    /// The RegistryCredential covering the image's registry, if any.
    pub credential: Option<String>,
}

impl Diagnosis {
    /// `<cause>[/<detail>]`, as Events and text output show it.
    pub fn label(&self) -> String {
        match self.detail {
            Some(detail) => format!("{}/{}", self.cause.as_str(), detail.as_str()),
            None => self.cause.as_str().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of `cause` in [`Cause::ALL`]. The match has no wildcard:
    /// a new variant does not compile until it is listed here, and then the
    /// test below fails until it is in `ALL`.
    fn cause_index(cause: Cause) -> usize {
        match cause {
            Cause::ImageNotFound => 0,
            Cause::InvalidImage => 1,
            Cause::ImageNotPresent => 2,
            Cause::CredentialMissing => 3,
            Cause::CredentialRejected => 4,
            Cause::CredentialExpired => 5,
            Cause::RateLimited => 6,
            Cause::RegistryUnreachable => 7,
            Cause::Unknown => 8,
        }
    }

    /// The position of `detail` in [`Detail::ALL`], exhaustive likewise.
    fn detail_index(detail: Detail) -> usize {
        match detail {
            Detail::Tag => 0,
            Detail::Repository => 1,
            Detail::Blob => 2,
            Detail::Reference => 3,
            Detail::PullPolicyNever => 4,
            Detail::NotCovered => 5,
            Detail::SecretMissing => 6,
            Detail::ServiceAccountNotLinked => 7,
            Detail::PodAdmittedBeforeLink => 8,
            Detail::NotYetReadable => 9,
            Detail::IdentityMissing => 10,
            Detail::StaleCopy => 11,
            Detail::Refused => 12,
            Detail::Anonymous => 13,
            Detail::Authenticated => 14,
            Detail::Dns => 15,
            Detail::ConnectionRefused => 16,
            Detail::Timeout => 17,
            Detail::Tls => 18,
        }
    }

    #[test]
    fn every_cause_and_detail_is_listed_once_in_all() {
        for (i, cause) in Cause::ALL.into_iter().enumerate() {
            assert_eq!(cause_index(cause), i, "{cause:?}");
        }
        for (i, detail) in Detail::ALL.into_iter().enumerate() {
            assert_eq!(detail_index(detail), i, "{detail:?}");
        }
    }

    #[test]
    fn the_names_are_what_json_shows() {
        for cause in Cause::ALL {
            assert_eq!(serde_json::to_value(cause).unwrap(), cause.as_str());
        }
        for detail in Detail::ALL {
            assert_eq!(serde_json::to_value(detail).unwrap(), detail.as_str());
        }
    }

    #[test]
    fn the_user_docs_name_every_cause_and_detail() {
        let docs = include_str!("../../docs/diagnosis.md");
        let names = Cause::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(Detail::ALL.iter().map(|d| d.as_str()));
        let missing: Vec<&str> = names.filter(|name| !docs.contains(&format!("`{name}`"))).collect();
        assert!(missing.is_empty(), "docs/diagnosis.md does not name {missing:?}");
    }
}
