//! `/compare?run=a&run=b...`: runs side by side: one chart per metric with a line per
//! run, and the params table with the rows that differ marked.

use std::collections::BTreeSet;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use maud::html;
use sextant_domain::runs::RunRecord;
use sextant_domain::runs::summary::SeriesKind;

use super::layout::{Section, respond};
use super::plots::{self, ChartDef, ChartGroup, ChartRun, Mode, ViewSettings};
use super::projects::param_text;
use super::runs::is_live;
use super::security::SignedIn;
use super::{PageError, PageResult};
use crate::runs::{compared_ids, load_compared, param_rows};

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

/// `GET /compare`.
pub async fn page(SignedIn(page, user): SignedIn, RawQuery(raw): RawQuery) -> PageResult {
    let settings = ViewSettings::from_query(raw.as_deref());
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
    let state = &page.state;
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;
    let chart_runs: Vec<ChartRun<'_>> = records
        .iter()
        .zip(&labels)
        .map(|(run, label)| ChartRun::new(run, run.status_at(now, timeout)).named(label))
        .collect();
    let live = records
        .iter()
        .any(|run| is_live(run.status_at(now, timeout)));
    let chart_groups = [ChartGroup {
        label: String::new(),
        collapsed: false,
        charts: metrics
            .iter()
            .map(|&metric| ChartDef {
                title: metric.to_owned(),
                series: vec![metric.to_owned()],
            })
            .collect(),
    }];
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
        @if metrics.is_empty() {
            p.empty { "None of these runs has logged metrics." }
        } @else {
            (plots::controls(&settings, None))
            (plots::charts(Mode::Workspace, "/points", live, &chart_runs, &chart_groups))
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
