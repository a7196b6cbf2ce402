//! `identity: PerServiceAccount` at scale (issue 22): one ECR
//! RegistryCredential in that mode over N namespaces, each `default`
//! ServiceAccount annotated with one of `identity_roles` IAM roles (role `k`
//! in account `k`, round robin), against moto (real, through the testenv's
//! counting proxy) for STS and ECR, the operator at its default pacing
//! (ECR: 50 exchanges/s, a burst of 10).
//!
//! Measured: the full pass (RC applied → every `<rc>-default` Secret seen by
//! the harness's watch and status `identities.valid = N`), the exchanges it
//! made (STS `AssumeRoleWithWebIdentity`, ECR `GetAuthorizationToken`, counted
//! by the proxy), a renewal of every credential (a `renewBefore` change: a new
//! fingerprint, so every Secret is due), a restart (nothing is due: no
//! exchange, no write), RSS and CPU. The floor is a plain client (its own
//! user) doing the same work at the operator's concurrency: per
//! ServiceAccount a TokenRequest, the exchange against the same moto (STS by
//! plain HTTP; ECR with a syntactically valid but unsigned SigV4 header,
//! which moto does not check) in a slot of the same pacing (50/s after a
//! burst of 10), a Secret create and a ServiceAccount merge patch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use regcred::api::RegistryCredential;
use regcred::reconcile::build;
use regcred_testenv::fakes::moto::Moto;
use regcred_testenv::objects;
use serde_json::json;

use crate::config::Config;
use crate::report::Row;
use crate::scenario::{Outcome, ops, progress, settle};
use crate::world::{FLOOR_USER, OPERATOR_USER, World, names};

/// The RegistryCredential; its Secrets are `ecr-default`.
const RC: &str = "ecr";
/// The floor's Secret name, as long as the operator's.
const FLOOR_SECRET: &str = "flr-default";
/// The operator's Secret for each `default` ServiceAccount.
const SECRET: &str = "ecr-default";
/// The operator's default ECR pacing (src/reconcile/pace.rs) and burst.
const RATE: f64 = 50.0;
const BURST: usize = 10;
/// Exchanges in flight at once in the operator (src/reconcile/workload.rs `CONCURRENCY`).
const CONCURRENCY: usize = 16;
const RATIO: f64 = 1.5;
const RSS_MIB: f64 = 60.0;
const REGION: &str = "us-east-1";
const SYSTEM_NAMESPACES: [&str; 5] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "regcred-system",
];

/// Role `k`: `arn:aws:iam::<account k>:role/team-k`.
fn role(k: usize) -> String {
    format!("arn:aws:iam::{:012}:role/team-{k}", 100_000_000_000u64 + k as u64)
}

fn rc_spec(moto: &Moto) -> serde_json::Value {
    json!({
        "provider": {"ecr": {
            "region": REGION,
            "identity": "PerServiceAccount",
            "endpointUrl": moto.url(),
            "stsEndpointUrl": moto.url(),
        }},
        "target": {"namespaces": {"exclude": SYSTEM_NAMESPACES}},
        "healthCheck": {"mode": "Disabled"},
    })
}

fn rc_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("regcred.dev", "v1alpha1", "RegistryCredential");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "registrycredentials"),
    )
}

/// STS and ECR calls moto has answered so far.
#[derive(Clone, Copy, Debug, Default)]
struct Exchanges {
    sts: usize,
    ecr: usize,
}

impl Exchanges {
    fn of(moto: &Moto) -> Self {
        Self {
            sts: moto.sts_calls("AssumeRoleWithWebIdentity"),
            ecr: moto.ecr_token_calls(),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            sts: self.sts - before.sts,
            ecr: self.ecr - before.ecr,
        }
    }
}

/// What the harness's watches saw of the operator's Secrets and links.
#[derive(Default)]
struct Watched {
    /// The fingerprint annotation of each namespace's `ecr-default`.
    fingerprints: HashMap<String, String>,
    last_secret: Option<Instant>,
    /// Namespaces whose `default` ServiceAccount references `ecr-default`.
    linked: HashSet<String>,
    first_link: Option<Instant>,
    last_link: Option<Instant>,
}

type SeenState = Arc<Mutex<Watched>>;

/// Watches of the operator's Secrets and of the `default` ServiceAccounts;
/// they stop on drop.
struct Seen {
    state: SeenState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Seen {
    async fn start(client: &Client) -> Self {
        let shared = SeenState::default();
        let selector = format!("{}={RC}", build::CREDENTIAL_LABEL);
        let secrets = watcher::watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(&selector),
        );
        let state = shared.clone();
        let secrets = tokio::spawn(async move {
            let mut stream = std::pin::pin!(secrets);
            while let Some(ev) = stream.next().await {
                let mut s = state.lock().expect("seen lock");
                match ev {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let fp = o.annotations().get(build::FINGERPRINT_ANNOTATION).cloned();
                        s.fingerprints
                            .insert(o.namespace().unwrap_or_default(), fp.unwrap_or_default());
                        s.last_secret = Some(Instant::now());
                    }
                    Ok(Event::Delete(o)) => {
                        s.fingerprints.remove(&o.namespace().unwrap_or_default());
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("bench: identity Secret watch error (retrying): {e}"),
                }
            }
        });
        let sas = watcher::watcher(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields("metadata.name=default"),
        );
        let state = shared.clone();
        let links = tokio::spawn(async move {
            let mut stream = std::pin::pin!(sas);
            while let Some(ev) = stream.next().await {
                let mut s = state.lock().expect("seen lock");
                match ev {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let ns = o.namespace().unwrap_or_default();
                        let linked = objects::pull_secret_names(&o).iter().any(|n| n == SECRET);
                        if linked && s.linked.insert(ns) {
                            let now = Some(Instant::now());
                            s.first_link = s.first_link.or(now);
                            s.last_link = now;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("bench: ServiceAccount watch error (retrying): {e}"),
                }
            }
        });
        Self {
            state: shared,
            tasks: vec![secrets, links],
        }
    }

    /// Secrets seen whose fingerprint is not `old`, when the last change was
    /// seen, and how many ServiceAccounts were linked then.
    fn count_not(&self, old: &str) -> (usize, Option<Instant>, usize) {
        let s = self.state.lock().expect("seen lock");
        let count = s.fingerprints.values().filter(|fp| fp.as_str() != old).count();
        (count, s.last_secret, s.linked.len())
    }

    /// Linked ServiceAccounts, and when the first and the last link were seen.
    fn links(&self) -> (usize, Option<Instant>, Option<Instant>) {
        let s = self.state.lock().expect("seen lock");
        (s.linked.len(), s.first_link, s.last_link)
    }

    fn any_fingerprint(&self) -> String {
        let s = self.state.lock().expect("seen lock");
        s.fingerprints.values().next().cloned().unwrap_or_default()
    }
}

/// How one pass went, as the harness saw it.
struct Pass {
    /// The last Secret (of a fingerprint other than the old one) seen.
    secrets_at: Instant,
    /// ServiceAccounts linked when the last Secret was seen.
    linked_then: usize,
    /// Status said `valid = n` for the pass's generation (and, when asked,
    /// every ServiceAccount was linked).
    done_at: Instant,
}

/// Wait until every Secret carries a fingerprint other than `old` (as the
/// watch saw it), status says `valid = n` for generation `generation`, and,
/// with `links`, every `default` ServiceAccount references its Secret.
async fn wait_pass(
    admin: &Client,
    seen: &Seen,
    (old, generation, links): (&str, i64, bool),
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Pass> {
    let api = rc_api(admin);
    let deadline = Instant::now() + timeout;
    let mut secrets: Option<(Instant, usize)> = None;
    loop {
        let (count, last, linked) = seen.count_not(old);
        if secrets.is_none() && count >= n {
            secrets = last.map(|at| (at, linked));
        }
        let rc = api.get(RC).await?;
        let status = &rc.data["status"];
        let valid = status["identities"]["valid"].as_u64().unwrap_or(0) as usize;
        let all_linked = !links || seen.links().0 >= n;
        if let Some((secrets_at, linked_then)) = secrets
            && valid == n
            && all_linked
            && status["observedGeneration"].as_i64() == Some(generation)
        {
            return Ok(Pass {
                secrets_at,
                linked_then,
                done_at: Instant::now(),
            });
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after {timeout:?}: {count}/{n} Secrets seen, {} ServiceAccounts linked, status identities {}",
            seen.links().0,
            status["identities"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Namespace `ns` with its `default` ServiceAccount annotated with `role`.
async fn create_tenant(client: Client, ns: String, role: String) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &objects::namespace(&ns, &[]))
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    let mut sa = objects::service_account("default", &[]);
    sa.metadata.annotations = Some([(regcred::identity::AWS_ROLE_ANNOTATION.to_string(), role)].into());
    Api::<ServiceAccount>::namespaced(client, &ns)
        .create(&PostParams::default(), &sa)
        .await
        .with_context(|| format!("creating ServiceAccount {ns}/default"))?;
    Ok(())
}

/// The per-ServiceAccount identity rows.
pub async fn run(cfg: &Config, out: &mut Outcome) -> anyhow::Result<()> {
    let n = cfg.identity_namespaces;
    let roles = cfg.identity_roles.max(1);
    let scn = |what: &str| format!("per-SA identity, {what}, {n} SAs / {n} ns");
    let w = World::start().await?;
    let moto = Moto::start().await.context("moto (make tools installs it)")?;
    let namespaces = names("tenant", n);
    let started = Instant::now();
    futures::stream::iter(namespaces.iter().enumerate())
        .map(|(i, ns)| create_tenant(w.admin.clone(), ns.clone(), role(i % roles)))
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    eprintln!(
        "bench: {n} namespaces with an annotated default ServiceAccount ({roles} roles) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let seen = Seen::start(&w.admin).await;

    progress(&format!("per-ServiceAccount floor at {n} ServiceAccounts"));
    let floor_client = w.client_for(FLOOR_USER).await?;
    let f0 = Exchanges::of(&moto);
    let m0 = w.audit.mark();
    let floor_time = floor(&floor_client, &moto, &namespaces).await?;
    let floor_ex = Exchanges::of(&moto).since(f0);
    settle(1.0).await;
    let floor_req = w.audit.count(m0, w.audit.mark(), FLOOR_USER)?;

    progress(&format!("per-ServiceAccount pass at {n} ServiceAccounts"));
    let mut op = w.start_operator(&cfg.operator).await?;
    settle(2.0).await;
    let before = op.sample()?;
    let e0 = Exchanges::of(&moto);
    let a0 = w.audit.mark();
    let timeout = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    let t0 = Instant::now();
    let rc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
        "metadata": {"name": RC}, "spec": rc_spec(&moto),
    }))?;
    rc_api(&w.admin).create(&PostParams::default(), &rc).await?;
    let pass = wait_pass(&w.admin, &seen, ("", 1, true), n, timeout).await;
    settle(3.0).await;
    let after = op.sample()?;
    let pass_ex = Exchanges::of(&moto).since(e0);
    let pass_req = w.audit.count(a0, w.audit.mark(), OPERATOR_USER)?;
    let rows = PassRows {
        n,
        scn: scn("full pass"),
    };
    match &pass {
        Ok(p) => {
            let (secrets, status) = (p.secrets_at - t0, p.done_at - t0);
            let (_, first_link, last_link) = seen.links();
            let at = |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
            out.rows.push(
                Row::new(
                    &rows.scn,
                    format!("RC applied → {n} Secrets + SA links + status valid={n}"),
                    status.as_secs_f64(),
                    "s",
                )
                .reference("plain client + paced exchanges", floor_time.as_secs_f64())
                .target(
                    format!("≤ {RATIO}× floor"),
                    status.as_secs_f64() / floor_time.as_secs_f64() <= RATIO,
                )
                .note(format!(
                    "last Secret seen by the harness's watch at {:.2} s, status valid={n} and every link at {:.2} s; \
                     {roles} roles in {roles} accounts round robin; pacing bound alone {:.1} s ({n} exchanges at \
                     {RATE}/s after a burst of {BURST}); floor: {} STS + {} ECR calls, {}",
                    secrets.as_secs_f64(),
                    status.as_secs_f64(),
                    n.saturating_sub(BURST) as f64 / RATE,
                    floor_ex.sts,
                    floor_ex.ecr,
                    ops(&floor_req)
                )),
            );
            out.rows.push(
                Row::new(
                    &rows.scn,
                    "ServiceAccounts linked when the last Secret was seen",
                    p.linked_then as f64,
                    "count",
                )
                .note(format!(
                    "first SA link seen at {:.2} s, last at {:.2} s after the RC was applied (the floor links each \
                     ServiceAccount right after its Secret)",
                    at(first_link),
                    at(last_link)
                )),
            );
        }
        Err(e) => out.rows.push(Row::failed(
            &rows.scn,
            "RC applied → Secrets + status valid",
            format!("{e:#}"),
        )),
    }
    rows.exchanges(out, pass_ex, Some(n), &pass_req);
    out.rows.push(Row::new(
        &rows.scn,
        "operator CPU, RC applied to 3 s after",
        after.cpu_seconds - before.cpu_seconds,
        "CPU s",
    ));
    out.rows.push(
        Row::new(&rows.scn, "operator RSS after the pass", after.rss_mib(), "MiB")
            .target(format!("< {RSS_MIB} MiB"), after.rss_mib() < RSS_MIB)
            .note(format!(
                "RSS {:.1} MiB before the RegistryCredential (caches warm)",
                before.rss_mib()
            )),
    );
    pass.map_err(|e| anyhow::anyhow!("per-ServiceAccount pass at {n}: {e:#}"))?;

    renewal(cfg, &w, &moto, &seen, &mut op, n, out).await?;
    op.save_logs(&cfg.logs_dir.join(format!("operator-identity-{n}.log")));
    op.stop();
    restart(cfg, &w, &moto, n, out).await?;
    out.details.insert(
        format!("identity_{n}"),
        json!({"roles": roles, "floor_requests": floor_req, "pass_requests": pass_req,
               "pass_exchanges": {"sts": pass_ex.sts, "ecr": pass_ex.ecr},
               "floor_exchanges": {"sts": floor_ex.sts, "ecr": floor_ex.ecr}}),
    );
    Ok(())
}

struct PassRows {
    n: usize,
    scn: String,
}

impl PassRows {
    /// The exchange rows of one window; `want`: the count each should be.
    fn exchanges(&self, out: &mut Outcome, ex: Exchanges, want: Option<usize>, req: &crate::audit::Counts) {
        for (what, count) in [
            ("STS AssumeRoleWithWebIdentity calls", ex.sts),
            ("ECR GetAuthorizationToken calls", ex.ecr),
        ] {
            let mut row = Row::new(&self.scn, what, count as f64, "count");
            if let Some(want) = want {
                row = row.target(format!("= {want}"), count == want);
            }
            out.rows.push(row);
        }
        let (secrets, sas) = (req.writes("secrets"), req.writes("serviceaccounts"));
        out.rows.push(
            Row::new(
                &self.scn,
                "operator Secret + SA writes",
                (secrets + sas) as f64,
                "count",
            )
            .note(format!(
                "{secrets} Secret, {sas} ServiceAccount writes at {} SAs; operator: {}",
                self.n,
                ops(req)
            )),
        );
    }
}

/// Every credential due at once (a `renewBefore` change changes the
/// fingerprint): the second pass.
async fn renewal(
    _cfg: &Config,
    w: &World,
    moto: &Moto,
    seen: &Seen,
    op: &mut crate::world::RunningOperator,
    n: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    progress(&format!("per-ServiceAccount renewal at {n} ServiceAccounts"));
    let rows = PassRows {
        n,
        scn: format!("per-SA identity, renewal, {n} SAs / {n} ns"),
    };
    let old = seen.any_fingerprint();
    let before = op.sample()?;
    let e0 = Exchanges::of(moto);
    let a0 = w.audit.mark();
    let t0 = Instant::now();
    let patch = json!({"spec": {"renewBefore": "20m"}});
    rc_api(&w.admin)
        .patch(RC, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let timeout = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    let pass = wait_pass(&w.admin, seen, (&old, 2, false), n, timeout).await;
    settle(3.0).await;
    let after = op.sample()?;
    let ex = Exchanges::of(moto).since(e0);
    let req = w.audit.count(a0, w.audit.mark(), OPERATOR_USER)?;
    match &pass {
        Ok(p) => out.rows.push(
            Row::new(
                &rows.scn,
                format!("renewBefore changed → {n} Secrets renewed + status valid={n}"),
                (p.done_at - t0).as_secs_f64(),
                "s",
            )
            .note(format!(
                "last renewed Secret seen at {:.2} s; pacing bound alone {:.1} s",
                (p.secrets_at - t0).as_secs_f64(),
                n.saturating_sub(BURST) as f64 / RATE
            )),
        ),
        Err(e) => out.rows.push(Row::failed(&rows.scn, "renewal", format!("{e:#}"))),
    }
    rows.exchanges(out, ex, Some(n), &req);
    let sa_writes = req.writes("serviceaccounts");
    out.rows
        .push(Row::new(&rows.scn, "operator SA writes", sa_writes as f64, "count").target("0", sa_writes == 0));
    out.rows.push(Row::new(
        &rows.scn,
        "operator CPU, renewal to 3 s after",
        after.cpu_seconds - before.cpu_seconds,
        "CPU s",
    ));
    pass.map(|_| ())
        .map_err(|e| anyhow::anyhow!("per-ServiceAccount renewal at {n}: {e:#}"))
}

/// A fresh operator with every credential in place: no exchange, no write.
async fn restart(cfg: &Config, w: &World, moto: &Moto, n: usize, out: &mut Outcome) -> anyhow::Result<()> {
    progress(&format!("per-ServiceAccount restart at {n} ServiceAccounts"));
    let scn = format!("per-SA identity, restart, {n} SAs / {n} ns");
    let e0 = Exchanges::of(moto);
    let a0 = w.audit.mark();
    let mut op = w.spawn_operator(&cfg.operator)?;
    let ready = op.wait_ready(Duration::from_secs(120)).await?;
    settle(15.0).await;
    let s = op.sample()?;
    let ex = Exchanges::of(moto).since(e0);
    let req = w.audit.count(a0, w.audit.mark(), OPERATOR_USER)?;
    let writes = req.writes("secrets") + req.writes("serviceaccounts");
    out.rows.push(
        Row::new(
            &scn,
            "exchanges (STS + ECR) in 15 s after ready",
            (ex.sts + ex.ecr) as f64,
            "count",
        )
        .target("0", ex.sts + ex.ecr == 0)
        .note(format!(
            "ready {:.2} s after start; {} STS, {} ECR calls; operator: {}",
            ready.as_secs_f64(),
            ex.sts,
            ex.ecr,
            ops(&req)
        )),
    );
    out.rows
        .push(Row::new(&scn, "operator Secret/SA write requests", writes as f64, "count").target("0", writes == 0));
    out.rows.push(
        Row::new(&scn, "operator RSS 15 s after ready", s.rss_mib(), "MiB")
            .target(format!("< {RSS_MIB} MiB"), s.rss_mib() < RSS_MIB)
            .note(format!("CPU since start {:.2} s", s.cpu_seconds)),
    );
    op.save_logs(&cfg.logs_dir.join(format!("operator-identity-{n}-restart.log")));
    op.stop();
    Ok(())
}

/// The floor's pacing: call `i` (in the order calls ask) gets slot
/// `max(0, i - BURST) / RATE` after the start, as the operator's GCRA pacer
/// gives them.
struct Slots {
    start: tokio::time::Instant,
    next: AtomicUsize,
}

impl Slots {
    async fn acquire(&self) {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_secs_f64(i.saturating_sub(BURST) as f64 / RATE);
        tokio::time::sleep_until(at).await;
    }
}

/// A RegistryCredential like the benchmark's, as the API server would return it, for the floor's Secret bodies.
fn floor_credential(moto: &Moto) -> RegistryCredential {
    let spec = serde_json::from_value(rc_spec(moto)).expect("the benchmark spec is a RegistryCredentialSpec");
    let mut rc = RegistryCredential::new("flr", spec);
    rc.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
    rc.metadata.generation = Some(1);
    rc
}

/// N TokenRequests, N paced exchanges, N Secret creates, N SA patches at
/// the operator's concurrency; the time.
async fn floor(client: &Client, moto: &Moto, namespaces: &[String]) -> anyhow::Result<Duration> {
    let sas: HashMap<String, ServiceAccount> = Api::<ServiceAccount>::all(client.clone())
        .list(&ListParams::default().fields("metadata.name=default"))
        .await?
        .items
        .into_iter()
        .map(|sa| (sa.namespace().unwrap_or_default(), sa))
        .collect();
    let http = reqwest::Client::new();
    let rc = floor_credential(moto);
    let url = moto.url();
    let slots = Slots {
        start: tokio::time::Instant::now(),
        next: AtomicUsize::new(0),
    };
    let started = Instant::now();
    futures::stream::iter(namespaces)
        .map(|ns| {
            let sa = sas.get(ns);
            let (client, http, rc, url, slots) = (client.clone(), &http, &rc, url.as_str(), &slots);
            async move {
                let sa = sa.with_context(|| format!("floor: no ServiceAccount {ns}/default"))?;
                slots.acquire().await;
                let token = token_request(&client, ns).await?;
                let role = sa.annotations()[regcred::identity::AWS_ROLE_ANNOTATION].clone();
                let (host, password) = exchange(http, url, &role, &token, ns).await?;
                let config = docker_config(&host, &password);
                let secret = build::secret_with(rc, ns, FLOOR_SECRET, &config, floor_annotations(&role, &config));
                let mut secret = secret;
                secret
                    .labels_mut()
                    .insert(build::MANAGED_BY_LABEL.into(), "bench-f".into());
                Api::<Secret>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &secret)
                    .await
                    .with_context(|| format!("floor: creating Secret {ns}/{FLOOR_SECRET}"))?;
                let updated = build::apply_sa_change(sa, FLOOR_SECRET, "flr", build::SaChange::Add);
                Api::<ServiceAccount>::namespaced(client, ns)
                    .patch(
                        "default",
                        &PatchParams::default(),
                        &Patch::Merge(build::sa_patch(sa, &updated)),
                    )
                    .await
                    .with_context(|| format!("floor: patching ServiceAccount {ns}/default"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}

/// The annotations regcred writes on a per-ServiceAccount Secret, at the same lengths.
fn floor_annotations(role: &str, config: &[u8]) -> Vec<(&'static str, String)> {
    use regcred::reconcile::workload as wl;
    let time = "2026-01-01T00:00:00Z".to_string();
    vec![
        (build::FINGERPRINT_ANNOTATION, format!("{:0>64}", 0)),
        (build::NOT_AFTER_ANNOTATION, time.clone()),
        (wl::RENEW_AT_ANNOTATION, time),
        (wl::SERVICE_ACCOUNT_ANNOTATION, "default".into()),
        (
            wl::SERVICE_ACCOUNT_UID_ANNOTATION,
            "00000000-0000-4000-8000-000000000000".into(),
        ),
        (wl::IDENTITY_ANNOTATION, role.into()),
        (wl::DATA_DIGEST_ANNOTATION, build::data_digest(config)),
        (wl::REGISTRIES_ANNOTATION, "x".repeat(44)),
    ]
}

fn docker_config(host: &str, password: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    serde_json::to_vec(&json!({"auths": {host: {"username": "AWS", "password": password, "auth": auth}}}))
        .expect("JSON serializes")
}

/// A token for `ns/default`, audience `sts.amazonaws.com`, 600 s.
async fn token_request(client: &Client, ns: &str) -> anyhow::Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![regcred::identity::AWS_AUDIENCE.into()],
            expiration_seconds: Some(600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request("default", &PostParams::default(), &request)
        .await
        .with_context(|| format!("floor: TokenRequest for {ns}/default"))?;
    Ok(answer.status.context("no token")?.token)
}

fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..end].to_string())
}

/// STS `AssumeRoleWithWebIdentity`, then ECR `GetAuthorizationToken` with
/// its keys; the registry host and the password.
async fn exchange(
    http: &reqwest::Client,
    url: &str,
    role: &str,
    token: &str,
    ns: &str,
) -> anyhow::Result<(String, String)> {
    let session = format!("regcred.{ns}.default");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role)
        .append_pair("RoleSessionName", &session)
        .append_pair("WebIdentityToken", token)
        .finish();
    let sts = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let key = xml_text(&sts, "AccessKeyId").context("floor: no AccessKeyId from STS")?;
    let session_token = xml_text(&sts, "SessionToken").unwrap_or_default();
    let date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={key}/{}/{REGION}/ecr/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, \
         Signature={:0>64}",
        &date[..8],
        0
    );
    let ecr: serde_json::Value = http
        .post(url)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        )
        .header("x-amz-date", &date)
        .header("x-amz-security-token", session_token)
        .header("authorization", authorization)
        .body("{}")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let data = &ecr["authorizationData"][0];
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(data["authorizationToken"].as_str().unwrap_or(""))?;
    let decoded = String::from_utf8(decoded)?;
    let password = decoded
        .strip_prefix("AWS:")
        .context("floor: ECR token not AWS:…")?
        .to_string();
    let host = data["proxyEndpoint"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("https://")
        .to_string();
    Ok((host, password))
}
