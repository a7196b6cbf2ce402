//! `RegistryCredential.spec`: what the admin declares.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema, core::Duration};
use serde::{Deserialize, Serialize};

use super::grammar;
use super::status::RegistryCredentialStatus;

/// A RegistryCredential mints image-pull credentials for one registry provider
/// and keeps a `kubernetes.io/dockerconfigjson` Secret with them in every
/// targeted namespace, referenced from the selected ServiceAccounts, renewing
/// it before it expires.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Every `printcolumn(...)` repeats keys such as `type_ = "string"`, which
// clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "regcred.dev",
    version = "v1alpha1",
    kind = "RegistryCredential",
    plural = "registrycredentials",
    shortname = "regcred",
    category = "regcred",
    status = "RegistryCredentialStatus",
    derive = "PartialEq",
    validation = grammar::name_is_a_label_value(),
    doc = "RegistryCredential keeps image-pull credentials for one registry provider fresh in every targeted namespace.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.summary"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(name = "Pull-Auth", type_ = "string", json_path = ".status.pullAuth.result"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Renewal",
        type_ = "string",
        json_path = ".status.renewalTime",
        priority = "1"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredentialSpec {
    /// Where the credential comes from. Exactly one of ecr, gcr, acr or static.
    pub provider: Provider,

    /// Which namespaces receive the Secret and which ServiceAccounts reference it.
    #[serde(default)]
    pub target: Target,

    /// How long before the credential expires a new one is minted, e.g. `1h`.
    /// At least `1m`. Default: a third of the credential's actual lifetime
    /// (4h for a 12h ECR token). Ignored by the static provider, whose
    /// credentials do not expire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "checked_duration"
    )]
    #[schemars(length(max = 64))]
    #[x_kube(validation = grammar::renew_before())]
    pub renew_before: Option<Duration>,

    /// How regcred proves that the registry accepts the credential.
    #[serde(default)]
    pub health_check: HealthCheck,
}

/// The source of the credential. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = grammar::exactly_one_provider())]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Amazon Elastic Container Registry: a 12 h token from `ecr:GetAuthorizationToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr: Option<EcrProvider>,
    /// Google Container Registry and Artifact Registry: an OAuth2 access token (about 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcr: Option<GcrProvider>,
    /// Azure Container Registry: an ACR refresh token exchanged for an Entra ID token (about 3 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<AcrProvider>,
    /// Long-lived credentials copied from a Secret, e.g. a Docker Hub access token.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_: Option<StaticProvider>,
}

/// A provider, borrowed from the spec, once validation has made sure exactly one is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProviderSpec<'a> {
    Ecr(&'a EcrProvider),
    Gcr(&'a GcrProvider),
    Acr(&'a AcrProvider),
    Static(&'a StaticProvider),
}

impl Provider {
    /// The one configured provider, or `None` when zero or several are set
    /// (the API server rejects both; this guards objects written before the
    /// CRD's validation existed).
    pub fn selected(&self) -> Option<ProviderSpec<'_>> {
        match (&self.ecr, &self.gcr, &self.acr, &self.static_) {
            (Some(p), None, None, None) => Some(ProviderSpec::Ecr(p)),
            (None, Some(p), None, None) => Some(ProviderSpec::Gcr(p)),
            (None, None, Some(p), None) => Some(ProviderSpec::Acr(p)),
            (None, None, None, Some(p)) => Some(ProviderSpec::Static(p)),
            _ => None,
        }
    }
}

/// Amazon ECR.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = grammar::per_service_account_without("auth", "the IAM role each ServiceAccount's eks.amazonaws.com/ecr-role-arn annotation names"))]
#[x_kube(validation = grammar::per_service_account_without("assumeRole", "the IAM role each ServiceAccount's eks.amazonaws.com/ecr-role-arn annotation names"))]
#[x_kube(validation = grammar::token_only_per_service_account())]
#[serde(rename_all = "camelCase")]
pub struct EcrProvider {
    /// AWS region of the registry, e.g. `us-east-1`.
    #[schemars(length(max = 32))]
    #[x_kube(validation = grammar::aws_region())]
    pub region: String,

    /// 12-digit account ids whose registries the token is for.
    /// Default: the registry of the account the credentials belong to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 12)))]
    #[x_kube(validation = grammar::aws_account_ids())]
    pub registry_ids: Vec<String>,

    /// Static AWS keys. Omit to use the AWS SDK default chain: IRSA web identity,
    /// EKS Pod Identity, environment variables or the instance profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EcrAuth>,

    /// Assume this IAM role (e.g. in another account) before calling ECR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRole>,

    /// Override the ECR API endpoint, e.g. a VPC or FIPS endpoint. STS keeps
    /// its regional endpoint (set `AWS_ENDPOINT_URL_STS` on the operator to change it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::https_or_http_url())]
    pub endpoint_url: Option<String>,

    /// `Shared` (the default): one credential from the operator's own AWS
    /// identity for every namespace. `PerServiceAccount`: a credential per
    /// selected ServiceAccount, from the IAM role its
    /// `eks.amazonaws.com/ecr-role-arn` annotation names
    /// (`sts:AssumeRoleWithWebIdentity` with that ServiceAccount's own token),
    /// in a Secret only that ServiceAccount references. `auth` and
    /// `assumeRole` do not apply then.
    #[serde(default, skip_serializing_if = "Identity::is_shared")]
    pub identity: Identity,

    /// The ServiceAccount tokens regcred requests in `PerServiceAccount` mode.
    /// Default audience: `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountToken>,

    /// Override the STS endpoint of `PerServiceAccount` mode, e.g. a VPC
    /// endpoint. Default: the regional STS endpoint (or `AWS_ENDPOINT_URL_STS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::https_or_http_url())]
    pub sts_endpoint_url: Option<String>,
}

/// Whose identity a credential is minted with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum Identity {
    /// The operator's own: one credential for every targeted namespace.
    #[default]
    Shared,
    /// Each selected ServiceAccount's own, named by its annotation: one
    /// credential and one Secret per ServiceAccount.
    PerServiceAccount,
}

impl Identity {
    pub fn is_shared(&self) -> bool {
        *self == Identity::Shared
    }
}

/// The ServiceAccount tokens regcred requests (TokenRequest API) to exchange
/// for each ServiceAccount's credential. They are never stored or logged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountToken {
    /// The token's audience, which the cloud's trust configuration must
    /// accept. Default: `sts.amazonaws.com` (ECR), `https:` followed by
    /// `workloadIdentityProvider` (Google), `api://AzureADTokenExchange` (ACR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub audience: Option<String>,
    /// The token's lifetime, 600 to 3600 seconds. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 600, max = 3600))]
    pub expiration_seconds: Option<i64>,
}

/// AWS credentials read from a Secret in the operator's credentials namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcrAuth {
    /// The Secret holding the access key.
    pub secret_ref: AwsSecretRef,
}

/// A Secret with AWS access keys, in the operator's credentials namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretRef {
    /// Name of the Secret in the credentials namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_name())]
    pub name: String,
    /// Key holding the access key id.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub access_key_id_key: String,
    /// Key holding the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub secret_access_key_key: String,
    /// Key holding a session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub session_token_key: Option<String>,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// An IAM role to assume before calling ECR.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRole {
    /// ARN of the role, e.g. `arn:aws:iam::210987654321:role/ecr-pull`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::aws_role_arn())]
    pub role_arn: String,
    /// External id the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1224))]
    #[x_kube(validation = grammar::aws_external_id())]
    pub external_id: Option<String>,
}

/// Google Container Registry / Artifact Registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = grammar::per_service_account_without("auth", "the Google service account each ServiceAccount's iam.gke.io/gcp-service-account annotation names"))]
#[x_kube(validation = grammar::per_service_account_needs_provider())]
#[x_kube(validation = grammar::token_only_per_service_account())]
#[serde(rename_all = "camelCase")]
pub struct GcrProvider {
    /// Registry hosts the access token is written for, e.g. `us-docker.pkg.dev`, `gcr.io`.
    #[schemars(length(min = 1, max = 32), inner(length(max = 253)))]
    #[x_kube(validation = grammar::hosts())]
    pub registries: Vec<String>,

    /// A service-account key. Omit to use the metadata server (GKE Workload Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GcrAuth>,

    /// `Shared` (the default): one access token from the operator's own
    /// Google identity for every namespace. `PerServiceAccount`: an access
    /// token per selected ServiceAccount, for the Google service account its
    /// `iam.gke.io/gcp-service-account` annotation names (STS token exchange
    /// of that ServiceAccount's own token, then IAM `generateAccessToken`),
    /// in a Secret only that ServiceAccount references. Needs
    /// `workloadIdentityProvider`; `auth` does not apply.
    #[serde(default, skip_serializing_if = "Identity::is_shared")]
    pub identity: Identity,

    /// The workload identity pool provider that trusts this cluster's
    /// ServiceAccount tokens, e.g.
    /// `//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/my-pool/providers/my-cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = grammar::workload_identity_provider())]
    pub workload_identity_provider: Option<String>,

    /// The ServiceAccount tokens regcred requests in `PerServiceAccount` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountToken>,

    /// Override Google's STS endpoint (`https://sts.googleapis.com`), e.g. Private Service Connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::https_or_http_url())]
    pub sts_endpoint_url: Option<String>,

    /// Override the IAM Service Account Credentials endpoint (`https://iamcredentials.googleapis.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::https_or_http_url())]
    pub iam_credentials_endpoint_url: Option<String>,
}

/// How regcred authenticates to Google.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcrAuth {
    /// A JSON service-account key.
    pub service_account_key: ServiceAccountKey,
}

/// A JSON service-account key stored in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountKey {
    /// The Secret and key holding the key file.
    pub secret_ref: SecretKeyRef,
}

/// One key of a Secret in the operator's credentials namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret in the credentials namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_name())]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub key: String,
}

/// Azure Container Registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = grammar::acr_login_server())]
#[x_kube(validation = grammar::per_service_account_without("auth", "the app each ServiceAccount's azure.workload.identity/client-id annotation names"))]
#[x_kube(validation = grammar::token_only_per_service_account())]
#[serde(rename_all = "camelCase")]
pub struct AcrProvider {
    /// Registry host, e.g. `myregistry.azurecr.io`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::host())]
    pub registry: String,

    /// Microsoft Entra tenant id (UUID).
    #[schemars(length(max = 36))]
    #[x_kube(validation = grammar::uuid())]
    pub tenant_id: String,

    /// How regcred obtains its Entra ID token. Exactly one mode;
    /// omit for workload identity with the client id from the pod's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AcrAuth>,

    /// Allow a `registry` that is not an ACR login server (`*.azurecr.io`,
    /// `.azurecr.cn`, `.azurecr.us`), e.g. a pull-through proxy: regcred sends
    /// it an Entra ID token for the exchange. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom_login_server: bool,

    /// Entra ID authority, for sovereign clouds. Default `https://login.microsoftonline.com/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = grammar::https_url())]
    pub authority_host: Option<String>,

    /// `Shared` (the default): one refresh token from the operator's own
    /// Entra identity for every namespace. `PerServiceAccount`: a refresh
    /// token per selected ServiceAccount, for the app its
    /// `azure.workload.identity/client-id` annotation names (in the tenant of
    /// its `azure.workload.identity/tenant-id` annotation, else `tenantId`),
    /// from that ServiceAccount's own token, in a Secret only that
    /// ServiceAccount references. `auth` does not apply.
    #[serde(default, skip_serializing_if = "Identity::is_shared")]
    pub identity: Identity,

    /// The ServiceAccount tokens regcred requests in `PerServiceAccount` mode.
    /// Default audience: `api://AzureADTokenExchange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountToken>,
}

/// Entra ID authentication modes. Exactly one is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = grammar::exactly_one_acr_auth())]
#[serde(rename_all = "camelCase")]
pub struct AcrAuth {
    /// Azure Workload Identity (federated ServiceAccount token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<AzureIdentity>,
    /// The managed identity of the node or pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<AzureIdentity>,
    /// An app registration with a client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal: Option<ServicePrincipal>,
}

/// An Azure identity, optionally selected by client id.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureIdentity {
    /// Client id (UUID). Default: `AZURE_CLIENT_ID` of the operator's pod
    /// (workload identity) or the system-assigned identity (managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = grammar::uuid())]
    pub client_id: Option<String>,
}

/// A service principal with a client secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    /// Application (client) id (UUID).
    #[schemars(length(max = 36))]
    #[x_kube(validation = grammar::uuid())]
    pub client_id: String,
    /// The Secret and key holding the client secret.
    pub secret_ref: SecretKeyRef,
}

/// Long-lived credentials for any registry, e.g. a Docker Hub access token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StaticProvider {
    /// Registry host, e.g. `docker.io` (written as `https://index.docker.io/v1/`) or `ghcr.io`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::host())]
    pub registry: String,
    /// The Secret holding the credentials.
    pub secret_ref: StaticSecretRef,
}

/// A Secret in the credentials namespace holding registry credentials: either
/// a `kubernetes.io/dockerconfigjson` Secret (its entry for `registry` is used)
/// or a Secret with a username and a password key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StaticSecretRef {
    /// Name of the Secret in the credentials namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_name())]
    pub name: String,
    /// Key holding the username (ignored for dockerconfigjson Secrets).
    #[serde(default = "default_username_key")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub username_key: String,
    /// Key holding the password or access token (ignored for dockerconfigjson Secrets).
    #[serde(default = "default_password_key")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_key())]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// Where the Secret is written and who references it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Name of the managed Secret in every namespace. Default: the RegistryCredential's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = grammar::secret_name())]
    pub secret_name: Option<String>,

    /// Which namespaces receive the Secret. Default: every namespace.
    #[serde(default)]
    pub namespaces: NamespaceSelection,

    /// Which ServiceAccounts in those namespaces reference the Secret. Default: `default`.
    #[serde(default)]
    pub service_accounts: ServiceAccountSelection,

    /// What to do when a Secret of the same name exists that regcred did not create:
    /// `Fail` leaves it untouched and reports the namespace; `Adopt` takes it over.
    #[serde(default)]
    pub existing_secret_policy: ExistingSecretPolicy,

    /// Labels copied onto every managed Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = grammar::reserved_labels())]
    pub secret_labels: BTreeMap<String, String>,

    /// Annotations copied onto every managed Secret, e.g.
    /// `argocd.argoproj.io/compare-options: IgnoreExtraneous`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_annotations: BTreeMap<String, String>,

    /// When a pod owned by a controller (ReplicaSet, StatefulSet, DaemonSet,
    /// Job) cannot pull because it was admitted before its ServiceAccount
    /// referenced the Secret, delete it so its controller recreates it with
    /// the reference. A pod without a controller is never deleted. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate_pods_missing_link: bool,
}

/// Namespaces to write into: those matching `selector` or listed in `names`,
/// minus `exclude`. With neither `selector` nor `names`, every namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelection {
    /// Namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces by name (ORed with `selector`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 63)))]
    #[x_kube(validation = grammar::namespace_names())]
    pub names: Vec<String>,
    /// Namespaces never written into, whatever else matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 63)))]
    #[x_kube(validation = grammar::namespace_names())]
    pub exclude: Vec<String>,
}

/// ServiceAccounts whose `imagePullSecrets` get the managed Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelection {
    /// ServiceAccounts by name; `["*"]` means every ServiceAccount in the namespace.
    #[serde(default = "default_service_account_names")]
    #[schemars(length(max = 100), inner(length(max = 253)))]
    #[x_kube(validation = grammar::service_account_names())]
    #[x_kube(validation = grammar::wildcard_alone())]
    pub names: Vec<String>,
    /// ServiceAccounts whose labels match (ORed with `names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl Default for ServiceAccountSelection {
    fn default() -> Self {
        Self {
            names: default_service_account_names(),
            selector: None,
        }
    }
}

fn default_service_account_names() -> Vec<String> {
    vec!["default".into()]
}

/// What to do with a same-named Secret that regcred did not create.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum ExistingSecretPolicy {
    /// Leave it untouched and report the namespace as failed (`SecretExists`).
    #[default]
    Fail,
    /// Take it over (recreating it if its type is not dockerconfigjson).
    Adopt,
}

/// Registry pull-authentication checks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `Registry` proves the credential against the registry's `/v2/` endpoint
    /// after every mint and every `interval`; `Disabled` turns checks off.
    #[serde(default)]
    pub mode: HealthCheckMode,
    /// Also prove pull access to this repository, e.g. `team/app:1.2.3`
    /// (without the registry host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = grammar::image_reference())]
    pub image: Option<String>,
    /// Time between checks, e.g. `10m` (the default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "checked_duration"
    )]
    #[schemars(length(max = 64))]
    #[x_kube(validation = grammar::positive_duration())]
    pub interval: Option<Duration>,
}

/// Whether pull-auth checks run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum HealthCheckMode {
    /// Check against the registry.
    #[default]
    Registry,
    /// Do not check; `status.pullAuth.result` is `Disabled`.
    Disabled,
}

/// Longest duration regcred reads from a spec; beyond it, a typo.
const MAX_SPEC_DURATION_SECS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

/// The units of Go's `time.ParseDuration`, in seconds: the CRD's duration grammar.
pub const DURATION_UNITS: [(&str, f64); 7] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// A Go duration as the CRD admits it (`1h30m`, `90s`, `1.5h`), checked
/// before kube's parser sees it: that parser panics on a negative part or a
/// value too large for a `Duration`, and an object stored before the CRD's
/// rule existed must not crash the operator on every start.
fn checked_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let mut total = 0.0;
    let mut rest = text.as_str();
    if rest.is_empty() {
        return Err(D::Error::custom("an empty duration"));
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not a duration like 1h30m")))?;
        rest = &rest[number_len..];
        let (unit, secs) = DURATION_UNITS
            .into_iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(|| D::Error::custom(format!("{text:?} is not a duration like 1h30m")))?;
        rest = &rest[unit.len()..];
        total += number * secs;
    }
    if !total.is_finite() || total > MAX_SPEC_DURATION_SECS {
        return Err(D::Error::custom(format!("{text:?} is longer than 100 years")));
    }
    text.parse::<Duration>().map(Some).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(interval: &str) -> Result<HealthCheck, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "interval": interval }))
    }

    #[test]
    fn durations_kube_would_panic_on_are_errors() {
        // Found by the `spec` fuzz target: kube-core's parser panics on both.
        for bad in ["1h-301h30m", "99999999999999999999h", "-5m", "", "5", "1d", "1h30"] {
            assert!(health(bad).is_err(), "{bad:?} accepted");
        }
        for (good, secs) in [("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("10m", 600)] {
            let d = health(good).unwrap().interval.unwrap();
            assert_eq!(std::time::Duration::from(d).as_secs(), secs, "{good}");
        }
        let absent: HealthCheck = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(absent.interval, None);
    }
}
