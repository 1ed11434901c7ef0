//! Wake-up calls of hotel rooms: booked by the PMS, claimed and dialled by
//! one pbxgate process at a time.

use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;
use crate::states::state_enum;

state_enum! {
    /// Where a wake-up call stands (`pms_wakeups.status`).
    pub enum WakeupStatus in "pms_wakeups.status" {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// Claimed by one pbxgate process, which is ringing the room.
        Dialing = "dialing",
        Answered = "answered",
        /// Every attempt was made, none answered.
        Failed = "failed",
        /// Cancelled by the PMS.
        Cancelled = "cancelled",
        /// Too late to place (pbxgate was away when it was due).
        Missed = "missed",
    }
}

impl WakeupStatus {
    /// Pending or dialing: not ended yet.
    pub fn is_open(self) -> bool {
        matches!(self, WakeupStatus::Pending | WakeupStatus::Dialing)
    }
}

/// A wake-up call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wakeup {
    pub id: i64,
    pub address: String,
    pub due_ms: i64,
    pub status: WakeupStatus,
    /// Calls placed so far.
    pub attempts: i64,
    /// How the last attempt ended: `answered`, `no answer`, `busy`, `failed`, ...
    pub outcome: String,
    pub next_attempt_ms: i64,
    /// The pbxgate process dialling it (status `dialing`).
    pub claimed_by: String,
    pub claim_until_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

macro_rules! wakeup_columns {
    () => {
        "id, address, due_ms, status, attempts, outcome, next_attempt_ms, claimed_by, \
         claim_until_ms, created_ms, updated_ms"
    };
}

fn wakeup_of<R: Row>(r: &R) -> Result<Wakeup, Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Wakeup {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        due_ms: r.try_get(2)?,
        status: r.try_get::<String, _>(3)?.parse()?,
        attempts: r.try_get(4)?,
        outcome: r.try_get(5)?,
        next_attempt_ms: r.try_get(6)?,
        claimed_by: r.try_get(7)?,
        claim_until_ms: r.try_get(8)?,
        created_ms: r.try_get(9)?,
        updated_ms: r.try_get(10)?,
    })
}

pub(super) async fn add_wakeup(
    store: &Store,
    address: &str,
    due_ms: i64,
    now_ms: i64,
) -> Result<Option<i64>, Error> {
    Ok(with_pool!(store, write pool => {
        sqlx::query(
            "INSERT INTO pms_wakeups (address, due_ms, status, attempts, outcome, next_attempt_ms, \
             claimed_by, claim_until_ms, created_ms, updated_ms) \
             VALUES ($1, $2, 'pending', 0, '', $2, '', 0, $3, $3) ON CONFLICT DO NOTHING RETURNING id")
            .bind(address).bind(due_ms).bind(now_ms)
            .fetch_optional(pool).await?
            .map(|r| r.try_get::<i64, _>(0)).transpose()?
    }))
}

pub(super) async fn wakeup(store: &Store, id: i64) -> Result<Option<Wakeup>, Error> {
    let sql = concat!(
        "SELECT ",
        wakeup_columns!(),
        " FROM pms_wakeups WHERE id = $1"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).bind(id).fetch_optional(pool).await?
            .map(|r| wakeup_of(&r)).transpose()?
    }))
}

pub(super) async fn wakeups_of(
    store: &Store,
    address: &str,
    from_ms: i64,
    limit: i64,
) -> Result<Vec<Wakeup>, Error> {
    let sql = concat!(
        "SELECT ",
        wakeup_columns!(),
        " FROM pms_wakeups WHERE address = $1 AND due_ms >= $2 \
         ORDER BY due_ms, id LIMIT $3"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).bind(address).bind(from_ms).bind(limit)
            .fetch_all(pool).await?
            .iter().map(wakeup_of).collect::<Result<Vec<_>, _>>()?
    }))
}

pub(super) async fn cancel_wakeups(
    store: &Store,
    address: &str,
    due_ms: Option<i64>,
    now_ms: i64,
) -> Result<u64, Error> {
    Ok(with_pool!(store, write pool => {
        sqlx::query(
            "UPDATE pms_wakeups SET status = 'cancelled', claimed_by = '', updated_ms = $3 \
             WHERE address = $1 AND status IN ('pending', 'dialing') AND ($2 < 0 OR due_ms = $2)")
            .bind(address).bind(due_ms.unwrap_or(-1)).bind(now_ms)
            .execute(pool).await?.rows_affected()
    }))
}

pub(super) async fn due_wakeups(
    store: &Store,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<Wakeup>, Error> {
    let sql = concat!(
        "SELECT ",
        wakeup_columns!(),
        " FROM pms_wakeups WHERE status = 'pending' \
         AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).bind(now_ms).bind(limit)
            .fetch_all(pool).await?
            .iter().map(wakeup_of).collect::<Result<Vec<_>, _>>()?
    }))
}

pub(super) async fn claim_wakeup(
    store: &Store,
    id: i64,
    node: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<Option<i64>, Error> {
    Ok(with_pool!(store, write pool => {
        sqlx::query(
            "UPDATE pms_wakeups SET status = 'dialing', attempts = attempts + 1, claimed_by = $2, \
             claim_until_ms = $4, updated_ms = $3 \
             WHERE id = $1 AND status = 'pending' AND next_attempt_ms <= $3 RETURNING attempts")
            .bind(id).bind(node).bind(now_ms).bind(until_ms)
            .fetch_optional(pool).await?
            .map(|r| r.try_get::<i64, _>(0)).transpose()?
    }))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn finish_wakeup(
    store: &Store,
    id: i64,
    node: &str,
    attempt: i64,
    status: WakeupStatus,
    outcome: &str,
    next_attempt_ms: i64,
    now_ms: i64,
) -> Result<bool, Error> {
    let n = with_pool!(store, write pool => {
        sqlx::query(
            "UPDATE pms_wakeups SET status = $4, outcome = $5, next_attempt_ms = $6, claimed_by = '', \
             claim_until_ms = 0, updated_ms = $7 \
             WHERE id = $1 AND status = 'dialing' AND claimed_by = $2 AND attempts = $3")
            .bind(id).bind(node).bind(attempt).bind(status.as_str()).bind(outcome)
            .bind(next_attempt_ms).bind(now_ms)
            .execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

pub(super) async fn miss_wakeup(store: &Store, id: i64, now_ms: i64) -> Result<bool, Error> {
    let n = with_pool!(store, write pool => {
        sqlx::query(
            "UPDATE pms_wakeups SET status = 'missed', outcome = 'missed', updated_ms = $2 \
             WHERE id = $1 AND status = 'pending'")
            .bind(id).bind(now_ms)
            .execute(pool).await?.rows_affected()
    });
    Ok(n == 1)
}

pub(super) async fn release_stale_wakeups(
    store: &Store,
    now_ms: i64,
    max_attempts: i64,
) -> Result<u64, Error> {
    Ok(with_pool!(store, write pool => {
        sqlx::query(
            "UPDATE pms_wakeups SET \
             status = CASE WHEN attempts >= $2 THEN 'failed' ELSE 'pending' END, \
             outcome = 'interrupted', next_attempt_ms = $1, claimed_by = '', claim_until_ms = 0, \
             updated_ms = $1 \
             WHERE status = 'dialing' AND claim_until_ms < $1")
            .bind(now_ms).bind(max_attempts)
            .execute(pool).await?.rows_affected()
    }))
}
