//! Job roles: a Lambda-route job's process gets the credentials of its
//! definition's job role, assumed for it alone, and never the function's.

use berth_core::launch::{JobCredentials, role_session_name};

use crate::AwsError;

/// How long a job role's credentials last: STS's shortest session, which
/// outlasts any Lambda invocation (900 s at most).
pub const SESSION_SECONDS: i32 = 900;

#[derive(Debug, Clone)]
pub struct JobRoles {
    sts: aws_sdk_sts::Client,
}

impl JobRoles {
    pub fn new(sts: aws_sdk_sts::Client) -> Self {
        Self { sts }
    }

    /// Assumes `role_arn` for job `job_id` (the session is named after the
    /// job, so the role's CloudTrail entries say which job acted).
    pub async fn assume(&self, role_arn: &str, job_id: &str) -> Result<JobCredentials, AwsError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(role_session_name(job_id))
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:AssumeRole", e))?;
        let c = out.credentials().ok_or_else(|| AwsError {
            operation: "sts:AssumeRole",
            code: None,
            message: "the answer has no credentials".into(),
            retryable: false,
        })?;
        Ok(JobCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().to_owned(),
        })
    }
}
