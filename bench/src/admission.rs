//! The Pod admission webhook: what it adds to a pod's creation as the client
//! sees it, what it asks of the API server, what it weighs, and whether the
//! pods of a burst of new namespaces are admitted naming a Secret that is
//! already there.
//!
//! Run on a size's control plane once its restart has been measured: a
//! fresh operator with admission on, beside that restart's (admission off)
//! on the same objects; then a standby, for Secrets admission must write
//! (see [`run`]). The API server calls them through the chart's own
//! MutatingWebhookConfiguration (rendered with helm), by URL since there is
//! no Service routing here. Every pod created with the webhook is paired
//! with one created right before or after it in the same namespace without
//! it: the control pod carries `regcred.dev/admission: disabled`, which the
//! chart's objectSelector skips, so the API server never calls regcred for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::report::Row;
use crate::scenario::{Outcome, converge, ops, progress, settle};
use crate::tracker::Tracker;
use crate::world::{self, CREDS_NS, OPERATOR_USER, World, names};

/// Targets from the admission issue.
const IN_PLACE_P99_MS: f64 = 10.0;
const WRITTEN_P99_MS: f64 = 250.0;
const RSS_DELTA_MIB: f64 = 5.0;
/// The MutatingWebhookConfiguration's name (and its certificate Secret's, with `-tls`).
const WEBHOOK: &str = "regcred-bench";
/// Opts a pod (or namespace) out of the webhook.
const OPT_OUT: &str = "regcred.dev/admission";
/// What the operator logs when admission wrote the Secret itself.
const WROTE: &str = "admission: wrote the Secret before admitting the pod";
/// Secret in place: pairs created in each namespace once the API server has looked it up.
const PAIRS_PER_NAMESPACE: usize = 5;

/// What one admission phase measured.
#[derive(Debug, Default, Serialize)]
struct Pairs {
    /// Pod creation round-trips, ms, webhook called.
    with: Vec<f64>,
    /// The same, webhook skipped (the control).
    without: Vec<f64>,
    /// Webhook pods admitted not naming the Secret.
    unnamed: usize,
    /// Webhook pods admitted naming it before it was in their namespace.
    secret_after: usize,
    /// Control pods that named it: the webhook was called for them after all.
    control_named: usize,
}

/// A pod as a workload creates it, with the webhook called or not. The
/// label's value has the same length either way, so the bodies weigh the same.
fn pod(name: &str, webhook: bool) -> Pod {
    let value = if webhook { "included" } else { "disabled" };
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {OPT_OUT: value}},
        "spec": {
            "serviceAccountName": "default",
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "docker.io/library/app:1"}],
        },
    }))
    .expect("a Pod")
}

/// Whether the admitted pod names the benchmark's Secret.
fn named(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .any(|r| r.name == world::SOURCE)
}

fn resource_version(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Whether `secret` was written before `pod`: etcd revisions order them.
fn before(secret: Option<&Secret>, pod: &Pod) -> bool {
    secret.is_some_and(|s| resource_version(&s.metadata) < resource_version(&pod.metadata))
}

/// Create `pod`; the round-trip in ms, and the pod as admitted.
async fn create_timed(api: &Api<Pod>, pod: &Pod, dry_run: bool) -> anyhow::Result<(f64, Pod)> {
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    let t0 = Instant::now();
    let created = api
        .create(&pp, pod)
        .await
        .with_context(|| format!("creating pod {}", pod.metadata.name.as_deref().unwrap_or_default()))?;
    Ok((t0.elapsed().as_secs_f64() * 1000.0, created))
}

/// Nearest-rank percentile of a sorted, non-empty list.
fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The operator's metrics, one value per series (`name{labels}`).
#[derive(Debug, Default, Clone)]
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sum of every series of `name` (all label values).
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// `regcred_admission_duration_seconds` buckets (upper bound s, cumulative count).
    fn buckets(&self) -> Vec<(f64, f64)> {
        let mut b: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix("regcred_admission_duration_seconds_bucket{le=\"")?
                    .strip_suffix("\"}")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, *v))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }
}

/// What changed between two scrapes of the admission metrics.
#[derive(Debug, Default, Serialize)]
struct AdmissionMetrics {
    reviews: BTreeMap<String, f64>,
    api_requests: f64,
    duration_count: f64,
    duration_sum_s: f64,
    /// (upper bound s, reviews in the window at or under it).
    buckets: Vec<(f64, f64)>,
}

impl AdmissionMetrics {
    fn between(a: &Metrics, b: &Metrics) -> Self {
        let mut reviews = BTreeMap::new();
        for outcome in ["injected", "in_place", "not_targeted", "error"] {
            let s = format!("regcred_admission_reviews_total{{outcome=\"{outcome}\"}}");
            reviews.insert(outcome.to_string(), b.get(&s) - a.get(&s));
        }
        let before = a.buckets();
        let buckets = b
            .buckets()
            .into_iter()
            .map(|(le, n)| {
                let was = before.iter().find(|(l, _)| *l == le).map(|(_, n)| *n).unwrap_or(0.0);
                (le, n - was)
            })
            .collect();
        Self {
            reviews,
            api_requests: b.sum("regcred_admission_api_requests_total") - a.sum("regcred_admission_api_requests_total"),
            duration_count: b.get("regcred_admission_duration_seconds_count")
                - a.get("regcred_admission_duration_seconds_count"),
            duration_sum_s: b.get("regcred_admission_duration_seconds_sum")
                - a.get("regcred_admission_duration_seconds_sum"),
            buckets,
        }
    }

    /// "500 injected, 2 not_targeted": the outcomes that occurred.
    fn outcomes(&self) -> String {
        let seen: Vec<String> = self
            .reviews
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    }

    /// Reviews that named the Secret (injected or already in place).
    fn admitted(&self) -> f64 {
        self.reviews["injected"] + self.reviews["in_place"]
    }

    /// Quantile `q` in ms, interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; with the bucket's upper bound.
    fn quantile_ms(&self, q: f64) -> Option<(f64, f64)> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lo, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some((lo * 1000.0, f64::INFINITY));
                }
                let within = if n > below { (rank - below) / (n - below) } else { 1.0 };
                return Some(((lo + (le - lo) * within) * 1000.0, le * 1000.0));
            }
            (lo, below) = (le, n);
        }
        None
    }

    fn summary(&self) -> String {
        let q = |p: f64| match self.quantile_ms(p) {
            Some((v, le)) => format!("{v:.2} ms (bucket ≤ {le} ms)"),
            None => "—".into(),
        };
        format!(
            "regcred's own answer time (regcred_admission_duration_seconds, {} reviews): p50 {}, p99 {}, mean {:.2} ms",
            self.duration_count,
            q(0.5),
            q(0.99),
            if self.duration_count > 0.0 {
                self.duration_sum_s * 1000.0 / self.duration_count
            } else {
                0.0
            }
        )
    }
}

/// helm, as the tests find it (`make tools` builds it).
fn helm() -> anyhow::Result<PathBuf> {
    use regcred_testenv::tools;
    let path = std::env::var_os("REGCRED_HELM").map(PathBuf::from).unwrap_or_else(|| {
        tools::cache_dir()
            .join("helm")
            .join(tools::pinned("HELM_VERSION"))
            .join("helm")
    });
    anyhow::ensure!(
        path.is_file(),
        "helm not found at {}: `make tools` builds it, or point REGCRED_HELM at one",
        path.display()
    );
    Ok(path)
}

/// The chart's MutatingWebhookConfiguration, as `helm template` renders it,
/// named [`WEBHOOK`] and calling 127.0.0.1:`port` by URL; created, then
/// waited on until regcred has patched its caBundle.
async fn install_webhook(w: &World, port: u16) -> anyhow::Result<()> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/regcred");
    let rendered = std::process::Command::new(helm()?)
        .args(["template", "regcred", ".", "--namespace", CREDS_NS, "--kube-version"])
        .arg(regcred_testenv::tools::pinned("K8S_VERSION"))
        .args(["--show-only", "templates/mutatingwebhookconfiguration.yaml"])
        .current_dir(&chart)
        .output()
        .context("running helm template")?;
    anyhow::ensure!(
        rendered.status.success(),
        "helm template failed ({}): {}",
        rendered.status,
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut config: serde_json::Value =
        serde_yaml::from_slice(&rendered.stdout).context("the chart's MutatingWebhookConfiguration")?;
    config["metadata"] = json!({"name": WEBHOOK});
    for webhook in config["webhooks"]
        .as_array_mut()
        .context("no webhooks in the chart's configuration")?
    {
        webhook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}{}", regcred::admission::PATH)});
    }
    let config: MutatingWebhookConfiguration = serde_json::from_value(config)?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(w.admin.clone());
    api.create(&PostParams::default(), &config)
        .await
        .context("creating the MutatingWebhookConfiguration")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = api.get(WEBHOOK).await?;
        if live
            .webhooks
            .iter()
            .flatten()
            .all(|w| w.client_config.ca_bundle.is_some())
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "regcred did not patch the caBundle within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The flags of an operator serving the webhook on 127.0.0.1:`port`, as
/// tests/support's `admission_args`.
fn admission_args(port: u16) -> Vec<String> {
    vec![
        format!("--admission-addr=127.0.0.1:{port}"),
        "--admission-dns-names=127.0.0.1".to_string(),
        format!("--admission-webhook-config={WEBHOOK}"),
        format!("--admission-cert-secret={WEBHOOK}-tls"),
    ]
}

/// How many times the operator has logged `what`.
fn logged(op: &world::RunningOperator, what: &str) -> usize {
    op.logs().matches(what).count()
}

/// Point the webhook configuration at 127.0.0.1:`port` (another operator process).
async fn point_webhook(w: &World, port: u16) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(w.admin.clone());
    let url = format!("https://127.0.0.1:{port}{}", regcred::admission::PATH);
    let mut last = None;
    // The operator keeps the caBundle of the same object: a write of its
    // may come in between (409), then read again.
    for _ in 0..5 {
        let mut config = api.get(WEBHOOK).await?;
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.url = Some(url.clone());
        }
        match api.replace(WEBHOOK, &PostParams::default(), &config).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("tried")).context("pointing the webhook at the standby")
}

/// Wait until the API server calls the webhook (it reads configurations
/// from a watch): a dry run in `ns` comes back naming the Secret.
async fn wait_called(w: &World, ns: &str) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(w.admin.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) = create_timed(&api, &pod("probe", true), true).await?;
        if named(&p) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the API server did not call the webhook within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Lease held for an hour by someone else: an operator started with
/// `--leader-election --lease-name=name` is a standby, serving admission
/// from its caches but fanning nothing out.
async fn take_lease(w: &World, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let now = MicroTime(jiff::Timestamp::now());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600, "acquireTime": now, "renewTime": now},
    }))?;
    Api::<Lease>::namespaced(w.admin.clone(), CREDS_NS)
        .create(&PostParams::default(), &lease)
        .await
        .context("creating the Lease")?;
    Ok(())
}

/// The API server's LimitRanger and ResourceQuota admission look a
/// namespace's LimitRanges and ResourceQuotas up with a live LIST the first
/// time they see it (then cache the answer for 30 s), and that consistent
/// read waits for the watch cache to catch up, up to its 100 ms progress
/// period: the first pod of a namespace takes ~100 ms longer, webhook or not.
/// A dry-run pod the webhook skips pays that before a timed pair.
async fn warm_namespace(api: &Api<Pod>) -> anyhow::Result<()> {
    create_timed(api, &pod("warm", false), true).await.map(|_| ())
}

/// The admission rows at `n` namespaces. `off_rss` is the RSS of the
/// restart just measured (admission off) on this control plane.
///
/// A leader serving admission (no leader election, as the restart ran)
/// gives the RSS, the Secret-in-place pairs and, with `burst`, the burst.
/// The Secret-to-write pairs then run against a standby (another holder has
/// the Lease), pointed at by the same configuration: with a leader, its
/// fan-out writes a new namespace's Secret ~50 ms after the namespace
/// appears, while the API server holds the namespace's first pod ~100 ms
/// (see [`warm_namespace`]) before calling the webhook, so the webhook
/// would find the Secret in place every time.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: &Config,
    w: &World,
    tracker: &Tracker,
    namespaces: &[String],
    password: &str,
    n: usize,
    burst: bool,
    off_rss: f64,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    progress(&format!("regcred with admission on at {n} namespaces"));
    let rc = vec![world::SOURCE.to_string()];
    let port = regcred_testenv::free_port();
    let mut op = w.spawn_operator_with(&cfg.operator, &admission_args(port), &[("POD_NAMESPACE", CREDS_NS)])?;
    let ready = op.wait_ready(Duration::from_secs(120)).await?;
    settle(10.0).await;
    let on_ready = op.sample()?;
    install_webhook(w, port).await?;
    wait_called(w, &namespaces[0]).await?;
    // Warm both paths (connections, the webhook client's TLS session).
    let probe_api: Api<Pod> = Api::namespaced(w.admin.clone(), &namespaces[0]);
    for i in 0..10 {
        for webhook in [true, false] {
            let name = format!("warm-{i}-{}", if webhook { "w" } else { "o" });
            create_timed(&probe_api, &pod(&name, webhook), false).await?;
        }
    }
    settle(2.0).await;

    // Secret in place: pods in the existing namespaces, spread over them.
    progress(&format!(
        "{} pod pairs in existing namespaces (Secret in place)",
        cfg.admission_samples
    ));
    let mut in_place = Pairs::default();
    let m0 = Metrics::parse(&op.metrics().await?);
    let a0 = w.audit.mark();
    let mut api: Api<Pod> = Api::namespaced(w.admin.clone(), &namespaces[0]);
    for i in 0..cfg.admission_samples {
        // A few pairs per namespace, well within the API server's 30 s.
        if i % PAIRS_PER_NAMESPACE == 0 {
            let ns = &namespaces[(i / PAIRS_PER_NAMESPACE * 7919) % namespaces.len()];
            api = Api::namespaced(w.admin.clone(), ns);
            warm_namespace(&api).await?;
        }
        let order = if i % 2 == 0 { [true, false] } else { [false, true] };
        for webhook in order {
            let name = format!("in-place-{i:05}-{}", if webhook { "w" } else { "o" });
            let (ms, p) = create_timed(&api, &pod(&name, webhook), false).await?;
            if webhook {
                in_place.with.push(ms);
                in_place.unnamed += usize::from(!named(&p));
            } else {
                in_place.without.push(ms);
                in_place.control_named += usize::from(named(&p));
            }
        }
    }
    settle(1.0).await;
    let m1 = Metrics::parse(&op.metrics().await?);
    let a1 = w.audit.mark();
    settle(2.0).await;
    let after_in_place = op.sample()?;
    let in_place_metrics = AdmissionMetrics::between(&m0, &m1);
    let in_place_req = w.audit.count(a0, a1, OPERATOR_USER)?;

    let burst_rows = if burst {
        gitops_burst(cfg, w, tracker, &op, &rc, password, n, out).await?
    } else {
        Vec::new()
    };
    let at_end = op.sample()?;
    let log = cfg.logs_dir.join(format!("operator-{n}-admission.log"));
    op.save_logs(&log);
    out.details.insert(
        format!("operator_log_{n}_admission"),
        json!({"path": log, "summary": world::log_summary(&op.logs()), "rss_mib_at_end": at_end.rss_mib()}),
    );
    op.stop();

    // Secret to be written: a standby, each pod in a namespace created just
    // before it (namespace, its default ServiceAccount, the pod).
    progress(&format!(
        "{} pod pairs each in a new namespace (Secret to be written), against a standby",
        cfg.admission_new_samples
    ));
    let lease = "regcred-bench-standby";
    take_lease(w, lease).await?;
    let standby_port = regcred_testenv::free_port();
    let mut args = admission_args(standby_port);
    args.extend(["--leader-election".to_string(), format!("--lease-name={lease}")]);
    let mut standby = w.spawn_operator_with(&cfg.operator, &args, &[("POD_NAMESPACE", CREDS_NS)])?;
    standby.wait_ready(Duration::from_secs(120)).await?;
    point_webhook(w, standby_port).await?;
    wait_called(w, &namespaces[0]).await?;
    anyhow::ensure!(
        standby.logs().contains("waiting to become the leader"),
        "the second operator is not a standby"
    );
    let mut written = Pairs::default();
    let wrote0 = logged(&standby, WROTE);
    let m2 = Metrics::parse(&standby.metrics().await?);
    let a2 = w.audit.mark();
    for i in 0..cfg.admission_new_samples {
        let order = if i % 2 == 0 { [true, false] } else { [false, true] };
        // One new namespace per pair: nothing but the webhook pod's
        // admission writes the Secret (no fan-out on a standby), so the
        // control pod can go first or second.
        let ns = format!("adm-new-{i:05}");
        w.create_namespaces(std::slice::from_ref(&ns), 1).await?;
        let api: Api<Pod> = Api::namespaced(w.admin.clone(), &ns);
        warm_namespace(&api).await?;
        for webhook in order {
            let name = if webhook { "app-w" } else { "app-o" };
            let (ms, p) = create_timed(&api, &pod(name, webhook), false).await?;
            if webhook {
                written.with.push(ms);
                written.unnamed += usize::from(!named(&p));
                let secret = Api::<Secret>::namespaced(w.admin.clone(), &ns)
                    .get_opt(world::SOURCE)
                    .await?;
                written.secret_after += usize::from(named(&p) && !before(secret.as_ref(), &p));
            } else {
                written.without.push(ms);
                written.control_named += usize::from(named(&p));
            }
        }
    }
    settle(1.0).await;
    let m3 = Metrics::parse(&standby.metrics().await?);
    let a3 = w.audit.mark();
    let wrote = logged(&standby, WROTE) - wrote0;
    let written_metrics = AdmissionMetrics::between(&m2, &m3);
    let written_req = w.audit.count(a2, a3, OPERATOR_USER)?;
    let log = cfg.logs_dir.join(format!("operator-{n}-admission-standby.log"));
    standby.save_logs(&log);
    out.details.insert(
        format!("operator_log_{n}_admission_standby"),
        json!({"path": log, "summary": world::log_summary(&standby.logs())}),
    );
    standby.stop();

    let method = "each pod created with the webhook paired with one created right before or after it without (labelled \
                  regcred.dev/admission: disabled, which the chart's objectSelector skips), one pod at a time, after a \
                  dry-run pod the webhook skips has made the API server look the namespace's LimitRanges and \
                  ResourceQuotas up (the first pod of a namespace otherwise waits ~100 ms for that, webhook or not); \
                  'added' is the webhook's percentile minus the control's";
    let scn_in_place = format!("admission, {n} ns, Secret in place");
    pair_rows(
        out,
        &scn_in_place,
        &in_place,
        &in_place_metrics,
        IN_PLACE_P99_MS,
        format!(
            "{} pairs in the {n} existing namespaces ({PAIRS_PER_NAMESPACE} in each namespace taken), each already \
             holding the Secret, the leader answering; {method}. \
             {} webhook pod(s) admitted without the Secret, {} control pod(s) with it. The API server here runs \
             without the ServiceAccount admission plugin, so the pod does not inherit the ServiceAccount's list and \
             regcred answers with a patch (outcome injected) rather than nothing to add",
            cfg.admission_samples, in_place.unnamed, in_place.control_named
        ),
    );
    out.rows.push(
        Row::new(
            &scn_in_place,
            "API requests per admitted pod",
            in_place_metrics.api_requests / in_place_metrics.admitted().max(1.0),
            "req/pod",
        )
        .target(
            "0",
            in_place_metrics.api_requests == 0.0 && in_place_metrics.admitted() > 0.0,
        )
        .note(format!(
            "regcred_admission_api_requests_total rose by {} over {} reviews ({}); the operator's requests in that \
             window, from the audit log (the webhook certificate's upkeep included): {}",
            in_place_metrics.api_requests,
            in_place_metrics.duration_count,
            in_place_metrics.outcomes(),
            ops(&in_place_req)
        )),
    );
    let scn_written = format!("admission, {n} ns, Secret to write");
    pair_rows(
        out,
        &scn_written,
        &written,
        &written_metrics,
        WRITTEN_P99_MS,
        format!(
            "{} pairs, each in a namespace of its own created just before it (namespace, default ServiceAccount, \
             then the pair), answered by a standby: another holder has the Lease, so no fan-out races admission (a leader's \
             fan-out writes a new namespace's Secret within the ~100 ms the API server holds the namespace's first \
             pod, see the method), and a standby also reads a copy of the credential that status vouches for, which \
             a leader has in memory; {method}. Admission wrote {wrote} of the {} Secrets; {} webhook pod(s) admitted \
             without the Secret and {} before it was in the namespace (etcd revisions), {} control pod(s) with it",
            cfg.admission_new_samples,
            cfg.admission_new_samples,
            written.unnamed,
            written.secret_after,
            written.control_named
        ),
    );
    out.rows.push(
        Row::new(
            &scn_written,
            "API requests per admitted pod",
            written_metrics.api_requests / written_metrics.admitted().max(1.0),
            "req/pod",
        )
        .note(format!(
            "regcred_admission_api_requests_total rose by {} over {} reviews ({}); regcred counts a Secret create \
             (with the read of the vouched copy, and of what was in the way, if anything) as one, and a namespace \
             its cache has not seen yet as one more. The standby's requests in that window, from the audit log (its \
             Lease polling included): {}",
            written_metrics.api_requests,
            written_metrics.duration_count,
            written_metrics.outcomes(),
            ops(&written_req)
        )),
    );
    let rss_ref = "admission off (restart row)";
    let rss_target = format!("≤ +{RSS_DELTA_MIB} MiB");
    out.rows.push(
        Row::new(
            format!("memory, {n} ns"),
            "operator RSS 10 s after ready, admission on",
            on_ready.rss_mib(),
            "MiB",
        )
        .reference(rss_ref, off_rss)
        .target(&rss_target, on_ready.rss_mib() - off_rss <= RSS_DELTA_MIB)
        .note(format!(
            "a fresh operator serving the webhook (its CA and certificate made; the configuration installed after \
             this sample), started right after the restart row's operator stopped, on the same objects; ready in \
             {:.2} s",
            ready.as_secs_f64()
        )),
    );
    out.rows.push(
        Row::new(
            format!("memory, {n} ns"),
            format!("operator RSS after {} in-place admissions", cfg.admission_samples),
            after_in_place.rss_mib(),
            "MiB",
        )
        .reference(rss_ref, off_rss)
        .target(&rss_target, after_in_place.rss_mib() - off_rss <= RSS_DELTA_MIB),
    );
    out.rows.extend(burst_rows);
    out.details.insert(
        format!("admission_{n}"),
        json!({
            "in_place": {"pairs": in_place, "metrics": in_place_metrics, "requests": in_place_req},
            "to_write": {"pairs": written, "metrics": written_metrics, "requests": written_req, "written_by_admission": wrote},
            "rss_mib": {"admission_off_restart": off_rss, "on_ready": on_ready.rss_mib(), "after_in_place": after_in_place.rss_mib(), "at_end": at_end.rss_mib()},
        }),
    );
    Ok(())
}

/// Round-trip and "added" rows of one phase.
fn pair_rows(out: &mut Outcome, scn: &str, pairs: &Pairs, metrics: &AdmissionMetrics, p99_target: f64, note: String) {
    if pairs.with.is_empty() || pairs.without.is_empty() {
        out.rows.push(Row::failed(scn, "pod creation", "no samples"));
        return;
    }
    let (with, without) = (sorted(&pairs.with), sorted(&pairs.without));
    let control = "webhook skipped";
    out.rows.push(
        Row::new(scn, "pod create round-trip p50", pct(&with, 0.5), "ms")
            .reference(control, pct(&without, 0.5))
            .note(note),
    );
    out.rows.push(
        Row::new(scn, "pod create round-trip p99", pct(&with, 0.99), "ms").reference(control, pct(&without, 0.99)),
    );
    out.rows.push(Row::new(
        scn,
        "added by the webhook, p50",
        pct(&with, 0.5) - pct(&without, 0.5),
        "ms",
    ));
    let added = pct(&with, 0.99) - pct(&without, 0.99);
    out.rows.push(
        Row::new(scn, "added by the webhook, p99", added, "ms")
            .target(format!("< {p99_target} ms"), added < p99_target && pairs.unnamed == 0)
            .note(format!(
                "webhook pods: max {:.1} ms; control: max {:.1} ms. {}",
                with.last().expect("not empty"),
                without.last().expect("not empty"),
                metrics.summary()
            )),
    );
}

/// A GitOps-style burst: namespaces, each with its ServiceAccount and pods,
/// all at once on top of the `n` there are.
#[allow(clippy::too_many_arguments)]
async fn gitops_burst(
    cfg: &Config,
    w: &World,
    tracker: &Tracker,
    op: &world::RunningOperator,
    rc: &[String],
    password: &str,
    n: usize,
    out: &mut Outcome,
) -> anyhow::Result<Vec<Row>> {
    let (k, per) = (cfg.admission_burst_namespaces, cfg.admission_burst_pods);
    let total = k * per;
    progress(&format!("admission burst: {total} pods in {k} new namespaces"));
    let scn = format!("admission burst, {n} ns + {k} new × {per} pods");
    let burst = names("adm-burst", k);
    tracker.set_goal(rc, password, &burst);
    let wrote0 = logged(op, WROTE);
    let m0 = Metrics::parse(&op.metrics().await?);
    let a0 = w.audit.mark();
    let t0 = Instant::now();
    // Every namespace at once; in each, the namespace, its default
    // ServiceAccount, then its pods all at once, as `kubectl apply -f dir/`
    // or a GitOps sync sends them.
    let created: Vec<(String, Vec<(f64, Pod)>)> = futures::stream::iter(burst.clone())
        .map(|ns| async move {
            w.create_namespaces(std::slice::from_ref(&ns), 1).await?;
            let api: Api<Pod> = Api::namespaced(w.admin.clone(), &ns);
            let pods = futures::future::try_join_all((0..per).map(|j| {
                let api = api.clone();
                async move { create_timed(&api, &pod(&format!("app-{j:02}"), true), false).await }
            }))
            .await?;
            anyhow::Ok((ns, pods))
        })
        .buffer_unordered(k.max(1))
        .try_collect()
        .await?;
    let took = t0.elapsed();
    let conv = converge(tracker, t0, Duration::from_secs(120)).await;
    settle(2.0).await;
    let m1 = Metrics::parse(&op.metrics().await?);
    let a1 = w.audit.mark();
    let metrics = AdmissionMetrics::between(&m0, &m1);
    let req = w.audit.count(a0, a1, OPERATOR_USER)?;
    let wrote = logged(op, WROTE) - wrote0;

    let (mut unnamed, mut secret_after, mut latencies) = (0, 0, Vec::new());
    for (ns, pods) in &created {
        let secret = Api::<Secret>::namespaced(w.admin.clone(), ns)
            .get_opt(world::SOURCE)
            .await?;
        for (ms, p) in pods {
            latencies.push(*ms);
            if !named(p) {
                unnamed += 1;
            } else if !before(secret.as_ref(), p) {
                secret_after += 1;
            }
        }
    }
    let without = unnamed + secret_after;
    let latencies = sorted(&latencies);
    let mut rows = Vec::new();
    rows.push(
        Row::new(
            &scn,
            "pods admitted without the Secret in place",
            without as f64,
            "count",
        )
        .target("0", without == 0)
        .note(format!(
            "{total} pods in {k} new namespaces, all sent at once (each namespace: the namespace, its default \
                 ServiceAccount, then its {per} pods concurrently), on a control plane with {n} namespaces; {:.0}% \
                 admitted without the Secret: {unnamed} not naming it, {secret_after} naming it before it was in \
                 their namespace (etcd revisions). Admission wrote {wrote} of the {k} Secrets itself. Every pod was \
                 created in {:.2} s; {}. The first-try pull share on a node is not measured here (this control plane \
                 has no node): tests/node.rs pods_created_right_after_their_namespace measures it (50 namespaces, \
                 each created with its ServiceAccount and a pod back to back, on a real kubelet and containerd; it \
                 asserts every pod is admitted with its Secret in place and prints how many pulled on their first \
                 try)",
            100.0 * without as f64 / total.max(1) as f64,
            took.as_secs_f64(),
            match &conv {
                Ok(d) => format!(
                    "the fan-out had linked every ServiceAccount {:.2} s after the start",
                    d.as_secs_f64()
                ),
                Err(e) => format!("the fan-out: {e}"),
            }
        )),
    );
    if !latencies.is_empty() {
        rows.push(
            Row::new(&scn, "pod create round-trip p99", pct(&latencies, 0.99), "ms").note(format!(
                "{total} pods sent at once: p50 {:.1} ms, max {:.1} ms, mostly the API server's queue; {}",
                pct(&latencies, 0.5),
                latencies.last().expect("not empty"),
                metrics.summary()
            )),
        );
    }
    rows.push(
        Row::new(
            &scn,
            "API requests per admitted pod",
            metrics.api_requests / metrics.admitted().max(1.0),
            "req/pod",
        )
        .note(format!(
            "regcred_admission_api_requests_total rose by {} over {} reviews ({}); the operator's requests in the \
             burst, fan-out included: {}",
            metrics.api_requests,
            metrics.duration_count,
            metrics.outcomes(),
            ops(&req)
        )),
    );
    out.details.insert(
        "admission_burst".into(),
        json!({"latencies_ms": latencies, "unnamed": unnamed, "secret_after": secret_after,
               "written_by_admission": wrote, "metrics": metrics, "requests": req, "took_s": took.as_secs_f64()}),
    );
    Ok(rows)
}
