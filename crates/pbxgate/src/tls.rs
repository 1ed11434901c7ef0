//! Server certificates: the configured ones, or self-signed ones generated on
//! first start, kept in the data directory and reused afterwards. The new API
//! (`[web]`) and the old API (`[https_api_old]`) each have their own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, OldApiSettings, Settings};
use crate::error::{Error, Result};

/// Largest certificate or key file accepted (the UCM's upload limit).
pub const MAX_PEM_BYTES: u64 = 2 * 1024 * 1024;

fn install_provider() {
    // Several providers may be compiled in; pick one explicitly. An error only
    // means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The new API's certificate.
pub async fn load(settings: &Settings) -> Result<RustlsConfig> {
    install_provider();
    let (cert, key) = match &settings.tls {
        Some(pair) => pair.clone(),
        None => {
            let (cert, key) = settings.generated_tls_paths();
            ensure_self_signed(&cert, &key, settings.listen.ip())?
        }
    };
    RustlsConfig::from_pem_file(&cert, &key).await.map_err(|e| {
        Error::Tls(format!(
            "cannot use certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// The old API's TLS configuration: its configured pair, checked as
/// [`read_pair`] does, or its own generated self-signed certificate.
pub fn old_api_config(old: &OldApiSettings, data_dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    install_provider();
    let pair = match &old.tls {
        Some((cert, key)) => read_pair(
            cert,
            key,
            "https_api_old.tls_cert",
            "https_api_old.tls_private_key",
        )?,
        None => {
            let (cert, key) = OldApiSettings::generated_tls_paths(data_dir);
            let (cert, key) = ensure_self_signed(&cert, &key, old.bind.ip())?;
            read_pair(&cert, &key, "generated certificate", "generated key")?
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(pair.chain, pair.key)
    .map_err(|e| Error::Tls(format!("cannot use the old API's certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

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
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::invalid(
                cert_name,
                format!(
                    "{} is not a valid PEM file: {}",
                    cert.display(),
                    pem_error(&e)
                ),
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::invalid(
            cert_name,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert.display()
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        ConfigError::invalid(
            key_name,
            match e {
                pem::Error::NoItemsFound => format!(
                    "{} holds no PEM private key (PKCS#8, RSA or EC)",
                    key.display()
                ),
                e => format!(
                    "{} is not a valid PEM file: {}",
                    key.display(),
                    pem_error(&e)
                ),
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
                    cert.display()
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
            format!(
                "the certificate in {} expired on {}",
                cert.display(),
                date(not_after)
            ),
        ));
    }
    if now < not_before {
        return Err(ConfigError::invalid(
            cert_name,
            format!(
                "the certificate in {} is not valid before {}",
                cert.display(),
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
                key.display(),
                cert.display()
            ),
            e => format!("cannot use the key in {}: {e}", key.display()),
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

/// Makes sure `cert` and `key` exist, generating a self-signed pair into
/// their directory on first use. Its names: localhost, 127.0.0.1, ::1, the
/// host name and `ip` when that is not the unspecified address.
pub fn ensure_self_signed(cert: &Path, key: &Path, ip: IpAddr) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    match (cert.is_file(), key.is_file()) {
        (true, true) => return Ok((cert, key)),
        (false, false) => {}
        _ => {
            return Err(Error::Tls(format!(
                "only one of {} and {} exists; delete the directory to have a new pair generated",
                cert.display(),
                key.display()
            )));
        }
    }
    let dir = cert
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Tls(format!("{} has no directory", cert.display())))?;
    let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::Tls(format!("cannot generate a self-signed certificate: {e}")))?;

    // Write both files into a fresh directory and rename it into place, so that
    // two processes starting together never pair one's key with the other's cert.
    let tmp = parent.join(format!(
        ".{}-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    let file = |p: &Path| p.file_name().map(|n| tmp.join(n)).unwrap_or_default();
    write_private(
        &file(&key),
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    std::fs::write(file(&cert), generated.cert.pem())
        .map_err(|e| Error::io("cannot write the generated certificate", e))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process won the race; use its files.
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    }
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    f.write_all(data)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn check(cert: &Path, key: &Path) -> String {
        match read_pair(cert, key, "c", "k") {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn validity_of_generated_certificates() {
        let (pem, _) = cert_with((2001, 2, 3), (2049, 12, 31));
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (a, b) = validity(der.as_ref()).unwrap();
        assert_eq!(a, 981_158_400); // 2001-02-03T00:00:00Z
        assert_eq!(b, 2_524_521_600); // 2049-12-31T00:00:00Z
        // GeneralizedTime from 2050 on.
        let (pem, _) = cert_with((2001, 2, 3), (2051, 1, 1));
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(validity(der.as_ref()).unwrap().1, 2_556_143_999 + 1);
        assert_eq!(validity(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(validity(&[]), None);
    }

    #[test]
    fn pairs_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (good_cert, good_key) = cert_with((2020, 1, 1), (2090, 1, 1));
        let (_, other_key) = cert_with((2020, 1, 1), (2090, 1, 1));
        let (old_cert, old_key) = cert_with((2000, 1, 1), (2001, 1, 1));
        let (future_cert, future_key) = cert_with((2090, 1, 1), (2091, 1, 1));
        let c = write(d, "c.pem", good_cert.as_bytes());
        let k = write(d, "k.pem", good_key.as_bytes());
        assert_eq!(check(&c, &k), "ok");
        // A cert file that also holds the key (the UCM's certificate.pem) is fine.
        let both = write(d, "both.pem", format!("{good_key}{good_cert}").as_bytes());
        assert_eq!(check(&both, &k), "ok");

        let ok2 = write(d, "k2.pem", other_key.as_bytes());
        let e = check(&c, &ok2);
        assert!(
            e.starts_with("config key `k`: the key in") && e.contains("does not match"),
            "{e}"
        );

        let oc = write(d, "oc.pem", old_cert.as_bytes());
        let ok = write(d, "ok.pem", old_key.as_bytes());
        let e = check(&oc, &ok);
        assert!(
            e.contains("config key `c`") && e.contains("expired on 2001-01-01 00:00:00 UTC"),
            "{e}"
        );

        let fc = write(d, "fc.pem", future_cert.as_bytes());
        let fk = write(d, "fk.pem", future_key.as_bytes());
        assert!(check(&fc, &fk).contains("is not valid before 2090-01-01"));

        let text = write(d, "t.pem", b"hello\n");
        assert!(check(&text, &k).contains("holds no PEM certificate"));
        assert!(
            check(&c, &text).contains("config key `k`")
                && check(&c, &text).contains("holds no PEM private key")
        );
        let broken = write(
            d,
            "b.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        assert!(
            check(&broken, &k).contains("is not a valid PEM file"),
            "{}",
            check(&broken, &k)
        );

        let big = write(d, "big.pem", &vec![b'a'; 2 * 1024 * 1024 + 1]);
        let e = check(&big, &k);
        assert!(
            e.contains("config key `c`") && e.contains("larger than 2 MB"),
            "{e}"
        );
        let e = check(&d.join("missing.pem"), &k);
        assert!(e.contains("cannot read"), "{e}");
        // Never key material in a message.
        for e in [check(&c, &ok2), check(&c, &text)] {
            assert!(!e.contains("PRIVATE KEY") && !e.contains("MII"), "{e}");
        }
    }

    #[test]
    fn self_signed_pair_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls-old/cert.pem");
        let key = dir.path().join("tls-old/key.pem");
        ensure_self_signed(&cert, &key, "10.1.2.3".parse().unwrap()).unwrap();
        let first = std::fs::read(&cert).unwrap();
        ensure_self_signed(&cert, &key, "10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        assert_eq!(check(&cert, &key), "ok");
        std::fs::remove_file(&key).unwrap();
        assert!(ensure_self_signed(&cert, &key, "10.1.2.3".parse().unwrap()).is_err());
    }
}
