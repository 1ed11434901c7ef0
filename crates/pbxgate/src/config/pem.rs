//! Certificate files: a PEM chain and its key, read and checked (size, PEM,
//! key match, validity) before anything serves with them.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;

/// Largest certificate or key file accepted (the UCM's upload limit).
pub const MAX_PEM_BYTES: u64 = 2 * 1024 * 1024;

/// A certificate chain and its private key, read and checked.
pub struct PemPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read_limited(path: &Path, name: &str) -> Result<Vec<u8>, ConfigError> {
    let fail = |m: String| ConfigError::invalid(name, m);
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(fail(format!(
            "{} is larger than 2 MB ({} bytes)",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
}

/// The certificates of a PEM file (a CA bundle): at most 2 MB, at least one.
pub fn read_certificates(
    path: &Path,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read_limited(path, name)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                name,
                format!(
                    "{} is not a valid PEM file: {}",
                    path.display(),
                    pem_error(&e)
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            name,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// Reads a PEM certificate (chain) and private key and checks them: each
/// file at most 2 MB, PEM, the key matching the first certificate, which is
/// valid now. Errors name the configuration key at fault (`cert_name`,
/// `key_name`); they quote paths and dates, never key material.
pub fn read_pair(
    cert: &Path,
    key: &Path,
    cert_name: &str,
    key_name: &str,
) -> Result<PemPair, ConfigError> {
    let cert_bytes = read_limited(cert, cert_name)?;
    let key_bytes = read_limited(key, key_name)?;
    check_pair(
        &cert_bytes,
        &key_bytes,
        (&cert.display().to_string(), cert_name),
        (&key.display().to_string(), key_name),
    )
}

/// [`read_pair`]'s checks on PEM text already in memory (an upload):
/// `cert` and `key` are (what messages call the text, the key at fault).
pub fn check_pair(
    cert_bytes: &[u8],
    key_bytes: &[u8],
    (cert, cert_name): (&str, &str),
    (key, key_name): (&str, &str),
) -> Result<PemPair, ConfigError> {
    for (bytes, what, name) in [(cert_bytes, cert, cert_name), (key_bytes, key, key_name)] {
        if bytes.len() as u64 > MAX_PEM_BYTES {
            return Err(ConfigError::invalid(
                name,
                format!("{what} is larger than 2 MB ({} bytes)", bytes.len()),
            ));
        }
    }
    let chain = CertificateDer::pem_slice_iter(cert_bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                cert_name,
                format!("{} is not a valid PEM file: {}", cert, pem_error(&e)),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::invalid(
            cert_name,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|e| {
        ConfigError::invalid(
            key_name,
            match e {
                pem::Error::NoItemsFound => {
                    format!("{} holds no PEM private key (PKCS#8, RSA or EC)", key)
                }
                e => format!("{} is not a valid PEM file: {}", key, pem_error(&e)),
            },
        )
    })?;
    let (not_before, not_after) = chain
        .first()
        .and_then(|c| validity(c.as_ref()))
        .ok_or_else(|| {
            ConfigError::invalid(
                cert_name,
                format!(
                    "the first certificate in {} is not an X.509 certificate",
                    cert
                ),
            )
        })?;
    let now = jiff::Timestamp::now().as_second();
    let date = |s: i64| {
        jiff::Timestamp::from_second(s)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    if now > not_after {
        return Err(ConfigError::invalid(
            cert_name,
            format!("the certificate in {} expired on {}", cert, date(not_after)),
        ));
    }
    if now < not_before {
        return Err(ConfigError::invalid(
            cert_name,
            format!(
                "the certificate in {} is not valid before {}",
                cert,
                date(not_before)
            ),
        ));
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Err(e) =
        rustls::sign::CertifiedKey::from_der(chain.clone(), private.clone_key(), &provider)
    {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the key in {} does not match the certificate in {}",
                key, cert
            ),
            e => format!("cannot use the key in {}: {e}", key),
        };
        return Err(ConfigError::invalid(key_name, message));
    }
    Ok(PemPair {
        chain,
        key: private,
    })
}

/// A PEM error without quoting file content.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 inside a section".into(),
        pem::Error::NoItemsFound => "no PEM section found".into(),
        other => format!("{other}"),
    }
}

/// One DER element: (tag, content, rest). Definite lengths only.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, &b[n..])
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// `notBefore` and `notAfter` of a DER X.509 certificate, in Unix seconds.
pub fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity.
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for expected in [0x02, SEQUENCE, SEQUENCE] {
        let (tag, _, after) = der(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (SEQUENCE, validity, _) = der(rest)? else {
        return None;
    };
    let (t1, v1, after) = der(validity)?;
    let (t2, v2, _) = der(after)?;
    Some((asn1_time(t1, v1)?, asn1_time(t2, v2)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), in Unix seconds.
fn asn1_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i16 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<i8>().ok();
    let dt = jiff::civil::DateTime::new(year, n(0)?, n(2)?, n(4)?, n(6)?, n(8)?, 0).ok()?;
    Some(jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()?.as_second())
}
