//! Start-up, the HTTPS listener, background maintenance and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterisk::pbx::{Manager, Stasis};
use axum::Router;
use axum::routing::{any, get, post};
use store::{ConnectOptions, Store};

use crate::callcontrol::CallControl;
use crate::cdrapi::Cdrapi;
use crate::channels::Channels;
use crate::config::Settings;
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::pms::Pms;
use crate::sessions::Auth;
use crate::system::{Identity, StatusCache, System};
use crate::{admin, api, callcontrol, health, ingest, legacy, settings_audit, tls, websockify};

/// Everything the process runs, built once by [`prepare`]: the state of
/// each listener (its handles into the features) and what shutdown stops.
/// Nothing below the listeners sees this type.
pub struct App {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub auth: Arc<Auth>,
    /// The API settings in force (file plus admin page), changed live.
    pub api: Arc<crate::apiconfig::ApiConfig>,
    /// The Asterisk connections, when configured.
    pub pbx: Option<Pbx>,
    /// The hotel functions (also what the old listener's `/pmsapi` runs).
    pub pms: crate::pms::Pms,
    pub calls: CallControl,
    /// The certificates the listeners use (admin Status page).
    pub certs: Arc<tls::InUse>,
    /// Turns true when shutdown begins: long-lived answers (the admin Live
    /// calls page's event stream) end instead of holding up the grace time.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Open connections of both listeners under `web.max_connections`.
    pub conns: Arc<crate::net::Connections>,
    /// The listeners' states.
    pub api_listener: Arc<api::Api>,
    pub admin: Arc<admin::Console>,
    pub websockify: Arc<websockify::Websockify>,
    pub health: Arc<health::Health>,
    pub old_api: Arc<legacy::Deps>,
    /// CDR Real-Time Output: one worker per receiver.
    pub outbox: Arc<crate::outbox::Outbox>,
}

/// The connections to one PBX and the tasks that run with them.
pub struct Pbx {
    pub ami: asterisk::ami::Ami,
    pub ari: Option<asterisk::ari::Ari>,
    /// The same connections as the features hold them: through the PBX seam.
    pub manager: Arc<dyn Manager>,
    pub stasis: Option<Arc<dyn Stasis>>,
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
    /// This node's part among the nodes serving this Asterisk.
    pub member: crate::cluster::Membership,
}

/// The routes of the new API's listener; each part has its own state.
pub fn router(app: &App) -> Router {
    let api = Router::new()
        .route("/api", post(api::handle).fallback(api::invalid))
        // One PHP client posts to /api/v1.
        .route("/api/v1", post(api::handle).fallback(api::invalid))
        // Real UCMs answer -1 to /api/challenge and the like.
        .route("/api/{*rest}", any(api::invalid))
        .with_state(app.api_listener.clone());
    api.merge(
        Router::new()
            .route("/healthz", get(health::healthz))
            .with_state(app.health.clone()),
    )
    .merge(
        Router::new()
            .route("/websockify", any(websockify::handle))
            .with_state(app.websockify.clone()),
    )
    .merge(admin::routes().with_state(app.admin.clone()))
}

/// Opens the database and prepares everything the server needs: the one
/// place where the features' handles are built.
pub async fn prepare(settings: Settings) -> Result<App> {
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
    // What the admin page saved joins the file's settings from here on: the
    // API users, the switch and the old API are read from `api` only.
    let api = Arc::new(crate::apiconfig::ApiConfig::load(&settings, &store).await?);
    settings_audit::record(&settings, &api, &store).await?;
    let identity = Identity::load(&settings, &store).await?;
    let in_force = api.new_api();
    for u in &in_force.users {
        if u.password.is_empty() {
            tracing::warn!(
                user = u.username,
                "API user has no password: every login as this user is refused"
            );
        }
    }
    for u in &api.ws_users().users {
        if u.password.is_empty() {
            tracing::warn!(
                user = u.username,
                "websocket user has no password: every login as this user is refused"
            );
        }
    }
    let call_control = in_force.enabled && in_force.users.iter().any(|u| u.call_control);
    let recordings = Arc::new(crate::recordings::Recordings::new(
        &settings.recordings,
        settings.timezone.clone(),
    )?);
    let describe = recordings.folder("monitor").map(|folder| {
        crate::ingest::recording_desc::Describer::new(recordings.storage(), folder.to_owned())
    });
    let live = crate::live::Hub::new();
    // The file's receivers and the admin page's, changed live through `api`.
    let outbox = Arc::new(crate::outbox::Outbox::start(
        &store,
        &api.cdr_output(),
        settings.cdrapi.output,
        &crate::outbox::holder_name(),
    ));
    api.attach_cdr_output(Arc::new(OutboxSink(outbox.clone())));
    let pbx = settings
        .asterisk
        .as_ref()
        .map(|a| {
            connect_pbx(
                a,
                &store,
                &settings,
                &live,
                describe,
                call_control,
                outbox.queue(),
            )
        })
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
    let auth = Arc::new(Auth::new(&settings, api.current(), store.clone()));
    let started = Instant::now();
    let stopping = tokio::sync::watch::Sender::new(false);
    let certs = Arc::new(tls::InUse::default());

    // The features' handles, for the PBX this process serves.
    let ami = pbx.as_ref().map(|p| p.manager.clone());
    let ari = pbx.as_ref().and_then(|p| p.stasis.clone());
    let calls = CallControl::new(pbx.as_ref().and_then(|p| p.calls.clone()));
    let channels = Channels::new(
        pbx.as_ref()
            .zip(ami.clone())
            .map(|(p, ami)| crate::channels::Link {
                ami,
                ari: ari.clone(),
                board: p.board.clone(),
            }),
        settings.dialing.clone(),
    );
    let directory = Directory::new(ami.clone(), settings.dialing.clone());
    let pms = Pms::new(
        store.clone(),
        settings.pms.clone(),
        settings.timezone.clone(),
        ami.clone(),
    );
    let cdrapi = Cdrapi {
        store: store.clone(),
        settings: settings.cdrapi,
        tz: settings.timezone.clone(),
    };

    // The listeners' states.
    let api_listener = Arc::new(api::Api {
        auth: auth.clone(),
        settings: api.clone(),
        max_body_bytes: settings.max_body_bytes,
        system: System {
            settings: settings.clone(),
            identity,
            started,
            cache: StatusCache::default(),
        },
        cdrapi: cdrapi.clone(),
        recordings: recordings.clone(),
        calls: calls.clone(),
        channels: channels.clone(),
        directory,
        pms: pms.clone(),
    });
    let admin = Arc::new(admin::Console {
        settings: settings.clone(),
        store: store.clone(),
        auth: auth.clone(),
        sessions: crate::sessions::admin::AdminSessions::new(store.clone(), settings.idle_timeout),
        api: api.clone(),
        live: live.clone(),
        pbx: pbx.as_ref().map(|p| admin::PbxView {
            ami: p.ami.clone(),
            ari: p.ari.clone(),
            ami_log: p.ami_log.clone(),
            ari_log: p.ari_log.clone(),
            ingest_stats: p.ingest_stats.clone(),
            member: p.member.clone(),
        }),
        channels,
        recordings: recordings.clone(),
        calls: calls.clone(),
        certs: certs.clone(),
        stopping: stopping.subscribe(),
        password_checks,
        admin_login_key,
        started,
        outbox: outbox.clone(),
    });
    let websockify = Arc::new(websockify::Websockify {
        auth: auth.clone(),
        api: api.clone(),
        live,
        idle: settings.websocket_idle,
        challenge_ttl: settings.challenge_ttl,
    });
    let health = Arc::new(health::Health {
        store: store.clone(),
        ami: pbx.as_ref().map(|p| p.ami.state()),
        ari: pbx.as_ref().and_then(|p| p.ari.as_ref()).map(|a| a.state()),
        calls: calls.clone(),
        outbox: outbox.clone(),
        member: pbx.as_ref().map(|p| p.member.clone()),
    });
    let old_api = Arc::new(legacy::Deps {
        settings: settings.clone(),
        auth: auth.clone(),
        cdrapi,
        recordings,
        pms: pms.clone(),
        store: store.clone(),
        certs: certs.clone(),
        conns: conns.clone(),
        api: api.clone(),
    });
    Ok(App {
        settings,
        store,
        auth,
        api,
        pbx,
        pms,
        calls,
        certs,
        stopping,
        conns,
        api_listener,
        admin,
        websockify,
        health,
        old_api,
        outbox,
    })
}

/// The outbox as the API settings put CDR output settings in force.
struct OutboxSink(Arc<crate::outbox::Outbox>);

#[async_trait::async_trait]
impl crate::apiconfig::CdrOutputSink for OutboxSink {
    async fn apply(&self, settings: &crate::config::cdr_output::CdrOutputSettings) -> Vec<String> {
        self.0.apply(settings).await
    }
}

fn connect_pbx(
    a: &crate::config::AsteriskSettings,
    store: &Store,
    settings: &Settings,
    live: &crate::live::Hub,
    describe: Option<crate::ingest::recording_desc::Describer>,
    call_control: bool,
    queue: crate::outbox::Queue,
) -> Result<Pbx> {
    let ami = asterisk::ami::Ami::start(asterisk::ami::AmiConfig::new(
        a.ami_address.clone(),
        a.ami_username.clone(),
        a.ami_secret.expose(),
    ));
    // On a shared database one node at a time owns the Asterisk.
    let member = match store.backend() {
        store::Backend::Postgres => crate::cluster::Membership::start(&settings.cluster, store),
        store::Backend::Sqlite => crate::cluster::Membership::sole(&settings.cluster),
    };
    // The features hold the PBX through the seam's traits.
    let manager: Arc<dyn Manager> = Arc::new(ami.clone());
    crate::pbxcheck::start(&manager, a.cdr_csv.clone());
    let ingest = ingest::Ingest::start(
        &manager,
        store.clone(),
        settings.timezone.clone(),
        a.cdr_csv.clone(),
        describe,
        queue,
    );
    let ari = match &a.ari {
        Some(c) => Some(asterisk::ari::Ari::start(
            asterisk::ari::AriConfig::new(
                c.url.clone(),
                c.username.clone(),
                c.password.expose(),
                c.app.clone(),
            )
            .with_ami(ami.clone())
            .with_gate(member.gate()),
        )?),
        None => None,
    };
    let stasis: Option<Arc<dyn Stasis>> = ari.clone().map(|a| Arc::new(a) as Arc<dyn Stasis>);
    let board = crate::live::start(
        live.clone(),
        &manager,
        stasis.as_ref(),
        settings.timezone.clone(),
        settings.dialing.trunk_contexts.clone(),
    );
    let calls = stasis.as_ref().map(|ari| {
        callcontrol::start(
            &member,
            &settings.call_control,
            ari,
            &manager,
            store,
            call_control,
        )
    });
    let pms = crate::pms::Service::start(&manager, store, &settings.pms);
    Ok(Pbx {
        ami_log: health::ConnLog::follow(ami.state()),
        ari_log: ari.as_ref().map(|a| health::ConnLog::follow(a.state())),
        ingest_stats: ingest.stats(),
        member,
        ami,
        ari,
        manager,
        stasis,
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
    let app = Arc::new(prepare(settings).await?);
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
        router: router(&app),
        limits: crate::net::Limits::from_settings(&settings),
        conns: app.conns.clone(),
        handle: handle.clone(),
    };

    // The old API's listener, when enabled; reloads start and stop it.
    let in_force = app.api.old_api().await;
    let old_api = Arc::new(legacy::OldApi::new(app.old_api.clone(), in_force.clone())?);
    old_api.apply(in_force).await?;
    app.api.attach_old_api(old_api.clone());
    if let Some(engine) = app.calls.engine() {
        app.api.attach_call_control(engine.clone());
    }
    let settings_watch = tokio::spawn(settings_watch(
        app.api.clone(),
        app.auth.clone(),
        app.store.web_settings_saved(),
    ));
    let watcher = hup.map(|(r, signal)| {
        tokio::spawn(legacy::reload::watch(
            old_api.clone(),
            app.old_api.clone(),
            r.path,
            r.config,
            signal,
        ))
    });

    let grace = settings.shutdown_grace;
    let signal_handle = handle.clone();
    let calls = app.calls.engine().cloned();
    let old_signal = old_api.clone();
    let stopping_app = app.clone();
    let member = app.pbx.as_ref().map(|p| p.member.clone());
    tokio::spawn(async move {
        shutdown.await;
        stopping_app.stopping.send_replace(true);
        let handed_over = match &member {
            Some(m) => m.hand_over().await,
            None => false,
        };
        if let Some(calls) = calls
            && !handed_over
        {
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
    let history = tokio::spawn(ingest::history::run(
        app.store.clone(),
        settings.cdr_retention_months,
    ));
    tracing::info!(
        url = %format!("https://{local}/api"),
        database = ?app.store.backend(),
        users = app.api.new_api().users.len(),
        api_enabled = app.api.new_api().enabled,
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
    history.abort();
    if let Some(pbx) = &app.pbx {
        // Store every CDR already received before the database closes.
        let ingest = pbx.ingest.lock().ok().and_then(|mut i| i.take());
        if let Some(ingest) = ingest {
            ingest.stop(grace).await;
        }
        if let Some(calls) = &pbx.calls
            && pbx.member.role().acting().is_some()
        {
            calls.release_all().await;
        }
        pbx.member.leave().await;
        pbx.pms.stop();
        pbx.ami.shutdown();
        if let Some(ari) = &pbx.ari {
            ari.shutdown();
        }
    }
    // After the ingest: what it stored last stays queued for the next start
    // (or another node) when the workers end before delivering it.
    app.outbox.stop(grace).await;
    app.store.close().await;
    tracing::info!("pbxgate stopped");
    served.map_err(|e| Error::io("HTTPS server failed", e))
}

/// Reads the saved API settings again when another node saved them (told
/// by PostgreSQL's `NOTIFY`; polled as well, in case a notification is
/// lost), and ends the sessions of the users they removed or gave a new
/// password.
async fn settings_watch(
    api: Arc<crate::apiconfig::ApiConfig>,
    auth: Arc<Auth>,
    mut saved: Option<tokio::sync::mpsc::Receiver<()>>,
) {
    let mut tick = tokio::time::interval(crate::apiconfig::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let heard = async {
            match saved.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            message = heard => {
                if message.is_none() {
                    saved = None;
                }
            }
        }
        match api.refresh().await {
            Ok(ended) => auth.end_sessions_of_users(&ended).await,
            Err(e) => tracing::warn!(error = %e, "cannot read the saved API settings"),
        }
    }
}

/// Periodically drops expired sessions, challenges and lockout records.
async fn maintenance(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.auth.prune().await {
            tracing::warn!(error = %e, "session maintenance failed; will retry");
        }
        if let Err(e) = admin::prune(&app.admin).await {
            tracing::warn!(error = %e, "admin session maintenance failed; will retry");
        }
        // The calls of claims a day old are long over.
        let day_ago = crate::clock::now_ms() - 86_400_000;
        if let Err(e) = store::DecisionStore::prune_claims(&app.store, day_ago).await {
            tracing::warn!(error = %e, "cannot forget old call control claims; will retry");
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
