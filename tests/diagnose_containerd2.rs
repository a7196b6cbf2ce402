//! tests/diagnose.rs's cases again, on a node running containerd 2.x
//! (built from its Go module by `make tools`, `CONTAINERD_VERSION` in
//! hack/versions.env) instead of Debian's 1.6: its CRI pulls through the
//! Transfer Service, and every error text the kubelet passes on differs.
//! The node's runtime follows from this crate's name
//! (`support::node_bed::RUNTIME`); no test body is written twice.

#[path = "diagnose.rs"]
mod diagnose;
