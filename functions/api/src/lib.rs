//! The control plane: sign-up and log-in, API keys, invites and members, projects,
//! runs and reading their series, shared run URLs, and the web pages (`pages`).
//! `routes()` is mounted by the Lambda entry point and by `sextant serve` alike.

mod account;
mod artifacts;
mod images;
mod lineage;
mod members;
mod mlflow;
pub mod neptune;
pub mod pages;
mod projects;
mod queues;
mod runs;
mod session;
mod shares;
mod team;
mod usage;

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use sextant_edge::state::AppState;
use sextant_edge::{http, openapi};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> Router<AppState> {
    let (v1, _) = v1().split_for_parts();
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/openapi.json", get(serve_openapi))
        .merge(v1)
        .merge(mlflow::routes())
        .merge(neptune::routes())
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
        .merge(account::routes())
        .merge(members::routes())
        .merge(projects::routes())
        .merge(runs::routes())
        .merge(queues::routes())
        .merge(artifacts::routes())
        .merge(lineage::routes())
        .merge(usage::routes())
        .merge(images::routes())
        .merge(shares::routes())
        .merge(team::routes())
}

/// The service the Lambda function runs.
pub fn router(state: AppState) -> Router {
    http::with_observability(http::api_service(routes(), state))
        .layer(axum::middleware::from_fn(client_from_gateway))
}

/// Who called, as API Gateway saw the connection (`sourceIp`): what log-ins and shared
/// links are throttled by. A Lambda function has no peer address of its own.
async fn client_from_gateway(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let source = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.as_deref(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.as_deref(),
        _ => None,
    };
    if let Some(ip) = source.and_then(|ip| ip.parse().ok()) {
        request.extensions_mut().insert(http::ClientAddr(ip));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use lambda_http::RequestExt;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use lambda_http::request::RequestContext;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_lambda_request_is_attributed_to_the_address_api_gateway_saw() {
        let echo = Router::new()
            .route(
                "/",
                get(|http::ClientAddr(ip): http::ClientAddr| async move { ip.to_string() }),
            )
            .layer(axum::middleware::from_fn(client_from_gateway));
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.http.source_ip = Some("203.0.113.9".into());
        let request = axum::http::Request::get("/")
            // A client can write this header; it must not count.
            .header("x-forwarded-for", "198.51.100.1")
            .body(Body::empty())
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV2(context));
        let response = echo.oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"203.0.113.9");
    }
}
