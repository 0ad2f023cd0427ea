//! One error type for a failed AWS call, told apart the way a caller acts on
//! it: retryable (throttling, 5xx, timeouts, lost connections; what is left
//! after the SDK's own retries) or not.

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct AwsError {
    /// The call, e.g. `ecs:RunTask`.
    pub operation: &'static str,
    /// The AWS error code, when the service sent one.
    pub code: Option<String>,
    pub message: String,
    pub retryable: bool,
}

impl AwsError {
    /// Classifies a failed SDK call.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, Response>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let e = service.err();
                let code = e.code().map(str::to_owned);
                let retryable = status >= 500
                    || code.as_deref().is_some_and(|c| {
                        THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c)
                    });
                let message = match (e.code(), e.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_owned(),
                    (None, Some(m)) => m.to_owned(),
                    (None, None) => format!("HTTP {status}"),
                };
                Self {
                    operation,
                    code,
                    message,
                    retryable,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self {
                operation,
                code: None,
                message: error_chain(&err),
                retryable: true,
            },
            _ => Self {
                operation,
                code: None,
                message: error_chain(&err),
                retryable: false,
            },
        }
    }

    /// Whether the service throttled the call (RunTask's
    /// `ThrottlingException`, Lambda's `TooManyRequestsException`,
    /// DynamoDB's `ProvisionedThroughputExceededException`, ...): the SDK's
    /// own list of throttling codes.
    pub fn throttled(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| THROTTLING_ERRORS.contains(&c))
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// What a function reports as its invocation's `errorType`: the code
    /// the service sent (`ThrottlingException`), else `AwsCallFailed` (a
    /// timeout, a lost connection, an answer that could not be read).
    pub fn error_type(&self) -> &str {
        self.code.as_deref().unwrap_or("AwsCallFailed")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// Another try may succeed (throttling, 5xx, a lost connection).
    #[error("{0}")]
    Retryable(AwsError),
    /// The launch cannot succeed as configured (a missing task definition,
    /// an invalid parameter): the job fails with this reason.
    #[error("{0}")]
    Permanent(String),
}

impl LaunchError {
    /// Splits a failed AWS call into retryable (throttling, 5xx, lost
    /// connections) and permanent: an invalid request, a missing task
    /// definition, access denied (the driver may not run what the
    /// definition names) stay so however often they are tried.
    pub fn from_aws(err: AwsError) -> Self {
        if err.retryable {
            Self::Retryable(err)
        } else {
            Self::Permanent(err.to_string())
        }
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
