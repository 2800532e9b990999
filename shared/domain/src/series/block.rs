//! Blocks: a series' sealed points, folded out of many small chunk items into one
//! object in the blob store, where a byte costs a tenth of what it costs in DynamoDB
//! and a chart reads one object instead of a hundred items.
//!
//! A block holds levels, each a run of chunks (the same encodings as chunk items, up
//! to `MAX_CHUNK_POINTS` points each). Level 0 is every point. Each level after it, for
//! numeric series, summarises the points in buckets of `LEVEL_BUCKETS[i]` consecutive
//! points: it holds the points that are some bucket's minimum, maximum or first NaN,
//! in order, so a chart of a million points reads a few thousand of them and every
//! spike is still there. An index at the front says where each chunk lies and which
//! steps it covers; a reader fetches the index (its length is in the run record), then
//! only the byte range of the chunks of one level that a read's steps touch.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! 4 bytes   "SXB1"
//! u32       level count l
//! l × 8     per level: u32 points a bucket (1 for level 0), u32 chunk count
//! n × 32    per chunk, level by level: u64 offset from the block's start, u32 length,
//!           u32 points, i64 first step, i64 last step
//! ...       the chunks, level by level
//! ```

use bytes::Bytes;

use super::codec::Points;
use super::fold::BlockRef;
use super::{Result, SeriesError};
use sextant_storage::Store;
use sextant_storage::blob::BlobKey;

const MAGIC: &[u8; 4] = b"SXB1";
const ENTRY_BYTES: usize = 32;
/// A block this small is read whole in one request: S3 answers the first bytes of an
/// object in the same time whatever its size up to about this, so two ranged reads
/// would only cost a round trip more.
const WHOLE_BLOCK_BYTES: u64 = 1024 * 1024;
/// Points a bucket of each summary level covers. 256 keeps a level's extra bytes near
/// 2% of the points' (three candidates at most per 256 points); each next level is 64
/// times coarser, so some level has between 2 and 128 buckets per point a chart asks
/// for.
pub const LEVEL_BUCKETS: [usize; 2] = [256, 256 * 64];

/// Where one chunk of a block lies and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub first_step: i64,
    pub last_step: i64,
}

/// One level of a block's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// 1 for every point; else the points each bucket summarises.
    pub bucket_points: u32,
    pub chunks: Vec<Entry>,
}

/// An encoded chunk on its way into a block.
#[derive(Debug)]
pub struct SealedChunk {
    pub bytes: Vec<u8>,
    pub count: u32,
    pub first_step: i64,
    pub last_step: i64,
}

impl From<super::Chunk> for SealedChunk {
    fn from(chunk: super::Chunk) -> Self {
        Self {
            bytes: chunk.bytes,
            count: u32::try_from(chunk.facts.count).expect("a chunk holds 10,000 points at most"),
            first_step: chunk.facts.first_step,
            last_step: chunk.facts.last_step,
        }
    }
}

/// A block's bytes and the length of its index, from its levels' chunks (level 0
/// first).
pub fn encode(levels: &[(u32, Vec<SealedChunk>)]) -> (Vec<u8>, u32) {
    let chunk_count: usize = levels.iter().map(|(_, chunks)| chunks.len()).sum();
    let index_bytes = MAGIC.len() + 4 + levels.len() * 8 + chunk_count * ENTRY_BYTES;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
    for (bucket_points, chunks) in levels {
        out.extend_from_slice(&bucket_points.to_le_bytes());
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    }
    let mut offset = index_bytes as u64;
    for chunk in levels.iter().flat_map(|(_, chunks)| chunks) {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(chunk.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&chunk.count.to_le_bytes());
        out.extend_from_slice(&chunk.first_step.to_le_bytes());
        out.extend_from_slice(&chunk.last_step.to_le_bytes());
        offset += chunk.bytes.len() as u64;
    }
    for chunk in levels.iter().flat_map(|(_, chunks)| chunks) {
        out.extend_from_slice(&chunk.bytes);
    }
    (out, index_bytes as u32)
}

/// The summary levels of sorted numeric points: for each of `LEVEL_BUCKETS` that
/// leaves more than one bucket, the points that are a bucket's first minimum, first
/// maximum or first NaN in order, in order.
pub fn summary_levels(points: &Points) -> Vec<(u32, Points)> {
    LEVEL_BUCKETS
        .iter()
        .filter(|&&bucket| points.len() > bucket)
        .map(|&bucket| {
            let mut kept = Points::default();
            for start in (0..points.len()).step_by(bucket) {
                let end = points.len().min(start + bucket);
                let (mut min, mut max, mut nan) = (None::<usize>, None::<usize>, None);
                for i in start..end {
                    let value = points.values[i];
                    if value.is_nan() {
                        nan = nan.or(Some(i));
                        continue;
                    }
                    if min.is_none_or(|m| value < points.values[m]) {
                        min = Some(i);
                    }
                    if max.is_none_or(|m| value > points.values[m]) {
                        max = Some(i);
                    }
                }
                let mut picked: Vec<usize> = [min, max, nan].into_iter().flatten().collect();
                picked.sort_unstable();
                picked.dedup();
                for i in picked {
                    kept.push(points.steps[i], points.values[i], points.timestamps[i]);
                }
            }
            (bucket as u32, kept)
        })
        .collect()
}

/// What sorted numeric points add to a series' overview: their coarsest summary level,
/// or every point when there are too few for any.
pub fn coarsest(points: &Points) -> Points {
    summary_levels(points)
        .pop()
        .map_or_else(|| points.clone(), |(_, kept)| kept)
}

fn corrupt(why: &'static str) -> SeriesError {
    SeriesError::Corrupt(anyhow::anyhow!("block: {why}"))
}

/// Reads a block's index from its first bytes.
pub fn index(head: &[u8]) -> Result<Vec<Level>> {
    let u32_at = |at: usize| -> Result<u32> {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| corrupt("index cut short"))
    };
    if head.get(..4) != Some(MAGIC) {
        return Err(corrupt("no block header"));
    }
    let level_count = u32_at(4)? as usize;
    let mut at = 8 + level_count * 8;
    let mut levels = Vec::with_capacity(level_count);
    for level in 0..level_count {
        let bucket_points = u32_at(8 + level * 8)?;
        let chunk_count = u32_at(12 + level * 8)? as usize;
        let entries = head
            .get(at..at + chunk_count * ENTRY_BYTES)
            .ok_or_else(|| corrupt("index cut short"))?;
        at += chunk_count * ENTRY_BYTES;
        let chunks = entries
            .chunks_exact(ENTRY_BYTES)
            .map(|entry| {
                let u64_at =
                    |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().expect("8"));
                let u32_at =
                    |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().expect("4"));
                Entry {
                    offset: u64_at(0),
                    len: u32_at(8),
                    count: u32_at(12),
                    first_step: u64_at(16) as i64,
                    last_step: u64_at(24) as i64,
                }
            })
            .collect();
        levels.push(Level {
            bucket_points,
            chunks,
        });
    }
    Ok(levels)
}

/// The coarsest summary level whose buckets hold at most `bucket_points` points, or
/// level 0 (every point) when `bucket_points` is under the finest level's.
pub fn level_for(bucket_points: usize) -> usize {
    LEVEL_BUCKETS
        .iter()
        .rposition(|&level| level <= bucket_points)
        .map_or(0, |i| i + 1)
}

/// The chunks of one level of the block stored at `key` (0: every point) that hold
/// steps in `[lo, hi]`, each with its place in the level. See `Opened`.
pub async fn chunks_in(
    store: &Store,
    key: BlobKey,
    block: &BlockRef,
    level: usize,
    lo: i64,
    hi: i64,
) -> Result<Vec<(usize, Bytes)>> {
    let opened = Opened::open(store, key, block, level, lo, hi).await?;
    opened.fetch(store, 0..opened.wanted.len()).await
}

/// A block opened for a read: which chunks of one level hold steps in `[lo, hi]`. A
/// small block is read whole at once; a larger one has its index read, then the chunks
/// fetched a span at a time as the read needs them, so a page of an export does not
/// fetch the whole block. A block without the level asked for (too few points for it,
/// or text) answers its points instead.
#[derive(Debug)]
pub struct Opened {
    key: BlobKey,
    whole: Option<Bytes>,
    /// In step order: each chunk's place in its level, and where it lies.
    pub wanted: Vec<(usize, Entry)>,
}

impl Opened {
    pub async fn open(
        store: &Store,
        key: BlobKey,
        block: &BlockRef,
        level: usize,
        lo: i64,
        hi: i64,
    ) -> Result<Self> {
        if block.last_step < lo || block.first_step > hi {
            return Ok(Self {
                key,
                whole: None,
                wanted: Vec::new(),
            });
        }
        let (whole, head) = if block.bytes <= WHOLE_BLOCK_BYTES {
            let whole = store.blobs.get(&key).await?.bytes().await?;
            (Some(whole.clone()), whole)
        } else {
            let range = 0..u64::from(block.index_bytes);
            (
                None,
                store.blobs.get_range(&key, range).await?.bytes().await?,
            )
        };
        let levels = index(&head)?;
        let level = levels.len().min(level + 1).saturating_sub(1);
        let wanted = levels
            .into_iter()
            .nth(level)
            .map(|level| level.chunks)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter(|(_, entry)| entry.last_step >= lo && entry.first_step <= hi)
            .collect();
        Ok(Self { key, whole, wanted })
    }

    /// The bytes of `self.wanted[range]`, in one read at most.
    pub async fn fetch(
        &self,
        store: &Store,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<(usize, Bytes)>> {
        let wanted = &self.wanted[range];
        let (Some((_, first)), Some((_, last))) = (wanted.first(), wanted.last()) else {
            return Ok(Vec::new());
        };
        let start = first.offset;
        let end = last.offset + u64::from(last.len);
        let span = match &self.whole {
            Some(whole) => whole.clone(),
            None => {
                store
                    .blobs
                    .get_range(&self.key, start..end)
                    .await?
                    .bytes()
                    .await?
            }
        };
        let base = if self.whole.is_some() { 0 } else { start };
        wanted
            .iter()
            .map(|&(ordinal, entry)| {
                let at = (entry.offset - base) as usize;
                span.get(at..at + entry.len as usize)
                    .map(|_| (ordinal, span.slice(at..at + entry.len as usize)))
                    .ok_or_else(|| corrupt("chunks cut short"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: Vec<u8>, count: u32, first_step: i64, last_step: i64) -> SealedChunk {
        SealedChunk {
            bytes,
            count,
            first_step,
            last_step,
        }
    }

    #[test]
    fn a_block_index_says_where_each_chunk_of_each_level_lies() {
        let levels = vec![
            (
                1,
                vec![
                    chunk(vec![1, 2, 3], 2, -5, 9),
                    chunk(vec![4; 10], 7, 10, 40),
                ],
            ),
            (256, vec![chunk(vec![5; 4], 1, 0, 0)]),
        ];
        let (bytes, index_bytes) = encode(&levels);
        let read = index(&bytes[..index_bytes as usize]).unwrap();
        assert_eq!(read.len(), 2);
        for (level, (bucket_points, chunks)) in read.iter().zip(&levels) {
            assert_eq!(level.bucket_points, *bucket_points);
            for (entry, chunk) in level.chunks.iter().zip(chunks) {
                let at = entry.offset as usize;
                assert_eq!(&bytes[at..at + entry.len as usize], &chunk.bytes[..]);
                assert_eq!(
                    (entry.count, entry.first_step, entry.last_step),
                    (chunk.count, chunk.first_step, chunk.last_step)
                );
            }
        }
        assert!(index(b"SXB0\0\0\0\0").is_err());
        assert!(index(&bytes[..index_bytes as usize - 1]).is_err());
    }

    #[test]
    fn a_summary_level_keeps_each_buckets_extremes_and_first_nan_in_order() {
        let mut points = Points::default();
        for i in 0..1000i64 {
            let value = match i {
                300 => f64::NAN,
                301 => f64::NAN,
                700 => 1e9,
                _ => (i % 17) as f64,
            };
            points.push(i, value, i as f64);
        }
        let levels = summary_levels(&points);
        assert_eq!(levels.len(), 1, "1,000 points make one level of 256");
        let (bucket, kept) = &levels[0];
        assert_eq!(*bucket, 256);
        assert!(kept.steps.windows(2).all(|w| w[0] < w[1]));
        assert!(kept.values.contains(&1e9));
        assert_eq!(kept.values.iter().filter(|v| v.is_nan()).count(), 1);
        assert_eq!(
            kept.steps[kept.values.iter().position(|v| v.is_nan()).unwrap()],
            300
        );
        // Four buckets, at most three points each.
        assert!(kept.len() <= 12);
    }

    #[test]
    fn a_chart_picks_the_coarsest_level_that_still_has_buckets_to_spare() {
        assert_eq!(level_for(100), 0);
        assert_eq!(level_for(256), 1);
        assert_eq!(level_for(16_383), 1);
        assert_eq!(level_for(16_384), 2);
        assert_eq!(level_for(usize::MAX), 2);
    }
}
