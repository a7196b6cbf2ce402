//! The *apply* step: writes to Secrets and ServiceAccounts, each only when
//! the cache shows something to change.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};

use super::build::{self, SaChange};
use crate::api::{ExistingSecretPolicy, FailedNamespace, conditions::reason};

const FIELD_MANAGER: &str = "regcred";
/// Attempts of a ServiceAccount read-modify-write before giving up until the next reconcile.
const SA_CONFLICT_RETRIES: usize = 8;

/// What happened in one namespace.
#[derive(Debug, Default)]
pub struct NamespaceOutcome {
    /// Set when the namespace does not hold the current Secret or a selected SA is not patched.
    pub failure: Option<FailedNamespace>,
    pub sa_patched: u32,
    pub sa_failed: u32,
    /// Writes made (Secrets and ServiceAccounts), for logs.
    pub writes: u32,
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A kube error as users should read it: the API server's message, never a body.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn failure(namespace: &str, reason: &str, message: String) -> FailedNamespace {
    FailedNamespace {
        namespace: namespace.into(),
        reason: reason.into(),
        message,
    }
}

/// Make `desired` (a Secret in one namespace) true, honouring the existing-Secret
/// policy. `cached` is what the managed-Secret cache holds for it.
pub async fn ensure_secret(
    client: &Client,
    rc_name: &str,
    desired: &Secret,
    cached: Option<Arc<Secret>>,
    policy: ExistingSecretPolicy,
) -> Result<u32, FailedNamespace> {
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let write_failed = |e: &kube::Error| {
        failure(
            &ns,
            reason::NAMESPACE_WRITE_FAILED,
            format!("writing Secret {ns}/{name} failed: {}", describe(e)),
        )
    };
    let existing = match cached {
        Some(s) => Some((*s).clone()),
        None => api.get_opt(&name).await.map_err(|e| write_failed(&e))?,
    };
    let existing = match existing {
        Some(e) => e,
        None => match api.create(&post_params(), desired).await {
            Ok(_) => return Ok(1),
            Err(e) if is_status(&e, 409) => api.get(&name).await.map_err(|e| write_failed(&e))?,
            Err(e) => return Err(write_failed(&e)),
        },
    };
    if build::is_managed_by(&existing, rc_name) {
        if build::secret_up_to_date(&existing, desired) {
            return Ok(0);
        }
        if existing.type_ != desired.type_ {
            return recreate(&api, &existing, desired).await.map_err(|e| write_failed(&e));
        }
        return api
            .replace(&name, &post_params(), &build::merged_secret(&existing, desired))
            .await
            .map(|_| 1)
            .map_err(|e| write_failed(&e));
    }
    match policy {
        ExistingSecretPolicy::Fail => Err(failure(
            &ns,
            reason::SECRET_EXISTS,
            format!(
                "Secret {ns}/{name} exists and was not created by this RegistryCredential; \
                 regcred leaves it untouched. Delete or rename it, or set spec.target.existingSecretPolicy: Adopt"
            ),
        )),
        ExistingSecretPolicy::Adopt if existing.type_ != desired.type_ => {
            recreate(&api, &existing, desired).await.map_err(|e| write_failed(&e))
        }
        ExistingSecretPolicy::Adopt => api
            .replace(&name, &post_params(), &build::merged_secret(&existing, desired))
            .await
            .map(|_| 1)
            .map_err(|e| write_failed(&e)),
    }
}

/// A Secret's type is immutable: delete exactly the version we looked at, then create.
async fn recreate(api: &Api<Secret>, existing: &Secret, desired: &Secret) -> Result<u32, kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: existing.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(&existing.name_any(), &dp).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    api.create(&post_params(), desired).await?;
    Ok(2)
}

/// Bring one ServiceAccount's reference to `secret` in line with `selected`:
/// read, change only regcred's own entry, write back with the
/// resourceVersion precondition, and retry on conflict with a fresh read.
/// Returns the writes made.
pub async fn reconcile_service_account(
    client: &Client,
    cached: &ServiceAccount,
    secret: &str,
    selected: bool,
) -> Result<u32, String> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let mut current = cached.clone();
    for _ in 0..SA_CONFLICT_RETRIES {
        let Some(change) = build::sa_change(&current, secret, selected) else {
            return Ok(0);
        };
        let updated = build::apply_sa_change(&current, secret, change);
        match api.replace(&name, &post_params(), &updated).await {
            Ok(_) => return Ok(1),
            Err(e) if is_status(&e, 404) => return Ok(0),
            Err(e) if is_status(&e, 409) => match api.get_opt(&name).await {
                Ok(Some(fresh)) => current = fresh,
                Ok(None) => return Ok(0),
                Err(e) => return Err(format!("reading ServiceAccount {ns}/{name}: {}", describe(&e))),
            },
            Err(e) => {
                let verb = if change == SaChange::Add { "adding" } else { "removing" };
                return Err(format!(
                    "{verb} {secret} in ServiceAccount {ns}/{name} imagePullSecrets: {}",
                    describe(&e)
                ));
            }
        }
    }
    Err(format!(
        "ServiceAccount {ns}/{name} kept changing ({SA_CONFLICT_RETRIES} conflicts in a row); will retry"
    ))
}

/// Remove regcred's entries for `secret` from the given ServiceAccounts and
/// delete the managed Secret `secret` in `ns` (if it is ours). NotFound and
/// terminating namespaces count as done.
pub async fn clean_namespace(
    client: &Client,
    rc_name: &str,
    ns: &str,
    secret: &str,
    service_accounts: &[Arc<ServiceAccount>],
) -> Result<u32, String> {
    let mut writes = 0;
    for sa in service_accounts {
        if build::recorded_entries(sa).iter().any(|e| e == secret) {
            match reconcile_service_account(client, sa, secret, false).await {
                Ok(n) => writes += n,
                // In a namespace being deleted the SA goes away with it.
                Err(_) if namespace_gone(client, ns).await => {}
                Err(e) => return Err(e),
            }
        }
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(secret).await {
        Ok(Some(s)) if build::is_managed_by(&s, rc_name) => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: s.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(secret, &dp).await {
                Ok(_) => writes += 1,
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => return Err(format!("deleting Secret {ns}/{secret}: {}", describe(&e))),
            }
        }
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(format!("reading Secret {ns}/{secret}: {}", describe(&e))),
    }
    Ok(writes)
}

async fn namespace_gone(client: &Client, ns: &str) -> bool {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.get_opt(ns).await {
        Ok(Some(n)) => crate::targets::is_terminating(&n),
        Ok(None) => true,
        Err(_) => false,
    }
}
