//! Downsampling for charts that must keep every spike: the step range is cut into
//! equal-width buckets and each bucket gives its minimum and its maximum point (and,
//! when the series has NaNs, its first NaN, so a divergence stays visible). Nothing
//! is sampled at random, and the global extremes of every bucket survive.

use super::Points;

/// At most `max_points` of `points` (sorted by step), every bucket's extremes kept.
pub fn min_max(points: &Points, max_points: usize) -> Points {
    let n = points.len();
    if n <= max_points || max_points < 2 {
        return points.clone();
    }
    let has_nan = points.values.iter().any(|v| v.is_nan());
    let keep_nan = has_nan && max_points >= 3;
    let buckets = if keep_nan {
        max_points / 3
    } else {
        max_points / 2
    };
    let first = points.steps[0];
    let width = points.steps[n - 1].abs_diff(first) as u128 + 1;

    #[derive(Clone, Copy, Default)]
    struct Bucket {
        min: Option<usize>,
        max: Option<usize>,
        nan: Option<usize>,
    }
    let mut chosen = vec![Bucket::default(); buckets];
    for (i, (&step, &value)) in points.steps.iter().zip(&points.values).enumerate() {
        let offset = step.abs_diff(first) as u128;
        let bucket = &mut chosen[(offset * buckets as u128 / width) as usize];
        if value.is_nan() {
            if keep_nan {
                bucket.nan.get_or_insert(i);
            }
            continue;
        }
        if bucket.min.is_none_or(|m| value < points.values[m]) {
            bucket.min = Some(i);
        }
        if bucket.max.is_none_or(|m| value > points.values[m]) {
            bucket.max = Some(i);
        }
    }
    let mut keep: Vec<usize> = chosen
        .iter()
        .flat_map(|b| [b.min, b.max, b.nan])
        .flatten()
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut out = Points::with_capacity(keep.len());
    for i in keep {
        out.push(points.steps[i], points.values[i], points.timestamps[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
