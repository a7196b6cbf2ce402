//! From what the text says and what the checks found to a cause, a message
//! and a fix. Pure: no client, no clock (the time comes in [`Findings`]).

use jiff::Timestamp;

use super::classify::{Hint, Network, unretrieved_secrets};
use super::{Cause, Detail, Diagnosis, Evidence};
use crate::api::{FailedServiceAccount, ProviderKind, PullAuthResult};
use crate::identity::WorkloadIdentity;
use crate::pull_auth::ManifestCheck;

/// Everything the checks found about one container's failed pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    /// The image's registry host, e.g. `127.0.0.1:5000` or `docker.io`.
    pub host: String,
    /// What the kubelet's text says.
    pub hint: Hint,
    /// The runtime's error text, when an Event or the waiting message had it.
    pub text: Option<String>,
    /// The pod's `spec.imagePullSecrets`, each as far as it could be read.
    pub pod_secrets: Vec<PodSecret>,
    /// `(secret, key)` of the entries the kubelet's keyring picks for the
    /// image, in the order it tries them; `None` when a Secret of the pod
    /// could not be read, so the keyring is not known.
    pub sent: Option<Vec<(String, String)>>,
    /// The RegistryCredential covering the image's host, if one does.
    pub credential: Option<CredentialFacts>,
    /// Whether the RegistryCredentials could be listed at all.
    pub credentials_listed: bool,
    /// Manifest HEADs: with the credential the pod would use (or none), and
    /// with regcred's current one where that differs.
    pub manifests: Vec<Manifest>,
    pub now: Timestamp,
    /// The checks as they ran, for the diagnosis.
    pub evidence: Vec<Evidence>,
}

/// One Secret the pod names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSecret {
    pub name: String,
    /// `Some(true)` present, `Some(false)` absent, `None` not readable.
    pub exists: Option<bool>,
}

/// What is known of the RegistryCredential covering the image's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFacts {
    /// The RegistryCredential's name.
    pub name: String,
    /// The managed Secret's name in every namespace.
    pub secret_name: String,
    /// Whether it targets the pod's namespace (`None`: could not tell).
    pub targeted: Option<bool>,
    /// Whether the namespace holds the Secret (`None`: could not read it).
    pub secret_exists: Option<bool>,
    /// Whether a Secret of that name is there that regcred did not write.
    pub secret_foreign: bool,
    /// Whether that Secret holds the current credential (its digest equals
    /// `status.credentialDigest`); `None` when either could not be read.
    pub secret_current: Option<bool>,
    /// The Secret's `regcred.dev/not-after`.
    pub not_after: Option<Timestamp>,
    /// The pod's ServiceAccount.
    pub service_account: String,
    /// Whether the ServiceAccount references the Secret (`None`: could not read it).
    pub service_account_links: Option<bool>,
    /// Whether the pod's own `spec.imagePullSecrets` names the Secret.
    pub pod_links: bool,
    /// `identity: PerServiceAccount` only: the ServiceAccount's own identity
    /// (its Secret is then `secret_name`, and `secret_current` says whether
    /// it holds a credential of the identity the ServiceAccount names now).
    pub identity: Option<IdentityFacts>,
}

/// What `identity: PerServiceAccount` mode adds: the identity the pod's
/// ServiceAccount names, and what status says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFacts {
    pub kind: ProviderKind,
    /// The annotation the mode reads, e.g. `eks.amazonaws.com/ecr-role-arn`.
    pub annotation: String,
    /// The audience of the ServiceAccount tokens regcred requests.
    pub audience: String,
    /// The identity the ServiceAccount's annotations name: `Some(None)` it
    /// names none, `None` it could not be read.
    pub named: Option<Option<WorkloadIdentity>>,
    /// Whether the RegistryCredential selects the ServiceAccount (`None`: could not tell).
    pub selected: Option<bool>,
    /// The ServiceAccount's entry in `status.failedServiceAccounts`.
    pub failure: Option<FailedServiceAccount>,
}

/// A manifest HEAD and which credential it was made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// e.g. `the pod's credential (Secret team/hub)`, `no credential`.
    pub with: String,
    /// Whether this is regcred's current credential.
    pub current: bool,
    /// Whether the pod would send this credential (or none, for an anonymous check).
    pub pods: bool,
    pub check: ManifestCheck,
}

/// The check under which the caller keeps the message of the kubelet's
/// `FailedToRetrieveImagePullSecret` Event in [`Findings::evidence`].
pub(super) const FAILED_TO_RETRIEVE: &str = "kubelet's FailedToRetrieveImagePullSecret";

/// The diagnosis for `findings`.
pub fn decide(mut f: Findings) -> Diagnosis {
    let Verdict {
        cause,
        detail,
        message,
        fix,
    } = judge(&f);
    if rests_on_the_registry(cause, detail)
        && let Some(note) = unconfirmed(&f)
    {
        f.evidence.push(note);
    }
    Diagnosis {
        namespace: f.namespace,
        pod: f.pod,
        container: f.container,
        image: f.image,
        cause,
        detail,
        message,
        fix,
        evidence: f.evidence,
        credential: f.credential.map(|c| c.name),
    }
}

/// What a rule concludes: the diagnosis, less the pod and the evidence.
#[derive(Debug)]
struct Verdict {
    cause: Cause,
    detail: Option<Detail>,
    /// What was found, in one or two sentences.
    message: String,
    /// What to do about it.
    fix: String,
}

/// A rule answers with a verdict, or passes (`None`) to the next.
type Rule = fn(&Findings) -> Option<Verdict>;

/// The rules, asked in this order; the first that answers decides, and
/// [`unexplained`] answers what none does.
///
/// 1. What the runtime's text settles alone: the network, a rate limit, a
///    pull policy, a malformed reference, a missing layer.
/// 2. What the registry settles: a 404 on the manifest with a credential it
///    accepted; where no check could ask it, the kubelet's text that it
///    answered not found; its word that the credential expired. Then the
///    kubelet's own word that it could not read a Secret the pod names,
///    which is there now.
/// 3. Without a RegistryCredential covering the host, the last of these
///    answers: the pod's own Secrets are all there is to judge.
/// 4. With one, its way to the pull, in the order the credential travels:
///    the namespace is targeted (in `identity: PerServiceAccount` mode: the
///    ServiceAccount is selected, names its identity, and the cloud did not
///    refuse that identity), the Secret is there and regcred's, the pod
///    references it, it holds the current credential, unexpired. Then what
///    the registry answers the pod's credential now, whether the kubelet
///    would send it at all, and last the text's word that it was refused.
const RULES: &[Rule] = &[
    // 1. The text alone.
    unreachable,
    rate_limited,
    never_pull,
    invalid_reference,
    blob_not_found,
    // 2. The registry.
    image_not_found,
    not_found_by_text,
    expired_by_registry,
    not_yet_readable,
    // 3. No RegistryCredential covers the host.
    anonymous_while_credentials_unreadable,
    credentials_unreadable,
    own_secret_refused,
    not_covered,
    // 4. The covering RegistryCredential's way to the pull.
    namespace_not_targeted,
    service_account_not_selected,
    identity_missing,
    identity_refused,
    secret_missing,
    secret_foreign,
    admitted_before_link,
    service_account_not_linked,
    link_unknown,
    stale_copy,
    expired_in_secret,
    refused_by_registry,
    served_now,
    no_matching_entry,
    refused_by_text,
];

fn judge(f: &Findings) -> Verdict {
    RULES.iter().find_map(|rule| rule(f)).unwrap_or_else(|| unexplained(f))
}

/// The node could not talk to the registry.
fn unreachable(f: &Findings) -> Option<Verdict> {
    let Hint::Network(network) = f.hint else {
        return None;
    };
    let host = &f.host;
    let (detail, what, fix) = match network {
        Network::Dns => (
            Some(Detail::Dns),
            format!("the node could not resolve {}", host_name(host)),
            format!(
                "check the image's registry host and the node's DNS resolver for {}",
                host_name(host)
            ),
        ),
        Network::ConnectionRefused => (
            Some(Detail::ConnectionRefused),
            format!("the node's connection to {host} was refused"),
            format!("check that registry {host} runs and listens on that port, and the firewall from the node"),
        ),
        Network::Timeout => (
            Some(Detail::Timeout),
            format!("the node's connection to {host} timed out"),
            "check the network path from the node to the registry (firewall, proxy, egress allow-list)".to_string(),
        ),
        Network::Tls => (
            Some(Detail::Tls),
            format!("the node does not trust the TLS certificate of {host}"),
            "install the registry's CA on the nodes (containerd: certs.d/<host>/hosts.toml; CRI-O: \
             /etc/containers/certs.d)"
                .to_string(),
        ),
        Network::Other => (
            None,
            format!("the node's connection to {host} failed"),
            "check the network path from the node to the registry".to_string(),
        ),
    };
    Some(Verdict {
        cause: Cause::RegistryUnreachable,
        detail,
        message: format!("{what}: {}", f.text.as_deref().unwrap_or("no runtime text")),
        fix,
    })
}

/// The registry throttled pulls: whose, the keyring says.
fn rate_limited(f: &Findings) -> Option<Verdict> {
    if f.hint != Hint::RateLimited {
        return None;
    }
    let host = &f.host;
    let remaining = f
        .manifests
        .iter()
        .find_map(|m| m.check.ratelimit_remaining.clone())
        .map(|r| format!(" (ratelimit-remaining: {r})"))
        .unwrap_or_default();
    let (detail, message, fix) = match f.sent.as_deref() {
        Some([]) => (
            Some(Detail::Anonymous),
            format!("registry {host} throttled the node's anonymous pulls{remaining}"),
            match &f.credential {
                Some(c) => format!(
                    "authenticate the pulls: make the pod use Secret {} of RegistryCredential {}",
                    c.secret_name, c.name
                ),
                None => format!("declare a RegistryCredential for {host} so pulls authenticate (a higher limit)"),
            },
        ),
        Some(_) => (
            Some(Detail::Authenticated),
            format!("registry {host} throttled pulls of the account the pod authenticates as{remaining}"),
            "wait for the limit's window, upgrade the account, or pull through a mirror".to_string(),
        ),
        None => (
            None,
            format!("registry {host} throttled pulls{remaining}; the pod's Secrets could not be read to tell whose"),
            "wait for the limit's window, or authenticate pulls".to_string(),
        ),
    };
    Some(Verdict {
        cause: Cause::RateLimited,
        detail,
        message,
        fix,
    })
}

/// `ErrImageNeverPull`: the kubelet will not pull. From Kubernetes 1.35
/// (`KubeletEnsureSecretPulledImages`, beta and on) it says the same of an
/// image that is on the node but was not pulled with the pod's credentials.
fn never_pull(f: &Findings) -> Option<Verdict> {
    (f.hint == Hint::NeverPull).then(|| Verdict {
        cause: Cause::ImageNotPresent,
        detail: Some(Detail::PullPolicyNever),
        message: format!(
            "the container's imagePullPolicy is Never, so the kubelet will not pull {}: the image is not on the node, \
             or (Kubernetes 1.35+ with KubeletEnsureSecretPulledImages) it is, but no credential of this pod \
             pulled it; the kubelet reports both the same way{}",
            f.image,
            runtime_said(f)
        ),
        fix: "load the image onto the node, or set imagePullPolicy to IfNotPresent (the kubelet then pulls, or checks \
              the pod's credential against the registry); on 1.35+ the kubelet's \
              imagePullCredentialsVerificationPolicy decides which cached images need no credential"
            .to_string(),
    })
}

/// `InvalidImageName`: the reference does not parse; nothing was pulled.
fn invalid_reference(f: &Findings) -> Option<Verdict> {
    (f.hint == Hint::InvalidReference).then(|| Verdict {
        cause: Cause::InvalidImage,
        detail: Some(Detail::Reference),
        message: format!(
            "{:?} is not a valid image reference, so the kubelet pulled nothing{}",
            f.image,
            runtime_said(f)
        ),
        fix: "fix the image in the workload: [host[:port]/]lower-case/path[:tag][@sha256:digest]".to_string(),
    })
}

/// The manifest was found, one of its layers was not.
fn blob_not_found(f: &Findings) -> Option<Verdict> {
    (f.hint == Hint::BlobNotFound).then(|| Verdict {
        cause: Cause::ImageNotFound,
        detail: Some(Detail::Blob),
        message: format!(
            "registry {} has the manifest of {} but not one of its layers{}",
            f.host,
            f.image,
            runtime_said(f)
        ),
        fix: "push the image again, or re-sync the registry's pull-through cache or mirror".to_string(),
    })
}

/// A 404 on the manifest with a credential the registry accepted.
fn image_not_found(f: &Findings) -> Option<Verdict> {
    if !matches!(
        f.hint,
        Hint::NotFound
            | Hint::DeniedOrMissing
            | Hint::Unauthorized
            | Hint::Forbidden
            | Hint::NoCredential
            | Hint::BackOffOnly
            | Hint::Unrecognized
            | Hint::SecretMissing
    ) {
        return None;
    }
    let m = f.manifests.iter().find(|m| m.check.status == Some(404))?;
    let repository = crate::registry::repo_to_pull(&f.image);
    let (detail, what, fix) = match m.check.repository_exists {
        Some(false) => (
            Detail::Repository,
            format!("registry {} has no repository {repository}", f.host),
            "fix the image name in the workload, or push the image",
        ),
        _ => (
            Detail::Tag,
            format!("repository {repository} has no tag or digest of {}", f.image),
            "fix the tag in the workload, or push that tag",
        ),
    };
    Some(Verdict {
        cause: Cause::ImageNotFound,
        detail: Some(detail),
        message: format!("{what} (manifest HEAD with {}: 404)", m.with),
        fix: fix.to_string(),
    })
}

/// The kubelet's text says the registry answered not found, and no check of
/// regcred's got an answer from the registry (TLS, DNS, timeout, refused, or
/// the reads RBAC forbids): the text is taken, and the evidence says what
/// could not be confirmed.
fn not_found_by_text(f: &Findings) -> Option<Verdict> {
    if f.hint != Hint::NotFound || registry_answered(f) {
        return None;
    }
    let repository = crate::registry::repo_to_pull(&f.image);
    let text = f.text.as_deref().unwrap_or_default().to_ascii_lowercase();
    // containers/image reads the registry's error body: NAME_UNKNOWN is the
    // repository's; containerd's HEAD has no body and says `not found` of both.
    let no_repository = ["name unknown", "name_unknown", "repository name not known"]
        .iter()
        .any(|n| text.contains(n));
    let (detail, what, fix) = if no_repository {
        (
            Detail::Repository,
            format!("registry {} has no repository {repository}", f.host),
            "fix the image name in the workload, or push the image",
        )
    } else {
        (
            Detail::Tag,
            format!("registry {} has no manifest for {}", f.host, f.image),
            "fix the tag in the workload, or push that tag",
        )
    };
    Some(Verdict {
        cause: Cause::ImageNotFound,
        detail: Some(detail),
        message: format!(
            "{what}, as the kubelet's runtime reports (not confirmed by regcred's own check of the registry)"
        ),
        fix: fix.to_string(),
    })
}

fn expired_by_registry(f: &Findings) -> Option<Verdict> {
    (f.hint == Hint::Expired).then(|| expired(f, "the registry said the credential has expired"))
}

/// The kubelet could not read a Secret the pod names when it pulled
/// (`FailedToRetrieveImagePullSecret`: the Node authorizer's first read of a
/// newly bound pod, or a Secret created a moment after the pull began), so
/// it pulled without it; the Secret is there now, and nothing says what it
/// holds would be refused: the kubelet's next retry passes.
fn not_yet_readable(f: &Findings) -> Option<Verdict> {
    let auth_failure = matches!(
        f.hint,
        Hint::Unauthorized
            | Hint::Forbidden
            | Hint::NoCredential
            | Hint::DeniedOrMissing
            | Hint::SecretMissing
            | Hint::BackOffOnly
            | Hint::Unrecognized
    );
    let names = unretrieved(f).filter(|n| !n.is_empty() && auth_failure)?;
    let there_now = names
        .iter()
        .all(|n| f.pod_secrets.iter().any(|s| &s.name == n && s.exists == Some(true)));
    let refused_now = pods_manifest(f).is_some_and(|m| m.check.result == PullAuthResult::Unauthorized);
    let wrong_now = f.credential.as_ref().is_some_and(|c| {
        c.secret_foreign || c.secret_current == Some(false) || c.not_after.is_some_and(|t| t <= f.now)
    });
    if !there_now || refused_now || wrong_now {
        return None;
    }
    let served = pods_manifest(f)
        .filter(|m| m.check.result == PullAuthResult::Healthy)
        .map(|m| {
            format!(
                "; registry {} serves the image with it now (manifest HEAD: {})",
                f.host,
                status_text(&m.check)
            )
        })
        .unwrap_or_default();
    let secrets = names
        .iter()
        .map(|n| format!("{}/{n}", f.namespace))
        .collect::<Vec<_>>()
        .join(", ");
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::NotYetReadable),
        message: format!(
            "the kubelet could not read Secret {secrets} when it pulled (FailedToRetrieveImagePullSecret), so the \
             pull carried no credential from it; the Secret is there now{served}. The Node authorizer refuses a \
             node's first read of a newly bound pod's Secret for a moment, and a Secret created just after the \
             pull began is missed the same way"
        ),
        fix: format!(
            "nothing to change: the kubelet's next retry reads the Secret (within its back-off, at most 5 minutes); \
             recreate the pod to retry at once (kubectl delete pod -n {} {})",
            f.namespace, f.pod
        ),
    })
}

/// An auth failure of a pull that carried no credential, and no telling
/// which RegistryCredential should have given it one.
fn anonymous_while_credentials_unreadable(f: &Findings) -> Option<Verdict> {
    let auth_failure = matches!(
        f.hint,
        Hint::Unauthorized | Hint::Forbidden | Hint::NoCredential | Hint::DeniedOrMissing
    );
    // `anonymous token`, `no basic auth credentials`: the text says so itself.
    let anonymous = sent_nothing(f) || f.hint == Hint::NoCredential;
    if f.credential.is_some() || f.credentials_listed || !auth_failure || !anonymous {
        return None;
    }
    let host = &f.host;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: None,
        message: format!(
            "the pull carried no credential for {host} (no entry of the pod's Secrets matches it); which \
             RegistryCredential should cover it is not known, the RegistryCredentials could not be read"
        ),
        fix: format!(
            "give the pod a pull Secret for {host}, or ask who runs regcred which RegistryCredential covers it"
        ),
    })
}

fn credentials_unreadable(f: &Findings) -> Option<Verdict> {
    if f.credential.is_some() || f.credentials_listed {
        return None;
    }
    // The pod sent a credential of its Secret and the runtime says it was refused.
    if let (Some([first, ..]), Hint::Unauthorized | Hint::Forbidden) = (f.sent.as_deref(), f.hint) {
        return Some(Verdict {
            cause: Cause::CredentialRejected,
            detail: None,
            message: format!(
                "registry {} refused the credential the pod sent from Secret {}/{} (key {}), as the kubelet's \
                 runtime reports; whether it is a RegistryCredential's could not be read",
                f.host, f.namespace, first.0, first.1
            ),
            fix: format!(
                "check the account and password in Secret {}/{}, or run regcred diagnose with a user who may read \
                 registrycredentials.regcred.dev to see whether regcred manages it",
                f.namespace, first.0
            ),
        });
    }
    Some(unknown(
        f,
        &format!(
            "the RegistryCredentials could not be read, so which one covers {} is not known; the runtime's \
             text says {}",
            f.host,
            f.hint.describe()
        ),
        "run regcred diagnose with a user who may read registrycredentials.regcred.dev",
    ))
}

/// No RegistryCredential covers the host and the registry refused what
/// the pod's own Secret sent.
fn own_secret_refused(f: &Findings) -> Option<Verdict> {
    if f.credential.is_some() {
        return None;
    }
    let [first, ..] = f.sent.as_deref()? else {
        return None;
    };
    let host = &f.host;
    Some(Verdict {
        cause: Cause::CredentialRejected,
        detail: None,
        message: format!(
            "no RegistryCredential covers {host}; the pod sent the credential of Secret {}/{} (key {}), which \
             registry {host} refused",
            f.namespace, first.0, first.1
        ),
        fix: format!(
            "fix Secret {}/{}, or declare a RegistryCredential for {host}",
            f.namespace, first.0
        ),
    })
}

/// Answers whenever no RegistryCredential covers the host, so the rules
/// after it all have one.
fn not_covered(f: &Findings) -> Option<Verdict> {
    if f.credential.is_some() {
        return None;
    }
    let host = &f.host;
    let absent: Vec<&str> = f
        .pod_secrets
        .iter()
        .filter(|s| s.exists == Some(false))
        .map(|s| s.name.as_str())
        .collect();
    let absent = match absent.as_slice() {
        [] => String::new(),
        names => format!(
            " (the pod names Secret {} in namespace {}, which does not exist)",
            names.join(", "),
            f.namespace
        ),
    };
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::NotCovered),
        message: format!(
            "no RegistryCredential covers registry {host}, and the pod holds no credential for it{absent}"
        ),
        fix: format!(
            "declare a RegistryCredential for {host} targeting namespace {}, or create the pod's pull Secret",
            f.namespace
        ),
    })
}

fn namespace_not_targeted(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref().filter(|c| c.targeted == Some(false))?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::NotCovered),
        message: format!(
            "RegistryCredential {} holds the credential for {} but does not target namespace {}, so the \
             pull carried none",
            c.name, f.host, f.namespace
        ),
        fix: format!(
            "add namespace {} to RegistryCredential {}'s spec.target.namespaces (names or selector), then \
             recreate the pod",
            f.namespace, c.name
        ),
    })
}

/// `identity: PerServiceAccount`: the RegistryCredential does not select the
/// pod's ServiceAccount, so it mints nothing for it.
fn service_account_not_selected(f: &Findings) -> Option<Verdict> {
    let c = f
        .credential
        .as_ref()
        .filter(|c| c.identity.as_ref().is_some_and(|id| id.selected == Some(false)) && !c.pod_links)?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::ServiceAccountNotLinked),
        message: format!(
            "RegistryCredential {} mints a credential per ServiceAccount and does not select ServiceAccount {}/{}, \
             so it has no Secret {} and the pull carried no credential for {}",
            c.name, f.namespace, c.service_account, c.secret_name, f.host
        ),
        fix: format!(
            "select ServiceAccount {} in RegistryCredential {}'s spec.target.serviceAccounts (and annotate it with \
             {} naming its identity), then recreate the pod",
            c.service_account,
            c.name,
            c.identity.as_ref().map_or("", |id| id.annotation.as_str())
        ),
    })
}

/// `identity: PerServiceAccount`: the pod's ServiceAccount names no identity
/// (no annotation, or status lists it `IdentityMissing`), so it gets nothing.
fn identity_missing(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref()?;
    let id = c.identity.as_ref()?;
    let listed = id.failure.as_ref().is_some_and(|e| e.reason == "IdentityMissing");
    if id.named != Some(None) && !listed {
        return None;
    }
    let recreate = if c.pod_links {
        String::new()
    } else {
        " Then recreate the pod: it was admitted without the Secret".to_string()
    };
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::IdentityMissing),
        message: format!(
            "RegistryCredential {} mints a credential per ServiceAccount from the identity each names, and \
             ServiceAccount {}/{} has no {} annotation, so regcred mints nothing for it and the pull carried no \
             credential for {}",
            c.name, f.namespace, c.service_account, id.annotation, f.host
        ),
        fix: format!(
            "annotate ServiceAccount {ns}/{sa} with {annotation}={placeholder} (kubectl annotate serviceaccount -n \
             {ns} {sa} {annotation}={example}); regcred then mints its own credential into Secret {secret}.{recreate}",
            ns = f.namespace,
            sa = c.service_account,
            annotation = id.annotation,
            placeholder = placeholder(id.kind),
            example = example(id.kind),
            secret = c.secret_name,
        ),
    })
}

/// `identity: PerServiceAccount`: the cloud refused the identity the pod's
/// ServiceAccount names (status lists it `IdentityRefused`), and its Secret
/// holds no valid credential to pull with meanwhile.
fn identity_refused(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref()?;
    let id = c.identity.as_ref()?;
    let entry = id.failure.as_ref().filter(|e| e.reason == "IdentityRefused")?;
    if holds_valid(f, c) {
        return None;
    }
    let identity = entry
        .identity
        .clone()
        .or_else(|| id.named.clone().flatten().map(|i| i.name()))
        .unwrap_or_else(|| "the identity it names".to_string());
    Some(Verdict {
        cause: Cause::CredentialRejected,
        detail: Some(Detail::Refused),
        message: format!(
            "the cloud refused {} to ServiceAccount {}/{}, so RegistryCredential {} has no credential for it \
             (status.failedServiceAccounts: {})",
            described(id.kind, &identity),
            f.namespace,
            c.service_account,
            c.name,
            entry.message
        ),
        fix: trust_fix(id, &identity, &f.namespace, &c.service_account),
    })
}

fn secret_missing(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref().filter(|c| c.secret_exists == Some(false))?;
    if let Some(id) = &c.identity {
        return Some(Verdict {
            cause: Cause::CredentialMissing,
            detail: Some(Detail::SecretMissing),
            message: format!(
                "RegistryCredential {} mints a credential per ServiceAccount, and namespace {} has no Secret {} of \
                 ServiceAccount {} yet{}",
                c.name,
                f.namespace,
                c.secret_name,
                c.service_account,
                failure_said(id)
            ),
            fix: failure_fix(f, c, id).unwrap_or_else(|| {
                format!(
                    "regcred writes it at the provider's pace while it runs: check that the operator runs and \
                     RegistryCredential {}'s status.identities and status.failedServiceAccounts",
                    c.name
                )
            }),
        });
    }
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::SecretMissing),
        message: format!(
            "namespace {} is targeted by RegistryCredential {} but has no Secret {}",
            f.namespace, c.name, c.secret_name
        ),
        fix: format!(
            "regcred writes it within seconds while it runs: check that the operator runs and RegistryCredential \
             {}'s Synced condition (kubectl get registrycredential {} -o yaml)",
            c.name, c.name
        ),
    })
}

/// A Secret of the name is there, but someone else's.
fn secret_foreign(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref().filter(|c| c.secret_foreign)?;
    let secret = secret_path(f, c);
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::SecretMissing),
        message: format!(
            "namespace {} is targeted by RegistryCredential {}, but Secret {secret} is someone else's (regcred did \
             not write it and leaves it alone), so regcred's credential is not there",
            f.namespace, c.name
        ),
        fix: format!(
            "rename spec.target.secretName of RegistryCredential {}, delete Secret {secret}, or set \
             spec.target.existingSecretPolicy: Adopt; then recreate the pod",
            c.name
        ),
    })
}

/// The ServiceAccount references the Secret but the pod does not.
fn admitted_before_link(f: &Findings) -> Option<Verdict> {
    let c = unlinked(f, Some(true))?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::PodAdmittedBeforeLink),
        message: format!(
            "ServiceAccount {}/{} references Secret {} now, but pod {} was admitted before it did, so its \
             spec.imagePullSecrets lacks it (they are copied only when a pod is created; regcred's admission \
             webhook adds it at creation, so it was unavailable, bypassed, or opted out with \
             regcred.dev/admission: disabled)",
            f.namespace, c.service_account, c.secret_name, f.pod
        ),
        fix: format!(
            "recreate the pod (kubectl delete pod -n {} {}, or roll out its controller)",
            f.namespace, f.pod
        ),
    })
}

/// Neither the ServiceAccount nor the pod references the Secret.
fn service_account_not_linked(f: &Findings) -> Option<Verdict> {
    let c = unlinked(f, Some(false))?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: Some(Detail::ServiceAccountNotLinked),
        message: format!(
            "pod {} runs as ServiceAccount {}, which does not reference Secret {}, so the pull carried \
             no credential for {}",
            f.pod,
            c.service_account,
            secret_path(f, c),
            f.host
        ),
        fix: format!(
            "select ServiceAccount {} in RegistryCredential {}'s spec.target.serviceAccounts (or add {} to \
             the pod's imagePullSecrets), then recreate the pod",
            c.service_account, c.name, c.secret_name
        ),
    })
}

/// The pod does not reference the Secret and its ServiceAccount could
/// not be read.
fn link_unknown(f: &Findings) -> Option<Verdict> {
    let c = unlinked(f, None)?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: None,
        message: format!(
            "pod {} does not reference Secret {} and ServiceAccount {} could not be read to tell why",
            f.pod,
            secret_path(f, c),
            c.service_account
        ),
        fix: format!(
            "make ServiceAccount {} reference {} (RegistryCredential {}'s spec.target.serviceAccounts), then \
             recreate the pod",
            c.service_account, c.secret_name, c.name
        ),
    })
}

/// The Secret holds an older credential than the RegistryCredential's.
fn stale_copy(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref().filter(|c| c.secret_current == Some(false))?;
    let secret = secret_path(f, c);
    if let Some(id) = &c.identity {
        let names = match id.named.as_ref().and_then(Option::as_ref) {
            Some(identity) => format!("the {} it names now", identity.describe()),
            None => "the identity it names now".to_string(),
        };
        return Some(Verdict {
            cause: Cause::CredentialRejected,
            detail: Some(Detail::StaleCopy),
            message: format!(
                "Secret {secret} does not hold ServiceAccount {}'s credential of {names} (minted for another \
                 identity or an earlier ServiceAccount of that name, or changed since regcred wrote it){}",
                c.service_account,
                failure_said(id)
            ),
            fix: failure_fix(f, c, id).unwrap_or_else(|| {
                format!(
                    "regcred mints it again while it runs; check RegistryCredential {}'s \
                     status.failedServiceAccounts and who else writes Secret {secret}, then recreate the pod",
                    c.name
                )
            }),
        });
    }
    Some(Verdict {
        cause: Cause::CredentialRejected,
        detail: Some(Detail::StaleCopy),
        message: format!(
            "Secret {secret} holds an older credential than RegistryCredential {}'s current one (its digest \
             differs from status.credentialDigest)",
            c.name
        ),
        fix: format!(
            "regcred re-syncs the namespace while it runs; check its Synced condition and who else writes \
             Secret {secret}, then recreate the pod"
        ),
    })
}

/// The Secret's `regcred.dev/not-after` has passed.
fn expired_in_secret(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref()?;
    let not_after = c.not_after.filter(|t| *t <= f.now)?;
    Some(expired(
        f,
        &format!("the credential in Secret {} expired at {not_after}", secret_path(f, c)),
    ))
}

/// The registry refuses, now, the credential the pod would send.
fn refused_by_registry(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref()?;
    let m = pods_manifest(f).filter(|m| m.check.result == PullAuthResult::Unauthorized)?;
    let current = m.current || c.secret_current == Some(true);
    Some(Verdict {
        cause: Cause::CredentialRejected,
        detail: current.then_some(Detail::Refused),
        message: format!(
            "registry {} refuses RegistryCredential {}'s {}credential for {} (manifest HEAD: {})",
            f.host,
            c.name,
            if current { "current " } else { "" },
            f.image,
            status_text(&m.check)
        ),
        fix: format!(
            "the credential lacks access to this repository or is wrong: check the account, its permissions and \
             RegistryCredential {}'s source",
            c.name
        ),
    })
}

/// The registry serves the image, now, with the credential the pod would
/// send: whatever failed has passed.
fn served_now(f: &Findings) -> Option<Verdict> {
    f.credential.as_ref()?;
    let m = pods_manifest(f).filter(|m| m.check.result == PullAuthResult::Healthy)?;
    Some(unknown(
        f,
        &format!(
            "registry {} now serves {} with {} (manifest HEAD: {}): whatever failed has passed",
            f.host,
            f.image,
            m.with,
            status_text(&m.check)
        ),
        "wait for the kubelet's next retry, or recreate the pod to retry at once",
    ))
}

/// The pod references the Secret, but the kubelet would send none of its
/// entries for this image.
fn no_matching_entry(f: &Findings) -> Option<Verdict> {
    let c = f.credential.as_ref().filter(|_| sent_nothing(f))?;
    Some(Verdict {
        cause: Cause::CredentialMissing,
        detail: None,
        message: format!(
            "pod {} references Secret {}, but none of its entries matches {} as the kubelet matches them",
            f.pod,
            secret_path(f, c),
            f.image
        ),
        fix: format!("check the registry host in RegistryCredential {}", c.name),
    })
}

/// The text says the credential was refused and the registry could not be
/// asked to confirm it.
fn refused_by_text(f: &Findings) -> Option<Verdict> {
    let auth_failure = matches!(f.hint, Hint::Unauthorized | Hint::Forbidden | Hint::DeniedOrMissing);
    let c = f.credential.as_ref().filter(|_| auth_failure)?;
    let current = c.secret_current == Some(true);
    Some(Verdict {
        cause: Cause::CredentialRejected,
        detail: current.then_some(Detail::Refused),
        message: format!(
            "registry {} refused the credential from Secret {}; the registry could not be asked from here",
            f.host,
            secret_path(f, c)
        ),
        fix: format!(
            "check the account and permissions behind RegistryCredential {}'s source",
            c.name
        ),
    })
}

/// What no rule explains.
fn unexplained(f: &Findings) -> Verdict {
    unknown(
        f,
        "no check could establish why the pull failed",
        "see the evidence and the runtime's text",
    )
}

/// Whether a diagnosis of `cause`/`detail` is one a registry's answer would
/// confirm, so that without one the evidence says what could not be asked.
fn rests_on_the_registry(cause: Cause, detail: Option<Detail>) -> bool {
    match cause {
        Cause::ImageNotFound | Cause::Unknown => true,
        Cause::CredentialRejected => matches!(detail, None | Some(Detail::Refused)),
        Cause::CredentialMissing => detail == Some(Detail::NotYetReadable),
        _ => false,
    }
}

/// Whether a manifest check got an HTTP answer from the registry.
fn registry_answered(f: &Findings) -> bool {
    f.manifests.iter().any(|m| m.check.status.is_some())
}

/// What could not be confirmed with the registry, and how to confirm it;
/// `None` when a manifest check got an answer.
fn unconfirmed(f: &Findings) -> Option<Evidence> {
    if registry_answered(f) {
        return None;
    }
    let host = &f.host;
    let (why, how) = match f.manifests.first() {
        Some(m) => (
            format!("the manifest HEAD with {} got no answer from it", m.with),
            how_to_reach(&m.check.message),
        ),
        None if f.sent.is_none() => (
            "a pull Secret of the pod could not be read, so the registry was not asked with the pod's credential"
                .to_string(),
            format!(
                "run regcred diagnose as a user who may get Secrets in namespace {}",
                f.namespace
            ),
        ),
        None if !f.credentials_listed => (
            format!("the RegistryCredentials could not be read, so regcred's credential for {host} was not tried"),
            "run regcred diagnose as a user who may read registrycredentials.regcred.dev".to_string(),
        ),
        // Not run by choice or because the reference does not parse: the
        // check's own evidence says so.
        None => return None,
    };
    Some(Evidence::new(
        format!("not confirmed with registry {host}"),
        format!("the diagnosis rests on the kubelet's text: {why}; to confirm, {how}"),
    ))
}

/// How to let regcred reach the registry, after a check that failed with `message`.
fn how_to_reach(message: &str) -> String {
    let message = message.to_ascii_lowercase();
    if message.contains("tls") || message.contains("certificate") {
        "give regcred the registry's CA: regcred diagnose --ca-bundle FILE (the operator: its --ca-bundle, chart \
         value caBundle.configMapName)"
            .to_string()
    } else {
        "run the check where the nodes' network reaches the registry (the operator in the cluster does; from \
         elsewhere, a host with the same DNS, routes and proxy)"
            .to_string()
    }
}

/// `; the runtime said: <text>`, when there is one.
fn runtime_said(f: &Findings) -> String {
    match &f.text {
        Some(text) => format!("; the runtime said: {text}"),
        None => String::new(),
    }
}

/// The Secrets the kubelet's `FailedToRetrieveImagePullSecret` named, when
/// the caller found that Event.
fn unretrieved(f: &Findings) -> Option<Vec<String>> {
    f.evidence
        .iter()
        .find(|e| e.check == FAILED_TO_RETRIEVE)
        .and_then(|e| unretrieved_secrets(&e.result))
}

fn expired(f: &Findings, why: &str) -> Verdict {
    if let Some((c, id)) = f.credential.as_ref().and_then(|c| Some((c, c.identity.as_ref()?))) {
        return Verdict {
            cause: Cause::CredentialExpired,
            detail: None,
            message: format!("{why}; the pull used it{}", failure_said(id)),
            fix: failure_fix(f, c, id).unwrap_or_else(|| {
                format!(
                    "regcred renews each ServiceAccount's credential before it expires while it runs: check \
                     RegistryCredential {}'s status.failedServiceAccounts, then recreate the pod",
                    c.name
                )
            }),
        };
    }
    let fix = match &f.credential {
        Some(c) => format!(
            "regcred renews before expiry while it runs: check RegistryCredential {}'s Issued condition and \
             renewalTime, then recreate the pod",
            c.name
        ),
        None => "renew the credential in the pod's pull Secret".to_string(),
    };
    Verdict {
        cause: Cause::CredentialExpired,
        detail: None,
        message: format!("{why}; the pull used it"),
        fix,
    }
}

/// Whether the namespace holds the ServiceAccount's (or the shared)
/// credential, current and unexpired.
fn holds_valid(f: &Findings, c: &CredentialFacts) -> bool {
    c.secret_exists == Some(true) && c.secret_current == Some(true) && c.not_after.is_none_or(|t| t > f.now)
}

/// `; regcred could not mint it: <reason>: <message>`, from the
/// ServiceAccount's entry in `status.failedServiceAccounts`.
fn failure_said(id: &IdentityFacts) -> String {
    match &id.failure {
        Some(e) => format!(
            "; regcred could not mint it (status.failedServiceAccounts: {}: {})",
            e.reason, e.message
        ),
        None => String::new(),
    }
}

/// What to do about the ServiceAccount's entry in `status.failedServiceAccounts`.
fn failure_fix(f: &Findings, c: &CredentialFacts, id: &IdentityFacts) -> Option<String> {
    let e = id.failure.as_ref()?;
    let retry = match &e.retry_time {
        Some(t) => format!("regcred tries again at {}", t.0),
        None => "regcred tries again with backoff".to_string(),
    };
    Some(match e.reason.as_str() {
        "Throttled" => format!(
            "nothing to change: the provider throttled the exchange and {retry} (the provider's Retry-After); the \
             kubelet's next retry after that pulls"
        ),
        "TokenRequestFailed" => format!(
            "regcred could not request a token for ServiceAccount {}/{}: check that regcred may create \
             serviceaccounts/token (its ClusterRole) and the API server's TokenRequest settings; {retry}",
            f.namespace, c.service_account
        ),
        "IdentityRefused" => trust_fix(
            id,
            e.identity.as_deref().unwrap_or("the identity it names"),
            &f.namespace,
            &c.service_account,
        ),
        _ => format!(
            "see RegistryCredential {}'s status.failedServiceAccounts entry for {}/{} and its Events; {retry}",
            c.name, f.namespace, c.service_account
        ),
    })
}

/// What the cloud must trust for ServiceAccount `ns`/`sa` to use `identity`.
fn trust_fix(id: &IdentityFacts, identity: &str, ns: &str, sa: &str) -> String {
    let subject = format!("system:serviceaccount:{ns}:{sa}");
    let audience = &id.audience;
    match id.kind {
        ProviderKind::Ecr => format!(
            "the trust policy of role {identity} must allow sts:AssumeRoleWithWebIdentity to the cluster's OIDC \
             provider with the condition <issuer>:sub = {subject} and <issuer>:aud = {audience}; and the role needs \
             the ECR pull permissions"
        ),
        ProviderKind::Gcr => {
            let member = google_member(audience, &subject).unwrap_or_else(|| {
                format!(
                    "principal://iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/\
                     subject/{subject}"
                )
            });
            format!(
                "grant the workload identity pool's principal for {subject} roles/iam.workloadIdentityUser on Google \
                 service account {identity} (gcloud iam service-accounts add-iam-policy-binding {identity} --role \
                 roles/iam.workloadIdentityUser --member {member}); and the service account needs \
                 roles/artifactregistry.reader"
            )
        }
        ProviderKind::Acr | ProviderKind::Static => format!(
            "add a federated identity credential to {} with the cluster's service account issuer, subject \
             {subject} and audience {audience}; and the app needs AcrPull on the registry",
            described(id.kind, identity)
        ),
    }
}

/// The IAM member of `subject` in the pool of the provider the audience
/// (`https://iam.googleapis.com/projects/…/workloadIdentityPools/<pool>/providers/<p>`) names.
fn google_member(audience: &str, subject: &str) -> Option<String> {
    let provider = audience.strip_prefix("https:")?;
    let (pool, _) = provider.split_once("/providers/")?;
    let pool = pool.strip_prefix("//iam.googleapis.com/")?;
    Some(format!("principal://iam.googleapis.com/{pool}/subject/{subject}"))
}

/// `role arn:…`, `Google service account …`, `Entra app …`: an identity as
/// status names it.
fn described(kind: ProviderKind, identity: &str) -> String {
    match kind {
        ProviderKind::Ecr => format!("role {identity}"),
        ProviderKind::Gcr => format!("Google service account {identity}"),
        ProviderKind::Acr | ProviderKind::Static => match identity.split_once('/') {
            Some((tenant, client)) => format!("Entra app {client} in tenant {tenant}"),
            None => format!("Entra app {identity}"),
        },
    }
}

/// What the annotation of `kind` holds, in words.
fn placeholder(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ecr => "<role ARN>",
        ProviderKind::Gcr => "<Google service account email>",
        ProviderKind::Acr | ProviderKind::Static => "<Entra app client id>",
    }
}

/// An example value of the annotation of `kind`.
fn example(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ecr => "arn:aws:iam::<account>:role/<role>",
        ProviderKind::Gcr => "<name>@<project>.iam.gserviceaccount.com",
        ProviderKind::Acr | ProviderKind::Static => "<client id>",
    }
}

fn unknown(f: &Findings, what: &str, fix: &str) -> Verdict {
    Verdict {
        cause: Cause::Unknown,
        detail: None,
        message: format!("{what}{}", runtime_said(f)),
        fix: fix.to_string(),
    }
}

/// The covering RegistryCredential, when the pod does not reference its
/// Secret and the ServiceAccount's reference is `service_account_links`.
fn unlinked(f: &Findings, service_account_links: Option<bool>) -> Option<&CredentialFacts> {
    f.credential
        .as_ref()
        .filter(|c| !c.pod_links && c.service_account_links == service_account_links)
}

/// Whether the keyring is known and picks nothing for the image.
fn sent_nothing(f: &Findings) -> bool {
    f.sent.as_ref().is_some_and(Vec::is_empty)
}

/// The manifest HEAD made with what the pod would send.
fn pods_manifest(f: &Findings) -> Option<&Manifest> {
    f.manifests.iter().find(|m| m.pods)
}

/// `<namespace>/<secret>` of the covering RegistryCredential's Secret.
fn secret_path(f: &Findings, c: &CredentialFacts) -> String {
    format!("{}/{}", f.namespace, c.secret_name)
}

fn status_text(check: &ManifestCheck) -> String {
    match check.status {
        Some(status) => status.to_string(),
        None => check.message.clone(),
    }
}

fn host_name(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(hint: Hint) -> Findings {
        Findings {
            namespace: "team".into(),
            pod: "app".into(),
            container: "app".into(),
            image: "reg.io/team/app:1".into(),
            host: "reg.io".into(),
            hint,
            text: Some("runtime text".into()),
            pod_secrets: vec![],
            sent: Some(vec![]),
            credential: None,
            credentials_listed: true,
            manifests: vec![],
            now: "2026-11-30T12:00:00Z".parse().unwrap(),
            evidence: vec![],
        }
    }

    fn covered(f: &mut Findings) -> &mut CredentialFacts {
        f.credential = Some(CredentialFacts {
            name: "reg".into(),
            secret_name: "reg".into(),
            targeted: Some(true),
            secret_exists: Some(true),
            secret_foreign: false,
            secret_current: Some(true),
            not_after: None,
            service_account: "default".into(),
            service_account_links: Some(true),
            pod_links: true,
            identity: None,
        });
        f.sent = Some(vec![("reg".into(), "reg.io".into())]);
        f.credential.as_mut().unwrap()
    }

    fn manifest(status: Option<u16>, result: PullAuthResult, repository_exists: Option<bool>) -> Manifest {
        Manifest {
            with: "the pod's credential".into(),
            current: true,
            pods: true,
            check: ManifestCheck {
                result,
                status,
                repository_exists,
                ratelimit_remaining: None,
                message: "m".into(),
            },
        }
    }

    fn label(f: Findings) -> String {
        decide(f).label()
    }

    #[test]
    fn a_404_with_an_accepted_credential_is_a_missing_tag_or_repository() {
        let mut f = findings(Hint::NotFound);
        covered(&mut f);
        f.manifests = vec![manifest(Some(404), PullAuthResult::ImageNotFound, Some(true))];
        assert_eq!(label(f.clone()), "ImageNotFound/Tag");
        f.manifests = vec![manifest(Some(404), PullAuthResult::ImageNotFound, Some(false))];
        assert_eq!(label(f.clone()), "ImageNotFound/Repository");
        // Docker Hub's ambiguous denial is settled the same way.
        f.hint = Hint::DeniedOrMissing;
        assert_eq!(label(f), "ImageNotFound/Repository");
    }

    #[test]
    fn no_credential_covering_the_host_is_not_covered() {
        assert_eq!(label(findings(Hint::Unauthorized)), "CredentialMissing/NotCovered");
    }

    #[test]
    fn a_credential_of_someone_elses_refused_is_a_rejection_without_detail() {
        let mut f = findings(Hint::Unauthorized);
        f.sent = Some(vec![("mine".into(), "reg.io".into())]);
        assert_eq!(label(f), "CredentialRejected");
    }

    #[test]
    fn a_namespace_the_credential_does_not_target_is_not_covered() {
        let mut f = findings(Hint::Unauthorized);
        covered(&mut f).targeted = Some(false);
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/NotCovered");
        assert!(d.message.contains("does not target namespace team"), "{}", d.message);
    }

    #[test]
    fn a_targeted_namespace_without_the_secret_is_secret_missing() {
        let mut f = findings(Hint::SecretMissing);
        covered(&mut f).secret_exists = Some(false);
        assert_eq!(label(f), "CredentialMissing/SecretMissing");
    }

    #[test]
    fn a_same_named_secret_regcred_did_not_write_is_secret_missing() {
        let mut f = findings(Hint::Unauthorized);
        covered(&mut f).secret_foreign = true;
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/SecretMissing");
        assert!(d.fix.contains("existingSecretPolicy"), "{}", d.fix);
    }

    #[test]
    fn a_service_account_without_the_entry_is_not_linked() {
        let mut f = findings(Hint::Unauthorized);
        let c = covered(&mut f);
        c.pod_links = false;
        c.service_account_links = Some(false);
        assert_eq!(label(f), "CredentialMissing/ServiceAccountNotLinked");
    }

    #[test]
    fn a_linked_service_account_and_a_pod_without_the_entry_is_admitted_before_the_link() {
        let mut f = findings(Hint::NoCredential);
        covered(&mut f).pod_links = false;
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/PodAdmittedBeforeLink");
        assert!(d.fix.contains("kubectl delete pod -n team app"), "{}", d.fix);
    }

    #[test]
    fn an_older_copy_in_the_namespace_is_stale() {
        let mut f = findings(Hint::Unauthorized);
        covered(&mut f).secret_current = Some(false);
        assert_eq!(label(f), "CredentialRejected/StaleCopy");
    }

    #[test]
    fn a_current_credential_the_registry_refuses_is_refused() {
        let mut f = findings(Hint::Unauthorized);
        covered(&mut f);
        f.manifests = vec![manifest(Some(401), PullAuthResult::Unauthorized, None)];
        assert_eq!(label(f.clone()), "CredentialRejected/Refused");
        // Without a registry answer, the text and the current digest say the same.
        f.manifests.clear();
        assert_eq!(label(f), "CredentialRejected/Refused");
    }

    #[test]
    fn a_credential_past_its_not_after_is_expired() {
        let mut f = findings(Hint::Forbidden);
        covered(&mut f).not_after = Some("2026-11-30T11:00:00Z".parse().unwrap());
        assert_eq!(label(f), "CredentialExpired");
        assert_eq!(label(findings(Hint::Expired)), "CredentialExpired");
    }

    #[test]
    fn a_rate_limit_says_whether_the_pull_was_anonymous() {
        assert_eq!(label(findings(Hint::RateLimited)), "RateLimited/Anonymous");
        let mut f = findings(Hint::RateLimited);
        covered(&mut f);
        assert_eq!(label(f), "RateLimited/Authenticated");
    }

    #[test]
    fn network_failures_keep_their_kind() {
        let cases = [
            (Network::Dns, "RegistryUnreachable/DNS"),
            (Network::ConnectionRefused, "RegistryUnreachable/ConnectionRefused"),
            (Network::Timeout, "RegistryUnreachable/Timeout"),
            (Network::Tls, "RegistryUnreachable/TLS"),
            (Network::Other, "RegistryUnreachable"),
        ];
        for (network, want) in cases {
            assert_eq!(label(findings(Hint::Network(network))), want);
        }
    }

    #[test]
    fn what_nothing_explains_is_unknown_and_keeps_the_text() {
        let mut f = findings(Hint::Unrecognized);
        covered(&mut f);
        let d = decide(f);
        assert_eq!(d.label(), "Unknown");
        assert!(d.message.contains("runtime text"), "{}", d.message);
        let mut f = findings(Hint::Unauthorized);
        f.credentials_listed = false;
        f.sent = None;
        assert_eq!(label(f.clone()), "Unknown");
        // The keyring still shows an anonymous pull.
        f.sent = Some(vec![]);
        assert_eq!(label(f), "CredentialMissing");
    }

    #[test]
    fn the_json_shape_is_the_contracts() {
        let mut f = findings(Hint::Network(Network::Dns));
        f.evidence.push(Evidence::new("pod imagePullSecrets", "[]"));
        let json = serde_json::to_value(decide(f)).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cause",
                "container",
                "credential",
                "detail",
                "evidence",
                "fix",
                "image",
                "message",
                "namespace",
                "pod"
            ]
        );
        assert_eq!(json["credential"], serde_json::Value::Null);
        assert_eq!(json["detail"], "DNS");
        assert_eq!(json["evidence"][0]["check"], "pod imagePullSecrets");
    }

    /// A manifest check that got no answer from the registry (`message` says why).
    fn no_answer(message: &str) -> Manifest {
        Manifest {
            check: ManifestCheck {
                result: PullAuthResult::Unreachable,
                status: None,
                repository_exists: None,
                ratelimit_remaining: None,
                message: message.into(),
            },
            ..manifest(None, PullAuthResult::Unreachable, None)
        }
    }

    fn note(d: &Diagnosis) -> Option<&str> {
        d.evidence
            .iter()
            .find(|e| e.check.starts_with("not confirmed with registry"))
            .map(|e| e.result.as_str())
    }

    #[test]
    fn a_not_found_the_registry_could_not_be_asked_about_is_taken_from_the_text() {
        let mut f = findings(Hint::NotFound);
        covered(&mut f);
        f.manifests = vec![no_answer(
            "cannot reach registry reg.io at https://reg.io/v2/: the TLS handshake failed (invalid peer certificate: \
             UnknownIssuer)",
        )];
        let d = decide(f.clone());
        assert_eq!(d.label(), "ImageNotFound/Tag");
        let said = note(&d).expect("what could not be confirmed");
        assert!(said.contains("--ca-bundle"), "{said}");
        // Timeouts and refusals say where to run it instead.
        f.manifests = vec![no_answer("registry reg.io did not finish answering within 15s")];
        let d = decide(f.clone());
        assert_eq!(d.label(), "ImageNotFound/Tag");
        assert!(
            note(&d)
                .unwrap()
                .contains("where the nodes' network reaches the registry")
        );
        // CRI-O reads the registry's body: NAME_UNKNOWN is the repository's.
        f.text =
            Some("reading manifest 1 in reg.io/team/app: name unknown: repository name not known to registry".into());
        assert_eq!(label(f.clone()), "ImageNotFound/Repository");
        // A registry that answered is not overruled by the text.
        f.manifests = vec![manifest(Some(200), PullAuthResult::Healthy, None)];
        assert_ne!(decide(f).cause, Cause::ImageNotFound);
    }

    #[test]
    fn a_not_found_with_every_read_forbidden_is_still_the_image() {
        let mut f = findings(Hint::NotFound);
        f.credentials_listed = false;
        f.sent = None;
        let d = decide(f);
        assert_eq!(d.label(), "ImageNotFound/Tag");
        let said = note(&d).expect("what could not be confirmed");
        assert!(said.contains("get Secrets in namespace team"), "{said}");
    }

    #[test]
    fn a_refusal_of_the_pods_own_secret_with_credentials_unreadable_is_a_rejection() {
        let mut f = findings(Hint::Unauthorized);
        f.credentials_listed = false;
        f.sent = Some(vec![("own".into(), "reg.io".into())]);
        let d = decide(f);
        assert_eq!(d.label(), "CredentialRejected");
        assert!(note(&d).is_some(), "{:?}", d.evidence);
        // The text's own word that nothing was sent.
        let mut f = findings(Hint::NoCredential);
        f.credentials_listed = false;
        f.sent = None;
        assert_eq!(label(f), "CredentialMissing");
    }

    /// The kubelet's `FailedToRetrieveImagePullSecret` about Secret `reg`.
    fn unretrieved(f: &mut Findings) {
        f.pod_secrets = vec![PodSecret {
            name: "reg".into(),
            exists: Some(true),
        }];
        f.evidence.push(Evidence::new(
            FAILED_TO_RETRIEVE,
            "Unable to retrieve some image pull secrets (reg); attempting to pull the image may not succeed.",
        ));
    }

    #[test]
    fn a_secret_the_kubelet_could_not_read_that_is_there_now_is_not_yet_readable() {
        let mut f = findings(Hint::Unauthorized);
        covered(&mut f);
        unretrieved(&mut f);
        f.manifests = vec![manifest(Some(200), PullAuthResult::Healthy, None)];
        let d = decide(f.clone());
        assert_eq!(d.label(), "CredentialMissing/NotYetReadable");
        assert!(
            d.message.contains("Secret team/reg") && d.message.contains("(manifest HEAD: 200)"),
            "{}",
            d.message
        );
        assert!(note(&d).is_none(), "the registry answered");
        // A Secret of the pod's own, no RegistryCredential covering the host; no registry answer.
        let mut own = findings(Hint::NoCredential);
        unretrieved(&mut own);
        own.manifests = vec![no_answer("registry reg.io did not finish answering within 15s")];
        let d = decide(own);
        assert_eq!(d.label(), "CredentialMissing/NotYetReadable");
        assert!(note(&d).is_some());
        // Not when the Secret is still absent, or what it holds is refused, stale or expired.
        let mut absent = f.clone();
        absent.pod_secrets[0].exists = Some(false);
        absent.credential.as_mut().unwrap().secret_exists = Some(false);
        assert_eq!(label(absent), "CredentialMissing/SecretMissing");
        let mut refused = f.clone();
        refused.manifests = vec![manifest(Some(401), PullAuthResult::Unauthorized, None)];
        assert_eq!(label(refused), "CredentialRejected/Refused");
        let mut stale = f.clone();
        stale.credential.as_mut().unwrap().secret_current = Some(false);
        assert_eq!(label(stale), "CredentialRejected/StaleCopy");
        // Nor when the pull failed for a reason of the registry's.
        let mut missing = f;
        missing.hint = Hint::NotFound;
        missing.manifests = vec![manifest(Some(404), PullAuthResult::ImageNotFound, Some(true))];
        assert_eq!(label(missing), "ImageNotFound/Tag");
    }

    const ROLE: &str = "arn:aws:iam::111111111111:role/team-a";

    /// Covered by a RegistryCredential in `identity: PerServiceAccount` mode
    /// (ECR): the pod runs as `builder`, which names role [`ROLE`], and
    /// carries its own Secret `reg-builder`.
    fn per_service_account(f: &mut Findings) -> &mut CredentialFacts {
        let c = covered(f);
        c.secret_name = crate::identity::secret_name("reg", "builder");
        c.service_account = "builder".into();
        c.identity = Some(IdentityFacts {
            kind: ProviderKind::Ecr,
            annotation: crate::identity::AWS_ROLE_ANNOTATION.into(),
            audience: crate::identity::AWS_AUDIENCE.into(),
            named: Some(Some(WorkloadIdentity::Aws { role_arn: ROLE.into() })),
            selected: Some(true),
            failure: None,
        });
        f.sent = Some(vec![("reg-builder".into(), "reg.io".into())]);
        f.credential.as_mut().unwrap()
    }

    fn identity(f: &mut Findings) -> &mut IdentityFacts {
        f.credential.as_mut().unwrap().identity.as_mut().unwrap()
    }

    fn failed(reason: &str, message: &str) -> Option<FailedServiceAccount> {
        Some(FailedServiceAccount {
            namespace: "team".into(),
            name: "builder".into(),
            reason: reason.into(),
            message: message.into(),
            identity: Some(ROLE.into()),
            retry_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-30T12:05:00Z".parse().unwrap(),
            )),
        })
    }

    /// Not yet written: absent, and neither the ServiceAccount nor the pod names it.
    fn unwritten(c: &mut CredentialFacts) {
        c.secret_exists = Some(false);
        c.secret_current = None;
        c.service_account_links = Some(false);
    }

    #[test]
    fn a_service_account_without_the_identity_annotation_is_identity_missing() {
        let mut f = findings(Hint::NoCredential);
        let c = per_service_account(&mut f);
        unwritten(c);
        c.pod_links = false;
        identity(&mut f).named = Some(None);
        f.sent = Some(vec![]);
        let d = decide(f.clone());
        assert_eq!(d.label(), "CredentialMissing/IdentityMissing");
        assert!(
            d.message
                .contains("ServiceAccount team/builder has no eks.amazonaws.com/ecr-role-arn annotation"),
            "{}",
            d.message
        );
        assert!(
            d.fix.starts_with(
                "annotate ServiceAccount team/builder with eks.amazonaws.com/ecr-role-arn=<role ARN> (kubectl \
                 annotate serviceaccount -n team builder eks.amazonaws.com/ecr-role-arn=arn:aws:iam::<account>:\
                 role/<role>); regcred then mints its own credential into Secret reg-builder"
            ),
            "{}",
            d.fix
        );
        assert!(d.fix.contains("recreate the pod"), "{}", d.fix);
        // Status says so where the ServiceAccount could not be read.
        identity(&mut f).named = None;
        identity(&mut f).failure = failed("IdentityMissing", "no eks.amazonaws.com/ecr-role-arn annotation");
        assert_eq!(label(f.clone()), "CredentialMissing/IdentityMissing");
        // Google and Azure name their own annotation.
        let id = identity(&mut f);
        id.kind = ProviderKind::Gcr;
        id.annotation = crate::identity::GOOGLE_SERVICE_ACCOUNT_ANNOTATION.into();
        let d = decide(f);
        assert!(
            d.fix
                .contains("iam.gke.io/gcp-service-account=<name>@<project>.iam.gserviceaccount.com"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn a_refused_identity_is_refused_and_names_the_role_and_what_the_cloud_said() {
        let said = "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity";
        let mut f = findings(Hint::Unauthorized);
        unwritten(per_service_account(&mut f));
        identity(&mut f).failure = failed("IdentityRefused", said);
        f.sent = Some(vec![]);
        let d = decide(f.clone());
        assert_eq!(d.label(), "CredentialRejected/Refused");
        assert!(
            d.message
                .contains(&format!("the cloud refused role {ROLE} to ServiceAccount team/builder"))
                && d.message.contains(said),
            "{}",
            d.message
        );
        assert!(
            d.fix
                .contains("trust policy of role arn:aws:iam::111111111111:role/team-a")
                && d.fix.contains("sub = system:serviceaccount:team:builder")
                && d.fix.contains("aud = sts.amazonaws.com"),
            "{}",
            d.fix
        );

        // Google: the pool's principal for the ServiceAccount, from the audience.
        let mut google = f.clone();
        let id = identity(&mut google);
        id.kind = ProviderKind::Gcr;
        id.audience =
            "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k".into();
        id.failure.as_mut().unwrap().identity = Some("puller@proj.iam.gserviceaccount.com".into());
        let d = decide(google);
        assert!(
            d.message
                .contains("Google service account puller@proj.iam.gserviceaccount.com"),
            "{}",
            d.message
        );
        assert!(
            d.fix.contains("roles/iam.workloadIdentityUser")
                && d.fix.contains(
                    "--member principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/\
                     subject/system:serviceaccount:team:builder"
                ),
            "{}",
            d.fix
        );

        // Azure: the app's federated credential.
        let mut azure = f.clone();
        let id = identity(&mut azure);
        id.kind = ProviderKind::Acr;
        id.audience = crate::identity::AZURE_AUDIENCE.into();
        id.failure.as_mut().unwrap().identity = Some("t2/c1".into());
        let d = decide(azure);
        assert!(d.message.contains("Entra app c1 in tenant t2"), "{}", d.message);
        assert!(
            d.fix.contains("federated identity credential")
                && d.fix.contains("subject system:serviceaccount:team:builder")
                && d.fix.contains("api://AzureADTokenExchange"),
            "{}",
            d.fix
        );

        // A Secret still valid from before the refusal: the pull is judged on it.
        let mut held = f;
        let c = held.credential.as_mut().unwrap();
        c.secret_exists = Some(true);
        c.secret_current = Some(true);
        c.service_account_links = Some(true);
        held.sent = Some(vec![("reg-builder".into(), "reg.io".into())]);
        held.manifests = vec![manifest(Some(200), PullAuthResult::Healthy, None)];
        assert_eq!(label(held), "Unknown");
    }

    #[test]
    fn other_failures_of_the_service_account_are_the_closest_cause_with_what_status_says() {
        // Throttled before the first credential: the Secret is missing.
        let mut f = findings(Hint::NoCredential);
        unwritten(per_service_account(&mut f));
        identity(&mut f).failure = failed("Throttled", "STS answered 429; Retry-After 30s");
        f.sent = Some(vec![]);
        let d = decide(f.clone());
        assert_eq!(d.label(), "CredentialMissing/SecretMissing");
        assert!(
            d.message.contains("no Secret reg-builder of ServiceAccount builder")
                && d.message.contains("Throttled: STS answered 429; Retry-After 30s"),
            "{}",
            d.message
        );
        assert!(d.fix.contains("tries again at 2026-11-30T12:05:00Z"), "{}", d.fix);
        // The token request failed and the last credential expired.
        let mut f = findings(Hint::Forbidden);
        per_service_account(&mut f).not_after = Some("2026-11-30T11:00:00Z".parse().unwrap());
        identity(&mut f).failure = failed("TokenRequestFailed", "serviceaccounts/token: forbidden");
        let d = decide(f);
        assert_eq!(d.label(), "CredentialExpired");
        assert!(
            d.message
                .contains("TokenRequestFailed: serviceaccounts/token: forbidden"),
            "{}",
            d.message
        );
        assert!(d.fix.contains("may create serviceaccounts/token"), "{}", d.fix);
        // The exchange failed after a re-annotation: the Secret is of the old identity.
        let mut f = findings(Hint::Unauthorized);
        per_service_account(&mut f).secret_current = Some(false);
        identity(&mut f).failure = failed("MintFailed", "ECR answered 500");
        let d = decide(f);
        assert_eq!(d.label(), "CredentialRejected/StaleCopy");
        assert!(
            d.message
                .contains(&format!("credential of the role {ROLE} it names now"))
                && d.message.contains("MintFailed: ECR answered 500"),
            "{}",
            d.message
        );
    }

    #[test]
    fn in_per_service_account_mode_every_cause_names_the_service_accounts_own_secret() {
        let mut f = findings(Hint::SecretMissing);
        unwritten(per_service_account(&mut f));
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/SecretMissing");
        assert!(d.message.contains("Secret reg-builder"), "{}", d.message);
        assert!(d.fix.contains("status.failedServiceAccounts"), "{}", d.fix);

        let mut f = findings(Hint::NoCredential);
        per_service_account(&mut f).pod_links = false;
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/PodAdmittedBeforeLink");
        assert!(d.message.contains("references Secret reg-builder now"), "{}", d.message);

        let mut f = findings(Hint::Unauthorized);
        per_service_account(&mut f);
        f.pod_secrets = vec![PodSecret {
            name: "reg-builder".into(),
            exists: Some(true),
        }];
        f.evidence.push(Evidence::new(
            FAILED_TO_RETRIEVE,
            "Unable to retrieve some image pull secrets (reg-builder); attempting to pull the image may not succeed.",
        ));
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/NotYetReadable");
        assert!(d.message.contains("Secret team/reg-builder"), "{}", d.message);

        let mut f = findings(Hint::Forbidden);
        per_service_account(&mut f).not_after = Some("2026-11-30T11:00:00Z".parse().unwrap());
        let d = decide(f);
        assert_eq!(d.label(), "CredentialExpired");
        assert!(d.message.contains("Secret team/reg-builder expired"), "{}", d.message);

        let mut f = findings(Hint::Unauthorized);
        per_service_account(&mut f);
        f.manifests = vec![manifest(Some(403), PullAuthResult::Unauthorized, None)];
        assert_eq!(label(f), "CredentialRejected/Refused");

        // A ServiceAccount the credential does not select gets nothing.
        let mut f = findings(Hint::NoCredential);
        let c = per_service_account(&mut f);
        unwritten(c);
        c.pod_links = false;
        identity(&mut f).selected = Some(false);
        let d = decide(f);
        assert_eq!(d.label(), "CredentialMissing/ServiceAccountNotLinked");
        assert!(
            d.message.contains("does not select ServiceAccount team/builder"),
            "{}",
            d.message
        );
    }

    /// The rules no test above reaches, one case each.
    #[test]
    fn the_other_rules_answer_their_case() {
        type Setup = fn(&mut Findings);
        let cases: [(&str, Hint, Setup, &str, &str); 6] = [
            (
                "a pull policy of Never is the image not present, whatever covers the host",
                Hint::NeverPull,
                |f| {
                    covered(f);
                },
                "ImageNotPresent/PullPolicyNever",
                "imagePullPolicy is Never",
            ),
            (
                "a malformed reference is an invalid image",
                Hint::InvalidReference,
                |_| {},
                "InvalidImage/Reference",
                "is not a valid image reference",
            ),
            (
                "a missing layer is a missing blob",
                Hint::BlobNotFound,
                |f| {
                    covered(f);
                    f.manifests = vec![manifest(Some(200), PullAuthResult::Healthy, None)];
                },
                "ImageNotFound/Blob",
                "not one of its layers",
            ),
            (
                "a pod without the entry whose ServiceAccount cannot be read is missing, without detail",
                Hint::Unauthorized,
                |f| {
                    let c = covered(f);
                    c.pod_links = false;
                    c.service_account_links = None;
                },
                "CredentialMissing",
                "could not be read to tell why",
            ),
            (
                "a registry that serves the image now says the failure has passed",
                Hint::Unauthorized,
                |f| {
                    covered(f);
                    f.manifests = vec![manifest(Some(200), PullAuthResult::Healthy, None)];
                },
                "Unknown",
                "whatever failed has passed",
            ),
            (
                "a Secret none of whose entries the kubelet would send is missing, without detail",
                Hint::NoCredential,
                |f| {
                    covered(f);
                    f.sent = Some(vec![]);
                },
                "CredentialMissing",
                "none of its entries matches",
            ),
        ];
        for (name, hint, setup, want, says) in cases {
            let mut f = findings(hint);
            setup(&mut f);
            let d = decide(f);
            assert_eq!(d.label(), want, "{name}");
            assert!(d.message.contains(says), "{name}: {}", d.message);
        }
    }
}
