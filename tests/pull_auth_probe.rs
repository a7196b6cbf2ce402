//! The pull-auth probe against a real registry (Debian's docker-registry,
//! distribution 2.8) over TLS, with Basic (htpasswd) and Bearer (token server)
//! authentication. No Kubernetes here: `regcred::pull_auth::check` is called
//! directly with the HTTP client the operator builds.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use regcred::api::PullAuthResult;
use regcred::dockerconfig::RegistryAuth;
use regcred::pull_auth::{CHECK_TIMEOUT, Probe, check};
use regcred_testenv::fakes::Fault;
use regcred_testenv::registry::{Auth, Registry};

/// Every password below contains this; no message may.
const CANARY: &str = "canary-7Qx9-pw";

fn password(user: &str) -> String {
    format!("{CANARY}-{user}")
}

fn users(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|u| (u.to_string(), password(u))).collect()
}

fn auth(registry: &Registry, user: &str, password: &str) -> RegistryAuth {
    RegistryAuth {
        registry: registry.host().to_string(),
        username: user.to_string(),
        password: password.to_string().into(),
    }
}

/// The operator's client, trusting the registry's CA as `--ca-bundle` would.
fn operator_client(registry: &Registry) -> reqwest::Client {
    regcred::connect::init_crypto();
    regcred::connect::http_client(Some(registry.ca_path())).expect("the operator's HTTP client")
}

/// Check, and assert the message holds no secret material whatever the result.
async fn checked(http: &reqwest::Client, auth: &RegistryAuth, image: Option<&str>) -> Probe {
    let probe = check(http, auth, image).await;
    let basic = STANDARD.encode(format!("{}:{}", auth.username, auth.password.expose()));
    for text in [probe.message.clone(), format!("{probe:?}")] {
        assert!(!text.contains(CANARY), "password in {text:?}");
        assert!(!text.contains(auth.password.expose().as_str()), "password in {text:?}");
        // JWTs start with a base64url `{"`.
        assert!(!text.contains("eyJ"), "token in {text:?}");
        assert!(!text.contains(&basic), "Authorization header in {text:?}");
    }
    assert_eq!(probe.registry, auth.registry);
    assert!(!probe.message.is_empty());
    probe
}

async fn htpasswd_registry() -> Registry {
    Registry::start(Auth::Htpasswd {
        users: users(&["alice"]),
    })
    .await
    .expect("registry with htpasswd starts")
}

async fn token_registry() -> Registry {
    Registry::start(Auth::Token {
        users: users(&["alice", "bob"]),
        grants: vec![("alice".into(), "team/app".into())],
    })
    .await
    .expect("registry with a token server starts")
}

#[tokio::test]
async fn htpasswd_good_credentials_are_healthy() {
    let registry = htpasswd_registry().await;
    let http = operator_client(&registry);
    let probe = checked(&http, &auth(&registry, "alice", &password("alice")), None).await;
    assert_eq!(probe.result, PullAuthResult::Healthy, "{probe:?}");
}

#[tokio::test]
async fn htpasswd_wrong_password_is_unauthorized() {
    let registry = htpasswd_registry().await;
    let http = operator_client(&registry);
    let probe = checked(&http, &auth(&registry, "alice", &format!("{CANARY}-wrong")), None).await;
    assert_eq!(probe.result, PullAuthResult::Unauthorized, "{probe:?}");
    assert!(probe.message.contains("HTTP 401"), "{}", probe.message);
    assert!(probe.message.contains(registry.host()), "{}", probe.message);
    assert!(
        probe.message.contains("check the source credentials"),
        "{}",
        probe.message
    );
    let unknown_user = checked(&http, &auth(&registry, "mallory", &password("mallory")), None).await;
    assert_eq!(unknown_user.result, PullAuthResult::Unauthorized, "{unknown_user:?}");
}

#[tokio::test]
async fn htpasswd_image_present_or_missing() {
    let registry = htpasswd_registry().await;
    let digest = registry.push_image("team/app", "1.2.3").await.expect("push");
    let http = operator_client(&registry);
    let alice = auth(&registry, "alice", &password("alice"));

    for image in ["team/app:1.2.3", &format!("team/app@{digest}")] {
        let probe = checked(&http, &alice, Some(image)).await;
        assert_eq!(probe.result, PullAuthResult::Healthy, "{image}: {probe:?}");
    }
    for image in ["team/app:9.9.9", "team/app", "team/nothing:1.0"] {
        let probe = checked(&http, &alice, Some(image)).await;
        assert_eq!(probe.result, PullAuthResult::ImageNotFound, "{image}: {probe:?}");
        assert!(probe.message.contains(image), "{}", probe.message);
        assert!(probe.message.contains("spec.healthCheck.image"), "{}", probe.message);
    }
    // Wrong credentials are reported as such, not as a missing image.
    let wrong = auth(&registry, "alice", "nope");
    let probe = checked(&http, &wrong, Some("team/app:1.2.3")).await;
    assert_eq!(probe.result, PullAuthResult::Unauthorized, "{probe:?}");
}

/// A registry that asks for nothing cannot reject a credential: healthy, and
/// the message says the check proved nothing until an image is named.
#[tokio::test]
async fn anonymous_registry_says_the_credential_was_not_exercised() {
    let registry = Registry::start(Auth::Anonymous)
        .await
        .expect("anonymous registry starts");
    registry.push_image("team/app", "1.0").await.expect("push");
    let http = operator_client(&registry);
    let alice = auth(&registry, "alice", &password("alice"));
    let bare = checked(&http, &alice, None).await;
    assert_eq!(bare.result, PullAuthResult::Healthy, "{bare:?}");
    assert!(bare.message.contains("spec.healthCheck.image"), "{}", bare.message);
    let image = checked(&http, &alice, Some("team/app:1.0")).await;
    assert_eq!(image.result, PullAuthResult::Healthy, "{image:?}");
    let missing = checked(&http, &alice, Some("team/app:2.0")).await;
    assert_eq!(missing.result, PullAuthResult::ImageNotFound, "{missing:?}");
}

#[tokio::test]
async fn token_good_credentials_are_healthy() {
    let registry = token_registry().await;
    let http = operator_client(&registry);
    let alice = auth(&registry, "alice", &password("alice"));
    let probe_bare = checked(&http, &alice, None).await;
    assert_eq!(probe_bare.result, PullAuthResult::Healthy, "{probe_bare:?}");
    assert!(
        registry.token_requests() >= 1,
        "the Bearer flow went through the token server"
    );

    registry.push_image("team/app", "1.2.3").await.expect("push");
    let granted = checked(&http, &alice, Some("team/app:1.2.3")).await;
    assert_eq!(granted.result, PullAuthResult::Healthy, "{granted:?}");
    let missing = checked(&http, &alice, Some("team/app:0.0.1")).await;
    assert_eq!(missing.result, PullAuthResult::ImageNotFound, "{missing:?}");
}

#[tokio::test]
async fn token_wrong_password_is_unauthorized() {
    let registry = token_registry().await;
    let http = operator_client(&registry);
    let wrong = auth(&registry, "alice", &format!("{CANARY}-wrong"));
    for image in [None, Some("team/app:1.2.3")] {
        let probe = checked(&http, &wrong, image).await;
        assert_eq!(probe.result, PullAuthResult::Unauthorized, "{probe:?}");
        assert!(
            probe.message.contains("HTTP 401") && probe.message.contains("token endpoint"),
            "{}",
            probe.message
        );
    }
}

#[tokio::test]
async fn token_repository_outside_the_grant_is_unauthorized() {
    let registry = token_registry().await;
    registry.push_image("team/secret", "1.0").await.expect("push");
    registry.push_image("team/app", "1.0").await.expect("push");
    let http = operator_client(&registry);

    // alice may pull team/app only; bob has no grant at all. Both log in.
    for (user, image) in [("alice", "team/secret:1.0"), ("bob", "team/app:1.0")] {
        let who = auth(&registry, user, &password(user));
        assert_eq!(checked(&http, &who, None).await.result, PullAuthResult::Healthy);
        let probe = checked(&http, &who, Some(image)).await;
        assert_eq!(probe.result, PullAuthResult::Unauthorized, "{user} {image}: {probe:?}");
        assert!(
            probe.message.contains("denied") && probe.message.contains("insufficient_scope"),
            "{}",
            probe.message
        );
        assert!(probe.message.contains(image), "{}", probe.message);
    }
}

#[tokio::test]
async fn token_endpoint_failure_is_unreachable() {
    let registry = token_registry().await;
    let http = operator_client(&registry);
    registry.set_token_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let probe = checked(&http, &auth(&registry, "alice", &password("alice")), None).await;
    assert_eq!(probe.result, PullAuthResult::Unreachable, "{probe:?}");
    assert!(
        probe.message.contains("HTTP 503") && probe.message.contains("token endpoint"),
        "{}",
        probe.message
    );
}

#[tokio::test]
async fn registry_down_is_unreachable_at_once_and_recovers() {
    let mut registry = htpasswd_registry().await;
    let http = operator_client(&registry);
    let alice = auth(&registry, "alice", &password("alice"));
    registry.stop();

    let started = Instant::now();
    let probe_down = checked(&http, &alice, None).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(probe_down.result, PullAuthResult::Unreachable, "{probe_down:?}");
    assert!(
        probe_down.message.contains("connection refused"),
        "{}",
        probe_down.message
    );
    assert!(probe_down.message.contains(registry.host()), "{}", probe_down.message);

    registry.restart().await.expect("registry restarts");
    let probe_up = checked(&http, &alice, None).await;
    assert_eq!(probe_up.result, PullAuthResult::Healthy, "{probe_up:?}");
}

#[tokio::test]
async fn untrusted_certificate_is_unreachable_with_a_hint() {
    let registry = htpasswd_registry().await;
    regcred::connect::init_crypto();
    let without_ca = regcred::connect::http_client(None).unwrap();
    let probe = checked(&without_ca, &auth(&registry, "alice", &password("alice")), None).await;
    assert_eq!(probe.result, PullAuthResult::Unreachable, "{probe:?}");
    assert!(
        probe.message.contains("TLS") && probe.message.contains("--ca-bundle"),
        "{}",
        probe.message
    );
}

/// A listener that accepts connections and never answers: the check gives up
/// after its own timeout even with a client that has none.
#[tokio::test]
async fn hanging_registry_is_bounded_by_the_check_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    regcred::connect::init_crypto();
    let no_timeouts = reqwest::Client::new();
    let creds = RegistryAuth {
        registry: host.clone(),
        username: "alice".into(),
        password: password("alice").into(),
    };

    let started = Instant::now();
    let probe = checked(&no_timeouts, &creds, None).await;
    let elapsed = started.elapsed();
    assert_eq!(probe.result, PullAuthResult::Unreachable, "{probe:?}");
    assert!(
        elapsed >= CHECK_TIMEOUT && elapsed < CHECK_TIMEOUT + Duration::from_secs(5),
        "took {elapsed:?}"
    );
    assert!(probe.message.contains(&host), "{}", probe.message);
    drop(listener);
}
