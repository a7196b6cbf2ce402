//! The raw floor: a plain kube client doing the writes a fan-out or a
//! rotation needs and nothing else, at regcred's concurrency.
//!
//! It mirrors `src/reconcile/fanout.rs`: up to `concurrency` namespaces at
//! once (its `CONCURRENCY`), and in each one Secret create, then a replace
//! of the `default` ServiceAccount built from a copy read beforehand (the
//! operator's comes from its warm cache, so the floor lists before its
//! clock starts).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use regcred_testenv::objects;

use crate::world::docker_config;

/// The floor's Secret name (regcred's is the RegistryCredential's).
pub const SECRET: &str = "floor";

fn floor_secret(ns: &str, password: &str) -> Secret {
    let mut s = Secret {
        metadata: objects::meta(SECRET, &[("app.kubernetes.io/managed-by", "bench-floor")]),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some([(".dockerconfigjson".to_string(), ByteString(docker_config(password)))].into()),
        ..Default::default()
    };
    s.metadata.namespace = Some(ns.into());
    s
}

/// N Secret creates + N ServiceAccount replaces; the time, and the Secrets as written.
pub async fn fan_out(
    client: &Client,
    namespaces: &[String],
    password: &str,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Secret>)> {
    let sas: HashMap<String, ServiceAccount> = Api::<ServiceAccount>::all(client.clone())
        .list(&ListParams::default().fields("metadata.name=default"))
        .await?
        .items
        .into_iter()
        .map(|sa| (sa.namespace().unwrap_or_default(), sa))
        .collect();
    let started = Instant::now();
    let written: Vec<Secret> = futures::stream::iter(namespaces.iter().cloned())
        .map(|ns| {
            let sa = sas.get(&ns).cloned();
            let client = client.clone();
            async move {
                let secret = Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &floor_secret(&ns, password))
                    .await
                    .with_context(|| format!("floor: creating Secret {ns}/{SECRET}"))?;
                let mut sa = sa.with_context(|| format!("floor: no ServiceAccount {ns}/default"))?;
                sa.image_pull_secrets
                    .get_or_insert_default()
                    .push(LocalObjectReference { name: SECRET.into() });
                Api::<ServiceAccount>::namespaced(client, &ns)
                    .replace("default", &PostParams::default(), &sa)
                    .await
                    .with_context(|| format!("floor: updating ServiceAccount {ns}/default"))?;
                anyhow::Ok(secret)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((started.elapsed(), written))
}

/// N Secret replaces with a new password.
pub async fn rotate(
    client: &Client,
    secrets: Vec<Secret>,
    password: &str,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    futures::stream::iter(secrets)
        .map(|mut s| {
            let client = client.clone();
            async move {
                let ns = s.namespace().unwrap_or_default();
                s.data = floor_secret(&ns, password).data;
                Api::<Secret>::namespaced(client, &ns)
                    .replace(SECRET, &PostParams::default(), &s)
                    .await
                    .with_context(|| format!("floor: replacing Secret {ns}/{SECRET}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}
