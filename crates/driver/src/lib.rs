//! berth-driver: for each SQS record, validate the job (berth-core), record it
//! (the job store), route it and launch it, exactly once.
//!
//! The records of a batch are handled side by side, up to a bound. The
//! answer names only the messages that need another delivery, each with a
//! backoff set on its message: a job waiting for capacity, or one that hit a
//! retryable AWS error. An invalid message is never retried: it is recorded
//! `REJECTED` with its reason, or, where it has no usable job id, sent to the
//! dead-letter queue with the reason as a message attribute.
//!
//! This module handles a batch and says what became of each record;
//! [`reject`] keeps what cannot run, [`launch`] launches what can (EC2, then
//! Fargate, or Lambda) and records where it went.

pub mod launch;
pub mod reject;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use berth_aws::queue::{ARRAY_CHILD_ATTRIBUTE, RELAUNCH_ATTRIBUTE};
use berth_aws::store::{Change, Changed, now_ms};
use berth_aws::{
    Clients, DeadLetters, Definitions, EcsCluster, JobQueue, JobStore, LambdaLauncher, Settings,
    metrics,
};
use berth_core::attempt::Policy;
use berth_core::launch::{
    LaunchNumber, MAX_CAPACITY_WAIT_SECONDS, draw_for, retry_backoff_seconds,
    throttle_backoff_seconds,
};
use berth_core::{JobRequest, JobStatus, MessageError, Route, job};
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};

pub use reject::usable_job_id;

/// How the driver behaves, beyond where things are.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Records of a batch in flight at once.
    pub concurrency: usize,
    /// How long a launch claim protects a launch in progress from a second
    /// delivery of the same message; after that the launch is taken over.
    pub claim_lease: Duration,
    /// A job still without capacity after this long fails.
    pub max_capacity_wait: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            concurrency: 16,
            claim_lease: Duration::from_secs(60),
            max_capacity_wait: Duration::from_secs(u64::from(MAX_CAPACITY_WAIT_SECONDS)),
        }
    }
}

/// The driver and everything it talks to, built once per execution
/// environment.
#[derive(Debug, Clone)]
pub struct Driver {
    pub store: JobStore,
    pub definitions: Definitions,
    pub ecs: EcsCluster,
    pub lambda: LambdaLauncher,
    /// The job queue, for message visibility (backoff); without it the
    /// queue's own visibility timeout applies.
    pub queue: Option<JobQueue>,
    /// The dead-letter queue, for invalid messages with no usable job id.
    pub dead_letters: Option<DeadLetters>,
    /// How an attempt's end is settled, for a launch taken over whose task
    /// had already stopped.
    pub policy: Policy,
    /// The job queue's redrive `maxReceiveCount` (`BERTH_MAX_RECEIVES`): a
    /// job still not launched at that receive ends `FAILED`.
    pub max_receives: Option<u32>,
    pub tuning: Tuning,
    /// What routing prices the routes by (`BERTH_PRICES`).
    pub prices: berth_core::prices::Prices,
    /// Jobs that tolerate interruption go on Fargate Spot
    /// (`BERTH_FARGATE_SPOT`).
    pub fargate_spot: bool,
    /// The instance types the cluster may launch, as ECS registers them
    /// (`BERTH_INSTANCE_TYPES`); `None` when not known.
    pub ec2_types: Option<Vec<berth_core::scaling::InstanceType>>,
    /// What a day of a spending limit is (`BERTH_SPENDING_DAY_SECONDS`).
    pub spending_day: berth_core::spending::SpendingDay,
    /// Wakes the capacity metric when jobs wait for capacity
    /// (`BERTH_SCALER_FUNCTION`), so that the scaler starts what they need
    /// at once, not at its next minute, and from rest.
    pub waker: Option<berth_aws::schedule::Waker>,
    /// Where EC2 had no room a moment ago, as this execution environment
    /// remembers it (berth-core's `room`): a job it covers goes straight
    /// to Fargate, not through a RunTask that would place nothing.
    pub no_room: Arc<Mutex<berth_core::room::NoRoomMemory>>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Dispatched {
        route: Route,
        launch: LaunchNumber,
        id: String,
        /// Why the job went where it did (berth-core's routing).
        why: String,
    },
    /// Its definition spent its spending limit for the day: the job waits,
    /// `ACCEPTED`, until the next day begins (epoch ms), when the sweep
    /// puts it back on the queue; this message is done with.
    Held {
        until: i64,
        reason: String,
    },
    /// No room anywhere the job fits; its message comes back after `backoff`.
    Waiting {
        backoff: Duration,
        reason: String,
    },
    Rejected {
        reason: String,
    },
    DeadLettered {
        reason: String,
    },
    /// The job is already recorded; nothing was launched.
    Duplicate {
        status: JobStatus,
    },
    /// The launch failed for good; the job is `FAILED`.
    Failed {
        reason: String,
    },
    /// A launch hit a retryable AWS error (throttling, 5xx); the message
    /// comes back.
    LaunchRetry {
        reason: String,
    },
    /// An array: this many of its children were released (their messages
    /// sent); `more` when the rest are left to the parent's message, put
    /// back on the queue.
    Array {
        released: u32,
        more: bool,
    },
    /// It waits for its dependencies, `PENDING`: these have not ended.
    /// Whoever ends the last of them releases it; this message is done with.
    Pending {
        waiting: Vec<String>,
    },
    /// AWS throttled a call for the job (its launch: RunTask, an Invoke; a
    /// read or write of its record), past the SDK's retries: nothing was
    /// launched and no attempt is counted. The message comes back after a
    /// short delay of its own ([`berth_core::launch::throttle_backoff_seconds`]),
    /// so that a burst's jobs meet the limit spread out, and a throttled
    /// job is never given up for it.
    Throttled {
        reason: String,
    },
    /// Throttled at the job queue's last receive: the job goes on in a new
    /// message (see [`Outcome::Throttled`]); this one is done with.
    CarriedOn {
        reason: String,
    },
    /// Anything else retryable (the store or the definitions unreachable,
    /// a launch in progress elsewhere); the message comes back.
    Retry {
        reason: String,
    },
    /// Nothing to launch: a re-queued attempt for a job that is not there
    /// to take it, or a record that vanished meanwhile.
    Ignored {
        reason: String,
    },
}

impl Outcome {
    /// Whether SQS must deliver the message again.
    pub fn redeliver(&self) -> bool {
        matches!(
            self,
            Self::Waiting { .. }
                | Self::Retry { .. }
                | Self::LaunchRetry { .. }
                | Self::Throttled { .. }
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Dispatched { .. } => "dispatched",
            Self::Waiting { .. } => "waiting",
            Self::Held { .. } => "held",
            Self::Pending { .. } => "pending",
            Self::Array { .. } => "array",
            Self::Rejected { .. } => "rejected",
            Self::DeadLettered { .. } => "dead-lettered",
            Self::Duplicate { .. } => "duplicate",
            Self::Failed { .. } => "failed",
            Self::LaunchRetry { .. } => "launch-retry",
            Self::Retry { .. } => "retry",
            Self::Throttled { .. } => "throttled",
            Self::CarriedOn { .. } => "carried-on",
            Self::Ignored { .. } => "ignored",
        }
    }

    /// A retry for an error `e`: [`Outcome::Throttled`] when AWS
    /// throttled the call.
    fn retry(e: berth_aws::AwsError) -> Self {
        if e.throttled() {
            Self::Throttled {
                reason: e.to_string(),
            }
        } else {
            Self::Retry {
                reason: e.to_string(),
            }
        }
    }
}

/// The driver function's SDK configuration, from its environment.
pub async fn sdk_config() -> berth_aws::SdkConfig {
    berth_aws::load_sdk_config_adaptive().await
}

/// A record's outcome and the job it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub message_id: String,
    pub job_id: Option<String>,
    pub outcome: Outcome,
}

impl Driver {
    /// The driver for `settings`, talking to AWS through `clients`.
    pub fn new(settings: &Settings, clients: &Clients, tuning: Tuning) -> Self {
        Self {
            store: JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
            definitions: Definitions::for_deployment(settings, clients),
            ecs: EcsCluster::for_deployment(settings, clients),
            lambda: LambdaLauncher::new(clients.lambda.clone()),
            queue: settings
                .queue_url
                .as_ref()
                .map(|url| JobQueue::new(clients.sqs.clone(), url)),
            dead_letters: settings
                .dlq_url
                .as_ref()
                .map(|url| DeadLetters::new(clients.sqs.clone(), url)),
            policy: Policy {
                max_interruptions: settings.max_interruptions,
                ..Policy::default()
            },
            max_receives: settings.max_receives,
            tuning,
            prices: settings.prices.clone(),
            fargate_spot: settings.fargate_spot,
            spending_day: settings.spending_day,
            ec2_types: berth_core::scaling::known_types(&settings.instance_types),
            waker: settings
                .scaler_function
                .as_ref()
                .map(|f| berth_aws::schedule::Waker::new(clients.lambda.clone(), f)),
            no_room: Arc::default(),
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
        let handled = self.handle_batch(event.payload.records).await;
        let batch_item_failures = handled
            .into_iter()
            .filter(|h| h.outcome.redeliver())
            .map(|h| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = h.message_id;
                failure
            })
            .collect();
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = batch_item_failures;
        Ok(response)
    }

    /// Handles the records of a batch side by side and says what became of
    /// each, in no particular order.
    pub async fn handle_batch(&self, records: Vec<SqsMessage>) -> Vec<Handled> {
        let parsed: Vec<(SqsMessage, Result<JobRequest, MessageError>)> = records
            .into_iter()
            .map(|m| {
                let body = m.body.as_deref().unwrap_or("");
                let message_id = m.message_id.as_deref().unwrap_or("");
                // berth's own messages may name an array's child.
                let parsed = if [RELAUNCH_ATTRIBUTE, ARRAY_CHILD_ATTRIBUTE]
                    .iter()
                    .any(|a| m.message_attributes.contains_key(*a))
                {
                    job::parse_internal(body, message_id)
                } else {
                    job::parse(body, message_id)
                };
                (m, parsed)
            })
            .collect();
        let names: HashSet<&str> = parsed
            .iter()
            .filter_map(|(_, p)| p.as_ref().ok())
            .map(|j| j.definition.as_str())
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        let definitions = if names.is_empty() {
            Ok(HashMap::new())
        } else {
            self.definitions.get_many(&names).await
        };
        let definitions = definitions.as_ref();
        let handled = futures::stream::iter(parsed)
            .map(|(message, parsed)| async move {
                let started = Instant::now();
                let message_id = message.message_id.clone().unwrap_or_default();
                let (job_id, outcome) = match (parsed, definitions) {
                    (Err(e), _) => self.invalid(&message, &e).await,
                    (Ok(job), Ok(defs)) => {
                        let outcome = self.valid(&message, &job, defs.get(&job.definition)).await;
                        (Some(job.job_id), outcome)
                    }
                    (Ok(job), Err(e)) => (Some(job.job_id), Outcome::retry(e.clone())),
                };
                let receives = receive_count(&message);
                let outcome = match (&job_id, self.max_receives) {
                    (Some(job_id), Some(max))
                        if matches!(outcome, Outcome::Throttled { .. }) && receives >= max =>
                    {
                        self.carry_on(&message, job_id, outcome).await
                    }
                    (Some(job_id), Some(max)) if outcome.redeliver() && receives >= max => {
                        self.give_up(job_id, receives, outcome).await
                    }
                    _ => outcome,
                };
                match outcome {
                    Outcome::Retry { .. } | Outcome::LaunchRetry { .. } => {
                        let backoff = retry_backoff_seconds(receives);
                        self.set_visibility(&message, Duration::from_secs(u64::from(backoff)))
                            .await;
                    }
                    Outcome::Throttled { .. } => {
                        let backoff =
                            throttle_backoff_seconds(receives, draw_for(&message_id, receives));
                        self.set_visibility(&message, Duration::from_secs(u64::from(backoff)))
                            .await;
                    }
                    _ => {}
                }
                log(&message_id, job_id.as_deref(), &outcome, started.elapsed());
                Handled {
                    message_id,
                    job_id,
                    outcome,
                }
            })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect::<Vec<Handled>>()
            .await;
        self.wake_for(&handled).await;
        handled
    }

    /// Wakes the scaler, once for the batch, when jobs of it wait for
    /// capacity. A wake that fails is only logged: the job's next delivery
    /// wakes it again. Until the instance the scaler starts has had time to
    /// register, every job asks EC2 first.
    async fn wake_for(&self, handled: &[Handled]) {
        let waiting = handled
            .iter()
            .filter(|h| matches!(h.outcome, Outcome::Waiting { .. }))
            .count();
        if waiting > 0 {
            self.remember_room(|m, now| m.expect_room(now));
        }
        let Some(waker) = self.waker.as_ref().filter(|_| waiting > 0) else {
            return;
        };
        if let Err(e) = waker
            .wake(&format!("{waiting} job(s) waiting for capacity"))
            .await
        {
            tracing::warn!(error = %e, "the scaler was not woken");
        }
    }

    /// Changes this environment's memory of where EC2 had no room, at the
    /// time now.
    pub(crate) fn remember_room<T>(
        &self,
        change: impl FnOnce(&mut berth_core::room::NoRoomMemory, u64) -> T,
    ) -> T {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        // A panic elsewhere cannot leave the memory half changed: each
        // change is whole. Go on with it.
        let mut memory = self.no_room.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut memory, now)
    }

    /// The job's message is at the queue's last receive and would come back
    /// once more (waiting, or a retryable error): after it the redrive moves
    /// it to the dead-letter queue. A job not yet launched ends `FAILED`
    /// with the reason now, so no record is left behind a dead letter.
    async fn give_up(&self, job_id: &str, receives: u32, outcome: Outcome) -> Outcome {
        let why = match &outcome {
            Outcome::Waiting { reason, .. }
            | Outcome::Retry { reason }
            | Outcome::LaunchRetry { reason } => reason.clone(),
            _ => return outcome,
        };
        let record = match self.store.get(job_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return outcome,
            Err(e) => return Outcome::retry(e),
        };
        if !matches!(
            record.status,
            JobStatus::Accepted | JobStatus::WaitingForCapacity
        ) {
            return outcome;
        }
        let reason =
            format!("not launched after {receives} deliveries, the job queue's last: {why}");
        let change = Change {
            reason: Some(reason.clone()),
            expect_launch: Some(record.launch),
            ..Change::default()
        };
        match self
            .store
            .transition(job_id, JobStatus::Failed, change, now_ms())
            .await
        {
            Ok(Changed::Applied) => {
                berth_aws::dependencies::after_end(&self.store, self.queue.as_ref(), job_id).await;
                Outcome::Failed { reason }
            }
            // It moved on meanwhile: as it was.
            Ok(Changed::Refused(_)) => outcome,
            Err(e) => Outcome::retry(e),
        }
    }

    /// A job throttled at the job queue's last receive before its redrive:
    /// the message is sent again as a new one (SQS counts receives per
    /// message), delivered after the throttle's delay, and this one is done
    /// with. A recorded job goes on as a re-queued attempt of the launch it
    /// is at (nothing launched twice: the launch keeps its number); one not
    /// yet recorded as a copy of its message. Should the send fail, the
    /// message is left to come back as it is.
    async fn carry_on(&self, message: &SqsMessage, job_id: &str, outcome: Outcome) -> Outcome {
        let Some(queue) = self.queue.as_ref() else {
            return outcome;
        };
        let message_id = message.message_id.as_deref().unwrap_or_default();
        let receives = receive_count(message);
        let delay = throttle_backoff_seconds(receives, draw_for(message_id, receives));
        let sent = match self.store.get(job_id).await {
            Ok(Some(record)) => match &record.job {
                Some(job) => {
                    queue
                        .requeue(job_id, &job.definition, record.launch, delay)
                        .await
                }
                // A rejection: it has ended.
                None => return outcome,
            },
            Ok(None) => {
                let attributes: Vec<(String, String, String)> = message
                    .message_attributes
                    .iter()
                    .filter_map(|(name, a)| {
                        Some((name.clone(), a.data_type.clone()?, a.string_value.clone()?))
                    })
                    .collect();
                let body = message.body.as_deref().unwrap_or_default();
                queue.resend(body, &attributes, delay).await
            }
            Err(_) => return outcome,
        };
        match sent {
            Ok(()) => Outcome::CarriedOn {
                reason: format!(
                    "{}; carried on in a new message after {delay} s (this one was at the queue's last receive)",
                    match &outcome {
                        Outcome::Throttled { reason } => reason.as_str(),
                        _ => "",
                    }
                ),
            },
            Err(e) => {
                tracing::warn!(error = %e, "throttled job not carried on");
                outcome
            }
        }
    }

    /// Sets when the message comes back; without the queue the queue's own
    /// visibility timeout applies.
    async fn set_visibility(&self, message: &SqsMessage, after: Duration) {
        let (Some(queue), Some(handle)) = (&self.queue, &message.receipt_handle) else {
            return;
        };
        if let Err(e) = queue.set_visibility(handle, after).await {
            tracing::warn!(error = %e, "backoff not set");
        }
    }
}

/// How many times SQS has delivered `message`, this time included.
pub(crate) fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// When `message` was first sent, in epoch milliseconds.
fn sent_at_ms(message: &SqsMessage) -> Option<i64> {
    message
        .attributes
        .get("SentTimestamp")
        .and_then(|v| v.parse().ok())
}

/// The dashboard's count of a job decision (see `berth_aws::metrics`).
fn count(outcome: &Outcome) {
    let metric = match outcome {
        Outcome::Dispatched { route, .. } => {
            return metrics::count("Dispatched", Some(("Route", route.as_str())));
        }
        Outcome::Waiting { .. } => "WaitingForCapacity",
        Outcome::Held { .. } => "HeldForSpendingLimit",
        Outcome::Pending { .. } => "Pending",
        Outcome::Rejected { .. } => "Rejected",
        Outcome::DeadLettered { .. } => "DeadLettered",
        Outcome::Failed { .. } => "LaunchFailed",
        Outcome::LaunchRetry { .. } => "LaunchRetries",
        Outcome::Retry { .. } => "Retries",
        Outcome::Throttled { .. } | Outcome::CarriedOn { .. } => "Throttled",
        Outcome::Duplicate { .. } | Outcome::Ignored { .. } | Outcome::Array { .. } => return,
    };
    metrics::count(metric, None);
}

/// One structured line per job decision.
fn log(message_id: &str, job_id: Option<&str>, outcome: &Outcome, elapsed: Duration) {
    count(outcome);
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let decision = outcome.name();
    let job_id = job_id.unwrap_or("");
    match outcome {
        Outcome::Dispatched {
            route,
            launch,
            id,
            why,
        } => tracing::info!(
            job_id,
            message_id,
            decision,
            route = route.as_str(),
            launch,
            id = id.as_str(),
            why = why.as_str(),
            elapsed_ms,
            "job decision"
        ),
        Outcome::Waiting { backoff, reason } => tracing::info!(
            job_id,
            message_id,
            decision,
            reason = reason.as_str(),
            backoff_s = backoff.as_secs(),
            elapsed_ms,
            "job decision"
        ),
        Outcome::Held { until, reason } => tracing::info!(
            job_id,
            message_id,
            decision,
            reason = reason.as_str(),
            until,
            elapsed_ms,
            "job decision"
        ),
        Outcome::Array { released, more } => tracing::info!(
            job_id,
            message_id,
            decision,
            released,
            more,
            elapsed_ms,
            "job decision"
        ),
        Outcome::Pending { waiting } => tracing::info!(
            job_id,
            message_id,
            decision,
            reason = berth_core::dependency::waiting_reason(waiting).as_str(),
            elapsed_ms,
            "job decision"
        ),
        Outcome::Duplicate { status } => {
            tracing::info!(
                job_id,
                message_id,
                decision,
                status = status.as_str(),
                elapsed_ms,
                "job decision"
            )
        }
        Outcome::Rejected { reason }
        | Outcome::DeadLettered { reason }
        | Outcome::Failed { reason }
        | Outcome::LaunchRetry { reason }
        | Outcome::Retry { reason }
        | Outcome::Throttled { reason }
        | Outcome::CarriedOn { reason }
        | Outcome::Ignored { reason } => {
            tracing::warn!(
                job_id,
                message_id,
                decision,
                reason = reason.as_str(),
                elapsed_ms,
                "job decision"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<const N: usize>(attributes: [(&str, &str); N]) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.attributes = attributes
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        m
    }

    #[test]
    fn a_throttled_call_is_told_from_other_retries() {
        let error = |code: &str| berth_aws::AwsError {
            operation: "dynamodb:PutItem",
            code: Some(code.into()),
            message: format!("{code}: no"),
            retryable: true,
        };
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "TooManyRequestsException",
        ] {
            assert!(
                matches!(Outcome::retry(error(code)), Outcome::Throttled { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            Outcome::retry(error("InternalServerError")),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn only_waits_and_retries_come_back() {
        let again = [
            Outcome::Waiting {
                backoff: Duration::from_secs(30),
                reason: "no room".into(),
            },
            Outcome::Retry {
                reason: "throttled".into(),
            },
            Outcome::LaunchRetry {
                reason: "ecs:RunTask: ServerException".into(),
            },
            Outcome::Throttled {
                reason: "ecs:RunTask: ThrottlingException: Rate exceeded".into(),
            },
        ];
        assert!(again.iter().all(Outcome::redeliver));
        let done = [
            Outcome::Dispatched {
                route: Route::Ec2,
                launch: 1,
                id: "t".into(),
                why: "fits".into(),
            },
            Outcome::Rejected { reason: "x".into() },
            Outcome::DeadLettered { reason: "x".into() },
            Outcome::Duplicate {
                status: JobStatus::Running,
            },
            Outcome::Failed { reason: "x".into() },
            Outcome::Ignored { reason: "x".into() },
            Outcome::CarriedOn { reason: "x".into() },
        ];
        assert!(done.iter().all(|o| !o.redeliver()), "{done:?}");
    }

    #[test]
    fn the_receive_count_and_sent_time_come_from_the_message() {
        let m = message([
            ("ApproximateReceiveCount", "4"),
            ("SentTimestamp", "1800000000123"),
        ]);
        assert_eq!(receive_count(&m), 4);
        assert_eq!(sent_at_ms(&m), Some(1_800_000_000_123));
        // A message without them counts as a first delivery of unknown age.
        let bare = message([("ApproximateReceiveCount", "lots")]);
        assert_eq!(receive_count(&bare), 1);
        assert_eq!(sent_at_ms(&bare), None);
    }
}
