//! The `/api` request parser and everything a handler reads from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ucm::parse_request(data) {
        Ok(req) => {
            assert!(!req.action.is_empty());
            let keys: Vec<String> = req.params.keys().map(str::to_owned).collect();
            for key in &keys {
                let _ = req.params.str(key);
                let _ = req.params.uint(key);
            }
            if let Ok(Some(cookie)) = req.params.str("cookie") {
                let _ = ucm::auth::is_cookie_syntax(&cookie);
            }
            if let Ok(Some(token)) = req.params.str("token") {
                let expected = ucm::auth::login_token("0000000000000001", b"pw");
                let _ = ucm::auth::token_matches(&expected, &token);
            }
        }
        Err(e) => assert_eq!(e.status(), ucm::Status::InvalidParameters),
    }
});
