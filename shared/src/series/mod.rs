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
pub mod codec;
pub mod downsample;
mod pending;
pub mod text;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::ids::RunId;
use crate::state::AppState;
use crate::storage::kv::{Item, Query};
use crate::tenancy::Tenant;

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
/// The attribute holding when a chunk's batch arrived (Unix nanoseconds): points
/// equal in step and timestamp read back in the order they were logged.
const WRITTEN: &str = "w";

/// What a series holds: numbers (metrics) or lines of text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    Numeric,
    Text,
}

impl SeriesKind {
    fn key_prefix(self) -> &'static str {
        match self {
            SeriesKind::Numeric => "c",
            SeriesKind::Text => "t",
        }
    }
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

/// Checks a series name: 1 to 250 bytes of letters, digits, `_ - . / :` and spaces
/// (MLflow's rule), which keeps `#` free to separate the parts of chunk keys.
pub fn check_name(name: &str) -> ApiResult<()> {
    if is_key_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_series_name",
            format!(
                "series names are 1 to {MAX_NAME_BYTES} bytes of letters, digits, '_', '-', '.', '/', ':' and spaces: {:?}",
                name.chars().take(60).collect::<String>()
            ),
        ))
    }
}

/// A series' running summary, kept in the run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    pub kind: SeriesKind,
    pub count: u64,
    pub first_step: i64,
    pub last_step: i64,
    pub last_timestamp: f64,
    /// Smallest and largest non-NaN values; `None` while every value was NaN (and for text).
    #[serde(with = "crate::floats::option", default)]
    pub min: Option<f64>,
    #[serde(with = "crate::floats::option", default)]
    pub max: Option<f64>,
    #[serde(with = "crate::floats::option", default)]
    pub last: Option<f64>,
    /// The widest step range any one chunk covers.
    pub span: u64,
}

/// A series' summary as clients see it.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub kind: SeriesKind,
    /// Points logged.
    pub count: u64,
    pub first_step: i64,
    pub last_step: i64,
    /// Unix seconds of the last point.
    pub last_timestamp: f64,
    /// The smallest non-NaN value: `null` while every value was NaN, and for text.
    #[serde(with = "crate::floats::option")]
    #[schema(value_type = Option<crate::floats::JsonF64>, required = true)]
    pub min: Option<f64>,
    /// The largest non-NaN value: `null` while every value was NaN, and for text.
    #[serde(with = "crate::floats::option")]
    #[schema(value_type = Option<crate::floats::JsonF64>, required = true)]
    pub max: Option<f64>,
    /// The value of the point last in step order; `null` for text.
    #[serde(with = "crate::floats::option")]
    #[schema(value_type = Option<crate::floats::JsonF64>, required = true)]
    pub last: Option<f64>,
}

impl SeriesSummary {
    pub fn info(&self) -> SeriesInfo {
        SeriesInfo {
            kind: self.kind,
            count: self.count,
            first_step: self.first_step,
            last_step: self.last_step,
            last_timestamp: self.last_timestamp,
            min: self.min,
            max: self.max,
            last: self.last,
        }
    }

    /// The value a run table sorts by: `last`, `min` or `max`.
    pub fn stat(&self, stat: Stat) -> Option<f64> {
        match stat {
            Stat::Last => self.last,
            Stat::Min => self.min,
            Stat::Max => self.max,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Last,
    Min,
    Max,
}

/// What a newly stored chunk adds to a series' summary.
#[derive(Debug, Clone, Copy)]
pub struct ChunkFacts {
    pub count: u64,
    pub first_step: i64,
    pub last_step: i64,
    pub last_timestamp: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub last: Option<f64>,
}

impl ChunkFacts {
    fn span(&self) -> u64 {
        self.last_step.abs_diff(self.first_step)
    }

    pub fn start(self, kind: SeriesKind) -> SeriesSummary {
        SeriesSummary {
            kind,
            count: self.count,
            first_step: self.first_step,
            last_step: self.last_step,
            last_timestamp: self.last_timestamp,
            min: self.min,
            max: self.max,
            last: self.last,
            span: self.span(),
        }
    }
}

impl SeriesSummary {
    pub fn merge(&mut self, chunk: &ChunkFacts) {
        self.count += chunk.count;
        self.first_step = self.first_step.min(chunk.first_step);
        self.span = self.span.max(chunk.span());
        // Later in (step, timestamp) order wins; a tie goes to the later write.
        if (chunk.last_step, chunk.last_timestamp) >= (self.last_step, self.last_timestamp) {
            self.last_step = chunk.last_step;
            self.last_timestamp = chunk.last_timestamp;
            self.last = chunk.last;
        }
        self.min = min_ignoring_none(self.min, chunk.min, f64::min);
        self.max = min_ignoring_none(self.max, chunk.max, f64::max);
    }
}

fn min_ignoring_none(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
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

/// Points of a series in a step range: numbers or text lines.
pub trait SeriesData: Default + Sized {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn step(&self, index: usize) -> i64;
    fn decode(chunk: &[u8]) -> ApiResult<Self>;
    /// The first step of a chunk, read from its header.
    fn first_step(chunk: &[u8]) -> ApiResult<i64>;
    fn extend_from(&mut self, other: &Self, range: std::ops::Range<usize>);
    /// Sorts by step then timestamp, stably.
    fn sort(&mut self);
    fn truncate(&mut self, len: usize);
}

impl SeriesData for Points {
    fn len(&self) -> usize {
        Points::len(self)
    }

    fn step(&self, index: usize) -> i64 {
        self.steps[index]
    }

    fn decode(chunk: &[u8]) -> ApiResult<Self> {
        codec::decode(chunk).map_err(corrupt)
    }

    fn first_step(chunk: &[u8]) -> ApiResult<i64> {
        Ok(codec::summary(chunk).map_err(corrupt)?.first_step)
    }

    fn extend_from(&mut self, other: &Self, range: std::ops::Range<usize>) {
        Points::extend_from(self, other, range);
    }

    fn sort(&mut self) {
        Points::sort(self);
    }

    fn truncate(&mut self, len: usize) {
        self.steps.truncate(len);
        self.values.truncate(len);
        self.timestamps.truncate(len);
    }
}

fn corrupt(err: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::internal(anyhow::Error::new(err).context("decoding a stored chunk"))
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

/// Points of one read, and where the next page starts if there is more.
#[derive(Debug)]
pub struct SeriesPage<T> {
    pub points: T,
    /// Pass as `after` to read on; `None` when the range is exhausted.
    pub next_after: Option<i64>,
}

/// Reads the points of a series within `range`, in order; only committed batches' points
/// (see `pending`). With `limit`, stops after `limit` points (fewer if a batch's chunks
/// were still being written), at a step boundary (every point of the last step is
/// included, so `after` resumes without skipping any).
pub async fn read<T: SeriesData>(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    name: &str,
    summary: &SeriesSummary,
    range: StepRange,
    limit: Option<usize>,
) -> ApiResult<SeriesPage<T>> {
    let mut points = T::default();
    let Some((lo, hi)) = range.bounds() else {
        return Ok(SeriesPage {
            points,
            next_after: None,
        });
    };
    let earliest_start = lo.saturating_sub_unsigned(summary.span);
    let kind = summary.kind;
    let mut query = Query::partition(crate::runs::data_partition(tenant, run))
        .between(
            format!("{}#{name}#{}", kind.key_prefix(), step_key(earliest_start)),
            format!("{}#{name}#{}#~", kind.key_prefix(), step_key(hi)),
        )
        .limit(64);
    // Once `limit` points are in hand, the step of the limit-th one: chunks starting
    // later cannot hold anything that belongs on this page.
    let mut cutoff: Option<i64> = None;
    let mut more_beyond = false;
    // The points in range of each chunk, with when the chunk was logged. Keys order
    // chunks by first step and batch id, not by when they were logged; concatenating
    // them in logged order lets the stable sort below keep points equal in step and
    // timestamp in the order they were logged.
    let mut chunks: Vec<(i64, T, std::ops::Range<usize>, String)> = Vec::new();
    let mut gathered = 0;
    'pages: loop {
        let page = state.kv.query(query.clone()).await?;
        for item in &page.items {
            let chunk = chunk_bytes(item)?;
            if let Some(cutoff) = cutoff
                && T::first_step(chunk)? > cutoff
            {
                more_beyond = true;
                break 'pages;
            }
            let decoded = T::decode(chunk)?;
            let start = partition_point(&decoded, |step| step < lo);
            let end = partition_point(&decoded, |step| step <= hi);
            if start < end {
                gathered += end - start;
                chunks.push((
                    item.n(WRITTEN).unwrap_or(0),
                    decoded,
                    start..end,
                    item.key.sk.clone(),
                ));
            }
            if let Some(limit) = limit
                && cutoff.is_none()
                && gathered >= limit
            {
                let mut steps: Vec<i64> = chunks
                    .iter()
                    .flat_map(|(_, chunk, range, _)| range.clone().map(|i| chunk.step(i)))
                    .collect();
                cutoff = Some(*steps.select_nth_unstable(limit - 1).1);
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    // Markers are read after the chunks: a chunk seen above was written after its
    // marker, so the marker is found here unless its batch has committed since (or the
    // attempt was cleaned up in between, which deletes the chunk first).
    if !chunks.is_empty() {
        let uncommitted = pending::uncommitted(state, tenant, run).await?;
        chunks.retain(|(.., key)| !uncommitted.contains(key));
    }
    chunks.sort_by_key(|(written, ..)| *written);
    for (_, chunk, range, _) in chunks {
        points.extend_from(&chunk, range);
    }
    points.sort();
    if let Some(cutoff) = cutoff {
        let keep = partition_point(&points, |step| step <= cutoff);
        more_beyond |= keep < points.len();
        points.truncate(keep);
        if more_beyond {
            return Ok(SeriesPage {
                points,
                next_after: Some(cutoff),
            });
        }
    }
    Ok(SeriesPage {
        points,
        next_after: None,
    })
}

impl SeriesPage<TextPoints> {
    /// Cuts a page of text at a step boundary once it holds `TEXT_PAGE_BYTES` of text,
    /// so huge lines page by size; a single step's lines are never split.
    pub fn limit_text_bytes(&mut self) {
        let texts = &self.points.texts;
        let mut total = 0;
        let Some(over) = texts.iter().position(|text| {
            total += text.len();
            total > TEXT_PAGE_BYTES
        }) else {
            return;
        };
        let steps = &self.points.steps;
        let mut keep = over;
        while keep > 0 && steps[keep - 1] == steps[over] {
            keep -= 1;
        }
        if keep == 0 {
            // One step alone is over the size: it is the page.
            keep = steps.partition_point(|&step| step <= steps[over]);
        }
        if keep < steps.len() {
            self.next_after = Some(steps[keep - 1]);
            self.points.truncate(keep);
        }
    }
}

fn partition_point<T: SeriesData>(points: &T, before: impl Fn(i64) -> bool) -> usize {
    let (mut lo, mut hi) = (0, points.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(points.step(mid)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn chunk_bytes(item: &Item) -> ApiResult<&[u8]> {
    item.b(DATA)
        .map(|b| b.as_ref())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("chunk {:?} has no data", item.key)))
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
    fn a_text_page_is_cut_by_size_between_steps() {
        let mega = "x".repeat(1024 * 1024);
        let mut points = TextPoints::default();
        for step in [1, 2, 3, 3, 3, 4] {
            points.push(step, mega.clone(), 0.0);
        }
        let mut page = SeriesPage {
            points,
            next_after: None,
        };
        page.limit_text_bytes();
        // The fifth megabyte is in step 3, so the page ends with step 2.
        assert_eq!(page.points.steps, vec![1, 2]);
        assert_eq!(page.next_after, Some(2));
    }

    #[test]
    fn merging_keeps_the_latest_point_as_last_even_when_chunks_arrive_out_of_order() {
        let facts = |first, last, value: f64| ChunkFacts {
            count: 2,
            first_step: first,
            last_step: last,
            last_timestamp: 0.0,
            min: Some(value - 1.0),
            max: Some(value),
            last: Some(value),
        };
        let mut summary = facts(10, 20, 5.0).start(SeriesKind::Numeric);
        summary.merge(&facts(0, 9, 7.0));
        assert_eq!((summary.first_step, summary.last_step), (0, 20));
        assert_eq!(summary.last, Some(5.0));
        assert_eq!((summary.min, summary.max), (Some(4.0), Some(7.0)));
        assert_eq!(summary.count, 4);
        assert_eq!(summary.span, 10);
    }
}
