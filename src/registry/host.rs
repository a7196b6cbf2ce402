//! Registry hosts, and the one registry with many names: Docker Hub.

/// Docker Hub as image references name it (`docker.io/library/nginx`).
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy index host, which image references may still say
/// and the kubelet's keyring falls back to.
pub const DOCKER_HUB_INDEX: &str = "index.docker.io";
/// Where Docker Hub serves the registry API (`docker.io` serves a website).
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker Hub's historical `.dockerconfigjson` key, which docker and the
/// kubelet look it up by.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// `[http[s]://]host[:port][/path]` as (host with port, path from its `/`).
pub fn split(text: &str) -> (&str, &str) {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    }
}

/// The host (with port) of a registry written as a host, a URL or a config
/// key: scheme and path dropped, case kept.
pub fn host_of(registry: &str) -> &str {
    split(registry.trim()).0
}

/// A registry's host in one spelling: lowercase, every name of Docker Hub as
/// `docker.io`.
pub fn canonical(registry: &str) -> String {
    let host = host_of(registry).to_ascii_lowercase();
    match host.as_str() {
        DOCKER_HUB_INDEX | DOCKER_HUB_API | "registry.hub.docker.com" => DOCKER_HUB.into(),
        _ => host,
    }
}

pub fn is_docker_hub(registry: &str) -> bool {
    canonical(registry) == DOCKER_HUB
}

/// The base URL of a registry's API: https, on the host of `registry` (a
/// scheme or path written with it is dropped), Docker Hub on its API host.
/// Plain http is never used, as the kubelet's runtime assumes for any
/// registry not configured as insecure.
pub fn api_base_url(registry: &str) -> String {
    if is_docker_hub(registry) {
        format!("https://{DOCKER_HUB_API}")
    } else {
        format!("https://{}", host_of(registry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_probed_on_its_api_host() {
        assert_eq!(api_base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(
            api_base_url("https://index.docker.io/v1/"),
            "https://registry-1.docker.io"
        );
        assert_eq!(api_base_url("gcr.io"), "https://gcr.io");
        assert_eq!(api_base_url("127.0.0.1:5000"), "https://127.0.0.1:5000");
        assert_eq!(
            api_base_url("https://123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        // Plain http is never used, even when written.
        assert_eq!(
            api_base_url("http://registry.local:5000"),
            "https://registry.local:5000"
        );
    }
}
