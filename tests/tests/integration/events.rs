//! Every sample in events/ is what AWS sends the function it is for: each
//! parses as its aws_lambda_events type, and a file no test knows fails.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use berth_aws::ecs::TaskChange;
use berth_core::launch::{LambdaTask, parse_started_by};
use berth_core::stop::{EcsStop, StopOutcome, classify};
use berth_ecs_runner::lifecycle::SpotWarning;
use berth_tests::workspace_root;

#[test]
fn every_sample_event_parses_as_its_aws_type() {
    let dir = workspace_root().join("events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        match name.as_str() {
            n if n.starts_with("driver-sqs") => {
                let event: SqsEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!event.records.is_empty(), "{name}");
                for r in &event.records {
                    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"), "{name}");
                    assert!(
                        r.message_id.is_some() && r.receipt_handle.is_some() && r.body.is_some(),
                        "{name}"
                    );
                    assert!(
                        r.attributes.contains_key("ApproximateReceiveCount"),
                        "{name}"
                    );
                }
            }
            n if n.starts_with("ecs-runner-task-") => {
                let event: EventBridgeEvent<TaskChange> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (event.source.as_str(), event.detail_type.as_str()),
                    ("aws.ecs", "ECS Task State Change"),
                    "{name}"
                );
                let task = &event.detail;
                assert!(
                    task.started_by
                        .as_deref()
                        .and_then(parse_started_by)
                        .is_some(),
                    "{name}: startedBy names a job and launch"
                );
                let main = task.containers.iter().find(|c| c.name == "main");
                let outcome = || {
                    classify(&EcsStop {
                        stop_code: task.stop_code.as_deref(),
                        stopped_reason: task.stopped_reason.as_deref(),
                        exit_code: main.and_then(|c| c.exit_code),
                        container_reason: main.and_then(|c| c.reason.as_deref()),
                    })
                };
                match n.trim_start_matches("ecs-runner-task-") {
                    "running.json" => assert_eq!(task.last_status, "RUNNING"),
                    "stopped-succeeded.json" => assert_eq!(outcome(), StopOutcome::Succeeded),
                    "stopped-failed.json" => assert!(matches!(
                        outcome(),
                        StopOutcome::JobFailed {
                            exit_code: Some(1),
                            ..
                        }
                    )),
                    "stopped-spot.json" => {
                        assert!(matches!(outcome(), StopOutcome::Interrupted { .. }))
                    }
                    other => panic!("{name}: which task change is {other}?"),
                }
            }
            n if n.starts_with("ecs-runner-spot-warning") => {
                let event: EventBridgeEvent<SpotWarning> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (event.source.as_str(), event.detail_type.as_str()),
                    ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
                    "{name}"
                );
                assert!(event.detail.instance_id.starts_with("i-"), "{name}");
            }
            n if n.starts_with("ecs-runner-instance-registered") => {
                let event: EventBridgeEvent<berth_aws::ecs::InstanceChange> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (event.source.as_str(), event.detail_type.as_str()),
                    ("aws.ecs", berth_ecs_runner::events::INSTANCE_STATE_CHANGE),
                    "{name}"
                );
                assert!(event.detail.takes_tasks(), "{name}");
                assert_eq!(
                    event.detail.remaining(),
                    berth_core::scaling::Room::new(2048, 7680, 0),
                    "{name}"
                );
            }
            n if n.starts_with("ecs-runner-rebalance-recommendation") => {
                let event: EventBridgeEvent<SpotWarning> =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    (event.source.as_str(), event.detail_type.as_str()),
                    (
                        "aws.ec2",
                        berth_ecs_runner::events::REBALANCE_RECOMMENDATION
                    ),
                    "{name}"
                );
                assert!(event.detail.instance_id.starts_with("i-"), "{name}");
            }
            n if n.starts_with("capacity-metric-schedule")
                || n.starts_with("ecs-runner-schedule") =>
            {
                let event: EventBridgeEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(event.detail_type, "Scheduled Event", "{name}");
                assert_eq!(event.source, "aws.events", "{name}");
            }
            n if n.starts_with("task-processor-invoke") => {
                // What the driver's asynchronous invoke sends the function.
                let task: LambdaTask =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(task.launch >= 1, "{name}");
                assert!(task.job.lambda_function.is_some(), "{name}");
            }
            _ => panic!("{name}: no test knows which event type it is; add it here"),
        }
        seen += 1;
    }
    assert!(seen > 0, "events/ is empty");
}

/// The worked example's job definition (DynamoDB JSON, for `aws dynamodb
/// put-item --item file://...`) reads as a definition berth can run on Lambda.
#[test]
fn the_lambda_image_example_definition_is_a_valid_definition() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use berth_aws::definitions::{Lookup, read};
    let path = workspace_root().join("examples/lambda-image/definition.json");
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let item = json
        .into_iter()
        .map(|(k, v)| {
            let (kind, value) = v.as_object().unwrap().iter().next().unwrap();
            let value = match kind.as_str() {
                "S" => AttributeValue::S(value.as_str().unwrap().into()),
                "N" => AttributeValue::N(value.as_str().unwrap().into()),
                "BOOL" => AttributeValue::Bool(value.as_bool().unwrap()),
                other => panic!("{k}: type {other} is not used by definitions"),
            };
            (k, value)
        })
        .collect();
    // Within the template's default prefixes for the `dev` environment.
    let dev = berth_core::definition::Prefixes {
        task_definition: "berth-dev_".into(),
        task_function: "berth-dev_task-".into(),
        job_role: "berth-dev_job-".into(),
    };
    match read(&item, &dev) {
        Lookup::Found(d) => {
            assert_eq!(d.name, "thumbnail");
            assert_eq!(
                d.lambda_function.as_deref(),
                Some("berth-dev_task-thumbnail")
            );
        }
        Lookup::Malformed(why) => panic!("{why}"),
    }
}
