//! `lower-bound`: every job at its cheapest exact price, started at once.
//! Fargate Spot by the second with no minimum and no image pull; Lambda, for
//! a job whose definition names a function; or its share of the cheapest
//! Spot instance of the group's types that holds it (the larger of its CPU,
//! memory and GPU shares, root volume included), packed perfectly, with no
//! idle and no boot. No scheduler pays less for the same jobs; berth's
//! compute cost is reported as a ratio to it.

use berth_core::prices::Arch;

use crate::cost::Cost;
use crate::engine::{Plans, Settings};
use crate::policy::Policy;
use crate::report::Outcome;
use crate::trace::{Trace, TraceJob};

/// Where a job is cheapest, and what it costs there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cheapest {
    FargateSpot(f64),
    Lambda(f64),
    Instance(f64),
}

impl Cheapest {
    pub fn usd(self) -> f64 {
        match self {
            Self::FargateSpot(v) | Self::Lambda(v) | Self::Instance(v) => v,
        }
    }
}

/// The cheapest exact price of job `j` of the trace; `None`: nothing the
/// settings allow runs it.
pub fn cheapest(job: &TraceJob, j: usize, plans: &Plans, settings: &Settings) -> Option<Cheapest> {
    let prices = &settings.prices;
    let seconds = job.duration_s.min(f64::from(job.timeout_s));
    let mut best: Option<Cheapest> = None;
    let mut consider = |c: Cheapest| {
        if best.is_none_or(|b| c.usd() < b.usd()) {
            best = Some(c);
        }
    };
    if let (true, Some(size)) = (job.fargate, plans.fargate_size(j)) {
        let hour = prices.fargate_hour(size, Arch::X86_64, true);
        consider(Cheapest::FargateSpot(hour * seconds / 3600.0));
    }
    if job.lambda && plans.fits_lambda(j) {
        consider(Cheapest::Lambda(prices.lambda(
            job.cpu,
            job.memory,
            Arch::X86_64,
            seconds,
        )));
    }
    let need = plans.need(j);
    // On any type a policy may launch.
    for t in settings.instance_types.iter().chain(&settings.allowed) {
        let room = t.registered();
        if !need.fits(room) {
            continue;
        }
        let Some(hour) = prices.spot_hour(t.name) else {
            continue;
        };
        let share = |n: u32, r: u32| {
            if r == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(r)
            }
        };
        let part = share(need.cpu, room.cpu)
            .max(share(need.memory, room.memory))
            .max(share(need.gpu, room.gpu));
        let hour = hour + prices.root_volume_hour();
        consider(Cheapest::Instance(part * hour * seconds / 3600.0));
    }
    best
}

/// The `lower-bound` outcome of the trace.
pub fn outcome(trace: &Trace, plans: &Plans, settings: &Settings) -> Outcome {
    let mut cost = Cost::default();
    let (mut ok, mut timed_out, mut unrunnable) = (0, 0, 0);
    let (mut lambda, mut ec2, mut fargate_spot) = (0, 0, 0);
    for (j, job) in trace.jobs.iter().enumerate() {
        match cheapest(job, j, plans, settings) {
            None => unrunnable += 1,
            Some(c) => {
                match c {
                    Cheapest::FargateSpot(v) => {
                        cost.fargate += v;
                        fargate_spot += 1;
                    }
                    Cheapest::Lambda(v) => {
                        cost.lambda_jobs += v;
                        lambda += 1;
                    }
                    Cheapest::Instance(v) => {
                        cost.ec2 += v;
                        ec2 += 1;
                    }
                }
                if job.duration_s > f64::from(job.timeout_s) {
                    timed_out += 1;
                } else {
                    ok += 1;
                }
            }
        }
    }
    let ran = lambda + ec2 + fargate_spot;
    Outcome {
        policy: Policy::LowerBound.name().into(),
        trace: trace.name.clone(),
        cost_usd: cost.total(),
        jobs_priced_usd: cost.compute(),
        attempts: Vec::new(),
        cost,
        wait_p50_s: 0.0,
        wait_p95_s: 0.0,
        wait_max_s: 0.0,
        ec2_only_wait_p95_s: None,
        instance_hours: 0.0,
        idle_instance_hours: 0.0,
        scale_events: 0,
        scale_outs: 0,
        scale_ins: 0,
        flaps: 0,
        tasks_killed_by_scale_in: 0,
        tasks_interrupted: 0,
        fargate_share: if ran == 0 {
            0.0
        } else {
            fargate_spot as f64 / ran as f64
        },
        jobs: trace.jobs.len(),
        jobs_succeeded: ok,
        jobs_timed_out: timed_out,
        jobs_failed: 0,
        jobs_unrunnable: unrunnable,
        jobs_unfinished: 0,
        jobs_lost: 0,
        runs_lambda: lambda,
        runs_ec2: ec2,
        runs_fargate: 0,
        runs_fargate_spot: fargate_spot,
        fargate_spot_shortfalls: 0,
        capacity_metric_runs: 0,
        compute_vs_lower_bound: None,
        peak_instances: 0,
        instances_30_min_after_last_job: 0,
        always_on_instances: None,
        pace: None,
        metric_name: "",
        series: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::InstanceType;

    fn one(row: &str) -> (Trace, Plans) {
        let csv = format!(
            "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n{row}\n"
        );
        let trace = Trace::from_csv("one", csv.as_bytes()).unwrap();
        let plans = Plans::new(&trace);
        (trace, plans)
    }

    #[test]
    fn each_job_at_its_cheapest_exact_price() {
        // The seed's group alone.
        let settings = Settings {
            allowed: Vec::new(),
            ..Settings::default()
        };
        // 1 vCPU / 2 GB for 600 s on Fargate Spot by the second: 0.0148113
        // an hour, no minimum, no pull.
        let (t, p) = one("0,render,1024,2048,0,600,3600,false,true");
        let c = cheapest(&t.jobs[0], 0, &p, &settings).unwrap();
        assert!(matches!(c, Cheapest::FargateSpot(_)), "{c:?}");
        assert!((c.usd() - 0.014_811_3 / 6.0).abs() < 1e-7, "{c:?}");
        // A job Fargate does not take: its share of the cheapest type that
        // holds it. Half an m5a.large (0.086 * 0.4 + its volume) for an hour.
        let (t, p) = one("0,steady,1024,2048,0,3600,7200,false,false");
        let c = cheapest(&t.jobs[0], 0, &p, &settings).unwrap();
        let m5a = 0.086 * 0.4 + 30.0 * 0.08 / 730.0;
        assert_eq!(c, Cheapest::Instance(m5a / 2.0));
        // A GPU job with no GPU type allowed: nothing runs it; with one,
        // a whole g4dn.xlarge's GPU.
        let (t, p) = one("0,train,4096,15000,1,3600,7200,false,false");
        assert_eq!(cheapest(&t.jobs[0], 0, &p, &settings), None);
        let gpu = Settings {
            instance_types: vec![InstanceType::find("g4dn.xlarge").unwrap()],
            ..settings.clone()
        };
        let c = cheapest(&t.jobs[0], 0, &p, &gpu).unwrap();
        assert!((c.usd() - (0.526 * 0.4 + 30.0 * 0.08 / 730.0)).abs() < 1e-12);
        // Or one of the types berth may launch.
        let c = cheapest(&t.jobs[0], 0, &p, &Settings::default()).unwrap();
        assert!((c.usd() - (0.526 * 0.4 + 30.0 * 0.08 / 730.0)).abs() < 1e-12);
        // A 2 s job that names a function: Lambda's 2 GB-s and a request
        // beat Fargate Spot's 2 s.
        let (t, p) = one("0,tiny,1024,2048,0,2,60,true,true");
        let o = outcome(&t, &p, &settings);
        assert_eq!((o.runs_lambda, o.runs_fargate_spot), (0, 1), "{o:?}");
        assert_eq!(o.jobs_succeeded, 1);
    }
}
