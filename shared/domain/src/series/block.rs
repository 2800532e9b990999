//! Blocks: a series' sealed points, folded out of many small chunk items into one
//! object in the blob store, where a byte costs a tenth of what it costs in DynamoDB
//! and a chart reads one object instead of a hundred items.
//!
//! A block is the chunks of the series (the same encodings as chunk items, up to
//! `MAX_CHUNK_POINTS` points each) back to back, after an index saying where each
//! chunk lies and which steps it covers. A reader fetches the index (its length is in
//! the run record), then only the byte range of the chunks that a read's steps touch.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! 4 bytes   "SXB1"
//! u32       chunk count n
//! n × 32    per chunk: u64 offset from the block's start, u32 length, u32 points,
//!           i64 first step, i64 last step
//! ...       the chunks
//! ```

use bytes::Bytes;

use super::{Result, SeriesError};
use crate::runs::summary::BlockRef;
use sextant_storage::Store;
use sextant_storage::blob::BlobKey;

const MAGIC: &[u8; 4] = b"SXB1";
const ENTRY_BYTES: usize = 32;
/// A block this small is read whole in one request: S3 answers the first bytes of an
/// object in the same time whatever its size up to about this, so two ranged reads
/// would only cost a round trip more.
const WHOLE_BLOCK_BYTES: u64 = 1024 * 1024;

/// Where one chunk of a block lies and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub first_step: i64,
    pub last_step: i64,
}

/// An encoded chunk on its way into a block.
#[derive(Debug)]
pub struct SealedChunk {
    pub bytes: Vec<u8>,
    pub count: u32,
    pub first_step: i64,
    pub last_step: i64,
}

/// A block's bytes and the length of its index.
pub fn encode(chunks: &[SealedChunk]) -> (Vec<u8>, u32) {
    let index_bytes = MAGIC.len() + 4 + chunks.len() * ENTRY_BYTES;
    let body: usize = chunks.iter().map(|chunk| chunk.bytes.len()).sum();
    let mut out = Vec::with_capacity(index_bytes + body);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    let mut offset = index_bytes as u64;
    for chunk in chunks {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(chunk.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&chunk.count.to_le_bytes());
        out.extend_from_slice(&chunk.first_step.to_le_bytes());
        out.extend_from_slice(&chunk.last_step.to_le_bytes());
        offset += chunk.bytes.len() as u64;
    }
    for chunk in chunks {
        out.extend_from_slice(&chunk.bytes);
    }
    (out, index_bytes as u32)
}

fn corrupt(why: &'static str) -> SeriesError {
    SeriesError::Corrupt(anyhow::anyhow!("block: {why}"))
}

/// Reads a block's index from its first bytes.
pub fn index(head: &[u8]) -> Result<Vec<Entry>> {
    if head.len() < 8 || &head[..4] != MAGIC {
        return Err(corrupt("no block header"));
    }
    let n = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    let entries = head
        .get(8..8 + n * ENTRY_BYTES)
        .ok_or_else(|| corrupt("index cut short"))?;
    Ok(entries
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            let u64_at = |at: usize| u64::from_le_bytes(entry[at..at + 8].try_into().expect("8"));
            let u32_at = |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().expect("4"));
            Entry {
                offset: u64_at(0),
                len: u32_at(8),
                count: u32_at(12),
                first_step: u64_at(16) as i64,
                last_step: u64_at(24) as i64,
            }
        })
        .collect())
}

/// The chunks of a block that hold steps in `[lo, hi]`, each with its place in the
/// block: the whole block if it is small, else two ranged reads (the index, then the
/// chunks' span).
pub async fn chunks_in(
    store: &Store,
    block: &BlockRef,
    lo: i64,
    hi: i64,
) -> Result<Vec<(usize, Bytes)>> {
    if block.last_step < lo || block.first_step > hi {
        return Ok(Vec::new());
    }
    let key = BlobKey::parse(block.key.clone()).map_err(|_| corrupt("bad block key"))?;
    if block.bytes <= WHOLE_BLOCK_BYTES {
        let whole = store.blobs.get(&key).await?.bytes().await?;
        let wanted = index(&whole)?
            .into_iter()
            .enumerate()
            .filter(|(_, entry)| entry.last_step >= lo && entry.first_step <= hi)
            .map(|(ordinal, entry)| {
                let at = entry.offset as usize;
                whole
                    .get(at..at + entry.len as usize)
                    .map(|_| (ordinal, whole.slice(at..at + entry.len as usize)))
                    .ok_or_else(|| corrupt("chunks cut short"))
            })
            .collect();
        return wanted;
    }
    let head = store
        .blobs
        .get_range(&key, 0..u64::from(block.index_bytes))
        .await?
        .bytes()
        .await?;
    let wanted: Vec<(usize, Entry)> = index(&head)?
        .into_iter()
        .enumerate()
        .filter(|(_, entry)| entry.last_step >= lo && entry.first_step <= hi)
        .collect();
    let (Some((_, first)), Some((_, last))) = (wanted.first(), wanted.last()) else {
        return Ok(Vec::new());
    };
    let start = first.offset;
    let end = last.offset + u64::from(last.len);
    let span = store
        .blobs
        .get_range(&key, start..end)
        .await?
        .bytes()
        .await?;
    if span.len() as u64 != end - start {
        return Err(corrupt("chunks cut short"));
    }
    Ok(wanted
        .into_iter()
        .map(|(ordinal, entry)| {
            let at = (entry.offset - start) as usize;
            (ordinal, span.slice(at..at + entry.len as usize))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_index_says_where_each_chunk_lies() {
        let chunks = [
            SealedChunk {
                bytes: vec![1, 2, 3],
                count: 2,
                first_step: -5,
                last_step: 9,
            },
            SealedChunk {
                bytes: vec![4; 10],
                count: 7,
                first_step: 10,
                last_step: 40,
            },
        ];
        let (bytes, index_bytes) = encode(&chunks);
        let entries = index(&bytes[..index_bytes as usize]).unwrap();
        assert_eq!(entries.len(), 2);
        for (entry, chunk) in entries.iter().zip(&chunks) {
            let at = entry.offset as usize;
            assert_eq!(&bytes[at..at + entry.len as usize], &chunk.bytes[..]);
            assert_eq!(
                (entry.count, entry.first_step, entry.last_step),
                (chunk.count, chunk.first_step, chunk.last_step)
            );
        }
        assert!(index(b"SXB0\0\0\0\0").is_err());
        assert!(index(&bytes[..index_bytes as usize - 1]).is_err());
    }
}
