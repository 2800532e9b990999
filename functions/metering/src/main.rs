//! Lambda entry point for the hourly metering schedule: state built once at cold
//! start, then each event rolls up its hour and any missed before it, and sweeps.

use lambda_runtime::{LambdaEvent, service_fn};
use sextant_metering::{Metering, MeteringHour, ScheduledEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sextant_domain::telemetry::init();
    let storage = sextant_storage_aws::AwsStorageConfig::from_env()?
        .storage()
        .await;
    let metering = Metering::from_env(storage)?;
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
