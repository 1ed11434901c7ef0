//! How each inbound call held by call control ended, and who decided.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;
use crate::states::state_enum;

state_enum! {
    /// How a held call ended (`call_decisions.outcome`).
    pub enum DecisionOutcome in "call_decisions.outcome" {
        Accepted = "accepted",
        Refused = "refused",
        /// Accepted by the timer: nobody decided in time.
        Timeout = "timeout",
        /// The caller hung up while held.
        Hangup = "hangup",
        /// Left the hold without pbxgate: Asterisk's own limit while pbxgate
        /// was away.
        Backstop = "backstop",
        /// The decision could not be applied (allowed by the schema since
        /// migration 0006; pbxgate does not write it today).
        Failed = "failed",
    }
}

/// How one inbound call held by call control ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDecision {
    pub held_at_ms: i64,
    pub decided_at_ms: i64,
    /// The channel name the API uses, e.g. `PJSIP/trunk-00000002`.
    pub channel: String,
    /// Asterisk's unique id of the channel.
    pub channel_id: String,
    pub caller: String,
    pub did: String,
    pub outcome: DecisionOutcome,
    /// The API user, or `timer`, `restart`, `asterisk`, `caller`.
    pub decided_by: String,
    /// Microseconds from the decision to Asterisk's confirmation.
    pub apply_us: i64,
    pub detail: String,
}

#[async_trait]
pub trait DecisionStore: Send + Sync {
    async fn record_decision(&self, decision: &CallDecision) -> Result<(), Error>;
    /// The newest `limit` decisions, newest first.
    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, Error>;
}

#[async_trait]
impl DecisionStore for Store {
    async fn record_decision(&self, d: &CallDecision) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO call_decisions (held_at_ms, decided_at_ms, channel, channel_id, caller, did, \
             outcome, decided_by, apply_us, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(d.held_at_ms).bind(d.decided_at_ms).bind(&d.channel).bind(&d.channel_id)
            .bind(&d.caller).bind(&d.did).bind(d.outcome.as_str()).bind(&d.decided_by)
            .bind(d.apply_us).bind(&d.detail)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, Error> {
        let rows = with_pool!(self, read pool => {
            let rows = sqlx::query(
                "SELECT held_at_ms, decided_at_ms, channel, channel_id, caller, did, outcome, \
                 decided_by, apply_us, detail FROM call_decisions ORDER BY id DESC LIMIT $1")
                .bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| -> Result<_, Error> {
                Ok(CallDecision {
                    held_at_ms: r.try_get(0)?,
                    decided_at_ms: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    channel_id: r.try_get(3)?,
                    caller: r.try_get(4)?,
                    did: r.try_get(5)?,
                    outcome: r.try_get::<&str, _>(6)?.parse()?,
                    decided_by: r.try_get(7)?,
                    apply_us: r.try_get(8)?,
                    detail: r.try_get(9)?,
                })
            }).collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}
