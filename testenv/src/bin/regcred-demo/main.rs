//! `make demo`: regcred end to end on this machine, without a cloud account.
//!
//! Starts a throwaway control plane (etcd + kube-apiserver), a private
//! registry (Debian's docker-registry with htpasswd and TLS from a throwaway
//! CA), moto standing in for AWS ECR, and the regcred binary named by
//! `REGCRED_BIN`; declares two RegistryCredentials, shows what a user looks
//! at, adds a namespace and times how fast it is served, then stops
//! everything. Every child process dies with this one (PDEATHSIG) and is
//! killed and its files removed on drop, also on Ctrl-C.
//!
//! Secret material is never printed: of a managed Secret only the registry
//! hosts in its `.dockerconfigjson` are shown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use regcred_testenv::fakes::moto::Moto;
use regcred_testenv::objects::{self, pull_secret_names};
use regcred_testenv::registry::{self, Auth, Registry};
use regcred_testenv::{ControlPlane, Operator, envtest_dir, free_port};
use serde_json::json;

mod cluster;
mod output;

use cluster::{
    condition, create_default_sa, create_namespace, managed_secrets, metrics, put_source_secret, rc_api, show_table,
    text, wait_for,
};
use output::{Steps, last_lines, print_table, say, secs};

const CREDS_NS: &str = "regcred-system";
const TEAMS: [&str; 2] = ["team-a", "team-b"];
const NEW_TEAM: &str = "team-c";
const LOCAL: &str = "local";
const ECR: &str = "ecr";
const USER: &str = "demo";
const PASSWORD: &str = "demo-password";
const REPOSITORY: &str = "team/app";
const TAG: &str = "1.0";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by=regcred";
const STEPS: usize = 8;
const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const NEW_NAMESPACE_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LINES: usize = 40;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let started = Instant::now();
    let mut stack = Stack::default();
    let mut steps = Steps::new();
    println!(
        "{}",
        steps
            .style
            .bold("regcred demo: a Kubernetes API server, a private registry and a fake AWS, all on 127.0.0.1")
    );
    println!("They run as children of this process and are removed when it ends (Ctrl-C stops early).");

    let outcome = tokio::select! {
        // Polled first, so the handlers are in place before anything starts.
        biased;
        signal = stop_signal() => Err(Stop::Signal(signal)),
        result = run(&mut stack, &mut steps) => result.map_err(Stop::Failed),
    };
    let failed_step = steps.current.as_ref().map(|(name, t)| (name.clone(), t.elapsed()));

    match outcome {
        Ok(()) => {
            let teardown = Instant::now();
            println!();
            println!(
                "{}",
                steps
                    .style
                    .bold("Tearing down: operator, moto, registry, control plane")
            );
            stack.teardown();
            println!("    stopped in {}; nothing is left running", secs(teardown.elapsed()));
            println!();
            steps.summary();
            println!("{}", steps.style.bold(&format!("Total: {}", secs(started.elapsed()))));
            ExitCode::SUCCESS
        }
        Err(Stop::Signal(signal)) => {
            println!();
            println!("{signal}: interrupted, cleaning up");
            stack.teardown();
            println!("stopped everything after {}", secs(started.elapsed()));
            ExitCode::from(130)
        }
        Err(Stop::Failed(e)) => {
            println!();
            let place = failed_step.map_or(String::new(), |(name, t)| format!(" ({name}, after {})", secs(t)));
            eprintln!("{}", steps.style.bold(&format!("demo failed{place}: {e:#}")));
            match &stack.operator {
                Some(operator) => {
                    let logs = operator.logs();
                    if logs.trim().is_empty() {
                        eprintln!("(the operator logged nothing)");
                    } else {
                        eprintln!("last {LOG_LINES} lines of the operator's log:");
                        for line in last_lines(&logs, LOG_LINES) {
                            eprintln!("    {line}");
                        }
                    }
                }
                None => eprintln!("(the operator was not started)"),
            }
            stack.teardown();
            eprintln!("stopped everything after {}", secs(started.elapsed()));
            ExitCode::FAILURE
        }
    }
}

enum Stop {
    Signal(&'static str),
    Failed(anyhow::Error),
}

/// Ctrl-C, or a polite request to stop (kill, a closed terminal).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// What the demo started; dropped in this order: operator, moto, registry,
/// control plane.
#[derive(Default)]
struct Stack {
    operator: Option<Operator>,
    moto: Option<Moto>,
    registry: Option<Registry>,
    cp: Option<ControlPlane>,
}

impl Stack {
    fn teardown(&mut self) {
        drop(self.operator.take());
        drop(self.moto.take());
        drop(self.registry.take());
        drop(self.cp.take());
    }
}

impl Stack {
    fn cp(&self) -> anyhow::Result<&ControlPlane> {
        self.cp.as_ref().context("the control plane is not running")
    }

    fn registry(&self) -> anyhow::Result<&Registry> {
        self.registry.as_ref().context("the registry is not running")
    }

    fn moto(&self) -> anyhow::Result<&Moto> {
        self.moto.as_ref().context("moto is not running")
    }

    fn operator(&mut self) -> anyhow::Result<&mut Operator> {
        self.operator.as_mut().context("the operator is not running")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Eight steps, one function each; `steps` times and names them.
async fn run(stack: &mut Stack, steps: &mut Steps) -> anyhow::Result<()> {
    let operator_bin = preflight()?;
    steps.begin(
        "control plane",
        "Starting a Kubernetes control plane (etcd + kube-apiserver) and installing the RegistryCredential CRD",
    );
    let client = start_control_plane(stack).await?;
    steps.begin(
        "registry + moto",
        "Starting a private registry (user demo) with an image, and moto as a stand-in for AWS ECR",
    );
    start_registry_and_moto(stack).await?;
    steps.begin("operator", "Starting the operator");
    let metrics_addr = start_operator(stack, &client, &operator_bin).await?;
    steps.begin(
        "namespaces",
        "Creating namespaces team-a and team-b (label demo=yes) and the source credentials",
    );
    create_namespaces_and_sources(&client).await?;
    steps.begin("apply", "Applying two RegistryCredentials");
    apply_registry_credentials(stack, &client).await?;
    steps.begin(
        "ready",
        "Waiting until both are Ready, then looking around as a user would",
    );
    wait_ready_and_look_around(stack, &client, &metrics_addr).await?;
    steps.begin("new namespace", "What happens when a new namespace appears");
    new_namespace(stack, &client).await?;
    steps.begin("next", "Where to look next");
    where_next();
    steps.end();
    Ok(())
}

/// Step 1: etcd + kube-apiserver with the CRD; the admin client.
async fn start_control_plane(stack: &mut Stack) -> anyhow::Result<Client> {
    let cp = stack
        .cp
        .insert(ControlPlane::start().await.context("starting etcd + kube-apiserver")?);
    let crd_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/regcred.dev_registrycredentials.yaml");
    let crd = std::fs::read_to_string(&crd_path).with_context(|| format!("reading {}", crd_path.display()))?;
    cp.install_crd(&crd).await.context("installing the CRD")?;
    let client = cp.client().await?;
    say(&format!("API server  {}", cp.url()));
    say(&format!(
        "kubeconfig  {}  (use it with kubectl while the demo runs)",
        cp.kubeconfig().display()
    ));
    say("CRD         registrycredentials.regcred.dev (crds/regcred.dev_registrycredentials.yaml)");

    Ok(client)
}

/// Step 2: the registry with an image, and moto.
async fn start_registry_and_moto(stack: &mut Stack) -> anyhow::Result<()> {
    let (registry, moto) = tokio::try_join!(
        async {
            let registry = Registry::start(Auth::Htpasswd {
                users: vec![(USER.into(), PASSWORD.into())],
            })
            .await
            .context("starting docker-registry")?;
            registry
                .push_image(REPOSITORY, TAG)
                .await
                .with_context(|| format!("pushing {REPOSITORY}:{TAG}"))?;
            anyhow::Ok(registry)
        },
        async { Moto::start().await.context("starting moto") },
    )?;
    let registry = stack.registry.insert(registry);
    let moto = stack.moto.insert(moto);
    say(&format!(
        "registry    https://{}  (docker-registry, htpasswd, TLS from a throwaway CA)",
        registry.host()
    ));
    say(&format!("image       {}/{REPOSITORY}:{TAG} pushed", registry.host()));
    say(&format!(
        "fake AWS    {}  (moto: answers ECR GetAuthorizationToken)",
        moto.url()
    ));

    Ok(())
}

/// Step 3: regcred, as a user would run it, until `/readyz`; its metrics address.
async fn start_operator(stack: &mut Stack, client: &Client, operator_bin: &Path) -> anyhow::Result<String> {
    let (cp, registry) = (stack.cp()?, stack.registry()?);
    create_namespace(client, CREDS_NS, false).await?;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let ca_bundle = registry.ca_path().display().to_string();
    let args = ["--ca-bundle", &ca_bundle, "--metrics-addr", &metrics_addr];
    say(&format!(
        "{} run --kubeconfig {} --credentials-namespace {CREDS_NS} \\\n        {}",
        operator_bin.display(),
        cp.kubeconfig().display(),
        args.join(" ")
    ));
    let operator = stack.operator.insert(
        Operator::start(
            operator_bin,
            cp,
            CREDS_NS,
            &args,
            &[("AWS_EC2_METADATA_DISABLED", "true")],
        )
        .context("starting regcred")?,
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let readyz = format!("http://{metrics_addr}/readyz");
    let waited = wait_for(operator, OPERATOR_READY_TIMEOUT, "the operator's /readyz", || {
        let (http, readyz) = (http.clone(), readyz.clone());
        async move {
            Ok(match http.get(&readyz).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            })
        }
    })
    .await?
    .1;
    say(&format!(
        "pid {}; /readyz ok after {} (caches warm); metrics at http://{metrics_addr}/metrics",
        operator.pid(),
        secs(waited)
    ));

    Ok(metrics_addr)
}

/// Step 4: two team namespaces, one with someone else's pull secret, and the sources.
async fn create_namespaces_and_sources(client: &Client) -> anyhow::Result<()> {
    for ns in TEAMS {
        create_namespace(client, ns, true).await?;
    }
    // What a controller-manager would do, plus a pull secret someone else put there.
    let legacy = Secret {
        metadata: objects::meta("legacy-pull", &[]),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        string_data: Some(
            [(
                ".dockerconfigjson".to_string(),
                json!({"auths": {"registry.example.com": {"auth": "c29tZW9uZTplbHNl"}}}).to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), "team-a")
        .create(&PostParams::default(), &legacy)
        .await
        .context("creating team-a/legacy-pull")?;
    create_default_sa(client, "team-a", &["legacy-pull"]).await?;
    create_default_sa(client, "team-b", &[]).await?;
    say("team-a          ServiceAccount default with imagePullSecrets [legacy-pull]: someone else's, regcred keeps it");
    say("team-b          ServiceAccount default without imagePullSecrets");
    put_source_secret(client, "local-registry", &[("username", USER), ("password", PASSWORD)]).await?;
    put_source_secret(
        client,
        "aws-creds",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIADEMODEMODEMODEMO"),
            ("AWS_SECRET_ACCESS_KEY", "demo-secret-access-key"),
        ],
    )
    .await?;
    say(&format!(
        "{CREDS_NS:<15} Secrets local-registry (username, password) and aws-creds (AWS access keys): the sources"
    ));
    say("                regcred mints from. It reads Secrets only in this namespace, its credentials namespace.");

    Ok(())
}

/// Step 5: a static and an ECR RegistryCredential, shown as YAML.
async fn apply_registry_credentials(stack: &Stack, client: &Client) -> anyhow::Result<()> {
    let (registry, moto) = (stack.registry()?, stack.moto()?);
    let target = json!({"namespaces": {"selector": {"matchLabels": {"demo": "yes"}}}});
    let manifests = [
        json!({
            "apiVersion": "regcred.dev/v1alpha1",
            "kind": "RegistryCredential",
            "metadata": {"name": LOCAL},
            "spec": {
                "provider": {"static": {"registry": registry.host(), "secretRef": {"name": "local-registry"}}},
                "target": target,
                "healthCheck": {"image": format!("{REPOSITORY}:{TAG}"), "interval": "30s"},
            },
        }),
        json!({
            "apiVersion": "regcred.dev/v1alpha1",
            "kind": "RegistryCredential",
            "metadata": {"name": ECR},
            "spec": {
                "provider": {"ecr": {
                    "region": "us-east-1",
                    "auth": {"secretRef": {"name": "aws-creds"}},
                    "endpointUrl": moto.url(),
                }},
                "target": target,
                "healthCheck": {"mode": "Disabled"},
            },
        }),
    ];
    let rcs = rc_api(client);
    for manifest in &manifests {
        say("---");
        for line in serde_yaml::to_string(manifest)?.lines() {
            // Quoted, as kubectl's YAML 1.1 would read a bare `yes` as a boolean.
            say(&line.replace(": yes", ": \"yes\""));
        }
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        rcs.patch(name, &PatchParams::apply("regcred-demo"), &Patch::Apply(manifest))
            .await
            .with_context(|| format!("applying RegistryCredential {name}"))?;
    }
    say("");
    say("local: the static provider turns the username and password in local-registry into a pull secret");
    say("       for the registry; the health check proves with it that team/app:1.0 can be pulled.");
    say("ecr:   moto hands out ECR tokens, but there is no ECR registry behind them to check a pull");
    say("       against, so this one's health check is Disabled.");

    Ok(())
}

/// Step 6: both Ready; status, Secrets, the ServiceAccount and metrics as a user sees them.
async fn wait_ready_and_look_around(stack: &mut Stack, client: &Client, metrics_addr: &str) -> anyhow::Result<()> {
    let rcs = rc_api(client);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let (_, waited) = wait_for(
        stack.operator()?,
        READY_TIMEOUT,
        "both RegistryCredentials to be Ready",
        || {
            let rcs = rcs.clone();
            async move {
                let mut pending = Vec::new();
                for name in [LOCAL, ECR] {
                    let rc = rcs
                        .get(name)
                        .await
                        .with_context(|| format!("reading RegistryCredential {name}"))?;
                    let status = &rc.data["status"];
                    let ready = condition(status, "Ready");
                    let checked =
                        name != LOCAL || status["pullAuth"]["result"].as_str().is_some_and(|r| r != "Unknown");
                    match ready {
                        Some((s, _, _)) if s == "True" && checked => {}
                        Some((s, _, _)) if s == "True" => pending.push(format!("{name}: pull auth not checked yet")),
                        Some((s, reason, message)) => pending.push(format!("{name}: Ready={s} {reason}: {message}")),
                        None => pending.push(format!("{name}: no Ready condition yet")),
                    }
                }
                Ok(if pending.is_empty() {
                    Ok(())
                } else {
                    Err(pending.join("; "))
                })
            }
        },
    )
    .await?;
    say(&format!("both Ready after {}", secs(waited)));
    println!();

    show_table(stack.cp()?, client).await?;
    println!();

    say("Managed Secrets (data not shown; only the registries in .dockerconfigjson):");
    let mut rows = Vec::new();
    for ns in TEAMS {
        rows.extend(managed_secrets(client, ns).await?);
    }
    print_table(
        &["NAMESPACE", "NAME", "TYPE", "CREDENTIAL", "NOT-AFTER", "AUTHS"],
        &rows,
        6,
    );
    say("local: static credentials do not expire, so there is no regcred.dev/not-after.");
    say("ecr:   moto's tokens claim to have expired in 2015; regcred gives an implausible expiry a one-hour");
    say("       lifetime (real ECR tokens live 12 h) and renews after two thirds of it (RENEWAL).");
    println!();

    let sa = Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
        .get("default")
        .await
        .context("reading team-a/default")?;
    say(&format!(
        "ServiceAccount team-a/default imagePullSecrets: [{}]",
        pull_secret_names(&sa).join(", ")
    ));
    say(&format!(
        "    legacy-pull kept first, regcred's entries appended; annotation regcred.dev/pull-secrets={}",
        sa.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("regcred.dev/pull-secrets"))
            .map_or("<none>", String::as_str)
    ));
    println!();

    let local = rcs.get(LOCAL).await?;
    let pull = &local.data["status"]["pullAuth"];
    say("RegistryCredential local, status.pullAuth:");
    for field in ["result", "registry", "checkedTime", "message"] {
        say(&format!("    {field:<12} {}", text(&pull[field])));
    }
    println!();

    say(&format!("Metrics (curl -s http://{metrics_addr}/metrics | grep ...):"));
    match metrics(&http, metrics_addr).await {
        Ok(lines) => lines.iter().for_each(|l| say(&format!("    {l}"))),
        Err(e) => say(&format!("    (could not read the metrics: {e:#})")),
    }

    Ok(())
}

/// Step 7: a new namespace gets both Secrets and the ServiceAccount patch.
async fn new_namespace(stack: &mut Stack, client: &Client) -> anyhow::Result<()> {
    let started = Instant::now();
    create_namespace(client, NEW_TEAM, true).await?;
    create_default_sa(client, NEW_TEAM, &[]).await?;
    say(&format!(
        "created namespace {NEW_TEAM} (label demo=yes) and its default ServiceAccount"
    ));
    let secrets = Api::<Secret>::namespaced(client.clone(), NEW_TEAM);
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), NEW_TEAM);
    let secrets_at = std::cell::Cell::new(None);
    let (names, _) = wait_for(
        stack.operator()?,
        NEW_NAMESPACE_TIMEOUT,
        &format!("the Secrets in {NEW_TEAM} and the ServiceAccount patch"),
        || {
            let (secrets, sas) = (secrets.clone(), sas.clone());
            let secrets_at = &secrets_at;
            async move {
                let mut missing = Vec::new();
                for name in [LOCAL, ECR] {
                    if secrets.get_opt(name).await?.is_none() {
                        missing.push(format!("Secret {name}"));
                    }
                }
                if missing.is_empty() && secrets_at.get().is_none() {
                    secrets_at.set(Some(started.elapsed()));
                }
                let names = pull_secret_names(&sas.get("default").await?);
                for name in [LOCAL, ECR] {
                    if !names.iter().any(|n| n == name) {
                        missing.push(format!("imagePullSecrets entry {name}"));
                    }
                }
                Ok(if missing.is_empty() {
                    Ok(names)
                } else {
                    Err(format!("missing: {}", missing.join(", ")))
                })
            }
        },
    )
    .await?;
    let patched_at = started.elapsed();
    say(&format!(
        "Secrets local and ecr in {NEW_TEAM} after {}",
        secs(secrets_at.get().unwrap_or(patched_at))
    ));
    say(&format!(
        "ServiceAccount {NEW_TEAM}/default imagePullSecrets [{}] after {}",
        names.join(", "),
        secs(patched_at)
    ));
    let mints = stack.moto()?.ecr_token_calls();
    if mints == 1 {
        say("ECR was asked for a token once: one mint, fanned out to all three namespaces");
    } else {
        say(&format!("ECR GetAuthorizationToken calls so far: {mints}"));
    }

    Ok(())
}

/// Step 8: pointers into the README and examples.
fn where_next() {
    say("README.md: \"Quick start in a cluster\" (install the CRD, run the operator, first credential),");
    say("           \"Cloud set-up per provider\" (ECR, GCR/Artifact Registry, ACR, static),");
    say("           \"Status, conditions and metrics\", \"Troubleshooting by reason\" and");
    say("           \"When a pull fails anyway\" (regcred diagnose, the operator's repairs).");
    say("examples/: one RegistryCredential per provider and auth mode; the API contract: crds/ field docs.");
}

/// Fail before starting anything when a piece is missing, saying how to get it.
fn preflight() -> anyhow::Result<PathBuf> {
    let Some(bin) = std::env::var_os("REGCRED_BIN") else {
        bail!(
            "REGCRED_BIN is not set: run `make demo`, or `cargo build --bin regcred` and set \
             REGCRED_BIN=target/debug/regcred"
        );
    };
    let bin = PathBuf::from(bin);
    if !bin.is_file() {
        bail!(
            "REGCRED_BIN={} is not a file: run `make demo`, or `cargo build --bin regcred` first",
            bin.display()
        );
    }
    for name in ["etcd", "kube-apiserver"] {
        let path = envtest_dir().join(name);
        if !path.is_file() {
            bail!(
                "{name} not found at {}: run `make tools` (builds etcd and kube-apiserver once, ~11 min on 2 cores)",
                path.display()
            );
        }
    }
    if !Path::new(registry::BINARY).is_file() {
        bail!(
            "docker-registry not found at {}: run `make tools` (installs Debian's docker-registry)",
            registry::BINARY
        );
    }
    let moto = std::env::var_os("REGCRED_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"));
    if !moto.is_file() {
        bail!(
            "moto_server not found at {}: run `make tools` (installs moto into .venv)",
            moto.display()
        );
    }
    Ok(bin)
}
