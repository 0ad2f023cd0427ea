//! What a run of one policy found, and how it is shown: a table, JSON.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use crate::cost::Cost;

/// One policy on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub trace: String,
    /// The whole cost of the simulated span, USD.
    pub cost_usd: f64,
    pub cost: Cost,
    /// From submission to the job's container running, over jobs that ran.
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_max_s: f64,
    /// The same p95 over the jobs only EC2 runs (no Fargate size holds
    /// them, or their definition forbids Fargate, and Lambda cannot),
    /// where there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ec2_only_wait_p95_s: Option<f64>,
    pub instance_hours: f64,
    /// Instance-hours with no task on the instance (booting included).
    pub idle_instance_hours: f64,
    /// Instances launched and terminated by scaling (not Spot replacements).
    pub scale_events: u32,
    pub scale_outs: u32,
    pub scale_ins: u32,
    /// Scale events undone within 10 minutes while the load did not turn
    /// (see [`flaps`]).
    pub flaps: u32,
    pub tasks_killed_by_scale_in: u32,
    pub tasks_interrupted: u32,
    /// The share of jobs that ran on Fargate (Spot or not).
    pub fargate_share: f64,
    pub jobs: usize,
    pub jobs_succeeded: usize,
    pub jobs_timed_out: usize,
    /// Jobs that never ran: no capacity where they fit within berth's
    /// six hours, or never placed.
    pub jobs_failed: usize,
    /// Jobs the policy cannot run at all (a GPU job on Fargate, say).
    pub jobs_unrunnable: usize,
    /// Jobs still waiting or running a week after the trace's span, when the
    /// run gives up (a cluster too small for the day).
    pub jobs_unfinished: usize,
    /// Jobs in no end state, no queue and no task: dropped. Must be 0.
    pub jobs_lost: usize,
    pub runs_lambda: usize,
    pub runs_ec2: usize,
    pub runs_fargate: usize,
    pub runs_fargate_spot: usize,
    /// Launches on Fargate Spot that found no capacity and went to Fargate.
    pub fargate_spot_shortfalls: u32,
    /// Runs of the capacity metric (and its scaler), each paid as a
    /// function's invocation.
    pub capacity_metric_runs: u64,
    /// The compute cost (instances, volumes, Fargate, Lambda jobs) over
    /// `lower-bound`'s for the same trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_vs_lower_bound: Option<f64>,
    pub peak_instances: u32,
    /// Instances up 30 minutes after the last job ended.
    pub instances_30_min_after_last_job: u32,
    /// The fixed size of `always-on`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_on_instances: Option<u32>,
    /// The jobs' attempts as berth prices each when it ends (what `berth
    /// cost` would show): Lambda and Fargate as billed, a task on EC2 its
    /// share of its instance over its run. Below the compute cost by the
    /// instances' idle time and their volumes.
    pub jobs_priced_usd: f64,
    /// Each attempt and its cost.
    #[serde(skip)]
    pub attempts: Vec<PricedAttempt>,
    /// How the launches met AWS's rate limits (`None`: limits off, or the
    /// policy makes no calls of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<Pace>,
    /// What the policy scales on, as plotted.
    pub metric_name: &'static str,
    #[serde(skip)]
    pub series: Vec<Sample>,
}

/// The launches against AWS's rate limits: how soon the last job launched
/// (its RunTask answered, its invocation started) after the first was
/// submitted, against the least time the limits allow the same launches
/// ([`crate::limits::floor`]), and what was throttled on the way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pace {
    pub floor_s: f64,
    pub launched_by_s: f64,
    /// Calls AWS refused for their rate (the SDK's tries each counted).
    pub throttled_calls: u64,
    /// Deliveries that ended throttled: the message came back.
    pub throttled_deliveries: u64,
    /// Throttled at the queue's last receive: went on in a new message.
    pub carried_on: u64,
    /// Jobs that ended failed after a throttled delivery.
    pub failed_after_throttling: usize,
    /// Launches in each second from the first submission: on ECS
    /// (RunTask) and on Lambda (an invocation started).
    #[serde(skip)]
    pub ecs_per_s: Vec<u32>,
    #[serde(skip)]
    pub lambda_per_s: Vec<u32>,
}

impl Pace {
    /// How far above the floor the last launch came (1 is the floor).
    pub fn over_floor(&self) -> f64 {
        if self.floor_s > 0.0 {
            self.launched_by_s / self.floor_s
        } else {
            1.0
        }
    }
}

/// An attempt as the simulator ran it, and what it cost by berth-core's
/// [`berth_core::cost::price`]. Times in milliseconds from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedAttempt {
    /// The job's index in the trace.
    pub job: usize,
    pub launched_ms: u64,
    /// When a Fargate task's image pull began.
    pub pull_started_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub stopped_ms: u64,
    pub usage: berth_core::cost::Usage,
    pub usd: f64,
}

/// The state once a minute, for the plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub instances: u32,
    pub ec2_tasks: u32,
    pub fargate_tasks: u32,
    pub lambda_tasks: u32,
    pub waiting: u32,
    pub metric: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    Launch,
    Terminate,
}

/// A launch or termination by scaling, with the load at that moment: what
/// the jobs in the system that need ECS (waiting or running) ask, in
/// instances (each job's larger share of an instance's CPU or memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleEvent {
    pub at_ms: u64,
    pub kind: ScaleKind,
    pub load: f64,
}

/// How close an undoing must follow to be a flap.
pub const FLAP_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Flaps: scale events that undo one of the other kind made within the
/// last 10 minutes while the load did not turn: a termination after a
/// launch while the load did not fall, or a launch after a termination
/// while it did not rise. Each event is counted once.
pub fn flaps(events: &[ScaleEvent]) -> u32 {
    let mut n = 0;
    for (i, e) in events.iter().enumerate() {
        let undoes = events[..i]
            .iter()
            .rev()
            .take_while(|p| e.at_ms - p.at_ms <= FLAP_WINDOW_MS)
            .any(|p| match (p.kind, e.kind) {
                (ScaleKind::Launch, ScaleKind::Terminate) => e.load >= p.load - 1e-9,
                (ScaleKind::Terminate, ScaleKind::Launch) => e.load <= p.load + 1e-9,
                _ => false,
            });
        n += u32::from(undoes);
    }
    n
}

/// The nearest-rank `p` quantile (0 < p <= 1) of sorted `values`; 0 for none.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The launches against AWS's rate limits, one row per policy that makes
/// its own calls.
pub fn pace_table(outcomes: &[Outcome]) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "policy",
        "floor s",
        "last launch s",
        "/ floor",
        "ECS peak /s",
        "throttled calls",
        "throttled deliveries",
        "carried on",
        "failed after throttling",
        "lost",
    ]);
    for o in outcomes {
        let Some(p) = &o.pace else { continue };
        t.add_row([
            o.policy.clone(),
            format!("{:.0}", p.floor_s),
            format!("{:.0}", p.launched_by_s),
            format!("{:.2}", p.over_floor()),
            p.ecs_per_s.iter().max().copied().unwrap_or(0).to_string(),
            p.throttled_calls.to_string(),
            p.throttled_deliveries.to_string(),
            p.carried_on.to_string(),
            p.failed_after_throttling.to_string(),
            o.jobs_lost.to_string(),
        ]);
    }
    for i in 1..=9 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!(
        "launches against AWS's rate limits (floor: the least time the limits allow the same launches, from the first submission; a launch: RunTask answered, or an invocation started)\n{t}\n"
    )
}

/// The outcomes as a table, one row per policy.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "policy",
        "cost $",
        "ec2+ebs",
        "fargate",
        "lambda",
        "berth",
        "compute / lower bound",
        "wait p50 s",
        "p95 s",
        "max s",
        "inst-h",
        "idle-h",
        "scale out/in",
        "flaps",
        "killed",
        "fargate %",
        "jobs ok/failed/unfinished/lost",
    ]);
    for o in outcomes {
        let c = &o.cost;
        let name = match o.always_on_instances {
            Some(n) => format!("{} ({n})", o.policy),
            None => o.policy.clone(),
        };
        t.add_row([
            name,
            format!("{:.2}", o.cost_usd),
            format!("{:.2}", c.ec2 + c.ebs),
            format!("{:.2}", c.fargate),
            format!("{:.2}", c.lambda_jobs),
            format!("{:.2}", c.functions + c.requests + c.cloudwatch),
            o.compute_vs_lower_bound
                .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
            format!("{:.1}", o.wait_p50_s),
            format!("{:.1}", o.wait_p95_s),
            format!("{:.0}", o.wait_max_s),
            format!("{:.1}", o.instance_hours),
            format!("{:.1}", o.idle_instance_hours),
            format!("{}/{}", o.scale_outs, o.scale_ins),
            o.flaps.to_string(),
            o.tasks_killed_by_scale_in.to_string(),
            format!("{:.0}", o.fargate_share * 100.0),
            format!(
                "{}/{}/{}/{}",
                o.jobs_succeeded + o.jobs_timed_out,
                o.jobs_failed + o.jobs_unrunnable,
                o.jobs_unfinished,
                o.jobs_lost
            ),
        ]);
    }
    for i in 1..=15 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// The outcomes as a JSON array, one object per policy.
pub fn json(outcomes: &[Outcome]) -> String {
    serde_json::to_string_pretty(outcomes).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn ev(min: u64, kind: ScaleKind, load: u32) -> ScaleEvent {
        ScaleEvent {
            at_ms: min * MIN,
            kind,
            load: f64::from(load),
        }
    }

    use ScaleKind::{Launch as L, Terminate as T};

    #[test]
    fn a_launch_undone_while_the_load_holds_is_a_flap() {
        // Launched at 0 with 5 jobs; terminated at 6 with 5 still there.
        assert_eq!(flaps(&[ev(0, L, 5), ev(6, T, 5)]), 1);
        // The load fell meanwhile: scaling in is right.
        assert_eq!(flaps(&[ev(0, L, 5), ev(6, T, 2)]), 0);
        // More than 10 minutes apart: not a flap.
        assert_eq!(flaps(&[ev(0, L, 5), ev(11, T, 5)]), 0);
        // A termination undone by a launch while the load did not rise.
        assert_eq!(flaps(&[ev(0, T, 3), ev(4, L, 3)]), 1);
        assert_eq!(flaps(&[ev(0, T, 3), ev(4, L, 9)]), 0);
        // Launches alone never flap.
        assert_eq!(flaps(&[ev(0, L, 1), ev(1, L, 2), ev(2, L, 2)]), 0);
        // The seed's loop: out, in, out, in with the load steady.
        assert_eq!(
            flaps(&[ev(0, L, 8), ev(5, T, 8), ev(9, L, 8), ev(14, T, 8)]),
            3
        );
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 10.0);
        assert_eq!(quantile(&v, 0.95), 19.0);
        assert_eq!(quantile(&v, 1.0), 20.0);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
