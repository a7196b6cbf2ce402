//! Every manifest under `examples/` is accepted by a real API server as
//! `kubectl apply --server-side` sends it (unknown fields are an error, not
//! silently pruned), and reads back as a RegistryCredential the operator can
//! parse. New files are covered without touching this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use regcred::api::RegistryCredential;
use regcred_testenv::ControlPlane;
use serde::Deserialize;
use serde_json::Value;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing examples/").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "examples/ holds no manifests ({})", dir.display());
    files
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display())))
        .filter(|doc| !doc.is_null())
        .collect();
    assert!(!docs.is_empty(), "{} holds no YAML document", file.display());
    docs
}

/// Every field `expected` sets is in `actual` with the same value.
fn assert_subset(expected: &Value, actual: &Value, at: &str, file: &Path) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let here = format!("{at}.{key}");
                let other = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: the API server dropped {here}", file.display()));
                assert_subset(value, other, &here, file);
            }
        }
        _ => assert_eq!(
            expected,
            actual,
            "{}: {at} changed on the way through the API server",
            file.display()
        ),
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    let cp = ControlPlane::start().await.expect("test control plane starts");
    cp.install_crd(&regcred::api::crd_yaml())
        .await
        .expect("the CRD installs");
    let client = cp.client().await.unwrap();
    let resource = ApiResource::erase::<RegistryCredential>(&());
    let dynamic: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let typed: Api<RegistryCredential> = Api::all(client);
    let apply = PatchParams::apply("regcred-examples").validation_strict();

    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in example_files() {
        for doc in documents(&file) {
            assert_eq!(
                (doc["apiVersion"].as_str(), doc["kind"].as_str()),
                (Some("regcred.dev/v1alpha1"), Some("RegistryCredential")),
                "{}: examples hold only RegistryCredential objects (describe source Secrets in comments)",
                file.display()
            );
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a RegistryCredential without metadata.name", file.display()))
                .to_owned();
            if let Some(other) = seen.insert(name.clone(), file.clone()) {
                panic!(
                    "{} and {} both define RegistryCredential {name}; it is cluster-scoped, so names must be unique",
                    other.display(),
                    file.display()
                );
            }

            let applied = dynamic
                .patch(&name, &apply, &Patch::Apply(&doc))
                .await
                .unwrap_or_else(|e| panic!("{}: the API server rejected {name}: {e}", file.display()));
            assert_subset(&doc["spec"], &applied.data["spec"], "spec", &file);

            let parsed = typed.get(&name).await.unwrap_or_else(|e| {
                panic!(
                    "{}: {name} was stored but does not parse as a RegistryCredential: {e}",
                    file.display()
                )
            });
            assert!(
                parsed.spec.provider.selected().is_some(),
                "{}: {name} does not select exactly one provider",
                file.display()
            );
            println!("{}: {name} accepted", file.file_name().unwrap().to_string_lossy());
        }
    }
}
