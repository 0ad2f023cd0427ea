//! berth-sim: a discrete-event simulator of berth on AWS, behind `berth
//! simulate`. It replays a day of jobs through berth's own routing,
//! capacity math and thresholds (berth-core, never a copy) and through
//! models of what surrounds them (ECS placement, CloudWatch alarms, Auto
//! Scaling, Spot interruptions, AWS Batch), and reports what each policy
//! costs, how long jobs wait and how the cluster scales. Pure: no SDK, no
//! async runtime, no I/O.
//!
//! - [`figures`]: every price, latency and timing, with its source;
//! - [`trace`]: the jobs of a day, from CSV or a built-in generator;
//! - [`policy`]: berth and the alternatives;
//! - [`engine`]: the simulation;
//! - [`cloudwatch`], [`autoscaling`], [`ecs`]: the models of AWS;
//! - [`limits`]: AWS's rate limits, and the least time they allow a burst;
//! - [`bound`]: `lower-bound`, every job at its cheapest exact price;
//! - [`cost`], [`report`], [`plot`]: what a run costs and how it is shown.

pub mod autoscaling;
pub mod bound;
pub mod cloudwatch;
pub mod cost;
pub mod ecs;
pub mod engine;
pub mod figures;
pub mod limits;
pub mod plot;
pub mod policy;
pub mod report;
pub mod trace;

pub use engine::{Plans, Settings, simulate};
pub use policy::Policy;
pub use report::Outcome;
pub use trace::{Builtin, Trace};

/// Runs each of `policies` on `trace`, side by side on the machine's cores,
/// in the order given. `always-on` without a size is run at every size from
/// 0 to the group's maximum and reported at the cheapest.
pub fn compare(trace: &Trace, policies: &[Policy], settings: &Settings) -> Vec<Outcome> {
    let plans = Plans::new(trace);
    let mut runs: Vec<(usize, Policy, Settings)> = Vec::new();
    for (i, &p) in policies.iter().enumerate() {
        if p == Policy::AlwaysOn && settings.always_on.is_none() {
            for n in 0..=settings.max_size {
                let s = Settings {
                    always_on: Some(n),
                    ..settings.clone()
                };
                runs.push((i, p, s));
            }
        } else {
            runs.push((i, p, settings.clone()));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(runs.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.min(runs.len()) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((i, p, s)) = runs.get(k) else { break };
                    let outcome = simulate(trace, &plans, *p, s);
                    if let Ok(mut r) = results.lock() {
                        r.push((*i, k, outcome));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, k, _)| (*i, *k));
    let bound = bound::outcome(trace, &plans, settings).cost.compute();
    for (_, _, o) in &mut results {
        o.compute_vs_lower_bound = (bound > 0.0).then(|| o.cost.compute() / bound);
    }
    let mut out: Vec<Outcome> = Vec::with_capacity(policies.len());
    for (i, _, outcome) in results {
        match out.get_mut(i) {
            // The cheapest size of always-on; the smaller on a tie.
            Some(best) if outcome.cost_usd < best.cost_usd => *best = outcome,
            Some(_) => {}
            None => out.push(outcome),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings(seed: u64) -> Settings {
        Settings {
            seed,
            ..Settings::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_outcome() {
        let trace = Builtin::SparseDay.generate(Some(300), 5);
        let a = compare(&trace, &Policy::ALL, &settings(5));
        let b = compare(&trace, &Policy::ALL, &settings(5));
        assert_eq!(report::json(&a), report::json(&b));
        assert_eq!(a, b, "the plotted series too");
        let c = compare(&trace, &Policy::ALL, &settings(6));
        assert_ne!(report::json(&a), report::json(&c), "the seed matters");
    }

    /// The seed's argument against two alarms: with CPU-heavy,
    /// memory-light jobs the CPU alarm adds instances that the memory alarm
    /// takes away again, killing the tasks on them.
    #[test]
    fn two_alarms_flap_on_the_seed_mix() {
        let trace = Builtin::SeedMix.generate(None, 1);
        let out = compare(&trace, &[Policy::TwoAlarms], &settings(1));
        let two = &out[0];
        assert!(two.flaps >= 20, "{} flaps", two.flaps);
        assert!(two.tasks_killed_by_scale_in > 0);
        assert_eq!(two.jobs_lost, 0);
    }

    #[test]
    fn always_on_is_reported_at_its_cheapest_size() {
        let trace = Builtin::Steady.generate(Some(400), 2);
        let best = &compare(&trace, &[Policy::AlwaysOn], &settings(2))[0];
        let n = best.always_on_instances.unwrap();
        for size in 0..=10 {
            let fixed = Settings {
                always_on: Some(size),
                ..settings(2)
            };
            let o = &compare(&trace, &[Policy::AlwaysOn], &fixed)[0];
            assert_eq!(o.always_on_instances, Some(size));
            assert!(best.cost_usd <= o.cost_usd, "{n} vs {size}");
        }
    }

    #[test]
    fn an_idle_day_launches_nothing() {
        let trace = Builtin::Idle.generate(None, 1);
        for o in compare(&trace, &Policy::ALL, &settings(1)) {
            if o.policy == "two-alarms" {
                // Its minimum is one instance: with none, ECS publishes no
                // reservation to scale out on.
                assert_eq!(o.peak_instances, 1);
                continue;
            }
            if o.policy == "schedulable-alarms" {
                // An empty cluster publishes 0, below the scale-out
                // threshold; and `train`, the largest container, fits no
                // instance: the group grows to its maximum and stays.
                assert_eq!(o.peak_instances, 10);
                assert!(o.instance_hours > 200.0, "{}", o.instance_hours);
                continue;
            }
            assert_eq!(o.instance_hours, 0.0, "{}", o.policy);
            assert_eq!(o.cost.fargate + o.cost.lambda_jobs, 0.0);
        }
    }

    #[test]
    fn an_idle_day_costs_what_berth_keeps_running() {
        // One job at midnight; the rest of the day is idle.
        let trace = Trace::from_csv(
            "one",
            "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
             0,render,1024,2048,0,60,600,false,true\n"
                .as_bytes(),
        )
        .unwrap();
        let out = compare(
            &trace,
            &[Policy::AllFargate, Policy::AwsBatchFargate],
            &settings(1),
        );
        let (berth_pipeline, batch) = (&out[0], &out[1]);
        // The dashboard alone is $3 a month.
        assert!(berth_pipeline.cost.cloudwatch > 3.0 / 730.0 * 24.0);
        assert_eq!(batch.cost.cloudwatch, 0.0);
        assert!(berth_pipeline.cost.fargate > 0.0 && berth_pipeline.cost.fargate < 0.01);
        assert_eq!(berth_pipeline.jobs_succeeded, 1);
    }

    /// berth's scaler on every built-in trace, for a few seeds: no flap,
    /// no task killed by scale-in, nothing up half an hour after the last
    /// job, nothing lost.
    #[test]
    fn berth_rests_at_zero_and_never_flaps_or_kills() {
        for seed in 1..=3 {
            // burst-10k: its own test, below.
            for b in Builtin::ALL
                .into_iter()
                .filter(|b| !matches!(b, Builtin::Idle | Builtin::Burst10k))
            {
                let trace = b.generate(None, seed);
                let o = &compare(&trace, &[Policy::Berth], &settings(seed))[0];
                let what = format!(
                    "{b} seed {seed}: flaps {} killed {} at rest {} lost {} unfinished {}",
                    o.flaps,
                    o.tasks_killed_by_scale_in,
                    o.instances_30_min_after_last_job,
                    o.jobs_lost,
                    o.jobs_unfinished
                );
                assert_eq!(o.flaps, 0, "{what}");
                assert_eq!(o.tasks_killed_by_scale_in, 0, "{what}");
                assert_eq!(o.instances_30_min_after_last_job, 0, "{what}");
                assert_eq!(o.jobs_lost + o.jobs_unfinished, 0, "{what}");
            }
        }
    }

    /// 10,000 jobs in a minute, at AWS's rate limits with the template's
    /// defaults: every job launched within 1.2 times the floor the limits
    /// set for the launches made, none failed after throttling, none lost,
    /// none carried on (a job throttled 50 times), and the cluster at rest
    /// after. Without the limits the same day launches at once.
    #[test]
    fn a_burst_of_10000_launches_near_the_limits_floor_and_loses_nothing() {
        for seed in 1..=2 {
            let trace = Builtin::Burst10k.generate(None, seed);
            let o = &compare(&trace, &[Policy::Berth], &settings(seed))[0];
            let p = o.pace.as_ref().unwrap();
            let what = format!("seed {seed}: {p:?}");
            // 10,000 launches, two thirds or more of them on ECS at 20 a
            // second: the floor is minutes.
            assert!(p.floor_s > 300.0, "{what}");
            assert!(p.over_floor() <= 1.2, "{what}");
            assert!(p.throttled_calls > 0, "{what}");
            assert_eq!((p.failed_after_throttling, p.carried_on), (0, 0), "{what}");
            assert_eq!(o.jobs_succeeded + o.jobs_timed_out, 10_000, "{what}");
            assert_eq!((o.jobs_lost, o.jobs_unfinished, o.jobs_failed), (0, 0, 0));
            assert_eq!(o.instances_30_min_after_last_job, 0);
            // The RunTask bucket: never more than its burst and a second's
            // refill in one second.
            let peak = p.ecs_per_s.iter().max().copied().unwrap_or(0);
            assert!(peak <= 120, "{what}");
            // Past the first seconds, ECS launches go at the limit while
            // jobs wait: 20 a second, within a fifth, over the middle of
            // the burst.
            let middle = &p.ecs_per_s[60..(p.floor_s as usize * 3 / 4)];
            let mean = f64::from(middle.iter().sum::<u32>()) / middle.len() as f64;
            assert!((16.0..=20.5).contains(&mean), "{mean} a second; {what}");

            let off = Settings {
                limits: false,
                ..settings(seed)
            };
            let o = &compare(&trace, &[Policy::Berth], &off)[0];
            assert!(o.pace.is_none());
            assert!(o.wait_max_s < 120.0, "{}", o.wait_max_s);
        }
    }

    /// The driver's RunTask on EC2 that places nothing spends RunTask's
    /// limit. On an empty cluster the driver remembers EC2's "no room"
    /// (berth-core's `room`), so 1,000 jobs launch at the limit; a driver
    /// that asks EC2 for every job makes two calls a job and launches at
    /// half the limit or less.
    #[test]
    fn the_driver_s_call_on_ec2_spends_the_limit_unless_its_memory_spares_it() {
        let mut csv = String::from(
            "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n",
        );
        for i in 0..1_000 {
            csv.push_str(&format!(
                "{},render,1024,2048,0,300,3600,false,true\n",
                f64::from(i) / 100.0
            ));
        }
        let trace = Trace::from_csv("render", csv.as_bytes()).unwrap();
        // ECS launches a second from the third second, when the bucket's
        // burst is spent, to three quarters of the floor.
        let middle = |no_room_memory: bool| {
            let settings = Settings {
                no_room_memory,
                ..settings(1)
            };
            let o = &compare(&trace, &[Policy::Berth], &settings)[0];
            assert_eq!(o.jobs_succeeded, 1_000);
            let p = o.pace.as_ref().unwrap();
            let middle = &p.ecs_per_s[2..(p.floor_s as usize * 3 / 4)];
            f64::from(middle.iter().sum::<u32>()) / middle.len() as f64
        };
        let (remembered, asked) = (middle(true), middle(false));
        assert!((18.0..=20.5).contains(&remembered), "{remembered} a second");
        assert!(asked <= 10.5, "asking EC2 for every job: {asked} a second");
    }

    /// At the list prices an instance never pays for work Fargate Spot
    /// runs: berth starts instances for the jobs only EC2 runs, and for
    /// nothing else; they go once idle past the break-even.
    #[test]
    fn berth_starts_instances_only_for_jobs_only_ec2_runs() {
        let rows = |definition: &str, fargate: bool| {
            let mut csv = String::from(
                "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n",
            );
            for i in 0..40 {
                csv.push_str(&format!(
                    "{},{definition},1024,2048,0,600,3600,false,{fargate}\n",
                    3600 + i * 45
                ));
            }
            Trace::from_csv(definition, csv.as_bytes()).unwrap()
        };
        let out = compare(&rows("render", true), &[Policy::Berth], &settings(1));
        let o = &out[0];
        assert_eq!((o.scale_outs, o.instance_hours), (0, 0.0));
        assert_eq!(o.runs_fargate_spot + o.runs_fargate, 40);
        let out = compare(&rows("pinned", false), &[Policy::Berth], &settings(1));
        let o = &out[0];
        assert!(o.scale_outs > 0, "{} scale-outs", o.scale_outs);
        assert_eq!((o.runs_ec2, o.jobs_succeeded), (40, 40));
        assert_eq!((o.flaps, o.tasks_killed_by_scale_in), (0, 0));
        assert_eq!(o.instances_30_min_after_last_job, 0);
    }

    /// The cheapest way through every day: on each built-in day at seeds
    /// 1-3 and on examples/week.csv, berth runs every job, those only EC2
    /// runs waiting at most an instance's registration and 30 s at p95, its
    /// compute at most 1.2 times `lower-bound`'s; on
    /// the jobs the other policies can run too (the day without those that
    /// need a GPU or more than the seed's types hold), it costs no more
    /// than any other policy that runs as many jobs (`aws-batch` at its
    /// best instance type), its compute (instances, volumes, Fargate,
    /// Lambda jobs) at most 1.2 times `lower-bound`'s, and its jobs wait no
    /// longer than all-fargate's at p95, plus 2 s.
    #[test]
    fn berth_is_the_cheapest_way_through_every_day() {
        let week = Trace::from_csv(
            "week",
            include_str!("../../../examples/week.csv").as_bytes(),
        )
        .unwrap();
        let mut days: Vec<(Trace, u64)> = Vec::new();
        for seed in 1..=3 {
            for b in [
                Builtin::SparseDay,
                Builtin::Steady,
                Builtin::Burst,
                Builtin::SeedMix,
            ] {
                days.push((b.generate(None, seed), seed));
            }
            days.push((week.clone(), seed));
        }
        let others = [
            Policy::SchedulableAlarms,
            Policy::TwoAlarms,
            Policy::CapacityProvider,
            Policy::AwsBatchFargate,
            Policy::AlwaysOn,
            Policy::AllFargate,
            Policy::AllFargateSpot,
            Policy::AllLambdaWherePossible,
        ];
        let seeds_group: Vec<berth_core::scaling::InstanceType> = Settings::default()
            .instance_types
            .iter()
            .map(|t| t.scaling())
            .collect();
        for (whole, seed) in &days {
            let s = settings(*seed);
            let all = &compare(whole, &[Policy::Berth], &s)[0];
            let what = format!("{} seed {seed}", whole.name);
            assert_eq!(
                (all.jobs_unrunnable, all.jobs_lost),
                (0, 0),
                "{what}: every job runs"
            );
            let whole_ratio = all.compute_vs_lower_bound.unwrap_or(1.0);
            assert!(
                whole_ratio <= 1.2,
                "{what}: {whole_ratio:.3} x lower-bound, every job"
            );
            let registration = f64::from(berth_core::scaling::REGISTRATION_SECONDS);
            if let Some(p95) = all.ec2_only_wait_p95_s {
                assert!(p95 <= registration + 30.0, "{what}: {p95} s");
            }
            // The jobs the other policies run too.
            let trace = &Trace {
                jobs: whole
                    .jobs
                    .iter()
                    .filter(|j| {
                        let need = berth_core::scaling::Room::new(j.cpu, j.memory, j.gpu);
                        j.fargate || j.lambda || seeds_group.iter().any(|t| need.fits(t.room))
                    })
                    .cloned()
                    .collect(),
                ..whole.clone()
            };
            let mut policies = vec![Policy::Berth, Policy::AllFargate];
            policies.extend(others);
            let mut out = compare(trace, &policies, &s);
            // AWS Batch at its best instance type.
            for t in figures::INSTANCE_TYPES
                .iter()
                .filter(|t| t.registered().gpu == 0)
            {
                let one = Settings {
                    instance_types: vec![t],
                    ..s.clone()
                };
                out.extend(compare(trace, &[Policy::AwsBatch], &one));
            }
            let berth = out[0].clone();
            let done = |o: &Outcome| o.jobs_succeeded + o.jobs_timed_out;
            for o in &out[2..] {
                if done(o) < done(&berth) {
                    continue;
                }
                let (b, c) = (berth.cost.compute(), o.cost.compute());
                assert!(
                    b <= c + 1e-9,
                    "{what}: berth's compute ${b:.4} > {}'s ${c:.4}",
                    o.policy
                );
                assert!(
                    berth.cost_usd <= o.cost_usd + 1e-9,
                    "{what}: berth ${:.4} > {} ${:.4}",
                    berth.cost_usd,
                    o.policy,
                    o.cost_usd
                );
            }
            let ratio = berth.compute_vs_lower_bound.unwrap();
            assert!(ratio <= 1.2, "{what}: {ratio:.3} x lower-bound");
            assert!(berth.wait_p95_s <= out[1].wait_p95_s + 2.0, "{what}");
            assert_eq!(
                (berth.flaps, berth.tasks_killed_by_scale_in, berth.jobs_lost),
                (0, 0, 0),
                "{what}"
            );
        }
    }

    /// examples/definitions.json's `train` (a GPU, 16 GiB) fits none of the
    /// seed's types: its alarms, with it as the largest container, grow the
    /// group to its maximum for nothing. berth starts a GPU type that holds
    /// it for each job, and both run; a job no type it may launch holds is
    /// refused at once and starts nothing.
    #[test]
    fn a_gpu_job_starts_a_gpu_type_and_one_no_type_holds_starts_nothing() {
        let csv = "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
                   3600,train,4096,16384,1,600,3600,false,false\n\
                   7200,train,4096,16384,1,600,3600,false,false\n";
        let trace = Trace::from_csv("train", csv.as_bytes()).unwrap();
        let out = compare(
            &trace,
            &[Policy::Berth, Policy::SchedulableAlarms],
            &settings(1),
        );
        let (berth, alarms) = (&out[0], &out[1]);
        assert_eq!((berth.jobs_succeeded, berth.jobs_unrunnable), (2, 0));
        assert_eq!(berth.scale_outs, 2, "one GPU instance each, an hour apart");
        assert!(berth.instance_hours < 0.5, "{}", berth.instance_hours);
        assert_eq!(alarms.peak_instances, 10);
        assert_eq!(alarms.instances_30_min_after_last_job, 10);

        let csv = "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
                   3600,huge,131072,262144,0,600,3600,false,false\n";
        let trace = Trace::from_csv("huge", csv.as_bytes()).unwrap();
        let berth = &compare(&trace, &[Policy::Berth], &settings(1))[0];
        assert_eq!((berth.scale_outs, berth.instance_hours), (0, 0.0));
        assert_eq!(berth.jobs_unrunnable, 1, "refused at once");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Whatever the trace, the seed and the Spot weather, every job of
        /// every policy ends somewhere (or is still waiting for a cluster
        /// too small), none is dropped, and the cost parts add up.
        #[test]
        fn no_job_is_lost_and_the_parts_add_up(
            which in 0usize..5,
            seed in 0u64..1000,
            jobs in 1usize..250,
            interruptions in prop_oneof![Just(0.0), Just(0.05), 50.0f64..500.0],
        ) {
            let trace = Builtin::ALL[which].generate(Some(jobs), seed);
            prop_assert_eq!(trace.jobs.len(), if which == 4 { 0 } else { jobs });
            let s = Settings {
                spot_interruptions_per_month: interruptions,
                always_on: Some(2),
                ..settings(seed)
            };
            for o in compare(&trace, &Policy::ALL, &s) {
                prop_assert_eq!(o.jobs_lost, 0, "{}", o.policy);
                prop_assert_eq!(
                    o.jobs_succeeded + o.jobs_timed_out + o.jobs_failed + o.jobs_unrunnable
                        + o.jobs_unfinished,
                    o.jobs,
                    "{}", o.policy
                );
                let parts: f64 = o.cost.parts().iter().map(|(_, v)| v).sum();
                prop_assert!((parts - o.cost_usd).abs() < 1e-9, "{}", o.policy);
                prop_assert!(o.cost.parts().iter().all(|(_, v)| *v >= 0.0));
                prop_assert!(o.idle_instance_hours <= o.instance_hours + 1e-9);
                prop_assert!(o.wait_p50_s <= o.wait_p95_s && o.wait_p95_s <= o.wait_max_s);
            }
        }
    }
}
