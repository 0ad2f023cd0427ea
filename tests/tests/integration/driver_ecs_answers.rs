//! ECS answers the local AWS cannot give (throttling, a real `RESOURCE:MEMORY`
//! placement failure, an empty cluster, a missing task definition), given
//! at the ECS client with `aws-smithy-mocks` while the queue and the tables
//! stay in the local AWS.

use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::types::{Failure, LaunchType, Task};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use berth_aws::EcsCluster;
use berth_aws::ecs::{FargateNetwork, Launching};
use berth_core::{JobStatus, Route};
use berth_driver::Driver;
use berth_tests::stack::{CLUSTER, Stack};

/// An ECS error answer as ECS sends it (AWS JSON 1.1).
pub(crate) fn ecs_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut response =
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    response
}

pub(crate) fn task(arn: &str, launch_type: LaunchType) -> RunTaskOutput {
    RunTaskOutput::builder()
        .tasks(
            Task::builder()
                .task_arn(arn)
                .launch_type(launch_type)
                .build(),
        )
        .build()
}

/// DescribeTaskDefinition's answer for `render`: `awsvpc`, sized 1024 CPU
/// units and 2048 MiB (it may run on Fargate).
pub(crate) fn render_task_definition() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(|| {
        task_definition(
            aws_sdk_ecs::types::NetworkMode::Awsvpc,
            Some(("1024", "2048")),
        )
    })
}

/// The stack's driver with `ecs` in place of the local ECS.
pub(crate) fn driver_with(stack: &Stack, ecs: aws_sdk_ecs::Client) -> Driver {
    let network = FargateNetwork {
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: false,
    };
    Driver {
        ecs: EcsCluster::new(
            ecs,
            CLUSTER,
            Launching {
                ec2_capacity_provider: None,
                fargate: network,
            },
        ),
        fargate_spot: false,
        ..stack.driver()
    }
}

#[tokio::test]
async fn a_throttled_run_task_fails_only_its_own_record() {
    let stack = Stack::new(0).await;
    let throttled = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.started_by() == Some("slow/1"))
        .then_http_response(|| ecs_error(400, "ThrottlingException", "Rate exceeded"));
    let fine = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.started_by() != Some("slow/1"))
        .then_compute_output(|r| {
            task(
                &format!(
                    "arn:aws:ecs:us-east-1:1:task/berth/{}",
                    r.started_by().unwrap()
                ),
                LaunchType::Ec2,
            )
        });
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &throttled, &fine]
    );

    let ids = stack
        .send(&[
            r#"{"job_id":"slow","definition":"render"}"#,
            r#"{"job_id":"quick","definition":"render"}"#,
        ])
        .await;
    let failed = stack
        .deliver(&driver_with(&stack, ecs), stack.receive().await)
        .await;
    assert_eq!(
        failed,
        vec![ids[0].clone()],
        "only the throttled job comes back"
    );
    assert!(throttled.num_calls() >= 1);

    let slow = stack.record("slow").await;
    assert_eq!(
        (slow.status, slow.attempts),
        (JobStatus::Accepted, 0),
        "kept for the next delivery"
    );
    let quick = stack.record("quick").await;
    assert_eq!(
        (quick.status, quick.route),
        (JobStatus::Dispatched, Some(Route::Ec2))
    );
    assert_eq!(
        quick.task_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:1:task/berth/quick/1")
    );
}

#[tokio::test]
async fn a_server_error_is_retried_by_the_sdk_then_left_for_redelivery() {
    let stack = Stack::new(0).await;
    let broken = mock!(aws_sdk_ecs::Client::run_task)
        .then_http_response(|| ecs_error(500, "ServerException", "internal error"));
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &broken]
    );
    let ids = stack
        .send(&[r#"{"job_id":"unlucky","definition":"render"}"#])
        .await;
    let failed = stack
        .deliver(&driver_with(&stack, ecs), stack.receive().await)
        .await;
    assert_eq!(failed, ids);
    assert_eq!(
        broken.num_calls(),
        3,
        "the SDK's standard retry mode tries three times"
    );
    assert_eq!(stack.record("unlucky").await.status, JobStatus::Accepted);
}

#[tokio::test]
async fn a_resource_memory_failure_sends_the_job_to_fargate() {
    let stack = Stack::new(0).await;
    // What real ECS answers when no instance has the memory.
    let no_memory = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.launch_type() == Some(&LaunchType::Ec2))
        .then_output(|| {
            RunTaskOutput::builder()
                .failures(
                    Failure::builder()
                        .arn("arn:aws:ecs:us-east-1:123456789012:container-instance/berth/0123456789abcdef")
                        .reason("RESOURCE:MEMORY")
                        .build(),
                )
                .build()
        });
    let fargate = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| {
            r.launch_type() == Some(&LaunchType::Fargate)
                && r.overrides().and_then(|o| o.memory()) == Some("2048")
                && r.network_configuration().is_some()
        })
        .then_output(|| {
            task(
                "arn:aws:ecs:us-east-1:1:task/berth/fargate-1",
                LaunchType::Fargate,
            )
        });
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &no_memory, &fargate]
    );

    stack
        .send(&[r#"{"job_id":"roomless","definition":"render"}"#])
        .await;
    let failed = stack
        .deliver(&driver_with(&stack, ecs), stack.receive().await)
        .await;
    assert!(failed.is_empty());
    assert_eq!((no_memory.num_calls(), fargate.num_calls()), (1, 1));
    let r = stack.record("roomless").await;
    assert_eq!(
        (r.status, r.route),
        (JobStatus::Dispatched, Some(Route::Fargate))
    );
    assert_eq!(
        r.task_arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:1:task/berth/fargate-1")
    );
}

/// An empty cluster is "no room", not an error: the job goes to Fargate.
/// The driver remembers that answer (berth-core's `room`), so that in a
/// burst each job spends one RunTask, not two; a job that can run only on
/// EC2 still asks, and once jobs wait for an instance every job asks.
#[tokio::test]
async fn an_empty_cluster_is_no_room_and_the_next_jobs_go_straight_to_fargate() {
    let stack = Stack::new(0).await;
    let empty = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.launch_type() == Some(&LaunchType::Ec2))
        .then_http_response(|| {
            ecs_error(
                400,
                "InvalidParameterException",
                "No Container Instances were found in your cluster.",
            )
        });
    let fargate = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.launch_type() == Some(&LaunchType::Fargate))
        .then_output(|| task("arn:aws:ecs:us-east-1:1:task/berth/f", LaunchType::Fargate));
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &empty, &fargate]
    );
    let driver = driver_with(&stack, ecs);
    for id in ["first-of-the-day", "burst-2", "burst-3"] {
        let body = format!(r#"{{"job_id":"{id}","definition":"render"}}"#);
        assert!(stack.send_to(&driver, &[&body]).await.is_empty());
        assert_eq!(stack.record(id).await.route, Some(Route::Fargate));
    }
    assert_eq!(
        (empty.num_calls(), fargate.num_calls()),
        (1, 3),
        "EC2 asked once, for the first job"
    );
    // A GPU job can run only on EC2: it asks, and waits for an instance.
    stack
        .send_to(&driver, &[r#"{"job_id":"gpu-1","definition":"train"}"#])
        .await;
    assert_eq!(empty.num_calls(), 2);
    assert_eq!(
        stack.record("gpu-1").await.status,
        JobStatus::WaitingForCapacity
    );
    // While the scaler starts its instance, every job asks EC2 first.
    let body = r#"{"job_id":"burst-4","definition":"render"}"#;
    assert!(stack.send_to(&driver, &[body]).await.is_empty());
    assert_eq!((empty.num_calls(), fargate.num_calls()), (3, 4));
}

#[tokio::test]
async fn a_missing_task_definition_fails_the_job_with_the_reason() {
    let stack = Stack::new(0).await;
    let missing = mock!(aws_sdk_ecs::Client::run_task).then_http_response(|| {
        ecs_error(
            400,
            "ClientException",
            "Unable to describe task definition.",
        )
    });
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &missing]
    );
    stack
        .send(&[r#"{"job_id":"orphan","definition":"render"}"#])
        .await;
    let failed = stack
        .deliver(&driver_with(&stack, ecs), stack.receive().await)
        .await;
    assert!(failed.is_empty(), "a permanent failure is not retried");
    let r = stack.record("orphan").await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(
        r.reason.as_deref(),
        Some("ecs:RunTask: ClientException: Unable to describe task definition.")
    );
    assert_eq!(missing.num_calls(), 1, "no retry of a permanent error");
}

/// The driver's role may not run this task definition (a definition naming
/// one outside the allowed prefix): no retry fixes that, so the job fails at
/// once with the reason, instead of coming back until the redrive.
#[tokio::test]
async fn access_denied_fails_the_job_at_once_with_the_reason() {
    let stack = Stack::new(0).await;
    let denied = mock!(aws_sdk_ecs::Client::run_task).then_http_response(|| {
        ecs_error(
            400,
            "AccessDeniedException",
            "User is not authorized to perform: ecs:RunTask on resource: other-render",
        )
    });
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &denied]
    );
    stack
        .send(&[r#"{"job_id":"denied","definition":"render"}"#])
        .await;
    let failed = stack
        .deliver(&driver_with(&stack, ecs), stack.receive().await)
        .await;
    assert!(failed.is_empty(), "not retried");
    let r = stack.record("denied").await;
    assert_eq!(r.status, JobStatus::Failed);
    assert!(
        r.reason.as_deref().unwrap().contains("not authorized"),
        "{:?}",
        r.reason
    );
}

/// A launch that keeps hitting a retryable error until the queue's last
/// receive (`BERTH_MAX_RECEIVES`): the job ends `FAILED` with the reason
/// then, and its message is deleted, so no record is left behind a dead
/// letter.
#[tokio::test]
async fn the_last_receive_ends_the_job_with_its_reason() {
    let stack = Stack::new(0).await;
    let broken = mock!(aws_sdk_ecs::Client::run_task)
        .then_http_response(|| ecs_error(500, "ServerException", "internal error"));
    // The second delivery looks for the first launch's task: none started.
    let none = mock!(aws_sdk_ecs::Client::list_tasks)
        .then_output(|| aws_sdk_ecs::operation::list_tasks::ListTasksOutput::builder().build());
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &broken, &none]
    );
    let driver = Driver {
        max_receives: Some(2),
        ..driver_with(&stack, ecs)
    };
    let ids = stack
        .send(&[r#"{"job_id":"doomed","definition":"render"}"#])
        .await;
    let first = stack.receive().await;
    let handle = first[0].receipt_handle.clone().unwrap();
    assert_eq!(stack.deliver(&driver, first).await, ids, "retried once");
    let last = stack.redeliver(&[handle]).await;
    assert!(stack.deliver(&driver, last).await.is_empty(), "not again");
    let r = stack.record("doomed").await;
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("2 deliveries") && reason.contains("internal error"),
        "{reason}"
    );
}

/// A task definition as DescribeTaskDefinition tells it: its network mode
/// and its task size, if it has one.
fn task_definition(
    network: aws_sdk_ecs::types::NetworkMode,
    size: Option<(&str, &str)>,
) -> aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition};
    let mut definition = aws_sdk_ecs::types::TaskDefinition::builder()
        .family("index")
        .network_mode(network.clone())
        .container_definitions(ContainerDefinition::builder().name("main").build())
        .requires_compatibilities(Compatibility::Ec2);
    // Sized and in awsvpc mode: Fargate can run it too.
    if let Some((cpu, memory)) = size {
        definition = definition.cpu(cpu).memory(memory);
        if network == aws_sdk_ecs::types::NetworkMode::Awsvpc {
            definition = definition.requires_compatibilities(Compatibility::Fargate);
        }
    }
    aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput::builder()
        .task_definition(definition.build())
        .build()
}

/// An EC2-only definition whose task definition uses `awsvpc`: ECS refuses
/// a RunTask without a network configuration, so berth gives it one.
#[tokio::test]
async fn an_ec2_only_awsvpc_task_gets_its_network() {
    let stack = Stack::new(0).await;
    let index = berth_core::JobDefinition {
        name: "index".into(),
        task_definition: "index".into(),
        fargate: false,
        ..berth_tests::stack::render()
    };
    stack.definitions().put(&index).await.unwrap();
    let described = mock!(aws_sdk_ecs::Client::describe_task_definition)
        .then_output(|| task_definition(aws_sdk_ecs::types::NetworkMode::Awsvpc, None));
    let with_network = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.network_configuration().is_some())
        .then_output(|| {
            task(
                "arn:aws:ecs:us-east-1:1:task/berth/index-1",
                LaunchType::Ec2,
            )
        });
    let without = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.network_configuration().is_none())
        .then_http_response(|| {
            ecs_error(
                400,
                "InvalidParameterException",
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            )
        });
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&described, &with_network, &without]
    );
    stack
        .send(&[r#"{"job_id":"vpc-1","definition":"index"}"#])
        .await;
    assert!(
        stack
            .deliver(&driver_with(&stack, ecs), stack.receive().await)
            .await
            .is_empty()
    );
    let r = stack.record("vpc-1").await;
    assert_eq!(
        (r.status, r.route, r.reason),
        (JobStatus::Dispatched, Some(Route::Ec2), None)
    );
    assert_eq!(with_network.num_calls(), 1);
}

/// A job larger than its task definition's task size, on EC2: a container
/// may not have more than its task, so berth sizes the task as well.
#[tokio::test]
async fn a_job_larger_than_its_task_definition_sizes_the_task_on_ec2() {
    let stack = Stack::new(0).await;
    let described = mock!(aws_sdk_ecs::Client::describe_task_definition).then_output(|| {
        task_definition(
            aws_sdk_ecs::types::NetworkMode::Awsvpc,
            Some(("1024", "2048")),
        )
    });
    let sized = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| {
            let o = r.overrides();
            o.and_then(|o| o.cpu()) == Some("2048") && o.and_then(|o| o.memory()) == Some("8192")
        })
        .then_output(|| task("arn:aws:ecs:us-east-1:1:task/berth/big-1", LaunchType::Ec2));
    let too_small = mock!(aws_sdk_ecs::Client::run_task)
        .match_requests(|r| r.overrides().and_then(|o| o.memory()).is_none())
        .then_http_response(|| {
            ecs_error(
                400,
                "ClientException",
                "Container.Memory should not be greater than Task.Memory",
            )
        });
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&described, &sized, &too_small]
    );
    stack
        .send(&[r#"{"job_id":"big-1","definition":"render","cpu":2048,"memory":8192}"#])
        .await;
    assert!(
        stack
            .deliver(&driver_with(&stack, ecs), stack.receive().await)
            .await
            .is_empty()
    );
    let r = stack.record("big-1").await;
    assert_eq!(
        (r.status, r.route, r.reason),
        (JobStatus::Dispatched, Some(Route::Ec2), None)
    );
}

/// A delivery that takes over a launch whose driver stopped after RunTask
/// finds no task listed (ListTasks lags a task just started): it makes the
/// launch again under the same number, so its RunTask carries the same
/// client token, which ECS answers with the task already started, not a
/// second task under a new launch.
#[tokio::test]
async fn a_take_over_that_lists_no_task_runs_the_launch_again_under_its_token() {
    use std::sync::{Arc, Mutex};
    let stack = Stack::new(0).await;
    let tokens: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = tokens.clone();
    let started = mock!(aws_sdk_ecs::Client::run_task).then_compute_output(move |r| {
        seen.lock().unwrap().push((
            r.started_by().unwrap_or_default().to_owned(),
            r.client_token().unwrap_or_default().to_owned(),
        ));
        task("arn:aws:ecs:us-east-1:1:task/berth/first", LaunchType::Ec2)
    });
    let lagging = mock!(aws_sdk_ecs::Client::list_tasks)
        .then_output(|| aws_sdk_ecs::operation::list_tasks::ListTasksOutput::builder().build());
    let render_definition = render_task_definition();
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&render_definition, &started, &lagging]
    );
    let driver = Driver {
        tuning: berth_driver::Tuning {
            claim_lease: std::time::Duration::ZERO,
            ..berth_driver::Tuning::default()
        },
        ..driver_with(&stack, ecs)
    };
    stack
        .send(&[r#"{"job_id":"lagged","definition":"render"}"#])
        .await;
    // The first delivery claims launch 1 and starts its task; the driver
    // stops before recording it.
    let message = stack.receive().await;
    let handle = message[0].receipt_handle.clone().unwrap();
    let crashed = Driver {
        store: berth_aws::JobStore::new(
            stack
                .aws
                .clients_stopping_before("UpdateItem")
                .dynamodb
                .clone(),
            &stack.settings.jobs_table,
        ),
        ..driver.clone()
    };
    crashed.handle_batch(message).await;
    assert_eq!(
        (
            stack.record("lagged").await.status,
            stack.record("lagged").await.launch
        ),
        (JobStatus::Accepted, 1)
    );
    // The next delivery takes the launch over; ListTasks lists nothing.
    let again = stack.redeliver(&[handle]).await;
    assert!(stack.deliver(&driver, again).await.is_empty());
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(
        tokens[1], tokens[0],
        "launch 1's RunTask again, with its token"
    );
    assert_eq!(tokens[0].0, "lagged/1");
    let r = stack.record("lagged").await;
    assert_eq!(
        (r.status, r.launch, r.attempts, r.task_arn.as_deref()),
        (
            JobStatus::Dispatched,
            1,
            1,
            Some("arn:aws:ecs:us-east-1:1:task/berth/first")
        )
    );
}
