//! The capacity metric over 1,000 and 10,000 container instances. ECS is a
//! loopback endpoint answering ListContainerInstances and
//! DescribeContainerInstances with ECS's real response shapes after a fixed
//! latency; CloudWatch is the local AWS.
//!
//! Prints wall time, AWS calls and CPU per instance for each size (the
//! metric thread's CPU for the whole run: the SDK reading ECS's answers, and
//! berth's counting, also shown alone; medians of five runs), then the
//! ratio 10k / 1k. Targets: calls = ceil(N/100) list + ceil(N/100) describe;
//! 10k / 1k wall <= 10; compute per instance <= 20 µs. Exits non-zero when a
//! target is missed.
//!
//! `make bench-capacity`; `BERTH_BENCH_LATENCY_MS` sets the latency (default 20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecs::config::Credentials;
use berth_capacity_metric::CapacityMetric;
use berth_core::capacity::{
    ContainerInstance, InstanceStatus, LargestContainer, Resources, schedulable_containers,
};
use berth_tests::{TestAccount, thread_cpu};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CLUSTER: &str = "berth";
/// Measured runs per size; the figures are their medians.
const RUNS: usize = 5;

// As in the function's binary.
#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

fn main() {
    let latency = Duration::from_millis(
        std::env::var("BERTH_BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let largest = LargestContainer::new(1024, 4096).unwrap();
    println!("capacity metric, {} ms per ECS call", latency.as_millis());
    println!(
        "{:>9} {:>10} {:>7} {:>10} {:>18}",
        "instances", "wall ms", "lists", "describes", "CPU/instance µs"
    );

    let mut walls = Vec::new();
    let mut ok = true;
    for n in [1_000usize, 10_000] {
        let endpoint = server_rt.block_on(fake_ecs(n, latency));
        let (wall, cpu, report) = rt.block_on(async {
            let aws = TestAccount::new().await;
            let ecs_config = aws_sdk_ecs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .endpoint_url(&endpoint)
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
                .build();
            let metric = CapacityMetric {
                cluster: berth_aws::EcsCluster::new(
                    aws_sdk_ecs::Client::from_conf(ecs_config),
                    CLUSTER,
                    berth_aws::ecs::Launching::default(),
                ),
                metrics: berth_aws::metrics::ClusterMetrics::new(
                    aws.clients.cloudwatch.clone(),
                    CLUSTER,
                ),
                definitions: berth_aws::Definitions::new(aws.clients.dynamodb.clone(), "unused"),
                largest: Some(largest),
                scaler: None,
                schedule: None,
            };
            metric.run(false).await.unwrap(); // warm the connections
            // The median of a few runs: this machine's other work shows
            // in any one of them.
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                let (cpu0, t0) = (thread_cpu(), Instant::now());
                let report = metric.run(false).await.unwrap();
                runs.push((t0.elapsed(), thread_cpu() - cpu0, report));
            }
            let mut walls: Vec<Duration> = runs.iter().map(|r| r.0).collect();
            let mut cpus: Vec<Duration> = runs.iter().map(|r| r.1).collect();
            walls.sort();
            cpus.sort();
            let report = runs.pop().unwrap().2;
            (walls[RUNS / 2], cpus[RUNS / 2], report)
        });
        let expected_calls = n.div_ceil(100);
        let parsed: Vec<ContainerInstance> = (0..n).map(|i| instance(i).0).collect();
        // berth's own counting, apart from the SDK's reading of ECS's answers.
        let t = Instant::now();
        let expected_metric = std::hint::black_box(schedulable_containers(
            std::hint::black_box(&parsed),
            largest,
        ));
        let count_ns = t.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(
            report.schedulable_containers, expected_metric,
            "the metric over the fake cluster"
        );
        let cpu_us = cpu.as_secs_f64() * 1e6 / n as f64;
        let wall_ms = wall.as_secs_f64() * 1000.0;
        println!(
            "{n:>9} {wall_ms:>10.1} {:>7} {:>10} {cpu_us:>18.2}",
            report.calls.0, report.calls.1
        );
        let calls_ok = report.calls == (expected_calls, expected_calls);
        println!(
            "    calls: {} list + {} describe (target {expected_calls} + {expected_calls}: {})",
            report.calls.0,
            report.calls.1,
            verdict(calls_ok)
        );
        println!(
            "    CPU per instance: {cpu_us:.2} µs, of which counting {count_ns:.1} ns (target <= 20 µs: {})",
            verdict(cpu_us <= 20.0)
        );
        ok &= calls_ok && cpu_us <= 20.0;
        walls.push(wall_ms);
    }
    let ratio = walls[1] / walls[0];
    println!(
        "10k / 1k wall: {ratio:.2} (target <= 10: {})",
        verdict(ratio <= 10.0)
    );
    if !(ok && ratio <= 10.0) {
        std::process::exit(1);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Instance `i` of the fake cluster: 8 vCPU / 32 GiB, `i % 8` largest
/// containers running, every tenth one draining.
fn instance(i: usize) -> (ContainerInstance, Resources) {
    let used = (i % 8) as u32;
    let status = if i % 10 == 9 {
        InstanceStatus::Draining
    } else {
        InstanceStatus::Active
    };
    let remaining = Resources {
        cpu: 8192 - used * 1024,
        memory: 32_768 - used * 4096,
    };
    (
        ContainerInstance {
            status,
            agent_connected: true,
            remaining,
        },
        Resources {
            cpu: 8192,
            memory: 32_768,
        },
    )
}

fn arn(i: usize) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:container-instance/{CLUSTER}/{i:032x}")
}

fn resources(r: Resources) -> Value {
    json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": r.cpu, "doubleValue": 0.0, "longValue": 0},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": r.memory, "doubleValue": 0.0, "longValue": 0},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"],
         "doubleValue": 0.0, "longValue": 0, "integerValue": 0},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": [], "doubleValue": 0.0, "longValue": 0, "integerValue": 0}
    ])
}

/// A DescribeContainerInstances entry as ECS writes it (attributes trimmed
/// to a representative dozen of the forty or so a real instance has).
fn described(i: usize) -> Value {
    let (ci, registered) = instance(i);
    let attributes: Vec<Value> = [
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.ecr-auth",
        "com.amazonaws.ecs.capability.docker-remote-api.1.44",
        "ecs.capability.task-eni",
        "ecs.capability.container-health-check",
        "ecs.capability.efsAuth",
        "ecs.capability.secrets.ssm.environment-variables",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "ecs.capability.aws-appmesh",
    ]
    .iter()
    .map(|name| json!({"name": name}))
    .chain([
        json!({"name": "ecs.instance-type", "value": "m4.2xlarge"}),
        json!({"name": "ecs.os-type", "value": "linux"}),
        json!({"name": "ecs.availability-zone", "value": "us-east-1a"}),
    ])
    .collect();
    json!({
        "containerInstanceArn": arn(i),
        "ec2InstanceId": format!("i-{i:017x}"),
        "version": 12,
        "versionInfo": {"agentVersion": "1.89.0", "agentHash": "b1a4fe6c", "dockerVersion": "DockerVersion: 25.0.8"},
        "remainingResources": resources(ci.remaining),
        "registeredResources": resources(registered),
        "status": if ci.status == InstanceStatus::Draining { "DRAINING" } else { "ACTIVE" },
        "agentConnected": true,
        "runningTasksCount": i % 8,
        "pendingTasksCount": 0,
        "attributes": attributes,
        "registeredAt": 1.7953e9,
        "attachments": [],
        "tags": []
    })
}

/// Serves ECS's two calls over a cluster of `n` instances on a loopback
/// port, each answer after `latency`; returns its URL.
async fn fake_ecs(n: usize, latency: Duration) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let target = req
                        .headers()
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body: Value = serde_json::from_slice(
                        &req.into_body().collect().await.unwrap().to_bytes(),
                    )
                    .unwrap_or_default();
                    tokio::time::sleep(latency).await;
                    let answer = match target.rsplit('.').next().unwrap_or("") {
                        "ListContainerInstances" => {
                            let start: usize = body["nextToken"]
                                .as_str()
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                            let page = body["maxResults"].as_u64().unwrap_or(100) as usize;
                            let end = (start + page).min(n);
                            let mut out = json!({"containerInstanceArns": (start..end).map(arn).collect::<Vec<_>>()});
                            if end < n {
                                out["nextToken"] = json!(end.to_string());
                            }
                            out
                        }
                        "DescribeContainerInstances" => {
                            let ids: Vec<usize> = body["containerInstances"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|a| {
                                    usize::from_str_radix(
                                        a.as_str().unwrap().rsplit('/').next().unwrap(),
                                        16,
                                    )
                                    .unwrap()
                                })
                                .collect();
                            json!({"containerInstances": ids.into_iter().map(described).collect::<Vec<_>>(), "failures": []})
                        }
                        other => json!({"__type": "UnknownOperationException", "message": other}),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
                    response.headers_mut().insert(
                        "content-type",
                        "application/x-amz-json-1.1".parse().unwrap(),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    endpoint
}
