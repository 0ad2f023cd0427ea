//! berth-capacity-metric: the scheduled Lambda that publishes
//! SchedulableContainers to CloudWatch. Wiring only; the work is in the
//! library.

use std::time::Duration;

use berth_capacity_metric::{CapacityMetric, Scaler};
use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn, tracing};

#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = berth_aws::Settings::from_env()?;
    let clients = berth_aws::Clients::new(&berth_aws::load_sdk_config().await);
    let cluster = berth_aws::EcsCluster::for_deployment(&settings, &clients);
    let metric = CapacityMetric {
        cluster: cluster.clone(),
        metrics: berth_aws::metrics::ClusterMetrics::new(
            clients.cloudwatch.clone(),
            &settings.cluster,
        ),
        definitions: berth_aws::Definitions::for_deployment(&settings, &clients),
        largest: settings.largest,
        scaler: settings.scaling.as_ref().map(|s| Scaler {
            fleet: berth_aws::Fleet::new(clients.autoscaling.clone(), &s.group)
                .with_ec2(clients.ec2.clone())
                .with_launch_templates(s.launch_templates.clone()),
            cluster,
            store: berth_aws::JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
            instance_types: s.instance_types.clone(),
            scale_in_after: Duration::from_secs(u64::from(s.scale_in_after_seconds)),
            headroom: s.headroom,
            prices: settings.prices.clone(),
            fargate_spot: settings.fargate_spot,
        }),
        schedule: settings
            .scaler_rule
            .as_ref()
            .map(|rule| berth_aws::schedule::Schedule::new(clients.events.clone(), rule)),
    };
    // The schedule's event, or the driver's wake-up: which one is all the
    // run needs of it. The answer is the run's report; an error is reported
    // with its AWS code.
    let metric = &metric;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let woken = berth_aws::schedule::is_wake(&event.payload);
            metric.run(woken).await.map_err(Diagnostic::from)
        },
    ))
    .await
}
