//! One benchmark control plane: etcd + kube-apiserver with an audit log of
//! the measured users, the CRD, the source Secret, namespaces each with a
//! `default` ServiceAccount, and the regcred release binary as a process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use regcred_testenv::{ControlPlane, Operator, objects};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::audit::{self, AuditLog};
use crate::procstat::{self, Sample};

pub const CREDS_NS: &str = "regcred-system";
/// The source Secret every benchmark RegistryCredential reads.
pub const SOURCE: &str = "hub";
pub const USERNAME: &str = "bench";
/// The operator authenticates as this user, so its requests can be told apart.
pub const OPERATOR_USER: &str = "regcred-operator";
/// The raw-floor client's user.
pub const FLOOR_USER: &str = "bench-floor";
/// What the harness creates objects with: wide enough that set-up is quick,
/// narrow enough that the 2-core API server stays responsive.
const SETUP_CONCURRENCY: usize = 32;
/// Namespaces the control plane makes itself, plus the credentials namespace:
/// excluded, so that the operator's writes are exactly the benchmark's namespaces.
const SYSTEM_NAMESPACES: [&str; 5] = ["default", "kube-system", "kube-public", "kube-node-lease", CREDS_NS];

const CRD: &str = include_str!("../../crds/regcred.dev_registrycredentials.yaml");

pub struct World {
    pub admin: Client,
    pub audit: AuditLog,
    pub cp: ControlPlane,
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("regcred-bench-").tempdir()?;
        let policy = dir.path().join("audit-policy.yaml");
        std::fs::write(&policy, audit::policy(&[OPERATOR_USER, FLOOR_USER]))?;
        let log = dir.path().join("audit.log");
        let cp = ControlPlane::start_with_apiserver_args(&audit::apiserver_args(&policy, &log)).await?;
        cp.install_crd(CRD).await?;
        let admin = cp.client().await?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &objects::namespace(CREDS_NS, &[]))
            .await?;
        let world = Self {
            admin,
            audit: AuditLog::new(log),
            cp,
            _dir: dir,
        };
        world.set_password("pw-0").await?;
        Ok(world)
    }

    /// CPU seconds etcd and kube-apiserver have used so far.
    pub fn control_plane_cpu(&self) -> anyhow::Result<f64> {
        self.cp
            .pids()
            .into_iter()
            .map(|pid| procstat::sample(pid).map(|s| s.cpu_seconds))
            .sum()
    }

    /// A client authenticating as `user` (in `system:masters`).
    pub async fn client_for(&self, user: &str) -> anyhow::Result<Client> {
        let kc = self.cp.kubeconfig_for(user, &["system:masters"])?;
        self.cp.client_from(&kc).await
    }

    /// Write the source Secret's password (the first call creates it).
    pub async fn set_password(&self, password: &str) -> anyhow::Result<()> {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), CREDS_NS);
        let secret = objects::secret(SOURCE, &[("username", USERNAME), ("password", password)]);
        api.patch(
            SOURCE,
            &PatchParams::apply("regcred-bench").force(),
            &Patch::Apply(&secret),
        )
        .await
        .context("writing the source Secret")?;
        Ok(())
    }

    /// Create each namespace and then its `default` ServiceAccount, as the
    /// controller-manager (absent here) would.
    pub async fn create_namespaces(&self, names: &[String], concurrency: usize) -> anyhow::Result<()> {
        futures::stream::iter(names.iter().cloned())
            .map(|ns| create_namespace(self.admin.clone(), ns))
            .buffer_unordered(concurrency)
            .try_collect::<()>()
            .await
    }

    pub async fn create_namespaces_for_setup(&self, names: &[String]) -> anyhow::Result<()> {
        let started = Instant::now();
        self.create_namespaces(names, SETUP_CONCURRENCY).await?;
        eprintln!(
            "bench: {} namespaces with a default ServiceAccount in {:.1} s",
            names.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Create RegistryCredential `name`: the static provider reading the
    /// source Secret, writing Secret `name` into every namespace but the system ones.
    pub async fn apply_rc(&self, name: &str) -> anyhow::Result<()> {
        let gvk = GroupVersionKind::gvk("regcred.dev", "v1alpha1", "RegistryCredential");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "registrycredentials");
        let rc: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "regcred.dev/v1alpha1",
            "kind": "RegistryCredential",
            "metadata": {"name": name},
            "spec": rc_spec(),
        }))?;
        Api::<DynamicObject>::all_with(self.admin.clone(), &ar)
            .create(&PostParams::default(), &rc)
            .await
            .with_context(|| format!("creating RegistryCredential {name}"))?;
        Ok(())
    }

    /// `count` Opaque Secrets of `bytes` each, spread over `namespaces`,
    /// that no RegistryCredential has anything to do with.
    pub async fn create_unrelated_secrets(
        &self,
        namespaces: &[String],
        count: usize,
        bytes: usize,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let blob: Vec<u8> = (0..bytes)
            .map(|_| {
                // xorshift: incompressible filler, so nothing shrinks it on the way.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        futures::stream::iter(0..count)
            .map(|i| {
                let ns = namespaces[i % namespaces.len()].clone();
                let mut secret = Secret {
                    metadata: objects::meta(&format!("unrelated-{i:05}"), &[("app", "unrelated")]),
                    ..Default::default()
                };
                secret.data = Some([("blob".to_string(), ByteString(blob.clone()))].into());
                let api: Api<Secret> = Api::namespaced(self.admin.clone(), &ns);
                async move {
                    api.create(&PostParams::default(), &secret)
                        .await
                        .with_context(|| format!("creating an unrelated Secret in {ns}"))
                        .map(|_| ())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<()>()
            .await
    }

    /// Start the release binary as its own user, and wait until its caches are warm.
    pub async fn start_operator(&self, binary: &Path) -> anyhow::Result<RunningOperator> {
        let mut running = self.spawn_operator(binary)?;
        running.wait_ready(Duration::from_secs(120)).await?;
        Ok(running)
    }

    /// Start the release binary as its own user.
    pub fn spawn_operator(&self, binary: &Path) -> anyhow::Result<RunningOperator> {
        self.spawn_operator_with(binary, &[], &[])
    }

    /// [`World::spawn_operator`] with more flags and environment (the admission webhook's).
    pub fn spawn_operator_with(
        &self,
        binary: &Path,
        extra: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<RunningOperator> {
        let kubeconfig = self.cp.kubeconfig_for(OPERATOR_USER, &["system:masters"])?;
        let port = regcred_testenv::free_port();
        let metrics = format!("--metrics-addr=127.0.0.1:{port}");
        // JSON logs at info, as the chart runs it: the test suite's debug
        // logging would cost CPU per namespace. BENCH_OPERATOR_RUST_LOG
        // sets another filter, to look into a run (and skew its figures).
        let mut args = vec![metrics.as_str(), "--log-format=json"];
        args.extend(extra.iter().map(String::as_str));
        let rust_log = std::env::var("BENCH_OPERATOR_RUST_LOG").unwrap_or_else(|_| "info".into());
        let mut vars = vec![("RUST_LOG", rust_log.as_str()), ("AWS_EC2_METADATA_DISABLED", "true")];
        vars.extend(env.iter().copied());
        let op = Operator::start_with_kubeconfig(binary, &kubeconfig, CREDS_NS, &args, &vars)?;
        Ok(RunningOperator { op, port })
    }
}

async fn create_namespace(client: Client, ns: String) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &objects::namespace(&ns, &[]))
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    Api::<ServiceAccount>::namespaced(client, &ns)
        .create(&PostParams::default(), &objects::service_account("default", &[]))
        .await
        .with_context(|| format!("creating ServiceAccount {ns}/default"))?;
    Ok(())
}

/// `prefix-00000` … for `count` namespaces.
pub fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// The spec of every benchmark RegistryCredential: the static provider
/// reading the source Secret, every namespace but the system ones.
pub fn rc_spec() -> serde_json::Value {
    serde_json::json!({
        "provider": {"static": {"registry": "docker.io", "secretRef": {"name": SOURCE}}},
        "target": {"namespaces": {"exclude": SYSTEM_NAMESPACES}},
        // Nothing to prove credentials against here, and not what is measured.
        "healthCheck": {"mode": "Disabled"},
    })
}

/// A dockerconfigjson the way regcred writes one for docker.io, for the floor.
pub fn docker_config(password: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{password}"));
    serde_json::to_vec(&serde_json::json!({"auths": {"https://index.docker.io/v1/": {
        "username": USERNAME, "password": password, "auth": auth,
    }}}))
    .expect("JSON serializes")
}

pub struct RunningOperator {
    op: Operator,
    port: u16,
}

impl RunningOperator {
    pub fn sample(&self) -> anyhow::Result<Sample> {
        procstat::sample(self.op.pid())
    }

    pub fn logs(&self) -> String {
        self.op.logs()
    }

    /// Save the operator's log to `path` (the control plane's directory goes away).
    pub fn save_logs(&self, path: &PathBuf) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, self.logs());
    }

    pub fn stop(&mut self) {
        self.op.stop();
    }

    /// Wait until `/readyz` answers 200 (its caches are warm); how long that took.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if let Some(status) = self.op.exited() {
                anyhow::bail!("regcred exited with {status}; its log:\n{}", tail(&self.logs(), 30));
            }
            if tokio::time::timeout(Duration::from_secs(2), self.ready()).await == Ok(true) {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "regcred not ready after {timeout:?}; its log:\n{}",
                tail(&self.logs(), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ready(&self) -> bool {
        self.get("/readyz").await.is_ok()
    }

    /// The operator's Prometheus metrics, as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(10), self.get("/metrics"))
            .await
            .context("GET /metrics timed out")?
    }

    /// The body of a 200 answer to `GET path` on the metrics port.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await?;
        anyhow::ensure!(
            reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
            "GET {path}: {}",
            reply.lines().next().unwrap_or_default()
        );
        Ok(reply
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default())
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many lines of the (JSON) log are warnings or errors, and the most common message.
pub fn log_summary(text: &str) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut n = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if !matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
            continue;
        }
        n += 1;
        let msg = v["fields"]["message"].as_str().unwrap_or(line);
        *counts.entry(msg.chars().take(120).collect()).or_default() += 1;
    }
    match counts.iter().max_by_key(|(_, c)| **c) {
        Some((msg, c)) => format!("{n} warning/error lines; most common ({c}×): {msg}"),
        None => "no warnings or errors".into(),
    }
}
