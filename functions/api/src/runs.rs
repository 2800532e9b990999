use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::{ApiError, ApiResult};
use sextant_shared::floats::JsonF64s;
use sextant_shared::http::{Json, Query};
use sextant_shared::ids::RunId;
use sextant_shared::projects::{self, Project};
use sextant_shared::runs::listing::{self, Filter, Sort};
use sextant_shared::runs::{self, NewRun, ParamValue, RunChanges, RunRecord, Status};
use sextant_shared::series::downsample;
use sextant_shared::series::{
    self, EXACT_PAGE_POINTS, MAX_DOWNSAMPLED_POINTS, Points, SeriesKind, SeriesSummary, StepRange,
    TextPoints,
};
use sextant_shared::state::AppState;
use sextant_shared::tenancy::Tenant;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(
            "/v1/projects/{project}/runs",
            routing::post(create).get(list),
        )
        .route(
            "/v1/runs/{run}",
            routing::get(get).patch(patch).delete(delete),
        )
        .route("/v1/runs/{run}/abort", routing::post(abort))
        .route("/v1/runs/{run}/series", routing::get(list_series))
        // Series names hold slashes (`train/loss`): the rest of the path is the name.
        .route("/v1/runs/{run}/series/{*name}", routing::get(read_series))
        .route("/v1/compare", routing::get(compare))
}

type JsonResponse = ApiResult<axum::Json<Value>>;

pub(crate) fn view(state: &AppState, record: &RunRecord) -> ApiResult<Value> {
    serde_json::to_value(record.view(state, state.now())).map_err(ApiError::internal)
}

pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(project): Path<String>,
    Json(new): Json<NewRun>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let project = projects::find(&state, &caller.tenant, &project).await?;
    let record = runs::create(&state, &caller, &project, new).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&state, &record)?)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> JsonResponse {
    let run = runs::load(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(view(&state, &run.record)?))
}

pub async fn patch(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(changes): Json<RunChanges>,
) -> JsonResponse {
    let record = runs::patch(&state, &caller.tenant, runs::parse_id(&run)?, changes).await?;
    Ok(axum::Json(view(&state, &record)?))
}

pub async fn abort(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> JsonResponse {
    let record = runs::abort(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(view(&state, &record)?))
}

pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> ApiResult<StatusCode> {
    runs::delete(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub(crate) tag: Option<String>,
    /// One status or several, comma-separated.
    pub(crate) status: Option<String>,
    pub(crate) name: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) created_after: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) created_before: Option<OffsetDateTime>,
    pub(crate) sort: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
    /// `true` lists the runs in the trash (deleted through MLflow) instead.
    #[serde(default)]
    pub(crate) trashed: bool,
}

/// One page of a project's run table: every run of the project, and which of them
/// the page shows, in order.
#[derive(Debug)]
pub(crate) struct RunTable {
    pub(crate) runs: Vec<RunRecord>,
    pub(crate) page: listing::Page,
}

impl RunTable {
    pub(crate) fn rows(&self) -> impl Iterator<Item = &RunRecord> {
        self.page.rows.iter().map(|&i| &self.runs[i])
    }
}

/// The run table of a project of the tenant, as `GET /v1/projects/{project}/runs`
/// and the project page show it.
pub(crate) async fn run_table(
    state: &AppState,
    tenant: &Tenant,
    project: &Project,
    params: &ListParams,
) -> ApiResult<RunTable> {
    let limit = params.limit.unwrap_or(listing::DEFAULT_LIMIT);
    if !(1..=listing::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit is 1 to {}", listing::MAX_LIMIT),
        ));
    }
    let sort = params
        .sort
        .as_deref()
        .map(Sort::parse)
        .transpose()?
        .unwrap_or_default();
    let statuses = params
        .status
        .as_deref()
        .map(|list| list.split(',').map(Status::parse).collect())
        .transpose()?
        .unwrap_or_default();
    let filter = Filter {
        tag: params.tag.clone(),
        statuses,
        name: params.name.as_ref().map(|name| name.to_lowercase()),
        created_after: params.created_after,
        created_before: params.created_before,
        trashed: params.trashed,
    };
    let runs = runs::all_in_project(state, tenant, project.id).await?;
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;
    let page = listing::page(
        &runs,
        &filter,
        &sort,
        limit,
        params.cursor.as_deref(),
        |run| run.status_at(now, timeout),
    )?;
    Ok(RunTable { runs, page })
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(params): Query<ListParams>,
) -> JsonResponse {
    let project = projects::find(&state, &caller.tenant, &project).await?;
    let table = run_table(&state, &caller.tenant, &project, &params).await?;
    let now = state.now();
    let rows: Vec<_> = table.rows().map(|run| run.view(&state, now)).collect();
    Ok(axum::Json(json!({
        "runs": rows,
        "next_cursor": table.page.next_cursor,
        "total": table.page.total,
    })))
}

pub async fn list_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> JsonResponse {
    let run = runs::load(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    let series: BTreeMap<_, _> = run
        .record
        .series
        .iter()
        .map(|(name, summary)| (name, summary.info()))
        .collect();
    Ok(axum::Json(json!({ "series": series })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    from: Option<i64>,
    to: Option<i64>,
    after: Option<i64>,
    max_points: Option<usize>,
}

#[derive(Debug, Serialize)]
struct NumericPage<'a> {
    name: &'a str,
    kind: SeriesKind,
    steps: &'a [i64],
    values: JsonF64s<'a>,
    timestamps: &'a [f64],
    next_after: Option<i64>,
    downsampled: bool,
}

#[derive(Debug, Serialize)]
struct TextPage<'a> {
    name: &'a str,
    kind: SeriesKind,
    steps: &'a [i64],
    texts: &'a [String],
    timestamps: &'a [f64],
    next_after: Option<i64>,
}

/// `GET /v1/runs/{run}/series/{name}`: see `series_points`.
pub async fn read_series(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, name)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Response> {
    params.check()?;
    let run = runs::load(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    series_points(&state, &caller.tenant, &run.record, &name, &params).await
}

impl ReadParams {
    /// Refuses what no run could answer, before anything is read.
    pub fn check(&self) -> ApiResult<()> {
        if self
            .max_points
            .is_some_and(|max| !(2..=MAX_DOWNSAMPLED_POINTS).contains(&max))
        {
            return Err(ApiError::invalid(
                "invalid_max_points",
                format!("max_points is 2 to {MAX_DOWNSAMPLED_POINTS}"),
            ));
        }
        Ok(())
    }
}

/// Points of one series of a run the caller may read (its team's, or one shared with
/// it): exact (paged) or, with `max_points`, downsampled so that each bucket's
/// extremes survive. Text series page with `max_points` as page size.
pub async fn series_points(
    state: &AppState,
    tenant: &Tenant,
    run: &RunRecord,
    name: &str,
    params: &ReadParams,
) -> ApiResult<Response> {
    params.check()?;
    let summary = run
        .series
        .get(name)
        .ok_or_else(|| ApiError::not_found("series"))?;
    let range = StepRange {
        from: params.from,
        to: params.to,
        after: params.after,
    };
    match summary.kind {
        SeriesKind::Numeric => {
            let read = numeric_points(
                state,
                tenant,
                run.id,
                name,
                summary,
                range,
                params.max_points,
            )
            .await?;
            Ok(axum::Json(NumericPage {
                name,
                kind: summary.kind,
                steps: &read.points.steps,
                values: JsonF64s(&read.points.values),
                timestamps: &read.points.timestamps,
                next_after: read.next_after,
                downsampled: read.downsampled,
            })
            .into_response())
        }
        SeriesKind::Text => {
            let limit = params
                .max_points
                .unwrap_or(EXACT_PAGE_POINTS)
                .min(EXACT_PAGE_POINTS);
            let mut page = series::read::<TextPoints>(
                state,
                tenant,
                run.id,
                name,
                summary,
                range,
                Some(limit),
            )
            .await?;
            page.limit_text_bytes();
            Ok(axum::Json(TextPage {
                name,
                kind: summary.kind,
                steps: &page.points.steps,
                texts: &page.points.texts,
                timestamps: &page.points.timestamps,
                next_after: page.next_after,
            })
            .into_response())
        }
    }
}

/// Points of a numeric series read for a chart or a client.
#[derive(Debug)]
pub(crate) struct NumericRead {
    pub(crate) points: Points,
    pub(crate) next_after: Option<i64>,
    pub(crate) downsampled: bool,
}

/// The points of a numeric series in `range`: exact (a page of `EXACT_PAGE_POINTS`),
/// or with `max_points` downsampled so every bucket's extremes (and first NaN) survive.
/// Charts on the pages draw what `GET /v1/runs/{run}/series/{name}?max_points=` answers.
pub(crate) async fn numeric_points(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    name: &str,
    summary: &SeriesSummary,
    range: StepRange,
    max_points: Option<usize>,
) -> ApiResult<NumericRead> {
    let limit = max_points.is_none().then_some(EXACT_PAGE_POINTS);
    let page = series::read::<Points>(state, tenant, run, name, summary, range, limit).await?;
    let (points, downsampled) = match max_points {
        Some(max) if page.points.len() > max => (downsample::min_max(&page.points, max), true),
        _ => (page.points, false),
    };
    Ok(NumericRead {
        points,
        next_after: page.next_after,
        downsampled,
    })
}

pub const MAX_COMPARED_RUNS: usize = 50;

/// Parses the runs to compare: 1 to `MAX_COMPARED_RUNS` ids, repeats dropped.
pub(crate) fn compared_ids<'a>(texts: impl IntoIterator<Item = &'a str>) -> ApiResult<Vec<RunId>> {
    let mut ids = Vec::new();
    for text in texts.into_iter().filter(|id| !id.is_empty()) {
        let id = runs::parse_id(text)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if !(1..=MAX_COMPARED_RUNS).contains(&ids.len()) {
        return Err(ApiError::invalid(
            "invalid_runs",
            format!("compare 1 to {MAX_COMPARED_RUNS} runs, comma-separated ids"),
        ));
    }
    Ok(ids)
}

/// The tenant's runs of `ids`, in that order; any missing one is 404.
pub(crate) async fn load_compared(
    state: &AppState,
    tenant: &Tenant,
    ids: &[RunId],
) -> ApiResult<Vec<RunRecord>> {
    let loaded =
        futures::future::try_join_all(ids.iter().map(|&id| runs::load(state, tenant, id))).await?;
    Ok(loaded.into_iter().map(|v| v.record).collect())
}

/// One parameter across compared runs: each run's value, and whether they differ.
pub(crate) struct ParamRow<'a> {
    pub(crate) values: Vec<Option<&'a ParamValue>>,
    pub(crate) differs: bool,
}

/// Every parameter of the compared runs, by name.
pub(crate) fn param_rows<'a>(records: &[&'a RunRecord]) -> BTreeMap<&'a String, ParamRow<'a>> {
    let names: BTreeSet<&String> = records.iter().flat_map(|r| r.params.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let values: Vec<_> = records.iter().map(|r| r.params.get(name)).collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            (name, ParamRow { values, differs })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    runs: String,
}

/// Runs side by side: every parameter with each run's value and whether they
/// differ, and each run's summary of every series.
pub async fn compare(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<CompareParams>,
) -> JsonResponse {
    let ids = compared_ids(params.runs.split(','))?;
    let loaded = load_compared(&state, &caller.tenant, &ids).await?;
    let records: Vec<&RunRecord> = loaded.iter().collect();
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;

    let params: BTreeMap<&String, Value> = param_rows(&records)
        .into_iter()
        .map(|(name, row)| (name, json!({"values": row.values, "differs": row.differs})))
        .collect();
    let series_names: BTreeSet<&String> = records.iter().flat_map(|r| r.series.keys()).collect();
    let series: BTreeMap<&String, Value> = series_names
        .into_iter()
        .map(|name| {
            let summaries: Vec<_> = records
                .iter()
                .map(|r| r.series.get(name).map(|s| s.info()))
                .collect();
            (name, json!(summaries))
        })
        .collect();
    let runs: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "project_id": r.project_id,
                "status": r.status_at(now, timeout),
                "tags": r.tags,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "runs": runs,
        "params": params,
        "series": series,
    })))
}
