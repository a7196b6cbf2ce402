//! The grammars the API server enforces on spec fields, as CEL rules with a
//! message a user can act on. Every string a rule inspects carries a
//! `maxLength` in its schema so the API server can bound the rule's cost.

use kube::core::{Message, Rule};

/// DNS-1123 label: namespace names.
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1123 subdomain: names of Secrets and ServiceAccounts.
const DNS1123_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A registry host as it appears in `.dockerconfigjson`: lowercase DNS name or
/// IPv4 address, optional port in 1..=65535.
const HOST: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$";
/// Azure Container Registry login servers: public cloud, Azure China, Azure US Government.
const ACR_HOST: &str = r"^[a-z0-9]+\\.azurecr\\.(io|cn|us)$";
/// Go's `time.ParseDuration` grammar (what `metav1.Duration` accepts).
const DURATION: &str = r"^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
const UUID: &str = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

fn matches(pattern: &str) -> String {
    format!("self.matches('{pattern}')")
}

pub(super) fn secret_name() -> Rule {
    Rule::new(matches(DNS1123_SUBDOMAIN))
        .message("must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), e.g. regcred-ecr")
}

pub(super) fn secret_key() -> Rule {
    Rule::new(matches(SECRET_KEY))
        .message("must be a Secret data key (letters, digits, '-', '_' and '.'), e.g. password")
}

/// Every entry of a list matches `pattern`; the message quotes the first
/// entry that does not, so the user sees which one to fix.
fn each(pattern: &str, problem: &str) -> Rule {
    Rule::new(format!("self.all(x, x.matches('{pattern}'))")).message(Message::Expression(format!(
        r#"'"' + self.filter(x, !x.matches('{pattern}'))[0] + '" {problem}'"#
    )))
}

pub(super) fn namespace_names() -> Rule {
    each(
        DNS1123_LABEL,
        "is not a namespace name: use lowercase letters, digits and -, e.g. staging",
    )
}

pub(super) fn service_account_names() -> Rule {
    Rule::new(format!("self.all(x, x == '*' || x.matches('{DNS1123_SUBDOMAIN}'))")).message(Message::Expression(
        format!(
            r#"'"' + self.filter(x, x != '*' && !x.matches('{DNS1123_SUBDOMAIN}'))[0] + '" is not a ServiceAccount name: use lowercase letters, digits, - and ., or "*" alone for every ServiceAccount'"#
        ),
    ))
}

pub(super) fn wildcard_alone() -> Rule {
    Rule::new("!('*' in self) || self.size() == 1")
        .message("\"*\" selects every ServiceAccount and must be the only entry")
}

pub(super) fn host() -> Rule {
    Rule::new(matches(HOST)).message(
        "must be a registry host without scheme or path: lowercase, with an optional port, e.g. docker.io, myregistry.azurecr.io or 127.0.0.1:5000",
    )
}

pub(super) fn hosts() -> Rule {
    each(
        HOST,
        "is not a registry host: use the lowercase host without scheme or path, with an optional port, e.g. us-docker.pkg.dev",
    )
}

pub(super) fn aws_region() -> Rule {
    Rule::new(matches(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")).message("must be an AWS region code, e.g. us-east-1")
}

pub(super) fn aws_account_ids() -> Rule {
    each("^[0-9]{12}$", "is not a 12-digit AWS account id, e.g. 123456789012")
}

pub(super) fn aws_role_arn() -> Rule {
    Rule::new(matches(
        r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
    ))
    .message("must be an IAM role ARN, e.g. arn:aws:iam::210987654321:role/ecr-pull")
}

pub(super) fn aws_external_id() -> Rule {
    // RE2 caps repetition counts at 1000, so the length is checked outside the regex.
    Rule::new(r"self.size() >= 2 && self.matches('^[A-Za-z0-9+=,.@:/_-]+$')")
        .message("must be 2 to 1224 characters of letters, digits and +=,.@:/-_")
}

pub(super) fn https_or_http_url() -> Rule {
    Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''")
        .message("must be an absolute http(s) URL, e.g. https://api.ecr.us-east-1.amazonaws.com")
}

pub(super) fn https_url() -> Rule {
    Rule::new("isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''")
        .message("must be an absolute https URL, e.g. https://login.microsoftonline.com/")
}

pub(super) fn uuid() -> Rule {
    Rule::new(matches(UUID)).message("must be a UUID, e.g. 00000000-0000-0000-0000-000000000000")
}

pub(super) fn positive_duration() -> Rule {
    Rule::new(format!("self.matches('{DURATION}') && duration(self) > duration('0s')"))
        .message("must be a positive duration written with h, m and s (days are not supported), e.g. 30s, 10m or 1h30m")
}

pub(super) fn renew_before() -> Rule {
    Rule::new(format!(
        "self.matches('{DURATION}') && duration(self) >= duration('1m')"
    ))
    .message(
        "must be a duration of at least 1m written with h, m and s (days are not supported), e.g. 30m, 2h or 1h30m",
    )
}

pub(super) fn image_reference() -> Rule {
    Rule::new(matches(
        r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$",
    ))
    .message("must be a repository path with an optional tag or digest and without the registry host, e.g. team/app:1.2.3")
}

pub(super) fn reserved_labels() -> Rule {
    Rule::new("!('app.kubernetes.io/managed-by' in self) && !('regcred.dev/credential' in self)")
        .message("must not set app.kubernetes.io/managed-by or regcred.dev/credential; regcred owns those labels")
}

/// The name is the `regcred.dev/credential` label value on every managed Secret.
pub(super) fn name_is_a_label_value() -> Rule {
    Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters: it is written as a label value on every managed Secret")
}

/// An Entra ID token goes only to an ACR login server, unless the admin says otherwise.
pub(super) fn acr_login_server() -> Rule {
    Rule::new(format!(
        "self.registry.matches('{ACR_HOST}') || (has(self.customLoginServer) && self.customLoginServer)"
    ))
    .message(
        "registry must be an ACR login server (<name>.azurecr.io, .azurecr.cn or .azurecr.us): regcred sends it an \
         Entra ID token. Set customLoginServer: true only for a host you trust with that token",
    )
}

pub(super) fn exactly_one_provider() -> Rule {
    Rule::new("[has(self.ecr), has(self.gcr), has(self.acr), has(self.static)].filter(x, x).size() == 1")
        .message("exactly one of ecr, gcr, acr or static must be set")
}

pub(super) fn exactly_one_acr_auth() -> Rule {
    Rule::new(
        "[has(self.workloadIdentity), has(self.managedIdentity), has(self.servicePrincipal)].filter(x, x).size() == 1",
    )
    .message("exactly one of workloadIdentity, managedIdentity or servicePrincipal must be set (omit auth for workload identity)")
}

/// In `PerServiceAccount` mode the identity comes from each ServiceAccount:
/// the operator's own credentials (`field`) would silently not be used.
pub(super) fn per_service_account_without(field: &str, instead: &str) -> Rule {
    Rule::new(format!(
        "!has(self.identity) || self.identity != 'PerServiceAccount' || !has(self.{field})"
    ))
    .message(Message::Message(format!(
        "{field} does not apply with identity PerServiceAccount, which mints with {instead}: remove {field}"
    )))
}

pub(super) fn per_service_account_needs_provider() -> Rule {
    Rule::new("!has(self.identity) || self.identity != 'PerServiceAccount' || has(self.workloadIdentityProvider)")
        .message(
            "identity PerServiceAccount needs workloadIdentityProvider, the pool provider that trusts this cluster's \
             ServiceAccount tokens, e.g. //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/my-pool/providers/my-cluster",
        )
}

pub(super) fn token_only_per_service_account() -> Rule {
    Rule::new("!has(self.serviceAccountToken) || (has(self.identity) && self.identity == 'PerServiceAccount')")
        .message("serviceAccountToken applies only with identity PerServiceAccount")
}

pub(super) fn workload_identity_provider() -> Rule {
    Rule::new(matches(
        r"^//iam\\.googleapis\\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+$",
    ))
    .message(
        "must be a workload identity pool provider, e.g. \
         //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/my-pool/providers/my-cluster",
    )
}
