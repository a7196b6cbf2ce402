//! The *fan-out* step: the Secret into every planned namespace and a
//! reference from every selected ServiceAccount there, then cleaning what
//! the plan says should go.
//!
//! A ServiceAccount entry is removed only when the ServiceAccount or its
//! namespace stops being selected, or the RegistryCredential is deleted;
//! never because a Secret write failed (a denied, throttled or conflicting
//! write must not strip pods of what they pull with).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use super::apply;
use super::build;
use super::changes::{Before, Changes};
use super::sa_writes::SaWrites;
use crate::api::conditions::reason;
use crate::api::{FailedNamespace, RegistryCredential};
use crate::cache::{Cache, KeptSecret, KeptServiceAccount};
use crate::renewal;
use crate::targets::{self, TargetPlan};

/// Namespaces written at once.
const CONCURRENCY: usize = 16;
/// How long a same-named Secret that regcred does not manage is taken as
/// still there, without asking the API server again (it is not watched).
const FOREIGN_RECHECK: Duration = Duration::from_secs(5 * 60);

/// Namespaces where a Secret of regcred's name belongs to someone else, for
/// one RegistryCredential, by (generation, namespace): every reconcile would
/// otherwise cost a create and a read for each of them.
#[derive(Default)]
pub struct Foreign(HashMap<(i64, String), (Timestamp, FailedNamespace)>);

impl Foreign {
    pub fn get(&self, key: &(i64, String), now: Timestamp) -> Option<FailedNamespace> {
        self.0
            .get(key)
            .filter(|(at, _)| now < renewal::add(*at, FOREIGN_RECHECK))
            .map(|(_, f)| f.clone())
    }

    pub fn put(&mut self, key: (i64, String), now: Timestamp, failure: FailedNamespace) {
        self.0.insert(key, (now, failure));
    }
}

/// Where each RegistryCredential's [`Foreign`] is kept, by uid.
pub trait Foreigns: Sync {
    /// `f` over the foreign namespaces of `uid`, none if none are kept yet.
    fn foreign<T>(&self, uid: &str, f: impl FnOnce(&mut Foreign) -> T) -> T;
}

/// What the fan-out step reads and writes with.
pub struct Env<'a, K> {
    pub client: &'a Client,
    pub managed_secrets: &'a Cache<KeptSecret>,
    pub service_accounts: &'a Cache<KeptServiceAccount>,
    pub foreign: &'a K,
    pub sa_writes: &'a Arc<SaWrites>,
    /// Where each Secret write that changed a namespace's credential is recorded.
    pub changes: &'a Changes,
}

/// What happened across all namespaces.
#[derive(Debug, Default)]
pub struct FanOut {
    pub targeted: u32,
    /// Namespaces holding the current Secret with every selected ServiceAccount patched.
    pub synced: u32,
    pub failed: Vec<FailedNamespace>,
    pub sa_patched: u32,
    pub sa_failed: u32,
    pub writes: u32,
    /// Stale Secrets that could not be cleaned.
    pub clean_errors: Vec<apply::Error>,
    /// The outcome in each namespace this pass looked at.
    pub outcomes: BTreeMap<String, NsOutcome>,
    /// Namespaces this pass planned to write, and Secrets it planned to clean.
    pub looked_at: usize,
    pub stale: usize,
    /// Others' changes to this credential's Secrets that this pass undid.
    pub overwrites: Vec<super::tamper::Overwrite>,
}

impl FanOut {
    /// The counts over `outcomes` (every targeted namespace, whichever pass
    /// last looked at it), with this pass's writes and cleaning errors.
    pub fn tally(outcomes: &BTreeMap<String, NsOutcome>, writes: u32, clean_errors: Vec<apply::Error>) -> Self {
        let mut out = FanOut {
            targeted: outcomes.len() as u32,
            writes,
            clean_errors,
            ..Default::default()
        };
        for o in outcomes.values() {
            out.sa_patched += o.sa_patched;
            out.sa_failed += o.sa_failed;
            match &o.failure {
                Some(f) => out.failed.push(f.clone()),
                None if o.synced => out.synced += 1,
                None => {}
            }
        }
        out
    }
}

/// What happened in one namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NsOutcome {
    pub failure: Option<FailedNamespace>,
    /// It holds the current Secret and every selected ServiceAccount references it.
    pub synced: bool,
    pub sa_patched: u32,
    pub sa_failed: u32,
}

/// Write `desired` (a Secret per namespace, `None` while no credential is
/// held) into the plan's namespaces and clean the plan's leftovers.
pub async fn run(
    env: &Env<'_, impl Foreigns>,
    rc: &RegistryCredential,
    plan: &TargetPlan,
    desired: Option<&(dyn Fn(&str) -> Secret + Sync)>,
    now: Timestamp,
) -> FanOut {
    let secret_name = build::secret_name(rc);
    let cleaned: std::collections::BTreeSet<&str> = plan.clean.iter().map(|(ns, _)| ns.as_str()).collect();
    // Records, not objects: each namespace's are made objects when it is
    // written, so a full pass at 10,000 namespaces never holds them all at once.
    let mut sas_by_ns: HashMap<String, Vec<Arc<KeptServiceAccount>>> = HashMap::new();
    for sa in env.service_accounts.state() {
        let ns = &*sa.namespace;
        if plan.write.contains(ns) || cleaned.contains(ns) {
            sas_by_ns.entry(ns.to_string()).or_default().push(sa);
        }
    }
    let outcomes: Vec<(String, Outcome)> = futures::stream::iter(plan.write.iter().cloned())
        .map(|ns| {
            let sas = sas_by_ns.get(&ns).cloned().unwrap_or_default();
            let secret = desired.map(|d| d(&ns));
            let secret_name = &secret_name;
            async move { (ns.clone(), namespace(env, rc, ns, secret_name, secret, sas, now).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut writes = 0;
    let mut overwrites = Vec::new();
    let outcomes: BTreeMap<String, NsOutcome> = outcomes
        .into_iter()
        .map(|(ns, o)| {
            writes += o.writes;
            overwrites.extend(o.overwrite);
            let synced = o.failure.is_none() && desired.is_some();
            let outcome = NsOutcome {
                failure: o.failure,
                synced,
                sa_patched: o.sa_patched,
                sa_failed: o.sa_failed,
            };
            (ns, outcome)
        })
        .collect();
    let mut out = FanOut::tally(&outcomes, writes, Vec::new());
    out.outcomes = outcomes;
    out.overwrites = overwrites;
    let rc_name = rc.name_any();
    for (ns, secret) in &plan.clean {
        let sas = objects(sas_by_ns.get(ns));
        match apply::clean_namespace(env.client, &rc_name, ns, secret, &sas).await {
            Ok(n) => {
                out.writes += n;
                debug!(namespace = %ns, secret = %secret, writes = n, "cleaned namespace that stopped matching");
            }
            Err(e) => {
                warn!(error = %e, "cleaning failed");
                out.clean_errors.push(e);
            }
        }
    }
    out
}

/// The ServiceAccounts of one namespace as objects, for the write steps.
fn objects(kept: Option<&Vec<Arc<KeptServiceAccount>>>) -> Vec<Arc<ServiceAccount>> {
    kept.into_iter().flatten().map(|sa| Arc::new(sa.object())).collect()
}

#[derive(Default)]
struct Outcome {
    failure: Option<FailedNamespace>,
    sa_patched: u32,
    sa_failed: u32,
    writes: u32,
    overwrite: Option<super::tamper::Overwrite>,
}

async fn namespace(
    env: &Env<'_, impl Foreigns>,
    rc: &RegistryCredential,
    ns: String,
    secret_name: &str,
    desired: Option<Secret>,
    sas: Vec<Arc<KeptServiceAccount>>,
    now: Timestamp,
) -> Outcome {
    let mut out = Outcome::default();
    let secret_ready = place_secret(env, rc, &ns, secret_name, desired.as_ref(), now, &mut out).await;
    let first_error = link_service_accounts(env, rc, secret_name, &sas, secret_ready, &mut out).await;
    if out.failure.is_none()
        && let Some(e) = first_error
    {
        out.failure = Some(FailedNamespace {
            namespace: ns,
            reason: reason::SERVICE_ACCOUNT_PATCH_FAILED.into(),
            message: e.to_string(),
        });
    }
    out
}

/// The namespace's Secret: written where `desired` (none while no
/// credential is held: whatever is there stays). Whether regcred's Secret is
/// in place; a failure to place it goes into `out`.
async fn place_secret(
    env: &Env<'_, impl Foreigns>,
    rc: &RegistryCredential,
    ns: &str,
    secret_name: &str,
    desired: Option<&Secret>,
    now: Timestamp,
    out: &mut Outcome,
) -> bool {
    let rc_name = rc.name_any();
    let cached = env
        .managed_secrets
        .get(Some(ns), secret_name)
        .map(|s| Arc::new(s.object()));
    let uid = rc.uid().unwrap_or_default();
    let foreign_key = (rc.metadata.generation.unwrap_or_default(), ns.to_string());
    let known_foreign = || env.foreign.foreign(&uid, |f| f.get(&foreign_key, now));
    let Some(desired) = desired else {
        return cached.is_some_and(|s| build::is_managed_by(&s, &rc_name));
    };
    if cached.is_none()
        && let Some(failure) = known_foreign()
    {
        out.failure = Some(failure);
        return false;
    }
    let policy = rc.spec.target.existing_secret_policy;
    let before = Before::of(cached.as_deref());
    let _writing = env.changes.writing(ns);
    match apply::ensure_secret(env.client, &rc_name, &uid, desired, cached, policy).await {
        Ok(written) => {
            if written.writes > 0 {
                env.changes.secret_written(&rc_name, before, desired, Timestamp::now());
            }
            out.writes += written.writes;
            out.overwrite = written.overwrite;
            true
        }
        Err(f) => {
            if [
                reason::SECRET_EXISTS,
                reason::SECRET_CONFLICT,
                reason::SECRET_CONTROLLED_ELSEWHERE,
            ]
            .contains(&f.reason.as_str())
            {
                // A reported state, not an error.
                debug!(namespace = %f.namespace, message = %f.message, "namespace not synced");
                env.foreign
                    .foreign(&uid, |foreign| foreign.put(foreign_key, now, f.clone()));
            } else {
                warn!(namespace = %f.namespace, reason = %f.reason, message = %f.message, "namespace not synced");
            }
            out.failure = Some(f);
            false
        }
    }
}

/// Add or drop the entry of each of the namespace's ServiceAccounts that
/// should change; the first write error, if any.
async fn link_service_accounts(
    env: &Env<'_, impl Foreigns>,
    rc: &RegistryCredential,
    secret_name: &str,
    sas: &[Arc<KeptServiceAccount>],
    secret_ready: bool,
    out: &mut Outcome,
) -> Option<apply::Error> {
    let rc_name = rc.name_any();
    // Each ServiceAccount as the cache holds it now rather than as the pass
    // found it: a pass over thousands of namespaces takes seconds, and a
    // copy that old loses to another RegistryCredential's write with 409
    // Conflict (and costs a read). One that is gone has nothing to patch.
    let current: Vec<Arc<KeptServiceAccount>> = sas
        .iter()
        .filter_map(|sa| env.service_accounts.get(Some(&sa.namespace), &sa.name))
        .collect();
    let mut first_error = None;
    for sa in &objects(Some(&current)) {
        let selected = targets::service_account_selected(&rc.spec.target.service_accounts, &**sa);
        // A selected ServiceAccount keeps what it has until the Secret is in
        // place: a failed write must not strip its reference.
        if selected && !secret_ready {
            continue;
        }
        if !selected && !build::recorded_by(sa, secret_name, &rc_name) {
            continue;
        }
        let entry = apply::SaEntry {
            secret: secret_name.into(),
            rc_name: rc_name.clone(),
            selected,
        };
        match env.sa_writes.write(env.client, sa, entry).await {
            Ok(n) => {
                out.writes += n;
                if selected {
                    out.sa_patched += 1;
                }
            }
            Err(e) => {
                out.sa_failed += 1;
                warn!(namespace = %sa.metadata.namespace.as_deref().unwrap_or_default(), error = %e, "ServiceAccount not patched");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{Expect, Scenario};
    use super::*;
    use crate::cache::Kept;

    fn sa(rv: &str) -> ServiceAccount {
        let mut sa = regcred_testenv::objects::service_account("default", &[]);
        sa.metadata.namespace = Some("a".into());
        sa.metadata.resource_version = Some(rv.into());
        sa
    }

    /// A pass takes its list of ServiceAccounts at its start; by the time it
    /// reaches a namespace, another credential's write may have moved the
    /// ServiceAccount on. The write starts from the cache's copy then, not
    /// the pass's, so its resourceVersion precondition holds.
    #[tokio::test]
    async fn a_service_account_is_written_from_the_caches_current_copy() {
        let (client, server) = Scenario::new()
            .then(Expect::post("/api/v1/namespaces/a/secrets").reply_with(|body| (200, body.clone())))
            .then(Expect::patch("/api/v1/namespaces/a/serviceaccounts/default").reply(200, sa("3")))
            .serve();
        let rc = super::super::fixtures::rc();
        let service_accounts = Cache::<KeptServiceAccount>::of([sa("2")]);
        let changes = Changes::default();
        let env = Env {
            client: &client,
            managed_secrets: &Cache::of([]),
            service_accounts: &service_accounts,
            foreign: &super::super::state::Memory::default(),
            sa_writes: &Arc::new(SaWrites::default()),
            changes: &changes,
        };
        let desired = build::desired_secret(&rc, "a", b"{}", None, "sha256:0");
        let started = Timestamp::now();
        let taken_at_start = vec![Arc::new(KeptServiceAccount::keep(&sa("1")))];
        let out = namespace(
            &env,
            &rc,
            "a".into(),
            "hub",
            Some(desired),
            taken_at_start,
            Timestamp::now(),
        )
        .await;
        let seen = server.done().await;
        assert_eq!(out.failure, None);
        assert_eq!((out.writes, out.sa_patched), (2, 1));
        let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
        assert_eq!(methods, ["POST", "PATCH"]);
        assert_eq!(
            seen[1].body["metadata"]["resourceVersion"], "2",
            "the cache's version, not the pass's"
        );
        let recorded = changes.since("a", "hub", started);
        assert_eq!(recorded.len(), 1, "the Secret's creation, for the diagnosis");
        assert_eq!(recorded[0].kind, super::super::changes::ChangeKind::Created);
    }
}
