//! The CRD committed under `crds/` is what users install: it must be exactly
//! what the Rust types render.

use std::path::Path;

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/regcred.dev_registrycredentials.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "crds/ is out of date: run `make crds` ({} cannot be read: {e})",
            path.display()
        )
    });
    let rendered = regcred::api::crd_yaml();
    if committed != rendered {
        let first_difference = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
        panic!(
            "crds/ is out of date: run `make crds`\n\
             {} differs from `regcred crd` from line {}:\n  committed: {:?}\n  rendered:  {:?}",
            path.display(),
            first_difference + 1,
            committed.lines().nth(first_difference).unwrap_or("<end of file>"),
            rendered.lines().nth(first_difference).unwrap_or("<end of file>"),
        );
    }
}
