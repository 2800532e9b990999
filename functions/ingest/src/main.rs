//! Lambda entry point: build state once at cold start, then serve events.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sextant_domain::telemetry::init();
    let storage = sextant_storage_aws::AwsStorageConfig::from_env()?
        .storage()
        .await;
    let state = sextant_edge::state::AppState::from_env(storage)?;
    lambda_http::run(sextant_ingest::router(state)).await
}
