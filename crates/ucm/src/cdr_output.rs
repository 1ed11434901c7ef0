//! CDR Real-Time Output framing: what pbxgate pushes to a billing server for
//! each CDR (see `docs/cdr-output.md`). The record is a `cdrapi` entry in the
//! chosen format and profile (same fields, same order, same grouping), so a
//! receiver parses it with the code it already has for `cdrapi`.
//!
//! - TCP: one entry per line ([`line`]). JSON and XML entries never hold a
//!   raw line break (JSON escapes them; XML gets `&#10;`/`&#13;`); CSV rows
//!   follow RFC 4180, one leg per row, so a quoted value may hold one.
//! - HTTP(S): a batch of entries as a whole `cdrapi` answer ([`body`]),
//!   signed with [`signature`] when a signing secret is set.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::cdrapi::Format;
use crate::cdrapi::encode::{Encoder, Leg, Options};

/// The header carrying [`signature`].
pub const SIGNATURE_HEADER: &str = "X-Pbxgate-Signature";
/// The header naming a delivery, the same on every retry of it.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// One entry (the legs of one call, or one leg) as one line, `\n`-terminated.
pub fn line(format: Format, options: Options, legs: &[Leg<'_>]) -> Vec<u8> {
    let mut raw = Vec::new();
    Encoder::new(format, options).entry(legs, &mut raw);
    let mut out = Vec::with_capacity(raw.len() + 1);
    match format {
        // Only the separator before the entry is a line break.
        Format::Json => out.extend(raw.iter().filter(|b| **b != b'\n')),
        Format::Xml => {
            let end = raw.len() - usize::from(raw.last() == Some(&b'\n'));
            for &b in &raw[..end] {
                match b {
                    b'\n' => out.extend_from_slice(b"&#10;"),
                    b'\r' => out.extend_from_slice(b"&#13;"),
                    b => out.push(b),
                }
            }
        }
        Format::Csv => {
            out = raw;
            out.pop();
        }
    }
    out.push(b'\n');
    out
}

/// Entries as one `cdrapi` answer (`{"cdr_root":[…]}`, `<cdr_root>…`, or CSV
/// with its header line): the body of one HTTP delivery.
pub fn body(format: Format, options: Options, entries: &[&[Leg<'_>]]) -> Vec<u8> {
    let mut enc = Encoder::new(format, options);
    let mut out = Vec::new();
    enc.begin(&mut out);
    for legs in entries {
        enc.entry(legs, &mut out);
    }
    enc.finish(&mut out);
    out
}

/// HMAC-SHA256 of `<timestamp>.<body>`; `None` only if the HMAC refused the
/// key, which it does for no length (kept as an `Option` rather than a panic).
fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under secret>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, timestamp, body)?.finalize().into_bytes();
    Some(format!("t={timestamp},v1={}", hex::encode(tag)))
}

/// Whether `header` is a [`signature`] of `body` under `secret`, made within
/// `tolerance` seconds of `now` (compared in constant time).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if now.abs_diff(t) > tolerance.unsigned_abs() {
        return false;
    }
    mac(secret, t, body).is_some_and(|m| m.verify_slice(&v1).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cdr::FIELDS;
    use crate::cdrapi::encode::Profile;

    fn leg(acctid: &'static str, lastdata: &'static str) -> Leg<'static> {
        let mut l: Leg<'static> = [""; FIELDS.len()];
        l[0] = acctid;
        for (i, name) in FIELDS.iter().enumerate() {
            match *name {
                "src" => l[i] = "1001",
                "dst" => l[i] = "1000",
                "lastdata" => l[i] = lastdata,
                "session" => l[i] = "1796000000123-1001",
                "duration" | "billsec" => l[i] = "5",
                _ => {}
            }
        }
        l
    }

    fn opts() -> Options {
        Options {
            profile: Profile::Ucm630x,
            ..Options::default()
        }
    }

    #[test]
    fn every_format_gives_one_line_per_entry() {
        let one = [leg("1", "PJSIP/1000,60\nx")];
        let two = [leg("1", "a"), leg("2", "b")];
        for format in [Format::Json, Format::Xml] {
            for legs in [&one[..], &two[..]] {
                let l = line(format, opts(), legs);
                assert_eq!(l.iter().filter(|b| **b == b'\n').count(), 1, "{format:?}");
                assert_eq!(l.last(), Some(&b'\n'));
            }
        }
        let json: serde_json::Value =
            serde_json::from_slice(&line(Format::Json, opts(), &one)).unwrap();
        assert_eq!(json["AcctId"], "1");
        assert_eq!(json["lastdata"], "PJSIP/1000,60\nx");
        let grouped: serde_json::Value =
            serde_json::from_slice(&line(Format::Json, opts(), &two)).unwrap();
        assert_eq!(grouped["sub_cdr_2"]["AcctId"], "2");
        let xml = String::from_utf8(line(Format::Xml, opts(), &one)).unwrap();
        let doc = roxmltree::Document::parse(xml.trim_end()).unwrap();
        let lastdata = doc
            .descendants()
            .find(|n| n.has_tag_name("lastdata"))
            .unwrap();
        assert_eq!(lastdata.text(), Some("PJSIP/1000,60\nx"));
        // CSV: one row per leg, no header.
        let csv = String::from_utf8(line(Format::Csv, opts(), &two)).unwrap();
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.starts_with("1,"), "{csv}");
    }

    #[test]
    fn a_batch_is_a_cdrapi_answer() {
        let a = [leg("1", "a")];
        let b = [leg("2", "b"), leg("3", "c")];
        let json: serde_json::Value =
            serde_json::from_slice(&body(Format::Json, opts(), &[&a, &b])).unwrap();
        assert_eq!(json["cdr_root"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let body = br#"{"AcctId":"1"}"#;
        let sig = signature(b"whsec-test", 1_796_000_000, body).unwrap();
        // Computed independently with Python's hmac module.
        assert_eq!(
            sig,
            "t=1796000000,v1=5f99198d81835042651f6d52e346f8942758e68f27303ed16a347c0dd26220c0"
        );
        assert!(verify(b"whsec-test", &sig, body, 1_796_000_100, 300));
        assert!(
            !verify(b"whsec-test", &sig, body, 1_796_000_400, 300),
            "too old"
        );
        assert!(
            !verify(b"other", &sig, body, 1_796_000_000, 300),
            "wrong secret"
        );
        assert!(
            !verify(b"whsec-test", &sig, b"{}", 1_796_000_000, 300),
            "other body"
        );
        assert!(!verify(
            b"whsec-test",
            "t=1796000000",
            body,
            1_796_000_000,
            300
        ));
        assert!(!verify(b"whsec-test", "garbage", body, 0, 300));
    }
}
