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

use axum::Router;
use axum::routing::{delete, get, patch, post};
use sextant_shared::http;
use sextant_shared::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/v1/signup", post(session::signup))
        .route("/v1/login", post(session::login))
        .route("/v1/me", get(session::me))
        .route(
            "/v1/api-keys",
            post(members::create_api_key).get(members::list_api_keys),
        )
        .route("/v1/api-keys/{id}", delete(members::revoke_api_key))
        .route(
            "/v1/invites",
            post(members::create_invite).get(members::list_invites),
        )
        .route("/v1/invites/{id}", delete(members::revoke_invite))
        .route("/v1/invites/{token}/accept", post(members::accept_invite))
        .route("/v1/members", get(members::list_members))
        .route(
            "/v1/members/{id}",
            patch(members::change_role).delete(members::remove_member),
        )
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route(
            "/v1/projects/{project}",
            get(projects::get).delete(projects::delete),
        )
        .route(
            "/v1/projects/{project}/runs",
            post(runs::create).get(runs::list),
        )
        .route(
            "/v1/runs/{run}",
            get(runs::get).patch(runs::patch).delete(runs::delete),
        )
        .route("/v1/runs/{run}/abort", post(runs::abort))
        .route(
            "/v1/projects/{project}/queues/{queue}/jobs",
            post(queues::enqueue).get(queues::list),
        )
        .route(
            "/v1/projects/{project}/queues/{queue}/claim",
            post(queues::claim),
        )
        .route("/v1/jobs/{run}", get(queues::get))
        .route("/v1/jobs/{run}/cancel", post(queues::cancel))
        .route("/v1/jobs/{run}/heartbeat", post(queues::heartbeat))
        .route("/v1/jobs/{run}/finish", post(queues::finish))
        .route("/v1/runs/{run}/series", get(runs::list_series))
        // Series names hold slashes (`train/loss`): the rest of the path is the name.
        .route("/v1/runs/{run}/series/{*name}", get(runs::read_series))
        .route("/v1/compare", get(runs::compare))
        .route(
            "/v1/runs/{run}/artifacts",
            post(artifacts::register).get(artifacts::list),
        )
        .route(
            "/v1/runs/{run}/artifacts/complete",
            post(artifacts::complete),
        )
        .route(
            "/v1/runs/{run}/inputs",
            post(lineage::add_input).get(lineage::inputs),
        )
        .route("/v1/runs/{run}/lineage", get(lineage::graph))
        .route("/v1/datasets/{hash}", get(lineage::dataset))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/billing/reports/{month}", get(usage::report))
        .route("/v1/admin/usage", get(usage::all_tenants))
        .route("/v1/runs/{run}/images", get(images::series))
        .route("/v1/runs/{run}/images/{*series}", get(images::list))
        .route(
            "/v1/runs/{run}/artifacts/{*path}",
            get(artifacts::download).delete(artifacts::delete),
        )
        .merge(shares::routes())
        .merge(mlflow::routes())
        .merge(pages::routes())
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
}
