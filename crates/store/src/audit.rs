//! The audit trail: logins, logouts, settings changes, admin actions.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;
use crate::states::state_enum;

state_enum! {
    /// What an audit event is about (`audit_log.event`).
    pub enum AuditEventKind in "audit_log.event" {
        /// A login to the HTTPS API or the admin web interface.
        Login = "login",
        Logout = "logout",
        /// An address banned after repeated failed logins.
        LoginRestriction = "login-restriction",
        /// Settings changed (API, admin web interface or a reload).
        Settings = "settings",
        /// An admin account's password set from the command line.
        AdminPassword = "admin-password",
        /// A call action taken from the admin web interface.
        AdminCall = "admin-call",
        /// CDR Real-Time Output: queued CDRs dropped by the quota, a replay.
        CdrOutput = "cdr-output",
    }
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub event: AuditEventKind,
    pub username: String,
    pub ip: String,
    /// `ok`, `wrong-password`, `ip-not-permitted`, `changed`, ...
    pub result: String,
    pub detail: String,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), Error>;
    /// The newest `limit` events, newest first.
    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEvent>, Error>;
}

#[async_trait]
impl AuditStore for Store {
    async fn record_audit(&self, e: &AuditEvent) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO audit_log (at_ms, event, username, ip, result, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(e.at_ms).bind(e.event.as_str()).bind(&e.username).bind(&e.ip).bind(&e.result).bind(&e.detail)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEvent>, Error> {
        let events = with_pool!(self, read pool => {
            let rows = sqlx::query(
                "SELECT at_ms, event, username, ip, result, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                .bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| -> Result<_, Error> {
                Ok(AuditEvent {
                    at_ms: r.try_get(0)?,
                    event: r.try_get::<&str, _>(1)?.parse()?,
                    username: r.try_get(2)?,
                    ip: r.try_get(3)?,
                    result: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            }).collect::<Result<Vec<_>, _>>()?
        });
        Ok(events)
    }
}
