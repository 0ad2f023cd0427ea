//! Putting a job back on its queue for another attempt.
//!
//! The message is an ordinary v1 job message naming the job, with the
//! launch that ended in [`RELAUNCH_ATTRIBUTE`]. The driver launches the job
//! again only while its record says that launch ended and nothing claimed
//! the next one, so a duplicate of this message, or the attribute on any
//! other message, launches nothing.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use berth_core::launch::LaunchNumber;

use crate::AwsError;

/// The message attribute naming the launch after which a job is re-queued.
pub const RELAUNCH_ATTRIBUTE: &str = "berth-relaunch-after";

#[derive(Debug, Clone)]
pub struct JobQueue {
    sqs: Client,
    url: String,
}

impl JobQueue {
    pub fn new(sqs: Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
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
        let attribute = MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(ended.to_string())
            .build()
            .map_err(|e| AwsError {
                operation: "sqs:SendMessage",
                code: None,
                message: e.to_string(),
                retryable: false,
            })?;
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
}
