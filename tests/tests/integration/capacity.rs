//! The capacity metric against the local AWS: a cluster partly filled by
//! RunTask, a draining instance, an empty cluster, and the threshold check;
//! what it publishes is read back from CloudWatch.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_ecs::types::{ContainerInstanceStatus, LaunchType};
use berth_capacity_metric::{
    CapacityMetric, NAMESPACE, SCALE_IN_THRESHOLD_LOOPS, SCHEDULABLE_CONTAINERS,
};
use berth_core::capacity::{LargestContainer, Thresholds};
use berth_tests::stack::{CLUSTER, Stack};

fn metric(
    stack: &Stack,
    largest: Option<LargestContainer>,
    thresholds: Option<Thresholds>,
) -> CapacityMetric {
    CapacityMetric {
        ecs: stack.clients().ecs.clone(),
        cloudwatch: stack.clients().cloudwatch.clone(),
        definitions: stack.definitions(),
        cluster: CLUSTER.into(),
        largest,
        thresholds,
    }
}

/// The latest value of `name` for the cluster, from CloudWatch.
async fn published(stack: &Stack, name: &str) -> Option<f64> {
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

    let report = metric(
        &stack,
        Some(LargestContainer::new(1024, 2048).unwrap()),
        None,
    )
    .run()
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
async fn an_empty_cluster_gives_zero() {
    let stack = Stack::new(0).await;
    let report = metric(
        &stack,
        Some(LargestContainer::new(1024, 2048).unwrap()),
        None,
    )
    .run()
    .await
    .unwrap();
    assert_eq!((report.schedulable_containers, report.instances), (0, 0));
    assert_eq!(published(&stack, SCHEDULABLE_CONTAINERS).await, Some(0.0));
}

#[tokio::test]
async fn the_largest_container_comes_from_the_definitions_when_not_configured() {
    let stack = Stack::new(1).await;
    let report = metric(&stack, None, None).run().await.unwrap();
    assert_eq!((report.largest.cpu, report.largest.memory), (1024, 2048));
    assert_eq!(report.schedulable_containers, 3);
}

#[tokio::test]
async fn the_self_check_fires_for_a_looping_threshold_and_not_for_a_good_one() {
    let stack = Stack::new(2).await;
    let largest = Some(LargestContainer::new(1024, 2048).unwrap());

    let looping = Thresholds {
        scale_out_below: 1,
        scale_in_above: 2,
    };
    let report = metric(&stack, largest, Some(looping)).run().await.unwrap();
    let problem = report
        .scale_in_loop
        .expect("one instance holds 3: scale-in above 2 loops");
    assert_eq!((problem.per_instance, problem.needed), (3, 3));
    assert_eq!(published(&stack, SCALE_IN_THRESHOLD_LOOPS).await, Some(1.0));

    let good = Thresholds {
        scale_out_below: 1,
        scale_in_above: 3,
    };
    let report = metric(&stack, largest, Some(good)).run().await.unwrap();
    assert_eq!(report.scale_in_loop, None);
    // The minute's minimum is 0: the good threshold published a 0.
    assert_eq!(published(&stack, SCALE_IN_THRESHOLD_LOOPS).await, Some(0.0));
}
