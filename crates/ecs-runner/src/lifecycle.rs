//! After launch: what ECS says happened to a job's task becomes its state.
//!
//! - An "ECS Task State Change" event moves the job to `RUNNING` and to its
//!   end: `SUCCEEDED`, `FAILED` (exit code and reason), or back on the queue
//!   for another attempt (a failure of the job, up to `max_attempts`; an
//!   interruption by the infrastructure, up to a configured number, without
//!   counting against `max_attempts`).
//! - An "EC2 Spot Instance Interruption Warning" drains the instance.
//! - The scheduled sweep first asks ECS about the tasks of launched jobs
//!   whose records have been quiet for [`EVENT_GRACE`], and handles a task
//!   that started or stopped as its lost event would have been; then it
//!   stops jobs past their deadline: `TIMED_OUT`.
//! - [`Lifecycle::cancel`] cancels a job wherever it is.
//!
//! Every write is conditional on the launch the event is about, so a
//! repeated, late or out-of-order event changes nothing.

use std::time::Duration;

use aws_sdk_ecs::types::ContainerInstanceStatus;
use berth_aws::store::{AttemptEnd, Change, Changed, JobRecord, now_ms};
use berth_aws::{AwsError, Clients, JobQueue, JobStore, Settings, SettingsError};
use berth_core::launch::{LaunchNumber, parse_started_by};
use berth_core::stop::{
    self, CANCELLED_REASON, EcsStop, Next, StopOutcome, TIMED_OUT_REASON, Tries,
};
use berth_core::{JobStatus, Route};
use serde::{Deserialize, Serialize};

use crate::{EcsLauncher, FargateNetwork};

/// The reason given to StopTask for a task whose launch is no longer the
/// job's (a duplicate, or one that started after its job ended).
pub const SUPERSEDED_REASON: &str = "berth: launch superseded";

/// How long after its deadline a Lambda-route job that reported no end is
/// marked `TIMED_OUT` (the runtime reports its own timeouts; this catches
/// an invocation that never ran).
pub const LAMBDA_REPORT_GRACE: Duration = Duration::from_secs(120);

/// How long a launched ECS job's record may stay unchanged before the sweep
/// asks ECS what became of its task. A task's events normally arrive within
/// seconds; one that fails is retried by Lambda about one and three minutes
/// later, and one that never arrives would otherwise leave the job as it
/// was until its deadline.
pub const EVENT_GRACE: Duration = Duration::from_secs(60);

/// The `detail` of an "ECS Task State Change" event: the fields berth reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskChange {
    #[serde(default)]
    pub cluster_arn: String,
    pub task_arn: String,
    pub last_status: String,
    #[serde(default)]
    pub desired_status: Option<String>,
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
    #[serde(default)]
    pub containers: Vec<ContainerChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerChange {
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub last_status: Option<String>,
}

impl From<&aws_sdk_ecs::types::Task> for TaskChange {
    /// The change a task's event would carry, from the task as ECS
    /// describes it.
    fn from(task: &aws_sdk_ecs::types::Task) -> Self {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Self {
            cluster_arn: task.cluster_arn().unwrap_or_default().to_owned(),
            task_arn: task.task_arn().unwrap_or_default().to_owned(),
            last_status: task.last_status().unwrap_or_default().to_owned(),
            desired_status: owned(task.desired_status()),
            started_by: owned(task.started_by()),
            stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
            stopped_reason: owned(task.stopped_reason()),
            launch_type: task.launch_type().map(|l| l.as_str().to_owned()),
            capacity_provider_name: owned(task.capacity_provider_name()),
            containers: task
                .containers()
                .iter()
                .map(|c| ContainerChange {
                    name: c.name().unwrap_or_default().to_owned(),
                    exit_code: c.exit_code(),
                    reason: owned(c.reason()),
                    last_status: owned(c.last_status()),
                })
                .collect(),
        }
    }
}

/// The `detail` of an "EC2 Spot Instance Interruption Warning".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SpotWarning {
    pub instance_id: String,
    #[serde(default)]
    pub instance_action: Option<String>,
}

/// What a task event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    /// Not an event berth acts on (another task, another cluster, a status
    /// berth does not record, a job it does not know).
    Ignored { why: String },
    /// The job is `RUNNING`.
    Running,
    /// The job reached its end state.
    Ended {
        status: JobStatus,
        reason: Option<String>,
    },
    /// The attempt ended and the job is back on the queue for another.
    Requeued {
        failure: bool,
        reason: String,
        delay_seconds: u32,
    },
    /// The event is late or repeated; the job is past it. Nothing changed.
    Stale { status: JobStatus },
    /// The task ran for a job that is finished or has a newer launch: it
    /// was stopped.
    StoppedStray { status: JobStatus },
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Jobs whose task had started or stopped without the event reaching
    /// berth, with what the sweep then did in the event's place.
    pub reconciled: Vec<(String, TaskAction)>,
    /// Jobs stopped and marked `TIMED_OUT`.
    pub timed_out: Vec<String>,
    /// Jobs whose timeout could not be enforced this time, with the error.
    pub errors: Vec<(String, String)>,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The job is `CANCELLED`; its task, if it had one, was stopped.
    Cancelled {
        stopped_task: Option<String>,
    },
    /// The job had ended already.
    AlreadyEnded {
        status: JobStatus,
    },
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    store: JobStore,
    ecs: EcsLauncher,
    queue: JobQueue,
    max_interruptions: u32,
    retry_delay_cap: u32,
    event_grace: Duration,
}

impl Lifecycle {
    pub fn new(store: JobStore, ecs: EcsLauncher, queue: JobQueue, max_interruptions: u32) -> Self {
        Self {
            store,
            ecs,
            queue,
            max_interruptions,
            retry_delay_cap: u32::MAX,
            event_grace: EVENT_GRACE,
        }
    }

    /// The lifecycle of the deployment `settings` describe, on `clients`.
    /// It puts jobs back on the queue, so it needs `BERTH_QUEUE_URL`.
    pub fn for_deployment(settings: &Settings, clients: &Clients) -> Result<Self, SettingsError> {
        let queue_url = settings
            .queue_url
            .clone()
            .ok_or(SettingsError::Missing(berth_aws::settings::QUEUE_URL))?;
        Ok(Self::new(
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
        ))
    }

    /// Caps the backoff before a failed job's next attempt (tests and the
    /// local run use 0).
    pub fn with_retry_delay_cap(mut self, seconds: u32) -> Self {
        self.retry_delay_cap = seconds;
        self
    }

    /// Sets how long a launched job's record stays quiet before the sweep
    /// asks ECS about its task (default [`EVENT_GRACE`]).
    pub fn with_event_grace(mut self, grace: Duration) -> Self {
        self.event_grace = grace;
        self
    }

    /// Follows one ECS task state change.
    pub async fn task_changed(&self, task: &TaskChange) -> Result<TaskAction, AwsError> {
        let ignored = |why: String| Ok(TaskAction::Ignored { why });
        let Some((job_id, launch)) = task.started_by.as_deref().and_then(parse_started_by) else {
            return ignored(format!("task {} was not started by berth", task.task_arn));
        };
        if !same_cluster(&task.cluster_arn, self.ecs.cluster()) {
            return ignored(format!("task of another cluster ({})", task.cluster_arn));
        }
        let Some(record) = self.store.get(job_id).await? else {
            return ignored(format!("no job `{job_id}` is recorded"));
        };
        match task.last_status.as_str() {
            "RUNNING" => self.running(task, &record, launch).await,
            "STOPPED" => self.stopped(task, &record, launch).await,
            other => ignored(format!("task status {other} is not one berth records")),
        }
    }

    async fn running(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<TaskAction, AwsError> {
        if record.launch == launch && record.status == JobStatus::Dispatched {
            let timeout = record.job.as_ref().map_or(0, |j| j.timeout_seconds);
            let now = now_ms();
            let change = Change {
                task_arn: Some(task.task_arn.clone()),
                deadline: (timeout > 0).then(|| now / 1000 + i64::from(timeout)),
                expect_launch: Some(launch),
                ..Change::default()
            };
            match self
                .store
                .transition(&record.job_id, JobStatus::Running, change, now)
                .await?
            {
                Changed::Applied => return Ok(TaskAction::Running),
                Changed::Refused(Some(now_is)) => return self.stray(task, &now_is, launch).await,
                Changed::Refused(None) => {
                    return Ok(TaskAction::Ignored {
                        why: "the job's record is gone".into(),
                    });
                }
            }
        }
        self.stray(task, record, launch).await
    }

    /// A RUNNING task the record is not waiting for: a repeat of the event
    /// (nothing to do), or a task its job no longer wants (stop it).
    async fn stray(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<TaskAction, AwsError> {
        let current = record.launch == launch && record.status.is_launched();
        let not_yet_recorded = record.launch == launch && record.status == JobStatus::Accepted;
        if current || not_yet_recorded || record.launch < launch {
            return Ok(TaskAction::Stale {
                status: record.status,
            });
        }
        let reason = if record.status == JobStatus::Cancelled {
            CANCELLED_REASON
        } else {
            SUPERSEDED_REASON
        };
        self.ecs.stop(&task.task_arn, reason).await?;
        Ok(TaskAction::StoppedStray {
            status: record.status,
        })
    }

    async fn stopped(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<TaskAction, AwsError> {
        if record.launch == launch && record.status == JobStatus::Accepted {
            if record.claimed_at.is_none() {
                // This stop was handled, but putting the job back on the
                // queue failed: do that now.
                self.requeue(record, launch, 0).await?;
                return Ok(TaskAction::Requeued {
                    failure: false,
                    reason: record.reason.clone().unwrap_or_default(),
                    delay_seconds: 0,
                });
            }
            // The task stopped before the driver recorded its launch: let
            // the event come again once it has.
            return Err(AwsError {
                operation: "berth:TaskStopped",
                code: None,
                message: format!(
                    "job `{}` launch {launch} stopped before its launch was recorded",
                    record.job_id
                ),
                retryable: true,
            });
        }
        if record.launch != launch || !record.status.is_launched() {
            return Ok(TaskAction::Stale {
                status: record.status,
            });
        }

        let container = record.job.as_ref().map(|j| j.container.as_str());
        let facts = container
            .and_then(|name| task.containers.iter().find(|c| c.name == name))
            .or_else(|| task.containers.first());
        let outcome = stop::classify(&EcsStop {
            stop_code: task.stop_code.as_deref(),
            stopped_reason: task.stopped_reason.as_deref(),
            exit_code: facts.and_then(|c| c.exit_code),
            container_reason: facts.and_then(|c| c.reason.as_deref()),
        });
        let tries = Tries {
            failures: record.failures,
            max_attempts: record
                .max_attempts
                .or(record.job.as_ref().map(|j| j.max_attempts))
                .unwrap_or(1),
            interruptions: record.interruptions,
            max_interruptions: self.max_interruptions,
        };
        // Whose doing the stop was: the job's (it counts against
        // max_attempts), the infrastructure's (it does not), or a request's.
        let (add_failure, add_interruption, label) = match outcome {
            StopOutcome::JobFailed { .. } => (true, false, "FAILED"),
            StopOutcome::Interrupted { .. } => (false, true, "INTERRUPTED"),
            StopOutcome::Succeeded | StopOutcome::StoppedByRequest { .. } => {
                (false, false, "STOPPED")
            }
        };
        let now = now_ms();
        let ended = |outcome: &str, reason: Option<&str>, exit_code: Option<i32>| AttemptEnd {
            launch,
            route: record.route.or_else(|| route_of(task)),
            id: Some(task.task_arn.clone()),
            outcome: outcome.to_owned(),
            reason: reason.map(str::to_owned),
            exit_code,
            at: now,
        };
        let (status, change, action) = match stop::next(outcome, tries) {
            Next::Succeed => {
                let exit = facts.and_then(|c| c.exit_code);
                (
                    JobStatus::Succeeded,
                    Change {
                        exit_code: exit,
                        ended: Some(ended("SUCCEEDED", None, exit)),
                        ..Change::default()
                    },
                    TaskAction::Ended {
                        status: JobStatus::Succeeded,
                        reason: None,
                    },
                )
            }
            Next::Fail { reason, exit_code } => (
                JobStatus::Failed,
                Change {
                    reason: Some(reason.clone()),
                    exit_code,
                    add_failure,
                    add_interruption,
                    ended: Some(ended(label, Some(&reason), exit_code)),
                    ..Change::default()
                },
                TaskAction::Ended {
                    status: JobStatus::Failed,
                    reason: Some(reason),
                },
            ),
            Next::Stopped { status, reason } => (
                status,
                Change {
                    reason: Some(reason.clone()),
                    ended: Some(ended(status.as_str(), Some(&reason), None)),
                    ..Change::default()
                },
                TaskAction::Ended {
                    status,
                    reason: Some(reason),
                },
            ),
            Next::Retry {
                failure,
                reason,
                exit_code,
                delay_seconds,
            } => {
                let delay_seconds = delay_seconds.min(self.retry_delay_cap);
                (
                    JobStatus::Accepted,
                    Change {
                        reason: Some(reason.clone()),
                        exit_code,
                        add_failure,
                        add_interruption,
                        release_claim: true,
                        ended: Some(ended(label, Some(&reason), exit_code)),
                        ..Change::default()
                    },
                    TaskAction::Requeued {
                        failure,
                        reason,
                        delay_seconds,
                    },
                )
            }
        };
        let change = Change {
            expect_launch: Some(launch),
            ..change
        };
        match self
            .store
            .transition(&record.job_id, status, change, now)
            .await?
        {
            Changed::Applied => {}
            Changed::Refused(now_is) => {
                return Ok(TaskAction::Stale {
                    status: now_is.map_or(record.status, |r| r.status),
                });
            }
        }
        if let TaskAction::Requeued { delay_seconds, .. } = &action {
            self.requeue(record, launch, *delay_seconds).await?;
        }
        Ok(action)
    }

    async fn requeue(
        &self,
        record: &JobRecord,
        ended: LaunchNumber,
        delay_seconds: u32,
    ) -> Result<(), AwsError> {
        let definition = record
            .definition
            .as_deref()
            .or(record.job.as_ref().map(|j| j.definition.as_str()))
            .unwrap_or_default();
        self.queue
            .requeue(&record.job_id, definition, ended, delay_seconds)
            .await
    }

    /// Drains the container instance on EC2 instance `instance_id` so that
    /// nothing new is placed there in its last two minutes. Returns the
    /// container instance, or `None` when the instance is not in the cluster.
    pub async fn drain(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let ecs = self.ecs.client();
        let listed = ecs
            .list_container_instances()
            .cluster(self.ecs.cluster())
            .filter(format!("ec2InstanceId == {instance_id}"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<String>, _>>()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:ListContainerInstances", e))?;
        // The filter narrows the list where it is supported; the describe
        // below is what decides.
        for chunk in listed.chunks(100) {
            let described = ecs
                .describe_container_instances()
                .cluster(self.ecs.cluster())
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
            ecs.update_container_instances_state()
                .cluster(self.ecs.cluster())
                .container_instances(&arn)
                .status(ContainerInstanceStatus::Draining)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ecs:UpdateContainerInstancesState", e))?;
            return Ok(Some(arn));
        }
        Ok(None)
    }

    /// Makes up for lost task events (see [`EVENT_GRACE`]), then stops
    /// every job past its deadline and marks it `TIMED_OUT`. A job whose
    /// task ended is given that end, not a timeout.
    pub async fn sweep(&self) -> Result<Sweep, AwsError> {
        // One read of the launched jobs (the status index) serves both.
        let mut launched = Vec::new();
        for status in [JobStatus::Dispatched, JobStatus::Running] {
            launched.extend(self.store.in_status(status, usize::MAX).await?);
        }
        let now = now_ms();
        let mut sweep = Sweep::default();
        self.reconcile(&launched, now, &mut sweep).await;
        for record in launched {
            let past_deadline = record.deadline.is_some_and(|d| d < now / 1000);
            let reconciled = sweep
                .reconciled
                .iter()
                .any(|(job, _)| *job == record.job_id);
            if !past_deadline || reconciled {
                continue;
            }
            match self.time_out(&record, now).await {
                Ok(true) => sweep.timed_out.push(record.job_id),
                Ok(false) => {}
                Err(e) => sweep.errors.push((record.job_id, e.to_string())),
            }
        }
        Ok(sweep)
    }

    /// The tasks of the `launched` ECS jobs whose records have not changed
    /// for the event grace, as ECS describes them: one that stopped, or
    /// started while its job is still `DISPATCHED`, is handled as its event
    /// would have been. Every write is conditional, so an event that
    /// arrives as well changes nothing more.
    async fn reconcile(&self, launched: &[JobRecord], now: i64, sweep: &mut Sweep) {
        let grace = i64::try_from(self.event_grace.as_millis()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(grace);
        let quiet: Vec<(&str, &JobRecord)> = launched
            .iter()
            .filter(|r| r.route != Some(Route::Lambda) && r.updated_at.is_some_and(|t| t < before))
            .filter_map(|r| Some((r.task_arn.as_deref()?, r)))
            .collect();
        for chunk in quiet.chunks(100) {
            let arns: Vec<String> = chunk.iter().map(|(arn, _)| (*arn).to_owned()).collect();
            let tasks = match self.ecs.describe(&arns).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    let e = e.to_string();
                    sweep
                        .errors
                        .extend(chunk.iter().map(|(_, r)| (r.job_id.clone(), e.clone())));
                    continue;
                }
            };
            for task in &tasks {
                let Some((_, record)) = chunk.iter().find(|(arn, _)| Some(*arn) == task.task_arn())
                else {
                    continue;
                };
                let moved_on = match task.last_status() {
                    Some("STOPPED") => true,
                    Some("RUNNING") => record.status == JobStatus::Dispatched,
                    _ => false,
                };
                if !moved_on {
                    continue;
                }
                let job_id = record.job_id.clone();
                match self.task_changed(&TaskChange::from(task)).await {
                    Ok(TaskAction::Ignored { .. } | TaskAction::Stale { .. }) => {}
                    Ok(action) => sweep.reconciled.push((job_id, action)),
                    Err(e) => sweep.errors.push((job_id, e.to_string())),
                }
            }
        }
    }

    async fn time_out(&self, record: &JobRecord, now: i64) -> Result<bool, AwsError> {
        let deadline = record.deadline.unwrap_or(i64::MAX);
        let reason = match record.route {
            Some(Route::Lambda) => {
                let grace = i64::try_from(LAMBDA_REPORT_GRACE.as_secs()).unwrap_or(i64::MAX);
                if now / 1000 < deadline.saturating_add(grace) {
                    return Ok(false);
                }
                format!("{TIMED_OUT_REASON}: the Lambda runtime reported no end by its deadline")
            }
            _ => {
                let reason = format!("{TIMED_OUT_REASON}: past its deadline");
                if let Some(task) = &record.task_arn {
                    // Stop first: should the write below fail, the task's
                    // STOPPED event still records the timeout.
                    self.ecs.stop(task, &reason).await?;
                }
                reason
            }
        };
        let change = Change {
            reason: Some(reason.clone()),
            expect_launch: Some(record.launch),
            ended: Some(AttemptEnd {
                launch: record.launch,
                route: record.route,
                id: record.task_arn.clone().or(record.request_id.clone()),
                outcome: JobStatus::TimedOut.as_str().to_owned(),
                reason: Some(reason),
                exit_code: None,
                at: now,
            }),
            ..Change::default()
        };
        Ok(matches!(
            self.store
                .transition(&record.job_id, JobStatus::TimedOut, change, now)
                .await?,
            Changed::Applied
        ))
    }

    /// Cancels `job_id`: queued, waiting or running, it ends `CANCELLED`
    /// and its ECS task is stopped. A later event or delivery does not
    /// revive it (every other change is conditional on a state it left).
    pub async fn cancel(&self, job_id: &str, why: Option<&str>) -> Result<Cancelled, AwsError> {
        let Some(before) = self.store.get(job_id).await? else {
            return Ok(Cancelled::NotFound);
        };
        if before.status.is_final() {
            return Ok(Cancelled::AlreadyEnded {
                status: before.status,
            });
        }
        let reason = match why {
            Some(why) => format!("{CANCELLED_REASON}: {why}"),
            None => CANCELLED_REASON.to_owned(),
        };
        let now = now_ms();
        let launched = before.status.is_launched();
        let change = Change {
            reason: Some(reason.clone()),
            ended: launched.then(|| AttemptEnd {
                launch: before.launch,
                route: before.route,
                id: before.task_arn.clone().or(before.request_id.clone()),
                outcome: JobStatus::Cancelled.as_str().to_owned(),
                reason: Some(reason.clone()),
                exit_code: None,
                at: now,
            }),
            ..Change::default()
        };
        match self
            .store
            .transition(job_id, JobStatus::Cancelled, change, now)
            .await?
        {
            Changed::Applied => {}
            Changed::Refused(Some(r)) => return Ok(Cancelled::AlreadyEnded { status: r.status }),
            Changed::Refused(None) => return Ok(Cancelled::NotFound),
        }
        let task = match (launched, before.route, before.task_arn) {
            (true, Some(Route::Ec2 | Route::Fargate), Some(task)) => task,
            _ => return Ok(Cancelled::Cancelled { stopped_task: None }),
        };
        self.ecs.stop(&task, &reason).await?;
        Ok(Cancelled::Cancelled {
            stopped_task: Some(task),
        })
    }
}

/// Whether the event's cluster (an ARN) is `cluster` (a name or an ARN).
/// An event without one is taken as the cluster's own.
fn same_cluster(cluster_arn: &str, cluster: &str) -> bool {
    cluster_arn.is_empty()
        || cluster_arn == cluster
        || cluster_arn
            .rsplit_once('/')
            .is_some_and(|(_, name)| name == cluster)
}

fn route_of(task: &TaskChange) -> Option<Route> {
    let fargate = task.launch_type.as_deref() == Some("FARGATE")
        || task
            .capacity_provider_name
            .as_deref()
            .is_some_and(|p| p.starts_with("FARGATE"));
    Some(if fargate { Route::Fargate } else { Route::Ec2 })
}
