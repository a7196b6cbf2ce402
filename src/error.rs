//! The operator's error type. Variant names double as metric labels.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup incomplete in {} namespaces; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Clean(Vec<crate::reconcile::apply::Error>),
    #[error("writing status of RegistryCredential {0} timed out")]
    StatusTimeout(String),
    #[error("the RegistryCredential CRD is not installed: {0}")]
    CrdMissing(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "Kube",
            Self::Finalizer(_) => "Finalizer",
            Self::Clean(_) => "Clean",
            Self::StatusTimeout(_) => "StatusTimeout",
            Self::CrdMissing(_) => "CrdMissing",
            Self::Config(_) => "Config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
