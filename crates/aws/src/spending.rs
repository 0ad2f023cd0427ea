//! What each definition with a spending limit spent each day, kept in
//! items of the jobs table that are not jobs (key
//! `berth:spend:DEFINITION:DAY`, the day's start in epoch ms: no job id has
//! a colon, and they have no status, so no listing of jobs sees them); and
//! the writes that hold a job for the limit and release it.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use berth_core::cost::AttemptCost;
use berth_core::launch::LaunchNumber;
use berth_core::spending::{HELD_PREFIX, SpendingDay};
use berth_core::{JobStatus, ResolvedJob};

use crate::AwsError;
use crate::cost::{INTO_MAP, NOT_YET_RECORDED, cost_value, dollars};
use crate::store::{Changed, JobStore, attr};

/// Where a day's spend of a definition is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendKey {
    pub definition: String,
    /// The day's start, epoch ms.
    pub day_start_ms: i64,
}

impl SpendKey {
    /// The item's key.
    pub fn key(&self) -> String {
        format!("berth:spend:{}:{}", self.definition, self.day_start_ms)
    }
}

/// The reason a held job is given when its day is over and the sweep puts
/// it back on the queue.
pub const RELEASED_REASON: &str =
    "the spending limit's day is over: back on the queue for its launch";

const SPENT: &str = "usd";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn build_error(e: impl std::fmt::Display) -> AwsError {
    AwsError {
        operation: "dynamodb:TransactWriteItems",
        code: None,
        message: e.to_string(),
        retryable: false,
    }
}

impl JobStore {
    /// What the definition of `key` spent on its day so far, USD.
    pub async fn spent(&self, key: &SpendKey) -> Result<f64, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(&key.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| i.get(SPENT))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }

    /// Records what launch `launch` of `job_id` cost, as
    /// [`JobStore::record_cost`] does, and adds it to its definition's
    /// spend of the day of `spend`, in one transaction: both or neither.
    /// `false` when it was recorded already or the job has no record (or
    /// no map of costs: a record written before costs were kept, whose
    /// definition had no limit then).
    pub async fn record_cost_and_spend(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        cost: &AttemptCost,
        now_ms: i64,
        spend: &SpendKey,
    ) -> Result<bool, AwsError> {
        let key = launch.to_string();
        let job = Update::builder()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression(INTO_MAP)
            .condition_expression(NOT_YET_RECORDED)
            .expression_attribute_names("#id", attr::JOB_ID)
            .expression_attribute_names("#costs", attr::COSTS)
            .expression_attribute_names("#launch", &key)
            .expression_attribute_names("#total", attr::COST_USD)
            .expression_attribute_values(":entry", cost_value(cost, now_ms))
            .expression_attribute_values(":usd", dollars(cost.usd))
            .build()
            .map_err(build_error)?;
        let day = Update::builder()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(&spend.key()))
            .update_expression("ADD #spent :usd SET #updated = :now, #definition = :definition")
            .expression_attribute_names("#spent", SPENT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#definition", attr::DEFINITION)
            .expression_attribute_values(":usd", dollars(cost.usd))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":definition", s(&spend.definition))
            .build()
            .map_err(build_error)?;
        let written = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(job).build())
            .transact_items(TransactWriteItem::builder().update(day).build())
            // Repeated within ten minutes (the SDK's retry of a write whose
            // answer was lost), it is written once.
            .client_request_token(format!("cost-{job_id}-{launch}"))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(false)
                }
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons().first().and_then(|r| r.code())
                        == Some("ValidationError") =>
                {
                    Ok(false)
                }
                _ => Err(AwsError::from_sdk("dynamodb:TransactWriteItems", e)),
            },
        }
    }

    /// Records what launch `launch` of `job` cost, once; for a job whose
    /// definition has a spending limit, added to the definition's spend of
    /// the day it ended (on `day`'s clock) in the same write.
    pub async fn record_attempt_cost(
        &self,
        job: &ResolvedJob,
        launch: LaunchNumber,
        cost: &AttemptCost,
        now_ms: i64,
        day: &SpendingDay,
    ) -> Result<bool, AwsError> {
        if job.daily_limit_usd.is_none() {
            return self.record_cost(&job.job_id, launch, cost, now_ms).await;
        }
        let spend = SpendKey {
            definition: job.definition.clone(),
            day_start_ms: day.start(now_ms),
        };
        self.record_cost_and_spend(&job.job_id, launch, cost, now_ms, &spend)
            .await
    }

    /// Holds launch `launch` of `job_id` for its definition's spending
    /// limit: `ACCEPTED` with `reason` (it starts with
    /// [`HELD_PREFIX`]), its holds counted and its launch claim released, to be tried at
    /// `next_try_at` (epoch ms), whether it was `ACCEPTED` or waiting for
    /// capacity at that launch. The one change of status outside the state
    /// machine's transitions: a job waiting to launch goes back to waiting
    /// for its launch ([`JobStatus::can_be_held`]).
    pub async fn hold(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        reason: &str,
        next_try_at: i64,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression(
                "SET #status = :accepted, #reason = :reason, #next_try = :next, #updated = :now \
                 ADD #holds :one REMOVE #claimed, #waiting_since, #receipt",
            )
            .condition_expression("#status IN (:accepted, :waiting) AND #launch = :launch")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#next_try", attr::NEXT_TRY_AT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#claimed", attr::CLAIMED_AT)
            .expression_attribute_names("#waiting_since", attr::WAITING_SINCE)
            .expression_attribute_names("#receipt", attr::RECEIPT)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_names("#holds", attr::HOLDS)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":accepted", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":waiting", s(JobStatus::WaitingForCapacity.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":next", AttributeValue::N(next_try_at.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":launch", AttributeValue::N(launch.to_string()));
        self.conditional_update(req).await
    }

    /// Marks a held job released (its day is over) as its message goes
    /// back on the queue: from then on, the sweep treats it as any job
    /// waiting to launch, and puts its message back again should it be
    /// lost. Holds only while the job is held at `launch`.
    pub async fn release_hold(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, s(job_id))
            .update_expression("SET #reason = :released, #updated = :now REMOVE #next_try")
            .condition_expression(
                "#status = :accepted AND #launch = :launch AND begins_with(#reason, :held)",
            )
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#next_try", attr::NEXT_TRY_AT)
            .expression_attribute_names("#launch", attr::LAUNCH)
            .expression_attribute_values(":accepted", s(JobStatus::Accepted.as_str()))
            .expression_attribute_values(":launch", AttributeValue::N(launch.to_string()))
            .expression_attribute_values(":held", s(HELD_PREFIX))
            .expression_attribute_values(":released", s(RELEASED_REASON))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()));
        self.conditional_update(req).await
    }
}
