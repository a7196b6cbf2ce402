//! `.dockerconfigjson` as a source Secret or a managed Secret may hold it:
//! `<registry to look up>\0<document>`, or only the document (looked up as
//! `docker.io`). Whatever decodes is complete, found again under its own
//! name, and written back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred::dockerconfig::{RegistryAuth, decode_all, decode_entry, encode};

fn shown(a: &RegistryAuth) -> (&str, &str, &str) {
    (&a.registry, &a.username, a.password.expose())
}

fuzz_target!(|data: &[u8]| {
    let (lookup, json) = match data.iter().position(|&b| b == 0) {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => ("docker.io".to_string(), data),
    };
    if let Ok(a) = decode_entry(json, &lookup) {
        assert!(!a.username.is_empty() && !a.password.expose().is_empty());
        assert_eq!(a.registry, lookup);
    }
    let Ok(all) = decode_all(json) else { return };
    for a in &all {
        assert!(!a.username.is_empty() && !a.password.expose().is_empty());
        let again = decode_entry(json, &a.registry).expect("a decoded entry is found by its registry");
        assert_eq!(shown(&again), shown(a));
        let written = encode(std::slice::from_ref(a));
        let back = decode_entry(&written, &a.registry).expect("a re-encoded entry decodes");
        assert_eq!(shown(&back), shown(a));
    }
});
