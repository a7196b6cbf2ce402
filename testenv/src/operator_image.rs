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
//!
//! Its supply chain, recorded:
//! - the image config's labels `org.opencontainers.image.revision` (git
//!   HEAD, `-dirty` when tracked files differ from it) and
//!   `org.opencontainers.image.source` (the repository);
//! - `/var/lib/dpkg/status.d/<package>` in the base, each the control file
//!   of the `.deb` unpacked there (as distroless images do), so image
//!   scanners see the Debian packages and their versions;
//! - an SPDX 2.3 JSON SBOM written beside the OCI layout ([`write`]): the
//!   Debian packages (from those control files) and the Rust crates
//!   compiled into the binary (`cargo tree -e normal` of the regcred
//!   package for the image's target, with checksums and sources from
//!   `Cargo.lock`). Written by hand with serde_json: the document is a
//!   flat list, and no SBOM crate is needed for it.

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
    let packages: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    let status_d = rootfs.join("var/lib/dpkg/status.d");
    std::fs::create_dir_all(&status_d)?;
    for line in &packages {
        let (name, _) = line.split_once('=').context("the rootfs script prints name=version")?;
        std::fs::write(status_d.join(name), deb_control(line)?)?;
    }
    let base = layer_from_dir(&rootfs)?;
    let app = layer_from_files(&[(BINARY_PATH, binary, 0o755)])?;
    let provenance = Provenance::of_repository()?;
    let image = Image::new(
        vec![base, app],
        serde_json::json!({
            "User": USER,
            "Entrypoint": [BINARY_PATH],
            "Cmd": ["run"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "ExposedPorts": {"8080/tcp": {}},
            "WorkingDir": "/",
            "Labels": {
                REVISION_LABEL: provenance.revision,
                SOURCE_LABEL: provenance.source,
            },
        }),
    );
    Ok((image, packages))
}

/// The image config label naming the source revision (OCI annotation key).
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// The image config label naming the source repository.
pub const SOURCE_LABEL: &str = "org.opencontainers.image.source";
/// The repository, when `REGCRED_IMAGE_SOURCE` is unset and git's `origin` is
/// not a URL others can fetch.
const DEFAULT_SOURCE: &str = "https://github.com/regcred/regcred";
/// The target the image's binary is built for.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// What `make image` wrote: the image, its base's Debian packages
/// (`name=version`), and the SBOM's path.
pub struct Written {
    pub image: Image,
    pub packages: Vec<String>,
    pub sbom: PathBuf,
}

/// [`build`] the image of `binary`, write it as an OCI layout at `out`
/// tagged `tag`, and its SBOM beside it (`<out>.spdx.json`).
pub fn write(binary: &Path, out: &Path, tag: &str) -> anyhow::Result<Written> {
    let (image, packages) = build(binary)?;
    image.write_layout(out, tag)?;
    let sbom = out.with_file_name(format!(
        "{}.spdx.json",
        out.file_name().context("--out names a directory")?.to_string_lossy()
    ));
    let document = spdx(&image, tag, &packages)?;
    std::fs::write(&sbom, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", sbom.display()))?;
    Ok(Written { image, packages, sbom })
}

/// Whether a git remote names a repository others can fetch (not a path on
/// the machine that built the image, as a clone of a clone has).
fn is_public_url(remote: &str) -> bool {
    ["https://", "http://", "ssh://", "git@"]
        .iter()
        .any(|p| remote.starts_with(p))
}

/// Where the image's source is: the repository and the revision it was built from.
struct Provenance {
    revision: String,
    source: String,
    /// The commit's time (RFC 3339), the SBOM's creation time, so that
    /// the same commit gives the same document.
    committed: String,
}

impl Provenance {
    fn of_repository() -> anyhow::Result<Self> {
        let head =
            git(&["rev-parse", "HEAD"]).context("the image records its git revision: build from a git checkout")?;
        let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
        let source = std::env::var("REGCRED_IMAGE_SOURCE")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| git(&["remote", "get-url", "origin"]).ok().filter(|s| is_public_url(s)))
            .unwrap_or_else(|| DEFAULT_SOURCE.to_string());
        Ok(Self {
            revision: if dirty { format!("{head}-dirty") } else { head },
            source,
            committed: git(&["log", "-1", "--date=format-local:%Y-%m-%dT%H:%M:%SZ", "--format=%cd"])?,
        })
    }
}

/// `git <args>` in this repository, its trimmed output.
fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .env("TZ", "UTC")
        .arg("-C")
        .arg(repository())
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The control file of the `.deb` of `line` (`name=version`) that the
/// rootfs script unpacked, from its download cache.
fn deb_control(line: &str) -> anyhow::Result<String> {
    let (name, version) = line.split_once('=').context("name=version")?;
    let debs = std::env::var_os("REGCRED_IMAGE_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::tools::cache_dir().join("image-debs"));
    let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
    let deb = std::fs::read_dir(&debs)
        .with_context(|| format!("reading {}", debs.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let file = p.file_name().unwrap_or_default().to_string_lossy();
            file.starts_with(&prefix) && file.ends_with(".deb")
        })
        .with_context(|| format!("no {prefix}*.deb in {}", debs.display()))?;
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output()
        .context("running dpkg-deb")?;
    if !out.status.success() {
        bail!("dpkg-deb -f {} failed", deb.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One field of a Debian control file.
fn control_field<'a>(control: &'a str, field: &str) -> Option<&'a str> {
    control
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// A Rust crate compiled into the binary.
struct Crate {
    name: String,
    version: String,
    license: String,
    /// From Cargo.lock: `registry+https://github.com/rust-lang/crates.io-index`; none for the workspace's own.
    source: Option<String>,
    checksum: Option<String>,
}

/// The crates `cargo tree` says the regcred package links for [`TARGET`]
/// (normal dependencies only: not build scripts', not tests'), with their
/// sources and checksums from Cargo.lock.
fn crates() -> anyhow::Result<Vec<Crate>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repository())
        .args(["tree", "--locked", "-p", "regcred", "-e", "normal", "--target", TARGET])
        .args(["--prefix", "none", "--format", "{p}\t{l}"])
        .output()
        .context("running cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lock = std::fs::read_to_string(repository().join("Cargo.lock")).context("reading Cargo.lock")?;
    let locked = lock_entries(&lock);
    let mut seen = std::collections::BTreeSet::new();
    let mut crates = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (package, license) = line.split_once('\t').unwrap_or((line, ""));
        let mut words = package.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let version = version.trim_start_matches('v').to_string();
        if !seen.insert((name.to_string(), version.clone())) {
            continue;
        }
        let entry = locked.get(&(name.to_string(), version.clone()));
        crates.push(Crate {
            name: name.to_string(),
            license: license.trim_end_matches(" (*)").trim().to_string(),
            source: entry.and_then(|e| e.0.clone()),
            checksum: entry.and_then(|e| e.1.clone()),
            version,
        });
    }
    Ok(crates)
}

/// Cargo.lock's `[[package]]` entries: (name, version) → (source, checksum).
type LockEntries = std::collections::BTreeMap<(String, String), (Option<String>, Option<String>)>;

fn lock_entries(lock: &str) -> LockEntries {
    let value = |line: &str, key: &str| {
        line.strip_prefix(key)
            .and_then(|rest| rest.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let mut entries = LockEntries::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| block.lines().find_map(|l| value(l, key));
        if let (Some(name), Some(version)) = (field("name "), field("version ")) {
            entries.insert((name, version), (field("source "), field("checksum ")));
        }
    }
    entries
}

/// The SPDX 2.3 document of `image`: the image, the Debian packages of its
/// base and the Rust crates of its binary, each contained in the image.
fn spdx(image: &Image, tag: &str, packages: &[String]) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let provenance = Provenance::of_repository()?;
    let digest = image.digest();
    let mut listed = vec![json!({
        "SPDXID": "SPDXRef-image",
        "name": "regcred",
        "versionInfo": tag,
        "downloadLocation": provenance.source,
        "sourceInfo": format!("built from revision {} of {}", provenance.revision, provenance.source),
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.trim_start_matches("sha256:")}],
        "externalRefs": [purl(format!("pkg:oci/regcred@{}", digest.replace(':', "%3A")))],
    })];
    listed.extend(deb_packages(packages)?);
    listed.extend(crate_packages(&provenance.source)?);
    let relationships: Vec<serde_json::Value> = std::iter::once(json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-image",
    }))
    .chain(listed.iter().skip(1).map(|p| {
        json!({"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": p["SPDXID"]})
    }))
    .collect();
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("regcred image {tag}"),
        "documentNamespace": format!("{}/spdx/{}", provenance.source.trim_end_matches(".git"), digest),
        "creationInfo": {"created": provenance.committed, "creators": ["Tool: regcred-image"]},
        "packages": listed,
        "relationships": relationships,
    }))
}

/// The SPDX packages of the Debian packages in the base (`name=version` each).
fn deb_packages(packages: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    use serde_json::json;
    let mut out = Vec::new();
    for (i, line) in packages.iter().enumerate() {
        let control = deb_control(line)?;
        let field = |f: &str| control_field(&control, f).unwrap_or("NOASSERTION").to_string();
        let (name, version, arch) = (field("Package"), field("Version"), field("Architecture"));
        out.push(json!({
            "SPDXID": format!("SPDXRef-deb-{i}"),
            "name": name,
            "versionInfo": version,
            "supplier": format!("Organization: {}", field("Maintainer")),
            "downloadLocation": "NOASSERTION",
            "sourceInfo": format!("Debian source package {}", field("Source").replace("NOASSERTION", &name)),
            "externalRefs": [purl(format!("pkg:deb/debian/{name}@{}?arch={arch}{}", purl_version(&version), distro()))],
        }));
    }
    Ok(out)
}

/// The SPDX packages of the Rust crates in the binary; `source`: the repository, for the workspace's own.
fn crate_packages(source: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    use serde_json::json;
    let mut out = Vec::new();
    for (i, c) in crates()?.iter().enumerate() {
        let from_crates_io = c.source.as_deref().is_some_and(|s| s.contains("crates.io-index"));
        let mut package = json!({
            "SPDXID": format!("SPDXRef-crate-{i}"),
            "name": c.name,
            "versionInfo": c.version,
            "downloadLocation": if from_crates_io {
                format!("https://crates.io/api/v1/crates/{}/{}/download", c.name, c.version)
            } else {
                source.to_string()
            },
            "licenseDeclared": if c.license.is_empty() { "NOASSERTION".to_string() } else { c.license.clone() },
            "externalRefs": [purl(format!("pkg:cargo/{}@{}", c.name, c.version))],
        });
        if let Some(sum) = &c.checksum {
            package["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
        }
        out.push(package);
    }
    Ok(out)
}

/// A version as a purl spells it (`:` and `+` percent-encoded).
fn purl_version(version: &str) -> String {
    version.replace(':', "%3A").replace('+', "%2B")
}

/// `&distro=debian-<VERSION_ID>` of the system whose packages the base
/// holds (the rootfs script takes the versions installed here), if it says.
fn distro() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    match (field("ID"), field("VERSION_ID")) {
        (Some(id), Some(version)) if id == "debian" => format!("&distro=debian-{version}"),
        _ => String::new(),
    }
}

fn purl(locator: String) -> serde_json::Value {
    serde_json::json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator})
}

/// `hack/image-rootfs.sh` of this repository.
fn rootfs_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/image-rootfs.sh")
}
