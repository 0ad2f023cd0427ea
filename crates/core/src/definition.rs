//! Job definitions, berth's allowlist: a job names a registered definition,
//! never an image or a task definition, and is resolved against it into a
//! [`ResolvedJob`] with every default filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{JobRequest, Processor};
use crate::limits::message as lim;

/// A registered job definition (an item of the definitions table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDefinition {
    pub name: String,
    /// The ECS task definition: a family, `family:revision` or an ARN.
    pub task_definition: String,
    /// The container of the task definition that runs the job.
    pub container: String,
    /// The Lambda function that can run the job, if any.
    #[serde(default)]
    pub lambda_function: Option<String>,
    /// The command to run when the job gives none; else the image's own.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    pub cpu: u32,
    pub memory: u32,
    #[serde(default)]
    pub gpu: u32,
    pub timeout_seconds: u32,
    pub max_attempts: u32,
    /// Whether jobs of this definition may run on Fargate.
    pub fargate: bool,
}

/// Why a definition is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job definition `{name}`: `{field}` must be between {min} and {max}, found {found}")]
pub struct DefinitionError {
    pub name: String,
    pub field: &'static str,
    pub min: u64,
    pub max: u64,
    pub found: u64,
}

impl JobDefinition {
    /// Checks the definition's defaults against the same limits a job
    /// message has, so that a resolved job is always within them.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let checks: [(&'static str, u32, u64, u64); 5] = [
            ("cpu", self.cpu, lim::CPU_MIN, lim::CPU_MAX),
            ("memory", self.memory, lim::MEMORY_MIN, lim::MEMORY_MAX),
            ("gpu", self.gpu, 0, lim::GPU_MAX),
            (
                "timeout_seconds",
                self.timeout_seconds,
                lim::TIMEOUT_MIN,
                lim::TIMEOUT_MAX,
            ),
            (
                "max_attempts",
                self.max_attempts,
                lim::MAX_ATTEMPTS_MIN,
                lim::MAX_ATTEMPTS_MAX,
            ),
        ];
        for (field, value, min, max) in checks {
            let found = u64::from(value);
            if found < min || found > max {
                return Err(DefinitionError {
                    name: self.name.clone(),
                    field,
                    min,
                    max,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// A job with its definition applied: what will actually run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedJob {
    pub job_id: String,
    pub definition: String,
    pub task_definition: String,
    pub container: String,
    pub lambda_function: Option<String>,
    /// `None`: the image's own command.
    pub command: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub cpu: u32,
    pub memory: u32,
    pub gpu: u32,
    pub timeout_seconds: u32,
    pub max_attempts: u32,
    pub processor: Processor,
    pub fargate_allowed: bool,
}

/// Why a job cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown job definition `{0}`: only registered definitions run")]
    UnknownDefinition(String),
    #[error(transparent)]
    InvalidDefinition(#[from] DefinitionError),
}

/// Applies `definition` (`None` when no definition of that name is
/// registered) to `job`: the job's own values win, the definition fills in
/// the rest.
pub fn resolve(
    job: &JobRequest,
    definition: Option<&JobDefinition>,
) -> Result<ResolvedJob, ResolveError> {
    let def = definition
        .filter(|d| d.name == job.definition)
        .ok_or_else(|| ResolveError::UnknownDefinition(job.definition.clone()))?;
    def.validate()?;
    Ok(ResolvedJob {
        job_id: job.job_id.clone(),
        definition: def.name.clone(),
        task_definition: def.task_definition.clone(),
        container: def.container.clone(),
        lambda_function: def.lambda_function.clone(),
        command: job.command.clone().or_else(|| def.command.clone()),
        environment: job.environment.clone(),
        cpu: job.cpu.unwrap_or(def.cpu),
        memory: job.memory.unwrap_or(def.memory),
        gpu: job.gpu.unwrap_or(def.gpu),
        timeout_seconds: job.timeout_seconds.unwrap_or(def.timeout_seconds),
        max_attempts: job.max_attempts.unwrap_or(def.max_attempts),
        processor: job.processor,
        fargate_allowed: def.fargate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::parse;

    pub(crate) fn definition() -> JobDefinition {
        JobDefinition {
            name: "render".into(),
            task_definition: "render:3".into(),
            container: "main".into(),
            lambda_function: Some("render-fn".into()),
            command: Some(vec!["render".into(), "--all".into()]),
            cpu: 1024,
            memory: 2048,
            gpu: 0,
            timeout_seconds: 600,
            max_attempts: 3,
            fargate: true,
        }
    }

    #[test]
    fn defaults_come_from_the_definition() {
        let job = parse(r#"{"definition":"render"}"#, "m-1").unwrap();
        let r = resolve(&job, Some(&definition())).unwrap();
        assert_eq!(r.job_id, "m-1");
        assert_eq!(
            (r.cpu, r.memory, r.gpu, r.timeout_seconds, r.max_attempts),
            (1024, 2048, 0, 600, 3)
        );
        assert_eq!(
            r.command,
            Some(vec!["render".to_string(), "--all".to_string()])
        );
        assert_eq!(r.task_definition, "render:3");
        assert!(r.fargate_allowed);
    }

    #[test]
    fn the_job_overrides_the_definition() {
        let job = parse(
            r#"{"definition":"render","command":["x"],"cpu":2048,"memory":4096,"gpu":1,
                "timeout_seconds":30,"max_attempts":1,"processor":"ec2"}"#,
            "m-1",
        )
        .unwrap();
        let r = resolve(&job, Some(&definition())).unwrap();
        assert_eq!(
            (r.cpu, r.memory, r.gpu, r.timeout_seconds, r.max_attempts),
            (2048, 4096, 1, 30, 1)
        );
        assert_eq!(r.command, Some(vec!["x".to_string()]));
        assert_eq!(r.processor, Processor::Ec2);
    }

    #[test]
    fn an_unregistered_definition_is_refused() {
        let job = parse(r#"{"definition":"mine"}"#, "m-1").unwrap();
        assert_eq!(
            resolve(&job, None),
            Err(ResolveError::UnknownDefinition("mine".into()))
        );
        // A lookup that returned another definition is not an allowlist hit.
        assert_eq!(
            resolve(&job, Some(&definition())),
            Err(ResolveError::UnknownDefinition("mine".into()))
        );
    }

    #[test]
    fn a_definition_out_of_limits_is_refused() {
        let job = parse(r#"{"definition":"render"}"#, "m-1").unwrap();
        let def = JobDefinition {
            max_attempts: 0,
            ..definition()
        };
        let err = resolve(&job, Some(&def)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "job definition `render`: `max_attempts` must be between 1 and 10, found 0"
        );
    }
}
