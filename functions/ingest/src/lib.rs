//! The data plane: the hot path training code calls. For now it exchanges API keys
//! for short-lived tokens that the rest of the data plane verifies without a
//! database read.

mod token;

use axum::Router;
use axum::routing::post;
use sextant_shared::http;
use sextant_shared::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/auth/token", post(token::exchange))
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
}
