//! A real node: a kubelet (built from its Go module beside kube-apiserver)
//! with a containerd and runc of its own (Debian's packages, or containerd
//! 2.x built from its Go module: [`Runtime`]), joined to a
//! [`ControlPlane::start_for_nodes`] control plane, so that pods really pull
//! images with the credentials the kubelet finds for them.
//!
//! What this machine needs, and why each setting is what it is:
//! - root lacks `CAP_SYS_RESOURCE` in its bounding set, so runc cannot lower
//!   `oom_score_adj`: containerd runs with `restrict_oom_score_adj` and the
//!   kubelet with `oomScoreAdj: 0`;
//! - no overlayfs: containerd's `native` snapshotter;
//! - pods use `hostNetwork` by default, and a placeholder CNI config lets
//!   the runtime report its network ready (so the Node goes Ready); with
//!   [`NodeOptions::pod_network`] they get a network of their own instead
//!   ([`PodNetwork`]: Debian's CNI plugins on a bridge of the node's own),
//!   which the `restricted` Pod Security profile needs;
//! - no scheduler unless the test runs [`crate::Controllers`]: pods set
//!   `nodeName` (see [`Node::name`]).
//!
//! Several nodes may run at once, in one test process or in several: each
//! has its own node name, cgroup root, sockets, ports and directories.
//!
//! Dropping a node (also when a test panics) stops everything it started by
//! PID (the kubelet, every container process, containerd's shims, containerd,
//! the sandbox registry), unmounts what was mounted under its directory
//! (deepest first), removes its cgroups, the shim sockets containerd (1.6
//! and 2.x alike) puts in `/run/containerd/s` and the kubelet's links in
//! `/var/log/containers`, deletes its pod network's bridge and nat rules,
//! and restores the sysctls the kubelet (and the CNI bridge plugin) set once
//! the last node of the machine is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;

use crate::control_plane::{ControlPlane, binary, kubeconfig_yaml};
use crate::pod_network::{self, CNI_BIN, CNI_CACHE, PodNetwork};
use crate::process::Process;
use crate::registry::{Auth, Registry};
use crate::{free_port, images};

mod containerd;
pub use containerd::Runtime;

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Where containerd (1.6; 2.x by default) puts every shim's socket,
/// whatever its root and state say.
const SHIM_SOCKETS: &str = "/run/containerd/s";
/// Where the kubelet links container logs, whatever its config says.
const CONTAINER_LOGS: &str = "/var/log/containers";

/// How a [`Node`] is set up beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Give pods a network of their own ([`PodNetwork`]) instead of
    /// expecting `hostNetwork`: pods reach the API server at
    /// [`PodNetwork::gateway`] on the API server's port.
    pub pod_network: bool,
    /// Kubelet feature gates (`featureGates` of its configuration), e.g.
    /// `KubeletEnsureSecretPulledImages`, on by default from Kubernetes 1.35,
    /// alpha in the pinned 1.34.
    pub feature_gates: Vec<(&'static str, bool)>,
}

/// A running kubelet + containerd registered as a Ready Node.
pub struct Node {
    name: String,
    runtime: Runtime,
    cgroup_root: String,
    kubelet: Option<Process>,
    containerd: Option<Process>,
    sandbox_registry: Option<Registry>,
    containerd_socket: PathBuf,
    pod_network: Option<PodNetwork>,
    /// Directories outside `dir` that did not exist before this node.
    created_dirs: Vec<PathBuf>,
    sysctls: Option<sysctl::Hold>,
    feature_gates: Vec<(&'static str, bool)>,
    // Last: removed once everything above is stopped and unmounted.
    dir: tempfile::TempDir,
}

impl Node {
    /// Start containerd and a kubelet joined to `cp`, and wait until the
    /// Node is Ready.
    ///
    /// Fails (never skips) when a component is missing, saying how to get it.
    pub async fn start(cp: &ControlPlane) -> anyhow::Result<Self> {
        Self::start_with(cp, NodeOptions::default()).await
    }

    /// [`Node::start`] with `options`.
    pub async fn start_with(cp: &ControlPlane, options: NodeOptions) -> anyhow::Result<Self> {
        Self::start_on(cp, Runtime::default(), options).await
    }

    /// [`Node::start_with`] on the container runtime `runtime`.
    pub async fn start_on(cp: &ControlPlane, runtime: Runtime, options: NodeOptions) -> anyhow::Result<Self> {
        if !cp.for_nodes() {
            bail!("a Node needs a control plane started with ControlPlane::start_for_nodes()");
        }
        let kubelet_bin = binary("kubelet")?;
        let binaries = runtime.binaries()?;
        let started = Instant::now();
        sweep_dead_nodes();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "regcred-node-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = crate::scratch::dir("node")?;
        let mut node = Self {
            cgroup_root: format!("/{name}"),
            name,
            runtime,
            kubelet: None,
            containerd: None,
            sandbox_registry: None,
            containerd_socket: dir.path().join("containerd.sock"),
            pod_network: None,
            created_dirs: Vec::new(),
            sysctls: None,
            feature_gates: options.feature_gates.clone(),
            dir,
        };
        // From here on, a failure drops `node`, which undoes what was done.
        let cni_results = format!("{CNI_CACHE}/results");
        node.created_dirs = [SHIM_SOCKETS, "/run/containerd", CONTAINER_LOGS, &cni_results, CNI_CACHE]
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        if options.pod_network {
            node.pod_network = Some(PodNetwork::create(&node.name, &[cp.port()]).context("creating the pod network")?);
        }

        // The sandbox image lives in a registry of the node's own, open to all.
        let sandbox = Registry::start(Auth::Anonymous)
            .await
            .context("starting the node's sandbox image registry")?;
        sandbox
            .push_binary_image("pause", "1", &images::pause()?)
            .await
            .context("pushing the pause image")?;
        let sandbox_image = format!("{}/pause:1", sandbox.host());
        node.trust(sandbox.host(), sandbox.host(), sandbox.ca_pem())?;
        node.sandbox_registry = Some(sandbox);

        node.start_containerd(&binaries, &sandbox_image).await?;
        cgroups::create(&node.cgroup_root)?;
        node.sysctls = Some(sysctl::Hold::acquire()?);
        node.start_kubelet(cp, &kubelet_bin)?;
        node.wait_ready(cp).await?;
        tracing::info!(node = %node.name, runtime = %runtime.describe(), elapsed = ?started.elapsed(), "node ready");
        Ok(node)
    }

    /// The pod network, if the node was started with one.
    pub fn pod_network(&self) -> Option<&PodNetwork> {
        self.pod_network.as_ref()
    }

    /// The container runtime the node runs.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The Node's name: what pods put in `spec.nodeName`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pull from `registry` under its own host name, trusting its CA.
    pub fn trust_registry(&self, registry: &Registry) -> anyhow::Result<()> {
        self.trust(registry.host(), registry.host(), registry.ca_pem())
    }

    /// Pull images named `host/...` (e.g. an ECR or GCR host) from
    /// `registry`, trusting its CA: the image name and the credential's host
    /// stay `host`, only the connection goes to the local registry, as a DNS
    /// entry would send it.
    pub fn route_registry(&self, host: &str, registry: &Registry) -> anyhow::Result<()> {
        self.trust(host, registry.host(), registry.ca_pem())
    }

    /// One `hosts.toml` per registry host. containerd 1.6 needs `server` and
    /// a top-level `ca` **and** a `[host]` table with `ca` too: with either
    /// alone it falls back to plain http, or misreports a missing tag as an
    /// x509 error. containerd 2.x reads the same files (its CRI and Transfer
    /// Service through `config_path`). containerd reads them at every pull.
    pub(crate) fn trust(&self, host: &str, upstream: &str, ca_pem: &str) -> anyhow::Result<()> {
        let host_dir = self.dir.path().join("certs.d").join(host);
        std::fs::create_dir_all(&host_dir)?;
        let ca = host_dir.join("ca.pem");
        std::fs::write(&ca, ca_pem)?;
        let ca = ca.display();
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!(
                "server = \"https://{upstream}\"\nca = \"{ca}\"\n\n[host.\"https://{upstream}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"
            ),
        )?;
        Ok(())
    }

    /// The last `lines` lines the kubelet logged.
    pub fn kubelet_log_tail(&self, lines: usize) -> String {
        self.kubelet.as_ref().map(|p| p.log_tail(lines)).unwrap_or_default()
    }

    /// The last `lines` lines containerd logged.
    pub fn containerd_log_tail(&self, lines: usize) -> String {
        self.containerd.as_ref().map(|p| p.log_tail(lines)).unwrap_or_default()
    }

    /// PIDs of the kubelet and containerd, e.g. to check they are gone.
    pub fn pids(&self) -> Vec<u32> {
        self.kubelet
            .iter()
            .chain(self.containerd.iter())
            .map(Process::pid)
            .collect()
    }

    /// The directory holding the node's configuration, state and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn start_containerd(&mut self, binaries: &containerd::Binaries, sandbox_image: &str) -> anyhow::Result<()> {
        let d = self.dir.path();
        let cni_conf = d.join("cni/net.d");
        std::fs::create_dir_all(&cni_conf)?;
        std::fs::create_dir_all(d.join("cni/bin"))?;
        let (cni_bin, conflist) = match &self.pod_network {
            Some(network) => (PathBuf::from(CNI_BIN), network.conflist(&d.join("cni/ipam"))),
            // Loaded, never run: hostNetwork pods do not call CNI plugins.
            None => (
                d.join("cni/bin"),
                serde_json::json!({
                    "cniVersion": "0.4.0",
                    "name": "regcred-testenv-placeholder",
                    "plugins": [{"type": "loopback"}],
                }),
            ),
        };
        std::fs::write(cni_conf.join("10-regcred.conflist"), conflist.to_string())?;
        let socket = self.containerd_socket.display().to_string();
        let paths = containerd::Paths {
            dir: d,
            socket: &self.containerd_socket,
            sandbox_image,
            stream_port: free_port(),
            cni_bin: &cni_bin,
            cni_conf: &cni_conf,
            certs: &d.join("certs.d"),
        };
        let config = self.runtime.config(&paths, &binaries.shim);
        let config_path = d.join("containerd.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(&binaries.containerd);
        cmd.arg("--config").arg(&config_path).arg("--log-level=info");
        let mut containerd = Process::spawn("containerd", cmd, &d.join("containerd.log"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while tokio::net::UnixStream::connect(&self.containerd_socket).await.is_err() {
            if let Some(status) = containerd.exited() {
                bail!(
                    "containerd exited with {status}; last output:\n{}",
                    containerd.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not listen on {socket} within {READY_TIMEOUT:?}; last output:\n{}",
                    containerd.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.containerd = Some(containerd);
        if let Some(ctr) = &binaries.ctr {
            self.check_plugins(ctr)?;
        }
        Ok(())
    }

    /// containerd 2.x starts even when a plugin the node needs fails to
    /// load (the Transfer Service without a snapshotter to unpack into, and
    /// with it the CRI): say which, rather than wait for a Node never Ready.
    fn check_plugins(&self, ctr: &Path) -> anyhow::Result<()> {
        let out = Command::new(ctr)
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["plugins", "ls"])
            .output()
            .with_context(|| format!("running {}", ctr.display()))?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let missing = containerd::missing_plugins(&listing);
        if !out.status.success() || !missing.is_empty() {
            bail!(
                "{}: plugins not loaded: {}; `ctr plugins ls`:\n{listing}{}\ncontainerd's last output:\n{}",
                self.runtime.describe(),
                missing.join(", "),
                String::from_utf8_lossy(&out.stderr),
                self.containerd_log_tail(30)
            );
        }
        Ok(())
    }

    fn start_kubelet(&mut self, cp: &ControlPlane, kubelet_bin: &Path) -> anyhow::Result<()> {
        let d = self.dir.path();
        let root_dir = d.join("kubelet");
        for sub in ["", "pki", "manifests", "pods-logs"] {
            std::fs::create_dir_all(root_dir.join(sub))?;
        }
        // The identity the Node authorizer and NodeRestriction recognise.
        let cert = cp.ca().client(&format!("system:node:{}", self.name), &["system:nodes"]);
        let kubeconfig = d.join("kubelet.kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(cp.url(), cp.ca().cert_pem(), &cert))?;
        let client_ca = d.join("client-ca.crt");
        std::fs::write(&client_ca, cp.ca().cert_pem())?;
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": free_port(),
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "readOnlyPort": 0,
            "containerRuntimeEndpoint": format!("unix://{}", self.containerd_socket.display()),
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failCgroupV1": false,
            "failSwapOn": false,
            // runc cannot lower oom_score_adj here (no CAP_SYS_RESOURCE).
            "oomScoreAdj": 0,
            "staticPodPath": root_dir.join("manifests"),
            "podLogsDir": root_dir.join("pods-logs"),
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": false},
                "x509": {"clientCAFile": client_ca},
            },
            "authorization": {"mode": "AlwaysAllow"},
            // Report status often, so Ready shows within seconds.
            "nodeStatusUpdateFrequency": "2s",
            "nodeStatusReportFrequency": "2s",
            "syncFrequency": "10s",
            "serializeImagePulls": false,
            // Every pod pulls (`Always`), dozens at once in a benchmark.
            "registryPullQPS": 0,
            // Test disks may be fuller than a node's would: never evict or
            // collect images during a test.
            "evictionHard": {"memory.available": "1Mi"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "/etc/resolv.conf",
            "featureGates": self.feature_gates.iter().map(|(gate, on)| (gate.to_string(), *on)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        let config_path = d.join("kubelet.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
        let mut cmd = Command::new(kubelet_bin);
        cmd.arg(format!("--config={}", config_path.display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", root_dir.display()))
            .arg(format!("--cert-dir={}", root_dir.join("pki").display()))
            .arg(format!("--hostname-override={}", self.name))
            .arg("--node-ip=127.0.0.1")
            .arg("--v=2");
        self.kubelet = Some(Process::spawn("kubelet", cmd, &d.join("kubelet.log"))?);
        Ok(())
    }

    async fn wait_ready(&mut self, cp: &ControlPlane) -> anyhow::Result<()> {
        let nodes: Api<NodeObject> = Api::all(cp.client().await?);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("not registered");
        loop {
            for process in [self.kubelet.as_mut(), self.containerd.as_mut()].into_iter().flatten() {
                if let Some(status) = process.exited() {
                    bail!(
                        "{} exited with {status}; last output:\n{}",
                        process.name(),
                        process.log_tail(40)
                    );
                }
            }
            if let Ok(Some(node)) = nodes.get_opt(&self.name).await {
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
                match ready {
                    Some(c) if c.status == "True" => return Ok(()),
                    Some(c) => last = format!("Ready={} ({})", c.status, c.message.clone().unwrap_or_default()),
                    None => last = "registered, no Ready condition yet".into(),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "Node {} not Ready within {READY_TIMEOUT:?}: {last}; kubelet's last output:\n{}\ncontainerd's last output:\n{}",
                    self.name,
                    self.kubelet_log_tail(40),
                    self.containerd_log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(kubelet) = &self.kubelet
        {
            eprintln!(
                "--- node {}: last kubelet log lines ({}) ---\n{}",
                self.name,
                kubelet.log_path().display(),
                kubelet.log_tail(40)
            );
        }
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop(Duration::from_secs(5));
        }
        // Containers outlive their shims: kill them first, by cgroup.
        cgroups::kill_all(&self.cgroup_root);
        shims::kill(&shims::of(&self.containerd_socket));
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(Duration::from_secs(5));
        }
        self.keep_logs();
        mounts::unmount_under(self.dir.path());
        cgroups::remove(&self.cgroup_root);
        remove_log_links(self.dir.path());
        pod_network::forget_pods(self.dir.path());
        self.sandbox_registry = None;
        // After the unmount: the pods' network namespaces, and with them
        // their veths, are gone.
        self.pod_network = None;
        self.sysctls = None;
        for dir in &self.created_dirs {
            // Only if empty: another node may be using it by now.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Node {
    /// With `REGCRED_KEEP_NODE_LOGS=DIR`, the kubelet's and containerd's logs
    /// outlive the node as `DIR/<node>-kubelet.log` and `-containerd.log`
    /// (e.g. to read the runtime's exact error texts after a test run).
    fn keep_logs(&self) {
        let Some(keep) = std::env::var_os("REGCRED_KEEP_NODE_LOGS") else {
            return;
        };
        let keep = PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        for log in ["kubelet", "containerd"] {
            let from = self.dir.path().join(format!("{log}.log"));
            let to = keep.join(format!("{}-{log}.log", self.name));
            if let Err(e) = std::fs::copy(&from, &to) {
                eprintln!("keeping {}: {e}", from.display());
            }
        }
    }
}

/// containerd's shims, found by PID: they outlive containerd (it starts them
/// as daemons), and containerd 1.6 writes no pid file for them.
mod shims {
    use super::*;

    /// PIDs of the shims whose `-address` is `socket`, the containerd they
    /// serve.
    pub(super) fn of(socket: &Path) -> Vec<i32> {
        all()
            .into_iter()
            .filter(|(_, a)| a == socket)
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Every runc shim on the machine with its containerd's socket.
    pub(super) fn all() -> Vec<(i32, PathBuf)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if !args.first().is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2")) {
                continue;
            }
            if let Some(i) = args.iter().position(|a| *a == b"-address")
                && let Some(address) = args.get(i + 1)
            {
                out.push((pid, PathBuf::from(String::from_utf8_lossy(address).into_owned())));
            }
        }
        out
    }

    /// The paths of the unix sockets `pid` has open (its listener in
    /// `/run/containerd/s` among them), through the inodes in /proc/net/unix.
    fn sockets(pid: i32) -> Vec<PathBuf> {
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (inode, path) = (fields.get(6)?, fields.get(7)?);
                inodes.iter().any(|i| i == inode).then(|| PathBuf::from(path))
            })
            .collect()
    }

    /// SIGKILL `pids`, wait (up to 5 s) until they are gone, and remove the
    /// sockets they listened on in `/run/containerd/s`.
    pub(super) fn kill(pids: &[i32]) {
        let sockets: Vec<PathBuf> = pids
            .iter()
            .flat_map(|&pid| sockets(pid))
            .filter(|s| s.starts_with(SHIM_SOCKETS))
            .collect();
        for &pid in pids {
            // SAFETY: kill(2) on shims serving a containerd of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// Running, and not a zombie waiting for init to reap it.
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    }
}

/// What nodes of test processes that died without dropping them left
/// behind: their shims, their containers (found by cgroup) and their mounts.
fn sweep_dead_nodes() {
    let owner_gone = |name: &str| {
        name.strip_prefix("regcred-node-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
    };
    let tmp = std::env::temp_dir();
    let dead_shims: Vec<i32> = shims::all()
        .into_iter()
        .filter(|(_, socket)| {
            socket
                .strip_prefix(&tmp)
                .ok()
                .and_then(|rel| rel.components().next())
                .is_some_and(|dir| owner_gone(&dir.as_os_str().to_string_lossy()))
        })
        .map(|(pid, _)| pid)
        .collect();
    for root in cgroups::roots().into_iter().filter(|r| owner_gone(r)) {
        cgroups::kill_all(&root);
        cgroups::remove(&root);
    }
    shims::kill(&dead_shims);
    pod_network::sweep_dead();
    // Mounts would keep the scratch sweep from removing their directories.
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        if owner_gone(&entry.file_name().to_string_lossy()) {
            mounts::unmount_under(&entry.path());
            pod_network::forget_pods(&entry.path());
            // The scratch sweep may have run before the unmount.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Run `f` holding a lock shared by the nodes of every test process:
/// flock(2) on the temp directory itself, a lock that leaves no file behind.
pub(crate) fn machine_lock<T>(f: impl FnOnce() -> T) -> anyhow::Result<T> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(std::env::temp_dir())?;
    // SAFETY: flock(2) on a descriptor we own; released when `dir` closes.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("taking the machine-wide node lock");
    }
    Ok(f())
}

/// The kubelet's links in `/var/log/containers` that point into `dir`.
fn remove_log_links(dir: &Path) {
    for entry in std::fs::read_dir(CONTAINER_LOGS).into_iter().flatten().flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|target| target.starts_with(dir)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The cgroup root of a node in every mounted hierarchy (cgroup v1 has one
/// per controller, v2 one).
mod cgroups {
    use super::*;

    /// Mount points of cgroup and cgroup2 file systems.
    fn hierarchies() -> Vec<PathBuf> {
        super::mounts::mount_table()
            .into_iter()
            .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
            .map(|m| m.point)
            .collect()
    }

    /// Names of the node cgroup roots that exist now.
    pub(super) fn roots() -> Vec<String> {
        let mut names: Vec<String> = hierarchies()
            .iter()
            .flat_map(|h| std::fs::read_dir(h).into_iter().flatten().flatten())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| n.starts_with("regcred-node-"))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn paths(root: &str) -> Vec<PathBuf> {
        let rel = root.trim_start_matches('/');
        hierarchies().into_iter().map(|h| h.join(rel)).collect()
    }

    /// The kubelet checks that its `cgroupRoot` exists in every hierarchy.
    pub(super) fn create(root: &str) -> anyhow::Result<()> {
        for path in paths(root) {
            std::fs::create_dir_all(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
            // A new v1 cpuset cgroup has no CPUs or memory nodes: inherit them.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = path.join(file);
                if mine.exists() && std::fs::read_to_string(&mine).unwrap_or_default().trim().is_empty() {
                    let parent = path.parent().map(|p| p.join(file)).unwrap_or_default();
                    let value = std::fs::read_to_string(&parent).unwrap_or_default();
                    std::fs::write(&mine, value.trim()).with_context(|| format!("writing {}", mine.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Every cgroup under `path`, deepest first.
    fn tree(path: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(tree(&entry.path()));
            }
        }
        if path.exists() {
            out.push(path.to_path_buf());
        }
        out
    }

    /// SIGKILL every process under the root, until none is left (up to 5 s).
    pub(super) fn kill_all(root: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pids: Vec<i32> = paths(root)
                .iter()
                .flat_map(|p| tree(p))
                .flat_map(|cg| {
                    std::fs::read_to_string(cg.join("cgroup.procs"))
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| l.trim().parse().ok())
                        .collect::<Vec<i32>>()
                })
                .collect();
            pids.sort_unstable();
            pids.dedup();
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) on processes inside this node's own cgroups.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// rmdir every cgroup under the root, deepest first (killed processes
    /// may take a moment to leave).
    pub(super) fn remove(root: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for path in paths(root) {
            for cg in tree(&path) {
                while std::fs::remove_dir(&cg).is_err() && cg.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// What containerd and the kubelet mounted under a node's directory.
mod mounts {
    use super::*;

    pub(super) struct Mount {
        pub(super) point: PathBuf,
        pub(super) fstype: String,
    }

    /// `/proc/self/mountinfo`, in mount order.
    pub(super) fn mount_table() -> Vec<Mount> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let point = left.split(' ').nth(4)?;
                let fstype = right.split(' ').next()?;
                Some(Mount {
                    point: PathBuf::from(unescape(point)),
                    fstype: fstype.to_string(),
                })
            })
            .collect()
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let digits: String = (0..3).filter_map(|_| chars.next()).collect();
                if let Ok(code) = u8::from_str_radix(&digits, 8) {
                    out.push(code as char);
                    continue;
                }
                out.push(c);
                out.push_str(&digits);
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Unmount everything mounted at or under `dir`, last-mounted and
    /// deepest first, until nothing is left (stacked mounts need several rounds).
    pub(super) fn unmount_under(dir: &Path) {
        for _ in 0..10 {
            let mut points: Vec<PathBuf> = mount_table()
                .into_iter()
                .map(|m| m.point)
                .filter(|p| p.starts_with(dir))
                .collect();
            if points.is_empty() {
                return;
            }
            points.reverse();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in points {
                let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
                    continue;
                };
                // SAFETY: umount2(2) with a valid NUL-terminated path.
                if unsafe { libc::umount2(c_path.as_ptr(), 0) } != 0 {
                    // Busy: detach it now, the kernel finishes when it can.
                    // SAFETY: as above.
                    unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn unescape_reads_octal_escapes() {
            assert_eq!(super::unescape(r"/tmp/a\040b"), "/tmp/a b");
            assert_eq!(super::unescape("/plain"), "/plain");
        }
    }
}

/// The sysctls the kubelet sets at start (`setupKernelTunables`), saved
/// before the first node of the machine starts and restored when the last
/// one stops. Nodes of several test processes share one record of the
/// original values, guarded by a lock, so none restores a value another
/// node's kubelet set.
mod sysctl {
    use super::*;

    const KEYS: [&str; 7] = [
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
        // The CNI bridge plugin (`isGateway`) turns forwarding on.
        "net/ipv4/ip_forward",
    ];
    const RECORD: &str = "/run/regcred-testenv-node-sysctls.json";

    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Record {
        /// Original values, by key under /proc/sys.
        original: BTreeMap<String, String>,
        /// PIDs of the processes with a node running.
        holders: Vec<u32>,
    }

    /// This process's share of the record; released on drop.
    pub(super) struct Hold(());

    use super::machine_lock as locked;

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    fn read() -> Record {
        std::fs::read(RECORD)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    impl Hold {
        pub(super) fn acquire() -> anyhow::Result<Self> {
            locked(|| -> anyhow::Result<()> {
                let mut record = read();
                record.holders.retain(|&pid| alive(pid));
                // An empty record, or one left by killed processes whose
                // values were saved before any kubelet ran, stays valid.
                if record.original.is_empty() {
                    for key in KEYS {
                        if let Ok(value) = std::fs::read_to_string(Path::new("/proc/sys").join(key)) {
                            record.original.insert(key.to_string(), value.trim().to_string());
                        }
                    }
                }
                let me = std::process::id();
                record.holders.push(me);
                std::fs::write(RECORD, serde_json::to_vec(&record)?)?;
                Ok(())
            })??;
            Ok(Self(()))
        }
    }

    impl Drop for Hold {
        fn drop(&mut self) {
            let _ = locked(|| {
                let mut record = read();
                let me = std::process::id();
                // This process holds one share per running node.
                if let Some(i) = record.holders.iter().position(|&p| p == me) {
                    record.holders.remove(i);
                }
                record.holders.retain(|&pid| alive(pid));
                if record.holders.is_empty() {
                    for (key, value) in &record.original {
                        let _ = std::fs::write(Path::new("/proc/sys").join(key), value);
                    }
                    let _ = std::fs::remove_file(RECORD);
                } else {
                    let _ = serde_json::to_vec(&record).map(|b| std::fs::write(RECORD, b));
                }
            });
        }
    }
}
