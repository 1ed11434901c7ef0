//! The cdrapi parameter parser, both modes, and the old API's query-string
//! splitter: never panic, errors stay short, numRecords stays within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::cdrapi::{MAX_RECORDS, Mode, parse_params, query_pairs};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let check = |params: &[(String, String)], mode| match parse_params(params, mode) {
        Ok(q) => assert!(q.num_records <= MAX_RECORDS),
        Err(e) => assert!(!e.reason.is_empty() && e.reason.chars().count() < 400, "{}", e.reason),
    };

    // One parameter a line, name and value split at the first '='.
    let params: Vec<(String, String)> = text
        .split('\n')
        .map(|line| {
            let (n, v) = line.split_once('=').unwrap_or((line, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect();
    check(&params, if mode & 1 == 0 { Mode::New } else { Mode::Old });

    // The same bytes as an old-API query string.
    match query_pairs(&text) {
        Ok(pairs) => check(&pairs, Mode::Old),
        Err(reason) => assert!(!reason.is_empty() && reason.chars().count() < 400, "{reason}"),
    }
});
