//! `/compare?run=a&run=b...`: runs side by side: one chart per metric with a line per
//! run, and the params table with the rows that differ marked.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::RawQuery;
use axum::http::StatusCode;
use futures::{StreamExt, TryStreamExt};
use maud::html;
use sextant_domain::runs::RunRecord;
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::series::Points;
use sextant_domain::tenancy::Tenant;
use sextant_edge::error::ApiResult;
use sextant_edge::state::AppState;

use super::chart::{self, Line};
use super::layout::{Section, respond};
use super::projects::param_text;
use super::runs::{CHART_POINTS, chart_points};
use super::security::SignedIn;
use super::{PageError, PageResult};
use crate::runs::{compared_ids, load_compared, param_rows};

/// Points each run's line is drawn from: fewer than on a run's page, as a chart may
/// hold many runs.
const COMPARE_POINTS: usize = CHART_POINTS / 2;
const READS_AT_ONCE: usize = 8;

/// Legend names: run names, with the run's number where two runs share a name.
fn labels(records: &[RunRecord]) -> Vec<String> {
    records
        .iter()
        .map(|run| {
            let shared = records
                .iter()
                .filter(|other| other.name == run.name)
                .count()
                > 1;
            if shared {
                format!("{} #{}", run.name, run.number)
            } else {
                run.name.clone()
            }
        })
        .collect()
}

/// One run's line of a metric's chart, keyed by metric and the run's place.
async fn run_points<'a>(
    state: &AppState,
    tenant: &Tenant,
    run: &RunRecord,
    metric: &'a str,
    index: usize,
) -> ApiResult<((&'a str, usize), Points)> {
    let (_, points) = chart_points(state, tenant, run, metric, COMPARE_POINTS).await?;
    Ok(((metric, index), points))
}

/// `GET /compare`.
pub async fn page(SignedIn(page, user): SignedIn, RawQuery(raw): RawQuery) -> PageResult {
    let tenant = &user.caller.tenant;
    let wanted: Vec<String> = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "run")
        .map(|(_, value)| value.into_owned())
        .collect();
    let ids = compared_ids(wanted.iter().map(String::as_str)).map_err(|err| {
        PageError::Status(
            StatusCode::BAD_REQUEST,
            format!(
                "Select runs to compare in a project's run table ({}).",
                err.message()
            ),
        )
    })?;
    let records = load_compared(&page.state, tenant, &ids).await?;
    let labels = labels(&records);
    let refs: Vec<&RunRecord> = records.iter().collect();
    let params = param_rows(&refs);
    let metrics: BTreeSet<&str> = records
        .iter()
        .flat_map(|run| run.series.iter())
        .filter(|(_, summary)| summary.kind == SeriesKind::Numeric)
        .map(|(name, _)| name.as_str())
        .collect();
    let wanted_reads: Vec<(&str, usize)> = metrics
        .iter()
        .flat_map(|&metric| {
            records
                .iter()
                .enumerate()
                .filter(move |(_, run)| run.series.contains_key(metric))
                .map(move |(index, _)| (metric, index))
        })
        .collect();
    let state = &page.state;
    let reads: Vec<_> = wanted_reads
        .iter()
        .map(|&(metric, index)| run_points(state, tenant, &records[index], metric, index))
        .collect();
    let reads: Vec<_> = futures::stream::iter(reads)
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    let points: BTreeMap<(&str, usize), _> = reads.into_iter().collect();
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;
    let body = html! {
        h1 { "Compare " (records.len()) " runs" }
        div.table-scroll {
            table #compared {
                thead { tr { th { "Run" } th { "Status" } th { "Tags" } } }
                tbody {
                    @for (run, label) in records.iter().zip(&labels) {
                        tr data-run-id=(run.id) {
                            td { a.run-link href={ "/runs/" (run.id) } { (label) } }
                            td { span.status { (run.status_at(now, timeout).to_string()) } }
                            td.tags { @for tag in &run.tags { span.tag { (tag) } " " } }
                        }
                    }
                }
            }
        }
        h2 { "Parameters" }
        div.table-scroll {
            table #params {
                thead {
                    tr {
                        th { "Parameter" }
                        @for label in &labels { th { (label) } }
                    }
                }
                tbody {
                    @for (name, row) in &params {
                        tr.differs[row.differs] data-param=(name) {
                            th scope="row" { (name) }
                            @for value in &row.values {
                                td { @if let Some(value) = value { (param_text(value)) } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
            }
        }
        @if params.is_empty() { p.empty { "None of these runs has parameters." } }
        h2 { "Metrics" }
        div.charts {
            @for metric in &metrics {
                @let lines: Vec<Line<'_>> = (0..records.len()).filter_map(|index| {
                    points.get(&(*metric, index)).map(|p| Line { name: &labels[index], steps: &p.steps, values: &p.values })
                }).collect();
                (chart::render(metric, &lines))
            }
            @if metrics.is_empty() { p.empty { "None of these runs has logged metrics." } }
        }
    };
    Ok(respond(
        &page,
        StatusCode::OK,
        Section::Projects,
        "Compare runs",
        body,
    ))
}
