//! The scenarios of issue 13, each on a control plane of its own.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::admission;
use crate::audit::Counts;
use crate::config::Config;
use crate::floor;
use crate::report::Row;
use crate::tracker::Tracker;
use crate::world::{self, FLOOR_USER, OPERATOR_USER, World, names};

/// Targets from issue 13 (and, where it names none, the threshold this benchmark holds itself to).
const FANOUT_RATIO: f64 = 1.15;
const LATENCY_P99_MS: f64 = 300.0;
const RSS_MIB: f64 = 60.0;
/// "Flat" after unrelated Secrets: the operator does not cache them at all.
const UNRELATED_DELTA_MIB: f64 = 5.0;
/// Proportional work for a burst: within these factors of one Secret create
/// and one ServiceAccount update per RegistryCredential and namespace
/// (requests), and of the per-namespace CPU of fanning the same
/// RegistryCredentials out (CPU).
const BURST_REQUESTS_RATIO: f64 = 1.15;
const BURST_CPU_RATIO: f64 = 2.0;

/// What a run collects.
#[derive(Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

pub(crate) async fn settle(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

pub(crate) async fn converge(tracker: &Tracker, t0: Instant, timeout: Duration) -> Result<Duration, String> {
    match tracker.wait_goal(timeout).await {
        Ok(at) => Ok(at.saturating_duration_since(t0)),
        Err(pending) => Err(format!("{pending} namespaces still pending after {timeout:?}")),
    }
}

pub(crate) fn ops(c: &Counts) -> String {
    if c.total == 0 {
        return "0 requests".into();
    }
    format!(
        "{} requests ({} answered 409 Conflict): {}",
        c.total,
        c.conflicts,
        c.summary(6)
    )
}

pub(crate) fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// A control plane with `n` namespaces, the harness's watches on it, and the
/// raw floor's fan-out done: where regcred's fan-out is measured next.
struct Stage {
    // Field order is drop order: the harness's watches stop before their
    // control plane does (else they retry against it until it is gone).
    tracker: Tracker,
    w: World,
    namespaces: Vec<String>,
    floor_client: kube::Client,
    floor_fan: Duration,
    /// CPU seconds etcd and kube-apiserver spent on the floor's fan-out.
    floor_cp_cpu: f64,
    /// The audit log's mark before the floor's fan-out and after it.
    floor_marks: (u64, u64),
    floor_secrets: Vec<k8s_openapi::api::core::v1::Secret>,
}

impl Stage {
    async fn new(cfg: &Config, n: usize) -> anyhow::Result<Self> {
        let w = World::start().await?;
        let namespaces = names("bench", n);
        w.create_namespaces_for_setup(&namespaces).await?;
        let tracker = Tracker::start(w.admin.clone()).await?;
        // The floor goes first, with no operator running: its ServiceAccount
        // writes would otherwise wake the operator and share the 2 cores with it.
        progress(&format!("raw floor at {n} namespaces"));
        let floor_client = w.client_for(FLOOR_USER).await?;
        let m0 = w.audit.mark();
        let cp0 = w.control_plane_cpu()?;
        let (floor_fan, floor_secrets) = floor::fan_out(&floor_client, &namespaces, "pw-0", cfg.concurrency).await?;
        let floor_cp_cpu = w.control_plane_cpu()? - cp0;
        settle(1.0).await;
        let m1 = w.audit.mark();
        Ok(Self {
            w,
            namespaces,
            tracker,
            floor_client,
            floor_fan,
            floor_cp_cpu,
            floor_marks: (m0, m1),
            floor_secrets,
        })
    }

    /// Start regcred, apply the RegistryCredential and wait for every namespace.
    async fn fan_out(&self, cfg: &Config, rc: &[String]) -> anyhow::Result<FanOutRun> {
        let n = self.namespaces.len();
        progress(&format!("regcred fan-out to {n} namespaces"));
        let op = self.w.start_operator(&cfg.operator).await?;
        settle(2.0).await;
        let started = op.sample()?;
        self.tracker.set_goal(rc, "pw-0", &self.namespaces);
        let a0 = self.w.audit.mark();
        let cp0 = self.w.control_plane_cpu()?;
        let t0 = Instant::now();
        self.w.apply_rc(world::SOURCE).await?;
        let fan = converge(
            &self.tracker,
            t0,
            Duration::from_secs(60) + Duration::from_millis(30) * n as u32,
        )
        .await;
        let cp_cpu = self.w.control_plane_cpu()? - cp0;
        settle(3.0).await;
        Ok(FanOutRun {
            op,
            fan,
            marks: (a0, self.w.audit.mark()),
            started,
            cp_cpu,
        })
    }
}

/// One fan-out of regcred's.
struct FanOutRun {
    op: world::RunningOperator,
    fan: Result<Duration, String>,
    /// The audit log's marks around it.
    marks: (u64, u64),
    /// The operator's RSS and CPU before the RegistryCredential.
    started: crate::procstat::Sample,
    /// CPU seconds etcd and kube-apiserver spent until every namespace was seen done.
    cp_cpu: f64,
}

/// Median of a non-empty list.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// Fan-out and rotation against the floor, RSS and CPU at `n` namespaces;
/// on the largest size also new-namespace latency, idle writes and
/// unrelated Secrets.
pub async fn scale(cfg: &Config, n: usize, largest: bool, out: &mut Outcome) -> anyhow::Result<()> {
    let rc = vec![world::SOURCE.to_string()];
    let scn = |what: &str| format!("{what}, {n} ns");
    // Rounds before the main one, each on a control plane of its own: one
    // pair of fan-outs is noisy (±10 % on a shared 2-core machine).
    let mut rounds: Vec<(f64, f64)> = Vec::new();
    for round in 1..cfg.fanout_rounds(n) {
        progress(&format!(
            "fan-out round {round} of {} at {n} namespaces",
            cfg.fanout_rounds(n)
        ));
        let stage = Stage::new(cfg, n).await?;
        let FanOutRun { mut op, fan, .. } = stage.fan_out(cfg, &rc).await?;
        op.stop();
        let fan = fan.map_err(|e| anyhow::anyhow!("fan-out round {round} at {n} namespaces: {e}"))?;
        rounds.push((fan.as_secs_f64(), stage.floor_fan.as_secs_f64()));
    }

    let mut stage = Stage::new(cfg, n).await?;
    // The floor's rotation too goes before the operator starts.
    let floor_secrets = std::mem::take(&mut stage.floor_secrets);
    let floor_rot = floor::rotate(&stage.floor_client, floor_secrets, "pw-1", cfg.concurrency).await?;
    settle(1.0).await;
    let (m0, m1) = stage.floor_marks;
    let m2 = stage.w.audit.mark();
    let floor_fan_req = stage.w.audit.count(m0, m1, FLOOR_USER)?;
    let floor_rot_req = stage.w.audit.count(m1, m2, FLOOR_USER)?;
    let floor_fan = stage.floor_fan;
    let floor_cp_cpu = stage.floor_cp_cpu;
    let FanOutRun {
        mut op,
        fan,
        marks: (a0, a1),
        started,
        cp_cpu,
    } = stage.fan_out(cfg, &rc).await?;
    let Stage {
        w, namespaces, tracker, ..
    } = stage;
    let after_fan = op.sample()?;
    let fan_req = w.audit.count(a0, a1, OPERATOR_USER)?;
    match &fan {
        Ok(d) => {
            rounds.push((d.as_secs_f64(), floor_fan.as_secs_f64()));
            let (ops_s, floors): (Vec<f64>, Vec<f64>) = rounds.iter().copied().unzip();
            let (value, reference) = (median(ops_s), median(floors));
            let each = rounds
                .iter()
                .map(|(o, f)| format!("{o:.2} s / {f:.2} s = {:.2}×", o / f))
                .collect::<Vec<_>>()
                .join("; ");
            out.rows.push(
                Row::new(
                    scn("fan-out"),
                    "RC applied → every Secret + default SA link",
                    value,
                    "s",
                )
                .reference("raw floor", reference)
                .target(format!("≤ {FANOUT_RATIO}× floor"), value / reference <= FANOUT_RATIO)
                .note(format!(
                    "{n}-namespace fan-out, median of {} rounds (regcred / raw floor, each pair on a control plane of its own): {each}",
                    rounds.len()
                )),
            );
            out.details.insert(format!("fan_out_rounds_{n}"), json!(rounds));
        }
        Err(e) => out.rows.push(Row::failed(
            scn("fan-out"),
            "RC applied → every Secret + default SA link",
            e,
        )),
    }
    out.rows.push(
        Row::new(scn("fan-out"), "API requests (by user)", fan_req.total as f64, "count")
            .reference("raw floor", floor_fan_req.total as f64)
            .note(format!(
                "{n}-namespace fan-out, operator: {}; floor: {}",
                ops(&fan_req),
                ops(&floor_fan_req)
            )),
    );
    out.rows.push(
        Row::new(
            scn("fan-out"),
            "API server + etcd CPU, until every namespace is done",
            cp_cpu,
            "CPU s",
        )
        .reference("raw floor", floor_cp_cpu)
        .note(
            "the same requests; regcred's watches also have each Secret and ServiceAccount it wrote sent back \
                 to it (the floor watches nothing)",
        ),
    );
    out.rows.push(Row::new(
        scn("fan-out"),
        "operator CPU, start of fan-out to 3 s after",
        after_fan.cpu_seconds - started.cpu_seconds,
        "CPU s",
    ));
    out.rows.push(
        Row::new(scn("memory"), "operator RSS after fan-out", after_fan.rss_mib(), "MiB")
            .target(format!("< {RSS_MIB} MiB"), after_fan.rss_mib() < RSS_MIB)
            .note(format!(
                "at {n} namespaces: RSS {:.1} MiB before the RegistryCredential (caches warm), {:.1} MiB after its fan-out; \
                 CPU since start {:.2} s",
                started.rss_mib(),
                after_fan.rss_mib(),
                after_fan.cpu_seconds
            )),
    );

    progress(&format!("regcred rotation at {n} namespaces"));
    tracker.set_goal(&rc, "pw-1", &namespaces);
    let b0 = w.audit.mark();
    let before_rot = op.sample()?;
    let t0 = Instant::now();
    w.set_password("pw-1").await?;
    let rot = converge(
        &tracker,
        t0,
        Duration::from_secs(60) + Duration::from_millis(30) * n as u32,
    )
    .await;
    settle(3.0).await;
    let b1 = w.audit.mark();
    let after_rot = op.sample()?;
    let rot_req = w.audit.count(b0, b1, OPERATOR_USER)?;
    match &rot {
        Ok(d) => out.rows.push(
            Row::new(
                scn("rotation"),
                "password changed → all Secrets hold it",
                d.as_secs_f64(),
                "s",
            )
            .reference("raw floor", floor_rot.as_secs_f64()),
        ),
        Err(e) => out.rows.push(Row::failed(
            scn("rotation"),
            "password changed → all Secrets hold it",
            e,
        )),
    }
    let secret_writes = rot_req.writes("secrets");
    let sa_writes = rot_req.writes("serviceaccounts");
    out.rows.push(
        Row::new(scn("rotation"), "Secret writes", secret_writes as f64, "count")
            .reference("raw floor", floor_rot_req.writes("secrets") as f64)
            .target(format!("= {n}"), secret_writes == n as u64)
            .note(format!("{n}-namespace rotation, operator: {}", ops(&rot_req))),
    );
    out.rows.push(
        Row::new(scn("rotation"), "ServiceAccount writes", sa_writes as f64, "count").target("0", sa_writes == 0),
    );
    out.rows.push(Row::new(
        scn("rotation"),
        "operator CPU, rotation to 3 s after",
        after_rot.cpu_seconds - before_rot.cpu_seconds,
        "CPU s",
    ));
    out.details.insert(
        format!("requests_{n}"),
        json!({"fan_out": {"operator": fan_req, "floor": floor_fan_req}, "rotation": {"operator": rot_req, "floor": floor_rot_req}}),
    );

    if largest {
        latency(cfg, &w, &tracker, &op, &rc, n, out).await?;
        idle(cfg, &w, &tracker, &op, n, out).await?;
        unrelated(cfg, &w, &op, &namespaces, n, out).await?;
    }
    let log = cfg.logs_dir.join(format!("operator-{n}.log"));
    op.save_logs(&log);
    out.details.insert(
        format!("operator_log_{n}"),
        json!({"path": log, "summary": world::log_summary(&op.logs())}),
    );
    op.stop();
    let off_rss = restart(cfg, &w, &tracker, n, out).await?;
    if cfg.parts.iter().any(|p| p == "admission") {
        admission::run(cfg, &w, &tracker, &namespaces, "pw-1", n, largest, off_rss, out)
            .await
            .context("admission")?;
    }
    Ok(())
}

/// The admission rows without the rest of `scale`: a control plane with `n`
/// namespaces, regcred's fan-out done (no floor, no rotation), its restart
/// (admission off) measured, then admission.
pub async fn admission_only(cfg: &Config, n: usize, largest: bool, out: &mut Outcome) -> anyhow::Result<()> {
    let rc = vec![world::SOURCE.to_string()];
    let w = World::start().await?;
    let namespaces = names("bench", n);
    w.create_namespaces_for_setup(&namespaces).await?;
    let tracker = Tracker::start(w.admin.clone()).await?;
    progress(&format!("regcred fan-out to {n} namespaces (set-up for admission)"));
    let mut op = w.start_operator(&cfg.operator).await?;
    tracker.set_goal(&rc, "pw-0", &namespaces);
    let t0 = Instant::now();
    w.apply_rc(world::SOURCE).await?;
    converge(
        &tracker,
        t0,
        Duration::from_secs(60) + Duration::from_millis(30) * n as u32,
    )
    .await
    .map_err(|e| anyhow::anyhow!("fan-out at {n} namespaces: {e}"))?;
    op.stop();
    let off_rss = restart(cfg, &w, &tracker, n, out).await?;
    admission::run(cfg, &w, &tracker, &namespaces, "pw-0", n, largest, off_rss, out)
        .await
        .context("admission")
}

/// A fresh operator on a cluster where everything is in place: what its
/// caches alone weigh, and whether it writes anything. Its RSS 10 s after ready.
async fn restart(cfg: &Config, w: &World, tracker: &Tracker, n: usize, out: &mut Outcome) -> anyhow::Result<f64> {
    progress(&format!("regcred restarted at {n} namespaces"));
    let scn = format!("restart, {n} ns");
    let e0 = tracker.events();
    let a0 = w.audit.mark();
    let mut op = w.spawn_operator(&cfg.operator)?;
    let ready = op.wait_ready(Duration::from_secs(120)).await;
    match &ready {
        Ok(d) => out.rows.push(Row::new(
            &scn,
            "start → /readyz 200 (caches warm)",
            d.as_secs_f64(),
            "s",
        )),
        Err(e) => out.rows.push(Row::failed(
            &scn,
            "start → /readyz 200 (caches warm)",
            format!("{:#}", e).lines().next().unwrap_or_default().to_string(),
        )),
    }
    settle(10.0).await;
    let s = op.sample()?;
    let e1 = tracker.events();
    let req = w.audit.count(a0, w.audit.mark(), OPERATOR_USER)?;
    let writes = req.writes("secrets") + req.writes("serviceaccounts");
    out.rows.push(
        Row::new(&scn, "operator RSS 10 s after ready", s.rss_mib(), "MiB")
            .target(format!("< {RSS_MIB} MiB"), s.rss_mib() < RSS_MIB)
            .note(format!(
                "restart at {n} namespaces, everything already in place: CPU {:.2} s; watch events {} on Secrets, {} on \
                 ServiceAccounts; operator: {}",
                s.cpu_seconds,
                e1.secrets - e0.secrets,
                e1.service_accounts - e0.service_accounts,
                ops(&req)
            )),
    );
    out.rows
        .push(Row::new(&scn, "operator Secret/SA write requests", writes as f64, "count").target("0", writes == 0));
    op.save_logs(&cfg.logs_dir.join(format!("operator-{n}-restart.log")));
    op.stop();
    Ok(s.rss_mib())
}

async fn latency(
    cfg: &Config,
    w: &World,
    tracker: &Tracker,
    op: &world::RunningOperator,
    rc: &[String],
    n: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    progress(&format!(
        "new-namespace latency, {} namespaces one at a time",
        cfg.latency_samples
    ));
    let scn = format!("new namespace, {n} existing");
    let before = op.sample()?;
    let a0 = w.audit.mark();
    let mut delays = Vec::new();
    let mut missed = 0;
    for ns in names("late", cfg.latency_samples) {
        let one = [ns];
        tracker.set_goal(rc, "pw-1", &one);
        let t0 = Instant::now();
        w.create_namespaces(&one, 1).await?;
        match converge(tracker, t0, Duration::from_secs(30)).await {
            Ok(d) => delays.push(d.as_secs_f64() * 1000.0),
            Err(_) => missed += 1,
        }
        settle(0.05).await;
    }
    settle(1.0).await;
    let after = op.sample()?;
    let req = w.audit.count(a0, w.audit.mark(), OPERATOR_USER)?;
    if delays.is_empty() {
        out.rows
            .push(Row::failed(&scn, "latency", "no namespace converged within 30 s"));
        return Ok(());
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
    let note = format!(
        "{} namespaces created one at a time (namespace, then its default ServiceAccount) until the harness's watches saw \
         the Secret and the SA link; {missed} did not converge within 30 s",
        cfg.latency_samples
    );
    out.rows.push(Row::new(&scn, "p50", pct(0.5), "ms").note(note));
    let p99 = pct(0.99);
    out.rows.push(
        Row::new(&scn, "p99", p99, "ms").target(format!("< {LATENCY_P99_MS} ms"), p99 < LATENCY_P99_MS && missed == 0),
    );
    out.rows
        .push(Row::new(&scn, "max", *delays.last().expect("not empty"), "ms"));
    let cpu = after.cpu_seconds - before.cpu_seconds;
    out.rows.push(
        Row::new(
            &scn,
            "operator CPU per new namespace",
            cpu * 1000.0 / cfg.latency_samples as f64,
            "CPU ms",
        )
        .note(format!(
            "{} new namespaces one at a time, operator: {cpu:.2} CPU s in all; {}",
            cfg.latency_samples,
            ops(&req)
        )),
    );
    out.details
        .insert("latency_ms".into(), json!({"sorted": delays, "missed": missed}));
    Ok(())
}

async fn idle(
    cfg: &Config,
    w: &World,
    tracker: &Tracker,
    op: &world::RunningOperator,
    n: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    progress(&format!("idle for {} s", cfg.idle_seconds));
    let scn = format!("idle {} s, {n} ns", cfg.idle_seconds);
    settle(5.0).await;
    let e0 = tracker.events();
    let a0 = w.audit.mark();
    let s0 = op.sample()?;
    tokio::time::sleep(cfg.idle()).await;
    let e1 = tracker.events();
    let a1 = w.audit.mark();
    let s1 = op.sample()?;
    let req = w.audit.count(a0, a1, OPERATOR_USER)?;
    let events = (e1.secrets - e0.secrets) + (e1.service_accounts - e0.service_accounts);
    out.rows.push(
        Row::new(&scn, "Secret/SA changes seen by a watch", events as f64, "count")
            .target("0", events == 0)
            .note(format!(
                "idle: watch events {} on managed Secrets, {} on default ServiceAccounts; operator: {}",
                e1.secrets - e0.secrets,
                e1.service_accounts - e0.service_accounts,
                ops(&req)
            )),
    );
    let writes = req.writes("secrets") + req.writes("serviceaccounts");
    out.rows
        .push(Row::new(&scn, "operator Secret/SA write requests", writes as f64, "count").target("0", writes == 0));
    out.rows
        .push(Row::new(&scn, "operator CPU", s1.cpu_seconds - s0.cpu_seconds, "CPU s"));
    out.details.insert("idle_requests".into(), json!(req));
    Ok(())
}

async fn unrelated(
    cfg: &Config,
    w: &World,
    op: &world::RunningOperator,
    namespaces: &[String],
    n: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let kib = cfg.unrelated_secret_bytes / 1024;
    progress(&format!("{} unrelated {kib} KiB Secrets", cfg.unrelated_secrets));
    let before = op.sample()?;
    let t0 = Instant::now();
    w.create_unrelated_secrets(
        namespaces,
        cfg.unrelated_secrets,
        cfg.unrelated_secret_bytes,
        cfg.concurrency,
    )
    .await?;
    let took = t0.elapsed();
    settle(10.0).await;
    let after = op.sample()?;
    let delta = after.rss_mib() - before.rss_mib();
    out.rows.push(
        Row::new(
            format!("memory, {n} ns"),
            format!("Δ RSS after {} unrelated {kib} KiB Secrets", cfg.unrelated_secrets),
            delta,
            "MiB",
        )
        .target(
            format!("≤ {UNRELATED_DELTA_MIB} MiB (flat)"),
            delta <= UNRELATED_DELTA_MIB,
        )
        .note(format!(
            "RSS {:.1} → {:.1} MiB; the Secrets took {:.1} s to create (spread over the {n} namespaces)",
            before.rss_mib(),
            after.rss_mib(),
            took.as_secs_f64()
        )),
    );
    Ok(())
}

/// Many RegistryCredentials over the same namespaces, then a burst of new
/// namespaces: does each event cost work for its namespace, or for all of them?
pub async fn multi(cfg: &Config, out: &mut Outcome) -> anyhow::Result<()> {
    let (k, m, b) = (cfg.multi_rcs, cfg.multi_namespaces, cfg.burst);
    let scn = format!("{k} RCs × {m} ns");
    let w = World::start().await?;
    let namespaces = names("multi", m);
    w.create_namespaces_for_setup(&namespaces).await?;
    let tracker = Tracker::start(w.admin.clone()).await?;
    let op = w.start_operator(&cfg.operator).await?;
    settle(2.0).await;

    progress(&format!("{k} RegistryCredentials fanning out to {m} namespaces"));
    let rcs: Vec<String> = (0..k).map(|i| format!("hub-{i:02}")).collect();
    let s0 = op.sample()?;
    let a0 = w.audit.mark();
    tracker.set_goal(&rcs, "pw-0", &namespaces);
    let t0 = Instant::now();
    for rc in &rcs {
        w.apply_rc(rc).await?;
    }
    let fan = converge(&tracker, t0, Duration::from_secs(900)).await;
    settle(3.0).await;
    let s1 = op.sample()?;
    let a1 = w.audit.mark();
    let fan_req = w.audit.count(a0, a1, OPERATOR_USER)?;
    let fan_cpu = s1.cpu_seconds - s0.cpu_seconds;
    match &fan {
        Ok(d) => out.rows.push(
            Row::new(&scn, "fan-out of all RCs", d.as_secs_f64(), "s")
                .note(format!("{k} × {m} fan-out, operator: {}", ops(&fan_req))),
        ),
        Err(e) => out.rows.push(Row::failed(&scn, "fan-out of all RCs", e)),
    }
    out.rows
        .push(Row::new(&scn, "operator CPU for that fan-out", fan_cpu, "CPU s"));

    progress(&format!("a burst of {b} new namespaces"));
    settle(5.0).await;
    let burst = names("burst", b);
    tracker.set_goal(&rcs, "pw-0", &burst);
    let s2 = op.sample()?;
    let a2 = w.audit.mark();
    let t0 = Instant::now();
    w.create_namespaces(&burst, cfg.concurrency).await?;
    let conv = converge(&tracker, t0, Duration::from_secs(900)).await;
    settle(3.0).await;
    let s3 = op.sample()?;
    let a3 = w.audit.mark();
    let req = w.audit.count(a2, a3, OPERATOR_USER)?;
    let cpu = s3.cpu_seconds - s2.cpu_seconds;
    let bscn = format!("{k} RCs × {m} ns, +{b} ns burst");
    match &conv {
        Ok(d) => out.rows.push(Row::new(
            &bscn,
            "burst created → all Secrets + SA links",
            d.as_secs_f64(),
            "s",
        )),
        Err(e) => out
            .rows
            .push(Row::failed(&bscn, "burst created → all Secrets + SA links", e)),
    }
    let cpu_ref = fan_cpu * b as f64 / m as f64;
    out.rows.push(
        Row::new(&bscn, "operator CPU, burst to 3 s after", cpu, "CPU s")
            .reference(format!("(fan-out CPU × {b}/{m})"), cpu_ref)
            .target(
                format!("≤ {BURST_CPU_RATIO}× proportional"),
                cpu <= BURST_CPU_RATIO * cpu_ref,
            )
            .note(format!(
                "proportional reference: the CPU the same {k} RegistryCredentials took to fan out to {m} namespaces, \
                 scaled to {b} namespaces"
            )),
    );
    let req_ref = (2 * k * b) as f64;
    out.rows.push(
        Row::new(&bscn, "operator API requests", req.total as f64, "count")
            .reference("(1 Secret create + 1 SA update per RC per ns)", req_ref)
            .target(
                format!("≤ {BURST_REQUESTS_RATIO}× proportional"),
                req.total as f64 <= BURST_REQUESTS_RATIO * req_ref,
            )
            .note(format!(
                "burst, operator (its own user, counted in the API server's audit log): {}",
                ops(&req)
            )),
    );
    out.details.insert(
        "multi".into(),
        json!({"fan_out_requests": fan_req, "burst_requests": req}),
    );
    let log = cfg.logs_dir.join("operator-multi.log");
    op.save_logs(&log);
    out.details.insert(
        "operator_log_multi".into(),
        json!({"path": log, "summary": world::log_summary(&op.logs())}),
    );
    Ok(())
}
