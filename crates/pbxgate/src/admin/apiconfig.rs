//! The API Configuration page (`/admin/api-config`).

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::page::{Admin, Page};
use crate::server::App;

pub fn routes() -> Router<App> {
    Router::new().route("/admin/api-config", get(show))
}

async fn show(admin: Admin) -> Response {
    Page::new("API Configuration")
        .session(&admin.session, "api")
        .scripts(&["common.js", "apiconfig.js"])
        .render("<h2>API Configuration</h2><p>Not built yet.</p>")
}
