//! On a real node: pods pull private images with what regcred writes.
//!
//! A kubelet with containerd and runc (`regcred_testenv::Node`) joined to a
//! control plane with the Node authorizer, NodeRestriction and the
//! ServiceAccount admission plugin, and regcred running as its built binary.
//! Each test brings its own registry (Debian's docker-registry, accepting
//! exactly what the provider's fake mints) and its own namespaces and
//! RegistryCredentials; the tests running at the same time share one control
//! plane, node and operator, which go away with the last of them.
//!
//! Pods are what a user's would be on this node: ServiceAccount `default`
//! (whose `imagePullSecrets` regcred maintains), `nodeName` (there is no
//! scheduler), `hostNetwork` (there are no CNI plugins), no mounted token
//! (there is no controller-manager to publish `kube-root-ca.crt`), and
//! `imagePullPolicy: Always`, so every pod pulls with the credential of the
//! moment rather than finding the image already on the node.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use regcred_testenv::fakes::google::{TokenServer, service_account_key_json};
use regcred_testenv::fakes::moto::Moto;
use regcred_testenv::registry::{Auth, Registry};
use regcred_testenv::{Node, eventually};
use serde_json::json;
use support::node_bed::{ADMISSION_LABEL, POD_TIMEOUT, Scene};
use support::*;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// What moto's GetAuthorizationToken decodes to, after `AWS:`.
const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";
const GCR_USER: &str = "oauth2accesstoken";

impl Scene {
    /// Wait until the pod runs; on timeout, say what it waits for and what
    /// the kubelet reported.
    async fn wait_running(&self, ns: &str, name: &str) -> Pod {
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + POD_TIMEOUT;
        loop {
            let pod = pods.get(name).await.unwrap();
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                return pod;
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {ns}/{name} not Running after {POD_TIMEOUT:?}: {}\nevents: {}",
                    waiting(&pod).unwrap_or_default(),
                    self.events_of(ns, name).await.join("\n  ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `reason: message` of every Event the kubelet posted about the pod.
    async fn events_of(&self, ns: &str, pod: &str) -> Vec<String> {
        self.events_where(ns, &format!("involvedObject.name={pod}")).await
    }

    /// `reason: message` of the Events in `ns` that the field selector `fields` picks.
    async fn events_where(&self, ns: &str, fields: &str) -> Vec<String> {
        let params = ListParams::default().fields(fields);
        Api::<Event>::namespaced(self.client.clone(), ns)
            .list(&params)
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or_default(),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Wait for the kubelet's Event saying the pull failed with
    /// `ErrImagePull`; returns all the pod's Events.
    async fn wait_pull_failed(&self, ns: &str, pod: &str) -> Vec<String> {
        eventually(
            POD_TIMEOUT,
            &format!("the kubelet's ErrImagePull Event for {ns}/{pod}"),
            || async {
                let events = self.events_of(ns, pod).await;
                events
                    .iter()
                    .any(|e| e.starts_with("Failed: ") && e.contains("ErrImagePull"))
                    .then_some(events)
            },
        )
        .await
    }

    /// The proof of the mission: in `targeted`, a pod pulling `image` runs;
    /// in `untargeted`, the same pod fails to pull (401) and the kubelet says so.
    async fn prove_pulls(&self, rc: &str, targeted: &str, untargeted: &str, image: &str) {
        self.wait_pull_secrets(targeted, "default", &[rc]).await;
        let admitted = self.create_pod(targeted, "app", image).await;
        let secrets: Vec<_> = admitted
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(
            secrets,
            [rc],
            "the ServiceAccount admission copies regcred's Secret into the pod"
        );
        let pulled = Instant::now();
        self.wait_running(targeted, "app").await;
        eprintln!(
            "{}: pod in {targeted} Running {:?} after creation",
            self.name,
            pulled.elapsed()
        );

        self.create_pod(untargeted, "app", image).await;
        let events = self.wait_pull_failed(untargeted, "app").await;
        assert!(
            events.iter().any(|e| e.contains("401 Unauthorized")),
            "the pull without regcred's Secret is refused by the registry: {events:#?}"
        );
        self.report();
    }
}

/// The reason and message of the container's waiting state, if any.
fn waiting(pod: &Pod) -> Option<String> {
    let state = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some(format!(
        "{}: {}",
        state.reason.unwrap_or_default(),
        state.message.unwrap_or_default()
    ))
}

#[tokio::test]
async fn static_htpasswd_pods_pull_where_targeted() {
    let s = Scene::new("static_htpasswd").await;
    let password = canary("node-htpasswd");
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("alice".into(), password.clone())],
    })
    .await
    .expect("htpasswd registry");
    app_image(&registry, "team/app").await;
    s.node().trust_registry(&registry).unwrap();
    put_source_secret(&s.client, "node-htpasswd", "alice", &password).await;
    namespace_with_default_sa(&s.client, "basic-in", &[]).await;
    namespace_with_default_sa(&s.client, "basic-out", &[]).await;
    let provider = json!({"static": {"registry": registry.host(), "secretRef": {"name": "node-htpasswd"}}});
    apply_rc(&s.client, rc("node-basic", provider, json!({"names": ["basic-in"]}))).await;
    let image = format!("{}/team/app:1", registry.host());
    s.prove_pulls("node-basic", "basic-in", "basic-out", &image).await;
}

#[tokio::test]
async fn static_token_auth_pods_pull_where_targeted() {
    let s = Scene::new("static_token").await;
    let password = canary("node-token");
    let registry = Registry::start(Auth::Token {
        users: vec![("bob".into(), password.clone())],
        grants: vec![("bob".into(), "team/app".into())],
    })
    .await
    .expect("token-auth registry");
    app_image(&registry, "team/app").await;
    s.node().trust_registry(&registry).unwrap();
    put_source_secret(&s.client, "node-token", "bob", &password).await;
    namespace_with_default_sa(&s.client, "token-in", &[]).await;
    namespace_with_default_sa(&s.client, "token-out", &[]).await;
    let provider = json!({"static": {"registry": registry.host(), "secretRef": {"name": "node-token"}}});
    apply_rc(&s.client, rc("node-token", provider, json!({"names": ["token-in"]}))).await;
    let image = format!("{}/team/app:1", registry.host());
    s.prove_pulls("node-token", "token-in", "token-out", &image).await;
    assert!(
        registry.token_requests() >= 2,
        "the runtime went through the Bearer flow"
    );
}

#[tokio::test]
async fn ecr_pods_pull_where_targeted() {
    let s = Scene::new("ecr").await;
    let moto = Moto::start().await.expect("moto");
    // The registry behind the ECR host accepts exactly what moto mints.
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("AWS".into(), MOTO_ECR_PASSWORD.into())],
    })
    .await
    .expect("registry for the ECR host");
    app_image(&registry, "team/app").await;
    s.node().route_registry(ECR_HOST, &registry).unwrap();
    put_secret(
        &s.client,
        "node-aws",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .await;
    namespace_with_default_sa(&s.client, "ecr-in", &[]).await;
    namespace_with_default_sa(&s.client, "ecr-out", &[]).await;
    let provider =
        json!({"ecr": {"region": "us-east-1", "auth": {"secretRef": {"name": "node-aws"}}, "endpointUrl": moto.url()}});
    apply_rc(&s.client, rc("node-ecr", provider, json!({"names": ["ecr-in"]}))).await;
    s.prove_pulls("node-ecr", "ecr-in", "ecr-out", &format!("{ECR_HOST}/team/app:1"))
        .await;
}

#[tokio::test]
async fn gcr_pods_pull_where_targeted() {
    let s = Scene::new("gcr").await;
    let google = TokenServer::start().await.expect("google token endpoint");
    let token = canary("node-gcr");
    google.set_token(token.clone(), Duration::from_secs(3600));
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![(GCR_USER.into(), token)],
    })
    .await
    .expect("registry for gcr.io");
    app_image(&registry, "regcred-test/app").await;
    s.node().route_registry("gcr.io", &registry).unwrap();
    put_secret(
        &s.client,
        "node-gcp",
        &[("key.json", &service_account_key_json(&google.token_uri()))],
    )
    .await;
    namespace_with_default_sa(&s.client, "gcr-in", &[]).await;
    namespace_with_default_sa(&s.client, "gcr-out", &[]).await;
    let provider = json!({"gcr": {"registries": ["gcr.io"], "auth": {"serviceAccountKey": {"secretRef": {"name": "node-gcp", "key": "key.json"}}}}});
    apply_rc(&s.client, rc("node-gcr", provider, json!({"names": ["gcr-in"]}))).await;
    s.prove_pulls("node-gcr", "gcr-in", "gcr-out", "gcr.io/regcred-test/app:1")
        .await;
}

/// "Automatic token rotation overnight", in minutes: tokens live 90 s, the
/// registry's token server refuses any that has expired, regcred renews a
/// third of the lifetime before expiry (its default, which is also its
/// shortest interval between mints: a minute); a pod created after each
/// renewal, and one between renewals, all pull and run, and the kubelet
/// never reports a failed pull.
#[tokio::test]
async fn rotation_pods_pull_across_renewals_without_a_401() {
    const RENEWALS: usize = 3;
    const LIFETIME: Duration = Duration::from_secs(90);
    const HOST: &str = "us-docker.pkg.dev";
    let s = Scene::new("rotation").await;
    let google = TokenServer::start().await.expect("google token endpoint");
    google.issue_fresh_tokens("ya29.rotation", LIFETIME);
    let unexpired = google.unexpired_check();
    let registry = Registry::start(Auth::Verified {
        verify: Arc::new(move |user, password| user == GCR_USER && unexpired(password)),
        repositories: vec!["regcred-test/app".into()],
    })
    .await
    .expect("registry accepting only unexpired Google tokens");
    app_image(&registry, "regcred-test/app").await;
    s.node().route_registry(HOST, &registry).unwrap();
    put_secret(
        &s.client,
        "node-gcp-rotation",
        &[("key.json", &service_account_key_json(&google.token_uri()))],
    )
    .await;
    namespace_with_default_sa(&s.client, "rotation", &[]).await;
    let provider = json!({"gcr": {"registries": [HOST], "auth": {"serviceAccountKey": {"secretRef": {"name": "node-gcp-rotation", "key": "key.json"}}}}});
    apply_rc(&s.client, rc("node-rotation", provider, json!({"names": ["rotation"]}))).await;
    s.wait_pull_secrets("rotation", "default", &["node-rotation"]).await;
    // The Node authorizer learns which Secrets a pod may read from its own
    // watch of pods, so the first pod on a node to name a Secret can ask
    // for it a moment too early (`FailedToRetrieveImagePullSecret`, an
    // anonymous pull, a 401, then a retry that succeeds): a race between
    // the kubelet and the API server, not about the credential. An anchor
    // pod, like any workload already running in the namespace, takes that
    // first read and keeps the kubelet watching the Secret; every pod the
    // assertions below judge comes after it.
    s.create_pod("rotation", "anchor", &format!("{HOST}/regcred-test/app:1"))
        .await;
    s.wait_running("rotation", "anchor").await;

    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), "rotation");
    let mut seen: Vec<String> = Vec::new();
    let mut pods = Vec::new();
    for round in 0..=RENEWALS {
        let token = eventually(LIFETIME, &format!("token {} in the Secret", round + 1), || async {
            let secret = secrets.get_opt("node-rotation").await.ok()??;
            password_for(&secret, HOST).filter(|t| !seen.contains(t))
        })
        .await;
        eprintln!(
            "rotation: token {} in the Secret after {:?}",
            round + 1,
            s.started.elapsed()
        );
        seen.push(token);
        let pod = format!("after-renewal-{round}");
        s.create_pod("rotation", &pod, &format!("{HOST}/regcred-test/app:1"))
            .await;
        pods.push(pod);
        if round < RENEWALS {
            tokio::time::sleep(LIFETIME / 3).await;
            let pod = format!("between-renewals-{round}");
            s.create_pod("rotation", &pod, &format!("{HOST}/regcred-test/app:1"))
                .await;
            pods.push(pod);
        }
    }
    for pod in &pods {
        s.wait_running("rotation", pod).await;
    }
    for pod in &pods {
        let events = s.events_of("rotation", pod).await;
        assert!(
            !events.iter().any(|e| e.starts_with("Failed") || e.contains("401")),
            "{pod} hit a failed pull: {events:#?}"
        );
    }
    assert!(google.issued() > RENEWALS, "{} tokens issued", google.issued());

    // The registry really refuses an expired token: the first one is.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(registry.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = format!(
        "{}?service={}&scope=repository:regcred-test/app:pull",
        registry.realm().expect("token realm"),
        regcred_testenv::registry::SERVICE
    );
    let answer = |token: String| {
        let request = http.get(&url).basic_auth(GCR_USER, Some(token));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(
        answer(seen[0].clone()).await,
        401,
        "the first, expired, token is refused"
    );
    assert_eq!(
        answer(seen[RENEWALS].clone()).await,
        200,
        "the current token is accepted"
    );
    s.report();
}

/// GitOps tools apply a namespace, its ServiceAccount and its pods together.
/// The ServiceAccount admission copies `imagePullSecrets` only when a pod is
/// created, so without regcred's admission webhook a pod admitted before
/// regcred patched the ServiceAccount never gets the Secret. With the
/// webhook, every pod is admitted naming the Secret, the Secret is in its
/// namespace before the kubelet pulls, and every pod pulls on its first
/// try. Without it (the namespaces opt out), the baseline is printed.
#[tokio::test]
async fn pods_created_right_after_their_namespace() {
    const TRIES: usize = 50;
    let s = Scene::new("gitops_race").await;
    let password = canary("node-gitops");
    let registry = Registry::start(Auth::Htpasswd {
        users: vec![("gitops".into(), password.clone())],
    })
    .await
    .expect("htpasswd registry");
    app_image(&registry, "team/app").await;
    s.node().trust_registry(&registry).unwrap();
    put_source_secret(&s.client, "node-gitops", "gitops", &password).await;
    let provider = json!({"static": {"registry": registry.host(), "secretRef": {"name": "node-gitops"}}});
    apply_rc(
        &s.client,
        rc(
            "node-gitops",
            provider,
            json!({"selector": {"matchLabels": {"regcred-test/gitops": "true"}}}),
        ),
    )
    .await;
    // The operator is up and serving this credential before the race starts.
    namespace_with_default_sa(&s.client, "gitops-warmup", &[("regcred-test/gitops", "true")]).await;
    s.wait_pull_secrets("gitops-warmup", "default", &["node-gitops"]).await;
    let image = format!("{}/team/app:1", registry.host());

    // With admission: every pod names the Secret and pulls on its first try.
    let with = s
        .race(
            "gitops-on",
            TRIES,
            &image,
            &[("regcred-test/gitops", "true"), ADMISSION_LABEL],
        )
        .await;
    let without_secret: Vec<_> = with
        .iter()
        .filter(|a| !a.named || !a.secret_there)
        .map(|a| a.namespace.clone())
        .collect();
    assert!(
        without_secret.is_empty(),
        "admitted without naming the Secret, or before it was in the namespace: {without_secret:?}"
    );
    // Every pod runs. One that did not pull on its first try had its Secret
    // named and in place when it was admitted (checked above): what remains
    // is the kubelet's own first read of a Secret of a pod bound a moment
    // ago, which the Node authorizer can refuse until its graph has the pod
    // (FailedToRetrieveImagePullSecret, then a retry that pulls). Counted,
    // and shown.
    let mut first_try = 0;
    let mut retried = Vec::new();
    let started = Instant::now();
    for a in &with {
        s.wait_running(&a.namespace, "app").await;
        let warnings = s.warnings_of(&a.namespace, "app").await;
        if warnings.is_empty() {
            first_try += 1;
        } else {
            retried.push(format!("{}: {warnings:?}", a.namespace));
        }
    }
    println!(
        "BENCH node: with admission, 0/{TRIES} pods created right after their namespace were admitted without \
         regcred's Secret in place; {first_try}/{TRIES} pulled on their first try (all Running {:?} after the last \
         was created){}",
        started.elapsed(),
        if retried.is_empty() {
            String::new()
        } else {
            format!("; retried: {retried:?}")
        },
    );

    // The node takes 110 pods, and the other tests on it need theirs.
    s.clear(with.iter().map(|a| a.namespace.as_str())).await;

    // The baseline, admission bypassed: what the diagnosis and repair path
    // (PodAdmittedBeforeLink) is left with when the webhook is unavailable.
    let baseline = s
        .race("gitops-off", TRIES, &image, &[("regcred-test/gitops", "true")])
        .await;
    let without = baseline.iter().filter(|a| !a.named).count();
    s.clear(baseline.iter().map(|a| a.namespace.as_str())).await;
    println!(
        "BENCH node: without admission, {without}/{TRIES} pods ({:.0}%) created right after their namespace were \
         admitted without regcred's Secret",
        100.0 * without as f64 / TRIES as f64,
    );
    s.report();
}

/// How one pod of a race was admitted.
struct Admitted {
    namespace: String,
    /// The pod names a pull Secret.
    named: bool,
    /// The namespace held regcred's Secret when the pod's creation returned.
    secret_there: bool,
}

impl Scene {
    /// `tries` namespaces `<prefix>-NN` labelled `labels`, each created with
    /// its `default` ServiceAccount and a pod `app` pulling `image`, back to
    /// back; how each pod was admitted.
    async fn race(&self, prefix: &str, tries: usize, image: &str, labels: &[(&str, &str)]) -> Vec<Admitted> {
        let mut admitted = Vec::new();
        for i in 0..tries {
            let ns = format!("{prefix}-{i:02}");
            create_namespace(&self.client, &ns, labels).await;
            create_service_account(&self.client, &ns, "default", &[]).await;
            let pod = self.create_pod(&ns, "app", image).await;
            let secret_there = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), &ns)
                .get_opt("node-gitops")
                .await
                .unwrap()
                .is_some();
            let named = pod
                .spec
                .and_then(|s| s.image_pull_secrets)
                .is_some_and(|s| !s.is_empty());
            admitted.push(Admitted {
                namespace: ns,
                named,
                secret_there,
            });
        }
        admitted
    }

    /// Delete the pod `app` of each namespace at once (grace period 0).
    async fn clear(&self, namespaces: impl Iterator<Item = &str>) {
        let now = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        for ns in namespaces {
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .delete("app", &now)
                .await
                .unwrap_or_else(|e| panic!("deleting pod {ns}/app: {e}"));
        }
    }

    /// `reason: message` of the pod's Warning Events.
    async fn warnings_of(&self, ns: &str, pod: &str) -> Vec<String> {
        self.events_where(ns, &format!("involvedObject.name={pod},type=Warning"))
            .await
    }
}

/// A second node beside the shared one (two kubelets, two containerds on one
/// machine) runs a pod, then its test panics: dropping it while unwinding
/// leaves no process, mount, cgroup or file of its own behind.
#[tokio::test]
async fn a_node_dropped_by_a_panic_leaves_nothing_behind() {
    let s = Scene::new("panic_cleanup").await;
    let node = Node::start(&s.bed.cp).await.expect("a second node starts");
    assert_ne!(node.name(), s.node().name());
    let registry = Registry::start(Auth::Anonymous).await.expect("anonymous registry");
    app_image(&registry, "public/app").await;
    node.trust_registry(&registry).unwrap();
    namespace_with_default_sa(&s.client, "second-node", &[]).await;
    let image = format!("{}/public/app:1", registry.host());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": "second-node"},
        "spec": {
            "nodeName": node.name(),
            "hostNetwork": true,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": image}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(s.client.clone(), "second-node")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    s.wait_running("second-node", "app").await;

    let dir = node.dir().to_path_buf();
    let name = node.name().to_string();
    let mine = |text: &str| text.contains(dir.to_str().unwrap());
    let processes = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| mine(c))
            .collect()
    };
    let mounts = || -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| mine(l))
            .map(String::from)
            .collect()
    };
    let cgroups = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|h| h.path().join(&name))
            .filter(|p| p.exists())
            .collect()
    };
    let running = processes();
    assert!(
        running.iter().any(|p| p.contains("containerd-shim")) && running.iter().any(|p| p.contains("kubelet")),
        "the node's kubelet, containerd and shims run: {running:#?}"
    );
    assert!(!mounts().is_empty(), "the runtime mounted the pod's root file systems");
    assert!(!cgroups().is_empty(), "the node has cgroups");

    let unwound = std::thread::spawn(move || {
        let _node = node;
        panic!("a test fails with a node running");
    })
    .join();
    assert!(unwound.is_err());
    assert_eq!(processes(), Vec::<String>::new(), "processes left running");
    assert_eq!(mounts(), Vec::<String>::new(), "mounts left behind");
    assert_eq!(cgroups(), Vec::<std::path::PathBuf>::new(), "cgroups left behind");
    assert!(!dir.exists(), "{} left behind", dir.display());
    s.report();
}

/// `identity: PerServiceAccount`, two tenants on one node: each namespace's
/// `default` ServiceAccount names its own IAM role (in its own account),
/// regcred exchanges that ServiceAccount's token for the role's ECR
/// credential and links the Secret from that ServiceAccount only. The
/// registry behind both ECR hosts lets each role's password pull its own
/// team's repository only, as ECR's repository policies would. A pod of each
/// tenant pulls its team's image through the ServiceAccount link (the
/// namespaces do not opt in to the bed's admission webhook) and fails to
/// pull the other team's: the registry refuses the tenant's own credential.
#[tokio::test]
async fn per_service_account_tenants_pull_only_their_own_images() {
    use regcred_testenv::fakes::moto::ecr_password_for_role;
    const RC: &str = "node-ecr-tenants";
    const ROLE_A: &str = "arn:aws:iam::111111111111:role/team-a";
    const ROLE_B: &str = "arn:aws:iam::222222222222:role/team-b";
    const HOST_A: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com";
    const HOST_B: &str = "222222222222.dkr.ecr.us-east-1.amazonaws.com";
    let s = Scene::new("per_service_account").await;
    let moto = Moto::start().await.expect("moto");
    let (password_a, password_b) = (ecr_password_for_role(ROLE_A), ecr_password_for_role(ROLE_B));
    let grants: regcred_testenv::registry::Grants = Arc::new(move |user, password| match (user, password) {
        ("AWS", p) if p == password_a => vec!["team-a/app".into()],
        ("AWS", p) if p == password_b => vec!["team-b/app".into()],
        _ => Vec::new(),
    });
    let registry = Registry::start(Auth::Grants { grants })
        .await
        .expect("registry granting each role its own repository");
    app_image(&registry, "team-a/app").await;
    app_image(&registry, "team-b/app").await;
    s.node().route_registry(HOST_A, &registry).unwrap();
    s.node().route_registry(HOST_B, &registry).unwrap();
    for (ns, role) in [("tenant-a", ROLE_A), ("tenant-b", ROLE_B)] {
        create_namespace(&s.client, ns, &[]).await;
        let mut sa = regcred_testenv::objects::service_account("default", &[]);
        sa.metadata.annotations = Some([(regcred::identity::AWS_ROLE_ANNOTATION.to_string(), role.to_string())].into());
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(s.client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
            .expect("annotated ServiceAccount created");
    }
    let provider = json!({"ecr": {
        "region": "us-east-1",
        "identity": "PerServiceAccount",
        "endpointUrl": moto.url(),
        "stsEndpointUrl": moto.url(),
    }});
    let t0 = Instant::now();
    apply_rc(&s.client, rc(RC, provider, json!({"names": ["tenant-a", "tenant-b"]}))).await;
    let status = s
        .wait_status(RC, "status identities valid = 2", |st| {
            st.identities.as_ref().is_some_and(|i| i.valid == 2)
        })
        .await;
    eprintln!(
        "BENCH node: per-ServiceAccount credentials for 2 tenants valid {:?} after the RegistryCredential; identities {:?}",
        t0.elapsed(),
        status.identities
    );
    let calls = moto.web_identity_calls();
    let mut roles: Vec<&str> = calls.iter().map(|c| c.role_arn.as_str()).collect();
    roles.sort();
    assert_eq!(
        roles,
        [ROLE_A, ROLE_B],
        "one exchange per ServiceAccount, each for its own role"
    );
    let secret = regcred::identity::secret_name(RC, "default");

    for (ns, own, other, own_host) in [
        (
            "tenant-a",
            format!("{HOST_A}/team-a/app:1"),
            format!("{HOST_A}/team-b/app:1"),
            HOST_A,
        ),
        (
            "tenant-b",
            format!("{HOST_B}/team-b/app:1"),
            format!("{HOST_B}/team-a/app:1"),
            HOST_B,
        ),
    ] {
        let sa = s.wait_pull_secrets(ns, "default", &[secret.as_str()]).await;
        assert_eq!(pull_secret_names(&sa), [secret.as_str()]);
        let written = s.secrets(ns).get(&secret).await.expect("the tenant's Secret");
        let hosts: Vec<String> = docker_config(&written)["auths"]
            .as_object()
            .expect("auths")
            .keys()
            .cloned()
            .collect();
        assert_eq!(hosts, [own_host], "{ns}'s Secret is for its own account's registry");

        let admitted = s.create_pod(ns, "own", &own).await;
        let named: Vec<String> = admitted
            .spec
            .and_then(|p| p.image_pull_secrets)
            .into_iter()
            .flatten()
            .map(|r| r.name)
            .collect();
        assert_eq!(
            named,
            [secret.as_str()],
            "the ServiceAccount admission copies the tenant's own Secret"
        );
        let pulled = Instant::now();
        s.wait_running(ns, "own").await;
        eprintln!(
            "per_service_account: {ns} pulls {own}: Running {:?} after creation",
            pulled.elapsed()
        );

        s.create_pod(ns, "other", &other).await;
        let events = s.wait_pull_failed(ns, "other").await;
        eprintln!(
            "per_service_account: {ns} pulling {other}, the kubelet says:\n  {}",
            events.join("\n  ")
        );
        assert!(
            events
                .iter()
                .any(|e| e.starts_with("Failed: ") && e.contains("insufficient_scope")),
            "the registry accepts {ns}'s own credential but refuses it the other team's repository: {events:#?}"
        );
    }
    assert_eq!(moto.web_identity_calls().len(), 2, "nothing exchanged again");
    s.report();
}
