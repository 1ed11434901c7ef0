//! Asterisk CDR CSV files: the standard `Master.csv` of cdr_csv (16 to 18
//! columns) and pbxgate's own cdr_custom file (the same 18 columns followed by
//! linkedid, sequence and the pbx_* variables: 26 columns, full fidelity).
//! Used to recover CDRs missed while pbxgate or AMI was down, and by
//! `pbxgate import-csv` to backfill history.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use store::{NewCdr, Store};

use super::derive::AsteriskCdr;
use crate::error::{Error, Result};

const BATCH: usize = 1000;
/// A call whose last CDR is this many lines back is complete: Asterisk
/// writes a call's CDRs within moments of each other.
const CALL_SPAN_LINES: u64 = 500;

/// One CSV line as an Asterisk CDR.
pub fn parse_line(line: &str) -> std::result::Result<AsteriskCdr, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let record = match reader.records().next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("not CSV: {e}")),
        None => return Err("empty line".into()),
    };
    let n = record.len();
    if !(16..=18).contains(&n) && n != 26 {
        return Err(format!(
            "{n} columns; expected 16 to 18 (Master.csv) or 26 (pbxgate.csv)"
        ));
    }
    let f = |i: usize| record.get(i).unwrap_or("").to_owned();
    let mut c = AsteriskCdr {
        accountcode: f(0),
        src: f(1),
        dst: f(2),
        dcontext: f(3),
        clid: f(4),
        channel: f(5),
        dstchannel: f(6),
        lastapp: f(7),
        lastdata: f(8),
        start: f(9),
        answer: f(10),
        end: f(11),
        duration: f(12),
        billsec: f(13),
        disposition: f(14),
        amaflags: f(15),
        uniqueid: f(16),
        userfield: f(17),
        ..Default::default()
    };
    if n == 26 {
        c.linkedid = f(18);
        c.sequence = f(19);
        c.direction = f(20);
        c.action_type = f(21);
        c.src_trunk = f(22);
        c.dst_trunk = f(23);
        c.did = f(24);
        c.recordfiles = f(25);
    }
    if c.start.is_empty() || !c.duration.bytes().all(|b| b.is_ascii_digit()) {
        return Err("no start time or a non-numeric duration".into());
    }
    Ok(c)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub imported: u64,
    pub duplicates: u64,
    /// CDRs that are not legs of their own: helper channels, and the halves
    /// of Local channel pairs merged into the leg they belong to.
    pub skipped: u64,
    /// `(line number, reason)` of lines that are not CDRs.
    pub rejected: Vec<(u64, String)>,
    /// Byte offset after the last complete line read.
    pub end_offset: u64,
}

/// Reads `path` from byte `offset` to its last complete line and stores every
/// CDR, deduplicated against what is stored. `progress` is told the offset
/// reached now and then.
pub async fn import(
    path: &Path,
    offset: u64,
    store: &Store,
    tz: &jiff::tz::TimeZone,
    describe: Option<&super::recording_desc::Describer>,
    queue: &crate::outbox::Queue,
    mut progress: impl FnMut(u64),
) -> Result<Summary> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(format!("cannot seek in {}", path.display()), e))?;
    let mut summary = Summary {
        end_offset: offset,
        ..Summary::default()
    };
    let mut calls = Calls::default();
    let mut line_no: u64 = 0;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = (&mut reader)
            .take(1 << 20)
            .read_until(b'\n', &mut raw)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 || raw.last() != Some(&b'\n') {
            // End of file, or a line still being written: read it next time.
            break;
        }
        line_no += 1;
        summary.end_offset += n as u64;
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(c) => calls.add(c, line_no),
            Err(reason) => summary.rejected.push((line_no, reason)),
        }
        if calls.held >= BATCH {
            let done = calls.take(|last| last + CALL_SPAN_LINES < line_no);
            flush(store, done, tz, describe, queue, &mut summary).await?;
            progress(summary.end_offset);
        }
    }
    flush(
        store,
        calls.take(|_| true),
        tz,
        describe,
        queue,
        &mut summary,
    )
    .await?;
    progress(summary.end_offset);
    Ok(summary)
}

/// CDRs read and not stored yet, per call (linkedid), in file order.
#[derive(Default)]
struct Calls {
    by_id: std::collections::HashMap<String, (u64, Vec<AsteriskCdr>)>,
    held: usize,
}

impl Calls {
    fn add(&mut self, c: AsteriskCdr, line_no: u64) {
        // Master.csv has no linkedid: each CDR is its own call there.
        let id = if c.linkedid.is_empty() {
            format!("line:{line_no}")
        } else {
            c.linkedid.clone()
        };
        let e = self.by_id.entry(id).or_default();
        e.0 = line_no;
        e.1.push(c);
        self.held += 1;
    }

    /// The calls whose last line passes `done`, oldest first.
    fn take(&mut self, done: impl Fn(u64) -> bool) -> Vec<Vec<AsteriskCdr>> {
        let mut out: Vec<(u64, String)> = self
            .by_id
            .iter()
            .filter(|(_, (last, _))| done(*last))
            .map(|(id, (last, _))| (*last, id.clone()))
            .collect();
        out.sort();
        out.into_iter()
            .filter_map(|(_, id)| self.by_id.remove(&id))
            .map(|(_, cdrs)| {
                self.held = self.held.saturating_sub(cdrs.len());
                cdrs
            })
            .collect()
    }
}

async fn flush(
    store: &Store,
    calls: Vec<Vec<AsteriskCdr>>,
    tz: &jiff::tz::TimeZone,
    describe: Option<&super::recording_desc::Describer>,
    queue: &crate::outbox::Queue,
    summary: &mut Summary,
) -> Result<()> {
    let mut batch: Vec<NewCdr> = Vec::new();
    for cdrs in calls {
        let call = super::flow::reduce(cdrs);
        summary.skipped += (call.cdr_count - call.legs.len()) as u64;
        batch.extend(super::records_of(&call, tz));
    }
    if batch.is_empty() {
        return Ok(());
    }
    if let Some(d) = describe {
        super::describe_recordings(d, &mut batch).await;
    }
    let inserted = super::insert(store, &batch, queue).await?;
    summary.imported += inserted;
    summary.duplicates += batch.len() as u64 - inserted;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_csv_lines_as_asterisk_writes_them() {
        let c = parse_line(r#""","+15551234567","1000","ext-local","""Test na"" <+15551234567>","PJSIP/trunk-000000b4","PJSIP/1000-000000c2","Dial","PJSIP/1000/sip:1000@127.0.0.1:15061,8","2026-11-27 00:50:55","2026-11-27 00:50:56","2026-11-27 00:50:58",3,2,"ANSWERED","DOCUMENTATION","1795740655.224","""#).unwrap();
        assert_eq!(c.src, "+15551234567");
        assert_eq!(c.clid, "\"Test na\" <+15551234567>");
        assert_eq!(c.lastdata, "PJSIP/1000/sip:1000@127.0.0.1:15061,8");
        assert_eq!(c.duration, "3");
        assert_eq!(c.uniqueid, "1795740655.224");
        let unanswered = parse_line(r#""","1001","1099","ext-local","""Ext 1001"" <1001>","PJSIP/1001-000000b2","PJSIP/1099-000000ba","Dial","PJSIP/1099/sip:1099@127.0.0.1:15061,8","2026-11-27 00:50:55",,"2026-11-27 00:51:03",8,0,"NO ANSWER","DOCUMENTATION","1795740655.222","""#).unwrap();
        assert_eq!(unanswered.answer, "");
        assert_eq!(unanswered.disposition, "NO ANSWER");
    }

    #[test]
    fn pbxgate_csv_lines_carry_the_dialplan_variables() {
        let c = parse_line(r#""","1001","1000","ext-local","""Ext 1001"" <1001>","PJSIP/1001-00000001","PJSIP/1000-00000002","Dial","PJSIP/1000,8","2026-11-27 00:48:20","2026-11-27 00:48:21","2026-11-27 00:48:23",3,2,"ANSWERED","DOCUMENTATION","1795740500.1","","1795740500.1","1","Internal","DIAL","","","","2026-11/auto-1795740500-1001-1000.wav@""#).unwrap();
        assert_eq!(c.linkedid, "1795740500.1");
        assert_eq!(c.direction, "Internal");
        assert_eq!(c.action_type, "DIAL");
        assert_eq!(c.recordfiles, "2026-11/auto-1795740500-1001-1000.wav@");
    }

    #[test]
    fn bad_lines_are_rejected_with_a_reason() {
        assert!(parse_line("a,b,c").unwrap_err().contains("3 columns"));
        assert!(parse_line("").is_err());
        let no_start = r#""","1","2","c","x","ch","","Dial","","","","",0,0,"FAILED","DOCUMENTATION","1.1","""#;
        assert!(parse_line(no_start).unwrap_err().contains("start"));
    }
}
