//! What AWS does around berth's functions and the local AWS does not: the
//! SQS event source mapping, asynchronous Lambda invokes, ECS task state
//! change events, and the schedules. An ECS task's container runs for real
//! on the Docker engine when the run has one (`berth_local::engine`): its
//! task definition's image and container with the task's overrides, its
//! output copied to its awslogs stream, stopped with SIGTERM and then
//! SIGKILL after its `stopTimeout`, and its real exit code in the STOPPED
//! event. Without an engine it is played: the task "runs" for its job's
//! `PLAY_SECONDS` (default 4) and exits with `PLAY_EXIT` (default 0). Either
//! way, with `PLAY_INTERRUPT` set, its first launch is reclaimed as a Spot
//! interruption halfway through its `PLAY_SECONDS`; with `PLAY_SPOT_SHORTFALL`
//! set to N, Fargate Spot has no capacity for it from its launch N on (the
//! local AWS answers RunTask with no task). Lambda jobs run for
//! real, in the task processor under `cargo lambda watch`, on the host.

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

use berth_local::engine::{Engine, Spec, State};

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
    let fault_rate = local
        .faults
        .as_ref()
        .and_then(|p| p.faults())
        .map_or(0.0, |f| f.rate);
    if berth_local::proxy::rand_unit() < fault_rate {
        // A driver held back (the account's concurrency taken by other
        // functions): the event source received the batch, SQS counted the
        // receives, and no driver ever sees it. It comes back when its
        // visibility ends.
        local
            .throttled_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(0);
    }
    local
        .delivered
        .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if berth_local::proxy::rand_unit() < fault_rate {
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

/// The label that names the account of the run a container is of.
pub const ACCOUNT_LABEL: &str = "berth.account";

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

/// The containers of the local ECS's tasks, by task ARN: real ones on the
/// Docker engine when the run has one ([`Local::engine`]), else played.
#[derive(Debug, Default)]
pub struct Containers {
    running: HashMap<String, Played>,
    /// What a task definition's container runs, by task definition ARN and
    /// container name.
    definitions: HashMap<(String, String), Option<ContainerFacts>>,
}

/// A task definition's container, as a container of it runs.
#[derive(Debug, Clone)]
struct ContainerFacts {
    image: String,
    command: Option<Vec<String>>,
    environment: Vec<(String, String)>,
    cpu: Option<u32>,
    memory: Option<u32>,
    /// ECS's `stopTimeout`: between SIGTERM and SIGKILL (30 s by default).
    stop_timeout: Duration,
    /// Its `awslogs` configuration, if it logs to CloudWatch Logs.
    logs: Option<berth_core::logs::AwsLogs>,
}

/// A container on the engine.
#[derive(Debug)]
struct Real {
    id: String,
    /// The copy of its lines to its awslogs stream; done once it has ended.
    logs: tokio::task::JoinHandle<()>,
    grace: Duration,
}

#[derive(Debug)]
struct Played {
    since: Instant,
    /// When it started, epoch milliseconds (its task's `startedAt`; the
    /// local engine pulls nothing, so its `pullStartedAt` too).
    started_ms: i64,
    seconds: u64,
    exit: i32,
    interrupt: bool,
    container: String,
    command: Option<Vec<String>>,
    /// Where its container's output goes: the awslogs stream of its task
    /// definition, as ECS's log driver names it.
    log: Option<berth_aws::logs::Source>,
    /// The real container, when the run has an engine.
    real: Option<Real>,
}

impl Played {
    /// Whether its time is up: its `PLAY_SECONDS` are over, or, for a launch
    /// to be interrupted, half of them (the instance is reclaimed while the
    /// job works).
    fn due(&self) -> bool {
        let after = if self.interrupt {
            (self.seconds / 2).max(1)
        } else {
            self.seconds
        };
        self.since.elapsed() >= Duration::from_secs(after)
    }

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

impl Containers {
    /// Reports new tasks as RUNNING (starting their container on the engine
    /// when there is one), ends those whose container has exited (or, when
    /// played, whose time is up), and stops and reports as STOPPED the tasks
    /// berth stopped (cancel, timeout).
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
                // Stopped by someone else (berth's cancel or timeout): the
                // container gets SIGTERM, then SIGKILL after its grace.
                let played = self.running.remove(&arn);
                let reason = task.stopped_reason.clone().unwrap_or_default();
                let mut exit = Some(143);
                if let Some(p) = played.as_ref() {
                    match &p.real {
                        Some(real) => exit = stop_real(local, real).await,
                        None => {
                            p.say(local, format!("[berth-local] stopped (SIGTERM): {reason}"))
                                .await;
                        }
                    }
                }
                let started = played.as_ref().map(|p| p.started_ms);
                let container = played.map_or_else(|| "main".to_owned(), |p| p.container);
                let event = task_event(
                    local,
                    &task,
                    "STOPPED",
                    &container,
                    started,
                    Some(("UserInitiated", reason.as_str(), exit)),
                );
                invoke_event(local, "berth-ecs-runner", &event).await;
                continue;
            }
            let stop = match self.running.get(&arn) {
                None => {
                    let mut played = played(&task);
                    let facts = self
                        .facts(
                            local,
                            task.task_definition_arn().unwrap_or_default(),
                            &played.container,
                        )
                        .await;
                    // The stream ECS's awslogs driver writes to.
                    played.log = facts.as_ref().and_then(|f| {
                        let logs = f.logs.as_ref()?;
                        let stream = logs.stream(&played.container, &arn).ok()?;
                        Some(berth_aws::logs::Source::Stream {
                            group: logs.group.clone(),
                            stream,
                        })
                    });
                    let started = match &local.engine {
                        Some(engine) => {
                            start_real(local, engine, &task, facts.as_ref(), &mut played).await
                        }
                        None => {
                            played.say(local, played_line(&played)).await;
                            Ok(())
                        }
                    };
                    match started {
                        Ok(()) => {
                            let event = task_event(
                                local,
                                &task,
                                "RUNNING",
                                &played.container,
                                Some(played.started_ms),
                                None,
                            );
                            self.running.insert(arn.clone(), played);
                            invoke_event(local, "berth-ecs-runner", &event).await;
                            None
                        }
                        // ECS reports a container that cannot start as a
                        // task that stopped before it ran.
                        Err(why) => Some((played, ("TaskFailedToStart", why, None))),
                    }
                }
                Some(p) => match &p.real {
                    Some(real) if p.interrupt && p.due() => {
                        // The instance is reclaimed: its containers are
                        // stopped as the ECS agent stops them on a draining
                        // Spot instance.
                        stop_real(local, real).await;
                        let p = self.running.remove(&arn).ok_or("a task vanished")?;
                        Some((
                            p,
                            (
                                "SpotInterruption",
                                "Your Spot Task was interrupted.".to_owned(),
                                None,
                            ),
                        ))
                    }
                    Some(real) => match engine(local)?.state(&real.id).await? {
                        State::Running => None,
                        State::Exited { code, oom_killed } => {
                            let p = self.running.remove(&arn).ok_or("a task vanished")?;
                            if let Some(real) = &p.real {
                                finish_real(local, real).await;
                            }
                            let why = if oom_killed {
                                "OutOfMemoryError: Container killed due to memory usage"
                            } else {
                                "Essential container in task exited"
                            };
                            let code = i32::try_from(code).ok();
                            Some((p, ("EssentialContainerExited", why.to_owned(), code)))
                        }
                        State::Gone => {
                            let p = self.running.remove(&arn).ok_or("a task vanished")?;
                            Some((
                                p,
                                (
                                    "TaskFailedToStart",
                                    "the container is gone from the engine".to_owned(),
                                    None,
                                ),
                            ))
                        }
                    },
                    None if p.due() => {
                        let end = if p.interrupt {
                            "[berth-local] reclaimed: the Spot instance was interrupted".to_owned()
                        } else {
                            format!("[berth-local] exit code {}", p.exit)
                        };
                        p.say(local, end).await;
                        let p = self.running.remove(&arn).ok_or("a task vanished")?;
                        let stop = if p.interrupt {
                            (
                                "SpotInterruption",
                                "Your Spot Task was interrupted.".to_owned(),
                                None,
                            )
                        } else {
                            (
                                "EssentialContainerExited",
                                "Essential container in task exited".to_owned(),
                                Some(p.exit),
                            )
                        };
                        Some((p, stop))
                    }
                    None => None,
                },
            };
            if let Some((p, (code, reason, exit))) = stop {
                // A container that failed to start never ran.
                let started = (code != "TaskFailedToStart").then_some(p.started_ms);
                let event = task_event(
                    local,
                    &task,
                    "STOPPED",
                    &p.container,
                    started,
                    Some((code, reason.as_str(), exit)),
                );
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
                // Its instance has room again: ECS says so too.
                if let Some(instance) = task.container_instance_arn() {
                    instance_changed(local, instance).await?;
                }
            }
        }
        Ok(())
    }

    /// What `definition`'s container `container` runs (read once).
    async fn facts(
        &mut self,
        local: &Local,
        definition: &str,
        container: &str,
    ) -> Option<ContainerFacts> {
        let key = (definition.to_owned(), container.to_owned());
        if let Some(known) = self.definitions.get(&key) {
            return known.clone();
        }
        let out = local
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(definition)
            .send()
            .await
            .ok()?;
        let d = out.task_definition()?;
        let facts = d
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some(container))
            .map(|c| ContainerFacts {
                image: c.image().unwrap_or_default().to_owned(),
                command: Some(c.command().to_vec()).filter(|c| !c.is_empty()),
                environment: c
                    .environment()
                    .iter()
                    .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
                    .collect(),
                cpu: u32::try_from(c.cpu()).ok().filter(|c| *c > 0),
                memory: c.memory().and_then(|m| u32::try_from(m).ok()),
                stop_timeout: Duration::from_secs(
                    c.stop_timeout()
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(30),
                ),
                logs: c.log_configuration().and_then(|l| {
                    let options = l.options().cloned().unwrap_or_default();
                    berth_core::logs::AwsLogs::from_options(
                        container,
                        Some(l.log_driver().as_str()),
                        &options,
                    )
                    .ok()
                }),
            });
        self.definitions.insert(key, facts.clone());
        facts
    }
}

/// Starts `task`'s container on `engine` as ECS would: its task
/// definition's image and container, with the task's overrides, its
/// output copied to its awslogs stream. `Err`: why it cannot start.
async fn start_real(
    local: &Local,
    engine: &Engine,
    task: &Task,
    facts: Option<&ContainerFacts>,
    played: &mut Played,
) -> Result<(), String> {
    let arn = task.task_arn().unwrap_or_default();
    let facts = facts
        .ok_or_else(|| format!("no container `{}` in the task definition", played.container))?;
    if !engine.has_image(&facts.image).await {
        return Err(format!(
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): {} not found (the local run's engine reaches no registry)",
            facts.image
        ));
    }
    let overrides = task.overrides();
    let first = overrides.and_then(|o| o.container_overrides().first());
    let mut environment = facts.environment.clone();
    for kv in first.map(|c| c.environment()).unwrap_or_default() {
        if let (Some(k), Some(v)) = (kv.name(), kv.value()) {
            environment.retain(|(name, _)| name != k);
            environment.push((k.to_owned(), v.to_owned()));
        }
    }
    let task_level = |v: Option<&str>| v.and_then(|v| v.parse::<u32>().ok());
    let spec = Spec {
        name: format!("berth-{}", berth_core::logs::task_id(arn)),
        image: facts.image.clone(),
        command: played.command.clone().or_else(|| facts.command.clone()),
        environment,
        cpu: first
            .and_then(|c| c.cpu())
            .and_then(|c| u32::try_from(c).ok())
            .or_else(|| task_level(overrides.and_then(|o| o.cpu())))
            .or(facts.cpu),
        memory: first
            .and_then(|c| c.memory())
            .and_then(|m| u32::try_from(m).ok())
            .or_else(|| task_level(overrides.and_then(|o| o.memory())))
            .or(facts.memory),
        labels: vec![
            ("berth.task".into(), arn.to_owned()),
            (ACCOUNT_LABEL.into(), local.account.clone()),
        ],
    };
    // A container left by a run that stopped meanwhile goes first.
    let _ = engine.remove(&spec.name).await;
    let id = engine.run(&spec).await?;
    let logs = tokio::spawn(copy_lines(
        engine.clone(),
        id.clone(),
        local.job_logs.clone(),
        played.log.clone(),
    ));
    played.real = Some(Real {
        id,
        logs,
        grace: facts.stop_timeout,
    });
    Ok(())
}

/// The run's engine (a real container exists only when there is one).
fn engine(local: &Local) -> Result<&Engine, String> {
    local
        .engine
        .as_ref()
        .ok_or_else(|| "a real container with no engine".to_owned())
}

/// Stops a real container as ECS does (SIGTERM, SIGKILL after its grace),
/// copies its last lines, removes it; its exit code.
async fn stop_real(local: &Local, real: &Real) -> Option<i32> {
    let engine = local.engine.as_ref()?;
    if let Err(e) = engine.stop(&real.id, real.grace).await {
        eprintln!("local: stopping container {}: {e}", real.id);
    }
    let code = match engine.state(&real.id).await {
        Ok(State::Exited { code, .. }) => i32::try_from(code).ok(),
        _ => None,
    };
    finish_real(local, real).await;
    code
}

/// Waits for the last lines of an ended container to be copied, then
/// removes it.
async fn finish_real(local: &Local, real: &Real) {
    // The copy ends with the container's output; a stuck one is let go.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !real.logs.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if let Some(engine) = &local.engine
        && let Err(e) = engine.remove(&real.id).await
    {
        eprintln!("local: removing container {}: {e}", real.id);
    }
}

/// Copies a container's lines to its awslogs stream, as ECS's log driver
/// does, a batch at a time, until it has ended.
async fn copy_lines(
    engine: Engine,
    id: String,
    logs: berth_aws::logs::JobLogs,
    to: Option<berth_aws::logs::Source>,
) {
    use futures::StreamExt;
    let Some(berth_aws::logs::Source::Stream { group, stream }) = to else {
        return;
    };
    let lines = engine.lines(&id);
    let mut batches = Box::pin(lines.ready_chunks(500));
    while let Some(batch) = batches.next().await {
        let now = berth_aws::store::now_ms();
        let events: Vec<(i64, String)> = batch.into_iter().map(|l| (now, l.text)).collect();
        if let Err(e) = logs.put(&group, &stream, &events).await {
            eprintln!(
                "local: {} lines of container {id} not logged: {e}",
                events.len()
            );
        }
    }
}

/// What a played container says it plays.
fn played_line(played: &Played) -> String {
    let command = played.command.as_ref().map_or_else(
        || "the image's command".to_owned(),
        |c| format!("`{}`", c.join(" ")),
    );
    format!(
        "[berth-local] a played container (no Docker engine): {command}, for {} s (PLAY_SECONDS), then {}",
        played.seconds,
        if played.interrupt {
            "a Spot interruption (PLAY_INTERRUPT)".to_owned()
        } else {
            format!("exit code {} (PLAY_EXIT)", played.exit)
        }
    )
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
        started_ms: berth_aws::store::now_ms(),
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
        real: None,
    }
}

/// ECS's "ECS Task State Change" for `task`, whose container started at
/// `started_ms` (epoch ms; none: it never ran), now in `status`.
fn task_event(
    local: &Local,
    task: &Task,
    status: &str,
    container: &str,
    started_ms: Option<i64>,
    stop: Option<(&str, &str, Option<i32>)>,
) -> Value {
    let at = |ms: i64| {
        aws_sdk_ecs::primitives::DateTime::from_millis(ms)
            .fmt(aws_sdk_ecs::primitives::DateTimeFormat::DateTime)
            .ok()
    };
    let mut detail = json!({
        "clusterArn": task.cluster_arn(),
        "taskArn": task.task_arn(),
        "lastStatus": status,
        "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "startedBy": task.started_by(),
        "launchType": task.launch_type().map(|l| l.as_str()),
        "capacityProviderName": task.capacity_provider_name(),
        "containerInstanceArn": task.container_instance_arn(),
        "cpu": task.cpu(),
        "memory": task.memory(),
        "pullStartedAt": started_ms.and_then(at),
        "startedAt": started_ms.and_then(at),
        "containers": [{ "name": container, "lastStatus": status }],
    });
    if let Some((code, reason, exit)) = stop {
        detail["stopCode"] = code.into();
        detail["stoppedReason"] = reason.into();
        detail["containers"][0]["exitCode"] = json!(exit);
        detail["stoppedAt"] = json!(at(berth_aws::store::now_ms()));
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

/// ECS's "ECS Container Instance State Change" for container instance
/// `arn` as it is now (it registered, or a task left it), handed to
/// ecs-runner as EventBridge would.
pub async fn instance_changed(local: &Local, arn: &str) -> Result<(), String> {
    let described = local
        .clients
        .ecs
        .describe_container_instances()
        .cluster(&local.cluster)
        .container_instances(arn)
        .send()
        .await
        .map_err(|e| format!("describe container instances: {e}"))?;
    for ci in described.container_instances() {
        let mut detail = serde_json::to_value(berth_aws::ecs::InstanceChange::from(ci))
            .map_err(|e| e.to_string())?;
        detail["clusterArn"] = json!(format!(
            "arn:aws:ecs:{}:{}:cluster/{}",
            local.region, local.account, local.cluster
        ));
        let event = json!({
            "version": "0",
            "id": format!("local-{}", local.next_id()),
            "detail-type": "ECS Container Instance State Change",
            "source": "aws.ecs",
            "account": local.account,
            "region": local.region,
            "resources": [arn],
            "detail": detail,
        });
        invoke_event(local, "berth-ecs-runner", &event).await;
    }
    Ok(())
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
