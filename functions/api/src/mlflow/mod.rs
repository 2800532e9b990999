//! The MLflow tracking REST API (`/api/2.0/mlflow/...`) and its artifact proxy
//! (`/api/2.0/mlflow-artifacts/...`), over Sextant's own model, so the stock `mlflow`
//! client logs to Sextant given `MLFLOW_TRACKING_URI` and an API key (as
//! `MLFLOW_TRACKING_TOKEN`, or as `MLFLOW_TRACKING_PASSWORD` with any user name).
//!
//! The mapping:
//! - an experiment is a project; experiment `0`, MLflow's default, is the team's
//!   `Default` project, made on first use. Deleting one moves it to the trash;
//! - an MLflow run is a run. Its key-value tags are tags written `key=value`, except
//!   the ones Sextant has fields for (`mlflow.runName` is the name, `mlflow.note.content`
//!   the description, `mlflow.source.git.*` the git fields). Deleting a run moves it to
//!   the trash, from which it can be restored;
//! - parameters are parameters: text that prints back exactly as a number or boolean
//!   is stored as one (so runs sort by it), and reads back as the same text. As in
//!   MLflow, a parameter once logged cannot change;
//! - metrics are numeric series, logged through the same batches (and metering) as the
//!   SDK's. Steps may repeat, and every value at a step is kept;
//! - dataset inputs are lineage inputs: dataset versions named by a content hash.
//!
//! Errors take MLflow's shape, `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message":
//! "..."}`, so the client raises the exceptions it always does.

mod artifacts;
mod convert;
mod experiments;
mod filter;
mod metrics;
mod paging;
mod runs;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sextant_domain::credentials::Caller;
use sextant_domain::error::ErrorCode;
use sextant_edge::error::{self, ApiError, Reported};
use sextant_edge::state::AppState;

pub fn routes() -> Router<AppState> {
    let tracking = Router::new()
        .route("/experiments/create", post(experiments::create))
        .route("/experiments/get", get(experiments::get))
        .route("/experiments/get-by-name", get(experiments::get_by_name))
        .route(
            "/experiments/search",
            post(experiments::search).get(experiments::search_by_query),
        )
        .route("/experiments/update", post(experiments::update))
        .route("/experiments/delete", post(experiments::delete))
        .route("/experiments/restore", post(experiments::restore))
        .route(
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        )
        .route(
            "/experiments/delete-experiment-tag",
            post(experiments::delete_tag),
        )
        .route("/runs/create", post(runs::create))
        .route("/runs/get", get(runs::get))
        .route("/runs/update", post(runs::update))
        .route("/runs/delete", post(runs::delete))
        .route("/runs/restore", post(runs::restore))
        .route("/runs/search", post(runs::search))
        .route("/runs/log-metric", post(runs::log_metric))
        .route("/runs/log-parameter", post(runs::log_parameter))
        .route("/runs/log-batch", post(runs::log_batch))
        .route("/runs/set-tag", post(runs::set_tag))
        .route("/runs/delete-tag", post(runs::delete_tag))
        .route("/runs/log-inputs", post(runs::log_inputs))
        .route("/metrics/get-history", get(metrics::history))
        .route(
            "/metrics/get-history-bulk-interval",
            get(metrics::bulk_interval),
        )
        .route("/logged-models/search", post(search_logged_models))
        .fallback(endpoint_not_found);
    Router::new()
        .nest("/api/2.0/mlflow", tracking)
        .nest("/api/2.0/mlflow-artifacts", artifacts::routes())
        .layer(middleware::map_response(in_mlflow_shape))
}

/// MLflow 3's logged models are not kept by Sextant (a model is an artifact of its run),
/// so a search finds none; the client searches them whenever it lists a run's artifacts.
async fn search_logged_models(_caller: Caller) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "models": [] }))
}

async fn endpoint_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        "this MLflow endpoint is not served by Sextant",
    )
}

/// The error codes MLflow's clients know, for Sextant's errors.
fn mlflow_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ProjectExists | ErrorCode::ArtifactExists => "RESOURCE_ALREADY_EXISTS",
        ErrorCode::RunEnded | ErrorCode::InvalidTransition | ErrorCode::Trashed => "INVALID_STATE",
        ErrorCode::RouteNotFound => "ENDPOINT_NOT_FOUND",
        other => mlflow_code_for_status(error::status(other)),
    }
}

fn mlflow_code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "RESOURCE_DOES_NOT_EXIST",
        405 => "ENDPOINT_NOT_FOUND",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        409 => "ABORTED",
        415 => "BAD_REQUEST",
        429 => "REQUEST_LIMIT_EXCEEDED",
        503 => "TEMPORARILY_UNAVAILABLE",
        400..=499 => "INVALID_PARAMETER_VALUE",
        _ => "INTERNAL_ERROR",
    }
}

/// Rewrites every error on this surface into MLflow's shape, keeping status and headers
/// such as `Retry-After`. Handlers and extractors alike answer with an `ApiError`,
/// whose response carries what it said (`Reported`); anything else is mapped by its
/// status, its body kept as the message.
async fn in_mlflow_shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (code, message) = match parts.extensions.remove::<Reported>() {
        Some(reported) => (mlflow_code(reported.code), reported.message),
        None => {
            // Error bodies are a few hundred bytes; more is cut.
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            (
                mlflow_code_for_status(status),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
    };
    let body = json!({
        "error_code": code,
        "message": message,
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sextant_errors_map_to_the_codes_mlflow_clients_act_on() {
        let cases = [
            (ErrorCode::NotFound, "RESOURCE_DOES_NOT_EXIST"),
            (ErrorCode::ProjectExists, "RESOURCE_ALREADY_EXISTS"),
            (ErrorCode::InvalidParams, "INVALID_PARAMETER_VALUE"),
            (ErrorCode::Unauthorized, "UNAUTHENTICATED"),
            (ErrorCode::Unavailable, "TEMPORARILY_UNAVAILABLE"),
            (ErrorCode::Internal, "INTERNAL_ERROR"),
            (ErrorCode::RouteNotFound, "ENDPOINT_NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, "ENDPOINT_NOT_FOUND"),
            (ErrorCode::RunEnded, "INVALID_STATE"),
            (ErrorCode::RateLimited, "REQUEST_LIMIT_EXCEEDED"),
        ];
        for (code, expected) in cases {
            assert_eq!(mlflow_code(code), expected, "{code}");
        }
    }
}
