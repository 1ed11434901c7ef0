//! Start-up, the HTTPS listener, background maintenance and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get, post};
use store::{ConnectOptions, Store};

use crate::auth::Auth;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::system::{Identity, StatusCache};
use crate::{admin, api, callcontrol, health, ingest, legacy, settings_audit, tls, websockify};

/// Shared state of the running server.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub auth: Auth,
    pub identity: Identity,
    pub started: Instant,
    pub status_cache: StatusCache,
    /// The Asterisk connections, when configured.
    pub pbx: Option<Pbx>,
    pub recordings: crate::recordings::Recordings,
    /// Notifications for `/websockify` subscribers.
    pub live: crate::live::Hub,
    /// The API settings in force (file plus admin page), changed live.
    pub api: Arc<crate::apiconfig::ApiConfig>,
    /// The certificates the listeners use (admin Status page).
    pub certs: tls::InUse,
    /// Turns true when shutdown begins: long-lived answers (the admin Live
    /// calls page's event stream) end instead of holding up the grace time.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Open connections of both listeners under `web.max_connections`.
    pub conns: Arc<crate::net::Connections>,
    /// Admin password checks (argon2) running at once, at most `web.password_checks`.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Signs the admin login form's tokens (shared by the nodes of one database).
    pub admin_login_key: ucm::httpauth::NonceKey,
}

pub struct Pbx {
    pub ami: asterisk::ami::Ami,
    pub ari: Option<asterisk::ari::Ari>,
    /// Inbound call control (needs ARI).
    pub calls: Option<std::sync::Arc<callcontrol::Engine>>,
    /// What the channel lists show (the state behind `ActiveCallStatus`).
    pub board: crate::live::Board,
    /// Hotel rooms on Asterisk and wake-up calls (pmsapi).
    pub pms: crate::pms::Service,
    ingest: std::sync::Mutex<Option<ingest::Ingest>>,
    /// For the admin Status page: when AMI / ARI came up or went down, and
    /// the ingest's backlog.
    pub ami_log: health::ConnLog,
    pub ari_log: Option<health::ConnLog>,
    pub ingest_stats: Arc<ingest::Stats>,
}

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/api", post(api::handle).fallback(api::invalid))
        // One PHP client posts to /api/v1.
        .route("/api/v1", post(api::handle).fallback(api::invalid))
        // Real UCMs answer -1 to /api/challenge and the like.
        .route("/api/{*rest}", any(api::invalid))
        .route("/healthz", get(health::healthz))
        .route("/websockify", any(websockify::handle))
        .merge(admin::routes())
        .with_state(app)
}

/// Opens the database and prepares everything the server needs.
pub async fn prepare(mut settings: Settings) -> Result<App> {
    crate::files::private_dir(&settings.data_dir).map_err(|e| {
        Error::io(
            format!("cannot create web.data_dir {}", settings.data_dir.display()),
            e,
        )
    })?;
    let store = Store::connect(
        settings.database_url.expose(),
        &ConnectOptions {
            max_connections: settings.database_max_connections,
            base_dir: settings.config_dir.clone(),
        },
    )
    .await?;
    // What the admin page saved joins the file's settings from here on.
    let api = Arc::new(crate::apiconfig::ApiConfig::load(&settings, &store).await?);
    let in_force = api.new_api();
    settings.api_enabled = in_force.enabled;
    settings.users = in_force.users.clone();
    settings.websocket_users = api.ws_users().users.clone();
    settings.old_api = api.old_api().await;
    settings_audit::record(&settings, &store).await?;
    let identity = Identity::load(&settings, &store).await?;
    for u in &settings.users {
        if u.password.is_empty() {
            tracing::warn!(
                user = u.username,
                "API user has no password: every login as this user is refused"
            );
        }
    }
    for u in &settings.websocket_users {
        if u.password.is_empty() {
            tracing::warn!(
                user = u.username,
                "websocket user has no password: every login as this user is refused"
            );
        }
    }
    let recordings =
        crate::recordings::Recordings::new(&settings.recordings, settings.timezone.clone())?;
    let describe = recordings.folder("monitor").map(|folder| {
        crate::ingest::recording_desc::Describer::new(recordings.storage(), folder.to_owned())
    });
    let live = crate::live::Hub::new();
    let pbx = settings
        .asterisk
        .as_ref()
        .map(|a| connect_pbx(a, &store, &settings, &live, describe))
        .transpose()?;
    if pbx.is_none() {
        tracing::warn!(
            "asterisk.ami_secret is not set: not connecting to Asterisk (no CDR ingest)"
        );
    }
    let open_files = crate::net::raise_open_files_limit();
    let conns = crate::net::Connections::from_settings(&settings, open_files);
    let password_checks = Arc::new(tokio::sync::Semaphore::new(settings.net.password_checks));
    let admin_login_key = admin::login_key(&store).await?;
    let settings = Arc::new(settings);
    Ok(App(Arc::new(AppInner {
        conns,
        password_checks,
        admin_login_key,
        pbx,
        recordings,
        auth: Auth::new(settings.clone(), api.current(), store.clone()),
        api,
        settings,
        store,
        identity,
        started: Instant::now(),
        status_cache: StatusCache::default(),
        live,
        certs: tls::InUse::default(),
        stopping: tokio::sync::watch::Sender::new(false),
    })))
}

fn connect_pbx(
    a: &crate::config::AsteriskSettings,
    store: &Store,
    settings: &Settings,
    live: &crate::live::Hub,
    describe: Option<crate::ingest::recording_desc::Describer>,
) -> Result<Pbx> {
    let ami = asterisk::ami::Ami::start(asterisk::ami::AmiConfig::new(
        a.ami_address.clone(),
        a.ami_username.clone(),
        a.ami_secret.expose(),
    ));
    crate::pbxcheck::start(&ami, a.cdr_csv.clone());
    let ingest = ingest::Ingest::start(
        &ami,
        store.clone(),
        settings.timezone.clone(),
        a.cdr_csv.clone(),
        describe,
    );
    let ari = match &a.ari {
        Some(c) => Some(asterisk::ari::Ari::start(
            asterisk::ari::AriConfig::new(
                c.url.clone(),
                c.username.clone(),
                c.password.expose(),
                c.app.clone(),
            )
            .with_ami(ami.clone()),
        )?),
        None => None,
    };
    let board = crate::live::start(
        live.clone(),
        &ami,
        ari.as_ref(),
        settings.timezone.clone(),
        settings.dialing.trunk_contexts.clone(),
    );
    let calls = ari
        .as_ref()
        .map(|ari| callcontrol::start(settings, ari, &ami, store));
    let pms = crate::pms::Service::start(&ami, store, settings);
    Ok(Pbx {
        ami_log: health::ConnLog::follow(ami.state()),
        ari_log: ari.as_ref().map(|a| health::ConnLog::follow(a.state())),
        ingest_stats: ingest.stats(),
        ami,
        ari,
        calls,
        board,
        pms,
        ingest: std::sync::Mutex::new(Some(ingest)),
    })
}

/// Serves until `shutdown` completes, then lets in-flight requests finish
/// (up to `web.shutdown_grace_secs`) and closes the database cleanly.
/// `on_listening` is told the bound address once the listener is up.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send,
) -> Result<()> {
    run_with_reload(settings, None, shutdown, on_listening).await
}

/// Where the configuration came from, to re-read it on SIGHUP.
pub struct Reload {
    pub path: std::path::PathBuf,
    /// The configuration as read at start.
    pub config: crate::config::Config,
}

/// As [`run`]; with `reload`, SIGHUP re-reads the configuration file and
/// applies `[https_api_old]` live (see `legacy::reload`).
pub async fn run_with_reload(
    settings: Settings,
    reload: Option<Reload>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send,
) -> Result<()> {
    // Watch SIGHUP from the start: its default action ends the process.
    let hup = match reload {
        Some(r) => {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| Error::io("cannot watch SIGHUP", e))?;
            Some((r, signal))
        }
        None => None,
    };
    let tls_config = tls::load(&settings).await?;
    let app = prepare(settings).await?;
    let settings = app.settings.clone();
    app.certs.set_web(tls::CertInfo::web(&settings));

    let listener =
        std::net::TcpListener::bind(settings.listen).map_err(|source| Error::Listen {
            addr: settings.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("cannot configure the listener", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listener address", e))?;

    let handle = crate::net::Handle::new();
    let server = crate::net::Listener {
        name: "new API",
        tcp: listener,
        tls: tls_config,
        router: router(app.clone()),
        limits: crate::net::Limits::from_settings(&settings),
        conns: app.conns.clone(),
        handle: handle.clone(),
    };

    // The old API's listener, when enabled; reloads start and stop it.
    let old_api = Arc::new(legacy::OldApi::new(app.clone())?);
    old_api.apply(settings.old_api.clone()).await?;
    app.api.attach_old_api(old_api.clone());
    if let Some(engine) = app.pbx.as_ref().and_then(|p| p.calls.clone()) {
        app.api.attach_call_control(engine);
    }
    let settings_watch = tokio::spawn(crate::apiconfig::watch(app.clone()));
    let watcher = hup.map(|(r, signal)| {
        tokio::spawn(legacy::reload::watch(
            old_api.clone(),
            app.clone(),
            r.path,
            r.config,
            signal,
        ))
    });

    let grace = settings.shutdown_grace;
    let signal_handle = handle.clone();
    let calls = app.pbx.as_ref().and_then(|p| p.calls.clone());
    let old_signal = old_api.clone();
    let stopping_app = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping_app.stopping.send_replace(true);
        if let Some(calls) = calls {
            calls.release_all().await;
        }
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing in-flight requests"
        );
        signal_handle.graceful_shutdown(grace);
        old_signal.begin_shutdown(grace).await;
    });

    let maintenance = tokio::spawn(maintenance(app.clone()));
    tracing::info!(
        url = %format!("https://{local}/api"),
        database = ?app.store.backend(),
        users = settings.users.len(),
        api_enabled = settings.api_enabled,
        "pbxgate listening"
    );
    on_listening(local);

    let served = server.serve().await;
    if let Some(w) = watcher {
        w.abort();
    }
    old_api.shutdown(grace).await;
    settings_watch.abort();
    maintenance.abort();
    if let Some(pbx) = &app.pbx {
        // Store every CDR already received before the database closes.
        let ingest = pbx.ingest.lock().ok().and_then(|mut i| i.take());
        if let Some(ingest) = ingest {
            ingest.stop(grace).await;
        }
        if let Some(calls) = &pbx.calls {
            calls.release_all().await;
        }
        pbx.pms.stop();
        pbx.ami.shutdown();
        if let Some(ari) = &pbx.ari {
            ari.shutdown();
        }
    }
    app.store.close().await;
    tracing::info!("pbxgate stopped");
    served.map_err(|e| Error::io("HTTPS server failed", e))
}

/// Periodically drops expired sessions, challenges and lockout records.
async fn maintenance(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.auth.prune().await {
            tracing::warn!(error = %e, "session maintenance failed; will retry");
        }
        if let Err(e) = admin::prune(&app).await {
            tracing::warn!(error = %e, "admin session maintenance failed; will retry");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
