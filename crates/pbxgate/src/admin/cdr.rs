//! The CDR page (`/admin/cdr`).

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::page::{Admin, Page};
use crate::server::App;

pub fn routes() -> Router<App> {
    Router::new().route("/admin/cdr", get(show))
}

async fn show(admin: Admin) -> Response {
    Page::new("CDR")
        .session(&admin.session, "cdr")
        .scripts(&["common.js", "cdr.js"])
        .render("<h2>CDR</h2><p>Not built yet.</p>")
}
