//! What a room's state means on Asterisk, over AMI: AstDB keys the shipped
//! dialplan reads (`pbxgate-room/<ext>/...`, `pbxgate-cos/<class>`), the
//! message-waiting lamp (MinivmMWI through context `pbxgate-mwi`), the room
//! mailbox emptied at check-out (app_voicemail's VoicemailBoxSummary /
//! VoicemailRemove), and wake-up calls (Originate into `pbxgate-wakeup`).

use asterisk::pbx::Manager;
use std::time::Duration;

use asterisk::ami::{Message, Reply};
use store::Room;
use tokio::sync::broadcast::error::RecvError;

use crate::config::PmsSettings;

pub const ROOM_FAMILY: &str = "pbxgate-room";
pub const COS_FAMILY: &str = "pbxgate-cos";
/// Every key a room has under `pbxgate-room/<ext>/`.
pub const ROOM_KEYS: [&str; 7] = ["state", "cos", "dnd", "name", "lang", "vip", "maid"];

/// How long the lamp's MessageWaiting event may take to show.
const MWI_CONFIRM: Duration = Duration::from_secs(5);

async fn action(ami: &dyn Manager, name: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    ami.action(name, headers)
        .await
        .map_err(|e| format!("{name}: {e}"))
}

fn refusal(name: &str, reply: &Reply) -> String {
    format!(
        "{name} refused: {}",
        reply.response.get("Message").unwrap_or("no message")
    )
}

async fn db_put(ami: &dyn Manager, family: &str, key: &str, value: &str) -> Result<(), String> {
    let reply = action(
        ami,
        "DBPut",
        &[("Family", family), ("Key", key), ("Val", value)],
    )
    .await?;
    if reply.is_success() {
        Ok(())
    } else {
        Err(refusal("DBPut", &reply))
    }
}

/// Deletes a key; a key that is not there is fine. (Asterisk answers
/// "Database entry could not be deleted" for a missing key and for a failed
/// delete alike; the latter does not happen short of a broken astdb file.)
async fn db_del(ami: &dyn Manager, family: &str, key: &str) -> Result<(), String> {
    let reply = action(ami, "DBDel", &[("Family", family), ("Key", key)]).await?;
    let missing = reply.response.get("Message").is_some_and(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("not found") || m.contains("could not be deleted")
    });
    if reply.is_success() || missing {
        Ok(())
    } else {
        Err(refusal("DBDel", &reply))
    }
}

async fn db_set(
    ami: &dyn Manager,
    family: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), String> {
    match value {
        Some(v) if !v.is_empty() => db_put(ami, family, key, v).await,
        _ => db_del(ami, family, key).await,
    }
}

/// The guest name as the dialplan shows it: no quote or backslash (they
/// would end up in `"name" <number>` caller IDs).
pub fn display_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c => c,
        })
        .collect()
}

/// Writes the room's keys. A room that moved from `old_extension` loses its
/// keys there. The state key is written last when the room is checked in
/// (its class of service is in place before calls may go out) and first
/// when it is vacant (no call goes out while the rest is cleared).
pub async fn write_room(
    ami: &dyn Manager,
    room: &Room,
    old_extension: Option<&str>,
) -> Result<(), String> {
    if let Some(old) = old_extension.filter(|o| *o != room.extension) {
        for k in ROOM_KEYS {
            db_del(ami, ROOM_FAMILY, &format!("{old}/{k}")).await?;
        }
    }
    let ext = &room.extension;
    let key = |k: &str| format!("{ext}/{k}");
    let state = if room.checked_in { "in" } else { "out" };
    if !room.checked_in {
        db_put(ami, ROOM_FAMILY, &key("state"), state).await?;
    }
    let flag = |b: bool| if b { "1" } else { "0" };
    let name =
        (room.checked_in && !room.guest_name.is_empty()).then(|| display_name(&room.guest_name));
    db_put(ami, ROOM_FAMILY, &key("cos"), &room.cos.to_string()).await?;
    db_put(ami, ROOM_FAMILY, &key("dnd"), flag(room.dnd)).await?;
    db_set(ami, ROOM_FAMILY, &key("name"), name.as_deref()).await?;
    db_set(ami, ROOM_FAMILY, &key("lang"), Some(&room.language)).await?;
    db_put(ami, ROOM_FAMILY, &key("vip"), flag(room.vip)).await?;
    db_set(ami, ROOM_FAMILY, &key("maid"), Some(&room.room_status)).await?;
    if room.checked_in {
        db_put(ami, ROOM_FAMILY, &key("state"), state).await?;
    }
    Ok(())
}

/// The number classes of the class of service.
pub async fn write_cos(ami: &dyn Manager, s: &PmsSettings) -> Result<(), String> {
    db_set(ami, COS_FAMILY, "local", Some(&s.local_regex)).await?;
    db_set(ami, COS_FAMILY, "national", Some(&s.national_regex)).await?;
    db_set(ami, COS_FAMILY, "always", Some(&s.always_regex)).await
}

/// The lamp's mailbox for a room's extension.
pub fn mwi_mailbox(s: &PmsSettings, extension: &str) -> String {
    format!("{extension}@{}", s.mwi_context)
}

/// Lights (one new message) or clears the room's message-waiting lamp, and
/// waits until Asterisk reports the mailbox's new state.
pub async fn set_mwi(
    ami: &dyn Manager,
    s: &PmsSettings,
    extension: &str,
    on: bool,
) -> Result<(), String> {
    let mailbox = mwi_mailbox(s, extension);
    let new = if on { "1" } else { "0" };
    let mut events = ami.subscribe();
    let reply = action(
        ami,
        "Originate",
        &[
            ("Channel", "Local/s@pbxgate-mwi/n"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("Timeout", "5000"),
            ("Async", "true"),
            ("Variable", &format!("PBXGATE_MWI_BOX={mailbox}")),
            ("Variable", &format!("PBXGATE_MWI_NEW={new}")),
            ("Variable", "CDR_PROP(disable)=1"),
        ],
    )
    .await?;
    if !reply.is_success() {
        return Err(refusal("Originate (pbxgate-mwi)", &reply));
    }
    let seen = wait_for(&mut events, MWI_CONFIRM, |m| {
        m.event() == Some("MessageWaiting")
            && m.get("Mailbox") == Some(mailbox.as_str())
            && m.get("New") == Some(new)
    })
    .await;
    if seen.is_some() {
        Ok(())
    } else {
        Err(format!(
            "Asterisk did not report mailbox {mailbox} with {new} new message(s) \
             (is app_minivm loaded and context pbxgate-mwi in the dialplan?)"
        ))
    }
}

/// Waits for the first event that `pick` accepts.
async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Message>>,
    limit: Duration,
    pick: impl Fn(&Message) -> bool,
) -> Option<std::sync::Arc<Message>> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Ok(m)) if pick(&m) => return Some(m),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => return None,
        }
    }
}

/// Removes every message (all folders) of the room's mailbox. Returns how
/// many; 0 when the mailbox does not exist or app_voicemail is not loaded.
pub async fn clear_voicemail(
    ami: &dyn Manager,
    s: &PmsSettings,
    extension: &str,
) -> Result<usize, String> {
    let ctx = s.voicemail_context.as_str();
    let reply = action(
        ami,
        "VoicemailBoxSummary",
        &[("Context", ctx), ("Mailbox", extension)],
    )
    .await?;
    if !reply.is_success() {
        let message = reply.response.get("Message").unwrap_or("");
        if message
            .to_ascii_lowercase()
            .contains("invalid/unknown command")
        {
            tracing::debug!("app_voicemail is not loaded: no mailbox to empty");
            return Ok(0);
        }
        return Err(refusal("VoicemailBoxSummary", &reply));
    }
    let mut removed = 0;
    for m in reply
        .events
        .iter()
        .filter(|e| e.event() == Some("VoicemailBoxDetail"))
    {
        let (Some(folder), Some(id)) = (m.get("Folder"), m.get("ID")) else {
            continue;
        };
        let r = action(
            ami,
            "VoicemailRemove",
            &[
                ("Context", ctx),
                ("Mailbox", extension),
                ("Folder", folder),
                ("ID", id),
            ],
        )
        .await?;
        let ok = r.is_success()
            && r.response
                .get("Message")
                .is_some_and(|m| m.to_ascii_lowercase().contains("successful"));
        if !ok {
            return Err(refusal("VoicemailRemove", &r));
        }
        removed += 1;
    }
    Ok(removed)
}

/// How a wake-up call attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rang {
    Answered,
    NoAnswer,
    Busy,
    Congestion,
    Failed,
}

impl Rang {
    pub fn as_str(self) -> &'static str {
        match self {
            Rang::Answered => "answered",
            Rang::NoAnswer => "no answer",
            Rang::Busy => "busy",
            Rang::Congestion => "congestion",
            Rang::Failed => "failed",
        }
    }

    /// From OriginateResponse's `Reason` (Asterisk's AST_CONTROL_* of the
    /// call's end: 4 answer, 3 ringing timeout, 5 busy, 8 congestion).
    fn from_reason(reason: Option<&str>) -> Rang {
        match reason {
            Some("4") => Rang::Answered,
            Some("3") => Rang::NoAnswer,
            Some("5") => Rang::Busy,
            Some("8") => Rang::Congestion,
            _ => Rang::Failed,
        }
    }
}

/// Rings the room (`Local/<ext>@<wakeup_context>`); once answered, the
/// dialplan context `pbxgate-wakeup` plays the prompt and the time. Waits
/// for the call's OriginateResponse.
pub async fn dial_wakeup(
    ami: &dyn Manager,
    s: &PmsSettings,
    extension: &str,
    id: i64,
    attempt: i64,
) -> Rang {
    let epoch = crate::clock::now_ms() / 1000;
    // Channel ids in Asterisk's <epoch>.<suffix> shape: the CDR's linkedid
    // names the call and the wake-up call it belongs to.
    let channel_id = format!("{epoch}.wakeup-{id}-{attempt}");
    let other_id = format!("{channel_id}-2");
    let ring_ms = s.wakeup_ring.as_millis().to_string();
    let mut events = ami.subscribe();
    let reply = action(
        ami,
        "Originate",
        &[
            (
                "Channel",
                &format!("Local/{extension}@{}", s.wakeup_context),
            ),
            ("Context", "pbxgate-wakeup"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Timeout", &ring_ms),
            ("Async", "true"),
            ("CallerID", &format!("\"{}\" <>", s.wakeup_caller_name)),
            ("ChannelId", &channel_id),
            ("OtherChannelId", &other_id),
            ("Variable", "PBXGATE_WAKEUP=1"),
            (
                "Variable",
                &format!("PBXGATE_WAKEUP_PROMPT={}", s.wakeup_prompt),
            ),
            ("Variable", "CDR_PROP(disable)=1"),
        ],
    )
    .await;
    match reply {
        Ok(r) if r.is_success() => {}
        Ok(r) => {
            tracing::warn!(id, attempt, reason = %refusal("Originate", &r), "wake-up call not placed");
            return Rang::Failed;
        }
        Err(e) => {
            tracing::warn!(id, attempt, error = %e, "wake-up call not placed");
            return Rang::Failed;
        }
    }
    let limit = s.wakeup_ring + Duration::from_secs(30);
    match wait_for(&mut events, limit, |m| {
        m.event() == Some("OriginateResponse") && m.get("Uniqueid") == Some(channel_id.as_str())
    })
    .await
    {
        Some(m) => Rang::from_reason(m.get("Reason")),
        None => {
            tracing::warn!(id, attempt, "no OriginateResponse for a wake-up call");
            Rang::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_lose_quotes_and_backslashes() {
        assert_eq!(display_name("Jane \"JJ\" O\\Doe"), "Jane 'JJ' O/Doe");
        assert_eq!(display_name("Jürgen, (VIP)"), "Jürgen, (VIP)");
    }

    #[test]
    fn originate_reasons() {
        assert_eq!(Rang::from_reason(Some("4")), Rang::Answered);
        assert_eq!(Rang::from_reason(Some("3")), Rang::NoAnswer);
        assert_eq!(Rang::from_reason(Some("5")), Rang::Busy);
        assert_eq!(Rang::from_reason(Some("8")), Rang::Congestion);
        assert_eq!(Rang::from_reason(Some("0")), Rang::Failed);
        assert_eq!(Rang::from_reason(None), Rang::Failed);
    }
}
