//! Unpredictable values for challenges, cookies and installation identity.

use crate::error::{Error, Result};

pub fn u64() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    Ok(u64::from_le_bytes(b))
}

/// `len` characters from `alphabet`, without modulo bias.
pub fn string(alphabet: &[u8], len: usize) -> Result<String> {
    let mut out = String::with_capacity(len);
    let limit = 256 - (256 % alphabet.len());
    while out.len() < len {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
        for x in b {
            if (x as usize) < limit && out.len() < len {
                out.push(char::from(alphabet[x as usize % alphabet.len()]));
            }
        }
    }
    Ok(out)
}
