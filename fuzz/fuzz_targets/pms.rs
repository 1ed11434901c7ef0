//! The PMS request parser (`<pms_data_request>`), the time and date fields and
//! the answers built from what it returns: never a panic; every answer is
//! well-formed; an accepted command has a valid room address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::pms::{self, Reply, WakeTime};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let reply = match pms::parse(&text) {
        Ok(cmd) => {
            assert!(pms::room_id(cmd.address()).is_ok(), "{cmd:?}");
            if let pms::Command::Wakeup {
                op: pms::WakeupOp::Set(t),
                ..
            } = &cmd
            {
                let _ = t.resolve(jiff::Timestamp::now(), &jiff::tz::TimeZone::UTC);
            }
            Reply::ok(cmd.name(), cmd.address()).with("echo", text.to_string())
        }
        Err(r) => Reply::rejected(&r),
    };
    let xml = reply.to_xml();
    assert!(xml.starts_with("<?xml"));
    let _ = reply.to_json().to_string();
    if let Ok(t) = pms::wake_time(&text) {
        if let WakeTime::At(dt) = t {
            assert_eq!(pms::wake_time(&pms::format_wake_time(dt)), Ok(t));
        }
        let _ = t.resolve(jiff::Timestamp::MAX, &jiff::tz::TimeZone::UTC);
    }
    if let Ok(d) = pms::date(&text) {
        assert_eq!(pms::format_date(d), text.as_ref());
    }
});
