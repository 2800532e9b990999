use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_shared::artifacts::{self, Completion, Kind, NewArtifact};
use sextant_shared::auth::{Caller, Writer};
use sextant_shared::error::ApiResult;
use sextant_shared::http::{Json, Query};
use sextant_shared::runs;
use sextant_shared::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(
            "/v1/runs/{run}/artifacts",
            routing::post(register).get(list),
        )
        .route("/v1/runs/{run}/artifacts/complete", routing::post(complete))
        .route(
            "/v1/runs/{run}/artifacts/{*path}",
            routing::get(download).delete(delete),
        )
}

/// `POST /v1/runs/{run}/artifacts`: registers a file and answers where to upload it.
pub async fn register(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(new): Json<NewArtifact>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (artifact, plan) =
        artifacts::register(&state, &caller.tenant, runs::parse_id(&run)?, new).await?;
    let mut body = serde_json::to_value(plan).map_err(sextant_shared::error::ApiError::internal)?;
    body["artifact"] = artifact.view();
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// `POST /v1/runs/{run}/artifacts/complete`: checks the upload and seals it.
pub async fn complete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(completion): Json<Completion>,
) -> ApiResult<axum::Json<Value>> {
    let artifact =
        artifacts::complete(&state, &caller.tenant, runs::parse_id(&run)?, completion).await?;
    Ok(axum::Json(artifact.view()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    kind: Option<Kind>,
    step: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Value>> {
    let artifacts = artifacts::list(
        &state,
        &caller.tenant,
        runs::parse_id(&run)?,
        params.kind,
        params.step,
    )
    .await?;
    let artifacts: Vec<Value> = artifacts.iter().map(|a| a.view()).collect();
    Ok(axum::Json(json!({ "artifacts": artifacts })))
}

/// `GET /v1/runs/{run}/artifacts/{path}`: a redirect to a short-lived download URL.
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, url) =
        artifacts::download_url(&state, &caller.tenant, runs::parse_id(&run)?, &path).await?;
    Ok(redirect(url))
}

/// The answer to a download: a redirect to its short-lived URL, never cached.
pub(crate) fn redirect(url: String) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}

pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((run, path)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    artifacts::delete(&state, &caller.tenant, runs::parse_id(&run)?, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}
