//! Seeded random inputs for the request parser: whatever arrives, it answers
//! Ok or a -1 error, never panics. (Deeper coverage-guided fuzzing: `fuzz/`.)
#![allow(clippy::unwrap_used, clippy::panic)]

use ucm::{Status, parse_request};

/// xorshift64*: deterministic, so a failure reproduces from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    br#"{"request":{"action":"challenge","user":"cdrapi","version":"1.0"}}"#,
    br#"{"request":{"action":"login","user":"cdrapi","token":"0123456789abcdef0123456789abcdef","url":"x"}}"#,
    br#"{"request":{"action":"getSystemStatus","cookie":"sid743052864-1771597757","page":1,"item_num":"30"}}"#,
    br#"{"request":{"action":"cdrapi","cookie":"sid1-2","format":"json","numRecords":100,"caller":"5300,5302-5304"}}"#,
];

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3\x28",
    b"request",
    b"action",
    b"0.5",
    b"true",
    b"  ",
];

#[test]
fn random_and_mutated_bodies_never_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut ok = 0;
    for _ in 0..50_000 {
        let mut body = SEEDS[rng.below(SEEDS.len())].to_vec();
        for _ in 0..1 + rng.below(6) {
            match rng.below(4) {
                0 if !body.is_empty() => {
                    let i = rng.below(body.len());
                    body[i] = rng.next() as u8;
                }
                1 if !body.is_empty() => {
                    let i = rng.below(body.len());
                    body.truncate(i);
                }
                2 => {
                    let i = rng.below(body.len() + 1);
                    let t = TOKENS[rng.below(TOKENS.len())];
                    body.splice(i..i, t.iter().copied());
                }
                _ => {
                    let n = rng.below(64);
                    body = (0..n).map(|_| rng.next() as u8).collect();
                }
            }
        }
        match parse_request(&body) {
            Ok(req) => {
                ok += 1;
                assert!(!req.action.is_empty());
                for key in ["user", "cookie", "page", "token"] {
                    let _ = req.params.str(key);
                    let _ = req.params.uint(key);
                }
            }
            Err(e) => assert_eq!(e.status(), Status::InvalidParameters),
        }
    }
    // The mutations must leave some bodies valid, or the accessors went untested.
    assert!(ok > 1_000, "only {ok} valid bodies");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut body = String::from("{\"request\":{\"action\":\"x\",\"a\":");
    body.push_str(&"[".repeat(100_000));
    body.push_str(&"]".repeat(100_000));
    body.push_str("}}");
    assert!(parse_request(body.as_bytes()).is_err());
}

/// recapi names assembled from traversal pieces: whatever passes the rules
/// stays inside any folder it is joined to.
#[test]
fn random_recapi_names_never_escape() {
    use std::path::{Component, Path};
    use ucm::recapi::{RecRequest, parse_request as recapi};

    const PIECES: &[&str] = &[
        "..",
        ".",
        "/",
        "//",
        "\\",
        "%2e",
        "%2f",
        "%25",
        "%00",
        "\0",
        "\n",
        "@",
        ",",
        "a",
        "2024-05",
        "auto-1717093784-1001-2100.wav",
        "é",
        "\u{202e}",
        "\u{2028}",
        " ",
        ".wav",
        "~",
        "*",
        "#",
    ];
    let mut rng = Rng(0x5EED_BEEF_0000_0005);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let name: String = (0..1 + rng.below(6))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect();
        let dir = (rng.below(3) == 0).then(|| PIECES[rng.below(PIECES.len())]);
        let Ok(RecRequest::Fetch { dir, names }) = recapi(dir, Some(&name)) else {
            continue;
        };
        accepted += 1;
        for rel in std::iter::once(&dir).chain(&names) {
            let joined = Path::new("/srv/rec").join(rel.as_str());
            let inside = joined.strip_prefix("/srv/rec").unwrap();
            assert!(
                inside
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "{name:?} -> {rel:?}"
            );
            assert!(!rel.as_str().contains(['%', '\\', '\0', '\n']), "{rel:?}");
        }
    }
    // the generator also produces names that pass
    assert!(accepted > 1000, "{accepted}");
}

/// PMS requests assembled from XML pieces: whatever arrives, parsing answers a
/// command or a refusal with a message, never panics; every answer built from
/// it is well-formed XML.
#[test]
fn random_pms_requests_never_panic() {
    use ucm::pms::{Reply, parse};

    const PIECES: &[&str] = &[
        "<pms_data_request>",
        "</pms_data_request>",
        "<checkin>",
        "</checkin>",
        "<wakeup>",
        "</wakeup>",
        "<dnd>",
        "</dnd>",
        "<address>1100</address>",
        "<address>",
        "</address>",
        "<datein>20261127</datein>",
        "<dateout>20260230</dateout>",
        "<time>0700</time>",
        "<time>99991231235959</time>",
        "<name>Jane &amp; \"J\"</name>",
        "<cos>4</cos>",
        "<dnd>on</dnd>",
        "<action>cancel</action>",
        "<!--c-->",
        "<![CDATA[<x>]]>",
        "&amp;",
        "&bogus;",
        "<!DOCTYPE x>",
        "<?xml version=\"1.0\"?>",
        "\u{0}",
        "é",
        "<",
        ">",
        " ",
        "1100",
    ];
    const SEEDS: &[&str] = &[
        "<pms_data_request><checkin><address>1100</address><name>jjkkl</name><extension>1100</extension><datein>20180202</datein><dateout>20180203</dateout></checkin></pms_data_request>",
        "<pms_data_request><wakeup><address>1100</address><action>set</action><time>0700</time></wakeup></pms_data_request>",
        "<pms_data_request><dnd><address>1100</address><dnd>on</dnd></dnd></pms_data_request>",
        "<pms_data_request><update><address>1100</address><cos>2</cos><vip>1</vip></update></pms_data_request>",
    ];
    let mut rng = Rng(0x5EED_0000_0123_0007);
    let mut commands = 0;
    for _ in 0..30_000 {
        let mut text = SEEDS[rng.below(SEEDS.len())].to_owned();
        for _ in 0..rng.below(4) {
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            let i = bounds[rng.below(bounds.len())];
            match rng.below(3) {
                0 => text.insert_str(i, PIECES[rng.below(PIECES.len())]),
                1 => {
                    let j = bounds[rng.below(bounds.len())];
                    let (a, b) = (i.min(j), i.max(j));
                    text.replace_range(a..b, "");
                }
                _ => {
                    text = (0..1 + rng.below(10))
                        .map(|_| PIECES[rng.below(PIECES.len())])
                        .collect();
                }
            }
        }
        let reply = match parse(&text) {
            Ok(cmd) => {
                commands += 1;
                Reply::ok(cmd.name(), cmd.address()).with("echo", text.clone())
            }
            Err(r) => {
                assert!(!r.error.message.is_empty(), "{text:?}");
                assert_ne!(r.error.status, Status::Success);
                Reply::rejected(&r)
            }
        };
        let xml = reply.to_xml();
        roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        let _ = reply.to_json().to_string();
    }
    assert!(commands > 100, "only {commands} commands parsed");
}
