//! A deployed berth stack's settings, read from its CloudFormation outputs
//! (the CLI's `--stack`).

use crate::{AwsError, Settings, settings};

/// The outputs of berth's stack that stand for the `BERTH_*` variables.
pub const STACK_OUTPUTS: [(&str, &str); 13] = [
    ("JobsTableName", settings::JOBS_TABLE),
    ("DefinitionsTableName", settings::DEFINITIONS_TABLE),
    ("ClusterName", settings::CLUSTER),
    ("JobQueueUrl", settings::QUEUE_URL),
    ("JobDeadLetterQueueUrl", settings::DLQ_URL),
    ("InstanceGroupName", settings::INSTANCE_GROUP),
    ("AllowedInstanceTypes", settings::INSTANCE_TYPES),
    ("AllowedInstanceVcpus", settings::INSTANCE_VCPUS),
    ("AllowedInstanceMemoryGiB", settings::INSTANCE_MEMORY_GIB),
    (
        "AllowedInstanceArchitectures",
        settings::INSTANCE_ARCHITECTURES,
    ),
    ("TaskDefinitionPrefix", settings::TASK_DEFINITION_PREFIX),
    ("TaskFunctionPrefix", settings::TASK_FUNCTION_PREFIX),
    ("JobRolePrefix", settings::JOB_ROLE_PREFIX),
];

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("no stack `{stack}`{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    NoStack {
        stack: String,
        detail: Option<String>,
    },
    #[error("stack `{stack}` is not a berth stack: {problem}")]
    NotBerth { stack: String, problem: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The settings of the deployed stack `stack` in the account and region
/// `config` names: its outputs, with `env` for anything the outputs do not
/// say.
pub async fn settings(
    config: &aws_config::SdkConfig,
    stack: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, StackError> {
    let out = aws_sdk_cloudformation::Client::new(config)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let e = AwsError::from_sdk("cloudformation:DescribeStacks", e);
            match e.code.as_deref() {
                Some("ValidationError") => StackError::NoStack {
                    stack: stack.to_owned(),
                    detail: Some(e.message),
                },
                _ => StackError::Aws(e),
            }
        })?;
    let outputs: Vec<(String, String)> = out
        .stacks()
        .first()
        .ok_or_else(|| StackError::NoStack {
            stack: stack.to_owned(),
            detail: None,
        })?
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let from_stack = |name: &str| {
        STACK_OUTPUTS
            .iter()
            .find(|(_, var)| *var == name)
            .and_then(|(key, _)| outputs.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.clone())
    };
    Settings::from_lookup(|name| from_stack(name).or_else(|| env(name))).map_err(|e| {
        StackError::NotBerth {
            stack: stack.to_owned(),
            problem: e.to_string(),
        }
    })
}
