//! Image references: as a pod names an image (`nginx`,
//! `ghcr.io/team/app:1`), read the way docker's reference grammar and the
//! kubelet read it, and the host-less `healthCheck.image` of the probe.

use super::host::{DOCKER_HUB, DOCKER_HUB_INDEX};

/// The registry of an image reference and the rest: the first component
/// names a registry only when it looks like a host (a `.` or a `:`, or
/// `localhost`); otherwise the image is on Docker Hub.
pub fn split_domain(image: &str) -> (Option<&str>, &str) {
    match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first), rest),
        _ => (None, image),
    }
}

/// `ParseImageName`'s repository: the domain made explicit (Docker Hub's
/// `docker.io`, official images under `library/`), tag and digest dropped.
pub fn repo_to_pull(image: &str) -> String {
    let name = strip_tag(image.split('@').next().unwrap_or_default());
    let (domain, path) = split_domain(name);
    let domain = match domain {
        None | Some(DOCKER_HUB_INDEX) => DOCKER_HUB,
        Some(domain) => domain,
    };
    if domain == DOCKER_HUB && !path.contains('/') {
        format!("{domain}/library/{path}")
    } else {
        format!("{domain}/{path}")
    }
}

/// The registry host (with port) an image is pulled from.
pub fn image_host(image: &str) -> String {
    repo_to_pull(image).split('/').next().unwrap_or_default().to_string()
}

/// `healthCheck.image` as a repository and a tag or digest.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub reference: String,
}

impl ImageRef {
    /// `None` unless `image` is `repo[:tag]` or `repo@<alg>:<hex>` without a
    /// host. Docker Hub's official images live under `library/`.
    pub fn parse(image: &str, docker_hub: bool) -> Option<Self> {
        let (name, reference) = match image.split_once('@') {
            Some((name, digest)) => (strip_tag(name), digest.to_string()),
            None => match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (image, "latest".to_string()),
            },
        };
        let valid_reference = match reference.split_once(':') {
            Some((alg, hex)) => {
                !alg.is_empty()
                    && alg
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                    && hex.len() >= 32
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }
            None => {
                (1..=128).contains(&reference.len())
                    && !reference.starts_with(['.', '-'])
                    && reference
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            }
        };
        let valid_name = name.split('/').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if !valid_reference || !valid_name {
            return None;
        }
        let repository = if docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        };
        Some(Self { repository, reference })
    }
}

/// `team/app:1.0` of `team/app:1.0@sha256:…`: the digest wins, as in docker.
fn strip_tag(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_normalized_as_the_kubelet_does() {
        let cases = [
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io/library/nginx"),
            ("team/app:1", "docker.io/team/app"),
            ("docker.io/team/app", "docker.io/team/app"),
            ("index.docker.io/library/nginx", "docker.io/library/nginx"),
            ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app"),
            ("localhost/app", "localhost/app"),
            ("gcr.io/p/app@sha256:abc", "gcr.io/p/app"),
            ("gcr.io/p/app:1@sha256:abc", "gcr.io/p/app"),
        ];
        for (image, want) in cases {
            assert_eq!(repo_to_pull(image), want, "{image}");
        }
        assert_eq!(image_host("127.0.0.1:5000/team/app:1"), "127.0.0.1:5000");
        assert_eq!(image_host("nginx"), "docker.io");
    }

    #[test]
    fn image_references() {
        let parse = |s: &str| ImageRef::parse(s, false).map(|r| (r.repository, r.reference));
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parse("team/app:1.2.3"), pair("team/app", "1.2.3"));
        assert_eq!(parse("team/app"), pair("team/app", "latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse(&format!("team/app@{digest}")), pair("team/app", &digest));
        assert_eq!(parse(&format!("team/app:1.0@{digest}")), pair("team/app", &digest));
        assert_eq!(parse("Team/App:1"), None);
        assert_eq!(parse("team//app"), None);
        assert_eq!(parse("team/app:"), None);
        assert_eq!(parse("team/app@sha256:xyz"), None);
        assert_eq!(parse(""), None);
        let hub = ImageRef::parse("nginx:1.27", true).unwrap();
        assert_eq!(hub.repository, "library/nginx");
        assert_eq!(ImageRef::parse("team/app", true).unwrap().repository, "team/app");
    }
}
