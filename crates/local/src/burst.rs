//! The burst: N jobs submitted at once to the local run, its functions
//! reaching the local AWS through the proxy, which throttles RunTask and
//! DynamoDB's writes at AWS's documented rates scaled by a factor the local
//! AWS can serve. It prints the launches a second against the scaled limit,
//! the jobs launched twice and those failed or lost (each must be 0), and
//! the time to launch them all against the floor the limit sets.
//!
//! The queue is handed to the driver as Lambda's SQS trigger does on AWS:
//! up to `DriverConcurrency` (10) batches at once, each a driver built as
//! its function builds it (berth's handler, its SDK configuration), in an
//! execution environment of its own (its own memory of where EC2 had no
//! room), its clients reaching the local AWS through the proxy. The local run's own
//! loop hands over one batch at a time through `cargo lambda watch`, which
//! would measure that loop rather than berth. The containers wait while
//! the jobs launch, then run to their end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_aws::JobStore;
use berth_core::{JobDefinition, JobStatus};
use berth_sim::figures as f;

use crate::{Fallible, Glue, Local};

/// The operations the proxy meters in the burst.
pub fn limited(operation: &str) -> bool {
    matches!(
        operation,
        "ecs:RunTask" | "dynamodb:PutItem" | "dynamodb:UpdateItem" | "dynamodb:DeleteItem"
    )
}

/// How long each job's played container runs.
const PLAY_SECONDS: u32 = 2;

/// Batches the trigger hands to the driver at once: template.yaml's
/// `DriverConcurrency` default.
const TRIGGER_BATCHES: usize = f::DRIVER_CONCURRENCY.value as usize;

/// The width of the windows the launch rate is reported in.
const WINDOW_SECONDS: f64 = 10.0;

pub async fn run(
    local: &Local,
    glue: &mut Glue,
    jobs: usize,
    scale: f64,
    limit: Duration,
) -> Fallible<bool> {
    let proxy = local
        .faults
        .as_ref()
        .ok_or("the burst runs through the rate-limiting proxy")?;
    let rate = f::RUN_TASK_PER_SECOND.value * scale;
    let allowance = f::RUN_TASK_BURST.value * scale;
    // Every job is one RunTask (no instance: Fargate, Spot where it may).
    let floor = (jobs as f64 - allowance).max(0.0) / rate;
    // A job's time counts from its launch, and its container is held until
    // every job has launched: the last may wait about the floor, and twice
    // that if berth falls behind.
    let timeout_seconds =
        (600.0 + 2.0 * floor).min(berth_core::limits::message::TIMEOUT_MAX as f64) as u32;
    let burst = JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: "burst".into(),
        task_definition: "render".into(),
        container: "main".into(),
        lambda_function: None,
        command: None,
        cpu: 256,
        memory: 512,
        gpu: 0,
        timeout_seconds,
        max_attempts: 1,
        fargate: true,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    };
    berth_aws::Definitions::new(
        local.clients.dynamodb.clone(),
        &local.settings.definitions_table,
    )
    .put(&burst)
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "burst: {jobs} jobs at once; RunTask limited to {allowance:.0} at once then {rate:.1} a second ({scale} of AWS's {} and {}), DynamoDB's writes to {:.0} a second; the floor for {jobs} launches: {floor:.0} s",
        f::RUN_TASK_BURST.value,
        f::RUN_TASK_PER_SECOND.value,
        f::DYNAMODB_NEW_TABLE_WRITES_PER_SECOND.value * scale,
    );

    // Submitted straight to the queue, ten a call, as producers would.
    let started = Instant::now();
    let bodies: Vec<String> = (0..jobs)
        .map(|i| {
            serde_json::json!({
                "job_id": format!("burst-{i}"),
                "definition": "burst",
                "environment": {"PLAY_SECONDS": PLAY_SECONDS.to_string()},
            })
            .to_string()
        })
        .collect();
    crate::soak::submit_all(local, &bodies).await?;
    println!(
        "burst: submitted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store = JobStore::new(local.clients.dynamodb.clone(), &local.settings.jobs_table);
    let mut last_report = Instant::now();
    let mut reported = 0;
    let mut ended = 0;
    // The containers wait while the jobs launch (see `Glue::hold_containers`),
    // until every job launched or none has for a minute.
    let mut last_launch = (0, Instant::now());
    glue.hand_over_queue = false;
    let driver = driver(local, &proxy.endpoint).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger: Vec<_> = (0..TRIGGER_BATCHES)
        .map(|_| {
            // Each batch in its own execution environment, with its own
            // memory of where EC2 had no room.
            let driver = berth_driver::Driver {
                no_room: Default::default(),
                ..driver.clone()
            };
            let stop = stop.clone();
            let (sqs, url) = (local.clients.sqs.clone(), local.queue_url.clone());
            let (region, account) = (local.region.clone(), local.account.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match hand_over(&sqs, &url, &region, &account, &driver).await {
                        Ok(0) => tokio::time::sleep(Duration::from_millis(200)).await,
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("burst: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            })
        })
        .collect();
    loop {
        let launched = proxy.launched().len();
        let more = launched > last_launch.0;
        if more {
            last_launch = (launched, Instant::now());
        }
        glue.hold_containers =
            launched < jobs && (more || last_launch.1.elapsed() < Duration::from_secs(60));
        glue.tick(local).await?;
        if last_report.elapsed() >= Duration::from_secs(10) {
            let since = last_report.elapsed();
            last_report = Instant::now();
            let launched = proxy.launched().len();
            ended = ended_jobs(&store).await?;
            println!(
                "[{:>5} s] launched {launched} ({:.1} a second since the last line, the limit {rate:.1}); ended {ended}",
                started.elapsed().as_secs(),
                (launched - reported) as f64 / since.as_secs_f64(),
            );
            reported = launched;
            if ended >= jobs {
                break;
            }
        }
        if started.elapsed() > limit {
            println!("burst: time is up after {} s", limit.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in trigger {
        t.await.map_err(|e| e.to_string())?;
    }
    report(local, &store, started, jobs, rate, allowance, floor, ended).await
}

/// The driver as its function builds it (`berth-driver`'s main: its
/// settings, its SDK configuration), its clients reaching the local AWS
/// through the proxy at `endpoint`.
async fn driver(local: &Local, endpoint: &str) -> berth_driver::Driver {
    let config = berth_driver::sdk_config()
        .await
        .into_builder()
        .endpoint_url(endpoint)
        .region(local.sdk_config.region().cloned())
        .credentials_provider(
            local
                .sdk_config
                .credentials_provider()
                .expect("the local run's account has a key"),
        )
        .build();
    let clients = berth_aws::Clients::new(&config);
    berth_driver::Driver::new(&local.settings, &clients, berth_driver::Tuning::default())
}

/// One batch from the queue to the driver, as the trigger hands it over:
/// the messages it does not name as failures are deleted. How many it had.
async fn hand_over(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    region: &str,
    account: &str,
    driver: &berth_driver::Driver,
) -> Result<usize, String> {
    let records = berth_local::sqs::receive(sqs, queue_url, region, account).await?;
    if records.is_empty() {
        return Ok(0);
    }
    let again: std::collections::HashSet<String> = driver
        .handle_batch(records.clone())
        .await
        .into_iter()
        .filter(|h| h.outcome.redeliver())
        .map(|h| h.message_id)
        .collect();
    for record in &records {
        if record
            .message_id
            .as_ref()
            .is_some_and(|id| again.contains(id))
        {
            continue;
        }
        if let Some(handle) = &record.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| format!("delete: {e}"))?;
        }
    }
    Ok(records.len())
}

/// How many jobs have ended, by the store's status index.
async fn ended_jobs(store: &JobStore) -> Fallible<usize> {
    let mut n = 0;
    for status in JobStatus::ALL.iter().filter(|s| s.is_final()) {
        n += store
            .in_status(*status, usize::MAX)
            .await
            .map_err(|e| e.to_string())?
            .len();
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
async fn report(
    local: &Local,
    store: &JobStore,
    started: Instant,
    jobs: usize,
    rate: f64,
    allowance: f64,
    floor: f64,
    ended: usize,
) -> Fallible<bool> {
    let proxy = local.faults.as_ref().ok_or("no proxy")?;
    let launched = proxy.launched();
    // Launches per job: more than one launch number is a job launched twice
    // (no job of the burst fails or is interrupted).
    let mut per_job: BTreeMap<String, u32> = BTreeMap::new();
    let mut times: Vec<f64> = Vec::new();
    for (at, started_by) in &launched {
        let job = berth_core::launch::parse_started_by(started_by)
            .map(|(job, _)| job)
            .unwrap_or_else(|| started_by.clone());
        *per_job.entry(job).or_default() += 1;
        times.push(at.saturating_duration_since(started).as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let twice = per_job.values().filter(|n| **n > 1).count();
    let mut by_status: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failed_by_throttling = 0;
    for status in JobStatus::ALL {
        let records = store
            .in_status(status, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
        if status == JobStatus::Failed {
            failed_by_throttling += records
                .iter()
                .filter(|r| {
                    r.reason
                        .as_deref()
                        .is_some_and(|why| why.to_ascii_lowercase().contains("throttl"))
                })
                .count();
        }
        if !records.is_empty() {
            by_status.insert(status.as_str(), records.len());
        }
    }
    let recorded: usize = by_status.values().sum();

    println!(
        "\nlaunches a second in each {WINDOW_SECONDS:.0} s window, against the limit {rate:.1}:"
    );
    let last = times.last().copied().unwrap_or(0.0);
    let windows = (last / WINDOW_SECONDS).floor() as usize + 1;
    for w in 0..windows {
        let (from, to) = (w as f64 * WINDOW_SECONDS, (w + 1) as f64 * WINDOW_SECONDS);
        let n = times.iter().filter(|t| **t >= from && **t < to).count();
        let per_s = n as f64 / WINDOW_SECONDS;
        println!(
            "  {from:>5.0}-{to:<5.0} s {per_s:>6.1} /s {:>5.0}% of the limit  {}",
            per_s / rate * 100.0,
            "#".repeat((per_s / rate * 20.0).round() as usize)
        );
    }
    // Once the trigger has ramped and the burst allowance is spent: from the
    // launch after the allowance to the one at 90% of the jobs.
    let steady = match (
        times.get(allowance.ceil() as usize),
        times.get(jobs * 9 / 10),
    ) {
        (Some(from), Some(to)) if to > from => {
            let n = jobs * 9 / 10 - allowance.ceil() as usize;
            Some((n as f64 / (to - from), *from, *to))
        }
        _ => None,
    };
    let throttled: u64 = proxy
        .injected()
        .iter()
        .filter(|((_, fault), _)| *fault == berth_local::proxy::Fault::Throttled)
        .map(|(_, n)| n)
        .sum();
    let run_task_throttled: u64 = proxy
        .injected()
        .iter()
        .filter(|((op, fault), _)| {
            op == "ecs:RunTask" && *fault == berth_local::proxy::Fault::Throttled
        })
        .map(|(_, n)| n)
        .sum();
    println!("\ncalls through the proxy (count, the local AWS's own time):");
    for (operation, calls) in proxy.calls.take() {
        println!(
            "  {operation:<36} {:>7} {:>8.1} s",
            calls.count,
            calls.upstream.as_secs_f64()
        );
    }
    println!();
    println!("jobs submitted          {jobs}");
    println!(
        "jobs launched           {} (RunTask answered with a task)",
        per_job.len()
    );
    println!("jobs launched twice     {twice}");
    println!("jobs failed by throttling {failed_by_throttling}");
    println!(
        "jobs recorded           {recorded} {:?}; ended {ended}; not recorded {}",
        by_status,
        jobs.saturating_sub(recorded)
    );
    println!("calls throttled         {throttled} ({run_task_throttled} of them RunTask)");
    if let Some((per_s, from, to)) = steady {
        println!(
            "launch rate, steady     {per_s:.2} a second from {from:.0} s to {to:.0} s (the limit {rate:.1}: {:.0}%)",
            per_s / rate * 100.0
        );
    }
    println!(
        "all launched after      {last:.0} s; the floor {floor:.0} s ({:.2}x)",
        if floor > 0.0 { last / floor } else { 1.0 }
    );
    let ok = twice == 0
        && failed_by_throttling == 0
        && per_job.len() == jobs
        && by_status.get("SUCCEEDED") == Some(&jobs);
    println!("burst: {}", if ok { "ok" } else { "NOT ok" });
    Ok(ok)
}
