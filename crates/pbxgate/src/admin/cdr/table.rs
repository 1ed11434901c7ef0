//! The table of calls: one row per cdrapi entry (a call: its legs grouped by
//! session, as the cdrapi groups them), its legs in hidden rows that a
//! button shows, and a player per recording.

use jiff::tz::TimeZone;
use store::{CdrPage, Grouping};
use ucm::cdr::CdrRecord;
use ucm::cdrapi::encode::{Leg, main_cdr};

use super::form::encode;
use crate::admin::page::escape;
use crate::cdrapi::entry_bounds;

/// Positions of the fields the table shows.
struct Idx {
    acctid: usize,
    src: usize,
    dst: usize,
    clid: usize,
    channel: usize,
    dstchannel: usize,
    lastapp: usize,
    duration: usize,
    billsec: usize,
    disposition: usize,
    userfield: usize,
    caller_name: usize,
    recordfiles: usize,
    dstanswer: usize,
    accountcode: usize,
    action_type: usize,
    src_trunk: usize,
    dst_trunk: usize,
}

impl Idx {
    fn new() -> Idx {
        // Every name is one of FIELDS (a unit test checks); 0 is never reached.
        let at = |name: &str| CdrRecord::index_of(name).unwrap_or(0);
        Idx {
            acctid: at("AcctId"),
            src: at("src"),
            dst: at("dst"),
            clid: at("clid"),
            channel: at("channel"),
            dstchannel: at("dstchannel"),
            lastapp: at("lastapp"),
            duration: at("duration"),
            billsec: at("billsec"),
            disposition: at("disposition"),
            userfield: at("userfield"),
            caller_name: at("caller_name"),
            recordfiles: at("recordfiles"),
            dstanswer: at("dstanswer"),
            accountcode: at("accountcode"),
            action_type: at("action_type"),
            src_trunk: at("src_trunk_name"),
            dst_trunk: at("dst_trunk_name"),
        }
    }
}

pub fn local_time(ms: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| String::new(),
        |t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}

/// Seconds as `m:ss` or `h:mm:ss`; anything but a number as it is.
fn duration(v: &str) -> String {
    match v.trim().parse::<u64>() {
        Ok(s) if s >= 3600 => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        Ok(s) => format!("{}:{:02}", s / 60, s % 60),
        Err(_) => v.to_owned(),
    }
}

/// The recordings a `recordfiles` value names (`a.wav@b.wav@`).
fn recordings(value: &str) -> impl Iterator<Item = &str> {
    value.split('@').map(str::trim).filter(|s| !s.is_empty())
}

fn status_pill(disposition: &str) -> String {
    let class = match disposition {
        "ANSWERED" => "up",
        "BUSY" | "NO ANSWER" => "warn",
        "" => "",
        _ => "down",
    };
    format!(
        "<span class=\"pill {class}\">{}</span>",
        escape(if disposition.is_empty() {
            "—"
        } else {
            disposition
        })
    )
}

fn player(file: &str) -> String {
    let src = format!("/admin/cdr/recording?file={}", encode(file));
    let name = file.rsplit('/').next().unwrap_or(file);
    format!(
        "<div class=\"recording\"><audio controls preload=\"none\" src=\"{src}\" title=\"{n}\"></audio>\
         <a class=\"muted\" href=\"{src}\" download>{n}</a></div>",
        src = escape(&src),
        n = escape(name)
    )
}

fn first_nonempty<'a>(legs: &[Leg<'a>], i: usize) -> &'a str {
    legs.iter()
        .map(|l| l[i])
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

fn with_muted(main: &str, extra: &str) -> String {
    if extra.is_empty() || extra == main {
        escape(main)
    } else {
        format!(
            "{}<br><span class=\"muted\">{}</span>",
            escape(main),
            escape(extra)
        )
    }
}

const COLUMNS: [&str; 10] = [
    "Start",
    "Caller",
    "Callee",
    "Answered by",
    "Status",
    "Duration",
    "Talk",
    "Direction",
    "Trunk",
    "Recording",
];

/// The table of a page, newest first or not as the page was read.
pub fn render(
    page: &CdrPage,
    grouping: Grouping,
    tz: &TimeZone,
    tz_name: &str,
) -> Result<String, store::Error> {
    let f = Idx::new();
    let legs = page.legs()?;
    let pairs: Vec<(i64, Leg<'_>)> = legs.iter().map(|l| (l.call_ms, l.values)).collect();
    let mut out = String::from(
        "<table class=\"cdr-table\" id=\"cdr-table\"><thead><tr><th><span class=\"visually-hidden\">Legs</span></th>",
    );
    for (i, c) in COLUMNS.iter().enumerate() {
        let extra = if i == 0 {
            format!(" <span class=\"muted\">({})</span>", escape(tz_name))
        } else {
            String::new()
        };
        let class = if matches!(*c, "Duration" | "Talk") {
            " class=\"num\""
        } else {
            ""
        };
        out.push_str(&format!("<th{class}>{c}{extra}</th>"));
    }
    out.push_str("</tr></thead>");
    for (n, (a, b)) in entry_bounds(&pairs, grouping).into_iter().enumerate() {
        let call: Vec<Leg<'_>> = pairs[a..b].iter().map(|(_, v)| *v).collect();
        let main = main_cdr(&call);
        let answered = call.iter().any(|l| l[f.disposition] == "ANSWERED");
        let status = if answered {
            "ANSWERED"
        } else {
            first_nonempty(&call, f.disposition)
        };
        let mut files: Vec<&str> = Vec::new();
        for l in &call {
            for r in recordings(l[f.recordfiles]) {
                if !files.contains(&r) {
                    files.push(r);
                }
            }
        }
        let trunk = {
            let (src, dst) = (
                first_nonempty(&call, f.src_trunk),
                first_nonempty(&call, f.dst_trunk),
            );
            match (src, dst) {
                ("", "") => String::new(),
                (s, "") => format!("in: {s}"),
                ("", d) => format!("out: {d}"),
                (s, d) => format!("in: {s}, out: {d}"),
            }
        };
        let first = &legs[a];
        // A grouped entry starts when its call does; a leg of the early
        // firmware's flat list when the leg does.
        let start_ms = if grouping == Grouping::Sessions {
            first.call_ms
        } else {
            first.start_ms
        };
        let toggle = if call.len() > 1 {
            let ids: Vec<String> = (1..=call.len()).map(|k| format!("leg-{n}-{k}")).collect();
            format!(
                "<button type=\"button\" class=\"legs-toggle secondary\" aria-expanded=\"false\" \
                 aria-controls=\"{}\" title=\"Show the legs of this call\">{} legs</button>",
                ids.join(" "),
                call.len()
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tbody class=\"call-group\"><tr class=\"call{}\" data-session=\"{}\" data-legs=\"{}\">\
             <td>{toggle}</td><td class=\"time\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>",
            if answered { " answered" } else { "" },
            escape(first.session()),
            call.len(),
            escape(&local_time(start_ms, tz)),
            with_muted(&main[f.src], first_nonempty(&call, f.caller_name)),
            escape(&main[f.dst]),
            escape(first_nonempty(&call, f.dstanswer)),
            status_pill(status),
            escape(&duration(&main[f.duration])),
            escape(&duration(&main[f.billsec])),
            with_muted(
                first_nonempty(&call, f.userfield),
                &main[f.action_type]
            ),
            with_muted(&trunk, first_nonempty(&call, f.accountcode)),
        ));
        for file in &files {
            out.push_str(&player(file));
        }
        out.push_str("</td></tr>");
        if call.len() > 1 {
            for (k, (leg, meta)) in call.iter().zip(&legs[a..b]).enumerate() {
                let lastapp = if leg[f.lastapp].is_empty() {
                    String::new()
                } else {
                    format!("{} ", leg[f.lastapp])
                };
                out.push_str(&format!(
                    "<tr class=\"leg\" id=\"leg-{n}-{}\" hidden><td class=\"muted\">#{}</td><td class=\"time\">{}</td>\
                     <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td>{}</td><td>{}</td><td>{}</td></tr>",
                    k + 1,
                    escape(leg[f.acctid]),
                    escape(&local_time(meta.start_ms, tz)),
                    with_muted(leg[f.src], leg[f.clid]),
                    with_muted(leg[f.dst], leg[f.dstchannel]),
                    escape(leg[f.dstanswer]),
                    status_pill(leg[f.disposition]),
                    escape(&duration(leg[f.duration])),
                    escape(&duration(leg[f.billsec])),
                    with_muted(&format!("{lastapp}{}", leg[f.action_type]), leg[f.channel]),
                    with_muted(leg[f.src_trunk], leg[f.dst_trunk]),
                    recordings(leg[f.recordfiles])
                        .map(|r| escape(r.rsplit('/').next().unwrap_or(r)))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                ));
            }
        }
        out.push_str("</tbody>");
    }
    out.push_str("</table>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_shown_exists() {
        for name in [
            "AcctId",
            "src",
            "dst",
            "clid",
            "channel",
            "dstchannel",
            "lastapp",
            "duration",
            "billsec",
            "disposition",
            "userfield",
            "caller_name",
            "recordfiles",
            "dstanswer",
            "accountcode",
            "action_type",
            "src_trunk_name",
            "dst_trunk_name",
        ] {
            assert!(CdrRecord::index_of(name).is_some(), "{name}");
        }
    }

    #[test]
    fn durations_and_recordings() {
        assert_eq!(duration("5"), "0:05");
        assert_eq!(duration("3725"), "1:02:05");
        assert_eq!(duration("x"), "x");
        assert_eq!(
            recordings("2024-05/a.wav@b.wav@").collect::<Vec<_>>(),
            ["2024-05/a.wav", "b.wav"]
        );
        assert!(
            player("2024-05/a b+c.wav")
                .contains("src=\"/admin/cdr/recording?file=2024-05%2Fa%20b%2Bc.wav\"")
        );
    }
}
