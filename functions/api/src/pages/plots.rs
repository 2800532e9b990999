//! The frame of the interactive charts (`static/charts.js`, drawn with the vendored
//! uPlot) that the run page, the shared run page and the project workspace share: the
//! spec the script reads, the view controls and the empty figures it draws into. The
//! points come from `points.rs`.

use std::collections::{BTreeMap, BTreeSet};

use maud::{Markup, PreEscaped, html};
use serde::Serialize;
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::runs::{RunRecord, Status};

use super::projects::param_text;

/// Whether the charts are a run's (a line a series) or a workspace's (a line a run).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Run,
    Workspace,
}

/// A run as the charts know it: enough to name, colour and group its lines.
#[derive(Debug, Serialize)]
pub struct ChartRun<'a> {
    id: String,
    name: &'a str,
    /// Its number in the project: what its colour is made from, so it keeps it.
    number: u64,
    status: Status,
    params: BTreeMap<&'a str, String>,
    tags: &'a BTreeSet<String>,
    /// Its numeric series: a workspace chart asks only runs that logged its metric.
    series: Vec<&'a str>,
}

impl<'a> ChartRun<'a> {
    pub fn new(run: &'a RunRecord, status: Status) -> Self {
        Self {
            id: run.id.to_string(),
            name: &run.name,
            number: run.number,
            status,
            params: run
                .params
                .iter()
                .map(|(name, value)| (name.as_str(), param_text(value)))
                .collect(),
            tags: &run.tags,
            series: numeric_series(run).collect(),
        }
    }
}

impl<'a> ChartRun<'a> {
    /// Names its lines `name` rather than the run's name (two compared runs may share one).
    pub fn named(self, name: &'a str) -> Self {
        Self { name, ..self }
    }
}

/// A run's numeric series, in name order.
pub fn numeric_series(run: &RunRecord) -> impl Iterator<Item = &str> {
    run.series
        .iter()
        .filter(|(_, summary)| summary.kind == SeriesKind::Numeric)
        .map(|(name, _)| name.as_str())
}

/// One chart: its title and the series it draws (of every run, in a workspace).
#[derive(Debug, Serialize)]
pub struct ChartDef {
    pub title: String,
    pub series: Vec<String>,
}

/// Charts under one heading: a workspace's metrics that share a prefix.
#[derive(Debug)]
pub struct ChartGroup {
    pub label: String,
    /// Drawn only when opened (system metrics), so they cost nothing until wanted.
    pub collapsed: bool,
    pub charts: Vec<ChartDef>,
}

/// What `charts.js` reads from the page.
#[derive(Debug, Serialize)]
struct Spec<'a> {
    mode: Mode,
    /// Where the points come from: `/points`, or a share's `/r/{token}/points`.
    source: &'a str,
    /// Some run is still logging: the charts ask for new points every few seconds.
    live: bool,
    runs: &'a [ChartRun<'a>],
    charts: Vec<&'a ChartDef>,
}

/// The axes the x-axis can show.
pub const X_AXES: [(&str, &str); 3] = [
    ("step", "Step"),
    ("wall", "Wall-clock time"),
    ("relative", "Time since start"),
];

/// The view as the URL states it, read on the server too so that the controls come
/// up as the script will draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewSettings {
    pub smooth: String,
    pub logy: bool,
    pub x: String,
    pub group: String,
    pub hide: String,
}

impl ViewSettings {
    /// The view a page's query states.
    pub fn from_query(raw: Option<&str>) -> Self {
        let mut settings = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            settings.take(&key, &value);
        }
        settings
    }

    /// Takes the view's own keys out of a query's pairs; true when `key` was one.
    pub fn take(&mut self, key: &str, value: &str) -> bool {
        let field = match key {
            "smooth" => &mut self.smooth,
            "x" => &mut self.x,
            "group" => &mut self.group,
            "hide" => &mut self.hide,
            "logy" => {
                self.logy = value == "true";
                return true;
            }
            _ => return false,
        };
        *field = value.to_owned();
        true
    }

    /// The view's keys as hidden fields, kept up to date by the script, so a filter
    /// form submitted keeps the view.
    pub fn hidden_fields(&self) -> Markup {
        let fields = [
            ("smooth", self.smooth.as_str()),
            ("logy", if self.logy { "true" } else { "" }),
            ("x", self.x.as_str()),
            ("group", self.group.as_str()),
            ("hide", self.hide.as_str()),
        ];
        html! {
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value) data-view-setting=(name);
            }
        }
    }
}

/// The controls of the view: smoothing, log scale, x-axis, and in a workspace the
/// grouping (`group_by` lists the choices: `param:NAME`, `tag:KEY`, `tags`).
pub fn controls(settings: &ViewSettings, group_by: Option<&[String]>) -> Markup {
    let smooth: f64 = settings.smooth.parse().unwrap_or(0.0);
    html! {
        div #chart-controls .chart-controls role="group" aria-label="Chart view" {
            label title="Exponential moving average over steps, the start debiased; the raw line stays faint behind" {
                "Smoothing "
                input type="range" name="smooth" min="0" max="0.99" step="0.01" value=(smooth);
                output #smooth-value { (format!("{smooth:.2}")) }
            }
            label { input type="checkbox" name="logy" value="true" checked[settings.logy]; " Log scale" }
            label { "X-axis "
                select name="x" {
                    @for (value, text) in X_AXES {
                        option value=(value) selected[settings.x == value] { (text) }
                    }
                }
            }
            @if let Some(choices) = group_by {
                label { "Group by "
                    select name="group" {
                        option value="" selected[settings.group.is_empty()] { "nothing (a line a run)" }
                        @for choice in choices {
                            option value=(choice) selected[settings.group == *choice] { (choice) }
                        }
                    }
                }
            }
            span.muted.chart-help { "Drag to zoom, double-click to reset; click a legend entry to hide or show it." }
        }
    }
}

/// The charts' figures under their headings, the spec and the scripts that draw them.
pub fn charts(
    mode: Mode,
    source: &str,
    live: bool,
    runs: &[ChartRun<'_>],
    groups: &[ChartGroup],
) -> Markup {
    let spec = Spec {
        mode,
        source,
        live,
        runs,
        charts: groups.iter().flat_map(|group| &group.charts).collect(),
    };
    let json = serde_json::to_string(&spec).expect("the chart spec serializes");
    // Figures are numbered across groups, in the spec's order.
    let firsts: Vec<usize> = groups
        .iter()
        .scan(0, |next, group| {
            let first = *next;
            *next += group.charts.len();
            Some(first)
        })
        .collect();
    html! {
        // A data block: `<` escaped so that no name can end it early.
        script #chart-spec type="application/json" { (PreEscaped(json.replace('<', "\\u003c"))) }
        @for (group, first) in groups.iter().zip(firsts) {
            @let body = html! {
                div.charts {
                    @for (offset, chart) in group.charts.iter().enumerate() {
                        figure.chart data-chart=(first + offset) data-title=(chart.title) {
                            figcaption { (chart.title) }
                            div.plot-frame {
                                div.plot {}
                                div.tip hidden {}
                            }
                            div.legend {}
                        }
                    }
                }
            };
            @if groups.len() == 1 && group.label.is_empty() {
                (body)
            } @else {
                details.chart-group open[!group.collapsed] data-group=(group.label) {
                    summary { (group.label) " " span.muted { "(" (group.charts.len()) ")" } }
                    (body)
                }
            }
        }
        link rel="stylesheet" href=(super::UPLOT_CSS.url());
        script src=(super::UPLOT_JS.url()) defer {}
        script src=(super::CHARTS_JS.url()) defer {}
    }
}
