//! Where recordings are: the storage trait (the local file system, or an S3
//! bucket with the `s3` feature), safe look-ups in the local one, and the
//! name resolver (a bare name is also looked for in the `YYYY-MM` folders).
//!
//! Safety of the local store: names are [`RelPath`]s (no `..`, no absolute
//! path, nothing encoded), so a joined path can only leave its folder through
//! a symlink. Every look-up canonicalizes the path and requires it to stay in
//! the directory's canonical folder; symlinks that stay inside are followed.
//! Only regular files are served (checked before opening, so a FIFO never
//! blocks a thread), and the handle that is read is checked to be the file
//! that was looked up (same device and inode).

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
    let first = storage.stat(folder, name).await?;
    if matches!(first, Lookup::Found(_)) || !name.is_bare() {
        return Ok(first);
    }
    let mut refused = match first {
        Lookup::Refused(r) => Some(r),
        _ => None,
    };
    let mut tried: Vec<String> = Vec::new();
    let mut attempt = |month: String| {
        let done = tried.contains(&month);
        if !done {
            tried.push(month.clone());
        }
        (!done).then_some(month)
    };
    let guessed: Vec<String> = name_epoch(name.as_str())
        .map(|e| month_folders(e, tz))
        .unwrap_or_default();
    for month in guessed.into_iter().filter_map(&mut attempt) {
        match stat_in(storage, folder, &month, name).await? {
            Lookup::Found(f) => return Ok(Lookup::Found(f)),
            Lookup::Refused(r) => refused = Some(r),
            Lookup::Missing => {}
        }
    }
    let mut months: Vec<String> = storage
        .subfolders(folder)
        .await?
        .into_iter()
        .filter(|m| is_month_folder(m))
        .collect();
    months.sort_unstable_by(|a, b| b.cmp(a));
    for month in months.into_iter().filter_map(&mut attempt) {
        match stat_in(storage, folder, &month, name).await? {
            Lookup::Found(f) => return Ok(Lookup::Found(f)),
            Lookup::Refused(r) => refused = Some(r),
            Lookup::Missing => {}
        }
    }
    Ok(refused.map_or(Lookup::Missing, Lookup::Refused))
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
    // ENOTDIR: a path component is a file.
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(20)
}

/// The look-up of `rel` under `root`, blocking.
pub(crate) fn stat_local(root: &Path, rel: &RelPath) -> io::Result<Lookup> {
    use std::os::unix::fs::MetadataExt;
    let root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) if is_missing(&e) => return Ok(Lookup::Missing),
        Err(e) => return Err(e),
    };
    let path = root.join(rel.as_str());
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        // Nothing there, or a dangling symlink.
        Err(e) if is_missing(&e) => return Ok(Lookup::Missing),
        Err(e) => return Err(e),
    };
    if !canonical.starts_with(&root) {
        return Ok(Lookup::Refused("a symlink leads out of the directory"));
    }
    let meta = std::fs::metadata(&canonical)?;
    if meta.is_dir() {
        return Ok(Lookup::Missing);
    }
    if !meta.is_file() {
        return Ok(Lookup::Refused(
            "not a regular file (device, FIFO or socket)",
        ));
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

/// Sends every servable file below `root` in byte order of the relative
/// path (the order an S3 listing has), blocking.
fn list_local(root: &Path, tx: &mpsc::Sender<Result<FileMeta>>) {
    let Ok(root) = root.canonicalize() else {
        return; // a directory that does not exist lists no files
    };
    // Err(()) = stop (client gone or error sent).
    let _ = list_folder(&root, &root, "", 0, tx);
}

fn list_folder(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    tx: &mpsc::Sender<Result<FileMeta>>,
) -> std::result::Result<(), ()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            let _ = tx.blocking_send(Err(Error::io(format!("cannot list {}", dir.display()), e)));
            return Err(());
        }
    };
    // Sub-folders sort as "name/", so that a depth-first walk yields every
    // relative path in byte order.
    let mut names: Vec<(String, bool)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            Some((name, is_dir))
        })
        .filter(|(name, _)| ucm::recapi::check_name(name).is_ok())
        .map(|(name, is_dir)| {
            if is_dir {
                (format!("{name}/"), true)
            } else {
                (name, false)
            }
        })
        .collect();
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
                )?;
            }
            continue;
        }
        // Regular files, and symlinks that lead to one inside the folder.
        let Ok(rel) = RelPath::parse(&relative) else {
            continue;
        };
        let found = match stat_local(root, &rel) {
            Ok(Lookup::Found(f)) => f,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(Error::io(
                    format!("cannot read {}", dir.join(&name).display()),
                    e,
                )));
                return Err(());
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
    // Check before opening: opening a FIFO would block.
    let before = std::fs::metadata(path)?;
    if !before.is_file() || before.dev() != dev || before.ino() != ino {
        return Err(io::Error::other(
            "recording replaced since it was looked up",
        ));
    }
    let file = std::fs::File::open(path)?;
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
}
