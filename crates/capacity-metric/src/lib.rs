//! berth-capacity-metric: once a minute, how many of the largest containers
//! the EC2 cluster can still place (`SchedulableContainers`), published to
//! CloudWatch; and the check that the scale-in threshold cannot loop.

use std::time::SystemTime;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_ecs::types::{ContainerInstance as EcsInstance, Resource};
use berth_aws::{AwsError, Definitions};
use berth_core::capacity::{
    ContainerInstance, InstanceStatus, LargestContainer, Resources, ScaleInLoop, Thresholds,
    check_scale_in, most_per_instance, schedulable_containers,
};
use berth_core::limits::ecs::DESCRIBE_CONTAINER_INSTANCES_MAX;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The metric's namespace and names.
pub const NAMESPACE: &str = berth_aws::metrics::NAMESPACE;
pub const SCHEDULABLE_CONTAINERS: &str = "SchedulableContainers";
/// 1 while the configured scale-in threshold would make the cluster loop.
pub const SCALE_IN_THRESHOLD_LOOPS: &str = "ScaleInThresholdLoops";

/// Describe calls in flight at once: ECS allows about 20 describe/list calls
/// a second per account, shared with everything else.
const DESCRIBE_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct CapacityMetric {
    pub ecs: aws_sdk_ecs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub definitions: Definitions,
    pub cluster: String,
    /// Configured; else the largest of the registered job definitions.
    pub largest: Option<LargestContainer>,
    /// The alarms' thresholds, when configured, for the self-check.
    pub thresholds: Option<Thresholds>,
}

/// What one run found and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub schedulable_containers: u64,
    /// Container instances seen, and those that take tasks.
    pub instances: usize,
    pub accepting: usize,
    pub largest: Resources,
    /// The most largest containers one of the cluster's instances holds.
    pub most_per_instance: u32,
    pub scale_in_loop: Option<ScaleInLoop>,
    /// AWS calls made: (list, describe).
    pub calls: (usize, usize),
}

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "no largest container: set BERTH_LARGEST_CPU and BERTH_LARGEST_MEMORY, or register a job definition"
    )]
    NoLargestContainer,
}

impl CapacityMetric {
    /// Counts, publishes and checks.
    pub async fn run(&self) -> Result<Report, MetricError> {
        let largest = match self.largest {
            Some(l) => l,
            None => self.largest_from_definitions().await?,
        };
        let (instances, calls) = self.container_instances().await?;
        let all: Vec<ContainerInstance> = instances.iter().map(|(ci, _)| *ci).collect();
        let schedulable = schedulable_containers(&all, largest);
        let per_instance = most_per_instance(
            instances
                .iter()
                .filter(|(ci, _)| ci.accepts_tasks())
                .map(|(_, registered)| *registered),
            largest,
        );
        let scale_in_loop = self
            .thresholds
            .and_then(|t| check_scale_in(t, per_instance).err());
        if let Some(l) = &scale_in_loop {
            tracing::error!(cluster = self.cluster.as_str(), problem = %l, "scale-in threshold would loop");
        }
        self.publish(schedulable, scale_in_loop.is_some()).await?;
        let report = Report {
            schedulable_containers: schedulable,
            instances: instances.len(),
            accepting: all.iter().filter(|c| c.accepts_tasks()).count(),
            largest: largest.resources(),
            most_per_instance: per_instance,
            scale_in_loop,
            calls,
        };
        tracing::info!(
            cluster = self.cluster.as_str(),
            schedulable_containers = report.schedulable_containers,
            instances = report.instances,
            accepting = report.accepting,
            most_per_instance = report.most_per_instance,
            "capacity"
        );
        Ok(report)
    }

    async fn largest_from_definitions(&self) -> Result<LargestContainer, MetricError> {
        let defs = self.definitions.scan().await?;
        LargestContainer::of(defs.iter().map(|d| Resources {
            cpu: d.cpu,
            memory: d.memory,
        }))
        .ok_or(MetricError::NoLargestContainer)
    }

    /// Every container instance of the cluster with its registered
    /// resources: listed 100 a page; each page described (100 a call) while
    /// the next is listed, a few describes at once.
    async fn container_instances(
        &self,
    ) -> Result<(Vec<(ContainerInstance, Resources)>, (usize, usize)), AwsError> {
        let permits = Arc::new(Semaphore::new(DESCRIBE_CONCURRENCY));
        let mut describing = JoinSet::new();
        let mut instances = Vec::new();
        let (mut lists, mut describes) = (0, 0);
        let mut pages = self
            .ecs
            .list_container_instances()
            .cluster(&self.cluster)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            lists += 1;
            let page = page.map_err(|e| AwsError::from_sdk("ecs:ListContainerInstances", e))?;
            let arns = page.container_instance_arns.unwrap_or_default();
            for chunk in arns.chunks(DESCRIBE_CONTAINER_INSTANCES_MAX) {
                // Waits while DESCRIBE_CONCURRENCY describes are in flight.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let request = self
                    .ecs
                    .describe_container_instances()
                    .cluster(&self.cluster)
                    .set_container_instances(Some(chunk.to_vec()));
                // Each answer is read down to what the count needs as soon as
                // it arrives: memory stays a few pages, whatever the cluster.
                describing.spawn(async move {
                    let answer = request.send().await;
                    drop(permit);
                    answer
                        .map(|out| {
                            out.container_instances()
                                .iter()
                                .map(read_instance)
                                .collect::<Vec<_>>()
                        })
                        .map_err(|e| AwsError::from_sdk("ecs:DescribeContainerInstances", e))
                });
                describes += 1;
            }
            while let Some(done) = describing.try_join_next() {
                instances.extend(joined(done)?);
            }
        }
        while let Some(done) = describing.join_next().await {
            instances.extend(joined(done)?);
        }
        Ok((instances, (lists, describes)))
    }

    async fn publish(&self, schedulable: u64, loops: bool) -> Result<(), AwsError> {
        let dimension = Dimension::builder()
            .name("ClusterName")
            .value(&self.cluster)
            .build();
        let now = DateTime::from(SystemTime::now());
        let datum = |name: &str, value: f64| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(dimension.clone())
                .value(value)
                .unit(StandardUnit::Count)
                .timestamp(now)
                .build()
        };
        let mut req = self
            .cloudwatch
            .put_metric_data()
            .namespace(NAMESPACE)
            .metric_data(datum(SCHEDULABLE_CONTAINERS, schedulable as f64));
        if self.thresholds.is_some() {
            req = req.metric_data(datum(
                SCALE_IN_THRESHOLD_LOOPS,
                if loops { 1.0 } else { 0.0 },
            ));
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("cloudwatch:PutMetricData", e))?;
        Ok(())
    }
}

fn joined(
    done: Result<Result<Vec<(ContainerInstance, Resources)>, AwsError>, tokio::task::JoinError>,
) -> Result<Vec<(ContainerInstance, Resources)>, AwsError> {
    done.map_err(|e| AwsError {
        operation: "ecs:DescribeContainerInstances",
        code: None,
        message: e.to_string(),
        retryable: true,
    })?
}

/// A described container instance as the capacity math sees it, with its
/// registered (empty) resources.
fn read_instance(ci: &EcsInstance) -> (ContainerInstance, Resources) {
    let resources = |list: &[Resource]| {
        let value = |name: &str| {
            list.iter()
                .find(|r| r.name() == Some(name))
                .map_or(0, |r| u32::try_from(r.integer_value).unwrap_or(0))
        };
        Resources {
            cpu: value("CPU"),
            memory: value("MEMORY"),
        }
    };
    let status = ci
        .status()
        .map_or(InstanceStatus::Other, InstanceStatus::from_ecs);
    let instance = ContainerInstance {
        status,
        agent_connected: ci.agent_connected,
        remaining: resources(ci.remaining_resources()),
    };
    (instance, resources(ci.registered_resources()))
}
