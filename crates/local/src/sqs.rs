//! What Lambda's SQS event source mapping hands a function.

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::MessageSystemAttributeName;

/// What the job queue at `queue_url` (`berth-jobs` of `account`) delivers
/// now, up to 10 messages, as the records of an `SqsEvent`, with the
/// attributes the event source mapping asks for.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    region: &str,
    account: &str,
) -> Result<Vec<SqsMessage>, String> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .wait_time_seconds(0)
        .send()
        .await
        .map_err(|e| format!("receive: {e}"))?;
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| record(m, region, account))
        .collect())
}

/// A message received from the job queue (`berth-jobs` of `account`), as
/// the record of an `SqsEvent`.
pub fn record(m: aws_sdk_sqs::types::Message, region: &str, account: &str) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = m.message_id;
    r.receipt_handle = m.receipt_handle;
    r.body = m.body;
    r.md5_of_body = m.md5_of_body;
    r.attributes = m
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    r.message_attributes = m
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let mut a = SqsMessageAttribute::default();
            a.string_value = v.string_value;
            a.data_type = Some(v.data_type);
            (k, a)
        })
        .collect();
    r.event_source = Some("aws:sqs".into());
    r.event_source_arn = Some(format!("arn:aws:sqs:{region}:{account}:berth-jobs"));
    r.aws_region = Some(region.to_owned());
    r
}
