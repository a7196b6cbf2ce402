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
pub use node::{Node, NodeOptions};
pub use operator::{Operator, eventually, poll_until};
pub use pod_network::PodNetwork;
pub use tools::envtest_dir;

/// A free TCP port on 127.0.0.1 (bound once, then released for a server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Install the process-wide rustls crypto provider (kube, reqwest and the
/// cloud SDKs share it). Idempotent.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
