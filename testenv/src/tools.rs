//! Where the test tool chain lives: versions pinned in `hack/versions.env`,
//! binaries built into the cache by `make tools`.

use std::path::{Path, PathBuf};

const VERSIONS: &str = include_str!("../../hack/versions.env");

/// A version pinned in `hack/versions.env`, e.g. `pinned("HELM_VERSION")`.
pub fn pinned(name: &str) -> &'static str {
    VERSIONS
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} is not pinned in hack/versions.env"))
}

/// `REGCRED_CACHE`, else `$XDG_CACHE_HOME/regcred`, else `~/.cache/regcred`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REGCRED_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"))
            .join("regcred")
    })
}

/// Where `hack/build-envtest.sh` puts etcd and the Kubernetes binaries for the pinned
/// versions (`REGCRED_ENVTEST_DIR` overrides).
pub fn envtest_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REGCRED_ENVTEST_DIR") {
        return dir.into();
    }
    cache_dir()
        .join("envtest")
        .join(format!("k8s-{}-etcd-{}", pinned("K8S_VERSION"), pinned("ETCD_VERSION")))
}

/// The helm binary: `REGCRED_HELM`, else where `hack/install-helm.sh` builds
/// it. Panics, saying how to get it, when it is missing.
pub fn helm_binary() -> PathBuf {
    let path = std::env::var_os("REGCRED_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("helm").join(pinned("HELM_VERSION")).join("helm"));
    assert!(
        path.is_file(),
        "helm not found at {}: run `make tools` (hack/install-helm.sh builds it from its Go module)",
        path.display()
    );
    path
}

/// Run helm with `args` in `dir`; its stdout, or a panic with what it printed.
pub fn helm(dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(helm_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running helm");
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}{}",
        shown.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}
