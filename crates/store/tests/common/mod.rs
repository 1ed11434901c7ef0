//! What every store test file uses: a store per backend.

use store::testing::TestDb;
use store::{ConnectOptions, Store};

pub async fn open(db: &TestDb) -> Store {
    Store::connect(&db.url, &ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", db.backend))
}

/// Runs the body once per backend (SQLite, and PostgreSQL when configured;
/// always under CI) on a fresh database, naming the backend on failure.
#[macro_export]
macro_rules! on_every_backend {
    (|$store:ident, $db:ident| $body:block) => {{
        let dir = tempfile::tempdir().unwrap();
        let dbs = store::testing::databases(dir.path()).await;
        for $db in &dbs {
            let $store = common::open($db).await;
            $body
            $store.close().await;
        }
    }};
}
