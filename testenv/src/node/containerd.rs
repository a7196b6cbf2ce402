//! The container runtime of a test [`Node`](super::Node): Debian's
//! containerd 1.6, or containerd 2.x built from its Go module into the tool
//! cache (`hack/build-containerd.sh`, version pinned in `hack/versions.env`),
//! each with a config of its own for the node's directories and sockets.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::tools::{cache_dir, pinned};

const DEBIAN_CONTAINERD: &str = "/usr/bin/containerd";
const DEBIAN_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
pub(super) const RUNC: &str = "/usr/sbin/runc";

/// Which containerd a [`Node`](super::Node) runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// Debian's `containerd` package (1.6) with its runc shim.
    #[default]
    Containerd16,
    /// containerd 2.x (`CONTAINERD_VERSION` in `hack/versions.env`) with
    /// its own runc shim, built by `make tools`; its CRI pulls through the
    /// Transfer Service.
    Containerd2,
}

/// The binaries of a runtime, checked to exist.
pub(super) struct Binaries {
    pub(super) containerd: PathBuf,
    pub(super) shim: PathBuf,
    /// `ctr`, to check which plugins loaded (2.x only).
    pub(super) ctr: Option<PathBuf>,
}

/// Where a node puts what its containerd config names.
pub(super) struct Paths<'a> {
    pub(super) dir: &'a Path,
    pub(super) socket: &'a Path,
    pub(super) sandbox_image: &'a str,
    pub(super) stream_port: u16,
    pub(super) cni_bin: &'a Path,
    pub(super) cni_conf: &'a Path,
    pub(super) certs: &'a Path,
}

impl Runtime {
    /// How tests and logs name it, e.g. `containerd v2.4.2`.
    pub fn describe(self) -> String {
        match self {
            Self::Containerd16 => "containerd 1.6 (Debian)".to_string(),
            Self::Containerd2 => format!("containerd {}", pinned("CONTAINERD_VERSION")),
        }
    }

    /// Where `hack/build-containerd.sh` puts containerd 2.x for the pinned
    /// version (`REGCRED_CONTAINERD_DIR` overrides).
    pub fn containerd2_dir() -> PathBuf {
        std::env::var_os("REGCRED_CONTAINERD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("containerd").join(pinned("CONTAINERD_VERSION")))
    }

    /// The runtime's binaries; fails, saying how to get them, when one is missing.
    pub(super) fn binaries(self) -> anyhow::Result<Binaries> {
        let found = match self {
            Self::Containerd16 => {
                for (path, package) in [
                    (DEBIAN_CONTAINERD, "containerd"),
                    (DEBIAN_SHIM, "containerd"),
                    (RUNC, "runc"),
                ] {
                    if !Path::new(path).is_file() {
                        bail!("{path} not found: run `make tools` (hack/install-tools.sh installs Debian's {package})");
                    }
                }
                Binaries {
                    containerd: DEBIAN_CONTAINERD.into(),
                    shim: DEBIAN_SHIM.into(),
                    ctr: None,
                }
            }
            Self::Containerd2 => {
                let dir = Self::containerd2_dir();
                for name in ["containerd", "containerd-shim-runc-v2", "ctr"] {
                    if !dir.join(name).is_file() {
                        bail!(
                            "{} not found: run `make tools` (hack/build-containerd.sh builds containerd {} from its Go module)",
                            dir.join(name).display(),
                            pinned("CONTAINERD_VERSION")
                        );
                    }
                }
                if !Path::new(RUNC).is_file() {
                    bail!("{RUNC} not found: run `make tools` (hack/install-tools.sh installs Debian's runc)");
                }
                Binaries {
                    containerd: dir.join("containerd"),
                    shim: dir.join("containerd-shim-runc-v2"),
                    ctr: Some(dir.join("ctr")),
                }
            }
        };
        Ok(found)
    }

    /// The containerd config for a node.
    pub(super) fn config(self, p: &Paths, shim: &Path) -> String {
        let common = common(p);
        match self {
            Self::Containerd16 => format!("version = 2\n{common}\n{}", cri_v2(p)),
            Self::Containerd2 => format!("version = 3\n{common}\n{}", cri_v3(p, shim)),
        }
    }
}

/// Root, state, sockets: the same keys in config versions 2 and 3.
fn common(p: &Paths) -> String {
    let socket = p.socket.display();
    format!(
        r#"root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"#,
        root = p.dir.join("containerd/root").display(),
        state = p.dir.join("containerd/state").display(),
    )
}

/// containerd 1.6: config version 2, one CRI plugin. The `native`
/// snapshotter (no overlayfs here).
fn cri_v2(p: &Paths) -> String {
    format!(
        r#"[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"
  restrict_oom_score_adj = true
  # Pods' network namespaces under the node's directory, not /var/run/netns,
  # so that the node's unmount removes them (and their veths) too.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  Root = "{runc_root}"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{certs}"
"#,
        opt = p.dir.join("containerd/opt").display(),
        sandbox_image = p.sandbox_image,
        stream_port = p.stream_port,
        runc = RUNC,
        runc_root = p.dir.join("runc").display(),
        cni_bin = p.cni_bin.display(),
        cni_conf = p.cni_conf.display(),
        certs = p.certs.display(),
    )
}

/// containerd 2.x: config version 3, the CRI split into its images, runtime
/// and server plugins. The CRI pulls through the Transfer Service, which
/// loads (and with it the CRI) only with an `unpack_config` for a snapshotter
/// that loads here: `native`. Registries only through `config_path`
/// (hosts.toml): the legacy `mirrors`/`configs`/`auths` would switch the CRI
/// back to its old pull path. NRI is off (it would listen on
/// /var/run/nri/nri.sock, one socket for the whole machine).
fn cri_v3(p: &Paths, shim: &Path) -> String {
    format!(
        r#"[plugins.'io.containerd.internal.v1.opt']
  path = "{opt}"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.transfer.v1.local']
  config_path = "{certs}"

[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "linux/{arch}"
  snapshotter = "native"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "{certs}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  # Pods' network namespaces under the node's directory, not /var/run/netns,
  # so that the node's unmount removes them (and their veths) too.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  # This version's shim by path, never Debian's 1.6 one on PATH.
  runtime_path = "{shim}"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  Root = "{runc_root}"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{cni_bin}"]
  conf_dir = "{cni_conf}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"
"#,
        opt = p.dir.join("containerd/opt").display(),
        arch = go_arch(),
        sandbox_image = p.sandbox_image,
        stream_port = p.stream_port,
        shim = shim.display(),
        runc = RUNC,
        runc_root = p.dir.join("runc").display(),
        cni_bin = p.cni_bin.display(),
        cni_conf = p.cni_conf.display(),
        certs = p.certs.display(),
    )
}

/// This machine's architecture as OCI platforms name it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The plugins the node needs from containerd 2.x, as `ctr plugins ls`
/// prints them (type, id).
pub(super) const REQUIRED_PLUGINS: [(&str, &str); 4] = [
    ("io.containerd.transfer.v1", "local"),
    ("io.containerd.cri.v1", "images"),
    ("io.containerd.cri.v1", "runtime"),
    ("io.containerd.grpc.v1", "cri"),
];

/// Which of [`REQUIRED_PLUGINS`] `ctr plugins ls` does not show as `ok`.
pub(super) fn missing_plugins(listing: &str) -> Vec<String> {
    REQUIRED_PLUGINS
        .iter()
        .filter(|(kind, id)| {
            !listing.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(kind) && f.get(1) == Some(id) && f.last() == Some(&"ok")
            })
        })
        .map(|(kind, id)| format!("{kind} {id}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_not_ok_are_named() {
        let listing = "TYPE                       ID       PLATFORMS      STATUS\n\
            io.containerd.transfer.v1  local    -              ok\n\
            io.containerd.cri.v1       images   -              error\n\
            io.containerd.cri.v1       runtime  linux/amd64    ok\n";
        assert_eq!(
            missing_plugins(listing),
            ["io.containerd.cri.v1 images", "io.containerd.grpc.v1 cri"]
        );
    }

    #[test]
    fn the_2x_config_unpacks_with_the_snapshotter_it_enables() {
        let dir = Path::new("/n");
        let p = Paths {
            dir,
            socket: Path::new("/n/c.sock"),
            sandbox_image: "127.0.0.1:1/pause:1",
            stream_port: 1,
            cni_bin: dir,
            cni_conf: dir,
            certs: Path::new("/n/certs.d"),
        };
        let config = Runtime::Containerd2.config(&p, Path::new("/c/containerd-shim-runc-v2"));
        assert!(config.starts_with("version = 3\n"), "{config}");
        let unpack = config.split("unpack_config]]").nth(1).unwrap();
        assert!(unpack.contains("snapshotter = \"native\""), "{config}");
        assert!(!config.contains("mirrors") && !config.contains("auths"), "{config}");
        assert!(Runtime::Containerd16.config(&p, dir).starts_with("version = 2\n"));
    }
}
