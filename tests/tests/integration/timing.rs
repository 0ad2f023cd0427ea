//! When a job's time counts: from the start of its run, not from its
//! dispatch. A Lambda-route job may wait in Lambda's queue of asynchronous
//! invocations, an ECS task may wait for its image and its capacity; and a
//! Lambda sandbox that dies with its job ends the attempt as a failure.

use aws_sdk_lambda::operation::invoke::InvokeOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use berth_aws::LambdaLauncher;
use berth_aws::store::{Change, Created, now_ms};
use berth_core::{JobStatus, Route, job, resolve};
use berth_driver::Driver;
use berth_tests::stack::{Stack, render};

/// `render` with a Lambda function, so that a small job routes to Lambda.
fn lambda_render() -> berth_core::JobDefinition {
    berth_core::JobDefinition {
        lambda_function: Some("berth-task-render".into()),
        // A second: cheaper on Lambda than Fargate's minute.
        expected_seconds: Some(1),
        ..render()
    }
}

#[tokio::test]
async fn a_lambda_job_is_not_timed_out_while_it_waits_in_lambda_s_queue() {
    let stack = Stack::new(0).await;
    stack.definitions().put(&lambda_render()).await.unwrap();
    let accepted = mock!(aws_sdk_lambda::Client::invoke)
        .then_output(|| InvokeOutput::builder().status_code(202).build());
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&accepted]);
    let driver = Driver {
        lambda: LambdaLauncher::new(lambda),
        ..stack.driver()
    };
    let body = r#"{"job_id":"queued-fn","definition":"render","cpu":256,"memory":512,"timeout_seconds":60}"#;
    assert!(stack.send_to(&driver, &[body]).await.is_empty());
    let r = stack.record("queued-fn").await;
    assert_eq!(
        (r.status, r.route),
        (JobStatus::Dispatched, Some(Route::Lambda))
    );
    // Lambda keeps an asynchronous invocation for up to six hours: the job's
    // 60 s count from when its run starts, and not before.
    let six_hours = 6 * 3600;
    assert!(
        r.deadline.unwrap() >= now_ms() / 1000 + six_hours,
        "deadline {:?}",
        r.deadline
    );
    // The sweep leaves it alone.
    assert!(
        stack
            .lifecycle()
            .sweep()
            .await
            .unwrap()
            .timed_out
            .is_empty()
    );
}

#[tokio::test]
async fn an_ecs_job_s_time_counts_from_running() {
    let stack = Stack::new(1).await;
    stack
        .send(&[r#"{"job_id":"pulling","definition":"render","timeout_seconds":60}"#])
        .await;
    assert!(
        stack
            .deliver(&stack.driver(), stack.receive().await)
            .await
            .is_empty()
    );
    let dispatched = stack.record("pulling").await;
    // Image pull and provisioning do not count: until RUNNING, the task has
    // its start allowance on top of the job's timeout.
    let allowance = i64::from(berth_core::launch::ECS_START_ALLOWANCE_SECONDS);
    assert!(
        dispatched.deadline.unwrap() >= now_ms() / 1000 + allowance,
        "{:?}",
        dispatched.deadline
    );
    let life = stack.lifecycle();
    life.task_changed(&stack.task_change("pulling", 1, "RUNNING").await)
        .await
        .unwrap();
    let running = stack.record("pulling").await;
    assert!(
        running.deadline.unwrap() <= now_ms() / 1000 + 60,
        "{:?}",
        running.deadline
    );
}

/// A Lambda-route job RUNNING whose task runtime has not been heard of for
/// longer than its heartbeat allows: its sandbox died with it (out of
/// memory, say). The sweep ends the attempt as a failure of the job, and
/// `max_attempts` decides what follows.
#[tokio::test]
async fn a_lambda_sandbox_that_died_with_its_job_fails_the_attempt() {
    let stack = Stack::new(0).await;
    let store = stack.store();
    for (id, max_attempts) in [("oom-once", 2), ("oom-last", 1)] {
        let body =
            format!(r#"{{"job_id":"{id}","definition":"render","max_attempts":{max_attempts}}}"#);
        let request = job::parse(&body, id).unwrap();
        let job = resolve(&request, Some(&lambda_render())).unwrap();
        assert_eq!(store.accept(&job, id, 0).await.unwrap(), Created::New);
        let dispatch = Change {
            route: Some(Route::Lambda),
            add_attempt: true,
            expect_launch: Some(1),
            ..Change::default()
        };
        store
            .transition(id, JobStatus::Dispatched, dispatch, 1)
            .await
            .unwrap();
        // It started long ago, and its deadline is far: only the silence
        // tells.
        let started = Change {
            request_id: Some(format!("req-{id}")),
            deadline: Some(now_ms() / 1000 + 3600),
            expect_launch: Some(1),
            ..Change::default()
        };
        store
            .transition(id, JobStatus::Running, started, 2)
            .await
            .unwrap();
    }
    let sweep = stack.lifecycle().sweep().await.unwrap();
    assert_eq!(sweep.reconciled.len(), 2, "{sweep:?}");
    let once = stack.record("oom-once").await;
    assert_eq!(
        (once.status, once.failures),
        (JobStatus::Accepted, 1),
        "{once:?}"
    );
    let last = stack.record("oom-last").await;
    assert_eq!(last.status, JobStatus::Failed, "{last:?}");
    assert!(
        last.reason.as_deref().unwrap().contains("sandbox"),
        "{:?}",
        last.reason
    );
    assert_eq!(last.history[0].id.as_deref(), Some("req-oom-last"));
    let queued = stack.receive().await;
    assert_eq!(queued.len(), 1, "the next attempt of oom-once");
}
