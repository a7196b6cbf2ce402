//! regcred: a Kubernetes operator that keeps image-pull credentials fresh.
//!
//! Where things live:
//! - [`admission`]: the Pod admission webhook (regcred's Secret named at creation);
//! - [`api`]: the `RegistryCredential` types, CRD and condition names;
//! - [`reconcile`]: the pipeline (resolve → validate → build → apply → status);
//! - [`providers`]: credential minting behind one trait, one module per provider;
//! - [`renewal`]: when to mint next (expiry, jitter, backoff);
//! - [`dockerconfig`]: the `.dockerconfigjson` codec;
//! - [`targets`]: namespace and ServiceAccount selection;
//! - [`controller`]: watches; [`cache`]: the compact records they keep; [`operator`]: `regcred run`;
//! - [`registry`]: registry hosts (Docker Hub's many names) and image references;
//! - [`pull_auth`]: the registry pull-auth probe;
//! - [`diagnosis`]: why a pod cannot pull, with evidence (`regcred diagnose`);
//! - [`connect`]: the Kubernetes and HTTP clients, one way for the operator and the CLI;
//! - [`managed`]: what makes a Secret regcred's and whether it holds the current credential;
//! - [`telemetry`]: logs and metrics; [`redact`]: secret material that never prints.

pub mod admission;
pub mod api;
pub mod bounded;
pub mod cache;
pub mod cli;
pub mod connect;
pub mod controller;
pub mod diagnosis;
pub mod dockerconfig;
pub mod error;
pub mod identity;
pub mod managed;
pub mod operator;
pub mod providers;
pub mod pull_auth;
pub mod reconcile;
pub mod redact;
pub mod registry;
pub mod renewal;
pub mod targets;
pub mod telemetry;
