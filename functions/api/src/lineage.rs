use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sextant_domain::credentials::Caller;
use sextant_domain::lineage::{Dataset, Graph, Input, NewInput};
use sextant_domain::runs::RunView;
use sextant_domain::{lineage, runs};
use sextant_edge::auth::RunWriter;
use sextant_edge::error::ApiResult;
use sextant_edge::http::Json;
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_input, inputs))
        .routes(routes!(graph))
        .routes(routes!(dataset))
}

/// Records that the run used an input: another run's sealed artifact, or a dataset
/// version. Declaring the same input again is harmless.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/inputs",
    operation_id = "add_run_input",
    tag = "lineage",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = NewInput,
    responses((status = CREATED, body = Input)),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn add_input(
    State(state): State<AppState>,
    RunWriter(caller): RunWriter,
    Path(run): Path<String>,
    Json(input): Json<NewInput>,
) -> ApiResult<(StatusCode, axum::Json<Input>)> {
    let input =
        lineage::add_input(&state.store, &caller.tenant, runs::parse_id(&run)?, input).await?;
    Ok((StatusCode::CREATED, axum::Json(input)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inputs {
    inputs: Vec<Input>,
}

/// The inputs the run declared.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/inputs",
    operation_id = "list_run_inputs",
    tag = "lineage",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = Inputs))
)]
pub async fn inputs(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Inputs>> {
    let run = runs::parse_id(&run)?;
    runs::load(&state.store, &caller.tenant, run).await?;
    let inputs = lineage::inputs(&state.store, &caller.tenant, run).await?;
    Ok(axum::Json(Inputs { inputs }))
}

/// The run's lineage both ways: the data and runs upstream of it, the runs downstream
/// that used its artifacts.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/lineage",
    operation_id = "get_run_lineage",
    tag = "lineage",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = Graph))
)]
pub async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Graph>> {
    Ok(axum::Json(
        lineage::graph(
            &state.store,
            state.settings.heartbeat_timeout,
            &caller.tenant,
            runs::parse_id(&run)?,
        )
        .await?,
    ))
}

/// A dataset version and the runs that used it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetUse<'a> {
    dataset: Dataset,
    runs: Vec<RunView<'a>>,
}

/// A dataset version, by its hash, with every run of the team that used it.
#[utoipa::path(
    get,
    path = "/v1/datasets/{hash}",
    operation_id = "get_dataset",
    tag = "lineage",
    security(("bearer" = ["read"])),
    params(("hash" = String, Path, description = "The dataset version's content hash, \
        in hex.")),
    responses((status = OK, body = DatasetUse))
)]
pub async fn dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Response> {
    let (dataset, used_by) = lineage::dataset(&state.store, &caller.tenant, &hash).await?;
    let now = state.now();
    let runs = used_by
        .iter()
        .map(|run| run.view(now, state.settings.heartbeat_timeout))
        .collect();
    Ok(axum::Json(DatasetUse { dataset, runs }).into_response())
}
