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
