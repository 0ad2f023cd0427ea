//! Operations on jobs that more than one function, or a function and the
//! CLI, make: ending an attempt as berth-core settles it (ecs-runner's
//! task events and timeout sweep, the Lambda task runtime), putting a job
//! back on the queue, and cancelling a job (ecs-runner and `berth cancel`).

use berth_core::JobStatus;
use berth_core::attempt::{self, Attempt, Ending, Policy, Settled, Settlement, Standing};
use berth_core::launch::LaunchNumber;
use berth_core::stop::{self, CANCELLED_REASON, EcsStop};

use crate::definitions::Definitions;
use crate::ecs::{EcsCluster, TaskChange};
use crate::store::{Changed, JobRecord, now_ms};
use crate::{AwsError, JobQueue, JobStore};

impl JobRecord {
    /// The record as an attempt's end reads it.
    pub fn standing(&self) -> Standing {
        Standing {
            status: self.status,
            launch: self.launch,
            failures: self.failures,
            interruptions: self.interruptions,
            max_attempts: self
                .max_attempts
                .or(self.job.as_ref().map(|j| j.max_attempts))
                .unwrap_or(1),
            retry_rules: self
                .job
                .as_ref()
                .map(|j| j.retry_rules.clone())
                .unwrap_or_default(),
        }
    }

    /// How long the job's container ran, in whole seconds, when it ends at
    /// `now_ms`: from its start (its running deadline less its timeout) to
    /// now. `None` unless the record saw it run.
    pub fn run_seconds(&self, now_ms: i64) -> Option<u64> {
        if self.status != JobStatus::Running {
            return None;
        }
        let started = self.deadline? - i64::from(self.job.as_ref()?.timeout_seconds);
        u64::try_from(now_ms / 1000 - started).ok()
    }

    /// The job's definition, as recorded.
    pub fn definition_name(&self) -> &str {
        self.definition
            .as_deref()
            .or(self.job.as_ref().map(|j| j.definition.as_str()))
            .unwrap_or_default()
    }
}

/// What ending an attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnded {
    /// The record changed as settled (and the next attempt, if any, is
    /// queued).
    Applied(Settled),
    /// The record had moved on (cancelled meanwhile, say): it stands as it
    /// is, in this status (`None`: the record is gone).
    Refused(Option<JobStatus>),
}

/// Ends an attempt of a job by the settlement berth-core made of it: one
/// conditional write, then the next attempt's message when there is one.
/// A success is counted in its definition's runs when `definitions` is
/// given (what routing expects of the definition's next jobs).
pub async fn end_attempt(
    store: &JobStore,
    queue: Option<&JobQueue>,
    definitions: Option<&Definitions>,
    record: &JobRecord,
    settled: Settled,
) -> Result<AttemptEnded, AwsError> {
    let now = now_ms();
    match store.settle(&record.job_id, &settled, now).await? {
        Changed::Applied => {}
        Changed::Refused(now_is) => return Ok(AttemptEnded::Refused(now_is.map(|r| r.status))),
    }
    if let (JobStatus::Succeeded, Some(definitions), Some(seconds)) =
        (settled.status, definitions, record.run_seconds(now))
        && let Err(e) = definitions
            .record_run(record.definition_name(), seconds, now)
            .await
    {
        // The job has ended as it should; its definition's expected run
        // misses this one.
        tracing::warn!(job_id = record.job_id, error = %e, "run not counted");
    }
    if let (Some(delay), Some(queue)) = (settled.requeue, queue) {
        queue
            .requeue(
                &record.job_id,
                record.definition_name(),
                settled.launch,
                delay,
            )
            .await?;
    }
    if settled.status.is_final() {
        crate::dependencies::after_end(store, queue, &record.job_id).await;
    }
    Ok(AttemptEnded::Applied(settled))
}

/// How the attempt that ran as `task` (stopped) ended: ECS's stop code and
/// reason, and the exit code and reason of the job's container (the one
/// named `container`, else the first).
pub fn task_ending(task: &TaskChange, container: Option<&str>) -> Ending {
    let facts = container
        .and_then(|name| task.containers.iter().find(|c| c.name == name))
        .or_else(|| task.containers.first());
    let outcome = stop::classify(&EcsStop {
        stop_code: task.stop_code.as_deref(),
        stopped_reason: task.stopped_reason.as_deref(),
        exit_code: facts.and_then(|c| c.exit_code),
        container_reason: facts.and_then(|c| c.reason.as_deref()),
    });
    Ending::Stopped {
        outcome,
        exit_code: facts.and_then(|c| c.exit_code),
    }
}

/// Ends the attempt of `record`'s job at `launch` that ran as `task`, now
/// stopped: settled by berth-core under `policy`, applied, and the next
/// attempt queued when there is one. `Refused` when the record is past it.
pub async fn end_task(
    store: &JobStore,
    queue: Option<&JobQueue>,
    definitions: Option<&Definitions>,
    record: &JobRecord,
    task: &TaskChange,
    launch: LaunchNumber,
    policy: &Policy,
) -> Result<AttemptEnded, AwsError> {
    let container = record.job.as_ref().map(|j| j.container.as_str());
    let attempt = Attempt {
        launch,
        route: record.route.or(Some(task.route())),
        id: Some(&task.task_arn),
    };
    let ending = task_ending(task, container);
    match attempt::settle(&record.standing(), &attempt, ending, policy, now_ms()) {
        Settlement::Apply(settled) => end_attempt(store, queue, definitions, record, settled).await,
        Settlement::Ended { status } => Ok(AttemptEnded::Refused(Some(status))),
        Settlement::NotCurrent => Ok(AttemptEnded::Refused(Some(record.status))),
    }
}

/// Queues the attempt after launch `ended` of `record`'s job, due when the
/// record says its next try is (its retry delay, not sooner): for an
/// attempt whose end was recorded but whose message was never sent, or a
/// repeated event of it. Returns the delay, in seconds.
pub async fn requeue(
    queue: &JobQueue,
    record: &JobRecord,
    ended: LaunchNumber,
) -> Result<u32, AwsError> {
    let delay = requeue_delay(record.next_try_at, now_ms());
    queue
        .requeue(&record.job_id, record.definition_name(), ended, delay)
        .await?;
    Ok(delay)
}

/// The seconds from `now_ms` to `next_try_at` (epoch ms), rounded up; 0
/// when it is past or unknown (the queue caps it at SQS's 15 minutes).
pub fn requeue_delay(next_try_at: Option<i64>, now_ms: i64) -> u32 {
    next_try_at.map_or(0, |at| {
        u32::try_from((at - now_ms).max(0).unsigned_abs().div_ceil(1000)).unwrap_or(u32::MAX)
    })
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

impl Cancelled {
    /// The cancel of `job_id` as one line for people.
    pub fn describe(&self, job_id: &str) -> String {
        match self {
            Self::Cancelled {
                stopped_task: Some(t),
            } => format!("{job_id}: CANCELLED, task {t} stopped"),
            Self::Cancelled { stopped_task: None } => format!("{job_id}: CANCELLED"),
            Self::AlreadyEnded { status } => {
                format!("{job_id}: already {status}, nothing to cancel")
            }
            Self::NotFound => format!("{job_id}: no such job"),
        }
    }
}

/// Cancels `job_id`: pending, queued, waiting or running, it ends
/// `CANCELLED` and its ECS task is stopped. A later event or delivery does
/// not revive it (every other change is conditional on a state it left).
/// The jobs waiting on it are moved on: released through `queue` (without
/// one, by the sweep) or failed.
pub async fn cancel(
    store: &JobStore,
    ecs: &EcsCluster,
    queue: Option<&JobQueue>,
    job_id: &str,
    why: Option<&str>,
) -> Result<Cancelled, AwsError> {
    let Some(before) = store.get(job_id).await? else {
        return Ok(Cancelled::NotFound);
    };
    let reason = match why {
        Some(why) => format!("{CANCELLED_REASON}: {why}"),
        None => CANCELLED_REASON.to_owned(),
    };
    let id = before.task_arn.as_deref().or(before.request_id.as_deref());
    let attempt = Attempt {
        launch: before.launch,
        route: before.route,
        id,
    };
    let settled = match attempt::cancel(&before.standing(), &attempt, reason.clone(), now_ms()) {
        Ok(settled) => settled,
        Err(status) => return Ok(Cancelled::AlreadyEnded { status }),
    };
    let launched = settled.history.is_some();
    match end_attempt(store, queue, None, &before, settled).await? {
        AttemptEnded::Applied(_) => {}
        AttemptEnded::Refused(Some(status)) => return Ok(Cancelled::AlreadyEnded { status }),
        AttemptEnded::Refused(None) => return Ok(Cancelled::NotFound),
    }
    if before.children.is_some() {
        // An array: every child released and not ended goes with it. None
        // is released once it has ended (its cursor moves only while it is
        // `ACCEPTED`), and one recorded after this reading is cancelled by
        // the driver, which reads the parent again once it has recorded a
        // child.
        let children = store
            .get(job_id)
            .await?
            .and_then(|r| r.children)
            .unwrap_or_default();
        let why = format!("its array {job_id} was cancelled");
        for child in crate::array::open_children(store, job_id, &children).await? {
            Box::pin(cancel(store, ecs, queue, &child, Some(&why))).await?;
        }
        return Ok(Cancelled::Cancelled { stopped_task: None });
    }
    let task = match (launched, before.route, before.task_arn) {
        (true, Some(route), Some(task)) if route.is_ecs() => task,
        _ => return Ok(Cancelled::Cancelled { stopped_task: None }),
    };
    ecs.stop(&task, &reason).await?;
    Ok(Cancelled::Cancelled {
        stopped_task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::requeue_delay;

    #[test]
    fn a_requeue_waits_out_what_is_left_of_the_retry_delay() {
        assert_eq!(requeue_delay(Some(31_000), 1_000), 30);
        assert_eq!(requeue_delay(Some(1_500), 1_000), 1, "rounded up");
        assert_eq!(requeue_delay(Some(1_000), 5_000), 0, "past");
        assert_eq!(requeue_delay(None, 5_000), 0, "unknown");
    }
}
