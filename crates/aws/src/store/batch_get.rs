//! Reading many job items at once: BatchGetItem, 100 keys a call, asking
//! again for what DynamoDB leaves unprocessed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{JobStore, attr};
use crate::AwsError;

/// The most keys one BatchGetItem takes.
const BATCH_GET_MAX: usize = 100;

impl JobStore {
    /// The items of `job_ids` that exist, read consistently, with only
    /// `attributes` (every attribute when empty), in no particular order.
    pub(crate) async fn batch_get(
        &self,
        job_ids: &[&str],
        attributes: &[&str],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, AwsError> {
        let mut items = Vec::new();
        for chunk in job_ids.chunks(BATCH_GET_MAX) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([(attr::JOB_ID.to_owned(), AttributeValue::S((*id).into()))])
                })
                .collect();
            let mut wanted = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true);
            if !attributes.is_empty() {
                let names: Vec<String> = (0..attributes.len()).map(|i| format!("#a{i}")).collect();
                wanted = wanted.projection_expression(names.join(", "));
                for (name, attribute) in names.iter().zip(attributes) {
                    wanted = wanted.expression_attribute_names(name, *attribute);
                }
            }
            let mut wanted = Some(wanted.build().map_err(|e| AwsError {
                operation: "dynamodb:BatchGetItem",
                code: None,
                message: e.to_string(),
                retryable: false,
            })?);
            while let Some(asked) = wanted.take() {
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, asked)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:BatchGetItem", e))?;
                items.extend(
                    out.responses()
                        .and_then(|r| r.get(&self.table))
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                wanted = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(items)
    }
}
