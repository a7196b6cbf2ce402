//! The status subresource as users and the operator see it: a full status
//! round-trips, spec and status writes stay apart, and `kubectl get` shows
//! the printer columns the contract names; and regcred's Events, each note
//! its own, as `kubectl describe` lists them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use regcred::api::conditions::{self, reason};
use regcred::api::{
    EcrProvider, FailedNamespace, NamespaceCounts, Provider, ProviderKind, PullAuth, PullAuthResult, PullFailure,
    RegistryCredential, RegistryCredentialSpec, RegistryCredentialStatus, ServiceAccountCounts,
};
use regcred_testenv::ControlPlane;
use serde_json::{Value, json};

const NOT_AFTER: &str = "2026-11-22T10:00:00Z";
const RENEWAL: &str = "2026-11-22T06:00:00Z";
const ISSUED_AT: &str = "2026-11-21T22:00:00Z";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn time(s: &str) -> Time {
    Time(s.parse::<Timestamp>().expect("an RFC 3339 time"))
}

fn hours(h: u64) -> kube::core::Duration {
    std::time::Duration::from_secs(h * 3600).into()
}

fn credential(name: &str) -> RegistryCredential {
    RegistryCredential::new(
        name,
        RegistryCredentialSpec {
            provider: Provider {
                ecr: Some(EcrProvider {
                    region: "us-east-1".into(),
                    registry_ids: vec!["123456789012".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            target: Default::default(),
            renew_before: None,
            health_check: Default::default(),
        },
    )
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: time(ISSUED_AT),
    }
}

/// A status as the operator writes it after a mint where one namespace
/// already held a foreign Secret of the same name.
fn full_status() -> RegistryCredentialStatus {
    RegistryCredentialStatus {
        observed_generation: Some(1),
        provider: Some(ProviderKind::Ecr),
        registries: vec![REGISTRY.into()],
        not_after: Some(time(NOT_AFTER)),
        renewal_time: Some(time(RENEWAL)),
        last_issued_time: Some(time(ISSUED_AT)),
        credential_digest: Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()),
        failed_attempts: 0,
        last_failure_time: None,
        namespaces: NamespaceCounts { targeted: 12, synced: 11 },
        failed_namespaces: vec![FailedNamespace {
            namespace: "ci".into(),
            reason: reason::SECRET_EXISTS.into(),
            message: "Secret ci/regcred-ecr exists and was not created by regcred; delete it or set existingSecretPolicy: Adopt".into(),
        }],
        service_accounts: ServiceAccountCounts { patched: 22, failed: 0 },
        identities: None,
        failed_service_accounts: Vec::new(),
        summary: Some("11/12".into()),
        pull_auth: Some(PullAuth {
            result: PullAuthResult::Healthy,
            registry: Some(REGISTRY.into()),
            checked_time: Some(time(ISSUED_AT)),
            message: String::new(),
        }),
        pull_failures: vec![PullFailure {
            namespace: "ci".into(),
            pod: "build-7d4f9".into(),
            image: format!("{REGISTRY}/team/app:1"),
            cause: "CredentialMissing".into(),
            detail: Some("SecretMissing".into()),
            message: "CredentialMissing/SecretMissing: namespace ci lacks Secret regcred-ecr. Fix: see status.failedNamespaces.".into(),
            last_seen: time(ISSUED_AT),
            repaired: false,
            repaired_at: None,
        }],
        conditions: vec![
            condition(conditions::ISSUED, "True", reason::ISSUED, "Credential valid until 2026-11-22T10:00:00Z."),
            condition(
                conditions::SYNCED,
                "False",
                reason::SECRET_EXISTS,
                "11 of 12 namespaces synced; ci holds a Secret regcred did not create.",
            ),
            condition(
                conditions::PULL_AUTH_HEALTHY,
                "True",
                reason::HEALTHY,
                "The registry accepted the credential.",
            ),
            condition(conditions::READY, "False", reason::SECRET_EXISTS, "Synced is False: SecretExists."),
        ],
    }
}

async fn api(cp: &ControlPlane) -> Api<RegistryCredential> {
    cp.install_crd(&regcred::api::crd_yaml())
        .await
        .expect("the CRD installs");
    Api::all(cp.client().await.unwrap())
}

async fn create_with_status(api: &Api<RegistryCredential>, name: &str) -> RegistryCredential {
    let created = api
        .create(&PostParams::default(), &credential(name))
        .await
        .expect("create");
    assert_eq!(created.status, None, "a new RegistryCredential has no status");
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": full_status() })),
    )
    .await
    .expect("status write")
}

#[tokio::test]
async fn full_status_round_trips_through_the_status_subresource() {
    let cp = ControlPlane::shared().await;
    let api = api(cp).await;
    let name = "status-round-trip";

    let written = create_with_status(&api, name).await;
    assert_eq!(
        written.status.as_ref(),
        Some(&full_status()),
        "the status write response"
    );
    let read = api.get(name).await.unwrap();
    assert_eq!(read.status, Some(full_status()), "status read back");
    assert_eq!(
        read.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect::<Vec<_>>(),
        conditions::ALL,
        "all four condition types, in order"
    );
    assert_eq!(
        read.metadata.generation,
        Some(1),
        "a status write does not bump the generation"
    );

    // A spec write that also carries a status changes the spec only.
    let mut other = full_status();
    other.summary = Some("0/0".into());
    other.failed_attempts = 3;
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "renewBefore": "2h" }, "status": other })),
        )
        .await
        .expect("spec write");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec write bumps the generation"
    );
    assert_eq!(patched.spec.renew_before, Some(hours(2)));
    assert_eq!(patched.status, Some(full_status()), "a spec write leaves status alone");

    // The operator catching up with generation 2: status only.
    let mut caught_up = full_status();
    caught_up.observed_generation = Some(2);
    caught_up.failed_attempts = 1;
    caught_up.last_failure_time = Some(time(RENEWAL));
    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": caught_up, "spec": { "renewBefore": "3h" } })),
        )
        .await
        .expect("status write");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a status write does not bump the generation"
    );
    assert_eq!(patched.status, Some(caught_up), "second status write");
    assert_eq!(
        patched.spec.renew_before,
        Some(hours(2)),
        "a status write leaves spec alone"
    );
}

/// Column names as the server returns them (kubectl upper-cases them).
const COLUMNS: [(&str, i64); 9] = [
    ("Name", 0),
    ("Provider", 0),
    ("Ready", 0),
    ("Synced", 0),
    ("Expires", 0),
    ("Pull-Auth", 0),
    ("Age", 0),
    ("Renewal", 1),
    ("Reason", 1),
];

#[tokio::test]
async fn table_shows_the_printer_columns() {
    let cp = ControlPlane::shared().await;
    let api = api(cp).await;
    let name = "status-table";
    create_with_status(&api, name).await;

    let client = cp.client().await.unwrap();
    let mut request = kube::core::Request::new("/apis/regcred.dev/v1alpha1/registrycredentials")
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .unwrap();
    request.headers_mut().insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io".parse().unwrap(),
    );
    let table: Value = client.request(request).await.expect("Table request");
    assert_eq!(table["kind"], "Table", "{table:#}");

    let columns: Vec<(&str, i64)> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(columns, COLUMNS, "column names and priorities (1 = only with -o wide)");

    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "one row for {name}: {table:#}");
    let cells = rows[0]["cells"].as_array().expect("cells");
    let expected = [name, "ECR", "False", "11/12", NOT_AFTER, "Healthy"];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(cells[i], *want, "column {}", COLUMNS[i].0);
    }
    assert!(
        cells[6].as_str().is_some_and(|age| !age.is_empty()),
        "Age: {}",
        cells[6]
    );
    assert_eq!(cells[7], RENEWAL, "column Renewal");
    assert_eq!(cells[8], reason::SECRET_EXISTS, "column Reason");

    if std::path::Path::new("/usr/bin/kubectl").exists() {
        let out = std::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .args(["get", "registrycredentials", "-o", "wide"])
            .output()
            .expect("running kubectl");
        println!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two notes of one reason on one object are two Events, as the operator
/// publishes them (a diagnosis refined by its registry check, a re-sync
/// after a repair found earlier): kube's `Recorder` alone folds the second
/// into the first's series and keeps the first note, which is why
/// `regcred::reconcile::events::Publisher` exists.
#[tokio::test]
async fn each_note_is_an_event_of_its_own() {
    use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let cp = ControlPlane::shared().await;
    let client = cp.client().await.unwrap();
    let reporter = Reporter::from("regcred-test");
    let notes = |first: &str, second: &str| {
        [first, second].map(|note| Event {
            type_: EventType::Warning,
            reason: "ImagePullDiagnosed".into(),
            note: Some(note.into()),
            action: "Diagnose".into(),
            secondary: None,
        })
    };
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let events = Api::<CoreEvent>::namespaced(client.clone(), "default");
    let listed = |name: &'static str| {
        let events = events.clone();
        async move {
            let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
            let mut notes: Vec<String> = events
                .list(&params)
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|e| e.message)
                .collect();
            notes.sort();
            notes
        }
    };
    let object = |name: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": name}})).unwrap() };

    let folded = configmaps
        .create(&PostParams::default(), &object("notes-folded"))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), reporter.clone());
    for event in notes("Unknown: first", "CredentialRejected/StaleCopy: second") {
        recorder.publish(&event, &folded.object_ref(&())).await.unwrap();
    }
    assert_eq!(
        listed("notes-folded").await,
        ["Unknown: first"],
        "kube's Recorder keeps one Event per reason and object; if this changed, Publisher may go"
    );

    let apart = configmaps
        .create(&PostParams::default(), &object("notes-apart"))
        .await
        .unwrap();
    let publisher = regcred::reconcile::events::Publisher::new(client.clone(), reporter);
    for event in notes("Unknown: first", "CredentialRejected/StaleCopy: second") {
        publisher.publish(&event, &apart.object_ref(&())).await.unwrap();
    }
    assert_eq!(
        listed("notes-apart").await,
        ["CredentialRejected/StaleCopy: second", "Unknown: first"]
    );
}
