//! What AWS does around berth's functions and the local AWS does not: the
//! SQS event source mapping, asynchronous Lambda invokes, ECS task state
//! change events, and the schedules. With no Docker engine, the containers
//! of ECS tasks are played: a task "runs" for its job's `PLAY_SECONDS`
//! (default 4) and exits with `PLAY_EXIT` (default 0); with
//! `PLAY_INTERRUPT` set, its first launch is reclaimed as a Spot
//! interruption. Lambda jobs run for real, in the task processor under
//! `cargo lambda watch`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_ecs::types::{DesiredStatus, Task};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_sqs::config::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Local;

/// Invokes `function` under `cargo lambda watch` and returns its answer.
pub async fn invoke(local: &Local, function: &str, payload: &Value) -> Result<Value, String> {
    let out = local
        .watch_lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload.to_string()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "invoke {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match out.function_error {
        Some(kind) => Err(format!("{function} failed ({kind}): {value}")),
        None => Ok(value),
    }
}

/// An asynchronous invocation as Lambda makes it (EventBridge rules,
/// schedules): tried up to three times, then given up to the on-failure
/// destination (counted in `lost_events`). The answer, when there is one.
pub async fn invoke_event(local: &Local, function: &str, payload: &Value) -> Option<Value> {
    let mut last = String::new();
    for _ in 0..3 {
        match invoke(local, function, payload).await {
            Ok(answer) => return Some(answer),
            Err(e) => last = e,
        }
    }
    local
        .lost_events
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    eprintln!("local: an event for {function} went to its on-failure destination: {last}");
    None
}

/// The SQS event source mapping: hands what the queue delivers to the
/// driver in batches of up to 10 and deletes the messages it does not name
/// as failures. Returns how many messages it handed over.
pub async fn deliver_queue(local: &Local) -> Result<usize, String> {
    let sqs = &local.clients.sqs;
    let records =
        berth_local::sqs::receive(sqs, &local.queue_url, &local.region, &local.account).await?;
    if records.is_empty() {
        return Ok(0);
    }
    local
        .delivered
        .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let crash_rate = local
        .faults
        .as_ref()
        .and_then(|p| p.faults())
        .map_or(0.0, |f| f.rate);
    if berth_local::proxy::rand_unit() < crash_rate {
        // A driver that stops part way through the batch: after a few of
        // its AWS calls every call fails, as if its process had ended
        // there. Its answer is lost with it, so the batch's messages come
        // back when their visibility ends, as they would on AWS.
        let calls = (berth_local::proxy::rand_unit() * 10.0) as u32;
        let clients = berth_aws::Clients::with_interceptors(
            &local.sdk_config,
            &[SharedInterceptor::new(StopAfter::new(calls))],
        );
        let driver =
            berth_driver::Driver::new(&local.settings, &clients, berth_driver::Tuning::default());
        driver.handle_batch(records.clone()).await;
        local
            .crashed_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(records.len());
    }
    let mut event = SqsEvent::default();
    event.records = records.clone();
    let answer = match invoke(
        local,
        "berth-driver",
        &serde_json::to_value(&event).map_err(|e| e.to_string())?,
    )
    .await
    {
        Ok(answer) => answer,
        // The whole batch failed: its messages come back when their
        // visibility ends, as with Lambda's event source mapping.
        Err(e) => {
            eprintln!("local: the driver failed a batch: {e}");
            return Ok(0);
        }
    };
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for r in &records {
        if failed.contains(&r.message_id.as_deref().unwrap_or("")) {
            continue;
        }
        if let Some(handle) = &r.receipt_handle {
            sqs.delete_message()
                .queue_url(&local.queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| format!("delete: {e}"))?;
        }
    }
    Ok(records.len())
}

/// Lets the first `calls` AWS calls of a client through and fails every
/// call after them, as if the process making them had ended.
#[derive(Debug)]
struct StopAfter(std::sync::atomic::AtomicU32);

impl StopAfter {
    fn new(calls: u32) -> Self {
        Self(calls.into())
    }
}

impl Intercept for StopAfter {
    fn name(&self) -> &'static str {
        "StopAfter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let left = self.0.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        match left {
            Ok(_) => Ok(()),
            Err(_) => Err("the driver's process ended".into()),
        }
    }
}

/// The function every Lambda-route job of the local run runs in.
pub const TASK_FUNCTION: &str = "berth-lambda-task-processor";

/// Sends the task runtime's tagged lines (`lines`) to the log group of
/// [`TASK_FUNCTION`], a batch at a time, until the sender is gone.
pub async fn lambda_logs(
    logs: berth_aws::logs::JobLogs,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<(i64, String)>,
) {
    let group = berth_core::logs::lambda_log_group(TASK_FUNCTION);
    let stream = "local/[$LATEST]cargo-lambda-watch";
    let mut batch = Vec::new();
    while lines.recv_many(&mut batch, 1_000).await > 0 {
        if let Err(e) = logs.put(&group, stream, &batch).await {
            eprintln!(
                "local: {} lines of Lambda-route jobs not logged: {e}",
                batch.len()
            );
        }
        batch.clear();
    }
}

/// The containers being played, by task ARN.
#[derive(Debug, Default)]
pub struct Containers {
    running: HashMap<String, Played>,
}

#[derive(Debug)]
struct Played {
    since: Instant,
    seconds: u64,
    exit: i32,
    interrupt: bool,
    container: String,
    command: Option<Vec<String>>,
    /// Where its container's output goes: the awslogs stream of its task
    /// definition, as ECS's log driver names it.
    log: Option<berth_aws::logs::Source>,
}

impl Played {
    /// Writes `line` as the container's output.
    async fn say(&self, local: &Local, line: String) {
        let Some(berth_aws::logs::Source::Stream { group, stream }) = &self.log else {
            return;
        };
        let event = [(berth_aws::store::now_ms(), line)];
        if let Err(e) = local.job_logs.put(group, stream, &event).await {
            eprintln!("local: a played container's line not logged: {e}");
        }
    }
}

/// The awslogs stream of `task`'s `container`, if its task definition has one.
async fn log_stream(
    local: &Local,
    task: &Task,
    container: &str,
) -> Option<berth_aws::logs::Source> {
    let arn = task.task_arn()?;
    let ecs = berth_aws::EcsCluster::for_deployment(&local.settings, &local.clients);
    let definition = task.task_definition_arn().unwrap_or_default();
    let (driver, options) = ecs
        .container_log_configuration(arn, definition, container)
        .await
        .ok()??;
    let logs =
        berth_core::logs::AwsLogs::from_options(container, driver.as_deref(), &options).ok()?;
    let stream = logs.stream(container, arn).ok()?;
    Some(berth_aws::logs::Source::Stream {
        group: logs.group,
        stream,
    })
}

impl Containers {
    /// Reports new tasks as RUNNING, ends those whose time is up, and
    /// reports tasks berth stopped (cancel, timeout) as STOPPED.
    pub async fn play(&mut self, local: &Local) -> Result<(), String> {
        let ecs = &local.clients.ecs;
        let listed = ecs
            .list_tasks()
            .cluster(&local.cluster)
            .desired_status(DesiredStatus::Running)
            .send()
            .await
            .map_err(|e| format!("list tasks: {e}"))?
            .task_arns
            .unwrap_or_default();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|arn| !listed.contains(arn))
            .cloned()
            .collect();
        let mut arns = listed;
        arns.extend(gone.iter().cloned());
        let described = berth_local::moto::describe_tasks(ecs, &local.cluster, &arns).await?;
        for task in described {
            let arn = task.task_arn.clone().unwrap_or_default();
            if gone.contains(&arn) {
                // Stopped by someone else (berth's cancel or timeout).
                let played = self.running.remove(&arn);
                let reason = task.stopped_reason.clone().unwrap_or_default();
                if let Some(p) = &played {
                    p.say(local, format!("[berth-local] stopped (SIGTERM): {reason}"))
                        .await;
                }
                let container = played.map_or_else(|| "main".to_owned(), |p| p.container);
                let event = task_event(
                    local,
                    &task,
                    "STOPPED",
                    &container,
                    Some(("UserInitiated", reason.as_str(), Some(143))),
                );
                invoke_event(local, "berth-ecs-runner", &event).await;
                continue;
            }
            match self.running.get(&arn) {
                None => {
                    let mut played = played(&task);
                    played.log = log_stream(local, &task, &played.container).await;
                    let command = played.command.as_ref().map_or_else(
                        || "the image's command".to_owned(),
                        |c| format!("`{}`", c.join(" ")),
                    );
                    let line = format!(
                        "[berth-local] a played container (no Docker engine): {command}, for {} s (PLAY_SECONDS), then {}",
                        played.seconds,
                        if played.interrupt {
                            "a Spot interruption (PLAY_INTERRUPT)".to_owned()
                        } else {
                            format!("exit code {} (PLAY_EXIT)", played.exit)
                        }
                    );
                    played.say(local, line).await;
                    let event = task_event(local, &task, "RUNNING", &played.container, None);
                    self.running.insert(arn, played);
                    invoke_event(local, "berth-ecs-runner", &event).await;
                }
                Some(p) if p.since.elapsed() >= Duration::from_secs(p.seconds) => {
                    let end = if p.interrupt {
                        "[berth-local] reclaimed: the Spot instance was interrupted".to_owned()
                    } else {
                        format!("[berth-local] exit code {}", p.exit)
                    };
                    p.say(local, end).await;
                    let stop = if p.interrupt {
                        ("SpotInterruption", "Your Spot Task was interrupted.", None)
                    } else {
                        (
                            "EssentialContainerExited",
                            "Essential container in task exited",
                            Some(p.exit),
                        )
                    };
                    let event = task_event(local, &task, "STOPPED", &p.container, Some(stop));
                    self.running.remove(&arn);
                    // Free the task's room in the local ECS first, as the
                    // container would have.
                    ecs.stop_task()
                        .cluster(&local.cluster)
                        .task(&arn)
                        .reason("container exited")
                        .send()
                        .await
                        .map_err(|e| format!("stop task: {e}"))?;
                    invoke_event(local, "berth-ecs-runner", &event).await;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn played(task: &Task) -> Played {
    let overrides = task
        .overrides()
        .map(|o| o.container_overrides())
        .unwrap_or_default();
    let first = overrides.first();
    let env = |name: &str| {
        first.and_then(|c| {
            c.environment()
                .iter()
                .find(|kv| kv.name() == Some(name))
                .and_then(|kv| kv.value().map(str::to_owned))
        })
    };
    let first_launch = env("BERTH_LAUNCH").as_deref() == Some("1");
    Played {
        since: Instant::now(),
        seconds: env("PLAY_SECONDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(4),
        exit: env("PLAY_EXIT").and_then(|s| s.parse().ok()).unwrap_or(0),
        interrupt: first_launch && env("PLAY_INTERRUPT").is_some(),
        container: first
            .and_then(|c| c.name().map(str::to_owned))
            .unwrap_or_else(|| "main".into()),
        command: first
            .map(|c| c.command().to_vec())
            .filter(|c| !c.is_empty()),
        log: None,
    }
}

fn task_event(
    local: &Local,
    task: &Task,
    status: &str,
    container: &str,
    stop: Option<(&str, &str, Option<i32>)>,
) -> Value {
    let mut detail = json!({
        "clusterArn": task.cluster_arn(),
        "taskArn": task.task_arn(),
        "lastStatus": status,
        "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "startedBy": task.started_by(),
        "launchType": task.launch_type().map(|l| l.as_str()),
        "containers": [{ "name": container, "lastStatus": status }],
    });
    if let Some((code, reason, exit)) = stop {
        detail["stopCode"] = code.into();
        detail["stoppedReason"] = reason.into();
        detail["containers"][0]["exitCode"] = json!(exit);
    }
    json!({
        "version": "0",
        "id": format!("local-{}", local.next_id()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": local.account,
        "region": local.region,
        "resources": [task.task_arn()],
        "detail": detail,
    })
}

/// A schedule's event, for the capacity metric and the timeout sweep.
pub fn scheduled(local: &Local) -> Value {
    json!({
        "version": "0",
        "id": format!("local-{}", local.next_id()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": local.account,
        "region": local.region,
        "resources": [],
        "detail": {},
    })
}

/// Lambda's asynchronous invoke, which `cargo lambda watch` answers only
/// when the function returns: this endpoint answers 202 at once and hands
/// the event to the watch server in the background. The driver's Lambda
/// client points here. Returns its URL.
pub async fn async_invoke_endpoint(watch_url: String) -> Result<String, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| e.to_string())?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (client, watch_url) = (client.clone(), watch_url.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (client, watch_url) = (client.clone(), watch_url.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        // Lambda tries an asynchronous invocation that
                        // fails up to three times.
                        tokio::spawn(async move {
                            let mut last = String::new();
                            for _ in 0..3 {
                                match client
                                    .post(format!("{watch_url}{path}"))
                                    .body(body.clone())
                                    .send()
                                    .await
                                {
                                    Ok(r)
                                        if r.status().is_success()
                                            && !r
                                                .headers()
                                                .contains_key("x-amz-function-error") =>
                                    {
                                        return;
                                    }
                                    Ok(r) => last = format!("the function failed ({})", r.status()),
                                    Err(e) => last = e.to_string(),
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            eprintln!(
                                "local: an asynchronous invoke went to its on-failure destination: {last}"
                            );
                        });
                        let mut answer = Response::new(Full::new(Bytes::new()));
                        *answer.status_mut() = StatusCode::ACCEPTED;
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}
