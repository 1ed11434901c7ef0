//! Runs a PMS command: the room's new state from its stored state (pure:
//! [`plan`]), stored with optimistic concurrency (two pbxgate processes on one
//! database never lose each other's changes), then applied on Asterisk.
//!
//! Order: everything the request says is checked first (nothing changes on
//! bad input); the database is the truth and is written before Asterisk; if
//! Asterisk then fails, the answer says so and pbxgate writes the room again
//! when its AMI connection is next up.

use asterisk::pbx::Manager;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use store::{PmsStore, Room, RoomWrite, Store, Wakeup};
use ucm::Status;
use ucm::pms::{Command, PmsError, Reply, WakeTime, WakeupOp, format_date, format_wake_time};

use super::pbx;
use crate::config::PmsSettings;

/// Open wake-up calls a room may have.
pub const MAX_OPEN_WAKEUPS: usize = 10;
/// How far ahead a wake-up call may be set.
const MAX_AHEAD_MS: i64 = 366 * 24 * 3600 * 1000;
/// Attempts at a write that keeps meeting another writer's change.
const WRITE_TRIES: usize = 5;

pub struct Ctx<'a> {
    pub store: &'a Store,
    pub ami: &'a dyn Manager,
    pub settings: &'a PmsSettings,
    pub tz: &'a TimeZone,
}

fn failed(e: store::Error) -> PmsError {
    tracing::error!(error = %e, "pmsapi: database error");
    PmsError::new(Status::FailedToOperateData, "database error")
}

/// The wake-up side of a command, resolved to instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeupChange {
    Set(i64),
    /// `None`: every open call.
    Cancel(Option<i64>),
}

/// What a command does to a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub room: Room,
    /// Store and apply the room (false: a wake-up command on a known room).
    pub write: bool,
    /// The extension the room had, if it was stored.
    pub old_extension: Option<String>,
    /// Whether the lamp was lit before.
    pub old_mwi: bool,
    /// (Re)publish the message-waiting lamp.
    pub mwi: bool,
    pub checkout: bool,
    pub wakeup: Option<WakeupChange>,
}

fn date_text(d: jiff::civil::Date) -> String {
    format_date(d)
}

fn not_checked_in(address: &str) -> PmsError {
    PmsError::new(
        Status::FailedToUpdateData,
        format!("room {address} is not checked in"),
    )
}

fn unknown_room(address: &str) -> PmsError {
    PmsError::new(Status::NoSuchItem, format!("room {address} is unknown"))
}

fn resolve(t: &WakeTime, now_ms: i64, tz: &TimeZone) -> Result<i64, PmsError> {
    let now = Timestamp::from_millisecond(now_ms)
        .map_err(|e| PmsError::new(Status::AbnormalSystemError, format!("clock: {e}")))?;
    Ok(t.resolve(now, tz)?.as_millisecond())
}

/// The room after `cmd`. `old`: the stored room, if any. Commands other
/// than `update` and `changename` create an unknown room (vacant, its
/// extension = the `<extension>` given, else the address).
pub fn plan(
    cmd: &Command,
    old: Option<&Room>,
    now_ms: i64,
    s: &PmsSettings,
    tz: &TimeZone,
) -> Result<Plan, PmsError> {
    let address = cmd.address();
    let base = old.cloned().unwrap_or_else(|| Room {
        address: address.to_owned(),
        extension: address.to_owned(),
        cos: i64::from(s.default_cos),
        ..Room::default()
    });
    let mut p = Plan {
        room: base,
        write: true,
        old_extension: old.map(|r| r.extension.clone()),
        old_mwi: old.is_some_and(|r| r.mwi),
        mwi: false,
        checkout: false,
        wakeup: None,
    };
    let r = &mut p.room;
    match cmd {
        Command::CheckIn(c) => {
            if let Some(e) = &c.extension {
                r.extension.clone_from(e);
            }
            r.checked_in = true;
            r.guest_name.clone_from(&c.name);
            r.language.clone_from(&c.language);
            r.vip = c.vip;
            r.arrival = date_text(c.datein);
            r.departure = date_text(c.dateout);
            r.cos = i64::from(c.cos.unwrap_or(s.default_cos));
            r.dnd = c.dnd.unwrap_or(false);
            r.checked_in_ms = now_ms;
        }
        Command::CheckOut { extension, .. } => {
            if let Some(e) = extension {
                r.extension.clone_from(e);
            }
            r.checked_in = false;
            r.guest_name.clear();
            r.language.clear();
            r.vip = false;
            r.arrival.clear();
            r.departure.clear();
            r.dnd = false;
            p.mwi = old.is_some_and(|o| o.mwi);
            r.mwi = false;
            p.checkout = true;
            p.wakeup = Some(WakeupChange::Cancel(None));
        }
        Command::Update(u) => {
            match old {
                None => return Err(unknown_room(address)),
                Some(o) if !o.checked_in => return Err(not_checked_in(address)),
                Some(_) => {}
            }
            if let Some(e) = &u.extension {
                r.extension.clone_from(e);
            }
            if let Some(v) = &u.name {
                r.guest_name.clone_from(v);
            }
            if let Some(v) = &u.language {
                r.language.clone_from(v);
            }
            if let Some(v) = u.vip {
                r.vip = v;
            }
            if let Some(d) = u.datein {
                r.arrival = date_text(d);
            }
            if let Some(d) = u.dateout {
                r.departure = date_text(d);
            }
            if let Some(c) = u.cos {
                r.cos = i64::from(c);
            }
            if let Some(d) = u.dnd {
                r.dnd = d;
            }
            if r.departure < r.arrival {
                return Err(PmsError::new(
                    Status::InvalidValue,
                    format!(
                        "the departure date {} would be before the arrival date {}",
                        r.departure, r.arrival
                    ),
                ));
            }
        }
        Command::ChangeName { name, .. } => {
            match old {
                None => return Err(unknown_room(address)),
                Some(o) if !o.checked_in => return Err(not_checked_in(address)),
                Some(_) => {}
            }
            r.guest_name.clone_from(name);
        }
        Command::Cos { cos, .. } => r.cos = i64::from(*cos),
        Command::Dnd { on, .. } => r.dnd = *on,
        Command::RoomStatus { code, .. } => r.room_status.clone_from(code),
        Command::Mwi { on, .. } => {
            r.mwi = *on;
            p.mwi = true;
        }
        Command::Wakeup { op, .. } => {
            // Only setting a call makes an unknown room known.
            p.write = old.is_none() && matches!(op, WakeupOp::Set(_));
            if old.is_none() && matches!(op, WakeupOp::Cancel(Some(_))) {
                return Err(unknown_room(address));
            }
            p.wakeup = match op {
                WakeupOp::Set(t) => {
                    let due = resolve(t, now_ms, tz)?;
                    if due <= now_ms {
                        return Err(PmsError::new(
                            Status::InvalidValue,
                            "the wake-up time is in the past",
                        ));
                    }
                    if due - now_ms > MAX_AHEAD_MS {
                        return Err(PmsError::new(
                            Status::InvalidValue,
                            "the wake-up time is more than a year ahead",
                        ));
                    }
                    Some(WakeupChange::Set(due))
                }
                WakeupOp::Cancel(t) => Some(WakeupChange::Cancel(
                    t.as_ref().map(|t| resolve(t, now_ms, tz)).transpose()?,
                )),
                WakeupOp::List => None,
            };
        }
        Command::RoomInfo { .. } => p.write = false,
    }
    p.room.updated_ms = now_ms;
    Ok(p)
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

fn local(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => format_wake_time(tz.to_datetime(t)),
        Err(_) => String::new(),
    }
}

fn wakeup_records(calls: &[Wakeup], tz: &TimeZone) -> Vec<Vec<(&'static str, String)>> {
    calls
        .iter()
        .map(|w| {
            vec![
                ("time", local(w.due_ms, tz)),
                ("state", w.status.to_string()),
                ("attempts", w.attempts.to_string()),
                ("outcome", w.outcome.clone()),
            ]
        })
        .collect()
}

/// Runs `cmd`; the answer on success.
pub async fn run(ctx: &Ctx<'_>, cmd: &Command) -> Result<Reply, PmsError> {
    let address = cmd.address();
    let name = cmd.name();
    let now = crate::clock::now_ms();
    // Reads first: they need no Asterisk.
    match cmd {
        Command::RoomInfo { .. } => {
            let room = ctx
                .store
                .room(address)
                .await
                .map_err(failed)?
                .ok_or_else(|| unknown_room(address))?;
            return Ok(Reply::ok(name, address)
                .with("extension", &room.extension)
                .with("checkedin", flag(room.checked_in))
                .with("name", &room.guest_name)
                .with("language", &room.language)
                .with("vip", flag(room.vip))
                .with("datein", &room.arrival)
                .with("dateout", &room.departure)
                .with("cos", room.cos.to_string())
                .with("dnd", flag(room.dnd))
                .with("roomstatus", &room.room_status)
                .with("mwi", flag(room.mwi)));
        }
        Command::Wakeup {
            op: WakeupOp::List, ..
        } => {
            let calls = ctx
                .store
                .wakeups_of(address, now - 24 * 3600 * 1000, 100)
                .await
                .map_err(failed)?;
            return Ok(Reply::ok(name, address).with_list(
                "wakeups",
                "call",
                wakeup_records(&calls, ctx.tz),
            ));
        }
        _ => {}
    }
    if !ctx.ami.state().borrow().is_up() {
        return Err(PmsError::new(
            Status::ConnectionClosed,
            "Asterisk is not connected: nothing was changed, try again later",
        ));
    }

    // The room, written with optimistic concurrency.
    let mut tries = 0;
    let (mut plan, previous) = loop {
        tries += 1;
        let old = ctx.store.room(address).await.map_err(failed)?;
        let plan = plan(cmd, old.as_ref(), now, ctx.settings, ctx.tz)?;
        if let Some(WakeupChange::Set(_)) = plan.wakeup {
            let open = ctx
                .store
                .wakeups_of(address, 0, 1000)
                .await
                .map_err(failed)?
                .iter()
                .filter(|w| w.status == "pending" || w.status == "dialing")
                .count();
            if open >= MAX_OPEN_WAKEUPS {
                return Err(PmsError::new(
                    Status::InvalidValue,
                    format!("room {address} already has {MAX_OPEN_WAKEUPS} wake-up calls set"),
                ));
            }
        }
        if !plan.write {
            break (plan, old);
        }
        if let Some(other) = ctx
            .store
            .room_by_extension(&plan.room.extension)
            .await
            .map_err(failed)?
            .filter(|o| o.address != plan.room.address)
        {
            return Err(extension_taken(&plan.room.extension, &other.address));
        }
        match ctx.store.write_room(&plan.room).await.map_err(failed)? {
            RoomWrite::Written(version) => {
                let mut plan = plan;
                plan.room.version = version;
                break (plan, old);
            }
            RoomWrite::ExtensionTaken => {
                return Err(extension_taken(&plan.room.extension, "another room"));
            }
            RoomWrite::Conflict if tries < WRITE_TRIES => continue,
            RoomWrite::Conflict => {
                return Err(PmsError::new(
                    Status::DataModified,
                    format!("room {address} is being changed by another request: try again"),
                ));
            }
        }
    };

    let mut reply = Reply::ok(name, address);
    match &plan.wakeup {
        Some(WakeupChange::Set(due)) => {
            let added = ctx
                .store
                .add_wakeup(address, *due, now)
                .await
                .map_err(failed)?;
            if added.is_none() {
                tracing::debug!(address, "wake-up call already set at that time");
            }
            reply = reply.with("time", local(*due, ctx.tz));
        }
        Some(WakeupChange::Cancel(due)) => {
            let n = ctx
                .store
                .cancel_wakeups(address, *due, now)
                .await
                .map_err(failed)?;
            if n == 0 && due.is_some() {
                return Err(PmsError::new(
                    Status::NoSuchItem,
                    format!("room {address} has no wake-up call at that time"),
                ));
            }
            if !plan.checkout {
                reply = reply.with("cancelled", n.to_string());
            }
        }
        None => {}
    }

    if plan.write {
        apply_latest(ctx, &mut plan).await.map_err(|e| {
            tracing::warn!(address, error = %e, "pmsapi: saved, but Asterisk was not updated");
            PmsError::new(
                Status::AbnormalSystemError,
                format!(
                    "saved, but Asterisk could not be updated now ({e}); \
                     pbxgate applies it when its connection to Asterisk is next up"
                ),
            )
        })?;
    }
    tracing::info!(
        command = name,
        address,
        extension = %plan.room.extension,
        created = previous.is_none() && plan.write,
        "pmsapi: applied"
    );
    Ok(reply)
}

fn extension_taken(extension: &str, other: &str) -> PmsError {
    PmsError::new(
        Status::ItemExists,
        format!("extension {extension} belongs to room {other}"),
    )
}

/// Applies the plan, then whatever another pbxgate stored for the room
/// meanwhile: two processes applying two changes at once could interleave
/// their AstDB writes; the one that finishes last applies the latest state.
async fn apply_latest(ctx: &Ctx<'_>, plan: &mut Plan) -> Result<(), String> {
    apply(ctx, plan).await?;
    for _ in 0..WRITE_TRIES {
        let latest = match ctx.store.room(&plan.room.address).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("database: {e}")),
        };
        if latest.version == plan.room.version {
            return Ok(());
        }
        tracing::debug!(address = %latest.address, "pmsapi: the room changed meanwhile; applying its latest state");
        let follow = Plan {
            old_extension: Some(plan.room.extension.clone()),
            old_mwi: plan.room.mwi,
            mwi: plan.mwi || latest.mwi != plan.room.mwi,
            checkout: false,
            wakeup: None,
            write: true,
            room: latest,
        };
        *plan = follow;
        apply(ctx, plan).await?;
    }
    Ok(())
}

/// The room's new state on Asterisk.
async fn apply(ctx: &Ctx<'_>, plan: &Plan) -> Result<(), String> {
    let room = &plan.room;
    pbx::write_room(ctx.ami, room, plan.old_extension.as_deref()).await?;
    if plan.checkout && ctx.settings.clear_voicemail {
        let n = pbx::clear_voicemail(ctx.ami, ctx.settings, &room.extension).await?;
        if n > 0 {
            tracing::info!(extension = %room.extension, messages = n, "pmsapi: check-out emptied the room's mailbox");
        }
    }
    if let Some(old) = plan
        .old_extension
        .as_deref()
        .filter(|o| *o != room.extension)
    {
        // The lamp stays with the room, not with its old phone.
        if plan.old_mwi {
            pbx::set_mwi(ctx.ami, ctx.settings, old, false).await?;
        }
        if room.mwi {
            pbx::set_mwi(ctx.ami, ctx.settings, &room.extension, true).await?;
        }
    } else if plan.mwi {
        pbx::set_mwi(ctx.ami, ctx.settings, &room.extension, room.mwi).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
