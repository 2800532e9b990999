use axum::extract::{Path, State};
use sextant_domain::runs;
use sextant_domain::series::batch::{self, LogBatch, LogOutcome};
use sextant_edge::auth::DataWriter;
use sextant_edge::error::ApiResult;
use sextant_edge::http::Json;
use sextant_edge::state::AppState;

/// Logs a batch of metric points, text lines and/or a heartbeat. The batch id makes a
/// retry idempotent: a batch is stored once however often it is sent.
#[utoipa::path(
    post,
    path = "/v1/runs/{run}/log",
    operation_id = "log_batch",
    tag = "ingest",
    security(("bearer" = ["write"])),
    params(("run" = String, Path, description = "The run's id.")),
    request_body = LogBatch,
    responses(
        (status = OK, body = LogOutcome),
        (
            status = CONFLICT,
            description = "The run has ended (`run_ended`), a series holds the other kind of \
                           points (`series_kind_mismatch`), the batch id (or session and \
                           sequence) was used for other points (`batch_id_reused`), or the \
                           session committed a later batch (`sequence_behind`)."
        ),
    ),
    extensions(("x-sextant-job" = json!(true)), ("x-sextant-plane" = json!("data")))
)]
pub async fn log(
    State(state): State<AppState>,
    DataWriter(caller): DataWriter,
    Path(run): Path<String>,
    Json(batch): Json<LogBatch>,
) -> ApiResult<axum::Json<LogOutcome>> {
    let outcome = batch::log(
        &state.store,
        state.intake(),
        &caller.tenant,
        runs::parse_id(&run)?,
        batch,
    )
    .await?;
    Ok(axum::Json(outcome))
}
