//! Job queues over HTTP: enqueueing, listing and cancelling jobs, and what agents
//! call to claim a job, keep their lease and report how the command ended.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_domain::authentication;
use sextant_domain::credentials::Caller;
use sextant_domain::error::ErrorCode;
use sextant_domain::ids::RunId;
use sextant_domain::projects;
use sextant_domain::queue::{self, Finish, Job, JobState, JobView, NewJob, QueueName};
use sextant_domain::runs::{self, listing};
use sextant_edge::auth::Writer;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, Query, page_limit};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enqueue, list))
        .routes(routes!(claim))
        .routes(routes!(get))
        .routes(routes!(cancel))
        .routes(routes!(heartbeat))
        .routes(routes!(finish))
}

/// A job as clients see it (a `JobView`, which borrows the job, so it is serialized
/// before the handler returns).
fn view(state: &AppState, job: &Job) -> Response {
    axum::Json(job.view(state.now(), state.queue_rules())).into_response()
}

/// A job just claimed, and the credential its command runs with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJob<'a> {
    #[serde(flatten)]
    job: JobView<'a>,
    /// For the command, in place of the agent's own key: it reads, logs to, uploads to
    /// and ends the job's run and nothing else, and only while this claim holds the job.
    job_token: String,
    #[serde(with = "time::serde::rfc3339")]
    job_token_expires_at: time::OffsetDateTime,
}

/// Puts a job on a project's queue, for a new run created queued or for an existing
/// queued run of the project (`run`), and answers it with its run.
#[utoipa::path(
    post,
    path = "/v1/projects/{project}/queues/{queue}/jobs",
    operation_id = "enqueue_job",
    tag = "queues",
    security(("bearer" = ["write"])),
    params(
        ("project" = String, Path, description = "The project's id or name."),
        ("queue" = QueueName, Path, description = "The queue; any valid name is one."),
    ),
    request_body = NewJob,
    responses(
        (status = CREATED, body = JobView),
        (
            status = CONFLICT,
            description = "The run is on a queue already (`job_exists`), or is not queued \
                           (`run_not_queued`).",
        ),
    )
)]
pub async fn enqueue(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((project, queue)): Path<(String, String)>,
    Json(new): Json<NewJob>,
) -> ApiResult<(StatusCode, Response)> {
    let queue = QueueName::parse(&queue)?;
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    let job = queue::enqueue(&state.store, &caller, &project, queue, new).await?;
    Ok((StatusCode::CREATED, view(&state, &job)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// One state or several, comma-separated (`waiting,claimed`); every state when
    /// absent.
    #[param(example = "waiting,claimed")]
    state: Option<String>,
    /// Jobs per page: 1 to 500, 50 by default.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of a queue's jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jobs<'a> {
    jobs: Vec<JobView<'a>>,
    /// Where the next page starts; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<RunId>,
}

/// A queue's jobs, oldest first, each with its run.
#[utoipa::path(
    get,
    path = "/v1/projects/{project}/queues/{queue}/jobs",
    operation_id = "list_jobs",
    tag = "queues",
    security(("bearer" = ["read"])),
    params(
        ("project" = String, Path, description = "The project's id or name."),
        ("queue" = QueueName, Path, description = "The queue."),
        ListParams,
    ),
    responses((status = OK, body = Jobs))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, queue)): Path<(String, String)>,
    Query(params): Query<ListParams>,
) -> ApiResult<Response> {
    let queue = QueueName::parse(&queue)?;
    let limit = page_limit(params.limit, listing::DEFAULT_LIMIT, listing::MAX_LIMIT)?;
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
                ApiError::new(
                    ErrorCode::InvalidCursor,
                    "pass the next_cursor of the last page",
                )
            })
        })
        .transpose()?;
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    let page = queue::list(
        &state.store,
        &caller.tenant,
        &project,
        &queue,
        &states,
        limit,
        cursor,
    )
    .await?;
    let now = state.now();
    let jobs = Jobs {
        jobs: page
            .jobs
            .iter()
            .map(|job| job.view(now, state.queue_rules()))
            .collect(),
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(jobs).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Who claims, as the job will show it: 1 to 100 characters without control
    /// characters.
    #[schema(schema_with = queue::agent_name_schema)]
    agent: String,
    /// What the agent's machine has; it takes only jobs needing no other labels.
    #[serde(default)]
    labels: Vec<String>,
}

/// Claims the oldest job of the queue the agent's labels allow, waiting or with a
/// lapsed lease, for an agent to run.
#[utoipa::path(
    post,
    path = "/v1/projects/{project}/queues/{queue}/claim",
    operation_id = "claim_job",
    tag = "queues",
    security(("bearer" = ["write"])),
    params(
        ("project" = String, Path, description = "The project's id or name."),
        ("queue" = QueueName, Path, description = "The queue."),
    ),
    request_body = ClaimRequest,
    responses(
        (
            status = OK,
            body = ClaimedJob,
            description = "The job claimed, with its run and its command's credential; its \
                           `attempts` is the claim's number, which heartbeats and finishing name.",
        ),
        (status = NO_CONTENT, description = "Nothing on the queue is claimable now."),
        (
            status = CONFLICT,
            description = "Agents kept colliding on one job (`concurrent_update`); retry."
        ),
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((project, queue)): Path<(String, String)>,
    Json(request): Json<ClaimRequest>,
) -> ApiResult<Response> {
    let agent_key = authentication::agent_key(&caller)?;
    let queue = QueueName::parse(&queue)?;
    let labels = queue::parse_labels(&request.labels)?;
    let project = projects::find(&state.store, &caller.tenant, &project).await?;
    let claimed = queue::claim(
        &state.store,
        state.queue_rules(),
        &caller.tenant,
        &project,
        &queue,
        &request.agent,
        &labels,
    )
    .await?;
    let Some(job) = claimed else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let (job_token, job_token_expires_at) = authentication::job_token(
        &state.keyring,
        state.settings.job_token_ttl,
        &caller,
        agent_key,
        job.record.run_id,
        job.record.attempts,
    )?;
    let now = state.now();
    Ok(axum::Json(ClaimedJob {
        job: job.view(now, state.queue_rules()),
        job_token,
        job_token_expires_at,
    })
    .into_response())
}

/// A job, by its run's id, with its run.
#[utoipa::path(
    get,
    path = "/v1/jobs/{run}",
    operation_id = "get_job",
    tag = "queues",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The id of the job's run.")),
    responses((status = OK, body = JobView))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let job = queue::get(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(view(&state, &job))
}

/// Takes a job off its queue: a waiting job ends at once with its run aborted; a
/// claimed job's run is asked to stop, which its agent does on its next heartbeat.
/// Cancelling a cancelled job again answers the same.
#[utoipa::path(
    post,
    path = "/v1/jobs/{run}/cancel",
    operation_id = "cancel_job",
    tag = "queues",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The id of the job's run.")),
    responses(
        (status = OK, body = JobView),
        (status = CONFLICT, description = "The job is done otherwise (`job_ended`)."),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    let job = queue::cancel(
        &state.store,
        state.queue_rules(),
        &caller.tenant,
        runs::parse_id(&run)?,
    )
    .await?;
    Ok(view(&state, &job))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The claim's number (the job's `attempts` when it was claimed).
    attempt: u32,
}

/// Renews the lease of an agent's claim and keeps the run alive; the run in the answer
/// says whether it was asked to stop.
#[utoipa::path(
    post,
    path = "/v1/jobs/{run}/heartbeat",
    operation_id = "heartbeat_job",
    tag = "queues",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The id of the job's run.")),
    request_body = Heartbeat,
    responses(
        (status = OK, body = JobView),
        (
            status = CONFLICT,
            description = "The claim no longer holds the job (`lease_lost`): stop running it.",
        ),
    )
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(beat): Json<Heartbeat>,
) -> ApiResult<Response> {
    let job = queue::heartbeat(
        &state.store,
        state.queue_rules(),
        &caller.tenant,
        runs::parse_id(&run)?,
        beat.attempt,
    )
    .await?;
    Ok(view(&state, &job))
}

/// Reports how an agent's command ended, which ends the job and its run (unless the
/// run ended already); finishing again answers the same.
#[utoipa::path(
    post,
    path = "/v1/jobs/{run}/finish",
    operation_id = "finish_job",
    tag = "queues",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The id of the job's run.")),
    request_body = Finish,
    responses(
        (status = OK, body = JobView),
        (
            status = CONFLICT,
            description = "The claim no longer holds the job (`lease_lost`).",
        ),
    )
)]
pub async fn finish(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(finish): Json<Finish>,
) -> ApiResult<Response> {
    let job = queue::finish(
        &state.store,
        state.queue_rules(),
        &caller.tenant,
        runs::parse_id(&run)?,
        finish,
    )
    .await?;
    Ok(view(&state, &job))
}
