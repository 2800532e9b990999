//! Lambda entry point: build state once at cold start, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sextant_shared::telemetry::init();
    let state = sextant_shared::state::AppState::from_env().await?;
    lambda_http::run(sextant_ingest::router(state)).await
}
