//! Connections: the Kubernetes client, the HTTP client for providers and
//! registries, and the TLS crypto provider, one way for the operator and
//! for `regcred diagnose`.

use std::path::Path;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing::info;

use crate::error::{Error, Result};

/// Install the process-wide rustls crypto provider shared by kube and the cloud SDKs.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The Kubernetes configuration: `kubeconfig` if given, else in-cluster,
/// `$KUBECONFIG` or `~/.kube/config`. kube takes `HTTPS_PROXY` for the API
/// server but compares `NO_PROXY` with the proxy's own address; other
/// Kubernetes tools compare it with the API server's, and so does regcred.
pub async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(format!("no in-cluster config or kubeconfig: {e}")))?,
    };
    if config.proxy_url.is_some()
        && let Some(host) = config.cluster_url.host()
        && let Some(no_proxy) = ["NO_PROXY", "no_proxy"].iter().find_map(|v| std::env::var(v).ok())
        && no_proxy_covers(&no_proxy, host)
    {
        info!(api_server = %host, "NO_PROXY covers the API server: connecting directly");
        config.proxy_url = None;
    }
    Ok(config)
}

/// The Kubernetes client of the operator and of `regcred diagnose`.
pub fn kube_client(config: kube::Config) -> Result<Client> {
    Client::try_from(config).map_err(|e| Error::Config(format!("building the Kubernetes client: {e}")))
}

/// Whether a `NO_PROXY` list (`*`, host names, `.domain` suffixes, IP
/// addresses and CIDR ranges, comma-separated) covers `host`.
pub fn no_proxy_covers(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let (Some(ip), Ok(net)) = (ip, entry.parse::<ipnet::IpNet>()) {
                return net.contains(&ip);
            }
            let entry = entry.split(':').next().unwrap_or_default();
            let domain = entry.trim_start_matches('.');
            host == domain || host.ends_with(&format!(".{domain}"))
        })
}

/// The HTTP client for provider calls and registry checks: bounded timeouts,
/// system roots plus the optional CA bundle.
pub fn http_client(ca_bundle: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("regcred/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_bundle {
        let pem =
            std::fs::read(path).map_err(|e| Error::Config(format!("reading --ca-bundle {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("--ca-bundle {} is not a PEM bundle: {e}", path.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::no_proxy_covers;

    #[test]
    fn no_proxy_matches_like_other_kubernetes_tools() {
        let list = "localhost, .cluster.local,10.0.0.0/8,127.0.0.1,example.com:443";
        for host in [
            "127.0.0.1",
            "localhost",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "api.example.com",
            "example.com",
        ] {
            assert!(no_proxy_covers(list, host), "{host}");
        }
        for host in ["192.168.0.1", "cluster.local.evil.io", "notexample.com", "::1"] {
            assert!(!no_proxy_covers(list, host), "{host}");
        }
        assert!(no_proxy_covers("*", "anything"));
        assert!(no_proxy_covers("::1/128", "[::1]"));
        assert!(!no_proxy_covers("", "localhost"));
    }
}
