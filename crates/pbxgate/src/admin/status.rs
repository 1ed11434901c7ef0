//! The Status page (`/admin/status`).

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::page::{Admin, Page};
use crate::server::App;

pub fn routes() -> Router<App> {
    Router::new().route("/admin/status", get(show))
}

async fn show(admin: Admin) -> Response {
    Page::new("Status")
        .session(&admin.session, "status")
        .scripts(&["common.js", "status.js"])
        .render("<h2>Status</h2><p>Not built yet.</p>")
}
