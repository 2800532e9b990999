//! Line charts drawn on the server as inline SVG: no JavaScript, no external assets.
//!
//! A chart overlays several series (steps on x) with a legend. Every point given is
//! drawn: the caller has already downsampled each series (min/max-preserving). Values
//! that are not finite (NaN, ±inf) are not drawn: they split the line into segments and
//! are marked as gaps along the bottom of the plot. Each series' `<path>` carries
//! `data-series`, `data-min` and `data-max` (the extremes of the finite values drawn,
//! formatted so they parse back to the same `f64`; absent when there is none), so a page
//! test can find a series and check what it shows.
//!
//! Coordinates are rounded to a tenth of a unit of the `viewBox`, which is enough at any
//! size the chart scales to and keeps the markup small.

use std::fmt::Write as _;

use maud::{Markup, html};

/// One series to draw: `values[i]` at `steps[i]`. Extra entries of the longer slice are
/// ignored.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub name: &'a str,
    pub steps: &'a [i64],
    pub values: &'a [f64],
}

/// An SVG line chart (steps on x), several lines overlaid, with a legend; each line's
/// element carries data-series, data-min and data-max (the extremes of the finite values drawn).
pub fn render(title: &str, lines: &[Line<'_>]) -> Markup {
    let series: Vec<Series<'_>> = lines.iter().map(Series::new).collect();
    let y = y_axis(&series);
    let x = x_axis(&series);

    let y_labels: Vec<(f64, String)> = y.ticks.iter().map(|&tick| (tick, y.label(tick))).collect();
    let widest = y_labels
        .iter()
        .map(|(_, label)| label.chars().count())
        .max()
        .unwrap_or(1);
    let left = (10.0 + CHAR_WIDTH * widest as f64).clamp(36.0, 150.0);
    let frame = Frame {
        left,
        top: TOP,
        width: WIDTH - left - RIGHT,
        height: PLOT_HEIGHT,
        x: (x.lo, x.hi),
        y: (y.lo, y.hi),
    };
    let legend = legend_layout(&series, left);
    let legend_top = TOP + PLOT_HEIGHT + X_AXIS_SPACE;
    let total_height = legend_top + legend.rows as f64 * LEGEND_ROW + 4.0;
    let bottom = TOP + PLOT_HEIGHT;
    let drawn = series.iter().any(|series| series.extremes.is_some());

    html! {
        figure.chart {
            figcaption { (title) }
            svg xmlns="http://www.w3.org/2000/svg"
                viewBox={ "0 0 " (num(WIDTH)) " " (num(total_height)) }
                font-family="sans-serif" font-size=(num(FONT)) {
                title { (title) }
                desc { (description(&series)) }
                g.grid stroke="#e6e6e6" stroke-width="1" {
                    @for &(tick, _) in &y_labels {
                        line x1=(num(left)) x2=(num(WIDTH - RIGHT))
                            y1=(num(frame.y(tick))) y2=(num(frame.y(tick))) {}
                    }
                }
                g.axes stroke="#888" stroke-width="1" fill="none" {
                    path d={ "M" (num(left)) "," (num(TOP)) "V" (num(bottom)) "H" (num(WIDTH - RIGHT)) } {}
                }
                g.y-ticks fill="#555" text-anchor="end" {
                    @for (tick, label) in &y_labels {
                        text x=(num(left - 5.0)) y=(num(frame.y(*tick) + FONT / 3.0)) { (label) }
                    }
                }
                g.x-ticks fill="#555" text-anchor="middle" {
                    @for &tick in &x.ticks {
                        line x1=(num(frame.x(tick))) x2=(num(frame.x(tick)))
                            y1=(num(bottom)) y2=(num(bottom + 4.0)) stroke="#888" {}
                        text x=(num(frame.x(tick))) y=(num(bottom + 6.0 + FONT)) { (x.label(tick)) }
                    }
                }
                @if !drawn {
                    text.empty x=(num(left + frame.width / 2.0)) y=(num(TOP + PLOT_HEIGHT / 2.0))
                        text-anchor="middle" fill="#888" { "No data" }
                }
                g.lines fill="none" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round" {
                    @for (index, series) in series.iter().enumerate() {
                        path.series d=(series.path(&frame))
                            stroke=(colour(index)) stroke-dasharray=[dashes(index)]
                            data-series=(series.name)
                            data-min=[series.extremes.map(|(min, _)| exact(min))]
                            data-max=[series.extremes.map(|(_, max)| exact(max))]
                            data-gaps=[(series.not_finite > 0).then_some(series.not_finite)] {
                            title { (series.name) }
                        }
                    }
                }
                @if series.iter().any(|series| !series.gaps.is_empty()) {
                    g.gaps fill-opacity="0.7" {
                        @for (index, series) in series.iter().enumerate() {
                            @for gap in &series.gaps {
                                @let (from, to) = (frame.x(gap.from as f64), frame.x(gap.to as f64));
                                rect x=(num(from - 1.5)) y=(num(bottom - 4.0))
                                    width=(num(to - from + 3.0)) height="4" fill=(colour(index)) {
                                    title { (gap.describe(series.name)) }
                                }
                            }
                        }
                    }
                }
                g.legend fill="#333" {
                    @for (index, item) in legend.items.iter().enumerate() {
                        @let y = legend_top + item.row as f64 * LEGEND_ROW;
                        g {
                            title { (series[index].name) }
                            line x1=(num(item.x)) x2=(num(item.x + LEGEND_SWATCH))
                                y1=(num(y - FONT / 3.0)) y2=(num(y - FONT / 3.0))
                                stroke=(colour(index)) stroke-width="3" stroke-dasharray=[dashes(index)] {}
                            text x=(num(item.x + LEGEND_SWATCH + 4.0)) y=(num(y)) { (item.label) }
                        }
                    }
                }
            }
        }
    }
}

// Layout, in viewBox units (pixels at the natural size).
const WIDTH: f64 = 600.0;
const TOP: f64 = 10.0;
const RIGHT: f64 = 16.0;
const PLOT_HEIGHT: f64 = 260.0;
/// Under the plot: x tick labels, then the legend.
const X_AXIS_SPACE: f64 = 38.0;
const LEGEND_ROW: f64 = 18.0;
const LEGEND_SWATCH: f64 = 18.0;
const LEGEND_NAME_CHARS: usize = 40;
const FONT: f64 = 11.0;
/// The average advance of a character at `FONT`, to lay out text the browser measures.
const CHAR_WIDTH: f64 = 6.3;

/// Distinct colours (Tableau 10), cycled; each further cycle changes the dash pattern.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const DASHES: [&str; 3] = ["", "6 3", "2 3"];

fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

fn dashes(index: usize) -> Option<&'static str> {
    Some(DASHES[(index / PALETTE.len()) % DASHES.len()]).filter(|dash| !dash.is_empty())
}

/// One line, checked: its points, the extremes of its finite values, its gaps.
struct Series<'a> {
    name: &'a str,
    points: Vec<(i64, f64)>,
    extremes: Option<(f64, f64)>,
    gaps: Vec<Gap>,
    not_finite: usize,
}

/// Drawn from a point with no neighbour to join: a diamond around it, back to the point.
const LONE_POINT: &str = "m-2.5,0l2.5,-2.5 2.5,2.5 -2.5,2.5zm2.5,0";

/// A run of consecutive points whose values are not finite.
struct Gap {
    from: i64,
    to: i64,
    count: usize,
}

impl Gap {
    fn describe(&self, series: &str) -> String {
        let values = if self.count == 1 { "value" } else { "values" };
        if self.from == self.to {
            format!("{series}: no finite value at step {}", self.from)
        } else {
            format!(
                "{series}: {} {values} not finite, steps {} to {}",
                self.count, self.from, self.to
            )
        }
    }
}

impl<'a> Series<'a> {
    fn new(line: &Line<'a>) -> Self {
        let points: Vec<(i64, f64)> = line
            .steps
            .iter()
            .copied()
            .zip(line.values.iter().copied())
            .collect();
        let mut extremes: Option<(f64, f64)> = None;
        let mut gaps: Vec<Gap> = Vec::new();
        let mut in_gap = false;
        for &(step, value) in &points {
            if value.is_finite() {
                extremes = Some(match extremes {
                    None => (value, value),
                    Some((min, max)) => (min.min(value), max.max(value)),
                });
                in_gap = false;
            } else {
                match gaps.last_mut() {
                    Some(gap) if in_gap => {
                        gap.to = step;
                        gap.count += 1;
                    }
                    _ => gaps.push(Gap {
                        from: step,
                        to: step,
                        count: 1,
                    }),
                }
                in_gap = true;
            }
        }
        let not_finite = gaps.iter().map(|gap| gap.count).sum();
        Self {
            name: line.name,
            points,
            extremes,
            gaps,
            not_finite,
        }
    }

    /// Path data: one subpath per run of finite values. A run of one point, which
    /// would be an invisible line, is drawn as a small diamond around it.
    fn path(&self, frame: &Frame) -> String {
        let mut d = String::new();
        let mut run = 0;
        for &(step, value) in &self.points {
            if !value.is_finite() {
                if run == 1 {
                    d.push_str(LONE_POINT);
                }
                run = 0;
                continue;
            }
            let (x, y) = (frame.x(step as f64), frame.y(value));
            let command = match run {
                0 => "M",
                1 => "L",
                _ => " ",
            };
            let _ = write!(d, "{command}{},{}", num(x), num(y));
            run += 1;
        }
        if run == 1 {
            d.push_str(LONE_POINT);
        }
        d
    }
}

fn description(series: &[Series<'_>]) -> String {
    let points: usize = series.iter().map(|series| series.points.len()).sum();
    let lines = if series.len() == 1 { "line" } else { "lines" };
    format!("{} {lines}, {points} points", series.len())
}

/// Maps data to viewBox coordinates.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn x(&self, step: f64) -> f64 {
        self.left + self.width * fraction(step, self.x)
    }

    fn y(&self, value: f64) -> f64 {
        self.top + self.height * (1.0 - fraction(value, self.y))
    }
}

/// Where `value` lies in `lo..hi`, from 0 to 1, computed on halves so that neither the
/// difference nor the span overflows for any finite inputs.
fn fraction(value: f64, (lo, hi): (f64, f64)) -> f64 {
    let span = hi / 2.0 - lo / 2.0;
    if span > 0.0 {
        ((value / 2.0 - lo / 2.0) / span).clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// An axis: its domain, its ticks and how they read.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Decimals for the tick labels, or `None` for scientific notation.
    decimals: Option<usize>,
}

impl Axis {
    fn label(&self, tick: f64) -> String {
        // Adding zero turns -0 into 0.
        let tick = tick + 0.0;
        match self.decimals {
            Some(decimals) => format!("{tick:.decimals$}"),
            None => format!("{tick:e}"),
        }
    }
}

/// The y axis: every finite value with a little room around it, widened to whole ticks.
fn y_axis(series: &[Series<'_>]) -> Axis {
    let extremes = series
        .iter()
        .filter_map(|series| series.extremes)
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
    let Some((min, max)) = extremes else {
        return Axis {
            lo: 0.0,
            hi: 1.0,
            ticks: vec![0.0, 0.5, 1.0],
            decimals: Some(1),
        };
    };
    let (lo, hi) = padded(min, max);
    let Some(step) = NiceStep::for_range(lo, hi, 5) else {
        return fallback_axis(lo, hi);
    };
    // Out to whole ticks, when that stays finite.
    let lo = Some(step.value((lo / step.size()).floor()))
        .filter(|v| v.is_finite() && *v <= lo)
        .unwrap_or(lo);
    let hi = Some(step.value((hi / step.size()).ceil()))
        .filter(|v| v.is_finite() && *v >= hi)
        .unwrap_or(hi);
    let Some(ticks) = step.ticks(lo, hi) else {
        return fallback_axis(lo, hi);
    };
    let largest = lo.abs().max(hi.abs());
    let decimals = (largest < 1e7 && step.size() >= 1e-4).then(|| step.decimals());
    Axis {
        lo,
        hi,
        ticks,
        decimals,
    }
}

/// `min..max` with some room on both sides; a flat line gets room proportional to its
/// value (or 1 around zero).
fn padded(min: f64, max: f64) -> (f64, f64) {
    let half_span = max / 2.0 - min / 2.0;
    let (lo, hi) = if half_span > 0.0 {
        let pad = half_span * 0.1;
        (min - pad, max + pad)
    } else {
        let pad = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
        (min - pad, max + pad)
    };
    let (lo, hi) = (lo.max(f64::MIN), hi.min(f64::MAX));
    if hi > lo {
        (lo, hi)
    } else {
        // Only for values so small that a tenth of them is zero.
        (min - 1.0, max + 1.0)
    }
}

/// Just the two ends, for ranges no nice step can divide (beyond f64's precision).
fn fallback_axis(lo: f64, hi: f64) -> Axis {
    Axis {
        lo,
        hi,
        ticks: vec![lo, hi],
        decimals: None,
    }
}

/// The x axis: the steps of every point given, ticks on whole steps inside it.
fn x_axis(series: &[Series<'_>]) -> Axis {
    let range = series
        .iter()
        .flat_map(|series| series.points.iter().map(|&(step, _)| step))
        .fold(None, |range: Option<(i64, i64)>, step| {
            Some(range.map_or((step, step), |(lo, hi)| (lo.min(step), hi.max(step))))
        });
    let (lo, hi) = match range {
        None => (0.0, 1.0),
        Some((lo, hi)) if lo == hi => (lo as f64 - 1.0, hi as f64 + 1.0),
        Some((lo, hi)) => (lo as f64, hi as f64),
    };
    let step = NiceStep::for_range(lo, hi, 6).map(NiceStep::whole);
    let ticks = step.and_then(|step| step.ticks(lo, hi));
    let decimals = (lo.abs().max(hi.abs()) < 1e7).then_some(0);
    Axis {
        lo,
        hi,
        ticks: ticks.unwrap_or_else(|| vec![lo, hi]),
        decimals,
    }
}

/// A tick spacing of 1, 2 or 5 times a power of ten.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NiceStep {
    mantissa: u8,
    exponent: i32,
}

/// Never more ticks than this on an axis, whatever rounding does.
const MAX_TICKS: usize = 15;

impl NiceStep {
    /// The nice step that cuts `lo..hi` into about `count` parts.
    fn for_range(lo: f64, hi: f64, count: u32) -> Option<Self> {
        let raw = hi / f64::from(count) - lo / f64::from(count);
        if !(raw.is_finite() && raw > 0.0) {
            return None;
        }
        let mut exponent = raw.log10().floor() as i32;
        // log10 can land one off near powers of ten.
        if pow10(exponent) > raw {
            exponent -= 1;
        }
        let normalised = raw / pow10(exponent);
        let (mantissa, exponent) = match normalised {
            n if n < 1.5 => (1, exponent),
            n if n < 3.0 => (2, exponent),
            n if n < 7.0 => (5, exponent),
            _ => (1, exponent + 1),
        };
        let step = Self { mantissa, exponent };
        (-300..=300)
            .contains(&exponent)
            .then_some(step)
            .filter(|step| step.size() > 0.0 && step.size().is_finite())
    }

    /// At least 1: steps are whole numbers.
    fn whole(self) -> Self {
        if self.exponent < 0 {
            Self {
                mantissa: 1,
                exponent: 0,
            }
        } else {
            self
        }
    }

    fn size(self) -> f64 {
        self.value(1.0)
    }

    /// `multiple` times the step, computed so that 3 × 0.1 is 0.3 (not 0.30000000000000004).
    fn value(self, multiple: f64) -> f64 {
        let scaled = multiple * f64::from(self.mantissa);
        if self.exponent >= 0 {
            scaled * pow10(self.exponent)
        } else {
            scaled / pow10(-self.exponent)
        }
    }

    fn decimals(self) -> usize {
        usize::try_from(-self.exponent).unwrap_or(0)
    }

    /// The multiples of the step within `lo..=hi`, or `None` when there would be too
    /// many or none (a range too narrow for f64 to tell its ticks apart).
    fn ticks(self, lo: f64, hi: f64) -> Option<Vec<f64>> {
        let size = self.size();
        // A little slack: an end that is a multiple of the step may divide to 6.9999999.
        let (first, last) = ((lo / size - 1e-9).ceil(), (hi / size + 1e-9).floor());
        let count = last - first + 1.0;
        if !(1.0..=MAX_TICKS as f64).contains(&count) {
            return None;
        }
        let ticks: Vec<f64> = (0..count as usize)
            .map(|i| self.value(first + i as f64))
            .collect();
        ticks
            .windows(2)
            .all(|pair| pair[0] < pair[1])
            .then_some(ticks)
    }
}

fn pow10(exponent: i32) -> f64 {
    10f64.powi(exponent)
}

/// A coordinate rounded to one decimal, without a trailing `.0` or a `-0`.
fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0 + 0.0;
    format!("{rounded}")
}

/// A value exactly, as the shortest text that parses back to it: plain for everyday
/// magnitudes, scientific otherwise (`{}` alone would write 1e300 with 300 digits).
fn exact(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-5..1e16).contains(&magnitude) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

struct Legend {
    items: Vec<LegendItem>,
    rows: usize,
}

struct LegendItem {
    x: f64,
    row: usize,
    label: String,
}

/// Legend entries left to right, wrapping into rows under the plot. Long names are cut
/// (the entry's `<title>` has the whole name).
fn legend_layout(series: &[Series<'_>], left: f64) -> Legend {
    let mut items = Vec::with_capacity(series.len());
    let (mut x, mut row) = (left, 0);
    for series in series {
        let mut label: String = series.name.chars().take(LEGEND_NAME_CHARS).collect();
        if label.len() < series.name.len() {
            label.push('…');
        }
        let width = LEGEND_SWATCH + 4.0 + CHAR_WIDTH * label.chars().count() as f64 + 16.0;
        if x > left && x + width > WIDTH - RIGHT {
            x = left;
            row += 1;
        }
        items.push(LegendItem { x, row, label });
        x += width;
    }
    let rows = if series.is_empty() { 0 } else { row + 1 };
    Legend { items, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: &[Line<'_>]) -> String {
        render("Loss", lines).into_string()
    }

    /// The opening tag of the series' path.
    fn path_tag<'a>(svg: &'a str, series: &str) -> &'a str {
        let at = svg
            .find(&format!("data-series=\"{series}\""))
            .unwrap_or_else(|| panic!("no path for {series} in {svg}"));
        let start = svg[..at].rfind('<').expect("tag start");
        let end = at + svg[at..].find('>').expect("tag end");
        &svg[start..=end]
    }

    fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[at..at + tag[at..].find('"')?])
    }

    fn assert_no_bad_numbers(svg: &str) {
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
    }

    #[test]
    fn each_line_carries_the_extremes_of_its_finite_values() {
        let steps = [0, 1, 2, 3, 4, 5];
        let loss = [0.9, 0.5, 17.25, f64::NAN, -0.1 - 0.2, 0.25];
        let accuracy = [1e-300, 2.5e300, 3.0, 4.0, 5.0, 6.0];
        let svg = chart(&[
            Line {
                name: "train/loss",
                steps: &steps,
                values: &loss,
            },
            Line {
                name: "accuracy",
                steps: &steps,
                values: &accuracy,
            },
        ]);
        let loss = path_tag(&svg, "train/loss");
        let min: f64 = attribute(loss, "data-min").unwrap().parse().unwrap();
        let max: f64 = attribute(loss, "data-max").unwrap().parse().unwrap();
        assert_eq!(min.to_bits(), (-0.1f64 - 0.2).to_bits());
        assert_eq!(max, 17.25);
        let accuracy = path_tag(&svg, "accuracy");
        assert_eq!(attribute(accuracy, "data-min"), Some("1e-300"));
        assert_eq!(attribute(accuracy, "data-max"), Some("2.5e300"));
        // Distinct colours for the two lines.
        assert_ne!(attribute(loss, "stroke"), attribute(accuracy, "stroke"));
        assert_no_bad_numbers(&svg);
    }

    #[test]
    fn non_finite_values_split_the_line_into_segments_and_are_marked_as_gaps() {
        let steps = [0, 1, 2, 3, 4, 5, 6, 7];
        let values = [
            1.0,
            2.0,
            f64::NAN,
            f64::INFINITY,
            3.0,
            4.0,
            f64::NEG_INFINITY,
            5.0,
        ];
        let svg = chart(&[Line {
            name: "loss",
            steps: &steps,
            values: &values,
        }]);
        let tag = path_tag(&svg, "loss");
        let d = attribute(tag, "d").unwrap();
        assert_eq!(d.matches('M').count(), 3, "three segments: {d}");
        // The last segment is a single point, drawn as a mark around it.
        assert!(d.ends_with(LONE_POINT), "{d}");
        assert_eq!(attribute(tag, "data-gaps"), Some("3"));
        assert_eq!(attribute(tag, "data-min"), Some("1"));
        assert_eq!(attribute(tag, "data-max"), Some("5"));
        assert_eq!(svg.matches("<rect").count(), 2, "two gaps marked: {svg}");
        assert!(
            svg.contains("loss: 2 values not finite, steps 2 to 3"),
            "{svg}"
        );
        assert!(svg.contains("loss: no finite value at step 6"), "{svg}");
        assert_no_bad_numbers(&svg);
    }

    #[test]
    fn a_line_with_no_finite_value_draws_nothing_and_has_no_extremes() {
        let svg = chart(&[Line {
            name: "diverged",
            steps: &[1, 2],
            values: &[f64::NAN, f64::INFINITY],
        }]);
        let tag = path_tag(&svg, "diverged");
        assert_eq!(attribute(tag, "d"), Some(""));
        assert_eq!(attribute(tag, "data-min"), None);
        assert!(svg.contains("No data"), "{svg}");
        assert_no_bad_numbers(&svg);
    }

    #[test]
    fn text_from_the_caller_is_escaped() {
        let name = "<script>alert(1)</script>";
        let svg = render(
            "<b>\"title\"</b>",
            &[Line {
                name,
                steps: &[1],
                values: &[1.0],
            }],
        )
        .into_string();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{svg}"
        );
        assert!(
            svg.contains("data-series=\"&lt;script&gt;alert(1)&lt;/script&gt;\""),
            "{svg}"
        );
        assert!(
            svg.contains("&lt;b&gt;&quot;title&quot;&lt;/b&gt;"),
            "{svg}"
        );
    }

    #[test]
    fn a_flat_line_and_a_single_point_render_without_nan_coordinates() {
        for values in [
            &[3.0, 3.0, 3.0][..],
            &[0.0, 0.0, 0.0],
            &[-2e-320, -2e-320, -2e-320],
        ] {
            let svg = chart(&[Line {
                name: "flat",
                steps: &[10, 20, 30],
                values,
            }]);
            assert_no_bad_numbers(&svg);
            let d = attribute(path_tag(&svg, "flat"), "d").unwrap().to_owned();
            assert_eq!(d.matches('M').count(), 1, "{d}");
            // Drawn across the plot at one height.
            let ys: Vec<&str> = d
                .split(['M', 'L', ' '])
                .filter(|point| !point.is_empty())
                .map(|point| point.split(',').nth(1).unwrap())
                .collect();
            assert_eq!(ys.len(), 3);
            assert!(ys.iter().all(|y| *y == ys[0]), "{d}");
        }
        let svg = chart(&[Line {
            name: "once",
            steps: &[7],
            values: &[-4.5],
        }]);
        assert_no_bad_numbers(&svg);
        let d = attribute(path_tag(&svg, "once"), "d").unwrap();
        assert!(d.starts_with('M') && d.ends_with(LONE_POINT), "{d}");
        // The x axis around a single step reads in whole steps.
        assert!(svg.contains(">7</text>"), "{svg}");
        assert!(!svg.contains(">6.5</text>"), "{svg}");
    }

    #[test]
    fn huge_tiny_and_negative_magnitudes_stay_inside_the_plot() {
        for values in [
            &[-f64::MAX, f64::MAX][..],
            &[1e-12, 3e-12],
            &[-5.0, -1.0],
            &[1e9 + 0.001, 1e9 + 0.002],
        ] {
            let svg = chart(&[Line {
                name: "x",
                steps: &[0, i64::MAX],
                values,
            }]);
            assert_no_bad_numbers(&svg);
            let d = attribute(path_tag(&svg, "x"), "d").unwrap();
            for coordinate in d.split(['M', 'L', ' ', ',']).filter(|c| !c.is_empty()) {
                let coordinate: f64 = coordinate.parse().unwrap();
                assert!(
                    (0.0..=WIDTH).contains(&coordinate),
                    "{coordinate} outside the chart: {d}"
                );
            }
        }
    }

    #[test]
    fn ticks_are_nice_numbers() {
        for (lo, hi) in [
            (0.0, 1.0),
            (0.0, 0.3),
            (-3.7, 12.2),
            (0.93, 0.97),
            (1e-9, 7e-9),
            (-2.5e12, 1.1e13),
            (0.0, 1e6),
            (12345.0, 12399.0),
        ] {
            let step = NiceStep::for_range(lo, hi, 5).unwrap();
            assert!([1, 2, 5].contains(&step.mantissa), "{step:?}");
            let ticks = step.ticks(lo, hi).unwrap();
            assert!((3..=11).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            for tick in &ticks {
                let slack = step.size() * 1e-6;
                assert!(
                    (lo - slack..=hi + slack).contains(tick),
                    "{tick} outside {lo}..{hi}"
                );
                let multiple = tick / step.size();
                assert!(
                    (multiple - multiple.round()).abs() < 1e-6,
                    "{tick} is not a multiple of {}",
                    step.size()
                );
            }
        }
        // Labels read as short decimals, not float noise.
        let svg = chart(&[Line {
            name: "loss",
            steps: &[0, 1, 2, 3],
            values: &[0.1, 0.2, 0.3, 0.7],
        }]);
        for label in ["0.1", "0.3", "0.5", "0.7"] {
            assert!(
                svg.contains(&format!(">{label}</text>")),
                "{label} in {svg}"
            );
        }
        assert!(!svg.contains("0000000"), "{svg}");
        // The y axis ends on ticks, however the division rounds.
        let svg = chart(&[Line {
            name: "lr",
            steps: &[0, 1000, 2000],
            values: &[1e-9, 3e-9, 2e-9],
        }]);
        for label in ["5e-10", "1e-9", "3e-9", "3.5e-9"] {
            assert!(
                svg.contains(&format!(">{label}</text>")),
                "{label} in {svg}"
            );
        }
        // Steps tick at whole numbers.
        let step = NiceStep::for_range(0.0, 3.0, 6).unwrap().whole();
        assert_eq!(step.ticks(0.0, 3.0).unwrap(), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn many_lines_cycle_the_palette_with_other_dashes_and_wrap_the_legend() {
        let names: Vec<String> = (0..12).map(|i| format!("metric/{i}")).collect();
        let lines: Vec<Line<'_>> = names
            .iter()
            .map(|name| Line {
                name,
                steps: &[0, 1],
                values: &[0.0, 1.0],
            })
            .collect();
        let svg = chart(&lines);
        let first = path_tag(&svg, "metric/0");
        let eleventh = path_tag(&svg, "metric/10");
        assert_eq!(attribute(first, "stroke"), attribute(eleventh, "stroke"));
        assert_eq!(attribute(first, "stroke-dasharray"), None);
        assert_eq!(attribute(eleventh, "stroke-dasharray"), Some("6 3"));
        assert!(svg.contains("viewBox=\"0 0 600 "), "{svg}");
        assert!(svg.contains("<title>Loss</title>"), "{svg}");
        assert!(svg.contains("<figcaption>Loss</figcaption>"), "{svg}");
    }
}
