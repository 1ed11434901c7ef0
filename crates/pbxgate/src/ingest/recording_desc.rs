//! `recordfiles_desc`: what a UCM630X says of each recording of a leg,
//! `duration=31,size=489324B,start-time=1661157307@`, one entry per file of
//! `recordfiles`, in the same order. Read from the files themselves (their
//! size, and the WAV header for the duration) when the call is stored: by
//! then MixMonitor has closed them.

use std::sync::Arc;

use ucm::recapi::RelPath;

use crate::recordings::resolve::{Lookup, Storage, next};

/// Bytes read from the start of a file for its header.
const HEADER_BYTES: u64 = 4096;

/// The recordings a CDR's `recordfiles` names, as the recapi `monitor`
/// directory finds them.
#[derive(Clone)]
pub struct Describer {
    storage: Arc<dyn Storage>,
    folder: String,
}

impl Describer {
    pub fn new(storage: Arc<dyn Storage>, folder: String) -> Describer {
        Describer { storage, folder }
    }

    /// The `recordfiles_desc` of `recordfiles`. A file that cannot be read
    /// keeps its place (`duration=0,size=0B`, the start from its name), so
    /// that the n-th entry always describes the n-th file.
    pub async fn describe(&self, recordfiles: &str) -> String {
        let mut out = String::new();
        for name in recordfiles.split('@').filter(|n| !n.is_empty()) {
            let (duration, size, modified) = self.measure(name).await.unwrap_or_default();
            let start = name_epoch(name)
                .or_else(|| modified.map(|m| m - duration as i64))
                .unwrap_or(0);
            out.push_str(&format!(
                "duration={duration},size={size}B,start-time={start}@"
            ));
        }
        out
    }

    /// (whole seconds, bytes, modification time in Unix seconds).
    async fn measure(&self, name: &str) -> Option<(u64, u64, Option<i64>)> {
        let rel = RelPath::parse(name).ok()?;
        let file = match self.storage.stat(&self.folder, &rel).await {
            Ok(Lookup::Found(f)) => f,
            Ok(_) => {
                tracing::debug!(name, "recording of a stored CDR not found");
                return None;
            }
            Err(e) => {
                tracing::warn!(name, error = %e, "cannot look up a recording of a stored CDR");
                return None;
            }
        };
        let modified = file
            .modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64);
        let mut head = Vec::new();
        if let Ok(mut body) = self
            .storage
            .read(&file, 0..HEADER_BYTES.min(file.size))
            .await
        {
            while let Some(Ok(chunk)) = next(&mut body).await {
                head.extend_from_slice(&chunk);
            }
        }
        let duration = wav_seconds(&head, file.size).unwrap_or(0.0).round() as u64;
        Some((duration, file.size, modified))
    }
}

/// `2026-12/auto-1796651509-1001-1000.wav` → 1796651509.
fn name_epoch(name: &str) -> Option<i64> {
    let file = name.rsplit('/').next()?;
    let epoch = file.strip_prefix("auto-")?.split('-').next()?;
    if epoch.is_empty() || epoch.len() > 12 || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    epoch.parse().ok()
}

/// The length of a RIFF/WAVE file whose first bytes are `head`: its `data`
/// chunk over the byte rate of its `fmt ` chunk. A data size left at 0 or
/// past the end of the file (a file not closed properly) counts to the end.
pub fn wav_seconds(head: &[u8], file_size: u64) -> Option<f64> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut byte_rate: Option<u32> = None;
    let mut at = 12usize;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let len = u32::from_le_bytes(head[at + 4..at + 8].try_into().ok()?);
        let body = at + 8;
        if id == b"fmt " {
            let rate = head.get(body + 8..body + 12)?;
            byte_rate = Some(u32::from_le_bytes(rate.try_into().ok()?));
        } else if id == b"data" {
            let rate = f64::from(byte_rate.filter(|r| *r > 0)?);
            let room = file_size.saturating_sub(body as u64);
            let data = if len == 0 || u64::from(len) > room {
                room
            } else {
                u64::from(len)
            };
            return Some(data as f64 / rate);
        }
        // Chunks are padded to an even length.
        at = body
            .checked_add(len as usize)?
            .checked_add(len as usize & 1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, bytes_per_sample: u16, data: u32, declared: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(bytes_per_sample)).to_le_bytes());
        v.extend_from_slice(&bytes_per_sample.to_le_bytes());
        v.extend_from_slice(&(bytes_per_sample * 8).to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&declared.to_le_bytes());
        v.resize(v.len() + data as usize, 0);
        v
    }

    #[test]
    fn durations_from_the_header() {
        // Asterisk's MixMonitor .wav: 8 kHz, 16-bit mono.
        let f = wav(8000, 2, 16000 * 31, 16000 * 31);
        assert_eq!(wav_seconds(&f[..64], f.len() as u64), Some(31.0));
        // Data size never written (0) or past the end: to the end of the file.
        let f = wav(8000, 2, 16000 * 5, 0);
        assert_eq!(wav_seconds(&f[..64], f.len() as u64), Some(5.0));
        let f = wav(8000, 2, 16000 * 5, u32::MAX);
        assert_eq!(wav_seconds(&f[..64], f.len() as u64), Some(5.0));
        // A header-only file (a call that never bridged audio).
        let f = wav(8000, 2, 0, 0);
        assert_eq!(wav_seconds(&f, f.len() as u64), Some(0.0));
    }

    #[test]
    fn not_a_wav_or_cut_short_is_none_never_a_panic() {
        assert_eq!(wav_seconds(b"", 0), None);
        assert_eq!(wav_seconds(b"RIFF\0\0\0\0WAVE", 12), None);
        let f = wav(8000, 2, 100, 100);
        for cut in 0..f.len().min(60) {
            let _ = wav_seconds(&f[..cut], f.len() as u64);
        }
        // Zero byte rate, absurd chunk lengths.
        let mut z = wav(0, 2, 100, 100);
        assert_eq!(wav_seconds(&z, z.len() as u64), None);
        z[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_seconds(&z, z.len() as u64), None);
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let mut junk = b"RIFF\0\0\0\0WAVE".to_vec();
            for _ in 0..(seed % 80) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                junk.push((seed >> 56) as u8);
            }
            let _ = wav_seconds(&junk, seed % 100_000);
        }
    }

    #[test]
    fn start_times_from_ucm_names() {
        assert_eq!(
            name_epoch("2026-12/auto-1796651509-1001-1000.wav"),
            Some(1_796_651_509)
        );
        assert_eq!(
            name_epoch("auto-1796651509-1001-1000.wav"),
            Some(1_796_651_509)
        );
        assert_eq!(name_epoch("2026-12/other.wav"), None);
        assert_eq!(name_epoch("auto--1001.wav"), None);
    }

    #[tokio::test]
    async fn each_file_gets_its_entry_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("2026-12")).unwrap();
        let f = wav(8000, 2, 16000 * 3, 16000 * 3);
        std::fs::write(dir.path().join("2026-12/auto-1796651509-1001-1000.wav"), &f).unwrap();
        let d = Describer::new(
            Arc::new(crate::recordings::resolve::LocalFs),
            dir.path().display().to_string(),
        );
        let desc = d
            .describe(
                "2026-12/auto-1796651509-1001-1000.wav@2026-12/auto-1796651510-1001-1002.wav@",
            )
            .await;
        assert_eq!(
            desc,
            format!(
                "duration=3,size={}B,start-time=1796651509@duration=0,size=0B,start-time=1796651510@",
                f.len()
            )
        );
        assert_eq!(d.describe("").await, "");
    }
}
