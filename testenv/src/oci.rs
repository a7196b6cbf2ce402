//! OCI images without a Docker engine: layers are tar archives made here, an
//! image is a config blob, its layers and a manifest naming them; it is
//! written as an OCI image layout (a directory `skopeo`, `crane`, `podman`
//! and `docker buildx` read) and pushed with plain registry API calls (one
//! blob upload per blob, then the manifest).
//!
//! Layers are uncompressed tars (`application/vnd.oci.image.layer.v1.tar`):
//! every OCI runtime and registry takes them, and the images here are pushed
//! to registries on the same machine.

use std::path::Path;

use anyhow::{Context, bail};
use aws_lc_rs::digest::{SHA256, digest};
use http::{StatusCode, header};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image ready to be written or pushed: its config and its layers, bottom first.
pub struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

impl Image {
    /// An amd64 Linux image of `layers` (uncompressed tars, bottom first)
    /// with `runtime` as its runtime config (`User`, `Entrypoint`, `Cmd`, ...).
    pub fn new(layers: Vec<Vec<u8>>, runtime: serde_json::Value) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string()
        .into_bytes();
        Self { config, layers }
    }

    /// The manifest (JSON bytes).
    pub fn manifest(&self) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": LAYER_TYPE, "digest": sha256(l), "size": l.len()}))
            .collect();
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": sha256(&self.config), "size": self.config.len()},
            "layers": layers,
        })
        .to_string()
        .into_bytes()
    }

    /// The manifest digest (`sha256:…`): what a pod's `image@digest` names.
    pub fn digest(&self) -> String {
        sha256(&self.manifest())
    }

    /// Total size of the config and layers in bytes.
    pub fn size(&self) -> usize {
        self.config.len() + self.layers.iter().map(Vec::len).sum::<usize>()
    }

    /// Write the image as an OCI image layout in `dir` (replacing what was
    /// there), tagged `tag` (`org.opencontainers.image.ref.name`).
    pub fn write_layout(&self, dir: &Path, tag: &str) -> anyhow::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing the old layout {}", dir.display()))?;
        }
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let manifest = self.manifest();
        for blob in [&self.config, &manifest].into_iter().chain(&self.layers) {
            let name = sha256(blob);
            std::fs::write(blobs.join(name.trim_start_matches("sha256:")), blob)?;
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_TYPE,
                "digest": sha256(&manifest),
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string())?;
        Ok(())
    }

    /// Push to `base` (`https://host[:port]`, or `http://` for a plain-text
    /// registry) as `repository:tag`, sending `authorization` (an
    /// `Authorization` header value) if given; returns the manifest digest.
    pub async fn push(
        &self,
        http: &reqwest::Client,
        base: &str,
        repository: &str,
        tag: &str,
        authorization: Option<&str>,
    ) -> anyhow::Result<String> {
        for blob in [&self.config].into_iter().chain(&self.layers) {
            push_blob(http, base, repository, authorization, blob).await?;
        }
        let manifest = self.manifest();
        let url = format!("{base}/v2/{repository}/manifests/{tag}");
        let response = with_auth(http.put(&url), authorization)
            .header(header::CONTENT_TYPE, MANIFEST_TYPE)
            .body(manifest.clone())
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        expect(response, StatusCode::CREATED, &format!("PUT {url}")).await?;
        Ok(sha256(&manifest))
    }
}

/// Upload one blob in two steps (POST for a session, PUT with the digest),
/// unless the registry has it already.
async fn push_blob(
    http: &reqwest::Client,
    base: &str,
    repository: &str,
    authorization: Option<&str>,
    blob: &[u8],
) -> anyhow::Result<()> {
    let blob_digest = sha256(blob);
    let head = format!("{base}/v2/{repository}/blobs/{blob_digest}");
    let response = with_auth(http.head(&head), authorization).send().await?;
    if response.status() == StatusCode::OK {
        return Ok(());
    }
    let start = format!("{base}/v2/{repository}/blobs/uploads/");
    let response = with_auth(http.post(&start), authorization)
        .header(header::CONTENT_LENGTH, 0)
        .send()
        .await
        .with_context(|| format!("POST {start}"))?;
    let response = expect(response, StatusCode::ACCEPTED, &format!("POST {start}")).await?;
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .context("blob upload without a Location")?;
    let mut url = reqwest::Url::parse(&start)?.join(location)?;
    url.query_pairs_mut().append_pair("digest", &blob_digest);
    let response = with_auth(http.put(url), authorization)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await
        .with_context(|| format!("PUT blob {blob_digest}"))?;
    expect(response, StatusCode::CREATED, &format!("PUT blob {blob_digest}")).await?;
    Ok(())
}

/// A layer holding the file system under `root`, with its modes and
/// symbolic links; every entry owned by root and dated at the epoch, so the
/// same tree always gives the same digest.
pub fn layer_from_dir(root: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    append_tree(&mut tar, root, Path::new(""))?;
    Ok(tar.into_inner()?)
}

fn append_tree(tar: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))
        .with_context(|| format!("reading {}", root.join(rel).display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(entry.path())?;
        let mut header = header_for(&meta);
        let kind = meta.file_type();
        if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut header, &path, std::fs::read_link(entry.path())?)?;
        } else if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut header, &path, std::io::empty())?;
            append_tree(tar, root, &path)?;
        } else if kind.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            tar.append_data(&mut header, &path, std::fs::File::open(entry.path())?)?;
        } else {
            bail!(
                "{}: only files, directories and symbolic links go into a layer",
                path.display()
            );
        }
    }
    Ok(())
}

/// A layer holding `files`: (path in the image, host file, mode), with the
/// directories above them.
pub fn layer_from_files(files: &[(&str, &Path, u32)]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: Vec<&Path> = Vec::new();
    for (target, _, _) in files {
        dirs.extend(Path::new(target.trim_start_matches('/')).ancestors().skip(1));
    }
    dirs.retain(|d| !d.as_os_str().is_empty());
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let mut header = root_owned(0o755);
        header.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    for (target, source, mode) in files {
        let file = std::fs::File::open(source).with_context(|| format!("reading {}", source.display()))?;
        let mut header = root_owned(*mode);
        header.set_size(file.metadata()?.len());
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, target.trim_start_matches('/'), file)?;
    }
    Ok(tar.into_inner()?)
}

fn header_for(meta: &std::fs::Metadata) -> tar::Header {
    use std::os::unix::fs::PermissionsExt;
    root_owned(meta.permissions().mode() & 0o7777)
}

/// A header with every numeric field set (an unset one is NUL bytes, which
/// strict tar readers refuse): owned by root, dated at the epoch, empty.
fn root_owned(mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header
}

fn with_auth(request: reqwest::RequestBuilder, authorization: Option<&str>) -> reqwest::RequestBuilder {
    match authorization {
        Some(value) => request.header(header::AUTHORIZATION, value),
        None => request,
    }
}

async fn expect(response: reqwest::Response, status: StatusCode, what: &str) -> anyhow::Result<reqwest::Response> {
    if response.status() == status {
        return Ok(response);
    }
    let got = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: expected HTTP {status}, got {got}: {body}")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hash = digest(&SHA256, bytes);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_gives_the_same_layer_whatever_its_times() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/:/sbin/nologin\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let first = layer_from_dir(dir.path()).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/:/sbin/nologin\n").unwrap();
        assert_eq!(sha256(&first), sha256(&layer_from_dir(dir.path()).unwrap()));
        let mut archive = tar::Archive::new(first.as_slice());
        let entries: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("etc".to_string(), tar::EntryType::Directory),
                ("etc/passwd".to_string(), tar::EntryType::Regular),
                ("link".to_string(), tar::EntryType::Symlink),
            ]
        );
    }

    #[test]
    fn the_layout_indexes_the_manifest_under_its_tag() {
        let image = Image::new(vec![vec![0u8; 1024]], serde_json::json!({"Cmd": ["run"]}));
        let dir = tempfile::tempdir().unwrap();
        image.write_layout(&dir.path().join("img"), "dev").unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("img/index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], image.digest());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "dev"
        );
        let blob = dir
            .path()
            .join("img/blobs/sha256")
            .join(image.digest().trim_start_matches("sha256:"));
        assert_eq!(std::fs::read(blob).unwrap(), image.manifest());
    }
}
