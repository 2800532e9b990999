//! Text series: log lines and notes at steps, stored as sealed chunks like numbers.
//!
//! Chunk layout: `u8` version (1), `i64` first step, `i64` last step (little-endian),
//! then one zstd frame of the postcard-encoded lines.

use serde::{Deserialize, Serialize};

use super::SeriesData;
use super::{Result, SeriesError};
use crate::runs::summary::ChunkFacts;

const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 8;
/// Text lines per chunk at most; with 64 KiB lines a chunk still fits an item only
/// when compressible, so chunks are also cut by size.
pub const MAX_CHUNK_LINES: usize = 2_000;
pub const MAX_CHUNK_TEXT_BYTES: usize = 256 * 1024;
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextPoints {
    pub steps: Vec<i64>,
    pub texts: Vec<String>,
    pub timestamps: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    step: i64,
    timestamp: f64,
    text: std::borrow::Cow<'a, str>,
}

impl TextPoints {
    /// Sorts by step, then timestamp, stably.
    pub fn sort(&mut self) {
        let order_of = |a: usize, b: usize| {
            self.steps[a]
                .cmp(&self.steps[b])
                .then(self.timestamps[a].total_cmp(&self.timestamps[b]))
        };
        if (1..self.steps.len()).all(|i| order_of(i - 1, i).is_le()) {
            return;
        }
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.sort_by(|&a, &b| order_of(a, b));
        self.permute(&order);
    }

    pub fn push(&mut self, step: i64, text: String, timestamp: f64) {
        self.steps.push(step);
        self.texts.push(text);
        self.timestamps.push(timestamp);
    }

    pub fn extend_from(&mut self, other: &Self, range: std::ops::Range<usize>) {
        self.steps.extend_from_slice(&other.steps[range.clone()]);
        self.texts.extend_from_slice(&other.texts[range.clone()]);
        self.timestamps.extend_from_slice(&other.timestamps[range]);
    }

    /// Sorted lines cut into runs that each make one chunk: at most `MAX_CHUNK_LINES`
    /// lines and, past its first line, `MAX_CHUNK_TEXT_BYTES` of text.
    pub fn chunk_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < self.steps.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < self.steps.len()
                && end - start < MAX_CHUNK_LINES
                && (end == start || bytes + self.texts[end].len() <= MAX_CHUNK_TEXT_BYTES)
            {
                bytes += self.texts[end].len();
                end += 1;
            }
            ranges.push(start..end);
            start = end;
        }
        ranges
    }

    pub fn encode(&self) -> Vec<u8> {
        let lines: Vec<Line<'_>> = (0..self.steps.len())
            .map(|i| Line {
                step: self.steps[i],
                timestamp: self.timestamps[i],
                text: self.texts[i].as_str().into(),
            })
            .collect();
        let body = postcard::to_stdvec(&lines).expect("postcard into memory");
        let compressed = zstd::bulk::compress(&body, 9).expect("zstd on a memory buffer");
        let mut out = Vec::with_capacity(HEADER_BYTES + compressed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.steps.first().copied().unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.steps.last().copied().unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&compressed);
        out
    }

    fn permute(&mut self, order: &[usize]) {
        self.steps = order.iter().map(|&i| self.steps[i]).collect();
        self.timestamps = order.iter().map(|&i| self.timestamps[i]).collect();
        let mut texts: Vec<Option<String>> = std::mem::take(&mut self.texts)
            .into_iter()
            .map(Some)
            .collect();
        self.texts = order
            .iter()
            .map(|&i| texts[i].take().unwrap_or_default())
            .collect();
    }
}

fn malformed(what: &str) -> SeriesError {
    SeriesError::Corrupt(anyhow::anyhow!("malformed text chunk: {what}"))
}

impl SeriesData for TextPoints {
    type Payload = String;

    fn len(&self) -> usize {
        self.steps.len()
    }

    fn step(&self, index: usize) -> i64 {
        self.steps[index]
    }

    fn timestamp(&self, index: usize) -> f64 {
        self.timestamps[index]
    }

    fn take(&mut self, index: usize) -> String {
        std::mem::take(&mut self.texts[index])
    }

    fn push(&mut self, step: i64, text: String, timestamp: f64) {
        TextPoints::push(self, step, text, timestamp);
    }

    fn decode(chunk: &[u8]) -> Result<Self> {
        Self::first_step(chunk)?;
        // A chunk holds at most MAX_CHUNK_TEXT_BYTES of text plus a few bytes a line.
        let capacity = MAX_CHUNK_TEXT_BYTES + MAX_CHUNK_LINES * 32;
        let body = zstd::bulk::decompress(&chunk[HEADER_BYTES..], capacity)
            .map_err(|_| malformed("zstd frame"))?;
        let lines: Vec<Line<'_>> = postcard::from_bytes(&body).map_err(|_| malformed("lines"))?;
        let mut points = TextPoints::default();
        for line in lines {
            points.push(line.step, line.text.into_owned(), line.timestamp);
        }
        Ok(points)
    }

    fn first_step(chunk: &[u8]) -> Result<i64> {
        match chunk.first() {
            Some(&FORMAT_VERSION) if chunk.len() >= HEADER_BYTES => Ok(i64::from_le_bytes(
                chunk[1..9].try_into().expect("eight bytes"),
            )),
            Some(_) => Err(malformed("version or header")),
            None => Err(malformed("empty")),
        }
    }

    fn truncate(&mut self, len: usize) {
        self.steps.truncate(len);
        self.texts.truncate(len);
        self.timestamps.truncate(len);
    }

    fn cut(&self) -> Vec<super::Chunk> {
        self.chunk_ranges()
            .into_iter()
            .map(|range| {
                let (first, last) = (range.start, range.end - 1);
                let mut chunk = TextPoints::default();
                chunk.extend_from(self, range.clone());
                super::Chunk {
                    bytes: chunk.encode(),
                    facts: ChunkFacts {
                        count: range.len() as u64,
                        first_step: self.steps[first],
                        last_step: self.steps[last],
                        last_timestamp: self.timestamps[last],
                        min: None,
                        max: None,
                        last: None,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_chunks_round_trip_in_step_order() {
        let mut lines = TextPoints::default();
        lines.push(2, "second".into(), 2.5);
        lines.push(1, "first, with ünïcode".into(), 1.5);
        lines.push(2, String::new(), 2.5);
        lines.sort();
        let decoded = TextPoints::decode(&lines.encode()).expect("decodes");
        assert_eq!(decoded, lines);
        assert_eq!(decoded.texts, ["first, with ünïcode", "second", ""]);
        assert_eq!(TextPoints::first_step(&lines.encode()).ok(), Some(1));
    }
}
