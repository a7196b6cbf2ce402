//! Real components for regcred's tests: etcd and kube-apiserver built from
//! their Go modules (see `hack/build-envtest.sh`), started on free loopback
//! ports with certificates generated here, and stopped when dropped, also
//! when a test panics, and when the test process dies; and a real node
//! ([`Node`]: a kubelet with containerd and runc) that pulls images.

mod control_plane;
mod controllers;
pub mod fakes;
pub mod images;
mod node;
pub mod node_hosts;
pub mod objects;
pub mod oci;
mod operator;
pub mod operator_image;
pub mod pki;
mod pod_network;
pub mod process;
pub mod registry;
pub mod scratch;
pub mod tools;

pub use control_plane::{ControlPlane, IN_CLUSTER_HOST};
pub use controllers::Controllers;
pub use node::{Node, NodeOptions, Runtime};
pub use operator::{Operator, eventually, poll_until};
pub use pod_network::PodNetwork;
pub use tools::envtest_dir;

/// A free TCP port on 127.0.0.1 (bound once, then released for a server to take).
///
/// Picked at random below the kernel's ephemeral range: a port `bind(0)`
/// hands out is in that range, and once released the kernel may give it to
/// any process's next outgoing connection before the server binds it (etcd
/// failed once with `address already in use` while other tests' clients
/// connected). Below the range only another test's pick can take it.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static PICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = u64::from(ephemeral.saturating_sub(LOWEST).max(1));
    let seed = std::collections::hash_map::RandomState::new();
    for _ in 0..1_000 {
        let pick = PICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = LOWEST + (seed.hash_one((pick, std::process::id())) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a port on 127.0.0.1")
}

/// Install the process-wide rustls crypto provider (kube, reqwest and the
/// cloud SDKs share it). Idempotent.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
