//! The cloud fakes answer the real SDKs the way regcred will call them, count
//! what they receive and inject faults on demand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, FixedRetryOptions, RetryOptions, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gcp_auth::TokenProvider;
use regcred_testenv::fakes::azure::{Azure, Endpoint, Grant};
use regcred_testenv::fakes::google::{TokenServer, service_account_key_json};
use regcred_testenv::fakes::moto::Moto;
use regcred_testenv::fakes::{Fault, unsigned_jwt};
use serde_json::Value;

const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
const GCP_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

fn unix_now() -> u64 {
    std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload")).expect("JSON claims")
}

// ---------------------------------------------------------------- AWS (moto)

/// A GetAuthorizationToken request as the AWS SDK frames it; the signature
/// is a dummy (moto reads only the credential scope to pick the service).
fn ecr_get_authorization_token(http: &reqwest::Client, moto: &Moto) -> reqwest::RequestBuilder {
    http.post(format!("{}/", moto.url()))
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        )
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/eu-west-1/ecr/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-target, Signature=00",
        )
        .body("{}")
}

fn sts_assume_role_with_web_identity(http: &reqwest::Client, moto: &Moto) -> reqwest::RequestBuilder {
    http.post(format!("{}/", moto.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpuller\
             &RoleSessionName=regcred&WebIdentityToken=not-validated",
        )
}

#[tokio::test]
async fn moto_answers_ecr_and_sts_through_the_counting_proxy() {
    let moto = Moto::start().await.expect("moto starts");
    let http = reqwest::Client::new();

    let response = ecr_get_authorization_token(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 200, "moto log:\n{}", moto.log_tail(5));
    let body: Value = response.json_body().await;
    let data = &body["authorizationData"][0];
    let token = STANDARD.decode(data["authorizationToken"].as_str().unwrap()).unwrap();
    assert_eq!(token, b"AWS:123456789012-auth-token");
    assert_eq!(
        data["proxyEndpoint"],
        "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    // 2015-01-01T00:00:00Z: moto's token is always long expired.
    assert_eq!(data["expiresAt"], 1420070400);
    assert_eq!(moto.ecr_token_calls(), 1);

    let response = sts_assume_role_with_web_identity(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("<AccessKeyId>"));
    assert_eq!(moto.sts_calls("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(moto.sts_calls("AssumeRole"), 0);
    assert_eq!(moto.ecr_token_calls(), 1, "STS calls are not ECR calls");
}

#[tokio::test]
async fn moto_faults_hit_ecr_only_and_can_be_lifted() {
    let moto = Moto::start().await.expect("moto starts");
    let http = reqwest::Client::new();

    moto.set_ecr_fault(Fault::Status {
        code: 429,
        retry_after: Some(7),
    });
    let response = ecr_get_authorization_token(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let response = sts_assume_role_with_web_identity(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 200, "an ECR fault leaves STS working");

    moto.set_ecr_fault(Fault::Body(
        r#"{"authorizationData": [{"authorizationToken": ""}]}"#.into(),
    ));
    let response = ecr_get_authorization_token(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"authorizationData": [{"authorizationToken": ""}]}"#
    );

    moto.set_ecr_fault(Fault::Hang);
    let err = ecr_get_authorization_token(&http, &moto)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    moto.set_sts_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let response = sts_assume_role_with_web_identity(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 503);

    moto.set_ecr_fault(Fault::None);
    let response = ecr_get_authorization_token(&http, &moto).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(moto.ecr_token_calls(), 4, "faulted requests count too");
    assert_eq!(moto.sts_calls("AssumeRoleWithWebIdentity"), 2);
}

/// The SDK path regcred takes for `assumeRole`: static keys, STS
/// AssumeRole, then ECR with the assumed credentials, all through the proxy.
#[tokio::test]
async fn aws_sdk_assumes_a_role_and_gets_an_ecr_token_through_the_proxy() {
    regcred_testenv::init_crypto();
    let moto = Moto::start().await.expect("moto starts");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-central-1"))
        .endpoint_url(moto.url())
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let assumed = aws_config::sts::AssumeRoleProvider::builder("arn:aws:iam::123456789012:role/puller")
        .session_name("regcred")
        .configure(&config)
        .build()
        .await;
    let config = config
        .into_builder()
        .credentials_provider(aws_sdk_ecr::config::SharedCredentialsProvider::new(assumed))
        .build();
    let out = aws_sdk_ecr::Client::new(&config)
        .get_authorization_token()
        .send()
        .await
        .expect("a token from moto");
    let data = &out.authorization_data()[0];
    assert_eq!(
        data.proxy_endpoint(),
        Some("https://123456789012.dkr.ecr.eu-central-1.amazonaws.com")
    );
    assert_eq!(data.expires_at().map(|t| t.secs()), Some(1420070400));
    assert_eq!(moto.sts_calls("AssumeRole"), 1);
    assert_eq!(moto.ecr_token_calls(), 1);
}

// --------------------------------------------------------------------- Google

#[tokio::test]
async fn gcp_auth_gets_its_token_from_the_fake_and_caches_it() {
    let google = TokenServer::start().await.unwrap();
    let key = service_account_key_json(&google.token_uri());
    let key_json: Value = serde_json::from_str(&key).unwrap();
    assert_eq!(key_json["type"], "service_account");
    assert!(
        key_json["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    let account = gcp_auth::CustomServiceAccount::from_json(&key).expect("gcp_auth accepts the key");
    let token = account.token(&[GCP_SCOPE]).await.expect("a token from the fake");
    assert_eq!(token.as_str(), "ya29.fake-google-access-token");
    let lifetime = token.expires_at().timestamp() - unix_now() as i64;
    assert!((3590..=3600).contains(&lifetime), "expires in {lifetime}s");
    let assertion = google.last_claims().expect("the assertion's claims");
    assert_eq!(assertion["scope"], GCP_SCOPE);
    assert_eq!(assertion["aud"], google.token_uri().as_str());
    assert_eq!(assertion["iss"], key_json["client_email"]);
    assert_eq!(google.calls(), 1);

    google.set_token("ya29.second", Duration::from_secs(3600));
    let again = account.token(&[GCP_SCOPE]).await.unwrap();
    assert_eq!(
        again.as_str(),
        "ya29.fake-google-access-token",
        "served from gcp_auth's cache"
    );
    assert_eq!(google.calls(), 1, "a cached token does not reach the server");

    // gcp_auth treats a token as expired 20 s before its end: a shorter
    // lifetime is fetched again on every call.
    let account = gcp_auth::CustomServiceAccount::from_json(&key).unwrap();
    google.set_token("ya29.short", Duration::from_secs(15));
    assert_eq!(account.token(&[GCP_SCOPE]).await.unwrap().as_str(), "ya29.short");
    assert_eq!(account.token(&[GCP_SCOPE]).await.unwrap().as_str(), "ya29.short");
    assert_eq!(google.calls(), 3);
}

#[tokio::test]
async fn gcp_auth_retries_a_failing_token_endpoint_five_times() {
    let google = TokenServer::start().await.unwrap();
    let account = gcp_auth::CustomServiceAccount::from_json(&service_account_key_json(&google.token_uri())).unwrap();
    google.set_fault(Fault::Status {
        code: 500,
        retry_after: None,
    });
    assert!(account.token(&[GCP_SCOPE]).await.is_err());
    assert_eq!(google.calls(), 5);

    google.set_fault(Fault::Body(r#"{"access_token": "x"}"#.into()));
    assert!(
        account.token(&[GCP_SCOPE]).await.is_err(),
        "a body without expires_in is refused"
    );

    google.set_fault(Fault::None);
    let canary = "ya29.CANARY-0123456789";
    google.set_token(canary, Duration::from_secs(600));
    assert_eq!(account.token(&[GCP_SCOPE]).await.unwrap().as_str(), canary);
}

#[tokio::test]
async fn a_dropped_fake_closes_its_port_and_its_hanging_connections() {
    let google = TokenServer::start().await.unwrap();
    google.set_fault(Fault::Hang);
    let http = reqwest::Client::new();
    let hanging = tokio::spawn(http.post(google.token_uri()).body("grant_type=x").send());
    regcred_testenv::eventually(Duration::from_secs(5), "the request to arrive", || async {
        (google.calls() == 1).then_some(())
    })
    .await;
    let uri = google.token_uri();
    drop(google);
    let outcome = tokio::time::timeout(Duration::from_secs(5), hanging).await;
    assert!(outcome.expect("the hanging request ends").unwrap().is_err());
    let err = http.post(uri).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
}

// ---------------------------------------------------------------------- Azure

/// An HTTP client that trusts the fake's CA on top of the system roots.
fn http_trusting(azure: &Azure) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(azure.ca_pem().as_bytes()).expect("a PEM certificate");
    reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .expect("an HTTP client")
}

/// azure_identity options pointing at the fake and trusting its CA.
fn azure_options(azure: &Azure) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = azure.authority_host();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http_trusting(azure)))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..Default::default()
    }
}

async fn exchange(http: &reqwest::Client, azure: &Azure, aad_token: &str) -> reqwest::Response {
    let form = format!(
        "grant_type=access_token&service={registry}&tenant=tenant-a&access_token={aad_token}",
        registry = azure.registry_host()
    );
    http.post(format!("https://{}/oauth2/exchange", azure.registry_host()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("the exchange answers")
}

#[tokio::test]
async fn client_secret_credential_and_acr_exchange() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let credential = ClientSecretCredential::new(
        "tenant-a",
        "client-a".into(),
        "secret-a".into(),
        Some(ClientSecretCredentialOptions {
            client_options: azure_options(&azure),
        }),
    )
    .unwrap();
    let aad = credential
        .get_token(&[ACR_SCOPE], None)
        .await
        .expect("a token from the fake Entra ID");
    let request = azure.last_token_request().unwrap();
    assert_eq!(
        (request.tenant.as_str(), request.client_id.as_str()),
        ("tenant-a", "client-a")
    );
    assert_eq!(request.scope, ACR_SCOPE);
    assert_eq!(request.grant, Grant::ClientSecret);
    assert_eq!(azure.token_calls(Grant::ClientSecret), 1);

    let http = http_trusting(&azure);
    let response = exchange(&http, &azure, aad.token.secret()).await;
    assert_eq!(response.status(), 200);
    let refresh_token = response.json_body().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let exp = claims(&refresh_token)["exp"].as_u64().unwrap();
    assert!(
        exp.abs_diff(unix_now() + 3 * 3600) <= 5,
        "a refresh token lives 3 h by default"
    );
    let exchanged = azure.last_exchange_request().unwrap();
    assert_eq!(exchanged.service, azure.registry_host());
    assert_eq!(exchanged.tenant.as_deref(), Some("tenant-a"));

    azure.set_refresh_token_lifetime(Duration::from_secs(75 * 60));
    let refresh_token = exchange(&http, &azure, aad.token.secret()).await.json_body().await["refresh_token"].clone();
    let exp = claims(refresh_token.as_str().unwrap())["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(unix_now() + 75 * 60) <= 5);

    let forged = unsigned_jwt(&serde_json::json!({"aud": "https://containerregistry.azure.net"}));
    assert_eq!(
        exchange(&http, &azure, &forged).await.status(),
        401,
        "only issued tokens are exchanged"
    );
    assert_eq!(azure.exchange_calls(), 3);
}

#[tokio::test]
async fn workload_identity_uses_the_assertion_grant() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "a-projected-service-account-token").unwrap();
    let credential = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: azure_identity::ClientAssertionCredentialOptions {
            client_options: azure_options(&azure),
        },
        client_id: Some("client-wi".into()),
        tenant_id: Some("tenant-wi".into()),
        token_file_path: Some(token_file),
    }))
    .unwrap();
    credential
        .get_token(&[ACR_SCOPE], None)
        .await
        .expect("a token for the federated identity");
    assert_eq!(azure.token_calls(Grant::ClientAssertion), 1);
    assert_eq!(azure.token_calls(Grant::ClientSecret), 0);
    let request = azure.last_token_request().unwrap();
    assert_eq!(
        (request.tenant.as_str(), request.client_id.as_str()),
        ("tenant-wi", "client-wi")
    );
}

#[tokio::test]
async fn azure_faults_and_the_sdk_retry_policy() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let credential = |retry: RetryOptions| {
        ClientSecretCredential::new(
            "tenant-a",
            "client-a".into(),
            "secret".into(),
            Some(ClientSecretCredentialOptions {
                client_options: ClientOptions {
                    retry,
                    ..azure_options(&azure)
                },
            }),
        )
        .unwrap()
    };

    azure.set_fault(
        Endpoint::Token,
        Fault::Status {
            code: 401,
            retry_after: None,
        },
    );
    assert!(
        credential(RetryOptions::default())
            .get_token(&[ACR_SCOPE], None)
            .await
            .is_err()
    );
    assert_eq!(azure.token_calls(Grant::ClientSecret), 1, "a 401 is not retried");

    // azure_core retries 408/429/500/502/503/504 and I/O errors: by default
    // 8 times within 60 s, waiting 400 ms doubling up to 30 s, a Retry-After
    // only lengthening the wait. A short fixed policy keeps this test fast.
    azure.set_fault(
        Endpoint::Token,
        Fault::Status {
            code: 429,
            retry_after: Some(0),
        },
    );
    let fast = RetryOptions::fixed(FixedRetryOptions {
        delay: azure_core::time::Duration::milliseconds(10),
        max_retries: 2,
        ..Default::default()
    });
    assert!(credential(fast).get_token(&[ACR_SCOPE], None).await.is_err());
    assert_eq!(azure.token_calls(Grant::ClientSecret), 1 + 3);

    azure.set_fault(Endpoint::Token, Fault::None);
    let aad = credential(RetryOptions::default())
        .get_token(&[ACR_SCOPE], None)
        .await
        .unwrap();
    let http = http_trusting(&azure);
    azure.set_fault(Endpoint::Exchange, Fault::Hang);
    let started = Instant::now();
    let hung = tokio::time::timeout(Duration::from_millis(300), exchange(&http, &azure, aad.token.secret())).await;
    assert!(hung.is_err() && started.elapsed() >= Duration::from_millis(300));
    azure.set_fault(Endpoint::Exchange, Fault::Body(r#"{"refresh_token": ""}"#.into()));
    let body = exchange(&http, &azure, aad.token.secret()).await.text().await.unwrap();
    assert_eq!(body, r#"{"refresh_token": ""}"#);
    assert_eq!(azure.exchange_calls(), 2);
}

#[tokio::test]
async fn azure_identity_refuses_the_fake_without_its_ca() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = azure.authority_host();
    let options = ClientOptions {
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        // Failed handshakes are retried like I/O errors; one is enough here.
        retry: RetryOptions::none(),
        ..Default::default()
    };
    let credential = ClientSecretCredential::new(
        "tenant-a",
        "client-a".into(),
        "secret".into(),
        Some(ClientSecretCredentialOptions {
            client_options: options,
        }),
    )
    .unwrap();
    let err = credential.get_token(&[ACR_SCOPE], None).await.unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    assert_eq!(azure.token_calls(Grant::ClientSecret), 0);
}

trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        serde_json::from_slice(&self.bytes().await.expect("a body")).expect("a JSON body")
    }
}
