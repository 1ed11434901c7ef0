//! `pbxgate recordings check`: CDRs whose `recordfiles` names a file that is
//! not there, and files in the `monitor` directory that no CDR names.
//!
//! `recordfiles` holds paths relative to the monitor folder (as the shipped
//! dialplan writes them); a bare name is matched the way recapi finds it, in
//! any sub-folder. The folder is listed once (what recapi would list: servable
//! files only) and the CDRs are walked once, so the cost is one listing plus
//! one pass over the CDR table, without a look-up per file.

use std::collections::{HashMap, HashSet};

use store::{RecordedCursor, Store};

use super::Recordings;
use crate::error::{Error, Result};

/// A CDR naming a recording that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFile {
    pub acctid: i64,
    pub start: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Files in the folder.
    pub files: u64,
    /// CDR legs with `recordfiles` set, and the names they hold.
    pub recorded_cdrs: u64,
    pub names: u64,
    pub missing: Vec<MissingFile>,
    /// Relative paths of files no CDR names, sorted.
    pub unreferenced: Vec<String>,
}

/// Checks directory `dir` (normally `monitor`) against the CDRs in `store`.
pub async fn check(recordings: &Recordings, store: &Store, dir: &str) -> Result<Report> {
    let folder = recordings.folder(dir).ok_or_else(|| {
        Error::io(
            format!("recordings.dirs has no directory \"{dir}\""),
            std::io::Error::other("not configured"),
        )
    })?;
    // relative path -> referenced; bare name -> relative paths
    let mut files: HashMap<String, bool> = HashMap::new();
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    let mut listing = recordings.storage().list(folder);
    while let Some(f) = listing.recv().await {
        let f = f?;
        let rel = f.rel.to_string();
        by_name
            .entry(f.rel.file_name().to_owned())
            .or_default()
            .push(rel.clone());
        files.insert(rel, false);
    }
    let mut report = Report {
        files: files.len() as u64,
        ..Report::default()
    };
    let mut cursor = RecordedCursor::default();
    let mut seen_missing: HashSet<(i64, String)> = HashSet::new();
    loop {
        let batch = store.recorded_cdrs(&mut cursor, 5000).await?;
        if batch.is_empty() {
            break;
        }
        for cdr in &batch {
            report.recorded_cdrs += 1;
            for name in cdr.names() {
                report.names += 1;
                let hit = if name.contains('/') {
                    match files.get_mut(name) {
                        Some(r) => {
                            *r = true;
                            true
                        }
                        None => false,
                    }
                } else {
                    match by_name.get(name) {
                        Some(paths) => {
                            for p in paths {
                                if let Some(r) = files.get_mut(p) {
                                    *r = true;
                                }
                            }
                            true
                        }
                        None => false,
                    }
                };
                if !hit && seen_missing.insert((cdr.acctid, name.to_owned())) {
                    report.missing.push(MissingFile {
                        acctid: cdr.acctid,
                        start: cdr.start.clone(),
                        name: name.to_owned(),
                    });
                }
            }
        }
    }
    report.unreferenced = files
        .into_iter()
        .filter(|(_, referenced)| !referenced)
        .map(|(rel, _)| rel)
        .collect();
    report.unreferenced.sort_unstable();
    Ok(report)
}
