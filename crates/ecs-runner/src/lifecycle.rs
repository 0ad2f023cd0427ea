//! After launch: what ECS says happened to a job's task becomes its state.
//!
//! - An "ECS Task State Change" event moves the job to `RUNNING` and to its
//!   end: `SUCCEEDED`, `FAILED` (exit code and reason), or back on the queue
//!   for another attempt (a failure of the job, up to `max_attempts`; an
//!   interruption by the infrastructure, up to a configured number, without
//!   counting against `max_attempts`).
//! - An "EC2 Spot Instance Interruption Warning" drains the instance.
//! - The scheduled sweep first asks ECS about the tasks of launched jobs
//!   whose records have been quiet for [`EVENT_GRACE`], and handles a task
//!   that started or stopped as its lost event would have been; then it
//!   stops jobs past their deadline: `TIMED_OUT`.
//! - [`Lifecycle::cancel`] cancels a job wherever it is (the operation
//!   `berth cancel` shares, `berth_aws::operations::cancel`).
//!
//! What an event means for the record as it stands is berth-core's
//! ([`attempt::on_running`], [`attempt::on_stopped`]), and so is how an
//! attempt's end changes the job ([`attempt::settle`]). Every write is
//! conditional on the launch the event is about, so a repeated, late or
//! out-of-order event changes nothing.

use std::time::Duration;

use berth_aws::cost::{InstanceFacts, task_usage};
use berth_aws::dependencies::{self, Checked};
use berth_aws::ecs::{InstanceChange, TASK_STOPPED, TaskChange};
use berth_aws::operations::{self, AttemptEnded, Cancelled};
use berth_aws::store::{Change, Changed, JobRecord, JobSummary, now_ms};
use berth_aws::{
    AwsError, Clients, Definitions, EcsCluster, JobQueue, JobStore, Settings, SettingsError,
    metrics,
};
use berth_core::attempt::{
    self, Attempt, Ending, OnRunning, OnStopped, Policy, Settlement, Standing,
};
use berth_core::cost;
use berth_core::launch::{self, LaunchNumber, parse_started_by};
use berth_core::prices::Prices;
use berth_core::scaling::{self, Room};
use berth_core::spending::{self, SpendingDay};
use berth_core::stop::{StopOutcome, TIMED_OUT_REASON};
use berth_core::{JobStatus, Route};
use serde::{Deserialize, Serialize};

/// How long after its deadline a Lambda-route job that reported no end is
/// marked `TIMED_OUT` (the runtime reports its own timeouts; this catches
/// an invocation that never ran).
pub const LAMBDA_REPORT_GRACE: Duration = Duration::from_secs(120);

/// How long a launched ECS job's record may stay unchanged before the sweep
/// asks ECS what became of its task. A task's events normally arrive within
/// seconds; one that fails is retried by Lambda about one and three minutes
/// later, and one that never arrives would otherwise leave the job as it
/// was until its deadline.
pub const EVENT_GRACE: Duration = Duration::from_secs(60);

/// How long a `PENDING` job stays unchanged before the sweep checks its
/// dependencies: whoever ends a dependency moves its dependents on at once,
/// so the sweep is for the ends no one followed.
pub const PENDING_QUIET: Duration = Duration::from_secs(60);

/// The most `PENDING` jobs one sweep checks (two reads each, and a write
/// for each still waiting).
pub const PENDING_PER_SWEEP: usize = 200;

/// How long a job waiting to launch (`ACCEPTED`, `WAITING_FOR_CAPACITY`)
/// may stay unchanged before the sweep takes its message for lost: longer
/// than any wait berth sets before the message comes back (the capacity
/// backoff's 15 minutes; a retry's, a re-queue's delay and the launch claim's
/// lease are shorter), with five minutes to spare.
pub const STRANDED_AFTER: Duration =
    Duration::from_secs(berth_core::launch::CAPACITY_BACKOFF_MAX_SECONDS as u64 + 300);

/// How long a job waiting to launch may stay quiet before the sweep puts
/// its message back even while messages wait on the queue: a driver held
/// back (its concurrency taken by other functions) lets SQS count receives
/// it never handles, and a job's message can reach the dead-letter queue
/// unseen; the same throttling keeps the queue from emptying. Each job is
/// put back at most once in this time, so the backlog grows by at most
/// one message per stranded job an hour.
pub const STRANDED_WHATEVER_BACKLOG: Duration =
    Duration::from_secs(STRANDED_AFTER.as_secs() * WHATEVER_BACKLOG_FACTOR as u64);

/// How many times its quiet a waiting job stays quiet before its message is
/// put back whatever the backlog ([`STRANDED_WHATEVER_BACKLOG`]).
pub const WHATEVER_BACKLOG_FACTOR: u32 = 3;

/// How long past the driver's cap on a wait for capacity
/// ([`berth_core::launch::MAX_CAPACITY_WAIT_SECONDS`]) the sweep fails a job
/// still waiting: the cap is enforced on the job's delivery, and one may
/// never come.
pub const WAIT_CAP_GRACE: Duration = STRANDED_AFTER;

/// The `detail` of an "EC2 Spot Instance Interruption Warning".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SpotWarning {
    pub instance_id: String,
}

/// What a task event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    /// Not an event berth acts on (another task, another cluster, a status
    /// berth does not record, a job it does not know).
    Ignored { why: String },
    /// The job is `RUNNING`.
    Running,
    /// The job reached its end state.
    Ended {
        status: JobStatus,
        reason: Option<String>,
    },
    /// The attempt ended and the job is back on the queue for another.
    Requeued {
        failure: bool,
        reason: String,
        delay_seconds: u32,
    },
    /// The event is late or repeated; the job is past it. Nothing changed.
    Stale { status: JobStatus },
    /// The task ran for a job that is finished or has a newer launch: it
    /// was stopped.
    StoppedStray { status: JobStatus },
    /// The task stopped before the driver recorded its launch: the sweep
    /// settles its end once the launch is recorded.
    LeftToSweep { why: String },
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Jobs whose task had started or stopped without the event reaching
    /// berth, with what the sweep then did in the event's place.
    pub reconciled: Vec<(String, TaskAction)>,
    /// Jobs stopped and marked `TIMED_OUT`.
    pub timed_out: Vec<String>,
    /// Jobs whose timeout could not be enforced this time, with the error.
    pub errors: Vec<(String, String)>,
    /// Jobs waiting to launch whose message was lost: a message was put
    /// back for each.
    pub requeued: Vec<String>,
    /// Jobs held for their definition's spending limit whose day is over:
    /// put back on the queue.
    pub released: Vec<String>,
    /// Jobs that waited for capacity past the cap, with no delivery to end
    /// the wait: failed.
    pub no_capacity: Vec<String>,
    /// Messages that waited on the job queue, when there were any: then
    /// only jobs quiet for [`STRANDED_WHATEVER_BACKLOG`] were put back.
    pub requeue_deferred: Option<u64>,
    /// `PENDING` jobs whose dependencies had ended with no one moving them
    /// on: each released or failed, with the reason of a failure.
    pub dependencies: Vec<(String, Checked)>,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    store: JobStore,
    ecs: EcsCluster,
    queue: JobQueue,
    /// Where a success is counted in its definition's runs.
    definitions: Option<Definitions>,
    policy: Policy,
    event_grace: Duration,
    stranded_after: Duration,
    stranded_whatever_backlog: Duration,
    /// How long a `PENDING` job stays quiet before the sweep checks its
    /// dependencies.
    pending_quiet: Duration,
    /// What an attempt is priced at (Spot as the scaler last observed).
    prices: Prices,
    /// What a day of a spending limit is.
    spending_day: SpendingDay,
}

impl Lifecycle {
    pub fn new(store: JobStore, ecs: EcsCluster, queue: JobQueue, max_interruptions: u32) -> Self {
        Self {
            store,
            ecs,
            queue,
            policy: Policy {
                max_interruptions,
                ..Policy::default()
            },
            event_grace: EVENT_GRACE,
            stranded_after: STRANDED_AFTER,
            stranded_whatever_backlog: STRANDED_WHATEVER_BACKLOG,
            pending_quiet: PENDING_QUIET,
            definitions: None,
            prices: Prices::default(),
            spending_day: SpendingDay::default(),
        }
    }

    /// Counts spend and releases held jobs by `day` (the deployment's
    /// `BERTH_SPENDING_DAY_SECONDS`; tests move its clock).
    pub fn with_spending_day(mut self, day: SpendingDay) -> Self {
        self.spending_day = day;
        self
    }

    /// Prices attempts at `prices` (the deployment's `BERTH_PRICES`).
    pub fn with_prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }

    /// Counts each success in its definition's runs (`runs`, `run_seconds`
    /// of the definitions table): what routing expects of its next jobs.
    pub fn with_definitions(mut self, definitions: Definitions) -> Self {
        self.definitions = Some(definitions);
        self
    }

    /// The lifecycle of the deployment `settings` describe, on `clients`.
    /// It puts jobs back on the queue, so it needs `BERTH_QUEUE_URL`.
    pub fn for_deployment(settings: &Settings, clients: &Clients) -> Result<Self, SettingsError> {
        let queue_url = settings
            .queue_url
            .clone()
            .ok_or(SettingsError::Missing(berth_aws::settings::QUEUE_URL))?;
        let lifecycle = Self::new(
            JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
            EcsCluster::for_deployment(settings, clients),
            JobQueue::new(clients.sqs.clone(), queue_url),
            settings.max_interruptions,
        )
        .with_definitions(Definitions::for_deployment(settings, clients))
        .with_prices(settings.prices.clone())
        .with_spending_day(settings.spending_day);
        // A shorter quiet (the local run's soak) shortens the bound past
        // which a backlog does not hold the put-back in proportion.
        Ok(match settings.stranded_after_seconds {
            Some(seconds) => {
                let quiet = Duration::from_secs(u64::from(seconds));
                lifecycle
                    .with_stranded_after(quiet)
                    .with_stranded_whatever_backlog(quiet * WHATEVER_BACKLOG_FACTOR)
            }
            None => lifecycle,
        })
    }

    /// Caps the backoff before a failed job's next attempt (tests and the
    /// local run use 0).
    pub fn with_retry_delay_cap(mut self, seconds: u32) -> Self {
        self.policy.retry_delay_cap = seconds;
        self
    }

    /// Sets how long a launched job's record stays quiet before the sweep
    /// asks ECS about its task (default [`EVENT_GRACE`]).
    pub fn with_event_grace(mut self, grace: Duration) -> Self {
        self.event_grace = grace;
        self
    }

    /// Sets how long a job waiting to launch stays quiet before the sweep
    /// takes its message for lost (default [`STRANDED_AFTER`]).
    pub fn with_stranded_after(mut self, quiet: Duration) -> Self {
        self.stranded_after = quiet;
        self
    }

    /// Sets how long such a job stays quiet before its message is put back
    /// even while others wait on the queue (default
    /// [`STRANDED_WHATEVER_BACKLOG`]).
    pub fn with_stranded_whatever_backlog(mut self, quiet: Duration) -> Self {
        self.stranded_whatever_backlog = quiet;
        self
    }

    /// Sets how long a `PENDING` job stays quiet before the sweep checks
    /// its dependencies (default [`PENDING_QUIET`]).
    pub fn with_pending_quiet(mut self, quiet: Duration) -> Self {
        self.pending_quiet = quiet;
        self
    }

    /// Follows one ECS task state change.
    pub async fn task_changed(&self, task: &TaskChange) -> Result<TaskAction, AwsError> {
        let ignored = |why: String| Ok(TaskAction::Ignored { why });
        let Some((job_id, launch)) = task.started_by.as_deref().and_then(parse_started_by) else {
            return ignored(format!("task {} was not started by berth", task.task_arn));
        };
        if !same_cluster(&task.cluster_arn, self.ecs.cluster()) {
            return ignored(format!("task of another cluster ({})", task.cluster_arn));
        }
        if task.last_status == "STOPPED" {
            self.task_stopped_on(task).await;
        }
        let Some(record) = self.store.get(&job_id).await? else {
            return ignored(format!("no job `{job_id}` is recorded"));
        };
        match task.last_status.as_str() {
            "RUNNING" => self.running(task, &record, launch).await,
            // Its cost first: the attempt it may queue next then finds the
            // day's spend counted (its definition's spending limit).
            "STOPPED" => {
                self.record_cost(task, &record, launch).await?;
                self.stopped(task, &record, launch).await
            }
            other => ignored(format!("task status {other} is not one berth records")),
        }
    }

    /// Records what a stopped task of a job cost, whatever its end did to
    /// the job (a cancelled or superseded attempt was paid for too): once
    /// per launch, so a repeated event or the sweep's reading of the same
    /// end adds nothing.
    async fn record_cost(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<(), AwsError> {
        if record.costs.iter().any(|c| c.launch == launch) {
            return Ok(());
        }
        let Some(job) = &record.job else {
            return Ok(());
        };
        let (instance, prices) = match task.container_instance_arn.as_deref() {
            Some(arn) if task.route() == Route::Ec2 => {
                let observed = self.ecs.container_instance(arn).await?;
                let spot = self.store.spot_prices().await?;
                let prices = match spot {
                    Some(spot) => self.prices.with_observed_spot(&spot.prices),
                    None => self.prices.clone(),
                };
                (observed.as_ref().and_then(InstanceFacts::of), prices)
            }
            _ => (None, self.prices.clone()),
        };
        let arch = self.ecs.architecture_of(&job.task_definition).await;
        let Some(usage) = task_usage(
            &prices,
            task,
            (job.cpu, job.memory),
            arch,
            instance.as_ref(),
        ) else {
            tracing::warn!(
                job_id = job.job_id,
                launch,
                task_arn = task.task_arn,
                "not priced: the task's stop time or its instance is unknown"
            );
            return Ok(());
        };
        match cost::price(&prices, &usage) {
            Ok(cost) => {
                if self
                    .store
                    .record_attempt_cost(job, launch, &cost, now_ms(), &self.spending_day)
                    .await?
                {
                    metrics::emit(
                        &[("Definition", job.definition.as_str())],
                        &[("JobCostUSD", cost.usd)],
                    );
                    tracing::info!(
                        job_id = job.job_id,
                        launch,
                        usd = cost.usd,
                        basis = cost.basis,
                        "attempt cost"
                    );
                }
            }
            Err(e) => tracing::warn!(job_id = job.job_id, launch, error = %e, "not priced"),
        }
        Ok(())
    }

    /// Marks the instance an EC2 task stopped on with when it stopped
    /// ([`TASK_STOPPED`]): it is idle since then at the earliest, and has
    /// room again. Best effort: without the mark the scaler samples idle
    /// time as before.
    async fn task_stopped_on(&self, task: &TaskChange) {
        let Some(instance) = task.container_instance_arn.as_deref() else {
            return;
        };
        let now = now_ms().to_string();
        if let Err(e) = self.ecs.put_attribute(instance, TASK_STOPPED, &now).await {
            tracing::warn!(container_instance = instance, error = %e, "task stop not marked on its instance");
        }
    }

    async fn running(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<TaskAction, AwsError> {
        let now_is = match attempt::on_running(record.status, record.launch, launch) {
            OnRunning::Start => {
                let timeout = record.job.as_ref().map_or(0, |j| j.timeout_seconds);
                let now = now_ms();
                let change = Change {
                    task_arn: Some(task.task_arn.clone()),
                    deadline: (timeout > 0).then(|| now / 1000 + i64::from(timeout)),
                    expect_launch: Some(launch),
                    ..Change::default()
                };
                match self
                    .store
                    .transition(&record.job_id, JobStatus::Running, change, now)
                    .await?
                {
                    Changed::Applied => return Ok(TaskAction::Running),
                    Changed::Refused(Some(now_is)) => *now_is,
                    Changed::Refused(None) => {
                        return Ok(TaskAction::Ignored {
                            why: "the job's record is gone".into(),
                        });
                    }
                }
            }
            _ => record.clone(),
        };
        // A RUNNING task the record is not waiting for: a repeat of the
        // event (nothing to do), or a task its job no longer wants.
        match attempt::on_running(now_is.status, now_is.launch, launch) {
            OnRunning::Stop { reason } => {
                self.ecs.stop(&task.task_arn, reason).await?;
                Ok(TaskAction::StoppedStray {
                    status: now_is.status,
                })
            }
            OnRunning::Start | OnRunning::Leave => Ok(TaskAction::Stale {
                status: now_is.status,
            }),
        }
    }

    async fn stopped(
        &self,
        task: &TaskChange,
        record: &JobRecord,
        launch: LaunchNumber,
    ) -> Result<TaskAction, AwsError> {
        match attempt::on_stopped(
            record.status,
            record.launch,
            record.claimed_at.is_some(),
            launch,
        ) {
            OnStopped::Settle => {}
            OnStopped::Leave => {
                return Ok(TaskAction::Stale {
                    status: record.status,
                });
            }
            OnStopped::Requeue => {
                let delay_seconds = operations::requeue(&self.queue, record, launch).await?;
                return Ok(TaskAction::Requeued {
                    failure: false,
                    reason: record.reason.clone().unwrap_or_default(),
                    delay_seconds,
                });
            }
            OnStopped::TooEarly => {
                // A benign race, not a failure: once the driver records the
                // launch, the sweep reads the stopped task from ECS (which
                // keeps it an hour) and settles its end; should the driver
                // never record it, its next delivery finds the task.
                return Ok(TaskAction::LeftToSweep {
                    why: format!(
                        "launch {launch} stopped before the driver recorded it: the sweep settles its end"
                    ),
                });
            }
        }
        let ended = operations::end_task(
            &self.store,
            Some(&self.queue),
            self.definitions.as_ref(),
            record,
            task,
            launch,
            &self.policy,
        )
        .await?;
        Ok(action(ended))
    }

    /// Releases the jobs waiting for capacity that a container instance
    /// now has room for (it registered, or a task left it): their held
    /// deliveries are made visible, so the driver launches them at once
    /// instead of after their backoff. The launch claim makes a second
    /// delivery harmless. A handle no longer valid (the job was delivered
    /// again meanwhile) is passed over. Returns the jobs released.
    pub async fn release(&self, instance: &InstanceChange) -> Result<Vec<String>, AwsError> {
        if !instance.takes_tasks() || !same_cluster(&instance.cluster_arn, self.ecs.cluster()) {
            return Ok(Vec::new());
        }
        let free = instance.remaining();
        if free == Room::default().on(free.arch) {
            return Ok(Vec::new());
        }
        let mut waiting: Vec<(Room, (String, String))> = Vec::new();
        for w in self.store.waiting_for_capacity().await? {
            if w.job.processor == berth_core::Processor::Fargate {
                continue;
            }
            let Some(receipt) = w.receipt else {
                continue;
            };
            // A task runs only on an instance of its architecture.
            let arch = self.ecs.architecture_of(&w.job.task_definition).await;
            let need = Room::new(w.job.cpu, w.job.memory, w.job.gpu).on(arch);
            waiting.push((need, (w.job.job_id, receipt)));
        }
        let mut released = Vec::new();
        for (job_id, receipt) in scaling::release(&waiting, free) {
            match self.queue.set_visibility(&receipt, Duration::ZERO).await {
                Ok(()) => released.push(job_id),
                Err(e) => {
                    tracing::info!(job_id, error = %e, "not released: its delivery is no longer held");
                }
            }
        }
        Ok(released)
    }

    /// Drains the container instance on EC2 instance `instance_id` so that
    /// nothing new is placed there in its last two minutes. Returns the
    /// container instance, or `None` when the instance is not in the cluster.
    pub async fn drain(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        self.ecs.drain_instance(instance_id).await
    }

    /// Makes up for lost task events (see [`EVENT_GRACE`]), then stops
    /// every job past its deadline and marks it `TIMED_OUT`. A job whose
    /// task ended is given that end, not a timeout.
    pub async fn sweep(&self) -> Result<Sweep, AwsError> {
        // One read of the launched jobs (the status index) serves both.
        let mut launched = Vec::new();
        for status in [JobStatus::Dispatched, JobStatus::Running] {
            launched.extend(self.store.in_status(status, usize::MAX).await?);
        }
        let now = now_ms();
        let mut sweep = Sweep::default();
        self.reconcile(&launched, now, &mut sweep).await;
        self.silent_lambda_runs(&launched, now, &mut sweep).await;
        for job in launched {
            let past_deadline = job.deadline.is_some_and(|d| d < now / 1000);
            let reconciled = sweep.reconciled.iter().any(|(id, _)| *id == job.job_id);
            if !past_deadline || reconciled {
                continue;
            }
            match self.time_out(&job, now).await {
                Ok(true) => sweep.timed_out.push(job.job_id),
                Ok(false) => {}
                Err(e) => sweep.errors.push((job.job_id, e.to_string())),
            }
        }
        self.requeue_stranded(now, &mut sweep).await?;
        self.end_overdue_waits(now, &mut sweep).await?;
        self.check_pending(now, &mut sweep).await?;
        Ok(sweep)
    }

    /// Checks the dependencies of `PENDING` jobs quiet for
    /// [`Lifecycle::with_pending_quiet`], the quietest first, at most
    /// [`PENDING_PER_SWEEP`]: one whose dependencies ended with no one
    /// moving it on (a function stopped before it read their dependents,
    /// or a cancel from the CLI, which sends no message) is released or
    /// failed. One still waiting is marked changed, so that the next sweep
    /// takes others first.
    async fn check_pending(&self, now: i64, sweep: &mut Sweep) -> Result<(), AwsError> {
        let quiet = i64::try_from(self.pending_quiet.as_millis()).unwrap_or(i64::MAX);
        let mut pending = self.store.in_status(JobStatus::Pending, usize::MAX).await?;
        pending.retain(|j| j.updated_at.is_some_and(|t| t <= now.saturating_sub(quiet)));
        pending.sort_by_key(|j| j.updated_at);
        for job in pending.into_iter().take(PENDING_PER_SWEEP) {
            match dependencies::check(&self.store, Some(&self.queue), &job.job_id).await {
                Ok(Checked::Waiting(_)) => {
                    if let Err(e) = self
                        .store
                        .touch(&job.job_id, JobStatus::Pending, job.launch, now)
                        .await
                    {
                        sweep.errors.push((job.job_id, e.to_string()));
                    }
                }
                Ok(checked @ (Checked::Released | Checked::Failed(_))) => {
                    sweep.dependencies.push((job.job_id, checked));
                }
                Ok(_) => {}
                Err(e) => sweep.errors.push((job.job_id, e.to_string())),
            }
        }
        Ok(())
    }

    /// Puts back the message of each job waiting to launch (`ACCEPTED`,
    /// `WAITING_FOR_CAPACITY`) that has been quiet for longer than any
    /// backoff allows: its message was lost (a re-queue that failed, a
    /// message deleted). The launch claim makes a message that was not lost
    /// after all harmless.
    ///
    /// While messages wait on the queue, only jobs quiet for
    /// [`STRANDED_WHATEVER_BACKLOG`]: then the driver is behind, and a quiet
    /// job's message may well be among them. Putting messages back then
    /// would lengthen the very backlog that keeps jobs quiet, and each sweep
    /// would add more (the 2,000-job soak saw its queue grow so). The sweep
    /// after the backlog is drained puts back what is still missing.
    async fn requeue_stranded(&self, now: i64, sweep: &mut Sweep) -> Result<(), AwsError> {
        let backlog = self.queue.backlog().await?;
        let quiet = if backlog > 0 {
            sweep.requeue_deferred = Some(backlog);
            self.stranded_whatever_backlog
        } else {
            self.stranded_after
        };
        let quiet = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        for status in [JobStatus::Accepted, JobStatus::WaitingForCapacity] {
            for job in self.store.in_status(status, usize::MAX).await? {
                // A job held for its definition's spending limit waits for
                // the next day, not for a lost message: then it goes back.
                if spending::is_held(job.reason.as_deref()) {
                    let held_at = job.updated_at.unwrap_or(0);
                    if self.spending_day.released(held_at, now) {
                        self.release_held(&job, now, sweep).await;
                    }
                    continue;
                }
                if job.updated_at.is_none_or(|t| t > now.saturating_sub(quiet)) {
                    continue;
                }
                let definition = job.definition.as_deref().unwrap_or_default();
                let sent = self
                    .queue
                    .requeue(&job.job_id, definition, job.launch, 0)
                    .await;
                match sent {
                    Ok(()) => {
                        // It waits as long again before another.
                        let touched = self.store.touch(&job.job_id, status, job.launch, now).await;
                        if let Err(e) = touched {
                            sweep.errors.push((job.job_id.clone(), e.to_string()));
                        }
                        sweep.requeued.push(job.job_id);
                    }
                    Err(e) => sweep.errors.push((job.job_id, e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// Puts a held job whose day is over back on the queue, then marks it
    /// released: a lost message is then put back as any other's.
    async fn release_held(&self, job: &JobSummary, now: i64, sweep: &mut Sweep) {
        let definition = job.definition.as_deref().unwrap_or_default();
        if let Err(e) = self
            .queue
            .requeue(&job.job_id, definition, job.launch, 0)
            .await
        {
            sweep.errors.push((job.job_id.clone(), e.to_string()));
            return;
        }
        match self.store.release_hold(&job.job_id, job.launch, now).await {
            Ok(_) => sweep.released.push(job.job_id.clone()),
            Err(e) => sweep.errors.push((job.job_id.clone(), e.to_string())),
        }
    }

    /// Fails each job that has waited for capacity longer than the cap and
    /// [`WAIT_CAP_GRACE`]: the driver fails it on a delivery, which a held
    /// back driver or a lost message may never make. Conditional on the job
    /// still waiting at the launch read, so a delivery that launches it
    /// meanwhile wins.
    async fn end_overdue_waits(&self, now: i64, sweep: &mut Sweep) -> Result<(), AwsError> {
        let cap = i64::from(launch::MAX_CAPACITY_WAIT_SECONDS) * 1000;
        let grace = i64::try_from(WAIT_CAP_GRACE.as_millis()).unwrap_or(i64::MAX);
        let waiting = self
            .store
            .in_status(JobStatus::WaitingForCapacity, usize::MAX)
            .await?;
        let overdue = |since: i64| since.saturating_add(cap).saturating_add(grace) <= now;
        // The status index keeps when a job was created, not since when it
        // waits: only a job that old can have waited that long, and its
        // record says since when it has.
        for job in waiting {
            if !job.created_at.is_some_and(overdue) {
                continue;
            }
            let record = match self.store.get(&job.job_id).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    sweep.errors.push((job.job_id, e.to_string()));
                    continue;
                }
            };
            if !record.waiting_since.is_some_and(overdue) {
                continue;
            }
            let change = Change {
                reason: Some(format!(
                    "no capacity within {} s: the sweep ended a wait no delivery ended",
                    launch::MAX_CAPACITY_WAIT_SECONDS
                )),
                expect_launch: Some(record.launch),
                expect_status: Some(JobStatus::WaitingForCapacity),
                release_claim: true,
                ..Change::default()
            };
            match self
                .store
                .transition(&job.job_id, JobStatus::Failed, change, now)
                .await
            {
                Ok(Changed::Applied) => {
                    dependencies::after_end(&self.store, Some(&self.queue), &job.job_id).await;
                    sweep.no_capacity.push(job.job_id)
                }
                Ok(Changed::Refused(_)) => {}
                Err(e) => sweep.errors.push((job.job_id, e.to_string())),
            }
        }
        Ok(())
    }

    /// The tasks of the `launched` ECS jobs whose records have not changed
    /// for the event grace, as ECS describes them: one that stopped, or
    /// started while its job is still `DISPATCHED`, is handled as its event
    /// would have been. Every write is conditional, so an event that
    /// arrives as well changes nothing more.
    async fn reconcile(&self, launched: &[JobSummary], now: i64, sweep: &mut Sweep) {
        let grace = i64::try_from(self.event_grace.as_millis()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(grace);
        let quiet: Vec<(&str, &JobSummary)> = launched
            .iter()
            .filter(|r| r.route != Some(Route::Lambda) && r.updated_at.is_some_and(|t| t < before))
            .filter_map(|r| Some((r.task_arn.as_deref()?, r)))
            .collect();
        for chunk in quiet.chunks(100) {
            let arns: Vec<String> = chunk.iter().map(|(arn, _)| (*arn).to_owned()).collect();
            let tasks = match self.ecs.describe(&arns).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    let e = e.to_string();
                    sweep
                        .errors
                        .extend(chunk.iter().map(|(_, r)| (r.job_id.clone(), e.clone())));
                    continue;
                }
            };
            for task in &tasks {
                let Some((_, job)) = chunk.iter().find(|(arn, _)| *arn == task.task_arn) else {
                    continue;
                };
                let moved_on = match task.last_status.as_str() {
                    "STOPPED" => true,
                    "RUNNING" => job.status == JobStatus::Dispatched,
                    _ => false,
                };
                if !moved_on {
                    continue;
                }
                let job_id = job.job_id.clone();
                match self.task_changed(task).await {
                    Ok(TaskAction::Ignored { .. } | TaskAction::Stale { .. }) => {}
                    Ok(action) => sweep.reconciled.push((job_id, action)),
                    Err(e) => sweep.errors.push((job_id, e.to_string())),
                }
            }
        }
    }

    /// Lambda-route jobs `RUNNING` whose task runtime has not been heard of
    /// for [`launch::LAMBDA_SILENCE_SECONDS`] (it touches the record every
    /// [`launch::LAMBDA_HEARTBEAT_SECONDS`]): the sandbox died with the job
    /// (out of memory, a crash). The attempt ends as a failure of the job,
    /// and `max_attempts` decides what follows.
    async fn silent_lambda_runs(&self, launched: &[JobSummary], now: i64, sweep: &mut Sweep) {
        let silence = i64::from(launch::LAMBDA_SILENCE_SECONDS) * 1000;
        let silent = launched.iter().filter(|j| {
            j.route == Some(Route::Lambda)
                && j.status == JobStatus::Running
                && j.updated_at
                    .is_some_and(|t| t < now.saturating_sub(silence))
        });
        for job in silent {
            let ended = match self.store.get(&job.job_id).await {
                Ok(Some(record)) => self.sandbox_died(&record, now).await,
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            match ended {
                Ok(action @ (TaskAction::Ended { .. } | TaskAction::Requeued { .. })) => {
                    sweep.reconciled.push((job.job_id.clone(), action));
                }
                Ok(_) => {}
                Err(e) => sweep.errors.push((job.job_id.clone(), e.to_string())),
            }
        }
    }

    async fn sandbox_died(&self, record: &JobRecord, now: i64) -> Result<TaskAction, AwsError> {
        let reason = format!(
            "the task function's sandbox ended before the job did (out of memory, or a crash): no word from it for {} s",
            launch::LAMBDA_SILENCE_SECONDS
        );
        let attempt = Attempt {
            launch: record.launch,
            route: Some(Route::Lambda),
            id: record.request_id.as_deref(),
        };
        let ending = Ending::Stopped {
            outcome: StopOutcome::JobFailed {
                exit_code: None,
                reason,
            },
            exit_code: None,
        };
        match attempt::settle(&record.standing(), &attempt, ending, &self.policy, now) {
            Settlement::Apply(settled) => Ok(action(
                operations::end_attempt(
                    &self.store,
                    Some(&self.queue),
                    self.definitions.as_ref(),
                    record,
                    settled,
                )
                .await?,
            )),
            Settlement::Ended { status } => Ok(TaskAction::Stale { status }),
            Settlement::NotCurrent => Ok(TaskAction::Stale {
                status: record.status,
            }),
        }
    }

    async fn time_out(&self, job: &JobSummary, now: i64) -> Result<bool, AwsError> {
        let deadline = job.deadline.unwrap_or(i64::MAX);
        let started = job.status == JobStatus::Running;
        let reason = match job.route {
            Some(Route::Lambda) => {
                let grace = i64::try_from(LAMBDA_REPORT_GRACE.as_secs()).unwrap_or(i64::MAX);
                if now / 1000 < deadline.saturating_add(grace) {
                    return Ok(false);
                }
                if started {
                    format!(
                        "{TIMED_OUT_REASON}: the Lambda runtime reported no end by its deadline"
                    )
                } else {
                    format!(
                        "{TIMED_OUT_REASON}: its invocation never ran within Lambda's {} s of keeping it",
                        launch::LAMBDA_START_ALLOWANCE_SECONDS
                    )
                }
            }
            _ => {
                let reason = if started {
                    format!("{TIMED_OUT_REASON}: past its deadline")
                } else {
                    format!(
                        "{TIMED_OUT_REASON}: its task did not start within {} s of its launch",
                        launch::ECS_START_ALLOWANCE_SECONDS
                    )
                };
                if let Some(task) = &job.task_arn {
                    // Stop first: should the write below fail, the task's
                    // STOPPED event still records the timeout.
                    self.ecs.stop(task, &reason).await?;
                }
                reason
            }
        };
        // A timeout reads only where the record stands, not its counters.
        let standing = Standing {
            status: job.status,
            launch: job.launch,
            failures: 0,
            interruptions: 0,
            max_attempts: 1,
            retry_rules: Vec::new(),
        };
        let attempt = Attempt {
            launch: job.launch,
            route: job.route,
            id: job.task_arn.as_deref().or(job.request_id.as_deref()),
        };
        let Settlement::Apply(settled) = attempt::settle(
            &standing,
            &attempt,
            Ending::TimedOut { reason },
            &self.policy,
            now,
        ) else {
            return Ok(false);
        };
        let applied = matches!(
            self.store.settle(&job.job_id, &settled, now).await?,
            Changed::Applied
        );
        if applied {
            dependencies::after_end(&self.store, Some(&self.queue), &job.job_id).await;
        }
        Ok(applied)
    }

    /// Cancels `job_id` wherever it is (see [`operations::cancel`]).
    pub async fn cancel(&self, job_id: &str, why: Option<&str>) -> Result<Cancelled, AwsError> {
        operations::cancel(&self.store, &self.ecs, Some(&self.queue), job_id, why).await
    }
}

/// What ending an attempt did, as a task action.
fn action(ended: AttemptEnded) -> TaskAction {
    match ended {
        AttemptEnded::Applied(settled) => match settled.requeue {
            Some(delay_seconds) => TaskAction::Requeued {
                failure: settled.add_failure,
                reason: settled.reason.unwrap_or_default(),
                delay_seconds,
            },
            None => TaskAction::Ended {
                status: settled.status,
                reason: settled.reason,
            },
        },
        AttemptEnded::Refused(Some(status)) => TaskAction::Stale { status },
        AttemptEnded::Refused(None) => TaskAction::Ignored {
            why: "the job's record is gone".into(),
        },
    }
}

/// Whether the event's cluster (an ARN) is `cluster` (a name or an ARN).
/// An event without one is taken as the cluster's own.
fn same_cluster(cluster_arn: &str, cluster: &str) -> bool {
    cluster_arn.is_empty()
        || cluster_arn == cluster
        || cluster_arn
            .rsplit_once('/')
            .is_some_and(|(_, name)| name == cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_this_cluster_is_named_by_its_arn_or_name() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/berth";
        assert!(same_cluster(arn, "berth"));
        assert!(same_cluster(arn, arn));
        assert!(same_cluster("", "berth"), "an event without one");
        assert!(!same_cluster(arn, "other"));
        assert!(!same_cluster(
            "arn:aws:ecs:us-east-1:1:cluster/berth-dev",
            "berth"
        ));
    }

    #[test]
    fn a_spot_warning_names_its_instance() {
        let detail = serde_json::json!({
            "instance-id": "i-0abc",
            "instance-action": "terminate"
        });
        let warning: SpotWarning = serde_json::from_value(detail).unwrap();
        assert_eq!(warning.instance_id, "i-0abc");
    }
}
