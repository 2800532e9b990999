use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_shared::auth::{Caller, RunCaller};
use sextant_shared::error::ApiResult;
use sextant_shared::http::Query;
use sextant_shared::ids::RunId;
use sextant_shared::images::{Listed, SeriesImages};
use sextant_shared::state::AppState;
use sextant_shared::tenancy::Tenant;
use sextant_shared::{images, runs};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(series))
        .routes(routes!(list))
}

/// A run's image series, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageSeries {
    series: BTreeMap<String, SeriesImages>,
}

/// The run's image series: how many images each holds and over which steps.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/images",
    operation_id = "list_image_series",
    tag = "images",
    security(("bearer" = ["read"])),
    params(("run" = String, Path, description = "The run's id.")),
    responses((status = OK, body = ImageSeries))
)]
pub async fn series(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<ImageSeries>> {
    let series = images::series(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(ImageSeries { series }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImageRange {
    /// The first step to list.
    from: Option<i64>,
    /// The last step to list.
    to: Option<i64>,
    /// Only the images at this step (instead of `from` and `to`).
    step: Option<i64>,
}

/// Images of one series, in step order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Images<'a> {
    series: &'a str,
    /// At most 1,000.
    images: Vec<Listed>,
}

/// Images of one series of the run in a step range, each with a short-lived URL.
#[utoipa::path(
    get,
    path = "/v1/runs/{run}/images/{*series}",
    operation_id = "list_images",
    tag = "images",
    security(("bearer" = ["read"])),
    params(
        ("run" = String, Path, description = "The run's id."),
        ("series" = String, Path, description = "The image series' name; it may hold \
            slashes."),
        ImageRange,
    ),
    responses((status = OK, body = Images)),
    extensions(("x-sextant-job" = json!(true)))
)]
pub async fn list(
    State(state): State<AppState>,
    RunCaller(caller): RunCaller,
    Path((run, series)): Path<(String, String)>,
    Query(range): Query<ImageRange>,
) -> ApiResult<Response> {
    images_of(
        &state,
        &caller.tenant,
        runs::parse_id(&run)?,
        &series,
        &range,
    )
    .await
}

/// Images of one series of a run the caller may read (its team's, or one shared with
/// it), in step order, each with a short-lived URL.
pub async fn images_of(
    state: &AppState,
    tenant: &Tenant,
    run: RunId,
    series: &str,
    range: &ImageRange,
) -> ApiResult<Response> {
    let (from, to) = match range.step {
        Some(step) => (Some(step), Some(step)),
        None => (range.from, range.to),
    };
    let images = images::list(state, tenant, run, series, from, to).await?;
    let page = Images { series, images };
    Ok(axum::Json(page).into_response())
}
