//! The checks behind a diagnosis: reads from the API server and manifest
//! HEADs at the registry, each recorded as evidence. A read the caller may
//! not make (RBAC) is evidence too, never an error: the diagnosis works with
//! what it could see.

mod per_service_account;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::Evidence;
use super::classify::{Hint, classify};
use super::decide::{CredentialFacts, Findings, Manifest, PodSecret};
use super::keyring::{self, Entry};
use super::reach::{self, RegistryChecks};
use crate::api::RegistryCredential;
use crate::dockerconfig::{self, RegistryAuth};
use crate::identity::PerServiceAccount;
use crate::managed::{NOT_AFTER_ANNOTATION, is_managed_by, secret_name};
use crate::pull_auth::check_manifest;
use crate::redact::Sensitive;
use crate::registry::{self, ImageRef};

/// One container's failed pull, with what the kubelet said about it.
pub struct Target<'a> {
    pub pod: &'a Pod,
    pub container: String,
    pub image: String,
    /// Candidate texts, most telling first: the waiting message, then the
    /// kubelet's Event messages, newest first.
    pub messages: Vec<String>,
    /// Checks that could not run before this one (e.g. Events not readable).
    pub evidence: Vec<Evidence>,
    /// When the kubelet's last pull of it failed, as its Events say.
    pub failed_at: Option<Timestamp>,
}

/// Run the checks for `target` and return what they found: [`read`], then
/// the registry's [`RegistryCheck`].
pub async fn gather(client: &Client, http: &reqwest::Client, target: Target<'_>) -> Findings {
    // The CLI runs from its user's own network position: every host.
    match read(client, target, RegistryChecks::All).await {
        (findings, Some(check)) => check.run(http, findings).await,
        (findings, None) => findings,
    }
}

/// The checks at the API server, which answer at once: the findings without
/// manifest HEADs, and the registry check still to run (none where the
/// kubelet's text makes it moot: a never-pull policy, a malformed reference;
/// none where `reach` does not let it contact the host).
pub async fn read(client: &Client, target: Target<'_>, reach: RegistryChecks) -> (Findings, Option<RegistryCheck>) {
    let pod = target.pod;
    let namespace = pod.namespace().unwrap_or_default();
    let image = target.image;
    let host = registry::image_host(&image);
    let mut evidence = target.evidence;

    let (hint, text) = kubelet_message(&target.messages, &mut evidence);
    let read = read_pod_secrets(client, pod, &namespace, &mut evidence).await;
    let matched: Vec<&Entry> = keyring::lookup(&read.entries, &image);
    let sent = keyring_replay(&matched, read.keyring_known, &image, &mut evidence);
    let covering = covering_credential(client, pod, &namespace, &image, &host, &mut evidence).await;
    let mut check = !matches!(hint, Hint::NeverPull | Hint::InvalidReference);
    if check && !reach.may_contact(covering.facts.is_some()) {
        evidence.push(reach::not_contacted(&host));
        check = false;
    }
    let check = check.then(|| RegistryCheck {
        image: image.clone(),
        host: host.clone(),
        pods: matched.first().map(|e| (*e).clone()),
        keyring_known: sent.is_some(),
        current: covering.current_auth,
    });
    let findings = Findings {
        namespace,
        pod: pod.name_any(),
        container: target.container,
        image,
        host,
        hint,
        text,
        pod_secrets: read.pod_secrets,
        sent,
        credential: covering.facts,
        credentials_listed: covering.listed,
        manifests: Vec::new(),
        now: Timestamp::now(),
        evidence,
    };
    (findings, check)
}

/// The registry's side of a diagnosis: manifest HEADs with the credential
/// the kubelet would send and with regcred's current one. It may take as
/// long as the probe's bound when the registry hangs, so the operator says
/// what the API server showed first and refines with this.
pub struct RegistryCheck {
    image: String,
    host: String,
    /// The keyring entry the kubelet tries first for the image.
    pods: Option<Entry>,
    keyring_known: bool,
    current: Option<RegistryAuth>,
}

impl RegistryCheck {
    /// Run the HEADs and add what they answered to `findings`.
    pub async fn run(self, http: &reqwest::Client, mut findings: Findings) -> Findings {
        let matched: Vec<&Entry> = self.pods.iter().collect();
        findings.manifests = manifest_checks(
            http,
            &self.image,
            &self.host,
            &matched,
            self.keyring_known,
            self.current,
            &mut findings.evidence,
        )
        .await;
        findings.now = Timestamp::now();
        findings
    }
}

/// What the kubelet's messages say: the first informative one (else the
/// first), classified, with the runtime's error text when it has one.
fn kubelet_message(messages: &[String], evidence: &mut Vec<Evidence>) -> (Hint, Option<String>) {
    let classified = messages
        .iter()
        .map(|m| classify(m))
        .find(|c| c.is_informative())
        .or_else(|| messages.first().map(|m| classify(m)));
    let (hint, text) = match classified {
        Some(c) => (c.hint(), Some(c.text.clone()).filter(|t| !t.is_empty())),
        None => (Hint::Unrecognized, None),
    };
    evidence.push(Evidence::new(
        "kubelet's message",
        text.clone()
            .unwrap_or_else(|| "none with the runtime's error was found".into()),
    ));
    evidence.push(Evidence::new("what the message says", hint.describe()));
    (hint, text)
}

/// The pod's Secrets as the kubelet reads them.
struct PodSecrets {
    pod_secrets: Vec<PodSecret>,
    /// Their keyring entries, in the pod's order.
    entries: Vec<Entry>,
    /// False when a Secret could not be read, so the keyring is not known whole.
    keyring_known: bool,
}

/// Read the pod's `imagePullSecrets` and the keyring entries they give.
async fn read_pod_secrets(client: &Client, pod: &Pod, namespace: &str, evidence: &mut Vec<Evidence>) -> PodSecrets {
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .collect();
    evidence.push(Evidence::new("pod imagePullSecrets", format!("[{}]", names.join(", "))));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut read = PodSecrets {
        pod_secrets: Vec::new(),
        entries: Vec::new(),
        keyring_known: true,
    };
    for name in names {
        let check = format!("pod's Secret {namespace}/{name}");
        let exists = match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                match keyring::entries(&name, &secret_data(&secret)) {
                    Ok(found) => {
                        let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
                        evidence.push(Evidence::new(
                            check,
                            format!("present, auths keys [{}]", keys.join(", ")),
                        ));
                        read.entries.extend(found);
                    }
                    Err(e) => evidence.push(Evidence::new(check, format!("present, but {e}"))),
                }
                Some(true)
            }
            Ok(None) => {
                evidence.push(Evidence::new(check, "absent"));
                Some(false)
            }
            Err(e) => {
                read.keyring_known = false;
                evidence.push(Evidence::new(check, not_read(&e)));
                None
            }
        };
        read.pod_secrets.push(PodSecret { name, exists });
    }
    read
}

/// Replay the kubelet's keyring: the `(secret, key)` entries the pull sent,
/// or `None` when a Secret of the pod could not be read.
fn keyring_replay(
    matched: &[&Entry],
    keyring_known: bool,
    image: &str,
    evidence: &mut Vec<Evidence>,
) -> Option<Vec<(String, String)>> {
    let sent = keyring_known.then(|| {
        matched
            .iter()
            .map(|e| (e.secret.clone(), e.key.clone()))
            .collect::<Vec<_>>()
    });
    let repo = registry::repo_to_pull(image);
    evidence.push(Evidence::new(
        format!("kubelet keyring match for {repo}"),
        match &sent {
            None => "unknown: a Secret of the pod could not be read".to_string(),
            Some(s) if s.is_empty() => "no entry matches: the pull carried no credential".to_string(),
            Some(s) => s
                .iter()
                .map(|(secret, key)| format!("Secret {secret} key {key}"))
                .collect::<Vec<_>>()
                .join(", "),
        },
    ));
    sent
}

/// The RegistryCredential covering the image's host, as far as it was found.
struct Covering {
    /// Whether the RegistryCredentials could be listed.
    listed: bool,
    facts: Option<CredentialFacts>,
    /// The current credential for the host, when the pod's namespace holds it.
    current_auth: Option<RegistryAuth>,
}

/// Find the RegistryCredential covering the image and what it should have
/// put in place for the pod.
async fn covering_credential(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    image: &str,
    host: &str,
    evidence: &mut Vec<Evidence>,
) -> Covering {
    let mut covering = Covering {
        listed: true,
        facts: None,
        current_auth: None,
    };
    match Api::<RegistryCredential>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Err(e) => {
            covering.listed = false;
            evidence.push(Evidence::new("RegistryCredentials", not_read(&e)));
        }
        Ok(list) => match list.items.iter().find(|rc| covers(rc, image)) {
            None => evidence.push(Evidence::new(
                format!("RegistryCredential covering {host}"),
                format!("none of {}", list.items.len()),
            )),
            Some(rc) => {
                let registries = registries(rc).join(", ");
                evidence.push(Evidence::new(
                    format!("RegistryCredential covering {host}"),
                    format!("{} (registries: {registries})", rc.name_any()),
                ));
                let (facts, auth) = credential_facts(client, rc, pod, namespace, host, evidence).await;
                covering.facts = Some(facts);
                covering.current_auth = auth;
            }
        },
    }
    covering
}

/// What `rc` should have put in place for the pod: the namespace targeted,
/// the Secret there and current, the ServiceAccount and the pod linked.
/// Returns the current credential for `host` too, when the namespace holds it.
async fn credential_facts(
    client: &Client,
    rc: &RegistryCredential,
    pod: &Pod,
    namespace: &str,
    host: &str,
    evidence: &mut Vec<Evidence>,
) -> (CredentialFacts, Option<RegistryAuth>) {
    if let Some(mode) = rc.spec.provider.selected().and_then(PerServiceAccount::of) {
        return per_service_account::credential_facts(client, rc, &mode, pod, namespace, host, evidence).await;
    }
    let name = rc.name_any();
    let secret_name = secret_name(rc);
    let spec = pod.spec.clone().unwrap_or_default();

    let targeted = namespace_targeted(client, rc, namespace, evidence).await;
    let secret = check_managed_secret(client, rc, namespace, host, evidence).await;
    // Only regcred writes its Secrets into targeted namespaces.
    let targeted = if secret.managed {
        targeted.or(Some(true))
    } else {
        targeted
    };
    let service_account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let service_account_links =
        service_account_links(client, namespace, &service_account, &secret_name, evidence).await;
    let pod_links = spec.image_pull_secrets.iter().flatten().any(|r| r.name == secret_name);

    (
        CredentialFacts {
            name,
            secret_name,
            targeted,
            secret_exists: secret.exists,
            secret_foreign: secret.foreign,
            secret_current: secret.current,
            not_after: secret.not_after,
            service_account,
            service_account_links,
            pod_links,
            identity: None,
        },
        secret.current_auth,
    )
}

/// Whether `rc` selects `namespace` (`None`: the namespace could not be read).
async fn namespace_targeted(
    client: &Client,
    rc: &RegistryCredential,
    namespace: &str,
    evidence: &mut Vec<Evidence>,
) -> Option<bool> {
    let check = format!("namespace {namespace} targeted by {}", rc.name_any());
    match Api::<Namespace>::all(client.clone()).get(namespace).await {
        Ok(ns) => {
            let selected = crate::targets::namespace_selected(&rc.spec.target.namespaces, &ns);
            evidence.push(Evidence::new(check, if selected { "yes" } else { "no" }));
            Some(selected)
        }
        Err(e) => {
            evidence.push(Evidence::new(check, not_read(&e)));
            None
        }
    }
}

/// What the namespace holds under the RegistryCredential's Secret name.
#[derive(Default)]
struct SecretCheck {
    /// `Some(true)` present, `Some(false)` absent, `None` not readable.
    exists: Option<bool>,
    /// Present but not written by regcred.
    foreign: bool,
    /// Written by regcred for this RegistryCredential.
    managed: bool,
    current: Option<bool>,
    not_after: Option<Timestamp>,
    /// The current credential for the host, when the Secret holds it.
    current_auth: Option<RegistryAuth>,
}

/// Read `rc`'s Secret in `namespace`: whether regcred wrote it, whether it
/// holds the current credential, and when that expires.
async fn check_managed_secret(
    client: &Client,
    rc: &RegistryCredential,
    namespace: &str,
    host: &str,
    evidence: &mut Vec<Evidence>,
) -> SecretCheck {
    let name = rc.name_any();
    let secret_name = secret_name(rc);
    let check = format!("Secret {namespace}/{secret_name} of RegistryCredential {name}");
    match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret_name)
        .await
    {
        Ok(None) => {
            evidence.push(Evidence::new(check, "absent"));
            SecretCheck {
                exists: Some(false),
                ..Default::default()
            }
        }
        Err(e) => {
            evidence.push(Evidence::new(check, not_read(&e)));
            SecretCheck::default()
        }
        Ok(Some(secret)) if !is_managed_by(&secret, &name) => {
            evidence.push(Evidence::new(
                check,
                "present, but not written by regcred (no regcred.dev/credential label for it): regcred leaves it \
                 alone (SecretExists)",
            ));
            SecretCheck {
                exists: Some(true),
                foreign: true,
                ..Default::default()
            }
        }
        Ok(Some(secret)) => {
            let current = crate::managed::holds_current(&secret, rc);
            let not_after = secret
                .annotations()
                .get(NOT_AFTER_ANNOTATION)
                .and_then(|t| t.parse::<Timestamp>().ok());
            evidence.push(Evidence::new(check, describe_managed_secret(current, not_after)));
            let current_auth = if current == Some(true) {
                credential_for_host(&secret_name, &secret_data(&secret), host)
            } else {
                None
            };
            SecretCheck {
                exists: Some(true),
                foreign: false,
                managed: true,
                current,
                not_after,
                current_auth,
            }
        }
    }
}

/// A managed Secret in words: whether it is current, and its expiry.
fn describe_managed_secret(current: Option<bool>, not_after: Option<Timestamp>) -> String {
    let mut result = match current {
        Some(true) => "present, the current credential (digest matches status.credentialDigest)".to_string(),
        Some(false) => "present, an older credential (digest differs from status.credentialDigest)".to_string(),
        None => "present; the RegistryCredential records no credentialDigest".to_string(),
    };
    if let Some(t) = not_after {
        let now = Timestamp::now();
        let when = if t <= now {
            format!(
                "expired {} ago",
                humantime::format_duration(std::time::Duration::from_secs(
                    now.duration_since(t).as_secs().max(0) as u64
                ))
            )
        } else {
            "not expired".to_string()
        };
        result.push_str(&format!(", notAfter {t} ({when})"));
    }
    result
}

/// The credential a managed Secret's data holds for `host`.
fn credential_for_host(secret_name: &str, data: &BTreeMap<String, Vec<u8>>, host: &str) -> Option<RegistryAuth> {
    let entries = keyring::entries(secret_name, data).ok()?;
    let image = format!("{host}/x");
    keyring::lookup(&entries, &image).first().map(|e| auth_of(host, e))
}

/// Whether the pod's ServiceAccount lists `secret_name` in its
/// `imagePullSecrets` (`None`: it could not be read).
async fn service_account_links(
    client: &Client,
    namespace: &str,
    service_account: &str,
    secret_name: &str,
    evidence: &mut Vec<Evidence>,
) -> Option<bool> {
    let check = format!("ServiceAccount {namespace}/{service_account} imagePullSecrets");
    match Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(service_account)
        .await
    {
        Ok(Some(sa)) => {
            let names: Vec<String> = sa.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
            evidence.push(Evidence::new(check, format!("[{}]", names.join(", "))));
            Some(names.iter().any(|n| n == secret_name))
        }
        Ok(None) => {
            evidence.push(Evidence::new(check, "the ServiceAccount does not exist"));
            Some(false)
        }
        Err(e) => {
            evidence.push(Evidence::new(check, not_read(&e)));
            None
        }
    }
}

/// HEAD the manifest with the credential the kubelet would send (or none),
/// and with regcred's current credential when the pod would not send it.
async fn manifest_checks(
    http: &reqwest::Client,
    image: &str,
    host: &str,
    matched: &[&Entry],
    keyring_known: bool,
    current: Option<RegistryAuth>,
    evidence: &mut Vec<Evidence>,
) -> Vec<Manifest> {
    let (_, path) = registry::split_domain(image);
    let Some(reference) = ImageRef::parse(path, registry::is_docker_hub(host)) else {
        evidence.push(Evidence::new(
            "manifest HEAD",
            format!("not run: {image:?} does not parse"),
        ));
        return Vec::new();
    };
    let mut plans: Vec<(String, Option<RegistryAuth>, bool, bool)> = Vec::new();
    if keyring_known {
        let pods = matched.first().map(|e| auth_of(host, e));
        let same = match (&pods, &current) {
            (Some(a), Some(b)) => a.username == b.username && a.password == b.password,
            _ => false,
        };
        let with = match matched.first() {
            Some(e) => format!("the pod's credential (Secret {} key {})", e.secret, e.key),
            None => "no credential, as the pod pulled".to_string(),
        };
        plans.push((with, pods, same, true));
        if !same && let Some(current) = current {
            plans.push(("regcred's current credential".into(), Some(current), true, false));
        }
    } else if let Some(current) = current {
        plans.push(("regcred's current credential".into(), Some(current), true, false));
    }
    let mut manifests = Vec::new();
    for (with, auth, current, pods) in plans {
        let check = check_manifest(http, host, auth.as_ref(), &reference.repository, &reference.reference).await;
        let mut result = match check.status {
            Some(status) => status.to_string(),
            None => format!("no answer: {}", check.message),
        };
        match check.repository_exists {
            Some(true) => result.push_str(" (the repository exists: its tag list answers)"),
            Some(false) => result.push_str(" (no such repository: its tag list answers 404 too)"),
            None => {}
        }
        if let Some(remaining) = &check.ratelimit_remaining {
            result.push_str(&format!(", ratelimit-remaining {remaining}"));
        }
        evidence.push(Evidence::new(
            format!(
                "manifest HEAD {host}/{}:{} with {with}",
                reference.repository, reference.reference
            ),
            result,
        ));
        manifests.push(Manifest {
            with,
            current,
            pods,
            check,
        });
    }
    manifests
}

/// The hosts a RegistryCredential writes: those in its status, and those its
/// provider may write for (so one that has not issued yet still covers its
/// hosts, whichever ECR endpoint it will be given).
fn registries(rc: &RegistryCredential) -> Vec<String> {
    let mut hosts: Vec<String> = rc.status.iter().flat_map(|s| s.registries.clone()).collect();
    hosts.extend(rc.spec.provider.selected().iter().flat_map(|p| p.hosts()));
    let mut seen = std::collections::BTreeSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    hosts
}

/// Whether the kubelet would send a credential `rc` writes for `image`.
fn covers(rc: &RegistryCredential, image: &str) -> bool {
    registries(rc)
        .iter()
        .any(|r| keyring::key_matches(&dockerconfig::config_key(r), image))
}

fn auth_of(host: &str, entry: &Entry) -> RegistryAuth {
    RegistryAuth {
        registry: host.to_string(),
        username: entry.username.clone(),
        password: Sensitive::new(entry.password.expose().clone()),
    }
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// A read that failed, in words: RBAC's refusal says so.
pub(super) fn not_read(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => "not checked: forbidden for this user".to_string(),
        kube::Error::Api(s) => format!("not checked: the API server answered {} {}", s.code, s.reason),
        other => format!("not checked: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::reconcile::fixtures::{Expect, Scenario, rc, status};
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use serde_json::json;

    /// The reads for one pod, in order: its own pull Secrets, the
    /// RegistryCredentials, then what the covering one should have put in
    /// place (namespace, Secret, ServiceAccount). A never-pull pod makes no
    /// manifest HEAD, so no registry is needed.
    #[tokio::test]
    async fn a_pods_diagnosis_reads_its_secrets_the_credentials_and_its_service_account() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "a"},
            "spec": {
                "containers": [{"name": "app", "image": "docker.io/team/app:1"}],
                "imagePullSecrets": [{"name": "own"}],
            },
        }))
        .unwrap();
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
        let unlinked = regcred_testenv::objects::service_account("default", &["other"]);
        let credentials = json!({"apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredentialList",
            "metadata": {}, "items": [rc()]});
        let (client, server) = Scenario::new()
            .then(Expect::get("/api/v1/namespaces/a/secrets/own").reply(404, status(404, "NotFound", "not found")))
            .then(Expect::get("/apis/regcred.dev/v1alpha1/registrycredentials").reply(200, credentials))
            .then(Expect::get("/api/v1/namespaces/a").reply(200, namespace))
            .then(Expect::get("/api/v1/namespaces/a/secrets/hub").reply(404, status(404, "NotFound", "not found")))
            .then(Expect::get("/api/v1/namespaces/a/serviceaccounts/default").reply(200, unlinked))
            .serve();
        let target = super::Target {
            pod: &pod,
            container: "app".into(),
            image: "docker.io/team/app:1".into(),
            messages: vec![r#"Container image "docker.io/team/app:1" is not present with pull policy of Never"#.into()],
            evidence: Vec::new(),
            failed_at: None,
        };
        let findings = super::gather(&client, &reqwest::Client::new(), target).await;
        assert_eq!(server.done().await.len(), 5);
        assert_eq!(findings.hint, crate::diagnosis::classify::Hint::NeverPull);
        assert_eq!(findings.pod_secrets.len(), 1);
        assert_eq!(
            findings.pod_secrets[0].exists,
            Some(false),
            "the pod's own Secret is absent"
        );
        assert!(findings.credentials_listed);
        let facts = findings.credential.expect("hub covers docker.io");
        assert_eq!(facts.name, "hub");
        assert_eq!(facts.targeted, Some(true));
        assert_eq!(facts.secret_exists, Some(false));
        assert_eq!(facts.service_account, "default");
        assert_eq!(facts.service_account_links, Some(false));
        assert!(!facts.pod_links);
        assert!(findings.manifests.is_empty());
    }

    #[test]
    fn a_credential_that_has_not_issued_yet_covers_the_hosts_of_its_spec() {
        let rc: crate::api::RegistryCredential = serde_json::from_value(serde_json::json!({
            "apiVersion": "regcred.dev/v1alpha1",
            "kind": "RegistryCredential",
            "metadata": {"name": "ecr"},
            "spec": {"provider": {"ecr": {"region": "eu-west-1", "registryIds": ["123456789012"]}}},
        }))
        .unwrap();
        assert_eq!(
            super::registries(&rc),
            [
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn",
            ]
        );
        let mut issued = rc.clone();
        issued.status = Some(crate::api::RegistryCredentialStatus {
            registries: vec![
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                "210987654321.dkr.ecr.eu-west-1.amazonaws.com".into(),
            ],
            ..Default::default()
        });
        assert_eq!(super::registries(&issued).len(), 4, "status and spec, once each");
    }

    #[test]
    fn a_pull_from_an_ecr_fips_or_china_host_is_covered_before_the_credential_issues() {
        let cases = [
            ("us-east-1", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ("us-east-1", "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            ("cn-north-1", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ];
        for (region, host) in cases {
            let rc: crate::api::RegistryCredential = serde_json::from_value(serde_json::json!({
                "apiVersion": "regcred.dev/v1alpha1",
                "kind": "RegistryCredential",
                "metadata": {"name": "ecr"},
                "spec": {"provider": {"ecr": {"region": region, "registryIds": ["123456789012"]}}},
            }))
            .unwrap();
            assert!(super::covers(&rc, &format!("{host}/team/app:1")), "{host} in {region}");
            let other_account = host.replace("123456789012", "210987654321");
            assert!(
                !super::covers(&rc, &format!("{other_account}/team/app:1")),
                "{other_account} in {region}"
            );
        }
    }
}
