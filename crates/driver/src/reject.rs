//! What cannot run is kept with its reason: a message that is not a valid
//! job is recorded `REJECTED` under its job id, or, with no usable job id
//! (or one another message holds), sent to the dead-letter queue with the
//! reason as a message attribute. Never retried.

use aws_lambda_events::event::sqs::SqsMessage;
use berth_aws::store::{Created, Rejection, now_ms};
use berth_core::{MessageError, job};

use crate::{Driver, Outcome};

impl Driver {
    /// A message that is not a valid job: keep it with its reason.
    pub(crate) async fn invalid(
        &self,
        message: &SqsMessage,
        error: &MessageError,
    ) -> (Option<String>, Outcome) {
        let body = message.body.as_deref().unwrap_or("");
        let message_id = message.message_id.as_deref().unwrap_or("");
        let reason = error.to_string();
        let Some(job_id) = usable_job_id(body, message_id) else {
            return (None, self.dead_letter(message, &reason).await);
        };
        let rejection = Rejection {
            job_id: &job_id,
            message_id,
            reason: &reason,
            definition: None,
            raw_body: Some(body),
        };
        let outcome = self.reject(message, &rejection).await;
        (Some(job_id), outcome)
    }

    /// Records `r`: `REJECTED` with its reason.
    pub(crate) async fn reject(&self, message: &SqsMessage, r: &Rejection<'_>) -> Outcome {
        match self.store.reject(r, now_ms()).await {
            Ok(Created::New) => Outcome::Rejected {
                reason: r.reason.to_owned(),
            },
            // This message's job is recorded already (its definition changed
            // or went away since): it runs as recorded.
            Ok(Created::Exists(existing))
                if existing.message_id.as_deref() == Some(r.message_id) =>
            {
                self.recorded(message, &existing, Some(r.message_id)).await
            }
            // The job id belongs to another job: this message cannot be
            // recorded under it, so it goes to the dead-letter queue.
            Ok(Created::Exists(_)) => {
                let reason = format!(
                    "{}; job id `{}` is already taken by another message",
                    r.reason, r.job_id
                );
                self.dead_letter(message, &reason).await
            }
            Err(e) => Outcome::retry(e),
        }
    }

    async fn dead_letter(&self, message: &SqsMessage, reason: &str) -> Outcome {
        let Some(dead_letters) = &self.dead_letters else {
            // Without a dead-letter queue of its own, the message is left to
            // the queue's redrive policy, which moves it there in the end.
            return Outcome::Retry {
                reason: format!("no dead-letter queue configured for: {reason}"),
            };
        };
        let body = message.body.as_deref().unwrap_or("");
        let source = message.message_id.as_deref().unwrap_or("");
        match dead_letters.send(body, source, reason).await {
            Ok(()) => Outcome::DeadLettered {
                reason: reason.to_owned(),
            },
            Err(e) => Outcome::retry(e),
        }
    }
}

/// The job id an invalid message can be recorded under: its own valid
/// `job_id`, or the message id when it names none. `None` when the body is
/// not a JSON object or its `job_id` is not valid.
pub fn usable_job_id(body: &str, message_id: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let object = value.as_object()?;
    let id = match object.get("job_id") {
        None | Some(serde_json::Value::Null) => message_id,
        Some(serde_json::Value::String(id)) => id,
        Some(_) => return None,
    };
    job::validate_job_id(id).ok()?;
    Some(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::usable_job_id;

    #[test]
    fn an_invalid_message_is_kept_under_its_own_id_or_its_message_id() {
        assert_eq!(
            usable_job_id(r#"{"job_id":"j-1","cpu":"lots"}"#, "m-1"),
            Some("j-1".into())
        );
        assert_eq!(
            usable_job_id(r#"{"cpu":"lots"}"#, "m-1"),
            Some("m-1".into())
        );
        assert_eq!(
            usable_job_id(r#"{"job_id":null}"#, "m-1"),
            Some("m-1".into())
        );
        // No object, a job id of the wrong type or shape: the dead-letter
        // queue keeps it.
        assert_eq!(usable_job_id("not json", "m-1"), None);
        assert_eq!(usable_job_id("[1]", "m-1"), None);
        assert_eq!(usable_job_id(r#"{"job_id":7}"#, "m-1"), None);
        assert_eq!(usable_job_id(r#"{"job_id":"has space"}"#, "m-1"), None);
    }
}
