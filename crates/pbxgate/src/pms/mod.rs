//! The hotel PMS API (`pmsapi`, spec §7): check-in/out, guest data, class of
//! service, DND, wake-up calls, room status, message waiting — applied on
//! Asterisk. Not built yet.

use axum::response::Response;
use ucm::{Params, Status};

use crate::auth::{Authenticated, Refusal};
use crate::server::App;

/// `action: "pmsapi"` on `/api`.
pub async fn api(_app: &App, _params: &Params, _user: &Authenticated) -> Result<Response, Refusal> {
    Err(Refusal::Status(Status::Unsupported))
}

/// `GET /pmsapi?token=…&format=…&data=…` on the old listener, once its HTTP
/// authentication and permitted IPs have passed: the query's pairs in order.
pub async fn old_api(_app: &App, _query: &[(String, String)]) -> Response {
    use axum::response::IntoResponse;
    axum::http::StatusCode::NOT_IMPLEMENTED.into_response()
}
