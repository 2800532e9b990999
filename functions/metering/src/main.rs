//! Lambda entry point for the hourly metering schedule: state built once at cold
//! start, then each event rolls up its hour and any missed before it.

use lambda_runtime::{LambdaEvent, service_fn};
use sextant_metering::{MeteringHour, ScheduledEvent};
use sextant_shared::metering;
use sextant_shared::state::AppState;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sextant_shared::telemetry::init();
    let state = AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ScheduledEvent>| async move {
            let hour = MeteringHour::from(&event.payload);
            let hours = metering::roll_up_through(state, hour.start).await?;
            tracing::info!(hour = %hour.start, rolled_up = hours.len(), "metering hour");
            Ok::<_, lambda_runtime::Error>(serde_json::json!({ "hours": hours.len() }))
        },
    ))
    .await
}
