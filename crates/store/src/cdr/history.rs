//! Years of CDR history: on PostgreSQL the table is partitioned by month of
//! `start_ms` (UTC, migration 0015), partitions are made ahead of time, and
//! retention drops whole months; SQLite keeps one table and deletes rows.

use async_trait::async_trait;
use sqlx::{Row, SqlSafeStr};

use crate::connection::{Inner, Store};
use crate::error::Error;

/// One monthly partition of the CDR table (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrMonth {
    /// `cdr_pYYYYMM`.
    pub name: String,
    /// Its legs started in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// The partitions dropped whole (PostgreSQL).
    pub months_dropped: Vec<String>,
    /// Legs deleted one by one (SQLite; on PostgreSQL those of the default
    /// partition, which holds legs of months never made).
    pub legs_deleted: u64,
}

/// Legs per DELETE on SQLite: short transactions that do not hold the
/// writer for long.
const DELETE_BATCH: i64 = 5000;

#[async_trait]
pub trait CdrHistoryStore: Send + Sync {
    /// Makes the partitions of the months of `months_ms` (any time within
    /// each), moving their legs out of the default partition; the names.
    /// Nothing on SQLite.
    async fn cdr_months_make(&self, months_ms: &[i64]) -> Result<Vec<String>, Error>;
    /// The monthly partitions, oldest first (none on SQLite).
    async fn cdr_months(&self) -> Result<Vec<CdrMonth>, Error>;
    /// Removes the legs that started before `before_ms` and their entries:
    /// on PostgreSQL only whole months (partitions that end at or before
    /// it), so `before_ms` should be the first instant of a month (UTC).
    async fn drop_cdrs_before(&self, before_ms: i64) -> Result<Retention, Error>;
}

/// `FOR VALUES FROM ('1') TO ('2')` → (1, 2).
fn bounds(expr: &str) -> Option<(i64, i64)> {
    let mut numbers = expr.split('\'').filter_map(|p| p.parse::<i64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

#[async_trait]
impl CdrHistoryStore for Store {
    async fn cdr_months_make(&self, months_ms: &[i64]) -> Result<Vec<String>, Error> {
        let Inner::Postgres(pool) = &self.inner else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for at in months_ms {
            let name: String = sqlx::query("SELECT cdr_month_partition($1)")
                .bind(at)
                .fetch_one(pool)
                .await?
                .try_get(0)?;
            names.push(name);
        }
        Ok(names)
    }

    async fn cdr_months(&self) -> Result<Vec<CdrMonth>, Error> {
        let Inner::Postgres(pool) = &self.inner else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'cdr'::regclass",
        )
        .fetch_all(pool)
        .await?;
        let mut months = Vec::new();
        for r in rows {
            let name: String = r.try_get(0)?;
            let expr: String = r.try_get(1)?;
            if let Some((from_ms, to_ms)) = bounds(&expr) {
                months.push(CdrMonth {
                    name,
                    from_ms,
                    to_ms,
                });
            }
        }
        months.sort_by_key(|m| m.from_ms);
        Ok(months)
    }

    async fn drop_cdrs_before(&self, before_ms: i64) -> Result<Retention, Error> {
        match &self.inner {
            Inner::Postgres(pool) => {
                let mut out = Retention::default();
                for m in self.cdr_months().await? {
                    if m.to_ms <= before_ms {
                        // The name comes from the catalogue and matches cdr_pYYYYMM.
                        if !m.name.starts_with("cdr_p")
                            || !m.name[5..].bytes().all(|b| b.is_ascii_digit())
                        {
                            continue;
                        }
                        let sql = format!("DROP TABLE IF EXISTS \"{}\"", m.name);
                        sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
                            .execute(pool)
                            .await?;
                        out.months_dropped.push(m.name);
                    }
                }
                out.legs_deleted = sqlx::query("DELETE FROM cdr_default WHERE start_ms < $1")
                    .bind(before_ms)
                    .execute(pool)
                    .await?
                    .rows_affected();
                // Dropping a partition fires no trigger: the entries left
                // without legs go here.
                sqlx::query(
                    "DELETE FROM cdr_session s WHERE s.call_ms < $1 AND NOT EXISTS \
                     (SELECT 1 FROM cdr c WHERE c.call_ms = s.call_ms AND c.\"session\" = s.\"session\")",
                )
                .bind(before_ms)
                .execute(pool)
                .await?;
                Ok(out)
            }
            Inner::Sqlite { write, .. } => {
                let mut out = Retention::default();
                loop {
                    // The delete trigger of migration 0005 keeps cdr_session in step.
                    let n = sqlx::query(
                        "DELETE FROM cdr WHERE acctid IN \
                         (SELECT acctid FROM cdr WHERE start_ms < $1 LIMIT $2)",
                    )
                    .bind(before_ms)
                    .bind(DELETE_BATCH)
                    .execute(write)
                    .await?
                    .rows_affected();
                    out.legs_deleted += n;
                    if n < u64::try_from(DELETE_BATCH).unwrap_or(u64::MAX) {
                        return Ok(out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_bounds_are_read_from_the_catalogue_text() {
        assert_eq!(
            bounds("FOR VALUES FROM ('1796083200000') TO ('1798761600000')"),
            Some((1_796_083_200_000, 1_798_761_600_000))
        );
        assert_eq!(bounds("DEFAULT"), None);
    }
}
