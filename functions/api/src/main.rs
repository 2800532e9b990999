//! Lambda entry point: build state once at cold start, then serve events.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sextant_domain::telemetry::init();
    let config = sextant_storage_aws::AwsStorageConfig::from_env()?;
    let mut state = sextant_edge::state::AppState::from_env(config.storage().await)?;
    // The template always sets it; without it (a hand-made deployment) nothing is
    // mailed, which the flows that mail log.
    if let Ok(from) = std::env::var("SEXTANT_MAIL_FROM") {
        state = state.with_mailer(Arc::new(config.mailer(from).await));
    }
    lambda_http::run(sextant_api::router(state)).await
}
