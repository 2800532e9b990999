//! Log batches: what training code sends, a few hundred to a few hundred thousand
//! points at a time, stored as sealed chunks and committed exactly once.
//!
//! A batch is written in three steps. First a marker naming the chunks this attempt is
//! about to write (see `super::pending`: reads skip them until the commit), then the
//! chunks, under keys holding the batch id and an id of the attempt, so concurrent or
//! retried attempts never write the same item. Then one transaction commits it: the
//! batch's receipt (its own record, which must not exist yet, or its session's, which
//! must hold an earlier number: `Receipt`), the run record with merged series
//! summaries (which must be at the version read), the usage counters (refused past
//! the plan's monthly cap), and the marker's deletion. Points become readable and
//! billable in that one step. A retry of a committed batch finds its receipt and
//! answers as the first attempt did, storing and counting nothing; concurrent writers
//! to one run serialise on the run record's version and retry, so nothing is lost.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::hot::{self, Settling};
use super::text::MAX_LINE_BYTES;
use super::{
    Chunk, DATA, Points, Result, SeriesData, SeriesError, TextPoints, WRITTEN, check_name,
    chunk_sort_key, pending,
};
use crate::floats::JsonF64;
use crate::ids::RunId;
use crate::metering::{self, Meter};
use crate::runs::summary::{ChunkFacts, SeriesKind, StepUnit};
use crate::runs::{self, RunError, RunRecord};
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, StoreError, TxOp, Value};
use sextant_storage::records::{CONFLICT_ATTEMPTS, doc_item, get_doc};

/// Points (numbers and text lines) one batch may carry.
pub const MAX_BATCH_POINTS: usize = 250_000;
pub const MAX_SERIES_PER_RUN: usize = 1_000;
pub const MAX_BATCH_ID_BYTES: usize = 64;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    /// Required when the batch carries points: makes a retry harmless.
    #[schema(max_length = 64)]
    pub batch_id: Option<String>,
    /// With `sequence`, declares that this batch is number `sequence` of a sender
    /// session that sends its batches in order, one at a time (the Python SDK does).
    /// The run then keeps one record per session instead of one per batch: a batch
    /// numbered at most the session's last committed one is stored nothing (the last
    /// one's retry answers as it did; an older one is 409 `sequence_behind`).
    #[schema(max_length = 64)]
    pub session: Option<String>,
    /// The batch's number in its session: 1 or more, increasing, gaps allowed.
    #[schema(minimum = 1)]
    pub sequence: Option<i64>,
    #[serde(default)]
    pub series: BTreeMap<String, SeriesColumns>,
    #[serde(default)]
    pub text: BTreeMap<String, Vec<TextLine>>,
    /// What each series' steps count; `whole` for a series not named. A series takes
    /// its unit from the batch that starts it, and a later batch counting otherwise is
    /// refused (409 `step_unit_mismatch`). Neptune's fractional steps are kept as
    /// `micro`: millionths of a step.
    #[serde(default)]
    pub step_units: BTreeMap<String, StepUnit>,
    /// A batch is a sign of life whether or not it says so; a batch without points
    /// and with `heartbeat: true` is only that.
    #[serde(default)]
    pub heartbeat: bool,
}

/// Parallel columns: `values[i]` was logged at `steps[i]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesColumns {
    pub steps: Vec<i64>,
    pub values: Vec<JsonF64>,
    /// Unix seconds; the server's clock when absent.
    #[serde(default)]
    pub timestamps: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextLine {
    pub step: i64,
    pub text: String,
    #[serde(default)]
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LogOutcome {
    pub accepted: u64,
    /// The run was asked to stop: the client should end it as `aborted`.
    pub abort_requested: bool,
}

/// What a committed batch without a session leaves behind, to answer its retries.
#[derive(Debug, Serialize, Deserialize)]
struct BatchRecord {
    fingerprint: String,
    accepted: u64,
    #[serde(with = "time::serde::rfc3339")]
    committed_at: OffsetDateTime,
}

/// A session record's attributes: the last sequence number committed, and that
/// batch's fingerprint and accepted points (to answer its retry).
const SESSION_LAST: &str = "n";
const SESSION_FINGERPRINT: &str = "f";
const SESSION_ACCEPTED: &str = "c";

/// Where a committed batch leaves what answers its retries, written in the transaction
/// that stores it. A batch of its own has a record `b#{batch_id}`, kept for good since
/// a retry may come any time later; it is most of what a run stores beyond its points
/// when batches are small. A batch of a declared session moves the session's one record
/// `q#{session}` forward instead, on condition that its number is past the last.
#[derive(Debug)]
enum Receipt {
    Batch(Key),
    Session { key: Key, sequence: i64 },
}

impl Receipt {
    fn of(tenant: &Tenant, run: RunId, prepared: &Prepared) -> Self {
        let partition = runs::data_partition(tenant, run);
        match &prepared.sequence {
            Some((session, sequence)) => Receipt::Session {
                key: Key::new(partition, format!("q#{session}")),
                sequence: *sequence,
            },
            None => Receipt::Batch(Key::new(partition, format!("b#{}", prepared.batch_id))),
        }
    }

    /// The transaction's first operation: it fails exactly when the batch was committed
    /// before (or, for a session, a later one was).
    fn commit(&self, prepared: &Prepared, now: OffsetDateTime) -> Result<TxOp> {
        Ok(match self {
            Receipt::Batch(key) => {
                let record = BatchRecord {
                    fingerprint: prepared.fingerprint.clone(),
                    accepted: prepared.accepted,
                    committed_at: now,
                };
                TxOp::Put(doc_item(key.clone(), &record)?, Condition::NotExists)
            }
            Receipt::Session { key, sequence } => TxOp::Put(
                Item::new(key.clone())
                    .with(SESSION_LAST, Value::N(*sequence))
                    .with(SESSION_FINGERPRINT, Value::S(prepared.fingerprint.clone()))
                    .with(SESSION_ACCEPTED, Value::N(prepared.accepted as i64)),
                // An absent record counts as 0, below every sequence number.
                Condition::AtMost(SESSION_LAST.to_owned(), sequence - 1),
            ),
        })
    }

    /// The points accepted when this batch was committed before, if it was; a reused id
    /// (or number) with other points, and a number behind its session, are refused.
    async fn committed_before(&self, store: &Store, fingerprint: &str) -> Result<Option<u64>> {
        let (stored_fingerprint, accepted) = match self {
            Receipt::Batch(key) => match get_doc::<BatchRecord>(&*store.kv, key).await? {
                Some(record) => (record.fingerprint, record.accepted),
                None => return Ok(None),
            },
            Receipt::Session { key, sequence } => {
                let Some(item) = store.kv.get(key).await? else {
                    return Ok(None);
                };
                let last = item.n(SESSION_LAST).unwrap_or_default();
                if last < *sequence {
                    return Ok(None);
                }
                if last > *sequence {
                    return Err(SeriesError::SequenceBehind {
                        sent: *sequence,
                        committed: last,
                    });
                }
                let fingerprint = item.s(SESSION_FINGERPRINT).unwrap_or_default().to_owned();
                (
                    fingerprint,
                    item.n(SESSION_ACCEPTED).unwrap_or_default() as u64,
                )
            }
        };
        if stored_fingerprint != fingerprint {
            return Err(SeriesError::BatchIdReused);
        }
        Ok(Some(accepted))
    }
}

/// One chunk of a series' points as encoded, and what it adds to the series' summary.
#[derive(Debug)]
pub(super) struct Encoded {
    pub kind: SeriesKind,
    pub name: String,
    pub chunk: Chunk,
}

impl Encoded {
    /// The chunks of one series' sorted points (`SeriesData::cut`).
    pub(super) fn series<'a>(
        kind: SeriesKind,
        name: &'a str,
        points: &impl SeriesData,
    ) -> impl Iterator<Item = Encoded> + 'a {
        points.cut().into_iter().map(move |chunk| Encoded {
            kind,
            name: name.to_owned(),
            chunk,
        })
    }
}

/// A checked batch cut into chunks, before anything is written.
#[derive(Debug)]
struct Prepared {
    batch_id: String,
    /// The declared session and the batch's number in it.
    sequence: Option<(String, i64)>,
    fingerprint: String,
    /// In a fixed order (series by name, then parts), the same on every attempt.
    chunks: Vec<Encoded>,
    accepted: u64,
    step_units: BTreeMap<String, StepUnit>,
}

impl Prepared {
    fn step_unit(&self, series: &str) -> StepUnit {
        self.step_units.get(series).copied().unwrap_or_default()
    }
}

/// Batch ids and session names: short, and safe in a sort key.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_BATCH_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_sequence(batch: &LogBatch) -> Result<Option<(String, i64)>> {
    match (&batch.session, batch.sequence) {
        (None, None) => Ok(None),
        (Some(session), Some(sequence)) if valid_id(session) && sequence >= 1 => {
            Ok(Some((session.clone(), sequence)))
        }
        _ => Err(SeriesError::InvalidSequence),
    }
}

/// The server's clock in Unix seconds, to the millisecond.
fn now_seconds(now: OffsetDateTime) -> f64 {
    (now.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

/// What each series' chunks add to its summary.
pub(super) fn facts_of(chunks: &[Encoded]) -> BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)> {
    let mut facts: BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)> = BTreeMap::new();
    for chunk in chunks {
        facts
            .entry(chunk.name.clone())
            .or_insert_with(|| (chunk.kind, Vec::new()))
            .1
            .push(chunk.chunk.facts);
    }
    facts
}

/// The chunk items of one attempt at storing `chunks` (the attempt id is in their
/// keys, so attempts never write each other's items), written at `written` (Unix
/// nanoseconds); a round's items also carry the mark it settles through. Answers the
/// items and the bytes they are billed as.
pub(super) fn chunk_items(
    tenant: &Tenant,
    run: RunId,
    chunks: Vec<Encoded>,
    attempt: &str,
    written: i64,
    settled: Option<i64>,
) -> (Vec<Item>, u64) {
    let partition = runs::data_partition(tenant, run);
    let mut parts: BTreeMap<(SeriesKind, String, i64), usize> = BTreeMap::new();
    let mut stored_bytes = 0;
    let items = chunks
        .into_iter()
        .map(|Encoded { kind, name, chunk }| {
            let first_step = chunk.facts.first_step;
            let part = parts.entry((kind, name.clone(), first_step)).or_default();
            let sk = chunk_sort_key(kind, &name, first_step, attempt, *part);
            *part += 1;
            let key = Key::new(partition.clone(), sk);
            let mut item = Item::new(key)
                .with(DATA, Value::B(Bytes::from(chunk.bytes)))
                .with(WRITTEN, Value::N(written));
            if let Some(mark) = settled {
                item = item.with(hot::SETTLED, Value::N(mark));
            }
            stored_bytes += item.billed_size() as u64;
            item
        })
        .collect();
    (items, stored_bytes)
}

fn prepare(batch: LogBatch, now: OffsetDateTime) -> Result<Option<Prepared>> {
    let total: usize = batch.series.values().map(|s| s.steps.len()).sum::<usize>()
        + batch.text.values().map(Vec::len).sum::<usize>();
    if total > MAX_BATCH_POINTS {
        return Err(SeriesError::BatchTooLarge);
    }
    for name in batch.series.keys().chain(batch.text.keys()) {
        check_name(name)?;
        if batch.series.contains_key(name) && batch.text.contains_key(name) {
            return Err(SeriesError::KindMismatchInOneBatch(name.clone()));
        }
    }
    // Before the shortcut for batches without points: values without steps are an
    // error, not a heartbeat.
    for (name, columns) in &batch.series {
        let n = columns.steps.len();
        if columns.values.len() != n || columns.timestamps.as_ref().is_some_and(|t| t.len() != n) {
            return Err(SeriesError::LengthMismatch(name.clone()));
        }
    }
    if total == 0 {
        return Ok(None);
    }
    let batch_id = batch
        .batch_id
        .clone()
        .ok_or_else(|| SeriesError::MissingBatchId)?;
    if !valid_id(&batch_id) {
        return Err(SeriesError::InvalidBatchId);
    }
    let sequence = check_sequence(&batch)?;
    let fingerprint = fingerprint(&batch);
    let server_time = now_seconds(now);

    let mut chunks = Vec::new();
    for (name, columns) in &batch.series {
        let n = columns.steps.len();
        let mut points = Points::with_capacity(n);
        for i in 0..n {
            // JSON numbers are finite, so timestamps need no further check.
            let timestamp = columns.timestamps.as_ref().map_or(server_time, |t| t[i]);
            points.push(columns.steps[i], columns.values[i].0, timestamp);
        }
        points.sort();
        chunks.extend(Encoded::series(SeriesKind::Numeric, name, &points));
    }
    for (name, lines) in &batch.text {
        let mut points = TextPoints::default();
        for line in lines {
            if line.text.len() > MAX_LINE_BYTES {
                return Err(SeriesError::TextTooLong {
                    series: name.clone(),
                });
            }
            points.push(
                line.step,
                line.text.clone(),
                line.timestamp.unwrap_or(server_time),
            );
        }
        points.sort();
        chunks.extend(Encoded::series(SeriesKind::Text, name, &points));
    }
    let accepted = chunks.iter().map(|encoded| encoded.chunk.facts.count).sum();
    Ok(Some(Prepared {
        batch_id,
        sequence,
        fingerprint,
        chunks,
        accepted,
        step_units: batch.step_units,
    }))
}

/// Identifies a batch's content as the client sent it (before the server fills in
/// missing timestamps), so a retry matches and a different batch under a reused id
/// does not.
fn fingerprint(batch: &LogBatch) -> String {
    let mut hasher = Sha256::new();
    for (name, columns) in &batch.series {
        hasher.update(format!("n{}:{name}:{}:", name.len(), columns.steps.len()));
        for &step in &columns.steps {
            hasher.update(step.to_le_bytes());
        }
        for value in &columns.values {
            hasher.update(value.0.to_bits().to_le_bytes());
        }
        match &columns.timestamps {
            Some(timestamps) => {
                hasher.update(b"t");
                for timestamp in timestamps {
                    hasher.update(timestamp.to_bits().to_le_bytes());
                }
            }
            None => hasher.update(b"-"),
        }
    }
    for (name, lines) in &batch.text {
        hasher.update(format!("t{}:{name}:{}:", name.len(), lines.len()));
        for line in lines {
            hasher.update(line.step.to_le_bytes());
            hasher.update(line.timestamp.map_or(u64::MAX, f64::to_bits).to_le_bytes());
            hasher.update((line.text.len() as u64).to_le_bytes());
            hasher.update(line.text.as_bytes());
        }
    }
    // Whole steps hash as they did before units were declared.
    for (name, unit) in &batch.step_units {
        if !unit.is_whole() {
            hasher.update(format!("u{}:{name}:{unit:?}", name.len()));
        }
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Folds the chunks of a batch (or a round) written at `written` into the run's
/// summaries, refusing a name used as the other kind or counting steps in the other
/// unit, and a run with too many series. A round's chunks (`step_units` `None`) are of
/// batches whose series the record held already, checked when they were stored.
pub(super) fn merge_into(
    record: &mut RunRecord,
    facts: &BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)>,
    step_units: Option<&BTreeMap<String, StepUnit>>,
    written: i64,
) -> Result<()> {
    for (name, (kind, chunks)) in facts {
        let unit = step_units.map(|units| units.get(name).copied().unwrap_or_default());
        let summary = match record.series.get_mut(name) {
            Some(summary) if summary.kind != *kind => {
                return Err(SeriesError::KindMismatch(
                    format!("{name:?} already holds {:?} points", summary.kind).to_lowercase(),
                ));
            }
            Some(summary) if unit.is_some_and(|unit| unit != summary.step_unit) => {
                return Err(SeriesError::StepUnitMismatch {
                    series: name.clone(),
                    stored: unit_name(summary.step_unit),
                    sent: unit_name(unit.unwrap_or_default()),
                });
            }
            Some(summary) => {
                chunks.iter().for_each(|chunk| summary.merge(chunk));
                summary
            }
            None => {
                let mut summary = chunks[0].start(*kind);
                chunks[1..].iter().for_each(|chunk| summary.merge(chunk));
                summary.step_unit = unit.unwrap_or_default();
                record.series.entry(name.clone()).or_insert(summary)
            }
        };
        summary.note_written(written);
    }
    if record.series.len() > MAX_SERIES_PER_RUN {
        return Err(SeriesError::TooManySeries);
    }
    Ok(())
}

fn unit_name(unit: StepUnit) -> &'static str {
    match unit {
        StepUnit::Whole => "whole",
        StepUnit::Micro => "micro",
    }
}

/// The answer to a batch: `accepted` points, now or when it was committed before.
fn answer(accepted: u64, run: &RunRecord) -> LogOutcome {
    LogOutcome {
        accepted,
        abort_requested: run.abort_requested_at.is_some(),
    }
}

/// What the log-batch fuzz target (`fuzz/fuzz_targets/log_batch.rs`) drives: a body
/// parsed as the ingest function parses it, then checked and cut into chunks as `log`
/// does before writing anything, and every chunk read back: no input may panic, and
/// the chunks hold exactly the points the batch says it accepted. Built only by
/// cargo-fuzz, which sets `cfg(fuzzing)`.
#[cfg(fuzzing)]
pub fn fuzz_log_batch(body: &[u8]) {
    use super::SeriesData;
    let Ok(batch) = serde_json::from_slice::<LogBatch>(body) else {
        return;
    };
    let Ok(Some(prepared)) = prepare(batch, OffsetDateTime::UNIX_EPOCH) else {
        return;
    };
    let mut stored = 0;
    for chunk in &prepared.chunks {
        stored += match chunk.kind {
            SeriesKind::Text => TextPoints::decode(&chunk.chunk.bytes)
                .expect("a text chunk reads back")
                .len(),
            SeriesKind::Numeric => Points::decode(&chunk.chunk.bytes)
                .expect("a numeric chunk reads back")
                .len(),
        };
    }
    assert_eq!(stored as u64, prepared.accepted);
}

/// What a write of points to a run needs besides the store: how long a silent run stays
/// running (an ended run takes no points), the meter that counts them, and who settles
/// the hot batches it stores.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    pub heartbeat_timeout: time::Duration,
    pub meter: Meter<'a>,
    pub settling: Settling<'a>,
}

/// Stores a log batch for a run of the caller's team.
///
/// A batch for series the run already has, small enough for one item, is stored hot
/// (`super::hot`): one transaction of its record and its points, settled into the run's
/// summaries and usage by a round. A batch that starts a series (whose name and kind
/// the run record must hold before any point of it is stored), or too large for one
/// item, is committed whole at once (`log_claiming`).
pub async fn log(
    store: &Store,
    intake: Intake<'_>,
    tenant: &Tenant,
    run: RunId,
    batch: LogBatch,
) -> Result<LogOutcome> {
    let now = store.now();
    let Some(prepared) = prepare(batch, now)? else {
        let record = runs::heartbeat(store, intake.heartbeat_timeout, tenant, run).await?;
        return Ok(LogOutcome {
            accepted: 0,
            abort_requested: record.abort_requested_at.is_some(),
        });
    };
    let versioned = runs::load(store, tenant, run).await?;
    let series = &versioned.record.series;
    let known = prepared.chunks.iter().all(|chunk| {
        series.get(&chunk.name).is_some_and(|summary| {
            summary.kind == chunk.kind && summary.step_unit == prepared.step_unit(&chunk.name)
        })
    });
    let payload = if known {
        hot::payload(&prepared.chunks)?
    } else {
        None
    };
    match payload {
        Some(payload) => {
            log_hot(
                store,
                intake,
                tenant,
                run,
                prepared,
                payload,
                versioned.record,
            )
            .await
        }
        None => log_claiming(store, intake, tenant, run, prepared, versioned).await,
    }
}

/// The answer to a batch refused with `refusal`, unless it is a retry of one stored
/// before: then the answer it had.
async fn replay_or(
    store: &Store,
    receipt: &Receipt,
    fingerprint: &str,
    run: &RunRecord,
    refusal: SeriesError,
) -> Result<LogOutcome> {
    match receipt.committed_before(store, fingerprint).await? {
        Some(accepted) => Ok(answer(accepted, run)),
        None => Err(refusal),
    }
}

/// The answer to a batch whose receipt failed its condition: a concurrent attempt of
/// it committed first.
async fn replay_lost_race(
    store: &Store,
    receipt: &Receipt,
    fingerprint: &str,
    run: &RunRecord,
) -> Result<LogOutcome> {
    let accepted = receipt
        .committed_before(store, fingerprint)
        .await?
        .ok_or(RunError::ConcurrentUpdate)?;
    Ok(answer(accepted, run))
}

async fn log_hot(
    store: &Store,
    intake: Intake<'_>,
    tenant: &Tenant,
    run: RunId,
    prepared: Prepared,
    payload: Vec<u8>,
    record: RunRecord,
) -> Result<LogOutcome> {
    let receipt = Receipt::of(tenant, run, &prepared);
    let mut held = match intake.settling {
        Settling::Inline(locks) => Some(locks.lock(tenant).await),
        Settling::Deferred => None,
    };
    let now = store.now();
    let refusal = match runs::accept_activity(&mut record.clone(), now, intake.heartbeat_timeout) {
        Ok(()) => usage::check_quota(
            store,
            intake.meter.points_cap,
            &intake.meter.marks.unstopped,
            tenant,
            now,
            prepared.accepted,
        )
        .await
        .err()
        .map(SeriesError::from),
        Err(ended) => Some(ended.into()),
    };
    if let Some(refusal) = refusal {
        return replay_or(store, &receipt, &prepared.fingerprint, &record, refusal).await;
    }
    super::fold::expect(store, intake.meter.marks, tenant, run).await?;
    let arrived = match held.as_mut() {
        Some(held) => held.arrival(now),
        None => super::nanos(now),
    };
    let item = hot::item(tenant, run, arrived, &prepared.batch_id, payload, now);
    let ops = vec![
        receipt.commit(&prepared, now)?,
        TxOp::Put(item, Condition::None),
    ];
    match store.kv.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
            return replay_lost_race(store, &receipt, &prepared.fingerprint, &record).await;
        }
        Err(err) => return Err(err.into()),
    }
    // The batch is stored: a round that fails here is done again by the next one.
    let through = match intake.settling {
        Settling::Inline(_) => Some(arrived),
        Settling::Deferred => {
            let due = super::nanos(now - hot::SETTLE_AFTER - hot::SETTLE_EVERY);
            (record.settled_through < due && hot::round_due(intake.meter.marks, tenant, run, now))
                .then(|| super::nanos(now - hot::SETTLE_AFTER))
        }
    };
    if let Some(through) = through
        && let Err(err) = hot::settle(store, intake.meter, tenant, run, through).await
    {
        tracing::warn!(error = %err, "could not settle a run's hot batches; a later round will");
    }
    drop(held);
    Ok(answer(prepared.accepted, &record))
}

/// Commits a batch whole: its chunk items behind a marker, then one transaction of its
/// record, the run record with the batch's summaries merged (claiming new series'
/// names and kinds), the usage counters (refused past the plan's cap) and the marker's
/// deletion.
async fn log_claiming(
    store: &Store,
    intake: Intake<'_>,
    tenant: &Tenant,
    run: RunId,
    prepared: Prepared,
    mut versioned: runs::Versioned,
) -> Result<LogOutcome> {
    let now = store.now();
    let written = super::nanos(now);
    let receipt = Receipt::of(tenant, run, &prepared);
    if let Some(accepted) = receipt
        .committed_before(store, &prepared.fingerprint)
        .await?
    {
        return Ok(answer(accepted, &versioned.record));
    }
    let facts = facts_of(&prepared.chunks);
    // Refuse before writing anything: an ended run, a name of the other kind, or a
    // run record that would outgrow its item.
    let mut preview = versioned.clone();
    runs::accept_activity(&mut preview.record, now, intake.heartbeat_timeout)?;
    merge_into(
        &mut preview.record,
        &facts,
        Some(&prepared.step_units),
        written,
    )?;
    runs::replace(tenant, &preview)?;

    let limit = usage::check_quota(
        store,
        intake.meter.points_cap,
        &intake.meter.marks.unstopped,
        tenant,
        now,
        prepared.accepted,
    )
    .await?;

    super::fold::expect(store, intake.meter.marks, tenant, run).await?;
    let attempt = format!("{}.{:016x}", prepared.batch_id, rand::random::<u64>());
    let commit_receipt = receipt.commit(&prepared, now)?;
    let (items, stored_bytes) = chunk_items(tenant, run, prepared.chunks, &attempt, written, None);
    let (marker_key, chunk_keys) =
        pending::write_hidden(store, tenant, run, &attempt, items, now).await?;
    // Every way out below that is known not to have committed removes this attempt's
    // chunks; an error of unknown outcome leaves them hidden behind the marker.
    let forget = || pending::forget(store, marker_key.clone(), chunk_keys.clone());

    metering::mark_storer(store, intake.meter.marks, tenant).await?;
    for _ in 0..CONFLICT_ATTEMPTS {
        let now = store.now();
        let mut updated = versioned.clone();
        updated.record.count(
            now,
            prepared.accepted,
            i64::try_from(stored_bytes).unwrap_or(i64::MAX),
        );
        let replace = runs::accept_activity(&mut updated.record, now, intake.heartbeat_timeout)
            .map_err(SeriesError::from)
            .and_then(|()| {
                merge_into(
                    &mut updated.record,
                    &facts,
                    Some(&prepared.step_units),
                    written,
                )
            })
            .and_then(|()| Ok(runs::replace(tenant, &updated)?));
        let replace = match replace {
            Ok(replace) => replace,
            Err(refusal) => {
                forget().await;
                // A twin attempt of this batch may have committed before the refusal
                // arose; then it answers.
                return replay_or(
                    store,
                    &receipt,
                    &prepared.fingerprint,
                    &versioned.record,
                    refusal,
                )
                .await;
            }
        };
        metering::mark_active(store, intake.meter.marks, tenant, now).await?;
        let mut ops = vec![
            commit_receipt.clone(),
            replace,
            TxOp::Delete(marker_key.clone(), Condition::None),
        ];
        let counters = ops.len();
        ops.extend(usage::logged(
            limit.map(usage::Limit::points),
            tenant,
            now,
            prepared.accepted,
            stored_bytes,
        ));
        match store.kv.transact(ops).await {
            Ok(()) => {
                return Ok(answer(prepared.accepted, &updated.record));
            }
            Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
                // A concurrent attempt of the same batch committed first.
                forget().await;
                let run = runs::load(store, tenant, run).await?;
                return replay_lost_race(store, &receipt, &prepared.fingerprint, &run.record).await;
            }
            Err(StoreError::TransactionFailed(failed))
                if failed.contains(&(counters + usage::CAPPED_OP)) =>
            {
                forget().await;
                // Only a limit puts a condition there.
                return Err(match limit {
                    Some(limit) => limit.refusal(now).into(),
                    None => StoreError::TransactionFailed(failed).into(),
                });
            }
            Err(err) if err.is_conflict() => {
                versioned = runs::load(store, tenant, run).await?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    forget().await;
    Err(RunError::ConcurrentUpdate.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Coded, ErrorCode};
    use crate::ids::TenantId;

    fn batch(json: serde_json::Value) -> LogBatch {
        serde_json::from_value(json).expect("a valid batch shape")
    }

    fn tenant() -> Tenant {
        Tenant::verified(TenantId::generate())
    }

    #[test]
    fn each_attempt_at_a_batch_writes_chunk_items_of_its_own_under_one_fingerprint() {
        let tenant = tenant();
        let run = RunId::generate();
        let body = serde_json::json!({
            "batch_id": "b1",
            "series": {"loss": {"steps": [3, 1, 2], "values": [0.3, "NaN", 0.2]}},
            "text": {"log": [{"step": 1, "text": "hello"}]}
        });
        let now = OffsetDateTime::now_utc();
        let first = prepare(batch(body.clone()), now).unwrap().unwrap();
        let again = prepare(batch(body), now).unwrap().unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.accepted, 4);
        let facts = facts_of(&first.chunks);
        let keys = |prepared: Prepared, attempt: &str| {
            let (items, _) = chunk_items(&tenant, run, prepared.chunks, attempt, 0, None);
            items.into_iter().map(|i| i.key).collect::<Vec<_>>()
        };
        let (mine, theirs) = (keys(first, "b1.1"), keys(again, "b1.2"));
        assert_eq!(mine.len(), theirs.len());
        assert!(mine.iter().all(|key| !theirs.contains(key)));
        let loss = &facts["loss"].1[0];
        assert_eq!(
            (loss.first_step, loss.last_step, loss.last),
            (1, 3, Some(0.3))
        );
        assert_eq!((loss.min, loss.max), (Some(0.2), Some(0.3)));
    }

    #[test]
    fn bad_batches_get_their_own_error_codes() {
        let code = |json: serde_json::Value| {
            prepare(batch(json), OffsetDateTime::now_utc())
                .unwrap_err()
                .code()
        };
        let one = serde_json::json!({"steps": [1], "values": [1.0]});
        assert_eq!(
            code(serde_json::json!({"series": {"x": one}})),
            ErrorCode::MissingBatchId
        );
        assert_eq!(
            code(serde_json::json!({"batch_id": "a b", "series": {"x": one}})),
            ErrorCode::InvalidBatchId
        );
        assert_eq!(
            code(
                serde_json::json!({"batch_id": "a", "series": {"x": {"steps": [1, 2], "values": [1.0]}}})
            ),
            ErrorCode::LengthMismatch
        );
        assert_eq!(
            code(serde_json::json!({"batch_id": "a", "series": {"x#y": one}})),
            ErrorCode::InvalidSeriesName
        );
        assert_eq!(
            code(serde_json::json!({"batch_id": "a", "series": {"x": one}, "text": {"x": []}})),
            ErrorCode::SeriesKindMismatchInOneBatch
        );
    }
}
