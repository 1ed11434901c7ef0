//! The old API listener (`[https_api_old]`, the UCM's "HTTPS API Settings
//! (Old)", port 8443): `GET /cdrapi`, `/recapi` and `/pmsapi` with HTTP Digest
//! or Basic authentication and the old API's permitted IPs, on a TLS listener
//! of its own.
//!
//! - [`OldApi`]: the listener's life: started with the server when enabled,
//!   and on SIGHUP ([`reload`]) started, stopped, moved to a new address or
//!   given a new certificate, while the new API's listener is left alone.
//!   Credentials and permitted IPs are read per request, so a change applies
//!   to the next request, even on an open connection.
//! - `auth`: Digest/Basic checking, nonces and replay protection.
//! - `http`: the routes, the 401/403/404 answers and the access log.

mod http;
pub mod reload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::task::JoinHandle;

use crate::config::OldApiSettings;
use crate::error::{Error, Result};

/// What the old listener needs, built once at start-up.
pub struct Deps {
    /// Listener limits, `web.data_dir`, the shutdown grace time, and the
    /// file's secrets a reload compares.
    pub settings: Arc<crate::config::Settings>,
    pub auth: Arc<crate::sessions::Auth>,
    pub cdrapi: crate::cdrapi::Cdrapi,
    pub recordings: Arc<crate::recordings::Recordings>,
    pub pms: crate::pms::Pms,
    /// The audit trail of reloads.
    pub store: store::Store,
    pub certs: Arc<crate::tls::InUse>,
    /// The API settings in force: a reload merges the file's old-API
    /// section with the admin page's.
    pub api: Arc<crate::apiconfig::ApiConfig>,
    pub conns: Arc<crate::net::Connections>,
}

pub(crate) type App = Arc<Deps>;

/// Largest request head (request line with its query string, and headers)
/// on HTTP/1.1 and HTTP/2 alike; larger requests get `431`. A cdrapi list of
/// 5000 items is about 50 KiB; the target itself can have at most 64 KiB
/// (`http::Uri`).
const MAX_REQUEST_HEAD: u32 = 128 * 1024;

/// State the request handlers share with the manager.
pub(crate) struct Shared {
    settings: RwLock<Arc<OldApiSettings>>,
    auth: crate::sessions::digest::Authenticator,
}

impl Shared {
    fn settings(&self) -> Arc<OldApiSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, new: OldApiSettings) {
        let new = Arc::new(new);
        match self.settings.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

struct Running {
    bind: SocketAddr,
    local: SocketAddr,
    handle: crate::net::Handle,
    tls: RustlsConfig,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting at once; requests in flight get `grace` to finish.
    fn stop(self, grace: Duration) -> JoinHandle<()> {
        self.handle.graceful_shutdown(grace);
        let local = self.local;
        let task = self.task;
        tokio::spawn(async move {
            let _ = task.await;
            tracing::info!(address = %local, "old API listener stopped");
        })
    }
}

/// The old API listener and its settings.
pub struct OldApi {
    app: App,
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Listeners stopped by a reload, finishing their requests.
    stopping: std::sync::Mutex<Vec<JoinHandle<()>>>,
    closing: AtomicBool,
}

impl OldApi {
    /// Nothing listens until [`OldApi::apply`]; `settings` are those in
    /// force (the admin page's over the file's).
    pub fn new(app: App, settings: OldApiSettings) -> Result<OldApi> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Random(e.to_string()))?;
        Ok(OldApi {
            app,
            shared: Arc::new(Shared {
                settings: RwLock::new(Arc::new(settings)),
                auth: crate::sessions::digest::Authenticator::new(key),
            }),
            running: tokio::sync::Mutex::new(None),
            stopping: std::sync::Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<OldApiSettings> {
        self.shared.settings()
    }

    /// Where the listener listens, when it does.
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().await.as_ref().map(|r| r.local)
    }

    /// Puts `new` in force: starts or stops the listener, moves it to a new
    /// address, re-reads its certificate, and swaps the credentials and
    /// permitted IPs. On an error (certificate, address in use) the listener
    /// and the settings in force stay as they were, except when the new
    /// address overlaps the old one: then the old listener had to stop first.
    pub async fn apply(&self, new: OldApiSettings) -> Result<()> {
        let mut running = self.running.lock().await;
        if self.closing.load(Ordering::SeqCst) {
            return Ok(());
        }
        let grace = self.app.settings.shutdown_grace;
        if !new.enable {
            self.shared.set(new);
            if let Some(r) = running.take() {
                self.stopping(r.stop(grace));
            }
            self.app.certs.set_old_api(None);
            return Ok(());
        }
        // Certificates: files (checked) or the generated pair, read off the
        // async threads.
        let data_dir = self.app.settings.data_dir.clone();
        let for_tls = new.clone();
        let (tls, cert) = tokio::task::spawn_blocking(move || {
            crate::tls::old_api_config(&for_tls, &data_dir)
                .map(|tls| (tls, crate::tls::CertInfo::old_api(&for_tls, &data_dir)))
        })
        .await
        .map_err(|e| Error::Tls(format!("certificate loading failed: {e}")))??;
        warn_about(&new);
        match running.as_mut() {
            Some(r) if r.bind == new.bind => {
                r.tls.reload_from_config(tls);
                self.app.certs.set_old_api(Some((r.local, cert)));
                self.shared.set(new);
            }
            _ => {
                let listener = match bind(new.bind) {
                    Ok(l) => l,
                    Err(first) => {
                        let overlapping =
                            running.as_ref().is_some_and(|r| overlaps(r.bind, new.bind));
                        if !overlapping {
                            return Err(first);
                        }
                        // The running listener holds the port: stop it, then
                        // take the port over as soon as it is released.
                        if let Some(r) = running.take() {
                            self.stopping(r.stop(grace));
                            self.app.certs.set_old_api(None);
                        }
                        bind_soon(new.bind).await?
                    }
                };
                let bind = new.bind;
                self.shared.set(new);
                let started = self.serve(listener, bind, tls)?;
                self.app.certs.set_old_api(Some((started.local, cert)));
                if let Some(previous) = running.replace(started) {
                    self.stopping(previous.stop(grace));
                }
            }
        }
        Ok(())
    }

    fn serve(
        &self,
        listener: std::net::TcpListener,
        bind: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Running> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the old API listener's address", e))?;
        let tls = RustlsConfig::from_config(tls);
        let handle = crate::net::Handle::new();
        let server = crate::net::Listener {
            name: "old API",
            tcp: listener,
            tls: tls.clone(),
            router: http::router(self.app.clone(), self.shared.clone()),
            limits: crate::net::Limits {
                // The query string is the whole request here: cdrapi lists of
                // thousands of items must fit, on HTTP/1.1 and HTTP/2 alike.
                max_head_bytes: MAX_REQUEST_HEAD,
                ..crate::net::Limits::from_settings(&self.app.settings)
            },
            conns: self.app.conns.clone(),
            handle: handle.clone(),
        };
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve().await {
                tracing::error!(address = %local, error = %e, "old API listener failed");
            }
        });
        tracing::info!(
            url = %format!("https://{local}/cdrapi"),
            "old API listening (https_api_old)"
        );
        Ok(Running {
            bind,
            local,
            handle,
            tls,
            task,
        })
    }

    fn stopping(&self, task: JoinHandle<()>) {
        if let Ok(mut list) = self.stopping.lock() {
            list.retain(|t| !t.is_finished());
            list.push(task);
        }
    }

    /// pbxgate is stopping: no new connections from now on, and no reload
    /// starts the listener again; requests in flight get `grace`.
    pub async fn begin_shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(r) = self.running.lock().await.as_ref() {
            r.handle.graceful_shutdown(grace);
        }
    }

    /// Stops the listener for good and waits (at most `grace` and a second)
    /// for its requests, and those of listeners a reload stopped, to finish.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let running = self.running.lock().await.take();
        if let Some(r) = running {
            self.stopping(r.stop(grace));
        }
        let tasks = self
            .stopping
            .lock()
            .map(|mut list| std::mem::take(&mut *list))
            .unwrap_or_default();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), all).await;
    }
}

/// What an operator should know about settings that refuse everybody.
fn warn_about(s: &OldApiSettings) {
    if s.password.is_empty() {
        tracing::warn!(
            "https_api_old.password is empty: every request to the old API is refused (401)"
        );
    }
    if s.permitted_ips.is_empty() {
        tracing::warn!(
            "https_api_old.permitted_ips is empty: every address is refused (403), as on the UCM"
        );
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| Error::Listen { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("cannot configure the old API listener", e))?;
    Ok(listener)
}

/// Binds `addr`, retrying for a few seconds while a stopping listener
/// still holds it.
async fn bind_soon(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if tries >= 60 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[async_trait::async_trait]
impl crate::apiconfig::OldApiListener for OldApi {
    async fn apply(&self, settings: OldApiSettings) -> Result<()> {
        OldApi::apply(self, settings).await
    }
}
