//! The Spot prices the scaler last observed, kept in the one item of the
//! jobs table that is not a job.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::AwsError;
use crate::store::{JobStore, attr};

/// The key of the item that keeps the latest observed Spot prices (no job
/// id has a colon).
pub const SPOT_PRICES_KEY: &str = "berth:spot-prices";
const SPOT_PRICES_ATTR: &str = "prices";

/// Spot prices per instance type (USD per hour), as observed at `at_ms`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedSpot {
    pub at_ms: i64,
    pub prices: std::collections::BTreeMap<String, f64>,
}

impl JobStore {
    /// The Spot prices the scaler last observed, and when (epoch ms); none
    /// before its first observation.
    pub async fn spot_prices(&self) -> Result<Option<ObservedSpot>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(SPOT_PRICES_KEY.into()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let at_ms = item
            .get(attr::UPDATED_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        let prices = item
            .get(SPOT_PRICES_ATTR)
            .and_then(|v| v.as_s().ok())
            .and_then(|v| serde_json::from_str(v).ok());
        Ok(at_ms
            .zip(prices)
            .map(|(at_ms, prices)| ObservedSpot { at_ms, prices }))
    }

    /// Keeps `observed` as the latest Spot prices, in the one item of the
    /// table that is not a job (its key is no valid job id, and it has no
    /// status, so no listing of jobs sees it).
    pub async fn keep_spot_prices(&self, observed: &ObservedSpot) -> Result<(), AwsError> {
        let json = serde_json::to_string(&observed.prices).unwrap_or_else(|_| "{}".into());
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item(attr::JOB_ID, AttributeValue::S(SPOT_PRICES_KEY.into()))
            .item(SPOT_PRICES_ATTR, AttributeValue::S(json))
            .item(
                attr::UPDATED_AT,
                AttributeValue::N(observed.at_ms.to_string()),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        Ok(())
    }
}
