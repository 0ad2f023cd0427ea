//! `berth console`'s jobs page with 100,000 jobs in the table, on the local
//! AWS (moto's server on this machine) behind a loopback proxy that adds
//! `BERTH_BENCH_LATENCY_MS` (20) to every AWS call.
//!
//! Fills a fresh account's jobs table with `BERTH_BENCH_JOBS` (100,000)
//! records made from one real record (BatchWriteItem, 25 at a time): a week
//! of jobs, most SUCCEEDED, some FAILED, a few of every other status. Then
//! times, over HTTP to the console on 127.0.0.1, the first page of the jobs
//! list, the list filtered to FAILED, the next page (by its cursor) and a
//! job's page; medians and the slowest of ten requests each; and the counts
//! by status, which the live list sends after its first page. Two passes,
//! as `make bench-driver`'s: the local AWS answering each call (it reads
//! the whole table for every query of an index), then the proxy replaying
//! its answers (a page of 51 jobs for each query), so that each call costs
//! the latency alone, as on AWS. The target, under 200 ms for the first
//! page, is reported against, not tested: `make bench-console`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use berth_core::JobStatus;
use berth_tests::TestAccount;
use berth_tests::proxy::LatencyProxy;
use berth_tests::stack::Stack;

const RUNS: usize = 10;
const TARGET_MS: f64 = 200.0;

fn main() {
    let jobs: usize = std::env::var("BERTH_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let latency_ms: u64 = std::env::var("BERTH_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(jobs, latency_ms));
}

/// The status of the `k`th job: 92% SUCCEEDED, 5% FAILED, the rest spread.
fn status_of(k: usize) -> JobStatus {
    match k % 100 {
        0..=91 => JobStatus::Succeeded,
        92..=96 => JobStatus::Failed,
        97 => JobStatus::Running,
        98 => JobStatus::WaitingForCapacity,
        _ => JobStatus::Cancelled,
    }
}

async fn bench(jobs: usize, latency_ms: u64) {
    let local = berth_tests::local_aws().clone();
    let proxy = LatencyProxy::start(
        &local.endpoint,
        std::time::Duration::from_millis(latency_ms),
    )
    .await;
    let stack = Stack::in_account(TestAccount::via(&proxy.endpoint).await, 0).await;
    let ddb = stack.clients().dynamodb.clone();
    let table = stack.settings.jobs_table.clone();

    // One real record, its item the mould of the rest.
    stack
        .send(&[r#"{"job_id":"mould","definition":"render"}"#])
        .await;
    while !stack.drive().await.is_empty() {}
    let mould = ddb
        .get_item()
        .table_name(&table)
        .key("job_id", AttributeValue::S("mould".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the mould's record");

    let filled = Instant::now();
    let now = berth_cli::now_ms();
    let week_ms = 7 * 86_400_000;
    let items: Vec<WriteRequest> = (0..jobs)
        .map(|k| {
            let mut item = mould.clone();
            // Spread over the week, the newest last.
            let at = now - week_ms + (week_ms / jobs as i64) * k as i64;
            let n = |v: i64| AttributeValue::N(v.to_string());
            item.insert("job_id".into(), AttributeValue::S(format!("job-{k:06}")));
            item.insert(
                "status".into(),
                AttributeValue::S(status_of(k).as_str().into()),
            );
            item.insert("updated_at".into(), n(at));
            item.insert("created_at".into(), n(at - 60_000));
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for chunk in items.chunks(25 * 100) {
        let (ddb, table, chunk) = (ddb.clone(), table.clone(), chunk.to_vec());
        writers.spawn(async move {
            for batch in chunk.chunks(25) {
                let mut left = batch.to_vec();
                while !left.is_empty() {
                    let out = ddb
                        .batch_write_item()
                        .request_items(&table, left)
                        .send()
                        .await
                        .unwrap();
                    left = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                }
            }
        });
        // At most four writers at once.
        if writers.len() >= 4 {
            writers.join_next().await;
        }
    }
    while writers.join_next().await.is_some() {}
    println!(
        "{jobs} jobs written to the local AWS in {:.0} s",
        filled.elapsed().as_secs_f64()
    );

    // The console, over HTTP, as a browser asks it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = berth_cli::console::token();
    let logs = berth_aws::logs::JobLogs::from_config(&stack.aws.sdk_config);
    let (berth, t) = (stack.cli(), token.clone());
    tokio::spawn(async move { berth_cli::console::serve(berth, logs, listener, &t).await });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("{}={token}", berth_cli::console::COOKIE);
    let get = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let started = Instant::now();
            let r = client
                .get(format!("http://{addr}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let page = r.text().await.unwrap();
            (started.elapsed(), page)
        }
    };
    let (_, first) = get("/jobs".into()).await;
    let next = first
        .split(r#"<a rel="next" href=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a next page")
        .replace("&amp;", "&");
    let rows = first.matches(r#"<th scope="row">"#).count();
    println!("first page: {rows} jobs; {latency_ms} ms added to every AWS call");
    let requests = [
        ("the jobs list, first page", "/jobs".to_owned()),
        ("FAILED only, first page", "/jobs?status=FAILED".to_owned()),
        ("the jobs list, second page", next),
        ("a job's page", format!("/jobs/job-{:06}", jobs - 1)),
    ];
    let mut first_medians = Vec::new();
    for replay in [false, true] {
        if replay {
            // A page of SUCCEEDED jobs and their costs: the answers replayed.
            proxy.replay(true);
            get("/jobs?status=SUCCEEDED".into()).await;
            println!(
                "\n2. the local AWS's answers replayed (each call costs the latency alone, as on AWS):"
            );
        } else {
            println!("\n1. the local AWS answering every call:");
        }
        println!("{:<34} {:>10} {:>10}", "request", "median ms", "max ms");
        for (name, path) in &requests {
            let mut times = Vec::new();
            for _ in 0..RUNS {
                times.push(get(path.clone()).await.0.as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            let median = times[RUNS / 2];
            if path == "/jobs" {
                first_medians.push(median);
            }
            println!("{name:<34} {median:>10.1} {:>10.1}", times[RUNS - 1]);
        }
        if !replay {
            // A count pages through the whole index: a replayed page would
            // not show what it costs.
            let counted = Instant::now();
            let counts = berth_cli::console::counts(&stack.cli(), &Default::default())
                .await
                .unwrap();
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            println!(
                "{:<34} {:>10.1} {:>10}",
                "counts by status (sent live)",
                counted.elapsed().as_secs_f64() * 1000.0,
                "-"
            );
            println!("(counted {total} jobs; {} in the table)", jobs + 1);
        }
    }
    proxy.replay(false);
    println!();
    for (pass, median) in ["the local AWS", "replayed"].iter().zip(&first_medians) {
        println!(
            "first page, {pass}: median {median:.1} ms against a target of {TARGET_MS:.0} ms: {}",
            if *median < TARGET_MS { "met" } else { "missed" }
        );
    }
}
