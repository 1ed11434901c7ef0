//! Several recordings as one tar archive (POSIX ustar), streamed file after
//! file: only one chunk of one file is in memory at a time, and the length
//! is known before the first byte (headers and padding are fixed sizes).
//! Names that do not fit ustar's 100 + 155 bytes, and files of 8 GiB or more,
//! get a PAX extended header (`path=`, `size=`), which GNU tar, bsdtar and
//! Python's tarfile read.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use tokio::sync::mpsc;

use super::resolve::{ByteStream, ChannelStream, FileMeta, Storage, next};

const BLOCK: usize = 512;
/// Largest size the 11 octal digits of a ustar header hold.
const MAX_USTAR_SIZE: u64 = 0o77_777_777_777;

/// Bytes after `size` bytes of data up to the next block.
fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

fn octal(field: &mut [u8], value: u64) {
    // width-1 digits and a NUL, as GNU tar writes them
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(digits);
    field[..digits].copy_from_slice(&bytes[start..]);
    field[digits] = 0;
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `name` as ustar's (prefix, name) fields, if it fits.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // split at a '/' so that the prefix holds <= 155 bytes and the rest <= 100
    name.match_indices('/')
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .find(|(p, n)| p.len() <= 155 && n.len() <= 100 && !n.is_empty())
}

fn block(name: &str, prefix: &str, size: u64, mtime: u64, kind: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // checksum: the sum of every byte with the checksum field read as spaces
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

/// The header block(s) of a file entry.
pub fn header(name: &str, size: u64, mtime: SystemTime) -> Vec<u8> {
    let mtime = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .min(MAX_USTAR_SIZE);
    let fits = split_name(name);
    let big = size > MAX_USTAR_SIZE;
    let mut out = Vec::with_capacity(BLOCK * 3);
    if fits.is_none() || big {
        let mut records = String::new();
        if fits.is_none() {
            records.push_str(&pax_record("path", name));
        }
        if big {
            records.push_str(&pax_record("size", &size.to_string()));
        }
        let pax_name = format!(
            "PaxHeaders/{}",
            cut(name.rsplit('/').next().unwrap_or(name), 80)
        );
        out.extend_from_slice(&block(&pax_name, "", records.len() as u64, mtime, b'x'));
        out.extend_from_slice(records.as_bytes());
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    let (prefix, short) = fits.unwrap_or(("", cut(name, 100)));
    let recorded = if big { 0 } else { size };
    out.extend_from_slice(&block(short, prefix, recorded, mtime, b'0'));
    out
}

/// Bytes of the whole archive of these (name, size) entries.
pub fn archive_len<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
    let mut total = 0u64;
    for (name, size) in entries {
        total += header(name, size, SystemTime::UNIX_EPOCH).len() as u64;
        total += size + padding(size) as u64;
    }
    total + 2 * BLOCK as u64
}

/// The archive of `files` ((entry name, file) pairs) as a byte stream.
pub fn stream(storage: Arc<dyn Storage>, files: Vec<(String, FileMeta)>) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
    tokio::spawn(async move {
        for (name, file) in &files {
            if tx
                .send(Ok(Bytes::from(header(name, file.size, file.modified))))
                .await
                .is_err()
            {
                return;
            }
            let mut body = match storage.read(file, 0..file.size).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(file = %file.rel, error = %e, "recapi tar: cannot read a recording; the archive is cut short");
                    let _ = tx.send(Err(io::Error::other("recording unreadable"))).await;
                    return;
                }
            };
            while let Some(chunk) = next(&mut body).await {
                if let Err(e) = &chunk {
                    tracing::error!(file = %file.rel, error = %e, "recapi tar: read failed; the archive is cut short");
                }
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
            let pad = padding(file.size);
            if pad > 0 && tx.send(Ok(Bytes::from(vec![0u8; pad]))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from(vec![0u8; 2 * BLOCK]))).await;
    });
    Box::pin(ChannelStream(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an archive of `entries` with this module and lists it with tar(1).
    fn via_tar(entries: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_717_093_784);
        for (name, data) in entries {
            bytes.extend(header(name, data.len() as u64, mtime));
            bytes.extend(data);
            bytes.resize(bytes.len() + padding(data.len() as u64), 0);
        }
        bytes.resize(bytes.len() + 2 * BLOCK, 0);
        assert_eq!(
            bytes.len() as u64,
            archive_len(entries.iter().map(|(n, d)| (*n, d.len() as u64)))
        );
        let path = dir.path().join("a.tar");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let x = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(x.success());
        for (name, data) in entries {
            assert_eq!(
                &std::fs::read(dir.path().join(name)).unwrap(),
                data,
                "{name}"
            );
        }
        (dir, String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn tar_reads_what_is_written() {
        let long_dir = format!("{}/{}", "d".repeat(120), "e".repeat(30));
        let long_name = format!("{long_dir}/{}.wav", "f".repeat(90));
        let very_long = format!("{}.wav", "g".repeat(200));
        let entries = vec![
            ("auto-1717093784-1001-2100.wav", b"RIFF".repeat(300)),
            ("2024-05/auto-1717093790-1001-2100.wav", vec![7u8; 512]),
            ("empty.wav", Vec::new()),
            (long_name.as_str(), vec![1u8; 3]),
            (very_long.as_str(), vec![2u8; 1000]),
        ];
        let (_dir, listing) = via_tar(&entries);
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        let want: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, want, "{listing}");
        assert!(listing.contains("-rw-r--r--"), "{listing}");
        assert!(
            listing.contains("2024-05-30") || listing.contains("2024-05-31"),
            "{listing}"
        );
    }

    #[test]
    fn header_fields() {
        let h = header("a.wav", 1234, SystemTime::UNIX_EPOCH);
        assert_eq!(h.len(), 512);
        assert_eq!(&h[124..136], b"00000002322\0");
        assert_eq!(&h[257..263], b"ustar\0");
        // checksum: recomputed with the field as spaces
        let mut copy = h.clone();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
        // 8 GiB and more: PAX size record, ustar size 0
        let h = header("big.wav", 1 << 33, SystemTime::UNIX_EPOCH);
        assert_eq!(h.len(), 3 * 512);
        assert!(String::from_utf8_lossy(&h[512..1024]).starts_with("19 size=8589934592\n"));
        assert_eq!(&h[1024 + 124..1024 + 136], b"00000000000\0");
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for len in [1usize, 5, 6, 7, 90, 95, 96, 97, 995, 996, 997, 998] {
            let v = "x".repeat(len);
            let r = pax_record("path", &v);
            let (n, _) = r.split_once(' ').unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), r.len(), "{r:?}");
        }
    }
}
