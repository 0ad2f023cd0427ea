//! berth-capacity-metric: once a minute while anything may need it, and when
//! the driver wakes it, how many of the largest containers the EC2 cluster
//! can still place (`SchedulableContainers`), published to CloudWatch; and,
//! when the cluster has an Auto Scaling group, the scaler (see [`scaler`]):
//! berth-core's decision, acted on. At rest it turns its own schedule off
//! (`berth_aws::schedule`).

pub mod scaler;

use berth_aws::metrics::ClusterMetrics;
use berth_aws::schedule::Schedule;
use berth_aws::{AwsError, Definitions, EcsCluster};
use berth_core::capacity::{
    ContainerInstance, LargestContainer, Resources, most_per_instance, schedulable_containers,
};
use berth_core::scaling::{self, InstanceType, Room, Unplaceable};
use serde::Serialize;

pub use scaler::{Scaler, Scaling};

/// The metric's namespace and names.
pub const NAMESPACE: &str = berth_aws::metrics::NAMESPACE;
pub const SCHEDULABLE_CONTAINERS: &str = berth_aws::metrics::SCHEDULABLE_CONTAINERS;
/// How many job definitions the group cannot always run (published while
/// there are any).
pub const UNPLACEABLE_DEFINITIONS: &str = "UnplaceableDefinitions";
/// How many jobs wait for capacity on the cluster (published with the
/// scaler, while the cluster has instances or jobs wait).
pub const JOBS_WAITING: &str = berth_aws::metrics::JOBS_WAITING;

#[derive(Debug, Clone)]
pub struct CapacityMetric {
    pub cluster: EcsCluster,
    pub metrics: ClusterMetrics,
    pub definitions: Definitions,
    /// Configured; else the largest of the registered job definitions.
    pub largest: Option<LargestContainer>,
    /// The scaler, when the cluster's instances are an Auto Scaling group.
    pub scaler: Option<Scaler>,
    /// Its own schedule, turned off at rest and on when woken to work
    /// (`BERTH_SCALER_RULE`); `None`: it runs on whatever calls it.
    pub schedule: Option<Schedule>,
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
    /// What became of the schedule: `off` (at rest), `on` (woken to work),
    /// or nothing.
    pub schedule: Option<&'static str>,
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

/// The invocation's error as Lambda reports it (`errorType`,
/// `errorMessage`): the AWS error code, or what is missing.
impl From<MetricError> for lambda_runtime::Diagnostic {
    fn from(e: MetricError) -> Self {
        let error_type = match &e {
            MetricError::Aws(aws) => aws.error_type().to_owned(),
            MetricError::NoLargestContainer => "NoLargestContainer".to_owned(),
        };
        Self {
            error_type,
            error_message: e.to_string(),
        }
    }
}

impl CapacityMetric {
    /// Counts, publishes and scales; `woken`: the driver asked (a job waits
    /// for capacity), not the schedule. At rest, a scheduled run turns the
    /// schedule off; woken to work, a run turns it on.
    pub async fn run(&self, woken: bool) -> Result<Report, MetricError> {
        let (observed, calls) = self.cluster.container_instances().await?;
        let scaler = match &self.scaler {
            Some(s) => Some(s.at_current_prices().await),
            None => None,
        };
        let types = scaler.as_ref().map(|s| s.instance_types(&observed));
        let (largest, unplaceable, pays) = self.largest(scaler.as_ref(), types.as_deref()).await?;
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
            tracing::warn!(cluster = self.cluster.cluster(), problem = %problem, "job definition");
        }
        let scaling = match (&scaler, &types) {
            (Some(scaler), Some(types)) => Some(scaler.run(&observed, types, largest).await?),
            _ => None,
        };
        // An empty cluster that no job waits for has nothing to say:
        // nothing is published (nor paid for) while it rests.
        let waiting = scaling.as_ref().map_or(0, |s| s.waiting);
        if !observed.is_empty() || !unplaceable.is_empty() || waiting > 0 {
            let mut metrics = vec![(SCHEDULABLE_CONTAINERS, schedulable as f64)];
            if !unplaceable.is_empty() {
                metrics.push((UNPLACEABLE_DEFINITIONS, unplaceable.len() as f64));
            }
            if scaling.is_some() {
                metrics.push((JOBS_WAITING, f64::from(waiting)));
            }
            self.metrics.publish(&metrics).await?;
        }
        // At rest, unless a definition's jobs on Fargate could fill an
        // instance that costs less: then the scaler keeps watching them.
        let at_rest = match &scaling {
            Some(s) => s.at_rest && !pays,
            None => observed.is_empty(),
        };
        let schedule = match &self.schedule {
            Some(rule) if at_rest && !woken => {
                rule.disable().await?;
                tracing::info!(
                    rule = rule.rule(),
                    "at rest: the schedule is off until a job asks"
                );
                Some("off")
            }
            Some(rule) if !at_rest && woken => {
                rule.enable().await?;
                Some("on")
            }
            _ => None,
        };
        let report = Report {
            schedule,
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
            cluster = self.cluster.cluster(),
            schedulable_containers = report.schedulable_containers,
            instances = report.instances,
            accepting = report.accepting,
            most_per_instance = report.most_per_instance,
            "capacity"
        );
        Ok(report)
    }

    /// The largest container, and the definitions left out of it: with a
    /// scaler, those that do not fit every instance type of the group; and
    /// whether jobs of a definition, on Fargate, could fill an instance of
    /// the group that costs less (with a scaler, at its prices).
    async fn largest(
        &self,
        scaler: Option<&Scaler>,
        types: Option<&[InstanceType]>,
    ) -> Result<(Option<LargestContainer>, Vec<Unplaceable>, bool), MetricError> {
        if self.largest.is_some() && types.is_none() {
            return Ok((self.largest, Vec::new(), false));
        }
        let all = self.definitions.scan().await?;
        let pays = match (scaler, types) {
            (Some(scaler), Some(types)) => scaler.could_pay(&all, types),
            _ => false,
        };
        let defs: Vec<(String, Room)> = all
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
            Some(l) => Ok((Some(l), unplaceable, pays)),
            // With a scaler, a group that can run none of the definitions
            // still scales for nothing and reports them.
            None if types.is_some() => Ok((None, unplaceable, pays)),
            None => Err(MetricError::NoLargestContainer),
        }
    }
}
