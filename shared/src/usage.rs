//! The usage ledger's counters, written in the same transaction as the data they
//! count, so a point is counted exactly when its batch is first stored.
//!
//! - `{tenant}#usage` / `points#{YYYY-MM-DDTHH}`: points logged in that UTC hour;
//! - `{tenant}#usage` / `storage`: bytes the team stores now (the hourly roll-up
//!   samples it into GB-hours).

use time::OffsetDateTime;
use time::macros::format_description;

use crate::storage::kv::{Condition, Key, TxOp};
use crate::tenancy::Tenant;

pub const POINTS: &str = "points";
pub const BYTES: &str = "bytes";

fn partition(tenant: &Tenant) -> String {
    tenant.partition("usage")
}

pub fn points_key(tenant: &Tenant, at: OffsetDateTime) -> Key {
    let hour = at
        .format(format_description!("[year]-[month]-[day]T[hour]"))
        .expect("formatting a UTC hour");
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
