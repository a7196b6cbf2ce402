//! `healthCheck.image`: what parses renders to one canonical form that
//! parses back to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred::registry::ImageRef;

fn rendered(r: &ImageRef) -> String {
    let sep = if r.reference.contains(':') { '@' } else { ':' };
    format!("{}{sep}{}", r.repository, r.reference)
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = std::str::from_utf8(data) else { return };
    for docker_hub in [false, true] {
        let Some(parsed) = ImageRef::parse(image, docker_hub) else {
            continue;
        };
        assert!(!parsed.repository.is_empty() && !parsed.reference.is_empty());
        let canonical = rendered(&parsed);
        let again = ImageRef::parse(&canonical, docker_hub).expect("a canonical reference parses");
        assert_eq!(again, parsed, "{canonical}");
    }
});
