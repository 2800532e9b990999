//! The hourly usage roll-up: for each hour, each tenant's logged points and a sample
//! of the bytes it stores, written once as an immutable hourly record.
//!
//! The roll-up's work scales with the tenants that matter for an hour, never with the
//! items stored: writers mark a tenant active for the hour they count points in, and
//! mark it as a storage holder the first time it stores bytes. Both marks live in
//! global partitions whose sort keys are tenant ids (the design's global lookups):
//! `metering#hour#{hour}` / `{tenant}` and `metering#storers` / `{tenant}`. A process
//! remembers the marks it wrote, so a busy tenant costs one mark per hour per process.
//! A storer mark keeps when the tenant first stored, so an hour rolled up again (or
//! late) never samples a tenant that started storing after the hour ended.
//!
//! Records: `{tenant}#usage` / `hour#{hour}` holds `{points, storage_bytes,
//! byte_seconds}`, written only if absent, so rolling an hour up twice changes
//! nothing. `byte_seconds` is the hour's exact integral of the bytes stored, from the
//! hour's counters (`usage`'s header says how); records written before the integral
//! existed carry only `storage_bytes`, a sample taken when the hour was rolled up,
//! which bills as that many bytes the whole hour. `metering` / `cursor` remembers the
//! last hour rolled up; a run fills in every hour missed since (up to
//! `MAX_BACKFILL_HOURS`). The very first run (no cursor yet) starts at the first hour
//! anything happened in, so a deployment whose metering first ran days late still
//! bills from its first point.
//!
//! A deleted team is sampled until the month it was deleted in is closed, so its
//! final report bills its last hours; then its marks go (`metering#closed`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::calendar::{BillingMonth, hour_label, hour_of};
use crate::ids::TenantId;
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError, StoreResult, Value, WriteOp};
use sextant_storage::records::{doc_item, get_doc};

/// Tenants whose records one roll-up writes at once: every storing tenant is sampled
/// every hour, so a deployment with thousands of them must not visit them one by one.
pub(crate) const TENANTS_AT_ONCE: usize = 16;

/// How far back a run fills in missed hours.
pub const MAX_BACKFILL_HOURS: i64 = 24 * 31;

fn active_partition(hour: OffsetDateTime) -> String {
    format!("metering#hour#{}", hour_label(hour))
}

const STORERS: &str = "metering#storers";

/// The marks this process has written, so each is written once.
#[derive(Debug, Default)]
pub struct Marks {
    written: Mutex<HashSet<(String, TenantId)>>,
    /// The teams found without a budget stop moments ago, whose log calls need not
    /// read their counters.
    pub unstopped: usage::Unstopped,
}

impl Marks {
    /// Whether this is the first time the process marks `partition` for `tenant`.
    pub(crate) fn first_time(&self, partition: &str, tenant: TenantId) -> bool {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Old hours' marks are never needed again; keep the set small.
        if written.len() > 100_000 {
            written.clear();
        }
        written.insert((partition.to_owned(), tenant))
    }
}

impl Marks {
    /// Forgets a mark whose write failed, so the next write tries again.
    pub(crate) fn forget(&self, partition: &str, tenant: TenantId) {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(partition.to_owned(), tenant));
    }
}

/// What a write that counts points needs besides the store: the plan's monthly cap
/// and the marks this process has written.
#[derive(Debug, Clone, Copy)]
pub struct Meter<'a> {
    pub marks: &'a Marks,
    pub points_cap: Option<u64>,
}

/// The attribute of a storer mark holding when the tenant first stored bytes (Unix
/// seconds): hours that ended before then are not sampled for it, even when they are
/// rolled up (again, or late) after it started storing.
const SINCE: &str = "since";

async fn mark(
    store: &Store,
    marks: &Marks,
    partition: String,
    tenant: &Tenant,
    since: Option<OffsetDateTime>,
) -> StoreResult<()> {
    if !marks.first_time(&partition, tenant.id()) {
        return Ok(());
    }
    let mut item = Item::new(Key::new(partition.clone(), tenant.id().to_string()));
    if let Some(since) = since {
        item = item.with(SINCE, Value::N(since.unix_timestamp()));
    }
    // The first mark stays: later ones would move `since` forward.
    match store.kv.put(item, Condition::NotExists).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(err) => {
            marks.forget(&partition, tenant.id());
            Err(err)
        }
    }
}

/// Marks the tenant as logging points in the hour holding `at`. Call before the write
/// that counts them: a mark without points costs nothing, points without a mark would
/// never be rolled up.
pub async fn mark_active(
    store: &Store,
    marks: &Marks,
    tenant: &Tenant,
    at: OffsetDateTime,
) -> StoreResult<()> {
    mark(store, marks, active_partition(hour_of(at)), tenant, None).await
}

/// Marks the tenant as storing bytes, so every hour from now on samples it. Call
/// before the write that grows its storage.
pub async fn mark_storer(store: &Store, marks: &Marks, tenant: &Tenant) -> StoreResult<()> {
    mark(store, marks, STORERS.to_owned(), tenant, Some(store.now())).await
}

/// Teams deleted (`deletion::delete_team`), with when their data was gone: each is
/// sampled until the month it was deleted in is closed (its final report), and from
/// then on no more (`forget_closed`).
const CLOSED: &str = "metering#closed";

/// Marks a deleted team whose data is all gone, so its billing stops once its final
/// report is made. The first mark stays, as the storer mark's does.
pub async fn mark_closed(store: &Store, tenant: &Tenant) -> StoreResult<()> {
    let item = Item::new(Key::new(CLOSED, tenant.id().to_string()))
        .with(SINCE, Value::N(store.now().unix_timestamp()));
    match store.kv.put(item, Condition::NotExists).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(err) => Err(err),
    }
}

/// After `month`'s reports are closed: the teams deleted before it ended have had
/// their final report, so the roll-up stops visiting them. Answers how many.
pub async fn forget_closed(store: &Store, month: BillingMonth) -> StoreResult<usize> {
    let mut forgotten = 0;
    for (tenant, since) in marked(store, CLOSED).await? {
        if since.is_some_and(|since| since < month.end()) {
            let sk = tenant.to_string();
            store
                .kv
                .batch_write(vec![
                    WriteOp::Delete(Key::new(STORERS, sk.clone())),
                    WriteOp::Delete(Key::new(CLOSED, sk)),
                ])
                .await?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// One tenant's usage in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourlyUsage {
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub points: u64,
    /// Bytes stored at the hour's end (in records written before `byte_seconds`
    /// existed: when the hour was rolled up).
    pub storage_bytes: u64,
    /// The bytes stored times the seconds they were stored, over the hour; absent
    /// from records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_seconds: Option<u64>,
}

impl HourlyUsage {
    /// The hour's byte-seconds: its integral, or for an old record its sample held
    /// the whole hour.
    pub fn byte_seconds(&self) -> u64 {
        self.byte_seconds
            .unwrap_or_else(|| self.storage_bytes.saturating_mul(3600))
    }
}

/// One hour's counters (`usage::points_key`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HourCounters {
    points: u64,
    bytes_delta: i64,
    byte_moment: i64,
}

/// A tenant's hour counters from some hour on, and the bytes it stores, as of one
/// moment: what every hour's figures since are computed from.
#[derive(Debug)]
struct Ledger {
    stored_now: u64,
    /// By sort key (`points#{hour}`), which sorts as the hours do.
    hours: BTreeMap<String, HourCounters>,
}

/// Reads of the ledger at most: a change landing between the reads makes them
/// disagree and the read is taken again; a team changing its storage that often
/// gets the last reading, off by the changes made while it was taken.
const LEDGER_READS: usize = 4;

impl Ledger {
    /// The hour counters from `from` on and the bytes stored now, read so that they
    /// agree: the counters are read before and after the bytes, and again if a
    /// change landed in between.
    async fn read(store: &Store, tenant: &Tenant, from: OffsetDateTime) -> StoreResult<Self> {
        let mut before = Self::hour_counters(store, tenant, from).await?;
        let mut attempt = 1;
        loop {
            let stored_now = counter(store, &usage::totals_key(tenant), usage::BYTES).await?;
            let after = Self::hour_counters(store, tenant, from).await?;
            attempt += 1;
            if after == before || attempt >= LEDGER_READS {
                return Ok(Self {
                    stored_now,
                    hours: after,
                });
            }
            before = after;
        }
    }

    async fn hour_counters(
        store: &Store,
        tenant: &Tenant,
        from: OffsetDateTime,
    ) -> StoreResult<BTreeMap<String, HourCounters>> {
        // Sort keys after the hour before `from`'s are `from`'s hour and later ones.
        let mut query = Query::partition(usage::partition(tenant))
            .prefix("points#")
            .after(Some(
                usage::points_key(tenant, hour_of(from) - Duration::HOUR).sk,
            ));
        let mut hours = BTreeMap::new();
        loop {
            let page = store.kv.query(query.clone()).await?;
            for item in page.items {
                let n = |name| item.n(name).unwrap_or(0);
                let counters = HourCounters {
                    points: u64::try_from(n(usage::POINTS)).unwrap_or(0),
                    bytes_delta: n(usage::BYTES_DELTA),
                    byte_moment: n(usage::BYTE_MOMENT),
                };
                hours.insert(item.key.sk, counters);
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(hours),
            }
        }
    }

    /// The hour's usage: its points, and its byte-seconds from the bytes at its end
    /// (stored now, less every change made after it). For the hour still going, what
    /// it will come to if nothing changes before it ends.
    fn hour(&self, tenant: &Tenant, hour: OffsetDateTime) -> HourlyUsage {
        let sort_key = usage::points_key(tenant, hour).sk;
        let counters = self.hours.get(&sort_key).copied().unwrap_or_default();
        let changed_since: i64 = self
            .hours
            .range::<String, _>((
                std::ops::Bound::Excluded(&sort_key),
                std::ops::Bound::Unbounded,
            ))
            .map(|(_, later)| later.bytes_delta)
            .sum();
        let at_end = i128::from(self.stored_now) - i128::from(changed_since);
        let byte_seconds = at_end * 3600 - i128::from(counters.byte_moment);
        HourlyUsage {
            hour,
            points: counters.points,
            storage_bytes: u64::try_from(at_end).unwrap_or(0),
            byte_seconds: Some(u64::try_from(byte_seconds).unwrap_or(0)),
        }
    }
}

fn hourly_key(tenant: &Tenant, hour: OffsetDateTime) -> Key {
    Key::new(
        usage::partition(tenant),
        format!("hour#{}", hour_label(hour)),
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    #[serde(with = "time::serde::rfc3339")]
    last_hour: OffsetDateTime,
}

fn cursor_key() -> Key {
    Key::new("metering", "cursor")
}

/// Every tenant that has stored bytes, in id order.
pub(crate) async fn storing_tenants(store: &Store) -> StoreResult<Vec<TenantId>> {
    let mut tenants: Vec<TenantId> = marked(store, STORERS)
        .await?
        .into_iter()
        .map(|(tenant, _)| tenant)
        .collect();
    tenants.sort();
    Ok(tenants)
}

/// The tenants marked in a partition, with when each mark says they started.
async fn marked(
    store: &Store,
    partition: &str,
) -> StoreResult<Vec<(TenantId, Option<OffsetDateTime>)>> {
    let mut query = Query::partition(partition);
    let mut tenants = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        tenants.extend(page.items.iter().filter_map(|item| {
            let tenant = item.key.sk.parse::<TenantId>().ok()?;
            let since = item
                .n(SINCE)
                .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
            Some((tenant, since))
        }));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(tenants),
        }
    }
}

async fn counter(store: &Store, key: &Key, attr: &str) -> StoreResult<u64> {
    Ok(store
        .kv
        .get(key)
        .await?
        .and_then(|item| item.n(attr))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// Rolls up one hour: a record for every tenant active in it or storing bytes. After
/// the last hour of a month it calls `month_ended`, through which the metering run
/// closes the month's reports (`billing::close_month`); a run that fails there leaves
/// the cursor before the hour, so the next run rolls it up and closes again. Answers
/// how many records it wrote (0 when the hour was rolled up already).
pub async fn roll_up_hour<MonthEnded, E>(
    store: &Store,
    hour: OffsetDateTime,
    month_ended: &impl Fn(BillingMonth) -> MonthEnded,
) -> Result<usize, E>
where
    MonthEnded: Future<Output = Result<(), E>>,
    E: From<StoreError>,
{
    let hour = hour_of(hour);
    let end = hour + Duration::HOUR;
    let month = BillingMonth::of(hour);
    let mut tenants: BTreeSet<TenantId> = marked(store, &active_partition(hour))
        .await?
        .into_iter()
        .map(|(tenant, _)| tenant)
        .collect();
    tenants.extend(
        marked(store, STORERS)
            .await?
            .into_iter()
            .filter(|(_, since)| since.is_none_or(|since| since < end))
            .map(|(tenant, _)| tenant),
    );
    let written: Vec<bool> = futures::stream::iter(tenants)
        .map(|tenant| record_hour(store, Tenant::verified(tenant), hour, month))
        .buffer_unordered(TENANTS_AT_ONCE)
        .try_collect()
        .await?;
    let written = written.into_iter().filter(|&written| written).count();
    if end == month.end() {
        month_ended(month).await?;
    }
    Ok(written)
}

/// One tenant's record for the hour, written if absent; answers whether it was.
async fn record_hour(
    store: &Store,
    tenant: Tenant,
    hour: OffsetDateTime,
    month: BillingMonth,
) -> StoreResult<bool> {
    let record = Ledger::read(store, &tenant, hour)
        .await?
        .hour(&tenant, hour);
    // The month's bill will be made for every tenant with an hour in it.
    store
        .kv
        .put(
            Item::new(Key::new(month_partition(month), tenant.id().to_string())),
            Condition::None,
        )
        .await?;
    match store
        .kv
        .put(
            doc_item(hourly_key(&tenant, hour), &record)?,
            Condition::NotExists,
        )
        .await
    {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(err) => Err(err),
    }
}

fn month_partition(month: BillingMonth) -> String {
    format!("metering#month#{month}")
}

/// Every tenant with at least one hour rolled up in the month.
pub async fn billed_tenants(store: &Store, month: BillingMonth) -> StoreResult<BTreeSet<TenantId>> {
    Ok(marked(store, &month_partition(month))
        .await?
        .into_iter()
        .map(|(tenant, _)| tenant)
        .collect())
}

/// Rolls up `through` and every hour missed since the last run, oldest first.
/// Answers the hours it rolled up.
pub async fn roll_up_through<MonthEnded, E>(
    store: &Store,
    through: OffsetDateTime,
    month_ended: &impl Fn(BillingMonth) -> MonthEnded,
) -> Result<Vec<OffsetDateTime>, E>
where
    MonthEnded: Future<Output = Result<(), E>>,
    E: From<StoreError>,
{
    let through = hour_of(through);
    let cursor: Option<Cursor> = get_doc(&*store.kv, &cursor_key()).await?;
    let earliest = through - Duration::hours(MAX_BACKFILL_HOURS - 1);
    let mut hour = match cursor {
        Some(cursor) => cursor.last_hour + Duration::HOUR,
        None => first_activity(store, earliest, through).await?,
    }
    .max(earliest);
    let mut done = Vec::new();
    while hour <= through {
        roll_up_hour(store, hour, month_ended).await?;
        done.push(hour);
        hour += Duration::HOUR;
    }
    if let Some(&last) = done.last() {
        store
            .kv
            .put(
                doc_item(cursor_key(), &Cursor { last_hour: last })?,
                Condition::None,
            )
            .await?;
    }
    Ok(done)
}

/// The first hour in `[from, through]` that a tenant logged in or stored bytes in, or
/// `through` when none did: where the first roll-up of a deployment starts. It looks
/// at each hour's marks in turn (one small query an hour, once in a deployment's life).
async fn first_activity(
    store: &Store,
    from: OffsetDateTime,
    through: OffsetDateTime,
) -> StoreResult<OffsetDateTime> {
    let first_storer = marked(store, STORERS)
        .await?
        .into_iter()
        .filter_map(|(_, since)| since)
        .min()
        .map(hour_of);
    let mut hour = from;
    while hour < through && first_storer.is_none_or(|first| hour < first) {
        let query = Query::partition(active_partition(hour)).limit(1);
        if !store.kv.query(query).await?.items.is_empty() {
            return Ok(hour);
        }
        hour += Duration::HOUR;
    }
    Ok(first_storer.map_or(through, |first| first.min(through)))
}

/// How far back hours not rolled up yet are shown from the live counters: a metering
/// run that has not succeeded for longer than this is an outage, which alarms.
pub const PROVISIONAL_HOURS: i64 = 48;

/// A tenant's hours in `[from, to)` that are not rolled up yet (after the last hour a
/// run finished, at most `PROVISIONAL_HOURS` back, through the hour holding `now`), as
/// the live counters have them now: their points so far, and their byte-seconds (the
/// hour still going as if nothing changes before it ends). What the next run will
/// record, unless more arrives meanwhile.
pub async fn provisional(
    store: &Store,
    tenant: &Tenant,
    from: OffsetDateTime,
    to: OffsetDateTime,
    now: OffsetDateTime,
) -> StoreResult<Vec<HourlyUsage>> {
    let current = hour_of(now);
    let cursor: Option<Cursor> = get_doc(&*store.kv, &cursor_key()).await?;
    let mut hour = cursor
        .map_or(from, |cursor| cursor.last_hour + Duration::HOUR)
        .max(hour_of(from))
        .max(current - Duration::hours(PROVISIONAL_HOURS - 1));
    let last = current.min(hour_of(to - Duration::NANOSECOND));
    if hour > last {
        return Ok(Vec::new());
    }
    let ledger = Ledger::read(store, tenant, hour).await?;
    let mut hours = Vec::new();
    while hour <= last {
        let usage = ledger.hour(tenant, hour);
        if usage.points > 0 || usage.byte_seconds() > 0 {
            hours.push(usage);
        }
        hour += Duration::HOUR;
    }
    Ok(hours)
}

/// A tenant's hourly records in `[from, to)`.
pub async fn hourly(
    store: &Store,
    tenant: &Tenant,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> StoreResult<Vec<HourlyUsage>> {
    let query = Query::partition(usage::partition(tenant)).between(
        format!("hour#{}", hour_label(hour_of(from))),
        format!("hour#{}", hour_label(hour_of(to - Duration::NANOSECOND))),
    );
    sextant_storage::records::query_docs(&*store.kv, query).await
}
