//! `sam local invoke`: what `sam build` makes of the template, run in
//! Lambda's emulator with each sample event against a local run.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{local_aws, workspace_root};

use crate::local_run::{Run, berth_with, kept_state, watched};

/// Where `make sam-local` builds the zip functions for this machine.
const TEMPLATE: &str = ".aws-sam/local/template.yaml";
/// The base image `scripts/local-images` makes in place of Lambda's public one.
const BASE_IMAGE: &str = "berth-local/lambda-base:1";
/// berth's engine's bridge (scripts/local-engine): this machine's address
/// there is where its containers reach the run.
const BRIDGE: &str = "berth0";
const GATEWAY: &str = "172.30.99.1";

/// The image function's sample: `sam local invoke` would build its image
/// from public base images, which this machine does not reach.
const IMAGE_FUNCTION_SAMPLE: &str = "task-processor-invoke.json";

/// Each sample event of a zip function, with the function it is for, as
/// `sam local invoke` runs it (in a container of `BASE_IMAGE` on the bridge)
/// against a local run: each answer is checked, and the effect where the
/// sample has one. Every call of the functions goes to the run: their
/// endpoints are the run's address on the bridge (the file `--sam-host`
/// writes), this machine forwards nothing from that bridge, and the run
/// tells each call it serves them.
#[test]
#[ignore = "needs `make sam-local`'s build and base image and berth's engine; `make sam-local` runs it"]
fn sam_local_invoke_answers_every_sample_event_against_the_local_run() {
    let _aws = local_aws();
    let root = workspace_root();
    let template = root.join(TEMPLATE);
    assert!(
        template.exists(),
        "no {TEMPLATE}: `make sam-local` builds it"
    );
    let forwarding =
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding"))
            .unwrap_or_else(|e| panic!("no {BRIDGE} ({e}): `make engine` makes it"));
    assert_eq!(
        forwarding.trim(),
        "0",
        "this machine forwards what comes from {BRIDGE}"
    );
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| {
        format!(
            "unix://{}",
            root.join(".local-aws/engine/docker.sock").display()
        )
    });

    let state = kept_state("sam");
    let env_file = std::env::temp_dir().join(format!("berth-sam-env-{}.json", std::process::id()));
    let run = Run::start(
        &state,
        &[
            "--reset",
            "--sam-host",
            GATEWAY,
            "--sam-env",
            env_file.to_str().unwrap(),
        ],
    );
    assert!(
        run.seen.contains(&format!(
            "the local AWS for containers at http://{GATEWAY}:"
        )),
        "{}",
        run.seen
    );
    let vars: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env_file).unwrap()).unwrap();
    let vars = vars["Parameters"].as_object().unwrap().clone();
    let endpoint = vars["AWS_ENDPOINT_URL"].as_str().unwrap().to_owned();
    assert!(
        endpoint.starts_with(&format!("http://{GATEWAY}:")),
        "{endpoint}"
    );
    assert_eq!(vars["AWS_ENDPOINT_URL_LAMBDA"], endpoint.as_str());
    for (name, value) in &vars {
        let value = value.as_str().unwrap();
        assert!(
            !value.contains("://") || value.starts_with(&endpoint),
            "{name}={value} is not at {endpoint}"
        );
    }

    let exports = run.exports.clone();
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    };
    let invoke = |function: &str, event: &str| -> (serde_json::Value, String) {
        let started = Instant::now();
        let out = Command::new(root.join(".venv/bin/sam"))
            .args(["local", "invoke", "--template"])
            .arg(&template)
            .args([function, "--event"])
            .arg(root.join("events").join(event))
            .arg("--env-vars")
            .arg(&env_file)
            .args([
                "--invoke-image",
                BASE_IMAGE,
                "--skip-pull-image",
                "--parameter-overrides",
                &format!("Architecture={arch}"),
            ])
            .current_dir(&root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("DOCKER_HOST", &docker_host)
            .env("SAM_CLI_TELEMETRY", "0")
            .envs(exports.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "sam local invoke {function} -e {event}:\n{stdout}\n{stderr}"
        );
        // The emulator ran the function's one invocation to its end.
        assert!(stderr.contains("END RequestId"), "{stderr}");
        assert!(!stderr.contains("dispatch failure"), "{stderr}");
        // The base image has CA certificates, as Lambda's has.
        assert!(
            !stderr.contains("no native root CA certificates"),
            "{stderr}"
        );
        let answer = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no answer from {function}:\n{stderr}"));
        let answer: serde_json::Value = serde_json::from_str(answer)
            .unwrap_or_else(|e| panic!("{function} answered {answer:?}: {e}\n{stderr}"));
        println!(
            "sam local invoke {function} -e events/{event} ({:.1} s): {answer}",
            started.elapsed().as_secs_f64()
        );
        (answer, stderr)
    };
    // The run's lines of the calls the containers made, after an
    // invocation: it tells them each second.
    let calls = || -> String {
        let mut told = String::new();
        let mut deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = run
            .output
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains("containers' calls to the local AWS:") {
                told.push_str(&line);
                told.push('\n');
                deadline = Instant::now() + Duration::from_millis(2500);
            }
        }
        assert!(!told.is_empty(), "the run served no call of the containers");
        print!("  the run: {told}");
        told
    };

    let mut samples: Vec<String> = std::fs::read_dir(root.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    samples.sort();
    let mut invoked = Vec::new();

    // The driver: five messages; each job recorded and routed, and run.
    let (answer, _) = invoke("DriverFunction", "driver-sqs.json");
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
    let served = calls();
    for op in ["dynamodb:PutItem", "ecs:RunTask", "lambda:Invoke"] {
        assert!(served.contains(op), "{op}: {served}");
    }
    let jobs = watched(
        &exports,
        &[
            "sample-lambda",
            "sample-ec2",
            "sample-fargate",
            "sample-gpu",
        ],
        120,
    );
    let status = |id: &str| jobs[id].clone();
    assert_eq!(status("sample-lambda")["status"], "SUCCEEDED", "{jobs:?}");
    assert_eq!(status("sample-lambda")["route"], "LAMBDA", "{jobs:?}");
    // No instance, and none would cost less for them: Fargate Spot.
    for id in ["sample-ec2", "sample-fargate"] {
        assert_eq!(status(id)["status"], "SUCCEEDED", "{jobs:?}");
        assert_eq!(status(id)["route"], "FARGATE_SPOT", "{jobs:?}");
    }
    // A GPU job, which an allowed type holds, but only EC2 runs, and the
    // sample's message was sent more than six hours ago: FAILED at once
    // with the reason, as a job that waited that long for capacity.
    assert_eq!(status("sample-gpu")["status"], "FAILED", "{jobs:?}");
    assert!(
        status("sample-gpu")["reason"]
            .as_str()
            .unwrap()
            .starts_with("no capacity within 21600 s"),
        "{jobs:?}"
    );
    let (_, logs, _) = berth_with(&exports, &["logs", "sample-lambda"]);
    assert!(logs.contains("thumbnail of s3://bucket/in.png"), "{logs}");
    let rejected = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e105";
    let (_, shown, _) = berth_with(&exports, &["--output", "json", "status", rejected]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "REJECTED", "{shown}");
    assert!(
        shown["reason"].as_str().unwrap().contains("cpus"),
        "{shown}"
    );
    // Again: each job id is recorded once, nothing runs twice.
    let (answer, _) = invoke("DriverFunction", "driver-sqs.json");
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
    let served = calls();
    assert!(!served.contains("ecs:RunTask"), "{served}");
    assert!(!served.contains("lambda:Invoke"), "{served}");
    let (_, again, _) = berth_with(&exports, &["--output", "json", "status", "sample-lambda"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["status"], "SUCCEEDED");
    assert_eq!(again["attempts"], 1, "{again}");
    invoked.push("driver-sqs.json");

    // The capacity metric and its scaler, on the run's cluster.
    let (answer, _) = invoke("CapacityMetricFunction", "capacity-metric-schedule.json");
    assert!(answer["schedulable_containers"].is_u64(), "{answer}");
    // The run's definitions were read: the largest container is theirs,
    // and an allowed type holds each.
    assert_eq!(
        answer["largest"],
        serde_json::json!({"cpu": 1024, "memory": 2048}),
        "{answer}"
    );
    assert_eq!(answer["unplaceable"], serde_json::json!([]), "{answer}");
    // With no instance and nothing unplaceable it publishes nothing (a
    // metric costs in the hours it is emitted).
    let served = calls();
    assert!(served.contains("ecs:ListContainerInstances"), "{served}");
    assert!(served.contains("dynamodb:Scan"), "{served}");
    assert!(!served.contains("cloudwatch:PutMetricData"), "{served}");
    invoked.push("capacity-metric-schedule.json");

    // The sweep: every job has ended, so nothing to do, and no error.
    let (answer, _) = invoke("EcsRunnerFunction", "ecs-runner-schedule.json");
    assert_eq!(
        answer,
        serde_json::json!({"reconciled": [], "timed_out": [], "requeued": [], "released": [], "no_capacity": [], "dependencies": [], "errors": 0})
    );
    assert!(calls().contains("dynamodb:Query"));
    invoked.push("ecs-runner-schedule.json");

    // Task events of a job this account never recorded.
    for event in [
        "ecs-runner-task-running.json",
        "ecs-runner-task-stopped-failed.json",
        "ecs-runner-task-stopped-spot.json",
        "ecs-runner-task-stopped-succeeded.json",
    ] {
        let (answer, _) = invoke("EcsRunnerFunction", event);
        assert_eq!(answer["action"], "ignored", "{answer}");
        assert_eq!(
            answer["reason"], "no job `job-0001` is recorded",
            "{answer}"
        );
        assert!(calls().contains("dynamodb:GetItem"));
        invoked.push(event);
    }
    // An instance the run's cluster does not have: nothing drained.
    for event in [
        "ecs-runner-spot-warning.json",
        "ecs-runner-rebalance-recommendation.json",
    ] {
        let (answer, _) = invoke("EcsRunnerFunction", event);
        assert_eq!(answer["instance_id"], "i-0a1b2c3d4e5f67890", "{answer}");
        assert!(answer["drained"].is_null(), "{answer}");
        assert!(calls().contains("ecs:ListContainerInstances"));
        invoked.push(event);
    }

    // An instance registered: no job waits for capacity, none released.
    let (answer, _) = invoke("EcsRunnerFunction", "ecs-runner-instance-registered.json");
    assert_eq!(answer["released"], serde_json::json!([]), "{answer}");
    assert!(calls().contains("dynamodb:Query"));
    invoked.push("ecs-runner-instance-registered.json");

    invoked.push(IMAGE_FUNCTION_SAMPLE);
    invoked.sort_unstable();
    assert_eq!(
        samples, invoked,
        "every sample event is invoked (a new one needs its check here)"
    );
    run.stop();
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(&env_file);
}
