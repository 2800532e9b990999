use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_domain::artifacts::{
    self, ArtifactView, Completed, Completion, Kind, NewArtifact, UploadPlan,
};
use sextant_domain::credentials::Caller;
use sextant_domain::runs;
use sextant_edge::auth::{RunCaller, RunWriter, Writer};
use sextant_edge::error::ApiResult;
use sextant_edge::http::{Json, Query};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(complete))
        .routes(routes!(download, delete))
}

/// A registered artifact and where to upload its bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    plan: UploadPlan,
    artifact: ArtifactView,
}

/// Registers a file of the run and answers where to upload it, in one request or in
/// parts. Registering the same path, size and checksum again before completing answers
/// fresh URLs for the same upload, so an interrupted client resumes.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/artifacts",
    operation_id = "register_artifact",
    tag = "artifacts",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = NewArtifact,
    responses(
        (status = CREATED, body = Registered),
        (status = CONFLICT, description = "An artifact is stored at that path \
            (`artifact_exists`); delete it first."),
    ),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn register(
    State(state): State<AppState>,
    RunWriter(caller): RunWriter,
    Path(run): Path<String>,
    Json(new): Json<NewArtifact>,
) -> ApiResult<(StatusCode, axum::Json<Registered>)> {
    let (artifact, plan) =
        artifacts::register(&state.store, &caller.tenant, runs::parse_id(&run)?, new).await?;
    let registered = Registered {
        plan,
        artifact: artifact.into_view(),
    };
    Ok((StatusCode::CREATED, axum::Json(registered)))
}

/// Checks an upload's size and SHA-256 and seals the artifact; a mismatch removes the
/// upload and the registration. A large upload is checked a slice per call: the answer
/// is 202 with `status: verifying` and `verified_bytes` until the last slice, and the
/// client completes again. Completing a sealed artifact again answers it unchanged.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/artifacts/complete",
    operation_id = "complete_artifact",
    tag = "artifacts",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = Completion,
    responses(
        (status = OK, body = ArtifactView, description = "Checked and sealed: `ready`."),
        (status = ACCEPTED, body = ArtifactView, description = "Checked up to \
            `verified_bytes` (`verifying`); complete again to go on."),
        (status = CONFLICT, description = "Nothing was uploaded yet (`upload_missing`), or \
            the upload's size or SHA-256 differs from the registered one (`size_mismatch`, \
            `checksum_mismatch`: the registration is gone; register and upload again)."),
    ),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn complete(
    State(state): State<AppState>,
    RunWriter(caller): RunWriter,
    Path(run): Path<String>,
    Json(completion): Json<Completion>,
) -> ApiResult<(StatusCode, axum::Json<ArtifactView>)> {
    let completed = artifacts::complete(
        &state.store,
        &state.marks,
        state.settings.verify_slice_bytes,
        &caller.tenant,
        runs::parse_id(&run)?,
        completion,
    )
    .await?;
    Ok(match completed {
        Completed::Sealed(artifact) => (StatusCode::OK, axum::Json(artifact.into_view())),
        Completed::Verifying(artifact) => (StatusCode::ACCEPTED, axum::Json(artifact.into_view())),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only artifacts of this kind.
    kind: Option<Kind>,
    /// Only artifacts taken at this step.
    step: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Artifacts {
    artifacts: Vec<ArtifactView>,
}

/// The run's sealed artifacts, by path.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/artifacts",
    operation_id = "list_artifacts",
    tag = "artifacts",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id."), ListParams),
    responses((status = OK, body = Artifacts)),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn list(
    State(state): State<AppState>,
    RunCaller(caller): RunCaller,
    Path(run): Path<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Artifacts>> {
    let artifacts = artifacts::list(
        &state.store,
        &caller.tenant,
        runs::parse_id(&run)?,
        params.kind,
        params.step,
    )
    .await?;
    let artifacts = artifacts.into_iter().map(|a| a.into_view()).collect();
    Ok(axum::Json(Artifacts { artifacts }))
}

/// Downloads a sealed artifact: a redirect to a short-lived URL of its bytes.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/artifacts/{*path}",
    operation_id = "download_artifact",
    tag = "artifacts",
    security(("bearer" = ["read"])),
    params(
        ("run" = String, Path, description = "The run's id."),
        ("path" = String, Path, description = "The artifact's path in the run; it may \
            hold slashes."),
    ),
    responses((
        status = TEMPORARY_REDIRECT,
        description = "The bytes are at `Location` for the next five minutes.",
        headers(
            ("Location" = String, description = "A short-lived URL of the artifact's bytes."),
            ("Cache-Control" = String, description = "`no-store`."),
        )
    ))
)]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, url) =
        artifacts::download_url(&state.store, &caller.tenant, runs::parse_id(&run)?, &path).await?;
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

/// Deletes an artifact, sealed or still uploading, with its bytes.
#[utoipa::path(
    delete,
    path = "/v1/runs/{run}/artifacts/{*path}",
    operation_id = "delete_artifact",
    tag = "artifacts",
    security(("bearer" = ["write"])),
    params(
        ("run" = String, Path, description = "The run's id."),
        ("path" = String, Path, description = "The artifact's path in the run; it may \
            hold slashes."),
    ),
    responses((status = NO_CONTENT, description = "Deleted."))
)]
pub async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((run, path)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    artifacts::delete(&state.store, &caller.tenant, runs::parse_id(&run)?, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}
