//! The server certificate: the configured one, or a self-signed one generated
//! on first start, kept in the data directory and reused afterwards.

use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::Settings;
use crate::error::{Error, Result};

pub async fn load(settings: &Settings) -> Result<RustlsConfig> {
    // Several providers may be compiled in; pick one explicitly. An error only
    // means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (cert, key) = match &settings.tls {
        Some(pair) => pair.clone(),
        None => ensure_self_signed(settings)?,
    };
    RustlsConfig::from_pem_file(&cert, &key).await.map_err(|e| {
        Error::Tls(format!(
            "cannot use certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

fn ensure_self_signed(settings: &Settings) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = settings.generated_tls_paths();
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
        .unwrap_or_else(|| settings.data_dir.join("tls"));
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
    if !settings.listen.ip().is_unspecified() {
        names.push(settings.listen.ip().to_string());
    }
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::Tls(format!("cannot generate a self-signed certificate: {e}")))?;

    // Write both files into a fresh directory and rename it into place, so that
    // two processes starting together never pair one's key with the other's cert.
    let tmp = parent.join(format!(".tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    write_private(
        &tmp.join("key.pem"),
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    std::fs::write(tmp.join("cert.pem"), generated.cert.pem())
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
