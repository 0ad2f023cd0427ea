//! The dispatch path: real `SqsEvent`s built from messages received from the
//! local queue, handed to the driver's handler; records, tasks and queues
//! read back from the local AWS.

use std::collections::HashSet;

use aws_sdk_ecs::types::LaunchType;
use aws_sdk_sqs::types::QueueAttributeName;
use berth_core::{JobStatus, Route};
use berth_driver::Outcome;
use berth_tests::stack::Stack;

#[tokio::test]
async fn a_job_that_fits_ec2_runs_there_with_its_overrides() {
    let stack = Stack::new(1).await;
    stack
        .send(&[
            r#"{"job_id":"ec2-1","definition":"render","command":["echo","hi"],
                    "environment":{"MODE":"fast"},"cpu":512,"memory":1024}"#,
        ])
        .await;
    let failed = stack.deliver(&stack.driver(), stack.receive().await).await;
    assert!(failed.is_empty(), "{failed:?}");

    let r = stack.record("ec2-1").await;
    assert_eq!(r.status, JobStatus::Dispatched, "{r:?}");
    assert_eq!(r.route, Some(Route::Ec2));
    assert_eq!((r.attempts, r.launch, r.waits), (1, 1, 0));
    let tasks = stack.tasks_of("ec2-1", 1).await;
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(r.task_arn.as_deref(), task.task_arn());
    assert_eq!(task.launch_type(), Some(&LaunchType::Ec2));
    assert_eq!(task.started_by(), Some("ec2-1/1"));
    let o = &task.overrides().unwrap().container_overrides()[0];
    assert_eq!(o.name(), Some("main"));
    assert_eq!(o.command(), ["echo", "hi"]);
    assert_eq!((o.cpu(), o.memory()), (Some(512), Some(1024)));
    let env: HashSet<(String, String)> = o
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_owned(),
                kv.value().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in [
        ("MODE", "fast"),
        ("BERTH_JOB_ID", "ec2-1"),
        ("BERTH_LAUNCH", "1"),
    ] {
        assert!(
            env.contains(&(pair.0.to_owned(), pair.1.to_owned())),
            "{pair:?} in {env:?}"
        );
    }
    assert!(
        task.tags()
            .iter()
            .any(|t| t.key() == Some("berth:job-id") && t.value() == Some("ec2-1"))
    );
    assert!(stack.receive().await.is_empty(), "the message was consumed");
}

#[tokio::test]
async fn a_full_cluster_sends_the_next_job_to_fargate() {
    let stack = Stack::new(1).await;
    let driver = stack.driver();
    // One container instance holds three render containers.
    for i in 0..3 {
        let body = format!(r#"{{"job_id":"fill-{i}","definition":"render"}}"#);
        assert!(stack.send_to(&driver, &[&body]).await.is_empty());
        assert_eq!(
            stack.record(&format!("fill-{i}")).await.route,
            Some(Route::Ec2)
        );
    }
    stack
        .send(&[r#"{"job_id":"spill","definition":"render"}"#])
        .await;
    assert!(
        stack
            .deliver(&driver, stack.receive().await)
            .await
            .is_empty()
    );

    // A render tolerates interruption: Fargate Spot.
    let r = stack.record("spill").await;
    assert_eq!(
        (r.status, r.route),
        (JobStatus::Dispatched, Some(Route::FargateSpot))
    );
    let tasks = stack.tasks_of("spill", 1).await;
    assert_eq!(tasks.len(), 1, "one task, on Fargate Spot only");
    assert_eq!(tasks[0].capacity_provider_name(), Some("FARGATE_SPOT"));
    let overrides = tasks[0].overrides().unwrap();
    assert_eq!(
        (overrides.cpu(), overrides.memory()),
        (Some("1024"), Some("2048")),
        "the Fargate task size"
    );
}

#[tokio::test]
async fn a_gpu_job_on_a_full_cluster_waits_then_dispatches_when_room_appears() {
    let stack = Stack::new(1).await;
    let driver = stack.driver();
    stack
        .send(&[
            r#"{"job_id":"f1","definition":"render"}"#,
            r#"{"job_id":"f2","definition":"render"}"#,
            r#"{"job_id":"f3","definition":"render"}"#,
        ])
        .await;
    assert!(
        stack
            .deliver(&driver, stack.receive().await)
            .await
            .is_empty()
    );

    let ids = stack
        .send(&[r#"{"job_id":"gpu-1","definition":"train"}"#])
        .await;
    let first = stack.receive().await;
    let handle = first[0].receipt_handle.clone().unwrap();
    let failed = stack.deliver(&driver, first).await;
    assert_eq!(failed, ids, "a waiting job's message comes back");
    let r = stack.record("gpu-1").await;
    assert_eq!(r.status, JobStatus::WaitingForCapacity);
    assert_eq!((r.attempts, r.waits), (0, 1), "waiting burns no attempt");
    // The record says since when it waits and when it is tried next: the
    // message's backoff.
    let (since, next) = (r.waiting_since.unwrap(), r.next_try_at.unwrap());
    assert_eq!(Some(since), r.updated_at);
    let backoff = i64::from(berth_core::launch::capacity_backoff_seconds(0)) * 1000;
    assert_eq!(next - since, backoff, "{r:?}");
    assert!(
        r.reason.as_deref().unwrap().contains("EC2 has no room"),
        "{:?}",
        r.reason
    );
    assert!(stack.tasks_of("gpu-1", 1).await.is_empty());
    assert!(
        stack.receive().await.is_empty(),
        "the backoff keeps the message away for now"
    );
    let invisible = stack
        .clients()
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    assert_eq!(
        invisible
            .attributes()
            .unwrap()
            .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .map(String::as_str),
        Some("1")
    );

    // Room appears on an instance with a GPU; the backoff is over (time
    // passes: the message is due).
    stack
        .aws
        .add_container_instance_of(berth_tests::stack::CLUSTER, "g4dn.xlarge")
        .await;
    let records = stack.redeliver(&[handle]).await;
    assert_eq!(records.len(), 1, "the waiting job's message comes back");
    assert_eq!(
        records[0]
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str),
        Some("2")
    );
    assert!(stack.deliver(&driver, records).await.is_empty());
    let r = stack.record("gpu-1").await;
    assert_eq!(
        (r.status, r.route),
        (JobStatus::Dispatched, Some(Route::Ec2))
    );
    assert_eq!(
        (r.attempts, r.waits, r.launch),
        (1, 1, 2),
        "one attempt; the second launch placed it"
    );
    assert_eq!(
        (r.waiting_since, r.next_try_at),
        (None, None),
        "placed: it waits no more"
    );
    assert_eq!(r.routes(), [Route::Ec2]);
    assert_eq!(stack.tasks_of("gpu-1", 2).await.len(), 1);
}

#[tokio::test]
async fn one_message_delivered_twice_launches_once() {
    let stack = Stack::new(1).await;
    let driver = stack.driver();
    stack
        .send(&[r#"{"job_id":"twice","definition":"render"}"#])
        .await;
    let records = stack.receive().await;
    assert_eq!(records.len(), 1);

    // The same record twice in one batch (handled side by side), then again.
    let mut doubled = records.clone();
    doubled.push(records[0].clone());
    let handled = driver.handle_batch(doubled).await;
    let dispatched = handled
        .iter()
        .filter(|h| matches!(h.outcome, Outcome::Dispatched { .. }))
        .count();
    assert_eq!(dispatched, 1, "{handled:?}");
    let again = driver.handle_batch(records).await;
    assert_eq!(
        again[0].outcome,
        Outcome::Duplicate {
            status: JobStatus::Dispatched
        }
    );

    assert_eq!(stack.task_count().await, 1, "exactly one launch");
    let r = stack.record("twice").await;
    assert_eq!((r.status, r.attempts), (JobStatus::Dispatched, 1));
}

#[tokio::test]
async fn a_second_message_with_a_taken_job_id_launches_nothing() {
    let stack = Stack::new(1).await;
    let driver = stack.driver();
    stack
        .send(&[r#"{"job_id":"same","definition":"render"}"#])
        .await;
    stack.deliver(&driver, stack.receive().await).await;
    stack
        .send(&[r#"{"job_id":"same","definition":"render","command":["other"]}"#])
        .await;
    let failed = stack.deliver(&driver, stack.receive().await).await;
    assert!(failed.is_empty());
    assert_eq!(stack.task_count().await, 1);
}

#[tokio::test]
async fn a_mixed_batch_dispatches_the_valid_and_keeps_each_invalid_with_its_reason() {
    let stack = Stack::new(2).await;
    let big = "x".repeat(7000);
    let bodies = [
        r#"{"job_id":"ok-1","definition":"render"}"#.to_owned(),
        r#"{"job_id":"ok-2","definition":"render","cpu":256}"#.to_owned(),
        "{this is not json".to_owned(),
        r#"{"definition":"render","cpus":2}"#.to_owned(),
        r#"{"job_id":"who","definition":"nobody"}"#.to_owned(),
        format!(r#"{{"job_id":"big-env","definition":"render","environment":{{"BIG":"{big}"}}}}"#),
        r#"{"job_id":"bad/id","definition":"render"}"#.to_owned(),
    ];
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let ids = stack.send(&refs).await;
    let records = stack.receive().await;
    assert_eq!(records.len(), bodies.len());

    let failed = stack.deliver(&stack.driver(), records).await;
    assert!(
        failed.is_empty(),
        "invalid messages are never retried: {failed:?}"
    );

    for id in ["ok-1", "ok-2"] {
        let r = stack.record(id).await;
        assert_eq!(
            (r.status, r.route),
            (JobStatus::Dispatched, Some(Route::Ec2)),
            "{id}"
        );
    }
    // Invalid with a usable job id: REJECTED with the specific reason.
    let unknown_field = stack.record(&ids[3]).await;
    assert_eq!(unknown_field.status, JobStatus::Rejected);
    assert!(
        unknown_field
            .reason
            .as_deref()
            .unwrap()
            .starts_with("unknown field `cpus`"),
        "{unknown_field:?}"
    );
    assert_eq!(unknown_field.raw_body.as_deref(), Some(bodies[3].as_str()));
    let who = stack.record("who").await;
    assert_eq!(who.status, JobStatus::Rejected);
    assert_eq!(
        who.reason.as_deref(),
        Some("unknown job definition `nobody`: only registered definitions run")
    );
    let big_env = stack.record("big-env").await;
    assert_eq!(big_env.status, JobStatus::Rejected);
    assert_eq!(
        big_env.reason.as_deref(),
        Some("`environment`: is 7003 bytes, more than the limit of 6144")
    );
    // No usable job id: the dead-letter queue, reason attached.
    let mut dead = stack.dead_letters().await;
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let by_body = |b: &str| {
        dead.iter()
            .find(|(body, _)| body == b)
            .map(|(_, r)| r.clone())
    };
    assert!(
        by_body(&bodies[2])
            .unwrap()
            .starts_with("message body is not JSON: key must be a string")
    );
    assert_eq!(
        by_body(&bodies[6]).unwrap(),
        "`job_id`: may contain only letters, digits, '_' and '-', found \"bad/id\""
    );
    assert!(
        stack.receive().await.is_empty(),
        "nothing left to redeliver, nothing dropped"
    );
    assert_eq!(stack.task_count().await, 2);
}

/// A job waiting for capacity wakes the scaler at once, once for its batch:
/// an asynchronous invoke of the capacity metric that says so. A batch whose
/// jobs all run wakes nothing.
#[tokio::test]
async fn a_job_waiting_for_capacity_wakes_the_scaler_once_a_batch() {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    let stack = Stack::new(0).await;
    let woke = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = woke.clone();
    let wake = mock!(aws_sdk_lambda::Client::invoke).then_compute_output(move |r| {
        seen.lock().unwrap().push((
            r.function_name().unwrap_or_default().to_owned(),
            r.invocation_type().map(|t| t.as_str().to_owned()),
            String::from_utf8(r.payload().unwrap().as_ref().to_vec()).unwrap(),
        ));
        InvokeOutput::builder().status_code(202).build()
    });
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&wake]);
    let driver = berth_driver::Driver {
        waker: Some(berth_aws::schedule::Waker::new(
            lambda,
            "berth-dev-capacity-metric",
        )),
        ..stack.driver()
    };
    stack
        .send(&[
            r#"{"job_id":"gpu-1","definition":"train"}"#,
            r#"{"job_id":"gpu-2","definition":"train"}"#,
        ])
        .await;
    stack.deliver(&driver, stack.receive().await).await;
    assert_eq!(
        stack.record("gpu-1").await.status,
        JobStatus::WaitingForCapacity
    );
    {
        let woke = woke.lock().unwrap();
        assert_eq!(woke.len(), 1, "once for the batch: {woke:?}");
        let (function, kind, payload) = &woke[0];
        assert_eq!(function, "berth-dev-capacity-metric");
        assert_eq!(kind.as_deref(), Some("Event"));
        let event: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert!(berth_aws::schedule::is_wake(&event), "{event}");
        assert_eq!(event["detail"]["why"], "2 job(s) waiting for capacity");
    }
    stack
        .send(&[r#"{"job_id":"r-1","definition":"render"}"#])
        .await;
    stack.deliver(&driver, stack.receive().await).await;
    assert_eq!(stack.record("r-1").await.status, JobStatus::Dispatched);
    assert_eq!(woke.lock().unwrap().len(), 1, "nothing waits: no wake");
}

/// A task runs on an instance of its architecture: an arm64 task
/// definition's job (runtime platform ARM64) finds no room on an x86
/// instance, however empty, and runs on the Graviton instance that joins.
#[tokio::test]
async fn an_arm64_task_definition_runs_only_on_arm64_instances() {
    use aws_sdk_ecs::types::{ContainerDefinition, CpuArchitecture, RuntimePlatform};
    let stack = Stack::new(1).await;
    let ecs = &stack.clients().ecs;
    ecs.register_task_definition()
        .family("index-arm")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image("busybox")
                .cpu(1024)
                .memory(2048)
                .essential(true)
                .build(),
        )
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::Arm64)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let definition = berth_core::JobDefinition {
        name: "index-arm".into(),
        task_definition: "index-arm".into(),
        fargate: false,
        ..berth_tests::stack::render()
    };
    stack.definitions().put(&definition).await.unwrap();
    stack
        .send(&[r#"{"job_id":"arm-1","definition":"index-arm"}"#])
        .await;
    stack.deliver(&stack.driver(), stack.receive().await).await;
    let r = stack.record("arm-1").await;
    assert_eq!(r.status, JobStatus::WaitingForCapacity, "{r:?}");

    let graviton = stack
        .aws
        .add_container_instance_of(berth_tests::stack::CLUSTER, "m6g.xlarge")
        .await;
    let handles: Vec<String> = stack
        .store()
        .waiting_for_capacity()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|w| w.receipt)
        .collect();
    let again = stack.redeliver(&handles).await;
    stack.deliver(&stack.driver(), again).await;
    let r = stack.record("arm-1").await;
    assert_eq!(r.status, JobStatus::Dispatched, "{r:?}");
    let tasks = stack.tasks_of("arm-1", 2).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].container_instance_arn(), Some(graviton.as_str()));
}

/// A job's tags, over its definition's, go on its ECS task beside berth's
/// own and stay on its record; a tag AWS would refuse rejects the job with
/// the reason, and so do more tags than a task takes.
#[tokio::test]
async fn a_jobs_tags_and_its_definitions_go_on_its_task_and_record() {
    let stack = Stack::new(1).await;
    let tagged = berth_core::JobDefinition {
        tags: [
            ("team".to_string(), "vision".to_string()),
            ("tier".to_string(), "batch".to_string()),
        ]
        .into(),
        ..berth_tests::stack::render()
    };
    stack.definitions().put(&tagged).await.unwrap();
    let many: Vec<String> = (0..46).map(|i| format!(r#""k{i}":"v""#)).collect();
    let many = format!(
        r#"{{"job_id":"many-1","definition":"render","tags":{{{}}}}}"#,
        many.join(",")
    );
    stack
        .send(&[
            r#"{"job_id":"tag-1","definition":"render","tags":{"team":"render","pipeline":"nightly 2026-12/04"}}"#,
            r#"{"job_id":"aws-1","definition":"render","tags":{"aws:cost":"x"}}"#,
            &many,
        ])
        .await;
    let failed = stack.deliver(&stack.driver(), stack.receive().await).await;
    assert!(failed.is_empty(), "{failed:?}");

    let r = stack.record("tag-1").await;
    assert_eq!(r.status, JobStatus::Dispatched, "{r:?}");
    let want = [
        ("berth:job-id", "tag-1"),
        ("berth:launch", "1"),
        ("berth:definition", "render"),
        ("pipeline", "nightly 2026-12/04"),
        ("team", "render"),
        ("tier", "batch"),
    ];
    let tasks = stack.tasks_of("tag-1", 1).await;
    let mut on_task: Vec<(&str, &str)> = tasks[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    on_task.sort_unstable();
    let mut expected = want.to_vec();
    expected.sort_unstable();
    assert_eq!(on_task, expected);
    let kept: Vec<(&str, &str)> = r
        .job
        .as_ref()
        .unwrap()
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(kept, want[3..]);

    let refused = stack.record("aws-1").await;
    assert_eq!(refused.status, JobStatus::Rejected);
    assert!(
        refused.reason.as_deref().is_some_and(|why| why
            .contains("`tags`: is reserved: tag keys starting with aws: (in any case) are AWS's")),
        "{refused:?}"
    );
    let too_many = stack.record("many-1").await;
    assert_eq!(too_many.status, JobStatus::Rejected);
    assert!(
        too_many
            .reason
            .as_deref()
            .is_some_and(|why| why.contains("48 in all, more than the limit of 47")),
        "{too_many:?}"
    );
}

/// A job that may run on Fargate is kept off a GPU instance, however much
/// room it has: there it would keep a dear instance up for work that costs
/// less on Fargate. A job only EC2 runs may use that room.
#[tokio::test]
async fn a_job_that_may_run_elsewhere_is_kept_off_gpu_instances() {
    let stack = Stack::new(0).await;
    let gpu = stack
        .aws
        .add_container_instance_of(berth_tests::stack::CLUSTER, "g4dn.xlarge")
        .await;
    let index = berth_core::JobDefinition {
        name: "index".into(),
        task_definition: "train".into(),
        fargate: false,
        ..berth_tests::stack::render()
    };
    stack.definitions().put(&index).await.unwrap();
    stack
        .send(&[
            r#"{"job_id":"render-1","definition":"render"}"#,
            r#"{"job_id":"index-1","definition":"index"}"#,
        ])
        .await;
    stack.deliver(&stack.driver(), stack.receive().await).await;
    let render = stack.record("render-1").await;
    assert_eq!(render.route, Some(Route::FargateSpot), "{render:?}");
    let index = stack.record("index-1").await;
    assert_eq!(
        (index.status, index.route),
        (JobStatus::Dispatched, Some(Route::Ec2)),
        "{index:?}"
    );
    let tasks = stack.tasks_of("index-1", 1).await;
    assert_eq!(tasks[0].container_instance_arn(), Some(gpu.as_str()));
}
