//! berth-local: berth end to end on the local AWS, no AWS account needed;
//! ECS tasks run as real containers when a Docker engine answers, and are
//! played when none does. It starts the local AWS and `cargo lambda watch`
//! with berth's real function binaries, provisions a deployment (queue and
//! dead-letter queue, tables, a cluster and its Auto Scaling group, task and
//! job definitions) in an account of its own, then does what AWS would
//! (see `glue`): among it, registering the group's instances with the
//! cluster as they boot. `demo` submits a mixed set of jobs, follows them
//! to their end and the cluster back to zero; `run` keeps going until
//! interrupted.

mod burst;
mod console;

/// The shortest soak, in minutes. A job whose messages the faults lose
/// twice in a row (an array's child not sent, then its end not counted on
/// its parent) is put back by the sweep twice, each time after
/// `soak::STRANDED_AFTER_SECONDS` of quiet: a 40-job soak that met that
/// was still waiting for the second when its 10 minutes ran out.
const SOAK_MINUTES_AT_LEAST: u64 = 15;
mod glue;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use berth_aws::{Clients, Settings};
use berth_cli::{Berth, Submission};
use berth_core::{JobDefinition, JobStatus, Route};
use berth_local::deployment::{Deployment, Instances, Options};
use clap::{Parser, Subcommand};
use glue::Containers;

#[derive(Parser)]
#[command(
    name = "berth-local",
    version,
    about = "berth end to end on the local AWS"
)]
struct Args {
    #[command(subcommand)]
    command: Mode,
    /// Seconds between runs of the capacity metric (and its scaler) and the
    /// timeout sweep.
    #[arg(long, default_value_t = 5, global = true)]
    every: u64,
}

/// The cluster's capacity in the local run.
#[derive(clap::Args, Clone, Copy, Debug)]
struct Capacity {
    /// The most instances the cluster's Auto Scaling group may have; it
    /// starts with none and the scaler grows and shrinks it.
    #[arg(long, default_value_t = 3)]
    max_instances: u32,
    /// Seconds an instance stays idle before the scaler drains it (the
    /// deployed default is 100, the break-even of an idle instance).
    #[arg(long, default_value_t = 20)]
    scale_in_after: u32,
    /// Seconds from an instance's launch to its registering with the
    /// cluster.
    #[arg(long, default_value_t = 10)]
    boot: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Submit a mixed set of jobs, show them until they settle, check each end
    /// state, and follow the cluster from zero instances and back.
    Demo {
        #[command(flatten)]
        capacity: Capacity,
        /// After the check, keep the local run, its glue and its console
        /// up until Ctrl-C, to look around (it prints what `berth` needs to
        /// reach it, then `ready`).
        #[arg(long)]
        stay: bool,
    },
    /// N jobs end to end with faults injected between the functions and the
    /// local AWS; then every job accounted for, and no launch made twice.
    Soak {
        /// Jobs to submit.
        #[arg(long, default_value_t = 2_000)]
        jobs: usize,
        /// The rate (0–1) of each fault kind: throttling, 5xx, dropped
        /// connections, slow answers, RunTask denied, a next attempt not
        /// queued, a driver stopped part way through a batch.
        #[arg(long, default_value_t = 0.05)]
        fault_rate: f64,
        /// Give up after this many minutes (default: 3 s a job, at least
        /// 15 minutes; the local run takes about 2 s a job here).
        #[arg(long)]
        minutes: Option<u64>,
        /// Container instances, registered at the start (the soak runs on a
        /// fixed cluster).
        #[arg(long, default_value_t = 2)]
        instances: usize,
    },
    /// N jobs submitted at once, the functions' RunTask and DynamoDB writes
    /// limited at AWS's documented rates times `--scale`: the launches a
    /// second against the limit, none launched twice, none failed by
    /// throttling, and the time to launch all against the floor.
    Burst {
        /// Jobs to submit.
        #[arg(long, default_value_t = 2_000)]
        jobs: usize,
        /// The share of AWS's rates the proxy lets through (RunTask: 100 at
        /// once, then 20 a second; DynamoDB: 4,000 writes a second): the
        /// default, 10 at once then 2 RunTasks a second, is what the local
        /// AWS serves of berth's calls on two cores.
        #[arg(long, default_value_t = 0.1)]
        scale: f64,
        /// Give up after this many minutes (default: twice the floor, at
        /// least 10 minutes).
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Provision and keep the glue running (submit with `berth`) until Ctrl-C.
    Run {
        #[command(flatten)]
        capacity: Capacity,
        /// Rebuild and restart a function when its source changes
        /// (`cargo lambda watch` without `--ignore-changes`): the loop for
        /// changing berth's functions.
        #[arg(long)]
        reload: bool,
        /// Start from a new account, leaving the last run's jobs behind
        /// (by default a run started again takes up the last run's
        /// account, its key and its jobs, while the local AWS still holds
        /// them).
        #[arg(long)]
        reset: bool,
        /// Where the run keeps its account between starts.
        #[arg(long, default_value = ".local-aws/run.json")]
        state: PathBuf,
        /// Also serve the local AWS on this address of this machine, one
        /// that containers reach (berth's engine's bridge, 172.30.99.1, or
        /// Docker's docker0, 172.17.0.1), for `sam local invoke`: the
        /// functions' variables for its `--env-vars` are written to
        /// `--sam-env`.
        #[arg(long)]
        sam_host: Option<std::net::IpAddr>,
        /// Where `--sam-host` writes the variables `sam local invoke
        /// --env-vars` takes.
        #[arg(long, default_value = ".local-aws/sam-env.json")]
        sam_env: PathBuf,
    },
}

/// The cluster's instances: fixed, or an Auto Scaling group.
#[derive(Debug, Clone, Copy)]
enum Cluster {
    Fixed(usize),
    Group(Capacity),
}

/// The deployment on the local AWS, and how to reach its functions.
pub struct Local {
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub clients: Clients,
    /// The SDK configuration the clients were built from (the account's
    /// key, the local AWS's endpoint).
    pub sdk_config: aws_config::SdkConfig,
    pub settings: Settings,
    /// The deployment's `BERTH_*` variables.
    pub exports: Vec<(&'static str, String)>,
    /// The AWS variables that reach this account of the local AWS: the
    /// endpoint, the region and the account's key.
    pub reach: Vec<(&'static str, String)>,
    pub watch_lambda: aws_sdk_lambda::Client,
    /// The account's access key (id, secret).
    pub key: (String, String),
    /// The account is a last run's, taken up again.
    pub reused: bool,
    /// The port `cargo lambda watch` serves the functions on.
    pub watch_port: u16,
    /// The functions' own variables (the deployment's `BERTH_*` and the
    /// function settings), as under `cargo lambda watch`.
    pub function_env: Vec<(String, String)>,
    /// Where Lambda's asynchronous invokes are answered (to `cargo lambda
    /// watch`, with Lambda's retries).
    pub async_invoke: String,
    /// CloudWatch Logs, where the containers write.
    pub job_logs: berth_aws::logs::JobLogs,
    /// The Docker engine ECS tasks' containers run on; `None`: they are
    /// played.
    pub engine: Option<berth_local::engine::Engine>,
    ids: AtomicU64,
    /// The fault proxy between the functions and the local AWS, if any.
    pub faults: Option<berth_local::proxy::LatencyProxy>,
    /// Asynchronous invocations that failed three times (Lambda's retries)
    /// and went to the on-failure destination.
    pub lost_events: AtomicU64,
    /// Messages handed to the driver.
    pub delivered: AtomicU64,
    /// Batches handed to a driver that stopped part way (a soak fault).
    pub crashed_batches: AtomicU64,
    /// Batches received and never handed to the driver, as for a driver
    /// held back by throttling (a soak fault): SQS counted the receives.
    pub throttled_batches: AtomicU64,
}

impl Local {
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// What is started is stopped, also on an error or Ctrl-C.
struct Processes {
    watch: Option<berth_local::watch::Watch>,
    stop_local_aws: bool,
    /// The engine the run's containers are on, and the run's account.
    containers: Option<(berth_local::engine::Engine, String)>,
}

impl Processes {
    /// Removes the containers the run started, running or not.
    async fn remove_containers(&mut self) {
        let Some((engine, account)) = self.containers.take() else {
            return;
        };
        let ids = engine
            .labelled(glue::ACCOUNT_LABEL, &account)
            .await
            .unwrap_or_default();
        for id in ids {
            if let Err(e) = engine.remove(&id).await {
                eprintln!("berth-local: container {id} not removed: {e}");
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // Stopped first: the functions still talk to the local AWS.
        drop(self.watch.take());
        if self.stop_local_aws {
            let _ = Command::new(root().join("scripts/local-aws"))
                .arg("stop")
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// The workspace root: from the package directory Cargo names when it runs
/// this (`cargo run`), else the one compiled in. Two checkouts that share a
/// target dir may share this binary's build.
fn root() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..");
    // As a path a user reads: /work/berth/.local-aws, not .../crates/local/../../.local-aws.
    root.canonicalize().unwrap_or(root)
}

type Fallible<T> = Result<T, String>;

/// Resolves when the run is told to stop: Ctrl-C (SIGINT), SIGTERM (what
/// `timeout`, `kill` and process managers send) or SIGHUP (its terminal
/// closed). Either way everything it started is stopped.
async fn stopped() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    async fn on(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Not watchable: never resolves, the others still do.
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        () = on(SignalKind::interrupt()) => "interrupted",
        () = on(SignalKind::terminate()) => "terminated (SIGTERM)",
        () = on(SignalKind::hangup()) => "hung up (SIGHUP)",
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut processes = Processes {
        watch: None,
        stop_local_aws: false,
        containers: None,
    };
    let outcome = tokio::select! {
        r = run(&args, &mut processes) => r,
        why = stopped() => Err(why.into()),
    };
    if let Err(e) = &outcome {
        eprintln!("berth-local: {e}");
    }
    processes.remove_containers().await;
    drop(processes);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

async fn run(args: &Args, processes: &mut Processes) -> Fallible<bool> {
    let (endpoint, region, started) = start_local_aws()?;
    processes.stop_local_aws = started;
    println!("local AWS at {endpoint}");
    let faults = match args.command {
        Mode::Soak { fault_rate, .. } => Some(berth_local::proxy::Faults {
            rate: fault_rate,
            applies: soak::faulted,
            limits: None,
        }),
        Mode::Burst { scale, .. } => Some(berth_local::proxy::Faults {
            rate: 0.0,
            applies: burst::limited,
            limits: Some(scale),
        }),
        _ => None,
    };
    let cluster = match args.command {
        Mode::Demo { capacity, .. } | Mode::Run { capacity, .. } => Cluster::Group(capacity),
        Mode::Soak { instances, .. } => Cluster::Fixed(instances),
        // No instance: every job a RunTask on Fargate.
        Mode::Burst { .. } => Cluster::Fixed(0),
    };
    let reload = matches!(args.command, Mode::Run { reload: true, .. });
    // A run takes up the last run's account while the local AWS holds it.
    let kept = match &args.command {
        Mode::Run { reset, state, .. } => Some((root().join(state), *reset)),
        _ => None,
    };
    let again = match &kept {
        Some((state, false)) => Kept::load(state, &endpoint, &region, started).await,
        _ => None,
    };
    let local = provision(
        &endpoint, &region, cluster, faults, reload, again, processes,
    )
    .await?;
    if let Some((state, _)) = &kept {
        let saved = Kept {
            endpoint: endpoint.clone(),
            account: local.account.clone(),
            key: local.key.0.clone(),
            secret: local.key.1.clone(),
        };
        match saved.save(state) {
            Ok(()) if started => println!(
                "this run started the local AWS, which stops with it, and its account too: started first (`make local-aws`), the local AWS keeps the account for the next run"
            ),
            Ok(()) => println!(
                "the account is kept in {} for the next run while the local AWS runs (`--reset` starts anew)",
                state.display()
            ),
            Err(e) => eprintln!("berth-local: the account is not kept for the next run: {e}"),
        }
    }
    let instances = match cluster {
        Cluster::Fixed(n) => format!("{n} container instances"),
        Cluster::Group(c) => format!(
            "no instance yet: an Auto Scaling group of at most {} instances of the types the scaler chooses ({}, {} vCPUs), idle ones drained after {} s",
            c.max_instances,
            berth_local::fleet::ALLOWED_TYPES,
            berth_local::fleet::ALLOWED_VCPUS,
            c.scale_in_after
        ),
    };
    println!(
        "{} account {}: queue, dead-letter queue, tables, cluster `{}` with {instances}; job definitions {}",
        if local.reused {
            "took up"
        } else {
            "provisioned"
        },
        local.account,
        local.cluster,
        demo_definitions()
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let every = Duration::from_secs(args.every);
    let boot = match cluster {
        Cluster::Group(c) => Some(Duration::from_secs(c.boot)),
        Cluster::Fixed(_) => None,
    };
    match args.command {
        Mode::Demo { stay, .. } => {
            let mut glue = Glue::new(every, boot);
            let passed = demo(&local, &mut glue).await?;
            if !stay {
                return Ok(passed);
            }
            println!(
                "the demo {}: the local run and its console stay up until Ctrl-C",
                if passed {
                    "passed"
                } else {
                    "found differences"
                }
            );
            print_reach(&local);
            println!("ready");
            serve(&local, &mut glue, None).await
        }
        Mode::Soak { jobs, minutes, .. } => {
            let minutes = minutes.unwrap_or((jobs as u64 * 3 / 60).max(SOAK_MINUTES_AT_LEAST));
            let mut glue = Glue::new(every, boot);
            soak::run(&local, &mut glue, jobs, Duration::from_secs(minutes * 60)).await
        }
        Mode::Burst {
            jobs,
            scale,
            minutes,
        } => {
            let floor_s = jobs as f64 / (berth_sim::figures::RUN_TASK_PER_SECOND.value * scale);
            let minutes = minutes.unwrap_or(((2.0 * floor_s / 60.0).ceil() as u64).max(10));
            let mut glue = Glue::new(every, boot);
            burst::run(
                &local,
                &mut glue,
                jobs,
                scale,
                Duration::from_secs(minutes * 60),
            )
            .await
        }
        Mode::Run { .. } => {
            print_reach(&local);
            println!(
                "invoke a function with a sample event: cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port {} berth-driver --data-file events/driver-sqs.json",
                local.watch_port
            );
            // Held while the run goes on: it serves the containers.
            let sam = match &args.command {
                Mode::Run {
                    sam_host: Some(address),
                    sam_env,
                    ..
                } => Some(serve_sam(&local, *address, &root().join(sam_env)).await?),
                _ => None,
            };
            println!("console: {}", console::start(&local).await?);
            println!("ready");
            let mut glue = Glue::new(every, boot);
            serve(&local, &mut glue, sam.as_ref()).await
        }
    }
}

/// Everything `berth` (or the AWS CLI) needs to reach this run, as lines a
/// shell can evaluate.
fn print_reach(local: &Local) {
    println!("running: reach it with these variables, then use `berth`:");
    for (k, v) in local.reach.iter().chain(&local.exports) {
        println!("export {k}='{v}'");
    }
}

/// Keeps the glue running and tells the jobs' changes, until the process
/// is stopped.
async fn serve(
    local: &Local,
    glue: &mut Glue,
    sam: Option<&berth_local::proxy::LatencyProxy>,
) -> Fallible<bool> {
    let mut activity = Activity::default();
    let store =
        berth_aws::JobStore::new(local.clients.dynamodb.clone(), &local.settings.jobs_table);
    let mut looked = Instant::now();
    loop {
        glue.tick(local).await?;
        if looked.elapsed() >= Duration::from_secs(1) {
            for change in activity.changes(&store).await? {
                glue.say(&change);
            }
            if let Some(line) = sam.and_then(|p| containers_calls(&p.calls)) {
                glue.say(&line);
            }
            looked = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Serves the local AWS (and Lambda's asynchronous invokes) on `address`
/// for the functions `sam local invoke` runs in containers, and writes their
/// variables, as `sam local invoke --env-vars` takes them, to `path`.
async fn serve_sam(
    local: &Local,
    address: std::net::IpAddr,
    path: &std::path::Path,
) -> Fallible<berth_local::proxy::LatencyProxy> {
    let endpoint = local
        .sdk_config
        .endpoint_url()
        .ok_or("the run has no endpoint")?;
    let proxy =
        berth_local::proxy::LatencyProxy::start_on(address, endpoint, Some(&local.async_invoke))
            .await?;
    let vars = sam_env_vars(&proxy.endpoint, endpoint, &local.function_env);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&vars).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    };
    println!(
        "the local AWS for containers at {} (the functions' variables: {}); after `make sam-build`, with the exports above: sam local invoke -t .aws-sam/local/template.yaml --parameter-overrides Architecture={arch} --env-vars {} DriverFunction -e events/driver-sqs.json",
        proxy.endpoint,
        path.display(),
        path.display()
    );
    Ok(proxy)
}

/// The calls the containers made to the local AWS since the last look, by
/// operation, as one line; `None` when they made none.
fn containers_calls(calls: &berth_local::proxy::CallCounts) -> Option<String> {
    let calls = calls.take();
    if calls.is_empty() {
        return None;
    }
    let total: u64 = calls.values().map(|c| c.count).sum();
    let each = calls
        .iter()
        .map(|(op, c)| format!("{op} {}", c.count))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "containers' calls to the local AWS: {total} ({each})"
    ))
}

/// `sam local invoke --env-vars`' file: the same variables for every
/// function (its `Parameters`). Every berth setting is given, empty (unset)
/// where the run has none, so that no value of the template's stands in for
/// the run's; the local AWS's address (`loopback`) becomes `endpoint`, which
/// the containers reach. SAM passes the shell's key and region itself.
fn sam_env_vars(
    endpoint: &str,
    loopback: &str,
    function_env: &[(String, String)],
) -> serde_json::Value {
    let mut vars = serde_json::Map::new();
    for name in berth_aws::settings::ALL {
        vars.insert((*name).to_owned(), "".into());
    }
    for (k, v) in function_env {
        let v = match v.strip_prefix(loopback) {
            Some(rest) => format!("{endpoint}{rest}"),
            None => v.clone(),
        };
        vars.insert(k.clone(), v.into());
    }
    vars.insert("AWS_ENDPOINT_URL".into(), endpoint.into());
    vars.insert("AWS_ENDPOINT_URL_LAMBDA".into(), endpoint.into());
    serde_json::json!({ "Parameters": vars })
}

/// What the local run says of its jobs as it goes: each change of a job's
/// status, route or launch, once, oldest first, with the reason it has.
#[derive(Default)]
struct Activity {
    known: std::collections::HashMap<String, (JobStatus, Option<Route>, u32)>,
}

impl Activity {
    /// Jobs recently changed in each status, compared with what was seen.
    async fn changes(&mut self, store: &berth_aws::JobStore) -> Fallible<Vec<String>> {
        let mut changed = Vec::new();
        for status in JobStatus::ALL {
            let recent = store
                .in_status(status, 50)
                .await
                .map_err(|e| e.to_string())?;
            for j in recent {
                let now = (j.status, j.route, j.launch);
                if self.known.get(&j.job_id) != Some(&now) {
                    self.known.insert(j.job_id.clone(), now);
                    changed.push(j);
                }
            }
        }
        changed.sort_by_key(|j| j.updated_at);
        Ok(changed
            .into_iter()
            .map(|j| {
                let reason = berth_cli::view::shown_reason(j.status, j.reason.as_deref())
                    .map(|r| format!(": {}", berth_cli::view::one_line(r)))
                    .unwrap_or_default();
                format!(
                    "job {} {} {} launch {}{reason}",
                    j.job_id,
                    j.status.as_str(),
                    j.route.map_or("-", Route::as_str),
                    j.launch
                )
            })
            .collect())
    }
}

/// The SDK configuration of an account of the local AWS at `endpoint`, by
/// its access key.
async fn account_config(
    endpoint: &str,
    region: &str,
    key: &str,
    secret: &str,
) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "berth-local",
        ))
        .load()
        .await
}

/// The account a local run keeps for the next one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    endpoint: String,
    account: String,
    key: String,
    secret: String,
}

impl Kept {
    /// The last run's account, if the local AWS at `endpoint` still holds
    /// it: it was running before this run (`!started`), and the kept key
    /// still reads the account's jobs table.
    async fn load(path: &Path, endpoint: &str, region: &str, started: bool) -> Option<Self> {
        let kept: Self = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        if started || kept.endpoint != endpoint {
            println!("a new account: the local AWS that held the last run's has stopped since");
            return None;
        }
        let config = account_config(endpoint, region, &kept.key, &kept.secret).await;
        let table = aws_sdk_dynamodb::Client::new(&config)
            .describe_table()
            .table_name(berth_local::deployment::JOBS_TABLE_NAME)
            .send()
            .await;
        match table {
            Ok(_) => Some(kept),
            Err(_) => {
                println!("a new account: the local AWS holds the last run's no more");
                None
            }
        }
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        // The key is the account's: readable by its owner alone.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `scripts/local-aws start`: (endpoint, region, whether this run started it).
fn start_local_aws() -> Fallible<(String, String, bool)> {
    let script = root().join("scripts/local-aws");
    let running = Command::new(&script)
        .arg("env")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let out = Command::new(&script)
        .arg("start")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run scripts/local-aws: {e}"))?;
    if !out.status.success() {
        return Err("scripts/local-aws start failed".into());
    }
    let exports = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        exports.lines().find_map(|l| {
            l.strip_prefix(&format!("export {name}="))
                .map(|v| v.trim_matches('\'').trim_matches('"').to_owned())
        })
    };
    let endpoint =
        var("AWS_ENDPOINT_URL").ok_or("scripts/local-aws printed no AWS_ENDPOINT_URL")?;
    if !endpoint.starts_with("http://127.0.0.1:") {
        return Err(format!("not a loopback endpoint: {endpoint}"));
    }
    Ok((
        endpoint,
        var("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into()),
        !running,
    ))
}

async fn provision(
    endpoint: &str,
    region: &str,
    cluster_capacity: Cluster,
    faults: Option<berth_local::proxy::Faults>,
    reload: bool,
    again: Option<Kept>,
    processes: &mut Processes,
) -> Fallible<Local> {
    let existing = again.is_some();
    let (account, key, secret) = match again {
        Some(k) => {
            println!(
                "taking up the last run's account {} (`--reset` starts anew)",
                k.account
            );
            (k.account, k.key, k.secret)
        }
        None => {
            let account = berth_local::moto::new_account_id();
            let moto = berth_local::moto::Account::new(endpoint, region, &account);
            let (key, secret) = moto.access_key("berth-local").await?;
            (account, key, secret)
        }
    };
    let moto = berth_local::moto::Account::new(endpoint, region, &account);

    let config = account_config(endpoint, region, &key, &secret).await;
    let clients = Clients::new(&config);
    let instances = match cluster_capacity {
        Cluster::Fixed(n) => Instances::Fixed(n),
        Cluster::Group(c) => Instances::Group {
            max: c.max_instances,
            scale_in_after: c.scale_in_after,
        },
    };
    let Deployment {
        settings,
        vars,
        queue_url,
        dlq_url,
    } = Deployment::provision(
        &clients,
        &moto,
        &Options {
            instances,
            visibility_timeout: 60,
            max_receives: Some(50),
            existing,
        },
    )
    .await?;
    let cluster = settings.cluster.clone();
    let exports = vars.clone();
    let mut vars: Vec<(String, String)> =
        vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let definitions =
        berth_aws::Definitions::new(clients.dynamodb.clone(), &settings.definitions_table);
    for def in demo_definitions() {
        definitions.put(&def).await.map_err(|e| e.to_string())?;
    }

    let port = berth_local::watch::free_port().map_err(|e| e.to_string())?;
    let watch_url = format!("http://127.0.0.1:{port}");
    let async_url = glue::async_invoke_endpoint(watch_url.clone()).await?;
    // With faults, the functions reach the local AWS (and Lambda's
    // asynchronous invoke) through the fault proxy.
    let proxy = match faults {
        Some(f) => Some(
            berth_local::proxy::LatencyProxy::start_with(
                endpoint,
                Some(&async_url),
                Duration::ZERO,
                Some(f),
            )
            .await,
        ),
        None => None,
    };
    let (functions_endpoint, lambda_endpoint) = match &proxy {
        Some(p) => (p.endpoint.clone(), p.endpoint.clone()),
        None => (endpoint.to_owned(), async_url.clone()),
    };
    vars.push((
        berth_aws::settings::MAX_INTERRUPTIONS.into(),
        berth_aws::settings::DEFAULT_MAX_INTERRUPTIONS.to_string(),
    ));
    // The soak's settings (not the burst's, which throttles and loses
    // nothing, and whose jobs wait to launch for minutes on end).
    if faults.is_some_and(|f| f.limits.is_none()) {
        // The soak loses next attempts' messages on purpose: the sweep puts
        // them back after two minutes of quiet, not twenty.
        vars.push((
            berth_aws::settings::STRANDED_AFTER_SECONDS.into(),
            soak::STRANDED_AFTER_SECONDS.to_string(),
        ));
        // Its capped definition's days are a minute long.
        vars.push((
            berth_aws::settings::SPENDING_DAY_SECONDS.into(),
            soak::SPENDING_DAY_SECONDS.to_string(),
        ));
        // Its cancels of running Lambda-route jobs are seen within seconds.
        vars.push((
            berth_aws::settings::HEARTBEAT_SECONDS.into(),
            soak::HEARTBEAT_SECONDS.to_string(),
        ));
    }
    // The Lambda-route jobs' lines go to their function's log group, as
    // Lambda sends a function's output to CloudWatch Logs.
    // One writer for the run: its clones share the streams it has made.
    let job_logs = berth_aws::logs::JobLogs::from_config(&config);
    let (job_lines, lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(glue::lambda_logs(job_logs.clone(), lines));
    let watch = berth_local::watch::Watch::start(berth_local::watch::WatchConfig {
        root: &root(),
        functions: &[
            "berth-driver",
            "berth-ecs-runner",
            "berth-lambda-task-processor",
            "berth-capacity-metric",
        ],
        port,
        endpoint: &functions_endpoint,
        lambda_endpoint: &lambda_endpoint,
        region,
        key: (&key, &secret),
        env: &vars,
        log: std::env::temp_dir().join(format!("berth-local-watch-{port}.log")),
        job_lines: Some(job_lines),
        reload,
    })
    .await?;
    println!(
        "cargo lambda watch on {watch_url} (its log: {})",
        watch.log.display()
    );
    processes.watch = Some(watch);
    // Real containers when an engine answers and has the job image; the
    // soak plays them (thousands of tasks, and its faults are elsewhere).
    let own_engine = root().join(berth_local::engine::OWN_SOCKET);
    let engine = match (
        faults.is_some(),
        berth_local::engine::Engine::connect_or(&own_engine).await,
    ) {
        (true, _) => {
            println!("ECS tasks' containers are played (the soak)");
            None
        }
        (false, Ok(engine)) if engine.has_image(berth_local::moto::JOB_IMAGE).await => {
            println!(
                "ECS tasks run as real containers on the Docker engine ({})",
                std::env::var("DOCKER_HOST").unwrap_or_else(|_| if own_engine.exists() {
                    format!("unix://{}", own_engine.display())
                } else {
                    "its default socket".into()
                })
            );
            Some(engine)
        }
        (false, Ok(_)) => {
            println!(
                "ECS tasks' containers are played: the Docker engine has no {} (scripts/local-images makes it)",
                berth_local::moto::JOB_IMAGE
            );
            None
        }
        (false, Err(e)) => {
            println!(
                "ECS tasks' containers are played: no Docker engine answers ({e}; scripts/local-engine starts one)"
            );
            None
        }
    };
    processes.containers = engine.clone().map(|e| (e, account.clone()));
    let watch_config = aws_sdk_lambda::config::Builder::from(&config)
        .endpoint_url(&watch_url)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .build();
    Ok(Local {
        account,
        region: region.to_owned(),
        cluster,
        queue_url,
        dlq_url,
        clients,
        sdk_config: config.clone(),
        settings,
        exports,
        reach: vec![
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            ("AWS_REGION", region.to_owned()),
            ("AWS_DEFAULT_REGION", region.to_owned()),
            ("AWS_ACCESS_KEY_ID", key.clone()),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ],
        watch_lambda: aws_sdk_lambda::Client::from_conf(watch_config),
        watch_port: port,
        function_env: vars,
        async_invoke: async_url,
        key: (key.clone(), secret.clone()),
        reused: existing,
        job_logs,
        engine,
        ids: AtomicU64::new(1),
        faults: proxy,
        lost_events: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        crashed_batches: AtomicU64::new(0),
        throttled_batches: AtomicU64::new(0),
    })
}

fn demo_definitions() -> Vec<JobDefinition> {
    let render = JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: "render".into(),
        task_definition: "render".into(),
        container: "main".into(),
        lambda_function: None,
        // On a real container: works PLAY_SECONDS, writes a frame and
        // prints its size (scripts/images/berth-job).
        command: Some(vec!["berth-job".into(), "render".into()]),
        cpu: 1024,
        memory: 2048,
        gpu: 0,
        timeout_seconds: 600,
        max_attempts: 2,
        fargate: true,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    };
    vec![
        JobDefinition {
            name: "train".into(),
            task_definition: "train".into(),
            command: None,
            gpu: 1,
            fargate: false,
            ..render.clone()
        },
        // EC2 only, no GPU: it waits for capacity, and the scaler starts an
        // instance for it.
        JobDefinition {
            name: "reindex".into(),
            task_definition: "train".into(),
            command: None,
            fargate: false,
            ..render.clone()
        },
        JobDefinition {
            name: "thumbnail".into(),
            lambda_function: Some("berth-lambda-task-processor".into()),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo \"thumbnail of $INPUT\"; sleep 1".into(),
            ]),
            timeout_seconds: 60,
            // A second or two: cheaper on Lambda than Fargate's minute.
            expected_seconds: Some(2),
            ..render.clone()
        },
        render,
    ]
}

/// The demo's live view on a terminal: the screen cleared, the clock, the
/// table, and the last lines the glue said that fit under it.
fn redraw(started: Instant, table: &str, said: &[String]) {
    use std::io::Write;
    const SAID_LINES: usize = 8;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[H\x1b[2J");
    let _ = writeln!(out, "[{:>3} s]\n{table}", started.elapsed().as_secs());
    for line in &said[said.len().saturating_sub(SAID_LINES)..] {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// The loop of what AWS would do, with its schedules.
pub struct Glue {
    containers: Containers,
    every: Duration,
    started: Instant,
    last_schedule: Option<Instant>,
    /// The group's instances on their way into the cluster, with a group.
    boots: Option<berth_local::fleet::Boots>,
    pub schedulable: Option<serde_json::Value>,
    /// What the capacity metric reported of the definitions, once each.
    pub unplaceable: Vec<String>,
    /// Container instances in the cluster now, and the most seen.
    pub instances: usize,
    pub peak_instances: usize,
    /// Jobs the sweep gave the end (or start) their task had, because the
    /// task's event never reached ecs-runner.
    pub reconciled: Vec<String>,
    /// Jobs the sweep timed out.
    pub timed_out: Vec<String>,
    /// Jobs the sweep put back on the queue, their message lost.
    pub requeued: Vec<String>,
    /// While a live view owns the terminal, what the glue says is kept
    /// here for it to show (the newest last) instead of printed.
    said: Option<Vec<String>>,
    /// The containers wait: each tick only hands the queue to the driver
    /// and runs the schedules (the burst, while its jobs launch: on AWS
    /// ecs-runner handles the tasks' events beside the driver, where here
    /// one loop does both in turn).
    pub hold_containers: bool,
    /// Each tick hands the queue to the driver (the burst hands it over
    /// itself, several batches at once).
    pub hand_over_queue: bool,
}

impl Glue {
    /// The glue; `boot`: with an Auto Scaling group, how long its instances
    /// take to register.
    fn new(every: Duration, boot: Option<Duration>) -> Self {
        Self {
            containers: Containers::default(),
            every,
            started: Instant::now(),
            last_schedule: None,
            boots: boot.map(berth_local::fleet::Boots::new),
            schedulable: None,
            unplaceable: Vec::new(),
            instances: 0,
            peak_instances: 0,
            reconciled: Vec::new(),
            timed_out: Vec::new(),
            requeued: Vec::new(),
            said: None,
            hold_containers: false,
            hand_over_queue: true,
        }
    }

    fn say(&mut self, what: &str) {
        let line = format!("[{:>3} s] {what}", self.started.elapsed().as_secs());
        match &mut self.said {
            Some(kept) => kept.push(line),
            None => println!("{line}"),
        }
    }

    /// Keeps what the glue says for a live view (`true`), or prints it
    /// again as it comes (`false`).
    fn keep_what_is_said(&mut self, keep: bool) {
        self.said = keep.then(Vec::new);
    }

    pub async fn tick(&mut self, local: &Local) -> Fallible<()> {
        // A few batches a tick, so that a long queue does not hold up the
        // containers' events and the schedules.
        for _ in 0..5 {
            if !self.hand_over_queue || glue::deliver_queue(local).await? == 0 {
                break;
            }
        }
        if !self.hold_containers {
            self.containers.play(local).await?;
        }
        if self.last_schedule.is_none_or(|t| t.elapsed() >= self.every) {
            self.last_schedule = Some(Instant::now());
            let report =
                glue::invoke_event(local, "berth-capacity-metric", &glue::scheduled(local)).await;
            if let Some(report) = report {
                self.capacity(&report);
            }
            let sweep =
                glue::invoke_event(local, "berth-ecs-runner", &glue::scheduled(local)).await;
            if let Some(sweep) = sweep {
                let listed = |key: &str| sweep[key].as_array().cloned().unwrap_or_default();
                let reconciled = listed("reconciled");
                let timed_out = listed("timed_out");
                self.reconciled.extend(
                    reconciled
                        .iter()
                        .filter_map(|v| v["job_id"].as_str())
                        .map(str::to_owned),
                );
                self.timed_out.extend(
                    timed_out
                        .iter()
                        .filter_map(|v| v.as_str())
                        .map(str::to_owned),
                );
                self.requeued.extend(
                    listed("requeued")
                        .iter()
                        .filter_map(|v| v.as_str())
                        .map(str::to_owned),
                );
            }
        }
        if let Some(boots) = &mut self.boots {
            let c = &local.clients;
            let synced = boots
                .sync(&c.autoscaling, &c.ecs, &local.cluster, &local.region)
                .await?;
            for id in &synced.registered {
                self.say(&format!("instance {id} booted and joined the cluster"));
            }
            for arn in &synced.joined {
                glue::instance_changed(local, arn).await?;
            }
            for id in &synced.deregistered {
                self.say(&format!("instance {id} terminated and left the cluster"));
            }
            if !synced.registered.is_empty() || !synced.deregistered.is_empty() {
                self.say(&format!("the cluster has {} instance(s)", synced.cluster));
            }
            self.instances = synced.cluster;
            self.peak_instances = self.peak_instances.max(synced.cluster);
        }
        Ok(())
    }

    /// What the capacity metric and its scaler report, said when it changes.
    fn capacity(&mut self, report: &serde_json::Value) {
        let schedulable = &report["schedulable_containers"];
        if self.schedulable.as_ref() != Some(schedulable) {
            self.say(&format!("SchedulableContainers = {schedulable}"));
            self.schedulable = Some(schedulable.clone());
        }
        for problem in report["unplaceable"].as_array().into_iter().flatten() {
            let problem = problem.as_str().unwrap_or_default().to_owned();
            if !self.unplaceable.contains(&problem) {
                self.say(&format!("capacity metric: {problem}"));
                self.unplaceable.push(problem);
            }
        }
        for reason in report["scaling"]["reasons"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.say(&format!("scaler: {}", reason.as_str().unwrap_or_default()));
        }
    }
}

/// A demo job to submit, and how it must end (status, route, why).
type Planned = (Submission, JobStatus, Option<Route>, &'static str);

/// Submits `wave`, noting how each job must end.
async fn submit_wave(cli: &Berth, wave: Vec<Planned>, expected: &mut Vec<Expect>) -> Fallible<()> {
    for (s, status, route, why) in wave {
        expected.push(Expect {
            job_id: cli.submit(&s).await.map_err(|e| e.to_string())?,
            status,
            route,
            why,
        });
    }
    Ok(())
}

/// One demo job: what is submitted and how it must end.
struct Expect {
    job_id: String,
    status: JobStatus,
    route: Option<Route>,
    why: &'static str,
}

async fn demo(local: &Local, glue: &mut Glue) -> Fallible<bool> {
    use berth_core::dependency::{Condition, Dependency};
    let cli = Berth::new(local.settings.clone(), local.clients.clone());
    println!(
        "the jobs in a browser, while the demo runs: {}",
        console::start(local).await?
    );
    let mut expected: Vec<Expect> = Vec::new();
    let submit = |id: &str, definition: &str, env: &[(&str, &str)]| Submission {
        job_id: Some(id.into()),
        definition: Some(definition.into()),
        environment: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Submission::default()
    };
    // First wave, on a cluster with no instance: jobs of a second or two run
    // in the task processor, renders on Fargate Spot (no instance would cost
    // less for them), and an EC2-only job waits for an instance started for
    // it.
    let mut first = vec![
        (
            submit("thumb-1", "thumbnail", &[("INPUT", "s3://demo/a.png")]),
            JobStatus::Succeeded,
            Some(Route::Lambda),
            "a 2 s job: cheaper on Lambda, in milliseconds",
        ),
        (
            submit("thumb-2", "thumbnail", &[("INPUT", "s3://demo/b.png")]),
            JobStatus::Succeeded,
            Some(Route::Lambda),
            "runs in the task processor",
        ),
        (
            submit("reindex-1", "reindex", &[("PLAY_SECONDS", "4")]),
            JobStatus::Succeeded,
            Some(Route::Ec2),
            "EC2 only: waits for capacity; the scaler starts an instance",
        ),
        (
            Submission {
                cpu: Some(16 * 1024),
                memory: Some(64 * 1024),
                ..submit("huge-1", "reindex", &[("PLAY_SECONDS", "4")])
            },
            JobStatus::Succeeded,
            Some(Route::Ec2),
            "16 vCPU / 64 GiB: the scaler starts a type that holds it",
        ),
        (
            submit("gpu-1", "train", &[("PLAY_SECONDS", "4")]),
            JobStatus::Succeeded,
            Some(Route::Ec2),
            "a GPU: the scaler starts a GPU type for it",
        ),
        (
            Submission {
                // A real container runs the command; a played one
                // PLAY_EXIT.
                command: vec!["berth-job".into(), "fail".into(), "3".into()],
                ..submit(
                    "fail-1",
                    "render",
                    &[("PLAY_SECONDS", "2"), ("PLAY_EXIT", "3")],
                )
            },
            JobStatus::Failed,
            None,
            "exits 3 on each of its 2 attempts",
        ),
    ];
    for i in 1..=7 {
        first.push((
            submit(&format!("render-{i}"), "render", &[("PLAY_SECONDS", "6")]),
            JobStatus::Succeeded,
            Some(Route::FargateSpot),
            "no instance: Fargate Spot, the cheapest route for it",
        ));
    }
    // An array of three: one submission, its children released by the
    // driver, the parent ending once they have.
    first.push((
        Submission {
            array: Some(berth_core::array::ArraySpec {
                size: 3,
                max_running: None,
                sequential: None,
            }),
            ..submit("frames", "thumbnail", &[("INPUT", "s3://demo/frames")])
        },
        JobStatus::Succeeded,
        None,
        "an array of 3: one submission, SUCCEEDED once every child has",
    ));
    submit_wave(&cli, first, &mut expected).await?;
    for i in 0..3 {
        expected.push(Expect {
            job_id: berth_core::array::child_id("frames", i),
            status: JobStatus::Succeeded,
            route: Some(Route::Lambda),
            why: "a child of frames: BERTH_ARRAY_INDEX, on Lambda",
        });
    }
    // A job that waits for the array, sent once the array is recorded.
    let mut dependent = Some(vec![
        (
            Submission {
                depends_on: vec![Dependency::on("frames", Condition::Succeeded)],
                ..submit(
                    "frames-report",
                    "thumbnail",
                    &[("INPUT", "s3://demo/frames")],
                )
            },
            JobStatus::Succeeded,
            Some(Route::Lambda),
            "depends on frames: PENDING until it succeeded",
        ),
        (
            Submission {
                depends_on: vec![Dependency::each("frames", Condition::Succeeded)],
                array: Some(berth_core::array::ArraySpec {
                    size: 3,
                    max_running: None,
                    sequential: None,
                }),
                ..submit("captions", "thumbnail", &[("INPUT", "s3://demo/frames")])
            },
            JobStatus::Succeeded,
            None,
            "n_to_n on frames: child i once frames:i succeeded",
        ),
    ]);
    for i in 0..3 {
        expected.push(Expect {
            job_id: berth_core::array::child_id("captions", i),
            status: JobStatus::Succeeded,
            route: Some(Route::Lambda),
            why: "a child of captions, after the child of frames with its index",
        });
    }
    // An invalid message, sent as is: the CLI would refuse it.
    let sent = local
        .clients
        .sqs
        .send_message()
        .queue_url(&local.queue_url)
        .message_body(r#"{"definition":"render","cpus":2}"#)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    expected.push(Expect {
        job_id: sent.message_id.unwrap_or_default(),
        status: JobStatus::Rejected,
        route: None,
        why: "unknown field `cpus`: rejected, never run",
    });
    // A job of 8 GPUs, which no instance type the scaler may launch holds:
    // `berth submit` refuses it with the reason, and so does the driver.
    let gpus = Submission {
        gpu: Some(8),
        ..submit("gpu-8", "train", &[])
    };
    let refused = match cli.submit(&gpus).await {
        Err(e) => e.to_string(),
        Ok(id) => return Err(format!("berth submit took the 8-GPU job {id}")),
    };
    glue.say(&format!("berth submit refused gpu-8: {refused}"));
    local
        .clients
        .sqs
        .send_message()
        .queue_url(&local.queue_url)
        .message_body(r#"{"job_id":"gpu-8","definition":"train","gpu":8}"#)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    expected.push(Expect {
        job_id: "gpu-8".into(),
        status: JobStatus::Rejected,
        route: None,
        why: "8 GPUs: no type the scaler may launch has them: refused at once",
    });
    // Second wave, once the cluster has room.
    let second = vec![
        (
            submit(
                "render-8",
                "render",
                &[("PLAY_SECONDS", "3"), ("PLAY_INTERRUPT", "1")],
            ),
            JobStatus::Succeeded,
            None,
            "a Spot interruption, re-dispatched, then succeeds",
        ),
        (
            submit("render-9", "render", &[("PLAY_SECONDS", "4")]),
            JobStatus::Succeeded,
            Some(Route::Ec2),
            "the cluster has room: EC2",
        ),
        (
            submit("render-10", "render", &[("PLAY_SECONDS", "4")]),
            JobStatus::Succeeded,
            Some(Route::Ec2),
            "the cluster has room: EC2",
        ),
    ];
    let mut second = Some(second);

    // Followed as `berth watch` follows jobs, the glue ticking in between.
    // On a terminal the table is redrawn in place, with the clock and the
    // glue's latest lines under it; in a log, it is printed as it changes,
    // the glue's lines between.
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    glue.keep_what_is_said(live);
    let started = Instant::now();
    let mut shown = String::new();
    loop {
        glue.tick(local).await?;
        if dependent.is_some()
            && cli
                .store()
                .get("frames")
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            && let Some(wave) = dependent.take()
        {
            submit_wave(&cli, wave, &mut expected).await?;
            glue.say(
                "frames is recorded: submitted frames-report, which depends on it, and captions, n_to_n on it",
            );
        }
        if glue.instances > 0
            && let Some(wave) = second.take()
        {
            submit_wave(&cli, wave, &mut expected).await?;
            glue.say("the cluster has room: submitted render-8, render-9, render-10");
        }
        let ids: Vec<String> = expected.iter().map(|e| e.job_id.clone()).collect();
        let jobs = cli.records(&ids).await.map_err(|e| e.to_string())?;
        let table = berth_cli::watch_table(&jobs);
        if live {
            redraw(started, &table, glue.said.as_deref().unwrap_or_default());
        } else if table != shown {
            println!("\n[{:>3} s]\n{table}", started.elapsed().as_secs());
            shown = table;
        }
        if second.is_none() && dependent.is_none() && berth_cli::settled(&jobs) {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the jobs did not settle within 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if live {
        // The whole of what the glue said, below the last table.
        for line in glue.said.take().unwrap_or_default() {
            println!("{line}");
        }
    }
    // An attempt's cost is recorded just after its end: the records are
    // read again once every job that ran has its cost.
    let ids: Vec<String> = expected.iter().map(|e| e.job_id.clone()).collect();
    let priced = Instant::now();
    let jobs = loop {
        let jobs = cli.records(&ids).await.map_err(|e| e.to_string())?;
        let unpriced = jobs.iter().any(|(_, r)| {
            r.as_ref()
                .is_some_and(|r| r.attempts > 0 && r.cost_usd.is_none())
        });
        if !unpriced || priced.elapsed() > Duration::from_secs(15) {
            break jobs;
        }
        glue.tick(local).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("\nevery job, as the demo said it would end, and what it cost:");
    let mut all_right = true;
    let mut total = 0.0;
    for (e, (_, r)) in expected.iter().zip(&jobs) {
        let r = r.as_ref().ok_or("a job vanished")?;
        let ok = r.status == e.status && (e.route.is_none() || r.route == e.route);
        all_right &= ok;
        total += r.cost_usd.unwrap_or(0.0);
        println!(
            "  {} {:<38} {:<10} {:<12} attempts {}  {:>10}  {}",
            if ok { "ok  " } else { "DIFF" },
            e.job_id,
            r.status.as_str(),
            r.route.map_or("-", Route::as_str),
            r.attempts,
            r.cost_usd
                .map_or_else(|| "-".to_owned(), berth_core::cost::usd),
            e.why
        );
    }
    println!(
        "  what the jobs cost, at the default price table: {} (an estimate: each attempt's \
         compute, priced when it ended; `berth cost --by route` sums it)",
        berth_core::cost::usd(total),
    );

    // What some of the jobs printed, as `berth logs` reads it.
    println!("\nwhat some of the jobs printed (berth logs JOB):");
    for id in ["thumb-1", "render-1", "fail-1", "render-8"] {
        println!("  {id}:");
        let shown = berth_cli::logs::logs(
            &cli,
            &local.job_logs,
            id,
            None,
            None,
            |_, line| println!("      {}", line.line),
            |launch| println!("    == {} ==", launch.title()),
        )
        .await;
        if let Err(e) = shown {
            println!("    (not read: {e})");
        }
    }

    // The cluster comes back to zero once its instances have been idle.
    glue.say("every job has ended: waiting for the cluster to come back to zero");
    let rested = Instant::now();
    while glue.instances > 0 {
        if rested.elapsed() > Duration::from_secs(180) {
            return Err(format!(
                "the cluster still has {} instance(s) 3 minutes after the last job",
                glue.instances
            ));
        }
        glue.tick(local).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // It grew for the EC2-only job (and, as the second wave's timing falls,
    // perhaps once more), and came back to zero.
    let grew = glue.peak_instances >= 1;
    println!(
        "  {} the cluster: 0 -> {} -> 0 instances",
        if grew { "ok  " } else { "DIFF" },
        glue.peak_instances
    );
    Ok(all_right && grew)
}
