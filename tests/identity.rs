//! `identity: PerServiceAccount` end to end (issue 22): each selected
//! ServiceAccount gets a credential of the cloud identity its own annotation
//! names, minted from a token the real kube-apiserver issued for it alone
//! (TokenRequest), exchanged at moto's STS and ECR, the Google STS / IAM
//! Credentials fake, or the Entra ID + ACR fake. regcred runs as the chart
//! runs it (its ServiceAccount, exactly the chart's RBAC with
//! `serviceaccounts/token` create, and the chart's confinement policies with
//! the `-tokens` one): the shared confined operator where the flags allow it,
//! a confined harness of the test's own where it restarts the operator or
//! needs another CA or another `confinement.tokenAudiences`.
//!
//! What the fakes received is decoded (claims only, the fakes never keep a
//! token): every exchange presents the token of exactly the ServiceAccount
//! whose Secret it fills, with the configured audience.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use regcred::api::{FailedServiceAccount, IdentityCounts, RegistryCredentialStatus};
use regcred_testenv::eventually;
use regcred_testenv::fakes::azure::Azure;
use regcred_testenv::fakes::google_sts::{GoogleSts, access_token_for};
use regcred_testenv::fakes::moto::{Moto, WebIdentityCall, ecr_password_for_role};
use serde_json::{Value, json};
use support::shared::Tenant;
use support::*;

const REGION: &str = "us-east-1";
const ROLE_A: &str = "arn:aws:iam::111111111111:role/team-a";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/team-b";
const ROLE_C: &str = "arn:aws:iam::333333333333:role/team-c";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
const CLIENT_ANNOTATION: &str = "azure.workload.identity/client-id";
const TENANT_ANNOTATION: &str = "azure.workload.identity/tenant-id";
const POOL_PROVIDER: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/cluster";
/// The prefix of every JWT whose header starts with `{"alg"`: a
/// ServiceAccount token, base64url-encoded.
const JWT_PREFIX: &str = "eyJhbGci";
/// Waits that span a backoff or a renewal.
const LONG: Duration = Duration::from_secs(150);

// --- What the tests write -------------------------------------------------

/// The ECR provider in `PerServiceAccount` mode, STS and ECR both at `moto`.
fn ecr_per_sa(moto: &Moto) -> Value {
    json!({"ecr": {
        "region": REGION,
        "identity": "PerServiceAccount",
        "endpointUrl": moto.url(),
        "stsEndpointUrl": moto.url(),
    }})
}

/// A RegistryCredential for the namespaces `namespaces`, the ServiceAccounts `sas` in them.
fn per_sa_rc(name: &str, provider: Value, namespaces: &[&str], sas: &[&str]) -> Value {
    let mut rc = rc(name, provider, json!({"names": namespaces}));
    rc["spec"]["target"]["serviceAccounts"] = json!({"names": sas});
    rc
}

/// ServiceAccount `ns/name` with `annotations`.
async fn annotated_sa(client: &Client, ns: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount created")
}

/// Set (`Some`) or remove (`None`) one annotation of ServiceAccount `ns/name`.
async fn annotate_sa(client: &Client, ns: &str, name: &str, key: &str, value: Option<&str>) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ServiceAccount annotated");
}

// --- What the tests read --------------------------------------------------

/// The one registry of a `.dockerconfigjson`: (host, username, password).
fn only_auth(secret: &Secret) -> (String, String, String) {
    let config = docker_config(secret);
    let auths = config["auths"].as_object().expect("auths");
    assert_eq!(auths.len(), 1, "one registry per Secret: {:?}", auths.keys());
    let (host, entry) = auths.iter().next().unwrap();
    let text = |k: &str| entry[k].as_str().unwrap_or_default().to_string();
    (host.clone(), text("username"), text("password"))
}

fn ecr_host(role: &str) -> String {
    let account = role.split(':').nth(4).unwrap();
    format!("{account}.dkr.ecr.{REGION}.amazonaws.com")
}

fn counts(status: &RegistryCredentialStatus) -> IdentityCounts {
    status.identities.clone().unwrap_or_default()
}

/// How many selected ServiceAccounts hold a valid credential, of how many.
fn valid_of(status: &RegistryCredentialStatus, valid: u32, selected: u32) -> bool {
    let c = counts(status);
    c.valid == valid && c.selected == selected
}

fn failed_sa<'a>(status: &'a RegistryCredentialStatus, ns: &str, sa: &str) -> Option<&'a FailedServiceAccount> {
    status
        .failed_service_accounts
        .iter()
        .find(|f| f.namespace == ns && f.name == sa)
}

fn subject(ns: &str, sa: &str) -> String {
    format!("system:serviceaccount:{ns}:{sa}")
}

/// The `aud` claim as a list (a JWT may carry one string or an array).
fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

/// Assert a token's claims are those of ServiceAccount `ns/sa` (uid
/// included), for exactly `audience`, living `lifetime` seconds.
fn assert_token_of(claims: &Value, ns: &str, sa: &ServiceAccount, audience: &str, lifetime: i64) {
    let what = format!("the token presented for {ns}/{}", sa.name_any());
    assert_eq!(claims["sub"], subject(ns, &sa.name_any()), "{what}: {claims}");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"].as_str(),
        sa.uid().as_deref(),
        "{what} is of this very ServiceAccount (uid): {claims}"
    );
    assert_eq!(audiences(claims), [audience], "{what}: only the configured audience");
    let (exp, iat) = (claims["exp"].as_i64().unwrap(), claims["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, lifetime, "{what}: lifetime");
}

/// Wait up to `timeout` for `rc`'s status to satisfy `pred`.
async fn wait_status_long(
    h: &impl Cluster,
    rc: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&RegistryCredentialStatus) -> bool,
) -> RegistryCredentialStatus {
    let api = h.rcs();
    eventually(timeout, what, || {
        let api = api.clone();
        let pred = &pred;
        async move { api.get(rc).await.ok()?.status.filter(|s| pred(s)) }
    })
    .await
}

/// Wait for a Warning Event about RegistryCredential `rc` with `reason`
/// whose note says `says`.
async fn wait_rc_event(client: &Client, rc: &str, reason: &str, says: &str) -> Event {
    let events: Api<Event> = Api::all(client.clone());
    eventually(WAIT, &format!("a Warning Event {reason} on {rc} saying {says}"), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                regarding(e) == Some(rc)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains(says))
            })
        }
    })
    .await
}

async fn events_text(client: &Client) -> String {
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    serde_json::to_string(&events.items).unwrap()
}

/// The managed Secrets of RegistryCredential `rc` in `ns`, by name.
async fn secrets_of(h: &impl Cluster, ns: &str, rc: &str) -> BTreeMap<String, Secret> {
    let params = ListParams::default().labels(&format!("regcred.dev/credential={rc}"));
    h.secrets(ns)
        .list(&params)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect()
}

/// resourceVersions of every Secret and ServiceAccount in `namespaces`.
async fn object_versions(h: &impl Cluster, namespaces: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for s in h.secrets(ns).list(&ListParams::default()).await.unwrap() {
            out.insert(format!("secret/{ns}/{}", s.name_any()), s.resource_version().unwrap());
        }
        for sa in h.sas(ns).list(&ListParams::default()).await.unwrap() {
            out.insert(format!("sa/{ns}/{}", sa.name_any()), sa.resource_version().unwrap());
        }
    }
    out
}

/// Every ServiceAccount token (a JWT whose `sub` is a ServiceAccount) in `text`.
fn service_account_tokens(text: &str) -> Vec<String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    text.split(|c: char| !token_char(c))
        .filter(|w| w.starts_with("eyJ") && w.matches('.').count() == 2)
        .filter(|w| {
            let payload = w.split('.').nth(1).unwrap_or_default();
            URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|c| c["sub"].as_str().map(|s| s.starts_with("system:serviceaccount:")))
                .unwrap_or(false)
        })
        .map(String::from)
        .collect()
}

/// Assert `text` (logs, Events, status, Secrets) carries no ServiceAccount
/// token and none of `secrets`.
fn assert_no_leak(what: &str, text: &str, secrets: &[&str]) {
    let tokens = service_account_tokens(text);
    assert!(
        tokens.is_empty(),
        "{what} carries {} ServiceAccount token(s)",
        tokens.len()
    );
    for s in secrets {
        assert!(!text.contains(s), "{what} carries a registry credential");
    }
}

/// Everything of `rc` a user or log pipeline sees: its status, the Events
/// of the cluster, and `logs`.
async fn visible_text(h: &impl Cluster, rc: &str, logs: &str) -> String {
    let status = h.rcs().get(rc).await.unwrap().status;
    format!(
        "{logs}\n{}\n{}",
        serde_json::to_string(&status).unwrap(),
        events_text(h.client()).await
    )
}

/// The web identity calls (STS) for `role`.
fn calls_for(calls: &[WebIdentityCall], role: &str) -> usize {
    calls.iter().filter(|c| c.role_arn == role).count()
}

// --- ECR -----------------------------------------------------------------

/// Two tenants name two roles: each gets the ECR password of its own role,
/// in its own Secret, linked from that ServiceAccount only; a selected
/// ServiceAccount without the annotation gets nothing and is listed; STS
/// saw exactly each ServiceAccount's own token with the ECR audience.
#[tokio::test]
async fn ecr_tenants_pull_with_their_own_roles_from_their_own_tokens() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    let tenants = [("team-a", ROLE_A), ("team-b", ROLE_B)];
    let mut defaults = BTreeMap::new();
    for (ns, role) in tenants {
        create_namespace(&h.client, ns, &[]).await;
        defaults.insert(
            ns,
            annotated_sa(&h.client, ns, "default", &[(ROLE_ANNOTATION, role)]).await,
        );
        // Names the role too, but is not selected: it must get nothing.
        annotated_sa(&h.client, ns, "other", &[(ROLE_ANNOTATION, role)]).await;
    }
    create_service_account(&h.client, "team-a", "builder", &[]).await;
    let mut tenants_rc = per_sa_rc(
        "tenants",
        ecr_per_sa(&moto),
        &["team-a", "team-b"],
        &["default", "builder"],
    );
    tenants_rc["spec"]["target"]["secretName"] = json!("ecr");
    let started = Instant::now();
    apply_rc(&h.client, tenants_rc).await;

    let status = h
        .wait_status("tenants", "2 of 3 selected ServiceAccounts valid", |s| {
            valid_of(s, 2, 3)
        })
        .await;
    println!(
        "BENCH identity ecr: 2 tenants minted in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        counts(&status),
        IdentityCounts {
            selected: 3,
            valid: 2,
            without_identity: 1,
            failed: 0
        }
    );
    assert_eq!(status.summary.as_deref(), Some("2/3 SA"), "the Synced printer column");
    let [missing] = &status.failed_service_accounts[..] else {
        panic!("one ServiceAccount listed: {:?}", status.failed_service_accounts)
    };
    assert_eq!(
        (missing.namespace.as_str(), missing.name.as_str()),
        ("team-a", "builder")
    );
    assert_eq!(missing.reason, "IdentityMissing");
    assert!(missing.message.contains(ROLE_ANNOTATION), "{}", missing.message);
    assert_eq!((missing.identity.as_ref(), missing.retry_time.as_ref()), (None, None));
    assert_eq!(
        (status.namespaces.targeted, status.namespaces.synced),
        (2, 1),
        "team-a has a ServiceAccount without a credential"
    );
    assert_eq!(condition(&status, "Synced").reason, "IdentityMissing");
    assert_eq!(condition(&status, "Issued").status, "True", "no exchange failed");
    let hosts: BTreeSet<String> = status.registries.iter().cloned().collect();
    assert_eq!(hosts, BTreeSet::from([ecr_host(ROLE_A), ecr_host(ROLE_B)]));

    let mut passwords = Vec::new();
    for (ns, role) in tenants {
        let sa = &defaults[ns];
        let secret = h.secrets(ns).get("ecr-default").await.unwrap();
        let (host, user, password) = only_auth(&secret);
        assert_eq!((host, user), (ecr_host(role), "AWS".to_string()), "{ns}");
        assert_eq!(password, ecr_password_for_role(role), "{ns} pulls as its own role");
        let a = secret.annotations();
        assert_eq!(a["regcred.dev/service-account"], "default");
        assert_eq!(Some(&a["regcred.dev/service-account-uid"]), sa.uid().as_ref());
        assert_eq!(a["regcred.dev/identity"], role);
        assert_eq!(a["regcred.dev/registries"], ecr_host(role));
        assert_eq!(
            secrets_of(&h, ns, "tenants").await.into_keys().collect::<Vec<_>>(),
            ["ecr-default"],
            "{ns}: one Secret, for the one annotated selected ServiceAccount"
        );
        assert_eq!(
            pull_secret_names(&h.sas(ns).get("default").await.unwrap()),
            ["ecr-default"]
        );
        assert!(
            pull_secret_names(&h.sas(ns).get("other").await.unwrap()).is_empty(),
            "{ns}/other is not selected: not linked"
        );
        passwords.push(password);
    }
    assert_ne!(passwords[0], passwords[1], "two roles, two credentials");
    assert!(pull_secret_names(&h.sas("team-a").get("builder").await.unwrap()).is_empty());

    let calls = moto.web_identity_calls();
    assert_eq!(
        calls.len(),
        2,
        "one AssumeRoleWithWebIdentity per annotated ServiceAccount: {calls:?}"
    );
    for (ns, role) in tenants {
        let [call] = &calls.iter().filter(|c| c.role_arn == role).collect::<Vec<_>>()[..] else {
            panic!("one call for {role}: {calls:?}")
        };
        assert_token_of(&call.claims, ns, &defaults[ns], "sts.amazonaws.com", 600);
        assert_eq!(call.session_name, format!("regcred.{ns}.default"));
    }
    assert_eq!(moto.ecr_token_calls(), 2);

    // No churn: a settled state mints nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(moto.web_identity_calls().len(), 2, "re-minted a valid credential");

    let text = visible_text(&h, "tenants", &h.shared.operator.logs()).await;
    let secrets = passwords.iter().map(String::as_str).collect::<Vec<_>>();
    assert_no_leak("logs, Events and status", &text, &secrets);
    assert!(
        !h.shared.operator.logs().contains(JWT_PREFIX),
        "a JWT in the operator's log"
    );
    for (ns, _) in tenants {
        let all = serde_json::to_string(&h.secrets(ns).list(&ListParams::default()).await.unwrap().items).unwrap();
        assert_no_leak(&format!("the Secrets of {ns}"), &all, &[]);
    }
}

/// A role whose trust refuses: that ServiceAccount is listed with the
/// role and a retry time, an Event says so, the other tenant is untouched,
/// and once the trust admits it, it recovers on its own.
#[tokio::test]
async fn a_refused_role_fails_only_its_service_account_and_recovers() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    for (ns, role) in [("ref-a", ROLE_A), ("ref-b", ROLE_B)] {
        create_namespace(&h.client, ns, &[]).await;
        annotated_sa(&h.client, ns, "default", &[(ROLE_ANNOTATION, role)]).await;
    }
    moto.deny_role(ROLE_B);
    apply_rc(
        &h.client,
        per_sa_rc("refusal", ecr_per_sa(&moto), &["ref-a", "ref-b"], &["default"]),
    )
    .await;

    let status = h
        .wait_status("refusal", "ref-b refused, ref-a valid", |s| {
            valid_of(s, 1, 2) && failed_sa(s, "ref-b", "default").is_some()
        })
        .await;
    let refused = failed_sa(&status, "ref-b", "default").unwrap();
    assert_eq!(refused.reason, "IdentityRefused", "{refused:?}");
    assert_eq!(refused.identity.as_deref(), Some(ROLE_B));
    assert!(refused.message.contains(ROLE_B), "names the role: {}", refused.message);
    assert!(
        refused.message.contains(&subject("ref-b", "default")),
        "names whom the trust must admit: {}",
        refused.message
    );
    assert!(refused.retry_time.is_some(), "a retry time: {refused:?}");
    assert_eq!(status.failed_service_accounts.len(), 1);
    assert_eq!(counts(&status).failed, 1);
    assert_eq!(condition(&status, "Issued").reason, "IdentityRefused");
    assert_eq!(status.summary.as_deref(), Some("1/2 SA"));
    assert!(h.secrets("ref-b").get_opt("refusal-default").await.unwrap().is_none());
    assert!(pull_secret_names(&h.sas("ref-b").get("default").await.unwrap()).is_empty());
    let event = wait_rc_event(&h.client, "refusal", "IdentityRefused", ROLE_B).await;
    assert!(event.note.unwrap().contains("ref-b/default"));

    let good = h.secrets("ref-a").get("refusal-default").await.unwrap();
    assert_eq!(only_auth(&good).2, ecr_password_for_role(ROLE_A));
    // The backoff retries the refused role (10 s), and only it.
    eventually(LONG, "a retry of the refused role", || {
        let n = calls_for(&moto.web_identity_calls(), ROLE_B);
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let calls = moto.web_identity_calls();
    assert_eq!(calls_for(&calls, ROLE_A), 1, "the admitted tenant was exchanged again");
    let now = h.secrets("ref-a").get("refusal-default").await.unwrap();
    assert_eq!(
        now.resource_version(),
        good.resource_version(),
        "the other tenant's Secret was rewritten"
    );

    let refused_at = Instant::now();
    moto.allow_role(ROLE_B);
    let status = wait_status_long(&h, "refusal", LONG, "ref-b recovered", |s| {
        valid_of(s, 2, 2) && s.failed_service_accounts.is_empty()
    })
    .await;
    println!(
        "BENCH identity refusal: recovered {} ms after the trust admitted the role",
        refused_at.elapsed().as_millis()
    );
    assert!(is_condition(&status, "Ready", "True"), "{:?}", status.conditions);
    let recovered = h.secrets("ref-b").get("refusal-default").await.unwrap();
    assert_eq!(only_auth(&recovered).2, ecr_password_for_role(ROLE_B));
    h.wait_pull_secrets("ref-b", "default", &["refusal-default"]).await;
    let now = h.secrets("ref-a").get("refusal-default").await.unwrap();
    assert_eq!(now.resource_version(), good.resource_version());
    let calls = moto.web_identity_calls();
    assert!(
        calls
            .iter()
            .all(|c| c.claims["sub"] == subject(if c.role_arn == ROLE_A { "ref-a" } else { "ref-b" }, "default"))
    );
}

/// A restarted operator re-mints nothing still valid: no web identity call,
/// no write, for the ServiceAccounts it had served; it does exchange for a
/// ServiceAccount that appeared since. The tokens carry the custom audience
/// and lifetime of `serviceAccountToken`, which the chart's policy admits
/// once `confinement.tokenAudiences` lists it.
#[tokio::test]
async fn a_restart_re_mints_nothing_still_valid_with_a_custom_audience() {
    const AUDIENCE: &str = "regcred-test.example.com";
    let moto = Moto::start().await.expect("moto");
    let cp = Harness::control_plane().await;
    let audiences = format!("confinement.tokenAudiences={{sts.amazonaws.com,api://AzureADTokenExchange,{AUDIENCE}}}");
    confine(&cp, &[&audiences]).await;
    let operator = start_operator(&cp);
    let client = cp.client().await.unwrap();
    let mut h = Harness { client, operator, cp };
    let mut sas = BTreeMap::new();
    for (ns, role) in [("rs-a", ROLE_A), ("rs-b", ROLE_B)] {
        create_namespace(&h.client, ns, &[]).await;
        sas.insert(
            ns,
            annotated_sa(&h.client, ns, "default", &[(ROLE_ANNOTATION, role)]).await,
        );
    }
    let mut provider = ecr_per_sa(&moto);
    provider["ecr"]["serviceAccountToken"] = json!({"audience": AUDIENCE, "expirationSeconds": 900});
    apply_rc(
        &h.client,
        per_sa_rc("restart", provider, &["rs-a", "rs-b", "rs-c"], &["default"]),
    )
    .await;
    h.wait_status("restart", "2/2 SA", |s| valid_of(s, 2, 2)).await;
    let calls = moto.web_identity_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (ns, role) in [("rs-a", ROLE_A), ("rs-b", ROLE_B)] {
        let call = calls.iter().find(|c| c.role_arn == role).unwrap();
        assert_token_of(&call.claims, ns, &sas[ns], AUDIENCE, 900);
    }

    let before = object_versions(&h, &["rs-a", "rs-b"]).await;
    h.operator.stop();
    let stopped = Instant::now();
    h.operator = start_operator(&h.cp);
    // A ServiceAccount that appears after the restart is exchanged for: the
    // restarted operator has reconciled the credential (every selected
    // ServiceAccount) by the time its Secret exists.
    create_namespace(&h.client, "rs-c", &[]).await;
    let new_sa = annotated_sa(&h.client, "rs-c", "default", &[(ROLE_ANNOTATION, ROLE_C)]).await;
    let status = h
        .wait_status("restart", "3/3 SA after the restart", |s| valid_of(s, 3, 3))
        .await;
    println!(
        "BENCH identity restart: 3/3 SA {} ms after the operator stopped",
        stopped.elapsed().as_millis()
    );
    assert!(is_condition(&status, "Ready", "True"));
    let secret = h.secrets("rs-c").get("restart-default").await.unwrap();
    assert_eq!(only_auth(&secret).2, ecr_password_for_role(ROLE_C));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = moto.web_identity_calls();
    let since: Vec<_> = after[calls.len()..].iter().collect();
    assert_eq!(since.len(), 1, "a restart re-minted valid credentials: {since:?}");
    assert_eq!(since[0].role_arn, ROLE_C);
    assert_token_of(&since[0].claims, "rs-c", &new_sa, AUDIENCE, 900);
    assert_eq!(
        before,
        object_versions(&h, &["rs-a", "rs-b"]).await,
        "a restart rewrote Secrets or ServiceAccounts"
    );
    assert_eq!(moto.ecr_token_calls(), 3);
}

/// Throttled web identity calls: the ServiceAccounts show `Throttled` with
/// a retry time, and recover by themselves.
#[tokio::test]
async fn throttled_exchanges_show_in_status_and_recover() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    for (ns, role) in [("thr-a", ROLE_A), ("thr-b", ROLE_B)] {
        create_namespace(&h.client, ns, &[]).await;
        annotated_sa(&h.client, ns, "default", &[(ROLE_ANNOTATION, role)]).await;
    }
    // The SDK tries each call twice: two calls per ServiceAccount.
    moto.throttle_web_identity(4);
    let started = Instant::now();
    apply_rc(
        &h.client,
        per_sa_rc("throttle", ecr_per_sa(&moto), &["thr-a", "thr-b"], &["default"]),
    )
    .await;

    // Both are throttled, in one pass or two: note each as it shows.
    let seen = std::cell::RefCell::new(BTreeSet::new());
    let api = h.rcs();
    let status = eventually(LONG, "both ServiceAccounts Throttled, then recovered", || {
        let api = api.clone();
        let seen = &seen;
        async move {
            let s = api.get("throttle").await.ok()?.status?;
            for f in &s.failed_service_accounts {
                assert_eq!(f.reason, "Throttled", "{f:?}");
                assert!(f.retry_time.is_some(), "Throttled without a retry time: {f:?}");
                assert!(f.identity.is_some(), "{f:?}");
                seen.borrow_mut().insert(f.namespace.clone());
            }
            (valid_of(&s, 2, 2) && s.failed_service_accounts.is_empty()).then_some(s)
        }
    })
    .await;
    println!(
        "BENCH identity throttled: recovered in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        seen.into_inner(),
        BTreeSet::from(["thr-a".to_string(), "thr-b".to_string()]),
        "status listed each throttled ServiceAccount"
    );
    assert!(is_condition(&status, "Ready", "True"));
    assert_eq!(
        moto.web_identity_calls().len(),
        6,
        "4 throttled attempts, then one success each"
    );
    for (ns, role) in [("thr-a", ROLE_A), ("thr-b", ROLE_B)] {
        let secret = h.secrets(ns).get("throttle-default").await.unwrap();
        assert_eq!(only_auth(&secret).2, ecr_password_for_role(role));
    }

    // A namespace no longer targeted loses its Secrets and links.
    patch_rc(
        &h.client,
        "throttle",
        json!({"spec": {"target": {"namespaces": {"names": ["thr-a"]}}}}),
    )
    .await;
    h.wait_secret_gone("thr-b", "throttle-default").await;
    h.wait_pull_secrets("thr-b", "default", &[]).await;
    h.wait_status("throttle", "1/1 SA", |s| valid_of(s, 1, 1)).await;
    assert_eq!(
        pull_secret_names(&h.sas("thr-a").get("default").await.unwrap()),
        ["throttle-default"]
    );
    assert_eq!(moto.web_identity_calls().len(), 6, "un-targeting re-minted");
}

/// The chart's `-tokens` policy: an audience it does not list is denied to
/// regcred, and status says so for that ServiceAccount.
#[tokio::test]
async fn an_audience_the_chart_does_not_admit_is_denied_and_reported() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    create_namespace(&h.client, "aud-x", &[]).await;
    annotated_sa(&h.client, "aud-x", "default", &[(ROLE_ANNOTATION, ROLE_A)]).await;
    let mut provider = ecr_per_sa(&moto);
    provider["ecr"]["serviceAccountToken"] = json!({"audience": "https://kubernetes.default.svc"});
    apply_rc(&h.client, per_sa_rc("audience", provider, &["aud-x"], &["default"])).await;
    let status = h
        .wait_status("audience", "aud-x/default failed", |s| {
            failed_sa(s, "aud-x", "default").is_some()
        })
        .await;
    let failed = failed_sa(&status, "aud-x", "default").unwrap();
    assert_eq!(failed.reason, "TokenRequestFailed", "{failed:?}");
    assert!(
        failed.message.contains("only for one cloud audience"),
        "the policy's message: {}",
        failed.message
    );
    assert!(moto.web_identity_calls().is_empty(), "no token, no exchange");
}

/// Re-annotating, deleting a ServiceAccount, switching from Shared and
/// deleting the RegistryCredential each leave no Secret and no link behind.
#[tokio::test]
async fn per_service_account_secrets_follow_their_service_accounts() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    create_namespace(&h.client, "lc-a", &[]).await;
    create_namespace(&h.client, "lc-b", &[]).await;
    annotated_sa(&h.client, "lc-a", "default", &[(ROLE_ANNOTATION, ROLE_A)]).await;
    annotated_sa(&h.client, "lc-a", "app", &[(ROLE_ANNOTATION, ROLE_B)]).await;
    annotated_sa(&h.client, "lc-b", "default", &[(ROLE_ANNOTATION, ROLE_A)]).await;
    apply_rc(
        &h.client,
        per_sa_rc("lc", ecr_per_sa(&moto), &["lc-a", "lc-b"], &["default", "app"]),
    )
    .await;
    h.wait_status("lc", "3/3 SA", |s| valid_of(s, 3, 3)).await;
    h.wait_pull_secrets("lc-a", "default", &["lc-default"]).await;
    h.wait_pull_secrets("lc-a", "app", &["lc-app"]).await;
    h.wait_pull_secrets("lc-b", "default", &["lc-default"]).await;
    let app = h.secrets("lc-a").get("lc-app").await.unwrap();
    assert_eq!(only_auth(&app).2, ecr_password_for_role(ROLE_B));

    // The annotation goes: the Secret and the link go, status says why.
    annotate_sa(&h.client, "lc-a", "app", ROLE_ANNOTATION, None).await;
    h.wait_secret_gone("lc-a", "lc-app").await;
    h.wait_pull_secrets("lc-a", "app", &[]).await;
    let status = h.wait_status("lc", "2/3 SA", |s| valid_of(s, 2, 3)).await;
    assert_eq!(failed_sa(&status, "lc-a", "app").unwrap().reason, "IdentityMissing");
    assert!(h.secrets("lc-a").get_opt("lc-default").await.unwrap().is_some());

    // Re-created under the same name, a ServiceAccount is another one (uid):
    // its Secret is minted again, from the new one's token.
    let old_uid = h.sas("lc-a").get("default").await.unwrap().uid().unwrap();
    h.sas("lc-a").delete("default", &DeleteParams::default()).await.unwrap();
    let again = annotated_sa(&h.client, "lc-a", "default", &[(ROLE_ANNOTATION, ROLE_A)]).await;
    let new_uid = again.uid().unwrap();
    assert_ne!(old_uid, new_uid);
    h.wait_secret(
        "lc-a",
        "lc-default",
        "the Secret of the re-created ServiceAccount",
        |s| s.annotations().get("regcred.dev/service-account-uid") == Some(&new_uid),
    )
    .await;
    h.wait_pull_secrets("lc-a", "default", &["lc-default"]).await;
    let calls = moto.web_identity_calls();
    let last = calls
        .iter()
        .rev()
        .find(|c| c.claims["sub"] == subject("lc-a", "default"))
        .unwrap();
    assert_token_of(&last.claims, "lc-a", &again, "sts.amazonaws.com", 600);

    // The ServiceAccount goes: its Secret goes.
    h.sas("lc-b").delete("default", &DeleteParams::default()).await.unwrap();
    h.wait_secret_gone("lc-b", "lc-default").await;
    h.wait_status("lc", "1/2 SA", |s| valid_of(s, 1, 2)).await;

    // Shared → PerServiceAccount: the shared Secret and its link go.
    put_aws_keys(&h.client, "lifecycle").await;
    create_namespace(&h.client, "lc-c", &[]).await;
    annotated_sa(&h.client, "lc-c", "default", &[(ROLE_ANNOTATION, ROLE_C)]).await;
    create_service_account(&h.client, "lc-c", "app", &[]).await;
    let shared =
        json!({"ecr": {"region": REGION, "auth": {"secretRef": {"name": "aws-creds"}}, "endpointUrl": moto.url()}});
    apply_rc(&h.client, per_sa_rc("lc-sw", shared, &["lc-c"], &["default", "app"])).await;
    h.wait_secret("lc-c", "lc-sw", "the shared Secret", |_| true).await;
    h.wait_pull_secrets("lc-c", "app", &["lc-sw"]).await;
    patch_rc(
        &h.client,
        "lc-sw",
        json!({"spec": {"provider": {"ecr": {"auth": null, "identity": "PerServiceAccount", "stsEndpointUrl": moto.url()}}}}),
    )
    .await;
    h.wait_secret_gone("lc-c", "lc-sw").await;
    h.wait_pull_secrets("lc-c", "default", &["lc-sw-default"]).await;
    h.wait_pull_secrets("lc-c", "app", &[]).await;
    let own = h.secrets("lc-c").get("lc-sw-default").await.unwrap();
    assert_eq!(only_auth(&own).2, ecr_password_for_role(ROLE_C));
    let status = h.wait_status("lc-sw", "1/2 SA", |s| valid_of(s, 1, 2)).await;
    assert_eq!(status.summary.as_deref(), Some("1/2 SA"));

    // The RegistryCredentials go: every per-ServiceAccount Secret and link goes.
    delete_rc(&h.client, "lc").await;
    delete_rc(&h.client, "lc-sw").await;
    h.wait_rc_gone("lc", WAIT).await;
    h.wait_rc_gone("lc-sw", WAIT).await;
    for ns in ["lc-a", "lc-b", "lc-c"] {
        for rc in ["lc", "lc-sw"] {
            let left = secrets_of(&h, ns, rc).await;
            assert!(left.is_empty(), "{ns}: {:?} left of {rc}", left.keys());
        }
        for sa in h.sas(ns).list(&ListParams::default()).await.unwrap() {
            assert!(pull_secret_names(&sa).is_empty(), "{ns}/{} still linked", sa.name_any());
        }
    }
}

// --- Google ----------------------------------------------------------------

/// The Google provider for `us-docker.pkg.dev` in `PerServiceAccount` mode at `google`.
fn gcr_per_sa(google: &GoogleSts) -> Value {
    json!({"gcr": {
        "registries": ["us-docker.pkg.dev"],
        "identity": "PerServiceAccount",
        "workloadIdentityProvider": POOL_PROVIDER,
        "stsEndpointUrl": google.url(),
        "iamCredentialsEndpointUrl": google.url(),
    }})
}

/// Wait until Secret `ns/gar-default` holds the `n`-th token of `gsa`.
async fn wait_google_token(h: &impl Cluster, ns: &str, gsa: &str, n: usize, timeout: Duration) -> Secret {
    let api = h.secrets(ns);
    let want = access_token_for(gsa, n);
    eventually(timeout, &format!("{ns}: token {n} of {gsa}"), || {
        let (api, want) = (api.clone(), want.clone());
        async move {
            let s = api.get_opt("gar-default").await.ok()??;
            (password_for(&s, "us-docker.pkg.dev").as_deref() == Some(want.as_str())).then_some(s)
        }
    })
    .await
}

/// Each identity renews on its own expiry: two Google service accounts,
/// minted 25 s apart, renew 25 s apart, and renewing one leaves the other's
/// Secret alone. Each exchange presented its ServiceAccount's own token for
/// the pool's audience.
#[tokio::test]
async fn google_identities_renew_each_on_its_own_expiry() {
    const GSA_A: &str = "team-a@proj-a.iam.gserviceaccount.com";
    const GSA_B: &str = "team-b@proj-b.iam.gserviceaccount.com";
    let google = GoogleSts::start().await.expect("google sts fake");
    // Renewed a minute before expiry: a minute after each mint.
    google.set_lifetime(Duration::from_secs(120));
    let h = Tenant::join_confined().await;
    create_namespace(&h.client, "gar-a", &[]).await;
    create_namespace(&h.client, "gar-b", &[]).await;
    let sa_a = annotated_sa(&h.client, "gar-a", "default", &[(GSA_ANNOTATION, GSA_A)]).await;
    let mut gar = per_sa_rc("gar", gcr_per_sa(&google), &["gar-a", "gar-b"], &["default"]);
    gar["spec"]["renewBefore"] = json!("1m");
    let started = Instant::now();
    apply_rc(&h.client, gar).await;
    let first_a = wait_google_token(&h, "gar-a", GSA_A, 1, WAIT).await;
    let minted_a = started.elapsed();
    let (_, user, _) = only_auth(&first_a);
    assert_eq!(user, "oauth2accesstoken");

    tokio::time::sleep(Duration::from_secs(25)).await;
    let sa_b = annotated_sa(&h.client, "gar-b", "default", &[(GSA_ANNOTATION, GSA_B)]).await;
    let first_b = wait_google_token(&h, "gar-b", GSA_B, 1, WAIT).await;
    let minted_b = started.elapsed();
    assert_eq!(
        google.issued_for(GSA_A),
        1,
        "a new tenant re-minted another's credential"
    );
    assert_ne!(
        first_a.annotations()["regcred.dev/renew-at"],
        first_b.annotations()["regcred.dev/renew-at"],
        "each identity has its own renewal time"
    );

    wait_google_token(&h, "gar-a", GSA_A, 2, LONG).await;
    let renewed_a = started.elapsed();
    let b_now = h.secrets("gar-b").get("gar-default").await.unwrap();
    assert_eq!(
        b_now.resource_version(),
        first_b.resource_version(),
        "renewing gar-a rewrote gar-b's Secret"
    );
    assert_eq!(google.issued_for(GSA_B), 1, "renewing gar-a renewed gar-b");
    wait_google_token(&h, "gar-b", GSA_B, 2, LONG).await;
    let renewed_b = started.elapsed();
    println!(
        "BENCH identity google renewal: gar-a minted {} ms, renewed {} ms; gar-b minted {} ms, renewed {} ms",
        minted_a.as_millis(),
        renewed_a.as_millis(),
        minted_b.as_millis(),
        renewed_b.as_millis()
    );
    let generates = google.generate_calls();
    for gsa in [GSA_A, GSA_B] {
        assert_eq!(
            generates.iter().filter(|g| g.service_account == gsa).count(),
            2,
            "{gsa}: one generateAccessToken per mint: {generates:?}"
        );
    }
    let exchanges = google.exchanges();
    assert_eq!(
        exchanges.len(),
        generates.len(),
        "one STS exchange per generateAccessToken"
    );
    let audience = format!("https:{POOL_PROVIDER}");
    for exchange in &exchanges {
        assert_eq!(exchange.audience, POOL_PROVIDER);
        let ns = exchange.claims["kubernetes.io"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let sa = match ns {
            "gar-a" => &sa_a,
            "gar-b" => &sa_b,
            other => panic!("a token of namespace {other:?} was exchanged"),
        };
        assert_token_of(&exchange.claims, ns, sa, &audience, 600);
    }
    // A renewal the cloud refuses keeps the last good Secret of that identity.
    let held = h.secrets("gar-a").get("gar-default").await.unwrap();
    assert_eq!(
        password_for(&held, "us-docker.pkg.dev"),
        Some(access_token_for(GSA_A, 2))
    );
    google.deny_service_account(GSA_A);
    let status = wait_status_long(&h, "gar", LONG, "gar-a's renewal refused", |s| {
        failed_sa(s, "gar-a", "default").is_some_and(|f| f.reason == "IdentityRefused")
    })
    .await;
    println!(
        "BENCH identity google renewal: gar-a's second renewal refused at {} ms",
        started.elapsed().as_millis()
    );
    let refused = failed_sa(&status, "gar-a", "default").unwrap();
    assert!(refused.message.contains(GSA_A), "{}", refused.message);
    assert_eq!(refused.identity.as_deref(), Some(GSA_A));
    let still = h.secrets("gar-a").get("gar-default").await.unwrap();
    assert_eq!(
        still.resource_version(),
        held.resource_version(),
        "a refused renewal must keep the last good Secret"
    );
    assert_eq!(
        pull_secret_names(&h.sas("gar-a").get("default").await.unwrap()),
        ["gar-default"]
    );

    let logs = h.shared.operator.logs();
    let tokens: Vec<String> = (1..=2)
        .flat_map(|n| [access_token_for(GSA_A, n), access_token_for(GSA_B, n)])
        .collect();
    let text = visible_text(&h, "gar", &logs).await;
    assert_no_leak(
        "logs, Events and status",
        &text,
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(!logs.contains(JWT_PREFIX), "a JWT in the operator's log");
}

// --- Azure -----------------------------------------------------------------

/// Two Entra apps, one per ServiceAccount (one in the spec's tenant, one in
/// its own annotated tenant): two refresh tokens, each of its own app, from
/// assertions of each ServiceAccount's own token. Re-annotated to an app
/// whose federation refuses, a ServiceAccount loses its former Secret and
/// link and is listed; the other keeps its Secret untouched.
#[tokio::test]
async fn azure_apps_per_service_account_and_a_refused_one() {
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const TENANT_B: &str = "0b0b0b0b-1111-4222-8333-444444444444";
    const CLIENT_A: &str = "aaaaaaaa-1111-4222-8333-444444444444";
    const CLIENT_B: &str = "bbbbbbbb-1111-4222-8333-444444444444";
    const CLIENT_C: &str = "cccccccc-1111-4222-8333-444444444444";
    let azure = Azure::start().await.expect("azure fake");
    let dir = regcred_testenv::scratch::dir("identity-azure").unwrap();
    let ca = dir.path().join("azure-ca.pem");
    std::fs::write(&ca, azure.ca_pem()).unwrap();
    let h = Harness::confined_with(&["--ca-bundle", ca.to_str().unwrap()], &[]).await;
    create_namespace(&h.client, "az-a", &[]).await;
    create_namespace(&h.client, "az-b", &[]).await;
    let sa_a = annotated_sa(&h.client, "az-a", "default", &[(CLIENT_ANNOTATION, CLIENT_A)]).await;
    let sa_b = annotated_sa(
        &h.client,
        "az-b",
        "default",
        &[(CLIENT_ANNOTATION, CLIENT_B), (TENANT_ANNOTATION, TENANT_B)],
    )
    .await;
    let registry = azure.registry_host();
    // The fake login server is 127.0.0.1:<port>, not *.azurecr.io.
    let provider = json!({"acr": {
        "registry": registry,
        "tenantId": TENANT,
        "authorityHost": azure.authority_host(),
        "customLoginServer": true,
        "identity": "PerServiceAccount",
    }});
    let started = Instant::now();
    apply_rc(&h.client, per_sa_rc("acr", provider, &["az-a", "az-b"], &["default"])).await;
    let status = h.wait_status("acr", "2/2 SA", |s| valid_of(s, 2, 2)).await;
    println!(
        "BENCH identity azure: 2 apps minted in {} ms",
        started.elapsed().as_millis()
    );
    assert!(is_condition(&status, "Ready", "True"));

    let owner = azure.refresh_token_owner();
    let mut refresh = Vec::new();
    for (ns, client) in [("az-a", CLIENT_A), ("az-b", CLIENT_B)] {
        let secret = h.secrets(ns).get("acr-default").await.unwrap();
        let (host, user, password) = only_auth(&secret);
        assert_eq!(
            (host.as_str(), user.as_str()),
            (registry.as_str(), "00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            owner(&password).as_deref(),
            Some(client),
            "{ns} holds its own app's refresh token"
        );
        refresh.push(password);
    }
    assert_ne!(refresh[0], refresh[1]);
    let calls = azure.assertion_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (ns, sa, client, tenant) in [("az-a", &sa_a, CLIENT_A, TENANT), ("az-b", &sa_b, CLIENT_B, TENANT_B)] {
        let call = calls
            .iter()
            .find(|c| c.client_id == client)
            .expect("an assertion per app");
        assert_eq!(
            call.tenant, tenant,
            "{ns}: the tenant of the annotation, else the spec's"
        );
        assert_token_of(&call.claims, ns, sa, "api://AzureADTokenExchange", 600);
    }

    let kept = h.secrets("az-a").get("acr-default").await.unwrap();
    azure.deny_client(CLIENT_C);
    annotate_sa(&h.client, "az-b", "default", CLIENT_ANNOTATION, Some(CLIENT_C)).await;
    let status = h
        .wait_status("acr", "az-b refused", |s| {
            failed_sa(s, "az-b", "default").is_some_and(|f| f.reason == "IdentityRefused")
        })
        .await;
    let refused = failed_sa(&status, "az-b", "default").unwrap();
    assert_eq!(
        refused.identity.as_deref(),
        Some(format!("{TENANT_B}/{CLIENT_C}").as_str())
    );
    assert!(refused.message.contains(CLIENT_C), "{}", refused.message);
    assert!(refused.retry_time.is_some());
    assert_eq!(
        status.failed_service_accounts.len(),
        1,
        "only az-b: {:?}",
        status.failed_service_accounts
    );
    h.wait_secret_gone("az-b", "acr-default").await;
    h.wait_pull_secrets("az-b", "default", &[]).await;
    wait_rc_event(&h.client, "acr", "IdentityRefused", CLIENT_C).await;
    let now = h.secrets("az-a").get("acr-default").await.unwrap();
    assert_eq!(
        now.resource_version(),
        kept.resource_version(),
        "az-a's Secret was rewritten"
    );
    assert_eq!(
        pull_secret_names(&h.sas("az-a").get("default").await.unwrap()),
        ["acr-default"]
    );

    let text = visible_text(&h, "acr", &h.operator.logs()).await;
    assert_no_leak(
        "logs, Events and status",
        &text,
        &refresh.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

/// `spec.target.secretLabels` / `secretAnnotations` reach the
/// per-ServiceAccount Secrets when they change, as they reach the shared
/// Secret (without a new exchange).
#[tokio::test]
async fn target_labels_and_annotations_reach_per_service_account_secrets() {
    let moto = Moto::start().await.expect("moto");
    let h = Tenant::join_confined().await;
    create_namespace(&h.client, "lbl-a", &[]).await;
    annotated_sa(&h.client, "lbl-a", "default", &[(ROLE_ANNOTATION, ROLE_A)]).await;
    apply_rc(&h.client, per_sa_rc("lbl", ecr_per_sa(&moto), &["lbl-a"], &["default"])).await;
    h.wait_status("lbl", "1/1 SA", |s| valid_of(s, 1, 1)).await;
    let target = json!({"secretLabels": {"team": "payments"}, "secretAnnotations": {"owner": "payments"}});
    patch_rc(&h.client, "lbl", json!({"spec": {"target": target}})).await;
    let secret = h
        .wait_secret(
            "lbl-a",
            "lbl-default",
            "the new label on the per-ServiceAccount Secret",
            |s| s.labels().get("team").map(String::as_str) == Some("payments"),
        )
        .await;
    assert_eq!(secret.annotations().get("owner").map(String::as_str), Some("payments"));
    assert_eq!(
        moto.web_identity_calls().len(),
        1,
        "metadata alone needs no new exchange"
    );
}
