//! Lambda entry point for the hourly metering schedule.

use lambda_runtime::{LambdaEvent, service_fn};
use sextant_metering::{MeteringHour, ScheduledEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sextant_shared::telemetry::init();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ScheduledEvent>| async move {
            let hour = MeteringHour::from(&event.payload);
            tracing::info!(hour = %hour.start, "metering hour");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({ "hour": hour.start.to_string() }))
        },
    ))
    .await
}
