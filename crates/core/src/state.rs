//! The job state machine: the statuses a job record goes through and the
//! changes allowed between them. The job store turns [`JobStatus::sources`]
//! into conditional writes, so a duplicate delivery or a late event can never
//! move a job backwards.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for its dependencies to end ([`crate::dependency`]).
    Pending,
    Accepted,
    Dispatched,
    WaitingForCapacity,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Rejected,
}

use JobStatus::*;

impl JobStatus {
    pub const ALL: [JobStatus; 10] = [
        Pending,
        Accepted,
        Dispatched,
        WaitingForCapacity,
        Running,
        Succeeded,
        Failed,
        TimedOut,
        Cancelled,
        Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "PENDING",
            Accepted => "ACCEPTED",
            Dispatched => "DISPATCHED",
            WaitingForCapacity => "WAITING_FOR_CAPACITY",
            Running => "RUNNING",
            Succeeded => "SUCCEEDED",
            Failed => "FAILED",
            TimedOut => "TIMED_OUT",
            Cancelled => "CANCELLED",
            Rejected => "REJECTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// An end state: nothing moves a job out of it.
    pub fn is_final(self) -> bool {
        matches!(self, Succeeded | Failed | TimedOut | Cancelled | Rejected)
    }

    /// A job can be created directly in these states (no record before).
    pub fn is_initial(self) -> bool {
        matches!(self, Pending | Accepted | Rejected)
    }

    /// A job in this state has a launch in the world (an ECS task or a
    /// Lambda invocation) that may still be running.
    pub fn is_launched(self) -> bool {
        matches!(self, Dispatched | Running)
    }

    /// The states a job may move to `self` from.
    ///
    /// - `ACCEPTED` is reached again from `DISPATCHED` / `RUNNING` when an
    ///   attempt ended and the job goes back on the queue for another one (a
    ///   retry after a failure of the job, or a re-dispatch after the
    ///   infrastructure interrupted it).
    /// - `DISPATCHED` and `WAITING_FOR_CAPACITY` are reached only before the
    ///   launch is recorded: a launch taken over is a new launch number,
    ///   claimed from `ACCEPTED` / `WAITING_FOR_CAPACITY`, and a write
    ///   repeated (a retry after its answer was lost) must not apply twice.
    /// - `FAILED` may come straight from `ACCEPTED` or `WAITING_FOR_CAPACITY`
    ///   when a launch fails permanently (say, a missing task definition).
    /// - `PENDING` is only ever a job's first state: it leaves it for
    ///   `ACCEPTED` when its dependencies are met, `FAILED` when one can no
    ///   longer be, or `CANCELLED`.
    ///
    /// An array's parent launches nothing itself: it stays `ACCEPTED` while
    /// its children run and then ends `SUCCEEDED` or `FAILED` by them
    /// ([`crate::array`]), the one move outside these.
    pub fn sources(self) -> &'static [JobStatus] {
        match self {
            Rejected | Pending => &[],
            Accepted => &[Pending, Dispatched, Running],
            Dispatched => &[Accepted, WaitingForCapacity],
            WaitingForCapacity => &[Accepted, WaitingForCapacity],
            Running => &[Dispatched],
            Succeeded | TimedOut => &[Dispatched, Running],
            Failed => &[Pending, Accepted, WaitingForCapacity, Dispatched, Running],
            Cancelled => &[Pending, Accepted, WaitingForCapacity, Dispatched, Running],
        }
    }

    /// Whether a job in `self` may be held for its definition's spending
    /// limit ([`crate::spending`]): a job waiting to launch goes back to
    /// `ACCEPTED`, its launch released, until the next day. The one move
    /// outside [`JobStatus::sources`], which it keeps: from
    /// `WAITING_FOR_CAPACITY` it ends the wait, which no delivery would
    /// otherwise end for a day.
    pub fn can_be_held(self) -> bool {
        matches!(self, Accepted | WaitingForCapacity)
    }

    /// Whether a job in `self` may move to `to`.
    pub fn can_become(self, to: JobStatus) -> bool {
        to.sources().contains(&self)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_leaves_an_end_state() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to} must not be allowed");
            }
        }
    }

    #[test]
    fn the_usual_paths_are_allowed() {
        let paths: &[&[JobStatus]] = &[
            &[Accepted, Dispatched, Running, Succeeded],
            &[
                Accepted,
                WaitingForCapacity,
                WaitingForCapacity,
                Dispatched,
                Running,
                Failed,
            ],
            &[Accepted, Dispatched, Succeeded], // RUNNING event missed or late
            &[
                Accepted,
                Dispatched,
                Running,
                Accepted,
                WaitingForCapacity,
                Dispatched,
                Running,
                Succeeded,
            ], // retry, which waits for capacity
            &[Accepted, Dispatched, Running, TimedOut],
            &[
                Accepted, Dispatched, Running, Accepted, Dispatched, Succeeded,
            ], // re-dispatch
            &[Accepted, WaitingForCapacity, Cancelled],
            &[Accepted, Failed],
            &[Pending, Accepted, Dispatched, Running, Succeeded], // its dependencies met
            &[Pending, Failed],                                   // one can no longer be met
            &[Pending, Cancelled],
        ];
        for path in paths {
            for pair in path.windows(2) {
                assert!(
                    pair[0].can_become(pair[1]),
                    "{} -> {} in {path:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }

    #[test]
    fn late_events_cannot_move_a_job_backwards() {
        assert!(!Succeeded.can_become(Accepted));
        assert!(!Succeeded.can_become(Running));
        assert!(!Cancelled.can_become(Dispatched));
        assert!(
            !Accepted.can_become(Running),
            "RUNNING needs a launch first"
        );
        assert!(!WaitingForCapacity.can_become(Succeeded));
        // A recorded launch is not recorded again, nor sent back to wait:
        // a repeated write (retried after its answer was lost) must not
        // count the attempt twice.
        for launched in [Dispatched, Running] {
            assert!(!launched.can_become(Dispatched), "{launched}");
            assert!(!launched.can_become(WaitingForCapacity), "{launched}");
        }
    }

    #[test]
    fn a_record_starts_pending_accepted_or_rejected_and_only_a_launched_or_pending_job_goes_back() {
        let initial: Vec<JobStatus> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_initial())
            .collect();
        assert_eq!(initial, [Pending, Accepted, Rejected]);
        assert!(Rejected.sources().is_empty());
        assert!(Pending.sources().is_empty(), "nothing goes back to PENDING");
        for from in JobStatus::ALL {
            assert_eq!(
                from.can_become(Accepted),
                from.is_launched() || from == Pending,
                "{from} -> ACCEPTED"
            );
        }
        assert!(
            !Pending.can_become(Dispatched),
            "a launch is claimed from ACCEPTED"
        );
        assert!(!Pending.can_be_held());
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(JobStatus::parse("running"), None);
    }
}
