//! Metric and text series: names, summaries, chunk keys, and reading points back in
//! step order, exactly or downsampled.
//!
//! A series is stored as sealed chunks in the run's data partition, one item each:
//! `c#{series}#{first step}#{batch}.{fingerprint}#{part}` for numbers and `t#...` for
//! text. Keys sort by first step, so a step range is one query; chunks of out-of-order
//! batches overlap, which the run record's `span` (the widest step range of any chunk)
//! bounds: a chunk holding a step in `[from, to]` starts in `[from - span, to]`.
//!
//! Steps are integers. Points come back sorted by step, then timestamp; a repeated
//! step keeps every value logged at it (as MLflow's metric history does), in the order
//! logged. Out-of-order steps are stored as they come and sorted on read. `last` is the
//! value of the point latest in that order.

pub mod batch;
pub mod block;
pub mod codec;
pub mod downsample;
pub mod fold;
pub mod hot;
mod pending;
pub mod text;

use serde::{Deserialize, Serialize};

use crate::cursor::InvalidCursor;
use crate::error::{Coded, Error, ErrorCode};
use crate::projects::ProjectError;
use crate::runs::RunError;
use crate::tenancy::Tenant;
use crate::usage::UsageError;
use sextant_storage::Store;
use sextant_storage::blob::BlobError;
use sextant_storage::kv::StoreError;
use sextant_storage::kv::{Item, Query};

use crate::runs::RunRecord;
use crate::runs::summary::{ChunkFacts, SeriesKind};
use fold::BlockRef;

pub use codec::Points;
pub use text::TextPoints;

pub const MAX_NAME_BYTES: usize = 250;
/// Most points an exact read returns in one response: at worst about 64 bytes of
/// JSON a point, a page stays well under Lambda's 6 MB response limit. `next_after`
/// continues.
pub const EXACT_PAGE_POINTS: usize = 50_000;
/// Most text an exact read of a text series returns in one response (lines are up
/// to 64 KiB each, so a page is cut by size as well as by count).
pub const TEXT_PAGE_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_DOWNSAMPLED_POINTS: usize = 100_000;
/// The attribute holding a chunk's bytes.
const DATA: &str = "d";
/// Longer than any batch attempt takes to commit after it arrives (a request lives at
/// most its deadline): a chunk item older than this is committed or never will be.
const COMMIT_WINDOW: time::Duration = time::Duration::minutes(2);
/// The attribute holding when a chunk's batch arrived (Unix nanoseconds): points
/// equal in step and timestamp read back in the order they were logged.
const WRITTEN: &str = "w";

/// Unix nanoseconds, as chunk and hot items record arrival times.
fn nanos(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// Whether `name` is 1 to 250 bytes of letters, digits, `_ - . / :` and spaces: MLflow's
/// rule for metric, param and tag keys, which series names follow too.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ' '))
}

/// Why a series write or read is refused.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// The name (its first 60 characters) breaks MLflow's rule for keys.
    #[error(
        "series names are 1 to {max} bytes of letters, digits, '_', '-', '.', '/', ':' and \
         spaces: {excerpt:?}",
        max = MAX_NAME_BYTES
    )]
    InvalidName { excerpt: String },
    #[error(
        "reading this range would fetch more than {} MiB of stored points; narrow it with \
         from and to",
        MAX_READ_BYTES / (1024 * 1024)
    )]
    RangeTooLarge,
    #[error(
        "batch_id is 1 to {} letters, digits, '-' or '_' (a UUID, say)",
        batch::MAX_BATCH_ID_BYTES
    )]
    InvalidBatchId,
    #[error("a batch with points needs a batch_id")]
    MissingBatchId,
    #[error(
        "session (1 to {} of A-Z a-z 0-9 - _) and sequence (1 or more) come together",
        batch::MAX_BATCH_ID_BYTES
    )]
    InvalidSequence,
    /// A batch numbered below the last its session committed: an attempt that lost to
    /// its own retry, or a sender that broke the order it declared.
    #[error(
        "this session already committed batch {committed}, after {sent}; a session sends \
         its batches in order, one at a time"
    )]
    SequenceBehind { sent: i64, committed: i64 },
    #[error("a batch holds at most {} points; split it", batch::MAX_BATCH_POINTS)]
    BatchTooLarge,
    #[error("{0:?} is sent both as numbers and as text")]
    KindMismatchInOneBatch(String),
    /// The series is stored as the other kind: `{name:?} already holds {kind} points`.
    #[error("{0}")]
    KindMismatch(String),
    /// The series counts its steps in the other unit (`StepUnit`).
    #[error("{series:?} counts {stored} steps; this batch sends {sent} ones")]
    StepUnitMismatch {
        series: String,
        stored: &'static str,
        sent: &'static str,
    },
    #[error("{0}: steps, values and timestamps must have the same length")]
    LengthMismatch(String),
    #[error("{series}: a text line is at most {max} bytes", max = text::MAX_LINE_BYTES)]
    TextTooLong { series: String },
    #[error("a run has at most {} series", batch::MAX_SERIES_PER_RUN)]
    TooManySeries,
    #[error("this batch_id (or session and sequence) was already used for other points")]
    BatchIdReused,
    /// A stored chunk or marker that does not read back: a failure of ours.
    #[error("decoding a stored chunk: {0:#}")]
    Corrupt(anyhow::Error),
    #[error(transparent)]
    Cursor(#[from] InvalidCursor),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Coded for SeriesError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName { .. } => ErrorCode::InvalidSeriesName,
            Self::RangeTooLarge => ErrorCode::RangeTooLarge,
            Self::InvalidBatchId => ErrorCode::InvalidBatchId,
            Self::MissingBatchId => ErrorCode::MissingBatchId,
            Self::InvalidSequence => ErrorCode::InvalidSequence,
            Self::SequenceBehind { .. } => ErrorCode::SequenceBehind,
            Self::BatchTooLarge => ErrorCode::BatchTooLarge,
            Self::KindMismatchInOneBatch(_) => ErrorCode::SeriesKindMismatchInOneBatch,
            Self::KindMismatch(_) => ErrorCode::SeriesKindMismatch,
            Self::StepUnitMismatch { .. } => ErrorCode::StepUnitMismatch,
            Self::LengthMismatch(_) => ErrorCode::LengthMismatch,
            Self::TextTooLong { .. } => ErrorCode::TextTooLong,
            Self::TooManySeries => ErrorCode::TooManySeries,
            Self::BatchIdReused => ErrorCode::BatchIdReused,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Cursor(err) => err.code(),
            Self::Run(err) => err.code(),
            Self::Project(err) => err.code(),
            Self::Usage(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::Blob(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Corrupt(cause) => Error::internal(cause.context("decoding a stored chunk")),
            Self::Run(err) => err.into(),
            Self::Project(err) => err.into(),
            Self::Usage(err) => err.into(),
            Self::Store(err) => err.into(),
            Self::Blob(err) => err.into(),
            other => Error::new(other.code(), other.to_string()),
        }
    }
}

type Result<T, E = SeriesError> = std::result::Result<T, E>;

/// Checks a series name: 1 to 250 bytes of letters, digits, `_ - . / :` and spaces
/// (MLflow's rule), which keeps `#` free to separate the parts of chunk keys.
pub fn check_name(name: &str) -> Result<()> {
    if is_key_name(name) {
        Ok(())
    } else {
        Err(SeriesError::InvalidName {
            excerpt: name.chars().take(60).collect(),
        })
    }
}

/// The sort-key form of a step: fixed-width hex of the step with its sign bit flipped,
/// so string order is numeric order for every i64.
pub fn step_key(step: i64) -> String {
    format!("{:016x}", (step as u64) ^ (1 << 63))
}

pub fn chunk_sort_key(
    kind: SeriesKind,
    name: &str,
    first_step: i64,
    batch: &str,
    part: usize,
) -> String {
    format!(
        "{}#{name}#{}#{batch}#{part:04x}",
        kind.key_prefix(),
        step_key(first_step)
    )
}

/// A chunk of a series as encoded, and what it adds to the series' summary.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub facts: ChunkFacts,
}

/// Points of a series in a step range: numbers or text lines.
pub trait SeriesData: Default + Sized {
    /// What a point carries besides its step and timestamp: a value or a line.
    type Payload;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn step(&self, index: usize) -> i64;
    fn timestamp(&self, index: usize) -> f64;
    /// The payload of point `index`, leaving a placeholder behind.
    fn take(&mut self, index: usize) -> Self::Payload;
    fn push(&mut self, step: i64, payload: Self::Payload, timestamp: f64);
    fn decode(chunk: &[u8]) -> Result<Self>;
    /// The first step of a chunk, read from its header.
    fn first_step(chunk: &[u8]) -> Result<i64>;
    fn truncate(&mut self, len: usize);
    /// Sorted points cut and encoded into chunks (of at most `codec::MAX_CHUNK_POINTS`
    /// numbers, or `TextPoints::chunk_ranges`), as batches, rounds and folds store them.
    fn cut(&self) -> Vec<Chunk>;
    /// The chunks of `cut`, as a fold seals them into a block.
    fn seal(&self) -> Vec<block::SealedChunk> {
        self.cut()
            .into_iter()
            .map(block::SealedChunk::from)
            .collect()
    }
    /// A block's summary levels of these sorted points (`block::summary_levels`); none
    /// for text, which charts do not downsample.
    fn summary_levels(&self) -> Vec<(u32, Points)> {
        Vec::new()
    }
    /// What these sorted points add to the series' overview (`block::coarsest`);
    /// nothing for text.
    fn overview(&self) -> Option<Points> {
        None
    }
}

impl SeriesData for Points {
    type Payload = f64;

    fn len(&self) -> usize {
        Points::len(self)
    }

    fn step(&self, index: usize) -> i64 {
        self.steps[index]
    }

    fn timestamp(&self, index: usize) -> f64 {
        self.timestamps[index]
    }

    fn take(&mut self, index: usize) -> f64 {
        self.values[index]
    }

    fn push(&mut self, step: i64, value: f64, timestamp: f64) {
        Points::push(self, step, value, timestamp);
    }

    fn decode(chunk: &[u8]) -> Result<Self> {
        codec::decode(chunk).map_err(corrupt)
    }

    fn first_step(chunk: &[u8]) -> Result<i64> {
        Ok(codec::summary(chunk).map_err(corrupt)?.first_step)
    }

    fn truncate(&mut self, len: usize) {
        self.steps.truncate(len);
        self.values.truncate(len);
        self.timestamps.truncate(len);
    }

    fn summary_levels(&self) -> Vec<(u32, Points)> {
        block::summary_levels(self)
    }

    fn overview(&self) -> Option<Points> {
        Some(block::coarsest(self))
    }

    fn cut(&self) -> Vec<Chunk> {
        (0..self.len())
            .step_by(codec::MAX_CHUNK_POINTS)
            .map(|start| {
                let end = self.len().min(start + codec::MAX_CHUNK_POINTS);
                let mut chunk = Points::with_capacity(end - start);
                chunk.extend_from(self, start..end);
                let summary = codec::ChunkSummary::of(&chunk).expect("a chunk has points");
                Chunk {
                    bytes: codec::encode(&chunk),
                    facts: ChunkFacts {
                        count: summary.count as u64,
                        first_step: summary.first_step,
                        last_step: summary.last_step,
                        last_timestamp: self.timestamps[end - 1],
                        min: (!summary.min.is_nan()).then_some(summary.min),
                        max: (!summary.max.is_nan()).then_some(summary.max),
                        last: Some(summary.last),
                    },
                }
            })
            .collect()
    }
}

fn corrupt(err: impl std::error::Error + Send + Sync + 'static) -> SeriesError {
    SeriesError::Corrupt(anyhow::Error::new(err))
}

/// Which points of a series a read wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Only points after this step, for live charts that poll.
    pub after: Option<i64>,
}

impl StepRange {
    fn bounds(&self) -> Option<(i64, i64)> {
        let mut lo = self.from.unwrap_or(i64::MIN);
        if let Some(after) = self.after {
            lo = lo.max(after.checked_add(1)?);
        }
        let hi = self.to.unwrap_or(i64::MAX);
        (lo <= hi).then_some((lo, hi))
    }
}

/// Where a point stands in the order reads answer points in: by step, then timestamp,
/// then when its batch arrived, then its chunk's sort key, then its place in the
/// chunk. Every point of a series has a place of its own, so a page can end anywhere,
/// inside a step that holds millions of points too, and the next resume after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    step: i64,
    timestamp: f64,
    written: i64,
    chunk: String,
    index: u32,
}

impl Eq for Place {}

impl PartialOrd for Place {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Place {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.step
            .cmp(&other.step)
            .then(self.timestamp.total_cmp(&other.timestamp))
            .then(self.written.cmp(&other.written))
            .then_with(|| self.chunk.cmp(&other.chunk))
            .then(self.index.cmp(&other.index))
    }
}

impl Place {
    /// The opaque cursor a client sends back to read on after this point.
    pub fn cursor(&self) -> String {
        crate::cursor::encode(self)
    }

    pub fn from_cursor(cursor: &str) -> Result<Self, InvalidCursor> {
        crate::cursor::decode(cursor)
    }

    pub fn step(&self) -> i64 {
        self.step
    }
}

/// Which page of a series a read wants: the points within `range` after `after` (a
/// place a previous page ended at), at most `limit` of them. The default is every
/// point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window<'a> {
    pub range: StepRange,
    pub after: Option<&'a Place>,
    pub limit: Option<usize>,
}

/// Points of one read, and where the next page starts if there is more.
#[derive(Debug)]
pub struct SeriesPage<T> {
    pub points: T,
    /// Each point's place, in the same order.
    places: Vec<Place>,
    /// Pass as `after` to read on, when the page ends with a whole step; `None` when
    /// the range is exhausted or the page ends inside a step.
    pub next_after: Option<i64>,
    /// Where the next page starts (`Place::cursor`); `None` when the range is exhausted.
    pub next: Option<Place>,
}

/// The most chunk bytes one read may fetch from the store, so that no series, however
/// large or oddly shaped (millions of points at one step), makes a read unbounded. A
/// range holding more is refused (`range_too_large`): narrow it with `from`/`to`.
pub const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;

fn too_large() -> SeriesError {
    SeriesError::RangeTooLarge
}

/// A point waiting in a read's bounded heap: its place, and what it carries.
struct Held<P> {
    place: Place,
    payload: P,
}

impl<P> PartialEq for Held<P> {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}

impl<P> Eq for Held<P> {}

impl<P> PartialOrd for Held<P> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<P> Ord for Held<P> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.place.cmp(&other.place)
    }
}

/// Chunks of a large block one fetch brings while a page fills: about 40 KB of points.
const CHUNKS_A_FETCH: usize = 4;

/// Where the points of a block's chunk stand in read order: before every chunk item
/// written after the fold (whose arrival times are positive), blocks in the order
/// their folds made them, chunks in the order of the block.
fn block_origin(position: usize, key: &str, ordinal: usize) -> (i64, String) {
    (i64::MIN + position as i64, format!("{key}#{ordinal:08}"))
}

/// A page being gathered: the first `limit` points in order after `resume`, in a
/// bounded heap, whatever order the chunks come in.
struct Gather<'a, T: SeriesData> {
    heap: std::collections::BinaryHeap<Held<T::Payload>>,
    /// The first point in order the heap let go of: everything from it on is left to
    /// the next page.
    beyond: Option<Place>,
    limit: usize,
    range: std::ops::RangeInclusive<i64>,
    resume: Option<&'a Place>,
    fetched: u64,
}

impl<T: SeriesData> Gather<'_, T> {
    /// Whether the page is full of points before a chunk starting at `first_step`:
    /// then neither it nor any chunk after it in its source belongs to this page.
    fn full_before(&self, first_step: i64) -> bool {
        self.heap.len() == self.limit
            && self
                .heap
                .peek()
                .is_some_and(|last| first_step > last.place.step)
    }

    fn offer(&mut self, bytes: &[u8], written: i64, chunk_key: &str) -> Result<()> {
        self.fetched += bytes.len() as u64;
        if self.fetched > MAX_READ_BYTES {
            return Err(too_large());
        }
        let mut chunk = T::decode(bytes)?;
        for index in 0..chunk.len() {
            let step = chunk.step(index);
            if !self.range.contains(&step) {
                continue;
            }
            let place = Place {
                step,
                timestamp: chunk.timestamp(index),
                written,
                chunk: chunk_key.to_owned(),
                index: index as u32,
            };
            if self.resume.is_some_and(|resume| place <= *resume) {
                continue;
            }
            if self.heap.len() == self.limit {
                let top = self.heap.peek().expect("a full heap");
                if place >= top.place {
                    self.beyond = Some(self.beyond.take().map_or(place.clone(), |b| b.min(place)));
                    continue;
                }
                let dropped = self.heap.pop().expect("a full heap").place;
                self.beyond = Some(
                    self.beyond
                        .take()
                        .map_or(dropped.clone(), |b| b.min(dropped)),
                );
            }
            self.heap.push(Held {
                place,
                payload: chunk.take(index),
            });
        }
        Ok(())
    }
}

/// Whether a chunk item was written by a round that settled the run's hot batches
/// after `record` was read: its points are read from the hot batches instead.
fn settled_later(item: &Item, record: &RunRecord) -> bool {
    item.n(hot::SETTLED)
        .is_some_and(|mark| mark > record.settled_through)
}

/// The run's hot batches not yet settled as of `record`. None can come after a run
/// that ended `SETTLE_AFTER` before its mark (which the round after its end moves
/// there), which spares a finished run's reads the look.
async fn unsettled(
    store: &Store,
    tenant: &Tenant,
    record: &RunRecord,
) -> Result<Vec<hot::HotBatch>> {
    let settled = record
        .ended_at
        .is_some_and(|ended| nanos(ended + hot::SETTLE_AFTER) <= record.settled_through);
    if settled {
        return Ok(Vec::new());
    }
    hot::after(store, tenant, record.id, record.settled_through, None).await
}

/// Reads the points of a series in `window`, in order; only committed batches'
/// points (see `pending`). With a limit, the first points in order are kept in a heap
/// of that size while the chunks stream by, so memory holds a page whatever the
/// series holds; the store reads stop at `MAX_READ_BYTES`.
pub async fn read<T: SeriesData>(
    store: &Store,
    tenant: &Tenant,
    record: &RunRecord,
    name: &str,
    window: Window<'_>,
) -> Result<SeriesPage<T>> {
    let Window {
        range,
        after: resume,
        limit,
    } = window;
    let mut page = SeriesPage {
        points: T::default(),
        places: Vec::new(),
        next_after: None,
        next: None,
    };
    let run = record.id;
    let (Some(summary), Some((mut lo, hi))) = (record.series.get(name), range.bounds()) else {
        return Ok(page);
    };
    if let Some(resume) = resume {
        lo = lo.max(resume.step);
    }
    if lo > hi {
        return Ok(page);
    }
    let limit = limit.unwrap_or(usize::MAX).max(1);
    let earliest_start = lo.saturating_sub_unsigned(summary.span);
    let kind = summary.kind;
    let mut query = Query::partition(crate::runs::data_partition(tenant, run))
        .between(
            format!("{}#{name}#{}", kind.key_prefix(), step_key(earliest_start)),
            format!("{}#{name}#{}#~", kind.key_prefix(), step_key(hi)),
        )
        .limit(64);
    let mut gather = Gather::<T> {
        heap: Default::default(),
        beyond: None,
        limit,
        range: lo..=hi,
        resume,
        fetched: 0,
    };
    // Points stream from three sources: the blocks of folds, then the chunk items
    // written since (items a fold sealed are read from its block instead, and none are
    // looked for once a fold sealed the newest), each in order of its chunks' first
    // steps and stopping where the page is full; then the hot batches not yet settled.
    let mut unread_from: Option<i64> = None;
    let folded = fold::folded(store, tenant, run, name, summary).await?;
    let folded = folded.as_ref();
    for (position, block) in folded.iter().flat_map(|f| f.blocks.iter().enumerate()) {
        let key = fold::block_key(tenant, run, block)?;
        let opened = block::Opened::open(store, key, block, 0, lo, hi).await?;
        'block: for start in (0..opened.wanted.len()).step_by(CHUNKS_A_FETCH) {
            let end = opened.wanted.len().min(start + CHUNKS_A_FETCH);
            let fetched = opened.fetch(store, start..end).await?;
            for ((ordinal, bytes), (_, entry)) in
                fetched.into_iter().zip(&opened.wanted[start..end])
            {
                if gather.full_before(entry.first_step) {
                    let first = entry.first_step;
                    unread_from = Some(unread_from.map_or(first, |u| u.min(first)));
                    break 'block;
                }
                let (written, chunk) = block_origin(position, &block.name, ordinal);
                gather.offer(&bytes, written, &chunk)?;
            }
        }
    }
    let folded_through = folded.map_or(i64::MIN, |f| f.through);
    let mut items_offered = false;
    'pages: while !summary.written_by(folded_through) {
        let found = store.kv.query(query.clone()).await?;
        for item in &found.items {
            let written = item.n(WRITTEN).unwrap_or(0);
            if written <= folded_through || settled_later(item, record) {
                continue;
            }
            let bytes = chunk_bytes(item)?;
            let first = T::first_step(bytes)?;
            if gather.full_before(first) {
                unread_from = Some(unread_from.map_or(first, |u| u.min(first)));
                break 'pages;
            }
            gather.offer(bytes, written, &item.key.sk)?;
            items_offered = true;
        }
        match found.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    for batch in unsettled(store, tenant, record).await? {
        for (chunk, bytes) in batch.chunks_of(kind, name) {
            gather.offer(bytes, batch.arrived, &chunk)?;
        }
    }
    let Gather { heap, beyond, .. } = gather;
    let mut held = heap.into_sorted_vec();
    let last_place = held.last().map(|held| held.place.clone());
    // Markers are read after the chunks: a chunk seen above was written after its
    // marker, so the marker is found here unless its batch has committed since (or the
    // attempt was cleaned up in between, which deletes the chunk first). Only chunk
    // items can be uncommitted: blocks and hot batches commit whole.
    if items_offered && !held.is_empty() {
        let uncommitted = pending::uncommitted(store, tenant, run).await?;
        held.retain(|held| !uncommitted.contains(&held.place.chunk));
    }
    for Held { place, payload } in held {
        page.points.push(place.step, payload, place.timestamp);
        page.places.push(place);
    }
    let more = beyond.is_some() || unread_from.is_some();
    if more && let Some(last) = last_place {
        // The page ends with a whole step unless the next point is in the same one.
        let next_step = match (&beyond, unread_from) {
            (Some(beyond), Some(unread)) => beyond.step.min(unread),
            (Some(beyond), None) => beyond.step,
            (None, unread) => unread.unwrap_or(i64::MAX),
        };
        page.next_after = (next_step > last.step).then_some(last.step);
        page.next = Some(last);
    }
    Ok(page)
}

/// About how many points of `blocks` lie in `[lo, hi]`, taking each block's points as
/// spread evenly over its steps.
fn points_between(blocks: &[BlockRef], lo: i64, hi: i64) -> usize {
    blocks
        .iter()
        .map(|block| {
            let (first, last) = (block.first_step.max(lo), block.last_step.min(hi));
            if first > last {
                return 0.0;
            }
            let width = block.last_step.abs_diff(block.first_step) as f64 + 1.0;
            block.count as f64 * (last.abs_diff(first) as f64 + 1.0) / width
        })
        .sum::<f64>() as usize
}

/// A chunk's points that may belong to a batch still committing, held until the
/// markers tell.
type Recent = (String, Vec<(i64, f64, f64, (i64, u64, u32))>);

/// Reads the numeric points of a series within `range` downsampled to at most
/// `max_points` (`downsample::MinMax`), every bucket's extremes kept, and whether it
/// had to downsample. Chunks stream through the buckets, so memory holds the buckets
/// whatever the series holds, and the store reads stop at `MAX_READ_BYTES`.
///
/// Chunks of uncommitted batches are skipped as `read` skips them: the markers known
/// before the chunks are read rule out their chunks, and the chunks of batches that
/// arrived within the last `COMMIT_WINDOW` (whose markers may be written while the read goes
/// on) wait aside until the markers are read again.
pub async fn read_downsampled(
    store: &Store,
    tenant: &Tenant,
    record: &RunRecord,
    name: &str,
    range: StepRange,
    max_points: usize,
) -> Result<(Points, bool)> {
    let run = record.id;
    let (Some(summary), Some((lo, hi))) = (record.series.get(name), range.bounds()) else {
        return Ok((Points::default(), false));
    };
    // Hot points are not in the summary yet: they may widen the steps to cover.
    let mut hot_points: Vec<(i64, Points)> = Vec::new();
    let (mut first_step, mut last_step) = (summary.first_step, summary.last_step);
    for batch in unsettled(store, tenant, record).await? {
        for (_, bytes) in batch.chunks_of(SeriesKind::Numeric, name) {
            let points = Points::decode(bytes)?;
            if let (Some(first), Some(last)) = (points.steps.first(), points.steps.last()) {
                (first_step, last_step) = (first_step.min(*first), last_step.max(*last));
            }
            hot_points.push((batch.arrived, points));
        }
    }
    let (lo, hi) = (lo.max(first_step), hi.min(last_step));
    if lo > hi {
        return Ok((Points::default(), false));
    }
    let recent_since =
        i64::try_from((store.now() - COMMIT_WINDOW).unix_timestamp_nanos()).unwrap_or(0);
    // Read when the first chunk items turn up: a run whose points are all in blocks
    // needs no look at the markers.
    let mut uncommitted_before = None;
    let mut downsampler = downsample::MinMax::new(max_points, lo, hi);
    let mut recent: Vec<Recent> = Vec::new();
    let earliest_start = lo.saturating_sub_unsigned(summary.span);
    let mut query = Query::partition(crate::runs::data_partition(tenant, run))
        .between(
            format!(
                "{}#{name}#{}",
                SeriesKind::Numeric.key_prefix(),
                step_key(earliest_start)
            ),
            format!(
                "{}#{name}#{}#~",
                SeriesKind::Numeric.key_prefix(),
                step_key(hi)
            ),
        )
        .limit(64);
    let (mut fetched, mut rank) = (0u64, 0u64);
    let folded = fold::folded(store, tenant, run, name, summary).await?;
    let folded = folded.as_ref();
    let blocks = folded.map_or(&[][..], |f| &f.blocks[..]);
    // Blocks read from the coarsest level that leaves at least two of its buckets in
    // each chart bucket (a chart bucket answers two points, its minimum and maximum),
    // so an overview never decodes every point; every spike is in every level.
    let level = block::level_for(points_between(blocks, lo, hi) / max_points.max(1));
    if level > 0 {
        downsampler.summarised();
    }
    // The coarsest level of every block is in the series' overview: one read.
    let overview = folded
        .and_then(|f| f.overview.as_ref())
        .filter(|_| level == block::LEVEL_BUCKETS.len());
    let sources: Vec<(&BlockRef, usize)> = match overview {
        Some(overview) => vec![(overview, 0)],
        None => blocks.iter().map(|block| (block, level)).collect(),
    };
    for (position, (block, level)) in sources.into_iter().enumerate() {
        let key = fold::block_key(tenant, run, block)?;
        for (ordinal, bytes) in block::chunks_in(store, key, block, level, lo, hi).await? {
            fetched += bytes.len() as u64;
            if fetched > MAX_READ_BYTES {
                return Err(too_large());
            }
            let chunk = Points::decode(&bytes)?;
            let written = i64::MIN + position as i64;
            for i in 0..chunk.len() {
                if (lo..=hi).contains(&chunk.steps[i]) {
                    let order = (written, ordinal as u64, i as u32);
                    downsampler.push(chunk.steps[i], chunk.values[i], chunk.timestamps[i], order);
                }
            }
        }
    }
    let folded_through = folded.map_or(i64::MIN, |f| f.through);
    // A series folded through its newest chunk item has none left to look for.
    while !summary.written_by(folded_through) {
        let found = store.kv.query(query.clone()).await?;
        if uncommitted_before.is_none() && !found.items.is_empty() {
            uncommitted_before = Some(pending::uncommitted(store, tenant, run).await?);
        }
        let uncommitted_before = uncommitted_before.as_ref();
        for item in &found.items {
            if uncommitted_before.is_some_and(|hidden| hidden.contains(&item.key.sk))
                || item.n(WRITTEN).unwrap_or(0) <= folded_through
                || settled_later(item, record)
            {
                continue;
            }
            let bytes = chunk_bytes(item)?;
            fetched += bytes.len() as u64;
            if fetched > MAX_READ_BYTES {
                return Err(too_large());
            }
            let chunk = Points::decode(bytes)?;
            let written = item.n(WRITTEN).unwrap_or(0);
            rank += 1;
            let in_range = (0..chunk.len())
                .filter(|&i| (lo..=hi).contains(&chunk.steps[i]))
                .map(|i| {
                    let order = (written, rank, i as u32);
                    (chunk.steps[i], chunk.values[i], chunk.timestamps[i], order)
                });
            if written >= recent_since {
                recent.push((item.key.sk.clone(), in_range.collect()));
            } else {
                for (step, value, timestamp, order) in in_range {
                    downsampler.push(step, value, timestamp, order);
                }
            }
        }
        match found.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    if !recent.is_empty() {
        let uncommitted = pending::uncommitted(store, tenant, run).await?;
        for (key, points) in recent {
            if !uncommitted.contains(&key) {
                for (step, value, timestamp, order) in points {
                    downsampler.push(step, value, timestamp, order);
                }
            }
        }
    }
    for (arrived, chunk) in hot_points {
        rank += 1;
        for i in 0..chunk.len() {
            if (lo..=hi).contains(&chunk.steps[i]) {
                let order = (arrived, rank, i as u32);
                downsampler.push(chunk.steps[i], chunk.values[i], chunk.timestamps[i], order);
            }
        }
    }
    Ok(downsampler.finish())
}

impl SeriesPage<TextPoints> {
    /// Cuts a page of text once it holds `TEXT_PAGE_BYTES` of text, keeping at least
    /// one line, so that huge lines page by size.
    pub fn limit_text_bytes(&mut self) {
        let texts = &self.points.texts;
        let mut total = 0;
        let Some(over) = texts.iter().position(|text| {
            total += text.len();
            total > TEXT_PAGE_BYTES
        }) else {
            return;
        };
        let keep = over.max(1);
        if keep >= texts.len() {
            return;
        }
        let steps = &self.points.steps;
        self.next_after = (steps[keep] > steps[keep - 1]).then_some(steps[keep - 1]);
        self.next = Some(self.places[keep - 1].clone());
        self.points.truncate(keep);
        self.places.truncate(keep);
    }
}

fn chunk_bytes(item: &Item) -> Result<&[u8]> {
    item.b(DATA)
        .map(|b| b.as_ref())
        .ok_or_else(|| SeriesError::Corrupt(anyhow::anyhow!("chunk {:?} has no data", item.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_keys_sort_like_the_steps() {
        let steps = [i64::MIN, -5, -1, 0, 1, 9, 10, 255, 256, i64::MAX];
        let keys: Vec<String> = steps.iter().map(|&s| step_key(s)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn series_names_follow_mlflow_rules() {
        assert!(check_name("train/loss").is_ok());
        assert!(check_name("val acc:top-1.5").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a#b").is_err());
        assert!(check_name("a~b").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn a_text_page_is_cut_by_size_inside_a_step_if_it_must() {
        let mega = "x".repeat(1024 * 1024);
        let mut points = TextPoints::default();
        let mut places = Vec::new();
        for (index, step) in [1, 2, 3, 3, 3, 4].into_iter().enumerate() {
            points.push(step, mega.clone(), 0.0);
            places.push(Place {
                step,
                timestamp: 0.0,
                written: 0,
                chunk: "t#lines".into(),
                index: index as u32,
            });
        }
        let mut page = SeriesPage {
            points,
            places,
            next_after: None,
            next: None,
        };
        page.limit_text_bytes();
        // The fifth megabyte is over the four a page holds: the page ends before it,
        // in the middle of step 3, and the cursor resumes after the fourth line.
        assert_eq!(page.points.steps, vec![1, 2, 3, 3]);
        assert_eq!(page.next_after, None);
        assert_eq!(page.next.as_ref().map(|place| place.index), Some(3));
        let resumed = Place::from_cursor(&page.next.unwrap().cursor()).unwrap();
        assert_eq!((resumed.step, resumed.index), (3, 3));
    }

    #[test]
    fn a_cursor_not_made_by_the_server_is_refused() {
        for cursor in ["", "not base64!", "e30"] {
            let err = Place::from_cursor(cursor).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidCursor);
        }
    }
}
