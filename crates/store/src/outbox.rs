//! The CDR outbox (CDR Real-Time Output): per receiver, the stored CDRs still
//! to push, in the order they were stored. Rows are queued in the
//! transaction that stores the CDRs (`CdrStore::insert_cdrs_queued`), so
//! nothing is pushed that was not stored and nothing stored is missed; a row
//! goes when its receiver confirmed it, or when the quota drops it. One
//! process at a time delivers to a receiver: it holds the receiver's lease,
//! which another takes over once it lapses.

use async_trait::async_trait;
use sqlx::{Row, SqlSafeStr};

use crate::connection::{Store, with_pool};
use crate::error::Error;

/// One queued CDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    /// The stored CDR (`cdr.acctid`).
    pub acctid: i64,
    pub queued_ms: i64,
    /// Failed attempts so far.
    pub attempts: i64,
    /// Not to be tried before this time.
    pub next_ms: i64,
}

/// A receiver's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub items: u64,
    /// When the oldest item was queued.
    pub oldest_ms: Option<i64>,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes or renews `receiver`'s lease for `holder` until `now_ms +
    /// ttl_ms`; false while another holder's lease runs.
    async fn outbox_lease(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, Error>;

    /// Gives the lease up (at shutdown), so another process need not wait.
    async fn outbox_release(&self, receiver: &str, holder: &str) -> Result<(), Error>;

    /// The oldest `limit` items of `receiver`, in order; none while the
    /// oldest waits out its backoff (nothing overtakes it).
    async fn outbox_due(
        &self,
        receiver: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error>;

    /// Delivered: removes `ids`, only while `holder` holds the lease at
    /// `now_ms` (a holder whose lease lapsed must not confirm for the next).
    /// Returns how many were removed.
    async fn outbox_delivered(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: i64,
        ids: &[i64],
    ) -> Result<u64, Error>;

    /// A failed attempt on `ids`: counted, not retried before `next_ms`.
    async fn outbox_failed(
        &self,
        receiver: &str,
        ids: &[i64],
        next_ms: i64,
        error: &str,
    ) -> Result<(), Error>;

    /// As [`OutboxStore::outbox_due`], with each item's stored CDR: its 43
    /// UCM values in `ucm::cdr::FIELDS` order (`AcctId` first), what the
    /// framing (`ucm::cdr_output`) sends. An item whose CDR is gone (deleted
    /// by hand) comes without values.
    async fn outbox_records(
        &self,
        receiver: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(OutboxItem, Option<Vec<String>>)>, Error>;

    async fn outbox_backlog(&self, receiver: &str) -> Result<Backlog, Error>;

    /// Every receiver with queued items, and its backlog (by name).
    async fn outbox_receivers(&self) -> Result<Vec<(String, Backlog)>, Error>;

    /// Queues again for `receiver` every stored CDR whose call started in
    /// `[from_ms, to_ms)` (UTC ms), in stored order, behind what is queued
    /// (a billing system that lost a day asks for it again). Returns how
    /// many were queued.
    async fn outbox_replay(
        &self,
        receiver: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<u64, Error>;

    /// Drops the oldest items beyond the newest `max_items`, and those queued
    /// before `before_ms`. Returns how many were dropped (the caller audits
    /// and logs them: never silently).
    async fn outbox_trim(
        &self,
        receiver: &str,
        max_items: u64,
        before_ms: i64,
    ) -> Result<u64, Error>;
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ids per statement that lists them (well under SQLite's parameter limit).
const IDS_PER_STATEMENT: usize = 1000;

#[async_trait]
impl OutboxStore for Store {
    async fn outbox_lease(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let taken = with_pool!(self, write pool => {
            sqlx::query(
                "INSERT INTO cdr_outbox_leases (receiver, holder, expires_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (receiver) DO UPDATE SET holder = excluded.holder, \
                 expires_ms = excluded.expires_ms \
                 WHERE cdr_outbox_leases.holder = excluded.holder \
                 OR cdr_outbox_leases.expires_ms <= $4",
            )
            .bind(receiver)
            .bind(holder)
            .bind(now_ms.saturating_add(ttl_ms))
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }

    async fn outbox_release(&self, receiver: &str, holder: &str) -> Result<(), Error> {
        with_pool!(self, write pool => {
            sqlx::query("DELETE FROM cdr_outbox_leases WHERE receiver = $1 AND holder = $2")
                .bind(receiver)
                .bind(holder)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    async fn outbox_due(
        &self,
        receiver: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error> {
        let items = with_pool!(self, read pool => {
            sqlx::query(
                "SELECT id, acctid, queued_ms, attempts, next_ms FROM cdr_outbox \
                 WHERE receiver = $1 ORDER BY id LIMIT $2",
            )
            .bind(receiver)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.try_get(0)?,
                    acctid: r.try_get(1)?,
                    queued_ms: r.try_get(2)?,
                    attempts: r.try_get::<i64, _>(3)?,
                    next_ms: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?
        });
        if items.first().is_some_and(|i| i.next_ms > now_ms) {
            return Ok(Vec::new());
        }
        Ok(items)
    }

    async fn outbox_delivered(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: i64,
        ids: &[i64],
    ) -> Result<u64, Error> {
        let mut removed = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM cdr_outbox WHERE receiver = $1 AND id IN ({}) \
                 AND EXISTS (SELECT 1 FROM cdr_outbox_leases l WHERE l.receiver = $1 \
                 AND l.holder = $2 AND l.expires_ms > $3)",
                placeholders(4, chunk.len())
            );
            removed += with_pool!(self, write pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                    .bind(receiver)
                    .bind(holder)
                    .bind(now_ms);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(pool).await?.rows_affected()
            });
        }
        Ok(removed)
    }

    async fn outbox_failed(
        &self,
        receiver: &str,
        ids: &[i64],
        next_ms: i64,
        error: &str,
    ) -> Result<(), Error> {
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE cdr_outbox SET attempts = attempts + 1, next_ms = $2, last_error = $3 \
                 WHERE receiver = $1 AND id IN ({})",
                placeholders(4, chunk.len())
            );
            with_pool!(self, write pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                    .bind(receiver)
                    .bind(next_ms)
                    .bind(error);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(pool).await?.rows_affected()
            });
        }
        Ok(())
    }

    async fn outbox_records(
        &self,
        receiver: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(OutboxItem, Option<Vec<String>>)>, Error> {
        let items = self.outbox_due(receiver, now_ms, limit).await?;
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let last = items.last().map_or(first.id, |i| i.id);
        let mut sql = String::from("SELECT o.id, CAST(c.acctid AS TEXT)");
        for f in &ucm::cdr::FIELDS[1..] {
            sql.push_str(&format!(", c.\"{f}\""));
        }
        sql.push_str(
            " FROM cdr_outbox o JOIN cdr c ON c.acctid = o.acctid \
             WHERE o.receiver = $1 AND o.id BETWEEN $2 AND $3",
        );
        let mut values: std::collections::HashMap<i64, Vec<String>> = with_pool!(self, read pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
                .bind(receiver)
                .bind(first.id)
                .bind(last)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let id: i64 = r.try_get(0)?;
                    let v = (1..=ucm::cdr::FIELDS.len())
                        .map(|i| r.try_get::<String, _>(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((id, v))
                })
                .collect::<Result<_, Error>>()?
        });
        Ok(items
            .into_iter()
            .map(|i| {
                let v = values.remove(&i.id);
                (i, v)
            })
            .collect())
    }

    async fn outbox_backlog(&self, receiver: &str) -> Result<Backlog, Error> {
        let (items, oldest_ms) = with_pool!(self, read pool => {
            let r = sqlx::query(
                "SELECT COUNT(*), MIN(queued_ms) FROM cdr_outbox WHERE receiver = $1",
            )
            .bind(receiver)
            .fetch_one(pool)
            .await?;
            (r.try_get::<i64, _>(0)?, r.try_get::<Option<i64>, _>(1)?)
        });
        Ok(Backlog {
            items: u64::try_from(items).unwrap_or(0),
            oldest_ms,
        })
    }

    async fn outbox_receivers(&self) -> Result<Vec<(String, Backlog)>, Error> {
        let rows = with_pool!(self, read pool => {
            sqlx::query(
                "SELECT receiver, COUNT(*), MIN(queued_ms) FROM cdr_outbox \
                 GROUP BY receiver ORDER BY receiver",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let items: i64 = r.try_get(1)?;
                Ok((
                    r.try_get::<String, _>(0)?,
                    Backlog {
                        items: u64::try_from(items).unwrap_or(0),
                        oldest_ms: r.try_get::<Option<i64>, _>(2)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?
        });
        Ok(rows)
    }

    async fn outbox_replay(
        &self,
        receiver: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<u64, Error> {
        let queued = with_pool!(self, write pool => {
            sqlx::query(
                "INSERT INTO cdr_outbox (receiver, acctid, queued_ms) \
                 SELECT $1, acctid, $4 FROM cdr WHERE start_ms >= $2 AND start_ms < $3 \
                 ORDER BY acctid",
            )
            .bind(receiver)
            .bind(from_ms)
            .bind(to_ms)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(queued)
    }

    async fn outbox_trim(
        &self,
        receiver: &str,
        max_items: u64,
        before_ms: i64,
    ) -> Result<u64, Error> {
        let keep = i64::try_from(max_items).unwrap_or(i64::MAX);
        let dropped = with_pool!(self, write pool => {
            sqlx::query(
                "DELETE FROM cdr_outbox WHERE receiver = $1 AND (queued_ms < $2 OR id <= \
                 (SELECT id FROM cdr_outbox WHERE receiver = $1 ORDER BY id DESC \
                 LIMIT 1 OFFSET $3))",
            )
            .bind(receiver)
            .bind(before_ms)
            .bind(keep)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(dropped)
    }
}
