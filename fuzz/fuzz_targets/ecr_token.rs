//! ECR's `GetAuthorizationToken` answer: `<authorizationToken>\n<proxyEndpoint>\n<region>`.
//! A token decodes to a non-empty user and password whose base64 is the
//! token; an endpoint is accepted only as an ECR registry of the region.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use regcred::providers::ecr::{decode_token, registry_host};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let token = lines.next().unwrap_or_default();
    let endpoint = lines.next().unwrap_or_default();
    let region = lines.next().unwrap_or("us-east-1");
    if let Ok((user, pass)) = decode_token(token) {
        assert!(!user.is_empty() && !pass.is_empty() && !user.contains(':'));
        assert_eq!(STANDARD.encode(format!("{user}:{pass}")), token.trim());
    }
    if let Ok(host) = registry_host(endpoint, region) {
        let (account, rest) = host.split_once('.').expect("a host with a domain");
        assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            rest.contains(&format!(".{region}.amazonaws.com")),
            "{host} outside {region}"
        );
    }
});
