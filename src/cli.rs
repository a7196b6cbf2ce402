//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// regcred keeps image-pull credentials fresh in every namespace.
#[derive(Parser, Debug)]
#[command(name = "regcred", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Say why pods cannot pull their images, with evidence (reads only).
    Diagnose(DiagnoseArgs),
    /// Print the RegistryCredential CRD as YAML.
    Crd,
    /// Print the spec reference (a Markdown table) generated from the CRD.
    Reference,
    /// Print the version.
    Version,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespace whose Secrets hold source credentials (cloud keys, static
    /// passwords). Default: the namespace the operator runs in.
    #[arg(long, env = "REGCRED_CREDENTIALS_NAMESPACE")]
    pub credentials_namespace: Option<String>,

    /// kubeconfig file; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// RegistryCredentials reconciled at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "REGCRED_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// PEM file of extra CA certificates trusted (besides the system roots) for
    /// HTTPS to Entra ID, ACR and registries: corporate proxies, private registries.
    #[arg(long, env = "REGCRED_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "REGCRED_METRICS_ADDR")]
    pub metrics_addr: std::net::SocketAddr,

    /// Only the replica holding the Lease writes; the others wait. A replica
    /// that loses the Lease exits at once (and is restarted as a standby).
    #[arg(long, default_value_t = false, env = "REGCRED_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease. Default: the credentials namespace.
    #[arg(long, env = "REGCRED_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "regcred")]
    pub lease_name: String,

    /// Lease duration: how long a dead leader blocks a standby (e.g. 15s).
    #[arg(long, default_value = "15s")]
    pub lease_duration: humantime::Duration,

    /// How long to wait for the RegistryCredential CRD to be installed before giving up (e.g. 5m; 0s = forever).
    #[arg(long, default_value = "0s")]
    pub crd_wait_timeout: humantime::Duration,

    /// Follow the kubelet's image-pull failures (Events), diagnose each and
    /// repair what is regcred's own (needs get on pods, list/watch on events).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "REGCRED_DIAGNOSE_PULLS")]
    pub diagnose_pulls: bool,

    /// Which registry hosts the pull diagnosis may contact (manifest HEADs,
    /// token realms). `covered` (default): only hosts some RegistryCredential
    /// covers, which an administrator chose; `all`: any host a failing pod's
    /// image names. Under `all`, anyone who may create a pod chooses hosts
    /// and ports regcred connects to from its network position, and reads
    /// back from the Events whether they answered: keep `covered` unless
    /// pods may only pull from hosts you trust. Hosts outside the setting are
    /// diagnosed from the kubelet's text alone. `regcred diagnose` always
    /// checks every host.
    #[arg(long, value_enum, default_value_t = crate::diagnosis::reach::RegistryChecks::Covered, env = "REGCRED_REGISTRY_CHECKS")]
    pub registry_checks: crate::diagnosis::reach::RegistryChecks,

    /// Namespaces regcred never writes into, whatever a RegistryCredential
    /// selects (comma-separated; e.g. kube-system). They are not even
    /// watched: no Secret is written or cleaned there, no ServiceAccount
    /// patched, no pod mutated. The chart passes `confinement.excludedNamespaces`,
    /// the namespaces its ValidatingAdmissionPolicy also denies regcred's
    /// writes in. The credentials namespace is never a target either.
    #[arg(long, value_delimiter = ',', env = "REGCRED_EXCLUDED_NAMESPACES")]
    pub excluded_namespaces: Vec<String>,

    /// Per-ServiceAccount exchanges (`identity: PerServiceAccount`) per
    /// second, per provider. Default: 50 for ECR (a quarter of ECR's
    /// documented 200/s GetAuthorizationToken quota, which other callers in
    /// the account share), 20 for Google, 10 for ACR. A provider's throttling answer (and its
    /// `Retry-After`) pauses that provider's exchanges besides.
    #[arg(long, env = "REGCRED_IDENTITY_EXCHANGE_RATE", value_parser = positive_rate)]
    pub identity_exchange_rate: Option<f64>,

    /// Serve the Pod admission webhook over HTTPS on this address (e.g.
    /// 0.0.0.0:9443, path /mutate-pods). Unset: no webhook.
    #[arg(long, env = "REGCRED_ADMISSION_ADDR")]
    pub admission_addr: Option<std::net::SocketAddr>,

    /// Who makes the webhook's serving certificate: `regcred` keeps a CA and
    /// certificate in --admission-cert-secret, rotates them and patches the
    /// caBundle of --admission-webhook-config; `external` (cert-manager)
    /// writes tls.crt/tls.key into that Secret and injects the caBundle.
    #[arg(long, value_enum, default_value_t = crate::admission::certs::Source::Regcred)]
    pub admission_certs: crate::admission::certs::Source,

    /// Secret in regcred's own namespace (POD_NAMESPACE) holding the webhook's certificate.
    #[arg(long, default_value = "regcred-webhook-tls")]
    pub admission_cert_secret: String,

    /// MutatingWebhookConfiguration whose caBundle regcred keeps (with --admission-certs=regcred).
    #[arg(long)]
    pub admission_webhook_config: Option<String>,

    /// DNS names and IP addresses on the serving certificate, comma-separated
    /// (the webhook Service's `<name>.<namespace>.svc`).
    #[arg(long, value_delimiter = ',')]
    pub admission_dns_names: Vec<String>,

    /// Lifetime of the serving certificate; renewed at two thirds of it.
    #[arg(long, default_value = "90days")]
    pub admission_cert_validity: humantime::Duration,

    /// Lifetime of the webhook's CA; a new one is added at two thirds of it.
    #[arg(long, default_value = "3650days")]
    pub admission_ca_validity: humantime::Duration,

    /// How long admission waits for a missing Secret to be created before it
    /// answers (the pod names the Secret either way). Keep it well under the
    /// webhook's timeoutSeconds.
    #[arg(long, default_value = "2s")]
    pub admission_write_timeout: humantime::Duration,
}

/// `regcred diagnose`, also installed as `kubectl-regcred` (`kubectl regcred diagnose`).
#[derive(clap::Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// Namespace of the pods. Default: the kubeconfig context's namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    /// Diagnose this pod only. Default: every pod of the namespace whose
    /// container waits in ErrImagePull, ImagePullBackOff, InvalidImageName
    /// or ErrImageNeverPull.
    pub pod: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// kubeconfig file; default: $KUBECONFIG, ~/.kube/config, then in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// PEM file of extra CA certificates trusted for the manifest checks at
    /// registries (a private registry's CA).
    #[arg(long, env = "REGCRED_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The `kubectl-regcred` plugin binary: `kubectl regcred diagnose ...`.
#[derive(Parser, Debug)]
#[command(name = "kubectl regcred", version, about = "regcred's kubectl plugin")]
pub struct KubectlCli {
    #[command(subcommand)]
    pub command: KubectlCommand,
}

#[derive(Subcommand, Debug)]
pub enum KubectlCommand {
    /// Say why pods cannot pull their images, with evidence (reads only).
    Diagnose(DiagnoseArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a positive number of exchanges per second, e.g. 20"
        )),
    }
}
