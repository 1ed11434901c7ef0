//! The Live calls page (`/admin/live`).

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::page::{Admin, Page};
use crate::server::App;

pub fn routes() -> Router<App> {
    Router::new().route("/admin/live", get(show))
}

async fn show(admin: Admin) -> Response {
    Page::new("Live calls")
        .session(&admin.session, "live")
        .scripts(&["common.js", "live.js"])
        .render("<h2>Live calls</h2><p>Not built yet.</p>")
}
