//! The raw floor: a plain kube client making the requests a fan-out or a
//! rotation needs and nothing else, at regcred's concurrency.
//!
//! It mirrors `src/reconcile/fanout.rs`: up to `concurrency` namespaces at
//! once (its `CONCURRENCY`), and in each one Secret create, then a merge
//! patch of the `default` ServiceAccount from a copy read beforehand (the
//! operator's comes from its warm cache, so the floor lists before its
//! clock starts). The bodies are regcred's own, built by its `build`
//! functions for a RegistryCredential of the same spec: the same labels,
//! annotations, owner reference and data, and the same patches. Only the
//! values that would make regcred take the floor's objects for its own
//! differ, at the same length (a managed-by value and a credential name),
//! so the API server does the same work for both.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use regcred::api::RegistryCredential;
use regcred::reconcile::build;

use crate::world::{self, docker_config};

/// The floor's credential name, which is also its Secret's name: as long as
/// the benchmark's own ([`world::SOURCE`]).
pub const NAME: &str = "flr";
/// In place of regcred's managed-by value, as long.
const MANAGED_BY: &str = "bench-f";
/// In place of regcred's field manager, as long.
const FIELD_MANAGER: &str = "bench-f";
const _: () = assert!(NAME.len() == world::SOURCE.len() && MANAGED_BY.len() == build::MANAGED_BY_VALUE.len());

/// A RegistryCredential of the benchmark's spec, as the API server would return it.
fn credential() -> RegistryCredential {
    let spec = serde_json::from_value(world::rc_spec()).expect("the benchmark spec is a RegistryCredentialSpec");
    let mut rc = RegistryCredential::new(NAME, spec);
    rc.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
    rc.metadata.generation = Some(1);
    rc
}

/// The Secret regcred would write into `ns` holding `password`.
fn secret(rc: &RegistryCredential, ns: &str, password: &str) -> Secret {
    // Fingerprints are "sha256:" and 64 hex digits.
    let fingerprint = format!("sha256:{password:0>64}");
    let mut s = build::desired_secret(rc, ns, &docker_config(password), None, &fingerprint);
    s.labels_mut().insert(build::MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    s
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// N Secret creates + N ServiceAccount patches; the time, and the Secrets as written.
pub async fn fan_out(
    client: &Client,
    namespaces: &[String],
    password: &str,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Secret>)> {
    let rc = credential();
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
            let sa = sas.get(&ns);
            let client = client.clone();
            let rc = &rc;
            async move {
                let secret = Api::<Secret>::namespaced(client.clone(), &ns)
                    .create(&post_params(), &secret(rc, &ns, password))
                    .await
                    .with_context(|| format!("floor: creating Secret {ns}/{NAME}"))?;
                let sa = sa.with_context(|| format!("floor: no ServiceAccount {ns}/default"))?;
                let updated = build::apply_sa_change(sa, NAME, NAME, build::SaChange::Add);
                Api::<ServiceAccount>::namespaced(client, &ns)
                    .patch("default", &patch_params(), &Patch::Merge(build::sa_patch(sa, &updated)))
                    .await
                    .with_context(|| format!("floor: patching ServiceAccount {ns}/default"))?;
                anyhow::Ok(secret)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((started.elapsed(), written))
}

/// N Secret patches to a new password, as regcred makes them from its cached copy.
pub async fn rotate(
    client: &Client,
    secrets: Vec<Secret>,
    password: &str,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let rc = credential();
    let started = Instant::now();
    futures::stream::iter(secrets)
        .map(|mut existing| {
            let client = client.clone();
            let rc = &rc;
            async move {
                let ns = existing.namespace().unwrap_or_default();
                build::cache_form(&mut existing);
                let merged = build::merged_secret(&existing, &secret(rc, &ns, password));
                Api::<Secret>::namespaced(client, &ns)
                    .patch(
                        NAME,
                        &patch_params(),
                        &Patch::Merge(build::secret_patch(&existing, &merged)),
                    )
                    .await
                    .with_context(|| format!("floor: patching Secret {ns}/{NAME}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}
