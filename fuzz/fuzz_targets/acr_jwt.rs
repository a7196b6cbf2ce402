//! The ACR refresh token's expiry: the `exp` claim of its payload, or an
//! `InvalidProviderResponse`.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use regcred::providers::acr::jwt_expiry;

fuzz_target!(|data: &[u8]| {
    let Ok(jwt) = std::str::from_utf8(data) else { return };
    match jwt_expiry(jwt) {
        Ok(t) => {
            let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).unwrap()).unwrap();
            assert_eq!(claims["exp"].as_i64(), Some(t.as_second()));
        }
        Err(e) => assert_eq!(e.reason(), "InvalidProviderResponse"),
    }
});
