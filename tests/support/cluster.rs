//! What a test asks of the API server and waits for, whichever control
//! plane it runs on: its own ([`super::Harness`]), the one its binary shares
//! ([`super::shared::Tenant`]) or the node's ([`super::node_bed::Scene`]).

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::Api;
use regcred::api::{PullAuthResult, RegistryCredential, RegistryCredentialStatus};
use regcred_testenv::eventually;

use super::{WAIT, pull_secret_names};

pub trait Cluster {
    /// An admin client bound to the test's own runtime.
    fn client(&self) -> &Client;

    fn rcs(&self) -> Api<RegistryCredential> {
        Api::all(self.client().clone())
    }

    fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client().clone(), ns)
    }

    fn sas(&self, ns: &str) -> Api<ServiceAccount> {
        Api::namespaced(self.client().clone(), ns)
    }

    /// Wait for `rc`'s status to satisfy `pred`, returning it.
    async fn wait_status(
        &self,
        rc: &str,
        what: &str,
        pred: impl Fn(&RegistryCredentialStatus) -> bool,
    ) -> RegistryCredentialStatus {
        let api = self.rcs();
        eventually(WAIT, what, || {
            let api = api.clone();
            let pred = &pred;
            async move { api.get(rc).await.ok()?.status.filter(|s| pred(s)) }
        })
        .await
    }

    /// Wait until `rc`'s last pull-auth check answered `result`.
    async fn wait_pull_auth(&self, rc: &str, result: PullAuthResult) -> RegistryCredentialStatus {
        self.wait_status(rc, &format!("pullAuth {result:?}"), |s| {
            s.pull_auth.as_ref().is_some_and(|p| p.result == result)
        })
        .await
    }

    /// Wait until RegistryCredential `rc` is gone (its finalizer done), for
    /// at most `timeout`.
    async fn wait_rc_gone(&self, rc: &str, timeout: std::time::Duration) {
        let api = self.rcs();
        eventually(timeout, &format!("RegistryCredential {rc} to be gone"), || {
            let api = api.clone();
            async move { api.get_opt(rc).await.ok()?.is_none().then_some(()) }
        })
        .await
    }

    /// Wait until the Secret `ns/name` satisfies `pred`.
    async fn wait_secret(&self, ns: &str, name: &str, what: &str, pred: impl Fn(&Secret) -> bool) -> Secret {
        let api = self.secrets(ns);
        eventually(WAIT, what, || {
            let api = api.clone();
            let pred = &pred;
            async move { api.get_opt(name).await.ok().flatten().filter(|s| pred(s)) }
        })
        .await
    }

    /// Wait until `ns/name` is gone.
    async fn wait_secret_gone(&self, ns: &str, name: &str) {
        let api = self.secrets(ns);
        eventually(WAIT, &format!("Secret {ns}/{name} to be deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().and_then(|s| s.is_none().then_some(())) }
        })
        .await
    }

    /// Wait until SA `ns/name` lists exactly `want` as imagePullSecrets.
    async fn wait_pull_secrets(&self, ns: &str, name: &str, want: &[&str]) -> ServiceAccount {
        let api = self.sas(ns);
        eventually(
            WAIT,
            &format!("ServiceAccount {ns}/{name} imagePullSecrets == {want:?}"),
            || {
                let api = api.clone();
                async move {
                    let sa = api.get(name).await.ok()?;
                    (pull_secret_names(&sa) == want).then_some(sa)
                }
            },
        )
        .await
    }
}
