use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_domain::billing::{PricePlan, RunCost};
use sextant_domain::credentials::Caller;
use sextant_domain::deletion;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::floats::{JsonF64, JsonF64s};
use sextant_domain::ids::{ProjectId, RunId};
use sextant_domain::projects::{self, Project};
use sextant_domain::runs::listing::{self, Filter, ParamCondition, Sort};
use sextant_domain::runs::summary::{SeriesInfo, SeriesKind};
use sextant_domain::runs::{self, NewRun, ParamValue, RunChanges, RunRecord, RunView, Status};
use sextant_domain::series::{
    self, EXACT_PAGE_POINTS, MAX_DOWNSAMPLED_POINTS, Place, Points, StepRange, TextPoints, Window,
};
use sextant_domain::tenancy::Tenant;
use sextant_domain::usage::RunUsage;
use sextant_edge::auth::{RunCaller, RunWriter, Writer};
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, Query, page_limit};
use sextant_edge::state::AppState;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, patch, delete))
        .routes(routes!(abort))
        .routes(routes!(list_series))
        // Series names hold slashes (`train/loss`): the rest of the path is the name.
        .routes(routes!(read_series))
        .routes(routes!(compare))
}

/// The run as clients see it, with what it has cost so far, serialized straight from
/// the borrowed view.
async fn view(state: &AppState, tenant: &Tenant, record: &RunRecord) -> ApiResult<Response> {
    let counted = runs::usage_of(&state.store, tenant, record).await?;
    Ok(view_counted(state, record, counted))
}

/// The run as clients see it, with `counted` as its usage so far.
fn view_counted(state: &AppState, record: &RunRecord, counted: RunUsage) -> Response {
    let now = state.now();
    let view = record
        .view(now, state.settings.heartbeat_timeout)
        .with_usage(state.settings.plan.run_cost([&counted], now));
    axum::Json(view).into_response()
}

/// Starts a run in the project: `running`, or `queued` for one that waits for a worker.
#[utoipa::path(
    post,
    path = "/v1/projects/{project}/runs",
    operation_id = "create_run",
    tag = "runs",
    security(("bearer" = ["write"])),
    params(("project" = String, Path, description = "The project's id or name.")),
    request_body = NewRun,
    responses((status = CREATED, body = RunView))
)]
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(project): Path<String>,
    Json(new): Json<NewRun>,
) -> ApiResult<(StatusCode, Response)> {
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    let record = runs::create(&state.store, &caller, &project, new).await?;
    // A run just created has counted nothing: no read for it.
    let counted = record.usage(state.now());
    Ok((StatusCode::CREATED, view_counted(&state, &record, counted)))
}

/// A run, its status read as of now.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}",
    operation_id = "get_run",
    tag = "runs",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = RunView)),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn get(
    State(state): State<AppState>,
    RunCaller(caller): RunCaller,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let run = runs::load(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    view(&state, &caller.tenant, &run.record).await
}

/// Renames, describes, retags or re-parameterises a run, or moves it on in its
/// lifecycle (ending it, with when it ended for an imported run).
#[utoipa::path(
    patch,
    path = "/v1/runs/{run}",
    operation_id = "update_run",
    tag = "runs",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = RunChanges,
    responses(
        (status = OK, body = RunView),
        (status = CONFLICT, description = "The run has ended (`run_ended`), a started run \
            cannot be queued again (`invalid_transition`), or it kept changing meanwhile \
            (`concurrent_update`)."),
    ),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn patch(
    State(state): State<AppState>,
    RunWriter(caller): RunWriter,
    Path(run): Path<String>,
    Json(changes): Json<RunChanges>,
) -> ApiResult<Response> {
    let record = runs::patch(
        &state.store,
        state.settings.heartbeat_timeout,
        &caller.tenant,
        runs::parse_id(&run)?,
        changes,
    )
    .await?;
    view(&state, &caller.tenant, &record).await
}

/// Asks the run to stop: its client learns it from its next log or heartbeat answer and
/// ends it as `aborted`; a queued run is aborted at once.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/abort",
    operation_id = "abort_run",
    tag = "runs",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses(
        (status = OK, body = RunView),
        (status = CONFLICT, description = "The run has ended (`run_ended`)."),
    )
)]
pub async fn abort(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let record = runs::abort(
        &state.store,
        state.settings.heartbeat_timeout,
        &caller.tenant,
        runs::parse_id(&run)?,
    )
    .await?;
    view(&state, &caller.tenant, &record).await
}

/// Deletes the run with all its series, artifacts, images and shares.
#[utoipa::path(
    delete,
    path = "/v1/runs/{run}",
    operation_id = "delete_run",
    tag = "runs",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses(
        (status = NO_CONTENT, description = "Deleted."),
        (status = CONFLICT, description = "The run changed while it was being marked for \
            deletion (`concurrent_update`); retry."),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> ApiResult<StatusCode> {
    deletion::delete_run(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only runs with this tag.
    pub(crate) tag: Option<String>,
    /// One status or several, comma-separated.
    pub(crate) status: Option<String>,
    /// Only runs whose name contains this, in any case.
    pub(crate) name: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) created_after: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) created_before: Option<OffsetDateTime>,
    /// `created` (the default, newest first), `name`, `param:NAME` or
    /// `metric:NAME[:last|min|max]`, optionally followed by `:asc` or `:desc`.
    pub(crate) sort: Option<String>,
    /// Runs a page holds: 1 to 500, 50 by default.
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// `true` lists the runs in the trash (deleted through MLflow) instead.
    #[serde(default)]
    pub(crate) trashed: bool,
    /// Param conditions that must all hold, separated by `;`: `NAME OP VALUE` with OP
    /// one of `=`, `!=`, `<`, `<=`, `>`, `>=`, as in `lr<=0.001;optimizer=adam`. The
    /// value is a number, `true`/`false` or text; `<`, `<=`, `>` and `>=` take a number.
    /// A run without the param passes only `!=`. Inside a condition `\;` is a `;` and
    /// `\\` a backslash. A malformed condition answers 400 `invalid_filter`.
    pub(crate) param: Option<String>,
}

/// One page of a project's run table: every run of the project, and which of them
/// the page shows, in order.
#[derive(Debug)]
pub(crate) struct RunTable {
    pub(crate) runs: Vec<RunRecord>,
    pub(crate) page: listing::Page,
    /// Every run's counters of its images and artifacts (runs without have none);
    /// their records count the rest.
    pub(crate) counted: HashMap<RunId, RunUsage>,
    pub(crate) now: OffsetDateTime,
}

impl RunTable {
    pub(crate) fn rows(&self) -> impl Iterator<Item = &RunRecord> {
        self.page.rows.iter().map(|&i| &self.runs[i])
    }

    fn usage(&self, run: &RunRecord) -> RunUsage {
        let counted = self.counted.get(&run.id).copied().unwrap_or_default();
        run.usage(self.now).and(counted)
    }

    /// What one run has cost so far.
    pub(crate) fn cost(&self, plan: &PricePlan, run: &RunRecord) -> RunCost {
        plan.run_cost([&self.usage(run)], self.now)
    }

    /// What every run the filter keeps (on all pages) has cost so far.
    pub(crate) fn filtered_cost(&self, plan: &PricePlan) -> RunCost {
        let kept: Vec<RunUsage> = self
            .page
            .kept
            .iter()
            .map(|&i| self.usage(&self.runs[i]))
            .collect();
        plan.run_cost(&kept, self.now)
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
    let limit = page_limit(params.limit, listing::DEFAULT_LIMIT, listing::MAX_LIMIT)?;
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
        params: params
            .param
            .as_deref()
            .map(ParamCondition::parse_list)
            .transpose()?
            .unwrap_or_default(),
    };
    let runs = runs::all_in_project(&state.store, tenant, project.id).await?;
    let counted = runs::usage_in_project(&state.store, tenant, project.id).await?;
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
    Ok(RunTable {
        runs,
        page,
        counted,
        now,
    })
}

/// One page of a project's run table.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage<'a> {
    runs: Vec<RunView<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<String>,
    /// Runs that pass the filter, on all pages.
    total: usize,
    /// What every run that passes the filter (on all pages) has cost so far: what a
    /// sweep cost.
    usage: RunCost,
}

/// A page of the project's runs, filtered and sorted by any column of the run table.
#[utoipa::path(
    get,
    path = "/v1/projects/{project}/runs",
    operation_id = "list_runs",
    tag = "runs",
    security(("bearer" = ["read"])),
    params(("project" = String, Path, description = "The project's id or name."), ListParams),
    responses((status = OK, body = RunPage))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    let table = run_table(&state, &caller.tenant, &project, &params).await?;
    let plan = &state.settings.plan;
    Ok(axum::Json(RunPage {
        runs: table
            .rows()
            .map(|run| {
                run.view(table.now, state.settings.heartbeat_timeout)
                    .with_usage(table.cost(plan, run))
            })
            .collect(),
        next_cursor: table.page.next_cursor.clone(),
        total: table.page.total,
        usage: table.filtered_cost(plan),
    })
    .into_response())
}

/// The series a run logged, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSeries<'a> {
    series: BTreeMap<&'a str, SeriesInfo>,
}

/// The run's series, each with its summary.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/series",
    operation_id = "list_series",
    tag = "series",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = RunSeries))
)]
pub async fn list_series(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let run = runs::load(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    let series = run
        .record
        .series
        .iter()
        .map(|(name, summary)| (name.as_str(), summary.info()))
        .collect();
    Ok(axum::Json(RunSeries { series }).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The first step to read.
    from: Option<i64>,
    /// The last step to read.
    to: Option<i64>,
    /// Only steps after this one: a page's `next_after`, or the last step a live chart
    /// has.
    after: Option<i64>,
    /// Downsample a numeric series to at most this many points, keeping each bucket's
    /// extremes (2 to 100,000); for a text series, the page size (at most 50,000).
    #[param(minimum = 2, maximum = 100_000)]
    max_points: Option<usize>,
    /// A page's `next_cursor`: read on from where that page ended, inside a step too.
    cursor: Option<String>,
}

/// Points of a series, in step order: `values` for a numeric one, `texts` for text.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SeriesPoints<'a> {
    Numeric(NumericPage<'a>),
    Text(TextPage<'a>),
}

/// Points of a numeric series: `values[i]` was logged at `steps[i]`, at
/// `timestamps[i]` (Unix seconds).
#[derive(Debug, Serialize, ToSchema)]
pub struct NumericPage<'a> {
    name: &'a str,
    /// `numeric`.
    kind: SeriesKind,
    steps: &'a [i64],
    #[schema(value_type = Vec<JsonF64>)]
    values: JsonF64s<'a>,
    timestamps: &'a [f64],
    /// Pass as `after` to read the next page when this one ended with a whole step;
    /// `null` when the range is exhausted or the page ended inside a step.
    #[schema(required = true)]
    next_after: Option<i64>,
    /// Pass as `cursor` to read the next page; `null` when the range is exhausted.
    #[schema(required = true)]
    next_cursor: Option<String>,
    /// The points were downsampled to `max_points`.
    downsampled: bool,
}

/// Lines of a text series: `texts[i]` was logged at `steps[i]`, at `timestamps[i]`
/// (Unix seconds).
#[derive(Debug, Serialize, ToSchema)]
pub struct TextPage<'a> {
    name: &'a str,
    /// `text`.
    kind: SeriesKind,
    steps: &'a [i64],
    texts: &'a [String],
    timestamps: &'a [f64],
    /// Pass as `after` to read the next page when this one ended with a whole step;
    /// `null` when the range is exhausted or the page ended inside a step.
    #[schema(required = true)]
    next_after: Option<i64>,
    /// Pass as `cursor` to read the next page; `null` when the range is exhausted.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Points of one series of the run: exact and paged, or downsampled with `max_points`
/// so that every bucket's extremes survive.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/series/{*name}",
    operation_id = "read_series",
    tag = "series",
    security(("bearer" = ["read"])),
    params(
        ("run" = String, Path, description = "The run's id."),
        ("name" = String, Path, description = "The series' name; it may hold slashes \
            (`train/loss`)."),
        ReadParams,
    ),
    responses((status = OK, body = SeriesPoints))
)]
pub async fn read_series(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, name)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Response> {
    params.check()?;
    let run = runs::load(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    series_points(&state, &caller.tenant, &run.record, &name, &params).await
}

impl ReadParams {
    /// Refuses what no run could answer, before anything is read.
    pub fn check(&self) -> ApiResult<()> {
        if self
            .max_points
            .is_some_and(|max| !(2..=MAX_DOWNSAMPLED_POINTS).contains(&max))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidMaxPoints,
                format!("max_points is 2 to {MAX_DOWNSAMPLED_POINTS}"),
            ));
        }
        self.resume()?;
        Ok(())
    }

    fn resume(&self) -> Result<Option<Place>, Error> {
        Ok(self.cursor.as_deref().map(Place::from_cursor).transpose()?)
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
        .ok_or_else(|| Error::not_found("series"))?;
    let range = StepRange {
        from: params.from,
        to: params.to,
        after: params.after,
    };
    let resume = params.resume()?;
    match summary.kind {
        SeriesKind::Numeric => {
            let read = numeric_points(
                state,
                tenant,
                run,
                name,
                range,
                match params.max_points {
                    Some(max_points) => Shape::Downsampled { max_points },
                    None => Shape::Exact {
                        after: resume.as_ref(),
                    },
                },
            )
            .await?;
            Ok(axum::Json(SeriesPoints::Numeric(NumericPage {
                name,
                kind: summary.kind,
                steps: &read.points.steps,
                values: JsonF64s(&read.points.values),
                timestamps: &read.points.timestamps,
                next_after: read.next_after,
                next_cursor: read.next.as_ref().map(Place::cursor),
                downsampled: read.downsampled,
            }))
            .into_response())
        }
        SeriesKind::Text => {
            let limit = params
                .max_points
                .unwrap_or(EXACT_PAGE_POINTS)
                .min(EXACT_PAGE_POINTS);
            let mut page = series::read::<TextPoints>(
                &state.store,
                tenant,
                run,
                name,
                Window {
                    range,
                    after: resume.as_ref(),
                    limit: Some(limit),
                },
            )
            .await?;
            page.limit_text_bytes();
            Ok(axum::Json(SeriesPoints::Text(TextPage {
                name,
                kind: summary.kind,
                steps: &page.points.steps,
                texts: &page.points.texts,
                timestamps: &page.points.timestamps,
                next_after: page.next_after,
                next_cursor: page.next.as_ref().map(Place::cursor),
            }))
            .into_response())
        }
    }
}

/// Points of a numeric series read for a chart or a client.
#[derive(Debug)]
pub(crate) struct NumericRead {
    pub(crate) points: Points,
    pub(crate) next_after: Option<i64>,
    pub(crate) next: Option<Place>,
    pub(crate) downsampled: bool,
}

/// How a numeric series is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A page of `EXACT_PAGE_POINTS` after a place an earlier page ended at.
    Exact { after: Option<&'a Place> },
    /// At most `max_points`, every bucket's extremes (and first NaN) kept.
    Downsampled { max_points: usize },
}

/// The points of a numeric series in `range`, read in `shape`. Charts on the pages
/// draw what `GET /v1/runs/{run}/series/{name}?max_points=` answers.
pub(crate) async fn numeric_points(
    state: &AppState,
    tenant: &Tenant,
    run: &RunRecord,
    name: &str,
    range: StepRange,
    shape: Shape<'_>,
) -> ApiResult<NumericRead> {
    let resume = match shape {
        Shape::Exact { after } => after,
        Shape::Downsampled { max_points } => {
            let (points, downsampled) =
                series::read_downsampled(&state.store, tenant, run, name, range, max_points)
                    .await?;
            return Ok(NumericRead {
                points,
                next_after: None,
                next: None,
                downsampled,
            });
        }
    };
    let page = series::read::<Points>(
        &state.store,
        tenant,
        run,
        name,
        Window {
            range,
            after: resume,
            limit: Some(EXACT_PAGE_POINTS),
        },
    )
    .await?;
    Ok(NumericRead {
        points: page.points,
        next_after: page.next_after,
        next: page.next,
        downsampled: false,
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
        return Err(ApiError::new(
            ErrorCode::InvalidRuns,
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
        futures::future::try_join_all(ids.iter().map(|&id| runs::load(&state.store, tenant, id)))
            .await?;
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The runs' ids, comma-separated: 1 to 50 of them, of any projects of the team.
    #[param(pattern = "^run_[0-9a-hjkmnp-tv-z]{26}(,run_[0-9a-hjkmnp-tv-z]{26}){0,49}$")]
    runs: String,
}

/// Runs side by side. `params` and `series` give one entry per run, in the order of
/// `runs`, `null` where that run has none.
#[derive(Debug, Serialize, ToSchema)]
pub struct Comparison<'a> {
    runs: Vec<ComparedRun<'a>>,
    /// Every parameter of any of the runs, by name.
    params: BTreeMap<&'a str, ComparedParam<'a>>,
    /// Every series of any of the runs, by name: each run's summary of it.
    series: BTreeMap<&'a str, Vec<Option<SeriesInfo>>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComparedRun<'a> {
    id: RunId,
    name: &'a str,
    project_id: ProjectId,
    status: Status,
    tags: &'a BTreeSet<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComparedParam<'a> {
    /// Each run's value.
    values: Vec<Option<&'a ParamValue>>,
    /// Not every run has the same value.
    differs: bool,
}

/// Runs side by side: every parameter with each run's value and whether they
/// differ, and each run's summary of every series.
#[utoipa::path(
    get,
    path = "/v1/compare",
    operation_id = "compare_runs",
    tag = "runs",
    security(("bearer" = ["read"])),
    params(CompareParams),
    responses((status = OK, body = Comparison))
)]
pub async fn compare(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<CompareParams>,
) -> ApiResult<Response> {
    let ids = compared_ids(params.runs.split(','))?;
    let loaded = load_compared(&state, &caller.tenant, &ids).await?;
    let records: Vec<&RunRecord> = loaded.iter().collect();
    let now = state.now();
    let timeout = state.settings.heartbeat_timeout;

    let params = param_rows(&records)
        .into_iter()
        .map(|(name, row)| {
            let param = ComparedParam {
                values: row.values,
                differs: row.differs,
            };
            (name.as_str(), param)
        })
        .collect();
    let series_names: BTreeSet<&String> = records.iter().flat_map(|r| r.series.keys()).collect();
    let series = series_names
        .into_iter()
        .map(|name| {
            let summaries = records
                .iter()
                .map(|r| r.series.get(name).map(|s| s.info()))
                .collect();
            (name.as_str(), summaries)
        })
        .collect();
    let runs = records
        .iter()
        .map(|r| ComparedRun {
            id: r.id,
            name: &r.name,
            project_id: r.project_id,
            status: r.status_at(now, timeout),
            tags: &r.tags,
        })
        .collect();
    Ok(axum::Json(Comparison {
        runs,
        params,
        series,
    })
    .into_response())
}
