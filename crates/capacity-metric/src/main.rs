//! berth-capacity-metric: the scheduled Lambda that publishes
//! SchedulableContainers to CloudWatch. Wiring only; the work is in the
//! library.

use berth_capacity_metric::CapacityMetric;
use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};

#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = berth_aws::Settings::from_env()?;
    let clients = berth_aws::Clients::new(&berth_aws::load_sdk_config().await);
    let metric = CapacityMetric {
        ecs: clients.ecs.clone(),
        cloudwatch: clients.cloudwatch.clone(),
        definitions: berth_aws::Definitions::new(
            clients.dynamodb.clone(),
            &settings.definitions_table,
        ),
        cluster: settings.cluster.clone(),
        largest: settings.largest,
        thresholds: settings.thresholds,
    };
    // The schedule's event carries nothing the metric needs: take any.
    run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        let report = metric.run().await?;
        Ok::<u64, Error>(report.schedulable_containers)
    }))
    .await
}
