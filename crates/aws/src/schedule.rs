//! The capacity metric's schedule, and waking it. The scaler runs each
//! minute only while something may need it: instances in the group, jobs
//! waiting for capacity, work on Fargate an instance would run for less. At
//! rest it disables its own schedule (an EventBridge rule), so a quiet
//! deployment runs no scaler at all; the driver wakes it with an
//! asynchronous invoke when a job waits for capacity, and the scaler enables
//! its schedule again when it finds work to do.

use aws_sdk_eventbridge::Client as Events;
use aws_sdk_lambda::Client as Lambda;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::{Value, json};

use crate::AwsError;

/// The `source` of a wake-up event.
pub const WAKE_SOURCE: &str = "berth.driver";

/// Whether `event` is a wake-up (the driver's), not the schedule's.
pub fn is_wake(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some(WAKE_SOURCE)
}

/// The capacity metric's schedule rule (`BERTH_SCALER_RULE`).
#[derive(Debug, Clone)]
pub struct Schedule {
    events: Events,
    rule: String,
}

impl Schedule {
    pub fn new(events: Events, rule: impl Into<String>) -> Self {
        Self {
            events,
            rule: rule.into(),
        }
    }

    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Turns the schedule on (already on: nothing changes).
    pub async fn enable(&self) -> Result<(), AwsError> {
        self.events
            .enable_rule()
            .name(&self.rule)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("events:EnableRule", e))?;
        Ok(())
    }

    /// Turns the schedule off (already off: nothing changes).
    pub async fn disable(&self) -> Result<(), AwsError> {
        self.events
            .disable_rule()
            .name(&self.rule)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("events:DisableRule", e))?;
        Ok(())
    }
}

/// Wakes the capacity metric (`BERTH_SCALER_FUNCTION`).
#[derive(Debug, Clone)]
pub struct Waker {
    lambda: Lambda,
    function: String,
}

impl Waker {
    pub fn new(lambda: Lambda, function: impl Into<String>) -> Self {
        Self {
            lambda,
            function: function.into(),
        }
    }

    /// Queues a run of the capacity metric now, saying `why`.
    pub async fn wake(&self, why: &str) -> Result<(), AwsError> {
        let event = json!({
            "source": WAKE_SOURCE,
            "detail-type": "Capacity Wanted",
            "detail": { "why": why },
        });
        self.lambda
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("lambda:Invoke", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_is_told_from_the_schedule() {
        assert!(is_wake(&json!({"source": "berth.driver"})));
        assert!(!is_wake(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"})
        ));
        assert!(!is_wake(&json!(null)));
    }
}
