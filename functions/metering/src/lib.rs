//! The metering function, run hourly by an EventBridge schedule. It takes the hour it
//! accounts for from its event, never from the clock, so a late or repeated invocation
//! accounts for the right hour and tests can drive simulated days.
//!
//! Each run rolls up the hour its event names and every hour missed before it
//! (`sextant_shared::metering`), then settles the sweep's notes that have fallen due
//! (`sextant_shared::sweep`), so that every byte stored is billed or gone; running an
//! hour twice changes nothing.

use serde::{Deserialize, Serialize};
use sextant_shared::billing;
use sextant_shared::calendar::BillingMonth;
use sextant_shared::error::ApiResult;
use sextant_shared::state::AppState;
use sextant_shared::sweep::{self, Claimant};
use sextant_shared::{artifacts, images, metering};
use time::OffsetDateTime;

/// What one run did.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    /// Hours rolled up.
    pub hours: usize,
    /// Sweep notes settled, and the bytes their settling deleted.
    pub notes: usize,
    pub bytes_deleted: u64,
}

/// The metering run for the hour that ended at `hour.end()`: the roll-up, then the
/// sweep of every note due by then.
pub async fn run(state: &AppState, hour: MeteringHour) -> ApiResult<RunReport> {
    let hours = roll_up_through(state, hour.start).await?;
    let mut report = sweep_due(state, hour.end()).await?;
    report.hours = hours.len();
    Ok(report)
}

/// Rolls up `through` and every hour missed before it, closing the reports of each
/// month whose last hour it rolls up: the roll-up of every metering run (this
/// function's, `sextant serve`'s and `sextant meter`'s).
pub async fn roll_up_through(
    state: &AppState,
    through: OffsetDateTime,
) -> ApiResult<Vec<OffsetDateTime>> {
    metering::roll_up_through(&state.store, through, &|month| close_reports(state, month)).await
}

/// Rolls up one hour again (or for the first time), closing its month's reports if it
/// is the month's last.
pub async fn roll_up_hour(state: &AppState, hour: OffsetDateTime) -> ApiResult<usize> {
    metering::roll_up_hour(&state.store, hour, &|month| close_reports(state, month)).await
}

/// The month-end step the roll-up calls: billing closes the month's reports.
async fn close_reports(state: &AppState, month: BillingMonth) -> ApiResult<()> {
    billing::close_month(&state.store, &state.settings.plan, month)
        .await
        .map(drop)
}

/// Settles every sweep note due at `now`, hour by hour, forgetting each once settled
/// and moving the cursor past each hour once all of its notes are; a note to be looked
/// at again (a checksum still being computed) is noted anew for the next hour.
pub async fn sweep_due(state: &AppState, now: OffsetDateTime) -> ApiResult<RunReport> {
    let kv = &*state.store.kv;
    let mut report = RunReport::default();
    for hour in sweep::due_hours(kv, now).await? {
        for (key, note) in sweep::notes(kv, hour).await? {
            let (deleted, again) = match &note.claimant {
                Claimant::Artifact { run, path } => {
                    artifacts::settle(
                        &state.store,
                        state.settings.verify_slice_bytes,
                        &note,
                        *run,
                        path,
                    )
                    .await?
                }
                Claimant::Image { run, index } => (
                    images::settle(&state.store, &note, *run, index).await?,
                    false,
                ),
            };
            if again {
                sweep::expect(kv, &note, now).await?;
            }
            sweep::forget(kv, &key).await?;
            report.notes += 1;
            report.bytes_deleted += deleted;
        }
        sweep::settled_through(kv, hour).await?;
    }
    Ok(report)
}

/// An EventBridge scheduled event; only its `time` matters here.
#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// The whole UTC hour an invocation accounts for: the hour that ended at or before
/// the event's time (a 13:00:07 event accounts for 12:00–13:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeteringHour {
    pub start: OffsetDateTime,
}

impl MeteringHour {
    pub fn ending_at_or_before(time: OffsetDateTime) -> Self {
        let time = time.to_offset(time::UtcOffset::UTC);
        let top = time
            .replace_minute(0)
            .and_then(|t| t.replace_second(0))
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap_or_else(|_| unreachable!("0 is a valid minute, second and nanosecond"));
        Self {
            start: top - time::Duration::HOUR,
        }
    }

    pub fn end(&self) -> OffsetDateTime {
        self.start + time::Duration::HOUR
    }
}

impl From<&ScheduledEvent> for MeteringHour {
    fn from(event: &ScheduledEvent) -> Self {
        Self::ending_at_or_before(event.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_event_just_after_the_hour_accounts_for_the_hour_before() {
        let event: ScheduledEvent = serde_json::from_str(
            r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events",
                "time":"2026-11-05T13:00:07Z","region":"us-east-1","resources":[],"detail":{}}"#,
        )
        .unwrap();
        let hour = MeteringHour::from(&event);
        assert_eq!(hour.start, datetime!(2026-11-05 12:00 UTC));
        assert_eq!(hour.end(), datetime!(2026-11-05 13:00 UTC));
    }

    #[test]
    fn an_event_exactly_on_the_hour_accounts_for_the_hour_that_just_ended() {
        let hour = MeteringHour::ending_at_or_before(datetime!(2026-11-05 00:00 UTC));
        assert_eq!(hour.start, datetime!(2026-11-04 23:00 UTC));
    }
}
