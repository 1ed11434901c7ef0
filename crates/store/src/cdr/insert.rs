//! Storing batches of CDRs: multi-row inserts on SQLite, one UNNEST
//! statement per chunk on PostgreSQL, and the session index beside them.

use sqlx::{Row, SqlSafeStr};

use super::query::{self, SESSION, needs_cleaning};
use super::record::NewCdr;
use crate::connection::{Inner, Store};
use crate::error::Error;

/// Rows per multi-row INSERT on SQLite: 46 bound values each, under its
/// default limit of 32,766 parameters per statement.
const CDR_ROWS_PER_STATEMENT: usize = 200;

/// The column list of an insert: `dedupe_key, start_ms, call_ms, end_ms, "accountcode", ...`.
fn cdr_insert_columns() -> String {
    let mut cols = String::from("INSERT INTO cdr (dedupe_key, start_ms, call_ms, end_ms");
    for f in &ucm::cdr::FIELDS[1..] {
        cols.push_str(", \"");
        cols.push_str(f);
        cols.push('"');
    }
    cols.push(')');
    cols
}

/// SQLite: `INSERT ... VALUES (?, ...), ...` for `rows` rows. Anonymous `?`
/// placeholders: sqlx-sqlite resolves `$N` by name, a linear search per
/// parameter, which made an 8,800-parameter statement cost more than its rows.
fn cdr_insert_sql_sqlite(rows: usize) -> String {
    let per_row = 4 + ucm::cdr::FIELDS.len() - 1;
    let mut row = String::from("(?");
    for _ in 1..per_row {
        row.push_str(", ?");
    }
    row.push(')');
    // OR IGNORE rather than ON CONFLICT DO NOTHING: with no constraint left
    // that can abort the statement, SQLite skips the statement journal it
    // otherwise writes (to a temporary file) for every page a multi-row
    // INSERT touches. Only the dedupe_key can conflict; no value is NULL.
    let mut sql = cdr_insert_columns().replacen("INSERT", "INSERT OR IGNORE", 1);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// PostgreSQL: one statement per chunk whatever its size, each column bound
/// as one array and unnested in the select list (a ProjectSet, which streams
/// rows, where `FROM UNNEST(...)` would first materialise them); rows keep the
/// chunk's order, so AcctIds follow it.
fn cdr_insert_sql_postgres() -> String {
    let mut sql = cdr_insert_columns();
    sql.push_str(
        " SELECT unnest($1::text[]), unnest($2::bigint[]), unnest($3::bigint[]), unnest($4::bigint[])",
    );
    for i in 1..ucm::cdr::FIELDS.len() {
        sql.push_str(&format!(", unnest(${}::text[])", i + 4));
    }
    // (dedupe_key, start_ms): the partitioned table's constraint (migration 0015).
    sql.push_str(" ON CONFLICT (dedupe_key, start_ms) DO NOTHING");
    sql
}

/// The distinct (call_ms, session) entries of a batch, for `cdr_session`
/// (migration 0005), in key order.
fn session_pairs(batch: &[NewCdr]) -> Vec<(i64, &str)> {
    let mut pairs: Vec<(i64, &str)> = batch
        .iter()
        .map(|c| (c.call_ms, c.record.values()[SESSION].as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The distinct entries of a batch with the first and last start of their
/// legs in it, for PostgreSQL's `cdr_session` (migration 0015: the legs of an
/// entry are fetched from the monthly partitions of that range only).
fn session_ranges(batch: &[NewCdr]) -> Vec<(i64, &str, i64, i64)> {
    let mut legs: Vec<(i64, &str, i64)> = batch
        .iter()
        .map(|c| (c.call_ms, c.record.values()[SESSION].as_str(), c.start_ms))
        .collect();
    legs.sort_unstable();
    let mut out: Vec<(i64, &str, i64, i64)> = Vec::new();
    for (call, session, start) in legs {
        match out.last_mut() {
            Some(last) if last.0 == call && last.1 == session => last.3 = start,
            _ => out.push((call, session, start, start)),
        }
    }
    out
}

/// Entries per `cdr_session` insert on SQLite (two parameters each).
const CDR_SESSION_ROWS_PER_STATEMENT: usize = 2000;

/// Outbox rows per insert on SQLite (three parameters each).
const OUTBOX_ROWS_PER_STATEMENT: usize = 2000;

/// Rows per UNNEST statement on PostgreSQL: a batch is cut in a few
/// statements so that encoding one overlaps the execution of the previous.
const CDR_ROWS_PER_UNNEST: usize = 500;

fn unnest_query(
    chunk: &[NewCdr],
    returning: &str,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut columns: Vec<Vec<&str>> = (1..ucm::cdr::FIELDS.len())
        .map(|_| Vec::with_capacity(chunk.len()))
        .collect();
    for c in chunk {
        for (column, v) in columns.iter_mut().zip(&c.record.values()[1..]) {
            column.push(v.as_str());
        }
    }
    let keys: Vec<&str> = chunk.iter().map(|c| c.dedupe_key.as_str()).collect();
    let starts: Vec<i64> = chunk.iter().map(|c| c.start_ms).collect();
    let calls: Vec<i64> = chunk.iter().map(|c| c.call_ms).collect();
    let ends: Vec<i64> = chunk.iter().map(|c| c.end_ms).collect();
    let sql = format!("{}{returning}", cdr_insert_sql_postgres());
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
        .bind(keys)
        .bind(starts)
        .bind(calls)
        .bind(ends);
    for column in columns {
        q = q.bind(column);
    }
    q
}

/// Receivers whose outbox gets the newly stored rows, and the time they are
/// queued at.
pub(super) struct Queue<'a> {
    pub receivers: &'a [String],
    pub now_ms: i64,
}

pub(super) async fn insert_cdrs(
    store: &Store,
    batch: &[NewCdr],
    queue: Option<Queue<'_>>,
) -> Result<u64, Error> {
    if batch.is_empty() {
        return Ok(0);
    }
    let queue = queue.filter(|q| !q.receivers.is_empty());
    // Page separators are replaced (see cdr_query); copying only the
    // rare batch that holds one keeps the common path copy-free.
    let cleaned: Vec<NewCdr>;
    let batch = if batch.iter().any(needs_cleaning) {
        cleaned = batch.iter().map(query::cleaned).collect();
        &cleaned[..]
    } else {
        batch
    };
    let inserted = match &store.inner {
        Inner::Sqlite { write, .. } => {
            // `returning`: "" or " RETURNING acctid" (the stored rows' ids).
            let build = |chunk: &[NewCdr], returning: &str| {
                let sql = format!("{}{returning}", cdr_insert_sql_sqlite(chunk.len()));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str());
                for c in chunk {
                    q = q
                        .bind(c.dedupe_key.as_str())
                        .bind(c.start_ms)
                        .bind(c.call_ms)
                        .bind(c.end_ms);
                    for v in &c.record.values()[1..] {
                        q = q.bind(v.as_str());
                    }
                }
                q
            };
            let mut tx = write.begin().await?;
            let mut n = 0;
            if let Some(queue) = &queue {
                // The ids of the rows this batch stored (not those skipped
                // as already stored) go to the outbox in this transaction.
                let mut ids = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(CDR_ROWS_PER_STATEMENT) {
                    for row in build(chunk, " RETURNING acctid")
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        ids.push(row.try_get::<i64, _>(0)?);
                    }
                }
                n = ids.len() as u64;
                ids.sort_unstable();
                for receiver in queue.receivers {
                    for chunk in ids.chunks(OUTBOX_ROWS_PER_STATEMENT) {
                        let mut sql = String::from(
                            "INSERT INTO cdr_outbox (receiver, acctid, queued_ms) VALUES (?, ?, ?)",
                        );
                        for _ in 1..chunk.len() {
                            sql.push_str(", (?, ?, ?)");
                        }
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str());
                        for id in chunk {
                            q = q.bind(receiver.as_str()).bind(*id).bind(queue.now_ms);
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
            } else {
                let mut chunks = batch.chunks(CDR_ROWS_PER_STATEMENT);
                let mut next = chunks.next().map(|c| build(c, ""));
                // Binding copies every value; that is done for the next
                // statement while SQLite's worker thread runs this one.
                while let Some(q) = next.take() {
                    let (done, following) = tokio::join!(q.execute(&mut *tx), async {
                        chunks.next().map(|c| build(c, ""))
                    });
                    n += done?.rows_affected();
                    next = following;
                }
            }
            let pairs = session_pairs(batch);
            for chunk in pairs.chunks(CDR_SESSION_ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "INSERT OR IGNORE INTO cdr_session (call_ms, \"session\") VALUES (?, ?)",
                );
                for _ in 1..chunk.len() {
                    sql.push_str(", (?, ?)");
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str());
                for (call_ms, session) in chunk {
                    q = q.bind(*call_ms).bind(*session);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n
        }
        Inner::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let mut n = 0;
            if let Some(queue) = &queue {
                // As on SQLite: the stored rows' ids, queued in this transaction.
                let mut ids = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(CDR_ROWS_PER_UNNEST) {
                    for row in unnest_query(chunk, " RETURNING acctid")
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        ids.push(row.try_get::<i64, _>(0)?);
                    }
                }
                n = ids.len() as u64;
                ids.sort_unstable();
                for receiver in queue.receivers {
                    sqlx::query(
                        "INSERT INTO cdr_outbox (receiver, acctid, queued_ms) \
                         SELECT $1, unnest($2::bigint[]), $3",
                    )
                    .bind(receiver.as_str())
                    .bind(&ids)
                    .bind(queue.now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            } else {
                let mut chunks = batch.chunks(CDR_ROWS_PER_UNNEST);
                let mut next = chunks.next().map(|c| unnest_query(c, ""));
                // Encoding the arrays of the next statement overlaps the
                // server's work on this one.
                while let Some(q) = next.take() {
                    let (done, following) = tokio::join!(q.execute(&mut *tx), async {
                        chunks.next().map(|c| unnest_query(c, ""))
                    });
                    n += done?.rows_affected();
                    next = following;
                }
            }
            let ranges = session_ranges(batch);
            let calls: Vec<i64> = ranges.iter().map(|r| r.0).collect();
            let sessions: Vec<&str> = ranges.iter().map(|r| r.1).collect();
            let firsts: Vec<i64> = ranges.iter().map(|r| r.2).collect();
            let lasts: Vec<i64> = ranges.iter().map(|r| r.3).collect();
            // An entry already known only widens its range (rarely: a leg
            // stored in a later batch than its entry's first).
            sqlx::query(
                "INSERT INTO cdr_session (call_ms, \"session\", min_start_ms, max_start_ms) \
                 SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::bigint[]) \
                 ON CONFLICT (call_ms, \"session\") DO UPDATE SET \
                 min_start_ms = LEAST(cdr_session.min_start_ms, excluded.min_start_ms), \
                 max_start_ms = GREATEST(cdr_session.max_start_ms, excluded.max_start_ms) \
                 WHERE excluded.min_start_ms < cdr_session.min_start_ms \
                 OR excluded.max_start_ms > cdr_session.max_start_ms",
            )
            .bind(calls)
            .bind(sessions)
            .bind(firsts)
            .bind(lasts)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            n
        }
    };
    Ok(inserted)
}
