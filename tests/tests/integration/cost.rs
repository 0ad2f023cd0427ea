//! What each attempt cost, recorded when it ends, and `berth cost` over the
//! records: against the local AWS, each route's recorded cost against a
//! hand computation.

use std::time::{Duration, Instant, SystemTime};

use berth_aws::store::JobRecord;
use berth_cli::{Berth, Submission};
use berth_core::{JobStatus, Route};
use berth_lambda_task_processor::{Ran, Runtime};
use berth_tests::stack::{Stack, TASK_CPU, TASK_MEMORY, render};

/// 2026-12-01T10:00:00Z: when the tasks below pull their images.
const PULL: &str = "2026-12-01T10:00:00.000Z";
/// 20.5 s later, they start; 300 s after the pull, they stop.
const STARTED: &str = "2026-12-01T10:00:20.500Z";
const STOPPED: &str = "2026-12-01T10:05:00.000Z";

fn berth(stack: &Stack) -> Berth {
    Berth::new(stack.settings.clone(), stack.clients().clone())
}

/// `job_id`'s task of launch 1 stopped, its container exited 0, at the
/// times above.
async fn stopped(stack: &Stack, job_id: &str) -> berth_aws::ecs::TaskChange {
    let mut change = stack.task_exited(job_id, 1, 0).await;
    let task = stack.tasks_of(job_id, 1).await.remove(0);
    change.capacity_provider_name = task.capacity_provider_name.clone();
    change.container_instance_arn = task.container_instance_arn.clone();
    change.cpu = task.cpu.clone();
    change.memory = task.memory.clone();
    change.pull_started_at = Some(PULL.into());
    change.started_at = Some(STARTED.into());
    change.stopped_at = Some(STOPPED.into());
    change
}

fn only_cost(r: &JobRecord) -> f64 {
    assert_eq!(r.costs.len(), 1, "{:?}", r.costs);
    assert_eq!(r.costs[0].launch, 1);
    let usd = r.costs[0].cost.usd;
    assert_eq!(r.cost_usd, Some(usd));
    usd
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A job on Fargate Spot and one on a c5.xlarge, each stopped by an event
/// (twice: the repeat adds nothing); their records against a hand
/// computation; then `berth cost --by tag:team`, in-process and as the
/// binary's JSON, against the records' total.
#[tokio::test]
async fn each_attempt_is_priced_once_and_berth_cost_sums_the_records() {
    let stack = Stack::new(1).await;
    let cli = berth(&stack);
    for (id, processor, team) in [
        ("cost-fargate", "fargate", "vision"),
        ("cost-ec2", "ec2", "data"),
        ("cost-untagged", "fargate", ""),
    ] {
        cli.submit(&Submission {
            definition: Some("render".into()),
            job_id: Some(id.into()),
            processor: Some(processor.into()),
            tags: if team.is_empty() {
                Vec::new()
            } else {
                vec![("team".into(), team.into())]
            },
            ..Submission::default()
        })
        .await
        .unwrap();
    }
    assert!(
        stack
            .deliver(&stack.driver(), stack.receive().await)
            .await
            .is_empty()
    );
    let lifecycle = stack.lifecycle();
    for id in ["cost-fargate", "cost-ec2", "cost-untagged"] {
        let event = stopped(&stack, id).await;
        for _ in 0..2 {
            lifecycle.task_changed(&event).await.unwrap();
        }
    }

    // Fargate Spot, 1 vCPU and 2 GiB, billed from the pull to the stop
    // (300 s): (0.04048 + 2 * 0.004445) $/h at 30%.
    let fargate = stack.record("cost-fargate").await;
    assert_eq!(fargate.status, JobStatus::Succeeded);
    assert_eq!(fargate.route, Some(Route::FargateSpot));
    assert_eq!((TASK_CPU, TASK_MEMORY), (1024, 2048));
    let by_hand = (0.04048 + 2.0 * 0.004445) * 0.30 * 300.0 / 3600.0;
    let usd = only_cost(&fargate);
    assert!(close(usd, by_hand), "{usd} against {by_hand}");
    assert_eq!(
        fargate.costs[0].cost.basis,
        "Fargate Spot 1 vCPU 2 GiB x86, 300 s billed"
    );

    // On the c5.xlarge (4096 units, 7,985 MiB registered), Spot as the
    // local AWS marks it: of 1 vCPU (a quarter of its CPU) and 2 GiB, the
    // memory is the larger share, 2048/7985; from its start to its stop
    // (279.5 s), at 40% of its $0.17/h (no Spot price observed).
    let ec2 = stack.record("cost-ec2").await;
    assert_eq!(ec2.route, Some(Route::Ec2));
    let by_hand = 0.17 * 0.40 * (2048.0 / 7985.0) * 279.5 / 3600.0;
    let usd = only_cost(&ec2);
    assert!(close(usd, by_hand), "{usd} against {by_hand}");
    assert_eq!(
        ec2.costs[0].cost.basis,
        "25.6% of c5.xlarge Spot at $0.0680/h, 280 s"
    );

    // The table and the JSON show it.
    let shown = berth_cli::describe(&ec2);
    assert!(shown.contains("cost          $0.001"), "{shown}");
    assert!(shown.contains("cost 1        EC2 $0.001"), "{shown}");
    let listed = cli
        .list(Some(JobStatus::Succeeded), None, 10)
        .await
        .unwrap();
    assert!(
        listed.iter().all(|j| j.cost_usd.is_some_and(|c| c > 0.0)),
        "{listed:?}"
    );
    assert!(berth_cli::table(&listed).contains("COST"));

    // `berth cost` by team: the groups sum to the records' total.
    let mut total = 0.0;
    for id in ["cost-fargate", "cost-ec2", "cost-untagged"] {
        total += stack.record(id).await.cost_usd.unwrap();
    }
    let now = berth_cli::now_ms();
    let by_team = berth_cli::spend::GroupBy::Tag("team".into());
    let report = cli
        .cost(now - 3_600_000, now + 60_000, &by_team)
        .await
        .unwrap();
    let keys: Vec<&str> = report.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in ["vision", "data", "(none)"] {
        assert!(keys.contains(&key), "{keys:?}");
    }
    let sum: f64 = report.groups.iter().map(|g| g.usd).sum();
    assert!(
        close(sum, total) && close(report.total_usd, total),
        "{report:?}"
    );
    assert_eq!((report.jobs, report.attempts), (3, 3));

    let key = stack.aws.access_key().await;
    let (code, stdout, stderr) = crate::cli::run_berth(
        &stack,
        &key,
        &[
            "cost", "--since", "1h", "--by", "tag:team", "--output", "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let groups = json["groups"].as_array().unwrap();
    let sum: f64 = groups.iter().map(|g| g["usd"].as_f64().unwrap()).sum();
    assert!(close(sum, total), "{json}");
    assert!(close(json["total_usd"].as_f64().unwrap(), total), "{json}");
    assert_eq!(json["by"], "tag:team");
    assert!(
        json["note"]
            .as_str()
            .unwrap()
            .contains("leaves out data transfer"),
        "{json}"
    );
    // Nothing ended in the hour before: nothing to sum.
    let (code, stdout, _) = crate::cli::run_berth(
        &stack,
        &key,
        &["cost", "--since", "2h", "--until", "1h", "--output", "json"],
    );
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["total_usd"], 0.0);
}

/// A job run by the Lambda task runtime is priced at the function's memory
/// for how long the invocation ran, and the request.
#[tokio::test]
async fn a_lambda_run_is_priced_at_its_memory_for_its_time() {
    let stack = Stack::new(0).await;
    let task = crate::task_processor::dispatched(
        &stack,
        r#"{"job_id":"cost-lambda","definition":"render","command":["sleep","1"]}"#,
    )
    .await;
    let rt = Runtime::new(stack.store(), None, None);
    let began = Instant::now();
    let ran = rt
        .run(&task, "req-1", SystemTime::now() + Duration::from_secs(900))
        .await
        .unwrap();
    let longest = began.elapsed().as_secs_f64();
    assert!(
        matches!(
            ran,
            Ran::Ended {
                status: JobStatus::Succeeded,
                ..
            }
        ),
        "{ran:?}"
    );
    let r = stack.record("cost-lambda").await;
    let usd = only_cost(&r);
    assert_eq!(r.costs[0].cost.route, Route::Lambda);
    // Outside Lambda, a function sized for the job: 1 vCPU takes 1,769 MB,
    // over the job's 2,048 MiB: 2 GB, for at least the 1 s it slept.
    let arch_rate = if cfg!(target_arch = "aarch64") {
        0.000_013_333_4
    } else {
        0.000_016_666_7
    };
    let least = 2.0 * 1.0 * arch_rate + 0.000_000_2;
    let most = 2.0 * longest * arch_rate + 0.000_000_2;
    assert!(least <= usd && usd <= most, "{least} <= {usd} <= {most}");
    assert!(
        r.costs[0].cost.basis.starts_with("Lambda 2048 MB"),
        "{}",
        r.costs[0].cost.basis
    );
}

/// The store records an attempt's cost once, whether the record has a map
/// of costs yet (one written before costs were kept has none) or not.
#[tokio::test]
async fn a_cost_is_recorded_once_per_launch() {
    let stack = Stack::new(0).await;
    let store = stack.store();
    let cost = |usd: f64| berth_core::cost::AttemptCost {
        usd,
        route: Route::Fargate,
        basis: "test".into(),
    };
    // A record with no map of costs: the first cost makes it.
    store
        .reject(
            &berth_aws::store::Rejection {
                job_id: "old-1",
                message_id: "m-1",
                reason: "r",
                definition: None,
                raw_body: None,
            },
            0,
        )
        .await
        .unwrap();
    assert!(store.record_cost("old-1", 1, &cost(0.25), 5).await.unwrap());
    assert!(!store.record_cost("old-1", 1, &cost(0.25), 6).await.unwrap());
    assert!(
        store
            .record_cost("old-1", 2, &cost(0.125), 7)
            .await
            .unwrap()
    );
    let r = stack.record("old-1").await;
    assert_eq!(r.cost_usd, Some(0.375));
    let launches: Vec<(u32, f64, i64)> = r
        .costs
        .iter()
        .map(|c| (c.launch, c.cost.usd, c.at))
        .collect();
    assert_eq!(launches, [(1, 0.25, 5), (2, 0.125, 7)]);
    // No record: nothing is written.
    assert!(!store.record_cost("nobody", 1, &cost(1.0), 8).await.unwrap());
    assert!(store.get("nobody").await.unwrap().is_none());
}

/// A definition with a limit of a tenth of a cent a day: a job that costs
/// more reaches it; the jobs after it are held with the reason, their
/// messages done with, and the sweep leaves them; with the clock moved a
/// day on, the sweep puts them back on the queue and they launch. `berth
/// cost` shows the day's spend against the limit.
#[tokio::test]
async fn jobs_past_a_spending_limit_wait_for_the_next_day_and_then_run() {
    let stack = Stack::new(0).await;
    let capped = berth_core::JobDefinition {
        name: "capped".into(),
        daily_limit_usd: Some(0.001),
        ..render()
    };
    stack.definitions().put(&capped).await.unwrap();
    let cli = berth(&stack);
    let submit = |id: &str| Submission {
        definition: Some("capped".into()),
        job_id: Some(id.into()),
        processor: Some("fargate".into()),
        ..Submission::default()
    };
    cli.submit(&submit("cap-1")).await.unwrap();
    assert!(
        stack
            .deliver(&stack.driver(), stack.receive().await)
            .await
            .is_empty()
    );
    // Under the limit: it launched; its 300 s on Fargate Spot cost
    // $0.00123, past the limit.
    let lifecycle = stack.lifecycle();
    lifecycle
        .task_changed(&stopped(&stack, "cap-1").await)
        .await
        .unwrap();
    let first = stack.record("cap-1").await;
    assert_eq!(first.status, JobStatus::Succeeded);
    assert!(only_cost(&first) > 0.001);

    for id in ["cap-2", "cap-3"] {
        cli.submit(&submit(id)).await.unwrap();
    }
    assert!(
        stack
            .deliver(&stack.driver(), stack.receive().await)
            .await
            .is_empty(),
        "held: their messages are done with"
    );
    let tomorrow = {
        let now = berth_cli::now_ms();
        (now.div_euclid(berth_core::spending::DAY_MS) + 1) * berth_core::spending::DAY_MS
    };
    for id in ["cap-2", "cap-3"] {
        let r = stack.record(id).await;
        assert_eq!((r.status, r.attempts), (JobStatus::Accepted, 0), "{id}");
        let reason = r.reason.clone().unwrap();
        assert!(
            reason.starts_with("spending limit $0.001/day reached ($0.001234 spent this UTC day); the next day starts in "),
            "{reason}"
        );
        assert_eq!(r.next_try_at, Some(tomorrow));
        assert_eq!(r.claimed_at, None, "its launch is free for the next day's");
        assert_eq!(r.holds, 1);
        let shown = berth_cli::describe(&r);
        assert!(
            shown.contains("now           held: spending limit"),
            "{shown}"
        );
    }
    assert!(stack.receive().await.is_empty());
    // The same day: the sweep leaves them held, whatever their quiet.
    let sweep = lifecycle
        .with_stranded_after(Duration::ZERO)
        .with_stranded_whatever_backlog(Duration::ZERO)
        .sweep()
        .await
        .unwrap();
    assert!(
        sweep.released.is_empty() && sweep.requeued.is_empty(),
        "{sweep:?}"
    );
    assert!(stack.receive().await.is_empty());
    let report = cli
        .cost(
            0,
            berth_cli::now_ms() + 1,
            &berth_cli::spend::GroupBy::Definition,
        )
        .await
        .unwrap();
    let limit = report
        .limits
        .iter()
        .find(|l| l.definition == "capped")
        .unwrap();
    assert_eq!(limit.daily_limit_usd, 0.001);
    assert!(
        close(limit.spent_today_usd, first.cost_usd.unwrap()),
        "{limit:?}"
    );
    assert!(berth_cli::spend::table(&report).contains("reached: its jobs wait until"));

    // A day on: released, launched.
    let mut next_day = stack.settings.clone();
    next_day.spending_day.offset_ms = berth_core::spending::DAY_MS;
    let sweep = berth_ecs_runner::Lifecycle::for_deployment(&next_day, stack.clients())
        .unwrap()
        .sweep()
        .await
        .unwrap();
    let mut released = sweep.released.clone();
    released.sort();
    assert_eq!(released, ["cap-2", "cap-3"]);
    let driver = berth_driver::Driver::new(&next_day, stack.clients(), Default::default());
    let messages = stack.receive().await;
    assert_eq!(messages.len(), 2);
    assert!(stack.deliver(&driver, messages).await.is_empty());
    for id in ["cap-2", "cap-3"] {
        let r = stack.record(id).await;
        assert_eq!(
            (r.status, r.route, r.attempts),
            (JobStatus::Dispatched, Some(Route::FargateSpot), 1),
            "{id}: {:?}",
            r.reason
        );
    }
}
