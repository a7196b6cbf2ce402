//! The `regcred.dev/v1alpha1` API: `RegistryCredential` and its status.

pub mod conditions;
mod grammar;
mod spec;
mod status;

pub use spec::*;
pub use status::*;

use kube::CustomResourceExt;

/// The CRD as committed under `crds/`, rendered as YAML.
pub fn crd_yaml() -> String {
    let crd = RegistryCredential::crd();
    serde_yaml::to_string(&crd).expect("a CustomResourceDefinition always serializes")
}

/// The configuration reference (every `spec` field, its type, default and
/// description) as a Markdown table, generated from the CRD so the README
/// cannot drift from it.
pub fn reference_markdown() -> String {
    let crd = serde_json::to_value(RegistryCredential::crd()).expect("a CRD serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut out = String::from("| field | type | default | description |\n|---|---|---|---|\n");
    reference_rows(spec, "spec", &mut out);
    out
}

fn reference_rows(node: &serde_json::Value, path: &str, out: &mut String) {
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    for (name, field) in props {
        let path = format!("{path}.{name}");
        let type_ = match (field["type"].as_str(), field["items"]["type"].as_str()) {
            (Some("array"), Some(item)) => format!("[]{item}"),
            (Some("object"), _) if field["additionalProperties"].is_object() => "map[string]string".into(),
            (Some(t), _) if name == "selector" => format!("{t} (label selector)"),
            (Some(t), _) => t.to_string(),
            (None, _) => "object".into(),
        };
        let default = match &field["default"] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => format!("`{s}`"),
            v if v.as_object().is_some_and(|o| !o.is_empty()) || v.is_array() => format!("`{v}`"),
            _ => String::new(),
        };
        let description = field["description"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        out.push_str(&format!("| `{path}` | {type_} | {default} | {description} |\n"));
        // A label selector is the standard Kubernetes type: no need to list its parts.
        if name != "selector" {
            reference_rows(field, &path, out);
        }
    }
}
