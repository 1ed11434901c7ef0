//! A fresh, empty database per benchmark row, removed afterwards.

use std::path::Path;

use store::{Backend, ConnectOptions, Store};

use super::{drop_postgres_database, remove_sqlite_files};

/// A fresh, empty database of one backend, removed by [`Db::remove`].
pub struct Db {
    pub store: Store,
    pub kind: Backend,
    pub url: String,
    pub admin_url: Option<String>,
}

impl Db {
    pub async fn create(kind: Backend, dir: &Path, admin_url: Option<&str>) -> Db {
        let url = match kind {
            // Removed after each use, so the name can be reused.
            Backend::Sqlite => format!("sqlite://{}/bench.db", dir.display()),
            Backend::Postgres => {
                let admin = admin_url.expect("PostgreSQL admin URL");
                store::testing::create_postgres_database(admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create a PostgreSQL database: {e}"))
            }
        };
        let options = ConnectOptions {
            max_connections: 8,
            base_dir: dir.to_path_buf(),
        };
        let store = Store::connect(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the {} store: {e}", kind.name()));
        Db {
            store,
            kind,
            url,
            admin_url: admin_url.map(str::to_owned),
        }
    }

    /// Closes the store and deletes the database. PostgreSQL: best effort
    /// with `psql` (the store has no API for it); the name is printed when
    /// the database stays.
    pub async fn remove(self) {
        self.store.close().await;
        match self.kind {
            Backend::Sqlite => {
                if let Some(path) = self.url.strip_prefix("sqlite://") {
                    remove_sqlite_files(Path::new(path));
                }
            }
            Backend::Postgres => {
                drop_postgres_database(self.admin_url.as_deref().unwrap_or(""), &self.url)
            }
        }
    }
}
