//! Several nodes on one database: which node owns each Asterisk (a lease
//! row, taken over when it lapses) and which nodes were seen lately.
//!
//! Lease times are the database's clock, so that the nodes' clocks need not
//! agree: a node only measures, on its own monotonic clock, how long ago it
//! sent the renewal that the database accepted.

use async_trait::async_trait;
use sqlx::{Row, SqlSafeStr};

use crate::connection::{Backend, Store, with_pool};
use crate::error::Error;

/// The database's clock in Unix ms, as SQL.
pub(crate) fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// A lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Grows with every change of owner.
    pub epoch: i64,
    /// Since when this node owns the PBX (database clock, Unix ms).
    pub since_ms: i64,
}

/// The owner of one Asterisk, as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pbx: String,
    pub node: String,
    pub epoch: i64,
    pub since_ms: i64,
    pub renewed_ms: i64,
    pub expires_ms: i64,
}

/// A node serving an Asterisk, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    pub node: String,
    pub pbx: String,
    pub started_ms: i64,
    pub seen_ms: i64,
}

/// What the operator view reads: owners, nodes and the database's clock
/// they are measured against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub now_ms: i64,
    pub owners: Vec<Owner>,
    pub nodes: Vec<NodeSeen>,
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Takes `pbx` for `node` or renews its lease, for `ttl_ms`; `None`
    /// while another node's lease runs. A node whose own lease lapsed gets
    /// a new epoch: it stopped acting and starts again.
    async fn own_pbx(&self, pbx: &str, node: &str, ttl_ms: i64) -> Result<Option<Lease>, Error>;
    /// Gives the lease up (at shutdown), so another node need not wait.
    async fn release_pbx(&self, pbx: &str, node: &str, epoch: i64) -> Result<(), Error>;
    /// Records that `node` serves `pbx` now, and forgets the nodes not seen
    /// for `forget_ms`.
    async fn node_seen(
        &self,
        node: &str,
        pbx: &str,
        started_ms: i64,
        forget_ms: i64,
    ) -> Result<(), Error>;
    /// Owners and the nodes seen within `recent_ms` (a read only: the
    /// operator view is polled).
    async fn cluster_view(&self, recent_ms: i64) -> Result<ClusterView, Error>;
}

#[async_trait]
impl ClusterStore for Store {
    async fn own_pbx(&self, pbx: &str, node: &str, ttl_ms: i64) -> Result<Option<Lease>, Error> {
        let now = now_sql(self.backend());
        // Renewing keeps the epoch and `since`; taking (a lapsed lease, or
        // one's own lapsed lease) starts a new epoch.
        let sql = format!(
            "INSERT INTO pbx_owners (pbx, node, epoch, since_ms, renewed_ms, expires_ms) \
             VALUES ($1, $2, 1, {now}, {now}, {now} + $3) \
             ON CONFLICT (pbx) DO UPDATE SET \
             epoch = CASE WHEN pbx_owners.node = excluded.node AND pbx_owners.expires_ms > {now} \
                     THEN pbx_owners.epoch ELSE pbx_owners.epoch + 1 END, \
             since_ms = CASE WHEN pbx_owners.node = excluded.node AND pbx_owners.expires_ms > {now} \
                     THEN pbx_owners.since_ms ELSE excluded.since_ms END, \
             node = excluded.node, renewed_ms = excluded.renewed_ms, expires_ms = excluded.expires_ms \
             WHERE pbx_owners.node = excluded.node OR pbx_owners.expires_ms <= {now} \
             RETURNING epoch, since_ms"
        );
        let row = with_pool!(self, write pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()).into_sql_str())
        .bind(pbx).bind(node).bind(ttl_ms)
        .fetch_optional(pool).await?
        .map(|r| -> Result<Lease, Error> {
            Ok(Lease { epoch: r.try_get(0)?, since_ms: r.try_get(1)? })
        }));
        row.transpose()
    }

    async fn release_pbx(&self, pbx: &str, node: &str, epoch: i64) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "UPDATE pbx_owners SET expires_ms = 0 WHERE pbx = $1 AND node = $2 AND epoch = $3")
            .bind(pbx).bind(node).bind(epoch)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn node_seen(
        &self,
        node: &str,
        pbx: &str,
        started_ms: i64,
        forget_ms: i64,
    ) -> Result<(), Error> {
        let now = now_sql(self.backend());
        let sql = format!(
            "INSERT INTO cluster_nodes (node, pbx, started_ms, seen_ms) VALUES ($1, $2, $3, {now}) \
             ON CONFLICT (node, pbx) DO UPDATE SET started_ms = excluded.started_ms, \
             seen_ms = excluded.seen_ms"
        );
        let forget = format!("DELETE FROM cluster_nodes WHERE seen_ms < {now} - $1");
        with_pool!(self, write pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()).into_sql_str())
                .bind(node).bind(pbx).bind(started_ms)
                .execute(pool).await?;
            sqlx::query(sqlx::AssertSqlSafe(forget.as_str()).into_sql_str())
                .bind(forget_ms).execute(pool).await?;
        });
        Ok(())
    }

    async fn cluster_view(&self, recent_ms: i64) -> Result<ClusterView, Error> {
        let now_expr = now_sql(self.backend());
        let now_q = format!("SELECT {now_expr}");
        let nodes_q = format!(
            "SELECT node, pbx, started_ms, seen_ms FROM cluster_nodes \
             WHERE seen_ms >= {now_expr} - $1 ORDER BY pbx, node"
        );
        with_pool!(self, read pool => {
            let now_ms: i64 = sqlx::query(sqlx::AssertSqlSafe(now_q.as_str()).into_sql_str()).fetch_one(pool).await?.try_get(0)?;
            let owners = sqlx::query(
                "SELECT pbx, node, epoch, since_ms, renewed_ms, expires_ms FROM pbx_owners ORDER BY pbx")
                .fetch_all(pool).await?
                .iter()
                .map(|r| -> Result<Owner, Error> {
                    Ok(Owner {
                        pbx: r.try_get(0)?,
                        node: r.try_get(1)?,
                        epoch: r.try_get(2)?,
                        since_ms: r.try_get(3)?,
                        renewed_ms: r.try_get(4)?,
                        expires_ms: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let nodes = sqlx::query(sqlx::AssertSqlSafe(nodes_q.as_str()).into_sql_str())
                .bind(recent_ms)
                .fetch_all(pool).await?
                .iter()
                .map(|r| -> Result<NodeSeen, Error> {
                    Ok(NodeSeen {
                        node: r.try_get(0)?,
                        pbx: r.try_get(1)?,
                        started_ms: r.try_get(2)?,
                        seen_ms: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ClusterView { now_ms, owners, nodes })
        })
    }
}
