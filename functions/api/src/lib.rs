//! The control plane: sign-up and log-in, API keys, invites and members, projects,
//! runs and reading their series, shared run URLs, and the web pages (`pages`).
//! `routes()` is mounted by the Lambda entry point and by `sextant serve` alike.

mod artifacts;
mod images;
mod lineage;
mod members;
mod mlflow;
pub mod pages;
mod projects;
mod queues;
mod runs;
mod session;
mod shares;
mod usage;

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use sextant_shared::state::AppState;
use sextant_shared::{http, openapi};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> Router<AppState> {
    let (v1, _) = v1().split_for_parts();
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/openapi.json", get(serve_openapi))
        .merge(v1)
        .merge(mlflow::routes())
        .merge(pages::routes())
}

/// The `/v1` API of this function and of the ingest function, as published at
/// `/openapi.json` and checked in at `docs/openapi.json`.
pub fn openapi() -> OpenApi {
    let (_, mut paths) = v1().split_for_parts();
    paths.merge(sextant_ingest::openapi_paths());
    openapi::document("Sextant", paths)
}

async fn serve_openapi() -> impl IntoResponse {
    static JSON: LazyLock<String> = LazyLock::new(|| openapi::to_json(&openapi()));
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// Every `/v1` route, each declared with its OpenAPI operation.
fn v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(session::routes())
        .merge(members::routes())
        .merge(projects::routes())
        .merge(runs::routes())
        .merge(queues::routes())
        .merge(artifacts::routes())
        .merge(lineage::routes())
        .merge(usage::routes())
        .merge(images::routes())
        .merge(shares::routes())
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
}
