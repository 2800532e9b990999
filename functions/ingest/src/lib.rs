//! The data plane: the hot path training code calls. It exchanges API keys for
//! short-lived tokens that it then verifies without a database read, and takes log
//! batches: metric points, text lines, heartbeats.

mod images;
mod log;
mod token;

use axum::Router;
use axum::routing::post;
use sextant_shared::http;
use sextant_shared::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/token", post(token::exchange))
        .route("/v1/runs/{run}/log", post(log::log))
        .route("/v1/runs/{run}/images", post(images::log))
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
}
