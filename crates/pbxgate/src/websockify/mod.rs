//! `/websockify`: the UCM's event websocket (challenge, login, subscribe,
//! heartbeat, `notify` frames). Not built yet.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub async fn handle() -> Response {
    StatusCode::NOT_IMPLEMENTED.into_response()
}
