//! The sealed-chunk format for metric series: a few thousand points of one series in a
//! few KB, with the chunk's summary readable without decompressing.
//!
//! Each column (steps, timestamps, values) is turned into unsigned lanes, passed
//! through the predictor that leaves the smallest residuals (delta of order 1 to 3, or
//! XOR with the previous lane for floats), split into byte planes (all lowest bytes,
//! then all next bytes, ...) and the planes of all three columns are compressed as one
//! zstd frame. Byte planes put the near-constant high bytes of residuals side by side,
//! where zstd removes them almost for free. Before that the codec narrows each column
//! when it can do so exactly: timestamps with millisecond precision become integer
//! milliseconds, values that are all integers become integers, and values that are all
//! exactly representable as f32 (most framework metrics) travel as 32-bit floats.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! u8      format version (1)
//! varint  point count n (1..=MAX_CHUNK_POINTS)
//! i64     first step        i64 last step
//! f64     min   f64 max   f64 last      (min/max ignore NaN; NaN if every value is)
//! u8 u8   steps:      predictor, lane width in bytes
//! u8 u8 u8 timestamps: kind, predictor, width
//! u8 u8 u8 values:     kind, predictor, width
//! ...     one zstd frame: the byte planes of steps, timestamps, values
//! ```

use std::cmp::Ordering;

pub const FORMAT_VERSION: u8 = 1;
/// At most this many points per chunk, so that a chunk of incompressible values
/// (24 bytes a point) still fits in one DynamoDB item.
pub const MAX_CHUNK_POINTS: usize = 10_000;
const ZSTD_LEVEL: i32 = 9;
const HEADER_FIXED_BYTES: usize = 1 + 5 * 8 + 2 + 3 + 3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("unknown chunk format version {0}")]
    UnknownVersion(u8),
    #[error("malformed chunk: {0}")]
    Malformed(&'static str),
}

/// Points of one series in (step, timestamp) order; timestamps are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    pub steps: Vec<i64>,
    pub values: Vec<f64>,
    pub timestamps: Vec<f64>,
}

impl Points {
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            steps: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
            timestamps: Vec::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, step: i64, value: f64, timestamp: f64) {
        self.steps.push(step);
        self.values.push(value);
        self.timestamps.push(timestamp);
    }

    pub fn extend_from(&mut self, other: &Points, range: std::ops::Range<usize>) {
        self.steps.extend_from_slice(&other.steps[range.clone()]);
        self.values.extend_from_slice(&other.values[range.clone()]);
        self.timestamps.extend_from_slice(&other.timestamps[range]);
    }

    fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.order(i - 1, i) != Ordering::Greater)
    }

    fn order(&self, a: usize, b: usize) -> Ordering {
        self.steps[a]
            .cmp(&self.steps[b])
            .then(self.timestamps[a].total_cmp(&self.timestamps[b]))
    }

    /// Sorts by step, then timestamp; points equal in both keep their order, so a
    /// repeated step reads back in the order it was logged.
    pub fn sort(&mut self) {
        if self.is_sorted() {
            return;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.order(a, b));
        self.steps = order.iter().map(|&i| self.steps[i]).collect();
        self.values = order.iter().map(|&i| self.values[i]).collect();
        self.timestamps = order.iter().map(|&i| self.timestamps[i]).collect();
    }
}

/// What a chunk's header tells without decompressing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkSummary {
    pub count: usize,
    pub first_step: i64,
    pub last_step: i64,
    /// NaN only when every value is NaN.
    pub min: f64,
    pub max: f64,
    /// The value of the last point in (step, timestamp) order.
    pub last: f64,
}

impl ChunkSummary {
    pub fn of(points: &Points) -> Option<Self> {
        let n = points.len();
        if n == 0 {
            return None;
        }
        let (min, max) = points
            .values
            .iter()
            .filter(|v| !v.is_nan())
            .fold((f64::NAN, f64::NAN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        Some(Self {
            count: n,
            first_step: points.steps[0],
            last_step: points.steps[n - 1],
            min,
            max,
            last: points.values[n - 1],
        })
    }
}

/// Encodes sorted points (see [`Points::sort`]) of one series as a chunk.
pub fn encode(points: &Points) -> Vec<u8> {
    let n = points.len();
    assert!(
        (1..=MAX_CHUNK_POINTS).contains(&n) && points.is_sorted(),
        "encode takes 1..={MAX_CHUNK_POINTS} sorted points"
    );
    let summary = ChunkSummary::of(points).expect("non-empty");

    let steps = Column::integers(points.steps.iter().copied());
    let timestamps = Column::timestamps(&points.timestamps);
    let values = Column::values(&points.values);

    let mut planes = Vec::with_capacity(n * (steps.width + timestamps.width + values.width));
    for column in [&steps, &timestamps, &values] {
        column.write_planes(&mut planes);
    }
    let compressed = zstd::bulk::compress(&planes, ZSTD_LEVEL).expect("zstd on a memory buffer");

    let mut out = Vec::with_capacity(HEADER_FIXED_BYTES + 5 + compressed.len());
    out.push(FORMAT_VERSION);
    write_varint(&mut out, n as u64);
    out.extend_from_slice(&summary.first_step.to_le_bytes());
    out.extend_from_slice(&summary.last_step.to_le_bytes());
    for value in [summary.min, summary.max, summary.last] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&[steps.predictor as u8, steps.width as u8]);
    for column in [&timestamps, &values] {
        out.extend_from_slice(&[column.kind, column.predictor as u8, column.width as u8]);
    }
    out.extend_from_slice(&compressed);
    out
}

/// Reads a chunk's summary from its header alone.
pub fn summary(chunk: &[u8]) -> Result<ChunkSummary, CodecError> {
    Header::parse(chunk).map(|header| header.summary)
}

pub fn decode(chunk: &[u8]) -> Result<Points, CodecError> {
    let header = Header::parse(chunk)?;
    let n = header.summary.count;
    let [steps, timestamps, values] = header.columns;
    let expected = n * (steps.width + timestamps.width + values.width);
    let planes = zstd::bulk::decompress(&chunk[header.body..], expected)
        .map_err(|_| CodecError::Malformed("corrupt zstd frame"))?;
    if planes.len() != expected {
        return Err(CodecError::Malformed("wrong plane length"));
    }
    let (step_planes, rest) = planes.split_at(n * steps.width);
    let (timestamp_planes, value_planes) = rest.split_at(n * timestamps.width);

    let steps_out: Vec<i64> = steps
        .read_lanes(step_planes, n)
        .into_iter()
        .map(|lane| lane as i64)
        .collect();
    let timestamp_lanes = timestamps.read_lanes(timestamp_planes, n);
    let timestamps_out = match timestamps.kind {
        KIND_INTEGER => timestamp_lanes
            .into_iter()
            .map(|ms| ms as i64 as f64 / 1000.0)
            .collect(),
        KIND_F64 => timestamp_lanes.into_iter().map(f64::from_bits).collect(),
        _ => return Err(CodecError::Malformed("unknown timestamp kind")),
    };
    let value_lanes = values.read_lanes(value_planes, n);
    let values_out = match values.kind {
        KIND_INTEGER => value_lanes.into_iter().map(|v| v as i64 as f64).collect(),
        KIND_F32 => value_lanes
            .into_iter()
            .map(|bits| f64::from(f32::from_bits(bits as u32)))
            .collect(),
        KIND_F64 => value_lanes.into_iter().map(f64::from_bits).collect(),
        _ => return Err(CodecError::Malformed("unknown value kind")),
    };
    Ok(Points {
        steps: steps_out,
        values: values_out,
        timestamps: timestamps_out,
    })
}

const KIND_INTEGER: u8 = 0;
const KIND_F32: u8 = 1;
const KIND_F64: u8 = 2;

/// How lanes are turned into small residuals. Deltas work on the lanes as signed
/// integers and zigzag the result, so small negative residuals stay small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Predictor {
    Raw = 0,
    Delta1 = 1,
    Delta2 = 2,
    Delta3 = 3,
    /// XOR with the previous lane (Gorilla's trick for floats).
    Xor = 4,
}

impl Predictor {
    const ALL: [Predictor; 5] = [
        Predictor::Raw,
        Predictor::Delta1,
        Predictor::Delta2,
        Predictor::Delta3,
        Predictor::Xor,
    ];

    fn from_byte(byte: u8) -> Result<Self, CodecError> {
        Self::ALL
            .into_iter()
            .find(|p| *p as u8 == byte)
            .ok_or(CodecError::Malformed("unknown predictor"))
    }

    fn delta_order(self) -> usize {
        match self {
            Predictor::Raw | Predictor::Xor => 0,
            Predictor::Delta1 => 1,
            Predictor::Delta2 => 2,
            Predictor::Delta3 => 3,
        }
    }

    /// Residuals of the lanes; `bits` is 32 or 64, the width of the lane's domain.
    fn forward(self, lanes: &mut [u64], bits: u32) {
        if self == Predictor::Xor {
            for i in (1..lanes.len()).rev() {
                lanes[i] ^= lanes[i - 1];
            }
            return;
        }
        for _ in 0..self.delta_order() {
            for i in (1..lanes.len()).rev() {
                lanes[i] = wrap(lanes[i].wrapping_sub(lanes[i - 1]), bits);
            }
        }
        for lane in lanes.iter_mut() {
            *lane = zigzag(*lane, bits);
        }
    }

    fn inverse(self, lanes: &mut [u64], bits: u32) {
        if self == Predictor::Xor {
            for i in 1..lanes.len() {
                lanes[i] ^= lanes[i - 1];
            }
            return;
        }
        for lane in lanes.iter_mut() {
            *lane = unzigzag(*lane, bits);
        }
        for _ in 0..self.delta_order() {
            for i in 1..lanes.len() {
                lanes[i] = wrap(lanes[i].wrapping_add(lanes[i - 1]), bits);
            }
        }
    }
}

fn wrap(lane: u64, bits: u32) -> u64 {
    if bits == 64 {
        lane
    } else {
        lane & ((1 << bits) - 1)
    }
}

fn zigzag(lane: u64, bits: u32) -> u64 {
    // Sign-extend from the lane's domain, then map 0,-1,1,-2,... to 0,1,2,3,...
    let signed = ((lane << (64 - bits)) as i64) >> (64 - bits);
    wrap(((signed << 1) ^ (signed >> 63)) as u64, bits)
}

fn unzigzag(lane: u64, bits: u32) -> u64 {
    wrap((lane >> 1) ^ (lane & 1).wrapping_neg(), bits)
}

fn byte_len(lane: u64) -> usize {
    (64 - lane.leading_zeros() as usize).div_ceil(8)
}

/// A column ready for the planes: its residual lanes and how to undo them.
#[derive(Debug)]
struct Column {
    kind: u8,
    predictor: Predictor,
    width: usize,
    residuals: Vec<u64>,
}

impl Column {
    fn integers(values: impl Iterator<Item = i64>) -> Self {
        Self::best(KIND_INTEGER, values.map(|v| v as u64).collect(), 64)
    }

    fn timestamps(timestamps: &[f64]) -> Self {
        let millis: Option<Vec<i64>> = timestamps
            .iter()
            .map(|&t| {
                let ms = (t * 1000.0).round();
                // The round trip must give back the very same f64.
                (ms.abs() < 9.0e15 && (ms as i64 as f64 / 1000.0).to_bits() == t.to_bits())
                    .then_some(ms as i64)
            })
            .collect();
        match millis {
            Some(millis) => Self::integers(millis.into_iter()),
            None => Self::best(
                KIND_F64,
                timestamps.iter().map(|t| t.to_bits()).collect(),
                64,
            ),
        }
    }

    fn values(values: &[f64]) -> Self {
        let all_integers = values
            .iter()
            .all(|&v| v.fract() == 0.0 && v.abs() < 9.0e15 && !(v == 0.0 && v.is_sign_negative()));
        if all_integers {
            return Self::integers(values.iter().map(|&v| v as i64));
        }
        let all_f32 = values
            .iter()
            .all(|&v| f64::from(v as f32).to_bits() == v.to_bits());
        if all_f32 {
            return Self::best(
                KIND_F32,
                values
                    .iter()
                    .map(|&v| u64::from((v as f32).to_bits()))
                    .collect(),
                32,
            );
        }
        Self::best(KIND_F64, values.iter().map(|v| v.to_bits()).collect(), 64)
    }

    /// Tries every predictor and keeps the one whose residuals need the fewest
    /// significant bits in all, a close stand-in for what zstd will make of them.
    fn best(kind: u8, lanes: Vec<u64>, bits: u32) -> Self {
        let mut best: Option<(u64, Predictor, Vec<u64>)> = None;
        for predictor in Predictor::ALL {
            let mut residuals = lanes.clone();
            predictor.forward(&mut residuals, bits);
            let cost = residuals
                .iter()
                .map(|r| u64::from(64 - r.leading_zeros()))
                .sum();
            if best.as_ref().is_none_or(|(lowest, ..)| cost < *lowest) {
                best = Some((cost, predictor, residuals));
            }
        }
        let (_, predictor, residuals) = best.expect("at least one predictor");
        let width = residuals.iter().map(|&r| byte_len(r)).max().unwrap_or(0);
        Self {
            kind,
            predictor,
            width,
            residuals,
        }
    }

    fn write_planes(&self, out: &mut Vec<u8>) {
        for byte in 0..self.width {
            out.extend(self.residuals.iter().map(|r| (r >> (8 * byte)) as u8));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ColumnHeader {
    kind: u8,
    predictor: Predictor,
    width: usize,
}

impl ColumnHeader {
    fn bits(&self) -> u32 {
        if self.kind == KIND_F32 { 32 } else { 64 }
    }

    fn read_lanes(&self, planes: &[u8], n: usize) -> Vec<u64> {
        let mut lanes = vec![0u64; n];
        for (byte, plane) in planes.chunks_exact(n.max(1)).enumerate() {
            for (lane, &b) in lanes.iter_mut().zip(plane) {
                *lane |= u64::from(b) << (8 * byte);
            }
        }
        self.predictor.inverse(&mut lanes, self.bits());
        lanes
    }
}

#[derive(Debug)]
struct Header {
    summary: ChunkSummary,
    columns: [ColumnHeader; 3],
    body: usize,
}

impl Header {
    fn parse(chunk: &[u8]) -> Result<Self, CodecError> {
        let mut reader = Reader {
            bytes: chunk,
            at: 0,
        };
        let version = reader.byte()?;
        if version != FORMAT_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let count = usize::try_from(reader.varint()?)
            .ok()
            .filter(|n| (1..=MAX_CHUNK_POINTS).contains(n))
            .ok_or(CodecError::Malformed("point count out of range"))?;
        let first_step = i64::from_le_bytes(reader.array()?);
        let last_step = i64::from_le_bytes(reader.array()?);
        let min = f64::from_le_bytes(reader.array()?);
        let max = f64::from_le_bytes(reader.array()?);
        let last = f64::from_le_bytes(reader.array()?);
        let mut column = |kind: Option<u8>| -> Result<ColumnHeader, CodecError> {
            let kind = match kind {
                Some(kind) => kind,
                None => reader.byte()?,
            };
            let predictor = Predictor::from_byte(reader.byte()?)?;
            let width = usize::from(reader.byte()?);
            let max_width = if kind == KIND_F32 { 4 } else { 8 };
            if kind > KIND_F64 || width > max_width {
                return Err(CodecError::Malformed("bad column header"));
            }
            Ok(ColumnHeader {
                kind,
                predictor,
                width,
            })
        };
        let columns = [column(Some(KIND_INTEGER))?, column(None)?, column(None)?];
        if columns[1].kind == KIND_F32 {
            return Err(CodecError::Malformed("bad timestamp kind"));
        }
        Ok(Self {
            summary: ChunkSummary {
                count,
                first_step,
                last_step,
                min,
                max,
                last,
            },
            columns,
            body: reader.at,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or(CodecError::Malformed("truncated header"))?;
        self.at += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Malformed("varint too long"))
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn points(steps: Vec<i64>, values: Vec<f64>, timestamps: Vec<f64>) -> Points {
        Points {
            steps,
            values,
            timestamps,
        }
    }

    pub(super) fn bits(points: &Points) -> Vec<(i64, u64, u64)> {
        (0..points.len())
            .map(|i| {
                (
                    points.steps[i],
                    points.values[i].to_bits(),
                    points.timestamps[i].to_bits(),
                )
            })
            .collect()
    }

    fn round_trip(original: &Points) {
        let decoded = decode(&encode(original)).expect("decodes");
        assert_eq!(bits(&decoded), bits(original));
    }

    #[test]
    fn every_value_kind_comes_back_bit_for_bit() {
        let special = vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
            0.1,
        ];
        let n = special.len() as i64;
        round_trip(&points(
            (0..n).collect(),
            special,
            (0..n).map(|i| 1.7e9 + i as f64 * 0.1).collect(),
        ));
        round_trip(&points(
            vec![-5, 3, 3, i64::MAX],
            vec![1.0; 4],
            vec![0.0; 4],
        ));
        round_trip(&points(
            vec![i64::MIN, 0],
            vec![f64::from(0.3f32), f64::from(-7.25f32)],
            vec![-1.5, f64::MAX],
        ));
        round_trip(&points(vec![1, 2], vec![-0.0, 4.0], vec![1.0, 2.0]));
    }

    #[test]
    fn each_column_is_narrowed_only_when_exact() {
        let chunk = |values: Vec<f64>, timestamps: Vec<f64>| {
            let n = values.len() as i64;
            let header = Header::parse(&encode(&points((0..n).collect(), values, timestamps)))
                .expect("parses");
            (header.columns[1].kind, header.columns[2].kind)
        };
        assert_eq!(
            chunk(vec![1.0, 2.0], vec![1.5, 1.501]),
            (KIND_INTEGER, KIND_INTEGER)
        );
        assert_eq!(
            chunk(vec![f64::from(0.1f32), 2.0], vec![1.0, 1.0001]),
            (KIND_F64, KIND_F32)
        );
        assert_eq!(chunk(vec![0.1, f64::NAN], vec![1.0, 2.0]).1, KIND_F64);
    }

    #[test]
    fn a_smooth_series_compresses_far_below_its_raw_size() {
        let n = 5000;
        let original = points(
            (0..n).collect(),
            (0..n).map(|i| 3e-4 * (i as f64 / 800.0).cos()).collect(),
            (0..n).map(|i| 1.76e9 + i as f64 * 0.1).collect(),
        );
        let chunk = encode(&original);
        round_trip(&original);
        assert!(chunk.len() < n as usize * 4, "{} bytes", chunk.len());
    }

    #[test]
    fn the_summary_is_read_from_the_header_and_ignores_nan() {
        let chunk = encode(&points(
            vec![1, 2, 3, 4],
            vec![2.0, f64::NAN, -1.0, 0.5],
            vec![0.0; 4],
        ));
        let summary = summary(&chunk).expect("parses");
        assert_eq!(
            (
                summary.count,
                summary.first_step,
                summary.last_step,
                summary.min,
                summary.max,
                summary.last
            ),
            (4, 1, 4, -1.0, 2.0, 0.5)
        );
    }

    #[test]
    fn sorting_keeps_repeated_steps_in_logged_order() {
        let mut unsorted = points(
            vec![3, 1, 3, 2],
            vec![30.0, 10.0, 31.0, 20.0],
            vec![5.0, 5.0, 5.0, 5.0],
        );
        unsorted.sort();
        assert_eq!(unsorted.steps, vec![1, 2, 3, 3]);
        assert_eq!(unsorted.values, vec![10.0, 20.0, 30.0, 31.0]);
    }

    #[test]
    fn damaged_chunks_are_refused_not_misread() {
        let chunk = encode(&points(vec![1, 2], vec![1.5, 2.5], vec![0.0, 1.0]));
        assert_eq!(decode(&[]), Err(CodecError::Malformed("truncated header")));
        let mut future = chunk.clone();
        future[0] = 9;
        assert_eq!(decode(&future), Err(CodecError::UnknownVersion(9)));
        let truncated = &chunk[..chunk.len() - 3];
        assert!(matches!(decode(truncated), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn zigzag_round_trips_in_both_lane_widths() {
        for bits in [32, 64] {
            for lane in [
                0u64,
                1,
                2,
                wrap(u64::MAX, bits),
                wrap(1 << (bits - 1), bits),
            ] {
                assert_eq!(unzigzag(zigzag(lane, bits), bits), lane, "{lane} in {bits}");
            }
        }
    }
}
