//! Crash safety: the driver stopped between recording a job and launching
//! it, or between launching it and recording the launch. The message comes
//! back (Lambda failed, or its time ran out); the next delivery launches the
//! job exactly once and records it right.
//!
//! And lost answers: a conditional write whose answer is lost after it was
//! made is retried by the SDK, and its condition then refuses it. The
//! caller must take that as its own write, not as someone else's.

use std::time::Duration;

use berth_aws::queue::RELAUNCH_ATTRIBUTE;
use berth_core::JobStatus;
use berth_driver::{Driver, Outcome, Tuning};
use berth_ecs_runner::lifecycle::{Lifecycle, TaskAction};
use berth_tests::stack::Stack;

/// The driver of `stack` that stops just before `operation`; the claim it
/// leaves expires at once, as a crashed delivery's would after the lease.
fn stopping_before(stack: &Stack, operation: &'static str) -> Driver {
    let clients = stack.aws.clients_stopping_before(operation);
    Driver::new(&stack.settings, &clients, no_lease())
}

fn no_lease() -> Tuning {
    Tuning {
        claim_lease: Duration::ZERO,
        ..Tuning::default()
    }
}

#[tokio::test]
async fn stopped_after_recording_and_before_launching() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"crash-before-launch","definition":"render"}"#])
        .await;
    let records = stack.receive().await;
    let first = stopping_before(&stack, "RunTask")
        .handle_batch(records.clone())
        .await;
    assert!(first[0].outcome.redeliver(), "{first:?}");
    let r = stack.record("crash-before-launch").await;
    assert_eq!((r.status, r.attempts), (JobStatus::Accepted, 0), "{r:?}");
    assert_eq!(stack.task_count().await, 0);

    // The message again, to a driver that runs to the end.
    let driver = Driver::new(&stack.settings, stack.clients(), no_lease());
    let again = driver.handle_batch(records.clone()).await;
    assert!(
        matches!(again[0].outcome, Outcome::Dispatched { .. }),
        "{again:?}"
    );
    assert_eq!(stack.task_count().await, 1, "launched once");
    let r = stack.record("crash-before-launch").await;
    assert_eq!((r.status, r.attempts), (JobStatus::Dispatched, 1), "{r:?}");
    let tasks = stack.tasks_of("crash-before-launch", r.launch).await;
    assert_eq!(r.task_arn.as_deref(), tasks[0].task_arn());
    // And once more: nothing new.
    let third = driver.handle_batch(records).await;
    assert!(
        matches!(third[0].outcome, Outcome::Duplicate { .. }),
        "{third:?}"
    );
    assert_eq!(stack.task_count().await, 1);
}

#[tokio::test]
async fn stopped_after_launching_and_before_recording_the_launch() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"crash-after-launch","definition":"render"}"#])
        .await;
    let records = stack.receive().await;
    let first = stopping_before(&stack, "UpdateItem")
        .handle_batch(records.clone())
        .await;
    assert!(first[0].outcome.redeliver(), "{first:?}");
    // The task runs; the record does not know it.
    assert_eq!(stack.task_count().await, 1);
    let r = stack.record("crash-after-launch").await;
    assert_eq!(
        (r.status, r.task_arn.as_deref()),
        (JobStatus::Accepted, None)
    );
    let launched = stack.tasks_of("crash-after-launch", r.launch).await;
    assert_eq!(launched.len(), 1);

    let driver = Driver::new(&stack.settings, stack.clients(), no_lease());
    let again = driver.handle_batch(records).await;
    assert!(
        matches!(again[0].outcome, Outcome::Dispatched { .. }),
        "{again:?}"
    );
    assert_eq!(
        stack.task_count().await,
        1,
        "the task found, not launched again"
    );
    let r = stack.record("crash-after-launch").await;
    assert_eq!(
        (r.status, r.attempts, r.task_arn.as_deref()),
        (JobStatus::Dispatched, 1, launched[0].task_arn())
    );
}

/// Sends a render job `job_id` and hands it to a driver whose first
/// `operation` call is made and its answer lost; the job must be dispatched
/// at its first launch all the same.
async fn dispatched_losing_one(stack: &Stack, job_id: &str, operation: &'static str) {
    stack
        .send(&[&format!(r#"{{"job_id":"{job_id}","definition":"render"}}"#)])
        .await;
    let records = stack.receive().await;
    let clients = stack.aws.clients_losing_answers(operation, 1);
    let driver = Driver::new(&stack.settings, &clients, Tuning::default());
    let handled = driver.handle_batch(records).await;
    assert!(
        matches!(handled[0].outcome, Outcome::Dispatched { launch: 1, .. }),
        "{handled:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_to_recording_a_new_job_still_launches_it_at_once() {
    let stack = Stack::new(1).await;
    dispatched_losing_one(&stack, "lost-put", "PutItem").await;
    assert_eq!(stack.task_count().await, 1);
    let r = stack.record("lost-put").await;
    assert_eq!(
        (r.status, r.attempts, r.launch),
        (JobStatus::Dispatched, 1, 1)
    );
}

#[tokio::test]
async fn a_lost_answer_to_recording_the_launch_is_still_a_dispatch() {
    let stack = Stack::new(1).await;
    dispatched_losing_one(&stack, "lost-update", "UpdateItem").await;
    let r = stack.record("lost-update").await;
    assert_eq!(
        (r.status, r.attempts),
        (JobStatus::Dispatched, 1),
        "counted once"
    );
    let tasks = stack.tasks_of("lost-update", 1).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(r.task_arn.as_deref(), tasks[0].task_arn());
}

#[tokio::test]
async fn a_lost_answer_to_putting_a_job_back_still_queues_its_next_attempt() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"lost-requeue","definition":"render","max_attempts":2}"#])
        .await;
    let records = stack.receive().await;
    let handled = stack.deliver(&stack.driver(), records).await;
    assert!(handled.is_empty(), "{handled:?}");

    // The attempt fails; ecs-runner's write of ACCEPTED is made and its
    // answer lost.
    let clients = stack.aws.clients_losing_answers("UpdateItem", 1);
    let life = Lifecycle::for_deployment(&stack.settings, &clients)
        .unwrap()
        .with_retry_delay_cap(0);
    let failed = stack.task_exited("lost-requeue", 1, 3).await;
    let action = life.task_changed(&failed).await.unwrap();
    assert!(
        matches!(action, TaskAction::Requeued { failure: true, .. }),
        "{action:?}"
    );
    let r = stack.record("lost-requeue").await;
    assert_eq!(
        (r.status, r.failures, r.history.len()),
        (JobStatus::Accepted, 1, 1)
    );
    let queued = stack.receive().await;
    assert_eq!(queued.len(), 1, "the next attempt is on the queue");
    assert_eq!(
        queued[0].message_attributes[RELAUNCH_ATTRIBUTE]
            .string_value
            .as_deref(),
        Some("1")
    );
}

/// A driver stopped after RunTask and before recording the launch; the task
/// then runs to its end before any delivery takes the launch over, and its
/// STOPPED event comes while the launch is unrecorded (ecs-runner leaves
/// it to the sweep). The take-over, once the lease is over, finds the stopped task (not
/// only running ones), records it, and gives the job its end: no second
/// run under a new launch.
#[tokio::test]
async fn a_take_over_finds_a_task_that_already_ended_and_gives_the_job_its_end() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"ended-first","definition":"render"}"#])
        .await;
    let records = stack.receive().await;
    let lease = Duration::from_secs(2);
    let crashed = Driver::new(
        &stack.settings,
        &stack.aws.clients_stopping_before("UpdateItem"),
        Tuning {
            claim_lease: lease,
            ..Tuning::default()
        },
    );
    assert!(
        crashed.handle_batch(records.clone()).await[0]
            .outcome
            .redeliver()
    );
    let task = stack.tasks_of("ended-first", 1).await[0]
        .task_arn
        .clone()
        .unwrap();
    // The container exits 0; its event is refused while the launch is
    // unrecorded.
    stack
        .clients()
        .ecs
        .stop_task()
        .cluster(berth_tests::stack::CLUSTER)
        .task(&task)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();
    let exited = stack.task_exited("ended-first", 1, 0).await;
    assert!(matches!(
        stack.lifecycle().task_changed(&exited).await,
        Ok(berth_ecs_runner::lifecycle::TaskAction::LeftToSweep { .. })
    ));

    // Another delivery of the message, once the lease is over.
    tokio::time::sleep(lease).await;
    let driver = Driver::new(
        &stack.settings,
        stack.clients(),
        Tuning {
            claim_lease: lease,
            ..Tuning::default()
        },
    );
    let again = driver.handle_batch(records).await;
    assert!(
        matches!(again[0].outcome, Outcome::Dispatched { launch: 1, .. }),
        "{again:?}"
    );
    assert_eq!(stack.task_count().await, 1, "not run again");
    let r = stack.record("ended-first").await;
    assert_eq!(
        (r.status, r.attempts, r.exit_code, r.task_arn.as_deref()),
        (JobStatus::Succeeded, 1, Some(0), Some(task.as_str())),
        "{r:?}"
    );
    assert_eq!(r.history.len(), 1, "{r:?}");
}
