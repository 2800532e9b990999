//! The fold: moves a run's points out of the small chunk items its batches wrote into
//! blocks in the blob store (see `block`), so that a run stores about 2.5 bytes a point
//! at S3's price whatever its batches were, and a chart reads a block (or a series'
//! overview) instead of a hundred items.
//!
//! Every write of points notes its run for the sweep of the next hour (once per process
//! per run and hour), and the hourly metering run settles each note by folding the run.
//! A fold, series by series:
//!
//! 1. reads the series' committed chunk items written more than `COMMIT_WINDOW` ago
//!    (newer ones may belong to attempts still committing) and seals their points, in
//!    the order reads answer them in, into new blocks under keys of their own, with the
//!    series' overview (the coarsest summary level of all its blocks) rewritten, and
//!    eight small blocks in a row merged into one;
//! 2. commits, in one transaction, each series' fold item (`f#{series}`: its blocks,
//!    its overview, and the arrival time `through` which its chunk items are now in
//!    blocks), the `folded` flag of the series in the run record, and the storage the
//!    run is billed for, moved from the items to the blocks;
//! 3. deletes the chunk items an earlier fold sealed, once no read that began before
//!    that fold can still be going (`READS_LAST_AT_MOST`).
//!
//! Points are counted when their batch commits, never here: a fold moves points, so a
//! fold that crashes at any step loses and bills nothing. A crash before the commit
//! leaves blocks no fold item names, which a later settle deletes; a crash after it
//! leaves chunk items that readers skip and the next fold deletes. A reader that read
//! the fold item before the commit reads the items (still there), one that read it
//! after reads the blocks and skips the items, so no read sees a point twice or misses
//! one.

use std::collections::{BTreeMap, HashSet};

use time::{Duration, OffsetDateTime};

use super::block::{self, SealedChunk};
use super::{
    COMMIT_WINDOW, Points, Result, SeriesData, SeriesError, TextPoints, WRITTEN, chunk_bytes,
    nanos, pending,
};
use crate::ids::{RunId, TenantId};
use crate::metering::{self, Marks};
use crate::projects;
use crate::runs::summary::{SeriesKind, SeriesSummary};
use crate::runs::{self, RunError};
use crate::sweep::{self, Claimant, Note};
use crate::tenancy::Tenant;
use crate::usage;
use serde::{Deserialize, Serialize};
use sextant_storage::Store;
use sextant_storage::blob::BlobKey;
use sextant_storage::kv::{Condition, Item, Key, Query, TxOp, WriteOp};
use sextant_storage::records::{CONFLICT_ATTEMPTS, Versioned, doc_item, get_doc};

/// How long a read can go on (a Lambda runs at most 15 minutes): chunk items a fold
/// sealed stay this long after it, for reads that loaded the record before it.
pub const READS_LAST_AT_MOST: Duration = Duration::minutes(15);
/// Most points in one block; a series with more gets several.
pub const BLOCK_POINTS: usize = 1_000_000;
/// Most chunk bytes of one series a fold takes at once (about 6 million points, some
/// 250 MB decoded); what is left waits for the next fold.
const FOLD_BYTES: usize = 16 * 1024 * 1024;
/// Folds one settle of a note runs at most, one after another.
const FOLDS_A_SETTLE: usize = 16;
/// A block no record names is a fold's that crashed before its commit once it is this
/// old; younger ones may belong to a fold still committing.
const ORPHAN_AFTER: Duration = Duration::HOUR;

/// What one fold did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FoldReport {
    pub points: u64,
    pub blocks: usize,
    /// Chunk items of earlier folds deleted.
    pub items_deleted: usize,
    /// Whether something is left for a later fold: items too recent to seal, or sealed
    /// items too recently to delete.
    pub more: bool,
    /// Whether a series had more items than one fold holds (`FOLD_BYTES`).
    pub capped: bool,
}

/// A series' sealed part, one item beside its points (`{run data}` / `f#{series}`):
/// blocks in the blob store holding every point of the chunk items written up to
/// `through`, which readers skip from then on. Not in the run record, which every batch
/// rewrites whole: block names there would make every batch pay for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    /// Chunk items written (Unix nanoseconds) at or before this are in `blocks`.
    pub through: i64,
    /// When the last fold committed (Unix seconds): its chunk items stay until no read
    /// that began before it can still be going, then the next fold deletes them.
    pub at: i64,
    /// Oldest first; points in a later block arrived after every point of an earlier one.
    pub blocks: Vec<BlockRef>,
    /// For numbers: one block holding the coarsest summary level of every block, so a
    /// chart of the whole of a long series reads one object however many blocks it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overview: Option<BlockRef>,
}

/// One block: where it is (under the run's series prefix, `fold::block_key`) and what
/// it covers. Names are relative and fields short, since a series keeps one of these
/// for every block it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    #[serde(rename = "k")]
    pub name: String,
    #[serde(rename = "f")]
    pub first_step: i64,
    #[serde(rename = "l")]
    pub last_step: i64,
    #[serde(rename = "n")]
    pub count: u64,
    #[serde(rename = "b")]
    pub bytes: u64,
    /// The length of the block's index, which a reader fetches first.
    #[serde(rename = "i")]
    pub index_bytes: u32,
}

/// Where a block of the run is stored.
pub fn block_key(tenant: &Tenant, run: RunId, block: &BlockRef) -> Result<BlobKey> {
    Ok(BlobKey::parse(format!(
        "{}{}",
        series_prefix(tenant, run),
        block.name
    ))?)
}

const FOLDED_PREFIX: &str = "f#";

fn folded_key(tenant: &Tenant, run: RunId, name: &str) -> Key {
    Key::new(
        runs::data_partition(tenant, run),
        format!("{FOLDED_PREFIX}{name}"),
    )
}

/// What folds sealed of one series, as stored, with its version; `None` before the
/// first fold of it commits.
async fn load_folded(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    name: &str,
) -> Result<Option<Versioned<Folded>>> {
    match store.kv.get(&folded_key(tenant, run, name)).await? {
        Some(item) => Ok(Some(Versioned::read(&item)?)),
        None => Ok(None),
    }
}

/// What folds sealed of one series, read only if its summary says there is something:
/// a series never folded costs no read.
pub async fn folded(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    name: &str,
    summary: &SeriesSummary,
) -> Result<Option<Folded>> {
    if !summary.folded {
        return Ok(None);
    }
    Ok(load_folded(store, tenant, run, name)
        .await?
        .map(|versioned| versioned.record))
}

/// What folds sealed of every series of the run, by series name.
pub async fn all_folded(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
) -> Result<BTreeMap<String, Folded>> {
    let query = Query::partition(runs::data_partition(tenant, run)).prefix(FOLDED_PREFIX);
    let mut folded = BTreeMap::new();
    for item in store.kv.query(query).await?.items {
        if let Some(name) = item.key.sk.strip_prefix(FOLDED_PREFIX) {
            folded.insert(name.to_owned(), sextant_storage::records::read_doc(&item)?);
        }
    }
    Ok(folded)
}

fn series_prefix(tenant: &Tenant, run: RunId) -> String {
    format!("{}runs/{run}/series/", tenant.blob_prefix())
}

/// The sweep's note that folds a run.
fn series_note(tenant: &Tenant, run: RunId) -> Note {
    Note {
        tenant: tenant.id(),
        blob: series_prefix(tenant, run),
        upload_id: None,
        claimant: Claimant::Series { run },
    }
}

/// Notes the run for the sweep of the next hour, once per process per run and hour.
/// Call before storing points: a note for a run with nothing to fold costs a look.
pub async fn expect(store: &Store, marks: &Marks, tenant: &Tenant, run: RunId) -> Result<()> {
    let now = store.now();
    let label = format!(
        "fold#{}#{run}",
        crate::calendar::hour_label(crate::calendar::hour_of(now))
    );
    if !marks.first_time(&label, tenant.id()) {
        return Ok(());
    }
    if let Err(err) = sweep::expect(&*store.kv, &series_note(tenant, run), now).await {
        marks.forget(&label, tenant.id());
        return Err(err.into());
    }
    Ok(())
}

/// Settles a sweep note for a run (`Claimant::Series`): settles its hot batches
/// (`super::hot`), folds it, deletes blocks no record names, and answers whether the
/// run should be looked at again next hour. A run that is gone has nothing to settle.
pub async fn settle(store: &Store, marks: &Marks, note: &Note, run: RunId) -> Result<bool> {
    let tenant = &Tenant::verified(note.tenant);
    let meter = metering::Meter {
        marks,
        points_cap: None,
    };
    super::hot::settle_due(store, meter, tenant, run).await?;
    // A run that logged more in an hour than one fold holds is folded a piece at a
    // time, so a backlog shrinks every hour.
    let mut more = false;
    for _ in 0..FOLDS_A_SETTLE {
        let report = match fold(store, tenant, run).await {
            Ok(report) => report,
            Err(SeriesError::Run(RunError::NotFound)) => return Ok(false),
            Err(err) => return Err(err),
        };
        more = report.more || report.capped;
        if !report.capped {
            break;
        }
    }
    delete_orphans(store, tenant, run).await?;
    Ok(more)
}

/// Folds what can be folded of every series of the run.
pub async fn fold(store: &Store, tenant: &Tenant, run: RunId) -> Result<FoldReport> {
    let now = store.now();
    let cutoff = nanos(now - COMMIT_WINDOW);
    let delete_before = (now - READS_LAST_AT_MOST).unix_timestamp();
    let versioned = runs::load(store, tenant, run).await?;
    let mut folds: BTreeMap<String, Option<Versioned<Folded>>> = BTreeMap::new();
    for (name, summary) in &versioned.record.series {
        let stored = if summary.folded {
            load_folded(store, tenant, run, name).await?
        } else {
            None
        };
        folds.insert(name.clone(), stored);
    }
    let uncommitted = pending::uncommitted(store, tenant, run).await?;
    let fold_id = format!("{:016x}", rand::random::<u64>());
    let mut report = FoldReport::default();
    let mut garbage: Vec<Key> = Vec::new();
    let mut sealed: BTreeMap<String, Sealed> = BTreeMap::new();
    for (ordinal, (name, summary)) in versioned.record.series.iter().enumerate() {
        let folded = folds[name].as_ref().map(|versioned| &versioned.record);
        let through = folded.map_or(i64::MIN, |f| f.through);
        let old_enough = folded.is_none_or(|folded| folded.at <= delete_before);
        let mut sealable: Vec<Item> = Vec::new();
        for item in chunk_items(store, tenant, run, summary.kind, name).await? {
            let written = item.n(WRITTEN).unwrap_or(0);
            if written <= through {
                if old_enough {
                    garbage.push(item.key);
                } else {
                    report.more = true;
                }
            } else if written >= cutoff {
                report.more = true;
            } else if !uncommitted.contains(&item.key.sk) {
                sealable.push(item);
            }
        }
        if sealable.is_empty() {
            continue;
        }
        let through = match within_budget(&mut sealable, FOLD_BYTES) {
            Some(last) => {
                report.capped = true;
                last
            }
            None => cutoff - 1,
        };
        let fold = SeriesFold {
            store,
            tenant,
            run,
            fold_id: &fold_id,
            ordinal,
        };
        let series = match summary.kind {
            SeriesKind::Numeric => fold.seal::<Points>(folded, &sealable, through).await?,
            SeriesKind::Text => fold.seal::<TextPoints>(folded, &sealable, through).await?,
        };
        report.points += series.points;
        report.blocks += series.added;
        sealed.insert(name.clone(), series.sealed);
        // Anything sealed now is deleted by a later fold.
        report.more = true;
    }
    // A transaction holds at most 100 writes: series commit in groups, each whole.
    let sealed: Vec<(String, Sealed)> = sealed.into_iter().collect();
    let mut versioned = versioned;
    for group in sealed.chunks(SERIES_A_COMMIT) {
        versioned = commit(store, tenant, run, versioned, &folds, group, now).await?;
    }
    if !garbage.is_empty() {
        report.items_deleted = garbage.len();
        store
            .kv
            .batch_write(garbage.into_iter().map(WriteOp::Delete).collect())
            .await?;
    }
    Ok(report)
}

/// One series' part of a fold: where its blocks go.
struct SeriesFold<'a> {
    store: &'a Store,
    tenant: &'a Tenant,
    run: RunId,
    fold_id: &'a str,
    /// The series' place among the run's, which names its blocks in this fold.
    ordinal: usize,
}

/// What sealing one series made, and what the report counts of it.
struct SeriesSealed {
    sealed: Sealed,
    points: u64,
    added: usize,
}

impl SeriesFold<'_> {
    /// Seals `sealable` into new blocks after the series' `folded` ones, rewrites its
    /// overview and merges its small blocks: everything but the commit.
    async fn seal<T: SeriesData>(
        &self,
        folded: Option<&Folded>,
        sealable: &[Item],
        through: i64,
    ) -> Result<SeriesSealed> {
        let Self {
            store,
            tenant,
            run,
            fold_id,
            ordinal,
        } = *self;
        let freed: u64 = sealable.iter().map(|item| item.billed_size() as u64).sum();
        let (added, overview_points) =
            seal::<T>(store, tenant, run, fold_id, ordinal, sealable).await?;
        let previous = folded.and_then(|f| f.overview.as_ref());
        let overview = match overview_points {
            Some(points) => {
                Some(extend_overview(store, tenant, run, fold_id, ordinal, previous, points).await?)
            }
            None => None,
        };
        let points = added.iter().map(|b| b.count).sum::<u64>();
        let added_blocks = added.len();
        let mut blocks: Vec<BlockRef> = folded.map_or_else(Vec::new, |f| f.blocks.clone());
        let mut delta = bytes_of(&added) as i64 - freed as i64;
        blocks.extend(added);
        if let Some(overview) = &overview {
            // The new overview replaces the old one.
            delta += overview.bytes as i64 - previous.map_or(0, |b| b.bytes as i64);
        }
        delta += merge_small::<T>(store, tenant, run, fold_id, ordinal, &mut blocks).await?;
        Ok(SeriesSealed {
            sealed: Sealed {
                blocks,
                through,
                overview,
                delta,
            },
            points,
            added: added_blocks,
        })
    }
}

/// What a fold made of one series.
#[derive(Debug)]
struct Sealed {
    /// Every block of the series after the fold, oldest first.
    blocks: Vec<BlockRef>,
    /// The arrival time through which its items are in blocks.
    through: i64,
    overview: Option<BlockRef>,
    /// What the fold changed the series' stored bytes by: blocks added and merged,
    /// items sealed, overviews replaced.
    delta: i64,
}

/// Blocks under a quarter of `BLOCK_POINTS` are small: a run logging slowly makes one
/// an hour, and eight of them in a row are merged into one.
const SMALL_BLOCK_POINTS: u64 = BLOCK_POINTS as u64 / 4;
const SMALL_BLOCKS_TO_MERGE: usize = 8;

fn bytes_of(blocks: &[BlockRef]) -> u64 {
    blocks.iter().map(|b| b.bytes).sum()
}

/// Merges the oldest run of `SMALL_BLOCKS_TO_MERGE` or more consecutive small blocks (as
/// many of them as fit one block) into one block in their place, so that a run logging
/// for months keeps a bounded list and a read of a range fetches few blocks. Its points
/// keep their read order: by step and timestamp, then the block they were in. Answers
/// what the merge changed the stored bytes by; the blocks it replaced go as orphans.
async fn merge_small<T: SeriesData>(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    fold_id: &str,
    ordinal: usize,
    blocks: &mut Vec<BlockRef>,
) -> Result<i64> {
    let small = |block: &BlockRef| block.count < SMALL_BLOCK_POINTS;
    let Some(start) = (0..blocks.len()).find(|&at| {
        blocks[at..].len() >= SMALL_BLOCKS_TO_MERGE
            && blocks[at..at + SMALL_BLOCKS_TO_MERGE].iter().all(small)
    }) else {
        return Ok(0);
    };
    let mut end = start;
    let mut total = 0;
    while end < blocks.len()
        && small(&blocks[end])
        && total + blocks[end].count <= BLOCK_POINTS as u64
    {
        total += blocks[end].count;
        end += 1;
    }
    let mut points: Vec<(SealOrder, T::Payload)> = Vec::with_capacity(total as usize);
    for (position, block) in blocks[start..end].iter().enumerate() {
        let key = block_key(tenant, run, block)?;
        for (ordinal, bytes) in block::chunks_in(store, key, block, 0, i64::MIN, i64::MAX).await? {
            let mut chunk = T::decode(&bytes)?;
            for index in 0..chunk.len() {
                let place = (
                    chunk.step(index),
                    chunk.timestamp(index),
                    position as i64,
                    ordinal as u32,
                    index as u32,
                );
                points.push((place, chunk.take(index)));
            }
        }
    }
    let merged = seal_points::<T>(
        store,
        tenant,
        run,
        fold_id,
        &format!("{ordinal:04}-merged"),
        points,
    )
    .await?;
    let replaced = bytes_of(&blocks[start..end]);
    let added = bytes_of(&merged.0);
    blocks.splice(start..end, merged.0);
    Ok(added as i64 - replaced as i64)
}

/// Series whose folds commit in one transaction, with the run record and the storage
/// counter: under DynamoDB's 100 writes.
const SERIES_A_COMMIT: usize = 64;

/// A point's place in read order (`Place`'s order: step, timestamp, arrival, chunk key,
/// index), with the chunk key as the item's position among the sealed items, which are
/// in key order.
type SealOrder = (i64, f64, i64, u32, u32);

/// Keeps the oldest of `sealable` that one fold holds in memory (`budget` bytes of
/// chunks, whole batches at a time, at least one), in key order; answers the arrival
/// time of the last batch kept when it left some out.
fn within_budget(sealable: &mut Vec<Item>, budget: usize) -> Option<i64> {
    let written = |item: &Item| item.n(WRITTEN).unwrap_or(0);
    let mut arrivals: Vec<(i64, usize)> = sealable
        .iter()
        .map(|item| (written(item), item.b(super::DATA).map_or(0, |b| b.len())))
        .collect();
    arrivals.sort_unstable();
    let mut total = 0;
    let mut last_kept = None;
    for (index, &(arrival, bytes)) in arrivals.iter().enumerate() {
        let new_batch = index == 0 || arrivals[index - 1].0 != arrival;
        if new_batch && total + bytes > budget && last_kept.is_some() {
            sealable.retain(|item| written(item) <= last_kept.unwrap_or(i64::MIN));
            return last_kept;
        }
        total += bytes;
        last_kept = Some(arrival);
    }
    None
}

/// Every chunk item of one series, sealed or not.
async fn chunk_items(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    kind: SeriesKind,
    name: &str,
) -> Result<Vec<Item>> {
    let mut query = Query::partition(runs::data_partition(tenant, run))
        .prefix(format!("{}#{name}#", kind.key_prefix()));
    let mut items = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(items),
        }
    }
}

/// Seals chunk items' points into blocks, written to the blob store; answers the
/// blocks, oldest first.
async fn seal<T: SeriesData>(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    fold_id: &str,
    ordinal: usize,
    sealable: &[Item],
) -> Result<(Vec<BlockRef>, Option<Points>)> {
    let mut points: Vec<(SealOrder, T::Payload)> = Vec::new();
    for (position, item) in sealable.iter().enumerate() {
        let mut chunk = T::decode(chunk_bytes(item)?)?;
        let written = item.n(WRITTEN).unwrap_or(0);
        for index in 0..chunk.len() {
            let place = (
                chunk.step(index),
                chunk.timestamp(index),
                written,
                position as u32,
                index as u32,
            );
            points.push((place, chunk.take(index)));
        }
    }
    seal_points::<T>(
        store,
        tenant,
        run,
        fold_id,
        &format!("{ordinal:04}"),
        points,
    )
    .await
}

/// Sorts points into read order and writes them as blocks named `{name}-{part}`;
/// answers the blocks, oldest first, and what they add to the series' overview.
async fn seal_points<T: SeriesData>(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    fold_id: &str,
    name: &str,
    mut points: Vec<(SealOrder, T::Payload)>,
) -> Result<(Vec<BlockRef>, Option<Points>)> {
    points.sort_by(|(a, _), (b, _)| {
        (a.0.cmp(&b.0))
            .then(a.1.total_cmp(&b.1))
            .then((a.2, a.3, a.4).cmp(&(b.2, b.3, b.4)))
    });
    let mut blocks = Vec::new();
    let mut overview: Option<Points> = None;
    let mut points = points.into_iter().peekable();
    let mut part = 0;
    while points.peek().is_some() {
        let mut series = T::default();
        for ((step, timestamp, ..), payload) in points.by_ref().take(BLOCK_POINTS) {
            series.push(step, payload, timestamp);
        }
        let mut levels: Vec<(u32, Vec<SealedChunk>)> = vec![(1, series.seal())];
        levels.extend(
            series
                .summary_levels()
                .into_iter()
                .map(|(bucket, kept)| (bucket, kept.seal())),
        );
        if let Some(coarsest) = series.overview() {
            let overview = overview.get_or_insert_with(Points::default);
            overview.extend_from(&coarsest, 0..coarsest.len());
        }
        let part_name = format!("{name}-{part:04}");
        blocks.push(
            put_block(
                store,
                tenant,
                run,
                fold_id,
                &part_name,
                &levels,
                series.len(),
            )
            .await?,
        );
        part += 1;
    }
    Ok((blocks, overview))
}

/// Writes a block of `levels` under the fold's keys.
async fn put_block(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    fold_id: &str,
    name: &str,
    levels: &[(u32, Vec<SealedChunk>)],
    count: usize,
) -> Result<BlockRef> {
    let (bytes, index_bytes) = block::encode(levels);
    let chunks = &levels[0].1;
    let block = format!("{fold_id}/{name}.blk");
    let key = BlobKey::parse(format!("{}{block}", series_prefix(tenant, run)))?;
    let size = bytes.len() as u64;
    store.blobs.put(&key, bytes.into()).await?;
    Ok(BlockRef {
        name: block,
        first_step: chunks
            .iter()
            .map(|c| c.first_step)
            .min()
            .unwrap_or_default(),
        last_step: chunks.iter().map(|c| c.last_step).max().unwrap_or_default(),
        count: count as u64,
        bytes: size,
        index_bytes,
    })
}

/// The series' overview with `added` (the coarsest level of new blocks) merged in: a
/// new block, since blocks never change.
async fn extend_overview(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    fold_id: &str,
    ordinal: usize,
    previous: Option<&BlockRef>,
    added: Points,
) -> Result<BlockRef> {
    let mut points = Points::default();
    if let Some(previous) = previous {
        let key = block_key(tenant, run, previous)?;
        for (_, bytes) in block::chunks_in(store, key, previous, 0, i64::MIN, i64::MAX).await? {
            let chunk = Points::decode(&bytes)?;
            points.extend_from(&chunk, 0..chunk.len());
        }
    }
    points.extend_from(&added, 0..added.len());
    // Stable: points equal in step and timestamp keep the order their blocks have.
    points.sort();
    let count = points.len();
    let top = *block::LEVEL_BUCKETS.last().expect("levels") as u32;
    let levels = [(top, points.seal())];
    let name = format!("{ordinal:04}-overview");
    put_block(store, tenant, run, fold_id, &name, &levels, count).await
}

/// Names the new blocks of a group of series in their fold items and flags the series
/// in the run record (with the run's bytes), unless another fold got there first.
/// A concurrent change of anything else in the record (a heartbeat, a batch) is
/// applied on top. Answers the record as written.
async fn commit(
    store: &Store,
    tenant: &Tenant,
    run: RunId,
    mut versioned: runs::Versioned,
    folds: &BTreeMap<String, Option<Versioned<Folded>>>,
    group: &[(String, Sealed)],
    now: OffsetDateTime,
) -> Result<runs::Versioned> {
    let delta: i64 = group.iter().map(|(_, sealed)| sealed.delta).sum();
    let mut stored: Vec<Option<Versioned<Folded>>> =
        group.iter().map(|(name, _)| folds[name].clone()).collect();
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut updated = versioned.clone();
        let mut ops = Vec::with_capacity(group.len() + 2);
        for ((name, sealed), current) in group.iter().zip(&stored) {
            let expected = folds[name].as_ref().map(|v| &v.record);
            if current.as_ref().map(|v| &v.record) != expected {
                // Another fold sealed these items too; its blocks stand, ours are
                // orphans for a later settle to delete.
                return Ok(versioned);
            }
            let mut next = current.clone().unwrap_or_else(|| {
                Versioned::unsaved(Folded {
                    through: sealed.through,
                    at: 0,
                    blocks: Vec::new(),
                    overview: None,
                })
            });
            next.record.through = sealed.through;
            next.record.at = now.unix_timestamp();
            next.record.blocks.clone_from(&sealed.blocks);
            if sealed.overview.is_some() {
                next.record.overview.clone_from(&sealed.overview);
            }
            ops.push(TxOp::Put(
                next.next_item(folded_key(tenant, run, name))?,
                next.unchanged(),
            ));
            let summary =
                updated.record.series.get_mut(name).ok_or_else(|| {
                    SeriesError::Corrupt(anyhow::anyhow!("series {name:?} vanished"))
                })?;
            summary.folded = true;
        }
        let now = store.now();
        updated.record.count(now, 0, delta);
        ops.push(runs::replace(tenant, &updated)?);
        ops.extend(usage::storage_change(tenant, now, delta));
        match store.kv.transact(ops).await {
            Ok(()) => {
                updated.saved();
                return Ok(updated);
            }
            Err(err) if err.is_conflict() => {
                versioned = runs::load(store, tenant, run).await?;
                stored.clear();
                for (name, _) in group {
                    stored.push(load_folded(store, tenant, run, name).await?);
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(RunError::ConcurrentUpdate.into())
}

/// Deletes the run's blocks that no series' fold item names and no fold can still be
/// committing.
async fn delete_orphans(store: &Store, tenant: &Tenant, run: RunId) -> Result<()> {
    let folds = all_folded(store, tenant, run).await?;
    let named: HashSet<String> = folds
        .values()
        .flat_map(|f| f.blocks.iter().chain(&f.overview))
        .map(|b| block_key(tenant, run, b).map(|key| key.as_str().to_owned()))
        .collect::<Result<_>>()?;
    let prefix = series_prefix(tenant, run);
    let old_before = store.now() - ORPHAN_AFTER;
    let mut after = None;
    loop {
        let page = store.blobs.list(&prefix, after.as_ref(), 1000).await?;
        for blob in &page.blobs {
            if !named.contains(blob.key.as_str()) && blob.modified < old_before {
                store.blobs.delete(&blob.key).await?;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// How far the migration of runs logged before folds existed has got: the last tenant
/// whose runs it noted, and whether it has seen them all.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Migration {
    after: Option<TenantId>,
    done: bool,
}

fn migration_key() -> Key {
    Key::new("migration#fold", "cursor")
}

/// Notes for the sweep every run of up to `tenants` more tenants that has series
/// not yet folded, resuming where the last call stopped, so that runs logged before
/// folds existed (and not logged to since) get folded too. The hourly run calls it
/// until it has seen every tenant that stores bytes; answers the runs it noted.
pub async fn note_unfolded_runs(store: &Store, tenants: usize) -> Result<usize> {
    let migration: Migration = get_doc(&*store.kv, &migration_key())
        .await?
        .unwrap_or_default();
    if migration.done {
        return Ok(0);
    }
    let pending: Vec<TenantId> = metering::storing_tenants(store)
        .await?
        .into_iter()
        .filter(|tenant| migration.after.is_none_or(|after| *tenant > after))
        .collect();
    let now = store.now();
    let mut noted = 0;
    for &id in pending.iter().take(tenants) {
        let tenant = Tenant::verified(id);
        for project in projects::list_all(store, &tenant).await? {
            for record in runs::every_record_in_project(store, &tenant, project.id).await? {
                let unfolded = record.series.values().any(|s| !s.folded);
                if unfolded && !record.deleting {
                    sweep::expect(&*store.kv, &series_note(&tenant, record.id), now).await?;
                    noted += 1;
                }
            }
        }
        let cursor = Migration {
            after: Some(id),
            done: false,
        };
        store
            .kv
            .put(doc_item(migration_key(), &cursor)?, Condition::None)
            .await?;
    }
    if pending.len() <= tenants {
        let cursor = Migration {
            after: pending.last().copied().or(migration.after),
            done: true,
        };
        store
            .kv
            .put(doc_item(migration_key(), &cursor)?, Condition::None)
            .await?;
    }
    Ok(noted)
}

/// Deletes every block of a run, for the run's deletion.
pub async fn delete_all(store: &Store, tenant: &Tenant, run: RunId) -> Result<()> {
    let prefix = series_prefix(tenant, run);
    loop {
        // Always the first page: the previous one is gone.
        let page = store.blobs.list(&prefix, None, 1000).await?;
        if page.blobs.is_empty() {
            return Ok(());
        }
        for blob in &page.blobs {
            store.blobs.delete(&blob.key).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_storage::kv::Value;

    fn item(written: i64, bytes: usize, key: &str) -> Item {
        Item::new(Key::new("run", key))
            .with(WRITTEN, Value::N(written))
            .with(super::super::DATA, Value::B(vec![0; bytes].into()))
    }

    #[test]
    fn a_fold_takes_the_oldest_whole_batches_that_fit_its_budget() {
        let mut items = vec![
            item(30, 40, "c#a#1"),
            item(10, 40, "c#a#2"),
            item(20, 40, "c#a#3"),
            item(10, 40, "c#a#4"),
        ];
        // Batch 10 (two items, 80 bytes) and batch 20 fit 120 bytes; batch 30 waits.
        assert_eq!(within_budget(&mut items, 120), Some(20));
        let kept: Vec<&str> = items.iter().map(|i| i.key.sk.as_str()).collect();
        assert_eq!(kept, ["c#a#2", "c#a#3", "c#a#4"], "in key order");
        // The oldest batch is taken whatever its size.
        let mut items = vec![item(10, 500, "x"), item(20, 1, "y")];
        assert_eq!(within_budget(&mut items, 100), Some(10));
        assert_eq!(items.len(), 1);
        // All of it fits: nothing is left out.
        let mut items = vec![item(10, 5, "x"), item(20, 5, "y")];
        assert_eq!(within_budget(&mut items, 100), None);
        assert_eq!(items.len(), 2);
    }
}
