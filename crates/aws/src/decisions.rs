//! The scaler's recent decisions, kept in one item of the jobs table that is
//! not a job (beside the Spot prices), for `berth console`'s cluster view:
//! the last [`DECISIONS_KEPT`], newest first.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::AwsError;
use crate::store::{JobStore, attr};

/// The key of the item (no job id has a colon).
pub const DECISIONS_KEY: &str = "berth:scaler-decisions";
/// How many decisions the item keeps.
pub const DECISIONS_KEPT: usize = 100;
const DECISIONS_ATTR: &str = "decisions";
/// Writers that meet (a run the driver woke beside a scheduled one) try
/// again this many times.
const WRITE_TRIES: usize = 3;

/// One decision of one run of the scaler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When the run decided (epoch ms).
    pub at_ms: i64,
    /// The group's desired capacity before and after the run.
    pub desired: (u32, u32),
    /// What it decided and why, in a line.
    pub reason: String,
}

impl JobStore {
    /// The scaler's last decisions, newest first, and when the item last
    /// changed (none before its first decision).
    pub async fn decisions(&self) -> Result<(Vec<Decision>, Option<i64>), AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(DECISIONS_KEY.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(item) = out.item else {
            return Ok((Vec::new(), None));
        };
        let at = item
            .get(attr::UPDATED_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        let decisions = item
            .get(DECISIONS_ATTR)
            .and_then(|v| v.as_s().ok())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        Ok((decisions, at))
    }

    /// Adds one run's decisions (`reasons`, made at `at_ms`, taking the
    /// group's desired capacity from `desired.0` to `desired.1`) to the
    /// kept ones, dropping the oldest past [`DECISIONS_KEPT`]. Two runs
    /// that write at once do not lose each other's: each write is
    /// conditional on the item it read.
    pub async fn record_decisions(
        &self,
        at_ms: i64,
        desired: (u32, u32),
        reasons: &[String],
    ) -> Result<(), AwsError> {
        if reasons.is_empty() {
            return Ok(());
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let (kept, read_at) = self.decisions().await?;
            let mut all: Vec<Decision> = reasons
                .iter()
                .map(|reason| Decision {
                    at_ms,
                    desired,
                    reason: reason.clone(),
                })
                .collect();
            all.extend(kept);
            all.sort_by_key(|d| std::cmp::Reverse(d.at_ms));
            all.truncate(DECISIONS_KEPT);
            let json = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
            let written_at = read_at.map_or(at_ms, |r| at_ms.max(r + 1));
            let put = self
                .ddb
                .put_item()
                .table_name(&self.table)
                .item(attr::JOB_ID, AttributeValue::S(DECISIONS_KEY.into()))
                .item(DECISIONS_ATTR, AttributeValue::S(json))
                .item(attr::UPDATED_AT, AttributeValue::N(written_at.to_string()));
            let put = match read_at {
                None => put
                    .condition_expression("attribute_not_exists(#id)")
                    .expression_attribute_names("#id", attr::JOB_ID),
                Some(r) => put
                    .condition_expression("#at = :read")
                    .expression_attribute_names("#at", attr::UPDATED_AT)
                    .expression_attribute_values(":read", AttributeValue::N(r.to_string())),
            };
            match put.send().await {
                Ok(_) => return Ok(()),
                Err(e)
                    if tries < WRITE_TRIES
                        && matches!(
                            e.as_service_error(),
                            Some(PutItemError::ConditionalCheckFailedException(_))
                        ) => {}
                Err(e) => return Err(AwsError::from_sdk("dynamodb:PutItem", e)),
            }
        }
    }
}
