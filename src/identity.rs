//! Per-ServiceAccount identity (`identity: PerServiceAccount`): which cloud
//! identity a ServiceAccount names, with the annotation keys of the kubelet
//! credential-provider plugins (so one annotation serves both), the audience
//! of the token regcred requests for it, and the name of its own Secret.
//! Pure: the exchange is in `providers::workload`, the reconcile
//! step in `reconcile::workload`.

use crate::api::{Identity, ProviderKind, ProviderSpec, ServiceAccountToken};

/// The IAM role an AWS ServiceAccount pulls with (cloud-provider-aws's ECR credential provider).
pub const AWS_ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
/// The Google service account a ServiceAccount pulls as (GKE Workload Identity).
pub const GOOGLE_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// The Entra application a ServiceAccount pulls as (Azure Workload Identity).
pub const AZURE_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// The Entra tenant of that application; default: the spec's `tenantId`.
pub const AZURE_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// Every annotation key this module reads, for the ServiceAccount cache.
pub const ANNOTATIONS: [&str; 4] = [
    AWS_ROLE_ANNOTATION,
    GOOGLE_SERVICE_ACCOUNT_ANNOTATION,
    AZURE_CLIENT_ID_ANNOTATION,
    AZURE_TENANT_ID_ANNOTATION,
];

/// Lifetime of the ServiceAccount tokens regcred requests (the API server's minimum).
pub const DEFAULT_TOKEN_SECONDS: i64 = 600;
pub const AWS_AUDIENCE: &str = "sts.amazonaws.com";
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The cloud identity one ServiceAccount names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadIdentity {
    Aws { role_arn: String },
    Google { service_account: String },
    Azure { client_id: String, tenant_id: String },
}

impl WorkloadIdentity {
    /// What a user reads in status and Events: `role arn:aws:iam::…`.
    pub fn describe(&self) -> String {
        match self {
            Self::Aws { role_arn } => format!("role {role_arn}"),
            Self::Google { service_account } => format!("Google service account {service_account}"),
            Self::Azure { client_id, tenant_id } => format!("Entra app {client_id} in tenant {tenant_id}"),
        }
    }

    /// The identity alone, as written on the Secret and kept in status: the
    /// role ARN, the Google service account, or `<tenant>/<client>`.
    pub fn name(&self) -> String {
        match self {
            Self::Aws { role_arn } => role_arn.clone(),
            Self::Google { service_account } => service_account.clone(),
            Self::Azure { client_id, tenant_id } => format!("{tenant_id}/{client_id}"),
        }
    }
}

/// The settings of `PerServiceAccount` mode, when `provider` is in it.
#[derive(Clone, Debug, PartialEq)]
pub struct PerServiceAccount {
    pub kind: ProviderKind,
    pub audience: String,
    pub expiration_seconds: i64,
    /// The spec's tenant, for Azure ServiceAccounts without the tenant annotation.
    default_tenant: Option<String>,
}

impl PerServiceAccount {
    /// `Some` when `provider` mints per ServiceAccount.
    pub fn of(provider: ProviderSpec<'_>) -> Option<Self> {
        let (identity, token, audience, tenant) = match provider {
            ProviderSpec::Ecr(p) => (p.identity, &p.service_account_token, AWS_AUDIENCE.to_string(), None),
            ProviderSpec::Gcr(p) => (
                p.identity,
                &p.service_account_token,
                format!("https:{}", p.workload_identity_provider.as_deref().unwrap_or_default()),
                None,
            ),
            ProviderSpec::Acr(p) => (
                p.identity,
                &p.service_account_token,
                AZURE_AUDIENCE.to_string(),
                Some(p.tenant_id.clone()),
            ),
            ProviderSpec::Static(_) => return None,
        };
        if identity != Identity::PerServiceAccount {
            return None;
        }
        let token = token.clone().unwrap_or_default();
        let ServiceAccountToken {
            audience: wanted,
            expiration_seconds,
        } = token;
        Some(Self {
            kind: provider.kind(),
            audience: wanted.unwrap_or(audience),
            expiration_seconds: expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
            default_tenant: tenant,
        })
    }

    /// The annotation a ServiceAccount needs in this mode.
    pub fn annotation(&self) -> &'static str {
        annotation(self.kind)
    }

    /// The identity a ServiceAccount's annotations name; `None` without the
    /// annotation (or with an empty value).
    pub fn identity<'a>(&self, annotation: impl Fn(&str) -> Option<&'a str>) -> Option<WorkloadIdentity> {
        let value = |key| annotation(key).map(str::trim).filter(|v| !v.is_empty());
        match self.kind {
            ProviderKind::Ecr => value(AWS_ROLE_ANNOTATION).map(|r| WorkloadIdentity::Aws { role_arn: r.into() }),
            ProviderKind::Gcr => value(GOOGLE_SERVICE_ACCOUNT_ANNOTATION).map(|s| WorkloadIdentity::Google {
                service_account: s.into(),
            }),
            ProviderKind::Acr => {
                let client_id = value(AZURE_CLIENT_ID_ANNOTATION)?;
                let tenant_id = value(AZURE_TENANT_ID_ANNOTATION)
                    .map(str::to_string)
                    .or_else(|| self.default_tenant.clone())?;
                Some(WorkloadIdentity::Azure {
                    client_id: client_id.into(),
                    tenant_id,
                })
            }
            ProviderKind::Static => None,
        }
    }
}

/// The annotation that names a ServiceAccount's identity for `kind`.
pub fn annotation(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ecr => AWS_ROLE_ANNOTATION,
        ProviderKind::Gcr => GOOGLE_SERVICE_ACCOUNT_ANNOTATION,
        ProviderKind::Acr | ProviderKind::Static => AZURE_CLIENT_ID_ANNOTATION,
    }
}

/// The Secret of ServiceAccount `sa` in `PerServiceAccount` mode:
/// `<secretName>-<sa>`, or, past the 253 characters a Secret name may have,
/// a prefix of it and a hash of the whole (still unique and deterministic).
pub fn secret_name(base: &str, sa: &str) -> String {
    const MAX: usize = 253;
    let full = format!("{base}-{sa}");
    if full.len() <= MAX {
        return full;
    }
    let hash = short_digest(&full);
    let keep = MAX - hash.len() - 1;
    let prefix = full[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// 12 hex digits of SHA-256: short, stable across releases.
fn short_digest(text: &str) -> String {
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    sum.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AcrProvider, EcrProvider, GcrProvider};

    #[test]
    fn shared_mode_is_not_per_service_account() {
        let ecr = EcrProvider::default();
        assert_eq!(PerServiceAccount::of(ProviderSpec::Ecr(&ecr)), None);
    }

    #[test]
    fn each_provider_reads_its_own_annotation_and_audience() {
        let ecr = EcrProvider {
            identity: Identity::PerServiceAccount,
            ..Default::default()
        };
        let mode = PerServiceAccount::of(ProviderSpec::Ecr(&ecr)).unwrap();
        assert_eq!(
            (mode.audience.as_str(), mode.expiration_seconds),
            ("sts.amazonaws.com", 600)
        );
        let role = "arn:aws:iam::111111111111:role/team-a";
        let found = mode.identity(|k| (k == AWS_ROLE_ANNOTATION).then_some(role));
        assert_eq!(found, Some(WorkloadIdentity::Aws { role_arn: role.into() }));
        assert_eq!(mode.identity(|_| None), None);
        assert_eq!(mode.identity(|_| Some("  ")), None, "an empty annotation names nothing");

        let provider = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k";
        let gcr = GcrProvider {
            identity: Identity::PerServiceAccount,
            workload_identity_provider: Some(provider.into()),
            ..Default::default()
        };
        let mode = PerServiceAccount::of(ProviderSpec::Gcr(&gcr)).unwrap();
        assert_eq!(mode.audience, format!("https:{provider}"));
        assert_eq!(mode.annotation(), "iam.gke.io/gcp-service-account");

        let acr = AcrProvider {
            identity: Identity::PerServiceAccount,
            tenant_id: "tenant-of-spec".into(),
            ..Default::default()
        };
        let mode = PerServiceAccount::of(ProviderSpec::Acr(&acr)).unwrap();
        assert_eq!(mode.audience, "api://AzureADTokenExchange");
        let only_client = mode.identity(|k| (k == AZURE_CLIENT_ID_ANNOTATION).then_some("c1"));
        assert_eq!(
            only_client,
            Some(WorkloadIdentity::Azure {
                client_id: "c1".into(),
                tenant_id: "tenant-of-spec".into()
            })
        );
        let both = mode.identity(|k| match k {
            AZURE_CLIENT_ID_ANNOTATION => Some("c1"),
            AZURE_TENANT_ID_ANNOTATION => Some("t2"),
            _ => None,
        });
        assert_eq!(both.unwrap().name(), "t2/c1");
    }

    #[test]
    fn secret_names_are_deterministic_and_valid() {
        assert_eq!(secret_name("ecr", "builder"), "ecr-builder");
        let long_sa = "a".repeat(250);
        let one = secret_name("ecr", &long_sa);
        assert_eq!(one.len(), 253);
        assert_eq!(one, secret_name("ecr", &long_sa));
        assert_ne!(one, secret_name("ecr", &format!("{}b", "a".repeat(249))));
    }
}
