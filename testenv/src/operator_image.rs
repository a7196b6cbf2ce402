//! regcred's own container image, built without a Docker engine: what
//! `make image` builds (through the `regcred-image` binary) and what
//! tests/chart_node.rs installs with the chart, from one function.
//!
//! Two layers, as the `Dockerfile` builds them:
//! 1. a base from Debian's own packages (`hack/image-rootfs.sh`): the glibc
//!    and libgcc the binary links, ca-certificates, `/etc/passwd` and
//!    `/etc/group` with the non-root user 65532, and `/etc/nsswitch.conf`
//!    (`hosts: files dns`), so that glibc's resolver finds names in the
//!    pod's `/etc/hosts` and in DNS. regcred is linked against glibc (the
//!    musl target cannot be installed here), and a glibc program resolves
//!    names through NSS at run time: a bare binary on an empty image could
//!    not resolve anything;
//! 2. the binary at `/usr/local/bin/regcred`.
//!
//! No shell and no package manager; the user is numeric (`65532:65532`), so
//! the kubelet's `runAsNonRoot` check can verify it without reading
//! `/etc/passwd`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::oci::{Image, layer_from_dir, layer_from_files};

/// The user the image runs as: distroless's `nonroot`, which the chart's
/// securityContext names.
pub const USER: &str = "65532:65532";
/// Where the binary is in the image.
pub const BINARY_PATH: &str = "/usr/local/bin/regcred";

/// The image of `binary` (a regcred built for x86_64 Linux with glibc).
/// Returns the image and the Debian packages (`name=version`) of its base.
pub fn build(binary: &Path) -> anyhow::Result<(Image, Vec<String>)> {
    if !binary.is_file() {
        bail!("{} not found: build regcred first", binary.display());
    }
    let work = crate::scratch::dir("image")?;
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let script = rootfs_script();
    let output = Command::new(&script)
        .arg(binary)
        .arg(&rootfs)
        .env("REGCRED_CACHE", crate::tools::cache_dir())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); it needs dpkg, apt-get and ldd (Debian): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let packages = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    let base = layer_from_dir(&rootfs)?;
    let app = layer_from_files(&[(BINARY_PATH, binary, 0o755)])?;
    let image = Image::new(
        vec![base, app],
        serde_json::json!({
            "User": USER,
            "Entrypoint": [BINARY_PATH],
            "Cmd": ["run"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "ExposedPorts": {"8080/tcp": {}},
            "WorkingDir": "/",
        }),
    );
    Ok((image, packages))
}

/// `hack/image-rootfs.sh` of this repository.
fn rootfs_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/image-rootfs.sh")
}
