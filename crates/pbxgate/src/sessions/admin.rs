//! The admin interface's sessions: rows in the database (shared by the nodes
//! of one database), bound to the address they were issued to, ended after
//! `session.idle_timeout_secs` without a request.

use std::net::IpAddr;
use std::time::Duration;

use store::{AdminSession, AdminStore, Store};

use crate::clock::now_ms;

/// The admin sessions' handle.
#[derive(Clone)]
pub struct AdminSessions {
    store: Store,
    idle_timeout: Duration,
}

impl AdminSessions {
    pub fn new(store: Store, idle_timeout: Duration) -> AdminSessions {
        AdminSessions {
            store,
            idle_timeout,
        }
    }

    fn timeout_ms(&self) -> i64 {
        i64::try_from(self.idle_timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// The session `id` names when it is valid for a request from `ip`;
    /// slides its idle timeout.
    pub async fn current(
        &self,
        id: &str,
        ip: IpAddr,
    ) -> Result<Option<AdminSession>, store::Error> {
        let Some(mut s) = self.store.admin_session(id).await? else {
            return Ok(None);
        };
        let now = now_ms();
        if now.saturating_sub(s.last_seen_ms) > self.timeout_ms() {
            self.store.delete_admin_session(id).await?;
            return Ok(None);
        }
        if s.ip.parse::<IpAddr>().ok() != Some(ip) {
            tracing::warn!(user = %s.username, issued_to = %s.ip, used_from = %ip, "admin cookie refused: used from another address than it was issued to");
            return Ok(None);
        }
        if now - s.last_seen_ms >= 1_000 {
            self.store.touch_admin_session(id, now).await?;
            s.last_seen_ms = now;
        }
        Ok(Some(s))
    }

    pub async fn create(&self, session: &AdminSession) -> Result<(), store::Error> {
        self.store.create_admin_session(session).await
    }

    pub async fn end(&self, id: &str) -> Result<(), store::Error> {
        self.store.delete_admin_session(id).await.map(|_| ())
    }

    /// Drops sessions idle for longer than `session.idle_timeout_secs`.
    pub async fn prune(&self) -> Result<(), store::Error> {
        self.store
            .delete_idle_admin_sessions(now_ms().saturating_sub(self.timeout_ms()))
            .await?;
        Ok(())
    }
}
