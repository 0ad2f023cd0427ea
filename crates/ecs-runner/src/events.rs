//! The ecs-runner function's events: EventBridge sends it ECS task and
//! container instance state changes, EC2 Spot interruption warnings and
//! rebalance recommendations,
//! and its schedule sends it a "Scheduled Event" for the timeout sweep.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde_json::{Value, json};

use crate::lifecycle::{Lifecycle, SpotWarning, TaskAction};
use berth_aws::ecs::{InstanceChange, TaskChange};
use berth_aws::{AwsError, metrics};
use berth_core::JobStatus;

pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const SPOT_WARNING: &str = "EC2 Spot Instance Interruption Warning";
/// A Spot instance at raised risk of interruption: drained like a warning,
/// so its tasks finish and nothing new lands there; the scaler terminates it
/// once empty, and starts another if jobs need one.
pub const REBALANCE_RECOMMENDATION: &str = "EC2 Instance Rebalance Recommendation";
pub const SCHEDULED: &str = "Scheduled Event";
/// A container instance registered, changed status, or had a task come or
/// go: the jobs waiting for capacity that its room holds are released.
pub const INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";

/// The invocation's error as Lambda reports it: `errorType` the AWS error
/// code (`ThrottlingException`, or `AwsCallFailed`), `errorMessage` the
/// call and what it answered.
pub fn diagnostic(e: AwsError) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: e.error_type().to_owned(),
        error_message: e.to_string(),
    }
}

/// Handles one event and says what was done, as JSON (the function's
/// answer, handy under `cargo lambda invoke`). An AWS error that may pass
/// is returned as an error, so Lambda's retries of the asynchronous
/// invocation try again; an event berth cannot read is logged and dropped,
/// since no retry would make it readable.
pub async fn handle(
    lifecycle: &Lifecycle,
    event: EventBridgeEvent<Value>,
) -> Result<Value, AwsError> {
    let id = event.id.clone().unwrap_or_default();
    match (event.source.as_str(), event.detail_type.as_str()) {
        ("aws.ecs", TASK_STATE_CHANGE) => {
            let task: TaskChange = match serde_json::from_value(event.detail) {
                Ok(t) => t,
                Err(e) => return Ok(unreadable(&id, TASK_STATE_CHANGE, &e)),
            };
            let action = lifecycle.task_changed(&task).await?;
            count(&action);
            let answer = task_answer(&task, &action);
            match &action {
                TaskAction::Ignored { why } => {
                    tracing::info!(
                        event_id = id,
                        task_arn = task.task_arn,
                        why,
                        "task event ignored"
                    );
                }
                _ => {
                    tracing::info!(event_id = id, task_arn = task.task_arn, action = %answer, "task event")
                }
            }
            Ok(answer)
        }
        ("aws.ecs", INSTANCE_STATE_CHANGE) => {
            let instance: InstanceChange = match serde_json::from_value(event.detail) {
                Ok(i) => i,
                Err(e) => return Ok(unreadable(&id, INSTANCE_STATE_CHANGE, &e)),
            };
            let released = lifecycle.release(&instance).await?;
            if !released.is_empty() {
                metrics::emit(&[], &[("JobsReleased", released.len() as f64)]);
                tracing::info!(
                    event_id = id,
                    container_instance = instance.container_instance_arn,
                    released = ?released,
                    "room for jobs waiting for capacity: released"
                );
            }
            Ok(
                json!({ "container_instance": instance.container_instance_arn, "released": released }),
            )
        }
        ("aws.ec2", kind @ (SPOT_WARNING | REBALANCE_RECOMMENDATION)) => {
            let warning: SpotWarning = match serde_json::from_value(event.detail) {
                Ok(w) => w,
                Err(e) => return Ok(unreadable(&id, kind, &e)),
            };
            let drained = lifecycle.drain(&warning.instance_id).await?;
            tracing::info!(
                event_id = id,
                instance_id = warning.instance_id,
                container_instance = drained.as_deref().unwrap_or(""),
                "{kind}"
            );
            Ok(json!({ "instance_id": warning.instance_id, "drained": drained }))
        }
        ("aws.events", SCHEDULED) => {
            let sweep = lifecycle.sweep().await?;
            let mut reconciled = Vec::new();
            for (job_id, action) in &sweep.reconciled {
                count(action);
                let (what, status, reason) = action_parts(action);
                tracing::warn!(
                    job_id,
                    action = what,
                    status,
                    reason,
                    "task event never arrived; the sweep read the task from ECS"
                );
                reconciled.push(json!({ "job_id": job_id, "action": what, "status": status }));
            }
            if !sweep.timed_out.is_empty() {
                metrics::emit(
                    &[("Status", JobStatus::TimedOut.as_str())],
                    &[("JobsEnded", sweep.timed_out.len() as f64)],
                );
            }
            for job_id in &sweep.requeued {
                tracing::warn!(
                    job_id,
                    "waiting to launch and quiet for too long: its message was lost and is put back"
                );
            }
            for job_id in &sweep.released {
                tracing::info!(
                    job_id,
                    "held for its definition's spending limit, and the day is over: put back on the queue"
                );
            }
            for (job_id, checked) in &sweep.dependencies {
                tracing::warn!(
                    job_id,
                    checked = ?checked,
                    "pending, and its dependencies had ended with no one moving it on"
                );
            }
            for (job_id, error) in &sweep.errors {
                tracing::warn!(
                    job_id,
                    error,
                    "timeout not enforced; the next sweep tries again"
                );
            }
            tracing::info!(
                reconciled = sweep.reconciled.len(),
                timed_out = sweep.timed_out.len(),
                requeued = sweep.requeued.len(),
                released = sweep.released.len(),
                no_capacity = sweep.no_capacity.len(),
                dependencies = sweep.dependencies.len(),
                requeue_deferred_backlog = sweep.requeue_deferred,
                errors = sweep.errors.len(),
                "sweep"
            );
            Ok(json!({
                "reconciled": reconciled,
                "timed_out": sweep.timed_out,
                "requeued": sweep.requeued,
                "released": sweep.released,
                "no_capacity": sweep.no_capacity,
                "dependencies": sweep.dependencies.iter().map(|(id, _)| id).collect::<Vec<_>>(),
                "errors": sweep.errors.len(),
            }))
        }
        (source, detail_type) => {
            tracing::warn!(
                event_id = id,
                source,
                detail_type,
                "event ignored: not one ecs-runner handles"
            );
            Ok(json!({ "ignored": format!("{source} / {detail_type}") }))
        }
    }
}

fn unreadable(id: &str, kind: &str, e: &serde_json::Error) -> Value {
    tracing::error!(event_id = id, kind, error = %e, "event dropped: its detail cannot be read");
    json!({ "ignored": format!("unreadable {kind}: {e}") })
}

/// The dashboard's count of what a task's change did.
fn count(action: &TaskAction) {
    match action {
        TaskAction::Ended { status, .. } => {
            metrics::count("JobsEnded", Some(("Status", status.as_str())));
        }
        TaskAction::Requeued { .. } => metrics::count("Requeued", None),
        _ => {}
    }
}

fn task_answer(task: &TaskChange, action: &TaskAction) -> Value {
    let (what, status, reason) = action_parts(action);
    json!({ "task_arn": task.task_arn, "action": what, "status": status, "reason": reason })
}

/// What was done, the job's status after, and the reason, if any.
fn action_parts(action: &TaskAction) -> (&'static str, Option<&'static str>, Option<String>) {
    match action {
        TaskAction::Ignored { why } => ("ignored", None, Some(why.clone())),
        TaskAction::Running => ("running", Some("RUNNING"), None),
        TaskAction::Ended { status, reason } => ("ended", Some(status.as_str()), reason.clone()),
        TaskAction::Requeued { reason, .. } => ("requeued", Some("ACCEPTED"), Some(reason.clone())),
        TaskAction::Stale { status } => ("stale", Some(status.as_str()), None),
        TaskAction::StoppedStray { status } => ("stopped-stray", Some(status.as_str()), None),
        TaskAction::LeftToSweep { why } => ("left-to-sweep", Some("ACCEPTED"), Some(why.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lambda's report of a failed invocation names what failed, not a
    /// Rust type: the service's error code, else `AwsCallFailed`.
    #[test]
    fn an_error_is_reported_with_its_aws_code() {
        let throttled = AwsError {
            operation: "dynamodb:Query",
            code: Some("ThrottlingException".into()),
            message: "ThrottlingException: Rate exceeded".into(),
            retryable: true,
        };
        assert_eq!(
            diagnostic(throttled),
            lambda_runtime::Diagnostic {
                error_type: "ThrottlingException".into(),
                error_message: "dynamodb:Query: ThrottlingException: Rate exceeded".into(),
            }
        );
        let unreachable = AwsError {
            operation: "ecs:DescribeTasks",
            code: None,
            message: "dispatch failure: io error: connection refused".into(),
            retryable: true,
        };
        assert_eq!(diagnostic(unreachable).error_type, "AwsCallFailed");
    }

    #[test]
    fn each_action_is_answered_with_the_status_it_left() {
        let cases = [
            (
                TaskAction::Requeued {
                    failure: true,
                    reason: "attempt failed (1 of 3)".into(),
                    delay_seconds: 10,
                },
                ("requeued", Some("ACCEPTED")),
            ),
            (TaskAction::Running, ("running", Some("RUNNING"))),
            (
                TaskAction::Ended {
                    status: JobStatus::Failed,
                    reason: Some("exit code 3".into()),
                },
                ("ended", Some("FAILED")),
            ),
            (
                TaskAction::StoppedStray {
                    status: JobStatus::Cancelled,
                },
                ("stopped-stray", Some("CANCELLED")),
            ),
            (
                TaskAction::Ignored {
                    why: "another cluster".into(),
                },
                ("ignored", None),
            ),
            (
                TaskAction::LeftToSweep {
                    why: "stopped before its launch was recorded".into(),
                },
                ("left-to-sweep", Some("ACCEPTED")),
            ),
        ];
        for (action, (what, status)) in cases {
            let (w, s, _) = action_parts(&action);
            assert_eq!((w, s), (what, status), "{action:?}");
        }
        let task = TaskChange {
            task_arn: "arn:task/1".into(),
            ..TaskChange::default()
        };
        let answer = task_answer(
            &task,
            &TaskAction::Ended {
                status: JobStatus::Failed,
                reason: Some("exit code 3".into()),
            },
        );
        assert_eq!(
            answer,
            json!({ "task_arn": "arn:task/1", "action": "ended", "status": "FAILED", "reason": "exit code 3" })
        );
    }
}
