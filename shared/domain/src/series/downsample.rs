//! Downsampling for charts that must keep every spike: the step range is cut into
//! equal-width buckets and each bucket gives its minimum and its maximum point (and,
//! when the series has NaNs, its first NaN, so a divergence stays visible). Nothing
//! is sampled at random, and the global extremes of every bucket survive.

use super::Points;

/// A point as downsampling sees it: where it is, its value, and its place in the read
/// order (step, timestamp, when its batch arrived, its chunk, its index there), which
/// breaks ties and orders the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    step: i64,
    value: f64,
    timestamp: f64,
    order: (i64, u64, u32),
}

impl Candidate {
    fn before(&self, other: &Candidate) -> bool {
        (self.step, self.timestamp, self.order) < (other.step, other.timestamp, other.order)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    min: Option<Candidate>,
    max: Option<Candidate>,
    nan: Option<Candidate>,
}

impl Bucket {
    fn fold(&mut self, point: Candidate) {
        if point.value.is_nan() {
            if self.nan.is_none_or(|nan| point.before(&nan)) {
                self.nan = Some(point);
            }
            return;
        }
        // The first point in order wins a tie, as a scan in order would keep it.
        let wins = |current: Option<Candidate>, better: fn(f64, f64) -> bool| {
            current.is_none_or(|current| {
                better(point.value, current.value)
                    || (point.value == current.value && point.before(&current))
            })
        };
        if wins(self.min, |a, b| a < b) {
            self.min = Some(point);
        }
        if wins(self.max, |a, b| a > b) {
            self.max = Some(point);
        }
    }
}

/// Downsamples points as they stream by, in any order, into at most `max_points`: the
/// step range `[lo, hi]` is cut into equal-width buckets and each keeps its minimum
/// and maximum point (and, when the series has NaNs, its first NaN), so every spike
/// survives; nothing is sampled at random. Memory holds the buckets, never the points,
/// except while there are still few enough to answer exactly.
#[derive(Debug)]
pub struct MinMax {
    max_points: usize,
    lo: i64,
    width: u128,
    /// Every point so far, while there are at most `max_points` of them.
    exact: Option<Vec<Candidate>>,
    /// Buckets for a series without NaN (two points each) and with (three each); which
    /// is answered depends on whether a NaN came by.
    pairs: Vec<Bucket>,
    triples: Vec<Bucket>,
    has_nan: bool,
}

impl MinMax {
    pub fn new(max_points: usize, lo: i64, hi: i64) -> Self {
        let max_points = max_points.max(2);
        Self {
            max_points,
            lo,
            width: u128::from(hi.abs_diff(lo)) + 1,
            exact: Some(Vec::new()),
            pairs: vec![Bucket::default(); max_points / 2],
            triples: vec![Bucket::default(); (max_points / 3).max(1)],
            has_nan: false,
        }
    }

    /// A point at `step` (within `[lo, hi]`); `order` is its batch's arrival, its
    /// chunk's rank among the chunks read and its index in the chunk.
    pub fn push(&mut self, step: i64, value: f64, timestamp: f64, order: (i64, u64, u32)) {
        let point = Candidate {
            step,
            value,
            timestamp,
            order,
        };
        if let Some(exact) = &mut self.exact {
            exact.push(point);
            if exact.len() <= self.max_points {
                return;
            }
            for point in self.exact.take().into_iter().flatten() {
                self.fold(point);
            }
            return;
        }
        self.fold(point);
    }

    /// Stops keeping every point: what comes next is already a summary (a block's
    /// level), so the answer is downsampled however few points it holds.
    pub fn summarised(&mut self) {
        for point in self.exact.take().into_iter().flatten() {
            self.fold(point);
        }
    }

    fn fold(&mut self, point: Candidate) {
        self.has_nan |= point.value.is_nan();
        let offset = u128::from(point.step.abs_diff(self.lo));
        for buckets in [&mut self.pairs, &mut self.triples] {
            let last = buckets.len() - 1;
            let index = (offset * buckets.len() as u128 / self.width) as usize;
            buckets[index.min(last)].fold(point);
        }
    }

    /// The points in order, and whether they were downsampled.
    pub fn finish(self) -> (Points, bool) {
        let (mut kept, downsampled) = match self.exact {
            Some(exact) => (exact, false),
            None => {
                let keep_nan = self.has_nan && self.max_points >= 3;
                let buckets = if keep_nan { self.triples } else { self.pairs };
                let kept: Vec<Candidate> = buckets
                    .iter()
                    .flat_map(|bucket| [bucket.min, bucket.max, bucket.nan.filter(|_| keep_nan)])
                    .flatten()
                    .collect();
                (kept, true)
            }
        };
        kept.sort_by(|a, b| {
            a.step
                .cmp(&b.step)
                .then(a.timestamp.total_cmp(&b.timestamp))
                .then(a.order.cmp(&b.order))
        });
        kept.dedup_by(|a, b| a == b);
        let mut out = Points::with_capacity(kept.len());
        for point in kept {
            out.push(point.step, point.value, point.timestamp);
        }
        (out, downsampled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most `max_points` of `points` (in read order), every bucket's extremes kept.
    fn min_max(points: &Points, max_points: usize) -> Points {
        let (Some(&first), Some(&last)) = (points.steps.first(), points.steps.last()) else {
            return points.clone();
        };
        let mut downsampler = MinMax::new(max_points, first, last);
        for i in 0..points.len() {
            downsampler.push(
                points.steps[i],
                points.values[i],
                points.timestamps[i],
                (0, 0, i as u32),
            );
        }
        downsampler.finish().0
    }

    fn series(values: Vec<f64>) -> Points {
        let n = values.len() as i64;
        Points {
            steps: (0..n).collect(),
            timestamps: (0..n).map(|i| i as f64).collect(),
            values,
        }
    }

    #[test]
    fn a_single_spike_survives_heavy_downsampling() {
        let mut values: Vec<f64> = (0..100_000).map(|i| (i as f64 * 0.01).sin()).collect();
        values[77_777] = 1e6;
        values[12_345] = -1e6;
        let out = min_max(&series(values), 100);
        assert!(out.len() <= 100);
        assert!(out.values.contains(&1e6));
        assert!(out.values.contains(&-1e6));
        assert!(out.steps.windows(2).all(|w| w[0] < w[1]), "in step order");
    }

    #[test]
    fn every_bucket_keeps_its_extremes() {
        let values: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let points = series(values.clone());
        let out = min_max(&points, 50);
        // 25 buckets of 400 steps: each bucket's own min and max are in the output.
        for bucket in values.chunks(400) {
            let lo = bucket.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = bucket.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(out.values.contains(&lo) && out.values.contains(&hi));
        }
    }

    #[test]
    fn nans_and_infinities_stay_visible() {
        let mut values = vec![1.0; 1000];
        values[500] = f64::NAN;
        values[900] = f64::INFINITY;
        let out = min_max(&series(values), 30);
        assert!(out.len() <= 30);
        assert!(out.values.iter().any(|v| v.is_nan()));
        assert!(out.values.contains(&f64::INFINITY));
    }

    #[test]
    fn short_series_come_back_whole() {
        let points = series(vec![3.0, 1.0, 2.0]);
        assert_eq!(min_max(&points, 10), points);
    }
}
