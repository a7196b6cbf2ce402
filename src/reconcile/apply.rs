//! The *apply* step's writes: one Secret, one ServiceAccount, one namespace
//! to clean. Each writes only when there is something to change and says
//! what failed as a typed [`Error`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};

use super::build::{self, SaChange};
use super::tamper;
use crate::api::{ExistingSecretPolicy, FailedNamespace, conditions::reason};

const FIELD_MANAGER: &str = "regcred";
/// Attempts of a ServiceAccount read-modify-write before giving up until the next reconcile.
const SA_CONFLICT_RETRIES: usize = 8;

/// A write that failed, with the object and the API server's words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("writing Secret {namespace}/{name} failed: {cause}")]
    WriteSecret {
        namespace: String,
        name: String,
        cause: String,
    },
    #[error("{verb} {secret} in ServiceAccount {namespace}/{name} imagePullSecrets failed: {cause}")]
    PatchServiceAccount {
        namespace: String,
        name: String,
        secret: String,
        verb: &'static str,
        cause: String,
    },
    #[error("cleaning Secret {namespace}/{secret} failed: {cause}")]
    Clean {
        namespace: String,
        secret: String,
        cause: String,
    },
}

impl Error {
    /// For metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::WriteSecret { .. } => "WriteSecret",
            Self::PatchServiceAccount { .. } => "PatchServiceAccount",
            Self::Clean { .. } => "Clean",
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Self::WriteSecret { namespace, .. }
            | Self::PatchServiceAccount { namespace, .. }
            | Self::Clean { namespace, .. } => namespace,
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A kube error as users should read it: the API server's message, never a body.
pub fn describe(e: &kube::Error) -> String {
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

/// What [`ensure_secret`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub writes: u32,
    /// Someone else's change to regcred's Secret that this write undid.
    pub overwrite: Option<tamper::Overwrite>,
}

impl Written {
    fn count(writes: u32) -> Self {
        Self {
            writes,
            overwrite: None,
        }
    }
}

/// Make `desired` (a Secret in one namespace) true, honouring the existing-Secret
/// policy. `cached` is what the managed-Secret cache holds for it; without
/// it, regcred creates first and reads only when something is in the way.
pub async fn ensure_secret(
    client: &Client,
    rc_name: &str,
    rc_uid: &str,
    desired: &Secret,
    cached: Option<Arc<Secret>>,
    policy: ExistingSecretPolicy,
) -> Result<Written, FailedNamespace> {
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let write_failed = |e: kube::Error| {
        let err = Error::WriteSecret {
            namespace: ns.clone(),
            name: name.clone(),
            cause: describe(&e),
        };
        failure(&ns, reason::NAMESPACE_WRITE_FAILED, err.to_string())
    };
    let Some(existing) = create_or_read(client, &api, desired, cached)
        .await
        .map_err(write_failed)?
    else {
        return Ok(Written::count(1));
    };
    match secret_action(&existing, desired, rc_name, rc_uid, policy) {
        SecretAction::Keep => Ok(Written::count(0)),
        SecretAction::Update => {
            // Regcred's own Secret changed under the same credential: name who did it.
            let editor = if build::is_managed_by(&existing, rc_name) && tamper::suspect(&existing, desired) {
                tamper::editor(&api, desired, FIELD_MANAGER).await
            } else {
                None
            };
            let patch = build::secret_patch(&existing, &build::merged_secret(&existing, desired));
            api.patch(&name, &patch_params(), &Patch::Merge(patch))
                .await
                .map_err(write_failed)?;
            let overwrite = editor.map(|manager| tamper::Overwrite {
                namespace: ns.clone(),
                secret: name.clone(),
                manager,
            });
            Ok(Written { writes: 1, overwrite })
        }
        SecretAction::Recreate => recreate(&api, &existing, desired)
            .await
            .map(Written::count)
            .map_err(write_failed),
        SecretAction::Refuse(failed) => Err(failed),
    }
}

/// The Secret standing where `desired` goes, in [`build::cache_form`]: the
/// cached one, or, without it, the one whose name made a create conflict.
/// `None` when nothing stood there and `desired` has now been created.
async fn create_or_read(
    client: &Client,
    api: &Api<Secret>,
    desired: &Secret,
    cached: Option<Arc<Secret>>,
) -> Result<Option<Arc<Secret>>, kube::Error> {
    if cached.is_some() {
        return Ok(cached);
    }
    match create_unread(client, &desired.namespace().unwrap_or_default(), desired).await {
        Ok(()) => Ok(None),
        Err(e) if is_status(&e, 409) => {
            let mut found = api.get(&desired.name_any()).await?;
            build::cache_form(&mut found);
            Ok(Some(Arc::new(found)))
        }
        Err(e) => Err(e),
    }
}

/// What to do with a Secret that already stands where `desired` goes.
#[derive(Debug, PartialEq, Eq)]
enum SecretAction {
    /// It already carries everything of `desired`.
    Keep,
    /// Patch regcred's key, labels and annotations into it.
    Update,
    /// Its type differs, and a Secret's type is immutable: delete, then create.
    Recreate,
    /// Leave it alone; the namespace fails with this.
    Refuse(FailedNamespace),
}

/// The existing-Secret policy applied to `existing` (in
/// [`build::cache_form`]): a Secret of this RegistryCredential is brought up
/// to date; one of another RegistryCredential, or controlled by another
/// object, is never taken; any other is taken only under `Adopt`.
fn secret_action(
    existing: &Secret,
    desired: &Secret,
    rc_name: &str,
    rc_uid: &str,
    policy: ExistingSecretPolicy,
) -> SecretAction {
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let take = || {
        if existing.type_ != desired.type_ {
            SecretAction::Recreate
        } else {
            SecretAction::Update
        }
    };
    if build::is_managed_by(existing, rc_name) {
        if build::secret_up_to_date(existing, desired) {
            return SecretAction::Keep;
        }
        return take();
    }
    if let Some(owner) = build::managing_credential(existing) {
        // Two RegistryCredentials writing one Secret would undo each other forever.
        return SecretAction::Refuse(failure(
            &ns,
            reason::SECRET_CONFLICT,
            format!(
                "Secret {ns}/{name} belongs to RegistryCredential {owner}; two RegistryCredentials cannot write the \
                 same Secret name in one namespace. Give one of them another spec.target.secretName or exclude the namespace"
            ),
        ));
    }
    match policy {
        ExistingSecretPolicy::Fail => SecretAction::Refuse(failure(
            &ns,
            reason::SECRET_EXISTS,
            format!(
                "Secret {ns}/{name} exists and was not created by this RegistryCredential; \
                 regcred leaves it untouched. Delete or rename it, or set spec.target.existingSecretPolicy: Adopt"
            ),
        )),
        ExistingSecretPolicy::Adopt => match other_controller(existing, rc_uid) {
            Some(controller) => SecretAction::Refuse(failure(
                &ns,
                reason::SECRET_CONTROLLED_ELSEWHERE,
                format!(
                    "Secret {ns}/{name} is controlled by {} {}; an object has one controller, so regcred cannot adopt it. \
                     Give this RegistryCredential another spec.target.secretName or exclude the namespace",
                    controller.kind, controller.name
                ),
            )),
            None => take(),
        },
    }
}

/// The controller of `secret`, when it is not the RegistryCredential `rc_uid`.
fn other_controller<'a>(secret: &'a Secret, rc_uid: &str) -> Option<&'a OwnerReference> {
    secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.uid != rc_uid)
}

/// What [`create_if_missing`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Created,
    /// Already there, regcred's for this RegistryCredential.
    Ours,
    /// A Secret of that name that is not this RegistryCredential's.
    Foreign,
}

/// Admission's write: create `desired` unless a Secret of its name is
/// already there, and say whose that one is. It never changes an existing
/// Secret: bringing one up to date is the fan-out's job, with the policies
/// of [`ensure_secret`].
pub async fn create_if_missing(client: &Client, rc_name: &str, desired: &Secret) -> Result<Placed, kube::Error> {
    let ns = desired.namespace().unwrap_or_default();
    match create_unread(client, &ns, desired).await {
        Ok(()) => Ok(Placed::Created),
        Err(e) if is_status(&e, 409) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let found = api.get_metadata(&desired.name_any()).await?;
            let ours = found.labels().get(build::MANAGED_BY_LABEL).map(String::as_str) == Some(build::MANAGED_BY_VALUE)
                && found.labels().get(build::CREDENTIAL_LABEL).map(String::as_str) == Some(rc_name);
            Ok(if ours { Placed::Ours } else { Placed::Foreign })
        }
        Err(e) => Err(e),
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

/// Create `secret` in `ns` without decoding the object the API server sends
/// back: regcred reads nothing from it (the watch brings it into the
/// cache), and decoding it, managed fields and all, would be CPU spent for
/// nothing on each of thousands of creates.
async fn create_unread(client: &Client, ns: &str, secret: &Secret) -> Result<(), kube::Error> {
    let body = serde_json::to_vec(secret).map_err(kube::Error::SerdeError)?;
    let request = kube::core::Request::new(Secret::url_path(&(), Some(ns)))
        .create(&post_params(), body)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<serde::de::IgnoredAny>(request).await.map(drop)
}

/// One RegistryCredential's wish for one ServiceAccount: reference `secret`
/// (`selected`) or drop the entry it added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaEntry {
    pub secret: String,
    pub rc_name: String,
    pub selected: bool,
}

/// Bring one ServiceAccount's reference to `secret` in line with `selected`.
/// Returns the writes made.
pub async fn reconcile_service_account(
    client: &Client,
    cached: &ServiceAccount,
    secret: &str,
    rc_name: &str,
    selected: bool,
) -> Result<u32, Error> {
    let entry = SaEntry {
        secret: secret.into(),
        rc_name: rc_name.into(),
        selected,
    };
    let (mut results, _) = write_service_account(client, cached.clone(), std::slice::from_ref(&entry)).await;
    results.pop().unwrap_or(Ok(0))
}

/// Bring one ServiceAccount in line with every entry of `entries` in one
/// write: read, change only regcred's own entries, write back with the
/// resourceVersion precondition, and retry on conflict with a fresh read.
/// Returns each entry's result (the write counts once, for the first entry
/// that changed something) and, after a write, the object written and the
/// resourceVersion it replaced.
pub async fn write_service_account(
    client: &Client,
    current: ServiceAccount,
    entries: &[SaEntry],
) -> (Vec<Result<u32, Error>>, Option<(ServiceAccount, String)>) {
    let ns = current.namespace().unwrap_or_default();
    let name = current.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let failed = |entry: &SaEntry, verb: &'static str, cause: String| Error::PatchServiceAccount {
        namespace: ns.clone(),
        name: name.clone(),
        secret: entry.secret.clone(),
        verb,
        cause,
    };
    let all = |f: &dyn Fn(&SaEntry) -> Result<u32, Error>| entries.iter().map(f).collect::<Vec<_>>();
    let mut current = current;
    for _ in 0..SA_CONFLICT_RETRIES {
        let mut updated = None::<ServiceAccount>;
        let mut changes = Vec::with_capacity(entries.len());
        for e in entries {
            let base = updated.as_ref().unwrap_or(&current);
            let change = build::sa_change(base, &e.secret, &e.rc_name, e.selected);
            if let Some(change) = change {
                updated = Some(build::apply_sa_change(base, &e.secret, &e.rc_name, change));
            }
            changes.push(change);
        }
        let Some(updated) = updated else {
            return (all(&|_| Ok(0)), None);
        };
        match api
            .patch(
                &name,
                &patch_params(),
                &Patch::Merge(build::sa_patch(&current, &updated)),
            )
            .await
        {
            Ok(written) => {
                let first = changes.iter().position(Option::is_some);
                let results = (0..entries.len()).map(|i| Ok(u32::from(Some(i) == first))).collect();
                return (results, Some((written, current.resource_version().unwrap_or_default())));
            }
            Err(e) if is_status(&e, 404) => return (all(&|_| Ok(0)), None),
            Err(e) if is_status(&e, 409) => match api.get_opt(&name).await {
                Ok(Some(fresh)) => current = fresh,
                Ok(None) => return (all(&|_| Ok(0)), None),
                Err(e) => return (all(&|entry| Err(failed(entry, "reading", describe(&e)))), None),
            },
            Err(e) => {
                let results = entries
                    .iter()
                    .zip(&changes)
                    .map(|(entry, change)| match change {
                        // Already as this entry wants it.
                        None => Ok(0),
                        Some(SaChange::Add) => Err(failed(entry, "adding", describe(&e))),
                        Some(SaChange::Remove) => Err(failed(entry, "removing", describe(&e))),
                    })
                    .collect();
                return (results, None);
            }
        }
    }
    let cause = format!("it kept changing ({SA_CONFLICT_RETRIES} conflicts in a row); will retry");
    (all(&|entry| Err(failed(entry, "updating", cause.clone()))), None)
}

/// Remove `rc_name`'s entries for `secret` from the given ServiceAccounts
/// and delete the managed Secret `secret` in `ns` (if it is this
/// credential's). NotFound and terminating namespaces count as done.
pub async fn clean_namespace(
    client: &Client,
    rc_name: &str,
    ns: &str,
    secret: &str,
    service_accounts: &[Arc<ServiceAccount>],
) -> Result<u32, Error> {
    let mut writes = 0;
    for sa in service_accounts {
        if build::recorded_by(sa, secret, rc_name) {
            match reconcile_service_account(client, sa, secret, rc_name, false).await {
                Ok(n) => writes += n,
                // In a namespace being deleted the SA goes away with it.
                Err(_) if namespace_gone(client, ns).await => {}
                Err(e) => return Err(e),
            }
        }
    }
    let clean_failed = |e: &kube::Error| Error::Clean {
        namespace: ns.into(),
        secret: secret.into(),
        cause: describe(e),
    };
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
                Err(e) => return Err(clean_failed(&e)),
            }
        }
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(clean_failed(&e)),
    }
    Ok(writes)
}

async fn namespace_gone(client: &Client, ns: &str) -> bool {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.get_opt(ns).await {
        Ok(Some(n)) => crate::cache::is_terminating(&n),
        Ok(None) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::fixtures::{Expect, Scenario, rc};

    #[tokio::test]
    async fn a_stale_secret_is_patched_on_our_key_only_with_the_version_it_was_read_at() {
        let mut cached = build::desired_secret(&rc(), "a", b"old", Some("2026-01-01T00:00:00Z"), "fp");
        cached.metadata.resource_version = Some("41".into());
        build::cache_form(&mut cached);
        let desired = build::desired_secret(&rc(), "a", b"new", Some("2026-01-02T00:00:00Z"), "fp");
        let (client, server) = Scenario::new()
            .then(Expect::patch("/api/v1/namespaces/a/secrets/hub").reply(200, desired_echo()))
            .serve();
        let written = ensure_secret(
            &client,
            "hub",
            "uid-hub",
            &desired,
            Some(Arc::new(cached)),
            ExistingSecretPolicy::Fail,
        )
        .await
        .expect("written");
        let served = server.done().await;
        assert_eq!(written.writes, 1);
        let patch = &served[0];
        assert_eq!(patch.content_type, "application/merge-patch+json");
        assert_eq!(patch.body["metadata"]["resourceVersion"], "41");
        assert_eq!(patch.body["data"], serde_json::json!({".dockerconfigjson": "bmV3"}));
        assert!(!patch.body.to_string().contains(build::CACHED_DATA_DIGEST));
    }

    #[tokio::test]
    async fn someone_elses_change_under_the_same_credential_is_restored_and_its_editor_named() {
        let mut cached = build::desired_secret(&rc(), "a", b"forged", None, "fp");
        build::cache_form(&mut cached);
        let desired = build::desired_secret(&rc(), "a", b"new", None, "fp");
        let mut read = desired_echo();
        read.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("regcred".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    serde_json::json!({"f:metadata": {"f:labels": {"f:regcred.dev/credential": {}}}}),
                )),
                ..Default::default()
            },
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("kubectl-edit".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}}),
                )),
                ..Default::default()
            },
        ]);
        let (client, server) = Scenario::new()
            .then(Expect::get("/api/v1/namespaces/a/secrets/hub").reply(200, read))
            .then(Expect::patch("/api/v1/namespaces/a/secrets/hub").reply(200, desired_echo()))
            .serve();
        let cached = Some(Arc::new(cached));
        let written = ensure_secret(&client, "hub", "uid-hub", &desired, cached, ExistingSecretPolicy::Fail)
            .await
            .expect("written");
        server.done().await;
        let overwrite = written.overwrite.expect("the edit is reported");
        assert_eq!(
            (overwrite.namespace.as_str(), overwrite.manager.as_str()),
            ("a", "kubectl-edit")
        );
    }

    /// What [`secret_action`] decides for `existing`, in a word: the action,
    /// or the reason a refusal gives.
    fn decided(existing: &Secret, policy: ExistingSecretPolicy) -> String {
        let desired = build::desired_secret(&rc(), "a", b"new", None, "fp");
        match secret_action(existing, &desired, "hub", "uid-hub", policy) {
            SecretAction::Refuse(failed) => {
                assert_eq!(failed.namespace, "a");
                assert!(failed.message.contains("Secret a/hub"), "{}", failed.message);
                failed.reason
            }
            action => format!("{action:?}"),
        }
    }

    #[test]
    fn the_existing_secret_policy_decides_what_happens_to_a_secret_in_the_way() {
        let cached = |mut s: Secret| {
            build::cache_form(&mut s);
            s
        };
        let ours = |data: &[u8]| cached(build::desired_secret(&rc(), "a", data, None, "fp"));
        let retyped = |mut s: Secret| {
            s.type_ = Some("Opaque".into());
            s
        };
        let mut others = build::desired_secret(&rc(), "a", b"new", None, "fp");
        others
            .labels_mut()
            .insert(build::CREDENTIAL_LABEL.into(), "other".into());
        let foreign = || {
            let mut s = Secret::default();
            s.metadata.name = Some("hub".into());
            s.metadata.namespace = Some("a".into());
            s.type_ = Some("kubernetes.io/dockerconfigjson".into());
            s
        };
        let controlled_by = |uid: &str| {
            let mut s = foreign();
            s.metadata.owner_references = Some(vec![OwnerReference {
                kind: "Deployment".into(),
                name: "app".into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]);
            s
        };
        use ExistingSecretPolicy::{Adopt, Fail};
        let cases: [(&str, Secret, ExistingSecretPolicy, &str); 10] = [
            ("ours and up to date is kept", ours(b"new"), Fail, "Keep"),
            ("ours with old data is updated", ours(b"old"), Fail, "Update"),
            (
                "ours of another type is recreated",
                retyped(ours(b"new")),
                Fail,
                "Recreate",
            ),
            (
                "another RegistryCredential's is a conflict",
                cached(others.clone()),
                Adopt,
                reason::SECRET_CONFLICT,
            ),
            (
                "another RegistryCredential's is a conflict under Fail too",
                cached(others),
                Fail,
                reason::SECRET_CONFLICT,
            ),
            (
                "a foreign one under Fail is left alone",
                foreign(),
                Fail,
                reason::SECRET_EXISTS,
            ),
            ("a foreign one under Adopt is updated", foreign(), Adopt, "Update"),
            (
                "a foreign one of another type under Adopt is recreated",
                retyped(foreign()),
                Adopt,
                "Recreate",
            ),
            (
                "a foreign one another object controls is not adopted",
                controlled_by("uid-app"),
                Adopt,
                reason::SECRET_CONTROLLED_ELSEWHERE,
            ),
            (
                "a foreign one this RegistryCredential controls is adopted",
                controlled_by("uid-hub"),
                Adopt,
                "Update",
            ),
        ];
        for (name, existing, policy, want) in cases {
            assert_eq!(decided(&existing, policy), want, "{name}");
        }
    }

    fn desired_echo() -> Secret {
        build::desired_secret(&rc(), "a", b"new", None, "fp")
    }

    #[tokio::test]
    async fn an_up_to_date_secret_costs_no_request() {
        let (client, server) = Scenario::new().serve();
        let desired = build::desired_secret(&rc(), "a", b"same", None, "fp");
        let mut cached = desired.clone();
        build::cache_form(&mut cached);
        let written = ensure_secret(
            &client,
            "hub",
            "uid-hub",
            &desired,
            Some(Arc::new(cached)),
            ExistingSecretPolicy::Fail,
        )
        .await
        .expect("nothing to do");
        assert_eq!(written.writes, 0);
        assert!(server.done().await.is_empty());
    }
}
