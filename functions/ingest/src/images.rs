use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use sextant_domain::images::{self, Image};
use sextant_domain::runs;
use sextant_edge::auth::DataWriter;
use sextant_edge::error::ApiResult;
use sextant_edge::http::Query;
use sextant_edge::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Where {
    series: String,
    step: i64,
}

/// Logs one image (PNG or JPEG, recognised by its bytes) at a step of an image series.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/images",
    operation_id = "log_image",
    tag = "ingest",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id."), Where),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses(
        (status = CREATED, body = Image),
        (status = CONFLICT, description = "The run has ended (`run_ended`)."),
    ),
    extensions(("x-sextant-job" = json!(true)), ("x-sextant-plane" = json!("data")))
)]
pub async fn log(
    State(state): State<AppState>,
    DataWriter(caller): DataWriter,
    Path(run): Path<String>,
    Query(at): Query<Where>,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<Image>)> {
    let image = images::log(
        &state.store,
        state.intake(),
        &caller.tenant,
        runs::parse_id(&run)?,
        &at.series,
        at.step,
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(image)))
}
