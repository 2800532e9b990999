//! The metering function, run hourly by an EventBridge schedule. It takes the hour it
//! accounts for from its event, never from the clock, so a late or repeated invocation
//! accounts for the right hour and tests can drive simulated days.
//!
//! Each run rolls up the hour its event names and every hour missed before it
//! (`sextant_shared::metering`); running an hour twice changes nothing.

use serde::Deserialize;
use time::OffsetDateTime;

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
