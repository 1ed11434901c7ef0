//! `cdrExport`'s source: every leg matching a filter, in entry order, as a
//! stream of pages through a channel of one page, so that memory stays flat
//! whatever the size and a slow client slows the database down instead of
//! filling memory. PostgreSQL streams one `COPY … TO STDOUT` (its own export
//! path, no per-page query); SQLite walks the entry index by keyset pages.

use std::future::poll_fn;

use sqlx::postgres::PgPool;
use tokio::sync::mpsc;

use super::query::{CdrFilter, CdrPage, CopyPacker, PageKey, export_copy_sql};
use super::read::next_legs;
use crate::connection::Store;
use crate::error::Error;

/// A COPY page is cut at this many bytes even before `page` rows: the
/// stream has no round trips to save, and buffers this small are reused by
/// the allocator instead of being large blocks that stay mapped (1000 legs
/// are about 350 KB; see docs/architecture.md, "CDR history").
const COPY_PAGE_BYTES: usize = 64 * 1024;

pub(crate) type Pages = mpsc::Receiver<Result<CdrPage, Error>>;

/// Starts the export; dropping the receiver stops it.
pub(crate) fn start(store: &Store, filter: CdrFilter, after: Option<PageKey>, page: u32) -> Pages {
    let (tx, rx) = mpsc::channel(1);
    let store = store.clone();
    let page = page.max(1);
    tokio::spawn(async move {
        let result = match store.postgres_pool() {
            Some(pool) => {
                let sql = export_copy_sql(&filter, after.as_ref());
                copy_pages(pool, &sql, page as usize, &tx).await
            }
            None => keyset_pages(&store, &filter, after, page, &tx).await,
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn keyset_pages(
    store: &Store,
    filter: &CdrFilter,
    mut after: Option<PageKey>,
    limit: u32,
    tx: &mpsc::Sender<Result<CdrPage, Error>>,
) -> Result<(), Error> {
    loop {
        let (page, last) = next_legs(store, filter, &mut after, limit).await?;
        if page.is_empty() || tx.send(Ok(page)).await.is_err() || last {
            return Ok(());
        }
    }
}

async fn copy_pages(
    pool: &PgPool,
    sql: &str,
    page: usize,
    tx: &mpsc::Sender<Result<CdrPage, Error>>,
) -> Result<(), Error> {
    let mut conn = pool.acquire().await?;
    let result: Result<bool, Error> = async {
        let mut rows = conn.copy_out_raw(sql).await?;
        let mut packer = CopyPacker::default();
        while let Some(chunk) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            packer.push(&chunk?)?;
            let full =
                packer.rows() >= page || (packer.bytes() >= COPY_PAGE_BYTES && packer.rows() > 0);
            if full && tx.send(Ok(packer.take()?)).await.is_err() {
                return Ok(false);
            }
        }
        if packer.rows() > 0 || packer.is_open() {
            let _ = tx.send(Ok(packer.finish()?)).await;
        }
        Ok(true)
    }
    .await;
    // A COPY left unread would be drained by the next user of the
    // connection: close it instead.
    if !matches!(result, Ok(true)) {
        conn.close_on_drop();
    }
    result.map(|_| ())
}
