//! Who may use the HTTPS API: sessions, login challenges, the login guard.

mod challenges;
mod login_guard;
mod sessions;

pub use challenges::ChallengeStore;
pub use login_guard::{LoginAttempt, LoginGuardStore};
pub use sessions::{Session, SessionStore};
