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

use crate::server::App;
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
