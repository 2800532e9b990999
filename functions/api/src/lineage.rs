use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::ApiResult;
use sextant_shared::http::Json;
use sextant_shared::state::AppState;
use sextant_shared::{lineage, runs};
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/runs/{run}/inputs", post(add_input).get(inputs))
        .route("/v1/runs/{run}/lineage", get(graph))
        .route("/v1/datasets/{hash}", get(dataset))
}

/// `POST /v1/runs/{run}/inputs {artifact: {run, path}} | {dataset: {uri, hash, name?}}`.
pub async fn add_input(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(input): Json<lineage::NewInput>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let input = lineage::add_input(&state, &caller.tenant, runs::parse_id(&run)?, input).await?;
    Ok((StatusCode::CREATED, axum::Json(json!(input))))
}

pub async fn inputs(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let run = runs::parse_id(&run)?;
    runs::load(&state, &caller.tenant, run).await?;
    let inputs = lineage::inputs(&state, &caller.tenant, run).await?;
    Ok(axum::Json(json!({ "inputs": inputs })))
}

pub async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<lineage::Graph>> {
    Ok(axum::Json(
        lineage::graph(&state, &caller.tenant, runs::parse_id(&run)?).await?,
    ))
}

pub async fn dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (dataset, used_by) = lineage::dataset(&state, &caller.tenant, &hash).await?;
    let now = state.now();
    let runs: Vec<_> = used_by.iter().map(|run| run.view(&state, now)).collect();
    Ok(axum::Json(json!({ "dataset": dataset, "runs": runs })))
}
