//! startTime/endTime: parsing never panics, and what parses prints back to
//! itself (jiff's display forms are among the accepted ones).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::cdrapi::TimeSpec;
use ucm::cdrapi::time::parse_time;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_time(&text) {
        Ok(TimeSpec::Naive(dt)) => {
            assert_eq!(parse_time(&dt.to_string()), Ok(TimeSpec::Naive(dt)));
        }
        Ok(TimeSpec::Instant(ts)) => {
            // Offsets can push a year-0000 time before year 0, which prints as
            // a 6-digit year: only check what prints in the 4-digit form.
            if let Ok(again) = parse_time(&ts.to_string()) {
                assert_eq!(again, TimeSpec::Instant(ts));
            }
        }
        Ok(TimeSpec::Now) => assert!(text.eq_ignore_ascii_case("now")),
        Err(reason) => assert!(!reason.is_empty() && reason.chars().count() < 400, "{reason}"),
    }
});
