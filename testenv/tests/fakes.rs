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
use regcred_testenv::fakes::google_sts::{self, GoogleSts};
use regcred_testenv::fakes::moto::{self, Moto};
use regcred_testenv::fakes::{Fault, unsigned_jwt};
use regcred_testenv::registry::{self, Auth, Registry};
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

/// A ServiceAccount token as the TokenRequest API issues it (unsigned here).
fn service_account_jwt(namespace: &str, name: &str, audience: &str) -> String {
    unsigned_jwt(&serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": [audience],
        "iat": unix_now(),
        "exp": unix_now() + 600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    }))
}

/// AssumeRoleWithWebIdentity as the AWS SDK frames it (query protocol, unsigned).
async fn assume_role_with_web_identity(moto: &Moto, role_arn: &str, token: &str) -> (reqwest::StatusCode, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role_arn)
        .append_pair("RoleSessionName", "regcred")
        .append_pair("WebIdentityToken", token)
        .finish();
    let response = reqwest::Client::new()
        .post(format!("{}/", moto.url()))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("the proxy answers");
    (response.status(), response.text().await.unwrap())
}

fn xml_text(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + tag.len()
        + 2;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    xml[start..end].to_string()
}

/// The ECR password and proxy endpoint the AWS SDK gets with the credentials
/// of an AssumeRoleWithWebIdentity answer.
async fn ecr_with_assumed_credentials(moto: &Moto, sts_answer: &str) -> (String, String) {
    let credentials = aws_sdk_ecr::config::Credentials::new(
        xml_text(sts_answer, "AccessKeyId"),
        xml_text(sts_answer, "SecretAccessKey"),
        Some(xml_text(sts_answer, "SessionToken")),
        None,
        "web-identity",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(moto.url())
        .credentials_provider(credentials)
        .load()
        .await;
    let out = aws_sdk_ecr::Client::new(&config)
        .get_authorization_token()
        .send()
        .await
        .expect("a token from moto");
    let data = &out.authorization_data()[0];
    let token = STANDARD.decode(data.authorization_token().unwrap()).unwrap();
    let token = String::from_utf8(token).unwrap();
    let password = token.strip_prefix("AWS:").expect("user AWS").to_string();
    (password, data.proxy_endpoint().unwrap().to_string())
}

const TEAM_A_ROLE: &str = "arn:aws:iam::111111111111:role/team-a";
const TEAM_B_ROLE: &str = "arn:aws:iam::222222222222:role/team-b";
const TEAM_C_ROLE: &str = "arn:aws:iam::111111111111:role/team-c";

#[tokio::test]
async fn moto_web_identity_gives_each_role_its_own_ecr_password_and_records_the_claims() {
    regcred_testenv::init_crypto();
    let moto = Moto::start().await.expect("moto starts");
    let mut passwords = Vec::new();
    let mut tokens = Vec::new();
    for (role, namespace) in [
        (TEAM_A_ROLE, "team-a"),
        (TEAM_B_ROLE, "team-b"),
        (TEAM_C_ROLE, "team-c"),
    ] {
        let token = service_account_jwt(namespace, "puller", "sts.amazonaws.com");
        let (status, answer) = assume_role_with_web_identity(&moto, role, &token).await;
        assert_eq!(status, 200, "{answer}");
        let (password, endpoint) = ecr_with_assumed_credentials(&moto, &answer).await;
        assert_eq!(password, moto::ecr_password_for_role(role));
        let account = role.split(':').nth(4).unwrap();
        assert_eq!(endpoint, format!("https://{account}.dkr.ecr.eu-west-1.amazonaws.com"));
        passwords.push(password);
        tokens.push(token);
    }
    assert_eq!(passwords[0], "111111111111-team-a-auth-token");
    assert_eq!(passwords[1], "222222222222-team-b-auth-token");
    assert_eq!(
        passwords[2], "111111111111-team-c-auth-token",
        "two roles of one account differ too"
    );

    let calls = moto.web_identity_calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].role_arn, TEAM_B_ROLE);
    assert_eq!(calls[1].session_name, "regcred");
    assert_eq!(calls[1].claims["sub"], "system:serviceaccount:team-b:puller");
    assert_eq!(calls[1].claims["aud"], serde_json::json!(["sts.amazonaws.com"]));
    let recorded = format!("{calls:?}");
    assert!(
        tokens.iter().all(|t| !recorded.contains(t.as_str())),
        "no raw token is kept"
    );
    assert_eq!(moto.sts_calls("AssumeRoleWithWebIdentity"), 3);
    assert_eq!(moto.ecr_token_calls(), 3);
}

#[tokio::test]
async fn moto_denies_a_role_and_throttles_web_identity_like_sts() {
    let moto = Moto::start().await.expect("moto starts");
    let token = service_account_jwt("team-b", "puller", "sts.amazonaws.com");
    moto.deny_role(TEAM_B_ROLE);
    let (status, answer) = assume_role_with_web_identity(&moto, TEAM_B_ROLE, &token).await;
    assert_eq!(status, 403);
    assert_eq!(xml_text(&answer, "Type"), "Sender");
    assert_eq!(xml_text(&answer, "Code"), "AccessDenied");
    assert_eq!(
        xml_text(&answer, "Message"),
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    assert!(!xml_text(&answer, "RequestId").is_empty());
    let (status, _) = assume_role_with_web_identity(&moto, TEAM_A_ROLE, &token).await;
    assert_eq!(status, 200, "other roles pass to moto");

    moto.throttle_web_identity(2);
    for _ in 0..2 {
        let (status, answer) = assume_role_with_web_identity(&moto, TEAM_A_ROLE, &token).await;
        assert_eq!(status, 400);
        assert_eq!(xml_text(&answer, "Code"), "Throttling");
        assert_eq!(xml_text(&answer, "Message"), "Rate exceeded");
    }
    let (status, _) = assume_role_with_web_identity(&moto, TEAM_A_ROLE, &token).await;
    assert_eq!(status, 200, "throttling ends after the count");

    moto.allow_role(TEAM_B_ROLE);
    let (status, _) = assume_role_with_web_identity(&moto, TEAM_B_ROLE, &token).await;
    assert_eq!(status, 200);
    let roles: Vec<String> = moto.web_identity_calls().into_iter().map(|c| c.role_arn).collect();
    assert_eq!(
        roles,
        [
            TEAM_B_ROLE,
            TEAM_A_ROLE,
            TEAM_A_ROLE,
            TEAM_A_ROLE,
            TEAM_A_ROLE,
            TEAM_B_ROLE
        ],
        "refused calls are recorded too"
    );
    assert_eq!(moto.sts_calls("AssumeRoleWithWebIdentity"), 6);
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

const GSA_A: &str = "team-a@project-a.iam.gserviceaccount.com";
const GSA_B: &str = "team-b@project-b.iam.gserviceaccount.com";
const WIF_AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/pool/providers/cluster";

/// The STS token exchange as Google's client libraries send it.
async fn sts_exchange(sts: &GoogleSts, audience: &str, subject_token: &str) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", google_sts::TOKEN_EXCHANGE_GRANT)
        .append_pair("audience", audience)
        .append_pair("scope", GCP_SCOPE)
        .append_pair("requested_token_type", google_sts::ACCESS_TOKEN_TYPE)
        .append_pair("subject_token", subject_token)
        .append_pair("subject_token_type", google_sts::JWT_TOKEN_TYPE)
        .finish();
    reqwest::Client::new()
        .post(format!("{}/v1/token", sts.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("STS answers")
}

async fn generate_access_token(sts: &GoogleSts, gsa: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken",
            sts.url()
        ))
        .header("content-type", "application/json")
        .body(serde_json::json!({"scope": [GCP_SCOPE], "lifetime": "3600s"}).to_string());
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    request.send().await.expect("IAM Credentials answers")
}

/// STS exchange then generateAccessToken: the access token and its expireTime.
async fn google_access_token(sts: &GoogleSts, namespace: &str, gsa: &str) -> (String, String) {
    let jwt = service_account_jwt(namespace, "puller", WIF_AUDIENCE);
    let response = sts_exchange(sts, WIF_AUDIENCE, &jwt).await;
    assert_eq!(response.status(), 200);
    let federated = response.json_body().await;
    assert_eq!(federated["token_type"], "Bearer");
    assert_eq!(federated["issued_token_type"], google_sts::ACCESS_TOKEN_TYPE);
    assert_eq!(federated["expires_in"], 3600);
    let response = generate_access_token(sts, gsa, federated["access_token"].as_str()).await;
    assert_eq!(response.status(), 200);
    let body = response.json_body().await;
    (
        body["accessToken"].as_str().unwrap().to_string(),
        body["expireTime"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn google_sts_gives_each_service_account_its_own_token_and_records_the_exchange() {
    let sts = GoogleSts::start().await.unwrap();
    let before = google_sts::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    let (token_a, expiry) = google_access_token(&sts, "team-a", GSA_A).await;
    let after = google_sts::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    assert_eq!(token_a, google_sts::access_token_for(GSA_A, 1));
    assert_eq!(token_a, "ya29.team-a-1");
    assert!(before <= expiry && expiry <= after, "{before} <= {expiry} <= {after}");
    let (token_b, _) = google_access_token(&sts, "team-b", GSA_B).await;
    assert_eq!(token_b, google_sts::access_token_for(GSA_B, 1));
    let (again, _) = google_access_token(&sts, "team-a", GSA_A).await;
    assert_eq!(
        again,
        google_sts::access_token_for(GSA_A, 2),
        "a renewal is a new token"
    );
    assert_eq!(sts.issued_for(GSA_A), 2);

    let exchanges = sts.exchanges();
    assert_eq!(exchanges.len(), 3);
    assert_eq!(exchanges[1].audience, WIF_AUDIENCE);
    assert_eq!(exchanges[1].scope, GCP_SCOPE);
    assert_eq!(exchanges[1].claims["sub"], "system:serviceaccount:team-b:puller");
    assert_eq!(exchanges[1].claims["aud"], serde_json::json!([WIF_AUDIENCE]));
    let generated: Vec<String> = sts.generate_calls().into_iter().map(|g| g.service_account).collect();
    assert_eq!(generated, [GSA_A, GSA_B, GSA_A]);
    assert_eq!(sts.generate_calls()[0].lifetime.as_deref(), Some("3600s"));

    let owner = sts.token_owner();
    assert_eq!(owner(&token_a).as_deref(), Some(GSA_A));
    assert_eq!(owner(&token_b).as_deref(), Some(GSA_B));
    assert_eq!(owner("ya29.forged"), None);
    sts.set_lifetime(Duration::from_secs(1));
    let (short, _) = google_access_token(&sts, "team-b", GSA_B).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(owner(&short), None, "an expired token has no owner");
    assert_eq!(sts.calls(google_sts::Endpoint::Token), 4);
    assert_eq!(sts.calls(google_sts::Endpoint::GenerateAccessToken), 4);
}

#[tokio::test]
async fn google_sts_refuses_like_google_and_injects_faults() {
    let sts = GoogleSts::start().await.unwrap();
    let jwt = service_account_jwt("team-a", "puller", WIF_AUDIENCE);
    let response = sts_exchange(&sts, "//iam.googleapis.com/projects/1/pool", &jwt).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json_body().await["error"], "invalid_request");
    let response = sts_exchange(&sts, WIF_AUDIENCE, "not-a-jwt").await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json_body().await["error"], "invalid_grant");

    let federated = sts_exchange(&sts, WIF_AUDIENCE, &jwt).await.json_body().await["access_token"].clone();
    let federated = federated.as_str().unwrap();
    let response = generate_access_token(&sts, GSA_A, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.json_body().await["error"]["status"], "UNAUTHENTICATED");
    let response = generate_access_token(&sts, GSA_A, Some("ya29.forged")).await;
    assert_eq!(response.status(), 401, "only federated tokens of this STS are accepted");

    sts.deny_service_account(GSA_B);
    let response = generate_access_token(&sts, GSA_B, Some(federated)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json_body().await,
        serde_json::json!({"error": {
            "code": 403,
            "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            "status": "PERMISSION_DENIED",
        }})
    );
    let response = generate_access_token(&sts, GSA_A, Some(federated)).await;
    assert_eq!(response.status(), 200, "other service accounts are unaffected");
    sts.allow_service_account(GSA_B);
    assert_eq!(generate_access_token(&sts, GSA_B, Some(federated)).await.status(), 200);

    let throttled = Fault::Status {
        code: 429,
        retry_after: Some(30),
    };
    sts.set_fault(google_sts::Endpoint::GenerateAccessToken, throttled.clone());
    let response = generate_access_token(&sts, GSA_A, Some(federated)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(
        sts_exchange(&sts, WIF_AUDIENCE, &jwt).await.status(),
        200,
        "STS is unaffected"
    );
    sts.set_fault(google_sts::Endpoint::Token, throttled);
    assert_eq!(sts_exchange(&sts, WIF_AUDIENCE, &jwt).await.status(), 429);
    sts.set_fault(google_sts::Endpoint::Token, Fault::None);
    sts.set_fault(google_sts::Endpoint::GenerateAccessToken, Fault::None);
    assert_eq!(generate_access_token(&sts, GSA_A, Some(federated)).await.status(), 200);
    assert_eq!(sts.calls(google_sts::Endpoint::Token), 5);
    assert_eq!(sts.calls(google_sts::Endpoint::GenerateAccessToken), 7);
    assert_eq!(sts.generate_calls().len(), 7, "refused and faulted calls are recorded");
    assert_eq!(sts.issued_for(GSA_A), 2);

    let json = serde_json::json!({
        "grant_type": google_sts::TOKEN_EXCHANGE_GRANT,
        "audience": WIF_AUDIENCE,
        "scope": GCP_SCOPE,
        "requested_token_type": google_sts::ACCESS_TOKEN_TYPE,
        "subject_token": jwt,
        "subject_token_type": google_sts::JWT_TOKEN_TYPE,
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/token", sts.url()))
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "STS takes a JSON body too");
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

/// A workload identity credential for `client_id` presenting a
/// ServiceAccount token of `namespace`.
fn workload_identity(
    azure: &Azure,
    dir: &std::path::Path,
    namespace: &str,
    client_id: &str,
) -> Arc<WorkloadIdentityCredential> {
    let token_file = dir.join(format!("{namespace}-token"));
    let jwt = service_account_jwt(namespace, "puller", "api://AzureADTokenExchange");
    std::fs::write(&token_file, jwt).unwrap();
    WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: azure_identity::ClientAssertionCredentialOptions {
            client_options: ClientOptions {
                retry: RetryOptions::none(),
                ..azure_options(azure)
            },
        },
        client_id: Some(client_id.into()),
        tenant_id: Some("tenant-wi".into()),
        token_file_path: Some(token_file),
    }))
    .unwrap()
}

#[tokio::test]
async fn workload_identities_get_refresh_tokens_of_their_own() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = http_trusting(&azure);
    let mut refresh_tokens = Vec::new();
    for (namespace, client_id) in [("team-a", "client-a"), ("team-b", "client-b")] {
        let aad = workload_identity(&azure, dir.path(), namespace, client_id)
            .get_token(&[ACR_SCOPE], None)
            .await
            .expect("a token for the federated identity");
        let response = exchange(&http, &azure, aad.token.secret()).await;
        assert_eq!(response.status(), 200);
        let refresh_token = response.json_body().await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(claims(&refresh_token)["sub"], client_id);
        refresh_tokens.push(refresh_token);
    }
    assert_ne!(refresh_tokens[0], refresh_tokens[1]);
    let owner = azure.refresh_token_owner();
    assert_eq!(owner(&refresh_tokens[0]).as_deref(), Some("client-a"));
    assert_eq!(owner(&refresh_tokens[1]).as_deref(), Some("client-b"));
    let forged = unsigned_jwt(&serde_json::json!({"sub": "client-a", "exp": unix_now() + 600}));
    assert_eq!(owner(&forged), None);

    let calls = azure.assertion_calls();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.client_id.as_str(), c.claims["sub"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("client-a", "system:serviceaccount:team-a:puller"),
            ("client-b", "system:serviceaccount:team-b:puller"),
        ]
    );
    assert_eq!(calls[0].tenant, "tenant-wi");
    assert_eq!(
        calls[0].claims["aud"],
        serde_json::json!(["api://AzureADTokenExchange"])
    );
    let recorded = format!("{calls:?}");
    assert!(!recorded.contains("eyJ"), "no raw assertion is kept: {recorded}");
}

#[tokio::test]
async fn an_unfederated_workload_identity_is_refused_like_entra() {
    regcred_testenv::init_crypto();
    let azure = Azure::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = http_trusting(&azure);
    azure.deny_client("client-b");
    let err = workload_identity(&azure, dir.path(), "team-b", "client-b")
        .get_token(&[ACR_SCOPE], None)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("AADSTS700213"), "{err:?}");
    workload_identity(&azure, dir.path(), "team-a", "client-a")
        .get_token(&[ACR_SCOPE], None)
        .await
        .expect("other clients are unaffected");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", "client-b")
        .append_pair("scope", ACR_SCOPE)
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair(
            "client_assertion",
            &service_account_jwt("team-b", "puller", "api://AzureADTokenExchange"),
        )
        .finish();
    let response = http
        .post(format!("{}tenant-wi/oauth2/v2.0/token", azure.authority_host()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.json_body().await;
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with("AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:team-b:puller'"),
        "{description}"
    );

    let calls = azure.assertion_calls();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.client_id.as_str(), c.claims["sub"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("client-b", "system:serviceaccount:team-b:puller"),
            ("client-a", "system:serviceaccount:team-a:puller"),
            ("client-b", "system:serviceaccount:team-b:puller"),
        ],
        "refused calls are recorded too"
    );
    assert_eq!(azure.token_calls(Grant::ClientAssertion), 3);
    azure.allow_client("client-b");
    workload_identity(&azure, dir.path(), "team-b", "client-b")
        .get_token(&[ACR_SCOPE], None)
        .await
        .expect("an allowed client gets its token again");
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

// ------------------------------------------------------------------- Registry

/// The registry's answer to pulling `repository:v1` with Basic credentials
/// through the Bearer token flow: the token server's status, then (if it gave
/// a token) the manifest's status and `WWW-Authenticate`.
async fn pull(registry: &Registry, user: &str, password: &str, repository: &str) -> (u16, Option<(u16, String)>) {
    let ca = reqwest::Certificate::from_pem(registry.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let realm = registry.realm().expect("a token server");
    let token = http
        .get(format!(
            "{realm}?service={}&scope=repository:{repository}:pull",
            registry::SERVICE
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    let status = token.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let token = token.json_body().await["token"].as_str().unwrap().to_string();
    let manifest = http
        .get(format!("https://{}/v2/{repository}/manifests/v1", registry.host()))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = manifest
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, Some((manifest.status().as_u16(), challenge)))
}

#[tokio::test]
async fn registry_grants_repositories_by_password_for_one_shared_username() {
    regcred_testenv::init_crypto();
    let grants: registry::Grants = Arc::new(|user, password| {
        let repository = match password {
            p if p == moto::ecr_password_for_role(TEAM_A_ROLE) => "team-a/app",
            p if p == moto::ecr_password_for_role(TEAM_B_ROLE) => "team-b/app",
            _ => return Vec::new(),
        };
        if user == "AWS" {
            vec![repository.to_string()]
        } else {
            Vec::new()
        }
    });
    let registry = Registry::start(Auth::Grants { grants })
        .await
        .expect("the registry starts");
    registry.push_image("team-a/app", "v1").await.unwrap();
    registry.push_image("team-b/app", "v1").await.unwrap();
    let password_a = moto::ecr_password_for_role(TEAM_A_ROLE);
    let password_b = moto::ecr_password_for_role(TEAM_B_ROLE);

    let (token, manifest) = pull(&registry, "AWS", &password_a, "team-a/app").await;
    assert_eq!((token, manifest.map(|m| m.0)), (200, Some(200)));
    let (token, manifest) = pull(&registry, "AWS", &password_b, "team-b/app").await;
    assert_eq!((token, manifest.map(|m| m.0)), (200, Some(200)));

    let (token, manifest) = pull(&registry, "AWS", &password_a, "team-b/app").await;
    assert_eq!(token, 200, "known credentials get a token without the access");
    let (status, challenge) = manifest.unwrap();
    assert_eq!(status, 401);
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    assert_eq!(
        pull(&registry, "AWS", "123456789012-auth-token", "team-a/app").await,
        (401, None)
    );
    assert_eq!(pull(&registry, "someone", &password_a, "team-a/app").await, (401, None));
    assert_eq!(registry.token_requests(), 5);
}
