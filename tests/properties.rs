//! Properties of everything regcred parses from outside the process, over
//! generated inputs (shrunk to the smallest failing case): the
//! `.dockerconfigjson` codec, registry challenges, token answers and image
//! references, provider answers (ECR tokens and endpoints, ACR JWTs), label
//! selectors and durations in the spec, and target selection. `make fuzz`
//! runs the same parsers on far more, unstructured, input.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, Time};
use kube::core::{Selector, SelectorExt};
use proptest::prelude::*;
use proptest::string::string_regex;
use regcred::api::{NamespaceSelection, RegistryCredentialSpec};
use regcred::cache::{Kept, KeptNamespace};
use regcred::dockerconfig::{self, DecodeError, RegistryAuth};
use regcred::providers::{acr, ecr};
use regcred::pull_auth::{ImageRef, Scheme, TokenResponse, parse_challenge};
use regcred::reconcile::validate::selector_problem;
use regcred::redact::Sensitive;
use regcred::targets::{namespace_selected, plan};

const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// 128 cases per property keep the file to a few seconds in `make test`;
/// `PROPTEST_CASES=100000` searches deeper.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").map_or(128, |_| ProptestConfig::default().cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn regex(pattern: &str) -> BoxedStrategy<String> {
    string_regex(pattern).expect("a valid test regex").boxed()
}

/// Any text: control characters, quotes, `:` and characters outside the BMP included.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..=max).prop_map(String::from_iter)
}

fn password() -> impl Strategy<Value = String> {
    prop_oneof![text(40), (text(20), text(20)).prop_map(|(a, b)| format!("{a}:{b}")),]
}

/// A registry host as the CRD's `host` grammar admits it (a bounded subset).
fn host() -> BoxedStrategy<String> {
    prop_oneof![
        3 => regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?){0,3}(:[1-9][0-9]{0,3})?"),
        1 => prop::sample::select(vec![
            "ghcr.io",
            "quay.io",
            "gcr.io",
            "us-docker.pkg.dev",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "myregistry.azurecr.io",
            "127.0.0.1:5000",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn is_hub(host: &str) -> bool {
    DOCKER_HUB_ALIASES.contains(&host)
}

fn auth(registry: &str, username: &str, password: &str) -> RegistryAuth {
    RegistryAuth {
        registry: registry.into(),
        username: username.into(),
        password: Sensitive::new(password.into()),
    }
}

/// An auth as comparable, printable text (`RegistryAuth`'s Debug hides the password).
fn shown(a: &RegistryAuth) -> (String, String, String) {
    (a.registry.clone(), a.username.clone(), a.password.expose().clone())
}

/// Auths for distinct registries, Docker Hub under one of its aliases at most once.
fn auths() -> impl Strategy<Value = Vec<RegistryAuth>> {
    let entries = prop::collection::btree_map(host(), (text(30), password()), 1..5);
    let hub = prop::option::of((prop::sample::select(DOCKER_HUB_ALIASES.to_vec()), text(30), password()));
    (entries, hub).prop_map(|(entries, hub)| {
        let mut out: Vec<RegistryAuth> = entries
            .iter()
            .filter(|(h, _)| !is_hub(h))
            .map(|(h, (u, p))| auth(h, u, p))
            .collect();
        if let Some((h, u, p)) = hub {
            out.push(auth(h, &u, &p));
        }
        out
    })
}

/// A hand-written or foreign `.dockerconfigjson` entry: any mix of fields.
fn foreign_entry() -> impl Strategy<Value = serde_json::Value> {
    let auth_field = prop_oneof![
        (text(20), password()).prop_map(|(u, p)| STANDARD.encode(format!("{u}:{p}"))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| STANDARD.encode(b)),
        text(20),
    ];
    (
        prop::option::of(prop_oneof![Just(String::new()), text(20)]),
        prop::option::of(prop_oneof![Just(String::new()), password()]),
        prop::option::of(auth_field),
    )
        .prop_map(|(username, password, auth)| {
            let mut entry = serde_json::Map::new();
            for (field, value) in [("username", username), ("password", password), ("auth", auth)] {
                if let Some(v) = value {
                    entry.insert(field.into(), v.into());
                }
            }
            serde_json::Value::Object(entry)
        })
}

fn foreign_key() -> impl Strategy<Value = String> {
    prop_oneof![
        host(),
        host().prop_map(|h| format!("https://{h}/")),
        host().prop_map(|h| format!("http://{h}/v2/")),
        prop::sample::select(vec![DOCKER_HUB_KEY, "index.docker.io", "https://registry-1.docker.io"])
            .prop_map(String::from),
        text(20),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_auths_decode_to_the_same_auths(auths in auths()) {
        let mut back: Vec<_> = dockerconfig::decode_all(&dockerconfig::encode(&auths)).unwrap().iter().map(shown).collect();
        // Docker Hub comes back under the name docker and the kubelet look it up by.
        let mut want: Vec<_> = auths
            .iter()
            .map(|a| {
                let (registry, user, pass) = shown(a);
                (if is_hub(&registry) { "docker.io".into() } else { registry }, user, pass)
            })
            .collect();
        back.sort();
        want.sort();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn every_entry_is_found_by_its_host_and_docker_hub_by_every_alias(auths in auths()) {
        let json = dockerconfig::encode(&auths);
        for a in &auths {
            let lookups: Vec<&str> = if is_hub(&a.registry) {
                DOCKER_HUB_ALIASES.iter().copied().chain([DOCKER_HUB_KEY, "https://index.docker.io/v1/"]).collect()
            } else {
                vec![a.registry.as_str()]
            };
            for lookup in lookups {
                let found = dockerconfig::decode_entry(&json, lookup).unwrap();
                prop_assert_eq!((found.username, found.password.expose().clone()), (a.username.clone(), a.password.expose().clone()));
            }
        }
    }

    #[test]
    fn encoding_ignores_order(auths in auths().prop_shuffle().prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle()))) {
        prop_assert_eq!(dockerconfig::encode(&auths.0), dockerconfig::encode(&auths.1));
    }

    #[test]
    fn only_docker_hub_changes_its_config_key(
        host in host(),
        alias in prop::sample::select(DOCKER_HUB_ALIASES.to_vec()),
        scheme in prop::sample::select(vec!["", "https://", "http://"]),
        path in prop::sample::select(vec!["", "/", "/v1/", "/v2/"]),
        upper in any::<bool>(),
    ) {
        let alias = if upper { alias.to_ascii_uppercase() } else { alias.to_string() };
        let alias = format!("{scheme}{alias}{path}");
        prop_assert_eq!(dockerconfig::config_key(&alias), DOCKER_HUB_KEY);
        if !is_hub(&host) {
            prop_assert_eq!(dockerconfig::config_key(&host), host);
        }
    }

    #[test]
    fn foreign_documents_decode_consistently_or_fail_with_a_reason(
        entries in prop::collection::btree_map(foreign_key(), foreign_entry(), 0..4),
        lookup in foreign_key(),
    ) {
        let json = serde_json::to_vec(&serde_json::json!({ "auths": entries })).unwrap();
        match dockerconfig::decode_entry(&json, &lookup) {
            Ok(a) => prop_assert!(!a.username.is_empty() && !a.password.expose().is_empty()),
            Err(DecodeError::Malformed) => prop_assert!(false, "valid JSON reported as malformed"),
            Err(_) => {}
        }
        if let Ok(all) = dockerconfig::decode_all(&json) {
            prop_assert_eq!(all.len(), entries.len());
            for a in &all {
                prop_assert!(!a.username.is_empty() && !a.password.expose().is_empty());
                let again = dockerconfig::decode_entry(&json, &a.registry).unwrap();
                prop_assert_eq!(shown(&again), shown(a));
                // What regcred read back it can write again, unchanged.
                let rewritten = dockerconfig::decode_entry(&dockerconfig::encode(std::slice::from_ref(a)), &a.registry).unwrap();
                prop_assert_eq!(shown(&rewritten), shown(a));
            }
        }
    }

    #[test]
    fn codec_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200), lookup in text(20)) {
        let _ = dockerconfig::decode_all(&bytes);
        let _ = dockerconfig::decode_entry(&bytes, &lookup);
    }
}

/// A quoted-string of RFC 9110, escaping what must be.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Printable ASCII: what a header value that `to_str` accepts can hold.
fn header_text() -> BoxedStrategy<String> {
    regex(r"[ -~]{0,40}")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn challenges_never_panic(headers in prop::collection::vec(any::<String>(), 0..4)) {
        let picked = parse_challenge(headers.iter().map(String::as_str));
        if let Some(error) = picked.and_then(|c| c.error) {
            prop_assert!(error.len() <= 64 && error.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }

    #[test]
    fn a_bearer_challenge_gives_back_its_realm_and_service(
        realm in header_text(),
        service in prop::option::of(header_text()),
        scope in prop::option::of(header_text()),
        error in prop::option::of(header_text()),
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER"]),
        shuffle in any::<prop::sample::Index>(),
    ) {
        let mut params = vec![format!("realm={}", quoted(&realm))];
        params.extend(service.iter().map(|s| format!("service={}", quoted(s))));
        params.extend(scope.iter().map(|s| format!("scope={}", quoted(s))));
        params.extend(error.iter().map(|s| format!("error={}", quoted(s))));
        let n = params.len();
        params.rotate_left(shuffle.index(n));
        let header = format!("{scheme} {}", params.join(","));
        let picked = parse_challenge([header.as_str()]).unwrap();
        prop_assert_eq!(picked.scheme, Scheme::Bearer { realm, service });
        let is_code = |e: &String| (1..=64).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        prop_assert_eq!(picked.error, error.filter(is_code));
    }

    #[test]
    fn bearer_is_answered_before_basic_before_anything_else(
        order in Just(vec![
            r#"Bearer realm="https://auth.example/token",service="registry.example""#,
            r#"Basic realm="Registry Realm""#,
            r#"Negotiate"#,
        ]).prop_shuffle(),
        drop_bearer in any::<bool>(),
    ) {
        let headers: Vec<&str> = order.into_iter().filter(|h| !(drop_bearer && h.starts_with("Bearer"))).collect();
        let picked = parse_challenge(headers.iter().copied()).unwrap().scheme;
        if drop_bearer {
            prop_assert_eq!(picked, Scheme::Basic);
        } else {
            let is_bearer = matches!(picked, Scheme::Bearer { .. });
            prop_assert!(is_bearer);
        }
    }

    #[test]
    fn token_answers_give_the_token_or_nothing(
        token in prop::option::of(text(40)),
        access_token in prop::option::of(text(40)),
        expires_in in any::<i64>(),
    ) {
        let body = serde_json::json!({
            "token": token, "access_token": access_token, "expires_in": expires_in, "issued_at": "2026-11-30T16:00:00Z",
        });
        let parsed: TokenResponse = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(parsed.token().map(|t| t.expose().clone()), token.or(access_token));
    }

    #[test]
    fn token_answers_never_panic_nor_give_an_empty_token(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(parsed) = serde_json::from_slice::<TokenResponse>(&bytes) {
            prop_assert!(parsed.token().is_none_or(|t| !t.expose().is_empty()));
        }
    }
}

/// The CRD's `healthCheck.image` grammar, with repetitions bounded.
const IMAGE_GRAMMAR: &str = r"[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}){0,3}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}|@sha256:[a-f0-9]{64})?";

/// An image reference in the one form it parses back from.
fn rendered(r: &ImageRef) -> String {
    let sep = if r.reference.contains(':') { '@' } else { ':' };
    format!("{}{sep}{}", r.repository, r.reference)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_image_the_crd_admits_parses(image in regex(IMAGE_GRAMMAR), docker_hub in any::<bool>()) {
        let parsed = ImageRef::parse(&image, docker_hub).unwrap();
        let (name, reference) = match image.split_once('@') {
            Some((name, digest)) => (name, digest.to_string()),
            None => match image.split_once(':') {
                Some((name, tag)) => (name, tag.to_string()),
                None => (image.as_str(), "latest".to_string()),
            },
        };
        let repository = if docker_hub && !name.contains('/') { format!("library/{name}") } else { name.to_string() };
        prop_assert_eq!(parsed, ImageRef { repository, reference });
    }

    #[test]
    fn a_parsed_image_renders_to_a_canonical_form(image in prop_oneof![regex(IMAGE_GRAMMAR), any::<String>(), regex(r"[a-zA-Z0-9:@/._-]{0,30}")], docker_hub in any::<bool>()) {
        if let Some(parsed) = ImageRef::parse(&image, docker_hub) {
            let canonical = rendered(&parsed);
            let again = ImageRef::parse(&canonical, docker_hub).unwrap();
            prop_assert_eq!(rendered(&again), canonical);
            prop_assert_eq!(again, parsed);
        }
    }
}

/// `[a-z]{2}(-[a-z]+)+-[0-9]{1,2}`: the CRD's region grammar.
fn region() -> BoxedStrategy<String> {
    regex(r"[a-z]{2}(-[a-z]{1,9}){1,2}-[0-9]{1,2}")
}

fn jwt(header: &str, claims: &serde_json::Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ecr_tokens_decode_to_their_user_and_password(user in regex(r"[^:]{1,20}"), pass in password()) {
        let token = STANDARD.encode(format!("{user}:{pass}"));
        prop_assert_eq!(ecr::decode_token(&token).unwrap(), (user, pass));
    }

    #[test]
    fn ecr_token_decoding_never_panics_and_accepts_only_canonical_base64(token in prop_oneof![any::<String>(), regex(r"[A-Za-z0-9+/=\s]{0,60}")]) {
        if let Ok((user, pass)) = ecr::decode_token(&token) {
            prop_assert!(!user.is_empty() && !pass.is_empty());
            prop_assert_eq!(STANDARD.encode(format!("{user}:{pass}")), token.trim());
        }
    }

    #[test]
    fn ecr_endpoints_of_the_region_are_accepted_and_nothing_else(
        account in regex(r"[0-9]{12}"),
        region in region(),
        other_region in region(),
        suffix in prop::sample::select(vec!["dkr.ecr.{r}.amazonaws.com", "dkr.ecr-fips.{r}.amazonaws.com", "dkr.ecr.{r}.amazonaws.com.cn"]),
        https in any::<bool>(),
        slash in any::<bool>(),
        junk in any::<String>(),
    ) {
        let host = format!("{account}.{}", suffix.replace("{r}", &region));
        let endpoint = format!("{}{host}{}", if https { "https://" } else { "" }, if slash { "/" } else { "" });
        prop_assert_eq!(ecr::registry_host(&endpoint, &region).unwrap(), host.clone());
        if other_region != region {
            prop_assert!(ecr::registry_host(&endpoint, &other_region).is_err());
        }
        if let Ok(host) = ecr::registry_host(&junk, &region) {
            prop_assert!(host.len() > 13 && host.as_bytes()[..12].iter().all(u8::is_ascii_digit) && host.contains(&region));
        }
    }

    #[test]
    fn acr_jwt_expiry_is_the_exp_claim(
        exp in jiff::Timestamp::MIN.as_second()..=jiff::Timestamp::MAX.as_second(),
        extra in prop::collection::btree_map(regex("[a-z]{1,6}"), text(20), 0..4),
        signature in regex(r"[A-Za-z0-9_-]{0,80}"),
    ) {
        let mut claims = serde_json::json!(extra);
        claims["exp"] = exp.into();
        let token = jwt(r#"{"alg":"RS256","typ":"JWT"}"#, &claims, &signature);
        prop_assert_eq!(acr::jwt_expiry(&token).unwrap().as_second(), exp);
    }

    #[test]
    fn acr_jwt_expiry_never_panics(token in prop_oneof![any::<String>(), regex(r"[A-Za-z0-9_.=-]{0,80}")]) {
        if let Err(e) = acr::jwt_expiry(&token) {
            prop_assert_eq!(e.reason(), "InvalidProviderResponse");
        }
    }
}

/// A label key or value: valid ones, and ones that break the grammar in each way.
fn label_text(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        4 => regex(valid),
        1 => regex(r"[a-zA-Z0-9./_ !-]{0,10}"),
        1 => regex(r"[a-z]{64,70}"),
        1 => any::<String>(),
    ]
    .boxed()
}

const LABEL_KEY: &str =
    r"([a-z0-9]([-a-z0-9]{0,5}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}/)?[a-zA-Z0-9]([-_.a-zA-Z0-9]{0,8}[a-zA-Z0-9])?";
const LABEL_VALUE: &str = r"([a-zA-Z0-9]([-_.a-zA-Z0-9]{0,8}[a-zA-Z0-9])?)?";

fn label_selector() -> impl Strategy<Value = LabelSelector> {
    let requirement = (
        label_text(LABEL_KEY),
        prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist", "in", "Equals", ""]),
        prop::option::of(prop::collection::vec(label_text(LABEL_VALUE), 0..3)),
    )
        .prop_map(|(key, operator, values)| LabelSelectorRequirement {
            key,
            operator: operator.into(),
            values,
        });
    (
        prop::option::of(prop::collection::btree_map(
            label_text(LABEL_KEY),
            label_text(LABEL_VALUE),
            0..3,
        )),
        prop::option::of(prop::collection::vec(requirement, 0..3)),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

/// The CRD's duration grammar (Go's `time.ParseDuration`), bounded so the
/// total stays far inside what Go (and the API server's CEL) accepts.
fn go_duration() -> impl Strategy<Value = (String, f64)> {
    let unit = prop::sample::select(regcred::api::DURATION_UNITS.to_vec());
    let part = (0u32..100_000, prop::option::of(regex("[0-9]{1,6}")), unit).prop_map(|(whole, frac, (unit, secs))| {
        let number = match &frac {
            Some(f) => format!("{whole}.{f}"),
            None => whole.to_string(),
        };
        let value: f64 = number.parse().unwrap();
        (format!("{number}{unit}"), value * secs)
    });
    prop::collection::vec(part, 1..4).prop_map(|parts| {
        let text = parts.iter().map(|(t, _)| t.as_str()).collect();
        (text, parts.iter().map(|(_, s)| s).sum())
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_selector_that_passes_validation_can_be_evaluated(selector in label_selector()) {
        // Validation names what the API server lets through but the label
        // evaluator rejects; a selector it passes must never silently match nothing.
        if selector_problem(&selector).is_none() {
            prop_assert!(Selector::try_from(selector.clone()).is_ok(), "{selector:?}");
        }
    }

    #[test]
    fn selectors_of_valid_labels_pass_validation(
        labels in prop::collection::btree_map(regex(LABEL_KEY), regex(LABEL_VALUE), 0..3),
        key in regex(LABEL_KEY),
        values in prop::collection::vec(regex(LABEL_VALUE), 1..3),
        operator in prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
    ) {
        let values = matches!(operator, "In" | "NotIn").then_some(values);
        let selector = LabelSelector {
            match_labels: Some(labels),
            match_expressions: Some(vec![LabelSelectorRequirement { key, operator: operator.into(), values }]),
        };
        prop_assert_eq!(selector_problem(&selector), None);
    }

    #[test]
    fn every_duration_the_crd_admits_is_read_as_written((text, seconds) in go_duration()) {
        let spec: RegistryCredentialSpec = serde_json::from_value(serde_json::json!({
            "provider": {"static": {"registry": "ghcr.io", "secretRef": {"name": "ghcr"}}},
            "renewBefore": text,
            "healthCheck": {"interval": text},
        }))
        .unwrap();
        for read in [spec.renew_before.unwrap(), spec.health_check.interval.unwrap()] {
            let read = std::time::Duration::from(read).as_secs_f64();
            prop_assert!((read - seconds).abs() <= 1e-6 + seconds * 1e-12, "{text}: read {read}s, want {seconds}s");
        }
    }
}

const CREDENTIALS_NAMESPACE: &str = "regcred-system";
const SECRET: &str = "hub";

fn namespace_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "kube-system"]).prop_map(String::from),
        1 => Just(CREDENTIALS_NAMESPACE.to_string()),
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["team", "env"]).prop_map(String::from),
        prop::sample::select(vec!["x", "y"]).prop_map(String::from),
        0..3,
    )
}

/// Requirements with every operator, and with values or without them
/// (`In` without values cannot be parsed, and then matches nothing).
fn expressions() -> impl Strategy<Value = Vec<LabelSelectorRequirement>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["team", "env"]),
            prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
            prop::option::of(prop::collection::vec(prop::sample::select(vec!["x", "y"]), 0..3)),
        )
            .prop_map(|(key, operator, values)| LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }),
        0..3,
    )
}

fn namespaces() -> impl Strategy<Value = Vec<Arc<Namespace>>> {
    prop::collection::btree_map(namespace_name(), (labels(), any::<bool>(), any::<bool>()), 0..8).prop_map(|m| {
        m.into_iter()
            .map(|(name, (labels, deleting, terminating_phase))| {
                Arc::new(Namespace {
                    metadata: ObjectMeta {
                        name: Some(name),
                        labels: Some(labels),
                        deletion_timestamp: deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH)),
                        ..Default::default()
                    },
                    status: terminating_phase.then(|| NamespaceStatus {
                        phase: Some("Terminating".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            })
            .collect()
    })
}

fn selection() -> impl Strategy<Value = NamespaceSelection> {
    (
        prop::option::of(
            (prop::option::of(labels()), prop::option::of(expressions())).prop_map(|(l, e)| LabelSelector {
                match_labels: l,
                match_expressions: e,
            }),
        ),
        prop::collection::vec(namespace_name(), 0..3),
        prop::collection::vec(namespace_name(), 0..3),
    )
        .prop_map(|(selector, names, exclude)| NamespaceSelection {
            selector,
            names,
            exclude,
        })
}

fn owned() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![namespace_name(), Just("gone".to_string())],
            prop::sample::select(vec![SECRET, "old-name"]).prop_map(String::from),
        ),
        0..6,
    )
}

fn name(ns: &Namespace) -> String {
    ns.metadata.name.clone().unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn exclude_always_wins_and_no_names_nor_selector_selects_everything_else(sel in selection(), nss in namespaces()) {
        for ns in &nss {
            let n = name(ns);
            let selected = namespace_selected(&sel, &**ns);
            // What the cache keeps of a namespace selects as the namespace does.
            prop_assert_eq!(namespace_selected(&sel, &KeptNamespace::keep(ns)), selected);
            if sel.exclude.contains(&n) {
                prop_assert!(!selected, "{n} is excluded");
            } else if sel.names.contains(&n) {
                prop_assert!(selected, "{n} is named");
            }
            let everything = NamespaceSelection { selector: None, names: vec![], exclude: sel.exclude.clone() };
            prop_assert_eq!(namespace_selected(&everything, &**ns), !sel.exclude.contains(&n));
            let labelled = ns.metadata.labels.clone().unwrap_or_default();
            // regcred evaluates the selector by label lookup; kube's matcher is the reference.
            if let Some(s) = &sel.selector
                && !sel.exclude.contains(&n)
                && !sel.names.contains(&n)
            {
                let kube_says = Selector::try_from(s.clone()).is_ok_and(|s| s.matches(&labelled));
                prop_assert_eq!(selected, kube_says, "{} with {:?}", n, s);
            }
        }
    }

    #[test]
    fn the_plan_writes_only_where_selected_and_cleans_everything_else(
        sel in selection(),
        nss in namespaces(),
        ours in owned(),
    ) {
        let kept: Vec<_> = nss.iter().map(|ns| Arc::new(KeptNamespace::keep(ns))).collect();
        let p = plan(&sel, CREDENTIALS_NAMESPACE, SECRET, &kept, ours.clone());
        prop_assert!(!p.write.contains(CREDENTIALS_NAMESPACE));
        for ns in &nss {
            let n = name(ns);
            let live = ns.metadata.deletion_timestamp.is_none() && ns.status.is_none();
            let wanted = n != CREDENTIALS_NAMESPACE && live && namespace_selected(&sel, &**ns);
            prop_assert_eq!(p.write.contains(&n), wanted, "{}", n);
        }
        let cleaned_here: BTreeSet<&String> = p.clean.iter().filter(|(_, s)| s == SECRET).map(|(ns, _)| ns).collect();
        prop_assert!(p.write.iter().all(|ns| !cleaned_here.contains(ns)), "write {:?} and clean {:?} overlap", p.write, p.clean);
        // Every Secret regcred owns is either kept in place or cleaned, never both, never forgotten.
        for (ns, secret) in &ours {
            let kept = secret == SECRET && p.write.contains(ns);
            prop_assert_eq!(p.clean.contains(&(ns.clone(), secret.clone())), !kept, "{}/{}", ns, secret);
        }
        prop_assert!(p.clean.windows(2).all(|w| w[0] <= w[1]));
        prop_assert_eq!(p.clean.len(), ours.iter().filter(|(ns, s)| !(s == SECRET && p.write.contains(ns))).count());
    }
}
