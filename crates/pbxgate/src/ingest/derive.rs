//! From an Asterisk CDR (an AMI `Cdr` event, or a row recovered from a CSV)
//! to the UCM630X record. How each UCM field is derived is documented in
//! docs/compatibility.md; the dialplan contract (Pbx* headers) in docs/asterisk.md.

use md5::{Digest, Md5};
use store::NewCdr;
use ucm::cdr::CdrRecord;

/// The Asterisk side: standard CDR fields plus the variables pbxgate's
/// dialplan sets. Empty strings where a source does not carry a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsteriskCdr {
    pub accountcode: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: String,
    pub answer: String,
    pub end: String,
    pub duration: String,
    pub billsec: String,
    pub disposition: String,
    pub amaflags: String,
    pub uniqueid: String,
    pub userfield: String,
    pub linkedid: String,
    /// Asterisk's CDR `sequence`: the order in which the CDRs of a call were
    /// created (a counter of the whole PBX).
    pub sequence: String,
    pub direction: String,
    pub action_type: String,
    pub src_trunk: String,
    pub dst_trunk: String,
    pub did: String,
    pub recordfiles: String,
}

impl AsteriskCdr {
    /// From an AMI `Cdr` event (cdr_manager with pbxgate's `[mappings]`).
    pub fn from_ami(m: &asterisk::ami::Message) -> Self {
        let g = |k: &str| m.get(k).unwrap_or("").to_owned();
        AsteriskCdr {
            accountcode: g("AccountCode"),
            src: g("Source"),
            dst: g("Destination"),
            dcontext: g("DestinationContext"),
            clid: g("CallerID"),
            channel: g("Channel"),
            dstchannel: g("DestinationChannel"),
            lastapp: g("LastApplication"),
            lastdata: g("LastData"),
            start: g("StartTime"),
            answer: g("AnswerTime"),
            end: g("EndTime"),
            duration: g("Duration"),
            billsec: g("BillableSeconds"),
            disposition: g("Disposition"),
            amaflags: g("AMAFlags"),
            uniqueid: g("UniqueID"),
            userfield: g("UserField"),
            linkedid: g("LinkedID"),
            sequence: g("Sequence"),
            direction: g("PbxDirection"),
            action_type: g("PbxActionType"),
            src_trunk: g("PbxSrcTrunk"),
            dst_trunk: g("PbxDstTrunk"),
            did: g("PbxDid"),
            recordfiles: g("PbxRecordFiles"),
        }
    }

    /// The identity of this CDR, the same whichever way it reaches pbxgate
    /// (AMI event or CSV), so that it is stored once.
    pub fn dedupe_key(&self) -> String {
        let mut h = Md5::new();
        for part in [
            &self.uniqueid,
            &self.channel,
            &self.dstchannel,
            &self.start,
            &self.answer,
            &self.end,
            &self.disposition,
            &self.lastapp,
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        ucm::auth::hex(&h.finalize())
    }

    /// Extra CDRs that are not calls: the halves of Local channels that do not
    /// dial anyone (test originates, helper channels). A Local half that
    /// dials is a real leg and is kept.
    pub fn is_artefact(&self) -> bool {
        self.channel.starts_with("Local/") && !self.lastapp.eq_ignore_ascii_case("Dial")
    }
}

pub use asterisk::channel::channel_ext;

/// UCM `service`: `s` for SIP channels; empty where the UCM's meaning is unknown.
fn service(channel: &str) -> &'static str {
    let tech = channel.split('/').next().unwrap_or("");
    if tech.eq_ignore_ascii_case("PJSIP") || tech.eq_ignore_ascii_case("SIP") {
        "s"
    } else {
        ""
    }
}

/// Splits `"Alice" <1001>` into name and number.
pub fn split_clid(clid: &str) -> (String, String) {
    let clid = clid.trim();
    match (clid.rfind('<'), clid.ends_with('>')) {
        (Some(lt), true) => {
            let number = clid[lt + 1..clid.len() - 1].trim().to_owned();
            (unquote(clid[..lt].trim()), number)
        }
        _ => (String::new(), clid.trim_matches('"').to_owned()),
    }
}

/// A caller name as Asterisk writes it in `clid`: quoted, with `"` and `\`
/// escaped by a backslash (`ast_escape_quoted`): `"Bob \"B\""` is `Bob "B"`.
/// A name without quotes is taken as it is.
fn unquote(name: &str) -> String {
    let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) else {
        return name.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Asterisk local time text -> UTC milliseconds, in the PBX zone.
pub fn local_to_utc_ms(text: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", text.trim()).ok()?;
    civil_to_utc_ms(dt, tz)
}

/// A wall-clock time in `tz` as UTC milliseconds. In a DST gap the offset
/// before the change applies, in a fold the earlier instant: one rule for the
/// times Asterisk writes and the cdrapi filter times compared with them.
pub fn civil_to_utc_ms(dt: jiff::civil::DateTime, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let ts = tz
        .to_ambiguous_zoned_datetime(dt)
        .compatible()
        .ok()?
        .timestamp();
    Some(ts.as_millisecond())
}

/// The UCM record of one leg of a call: `key` is the identity of the
/// Asterisk CDR it was made from (kept when the leg was merged with
/// another), `owner` the caller whose number names the call's session.
pub fn to_ucm_leg(c: &AsteriskCdr, key: &str, owner: &str, tz: &jiff::tz::TimeZone) -> NewCdr {
    let mut r = CdrRecord::new();
    let (name, number) = split_clid(&c.clid);
    let channel_ext = channel_ext(&c.channel);
    let dstchannel_ext = channel_ext_or_empty(&c.dstchannel);
    // A UCM knows four dispositions; Asterisk may also say CONGESTION.
    let disposition = match c.disposition.as_str() {
        "CONGESTION" => "FAILED",
        d => d,
    };
    let userfield = if c.direction.is_empty() {
        &c.userfield
    } else {
        &c.direction
    };
    let linked = if c.linkedid.is_empty() {
        &c.uniqueid
    } else {
        &c.linkedid
    };
    let session = format!("{}-{}", linked.replace('.', ""), owner);
    // Who answered: the extension; out through a trunk, the number dialled
    // (what a UCM shows), not the trunk's name.
    let dstanswer = match disposition {
        "ANSWERED" if !c.dst_trunk.is_empty() && dstchannel_ext == c.dst_trunk => c.dst.as_str(),
        "ANSWERED" => dstchannel_ext.as_str(),
        _ => "",
    };
    let pairs: [(&str, &str); 31] = [
        ("accountcode", &c.accountcode),
        ("src", &c.src),
        ("dst", &c.dst),
        ("dcontext", &c.dcontext),
        ("channel", &c.channel),
        ("dstchannel", &c.dstchannel),
        ("lastapp", &c.lastapp),
        ("lastdata", &c.lastdata),
        ("start", &c.start),
        ("answer", &c.answer),
        ("end", &c.end),
        ("duration", &c.duration),
        ("billsec", &c.billsec),
        ("disposition", disposition),
        ("amaflags", &c.amaflags),
        ("uniqueid", &c.uniqueid),
        ("userfield", userfield),
        ("channel_ext", &channel_ext),
        ("dstchannel_ext", &dstchannel_ext),
        ("service", service(&c.channel)),
        ("caller_name", &name),
        // MixMonitor leaves a header-only file for a call that never bridged
        // audio; a UCM lists recordings of answered calls only.
        (
            "recordfiles",
            if disposition == "ANSWERED" {
                &c.recordfiles
            } else {
                ""
            },
        ),
        ("dstanswer", dstanswer),
        ("session", &session),
        ("action_owner", &c.src),
        ("action_type", &c.action_type),
        ("src_trunk_name", &c.src_trunk),
        ("dst_trunk_name", &c.dst_trunk),
        ("chanext", ""),
        ("dstchanext", ""),
        ("recordfiles_desc", ""),
    ];
    for (k, v) in pairs {
        r.set(k, v);
    }
    r.set("clid", format!("\"{name}\" <{number}>"));
    let start_ms = local_to_utc_ms(&c.start, tz).unwrap_or(0);
    let end_ms = local_to_utc_ms(&c.end, tz).unwrap_or_else(|| {
        let secs = c.duration.trim().parse::<i64>().unwrap_or(0);
        start_ms.saturating_add(secs.saturating_mul(1000))
    });
    NewCdr {
        dedupe_key: key.to_owned(),
        start_ms,
        call_ms: call_start_ms(linked).unwrap_or(start_ms),
        end_ms,
        record: r,
    }
}

/// The start of the call from its Asterisk linkedid (`<epoch>.<sequence>`,
/// the uniqueid of the call's first channel): the same for every leg.
fn call_start_ms(linkedid: &str) -> Option<i64> {
    let secs = linkedid.split('.').next()?;
    if secs.is_empty() || secs.len() > 12 || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse::<i64>().ok().map(|s| s * 1000)
}

fn channel_ext_or_empty(channel: &str) -> String {
    if channel.is_empty() {
        String::new()
    } else {
        channel_ext(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CDR taken alone (its own `src` names its session); `None` for an
    /// artefact that is not a call.
    fn to_ucm(c: &AsteriskCdr, tz: &jiff::tz::TimeZone) -> Option<NewCdr> {
        if c.is_artefact() {
            return None;
        }
        Some(to_ucm_leg(c, &c.dedupe_key(), &c.src, tz))
    }

    fn answered() -> AsteriskCdr {
        AsteriskCdr {
            src: "1001".into(),
            dst: "1000".into(),
            dcontext: "ext-local".into(),
            clid: "\"Ext 1001\" <1001>".into(),
            channel: "PJSIP/1001-00000004".into(),
            dstchannel: "PJSIP/1000-00000005".into(),
            lastapp: "Dial".into(),
            lastdata: "PJSIP/1000/sip:1000@127.0.0.1:15061,8".into(),
            start: "2026-11-27 00:40:01".into(),
            answer: "2026-11-27 00:40:02".into(),
            end: "2026-11-27 00:40:07".into(),
            duration: "6".into(),
            billsec: "5".into(),
            disposition: "ANSWERED".into(),
            amaflags: "DOCUMENTATION".into(),
            uniqueid: "1795740001.8".into(),
            linkedid: "1795740001.8".into(),
            direction: "Internal".into(),
            action_type: "DIAL".into(),
            recordfiles: "2026-11/auto-1795740001-1001-1000.wav@".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_answered_internal_call() {
        let c = to_ucm(&answered(), &jiff::tz::TimeZone::UTC).unwrap();
        let r = &c.record;
        assert_eq!(r.get("src"), "1001");
        assert_eq!(r.get("clid"), "\"Ext 1001\" <1001>");
        assert_eq!(r.get("caller_name"), "Ext 1001");
        assert_eq!(r.get("channel_ext"), "1001");
        assert_eq!(r.get("dstchannel_ext"), "1000");
        assert_eq!(r.get("dstanswer"), "1000");
        assert_eq!(r.get("userfield"), "Internal");
        assert_eq!(r.get("service"), "s");
        assert_eq!(r.get("session"), "17957400018-1001");
        assert_eq!(r.get("action_owner"), "1001");
        assert_eq!(r.get("action_type"), "DIAL");
        assert_eq!(
            r.get("recordfiles"),
            "2026-11/auto-1795740001-1001-1000.wav@"
        );
        assert_eq!(r.get("nat_call"), "");
        assert_eq!(c.start_ms, 1_795_740_001_000);
    }

    #[test]
    fn an_outbound_call_was_answered_by_the_number_dialled() {
        let mut c = answered();
        c.dst = "5550123".into();
        c.dstchannel = "PJSIP/trunk-00000007".into();
        c.dst_trunk = "trunk".into();
        let r = to_ucm(&c, &jiff::tz::TimeZone::UTC).unwrap().record;
        assert_eq!(r.get("dstchannel_ext"), "trunk");
        assert_eq!(r.get("dstanswer"), "5550123");
        // A trunk named by the dialplan but answered elsewhere (a forward to
        // an extension): that extension.
        c.dstchannel = "PJSIP/1000-00000008".into();
        let r = to_ucm(&c, &jiff::tz::TimeZone::UTC).unwrap().record;
        assert_eq!(r.get("dstanswer"), "1000");
    }

    #[test]
    fn unanswered_calls_have_no_dstanswer_and_congestion_is_failed() {
        let mut c = answered();
        c.disposition = "NO ANSWER".into();
        let r = to_ucm(&c, &jiff::tz::TimeZone::UTC).unwrap().record;
        assert_eq!(r.get("dstanswer"), "");
        assert_eq!(r.get("recordfiles"), "", "no recording without audio");
        c.disposition = "CONGESTION".into();
        assert_eq!(
            to_ucm(&c, &jiff::tz::TimeZone::UTC)
                .unwrap()
                .record
                .get("disposition"),
            "FAILED"
        );
    }

    #[test]
    fn channel_names() {
        assert_eq!(channel_ext("PJSIP/1000-0000001a"), "1000");
        assert_eq!(channel_ext("PJSIP/trunk-00000003"), "trunk");
        assert_eq!(channel_ext("PJSIP/my-trunk-00000003"), "my-trunk");
        assert_eq!(channel_ext("Local/1000@test-00000001;2"), "1000");
        assert_eq!(channel_ext("DAHDI/1-1"), "1");
        assert_eq!(channel_ext(""), "");
        assert_eq!(channel_ext("garbage"), "");
    }

    #[test]
    fn caller_ids() {
        assert_eq!(
            split_clid("\"Alice\" <1001>"),
            ("Alice".into(), "1001".into())
        );
        assert_eq!(split_clid("\"\" <2001>"), ("".into(), "2001".into()));
        assert_eq!(
            split_clid("<+15551234567>"),
            ("".into(), "+15551234567".into())
        );
        assert_eq!(split_clid("1001"), ("".into(), "1001".into()));
        // Asterisk escapes quotes and backslashes inside the quoted name.
        assert_eq!(
            split_clid(r#""Bob \"The\" Builder" <1002>"#),
            ("Bob \"The\" Builder".into(), "1002".into())
        );
        assert_eq!(
            split_clid(r#""C:\\temp" <1003>"#),
            (r"C:\temp".into(), "1003".into())
        );
        assert_eq!(split_clid(r#""\"" <1004>"#), ("\"".into(), "1004".into()));
        // Not Asterisk's quoting: kept as it is.
        assert_eq!(
            split_clid(r#"Bob "B" <1005>"#),
            (r#"Bob "B""#.into(), "1005".into())
        );
    }

    /// Any name, quoted as Asterisk's `ast_callerid_merge` quotes it, comes
    /// back as it was.
    #[test]
    fn every_quoted_name_comes_back() {
        let alphabet = ['a', ' ', '"', '\\', '<', '>', 'é', '\''];
        let mut seed: u64 = 0x5eed;
        for _ in 0..5000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 60) as usize;
            let name: String = (0..len)
                .map(|i| alphabet[((seed >> (i * 3 % 57)) & 7) as usize])
                .collect();
            let escaped: String = name
                .chars()
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            let clid = format!("\"{escaped}\" <1001>");
            assert_eq!(split_clid(&clid), (name.clone(), "1001".into()), "{clid}");
        }
    }

    #[test]
    fn local_channel_halves_that_do_not_dial_are_artefacts() {
        let mut c = answered();
        c.channel = "Local/1000@test-00000000;1".into();
        c.lastapp = "Playback".into();
        assert!(to_ucm(&c, &jiff::tz::TimeZone::UTC).is_none());
        c.lastapp = "Dial".into();
        assert!(to_ucm(&c, &jiff::tz::TimeZone::UTC).is_some());
    }

    #[test]
    fn the_key_is_stable_and_distinguishes_legs() {
        let a = answered();
        assert_eq!(a.dedupe_key(), answered().dedupe_key());
        let mut b = answered();
        b.dstchannel = "PJSIP/1002-00000006".into();
        assert_ne!(a.dedupe_key(), b.dedupe_key());
    }

    #[test]
    fn local_times_are_read_in_the_pbx_zone() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            local_to_utc_ms("2026-11-27 01:00:00", &berlin),
            Some(1_795_737_600_000)
        );
        assert_eq!(local_to_utc_ms("", &berlin), None);
        assert_eq!(local_to_utc_ms("yesterday", &berlin), None);
    }
}
