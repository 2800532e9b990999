use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_domain::credentials::Caller;
use sextant_domain::ids::RunId;
use sextant_domain::images::{Listed, ListedUpTo, SeriesImages};
use sextant_domain::tenancy::Tenant;
use sextant_domain::{images, runs};
use sextant_edge::auth::RunCaller;
use sextant_edge::error::ApiResult;
use sextant_edge::http::{Query, page_limit};
use sextant_edge::state::AppState;
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
    let series = images::series(&state.store, &caller.tenant, runs::parse_id(&run)?).await?;
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
    /// Images a page holds: 1 to 1,000, 1,000 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page; none (or empty) starts at the first.
    cursor: Option<String>,
}

/// Images of one series, in step order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Images<'a> {
    series: &'a str,
    /// At most `limit`.
    images: Vec<Listed>,
    /// Set when more images may follow: pass it as `cursor` for the next page.
    next_cursor: Option<String>,
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
    let after = range
        .cursor
        .as_deref()
        .filter(|cursor| !cursor.is_empty())
        .map(ListedUpTo::from_cursor)
        .transpose()?;
    let limit = page_limit(range.limit, images::MAX_LISTED, images::MAX_LISTED)?;
    let page = images::list(
        &state.store,
        tenant,
        run,
        series,
        (from, to),
        after.as_ref(),
        limit,
    )
    .await?;
    Ok(axum::Json(Images {
        series,
        images: page.images,
        next_cursor: page.next.as_ref().map(ListedUpTo::cursor),
    })
    .into_response())
}
