//! `berth`: submit jobs, follow them, cancel them, manage job definitions.
//!
//! It reads the same `BERTH_*` variables as the functions (the tables, the
//! queue, the cluster) and the usual AWS environment, so it talks to the
//! local run (with the variables `berth-local run` prints) or to an account
//! alike.
//! Every error is one line on stderr and a non-zero exit.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use berth_aws::Settings;
use berth_cli::simulate::{Format, SimulateArgs};
use berth_cli::{Berth, CliError, Submission, largest, table};
use berth_core::capacity::{LargestContainer, Resources};
use berth_core::dependency::{Condition, Dependency};
use berth_core::{JobStatus, Route};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run Docker workloads on AWS on demand"
)]
struct Cli {
    /// A deployed berth stack: its outputs name the tables, queue and
    /// cluster (else the BERTH_* variables do).
    #[arg(long, global = true, env = "BERTH_STACK")]
    stack: Option<String>,
    /// How read commands print: table (for people) or json (stable field
    /// names, ISO 8601 UTC times; for scripts).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a job; prints its job id.
    Submit {
        /// The job message as JSON (`-` for standard input); else the flags below.
        #[arg(long, short, conflicts_with_all = ["definition", "job_id"])]
        file: Option<PathBuf>,
        /// The job definition to run.
        #[arg(long, short)]
        definition: Option<String>,
        /// The job id: 1 to 64 letters, digits, `_` or `-` (default: a new
        /// UUID). An id that names a job already is refused.
        #[arg(long)]
        job_id: Option<String>,
        /// An environment variable, NAME=VALUE (repeat); names may not start
        /// with BERTH_.
        #[arg(long = "env", short, value_parser = env_pair)]
        environment: Vec<(String, String)>,
        /// A tag, KEY=VALUE (repeat), put on the job's ECS tasks (for Cost
        /// Explorer) and kept on its record, over its definition's: at most
        /// 47; keys of 1 to 128 characters, values of up to 256, of letters,
        /// digits, spaces and _ . : / = + - @; no key starting with aws: or
        /// berth:. A key with `=` in it goes in a --file message.
        #[arg(long = "tag", value_parser = tag_pair)]
        tags: Vec<(String, String)>,
        /// CPU units, 1024 a vCPU: 128 to 196,608 (default: the definition's).
        #[arg(long)]
        cpu: Option<u32>,
        /// Memory in MiB: 6 to 25,165,824 (default: the definition's).
        #[arg(long)]
        memory: Option<u32>,
        /// GPUs, 0 to 16; a job with a GPU runs on EC2 only (default: the
        /// definition's).
        #[arg(long)]
        gpu: Option<u32>,
        /// Seconds the job may run, counted from the start of its run: 1 to
        /// 604,800; at most 900 on Lambda (default: the definition's).
        #[arg(long)]
        timeout: Option<u32>,
        /// Where the job runs: auto (berth decides), lambda, ec2 or fargate.
        /// A processor the job cannot use is refused.
        #[arg(long, value_parser = ["auto", "lambda", "ec2", "fargate"])]
        processor: Option<String>,
        /// How many times the job may run before it ends FAILED: 1 to 10
        /// (default: the definition's). Spot interruptions do not count.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// A job this one waits for, ID[:CONDITION] (repeat, up to 100):
        /// it runs once each has ended as its condition says: succeeded
        /// (the default), failed (ended in any other state) or ended. The
        /// job is PENDING until then, and ends FAILED at once when one can
        /// no longer be met.
        #[arg(long = "depends-on", value_parser = dependency)]
        depends_on: Vec<Dependency>,
        /// An array whose children this array's follow one to one,
        /// ARRAY[:CONDITION] (AWS Batch's N_TO_N; repeat for more): child i
        /// runs once child i of ARRAY has ended as CONDITION says, and
        /// never once it has not. ARRAY must have the same size.
        #[arg(long = "n-to-n", value_name = "ARRAY[:CONDITION]", requires = "array_size",
              conflicts_with = "sequential", value_parser = each_dependency)]
        n_to_n: Vec<Dependency>,
        /// Make it an array of this many children, 2 to 10,000: one
        /// submission; each child (`JOB_ID:INDEX`) sees BERTH_ARRAY_INDEX
        /// and BERTH_ARRAY_SIZE.
        #[arg(long)]
        array_size: Option<u32>,
        /// At most this many of the array's children under way at once
        /// (default: all).
        #[arg(long, requires = "array_size")]
        max_running: Option<u32>,
        /// Run the array's children one at a time, in order: each once the
        /// one before ended as CONDITION says (succeeded, the default;
        /// failed; ended); after one that did not, the rest never run.
        #[arg(long, requires = "array_size", conflicts_with = "max_running", value_name = "CONDITION",
              num_args = 0..=1, default_missing_value = "succeeded", value_parser = condition)]
        sequential: Option<Condition>,
        /// The command, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Show a job: its state, times, attempts and how each ended.
    Status {
        /// The job's id.
        job_id: String,
    },
    /// List jobs, most recently changed first.
    List {
        /// Only jobs in this status: PENDING, ACCEPTED, WAITING_FOR_CAPACITY,
        /// DISPATCHED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED or
        /// REJECTED (any case).
        #[arg(long, value_parser = status)]
        status: Option<JobStatus>,
        /// Only jobs whose last attempt ran here: LAMBDA, EC2, FARGATE or
        /// FARGATE_SPOT (any case).
        #[arg(long, value_parser = route)]
        route: Option<Route>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The children of this array job instead, by index.
        #[arg(long, value_name = "PARENT")]
        array: Option<String>,
    },
    /// A live table of jobs until every one has ended: the jobs named, else
    /// every job not ended now. Exits 0 when every job SUCCEEDED, 1 when
    /// one did not (FAILED, TIMED_OUT, CANCELLED, REJECTED), when a named
    /// job is never recorded, or at the timeout.
    Watch {
        /// The jobs to follow (default: every job not ended now).
        job_ids: Vec<String>,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Seconds to wait for a named job to be recorded (its message
        /// taken from the queue by the driver) before it counts as unknown.
        #[arg(long, default_value_t = 60)]
        wait_for_record: u64,
    },
    /// Print a job's output (its stdout and stderr) from CloudWatch Logs,
    /// launch by launch: an ECS task's from its container's awslogs stream,
    /// a Lambda-route launch's from its function's log group. Each launch's
    /// header goes to stderr.
    Logs {
        /// The job's id.
        job_id: String,
        /// Keep printing as the job writes, until it has ended and its last
        /// lines are in.
        #[arg(long, short)]
        follow: bool,
        /// Only this launch (1, 2, ...; `berth status` lists them).
        #[arg(long)]
        launch: Option<u32>,
        /// Seconds between reads with --follow.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
    /// What the jobs cost: each attempt's compute, priced when it ended
    /// (an estimate; it leaves out data transfer, logs, idle instance time
    /// and berth's own functions), summed by group.
    Cost {
        /// From when: a span back from now (7d, 12h, 30m), a date
        /// (2026-12-01, UTC) or a time (2026-12-01T09:00:00Z).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Until when, as --since (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Group by definition, route, day (UTC) or tag:KEY.
        #[arg(long, default_value = "definition")]
        by: String,
    },
    /// Cancel a job: queued, waiting or running, it ends CANCELLED.
    Cancel {
        /// The job's id.
        job_id: String,
        /// Why, kept in the job's record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A web console of the stack on 127.0.0.1: the jobs (live), each
    /// job's attempts and output, Cancel, the cluster, the cost and the
    /// simulator. Prints its URL, with a token that every request needs;
    /// runs until Ctrl-C.
    Console {
        /// The port to listen on (a free one when 0).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Job definitions: the allowlist of what may run.
    Definitions {
        #[command(subcommand)]
        command: DefinitionsCommand,
    },
    /// Simulate a day of jobs through berth and the alternatives: cost, waits,
    /// scaling. Needs no AWS account.
    Simulate(SimulateArgs),
    /// How many of the largest containers each instance type holds, and
    /// thresholds for alarms on SchedulableContainers that cannot loop (the
    /// seed's scaling; berth's scaler needs none). Warns when the largest
    /// container fits no type.
    Thresholds {
        /// An instance type, as CPU:MEMORY (CPU units, MiB) or by name
        /// (m5.large); repeat for each type.
        #[arg(long = "instance", value_parser = berth_cli::instance, required = true)]
        instances: Vec<Resources>,
        /// The largest container's CPU units and MiB, as CPU:MEMORY.
        #[arg(long, value_parser = largest)]
        largest: LargestContainer,
        /// How many largest containers must always fit (the scale-out threshold).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        headroom: u32,
        /// Check an existing scale-in threshold; exit 1 when it would loop.
        #[arg(long)]
        check: Option<u32>,
    },
}

#[derive(Subcommand)]
enum DefinitionsCommand {
    /// Register definitions from a JSON file (an object or an array; `-` for standard input).
    Put {
        /// The file.
        file: PathBuf,
    },
    /// List the registered definitions.
    List,
}

fn env_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))
}

fn tag_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))
}

fn condition(s: &str) -> Result<Condition, String> {
    Condition::parse(s)
        .ok_or_else(|| format!("unknown condition {s:?}; one of succeeded, failed, ended"))
}

/// `ID[:CONDITION]`; an array child's id (`PARENT:INDEX`) may stand alone.
fn dependency(s: &str) -> Result<Dependency, String> {
    let (job_id, condition) = match s.rsplit_once(':') {
        Some((id, c)) if Condition::parse(c).is_some() => (id, Condition::parse(c)),
        Some((_, c)) if !c.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "unknown condition {c:?}; one of succeeded, failed, ended"
            ));
        }
        _ => (s, None),
    };
    berth_core::dependency::validate_reference(job_id)?;
    Ok(Dependency::on(job_id, condition.unwrap_or_default()))
}

/// `ARRAY[:CONDITION]`, child by child.
fn each_dependency(s: &str) -> Result<Dependency, String> {
    let whole = dependency(s)?;
    if berth_core::array::parent_of(&whole.job_id).is_some() {
        return Err(format!(
            "`{}` is an array's child; --n-to-n names an array",
            whole.job_id
        ));
    }
    Ok(Dependency::each(whole.job_id, whole.condition))
}

fn status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
        let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status {s:?}; one of {}", all.join(", "))
    })
}

fn route(s: &str) -> Result<Route, String> {
    Route::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown route {s:?}; one of LAMBDA, EC2, FARGATE, FARGATE_SPOT"))
}

/// `berth watch`: on a terminal the table is redrawn in place, its clock
/// running; otherwise it is printed each time it changes.
async fn watch(
    berth: &Berth,
    mut job_ids: Vec<String>,
    interval: u64,
    timeout: u64,
    wait_for_record: u64,
    json: bool,
) -> Result<String, CliError> {
    if job_ids.is_empty() {
        // Only the statuses that are not ends: the ended jobs, however
        // many, are not read.
        for status in JobStatus::ALL.into_iter().filter(|s| !s.is_final()) {
            let open = berth.list(Some(status), None, usize::MAX).await?;
            job_ids.extend(open.into_iter().map(|r| r.job_id));
        }
        if job_ids.is_empty() {
            return Ok(if json {
                "[]".into()
            } else {
                "no job is running or waiting".into()
            });
        }
    }
    // JSON is the jobs as they end, printed once; tables are for people.
    let live = !json && std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut shown = String::new();
    loop {
        let jobs = berth.records(&job_ids).await?;
        let table = berth_cli::watch_table(&jobs);
        if !json && (live || table != shown) {
            if live {
                print!("\x1b[H\x1b[2J");
            }
            println!("[{:>4} s]\n{table}", started.elapsed().as_secs());
            shown = table;
        }
        if berth_cli::settled(&jobs) {
            if json {
                let rows: Vec<berth_cli::view::JobRow> = jobs
                    .iter()
                    .filter_map(|(_, r)| r.clone())
                    .map(|r| berth_cli::view::JobRow::of(&r.into()))
                    .collect();
                println!("{}", to_json(&rows)?);
            }
            return berth_cli::watch_outcome(&jobs);
        }
        let unknown: Vec<&str> = jobs
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !unknown.is_empty() && started.elapsed().as_secs() >= wait_for_record {
            return Err(CliError::Failed(format!(
                "no record of {} after {wait_for_record} s: an unknown job id, or a message still on the queue (--wait-for-record waits longer)",
                unknown.join(", ")
            )));
        }
        if timeout > 0 && started.elapsed().as_secs() >= timeout {
            return Err(CliError::Failed(format!(
                "some jobs had not ended after {timeout} s"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_secs(interval.max(1))).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(
        cli.command,
        cli.stack.as_deref(),
        cli.output == Format::Json,
    )
    .await
    {
        Ok(out) => {
            // A reader that stops early (`| head`) is no error.
            if !out.is_empty() {
                let _ = writeln!(std::io::stdout(), "{}", out.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let line = e.to_string();
            eprintln!("berth: {}", line.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
    }
}

/// The deployment `--stack` names, else the one the `BERTH_*` variables
/// name; in the AWS environment's account and region.
async fn connect(stack: Option<&str>) -> Result<Berth, CliError> {
    Ok(connect_with_config(stack).await?.0)
}

/// [`connect`], and the SDK configuration it used.
async fn connect_with_config(
    stack: Option<&str>,
) -> Result<(Berth, berth_aws::SdkConfig), CliError> {
    let config = berth_aws::load_sdk_config().await;
    let settings = match stack {
        Some(stack) => {
            berth_aws::stack::settings(&config, stack, |name| std::env::var(name).ok()).await?
        }
        None => Settings::from_env().map_err(|e| CliError::Input(e.to_string()))?,
    };
    let berth = Berth::new(settings, berth_aws::Clients::new(&config));
    Ok((berth, config))
}

/// `berth logs`: the lines on stdout as they are (or one JSON object per
/// line), each launch's header and the job's end on stderr.
async fn logs(
    stack: Option<&str>,
    job_id: &str,
    launch: Option<u32>,
    follow: Option<std::time::Duration>,
    json: bool,
) -> Result<String, CliError> {
    let (berth, config) = connect_with_config(stack).await?;
    let reader = berth_aws::logs::JobLogs::from_config(&config);
    let mut printed = 0usize;
    let mut launches = 0usize;
    let record = berth_cli::logs::logs(
        &berth,
        &reader,
        job_id,
        launch,
        follow,
        |launch, line| {
            printed += 1;
            let mut out = std::io::stdout().lock();
            // A reader that stops early (`| head`) is no error.
            if json {
                let view = berth_cli::logs::LineView {
                    job_id,
                    launch: launch.launch,
                    route: launch.route.as_str(),
                    at: berth_cli::view::iso(line.at).unwrap_or_default(),
                    stream: line.stream,
                    line: &line.line,
                };
                let text = serde_json::to_string(&view).unwrap_or_default();
                let _ = writeln!(out, "{text}");
            } else {
                let _ = writeln!(out, "{}", line.line);
            }
        },
        |launch| {
            launches += 1;
            eprintln!("== {} ==", launch.title());
        },
    )
    .await?;
    if launches == 0 {
        eprintln!(
            "berth: job {job_id} has not started ({})",
            record.status.as_str()
        );
    } else if printed == 0 {
        eprintln!("berth: no output of job {job_id} in CloudWatch Logs yet");
    }
    if follow.is_some() {
        let why = record
            .reason
            .as_deref()
            .map(|r| format!(": {}", r.lines().next().unwrap_or("")))
            .unwrap_or_default();
        eprintln!("berth: job {job_id} ended {}{why}", record.status.as_str());
    }
    Ok(String::new())
}

/// `berth console`: serves the console on 127.0.0.1:`port` until Ctrl-C.
async fn console(stack: Option<&str>, port: u16) -> Result<String, CliError> {
    let (berth, config) = connect_with_config(stack).await?;
    let reader = berth_aws::logs::JobLogs::from_config(&config);
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| CliError::Failed(format!("console: 127.0.0.1:{port}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("console: {e}")))?;
    let token = berth_cli::console::token();
    println!("berth console: {}", berth_cli::console::url(addr, &token));
    tokio::select! {
        served = berth_cli::console::serve(berth, reader, listener, &token) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(String::new())
}

/// `value` as pretty JSON.
fn to_json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(format!("JSON: {e}")))
}

async fn run(command: Command, stack: Option<&str>, json: bool) -> Result<String, CliError> {
    let connect = || connect(stack);
    match command {
        Command::Simulate(a) => {
            if a.assumptions {
                return Ok(berth_cli::simulate::assumptions());
            }
            a.into_simulate(json).run()
        }
        Command::Thresholds {
            instances,
            largest,
            headroom,
            check,
        } if json => berth_cli::thresholds_json(&instances, largest, headroom, check),
        Command::Thresholds {
            instances,
            largest,
            headroom,
            check,
        } => berth_cli::thresholds(&instances, largest, headroom, check),
        Command::Submit {
            file,
            definition,
            job_id,
            environment,
            tags,
            cpu,
            memory,
            gpu,
            timeout,
            processor,
            max_attempts,
            mut depends_on,
            n_to_n,
            array_size,
            max_running,
            sequential,
            command,
        } => {
            depends_on.extend(n_to_n);
            let body = file.as_deref().map(berth_cli::read).transpose()?;
            let submission = Submission {
                body,
                job_id,
                definition,
                command,
                environment,
                cpu,
                memory,
                gpu,
                timeout_seconds: timeout,
                processor,
                max_attempts,
                tags,
                depends_on,
                array: array_size.map(|size| berth_core::array::ArraySpec {
                    size,
                    max_running,
                    sequential,
                }),
            };
            let job_id = connect().await?.submit(&submission).await?;
            if json {
                to_json(&serde_json::json!({ "job_id": job_id }))
            } else {
                Ok(job_id)
            }
        }
        Command::Status { job_id } => {
            let cli = connect().await?;
            let r = cli.status(&job_id).await?;
            let mut view = berth_cli::view::JobView::of(&r, berth_cli::now_ms());
            view.children = cli.children_summary(&r).await?;
            if json {
                to_json(&view)
            } else {
                Ok(berth_cli::describe_view(&view))
            }
        }
        Command::List {
            status,
            route,
            limit,
            array,
        } => {
            let cli = connect().await?;
            let jobs = match array {
                Some(parent) => cli.list_array(&parent, status, route, limit).await?,
                None => cli.list(status, route, limit).await?,
            };
            if json {
                let rows: Vec<_> = jobs.iter().map(berth_cli::view::JobRow::of).collect();
                to_json(&rows)
            } else {
                Ok(table(&jobs))
            }
        }
        Command::Watch {
            job_ids,
            interval,
            timeout,
            wait_for_record,
        } => {
            watch(
                &connect().await?,
                job_ids,
                interval,
                timeout,
                wait_for_record,
                json,
            )
            .await
        }
        Command::Logs {
            job_id,
            follow,
            launch,
            interval,
        } => {
            let follow = follow.then(|| std::time::Duration::from_secs(interval.max(1)));
            logs(stack, &job_id, launch, follow, json).await
        }
        Command::Cost { since, until, by } => {
            let now = berth_cli::now_ms();
            let since = berth_cli::spend::parse_time(&since, now)?;
            let until = until
                .as_deref()
                .map_or(Ok(now), |u| berth_cli::spend::parse_time(u, now))?;
            let by = berth_cli::spend::GroupBy::parse(&by).map_err(CliError::Input)?;
            let report = connect().await?.cost(since, until, &by).await?;
            if json {
                to_json(&report)
            } else {
                Ok(berth_cli::spend::table(&report))
            }
        }
        Command::Cancel { job_id, reason } => {
            connect().await?.cancel(&job_id, reason.as_deref()).await
        }
        Command::Console { port } => console(stack, port).await,
        Command::Definitions { command } => match command {
            DefinitionsCommand::Put { file } => {
                let (names, warnings) = connect().await?.put_definitions(&file).await?;
                for w in &warnings {
                    eprintln!("berth: {w}");
                }
                Ok(format!("registered: {}", names.join(", ")))
            }
            DefinitionsCommand::List => {
                let defs = connect().await?.definitions_list().await?;
                if json {
                    return to_json(&defs);
                }
                let rows = defs.into_iter().map(|d| {
                    vec![
                        d.name,
                        d.task_definition,
                        d.cpu.to_string(),
                        d.memory.to_string(),
                        d.gpu.to_string(),
                        d.timeout_seconds.to_string(),
                        d.daily_limit_usd
                            .map_or_else(|| "-".into(), berth_core::cost::usd),
                        d.lambda_function.unwrap_or_else(|| "-".into()),
                    ]
                });
                Ok(berth_cli::columns(
                    &[
                        "NAME",
                        "TASK DEFINITION",
                        "CPU",
                        "MEMORY",
                        "GPU",
                        "TIMEOUT",
                        "LIMIT/DAY",
                        "LAMBDA",
                    ],
                    &[2, 3, 4, 5, 6],
                    rows,
                ))
            }
        },
    }
}
