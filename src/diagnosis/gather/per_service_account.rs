//! The checks behind a diagnosis when the covering RegistryCredential mints
//! per ServiceAccount (`identity: PerServiceAccount`). The pod should carry
//! its ServiceAccount's own Secret (`<secretName>-<sa>`), which exists only
//! when the RegistryCredential selects that ServiceAccount, the
//! ServiceAccount names its identity, and the cloud granted that identity
//! (else `status.failedServiceAccounts` says why). No shared Secret exists
//! in this mode, so the shared path's checks would find nothing.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::{credential_for_host, namespace_targeted, not_read, secret_data};
use crate::api::{FailedServiceAccount, RegistryCredential};
use crate::diagnosis::Evidence;
use crate::diagnosis::decide::{CredentialFacts, IdentityFacts};
use crate::dockerconfig::{self, RegistryAuth};
use crate::identity::{self, PerServiceAccount, WorkloadIdentity};
use crate::managed::{self, NOT_AFTER_ANNOTATION, is_managed_by};
use crate::reconcile::workload::{DATA_DIGEST_ANNOTATION, IDENTITY_ANNOTATION, SERVICE_ACCOUNT_UID_ANNOTATION};

/// What `rc` should have put in place for the pod in this mode: the
/// namespace targeted, the ServiceAccount selected and naming its identity,
/// its own Secret there and of that identity, the pod linked. Returns the
/// credential for `host` too, when that Secret holds it.
pub(super) async fn credential_facts(
    client: &Client,
    rc: &RegistryCredential,
    mode: &PerServiceAccount,
    pod: &Pod,
    namespace: &str,
    host: &str,
    evidence: &mut Vec<Evidence>,
) -> (CredentialFacts, Option<RegistryAuth>) {
    let name = rc.name_any();
    let spec = pod.spec.clone().unwrap_or_default();
    let service_account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let secret_name = identity::secret_name(&managed::secret_name(rc), &service_account);
    evidence.push(Evidence::new(
        format!("RegistryCredential {name} identity"),
        format!(
            "PerServiceAccount ({}): ServiceAccount {namespace}/{service_account} pulls with its own Secret \
             {secret_name}",
            mode.kind.as_str()
        ),
    ));
    let targeted = namespace_targeted(client, rc, namespace, evidence).await;
    let sa = read_service_account(client, namespace, &service_account, evidence).await;
    let named = sa.as_ref().map(|sa| named_identity(mode, sa.as_ref(), evidence));
    let selected = sa.as_ref().map(|sa| {
        let selected = sa
            .as_ref()
            .is_some_and(|sa| crate::targets::service_account_selected(&rc.spec.target.service_accounts, sa));
        evidence.push(Evidence::new(
            format!("ServiceAccount {namespace}/{service_account} selected by {name}"),
            if selected { "yes" } else { "no" },
        ));
        selected
    });
    let links = sa.as_ref().map(|sa| {
        sa.iter()
            .flat_map(|sa| sa.image_pull_secrets.iter().flatten())
            .any(|r| r.name == secret_name)
    });
    let failure = failed_entry(rc, namespace, &service_account, evidence);
    let expected = Expected {
        identity: named.clone(),
        uid: sa.as_ref().and_then(|sa| sa.as_ref()?.uid()),
    };
    let secret = check_own_secret(client, rc, namespace, &secret_name, &expected, host, evidence).await;
    let targeted = if secret.managed {
        targeted.or(Some(true))
    } else {
        targeted
    };
    let pod_links = spec.image_pull_secrets.iter().flatten().any(|r| r.name == secret_name);
    let facts = CredentialFacts {
        name,
        secret_name,
        targeted,
        secret_exists: secret.exists,
        secret_foreign: secret.foreign,
        secret_current: secret.current,
        not_after: secret.not_after,
        service_account,
        service_account_links: links,
        pod_links,
        identity: Some(IdentityFacts {
            kind: mode.kind,
            annotation: mode.annotation().to_string(),
            audience: mode.audience.clone(),
            named,
            selected,
            failure,
        }),
    };
    (facts, secret.current_auth)
}

/// The pod's ServiceAccount: `Some(None)` when it does not exist, `None`
/// when it could not be read. Its `imagePullSecrets` go to the evidence.
async fn read_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    evidence: &mut Vec<Evidence>,
) -> Option<Option<ServiceAccount>> {
    let check = format!("ServiceAccount {namespace}/{name} imagePullSecrets");
    match Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(sa)) => {
            let names: Vec<&str> = sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str())
                .collect();
            evidence.push(Evidence::new(check, format!("[{}]", names.join(", "))));
            Some(Some(sa))
        }
        Ok(None) => {
            evidence.push(Evidence::new(check, "the ServiceAccount does not exist"));
            Some(None)
        }
        Err(e) => {
            evidence.push(Evidence::new(check, not_read(&e)));
            None
        }
    }
}

/// The identity the ServiceAccount's annotations name for `mode`.
fn named_identity(
    mode: &PerServiceAccount,
    sa: Option<&ServiceAccount>,
    evidence: &mut Vec<Evidence>,
) -> Option<WorkloadIdentity> {
    let annotations = sa.map(|sa| sa.annotations());
    let named = mode.identity(|key| annotations?.get(key).map(String::as_str));
    let (namespace, name) = sa.map_or((String::new(), String::new()), |sa| {
        (sa.namespace().unwrap_or_default(), sa.name_any())
    });
    evidence.push(Evidence::new(
        format!("ServiceAccount {namespace}/{name} annotation {}", mode.annotation()),
        match &named {
            Some(identity) => format!("names {}", identity.describe()),
            None => "absent: it names no identity, so regcred mints nothing for it".to_string(),
        },
    ));
    named
}

/// The ServiceAccount's entry in `status.failedServiceAccounts`.
fn failed_entry(
    rc: &RegistryCredential,
    namespace: &str,
    service_account: &str,
    evidence: &mut Vec<Evidence>,
) -> Option<FailedServiceAccount> {
    let entry = rc
        .status
        .iter()
        .flat_map(|s| &s.failed_service_accounts)
        .find(|e| e.namespace == namespace && e.name == service_account)
        .cloned();
    evidence.push(Evidence::new(
        format!(
            "status.failedServiceAccounts of {} for {namespace}/{service_account}",
            rc.name_any()
        ),
        match &entry {
            None => "not listed".to_string(),
            Some(e) => {
                let mut result = format!("{}: {}", e.reason, e.message);
                if let Some(identity) = &e.identity {
                    result.push_str(&format!(" (identity {identity})"));
                }
                if let Some(t) = &e.retry_time {
                    result.push_str(&format!(", next try at {}", t.0));
                }
                result
            }
        },
    ));
    entry
}

/// What the ServiceAccount's own Secret should hold: a credential of the
/// identity it names (`None`: the ServiceAccount could not be read), for
/// its uid.
struct Expected {
    identity: Option<Option<WorkloadIdentity>>,
    uid: Option<String>,
}

/// What the namespace holds under the ServiceAccount's Secret name.
#[derive(Default)]
struct OwnSecret {
    exists: Option<bool>,
    foreign: bool,
    managed: bool,
    current: Option<bool>,
    not_after: Option<Timestamp>,
    current_auth: Option<RegistryAuth>,
}

/// Read the ServiceAccount's own Secret: whether regcred wrote it, and
/// whether it holds a credential of the identity the ServiceAccount names.
async fn check_own_secret(
    client: &Client,
    rc: &RegistryCredential,
    namespace: &str,
    secret_name: &str,
    expected: &Expected,
    host: &str,
    evidence: &mut Vec<Evidence>,
) -> OwnSecret {
    let name = rc.name_any();
    let check = format!("Secret {namespace}/{secret_name} of RegistryCredential {name}");
    let secret = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(secret_name)
        .await
    {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            evidence.push(Evidence::new(check, "absent"));
            return OwnSecret {
                exists: Some(false),
                ..Default::default()
            };
        }
        Err(e) => {
            evidence.push(Evidence::new(check, not_read(&e)));
            return OwnSecret::default();
        }
    };
    if !is_managed_by(&secret, &name) {
        evidence.push(Evidence::new(
            check,
            "present, but not written by regcred (no regcred.dev/credential label for it): regcred leaves it alone \
             (SecretExists)",
        ));
        return OwnSecret {
            exists: Some(true),
            foreign: true,
            ..Default::default()
        };
    }
    let not_after = secret
        .annotations()
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let (current, said) = own_current(&secret, expected);
    evidence.push(Evidence::new(check, format!("present, {said}{}", expiry(not_after))));
    let current_auth = if current == Some(true) {
        credential_for_host(secret_name, &secret_data(&secret), host)
    } else {
        None
    };
    OwnSecret {
        exists: Some(true),
        foreign: false,
        managed: true,
        current,
        not_after,
        current_auth,
    }
}

/// Whether regcred's Secret holds the ServiceAccount's credential of the
/// identity it names now, unchanged since regcred wrote it; and that, in words.
fn own_current(secret: &Secret, expected: &Expected) -> (Option<bool>, String) {
    let annotations = secret.annotations();
    let minted_for = annotations.get(IDENTITY_ANNOTATION).map(String::as_str);
    let written = secret
        .data
        .as_ref()
        .and_then(|d| d.get(dockerconfig::DATA_KEY))
        .map(|j| managed::data_digest(&j.0));
    let untouched = written.is_some() && written.as_ref() == annotations.get(DATA_DIGEST_ANNOTATION);
    let minted = match minted_for {
        Some(identity) => format!("minted for {identity}"),
        None => "without regcred.dev/identity".to_string(),
    };
    let Some(named) = &expected.identity else {
        return (
            None,
            format!("{minted}; the ServiceAccount could not be read to compare"),
        );
    };
    let Some(named) = named else {
        return (
            Some(false),
            format!("{minted}, but the ServiceAccount names no identity now"),
        );
    };
    if minted_for != Some(named.name().as_str()) {
        return (
            Some(false),
            format!("{minted}, but the ServiceAccount names {} now", named.name()),
        );
    }
    let uid = annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION);
    if expected.uid.is_some() && uid.is_some() && uid != expected.uid.as_ref() {
        return (
            Some(false),
            format!("{minted}, for an earlier ServiceAccount of that name (its uid differs)"),
        );
    }
    if !untouched {
        return (
            Some(false),
            format!("{minted}, but its data differs from what regcred wrote (regcred.dev/data-sha256)"),
        );
    }
    (Some(true), format!("{minted}, the identity the ServiceAccount names"))
}

/// `, notAfter <t> (expired <d> ago | not expired)`.
fn expiry(not_after: Option<Timestamp>) -> String {
    let Some(t) = not_after else {
        return String::new();
    };
    let now = Timestamp::now();
    if t <= now {
        let ago = std::time::Duration::from_secs(now.duration_since(t).as_secs().max(0) as u64);
        format!(", notAfter {t} (expired {} ago)", humantime::format_duration(ago))
    } else {
        format!(", notAfter {t} (not expired)")
    }
}
