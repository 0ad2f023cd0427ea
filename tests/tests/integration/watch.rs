//! The real function binaries under `cargo lambda watch`, against the local
//! AWS: the driver handles the events/ sample and launches a Lambda-sized job
//! on a real Lambda function; ecs-runner takes the sample EC2 job to its end
//! with its task samples and answers every other sample; the capacity
//! metric runs on its schedule sample; the task processor runs its sample
//! job.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use berth_aws::settings as var;
use berth_aws::store::Change;
use berth_core::launch::LambdaTask;
use berth_core::{JobDefinition, JobStatus, Route};
use berth_tests::stack::{Stack, render};
use berth_tests::watch::LambdaWatch;

#[tokio::test]
async fn the_functions_handle_their_samples_under_cargo_lambda_watch() {
    let stack = Stack::new(2).await;
    // The GPU sample's room.
    stack
        .aws
        .add_container_instance_of(berth_tests::stack::CLUSTER, "g4dn.xlarge")
        .await;
    let thumbnail = JobDefinition {
        name: "thumbnail".into(),
        lambda_function: Some("berth-test-recorder".into()),
        // Seconds: cheaper on Lambda than Fargate's minute.
        expected_seconds: Some(2),
        ..render()
    };
    stack.definitions().put(&thumbnail).await.unwrap();
    let recorded = std::env::temp_dir().join(format!("berth-recorder-{}", stack.aws.id));
    std::fs::create_dir_all(&recorded).unwrap();

    let s = &stack.settings;
    let env = [
        (var::JOBS_TABLE, s.jobs_table.clone()),
        (var::DEFINITIONS_TABLE, s.definitions_table.clone()),
        (var::CLUSTER, s.cluster.clone()),
        (var::QUEUE_URL, stack.queue_url.clone()),
        (var::DLQ_URL, stack.dlq_url.clone()),
        (var::FARGATE_SUBNETS, s.fargate_subnets.join(",")),
        (
            var::FARGATE_SECURITY_GROUPS,
            s.fargate_security_groups.join(","),
        ),
        ("BERTH_TEST_RECORDER_DIR", recorded.display().to_string()),
    ];
    let watch = LambdaWatch::start(&stack.aws, &env).await;

    let answer = watch.invoke_file("berth-driver", "events/driver-sqs.json");
    let response: SqsBatchResponse =
        serde_json::from_value(answer.clone()).expect("an SqsBatchResponse");
    assert!(
        response.batch_item_failures.is_empty(),
        "{answer}\n{}",
        watch.output()
    );
    assert_eq!(answer, serde_json::json!({ "batchItemFailures": [] }));

    let expect = [
        ("sample-lambda", Route::Lambda),
        ("sample-ec2", Route::Ec2),
        ("sample-fargate", Route::FargateSpot),
        ("sample-gpu", Route::Ec2),
    ];
    for (job_id, route) in expect {
        let r = stack.record(job_id).await;
        assert_eq!(
            (r.status, r.route),
            (JobStatus::Dispatched, Some(route)),
            "{job_id}: {r:?}"
        );
    }
    let invalid = stack.record("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e105").await;
    assert_eq!(invalid.status, JobStatus::Rejected);
    assert!(invalid.reason.unwrap().starts_with("unknown field `cpus`"));

    // The invoke reached the function, with the job as its payload.
    let lambda = stack.record("sample-lambda").await;
    let files: Vec<_> = std::fs::read_dir(&recorded)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one invocation: {files:?}");
    let task: LambdaTask =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(
        (task.job.job_id.as_str(), task.launch),
        ("sample-lambda", 1)
    );
    // The sample names no command: the definition's (here none, the
    // image's own).
    assert_eq!(task.job.command, thumbnail.command);
    assert_eq!(
        task.job.environment.get("INPUT").map(String::as_str),
        Some("s3://bucket/in.png")
    );
    // Lambda names the invocation in its answer; `cargo lambda watch` does
    // not, and then nothing (rather than an empty id) is recorded.
    let request_id = files[0].file_stem().unwrap().to_str().unwrap();
    assert!(
        lambda
            .request_id
            .as_deref()
            .is_none_or(|id| id == request_id),
        "{lambda:?}"
    );
    std::fs::remove_dir_all(&recorded).unwrap();

    // ecs-runner on its samples. The task samples, with their task, cluster
    // and job made the sample EC2 job's, take it to SUCCEEDED.
    let task = stack.tasks_of("sample-ec2", 1).await.remove(0);
    let dir = std::env::temp_dir().join(format!("berth-samples-{}", stack.aws.id));
    std::fs::create_dir_all(&dir).unwrap();
    for (sample, action, status) in [
        ("ecs-runner-task-running", "running", "RUNNING"),
        ("ecs-runner-task-stopped-succeeded", "ended", "SUCCEEDED"),
    ] {
        let text = std::fs::read_to_string(
            berth_tests::workspace_root().join(format!("events/{sample}.json")),
        )
        .unwrap()
        .replace(
            "arn:aws:ecs:us-east-1:123456789012:task/berth/3b7a5d1c9e2f4a6b8c0d1e2f3a4b5c6d",
            task.task_arn().unwrap(),
        )
        .replace(
            "arn:aws:ecs:us-east-1:123456789012:cluster/berth",
            task.cluster_arn().unwrap(),
        )
        .replace("\"job-0001/1\"", "\"sample-ec2/1\"");
        let file = dir.join(format!("{sample}.json"));
        std::fs::write(&file, text).unwrap();
        let answer = watch.invoke_file("berth-ecs-runner", file.to_str().unwrap());
        assert_eq!(
            (answer["action"].as_str(), answer["status"].as_str()),
            (Some(action), Some(status)),
            "{sample}: {answer}\n{}",
            watch.output()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let ended = stack.record("sample-ec2").await;
    assert_eq!(
        (ended.status, ended.exit_code),
        (JobStatus::Succeeded, Some(0))
    );
    // The others, as they are: tasks of another account's cluster are
    // ignored, the warning names no instance of this cluster, and the sweep
    // finds no lost event, nothing past its deadline and no lost message.
    for sample in [
        "ecs-runner-task-stopped-failed",
        "ecs-runner-task-stopped-spot",
    ] {
        let answer = watch.invoke_file("berth-ecs-runner", &format!("events/{sample}.json"));
        assert_eq!(answer["action"], "ignored", "{sample}: {answer}");
    }
    for warning in ["spot-warning", "rebalance-recommendation"] {
        let answer = watch.invoke_file(
            "berth-ecs-runner",
            &format!("events/ecs-runner-{warning}.json"),
        );
        // Not one of this cluster's instances: nothing drained.
        assert_eq!(answer["drained"], serde_json::Value::Null, "{answer}");
        assert!(answer["instance_id"].as_str().is_some(), "{answer}");
    }
    // An instance registered: no job waits for capacity, none released.
    let answer = watch.invoke_file(
        "berth-ecs-runner",
        "events/ecs-runner-instance-registered.json",
    );
    assert_eq!(answer["released"], serde_json::json!([]), "{answer}");
    let answer = watch.invoke_file("berth-ecs-runner", "events/ecs-runner-schedule.json");
    assert_eq!(
        answer,
        serde_json::json!({ "reconciled": [], "timed_out": [], "requeued": [], "released": [], "no_capacity": [], "dependencies": [], "errors": 0 })
    );

    // The capacity metric on its schedule sample: two c5.xlarge holding 3
    // largest containers each and a g4dn.xlarge holding 4, two of them
    // taken by the EC2 jobs above (the GPU job's on the g4dn.xlarge).
    let report = watch.invoke_file(
        "berth-capacity-metric",
        "events/capacity-metric-schedule.json",
    );
    assert_eq!(
        report["schedulable_containers"],
        serde_json::json!(8),
        "{}",
        watch.output()
    );
    assert_eq!(
        report["scaling"],
        serde_json::Value::Null,
        "no instance group here"
    );

    // The task processor's runtime on its sample invocation: it runs the
    // job's command and records the job.
    let sample: LambdaTask = serde_json::from_str(
        &std::fs::read_to_string(
            berth_tests::workspace_root().join("events/task-processor-invoke.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let store = stack.store();
    store
        .accept(&sample.job, "sample-message", 0)
        .await
        .unwrap();
    let change = Change {
        route: Some(Route::Lambda),
        add_attempt: true,
        expect_launch: Some(sample.launch),
        ..Change::default()
    };
    store
        .transition(&sample.job.job_id, JobStatus::Dispatched, change, 1)
        .await
        .unwrap();
    let answer = watch.invoke_file(
        "berth-lambda-task-processor",
        "events/task-processor-invoke.json",
    );
    assert_eq!(answer["job_id"], "sample-task", "{answer}");
    assert_eq!(
        (&answer["ran"], &answer["status"], &answer["exit_code"]),
        (
            &serde_json::json!(true),
            &serde_json::json!("SUCCEEDED"),
            &serde_json::json!(0)
        ),
        "{answer}"
    );
    let r = stack.record("sample-task").await;
    assert_eq!(
        (r.status, r.exit_code),
        (JobStatus::Succeeded, Some(0)),
        "{r:?}\n{}",
        watch.output()
    );
    let output = watch.output();
    assert!(
        output.contains("thumbnail of s3://bucket/in.png"),
        "{output}"
    );
    assert!(output.contains("resized to 256"), "{output}");
    // Lambda delivering the same event again runs nothing.
    let again = watch.invoke_file(
        "berth-lambda-task-processor",
        "events/task-processor-invoke.json",
    );
    assert_eq!(again["ran"], false, "{again}");
    assert_eq!(again["status"], "SUCCEEDED", "{again}");
    assert_eq!(watch.output().matches("thumbnail of s3://").count(), 1);
}
