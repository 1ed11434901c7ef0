//! caller/callee pattern lists: parsing and matching never panic, never take
//! exponential time, and every parsed item matches what it obviously should.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::cdrapi::Pattern;
use ucm::cdrapi::pattern::{list_matches, parse_list};

fuzz_target!(|data: &[u8]| {
    // List and value, split at the first newline.
    let text = String::from_utf8_lossy(data);
    let (list, value) = text.split_once('\n').unwrap_or((&text, ""));

    // The matcher alone, on items the parser would refuse too.
    let _ = Pattern::Wildcard(list.to_owned()).matches(value);

    let Ok(items) = parse_list(list) else { return };
    assert!(!items.is_empty());
    let any = items.iter().any(|p| p.matches(value));
    assert_eq!(list_matches(&items, value), any);
    for p in &items {
        match p {
            Pattern::Exact(s) => assert!(p.matches(s)),
            Pattern::Range { lo, hi } => {
                assert!(p.matches(lo) && p.matches(hi) && !p.matches(""));
                assert!((lo.len(), lo) <= (hi.len(), hi));
            }
            // `@` may match nothing, `_` any one character.
            Pattern::Wildcard(w) => assert!(p.matches(&w.replace('@', "").replace('_', "x"))),
            Pattern::NonNumeric => assert!(p.matches("") && !p.matches("0")),
        }
    }
});
