//! `cdrapi` output (spec §4.5): every format × profile × cdr key is parsed
//! back with a real parser (csv, roxmltree, serde_json) and must give the
//! values, the shape and the key order the UCM emits.
#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::Value;
use ucm::cdr::FIELDS;
use ucm::cdrapi::Format;
use ucm::cdrapi::encode::{CdrKey, Encoder, Leg, Options, Profile, empty, main_cdr};

const PROFILES: [Profile; 3] = [Profile::Ucm630x, Profile::Ucm62xx, Profile::Ucm6100];
const KEYS: [CdrKey; 2] = [CdrKey::Session, CdrKey::Empty];
const FORMATS: [Format; 3] = [Format::Csv, Format::Xml, Format::Json];

type Owned = Vec<String>;

fn leg(values: &[String]) -> Leg<'_> {
    std::array::from_fn(|i| values[i].as_str())
}

/// A leg whose values exercise every escaping rule.
fn nasty(session: &str, acct: u32, duration: &str, billsec: &str) -> Owned {
    FIELDS
        .iter()
        .map(|f| match *f {
            "AcctId" => acct.to_string(),
            "accountcode" => " lead and trail ".to_owned(),
            "src" => format!("10{acct:02}"),
            "dst" => format!("20{acct:02}"),
            "dcontext" => "tab\there".to_owned(),
            "clid" => format!("\"Name, Jr.\" <10{acct:02}>"),
            "lastdata" => "PJSIP/2000,60,zb(callee-handler^s^1)".to_owned(),
            "start" => format!("2023-05-12 10:47:{acct:02}"),
            "answer" => String::new(),
            "duration" => duration.to_owned(),
            "billsec" => billsec.to_owned(),
            "uniqueid" => "ctl\u{1}\u{1b}\u{7f}\u{0}end\u{FFFE}|\u{FFFF}|\u{FFFD}".to_owned(),
            "userfield" => "<&>'\"]]>".to_owned(),
            // Last of the 22 early fields: quoting at the end of a CSV row.
            "service" => "end, \"quoted\"\nnext".to_owned(),
            "caller_name" => "Zoë 日本 \"q\" \\ back 🎉 \u{2028}".to_owned(),
            "recordfiles" => "line1\nline2\r\nline3\r".to_owned(),
            "dstanswer" => String::new(),
            "session" => session.to_owned(),
            "action_type" => format!("RINGGROUP[{acct}]"),
            // Last of the 32 fields.
            "dst_trunk_name" => "trailing space ".to_owned(),
            "recordfiles_desc" => "duration=31,size=489324B,start-time=1661157307@".to_owned(),
            other => format!("{other}-{acct}"),
        })
        .collect()
}

/// Sessions of 1, 3, 1 and 2 legs.
fn sessions() -> Vec<Vec<Owned>> {
    vec![
        vec![nasty("1683896326701708-2000", 1, "10", "5")],
        vec![
            nasty("1683899266980541-1015", 2, "3", "5"),
            nasty("1683899266980541-1015", 3, "x", "7"),
            nasty("1683899266980541-1015", 4, "4", ""),
        ],
        vec![nasty("17\"<&>,\n\t-weird", 5, "", "")],
        vec![
            nasty("1683899300000000-1020", 6, "20", "11"),
            nasty("1683899300000000-1020", 7, "1", "0"),
        ],
    ]
}

/// Encodes `sessions`, clearing the buffer after every call as the server
/// does when it flushes.
fn encode(format: Format, options: Options, sessions: &[Vec<Owned>]) -> (String, u64) {
    let mut encoder = Encoder::new(format, options);
    let mut out = Vec::new();
    let mut all = Vec::new();
    encoder.begin(&mut out);
    all.append(&mut out);
    for session in sessions {
        let legs: Vec<Leg<'_>> = session.iter().map(|l| leg(l)).collect();
        encoder.entry(&legs, &mut out);
        all.append(&mut out);
    }
    encoder.finish(&mut out);
    all.append(&mut out);
    (String::from_utf8(all).unwrap(), encoder.entries())
}

/// The main_cdr summary, computed independently of the encoder.
fn expected_main(legs: &[Owned]) -> Owned {
    let sum = |name: &str| -> String {
        let i = FIELDS.iter().position(|f| *f == name).unwrap();
        legs.iter()
            .map(|l| l[i].parse::<u64>().unwrap_or(0))
            .sum::<u64>()
            .to_string()
    };
    FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| match *f {
            "src" | "dst" | "start" | "action_type" | "session" => legs[0][i].clone(),
            "duration" | "billsec" => sum(f),
            _ => String::new(),
        })
        .collect()
}

/// What a top-level JSON/XML entry must hold.
enum Entry {
    Flat {
        key: Option<String>,
        leg: Owned,
    },
    Grouped {
        key: String,
        main: Owned,
        subs: Vec<Owned>,
    },
}

fn expected_entries(options: Options, sessions: &[Vec<Owned>]) -> Vec<Entry> {
    let session = FIELDS.iter().position(|f| *f == "session").unwrap();
    let mut entries = Vec::new();
    for legs in sessions {
        let key = match options.cdr_key {
            CdrKey::Session => legs[0][session].clone(),
            CdrKey::Empty => String::new(),
        };
        if !options.profile.groups() {
            for l in legs {
                entries.push(Entry::Flat {
                    key: None,
                    leg: l.clone(),
                });
            }
        } else if legs.len() == 1 {
            entries.push(Entry::Flat {
                key: Some(key),
                leg: legs[0].clone(),
            });
        } else {
            entries.push(Entry::Grouped {
                key,
                main: expected_main(legs),
                subs: legs.clone(),
            });
        }
    }
    entries
}

fn all_options() -> Vec<Options> {
    PROFILES
        .iter()
        .flat_map(|&profile| {
            KEYS.iter()
                .map(move |&cdr_key| Options { profile, cdr_key })
        })
        .collect()
}

// ---------------------------------------------------------------- JSON

fn check_json_record(value: &Value, expected: &[String], n: usize, context: &str) {
    let map = value
        .as_object()
        .unwrap_or_else(|| panic!("{context}: not an object"));
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    assert_eq!(keys, FIELDS[..n], "{context}: keys");
    for (i, (k, v)) in map.iter().enumerate() {
        assert_eq!(v.as_str(), Some(expected[i].as_str()), "{context}: {k}");
    }
}

#[test]
fn json_preserves_key_order_when_parsed() {
    // The key-order checks below rely on serde_json's preserve_order.
    let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["b", "a"]);
}

#[test]
fn json_round_trips_every_profile_and_key() {
    let sessions = sessions();
    for options in all_options() {
        let context = format!("{options:?}");
        let (text, count) = encode(Format::Json, options, &sessions);
        let root: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{context}: {e}\n{text}"));
        let root = root.as_object().unwrap();
        let container = if options.profile.groups() {
            "cdr_root"
        } else {
            "cdr"
        };
        assert_eq!(root.keys().collect::<Vec<_>>(), [container], "{context}");
        let array = root[container].as_array().unwrap();
        let expected = expected_entries(options, &sessions);
        assert_eq!(array.len(), expected.len(), "{context}");
        assert_eq!(count, expected.len() as u64, "{context}: entries()");
        let n = options.profile.field_count();
        for (i, (got, want)) in array.iter().zip(&expected).enumerate() {
            let context = format!("{context} entry {i}");
            let map = got.as_object().unwrap();
            match want {
                Entry::Flat { key: None, leg } => check_json_record(got, leg, n, &context),
                Entry::Flat {
                    key: Some(key),
                    leg,
                } => {
                    assert_eq!(map.len(), n + 1, "{context}");
                    assert_eq!(
                        map.keys().next().map(String::as_str),
                        Some("cdr"),
                        "{context}"
                    );
                    assert_eq!(map["cdr"].as_str(), Some(key.as_str()), "{context}");
                    let mut rest = map.clone();
                    rest.shift_remove("cdr");
                    check_json_record(&Value::Object(rest), leg, n, &context);
                }
                Entry::Grouped { key, main, subs } => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    let mut want_keys = vec!["cdr".to_owned(), "main_cdr".to_owned()];
                    want_keys.extend((1..=subs.len()).map(|k| format!("sub_cdr_{k}")));
                    assert_eq!(keys, want_keys, "{context}");
                    assert_eq!(map["cdr"].as_str(), Some(key.as_str()), "{context}");
                    check_json_record(&map["main_cdr"], main, n, &format!("{context} main_cdr"));
                    for (k, sub) in subs.iter().enumerate() {
                        let name = format!("sub_cdr_{}", k + 1);
                        check_json_record(&map[&name], sub, n, &format!("{context} {name}"));
                    }
                }
            }
        }
    }
}

#[test]
fn json_entry_key_counts_match_client_heuristics() {
    // Clients: `len(entry) == 33` is a flat UCM62xx record; UCM63xx has 44.
    let one = vec![sessions().remove(0)];
    for (profile, keys) in [
        (Profile::Ucm62xx, 33),
        (Profile::Ucm630x, 44),
        (Profile::Ucm6100, 22),
    ] {
        let options = Options {
            profile,
            cdr_key: CdrKey::Session,
        };
        let (text, _) = encode(Format::Json, options, &one);
        let v: Value = serde_json::from_str(&text).unwrap();
        let entry = v.as_object().unwrap().values().next().unwrap()[0]
            .as_object()
            .unwrap()
            .len();
        assert_eq!(entry, keys, "{profile:?}");
    }
}

#[test]
fn json_is_compact_with_one_entry_per_line() {
    let options = Options::default();
    let (text, _) = encode(Format::Json, options, &sessions());
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], "{\"cdr_root\":[");
    assert_eq!(lines[5], "]}");
    assert!(
        lines[1]
            .starts_with("{\"cdr\":\"1683896326701708-2000\",\"AcctId\":\"1\",\"accountcode\":")
    );
    assert!(
        lines[2].starts_with("{\"cdr\":\"1683899266980541-1015\",\"main_cdr\":{\"AcctId\":\"\",")
    );
    assert!(lines[2].contains("},\"sub_cdr_1\":{\"AcctId\":\"2\","));
    assert!(lines[2].ends_with("\"}},"));
    assert!(!text.contains("null"));
    assert!(!text.contains(": "));
}

#[test]
fn json_cdr_key_empty() {
    let options = Options {
        profile: Profile::Ucm630x,
        cdr_key: CdrKey::Empty,
    };
    let (text, _) = encode(Format::Json, options, &sessions());
    assert_eq!(text.matches("{\"cdr\":\"\",").count(), 4, "{text}");
    assert!(!text.contains("\"cdr\":\"1683"));
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_round_trips_every_profile() {
    let sessions = sessions();
    for options in all_options() {
        let context = format!("{options:?}");
        let (text, count) = encode(Format::Csv, options, &sessions);
        let n = options.profile.field_count();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, FIELDS[..n], "{context}");
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        // One row per leg, grouped or not; no main_cdr row.
        let legs: Vec<&Owned> = sessions.iter().flatten().collect();
        assert_eq!(rows.len(), legs.len(), "{context}");
        for (row, leg) in rows.iter().zip(legs) {
            assert_eq!(row[..], leg[..n], "{context}");
        }
        let want_entries = if options.profile.groups() {
            sessions.len()
        } else {
            legs_len(&sessions)
        };
        assert_eq!(count, want_entries as u64, "{context}");
        assert!(text.ends_with('\n'));
    }
}

fn legs_len(sessions: &[Vec<Owned>]) -> usize {
    sessions.iter().map(Vec::len).sum()
}

#[test]
fn csv_quotes_only_where_needed() {
    let mut values = vec![String::new(); FIELDS.len()];
    values[0] = "62".into();
    values[2] = "5300".into();
    values[5] = "\"pn01\" <5300>".into();
    values[9] = "SIP/5301,60,".into();
    values[10] = "2013-12-03 11:46:40".into();
    values[21] = "s".into();
    let options = Options {
        profile: Profile::Ucm6100,
        cdr_key: CdrKey::Session,
    };
    let (text, _) = encode(Format::Csv, options, &[vec![values]]);
    let row = text.lines().nth(1).unwrap();
    assert_eq!(
        row,
        "62,,5300,,,\"\"\"pn01\"\" <5300>\",,,,\"SIP/5301,60,\",2013-12-03 11:46:40,,,,,,,,,,,s"
    );
}

#[test]
fn csv_header_of_early_firmware_is_the_documented_one() {
    let text = empty(
        Format::Csv,
        Options {
            profile: Profile::Ucm6100,
            cdr_key: CdrKey::Session,
        },
    );
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "AcctId,accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,\
         end,duration,billsec,disposition,amaflags,uniqueid,userfield,channel_ext,dstchannel_ext,service\n"
    );
}

// ---------------------------------------------------------------- XML

/// What survives XML 1.0: disallowed characters become U+FFFD.
fn xml_expected(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn elements<'a, 'i>(node: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    node.children()
        .filter(roxmltree::Node::is_element)
        .collect()
}

fn check_xml_record(node: roxmltree::Node<'_, '_>, expected: &[String], n: usize, context: &str) {
    let children = elements(node);
    let names: Vec<&str> = children.iter().map(|c| c.tag_name().name()).collect();
    assert_eq!(names, FIELDS[..n], "{context}");
    for (child, want) in children.iter().zip(expected) {
        assert!(elements(*child).is_empty(), "{context}");
        let text = child.text().unwrap_or("");
        assert_eq!(
            text,
            xml_expected(want),
            "{context}: {}",
            child.tag_name().name()
        );
    }
}

#[test]
fn xml_round_trips_every_profile_and_key() {
    let sessions = sessions();
    for options in all_options() {
        let context = format!("{options:?}");
        let (text, count) = encode(Format::Xml, options, &sessions);
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cdr_root>\n"));
        assert!(text.ends_with("</cdr_root>\n"));
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{context}: {e}\n{text}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "cdr_root");
        let entries = elements(root);
        let expected = expected_entries(options, &sessions);
        assert_eq!(entries.len(), expected.len(), "{context}");
        assert_eq!(count, expected.len() as u64, "{context}");
        let n = options.profile.field_count();
        for (i, (node, want)) in entries.iter().zip(&expected).enumerate() {
            let context = format!("{context} entry {i}");
            assert_eq!(node.tag_name().name(), "cdr", "{context}");
            match want {
                Entry::Flat { key, leg } => {
                    assert_eq!(node.attribute("session"), key.as_deref(), "{context}");
                    check_xml_record(*node, leg, n, &context);
                }
                Entry::Grouped { key, main, subs } => {
                    assert_eq!(node.attribute("session"), Some(key.as_str()), "{context}");
                    let parts = elements(*node);
                    let names: Vec<&str> = parts.iter().map(|p| p.tag_name().name()).collect();
                    let mut want_names = vec!["main_cdr".to_owned()];
                    want_names.extend((1..=subs.len()).map(|k| format!("sub_cdr_{k}")));
                    assert_eq!(names, want_names, "{context}");
                    check_xml_record(parts[0], main, n, &format!("{context} main_cdr"));
                    for (part, sub) in parts[1..].iter().zip(subs) {
                        check_xml_record(
                            *part,
                            sub,
                            n,
                            &format!("{context} {}", part.tag_name().name()),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn xml_empty_values_are_not_self_closing() {
    let (text, _) = encode(Format::Xml, Options::default(), &sessions()[..1]);
    assert!(text.contains("<answer></answer>"), "{text}");
    assert!(!text.contains("/>"));
}

// ---------------------------------------------------------------- main_cdr

#[test]
fn main_cdr_sums_and_blanks() {
    let s = sessions();
    let legs: Vec<Leg<'_>> = s[1].iter().map(|l| leg(l)).collect();
    let main = main_cdr(&legs);
    assert_eq!(main.len(), FIELDS.len());
    let get = |name: &str| main[FIELDS.iter().position(|f| *f == name).unwrap()].as_str();
    assert_eq!(get("billsec"), "12"); // 5 + 7 + ""
    assert_eq!(get("duration"), "7"); // 3 + "x" + 4
    assert_eq!(get("src"), "1002");
    assert_eq!(get("dst"), "2002");
    assert_eq!(get("start"), "2023-05-12 10:47:02");
    assert_eq!(get("action_type"), "RINGGROUP[2]");
    assert_eq!(get("session"), "1683899266980541-1015");
    for (name, value) in FIELDS.iter().zip(&main) {
        if ![
            "src",
            "dst",
            "start",
            "action_type",
            "session",
            "duration",
            "billsec",
        ]
        .contains(name)
        {
            assert_eq!(value, "", "{name}");
        }
    }
    assert_eq!(main, expected_main(&s[1]));
}

#[test]
fn main_cdr_of_huge_values_saturates() {
    let mut a = nasty("s", 1, "18446744073709551615", "1");
    let b = nasty("s", 2, "5", " 2 ");
    a[0] = "1".into();
    let main = main_cdr(&[leg(&a), leg(&b)]);
    assert_eq!(main[13], "18446744073709551615");
    assert_eq!(main[14], "3");
}

// ---------------------------------------------------------------- empty

#[test]
fn empty_answers() {
    for options in all_options() {
        let groups = options.profile.groups();
        let n = options.profile.field_count();
        let json = String::from_utf8(empty(Format::Json, options)).unwrap();
        assert_eq!(
            json,
            if groups {
                "{\"cdr_root\":[]}"
            } else {
                "{\"cdr\":[]}"
            }
        );
        let csv = String::from_utf8(empty(Format::Csv, options)).unwrap();
        assert_eq!(csv, format!("{}\n", FIELDS[..n].join(",")));
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().len(), n);
        assert_eq!(reader.records().count(), 0);
        let xml = String::from_utf8(empty(Format::Xml, options)).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cdr_root>\n</cdr_root>\n"
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "cdr_root");
        assert!(elements(doc.root_element()).is_empty());
        // An encoder that is given no legs writes no entry.
        for format in FORMATS {
            let mut encoder = Encoder::new(format, options);
            let mut out = Vec::new();
            encoder.begin(&mut out);
            encoder.entry(&[], &mut out);
            encoder.finish(&mut out);
            assert_eq!(out, empty(format, options));
            assert_eq!(encoder.entries(), 0);
        }
    }
}

// ---------------------------------------------------------------- real UCM output

/// Spec example 16 (UCM62xx, grouped, 2 sub_cdr), as the UCM sent it.
const EXAMPLE_16: &str = r#"{"cdr_root":[{"cdr":"1683899266980541-1015",
"main_cdr":{"AcctId":"","accountcode":"","src":"1015","dst":"2004","dcontext":"","clid":"","channel":"","dstchannel":"","lastapp":"","lastdata":"","start":"2023-05-12 10:47:46","answer":"","end":"","duration":"15","billsec":"15","disposition":"","amaflags":"","uniqueid":"","userfield":"","channel_ext":"","dstchannel_ext":"","service":"","caller_name":"","recordfiles":"","dstanswer":"","chanext":"","dstchanext":"","session":"1683899266980541-1015","action_owner":"","action_type":"DIAL","src_trunk_name":"","dst_trunk_name":""},
"sub_cdr_1":{"AcctId":"24","accountcode":"","src":"1015","dst":"2004","dcontext":"did-local","clid":"\"1015\" <1015>","channel":"PJSIP/trunk_2-0000002b","dstchannel":"","lastapp":"Dial","lastdata":"PJSIP/2004,60,zb(callee-handler^s^1)","start":"2023-05-12 10:47:46","answer":"2023-05-12 10:47:47","end":"2023-05-12 10:47:47","duration":"0","billsec":"0","disposition":"NO ANSWER","amaflags":"DOCUMENTATION","uniqueid":"1683899266.91","userfield":"Inbound","channel_ext":"trunk_2","dstchannel_ext":"2004","service":"s","caller_name":"1015","recordfiles":"","dstanswer":"","chanext":"","dstchanext":"","session":"1683899266980541-1015","action_owner":"1015","action_type":"DIAL","src_trunk_name":"groff","dst_trunk_name":""},
"sub_cdr_2":{"AcctId":"25","accountcode":"","src":"1015","dst":"2004","dcontext":"did-local","clid":"\"1015\" <1015>","channel":"PJSIP/trunk_2-0000002b","dstchannel":"","lastapp":"VoiceMail","lastdata":"2004@default,u","start":"2023-05-12 10:47:47","answer":"2023-05-12 10:47:47","end":"2023-05-12 10:48:02","duration":"15","billsec":"15","disposition":"ANSWERED","amaflags":"DOCUMENTATION","uniqueid":"1683899266.91","userfield":"Inbound","channel_ext":"trunk_2","dstchannel_ext":"2004","service":"s","caller_name":"1015","recordfiles":"","dstanswer":"2004","chanext":"","dstchanext":"","session":"1683899266980541-1015","action_owner":"1015","action_type":"VM","src_trunk_name":"groff","dst_trunk_name":""}}]}"#;

/// Spec example 17 (UCM6302 1.0.17.11: 43 fields, "cdr" empty).
const EXAMPLE_17: &str = r#"{"cdr_root":[{"cdr":"","AcctId":"71050","accountcode":"","src":"230","dst":"07917330699","dcontext":"outbound-route-4","clid":"\"Oak Technology\" <01924600401>","channel":"PJSIP/230-000004ec","dstchannel":"PJSIP/trunk_2-000004ed","lastapp":"Dial","lastdata":"PJSIP/07917330699@trunk_2,,TKXM(record-check,StartMonitor)b(callee-handler^s^1)","start":"2022-08-22 09:43:58","answer":"2022-08-22 09:44:12","end":"2022-08-22 09:51:12","duration":"433","billsec":"420","disposition":"ANSWERED","amaflags":"DOCUMENTATION","uniqueid":"1661157838.2666","userfield":"Outbound","channel_ext":"230","dstchannel_ext":"trunk_2","service":"s","caller_name":"Oak Technology","recordfiles":"2022-08/auto-1661157839-230-07917330699.wav@","dstanswer":"07917330699","chanext":"","dstchanext":"","session":"1661157838988180-230","action_owner":"230","action_type":"DIAL","src_trunk_name":"","dst_trunk_name":"Daisy","nat_call":"no","nat_call_peer":"no","video_call":"no","gdms_unique_code":"","gds_call":"no","gsc_call":"no","wave_src_seqid":"707","wave_dst_seqid":"0","device_info":"WP820","device_info_peer":"","recordfiles_desc":""}]}"#;

/// The values of a JSON record in FIELDS order (missing ones empty).
fn owned_from_json(record: &Value) -> Owned {
    FIELDS
        .iter()
        .map(|f| {
            record
                .get(*f)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Parses `text` and prints it compactly again, keeping key order.
fn canonical(text: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
}

#[test]
fn reproduces_example_16_grouped_entry() {
    let real: Value = serde_json::from_str(EXAMPLE_16).unwrap();
    let entry = &real["cdr_root"][0];
    let legs = vec![
        owned_from_json(&entry["sub_cdr_1"]),
        owned_from_json(&entry["sub_cdr_2"]),
    ];
    let options = Options {
        profile: Profile::Ucm62xx,
        cdr_key: CdrKey::Session,
    };
    let (text, count) = encode(Format::Json, options, std::slice::from_ref(&legs));
    assert_eq!(count, 1);
    assert_eq!(canonical(&text), canonical(EXAMPLE_16));

    // The same session on a UCM630X: 43 fields per record, the summary the same.
    let options = Options {
        profile: Profile::Ucm630x,
        cdr_key: CdrKey::Session,
    };
    let (text, _) = encode(Format::Json, options, &[legs]);
    let v: Value = serde_json::from_str(&text).unwrap();
    let main = v["cdr_root"][0]["main_cdr"].as_object().unwrap();
    assert_eq!(main.len(), 43);
    assert_eq!(
        owned_from_json(&v["cdr_root"][0]["main_cdr"]),
        owned_from_json(&entry["main_cdr"])
    );
}

#[test]
fn reproduces_example_17_flat_entry() {
    let real: Value = serde_json::from_str(EXAMPLE_17).unwrap();
    let legs = vec![owned_from_json(&real["cdr_root"][0])];
    let options = Options {
        profile: Profile::Ucm630x,
        cdr_key: CdrKey::Empty,
    };
    let (text, _) = encode(Format::Json, options, &[legs]);
    assert_eq!(canonical(&text), canonical(EXAMPLE_17));
}

#[test]
fn profile_names_deserialize() {
    let p: Vec<Profile> = serde_json::from_str(r#"["ucm630x","ucm62xx","ucm6100"]"#).unwrap();
    assert_eq!(p, PROFILES);
    assert_eq!(Profile::default(), Profile::Ucm630x);
    assert_eq!(PROFILES.map(Profile::field_count), [43, 32, 22]);
    assert_eq!(PROFILES.map(Profile::groups), [true, true, false]);
}

/// CPU time of this thread in seconds (time on CPU, so that other load on the
/// machine does not count), or wall time where /proc does not tell.
fn cpu_time() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64(),
            |ns| ns / 1e9,
        )
}

/// Throughput check: `cargo test --release -p ucm --test cdrapi_encode -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let s = sessions();
    let plain: Owned =
        owned_from_json(&serde_json::from_str::<Value>(EXAMPLE_17).unwrap()["cdr_root"][0]);
    for format in FORMATS {
        for (name, values) in [("plain", &plain), ("nasty", &s[0][0])] {
            let l = leg(values);
            let legs = [l];
            let mut encoder = Encoder::new(format, Options::default());
            let mut out = Vec::with_capacity(1 << 20);
            encoder.begin(&mut out);
            let n = 1_000_000u32;
            let t = cpu_time();
            let mut bytes = 0usize;
            for _ in 0..n {
                encoder.entry(&legs, &mut out);
                if out.len() > 1 << 20 {
                    bytes += out.len();
                    out.clear();
                }
            }
            let secs = cpu_time() - t;
            bytes += out.len();
            println!(
                "{format:?} {name}: {:.2} M legs/s, {:.0} MB/s",
                f64::from(n) / secs / 1e6,
                bytes as f64 / secs / 1e6
            );
        }
    }
}
