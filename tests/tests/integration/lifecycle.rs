//! After launch: ECS task state changes, Spot interruptions, retries,
//! timeouts and cancel, against the local AWS. Events carry the real task
//! ARNs, `startedBy` and cluster of the tasks the driver started there.

use berth_aws::ecs::TaskChange;
use berth_aws::operations::Cancelled;
use berth_core::{JobStatus, Route};
use berth_ecs_runner::lifecycle::TaskAction;
use berth_tests::stack::{CLUSTER, Stack};

/// Sends `body` and hands what the queue delivers to the driver, as the
/// event source mapping would.
async fn submit(stack: &Stack, body: &str) {
    stack.send(&[body]).await;
    deliver_all(stack).await;
}

async fn deliver_all(stack: &Stack) {
    let records = stack.receive().await;
    assert!(!records.is_empty(), "the queue delivered nothing");
    let failed = stack.deliver(&stack.driver(), records).await;
    assert!(failed.is_empty(), "{failed:?}");
}

async fn desired_status(stack: &Stack, task_arn: &str) -> String {
    let out = stack
        .clients()
        .ecs
        .describe_tasks()
        .cluster(CLUSTER)
        .tasks(task_arn)
        .send()
        .await
        .unwrap();
    out.tasks()[0].desired_status().unwrap().to_owned()
}

#[tokio::test]
async fn running_then_succeeded_and_repeated_or_late_events_change_nothing() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    submit(&stack, r#"{"job_id":"ok-1","definition":"render"}"#).await;

    let running = stack.task_change("ok-1", 1, "RUNNING").await;
    assert_eq!(
        life.task_changed(&running).await.unwrap(),
        TaskAction::Running
    );
    let r = stack.record("ok-1").await;
    assert_eq!(r.status, JobStatus::Running);
    assert!(r.deadline.is_some());
    // The same event again: nothing to do.
    assert_eq!(
        life.task_changed(&running).await.unwrap(),
        TaskAction::Stale {
            status: JobStatus::Running
        }
    );

    let done = stack.task_exited("ok-1", 1, 0).await;
    assert!(matches!(
        life.task_changed(&done).await.unwrap(),
        TaskAction::Ended {
            status: JobStatus::Succeeded,
            ..
        }
    ));
    // Repeated, and a late RUNNING: the job stays SUCCEEDED.
    life.task_changed(&done).await.unwrap();
    life.task_changed(&running).await.unwrap();
    let r = stack.record("ok-1").await;
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!((r.attempts, r.exit_code), (1, Some(0)));
    assert_eq!(r.history.len(), 1, "{:?}", r.history);
    assert_eq!(r.history[0].outcome, "SUCCEEDED");
    assert_eq!(r.history[0].route, Some(Route::Ec2));
}

#[tokio::test]
async fn a_stop_that_arrives_before_running_is_final() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    submit(&stack, r#"{"job_id":"ooo-1","definition":"render"}"#).await;
    let running = stack.task_change("ooo-1", 1, "RUNNING").await;
    let failed = stack.task_exited("ooo-1", 1, 3).await;
    // max_attempts 1: the first failure is the end.
    let one = r#"{"job_id":"ooo-2","definition":"render","max_attempts":1}"#;
    submit(&stack, one).await;
    let failed2 = stack.task_exited("ooo-2", 1, 3).await;
    assert_eq!(
        life.task_changed(&failed2).await.unwrap(),
        TaskAction::Ended {
            status: JobStatus::Failed,
            reason: Some("exit code 3".into())
        }
    );
    assert_eq!(
        life.task_changed(&stack.task_change("ooo-2", 1, "RUNNING").await)
            .await
            .unwrap(),
        TaskAction::StoppedStray {
            status: JobStatus::Failed
        }
    );
    let r = stack.record("ooo-2").await;
    assert_eq!((r.status, r.exit_code), (JobStatus::Failed, Some(3)));
    assert_eq!(r.reason.as_deref(), Some("exit code 3"));

    // With attempts left, a stop before RUNNING re-queues; the late RUNNING
    // of the ended launch does not move the job.
    assert!(matches!(
        life.task_changed(&failed).await.unwrap(),
        TaskAction::Requeued { failure: true, .. }
    ));
    life.task_changed(&running).await.unwrap();
    let r = stack.record("ooo-1").await;
    assert_eq!(r.status, JobStatus::Accepted, "{r:?}");
    assert_eq!((r.failures, r.launch), (1, 1));
    // Between attempts the record says when the next one is due: the
    // re-queued message's delay (none here: the tests' lifecycle caps it
    // at 0 s).
    assert_eq!(r.next_try_at, r.updated_at, "{r:?}");
    assert_eq!(r.waiting_since, None);
}

#[tokio::test]
async fn tasks_berth_did_not_start_and_unknown_jobs_are_ignored() {
    let stack = Stack::new(0).await;
    let life = stack.lifecycle();
    let foreign = TaskChange {
        task_arn: "arn:aws:ecs:us-east-1:123456789012:task/berth/abc".into(),
        last_status: "STOPPED".into(),
        started_by: Some("ecs-svc/12345678".into()),
        ..TaskChange::default()
    };
    assert!(matches!(
        life.task_changed(&foreign).await.unwrap(),
        TaskAction::Ignored { why } if why.contains("no job `ecs-svc`")
    ));
    let unnamed = TaskChange {
        started_by: None,
        ..foreign.clone()
    };
    assert!(matches!(
        life.task_changed(&unnamed).await.unwrap(),
        TaskAction::Ignored { why } if why.contains("not started by berth")
    ));
    let elsewhere = TaskChange {
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/other".into(),
        started_by: Some("job-1/1".into()),
        ..foreign
    };
    assert!(matches!(
        life.task_changed(&elsewhere).await.unwrap(),
        TaskAction::Ignored { why } if why.contains("another cluster")
    ));
}

#[tokio::test]
async fn a_spot_interruption_relaunches_the_job_which_then_succeeds() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    submit(
        &stack,
        r#"{"job_id":"spot-1","definition":"render","max_attempts":2}"#,
    )
    .await;
    life.task_changed(&stack.task_change("spot-1", 1, "RUNNING").await)
        .await
        .unwrap();
    let first_task = stack.record("spot-1").await.task_arn.unwrap();

    let reclaimed = stack
        .task_stopped(
            "spot-1",
            1,
            "SpotInterruption",
            "Your Spot Task was interrupted.",
            None,
        )
        .await;
    assert!(matches!(
        life.task_changed(&reclaimed).await.unwrap(),
        TaskAction::Requeued { failure: false, .. }
    ));
    let r = stack.record("spot-1").await;
    assert_eq!(r.status, JobStatus::Accepted);
    assert_eq!((r.interruptions, r.failures), (1, 0));

    // The driver takes the re-queued attempt.
    deliver_all(&stack).await;
    // The interruption event arriving again changes nothing now.
    assert_eq!(
        life.task_changed(&reclaimed).await.unwrap(),
        TaskAction::Stale {
            status: JobStatus::Dispatched
        }
    );
    let r = stack.record("spot-1").await;
    assert_eq!(r.status, JobStatus::Dispatched, "{r:?}");
    assert_eq!(r.launch, 2);
    assert_eq!(stack.tasks_of("spot-1", 2).await.len(), 1);
    assert_ne!(r.task_arn.as_deref(), Some(first_task.as_str()));

    life.task_changed(&stack.task_change("spot-1", 2, "RUNNING").await)
        .await
        .unwrap();
    let done = stack.task_exited("spot-1", 2, 0).await;
    life.task_changed(&done).await.unwrap();

    let r = stack.record("spot-1").await;
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.max_attempts, Some(2), "max_attempts untouched");
    assert_eq!((r.interruptions, r.failures), (1, 0));
    let outcomes: Vec<&str> = r.history.iter().map(|h| h.outcome.as_str()).collect();
    assert_eq!(outcomes, ["INTERRUPTED", "SUCCEEDED"]);
    assert_eq!(r.history[0].id.as_deref(), Some(first_task.as_str()));
    assert!(stack.receive().await.is_empty());
}

#[tokio::test]
async fn a_job_failing_every_time_fails_after_exactly_max_attempts_launches() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    submit(
        &stack,
        r#"{"job_id":"bad-1","definition":"render","max_attempts":3}"#,
    )
    .await;
    for launch in 1..=3 {
        let failed = stack.task_exited("bad-1", launch, 2).await;
        let action = life.task_changed(&failed).await.unwrap();
        if launch < 3 {
            assert!(
                matches!(action, TaskAction::Requeued { failure: true, .. }),
                "{action:?}"
            );
            deliver_all(&stack).await;
        } else {
            assert_eq!(
                action,
                TaskAction::Ended {
                    status: JobStatus::Failed,
                    reason: Some("failed 3 times, the last: exit code 2".into())
                }
            );
        }
    }
    let r = stack.record("bad-1").await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!((r.attempts, r.failures, r.launch), (3, 3, 3));
    assert_eq!(r.exit_code, Some(2));
    for launch in 1..=3 {
        assert_eq!(stack.tasks_of("bad-1", launch).await.len(), 1);
    }
    assert!(stack.tasks_of("bad-1", 4).await.is_empty());
    assert!(stack.receive().await.is_empty(), "nothing more queued");
}

#[tokio::test]
async fn retry_rules_retry_137_and_end_2_at_once_the_first_match_deciding() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    let rules = r#""retry_rules":[{"on_exit_code":"137","action":"retry"},{"on_exit_code":"2","action":"exit"},{"on_exit_code":"*","action":"exit"}]"#;
    for id in ["oom", "bad-arg", "other"] {
        submit(
            &stack,
            &format!(r#"{{"job_id":"{id}","definition":"render","max_attempts":3,{rules}}}"#),
        )
        .await;
        assert_eq!(
            stack.task_env(id, 1, "BERTH_ATTEMPT").await.as_deref(),
            Some("1")
        );
    }
    // 137 is retried: its second attempt sees BERTH_ATTEMPT=2, and after an
    // interruption (which counts nothing) still 2.
    let oom = stack.task_exited("oom", 1, 137).await;
    assert!(matches!(
        life.task_changed(&oom).await.unwrap(),
        TaskAction::Requeued { failure: true, .. }
    ));
    deliver_all(&stack).await;
    assert_eq!(
        stack.task_env("oom", 2, "BERTH_ATTEMPT").await.as_deref(),
        Some("2")
    );
    let spot = stack
        .task_stopped(
            "oom",
            2,
            "SpotInterruption",
            "Your Spot Task was interrupted.",
            None,
        )
        .await;
    assert!(matches!(
        life.task_changed(&spot).await.unwrap(),
        TaskAction::Requeued { failure: false, .. }
    ));
    deliver_all(&stack).await;
    assert_eq!(
        stack.task_env("oom", 3, "BERTH_ATTEMPT").await.as_deref(),
        Some("2")
    );
    let done = stack.task_exited("oom", 3, 0).await;
    life.task_changed(&done).await.unwrap();
    let r = stack.record("oom").await;
    assert_eq!(
        (r.status, r.failures, r.interruptions),
        (JobStatus::Succeeded, 1, 1)
    );
    let first = &r.history[0];
    assert_eq!(
        first.reason.as_deref(),
        Some("attempt failed (1 of 3): exit code 137 (retry rule 1 (on_exit_code 137: retry))")
    );
    // 2 ends the job at its first attempt, and so does 1 by rule 3, with
    // attempts left.
    for (id, code, rule) in [
        ("bad-arg", 2, "retry rule 2 (on_exit_code 2: exit)"),
        ("other", 1, "retry rule 3 (on_exit_code *: exit)"),
    ] {
        let failed = stack.task_exited(id, 1, code).await;
        let why = format!("exit code {code} ({rule})");
        assert_eq!(
            life.task_changed(&failed).await.unwrap(),
            TaskAction::Ended {
                status: JobStatus::Failed,
                reason: Some(why.clone())
            }
        );
        let r = stack.record(id).await;
        assert_eq!((r.status, r.failures, r.launch), (JobStatus::Failed, 1, 1));
        assert_eq!(r.history[0].reason.as_deref(), Some(why.as_str()));
        assert!(stack.tasks_of(id, 2).await.is_empty());
    }
    assert!(stack.receive().await.is_empty(), "nothing more queued");
}

#[tokio::test]
async fn interruptions_beyond_the_cap_fail_the_job() {
    let stack = Stack::new(1).await;
    let cap = stack.settings.max_interruptions;
    let life = stack.lifecycle();
    submit(&stack, r#"{"job_id":"reclaimed","definition":"render"}"#).await;
    for launch in 1..=cap + 1 {
        let stop = stack
            .task_stopped(
                "reclaimed",
                launch,
                "TerminationNotice",
                "Host EC2 (instance i-0abc) terminated.",
                None,
            )
            .await;
        let action = life.task_changed(&stop).await.unwrap();
        if launch <= cap {
            assert!(matches!(action, TaskAction::Requeued { .. }), "{action:?}");
            deliver_all(&stack).await;
        } else {
            assert!(
                matches!(&action, TaskAction::Ended { status: JobStatus::Failed, reason: Some(r) } if r.contains("re-dispatches allowed")),
                "{action:?}"
            );
        }
    }
    let r = stack.record("reclaimed").await;
    assert_eq!((r.interruptions, r.failures), (cap + 1, 0));
}

#[tokio::test]
async fn a_job_past_its_timeout_is_stopped_and_timed_out() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    submit(
        &stack,
        r#"{"job_id":"slow-1","definition":"render","timeout_seconds":1}"#,
    )
    .await;
    submit(&stack, r#"{"job_id":"fast-1","definition":"render"}"#).await;
    life.task_changed(&stack.task_change("slow-1", 1, "RUNNING").await)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let sweep = life.sweep().await.unwrap();
    assert_eq!(sweep.timed_out, ["slow-1"], "{sweep:?}");
    assert!(sweep.errors.is_empty());
    let r = stack.record("slow-1").await;
    assert_eq!(r.status, JobStatus::TimedOut);
    assert_eq!(
        desired_status(&stack, r.task_arn.as_deref().unwrap()).await,
        "STOPPED"
    );
    assert_eq!(stack.record("fast-1").await.status, JobStatus::Dispatched);
    // ECS then reports the stop it was asked for: the job stays TIMED_OUT.
    let stopped = stack
        .task_stopped(
            "slow-1",
            1,
            "UserInitiated",
            r.reason.as_deref().unwrap(),
            Some(143),
        )
        .await;
    life.task_changed(&stopped).await.unwrap();
    assert_eq!(stack.record("slow-1").await.status, JobStatus::TimedOut);
    // A second sweep finds nothing.
    assert!(life.sweep().await.unwrap().timed_out.is_empty());
}

#[tokio::test]
async fn the_sweep_makes_up_for_task_events_that_never_arrived() {
    use std::time::Duration;
    let stack = Stack::new(1).await;
    submit(
        &stack,
        r#"{"job_id":"lost-stop","definition":"render","timeout_seconds":1}"#,
    )
    .await;
    submit(&stack, r#"{"job_id":"lost-start","definition":"render"}"#).await;
    submit(&stack, r#"{"job_id":"heard","definition":"render"}"#).await;
    let life = stack.lifecycle();
    life.task_changed(&stack.task_change("heard", 1, "RUNNING").await)
        .await
        .unwrap();
    // lost-stop's container exits: ECS knows, and no event reaches berth.
    // lost-start's task runs, and its RUNNING event never came either.
    let task = stack.record("lost-stop").await.task_arn.unwrap();
    stack
        .clients()
        .ecs
        .stop_task()
        .cluster(CLUSTER)
        .task(&task)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();

    // Within the grace the events may still come: the sweep waits for them.
    let patient = life.clone().with_event_grace(Duration::from_secs(600));
    let sweep = patient.sweep().await.unwrap();
    assert_eq!(sweep, Default::default());
    assert_eq!(
        stack.record("lost-stop").await.status,
        JobStatus::Dispatched
    );
    assert_eq!(
        stack.record("lost-start").await.status,
        JobStatus::Dispatched
    );

    // Past the grace, and lost-stop past its deadline too: it is given the
    // end its task had, not a timeout.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let life = life.with_event_grace(Duration::ZERO);
    let sweep = life.sweep().await.unwrap();
    assert!(sweep.errors.is_empty(), "{sweep:?}");
    assert!(sweep.timed_out.is_empty(), "{sweep:?}");
    let mut reconciled: Vec<(&str, &TaskAction)> = sweep
        .reconciled
        .iter()
        .map(|(job, action)| (job.as_str(), action))
        .collect();
    reconciled.sort_by_key(|(job, _)| *job);
    assert!(
        matches!(
            reconciled.as_slice(),
            [
                ("lost-start", TaskAction::Running),
                (
                    "lost-stop",
                    TaskAction::Ended {
                        status: JobStatus::Succeeded,
                        ..
                    }
                ),
            ]
        ),
        "{reconciled:?}"
    );
    let ended = stack.record("lost-stop").await;
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert_eq!(ended.exit_code, Some(0));
    assert_eq!(ended.history.len(), 1, "{:?}", ended.history);
    assert_eq!(ended.history[0].id.as_deref(), Some(task.as_str()));
    assert_eq!(stack.record("lost-start").await.status, JobStatus::Running);
    assert_eq!(stack.record("heard").await.status, JobStatus::Running);

    // The event, arriving after all, changes nothing; another sweep finds
    // nothing more to do.
    let late = stack.task_exited("lost-stop", 1, 0).await;
    assert_eq!(
        life.task_changed(&late).await.unwrap(),
        TaskAction::Stale {
            status: JobStatus::Succeeded
        }
    );
    assert_eq!(life.sweep().await.unwrap(), Default::default());
    assert_eq!(stack.record("lost-stop").await.history.len(), 1);
}

#[tokio::test]
async fn a_cancelled_job_stays_cancelled() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    // Running: cancelled, its task stopped.
    submit(&stack, r#"{"job_id":"c-run","definition":"render"}"#).await;
    let task = stack.record("c-run").await.task_arn.unwrap();
    assert_eq!(
        life.cancel("c-run", Some("not needed")).await.unwrap(),
        Cancelled::Cancelled {
            stopped_task: Some(task.clone())
        }
    );
    assert_eq!(desired_status(&stack, &task).await, "STOPPED");
    let stopped = stack
        .task_stopped(
            "c-run",
            1,
            "UserInitiated",
            "berth: cancelled: not needed",
            Some(143),
        )
        .await;
    life.task_changed(&stopped).await.unwrap();
    let r = stack.record("c-run").await;
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(r.reason.as_deref(), Some("berth: cancelled: not needed"));

    // Ended and unknown jobs.
    assert_eq!(
        life.cancel("c-run", None).await.unwrap(),
        Cancelled::AlreadyEnded {
            status: JobStatus::Cancelled
        }
    );
    assert_eq!(
        life.cancel("nobody", None).await.unwrap(),
        Cancelled::NotFound
    );
}

#[tokio::test]
async fn a_job_cancelled_while_waiting_is_not_launched_when_its_message_returns() {
    // A full cluster (one instance holds three render jobs): the GPU job,
    // EC2 only, waits for capacity.
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    for i in 0..3 {
        submit(
            &stack,
            &format!(r#"{{"job_id":"fill-{i}","definition":"render"}}"#),
        )
        .await;
    }
    let before = stack.task_count().await;
    stack
        .send(&[r#"{"job_id":"c-wait","definition":"train"}"#])
        .await;
    let records = stack.receive().await;
    stack.deliver(&stack.driver(), records.clone()).await;
    assert_eq!(
        stack.record("c-wait").await.status,
        JobStatus::WaitingForCapacity
    );
    assert_eq!(
        life.cancel("c-wait", None).await.unwrap(),
        Cancelled::Cancelled { stopped_task: None }
    );
    let failed = stack.deliver(&stack.driver(), records).await;
    assert!(failed.is_empty(), "not retried: {failed:?}");
    assert_eq!(stack.record("c-wait").await.status, JobStatus::Cancelled);
    assert_eq!(stack.task_count().await, before);
}

#[tokio::test]
async fn a_spot_interruption_warning_drains_the_instance() {
    let stack = Stack::new(2).await;
    let life = stack.lifecycle();
    let ecs = &stack.clients().ecs;
    let instances = stack.container_instances().await;
    let target = &instances[1];
    let instance = target.ec2_instance_id().unwrap();

    let drained = life.drain(instance).await.unwrap();
    assert_eq!(drained.as_deref(), target.container_instance_arn());
    let after = ecs
        .describe_container_instances()
        .cluster(CLUSTER)
        .container_instances(drained.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(after.container_instances()[0].status(), Some("DRAINING"));
    assert_eq!(life.drain("i-0notinthecluster").await.unwrap(), None);
}

/// A sample from events/, made about this stack's job `job_id` launch
/// `launch` (its real task ARN, cluster and startedBy).
async fn sample(stack: &Stack, file: &str, job_id: &str, launch: u32) -> serde_json::Value {
    let path = berth_tests::workspace_root().join("events").join(file);
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let real = stack.task_change(job_id, launch, "RUNNING").await;
    let detail = &mut event["detail"];
    detail["clusterArn"] = real.cluster_arn.into();
    detail["taskArn"] = real.task_arn.into();
    detail["startedBy"] = format!("{job_id}/{launch}").into();
    event
}

#[tokio::test]
async fn the_sample_events_take_a_job_through_the_handler() {
    let stack = Stack::new(1).await;
    let life = stack.lifecycle();
    let handle = |event: serde_json::Value| {
        let life = life.clone();
        async move {
            berth_ecs_runner::events::handle(&life, serde_json::from_value(event).unwrap())
                .await
                .unwrap()
        }
    };
    submit(&stack, r#"{"job_id":"sample-1","definition":"render"}"#).await;

    let answer = handle(sample(&stack, "ecs-runner-task-running.json", "sample-1", 1).await).await;
    assert_eq!(answer["action"], "running", "{answer}");
    let answer =
        handle(sample(&stack, "ecs-runner-task-stopped-spot.json", "sample-1", 1).await).await;
    assert_eq!(answer["action"], "requeued", "{answer}");
    deliver_all(&stack).await;
    let answer = handle(
        sample(
            &stack,
            "ecs-runner-task-stopped-succeeded.json",
            "sample-1",
            2,
        )
        .await,
    )
    .await;
    assert_eq!(answer["status"], "SUCCEEDED", "{answer}");
    let r = stack.record("sample-1").await;
    assert_eq!(
        (r.status, r.attempts, r.interruptions),
        (JobStatus::Succeeded, 2, 1)
    );

    let sweep = handle(
        serde_json::from_str(
            &std::fs::read_to_string(
                berth_tests::workspace_root().join("events/ecs-runner-schedule.json"),
            )
            .unwrap(),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(sweep["timed_out"], serde_json::json!([]), "{sweep}");

    // An event for a cluster berth does not run is ignored, not an error.
    let mut foreign = sample(&stack, "ecs-runner-task-stopped-failed.json", "sample-1", 2).await;
    foreign["detail"]["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/other".into();
    assert_eq!(handle(foreign).await["action"], "ignored");
    // A detail berth cannot read is dropped with the reason, not retried.
    let mut garbled = sample(&stack, "ecs-runner-task-running.json", "sample-1", 2).await;
    garbled["detail"]["containers"] = "not a list".into();
    let answer = handle(garbled).await;
    assert!(
        answer["ignored"].as_str().unwrap().contains("unreadable"),
        "{answer}"
    );
}

/// A task that stops before the driver has recorded its launch (a benign
/// race) is no failure: the event is answered, not retried into the
/// lifecycle dead-letter queue (whose alarm pages a person), and once the
/// launch is recorded the sweep gives the job its task's end.
#[tokio::test]
async fn a_task_that_stops_before_its_launch_is_recorded_is_left_to_the_sweep() {
    use berth_aws::store::Change;
    use std::time::Duration;
    let stack = Stack::new(1).await;
    // An EC2 task definition in bridge mode: the test starts its task as
    // the driver would, without a network configuration.
    stack
        .register_task_definition("early", false, &["main"])
        .await;
    // The driver has claimed launch 1 and started the task; its record of
    // the launch is not written yet.
    let body = r#"{"job_id":"early","definition":"render"}"#;
    let request = berth_core::job::parse(body, "m-early").unwrap();
    let definition = berth_core::JobDefinition {
        task_definition: "early".into(),
        ..berth_tests::stack::render()
    };
    let job = berth_core::resolve(&request, Some(&definition)).unwrap();
    let store = stack.store();
    store
        .accept(&job, "m-early", berth_aws::store::now_ms())
        .await
        .unwrap();
    let task = stack
        .clients()
        .ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition(&job.task_definition)
        .started_by(berth_core::launch::started_by("early", 1))
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_owned();
    stack
        .clients()
        .ecs
        .stop_task()
        .cluster(CLUSTER)
        .task(&task)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    let life = stack.lifecycle().with_event_grace(Duration::ZERO);
    let stopped = stack.task_exited("early", 1, 0).await;
    assert!(
        matches!(
            life.task_changed(&stopped).await,
            Ok(TaskAction::LeftToSweep { .. })
        ),
        "answered, not failed"
    );
    assert_eq!(stack.record("early").await.status, JobStatus::Accepted);

    // The driver records the launch; the sweep settles the end.
    let change = Change {
        route: Some(Route::Ec2),
        task_arn: Some(task.clone()),
        add_attempt: true,
        expect_launch: Some(1),
        ..Change::default()
    };
    store
        .transition(
            "early",
            JobStatus::Dispatched,
            change,
            berth_aws::store::now_ms(),
        )
        .await
        .unwrap();
    let sweep = life.sweep().await.unwrap();
    assert!(
        matches!(
            sweep.reconciled.as_slice(),
            [(id, TaskAction::Ended { status: JobStatus::Succeeded, .. })] if id == "early"
        ),
        "{sweep:?}"
    );
    assert_eq!(stack.record("early").await.status, JobStatus::Succeeded);
}

/// A STOPPED event that comes again after its attempt was settled (EventBridge
/// delivers at least once) finds the job back in the queue's hands; the
/// message it sends for the next attempt keeps the retry delay, and does
/// not bring the attempt forward.
#[tokio::test]
async fn a_repeated_stop_event_keeps_the_retry_delay() {
    let stack = Stack::new(1).await;
    let life =
        berth_ecs_runner::lifecycle::Lifecycle::for_deployment(&stack.settings, stack.clients())
            .unwrap()
            .with_retry_delay_cap(600);
    submit(
        &stack,
        r#"{"job_id":"again","definition":"render","max_attempts":3}"#,
    )
    .await;
    let failed = stack.task_exited("again", 1, 3).await;
    let first = life.task_changed(&failed).await.unwrap();
    let TaskAction::Requeued {
        failure: true,
        delay_seconds: delay,
        ..
    } = first
    else {
        panic!("{first:?}");
    };
    assert!(delay > 2, "a retry delay to keep: {delay} s");
    assert!(stack.receive().await.is_empty(), "not due yet");

    let again = life.task_changed(&failed).await.unwrap();
    let TaskAction::Requeued {
        failure: false,
        delay_seconds: left,
        ..
    } = again
    else {
        panic!("{again:?}");
    };
    assert!(left > 0 && left <= delay, "{left} s of {delay} s");
    assert!(
        stack.receive().await.is_empty(),
        "the repeated event's message is not due before the retry delay ends"
    );
    assert_eq!(stack.record("again").await.status, JobStatus::Accepted);
}

/// A success counts in its definition's runs of the day, kept a week: the
/// slot of a day a week old is taken over, not added to, and a definition
/// deleted meanwhile is not brought back.
#[tokio::test]
async fn a_definitions_runs_are_counted_by_the_day_for_a_week() {
    let stack = Stack::new(0).await;
    let definitions = stack.definitions();
    let day = |d: i64| d * 86_400_000 + 3_600_000;
    let read = |at: i64| {
        let stack = &stack;
        async move {
            let item = stack
                .clients()
                .dynamodb
                .get_item()
                .table_name(&stack.settings.definitions_table)
                .key(
                    "name",
                    aws_sdk_dynamodb::types::AttributeValue::S("render".into()),
                )
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .expect("render is registered");
            match berth_aws::definitions::read_at(&item, &Default::default(), at) {
                berth_aws::definitions::Lookup::Found(d) => d.runs,
                other => panic!("{other:?}"),
            }
        }
    };
    let runs = |count, seconds| berth_core::routing::Runs { count, seconds };
    for seconds in [10, 20] {
        definitions
            .record_run("render", seconds, day(20_000))
            .await
            .unwrap();
    }
    definitions
        .record_run("render", 60, day(20_001))
        .await
        .unwrap();
    assert_eq!(read(day(20_001)).await, runs(3, 90));
    // A week after the first day, its slot is that day's again: 20,000's
    // runs are not recent any more, 20,001's still are.
    definitions
        .record_run("render", 4, day(20_007))
        .await
        .unwrap();
    assert_eq!(read(day(20_007)).await, runs(2, 64));
    // Nothing in the last week: every run so far.
    assert_eq!(read(day(20_020)).await, runs(4, 94));

    stack
        .clients()
        .dynamodb
        .delete_item()
        .table_name(&stack.settings.definitions_table)
        .key(
            "name",
            aws_sdk_dynamodb::types::AttributeValue::S("render".into()),
        )
        .send()
        .await
        .unwrap();
    definitions
        .record_run("render", 5, day(20_020))
        .await
        .unwrap();
    assert!(
        definitions.get_many(&["render"]).await.unwrap().is_empty(),
        "not brought back"
    );
}
