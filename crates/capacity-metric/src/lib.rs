//! berth-capacity-metric: once a minute, how many of the largest containers
//! the EC2 cluster can still place (`SchedulableContainers`), published to
//! CloudWatch; and, when the cluster has an Auto Scaling group, the scaler
//! (see [`scaler`]): berth-core's decision, acted on.

pub mod scaler;

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_ecs::types::{ContainerInstance as EcsInstance, Resource};
use berth_aws::{AwsError, Definitions};
use berth_core::capacity::{
    ContainerInstance, InstanceStatus, LargestContainer, Resources, most_per_instance,
    schedulable_containers,
};
use berth_core::limits::ecs::DESCRIBE_CONTAINER_INSTANCES_MAX;
use berth_core::scaling::{self, InstanceType, Room, Unplaceable};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use scaler::{Scaler, Scaling};

/// The metric's namespace and names.
pub const NAMESPACE: &str = berth_aws::metrics::NAMESPACE;
pub const SCHEDULABLE_CONTAINERS: &str = "SchedulableContainers";
/// How many job definitions the group cannot always run (published while
/// there are any).
pub const UNPLACEABLE_DEFINITIONS: &str = "UnplaceableDefinitions";

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
    /// The scaler, when the cluster's instances are an Auto Scaling group.
    pub scaler: Option<Scaler>,
}

/// What one run found, published and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub schedulable_containers: u64,
    /// Container instances seen, and those that take tasks.
    pub instances: usize,
    pub accepting: usize,
    pub largest: Resources,
    /// The most largest containers one of the cluster's instances holds.
    pub most_per_instance: u32,
    /// Job definitions the group cannot always run, and why.
    pub unplaceable: Vec<String>,
    /// What the scaler did, when there is one.
    pub scaling: Option<Scaling>,
    /// AWS calls made to read the cluster: (list, describe).
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

/// A container instance as ECS describes it, with what the metric and the
/// scaler read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub arn: String,
    pub ec2_instance_id: String,
    pub instance_type: Option<String>,
    pub instance: ContainerInstance,
    pub registered: Room,
    pub remaining: Room,
    /// Tasks running or pending on it.
    pub tasks: u32,
    /// berth's attributes on it: since when it is idle, since when it
    /// retires (epoch ms, as written).
    pub idle_since: Option<String>,
    pub retiring: Option<String>,
}

impl CapacityMetric {
    /// Counts, publishes and scales.
    pub async fn run(&self) -> Result<Report, MetricError> {
        let (observed, calls) = self.container_instances().await?;
        let types = self.scaler.as_ref().map(|s| s.instance_types(&observed));
        let (largest, unplaceable) = self.largest(types.as_deref()).await?;
        let all: Vec<ContainerInstance> = observed.iter().map(|o| o.instance).collect();
        let schedulable = largest.map_or(0, |l| schedulable_containers(&all, l));
        let per_instance = largest.map_or(0, |l| {
            most_per_instance(
                observed
                    .iter()
                    .filter(|o| o.instance.accepts_tasks())
                    .map(|o| o.registered.resources()),
                l,
            )
        });
        for problem in &unplaceable {
            tracing::warn!(cluster = self.cluster.as_str(), problem = %problem, "job definition");
        }
        // An empty cluster has nothing to say: nothing is published (nor
        // paid for) while it rests.
        if !observed.is_empty() || !unplaceable.is_empty() {
            self.publish(schedulable, unplaceable.len()).await?;
        }
        let scaling = match (&self.scaler, &types) {
            (Some(scaler), Some(types)) => Some(scaler.run(&observed, types, largest).await?),
            _ => None,
        };
        let report = Report {
            schedulable_containers: schedulable,
            instances: observed.len(),
            accepting: all.iter().filter(|c| c.accepts_tasks()).count(),
            largest: largest.map_or(Resources { cpu: 0, memory: 0 }, LargestContainer::resources),
            most_per_instance: per_instance,
            unplaceable: unplaceable.iter().map(ToString::to_string).collect(),
            scaling,
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

    /// The largest container, and the definitions left out of it: with a
    /// scaler, those that do not fit every instance type of the group.
    async fn largest(
        &self,
        types: Option<&[InstanceType]>,
    ) -> Result<(Option<LargestContainer>, Vec<Unplaceable>), MetricError> {
        if self.largest.is_some() && types.is_none() {
            return Ok((self.largest, Vec::new()));
        }
        let defs: Vec<(String, Room)> = self
            .definitions
            .scan()
            .await?
            .into_iter()
            .map(|d| (d.name, Room::new(d.cpu, d.memory, d.gpu)))
            .collect();
        let (derived, unplaceable) = match types {
            Some(types) => scaling::largest_container(&defs, types),
            None => (
                LargestContainer::of(defs.iter().map(|(_, r)| r.resources())),
                Vec::new(),
            ),
        };
        match self.largest.or(derived) {
            Some(l) => Ok((Some(l), unplaceable)),
            // With a scaler, a group that can run none of the definitions
            // still scales for nothing and reports them.
            None if types.is_some() => Ok((None, unplaceable)),
            None => Err(MetricError::NoLargestContainer),
        }
    }

    /// Every container instance of the cluster: listed 100 a page; each
    /// page described (100 a call) while the next is listed, a few
    /// describes at once.
    async fn container_instances(&self) -> Result<(Vec<Observed>, (usize, usize)), AwsError> {
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

    async fn publish(&self, schedulable: u64, unplaceable: usize) -> Result<(), AwsError> {
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
        if unplaceable > 0 {
            req = req.metric_data(datum(UNPLACEABLE_DEFINITIONS, unplaceable as f64));
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("cloudwatch:PutMetricData", e))?;
        Ok(())
    }
}

fn joined(
    done: Result<Result<Vec<Observed>, AwsError>, tokio::task::JoinError>,
) -> Result<Vec<Observed>, AwsError> {
    done.map_err(|e| AwsError {
        operation: "ecs:DescribeContainerInstances",
        code: None,
        message: e.to_string(),
        retryable: true,
    })?
}

/// A described container instance as the metric and the scaler see it.
fn read_instance(ci: &EcsInstance) -> Observed {
    let room = |list: &[Resource]| {
        let value = |name: &str| {
            list.iter()
                .find(|r| r.name() == Some(name))
                .map_or(0, |r| u32::try_from(r.integer_value).unwrap_or(0))
        };
        // ECS lists a GPU instance's GPUs by id.
        let gpus = list
            .iter()
            .find(|r| r.name() == Some("GPU"))
            .map_or(0, |r| r.string_set_value().len() as u32);
        Room::new(value("CPU"), value("MEMORY"), gpus)
    };
    let status = ci
        .status()
        .map_or(InstanceStatus::Other, InstanceStatus::from_ecs);
    let remaining = room(ci.remaining_resources());
    // Only the three attributes read here are copied out of the answer.
    let (mut instance_type, mut idle_since, mut retiring) = (None, None, None);
    for a in ci.attributes() {
        let slot = match a.name() {
            "ecs.instance-type" => &mut instance_type,
            berth_aws::fleet::IDLE_SINCE => &mut idle_since,
            berth_aws::fleet::RETIRING => &mut retiring,
            _ => continue,
        };
        *slot = Some(a.value().unwrap_or_default().to_owned());
    }
    Observed {
        arn: ci.container_instance_arn().unwrap_or_default().to_owned(),
        ec2_instance_id: ci.ec2_instance_id().unwrap_or_default().to_owned(),
        instance_type,
        instance: ContainerInstance {
            status,
            agent_connected: ci.agent_connected,
            remaining: remaining.resources(),
        },
        registered: room(ci.registered_resources()),
        remaining,
        tasks: u32::try_from(ci.running_tasks_count + ci.pending_tasks_count).unwrap_or(0),
        idle_since,
        retiring,
    }
}
