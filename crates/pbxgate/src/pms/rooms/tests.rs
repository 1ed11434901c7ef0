use super::*;
use jiff::civil::date;
use ucm::pms::{CheckIn, Update};

fn settings() -> PmsSettings {
    crate::config::load_str("", "t.toml", std::path::Path::new("/"), Vec::new())
        .unwrap()
        .pms
}

fn cmd(xml: &str) -> Command {
    ucm::pms::parse(&format!("<pms_data_request>{xml}</pms_data_request>")).unwrap()
}

const NOW: i64 = 1_795_771_200_000; // 2026-11-27T09:20:00Z

fn plan_of(xml: &str, old: Option<&Room>) -> Result<Plan, PmsError> {
    plan(&cmd(xml), old, NOW, &settings(), &TimeZone::UTC)
}

fn stored(p: &Plan) -> Room {
    Room {
        version: 1,
        ..p.room.clone()
    }
}

#[test]
fn checkin_makes_a_room_and_checkout_empties_it() {
    let p = plan_of(
        "<checkin><address>101</address><extension>2101</extension><name>Jane</name><language>de</language>\
         <vip>1</vip><datein>20261127</datein><dateout>20261130</dateout><dnd>1</dnd></checkin>",
        None,
    )
    .unwrap();
    assert!(p.write && !p.checkout && !p.mwi);
    assert_eq!(p.old_extension, None);
    assert_eq!(
        p.room,
        Room {
            address: "101".into(),
            extension: "2101".into(),
            checked_in: true,
            guest_name: "Jane".into(),
            language: "de".into(),
            vip: true,
            arrival: "20261127".into(),
            departure: "20261130".into(),
            cos: 4,
            dnd: true,
            room_status: String::new(),
            mwi: false,
            checked_in_ms: NOW,
            updated_ms: NOW,
            version: 0,
        }
    );
    let mut room = stored(&p);
    room.mwi = true;
    room.room_status = "1".into();
    let out = plan_of("<checkout><address>101</address></checkout>", Some(&room)).unwrap();
    assert!(out.checkout && out.mwi && out.old_mwi);
    assert_eq!(out.wakeup, Some(WakeupChange::Cancel(None)));
    assert_eq!(out.old_extension.as_deref(), Some("2101"));
    let r = &out.room;
    assert!(!r.checked_in && !r.vip && !r.dnd && !r.mwi);
    assert_eq!((r.guest_name.as_str(), r.language.as_str()), ("", ""));
    assert_eq!((r.arrival.as_str(), r.departure.as_str()), ("", ""));
    assert_eq!(r.extension, "2101", "the room keeps its phone");
    assert_eq!(r.room_status, "1", "the maid status is the PMS's business");
    assert_eq!(r.version, 1, "written over the version read");
}

#[test]
fn checkin_defaults_and_class_of_service() {
    let p = plan_of(
        "<checkin><address>102</address><datein>20261127</datein><cos>1</cos></checkin>",
        None,
    )
    .unwrap();
    assert_eq!(p.room.extension, "102", "extension defaults to the address");
    assert_eq!(p.room.cos, 1);
    assert_eq!(p.room.departure, "20261127");
    // A re-check-in of an occupied room overwrites the guest, keeps the lamp.
    let mut room = stored(&p);
    room.mwi = true;
    room.dnd = true;
    let again = plan_of(
        "<checkin><address>102</address><name>Bob</name><datein>20261128</datein></checkin>",
        Some(&room),
    )
    .unwrap();
    assert_eq!(again.room.guest_name, "Bob");
    assert_eq!(again.room.cos, 4, "default_cos");
    assert!(!again.room.dnd && again.room.mwi && !again.mwi);
}

#[test]
fn update_and_changename_need_a_checked_in_room() {
    for xml in [
        "<update><address>103</address><name>X</name></update>",
        "<changename><address>103</address><name>X</name></changename>",
    ] {
        let e = plan_of(xml, None).unwrap_err();
        assert_eq!(e.status, Status::NoSuchItem, "{xml}");
        let vacant = Room {
            address: "103".into(),
            extension: "103".into(),
            cos: 4,
            version: 3,
            ..Room::default()
        };
        let e = plan_of(xml, Some(&vacant)).unwrap_err();
        assert_eq!(e.status, Status::FailedToUpdateData, "{xml}");
        assert!(e.message.contains("not checked in"));
    }
    let p = plan_of(
        "<checkin><address>103</address><datein>20261127</datein><dateout>20261129</dateout></checkin>",
        None,
    )
    .unwrap();
    let room = stored(&p);
    let u = plan_of(
        "<update><address>103</address><dateout>20261201</dateout><vip>1</vip><extension>2103</extension></update>",
        Some(&room),
    )
    .unwrap();
    assert_eq!(u.room.departure, "20261201");
    assert!(u.room.vip);
    assert_eq!(u.room.extension, "2103");
    assert_eq!(u.old_extension.as_deref(), Some("103"));
    let e = plan_of(
        "<update><address>103</address><dateout>20261101</dateout></update>",
        Some(&room),
    )
    .unwrap_err();
    assert_eq!(e.status, Status::InvalidValue);
    let n = plan_of(
        "<changename><address>103</address><name>New</name></changename>",
        Some(&room),
    )
    .unwrap();
    assert_eq!(n.room.guest_name, "New");
    assert!(n.room.checked_in);
}

#[test]
fn single_field_commands_make_unknown_rooms_vacant_rooms() {
    for (xml, check) in [
        (
            "<dnd><address>104</address><dnd>1</dnd></dnd>",
            (|r: &Room| r.dnd) as fn(&Room) -> bool,
        ),
        ("<cos><address>104</address><cos>2</cos></cos>", |r| {
            r.cos == 2
        }),
        ("<mwi><address>104</address><mwi>on</mwi></mwi>", |r| r.mwi),
        (
            "<roomstatus><address>104</address><roomstatus>dirty</roomstatus></roomstatus>",
            |r| r.room_status == "dirty",
        ),
    ] {
        let p = plan_of(xml, None).unwrap();
        assert!(p.write, "{xml}");
        assert!(!p.room.checked_in, "{xml}");
        assert_eq!(p.room.extension, "104");
        assert!(check(&p.room), "{xml}: {:?}", p.room);
    }
    assert!(
        plan_of("<mwi><address>1</address><mwi>0</mwi></mwi>", None)
            .unwrap()
            .mwi
    );
}

#[test]
fn wakeups_resolve_and_refuse_the_past() {
    // NOW is 09:20 UTC.
    let p = plan_of(
        "<wakeup><address>105</address><time>0930</time></wakeup>",
        None,
    )
    .unwrap();
    assert_eq!(p.wakeup, Some(WakeupChange::Set(NOW + 10 * 60_000)));
    assert!(p.write, "setting a call makes the room known");
    let known = stored(&p);
    let p = plan_of(
        "<wakeup><address>105</address><time>0700</time></wakeup>",
        Some(&known),
    )
    .unwrap();
    assert_eq!(
        p.wakeup,
        Some(WakeupChange::Set(NOW + (24 * 60 - 140) * 60_000)),
        "tomorrow"
    );
    assert!(!p.write, "a known room is not rewritten");
    let e = plan_of(
        "<wakeup><address>105</address><time>202611270900</time></wakeup>",
        Some(&known),
    )
    .unwrap_err();
    assert_eq!(e.status, Status::InvalidValue);
    assert!(e.message.contains("past"));
    let e = plan_of(
        "<wakeup><address>105</address><time>202812010900</time></wakeup>",
        Some(&known),
    )
    .unwrap_err();
    assert!(e.message.contains("year"));
    let p = plan_of(
        "<wakeup><address>105</address><action>cancel</action><time>202611280700</time></wakeup>",
        Some(&known),
    )
    .unwrap();
    let due = TimeZone::UTC
        .to_ambiguous_timestamp(date(2026, 11, 28).at(7, 0, 0, 0))
        .compatible()
        .unwrap()
        .as_millisecond();
    assert_eq!(p.wakeup, Some(WakeupChange::Cancel(Some(due))));
    // Cancelling on an unknown room creates nothing.
    let p = plan_of(
        "<wakeup><address>106</address><action>cancel</action></wakeup>",
        None,
    )
    .unwrap();
    assert!(!p.write);
    assert_eq!(
        plan_of(
            "<wakeup><address>106</address><action>cancel</action><time>0700</time></wakeup>",
            None
        )
        .unwrap_err()
        .status,
        Status::NoSuchItem
    );
}

#[test]
fn the_command_types_are_all_planned() {
    // Compile-time reminder: every command has a plan (or an error).
    let s = settings();
    let tz = TimeZone::UTC;
    let ci = Command::CheckIn(CheckIn {
        address: "1".into(),
        extension: None,
        name: String::new(),
        language: String::new(),
        vip: false,
        datein: date(2026, 1, 1),
        dateout: date(2026, 1, 1),
        cos: None,
        dnd: None,
    });
    assert!(plan(&ci, None, NOW, &s, &tz).is_ok());
    let up = Command::Update(Update {
        address: "1".into(),
        vip: Some(true),
        ..Update::default()
    });
    assert!(plan(&up, None, NOW, &s, &tz).is_err());
    assert!(
        !plan(
            &Command::RoomInfo {
                address: "1".into()
            },
            None,
            NOW,
            &s,
            &tz
        )
        .unwrap()
        .write
    );
}
