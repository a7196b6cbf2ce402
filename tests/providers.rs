//! Short-lived-token providers end to end: the real AWS, Google and Azure SDK
//! code paths against offline fakes (moto, a Google token endpoint, an HTTPS
//! Entra ID + ACR exchange), the operator running as the built binary
//! against a real kube-apiserver.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use regcred_testenv::eventually;
use regcred_testenv::fakes::Fault;
use regcred_testenv::fakes::azure::{Azure, Endpoint, Grant};
use regcred_testenv::fakes::google::TokenServer;
use regcred_testenv::fakes::moto::Moto;
use serde_json::json;
use support::*;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const LONG: Duration = Duration::from_secs(150);

async fn events_text(h: &Harness) -> String {
    let events = Api::<Event>::all(h.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    serde_json::to_string(&events.items).unwrap()
}

fn secs_from_now(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second() - Timestamp::now().as_second()
}

#[tokio::test]
async fn ecr_with_static_keys_mints_once_for_50_namespaces_and_survives_a_restart() {
    let moto = Moto::start().await.expect("moto");
    let mut h = Harness::start().await;
    put_aws_keys(&h.client, "testing").await;
    let names: Vec<String> = (0..50).map(|i| format!("ecr-{i:02}")).collect();
    for n in &names {
        namespace_with_default_sa(&h.client, n, &[("pulls", "ecr")]).await;
    }
    let provider = json!({"ecr": {"region": "us-east-1", "auth": {"secretRef": {"name": "aws-creds"}}, "endpointUrl": moto.url()}});
    apply_rc(
        &h.client,
        rc("ecr", provider, json!({"selector": {"matchLabels": {"pulls": "ecr"}}})),
    )
    .await;

    let status = h
        .wait_status("ecr", "50/50 synced", |s| s.summary.as_deref() == Some("50/50"))
        .await;
    assert_eq!(
        moto.ecr_token_calls(),
        1,
        "50 namespaces must cost exactly one GetAuthorizationToken"
    );
    assert_eq!(status.provider.map(|p| p.as_str()), Some("ECR"));
    assert_eq!(status.registries, [ECR_HOST]);
    // moto answers expiresAt 2015-01-01: clamped to an hour, renewed ~40 min later.
    let not_after = secs_from_now(status.not_after.as_ref().unwrap());
    assert!((3500..=3600).contains(&not_after), "notAfter in {not_after}s");
    let renewal = secs_from_now(status.renewal_time.as_ref().unwrap());
    assert!((2200..=2400).contains(&renewal), "renewalTime in {renewal}s");
    assert!(is_condition(&status, "Issued", "True") && is_condition(&status, "Ready", "True"));
    wait_event(&h.client, "ExpiryClamped", None).await;

    let secret = h.secrets("ecr-07").get("ecr").await.unwrap();
    let config = docker_config(&secret);
    assert_eq!(config["auths"][ECR_HOST]["username"], "AWS");
    let password = config["auths"][ECR_HOST]["password"].as_str().unwrap().to_string();
    assert!(!password.is_empty());
    assert_eq!(
        secret.annotations()["regcred.dev/not-after"],
        status.not_after.as_ref().unwrap().0.to_string()
    );

    // A restart takes the credential back from the Secrets: no new mint, no writes.
    let before = resource_versions(&h, &names[..5], "ecr").await;
    h.operator.stop();
    h.operator = start_operator(&h.cp);
    create_namespace(&h.client, "nudge", &[]).await;
    eventually(WAIT, "the restarted operator to reconcile", || {
        let logs = h.operator.logs();
        async move { logs.contains("reconciled").then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(moto.ecr_token_calls(), 1, "a restart must not mint again");
    assert_eq!(before, resource_versions(&h, &names[..5], "ecr").await);
    assert!(!h.operator.logs().contains(&password), "ECR password in logs");
}

#[tokio::test]
async fn ecr_through_irsa_web_identity_and_assume_role() {
    let moto = Moto::start().await.expect("moto");
    let cp = Harness::control_plane().await;
    let client = cp.client().await.unwrap();
    let dir = cp.kubeconfig().parent().unwrap().to_path_buf();
    let token_file = projected_token_file(&client, &dir, "sts.amazonaws.com").await;
    let env = [
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/regcred"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_SESSION_NAME", "regcred"),
        ("AWS_ENDPOINT_URL_STS", &moto.url()),
        ("AWS_REGION", "us-east-1"),
    ];
    let operator = start_operator_with(&cp, &[], &env);
    let h = Harness { client, operator, cp };
    namespace_with_default_sa(&h.client, "irsa", &[]).await;
    namespace_with_default_sa(&h.client, "xacct", &[]).await;

    let irsa = json!({"ecr": {"region": "us-east-1", "endpointUrl": moto.url()}});
    apply_rc(&h.client, rc("irsa", irsa, json!({"names": ["irsa"]}))).await;
    h.wait_secret("irsa", "irsa", "ECR Secret via web identity", |s| {
        docker_config(s)["auths"][ECR_HOST].is_object()
    })
    .await;
    assert!(
        moto.sts_calls("AssumeRoleWithWebIdentity") >= 1,
        "the default chain used the projected token"
    );

    put_aws_keys(&h.client, "testing").await;
    let xacct = json!({"ecr": {
        "region": "us-east-1",
        "registryIds": ["210987654321"],
        "auth": {"secretRef": {"name": "aws-creds"}},
        "assumeRole": {"roleArn": "arn:aws:iam::210987654321:role/ecr-pull", "externalId": "regcred-test"},
        "endpointUrl": moto.url(),
    }});
    apply_rc(&h.client, rc("xacct", xacct, json!({"names": ["xacct"]}))).await;
    let secret = h
        .wait_secret("xacct", "xacct", "cross-account ECR Secret", |s| {
            docker_config(s)["auths"]["210987654321.dkr.ecr.us-east-1.amazonaws.com"].is_object()
        })
        .await;
    assert!(moto.sts_calls("AssumeRole") >= 1, "assumeRole went through STS");
    assert_eq!(
        docker_config(&secret)["auths"].as_object().unwrap().len(),
        1,
        "only the requested registry"
    );
    let status = h
        .wait_status("xacct", "Ready", |s| is_condition(s, "Ready", "True"))
        .await;
    assert_eq!(status.registries, ["210987654321.dkr.ecr.us-east-1.amazonaws.com"]);
}

#[tokio::test]
async fn ecr_failures_and_hostile_answers_keep_the_last_good_secret() {
    let moto = Moto::start().await.expect("moto");
    let h = Harness::start().await;
    put_aws_keys(&h.client, "v1").await;
    namespace_with_default_sa(&h.client, "prod", &[]).await;
    let provider = json!({"ecr": {"region": "us-east-1", "auth": {"secretRef": {"name": "aws-creds"}}, "endpointUrl": moto.url()}});
    apply_rc(&h.client, rc("ecr", provider, json!({"names": ["prod"]}))).await;
    let good = h.wait_secret("prod", "ecr", "first Secret", |_| true).await;

    let canary = canary("ecr");
    let evil_endpoint = json!({"authorizationData": [{
        "authorizationToken": base64(&format!("AWS:{canary}")),
        "expiresAt": 1.9e9, "proxyEndpoint": "https://attacker.example.com"}]})
    .to_string();
    let huge = json!({"authorizationData": [{
        "authorizationToken": base64(&format!("AWS:{}", "x".repeat(1 << 20))),
        "expiresAt": 1.9e9, "proxyEndpoint": format!("https://{ECR_HOST}")}]})
    .to_string();
    let empty = json!({"authorizationData": [{"authorizationToken": "", "expiresAt": 1.9e9, "proxyEndpoint": format!("https://{ECR_HOST}")}]})
        .to_string();
    let cases = [
        (
            Fault::Body(evil_endpoint),
            "InvalidProviderResponse",
            "attacker.example.com",
        ),
        (Fault::Body(huge), "InvalidProviderResponse", "longer than"),
        (
            Fault::Body(empty),
            "InvalidProviderResponse",
            "empty authorization token",
        ),
        (
            Fault::Body("{not json".into()),
            "MintFailed",
            "GetAuthorizationToken failed",
        ),
        (
            Fault::Status {
                code: 500,
                retry_after: None,
            },
            "MintFailed",
            "GetAuthorizationToken failed",
        ),
    ];
    for (i, (fault, reason, fragment)) in cases.into_iter().enumerate() {
        moto.set_ecr_fault(fault);
        // A changed source Secret re-mints at once, whatever the backoff.
        let key = format!("v{}", i + 2);
        put_aws_keys(&h.client, &key).await;
        let status = h
            .wait_status("ecr", &format!("Issued=False {reason}"), |s| {
                s.failed_attempts as usize == i + 1 && condition(s, "Issued").reason == reason
            })
            .await;
        let issued = condition(&status, "Issued");
        assert!(issued.message.contains(fragment), "{reason}: {}", issued.message);
        assert!(
            issued.message.contains("keep the last good credential"),
            "{}",
            issued.message
        );
        assert_eq!(condition(&status, "Ready").status, "False");
        // Backoff holds: no retry storm while the inputs stay the same.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let later = h.rcs().get("ecr").await.unwrap().status.unwrap();
        assert_eq!(
            later.failed_attempts as usize,
            i + 1,
            "retried before the backoff elapsed ({reason})"
        );
        let now = h.secrets("prod").get("ecr").await.unwrap();
        assert_eq!(
            now.resource_version(),
            good.resource_version(),
            "Secret must stay byte-identical ({reason})"
        );
        assert_eq!(now.data, good.data);
    }
    wait_event(&h.client, "InvalidProviderResponse", None).await;

    moto.set_ecr_fault(Fault::None);
    put_aws_keys(&h.client, "fixed").await;
    let status = h
        .wait_status("ecr", "recovered", |s| {
            is_condition(s, "Ready", "True") && s.failed_attempts == 0
        })
        .await;
    assert_eq!(status.registries, [ECR_HOST]);

    let text = format!(
        "{}{}{}",
        h.operator.logs(),
        events_text(&h).await,
        serde_json::to_string(&status).unwrap()
    );
    assert!(
        !text.contains(&canary),
        "a hostile token leaked into logs, Events or status"
    );
}

fn base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn gcr_renews_on_expiry_rides_out_an_outage_and_recovers() {
    let google = TokenServer::start().await.expect("google token endpoint");
    let mut h = Harness::start().await;
    put_gcp_key(&h.client, "gcp-sa", &google).await;
    namespace_with_default_sa(&h.client, "gke-a", &[]).await;
    namespace_with_default_sa(&h.client, "gke-b", &[]).await;
    let first = canary("gcr-1");
    google.set_token(first.clone(), Duration::from_secs(30));
    let provider = json!({"gcr": {"registries": ["gcr.io", "us-docker.pkg.dev"], "auth": {"serviceAccountKey": {"secretRef": {"name": "gcp-sa", "key": "key.json"}}}}});
    let mut gcr = rc("gcr", provider, json!({"names": ["gke-a", "gke-b"]}));
    gcr["spec"]["renewBefore"] = json!("1m");
    apply_rc(&h.client, gcr).await;

    let s = h
        .wait_secret("gke-a", "gcr", "first token", |s| {
            password_for(s, "gcr.io").as_deref() == Some(first.as_str())
        })
        .await;
    let config = docker_config(&s);
    assert_eq!(config["auths"]["us-docker.pkg.dev"]["username"], "oauth2accesstoken");
    let status = h
        .wait_status("gcr", "Ready", |s| is_condition(s, "Ready", "True"))
        .await;
    assert_eq!(status.registries, ["gcr.io", "us-docker.pkg.dev"]);
    let lifetime =
        status.not_after.as_ref().unwrap().0.as_second() - status.last_issued_time.as_ref().unwrap().0.as_second();
    assert!(
        (28..=31).contains(&lifetime),
        "the token's own 30 s lifetime is reported: {lifetime}"
    );
    assert_eq!(google.calls(), 1, "two namespaces, two registries, one token request");

    // Renewal at the planned time: renewBefore exceeds the lifetime, and
    // regcred mints at most once a minute, so a minute after the first.
    let second = canary("gcr-2");
    google.set_token(second.clone(), Duration::from_secs(30));
    {
        let api = h.secrets("gke-b");
        let second = second.clone();
        eventually(LONG, "renewed token", || {
            let api = api.clone();
            let second = second.clone();
            async move {
                let s = api.get_opt("gcr").await.ok()??;
                (password_for(&s, "us-docker.pkg.dev").as_deref() == Some(second.as_str())).then_some(())
            }
        })
        .await;
    }
    let renewed = h
        .wait_status("gcr", "renewed status", |s| {
            s.last_issued_time != status.last_issued_time
        })
        .await;
    assert!(renewed.not_after > status.not_after);

    // Outage longer than the token's life: Secrets stay, Issued says Expired.
    google.set_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let held = h.secrets("gke-a").get("gcr").await.unwrap();
    let expired = {
        let api = h.rcs();
        eventually(LONG, "Issued=False Expired", || {
            let api = api.clone();
            async move {
                let s = api.get("gcr").await.ok()?.status?;
                (condition(&s, "Issued").reason == "Expired" && s.failed_attempts >= 2).then_some(s)
            }
        })
        .await
    };
    assert!(
        expired.failed_attempts >= 2,
        "retried with backoff: {}",
        expired.failed_attempts
    );
    assert_eq!(condition(&expired, "Ready").reason, "Expired");
    let still = h.secrets("gke-a").get("gcr").await.unwrap();
    assert_eq!(
        still.resource_version(),
        held.resource_version(),
        "never emptied, never rewritten"
    );
    wait_event(&h.client, "MintFailed", None).await;

    let third = canary("gcr-3");
    google.set_token(third.clone(), Duration::from_secs(3600));
    google.set_fault(Fault::None);
    let api = h.rcs();
    eventually(LONG, "automatic recovery", || {
        let api = api.clone();
        async move {
            let s = api.get("gcr").await.ok()?.status?;
            (is_condition(&s, "Ready", "True") && s.failed_attempts == 0).then_some(())
        }
    })
    .await;
    h.wait_secret("gke-a", "gcr", "recovered token", |s| {
        password_for(s, "gcr.io").as_deref() == Some(third.as_str())
    })
    .await;

    h.operator.stop();
    let text = format!(
        "{}{}{}",
        h.operator.logs(),
        events_text(&h).await,
        serde_json::to_string(&h.rcs().get("gcr").await.unwrap().status).unwrap()
    );
    for token in [&first, &second, &third] {
        assert!(
            !text.contains(token.as_str()),
            "Google token leaked into logs, Events or status"
        );
    }
}

#[tokio::test]
async fn acr_service_principal_workload_and_managed_identity() {
    let azure = Azure::start().await.expect("azure fake");
    let cp = Harness::control_plane().await;
    let client = cp.client().await.unwrap();
    let dir = cp.kubeconfig().parent().unwrap().to_path_buf();
    let ca = dir.join("azure-ca.pem");
    std::fs::write(&ca, azure.ca_pem()).unwrap();
    let federated = projected_token_file(&client, &dir, "api://AzureADTokenExchange").await;
    let env = [
        ("AZURE_FEDERATED_TOKEN_FILE", federated.to_str().unwrap()),
        ("IDENTITY_ENDPOINT", &azure.identity_endpoint()),
        ("IDENTITY_HEADER", &azure.identity_header()),
    ];
    let operator = start_operator_with(&cp, &["--ca-bundle", ca.to_str().unwrap()], &env);
    let mut h = Harness { client, operator, cp };
    let secret = canary("azure-sp");
    put_secret(&h.client, "azure-sp", &[("clientSecret", &secret)]).await;

    let registry = azure.registry_host();
    let modes = [
        (
            "acr-sp",
            json!({"servicePrincipal": {"clientId": CLIENT_ID, "secretRef": {"name": "azure-sp", "key": "clientSecret"}}}),
        ),
        ("acr-wi", json!({"workloadIdentity": {"clientId": CLIENT_ID}})),
        ("acr-mi", json!({"managedIdentity": {"clientId": CLIENT_ID}})),
    ];
    for (name, auth) in &modes {
        namespace_with_default_sa(&h.client, name, &[]).await;
        // The fake login server is 127.0.0.1:<port>, not *.azurecr.io.
        let provider = json!({"acr": {"registry": registry, "tenantId": TENANT, "auth": auth, "authorityHost": azure.authority_host(), "customLoginServer": true}});
        apply_rc(&h.client, rc(name, provider, json!({"names": [name]}))).await;
    }
    let mut passwords = Vec::new();
    for (name, _) in &modes {
        let status = h
            .wait_status(name, &format!("{name} Ready"), |s| is_condition(s, "Ready", "True"))
            .await;
        let s = h.secrets(name).get(name).await.unwrap();
        let config = docker_config(&s);
        assert_eq!(
            config["auths"][&registry]["username"],
            "00000000-0000-0000-0000-000000000000"
        );
        let refresh = config["auths"][&registry]["password"].as_str().unwrap().to_string();
        // The expiry is the refresh token's own exp claim (3 h by default).
        let exp = regcred::providers::acr::jwt_expiry(&refresh).unwrap();
        assert_eq!(status.not_after.as_ref().unwrap().0, exp, "{name}");
        let lifetime = exp.as_second() - Timestamp::now().as_second();
        assert!((3 * 3600 - 120..=3 * 3600).contains(&lifetime), "{name}: {lifetime}");
        passwords.push(refresh);
    }
    assert!(azure.token_calls(Grant::ClientSecret) >= 1);
    assert!(azure.token_calls(Grant::ClientAssertion) >= 1);
    assert!(azure.managed_identity_calls() >= 1);
    assert_eq!(azure.exchange_calls(), 3);
    let req = azure.last_token_request().unwrap();
    assert_eq!(req.scope, "https://containerregistry.azure.net/.default");

    // Throttled exchange: Retry-After is honoured in the next attempt time.
    azure.set_fault(
        Endpoint::Exchange,
        Fault::Status {
            code: 429,
            retry_after: Some(120),
        },
    );
    put_secret(&h.client, "azure-sp", &[("clientSecret", &format!("{secret}-rotated"))]).await;
    let status = h
        .wait_status("acr-sp", "Throttled", |s| condition(s, "Issued").reason == "Throttled")
        .await;
    let retry_in =
        status.renewal_time.as_ref().unwrap().0.as_second() - status.last_failure_time.as_ref().unwrap().0.as_second();
    assert_eq!(retry_in, 120, "Retry-After honoured");
    let kept = h.secrets("acr-sp").get("acr-sp").await.unwrap();
    assert_eq!(
        password_for(&kept, &registry).as_deref(),
        Some(passwords[0].as_str()),
        "last good Secret kept"
    );
    // Retry-After holds across later events and a restart of the operator.
    let calls = azure.exchange_calls();
    namespace_with_default_sa(&h.client, "acr-late", &[]).await;
    h.operator.stop();
    h.operator = start_operator_with(&h.cp, &["--ca-bundle", ca.to_str().unwrap()], &env);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(azure.exchange_calls(), calls, "retried before Retry-After ran out");

    let text = format!("{}{}", h.operator.logs(), events_text(&h).await);
    for p in passwords.iter().chain([&secret]) {
        assert!(
            !text.contains(p.as_str()),
            "Azure secret material leaked into logs or Events"
        );
    }
    let statuses = Api::<regcred::api::RegistryCredential>::all(h.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let statuses = serde_json::to_string(&statuses.items.iter().map(|r| &r.status).collect::<Vec<_>>()).unwrap();
    assert!(!statuses.contains(&secret) && !passwords.iter().any(|p| statuses.contains(p.as_str())));
    let _: Option<Secret> = None;
}
