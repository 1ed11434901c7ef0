use super::*;
use jiff::civil::date;

fn req(inner: &str) -> String {
    format!("<pms_data_request>{inner}</pms_data_request>")
}

fn rejected(data: &str) -> Rejected {
    match parse(data) {
        Ok(c) => panic!("accepted {data:?} as {c:?}"),
        Err(r) => r,
    }
}

#[test]
fn the_documented_checkin_parses() {
    let c = parse("<pms_data_request><checkin><address>1100</address><name>jjkkl</name><extension>1100</extension><datein>20180202</datein><dateout>20180203</dateout></checkin></pms_data_request>").unwrap();
    assert_eq!(
        c,
        Command::CheckIn(CheckIn {
            address: "1100".into(),
            extension: Some("1100".into()),
            name: "jjkkl".into(),
            language: String::new(),
            vip: false,
            datein: date(2018, 2, 2),
            dateout: date(2018, 2, 3),
            cos: None,
            dnd: None,
        })
    );
    assert_eq!(c.name(), "checkin");
    assert_eq!(c.address(), "1100");
}

#[test]
fn checkin_fields_aliases_case_and_defaults() {
    let c = parse(&req(
        "<CheckIn>\n <Room> 1101 </Room><Guest_Name>Jane O'Doe</Guest_Name><LANG>de</LANG>\
         <vip>1</vip><arrival>20261127</arrival><class_of_service>2</class_of_service><DND>on</DND></CheckIn>",
    ))
    .unwrap();
    let Command::CheckIn(ci) = c else {
        panic!("{c:?}")
    };
    assert_eq!(ci.address, "1101");
    assert_eq!(ci.extension, None);
    assert_eq!(ci.name, "Jane O'Doe");
    assert_eq!(ci.language, "de");
    assert!(ci.vip);
    assert_eq!(ci.dateout, ci.datein, "dateout defaults to datein");
    assert_eq!(ci.cos, Some(2));
    assert_eq!(ci.dnd, Some(true));
}

#[test]
fn checkin_needs_address_and_datein_and_sane_dates() {
    let r = rejected(&req(
        "<checkin><name>x</name><datein>20260101</datein></checkin>",
    ));
    assert_eq!(r.error.status, Status::InvalidParameters);
    assert_eq!(r.command, Some("checkin"));
    assert!(r.error.message.contains("address"), "{r:?}");

    let r = rejected(&req("<checkin><address>1</address></checkin>"));
    assert_eq!(r.error.status, Status::InvalidParameters);
    assert_eq!(r.address.as_deref(), Some("1"));
    assert!(r.error.message.contains("datein"), "{r:?}");

    for bad in [
        "2026011",
        "20261301",
        "20260230",
        "2026-01-01",
        "abcdefgh",
        "202601011",
    ] {
        let r = rejected(&req(&format!(
            "<checkin><address>1</address><datein>{bad}</datein></checkin>"
        )));
        assert_eq!(r.error.status, Status::InvalidValue, "{bad}");
        assert!(r.error.message.contains("YYYYMMDD"), "{r:?}");
    }
    let r = rejected(&req(
        "<checkin><address>1</address><datein>20260102</datein><dateout>20260101</dateout></checkin>",
    ));
    assert_eq!(r.error.status, Status::InvalidValue);
}

#[test]
fn values_are_checked() {
    for (field, value) in [
        ("address", "11 00"),
        ("address", "../etc"),
        ("address", &"1".repeat(33)),
        ("extension", "10/01"),
        ("extension", ""),
        ("name", &"x".repeat(65)),
        ("name", "a\tb"),
        ("name", "a\u{85}b"),
        ("language", "de;x"),
        ("vip", "2"),
        ("cos", "5"),
        ("cos", "0"),
        ("dnd", "maybe"),
    ] {
        let body = if field == "address" {
            format!("<checkin><address>{value}</address><datein>20260101</datein></checkin>")
        } else {
            format!(
                "<checkin><address>1</address><datein>20260101</datein><{field}>{value}</{field}></checkin>"
            )
        };
        let r = rejected(&req(&body));
        assert_eq!(
            r.error.status,
            Status::InvalidValue,
            "{field}={value:?}: {r:?}"
        );
    }
    // The longest accepted values.
    let ok = format!(
        "<checkin><address>{}</address><name>{}</name><datein>20260101</datein></checkin>",
        "A".repeat(32),
        "é".repeat(64)
    );
    assert!(parse(&req(&ok)).is_ok());
}

#[test]
fn unknown_commands_fields_and_shapes_are_refused() {
    let r = rejected(&req("<format_disk><address>1</address></format_disk>"));
    assert_eq!(r.error.status, Status::Unsupported);
    assert!(
        r.error.message.contains("unknown command <format_disk>"),
        "{r:?}"
    );
    assert_eq!(r.command, None);

    let r = rejected(&req(
        "<checkout><address>1</address><nmae>x</nmae></checkout>",
    ));
    assert_eq!(r.error.status, Status::InvalidParameters);
    assert!(r.error.message.contains("<nmae>"), "{r:?}");
    // A field of another command.
    let r = rejected(&req(
        "<checkout><address>1</address><name>x</name></checkout>",
    ));
    assert_eq!(r.error.status, Status::InvalidParameters);

    for bad in [
        "",
        "   ",
        "not xml",
        "<pms_data_request>",
        "<pms_data_request></pms_data_request>",
        "<other><checkin/></other>",
        "<pms_data_request><checkout><address>1</address></checkout><checkout><address>2</address></checkout></pms_data_request>",
        "<pms_data_request>text<checkout><address>1</address></checkout></pms_data_request>",
        "<pms_data_request><checkout>x<address>1</address></checkout></pms_data_request>",
        "<pms_data_request><checkout><address><b>1</b></address></checkout></pms_data_request>",
        "<pms_data_request><checkout><address>1</address><room>2</room></checkout></pms_data_request>",
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><pms_data_request><checkout><address>&a;</address></checkout></pms_data_request>",
    ] {
        let r = rejected(bad);
        assert_eq!(r.error.status, Status::InvalidParameters, "{bad:?}: {r:?}");
        assert!(!r.error.message.is_empty());
    }
    let big = req(&format!(
        "<checkout><address>1</address></checkout><!--{}-->",
        "x".repeat(MAX_DATA_BYTES)
    ));
    assert_eq!(rejected(&big).error.status, Status::InvalidParameters);
    // Many nodes.
    let many = req(&format!(
        "<checkout><address>1</address></checkout>{}",
        "<!--c-->".repeat(400)
    ));
    assert_eq!(rejected(&many).error.status, Status::InvalidParameters);
}

#[test]
fn the_single_field_commands() {
    let p = |s: &str| parse(&req(s)).unwrap();
    assert_eq!(
        p("<checkout><address>1</address></checkout>"),
        Command::CheckOut {
            address: "1".into(),
            extension: None
        }
    );
    assert_eq!(
        p("<changename><address>1</address><name>Bob</name></changename>"),
        Command::ChangeName {
            address: "1".into(),
            name: "Bob".into()
        }
    );
    for s in [
        "<cos><address>1</address><cos>3</cos></cos>",
        "<class_of_service><address>1</address><value>3</value></class_of_service>",
        "<permission><room>1</room><level>3</level></permission>",
    ] {
        assert_eq!(
            p(s),
            Command::Cos {
                address: "1".into(),
                cos: 3
            },
            "{s}"
        );
    }
    for (s, on) in [
        ("<dnd><address>1</address><dnd>on</dnd></dnd>", true),
        ("<dnd><address>1</address><status>0</status></dnd>", false),
        (
            "<do_not_disturb><address>1</address><value>Yes</value></do_not_disturb>",
            true,
        ),
    ] {
        assert_eq!(
            p(s),
            Command::Dnd {
                address: "1".into(),
                on
            }
        );
    }
    assert_eq!(
        p("<mwi><address>1</address><mwi>1</mwi></mwi>"),
        Command::Mwi {
            address: "1".into(),
            on: true
        }
    );
    assert_eq!(
        p("<roomstatus><address>1</address><status>dirty</status></roomstatus>"),
        Command::RoomStatus {
            address: "1".into(),
            code: "dirty".into()
        }
    );
    assert_eq!(
        p("<roominfo><address>1</address></roominfo>"),
        Command::RoomInfo {
            address: "1".into()
        }
    );
    let r = rejected(&req(
        "<dnd><address>1</address><dnd>on</dnd><status>off</status></dnd>",
    ));
    assert!(r.error.message.contains("twice"), "{r:?}");
    assert_eq!(
        rejected(&req("<dnd><address>1</address></dnd>"))
            .error
            .status,
        Status::InvalidParameters
    );
    assert_eq!(
        rejected(&req(
            "<changename><address>1</address><name></name></changename>"
        ))
        .error
        .status,
        Status::InvalidParameters
    );
    assert_eq!(
        rejected(&req("<update><address>1</address></update>"))
            .error
            .status,
        Status::InvalidParameters
    );
    assert_eq!(
        p("<update><address>1</address><dateout>20261201</dateout></update>"),
        Command::Update(Update {
            address: "1".into(),
            dateout: Some(date(2026, 12, 1)),
            ..Update::default()
        })
    );
}

#[test]
fn wakeup_commands() {
    let p = |s: &str| parse(&req(s)).unwrap();
    assert_eq!(
        p("<wakeup><address>1</address><time>0700</time></wakeup>"),
        Command::Wakeup {
            address: "1".into(),
            op: WakeupOp::Set(WakeTime::Clock { hour: 7, minute: 0 })
        }
    );
    assert_eq!(
        p("<wakeup><address>1</address><action>set</action><time>202611280630</time></wakeup>"),
        Command::Wakeup {
            address: "1".into(),
            op: WakeupOp::Set(WakeTime::At(date(2026, 11, 28).at(6, 30, 0, 0)))
        }
    );
    assert_eq!(
        p("<wakeup><address>1</address><time>20261128063005</time></wakeup>"),
        Command::Wakeup {
            address: "1".into(),
            op: WakeupOp::Set(WakeTime::At(date(2026, 11, 28).at(6, 30, 5, 0)))
        }
    );
    assert_eq!(
        p("<wakeup><address>1</address><action>cancel</action></wakeup>"),
        Command::Wakeup {
            address: "1".into(),
            op: WakeupOp::Cancel(None)
        }
    );
    assert_eq!(
        p("<wakeup_call><address>1</address></wakeup_call>"),
        Command::Wakeup {
            address: "1".into(),
            op: WakeupOp::List
        }
    );
    for bad in [
        "2400",
        "0760",
        "700",
        "07:00",
        "202613010700",
        "2026112807001",
        "20261128070060",
    ] {
        let r = rejected(&req(&format!(
            "<wakeup><address>1</address><time>{bad}</time></wakeup>"
        )));
        assert_eq!(r.error.status, Status::InvalidValue, "{bad}");
    }
    let r = rejected(&req(
        "<wakeup><address>1</address><action>snooze</action></wakeup>",
    ));
    assert_eq!(r.error.status, Status::InvalidValue);
    let r = rejected(&req(
        "<wakeup><address>1</address><action>set</action></wakeup>",
    ));
    assert_eq!(r.error.status, Status::InvalidParameters);
}

#[test]
fn wake_times_resolve_in_the_pbx_time_zone() {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    // 2026-11-27 10:00 Berlin = 09:00 UTC.
    let now: Timestamp = "2026-11-27T09:00:00Z".parse().unwrap();
    let later = WakeTime::Clock {
        hour: 11,
        minute: 30,
    }
    .resolve(now, &tz)
    .unwrap();
    assert_eq!(later.to_string(), "2026-11-27T10:30:00Z");
    let tomorrow = WakeTime::Clock { hour: 7, minute: 0 }
        .resolve(now, &tz)
        .unwrap();
    assert_eq!(tomorrow.to_string(), "2026-11-28T06:00:00Z");
    // Exactly now is not "next".
    let same = WakeTime::Clock {
        hour: 10,
        minute: 0,
    }
    .resolve(now, &tz)
    .unwrap();
    assert_eq!(same.to_string(), "2026-11-28T09:00:00Z");
    let at = WakeTime::At(date(2026, 7, 1).at(6, 0, 0, 0))
        .resolve(now, &tz)
        .unwrap();
    assert_eq!(at.to_string(), "2026-07-01T04:00:00Z");
    // 02:30 on the spring-forward night does not exist: it moves forward.
    let gap = WakeTime::At(date(2026, 3, 29).at(2, 30, 0, 0))
        .resolve(now, &tz)
        .unwrap();
    assert_eq!(gap.to_string(), "2026-03-29T01:30:00Z");
    assert_eq!(
        format_wake_time(date(2026, 1, 2).at(3, 4, 0, 0)),
        "202601020304"
    );
    assert_eq!(
        format_wake_time(date(2026, 1, 2).at(3, 4, 5, 0)),
        "20260102030405"
    );
}

#[test]
fn token_is_md5_of_username_and_password() {
    // md5("pmsuserpmspass"), computed with coreutils md5sum.
    let t = token("pmsuser", b"pmspass");
    assert_eq!(
        std::str::from_utf8(&t).unwrap(),
        "054d44bdc44de72f7c6dc7fcc02d830e"
    );
    let lower = std::str::from_utf8(&t).unwrap().to_owned();
    assert!(token_matches("pmsuser", b"pmspass", &lower));
    assert!(token_matches(
        "pmsuser",
        b"pmspass",
        &lower.to_ascii_uppercase()
    ));
    assert!(!token_matches("pmsuser", b"other", &lower));
    assert!(!token_matches("pmsuser", b"pmspass", ""));
}

#[test]
fn formats() {
    assert_eq!(Format::parse(None).unwrap(), Format::Xml);
    assert_eq!(Format::parse(Some("JSON")).unwrap(), Format::Json);
    assert_eq!(Format::parse(Some("xml")).unwrap(), Format::Xml);
    assert_eq!(
        Format::parse(Some("csv")).unwrap_err().status,
        Status::InvalidValue
    );
}

#[test]
fn replies_in_xml_and_json() {
    let r = Reply::ok("checkin", "1100");
    assert_eq!(
        r.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<pms_data_response><checkin><address>1100</address><status>0</status></checkin></pms_data_response>\n"
    );
    assert_eq!(
        r.to_json().to_string(),
        r#"{"pms_data_response":{"checkin":{"address":"1100","status":0}}}"#
    );
    let e = Reply::failed(
        Some("update"),
        Some("1"),
        &PmsError::new(Status::FailedToUpdateData, "room 1 is not checked in <&>"),
    )
    .with("name", "A \"B\" & 'C'");
    let x = e.to_xml();
    assert!(x.contains("<update><address>1</address><status>-25</status><error_msg>room 1 is not checked in &lt;&amp;&gt;</error_msg><name>A &quot;B&quot; &amp; &apos;C&apos;</name></update>"), "{x}");
    // Well-formed, and the text comes back.
    let doc = roxmltree::Document::parse(&x).unwrap();
    let name = doc.descendants().find(|n| n.has_tag_name("name")).unwrap();
    assert_eq!(name.text(), Some("A \"B\" & 'C'"));

    let bare = Reply::rejected(&Rejected::bare(Status::InvalidParameters, "data is empty"));
    assert_eq!(
        bare.to_json().to_string(),
        r#"{"pms_data_response":{"status":-1,"error_msg":"data is empty"}}"#
    );
    assert!(bare.to_xml().contains("<pms_data_response><status>-1</status><error_msg>data is empty</error_msg></pms_data_response>"));

    let list = Reply::ok("wakeup", "1").with_list(
        "wakeups",
        "call",
        vec![vec![
            ("time", "202611280700".into()),
            ("state", "pending".into()),
        ]],
    );
    assert!(list.to_xml().contains(
        "<wakeups><call><time>202611280700</time><state>pending</state></call></wakeups>"
    ));
    assert_eq!(
        list.to_json()["pms_data_response"]["wakeup"]["wakeups"][0]["state"],
        "pending"
    );
}

#[test]
fn nothing_panics_on_odd_input() {
    for s in [
        "<pms_data_request><checkin><address>1</address><datein>99999999</datein></checkin></pms_data_request>",
        "<pms_data_request><wakeup><address>1</address><time>99991231235959</time></wakeup></pms_data_request>",
        "<pms_data_request><wakeup><address>1</address><time>00000101000000</time></wakeup></pms_data_request>",
        "<pms_data_request><checkin><address>\u{1F600}</address></checkin></pms_data_request>",
        "<pms_data_request><\u{1F600}/></pms_data_request>",
        "<a:pms_data_request xmlns:a=\"x\"><a:checkout><a:address>1</a:address></a:checkout></a:pms_data_request>",
    ] {
        let _ = parse(s);
    }
    let tz = TimeZone::UTC;
    let far = WakeTime::At(date(9999, 12, 31).at(23, 59, 59, 0));
    let _ = far.resolve(Timestamp::MAX, &tz);
    let _ = WakeTime::Clock {
        hour: 23,
        minute: 59,
    }
    .resolve(Timestamp::MAX, &tz);
}
