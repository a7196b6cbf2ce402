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

    /// A short label for metrics and logs: the failed step's own variant
    /// where there is one (an apply or cleanup step's error arrives wrapped
    /// by the finalizer helper).
    pub fn label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube { .. } => "Kube",
            Self::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "Finalizer",
                F::UnnamedObject | F::InvalidFinalizer => "Finalizer",
            },
            Self::Clean(errors) => errors.first().map_or("Clean", |e| e.label()),
            Self::StatusTimeout(_) => "StatusTimeout",
            Self::CrdMissing(_) => "CrdMissing",
            Self::Config(_) => "Config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::apply;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn a_step_error_is_labelled_by_its_own_variant_through_the_finalizer() {
        let denied = apply::Error::PatchServiceAccount {
            namespace: "a".into(),
            name: "default".into(),
            secret: "pull".into(),
            verb: "adding",
            cause: "denied".into(),
        };
        let clean = Error::Clean(vec![denied]);
        assert_eq!(clean.label(), "PatchServiceAccount");
        let wrapped = Error::Finalizer(Box::new(F::CleanupFailed(clean)));
        assert_eq!(wrapped.label(), "PatchServiceAccount");
        let status = Error::Finalizer(Box::new(F::ApplyFailed(Error::StatusTimeout("x".into()))));
        assert_eq!(status.label(), "StatusTimeout");
        assert_eq!(Error::Finalizer(Box::new(F::UnnamedObject)).label(), "Finalizer");
    }
}
