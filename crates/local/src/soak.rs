//! The soak: N jobs through the local run end to end, with faults injected
//! between the functions and the local AWS, then a reconciliation. Every
//! job must end in exactly one end state (or be on the dead-letter queue
//! with its reason), and no launch may have been made twice: at most one
//! ECS task per job and launch, at most one run of a Lambda job per launch.
//!
//! The faults, each at the fault rate: throttling answers, 5xx answers,
//! connections dropped after the call was served and answers 2 s late (on
//! DynamoDB, SQS, RunTask and Invoke); RunTask denied for good; a job's next
//! attempt that cannot be queued for 90 s (longer than every retry of the
//! event that queues it); a driver that stops part way through a batch, its
//! answer lost; a driver held back, its batch received (SQS counts the
//! receives) and never handed to it; a job's success that cannot be written
//! (more times than the SDK retries, so the function that ran it fails and
//! its retry must record it). Of the Lambda-route jobs, some are cancelled
//! while they run (they must end CANCELLED, stopped before their end) and
//! some leave a process behind with `setsid` (none may outlive its job). And
//! once every job of the EC2-only definition `soak-wait` is recorded, the
//! definition is edited, then deleted, while some of its jobs wait for
//! capacity. The definition `soak-capped` has a spending limit, its days
//! three minutes long: its jobs past the day's limit are held, and must run
//! once the next day begins.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::DesiredStatus;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use berth_aws::JobStore;
use berth_aws::store::JobSummary;
use berth_core::{JobDefinition, JobStatus, Route};
use berth_local::proxy::Fault;

use crate::{Fallible, Glue, Local};

/// How long a job waiting to launch stays quiet in the soak before the
/// sweep takes its message for lost (deployed: 20 minutes).
pub const STRANDED_AFTER_SECONDS: u32 = 120;

/// How often the soak's Lambda-route jobs touch their records (deployed:
/// every minute), so that a cancel stops one within seconds.
pub const HEARTBEAT_SECONDS: u32 = 5;

/// How long a day of a spending limit is in the soak (deployed: a UTC
/// day), so that its capped definition's held jobs see days turn: longer
/// than an interrupted job's next attempt takes to come (about a minute).
pub const SPENDING_DAY_SECONDS: u32 = 180;

/// `soak-capped`'s spending limit, USD a day: under what any attempt of
/// its jobs costs (a second of its share of an instance is about
/// $0.000005), so that an attempt after one has ended the same day is held
/// for the next.
const CAPPED_LIMIT_USD: f64 = 0.000_001;

/// The size of the soak's arrays.
const ARRAY_SIZE: u32 = 4;

/// The children of job `i` of the mix, when it is an array.
fn children(i: usize) -> Vec<String> {
    if matches!(i % 20, 10 | 11) {
        (0..ARRAY_SIZE)
            .map(|c| berth_core::array::child_id(&format!("soak-{i}"), c))
            .collect()
    } else {
        Vec::new()
    }
}

/// How long a Lambda-route job to be cancelled runs, if it is not.
const CANCELLED_JOB_SECONDS: u32 = 30;

/// What a Lambda-route job left behind runs (`sleep` for this many
/// seconds), to be found by its command line.
const LEFTOVER_SECONDS: u32 = 301;

/// Lambda-route jobs chosen for a fault of their own, each at the fault
/// rate.
#[derive(Debug, Default)]
struct LambdaFaults {
    /// Cancelled while they run.
    cancelled: std::collections::BTreeSet<usize>,
    /// Leave a process behind.
    leaving: std::collections::BTreeSet<usize>,
    /// Of `cancelled`, the jobs cancelled while RUNNING (by id): they must
    /// end CANCELLED, stopped before their end.
    cancelled_running: std::collections::BTreeSet<String>,
}

impl LambdaFaults {
    fn draw(jobs: usize, rate: f64) -> Self {
        let mut faults = Self::default();
        for i in (0..jobs).filter(|i| (1..=3).contains(&(i % 20))) {
            let roll = berth_local::proxy::rand_unit();
            if roll < rate {
                faults.cancelled.insert(i);
            } else if roll < 2.0 * rate {
                faults.leaving.insert(i);
            }
        }
        faults
    }
}
/// The calls faults are injected on: DynamoDB, SQS, RunTask and Invoke.
pub fn faulted(operation: &str) -> bool {
    operation.starts_with("dynamodb:")
        || operation.starts_with("sqs:")
        || operation == "ecs:RunTask"
        || operation == "lambda:Invoke"
}

/// Whether job `i` of the mix is a valid one (see [`body`]).
fn valid(i: usize) -> bool {
    !i.is_multiple_of(20)
}

/// One job of the mix: every 20th invalid, three in 20 sent to Lambda, one in
/// 20 EC2 only (it waits while EC2 is full), one in 20 interrupted once, one
/// in 20 of a definition with a spending limit (held once the day's is
/// spent), a chain of three in 20 (the last two waiting on the one
/// before), one in 20 an array of [`ARRAY_SIZE`] under a cap of 2 and one
/// following it child by child (`n_to_n`, each once the other's ended), the rest
/// on ECS (EC2 while there is room, then Fargate).
fn body(i: usize, runs: &str, faults: &LambdaFaults) -> String {
    match i % 20 {
        0 => format!(r#"{{"job_id":"soak-{i}","definition":"render","cpus":1}}"#),
        1..=3 => {
            let extra = if faults.cancelled.contains(&i) {
                format!(r#","SOAK_SLEEP":"{CANCELLED_JOB_SECONDS}""#)
            } else if faults.leaving.contains(&i) {
                r#","SOAK_LEAVE":"1""#.to_owned()
            } else {
                String::new()
            };
            format!(
                r#"{{"job_id":"soak-{i}","definition":"soak-lambda","processor":"lambda","environment":{{"SOAK_RUNS":"{runs}"{extra}}}}}"#
            )
        }
        4 => format!(
            r#"{{"job_id":"soak-{i}","definition":"soak-wait","environment":{{"PLAY_SECONDS":"1"}}}}"#
        ),
        // Reclaimed on its first launch, as a Spot interruption: its next
        // attempt is queued (and sometimes lost, see the faults).
        5 => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1","PLAY_INTERRUPT":"1"}}}}"#
        ),
        // A chain: 8 waits for 7 to succeed, 9 for 8 to end (either way).
        8 => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1"}},"depends_on":["soak-{}"]}}"#,
            i - 1
        ),
        9 => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1"}},"depends_on":[{{"job_id":"soak-{}","condition":"ended"}}]}}"#,
            i - 1
        ),
        // An array, two of its children under way at most.
        10 => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1"}},"array":{{"size":{ARRAY_SIZE},"max_running":2}}}}"#
        ),
        // An array that follows the one before child by child: child c
        // once that array's child c has ended.
        11 => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1"}},"array":{{"size":{ARRAY_SIZE}}},"depends_on":[{{"job_id":"soak-{}","type":"n_to_n","condition":"ended"}}]}}"#,
            i - 1
        ),
        // Interrupted on its first launch: the day's limit is spent by
        // then, and its next attempt is held until the next day.
        6 => format!(
            r#"{{"job_id":"soak-{i}","definition":"soak-capped","environment":{{"PLAY_SECONDS":"1","PLAY_INTERRUPT":"1"}}}}"#
        ),
        _ => format!(
            r#"{{"job_id":"soak-{i}","definition":"render","environment":{{"PLAY_SECONDS":"1"}}}}"#
        ),
    }
}

pub async fn run(local: &Local, glue: &mut Glue, jobs: usize, limit: Duration) -> Fallible<bool> {
    let started = Instant::now();
    let runs = std::env::temp_dir().join(format!("berth-soak-runs-{}", local.account));
    let runs_path = runs.display().to_string();
    let lambda = JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: "soak-lambda".into(),
        task_definition: "render".into(),
        container: "main".into(),
        lambda_function: Some("berth-lambda-task-processor".into()),
        // Its run counted; a process left behind, out of the job's process
        // group and session, holding its output open; a wait; its end.
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            format!(
                r#"echo "$BERTH_JOB_ID/$BERTH_LAUNCH" >> "$SOAK_RUNS"; if [ -n "$SOAK_LEAVE" ]; then setsid sleep {LEFTOVER_SECONDS} & fi; sleep "${{SOAK_SLEEP:-0}}"; echo "$BERTH_JOB_ID" >> "$SOAK_RUNS.ended""#
            ),
        ]),
        cpu: 256,
        memory: 512,
        gpu: 0,
        timeout_seconds: 60,
        max_attempts: 2,
        fargate: true,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    };
    let definitions = berth_aws::Definitions::new(
        local.clients.dynamodb.clone(),
        &local.settings.definitions_table,
    );
    let wait = JobDefinition {
        name: "soak-wait".into(),
        task_definition: "train".into(),
        lambda_function: None,
        command: None,
        fargate: false,
        ..lambda.clone()
    };
    let capped = JobDefinition {
        name: "soak-capped".into(),
        lambda_function: None,
        command: None,
        daily_limit_usd: Some(CAPPED_LIMIT_USD),
        ..lambda.clone()
    };
    for definition in [&lambda, &wait, &capped] {
        definitions
            .put(definition)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut churn = Churn::Waiting;
    let rate = local
        .faults
        .as_ref()
        .and_then(|p| p.faults())
        .map_or(0.0, |f| f.rate);
    let mut lambda_faults = LambdaFaults::draw(jobs, rate);

    // Submitted straight to the queue, ten a call, as producers would.
    let bodies: Vec<String> = (0..jobs)
        .map(|i| body(i, &runs_path, &lambda_faults))
        .collect();
    submit_all(local, &bodies).await?;
    println!(
        "soak: {jobs} jobs submitted in {:.1} s; each fault kind at {:.1}% of the functions' calls to DynamoDB, SQS, RunTask and Invoke",
        started.elapsed().as_secs_f64(),
        rate * 100.0
    );

    let store = JobStore::new(local.clients.dynamodb.clone(), &local.settings.jobs_table);
    // The jobs to cancel, each once it runs, watched beside the ticks (one
    // tick may outlast a job).
    let canceller = tokio::spawn(cancel_when_running(
        store.clone(),
        berth_aws::EcsCluster::for_deployment(&local.settings, &local.clients),
        lambda_faults
            .cancelled
            .iter()
            .map(|i| format!("soak-{i}"))
            .collect(),
        started + limit,
    ));
    let mut last_report = Instant::now();
    loop {
        glue.tick(local).await?;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let (open, queued) = progress(local, &store).await?;
            println!(
                "[{:>5} s] jobs not ended: {}; messages on the queue: {queued}",
                started.elapsed().as_secs(),
                open.len()
            );
            // The last few, by name, to see what holds them up.
            if (1..=5).contains(&open.len()) {
                for r in &open {
                    println!(
                        "          {} {} launch {}{}",
                        r.job_id,
                        r.status.as_str(),
                        r.launch,
                        r.reason
                            .as_deref()
                            .map(|why| format!(": {why}"))
                            .unwrap_or_default()
                    );
                }
            }
            churn = churn.next(local, &definitions, &store, jobs, &wait).await?;
            if open.is_empty() && queued == 0 {
                break;
            }
        }
        if started.elapsed() > limit {
            println!("soak: time is up after {} s", limit.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    // It ends once each of its jobs is cancelled or ended, or at the limit.
    lambda_faults.cancelled_running = canceller.await.map_err(|e| e.to_string())?;
    let (mut capped_jobs, mut held, mut holds) = (0, 0, 0);
    for i in (0..jobs).filter(|i| i % 20 == 6) {
        capped_jobs += 1;
        let r = store
            .get(&format!("soak-{i}"))
            .await
            .map_err(|e| e.to_string())?;
        let n = r.map_or(0, |r| r.holds);
        held += usize::from(n > 0);
        holds += n;
    }
    println!(
        "soak-capped (a limit of {} a day of {SPENDING_DAY_SECONDS} s): {capped_jobs} jobs, {held} held for the limit ({holds} holds), each then run",
        berth_core::cost::usd(CAPPED_LIMIT_USD),
    );
    reconcile(local, glue, &store, jobs, &runs, &lambda_faults, took).await
}

/// Sends `bodies` straight to the job queue, ten a call, as producers
/// would.
pub async fn submit_all(local: &Local, bodies: &[String]) -> Fallible<()> {
    for (k, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{}", k * 10 + i))
                    .message_body(body)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = local
            .clients
            .sqs
            .send_message_batch()
            .queue_url(&local.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        if !out.failed().is_empty() {
            return Err(format!("send: {:?}", out.failed()));
        }
    }
    Ok(())
}

/// Cancels each of `ids` once its record is RUNNING, polling until every
/// one is cancelled or ended, or `until`. The ids cancelled while RUNNING.
async fn cancel_when_running(
    store: JobStore,
    ecs: berth_aws::EcsCluster,
    mut ids: Vec<String>,
    until: Instant,
) -> std::collections::BTreeSet<String> {
    let mut cancelled = std::collections::BTreeSet::new();
    while !ids.is_empty() && Instant::now() < until {
        let mut still = Vec::new();
        for id in ids {
            match store.get(&id).await {
                Ok(Some(r)) if r.status == JobStatus::Running => {
                    match berth_aws::operations::cancel(&store, &ecs, None, &id, Some("the soak"))
                        .await
                    {
                        Ok(berth_aws::operations::Cancelled::Cancelled { .. }) => {
                            cancelled.insert(id);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("soak: cancel of {id}: {e}; tried again");
                            still.push(id);
                        }
                    }
                }
                Ok(Some(r)) if r.status.is_final() => {}
                _ => still.push(id),
            }
        }
        ids = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cancelled
}

/// Where the soak is with `soak-wait`'s definition: it is edited, then
/// deleted, once all its jobs are recorded (a later message would be
/// rejected for an unknown definition), while some of them wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Churn {
    Waiting,
    Edited,
    Deleted,
}

impl Churn {
    async fn next(
        self,
        local: &Local,
        definitions: &berth_aws::Definitions,
        store: &JobStore,
        jobs: usize,
        wait: &JobDefinition,
    ) -> Fallible<Self> {
        match self {
            Churn::Waiting => {
                for i in (4..jobs).step_by(20) {
                    let id = format!("soak-{i}");
                    if store.get(&id).await.map_err(|e| e.to_string())?.is_none() {
                        return Ok(self);
                    }
                }
                // Edited so that its jobs would now run on Fargate.
                let edited = JobDefinition {
                    fargate: true,
                    cpu: 512,
                    ..wait.clone()
                };
                definitions.put(&edited).await.map_err(|e| e.to_string())?;
                println!("soak: every soak-wait job recorded; its definition edited");
                Ok(Churn::Edited)
            }
            Churn::Edited => {
                local
                    .clients
                    .dynamodb
                    .delete_item()
                    .table_name(&local.settings.definitions_table)
                    .key(
                        "name",
                        aws_sdk_dynamodb::types::AttributeValue::S(wait.name.clone()),
                    )
                    .send()
                    .await
                    .map_err(|e| format!("delete soak-wait: {e}"))?;
                println!("soak: soak-wait's definition deleted");
                Ok(Churn::Deleted)
            }
            Churn::Deleted => Ok(self),
        }
    }
}

/// Jobs recorded and not ended, and messages still on the job queue.
async fn progress(local: &Local, store: &JobStore) -> Fallible<(Vec<JobSummary>, u64)> {
    let mut open = Vec::new();
    for status in JobStatus::ALL.iter().filter(|s| !s.is_final()) {
        open.extend(
            store
                .in_status(*status, usize::MAX)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let attributes = local
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&local.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let queued = attributes
        .attributes()
        .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Ok((open, queued))
}

async fn reconcile(
    local: &Local,
    glue: &Glue,
    store: &JobStore,
    jobs: usize,
    runs: &std::path::Path,
    lambda_faults: &LambdaFaults,
    took: Duration,
) -> Fallible<bool> {
    // Every job's one end state.
    let mut ended: HashMap<String, Vec<(JobStatus, Option<Route>)>> = HashMap::new();
    for status in JobStatus::ALL {
        for r in store
            .in_status(status, usize::MAX)
            .await
            .map_err(|e| e.to_string())?
        {
            ended.entry(r.job_id).or_default().push((r.status, r.route));
        }
    }
    let dead_letters = dead_letter_ids(local).await?;
    // A job whose RunTask was denied for good ends FAILED; every other valid
    // job's command or container exits 0.
    let denied = local
        .faults
        .as_ref()
        .map(|p| p.denied_jobs())
        .unwrap_or_default();
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    let (mut unaccounted, mut twice, mut not_succeeded) = (Vec::new(), Vec::new(), Vec::new());
    // Each job and each child of an array, with how it must end: FAILED
    // where a RunTask was denied for good, and so a job waiting for it to
    // succeed, or an array one of whose children did.
    let mut all: Vec<(usize, String, bool)> = Vec::new();
    for i in 0..jobs {
        let id = format!("soak-{i}");
        let kids = children(i);
        let mut fails = denied.contains(&id);
        if i % 20 == 8 {
            fails |= denied.contains(&format!("soak-{}", i - 1));
        }
        if !kids.is_empty() {
            fails = kids.iter().any(|c| denied.contains(c));
        }
        all.push((i, id, fails));
        all.extend(
            kids.into_iter()
                .map(|c| (i, c.clone(), denied.contains(&c))),
        );
    }
    let (mut chained, mut children_ended) = (0, 0);
    for (i, id, fails) in all {
        let i = &i;
        match (
            ended.get(&id).map(Vec::as_slice),
            dead_letters.contains_key(&id),
        ) {
            (Some([(status, route)]), false) if status.is_final() => {
                let expected = if fails {
                    JobStatus::Failed
                } else if lambda_faults.cancelled_running.contains(&id) {
                    JobStatus::Cancelled
                } else {
                    JobStatus::Succeeded
                };
                chained += usize::from(matches!(i % 20, 8 | 9));
                children_ended += usize::from(berth_core::array::parent_of(&id).is_some());
                let i = *i;
                if valid(i) && *status != expected {
                    not_succeeded.push(format!("{id} {}", status.as_str()));
                }
                *by_outcome
                    .entry(format!(
                        "{:<10} {}",
                        status.as_str(),
                        route.map_or("-", Route::as_str)
                    ))
                    .or_default() += 1;
            }
            (None, true) => {
                if valid(*i) {
                    not_succeeded.push(format!("{id} dead-lettered"));
                }
                *by_outcome.entry("dead-lettered".into()).or_default() += 1;
            }
            (Some(states), in_dlq) if states.len() > 1 || in_dlq => twice.push(id),
            _ => unaccounted.push(id),
        }
    }

    // Launches: ECS tasks by job and launch, Lambda runs by job and launch.
    let mut tasks: HashMap<String, usize> = HashMap::new();
    let ecs = &local.clients.ecs;
    for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let mut pages = ecs
            .list_tasks()
            .cluster(&local.cluster)
            .desired_status(desired)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            arns.extend(
                page.map_err(|e| e.to_string())?
                    .task_arns
                    .unwrap_or_default(),
            );
        }
        for t in berth_local::moto::describe_tasks(ecs, &local.cluster, &arns).await? {
            *tasks
                .entry(t.started_by().unwrap_or("-").to_owned())
                .or_default() += 1;
        }
    }
    let mut lambda_runs: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(runs).unwrap_or_default().lines() {
        *lambda_runs.entry(line.to_owned()).or_default() += 1;
    }
    let _ = std::fs::remove_file(runs);
    // A cancelled job stopped before its end; nothing a job left behind
    // lives on.
    let ended_runs_path = format!("{}.ended", runs.display());
    let finished: std::collections::BTreeSet<String> = std::fs::read_to_string(&ended_runs_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&ended_runs_path);
    let cancelled_ran_out: Vec<&String> = lambda_faults
        .cancelled_running
        .iter()
        .filter(|id| finished.contains(*id))
        .collect();
    let leftovers = leftover_processes();
    let doubled: Vec<String> = tasks
        .iter()
        .chain(lambda_runs.iter())
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();

    println!("\nsoak: {jobs} jobs in {:.1} s", took.as_secs_f64());
    println!("end states:");
    for (outcome, n) in &by_outcome {
        println!("  {outcome:<20} {n:>6}");
    }
    println!(
        "launches: {} ECS tasks, {} Lambda runs; launched more than once per attempt: {}",
        tasks.values().sum::<usize>(),
        lambda_runs.values().sum::<usize>(),
        doubled.len()
    );
    if let Some(proxy) = &local.faults {
        let injected = proxy.injected();
        let calls: u64 = proxy.calls.take().values().map(|c| c.count).sum();
        println!("faults injected, of {calls} calls from the functions:");
        for kind in Fault::ALL {
            let n: u64 = injected
                .iter()
                .filter(|((_, f), _)| *f == kind)
                .map(|(_, n)| n)
                .sum();
            println!("  {:<20} {n:>6}", kind.name());
        }
        let mut by_operation: BTreeMap<&str, u64> = BTreeMap::new();
        for ((op, _), n) in &injected {
            *by_operation.entry(op.as_str()).or_default() += n;
        }
        let list: Vec<String> = by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        println!("  by operation: {}", list.join(", "));
    }
    let delivered = local.delivered.load(Ordering::Relaxed);
    println!(
        "retries: {delivered} messages handed to the driver for {jobs} jobs ({} redeliveries); {} events to the on-failure destination",
        delivered.saturating_sub(jobs as u64),
        local.lost_events.load(Ordering::Relaxed)
    );
    println!(
        "the sweep: {} jobs given their task's end or start after its event was lost, {} timed out, {} put back on the queue (their message lost)",
        glue.reconciled.len(),
        glue.timed_out.len(),
        glue.requeued.len()
    );
    println!(
        "batches handed to a driver that stopped part way: {}; valid jobs whose RunTask was denied for good (they end FAILED): {}",
        local.crashed_batches.load(Ordering::Relaxed),
        denied.len()
    );
    println!(
        "valid jobs that ended other than SUCCEEDED (FAILED where a RunTask was denied), a platform failure berth recorded or a wrong state: {}{}",
        not_succeeded.len(),
        if not_succeeded.is_empty() {
            String::new()
        } else {
            format!(" ({})", not_succeeded.join(", "))
        }
    );
    println!(
        "Lambda-route jobs to cancel while they ran: {}, cancelled while RUNNING: {}, of which ran to their end: {}; that left a process behind: {}, processes still there: {}",
        lambda_faults.cancelled.len(),
        lambda_faults.cancelled_running.len(),
        cancelled_ran_out.len(),
        lambda_faults.leaving.len(),
        leftovers.len()
    );
    println!(
        "batches received for a driver held back (never handed to it): {}",
        local.throttled_batches.load(Ordering::Relaxed)
    );
    println!(
        "dependencies and arrays: {chained} jobs of chains ended, {children_ended} children of arrays ended (a cap of 2 each)",
    );
    println!(
        "unaccounted: {}; in more than one end state: {}",
        unaccounted.len(),
        twice.len()
    );
    for id in unaccounted.iter().chain(&twice).take(20) {
        println!("  {id}: {:?}", ended.get(id));
    }
    for d in doubled.iter().take(20) {
        println!("  launched twice: {d}");
    }
    Ok(unaccounted.is_empty()
        && twice.is_empty()
        && doubled.is_empty()
        && not_succeeded.is_empty()
        && cancelled_ran_out.is_empty()
        && leftovers.is_empty())
}

/// The processes a Lambda-route job left behind that still run (their
/// command line is `sleep LEFTOVER_SECONDS`), by pid.
fn leftover_processes() -> Vec<u32> {
    let wanted = format!("sleep\0{LEFTOVER_SECONDS}\0");
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c == wanted.as_bytes())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The job ids on the dead-letter queue, with the reason each carries.
async fn dead_letter_ids(local: &Local) -> Fallible<HashMap<String, String>> {
    let mut ids = HashMap::new();
    loop {
        let out = local
            .clients
            .sqs
            .receive_message()
            .queue_url(&local.dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(600)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(ids);
        }
        for m in messages {
            let body = m.body.clone().unwrap_or_default();
            let id = berth_driver::usable_job_id(&body, m.message_id().unwrap_or(""))
                .unwrap_or_default();
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(berth_aws::queue::REASON_ATTRIBUTE))
                .and_then(|v| v.string_value().map(str::to_owned))
                .unwrap_or_else(|| "redriven after too many receives".into());
            ids.insert(id, reason);
        }
    }
}
