//! kube-controller-manager and kube-scheduler (built from their Go modules
//! beside kube-apiserver, see `hack/build-envtest.sh`) against a test
//! control plane, so that a Deployment on a [`crate::Node`] becomes pods as
//! in a real cluster: the deployment and replicaset controllers create and
//! replace pods, the scheduler binds them to the node, the serviceaccount
//! controller makes each namespace's `default` ServiceAccount, and the
//! root-ca-cert-publisher puts the API server's CA into every namespace as
//! the `kube-root-ca.crt` ConfigMap that pods' mounted tokens come with.
//! The node-lifecycle controller takes the `not-ready` taint the kubelet
//! registers its node with off once it is Ready; without it the scheduler
//! never binds a pod (`FailedScheduling: untolerated taint`). The job
//! controller makes a Job's pods, and the endpoints and endpointslice
//! controllers list a Service's Ready pods, which an API server started
//! with `--enable-aggregator-routing=true` calls a webhook Service at (there
//! is no kube-proxy to route a ClusterIP).
//!
//! Only those controllers run: no garbage collector, no namespace
//! controller (tests clean up after themselves or leave it to the control
//! plane's removal). Each controller uses its own ServiceAccount
//! (`--use-service-account-credentials`), so RBAC applies to it as it would
//! in a cluster. Both stop, by PID, when this is dropped.

use std::process::Command;
use std::time::Instant;

use crate::ControlPlane;
use crate::control_plane::{binary, kubeconfig_yaml};
use crate::process::Process;

/// The controllers run, by their kube-controller-manager names.
const CONTROLLERS: &str = "deployment-controller,replicaset-controller,job-controller,serviceaccount-controller,\
                           root-ca-certificate-publisher-controller,node-lifecycle-controller,\
                           endpoints-controller,endpointslice-controller";

/// A running kube-controller-manager and kube-scheduler.
pub struct Controllers {
    scheduler: Process,
    controller_manager: Process,
    // Last: removed once both are stopped.
    _dir: tempfile::TempDir,
}

impl Controllers {
    /// Start both against `cp`. They need no readiness wait of their own:
    /// whatever a test waits for (a pod bound, a ConfigMap published) shows
    /// they work.
    pub fn start(cp: &ControlPlane) -> anyhow::Result<Self> {
        let started = Instant::now();
        let controller_manager_bin = binary("kube-controller-manager")?;
        let scheduler_bin = binary("kube-scheduler")?;
        let dir = crate::scratch::dir("controllers")?;
        let d = dir.path();
        // The users the API server's bootstrap RBAC binds to these components.
        let kubeconfig = |user: &str| -> anyhow::Result<std::path::PathBuf> {
            let path = d.join(format!("{}.kubeconfig", user.trim_start_matches("system:")));
            let cert = cp.ca().client(user, &[]);
            std::fs::write(&path, kubeconfig_yaml(cp.url(), cp.ca().cert_pem(), &cert))?;
            Ok(path)
        };
        let root_ca = d.join("root-ca.crt");
        std::fs::write(&root_ca, cp.ca().cert_pem())?;

        let mut cmd = Command::new(controller_manager_bin);
        cmd.arg(format!(
            "--kubeconfig={}",
            kubeconfig("system:kube-controller-manager")?.display()
        ))
        .arg(format!("--controllers={CONTROLLERS}"))
        .arg("--use-service-account-credentials=true")
        .arg(format!("--root-ca-file={}", root_ca.display()))
        .arg("--leader-elect=false")
        .arg("--secure-port=0")
        // A node that stops reporting is noticed within seconds, not 40 s.
        .arg("--node-monitor-period=2s")
        .arg("--node-monitor-grace-period=20s")
        .arg("--v=1");
        let controller_manager =
            Process::spawn("kube-controller-manager", cmd, &d.join("kube-controller-manager.log"))?;

        let mut cmd = Command::new(scheduler_bin);
        cmd.arg(format!(
            "--kubeconfig={}",
            kubeconfig("system:kube-scheduler")?.display()
        ))
        .arg("--leader-elect=false")
        .arg("--secure-port=0")
        .arg("--v=1");
        let scheduler = Process::spawn("kube-scheduler", cmd, &d.join("kube-scheduler.log"))?;
        tracing::info!(elapsed = ?started.elapsed(), "controller-manager and scheduler started");
        Ok(Self {
            scheduler,
            controller_manager,
            _dir: dir,
        })
    }

    /// Fail if either has exited, with its last output.
    pub fn check(&mut self) -> anyhow::Result<()> {
        for process in [&mut self.controller_manager, &mut self.scheduler] {
            if let Some(status) = process.exited() {
                anyhow::bail!(
                    "{} exited with {status}; last output:\n{}",
                    process.name(),
                    process.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// The last `lines` lines of both logs, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- kube-controller-manager ---\n{}\n--- kube-scheduler ---\n{}",
            self.controller_manager.log_tail(lines),
            self.scheduler.log_tail(lines)
        )
    }

    /// PIDs of kube-controller-manager and kube-scheduler.
    pub fn pids(&self) -> [u32; 2] {
        [self.controller_manager.pid(), self.scheduler.pid()]
    }
}
