//! berth-capacity-metric: the cron Lambda that publishes SchedulableContainers to CloudWatch.
//!
//! Wiring only so far: its handler arrives with its own change. Until then
//! every event is refused, so nothing is consumed that was not handled.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let _settings = berth_aws::Settings::from_env()?;
    let _clients = berth_aws::Clients::new(&berth_aws::load_sdk_config().await);
    run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            let _ = event;
            Err::<(), Error>("berth-capacity-metric does not handle events in this version".into())
        },
    ))
    .await
}
