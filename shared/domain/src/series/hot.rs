//! Hot batches: a log batch stored in one write, and the rounds that settle it.
//!
//! A batch of a few hundred points used to cost six requests and about 17 write units,
//! whatever its size: a marker, one item per series, and a transaction rewriting the
//! run record and two usage counters. Most of that is the same work for every batch
//! of a run, so it is now done once for many batches:
//!
//! - **The write** is one transaction of two small items: the batch's receipt (its
//!   own record, which must not exist yet, or its sender session's, which must hold
//!   an earlier number: a retry fails the condition and stores nothing) and the hot item
//!   (`h#{arrival}#{batch id}`), holding every chunk of the batch: 4 to 6 write units
//!   at a live run's few hundred points, both items billed twice. Readers read the hot
//!   items after the run's `settled_through` as they are, so a point is readable as
//!   soon as its write answers. (A batch that starts a series, or is larger than
//!   `MAX_HOT_BYTES`, is committed whole instead: `batch::log`.)
//! - **A round** settles a run's hot batches up to an arrival time: it merges their
//!   points per series into chunk items (one per series, not per batch), merges
//!   their summaries into the run record, and counts their points and bytes, in one
//!   commit (the same marker-then-transaction commit a large batch uses) that moves
//!   `settled_through`. A point is counted exactly once because the mark moves in the
//!   transaction that counts it. The round's chunk items carry the mark they settle
//!   through (`SETTLED`), and a reader that loaded the record before the round skips
//!   them, reading the hot items instead: no read sees a point twice or misses one.
//!
//! Who runs rounds (`Settling`): in `sextant serve`, the write itself, right after it
//! stores its batch, under a lock on the team that every write of this process takes,
//! so summaries and usage are exact at once. On Lambda many processes write, and a
//! round may only settle batches old enough that no write of an earlier arrival can
//! still be committing (`SETTLE_AFTER`); a write runs a round when the run's mark is
//! older than that by `SETTLE_EVERY`, and the hourly run settles what is left before it
//! folds. Hot items expire after `KEEP` (DynamoDB deletes them for free); reads never
//! look behind the mark, so expired ones are never missed.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::batch::{self, Encoded};
use super::{DATA, Points, Result, SeriesData, SeriesError, TextPoints, WRITTEN, nanos, pending};
use crate::ids::RunId;
use crate::metering::{self, Marks, Meter};
use crate::runs::summary::SeriesKind;
use crate::runs::{self, RunError, Status};
use crate::sweep::{self, Claimant};
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, TxOp, Value};
use sextant_storage::records::{CONFLICT_ATTEMPTS, TTL};

const PREFIX: &str = "h#";
/// On chunk items written by a round: the mark it settles through. A reader whose
/// record has an earlier mark skips them and reads their hot items instead.
pub(super) const SETTLED: &str = "a";
/// A request lives at most 30 s (`request_deadline`; a Lambda 10 s), so a batch that
/// arrived this long ago has committed or never will: a deferred round settles up to
/// here, and no batch can turn up behind its mark.
pub const SETTLE_AFTER: Duration = Duration::minutes(1);
/// How often, at most, writes to a run settle it in a deployment of many processes.
pub const SETTLE_EVERY: Duration = Duration::minutes(1);
/// Hot items expire this long after they arrive. Rounds run every minute a run
/// logs and every hour after, so a batch is settled long before; the hourly run would
/// have to fail for a week for one to expire unsettled.
const KEEP: Duration = Duration::days(7);
/// Most points one round settles, so a backlog (a week of a fast run) is settled in
/// rounds of bounded memory.
const ROUND_POINTS: u64 = 2_000_000;
/// The largest hot item. Past a few kilobytes a batch costs less written as chunk
/// items (one write unit a kilobyte) than inside a transaction (two), and DynamoDB
/// holds at most 400 KB in an item.
pub(super) const MAX_HOT_BYTES: usize = 4 * 1024;

/// When a process settles the hot batches its writes store.
#[derive(Debug, Clone, Copy)]
pub enum Settling<'a> {
    /// Right after each write, under the team's lock: for a process that is the only
    /// one writing to its store (`sextant serve`).
    Inline(&'a TeamLocks),
    /// At most every `SETTLE_EVERY` a run, `SETTLE_AFTER` behind its writes, and by the
    /// hourly run: for many processes writing to one store (Lambda).
    Deferred,
}

/// Locks a process holds while it stores and settles a team's batches, so that a
/// round settling up to now knows every earlier batch has committed. Striped: teams
/// share a lock now and then, which only serialises them.
#[derive(Debug)]
pub struct TeamLocks {
    stripes: Vec<tokio::sync::Mutex<i64>>,
}

impl Default for TeamLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(0)).collect(),
        }
    }
}

/// A team's lock while held: hands out arrival times that only grow, so a batch never
/// arrives at or before a mark a round already set, however coarse the clock.
pub(super) struct Held<'a>(tokio::sync::MutexGuard<'a, i64>);

impl Held<'_> {
    pub(super) fn arrival(&mut self, now: OffsetDateTime) -> i64 {
        *self.0 = nanos(now).max(*self.0 + 1);
        *self.0
    }
}

impl TeamLocks {
    pub(super) async fn lock(&self, tenant: &Tenant) -> Held<'_> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tenant.id().hash(&mut hasher);
        let stripe = (hasher.finish() % self.stripes.len() as u64) as usize;
        Held(self.stripes[stripe].lock().await)
    }
}

/// Whether this process should try a round for the run now: once a minute at most, so
/// that the writes of a run whose batches are all too recent to settle do not each
/// look for some.
pub(super) fn round_due(marks: &Marks, tenant: &Tenant, run: RunId, now: OffsetDateTime) -> bool {
    let minute = now.unix_timestamp() / 60;
    marks.first_time(&format!("settle#{minute}#{run}"), tenant.id())
}

/// One chunk of a hot batch, as the batch encoded it: borrowed from the batch when
/// written, owned when read back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct HotChunk<'a> {
    pub kind: SeriesKind,
    pub name: Cow<'a, str>,
    /// Points in the chunk, so a round sizes itself without decoding.
    pub points: u64,
    pub bytes: Cow<'a, [u8]>,
}

/// A hot batch as read back.
#[derive(Debug)]
pub(super) struct HotBatch {
    /// Names the batch's chunks in the order reads answer points in.
    pub sk: String,
    pub arrived: i64,
    pub chunks: Vec<HotChunk<'static>>,
}

impl HotBatch {
    /// The chunks of one series, each with the place-name reads order it by.
    pub(super) fn chunks_of<'a>(
        &'a self,
        kind: SeriesKind,
        name: &'a str,
    ) -> impl Iterator<Item = (String, &'a [u8])> + 'a {
        self.chunks
            .iter()
            .enumerate()
            .filter(move |(_, chunk)| chunk.kind == kind && chunk.name == name)
            .map(|(part, chunk)| (format!("{}#{part:04x}", self.sk), &chunk.bytes[..]))
    }
}

fn sort_key(arrived: i64) -> String {
    format!("{PREFIX}{:016x}", arrived.max(0) as u64)
}

/// A batch's chunks as one hot item holds them, or `None` when they are too large for
/// one (`MAX_HOT_BYTES`).
pub(super) fn payload(chunks: &[Encoded]) -> Result<Option<Vec<u8>>> {
    let chunks: Vec<HotChunk<'_>> = chunks
        .iter()
        .map(|encoded| HotChunk {
            kind: encoded.kind,
            name: Cow::Borrowed(&encoded.name),
            points: encoded.chunk.facts.count,
            bytes: Cow::Borrowed(&encoded.chunk.bytes),
        })
        .collect();
    let payload = postcard::to_allocvec(&chunks).map_err(|err| SeriesError::Corrupt(err.into()))?;
    Ok((payload.len() <= MAX_HOT_BYTES).then_some(payload))
}

/// The hot item of a batch that arrived at `arrived` (Unix nanoseconds).
pub(super) fn item(
    tenant: &Tenant,
    run: RunId,
    arrived: i64,
    batch_id: &str,
    payload: Vec<u8>,
    now: OffsetDateTime,
) -> Item {
    let key = Key::new(
        runs::data_partition(tenant, run),
        format!("{}#{batch_id}", sort_key(arrived)),
    );
    Item::new(key)
        .with(DATA, Value::B(Bytes::from(payload)))
        .with(WRITTEN, Value::N(arrived))
        .with(TTL, Value::N((now + KEEP).unix_timestamp()))
}

/// The run's hot batches that arrived after `after`, up to `through` if given, oldest
/// first.
pub(super) async fn after(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    after: i64,
    through: Option<i64>,
) -> Result<Vec<HotBatch>> {
    let end = through.map_or_else(|| format!("{PREFIX}~"), |t| format!("{}#~", sort_key(t)));
    let mut query = Query::partition(runs::data_partition(tenant, run))
        .between(sort_key(after.saturating_add(1)), end);
    let mut batches = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        for item in page.items {
            let payload = super::chunk_bytes(&item)?;
            let chunks: Vec<HotChunk<'static>> =
                postcard::from_bytes(payload).map_err(|err| SeriesError::Corrupt(err.into()))?;
            batches.push(HotBatch {
                arrived: item.n(WRITTEN).unwrap_or(0),
                sk: item.key.sk,
                chunks,
            });
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(batches),
        }
    }
}

/// What a round has gathered of one series: its points in read order.
enum Gathered {
    Numbers(Points),
    Text(TextPoints),
}

/// The points of `batches` per series, each series sorted as reads order it (by
/// step, then timestamp, then arrival: batches come oldest first and sorting keeps
/// ties in place).
fn gather(batches: &[HotBatch]) -> Result<BTreeMap<String, Gathered>> {
    let mut series: BTreeMap<String, Gathered> = BTreeMap::new();
    for batch in batches {
        for chunk in &batch.chunks {
            match chunk.kind {
                SeriesKind::Numeric => {
                    let points = Points::decode(&chunk.bytes)?;
                    let entry = series
                        .entry(chunk.name.to_string())
                        .or_insert_with(|| Gathered::Numbers(Points::default()));
                    let Gathered::Numbers(all) = entry else {
                        return Err(kind_clash(&chunk.name));
                    };
                    all.extend_from(&points, 0..points.len());
                }
                SeriesKind::Text => {
                    let mut points = TextPoints::decode(&chunk.bytes)?;
                    let entry = series
                        .entry(chunk.name.to_string())
                        .or_insert_with(|| Gathered::Text(TextPoints::default()));
                    let Gathered::Text(all) = entry else {
                        return Err(kind_clash(&chunk.name));
                    };
                    for index in 0..points.len() {
                        let (step, timestamp) = (points.steps[index], points.timestamps[index]);
                        all.push(step, points.take(index), timestamp);
                    }
                }
            }
        }
    }
    for gathered in series.values_mut() {
        match gathered {
            Gathered::Numbers(points) => points.sort(),
            Gathered::Text(points) => points.sort(),
        }
    }
    Ok(series)
}

/// A write accepts a batch only for series of the kind the run record holds, so two
/// kinds under one name among hot batches is damage, not input.
fn kind_clash(name: &str) -> SeriesError {
    SeriesError::Corrupt(anyhow::anyhow!("hot batches hold {name:?} as both kinds"))
}

/// Settles the run's hot batches that arrived up to `through` (Unix nanoseconds), in
/// rounds of at most `ROUND_POINTS`. A run that is gone has nothing to settle.
pub async fn settle(
    store: &Store,
    meter: Meter<'_>,
    tenant: &Tenant,
    run: RunId,
    through: i64,
) -> Result<()> {
    loop {
        match round(store, meter, tenant, run, through).await {
            Ok(true) => continue,
            Ok(false) | Err(SeriesError::Run(RunError::NotFound)) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

/// Settles the run's hot batches that arrived over `SETTLE_AFTER` ago, behind which no
/// write can still be committing: what the hourly run does before it folds a run.
pub async fn settle_due(
    store: &Store,
    meter: Meter<'_>,
    tenant: &Tenant,
    run: RunId,
) -> Result<()> {
    settle(store, meter, tenant, run, nanos(store.now() - SETTLE_AFTER)).await
}

/// Settles up to `now` the runs noted for folding (`super::fold::expect`, which every
/// write does before it stores) in this hour and the last: what a process that is the
/// only writer to its store does before it takes requests, since it may have stopped
/// between storing a batch and settling it. Notes of earlier hours are due, and the
/// next hourly run settles them. Answers how many runs it looked at.
pub async fn settle_noted(store: &Store, marks: &Marks, now: OffsetDateTime) -> Result<usize> {
    let meter = Meter {
        marks,
        points_cap: None,
    };
    let mut looked = 0;
    // A note is filed under the hour after the one it was made in, when it falls due.
    let this_hour = crate::calendar::hour_of(now);
    for hour in [this_hour, this_hour + Duration::HOUR] {
        for (_, note) in sweep::notes(&*store.kv, hour).await? {
            if let Claimant::Series { run } = note.claimant {
                let tenant = Tenant::verified(note.tenant);
                settle(store, meter, &tenant, run, nanos(now)).await?;
                looked += 1;
            }
        }
    }
    Ok(looked)
}

/// Moves the mark of an ended run with nothing left to settle past the last moment a
/// batch could have arrived hot, so that reads stop looking for hot batches
/// (`series::unsettled`). Once per run: afterwards the mark is past it.
async fn close_ended(
    store: &Store,
    tenant: &Tenant,
    mut versioned: runs::Versioned,
    through: i64,
) -> Result<()> {
    let Some(ended) = versioned.record.ended_at else {
        return Ok(());
    };
    let last_arrival = nanos(ended + SETTLE_AFTER);
    if versioned.record.settled_through >= last_arrival || through < last_arrival {
        return Ok(());
    }
    versioned.record.settled_through = through;
    match store
        .kv
        .transact(vec![runs::replace(tenant, &versioned)?])
        .await
    {
        // Changed meanwhile: the next round looks again.
        Err(err) if err.is_conflict() => Ok(()),
        outcome => Ok(outcome?),
    }
}

/// One round: settles the oldest hot batches up to `through`, answering whether some
/// were left for another round.
async fn round(
    store: &Store,
    meter: Meter<'_>,
    tenant: &Tenant,
    run: RunId,
    through: i64,
) -> Result<bool> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut versioned = runs::load(store, tenant, run).await?;
        let from = versioned.record.settled_through;
        if through <= from {
            return Ok(false);
        }
        let mut batches = after(store, tenant, run, from, Some(through)).await?;
        let mut points = 0u64;
        let mut more = false;
        if let Some(cut) = batches.iter().position(|batch| {
            points += batch.chunks.iter().map(|chunk| chunk.points).sum::<u64>();
            points > ROUND_POINTS
        }) {
            more = cut + 1 < batches.len();
            batches.truncate(cut + 1);
        }
        let Some(mark) = batches.last().map(|batch| batch.arrived) else {
            close_ended(store, tenant, versioned, through).await?;
            return Ok(false);
        };
        let mark = if more { mark } else { through };
        let latest_arrival = batches.last().map_or(0, |batch| batch.arrived);

        let mut chunks: Vec<Encoded> = Vec::new();
        for (name, gathered) in gather(&batches)? {
            match gathered {
                Gathered::Numbers(points) => {
                    chunks.extend(Encoded::series(SeriesKind::Numeric, &name, &points))
                }
                Gathered::Text(points) => {
                    chunks.extend(Encoded::series(SeriesKind::Text, &name, &points))
                }
            }
        }
        let facts = batch::facts_of(&chunks);
        let accepted: u64 = chunks.iter().map(|encoded| encoded.chunk.facts.count).sum();
        let now = store.now();
        let written = nanos(now);
        let attempt = format!("r{:016x}.{:016x}", mark as u64, rand::random::<u64>());
        let (items, stored_bytes) =
            batch::chunk_items(tenant, run, chunks, &attempt, written, Some(mark));

        let record = &mut versioned.record;
        record.count(
            now,
            accepted,
            i64::try_from(stored_bytes).unwrap_or(i64::MAX),
        );
        batch::merge_into(record, &facts, None, written)?;
        record.settled_through = mark;
        if record.status == Status::Running {
            let arrived =
                OffsetDateTime::from_unix_timestamp_nanos(latest_arrival.into()).unwrap_or(now);
            record.heartbeat_at = record.heartbeat_at.max(arrived);
        }
        let replace = runs::replace(tenant, &versioned)?;

        let (marker_key, chunk_keys) =
            pending::write_hidden(store, tenant, run, &attempt, items, now).await?;
        metering::mark_storer(store, meter.marks, tenant).await?;
        metering::mark_active(store, meter.marks, tenant, now).await?;
        let mut ops = vec![replace, TxOp::Delete(marker_key.clone(), Condition::None)];
        // Points a write accepted are counted whatever the cap: it was checked when they
        // arrived.
        ops.extend(usage::logged(None, tenant, now, accepted, stored_bytes));
        match store.kv.transact(ops).await {
            Ok(()) => return Ok(more),
            Err(err) if err.is_conflict() => {
                // Another round (or a batch claiming a series) changed the run first.
                pending::forget(store, marker_key, chunk_keys).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}
