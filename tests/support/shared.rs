//! One control plane and one operator shared by the tests of a binary that
//! need only namespaces and RegistryCredentials of their own (named so that
//! no other test uses the name). Starting a control plane and regcred costs
//! each test seconds of both cores; sharing them costs it nothing once the
//! first test has started them, and they live until the binary exits
//! ([`ControlPlane::shared`]). A test that stops or restarts the API server
//! or the operator, needs other flags, or counts what happens cluster-wide
//! starts a [`super::Harness`] of its own instead.

use kube::Client;
use regcred_testenv::{ControlPlane, Operator};
use tokio::sync::OnceCell;

use super::{Cluster, metrics_addr, prepare, print_log_tail, start_operator_with};

/// The control plane and operator the tests of this binary share.
pub struct Shared {
    pub cp: &'static ControlPlane,
    pub operator: Operator,
    /// The operator's metrics address (`127.0.0.1:<port>`), for [`super::scrape`].
    pub metrics: String,
    /// Whether regcred runs confined, as the chart runs it ([`super::confine`]).
    pub confined: bool,
}

/// The shared control plane and operator, started by the first test that asks.
pub async fn shared() -> &'static Shared {
    shared_as(false).await
}

/// [`shared`], with regcred confined as the chart runs it: its
/// ServiceAccount, the chart's RBAC and confinement policies ([`super::confine`]).
/// The tests of one binary use either this or [`shared`], never both.
pub async fn shared_confined() -> &'static Shared {
    shared_as(true).await
}

async fn shared_as(confined: bool) -> &'static Shared {
    static SHARED: OnceCell<Shared> = OnceCell::const_new();
    let shared = SHARED
        .get_or_init(|| async {
            let started = std::time::Instant::now();
            let cp = ControlPlane::shared().await;
            prepare(cp).await;
            if confined {
                super::confine(cp, &[]).await;
            }
            // One CA signs every test registry of this process: trusting it,
            // the operator checks pulls from any test's registry.
            let ca = cp.dir().join("registries-ca.pem");
            std::fs::write(&ca, regcred_testenv::registry::shared_ca_pem()).expect("writing the registries' CA");
            let metrics = metrics_addr();
            let args = ["--ca-bundle", ca.to_str().unwrap(), "--metrics-addr", &metrics];
            let operator = start_operator_with(cp, &args, &[]);
            eprintln!(
                "shared control plane and operator up in {:?} (confined: {confined})",
                started.elapsed()
            );
            Shared {
                cp,
                operator,
                metrics,
                confined,
            }
        })
        .await;
    assert_eq!(
        shared.confined, confined,
        "the tests of one binary share one operator: they must all join it confined or all not"
    );
    shared
}

/// A test's place on the shared control plane, with a client bound to the
/// test's own runtime.
pub struct Tenant {
    pub shared: &'static Shared,
    pub client: Client,
}

impl Tenant {
    pub async fn join() -> Self {
        let shared = shared().await;
        let client = shared.cp.client().await.unwrap();
        Self { shared, client }
    }

    /// [`Tenant::join`] with regcred confined as the chart runs it ([`shared_confined`]).
    pub async fn join_confined() -> Self {
        let shared = shared_confined().await;
        let client = shared.cp.client().await.unwrap();
        Self { shared, client }
    }
}

impl Cluster for Tenant {
    fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for Tenant {
    /// A failing test shows what the operator said (of every test running).
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail("last operator log lines (shared)", &self.shared.operator, 60);
        }
    }
}
