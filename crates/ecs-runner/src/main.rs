//! berth-ecs-runner: follows ECS task state changes and Spot interruption
//! warnings (EventBridge), and sweeps timeouts (schedule).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use berth_aws::Settings;
use berth_ecs_runner::{Lifecycle, events};
use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};

#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let clients = berth_aws::Clients::new(&berth_aws::load_sdk_config().await);
    let lifecycle = Lifecycle::for_deployment(&settings, &clients)?;
    let lifecycle = &lifecycle;
    run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            events::handle(lifecycle, event.payload)
                .await
                .map_err(events::diagnostic)
        },
    ))
    .await
}
