//! The driver handler on batches of 1, 10 and 100 jobs, against the local AWS
//! behind a loopback proxy that adds a fixed latency to every AWS call.
//!
//! Two passes. In the first every call reaches the local AWS, whose own
//! service time (a single Python process serving one call at a time) adds to
//! the latency and grows with the batch. In the second the proxy replays the
//! local AWS's answers (one recorded per operation), so that every call costs
//! the latency alone, as on AWS, where calls are served side by side: that
//! pass measures the driver itself.
//!
//! Prints, per batch size: wall time per batch, AWS calls per job, the
//! handler's own CPU time per job and the local AWS's summed service time;
//! then the ratio batch-10 / batch-1. Targets: ratio <= 1.3 on the replayed
//! pass (the jobs of a batch run side by side; the floor is one job's chain
//! of calls), CPU per job <= 0.5 ms. Exits non-zero when the ratio misses.
//!
//! `make bench-driver` (or `cargo bench -p berth-tests --bench driver`);
//! `BERTH_BENCH_LATENCY_MS` sets the latency (default 20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode};
use berth_core::JobDefinition;
use berth_driver::{Driver, Outcome, Tuning};
use berth_tests::proxy::LatencyProxy;
use berth_tests::stack::Stack;
use berth_tests::{TestAccount, thread_cpu};

// As in the function's binary.
#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

const SIZES: [usize; 3] = [1, 10, 100];
const ROUNDS: usize = 5;

fn main() {
    let latency_ms: u64 = std::env::var("BERTH_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let local = berth_tests::local_aws().clone();

    // The proxy runs on its own threads; the driver on this one, so this
    // thread's CPU time is the handler's own.
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy = proxy_rt.block_on(LatencyProxy::start(
        &local.endpoint,
        Duration::from_millis(latency_ms),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    rt.block_on(async {
        let stack = Stack::in_account(TestAccount::via(&proxy.endpoint).await, 2).await;
        prepare(&stack).await;
        let driver = Driver::new(&stack.settings, stack.clients(), Tuning::default());
        // Warm the clients' connection pools; record an answer of each
        // operation for the replayed pass.
        run_batch(&stack, &driver, &proxy, 2, "warm", true).await;

        println!("driver handler, {latency_ms} ms added to every AWS call, {ROUNDS} rounds per size");
        println!("\n1. the local AWS behind the latency proxy (its own service time adds to the latency):");
        let (local_walls, _) = pass(&stack, &driver, &proxy, false).await;
        println!(
            "\n2. the local AWS's answers replayed by the proxy (every call costs the latency alone, as\n   on AWS, where calls are served side by side; the local AWS serves them one at a time):"
        );
        let (walls, worst_cpu_us) = pass(&stack, &driver, &proxy, true).await;

        let local_ratio = local_walls[1] / local_walls[0];
        let ratio = walls[1] / walls[0];
        let ratio_ok = ratio <= 1.3;
        let cpu_ok = worst_cpu_us <= 500.0;
        println!();
        println!("batch-10 / batch-1 wall, local AWS: {local_ratio:.2} (bound by the local AWS's service time)");
        println!(
            "batch-10 / batch-1 wall, replayed:  {ratio:.2} (target <= 1.3: {})",
            verdict(ratio_ok)
        );
        println!(
            "worst handler CPU per job: {worst_cpu_us:.0} µs (target <= 500 µs: {})",
            verdict(cpu_ok)
        );
        if !ratio_ok {
            std::process::exit(1);
        }
    });
}

/// Every batch size, `ROUNDS` times; prints a table and returns the wall
/// time per batch for each size and the worst CPU time per job.
async fn pass(
    stack: &Stack,
    driver: &Driver,
    proxy: &LatencyProxy,
    replay: bool,
) -> (Vec<f64>, f64) {
    println!(
        "{:>6} {:>14} {:>14} {:>16} {:>18}",
        "batch", "wall/batch ms", "AWS calls/job", "handler CPU/job µs", "local AWS ms summed"
    );
    let mut walls = Vec::new();
    let mut worst_cpu_us = 0.0f64;
    for size in SIZES {
        let mut total = Batch::default();
        for round in 0..ROUNDS {
            let tag = format!("{}{round}", if replay { "p" } else { "l" });
            let b = run_batch(stack, driver, proxy, size, &tag, replay).await;
            total.wall += b.wall;
            total.cpu += b.cpu;
            total.calls += b.calls;
            total.upstream += b.upstream;
        }
        let jobs = (size * ROUNDS) as f64;
        let wall_ms = total.wall.as_secs_f64() * 1000.0 / ROUNDS as f64;
        let cpu_us = total.cpu.as_secs_f64() * 1e6 / jobs;
        worst_cpu_us = worst_cpu_us.max(cpu_us);
        println!(
            "{size:>6} {wall_ms:>14.1} {:>14.2} {cpu_us:>16.0} {:>18.1}",
            total.calls as f64 / jobs,
            total.upstream.as_secs_f64() * 1000.0 / ROUNDS as f64
        );
        walls.push(wall_ms);
    }
    (walls, worst_cpu_us)
}

#[derive(Default)]
struct Batch {
    wall: Duration,
    cpu: Duration,
    calls: u64,
    /// The local AWS's summed service time on the batch's calls.
    upstream: Duration,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// A definition whose tasks are small, so that two instances hold every
/// job of the benchmark.
async fn prepare(stack: &Stack) {
    stack
        .clients()
        .ecs
        .register_task_definition()
        .family("bench")
        .network_mode(NetworkMode::Bridge)
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image("busybox")
                .cpu(8)
                .memory(8)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let def = JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: "bench".into(),
        task_definition: "bench".into(),
        container: "main".into(),
        lambda_function: None,
        command: None,
        cpu: 128,
        memory: 64,
        gpu: 0,
        timeout_seconds: 60,
        max_attempts: 1,
        fargate: false,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    };
    stack.definitions().put(&def).await.unwrap();
}

/// Sends `size` jobs, receives them as SQS records and times the handler on
/// them: (wall, this thread's CPU, AWS calls the handler made).
async fn run_batch(
    stack: &Stack,
    driver: &Driver,
    proxy: &LatencyProxy,
    size: usize,
    tag: &str,
    replay: bool,
) -> Batch {
    let bodies: Vec<String> = (0..size)
        .map(|i| format!(r#"{{"job_id":"b{size}-{tag}-{i}","definition":"bench"}}"#))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    stack.send(&refs).await;
    let mut records = Vec::new();
    while records.len() < size {
        records.extend(stack.receive().await);
    }
    proxy.calls.take();
    proxy.replay(replay);
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    let handled = driver.handle_batch(records.clone()).await;
    let (wall, cpu) = (t0.elapsed(), thread_cpu() - cpu0);
    proxy.replay(false);
    let seen = proxy.calls.take();
    let calls = seen.values().map(|c| c.count).sum();
    let upstream = seen.values().map(|c| c.upstream).sum();
    let dispatched = handled
        .iter()
        .filter(|h| matches!(h.outcome, Outcome::Dispatched { .. }))
        .count();
    assert_eq!(dispatched, size, "every job dispatched: {handled:?}");
    for r in records {
        let handle = r.receipt_handle.unwrap();
        stack
            .clients()
            .sqs
            .delete_message()
            .queue_url(&stack.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .unwrap();
    }
    Batch {
        wall,
        cpu,
        calls,
        upstream,
    }
}
