//! The data plane: the hot path training code calls. It exchanges API keys for
//! short-lived tokens that it then verifies without a database read, and takes log
//! batches: metric points, text lines, heartbeats.

mod images;
mod log;
mod token;

use axum::Router;
use sextant_edge::http;
use sextant_edge::state::AppState;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> Router<AppState> {
    v1().split_for_parts().0
}

/// This function's operations, for the document the api function publishes.
pub fn openapi_paths() -> OpenApi {
    v1().split_for_parts().1
}

fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token::exchange))
        .routes(routes!(log::log))
        .routes(routes!(images::log))
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
}
