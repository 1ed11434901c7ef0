//! pbxgate: an HTTPS API server that gives an Asterisk PBX the API of a
//! Grandstream UCM630X.
//!
//! Layout: `admin` (the admin web interface under `/admin/`), `apiconfig` (the API
//! settings in force: file plus admin page, live), `config` (file, env overrides, validation), `acl` (permitted IPs),
//! `sessions` (API, admin and old-API Digest sessions), `api` (the `/api`
//! envelope and dispatcher), `system` (status actions), `cdrapi`, `recordings`
//! (recapi), `callcontrol` (Stasis hold, acceptCall/refuseCall),
//! `live` + `websockify` (call events), `channels` (channel actions), `tls`,
//! `recent` (the latest API requests, for the admin Status page), `server`.

pub mod acl;
pub mod admin;
pub mod api;
pub mod apiconfig;
pub mod callcontrol;
pub mod cdrapi;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod error;
pub mod files;
pub mod health;
pub mod host;
pub mod ingest;
#[cfg(test)]
mod layers;
pub mod legacy;
pub mod listing;
pub mod live;
pub mod net;
pub mod outbox;
pub mod pbxcheck;
pub mod permissions;
pub mod pms;
mod random;
pub mod recent;
pub mod recordings;
pub mod server;
pub mod sessions;
mod settings_audit;
pub mod system;
pub mod tls;
pub mod websockify;

pub use error::Error;
