//! Jobs that must not be stranded: a recorded job whose definition changed
//! or went away runs as recorded; no job's own message is deleted while the
//! job is neither launched nor ended.

use aws_sdk_dynamodb::types::AttributeValue;
use berth_core::{JobStatus, Route};
use berth_driver::{Driver, Outcome, Tuning};
use berth_tests::stack::{CLUSTER, Stack, train};

/// Deletes the job definition `name` from the stack's definitions table, as
/// an operator would.
async fn delete_definition(stack: &Stack, name: &str) {
    stack
        .clients()
        .dynamodb
        .delete_item()
        .table_name(&stack.settings.definitions_table)
        .key("name", AttributeValue::S(name.into()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_waiting_job_whose_definition_is_deleted_runs_as_recorded() {
    // No instance: `train` (a GPU, EC2 only) waits for capacity.
    let stack = Stack::new(0).await;
    let driver = stack.driver();
    let ids = stack
        .send(&[r#"{"job_id":"orphan","definition":"train"}"#])
        .await;
    let first = stack.receive().await;
    let handles: Vec<String> = first
        .iter()
        .filter_map(|m| m.receipt_handle.clone())
        .collect();
    assert_eq!(stack.deliver(&driver, first).await, ids);
    assert_eq!(
        stack.record("orphan").await.status,
        JobStatus::WaitingForCapacity
    );

    delete_definition(&stack, "train").await;
    let again = stack.redeliver(&handles).await;
    assert_eq!(again.len(), 1);
    let handles: Vec<String> = again
        .iter()
        .filter_map(|m| m.receipt_handle.clone())
        .collect();
    assert_eq!(
        stack.deliver(&driver, again).await,
        ids,
        "still waiting: the message stays"
    );
    let r = stack.record("orphan").await;
    assert_eq!(
        (r.status, r.waits, r.launch),
        (JobStatus::WaitingForCapacity, 2, 2),
        "{r:?}"
    );

    // Room appears, with a GPU: the job runs as it was recorded.
    stack
        .aws
        .add_container_instance_of(CLUSTER, "g4dn.xlarge")
        .await;
    let last = stack.redeliver(&handles).await;
    assert!(stack.deliver(&driver, last).await.is_empty());
    let r = stack.record("orphan").await;
    assert_eq!(
        (r.status, r.route, r.attempts),
        (JobStatus::Dispatched, Some(Route::Ec2), 1),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_waiting_job_whose_definition_is_edited_runs_as_recorded() {
    let stack = Stack::new(0).await;
    let driver = stack.driver();
    let ids = stack
        .send(&[r#"{"job_id":"edited","definition":"train"}"#])
        .await;
    let first = stack.receive().await;
    let handles: Vec<String> = first
        .iter()
        .filter_map(|m| m.receipt_handle.clone())
        .collect();
    assert_eq!(stack.deliver(&driver, first).await, ids);

    // Edited so that its jobs would now run on Fargate (no GPU): this job
    // was recorded with a GPU, EC2 only, and still waits for EC2.
    let edited = berth_core::JobDefinition {
        gpu: 0,
        fargate: true,
        ..train()
    };
    stack.definitions().put(&edited).await.unwrap();
    let again = stack.redeliver(&handles).await;
    assert_eq!(stack.deliver(&driver, again).await, ids);
    let r = stack.record("edited").await;
    assert_eq!(
        (r.status, r.waits),
        (JobStatus::WaitingForCapacity, 2),
        "{r:?}"
    );
    assert_eq!(r.job.map(|j| j.gpu), Some(1), "as recorded");
}

/// A driver stopped after recording the job and before launching it; the
/// definition is deleted before the message comes back. The job still runs.
#[tokio::test]
async fn an_accepted_job_left_by_a_stopped_driver_runs_after_its_definition_goes() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"left","definition":"render"}"#])
        .await;
    let records = stack.receive().await;
    let no_lease = Tuning {
        claim_lease: std::time::Duration::ZERO,
        ..Tuning::default()
    };
    let crashed = Driver::new(
        &stack.settings,
        &stack.aws.clients_stopping_before("RunTask"),
        no_lease.clone(),
    );
    assert!(
        crashed.handle_batch(records.clone()).await[0]
            .outcome
            .redeliver()
    );
    assert_eq!(stack.record("left").await.status, JobStatus::Accepted);

    delete_definition(&stack, "render").await;
    let driver = Driver::new(&stack.settings, stack.clients(), no_lease);
    let again = driver.handle_batch(records).await;
    assert!(
        matches!(again[0].outcome, Outcome::Dispatched { .. }),
        "{again:?}"
    );
    assert_eq!(stack.record("left").await.status, JobStatus::Dispatched);
    assert_eq!(stack.task_count().await, 1);
}

/// Jobs whose message is gone while they wait to launch (a driver stopped
/// after recording one, then its message deleted; a waiting job's message
/// deleted): once quiet longer than any backoff allows, the sweep puts a
/// message back, and the job runs.
#[tokio::test]
async fn the_sweep_puts_back_the_message_of_a_job_left_waiting_to_launch() {
    let stack = Stack::new(0).await;
    stack
        .send(&[
            r#"{"job_id":"lost-accepted","definition":"render"}"#,
            r#"{"job_id":"lost-waiting","definition":"train"}"#,
        ])
        .await;
    let records = stack.receive().await;
    let (accepted, waiting): (Vec<_>, Vec<_>) = records.into_iter().partition(|m| {
        m.body
            .as_deref()
            .is_some_and(|b| b.contains("lost-accepted"))
    });
    let crashed = Driver::new(
        &stack.settings,
        &stack.aws.clients_stopping_before("RunTask"),
        Tuning::default(),
    );
    crashed.handle_batch(accepted.clone()).await;
    stack.driver().handle_batch(waiting.clone()).await;
    assert_eq!(
        stack.record("lost-accepted").await.status,
        JobStatus::Accepted
    );
    assert_eq!(
        stack.record("lost-waiting").await.status,
        JobStatus::WaitingForCapacity
    );
    // Both messages are lost.
    stack.delete(&accepted).await;
    stack.delete(&waiting).await;

    // Not yet: they have not been quiet for long.
    let life = stack.lifecycle();
    assert!(life.sweep().await.unwrap().requeued.is_empty());
    let life = life.with_stranded_after(std::time::Duration::ZERO);
    // Nor while other messages wait on the queue: the driver is behind, and
    // the quiet jobs' messages may be among them. (Before, every sweep put
    // back another message for each, lengthening the backlog: the 2,000-job
    // soak's queue grew to 1,226 waiting messages for 330 unfinished jobs.)
    stack
        .send(&[r#"{"job_id":"backlog","definition":"render"}"#])
        .await;
    let sweep = life.sweep().await.unwrap();
    assert!(sweep.requeued.is_empty(), "{sweep:?}");
    assert_eq!(sweep.requeue_deferred, Some(1));
    let backlog = stack.receive().await;
    assert_eq!(backlog.len(), 1, "no message was added");
    stack.delete(&backlog).await;
    let mut requeued = life.sweep().await.unwrap().requeued;
    requeued.sort();
    assert_eq!(requeued, ["lost-accepted", "lost-waiting"]);

    // Room for both: `lost-waiting` needs a GPU.
    stack
        .aws
        .add_container_instance_of(CLUSTER, "g4dn.xlarge")
        .await;
    let again = stack.receive().await;
    assert_eq!(again.len(), 2);
    assert!(
        stack
            .deliver(
                &Driver::new(
                    &stack.settings,
                    stack.clients(),
                    Tuning {
                        claim_lease: std::time::Duration::ZERO,
                        ..Tuning::default()
                    }
                ),
                again
            )
            .await
            .is_empty()
    );
    for id in ["lost-accepted", "lost-waiting"] {
        assert_eq!(stack.record(id).await.status, JobStatus::Dispatched, "{id}");
    }
}

/// A driver held back (other functions took the account's concurrency)
/// lets SQS count receives it never handles: a job's message reaches the
/// dead-letter queue unseen while its record says WAITING, and the same
/// throttling keeps the queue from emptying. The sweep still puts its
/// message back once the job has been quiet for the bound, backlog or not;
/// and a wait past the 6 h cap that no delivery ends is ended by the sweep.
#[tokio::test]
async fn no_job_waits_forever_behind_a_backlog_or_without_a_delivery() {
    let stack = Stack::new(0).await;
    stack
        .send(&[r#"{"job_id":"behind","definition":"train"}"#])
        .await;
    let waiting = stack.receive().await;
    stack.driver().handle_batch(waiting.clone()).await;
    assert_eq!(
        stack.record("behind").await.status,
        JobStatus::WaitingForCapacity
    );
    // Its message went to the dead-letter queue; others keep the queue busy.
    stack.delete(&waiting).await;
    stack
        .send(&[r#"{"job_id":"busy","definition":"render"}"#])
        .await;
    let life = stack
        .lifecycle()
        .with_stranded_after(std::time::Duration::ZERO);
    let sweep = life.sweep().await.unwrap();
    assert_eq!((sweep.requeued.len(), sweep.requeue_deferred), (0, Some(1)));
    let life = life.with_stranded_whatever_backlog(std::time::Duration::ZERO);
    let sweep = life.sweep().await.unwrap();
    assert_eq!(sweep.requeued, ["behind"], "{sweep:?}");
    let queued = stack.receive().await;
    assert!(
        queued
            .iter()
            .any(|m| m.body.as_deref().is_some_and(|b| b.contains("behind"))),
        "its message is back"
    );
    stack.delete(&queued).await;

    // Six hours and the grace on, no delivery has come: the sweep ends it.
    let long_ago = berth_aws::store::now_ms()
        - i64::from(berth_core::launch::MAX_CAPACITY_WAIT_SECONDS) * 1000
        - i64::try_from(berth_ecs_runner::lifecycle::WAIT_CAP_GRACE.as_millis()).unwrap()
        - 1000;
    stack
        .clients()
        .dynamodb
        .update_item()
        .table_name(&stack.settings.jobs_table)
        .key("job_id", AttributeValue::S("behind".into()))
        .update_expression("SET waiting_since = :t, created_at = :t")
        .expression_attribute_values(":t", AttributeValue::N(long_ago.to_string()))
        .send()
        .await
        .unwrap();
    let sweep = stack.lifecycle().sweep().await.unwrap();
    assert_eq!(sweep.no_capacity, ["behind"], "{sweep:?}");
    let r = stack.record("behind").await;
    assert_eq!(r.status, JobStatus::Failed);
    assert!(
        r.reason
            .as_deref()
            .unwrap_or_default()
            .contains("no capacity within 21600 s"),
        "{r:?}"
    );
}
