//! The Grandstream UCM wire protocol, without any I/O: the `/api` request and
//! response envelope, the status codes, lenient parameter access and the
//! challenge/token/cookie formats of the login flow, and the frames of the
//! event websocket.
//!
//! Everything here is pure so that it can be unit-tested and fuzzed alone.

pub mod actions;
pub mod auth;
pub mod cdr;
pub mod cdr_output;
pub mod cdrapi;
pub mod envelope;
pub mod httpauth;
pub mod pms;
pub mod recapi;
pub mod status;
pub mod websockify;

pub use envelope::{
    ParamError, Params, Request, encode_response, error_response, error_response_with,
    parse_request,
};
pub use status::Status;

/// One error type for the crate: everything that makes a request unusable.
/// All of them are answered with [`Status::InvalidParameters`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body has no \"request\" object")]
    MissingRequest,
    #[error("request has no \"action\" string")]
    MissingAction,
    #[error(transparent)]
    Param(#[from] ParamError),
}

impl Error {
    /// The UCM status code this error is answered with.
    pub fn status(&self) -> Status {
        Status::InvalidParameters
    }
}
