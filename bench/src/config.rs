//! Sizes and paths, from the environment. `BENCH_SCALE=full` (the default,
//! what `make bench` runs) measures what issue 13 asks for;
//! `BENCH_SCALE=small` runs the same scenarios a tenth the size as a quick
//! check. Each size can also be set on its own.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub scale: String,
    /// Namespace counts for fan-out, rotation, RSS and CPU, each on a fresh control plane.
    pub sizes: Vec<usize>,
    /// New namespaces created one at a time on top of the largest size.
    pub latency_samples: usize,
    pub idle_seconds: u64,
    pub unrelated_secrets: usize,
    pub unrelated_secret_bytes: usize,
    /// Paired fan-outs (regcred and the raw floor) at each size, each pair on
    /// a control plane of its own; the table reports their medians. `None`:
    /// 3 up to 1,000 namespaces, where one pair is noisiest, 1 above.
    pub fanout_rounds: Option<usize>,
    pub multi_rcs: usize,
    pub multi_namespaces: usize,
    pub burst: usize,
    /// Namespaces written at once: regcred's fan-out `CONCURRENCY` (src/reconcile/fanout.rs).
    pub concurrency: usize,
    /// Pod pairs (webhook called, then not, or the other way) in existing
    /// namespaces, the Secret in place, at each size.
    pub admission_samples: usize,
    /// Pod pairs each in a namespace of its own created just before it, the
    /// Secret to be written, at each size.
    pub admission_new_samples: usize,
    /// The admission burst, on the largest size: this many new namespaces at
    /// once, each with its ServiceAccount and `admission_burst_pods` pods.
    pub admission_burst_namespaces: usize,
    pub admission_burst_pods: usize,
    /// Per-ServiceAccount identity (part `identity`): namespaces, each with
    /// one annotated `default` ServiceAccount, and the distinct IAM roles
    /// (one account each) they name, round robin.
    pub identity_namespaces: usize,
    pub identity_roles: usize,
    /// Appended to the result file's name (after the scale's), e.g. `-identity`.
    pub results_suffix: String,
    /// Which parts run: `scale` (fan-out, rotation, RSS, CPU, latency, idle,
    /// unrelated Secrets), `admission` (the Pod webhook at each size: on the
    /// control plane `scale` made, or on one of its own without `scale`), `multi`
    /// and `identity` (per-ServiceAccount identity, src/reconcile/workload.rs).
    pub parts: Vec<String>,
    pub operator: PathBuf,
    pub results_dir: PathBuf,
    pub logs_dir: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|e| anyhow::anyhow!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let scale = std::env::var("BENCH_SCALE").unwrap_or_else(|_| "full".into());
        let small = match scale.as_str() {
            "full" => false,
            "small" => true,
            other => anyhow::bail!("BENCH_SCALE={other}: use full (the default) or small"),
        };
        let pick = |full: usize, smaller: usize| if small { smaller } else { full };
        let sizes = match std::env::var("BENCH_SIZES") {
            Ok(v) => v
                .split(',')
                .map(|s| s.trim().parse::<usize>().with_context(|| format!("BENCH_SIZES={v}")))
                .collect::<anyhow::Result<Vec<_>>>()?,
            Err(_) => vec![pick(1_000, 100), pick(10_000, 1_000)],
        };
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ is inside the workspace")
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let operator = std::env::var_os("REGCRED_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("release").join("regcred"));
        anyhow::ensure!(
            operator.is_file(),
            "no regcred binary at {}: `make bench` builds it (cargo build --release --bin regcred), \
             or point REGCRED_BENCH_OPERATOR at one",
            operator.display()
        );
        let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "scale,admission,multi,identity".into());
        Ok(Self {
            sizes,
            latency_samples: env_or("BENCH_LATENCY_SAMPLES", pick(200, 50))?,
            idle_seconds: env_or("BENCH_IDLE_SECONDS", pick(120, 20) as u64)?,
            unrelated_secrets: env_or("BENCH_UNRELATED_SECRETS", pick(5_000, 500))?,
            unrelated_secret_bytes: env_or("BENCH_UNRELATED_SECRET_BYTES", 100 * 1024)?,
            fanout_rounds: match std::env::var("BENCH_FANOUT_ROUNDS") {
                Ok(v) => Some(
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&r| r >= 1)
                        .with_context(|| format!("BENCH_FANOUT_ROUNDS={v}: a count of at least 1"))?,
                ),
                Err(_) => None,
            },
            multi_rcs: env_or("BENCH_MULTI_RCS", 20)?,
            multi_namespaces: env_or("BENCH_MULTI_NAMESPACES", pick(1_000, 100))?,
            burst: env_or("BENCH_BURST", pick(500, 50))?,
            admission_samples: env_or("BENCH_ADMISSION_SAMPLES", pick(500, 200))?,
            admission_new_samples: env_or("BENCH_ADMISSION_NEW_SAMPLES", pick(150, 50))?,
            admission_burst_namespaces: env_or("BENCH_ADMISSION_BURST_NAMESPACES", 50)?,
            admission_burst_pods: env_or("BENCH_ADMISSION_BURST_PODS", 10)?,
            concurrency: 16,
            identity_namespaces: env_or("BENCH_IDENTITY_NAMESPACES", pick(1_000, 100))?,
            identity_roles: env_or("BENCH_IDENTITY_ROLES", 10)?,
            results_suffix: std::env::var("BENCH_RESULTS_SUFFIX").unwrap_or_default(),
            parts: parts.split(',').map(|s| s.trim().to_string()).collect(),
            operator,
            results_dir: std::env::var_os("BENCH_RESULTS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("bench").join("results")),
            logs_dir: target.join("bench-logs"),
            scale,
        })
    }

    /// Paired fan-outs at `n` namespaces.
    pub fn fanout_rounds(&self, n: usize) -> usize {
        self.fanout_rounds.unwrap_or(if n <= 1_000 { 3 } else { 1 })
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_seconds)
    }
}
