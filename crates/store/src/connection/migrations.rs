//! The migrations of each backend, in order. An applied migration is never
//! edited: a change is a new file in both folders, listed in both lists.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "cdr",
        include_str!("../../migrations/sqlite/0002_cdr.sql"),
    ),
    (
        3,
        "cdr query",
        include_str!("../../migrations/sqlite/0003_cdr_query.sql"),
    ),
    (
        4,
        "cdr separators",
        include_str!("../../migrations/sqlite/0004_cdr_separators.sql"),
    ),
    (
        5,
        "cdr session",
        include_str!("../../migrations/sqlite/0005_cdr_session.sql"),
    ),
    (
        6,
        "call decisions",
        include_str!("../../migrations/sqlite/0006_call_decisions.sql"),
    ),
    (
        7,
        "pms",
        include_str!("../../migrations/sqlite/0007_pms.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../migrations/sqlite/0008_admin.sql"),
    ),
    (
        9,
        "web settings",
        include_str!("../../migrations/sqlite/0009_web_settings.sql"),
    ),
    (
        10,
        "challenge limits",
        include_str!("../../migrations/sqlite/0010_challenge_limits.sql"),
    ),
    (
        11,
        "state checks",
        include_str!("../../migrations/sqlite/0011_state_checks.sql"),
    ),
    (
        12,
        "cdr_outbox",
        include_str!("../../migrations/sqlite/0012_cdr_outbox.sql"),
    ),
    (
        13,
        "cdr output audit",
        include_str!("../../migrations/sqlite/0013_cdr_output_audit.sql"),
    ),
    (
        14,
        "cluster",
        include_str!("../../migrations/sqlite/0014_cluster.sql"),
    ),
    (
        15,
        "cdr partitions",
        include_str!("../../migrations/sqlite/0015_cdr_partitions.sql"),
    ),
    (
        16,
        "cdr day filter",
        include_str!("../../migrations/sqlite/0016_cdr_day_filter.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "cdr",
        include_str!("../../migrations/postgres/0002_cdr.sql"),
    ),
    (
        3,
        "cdr query",
        include_str!("../../migrations/postgres/0003_cdr_query.sql"),
    ),
    (
        4,
        "cdr separators",
        include_str!("../../migrations/postgres/0004_cdr_separators.sql"),
    ),
    (
        5,
        "cdr session",
        include_str!("../../migrations/postgres/0005_cdr_session.sql"),
    ),
    (
        6,
        "call decisions",
        include_str!("../../migrations/postgres/0006_call_decisions.sql"),
    ),
    (
        7,
        "pms",
        include_str!("../../migrations/postgres/0007_pms.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../migrations/postgres/0008_admin.sql"),
    ),
    (
        9,
        "web settings",
        include_str!("../../migrations/postgres/0009_web_settings.sql"),
    ),
    (
        10,
        "challenge limits",
        include_str!("../../migrations/postgres/0010_challenge_limits.sql"),
    ),
    (
        11,
        "state checks",
        include_str!("../../migrations/postgres/0011_state_checks.sql"),
    ),
    (
        12,
        "cdr_outbox",
        include_str!("../../migrations/postgres/0012_cdr_outbox.sql"),
    ),
    (
        13,
        "cdr output audit",
        include_str!("../../migrations/postgres/0013_cdr_output_audit.sql"),
    ),
    (
        14,
        "cluster",
        include_str!("../../migrations/postgres/0014_cluster.sql"),
    ),
    (
        15,
        "cdr partitions",
        include_str!("../../migrations/postgres/0015_cdr_partitions.sql"),
    ),
    (
        16,
        "cdr day filter",
        include_str!("../../migrations/postgres/0016_cdr_day_filter.sql"),
    ),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(super) fn sqlite() -> Migrator {
    migrator(SQLITE_MIGRATIONS)
}

pub(super) fn postgres() -> Migrator {
    migrator(POSTGRES_MIGRATIONS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{Connection, Row, SqliteConnection};

    use super::SQLITE_MIGRATIONS;

    async fn run(c: &mut SqliteConnection, sql: &'static str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *c)
            .await
            .unwrap();
    }

    async fn names(c: &mut SqliteConnection, kind: &str) -> Vec<String> {
        sqlx::query("SELECT name FROM sqlite_master WHERE type = $1 AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .bind(kind)
            .fetch_all(&mut *c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// 0011 rebuilds three SQLite tables: rows, ids, AUTOINCREMENT's
    /// high-water mark, indexes and triggers come through.
    #[tokio::test]
    async fn sqlite_state_checks_keep_rows_ids_and_indexes() {
        let mut c = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let (before, after) = SQLITE_MIGRATIONS.split_at(10);
        assert_eq!(after[0].0, 11);
        for (_, _, sql) in before {
            run(&mut c, sql).await;
        }
        run(
            &mut c,
            "INSERT INTO audit_log (id, at_ms, event, username, ip, result, detail) VALUES \
             (3, 1, 'login', 'u', 'i', 'ok', ''), (9, 2, 'admin-call', 'u', 'i', 'ok', 'd'); \
             DELETE FROM audit_log WHERE id = 9; \
             INSERT INTO call_decisions (id, held_at_ms, decided_at_ms, channel, channel_id, \
             caller, did, outcome, decided_by, apply_us, detail) \
             VALUES (4, 1, 2, 'c', 'i', 'a', 'd', 'backstop', 'asterisk', 5, ''); \
             INSERT INTO pms_wakeups (id, address, due_ms, status, attempts, outcome, \
             next_attempt_ms, claimed_by, claim_until_ms, created_ms, updated_ms) \
             VALUES (7, '101', 60, 'dialing', 1, '', 60, 'n', 90, 1, 2);",
        )
        .await;
        let indexes = names(&mut c, "index").await;
        let triggers = names(&mut c, "trigger").await;
        run(&mut c, after[0].2).await;
        assert_eq!(names(&mut c, "index").await, indexes);
        assert_eq!(names(&mut c, "trigger").await, triggers);
        assert_eq!(
            names(&mut c, "table")
                .await
                .iter()
                .filter(|t| t.ends_with("_new"))
                .count(),
            0
        );

        let row = sqlx::query("SELECT id, event, detail FROM audit_log")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(
            (row.get::<i64, _>(0), row.get::<String, _>(1)),
            (3, "login".into())
        );
        // The deleted row's id is not handed out again.
        let id: i64 = sqlx::query(
            "INSERT INTO audit_log (at_ms, event, username, ip, result, detail) \
             VALUES (3, 'logout', 'u', 'i', 'ok', '') RETURNING id",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
        assert_eq!(id, 10);
        let row = sqlx::query("SELECT id, outcome, apply_us FROM call_decisions")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<i64, _>(0),
                row.get::<String, _>(1),
                row.get::<i64, _>(2)
            ),
            (4, "backstop".into(), 5)
        );
        let row = sqlx::query("SELECT id, status, claimed_by, claim_until_ms FROM pms_wakeups")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<i64, _>(0),
                row.get::<String, _>(1),
                row.get::<String, _>(2),
                row.get::<i64, _>(3)
            ),
            (7, "dialing".into(), "n".into(), 90)
        );
        // The partial unique index still holds one open call per room and time.
        assert!(
            sqlx::query(
                "INSERT INTO pms_wakeups (address, due_ms, status, attempts, outcome, \
                 next_attempt_ms, claimed_by, claim_until_ms, created_ms, updated_ms) \
                 VALUES ('101', 60, 'pending', 0, '', 60, '', 0, 1, 1)"
            )
            .execute(&mut c)
            .await
            .is_err()
        );
    }

    /// 0015 converts an existing CDR table: every leg moves to its month's
    /// partition (or the default one), AcctIds are kept and new ones follow
    /// on, the dedupe key still refuses a second copy, the entries' table
    /// still follows deletes.
    #[tokio::test]
    async fn postgres_partitioning_keeps_an_existing_cdr_table() {
        use sqlx::PgConnection;
        let admin = match crate::testing::postgres_admin_url() {
            Ok(Some(a)) => a,
            Ok(None) => {
                crate::testing::record_skip("PostgreSQL half of the partitioning migration");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let url = crate::testing::create_postgres_database(&admin)
            .await
            .unwrap();
        let mut c = PgConnection::connect(&url).await.unwrap();
        let (before, after) = super::POSTGRES_MIGRATIONS.split_at(14);
        assert_eq!(after[0].0, 15);
        for (_, _, sql) in before {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
        // 2026-10-15, 2026-11-15 and a start Asterisk could not give (0).
        let legs = [
            ("a", 1_792_022_400_000_i64),
            ("b", 1_794_700_800_000),
            ("c", 0),
        ];
        for (key, start) in legs {
            sqlx::query(
                "INSERT INTO cdr (dedupe_key, start_ms, call_ms, \"session\", src) VALUES ($1, $2, $2, $1, '1001')",
            )
            .bind(key)
            .bind(start)
            .execute(&mut c)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO cdr_session (call_ms, \"session\") SELECT call_ms, \"session\" FROM cdr",
        )
        .execute(&mut c)
        .await
        .unwrap();
        let ids: Vec<i64> = sqlx::query("SELECT acctid FROM cdr ORDER BY acctid")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tx = c.begin().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(after[0].2))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let placed: Vec<(String, String, i64)> = sqlx::query(
            "SELECT dedupe_key, tableoid::regclass::text, acctid FROM cdr ORDER BY dedupe_key",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        assert_eq!(
            placed,
            [
                ("a".into(), "cdr_p202610".into(), ids[0]),
                ("b".into(), "cdr_p202611".into(), ids[1]),
                ("c".into(), "cdr_default".into(), ids[2]),
            ]
        );
        let next: i64 = sqlx::query(
            "INSERT INTO cdr (dedupe_key, start_ms, call_ms) VALUES ('d', 1794700900000, 1) RETURNING acctid",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
        assert_eq!(next, ids[2] + 1);
        let again = sqlx::query(
            "INSERT INTO cdr (dedupe_key, start_ms, call_ms) VALUES ('a', 1792022400000, 1) \
             ON CONFLICT (dedupe_key, start_ms) DO NOTHING",
        )
        .execute(&mut c)
        .await
        .unwrap();
        assert_eq!(again.rows_affected(), 0);
        sqlx::query("DELETE FROM cdr WHERE dedupe_key = 'b'")
            .execute(&mut c)
            .await
            .unwrap();
        let sessions: i64 = sqlx::query("SELECT count(*) FROM cdr_session")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
        assert_eq!(sessions, 2, "the deleted leg's entry went with it");
    }
}
