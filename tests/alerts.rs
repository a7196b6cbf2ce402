//! The chart's alerts and dashboard: the PrometheusRule's rules as the chart
//! renders them pass `promtool test rules` (the cases in tests/alerts/), every
//! alert says what to do and has a case that makes it fire, the dashboard's
//! queries are valid PromQL over series regcred exports, and a real Prometheus
//! scraping the real operator fires the expiry alert for a credential that
//! expires soon, and clears it once a long-lived one replaces it.
//!
//! promtool and prometheus come from Debian's `prometheus` package
//! (`make tools`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use regcred_testenv::fakes::google::TokenServer;
use regcred_testenv::process::Process;
use regcred_testenv::{eventually, free_port};
use serde::Deserialize;
use serde_json::{Value, json};
use support::*;

const RELEASE: &str = "regcred";
/// The job the chart's RegcredOperatorDown expects: the metrics Service's name.
const JOB: &str = "regcred-metrics";
/// Long enough for a one-minute `for`, scrapes and evaluations every 2 s.
const ALERT_WAIT: Duration = Duration::from_secs(300);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A binary of Debian's `prometheus` package, or a panic saying how to get it.
fn prometheus_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .chain([path])
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} not found: run `make tools` (hack/install-tools.sh installs Debian's prometheus package)")
    })
}

/// Run a tool; its stdout and stderr together, or a panic with them.
fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// `helm template` of one template of the chart into `namespace`, with `sets`.
fn helm_template(namespace: &str, template: &str, sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(regcred_testenv::tools::helm_binary());
    cmd.current_dir(root().join("charts/regcred"))
        .args(["template", RELEASE, ".", "--namespace", namespace])
        .args(["--show-only", template]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("running helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The one object a template renders, as JSON.
fn rendered(namespace: &str, template: &str, sets: &[&str]) -> Value {
    let yaml = helm_template(namespace, template, sets).unwrap_or_else(|e| panic!("helm template: {e}"));
    Value::deserialize(serde_yaml::Deserializer::from_str(&yaml).next().expect("one document")).unwrap()
}

/// The PrometheusRule the chart renders into `namespace` with `sets`.
fn prometheus_rule(namespace: &str, sets: &[&str]) -> Value {
    let mut all = vec!["prometheusRule.enabled=true"];
    all.extend(sets);
    rendered(namespace, "templates/prometheusrule.yaml", &all)
}

/// The rules of the chart's PrometheusRule (its `spec`), as a rules file.
fn rules_file(namespace: &str, sets: &[&str]) -> String {
    serde_yaml::to_string(&prometheus_rule(namespace, sets)["spec"]).unwrap()
}

fn alerts(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// The promtool cases: tests/alerts/*.yaml, by file name.
fn cases() -> Vec<(String, String)> {
    let dir = root().join("tests/alerts");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promtool cases in {}", dir.display());
    files
}

/// `promtool check rules` and `promtool test rules` on the chart's rules as
/// it renders them with the default values.
#[test]
fn promtool_passes_the_charts_rules_and_every_case() {
    let promtool = prometheus_tool("promtool");
    let dir = regcred_testenv::scratch::dir("promtool").unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules_file(CREDS_NS, &[])).unwrap();
    let mut check = Command::new(&promtool);
    check.current_dir(dir.path()).args(["check", "rules", "rules.yaml"]);
    println!("{}", run(check, "promtool check rules"));
    let mut test = Command::new(&promtool);
    test.current_dir(dir.path()).args(["test", "rules"]);
    for (name, text) in cases() {
        std::fs::write(dir.path().join(&name), text).unwrap();
        test.arg(name);
    }
    println!("{}", run(test, "promtool test rules"));
}

/// Every alert has a severity, says what happened and what to do, links the
/// README, and has a promtool case in which it fires.
#[test]
fn every_alert_says_what_to_do_and_has_a_case_that_fires_it() {
    let rule = prometheus_rule(CREDS_NS, &[]);
    let names: BTreeSet<&str> = alerts(&rule).iter().map(|a| a["alert"].as_str().unwrap()).collect();
    assert!(names.len() >= 10, "{names:?}");
    for alert in alerts(&rule) {
        let name = alert["alert"].as_str().unwrap();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            let text = alert["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "{name}: no {annotation}");
        }
        assert!(
            alert["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with("README.md#alerts-and-dashboard"),
            "{name}"
        );
    }
    let mut fired = BTreeSet::new();
    for (file, text) in cases() {
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for case in doc["tests"].as_array().unwrap() {
            for t in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = t["alertname"].as_str().unwrap().to_string();
                assert!(names.contains(name.as_str()), "{file}: no alert {name} in the chart");
                if t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    fired.insert(name);
                }
            }
        }
    }
    let missing: Vec<&&str> = names.iter().filter(|n| !fired.contains(**n)).collect();
    assert!(missing.is_empty(), "alerts no promtool case fires: {missing:?}");
}

/// The values reach the rules: the expiry threshold, the scrape targets of
/// RegcredOperatorDown (the ServiceMonitor's by default), the runbook URL,
/// the labels; a threshold that is not a positive number is refused; off by
/// default.
#[test]
fn prometheus_rule_follows_its_values() {
    let expr = |rule: &Value, name: &str| {
        alerts(rule)
            .iter()
            .find(|a| a["alert"] == name)
            .map(|a| a["expr"].as_str().unwrap().to_string())
            .unwrap()
    };
    let default = prometheus_rule("monitoring", &[]);
    assert_eq!(default["metadata"]["namespace"], "monitoring");
    assert!(expr(&default, "RegcredCredentialExpiringSoon").contains("< 600\n"));
    assert_eq!(
        expr(&default, "RegcredOperatorDown"),
        format!(r#"absent(up{{job="{JOB}",namespace="monitoring"}} == 1)"#)
    );
    let text = serde_json::to_string(&default).unwrap();
    assert!(!text.contains("REGCRED_"), "a placeholder left unreplaced: {text}");

    let custom = prometheus_rule(
        "monitoring",
        &[
            "prometheusRule.expiryThresholdSeconds=1800",
            "prometheusRule.targetSelector=job=\"regcred\"",
            "prometheusRule.runbookUrl=https://wiki.example.com/regcred",
            "prometheusRule.labels.release=kube-prometheus-stack",
        ],
    );
    assert!(expr(&custom, "RegcredCredentialExpiringSoon").contains("< 1800\n"));
    assert_eq!(
        expr(&custom, "RegcredOperatorDown"),
        r#"absent(up{job="regcred"} == 1)"#
    );
    assert!(
        alerts(&custom)
            .iter()
            .all(|a| a["annotations"]["runbook_url"] == "https://wiki.example.com/regcred")
    );
    assert_eq!(custom["metadata"]["labels"]["release"], "kube-prometheus-stack");

    for bad in ["0", "-5"] {
        let set = format!("prometheusRule.expiryThresholdSeconds={bad}");
        let err = helm_template(
            CREDS_NS,
            "templates/prometheusrule.yaml",
            &["prometheusRule.enabled=true", &set],
        )
        .expect_err(bad);
        assert!(err.contains("must be a positive number of seconds"), "{err}");
    }
    for template in ["templates/prometheusrule.yaml", "templates/dashboard-configmap.yaml"] {
        let err = helm_template(CREDS_NS, template, &[]).expect_err("off by default");
        assert!(err.contains("could not find template"), "{template}: {err}");
    }
}

/// The dashboard ConfigMap carries the dashboard file, labelled for
/// Grafana's sidecar; every panel query is valid PromQL (promtool parses it
/// as a recording rule) over series regcred exports or Prometheus's own `up`.
#[test]
fn dashboard_queries_are_valid_promql_over_regcreds_series() {
    let cm = rendered(
        CREDS_NS,
        "templates/dashboard-configmap.yaml",
        &["dashboards.enabled=true"],
    );
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let file = std::fs::read_to_string(root().join("charts/regcred/dashboards/regcred.json")).unwrap();
    assert_eq!(cm["data"]["regcred.json"].as_str().unwrap().trim(), file.trim());
    let dashboard: Value = serde_json::from_str(&file).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "regcred");

    let exported = every_series();
    let families: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let known = |name: &str| {
        name == "up"
            || ["", "_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|f| families.contains(f)))
    };
    let mut rules = Vec::new();
    let mut titles = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        titles.insert(panel["title"].as_str().unwrap().to_string());
        for target in targets {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "5m");
            for name in metric_names(&expr) {
                used.insert(name.clone());
                assert!(
                    known(&name),
                    "panel {}: {name} is not a series regcred exports ({families:?})",
                    panel["title"]
                );
            }
            rules.push(json!({"record": format!("panel:{}", rules.len()), "expr": expr}));
        }
    }
    for series in [
        "regcred_credential_expiry_timestamp_seconds",
        "regcred_image_pull_failures_total",
        "regcred_admission_duration_seconds_bucket",
    ] {
        assert!(used.contains(series), "{series} not found among {used:?}");
    }
    for wanted in ["expir", "renew", "namespaces", "cause", "repair", "admission"] {
        assert!(
            titles.iter().any(|t| t.to_lowercase().contains(wanted)),
            "no panel about {wanted}: {titles:?}"
        );
    }
    let dir = regcred_testenv::scratch::dir("promtool").unwrap();
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), serde_yaml::to_string(&file).unwrap()).unwrap();
    let mut check = Command::new(prometheus_tool("promtool"));
    check.current_dir(dir.path()).args(["check", "rules", "dashboard.yaml"]);
    run(check, "promtool check rules on the dashboard's queries");
}

/// The operator's `/metrics` with a sample of every family (an empty family
/// is not listed).
fn every_series() -> String {
    use regcred::telemetry::{ErrorLabels, Metrics, PullFailureLabels, RepairLabels};
    let m = Metrics::default();
    m.mint("GCR", Some("MintFailed"));
    m.set_expiry("gcr", &["gcr.io".into()], Some(1_800_000_000));
    m.set_namespaces("gcr", 2, 1);
    m.set_pull_auth("gcr", "gcr.io", "Healthy");
    m.admission("injected", Duration::from_millis(2), 0);
    drop(m.reconcile_timer());
    let error = ErrorLabels { error: "Kube".into() };
    m.reconcile_errors.get_or_create(&error).inc();
    let failure = PullFailureLabels {
        credential: "gcr".into(),
        cause: "CredentialExpired".into(),
    };
    m.image_pull_failures.get_or_create(&failure).inc();
    let repair = RepairLabels {
        credential: "gcr".into(),
        action: "mint".into(),
    };
    m.image_pull_repairs.get_or_create(&repair).inc();
    m.encode()
}

/// The metric names in a PromQL expression (identifiers followed by `{`,
/// `[` or the end of a selector, not functions, keywords or labels).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.char_indices().peekable();
    let mut in_braces = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            '"' => {
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                }
            }
            c if !in_braces && (c.is_ascii_alphabetic() || c == '_') => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[i..end];
                let next = expr[end..].trim_start().chars().next();
                if word.contains('_') && next != Some('(') && !expr[..i].trim_end().ends_with("by (") {
                    names.push(word.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

/// A Prometheus of the test's own: loopback port, data dir in a temp dir,
/// scraping `target` every 2 s as job `regcred-metrics` of the release
/// namespace, evaluating the chart's rules every 2 s; stopped when dropped.
struct Prometheus {
    url: String,
    http: reqwest::Client,
    dir: PathBuf,
    // Field order is drop order: the process stops before its data dir goes.
    _process: Process,
    _dir: Box<dyn std::any::Any + Send>,
}

impl Prometheus {
    async fn start(target: &str, rules: &str) -> Self {
        let tmp = regcred_testenv::scratch::dir("prometheus").unwrap();
        let dir = tmp.path().to_path_buf();
        let config = json!({
            "global": {"scrape_interval": "2s", "scrape_timeout": "1s", "evaluation_interval": "2s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{
                "job_name": JOB,
                "static_configs": [{"targets": [target], "labels": {"namespace": CREDS_NS}}],
            }],
        });
        std::fs::write(dir.join("prometheus.yml"), serde_yaml::to_string(&config).unwrap()).unwrap();
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(prometheus_tool("prometheus"));
        cmd.current_dir(&dir)
            .arg("--config.file=prometheus.yml")
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"));
        let process = Process::spawn("prometheus", cmd, &dir.join("prometheus.log")).expect("prometheus starts");
        let prometheus = Self {
            url: format!("http://{addr}"),
            http: reqwest::Client::new(),
            dir,
            _process: process,
            _dir: Box::new(tmp),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        let http = prometheus.http.clone();
        eventually(Duration::from_secs(60), "Prometheus ready", || {
            let request = http.get(&ready);
            async move { request.send().await.ok()?.status().is_success().then_some(()) }
        })
        .await;
        prometheus
    }

    /// `GET /api/v1/<path>`'s `data`, `None` while Prometheus cannot answer.
    async fn api(&self, path: &str) -> Option<Value> {
        let response = self.http.get(format!("{}/api/v1/{path}", self.url)).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The alerts now pending or firing.
    async fn alerts(&self) -> Vec<Value> {
        let data = self.api("alerts").await.unwrap_or_default();
        data["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until `pred` holds for the alerts (polled every second).
    async fn wait_alerts<T>(&self, what: &str, pred: impl Fn(&[Value]) -> Option<T>) -> T {
        let pred = &pred;
        eventually(ALERT_WAIT, what, || async move {
            let alerts = self.alerts().await;
            let found = pred(&alerts);
            if found.is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            found
        })
        .await
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// `name`'s alert about RegistryCredential `credential`, if pending or firing.
fn alert_about<'a>(alerts: &'a [Value], name: &str, credential: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == name && a["labels"]["credential"] == credential)
}

/// A real Prometheus scrapes the real operator with the chart's rules
/// loaded: a Google token that expires in five minutes (within the default
/// 600 s threshold) fires RegcredCredentialExpiringSoon once its minute
/// of `for` has passed; a changed source Secret mints a one-hour token at
/// once, and the alert clears.
#[tokio::test]
async fn a_real_prometheus_fires_the_expiry_alert_from_the_operators_metrics() {
    let google = TokenServer::start().await.expect("google token endpoint");
    google.set_token(canary("soon"), Duration::from_secs(300));
    let target = metrics_addr();
    let metrics = format!("--metrics-addr={target}");
    let h = Harness::start_with(&[&metrics], &[]).await;
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    namespace_with_default_sa(&h.client, "alerts-a", &[]).await;
    apply_rc(&h.client, gcr_rc(&["alerts-a"])).await;
    h.wait_status("gcr", "Ready with a five-minute token", |s| {
        is_condition(s, "Ready", "True") && s.not_after.is_some()
    })
    .await;
    let minted = Instant::now();

    let prometheus = Prometheus::start(&target, &rules_file(CREDS_NS, &[])).await;
    let started = Instant::now();
    let guard = LogOnPanic(&prometheus);
    let firing = prometheus
        .wait_alerts("RegcredCredentialExpiringSoon firing for gcr", |alerts| {
            alert_about(alerts, "RegcredCredentialExpiringSoon", "gcr")
                .filter(|a| a["state"] == "firing")
                .cloned()
        })
        .await;
    let fired = started.elapsed();
    println!(
        "BENCH alerts expiry_alert_fired_after_prometheus_start_s={:.1}",
        fired.as_secs_f64()
    );
    println!(
        "BENCH alerts expiry_alert_fired_after_mint_s={:.1}",
        minted.elapsed().as_secs_f64()
    );
    assert_eq!(firing["labels"]["registry"], "gcr.io");
    assert_eq!(firing["labels"]["severity"], "warning");
    let summary = firing["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("RegistryCredential gcr's credential for gcr.io expires in "),
        "{summary}"
    );
    assert!(
        firing["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("kubectl describe registrycredential gcr"),
        "{firing}"
    );
    // Up, scraped under the chart's job: RegcredOperatorDown's expression is empty.
    let down = prometheus
        .api(&format!(
            "query?query={}",
            urlencode(&format!(r#"absent(up{{job="{JOB}",namespace="{CREDS_NS}"}} == 1)"#))
        ))
        .await
        .expect("query answered");
    assert_eq!(down["result"], json!([]), "the operator is up: {down}");

    // A changed source Secret is minted at once; the new token lives an hour.
    google.set_token(canary("later"), Duration::from_secs(3600));
    let renewed_from = Instant::now();
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    prometheus
        .wait_alerts("RegcredCredentialExpiringSoon cleared for gcr", |alerts| {
            alert_about(alerts, "RegcredCredentialExpiringSoon", "gcr")
                .is_none()
                .then_some(())
        })
        .await;
    println!(
        "BENCH alerts expiry_alert_cleared_after_new_source_s={:.1}",
        renewed_from.elapsed().as_secs_f64()
    );
    drop(guard);
}

/// Prometheus's log tail when the test fails.
struct LogOnPanic<'a>(&'a Prometheus);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prometheus log tail ---\n{}", self.0.log_tail());
        }
    }
}

/// Percent-encoding of a query parameter (RFC 3986 unreserved kept).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A soak-like run on a real node under a real Prometheus, for the README's
/// picture of the dashboard (docs/dashboard.svg, drawn by
/// hack/dashboard-picture.py from this Prometheus at the end). Run by hand:
/// `cargo test --test alerts record_a_run -- --ignored --nocapture`
/// (about 10 minutes). REGCRED_DASHBOARD_SVG overrides the output path.
///
/// On the node: a static credential for four namespaces, one of which holds
/// a foreign Secret of the same name (3/4 synced); a Google credential whose
/// 3-minute tokens are renewed on schedule; another whose token endpoint
/// fails after the first mint, so its token expires, a pod pulling then fails
/// CredentialExpired, and the endpoint recovers later; a wrong password
/// (CredentialRejected) and a missing tag (ImageNotFound); and a pod created
/// every 15 s through the admission webhook.
#[tokio::test]
#[ignore = "records the README's dashboard picture; run by hand"]
async fn record_a_run_for_the_dashboard_picture() {
    let s = support::node_bed::Scene::new("dashboard").await;
    let target = s.bed.metrics.trim_start_matches("http://").trim_end_matches("/metrics");
    let prometheus = Prometheus::start(target, &rules_file(CREDS_NS, &[])).await;
    let _guard = LogOnPanic(&prometheus);
    let start = unix_now() - 5.0;
    let began = Instant::now();
    let (hub, _refused) = dashboard_static_credentials(&s).await;
    let (_google, _gar) = support::node_bed::short_lived_google(
        &s,
        "dash-gar",
        "gar-dash.regcred.test",
        Duration::from_secs(180),
        &[support::node_bed::ADMISSION_LABEL],
    )
    .await;
    let (failing, _gar_failing) = support::node_bed::short_lived_google(
        &s,
        "dash-expiring",
        "gar-expiring.regcred.test",
        Duration::from_secs(150),
        &[support::node_bed::ADMISSION_LABEL],
    )
    .await;
    // Renewed at most once a minute, a 20 s token is expired 40 s of every
    // minute: a pull then fails CredentialExpired and is repaired (mint).
    let (_short, _gar_short) = support::node_bed::short_lived_google(
        &s,
        "dash-short",
        "gar-short.regcred.test",
        Duration::from_secs(20),
        &[support::node_bed::ADMISSION_LABEL],
    )
    .await;
    failing.set_fault(regcred_testenv::fakes::Fault::Status {
        code: 503,
        retry_after: None,
    });
    let mut created: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    while began.elapsed() < Duration::from_secs(540) {
        n += 1;
        for (ns, image) in [
            ("dash-a", format!("{}/team/app:1", hub.host())),
            ("dash-gar", "gar-dash.regcred.test/team/app:1".to_string()),
        ] {
            let name = format!("app-{n}");
            s.create_pod(ns, &name, &image).await;
            created.push((ns.to_string(), name));
        }
        while created.len() > 8 {
            let (ns, name) = created.remove(0);
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(s.client.clone(), &ns);
            let _ = pods.delete(&name, &Default::default()).await;
        }
        if n % 4 == 0 {
            let name = format!("app-{n}");
            s.create_pod("dash-short", &name, "gar-short.regcred.test/team/app:1")
                .await;
            created.push(("dash-short".to_string(), name));
        }
        if n == 12 {
            s.create_pod("dash-expiring", "app", "gar-expiring.regcred.test/team/app:1")
                .await;
        }
        if n == 24 {
            failing.set_fault(regcred_testenv::fakes::Fault::None);
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let end = unix_now();
    let alerts = prometheus.alerts().await;
    for a in &alerts {
        println!("alert {} {} {}", a["labels"]["alertname"], a["state"], a["labels"]);
    }
    let out = std::env::var("REGCRED_DASHBOARD_SVG")
        .unwrap_or_else(|_| root().join("docs/dashboard.svg").display().to_string());
    let caption = format!(
        "A {:.0}-minute run of regcred on a real kubelet + containerd node (tests/alerts.rs record_a_run_for_the_dashboard_picture), scraped every 2 s",
        (end - start) / 60.0
    );
    let mut draw = Command::new("python3");
    draw.arg(root().join("hack/dashboard-picture.py"))
        .args(["--prometheus", &prometheus.url])
        .args(["--start", &format!("{start:.0}"), "--end", &format!("{end:.0}")])
        .args(["--caption", &caption, "--out", &out])
        .arg(format!("--save={}", root().join("target/dashboard-run.json").display()))
        .current_dir(root());
    println!("{}", run(draw, "hack/dashboard-picture.py"));
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The static credential of the recorded run: four namespaces through the
/// admission webhook, one holding a foreign Secret of the same name; a
/// wrong password for another registry and a missing tag, pulled once each.
async fn dashboard_static_credentials(
    s: &support::node_bed::Scene,
) -> (regcred_testenv::registry::Registry, regcred_testenv::registry::Registry) {
    use regcred_testenv::registry::{Auth, Registry};
    use support::node_bed::ADMISSION_LABEL;
    let password = canary("dash-hub");
    let hub = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), password.clone())],
    })
    .await
    .expect("htpasswd registry");
    app_image(&hub, "team/app").await;
    s.bed.node.trust_registry(&hub).unwrap();
    for ns in ["dash-a", "dash-b", "dash-c", "dash-d"] {
        namespace_with_default_sa(&s.client, ns, &[ADMISSION_LABEL, ("dash", "hub")]).await;
    }
    let foreign: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "dash-hub", "namespace": "dash-d"},
        "stringData": {"note": "not regcred's"},
    }))
    .unwrap();
    kube::Api::namespaced(s.client.clone(), "dash-d")
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    put_source_secret(&s.client, "dash-hub", "alice", &password).await;
    let target = json!({"namespaces": {"selector": {"matchLabels": {"dash": "hub"}}}});
    let mut rc = static_rc("dash-hub", hub.host(), "dash-hub", target);
    rc["spec"]["healthCheck"] = json!({"image": "team/app:1", "interval": "30s"});
    apply_rc(&s.client, rc).await;
    s.wait_pull_secrets("dash-a", "default", &["dash-hub"]).await;
    s.create_pod("dash-b", "missing-tag", &format!("{}/team/app:2", hub.host()))
        .await;

    let refused = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), canary("dash-right"))],
    })
    .await
    .expect("htpasswd registry");
    app_image(&refused, "team/app").await;
    s.bed.node.trust_registry(&refused).unwrap();
    namespace_with_default_sa(&s.client, "dash-refused", &[ADMISSION_LABEL]).await;
    put_source_secret(&s.client, "dash-refused", "alice", &canary("dash-wrong")).await;
    let target = json!({"namespaces": {"names": ["dash-refused"]}});
    let mut rc = static_rc("dash-refused", refused.host(), "dash-refused", target);
    rc["spec"]["healthCheck"] = json!({"image": "team/app:1", "interval": "30s"});
    apply_rc(&s.client, rc).await;
    s.wait_pull_secrets("dash-refused", "default", &["dash-refused"]).await;
    s.create_pod("dash-refused", "app", &format!("{}/team/app:1", refused.host()))
        .await;
    (hub, refused)
}
