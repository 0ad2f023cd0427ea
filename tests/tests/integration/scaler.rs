//! The scaler against the local AWS: an Auto Scaling group (the local AWS
//! launches and terminates its instances, berth-local's `Boots` registers
//! them with the cluster as their agents would) that grows from zero for
//! jobs waiting for capacity and for work on Fargate an instance runs for
//! less, starts nothing
//! for a definition no instance type holds, never touches an instance with
//! a task, and drains and terminates idle instances back to zero.

use std::time::Duration;

use aws_sdk_ecs::types::LaunchType;
use berth_aws::ecs::{IDLE_SINCE, RETIRING};
use berth_aws::fleet::LaunchTemplates;
use berth_aws::schedule::Schedule;
use berth_aws::{Fleet, store::now_ms};
use berth_capacity_metric::{CapacityMetric, Report, Scaler, UNPLACEABLE_DEFINITIONS};
use berth_core::prices::Arch;
use berth_core::scaling::choice::{self, Allowed};
use berth_core::scaling::{InstanceType, Room};
use berth_core::{JobDefinition, JobStatus, Route};
use berth_local::fleet::{Boots, GROUP, INSTANCE_TYPE, create_group};
use berth_tests::stack::{CLUSTER, Stack, render};

use crate::capacity::published;

struct Scaled {
    stack: Stack,
    metric: CapacityMetric,
    boots: Boots,
    /// The group's launch templates, one per class of type.
    templates: LaunchTemplates,
}

/// `index`: an EC2-only job with no GPU: it waits for capacity.
fn index() -> JobDefinition {
    JobDefinition {
        name: "index".into(),
        task_definition: "train".into(),
        fargate: false,
        ..render()
    }
}

/// A stack with an empty cluster and an empty group of at most `max`
/// instances, whose instances drain as soon as they are idle.
async fn scaled(max: u32) -> Scaled {
    scaled_from(0, max).await
}

/// As [`scaled`], with a group of at least `min` instances.
async fn scaled_from(min: u32, max: u32) -> Scaled {
    let stack = Stack::new(0).await;
    let c = stack.clients();
    let templates = create_group(&c.autoscaling, stack.aws.moto(), min, max)
        .await
        .unwrap();
    stack.definitions().put(&index()).await.unwrap();
    // The capacity metric's schedule.
    c.events
        .put_rule()
        .name(RULE)
        .schedule_expression("rate(1 minute)")
        .send()
        .await
        .unwrap();
    let metric = CapacityMetric {
        cluster: stack.cluster(),
        metrics: stack.cluster_metrics(),
        definitions: stack.definitions(),
        largest: None,
        scaler: Some(Scaler {
            fleet: fleet(&stack),
            cluster: stack.cluster(),
            store: stack.store(),
            instance_types: vec![INSTANCE_TYPE.into()],
            scale_in_after: Duration::ZERO,
            headroom: 0,
            prices: Default::default(),
            fargate_spot: true,
        }),
        schedule: Some(Schedule::new(c.events.clone(), RULE)),
    };
    Scaled {
        stack,
        metric,
        boots: Boots::new(Duration::ZERO),
        templates,
    }
}

/// Records job `id`, which runs only on Fargate, as waiting for capacity
/// (Fargate had no room for it).
async fn fargate_only_waits(stack: &Stack, id: &str) {
    let body = format!(r#"{{"job_id":"{id}","definition":"index"}}"#);
    let request = berth_core::job::parse(&body, id).expect("a valid message");
    let job = berth_core::ResolvedJob {
        processor: berth_core::Processor::Fargate,
        ..berth_core::resolve(&request, Some(&index())).expect("a valid job")
    };
    let store = stack.store();
    let now = now_ms();
    store.accept(&job, id, now).await.unwrap();
    let change = berth_aws::store::Change {
        reason: Some("Fargate has no room".into()),
        add_wait: true,
        ..Default::default()
    };
    store
        .transition(id, JobStatus::WaitingForCapacity, change, now)
        .await
        .unwrap();
    assert_eq!(stack.record(id).await.status, JobStatus::WaitingForCapacity);
}

/// The capacity metric's schedule rule.
const RULE: &str = "berth-test-capacity-metric";

fn fleet(stack: &Stack) -> Fleet {
    Fleet::new(stack.clients().autoscaling.clone(), GROUP)
}

impl Scaled {
    /// The scaler chooses the types the group launches, among the local
    /// run's allowed set, each from its class's launch template.
    fn choosing_types(&mut self) {
        let scaler = self.metric.scaler.as_mut().unwrap();
        scaler.fleet = fleet(&self.stack).with_launch_templates(Some(self.templates.clone()));
        scaler.instance_types = Allowed {
            entries: berth_local::fleet::ALLOWED_TYPES
                .split(',')
                .map(String::from)
                .collect(),
            vcpus: choice::range(berth_local::fleet::ALLOWED_VCPUS).unwrap(),
            memory_gib: (0, u32::MAX),
            architectures: vec![Arch::X86_64, Arch::Arm64],
        }
        .types();
    }

    /// The types of the group's instances.
    async fn launched_types(&self) -> Vec<String> {
        let group = fleet(&self.stack).group().await.unwrap();
        group
            .instances
            .into_iter()
            .map(|i| i.instance_type)
            .collect()
    }

    async fn run(&self) -> Report {
        self.metric.run(false).await.unwrap()
    }

    /// The schedule rule's state: ENABLED or DISABLED.
    async fn schedule(&self) -> String {
        let rule = self
            .stack
            .clients()
            .events
            .describe_rule()
            .name(RULE)
            .send()
            .await
            .unwrap();
        rule.state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default()
    }

    /// Registers the group's booted instances, deregisters the gone.
    async fn sync(&mut self) -> berth_local::fleet::Synced {
        let c = self.stack.clients();
        self.boots
            .sync(
                &c.autoscaling,
                &c.ecs,
                CLUSTER,
                &self.stack.aws.local.region,
            )
            .await
            .unwrap()
    }

    async fn desired(&self) -> u32 {
        fleet(&self.stack).group().await.unwrap().desired
    }

    /// Submits jobs of `definition` and hands them to the driver once.
    async fn submit(&self, definition: &str, ids: &[&str]) {
        let bodies: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"job_id":"{id}","definition":"{definition}"}}"#))
            .collect();
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        self.stack.send(&bodies).await;
        let records = self.stack.receive().await;
        self.stack.deliver(&self.stack.driver(), records).await;
    }

    /// (status, attributes) of the container instance of each EC2 instance.
    async fn instances(&self) -> Vec<(String, String, Vec<String>)> {
        self.stack
            .container_instances()
            .await
            .iter()
            .filter(|ci| ci.status() != Some("INACTIVE"))
            .map(|ci| {
                (
                    ci.ec2_instance_id().unwrap_or_default().to_owned(),
                    ci.status().unwrap_or_default().to_owned(),
                    ci.attributes()
                        .iter()
                        // The scaler's marks, not how the instance is
                        // bought (the agent's, from its user data).
                        .filter(|a| {
                            a.name().starts_with("berth.") && a.name() != berth_aws::ecs::MARKET
                        })
                        .map(|a| a.name().to_owned())
                        .collect(),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn the_group_grows_from_zero_for_what_waits_and_for_work_an_instance_runs_for_less() {
    let mut s = scaled(5).await;
    // Nothing asked: nothing launched, and an empty cluster publishes only
    // the definition no instance type holds.
    let idle = s.run().await;
    let scaling = idle.scaling.clone().unwrap();
    assert_eq!((scaling.added, s.desired().await), (0, 0), "{idle:?}");
    assert_eq!(idle.unplaceable.len(), 1, "{idle:?}");
    assert!(
        idle.unplaceable[0].starts_with("job definition `train`")
            && idle.unplaceable[0].contains("fits no instance type"),
        "{idle:?}"
    );
    assert_eq!(
        published(&s.stack, UNPLACEABLE_DEFINITIONS).await,
        Some(1.0)
    );

    // Two jobs that can only run on EC2 wait; four that may use Fargate go
    // to Fargate Spot; a GPU job waits for a type the group does not have.
    s.submit("index", &["index-1", "index-2"]).await;
    s.submit("render", &["render-1", "render-2", "render-3", "render-4"])
        .await;
    s.submit("train", &["train-1"]).await;
    for id in ["index-1", "index-2", "train-1"] {
        assert_eq!(
            s.stack.record(id).await.status,
            JobStatus::WaitingForCapacity
        );
    }
    for i in 1..=4 {
        assert_eq!(
            s.stack.record(&format!("render-{i}")).await.route,
            Some(Route::FargateSpot)
        );
    }
    // A job that runs only on Fargate waits for Fargate's room: it asks
    // nothing of EC2.
    fargate_only_waits(&s.stack, "thumb-1").await;

    // The two waiting need one instance of the local group (a c5.xlarge).
    // The renders cost less on Fargate Spot than an instance would, three
    // to an instance ($0.044 an hour against $0.071 and its margin): they
    // start nothing. Nor does the GPU job.
    let grown = s.run().await;
    let scaling = grown.scaling.unwrap();
    assert_eq!(
        scaling.demand,
        (2, 4),
        "train-1 fits no type, thumb-1 runs only on Fargate: neither counted"
    );
    assert_eq!(scaling.added, 1, "{scaling:?}");
    assert_eq!(scaling.desired, (0, 1));

    // Were they on Fargate on demand ($0.148 an hour for three), the three
    // the coming instance has no room for would fill one that costs less.
    s.metric.scaler.as_mut().unwrap().fargate_spot = false;
    let paying = s.run().await.scaling.unwrap();
    assert_eq!(paying.added, 1, "{paying:?}");
    assert!(
        paying.reasons[0]
            .contains("4 job(s) on Fargate fill 1 c5.xlarge that cost less than Fargate"),
        "{paying:?}"
    );
    assert_eq!(s.desired().await, 2);
    // Asked again before they register, it counts them as coming.
    assert_eq!(s.run().await.scaling.unwrap().added, 0);

    // They register, take no task yet, and are kept for the waiting jobs.
    let synced = s.sync().await;
    assert_eq!((synced.registered.len(), synced.cluster), (2, 2));
    let registered = s.run().await;
    let scaling = registered.scaling.unwrap();
    assert!(
        scaling.drained.is_empty() && scaling.added == 0,
        "{scaling:?}"
    );
    assert_eq!(registered.instances, 2);
    for (_, status, attributes) in s.instances().await {
        assert_eq!(status, "ACTIVE");
        assert_eq!(attributes, [IDLE_SINCE]);
    }
}

/// The console's cluster view follows the scaler: the instance it starts
/// shows as launching, then as an instance of the cluster; the jobs that
/// wait, the decision and why, and the metrics it published.
#[tokio::test]
async fn the_console_shows_the_cluster_while_the_scaler_starts_an_instance() {
    let mut s = scaled(5).await;
    let mut berth = s.stack.cli();
    berth.settings.scaling = Some(berth_aws::settings::ScalingSettings {
        group: GROUP.into(),
        instance_types: vec![INSTANCE_TYPE.into()],
        launch_templates: None,
        scale_in_after_seconds: 0,
        headroom: 0,
    });
    let (addr, token) = crate::console::console_of(&s.stack, berth).await;
    let cookie = crate::console::sign_in(addr, &token).await;
    let cluster = || async { crate::console::get(addr, &cookie, "/cluster").await };

    let (status, page) = cluster().await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("No container instance: the cluster is at rest"),
        "{page}"
    );
    assert!(
        page.contains("The scaler has decided nothing yet."),
        "{page}"
    );

    s.submit("index", &["index-1", "index-2"]).await;
    let grown = s.run().await.scaling.unwrap();
    assert_eq!(grown.added, 1, "{grown:?}");
    let group = fleet(&s.stack).group().await.unwrap();
    let launching = &group.instances[0].id;
    let (_, page) = cluster().await;
    assert!(page.contains("desired <strong>1</strong>"), "{page}");
    assert!(
        page.contains(&format!(
            "{launching} ({INSTANCE_TYPE}): started by the group, not yet registered"
        )),
        "{page}"
    );
    assert!(page.contains("2 job(s) waiting for capacity"), "{page}");
    assert!(
        page.contains("0 → 1") && page.contains(&grown.reasons[0]),
        "{page}"
    );
    assert!(
        page.contains("2 waiting at"),
        "the waiting count as published: {page}"
    );

    // It registers: an instance of the cluster, no longer launching, and
    // the chart has the capacity metric's line.
    s.sync().await;
    s.run().await;
    let (_, page) = cluster().await;
    assert!(!page.contains("not yet registered"), "{page}");
    assert!(
        page.contains(&format!(
            "<th scope=\"row\">{launching}</th><td>{INSTANCE_TYPE}</td>"
        )),
        "{page}"
    );
    assert!(page.contains("3 schedulable at"), "{page}");
    // The chart's line of it, and its legend's sample.
    assert!(
        page.contains("<svg")
            && page
                .matches(r##"stroke="#0B5CAD" stroke-width="2""##)
                .count()
                >= 2,
        "{page}"
    );
}

/// At rest the scaler turns its schedule off: a quiet deployment runs no
/// scaler. A job waiting for capacity wakes it (the driver's asynchronous
/// invoke): it launches for the job and turns its schedule on, and turns it
/// off again once the cluster is back at zero.
#[tokio::test]
async fn the_scaler_rests_with_its_schedule_off_until_a_job_wakes_it() {
    let mut s = scaled(5).await;
    assert_eq!(s.schedule().await, "ENABLED");
    // Were renders on Fargate on demand, three of them would fill a
    // c5.xlarge for less: the scaler keeps watching for them.
    s.metric.scaler.as_mut().unwrap().fargate_spot = false;
    assert_eq!(s.run().await.schedule, None);
    assert_eq!(s.schedule().await, "ENABLED");
    // On Fargate Spot none would: at rest.
    s.metric.scaler.as_mut().unwrap().fargate_spot = true;
    let idle = s.run().await;
    assert_eq!(idle.schedule, Some("off"), "{idle:?}");
    assert_eq!(s.schedule().await, "DISABLED");
    // Woken with nothing to do, it stays off.
    assert_eq!(s.metric.run(true).await.unwrap().schedule, None);
    assert_eq!(s.schedule().await, "DISABLED");

    s.submit("index", &["index-1"]).await;
    let woken = s.metric.run(true).await.unwrap();
    assert_eq!(woken.schedule, Some("on"), "{woken:?}");
    assert_eq!(woken.scaling.as_ref().unwrap().added, 1);
    assert_eq!(s.schedule().await, "ENABLED");
    // Its scheduled runs while the instance comes change nothing.
    assert_eq!(s.run().await.schedule, None);

    // The job is cancelled; the instance registers, idles, drains and goes,
    // and the schedule goes off with it.
    berth_aws::operations::cancel(&s.stack.store(), &s.stack.cluster(), None, "index-1", None)
        .await
        .unwrap();
    s.sync().await;
    let mut off = None;
    for _ in 0..4 {
        let r = s.run().await;
        s.sync().await;
        if r.schedule.is_some() {
            off = r.schedule;
            break;
        }
    }
    assert_eq!(off, Some("off"));
    assert_eq!(s.schedule().await, "DISABLED");
    assert_eq!(s.desired().await, 0);
}

#[tokio::test]
async fn idle_instances_drain_then_go_and_one_with_a_task_is_never_touched() {
    let mut s = scaled(5).await;
    fleet(&s.stack).set_desired(2).await.unwrap();
    s.sync().await;
    assert_eq!(s.instances().await.len(), 2);

    // A task lands on one of them.
    let task = s
        .stack
        .clients()
        .ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("train")
        .launch_type(LaunchType::Ec2)
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .clone();
    let busy = s
        .stack
        .container_instances()
        .await
        .into_iter()
        .find(|ci| Some(ci.container_instance_arn().unwrap()) == task.container_instance_arn())
        .and_then(|ci| ci.ec2_instance_id)
        .unwrap();

    // The idle one drains (its quiet period is 0 here); the busy one not.
    let first = s.run().await.scaling.unwrap();
    assert_eq!(first.drained.len(), 1, "{first:?}");
    assert_ne!(first.drained[0], busy);
    let idle = first.drained[0].clone();
    let states = s.instances().await;
    let of = |id: &str| states.iter().find(|(e, _, _)| e == id).unwrap().clone();
    assert_eq!(of(&idle).1, "DRAINING");
    assert!(of(&idle).2.contains(&RETIRING.to_owned()));
    assert_eq!(of(&busy).1, "ACTIVE");

    // Drained and empty, it goes, and the group's desired capacity with it.
    let second = s.run().await.scaling.unwrap();
    assert_eq!(second.terminated, std::slice::from_ref(&idle), "{second:?}");
    assert_eq!(s.desired().await, 1);
    let synced = s.sync().await;
    assert_eq!(synced.deregistered, [idle]);

    // The busy one stays while its task runs, however often asked.
    for _ in 0..2 {
        let again = s.run().await.scaling.unwrap();
        assert!(
            again.drained.is_empty() && again.terminated.is_empty(),
            "{again:?}"
        );
    }
    // Its task ends: it drains, then goes; the cluster is back to zero.
    s.stack
        .clients()
        .ecs
        .stop_task()
        .cluster(CLUSTER)
        .task(task.task_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.run().await.scaling.unwrap().drained,
        std::slice::from_ref(&busy)
    );
    assert_eq!(s.run().await.scaling.unwrap().terminated, [busy]);
    assert_eq!(s.desired().await, 0);
    assert_eq!(s.sync().await.cluster, 0);
}

#[tokio::test]
async fn a_draining_instance_comes_back_when_jobs_need_room() {
    let mut s = scaled(5).await;
    fleet(&s.stack).set_desired(1).await.unwrap();
    s.sync().await;
    let drained = s.run().await.scaling.unwrap().drained;
    assert_eq!(drained.len(), 1);

    // Before it is terminated, two jobs that only run on EC2 arrive.
    s.submit("index", &["index-1", "index-2"]).await;
    let back = s.run().await.scaling.unwrap();
    assert_eq!(back.reactivated, drained, "{back:?}");
    assert!(back.terminated.is_empty() && back.added == 0, "{back:?}");
    let states = s.instances().await;
    assert_eq!(states[0].1, "ACTIVE");
    assert_eq!(
        states[0].2,
        [IDLE_SINCE],
        "no longer retiring; idle since now"
    );
    let marked = s.stack.container_instances().await[0]
        .attributes()
        .iter()
        .find(|a| a.name() == IDLE_SINCE)
        .and_then(|a| a.value().map(|v| v.parse::<i64>().unwrap()))
        .unwrap();
    assert!(now_ms() - marked < 60_000);
}

/// Spot reclaims both instances of a group of at least one, one of them
/// drained by the scaler (idle) before: jobs that arrive then do not take
/// it back. Both go, and the second without taking the group below its
/// minimum (Auto Scaling refuses that decrement), so the group replaces it;
/// the refusal holds back neither the other instance nor the scale-out.
#[tokio::test]
async fn a_reclaimed_instance_is_never_taken_back_and_the_minimum_holds() {
    let mut s = scaled_from(1, 5).await;
    fleet(&s.stack).set_desired(2).await.unwrap();
    s.sync().await;
    let drained = s.run().await.scaling.unwrap().drained;
    assert_eq!(drained.len(), 1, "one idle, one kept for the minimum");
    // Spot's two-minute warnings: ecs-runner drains each and marks it.
    let cluster = s.stack.cluster();
    let all: Vec<String> = s.instances().await.into_iter().map(|i| i.0).collect();
    for ec2 in &all {
        cluster.drain_instance(ec2).await.unwrap();
    }
    // Two jobs that only run on EC2 arrive: they get a new instance, not
    // the drained one back.
    s.submit("index", &["index-1", "index-2"]).await;
    let run = s.run().await.scaling.unwrap();
    assert!(run.reactivated.is_empty(), "{run:?}");
    let mut terminated = run.terminated.clone();
    terminated.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(terminated, expected, "{run:?}");
    assert_eq!(run.added, 1, "{run:?}");
    let group = fleet(&s.stack).group().await.unwrap();
    assert!(group.desired >= group.min, "{group:?}");
    assert_eq!(run.desired.1, group.desired);
    let mut gone = s.sync().await.deregistered;
    gone.sort();
    assert_eq!(gone, expected);
}

/// A job waiting for capacity does not sleep through the room started for
/// it: when the instance registers, ECS's container instance event has
/// ecs-runner release the job's held delivery, and the driver launches it
/// at once, not after its 30 s backoff.
#[tokio::test]
async fn a_job_waiting_for_capacity_is_launched_when_its_instance_registers() {
    let mut s = scaled(5).await;
    s.submit("index", &["index-1"]).await;
    assert_eq!(
        s.stack.record("index-1").await.status,
        JobStatus::WaitingForCapacity
    );
    assert_eq!(s.run().await.scaling.unwrap().added, 1);
    assert!(s.stack.receive().await.is_empty(), "held for its backoff");

    let synced = s.sync().await;
    assert_eq!(synced.registered.len(), 1);
    let registered = std::time::Instant::now();
    // ECS's event for the registration, as EventBridge hands it over.
    let ci = s.stack.container_instances().await.remove(0);
    let detail = serde_json::to_value(berth_aws::ecs::InstanceChange::from(&ci)).unwrap();
    let event = serde_json::from_value(serde_json::json!({
        "version": "0",
        "id": "registered",
        "detail-type": "ECS Container Instance State Change",
        "source": "aws.ecs",
        "account": "000000000000",
        "time": "2026-12-03T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }))
    .unwrap();
    let answer = berth_ecs_runner::events::handle(&s.stack.lifecycle(), event)
        .await
        .unwrap();
    assert_eq!(
        answer["released"],
        serde_json::json!(["index-1"]),
        "{answer}"
    );

    let records = s.stack.receive().await;
    assert_eq!(records.len(), 1, "released, not held for its backoff");
    s.stack.deliver(&s.stack.driver(), records).await;
    let record = s.stack.record("index-1").await;
    assert_eq!(record.status, JobStatus::Dispatched, "{record:?}");
    assert_eq!(record.route, Some(Route::Ec2));
    let waited = registered.elapsed();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

/// The scaler prices its group's instances at the Spot prices EC2 answers
/// for them now (one per type: the median of the zones'), and keeps them in
/// the jobs table, where they hold for an hour and are no job.
#[tokio::test]
async fn the_scaler_prices_instances_at_the_spot_prices_ec2_answers() {
    let mut s = scaled(5).await;
    let with_ec2 = fleet(&s.stack).with_ec2(s.stack.clients().ec2.clone());
    let scaler = s.metric.scaler.as_mut().unwrap();
    scaler.fleet = with_ec2.clone();
    scaler.instance_types = vec![INSTANCE_TYPE.into(), "m5.large".into()];
    let priced = scaler.at_current_prices().await;

    let quotes = with_ec2.spot_quotes(&[INSTANCE_TYPE.into()]).await.unwrap();
    assert!(quotes.len() > 2, "a price per zone: {quotes:?}");
    let zones: Vec<f64> = quotes.iter().map(|(_, p)| *p).collect();
    let price = priced.prices.spot_hour(INSTANCE_TYPE).unwrap();
    assert!(
        zones.iter().filter(|p| **p < price).count() <= zones.len() / 2
            && zones.iter().filter(|p| **p > price).count() <= zones.len() / 2,
        "the median of {zones:?}: {price}"
    );
    assert_ne!(
        Some(price),
        berth_core::prices::Prices::default().spot_hour(INSTANCE_TYPE),
        "observed, not the assumed fraction of on demand"
    );

    let kept = s.stack.store().spot_prices().await.unwrap().unwrap();
    assert_eq!(kept.prices.get(INSTANCE_TYPE), Some(&price));
    assert!(kept.prices.contains_key("m5.large"), "{kept:?}");
    assert!(now_ms() - kept.at_ms < 60_000);
    assert!(
        s.stack
            .store()
            .get(berth_aws::store::SPOT_PRICES_KEY)
            .await
            .unwrap()
            .is_none(),
        "no job"
    );
    // A run within the hour takes them from the table, not from EC2; past
    // the hour, EC2 is asked again.
    let store = s.stack.store();
    let mut marked = kept.clone();
    marked.prices.insert(INSTANCE_TYPE.into(), 0.5);
    store.keep_spot_prices(&marked).await.unwrap();
    let again = s.metric.scaler.as_ref().unwrap().at_current_prices().await;
    assert_eq!(again.prices.spot_hour(INSTANCE_TYPE), Some(0.5));
    marked.at_ms -= 2 * 3_600_000;
    store.keep_spot_prices(&marked).await.unwrap();
    let again = s.metric.scaler.as_ref().unwrap().at_current_prices().await;
    assert_eq!(again.prices.spot, priced.prices.spot);
    assert_eq!(
        store.spot_prices().await.unwrap().unwrap().prices,
        kept.prices
    );
    // And the capacity metric runs at them.
    assert!(s.run().await.scaling.is_some());
}

/// The scaler launches the type that holds what waits: a job of 16 vCPUs
/// and 64 GiB starts a type that holds it, not the group's first; a GPU job
/// starts a GPU type; the instances register with their types' room.
#[tokio::test]
async fn a_huge_job_starts_a_type_that_holds_it_and_a_gpu_job_a_gpu_type() {
    let mut s = scaled(5).await;
    s.choosing_types();
    let huge = JobDefinition {
        name: "huge".into(),
        cpu: 16 * 1024,
        memory: 64 * 1024,
        ..index()
    };
    s.stack.definitions().put(&huge).await.unwrap();
    s.submit("huge", &["huge-1"]).await;
    assert_eq!(
        s.stack.record("huge-1").await.status,
        JobStatus::WaitingForCapacity
    );
    let grown = s.run().await.scaling.unwrap();
    assert_eq!(grown.added, 1, "{grown:?}");
    let types = s.launched_types().await;
    assert_eq!(types.len(), 1, "{types:?}");
    assert_ne!(types[0], INSTANCE_TYPE, "not the group's first type");
    let room = InstanceType::known(&types[0]).unwrap().room;
    assert!(Room::new(16 * 1024, 64 * 1024, 0).fits(room), "{types:?}");
    assert!(
        grown.reasons.iter().any(|r| r.contains(&types[0])),
        "{grown:?}"
    );
    // It registers with its type's room; asked again, nothing more.
    let synced = s.sync().await;
    assert_eq!(synced.registered.len(), 1);
    let registered = s.stack.container_instances().await;
    let cpu = registered[0]
        .registered_resources()
        .iter()
        .find(|r| r.name() == Some("CPU"))
        .map(|r| r.integer_value);
    assert_eq!(cpu, Some(room.cpu as i32));
    assert_eq!(s.run().await.scaling.unwrap().added, 0);

    // A GPU job (`train`: a GPU) starts a GPU type: the instance there has
    // none.
    s.submit("train", &["train-1"]).await;
    assert_eq!(
        s.stack.record("train-1").await.status,
        JobStatus::WaitingForCapacity,
        "{types:?}"
    );
    let grown = s.run().await.scaling.unwrap();
    assert_eq!(grown.added, 1, "{grown:?}");
    let types = s.launched_types().await;
    let gpu: Vec<&String> = types
        .iter()
        .filter(|t| InstanceType::known(t).is_some_and(|k| k.room.gpu >= 1))
        .collect();
    assert_eq!(gpu.len(), 1, "{types:?}");
    let room = InstanceType::known(gpu[0]).unwrap().room;
    assert!(Room::new(1024, 2048, 1).fits(room), "{types:?}");
}
