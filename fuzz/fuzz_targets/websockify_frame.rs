//! The event websocket's frame parser and the answers built from what it
//! returns: never a panic, always JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::Status;
use ucm::websockify::{parse, response};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let answer = match parse(&text) {
        Ok(req) => {
            assert!(!req.action.is_empty());
            let keys: Vec<String> = req.message.keys().cloned().collect();
            for key in &keys {
                let _ = req.str(key);
                let _ = req.names(key);
            }
            response(
                req.transactionid.as_ref(),
                Some(&req.action),
                Status::Success,
                &[],
            )
        }
        Err(m) => response(
            m.transactionid.as_ref(),
            m.action.as_deref(),
            Status::InvalidParameters,
            &[],
        ),
    };
    assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
});
