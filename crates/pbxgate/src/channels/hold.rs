//! `mute` / `unmute` / `hold` / `unhold`.
//!
//! Mute is AMI `MuteAudio` on the audio *from* the channel's phone: the other
//! party no longer hears it, it still hears the other party (the UCM guide's
//! words). It ends with the channel.
//!
//! Asterisk has no hold for a channel it does not control: AMI has no hold
//! action, and ARI's `/channels/{id}/hold` only works on channels in Stasis,
//! while calls run in `Dial()`. So hold is built from parts that leave the
//! call itself (its bridge, CDR and recording) untouched:
//! - `MuteAudio` both ways on the held channel: neither party hears the other;
//! - an ARI Snoop channel on the other party, whispering into what it hears,
//!   playing music on hold (the default class).
//!
//! Unhold hangs the Snoop channel up and lifts the mute (not a `mute` the
//! client asked for: channel variables remember both). Without ARI, hold is
//! the silent part only. The Snoop channel ends with the other party; should
//! the held channel hang up first, a watcher ends it at once.

use asterisk::pbx::{Manager, Stasis};
use std::sync::Arc;
use std::time::Duration;

use asterisk::ari::Event;
use tokio::sync::broadcast::error::RecvError;

use super::{ActionError, Asterisk};
use crate::live::model::{self as list, Chan};

/// Set to `1` on a channel while it is held / muted by a client.
const HELD: &str = "PBXGATE_HELD";
const MUTED: &str = "PBXGATE_MUTED";
/// The Stasis arguments of the music channel (`callcontrol` leaves it alone).
const SNOOP_ARGS: &str = "pbxgate-hold";
/// How long the Snoop channel may take to enter Stasis.
const SNOOP_START: Duration = Duration::from_secs(3);

impl Asterisk<'_> {
    async fn mute_audio(
        &self,
        channel: &str,
        direction: &str,
        on: bool,
    ) -> Result<(), ActionError> {
        self.send(
            "MuteAudio",
            &[
                ("Channel", channel),
                ("Direction", direction),
                ("State", if on { "on" } else { "off" }),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn flag(&self, channel: &str, var: &str) -> Result<bool, ActionError> {
        let r = self
            .send("Getvar", &[("Channel", channel), ("Variable", var)])
            .await?;
        Ok(r.get("Value") == Some("1"))
    }

    async fn set_flag(&self, channel: &str, var: &str, on: bool) -> Result<(), ActionError> {
        self.send(
            "Setvar",
            &[
                ("Channel", channel),
                ("Variable", var),
                ("Value", if on { "1" } else { "" }),
            ],
        )
        .await
        .map(|_| ())
    }
}

/// The id of the Snoop channel that plays music while `held` is held.
fn snoop_id(held: &Chan) -> String {
    format!("pbxgate-hold-{}", held.uniqueid)
}

pub(super) async fn mute(pbx: &Asterisk<'_>, c: &Chan, on: bool) -> Result<(), ActionError> {
    pbx.set_flag(&c.name, MUTED, on).await?;
    // A held channel stays silent until unhold.
    if on || !pbx.flag(&c.name, HELD).await? {
        pbx.mute_audio(&c.name, "in", on).await?;
    }
    Ok(())
}

pub(super) async fn hold(pbx: &Asterisk<'_>, chans: &[Chan], i: usize) -> Result<(), ActionError> {
    let held = &chans[i];
    let Some(other) = list::far_end(chans, i) else {
        return Err(ActionError::NotInCall(held.name.clone()));
    };
    if pbx.flag(&held.name, HELD).await? {
        return Ok(());
    }
    pbx.mute_audio(&held.name, "all", true).await?;
    match pbx.ari_up() {
        Some(ari) => {
            let id = snoop_id(held);
            if let Err(e) = music(ari.as_ref(), &chans[other].uniqueid, &id).await {
                let _ = ari.hangup(&id, "normal").await;
                let muted = pbx.flag(&held.name, MUTED).await.unwrap_or(false);
                let _ = pbx.mute_audio(&held.name, "out", false).await;
                if !muted {
                    let _ = pbx.mute_audio(&held.name, "in", false).await;
                }
                return Err(ActionError::Pbx(e));
            }
            watch(pbx.ami.clone(), ari.clone(), held.uniqueid.clone(), id);
        }
        None => tracing::warn!(
            channel = held.name,
            "hold without music: ARI is not configured or not connected"
        ),
    }
    pbx.set_flag(&held.name, HELD, true).await
}

/// Plays music on hold to the channel `other_id` through a Snoop channel
/// named `id`.
async fn music(ari: &dyn Stasis, other_id: &str, id: &str) -> Result<(), asterisk::Error> {
    let mut events = ari.subscribe();
    ari.snoop(other_id, "none", "out", id, SNOOP_ARGS).await?;
    // The Snoop channel enters Stasis on its own thread; music needs it there.
    let entered = tokio::time::timeout(SNOOP_START, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Event::StasisStart { channel, .. } = &*e
                        && channel.id == id
                    {
                        return true;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return false,
            }
        }
    })
    .await;
    if entered != Ok(true) {
        return Err(asterisk::Error::Timeout("the hold music channel".into()));
    }
    ari.start_moh(id).await
}

/// Ends the music when the held channel hangs up (or the music channel ends).
fn watch(ami: Arc<dyn Manager>, ari: Arc<dyn Stasis>, held: String, snoop: String) {
    tokio::spawn(async move {
        let mut events = ami.subscribe();
        loop {
            match events.recv().await {
                Ok(m) => {
                    if m.event() != Some("Hangup") {
                        continue;
                    }
                    let id = m.get("Uniqueid").unwrap_or_default();
                    if id == snoop {
                        return;
                    }
                    if id == held {
                        if let Err(e) = ari.hangup(&snoop, "normal").await {
                            tracing::debug!(error = %e, "hold music already ended");
                        }
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "AMI events missed while watching a held call");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

pub(super) async fn unhold(pbx: &Asterisk<'_>, held: &Chan) -> Result<(), ActionError> {
    if let Some(ari) = pbx.ari_up() {
        match ari.hangup(&snoop_id(held), "normal").await {
            Ok(()) | Err(asterisk::Error::NotFound(_)) => {}
            Err(e) => return Err(ActionError::Pbx(e)),
        }
    }
    pbx.mute_audio(&held.name, "out", false).await?;
    if !pbx.flag(&held.name, MUTED).await? {
        pbx.mute_audio(&held.name, "in", false).await?;
    }
    pbx.set_flag(&held.name, HELD, false).await
}
