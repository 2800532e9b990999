//! Log batches: what training code sends, a few hundred to a few hundred thousand
//! points at a time, stored as sealed chunks and committed exactly once.
//!
//! A batch is written in three steps. First a marker naming the chunks this attempt is
//! about to write (see `super::pending`: reads skip them until the commit), then the
//! chunks, under keys holding the batch id and an id of the attempt, so concurrent or
//! retried attempts never write the same item. Then one transaction commits it: the
//! batch record (which must not exist yet), the run record with merged series
//! summaries (which must be at the version read), the usage counters (refused past
//! the plan's monthly cap), and the marker's deletion. Points become readable and
//! billable in that one step. A retry of a committed batch finds its record and
//! answers as the first attempt did, storing and counting nothing; concurrent writers
//! to one run serialise on the run record's version and retry, so nothing is lost.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::codec::{self, MAX_CHUNK_POINTS};
use super::text::MAX_LINE_BYTES;
use super::{
    DATA, Points, Result, SeriesError, TextPoints, WRITTEN, check_name, chunk_sort_key, pending,
};
use crate::floats::JsonF64;
use crate::ids::RunId;
use crate::metering::{self, Meter};
use crate::runs::summary::{ChunkFacts, SeriesKind};
use crate::runs::{self, RunError, RunRecord};
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, StoreError, TxOp, Value, WriteOp};
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
    #[serde(default)]
    pub series: BTreeMap<String, SeriesColumns>,
    #[serde(default)]
    pub text: BTreeMap<String, Vec<TextLine>>,
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

/// What a committed batch leaves behind, to answer its retries.
#[derive(Debug, Serialize, Deserialize)]
struct BatchRecord {
    fingerprint: String,
    accepted: u64,
    #[serde(with = "time::serde::rfc3339")]
    committed_at: OffsetDateTime,
}

/// A batch turned into chunk items, before anything is written.
#[derive(Debug)]
struct Prepared {
    batch_id: String,
    /// Names this attempt's chunks: unique per attempt.
    attempt: String,
    fingerprint: String,
    items: Vec<Item>,
    /// Per series: its kind and what each of its chunks adds to its summary.
    facts: BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)>,
    accepted: u64,
    stored_bytes: u64,
}

fn check_batch_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= MAX_BATCH_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(SeriesError::InvalidBatchId)
    }
}

/// The server's clock in Unix seconds, to the millisecond.
fn now_seconds(now: OffsetDateTime) -> f64 {
    (now.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

fn prepare(
    tenant: &Tenant,
    run: RunId,
    batch: LogBatch,
    now: OffsetDateTime,
) -> Result<Option<Prepared>> {
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
    check_batch_id(&batch_id)?;
    let fingerprint = fingerprint(&batch);
    let server_time = now_seconds(now);

    // Chunks in a fixed order (series by name, then parts), so the fingerprint and
    // the keys are the same on every attempt.
    let mut encoded: Vec<(SeriesKind, String, i64, Vec<u8>, ChunkFacts)> = Vec::new();
    for (name, columns) in &batch.series {
        let n = columns.steps.len();
        let mut points = Points::with_capacity(n);
        for i in 0..n {
            // JSON numbers are finite, so timestamps need no further check.
            let timestamp = columns.timestamps.as_ref().map_or(server_time, |t| t[i]);
            points.push(columns.steps[i], columns.values[i].0, timestamp);
        }
        points.sort();
        for start in (0..n).step_by(MAX_CHUNK_POINTS) {
            let mut chunk = Points::with_capacity(MAX_CHUNK_POINTS.min(n - start));
            chunk.extend_from(&points, start..n.min(start + MAX_CHUNK_POINTS));
            let summary = codec::ChunkSummary::of(&chunk).expect("non-empty chunk");
            let facts = ChunkFacts {
                count: summary.count as u64,
                first_step: summary.first_step,
                last_step: summary.last_step,
                last_timestamp: *chunk.timestamps.last().expect("non-empty"),
                min: (!summary.min.is_nan()).then_some(summary.min),
                max: (!summary.max.is_nan()).then_some(summary.max),
                last: Some(summary.last),
            };
            encoded.push((
                SeriesKind::Numeric,
                name.clone(),
                summary.first_step,
                codec::encode(&chunk),
                facts,
            ));
        }
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
        for range in points.chunk_ranges() {
            let (first, last) = (range.start, range.end - 1);
            let mut chunk = TextPoints::default();
            chunk.extend_from(&points, range.clone());
            let facts = ChunkFacts {
                count: range.len() as u64,
                first_step: points.steps[first],
                last_step: points.steps[last],
                last_timestamp: points.timestamps[last],
                min: None,
                max: None,
                last: None,
            };
            encoded.push((
                SeriesKind::Text,
                name.clone(),
                facts.first_step,
                chunk.encode(),
                facts,
            ));
        }
    }

    let attempt = format!("{batch_id}.{:016x}", rand::random::<u64>());
    let written = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);

    let partition = runs::data_partition(tenant, run);
    let mut items = Vec::with_capacity(encoded.len());
    let mut facts: BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)> = BTreeMap::new();
    let mut parts: BTreeMap<(SeriesKind, String, i64), usize> = BTreeMap::new();
    let mut stored_bytes = 0;
    let mut accepted = 0;
    for (kind, name, first_step, bytes, chunk_facts) in encoded {
        let part = parts.entry((kind, name.clone(), first_step)).or_default();
        let key = Key::new(
            partition.clone(),
            chunk_sort_key(kind, &name, first_step, &attempt, *part),
        );
        *part += 1;
        let item = Item::new(key)
            .with(DATA, Value::B(Bytes::from(bytes)))
            .with(WRITTEN, Value::N(written));
        stored_bytes += item.billed_size() as u64;
        accepted += chunk_facts.count;
        items.push(item);
        facts
            .entry(name)
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(chunk_facts);
    }
    Ok(Some(Prepared {
        batch_id,
        attempt,
        fingerprint,
        items,
        facts,
        accepted,
        stored_bytes,
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
    hex::encode(&hasher.finalize()[..8])
}

/// Folds a batch's chunks into the run's summaries, refusing a name used as the other
/// kind and a run with too many series.
fn merge_into(
    record: &mut RunRecord,
    facts: &BTreeMap<String, (SeriesKind, Vec<ChunkFacts>)>,
) -> Result<()> {
    for (name, (kind, chunks)) in facts {
        match record.series.get_mut(name) {
            Some(summary) if summary.kind != *kind => {
                return Err(SeriesError::KindMismatch(
                    format!("{name:?} already holds {:?} points", summary.kind).to_lowercase(),
                ));
            }
            Some(summary) => chunks.iter().for_each(|chunk| summary.merge(chunk)),
            None => {
                let mut summary = chunks[0].start(*kind);
                chunks[1..].iter().for_each(|chunk| summary.merge(chunk));
                record.series.insert(name.clone(), summary);
            }
        }
    }
    if record.series.len() > MAX_SERIES_PER_RUN {
        return Err(SeriesError::TooManySeries);
    }
    Ok(())
}

fn batch_key(tenant: &Tenant, run: RunId, batch_id: &str) -> Key {
    Key::new(runs::data_partition(tenant, run), format!("b#{batch_id}"))
}

/// The answer to a batch whose id was committed before.
fn replay(record: &BatchRecord, fingerprint: &str, run: &RunRecord) -> Result<LogOutcome> {
    if record.fingerprint != fingerprint {
        return Err(SeriesError::BatchIdReused);
    }
    Ok(LogOutcome {
        accepted: record.accepted,
        abort_requested: run.abort_requested_at.is_some(),
    })
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
    let tenant = Tenant::verified(crate::ids::TenantId::generate());
    let Ok(Some(prepared)) = prepare(
        &tenant,
        RunId::generate(),
        batch,
        OffsetDateTime::UNIX_EPOCH,
    ) else {
        return;
    };
    let mut stored = 0;
    for item in &prepared.items {
        let chunk = super::chunk_bytes(item).expect("every chunk item holds its bytes");
        stored += if item.key.sk.starts_with("t#") {
            TextPoints::decode(chunk)
                .expect("a text chunk reads back")
                .len()
        } else {
            Points::decode(chunk)
                .expect("a numeric chunk reads back")
                .len()
        };
    }
    assert_eq!(stored as u64, prepared.accepted);
}

/// What a write of points to a run needs besides the store: how long a silent run stays
/// running (an ended run takes no points), and the meter that counts them.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    pub heartbeat_timeout: time::Duration,
    pub meter: Meter<'a>,
}

/// Stores a log batch for a run of the caller's team.
pub async fn log(
    store: &Store,
    intake: Intake<'_>,
    tenant: &Tenant,
    run: RunId,
    batch: LogBatch,
) -> Result<LogOutcome> {
    let now = store.now();
    let Some(prepared) = prepare(tenant, run, batch, now)? else {
        let record = runs::heartbeat(store, intake.heartbeat_timeout, tenant, run).await?;
        return Ok(LogOutcome {
            accepted: 0,
            abort_requested: record.abort_requested_at.is_some(),
        });
    };
    let record_key = batch_key(tenant, run, &prepared.batch_id);

    let mut versioned = runs::load(store, tenant, run).await?;
    if let Some(done) = get_doc::<BatchRecord>(&*store.kv, &record_key).await? {
        return replay(&done, &prepared.fingerprint, &versioned.record);
    }
    // Refuse before writing anything: an ended run, a name of the other kind, or a
    // run record that would outgrow its item.
    let mut preview = versioned.clone();
    runs::accept_activity(&mut preview.record, now, intake.heartbeat_timeout)?;
    merge_into(&mut preview.record, &prepared.facts)?;
    runs::replace(tenant, &preview)?;

    usage::check_quota(
        store,
        intake.meter.points_cap,
        tenant,
        now,
        prepared.accepted,
    )
    .await?;

    super::fold::expect(store, intake.meter.marks, tenant, run).await?;
    let chunk_keys: Vec<Key> = prepared.items.iter().map(|item| item.key.clone()).collect();
    let marker_key = pending::marker_key(tenant, run, &prepared.attempt);
    store
        .kv
        .put(
            pending::marker(marker_key.clone(), &chunk_keys, now)?,
            Condition::None,
        )
        .await?;
    store
        .kv
        .batch_write(prepared.items.into_iter().map(WriteOp::Put).collect())
        .await?;
    // Every way out below that is known not to have committed removes this attempt's
    // chunks; an error of unknown outcome leaves them hidden behind the marker.
    let forget = || pending::forget(store, marker_key.clone(), chunk_keys.clone());

    let batch_record = BatchRecord {
        fingerprint: prepared.fingerprint.clone(),
        accepted: prepared.accepted,
        committed_at: now,
    };
    metering::mark_storer(store, intake.meter.marks, tenant).await?;
    for _ in 0..CONFLICT_ATTEMPTS {
        let now = store.now();
        let mut updated = versioned.clone();
        updated.record.stored_bytes += prepared.stored_bytes;
        let replace = runs::accept_activity(&mut updated.record, now, intake.heartbeat_timeout)
            .map_err(SeriesError::from)
            .and_then(|()| merge_into(&mut updated.record, &prepared.facts))
            .and_then(|()| Ok(runs::replace(tenant, &updated)?));
        let replace = match replace {
            Ok(replace) => replace,
            Err(refusal) => {
                forget().await;
                // A twin attempt of this batch may have committed before the refusal
                // arose; then it answers.
                if let Some(done) = get_doc::<BatchRecord>(&*store.kv, &record_key).await? {
                    return replay(&done, &prepared.fingerprint, &versioned.record);
                }
                return Err(refusal);
            }
        };
        metering::mark_active(store, intake.meter.marks, tenant, now).await?;
        let mut ops = vec![
            TxOp::Put(
                doc_item(record_key.clone(), &batch_record)?,
                Condition::NotExists,
            ),
            replace,
            TxOp::Delete(marker_key.clone(), Condition::None),
        ];
        let counters = ops.len();
        ops.extend(usage::logged(
            intake.meter.points_cap,
            tenant,
            now,
            prepared.accepted,
            prepared.stored_bytes,
        ));
        match store.kv.transact(ops).await {
            Ok(()) => {
                return Ok(LogOutcome {
                    accepted: prepared.accepted,
                    abort_requested: updated.record.abort_requested_at.is_some(),
                });
            }
            Err(StoreError::TransactionFailed(failed)) if failed.contains(&0) => {
                // A concurrent attempt of the same batch committed first.
                forget().await;
                let done = get_doc::<BatchRecord>(&*store.kv, &record_key)
                    .await?
                    .ok_or(RunError::ConcurrentUpdate)?;
                let run = runs::load(store, tenant, run).await?;
                return replay(&done, &prepared.fingerprint, &run.record);
            }
            Err(StoreError::TransactionFailed(failed))
                if failed.contains(&(counters + usage::CAPPED_OP)) =>
            {
                forget().await;
                let cap = intake.meter.points_cap.unwrap_or_default();
                return Err(usage::quota_exceeded(cap, now).into());
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
    fn each_attempt_at_a_batch_writes_chunks_of_its_own_under_one_fingerprint() {
        let tenant = tenant();
        let run = RunId::generate();
        let body = serde_json::json!({
            "batch_id": "b1",
            "series": {"loss": {"steps": [3, 1, 2], "values": [0.3, "NaN", 0.2]}},
            "text": {"log": [{"step": 1, "text": "hello"}]}
        });
        let now = OffsetDateTime::now_utc();
        let first = prepare(&tenant, run, batch(body.clone()), now)
            .unwrap()
            .unwrap();
        let again = prepare(&tenant, run, batch(body), now).unwrap().unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let keys = |p: &Prepared| p.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&first).len(), keys(&again).len());
        assert!(keys(&first).iter().all(|key| !keys(&again).contains(key)));
        assert_eq!(first.accepted, 4);
        let loss = &first.facts["loss"].1[0];
        assert_eq!(
            (loss.first_step, loss.last_step, loss.last),
            (1, 3, Some(0.3))
        );
        assert_eq!((loss.min, loss.max), (Some(0.2), Some(0.3)));
    }

    #[test]
    fn bad_batches_get_their_own_error_codes() {
        let code = |json: serde_json::Value| {
            prepare(
                &tenant(),
                RunId::generate(),
                batch(json),
                OffsetDateTime::now_utc(),
            )
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
