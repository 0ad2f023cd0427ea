//! berth-aws: the only crate of berth's functions and CLI that talks to AWS.
//! One module per port, each in berth's terms:
//!
//! - [`store`]: the jobs table (every change conditional on the state machine);
//! - [`cost`]: what an attempt used, read from what AWS says of it, to price it;
//! - [`spending`]: each limited definition's spend of the day; holding a job for it;
//! - [`definitions`]: the job definitions table, berth's allowlist;
//! - [`queue`]: submitting, re-queuing, message visibility, the dead-letter queue;
//! - [`ecs`]: running, stopping, describing and finding tasks; reading,
//!   draining and marking container instances;
//! - [`lambda`]: invoking a Lambda-route job's function;
//! - [`logs`] (feature `logs`): a job's output in CloudWatch Logs;
//! - [`roles`]: a job role's credentials, for a Lambda-route job's process;
//! - [`metrics`]: berth's metrics (embedded metric format, and the cluster's
//!   PutMetricData);
//! - [`fleet`]: the Auto Scaling group (and, with feature `ec2`, when its
//!   instances launched);
//! - [`schedule`]: the capacity metric's schedule, off at rest, and waking it;
//! - [`stack`] (feature `stack`): a deployed stack's settings from its outputs.
//!
//! [`operations`] holds what more than one function (or a function and the
//! CLI) does with them: ending an attempt as berth-core settles it, putting a
//! job back on the queue, cancelling. [`settings`] reads a function's
//! `BERTH_*` configuration once at start; [`Clients`] are the SDK clients,
//! built once from one `SdkConfig` (which honours `AWS_ENDPOINT_URL`, so the
//! same wiring talks to the local AWS).

pub mod array;
pub mod batch;
pub mod cost;
pub mod decisions;
pub mod definitions;
pub mod dependencies;
pub mod ecs;
pub mod error;
pub mod fleet;
pub mod lambda;
#[cfg(feature = "logs")]
pub mod logs;
pub mod metrics;
pub mod operations;
pub mod queue;
pub mod roles;
pub mod schedule;
pub mod schema;
pub mod settings;
pub mod spending;
mod spot_prices;
#[cfg(feature = "stack")]
pub mod stack;
pub mod store;

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;
use aws_sdk_sqs::config::SharedInterceptor;

pub use definitions::Definitions;
pub use ecs::EcsCluster;
pub use error::{AwsError, LaunchError};
pub use fleet::Fleet;
pub use lambda::LambdaLauncher;
pub use queue::{DeadLetters, JobQueue};
pub use roles::JobRoles;
pub use settings::{Settings, SettingsError};
pub use store::JobStore;

/// The functions' allocator. Reading AWS answers is thousands of small
/// allocations (a page of 100 described container instances is some 250 KB
/// of JSON); mimalloc spends less CPU on them than the system allocator.
/// Each function's binary declares it `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

/// Loads the shared SDK configuration from the environment (region,
/// credentials, `AWS_ENDPOINT_URL[_<SERVICE>]`), with the SDK's standard
/// retry mode.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// As [`load_sdk_config`], with up to `max_attempts` attempts per call
/// (the standard mode makes 3): for a function whose few writes must not be
/// lost to a run of throttling or 5xx answers.
pub async fn load_sdk_config_with_attempts(max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}

/// As [`load_sdk_config`], in the SDK's adaptive retry mode: after a
/// throttled answer, the clients of that service in this execution
/// environment send at the rate the service lets through (a client-side
/// token bucket that measures it) instead of at once, before and after
/// their own retries. For the driver, whose launches meet RunTask's and
/// Lambda's rate limits in a burst.
pub async fn load_sdk_config_adaptive() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::adaptive())
        .load()
        .await
}

/// The AWS clients berth's functions use, built once per execution
/// environment. Cloning is cheap: the clients share their connection pool.
#[derive(Clone, Debug)]
pub struct Clients {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    #[cfg(feature = "ec2")]
    pub ec2: aws_sdk_ec2::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Self::build(config, &[])
    }

    /// The same clients with `interceptors` on every one of them (the
    /// integration tests isolate their state in the local AWS this way).
    pub fn with_interceptors(config: &SdkConfig, interceptors: &[SharedInterceptor]) -> Self {
        Self::build(config, interceptors)
    }

    fn build(config: &SdkConfig, interceptors: &[SharedInterceptor]) -> Self {
        macro_rules! client {
            ($sdk:ident) => {{
                let mut builder = $sdk::config::Builder::from(config);
                for i in interceptors {
                    builder.push_interceptor(i.clone());
                }
                $sdk::Client::from_conf(builder.build())
            }};
        }
        Self {
            autoscaling: client!(aws_sdk_autoscaling),
            cloudwatch: client!(aws_sdk_cloudwatch),
            dynamodb: client!(aws_sdk_dynamodb),
            #[cfg(feature = "ec2")]
            ec2: client!(aws_sdk_ec2),
            ecs: client!(aws_sdk_ecs),
            events: client!(aws_sdk_eventbridge),
            lambda: client!(aws_sdk_lambda),
            sqs: client!(aws_sdk_sqs),
            sts: client!(aws_sdk_sts),
        }
    }
}
