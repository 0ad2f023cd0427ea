//! berth-driver: for each SQS record, validate the job (berth-core), record it
//! (the job store), route it and launch it, exactly once.
//!
//! The records of a batch are handled side by side, up to a bound. The
//! answer names only the messages that need another delivery, each with a
//! backoff set on its message: a job waiting for capacity, or one whose
//! launch hit a retryable AWS error. An invalid message is never retried: it is recorded
//! `REJECTED` with its reason, or, where it has no usable job id, sent to the
//! dead-letter queue with the reason as a message attribute.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageAttributeValue;
use berth_aws::definitions::Lookup;
use berth_aws::queue::RELAUNCH_ATTRIBUTE;
use berth_aws::store::{Change, Changed, Created, FIRST_LAUNCH, JobRecord, Rejection, now_ms};
use berth_aws::{Clients, Definitions, JobStore, LaunchError, Settings, metrics};
use berth_core::launch::{
    LaunchNumber, MAX_CAPACITY_WAIT_SECONDS, capacity_backoff_seconds, retry_backoff_seconds,
};
use berth_core::routing::{self, FargateSize, Plan};
use berth_core::stop::CANCELLED_REASON;
use berth_core::{JobRequest, JobStatus, MessageError, ResolvedJob, Route, job, resolve};
use berth_ecs_runner::{EcsLauncher, FargateNetwork, Placement};
use berth_lambda_task_processor::LambdaLauncher;
use futures::StreamExt;
use lambda_runtime::{Error, LambdaEvent};

/// The message attribute that carries the reason on the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "berth-reason";
/// The message attribute that names the original message on the dead-letter queue.
pub const SOURCE_MESSAGE_ATTRIBUTE: &str = "berth-source-message-id";

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
    pub ecs: EcsLauncher,
    pub lambda: LambdaLauncher,
    pub sqs: aws_sdk_sqs::Client,
    /// The job queue, for message visibility (backoff).
    pub queue_url: Option<String>,
    /// The dead-letter queue, for invalid messages with no usable job id.
    pub dlq_url: Option<String>,
    pub tuning: Tuning,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Dispatched {
        route: Route,
        launch: LaunchNumber,
        id: String,
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
    /// A retryable error; the message comes back.
    Retry {
        reason: String,
    },
    /// A re-queued attempt for a job that is not there to take it.
    Ignored {
        reason: String,
    },
}

impl Outcome {
    /// Whether SQS must deliver the message again.
    pub fn redeliver(&self) -> bool {
        matches!(self, Self::Waiting { .. } | Self::Retry { .. })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Dispatched { .. } => "dispatched",
            Self::Waiting { .. } => "waiting",
            Self::Rejected { .. } => "rejected",
            Self::DeadLettered { .. } => "dead-lettered",
            Self::Duplicate { .. } => "duplicate",
            Self::Failed { .. } => "failed",
            Self::Retry { .. } => "retry",
            Self::Ignored { .. } => "ignored",
        }
    }
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
        let fargate = FargateNetwork {
            subnets: settings.fargate_subnets.clone(),
            security_groups: settings.fargate_security_groups.clone(),
            assign_public_ip: false,
        };
        Self {
            store: JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
            definitions: Definitions::new(clients.dynamodb.clone(), &settings.definitions_table),
            ecs: EcsLauncher::new(
                clients.ecs.clone(),
                &settings.cluster,
                settings.ec2_capacity_provider.clone(),
                fargate,
                settings.fargate_spot,
            ),
            lambda: LambdaLauncher::new(clients.lambda.clone()),
            sqs: clients.sqs.clone(),
            queue_url: settings.queue_url.clone(),
            dlq_url: settings.dlq_url.clone(),
            tuning,
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
                let parsed = job::parse(
                    m.body.as_deref().unwrap_or(""),
                    m.message_id.as_deref().unwrap_or(""),
                );
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
        futures::stream::iter(parsed)
            .map(|(message, parsed)| async move {
                let started = Instant::now();
                let message_id = message.message_id.clone().unwrap_or_default();
                let (job_id, outcome) = match (parsed, definitions) {
                    (Err(e), _) => self.invalid(&message, &e).await,
                    (Ok(job), Ok(defs)) => {
                        let outcome = self.valid(&message, &job, defs.get(&job.definition)).await;
                        (Some(job.job_id), outcome)
                    }
                    (Ok(job), Err(e)) => (
                        Some(job.job_id),
                        Outcome::Retry {
                            reason: e.to_string(),
                        },
                    ),
                };
                if let Outcome::Retry { .. } = outcome {
                    let backoff = retry_backoff_seconds(receive_count(&message));
                    self.set_visibility(&message, Duration::from_secs(u64::from(backoff)))
                        .await;
                }
                log(&message_id, job_id.as_deref(), &outcome, started.elapsed());
                Handled {
                    message_id,
                    job_id,
                    outcome,
                }
            })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect()
            .await
    }

    /// A message that is not a valid job: keep it with its reason.
    async fn invalid(
        &self,
        message: &SqsMessage,
        error: &MessageError,
    ) -> (Option<String>, Outcome) {
        let body = message.body.as_deref().unwrap_or("");
        let message_id = message.message_id.as_deref().unwrap_or("");
        let reason = error.to_string();
        let Some(job_id) = usable_job_id(body, message_id) else {
            return (None, self.dead_letter(message, &reason).await);
        };
        let rejection = Rejection {
            job_id: &job_id,
            message_id,
            reason: &reason,
            definition: None,
            raw_body: Some(body),
        };
        let outcome = self.reject(message, &rejection).await;
        (Some(job_id), outcome)
    }

    async fn reject(&self, message: &SqsMessage, r: &Rejection<'_>) -> Outcome {
        match self.store.reject(r, now_ms()).await {
            Ok(Created::New) => Outcome::Rejected {
                reason: r.reason.to_owned(),
            },
            Ok(Created::Exists(existing))
                if existing.message_id.as_deref() == Some(r.message_id) =>
            {
                Outcome::Duplicate {
                    status: existing.status,
                }
            }
            // The job id belongs to another job: this message cannot be
            // recorded under it, so it goes to the dead-letter queue.
            Ok(Created::Exists(_)) => {
                let reason = format!(
                    "{}; job id `{}` is already taken by another message",
                    r.reason, r.job_id
                );
                self.dead_letter(message, &reason).await
            }
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
            },
        }
    }

    async fn dead_letter(&self, message: &SqsMessage, reason: &str) -> Outcome {
        let Some(dlq) = &self.dlq_url else {
            // Without a dead-letter queue of its own, the message is left to
            // the queue's redrive policy, which moves it there in the end.
            return Outcome::Retry {
                reason: format!("no dead-letter queue configured for: {reason}"),
            };
        };
        let attribute = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
        };
        let (Ok(reason_attr), Ok(source_attr)) = (
            attribute(reason),
            attribute(message.message_id.as_deref().unwrap_or("")),
        ) else {
            return Outcome::Retry {
                reason: "cannot build dead-letter attributes".into(),
            };
        };
        let sent = self
            .sqs
            .send_message()
            .queue_url(dlq)
            .message_body(
                message
                    .body
                    .clone()
                    .filter(|b| !b.is_empty())
                    .unwrap_or_else(|| "(empty)".into()),
            )
            .message_attributes(REASON_ATTRIBUTE, reason_attr)
            .message_attributes(SOURCE_MESSAGE_ATTRIBUTE, source_attr)
            .send()
            .await;
        match sent {
            Ok(_) => Outcome::DeadLettered {
                reason: reason.to_owned(),
            },
            Err(e) => Outcome::Retry {
                reason: berth_aws::AwsError::from_sdk("sqs:SendMessage", e).to_string(),
            },
        }
    }

    /// A valid job message: resolve, route, record, launch.
    async fn valid(
        &self,
        message: &SqsMessage,
        request: &JobRequest,
        definition: Option<&Lookup>,
    ) -> Outcome {
        let message_id = message.message_id.as_deref().unwrap_or("");
        fn rejection<'a>(
            request: &'a JobRequest,
            message_id: &'a str,
            reason: &'a str,
        ) -> Rejection<'a> {
            Rejection {
                job_id: &request.job_id,
                message_id,
                reason,
                definition: Some(&request.definition),
                raw_body: None,
            }
        }
        if let Some(after) = relaunch_after(message) {
            return self.relaunch(request, after, message).await;
        }
        let definition = match definition {
            Some(Lookup::Found(d)) => Some(d),
            Some(Lookup::Malformed(why)) => {
                return self
                    .reject(message, &rejection(request, message_id, why))
                    .await;
            }
            None => None,
        };
        let job = match resolve(request, definition) {
            Ok(job) => job,
            Err(e) => {
                return self
                    .reject(message, &rejection(request, message_id, &e.to_string()))
                    .await;
            }
        };
        let decision = match routing::route(&job) {
            Ok(d) => d,
            Err(e) => {
                return self
                    .reject(message, &rejection(request, message_id, &e.to_string()))
                    .await;
            }
        };

        let launch = match self.store.accept(&job, message_id, now_ms()).await {
            Ok(Created::New) => FIRST_LAUNCH,
            Ok(Created::Exists(record)) => {
                match self
                    .resume(&job, &decision.plan, Some(message_id), &record)
                    .await
                {
                    Ok(launch) => launch,
                    Err(outcome) => return outcome,
                }
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        self.launch(message, &job, &decision.plan, launch).await
    }

    /// Another attempt of a recorded job, put back on the queue after
    /// launch `after` ended (see `berth_aws::queue`). The job runs as it was
    /// recorded, not as its definition reads now.
    async fn relaunch(
        &self,
        request: &JobRequest,
        after: LaunchNumber,
        message: &SqsMessage,
    ) -> Outcome {
        let record = match self.store.get(&request.job_id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Outcome::Ignored {
                    reason: format!("re-queued job `{}` is not recorded", request.job_id),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        let Some(job) = record.job.clone() else {
            return Outcome::Ignored {
                reason: format!("re-queued job `{}` has no recorded job", request.job_id),
            };
        };
        if record.launch < after {
            return Outcome::Ignored {
                reason: format!(
                    "re-queued after launch {after}, but job `{}` is at launch {}",
                    job.job_id, record.launch
                ),
            };
        }
        let plan = match routing::route(&job) {
            Ok(decision) => decision.plan,
            Err(e) => return self.fail(&job, record.launch, e.to_string()).await,
        };
        match self.resume(&job, &plan, None, &record).await {
            Ok(launch) => self.launch(message, &job, &plan, launch).await,
            Err(outcome) => outcome,
        }
    }

    /// A job already recorded: decide whether this delivery launches it,
    /// and with which launch number. `message_id` is the delivery's message
    /// when it is the job's own message, `None` for a re-queued attempt.
    async fn resume(
        &self,
        job: &ResolvedJob,
        plan: &Plan,
        message_id: Option<&str>,
        record: &JobRecord,
    ) -> Result<LaunchNumber, Outcome> {
        if message_id.is_some() && record.message_id.as_deref() != message_id {
            // Another message with the same job id: the job id is the
            // idempotency key, the first one stands.
            return Err(Outcome::Duplicate {
                status: record.status,
            });
        }
        if !matches!(
            record.status,
            JobStatus::Accepted | JobStatus::WaitingForCapacity
        ) {
            return Err(Outcome::Duplicate {
                status: record.status,
            });
        }
        // `ACCEPTED` with a claim: a launch was claimed and may be under way
        // (or may have happened and not been recorded). Without one: the
        // last launch ended and the next is free to claim.
        let claimed = record.status == JobStatus::Accepted && record.claimed_at.is_some();
        let claim_age = now_ms() - record.claimed_at.unwrap_or(0);
        let lease = i64::try_from(self.tuning.claim_lease.as_millis()).unwrap_or(i64::MAX);
        if claimed && claim_age < lease {
            // Another delivery of this message is launching it right now.
            return Err(Outcome::Retry {
                reason: format!("launch {} in progress", record.launch),
            });
        }
        // A launch that was claimed and never recorded may have happened:
        // find its task before launching again.
        if claimed && !matches!(plan, Plan::Lambda { .. }) {
            match self.ecs.find_task(&job.job_id, record.launch).await {
                Ok(Some((task_arn, route))) => {
                    return Err(self
                        .dispatched(job, route, record.launch, Some(task_arn), None)
                        .await);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Outcome::Retry {
                        reason: e.to_string(),
                    });
                }
            }
        }
        match self
            .store
            .claim_launch(&job.job_id, record.launch, now_ms())
            .await
        {
            Ok(Changed::Applied) => Ok(record.launch + 1),
            Ok(Changed::Refused(r)) => Err(match r {
                Some(r)
                    if r.status.is_final()
                        || r.status == JobStatus::Dispatched
                        || r.status == JobStatus::Running =>
                {
                    Outcome::Duplicate { status: r.status }
                }
                _ => Outcome::Retry {
                    reason: "another delivery claimed the launch".into(),
                },
            }),
            Err(e) => Err(Outcome::Retry {
                reason: e.to_string(),
            }),
        }
    }

    async fn launch(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
        plan: &Plan,
        launch: LaunchNumber,
    ) -> Outcome {
        let placed = match plan {
            Plan::Lambda { function } => {
                return match self.lambda.invoke(function, job, launch).await {
                    Ok(request_id) => {
                        self.dispatched(job, Route::Lambda, launch, None, request_id)
                            .await
                    }
                    Err(e) => self.launch_failed(job, launch, e).await,
                };
            }
            Plan::Ec2 { fargate_fallback } => match self.ecs.run_on_ec2(job, launch).await {
                Ok(Placement::Placed { task_arn }) => Ok((Route::Ec2, task_arn)),
                Ok(Placement::NoRoom { reason }) => match fargate_fallback {
                    Some(size) => {
                        let placed = self
                            .fargate(job, launch, *size, &format!("EC2 has no room ({reason})"))
                            .await;
                        if placed.is_ok() {
                            metrics::count("FargateFallbacks", None);
                        }
                        placed
                    }
                    None => Err(Ok(format!(
                        "EC2 has no room ({reason}) and the job cannot run on Fargate"
                    ))),
                },
                Err(e) => Err(Err(e)),
            },
            Plan::Fargate { size } => self.fargate(job, launch, *size, "").await,
        };
        match placed {
            Ok((route, task_arn)) => {
                self.dispatched(job, route, launch, Some(task_arn), None)
                    .await
            }
            Err(Ok(no_room)) => self.wait_for_capacity(message, job, launch, no_room).await,
            Err(Err(e)) => self.launch_failed(job, launch, e).await,
        }
    }

    /// Fargate: `Ok` placed, `Err(Ok(reason))` no room, `Err(Err(e))` failed.
    async fn fargate(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        size: FargateSize,
        before: &str,
    ) -> Result<(Route, String), Result<String, LaunchError>> {
        match self.ecs.run_on_fargate(job, launch, size).await {
            Ok(Placement::Placed { task_arn }) => Ok((Route::Fargate, task_arn)),
            Ok(Placement::NoRoom { reason }) if before.is_empty() => {
                Err(Ok(format!("Fargate has no room ({reason})")))
            }
            Ok(Placement::NoRoom { reason }) => {
                Err(Ok(format!("{before}; Fargate has no room ({reason})")))
            }
            Err(e) => Err(Err(e)),
        }
    }

    async fn dispatched(
        &self,
        job: &ResolvedJob,
        route: Route,
        launch: LaunchNumber,
        task_arn: Option<String>,
        request_id: Option<String>,
    ) -> Outcome {
        let id = task_arn
            .clone()
            .or_else(|| request_id.clone())
            .unwrap_or_default();
        let now = now_ms();
        let change_task = task_arn.clone();
        let change = Change {
            route: Some(route),
            task_arn,
            request_id,
            add_attempt: true,
            expect_launch: Some(launch),
            deadline: Some(now / 1000 + i64::from(job.timeout_seconds)),
            ..Change::default()
        };
        match self
            .store
            .transition(&job.job_id, JobStatus::Dispatched, change, now)
            .await
        {
            Ok(Changed::Applied) => Outcome::Dispatched { route, launch, id },
            // The job moved on while it was launched (it was cancelled): the
            // task it started must not run.
            Ok(Changed::Refused(current)) => {
                let status = current.map_or(JobStatus::Accepted, |r| r.status);
                if let (true, Some(task)) = (status.is_final(), &change_task)
                    && let Err(e) = self.ecs.stop(task, CANCELLED_REASON).await
                {
                    // Its RUNNING event stops it again.
                    tracing::warn!(job_id = job.job_id, task_arn = task, error = %e, "task of an ended job not stopped");
                }
                Outcome::Duplicate { status }
            }
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
            },
        }
    }

    async fn wait_for_capacity(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
        launch: LaunchNumber,
        reason: String,
    ) -> Outcome {
        let waits = receive_count(message).saturating_sub(1);
        let waited = Duration::from_millis(
            u64::try_from(now_ms().saturating_sub(sent_at_ms(message).unwrap_or_else(now_ms)))
                .unwrap_or(0),
        );
        if waited >= self.tuning.max_capacity_wait {
            let reason = format!(
                "no capacity within {} s: {reason}",
                self.tuning.max_capacity_wait.as_secs()
            );
            return self.fail(job, launch, reason).await;
        }
        let change = Change {
            reason: Some(reason.clone()),
            add_wait: true,
            expect_launch: Some(launch),
            ..Change::default()
        };
        match self
            .store
            .transition(&job.job_id, JobStatus::WaitingForCapacity, change, now_ms())
            .await
        {
            Ok(Changed::Applied) => {}
            Ok(Changed::Refused(current)) => {
                return Outcome::Duplicate {
                    status: current.map_or(JobStatus::Accepted, |r| r.status),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        }
        let backoff = Duration::from_secs(u64::from(capacity_backoff_seconds(waits)));
        self.set_visibility(message, backoff).await;
        Outcome::Waiting { backoff, reason }
    }

    async fn launch_failed(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        error: LaunchError,
    ) -> Outcome {
        match error {
            LaunchError::Retryable(e) => Outcome::Retry {
                reason: e.to_string(),
            },
            LaunchError::Permanent(reason) => self.fail(job, launch, reason).await,
        }
    }

    async fn fail(&self, job: &ResolvedJob, launch: LaunchNumber, reason: String) -> Outcome {
        let change = Change {
            reason: Some(reason.clone()),
            expect_launch: Some(launch),
            ..Change::default()
        };
        match self
            .store
            .transition(&job.job_id, JobStatus::Failed, change, now_ms())
            .await
        {
            Ok(Changed::Applied) => Outcome::Failed { reason },
            Ok(Changed::Refused(current)) => Outcome::Duplicate {
                status: current.map_or(JobStatus::Accepted, |r| r.status),
            },
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
            },
        }
    }

    /// Sets when the message comes back; without a queue URL the queue's
    /// own visibility timeout applies.
    async fn set_visibility(&self, message: &SqsMessage, after: Duration) {
        let (Some(queue), Some(handle)) = (&self.queue_url, &message.receipt_handle) else {
            return;
        };
        let seconds = i32::try_from(after.as_secs()).unwrap_or(i32::MAX);
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(handle)
            .visibility_timeout(seconds)
            .send()
            .await
        {
            tracing::warn!(error = %berth_aws::AwsError::from_sdk("sqs:ChangeMessageVisibility", e), "backoff not set");
        }
    }
}

/// The job id an invalid message can be recorded under: its own valid
/// `job_id`, or the message id when it names none. `None` when the body is
/// not a JSON object or its `job_id` is not valid.
pub fn usable_job_id(body: &str, message_id: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let object = value.as_object()?;
    let id = match object.get("job_id") {
        None | Some(serde_json::Value::Null) => message_id,
        Some(serde_json::Value::String(id)) => id,
        Some(_) => return None,
    };
    job::validate_job_id(id).ok()?;
    Some(id.to_owned())
}

/// The launch after which a job was put back on the queue, from the
/// message's attribute (`None` for a job's own message).
fn relaunch_after(message: &SqsMessage) -> Option<LaunchNumber> {
    message
        .message_attributes
        .get(RELAUNCH_ATTRIBUTE)?
        .string_value
        .as_deref()?
        .parse()
        .ok()
}

fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

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
        Outcome::Rejected { .. } => "Rejected",
        Outcome::DeadLettered { .. } => "DeadLettered",
        Outcome::Failed { .. } => "LaunchFailed",
        Outcome::Retry { .. } => "LaunchRetries",
        Outcome::Duplicate { .. } | Outcome::Ignored { .. } => return,
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
        Outcome::Dispatched { route, launch, id } => tracing::info!(
            job_id,
            message_id,
            decision,
            route = route.as_str(),
            launch,
            id = id.as_str(),
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
        | Outcome::Retry { reason }
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
