//! Sessions, in one place:
//!
//! - `api`: the new API's challenge, login, session cookies (cached, shared
//!   through the database), login restriction; also the websocket's logins.
//! - `digest`: the old API's HTTP Digest/Basic authentication and its nonces.
//! - `admin`: the admin interface's sessions (database rows, idle expiry,
//!   CSRF token), used by `admin::login`.

pub mod admin;
pub mod api;
pub mod digest;

pub use api::{Auth, Authenticated, plausible_username};
