//! Running regcred in production: metrics and probes, leader election.

mod support;

use std::time::{Duration, Instant};

use regcred_testenv::fakes::moto::Moto;
use regcred_testenv::{eventually, free_port};
use serde_json::json;
use support::*;

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn metrics_and_probes_after_a_mint() {
    regcred::connect::init_crypto();
    let moto = Moto::start().await.expect("moto");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let h = Harness::start_with(&["--metrics-addr", &addr], &[]).await;
    let base = format!("http://{addr}");
    eventually(WAIT, "/readyz 200 once caches are warm", || {
        let url = format!("{base}/readyz");
        async move { (get(&url).await.0 == 200).then_some(()) }
    })
    .await;
    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok".to_string()));

    put_aws_keys(&h.client, "testing").await;
    for ns in ["m1", "m2"] {
        namespace_with_default_sa(&h.client, ns, &[("m", "1")]).await;
    }
    apply_rc(
        &h.client,
        rc(
            "ecr",
            json!({"ecr": {"region": "us-east-1", "auth": {"secretRef": {"name": "aws-creds"}}, "endpointUrl": moto.url()}}),
            json!({"selector": {"matchLabels": {"m": "1"}}}),
        ),
    )
    .await;
    let status = h
        .wait_status("ecr", "2/2", |s| s.summary.as_deref() == Some("2/2"))
        .await;
    let not_after = status.not_after.unwrap().0.as_second();

    let (code, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    println!("{text}");
    for series in [
        format!(
            r#"regcred_credential_expiry_timestamp_seconds{{credential="ecr",registry="123456789012.dkr.ecr.us-east-1.amazonaws.com"}} {not_after}"#
        ),
        r#"regcred_mint_attempts_total{provider="ECR"} 1"#.to_string(),
        r#"regcred_provider_calls_total{provider="ECR",status="success"} 1"#.to_string(),
        r#"regcred_namespaces_targeted{credential="ecr"} 2"#.to_string(),
        r#"regcred_namespaces_synced{credential="ecr"} 2"#.to_string(),
        "regcred_reconcile_duration_seconds_count".to_string(),
    ] {
        assert!(text.contains(&series), "missing {series}");
    }

    // A failing mint shows up by reason.
    moto.set_ecr_fault(regcred_testenv::fakes::Fault::Status {
        code: 400,
        retry_after: None,
    });
    put_aws_keys(&h.client, "rotated").await;
    h.wait_status("ecr", "MintFailed", |s| condition(s, "Issued").reason == "MintFailed")
        .await;
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(
        text.contains(r#"regcred_mint_failures_total{provider="ECR",reason="MintFailed"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"regcred_provider_calls_total{provider="ECR",status="error"} 1"#));
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let cp = Harness::control_plane().await;
    let client = cp.client().await.unwrap();
    put_source_secret(&client, "hub", "me", "pw").await;
    let lease = ["--leader-election", "--lease-duration", "6s"];
    let addr_a = metrics_addr();
    let addr_b = metrics_addr();
    let a_args = [&lease[..], &["--metrics-addr", &addr_a]].concat();
    let b_args = [&lease[..], &["--metrics-addr", &addr_b]].concat();
    let a = start_operator_with(&cp, &a_args, &[("POD_NAME", "replica-a")]);
    eventually(WAIT, "replica a to lead", || {
        let logs = a.logs();
        async move { logs.contains("became the leader").then_some(()) }
    })
    .await;
    let b = start_operator_with(&cp, &b_args, &[("POD_NAME", "replica-b")]);
    eventually(WAIT, "replica b to wait", || {
        let logs = b.logs();
        async move { logs.contains("waiting to become the leader").then_some(()) }
    })
    .await;
    // The standby reports ready once its caches are warm (it serves
    // admission from them): it is healthy, only waiting.
    eventually(WAIT, "the standby to report ready", || async {
        (get(&format!("http://{addr_b}/readyz")).await.0 == 200).then_some(())
    })
    .await;

    let mut h = Harness {
        client,
        operator: a,
        cp,
    };
    namespace_with_default_sa(&h.client, "before", &[]).await;
    create_hub_rc(&h.client, json!({})).await;
    h.wait_pull_secrets("before", "default", &["hub"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !b.logs().contains("reconciled"),
        "the standby must not reconcile:\n{}",
        b.logs()
    );
    let lease_api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(h.client.clone(), CREDS_NS);
    let holder = lease_api.get("regcred").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("replica-a"));

    // The leader dies without releasing the Lease.
    h.operator.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(60), "replica b to take over", || {
        let logs = b.logs();
        async move { logs.contains("became the leader").then_some(()) }
    })
    .await;
    let handover = killed.elapsed();
    println!("handover after the leader was killed: {handover:?} (lease duration 6s)");
    assert!(handover < Duration::from_secs(6 + 10), "handover took {handover:?}");
    let _dead_leader = std::mem::replace(&mut h.operator, b);
    namespace_with_default_sa(&h.client, "after", &[]).await;
    h.wait_pull_secrets("after", "default", &["hub"]).await;
    let holder = lease_api.get("regcred").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("replica-b"));
}

#[tokio::test]
async fn waits_for_the_crd_with_a_clear_message() {
    let cp = regcred_testenv::ControlPlane::start().await.expect("control plane");
    let client = cp.client().await.unwrap();
    create_namespace(&client, CREDS_NS, &[]).await;
    let operator = start_operator(&cp);
    eventually(
        WAIT,
        "a message saying the CRD is missing and how to install it",
        || {
            let logs = operator.logs();
            async move {
                (logs.contains("CRD is not installed yet") && logs.contains("kubectl apply -f crds/")).then_some(())
            }
        },
    )
    .await;
    cp.install_crd(&regcred::api::crd_yaml()).await.unwrap();
    let h = Harness { client, operator, cp };
    eventually(WAIT, "the operator to start once the CRD exists", || {
        let logs = h.operator.logs();
        async move { logs.contains("controller starting").then_some(()) }
    })
    .await;
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "late", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["late"]}})).await;
    h.wait_pull_secrets("late", "default", &["hub"]).await;
}

/// On SIGTERM the leader releases its Lease, so the standby takes over
/// without waiting out the lease duration.
#[tokio::test]
async fn a_graceful_stop_hands_the_lease_over_at_once() {
    let cp = Harness::control_plane().await;
    let client = cp.client().await.unwrap();
    let lease = ["--leader-election", "--lease-duration", "20s"];
    let mut a = start_operator_with(&cp, &lease, &[("POD_NAME", "replica-a")]);
    eventually(WAIT, "replica a to lead", || {
        let logs = a.logs();
        async move { logs.contains("became the leader").then_some(()) }
    })
    .await;
    let b = start_operator_with(&cp, &lease, &[("POD_NAME", "replica-b")]);
    eventually(WAIT, "replica b to wait", || {
        let logs = b.logs();
        async move { logs.contains("waiting to become the leader").then_some(()) }
    })
    .await;
    let stopped = Instant::now();
    a.stop();
    assert!(a.logs().contains("released the leader-election Lease"), "{}", a.logs());
    eventually(Duration::from_secs(60), "replica b to take over", || {
        let logs = b.logs();
        async move { logs.contains("became the leader").then_some(()) }
    })
    .await;
    let handover = stopped.elapsed();
    println!("handover after a graceful stop: {handover:?} (lease duration 20s)");
    assert!(
        handover < Duration::from_secs(10),
        "the standby waited out the lease: {handover:?}"
    );
    let h = Harness {
        client,
        operator: b,
        cp,
    };
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "after", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["after"]}})).await;
    h.wait_pull_secrets("after", "default", &["hub"]).await;
}

/// A stop that comes before the controller has listed the
/// RegistryCredentials once (SIGTERM a moment after winning the Lease, as
/// a fresh-clone run once did) ends the controller at once: kube holds its reconciles
/// until that first list, and a graceful shutdown stops the list, so
/// waiting for the reconciles to finish would wait forever and leave the
/// Lease held. Here the stop is there before the controller's first step.
#[tokio::test]
async fn a_stop_before_the_controllers_first_list_ends_it_at_once() {
    let cp = Harness::control_plane().await;
    let client = cp.client().await.unwrap();
    let config = regcred::controller::ControllerConfig {
        credentials_namespace: CREDS_NS.into(),
        concurrency: 4,
        http: reqwest::Client::new(),
        health: regcred::telemetry::Health::new(Default::default()),
        diagnose_pulls: true,
        excluded_namespaces: Vec::new(),
    };
    let watches = regcred::controller::start(client, &config);
    let started = Instant::now();
    let run = regcred::controller::run(watches, config, std::future::ready(()));
    let ended = tokio::time::timeout(Duration::from_secs(30), run).await;
    assert!(
        ended.is_ok(),
        "the controller still ran 30 s after a stop that came before its first list"
    );
    println!("stopped before the first list: ended after {:?}", started.elapsed());
}

/// Behind a corporate proxy: HTTPS_PROXY is honoured, and NO_PROXY covering
/// the API server means a direct connection, as with kubectl.
#[tokio::test]
async fn starts_behind_a_proxy_when_no_proxy_covers_the_api_server() {
    // Nothing listens on the discard port: a request sent to this proxy fails.
    // (Named `localhost`, so that NO_PROXY covers the API server, not the proxy.)
    let cp = Harness::control_plane().await;
    let mut through_proxy = start_operator_with(&cp, &[], &[("HTTPS_PROXY", "http://localhost:9")]);
    // The API server is up: only the proxy can refuse the connection.
    eventually(WAIT, "the operator to fail through the proxy", || {
        let logs = through_proxy.logs();
        async move { logs.contains("client error (Connect)").then_some(()) }
    })
    .await;
    assert!(
        !through_proxy.logs().contains("caches are warm"),
        "{}",
        through_proxy.logs()
    );
    through_proxy.stop();

    let proxy = [
        ("HTTPS_PROXY", "http://localhost:9"),
        ("NO_PROXY", "10.0.0.0/8,127.0.0.1"),
    ];
    let operator = start_operator_with(&cp, &[], &proxy);
    let h = Harness {
        client: cp.client().await.unwrap(),
        operator,
        cp,
    };
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "proxied", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["proxied"]}})).await;
    h.wait_pull_secrets("proxied", "default", &["hub"]).await;
    assert!(
        h.operator.logs().contains("NO_PROXY covers the API server"),
        "{}",
        h.operator.logs()
    );

    // `regcred diagnose` connects the same way: directly, where NO_PROXY
    // covers the API server; through the (dead) proxy where it does not.
    let diagnose = |env: &'static [(&'static str, &'static str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regcred"));
        command
            .args(["diagnose", "-n", "proxied", "--kubeconfig"])
            .arg(h.cp.kubeconfig())
            .env_remove("KUBECONFIG")
            .envs(env.iter().copied());
        command.output().expect("running regcred diagnose")
    };
    let direct = diagnose(&[
        ("HTTPS_PROXY", "http://localhost:9"),
        ("NO_PROXY", "10.0.0.0/8,127.0.0.1"),
    ]);
    assert!(
        direct.status.success() && String::from_utf8_lossy(&direct.stdout).contains("No container is waiting"),
        "{}{}",
        String::from_utf8_lossy(&direct.stdout),
        String::from_utf8_lossy(&direct.stderr)
    );
    let proxied = diagnose(&[("HTTPS_PROXY", "http://localhost:9")]);
    assert!(!proxied.status.success(), "the proxy is honoured");
}

/// Started while the API server is unreachable, regcred waits for it with
/// backoff and says why, then works once it is reachable.
#[tokio::test]
async fn starts_while_the_api_server_is_unreachable_and_waits_for_it() {
    let cp = Harness::control_plane().await;
    // The operator's kubeconfig names a port nothing listens on yet.
    let port = free_port();
    let real = cp.url().trim_start_matches("https://").to_string();
    let kubeconfig = std::fs::read_to_string(cp.kubeconfig())
        .unwrap()
        .replace(&real, &format!("127.0.0.1:{port}"));
    let path = cp.kubeconfig().with_file_name("unreachable.kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let mut operator = start_operator_as(&path, &[], &[]);
    eventually(WAIT, "the operator to say it is waiting", || {
        let logs = operator.logs();
        async move { logs.contains("cannot reach the API server; retrying").then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(operator.exited().is_none(), "regcred exited:\n{}", operator.logs());

    // The API server becomes reachable on that port: a plain TCP forwarder.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let forwarder = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&real).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let h = Harness {
        client: cp.client().await.unwrap(),
        operator,
        cp,
    };
    put_source_secret(&h.client, "hub", "me", "pw").await;
    namespace_with_default_sa(&h.client, "late", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["late"]}})).await;
    h.wait_pull_secrets("late", "default", &["hub"]).await;
    forwarder.abort();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the operator's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The pull diagnosis watches Warning Events about Pods without caching
/// them (or the Pods): 5,000 Events about pods that are nothing to regcred
/// — restarts, probes, and pull failures of pods that no longer exist —
/// flow through, and the operator's memory stays where it was. Prints the
/// figure; the bound only catches a cache (5,000 Events held would cost
/// more than it allows).
#[tokio::test]
async fn pull_diagnosis_memory_stays_flat_with_thousands_of_unrelated_events() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, PostParams};
    // `REGCRED_UNRELATED_EVENTS=10000` measures a larger flood.
    let events: usize = std::env::var("REGCRED_UNRELATED_EVENTS")
        .ok()
        .map(|n| n.parse().expect("REGCRED_UNRELATED_EVENTS is a number"))
        .unwrap_or(5_000);
    const NAMESPACES: usize = 10;
    let h = Harness::start().await;
    eventually(WAIT, "the operator following pull failures", || async {
        let logs = h.operator.logs();
        (logs.contains("caches are warm") && logs.contains("following the kubelet's image-pull failures")).then_some(())
    })
    .await;
    for n in 0..NAMESPACES {
        create_namespace(&h.client, &format!("ev-{n}"), &[]).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(h.operator.pid());
    let started = Instant::now();
    let created = futures::stream::iter(0..events)
        .map(|i| {
            let client = h.client.clone();
            async move {
                let ns = format!("ev-{}", i % NAMESPACES);
                let pod = format!("gone-{i}");
                let (type_, reason, message) = match i % 4 {
                    0 => (
                        "Warning",
                        "Failed",
                        format!("Failed to pull image \"registry.example/app:{i}\": failed to resolve reference: 401 Unauthorized"),
                    ),
                    1 => ("Warning", "BackOff", format!("Back-off restarting failed container app in pod {pod}")),
                    2 => ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503".to_string()),
                    _ => ("Normal", "Pulled", format!("Successfully pulled image \"registry.example/app:{i}\" in 1.2s")),
                };
                let now = jiff::Timestamp::now();
                let event: Event = serde_json::from_value(json!({
                    "metadata": {"name": format!("{pod}.{i:x}"), "namespace": ns},
                    "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod, "uid": format!("00000000-0000-0000-0000-{i:012}"), "apiVersion": "v1"},
                    "type": type_,
                    "reason": reason,
                    "message": message,
                    "source": {"component": "kubelet", "host": "node-x"},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                }))
                .unwrap();
                Api::<Event>::namespaced(client, &ns).create(&PostParams::default(), &event).await.is_ok()
            }
        })
        .buffer_unordered(16)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(created, events, "every Event was created");
    let posted = started.elapsed();
    // Let the watch deliver them all and the diagnosis look up the pods it names.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = rss_kib(h.operator.pid());
    let delta = after as i64 - before as i64;
    eprintln!(
        "bench: operator RSS {before} KiB before, {after} KiB after {events} unrelated pod Events (posted in {posted:?}): Δ {delta} KiB"
    );
    assert!(delta < 16 * 1024, "RSS grew by {delta} KiB");
    assert!(
        h.operator
            .logs()
            .contains("following the kubelet's image-pull failures")
    );
}

/// Someone else's edit of a managed Secret is restored and recorded: a
/// Warning Event on the RegistryCredential naming the namespace and the
/// editor's field manager (never a value), and
/// `regcred_managed_secret_overwrites_total`. regcred's own rewrite after a
/// rotation is neither.
#[tokio::test]
async fn another_managers_edit_of_a_managed_secret_is_restored_and_recorded() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, Patch, PatchParams};

    let addr = metrics_addr();
    let h = Harness::confined_with(&["--metrics-addr", &addr], &[]).await;
    let password = canary("overwrite");
    put_source_secret(&h.client, "hub", "me", &password).await;
    namespace_with_default_sa(&h.client, "edited", &[]).await;
    create_hub_rc(&h.client, json!({"namespaces": {"names": ["edited"]}})).await;
    let holds = |want: &str| {
        let want = want.to_string();
        move |s: &k8s_openapi::api::core::v1::Secret| password_for(s, HUB).as_deref() == Some(want.as_str())
    };
    h.wait_secret("edited", "hub", "the managed Secret", holds(&password))
        .await;
    let counted = |text: &str| {
        metric_sum(
            text,
            "regcred_managed_secret_overwrites_total",
            &[r#"credential="hub""#],
        )
    };
    assert_eq!(counted(&scrape(&addr).await), 0.0);

    let forged = json!({"data": {".dockerconfigjson": "eyJhdXRocyI6e319"}});
    let as_someone_else = PatchParams {
        field_manager: Some("someone-else".into()),
        ..Default::default()
    };
    h.secrets("edited")
        .patch("hub", &as_someone_else, &Patch::Merge(&forged))
        .await
        .expect("editing the managed Secret as another field manager");
    let edited_at = Instant::now();
    h.wait_secret("edited", "hub", "the edited Secret restored", holds(&password))
        .await;
    println!("BENCH overwrite: restored {:?} after the edit", edited_at.elapsed());

    let events: Api<Event> = Api::all(h.client.clone());
    let overwrites = || async {
        let list = events.list(&Default::default()).await.expect("listing Events");
        list.items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ManagedSecretOverwritten") && regarding(e) == Some("hub"))
            .collect::<Vec<_>>()
    };
    let event = eventually(WAIT, "a ManagedSecretOverwritten Event on hub", || async {
        overwrites().await.into_iter().next()
    })
    .await;
    let note = event.note.clone().unwrap_or_default();
    println!("Event: {note}");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(note.contains("edited") && note.contains("someone-else"), "{note}");
    assert!(
        !note.contains(&password) && !note.contains("eyJhdXRocyI6e319"),
        "{note}"
    );
    eventually(WAIT, "the overwrite counted once", || async {
        (counted(&scrape(&addr).await) == 1.0).then_some(())
    })
    .await;

    // regcred's own rewrite (the source rotated) is not someone else's edit.
    let before = h.rcs().get("hub").await.unwrap().status.unwrap().credential_digest;
    let rotated = canary("rotated");
    put_source_secret(&h.client, "hub", "me", &rotated).await;
    h.wait_secret("edited", "hub", "the rotated Secret", holds(&rotated))
        .await;
    h.wait_status("hub", "the new credential in status", |s| s.credential_digest != before)
        .await;
    assert_eq!(counted(&scrape(&addr).await), 1.0);
    assert_eq!(
        overwrites().await.len(),
        1,
        "one Event, for the one edit by another manager"
    );
}
