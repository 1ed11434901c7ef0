//! Places the wake-up calls the store holds, at their time, from every
//! pbxgate process connected to the database: each due call is claimed with a
//! conditional update, so only one process dials it. A call that is not
//! answered is retried (`[pms] wakeup_attempts`, `wakeup_retry_secs`); one
//! whose time passed while no pbxgate was running is placed if it is at most
//! `wakeup_grace_secs` late, else marked `missed`. A claim outlives a
//! process that stopped while dialling by `ring + CLAIM_MARGIN` at most,
//! then the call goes back to pending.

use asterisk::pbx::Manager;
use std::sync::Arc;
use std::time::Duration;

use store::{PmsStore, Store, Wakeup};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::pbx::{self, Rang};
use crate::clock::now_ms;
use crate::config::PmsSettings;

/// How often due calls are looked for.
const TICK: Duration = Duration::from_millis(500);
/// A claim lasts the ring time plus this.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);
/// Due calls read per tick.
const BATCH: i64 = 50;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub async fn run(store: Store, ami: Arc<dyn Manager>, settings: Arc<PmsSettings>, node: String) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let calls = Arc::new(Semaphore::new(settings.wakeup_concurrency));
    let mut ringing: JoinSet<()> = JoinSet::new();
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        while ringing.try_join_next().is_some() {}
        if !ami.state().borrow().is_up() {
            continue;
        }
        if n % 20 == 1 {
            match store
                .release_stale_wakeups(now_ms(), i64::from(settings.wakeup_attempts))
                .await
            {
                Ok(0) => {}
                Ok(k) => tracing::warn!(
                    calls = k,
                    "wake-up calls left dialling by a stopped pbxgate: back to pending"
                ),
                Err(e) => tracing::warn!(error = %e, "wake-up calls: cannot release stale claims"),
            }
        }
        let due = match store.due_wakeups(now_ms(), BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "wake-up calls: cannot read due calls");
                continue;
            }
        };
        for w in due {
            let now = now_ms();
            if now.saturating_sub(w.next_attempt_ms) > ms(settings.wakeup_grace) {
                match store.miss_wakeup(w.id, now).await {
                    Ok(true) => tracing::warn!(
                        id = w.id,
                        address = %w.address,
                        late_s = (now - w.next_attempt_ms) / 1000,
                        "wake-up call missed: pbxgate was not running at its time"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "wake-up calls: cannot mark a call missed")
                    }
                }
                continue;
            }
            let Ok(permit) = calls.clone().try_acquire_owned() else {
                break;
            };
            let until = now.saturating_add(ms(settings.wakeup_ring + CLAIM_MARGIN));
            let attempt = match store.claim_wakeup(w.id, &node, now, until).await {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up calls: cannot claim a call");
                    continue;
                }
            };
            let (store, ami, settings, node) =
                (store.clone(), ami.clone(), settings.clone(), node.clone());
            ringing.spawn(async move {
                place(&store, ami.as_ref(), &settings, &node, &w, attempt).await;
                drop(permit);
            });
        }
    }
}

/// One attempt at a claimed call, and its outcome in the store.
async fn place(
    store: &Store,
    ami: &dyn Manager,
    s: &PmsSettings,
    node: &str,
    w: &Wakeup,
    attempt: i64,
) {
    let extension = match store.room(&w.address).await {
        Ok(Some(room)) => room.extension,
        Ok(None) => w.address.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "wake-up calls: cannot read the room");
            w.address.clone()
        }
    };
    tracing::info!(id = w.id, address = %w.address, %extension, attempt, "wake-up call: ringing the room");
    let rang = pbx::dial_wakeup(ami, s, &extension, w.id, attempt).await;
    let now = now_ms();
    let (status, next) = if rang == Rang::Answered {
        (store::WakeupStatus::Answered, now)
    } else if attempt < i64::from(s.wakeup_attempts) {
        (
            store::WakeupStatus::Pending,
            now.saturating_add(ms(s.wakeup_retry)),
        )
    } else {
        (store::WakeupStatus::Failed, now)
    };
    match store
        .finish_wakeup(w.id, node, attempt, status, rang.as_str(), next, now)
        .await
    {
        Ok(true) => tracing::info!(
            id = w.id,
            address = %w.address,
            attempt,
            outcome = rang.as_str(),
            status = status.as_str(),
            "wake-up call attempt ended"
        ),
        Ok(false) => tracing::info!(
            id = w.id,
            attempt,
            outcome = rang.as_str(),
            "wake-up call attempt ended after the call was cancelled"
        ),
        Err(e) => tracing::warn!(error = %e, id = w.id, "wake-up calls: cannot record an outcome"),
    }
}
