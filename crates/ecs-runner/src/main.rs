//! berth-ecs-runner: follows ECS task state changes and Spot interruption
//! warnings (EventBridge), and sweeps timeouts (schedule).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use berth_aws::{JobQueue, JobStore, Settings};
use berth_ecs_runner::{EcsLauncher, FargateNetwork, Lifecycle, events};
use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let clients = berth_aws::Clients::new(&berth_aws::load_sdk_config().await);
    let queue_url = settings
        .queue_url
        .clone()
        .ok_or("BERTH_QUEUE_URL is not set: ecs-runner puts jobs back on the queue")?;
    let lifecycle = Lifecycle::new(
        JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
        EcsLauncher::new(
            clients.ecs.clone(),
            &settings.cluster,
            settings.ec2_capacity_provider.clone(),
            FargateNetwork::default(),
            settings.fargate_spot,
        ),
        JobQueue::new(clients.sqs.clone(), queue_url),
        settings.max_interruptions,
    );
    let lifecycle = &lifecycle;
    run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            Ok::<_, Error>(events::handle(lifecycle, event.payload).await?)
        },
    ))
    .await
}
