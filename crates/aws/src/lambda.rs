//! Lambda, as berth uses it: a Lambda-route job is launched by an
//! asynchronous invoke (`InvocationType=Event`) of its definition's
//! function, with the job as payload. Lambda queues the event and retries
//! it itself; the task runtime in the function records the job's progress.

use crate::{AwsError, LaunchError};
use aws_sdk_lambda::Client;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use berth_core::ResolvedJob;
use berth_core::launch::{LambdaTask, LaunchNumber};

#[derive(Debug, Clone)]
pub struct LambdaLauncher {
    lambda: Client,
}

impl LambdaLauncher {
    pub fn new(lambda: Client) -> Self {
        Self { lambda }
    }

    /// Queues launch `launch` of `job` on `function`; returns the
    /// invocation's request id, when the service names it.
    pub async fn invoke(
        &self,
        function: &str,
        job: &ResolvedJob,
        launch: LaunchNumber,
    ) -> Result<Option<String>, LaunchError> {
        let payload = serde_json::to_vec(&LambdaTask {
            job: job.clone(),
            launch,
        })
        .map_err(|e| LaunchError::Permanent(format!("cannot serialise the job: {e}")))?;
        let out = self
            .lambda
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| LaunchError::from_aws(AwsError::from_sdk("lambda:Invoke", e)))?;
        Ok(out
            .request_id()
            .filter(|id| !id.is_empty())
            .map(str::to_owned))
    }
}
