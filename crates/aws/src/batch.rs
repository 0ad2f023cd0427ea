//! DynamoDB's BatchGetItem for the tables' string keys: 100 keys a call,
//! asking again for what DynamoDB leaves unprocessed when it throttles part
//! of a batch (the SDK backs off between calls).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::AwsError;

pub type Item = HashMap<String, AttributeValue>;

/// BatchGetItem reads at most 100 keys per call.
const MAX_KEYS: usize = 100;
/// Calls per chunk before unprocessed keys are an error (a retryable one).
const MAX_ROUNDS: usize = 5;

/// How strongly a read must see the latest writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Sees every write that succeeded before it (twice the read capacity).
    Consistent,
    /// May miss a write of the last second.
    Eventual,
}

/// The items of `table` whose string key `key` is one of `ids`, with only
/// the attributes `projection` names (all of them when empty), read as
/// `read` says. An id with no item is left out of the answer.
pub async fn batch_get(
    ddb: &Client,
    table: &str,
    key: &str,
    ids: &[&str],
    projection: &[&str],
    read: Read,
) -> Result<Vec<Item>, AwsError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_KEYS) {
        let keys: Vec<Item> = chunk
            .iter()
            .map(|id| HashMap::from([(key.to_owned(), AttributeValue::S((*id).to_owned()))]))
            .collect();
        let mut builder = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(read == Read::Consistent);
        if !projection.is_empty() {
            let names: Vec<String> = (0..projection.len()).map(|i| format!("#p{i}")).collect();
            builder = builder.projection_expression(names.join(", "));
            for (placeholder, name) in names.iter().zip(projection) {
                builder = builder.expression_attribute_names(placeholder, *name);
            }
        }
        let mut request = Some(builder.build().map_err(|e| AwsError {
            operation: "dynamodb:BatchGetItem",
            code: None,
            message: e.to_string(),
            retryable: false,
        })?);
        let mut rounds = 0;
        while let Some(keys) = request.take() {
            rounds += 1;
            let out = ddb
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:BatchGetItem", e))?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default(),
            );
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
            if request.is_some() && rounds >= MAX_ROUNDS {
                return Err(AwsError {
                    operation: "dynamodb:BatchGetItem",
                    code: Some("UnprocessedKeys".into()),
                    message: format!(
                        "items of {table} still unprocessed after {MAX_ROUNDS} rounds"
                    ),
                    retryable: true,
                });
            }
        }
    }
    Ok(found)
}
