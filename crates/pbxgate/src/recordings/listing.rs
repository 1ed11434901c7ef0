//! The CSV listings of recapi's cases 1 and 2. The UCM's layout is not
//! documented; the one client that parses it skips the header and reads
//! column 1 as the name to ask for, so both listings keep the name there:
//!
//! - directories: `type,filedir` — one row `directory,<name>` per directory;
//! - files: `filedir,filename,size,mtime` — `filename` is the path relative
//!   to the directory (`2024-05/auto-….wav`), which recapi accepts back as
//!   it is (and which equals a CDR's `recordfiles` entry); `size` in bytes;
//!   `mtime` in `pbx.timezone` as `YYYY-MM-DD HH:MM:SS`, like CDR times.
//!
//! With the flat profile ([`Listing::Flat`], the UCM62xx shape) a file
//! directly in a `YYYY-MM` folder is shown by its bare name, which recapi
//! finds by the month search; files in other sub-folders keep their path.
//! A bare name is shown only for the file a download of that name returns,
//! so every listed name downloads exactly the file listed: a second file of
//! the same name in another month is left out (logged), as a flat folder
//! cannot hold two files of one name either.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;
use ucm::recapi::{Listing, RelPath, is_month_folder, month_file, month_folders, name_epoch};

use super::resolve::{ChannelStream, FileMeta, Lookup, Storage, find};
use crate::error::Result;

const CSV: &str = "text/csv; charset=utf-8";

fn csv_line(fields: &[&str]) -> Vec<u8> {
    // "\n" line ends, as cdrapi's CSV has.
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    w.into_inner().unwrap_or_default()
}

fn respond(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CSV));
    resp
}

/// Case 1: the directories.
pub fn directories<'a>(names: impl IntoIterator<Item = &'a RelPath>) -> Response {
    let mut out = csv_line(&["type", "filedir"]);
    for n in names {
        out.extend(csv_line(&["directory", n.as_str()]));
    }
    respond(Body::from(out))
}

/// `mtime` as the listing shows it.
pub fn local_time(t: std::time::SystemTime, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| tz.to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn row(dir: &RelPath, shown: &str, f: &FileMeta, tz: &jiff::tz::TimeZone) -> Vec<u8> {
    csv_line(&[
        dir.as_str(),
        shown,
        &f.size.to_string(),
        &local_time(f.modified, tz),
    ])
}

/// What a flat listing of one folder knows to tell whether a month folder's
/// file is the one its bare name downloads: the month folders and the names
/// directly in the folder (read once; a folder without month folders needs
/// neither).
struct Flat {
    months: Vec<String>,
    root: HashSet<String>,
    /// Files left out because their bare name downloads another file: how
    /// many, and the first few for the log.
    shadowed: usize,
    first_shadowed: Vec<String>,
}

impl Flat {
    async fn new(storage: &dyn Storage, folder: &str) -> Result<Flat> {
        let months: Vec<String> = storage
            .subfolders(folder)
            .await?
            .into_iter()
            .filter(|m| is_month_folder(m))
            .collect();
        let root = if months.is_empty() {
            HashSet::new()
        } else {
            storage.names_in(folder, "").await?.into_iter().collect()
        };
        Ok(Flat {
            months,
            root,
            shadowed: 0,
            first_shadowed: Vec::new(),
        })
    }

    /// The name `f` is listed under, or `None` when its bare name finds
    /// another file (or the look-up failed): the download's rule decides.
    async fn shown<'a>(
        &mut self,
        storage: &dyn Storage,
        folder: &str,
        f: &'a FileMeta,
        tz: &jiff::tz::TimeZone,
    ) -> Option<&'a str> {
        let Some((month, bare)) = month_file(f.rel.as_str()) else {
            return Some(f.rel.as_str());
        };
        // The usual case needs no look-up: nothing of that name directly in
        // the folder, and this month is the first existing month of the
        // name's epoch, where the download looks first.
        let first_month = name_epoch(bare).and_then(|e| {
            month_folders(e, tz)
                .into_iter()
                .find(|m| self.months.contains(m))
        });
        if !self.root.contains(bare) && first_month.as_deref() == Some(month) {
            return Some(bare);
        }
        let found = match RelPath::parse(bare) {
            Ok(name) => find(storage, folder, &name, tz).await,
            Err(_) => return Some(f.rel.as_str()),
        };
        match found {
            Ok(Lookup::Found(g)) if g.rel == f.rel => Some(bare),
            Ok(_) => {
                self.shadowed += 1;
                if self.first_shadowed.len() < 5 {
                    self.first_shadowed.push(f.rel.to_string());
                }
                None
            }
            Err(e) => {
                tracing::warn!(folder, file = %f.rel, error = %e, "recapi flat listing: look-up failed; file left out");
                None
            }
        }
    }

    fn finish(&self, dir: &RelPath) {
        if self.shadowed > 0 {
            tracing::warn!(
                filedir = %dir,
                left_out = self.shadowed,
                first = %self.first_shadowed.join(", "),
                "recapi flat listing: files left out, their bare name downloads a file of the same name in another folder"
            );
        }
    }
}

/// Case 2: the files of `dirs` ((name, folder) pairs) in the `listing`
/// shape, streamed as the storage finds them.
pub fn files(
    storage: Arc<dyn Storage>,
    dirs: Vec<(RelPath, String)>,
    tz: jiff::tz::TimeZone,
    listing: Listing,
) -> Response {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut out = csv_line(&["filedir", "filename", "size", "mtime"]);
        for (name, folder) in &dirs {
            let mut flat = match listing {
                Listing::Month => None,
                Listing::Flat => match Flat::new(storage.as_ref(), folder).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::error!(filedir = %name, error = %e, "recapi listing failed; the answer is cut short");
                        let _ = tx.send(Err(io::Error::other("listing failed"))).await;
                        return;
                    }
                },
            };
            let mut found = storage.list(folder);
            while let Some(item) = found.recv().await {
                match item {
                    Ok(f) => {
                        let shown = match &mut flat {
                            None => Some(f.rel.as_str()),
                            Some(flat) => flat.shown(storage.as_ref(), folder, &f, &tz).await,
                        };
                        if let Some(shown) = shown {
                            out.extend(row(name, shown, &f, &tz));
                        }
                    }
                    Err(e) => {
                        tracing::error!(filedir = %name, error = %e, "recapi listing failed; the answer is cut short");
                        let _ = tx.send(Err(io::Error::other("listing failed"))).await;
                        return;
                    }
                }
                if out.len() >= 64 * 1024
                    && tx
                        .send(Ok(Bytes::from(std::mem::take(&mut out))))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if let Some(flat) = &flat {
                flat.finish(name);
            }
        }
        let _ = tx.send(Ok(Bytes::from(out))).await;
    });
    respond(Body::from_stream(ChannelStream(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_times() {
        assert_eq!(csv_line(&["a", "b,c", "d\"e"]), b"a,\"b,c\",\"d\"\"e\"\n");
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_717_093_784);
        assert_eq!(
            local_time(t, &jiff::tz::TimeZone::UTC),
            "2024-05-30 18:29:44"
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(local_time(t, &berlin), "2024-05-30 20:29:44");
    }

    /// The rows of a flat listing of `folder`: (shown, relative path).
    async fn flat_rows(folder: &str, tz: &jiff::tz::TimeZone) -> Vec<(String, String)> {
        use super::super::resolve::LocalFs;
        let mut flat = Flat::new(&LocalFs, folder).await.unwrap();
        let mut rx = LocalFs.list(folder);
        let mut out = Vec::new();
        while let Some(f) = rx.recv().await {
            let f = f.unwrap();
            if let Some(shown) = flat.shown(&LocalFs, folder, &f, tz).await {
                out.push((shown.to_owned(), f.rel.to_string()));
            }
        }
        out
    }

    #[tokio::test]
    async fn every_flat_name_downloads_the_file_listed_and_appears_once() {
        use super::super::resolve::LocalFs;
        let t = tempfile::tempdir().unwrap();
        let files = [
            // its month, the usual case
            "2024-05/auto-1717093784-1001-2100.wav",
            // the same name in a wrong month: left out
            "2024-04/auto-1717093784-1001-2100.wav",
            // only in a wrong month: the search finds it there
            "2024-01/auto-1717093790-1001-2101.wav",
            // in the folder itself and in its month: the folder's wins
            "auto-1718000000-1002-2102.wav",
            "2024-06/auto-1718000000-1002-2102.wav",
            // no epoch: the newest month wins
            "2024-01/custom.wav",
            "2024-03/custom.wav",
            // 2024-05-31 23:30 UTC is June in Berlin: the June folder is
            // looked in first there
            "2024-05/auto-1717198200-1003-2103.wav",
            "2024-06/auto-1717198200-1003-2103.wav",
            // other folders keep their path
            "1000/INBOX/msg0000.wav",
            "2024-05/sub/deep.wav",
        ];
        for f in files {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f.as_bytes()).unwrap();
        }
        let folder = t.path().display().to_string();
        for (tz, june_or_may) in [
            (
                jiff::tz::TimeZone::UTC,
                "2024-05/auto-1717198200-1003-2103.wav",
            ),
            (
                jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
                "2024-06/auto-1717198200-1003-2103.wav",
            ),
        ] {
            let rows = flat_rows(&folder, &tz).await;
            let listed: Vec<&str> = rows.iter().map(|(_, r)| r.as_str()).collect();
            let mut want = vec![
                "1000/INBOX/msg0000.wav",
                "2024-01/auto-1717093790-1001-2101.wav",
                "2024-03/custom.wav",
                "2024-05/auto-1717093784-1001-2100.wav",
                june_or_may,
                "2024-05/sub/deep.wav",
                "auto-1718000000-1002-2102.wav",
            ];
            want.sort_unstable();
            assert_eq!(listed, want);
            let mut shown: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
            shown.sort_unstable();
            shown.dedup();
            assert_eq!(shown.len(), rows.len(), "a name twice: {rows:?}");
            for (name, rel) in &rows {
                assert!(
                    !name.contains('/') || name == rel,
                    "{name} shows a folder it does not need"
                );
                let l = find(&LocalFs, &folder, &RelPath::parse(name).unwrap(), &tz)
                    .await
                    .unwrap();
                match l {
                    Lookup::Found(f) => assert_eq!(f.rel.as_str(), rel, "{name}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_folder_without_month_folders_costs_no_extra_listing() {
        use super::super::resolve::LocalFs;
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("auto-1717093784-1001-2100.wav"), b"a").unwrap();
        let folder = t.path().display().to_string();
        let flat = Flat::new(&LocalFs, &folder).await.unwrap();
        assert!(flat.months.is_empty() && flat.root.is_empty());
        let rows = flat_rows(&folder, &jiff::tz::TimeZone::UTC).await;
        assert_eq!(
            rows,
            [(
                "auto-1717093784-1001-2100.wav".to_owned(),
                "auto-1717093784-1001-2100.wav".to_owned()
            )]
        );
    }
}
