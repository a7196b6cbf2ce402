//! azure_identity configured the way the operator process will be: by
//! environment only (`AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`,
//! `IDENTITY_HEADER`, and `SSL_CERT_FILE` to trust the fake's CA), with the
//! SDK's default HTTP transport. The environment is process-wide, so this
//! binary holds exactly one test.

use azure_core::credentials::TokenCredential;
use azure_identity::{
    ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use regcred_testenv::fakes::azure::{Azure, Grant, ManagedIdentityRequest};

const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

#[test]
fn azure_identity_reaches_the_fake_through_environment_variables_alone() {
    regcred_testenv::init_crypto();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let azure = runtime.block_on(Azure::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, azure.ca_pem()).unwrap();
    let set_env = |name: &str, value: &str| {
        // SAFETY: this binary's only test; besides it, only the fake's
        // server thread runs, and that never reads the environment.
        unsafe { std::env::set_var(name, value) }
    };
    set_env("SSL_CERT_FILE", ca_file.to_str().unwrap());
    set_env("AZURE_AUTHORITY_HOST", &azure.authority_host());
    set_env("IDENTITY_ENDPOINT", &azure.identity_endpoint());
    set_env("IDENTITY_HEADER", &azure.identity_header());

    runtime.block_on(async {
        let system_assigned = ManagedIdentityCredential::new(None).unwrap();
        let first = system_assigned
            .get_token(&[ACR_SCOPE], None)
            .await
            .expect("a managed-identity token");
        assert_eq!(
            azure.last_managed_identity_request(),
            Some(ManagedIdentityRequest {
                resource: "https://containerregistry.azure.net".into(),
                client_id: None,
            })
        );
        let again = system_assigned.get_token(&[ACR_SCOPE], None).await.unwrap();
        assert_eq!(
            again.token.secret(),
            first.token.secret(),
            "cached until 5 min before expires_on"
        );
        assert_eq!(azure.managed_identity_calls(), 1);

        let user_assigned = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: Some(UserAssignedId::ClientId("mi-client".into())),
            ..Default::default()
        }))
        .unwrap();
        user_assigned.get_token(&[ACR_SCOPE], None).await.unwrap();
        let request = azure.last_managed_identity_request().unwrap();
        assert_eq!(request.client_id.as_deref(), Some("mi-client"));

        let secret = ClientSecretCredential::new("tenant-e", "client-e".into(), "secret-e".into(), None).unwrap();
        let aad = secret
            .get_token(&[ACR_SCOPE], None)
            .await
            .expect("a token via AZURE_AUTHORITY_HOST");
        assert_eq!(azure.token_calls(Grant::ClientSecret), 1);

        // A default reqwest client (what the ACR exchange will use) trusts
        // SSL_CERT_FILE the same way.
        let form = format!(
            "grant_type=access_token&service={}&tenant=tenant-e&access_token={}",
            azure.registry_host(),
            aad.token.secret()
        );
        let response = reqwest::Client::new()
            .post(format!("https://{}/oauth2/exchange", azure.registry_host()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("the exchange over https trusting SSL_CERT_FILE");
        assert_eq!(response.status(), 200);

        set_env("IDENTITY_HEADER", "not-the-header");
        let wrong_header = ManagedIdentityCredential::new(None).unwrap();
        assert!(wrong_header.get_token(&[ACR_SCOPE], None).await.is_err());
        assert_eq!(
            azure.managed_identity_calls(),
            3,
            "the request with the wrong header arrived and was refused"
        );
    });
}
