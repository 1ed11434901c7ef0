//! How each inbound call held by call control ended, and who decided.

use async_trait::async_trait;
use sqlx::{Row, SqlSafeStr};

use crate::cluster::now_sql;
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

/// The answer to a claim of the decision on a held call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This claim is the one: apply the decision.
    Won,
    /// Another claim came first: `node` decided `decision`.
    Taken { node: String, decision: String },
    /// The node no longer holds the lease it claimed under.
    Fenced,
}

#[async_trait]
pub trait DecisionStore: Send + Sync {
    async fn record_decision(&self, decision: &CallDecision) -> Result<(), Error>;
    /// The newest `limit` decisions, newest first.
    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, Error>;
    /// Claims the one decision on the held call `channel_id` for `node`
    /// (cluster-wide: the first claim wins). With `fence` (`pbx`, `epoch`)
    /// the claim only counts while `node` holds that lease of `pbx`.
    async fn claim_call(
        &self,
        channel_id: &str,
        node: &str,
        decision: &str,
        fence: Option<(&str, i64)>,
    ) -> Result<Claim, Error>;
    /// Withdraws `node`'s claim (Asterisk did not apply the decision).
    async fn unclaim_call(&self, channel_id: &str, node: &str) -> Result<(), Error>;
    /// Who claimed the decision on `channel_id`, and what.
    async fn call_claim(&self, channel_id: &str) -> Result<Option<(String, String)>, Error>;
    /// Forgets claims older than `before_ms` (the calls are long over).
    async fn prune_claims(&self, before_ms: i64) -> Result<u64, Error>;
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

    async fn claim_call(
        &self,
        channel_id: &str,
        node: &str,
        decision: &str,
        fence: Option<(&str, i64)>,
    ) -> Result<Claim, Error> {
        let now = now_sql(self.backend());
        let (pbx, epoch) = fence.unwrap_or(("", 0));
        let sql = format!(
            "INSERT INTO call_claims (channel_id, node, decision, claimed_ms) \
             SELECT $1, $2, $3, {now} WHERE $4 = '' OR EXISTS (SELECT 1 FROM pbx_owners \
             WHERE pbx = $4 AND node = $2 AND epoch = $5 AND expires_ms > {now}) \
             ON CONFLICT (channel_id) DO NOTHING"
        );
        let won = with_pool!(self, write pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()).into_sql_str())
            .bind(channel_id).bind(node).bind(decision).bind(pbx).bind(epoch)
            .execute(pool).await?.rows_affected());
        if won == 1 {
            return Ok(Claim::Won);
        }
        Ok(match self.call_claim(channel_id).await? {
            Some((node, decision)) => Claim::Taken { node, decision },
            None => Claim::Fenced,
        })
    }

    async fn unclaim_call(&self, channel_id: &str, node: &str) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "DELETE FROM call_claims WHERE channel_id = $1 AND node = $2")
            .bind(channel_id).bind(node)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn call_claim(&self, channel_id: &str) -> Result<Option<(String, String)>, Error> {
        // The writer: a claim just taken must be seen (SQLite's reader may lag).
        let row = with_pool!(self, write pool => sqlx::query(
            "SELECT node, decision FROM call_claims WHERE channel_id = $1")
            .bind(channel_id)
            .fetch_optional(pool).await?
            .map(|r| -> Result<(String, String), Error> { Ok((r.try_get(0)?, r.try_get(1)?)) }));
        row.transpose()
    }

    async fn prune_claims(&self, before_ms: i64) -> Result<u64, Error> {
        let n = with_pool!(self, write pool => sqlx::query(
            "DELETE FROM call_claims WHERE claimed_ms < $1")
            .bind(before_ms)
            .execute(pool).await?.rows_affected());
        Ok(n)
    }
}
