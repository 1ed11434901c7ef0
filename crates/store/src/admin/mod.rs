//! The admin web interface's own data: accounts, sessions, saved settings.

mod accounts;
mod web_settings;

pub use accounts::{AdminSession, AdminStore};
pub use web_settings::{WebSettings, WebSettingsStore};
