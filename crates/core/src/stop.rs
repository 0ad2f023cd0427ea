//! What a stopped ECS task means for its job: it succeeded, the job itself
//! failed (counts against `max_attempts`), the infrastructure interrupted it
//! (re-dispatched without counting), or someone stopped it on purpose.

use crate::JobStatus;
use crate::launch::retry_backoff_seconds;

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

/// The `reason` berth gives StopTask when a job is cancelled.
pub const CANCELLED_REASON: &str = "berth: cancelled";
/// The `reason` berth gives StopTask when a job is past its timeout.
pub const TIMED_OUT_REASON: &str = "berth: timed out";

/// How many times a job the infrastructure interrupts is re-dispatched
/// before it fails, unless configured (`BERTH_MAX_INTERRUPTIONS`).
pub const DEFAULT_MAX_INTERRUPTIONS: u32 = 5;

/// How many tries a job has had and may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// Failures of the job itself so far (not counting this stop).
    pub failures: u32,
    /// The job's `max_attempts`: failures of its own it may have in all.
    pub max_attempts: u32,
    /// Interruptions by the infrastructure so far (not counting this stop).
    pub interruptions: u32,
    /// Interruptions re-dispatched at most, so nothing loops forever.
    pub max_interruptions: u32,
}

/// What becomes of a job whose launch stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Succeed,
    /// Another attempt, after `delay_seconds`. A failure of the job counts
    /// against `max_attempts`; an interruption does not.
    Retry {
        failure: bool,
        reason: String,
        exit_code: Option<i32>,
        delay_seconds: u32,
    },
    /// The end: `FAILED`.
    Fail {
        reason: String,
        exit_code: Option<i32>,
    },
    /// berth stopped it on purpose: it ends `CANCELLED` or `TIMED_OUT`.
    Stopped {
        status: JobStatus,
        reason: String,
    },
}

/// Decides what becomes of a job after `outcome`, given its `tries`.
pub fn next(outcome: StopOutcome, tries: Tries) -> Next {
    match outcome {
        StopOutcome::Succeeded => Next::Succeed,
        StopOutcome::JobFailed { exit_code, reason } => {
            let failures = tries.failures.saturating_add(1);
            if failures < tries.max_attempts {
                Next::Retry {
                    failure: true,
                    reason: format!(
                        "attempt failed ({failures} of {}): {reason}",
                        tries.max_attempts
                    ),
                    exit_code,
                    delay_seconds: retry_backoff_seconds(failures),
                }
            } else {
                Next::Fail {
                    reason: if tries.max_attempts > 1 {
                        format!("failed {failures} times, the last: {reason}")
                    } else {
                        reason
                    },
                    exit_code,
                }
            }
        }
        StopOutcome::Interrupted { reason } => {
            let interruptions = tries.interruptions.saturating_add(1);
            if interruptions <= tries.max_interruptions {
                Next::Retry {
                    failure: false,
                    reason: format!(
                        "interrupted ({interruptions} of at most {}): {reason}",
                        tries.max_interruptions
                    ),
                    exit_code: None,
                    delay_seconds: 0,
                }
            } else {
                Next::Fail {
                    reason: format!(
                        "interrupted {interruptions} times, more than the {} re-dispatches allowed; the last: {reason}",
                        tries.max_interruptions
                    ),
                    exit_code: None,
                }
            }
        }
        StopOutcome::StoppedByRequest { reason } => {
            if reason.starts_with(CANCELLED_REASON) {
                Next::Stopped {
                    status: JobStatus::Cancelled,
                    reason,
                }
            } else if reason.starts_with(TIMED_OUT_REASON) {
                Next::Stopped {
                    status: JobStatus::TimedOut,
                    reason,
                }
            } else {
                Next::Fail {
                    reason: format!("stopped outside berth: {reason}"),
                    exit_code: None,
                }
            }
        }
    }
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

    const TRIES: Tries = Tries {
        failures: 0,
        max_attempts: 3,
        interruptions: 0,
        max_interruptions: 2,
    };

    #[test]
    fn failures_retry_until_max_attempts() {
        let failed = || StopOutcome::JobFailed {
            exit_code: Some(1),
            reason: "exit code 1".into(),
        };
        let mut tries = TRIES;
        let mut launches = 1;
        loop {
            match next(failed(), tries) {
                Next::Retry {
                    failure: true,
                    exit_code: Some(1),
                    delay_seconds,
                    ..
                } => {
                    assert!(delay_seconds > 0);
                    tries.failures += 1;
                    launches += 1;
                }
                Next::Fail { reason, exit_code } => {
                    assert_eq!(exit_code, Some(1));
                    assert_eq!(reason, "failed 3 times, the last: exit code 1");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(launches, TRIES.max_attempts);
        let once = Tries {
            max_attempts: 1,
            ..TRIES
        };
        assert_eq!(
            next(failed(), once),
            Next::Fail {
                reason: "exit code 1".into(),
                exit_code: Some(1)
            }
        );
    }

    #[test]
    fn interruptions_do_not_count_as_attempts_but_are_capped() {
        let spot = || StopOutcome::Interrupted {
            reason: "SpotInterruption".into(),
        };
        // Even a job on its last attempt is re-dispatched after an interruption.
        let last = Tries {
            failures: 2,
            ..TRIES
        };
        match next(spot(), last) {
            Next::Retry {
                failure: false,
                delay_seconds: 0,
                reason,
                ..
            } => assert_eq!(reason, "interrupted (1 of at most 2): SpotInterruption"),
            other => panic!("{other:?}"),
        }
        let worn = Tries {
            interruptions: 2,
            ..TRIES
        };
        assert!(matches!(next(spot(), worn), Next::Fail { .. }));
    }

    #[test]
    fn stops_by_request_end_as_berth_meant_them() {
        let by = |r: &str| StopOutcome::StoppedByRequest { reason: r.into() };
        assert!(matches!(
            next(by(CANCELLED_REASON), TRIES),
            Next::Stopped {
                status: JobStatus::Cancelled,
                ..
            }
        ));
        assert!(matches!(
            next(by(&format!("{TIMED_OUT_REASON} after 60 s")), TRIES),
            Next::Stopped {
                status: JobStatus::TimedOut,
                ..
            }
        ));
        assert_eq!(
            next(by("Task stopped by user"), TRIES),
            Next::Fail {
                reason: "stopped outside berth: Task stopped by user".into(),
                exit_code: None
            }
        );
        assert_eq!(next(StopOutcome::Succeeded, TRIES), Next::Succeed);
    }

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
