//! The launch side: RunTask on EC2 (the capacity provider when configured,
//! else launch type EC2), then Fargate. Each launch carries an idempotency
//! token and names its job and launch in `startedBy` and in tags.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, LaunchType, NetworkConfiguration, PlacementStrategy, PlacementStrategyType,
    ResourceRequirement, ResourceType, Tag, Task, TaskOverride,
};
use berth_aws::{AwsError, LaunchError};
use berth_core::launch::{LaunchNumber, TokenScope, client_token, job_environment, started_by};
use berth_core::routing::FargateSize;
use berth_core::{ResolvedJob, Route};

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

#[derive(Debug, Clone)]
pub struct EcsLauncher {
    ecs: Client,
    cluster: String,
    ec2_capacity_provider: Option<String>,
    fargate: FargateNetwork,
    fargate_spot: bool,
}

/// ECS's answer when a cluster has no container instance at all: for berth
/// that is "no room", not a broken request.
const NO_INSTANCES: &str = "No Container Instances were found in your cluster";

impl EcsLauncher {
    pub fn new(
        ecs: Client,
        cluster: impl Into<String>,
        ec2_capacity_provider: Option<String>,
        fargate: FargateNetwork,
        fargate_spot: bool,
    ) -> Self {
        Self {
            ecs,
            cluster: cluster.into(),
            ec2_capacity_provider,
            fargate,
            fargate_spot,
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Runs one task of `job` on the cluster's EC2 capacity, bin-packed on
    /// memory: tasks fill the fullest instance that holds them, so the rest
    /// go idle and the scaler can let them go. A definition that may run on
    /// Fargate has an `awsvpc` task definition (Fargate requires it), so its
    /// EC2 tasks get the same network.
    pub async fn run_on_ec2(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
    ) -> Result<Placement, LaunchError> {
        let mut req = self
            .run_task(job, launch, TokenScope::Ec2, None)
            .placement_strategy(
                PlacementStrategy::builder()
                    .r#type(PlacementStrategyType::Binpack)
                    .field("memory")
                    .build(),
            )
            .set_network_configuration(if job.fargate_allowed {
                self.network()?.into()
            } else {
                None
            });
        req = match &self.ec2_capacity_provider {
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
            Ok(out) => Ok(placement(out)),
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

    /// Runs one task of `job` on Fargate (or Fargate Spot) with `size`.
    pub async fn run_on_fargate(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        size: FargateSize,
    ) -> Result<Placement, LaunchError> {
        let network = self.network()?;
        let mut req = self
            .run_task(job, launch, TokenScope::Fargate, Some(size))
            .network_configuration(network);
        req = if self.fargate_spot {
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

    /// One task of launch `launch` of `job`, named and tokened for `scope`.
    fn run_task(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        scope: TokenScope,
        fargate: Option<FargateSize>,
    ) -> RunTaskFluentBuilder {
        self.ecs
            .run_task()
            .cluster(&self.cluster)
            .task_definition(&job.task_definition)
            .count(1)
            .started_by(started_by(&job.job_id, launch))
            .client_token(client_token(&job.job_id, launch, scope))
            .set_tags(Some(tags(job, launch)))
            .overrides(overrides(job, launch, fargate))
    }

    /// The `awsvpc` network of Fargate tasks (and of EC2 tasks of
    /// definitions that may run on Fargate).
    fn network(&self) -> Result<NetworkConfiguration, LaunchError> {
        if self.fargate.subnets.is_empty() {
            return Err(LaunchError::Permanent(
                "awsvpc tasks need subnets: set BERTH_FARGATE_SUBNETS".into(),
            ));
        }
        let public_ip = if self.fargate.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        };
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.fargate.subnets.clone()))
            .set_security_groups(Some(self.fargate.security_groups.clone()))
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
    /// describes them now. Tasks ECS no longer knows are left out.
    pub async fn describe(&self, task_arns: &[String]) -> Result<Vec<Task>, AwsError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(task_arns.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DescribeTasks", e))?;
        Ok(out.tasks.unwrap_or_default())
    }

    /// The ECS client, for the lifecycle's other calls.
    pub fn client(&self) -> &Client {
        &self.ecs
    }

    /// The task of `job`'s launch `launch` and where it runs, if one was
    /// started (used when a delivery takes over a launch whose outcome was
    /// never recorded).
    pub async fn find_task(
        &self,
        job_id: &str,
        launch: LaunchNumber,
    ) -> Result<Option<(String, Route)>, LaunchError> {
        let out = self
            .ecs
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(started_by(job_id, launch))
            .send()
            .await
            .map_err(|e| LaunchError::from_aws(AwsError::from_sdk("ecs:ListTasks", e)))?;
        let Some(arn) = out.task_arns.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let described = self
            .describe(std::slice::from_ref(&arn))
            .await
            .map_err(LaunchError::from_aws)?;
        let on_fargate = described.first().is_some_and(|t| {
            t.launch_type() == Some(&LaunchType::Fargate)
                || t.capacity_provider_name()
                    .is_some_and(|p| p.starts_with("FARGATE"))
        });
        Ok(Some((
            arn,
            if on_fargate {
                Route::Fargate
            } else {
                Route::Ec2
            },
        )))
    }
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

fn overrides(
    job: &ResolvedJob,
    launch: LaunchNumber,
    fargate: Option<FargateSize>,
) -> TaskOverride {
    let environment = job_environment(job, launch)
        .into_iter()
        .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
        .collect();
    let container = ContainerOverride::builder()
        .name(&job.container)
        .set_command(job.command.clone())
        .set_environment(Some(environment))
        .cpu(i32::try_from(job.cpu).unwrap_or(i32::MAX))
        .memory(i32::try_from(job.memory).unwrap_or(i32::MAX))
        .set_resource_requirements((job.gpu > 0).then(|| {
            vec![
                ResourceRequirement::builder()
                    .r#type(ResourceType::Gpu)
                    .value(job.gpu.to_string())
                    .build()
                    .ok(),
            ]
            .into_iter()
            .flatten()
            .collect()
        }))
        .build();
    let task = TaskOverride::builder().container_overrides(container);
    match fargate {
        Some(size) => task
            .cpu(size.cpu.to_string())
            .memory(size.memory.to_string())
            .build(),
        None => task.build(),
    }
}

fn tags(job: &ResolvedJob, launch: LaunchNumber) -> Vec<Tag> {
    vec![
        Tag::builder()
            .key("berth:job-id")
            .value(&job.job_id)
            .build(),
        Tag::builder()
            .key("berth:launch")
            .value(launch.to_string())
            .build(),
        Tag::builder()
            .key("berth:definition")
            .value(&job.definition)
            .build(),
    ]
}

fn build(e: aws_sdk_ecs::error::BuildError) -> LaunchError {
    LaunchError::Permanent(format!("invalid RunTask request: {e}"))
}
