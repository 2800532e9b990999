use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sextant_shared::auth::Caller;
use sextant_shared::error::ApiResult;
use sextant_shared::http::Query;
use sextant_shared::ids::RunId;
use sextant_shared::state::AppState;
use sextant_shared::tenancy::Tenant;
use sextant_shared::{images, runs};
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/runs/{run}/images", get(series))
        .route("/v1/runs/{run}/images/{*series}", get(list))
}

/// `GET /v1/runs/{run}/images`: the run's image series.
pub async fn series(
    State(state): State<AppState>,
    caller: Caller,
    Path(run): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let series = images::series(&state, &caller.tenant, runs::parse_id(&run)?).await?;
    Ok(axum::Json(json!({ "series": series })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRange {
    from: Option<i64>,
    to: Option<i64>,
    step: Option<i64>,
}

/// `GET /v1/runs/{run}/images/{series}?from=&to=` (or `?step=`): see `images_of`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((run, series)): Path<(String, String)>,
    Query(range): Query<ImageRange>,
) -> ApiResult<axum::Json<Value>> {
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
) -> ApiResult<axum::Json<Value>> {
    let (from, to) = match range.step {
        Some(step) => (Some(step), Some(step)),
        None => (range.from, range.to),
    };
    let listed = images::list(state, tenant, run, series, from, to).await?;
    Ok(axum::Json(json!({ "series": series, "images": listed })))
}
