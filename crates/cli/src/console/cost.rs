//! The console's cost view: what the jobs' attempts cost, by day,
//! definition, route or tag (`berth cost`'s report), and the same jobs
//! replayed in the simulator under berth and its alternatives.

use berth_aws::store::JobRecord;
use berth_core::{JobStatus, Processor};
use berth_sim::trace::TraceJob;
use berth_sim::{Outcome, Trace};
use serde::Deserialize;

use super::simulate::{self, Asked};
use crate::{Berth, CliError, spend};

/// The policies the replay compares.
pub const REPLAY_POLICIES: [&str; 4] = ["berth", "all-fargate-spot", "all-fargate", "aws-batch"];
const DAY_MS: i64 = 86_400_000;

/// The cost view's form, as its URL carries it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CostQuery {
    #[serde(default = "week")]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default = "by_day")]
    pub by: String,
    /// `on`: replay the jobs in the simulator.
    #[serde(default)]
    pub replay: String,
}

fn week() -> String {
    "7d".into()
}

fn by_day() -> String {
    "day".into()
}

impl Default for CostQuery {
    fn default() -> Self {
        Self {
            since: week(),
            until: String::new(),
            by: by_day(),
            replay: String::new(),
        }
    }
}

/// The jobs of the time replayed in the simulator.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Jobs replayed, and those left out (not ended, or never run).
    pub jobs: usize,
    pub left_out: usize,
    /// The whole UTC days replayed, from `from`.
    pub from: String,
    pub days: f64,
    pub outcomes: Vec<Outcome>,
}

/// What the cost view shows.
#[derive(Debug, Clone)]
pub struct CostView {
    pub report: spend::Report,
    pub replay: Option<Result<Replay, String>>,
}

/// `berth cost`'s report for `query`, and the replay when asked.
pub async fn read(berth: &Berth, query: &CostQuery) -> Result<CostView, CliError> {
    let now = crate::now_ms();
    let since = spend::parse_time(&query.since, now)?;
    let until = match query.until.trim() {
        "" => now,
        u => spend::parse_time(u, now)?,
    };
    let by = spend::GroupBy::parse(&query.by).map_err(CliError::Input)?;
    let report = berth.cost(since, until, &by).await?;
    let replay = if query.replay == "on" {
        let day0 = since.div_euclid(DAY_MS) * DAY_MS;
        let records = berth.store().recorded_between(day0, until).await?;
        let (trace, left_out) = trace_of(&records, day0);
        let from = crate::view::iso(day0).unwrap_or_default();
        let instance_types = berth
            .settings
            .scaling
            .as_ref()
            .map(|s| s.instance_types.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| berth_sim::figures::InstanceType::find(t).is_some())
            .collect();
        let asked = Asked {
            policies: REPLAY_POLICIES.iter().map(|p| (*p).to_owned()).collect(),
            instance_types,
            ..Asked::new_form()
        };
        let replayed = tokio::task::spawn_blocking(move || {
            if trace.jobs.len() > simulate::MOST_JOBS {
                return Err(format!(
                    "{} jobs: the console replays at most {}",
                    trace.jobs.len(),
                    simulate::MOST_JOBS
                ));
            }
            let outcomes = simulate::outcomes_of(&asked, &trace).map_err(|e| e.to_string())?;
            Ok(Replay {
                jobs: trace.jobs.len(),
                left_out,
                from,
                days: trace.span_s / 86_400.0,
                outcomes,
            })
        })
        .await
        .map_err(|e| CliError::Failed(format!("the simulator stopped: {e}")))?;
        Some(replayed)
    } else {
        None
    };
    Ok(CostView { report, replay })
}

/// The jobs of `records` as a simulator trace from `day0_ms` (a UTC
/// midnight): each ended job that ran, submitted when it was recorded,
/// running from its last launch to its end, as its definition resolved it.
/// Also how many were left out (not ended, never run, or unreadable).
pub fn trace_of(records: &[JobRecord], day0_ms: i64) -> (Trace, usize) {
    let mut jobs = Vec::new();
    let mut left_out = 0;
    for r in records {
        let ran = match (&r.job, r.created_at, r.dispatched_at, r.updated_at) {
            (Some(job), Some(created), Some(launched), Some(ended))
                if r.status.is_final() && r.attempts > 0 && r.status != JobStatus::Cancelled =>
            {
                Some((job, created, launched, ended))
            }
            _ => None,
        };
        let Some((job, created, launched, ended)) = ran else {
            left_out += 1;
            continue;
        };
        #[allow(clippy::cast_precision_loss)]
        jobs.push(TraceJob {
            submit_s: (created - day0_ms).max(0) as f64 / 1000.0,
            definition: job.definition.clone(),
            cpu: job.cpu,
            memory: job.memory,
            gpu: job.gpu,
            duration_s: ((ended - launched).max(1000) as f64) / 1000.0,
            timeout_s: job.timeout_seconds,
            lambda: job.lambda_function.is_some()
                && matches!(job.processor, Processor::Auto | Processor::Lambda),
            fargate: job.fargate_allowed
                && matches!(job.processor, Processor::Auto | Processor::Fargate),
        });
    }
    (Trace::new("recorded", jobs), left_out)
}
