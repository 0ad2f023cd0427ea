//! The Lambda-side runtime: runs one launch of a job as a child process
//! inside the function, and records it in the job store.
//!
//! Per invocation: take the launch (`DISPATCHED` → `RUNNING`, conditional on
//! the launch number, so a duplicate or retried invocation runs nothing);
//! run the job's command with its environment, as the job's record holds
//! them (the invoke's payload only names the job and its launch: a payload
//! of another command or job role changes nothing); copy its stdout and stderr
//! to the function's log line by line as they come (nothing is buffered
//! beyond a line, whatever the output's size); stop it with SIGTERM, then
//! SIGKILL after a grace period, before the job's timeout or Lambda's own
//! deadline, whichever comes first; record `SUCCEEDED`, `FAILED` (exit code
//! and the last lines of stderr; another attempt while `max_attempts`
//! allows) or `TIMED_OUT`.
//!
//! The job's process never holds berth's credentials: it starts with a
//! clean environment ([`process_environment`]: a short allowlist of the
//! runtime's variables, the job's own, `BERTH_JOB_ID`, `BERTH_LAUNCH`, and
//! its job role's credentials when its definition names one), and the
//! runtime makes itself non-dumpable ([`protect`]), so that a process of the
//! same user cannot read its `/proc/<pid>/environ` or its memory.

use std::collections::{HashMap, VecDeque};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_aws::cost::{function_memory, invocation_usage, this_arch};
use berth_aws::metrics;
use berth_aws::operations::{self, AttemptEnded};
use berth_aws::store::{Change, Changed, JobRecord, now_ms};
use berth_aws::{AwsError, Definitions, JobQueue, JobRoles, JobStore};
use berth_core::attempt::{self, Attempt, Ending, Policy, Settlement};
use berth_core::cost;
use berth_core::launch::{self, JobCredentials, LambdaTask, LaunchNumber, process_environment};
use berth_core::prices::Prices;
use berth_core::spending::SpendingDay;

use crate::sandbox::Sandbox;
use berth_core::logs::JobLine;
use berth_core::stop::{StopOutcome, TIMED_OUT_REASON};
use berth_core::text::cut;
use berth_core::{JobStatus, Route};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Lines of stderr kept for the record of a failed job.
pub const STDERR_TAIL_LINES: usize = 20;
/// Longest line kept in the tail, in bytes.
const TAIL_LINE_MAX_BYTES: usize = 512;

/// Which of the job's streams a line came from.
pub use berth_core::logs::OutputStream as Stream;

/// Where the job's output goes, a line at a time (the function's log by
/// default: its own stdout and stderr), each line tagged with the job and
/// the launch ([`JobLine`]) so that `berth logs` finds it among the lines of
/// every job the function ran.
pub type Output = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

fn to_log() -> Output {
    Arc::new(|stream, line| {
        use std::io::Write;
        // A log line that cannot be written is lost, not the job.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().lock().write_all(line),
            Stream::Stderr => std::io::stderr().lock().write_all(line),
        };
    })
}

/// Makes this process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): its
/// `/proc/<pid>/environ`, `mem` and the like then belong to root, and no
/// process of the same user can read them or attach to it. The function's
/// credentials are in its environment, and a job's process runs as the
/// same user. Where the call fails (AWS does not document whether Lambda's
/// seccomp filter allows it), the runtime runs no job (see
/// [`Runtime::protected`]).
pub fn protect() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0) failed: {e}"))
}

/// The runtime's own environment, as text (a variable that is not UTF-8 is
/// none of those a job may inherit, and `std::env::vars` would panic on it).
fn own_environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// Spawns `program` with `args` as a job's process: a clean environment
/// (`environment`, nothing inherited), its own process group, no stdin,
/// stdout and stderr piped.
pub fn spawn(
    program: &str,
    args: &[String],
    environment: Vec<(String, String)>,
) -> std::io::Result<tokio::process::Child> {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

#[derive(Clone)]
pub struct Runtime {
    store: JobStore,
    output: Output,
    queue: Option<JobQueue>,
    /// Where a success is counted in its definition's runs.
    definitions: Option<Definitions>,
    /// Assumes job roles; `None`: a job whose definition names one fails.
    roles: Option<JobRoles>,
    /// Whether [`protect`] succeeded; a job never runs in a runtime whose
    /// environment its process could read.
    pub protected: Result<(), String>,
    /// The image's own command, for jobs and definitions that name none.
    default_command: Option<Vec<String>>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Kept free before Lambda's deadline to record the end.
    pub margin: Duration,
    /// How long to wait for the driver to record the launch it just made
    /// (usually milliseconds, but the driver's write may be retrying
    /// through throttling and 5xx answers) before recording it here.
    pub dispatch_wait: Duration,
    /// How often the record is touched while the job runs, so that the
    /// sweep can tell a run from a sandbox that died with its job.
    pub heartbeat: Duration,
    /// Cleared after each job.
    sandbox: Option<Sandbox>,
    /// What a run is priced at.
    prices: Prices,
    /// What a day of a spending limit is.
    spending_day: SpendingDay,
    /// Set when it was not cleared: see [`Runtime::must_exit`].
    unclean: Arc<std::sync::atomic::AtomicBool>,
    /// Runs whose end could not be recorded, by job and launch: Lambda's
    /// retry of the invocation records it.
    unrecorded: Arc<std::sync::Mutex<Unrecorded>>,
}

/// Runs whose end could not be recorded: by job id and launch, the launch
/// taken and how it ended.
type Unrecorded = HashMap<(String, LaunchNumber), (Taken, Finish)>;

/// What an invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Nothing: the launch is not the job's current one, or it ran already.
    Skipped { status: Option<JobStatus> },
    /// The job ran; how it ended.
    Ended {
        status: JobStatus,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
}

impl Ran {
    /// The invocation's answer: whether the launch ran, and how it ended.
    pub fn answer(&self, task: &LambdaTask) -> serde_json::Value {
        let (job_id, launch) = (&task.job.job_id, task.launch);
        match self {
            Self::Skipped { status } => serde_json::json!({
                "job_id": job_id,
                "launch": launch,
                "ran": false,
                "status": status.map(JobStatus::as_str),
                "reason": match status {
                    None => "no record of the job: the driver records a launch before it invokes the function".to_owned(),
                    Some(s) => format!("the job is {} and not at this launch: it ran already, or a later launch replaced it", s.as_str()),
                },
            }),
            Self::Ended {
                status,
                exit_code,
                reason,
            } => serde_json::json!({
                "job_id": job_id,
                "launch": launch,
                "ran": true,
                "status": status.as_str(),
                "exit_code": exit_code,
                "reason": reason,
            }),
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("store", &self.store)
            .field("default_command", &self.default_command)
            .field("grace", &self.grace)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(
        store: JobStore,
        queue: Option<JobQueue>,
        default_command: Option<Vec<String>>,
    ) -> Self {
        Self {
            store,
            output: to_log(),
            queue,
            roles: None,
            definitions: None,
            protected: protect(),
            default_command,
            grace: Duration::from_secs(2),
            margin: Duration::from_secs(2),
            dispatch_wait: Duration::from_secs(60),
            heartbeat: Duration::from_secs(u64::from(launch::LAMBDA_HEARTBEAT_SECONDS)),
            sandbox: None,
            unclean: Arc::default(),
            unrecorded: Arc::default(),
            prices: Prices::default(),
            spending_day: SpendingDay::default(),
        }
    }

    /// Assumes job roles with `roles`.
    pub fn with_roles(mut self, roles: JobRoles) -> Self {
        self.roles = Some(roles);
        self
    }

    /// Prices each run at `prices` (the deployment's `BERTH_PRICES`).
    pub fn with_prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }

    /// Counts a limited definition's spend by `day`
    /// (`BERTH_SPENDING_DAY_SECONDS`).
    pub fn with_spending_day(mut self, day: SpendingDay) -> Self {
        self.spending_day = day;
        self
    }

    /// Counts each success in its definition's runs (what routing expects
    /// of its next jobs).
    pub fn with_definitions(mut self, definitions: Definitions) -> Self {
        self.definitions = Some(definitions);
        self
    }

    /// Sends the job's output to `output` instead of the function's log.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Clears `sandbox` after each job: nothing the job leaves behind
    /// outlives it ([`crate::sandbox`]). Only where the runtime runs alone
    /// in its process, as on Lambda: every process below it is killed.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Whether the sandbox must not take another job: something a job left
    /// behind survived, or could not be tracked. The function then exits,
    /// and Lambda discards the sandbox.
    pub fn must_exit(&self) -> bool {
        self.unclean.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn clear_sandbox(&self, job: &berth_core::ResolvedJob) {
        let Some(sandbox) = &self.sandbox else {
            return;
        };
        let cleared = sandbox.clear().await;
        if !cleared.killed.is_empty() {
            tracing::warn!(
                job_id = job.job_id,
                processes = cleared.killed.len(),
                "the job left processes behind: killed"
            );
        }
        let why = match (&sandbox.adopts, cleared.is_clean()) {
            (Err(why), _) => why.clone(),
            (Ok(()), false) => format!(
                "processes {:?} survived; scratch not emptied: {:?}",
                cleared.survivors, cleared.scratch_left
            ),
            (Ok(()), true) => return,
        };
        tracing::error!(
            job_id = job.job_id,
            problem = why.as_str(),
            "the sandbox is not clean: the function exits once the job's end is recorded"
        );
        self.unclean
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `task`, which must end by `lambda_deadline`.
    pub async fn run(
        &self,
        task: &LambdaTask,
        request_id: &str,
        lambda_deadline: SystemTime,
    ) -> Result<Ran, AwsError> {
        let key = (task.job.job_id.clone(), task.launch);
        let unrecorded = self
            .unrecorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        if let Some((taken, finish)) = unrecorded {
            let stored = LambdaTask {
                job: taken.record.job.clone().unwrap_or_else(|| task.job.clone()),
                launch: task.launch,
            };
            tracing::info!(
                job_id = key.0,
                launch = key.1,
                "recording the end of the run whose end was not recorded"
            );
            let ended = self.end(&stored, &taken, finish.clone()).await;
            if ended.is_err() {
                self.unrecorded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, (taken, finish));
            }
            return ended;
        }
        let began = tokio::time::Instant::now();
        let taken = match self.take(task, request_id).await? {
            Ok(taken) => taken,
            Err(skipped) => return Ok(skipped),
        };
        let ran = self.run_taken(task, taken, lambda_deadline).await;
        self.record_cost(task, began.elapsed().as_secs_f64()).await;
        ran
    }

    /// Records what this invocation's run of `task` cost: the function's
    /// memory for `seconds`, and the request. Best effort: the job's end is
    /// recorded already, and a retry of the invocation would not run it
    /// again to price it.
    async fn record_cost(&self, task: &LambdaTask, seconds: f64) {
        let job = &task.job;
        // Outside Lambda (a local run), a function sized for the job.
        let memory = function_memory().unwrap_or(self.prices.lambda_memory(job.cpu, job.memory));
        let usage = invocation_usage(seconds, memory, this_arch());
        let Ok(cost) = cost::price(&self.prices, &usage) else {
            return;
        };
        match self
            .store
            .record_attempt_cost(job, task.launch, &cost, now_ms(), &self.spending_day)
            .await
        {
            Ok(true) => {
                metrics::emit(
                    &[("Definition", job.definition.as_str())],
                    &[("JobCostUSD", cost.usd)],
                );
                tracing::info!(
                    job_id = job.job_id,
                    launch = task.launch,
                    usd = cost.usd,
                    basis = cost.basis,
                    "attempt cost"
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job_id = job.job_id, launch = task.launch, error = %e, "attempt cost not recorded")
            }
        }
    }

    /// Runs `task`, whose launch this invocation took.
    async fn run_taken(
        &self,
        task: &LambdaTask,
        taken: Taken,
        lambda_deadline: SystemTime,
    ) -> Result<Ran, AwsError> {
        // The invoke names the job and its launch; what runs (its command,
        // its environment, its job role, its timeout) is the job as the
        // driver recorded it, not what the payload says.
        let Some(stored) = taken.record.job.clone() else {
            let reason = "not run: the job's record holds no job to run".to_owned();
            return self.end(task, &taken, Finish::failed(None, reason)).await;
        };
        let task = &LambdaTask {
            job: berth_core::launch::at_attempt(&stored, taken.record.failures),
            launch: task.launch,
        };
        let job = &task.job;
        let Some(command) = job.command.clone().or_else(|| self.default_command.clone()) else {
            return self
                .end(
                    task,
                    &taken,
                    Finish::failed(
                        None,
                        "no command: the job, its definition and the image name none".into(),
                    ),
                )
                .await;
        };
        let Some((program, args)) = command.split_first() else {
            return self
                .end(task, &taken, Finish::failed(None, "empty command".into()))
                .await;
        };
        if let Err(why) = &self.protected {
            let reason = format!(
                "not run: the task runtime could not keep its credentials from the job ({why})"
            );
            return self.end(task, &taken, Finish::failed(None, reason)).await;
        }
        let credentials = match self.credentials(task).await {
            Ok(credentials) => credentials,
            Err(reason) => {
                return self.end(task, &taken, Finish::failed(None, reason)).await;
            }
        };

        // Stop before the job's timeout, and in time to stop it and record
        // the end before Lambda's deadline.
        let by_job = SystemTime::now() + Duration::from_secs(u64::from(job.timeout_seconds));
        let by_lambda = lambda_deadline
            .checked_sub(self.grace + self.margin)
            .unwrap_or(UNIX_EPOCH);
        let stop_at = by_job.min(by_lambda);
        let budget = stop_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();

        let environment =
            process_environment(job, task.launch, own_environment(), credentials.as_ref());
        let mut child = match spawn(program, args, environment) {
            Ok(child) => child,
            Err(e) => {
                return self
                    .end(
                        task,
                        &taken,
                        Finish::failed(None, format!("cannot start `{program}`: {e}")),
                    )
                    .await;
            }
        };
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let tagged: Output = {
            let (to, job_id, launch) = (self.output.clone(), job.job_id.clone(), task.launch);
            Arc::new(move |stream, line| to(stream, &JobLine::tag(&job_id, launch, stream, line)))
        };
        let stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(copy_lines(out, Stream::Stdout, tagged.clone(), 0)));
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(copy_lines(err, Stream::Stderr, tagged, STDERR_TAIL_LINES)));

        let mut heartbeat = tokio::spawn(beat(
            self.store.clone(),
            job.job_id.clone(),
            task.launch,
            self.heartbeat,
        ));
        // The process exits, runs out of time, or is found no longer the
        // job's current attempt (cancelled; ended by the sweep) by a
        // heartbeat: then it is stopped at once, as on a timeout.
        let waited = tokio::select! {
            waited = tokio::time::timeout(budget, child.wait()) => match waited {
                Ok(status) => Waited::Exited(status),
                Err(_) => Waited::OutOfTime,
            },
            Ok(now) = &mut heartbeat => Waited::Superseded(now),
        };
        let (status, timed_out, superseded) = match waited {
            Waited::Exited(status) => (status, false, None),
            Waited::OutOfTime => (stop(&mut child, pgid, self.grace).await, true, None),
            Waited::Superseded(now) => (stop(&mut child, pgid, self.grace).await, false, Some(now)),
        };
        heartbeat.abort();
        // The whole group is done with, and whatever left it: nothing the
        // job left behind outlives it, or holds its output open.
        signal(pgid, Signal::SIGKILL);
        self.clear_sandbox(job).await;
        // What the job wrote is copied to its end; a process that escaped
        // with its output (no sandbox to clear) is not waited for beyond the
        // grace.
        if let Some(mut out) = stdout
            && tokio::time::timeout(self.grace, &mut out).await.is_err()
        {
            out.abort();
        }
        let tail = match stderr {
            Some(mut err) => match tokio::time::timeout(self.grace, &mut err).await {
                Ok(tail) => tail.unwrap_or_default(),
                Err(_) => {
                    err.abort();
                    Vec::new()
                }
            },
            None => Vec::new(),
        };

        if let Some(now) = superseded {
            // Its end is someone else's to record (the cancel's, the
            // sweep's): nothing of this run is written.
            tracing::warn!(
                job_id = job.job_id,
                launch = task.launch,
                status = now.map(JobStatus::as_str),
                "stopped: the launch is no longer the job's current one"
            );
            return Ok(Ran::Skipped { status: now });
        }
        let finish = if timed_out {
            let why = if stop_at == by_job {
                format!("the job's timeout of {} s", job.timeout_seconds)
            } else {
                "the Lambda function's deadline".to_owned()
            };
            Finish {
                outcome: None,
                exit_code: None,
                reason: format!("{TIMED_OUT_REASON}: stopped before {why}"),
            }
        } else {
            match status {
                Ok(status) => Finish::from_status(status, &tail),
                Err(e) => Finish::failed(None, format!("lost the job's process: {e}")),
            }
        };
        let ended = self.end(task, &taken, finish.clone()).await;
        if ended.is_err() {
            // Lambda retries the invocation, in this sandbox while it is
            // warm: the retry records this end instead of finding the job
            // RUNNING and leaving it to the sweep's verdict.
            self.unrecorded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((task.job.job_id.clone(), task.launch), (taken, finish));
        }
        ended
    }

    /// The job role's credentials, when the job's definition names one.
    async fn credentials(&self, task: &LambdaTask) -> Result<Option<JobCredentials>, String> {
        let Some(role) = &task.job.job_role else {
            return Ok(None);
        };
        let Some(roles) = &self.roles else {
            return Err(format!("cannot assume job role `{role}`: no STS client"));
        };
        roles
            .assume(role, &task.job.job_id)
            .await
            .map(Some)
            .map_err(|e| format!("cannot assume job role `{role}`: {e}"))
    }

    /// Takes the launch: `DISPATCHED` → `RUNNING` at this launch. `Err`
    /// when this invocation must not run the job.
    async fn take(
        &self,
        task: &LambdaTask,
        request_id: &str,
    ) -> Result<Result<Taken, Ran>, AwsError> {
        let job_id = &task.job.job_id;
        let waited_since = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let record = self.store.get(job_id).await?;
            let Some(record) = record else {
                return Ok(Err(Ran::Skipped { status: None }));
            };
            let now = now_ms();
            match record.status {
                JobStatus::Dispatched if record.launch == task.launch => {
                    let timeout_seconds = record
                        .job
                        .as_ref()
                        .map_or(task.job.timeout_seconds, |j| j.timeout_seconds);
                    let change = Change {
                        request_id: Some(request_id.to_owned()),
                        deadline: Some(now / 1000 + i64::from(timeout_seconds)),
                        expect_launch: Some(task.launch),
                        ..Change::default()
                    };
                    match self
                        .store
                        .transition(job_id, JobStatus::Running, change, now)
                        .await?
                    {
                        Changed::Applied => {
                            return Ok(Ok(Taken {
                                request_id: request_id.to_owned(),
                                record: JobRecord {
                                    status: JobStatus::Running,
                                    ..record
                                },
                            }));
                        }
                        Changed::Refused(_) => continue,
                    }
                }
                // The driver made this launch and has not recorded it yet.
                JobStatus::Accepted
                    if record.launch == task.launch
                        && record.claimed_at.is_some()
                        && waited_since.elapsed() < self.dispatch_wait =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                // The driver's record of this launch is late (its write
                // retrying through throttling, or the driver stopped after
                // the invoke): the invoke reached this function, so the
                // launch is dispatched. Recorded here, on the same condition
                // as the driver's (still ACCEPTED at this launch), which the
                // driver's own write then finds taken; should a later
                // delivery have claimed the next launch meanwhile, this one
                // is refused and runs nothing. The job does not sit
                // DISPATCHED with nothing to run it.
                JobStatus::Accepted
                    if record.launch == task.launch && record.claimed_at.is_some() =>
                {
                    let change = Change {
                        route: Some(Route::Lambda),
                        request_id: Some(request_id.to_owned()),
                        add_attempt: true,
                        expect_launch: Some(task.launch),
                        deadline: record.job.as_ref().map(|j| {
                            launch::start_deadline(Route::Lambda, j.timeout_seconds, now / 1000)
                        }),
                        ..Change::default()
                    };
                    tracing::warn!(
                        job_id,
                        launch = task.launch,
                        "the driver has not recorded this launch: recording it here"
                    );
                    self.store
                        .transition(job_id, JobStatus::Dispatched, change, now)
                        .await?;
                }
                // This launch ran and ended, and went back to the queue for
                // its next attempt, whose message was never sent (this is
                // Lambda's retry of the invocation that failed to send it).
                JobStatus::Accepted if record.launch == task.launch => {
                    if let Some(queue) = &self.queue {
                        operations::requeue(queue, &record, task.launch).await?;
                    }
                    return Ok(Err(Ran::Skipped {
                        status: Some(JobStatus::Accepted),
                    }));
                }
                status => {
                    return Ok(Err(Ran::Skipped {
                        status: Some(status),
                    }));
                }
            }
        }
    }

    /// Records how the run ended: berth-core's settlement of the attempt,
    /// applied, and the next attempt queued when there is one.
    async fn end(&self, task: &LambdaTask, taken: &Taken, finish: Finish) -> Result<Ran, AwsError> {
        let ending = match finish.outcome {
            Some(outcome) => Ending::Stopped {
                outcome,
                exit_code: finish.exit_code,
            },
            None => Ending::TimedOut {
                reason: finish.reason,
            },
        };
        let attempt = Attempt {
            launch: task.launch,
            route: Some(Route::Lambda),
            id: Some(&taken.request_id),
        };
        let policy = Policy {
            // A process is not interrupted by the infrastructure: its
            // sandbox going away ends the invocation, not the process.
            max_interruptions: 0,
            retry_delay_cap: u32::MAX,
            requeue: self.queue.is_some(),
        };
        let settled = match attempt::settle(
            &taken.record.standing(),
            &attempt,
            ending,
            &policy,
            now_ms(),
        ) {
            Settlement::Apply(settled) => settled,
            Settlement::Ended { status } => {
                return Ok(Ran::Skipped {
                    status: Some(status),
                });
            }
            Settlement::NotCurrent => {
                return Ok(Ran::Skipped {
                    status: Some(taken.record.status),
                });
            }
        };
        let ended = operations::end_attempt(
            &self.store,
            self.queue.as_ref(),
            self.definitions.as_ref(),
            &taken.record,
            settled,
        )
        .await?;
        match ended {
            AttemptEnded::Applied(settled) => Ok(Ran::Ended {
                status: settled.status,
                exit_code: settled.exit_code,
                reason: settled.reason,
            }),
            // Cancelled meanwhile, say: the record stands as it is.
            AttemptEnded::Refused(status) => Ok(Ran::Skipped { status }),
        }
    }
}

/// The launch this invocation took, and the record as it took it (nothing
/// but an end of this launch or a cancel changes it while it runs).
#[derive(Debug, Clone)]
struct Taken {
    request_id: String,
    record: JobRecord,
}

/// How the process ended, before berth decides what follows.
#[derive(Debug, Clone)]
struct Finish {
    /// `None` for a timeout.
    outcome: Option<StopOutcome>,
    exit_code: Option<i32>,
    reason: String,
}

impl Finish {
    fn failed(exit_code: Option<i32>, reason: String) -> Self {
        Self {
            outcome: Some(StopOutcome::JobFailed {
                exit_code,
                reason: reason.clone(),
            }),
            exit_code,
            reason,
        }
    }

    fn from_status(status: ExitStatus, tail: &[String]) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let told = if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr ends:\n{}", tail.join("\n"))
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => Self {
                outcome: Some(StopOutcome::Succeeded),
                exit_code: Some(0),
                reason: String::new(),
            },
            (Some(code), _) => Self::failed(Some(code), format!("exit code {code}{told}")),
            (None, Some(sig)) => Self::failed(None, format!("killed by signal {sig}{told}")),
            (None, None) => Self::failed(None, format!("ended without an exit code{told}")),
        }
    }
}

/// Copies `from` to `to` line by line as lines arrive; returns the last
/// `keep` lines (each cut to a bounded length).
async fn copy_lines(
    from: impl AsyncRead + Unpin,
    stream: Stream,
    to: Output,
    keep: usize,
) -> Vec<String> {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    let mut tail: VecDeque<String> = VecDeque::with_capacity(keep);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                to(stream, &line);
                if keep > 0 {
                    if tail.len() == keep {
                        tail.pop_front();
                    }
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    tail.push_back(cut(text, TAIL_LINE_MAX_BYTES).to_owned());
                }
            }
        }
    }
    tail.into()
}

/// How the wait for the job's process ended.
enum Waited {
    Exited(std::io::Result<ExitStatus>),
    /// Its timeout, or Lambda's deadline, came first.
    OutOfTime,
    /// A heartbeat found the launch no longer the job's current one; the
    /// job's status then.
    Superseded(Option<JobStatus>),
}

/// Stops the job's process group: SIGTERM, then SIGKILL after `grace`.
async fn stop(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    signal(group, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal(group, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// Touches the record of `job_id`, `RUNNING` at `launch`, every `every`: a
/// missed touch is logged, and the next one may make up for it (the sweep
/// takes three missed for a dead sandbox). Returns when a touch finds the
/// launch no longer current (cancelled, timed out or ended by the sweep
/// meanwhile), with the job's status then.
async fn beat(
    store: JobStore,
    job_id: String,
    launch: LaunchNumber,
    every: Duration,
) -> Option<JobStatus> {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let touched = store
            .touch(&job_id, JobStatus::Running, launch, now_ms())
            .await;
        match touched {
            Ok(Changed::Applied) => {}
            // Cancelled or timed out meanwhile: its end is not this run's.
            Ok(Changed::Refused(now)) => return now.map(|r| r.status),
            Err(e) => tracing::warn!(job_id, error = %e, "heartbeat not recorded"),
        }
    }
}

fn signal(group: Option<Pid>, sig: Signal) {
    if let Some(group) = group {
        // The group may be gone already; that is what we want.
        let _ = killpg(group, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Mutex;

    #[test]
    fn an_exit_is_told_with_the_end_of_stderr() {
        let ok = Finish::from_status(ExitStatus::from_raw(0), &[]);
        assert_eq!(ok.outcome, Some(StopOutcome::Succeeded));
        assert_eq!(ok.exit_code, Some(0));
        // Exit code 3 is the high byte of a wait status.
        let tail = ["first".to_owned(), "last".to_owned()];
        let failed = Finish::from_status(ExitStatus::from_raw(3 << 8), &tail);
        assert_eq!(failed.exit_code, Some(3));
        assert_eq!(failed.reason, "exit code 3; stderr ends:\nfirst\nlast");
        assert!(matches!(
            failed.outcome,
            Some(StopOutcome::JobFailed {
                exit_code: Some(3),
                ..
            })
        ));
        let killed = Finish::from_status(ExitStatus::from_raw(9), &[]);
        assert_eq!(
            (killed.exit_code, killed.reason.as_str()),
            (None, "killed by signal 9")
        );
    }

    #[tokio::test]
    async fn output_is_copied_a_line_at_a_time_and_the_tail_kept_short() {
        let lines: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let seen = lines.clone();
        let output: Output = Arc::new(move |_, line| seen.lock().unwrap().push(line.to_vec()));
        let long = "é".repeat(TAIL_LINE_MAX_BYTES);
        let input = format!("one\ntwo\n{long}\nno newline");
        let tail = copy_lines(input.as_bytes(), Stream::Stderr, output, 2).await;
        let copied = lines.lock().unwrap().clone();
        assert_eq!(copied.len(), 4);
        assert_eq!(copied[0], b"one\n");
        assert_eq!(copied[3], b"no newline\n", "a last line gets its newline");
        // The last two lines, each cut to the bound on a character boundary.
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].len(), TAIL_LINE_MAX_BYTES);
        assert!(tail[0].chars().all(|c| c == 'é'));
        assert_eq!(tail[1], "no newline");
    }

    /// The isolation test's own name, to run it again in a child process.
    const ISOLATION_TEST: &str = "runtime::tests::a_jobs_process_sees_none_of_the_runtimes_secrets";
    /// Set in that child process, with what it must do.
    const ISOLATION_MODE: &str = "BERTH_TEST_ISOLATION_MODE";
    const SECRETS: [(&str, &str); 4] = [
        ("AWS_ACCESS_KEY_ID", "AKIARUNTIMEKEY"),
        ("AWS_SECRET_ACCESS_KEY", "runtime-secret-key"),
        ("AWS_SESSION_TOKEN", "runtime-session-token"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ];

    /// In the child process: runs a job that prints its environment and
    /// its parent's `/proc/<ppid>/environ`, as a Lambda-route job could,
    /// and prints what it saw.
    fn run_the_prying_job(protected: bool, role: bool) {
        if protected {
            protect().unwrap();
        }
        let job = crate::runtime::tests::prying_job();
        let credentials = role.then(|| JobCredentials {
            access_key_id: "ASIAJOBROLEKEY".into(),
            secret_access_key: "job-role-secret".into(),
            session_token: "job-role-token".into(),
        });
        let env = process_environment(&job, 1, own_environment(), credentials.as_ref());
        let command = job.command.clone().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let child = spawn(&command[0], &command[1..], env).unwrap();
            child.wait_with_output().await.unwrap()
        });
        println!("<<<{}>>>", String::from_utf8_lossy(&out.stdout));
    }

    fn prying_job() -> berth_core::ResolvedJob {
        let request = berth_core::job::parse(
            r#"{"definition":"d","job_id":"job-1","environment":{"MODE":"fast"},
                "command":["sh","-c","exec 2>&1; env; echo '--- parent'; tr '\\0' '\\n' < /proc/$PPID/environ; echo \"read: $?\""]}"#,
            "m-1",
        )
        .unwrap();
        let def: berth_core::JobDefinition = serde_json::from_str(
            r#"{"name":"d","task_definition":"d","container":"main","lambda_function":"f",
                "cpu":256,"memory":512,"timeout_seconds":60,"max_attempts":1,"fargate":false}"#,
        )
        .unwrap();
        berth_core::resolve(&request, Some(&def)).unwrap()
    }

    /// Runs this test again in a child process that has the function's
    /// secrets in its environment, as a non-root user (nobody) when this
    /// one is root, as on Lambda; returns what its job saw.
    fn as_the_task_runtime(mode: &str) -> String {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        use std::os::unix::process::CommandExt;
        let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        let exe = std::env::current_exe().unwrap();
        let dir =
            std::env::temp_dir().join(format!("berth-isolation-{}-{mode}", std::process::id()));
        let program = if root {
            // The build directory may be closed to other users.
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let copy = dir.join("tests");
            std::fs::copy(&exe, &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy
        } else {
            exe
        };
        let mut cmd = std::process::Command::new(&program);
        cmd.args([
            ISOLATION_TEST,
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env_clear()
        .envs(SECRETS)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("BERTH_JOBS_TABLE", "berth-jobs")
        .env(ISOLATION_MODE, mode)
        .current_dir("/");
        if root {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = text
            .split_once("<<<")
            .and_then(|(_, rest)| rest.split_once(">>>"))
            .map(|(seen, _)| seen.to_owned());
        seen.unwrap_or_else(|| panic!("the job's output was not found in: {text}"))
    }

    /// The issue this answers: a Lambda-route job that runs `env` and reads
    /// `/proc/$PPID/environ` printed the function's secret key and session
    /// token both ways.
    #[test]
    fn a_jobs_process_sees_none_of_the_runtimes_secrets() {
        match std::env::var(ISOLATION_MODE).as_deref() {
            Ok("protected") => return run_the_prying_job(true, false),
            Ok("unprotected") => return run_the_prying_job(false, false),
            Ok("role") => return run_the_prying_job(true, true),
            _ => {}
        }
        // Without the protection a job of the same user reads the runtime's
        // environment: the test can see a leak where there is one.
        let leaked = as_the_task_runtime("unprotected");
        assert!(leaked.contains("runtime-secret-key"), "{leaked}");

        let seen = as_the_task_runtime("protected");
        for (name, value) in SECRETS {
            assert!(!seen.contains(name), "{name} reached the job:\n{seen}");
            assert!(
                !seen.contains(value),
                "{name}'s value reached the job:\n{seen}"
            );
        }
        assert!(!seen.contains("BERTH_JOBS_TABLE"), "{seen}");
        assert!(seen.contains("BERTH_JOB_ID=job-1\n"), "{seen}");
        assert!(seen.contains("BERTH_LAUNCH=1\n"), "{seen}");
        assert!(seen.contains("MODE=fast\n"), "{seen}");
        assert!(
            seen.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"),
            "{seen}"
        );
        assert!(seen.contains("Permission denied"), "{seen}");
        assert!(!seen.contains("read: 0"), "{seen}");

        let with_role = as_the_task_runtime("role");
        assert!(
            with_role.contains("AWS_ACCESS_KEY_ID=ASIAJOBROLEKEY\n"),
            "{with_role}"
        );
        assert!(
            with_role.contains("AWS_SESSION_TOKEN=job-role-token\n"),
            "{with_role}"
        );
        assert!(!with_role.contains("runtime-secret-key"), "{with_role}");
    }
}
