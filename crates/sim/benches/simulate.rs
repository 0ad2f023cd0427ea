//! `make bench-sim`: how fast the simulator runs a day of 100,000 jobs
//! through every policy. Prints figures; it does not fail on a slow machine.

use std::time::Instant;

use berth_sim::{Builtin, Plans, Policy, Settings, compare, simulate};

fn main() {
    let jobs = std::env::var("BENCH_SIM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // A group large enough for the day's work, so that every policy ends it.
    let settings = Settings {
        max_size: 400,
        ..Settings::default()
    };
    println!(
        "berth-sim: a day of {jobs} jobs (steady and sparse-day traces), seed 1, groups of at most {} instances",
        settings.max_size
    );
    println!(
        "{:<12} {:<28} {:>10} {:>14}",
        "trace", "policy", "seconds", "jobs per second"
    );
    for builtin in [Builtin::Steady, Builtin::SparseDay] {
        let trace = builtin.generate(Some(jobs), 1);
        let started = Instant::now();
        let plans = Plans::new(&trace);
        let planning = started.elapsed().as_secs_f64();
        println!(
            "{:<12} {:<28} {:>10.3} {:>14.0}",
            builtin.name(),
            "(routing, once)",
            planning,
            jobs as f64 / planning
        );
        for policy in Policy::ALL {
            let s = Settings {
                always_on: Some(5),
                ..settings.clone()
            };
            let started = Instant::now();
            let outcome = simulate(&trace, &plans, policy, &s);
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(outcome.jobs_lost, 0, "{policy}");
            println!(
                "{:<12} {:<28} {:>10.3} {:>14.0}",
                builtin.name(),
                policy.name(),
                secs,
                jobs as f64 / secs
            );
        }
        let started = Instant::now();
        let fixed = Settings {
            always_on: Some(5),
            ..settings.clone()
        };
        let outcomes = compare(&trace, &Policy::ALL, &fixed);
        let secs = started.elapsed().as_secs_f64();
        let runs = Policy::ALL.len();
        println!(
            "{:<12} {:<28} {:>10.3} {:>14.0}   ({} runs side by side on {} cores)",
            builtin.name(),
            "all (berth simulate)",
            secs,
            (jobs * runs) as f64 / secs,
            runs,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        assert_eq!(outcomes.len(), Policy::ALL.len());
    }
}
