//! Metric histories: a numeric series read back as MLflow's metric entries.

use axum::extract::{RawQuery, State};
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_domain::credentials::Caller;
use sextant_domain::error::ErrorCode;
use sextant_domain::floats::JsonF64;
use sextant_domain::ids::RunId;
use sextant_domain::runs;
use sextant_domain::runs::summary::SeriesKind;
use sextant_domain::series::{self, EXACT_PAGE_POINTS, Place, Points, StepRange, Window};
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::Query;
use sextant_edge::state::AppState;

use super::convert;
use super::paging;

/// Runs one bulk-interval request may name, and points per run it returns: MLflow's.
const MAX_RUNS_PER_BULK: usize = 100;
const MAX_RESULTS_PER_RUN: usize = 2_500;

fn entries(
    key: &str,
    points: &Points,
    run: Option<RunId>,
    keep: impl Fn(i64) -> bool,
) -> Vec<Value> {
    (0..points.len())
        .filter(|&i| keep(points.steps[i]))
        .map(|i| {
            let mut entry = json!({
                "key": key,
                "value": JsonF64(points.values[i]),
                "timestamp": (points.timestamps[i] * 1000.0).round() as i64,
                "step": points.steps[i],
            });
            if let Some(run) = run {
                entry["run_id"] = run.to_string().into();
            }
            entry
        })
        .collect()
}

/// Points one run's metric may hold for `get-history-bulk-interval` to sample its steps
/// from; a metric with more is downsampled instead.
const BULK_READ_POINTS: usize = 1_000_000;

/// A numeric series' points in a step range downsampled to `max_points`; none when the
/// run has no such metric.
async fn downsampled(
    state: &AppState,
    caller: &Caller,
    run: RunId,
    key: &str,
    range: StepRange,
    max_points: usize,
) -> ApiResult<Points> {
    let record = runs::load(&state.store, &caller.tenant, run).await?.record;
    if record.series.get(key).map(|summary| summary.kind) != Some(SeriesKind::Numeric) {
        return Ok(Points::default());
    }
    let (points, _) = series::read_downsampled(
        &state.store,
        &caller.tenant,
        &record,
        key,
        range,
        max_points,
    )
    .await?;
    Ok(points)
}

/// A numeric series' points in a step range; none when the run has no such metric.
async fn read(
    state: &AppState,
    caller: &Caller,
    run: RunId,
    key: &str,
    range: StepRange,
    resume: Option<&Place>,
    limit: Option<usize>,
) -> ApiResult<(Points, Option<Place>)> {
    let record = runs::load(&state.store, &caller.tenant, run).await?.record;
    if record.series.get(key).map(|summary| summary.kind) != Some(SeriesKind::Numeric) {
        return Ok((Points::default(), None));
    }
    let page = series::read::<Points>(
        &state.store,
        &caller.tenant,
        &record,
        key,
        Window {
            range,
            after: resume,
            limit,
        },
    )
    .await?;
    Ok((page.points, page.next))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: String,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "convert::int64")]
    max_results: Option<i64>,
}

/// `GET metrics/get-history`: every value logged for a metric, by step then time,
/// paged by `max_results`; the page token is a series cursor (`series::Place`), or,
/// from pages handed out before cursors, the last step read.
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<axum::Json<Value>> {
    let run = runs::parse_id(
        query
            .run_id
            .as_deref()
            .or(query.run_uuid.as_deref())
            .ok_or_else(|| ApiError::new(ErrorCode::MissingRunId, "run_id is required"))?,
    )?;
    let limit = match query.max_results {
        None => EXACT_PAGE_POINTS,
        Some(n) if n >= 1 => (n as usize).min(EXACT_PAGE_POINTS),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidMaxResults,
                "max_results is at least 1",
            ));
        }
    };
    let token = query.page_token.filter(|token| !token.is_empty());
    let invalid = || ApiError::new(ErrorCode::InvalidPageToken, "the page token is invalid");
    let (after, resume) = match token {
        None => (None, None),
        Some(token) => match token.parse::<i64>() {
            Ok(step) => (Some(step), None),
            Err(_) => (
                None,
                Some(Place::from_cursor(&token).map_err(|_| invalid())?),
            ),
        },
    };
    let range = StepRange {
        after,
        ..StepRange::default()
    };
    let (points, next) = read(
        &state,
        &caller,
        run,
        &query.metric_key,
        range,
        resume.as_ref(),
        Some(limit),
    )
    .await?;
    let mut answer = json!({ "metrics": entries(&query.metric_key, &points, None, |_| true) });
    if let Some(next) = next {
        answer["next_page_token"] = next.cursor().into();
    }
    Ok(axum::Json(answer))
}

/// At most `max` evenly spaced positions in `0..total`, always the first and the last.
fn evenly_spaced(total: usize, max: usize) -> Vec<usize> {
    if total <= max {
        return (0..total).collect();
    }
    if max == 1 {
        return vec![0];
    }
    let mut positions: Vec<usize> = (0..max)
        .map(|i| (i as f64 * (total - 1) as f64 / (max - 1) as f64).round() as usize)
        .collect();
    positions.dedup();
    positions
}

/// `GET metrics/get-history-bulk-interval`: a metric of several runs sampled at evenly
/// spaced steps (always the first and last in range), for charts of many runs.
pub async fn bulk_interval(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let mut run_ids = Vec::new();
    let (mut key, mut start, mut end, mut max_results) = (None, None, None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "run_ids" => run_ids.push(runs::parse_id(&value)?),
            "metric_key" => key = Some(value.into_owned()),
            "start_step" => start = Some(paging::parse_int(&value)?),
            "end_step" => end = Some(paging::parse_int(&value)?),
            "max_results" => max_results = Some(paging::parse_int(&value)?),
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("unknown parameter {other:?}"),
                ));
            }
        }
    }
    let invalid = |message: String| Err(ApiError::new(ErrorCode::InvalidQuery, message));
    let Some(key) = key else {
        return invalid("metric_key is required".into());
    };
    if run_ids.is_empty() || run_ids.len() > MAX_RUNS_PER_BULK {
        return invalid(format!("give 1 to {MAX_RUNS_PER_BULK} run_ids"));
    }
    let max_results = match max_results {
        None => MAX_RESULTS_PER_RUN,
        Some(n) if (1..=MAX_RESULTS_PER_RUN as i64).contains(&n) => n as usize,
        Some(_) => return invalid(format!("max_results is 1 to {MAX_RESULTS_PER_RUN}")),
    };
    let range = match (start, end) {
        (None, None) => StepRange::default(),
        (Some(from), Some(to)) if from <= to => StepRange {
            from: Some(from),
            to: Some(to),
            after: None,
        },
        (Some(_), Some(_)) => return invalid("end_step is at least start_step".into()),
        _ => return invalid("give both start_step and end_step, or neither".into()),
    };
    let mut metrics = Vec::new();
    for run in run_ids {
        let (mut points, more) = read(
            &state,
            &caller,
            run,
            &key,
            range,
            None,
            Some(BULK_READ_POINTS),
        )
        .await?;
        if more.is_some() {
            // Too many points to sample by step in memory: each bucket's extremes
            // instead, which keep the chart's shape.
            points = downsampled(&state, &caller, run, &key, range, max_results).await?;
        }
        let mut steps = points.steps.clone();
        steps.dedup();
        let sampled: std::collections::BTreeSet<i64> = evenly_spaced(steps.len(), max_results)
            .into_iter()
            .map(|i| steps[i])
            .collect();
        let mut run_entries = entries(&key, &points, Some(run), |step| sampled.contains(&step));
        run_entries.truncate(max_results);
        metrics.extend(run_entries);
    }
    Ok(axum::Json(json!({ "metrics": metrics })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_the_first_and_last_step_and_at_most_the_maximum() {
        assert_eq!(evenly_spaced(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(evenly_spaced(101, 3), vec![0, 50, 100]);
        assert_eq!(evenly_spaced(10, 1), vec![0]);
        let many = evenly_spaced(10_000, 2_500);
        assert_eq!(many.len(), 2_500);
        assert_eq!((many[0], many[2_499]), (0, 9_999));
    }
}
