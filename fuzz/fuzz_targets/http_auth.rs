//! The old API's `Authorization` header (Basic and Digest): parsing never
//! panics; what parses verifies without panicking and only against the
//! password it was made with; nonces of one key never pass another's check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::httpauth::{
    Credentials, NonceKey, base64_decode, digest_challenge, ha1, parse_auth_params,
    parse_authorization,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = base64_decode(&text);
    if let Ok(params) = parse_auth_params(&text) {
        assert!(params.len() <= 32);
        for (name, _) in &params {
            assert!(!name.is_empty() && *name == name.to_ascii_lowercase());
        }
    }
    let key = NonceKey::new([0x5a; 32]);
    if let Some(issued) = key.check(&text) {
        // Only a nonce this key minted passes: the fuzzer would have to forge an HMAC.
        assert_eq!(
            key.mint(issued, u64::from_str_radix(&text[16..32], 16).unwrap_or(0)),
            text
        );
    }
    match parse_authorization(&text) {
        Ok(Credentials::Basic(b)) => {
            let right = ha1(&b.username, "r", b.password());
            assert!(b.verify(&right, "r"));
            let _ = b.verify(&ha1(&b.username, "r", "other password"), "r");
        }
        Ok(Credentials::Digest(d)) => {
            let h = ha1(&d.username, &d.realm, "pw");
            let expected = d.expected(&h, "GET");
            assert!(expected.iter().all(u8::is_ascii_hexdigit));
            let _ = d.verify(&h, "GET");
            let _ = d.verify(&h, "HEAD");
            // Parsed values hold no line breaks: a challenge built from
            // them stays one header line.
            let ch = digest_challenge(&d.realm, &d.nonce, d.opaque.as_deref().unwrap_or(""), true);
            assert!(!ch.contains(['\r', '\n']), "{ch:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
