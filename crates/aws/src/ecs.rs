//! ECS, as berth uses it: one cluster where jobs run (RunTask on EC2, the
//! capacity provider when configured, else launch type EC2; then Fargate),
//! are stopped, described and found again; and its container instances,
//! read for the capacity metric and the scaler, drained and marked.
//!
//! Each launch carries an idempotency token and names its job and launch in
//! `startedBy` and in tags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, Attribute, AwsVpcConfiguration, CapacityProviderStrategyItem,
    ContainerInstance as EcsInstance, ContainerInstanceStatus, ContainerOverride, CpuArchitecture,
    DesiredStatus, KeyValuePair, LaunchType, NetworkConfiguration, NetworkMode,
    PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType,
    Resource, ResourceRequirement, ResourceType, Tag, Task, TaskOverride,
};
use berth_core::capacity::{ContainerInstance, InstanceStatus};
use berth_core::launch::{LaunchNumber, TokenScope, client_token, started_by};
use berth_core::limits::ecs::DESCRIBE_CONTAINER_INSTANCES_MAX;
use berth_core::prices::Arch;
use berth_core::routing::OnFargate;
use berth_core::scaling::Room;
use berth_core::{ResolvedJob, Route};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{AwsError, Clients, LaunchError, Settings};

/// The ECS attribute holding when (epoch ms) an instance last had no task.
pub const IDLE_SINCE: &str = "berth.idle-since";
/// The ECS attribute marking an instance the scaler drained (epoch ms).
pub const RETIRING: &str = "berth.retiring";
/// The ECS attribute holding when (epoch ms) a task last stopped on an
/// instance (ecs-runner writes it from the task's event): the instance is
/// idle since then at the earliest, and has room again.
pub const TASK_STOPPED: &str = "berth.task-stopped";
/// The ECS attribute marking when (epoch ms) ECS refused a task on an
/// instance for a reason the scaler cannot count (no network interface
/// left, a taken host port, a disconnected agent): until a task stops
/// there, the scaler plans on no room on it.
pub const REFUSED: &str = "berth.refused";
/// The ECS attribute marking an instance its infrastructure reclaims (a
/// Spot interruption or rebalance warning, epoch ms): it goes whatever
/// the scaler had planned for it.
pub const RECLAIMED: &str = "berth.reclaimed";
/// How an instance is bought, `spot` or `on-demand`: set at boot from the
/// instance metadata's `instance-life-cycle` (the launch templates' user
/// data), read to price the tasks that ran there.
pub const MARKET: &str = "berth.market";

/// RunTask's failure reasons for room that CPU, memory and GPUs do not
/// tell (ECS developer guide, "API failure reasons").
const UNCOUNTED_REFUSALS: [&str; 5] = [
    "RESOURCE:ENI",
    "RESOURCE:PORTS",
    "RESOURCE:PORTS_TCP",
    "RESOURCE:PORTS_UDP",
    "AGENT",
];

/// Describe calls in flight at once when reading the container instances:
/// ECS allows about 20 describe/list calls a second per account, shared
/// with everything else.
const DESCRIBE_CONCURRENCY: usize = 4;

/// Where a RunTask left the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A task was started.
    Placed { task_arn: String },
    /// The capacity had no room (the reason as ECS gave it).
    NoRoom { reason: String },
}

/// The network of Fargate tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FargateNetwork {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

/// How jobs are launched on the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launching {
    /// The EC2 capacity provider; `None`: launch type EC2.
    pub ec2_capacity_provider: Option<String>,
    pub fargate: FargateNetwork,
}

/// berth's ECS cluster.
#[derive(Debug, Clone)]
pub struct EcsCluster {
    ecs: Client,
    cluster: String,
    launching: Launching,
    /// What RunTask needs to know of each task definition, read once in a
    /// while (a family name stands for its latest revision, which changes).
    task_definitions: Arc<Mutex<HashMap<String, (Instant, TaskDefinitionFacts)>>>,
}

pub use berth_core::definition::TaskDefinitionFacts;

/// How long what was read of a task definition is trusted.
const TASK_DEFINITION_TTL: Duration = Duration::from_secs(300);

/// ECS's answer when a cluster has no container instance at all: for berth
/// that is "no room", not a broken request.
pub const NO_INSTANCES: &str = "No Container Instances were found in your cluster";

impl EcsCluster {
    pub fn new(ecs: Client, cluster: impl Into<String>, launching: Launching) -> Self {
        Self {
            ecs,
            cluster: cluster.into(),
            launching,
            task_definitions: Arc::default(),
        }
    }

    /// The cluster of the deployment `settings` describe, on `clients`.
    pub fn for_deployment(settings: &Settings, clients: &Clients) -> Self {
        Self::new(
            clients.ecs.clone(),
            &settings.cluster,
            Launching {
                ec2_capacity_provider: settings.ec2_capacity_provider.clone(),
                fargate: FargateNetwork {
                    subnets: settings.fargate_subnets.clone(),
                    security_groups: settings.fargate_security_groups.clone(),
                    assign_public_ip: settings.fargate_public_ip,
                },
            },
        )
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Runs one task of `job` on the cluster's EC2 capacity, bin-packed on
    /// memory: tasks fill the fullest instance that holds them, so the rest
    /// go idle and the scaler can let them go. A task definition in `awsvpc`
    /// mode gets the Fargate network (its subnets and security groups); one
    /// with a task size gets the job's size as the task's, since a container
    /// may not have more than its task.
    pub async fn run_on_ec2(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
    ) -> Result<Placement, LaunchError> {
        let facts = self.checked_task_definition(job).await?;
        // A definition that may run on Fargate has an `awsvpc` task
        // definition with a task size (Fargate requires both).
        let awsvpc = facts.awsvpc || job.fargate_allowed;
        let sized = facts.sized || job.fargate_allowed;
        let mut req = self
            .run_task(
                job,
                launch,
                TokenScope::Ec2,
                sized.then_some((job.cpu, job.memory)),
            )
            .placement_strategy(
                PlacementStrategy::builder()
                    .r#type(PlacementStrategyType::Binpack)
                    .field("memory")
                    .build(),
            )
            .set_network_configuration(if awsvpc {
                self.network(false)?.into()
            } else {
                None
            })
            .set_placement_constraints(placement_constraints(job, facts.architecture));
        req = match &self.launching.ec2_capacity_provider {
            Some(provider) => req.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(provider)
                    .weight(1)
                    .build()
                    .map_err(build)?,
            ),
            None => req.launch_type(LaunchType::Ec2),
        };
        match req.send().await {
            Ok(out) => {
                self.mark_refused(&out).await;
                Ok(placement(out))
            }
            Err(e) => {
                let err = AwsError::from_sdk("ecs:RunTask", e);
                if err.is_code("InvalidParameterException") && err.message.contains(NO_INSTANCES) {
                    return Ok(Placement::NoRoom {
                        reason: NO_INSTANCES.to_owned(),
                    });
                }
                Err(LaunchError::from_aws(err))
            }
        }
    }

    /// Runs one task of `job` on Fargate as `on` says: its size, and on
    /// Fargate Spot (the `FARGATE_SPOT` capacity provider) or on demand.
    /// Fargate Spot with no capacity is `NoRoom`: ECS does not go on to
    /// Fargate itself, the caller does.
    pub async fn run_on_fargate(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        on: OnFargate,
    ) -> Result<Placement, LaunchError> {
        self.checked_task_definition(job).await?;
        let network = self.network(true)?;
        let scope = if on.spot {
            TokenScope::FargateSpot
        } else {
            TokenScope::Fargate
        };
        let mut req = self
            .run_task(job, launch, scope, Some((on.size.cpu, on.size.memory)))
            .network_configuration(network);
        req = if on.spot {
            req.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .weight(1)
                    .build()
                    .map_err(build)?,
            )
        } else {
            req.launch_type(LaunchType::Fargate)
        };
        match req.send().await {
            Ok(out) => Ok(placement(out)),
            Err(e) => Err(LaunchError::from_aws(AwsError::from_sdk("ecs:RunTask", e))),
        }
    }

    /// Marks [`REFUSED`] the instances that RunTask's failures say refused
    /// the task for room the scaler cannot count (best effort: a mark not
    /// written leaves the scaler counting room a later try finds again).
    async fn mark_refused(&self, out: &RunTaskOutput) {
        if out.tasks().iter().any(|t| t.task_arn.is_some()) {
            return;
        }
        let now = crate::store::now_ms().to_string();
        for f in out.failures() {
            let (Some(arn), Some(reason)) = (f.arn(), f.reason()) else {
                continue;
            };
            if !UNCOUNTED_REFUSALS.contains(&reason) {
                continue;
            }
            if let Err(e) = self.put_attribute(arn, REFUSED, &now).await {
                tracing::warn!(container_instance = arn, reason, error = %e, "refusal not marked");
            }
        }
    }

    /// One task of launch `launch` of `job`, named and tokened for `scope`.
    fn run_task(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        scope: TokenScope,
        task_size: Option<(u32, u32)>,
    ) -> RunTaskFluentBuilder {
        self.ecs
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&job.task_definition)
            .count(1)
            .started_by(started_by(&job.job_id, launch))
            .client_token(client_token(&job.job_id, launch, scope))
            .set_tags(Some(tags(job, launch)))
            .overrides(overrides(job, launch, task_size))
    }

    /// The job's task definition, read (or remembered) and checked against
    /// the job's definition as `berth definitions put` checks it: a job
    /// whose container or Fargate setting does not fit it fails for good,
    /// with the reason, before RunTask.
    async fn checked_task_definition(
        &self,
        job: &ResolvedJob,
    ) -> Result<TaskDefinitionFacts, LaunchError> {
        let facts = self.task_definition(&job.task_definition).await?;
        job.check_task_definition(&facts)
            .map_err(|e| LaunchError::Permanent(e.to_string()))?;
        Ok(facts)
    }

    /// What RunTask needs to know of task definition `name`: read with
    /// DescribeTaskDefinition, then trusted for [`TASK_DEFINITION_TTL`].
    /// The architecture the tasks of task definition `name` run on: its
    /// runtime platform's, else x86 (ECS's default). Where it cannot be
    /// read, x86, with a warning.
    pub async fn architecture_of(&self, name: &str) -> Arch {
        match self.task_definition(name).await {
            Ok(facts) => facts.architecture.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(task_definition = name, error = %e, "architecture unknown: taken for x86");
                Arch::X86_64
            }
        }
    }

    pub async fn task_definition(&self, name: &str) -> Result<TaskDefinitionFacts, LaunchError> {
        let cached = self
            .task_definitions
            .lock()
            .ok()
            .and_then(|known| known.get(name).cloned())
            .filter(|(read, _)| read.elapsed() < TASK_DEFINITION_TTL);
        if let Some((_, facts)) = cached {
            return Ok(facts);
        }
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(name)
            .send()
            .await
            .map_err(|e| {
                LaunchError::from_aws(AwsError::from_sdk("ecs:DescribeTaskDefinition", e))
            })?;
        let definition = out.task_definition();
        let facts = TaskDefinitionFacts {
            awsvpc: definition.and_then(|d| d.network_mode()) == Some(&NetworkMode::Awsvpc),
            sized: definition.is_some_and(|d| d.cpu().is_some() || d.memory().is_some()),
            fargate: definition.is_some_and(|d| {
                d.requires_compatibilities()
                    .contains(&aws_sdk_ecs::types::Compatibility::Fargate)
            }),
            containers: definition
                .map(|d| {
                    d.container_definitions()
                        .iter()
                        .filter_map(|c| c.name().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            architecture: definition
                .and_then(|d| d.runtime_platform())
                .and_then(|p| p.cpu_architecture())
                .and_then(|a| match a {
                    CpuArchitecture::Arm64 => Some(Arch::Arm64),
                    CpuArchitecture::X8664 => Some(Arch::X86_64),
                    _ => None,
                }),
        };
        if let Ok(mut known) = self.task_definitions.lock() {
            known.insert(name.to_owned(), (Instant::now(), facts.clone()));
        }
        Ok(facts)
    }

    /// The log driver and its options of `container` in the task definition
    /// `task_arn` ran, or, when ECS no longer knows the task (it keeps
    /// stopped tasks for an hour or so), in `task_definition` as it is now.
    /// `None`: the task definition has no such container.
    pub async fn container_log_configuration(
        &self,
        task_arn: &str,
        task_definition: &str,
        container: &str,
    ) -> Result<Option<(Option<String>, HashMap<String, String>)>, AwsError> {
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(task_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeTasks", e))?;
        let ran = described
            .tasks()
            .first()
            .and_then(|t| t.task_definition_arn())
            .unwrap_or(task_definition)
            .to_owned();
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(&ran)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeTaskDefinition", e))?;
        let found = out
            .task_definition()
            .into_iter()
            .flat_map(|d| d.container_definitions())
            .find(|c| c.name() == Some(container))
            .map(|c| {
                let config = c.log_configuration();
                (
                    config.map(|l| l.log_driver().as_str().to_owned()),
                    config
                        .and_then(|l| l.options())
                        .cloned()
                        .unwrap_or_default(),
                )
            });
        Ok(found)
    }

    /// The `awsvpc` network of Fargate tasks (and of EC2 tasks of
    /// definitions that may run on Fargate). Only a Fargate task may have a
    /// public IP (ECS refuses one for a task on an instance, whose traffic
    /// leaves through the instance's subnet).
    fn network(&self, fargate: bool) -> Result<NetworkConfiguration, LaunchError> {
        if self.launching.fargate.subnets.is_empty() {
            return Err(LaunchError::Permanent(
                "awsvpc tasks need subnets: set the stack's Subnets parameter (BERTH_FARGATE_SUBNETS)".into(),
            ));
        }
        let public_ip = if fargate && self.launching.fargate.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        };
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.launching.fargate.subnets.clone()))
            .set_security_groups(Some(self.launching.fargate.security_groups.clone()))
            .assign_public_ip(public_ip)
            .build()
            .map_err(build)?;
        Ok(NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build())
    }

    /// Stops `task_arn` with `reason` (shown as the task's stopped reason).
    /// A task that has stopped already is no error.
    pub async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), AwsError> {
        match self
            .ecs
            .stop_task()
            .cluster(&self.cluster)
            .task(task_arn)
            .reason(reason)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = AwsError::from_sdk("ecs:StopTask", e);
                // ECS answers a stop of a task it no longer knows with this.
                if err.is_code("InvalidParameterException") && err.message.contains("not found") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The tasks of this cluster named in `task_arns` (at most 100), as ECS
    /// describes them now, each as the change its event would carry. Tasks
    /// ECS no longer knows are left out.
    pub async fn describe(&self, task_arns: &[String]) -> Result<Vec<TaskChange>, AwsError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(task_arns.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeTasks", e))?;
        Ok(out.tasks().iter().map(TaskChange::from).collect())
    }

    /// The task of `job`'s launch `launch`, running or stopped, as ECS
    /// describes it, if one was started (used when a delivery takes over a
    /// launch whose outcome was never recorded). ListTasks lists running
    /// tasks unless asked for stopped ones, which ECS keeps listing for a
    /// while (an hour at least) after they stop.
    pub async fn find_task(
        &self,
        job_id: &str,
        launch: LaunchNumber,
    ) -> Result<Option<TaskChange>, LaunchError> {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .started_by(started_by(job_id, launch))
                .desired_status(status)
                .send()
                .await
                .map_err(|e| LaunchError::from_aws(AwsError::from_sdk("ecs:ListTasks", e)))?;
            let Some(arn) = out.task_arns.unwrap_or_default().into_iter().next() else {
                continue;
            };
            let described = self
                .describe(std::slice::from_ref(&arn))
                .await
                .map_err(LaunchError::from_aws)?;
            return Ok(described.into_iter().next());
        }
        Ok(None)
    }
}

/// The cluster's container instances.
impl EcsCluster {
    /// Every container instance of the cluster, read for the capacity
    /// metric and the scaler: listed 100 a page; each page described (100 a
    /// call) while the next is listed, a few describes at once. Also the
    /// calls made: (list, describe).
    pub async fn container_instances(&self) -> Result<(Vec<Observed>, (usize, usize)), AwsError> {
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
                                .map(Observed::from)
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

    /// Drains the container instance on EC2 instance `instance_id`, so that
    /// nothing new is placed there, and marks it [`RECLAIMED`] (its
    /// infrastructure takes it back). Returns the container instance, or
    /// `None` when the instance is not in the cluster.
    pub async fn drain_instance(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let listed = self
            .ecs
            .list_container_instances()
            .cluster(&self.cluster)
            .filter(format!("ec2InstanceId == {instance_id}"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<String>, _>>()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:ListContainerInstances", e))?;
        // The filter narrows the list where it is supported; the describe
        // below is what decides.
        for chunk in listed.chunks(DESCRIBE_CONTAINER_INSTANCES_MAX) {
            let described = self
                .ecs
                .describe_container_instances()
                .cluster(&self.cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ecs:DescribeContainerInstances", e))?;
            let Some(arn) = described
                .container_instances()
                .iter()
                .find(|ci| ci.ec2_instance_id() == Some(instance_id))
                .and_then(|ci| ci.container_instance_arn.clone())
            else {
                continue;
            };
            self.drain(std::slice::from_ref(&arn)).await?;
            self.put_attribute(&arn, RECLAIMED, &crate::store::now_ms().to_string())
                .await?;
            return Ok(Some(arn));
        }
        Ok(None)
    }

    /// Container instance `arn` as ECS describes it now; `None` when the
    /// cluster no longer has it.
    pub async fn container_instance(&self, arn: &str) -> Result<Option<Observed>, AwsError> {
        let described = self
            .ecs
            .describe_container_instances()
            .cluster(&self.cluster)
            .container_instances(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeContainerInstances", e))?;
        Ok(described
            .container_instances()
            .iter()
            .find(|ci| ci.container_instance_arn() == Some(arn))
            .map(Observed::from))
    }

    /// Sets container instances `DRAINING`: their tasks run on, nothing new
    /// is placed there.
    pub async fn drain(&self, container_instances: &[String]) -> Result<(), AwsError> {
        self.set_state(container_instances, true).await
    }

    /// Sets drained container instances `ACTIVE` again.
    pub async fn activate(&self, container_instances: &[String]) -> Result<(), AwsError> {
        self.set_state(container_instances, false).await
    }

    /// Sets container instances `DRAINING` (`draining`) or `ACTIVE`.
    async fn set_state(
        &self,
        container_instances: &[String],
        draining: bool,
    ) -> Result<(), AwsError> {
        if container_instances.is_empty() {
            return Ok(());
        }
        let status = if draining {
            ContainerInstanceStatus::Draining
        } else {
            ContainerInstanceStatus::Active
        };
        self.ecs
            .update_container_instances_state()
            .cluster(&self.cluster)
            .set_container_instances(Some(container_instances.to_vec()))
            .status(status)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:UpdateContainerInstancesState", e))?;
        Ok(())
    }

    /// Sets berth's attribute `name` on a container instance.
    pub async fn put_attribute(
        &self,
        instance: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        let attribute = attribute(instance, name, value)?;
        let put = self.ecs.put_attributes().attributes(attribute);
        put.cluster(&self.cluster)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:PutAttributes", e))
            .map(drop)
    }

    /// Removes berth's attribute `name` (now `value`) from a container
    /// instance.
    pub async fn delete_attribute(
        &self,
        instance: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        let attribute = attribute(instance, name, value)?;
        let delete = self.ecs.delete_attributes().attributes(attribute);
        delete
            .cluster(&self.cluster)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DeleteAttributes", e))
            .map(drop)
    }
}

fn attribute(target: &str, name: &str, value: &str) -> Result<Attribute, AwsError> {
    Attribute::builder()
        .name(name)
        .value(value)
        .target_id(target)
        .build()
        .map_err(|e| AwsError {
            operation: "ecs:PutAttributes",
            code: None,
            message: e.to_string(),
            retryable: false,
        })
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
    /// How the instance is bought ([`MARKET`]): `spot` or `on-demand`.
    pub market: Option<String>,
    /// When a task last stopped on it, when ECS last refused a task on it
    /// for room the scaler cannot count, when its infrastructure began to
    /// reclaim it (epoch ms).
    pub task_stopped: Option<u64>,
    pub refused: Option<u64>,
    pub reclaimed: Option<u64>,
}

/// The architecture an instance's `ecs.cpu-architecture` attribute names
/// (x86 where it names none: the agent sets it on every instance).
fn architecture<'a>(mut attributes: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Arch {
    attributes
        .find(|(name, _)| *name == "ecs.cpu-architecture")
        .and_then(|(_, value)| Arch::from_ecs_attribute(value?))
        .unwrap_or_default()
}

impl From<&EcsInstance> for Observed {
    fn from(ci: &EcsInstance) -> Self {
        let arch = architecture(ci.attributes().iter().map(|a| (a.name(), a.value())));
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
            Room::new(value("CPU"), value("MEMORY"), gpus).on(arch)
        };
        let status = ci
            .status()
            .map_or(InstanceStatus::Other, InstanceStatus::from_ecs);
        let remaining = room(ci.remaining_resources());
        // Only the attributes read here are copied out of the answer.
        let (mut instance_type, mut idle_since, mut retiring, mut market) =
            (None, None, None, None);
        let (mut task_stopped, mut refused, mut reclaimed) = (None, None, None);
        for a in ci.attributes() {
            let slot = match a.name() {
                "ecs.instance-type" => &mut instance_type,
                IDLE_SINCE => &mut idle_since,
                RETIRING => &mut retiring,
                MARKET => &mut market,
                name => {
                    let at = match name {
                        TASK_STOPPED => &mut task_stopped,
                        REFUSED => &mut refused,
                        RECLAIMED => &mut reclaimed,
                        _ => continue,
                    };
                    *at = a.value().and_then(|v| v.parse::<u64>().ok());
                    continue;
                }
            };
            *slot = Some(a.value().unwrap_or_default().to_owned());
        }
        Self {
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
            market,
            task_stopped,
            refused,
            reclaimed,
        }
    }
}

/// A task as an "ECS Task State Change" event's `detail` carries it: the
/// fields berth reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskChange {
    #[serde(default)]
    pub cluster_arn: String,
    pub task_arn: String,
    pub last_status: String,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub launch_type: Option<String>,
    #[serde(default)]
    pub capacity_provider_name: Option<String>,
    /// The instance an EC2 task runs on.
    #[serde(default)]
    pub container_instance_arn: Option<String>,
    #[serde(default)]
    pub containers: Vec<ContainerChange>,
    /// The task's size: CPU units and MiB, as ECS writes them (`"1024"`).
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    /// When its image pull began, it started and it stopped (RFC 3339).
    #[serde(default)]
    pub pull_started_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub stopped_at: Option<String>,
    /// The task's attributes (`ecs.cpu-architecture` on Fargate).
    #[serde(default)]
    pub attributes: Vec<EventAttribute>,
}

/// A container instance as an "ECS Container Instance State Change"
/// event's `detail` carries it (on registration, a change of status or of
/// agent connection, and as tasks come and go): the fields berth reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceChange {
    #[serde(default)]
    pub cluster_arn: String,
    #[serde(default)]
    pub container_instance_arn: String,
    #[serde(default)]
    pub ec2_instance_id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub agent_connected: bool,
    #[serde(default)]
    pub remaining_resources: Vec<EventResource>,
    #[serde(default)]
    pub attributes: Vec<EventAttribute>,
}

/// One of a container instance's attributes in an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventAttribute {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// One of a container instance's resources in an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventResource {
    pub name: String,
    #[serde(default)]
    pub integer_value: Option<i64>,
    #[serde(default)]
    pub string_set_value: Vec<String>,
}

impl From<&EcsInstance> for InstanceChange {
    /// The change an event would carry, from the container instance as
    /// ECS describes it.
    fn from(ci: &EcsInstance) -> Self {
        Self {
            cluster_arn: String::new(),
            container_instance_arn: ci.container_instance_arn().unwrap_or_default().to_owned(),
            ec2_instance_id: ci.ec2_instance_id().map(str::to_owned),
            status: ci.status().unwrap_or_default().to_owned(),
            agent_connected: ci.agent_connected,
            remaining_resources: ci
                .remaining_resources()
                .iter()
                .map(|r| EventResource {
                    name: r.name().unwrap_or_default().to_owned(),
                    integer_value: Some(i64::from(r.integer_value)),
                    string_set_value: r.string_set_value().to_vec(),
                })
                .collect(),
            attributes: ci
                .attributes()
                .iter()
                .map(|a| EventAttribute {
                    name: a.name().to_owned(),
                    value: a.value().map(str::to_owned),
                })
                .collect(),
        }
    }
}

impl InstanceChange {
    /// Whether ECS places tasks on it now.
    pub fn takes_tasks(&self) -> bool {
        self.status == "ACTIVE" && self.agent_connected
    }

    /// The room it has left: CPU units, MiB, GPUs (listed by id).
    pub fn remaining(&self) -> Room {
        let integer = |name: &str| {
            self.remaining_resources
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.integer_value)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let gpus = self
            .remaining_resources
            .iter()
            .find(|r| r.name == "GPU")
            .map_or(0, |r| r.string_set_value.len() as u32);
        let arch = architecture(
            self.attributes
                .iter()
                .map(|a| (a.name.as_str(), a.value.as_deref())),
        );
        Room::new(integer("CPU"), integer("MEMORY"), gpus).on(arch)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerChange {
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl TaskChange {
    /// Where the task ran: Fargate Spot, Fargate, else EC2.
    pub fn route(&self) -> Route {
        match self.capacity_provider_name.as_deref() {
            Some("FARGATE_SPOT") => Route::FargateSpot,
            Some("FARGATE") => Route::Fargate,
            _ if self.launch_type.as_deref() == Some("FARGATE") => Route::Fargate,
            _ => Route::Ec2,
        }
    }
}

fn rfc3339(at: &aws_sdk_ecs::primitives::DateTime) -> Option<String> {
    at.fmt(aws_sdk_ecs::primitives::DateTimeFormat::DateTime)
        .ok()
}

impl From<&Task> for TaskChange {
    /// The change a task's event would carry, from the task as ECS
    /// describes it.
    fn from(task: &Task) -> Self {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Self {
            cluster_arn: task.cluster_arn().unwrap_or_default().to_owned(),
            task_arn: task.task_arn().unwrap_or_default().to_owned(),
            last_status: task.last_status().unwrap_or_default().to_owned(),
            started_by: owned(task.started_by()),
            stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
            stopped_reason: owned(task.stopped_reason()),
            launch_type: task.launch_type().map(|l| l.as_str().to_owned()),
            capacity_provider_name: owned(task.capacity_provider_name()),
            container_instance_arn: owned(task.container_instance_arn()),
            cpu: owned(task.cpu()),
            memory: owned(task.memory()),
            pull_started_at: task.pull_started_at().and_then(rfc3339),
            started_at: task.started_at().and_then(rfc3339),
            stopped_at: task.stopped_at().and_then(rfc3339),
            attributes: task
                .attributes()
                .iter()
                .map(|a| EventAttribute {
                    name: a.name().to_owned(),
                    value: owned(a.value()),
                })
                .collect(),
            containers: task
                .containers()
                .iter()
                .map(|c| ContainerChange {
                    name: c.name().unwrap_or_default().to_owned(),
                    exit_code: c.exit_code(),
                    reason: owned(c.reason()),
                })
                .collect(),
        }
    }
}

/// The instance families with GPUs (the ECS GPU-optimized AMI's): `g…`
/// and `p…`.
const GPU_FAMILIES: [&str; 2] = ["g*", "p*"];

/// Where `job`'s task may be placed: on instances of its task definition's
/// architecture (`arch`), and, for a job with no GPU that may run
/// elsewhere (Fargate, Lambda), off GPU instances: room left on one started
/// for GPU jobs would keep that dearer instance up for work that costs
/// less elsewhere. `None`: anywhere.
fn placement_constraints(
    job: &ResolvedJob,
    arch: Option<Arch>,
) -> Option<Vec<PlacementConstraint>> {
    let mut constraints: Vec<PlacementConstraint> = arch.map(on_architecture).into_iter().collect();
    if job.gpu == 0 && (job.fargate_allowed || job.lambda_function.is_some()) {
        constraints.extend(GPU_FAMILIES.iter().map(|family| {
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression(format!("attribute:ecs.instance-type !~ {family}"))
                .build()
        }));
    }
    (!constraints.is_empty()).then_some(constraints)
}

/// The placement constraint that keeps a task on instances of `arch`: its
/// task definition's runtime platform decides which instances it may use.
fn on_architecture(arch: Arch) -> PlacementConstraint {
    PlacementConstraint::builder()
        .r#type(PlacementConstraintType::MemberOf)
        .expression(format!(
            "attribute:ecs.cpu-architecture == {}",
            arch.ecs_attribute()
        ))
        .build()
}

/// One task asked for: placed if ECS started one; otherwise no room, with
/// ECS's reason (`RESOURCE:MEMORY`, ...). Real ECS explains a placement
/// failure in `failures`; some implementations return no task and no failure.
fn placement(out: RunTaskOutput) -> Placement {
    if let Some(arn) = out.tasks().iter().find_map(|t| t.task_arn.clone()) {
        return Placement::Placed { task_arn: arn };
    }
    let reasons: Vec<String> = out
        .failures()
        .iter()
        .map(|f| match (f.reason(), f.detail()) {
            (Some(r), Some(d)) => format!("{r} ({d})"),
            (Some(r), None) => r.to_owned(),
            _ => "unknown".to_owned(),
        })
        .collect();
    let reason = if reasons.is_empty() {
        "no task placed".to_owned()
    } else {
        reasons.join(", ")
    };
    Placement::NoRoom { reason }
}

/// The RunTask overrides of launch `launch` of `job`, as berth-core builds
/// them (the same that routing measures against ECS's limit).
fn overrides(
    job: &ResolvedJob,
    launch: LaunchNumber,
    task_size: Option<(u32, u32)>,
) -> TaskOverride {
    let o = berth_core::launch::overrides(job, launch, task_size);
    let [c] = o.container_overrides;
    let environment = c
        .environment
        .into_iter()
        .map(|kv| {
            KeyValuePair::builder()
                .name(kv.name)
                .value(kv.value)
                .build()
        })
        .collect();
    let requirements = c
        .resource_requirements
        .into_iter()
        .filter_map(|r| {
            ResourceRequirement::builder()
                .r#type(ResourceType::from(r.kind.as_str()))
                .value(r.value)
                .build()
                .ok()
        })
        .collect::<Vec<_>>();
    let container = ContainerOverride::builder()
        .name(c.name)
        .set_command(c.command)
        .set_environment(Some(environment))
        .cpu(i32::try_from(c.cpu).unwrap_or(i32::MAX))
        .memory(i32::try_from(c.memory).unwrap_or(i32::MAX))
        .set_resource_requirements((!requirements.is_empty()).then_some(requirements))
        .build();
    TaskOverride::builder()
        .container_overrides(container)
        .set_cpu(o.cpu)
        .set_memory(o.memory)
        .set_task_role_arn(o.task_role_arn)
        .build()
}

/// The task's tags: berth's own three, then the job's (its definition's
/// and its own; at most [`berth_core::tags::MAX_TAGS`], keys never
/// `berth:`).
fn tags(job: &ResolvedJob, launch: LaunchNumber) -> Vec<Tag> {
    let own = [
        ("berth:job-id", job.job_id.clone()),
        ("berth:launch", launch.to_string()),
        ("berth:definition", job.definition.clone()),
    ];
    own.into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(job.tags.iter().map(|(k, v)| (k.clone(), v.clone())))
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn build(e: aws_sdk_ecs::error::BuildError) -> LaunchError {
    LaunchError::Permanent(format!("invalid RunTask request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::operation::run_task::RunTaskOutput;
    use aws_sdk_ecs::operation::stop_task::StopTaskOutput;
    use aws_sdk_ecs::types::{Container, Failure, TaskStopCode};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use berth_core::Processor;
    use berth_core::routing::FargateSize;

    /// An ECS error answer as ECS sends it (AWS JSON 1.1).
    fn ecs_error(code: &str, message: &str) -> HttpResponse {
        let body = serde_json::json!({ "__type": code, "message": message }).to_string();
        let mut response =
            HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::from(body));
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        response
    }

    fn cluster(ecs: Client) -> EcsCluster {
        EcsCluster::new(ecs, "berth", Launching::default())
    }

    /// A cluster whose awsvpc tasks go in subnet-1 with sg-1, with a public
    /// IP on Fargate when `public_ip`.
    fn in_subnet(ecs: Client, public_ip: bool) -> EcsCluster {
        EcsCluster::new(
            ecs,
            "berth",
            Launching {
                fargate: FargateNetwork {
                    subnets: vec!["subnet-1".into()],
                    security_groups: vec!["sg-1".into()],
                    assign_public_ip: public_ip,
                },
                ..Launching::default()
            },
        )
    }

    /// DescribeTaskDefinition's answer for an EC2-only task definition in
    /// `bridge` mode without a task size, with one container `main`.
    fn bridge() -> aws_smithy_mocks::Rule {
        described(false)
    }

    /// DescribeTaskDefinition's answer for a task definition with one
    /// container `main`: EC2-only (`bridge`, no task size), or, `fargate`,
    /// one that may run on Fargate (`awsvpc`, 1024 CPU units, 2048 MiB).
    fn described(fargate: bool) -> aws_smithy_mocks::Rule {
        mock!(Client::describe_task_definition).then_output(move || {
            let definition = aws_sdk_ecs::types::TaskDefinition::builder().container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("main")
                    .build(),
            );
            let definition = if fargate {
                definition
                    .network_mode(NetworkMode::Awsvpc)
                    .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
                    .cpu("1024")
                    .memory("2048")
            } else {
                definition.network_mode(NetworkMode::Bridge)
            };
            aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput::builder(
            )
            .task_definition(definition.build())
            .build()
        })
    }

    #[tokio::test]
    async fn a_job_that_does_not_fit_its_task_definition_fails_before_run_task() {
        let run = mock!(Client::run_task).then_output(|| RunTaskOutput::builder().build());
        let described = bridge();
        let ecs = in_subnet(
            mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&described, &run]),
            false,
        );
        let other = ResolvedJob {
            container: "app".into(),
            ..job()
        };
        assert!(matches!(
            ecs.run_on_ec2(&other, 1).await,
            Err(LaunchError::Permanent(why)) if why.contains("`app` is not a container of task definition `render` (it has: main)")
        ));
        let fargate = fargate_job();
        assert!(matches!(
            ecs.run_on_fargate(&fargate, 1, ON_DEMAND).await,
            Err(LaunchError::Permanent(why)) if why.contains("does not list FARGATE")
        ));
        assert_eq!(run.num_calls(), 0);
        assert_eq!(described.num_calls(), 1, "the task definition is read once");
    }

    /// The Fargate size of the jobs here.
    const SIZE: FargateSize = FargateSize {
        cpu: 1024,
        memory: 2048,
    };
    const ON_DEMAND: OnFargate = OnFargate {
        size: SIZE,
        spot: false,
    };

    /// `job()`, of a definition that may run on Fargate.
    fn fargate_job() -> ResolvedJob {
        ResolvedJob {
            fargate_allowed: true,
            ..job()
        }
    }

    fn job() -> ResolvedJob {
        ResolvedJob {
            daily_limit_usd: None,
            retry_rules: Vec::new(),
            depends_on: Vec::new(),
            array: None,
            job_id: "j-1".into(),
            definition: "render".into(),
            task_definition: "render".into(),
            container: "main".into(),
            lambda_function: None,
            command: Some(vec!["render".into(), "--fast".into()]),
            environment: [("SCENE".to_owned(), "3".to_owned())].into(),
            cpu: 1024,
            memory: 2048,
            gpu: 0,
            timeout_seconds: 600,
            max_attempts: 1,
            processor: Processor::Auto,
            fargate_allowed: false,
            job_role: None,
            interruptible: true,
            expected_seconds: None,
            tags: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_run_task_carries_the_launch_and_says_where_it_went() {
        let placed = mock!(Client::run_task)
            .match_requests(|r| {
                let container = &r.overrides().unwrap().container_overrides()[0];
                r.started_by() == Some("j-1/2")
                    && r.client_token().is_some()
                    && r.launch_type() == Some(&LaunchType::Ec2)
                    && r.tags().len() == 3
                    && container.name() == Some("main")
                    && container.command() == ["render", "--fast"]
                    && container
                        .environment()
                        .iter()
                        .any(|kv| kv.name() == Some("BERTH_LAUNCH") && kv.value() == Some("2"))
                    && r.overrides().unwrap().task_role_arn()
                        == Some("arn:aws:iam::123456789012:role/berth-job-r")
            })
            .then_output(|| {
                RunTaskOutput::builder()
                    .tasks(Task::builder().task_arn("arn:task/1").build())
                    .build()
            });
        let described = bridge();
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&described, &placed]
        ));
        let with_role = ResolvedJob {
            job_role: Some("arn:aws:iam::123456789012:role/berth-job-r".into()),
            ..job()
        };
        assert_eq!(
            ecs.run_on_ec2(&with_role, 2).await.unwrap(),
            Placement::Placed {
                task_arn: "arn:task/1".into()
            }
        );
        assert_eq!(placed.num_calls(), 1);
    }

    #[tokio::test]
    async fn no_room_is_told_by_failures_and_by_an_empty_cluster() {
        let full = mock!(Client::run_task).then_output(|| {
            RunTaskOutput::builder()
                .failures(
                    Failure::builder()
                        .reason("RESOURCE:MEMORY")
                        .detail("2 instances")
                        .build(),
                )
                .build()
        });
        let empty = mock!(Client::run_task)
            .then_http_response(|| ecs_error("InvalidParameterException", NO_INSTANCES));
        let described = bridge();
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::Sequential,
            [&described, &full, &empty]
        ));
        assert_eq!(
            ecs.run_on_ec2(&job(), 1).await.unwrap(),
            Placement::NoRoom {
                reason: "RESOURCE:MEMORY (2 instances)".into()
            }
        );
        assert_eq!(
            ecs.run_on_ec2(&job(), 1).await.unwrap(),
            Placement::NoRoom {
                reason: NO_INSTANCES.into()
            }
        );
    }

    /// An instance that refused the task for room CPU and memory do not
    /// tell (no network interface left) is marked for the scaler; one short
    /// of memory is not: the scaler counts memory itself.
    #[tokio::test]
    async fn an_instance_refusing_for_room_the_scaler_cannot_count_is_marked() {
        let refused = mock!(Client::run_task).then_output(|| {
            RunTaskOutput::builder()
                .failures(
                    Failure::builder()
                        .arn("arn:ci/eni")
                        .reason("RESOURCE:ENI")
                        .build(),
                )
                .failures(
                    Failure::builder()
                        .arn("arn:ci/memory")
                        .reason("RESOURCE:MEMORY")
                        .build(),
                )
                .build()
        });
        let marked = mock!(Client::put_attributes)
            .match_requests(|r| {
                let [a] = r.attributes() else { return false };
                a.name() == REFUSED && a.target_id() == Some("arn:ci/eni")
            })
            .then_output(|| {
                aws_sdk_ecs::operation::put_attributes::PutAttributesOutput::builder().build()
            });
        let described = bridge();
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::Sequential,
            [&described, &refused, &marked]
        ));
        assert!(matches!(
            ecs.run_on_ec2(&job(), 1).await.unwrap(),
            Placement::NoRoom { .. }
        ));
        assert_eq!(marked.num_calls(), 1, "only the instance out of ENIs");
    }

    #[tokio::test]
    async fn fargate_needs_subnets_and_a_bad_request_fails_for_good() {
        let described = bridge();
        let ecs = cluster(mock_client!(aws_sdk_ecs, [&described]));
        assert!(matches!(
            ecs.run_on_fargate(&job(), 1, ON_DEMAND).await,
            Err(LaunchError::Permanent(why)) if why.contains("Subnets parameter (BERTH_FARGATE_SUBNETS)")
        ));
        let missing = mock!(Client::run_task)
            .then_http_response(|| ecs_error("ClientException", "TaskDefinition not found."));
        let described = bridge();
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&described, &missing]
        ));
        assert!(matches!(
            ecs.run_on_ec2(&job(), 1).await,
            Err(LaunchError::Permanent(why)) if why.contains("TaskDefinition not found")
        ));
    }

    /// With public subnets (`BERTH_FARGATE_PUBLIC_IP`), a Fargate task gets
    /// a public IP, its way to pull images without a NAT gateway; an `awsvpc`
    /// task on an instance never asks for one (ECS refuses it there).
    #[tokio::test]
    async fn only_a_fargate_task_gets_a_public_ip_and_only_when_asked() {
        let public_ip = |r: &aws_sdk_ecs::operation::run_task::RunTaskInput| {
            r.network_configuration()
                .and_then(|n| n.awsvpc_configuration())
                .and_then(|v| v.assign_public_ip())
                .cloned()
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let run = mock!(Client::run_task).then_compute_output(move |r| {
            recorded
                .lock()
                .unwrap()
                .push((r.launch_type().cloned(), public_ip(r)));
            RunTaskOutput::builder()
                .tasks(Task::builder().task_arn("arn:task/1").build())
                .build()
        });
        let fargate = fargate_job();
        for public in [true, false] {
            let described = described(true);
            let ecs = in_subnet(
                mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&described, &run]),
                public,
            );
            ecs.run_on_fargate(&fargate, 1, ON_DEMAND).await.unwrap();
            ecs.run_on_ec2(&fargate, 1).await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Some(LaunchType::Fargate), Some(AssignPublicIp::Enabled)),
                (Some(LaunchType::Ec2), Some(AssignPublicIp::Disabled)),
                (Some(LaunchType::Fargate), Some(AssignPublicIp::Disabled)),
                (Some(LaunchType::Ec2), Some(AssignPublicIp::Disabled)),
            ]
        );
    }

    /// Fargate Spot is the FARGATE_SPOT capacity provider, with a token of
    /// its own (the same launch may go on to Fargate on demand); no
    /// capacity there is no room, with ECS's reason.
    #[tokio::test]
    async fn fargate_spot_is_its_capacity_provider_and_a_shortfall_is_no_room() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let run = mock!(Client::run_task).then_compute_output(move |r| {
            let provider = r
                .capacity_provider_strategy()
                .first()
                .map(|p| p.capacity_provider().to_owned());
            recorded.lock().unwrap().push((
                r.launch_type().cloned(),
                provider.clone(),
                r.client_token().unwrap_or_default().to_owned(),
            ));
            if provider.is_some() {
                RunTaskOutput::builder()
                    .failures(
                        aws_sdk_ecs::types::Failure::builder()
                            .reason("Capacity is unavailable at this time. Please try again later or in a different availability zone")
                            .build(),
                    )
                    .build()
            } else {
                RunTaskOutput::builder()
                    .tasks(Task::builder().task_arn("arn:task/2").build())
                    .build()
            }
        });
        let described = described(true);
        let ecs = in_subnet(
            mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&described, &run]),
            false,
        );
        let spot = OnFargate {
            size: SIZE,
            spot: true,
        };
        assert_eq!(
            ecs.run_on_fargate(&fargate_job(), 4, spot).await.unwrap(),
            Placement::NoRoom {
                reason: "Capacity is unavailable at this time. Please try again later or in a different availability zone".into()
            }
        );
        assert_eq!(
            ecs.run_on_fargate(&fargate_job(), 4, ON_DEMAND)
                .await
                .unwrap(),
            Placement::Placed {
                task_arn: "arn:task/2".into()
            }
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0, None, "a capacity provider, not a launch type");
        assert_eq!(seen[0].1.as_deref(), Some("FARGATE_SPOT"));
        assert_eq!(
            (seen[1].0.clone(), seen[1].1.clone()),
            (Some(LaunchType::Fargate), None)
        );
        assert!(
            seen[0].2.ends_with("-4-s") && seen[1].2.ends_with("-4-f"),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn stopping_a_task_ecs_no_longer_knows_is_no_error() {
        let gone = mock!(Client::stop_task).then_http_response(|| {
            ecs_error(
                "InvalidParameterException",
                "The referenced task was not found.",
            )
        });
        let denied = mock!(Client::stop_task)
            .then_http_response(|| ecs_error("AccessDeniedException", "not allowed"));
        let fine = mock!(Client::stop_task).then_output(|| StopTaskOutput::builder().build());
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::Sequential,
            [&gone, &denied, &fine]
        ));
        assert_eq!(ecs.stop("arn:task/1", "why").await, Ok(()));
        let err = ecs.stop("arn:task/1", "why").await.unwrap_err();
        assert!(err.is_code("AccessDeniedException"), "{err}");
        assert_eq!(ecs.stop("arn:task/1", "why").await, Ok(()));
    }

    #[tokio::test]
    async fn a_launch_s_task_is_found_with_where_it_runs() {
        // Not running any more: listed only when stopped tasks are asked for.
        let running = mock!(Client::list_tasks)
            .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
            .then_output(|| ListTasksOutput::builder().build());
        let listed = mock!(Client::list_tasks)
            .match_requests(|r| {
                r.started_by() == Some("j-1/3")
                    && r.desired_status() == Some(&DesiredStatus::Stopped)
            })
            .then_output(|| ListTasksOutput::builder().task_arns("arn:task/9").build());
        let described = mock!(Client::describe_tasks).then_output(|| {
            DescribeTasksOutput::builder()
                .tasks(
                    Task::builder()
                        .task_arn("arn:task/9")
                        .last_status("STOPPED")
                        .started_by("j-1/3")
                        .capacity_provider_name("FARGATE_SPOT")
                        .stop_code(TaskStopCode::EssentialContainerExited)
                        .containers(Container::builder().name("main").exit_code(0).build())
                        .build(),
                )
                .build()
        });
        let ecs = cluster(mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&running, &listed, &described]
        ));
        let change = ecs.find_task("j-1", 3).await.unwrap().expect("found");
        assert_eq!(
            (change.task_arn.as_str(), change.route()),
            ("arn:task/9", Route::FargateSpot)
        );
        assert_eq!(change.last_status, "STOPPED");
        assert_eq!(
            change.stop_code.as_deref(),
            Some("EssentialContainerExited")
        );
        assert_eq!(change.containers[0].exit_code, Some(0));
    }
}
