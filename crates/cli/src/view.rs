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
    /// Where the last attempt ran.
    pub route: Option<&'static str>,
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
    pub task_arn: Option<String>,
    pub request_id: Option<String>,
    pub exit_code: Option<i32>,
    /// How each attempt ended, oldest first.
    pub history: Vec<AttemptView>,
    /// The job as it runs (`None` for a rejected message).
    pub job: Option<ResolvedJob>,
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
            route: r.route.map(|x| x.as_str()),
            created_at: r.created_at.and_then(iso),
            dispatched_at: r.dispatched_at.and_then(iso),
            ended_at: ended.and_then(iso),
            duration_seconds,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            failures: r.failures,
            interruptions: r.interruptions,
            waits_for_capacity: r.waits,
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
    pub attempts: u32,
    pub reason: Option<String>,
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
            attempts: j.attempts,
            reason: shown_reason(j.status, j.reason.as_deref()).map(str::to_owned),
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
