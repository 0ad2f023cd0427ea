//! What a stopped ECS task means for its job: it succeeded, the job itself
//! failed (counts against `max_attempts`), the infrastructure interrupted it
//! (re-dispatched without counting), or someone stopped it on purpose.

/// The facts of a stopped task, as ECS reports them in a Task State Change
/// event or DescribeTasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcsStop<'a> {
    /// The task's `stopCode`, e.g. `EssentialContainerExited`.
    pub stop_code: Option<&'a str>,
    /// The task's `stoppedReason`.
    pub stopped_reason: Option<&'a str>,
    /// The job container's `exitCode`.
    pub exit_code: Option<i32>,
    /// The job container's `reason`, e.g. `OutOfMemoryError: ...`.
    pub container_reason: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The job's container exited 0.
    Succeeded,
    /// The job failed on its own account.
    JobFailed {
        exit_code: Option<i32>,
        reason: String,
    },
    /// The capacity went away under the job (Spot, host, agent).
    Interrupted { reason: String },
    /// StopTask was called (by berth for a cancel or a timeout, or by
    /// someone else); the job record says which.
    StoppedByRequest { reason: String },
}

/// `stopCode` values that mean the capacity was taken back.
const INTERRUPTION_STOP_CODES: &[&str] = &["SpotInterruption", "TerminationNotice"];

/// Fragments of `stoppedReason` that mean the infrastructure, not the job,
/// ended the task (as ECS words them).
const INTERRUPTION_REASONS: &[&str] = &[
    "Host EC2 (instance",             // "... i-0abc) terminated." / "stopped."
    "Your Spot Task was interrupted", // Fargate Spot reclaim
    "Container instance deregistration forced", // instance left the cluster
    "agent disconnected",             // ECS agent lost
    "Timeout waiting for network interface provisioning",
];

/// Classifies a stopped task.
pub fn classify(stop: &EcsStop<'_>) -> StopOutcome {
    let reason = stop.stopped_reason.unwrap_or("").trim();
    let code = stop.stop_code.unwrap_or("");
    let told = |default: &str| {
        if reason.is_empty() {
            default.to_owned()
        } else {
            reason.to_owned()
        }
    };

    if INTERRUPTION_STOP_CODES.contains(&code) {
        return StopOutcome::Interrupted {
            reason: format!("{code}: {}", told("capacity reclaimed")),
        };
    }
    if INTERRUPTION_REASONS.iter().any(|p| reason.contains(p)) {
        return StopOutcome::Interrupted {
            reason: reason.to_owned(),
        };
    }
    if code == "UserInitiated" {
        return StopOutcome::StoppedByRequest {
            reason: told("stopped by StopTask"),
        };
    }
    if code == "TaskFailedToStart" {
        return StopOutcome::JobFailed {
            exit_code: None,
            reason: format!("failed to start: {}", told("no reason given")),
        };
    }
    match stop.exit_code {
        Some(0) => StopOutcome::Succeeded,
        Some(exit) => StopOutcome::JobFailed {
            exit_code: Some(exit),
            reason: match stop
                .container_reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                Some(r) => format!("exit code {exit}: {r}"),
                None => format!("exit code {exit}"),
            },
        },
        None => StopOutcome::JobFailed {
            exit_code: None,
            reason: format!("stopped without an exit code: {}", told("no reason given")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop<'a>(code: &'a str, reason: &'a str, exit: Option<i32>) -> EcsStop<'a> {
        EcsStop {
            stop_code: Some(code),
            stopped_reason: Some(reason),
            exit_code: exit,
            container_reason: None,
        }
    }

    #[test]
    fn classification_table() {
        use StopOutcome as O;
        let interrupted = |r: &str| O::Interrupted { reason: r.into() };
        let cases: Vec<(EcsStop<'_>, StopOutcome)> = vec![
            (
                stop(
                    "EssentialContainerExited",
                    "Essential container in task exited",
                    Some(0),
                ),
                O::Succeeded,
            ),
            (
                stop(
                    "EssentialContainerExited",
                    "Essential container in task exited",
                    Some(1),
                ),
                O::JobFailed {
                    exit_code: Some(1),
                    reason: "exit code 1".into(),
                },
            ),
            (
                EcsStop {
                    container_reason: Some(
                        "OutOfMemoryError: Container killed due to memory usage",
                    ),
                    ..stop(
                        "EssentialContainerExited",
                        "Essential container in task exited",
                        Some(137),
                    )
                },
                O::JobFailed {
                    exit_code: Some(137),
                    reason: "exit code 137: OutOfMemoryError: Container killed due to memory usage"
                        .into(),
                },
            ),
            (
                stop("SpotInterruption", "Your Spot Task was interrupted.", None),
                interrupted("SpotInterruption: Your Spot Task was interrupted."),
            ),
            (
                stop("TerminationNotice", "", Some(143)),
                interrupted("TerminationNotice: capacity reclaimed"),
            ),
            (
                // The host went away: the container was killed, its exit code is not the job's.
                stop(
                    "EssentialContainerExited",
                    "Host EC2 (instance i-0abc123) terminated.",
                    Some(137),
                ),
                interrupted("Host EC2 (instance i-0abc123) terminated."),
            ),
            (
                stop("", "Container instance deregistration forced by user", None),
                interrupted("Container instance deregistration forced by user"),
            ),
            (
                stop("UserInitiated", "berth: cancelled", Some(143)),
                O::StoppedByRequest {
                    reason: "berth: cancelled".into(),
                },
            ),
            (
                stop(
                    "TaskFailedToStart",
                    "CannotPullContainerError: image not found",
                    None,
                ),
                O::JobFailed {
                    exit_code: None,
                    reason: "failed to start: CannotPullContainerError: image not found".into(),
                },
            ),
            (
                EcsStop::default(),
                O::JobFailed {
                    exit_code: None,
                    reason: "stopped without an exit code: no reason given".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(classify(&input), expected, "{input:?}");
        }
    }
}
