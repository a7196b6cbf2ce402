//! Registry hosts a [`Node`] reaches in ways [`Node::trust_registry`] and
//! [`Node::route_registry`] do not offer: a host name sent to any address,
//! trusting any CA, e.g. one that did not sign the server's certificate (the
//! runtime then fails with an x509 error) or a server that never answers.
//!
//! Written in the layout [`Node`] configures containerd with (its
//! `config_path` is `<node dir>/certs.d`, read at every pull): one
//! `hosts.toml` per host, `server` plus a top-level `ca` and a `[host]`
//! table with `ca` too, because containerd 1.6 falls back to plain http with
//! either alone. A host name rather than `127.0.0.1` keeps containerd from
//! its loopback http fallback, so what it reports is the https failure.

use crate::Node;

/// Pull images named `host/...` from `https://<upstream>`, trusting only `ca_pem`.
pub fn route_host(node: &Node, host: &str, upstream: &str, ca_pem: &str) -> anyhow::Result<()> {
    let host_dir = node.dir().join("certs.d").join(host);
    std::fs::create_dir_all(&host_dir)?;
    let ca = host_dir.join("ca.pem");
    std::fs::write(&ca, ca_pem)?;
    let ca = ca.display();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{upstream}\"\nca = \"{ca}\"\n\n[host.\"https://{upstream}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"
        ),
    )?;
    Ok(())
}
