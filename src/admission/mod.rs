//! The Pod admission webhook: a pod created where a RegistryCredential
//! targets its namespace and selects its ServiceAccount is admitted naming
//! that RegistryCredential's Secret in `spec.imagePullSecrets`, and the
//! Secret is in its namespace before the pod is: so pods applied together
//! with their namespace (GitOps, Helm) pull on their first try.
//!
//! It fails open. Every answer allows the pod; anything that goes wrong
//! (an unreadable review, the API server slow to answer) leaves it as it
//! came, and the API server itself admits pods unchanged when regcred does
//! not answer in time (`failurePolicy: Ignore`). The diagnosis and repair
//! path remains the fallback for pods admitted so.
//!
//! - [`decide`]: which Secrets a pod should name (pure);
//! - [`certs`]: the serving CA and certificate, kept in a Secret;
//! - [`server`]: HTTPS with the current certificate.
//!
//! On the admission path: the caches answer. When the Secret is in place,
//! no request reaches the API server. When it is not (a namespace created a
//! moment ago), regcred creates it first, within [`Config::write_timeout`].
//! A pod that names its own `imagePullSecrets` keeps them, first; regcred's
//! Secret is appended after them (the API server copies the ServiceAccount's
//! list only into pods that name none, so such a pod would otherwise never
//! carry it).
//!
//! In `identity: PerServiceAccount` mode a pod names its ServiceAccount's
//! own Secret, when the ServiceAccount names its identity (else nothing).
//! Admission never mints or writes for that mode: an exchange is paced and
//! may take long. It names the Secret even when it is not written yet (the
//! kubelet reads pull Secrets again at each retry, so the pod pulls once the
//! reconcile writes it) and asks for a re-sync of the namespace.

pub mod certs;
pub mod decide;
pub mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, ResourceExt};
use tracing::{debug, info, warn};

use self::decide::{NamedServiceAccount, Offer};
use crate::api::RegistryCredential;
use crate::cache::{Kept, KeptNamespace, KeptServiceAccount};
use crate::identity::PerServiceAccount;
use crate::reconcile::apply::{self, Placed};
use crate::reconcile::{Context, build};

/// The path the webhook configuration calls.
pub const PATH: &str = "/mutate-pods";

/// What admission is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// The namespace regcred runs in: never mutated.
    pub own_namespace: String,
    /// Namespaces regcred never writes into (`--excluded-namespaces`).
    pub excluded_namespaces: Vec<String>,
    /// How long admission waits for a missing Secret to be created before
    /// it answers anyway (the reference is added either way: the fan-out
    /// writes the Secret soon after, and the kubelet retries).
    pub write_timeout: Duration,
}

/// Answers AdmissionReviews from the controller's caches.
pub struct Admission {
    ctx: Arc<Context>,
    config: Config,
    /// Writes under way, by (namespace, Secret): pods of one namespace
    /// admitted at once share one write instead of racing into `409`s.
    writes: Mutex<HashMap<(String, String), SharedWrite>>,
}

/// One write's outcome, awaited by every pod that needs it: whether the pod
/// names the Secret.
type SharedWrite = Arc<OnceCell<bool>>;

/// How one review was answered, for the metrics and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Secrets added to the pod.
    Injected,
    /// The pod already names every Secret it should.
    InPlace,
    /// Not regcred's pod: no RegistryCredential targets it, or it opted out.
    NotTargeted,
    /// Something went wrong; the pod is admitted as it came.
    Error,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::InPlace => "in_place",
            Outcome::NotTargeted => "not_targeted",
            Outcome::Error => "error",
        }
    }
}

impl Admission {
    pub fn new(ctx: Arc<Context>, config: Config) -> Self {
        Self {
            ctx,
            config,
            writes: Mutex::default(),
        }
    }

    /// Answer one AdmissionReview body. Always an allowed response: a body
    /// that is not a review of a pod is answered with its uid (when it has
    /// one) and a log line, never a denial.
    pub async fn review(&self, body: &[u8]) -> AdmissionReview<DynamicObject> {
        let started = Instant::now();
        let request: AdmissionRequest<Pod> = match serde_json::from_slice::<AdmissionReview<Pod>>(body)
            .map_err(|e| e.to_string())
            .and_then(|review| {
                review
                    .try_into()
                    .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| e.to_string())
            }) {
            Ok(request) => request,
            Err(error) => {
                // The error names a field and a type, never a value.
                warn!(%error, "admission: not an AdmissionReview of a pod; allowing it unchanged");
                self.ctx.metrics.admission(Outcome::Error.label(), started.elapsed(), 0);
                return unreadable(body);
            }
        };
        let (response, outcome, calls) = self.admit(&request).await;
        self.ctx.metrics.admission(outcome.label(), started.elapsed(), calls);
        response.into_review()
    }

    /// The response to one pod's review, how it went, and the number of
    /// requests made to the API server on the way.
    async fn admit(&self, request: &AdmissionRequest<Pod>) -> (AdmissionResponse, Outcome, u32) {
        let allowed = AdmissionResponse::from(request);
        let mut calls = 0;
        let Some(pod) = request
            .object
            .as_ref()
            .filter(|_| request.operation == Operation::Create)
        else {
            return (allowed, Outcome::NotTargeted, calls);
        };
        let namespace = request
            .namespace
            .clone()
            .or_else(|| pod.namespace())
            .unwrap_or_default();
        if decide::excluded_namespace(&namespace, &self.config.own_namespace, &self.config.excluded_namespaces)
            || decide::opted_out(pod)
        {
            return (allowed, Outcome::NotTargeted, calls);
        }
        let secrets = match self.secrets_for(pod, &namespace, request.dry_run, &mut calls).await {
            Ok(secrets) => secrets,
            Err(error) => {
                warn!(namespace = %namespace, %error, "admission: reading what targets the pod failed; allowing it unchanged");
                return (allowed, Outcome::Error, calls);
            }
        };
        if secrets.is_empty() {
            return (allowed, Outcome::NotTargeted, calls);
        }
        let existing = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.as_deref());
        let Some(patch) = decide::pull_secrets_patch(existing, &secrets) else {
            return (allowed, Outcome::InPlace, calls);
        };
        match allowed.clone().with_patch(patch) {
            Ok(patched) => {
                debug!(namespace = %namespace, secrets = ?secrets, "admission: pod names regcred's Secrets");
                (patched, Outcome::Injected, calls)
            }
            Err(error) => {
                warn!(%error, "admission: encoding the patch failed; allowing the pod unchanged");
                (allowed, Outcome::Error, calls)
            }
        }
    }

    /// The Secrets a pod in `namespace` should name, created first where
    /// missing (not on a dry run). `calls` counts requests to the API server.
    async fn secrets_for(
        &self,
        pod: &Pod,
        namespace: &str,
        dry_run: bool,
        calls: &mut u32,
    ) -> Result<Vec<String>, kube::Error> {
        let credentials: Vec<Arc<RegistryCredential>> = self
            .ctx
            .credentials
            .state()
            .into_iter()
            .filter(|rc| rc.metadata.deletion_timestamp.is_none() && (issued(rc) || per_service_account(rc).is_some()))
            .collect();
        if credentials.is_empty() {
            return Ok(Vec::new());
        }
        let ns = self.namespace(namespace, calls).await?;
        if decide::opted_out(&*ns) {
            return Ok(Vec::new());
        }
        let mut offers: Vec<Offer<'_>> = credentials
            .iter()
            .map(|rc| Offer {
                credential: rc.metadata.name.as_deref().unwrap_or_default(),
                secret: build::secret_name(rc),
                target: &rc.spec.target,
                per_service_account: per_service_account(rc),
            })
            .collect();
        offers.sort_by(|a, b| a.credential.cmp(b.credential));
        let sa_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .unwrap_or("default");
        let linked = self.linked(&offers, &ns, sa_name, calls).await?;
        let named = |secret: &str| {
            pod.spec
                .as_ref()
                .and_then(|s| s.image_pull_secrets.as_ref())
                .is_some_and(|list| list.iter().any(|r| r.name == secret))
        };
        let mut secrets = Vec::new();
        let mut resync = false;
        for (offer, secret) in linked {
            let in_place = named(&secret)
                || self
                    .ctx
                    .managed_secrets
                    .get(Some(namespace), &secret)
                    .is_some_and(|s| s.credential() == Some(offer.credential));
            let link = if in_place || dry_run {
                true
            } else if offer.per_service_account.is_some() {
                // Minted by the reconcile only, at its pace: named now, written soon.
                resync = true;
                true
            } else {
                let rc = credentials
                    .iter()
                    .find(|rc| rc.metadata.name.as_deref() == Some(offer.credential))
                    .expect("every offer is of a credential");
                self.place(rc, namespace, calls).await
            };
            if link {
                secrets.push(secret);
            }
        }
        if resync {
            debug!(namespace = %namespace, "admission: a ServiceAccount's own Secret is not written yet; re-syncing the namespace");
            self.ctx.resync_namespace(namespace);
        }
        Ok(secrets)
    }

    /// The namespace as the cache keeps it, or read (created a moment ago).
    async fn namespace(&self, name: &str, calls: &mut u32) -> Result<Arc<KeptNamespace>, kube::Error> {
        if let Some(ns) = self.ctx.namespaces.get(None, name) {
            return Ok(ns);
        }
        *calls += 1;
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        Ok(Arc::new(KeptNamespace::keep(&api.get(name).await?)))
    }

    /// The offers that link a pod of ServiceAccount `sa_name` in `ns`, each
    /// with the Secret to name: the ServiceAccount as the cache keeps it,
    /// else read when an offer selects by label or needs its identity
    /// annotations, else known by its name alone.
    async fn linked<'o, 'a>(
        &self,
        offers: &'o [Offer<'a>],
        ns: &KeptNamespace,
        sa_name: &str,
        calls: &mut u32,
    ) -> Result<Vec<(&'o Offer<'a>, String)>, kube::Error> {
        let credentials_namespace = &self.ctx.credentials_namespace;
        if let Some(sa) = self.ctx.service_accounts.get(Some(&ns.name), sa_name) {
            return Ok(decide::pull_secrets(offers, credentials_namespace, ns, &*sa));
        }
        if decide::needs_sa_labels(offers) || decide::needs_sa_annotations(offers) {
            *calls += 1;
            let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &ns.name);
            if let Some(sa) = api.get_opt(sa_name).await? {
                let kept = KeptServiceAccount::keep(&sa);
                return Ok(decide::pull_secrets(offers, credentials_namespace, ns, &kept));
            }
        }
        Ok(decide::pull_secrets(
            offers,
            credentials_namespace,
            ns,
            &NamedServiceAccount(sa_name),
        ))
    }

    /// Create `rc`'s Secret in `namespace`, within the write timeout; whether
    /// the pod should name it: yes when it is there or may yet be (a slow or
    /// failed write: the fan-out writes it soon after), no when a Secret of
    /// that name is someone else's.
    async fn place(&self, rc: &RegistryCredential, namespace: &str, calls: &mut u32) -> bool {
        let key = (namespace.to_string(), build::secret_name(rc));
        let write = self
            .writes
            .lock()
            .expect("admission writes lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut wrote = false;
        let link = *write
            .get_or_init(|| {
                wrote = true;
                self.write(rc, namespace)
            })
            .await;
        if wrote {
            // Counted as one: a create, or a create and the read of what was
            // in the way (a standby also reads one vouched copy of the credential).
            *calls += 1;
            // Later pods find the Secret in the cache, or try again.
            let mut writes = self.writes.lock().expect("admission writes lock");
            if writes.get(&key).is_some_and(|w| Arc::ptr_eq(w, &write)) {
                writes.remove(&key);
            }
        }
        link
    }

    /// The one write [`Admission::place`] waits for, within the write timeout.
    async fn write(&self, rc: &RegistryCredential, namespace: &str) -> bool {
        let started = Instant::now();
        let rc_name = rc.name_any();
        let work = async {
            let Some(desired) = self.ctx.desired_secret(rc, namespace).await else {
                return Err("no credential to copy yet".to_string());
            };
            apply::create_if_missing(&self.ctx.client, &rc_name, &desired)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.config.write_timeout, work).await {
            Ok(Ok(Placed::Created)) => {
                info!(namespace = %namespace, registrycredential = %rc_name, elapsed_ms = started.elapsed().as_millis() as u64,
                      "admission: wrote the Secret before admitting the pod");
                true
            }
            Ok(Ok(Placed::Ours)) => true,
            Ok(Ok(Placed::Foreign)) => {
                debug!(namespace = %namespace, registrycredential = %rc_name, "admission: a Secret of that name is not regcred's; not linked");
                false
            }
            Ok(Err(error)) => {
                warn!(namespace = %namespace, registrycredential = %rc_name, %error,
                      "admission: could not write the Secret; the pod names it, the fan-out writes it");
                true
            }
            Err(_) => {
                warn!(namespace = %namespace, registrycredential = %rc_name, timeout_ms = self.config.write_timeout.as_millis() as u64,
                      "admission: writing the Secret timed out; the pod names it, the fan-out writes it");
                true
            }
        }
    }
}

/// A RegistryCredential whose Secrets hold a credential: status vouches for
/// one. Before that, the fan-out links nothing, and neither does admission
/// (except in `identity: PerServiceAccount` mode, which has no shared
/// credential: there each ServiceAccount's own Secret is named as soon as
/// it names its identity).
fn issued(rc: &RegistryCredential) -> bool {
    rc.status.as_ref().is_some_and(|s| s.credential_digest.is_some())
}

/// The settings of `identity: PerServiceAccount` mode, when `rc` is in it.
fn per_service_account(rc: &RegistryCredential) -> Option<PerServiceAccount> {
    rc.spec.provider.selected().and_then(PerServiceAccount::of)
}

/// The answer to a body that is not a readable review: allowed, with the
/// request's uid when one can be found, so the API server can match it.
pub fn unreadable(body: &[u8]) -> AdmissionReview<DynamicObject> {
    let uid = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/request/uid").and_then(|u| u.as_str()).map(str::to_string))
        .unwrap_or_default();
    let mut response = AdmissionResponse::invalid("not an AdmissionReview of a pod");
    response.allowed = true;
    response.uid = uid;
    response.into_review()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_review_is_allowed_with_its_uid() {
        for (body, uid) in [
            (&b"not json"[..], ""),
            (br#"{"request": {"uid": "u-1", "object": 3}}"#, "u-1"),
            (br#"{"apiVersion": "admission.k8s.io/v1"}"#, ""),
        ] {
            let review = unreadable(body);
            let response = review.response.expect("a response");
            assert!(response.allowed, "{}", String::from_utf8_lossy(body));
            assert_eq!(response.uid, uid);
            assert!(response.patch.is_none());
        }
    }
}
