//! Which registry hosts the operator's pull diagnosis may contact.
//!
//! A failing pod's image names the host and port the diagnosis sends its
//! manifest HEAD to, and the registry's challenge names the token realm it
//! follows. Anyone who may create a pod would otherwise choose where
//! regcred connects from its own network position, and read back from the
//! Events whether the connection was refused, timed out or failed TLS: a
//! small port scanner inside the cluster. Under `covered` (the default) the
//! operator contacts only hosts some RegistryCredential covers, which an
//! administrator chose; the others are diagnosed from the kubelet's text
//! alone. The pull-auth health check contacts only the hosts of
//! `spec.registries`, covered by definition. `regcred diagnose` runs with
//! its user's own network position and checks every host.

use super::Evidence;

/// `--registry-checks`: which hosts the operator's diagnosis may contact.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegistryChecks {
    /// Only hosts some RegistryCredential covers (its `spec.registries`).
    #[default]
    Covered,
    /// Any host a failing pod's image names.
    All,
}

impl RegistryChecks {
    /// Whether a check may contact a host; `covered`: some RegistryCredential covers it.
    pub fn may_contact(self, covered: bool) -> bool {
        match self {
            Self::Covered => covered,
            Self::All => true,
        }
    }
}

/// The evidence of a registry check that was not run because of the setting.
pub fn not_contacted(host: &str) -> Evidence {
    Evidence::new(
        format!("registry check at {host}"),
        format!(
            "not run: no RegistryCredential covers {host}, and the operator contacts only covered hosts \
             (--registry-checks=covered), so this rests on the kubelet's text alone; \
             run regcred diagnose to check the registry from where you are"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrow_setting_contacts_covered_hosts_only_and_is_the_default() {
        assert_eq!(RegistryChecks::default(), RegistryChecks::Covered);
        assert!(RegistryChecks::Covered.may_contact(true));
        assert!(!RegistryChecks::Covered.may_contact(false));
        assert!(RegistryChecks::All.may_contact(false));
    }
}
