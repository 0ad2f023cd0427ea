//! A valid job: resolved against its definition, routed, recorded, then
//! launched exactly once per attempt: a Lambda invoke, or an ECS task on the
//! cluster's EC2 capacity and, when EC2 has no room, on Fargate Spot (on
//! Fargate when Fargate Spot has none) or Fargate; with no room anywhere,
//! the job waits for capacity.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use berth_aws::array::{self, Advanced};
use berth_aws::definitions::Lookup;
use berth_aws::dependencies::{self, Checked};
use berth_aws::ecs::{Placement, TaskChange};
use berth_aws::operations;
use berth_aws::queue::{ARRAY_CHILD_ATTRIBUTE, RELAUNCH_ATTRIBUTE};
use berth_aws::spending::SpendKey;
use berth_aws::store::{Change, Changed, Created, FIRST_LAUNCH, JobRecord, Rejection, now_ms};
use berth_aws::{AwsError, LaunchError, metrics};
use berth_core::dependency::{self, Decision as Awaited};
use berth_core::launch::{self, LaunchNumber, Recorded, Resume, capacity_backoff_seconds};
use berth_core::room::Ask;
use berth_core::routing::{self, Context, Decision, OnFargate, Plan};
use berth_core::scaling::Room;
use berth_core::spending;
use berth_core::stop::CANCELLED_REASON;
use berth_core::{JobRequest, JobStatus, ResolvedJob, Route, resolve};

use crate::{Driver, Outcome, receive_count, sent_at_ms};

/// How long after a job was sent a dependency it names may still be
/// unrecorded (its message not yet taken by the driver) before the job is
/// rejected.
pub const UNKNOWN_DEPENDENCY_GRACE: Duration = Duration::from_secs(300);

/// Where a launch on ECS left the job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Launched {
    /// A task was started.
    On { route: Route, task_arn: String },
    /// There was no room where the job may run.
    NoRoom { reason: String },
    /// The launch failed.
    Failed(LaunchError),
}

impl Launched {
    /// A RunTask's result on `route`; `before` says why an earlier route
    /// had no room, for a reason that tells both.
    fn of(route: Route, placed: Result<Placement, LaunchError>, before: Option<&str>) -> Self {
        // ECS's capacity, as people name it.
        let capacity = if route == Route::FargateSpot {
            "Fargate Spot"
        } else if route == Route::Fargate {
            "Fargate"
        } else {
            "EC2"
        };
        match placed {
            Ok(Placement::Placed { task_arn }) => Self::On { route, task_arn },
            Ok(Placement::NoRoom { reason }) => Self::NoRoom {
                reason: match before {
                    Some(before) => format!("{before}; {capacity} has no room ({reason})"),
                    None => format!("{capacity} has no room ({reason})"),
                },
            },
            Err(e) => Self::Failed(e),
        }
    }
}

impl Driver {
    /// What routing knows beside the job, for a job interrupted
    /// `interruptions` times so far.
    fn routing(&self, job: &ResolvedJob, interruptions: u32) -> Context<'_> {
        Context {
            prices: &self.prices,
            expected_seconds: job.expected_seconds.map(f64::from),
            interruptions,
            max_interruptions: self.policy.max_interruptions,
            fargate_spot: self.fargate_spot,
            ec2_types: self.ec2_types.as_deref(),
        }
    }

    /// A valid job message: resolve, route, record, launch.
    pub(crate) async fn valid(
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
        if message
            .message_attributes
            .contains_key(ARRAY_CHILD_ATTRIBUTE)
        {
            return self.child(message, request).await;
        }
        if let Some(after) = relaunch_after(message) {
            return self.relaunch(request, after, message).await;
        }
        let definition = match definition {
            Some(Lookup::Found(d)) => Some(&**d),
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
        let decision = match routing::route(&job, &self.routing(&job, 0)) {
            Ok(d) => d,
            Err(e) => {
                return self
                    .reject(message, &rejection(request, message_id, &e.to_string()))
                    .await;
            }
        };

        if !job.depends_on.is_empty() {
            match self.dependencies_now(message, &job).await {
                Ok(Awaited::Run) => {}
                Ok(decision) => return self.pending(message, &job, message_id, decision).await,
                Err(outcome) => return outcome,
            }
        }
        // A message received before (a job waiting, throttled, or whose
        // driver stopped) most likely has its record: a read finds it for
        // less than the conditional write would (in a burst, each throttled
        // job's message comes back several times).
        if crate::receive_count(message) > 1 {
            match self.store.get(&job.job_id).await {
                Ok(Some(record)) => return self.recorded(message, &record, Some(message_id)).await,
                Ok(None) => {}
                Err(e) => return Outcome::retry(e),
            }
        }
        match self.store.accept(&job, message_id, now_ms()).await {
            Ok(Created::New) if job.array.is_some() => self.advance_array(&job).await,
            Ok(Created::New) => {
                let job = launch::at_attempt(&job, 0);
                self.launch(message, &job, &decision, FIRST_LAUNCH).await
            }
            Ok(Created::Exists(record)) => self.recorded(message, &record, Some(message_id)).await,
            Err(e) => Outcome::retry(e),
        }
    }

    /// Where a new job's dependencies stand. One not recorded yet may be
    /// a job sent a moment before, whose message the driver has not taken
    /// yet: the message comes back for [`UNKNOWN_DEPENDENCY_GRACE`] after
    /// it was sent, and then the job is rejected.
    async fn dependencies_now(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
    ) -> Result<Awaited, Outcome> {
        let ids: Vec<&str> = job.depends_on.iter().map(|d| d.job_id.as_str()).collect();
        let statuses = self.store.statuses(&ids).await.map_err(Outcome::retry)?;
        let unknown: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !statuses.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            let grace = i64::try_from(UNKNOWN_DEPENDENCY_GRACE.as_millis()).unwrap_or(i64::MAX);
            let sent = sent_at_ms(message).unwrap_or_else(now_ms);
            let named = unknown.join(", ");
            return Err(if now_ms() - sent < grace {
                Outcome::Retry {
                    reason: format!("its dependencies {named} are not recorded yet"),
                }
            } else {
                let reason = format!(
                    "`depends_on`: no job {named} is recorded ({} s after the job was sent)",
                    UNKNOWN_DEPENDENCY_GRACE.as_secs()
                );
                self.reject_resolved(message, job, &reason).await
            });
        }
        if let Some(reason) = self.not_matching(job).await.map_err(Outcome::retry)? {
            return Err(self.reject_resolved(message, job, &reason).await);
        }
        Ok(dependency::decide(&job.depends_on, |id| {
            statuses.get(id).copied()
        }))
    }

    /// Rejects resolved `job`, its message's, with `reason`.
    async fn reject_resolved(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
        reason: &str,
    ) -> Outcome {
        let rejection = Rejection {
            job_id: &job.job_id,
            message_id: message.message_id.as_deref().unwrap_or(""),
            reason,
            definition: Some(&job.definition),
            raw_body: None,
        };
        self.reject(message, &rejection).await
    }

    /// Why array `job` cannot follow an array it names `n_to_n` child by
    /// child: that job is no array, or not one of the same size.
    async fn not_matching(&self, job: &ResolvedJob) -> Result<Option<String>, AwsError> {
        let size = job.array.map_or(0, |a| a.size);
        for d in dependency::each_of(&job.depends_on) {
            let upstream = self.store.get(&d.job_id).await?;
            let theirs = upstream
                .as_ref()
                .and_then(|r| r.job.as_ref())
                .and_then(|j| j.array)
                .map(|a| a.size);
            if theirs != Some(size) {
                let what = theirs.map_or("no array".to_owned(), |n| format!("an array of {n}"));
                return Ok(Some(format!(
                    "`depends_on`: `{}` is `n_to_n`, which needs an array of {size} as this one is; it is {what}",
                    d.job_id
                )));
            }
        }
        Ok(None)
    }

    /// Records a job whose dependencies are not all met `PENDING`, ties it
    /// to those it waits for, and moves it on if one ended meanwhile.
    async fn pending(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
        message_id: &str,
        decision: Awaited,
    ) -> Outcome {
        let reason = match &decision {
            Awaited::Wait(ids) => dependency::waiting_reason(ids),
            Awaited::Fail(reason) => reason.clone(),
            Awaited::Run => String::new(),
        };
        match self
            .store
            .accept_pending(job, message_id, &reason, now_ms())
            .await
        {
            Ok(Created::New) => {}
            Ok(Created::Exists(record)) => {
                return self.recorded(message, &record, Some(message_id)).await;
            }
            Err(e) => return Outcome::retry(e),
        }
        let waiting = match decision {
            Awaited::Wait(ids) => ids,
            _ => Vec::new(),
        };
        self.tie(message, &job.job_id, &waiting).await
    }

    /// Ties a `PENDING` job to `waiting` (see `berth_aws::dependencies`)
    /// and moves it on as its dependencies now stand: launched here once
    /// they are met.
    async fn tie(&self, message: &SqsMessage, job_id: &str, waiting: &[String]) -> Outcome {
        match dependencies::tie(&self.store, None, job_id, waiting).await {
            Ok(Checked::Waiting(waiting)) => Outcome::Pending { waiting },
            Ok(Checked::Failed(reason)) => Outcome::Failed { reason },
            Ok(Checked::NotPending(Some(status))) => Outcome::Duplicate { status },
            Ok(Checked::NotPending(None)) => gone(job_id),
            Ok(Checked::Released | Checked::Runnable) => {
                match dependencies::release(&self.store, job_id).await {
                    Ok(Changed::Applied) => {}
                    written => return moved_on(written, job_id).unwrap_or_else(|| gone(job_id)),
                }
                match self.store.get(job_id).await {
                    Ok(Some(record)) => self.recorded(message, &record, None).await,
                    Ok(None) => gone(job_id),
                    Err(e) => Outcome::retry(e),
                }
            }
            Err(e) => Outcome::retry(e),
        }
    }

    /// Releases the children of array `job` that its cap allows, at most
    /// [`array::DELIVERY_BUDGET`]; past that, its message goes back on the
    /// queue for the rest.
    async fn advance_array(&self, job: &ResolvedJob) -> Outcome {
        if let Err(e) = self.follow(job).await {
            return Outcome::retry(e);
        }
        let advanced = array::advance(
            &self.store,
            self.queue.as_ref(),
            &job.job_id,
            array::DELIVERY_BUDGET,
        )
        .await;
        match advanced {
            Ok(Advanced::Released(released)) => Outcome::Array {
                released,
                more: false,
            },
            Ok(Advanced::Budget(released)) => {
                let Some(queue) = &self.queue else {
                    return Outcome::Retry {
                        reason: "more children to release, and no queue to come back on".into(),
                    };
                };
                match queue.requeue(&job.job_id, &job.definition, 0, 0).await {
                    Ok(()) => Outcome::Array {
                        released,
                        more: true,
                    },
                    Err(e) => Outcome::retry(e),
                }
            }
            Ok(Advanced::Ended(status)) => {
                dependencies::after_end(&self.store, self.queue.as_ref(), &job.job_id).await;
                Outcome::Duplicate { status }
            }
            Ok(Advanced::Nothing) => Outcome::Ignored {
                reason: format!("array `{}` has nothing to release", job.job_id),
            },
            Err(e) => Outcome::retry(e),
        }
    }

    /// Before an array's advance: an array bound to others child by child
    /// is named in each of theirs `n_to_n_dependents` (before it reads
    /// their children's ends, so that no end goes unseen by both); then it
    /// is caught up with its children ([`array::catch_up`]).
    async fn follow(&self, job: &ResolvedJob) -> Result<(), AwsError> {
        for d in dependency::each_of(&job.depends_on) {
            self.store
                .add_each_dependent(&d.job_id, &job.job_id)
                .await?;
        }
        let caught = array::catch_up(&self.store, self.queue.as_ref(), &job.job_id).await?;
        if caught != array::CaughtUp::default() {
            tracing::warn!(
                job_id = job.job_id,
                recounted = caught.recounted,
                resent = caught.resent,
                "children's ends counted, or claimed children sent, that were not"
            );
        }
        Ok(())
    }

    /// An array's child, released by its parent: recorded as the parent's
    /// job with its index (once, whatever repeats the message), then
    /// launched as any job.
    async fn child(&self, message: &SqsMessage, request: &JobRequest) -> Outcome {
        let message_id = message.message_id.as_deref().unwrap_or("");
        let Some((parent_id, index)) = array::parent_of_child(&request.job_id) else {
            return Outcome::Ignored {
                reason: format!("`{}` is not an array's child", request.job_id),
            };
        };
        match self.store.get(&request.job_id).await {
            Ok(Some(record)) => return self.recorded(message, &record, Some(message_id)).await,
            Ok(None) => {}
            Err(e) => return Outcome::retry(e),
        }
        let parent = match self.store.get(parent_id).await {
            Ok(Some(parent)) => parent,
            Ok(None) => return gone(parent_id),
            Err(e) => return Outcome::retry(e),
        };
        let Some(job) = parent
            .job
            .as_ref()
            .filter(|j| j.array.is_some_and(|a| index < a.size))
        else {
            return Outcome::Ignored {
                reason: format!("`{parent_id}` has no child {index}"),
            };
        };
        if parent.status.is_final() {
            return Outcome::Ignored {
                reason: format!("its array `{parent_id}` has ended {}", parent.status),
            };
        }
        let child = berth_core::array::child_job(job, index);
        let decision = routing::route(&child, &self.routing(&child, 0));
        match self.store.accept(&child, message_id, now_ms()).await {
            Ok(Created::New) => {}
            Ok(Created::Exists(record)) => {
                return self.recorded(message, &record, Some(message_id)).await;
            }
            Err(e) => return Outcome::retry(e),
        }
        // A cancel of the array that listed its children before this one
        // was recorded: it is cancelled here instead.
        if let Ok(Some(now)) = self.store.get(parent_id).await
            && now.status == JobStatus::Cancelled
        {
            let cancelled = operations::cancel(
                &self.store,
                &self.ecs,
                self.queue.as_ref(),
                &child.job_id,
                Some("its array was cancelled"),
            )
            .await;
            return match cancelled {
                Ok(_) => Outcome::Duplicate {
                    status: JobStatus::Cancelled,
                },
                Err(e) => Outcome::retry(e),
            };
        }
        let child = launch::at_attempt(&child, 0);
        match decision {
            Ok(decision) => self.launch(message, &child, &decision, FIRST_LAUNCH).await,
            Err(e) => self.fail(&child, FIRST_LAUNCH, e.to_string()).await,
        }
    }

    /// Another attempt of a recorded job, put back on the queue after
    /// launch `after` ended (see `berth_aws::queue`).
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
            Err(e) => return Outcome::retry(e),
        };
        if record.job.is_none() {
            return Outcome::Ignored {
                reason: format!("re-queued job `{}` has no recorded job", request.job_id),
            };
        }
        if record.launch < after {
            return Outcome::Ignored {
                reason: format!(
                    "re-queued after launch {after}, but job `{}` is at launch {}",
                    request.job_id, record.launch
                ),
            };
        }
        self.recorded(message, &record, None).await
    }

    /// A delivery of a job already recorded: it runs as it was recorded,
    /// not as its definition reads now (edited or deleted meanwhile), when
    /// this delivery may launch it. `message_id` is the delivery's message
    /// when it is a job's own message, `None` for a re-queued attempt.
    pub(crate) async fn recorded(
        &self,
        message: &SqsMessage,
        record: &JobRecord,
        message_id: Option<&str>,
    ) -> Outcome {
        let Some(job) = &record.job else {
            // A rejection: it has ended.
            return Outcome::Duplicate {
                status: record.status,
            };
        };
        if record.status == JobStatus::Pending {
            // Its message again (the driver stopped before it was done with
            // it): tie it again, which adds nothing twice.
            let ids: Vec<String> = job
                .depends_on
                .iter()
                .filter(|d| d.kind.is_job())
                .map(|d| d.job_id.clone())
                .collect();
            return Box::pin(self.tie(message, &record.job_id, &ids)).await;
        }
        if job.array.is_some() {
            return self.advance_array(job).await;
        }
        let decision = match routing::route(job, &self.routing(job, record.interruptions)) {
            Ok(decision) => decision,
            Err(e) => return self.fail(job, record.launch, e.to_string()).await,
        };
        match self.resume(job, &decision.plan, message_id, record).await {
            Ok(launch) => {
                let job = launch::at_attempt(job, record.failures);
                self.launch(message, &job, &decision, launch).await
            }
            Err(outcome) => outcome,
        }
    }

    /// A job already recorded: decide (berth-core's [`launch::resume`])
    /// whether this delivery launches it, and with which launch number.
    /// `message_id` is the delivery's message when it is the job's own
    /// message, `None` for a re-queued attempt.
    async fn resume(
        &self,
        job: &ResolvedJob,
        plan: &Plan,
        message_id: Option<&str>,
        record: &JobRecord,
    ) -> Result<LaunchNumber, Outcome> {
        let recorded = Recorded {
            status: record.status,
            // Another message with the same job id: the job id is the
            // idempotency key, the first one stands.
            own_message: message_id.is_none() || record.message_id.as_deref() == message_id,
            claimed_at: record.claimed_at,
        };
        let lease = i64::try_from(self.tuning.claim_lease.as_millis()).unwrap_or(i64::MAX);
        let on_ecs = !matches!(plan, Plan::Lambda { .. });
        match launch::resume(&recorded, now_ms(), lease, on_ecs) {
            Resume::Duplicate => {
                return Err(Outcome::Duplicate {
                    status: record.status,
                });
            }
            Resume::InProgress => {
                return Err(Outcome::Retry {
                    reason: format!("launch {} in progress", record.launch),
                });
            }
            Resume::FindTask => match self.ecs.find_task(&job.job_id, record.launch).await {
                Ok(Some(task)) => return Err(self.taken_over(job, record.launch, &task).await),
                // None listed, which may be ListTasks lagging a task just
                // started: the launch is made again under its own number, so
                // its RunTask carries the same client token, and ECS answers
                // with the task it started, if it did, not a second one.
                Ok(None) => {
                    return match self
                        .store
                        .reclaim_launch(&job.job_id, record.launch, record.claimed_at, now_ms())
                        .await
                    {
                        Ok(Changed::Applied) => Ok(record.launch),
                        Ok(Changed::Refused(Some(r))) if r.status != JobStatus::Accepted => {
                            Err(Outcome::Duplicate { status: r.status })
                        }
                        Ok(Changed::Refused(Some(_))) => Err(Outcome::Retry {
                            reason: "another delivery took the launch over".into(),
                        }),
                        Ok(Changed::Refused(None)) => Err(gone(&job.job_id)),
                        Err(e) => Err(Outcome::retry(e)),
                    };
                }
                Err(berth_aws::LaunchError::Retryable(e)) => return Err(Outcome::retry(e)),
                Err(e @ berth_aws::LaunchError::Permanent(_)) => {
                    return Err(Outcome::Retry {
                        reason: e.to_string(),
                    });
                }
            },
            Resume::Claim => {}
        }
        match self
            .store
            .claim_launch(&job.job_id, record.launch, now_ms())
            .await
        {
            Ok(Changed::Applied) => Ok(record.launch + 1),
            Ok(Changed::Refused(Some(r)))
                if r.status.is_final()
                    || r.status == JobStatus::Dispatched
                    || r.status == JobStatus::Running =>
            {
                Err(Outcome::Duplicate { status: r.status })
            }
            Ok(Changed::Refused(Some(_))) => Err(Outcome::Retry {
                reason: "another delivery claimed the launch".into(),
            }),
            Ok(Changed::Refused(None)) => Err(gone(&job.job_id)),
            Err(e) => Err(Outcome::retry(e)),
        }
    }

    /// A launch taken over had started `task`: record it, and when the task
    /// has stopped meanwhile, give the job its end as its STOPPED event
    /// would have (the event came before the launch was recorded).
    async fn taken_over(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        task: &TaskChange,
    ) -> Outcome {
        let why = format!(
            "a launch taken over had started its task ({})",
            task.last_status
        );
        let arn = Some(task.task_arn.clone());
        let dispatched = self
            .dispatched(job, task.route(), launch, arn, None, why)
            .await;
        if !matches!(dispatched, Outcome::Dispatched { .. }) || task.last_status != "STOPPED" {
            return dispatched;
        }
        let ended = match self.store.get(&job.job_id).await {
            Ok(Some(record)) => {
                let queue = self.queue.as_ref();
                let definitions = Some(&self.definitions);
                operations::end_task(
                    &self.store,
                    queue,
                    definitions,
                    &record,
                    task,
                    launch,
                    &self.policy,
                )
                .await
            }
            Ok(None) => return gone(&job.job_id),
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            // Recorded as dispatched: the sweep gives the job its task's
            // end once the record has been quiet for a minute.
            tracing::warn!(job_id = job.job_id, error = %e, "the stopped task's end is left to the sweep");
        }
        dispatched
    }

    async fn launch(
        &self,
        message: &SqsMessage,
        job: &ResolvedJob,
        decision: &Decision,
        launch: LaunchNumber,
    ) -> Outcome {
        if let Some(limit) = job.daily_limit_usd {
            match self.over_limit(job, launch, limit).await {
                Ok(None) => {}
                Ok(Some(held)) => return held,
                Err(e) => return Outcome::retry(e),
            }
        }
        let why = decision.reason.clone();
        let launched = match &decision.plan {
            Plan::Lambda { function } => {
                return match self.lambda.invoke(function, job, launch).await {
                    Ok(request_id) => {
                        self.dispatched(job, Route::Lambda, launch, None, request_id, why)
                            .await
                    }
                    Err(e) => self.launch_failed(job, launch, e).await,
                };
            }
            Plan::Ec2 { fargate_fallback } => {
                let need = Room::new(job.cpu, job.memory, job.gpu);
                // A job that can run only on EC2 always asks.
                let ask = match fargate_fallback {
                    Some(_) => self.remember_room(|m, now| m.ask(need, now)),
                    None => Ask::Ec2,
                };
                let ec2 = match ask {
                    Ask::Ec2 => self.ec2(job, launch, need).await,
                    Ask::NoRoom => {
                        metrics::count("StraightToFargate", None);
                        Launched::NoRoom {
                            reason: "EC2 had no room for it a moment ago".into(),
                        }
                    }
                };
                match (ec2, fargate_fallback) {
                    (Launched::NoRoom { reason }, Some(on)) => {
                        let fargate = self.fargate(job, launch, *on, Some(&reason)).await;
                        if let Launched::On { .. } = fargate {
                            metrics::count("FargateFallbacks", None);
                        }
                        fargate
                    }
                    (Launched::NoRoom { reason }, None) => Launched::NoRoom {
                        reason: format!("{reason} and the job cannot run on Fargate"),
                    },
                    (launched, _) => launched,
                }
            }
            Plan::Fargate(on) => self.fargate(job, launch, *on, None).await,
        };
        match launched {
            Launched::On { route, task_arn } => {
                self.dispatched(job, route, launch, Some(task_arn), None, why)
                    .await
            }
            Launched::NoRoom { reason } => {
                self.wait_for_capacity(message, job, launch, reason).await
            }
            Launched::Failed(e) => self.launch_failed(job, launch, e).await,
        }
    }

    /// Whether launch `launch` of `job` waits for the next day, its
    /// definition having spent its limit of the day: then it is held
    /// (`Some`, what became of it).
    async fn over_limit(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        limit: f64,
    ) -> Result<Option<Outcome>, AwsError> {
        let now = now_ms();
        let day = self.spending_day;
        let key = SpendKey {
            definition: job.definition.clone(),
            day_start_ms: day.start(now),
        };
        let spent = self.store.spent(&key).await?;
        if !spending::reached(Some(limit), spent) {
            return Ok(None);
        }
        let reason = spending::held_reason(limit, spent, &day, now);
        let until = day.next_start(now) - day.offset_ms;
        let held = self
            .store
            .hold(&job.job_id, launch, &reason, until, now)
            .await;
        Ok(Some(
            moved_on(held, &job.job_id).unwrap_or(Outcome::Held { until, reason }),
        ))
    }

    /// A launch on the cluster's EC2 capacity; its answer is remembered
    /// (berth-core's `room`).
    async fn ec2(&self, job: &ResolvedJob, launch: LaunchNumber, need: Room) -> Launched {
        let placed = self.ecs.run_on_ec2(job, launch).await;
        match &placed {
            Ok(Placement::Placed { .. }) => self.remember_room(|m, _| m.saw_room()),
            Ok(Placement::NoRoom { reason }) => {
                let no_instances = reason == berth_aws::ecs::NO_INSTANCES;
                self.remember_room(|m, now| m.saw_no_room(need, no_instances, now));
            }
            Err(_) => {}
        }
        Launched::of(Route::Ec2, placed, None)
    }

    /// A launch on Fargate as `on` says. Fargate Spot with no capacity goes
    /// on to Fargate on demand at once: ECS has no such fallback of its own.
    async fn fargate(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        on: OnFargate,
        before: Option<&str>,
    ) -> Launched {
        let placed = self.ecs.run_on_fargate(job, launch, on).await;
        let launched = Launched::of(on.route(), placed, before);
        match launched {
            Launched::NoRoom { reason } if on.spot => {
                metrics::count("FargateSpotShortfalls", None);
                let on_demand = OnFargate { spot: false, ..on };
                let placed = self.ecs.run_on_fargate(job, launch, on_demand).await;
                Launched::of(Route::Fargate, placed, Some(&reason))
            }
            launched => launched,
        }
    }

    async fn dispatched(
        &self,
        job: &ResolvedJob,
        route: Route,
        launch: LaunchNumber,
        task_arn: Option<String>,
        request_id: Option<String>,
        why: String,
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
            // Its time counts from its start: until then, its start allowance.
            deadline: Some(launch::start_deadline(
                route,
                job.timeout_seconds,
                now / 1000,
            )),
            ..Change::default()
        };
        match self
            .store
            .transition(&job.job_id, JobStatus::Dispatched, change, now)
            .await
        {
            Ok(Changed::Applied) => Outcome::Dispatched {
                route,
                launch,
                id,
                why,
            },
            // The job moved on while it was launched (it was cancelled): the
            // task it started must not run.
            Ok(Changed::Refused(Some(current))) => {
                if let (true, Some(task)) = (current.status.is_final(), &change_task)
                    && let Err(e) = self.ecs.stop(task, CANCELLED_REASON).await
                {
                    // Its RUNNING event stops it again.
                    tracing::warn!(job_id = job.job_id, task_arn = task, error = %e, "task of an ended job not stopped");
                }
                Outcome::Duplicate {
                    status: current.status,
                }
            }
            Ok(Changed::Refused(None)) => gone(&job.job_id),
            Err(e) => Outcome::retry(e),
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
        let backoff = Duration::from_secs(u64::from(capacity_backoff_seconds(waits)));
        let now = now_ms();
        let change = Change {
            reason: Some(reason.clone()),
            add_wait: true,
            expect_launch: Some(launch),
            next_try_at: Some(now + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX)),
            // Room that appears before the backoff ends releases the job
            // (ecs-runner, on the container instance's event).
            receipt: message.receipt_handle.clone(),
            ..Change::default()
        };
        let written = self
            .store
            .transition(&job.job_id, JobStatus::WaitingForCapacity, change, now)
            .await;
        if let Some(outcome) = moved_on(written, &job.job_id) {
            return outcome;
        }
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
            LaunchError::Retryable(e) => {
                // The next delivery takes the launch over at once (looking
                // for its task first, should ECS have started one after all).
                let reason = format!("launch {launch}: {e}");
                let expired = self
                    .store
                    .expire_claim(&job.job_id, launch, &reason, now_ms())
                    .await;
                if let Err(err) = expired {
                    tracing::warn!(job_id = job.job_id, error = %err, "launch claim kept until its lease ends");
                }
                if e.throttled() {
                    Outcome::Throttled { reason }
                } else {
                    Outcome::LaunchRetry { reason }
                }
            }
            LaunchError::Permanent(reason) => self.fail(job, launch, reason).await,
        }
    }

    async fn fail(&self, job: &ResolvedJob, launch: LaunchNumber, reason: String) -> Outcome {
        let change = Change {
            reason: Some(reason.clone()),
            expect_launch: Some(launch),
            ..Change::default()
        };
        let written = self
            .store
            .transition(&job.job_id, JobStatus::Failed, change, now_ms())
            .await;
        if let Some(outcome) = moved_on(written, &job.job_id) {
            return outcome;
        }
        dependencies::after_end(&self.store, self.queue.as_ref(), &job.job_id).await;
        Outcome::Failed { reason }
    }
}

/// What a refused or failed write of the record of `job_id` comes to
/// (`None`: it was written): the job had moved on (a duplicate, in the
/// status it is in), its record is gone, or the write may pass on retry.
fn moved_on(written: Result<Changed, AwsError>, job_id: &str) -> Option<Outcome> {
    match written {
        Ok(Changed::Applied) => None,
        Ok(Changed::Refused(Some(current))) => Some(Outcome::Duplicate {
            status: current.status,
        }),
        Ok(Changed::Refused(None)) => Some(gone(job_id)),
        Err(e) => Some(Outcome::retry(e)),
    }
}

/// A record that vanished between the driver's read and its write.
fn gone(job_id: &str) -> Outcome {
    Outcome::Ignored {
        reason: format!("the record of job `{job_id}` is gone"),
    }
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

#[cfg(test)]
mod tests;
