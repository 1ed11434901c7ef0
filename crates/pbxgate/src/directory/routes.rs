//! listInboundRoute, listOutboundRoute.

use serde_json::Value;
use ucm::{Params, Status};

use crate::auth::{Authenticated, Refusal};
use crate::server::App;

pub async fn dispatch(
    _app: &App,
    action: &str,
    _params: &Params,
    _who: &Authenticated,
) -> Result<Value, Refusal> {
    Err(Refusal::Explained(
        Status::Unsupported,
        format!("{action} is not built yet"),
    ))
}
