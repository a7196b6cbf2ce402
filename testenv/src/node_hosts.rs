//! Registry hosts a [`Node`] reaches in ways [`Node::trust_registry`] and
//! [`Node::route_registry`] do not offer: a host name sent to any address,
//! trusting any CA, e.g. one that did not sign the server's certificate (the
//! runtime then fails with an x509 error) or a server that never answers.
//!
//! The `hosts.toml` is the node's own (see `Node::trust`, which explains why
//! containerd 1.6 needs both `ca` entries). A host name rather than
//! `127.0.0.1` keeps containerd from its loopback http fallback, so what it
//! reports is the https failure.

use crate::Node;

/// Pull images named `host/...` from `https://<upstream>`, trusting only `ca_pem`.
pub fn route_host(node: &Node, host: &str, upstream: &str, ca_pem: &str) -> anyhow::Result<()> {
    node.trust(host, upstream, ca_pem)
}
