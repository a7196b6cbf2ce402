//! The kubelet's text, read: what an image-pull Event or a container's
//! waiting message says about the failure, before any check. Pure.
//!
//! The forms (Kubernetes 1.28–1.35; containerd 1.6, 1.7 and 2.x, whose CRI
//! pulls through the Transfer Service from 2.1 with other texts; CRI-O;
//! dockershim):
//! - Event `Failed`: `Failed to pull image "<image>": <runtime error>`;
//! - waiting message: the runtime error itself, or on ≥1.32 during back-off
//!   `Back-off pulling image "<image>": ErrImagePull: <runtime error>`;
//! - Event `BackOff`: `Back-off pulling image "<image>"` (no cause at all);
//! - `FailedToRetrieveImagePullSecret`, `ErrImageNeverPull`, `InspectFailed`;
//! - the runtime error may start with `rpc error: code = <code> desc = `, or
//!   not, and when the kubelet tried several credentials it is a bracketed,
//!   comma-separated list of each attempt's error.
//!
//! Nothing is anchored on the gRPC prefix; patterns are matched
//! case-insensitively inside each attempt's text, the most specific first
//! (an ECR `pull access denied ... token has expired` is an expiry, not a
//! denial).

/// What the text says, before any check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// The registry has no such manifest (`not found`, `manifest unknown`).
    NotFound,
    /// A layer is missing behind a manifest that exists (pull-through caches).
    BlobNotFound,
    /// The registry's deliberately ambiguous answer: the repository does not
    /// exist, or the pull was not authorized (`pull access denied, repository
    /// does not exist or may require authorization`, `insufficient_scope`).
    DeniedOrMissing,
    /// The pull carried no credential (`anonymous token`, `no basic auth credentials`).
    NoCredential,
    /// HTTP 401: a credential was refused, or none was sent (containerd does not say which).
    Unauthorized,
    /// HTTP 403: refused (permissions, scope, or an expired cloud token).
    Forbidden,
    /// The registry said the token expired.
    Expired,
    /// HTTP 429 / `toomanyrequests`.
    RateLimited,
    /// The node could not talk to the registry.
    Network(Network),
    /// The kubelet could not read a Secret the pod names.
    SecretMissing,
    /// `imagePullPolicy: Never` and the kubelet will not pull: the image is
    /// not on the node, or (1.33+ with `KubeletEnsureSecretPulledImages`) the
    /// pod's credentials did not pull it.
    NeverPull,
    /// The image reference does not parse.
    InvalidReference,
    /// `Back-off pulling image "…"` alone: the cause was in an earlier message.
    BackOffOnly,
    /// None of the known forms.
    Unrecognized,
}

impl Hint {
    /// What the text says, in words, for evidence and messages.
    pub fn describe(self) -> &'static str {
        match self {
            Hint::NotFound => "the registry answered not found (the image may not exist)",
            Hint::BlobNotFound => "a layer was not found behind the manifest",
            Hint::DeniedOrMissing => "access denied or no such repository (the registry does not say which)",
            Hint::NoCredential => "the pull carried no credential",
            Hint::Unauthorized => "HTTP 401 (a credential was refused, or none was sent)",
            Hint::Forbidden => "HTTP 403 (refused: permissions, scope, or an expired token)",
            Hint::Expired => "the registry said the credential expired",
            Hint::RateLimited => "the registry throttled pulls (429)",
            Hint::Network(Network::Dns) => "the registry host did not resolve",
            Hint::Network(Network::ConnectionRefused) => "the connection was refused",
            Hint::Network(Network::Timeout) => "the connection timed out",
            Hint::Network(Network::Tls) => "the registry's certificate was not trusted",
            Hint::Network(Network::Other) => "the connection to the registry failed",
            Hint::SecretMissing => "a pull Secret the pod names does not exist",
            Hint::NeverPull => "the kubelet will not pull: the pull policy is Never",
            Hint::InvalidReference => "the image reference does not parse",
            Hint::BackOffOnly => "only `Back-off pulling image`, without the error",
            Hint::Unrecognized => "no known form",
        }
    }
}

/// Why the node could not reach the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Dns,
    ConnectionRefused,
    Timeout,
    Tls,
    /// Reset, no route, EOF, `registry is unavailable`: none of the above.
    Other,
}

/// A message, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The image as the pod spec names it, when the message quotes it.
    pub image: Option<String>,
    /// One hint per attempt (several when the kubelet tried several credentials).
    pub attempts: Vec<Hint>,
    /// The runtime's error text, without the kubelet's wrapper.
    pub text: String,
}

impl Classification {
    /// The hint that says most: a missing manifest seen with one credential
    /// beats a 401 from another; a network or rate-limit failure beats
    /// anything a credential might have caused.
    pub fn hint(&self) -> Hint {
        const ORDER: [fn(Hint) -> bool; 12] = [
            |h| matches!(h, Hint::Network(_)),
            |h| h == Hint::RateLimited,
            |h| h == Hint::Expired,
            |h| h == Hint::NotFound,
            |h| h == Hint::Forbidden,
            |h| h == Hint::Unauthorized,
            |h| h == Hint::DeniedOrMissing,
            |h| h == Hint::NoCredential,
            |h| h == Hint::BlobNotFound,
            |h| h == Hint::SecretMissing,
            |h| matches!(h, Hint::NeverPull | Hint::InvalidReference),
            |h| h == Hint::BackOffOnly,
        ];
        ORDER
            .iter()
            .find_map(|pick| self.attempts.iter().copied().find(|h| pick(*h)))
            .unwrap_or(Hint::Unrecognized)
    }

    /// Whether the text carries a cause (not only `Back-off pulling image`).
    pub fn is_informative(&self) -> bool {
        !matches!(self.hint(), Hint::BackOffOnly | Hint::Unrecognized)
    }
}

/// Read one Event message or waiting message.
pub fn classify(message: &str) -> Classification {
    // Log lines escape quotes; Events do not.
    let message = message.trim().replace("\\\"", "\"");
    let mut image = None;
    let mut rest = message.as_str();

    if let Some(after) = find_after(rest, "Back-off pulling image ") {
        let (quoted, tail) = quoted(after);
        image = quoted.map(String::from);
        match tail.trim_start().strip_prefix(':') {
            Some(error) => rest = error.trim_start(),
            None => {
                return Classification {
                    image,
                    attempts: vec![Hint::BackOffOnly],
                    text: String::new(),
                };
            }
        }
        rest = rest.strip_prefix("ErrImagePull:").unwrap_or(rest).trim_start();
    }
    for wrapper in ["Failed to pull image ", "PullImage "] {
        if let Some(after) = find_after(rest, wrapper) {
            let (quoted, tail) = quoted(after);
            if image.is_none() {
                image = quoted.map(String::from);
            }
            let tail = tail.trim_start();
            let tail = tail.strip_prefix("from image service failed").unwrap_or(tail);
            rest = tail.trim_start().strip_prefix(':').unwrap_or(tail).trim_start();
            break;
        }
    }
    if let Some(after) = find_after(rest, "image pull failed for ") {
        let name = after.split(' ').next().unwrap_or_default();
        image = image.or_else(|| Some(name.to_string()));
    }

    let text = rest.to_string();
    let attempts = split_attempts(rest).into_iter().map(classify_one).collect();
    Classification { image, attempts, text }
}

/// The kubelet's aggregate of several attempts: `[<err>, <err>]`. Commas
/// also occur inside one error, so a new attempt starts only where an error
/// does.
fn split_attempts(text: &str) -> Vec<&str> {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return vec![text];
    };
    const STARTS: [&str; 14] = [
        "rpc error:",
        "failed to pull",
        "failed to resolve",
        "failed to copy",
        "failed to authorize",
        "failed to do request",
        "unexpected status from",
        "Error response from daemon",
        "Error reading manifest",
        "error pinging",
        "initializing source",
        "pinging container registry",
        "unable to pull image",
        "RegistryUnavailable",
    ];
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in inner.match_indices(", ") {
        let next = &inner[at + 2..];
        if STARTS.iter().any(|s| next.starts_with(s)) {
            parts.push(&inner[start..at]);
            start = at + 2;
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// One attempt's text, read by the first reading that recognises it.
fn classify_one(attempt: &str) -> Hint {
    let lower = attempt.to_ascii_lowercase();
    READINGS
        .iter()
        .find_map(|read| read(&lower))
        .unwrap_or(Hint::Unrecognized)
}

/// The readings of one attempt's lower-cased text, the most specific first:
/// each names the hint it recognises, or `None` to leave the text to the next.
const READINGS: [fn(&str) -> Option<Hint>; 16] = [
    secret_missing,
    never_pull,
    invalid_reference,
    expired,
    rate_limited,
    timed_out,
    untrusted_certificate,
    unresolved,
    connection_refused,
    other_network_failure,
    no_credential,
    denied_or_missing,
    blob_not_found,
    forbidden,
    unauthorized,
    not_found,
];

fn contains_any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| text.contains(n))
}

fn secret_missing(text: &str) -> Option<Hint> {
    text.contains("unable to retrieve some image pull secrets")
        .then_some(Hint::SecretMissing)
}

/// `ErrImageNeverPull`; and the 1.33 alpha of `KubeletEnsureSecretPulledImages`,
/// which said so of a present image its own way (kubernetes
/// `pkg/kubelet/images/image_manager.go`, `ErrImageNotEnsured`).
fn never_pull(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "is not present with pull policy of never",
            "but does not have the proper auth (image secret)",
        ],
    )
    .then_some(Hint::NeverPull)
}

fn invalid_reference(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "failed to apply default image tag",
            "couldn't parse image reference",
            "couldn't parse image name",
            "invalid reference format",
        ],
    )
    .then_some(Hint::InvalidReference)
}

/// Before the refusals: an ECR `pull access denied ... token has expired` is an expiry.
fn expired(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "token has expired",
            "token is expired",
            "authorization token has expired",
        ],
    )
    .then_some(Hint::Expired)
}

fn rate_limited(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "429 too many requests",
            "toomanyrequests",
            "unexpected status: 429",
            "pull rate limit",
            // containers/image (CRI-O): `ErrTooManyRequests`.
            "too many requests to registry",
        ],
    )
    .then_some(Hint::RateLimited)
}

/// Before [`untrusted_certificate`]: a timed-out TLS handshake is the
/// network's, not the certificate's.
fn timed_out(text: &str) -> Option<Hint> {
    let timed_out = contains_any(
        text,
        &[
            "tls handshake timeout",
            "i/o timeout",
            "connection timed out",
            "context deadline exceeded",
            "code = deadlineexceeded",
        ],
    );
    if !timed_out {
        return None;
    }
    // `lookup … on …:53: … i/o timeout` is the resolver timing out.
    if text.contains("lookup ") && !text.contains("dial tcp ") {
        return Some(Hint::Network(Network::Dns));
    }
    Some(Hint::Network(Network::Timeout))
}

fn untrusted_certificate(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "x509:",
            "tls: failed to verify",
            "certificate signed by unknown authority",
            "certificate is not valid",
            "certificate has expired",
            "tls: ",
        ],
    )
    .then_some(Hint::Network(Network::Tls))
}

fn unresolved(text: &str) -> Option<Hint> {
    let unresolved = contains_any(
        text,
        &[
            "no such host",
            "server misbehaving",
            "temporary failure in name resolution",
            "dial tcp: lookup ",
            "name resolution",
        ],
    ) || (text.contains("lookup ") && contains_any(text, &[": try again", "device or resource busy"]));
    unresolved.then_some(Hint::Network(Network::Dns))
}

fn connection_refused(text: &str) -> Option<Hint> {
    text.contains("connection refused")
        .then_some(Hint::Network(Network::ConnectionRefused))
}

fn other_network_failure(text: &str) -> Option<Hint> {
    let failed = contains_any(
        text,
        &[
            "no route to host",
            "connection reset",
            "network is unreachable",
            "registry is unavailable",
            "failed to do request",
        ],
    ) || text.trim_end().ends_with(": eof");
    failed.then_some(Hint::Network(Network::Other))
}

fn no_credential(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "anonymous token",
            "no basic auth credentials",
            "unauthenticated request",
            "authentication required: no credentials",
        ],
    )
    .then_some(Hint::NoCredential)
}

fn denied_or_missing(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "pull access denied",
            "repository does not exist or may require",
            "requested access to the resource is denied",
            "insufficient_scope",
            "or it may not exist",
            "does not exist or no pull access",
        ],
    )
    .then_some(Hint::DeniedOrMissing)
}

/// A layer missing behind a manifest: containerd's blob fetch (`could not
/// fetch content descriptor … from remote: not found`, or `content at
/// …/blobs/… not found`), containers/image's (`fetching blob: blob unknown`).
fn blob_not_found(text: &str) -> Option<Hint> {
    let containerd = contains_any(
        text,
        &["could not fetch content descriptor", "failed open: could not fetch"],
    ) && text.contains("not found");
    let containerd_url = text.contains("content at ") && text.contains("/blobs/") && text.contains("not found");
    let containers_image = text.contains("fetching blob")
        && contains_any(text, &["blob unknown", "not found", "statuscode: 404", "404 not found"]);
    (containerd || containerd_url || containers_image).then_some(Hint::BlobNotFound)
}

fn forbidden(text: &str) -> Option<Hint> {
    let forbidden = contains_any(
        text,
        &[
            "403 forbidden",
            "unexpected status: 403",
            "denied: permission",
            "denied on resource",
            ": denied:",
        ],
    ) || text.trim_start().starts_with("denied:");
    forbidden.then_some(Hint::Forbidden)
}

fn unauthorized(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "401 unauthorized",
            "unexpected status: 401",
            "unauthorized:",
            "authentication required",
            "incorrect username or password",
            "invalid username/password",
            "security token included in the request is invalid",
        ],
    )
    .then_some(Hint::Unauthorized)
}

fn not_found(text: &str) -> Option<Hint> {
    contains_any(
        text,
        &[
            "not found",
            "manifest unknown",
            "name unknown",
            "name_unknown",
            "manifest_unknown",
            "code = notfound",
            // containers/image rewords a registry error whose message is its
            // code's own: NAME_UNKNOWN reads `repository name not known to registry`.
            "not known to registry",
        ],
    )
    .then_some(Hint::NotFound)
}

/// The Secrets a `FailedToRetrieveImagePullSecret` Event names: `Unable to
/// retrieve some image pull secrets (a, b); attempting to pull the image may
/// not succeed.` → `[a, b]`; `None` for any other message.
pub fn unretrieved_secrets(message: &str) -> Option<Vec<String>> {
    let after = find_after(message, "Unable to retrieve some image pull secrets (")?;
    let names = &after[..after.find(')')?];
    Some(
        names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect(),
    )
}

fn find_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

/// `"<x>"<tail>` → (x, tail); without a leading quote, (None, text).
fn quoted(text: &str) -> (Option<&str>, &str) {
    let Some(inner) = text.strip_prefix('"') else {
        return (None, text);
    };
    match inner.find('"') {
        Some(end) => (Some(&inner[..end]), &inner[end + 1..]),
        None => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::Network::{ConnectionRefused, Dns, Other, Timeout, Tls};
    use super::*;
    use Hint::*;

    /// One case per message form in FACTS.md (section A, row numbers in
    /// brackets), verbatim; the name says what the text shows.
    const CASES: &[(&str, &str, Hint)] = &[
        // A.1 not found
        (
            "a containerd NotFound with the gRPC prefix is a missing image [1]",
            r#"Failed to pull image "non-existent-image": rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/non-existent-image:latest": failed to resolve reference "docker.io/library/non-existent-image:latest": docker.io/library/non-existent-image:latest: not found"#,
            NotFound,
        ),
        (
            "a containerd log line with escaped quotes is a missing image [2]",
            r#"rpc error: code = NotFound desc = failed to pull and unpack image \"registry.k8s.io/kube-apiserver-amd64:v1.30.0-alpha.1.107_052bce26f4f48b\": failed to resolve reference \"registry.k8s.io/kube-apiserver-amd64:v1.30.0-alpha.1.107_052bce26f4f48b\": registry.k8s.io/kube-apiserver-amd64:v1.30.0-alpha.1.107_052bce26f4f48b: not found"#,
            NotFound,
        ),
        (
            "a containerd not found without any prefix is a missing image [3]",
            r#"failed to resolve reference "quay.io/gpustack/runner:cuda12.9-vllm0.17.0-linux-amd64": quay.io/gpustack/runner:cuda12.9-vllm0.17.0-linux-amd64: not found"#,
            NotFound,
        ),
        (
            "a layer not found behind a found manifest is a missing blob [4]",
            "failed to copy: httpReadSeeker: failed open: could not fetch content descriptor sha256:732cbede32a5c8b88862709b9e904092864ab820830e0f1ff344aaf2ecc7c69b (application/vnd.docker.image.rootfs.diff.tar.gzip) from remote: not found",
            BlobNotFound,
        ),
        (
            "a CRI-O manifest unknown for a digest is a missing image [5]",
            r#""PullImage from image service failed" err="rpc error: code = Unknown desc = initializing source docker://quay.io/okd/scos-content@sha256:637140d5811ea5f3ebbf1f0185ef4e98085236684337f2aabc4fa6bbffe1b305: reading manifest sha256:637140d5811ea5f3ebbf1f0185ef4e98085236684337f2aabc4fa6bbffe1b305 in quay.io/okd/scos-content: manifest unknown""#,
            NotFound,
        ),
        (
            "an older CRI-O Error reading manifest ... manifest unknown is a missing image [6]",
            r#"Failed to pull image "registry.svc.ci.openshift.org/origin/4.3-2019-10-29-062458@sha256:8184092486c345c2b757f366f146218a115e5d7a92b481cb76257358653ec852": rpc error: code = Unknown desc = Error reading manifest sha256:8184092486c345c2b757f366f146218a115e5d7a92b481cb76257358653ec852 in registry.svc.ci.openshift.org/origin/4.3-2019-10-29-062458: manifest unknown: manifest unknown"#,
            NotFound,
        ),
        (
            "a dockershim manifest for ... not found is a missing image [7]",
            r#"Failed to pull image "lachlanevenson/k8s-kubectl:v1.18.20": rpc error: code = Unknown desc = Error response from daemon: manifest for lachlanevenson/k8s-kubectl:v1.18.20 not found: manifest unknown: manifest unknown"#,
            NotFound,
        ),
        (
            "ACR's unauthorized for a missing tag reads as a refusal until checked [8]",
            "unauthorized: authentication required",
            Unauthorized,
        ),
        // A.2 no or wrong credentials
        (
            "containerd's pull access denied without the gRPC prefix is ambiguous [9]",
            r#"Failed to pull image "kubefleet-dashboard:latest": failed to pull and unpack image "docker.io/library/kubefleet-dashboard:latest": failed to resolve reference "docker.io/library/kubefleet-dashboard:latest": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"#,
            DeniedOrMissing,
        ),
        (
            "containerd's pull access denied with the gRPC prefix is ambiguous [10]",
            r#"Failed to pull image "appscode/kubed:v0.13.2": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/appscode/kubed:v0.13.2": failed to resolve reference "docker.io/appscode/kubed:v0.13.2": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"#,
            DeniedOrMissing,
        ),
        (
            "an old containerd insufficient_scope is ambiguous [11]",
            r#"Failed to pull image "kubernetes/redis-slave:v2": rpc error: code = Unknown desc = failed to resolve image "docker.io/kubernetes/redis-slave:v2": server message: insufficient_scope: authorization failed"#,
            DeniedOrMissing,
        ),
        (
            "a Harbor 401 on the manifest is a refusal [12]",
            r#"Failed to pull image "registry.app.xxx.net/XXXXX/partsgo42:GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7": rpc error: code = Unknown desc = failed to pull and unpack image "...": failed to resolve reference "...": pulling from host registry.app.xxx.net failed with status code [manifests GitActionsNew-2e7e78f7bb157128f1853b0dc06bf7ccd13156d7]: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            "a 403 from ghcr's token endpoint is a refusal [13]",
            r#"Failed to pull image "ghcr.io/kagenti/kagenti-client-registration:latest": failed to pull and unpack image "ghcr.io/kagenti/kagenti-client-registration:latest": failed to resolve reference "ghcr.io/kagenti/kagenti-client-registration:latest": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Akagenti%2Fkagenti-client-registration%3Apull&service=ghcr.io: 403 Forbidden"#,
            Forbidden,
        ),
        (
            "an older containerd oauth token 403 is a refusal [14]",
            r#"Failed to pull image "registry.crowdstrike.com/kubernetes_protection/kpagent:0.917.0": rpc error: code = Unknown desc = failed to pull and unpack image "...": failed to resolve reference "...": failed to authorize: failed to fetch oauth token: unexpected status: 403"#,
            Forbidden,
        ),
        (
            "Docker Hub's incorrect username or password is a refusal [15]",
            "failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://auth.docker.io/token?scope=repository%3Afsfe%2Freuse%3Apull&service=registry.docker.io: 401 Unauthorized: incorrect username or password",
            Unauthorized,
        ),
        (
            "a bare 401 from Docker Hub's token endpoint is a refusal [16]",
            r#"failed to resolve reference "docker.io/docker/welcome-to-docker:latest": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://auth.docker.io/token?scope=repository%3Adocker%2Fwelcome-to-docker%3Apull&service=registry.docker.io: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            "an anonymous token refused with 403 means no credential was sent [17]",
            r#"failed to pull and unpack image "gcr.io/node-problem-detector-staging/ci/node-problem-detector:v1.36.0-alpha.3-89-g8a5df6d6-20260603.1637": failed to resolve reference "...": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://gcr.io/v2/token?scope=repository%3Anode-problem-detector-staging%2Fci%2Fnode-problem-detector%3Apull&scope=repository%3Anode-problem-detector-staging%2Fgcr.io%2Fci%2Fnode-problem-detector%3Apull&service=gcr.io: 403 Forbidden"#,
            NoCredential,
        ),
        (
            "the older anonymous token text means no credential was sent [18]",
            r#"failed to pull and unpack image "x": failed to resolve reference "x": failed to authorize: failed to fetch anonymous token: unexpected status: 403 Forbidden"#,
            NoCredential,
        ),
        (
            "CRI-O's requested access to the resource is denied is ambiguous [19]",
            r#"Failed to pull image "docker.io/vectorim/ess-starter-edition-core-operator:2.11.9": rpc error: code = Unknown desc = reading manifest 2.11.9 in docker.io/vectorim/ess-starter-edition-core-operator: requested access to the resource is denied"#,
            DeniedOrMissing,
        ),
        (
            "an older CRI-O denied plus authentication required is ambiguous [20]",
            r#"Failed to pull image "solver-rhel-8-py38": rpc error: code = Unknown desc = Error reading manifest latest in docker.io/library/solver-rhel-8-py38: errors: denied: requested access to the resource is denied unauthorized: authentication required"#,
            DeniedOrMissing,
        ),
        (
            "CRI-O's quay unauthorized is a refusal [21]",
            "Error reading manifest 1.0.0-SNAPSHOT-2020-03-12-18-56-25 in quay.io/open-cluster-management/multiclusterhub-operator-index: unauthorized: access to the requested resource is not authorized",
            Unauthorized,
        ),
        (
            "containers/image's invalid username/password is a refusal [22]",
            "parsing image configuration: unable to retrieve auth token: invalid username/password: unauthorized: unauthenticated: User cannot be authenticated with the token provided.",
            Unauthorized,
        ),
        (
            "dockershim's pull access denied for ... may require 'docker login' is ambiguous [23]",
            r#"Failed to pull image "octarinesec/guardrails-enforcer:20.7": rpc error: code = Unknown desc = Error response from daemon: pull access denied for octarinesec/guardrails-enforcer, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"#,
            DeniedOrMissing,
        ),
        (
            "dockershim's no basic auth credentials means no credential was sent [24]",
            r#"PullImage "nexus3:8083/com.panov/ci-cd:0.0.1-SNAPSHOT" from image service failed: rpc error: code = Unknown desc = Error response from daemon: Get http://nexus3:8083/v2/com.panov/ci-cd/manifests/0.0.1-SNAPSHOT: no basic auth credentials"#,
            NoCredential,
        ),
        // A.3 cloud registries
        (
            "ECR's authorization token has expired is an expiry [25]",
            "GET https://my-id-aws.dkr.ecr.us-east-1.amazonaws.com/v2/image/tags/list?n=1000: DENIED: Your authorization token has expired. Reauthenticate and try again.",
            Expired,
        ),
        (
            "the docker daemon's ECR expiry is an expiry [26]",
            "Error response from daemon: denied: Your authorization token has expired. Reauthenticate and try again.",
            Expired,
        ),
        (
            "an expiry behind pull access denied is an expiry [27]",
            "pull access denied for 123123.dkr.ecr.us-east-2.amazonaws.com/test, repository does not exist or may require 'docker login': denied: Your authorization token has expired. Reauthenticate and try again.",
            Expired,
        ),
        (
            "dockershim's ECR pull access denied hides the expiry and is ambiguous [28]",
            r#"Failed to pull image "$AWS_ACCOUNT_ID.dkr.ecr.ap-southeast-2.amazonaws.com/$IMAGE:$TAG": rpc error: code = Unknown desc = Error response from daemon: pull access denied for $AWS_ACCOUNT_ID.dkr.ecr.ap-southeast-2.amazonaws.com/$IMAGE, repository does not exist or may require 'docker login'"#,
            DeniedOrMissing,
        ),
        (
            "ECR's not found: does not exist or no pull access is ambiguous [29]",
            r#"PullImage "<id>.dkr.ecr.cn-north-1.amazonaws.com.cn/topic-service:master-a6cd66e4" from image service failed: rpc error: code = Unknown desc = Error response from daemon: repository <id>.dkr.ecr.cn-north-1.amazonaws.com.cn/topic-service not found: does not exist or no pull access"#,
            DeniedOrMissing,
        ),
        (
            "dockerd's invalid security token is a refusal [29b]",
            "Not continuing with pull after error: denied: The security token included in the request is invalid",
            Forbidden,
        ),
        (
            "ECR without a credential says no basic auth credentials [30]",
            r#"Failed to pull image "XXXXXXXX.dkr.ecr.ap-XXXXXX.amazonaws.com/isam:9.0.7.0": rpc error: code = Unknown desc = Error response from daemon: Get https://XXXXXXX.dkr.ecr.ap-XXXXX.amazonaws.com/v2/ndi-spcp-isam/manifests/9.0.7.0: no basic auth credentials"#,
            NoCredential,
        ),
        (
            "an ECR 401 through containerd is a refusal [30a]",
            r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox image "602401143452.dkr.ecr.eu-north-1.amazonaws.com/eks/pause:3.1-eksbuild.1": failed to pull image "...": failed to pull and unpack image "...": failed to resolve reference "602401143452.dkr.ecr.eu-north-1.amazonaws.com/eks/pause:3.1-eksbuild.1": pulling from host 602401143452.dkr.ecr.eu-north-1.amazonaws.com failed with status code [manifests 3.1-eksbuild.1]: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            "an ECR HEAD 403 is a refusal that may be an expiry [31]",
            "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref 366590864501.dkr.ecr.us-west-2.amazonaws.com/bedrock-proxy-api-ecs:latest@sha256:5de487da52320ad9978f3a7a4f6700910342956c7dcb3b6f955222b4cccbd600: unexpected status from HEAD request to https://366590864501.dkr.ecr.us-west-2.amazonaws.com/v2/bedrock-proxy-api-ecs/blobs/sha256:5de487da52320ad9978f3a7a4f6700910342956c7dcb3b6f955222b4cccbd600: 403 Forbidden",
            Forbidden,
        ),
        (
            "ECR Public's 403 on a stale credential is a refusal [32]",
            "unexpected status from HEAD request to https://public.ecr.aws/v2/kro/kro/manifests/0.1.0: 403 Forbidden",
            Forbidden,
        ),
        (
            "Artifact Registry's permission denied is a refusal [33]",
            r#"Failed to pull image "us-docker.pkg.dev/berglas/berglas/berglas:latest": rpc error: code = Unknown desc = Error response from daemon: Get https://us-docker.pkg.dev/v2/berglas/berglas/berglas/manifests/latest: denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource "projects/berglas/locations/us/repositories/berglas""#,
            Forbidden,
        ),
        (
            "Artifact Registry's (or it may not exist) is ambiguous [34]",
            r#"Error response from daemon: Head "https://europe-west2-docker.pkg.dev/v2/<PROJECT_ID>/ml/app/manifests/4.19.5": denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource "projects/<PROJECT_ID>/locations/europe-west2/repositories/ml" (or it may not exist)"#,
            DeniedOrMissing,
        ),
        (
            "Artifact Registry's Unauthenticated requests means no credential was sent [35]",
            r#"Unauthenticated requests do not have permission "artifactregistry.repositories.downloadArtifacts" on resource "projects/fuzzbench/locations/us/repositories/gcr.io""#,
            NoCredential,
        ),
        (
            "a GCR 403 through containerd is a refusal [36]",
            r#"Failed to pull image "gcr.io/maloney-scratch/monolith:1.0.0": rpc error: code = Unknown desc = failed to pull and unpack image "gcr.io/maloney-scratch/monolith:1.0.0": failed to resolve reference "gcr.io/maloney-scratch/monolith:1.0.0": pulling from host gcr.io failed with status code [manifests 1.0.0]: 403 Forbidden"#,
            Forbidden,
        ),
        (
            "GCR's unauthorized: failed authentication is a refusal [37]",
            r#"Error response from daemon: Head "https://gcr.io/v2/google.com/cloudsdktool/google-cloud-cli/manifests/latest": unauthorized: failed authentication"#,
            Unauthorized,
        ),
        (
            "GCR's UNAUTHORIZED with a long explanation is a refusal [38]",
            "GET https://gcr.io/v2/my-gcp-project/my-gcp-project/myimage/manifests/mytag: UNAUTHORIZED: You don't have the needed permissions to perform this operation, and you may have invalid credentials. To authenticate your request, follow the steps in: https://cloud.google.com/container-registry/docs/advanced-authentication",
            Unauthorized,
        ),
        (
            "ACR's authentication required through the docker daemon is a refusal [39]",
            r#"Failed to pull image "smartsitealfaacr.azurecr.io/aem6.5-authbaseimage:v2": rpc error: code = Unknown desc = Error response from daemon: Head "https://smartsitealfaacr.azurecr.io/v2/aem6.5-authbaseimage/manifests/v2": unauthorized: authentication required, visit https://aka.ms/acr/authorization for more information."#,
            Unauthorized,
        ),
        (
            "an ACR oauth token 401 is a refusal [40]",
            "failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://arcgisenterprise248c2940cb03b8d5.azurecr.io/oauth2/token?scope=repository%3Adocker-hub%2Fesridocker%2Fenterprise-admin%3Apull&service=arcgisenterprise248c2940cb03b8d5.azurecr.io: 401 Unauthorized",
            Unauthorized,
        ),
        (
            "ACR's invalid client secret is a refusal [41]",
            "unauthorized: Invalid clientid or client secret.",
            Unauthorized,
        ),
        // A.4 rate limits
        (
            "containerd's 429 toomanyrequests is a rate limit [43]",
            r#"Failed to pull image "busybox": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/library/busybox:latest": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/busybox/manifests/sha256:50aa4698fa6262977cff89181b2664b99d8a56dbca847bf62f2ef04854597cf8: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"#,
            RateLimited,
        ),
        (
            "CRI-O's toomanyrequests is a rate limit [44]",
            r#"Failed to pull image "obsidiandynamics/kafdrop:latest": rpc error: code = Unknown desc = Error reading manifest latest in docker.io/obsidiandynamics/kafdrop: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"#,
            RateLimited,
        ),
        (
            "dockershim's toomanyrequests is a rate limit [45]",
            r#"Failed: Failed to pull image "docker.io/library/busybox:1.29": rpc error: code = Unknown desc = Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"#,
            RateLimited,
        ),
        // A.5 network
        (
            "no such host in a sandbox image pull is DNS [46]",
            r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to start sandbox "ab3761a9...": failed to get sandbox image "registry.k8s.io/pause:3.10": failed to pull image "registry.k8s.io/pause:3.10": failed to pull and unpack image "registry.k8s.io/pause:3.10": failed to resolve reference "registry.k8s.io/pause:3.10": failed to do request: Head "https://registry.k8s.io/v2/pause/manifests/3.10": dial tcp: lookup registry.k8s.io on 192.168.98.2:53: no such host"#,
            Network(Dns),
        ),
        (
            "server misbehaving is DNS [47]",
            r#"failed to do request: Head \"https://docker.io/v2/nginxinc/nginx-unprivileged/manifests/v1.25.1\": dial tcp: lookup docker.io on 172.16.0.4:53: server misbehaving"#,
            Network(Dns),
        ),
        (
            "lookup ...: Try again is DNS [48]",
            "failed to do request: Head https://registry-1.docker.io/v2/rancher/pause/manifests/3.1: dial tcp: lookup registry-1.docker.io: Try again",
            Network(Dns),
        ),
        (
            "CRI-O's error pinging docker registry with a lookup failure is DNS [49]",
            r#"pulling image failed: rpc error: code = Unknown desc = error pinging docker registry k8s.gcr.io: Get "https://k8s.gcr.io/v2/": dial tcp: lookup k8s.gcr.io: device or resource busy"#,
            Network(Dns),
        ),
        (
            "a proxy host that does not resolve is DNS [50]",
            r#"pulling image failed: rpc error: code = Unknown desc = error pinging docker registry registry-1.docker.io: Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp: lookup http: Temporary failure in name resolution"#,
            Network(Dns),
        ),
        (
            "dockershim's resolver on 127.0.0.53 misbehaving is DNS [51]",
            r#"Failed to pull image "hjacobs/kube-ops-view:0.8.1": rpc error: code = Unknown desc = Error response from daemon: Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: server misbehaving"#,
            Network(Dns),
        ),
        (
            "DeadlineExceeded with an i/o timeout is a timeout [52]",
            r#"Failed to pull image "registry.k8s.io/ingress-nginx/controller:v1.11.2": rpc error: code = DeadlineExceeded desc = failed to pull and unpack image "registry.k8s.io/ingress-nginx/controller:v1.11.2": failed to resolve reference "registry.k8s.io/ingress-nginx/controller:v1.11.2": failed to do request: Head "https://us-west2-docker.pkg.dev/v2/k8s-artifacts-prod/images/ingress-nginx/controller/manifests/v1.11.2": dial tcp 74.125.203.82:443: i/o timeout"#,
            Network(Timeout),
        ),
        (
            "CRI-O's pinging docker registry returned with an i/o timeout is a timeout [53]",
            "pulling image failed: rpc error: code = Unknown desc = pinging docker registry returned: Get http://registry-1.docker.io/v2/: dial tcp 34.199.40.84:80: i/o timeout",
            Network(Timeout),
        ),
        (
            "containers/image's pinging container registry with a lookup failure is DNS [53a]",
            r#"initializing source docker://quay.io/ceph/ceph:v20.2.0: pinging container registry quay.io: Get "https://quay.io/v2/": dial tcp: lookup quay.io: Temporary failure in name resolution"#,
            Network(Dns),
        ),
        (
            "CRI-O's mirror failure list is a missing image [53b]",
            "Mirrors also failed: [binaryrepo.../rhoai/<image>: manifest unknown]",
            NotFound,
        ),
        (
            "CRI-O's pinging container registry with no such host is DNS [53b]",
            "pinging container registry registry.redhat.io: lookup registry.redhat.io: no such host",
            Network(Dns),
        ),
        (
            "containers/image's connect: connection refused is refused [53c]",
            r#"pinging container registry 172.21.138.103: Get "https://172.21.138.103/v2/": dial tcp 172.21.138.103:443: connect: connection refused"#,
            Network(ConnectionRefused),
        ),
        (
            "connect: connection timed out is a timeout [54]",
            r#"failed to do request: Head \"https://registry.k8s.io/v2/kube-proxy/manifests/v1.28.2\": dial tcp 34.96.108.209:443: connect: connection timed out"#,
            Network(Timeout),
        ),
        (
            "no route to host is unreachable without a finer detail [55]",
            r#"failed to do request: Head \"https://registry.cn-hangzhou.aliyuncs.com/v2/google_containers/pause/manifests/3.9\": dial tcp 120.55.105.209:443: connect: no route to host"#,
            Network(Other),
        ),
        (
            "a blob fetch refused by a CDN is refused [56]",
            "failed to copy: httpReadSeeker: failed open: failed to do request: dial tcp 104.18.124.25:443: connect: connection refused",
            Network(ConnectionRefused),
        ),
        (
            "connection reset by peer is unreachable without a finer detail [57]",
            r#"Failed to pull image "harbor.ops.zebrium.com/onprem/docker-vertica:release-ea89_20240107082335": failed to pull and unpack image "...": failed to copy: read tcp 10.237.X.X:38070->52.38.X.X:443: read: connection reset by peer"#,
            Network(Other),
        ),
        (
            "an EOF from a CDN with the old httpReaderSeeker spelling is unreachable [58]",
            r#"Failed to pull image "rancher/mirrored-metrics-server:v0.5.2": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/rancher/mirrored-metrics-server:v0.5.2": failed to copy: httpReaderSeeker: failed open: failed to do request: Get "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/f7/.../data?verify=...": EOF"#,
            Network(Other),
        ),
        (
            "a TLS handshake timeout is a timeout, not a certificate problem [59]",
            r#"Failed to pull image "ubuntu": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/library/ubuntu:latest": failed to resolve reference "docker.io/library/ubuntu:latest": failed to do request: Head "https://registry-1.docker.io/v2/library/ubuntu/manifests/latest": net/http: TLS handshake timeout"#,
            Network(Timeout),
        ),
        (
            "tls: failed to verify certificate: x509 is TLS [60]",
            r#"Failed to pull image "registry.k8s.io/coredns/coredns:v1.11.1": failed to pull and unpack image "registry.k8s.io/coredns/coredns:v1.11.1": failed to resolve reference "registry.k8s.io/coredns/coredns:v1.11.1": failed to do request: Head "https://registry.k8s.io/v2/coredns/coredns/manifests/v1.11.1": tls: failed to verify certificate: x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        (
            "the older Go x509 text is TLS [61]",
            r#"failed to do request: Head "https://xxx/v2/minzhi/nginx/manifests/1.0": x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        // A.6 kubelet-side
        (
            "FailedToRetrieveImagePullSecret names a missing Secret [62]",
            "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.",
            SecretMissing,
        ),
        (
            "ErrImageNeverPull is the pull policy [63]",
            r#"Container image "app:1" is not present with pull policy of Never"#,
            NeverPull,
        ),
        (
            "InspectFailed on the default tag is an invalid reference [64]",
            r#"Failed to apply default image tag "Team/App": couldn't parse image name "Team/App": invalid reference format: repository name must be lowercase"#,
            InvalidReference,
        ),
        (
            "a registry-unavailable waiting message is unreachable [66]",
            "image pull failed for reg.example/app:1 because the registry is unavailable: dial tcp: i/o timeout",
            Network(Timeout),
        ),
        (
            "a registry-unavailable waiting message without a detail is unreachable [66]",
            "image pull failed for reg.example/app:1 because the registry is unavailable",
            Network(Other),
        ),
        // B.2 back-off forms
        (
            "a BackOff Event says nothing of the cause",
            r#"Back-off pulling image "gcr.io/x/app:1""#,
            BackOffOnly,
        ),
        (
            "a 1.32+ back-off waiting message carries the previous error",
            r#"Back-off pulling image "127.0.0.1:5000/team/app:1": ErrImagePull: failed to pull and unpack image "127.0.0.1:5000/team/app:1": failed to resolve reference "127.0.0.1:5000/team/app:1": pulling from host 127.0.0.1:5000 failed with status code [manifests 1]: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            "an unknown text is unrecognized",
            "something else entirely",
            Unrecognized,
        ),
    ];

    /// The texts of each runtime the kubelet relays, per runtime version;
    /// the comment says where each came from: `seen` (a real run on the test
    /// node), `FACTS #n` (a user's report, ../shared/diagnosis/FACTS.md), or
    /// the runtime's source where the text is built (containerd at its tags;
    /// CRI-O at main f954a17e50, which vendors go.podman.io/image/v5; Go's
    /// net/http and crypto/tls texts). A text built from source joins the
    /// wrappers the source applies, in order, around what a registry:2 or the
    /// named registry answers.
    const RUNTIMES: &[(&str, &str, Hint)] = &[
        // ---- containerd 1.6 (Debian's 1.6.20 on the test node) ----
        // `seen`: the kubelet's Event in a real run of tests/diagnose.rs on the test node
        // (kubelet v1.34.4), 2026-12-06; the pod each came from in brackets.
        (
            // seen [dx-missing/no-tag]; v1.6.20 resolver.go:391 `%s: %w` ErrNotFound after every
            // host's 404, pull.go:133 `failed to resolve reference`, cri/server/image_pull.go:143.
            "1.6",
            r#"Failed to pull image "127.0.0.1:28694/team/app:2": rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:28694/team/app:2": failed to resolve reference "127.0.0.1:28694/team/app:2": 127.0.0.1:28694/team/app:2: not found"#,
            NotFound,
        ),
        (
            // seen [dx-uncovered/app: no credential; dx-refused/app: a wrong one — the same text]:
            // resolver.go:302 `pulling from host %s failed with status code %v: %v`.
            "1.6",
            r#"Failed to pull image "127.0.0.1:26807/team/app:1": failed to pull and unpack image "127.0.0.1:26807/team/app:1": failed to resolve reference "127.0.0.1:26807/team/app:1": pulling from host 127.0.0.1:26807 failed with status code [manifests 1]: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            // seen [dx-expired/app]: remotes/errors/errors.go:36 `unexpected status: %s` from the token endpoint.
            "1.6",
            r#"Failed to pull image "gar.regcred.test/team/app:1": failed to pull and unpack image "gar.regcred.test/team/app:1": failed to resolve reference "gar.regcred.test/team/app:1": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            // seen [dx-rate/app]: the token endpoint answering 429.
            "1.6",
            r#"failed to pull and unpack image "127.0.0.1:31565/team/app:1": failed to resolve reference "127.0.0.1:31565/team/app:1": failed to authorize: failed to fetch oauth token: unexpected status: 429 Too Many Requests"#,
            RateLimited,
        ),
        (
            // seen [dx-rate-anon/app]: authorizer.go `failed to fetch anonymous token: %w`.
            "1.6",
            r#"failed to pull and unpack image "127.0.0.1:31565/team/app:1": failed to resolve reference "127.0.0.1:31565/team/app:1": failed to authorize: failed to fetch anonymous token: unexpected status: 429 Too Many Requests"#,
            RateLimited,
        ),
        (
            // FACTS #18: the anonymous token refused.
            "1.6",
            r#"failed to pull and unpack image "gcr.io/x/app:1": failed to resolve reference "gcr.io/x/app:1": failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized"#,
            NoCredential,
        ),
        (
            // seen [dx-blob/app]: fetcher.go:144 `could not fetch content descriptor %v (%v) from remote: %w`,
            // httpreadseeker.go `httpReadSeeker: failed open: %w`, content/helpers.go `failed to copy: %w`.
            "1.6",
            r#"Failed to pull image "127.0.0.1:12669/team/blob:1": rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:12669/team/blob:1": failed to copy: httpReadSeeker: failed open: could not fetch content descriptor sha256:bab49da66c392d0816dc23763a45464a67a120ffb4110b75b9a4febfea6e0c20 (application/vnd.oci.image.layer.v1.tar) from remote: not found"#,
            BlobNotFound,
        ),
        (
            // seen [dx-tls/untrusted]: resolver.go `failed to do request: %w`; Go 1.19's x509 text (Debian's build).
            "1.6",
            r#"Failed to pull image "untrusted.regcred.test/team/app:1": failed to pull and unpack image "untrusted.regcred.test/team/app:1": failed to resolve reference "untrusted.regcred.test/team/app:1": failed to do request: Head "https://127.0.0.1:13443/v2/team/app/manifests/1?ns=untrusted.regcred.test": x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        (
            // seen [dx-tls/silent]: a server that accepts and never answers; 20 s after PullImage.
            "1.6",
            r#"Failed to pull image "silent.regcred.test/team/app:1": failed to pull and unpack image "silent.regcred.test/team/app:1": failed to resolve reference "silent.regcred.test/team/app:1": failed to do request: Head "https://127.0.0.1:39727/v2/team/app/manifests/1?ns=silent.regcred.test": net/http: TLS handshake timeout"#,
            Network(Timeout),
        ),
        (
            // seen [dx-net/refused]: 1.6 falls back to http:// for a loopback host.
            "1.6",
            r#"Failed to pull image "127.0.0.1:16364/team/app:1": failed to pull and unpack image "127.0.0.1:16364/team/app:1": failed to resolve reference "127.0.0.1:16364/team/app:1": failed to do request: Head "http://127.0.0.1:16364/v2/team/app/manifests/1": dial tcp 127.0.0.1:16364: connect: connection refused"#,
            Network(ConnectionRefused),
        ),
        (
            // seen [dx-net/dns]: an RFC 2606 name.
            "1.6",
            r#"Failed to pull image "registry.regcred-test.invalid/team/app:1": failed to pull and unpack image "registry.regcred-test.invalid/team/app:1": failed to resolve reference "registry.regcred-test.invalid/team/app:1": failed to do request: Head "https://registry.regcred-test.invalid/v2/team/app/manifests/1": dial tcp: lookup registry.regcred-test.invalid on 10.255.255.53:53: no such host"#,
            Network(Dns),
        ),
        // ---- containerd 1.7 (v1.7.29) ----
        (
            // v1.7.29 remotes/docker/resolver.go:412 `%s: %w` ErrNotFound; cri/server/image_pull.go:193.
            "1.7",
            r#"rpc error: code = NotFound desc = failed to pull and unpack image "reg.example/team/app:2": failed to resolve reference "reg.example/team/app:2": reg.example/team/app:2: not found"#,
            NotFound,
        ),
        (
            // v1.7.0+ remotes/errors/errors.go:36 `unexpected status from %s request to %s: %s` (the manifest HEAD).
            "1.7",
            r#"failed to pull and unpack image "reg.example/team/app:1": failed to resolve reference "reg.example/team/app:1": unexpected status from HEAD request to https://reg.example/v2/team/app/manifests/1: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            // v1.7.8+ authorizer.go:194 `%w: no basic auth credentials` (ErrInvalidAuthorization =
            // `authorization failed`), resolver.go:299 `pull access denied, …: %w`.
            "1.7",
            r#"failed to pull and unpack image "reg.example/team/app:1": failed to resolve reference "reg.example/team/app:1": pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials"#,
            NoCredential,
        ),
        (
            // FACTS #13 (ghcr, a 1.7-era report): the token endpoint's GET in errors.go:36's form.
            "1.7",
            r#"failed to pull and unpack image "ghcr.io/kagenti/kagenti-client-registration:latest": failed to resolve reference "ghcr.io/kagenti/kagenti-client-registration:latest": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Akagenti%2Fkagenti-client-registration%3Apull&service=ghcr.io: 403 Forbidden"#,
            Forbidden,
        ),
        (
            // FACTS #32: ECR Public's HEAD 403 for a stale credential.
            "1.7",
            "failed to resolve reference \"public.ecr.aws/kro/kro:0.1.0\": unexpected status from HEAD request to https://public.ecr.aws/v2/kro/kro/manifests/0.1.0: 403 Forbidden",
            Forbidden,
        ),
        (
            // FACTS #60: Go ≥1.20's `tls: failed to verify certificate: x509: …`.
            "1.7",
            r#"failed to pull and unpack image "registry.k8s.io/coredns/coredns:v1.11.1": failed to resolve reference "registry.k8s.io/coredns/coredns:v1.11.1": failed to do request: Head "https://registry.k8s.io/v2/coredns/coredns/manifests/v1.11.1": tls: failed to verify certificate: x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        (
            // v1.7.29 fetcher.go:145, as 1.6.
            "1.7",
            r#"failed to pull and unpack image "reg.example/team/app:1": failed to copy: httpReadSeeker: failed open: could not fetch content descriptor sha256:1111111111111111111111111111111111111111111111111111111111111111 (application/vnd.oci.image.layer.v1.tar+gzip) from remote: not found"#,
            BlobNotFound,
        ),
        // ---- containerd 2.x (the CRI pulls through the Transfer Service from 2.1) ----
        // `seen`: a real run of tests/diagnose_containerd2.rs on the test node with containerd
        // v2.4.2 built from its Go module, 2026-12-06.
        (
            // seen [dx-missing/no-tag]; core/transfer/local/pull.go:62 `failed to resolve image: %w`,
            // resolver.go:490, internal/cri/server/images/image_pull.go:341.
            "2.x",
            r#"Failed to pull image "127.0.0.1:16420/team/app:2": rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:16420/team/app:2": failed to resolve image: 127.0.0.1:16420/team/app:2: not found"#,
            NotFound,
        ),
        (
            // seen [dx-uncovered/app]: authorizer.go:202 `%w: no basic auth credentials`, resolver.go:336.
            "2.x",
            r#"Failed to pull image "127.0.0.1:24891/team/app:1": failed to pull and unpack image "127.0.0.1:24891/team/app:1": failed to resolve image: pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials"#,
            NoCredential,
        ),
        (
            // seen [dx-refused/app]: core/remotes/errors/errors.go:43, a wrong password on the manifest HEAD.
            "2.x",
            r#"Failed to pull image "127.0.0.1:14853/team/app:1": failed to pull and unpack image "127.0.0.1:14853/team/app:1": failed to resolve image: unexpected status from HEAD request to https://127.0.0.1:14853/v2/team/app/manifests/1: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            // seen [dx-expired/app]: auth/fetch.go:141 NewUnexpectedStatusErr from the token endpoint.
            "2.x",
            r#"Failed to pull image "gar.regcred.test/team/app:1": failed to pull and unpack image "gar.regcred.test/team/app:1": failed to resolve image: failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://localhost:40553/token?scope=repository%3Ateam%2Fapp%3Apull&service=regcred-testenv-registry: 401 Unauthorized"#,
            Unauthorized,
        ),
        (
            // seen [dx-rate/app].
            "2.x",
            r#"Failed to pull image "127.0.0.1:14228/team/app:1": failed to pull and unpack image "127.0.0.1:14228/team/app:1": failed to resolve image: failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://localhost:34979/token?scope=repository%3Ateam%2Fapp%3Apull&service=regcred-testenv-registry: 429 Too Many Requests"#,
            RateLimited,
        ),
        (
            // seen [dx-rate-anon/app].
            "2.x",
            r#"Failed to pull image "127.0.0.1:14228/team/app:1": failed to pull and unpack image "127.0.0.1:14228/team/app:1": failed to resolve image: failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://localhost:34979/token?scope=repository%3Ateam%2Fapp%3Apull&service=regcred-testenv-registry: 429 Too Many Requests"#,
            RateLimited,
        ),
        (
            // v2.4 resolver.go:367 `withGETErrorBody`: a HEAD 403 borrows the GET's body, and
            // errcode.go:290 joins it (`errors.Join`: a new line) with ECR's DENIED error.
            "2.x",
            "failed to pull and unpack image \"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1\": failed to resolve image: unexpected status from HEAD request to https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/team/app/manifests/1: 403 Forbidden\ndenied: Your authorization token has expired. Reauthenticate and try again.",
            Expired,
        ),
        (
            // v2.0–2.3 resolver.go: the same HEAD 403 without the body.
            "2.x",
            r#"failed to pull and unpack image "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1": failed to resolve image: unexpected status from HEAD request to https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/team/app/manifests/1: 403 Forbidden"#,
            Forbidden,
        ),
        (
            // seen [dx-tls/untrusted]: 2.x redacts the `ns=` query in the CRI error.
            "2.x",
            r#"Failed to pull image "untrusted.regcred.test/team/app:1": failed to pull and unpack image "untrusted.regcred.test/team/app:1": failed to resolve image: failed to do request: Head "https://127.0.0.1:17643/v2/team/app/manifests/1?ns=%5BREDACTED%5D": tls: failed to verify certificate: x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        (
            // seen [dx-tls/silent]: 60 s after PullImage (resolver.go:820 doWithTransportRetries retries
            // a transport timeout, maxAttempts); the last attempt's error is reported.
            "2.x",
            r#"Failed to pull image "silent.regcred.test/team/app:1": failed to pull and unpack image "silent.regcred.test/team/app:1": failed to resolve image: failed to do request: Head "https://127.0.0.1:33843/v2/team/app/manifests/1?ns=%5BREDACTED%5D": net/http: TLS handshake timeout"#,
            Network(Timeout),
        ),
        (
            // seen [dx-net/refused]: https:// even for a loopback host.
            "2.x",
            r#"Failed to pull image "127.0.0.1:26897/team/app:1": failed to pull and unpack image "127.0.0.1:26897/team/app:1": failed to resolve image: failed to do request: Head "https://127.0.0.1:26897/v2/team/app/manifests/1": dial tcp 127.0.0.1:26897: connect: connection refused"#,
            Network(ConnectionRefused),
        ),
        (
            // seen [dx-net/dns].
            "2.x",
            r#"Failed to pull image "registry.regcred-test.invalid/team/app:1": failed to pull and unpack image "registry.regcred-test.invalid/team/app:1": failed to resolve image: failed to do request: Head "https://registry.regcred-test.invalid/v2/team/app/manifests/1": dial tcp: lookup registry.regcred-test.invalid on 10.255.255.53:53: no such host"#,
            Network(Dns),
        ),
        (
            // A transport timeout of a dial, as resolver.go:719 wraps it.
            "2.x",
            r#"failed to pull and unpack image "reg.example/team/app:1": failed to resolve image: failed to do request: Head "https://reg.example/v2/team/app/manifests/1": dial tcp 10.0.0.1:443: i/o timeout"#,
            Network(Timeout),
        ),
        (
            // seen [dx-blob/app]: fetcher.go:330, unchanged since 1.6.
            "2.x",
            r#"Failed to pull image "127.0.0.1:29915/team/blob:1": rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:29915/team/blob:1": failed to copy: httpReadSeeker: failed open: could not fetch content descriptor sha256:b5663a17972ccc1eeb61256b27572831f823bc69d6ee3b09b3baa2133bd01b57 (application/vnd.oci.image.layer.v1.tar) from remote: not found"#,
            BlobNotFound,
        ),
        (
            // resolver.go:731 `content at %v not found: %w` for a blob URL.
            "2.x",
            "failed to copy: httpReadSeeker: failed open: content at https://reg.example/v2/team/app/blobs/sha256:1111111111111111111111111111111111111111111111111111111111111111 not found: not found",
            BlobNotFound,
        ),
        // ---- CRI-O (containers/image: go.podman.io/image/v5) ----
        (
            // docker_client.go:972 `reading manifest %s in %s: %w`, copy/copy.go:237
            // `initializing source %s: %w`, internal/storage/image.go:913 `unable to pull image: %w`;
            // errors.go rewords MANIFEST_UNKNOWN to its own message.
            "CRI-O",
            r#"Failed to pull image "reg.example/team/app:2": rpc error: code = Unknown desc = unable to pull image: initializing source docker://reg.example/team/app:2: reading manifest 2 in reg.example/team/app: manifest unknown"#,
            NotFound,
        ),
        (
            // The same for NAME_UNKNOWN.
            "CRI-O",
            "unable to pull image: initializing source docker://reg.example/team/nothing:1: reading manifest 1 in reg.example/team/nothing: repository name not known to registry",
            NotFound,
        ),
        (
            // The same for UNAUTHORIZED (registry:2 htpasswd without a credential).
            "CRI-O",
            "unable to pull image: initializing source docker://reg.example/team/app:1: reading manifest 1 in reg.example/team/app: authentication required",
            Unauthorized,
        ),
        (
            // errors.go ErrUnauthorizedForCredentials: a token endpoint's 401.
            "CRI-O",
            "unable to pull image: initializing source docker://reg.example/team/app:1: unable to retrieve auth token: invalid username/password: unauthorized: authentication required",
            Unauthorized,
        ),
        (
            // ECR's DENIED body with its own message (GET, not HEAD: containers/image reads it).
            "CRI-O",
            "unable to pull image: initializing source docker://123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1: reading manifest 1 in 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app: denied: Your authorization token has expired. Reauthenticate and try again.",
            Expired,
        ),
        (
            // errors.go:18 ErrTooManyRequests.
            "CRI-O",
            "unable to pull image: initializing source docker://reg.example/team/app:1: pinging container registry reg.example: too many requests to registry",
            RateLimited,
        ),
        (
            // docker_client.go:946 `pinging container registry %s: %w`.
            "CRI-O",
            r#"unable to pull image: initializing source docker://reg.example/team/app:1: pinging container registry reg.example: Get "https://reg.example/v2/": tls: failed to verify certificate: x509: certificate signed by unknown authority"#,
            Network(Tls),
        ),
        (
            // server/image_pull.go:120 wraps ECONNREFUSED in crierrors.ErrRegistryUnavailable; the
            // kubelet's evalCRIPullErr then writes its own sentence.
            "CRI-O",
            r#"image pull failed for reg.example/team/app:1 because the registry is unavailable: unable to pull image: initializing source docker://reg.example/team/app:1: pinging container registry reg.example: Get "https://reg.example/v2/": dial tcp 10.0.0.1:443: connect: connection refused"#,
            Network(ConnectionRefused),
        ),
        (
            "CRI-O",
            r#"rpc error: code = Unknown desc = RegistryUnavailable: unable to pull image: initializing source docker://reg.example/team/app:1: pinging container registry reg.example: Get "https://reg.example/v2/": dial tcp 10.0.0.1:443: connect: connection refused"#,
            Network(ConnectionRefused),
        ),
        (
            // copy/single.go:855 `reading blob %s: %w`, docker_client.go:1064 `fetching blob: %w`,
            // BLOB_UNKNOWN reworded.
            "CRI-O",
            "unable to pull image: reading blob sha256:1111111111111111111111111111111111111111111111111111111111111111: fetching blob: blob unknown to registry",
            BlobNotFound,
        ),
        (
            // internal/storage/image.go:901, when the image pull fails and the OCI artifact fallback too.
            "CRI-O",
            "unable to pull image or OCI artifact: pull image err: initializing source docker://reg.example/team/app:2: reading manifest 2 in reg.example/team/app: manifest unknown; artifact err: reading manifest 2 in reg.example/team/app: manifest unknown",
            NotFound,
        ),
        // ---- the kubelet itself, any runtime ----
        (
            // seen [dx-kubelet/invalid] (kubelet v1.34.4): image_manager.go `Failed to apply default image
            // tag %q: %v` (Event InspectFailed, waiting reason InvalidImageName).
            "kubelet",
            r#"Failed to apply default image tag "Team/App:1": couldn't parse image name "Team/App:1": invalid reference format: repository name (App) must be lowercase"#,
            InvalidReference,
        ),
        (
            // Newer kubelet trees' applyDefaultImageTag: `couldn't parse image reference %q: %v`.
            "kubelet",
            r#"Failed to apply default image tag "Team/App:1": couldn't parse image reference "Team/App:1": invalid reference format: repository name (Team/App) must be lowercase"#,
            InvalidReference,
        ),
        (
            // seen [dx-kubelet/never]; image_manager.go: `Container image %q is not present with pull policy of Never` (ErrImageNeverPull;
            // from 1.35 also for a present image the pod's credentials did not pull).
            "kubelet",
            r#"Container image "registry.regcred-test.invalid/team/app:1" is not present with pull policy of Never"#,
            NeverPull,
        ),
        (
            // The 1.33 alpha of KubeletEnsureSecretPulledImages (ErrImageNotEnsured).
            "kubelet",
            r#"Container image "reg.example/team/app:1" is present with pull policy of "Never" but does not have the proper auth (image secret) that was used to pull the image"#,
            NeverPull,
        ),
    ];

    #[test]
    fn every_runtimes_text_reads_as_its_cause() {
        let mut failed = Vec::new();
        for (runtime, message, want) in RUNTIMES {
            let got = classify(message).hint();
            if got != *want {
                failed.push(format!("{runtime}: got {got:?}, want {want:?}:\n  {message}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn the_secrets_the_kubelet_could_not_retrieve_are_read_from_its_event() {
        assert_eq!(
            unretrieved_secrets(
                "Unable to retrieve some image pull secrets (regcred, other); attempting to pull the image may not \
                 succeed."
            ),
            Some(vec!["regcred".to_string(), "other".to_string()])
        );
        assert_eq!(unretrieved_secrets(r#"Failed to pull image "a:1": not found"#), None);
    }

    #[test]
    fn every_message_form_in_the_facts() {
        for (name, message, want) in CASES {
            assert_eq!(classify(message).hint(), *want, "{name}:\n  {message}");
        }
    }

    #[test]
    fn the_image_is_read_from_the_kubelets_wrapper() {
        let cases = [
            (
                r#"Failed to pull image "a.io/x:1": rpc error: code = NotFound desc = not found"#,
                "a.io/x:1",
            ),
            (r#"Back-off pulling image "b.io/y:2""#, "b.io/y:2"),
            (
                r#"Back-off pulling image "c.io/z:3": ErrImagePull: not found"#,
                "c.io/z:3",
            ),
            (
                r#"PullImage "d.io/w:4" from image service failed: rpc error: code = Unknown desc = x"#,
                "d.io/w:4",
            ),
            (
                "image pull failed for e.io/v:5 because the registry is unavailable",
                "e.io/v:5",
            ),
        ];
        for (message, image) in cases {
            assert_eq!(classify(message).image.as_deref(), Some(image), "{message}");
        }
        let text = classify(r#"Failed to pull image "a.io/x:1": rpc error: code = NotFound desc = not found"#).text;
        assert_eq!(text, "rpc error: code = NotFound desc = not found");
    }

    #[test]
    fn a_bracketed_list_of_two_refusals_is_two_refusals() {
        // [42]: two credentials tried, both rejected.
        let message = r#"Failed to pull image "ugsampleacr.azurecr.io/mssampleaksapplication:v1": [rpc error: code = Unknown desc = Error response from daemon: Get https://ugsampleacr.azurecr.io/v2/mssampleaksapplication/manifests/v1: unauthorized: authentication required, rpc error: code = Unknown desc = Error response from daemon: Get https://ugsampleacr.azurecr.io/v2/mssampleaksapplication/manifests/v1: unauthorized: authentication required]"#;
        let c = classify(message);
        assert_eq!(c.attempts, vec![Unauthorized, Unauthorized]);
        assert_eq!(
            c.image.as_deref(),
            Some("ugsampleacr.azurecr.io/mssampleaksapplication:v1")
        );
    }

    #[test]
    fn a_bracketed_list_with_a_missing_manifest_says_the_image_is_missing() {
        // Esri/arcgis-gitops#168: one credential refused, another reached a missing manifest.
        let message = r#"Failed to pull image "x.azurecr.io/a:1": [failed to pull and unpack image "x.azurecr.io/a:1": failed to resolve reference "x.azurecr.io/a:1": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://x.azurecr.io/oauth2/token?scope=repository%3Aa%3Apull&service=x.azurecr.io: 401 Unauthorized, rpc error: code = NotFound desc = failed to pull and unpack image "x.azurecr.io/a:1": failed to resolve reference "x.azurecr.io/a:1": x.azurecr.io/a:1: not found]"#;
        let c = classify(message);
        assert_eq!(c.attempts, vec![Unauthorized, NotFound]);
        assert_eq!(c.hint(), NotFound);
    }

    #[test]
    fn commas_inside_one_error_do_not_split_it() {
        let message = r#"[failed to resolve reference "docker.io/a/b:1": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed]"#;
        assert_eq!(classify(message).attempts, vec![DeniedOrMissing]);
    }

    #[test]
    fn only_a_back_off_without_its_error_is_uninformative() {
        assert!(!classify(r#"Back-off pulling image "a:1""#).is_informative());
        assert!(classify(r#"Back-off pulling image "a:1": ErrImagePull: x: not found"#).is_informative());
    }
}
