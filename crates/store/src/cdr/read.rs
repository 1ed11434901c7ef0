//! Running the page, count and bucket queries of [`super::query`] and
//! reading their rows.

use sqlx::{Row, SqlSafeStr};

use super::query::{self, CallBucket, CdrFilter, CdrPage, Grouping, Order, PageKey, PageQuery};
use crate::connection::{Inner, Store, with_pool};
use crate::error::Error;

fn cdr_select_sql(tail: &str) -> String {
    let mut sql = String::from("SELECT acctid");
    for f in &ucm::cdr::FIELDS[1..] {
        sql.push_str(", \"");
        sql.push_str(f);
        sql.push('"');
    }
    sql.push_str(" FROM cdr ");
    sql.push_str(tail);
    sql
}

/// Binds `binds` (a `Vec<cdr_query::Bind>`) to `q` in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds.iter() {
            q = match b {
                $crate::cdr::query::Bind::Text(t) => q.bind(t.clone()),
                $crate::cdr::query::Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

impl Store {
    /// The database's plan of a query, one line per step.
    async fn plan_of(&self, sql: query::Sql) -> Result<String, Error> {
        let plan = match &self.inner {
            Inner::Sqlite { read, .. } => {
                let text = format!("EXPLAIN QUERY PLAN {}", sql.text);
                let rows = bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(text).into_sql_str()),
                    sql.binds
                )
                .fetch_all(read)
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(3))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Inner::Postgres(pool) => {
                let text = format!("EXPLAIN {}", sql.text);
                let rows = bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(text).into_sql_str()),
                    sql.binds
                )
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(plan.join("\n"))
    }
}

pub(super) async fn cdr_page(store: &Store, q: &PageQuery<'_>) -> Result<CdrPage, Error> {
    let sql = query::page_sql(store.backend(), q);
    let packed = with_pool!(store, read pool => {
        bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
            .fetch_one(pool).await?.try_get::<Option<String>, _>(0)?
    });
    Ok(CdrPage::from_packed(packed))
}

pub(super) async fn cdr_query_plan(store: &Store, q: &PageQuery<'_>) -> Result<String, Error> {
    store.plan_of(query::page_sql(store.backend(), q)).await
}

pub(super) async fn cdr_page_in(
    store: &Store,
    q: &PageQuery<'_>,
    order: Order,
) -> Result<CdrPage, Error> {
    let sql = query::page_sql_in(store.backend(), q, order);
    let packed = with_pool!(store, read pool => {
        bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
            .fetch_one(pool).await?.try_get::<Option<String>, _>(0)?
    });
    Ok(CdrPage::from_packed(packed))
}

pub(super) async fn cdr_entry_count(
    store: &Store,
    filter: &CdrFilter,
    grouping: Grouping,
) -> Result<u64, Error> {
    let sql = query::count_sql(store.backend(), filter, grouping);
    let n = with_pool!(store, read pool => {
        bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
            .fetch_one(pool).await?.try_get::<i64, _>(0)?
    });
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn cdr_call_buckets(
    store: &Store,
    filter: &CdrFilter,
    bucket_ms: i64,
) -> Result<Vec<CallBucket>, Error> {
    let sql = query::buckets_sql(store.backend(), filter, bucket_ms);
    let rows: Vec<(i64, i64, i64)> = with_pool!(store, read pool => {
        let rows = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
            .fetch_all(pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?
    });
    // Rows come in bucket order, answered (1) after unanswered (0).
    let mut out: Vec<CallBucket> = Vec::new();
    for (start_ms, answered, calls) in rows {
        let calls = u64::try_from(calls).unwrap_or(0);
        if out.last().is_none_or(|b| b.start_ms != start_ms) {
            out.push(CallBucket {
                start_ms,
                answered: 0,
                unanswered: 0,
            });
        }
        if let Some(b) = out.last_mut() {
            if answered != 0 {
                b.answered += calls;
            } else {
                b.unanswered += calls;
            }
        }
    }
    Ok(out)
}

pub(super) async fn cdr_browse_plans(
    store: &Store,
    q: &PageQuery<'_>,
) -> Result<Vec<(&'static str, String)>, Error> {
    use query::{buckets_sql, count_sql, page_sql_in};
    let b = store.backend();
    Ok(vec![
        (
            "newest page",
            store.plan_of(page_sql_in(b, q, Order::NewestFirst)).await?,
        ),
        (
            "entry count",
            store.plan_of(count_sql(b, q.filter, q.grouping)).await?,
        ),
        (
            "call buckets",
            store.plan_of(buckets_sql(b, q.filter, 900_000)).await?,
        ),
    ])
}

pub(super) async fn cdr_count(store: &Store) -> Result<i64, Error> {
    Ok(
        with_pool!(store, read pool => sqlx::query("SELECT COUNT(*) FROM cdr")
        .fetch_one(pool).await?.try_get::<i64, _>(0)?),
    )
}

pub(super) async fn recent_cdrs(
    store: &Store,
    limit: i64,
) -> Result<Vec<ucm::cdr::CdrRecord>, Error> {
    let sql = cdr_select_sql("ORDER BY acctid DESC LIMIT $1");
    let records = with_pool!(store, read pool => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
            .bind(limit).fetch_all(pool).await?;
        rows.iter().map(|r| -> Result<_, sqlx::Error> {
            let mut values = Vec::with_capacity(ucm::cdr::FIELDS.len());
            values.push(r.try_get::<i64, _>(0)?.to_string());
            for i in 1..ucm::cdr::FIELDS.len() {
                values.push(r.try_get::<String, _>(i)?);
            }
            Ok(ucm::cdr::CdrRecord::from_values(values))
        }).collect::<Result<Vec<_>, _>>()?
    });
    Ok(records)
}

/// One keyset page of legs after `after` (moved to the page's last leg);
/// true when it is the last page.
pub(super) async fn next_legs(
    store: &Store,
    filter: &CdrFilter,
    after: &mut Option<PageKey>,
    limit: u32,
) -> Result<(CdrPage, bool), Error> {
    let limit = limit.max(1);
    let page = cdr_page(
        store,
        &PageQuery {
            filter,
            grouping: Grouping::Legs,
            after: after.as_ref(),
            offset: 0,
            limit,
        },
    )
    .await?;
    let n = page.leg_count();
    if let Some(key) = page.last_key()? {
        *after = Some(key);
    }
    Ok((page, n < limit as usize))
}
