//! The regcred binary as a process under test, with its logs captured.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ControlPlane;
use crate::process::Process;

/// A running `regcred run` against a test control plane.
pub struct Operator {
    process: Process,
    log: PathBuf,
}

impl Operator {
    /// Start `binary run --kubeconfig <cp> --credentials-namespace <ns> <extra>`.
    /// Logs go to a file in `log_dir` readable with [`Operator::logs`].
    pub fn start(
        binary: &Path,
        cp: &ControlPlane,
        credentials_namespace: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_with_kubeconfig(binary, cp.kubeconfig(), credentials_namespace, extra, env)
    }

    pub fn start_with_kubeconfig(
        binary: &Path,
        kubeconfig: &Path,
        credentials_namespace: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = kubeconfig.parent().unwrap_or(Path::new("/tmp"));
        let log = dir.join(format!("operator-{}.log", crate::free_port()));
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--credentials-namespace={credentials_namespace}"));
        // Tests listen on loopback only, and parallel operators must not
        // fight over the default :8080.
        if !extra.iter().any(|a| a.starts_with("--metrics-addr")) {
            cmd.arg(format!("--metrics-addr=127.0.0.1:{}", crate::free_port()));
        }
        cmd.args(extra)
            .env(
                "RUST_LOG",
                std::env::var("REGCRED_TEST_RUST_LOG").unwrap_or_else(|_| "info,regcred=debug".into()),
            )
            .env_remove("KUBECONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Process::spawn("regcred", cmd, &log)?;
        Ok(Self { process, log })
    }

    /// Everything the operator logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exited()
    }

    /// SIGTERM and wait (SIGKILL after 10 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.process.stop(Duration::from_secs(10))
    }

    /// SIGSTOP: the process stays and its sockets accept, but nothing
    /// answers (a hung replica), until [`Operator::thaw`].
    pub fn freeze(&self) {
        self.process.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Operator::freeze`].
    pub fn thaw(&self) {
        self.process.signal(libc::SIGCONT);
    }

    /// SIGKILL at once, as a crash or a lost node would.
    pub fn kill(&mut self) {
        self.process.signal(libc::SIGKILL);
        let _ = self.process.stop(Duration::from_secs(5));
    }
}

/// Poll `check` every 20 ms until it breaks with a result, or give up after
/// `timeout` with the last state it continued with. The one wait loop of the
/// tests ([`eventually`]) and the demo.
pub async fn poll_until<R, S, F, Fut>(timeout: Duration, mut check: F) -> Result<R, S>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<R, S>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            ControlFlow::Break(done) => return Ok(done),
            ControlFlow::Continue(seen) if tokio::time::Instant::now() >= deadline => return Err(seen),
            ControlFlow::Continue(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `check` every 20 ms until it returns `Some`, or panic after `timeout`
/// saying what was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = poll_until(timeout, || {
        let next = check();
        async move {
            match next.await {
                Some(v) => ControlFlow::Break(v),
                None => ControlFlow::Continue(()),
            }
        }
    })
    .await;
    found.unwrap_or_else(|()| panic!("timed out after {timeout:?} waiting for {what}"))
}
