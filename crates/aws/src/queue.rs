//! The job queue and its dead-letter queue: submitting a job, putting one
//! back for another attempt, setting when a message comes back, and keeping
//! a message that cannot be a job with its reason.
//!
//! A re-queued attempt's message is an ordinary v1 job message naming the job, with the
//! launch that ended in [`RELAUNCH_ATTRIBUTE`]. The driver launches the job
//! again only while its record says that launch ended and nothing claimed
//! the next one, so a duplicate of this message, or the attribute on any
//! other message, launches nothing.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use berth_core::launch::LaunchNumber;

use crate::AwsError;

/// The message attribute naming the launch after which a job is re-queued.
pub const RELAUNCH_ATTRIBUTE: &str = "berth-relaunch-after";
/// The message attribute that marks an array's child's message, naming
/// its parent (see `berth_aws::array`).
pub const ARRAY_CHILD_ATTRIBUTE: &str = "berth-array-child";
/// The message attribute that carries the reason on the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "berth-reason";
/// The message attribute that names the original message on the dead-letter queue.
pub const SOURCE_MESSAGE_ATTRIBUTE: &str = "berth-source-message-id";

#[derive(Debug, Clone)]
pub struct JobQueue {
    pub(crate) sqs: Client,
    pub(crate) url: String,
}

impl JobQueue {
    pub fn new(sqs: Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }

    /// Sends a job message; returns the message id SQS gave it.
    pub async fn submit(&self, body: &str) -> Result<Option<String>, AwsError> {
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))?;
        Ok(sent.message_id)
    }

    /// Makes the message received with `receipt_handle` come back after
    /// `after` (SQS takes at most 12 hours).
    pub async fn set_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), AwsError> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(after.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Messages waiting to be received now (SQS's approximate count of
    /// visible messages): more than none means the driver is behind.
    pub async fn backlog(&self) -> Result<u64, AwsError> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:GetQueueAttributes", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// Queues another attempt of `job_id` (of `definition`) after launch
    /// `ended`, delivered after `delay_seconds` (at most SQS's 900).
    pub async fn requeue(
        &self,
        job_id: &str,
        definition: &str,
        ended: LaunchNumber,
        delay_seconds: u32,
    ) -> Result<(), AwsError> {
        let body = serde_json::json!({ "job_id": job_id, "definition": definition });
        let attribute = attribute("Number", &ended.to_string())?;
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body.to_string())
            .message_attributes(RELAUNCH_ATTRIBUTE, attribute)
            .delay_seconds(i32::try_from(delay_seconds.min(900)).unwrap_or(900))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))?;
        Ok(())
    }

    /// Sends `body` again as a new message with the same string and number
    /// `attributes`, delivered after `delay_seconds` (at most SQS's 900): a
    /// message carried on past the queue's redrive count, which SQS counts
    /// per message.
    pub async fn resend(
        &self,
        body: &str,
        attributes: &[(String, String, String)],
        delay_seconds: u32,
    ) -> Result<(), AwsError> {
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(i32::try_from(delay_seconds.min(900)).unwrap_or(900));
        for (name, data_type, value) in attributes {
            send = send.message_attributes(name, attribute(data_type, value)?);
        }
        send.send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))?;
        Ok(())
    }
}

/// The dead-letter queue: messages that can never be jobs, each with why.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    sqs: Client,
    url: String,
}

impl DeadLetters {
    pub fn new(sqs: Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }

    /// Keeps `body` (of message `source`) with `reason`, in
    /// [`REASON_ATTRIBUTE`] and [`SOURCE_MESSAGE_ATTRIBUTE`].
    pub async fn send(&self, body: &str, source: &str, reason: &str) -> Result<(), AwsError> {
        let body = if body.is_empty() { "(empty)" } else { body };
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes(REASON_ATTRIBUTE, attribute("String", reason)?)
            .message_attributes(SOURCE_MESSAGE_ATTRIBUTE, attribute("String", source)?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))?;
        Ok(())
    }
}

pub(crate) fn attribute(data_type: &str, value: &str) -> Result<MessageAttributeValue, AwsError> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .map_err(|e| AwsError {
            operation: "sqs:SendMessage",
            code: None,
            message: e.to_string(),
            retryable: false,
        })
}
