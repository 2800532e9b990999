//! Lambda entry point for the hourly metering schedule: state built once at cold
//! start, then each event rolls up its hour and any missed before it, sweeps, and
//! evaluates the teams' budgets.

use lambda_runtime::{LambdaEvent, service_fn};
use sextant_metering::{Metering, MeteringHour, ScheduledEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sextant_domain::telemetry::init();
    let config = sextant_storage_aws::AwsStorageConfig::from_env()?;
    // The template always sets it; without it (a hand-made deployment) budget letters
    // wait, unsent, and the runs log that.
    let mailer: Option<std::sync::Arc<dyn sextant_storage::Mailer>> =
        match std::env::var("SEXTANT_MAIL_FROM") {
            Ok(from) => Some(std::sync::Arc::new(config.mailer(from).await)),
            Err(_) => None,
        };
    let metering = Metering::from_env(config.storage().await, mailer)?;
    let metering = &metering;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ScheduledEvent>| async move {
            let hour = MeteringHour::from(&event.payload);
            let report = metering.run(hour).await?;
            tracing::info!(hour = %hour.start, ?report, "metering hour");
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await
}
