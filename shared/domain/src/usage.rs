//! The usage ledger's counters, written in the same transaction as the data they
//! count, so a point is counted exactly when its batch is first stored.
//!
//! - `{tenant}#usage` / `points#{YYYY-MM-DDTHH}`: points logged in that UTC hour, which
//!   the hourly roll-up reads;
//! - `{tenant}#usage` / `totals`: `bytes` the team stores now (the roll-up samples it
//!   into GB-hours) and `points#{YYYY-MM}`, points logged in each month, which a plan's
//!   monthly cap is checked against. One item for both, so a batch that stores and
//!   counts writes two counter items, not three.
//!
//! Writers also mark the tenant for the roll-up (`metering::mark_active`,
//! `metering::mark_storer`) before these writes.

use time::OffsetDateTime;

use crate::calendar::BillingMonth;
use crate::error::{Coded, Error, ErrorCode};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Key, StoreError, TxOp};

pub const POINTS: &str = "points";
pub const BYTES: &str = "bytes";

pub(crate) fn partition(tenant: &Tenant) -> String {
    tenant.partition("usage")
}

pub fn points_key(tenant: &Tenant, at: OffsetDateTime) -> Key {
    let hour = crate::calendar::hour_label(crate::calendar::hour_of(at));
    Key::new(partition(tenant), format!("points#{hour}"))
}

pub fn totals_key(tenant: &Tenant) -> Key {
    Key::new(partition(tenant), "totals")
}

fn month_points_attr(at: OffsetDateTime) -> String {
    format!("points#{}", BillingMonth::of(at))
}

/// Counts `points` logged now that store `bytes`, refused (as a failed condition on
/// the second operation) if they would take the month past `cap` (the plan's).
pub fn logged(
    cap: Option<u64>,
    tenant: &Tenant,
    at: OffsetDateTime,
    points: u64,
    bytes: u64,
) -> [TxOp; 2] {
    let points = i64::try_from(points).unwrap_or(i64::MAX);
    let month_attr = month_points_attr(at);
    let condition = match cap {
        Some(cap) => Condition::AtMost(
            month_attr.clone(),
            i64::try_from(cap)
                .unwrap_or(i64::MAX)
                .saturating_sub(points),
        ),
        None => Condition::None,
    };
    [
        TxOp::Add {
            key: points_key(tenant, at),
            deltas: vec![(POINTS.into(), points)],
            condition: Condition::None,
        },
        TxOp::Add {
            key: totals_key(tenant),
            deltas: vec![
                (month_attr, points),
                (BYTES.into(), i64::try_from(bytes).unwrap_or(i64::MAX)),
            ],
            condition,
        },
    ]
}

/// Index, within the operations `logged` answers, of the one a cap refuses.
pub const CAPPED_OP: usize = 1;

/// Grows (or, negative, shrinks) the team's stored bytes.
pub fn storage_change(tenant: &Tenant, delta: i64) -> TxOp {
    TxOp::Add {
        key: totals_key(tenant),
        deltas: vec![(BYTES.into(), delta)],
        condition: Condition::None,
    }
}

/// Why usage refuses a write.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(
        "this team's plan allows {cap} points a month and this request would pass that in \
         {month}; nothing from it was stored"
    )]
    QuotaExceeded { cap: u64, month: BillingMonth },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for UsageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::Store(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Store(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

/// Refuses `points` more this month if they would pass `cap` (the plan's). Checked
/// before a batch writes anything; the commit checks again, atomically.
pub async fn check_quota(
    store: &Store,
    cap: Option<u64>,
    tenant: &Tenant,
    at: OffsetDateTime,
    points: u64,
) -> Result<(), UsageError> {
    let Some(cap) = cap else {
        return Ok(());
    };
    let logged = store
        .kv
        .get(&totals_key(tenant))
        .await?
        .and_then(|item| item.n(&month_points_attr(at)))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0));
    if logged.saturating_add(points) > cap {
        return Err(quota_exceeded(cap, at));
    }
    Ok(())
}

/// The refusal of points past the month's cap, for a request refused by `logged`'s
/// condition.
pub fn quota_exceeded(cap: u64, at: OffsetDateTime) -> UsageError {
    UsageError::QuotaExceeded {
        cap,
        month: BillingMonth::of(at),
    }
}
