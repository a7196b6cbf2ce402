//! `make image`'s supply-chain records: the image config names the source
//! revision and repository (`org.opencontainers.image.revision`/`.source`),
//! the base carries dpkg's records of its packages, and an SPDX SBOM beside
//! the OCI layout lists the Debian packages and the Rust crates of the
//! binary with their versions. Built as `make image` builds it
//! (`regcred_testenv::operator_image::write`, which `regcred-image` calls),
//! from the test build of the binary; needs dpkg and apt-get (Debian).

use std::path::Path;
use std::process::Command;

use regcred_testenv::operator_image;
use serde_json::Value;

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).expect("a blob of the layout")
}

/// Cargo.lock's version and checksum of `name` (the one version it locks).
fn locked(name: &str) -> (String, String) {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let block = lock
        .split("[[package]]")
        .find(|b| b.lines().any(|l| l == format!("name = \"{name}\"")))
        .unwrap_or_else(|| panic!("{name} in Cargo.lock"));
    let field = |key: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("version"), field("checksum"))
}

#[test]
fn the_image_records_its_revision_and_source_and_an_sbom_lists_its_packages_and_crates() {
    let work = regcred_testenv::scratch::dir("image-test").unwrap();
    let out = work.path().join("regcred");
    let started = std::time::Instant::now();
    let written =
        operator_image::write(Path::new(env!("CARGO_BIN_EXE_regcred")), &out, "test").expect("make image's build");
    println!("BENCH image: built with its SBOM in {:?}", started.elapsed());

    // The labels, in the config the layout's manifest names.
    let index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(&out, index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value = serde_json::from_slice(&blob(&out, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let labels = &config["config"]["Labels"];
    println!("labels: {labels}");
    let head = git(&["rev-parse", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let want = if dirty { format!("{head}-dirty") } else { head };
    assert_eq!(labels[operator_image::REVISION_LABEL], want.as_str());
    let source = labels[operator_image::SOURCE_LABEL].as_str().unwrap_or_default();
    assert!(source.starts_with("https://") || source.starts_with("git@"), "{source}");

    // dpkg's records of the base's packages, for image scanners.
    let base = blob(&out, manifest["layers"][0]["digest"].as_str().unwrap());
    let base_path = work.path().join("base.tar");
    std::fs::write(&base_path, base).unwrap();
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&base_path)
        .output()
        .expect("running tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("var/lib/dpkg/status.d/libc6"), "{listing}");

    // The SBOM beside the layout.
    assert_eq!(written.sbom, work.path().join("regcred.spdx.json"));
    let sbom: Value = serde_json::from_slice(&std::fs::read(&written.sbom).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let packages = sbom["packages"].as_array().unwrap();
    let find = |name: &str| packages.iter().find(|p| p["name"] == name);
    let image = find("regcred").expect("the image itself");
    assert_eq!(
        image["checksums"][0]["checksumValue"],
        written.image.digest().trim_start_matches("sha256:")
    );
    for line in &written.packages {
        let (name, version) = line.split_once('=').unwrap();
        let deb = find(name).unwrap_or_else(|| panic!("Debian package {name} in the SBOM"));
        assert_eq!(deb["versionInfo"], version, "{name}");
        let purl = deb["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(purl.starts_with(&format!("pkg:deb/debian/{name}@")), "{purl}");
    }
    assert!(
        written.packages.iter().any(|p| p.starts_with("libc6=")),
        "{:?}",
        written.packages
    );
    for name in ["kube", "tokio", "aws-lc-rs", "serde"] {
        let (version, checksum) = locked(name);
        let c = find(name).unwrap_or_else(|| panic!("crate {name} in the SBOM"));
        assert_eq!(c["versionInfo"], version.as_str(), "{name}");
        assert_eq!(c["checksums"][0]["checksumValue"], checksum.as_str(), "{name}");
        assert_eq!(
            c["externalRefs"][0]["referenceLocator"],
            format!("pkg:cargo/{name}@{version}"),
            "{name}"
        );
    }
    // The test harness's and the benchmarks' crates are not in the binary.
    for absent in ["regcred-testenv", "bcrypt", "tempfile"] {
        assert!(find(absent).is_none(), "{absent} is not compiled into regcred");
    }
    let contained = sbom["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS")
        .count();
    assert_eq!(contained, packages.len() - 1);
    println!(
        "SBOM: {} Debian packages, {} crates",
        written.packages.len(),
        packages.len() - 1 - written.packages.len()
    );
}
