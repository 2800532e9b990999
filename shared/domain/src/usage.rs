//! The usage ledger's counters, written in the same transaction as the data they
//! count, so a point is counted exactly when its batch is first stored and a byte is
//! billed for exactly the seconds it is stored.
//!
//! - `{tenant}#usage` / `points#{YYYY-MM-DDTHH}`: the hour's counters, which the hourly
//!   roll-up reads: `points` logged in it, and of the storage changes made in it their
//!   sum (`bytes_delta`) and their sum weighted by the second of the hour each was made
//!   in (`byte_moment`, Σ δ·s);
//! - `{tenant}#usage` / `totals`: `bytes` the team stores now and `points#{YYYY-MM}`,
//!   points logged in each month, which a plan's monthly cap is checked against. One
//!   item for both, so a batch that stores and counts writes two team counter items,
//!   not three. It also holds `stop#{YYYY-MM}`, the points a team's budget lets the
//!   month hold under a hard stop (`budgets`), so the one read that checks the plan's
//!   cap checks the budget's too;
//! - for each run, the same figures (what the run table and the run page show): its
//!   series' on its record (`RunRecord::count`), which the writes that count them
//!   write anyway; its images' and artifacts' in `{tenant}#project#{project}` /
//!   `usage#{run}`, which also takes its record's when the run is deleted, so a team's
//!   runs always add up to the team.
//!
//! Why moments: a counter can only be added to, never multiplied by elapsed time, yet
//! an hour's byte-seconds are B_end·3600 − Σ δ·s (every byte stored at hour's end
//! counted the whole hour, less the seconds before each change made it so). With the
//! bytes at the hour's end, the hour's two sums give its exact integral
//! (`metering::roll_up_hour`), whenever the roll-up runs.
//!
//! Writers also mark the tenant for the roll-up (`metering::mark_active`,
//! `metering::mark_storer`) before these writes.

use time::OffsetDateTime;

use crate::calendar::BillingMonth;
use crate::error::{Coded, Error, ErrorCode};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, StoreError, TxOp, Value};

pub const POINTS: &str = "points";
pub const BYTES: &str = "bytes";
/// In an hour's counters: the sum of the storage changes made in the hour.
pub const BYTES_DELTA: &str = "bytes_delta";
/// In an hour's counters: Σ δ·s over the hour's storage changes, s the second of the
/// hour the change was made in.
pub const BYTE_MOMENT: &str = "byte_moment";
/// In a run's counters, Σ δ·t (t in Unix seconds) in two parts, `hi`·2³² + `lo`: a
/// run holding a terabyte for a year would pass a 64-bit counter in one.
const MOMENT_HI: &str = "moment_hi";
const MOMENT_LO: &str = "moment_lo";

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

fn month_points_attr(month: BillingMonth) -> String {
    format!("points#{month}")
}

/// The run a write counts for: every point logged and every byte stored belongs to
/// one (`runs::usage_owner` names it).
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    pub tenant: &'a Tenant,
    pub run: crate::ids::RunId,
    /// The run's counters (see the module's header).
    pub counters: Key,
}

/// An amount to add to a counter attribute.
type Delta = (String, i64);

/// The deltas of `delta` bytes stored (or, negative, released) at `at` for its hour's
/// counters.
fn hour_storage_deltas(at: OffsetDateTime, delta: i64) -> [Delta; 2] {
    let hour = crate::calendar::hour_of(at);
    let second_of_hour = at.unix_timestamp() - hour.unix_timestamp();
    [
        (BYTES_DELTA.into(), delta),
        (BYTE_MOMENT.into(), delta.saturating_mul(second_of_hour)),
    ]
}

/// What `delta` bytes stored at `at` add to a run's Σ δ·t (t in Unix seconds).
pub fn moment_of(at: OffsetDateTime, delta: i64) -> i128 {
    i128::from(delta) * i128::from(at.unix_timestamp())
}

/// Counts `points` logged now that store `bytes`, for the team, refused (as a failed
/// condition on the second operation) if they would take the month past `cap` (the
/// `Limit` `check_quota` answered). The run counts them too, in the same transaction:
/// on its record (`RunRecord::count`) where the transaction writes it, else in its
/// counters item (`run_counted`).
pub fn logged(
    cap: Option<u64>,
    tenant: &Tenant,
    at: OffsetDateTime,
    points: u64,
    bytes: u64,
) -> [TxOp; 2] {
    let points = i64::try_from(points).unwrap_or(i64::MAX);
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let month_attr = month_points_attr(BillingMonth::of(at));
    let condition = match cap {
        Some(cap) => Condition::AtMost(
            month_attr.clone(),
            i64::try_from(cap)
                .unwrap_or(i64::MAX)
                .saturating_sub(points),
        ),
        None => Condition::None,
    };
    let mut hour = vec![(POINTS.into(), points)];
    if bytes != 0 {
        hour.extend(hour_storage_deltas(at, bytes));
    }
    [
        TxOp::Add {
            key: points_key(tenant, at),
            deltas: hour,
            condition: Condition::None,
        },
        TxOp::Add {
            key: totals_key(tenant),
            deltas: vec![(month_attr, points), (BYTES.into(), bytes)],
            condition,
        },
    ]
}

/// Index, within the operations `logged` answers, of the one a cap refuses.
pub const CAPPED_OP: usize = 1;

/// Grows (or, negative, shrinks) the bytes the team stores, from `at`. The run
/// counts them too, as for `logged`.
pub fn storage_change(tenant: &Tenant, at: OffsetDateTime, delta: i64) -> [TxOp; 2] {
    [
        TxOp::Add {
            key: totals_key(tenant),
            deltas: vec![(BYTES.into(), delta)],
            condition: Condition::None,
        },
        TxOp::Add {
            key: points_key(tenant, at),
            deltas: hour_storage_deltas(at, delta).into(),
            condition: Condition::None,
        },
    ]
}

/// Stores (or, negative, releases) `delta` bytes of an object of a run (an image, an
/// artifact) from `at`: for the team, and in the run's counters item.
pub fn object_stored(owner: Owner<'_>, at: OffsetDateTime, delta: i64) -> [TxOp; 3] {
    let [totals, hour] = storage_change(owner.tenant, at, delta);
    [
        totals,
        hour,
        run_counted(owner, 0, delta, moment_of(at, delta)),
    ]
}

/// Adds to the run's counters item what its record does not count: images' points,
/// images' and artifacts' bytes from `at`, and, when the run is deleted, what its
/// record counted (`moment`, its Σ δ·t).
pub fn run_counted(owner: Owner<'_>, points: u64, bytes: i64, moment: i128) -> TxOp {
    // |Σ δ·t| may pass 64 bits (a terabyte for a year does): two parts, hi·2³² + lo,
    // each well inside.
    let (hi, lo) = (moment >> 32, moment & 0xFFFF_FFFF);
    TxOp::Add {
        key: owner.counters,
        deltas: vec![
            (POINTS.into(), i64::try_from(points).unwrap_or(i64::MAX)),
            (BYTES.into(), bytes),
            (MOMENT_HI.into(), i64::try_from(hi).unwrap_or(i64::MAX)),
            (MOMENT_LO.into(), lo as i64),
        ],
        condition: Condition::None,
    }
}

/// What a run has logged and stored: its record's counts and its counters item's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunUsage {
    pub points: u64,
    /// Bytes the run stores now.
    pub bytes: u64,
    /// Σ δ·t over the run's storage changes.
    moment: i128,
}

impl RunUsage {
    /// A run's counters item.
    pub fn from_item(item: &Item) -> Self {
        let n = |name| item.n(name).unwrap_or(0);
        Self {
            points: u64::try_from(n(POINTS)).unwrap_or(0),
            bytes: u64::try_from(n(BYTES)).unwrap_or(0),
            moment: (i128::from(n(MOMENT_HI)) << 32) + i128::from(n(MOMENT_LO)),
        }
    }

    /// Counts from a run's record: its series' points and bytes, and their Σ δ·t.
    pub fn counted(points: u64, bytes: u64, moment: i128) -> Self {
        Self {
            points,
            bytes,
            moment,
        }
    }

    /// The two counts of one run added up.
    pub fn and(self, other: Self) -> Self {
        Self {
            points: self.points + other.points,
            bytes: self.bytes + other.bytes,
            moment: self.moment + other.moment,
        }
    }

    /// The bytes the run stored, times the seconds it stored them, through `at`.
    pub fn byte_seconds(&self, at: OffsetDateTime) -> u64 {
        let through = i128::from(self.bytes) * i128::from(at.unix_timestamp());
        u64::try_from(through - self.moment).unwrap_or(0)
    }
}

/// The attribute of the `totals` item holding a budget's hard stop for a month: one
/// more than the most points the month may hold, so that absent and 0 both mean "no
/// stop". Only `set_budget_stop` writes it, by adding to it under a condition on what
/// it held (the port sets no attribute of a counter item without replacing the item).
fn stop_attr(month: BillingMonth) -> String {
    format!("stop#{month}")
}

/// What refuses points this month: the plan's cap or a budget's hard stop, as the most
/// points the month may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Plan(u64),
    Budget(u64),
}

impl Limit {
    pub fn points(self) -> u64 {
        match self {
            Self::Plan(points) | Self::Budget(points) => points,
        }
    }

    /// The refusal of points past this limit, for a request refused by `logged`'s
    /// condition.
    pub fn refusal(self, at: OffsetDateTime) -> UsageError {
        let month = BillingMonth::of(at);
        match self {
            Self::Plan(cap) => UsageError::QuotaExceeded { cap, month },
            Self::Budget(_) => UsageError::BudgetExceeded { month },
        }
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
    #[error(
        "this team has spent its monthly budget for {month} and its admins set a hard stop; \
         nothing from this request was stored (an admin can raise or lift the budget)"
    )]
    BudgetExceeded { month: BillingMonth },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for UsageError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
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

/// What the `totals` item says of a month: the points logged in it, and the budget's
/// hard stop, if one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthTotals {
    pub points: u64,
    pub budget_stop: Option<u64>,
}

fn month_totals(totals: Option<&Item>, month: BillingMonth) -> MonthTotals {
    let points = totals
        .and_then(|item| item.n(&month_points_attr(month)))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0));
    let budget_stop = totals
        .and_then(|item| item.n(&stop_attr(month)))
        .and_then(|stored| u64::try_from(stored).ok())
        .and_then(|stored| stored.checked_sub(1));
    MonthTotals {
        points,
        budget_stop,
    }
}

/// The month's points and budget stop as stored now.
pub async fn totals(
    store: &Store,
    tenant: &Tenant,
    month: BillingMonth,
) -> Result<MonthTotals, StoreError> {
    let item = store.kv.get(&totals_key(tenant)).await?;
    Ok(month_totals(item.as_ref(), month))
}

/// How long a process trusts finding a team without a budget stop.
pub const UNSTOPPED_FOR: time::Duration = time::Duration::minutes(1);

/// The teams this process found without a budget stop, and when. Most teams have none,
/// and a log call that has no plan cap to check either skips reading the `totals`
/// item for a team found so in the last `UNSTOPPED_FOR`: a read a call would add a
/// tenth to what the SDK's batches cost. A stop set meanwhile by another process (the
/// hourly run on Lambda) applies within that time, one set through this process
/// (`forget`) at once, and a team with a stop is read on every call.
#[derive(Debug, Default)]
pub struct Unstopped {
    seen: std::sync::Mutex<std::collections::HashMap<crate::ids::TenantId, OffsetDateTime>>,
}

impl Unstopped {
    fn seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<crate::ids::TenantId, OffsetDateTime>>
    {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recently(&self, tenant: &Tenant, at: OffsetDateTime) -> bool {
        self.seen()
            .get(&tenant.id())
            .is_some_and(|&seen| at >= seen && at - seen < UNSTOPPED_FOR)
    }

    fn note(&self, tenant: &Tenant, at: OffsetDateTime, stopped: bool) {
        let mut seen = self.seen();
        if stopped {
            seen.remove(&tenant.id());
        } else {
            // Teams long quiet are never asked about again; keep the map small.
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(tenant.id(), at);
        }
    }

    /// Forgets what this process found of the team, for a change to its budget.
    pub fn forget(&self, tenant: &Tenant) {
        self.seen().remove(&tenant.id());
    }
}

/// Refuses `points` more this month if they would pass the plan's `cap` or the
/// budget's hard stop, and answers the limit that applies, which the commit's
/// `logged` checks again, atomically. Checked before a batch writes anything; one
/// read, of the `totals` item, unless there is no cap and the team was found without
/// a stop moments ago (`Unstopped`).
pub async fn check_quota(
    store: &Store,
    cap: Option<u64>,
    unstopped: &Unstopped,
    tenant: &Tenant,
    at: OffsetDateTime,
    points: u64,
) -> Result<Option<Limit>, UsageError> {
    if cap.is_none() && unstopped.recently(tenant, at) {
        return Ok(None);
    }
    let month = totals(store, tenant, BillingMonth::of(at)).await?;
    unstopped.note(tenant, at, month.budget_stop.is_some());
    let limit = match (cap.map(Limit::Plan), month.budget_stop.map(Limit::Budget)) {
        (Some(plan), Some(budget)) => Some(if budget.points() < plan.points() {
            budget
        } else {
            plan
        }),
        (plan, budget) => plan.or(budget),
    };
    if let Some(limit) = limit
        && month.points.saturating_add(points) > limit.points()
    {
        return Err(limit.refusal(at));
    }
    Ok(limit)
}

/// Sets (or, with `None`, lifts) the month's budget stop to `points`, unless it holds
/// that already. The budget's evaluations call this; two at once (an hourly run, an
/// admin's change) each read, then add under a condition on what they read.
pub async fn set_budget_stop(
    store: &Store,
    tenant: &Tenant,
    month: BillingMonth,
    points: Option<u64>,
) -> Result<(), StoreError> {
    let attr = stop_attr(month);
    let wanted = points.map_or(0, |points| {
        i64::try_from(points)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1)
    });
    for _ in 0..CONFLICT_ATTEMPTS {
        let held = store
            .kv
            .get(&totals_key(tenant))
            .await?
            .and_then(|item| item.n(&attr))
            .unwrap_or(0);
        if held == wanted {
            return Ok(());
        }
        // 0 stands for absent too, and nothing below 0 is ever stored.
        let condition = if held == 0 {
            Condition::AtMost(attr.clone(), 0)
        } else {
            Condition::Equals(attr.clone(), Value::N(held))
        };
        let add = TxOp::Add {
            key: totals_key(tenant),
            deltas: vec![(attr.clone(), wanted - held)],
            condition,
        };
        match store.kv.transact(vec![add]).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_conflict() => continue,
            Err(err) => return Err(err),
        }
    }
    Err(StoreError::TransactionConflict)
}

/// How often a budget stop is read and written again when another write changed it
/// in between.
const CONFLICT_ATTEMPTS: usize = 5;
