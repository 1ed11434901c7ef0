//! Where recordings are: the storage trait (the local file system, or an S3
//! bucket with the `s3` feature), safe look-ups in the local one, and the
//! name resolver (a bare name is also looked for in the `YYYY-MM` folders).
//!
//! Safety of the local store: names are [`RelPath`]s (no `..`, no absolute
//! path, nothing encoded), so a joined path can only leave its folder through
//! a symlink. Every look-up canonicalizes the path and requires it to stay in
//! the directory's canonical folder; symlinks that stay inside are followed.
//! Only regular files are served (checked before opening, and opened
//! non-blocking, so a FIFO swapped in never blocks a thread), and the handle
//! that is read is checked to be the file that was looked up (same device and
//! inode).
//!
//! A bad entry never spoils its neighbours: a look-up refuses what it cannot
//! serve (symlink loops, unreadable files or folders, special files) with a
//! reason, and a listing skips such entries, vanished ones and names that are
//! not UTF-8 with a warning (the first [`SKIP_WARNINGS`], then one count).
//! Only a directory's own folder being unlistable fails a listing.

use std::io::{self, Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::body::Bytes;
use tokio::sync::mpsc;
use ucm::recapi::{RelPath, is_month_folder, month_folders, name_epoch};

use crate::error::{Error, Result};

/// A body stream of file bytes.
pub type ByteStream = Pin<Box<dyn futures_core::Stream<Item = io::Result<Bytes>> + Send>>;

/// Bytes per read: large enough that the read and TLS costs per chunk are
/// small, small enough for many concurrent downloads.
pub const CHUNK: usize = 256 * 1024;

/// A servable file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Where it is, relative to its directory's folder.
    pub rel: RelPath,
    pub size: u64,
    pub modified: SystemTime,
    /// Strong entity tag, quoted.
    pub etag: String,
    pub(crate) id: FileId,
}

#[derive(Debug, Clone)]
pub(crate) enum FileId {
    /// The canonical path and the identity it had when looked up.
    Local { path: PathBuf, dev: u64, ino: u64 },
    #[cfg(feature = "s3")]
    Object { key: String, e_tag: Option<String> },
}

/// What a look-up found at a name.
#[derive(Debug)]
pub enum Lookup {
    Found(FileMeta),
    Missing,
    /// Something is there that must not be served (the reason is for the log).
    Refused(&'static str),
}

/// The storage behind recapi.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The file at `rel` in `folder` (a directory's folder from the settings).
    async fn stat(&self, folder: &str, rel: &RelPath) -> Result<Lookup>;
    /// The names of the sub-folders of `folder`.
    async fn subfolders(&self, folder: &str) -> Result<Vec<String>>;
    /// The names of the entries directly in sub-folder `sub` of `folder`
    /// (`sub` empty: in `folder` itself; unchecked: a name found here is
    /// still looked up before use).
    async fn names_in(&self, folder: &str, sub: &str) -> Result<Vec<String>>;
    /// Every servable file in `folder` and its sub-folders down to
    /// [`LIST_DEPTH`] levels, sorted by relative path, sent as found.
    fn list(&self, folder: &str) -> mpsc::Receiver<Result<FileMeta>>;
    /// Bytes `range` of `file`; the file must still be the one looked up.
    async fn read(&self, file: &FileMeta, range: Range<u64>) -> Result<ByteStream>;
}

/// Sub-folder levels a listing descends (`voicemail/default/1000/INBOX/x.wav`
/// is 3 below its directory).
pub const LIST_DEPTH: usize = 4;

/// Finds `name` in `folder`: as given, then (a bare name) in the `YYYY-MM`
/// folders of the month the name's epoch falls in (in `tz`, or any UTC
/// offset), then in every other `YYYY-MM` folder, newest first. The first
/// regular file wins; a refusal is returned only when nothing servable is
/// found.
pub async fn find(
    storage: &dyn Storage,
    folder: &str,
    name: &RelPath,
    tz: &jiff::tz::TimeZone,
) -> Result<Lookup> {
    let mut all = find_all(storage, folder, std::slice::from_ref(name), tz).await?;
    Ok(all.pop().unwrap_or(Lookup::Missing))
}

/// Bare names still unfound times month folders up to which every month is
/// tried by a look-up; beyond, each month folder is listed once instead, so
/// a request for many missing names costs one listing of the months, not a
/// look-up per name and month.
const MONTH_LOOKUPS: usize = 64;

/// [`find`] for every name of one request (the answers in the same order),
/// with the month folders read once.
pub async fn find_all(
    storage: &dyn Storage,
    folder: &str,
    names: &[RelPath],
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<Lookup>> {
    let mut out: Vec<Lookup> = Vec::with_capacity(names.len());
    let mut pending: Vec<usize> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let first = storage.stat(folder, name).await?;
        if !matches!(first, Lookup::Found(_)) && name.is_bare() {
            pending.push(i);
        }
        out.push(first);
    }
    if pending.is_empty() {
        return Ok(out);
    }
    let mut months: Vec<String> = storage
        .subfolders(folder)
        .await?
        .into_iter()
        .filter(|m| is_month_folder(m))
        .collect();
    months.sort_unstable_by(|a, b| b.cmp(a));
    months.dedup();
    // A refusal is kept only until a servable file turns up.
    let note = |out: &mut Vec<Lookup>, i: usize, l: Lookup| match l {
        Lookup::Found(_) | Lookup::Refused(_) => out[i] = l,
        Lookup::Missing => {}
    };
    // The month(s) of the name's epoch, where such a folder exists.
    let mut rest: Vec<usize> = Vec::new();
    for i in pending {
        let name = &names[i];
        let mut guessed: Vec<String> = name_epoch(name.as_str())
            .map(|e| month_folders(e, tz))
            .unwrap_or_default();
        guessed.dedup();
        for month in guessed.iter().filter(|m| months.contains(m)) {
            let l = stat_in(storage, folder, month, name).await?;
            note(&mut out, i, l);
            if matches!(out[i], Lookup::Found(_)) {
                break;
            }
        }
        if !matches!(out[i], Lookup::Found(_)) {
            rest.push(i);
        }
    }
    if rest.is_empty() {
        return Ok(out);
    }
    if rest.len().saturating_mul(months.len()) <= MONTH_LOOKUPS {
        for i in rest {
            for month in &months {
                let l = stat_in(storage, folder, month, &names[i]).await?;
                note(&mut out, i, l);
                if matches!(out[i], Lookup::Found(_)) {
                    break;
                }
            }
        }
        return Ok(out);
    }
    // Name -> the requests for it still unfound.
    let mut left: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for i in rest {
        left.entry(names[i].as_str()).or_default().push(i);
    }
    for month in &months {
        if left.is_empty() {
            break;
        }
        let here = match storage.names_in(folder, month).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(folder, month, error = %e, "recordings: month folder skipped in the look-up");
                continue;
            }
        };
        let hits: Vec<&str> = here
            .iter()
            .filter_map(|n| left.get_key_value(n.as_str()).map(|(k, _)| *k))
            .collect();
        for name in hits {
            let Some(idx) = left.get(name).cloned() else {
                continue;
            };
            let Some(&first) = idx.first() else {
                continue;
            };
            let l = stat_in(storage, folder, month, &names[first]).await?;
            let found = matches!(l, Lookup::Found(_));
            for &i in &idx {
                note(&mut out, i, clone_lookup(&l));
            }
            if found {
                left.remove(name);
            }
        }
    }
    Ok(out)
}

fn clone_lookup(l: &Lookup) -> Lookup {
    match l {
        Lookup::Found(f) => Lookup::Found(f.clone()),
        Lookup::Missing => Lookup::Missing,
        Lookup::Refused(r) => Lookup::Refused(r),
    }
}

async fn stat_in(
    storage: &dyn Storage,
    folder: &str,
    month: &str,
    name: &RelPath,
) -> Result<Lookup> {
    match RelPath::parse(month).and_then(|m| m.join(name)) {
        Ok(rel) => storage.stat(folder, &rel).await,
        Err(_) => Ok(Lookup::Missing),
    }
}

/// Recordings in folders of the local file system.
#[derive(Debug, Default, Clone)]
pub struct LocalFs;

/// Quoted strong ETag of a local file: inode, size and modification time in
/// nanoseconds, so a rewritten or replaced file gets a new tag.
fn local_etag(ino: u64, size: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{ino:x}-{size:x}-{nanos:x}\"")
}

fn is_missing(e: &io::Error) -> bool {
    // ENOTDIR: a path component is a file; ENAMETOOLONG: nothing can be there.
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename
    ) || matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ENAMETOOLONG))
}

/// What an error about one entry (not its directory's folder) means: gone,
/// or something that cannot be served. Other errors (EIO, ...) stay errors.
fn entry_error(e: io::Error) -> io::Result<Lookup> {
    if is_missing(&e) {
        Ok(Lookup::Missing)
    } else if e.raw_os_error() == Some(libc::ELOOP) {
        Ok(Lookup::Refused("a symlink loop"))
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        Ok(Lookup::Refused("not readable by pbxgate"))
    } else {
        Err(e)
    }
}

/// Opens a file for reading without ever blocking: a FIFO (or device) put
/// in place of a checked regular file is opened at once, then refused.
fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// The look-up of `rel` under `root`, blocking.
pub(crate) fn stat_local(root: &Path, rel: &RelPath) -> io::Result<Lookup> {
    let root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) if is_missing(&e) => return Ok(Lookup::Missing),
        Err(e) => return Err(e),
    };
    stat_under(&root, rel)
}

/// [`stat_local`] under an already canonical root.
fn stat_under(root: &Path, rel: &RelPath) -> io::Result<Lookup> {
    use std::os::unix::fs::MetadataExt;
    let path = root.join(rel.as_str());
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        // Nothing there, a dangling symlink, a loop, an unreadable folder.
        Err(e) => return entry_error(e),
    };
    if !canonical.starts_with(root) {
        return Ok(Lookup::Refused("a symlink leads out of the directory"));
    }
    let meta = match std::fs::metadata(&canonical) {
        Ok(m) => m,
        Err(e) => return entry_error(e),
    };
    if meta.is_dir() {
        return Ok(Lookup::Missing);
    }
    if !meta.is_file() {
        return Ok(Lookup::Refused(
            "not a regular file (device, FIFO or socket)",
        ));
    }
    // Readable now, so that a listing only offers what a download can send.
    match open_nonblocking(&canonical).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() && m.dev() == meta.dev() && m.ino() == meta.ino() => {}
        Ok(_) => return Ok(Lookup::Missing), // replaced while looked up
        Err(e) => return entry_error(e),
    }
    let modified = meta.modified()?;
    Ok(Lookup::Found(FileMeta {
        rel: rel.clone(),
        size: meta.len(),
        modified,
        etag: local_etag(meta.ino(), meta.len(), modified),
        id: FileId::Local {
            path: canonical,
            dev: meta.dev(),
            ino: meta.ino(),
        },
    }))
}

/// Entries a listing skips that are logged one by one; the rest are counted.
pub const SKIP_WARNINGS: usize = 20;

/// The entries one listing skipped: the first few logged, then a count.
pub(crate) struct Skips {
    what: &'static str,
    count: usize,
}

impl Skips {
    pub(crate) fn new(what: &'static str) -> Skips {
        Skips { what, count: 0 }
    }

    pub(crate) fn skip(&mut self, path: &dyn std::fmt::Display, reason: &dyn std::fmt::Display) {
        self.count += 1;
        if self.count <= SKIP_WARNINGS {
            tracing::warn!(path = %path, reason = %reason, "{}: entry skipped", self.what);
        }
    }

    pub(crate) fn finish(&self, folder: &dyn std::fmt::Display) {
        if self.count > SKIP_WARNINGS {
            tracing::warn!(
                folder = %folder,
                skipped = self.count,
                logged = SKIP_WARNINGS,
                "{}: more entries skipped than logged",
                self.what
            );
        }
    }
}

/// Sends every servable file below `root` in byte order of the relative
/// path (the order an S3 listing has), blocking.
fn list_local(root: &Path, tx: &mpsc::Sender<Result<FileMeta>>) {
    let root = match root.canonicalize() {
        Ok(r) => r,
        // a directory that does not exist lists no files
        Err(e) if is_missing(&e) => return,
        Err(e) => {
            let _ = tx.blocking_send(Err(Error::io(format!("cannot list {}", root.display()), e)));
            return;
        }
    };
    let mut skips = Skips::new("recordings listing");
    // Err(()) = stop (client gone or error sent).
    let _ = list_folder(&root, &root, "", 0, tx, &mut skips);
    skips.finish(&root.display());
}

fn list_folder(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    tx: &mpsc::Sender<Result<FileMeta>>,
    skips: &mut Skips,
) -> std::result::Result<(), ()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        // The directory's own folder: the listing cannot be given.
        Err(e) if depth == 0 => {
            let _ = tx.blocking_send(Err(Error::io(format!("cannot list {}", dir.display()), e)));
            return Err(());
        }
        // A sub-folder that vanished since it was read.
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => {
            skips.skip(
                &dir.display(),
                &format_args!("folder cannot be listed: {e}"),
            );
            return Ok(());
        }
    };
    // Sub-folders sort as "name/", so that a depth-first walk yields every
    // relative path in byte order.
    let mut names: Vec<(String, bool)> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skips.skip(
                    &dir.display(),
                    &format_args!("folder entry unreadable: {e}"),
                );
                continue;
            }
        };
        let name = match entry.file_name().into_string() {
            Ok(n) => n,
            Err(raw) => {
                skips.skip(
                    &dir.join(&raw).display(),
                    &"name is not UTF-8 (recapi names are)",
                );
                continue;
            }
        };
        // Hidden files, encodings, ...: names recapi never serves.
        if ucm::recapi::check_name(&name).is_err() {
            continue;
        }
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if is_missing(&e) => continue,
            Err(e) => {
                skips.skip(&entry.path().display(), &e);
                continue;
            }
        };
        names.push(if is_dir {
            (format!("{name}/"), true)
        } else {
            (name, false)
        });
    }
    names.sort_unstable();
    for (name, is_dir) in names {
        let relative = format!("{prefix}{name}");
        if is_dir {
            if depth < LIST_DEPTH {
                list_folder(
                    root,
                    &dir.join(name.trim_end_matches('/')),
                    &relative,
                    depth + 1,
                    tx,
                    skips,
                )?;
            }
            continue;
        }
        // Regular files, and symlinks that lead to one inside the folder.
        let Ok(rel) = RelPath::parse(&relative) else {
            continue;
        };
        let found = match stat_under(root, &rel) {
            Ok(Lookup::Found(f)) => f,
            // Gone since the folder was read, or a symlink to a folder.
            Ok(Lookup::Missing) => continue,
            Ok(Lookup::Refused(reason)) => {
                skips.skip(&dir.join(&name).display(), &reason);
                continue;
            }
            Err(e) => {
                skips.skip(&dir.join(&name).display(), &e);
                continue;
            }
        };
        // A closed channel: the client went away.
        tx.blocking_send(Ok(found)).map_err(|_| ())?;
    }
    Ok(())
}

/// Reads `range` of an opened file into the channel, blocking.
fn pump(mut file: std::fs::File, range: Range<u64>, tx: &mpsc::Sender<io::Result<Bytes>>) {
    if let Err(e) = file.seek(io::SeekFrom::Start(range.start)) {
        let _ = tx.blocking_send(Err(e));
        return;
    }
    let mut left = range.end - range.start;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let mut buf = vec![0u8; want];
        let n = match file.read(&mut buf) {
            Ok(0) => {
                // The file shrank: cut the body so the client sees an error.
                let _ = tx.blocking_send(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "recording shorter than when it was looked up",
                )));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        buf.truncate(n);
        left -= n as u64;
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return;
        }
    }
}

/// Opens a looked-up local file, checking it is still that file.
fn open_local(path: &Path, dev: u64, ino: u64) -> io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    // Check before opening: opening a device can have side effects.
    let before = std::fs::metadata(path)?;
    if !before.is_file() || before.dev() != dev || before.ino() != ino {
        return Err(io::Error::other(
            "recording replaced since it was looked up",
        ));
    }
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.dev() != dev || meta.ino() != ino {
        return Err(io::Error::other(
            "recording replaced since it was looked up",
        ));
    }
    Ok(file)
}

#[async_trait]
impl Storage for LocalFs {
    async fn stat(&self, folder: &str, rel: &RelPath) -> Result<Lookup> {
        let root = PathBuf::from(folder);
        let rel = rel.clone();
        blocking(move || stat_local(&root, &rel).map_err(|e| Error::io("recording look-up", e)))
            .await
    }

    async fn subfolders(&self, folder: &str) -> Result<Vec<String>> {
        let root = PathBuf::from(folder);
        blocking(move || {
            let rd = match std::fs::read_dir(&root) {
                Ok(rd) => rd,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(format!("cannot list {}", root.display()), e)),
            };
            Ok(rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect())
        })
        .await
    }

    async fn names_in(&self, folder: &str, sub: &str) -> Result<Vec<String>> {
        let dir = if sub.is_empty() {
            PathBuf::from(folder)
        } else {
            Path::new(folder).join(sub)
        };
        blocking(move || {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
            };
            Ok(rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect())
        })
        .await
    }

    fn list(&self, folder: &str) -> mpsc::Receiver<Result<FileMeta>> {
        let (tx, rx) = mpsc::channel(64);
        let root = PathBuf::from(folder);
        tokio::task::spawn_blocking(move || list_local(&root, &tx));
        rx
    }

    async fn read(&self, file: &FileMeta, range: Range<u64>) -> Result<ByteStream> {
        let (path, dev, ino) = match &file.id {
            FileId::Local { path, dev, ino } => (path.clone(), *dev, *ino),
            #[cfg(feature = "s3")]
            FileId::Object { .. } => {
                return Err(Error::io(
                    "recording read",
                    io::Error::other("not a local file"),
                ));
            }
        };
        let opened = blocking(move || {
            open_local(&path, dev, ino)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
        })
        .await?;
        // Two chunks in flight: the disk read of the next overlaps sending this one.
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || pump(opened, range, &tx));
        Ok(Box::pin(ChannelStream(rx)))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("recording look-up", io::Error::other(e.to_string())))?
}

/// The receiving end of a byte channel as a body stream.
pub struct ChannelStream<T>(pub mpsc::Receiver<T>);

impl<T> futures_core::Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The next item of a stream (futures' `StreamExt::next` without the crate).
pub async fn next<S: futures_core::Stream + Unpin + ?Sized>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    fn found(l: Lookup) -> FileMeta {
        match l {
            Lookup::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    /// spool/monitor with a dated recording, and things beside it.
    fn spool() -> (tempfile::TempDir, String) {
        let t = tempfile::tempdir().unwrap();
        let mon = t.path().join("monitor");
        std::fs::create_dir_all(mon.join("2024-05")).unwrap();
        std::fs::write(
            mon.join("2024-05/auto-1717093784-1001-2100.wav"),
            b"RIFF....WAVE",
        )
        .unwrap();
        std::fs::write(mon.join("flat.wav"), b"flat").unwrap();
        std::fs::write(t.path().join("secret.txt"), b"secret").unwrap();
        let folder = mon.display().to_string();
        (t, folder)
    }

    #[tokio::test]
    async fn bare_names_and_relative_paths() {
        let (_t, folder) = spool();
        let tz = jiff::tz::TimeZone::UTC;
        let f = found(
            find(
                &LocalFs,
                &folder,
                &rel("2024-05/auto-1717093784-1001-2100.wav"),
                &tz,
            )
            .await
            .unwrap(),
        );
        assert_eq!(f.size, 12);
        let g = found(
            find(
                &LocalFs,
                &folder,
                &rel("auto-1717093784-1001-2100.wav"),
                &tz,
            )
            .await
            .unwrap(),
        );
        assert_eq!(g.rel.as_str(), "2024-05/auto-1717093784-1001-2100.wav");
        assert_eq!(g.etag, f.etag);
        assert_eq!(
            found(
                find(&LocalFs, &folder, &rel("flat.wav"), &tz)
                    .await
                    .unwrap()
            )
            .size,
            4
        );
        assert!(matches!(
            find(&LocalFs, &folder, &rel("2024-06/flat.wav"), &tz)
                .await
                .unwrap(),
            Lookup::Missing
        ));
    }

    #[tokio::test]
    async fn names_without_a_matching_epoch_are_searched_in_every_month() {
        let (t, folder) = spool();
        let tz = jiff::tz::TimeZone::UTC;
        let old = t.path().join("monitor/2019-01");
        std::fs::create_dir_all(&old).unwrap();
        // epoch of 2024 but filed under 2019-01 (clock was wrong), and no epoch at all
        std::fs::write(old.join("auto-1717093785-1-2.wav"), b"x").unwrap();
        std::fs::write(old.join("custom.wav"), b"y").unwrap();
        // a folder that is no month is not searched
        std::fs::create_dir_all(t.path().join("monitor/misc")).unwrap();
        std::fs::write(t.path().join("monitor/misc/other.wav"), b"z").unwrap();
        for name in ["auto-1717093785-1-2.wav", "custom.wav"] {
            let f = found(find(&LocalFs, &folder, &rel(name), &tz).await.unwrap());
            assert!(f.rel.as_str().starts_with("2019-01/"), "{name}");
        }
        assert!(matches!(
            find(&LocalFs, &folder, &rel("other.wav"), &tz)
                .await
                .unwrap(),
            Lookup::Missing
        ));
        assert!(matches!(
            find(&LocalFs, &folder, &rel("misc/other.wav"), &tz)
                .await
                .unwrap(),
            Lookup::Found(_)
        ));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_and_special_files_are_refused() {
        let (t, folder) = spool();
        let mon = t.path().join("monitor");
        let tz = jiff::tz::TimeZone::UTC;
        std::os::unix::fs::symlink(t.path().join("secret.txt"), mon.join("out.wav")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", mon.join("passwd.wav")).unwrap();
        std::os::unix::fs::symlink("/dev/null", mon.join("null.wav")).unwrap();
        std::os::unix::fs::symlink("/etc", mon.join("etc")).unwrap();
        std::os::unix::fs::symlink("flat.wav", mon.join("inside.wav")).unwrap();
        std::os::unix::fs::symlink("nowhere.wav", mon.join("dangling.wav")).unwrap();
        let fifo = mon.join("fifo.wav");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for name in ["out.wav", "passwd.wav", "null.wav", "etc/passwd", "etc"] {
            let l = find(&LocalFs, &folder, &rel(name), &tz).await.unwrap();
            assert!(
                matches!(l, Lookup::Refused(r) if r.contains("symlink")),
                "{name}: {l:?}"
            );
        }
        let l = find(&LocalFs, &folder, &rel("fifo.wav"), &tz)
            .await
            .unwrap();
        assert!(
            matches!(l, Lookup::Refused(r) if r.contains("regular")),
            "{l:?}"
        );
        // A symlink that stays inside the directory is followed.
        let f = found(
            find(&LocalFs, &folder, &rel("inside.wav"), &tz)
                .await
                .unwrap(),
        );
        assert_eq!(f.size, 4);
        // Directories and dangling links are simply not files.
        for name in ["2024-05", "dangling.wav", "flat.wav/x"] {
            assert!(
                matches!(
                    find(&LocalFs, &folder, &rel(name), &tz).await.unwrap(),
                    Lookup::Missing
                ),
                "{name}"
            );
        }
        // A device file inside the root (made where the test may: as root).
        let dev = mon.join("dev.wav");
        if std::process::Command::new("mknod")
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .is_ok_and(|s| s.success())
        {
            let l = find(&LocalFs, &folder, &rel("dev.wav"), &tz).await.unwrap();
            assert!(matches!(l, Lookup::Refused(_)), "{l:?}");
        }
    }

    #[tokio::test]
    async fn a_root_that_is_a_symlink_still_serves_its_files() {
        let (t, _) = spool();
        let link = t.path().join("linked-monitor");
        std::os::unix::fs::symlink(t.path().join("monitor"), &link).unwrap();
        let folder = link.display().to_string();
        let tz = jiff::tz::TimeZone::UTC;
        assert!(matches!(
            find(&LocalFs, &folder, &rel("flat.wav"), &tz)
                .await
                .unwrap(),
            Lookup::Found(_)
        ));
        // ... and a missing root has no files.
        let gone = t.path().join("none").display().to_string();
        assert!(matches!(
            find(&LocalFs, &gone, &rel("flat.wav"), &tz).await.unwrap(),
            Lookup::Missing
        ));
    }

    #[tokio::test]
    async fn listing_is_sorted_and_leaves_out_what_cannot_be_served() {
        let (t, folder) = spool();
        let mon = t.path().join("monitor");
        std::os::unix::fs::symlink("/etc/passwd", mon.join("passwd.wav")).unwrap();
        std::fs::write(mon.join(".hidden.wav"), b"h").unwrap();
        std::fs::write(mon.join("odd%name.wav"), b"o").unwrap();
        let mut rx = LocalFs.list(&folder);
        let mut names = Vec::new();
        while let Some(f) = rx.recv().await {
            names.push(f.unwrap().rel.to_string());
        }
        assert_eq!(names, ["2024-05/auto-1717093784-1001-2100.wav", "flat.wav"]);
        let mut rx = LocalFs.list(&t.path().join("none").display().to_string());
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn reads_ranges_and_notices_a_replaced_file() {
        let (t, folder) = spool();
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(t.path().join("monitor/big.wav"), &data).unwrap();
        let f = found(LocalFs.stat(&folder, &rel("big.wav")).await.unwrap());
        for range in [0..data.len() as u64, 5..6, 100..(CHUNK as u64 + 7)] {
            let mut s = LocalFs.read(&f, range.clone()).await.unwrap();
            let mut got = Vec::new();
            while let Some(chunk) = next(&mut s).await {
                got.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(got, &data[range.start as usize..range.end as usize]);
        }
        // Replaced by another file under the same name: refused.
        std::fs::write(t.path().join("monitor/big2.wav"), &data).unwrap();
        std::fs::rename(
            t.path().join("monitor/big2.wav"),
            t.path().join("monitor/big.wav"),
        )
        .unwrap();
        assert!(LocalFs.read(&f, 0..1).await.is_err());
        // Truncated after the look-up: the stream ends in an error.
        let g = found(LocalFs.stat(&folder, &rel("big.wav")).await.unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.path().join("monitor/big.wav"))
            .unwrap()
            .set_len(10)
            .unwrap();
        let mut s = LocalFs.read(&g, 0..g.size).await.unwrap();
        let mut failed = false;
        while let Some(chunk) = next(&mut s).await {
            failed |= chunk.is_err();
        }
        assert!(failed);
    }

    /// Whether this process ignores file permissions (root): unreadable
    /// files can only be made for an unprivileged user.
    fn privileged(dir: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let probe = dir.join("probe");
        std::fs::write(&probe, b"p").unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
        let readable = std::fs::read(&probe).is_ok();
        std::fs::remove_file(&probe).unwrap();
        readable
    }

    /// Beside spool()'s good files: every kind of entry that cannot be served.
    fn bad_entries(t: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let mon = t.join("monitor");
        let link =
            |target: &str, at: &str| std::os::unix::fs::symlink(target, mon.join(at)).unwrap();
        link("loop.wav", "loop.wav");
        link("pong.wav", "ping.wav");
        link("ping.wav", "pong.wav");
        link("nowhere.wav", "dangling.wav");
        std::fs::create_dir_all(mon.join("2024-07")).unwrap();
        link("custom.wav", "2024-07/custom.wav");
        std::fs::write(
            mon.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9.wav")),
            b"x",
        )
        .unwrap();
        drop(std::os::unix::net::UnixListener::bind(mon.join("socket.wav")).unwrap());
        assert!(
            std::process::Command::new("mkfifo")
                .arg(mon.join("fifo.wav"))
                .status()
                .unwrap()
                .success()
        );
        // Folders and files pbxgate may not read (without effect as root).
        std::fs::create_dir_all(mon.join("2024-09")).unwrap();
        std::fs::write(mon.join("2024-09/locked.wav"), b"l").unwrap();
        std::fs::set_permissions(mon.join("2024-09"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        std::fs::write(mon.join("unreadable.wav"), b"u").unwrap();
        std::fs::set_permissions(
            mon.join("unreadable.wav"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        !privileged(t)
    }

    async fn listed(folder: &str) -> Vec<String> {
        let mut rx = LocalFs.list(folder);
        let mut names = Vec::new();
        while let Some(f) = rx.recv().await {
            names.push(f.unwrap().rel.to_string());
        }
        names
    }

    #[tokio::test]
    async fn a_bad_entry_never_spoils_a_listing() {
        let (t, folder) = spool();
        let enforced = bad_entries(t.path());
        let mon = t.path().join("monitor");
        let mut want = vec!["2024-05/auto-1717093784-1001-2100.wav", "flat.wav"];
        if !enforced {
            // root reads them anyway
            want = vec![
                "2024-05/auto-1717093784-1001-2100.wav",
                "2024-09/locked.wav",
                "flat.wav",
                "unreadable.wav",
            ];
        }
        assert_eq!(listed(&folder).await, want);
        // A device file too, where the test may make one.
        if std::process::Command::new("mknod")
            .arg(mon.join("dev.wav"))
            .args(["c", "1", "3"])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert_eq!(listed(&folder).await, want);
        }
        // A listing of a folder that is gone is empty; of one that is not a
        // folder, an error.
        assert!(
            listed(&mon.join("none").display().to_string())
                .await
                .is_empty()
        );
        let mut rx = LocalFs.list(&mon.join("flat.wav").display().to_string());
        assert!(rx.recv().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn look_ups_refuse_loops_and_unreadable_entries_and_go_on() {
        let (t, folder) = spool();
        let enforced = bad_entries(t.path());
        let tz = jiff::tz::TimeZone::UTC;
        std::fs::create_dir_all(t.path().join("monitor/2019-01")).unwrap();
        std::fs::write(t.path().join("monitor/2019-01/custom.wav"), b"c").unwrap();
        for name in ["loop.wav", "ping.wav", "2024-07/custom.wav"] {
            let l = find(&LocalFs, &folder, &rel(name), &tz).await.unwrap();
            assert!(
                matches!(l, Lookup::Refused("a symlink loop")),
                "{name}: {l:?}"
            );
        }
        for name in ["socket.wav", "fifo.wav"] {
            let l = find(&LocalFs, &folder, &rel(name), &tz).await.unwrap();
            assert!(
                matches!(l, Lookup::Refused(r) if r.contains("regular")),
                "{name}: {l:?}"
            );
        }
        // The loop in the newest month does not hide the file in an older one.
        let f = found(
            find(&LocalFs, &folder, &rel("custom.wav"), &tz)
                .await
                .unwrap(),
        );
        assert_eq!(f.rel.as_str(), "2019-01/custom.wav");
        if enforced {
            for name in ["unreadable.wav", "2024-09/locked.wav", "locked.wav"] {
                let l = find(&LocalFs, &folder, &rel(name), &tz).await.unwrap();
                assert!(
                    matches!(l, Lookup::Refused("not readable by pbxgate")),
                    "{name}: {l:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_fifo_is_opened_without_blocking_and_never_read_as_a_recording() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo.wav");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // No writer: a plain open would wait for one forever.
        let path = fifo.clone();
        let opened = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::task::spawn_blocking(move || open_nonblocking(&path).map(|f| f.metadata())),
        )
        .await
        .expect("opening a FIFO blocked")
        .unwrap();
        assert!(!opened.unwrap().unwrap().is_file());
        // A recording replaced by a FIFO after its look-up is not opened.
        std::fs::remove_file(&fifo).unwrap();
        std::fs::write(&fifo, b"data").unwrap();
        let f = found(stat_local(t.path(), &rel("fifo.wav")).unwrap());
        std::fs::remove_file(&fifo).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), LocalFs.read(&f, 0..4))
            .await
            .expect("reading a FIFO blocked");
        assert!(read.is_err());
    }

    /// LocalFs, counting the calls a look-up makes.
    #[derive(Default)]
    struct Counted {
        stats: std::sync::atomic::AtomicUsize,
        subfolders: std::sync::atomic::AtomicUsize,
        names_in: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Storage for Counted {
        async fn stat(&self, folder: &str, rel: &RelPath) -> Result<Lookup> {
            self.stats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LocalFs.stat(folder, rel).await
        }
        async fn subfolders(&self, folder: &str) -> Result<Vec<String>> {
            self.subfolders
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LocalFs.subfolders(folder).await
        }
        async fn names_in(&self, folder: &str, sub: &str) -> Result<Vec<String>> {
            self.names_in
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LocalFs.names_in(folder, sub).await
        }
        fn list(&self, folder: &str) -> mpsc::Receiver<Result<FileMeta>> {
            LocalFs.list(folder)
        }
        async fn read(&self, file: &FileMeta, range: Range<u64>) -> Result<ByteStream> {
            LocalFs.read(file, range).await
        }
    }

    /// 24 month folders of `per_month` recordings each.
    fn months(per_month: usize) -> (tempfile::TempDir, String) {
        let t = tempfile::tempdir().unwrap();
        for m in 0..24 {
            let month = format!("{}-{:02}", 2023 + m / 12, m % 12 + 1);
            let dir = t.path().join(&month);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_month {
                std::fs::write(dir.join(format!("rec-{month}-{i}.wav")), b"w").unwrap();
            }
        }
        let folder = t.path().display().to_string();
        (t, folder)
    }

    fn missing_names(n: usize) -> Vec<RelPath> {
        // half with an epoch in a month that has a folder (2024-05), half without
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    rel(&format!("auto-{}-1001-2100.wav", 1_714_600_000 + i))
                } else {
                    rel(&format!("gone-{i}.wav"))
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn many_missing_bare_names_cost_one_listing_of_the_months() {
        let (_t, folder) = months(5);
        let tz = jiff::tz::TimeZone::UTC;
        let storage = Counted::default();
        let mut names = missing_names(1000);
        // two that are there, in old months, among the misses
        names.push(rel("rec-2023-02-3.wav"));
        names.push(rel("2024-12/rec-2024-12-4.wav"));
        let got = find_all(&storage, &folder, &names, &tz).await.unwrap();
        assert_eq!(got.len(), names.len());
        assert!(got[..1000].iter().all(|l| matches!(l, Lookup::Missing)));
        assert_eq!(
            found(clone_lookup(&got[1000])).rel.as_str(),
            "2023-02/rec-2023-02-3.wav"
        );
        assert!(matches!(got[1001], Lookup::Found(_)));
        let load =
            |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        // each name as given, the dated ones in their month (one or two
        // candidates), the found one in its folder; every month listed once
        assert!(
            load(&storage.stats) <= 1002 + 500 * 2 + 1,
            "{}",
            load(&storage.stats)
        );
        assert_eq!(load(&storage.subfolders), 1);
        assert_eq!(load(&storage.names_in), 24);

        // One missing name: a look-up per month, no listing.
        let storage = Counted::default();
        let got = find_all(&storage, &folder, &[rel("gone.wav")], &tz)
            .await
            .unwrap();
        assert!(matches!(got[0], Lookup::Missing));
        assert_eq!((load(&storage.stats), load(&storage.names_in)), (25, 0));
    }

    /// The figures of issue 15 point 12 (run with --ignored --nocapture):
    /// 1000 missing bare names in one request against 24 month folders.
    #[tokio::test]
    #[ignore = "prints timings"]
    async fn time_missing_bare_names() {
        for per_month in [100, 500] {
            let (_t, folder) = months(per_month);
            let names = missing_names(1000);
            let tz = jiff::tz::TimeZone::UTC;
            let started = std::time::Instant::now();
            let got = find_all(&LocalFs, &folder, &names, &tz).await.unwrap();
            assert_eq!(got.len(), 1000);
            let batched = started.elapsed();
            // Before: each name on its own (the month folders read and every
            // month tried per name), as recapi did.
            let started = std::time::Instant::now();
            for name in &names {
                find(&LocalFs, &folder, name, &tz).await.unwrap();
            }
            println!(
                "24 months x {per_month} files, 1000 missing bare names: \
                 one request {batched:?}, name by name {:?}",
                started.elapsed()
            );
        }
    }
}
