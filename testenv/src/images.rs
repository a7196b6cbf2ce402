//! Executables for container images built without Docker: each image the
//! test node runs is one static C binary (`gcc -static`) in one layer, pushed
//! with [`crate::registry::Registry::push_binary_image`].
//!
//! Both programs wait for SIGTERM or SIGINT: as PID 1 of a container a
//! process gets no default signal handling, so they install handlers and a
//! runtime stopping them does not have to wait for its kill timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, bail};

/// The pod sandbox ("pause") container: sleeps until told to stop.
const PAUSE: &str = r#"
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
"#;

/// A test workload: says it runs (in the container's log), then sleeps
/// until told to stop.
const APP: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    puts("regcred-testenv app running");
    fflush(stdout);
    for (;;) pause();
}
"#;

/// The static `pause` binary (compiled once per test process).
pub fn pause() -> anyhow::Result<PathBuf> {
    compiled("pause", PAUSE)
}

/// The static `app` binary (compiled once per test process).
pub fn app() -> anyhow::Result<PathBuf> {
    compiled("app", APP)
}

fn compiled(name: &str, source: &str) -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| {
        let dir = crate::scratch::dir("images").expect("creating a scratch dir for test images");
        let path = dir.keep();
        crate::scratch::remove_at_exit(&path);
        path
    });
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let binary = dir.join(name);
    if !binary.is_file() {
        compile(dir, name, source)?;
    }
    Ok(binary)
}

fn compile(dir: &Path, name: &str, source: &str) -> anyhow::Result<()> {
    let c_file = dir.join(format!("{name}.c"));
    std::fs::write(&c_file, source)?;
    let output = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(dir.join(name))
        .arg(&c_file)
        .output()
        .context(
            "running gcc to build a static test image binary: run `make tools` (hack/install-tools.sh installs gcc \
             and libc6-dev)",
        )?;
    if !output.status.success() {
        bail!(
            "gcc -static {name}.c failed (static glibc comes with libc6-dev: run `make tools`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
