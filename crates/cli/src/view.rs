//! What the CLI shows of jobs and definitions: the same fields as text and
//! as JSON (`--output json`: stable snake_case names, times in ISO 8601
//! UTC, durations in seconds).

use berth_aws::store::{JobRecord, JobSummary};
use berth_core::{JobStatus, ResolvedJob};
use serde::Serialize;

/// Epoch milliseconds as ISO 8601 UTC (`2026-12-01T13:43:00.123Z`).
pub fn iso(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// A job in full (`berth status`).
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub status: &'static str,
    pub reason: Option<String>,
    pub definition: Option<String>,
    /// Its tags: its definition's, its own over them.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Where the last attempt ran.
    pub route: Option<&'static str>,
    /// Where each attempt ran, oldest first.
    pub routes: Vec<&'static str>,
    /// What the job is doing now, in words (waiting to retry, waiting for
    /// capacity, ...), with the reason.
    pub now: Option<String>,
    /// When a waiting job is tried next.
    pub next_try_at: Option<String>,
    /// Since when a job has waited for capacity.
    pub waiting_since: Option<String>,
    pub created_at: Option<String>,
    /// When the last launch was made.
    pub dispatched_at: Option<String>,
    /// When the job ended (`None` while it has not).
    pub ended_at: Option<String>,
    /// From the last launch to the end, or to now while it runs.
    pub duration_seconds: Option<f64>,
    /// Launches that started the job.
    pub attempts: u32,
    pub max_attempts: Option<u32>,
    /// Attempts that failed on the job's account (they count against
    /// `max_attempts`).
    pub failures: u32,
    /// Attempts the infrastructure interrupted (they do not).
    pub interruptions: u32,
    pub waits_for_capacity: u32,
    /// Times it was held for its definition's spending limit.
    pub holds: u32,
    pub task_arn: Option<String>,
    pub request_id: Option<String>,
    pub exit_code: Option<i32>,
    /// How each attempt ended, oldest first.
    pub history: Vec<AttemptView>,
    /// What the attempts cost so far, USD (an estimate by berth's price
    /// model; `None` before the first is priced).
    pub cost_usd: Option<f64>,
    /// What each attempt cost, oldest first.
    pub costs: Vec<CostView>,
    /// The job as it runs (`None` for a rejected message).
    pub job: Option<ResolvedJob>,
    /// An array's children, counted by status (`PENDING`: not released
    /// yet); `None` for any other job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<std::collections::BTreeMap<String, u32>>,
    /// The message as it was sent.
    pub message_id: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub launch: u32,
    pub route: Option<&'static str>,
    pub outcome: String,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The ECS task ARN or the Lambda request id.
    pub id: Option<String>,
    pub ended_at: Option<String>,
    /// What it cost, USD, once priced.
    pub cost_usd: Option<f64>,
}

/// An attempt's cost, and what it was priced on.
#[derive(Debug, Clone, Serialize)]
pub struct CostView {
    pub launch: u32,
    pub route: &'static str,
    pub usd: f64,
    pub basis: String,
}

impl JobView {
    pub fn of(r: &JobRecord, now_ms: i64) -> Self {
        let ended = r.status.is_final().then_some(r.updated_at).flatten();
        #[allow(clippy::cast_precision_loss)]
        let duration_seconds = r
            .dispatched_at
            .filter(|_| r.attempts > 0)
            .map(|from| (ended.unwrap_or(now_ms) - from).max(0) as f64 / 1000.0);
        Self {
            job_id: r.job_id.clone(),
            status: r.status.as_str(),
            reason: shown_reason(r.status, r.reason.as_deref()).map(str::to_owned),
            definition: r.definition.clone(),
            tags: r.job.as_ref().map(|j| j.tags.clone()).unwrap_or_default(),
            route: r.route.map(|x| x.as_str()),
            routes: r.routes().into_iter().map(|x| x.as_str()).collect(),
            now: now_line(
                r.status,
                r.reason.as_deref(),
                r.next_try_at,
                r.waiting_since,
                now_ms,
            ),
            next_try_at: r.next_try_at.and_then(iso),
            waiting_since: r.waiting_since.and_then(iso),
            created_at: r.created_at.and_then(iso),
            dispatched_at: r.dispatched_at.and_then(iso),
            ended_at: ended.and_then(iso),
            duration_seconds,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            failures: r.failures,
            interruptions: r.interruptions,
            waits_for_capacity: r.waits,
            holds: r.holds,
            children: None,
            task_arn: r.task_arn.clone(),
            request_id: r.request_id.clone(),
            exit_code: r.exit_code,
            history: r
                .history
                .iter()
                .map(|h| AttemptView {
                    launch: h.launch,
                    route: h.route.map(|x| x.as_str()),
                    outcome: h.outcome.clone(),
                    reason: h.reason.clone(),
                    exit_code: h.exit_code,
                    id: h.id.clone(),
                    ended_at: iso(h.at),
                    cost_usd: r
                        .costs
                        .iter()
                        .find(|c| c.launch == h.launch)
                        .map(|c| c.cost.usd),
                })
                .collect(),
            cost_usd: r.cost_usd,
            costs: r
                .costs
                .iter()
                .map(|c| CostView {
                    launch: c.launch,
                    route: c.cost.route.as_str(),
                    usd: c.cost.usd,
                    basis: c.cost.basis.clone(),
                })
                .collect(),
            job: r.job.clone(),
            message_id: r.message_id.clone(),
            body: r.raw_body.clone(),
        }
    }
}

/// A job in a listing (`berth list`, `berth watch`).
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub job_id: String,
    pub status: &'static str,
    pub definition: Option<String>,
    pub route: Option<&'static str>,
    /// Where each attempt ran, oldest first (`berth list` knows only the
    /// last).
    pub routes: Vec<&'static str>,
    pub attempts: u32,
    /// What its attempts cost so far, USD.
    pub cost_usd: Option<f64>,
    pub reason: Option<String>,
    /// When a waiting job is tried next (`berth watch`).
    pub next_try_at: Option<String>,
    /// Since when a job has waited for capacity (`berth watch`).
    pub waiting_since: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl JobRow {
    pub fn of(j: &JobSummary) -> Self {
        Self {
            job_id: j.job_id.clone(),
            status: j.status.as_str(),
            definition: j.definition.clone(),
            route: j.route.map(|x| x.as_str()),
            routes: j.routes.iter().map(|x| x.as_str()).collect(),
            attempts: j.attempts,
            cost_usd: j.cost_usd,
            reason: shown_reason(j.status, j.reason.as_deref()).map(str::to_owned),
            next_try_at: j.next_try_at.and_then(iso),
            waiting_since: j.waiting_since.and_then(iso),
            created_at: j.created_at.and_then(iso),
            updated_at: j.updated_at.and_then(iso),
        }
    }
}

/// The reason worth showing: none for a job that succeeded (the record
/// keeps the last reason it was given, such as an interruption it came
/// through).
pub fn shown_reason(status: JobStatus, reason: Option<&str>) -> Option<&str> {
    reason.filter(|r| status != JobStatus::Succeeded && !r.is_empty())
}

/// What a job is doing now, in words, with its reason: a job between
/// attempts says it waits to retry and when; a job waiting for capacity says
/// since when and when it is tried next. `None` where there is nothing to
/// say (a job that succeeded, a job running with no reason).
pub fn now_line(
    status: JobStatus,
    reason: Option<&str>,
    next_try_at: Option<i64>,
    waiting_since: Option<i64>,
    now_ms: i64,
) -> Option<String> {
    let reason = shown_reason(status, reason).map(one_line);
    let next = next_try_at.map(|at| match at - now_ms {
        ms if ms > 0 => format!("next try in {}", span(ms)),
        _ => "being tried now".to_owned(),
    });
    let held = berth_core::spending::is_held(reason.as_deref());
    let doing = match (status, next) {
        // Its reason says it all: the limit, the spend, when the day turns.
        (JobStatus::Accepted, Some(_)) if held => Some("held".to_owned()),
        (JobStatus::Accepted, Some(next)) => Some(format!("waiting to retry, {next}")),
        (JobStatus::WaitingForCapacity, next) => {
            let since = waiting_since
                .map(|t| format!(" for {}", span(now_ms - t)))
                .unwrap_or_default();
            Some(match next {
                Some(next) => format!("waiting for capacity{since}, {next}"),
                None => format!("waiting for capacity{since}"),
            })
        }
        _ => None,
    };
    match (doing, reason) {
        (Some(doing), Some(reason)) => Some(format!("{doing}: {reason}")),
        (doing, reason) => doing.or(reason),
    }
}

pub use berth_core::text::span;

/// A reason on one line: its first line, and where that only announces the
/// end of stderr, the last line of it.
pub fn one_line(reason: &str) -> String {
    let mut lines = reason.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("");
    match lines.next_back() {
        Some(last) if first.ends_with("stderr ends:") => format!("{first} … {last}"),
        _ => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_job_between_attempts_says_it_waits_to_retry_and_when() {
        let line = now_line(
            JobStatus::Accepted,
            Some("exit code 3 (1 of at most 2)"),
            Some(NOW + 25_000),
            None,
            NOW,
        );
        assert_eq!(
            line.as_deref(),
            Some("waiting to retry, next try in 25 s: exit code 3 (1 of at most 2)")
        );
        // Due: its message is on its way to the driver.
        let due = now_line(JobStatus::Accepted, None, Some(NOW - 1), None, NOW);
        assert_eq!(due.as_deref(), Some("waiting to retry, being tried now"));
        // A job never tried has nothing to wait for.
        assert_eq!(now_line(JobStatus::Accepted, None, None, None, NOW), None);
    }

    #[test]
    fn a_job_waiting_for_capacity_says_since_when_and_the_next_try() {
        let line = now_line(
            JobStatus::WaitingForCapacity,
            Some("EC2 has no room"),
            Some(NOW + 90_000),
            Some(NOW - 185_000),
            NOW,
        );
        assert_eq!(
            line.as_deref(),
            Some("waiting for capacity for 3 min 5 s, next try in 1 min 30 s: EC2 has no room")
        );
    }

    #[test]
    fn a_held_job_says_so_with_its_limit() {
        let reason = "spending limit $0.05/day reached ($0.0512 spent this UTC day); the next day starts in 3 h 0 min";
        assert_eq!(
            now_line(JobStatus::Accepted, Some(reason), Some(10_800_000), None, 0).as_deref(),
            Some(format!("held: {reason}").as_str())
        );
    }

    #[test]
    fn other_states_show_their_reason_alone() {
        assert_eq!(
            now_line(JobStatus::Failed, Some("exit code 3"), None, None, NOW).as_deref(),
            Some("exit code 3")
        );
        // A succeeded job keeps no reason it came through.
        assert_eq!(
            now_line(
                JobStatus::Succeeded,
                Some("interrupted (1 of at most 5)"),
                None,
                None,
                NOW
            ),
            None
        );
        assert_eq!(span(7_200_000 + 60_000), "2 h 1 min");
    }
}
