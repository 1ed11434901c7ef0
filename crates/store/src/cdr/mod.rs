//! Call detail records: storing them, the `cdrapi` queries over them, the
//! export stream and the walk over recorded calls.
//!
//! Layers, lowest first: `record` (the row), `query` (SQL text and page
//! format), `insert` and `read` (running statements on a [`Store`]),
//! `export` and `recordings` (built on `read`), and this module's
//! [`CdrStore`], the only one that sees them all.

mod checkpoints;
mod export;
mod history;
mod insert;
mod query;
mod read;
mod record;
mod recordings;

use async_trait::async_trait;

use crate::connection::Store;
use crate::error::Error;
pub use history::{CdrHistoryStore, CdrMonth, Retention};
pub use query::{CallBucket, CdrFilter, CdrPage, Grouping, Order, PageKey, PageLeg, PageQuery};
pub use record::NewCdr;
pub use recordings::{RecordedCdr, RecordedCursor};

#[async_trait]
pub trait CdrStore: Send + Sync {
    /// Stores a batch in one transaction; records whose key is already stored
    /// are skipped. Returns how many were new.
    async fn insert_cdrs(&self, batch: &[NewCdr]) -> Result<u64, Error>;
    /// As [`CdrStore::insert_cdrs`], and queues the newly stored records in
    /// each receiver's outbox in the same transaction (see `OutboxStore`).
    async fn insert_cdrs_queued(
        &self,
        batch: &[NewCdr],
        receivers: &[String],
        now_ms: i64,
    ) -> Result<u64, Error>;
    /// One page of `cdrapi` entries, legs in entry order.
    async fn cdr_page(&self, q: &PageQuery<'_>) -> Result<CdrPage, Error>;
    /// The database's plan for that page query, one line per step (tests and
    /// docs show that filters seek indexes).
    async fn cdr_query_plan(&self, q: &PageQuery<'_>) -> Result<String, Error>;
    /// Every leg matching `filter` after `after`, in entry order, as pages
    /// of about `page` legs sent one at a time; dropping the receiver stops
    /// the export. An error ends the stream.
    fn cdr_export(
        &self,
        filter: CdrFilter,
        after: Option<PageKey>,
        page: u32,
    ) -> tokio::sync::mpsc::Receiver<Result<CdrPage, Error>>;
    async fn cdr_count(&self) -> Result<i64, Error>;
    /// A page of entries as [`cdr_page`](Self::cdr_page) gives them, or
    /// newest first (`offset` and `after` then count from the newest).
    async fn cdr_page_in(&self, q: &PageQuery<'_>, order: Order) -> Result<CdrPage, Error>;
    /// How many entries match `filter` (what `numRecords`/`offset` count).
    async fn cdr_entry_count(&self, filter: &CdrFilter, grouping: Grouping) -> Result<u64, Error>;
    /// Calls (sessions) matching `filter` per `bucket_ms` of their start,
    /// answered or not; buckets without calls are left out.
    async fn cdr_call_buckets(
        &self,
        filter: &CdrFilter,
        bucket_ms: i64,
    ) -> Result<Vec<CallBucket>, Error>;
    /// The database's plans of the newest-first page, the entry count and
    /// the call buckets for `q`'s filter (tests check they use indexes).
    async fn cdr_browse_plans(
        &self,
        q: &PageQuery<'_>,
    ) -> Result<Vec<(&'static str, String)>, Error>;
    /// The newest `limit` records, newest first, with `AcctId` filled in.
    async fn recent_cdrs(&self, limit: i64) -> Result<Vec<ucm::cdr::CdrRecord>, Error>;
    async fn checkpoint(&self, name: &str) -> Result<Option<String>, Error>;
    async fn set_checkpoint(&self, name: &str, value: &str) -> Result<(), Error>;
}

#[async_trait]
impl CdrStore for Store {
    async fn insert_cdrs(&self, batch: &[NewCdr]) -> Result<u64, Error> {
        insert::insert_cdrs(self, batch, None).await
    }

    async fn insert_cdrs_queued(
        &self,
        batch: &[NewCdr],
        receivers: &[String],
        now_ms: i64,
    ) -> Result<u64, Error> {
        insert::insert_cdrs(self, batch, Some(insert::Queue { receivers, now_ms })).await
    }

    async fn cdr_page(&self, q: &PageQuery<'_>) -> Result<CdrPage, Error> {
        read::cdr_page(self, q).await
    }

    fn cdr_export(
        &self,
        filter: CdrFilter,
        after: Option<PageKey>,
        page: u32,
    ) -> tokio::sync::mpsc::Receiver<Result<CdrPage, Error>> {
        export::start(self, filter, after, page)
    }

    async fn cdr_query_plan(&self, q: &PageQuery<'_>) -> Result<String, Error> {
        read::cdr_query_plan(self, q).await
    }

    async fn cdr_page_in(&self, q: &PageQuery<'_>, order: Order) -> Result<CdrPage, Error> {
        read::cdr_page_in(self, q, order).await
    }

    async fn cdr_entry_count(&self, filter: &CdrFilter, grouping: Grouping) -> Result<u64, Error> {
        read::cdr_entry_count(self, filter, grouping).await
    }

    async fn cdr_call_buckets(
        &self,
        filter: &CdrFilter,
        bucket_ms: i64,
    ) -> Result<Vec<CallBucket>, Error> {
        read::cdr_call_buckets(self, filter, bucket_ms).await
    }

    async fn cdr_browse_plans(
        &self,
        q: &PageQuery<'_>,
    ) -> Result<Vec<(&'static str, String)>, Error> {
        read::cdr_browse_plans(self, q).await
    }

    async fn cdr_count(&self) -> Result<i64, Error> {
        read::cdr_count(self).await
    }

    async fn recent_cdrs(&self, limit: i64) -> Result<Vec<ucm::cdr::CdrRecord>, Error> {
        read::recent_cdrs(self, limit).await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<String>, Error> {
        checkpoints::checkpoint(self, name).await
    }

    async fn set_checkpoint(&self, name: &str, value: &str) -> Result<(), Error> {
        checkpoints::set_checkpoint(self, name, value).await
    }
}
