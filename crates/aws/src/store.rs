//! The job store: one DynamoDB item per job (partition key `job_id`),
//! shared by the driver, ecs-runner and the Lambda task runtime.
//!
//! Every change is a conditional write from the states berth-core's state
//! machine allows it to come from, so a duplicate delivery or a late event
//! can never launch a job twice or move a finished job backwards. Launches
//! are claimed before they are made (`launch` counts the claims), so two
//! deliveries of one message cannot both launch it.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use berth_core::attempt::Settled;
use berth_core::launch::LaunchNumber;
use berth_core::text::cut;
use berth_core::{JobStatus, ResolvedJob, Route};

pub use crate::cost::RecordedCost;
use crate::cost::recorded_costs;
pub use crate::spot_prices::{ObservedSpot, SPOT_PRICES_KEY};
pub use berth_core::attempt::AttemptEnd;

use crate::AwsError;

mod batch_get;
mod history;
mod page;
use history::{history_entry, history_value};
pub use page::PageOf;

type Item = HashMap<String, AttributeValue>;

/// Attribute names of a job item.
pub mod attr {
    pub const JOB_ID: &str = "job_id";
    pub const STATUS: &str = "status";
    pub const MESSAGE_ID: &str = "message_id";
    pub const DEFINITION: &str = "definition";
    pub const JOB: &str = "job";
    pub const RAW_BODY: &str = "raw_body";
    pub const ROUTE: &str = "route";
    pub const LAUNCH: &str = "launch";
    pub const CLAIMED_AT: &str = "claimed_at";
    pub const ATTEMPTS: &str = "attempts";
    pub const MAX_ATTEMPTS: &str = "max_attempts";
    pub const WAITS: &str = "waits";
    pub const TASK_ARN: &str = "task_arn";
    pub const REQUEST_ID: &str = "request_id";
    pub const REASON: &str = "reason";
    pub const EXIT_CODE: &str = "exit_code";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const DISPATCHED_AT: &str = "dispatched_at";
    pub const DEADLINE: &str = "deadline";
    pub const FAILURES: &str = "failures";
    pub const INTERRUPTIONS: &str = "interruptions";
    pub const HISTORY: &str = "history";
    pub const NEXT_TRY_AT: &str = "next_try_at";
    pub const WAITING_SINCE: &str = "waiting_since";
    /// The receipt handle of the delivery a job waiting for capacity holds
    /// back: making it visible releases the job at once.
    pub const RECEIPT: &str = "receipt";
    /// Each attempt's cost, by launch number ([`crate::cost`]).
    pub const COSTS: &str = "costs";
    /// The sum of `costs`, USD.
    pub const COST_USD: &str = "cost_usd";
    /// Times the job was held for its definition's spending limit.
    pub const HOLDS: &str = "holds";
}

/// The jobs table's index by status (partition key `status`, sort key
/// `updated_at`): the timeout sweep and listings read it.
pub const STATUS_INDEX: &str = "by-status";

/// The attributes the status index carries besides its keys and the
/// table's: what a listing and the sweep need, not the job itself.
pub const STATUS_INDEX_ATTRIBUTES: [&str; 9] = [
    attr::ROUTE,
    attr::LAUNCH,
    attr::TASK_ARN,
    attr::REQUEST_ID,
    attr::DEADLINE,
    attr::DEFINITION,
    attr::REASON,
    attr::ATTEMPTS,
    attr::CREATED_AT,
];

/// Raw bodies kept with a rejection are cut to this many bytes, well inside
/// DynamoDB's 400 KB item limit.
pub const RAW_BODY_MAX_BYTES: usize = 64 * 1024;

/// The launch number [`JobStore::accept`] claims.
pub const FIRST_LAUNCH: LaunchNumber = 1;

/// The jobs that ask the cluster for EC2 room it lacks
/// ([`JobStore::ec2_demand`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ec2Demand {
    /// Waiting for capacity (they can run nowhere else).
    pub waiting: Vec<ResolvedJob>,
    /// On Fargate because EC2 had no room, lately.
    pub fell_back: Vec<ResolvedJob>,
}

/// A job waiting for capacity, and the receipt handle of the delivery it
/// waits on.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub job: ResolvedJob,
    pub receipt: Option<String>,
}

/// A job as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job_id: String,
    pub status: JobStatus,
    /// The SQS message that created the record.
    pub message_id: Option<String>,
    pub definition: Option<String>,
    /// The job as it runs (absent on rejections).
    pub job: Option<ResolvedJob>,
    pub raw_body: Option<String>,
    pub route: Option<Route>,
    /// Launches claimed so far (each try to place the job, also one that
    /// found no room).
    pub launch: LaunchNumber,
    /// When the last launch was claimed, in epoch milliseconds.
    pub claimed_at: Option<i64>,
    /// Launches that started the job (a task placed, an invoke accepted).
    pub attempts: u32,
    pub max_attempts: Option<u32>,
    /// Times the job found no capacity and waited.
    pub waits: u32,
    pub task_arn: Option<String>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub dispatched_at: Option<i64>,
    /// When a running job is past its timeout, in epoch seconds.
    pub deadline: Option<i64>,
    /// Attempts that failed on the job's own account (they count against
    /// `max_attempts`).
    pub failures: u32,
    /// Attempts the infrastructure interrupted (they do not).
    pub interruptions: u32,
    /// How each attempt ended, oldest first.
    pub history: Vec<AttemptEnd>,
    /// When a job waiting (`ACCEPTED` after an attempt, or
    /// `WAITING_FOR_CAPACITY`) is tried next, in epoch milliseconds.
    pub next_try_at: Option<i64>,
    /// Since when a `WAITING_FOR_CAPACITY` job has waited, in epoch
    /// milliseconds (its first wait in a row).
    pub waiting_since: Option<i64>,
    /// What each attempt cost, oldest first, as each was recorded.
    pub costs: Vec<RecordedCost>,
    /// Their sum, USD (none before the first).
    pub cost_usd: Option<f64>,
    /// Times it was held for its definition's spending limit.
    pub holds: u32,
    /// An array's children, as it counts them (`None` for any other job).
    pub children: Option<berth_core::array::Children>,
}

/// A job as the status index holds it ([`STATUS_INDEX_ATTRIBUTES`]): what
/// a listing and the sweep read, not the job itself.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub job_id: String,
    pub status: JobStatus,
    pub definition: Option<String>,
    pub route: Option<Route>,
    pub launch: LaunchNumber,
    pub attempts: u32,
    pub task_arn: Option<String>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub deadline: Option<i64>,
    /// The route of each attempt, oldest first (a listing from the status
    /// index knows only the last).
    pub routes: Vec<Route>,
    /// As [`JobRecord::next_try_at`] (not in a listing from the index).
    pub next_try_at: Option<i64>,
    /// As [`JobRecord::waiting_since`] (not in a listing from the index).
    pub waiting_since: Option<i64>,
    /// As [`JobRecord::cost_usd`] (not in the index:
    /// [`JobStore::costs_of`] reads it).
    pub cost_usd: Option<f64>,
}

impl JobRecord {
    /// The route of each attempt, oldest first: those that ended, then the
    /// one under way.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes: Vec<Route> = self.history.iter().filter_map(|e| e.route).collect();
        let under_way = matches!(self.status, JobStatus::Dispatched | JobStatus::Running)
            && !self.history.iter().any(|e| e.launch == self.launch);
        if let (true, Some(route)) = (under_way, self.route) {
            routes.push(route);
        }
        routes
    }
}

impl From<JobRecord> for JobSummary {
    fn from(r: JobRecord) -> Self {
        let mut routes = r.routes();
        // Read from the status index, which keeps no history: the last.
        if routes.is_empty() {
            routes.extend(r.route);
        }
        Self {
            routes,
            next_try_at: r.next_try_at,
            waiting_since: r.waiting_since,
            cost_usd: r.cost_usd,
            job_id: r.job_id,
            status: r.status,
            definition: r.definition,
            route: r.route,
            launch: r.launch,
            attempts: r.attempts,
            task_arn: r.task_arn,
            request_id: r.request_id,
            reason: r.reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deadline: r.deadline,
        }
    }
}

/// The outcome of a write that creates a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The record was written as asked.
    New,
    /// A record with that job id exists already; here it is.
    Exists(Box<JobRecord>),
}

/// The outcome of a conditional change.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// The change was written as asked.
    Applied,
    /// The record was not in a state the change may come from (or its
    /// launch was not the one expected); here it is as it is.
    Refused(Option<Box<JobRecord>>),
}

/// A change of status with what comes with it. Fields left `None` are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub route: Option<Route>,
    pub task_arn: Option<String>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub deadline: Option<i64>,
    /// Count a started attempt.
    pub add_attempt: bool,
    /// Count a wait for capacity.
    pub add_wait: bool,
    /// Count a failure of the job itself.
    pub add_failure: bool,
    /// Count an interruption by the infrastructure.
    pub add_interruption: bool,
    /// Release the launch claim: the launch ended and the next one is free
    /// to be claimed by whichever delivery comes first.
    pub release_claim: bool,
    /// Append how an attempt ended to the history.
    pub ended: Option<AttemptEnd>,
    /// When the job is tried next (epoch milliseconds), for a job left
    /// waiting; any earlier one is cleared.
    pub next_try_at: Option<i64>,
    /// Apply only while the record's launch number is this one.
    pub expect_launch: Option<LaunchNumber>,
    /// Apply only from this status (one of those the new status may come
    /// from), not from any of them.
    pub expect_status: Option<JobStatus>,
    /// The receipt handle of the delivery the job waits on.
    pub receipt: Option<String>,
}

/// What a rejected message leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub job_id: &'a str,
    pub message_id: &'a str,
    pub reason: &'a str,
    pub definition: Option<&'a str>,
    /// The body, kept where it could not be read as a job.
    pub raw_body: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct JobStore {
    pub(crate) ddb: Client,
    pub(crate) table: String,
}

impl JobStore {
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
        }
    }

    /// The record of `job_id`, read consistently.
    pub async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item.as_ref().and_then(record))
    }

    /// Records a valid job as `ACCEPTED`, with its first launch
    /// ([`FIRST_LAUNCH`]) claimed (an array: at launch 0, none claimed).
    pub async fn accept(
        &self,
        job: &ResolvedJob,
        message_id: &str,
        now_ms: i64,
    ) -> Result<Created, AwsError> {
        self.accept_as(job, message_id, JobStatus::Accepted, None, now_ms)
            .await
    }

    /// Records a valid job in `status`: `ACCEPTED` with its first launch
    /// claimed, or `PENDING` at launch 0 with nothing claimed.
    pub(crate) async fn accept_as(
        &self,
        job: &ResolvedJob,
        message_id: &str,
        status: JobStatus,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<Created, AwsError> {
        let json = serde_json::to_string(job).map_err(|e| AwsError {
            operation: "dynamodb:PutItem",
            code: None,
            message: format!("cannot serialise job: {e}"),
            retryable: false,
        })?;
        let mut item = base_item(&job.job_id, status, message_id, now_ms);
        item.insert(attr::DEFINITION.into(), s(&job.definition));
        item.insert(attr::JOB.into(), s(&json));
        item.insert(attr::MAX_ATTEMPTS.into(), n(job.max_attempts));
        // A job that waits, or an array, which never launches itself.
        if status == JobStatus::Pending || job.array.is_some() {
            item.insert(attr::LAUNCH.into(), n(0));
        } else {
            item.insert(attr::LAUNCH.into(), n(FIRST_LAUNCH));
            item.insert(attr::CLAIMED_AT.into(), n(now_ms));
        }
        if let Some(reason) = reason {
            item.insert(attr::REASON.into(), s(reason));
        }
        item.insert(attr::COSTS.into(), AttributeValue::M(HashMap::new()));
        self.create(item).await
    }

    /// Records a message that will not run as `REJECTED`, with the reason.
    pub async fn reject(&self, r: &Rejection<'_>, now_ms: i64) -> Result<Created, AwsError> {
        let mut item = base_item(r.job_id, JobStatus::Rejected, r.message_id, now_ms);
        item.insert(attr::REASON.into(), s(r.reason));
        if let Some(d) = r.definition {
            item.insert(attr::DEFINITION.into(), s(d));
        }
        if let Some(body) = r.raw_body {
            item.insert(attr::RAW_BODY.into(), s(cut(body, RAW_BODY_MAX_BYTES)));
        }
        self.create(item).await
    }

    /// Claims launch `current + 1` of a job that is `ACCEPTED` or
    /// `WAITING_FOR_CAPACITY` at launch `current`; only one caller wins.
    /// `Applied` means the caller now holds launch `current + 1`.
    pub async fn claim_launch(
        &self,
        job_id: &str,
        current: LaunchNumber,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression(
                "SET #launch = :next, #claimed = :now, #updated = :now REMOVE #next_try",
            )
            .condition_expression("#status IN (:s0, :s1) AND #launch = :current")
            .expression_attribute_names("#next_try", attr::NEXT_TRY_AT)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":next", n(current + 1))
            .expression_attribute_values(":current", n(current))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":s0", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":s1", s(JobStatus::WaitingForCapacity.as_str()));
        match self.conditional_update(req).await? {
            // An earlier attempt of this very call, whose answer was lost,
            // made the claim: it is ours.
            Changed::Refused(Some(now_is))
                if now_is.launch == current + 1
                    && now_is.claimed_at == Some(now_ms)
                    && now_is.updated_at == Some(now_ms)
                    && matches!(
                        now_is.status,
                        JobStatus::Accepted | JobStatus::WaitingForCapacity
                    ) =>
            {
                Ok(Changed::Applied)
            }
            changed => Ok(changed),
        }
    }

    /// Moves a job to `to`, from the states berth-core allows, applying
    /// `change`.
    pub async fn transition(
        &self,
        job_id: &str,
        to: JobStatus,
        change: Change,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let sources: &[JobStatus] = match change.expect_status {
            Some(from) => to
                .sources()
                .iter()
                .position(|s| *s == from)
                .map_or(&[], |i| &to.sources()[i..=i]),
            None => to.sources(),
        };
        if sources.is_empty() {
            return Ok(Changed::Refused(self.get(job_id).await?.map(Box::new)));
        }
        let mut fields: Vec<(&str, AttributeValue)> = vec![
            (attr::STATUS, s(to.as_str())),
            (attr::UPDATED_AT, n(now_ms)),
        ];
        let optional = [
            (attr::ROUTE, change.route.map(|r| s(r.as_str()))),
            (attr::TASK_ARN, change.task_arn.as_deref().map(s)),
            (attr::REQUEST_ID, change.request_id.as_deref().map(s)),
            (attr::REASON, change.reason.as_deref().map(s)),
            (attr::EXIT_CODE, change.exit_code.map(n)),
            (attr::DEADLINE, change.deadline.map(n)),
            (attr::NEXT_TRY_AT, change.next_try_at.map(n)),
            (attr::RECEIPT, change.receipt.as_deref().map(s)),
            (
                attr::DISPATCHED_AT,
                (to == JobStatus::Dispatched).then(|| n(now_ms)),
            ),
        ];
        fields.extend(
            optional
                .into_iter()
                .filter_map(|(name, v)| v.map(|v| (name, v))),
        );
        let counters: Vec<&str> = [
            (change.add_attempt, attr::ATTEMPTS),
            (change.add_wait, attr::WAITS),
            (change.add_failure, attr::FAILURES),
            (change.add_interruption, attr::INTERRUPTIONS),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect();

        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id));
        let mut sets: Vec<String> = Vec::new();
        for (name, value) in fields {
            sets.push(format!("#{name} = :{name}"));
            req = req
                .expression_attribute_names(format!("#{name}"), name)
                .expression_attribute_values(format!(":{name}"), value);
        }
        if let Some(ended) = &change.ended {
            sets.push("#history = list_append(if_not_exists(#history, :empty), :ended)".into());
            req = req
                .expression_attribute_names("#history", attr::HISTORY)
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                .expression_attribute_values(
                    ":ended",
                    AttributeValue::L(vec![history_value(ended)]),
                );
        }
        let mut removes: Vec<&str> = Vec::new();
        if change.next_try_at.is_none() {
            removes.push("#next_try");
            req = req.expression_attribute_names("#next_try", attr::NEXT_TRY_AT);
        }
        // Waiting since the first wait in a row; any other status ends it.
        req = req.expression_attribute_names("#waiting_since", attr::WAITING_SINCE);
        if to == JobStatus::WaitingForCapacity {
            sets.push("#waiting_since = if_not_exists(#waiting_since, :waiting_now)".into());
            req = req.expression_attribute_values(":waiting_now", n(now_ms));
        } else {
            removes.push("#waiting_since");
        }
        if change.release_claim {
            removes.push("#claimed");
            req = req.expression_attribute_names("#claimed", attr::CLAIMED_AT);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !counters.is_empty() {
            let adds: Vec<String> = counters
                .iter()
                .map(|name| format!("#{name} :one"))
                .collect();
            expression.push_str(&format!(" ADD {}", adds.join(", ")));
            for name in counters {
                req = req.expression_attribute_names(format!("#{name}"), name);
            }
            req = req.expression_attribute_values(":one", n(1));
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }

        let placeholders: Vec<String> = (0..sources.len()).map(|i| format!(":from{i}")).collect();
        for (p, st) in placeholders.iter().zip(sources) {
            req = req.expression_attribute_values(p, s(st.as_str()));
        }
        // `#status` is named by the SET above.
        let mut condition = format!("#status IN ({})", placeholders.join(", "));
        if let Some(launch) = change.expect_launch {
            condition.push_str(" AND #launch = :launch");
            req = req
                .expression_attribute_names("#launch", attr::LAUNCH)
                .expression_attribute_values(":launch", n(launch));
        }
        let req = req
            .update_expression(expression)
            .condition_expression(condition);
        match self.conditional_update(req).await? {
            // An earlier attempt of this very call (the SDK retries an update
            // whose answer was lost) left exactly this, and the condition
            // refused the retry: the write is ours.
            Changed::Refused(Some(now_is))
                if now_is.status == to
                    && now_is.updated_at == Some(now_ms)
                    && change.expect_launch.is_none_or(|l| now_is.launch == l)
                    && (change.task_arn.is_none() || now_is.task_arn == change.task_arn)
                    && (change.request_id.is_none() || now_is.request_id == change.request_id) =>
            {
                Ok(Changed::Applied)
            }
            changed => Ok(changed),
        }
    }

    /// Applies the settlement of an attempt's end (berth-core's
    /// [`settle`](berth_core::attempt::settle)) to `job_id`, conditionally
    /// on the attempt's launch where it says so.
    pub async fn settle(
        &self,
        job_id: &str,
        settled: &Settled,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let change = Change {
            reason: settled.reason.clone(),
            exit_code: settled.exit_code,
            add_failure: settled.add_failure,
            add_interruption: settled.add_interruption,
            release_claim: settled.release_claim,
            ended: settled.history.clone(),
            expect_launch: settled.expect_launch.then_some(settled.launch),
            next_try_at: settled
                .requeue
                .map(|delay| now_ms + i64::from(delay) * 1000),
            ..Change::default()
        };
        self.transition(job_id, settled.status, change, now_ms)
            .await
    }

    /// Takes over launch `launch` of `job_id`, `ACCEPTED` with the claim
    /// `claimed_at` (epoch ms) whose lease is over: claimed anew, now, under
    /// the same number (its RunTask then carries the same client token).
    /// Only one caller wins; a changed claim or launch is refused.
    pub async fn reclaim_launch(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        claimed_at: Option<i64>,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let Some(claimed_at) = claimed_at else {
            return Ok(Changed::Refused(self.get(job_id).await?.map(Box::new)));
        };
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression("SET #claimed = :now, #updated = :now")
            .condition_expression(
                "#status = :accepted AND #launch = :launch AND #claimed = :claimed",
            )
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":claimed", n(claimed_at))
            .expression_attribute_values(":accepted", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":launch", n(launch));
        match self.conditional_update(req).await? {
            // An earlier attempt of this very call, whose answer was lost.
            Changed::Refused(Some(now_is))
                if now_is.status == JobStatus::Accepted
                    && now_is.launch == launch
                    && now_is.claimed_at == Some(now_ms) =>
            {
                Ok(Changed::Applied)
            }
            other => Ok(other),
        }
    }

    /// Ends the claim on launch `launch` of `job_id`, still `ACCEPTED`, at
    /// once, with `reason`: the launch failed in a way another try may not
    /// (a throttled RunTask). The next delivery takes the launch over as it
    /// would after the claim's lease (it looks for the launch's task first)
    /// instead of waiting the lease out.
    pub async fn expire_claim(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        reason: &str,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression("SET #reason = :reason, #updated = :now, #claimed = :expired")
            .condition_expression(
                "#status = :accepted AND #launch = :launch AND attribute_exists(#claimed)",
            )
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":expired", n(0))
            .expression_attribute_values(":accepted", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":launch", n(launch));
        self.conditional_update(req).await
    }

    /// Marks the record of `job_id` changed now, while it is in `status` at
    /// `launch` (the sweep, having put back the message of a job whose
    /// message was lost, so that it waits as long again before the next).
    pub async fn touch(
        &self,
        job_id: &str,
        status: JobStatus,
        launch: LaunchNumber,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression("SET #updated = :now")
            .condition_expression("#status = :status AND #launch = :launch")
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":launch", n(launch));
        self.conditional_update(req).await
    }

    /// Up to `limit` jobs in `status`, the most recently changed first.
    pub async fn in_status(
        &self,
        status: JobStatus,
        limit: usize,
    ) -> Result<Vec<JobSummary>, AwsError> {
        let query = self.by_status(status).scan_index_forward(false);
        self.collect(query, limit).await
    }

    /// What jobs ask of the cluster's EC2 capacity that it does not give
    /// them: every job waiting for capacity that may run on EC2, and the jobs that went to
    /// Fargate (a `FARGATE` or `FARGATE_SPOT` route on a job not forced
    /// there) and changed
    /// since `since_ms`, still dispatched or running. Each as resolved.
    pub async fn ec2_demand(&self, since_ms: i64) -> Result<Ec2Demand, AwsError> {
        let waiting = self
            .collect(self.by_status(JobStatus::WaitingForCapacity), usize::MAX)
            .await?;
        let mut fargate = Vec::new();
        for status in [JobStatus::Dispatched, JobStatus::Running] {
            let query = self
                .ddb
                .query()
                .table_name(&self.table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#status = :status AND #updated >= :since")
                .filter_expression("#route IN (:fargate, :spot)")
                .expression_attribute_names("#status", attr::STATUS)
                .expression_attribute_names("#updated", attr::UPDATED_AT)
                .expression_attribute_names("#route", attr::ROUTE)
                .expression_attribute_values(":status", s(status.as_str()))
                .expression_attribute_values(":since", n(since_ms))
                .expression_attribute_values(":fargate", s(Route::Fargate.as_str()))
                .expression_attribute_values(":spot", s(Route::FargateSpot.as_str()));
            fargate.extend(self.collect(query, usize::MAX).await?);
        }
        let ids: Vec<&str> = waiting
            .iter()
            .chain(&fargate)
            .map(|r| r.job_id.as_str())
            .collect();
        let jobs = self.jobs_of(&ids).await?;
        let job = |id: &str| {
            jobs.iter()
                .find(|w| w.job.job_id == id)
                .map(|w| w.job.clone())
        };
        // A job that runs only on Fargate asks nothing of EC2, whether it
        // waits (Fargate had no room) or runs.
        let on_ec2 = |j: &ResolvedJob| j.processor != berth_core::Processor::Fargate;
        Ok(Ec2Demand {
            waiting: waiting
                .iter()
                .filter_map(|r| job(&r.job_id))
                .filter(on_ec2)
                .collect(),
            fell_back: fargate
                .iter()
                .filter_map(|r| job(&r.job_id))
                .filter(on_ec2)
                .collect(),
        })
    }

    /// The jobs waiting for capacity, each with the receipt handle of the
    /// delivery it waits on (where the driver recorded one).
    pub async fn waiting_for_capacity(&self) -> Result<Vec<Waiting>, AwsError> {
        let waiting = self
            .collect(self.by_status(JobStatus::WaitingForCapacity), usize::MAX)
            .await?;
        let ids: Vec<&str> = waiting.iter().map(|r| r.job_id.as_str()).collect();
        self.jobs_of(&ids).await
    }

    /// The resolved jobs of `ids` (their records' `job`), with their
    /// receipt handles, read a hundred at a time.
    async fn jobs_of(&self, ids: &[&str]) -> Result<Vec<Waiting>, AwsError> {
        let items = crate::batch::batch_get(
            &self.ddb,
            &self.table,
            attr::JOB_ID,
            ids,
            &[attr::JOB_ID, attr::JOB, attr::RECEIPT],
            // Read each minute: a job missed now is counted the next time.
            crate::batch::Read::Eventual,
        )
        .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let job = item
                    .get(attr::JOB)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|j| serde_json::from_str::<ResolvedJob>(j).ok())?;
                let receipt = item.get(attr::RECEIPT).and_then(|v| v.as_s().ok()).cloned();
                Some(Waiting { job, receipt })
            })
            .collect())
    }

    /// A query of the status index for `status`.
    fn by_status(
        &self,
        status: JobStatus,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.ddb
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("#status = :status")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":status", s(status.as_str()))
    }

    async fn collect(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        limit: usize,
    ) -> Result<Vec<JobSummary>, AwsError> {
        let mut pages = query.into_paginator().send();
        let mut records = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            records.extend(page.items().iter().filter_map(record).map(JobSummary::from));
            if records.len() >= limit {
                records.truncate(limit);
                break;
            }
        }
        Ok(records)
    }

    async fn create(&self, item: Item) -> Result<Created, AwsError> {
        let job_id = job_id_of(&item).to_owned();
        let written = record(&item);
        let result = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", attr::JOB_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(e) => {
                if let Some(old) = e.as_service_error().and_then(|se| match se {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        Some(c.item.clone())
                    }
                    _ => None,
                }) {
                    let existing = match old.as_ref().and_then(record) {
                        Some(r) => r,
                        None => self.get(&job_id).await?.ok_or_else(|| unreadable("dynamodb:PutItem"))?,
                    };
                    // An earlier attempt of this very call (the SDK retries
                    // a put whose answer was lost) wrote it: that is ours.
                    if written.as_ref().is_some_and(|w| same_write(w, &existing)) {
                        return Ok(Created::New);
                    }
                    return Ok(Created::Exists(Box::new(existing)));
                }
                Err(AwsError::from_sdk("dynamodb:PutItem", e))
            }
        }
    }

    pub(crate) async fn conditional_update(
        &self,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<Changed, AwsError> {
        // The caller knows what it wrote: only a refusal needs the item back.
        let req = req
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match req.send().await {
            Ok(_) => Ok(Changed::Applied),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => Ok(Changed::Refused(
                    c.item.as_ref().and_then(record).map(Box::new),
                )),
                _ => Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
            },
        }
    }
}

/// Whether `existing` is the record `written` put: the same status,
/// message, launch, claim and times (to the millisecond).
fn same_write(written: &JobRecord, existing: &JobRecord) -> bool {
    written.status == existing.status
        && written.message_id == existing.message_id
        && written.launch == existing.launch
        && written.claimed_at == existing.claimed_at
        && written.created_at == existing.created_at
        && written.updated_at == existing.updated_at
}

fn base_item(job_id: &str, status: JobStatus, message_id: &str, now_ms: i64) -> Item {
    HashMap::from([
        (attr::JOB_ID.into(), s(job_id)),
        (attr::STATUS.into(), s(status.as_str())),
        (attr::MESSAGE_ID.into(), s(message_id)),
        (attr::ATTEMPTS.into(), n(0)),
        (attr::LAUNCH.into(), n(0)),
        (attr::WAITS.into(), n(0)),
        (attr::CREATED_AT.into(), n(now_ms)),
        (attr::UPDATED_AT.into(), n(now_ms)),
    ])
}

fn job_id_of(item: &Item) -> &str {
    item.get(attr::JOB_ID)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn unreadable(operation: &'static str) -> AwsError {
    AwsError {
        operation,
        code: None,
        message: "the job item could not be read".into(),
        retryable: false,
    }
}

/// Reads a job item; `None` when it lacks a job id or a known status.
pub fn record(item: &Item) -> Option<JobRecord> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let small = |k: &str| num(k).and_then(|v| u32::try_from(v).ok());
    let job: Option<ResolvedJob> = text(attr::JOB).and_then(|j| serde_json::from_str(&j).ok());
    Some(JobRecord {
        children: crate::array::children(item, job.as_ref()),
        job_id: text(attr::JOB_ID)?,
        status: JobStatus::parse(&text(attr::STATUS)?)?,
        message_id: text(attr::MESSAGE_ID),
        definition: text(attr::DEFINITION),
        job,
        raw_body: text(attr::RAW_BODY),
        route: text(attr::ROUTE).and_then(|r| Route::parse(&r)),
        launch: small(attr::LAUNCH).unwrap_or(0),
        claimed_at: num(attr::CLAIMED_AT),
        attempts: small(attr::ATTEMPTS).unwrap_or(0),
        max_attempts: small(attr::MAX_ATTEMPTS),
        waits: small(attr::WAITS).unwrap_or(0),
        task_arn: text(attr::TASK_ARN),
        request_id: text(attr::REQUEST_ID),
        reason: text(attr::REASON),
        exit_code: num(attr::EXIT_CODE).and_then(|v| i32::try_from(v).ok()),
        created_at: num(attr::CREATED_AT),
        updated_at: num(attr::UPDATED_AT),
        dispatched_at: num(attr::DISPATCHED_AT),
        deadline: num(attr::DEADLINE),
        failures: small(attr::FAILURES).unwrap_or(0),
        interruptions: small(attr::INTERRUPTIONS).unwrap_or(0),
        history: item
            .get(attr::HISTORY)
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(history_entry).collect())
            .unwrap_or_default(),
        next_try_at: num(attr::NEXT_TRY_AT),
        waiting_since: num(attr::WAITING_SINCE),
        costs: recorded_costs(item.get(attr::COSTS)),
        holds: small(attr::HOLDS).unwrap_or(0),
        cost_usd: item
            .get(attr::COST_USD)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    })
}

/// Now, in epoch milliseconds: the clock of every time the store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
