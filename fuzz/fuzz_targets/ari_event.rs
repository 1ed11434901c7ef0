//! The ARI event parser: any text is an event, a fallback, or a JSON error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = asterisk::ari::Event::parse(text);
    }
});
