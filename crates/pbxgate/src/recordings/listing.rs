//! The CSV listings of recapi's cases 1 and 2. The UCM's layout is not
//! documented; the one client that parses it skips the header and reads
//! column 1 as the name to ask for, so both listings keep the name there:
//!
//! - directories: `type,filedir` — one row `directory,<name>` per directory;
//! - files: `filedir,filename,size,mtime` — `filename` is the path relative
//!   to the directory (`2024-05/auto-….wav`), which recapi accepts back as
//!   it is (and which equals a CDR's `recordfiles` entry); `size` in bytes;
//!   `mtime` in `pbx.timezone` as `YYYY-MM-DD HH:MM:SS`, like CDR times.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;
use ucm::recapi::RelPath;

use super::resolve::{ChannelStream, FileMeta, Storage};

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

fn row(dir: &RelPath, f: &FileMeta, tz: &jiff::tz::TimeZone) -> Vec<u8> {
    csv_line(&[
        dir.as_str(),
        f.rel.as_str(),
        &f.size.to_string(),
        &local_time(f.modified, tz),
    ])
}

/// Case 2: the files of `dirs` ((name, folder) pairs), streamed as the
/// storage finds them.
pub fn files(
    storage: Arc<dyn Storage>,
    dirs: Vec<(RelPath, String)>,
    tz: jiff::tz::TimeZone,
) -> Response {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut out = csv_line(&["filedir", "filename", "size", "mtime"]);
        for (name, folder) in &dirs {
            let mut found = storage.list(folder);
            while let Some(item) = found.recv().await {
                match item {
                    Ok(f) => out.extend(row(name, &f, &tz)),
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
}
