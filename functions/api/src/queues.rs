//! Job queues over HTTP: enqueueing, listing and cancelling jobs, and what agents
//! call to claim a job, keep their lease and report how the command ended.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::{ApiError, ApiResult};
use sextant_shared::http::{Json, Query};
use sextant_shared::ids::RunId;
use sextant_shared::projects;
use sextant_shared::queue::{self, Finish, Job, JobState, NewJob, QueueName};
use sextant_shared::runs::{self, listing};
use sextant_shared::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(
            "/v1/projects/{project}/queues/{queue}/jobs",
            routing::post(enqueue).get(list),
        )
        .route(
            "/v1/projects/{project}/queues/{queue}/claim",
            routing::post(claim),
        )
        .route("/v1/jobs/{run}", routing::get(get))
        .route("/v1/jobs/{run}/cancel", routing::post(cancel))
        .route("/v1/jobs/{run}/heartbeat", routing::post(heartbeat))
        .route("/v1/jobs/{run}/finish", routing::post(finish))
}

fn view(state: &AppState, job: &Job) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(job.view(state)?))
}

/// `POST /v1/projects/{project}/queues/{queue}/jobs`: 201 with the job and its run.
pub async fn enqueue(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((project, queue)): Path<(String, String)>,
    Json(new): Json<NewJob>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let queue = QueueName::parse(&queue)?;
    let project = projects::find(&state, &caller.tenant, &project).await?;
    let job = queue::enqueue(&state, &caller, &project, queue, new).await?;
    Ok((StatusCode::CREATED, view(&state, &job)?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// One state or several, comma-separated.
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/projects/{project}/queues/{queue}/jobs`: oldest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, queue)): Path<(String, String)>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Value>> {
    let queue = QueueName::parse(&queue)?;
    let limit = params.limit.unwrap_or(listing::DEFAULT_LIMIT);
    if !(1..=listing::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit is 1 to {}", listing::MAX_LIMIT),
        ));
    }
    let states = params
        .state
        .as_deref()
        .map(|list| list.split(',').map(JobState::parse).collect())
        .transpose()?
        .unwrap_or_default();
    let cursor = params
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor.parse::<RunId>().map_err(|_| {
                ApiError::invalid("invalid_cursor", "pass the next_cursor of the last page")
            })
        })
        .transpose()?;
    let project = projects::find(&state, &caller.tenant, &project).await?;
    let page = queue::list(
        &state,
        &caller.tenant,
        &project,
        &queue,
        &states,
        limit,
        cursor,
    )
    .await?;
    let jobs = page
        .jobs
        .iter()
        .map(|job| job.view(&state))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(json!({
        "jobs": jobs,
        "next_cursor": page.next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Who claims, as the job will show it.
    agent: String,
    /// What the agent's machine has; it takes only jobs needing no other labels.
    #[serde(default)]
    labels: Vec<String>,
}

/// `POST /v1/projects/{project}/queues/{queue}/claim`: 200 with the job and its run
/// (its `attempts` is the claim's number), or 204 when nothing is claimable.
pub async fn claim(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((project, queue)): Path<(String, String)>,
    Json(request): Json<ClaimRequest>,
) -> ApiResult<Response> {
    let queue = QueueName::parse(&queue)?;
    let labels = queue::parse_labels(&request.labels)?;
    let project = projects::find(&state, &caller.tenant, &project).await?;
    let claimed = queue::claim(
        &state,
        &caller.tenant,
        &project,
        &queue,
        &request.agent,
        &labels,
    )
    .await?;
    Ok(match claimed {
        Some(job) => view(&state, &job)?.into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `GET /v1/jobs/{run}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let job = queue::get(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    view(&state, &job)
}

/// `POST /v1/jobs/{run}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let job = queue::cancel(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    view(&state, &job)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    attempt: u32,
}

/// `POST /v1/jobs/{run}/heartbeat {attempt}`: renews the lease; the run in the answer
/// says whether it was asked to stop. 409 `lease_lost` once the claim is gone.
pub async fn heartbeat(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(beat): Json<Heartbeat>,
) -> ApiResult<axum::Json<Value>> {
    let job = queue::heartbeat(&state, &caller.tenant, runs::parse_id(&run)?, beat.attempt).await?;
    view(&state, &job)
}

/// `POST /v1/jobs/{run}/finish {attempt, exit_code?, signal?, reason?}`.
pub async fn finish(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(finish): Json<Finish>,
) -> ApiResult<axum::Json<Value>> {
    let job = queue::finish(&state, &caller.tenant, runs::parse_id(&run)?, finish).await?;
    view(&state, &job)
}
