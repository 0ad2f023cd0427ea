//! The capacity metric against the local AWS: a cluster partly filled by
//! RunTask, a draining instance, an empty cluster; what it publishes is read
//! back from CloudWatch. (The scaler: scaler.rs.)

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_ecs::types::{ContainerInstanceStatus, LaunchType};
use berth_capacity_metric::{CapacityMetric, NAMESPACE, SCHEDULABLE_CONTAINERS};
use berth_core::capacity::LargestContainer;
use berth_tests::stack::{CLUSTER, Stack};

fn metric(stack: &Stack, largest: Option<LargestContainer>) -> CapacityMetric {
    CapacityMetric {
        cluster: stack.cluster(),
        metrics: stack.cluster_metrics(),
        definitions: stack.definitions(),
        largest,
        scaler: None,
        schedule: None,
    }
}

/// The latest value of `name` for the cluster, from CloudWatch.
pub async fn published(stack: &Stack, name: &str) -> Option<f64> {
    let now = SystemTime::now();
    let out = stack
        .clients()
        .cloudwatch
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name("ClusterName")
                .value(CLUSTER)
                .build(),
        )
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .period(60)
        .statistics(Statistic::Minimum)
        .send()
        .await
        .unwrap();
    out.datapoints()
        .iter()
        .max_by_key(|d| d.timestamp.map(|t| t.secs()))
        .and_then(|d| d.minimum)
}

#[tokio::test]
async fn a_partly_filled_cluster_gives_the_hand_computed_metric() {
    // Three instances of 4096 CPU units / 7482 MiB; the largest container is
    // 1024 / 2048, so an instance with k of them running holds 3 - k more.
    let stack = Stack::new(3).await;
    let ecs = &stack.clients().ecs;
    for _ in 0..4 {
        let out = ecs
            .run_task()
            .cluster(CLUSTER)
            .task_definition("train")
            .launch_type(LaunchType::Ec2)
            .send()
            .await
            .unwrap();
        assert_eq!(out.tasks().len(), 1);
    }
    let mut instances: Vec<(String, i32)> = stack
        .container_instances()
        .await
        .iter()
        .map(|ci| {
            (
                ci.container_instance_arn().unwrap().to_owned(),
                ci.running_tasks_count,
            )
        })
        .collect();
    instances.sort_by_key(|(_, running)| *running);
    assert_eq!(instances.iter().map(|(_, r)| r).sum::<i32>(), 4);

    // Drain the busiest instance: it no longer counts.
    let (drained, _) = instances.pop().unwrap();
    ecs.update_container_instances_state()
        .cluster(CLUSTER)
        .container_instances(&drained)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    let expected: i32 = instances.iter().map(|(_, running)| 3 - running).sum();

    let report = metric(&stack, Some(LargestContainer::new(1024, 2048).unwrap()))
        .run(false)
        .await
        .unwrap();
    assert_eq!(report.schedulable_containers, expected as u64, "{report:?}");
    assert_eq!(
        (report.instances, report.accepting, report.most_per_instance),
        (3, 2, 3)
    );
    assert_eq!(
        report.calls,
        (1, 1),
        "one list page and one describe for three instances"
    );
    assert_eq!(
        published(&stack, SCHEDULABLE_CONTAINERS).await,
        Some(f64::from(expected))
    );
}

#[tokio::test]
async fn an_empty_cluster_gives_zero_and_publishes_nothing() {
    let stack = Stack::new(0).await;
    let report = metric(&stack, Some(LargestContainer::new(1024, 2048).unwrap()))
        .run(false)
        .await
        .unwrap();
    assert_eq!((report.schedulable_containers, report.instances), (0, 0));
    // A cluster at rest costs no metric.
    assert_eq!(published(&stack, SCHEDULABLE_CONTAINERS).await, None);
}

#[tokio::test]
async fn the_largest_container_comes_from_the_definitions_when_not_configured() {
    let stack = Stack::new(1).await;
    let report = metric(&stack, None).run(false).await.unwrap();
    assert_eq!((report.largest.cpu, report.largest.memory), (1024, 2048));
    assert_eq!(report.schedulable_containers, 3);
}
