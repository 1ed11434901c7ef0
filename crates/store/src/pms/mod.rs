//! The hotel (PMS) API's data: rooms and their wake-up calls.

mod rooms;
mod wakeups;

use async_trait::async_trait;

use crate::connection::Store;
use crate::error::Error;
pub use rooms::{Room, RoomWrite};
pub use wakeups::{Wakeup, WakeupStatus};

#[async_trait]
pub trait PmsStore: Send + Sync {
    async fn room(&self, address: &str) -> Result<Option<Room>, Error>;
    async fn room_by_extension(&self, extension: &str) -> Result<Option<Room>, Error>;
    /// Every room, by address.
    async fn rooms(&self) -> Result<Vec<Room>, Error>;
    /// Stores `room` if the stored row still has version `room.version`
    /// (0: no row yet). `updated_ms` is taken from `room`.
    async fn write_room(&self, room: &Room) -> Result<RoomWrite, Error>;
    /// A pending wake-up call; `None` when the room already has an open one
    /// at that time.
    async fn add_wakeup(
        &self,
        address: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, Error>;
    async fn wakeup(&self, id: i64) -> Result<Option<Wakeup>, Error>;
    /// The room's wake-up calls due at or after `from_ms`, earliest first, at most `limit`.
    async fn wakeups_of(
        &self,
        address: &str,
        from_ms: i64,
        limit: i64,
    ) -> Result<Vec<Wakeup>, Error>;
    /// Cancels the room's open (pending or dialing) calls, or only the one
    /// due at `due_ms`. Returns how many.
    async fn cancel_wakeups(
        &self,
        address: &str,
        due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, Error>;
    /// Pending calls whose next attempt is due at `now_ms`, earliest first.
    async fn due_wakeups(&self, now_ms: i64, limit: i64) -> Result<Vec<Wakeup>, Error>;
    /// Claims a due pending call for `node` until `until_ms` (status
    /// `dialing`, one more attempt). `None` when another process claimed it
    /// first or it is no longer pending; else the attempt's number.
    async fn claim_wakeup(
        &self,
        id: i64,
        node: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<i64>, Error>;
    /// Ends attempt `attempt` of a call `node` holds: `status` `pending`
    /// (retried at `next_attempt_ms`), `answered` or `failed`. False when the
    /// call was cancelled meanwhile or is not held by `node`.
    #[allow(clippy::too_many_arguments)]
    async fn finish_wakeup(
        &self,
        id: i64,
        node: &str,
        attempt: i64,
        status: WakeupStatus,
        outcome: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, Error>;
    /// Marks a pending call `missed` (too late to place). False when it is no longer pending.
    async fn miss_wakeup(&self, id: i64, now_ms: i64) -> Result<bool, Error>;
    /// Calls left `dialing` by a process that stopped: claims that ran out
    /// before `now_ms` go back to `pending` (due now), or to `failed` when
    /// they had `max_attempts` attempts. Returns how many.
    async fn release_stale_wakeups(&self, now_ms: i64, max_attempts: i64) -> Result<u64, Error>;
}

#[async_trait]
impl PmsStore for Store {
    async fn room(&self, address: &str) -> Result<Option<Room>, Error> {
        rooms::room(self, address).await
    }

    async fn room_by_extension(&self, extension: &str) -> Result<Option<Room>, Error> {
        rooms::room_by_extension(self, extension).await
    }

    async fn rooms(&self) -> Result<Vec<Room>, Error> {
        rooms::rooms(self).await
    }

    async fn write_room(&self, room: &Room) -> Result<RoomWrite, Error> {
        rooms::write_room(self, room).await
    }

    async fn add_wakeup(
        &self,
        address: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, Error> {
        wakeups::add_wakeup(self, address, due_ms, now_ms).await
    }

    async fn wakeup(&self, id: i64) -> Result<Option<Wakeup>, Error> {
        wakeups::wakeup(self, id).await
    }

    async fn wakeups_of(
        &self,
        address: &str,
        from_ms: i64,
        limit: i64,
    ) -> Result<Vec<Wakeup>, Error> {
        wakeups::wakeups_of(self, address, from_ms, limit).await
    }

    async fn cancel_wakeups(
        &self,
        address: &str,
        due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, Error> {
        wakeups::cancel_wakeups(self, address, due_ms, now_ms).await
    }

    async fn due_wakeups(&self, now_ms: i64, limit: i64) -> Result<Vec<Wakeup>, Error> {
        wakeups::due_wakeups(self, now_ms, limit).await
    }

    async fn claim_wakeup(
        &self,
        id: i64,
        node: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<i64>, Error> {
        wakeups::claim_wakeup(self, id, node, now_ms, until_ms).await
    }

    async fn finish_wakeup(
        &self,
        id: i64,
        node: &str,
        attempt: i64,
        status: WakeupStatus,
        outcome: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, Error> {
        wakeups::finish_wakeup(
            self,
            id,
            node,
            attempt,
            status,
            outcome,
            next_attempt_ms,
            now_ms,
        )
        .await
    }

    async fn miss_wakeup(&self, id: i64, now_ms: i64) -> Result<bool, Error> {
        wakeups::miss_wakeup(self, id, now_ms).await
    }

    async fn release_stale_wakeups(&self, now_ms: i64, max_attempts: i64) -> Result<u64, Error> {
        wakeups::release_stale_wakeups(self, now_ms, max_attempts).await
    }
}
