//! What a run record knows of each of its series: its kind and a running summary
//! (count, step range, last value, extremes), merged as chunks arrive. The series
//! module stores and reads the points; this is the part the run record carries.

use serde::{Deserialize, Serialize};

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
    pub(crate) fn key_prefix(self) -> &'static str {
        match self {
            SeriesKind::Numeric => "c",
            SeriesKind::Text => "t",
        }
    }
}

/// What a series' steps count. Sextant's steps are integers; Neptune's client logs
/// fractional ones (`2.5`, and captured console lines a millionth of a step apart). A
/// series whose first batch holds any is kept in millionths of a step (`2.5` is
/// 2,500,000), exactly and without collisions, and says so; every later batch of it
/// must count alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepUnit {
    #[default]
    Whole,
    Micro,
}

impl StepUnit {
    /// Stored steps in one whole step, counting millionths.
    pub const MICROS_PER_STEP: i64 = 1_000_000;

    pub fn is_whole(&self) -> bool {
        *self == StepUnit::Whole
    }

    /// Step `whole + micro / 10⁶` as stored in a series counting `self`; `None` for a
    /// fraction in a series of whole steps.
    pub fn stored(self, whole: i64, micro: i64) -> Option<i64> {
        match self {
            StepUnit::Whole => (micro == 0).then_some(whole),
            StepUnit::Micro => whole
                .checked_mul(Self::MICROS_PER_STEP)
                .and_then(|step| step.checked_add(micro)),
        }
    }

    /// The whole step a stored step falls in.
    pub fn whole_of(self, stored: i64) -> i64 {
        match self {
            StepUnit::Whole => stored,
            StepUnit::Micro => stored.div_euclid(Self::MICROS_PER_STEP),
        }
    }

    /// The first and last stored steps of whole step `whole`.
    pub fn first_of(self, whole: i64) -> i64 {
        match self {
            StepUnit::Whole => whole,
            StepUnit::Micro => whole.saturating_mul(Self::MICROS_PER_STEP),
        }
    }

    pub fn last_of(self, whole: i64) -> i64 {
        match self {
            StepUnit::Whole => whole,
            StepUnit::Micro => self
                .first_of(whole)
                .saturating_add(Self::MICROS_PER_STEP - 1),
        }
    }

    /// A stored step as it was logged: `2500000` in millionths is `2.5`.
    pub fn logged(self, step: i64) -> String {
        let micro = step - self.first_of(self.whole_of(step));
        if micro == 0 {
            self.whole_of(step).to_string()
        } else {
            let fraction = format!("{micro:06}");
            format!("{}.{}", self.whole_of(step), fraction.trim_end_matches('0'))
        }
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
    /// Whether a fold has sealed some of the series into blocks; they are named in the
    /// series' fold item (`series::fold`), which reads of the series then fetch. Only a
    /// flag here: the run record is rewritten by every batch, and block names would
    /// make every batch pay for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    /// When the series' newest chunk item was written (Unix nanoseconds): once a fold
    /// has sealed through it, a read of the series looks for no chunk items. `None` in
    /// records from before it was kept: there may be some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<i64>,
    /// Absent (whole steps) in records from before it was kept, and in most since.
    #[serde(default, skip_serializing_if = "StepUnit::is_whole")]
    pub step_unit: StepUnit,
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
    /// What `first_step`, `last_step` and the points' steps count: `micro` for
    /// millionths of a step.
    pub step_unit: StepUnit,
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
            step_unit: self.step_unit,
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
            folded: false,
            written: None,
            step_unit: StepUnit::Whole,
        }
    }
}

impl SeriesSummary {
    /// Notes a chunk item written at `written`: every chunk item of the series was
    /// written at or before the newest this notes.
    pub fn note_written(&mut self, written: i64) {
        self.written = Some(self.written.map_or(written, |known| known.max(written)));
    }

    /// Whether every chunk item of the series was written at or before `through`.
    pub fn written_by(&self, through: i64) -> bool {
        self.written.is_some_and(|written| written <= through)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_in_millionths_reads_as_it_was_logged() {
        assert_eq!(StepUnit::Micro.logged(2_500_000), "2.5");
        assert_eq!(StepUnit::Micro.logged(1), "0.000001");
        assert_eq!(StepUnit::Micro.logged(7_000_000), "7");
        assert_eq!(StepUnit::Micro.logged(-1_500_000), "-2.5");
        assert_eq!(StepUnit::Whole.logged(2_500_000), "2500000");
    }

    #[test]
    fn a_step_maps_into_a_unit_exactly_and_back() {
        assert_eq!(StepUnit::Micro.stored(2, 500_000), Some(2_500_000));
        assert_eq!(StepUnit::Whole.stored(2, 0), Some(2));
        assert_eq!(StepUnit::Whole.stored(2, 500_000), None);
        assert_eq!(StepUnit::Micro.stored(i64::MAX, 0), None);
        assert_eq!(StepUnit::Micro.whole_of(2_500_000), 2);
        assert_eq!(StepUnit::Micro.whole_of(-1), -1);
        assert_eq!(
            (StepUnit::Micro.first_of(3), StepUnit::Micro.last_of(9)),
            (3_000_000, 9_999_999)
        );
        assert_eq!(
            (StepUnit::Whole.first_of(3), StepUnit::Whole.last_of(9)),
            (3, 9)
        );
        assert_eq!(StepUnit::Micro.last_of(i64::MAX), i64::MAX);
        assert_eq!(StepUnit::Micro.first_of(i64::MIN), i64::MIN);
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

    #[test]
    fn a_summary_stored_before_folds_existed_reads_unfolded_and_stores_unchanged() {
        let stored = r#"{"kind":"numeric","count":3,"first_step":0,"last_step":2,"last_timestamp":1.5,"min":0.1,"max":0.3,"last":0.2,"span":2}"#;
        let summary: SeriesSummary = serde_json::from_str(stored).unwrap();
        assert!(!summary.folded);
        assert_eq!(serde_json::to_string(&summary).unwrap(), stored);
    }
}
