//! etcd + kube-apiserver on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use tokio::sync::OnceCell;

use crate::pki::{CertKey, TestCa, key_pair_pem};
use crate::process::Process;
use crate::tools::envtest_dir;

const START_TIMEOUT: Duration = Duration::from_secs(120);
use crate::{free_port, init_crypto};

/// A host name the API server's certificate carries besides 127.0.0.1 and
/// localhost, for clients that cannot use those: pods on a
/// [`crate::Node`]'s pod network reach the API server by this name (a
/// `hostAliases` entry sends it to [`crate::PodNetwork::gateway`]), as pods
/// of a real cluster reach it by a name or address that is not loopback.
pub const IN_CLUSTER_HOST: &str = "kubernetes.regcred.test";

pub(crate) fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = envtest_dir().join(name);
    if !path.is_file() {
        bail!(
            "{name} not found at {}: run `make envtest` (hack/build-envtest.sh) to build etcd and the Kubernetes binaries from their Go modules",
            path.display()
        );
    }
    Ok(path)
}

/// A running etcd + kube-apiserver pair with an admin identity.
/// Dropping it stops both and removes their data.
pub struct ControlPlane {
    // Field order is drop order: the apiserver goes before its etcd.
    apiserver: Process,
    etcd: Process,
    // How the apiserver was started, to start it again after
    // [`ControlPlane::stop_apiserver`] on the same port and etcd.
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    etcd_url: String,
    ca: TestCa,
    url: String,
    kubeconfig: PathBuf,
    for_nodes: bool,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Start a control plane of this test's own.
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(false, &[]).await
    }

    /// Like [`ControlPlane::start`], with extra kube-apiserver flags, which
    /// win over the defaults: e.g. `--enable-priority-and-fairness=true`
    /// (off by default, as in envtest) so that FlowSchemas the test applies
    /// throttle clients with `429` and `Retry-After`, or
    /// `--watch-cache=false` so that watches are served by etcd and a
    /// compacted resourceVersion answers `410 Gone`.
    pub async fn start_with_flags(flags: &[&str]) -> anyhow::Result<Self> {
        Self::launch(false, flags).await
    }

    /// [`ControlPlane::start_with_flags`] with owned flags (the benchmark's
    /// audit log, which counts requests by user).
    pub async fn start_with_apiserver_args(args: &[String]) -> anyhow::Result<Self> {
        let flags: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(false, &flags).await
    }

    /// Start a control plane that a [`crate::Node`] can join, authorizing as
    /// a real cluster does: the Node authorizer before RBAC (a kubelet reads
    /// only the Secrets of pods bound to its node), `NodeRestriction`, and
    /// the `ServiceAccount` admission plugin, which copies a ServiceAccount's
    /// `imagePullSecrets` into each pod created after them. Pods must name
    /// an existing ServiceAccount and should set
    /// `automountServiceAccountToken: false` (there is no controller-manager
    /// to publish `kube-root-ca.crt`).
    pub async fn start_for_nodes() -> anyhow::Result<Self> {
        Self::launch(true, &[]).await
    }

    /// [`ControlPlane::start_for_nodes`] with extra kube-apiserver flags
    /// (e.g. an audit log, to see which identity made a request).
    pub async fn start_for_nodes_with_flags(flags: &[&str]) -> anyhow::Result<Self> {
        Self::launch(true, flags).await
    }

    /// [`ControlPlane::launch_once`], again with other ports when a port
    /// was taken between being picked and being bound.
    async fn launch(for_nodes: bool, flags: &[&str]) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::launch_once(for_nodes, flags).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    tracing::warn!(attempt, "a control-plane port was taken; starting again on others");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn launch_once(for_nodes: bool, flags: &[&str]) -> anyhow::Result<Self> {
        init_crypto();
        let started = Instant::now();
        let dir = crate::scratch::dir("envtest")?;
        let etcd_bin = binary("etcd")?;
        let apiserver_bin = binary("kube-apiserver")?;

        let etcd_port = free_port();
        let peer_port = free_port();
        let mut cmd = Command::new(etcd_bin);
        cmd.arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg("--name=default")
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let mut etcd = Process::spawn("etcd", cmd, &dir.path().join("etcd.log"))?;
        wait_for_port(&mut etcd, etcd_port).await?;

        let ca = TestCa::new("regcred-envtest-ca");
        let serving = ca.server(&[IN_CLUSTER_HOST]);
        let admin = ca.client("regcred-envtest-admin", &["system:masters"]);
        let (sa_key, sa_pub) = key_pair_pem();
        let certs = dir.path().join("pki");
        std::fs::create_dir_all(&certs)?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let p = certs.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let ca_file = write("ca.crt", ca.cert_pem())?;
        let tls_cert = write("apiserver.crt", &serving.cert_pem)?;
        let tls_key = write("apiserver.key", &serving.key_pem)?;
        let sa_key_file = write("sa.key", &sa_key)?;
        let sa_pub_file = write("sa.pub", &sa_pub)?;

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let mut args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--cert-dir={}", certs.display()),
            format!("--tls-cert-file={}", tls_cert.display()),
            format!("--tls-private-key-file={}", tls_key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--service-account-issuer={url}"),
            format!("--service-account-key-file={}", sa_pub_file.display()),
            format!("--service-account-signing-key-file={}", sa_key_file.display()),
            "--allow-privileged=true".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            "--endpoint-reconciler-type=none".into(),
        ];
        // As on OpenShift and hardened clusters: setting ownerReferences
        // needs delete on the object (and finalizers update on the owner for
        // blockOwnerDeletion), so the chart's RBAC is proven against it.
        if for_nodes {
            args.extend([
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement,NodeRestriction,ServiceAccount".into(),
            ]);
        } else {
            args.extend([
                "--authorization-mode=RBAC".into(),
                "--disable-admission-plugins=ServiceAccount".into(),
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            ]);
        }
        // pflag: the last value of a flag wins.
        args.extend(flags.iter().map(|f| f.to_string()));
        let mut cmd = Command::new(&apiserver_bin);
        cmd.args(&args);
        let apiserver = Process::spawn("kube-apiserver", cmd, &dir.path().join("kube-apiserver.log"))?;

        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url, ca.cert_pem(), &admin))?;
        let mut cp = Self {
            apiserver,
            etcd,
            apiserver_bin,
            apiserver_args: args,
            etcd_url: format!("http://127.0.0.1:{etcd_port}"),
            ca,
            url,
            kubeconfig,
            for_nodes,
            dir,
        };
        cp.wait_ready().await?;
        tracing::info!(url = %cp.url, elapsed = ?started.elapsed(), "control plane ready");
        Ok(cp)
    }

    /// One control plane shared by every test of this test binary. It lives
    /// until the process exits (its processes die with it and its directory is
    /// removed at exit). Tests sharing it must use their own uniquely named
    /// objects.
    pub async fn shared() -> &'static ControlPlane {
        static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();
        SHARED
            .get_or_try_init(|| async {
                let cp = Self::start().await?;
                crate::scratch::remove_at_exit(cp.dir.path());
                anyhow::Ok(cp)
            })
            .await
            .unwrap_or_else(|e| panic!("starting the shared test control plane: {e:#}"))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.apiserver.exited() {
                bail!(
                    "kube-apiserver exited with {status}; last output:\n{}",
                    self.apiserver.log_tail(30)
                );
            }
            match self.client().await {
                Ok(client) => {
                    let req = http::Request::get("/readyz").body(Vec::new())?;
                    match client.request_text(req).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => last = body,
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "kube-apiserver at {} not ready after {START_TIMEOUT:?} ({last}); last output:\n{}",
            self.url,
            self.apiserver.log_tail(30)
        )
    }

    /// Kill kube-apiserver (SIGKILL, as a crash or a lost control-plane node
    /// would), leaving etcd and every object in it. Clients see their
    /// connections close and new ones refused until
    /// [`ControlPlane::start_apiserver`].
    pub fn stop_apiserver(&mut self) {
        self.apiserver.signal(libc::SIGKILL);
        let _ = self.apiserver.stop(Duration::from_secs(10));
    }

    /// Start kube-apiserver again with the same binary, flags, port,
    /// certificates and etcd, and wait until it is ready (`/readyz`).
    pub async fn start_apiserver(&mut self) -> anyhow::Result<()> {
        if self.apiserver.exited().is_none() {
            bail!("kube-apiserver is still running: stop_apiserver first");
        }
        let mut cmd = Command::new(&self.apiserver_bin);
        cmd.args(&self.apiserver_args);
        let log = self.apiserver.log_path().to_path_buf();
        self.apiserver = Process::spawn("kube-apiserver", cmd, &log)?;
        self.wait_ready().await
    }

    /// Compact etcd's history up to its current revision, as the
    /// apiserver's periodic compaction does (`--etcd-compaction-interval`):
    /// a watch resumed from any older resourceVersion that the apiserver's
    /// watch cache cannot serve fails with `410 Gone` and must re-list.
    /// Returns the revision compacted to.
    pub async fn compact_etcd(&self) -> anyhow::Result<i64> {
        // etcd's gRPC gateway: JSON over HTTP, keys base64. A range over one
        // key answers with the store's current revision in its header.
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{}{path}", self.etcd_url))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let key = base64::engine::general_purpose::STANDARD.encode("/registry");
        let range = post("/v3/kv/range", serde_json::json!({"key": key}))
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let range: serde_json::Value = serde_json::from_slice(&range)?;
        let revision: i64 = range["header"]["revision"]
            .as_str()
            .context("etcd range answer without header.revision")?
            .parse()?;
        post(
            "/v3/kv/compaction",
            serde_json::json!({"revision": revision.to_string(), "physical": true}),
        )
        .await?
        .error_for_status()
        .context("etcd compaction")?;
        Ok(revision)
    }

    /// The apiserver's Prometheus metrics (`GET /metrics`), e.g. to count
    /// the requests API Priority and Fairness rejected.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let req = http::Request::get("/metrics").body(Vec::new())?;
        Ok(self.client().await?.request_text(req).await?)
    }

    /// A new admin client bound to the calling test's runtime.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_from(&self.kubeconfig).await
    }

    /// A client for any kubeconfig file of this control plane.
    pub async fn client_from(&self, kubeconfig: &Path) -> anyhow::Result<kube::Client> {
        init_crypto();
        let kc = Kubeconfig::read_from(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin kubeconfig (system:masters), for kubectl or an operator process.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig authenticating as `user` in `groups` with a client
    /// certificate, for tests that check what RBAC allows.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        let cert = self.ca.client(user, groups);
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{user}").replace([':', '/'], "_"));
        std::fs::write(&path, kubeconfig_yaml(&self.url, self.ca.cert_pem(), &cert))?;
        Ok(path)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port the API server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("the API server URL ends with its port")
    }

    /// The directory holding the control plane's certificates, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether this control plane was started with
    /// [`ControlPlane::start_for_nodes`].
    pub fn for_nodes(&self) -> bool {
        self.for_nodes
    }

    /// The CA that signed the apiserver's serving certificate and every client certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// PIDs of etcd and kube-apiserver, e.g. to check they are gone.
    pub fn pids(&self) -> [u32; 2] {
        [self.etcd.pid(), self.apiserver.pid()]
    }

    /// Create or update a CRD from YAML and wait until it is established.
    pub async fn install_crd(&self, yaml: &str) -> anyhow::Result<()> {
        let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).context("parsing the CRD YAML")?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        api.patch(
            &name,
            &PatchParams::apply("regcred-testenv").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api, &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 30s"))??;
        Ok(())
    }
}

async fn wait_for_port(process: &mut Process, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = process.exited() {
            bail!(
                "{} exited with {status}; last output:\n{}",
                process.name(),
                process.log_tail(30)
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} did not listen on 127.0.0.1:{port}; last output:\n{}",
        process.name(),
        process.log_tail(30)
    )
}

pub(crate) fn kubeconfig_yaml(url: &str, ca_pem: &str, user: &CertKey) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "envtest-user", "user": {
            "client-certificate-data": b64(&user.cert_pem),
            "client-key-data": b64(&user.key_pem),
        }}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-user", "namespace": "default"}}],
        "current-context": "envtest",
    });
    serde_yaml::to_string(&kc).expect("kubeconfig serializes")
}
