use axum::extract::{Path, State};
use sextant_shared::auth::Writer;
use sextant_shared::error::ApiResult;
use sextant_shared::http::Json;
use sextant_shared::runs;
use sextant_shared::series::batch::{self, LogBatch, LogOutcome};
use sextant_shared::state::AppState;

/// `POST /v1/runs/{run}/log`: a batch of points, text lines and/or a heartbeat.
pub async fn log(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(run): Path<String>,
    Json(batch): Json<LogBatch>,
) -> ApiResult<axum::Json<LogOutcome>> {
    let outcome = batch::log(&state, &caller.tenant, runs::parse_id(&run)?, batch).await?;
    Ok(axum::Json(outcome))
}
