//! Crash safety: the driver stopped between recording a job and launching
//! it, or between launching it and recording the launch. The message comes
//! back (Lambda failed, or its time ran out); the next delivery launches the
//! job exactly once and records it right.

use std::time::Duration;

use berth_core::JobStatus;
use berth_driver::{Driver, Outcome, Tuning};
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
