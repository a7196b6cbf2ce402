//! `WWW-Authenticate` headers, one per line, as a registry's 401 carries
//! them. The challenge picked never carries an unsanitized `error`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred::pull_auth::{Scheme, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(picked) = parse_challenge(text.split('\n')) else {
        return;
    };
    if let Some(error) = &picked.error {
        assert!((1..=64).contains(&error.len()));
        assert!(error.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
    if let Scheme::Other(scheme) = &picked.scheme {
        assert!(!scheme.eq_ignore_ascii_case("basic"));
    }
});
