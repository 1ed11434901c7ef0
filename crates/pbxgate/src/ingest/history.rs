//! Keeping years of CDRs: on PostgreSQL the partitions of the coming months
//! are made ahead of the legs that go in them, and `database.
//! cdr_retention_months` drops whole old months; on SQLite retention
//! deletes the old legs. Every node runs it (the store serialises the
//! partition work), at start and every hour.

use std::time::Duration;

use store::{CdrHistoryStore, Store};

/// Months made ahead of the current one.
const AHEAD: i32 = 2;
const EVERY: Duration = Duration::from_secs(3600);

/// The first instant (Unix ms) of the UTC month `offset` months from the
/// one containing `now_ms`.
pub fn month_start_ms(now_ms: i64, offset: i32) -> Option<i64> {
    let utc = jiff::tz::TimeZone::UTC;
    let now = utc.to_datetime(jiff::Timestamp::from_millisecond(now_ms).ok()?);
    let first = now.first_of_month().start_of_day();
    let month = first.checked_add(jiff::Span::new().months(offset)).ok()?;
    let zoned = utc.to_ambiguous_zoned_datetime(month).compatible().ok()?;
    Some(zoned.timestamp().as_millisecond())
}

/// One pass: the months ahead, then retention (`keep` months besides the
/// current one; 0 keeps all).
pub async fn pass(store: &Store, now_ms: i64, keep: u32) {
    let ahead: Vec<i64> = (0..=AHEAD)
        .filter_map(|k| month_start_ms(now_ms, k))
        .collect();
    if let Err(e) = store.cdr_months_make(&ahead).await {
        tracing::warn!(error = %e, "cannot make the CDR partitions of the coming months; will retry in an hour");
    }
    if keep == 0 {
        return;
    }
    let Some(before) = month_start_ms(now_ms, -i32::try_from(keep).unwrap_or(i32::MAX)) else {
        return;
    };
    match store.drop_cdrs_before(before).await {
        Ok(r) if !r.months_dropped.is_empty() || r.legs_deleted > 0 => tracing::info!(
            months = ?r.months_dropped,
            legs = r.legs_deleted,
            before_ms = before,
            "CDR retention: removed the legs of calls older than database.cdr_retention_months"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "CDR retention failed; will retry in an hour"),
    }
}

/// Runs `pass` at start and every hour.
pub async fn run(store: Store, keep: u32) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pass(&store, crate::clock::now_ms(), keep).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-12-07T23:00:00Z
        let now = 1_796_684_400_000;
        assert_eq!(month_start_ms(now, 0), Some(1_796_083_200_000)); // 2026-12-01
        assert_eq!(month_start_ms(now, 1), Some(1_798_761_600_000)); // 2027-01-01
        assert_eq!(month_start_ms(now, -12), Some(1_764_547_200_000)); // 2025-12-01
        assert_eq!(month_start_ms(i64::MAX, 0), None);
    }
}
