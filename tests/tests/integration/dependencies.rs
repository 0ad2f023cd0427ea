//! Jobs that wait for others, against the local AWS: a DAG run in order,
//! failures cascading down it with their reasons, cancel of a `PENDING`
//! job, a dependency not yet recorded, and the sweep moving on a job whose
//! dependency ended with no one following.

use std::time::Duration;

use berth_aws::dependencies::Checked;
use berth_core::JobStatus;
use berth_driver::Outcome;
use berth_tests::stack::Stack;

/// Sends `bodies` and hands what the queue delivers to the driver; returns
/// each job's outcome.
async fn submit(stack: &Stack, bodies: &[&str]) -> Vec<(String, Outcome)> {
    stack.send(bodies).await;
    deliver(stack).await
}

async fn deliver(stack: &Stack) -> Vec<(String, Outcome)> {
    stack.drive().await
}

async fn status(stack: &Stack, id: &str) -> (JobStatus, String) {
    let r = stack.record(id).await;
    (r.status, r.reason.unwrap_or_default())
}

/// Ends the running task of `id`'s `launch` with `code`, through ecs-runner.
async fn exit(stack: &Stack, id: &str, launch: u32, code: i32) {
    let stopped = stack.task_exited(id, launch, code).await;
    stack.lifecycle().task_changed(&stopped).await.unwrap();
}

#[tokio::test]
async fn a_four_level_dag_runs_in_order_and_a_failure_cascades_with_reasons() {
    let stack = Stack::new(2).await;
    let once = r#""max_attempts":1"#;
    submit(
        &stack,
        &[
            &format!(r#"{{"job_id":"a","definition":"render",{once}}}"#),
            &format!(r#"{{"job_id":"b","definition":"render",{once}}}"#),
        ],
    )
    .await;
    let outcomes = submit(
        &stack,
        &[&format!(
            r#"{{"job_id":"c","definition":"render",{once},"depends_on":["a",{{"job_id":"b","condition":"ended"}}]}}"#
        )],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![(
            "c".to_owned(),
            Outcome::Pending {
                waiting: vec!["a".into(), "b".into()]
            }
        )]
    );
    submit(
        &stack,
        &[
            r#"{"job_id":"d","definition":"render","depends_on":["c"]}"#,
            r#"{"job_id":"e","definition":"render","depends_on":[{"job_id":"c","condition":"failed"}]}"#,
        ],
    )
    .await;
    submit(
        &stack,
        &[r#"{"job_id":"f","definition":"render","depends_on":["d"]}"#],
    )
    .await;
    assert_eq!(
        status(&stack, "c").await,
        (JobStatus::Pending, "waiting for a, b".into())
    );
    for id in ["d", "e", "f"] {
        assert_eq!(stack.record(id).await.status, JobStatus::Pending, "{id}");
        assert!(stack.tasks_of(id, 1).await.is_empty(), "{id} launched");
    }

    // a succeeds: c waits on b alone.
    exit(&stack, "a", 1, 0).await;
    assert_eq!(
        status(&stack, "c").await,
        (JobStatus::Pending, "waiting for b".into())
    );
    assert!(stack.receive().await.is_empty(), "nothing released yet");

    // b fails: c's condition on it is `ended`, so c is released, and runs.
    exit(&stack, "b", 1, 2).await;
    assert_eq!(stack.record("b").await.status, JobStatus::Failed);
    assert_eq!(stack.record("c").await.status, JobStatus::Accepted);
    let released = deliver(&stack).await;
    assert!(
        matches!(released.as_slice(), [(id, Outcome::Dispatched { launch: 1, .. })] if id == "c"),
        "{released:?}"
    );
    assert_eq!(stack.tasks_of("c", 1).await.len(), 1);

    // c fails: d can never run, nor f after it; e waited for that.
    exit(&stack, "c", 1, 3).await;
    assert_eq!(
        status(&stack, "d").await,
        (JobStatus::Failed, "dependency c ended FAILED".into())
    );
    assert_eq!(
        status(&stack, "f").await,
        (JobStatus::Failed, "dependency d ended FAILED".into())
    );
    assert_eq!(stack.record("e").await.status, JobStatus::Accepted);
    let released = deliver(&stack).await;
    assert!(
        matches!(released.as_slice(), [(id, Outcome::Dispatched { .. })] if id == "e"),
        "{released:?}"
    );
    for id in ["d", "f"] {
        assert!(stack.tasks_of(id, 1).await.is_empty(), "{id} launched");
    }
    // Nothing launched twice, nothing more queued.
    for id in ["a", "b", "c", "e"] {
        assert_eq!(stack.tasks_of(id, 1).await.len(), 1, "{id}");
        assert!(stack.tasks_of(id, 2).await.is_empty(), "{id}");
    }
    assert!(stack.receive().await.is_empty());
}

#[tokio::test]
async fn a_pending_job_is_cancelled_at_once_and_its_dependents_follow() {
    let stack = Stack::new(1).await;
    submit(&stack, &[r#"{"job_id":"up","definition":"render"}"#]).await;
    submit(
        &stack,
        &[r#"{"job_id":"p","definition":"render","depends_on":["up"]}"#],
    )
    .await;
    submit(
        &stack,
        &[
            r#"{"job_id":"q","definition":"render","depends_on":["p"]}"#,
            r#"{"job_id":"r","definition":"render","depends_on":[{"job_id":"p","condition":"ended"}]}"#,
        ],
    )
    .await;
    let queue = berth_aws::JobQueue::new(stack.clients().sqs.clone(), &stack.queue_url);
    let cancelled = berth_aws::operations::cancel(
        &stack.store(),
        &stack.cluster(),
        Some(&queue),
        "p",
        Some("not needed"),
    )
    .await
    .unwrap();
    assert_eq!(
        cancelled,
        berth_aws::operations::Cancelled::Cancelled { stopped_task: None }
    );
    // At once: `up`, which p waited for, is still running.
    assert_eq!(stack.record("up").await.status, JobStatus::Dispatched);
    assert_eq!(
        status(&stack, "p").await,
        (JobStatus::Cancelled, "berth: cancelled: not needed".into())
    );
    assert_eq!(
        status(&stack, "q").await,
        (JobStatus::Failed, "dependency p ended CANCELLED".into())
    );
    assert_eq!(stack.record("r").await.status, JobStatus::Accepted);
    let released = deliver(&stack).await;
    assert!(
        matches!(released.as_slice(), [(id, Outcome::Dispatched { .. })] if id == "r"),
        "{released:?}"
    );
    // `up` ending later moves nothing: p has ended.
    exit(&stack, "up", 1, 0).await;
    assert_eq!(stack.record("p").await.status, JobStatus::Cancelled);
    assert!(stack.receive().await.is_empty());
}

#[tokio::test]
async fn a_dependency_not_yet_recorded_brings_the_message_back_and_a_redelivery_ties_nothing_twice()
{
    let stack = Stack::new(1).await;
    let outcomes = submit(
        &stack,
        &[r#"{"job_id":"early","definition":"render","depends_on":["later"]}"#],
    )
    .await;
    assert!(
        matches!(&outcomes[0].1, Outcome::Retry { reason } if reason == "its dependencies later are not recorded yet"),
        "{outcomes:?}"
    );
    assert!(stack.store().get("early").await.unwrap().is_none());
    // `later` arrives, then `early` again (twice, as a redelivery would).
    submit(&stack, &[r#"{"job_id":"later","definition":"render"}"#]).await;
    let body = r#"{"job_id":"early","definition":"render","depends_on":["later"]}"#;
    let first = submit(&stack, &[body]).await;
    assert!(matches!(&first[0].1, Outcome::Pending { .. }), "{first:?}");
    let again = submit(&stack, &[body]).await;
    assert!(
        matches!(
            &again[0].1,
            Outcome::Duplicate {
                status: JobStatus::Pending
            } | Outcome::Pending { .. }
        ),
        "{again:?}"
    );
    assert_eq!(
        stack.store().dependents_of("later").await.unwrap(),
        vec!["early".to_owned()]
    );
    exit(&stack, "later", 1, 0).await;
    let released = deliver(&stack).await;
    assert!(
        matches!(released.as_slice(), [(id, Outcome::Dispatched { launch: 1, .. })] if id == "early"),
        "{released:?}"
    );
}

#[tokio::test]
async fn the_sweep_moves_on_a_pending_job_whose_dependency_ended_unfollowed() {
    let stack = Stack::new(1).await;
    submit(&stack, &[r#"{"job_id":"dep","definition":"render"}"#]).await;
    submit(
        &stack,
        &[r#"{"job_id":"waits","definition":"render","depends_on":["dep"]}"#],
    )
    .await;
    // `dep` ends, written by a function that stopped before it read its
    // dependents.
    let change = berth_aws::store::Change {
        exit_code: Some(0),
        ..Default::default()
    };
    stack
        .store()
        .transition(
            "dep",
            JobStatus::Succeeded,
            change,
            berth_aws::store::now_ms(),
        )
        .await
        .unwrap();
    let life = stack.lifecycle();
    // Not quiet long enough: left alone.
    let sweep = life.sweep().await.unwrap();
    assert!(sweep.dependencies.is_empty(), "{:?}", sweep.dependencies);
    assert_eq!(stack.record("waits").await.status, JobStatus::Pending);
    let life = life.with_pending_quiet(Duration::ZERO);
    let sweep = life.sweep().await.unwrap();
    assert_eq!(
        sweep.dependencies,
        vec![("waits".to_owned(), Checked::Released)]
    );
    // Released once: the next sweep finds nothing pending.
    assert!(life.sweep().await.unwrap().dependencies.is_empty());
    let released = deliver(&stack).await;
    assert!(
        matches!(released.as_slice(), [(id, Outcome::Dispatched { launch: 1, .. })] if id == "waits"),
        "{released:?}"
    );
    assert!(stack.receive().await.is_empty());
}
