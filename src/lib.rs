//! regcred: a Kubernetes operator that keeps image-pull credentials fresh.

pub mod api;
