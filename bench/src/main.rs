//! `make bench`: regcred's release binary, run as a user runs it, against a
//! real etcd + kube-apiserver, with each figure printed next to its
//! reference measured in the same run (a plain client doing only the
//! necessary writes), and the table saved as JSON under `bench/results/`.
//!
//! Sizes come from the environment (see `config.rs`); `BENCH_SCALE=small`
//! is a quick check of the whole thing.

mod admission;
mod audit;
mod config;
mod floor;
mod identity;
mod procstat;
mod report;
mod scenario;
mod tracker;
mod world;

use std::process::{Command, ExitCode};
use std::time::Instant;

use serde_json::json;

use crate::report::Row;

/// How the figures were taken, printed under the table.
const METHOD: &str = "\
How measured: regcred is its release binary, started as a process (`regcred run --log-format=json`, RUST_LOG=info, as the chart runs it) and authenticated as its own
user `regcred-operator`; its API requests are counted by user from the API server's audit log (Metadata level for the operator
and the floor only). The raw floor is a plain kube client, user `bench-floor`, making only the requests a fan-out needs at
regcred's concurrency (16 namespaces at once; per namespace one Secret create, then one merge patch of the default
ServiceAccount read beforehand), with regcred's own bodies (built by its `build` functions; only its managed-by value and
credential name differ, at the same length), on the same control plane before the operator starts. Fan-out is the median of
paired rounds, each pair on a control plane of its own (3 up to 1,000 namespaces, 1 above; BENCH_FANOUT_ROUNDS). Times run until
the harness's watches see the last object.
Admission: after each size's restart, a fresh operator serving the webhook (--admission-addr on loopback, its own CA), called
by the API server through the chart's MutatingWebhookConfiguration (helm template, by URL). Pod creation is timed as the
client sees it, each pod created with the webhook paired with one without (labelled regcred.dev/admission: disabled, which
the chart's objectSelector skips), one at a time; 'added' is the difference of their percentiles. API requests per pod come
from regcred_admission_api_requests_total, its own answer time from regcred_admission_duration_seconds.
Per-ServiceAccount identity (part `identity`, bench/src/identity.rs): moto behind the testenv's counting proxy for STS and ECR,
exchanges counted there; its floor is a plain client doing per ServiceAccount a TokenRequest, the STS and ECR calls (unsigned)
in a slot of regcred's default pacing (50/s after a burst of 10), a Secret create and a ServiceAccount patch, 16 at once.
RSS and CPU come from /proc/<pid>/status VmRSS and /proc/<pid>/stat utime+stime. One control plane per size (etcd with
--unsafe-no-fsync, API Priority and Fairness off); the machine may be shared, see the load averages above.";

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR")])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// An error's first line for the table (the JSON keeps all of it).
fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or_default().to_string()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    regcred_testenv::init_crypto();
    let cfg = match config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let load_start = loadavg();
    eprintln!(
        "bench: scale {} (sizes {:?}, latency {} samples, idle {} s, {} unrelated Secrets, {} RCs × {} ns + {} burst; \
         admission {} + {} pod pairs, burst {} ns × {} pods; parts {}); operator {}",
        cfg.scale,
        cfg.sizes,
        cfg.latency_samples,
        cfg.idle_seconds,
        cfg.unrelated_secrets,
        cfg.multi_rcs,
        cfg.multi_namespaces,
        cfg.burst,
        cfg.admission_samples,
        cfg.admission_new_samples,
        cfg.admission_burst_namespaces,
        cfg.admission_burst_pods,
        cfg.parts.join(","),
        cfg.operator.display()
    );

    let mut out = scenario::Outcome::default();
    let mut errors = Vec::new();
    let largest = cfg.sizes.iter().copied().max().unwrap_or(0);
    if cfg.parts.iter().any(|p| p == "scale") {
        for &n in &cfg.sizes {
            if let Err(e) = scenario::scale(&cfg, n, n == largest, &mut out).await {
                eprintln!("bench: {n} namespaces: {e:#}");
                out.rows.push(Row::failed(
                    format!("{n} ns"),
                    "scenario did not finish",
                    first_line(&e),
                ));
                errors.push(format!("{n} namespaces: {e:#}"));
            }
        }
    }
    if cfg.parts.iter().any(|p| p == "admission") && !cfg.parts.iter().any(|p| p == "scale") {
        for &n in &cfg.sizes {
            if let Err(e) = scenario::admission_only(&cfg, n, n == largest, &mut out).await {
                eprintln!("bench: admission at {n} namespaces: {e:#}");
                out.rows.push(Row::failed(
                    format!("admission, {n} ns"),
                    "scenario did not finish",
                    first_line(&e),
                ));
                errors.push(format!("admission at {n} namespaces: {e:#}"));
            }
        }
    }
    if cfg.parts.iter().any(|p| p == "multi")
        && let Err(e) = scenario::multi(&cfg, &mut out).await
    {
        eprintln!("bench: multiple RegistryCredentials: {e:#}");
        out.rows
            .push(Row::failed("many RCs", "scenario did not finish", first_line(&e)));
        errors.push(format!("multiple RegistryCredentials: {e:#}"));
    }
    if cfg.parts.iter().any(|p| p == "identity")
        && let Err(e) = identity::run(&cfg, &mut out).await
    {
        eprintln!("bench: per-ServiceAccount identity: {e:#}");
        out.rows.push(Row::failed(
            format!("per-SA identity, {} ns", cfg.identity_namespaces),
            "scenario did not finish",
            first_line(&e),
        ));
        errors.push(format!("per-ServiceAccount identity: {e:#}"));
    }
    let took = clock.elapsed();
    let finished_at = jiff::Timestamp::now();

    let operator_version = Command::new(&cfg.operator)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let table = report::render(&out.rows);
    let unmet = out.rows.iter().filter(|r| r.met == Some(false)).count();
    println!();
    println!(
        "regcred benchmark, scale {}, {} ({}), {} CPUs, load {} at start, {} at end, took {:.0} s",
        cfg.scale,
        finished_at.strftime("%Y-%m-%d %H:%M UTC"),
        git(&["rev-parse", "--short", "HEAD"]),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_start,
        loadavg(),
        took.as_secs_f64()
    );
    println!("{table}");
    println!();
    for (k, v) in &out.details {
        if let Some(summary) = v.get("summary") {
            println!(
                "{k}: {} ({})",
                summary.as_str().unwrap_or_default(),
                v["path"].as_str().unwrap_or_default()
            );
        }
    }
    println!("{METHOD}");
    println!("{unmet} figure(s) missed their target.");

    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let doc = json!({
        "schema": 1,
        "started_at": started_at.to_string(),
        "finished_at": finished_at.to_string(),
        "duration_seconds": took.as_secs_f64(),
        "git": {"commit": git(&["rev-parse", "HEAD"]), "dirty": dirty},
        "operator": {"binary": cfg.operator, "version": operator_version},
        "host": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
        },
        "config": cfg,
        "rows": out.rows,
        "details": out.details,
        "errors": errors,
        "table": table,
    });
    let suffix = if cfg.scale == "full" {
        cfg.results_suffix.clone()
    } else {
        format!("-{}{}", cfg.scale, cfg.results_suffix)
    };
    let path = cfg
        .results_dir
        .join(format!("{}{suffix}.json", started_at.strftime("%Y%m%dT%H%M%SZ")));
    let written = std::fs::create_dir_all(&cfg.results_dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).expect("JSON serializes") + "\n",
        )
    });
    match written {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => {
            eprintln!("bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
