//! A token endpoint's answer: a token to send, never an empty one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred::pull_auth::TokenResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = serde_json::from_slice::<TokenResponse>(data)
        && let Some(token) = answer.token()
    {
        assert!(!token.expose().is_empty());
    }
});
