//! Hotel rooms driven by the PMS API.

use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

/// A hotel room driven by the PMS API. Booleans are stored as 0/1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    /// The room number the PMS uses (`<address>`).
    pub address: String,
    /// The room's phone.
    pub extension: String,
    pub checked_in: bool,
    pub guest_name: String,
    pub language: String,
    pub vip: bool,
    /// `YYYYMMDD`; empty when vacant.
    pub arrival: String,
    pub departure: String,
    /// Class of service, 1 to 4.
    pub cos: i64,
    pub dnd: bool,
    /// Maid status code; empty when never set.
    pub room_status: String,
    pub mwi: bool,
    /// The last check-in; 0 never.
    pub checked_in_ms: i64,
    pub updated_ms: i64,
    /// Incremented by every write; 0 for a room not stored yet.
    pub version: i64,
}

/// What [`PmsStore::write_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomWrite {
    /// Stored; the row's new version.
    Written(i64),
    /// Another writer changed (or created) the room since it was read.
    Conflict,
    /// Another room has this extension.
    ExtensionTaken,
}

macro_rules! room_columns {
    () => {
        "address, extension, checked_in, guest_name, language, vip, arrival, departure, cos, dnd, \
         room_status, mwi, checked_in_ms, updated_ms, version"
    };
}

fn room_of<R: Row>(r: &R) -> Result<Room, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Room {
        address: r.try_get(0)?,
        extension: r.try_get(1)?,
        checked_in: r.try_get::<i64, _>(2)? != 0,
        guest_name: r.try_get(3)?,
        language: r.try_get(4)?,
        vip: r.try_get::<i64, _>(5)? != 0,
        arrival: r.try_get(6)?,
        departure: r.try_get(7)?,
        cos: r.try_get(8)?,
        dnd: r.try_get::<i64, _>(9)? != 0,
        room_status: r.try_get(10)?,
        mwi: r.try_get::<i64, _>(11)? != 0,
        checked_in_ms: r.try_get(12)?,
        updated_ms: r.try_get(13)?,
        version: r.try_get(14)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(super) async fn room(store: &Store, address: &str) -> Result<Option<Room>, Error> {
    let sql = concat!(
        "SELECT ",
        room_columns!(),
        " FROM pms_rooms WHERE address = $1"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).bind(address).fetch_optional(pool).await?
            .map(|r| room_of(&r)).transpose()?
    }))
}

pub(super) async fn room_by_extension(
    store: &Store,
    extension: &str,
) -> Result<Option<Room>, Error> {
    let sql = concat!(
        "SELECT ",
        room_columns!(),
        " FROM pms_rooms WHERE extension = $1"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).bind(extension).fetch_optional(pool).await?
            .map(|r| room_of(&r)).transpose()?
    }))
}

pub(super) async fn rooms(store: &Store) -> Result<Vec<Room>, Error> {
    let sql = concat!(
        "SELECT ",
        room_columns!(),
        " FROM pms_rooms ORDER BY address"
    );
    Ok(with_pool!(store, read pool => {
        sqlx::query(sql).fetch_all(pool).await?
            .iter().map(room_of).collect::<Result<Vec<_>, _>>()?
    }))
}

pub(super) async fn write_room(store: &Store, room: &Room) -> Result<RoomWrite, Error> {
    let b = |v: bool| i64::from(v);
    let result = with_pool!(store, write pool => {
        let q = if room.version == 0 {
            sqlx::query(
                "INSERT INTO pms_rooms (address, extension, checked_in, guest_name, language, vip, \
                 arrival, departure, cos, dnd, room_status, mwi, checked_in_ms, updated_ms, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1) \
                 ON CONFLICT (address) DO NOTHING")
        } else {
            sqlx::query(
                "UPDATE pms_rooms SET extension = $2, checked_in = $3, guest_name = $4, language = $5, \
                 vip = $6, arrival = $7, departure = $8, cos = $9, dnd = $10, room_status = $11, \
                 mwi = $12, checked_in_ms = $13, updated_ms = $14, version = version + 1 \
                 WHERE address = $1 AND version = $15")
        };
        q.bind(&room.address).bind(&room.extension).bind(b(room.checked_in))
            .bind(&room.guest_name).bind(&room.language).bind(b(room.vip))
            .bind(&room.arrival).bind(&room.departure).bind(room.cos).bind(b(room.dnd))
            .bind(&room.room_status).bind(b(room.mwi)).bind(room.checked_in_ms)
            .bind(room.updated_ms).bind(room.version)
            .execute(pool).await.map(|done| done.rows_affected())
    });
    match result {
        Ok(1) => Ok(RoomWrite::Written(room.version + 1)),
        Ok(_) => Ok(RoomWrite::Conflict),
        Err(e) if is_unique_violation(&e) => Ok(RoomWrite::ExtensionTaken),
        Err(e) => Err(e.into()),
    }
}
