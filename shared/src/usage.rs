//! The usage ledger's counters, written in the same transaction as the data they
//! count, so a point is counted exactly when its batch is first stored.
//!
//! - `{tenant}#usage` / `points#{YYYY-MM-DDTHH}`: points logged in that UTC hour;
//! - `{tenant}#usage` / `storage`: bytes the team stores now (the hourly roll-up
//!   samples it into GB-hours).
//!
//! Writers also mark the tenant for the roll-up (`metering::mark_active`,
//! `metering::mark_storer`) before these writes.

use time::OffsetDateTime;

use crate::storage::kv::{Condition, Key, TxOp};
use crate::tenancy::Tenant;

pub const POINTS: &str = "points";
pub const BYTES: &str = "bytes";

pub(crate) fn partition(tenant: &Tenant) -> String {
    tenant.partition("usage")
}

pub fn points_key(tenant: &Tenant, at: OffsetDateTime) -> Key {
    let hour = crate::metering::hour_label(crate::metering::hour_of(at));
    Key::new(partition(tenant), format!("points#{hour}"))
}

pub fn storage_key(tenant: &Tenant) -> Key {
    Key::new(partition(tenant), "storage")
}

/// Counts `points` logged now.
pub fn points_logged(tenant: &Tenant, at: OffsetDateTime, points: u64) -> TxOp {
    TxOp::Add {
        key: points_key(tenant, at),
        attr: POINTS.into(),
        delta: points as i64,
        condition: Condition::None,
    }
}

/// Grows (or, negative, shrinks) the team's stored bytes.
pub fn storage_change(tenant: &Tenant, delta: i64) -> TxOp {
    TxOp::Add {
        key: storage_key(tenant),
        attr: BYTES.into(),
        delta,
        condition: Condition::None,
    }
}
