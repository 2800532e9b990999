//! The calendar month usage is billed by, in UTC: hours roll up into it
//! (`metering`) and its report is priced and closed by `billing`.

use time::{Date, Month, OffsetDateTime, Time};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// A calendar month in UTC, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingMonth {
    pub year: i32,
    pub month: Month,
}

impl BillingMonth {
    pub fn parse(text: &str) -> ApiResult<Self> {
        let invalid = || ApiError::new(ErrorCode::InvalidMonth, "month is YYYY-MM, e.g. 2026-11");
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
