//! Routing: the table at each break-even, forced routes, and properties.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::limits::message as lim;

/// A first attempt at the list prices, with no expected run.
fn route_first(j: &ResolvedJob) -> Result<Decision, RouteError> {
    route(j, &Context::first(&Prices::default(), j))
}

fn with(prices: &Prices, expected: f64, interruptions: u32) -> Context<'_> {
    Context {
        prices,
        expected_seconds: Some(expected),
        interruptions,
        max_interruptions: 2,
        fargate_spot: true,
        ec2_types: None,
    }
}

fn job() -> ResolvedJob {
    ResolvedJob {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        depends_on: Vec::new(),
        array: None,
        job_id: "j".into(),
        definition: "render".into(),
        task_definition: "render:1".into(),
        container: "main".into(),
        lambda_function: Some("render-fn".into()),
        command: None,
        environment: BTreeMap::new(),
        cpu: 1024,
        memory: 2048,
        gpu: 0,
        timeout_seconds: 300,
        max_attempts: 3,
        processor: Processor::Auto,
        fargate_allowed: true,
        job_role: None,
        interruptible: true,
        expected_seconds: None,
        tags: Default::default(),
    }
}

#[test]
fn the_overrides_size_counts_all_that_run_task_sends() {
    // berth's own variables, the GPU requirement and the task size go
    // with every launch.
    let plain = overrides_chars(&job());
    let gpu = overrides_chars(&ResolvedJob { gpu: 1, ..job() });
    assert!(gpu > plain + "resourceRequirements".len(), "{plain} {gpu}");
    let at_last = crate::launch::at_attempt(&job(), u32::MAX - 1);
    let sent = crate::launch::overrides(&at_last, u32::MAX, Some((1024, 2048)));
    let text = serde_json::to_string(&sent).unwrap();
    assert!(
        text.contains("BERTH_JOB_ID") && text.contains("4294967295"),
        "{text}"
    );
    assert!(
        text.contains(r#""name":"BERTH_ATTEMPT","value":"4294967295""#),
        "{text}"
    );
    assert_eq!(plain, text.chars().count());
}

#[test]
fn auto_routing_table() {
    let fb = |cpu, memory| Plan::Ec2 {
        fargate_fallback: Some(OnFargate {
            size: FargateSize { cpu, memory },
            spot: true,
        }),
    };
    let rows: Vec<(ResolvedJob, Plan, &str)> = vec![
        (
            job(),
            fb(1024, 2048),
            "no run to go by yet; at its timeout, a 300 s run costs $0.010000 on Lambda, $0.001296 on Fargate Spot; EC2 when an instance has room",
        ),
        (
            ResolvedJob {
                timeout_seconds: 5,
                ..job()
            },
            Plan::Lambda {
                function: "render-fn".into(),
            },
            "fits Lambda: no run to go by yet; at its timeout, a 5 s run costs $0.000167 on Lambda",
        ),
        (
            ResolvedJob { gpu: 1, ..job() },
            Plan::Ec2 {
                fargate_fallback: None,
            },
            "gpu=1: only EC2 has GPUs",
        ),
        (
            ResolvedJob {
                lambda_function: None,
                ..job()
            },
            fb(1024, 2048),
            "definition `render` has no Lambda function; EC2 when an instance has room (paid for already), else Fargate Spot 1024 cpu / 2048 MiB",
        ),
        (
            ResolvedJob {
                timeout_seconds: 901,
                ..job()
            },
            fb(1024, 2048),
            "timeout 901 s is over Lambda's 900 s; EC2 when an instance has room",
        ),
        (
            ResolvedJob {
                memory: 10_241,
                cpu: 3000,
                ..job()
            },
            fb(4096, 11_264),
            "memory 10241 MiB is over Lambda's 10240 MiB",
        ),
        (
            ResolvedJob { cpu: 6145, ..job() },
            fb(8192, 16_384),
            "cpu 6145 is over Lambda's 6144 units",
        ),
        (
            ResolvedJob {
                lambda_function: None,
                fargate_allowed: false,
                ..job()
            },
            Plan::Ec2 {
                fargate_fallback: None,
            },
            "EC2 only: definition `render` does not allow Fargate",
        ),
        (
            ResolvedJob {
                lambda_function: None,
                cpu: 32_768,
                ..job()
            },
            Plan::Ec2 {
                fargate_fallback: None,
            },
            "EC2 only: 32768 cpu / 2048 MiB is over Fargate's largest task",
        ),
    ];
    for (j, plan, reason) in rows {
        let d = route_first(&j).unwrap_or_else(|e| panic!("{j:?}: {e}"));
        assert_eq!(d.plan, plan, "{j:?}");
        assert!(
            d.reason.contains(reason),
            "{:?} does not say {reason:?}",
            d.reason
        );
    }
}

#[test]
fn forced_routes_are_honoured_or_refused_with_the_reason() {
    let forced = |p| ResolvedJob {
        processor: p,
        ..job()
    };
    assert_eq!(
        route_first(&forced(Processor::Ec2)).unwrap().plan,
        Plan::Ec2 {
            fargate_fallback: None
        }
    );
    assert_eq!(
        route_first(&forced(Processor::Fargate)).unwrap().plan,
        Plan::Fargate(OnFargate {
            size: FargateSize {
                cpu: 1024,
                memory: 2048
            },
            spot: true,
        })
    );
    assert_eq!(
        route_first(&forced(Processor::Lambda))
            .unwrap()
            .plan
            .route(),
        Route::Lambda
    );

    let e = route_first(&ResolvedJob {
        gpu: 2,
        ..forced(Processor::Fargate)
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "processor `fargate` cannot run this job: gpu=2: Fargate has no GPUs"
    );
    let e = route_first(&ResolvedJob {
        lambda_function: None,
        ..forced(Processor::Lambda)
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "processor `lambda` cannot run this job: definition `render` has no Lambda function"
    );
    let e = route_first(&ResolvedJob {
        fargate_allowed: false,
        ..forced(Processor::Fargate)
    })
    .unwrap_err();
    assert!(e.reason.contains("does not allow Fargate"));
}

#[test]
fn overrides_too_large_for_ecs_go_to_lambda_or_are_refused() {
    let mut big = job();
    for i in 0..200 {
        big.environment
            .insert(format!("VARIABLE_{i:03}"), "x".repeat(30));
    }
    assert!(overrides_chars(&big) > ecs::MAX_OVERRIDES_CHARS);
    assert_eq!(route_first(&big).unwrap().plan.route(), Route::Lambda);
    let e = route_first(&ResolvedJob {
        lambda_function: None,
        ..big.clone()
    })
    .unwrap_err();
    assert!(
        e.reason
            .contains("of ECS overrides, over the limit of 8192"),
        "{e}"
    );
    assert!(
        route_first(&ResolvedJob {
            processor: Processor::Ec2,
            ..big
        })
        .is_err()
    );
}

#[test]
fn fargate_sizes_round_up_to_a_valid_pair() {
    let size = |c, m| fargate_size(c, m).map(|s| (s.cpu, s.memory));
    assert_eq!(size(128, 6), Some((256, 512)));
    assert_eq!(size(256, 1500), Some((256, 2048)));
    assert_eq!(size(256, 2049), Some((512, 3072)));
    assert_eq!(size(1024, 3000), Some((1024, 3072)));
    assert_eq!(size(4096, 30_721), Some((8192, 32_768)));
    assert_eq!(size(16_384, 122_880), Some((16_384, 122_880)));
    assert_eq!(size(16_385, 1024), None);
    assert_eq!(size(1024, 122_881), None);
}

fn is_valid_fargate_pair(cpu: u32, memory: u32) -> bool {
    fargate::TASK_SIZES
        .iter()
        .any(|(c, mem)| *c == cpu && mem.at_least(memory) == Some(memory))
}

fn any_job() -> impl Strategy<Value = ResolvedJob> {
    (
        (
            lim::CPU_MIN..=40_000u64,
            lim::MEMORY_MIN..=200_000u64,
            0..=2u64,
            lim::TIMEOUT_MIN..=2000u64,
        ),
        (
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(Processor::ALL.to_vec()),
        ),
        prop::collection::btree_map("[A-Z_]{1,12}", ".{0,40}", 0..40),
    )
        .prop_map(
            |((cpu, memory, gpu, timeout), (has_fn, fargate, processor), environment)| {
                ResolvedJob {
                    cpu: cpu as u32,
                    memory: memory as u32,
                    gpu: gpu as u32,
                    timeout_seconds: timeout as u32,
                    lambda_function: has_fn.then(|| "fn".to_string()),
                    fargate_allowed: fargate,
                    processor,
                    environment,
                    ..job()
                }
            },
        )
}

/// The break-evens of the list prices, worked by hand for a job of
/// 1 vCPU and 2 GiB: on Lambda 2 GB-s a second at $0.0000166667, plus
/// $0.0000002 a request; on Fargate Spot 0.3 times (1 * 0.04048 + 2 *
/// 0.004445) = $0.0148113 an hour for a minute at least, from the pull:
/// Lambda is cheaper below 7.40 s. On Fargate on demand (a job that
/// does not tolerate interruption, or one interrupted twice when two
/// are allowed): $0.04937 an hour, Lambda is cheaper below 24.68 s.
#[test]
fn lambda_and_fargate_break_even_where_the_prices_say() {
    let prices = Prices::default();
    let cases = [
        (7.0, true, 0, Route::Lambda),
        (8.0, true, 0, Route::Ec2),
        (24.0, false, 0, Route::Lambda),
        (25.0, false, 0, Route::Ec2),
        (24.0, true, 2, Route::Lambda),
        (25.0, true, 2, Route::Ec2),
        (3600.0, true, 0, Route::Ec2),
    ];
    for (expected, interruptible, interruptions, want) in cases {
        let j = ResolvedJob {
            interruptible,
            ..job()
        };
        let d = route(&j, &with(&prices, expected, interruptions)).unwrap();
        assert_eq!(d.plan.route(), want, "{expected} s: {}", d.reason);
        if let Plan::Ec2 {
            fargate_fallback: Some(on),
        } = d.plan
        {
            assert_eq!(on.spot, interruptible && interruptions < 2, "{}", d.reason);
            assert!(d.reason.contains("on Fargate"), "{}", d.reason);
        }
    }
    // At 8 s the two prices, as the reason gives them.
    let d = route(&job(), &with(&prices, 8.0, 0)).unwrap();
    assert!(
        d.reason.starts_with("a 8 s run costs $0.000267 on Lambda, $0.000247 on Fargate Spot; EC2 when an instance has room"),
        "{}",
        d.reason
    );
    // Deeper Fargate Spot discounts move the break-even down.
    let cheap = Prices {
        fargate_spot_fraction: 0.1,
        ..Prices::default()
    };
    assert_eq!(
        route(&job(), &with(&cheap, 3.0, 0)).unwrap().plan.route(),
        Route::Ec2
    );
    assert_eq!(
        route(&job(), &with(&cheap, 2.0, 0)).unwrap().plan.route(),
        Route::Lambda
    );
}

/// A job only EC2 runs that no type of the group holds is refused,
/// with the largest type in the reason; one that may go elsewhere is
/// not, nor anything when the types are not known.
#[test]
fn a_job_no_instance_type_holds_is_refused_when_only_ec2_runs_it() {
    let prices = Prices::default();
    let m5 = crate::scaling::InstanceType::known("m5.large").unwrap();
    let types = [m5];
    let ctx = |types| Context {
        ec2_types: types,
        ..Context::first(&prices, &job())
    };
    let gpu = ResolvedJob { gpu: 1, ..job() };
    let e = route(&gpu, &ctx(Some(&types))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "processor `auto` cannot run this job: gpu=1: only EC2 has GPUs; no instance type of the group holds 1024 CPU units / 2048 MiB / 1 GPU (the largest is m5.large, 2048 CPU units / 7985 MiB)"
    );
    assert!(route(&gpu, &ctx(None)).is_ok(), "types unknown");
    let huge = ResolvedJob {
        cpu: 4096,
        memory: 16_384,
        processor: Processor::Ec2,
        ..job()
    };
    let e = route(&huge, &ctx(Some(&types))).unwrap_err();
    assert!(e.reason.contains("holds 4096 CPU units / 16384 MiB"), "{e}");
    assert!(
        route(&huge, &ctx(Some(&[])))
            .unwrap_err()
            .reason
            .contains("the group has none")
    );
    // Fargate takes it where no instance can.
    let big = ResolvedJob {
        processor: Processor::Auto,
        ..huge
    };
    assert_eq!(
        route(&big, &ctx(Some(&types))).unwrap().plan.route(),
        Route::Ec2,
        "EC2 room first, Fargate Spot when there is none"
    );
}

#[test]
fn a_forced_fargate_goes_on_demand_when_it_must() {
    let prices = Prices::default();
    let forced = ResolvedJob {
        processor: Processor::Fargate,
        ..job()
    };
    let spot = |j: &ResolvedJob, n| match route(j, &with(&prices, 60.0, n)).unwrap().plan {
        Plan::Fargate(on) => on.spot,
        other => panic!("{other:?}"),
    };
    assert!(spot(&forced, 0));
    assert!(spot(&forced, 1));
    assert!(!spot(&forced, 2), "past MaxInterruptions, on demand");
    let steady = ResolvedJob {
        interruptible: false,
        ..forced
    };
    assert!(!spot(&steady, 0));
    assert_eq!(Route::parse("FARGATE_SPOT"), Some(Route::FargateSpot));
    assert_eq!(
        serde_json::to_string(&Route::FargateSpot).unwrap(),
        "\"FARGATE_SPOT\""
    );
}

proptest! {
    /// A route is always feasible for the job, the fallback too.
    #[test]
    fn a_plan_only_names_places_the_job_fits(
        j in any_job(),
        expected in prop::option::of(1.0f64..4000.0),
        interruptions in 0u32..4,
    ) {
        let prices = Prices::default();
        let ctx = Context { prices: &prices, expected_seconds: expected, interruptions, max_interruptions: 2, fargate_spot: true, ec2_types: None };
        match route(&j, &ctx) {
            Ok(d) => {
                match &d.plan {
                    Plan::Lambda { function } => {
                        prop_assert_eq!(lambda_fit(&j), Ok(function.clone()));
                        prop_assert!(j.gpu == 0 && j.memory <= lambda::MAX_MEMORY_MIB);
                        prop_assert!(j.timeout_seconds <= lambda::MAX_TIMEOUT_SECONDS);
                    }
                    Plan::Ec2 { fargate_fallback } => {
                        prop_assert!(ecs_fit(&j).is_ok());
                        if let Some(on) = fargate_fallback {
                            prop_assert_eq!(fargate_fit(&j), Ok(on.size));
                        }
                    }
                    Plan::Fargate(on) => {
                        prop_assert_eq!(fargate_fit(&j), Ok(on.size));
                    }
                }
                if let Plan::Ec2 { fargate_fallback: Some(on) } | Plan::Fargate(on) = d.plan {
                    let s = on.size;
                    prop_assert!(j.gpu == 0 && j.fargate_allowed);
                    prop_assert!(is_valid_fargate_pair(s.cpu, s.memory));
                    prop_assert!(s.cpu >= j.cpu && s.memory >= j.memory);
                    // Spot exactly when the job tolerates it and has
                    // not used up its interruptions.
                    prop_assert_eq!(on.spot, j.interruptible && interruptions < 2);
                }
                // A forced processor is never overridden.
                let forced = match j.processor {
                    Processor::Auto => None,
                    Processor::Lambda => Some(vec![Route::Lambda]),
                    Processor::Ec2 => Some(vec![Route::Ec2]),
                    Processor::Fargate => Some(vec![Route::Fargate, Route::FargateSpot]),
                };
                if let Some(r) = forced {
                    prop_assert!(r.contains(&d.plan.route()));
                }
                if j.gpu > 0 {
                    prop_assert_eq!(d.plan.route(), Route::Ec2);
                }
            }
            Err(e) => {
                prop_assert_eq!(e.processor, j.processor);
                if j.processor == Processor::Auto {
                    prop_assert!(lambda_fit(&j).is_err() && ecs_fit(&j).is_err());
                }
            }
        }
    }

    /// `auto`'s paid route is never dearer than another paid route that
    /// runs the job: Lambda only where it costs no more than Fargate for
    /// the expected run, Fargate only where Lambda costs more or cannot
    /// run it.
    #[test]
    fn the_chosen_route_is_never_dearer_than_another(
        j in any_job(),
        expected in 1.0f64..4000.0,
        interruptions in 0u32..4,
        spot_fraction in 0.05f64..1.0,
    ) {
        let prices = Prices { fargate_spot_fraction: spot_fraction, ..Prices::default() };
        let ctx = Context { prices: &prices, expected_seconds: Some(expected), interruptions, max_interruptions: 2, fargate_spot: true, ec2_types: None };
        let j = ResolvedJob { processor: Processor::Auto, gpu: 0, ..j };
        let c = costs(&j, &ctx, expected);
        if let Ok(d) = route(&j, &ctx) {
            match d.plan {
                Plan::Lambda { .. } => {
                    if ecs_fit(&j).is_ok() {
                        prop_assert!(c.lambda.unwrap() <= c.fargate.unwrap_or(f64::MAX), "{}", d.reason);
                    }
                }
                Plan::Ec2 { fargate_fallback: Some(_) } => {
                    prop_assert!(c.fargate.unwrap() < c.lambda.unwrap_or(f64::MAX), "{}", d.reason);
                }
                Plan::Ec2 { fargate_fallback: None } => {
                    prop_assert!(c.lambda.is_none() && c.fargate.is_none());
                }
                Plan::Fargate(_) => prop_assert!(false, "auto never forces Fargate"),
            }
        }
    }

    /// The Fargate size is the smallest valid pair covering the job.
    #[test]
    fn fargate_size_is_the_smallest_cover(cpu in 1u32..20_000, memory in 1u32..130_000) {
        let all: Vec<(u32, u32)> = fargate::TASK_SIZES
            .iter()
            .flat_map(|(c, _)| (512..=122_880).step_by(512).filter(move |m| is_valid_fargate_pair(*c, *m)).map(move |m| (*c, m)))
            .collect();
        let best = all.iter().filter(|(c, m)| *c >= cpu && *m >= memory).min_by_key(|(c, m)| (*c, *m)).copied();
        prop_assert_eq!(fargate_size(cpu, memory).map(|s| (s.cpu, s.memory)), best);
    }
}
