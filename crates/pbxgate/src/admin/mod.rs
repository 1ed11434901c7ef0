//! The admin web interface under `/admin/`, served by pbxgate itself with
//! every asset compiled into the binary.
//!
//! - `login`: admin accounts, login, logout, sessions and their CSRF token.
//! - `page`: the layout, security headers and session extractors.
//! - `assets`: the stylesheet and scripts.
//! - `apiconfig`: the API Configuration page (the UCM's New and Old HTTPS API
//!   tables), applied live.
//! - `cdr`: the CDR browser (filters, legs, export, playback, calls per hour).
//! - `live`: live calls (channels, held inbound calls with Accept / Refuse).
//! - `status`: Asterisk, database, ingest, audit trail, certificates.

mod apiconfig;
mod assets;
mod cdr;
mod live;
mod login;
mod page;
mod status;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};

pub use login::{
    DEFAULT_USERNAME, LOGIN_CSRF_COOKIE, MIN_PASSWORD_CHARS, SESSION_COOKIE, check_new_password,
    check_username, hash_password, login_key, prune, verify_password,
};
pub use page::CSRF_HEADER;

use std::sync::Arc;

/// What the admin interface needs, built once at start-up (the admin pages
/// are a listener: they show and act on every feature).
pub struct Console {
    pub settings: Arc<crate::config::Settings>,
    pub store: store::Store,
    pub auth: Arc<crate::sessions::Auth>,
    pub sessions: crate::sessions::admin::AdminSessions,
    /// The API settings in force, which the API Configuration page changes.
    pub api: Arc<crate::apiconfig::ApiConfig>,
    pub live: crate::live::Hub,
    /// The PBX the pages show (none when `[asterisk]` is not configured).
    pub pbx: Option<PbxView>,
    pub channels: crate::channels::Channels,
    pub recordings: Arc<crate::recordings::Recordings>,
    pub calls: crate::callcontrol::CallControl,
    pub certs: Arc<crate::tls::InUse>,
    /// Turns true when shutdown begins: the Live page's event stream ends.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Admin password checks (argon2) running at once, at most `web.password_checks`.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Signs the login form's tokens (shared by the nodes of one database).
    pub admin_login_key: ucm::httpauth::NonceKey,
    pub started: std::time::Instant,
    /// CDR Real-Time Output's receivers (Status page).
    pub outbox: Arc<crate::outbox::Outbox>,
}

/// What the Status and Live pages show of the PBX's connections.
pub struct PbxView {
    pub ami: asterisk::ami::Ami,
    pub ari: Option<asterisk::ari::Ari>,
    pub ami_log: crate::health::ConnLog,
    pub ari_log: Option<crate::health::ConnLog>,
    pub ingest_stats: Arc<crate::ingest::Stats>,
    pub member: crate::cluster::Membership,
}

pub(crate) type App = Arc<Console>;
use page::{Admin, Page, redirect};

/// The routes under `/admin`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/", get(home))
        .merge(login::routes())
        .route("/admin/assets/{name}", get(assets::serve))
        .merge(apiconfig::routes())
        .merge(cdr::routes())
        .merge(live::routes())
        .merge(status::routes())
        .route("/admin", any(elsewhere))
        .route("/admin/{*rest}", any(elsewhere))
}

/// The home page is the status page.
async fn home(_admin: Admin) -> Response {
    redirect("/admin/status")
}

/// Any other path under `/admin`: the login page without a session, else not found.
async fn elsewhere(admin: Admin) -> Response {
    Page::new("Not found")
        .status(StatusCode::NOT_FOUND)
        .session(&admin.session, "")
        .render("<h2>Not found</h2><p><a href=\"/admin/\">Back to the admin home page</a>.</p>")
}
