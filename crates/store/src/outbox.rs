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

/// The lowest and highest of `ids`: bounds that let both databases read the
/// `(receiver, id)` index as a range instead of matching every row against
/// the list (PostgreSQL chose a scan of the whole outbox per delivery).
fn id_range(ids: &[i64]) -> (i64, i64) {
    let lo = ids.iter().min().copied().unwrap_or(0);
    let hi = ids.iter().max().copied().unwrap_or(0);
    (lo, hi)
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
                "DELETE FROM cdr_outbox WHERE receiver = $1 AND id BETWEEN $4 AND $5 \
                 AND id IN ({}) AND EXISTS (SELECT 1 FROM cdr_outbox_leases l \
                 WHERE l.receiver = $1 AND l.holder = $2 AND l.expires_ms > $3)",
                placeholders(6, chunk.len())
            );
            let (lo, hi) = id_range(chunk);
            removed += with_pool!(self, write pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                    .bind(receiver)
                    .bind(holder)
                    .bind(now_ms)
                    .bind(lo)
                    .bind(hi);
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
                 WHERE receiver = $1 AND id BETWEEN $4 AND $5 AND id IN ({})",
                placeholders(6, chunk.len())
            );
            let (lo, hi) = id_range(chunk);
            with_pool!(self, write pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                    .bind(receiver)
                    .bind(next_ms)
                    .bind(error)
                    .bind(lo)
                    .bind(hi);
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
        // One query: the oldest items with their CDRs (none when the CDR was
        // deleted), in queue order.
        let mut sql = String::from(
            "SELECT o.id, o.acctid, o.queued_ms, o.attempts, o.next_ms, CAST(c.acctid AS TEXT)",
        );
        for f in &ucm::cdr::FIELDS[1..] {
            sql.push_str(&format!(", c.\"{f}\""));
        }
        sql.push_str(
            " FROM (SELECT id, acctid, queued_ms, attempts, next_ms FROM cdr_outbox \
             WHERE receiver = $1 ORDER BY id LIMIT $2) o \
             LEFT JOIN cdr c ON c.acctid = o.acctid ORDER BY o.id",
        );
        let rows = with_pool!(self, read pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
                .bind(receiver)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let item = OutboxItem {
                        id: r.try_get(0)?,
                        acctid: r.try_get(1)?,
                        queued_ms: r.try_get(2)?,
                        attempts: r.try_get::<i64, _>(3)?,
                        next_ms: r.try_get(4)?,
                    };
                    let values = match r.try_get::<Option<String>, _>(5)? {
                        None => None,
                        Some(acctid) => {
                            let mut v = Vec::with_capacity(ucm::cdr::FIELDS.len());
                            v.push(acctid);
                            for i in 6..5 + ucm::cdr::FIELDS.len() {
                                v.push(r.try_get::<String, _>(i)?);
                            }
                            Some(v)
                        }
                    };
                    Ok((item, values))
                })
                .collect::<Result<Vec<_>, Error>>()?
        });
        // Nothing overtakes an oldest item that waits out its backoff.
        if rows.first().is_some_and(|(i, _)| i.next_ms > now_ms) {
            return Ok(Vec::new());
        }
        Ok(rows)
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
