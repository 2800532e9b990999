//! The calendar of usage, in UTC: points are counted by the hour, hours roll up into
//! months (`metering`), and a month's report is priced and closed by `billing`.

use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, Time};

use crate::error::{Coded, ErrorCode};

/// A month that is not written `YYYY-MM`.
#[derive(Debug, thiserror::Error)]
#[error("month is YYYY-MM, e.g. 2026-11")]
pub struct InvalidMonth;

impl Coded for InvalidMonth {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidMonth
    }
}

/// A calendar month in UTC, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingMonth {
    pub year: i32,
    pub month: Month,
}

impl BillingMonth {
    pub fn parse(text: &str) -> Result<Self, InvalidMonth> {
        let invalid = || InvalidMonth;
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        let year: i32 = year
            .parse()
            .ok()
            .filter(|y| (2000..=9999).contains(y))
            .ok_or_else(invalid)?;
        let month: u8 = month
            .parse()
            .ok()
            .filter(|_| month.len() == 2)
            .ok_or_else(invalid)?;
        let month = Month::try_from(month).map_err(|_| invalid())?;
        Ok(Self { year, month })
    }

    pub fn of(at: OffsetDateTime) -> Self {
        let at = at.to_offset(time::UtcOffset::UTC);
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    pub fn start(&self) -> OffsetDateTime {
        Date::from_calendar_date(self.year, self.month, 1)
            .expect("the first of a month exists")
            .with_time(Time::MIDNIGHT)
            .assume_utc()
    }

    pub fn end(&self) -> OffsetDateTime {
        let (year, month) = match self.month {
            Month::December => (self.year + 1, Month::January),
            month => (self.year, month.next()),
        };
        Self { year, month }.start()
    }
}

impl std::fmt::Display for BillingMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

/// The start of the UTC hour holding `at`.
pub fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or_else(|_| unreachable!("0 is a valid minute, second and nanosecond"))
}

/// An hour as it appears in keys: `2026-11-05T13`.
pub fn hour_label(hour: OffsetDateTime) -> String {
    hour.format(format_description!("[year]-[month]-[day]T[hour]"))
        .expect("formatting a UTC hour")
}
