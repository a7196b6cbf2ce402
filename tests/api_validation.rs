//! What the API server itself rejects, and with which field path and message:
//! a user running `kubectl apply` sees these before regcred ever runs. Objects
//! are sent untyped, so the API server (not serde) is what says no. A second
//! table of edge cases that must be accepted keeps the rules from being
//! stricter than the contract.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use regcred::api::RegistryCredential;
use regcred_testenv::ControlPlane;
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5a2b7c1e-3f4d-4e8a-9b0c-1d2e3f4a5b6c";

fn ecr() -> Value {
    json!({ "provider": { "ecr": { "region": "us-east-1" } } })
}

fn gcr() -> Value {
    json!({ "provider": { "gcr": { "registries": ["us-docker.pkg.dev"] } } })
}

fn acr() -> Value {
    json!({ "provider": { "acr": { "registry": "myregistry.azurecr.io", "tenantId": TENANT } } })
}

fn static_() -> Value {
    json!({ "provider": { "static": { "registry": "docker.io", "secretRef": { "name": "dockerhub" } } } })
}

/// `spec` with the value at a `/`-separated path replaced (objects on the way are created).
fn set(mut spec: Value, path: &str, value: Value) -> Value {
    let mut at = &mut spec;
    let mut keys = path.trim_start_matches('/').split('/').peekable();
    while let Some(key) = keys.next() {
        let object = at
            .as_object_mut()
            .unwrap_or_else(|| panic!("{path}: {key} is not inside an object"));
        if keys.peek().is_none() {
            object.insert(key.to_owned(), value);
            return spec;
        }
        at = object.entry(key).or_insert_with(|| json!({}));
    }
    unreachable!("empty path")
}

/// `spec` without the field at `path`.
fn unset(mut spec: Value, path: &str) -> Value {
    let (parent, key) = path.rsplit_once('/').expect("a path with a parent");
    spec.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"))
        .remove(key);
    spec
}

struct Invalid {
    what: &'static str,
    spec: Value,
    field: &'static str,
    message: &'static str,
}

fn invalid(what: &'static str, spec: Value, field: &'static str, message: &'static str) -> Invalid {
    Invalid {
        what,
        spec,
        field,
        message,
    }
}

fn invalid_cases() -> Vec<Invalid> {
    vec![
        // Providers.
        invalid(
            "no provider",
            json!({ "provider": {} }),
            "spec.provider",
            "exactly one of ecr, gcr, acr or static",
        ),
        invalid("provider omitted", json!({}), "spec.provider", "Required value"),
        invalid(
            "two providers",
            set(ecr(), "/provider/gcr", json!({ "registries": ["gcr.io"] })),
            "spec.provider",
            "exactly one of ecr, gcr, acr or static",
        ),
        invalid(
            "two ACR auth modes",
            set(
                acr(),
                "/provider/acr/auth",
                json!({ "workloadIdentity": {}, "managedIdentity": {} }),
            ),
            "spec.provider.acr.auth",
            "exactly one of workloadIdentity, managedIdentity or servicePrincipal",
        ),
        invalid(
            "empty ACR auth",
            set(acr(), "/provider/acr/auth", json!({})),
            "spec.provider.acr.auth",
            "omit auth for workload identity",
        ),
        // ECR.
        invalid(
            "ECR without region",
            unset(ecr(), "/provider/ecr/region"),
            "spec.provider.ecr.region",
            "Required value",
        ),
        invalid(
            "upper-case region",
            set(ecr(), "/provider/ecr/region", json!("US-EAST-1")),
            "spec.provider.ecr.region",
            "must be an AWS region code, e.g. us-east-1",
        ),
        invalid(
            "availability zone instead of region",
            set(ecr(), "/provider/ecr/region", json!("us-east-1a")),
            "spec.provider.ecr.region",
            "must be an AWS region code",
        ),
        invalid(
            "short account id",
            set(ecr(), "/provider/ecr/registryIds", json!(["123456789012", "12345"])),
            "spec.provider.ecr.registryIds",
            r#""12345" is not a 12-digit AWS account id"#,
        ),
        invalid(
            "IAM user instead of role",
            set(
                ecr(),
                "/provider/ecr/assumeRole/roleArn",
                json!("arn:aws:iam::210987654321:user/ci"),
            ),
            "spec.provider.ecr.assumeRole.roleArn",
            "must be an IAM role ARN, e.g. arn:aws:iam::210987654321:role/ecr-pull",
        ),
        invalid(
            "role name instead of ARN",
            set(ecr(), "/provider/ecr/assumeRole/roleArn", json!("ecr-pull")),
            "spec.provider.ecr.assumeRole.roleArn",
            "must be an IAM role ARN",
        ),
        invalid(
            "external id with a space",
            set(
                set(
                    ecr(),
                    "/provider/ecr/assumeRole/roleArn",
                    json!("arn:aws:iam::210987654321:role/ecr-pull"),
                ),
                "/provider/ecr/assumeRole/externalId",
                json!("my external id"),
            ),
            "spec.provider.ecr.assumeRole.externalId",
            "2 to 1224 characters",
        ),
        invalid(
            "ftp endpoint",
            set(ecr(), "/provider/ecr/endpointUrl", json!("ftp://ecr.example.com")),
            "spec.provider.ecr.endpointUrl",
            "must be an absolute http(s) URL",
        ),
        invalid(
            "endpoint without scheme",
            set(
                ecr(),
                "/provider/ecr/endpointUrl",
                json!("api.ecr.us-east-1.amazonaws.com"),
            ),
            "spec.provider.ecr.endpointUrl",
            "must be an absolute http(s) URL",
        ),
        invalid(
            "AWS keys Secret with upper-case name",
            set(ecr(), "/provider/ecr/auth/secretRef", json!({ "name": "AWS-Creds" })),
            "spec.provider.ecr.auth.secretRef.name",
            "must be a DNS-1123 subdomain",
        ),
        invalid(
            "AWS key name with a slash",
            set(
                ecr(),
                "/provider/ecr/auth/secretRef",
                json!({ "name": "aws", "accessKeyIdKey": "aws/key" }),
            ),
            "spec.provider.ecr.auth.secretRef.accessKeyIdKey",
            "must be a Secret data key",
        ),
        // GCR.
        invalid(
            "no GCR registries",
            set(gcr(), "/provider/gcr/registries", json!([])),
            "spec.provider.gcr.registries",
            "should have at least 1 items",
        ),
        invalid(
            "GCR registry as URL",
            set(gcr(), "/provider/gcr/registries", json!(["https://gcr.io"])),
            "spec.provider.gcr.registries",
            r#""https://gcr.io" is not a registry host: use the lowercase host without scheme or path"#,
        ),
        invalid(
            "upper-case GCR registry",
            set(
                gcr(),
                "/provider/gcr/registries",
                json!(["gcr.io", "US-Docker.pkg.dev"]),
            ),
            "spec.provider.gcr.registries",
            r#""US-Docker.pkg.dev" is not a registry host"#,
        ),
        invalid(
            "GCR registry with a space",
            set(gcr(), "/provider/gcr/registries", json!(["gcr .io"])),
            "spec.provider.gcr.registries",
            r#""gcr .io" is not a registry host"#,
        ),
        invalid(
            "service-account key Secret with underscore",
            set(
                gcr(),
                "/provider/gcr/auth/serviceAccountKey/secretRef",
                json!({ "name": "gcp_sa", "key": "key.json" }),
            ),
            "spec.provider.gcr.auth.serviceAccountKey.secretRef.name",
            "must be a DNS-1123 subdomain",
        ),
        invalid(
            "service-account key with a space",
            set(
                gcr(),
                "/provider/gcr/auth/serviceAccountKey/secretRef",
                json!({ "name": "gcp-sa", "key": "key json" }),
            ),
            "spec.provider.gcr.auth.serviceAccountKey.secretRef.key",
            "must be a Secret data key",
        ),
        invalid(
            "service-account key without key",
            set(
                gcr(),
                "/provider/gcr/auth/serviceAccountKey/secretRef",
                json!({ "name": "gcp-sa" }),
            ),
            "spec.provider.gcr.auth.serviceAccountKey.secretRef.key",
            "Required value",
        ),
        invalid(
            "registry port out of range",
            set(static_(), "/provider/static/registry", json!("docker.io:99999")),
            "spec.provider.static.registry",
            "must be a registry host without scheme or path",
        ),
        // identity: PerServiceAccount.
        invalid(
            "PerServiceAccount ECR with auth",
            set(
                set(ecr(), "/provider/ecr/identity", json!("PerServiceAccount")),
                "/provider/ecr/auth",
                json!({ "secretRef": { "name": "aws-creds" } }),
            ),
            "spec.provider.ecr",
            "auth does not apply with identity PerServiceAccount",
        ),
        invalid(
            "PerServiceAccount ECR with assumeRole",
            set(
                set(ecr(), "/provider/ecr/identity", json!("PerServiceAccount")),
                "/provider/ecr/assumeRole",
                json!({ "roleArn": "arn:aws:iam::210987654321:role/ecr-pull" }),
            ),
            "spec.provider.ecr",
            "assumeRole does not apply with identity PerServiceAccount",
        ),
        invalid(
            "PerServiceAccount GCR without workloadIdentityProvider",
            set(gcr(), "/provider/gcr/identity", json!("PerServiceAccount")),
            "spec.provider.gcr",
            "identity PerServiceAccount needs workloadIdentityProvider",
        ),
        invalid(
            "workloadIdentityProvider not a pool provider",
            set(
                set(gcr(), "/provider/gcr/identity", json!("PerServiceAccount")),
                "/provider/gcr/workloadIdentityProvider",
                json!("projects/123/locations/global/workloadIdentityPools/pool/providers/cluster"),
            ),
            "spec.provider.gcr.workloadIdentityProvider",
            "must be a workload identity pool provider",
        ),
        invalid(
            "PerServiceAccount ACR with auth",
            set(
                set(acr(), "/provider/acr/identity", json!("PerServiceAccount")),
                "/provider/acr/auth",
                json!({ "workloadIdentity": {} }),
            ),
            "spec.provider.acr",
            "auth does not apply with identity PerServiceAccount",
        ),
        invalid(
            "serviceAccountToken in Shared mode",
            set(
                ecr(),
                "/provider/ecr/serviceAccountToken",
                json!({ "expirationSeconds": 600 }),
            ),
            "spec.provider.ecr",
            "serviceAccountToken applies only with identity PerServiceAccount",
        ),
        invalid(
            "serviceAccountToken of 100 seconds",
            set(
                set(ecr(), "/provider/ecr/identity", json!("PerServiceAccount")),
                "/provider/ecr/serviceAccountToken",
                json!({ "expirationSeconds": 100 }),
            ),
            "spec.provider.ecr.serviceAccountToken.expirationSeconds",
            "should be greater than or equal to 600",
        ),
        invalid(
            "unknown identity",
            set(ecr(), "/provider/ecr/identity", json!("PerNamespace")),
            "spec.provider.ecr.identity",
            "supported values: \"Shared\", \"PerServiceAccount\"",
        ),
        // ACR.
        invalid(
            "ACR registry that is not an ACR login server",
            set(acr(), "/provider/acr/registry", json!("registry.example.com")),
            "spec.provider.acr",
            "must be an ACR login server",
        ),
        invalid(
            "upper-case ACR registry",
            set(acr(), "/provider/acr/registry", json!("MyRegistry.azurecr.io")),
            "spec.provider.acr.registry",
            "must be a registry host without scheme or path",
        ),
        invalid(
            "tenant id not a UUID",
            set(acr(), "/provider/acr/tenantId", json!("contoso.onmicrosoft.com")),
            "spec.provider.acr.tenantId",
            "must be a UUID",
        ),
        invalid(
            "workload identity client id not a UUID",
            set(acr(), "/provider/acr/auth/workloadIdentity/clientId", json!("regcred")),
            "spec.provider.acr.auth.workloadIdentity.clientId",
            "must be a UUID",
        ),
        invalid(
            "service principal client id not a UUID",
            set(
                acr(),
                "/provider/acr/auth/servicePrincipal",
                json!({ "clientId": "5a2b7c1e3f4d4e8a9b0c1d2e3f4a5b6c", "secretRef": { "name": "sp", "key": "clientSecret" } }),
            ),
            "spec.provider.acr.auth.servicePrincipal.clientId",
            "must be a UUID",
        ),
        invalid(
            "service principal without secret",
            set(
                acr(),
                "/provider/acr/auth/servicePrincipal",
                json!({ "clientId": CLIENT }),
            ),
            "spec.provider.acr.auth.servicePrincipal.secretRef",
            "Required value",
        ),
        invalid(
            "plain-http authority",
            set(
                acr(),
                "/provider/acr/authorityHost",
                json!("http://login.microsoftonline.com/"),
            ),
            "spec.provider.acr.authorityHost",
            "must be an absolute https URL",
        ),
        // Static.
        invalid(
            "Docker Hub index URL as registry",
            set(
                static_(),
                "/provider/static/registry",
                json!("https://index.docker.io/v1/"),
            ),
            "spec.provider.static.registry",
            "must be a registry host without scheme or path",
        ),
        invalid(
            "static Secret with underscore",
            set(static_(), "/provider/static/secretRef/name", json!("docker_hub")),
            "spec.provider.static.secretRef.name",
            "must be a DNS-1123 subdomain",
        ),
        invalid(
            "static password key with a colon",
            set(static_(), "/provider/static/secretRef/passwordKey", json!("pass:word")),
            "spec.provider.static.secretRef.passwordKey",
            "must be a Secret data key",
        ),
        invalid(
            "static without secretRef",
            unset(static_(), "/provider/static/secretRef"),
            "spec.provider.static.secretRef",
            "Required value",
        ),
        // Target.
        invalid(
            "upper-case target Secret",
            set(ecr(), "/target/secretName", json!("Regcred-ECR")),
            "spec.target.secretName",
            "must be a DNS-1123 subdomain",
        ),
        invalid(
            "target Secret with underscore",
            set(ecr(), "/target/secretName", json!("regcred_ecr")),
            "spec.target.secretName",
            "must be a DNS-1123 subdomain",
        ),
        invalid(
            "wildcard among ServiceAccount names",
            set(ecr(), "/target/serviceAccounts/names", json!(["*", "builder"])),
            "spec.target.serviceAccounts.names",
            "must be the only entry",
        ),
        invalid(
            "upper-case ServiceAccount name",
            set(ecr(), "/target/serviceAccounts/names", json!(["Default"])),
            "spec.target.serviceAccounts.names",
            r#""Default" is not a ServiceAccount name"#,
        ),
        invalid(
            "upper-case namespace",
            set(ecr(), "/target/namespaces/names", json!(["ci", "Staging"])),
            "spec.target.namespaces.names",
            r#""Staging" is not a namespace name"#,
        ),
        invalid(
            "namespace with a dot",
            set(ecr(), "/target/namespaces/exclude", json!(["kube.system"])),
            "spec.target.namespaces.exclude",
            r#""kube.system" is not a namespace name"#,
        ),
        invalid(
            "unknown existingSecretPolicy",
            set(ecr(), "/target/existingSecretPolicy", json!("Overwrite")),
            "spec.target.existingSecretPolicy",
            "supported values: \"Fail\", \"Adopt\"",
        ),
        invalid(
            "secretLabels claiming regcred.dev/credential",
            set(
                ecr(),
                "/target/secretLabels",
                json!({ "regcred.dev/credential": "other" }),
            ),
            "spec.target.secretLabels",
            "regcred owns those labels",
        ),
        invalid(
            "secretLabels claiming managed-by",
            set(
                ecr(),
                "/target/secretLabels",
                json!({ "app.kubernetes.io/managed-by": "helm" }),
            ),
            "spec.target.secretLabels",
            "regcred owns those labels",
        ),
        // Durations.
        invalid(
            "renewBefore with unknown unit",
            set(ecr(), "/renewBefore", json!("1x")),
            "spec.renewBefore",
            "at least 1m",
        ),
        invalid(
            "negative renewBefore",
            set(ecr(), "/renewBefore", json!("-5m")),
            "spec.renewBefore",
            "at least 1m",
        ),
        invalid(
            "renewBefore under 1m",
            set(ecr(), "/renewBefore", json!("30s")),
            "spec.renewBefore",
            "at least 1m",
        ),
        invalid(
            "renewBefore in days",
            set(ecr(), "/renewBefore", json!("1d")),
            "spec.renewBefore",
            "days are not supported",
        ),
        invalid(
            "renewBefore beyond what a duration holds",
            set(ecr(), "/renewBefore", json!("9999999999h")),
            "spec.renewBefore",
            "at least 1m",
        ),
        invalid(
            "zero health-check interval",
            set(ecr(), "/healthCheck/interval", json!("0s")),
            "spec.healthCheck.interval",
            "must be a positive duration",
        ),
        invalid(
            "health-check interval without unit",
            set(ecr(), "/healthCheck/interval", json!("600")),
            "spec.healthCheck.interval",
            "must be a positive duration",
        ),
        // Health check.
        invalid(
            "unknown health-check mode",
            set(ecr(), "/healthCheck/mode", json!("Pull")),
            "spec.healthCheck.mode",
            "supported values: \"Registry\", \"Disabled\"",
        ),
        invalid(
            "health-check image with host:port",
            set(ecr(), "/healthCheck/image", json!("localhost:5000/team/app:1.0")),
            "spec.healthCheck.image",
            "without the registry host",
        ),
        invalid(
            "upper-case health-check image",
            set(ecr(), "/healthCheck/image", json!("Team/App:1.0")),
            "spec.healthCheck.image",
            "repository path",
        ),
    ]
}

fn valid_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("renewBefore exactly 1m", set(ecr(), "/renewBefore", json!("1m"))),
        ("renewBefore 1h30m", set(ecr(), "/renewBefore", json!("1h30m"))),
        ("renewBefore 90s", set(ecr(), "/renewBefore", json!("90s"))),
        (
            "fractional interval",
            set(ecr(), "/healthCheck/interval", json!("1.5h")),
        ),
        ("interval 30s", set(ecr(), "/healthCheck/interval", json!("30s"))),
        (
            "every ServiceAccount",
            set(ecr(), "/target/serviceAccounts/names", json!(["*"])),
        ),
        (
            "ServiceAccounts by selector only",
            set(
                ecr(),
                "/target/serviceAccounts",
                json!({ "names": [], "selector": { "matchLabels": { "pulls": "true" } } }),
            ),
        ),
        (
            "ServiceAccount names with dots",
            set(
                ecr(),
                "/target/serviceAccounts/names",
                json!(["default", "app.builder"]),
            ),
        ),
        (
            "ACR in Azure China",
            set(acr(), "/provider/acr/registry", json!("myregistry.azurecr.cn")),
        ),
        (
            "ACR behind a custom login server, opted in",
            set(
                set(acr(), "/provider/acr/registry", json!("acr-proxy.example.com:8443")),
                "/provider/acr/customLoginServer",
                json!(true),
            ),
        ),
        (
            "IP registry with port",
            set(static_(), "/provider/static/registry", json!("127.0.0.1:5000")),
        ),
        (
            "localhost registry with port",
            set(static_(), "/provider/static/registry", json!("localhost:5000")),
        ),
        (
            "several GCR registries",
            set(
                gcr(),
                "/provider/gcr/registries",
                json!([
                    "us-docker.pkg.dev",
                    "europe-west1-docker.pkg.dev",
                    "gcr.io",
                    "eu.gcr.io"
                ]),
            ),
        ),
        (
            "GovCloud region",
            set(ecr(), "/provider/ecr/region", json!("us-gov-west-1")),
        ),
        (
            "China region",
            set(ecr(), "/provider/ecr/region", json!("cn-northwest-1")),
        ),
        (
            "China partition role with a path",
            set(
                ecr(),
                "/provider/ecr/assumeRole",
                json!({ "roleArn": "arn:aws-cn:iam::123456789012:role/platform/ecr-pull", "externalId": "ab+=,.@:/_-" }),
            ),
        ),
        (
            "plain-http endpoint for tests",
            set(ecr(), "/provider/ecr/endpointUrl", json!("http://127.0.0.1:5000")),
        ),
        (
            "several account ids",
            set(
                ecr(),
                "/provider/ecr/registryIds",
                json!(["123456789012", "210987654321"]),
            ),
        ),
        (
            "AWS keys with session token",
            set(
                ecr(),
                "/provider/ecr/auth/secretRef",
                json!({ "name": "aws.creds", "sessionTokenKey": "AWS_SESSION_TOKEN" }),
            ),
        ),
        (
            "system-assigned managed identity",
            set(acr(), "/provider/acr/auth", json!({ "managedIdentity": {} })),
        ),
        (
            "upper-case client UUID",
            set(
                acr(),
                "/provider/acr/auth/workloadIdentity/clientId",
                json!(CLIENT.to_uppercase()),
            ),
        ),
        (
            "sovereign-cloud authority",
            set(
                acr(),
                "/provider/acr/authorityHost",
                json!("https://login.microsoftonline.us/"),
            ),
        ),
        (
            "Secret name with dots",
            set(ecr(), "/target/secretName", json!("regcred.ecr")),
        ),
        (
            "namespaces by name and exclude",
            set(
                ecr(),
                "/target/namespaces",
                json!({ "names": ["ci", "team-a"], "exclude": ["kube-system"] }),
            ),
        ),
        (
            "labels and Argo CD annotation",
            set(
                set(
                    ecr(),
                    "/target/secretLabels",
                    json!({ "team": "payments", "regcred.dev/extra": "yes" }),
                ),
                "/target/secretAnnotations",
                json!({ "argocd.argoproj.io/compare-options": "IgnoreExtraneous" }),
            ),
        ),
        (
            "image by digest",
            set(
                ecr(),
                "/healthCheck/image",
                json!(format!("team/app@sha256:{}", "a".repeat(64))),
            ),
        ),
        (
            "image without tag",
            set(ecr(), "/healthCheck/image", json!("library/nginx")),
        ),
        (
            "image with underscore tag",
            set(ecr(), "/healthCheck/image", json!("team/my_app:v1_2-rc.3")),
        ),
        (
            "checks disabled",
            set(ecr(), "/healthCheck", json!({ "mode": "Disabled" })),
        ),
        ("Adopt", set(ecr(), "/target/existingSecretPolicy", json!("Adopt"))),
        (
            "PerServiceAccount ECR with token settings",
            set(
                set(ecr(), "/provider/ecr/identity", json!("PerServiceAccount")),
                "/provider/ecr/serviceAccountToken",
                json!({ "audience": "sts.amazonaws.com", "expirationSeconds": 3600 }),
            ),
        ),
        (
            "PerServiceAccount GCR",
            set(
                set(gcr(), "/provider/gcr/identity", json!("PerServiceAccount")),
                "/provider/gcr/workloadIdentityProvider",
                json!(
                    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/cluster"
                ),
            ),
        ),
        (
            "PerServiceAccount ACR",
            set(acr(), "/provider/acr/identity", json!("PerServiceAccount")),
        ),
        (
            "explicit Shared with auth",
            set(
                set(ecr(), "/provider/ecr/identity", json!("Shared")),
                "/provider/ecr/auth",
                json!({ "secretRef": { "name": "aws-creds" } }),
            ),
        ),
    ]
}

async fn api(cp: &ControlPlane) -> Api<DynamicObject> {
    cp.install_crd(&regcred::api::crd_yaml())
        .await
        .expect("the CRD installs");
    Api::all_with(
        cp.client().await.unwrap(),
        &ApiResource::erase::<RegistryCredential>(&()),
    )
}

fn object(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "regcred.dev/v1alpha1",
        "kind": "RegistryCredential",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply("regcred-validation-test").validation_strict()
}

#[tokio::test]
async fn invalid_specs_are_rejected_with_field_and_reason() {
    let cp = ControlPlane::shared().await;
    let api = api(cp).await;
    let cases = invalid_cases();
    assert!(cases.len() >= 25);

    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("invalid-{i}");
        let result = api
            .patch(&name, &apply_params(), &Patch::Apply(object(&name, &case.spec)))
            .await;
        let status = match result {
            Ok(_) => {
                problems.push(format!(
                    "{}: accepted, expected a rejection at {}",
                    case.what, case.field
                ));
                let _ = api.delete(&name, &DeleteParams::default()).await;
                continue;
            }
            Err(kube::Error::Api(status)) => status,
            Err(e) => panic!("{}: request failed: {e}", case.what),
        };
        println!("{:<45} {}", case.what, status.message);
        let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
        let matched = causes
            .iter()
            .any(|c| c.field == case.field && c.message.contains(case.message));
        if status.code != 422 || !matched {
            problems.push(format!(
                "{}: expected 422 with a cause at {} saying {:?}, got {} {}",
                case.what, case.field, case.message, status.code, status.message
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases wrong:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

/// The name is a label value on every managed Secret: longer than 63
/// characters, every write would fail and the finalizer could never run.
#[tokio::test]
async fn names_longer_than_a_label_value_are_rejected() {
    let cp = ControlPlane::shared().await;
    let api = api(cp).await;
    let long = "a".repeat(64);
    let err = api
        .patch(&long, &apply_params(), &Patch::Apply(object(&long, &static_())))
        .await
        .expect_err("a 64-character name is rejected");
    let kube::Error::Api(status) = err else {
        panic!("request failed: {err}")
    };
    assert_eq!(status.code, 422, "{}", status.message);
    assert!(status.message.contains("at most 63 characters"), "{}", status.message);
    let ok = "b".repeat(63);
    api.patch(&ok, &apply_params(), &Patch::Apply(object(&ok, &static_())))
        .await
        .expect("63 characters are accepted");
}

#[tokio::test]
async fn edge_cases_within_the_contract_are_accepted() {
    let cp = ControlPlane::shared().await;
    let api = api(cp).await;
    let typed: Api<RegistryCredential> = Api::all(cp.client().await.unwrap());

    let mut problems = Vec::new();
    for (i, (what, spec)) in valid_cases().iter().enumerate() {
        let name = format!("valid-{i}");
        if let Err(e) = api
            .patch(&name, &apply_params(), &Patch::Apply(object(&name, spec)))
            .await
        {
            problems.push(format!("{what}: rejected: {e}"));
            continue;
        }
        if let Err(e) = typed.get(&name).await {
            problems.push(format!(
                "{what}: accepted but does not parse as a RegistryCredential: {e}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} valid specs mishandled:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
