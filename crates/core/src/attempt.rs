//! The end of an attempt, settled in one place: whoever sees an attempt end
//! (a task's STOPPED event, the timeout sweep, a cancel, the Lambda task
//! runtime), [`settle`] says the whole change of the job's record, and the
//! job store applies it conditionally on the attempt's launch.
//!
//! Also the preconditions of the events that may end one: what a task's
//! RUNNING ([`on_running`]) and STOPPED ([`on_stopped`]) events mean for a
//! record as it stands.

use crate::launch::LaunchNumber;
use crate::retry::{self, Action, RetryRule};
use crate::stop::{self, CANCELLED_REASON, Next, StopOutcome, Tries};
use crate::{JobStatus, Route};

/// The reason given to StopTask for a task whose launch is no longer the
/// job's (a duplicate, or one that started after its job ended).
pub const SUPERSEDED_REASON: &str = "berth: launch superseded";

/// How one attempt (one launch that started the job) ended: an entry of the
/// record's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnd {
    pub launch: LaunchNumber,
    pub route: Option<Route>,
    /// The ECS task ARN or Lambda request id.
    pub id: Option<String>,
    /// `SUCCEEDED`, `FAILED`, `INTERRUPTED`, `STOPPED`, `TIMED_OUT` or
    /// `CANCELLED`.
    pub outcome: String,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// Epoch milliseconds.
    pub at: i64,
}

/// The job's record as it stands, as far as an attempt's end reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub status: JobStatus,
    /// The launch the record is at.
    pub launch: LaunchNumber,
    /// Failures of the job itself so far.
    pub failures: u32,
    /// Interruptions by the infrastructure so far.
    pub interruptions: u32,
    /// The job's `max_attempts`.
    pub max_attempts: u32,
    /// The job's retry rules ([`crate::retry`]).
    pub retry_rules: Vec<RetryRule>,
}

/// The attempt that ended: its launch, where it ran and its task ARN or
/// Lambda request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    pub launch: LaunchNumber,
    pub route: Option<Route>,
    pub id: Option<&'a str>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Its task or process stopped, as [`stop::classify`] (or the task
    /// runtime, for a process) tells it; `exit_code` is the job container's
    /// or process's.
    Stopped {
        outcome: StopOutcome,
        exit_code: Option<i32>,
    },
    /// It ran past its deadline.
    TimedOut { reason: String },
    /// Someone cancelled the job.
    Cancelled { reason: String },
}

/// What the deployment allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Interruptions re-dispatched at most.
    pub max_interruptions: u32,
    /// The longest backoff before a failed job's next attempt.
    pub retry_delay_cap: u32,
    /// Whether another attempt can be queued; without a queue, an attempt
    /// that would be retried ends the job `FAILED`.
    pub requeue: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_interruptions: stop::DEFAULT_MAX_INTERRUPTIONS,
            retry_delay_cap: u32::MAX,
            requeue: true,
        }
    }
}

/// What an attempt's end does to its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Change the record as [`Settled`] says.
    Apply(Settled),
    /// The job has ended already: nothing moves it.
    Ended { status: JobStatus },
    /// The attempt is not the job's current launch, or the job is not
    /// running it (a later launch superseded it, or the end came before the
    /// launch was recorded): nothing changes.
    NotCurrent,
}

/// The whole change of a record an attempt's end makes. The store applies
/// it only while the record is at `launch` (where `expect_launch`) and in a
/// state berth-core's state machine lets it leave for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub status: JobStatus,
    /// The attempt that ended.
    pub launch: LaunchNumber,
    /// Whether the write holds only at `launch` (a cancel holds at any).
    pub expect_launch: bool,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The end counts against `max_attempts`.
    pub add_failure: bool,
    /// The end was the infrastructure's doing.
    pub add_interruption: bool,
    /// The history's new entry (none for a job that had no attempt under
    /// way).
    pub history: Option<AttemptEnd>,
    /// The launch claim is released: the next launch is free to claim.
    pub release_claim: bool,
    /// Another attempt is queued, after this many seconds.
    pub requeue: Option<u32>,
}

/// Settles the end of `attempt` of a job whose record is `standing`, at
/// `now` (epoch milliseconds).
pub fn settle(
    standing: &Standing,
    attempt: &Attempt<'_>,
    ending: Ending,
    policy: &Policy,
    now: i64,
) -> Settlement {
    if standing.status.is_final() {
        return Settlement::Ended {
            status: standing.status,
        };
    }
    let current = attempt.launch == standing.launch && standing.status.is_launched();
    let (outcome, exit_code) = match ending {
        Ending::Cancelled { reason } => {
            return match cancel(standing, attempt, reason, now) {
                Ok(settled) => Settlement::Apply(settled),
                Err(status) => Settlement::Ended { status },
            };
        }
        _ if !current => return Settlement::NotCurrent,
        Ending::TimedOut { reason } => {
            return Settlement::Apply(Settled {
                history: Some(entry(
                    attempt,
                    JobStatus::TimedOut.as_str(),
                    Some(&reason),
                    None,
                    now,
                )),
                ..unchanged(JobStatus::TimedOut, attempt.launch, Some(reason))
            });
        }
        Ending::Stopped { outcome, exit_code } => (outcome, exit_code),
    };
    // Whose doing the stop was: the job's (it counts against max_attempts),
    // the infrastructure's (it does not), or a request's.
    let (add_failure, add_interruption, label) = match outcome {
        StopOutcome::JobFailed { .. } => (true, false, "FAILED"),
        StopOutcome::Interrupted { .. } => (false, true, "INTERRUPTED"),
        StopOutcome::Succeeded | StopOutcome::StoppedByRequest { .. } => (false, false, "STOPPED"),
    };
    // A failure the job's retry rules end at once.
    let decided = match &outcome {
        StopOutcome::JobFailed { exit_code, reason } => {
            retry::decide(&standing.retry_rules, *exit_code, reason)
        }
        _ => None,
    };
    let tries = Tries {
        failures: standing.failures,
        max_attempts: standing.max_attempts,
        interruptions: standing.interruptions,
        max_interruptions: policy.max_interruptions,
    };
    let counted = |settled: Settled| Settled {
        add_failure,
        add_interruption,
        ..settled
    };
    let next = match (outcome, decided) {
        (StopOutcome::JobFailed { exit_code, reason }, Some(d))
            if d.rule.action == Action::Exit =>
        {
            Next::Fail {
                reason: format!("{reason} ({d})"),
                exit_code,
            }
        }
        (StopOutcome::JobFailed { exit_code, reason }, Some(d)) => stop::next(
            StopOutcome::JobFailed {
                exit_code,
                reason: format!("{reason} ({d})"),
            },
            tries,
        ),
        (outcome, _) => stop::next(outcome, tries),
    };
    Settlement::Apply(match next {
        Next::Succeed => Settled {
            exit_code,
            history: Some(entry(
                attempt,
                JobStatus::Succeeded.as_str(),
                None,
                exit_code,
                now,
            )),
            ..unchanged(JobStatus::Succeeded, attempt.launch, None)
        },
        Next::Stopped { status, reason } => Settled {
            history: Some(entry(attempt, status.as_str(), Some(&reason), None, now)),
            ..unchanged(status, attempt.launch, Some(reason))
        },
        Next::Retry {
            reason,
            exit_code,
            delay_seconds,
            ..
        } if policy.requeue => counted(Settled {
            exit_code,
            history: Some(entry(attempt, label, Some(&reason), exit_code, now)),
            release_claim: true,
            requeue: Some(delay_seconds.min(policy.retry_delay_cap)),
            ..unchanged(JobStatus::Accepted, attempt.launch, Some(reason))
        }),
        Next::Retry {
            reason, exit_code, ..
        }
        | Next::Fail { reason, exit_code } => counted(Settled {
            exit_code,
            history: Some(entry(attempt, label, Some(&reason), exit_code, now)),
            ..unchanged(JobStatus::Failed, attempt.launch, Some(reason))
        }),
    })
}

/// Settles a cancel of a job whose record is `standing`, its current
/// launch `attempt`: queued, waiting or running, it ends `CANCELLED`, at
/// whatever launch the record is by then; only an attempt under way has an
/// end to record. `Err` with the job's status when it has ended already.
pub fn cancel(
    standing: &Standing,
    attempt: &Attempt<'_>,
    reason: String,
    now: i64,
) -> Result<Settled, JobStatus> {
    if standing.status.is_final() {
        return Err(standing.status);
    }
    let launched = standing.status.is_launched() && attempt.launch == standing.launch;
    Ok(Settled {
        expect_launch: false,
        history: launched.then(|| {
            entry(
                attempt,
                JobStatus::Cancelled.as_str(),
                Some(&reason),
                None,
                now,
            )
        }),
        ..unchanged(JobStatus::Cancelled, attempt.launch, Some(reason))
    })
}

/// The history's entry for `attempt`.
fn entry(
    attempt: &Attempt<'_>,
    outcome: &str,
    reason: Option<&str>,
    exit_code: Option<i32>,
    at: i64,
) -> AttemptEnd {
    AttemptEnd {
        launch: attempt.launch,
        route: attempt.route,
        id: attempt.id.map(str::to_owned),
        outcome: outcome.to_owned(),
        reason: reason.map(str::to_owned),
        exit_code,
        at,
    }
}

/// A move to `status` with `reason` and nothing else: no counter, no
/// history, the claim kept, held at `launch`.
fn unchanged(status: JobStatus, launch: LaunchNumber, reason: Option<String>) -> Settled {
    Settled {
        status,
        launch,
        expect_launch: true,
        reason,
        exit_code: None,
        add_failure: false,
        add_interruption: false,
        history: None,
        release_claim: false,
        requeue: None,
    }
}

/// What a task's RUNNING event means for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRunning {
    /// The job's current launch started: `DISPATCHED` → `RUNNING`.
    Start,
    /// A repeat of the event, or one for a launch the record has not
    /// reached yet: nothing to do.
    Leave,
    /// The job no longer wants this task (it ended, or a later launch
    /// superseded this one): stop it with `reason`.
    Stop { reason: &'static str },
}

/// What a RUNNING event of the task of launch `task_launch` means for a
/// record in `status` at `launch`.
pub fn on_running(status: JobStatus, launch: LaunchNumber, task_launch: LaunchNumber) -> OnRunning {
    if launch == task_launch && status == JobStatus::Dispatched {
        return OnRunning::Start;
    }
    let current = launch == task_launch && status.is_launched();
    let not_yet_recorded = launch == task_launch && status == JobStatus::Accepted;
    if current || not_yet_recorded || launch < task_launch {
        return OnRunning::Leave;
    }
    OnRunning::Stop {
        reason: if status == JobStatus::Cancelled {
            CANCELLED_REASON
        } else {
            SUPERSEDED_REASON
        },
    }
}

/// What a task's STOPPED event means for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStopped {
    /// The job's current attempt ended: [`settle`] it.
    Settle,
    /// Its end was settled and the job went back to `ACCEPTED`, but its
    /// next attempt was never queued: queue it now.
    Requeue,
    /// The task stopped before the driver recorded its launch: the event
    /// must come again once it has.
    TooEarly,
    /// A late or repeated event: nothing to do.
    Leave,
}

/// What a STOPPED event of the task of launch `task_launch` means for a
/// record in `status` at `launch`, its launch `claimed` or not.
pub fn on_stopped(
    status: JobStatus,
    launch: LaunchNumber,
    claimed: bool,
    task_launch: LaunchNumber,
) -> OnStopped {
    match (launch == task_launch, status) {
        (true, JobStatus::Accepted) if claimed => OnStopped::TooEarly,
        (true, JobStatus::Accepted) => OnStopped::Requeue,
        (true, s) if s.is_launched() => OnStopped::Settle,
        _ => OnStopped::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::TIMED_OUT_REASON;
    use JobStatus::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    fn running(failures: u32, interruptions: u32, max_attempts: u32) -> Standing {
        Standing {
            status: Running,
            launch: 2,
            failures,
            interruptions,
            max_attempts,
            retry_rules: Vec::new(),
        }
    }

    const ATTEMPT: Attempt<'static> = Attempt {
        launch: 2,
        route: Some(Route::Ec2),
        id: Some("task-2"),
    };

    fn policy() -> Policy {
        Policy {
            max_interruptions: 2,
            retry_delay_cap: 600,
            requeue: true,
        }
    }

    fn failed(code: i32) -> Ending {
        Ending::Stopped {
            outcome: StopOutcome::JobFailed {
                exit_code: Some(code),
                reason: format!("exit code {code}"),
            },
            exit_code: Some(code),
        }
    }

    fn interrupted() -> Ending {
        Ending::Stopped {
            outcome: StopOutcome::Interrupted {
                reason: "SpotInterruption".into(),
            },
            exit_code: Some(143),
        }
    }

    fn applied(s: Settlement) -> Settled {
        match s {
            Settlement::Apply(settled) => settled,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    /// Each way an attempt ends, from a running job: the status, the
    /// counters, the history's outcome and the re-queue.
    #[test]
    fn the_settlement_table() {
        type Row = (
            &'static str,
            Standing,
            Ending,
            JobStatus,
            (bool, bool),
            &'static str,
            Option<u32>,
        );
        let rows: [Row; 9] = [
            (
                "exit 0",
                running(0, 0, 3),
                Ending::Stopped {
                    outcome: StopOutcome::Succeeded,
                    exit_code: Some(0),
                },
                Succeeded,
                (false, false),
                "SUCCEEDED",
                None,
            ),
            (
                "a first failure of three",
                running(0, 0, 3),
                failed(3),
                Accepted,
                (true, false),
                "FAILED",
                Some(10),
            ),
            (
                "the last failure",
                running(2, 0, 3),
                failed(3),
                Failed,
                (true, false),
                "FAILED",
                None,
            ),
            (
                "an interruption within the allowance",
                running(2, 1, 3),
                interrupted(),
                Accepted,
                (false, true),
                "INTERRUPTED",
                Some(0),
            ),
            (
                "one interruption too many",
                running(0, 2, 3),
                interrupted(),
                Failed,
                (false, true),
                "INTERRUPTED",
                None,
            ),
            (
                "stopped for a timeout",
                running(0, 0, 3),
                Ending::Stopped {
                    outcome: StopOutcome::StoppedByRequest {
                        reason: format!("{TIMED_OUT_REASON}: past its deadline"),
                    },
                    exit_code: None,
                },
                TimedOut,
                (false, false),
                "TIMED_OUT",
                None,
            ),
            (
                "stopped outside berth",
                running(0, 0, 3),
                Ending::Stopped {
                    outcome: StopOutcome::StoppedByRequest {
                        reason: "by hand".into(),
                    },
                    exit_code: None,
                },
                Failed,
                (false, false),
                "STOPPED",
                None,
            ),
            (
                "past the deadline",
                running(0, 0, 3),
                Ending::TimedOut {
                    reason: TIMED_OUT_REASON.into(),
                },
                TimedOut,
                (false, false),
                "TIMED_OUT",
                None,
            ),
            (
                "cancelled while running",
                running(1, 1, 3),
                Ending::Cancelled {
                    reason: CANCELLED_REASON.into(),
                },
                Cancelled,
                (false, false),
                "CANCELLED",
                None,
            ),
        ];
        for (name, standing, ending, status, counters, outcome, requeue) in rows {
            let s = applied(settle(&standing, &ATTEMPT, ending, &policy(), NOW));
            assert_eq!(s.status, status, "{name}");
            assert_eq!((s.add_failure, s.add_interruption), counters, "{name}");
            assert_eq!(s.requeue, requeue, "{name}");
            assert_eq!(s.release_claim, requeue.is_some(), "{name}");
            let entry = s.history.unwrap_or_else(|| panic!("{name}: no history"));
            assert_eq!(entry.outcome, outcome, "{name}");
            assert_eq!(
                (entry.launch, entry.route, entry.id.as_deref(), entry.at),
                (2, Some(Route::Ec2), Some("task-2"), NOW),
                "{name}"
            );
            assert_eq!(entry.reason, s.reason, "{name}: the entry's reason");
        }
    }

    #[test]
    fn a_success_keeps_its_exit_code_and_no_reason() {
        let s = applied(settle(
            &running(0, 0, 1),
            &ATTEMPT,
            Ending::Stopped {
                outcome: StopOutcome::Succeeded,
                exit_code: Some(0),
            },
            &policy(),
            NOW,
        ));
        assert_eq!((s.exit_code, s.reason), (Some(0), None));
    }

    #[test]
    fn a_retry_waits_at_most_the_cap() {
        let capped = Policy {
            retry_delay_cap: 15,
            ..policy()
        };
        let s = applied(settle(&running(0, 0, 5), &ATTEMPT, failed(1), &capped, NOW));
        assert_eq!(s.requeue, Some(10), "the first failure's backoff");
        let s = applied(settle(&running(1, 0, 5), &ATTEMPT, failed(1), &capped, NOW));
        assert_eq!(s.requeue, Some(15), "the second's, capped");
        let uncapped = Policy {
            retry_delay_cap: u32::MAX,
            ..policy()
        };
        let s = applied(settle(
            &running(1, 0, 5),
            &ATTEMPT,
            failed(1),
            &uncapped,
            NOW,
        ));
        assert_eq!(
            s.requeue,
            Some(crate::launch::retry_backoff_seconds(2)),
            "the second failure's backoff"
        );
    }

    #[test]
    fn without_a_queue_a_retry_ends_the_job_failed() {
        let no_queue = Policy {
            requeue: false,
            ..policy()
        };
        let s = applied(settle(
            &running(0, 0, 3),
            &ATTEMPT,
            failed(2),
            &no_queue,
            NOW,
        ));
        assert_eq!(s.status, Failed);
        assert!(s.add_failure && !s.release_claim && s.requeue.is_none());
        assert!(s.reason.unwrap().contains("attempt failed (1 of 3)"));
    }

    #[test]
    fn retry_rules_decide_a_failure_first_match_first_and_only_a_failure() {
        use crate::retry::{Action, RetryRule};
        let rule = |code: &str, action| RetryRule {
            on_exit_code: Some(code.into()),
            on_reason: None,
            action,
        };
        let standing = Standing {
            retry_rules: vec![
                rule("137", Action::Retry),
                rule("2", Action::Exit),
                rule("*", Action::Exit),
            ],
            ..running(0, 0, 3)
        };
        let stopped = |code| Ending::Stopped {
            outcome: StopOutcome::JobFailed {
                exit_code: Some(code),
                reason: format!("exit code {code}"),
            },
            exit_code: Some(code),
        };
        // 137: retried while attempts remain, the rule named.
        let s = applied(settle(&standing, &ATTEMPT, stopped(137), &policy(), NOW));
        assert_eq!(
            (s.status, s.add_failure, s.requeue.is_some()),
            (Accepted, true, true)
        );
        assert!(
            s.reason
                .as_deref()
                .unwrap()
                .ends_with("(retry rule 1 (on_exit_code 137: retry))"),
            "{:?}",
            s.reason
        );
        // ... and not past them.
        let last = Standing {
            failures: 2,
            ..standing.clone()
        };
        assert_eq!(
            applied(settle(&last, &ATTEMPT, stopped(137), &policy(), NOW)).status,
            Failed
        );
        // 2 ends the job at its first attempt; so does anything else (rule 3).
        for code in [2, 1] {
            let s = applied(settle(&standing, &ATTEMPT, stopped(code), &policy(), NOW));
            assert_eq!((s.status, s.add_failure, s.requeue), (Failed, true, None));
            let why = s.reason.unwrap();
            assert!(
                why.contains(if code == 2 {
                    "retry rule 2"
                } else {
                    "retry rule 3"
                }),
                "{why}"
            );
            assert_eq!(s.history.unwrap().reason.as_deref(), Some(why.as_str()));
        }
        // An interruption is re-dispatched, whatever the rules say.
        let interrupted = Ending::Stopped {
            outcome: StopOutcome::Interrupted {
                reason: "Spot".into(),
            },
            exit_code: Some(137),
        };
        let s = applied(settle(&standing, &ATTEMPT, interrupted, &policy(), NOW));
        assert_eq!((s.status, s.add_interruption), (Accepted, true));
        // A timeout ends the job.
        let timed_out = Ending::TimedOut {
            reason: "late".into(),
        };
        assert_eq!(
            applied(settle(&standing, &ATTEMPT, timed_out, &policy(), NOW)).status,
            TimedOut
        );
    }

    #[test]
    fn a_cancel_before_any_attempt_has_no_history_and_holds_at_any_launch() {
        for status in [Accepted, WaitingForCapacity] {
            let standing = Standing {
                status,
                ..running(0, 0, 1)
            };
            let s = applied(settle(
                &standing,
                &ATTEMPT,
                Ending::Cancelled {
                    reason: CANCELLED_REASON.into(),
                },
                &policy(),
                NOW,
            ));
            assert_eq!(s.status, Cancelled);
            assert_eq!(s.history, None, "{status}");
            assert!(!s.expect_launch);
        }
    }

    #[test]
    fn an_end_of_another_launch_or_before_the_launch_changes_nothing() {
        let later = Attempt {
            launch: 1,
            ..ATTEMPT
        };
        assert_eq!(
            settle(&running(0, 0, 3), &later, failed(1), &policy(), NOW),
            Settlement::NotCurrent
        );
        let accepted = Standing {
            status: Accepted,
            ..running(0, 0, 3)
        };
        assert_eq!(
            settle(&accepted, &ATTEMPT, failed(1), &policy(), NOW),
            Settlement::NotCurrent
        );
    }

    #[test]
    fn running_events_by_the_record() {
        let cases = [
            (Dispatched, 2, 2, OnRunning::Start),
            (Running, 2, 2, OnRunning::Leave),
            (Accepted, 2, 2, OnRunning::Leave),
            (Dispatched, 1, 2, OnRunning::Leave),
            (
                Running,
                3,
                2,
                OnRunning::Stop {
                    reason: SUPERSEDED_REASON,
                },
            ),
            (
                Succeeded,
                2,
                2,
                OnRunning::Stop {
                    reason: SUPERSEDED_REASON,
                },
            ),
            (
                Cancelled,
                2,
                2,
                OnRunning::Stop {
                    reason: CANCELLED_REASON,
                },
            ),
        ];
        for (status, launch, task, want) in cases {
            assert_eq!(
                on_running(status, launch, task),
                want,
                "{status} {launch} {task}"
            );
        }
    }

    #[test]
    fn stopped_events_by_the_record() {
        let cases = [
            (Running, 2, true, 2, OnStopped::Settle),
            (Dispatched, 2, true, 2, OnStopped::Settle),
            (Accepted, 2, true, 2, OnStopped::TooEarly),
            (Accepted, 2, false, 2, OnStopped::Requeue),
            (Accepted, 3, true, 2, OnStopped::Leave),
            (Running, 3, true, 2, OnStopped::Leave),
            (Failed, 2, false, 2, OnStopped::Leave),
            (WaitingForCapacity, 2, true, 2, OnStopped::Leave),
        ];
        for (status, launch, claimed, task, want) in cases {
            assert_eq!(
                on_stopped(status, launch, claimed, task),
                want,
                "{status} {launch} {claimed} {task}"
            );
        }
    }

    fn any_status() -> impl Strategy<Value = JobStatus> {
        prop::sample::select(JobStatus::ALL.to_vec())
    }

    fn any_ending() -> impl Strategy<Value = Ending> {
        let reason = "[a-z ]{0,12}";
        prop_oneof![
            Just(Ending::Stopped {
                outcome: StopOutcome::Succeeded,
                exit_code: Some(0)
            }),
            (any::<i32>(), reason).prop_map(|(code, reason)| Ending::Stopped {
                outcome: StopOutcome::JobFailed {
                    exit_code: Some(code),
                    reason
                },
                exit_code: Some(code)
            }),
            reason.prop_map(|reason| Ending::Stopped {
                outcome: StopOutcome::Interrupted { reason },
                exit_code: None
            }),
            prop_oneof![
                Just(CANCELLED_REASON.to_owned()),
                Just(TIMED_OUT_REASON.to_owned()),
                reason.prop_map(String::from)
            ]
            .prop_map(|reason| Ending::Stopped {
                outcome: StopOutcome::StoppedByRequest { reason },
                exit_code: None
            }),
            reason.prop_map(|reason| Ending::TimedOut { reason }),
            reason.prop_map(|reason| Ending::Cancelled { reason }),
        ]
    }

    proptest! {
        /// A settlement never moves an ended job; never counts an attempt
        /// twice (at most one counter, once); infrastructure stops never
        /// consume `max_attempts`; a job goes back on the queue only with
        /// its claim released and never past its allowances; and every
        /// settled attempt of a running job leaves one history entry.
        #[test]
        fn settlements_keep_the_promises(
            status in any_status(),
            launch in 0u32..4,
            attempt_launch in 0u32..4,
            failures in 0u32..6,
            interruptions in 0u32..6,
            max_attempts in 1u32..6,
            max_interruptions in 0u32..6,
            requeue in any::<bool>(),
            ending in any_ending(),
        ) {
            let standing = Standing { status, launch, failures, interruptions, max_attempts, retry_rules: Vec::new() };
            let attempt = Attempt { launch: attempt_launch, route: Some(Route::Fargate), id: Some("t") };
            let policy = Policy { max_interruptions, retry_delay_cap: u32::MAX, requeue };
            let infrastructure = matches!(
                &ending,
                Ending::Stopped { outcome: StopOutcome::Interrupted { .. }, .. }
            );
            let cancel = matches!(&ending, Ending::Cancelled { .. });
            match settle(&standing, &attempt, ending, &policy, NOW) {
                Settlement::Ended { status: s } => {
                    prop_assert!(status.is_final());
                    prop_assert_eq!(s, status);
                }
                Settlement::NotCurrent => {
                    prop_assert!(!status.is_final() && !cancel);
                    prop_assert!(attempt_launch != launch || !status.is_launched());
                }
                Settlement::Apply(s) => {
                    prop_assert!(!status.is_final(), "an ended job is never moved");
                    prop_assert!(!(s.add_failure && s.add_interruption), "one counter at most");
                    if infrastructure {
                        prop_assert!(!s.add_failure, "an interruption is not a failure");
                    }
                    if s.add_failure {
                        // Counted once, and never past max_attempts.
                        prop_assert!(failures < max_attempts || s.status == JobStatus::Failed);
                    }
                    if s.requeue.is_some() {
                        prop_assert!(requeue && s.release_claim);
                        prop_assert_eq!(s.status, JobStatus::Accepted);
                        if s.add_failure {
                            prop_assert!(failures + 1 < max_attempts);
                        }
                        if s.add_interruption {
                            prop_assert!(interruptions < max_interruptions);
                        }
                    } else {
                        prop_assert!(!s.release_claim);
                        prop_assert!(s.status.is_final(), "without a re-queue the job ends");
                    }
                    prop_assert!(s.status.sources().contains(&status));
                    let launched = status.is_launched() && attempt_launch == launch;
                    prop_assert_eq!(s.history.is_some(), launched);
                    prop_assert_eq!(s.expect_launch, !cancel);
                }
            }
        }
    }
}
