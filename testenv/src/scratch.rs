//! Temporary directories for test servers that never outlive their test
//! process for long.
//!
//! `tempfile::TempDir` is removed on drop, but a shared control plane lives in
//! a `static` (never dropped) and a killed test binary drops nothing; each of
//! those leaked an etcd data dir of ~120 MB per run. Every directory made here
//! is named after the owning process id, and the first one a process makes
//! sweeps away those whose owner is gone.

use std::path::Path;
use std::sync::Once;

const PREFIX: &str = "regcred-";

/// A new directory `regcred-<kind>-<pid>-XXXXXX` in the system temp dir.
pub fn dir(kind: &str) -> std::io::Result<tempfile::TempDir> {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| sweep(&std::env::temp_dir()));
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{kind}-{}-", std::process::id()))
        .tempdir()
}

/// Remove `regcred-<kind>-<pid>-*` directories whose process no longer runs.
fn sweep(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in `regcred-<kind>-<pid>-<random>`; `None` for any other name.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let _kind = parts.next()?;
    Some(pid)
}

/// Remove `path` when the process exits normally (for directories owned by
/// values in statics, which are never dropped).
pub fn remove_at_exit(path: &Path) {
    use std::sync::Mutex;
    static PATHS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
    static REGISTER: Once = Once::new();
    extern "C" fn cleanup() {
        if let Ok(paths) = PATHS.lock() {
            for p in paths.iter() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    PATHS.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
    REGISTER.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` with no arguments.
        unsafe { libc::atexit(cleanup) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_our_names() {
        assert_eq!(owner_pid("regcred-envtest-4242-AbC123"), Some(4242));
        assert_eq!(owner_pid("regcred-moto-7-x"), Some(7));
        assert_eq!(owner_pid("regcred-envtest-AbC123"), None);
        assert_eq!(owner_pid("other-envtest-42-AbC123"), None);
        assert_eq!(owner_pid("regcred-42-x"), None);
    }

    #[test]
    fn sweep_removes_only_dead_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join(format!("regcred-envtest-{}-dead", u32::MAX - 1));
        let alive = tmp.path().join(format!("regcred-envtest-{}-live", std::process::id()));
        let foreign = tmp.path().join("regcred-envtest-notours");
        for d in [&dead, &alive, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        sweep(tmp.path());
        assert!(!dead.exists(), "a directory of a dead process is removed");
        assert!(alive.exists(), "a directory of a live process stays");
        assert!(foreign.exists(), "names that are not ours stay");
    }
}
