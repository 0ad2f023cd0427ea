//! Throttled calls, as a burst meets AWS's limits: RunTask's
//! `ThrottlingException`, Lambda's `TooManyRequestsException`, DynamoDB's
//! `ProvisionedThroughputExceededException` on the store's writes, each
//! through all of the SDK's own tries. The job is not failed, no attempt is
//! counted, its message comes back (or goes on in a new one at the queue's
//! last receive), and it then runs once. The throttling answers are given
//! with `aws-smithy-mocks`; the queue and the tables are the local AWS.

use aws_lambda_events::event::sqs::SqsMessage;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::types::LaunchType;
use aws_sdk_lambda::operation::invoke::InvokeOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use berth_aws::{JobStore, LambdaLauncher};
use berth_core::{JobStatus, Route};
use berth_driver::{Driver, Outcome};
use berth_tests::stack::{Stack, render};

use crate::driver_ecs_answers::{driver_with, ecs_error, render_task_definition, task};

/// How many times the SDK's standard mode tries a call.
const SDK_TRIES: usize = 3;

/// ECS that throttles RunTask for `job_id`'s first launch through all of
/// the SDK's tries, then starts it; every other job starts at once. The
/// rules: the throttled and started RunTasks of `job_id`, and ECS.
fn ecs_throttling(
    job_id: &'static str,
) -> (
    aws_smithy_mocks::Rule,
    aws_smithy_mocks::Rule,
    aws_sdk_ecs::Client,
) {
    let started_by = format!("{job_id}/1");
    let throttled = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests({
            let started_by = started_by.clone();
            move |r| r.started_by() == Some(started_by.as_str())
        })
        .sequence()
        .http_response(|| ecs_error(400, "ThrottlingException", "Rate exceeded"))
        .times(SDK_TRIES)
        .build();
    let started = mock!(aws_sdk_ecs::Client::run_task).then_compute_output(|r| {
        task(
            &format!(
                "arn:aws:ecs:us-east-1:1:task/berth/{}",
                r.started_by().unwrap()
            ),
            LaunchType::Ec2,
        )
    });
    // The next delivery looks for the launch's task before it makes the
    // launch again: there is none.
    let listed =
        mock!(aws_sdk_ecs::Client::list_tasks).then_output(|| ListTasksOutput::builder().build());
    let definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&definition, &throttled, &listed, &started]
    );
    (throttled, started, ecs)
}

/// The one outcome of handing `records` (one message) to `driver`; the
/// message is left in flight, as the event source mapping leaves a failure.
async fn outcome(driver: &Driver, records: Vec<SqsMessage>) -> Outcome {
    assert_eq!(records.len(), 1, "{records:?}");
    let mut handled = driver.handle_batch(records).await;
    handled.pop().unwrap().outcome
}

fn handles(records: &[SqsMessage]) -> Vec<String> {
    records
        .iter()
        .map(|m| m.receipt_handle.clone().unwrap())
        .collect()
}

/// Sends `body` (a job message) and hands its one delivery to `driver`,
/// which must end it throttled with AWS's `code`; the message's receipt
/// handle, for its next delivery.
async fn throttled_first(stack: &Stack, driver: &Driver, body: &str, code: &str) -> Vec<String> {
    stack.send(&[body]).await;
    let first = stack.receive().await;
    let handle = handles(&first);
    let outcome = outcome(driver, first).await;
    assert!(
        matches!(&outcome, Outcome::Throttled { reason } if reason.contains(code)),
        "{outcome:?}"
    );
    handle
}

/// Asserts the job was not failed and no attempt of it counted.
async fn kept_without_an_attempt(stack: &Stack, job_id: &str) {
    let r = stack.record(job_id).await;
    assert_eq!(
        (r.status, r.attempts, r.failures),
        (JobStatus::Accepted, 0, 0),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_throttled_run_task_comes_back_without_an_attempt_and_launches_once() {
    let stack = Stack::new(0).await;
    let (throttled, started, ecs) = ecs_throttling("burst");
    let driver = driver_with(&stack, ecs);
    let handle = throttled_first(
        &stack,
        &driver,
        r#"{"job_id":"burst","definition":"render"}"#,
        "ThrottlingException",
    )
    .await;
    assert_eq!(throttled.num_calls(), SDK_TRIES);
    assert_eq!(started.num_calls(), 0);
    kept_without_an_attempt(&stack, "burst").await;

    // Its next delivery makes the same launch, and ECS starts it.
    let again = stack.redeliver(&handle).await;
    assert!(stack.deliver(&driver, again).await.is_empty());
    let r = stack.record("burst").await;
    assert_eq!(
        (r.status, r.route, r.launch, r.attempts),
        (JobStatus::Dispatched, Some(Route::Ec2), 1, 1)
    );
    assert_eq!(
        r.task_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:1:task/berth/burst/1")
    );
    assert_eq!(started.num_calls(), 1, "launched once");
    assert!(stack.receive().await.is_empty(), "nothing left to deliver");
}

/// Lambda's answer to an Invoke over its rate (REST-JSON, 429).
fn too_many_requests() -> HttpResponse {
    let body = serde_json::json!({
        "Type": "User",
        "Reason": "CallerRateLimitExceeded",
        "message": "Rate exceeded"
    })
    .to_string();
    let mut response = HttpResponse::new(StatusCode::try_from(429).unwrap(), SdkBody::from(body));
    let headers = response.headers_mut();
    headers.insert("content-type", "application/json");
    headers.insert("x-amzn-errortype", "TooManyRequestsException");
    response
}

#[tokio::test]
async fn a_throttled_invoke_comes_back_without_an_attempt_and_runs_once() {
    let stack = Stack::new(0).await;
    stack
        .definitions()
        .put(&berth_core::JobDefinition {
            lambda_function: Some("berth-task-render".into()),
            expected_seconds: Some(1),
            ..render()
        })
        .await
        .unwrap();
    let throttled = mock!(aws_sdk_lambda::Client::invoke)
        .sequence()
        .http_response(too_many_requests)
        .times(SDK_TRIES)
        .build();
    let accepted = mock!(aws_sdk_lambda::Client::invoke)
        .then_output(|| InvokeOutput::builder().status_code(202).build());
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&throttled, &accepted]);
    let driver = Driver {
        lambda: LambdaLauncher::new(lambda),
        ..stack.driver()
    };
    let handle = throttled_first(
        &stack,
        &driver,
        r#"{"job_id":"small","definition":"render","cpu":256,"memory":512,"timeout_seconds":60}"#,
        "TooManyRequestsException",
    )
    .await;
    assert_eq!(
        (throttled.num_calls(), accepted.num_calls()),
        (SDK_TRIES, 0)
    );
    kept_without_an_attempt(&stack, "small").await;

    let again = stack.redeliver(&handle).await;
    assert!(stack.deliver(&driver, again).await.is_empty());
    let r = stack.record("small").await;
    assert_eq!(
        (r.status, r.route, r.attempts),
        (JobStatus::Dispatched, Some(Route::Lambda), 1)
    );
    assert_eq!(accepted.num_calls(), 1, "invoked once");
}

/// DynamoDB's answer to a write over the table's throughput (JSON 1.0).
fn throughput_exceeded() -> HttpResponse {
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded."
    })
    .to_string();
    let mut response = HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::from(body));
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

/// An HTTP connector in front of the local AWS that answers the first
/// `left` calls of `target` (the `x-amz-target` header, e.g.
/// `DynamoDB_20120810.PutItem`) naming `job_id` with DynamoDB's throughput
/// answer, and passes every other call through.
#[derive(Debug)]
struct Throttling {
    inner: SharedHttpConnector,
    target: &'static str,
    job_id: &'static str,
    left: Arc<AtomicUsize>,
}

impl HttpConnector for Throttling {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let named = request.headers().get("x-amz-target") == Some(self.target)
            && request.body().bytes().is_some_and(|b| {
                let needle = format!(r#""job_id":{{"S":"{}"}}"#, self.job_id);
                String::from_utf8_lossy(b).contains(&needle)
            });
        if named
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return HttpConnectorFuture::ready(Ok(throughput_exceeded()));
        }
        self.inner.call(request)
    }
}

/// The stack's store on the local AWS, whose writes of `job_id`'s record
/// (`PutItem` when `put`, else `UpdateItem`) are throttled through all of
/// the SDK's tries, once; every other call goes through. Also returns how
/// many throttling answers are still to give.
fn store_throttling(
    stack: &Stack,
    job_id: &'static str,
    put: bool,
) -> (Arc<AtomicUsize>, JobStore) {
    let target = if put {
        "DynamoDB_20120810.PutItem"
    } else {
        "DynamoDB_20120810.UpdateItem"
    };
    let left = Arc::new(AtomicUsize::new(SDK_TRIES));
    let local = &stack.clients().dynamodb;
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let client = http_client_fn({
        let left = left.clone();
        move |settings, components| {
            SharedHttpConnector::new(Throttling {
                inner: inner.http_connector(settings, components),
                target,
                job_id,
                left: left.clone(),
            })
        }
    });
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        local.config().to_builder().http_client(client).build(),
    );
    (left, JobStore::new(ddb, &stack.settings.jobs_table))
}

#[tokio::test]
async fn a_throttled_write_of_a_new_record_comes_back_and_launches_once() {
    let stack = Stack::new(0).await;
    let (_, started, ecs) = ecs_throttling("nobody");
    let (left, store) = store_throttling(&stack, "recorded-late", true);
    let driver = Driver {
        store,
        ..driver_with(&stack, ecs)
    };
    let handle = throttled_first(
        &stack,
        &driver,
        r#"{"job_id":"recorded-late","definition":"render"}"#,
        "ProvisionedThroughputExceededException",
    )
    .await;
    assert_eq!(
        left.load(Ordering::SeqCst),
        0,
        "each of the SDK's tries throttled"
    );
    assert_eq!(started.num_calls(), 0, "nothing launched");
    assert!(stack.store().get("recorded-late").await.unwrap().is_none());

    let again = stack.redeliver(&handle).await;
    assert!(stack.deliver(&driver, again).await.is_empty());
    let r = stack.record("recorded-late").await;
    assert_eq!(
        (r.status, r.route, r.attempts),
        (JobStatus::Dispatched, Some(Route::Ec2), 1)
    );
    assert_eq!(started.num_calls(), 1, "launched once");
}

/// The write of a launch made (RunTask answered) throttled: the job keeps
/// its claim and no attempt is counted; its next delivery, once the claim's
/// lease is over, finds the task and records it instead of starting
/// another.
#[tokio::test]
async fn a_throttled_write_of_a_launch_made_is_taken_over_not_launched_again() {
    let stack = Stack::new(0).await;
    let arn = "arn:aws:ecs:us-east-1:1:task/berth/claimed-late/1";
    let started = mock!(aws_sdk_ecs::Client::run_task)
        .then_compute_output(move |_| task(arn, LaunchType::Ec2));
    let listed = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| r.started_by() == Some("claimed-late/1"))
        .then_output(move || ListTasksOutput::builder().task_arns(arn).build());
    let described = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(move || {
        aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput::builder()
            .tasks(
                aws_sdk_ecs::types::Task::builder()
                    .task_arn(arn)
                    .started_by("claimed-late/1")
                    .last_status("PENDING")
                    .launch_type(LaunchType::Ec2)
                    .build(),
            )
            .build()
    });
    let definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&definition, &started, &listed, &described]
    );
    let (left, store) = store_throttling(&stack, "claimed-late", false);
    let driver = Driver {
        store,
        tuning: berth_driver::Tuning {
            claim_lease: std::time::Duration::ZERO,
            ..berth_driver::Tuning::default()
        },
        ..driver_with(&stack, ecs)
    };
    let handle = throttled_first(
        &stack,
        &driver,
        r#"{"job_id":"claimed-late","definition":"render"}"#,
        "ProvisionedThroughputExceededException",
    )
    .await;
    assert_eq!(
        left.load(Ordering::SeqCst),
        0,
        "each of the SDK's tries throttled"
    );
    assert_eq!(started.num_calls(), 1);
    kept_without_an_attempt(&stack, "claimed-late").await;

    let again = stack.redeliver(&handle).await;
    assert!(stack.deliver(&driver, again).await.is_empty());
    let r = stack.record("claimed-late").await;
    assert_eq!(
        (r.status, r.launch, r.attempts, r.task_arn.as_deref()),
        (JobStatus::Dispatched, 1, 1, Some(arn))
    );
    assert_eq!(started.num_calls(), 1, "not launched again");
    assert!(described.num_calls() >= 1);
}

/// At the queue's last receive before its redrive, a throttled job goes on
/// in a new message instead of being failed or dead-lettered: as a
/// re-queued attempt of its launch once recorded, as a copy of its message
/// before.
#[tokio::test]
async fn a_job_throttled_at_the_queue_s_last_receive_goes_on_in_a_new_message() {
    let stack = Stack::new(0).await;
    let (run_task_throttled, started, ecs) = ecs_throttling("late");
    let (put_left, store) = store_throttling(&stack, "later", true);
    let driver = Driver {
        store,
        max_receives: Some(1),
        ..driver_with(&stack, ecs)
    };
    stack
        .send(&[
            r#"{"job_id":"late","definition":"render"}"#,
            r#"{"job_id":"later","definition":"render"}"#,
        ])
        .await;
    let first = stack.receive().await;
    let handled = driver.handle_batch(first.clone()).await;
    for h in &handled {
        assert!(
            matches!(&h.outcome, Outcome::CarriedOn { reason } if reason.contains("carried on in a new message")),
            "{h:?}"
        );
        assert!(!h.outcome.redeliver());
    }
    assert_eq!(
        (
            run_task_throttled.num_calls(),
            put_left.load(Ordering::SeqCst)
        ),
        (SDK_TRIES, 0)
    );
    stack.delete(&first).await;
    kept_without_an_attempt(&stack, "late").await;
    assert!(stack.store().get("later").await.unwrap().is_none());

    // The new messages come after the throttle's delay (2–3 s at a first
    // receive), each received for the first time.
    let mut next = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        next.extend(stack.receive().await);
        if next.len() == 2 {
            break;
        }
    }
    assert_eq!(next.len(), 2, "{next:?}");
    assert!(
        next.iter()
            .all(|m| m.attributes.get("ApproximateReceiveCount") == Some(&"1".to_owned()))
    );
    assert!(stack.deliver(&driver, next).await.is_empty());
    for job_id in ["late", "later"] {
        let r = stack.record(job_id).await;
        assert_eq!(
            (r.status, r.attempts),
            (JobStatus::Dispatched, 1),
            "{job_id}"
        );
    }
    assert_eq!(started.num_calls(), 2, "each launched once");
    assert_eq!(
        stack.record("late").await.task_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:1:task/berth/late/1")
    );
}
