//! Job definitions, berth's allowlist: a job names a registered definition,
//! never an image or a task definition, and is resolved against it into a
//! [`ResolvedJob`] with every default filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{JobRequest, Processor};
use crate::limits::message as lim;

/// A registered job definition (an item of the definitions table). A field
/// it does not know is an error, as in a job message: a misspelt optional
/// field would otherwise be dropped without a word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The IAM role (its ARN) whose credentials the job gets: on the Lambda
    /// route the task runtime assumes it and hands them to the job's process
    /// alone; on ECS it is the task's role. Without one, a Lambda-route job
    /// has no AWS credentials and an ECS task has its task definition's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_role: Option<String>,
    /// Whether its jobs tolerate interruption, and so may run on Fargate
    /// Spot (yes unless it says otherwise, as AWS Batch's Spot compute
    /// environments assume).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub interruptible: bool,
    /// Whether a job may name a command of its own in place of the
    /// definition's (yes unless it says otherwise). With `false`, whoever
    /// may send to the job queue can run only the definition's command
    /// under its job role.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub command_override: bool,
    /// How long its jobs are expected to run, in seconds: what routing
    /// prices Lambda against Fargate by. Without it, the mean of its runs
    /// (of the last week where it has any, as the table reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seconds: Option<u32>,
    /// Its successful runs, recent ones where there are any, as the table
    /// keeps them (not part of what `berth definitions put` takes).
    #[serde(skip)]
    pub runs: crate::routing::Runs,
    /// Tags its jobs carry unless a job sets its own of the same key (see
    /// [`crate::tags`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// At most this many USD a UTC day: once the day's jobs cost as much,
    /// its jobs wait for the next day ([`crate::spending`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit_usd: Option<f64>,
    /// What a failed attempt of its jobs does next, by exit code and reason
    /// ([`crate::retry`]); a job's own rules replace these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_rules: Vec<crate::retry::RetryRule>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Why a definition is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("job definition `{name}`: `{field}` must be between {min} and {max}, found {found}")]
    OutOfRange {
        name: String,
        field: &'static str,
        min: u64,
        max: u64,
        found: u64,
    },
    #[error("job definition `{name}`: `{field}` {problem}")]
    Invalid {
        name: String,
        field: &'static str,
        problem: String,
    },
}

/// The names this stack may run: task definitions, Lambda task processors
/// and job roles must start with these (the template's IAM policies allow
/// no others). An empty prefix allows any name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes {
    pub task_definition: String,
    pub task_function: String,
    pub job_role: String,
}

/// What berth reads of a task definition (DescribeTaskDefinition) to check
/// a job definition against it and to run its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionFacts {
    /// Network mode `awsvpc`: its tasks need a network configuration.
    pub awsvpc: bool,
    /// It sets a task size: a container may not have more, so a job larger
    /// than it sizes the task too.
    pub sized: bool,
    /// Its `requiresCompatibilities` include `FARGATE`.
    pub fargate: bool,
    /// Its containers' names.
    pub containers: Vec<String>,
    /// Its runtime platform's CPU architecture, where it names one: its
    /// tasks run only on instances of that architecture.
    pub architecture: Option<crate::prices::Arch>,
}

/// The family of a task definition named as a family, `family:revision`
/// or an ARN (`arn:…:task-definition/family:revision`).
pub fn task_definition_family(name: &str) -> &str {
    let name = name
        .rsplit_once(":task-definition/")
        .map_or(name, |(_, f)| f);
    name.split_once(':').map_or(name, |(family, _)| family)
}

/// The name of a Lambda function named as a name, `name:qualifier`, a
/// partial ARN (`account:function:name`) or an ARN.
pub fn function_name(name: &str) -> &str {
    let name = name.rsplit_once("function:").map_or(name, |(_, f)| f);
    name.split_once(':').map_or(name, |(n, _)| n)
}

/// The path and name of a role ARN (`arn:<partition>:iam::<account>:role/<path/name>`),
/// or why it is not one.
pub fn role_path_and_name(arn: &str) -> Result<&str, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let name = match parts[..] {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            resource.strip_prefix("role/")
        }
        _ => None,
    };
    name.filter(|n| {
        !n.is_empty()
            && n.len() <= 512
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    })
    .ok_or_else(|| {
        format!(
            "must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), found `{}`",
            crate::job::quote(arn)
        )
    })
}

impl JobDefinition {
    /// Checks the definition's defaults against the same limits a job
    /// message has, so that a resolved job is always within them.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let checks: [(&'static str, u32, u64, u64); 6] = [
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
            (
                "expected_seconds",
                self.expected_seconds.unwrap_or(1),
                1,
                u64::from(self.timeout_seconds),
            ),
        ];
        for (field, value, min, max) in checks {
            let found = u64::from(value);
            if found < min || found > max {
                return Err(DefinitionError::OutOfRange {
                    name: self.name.clone(),
                    field,
                    min,
                    max,
                    found,
                });
            }
        }
        let invalid = |field, problem: String| DefinitionError::Invalid {
            name: self.name.clone(),
            field,
            problem,
        };
        for (field, value) in [
            ("task_definition", &self.task_definition),
            ("container", &self.container),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field, "is required".into()));
            }
        }
        if let Some((tag, problem)) = crate::tags::problem(&self.tags) {
            let which = match tag {
                Some((key, crate::tags::Part::Key)) => format!("key `{}` ", crate::job::quote(key)),
                Some((key, crate::tags::Part::Value)) => {
                    format!("value of `{}` ", crate::job::quote(key))
                }
                None => String::new(),
            };
            return Err(invalid("tags", format!("{which}{problem}")));
        }
        if let Some(Err(problem)) = self.daily_limit_usd.map(crate::spending::valid_limit) {
            return Err(invalid("daily_limit_usd", problem));
        }
        crate::retry::validate(&self.retry_rules).map_err(|why| invalid("retry_rules", why))?;
        if self
            .lambda_function
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(invalid("lambda_function", "must not be empty".into()));
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "command",
                "must not be empty (leave it out for the image's own)".into(),
            ));
        }
        if let Some(role) = &self.job_role {
            role_path_and_name(role).map_err(|why| invalid("job_role", why))?;
        }
        Ok(())
    }

    /// Checks that every name the definition gives is one this stack may
    /// run: the IAM policies would refuse the others at launch.
    pub fn check_prefixes(&self, prefixes: &Prefixes) -> Result<(), DefinitionError> {
        let checks = [
            (
                "task_definition",
                Some(task_definition_family(&self.task_definition)),
                &prefixes.task_definition,
                "the task definition family",
                "task definitions",
            ),
            (
                "lambda_function",
                self.lambda_function.as_deref().map(function_name),
                &prefixes.task_function,
                "the function",
                "task processors",
            ),
            (
                "job_role",
                self.job_role
                    .as_deref()
                    .map(|r| role_path_and_name(r).unwrap_or(r)),
                &prefixes.job_role,
                "the role",
                "job roles",
            ),
        ];
        for (field, name, prefix, named, what) in checks {
            if let Some(name) = name
                && !name.starts_with(prefix.as_str())
            {
                return Err(DefinitionError::Invalid {
                    name: self.name.clone(),
                    field,
                    problem: format!(
                        "names {named} `{name}`, outside `{prefix}*`, the {what} this stack may use"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks the definition against its task definition as ECS describes
    /// it: the container is one of its containers, and a definition that
    /// may run on Fargate has a task definition Fargate can run.
    pub fn check_task_definition(
        &self,
        facts: &TaskDefinitionFacts,
    ) -> Result<(), DefinitionError> {
        fits_task_definition(
            &self.name,
            &self.task_definition,
            &self.container,
            self.fargate,
            facts,
        )
    }
}

fn fits_task_definition(
    name: &str,
    task_definition: &str,
    container: &str,
    fargate: bool,
    facts: &TaskDefinitionFacts,
) -> Result<(), DefinitionError> {
    let invalid = |field, problem: String| DefinitionError::Invalid {
        name: name.to_owned(),
        field,
        problem,
    };
    if !facts.containers.iter().any(|c| c == container) {
        return Err(invalid(
            "container",
            format!(
                "`{container}` is not a container of task definition `{task_definition}` (it has: {})",
                facts.containers.join(", ")
            ),
        ));
    }
    if fargate && !facts.fargate {
        return Err(invalid(
            "fargate",
            format!(
                "is true, but task definition `{task_definition}` does not list FARGATE in its requiresCompatibilities"
            ),
        ));
    }
    Ok(())
}

/// A job with its definition applied: what will actually run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The definition's job role (an ARN), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_role: Option<String>,
    /// The definition's `interruptible`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub interruptible: bool,
    /// How long the job is expected to run: the definition's
    /// `expected_seconds`, else the mean of its runs when it was resolved;
    /// `None` for a definition's first job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seconds: Option<u32>,
    /// Its tags: its definition's, its own over them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Its definition's spending limit, USD a day, as it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit_usd: Option<f64>,
    /// Its retry rules: its own, else its definition's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_rules: Vec<crate::retry::RetryRule>,
    /// The jobs it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<crate::dependency::Dependency>,
    /// Its children, for an array job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<crate::array::ArraySpec>,
}

impl ResolvedJob {
    /// [`JobDefinition::check_task_definition`] for the job's definition, as
    /// the driver applies it before RunTask.
    pub fn check_task_definition(
        &self,
        facts: &TaskDefinitionFacts,
    ) -> Result<(), DefinitionError> {
        fits_task_definition(
            &self.definition,
            &self.task_definition,
            &self.container,
            self.fargate_allowed,
            facts,
        )
    }
}

/// Why a job cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown job definition `{0}`: only registered definitions run")]
    UnknownDefinition(String),
    #[error(transparent)]
    InvalidDefinition(#[from] DefinitionError),
    #[error(
        "job definition `{0}` runs only its own command (command_override: false): the job names one"
    )]
    CommandOverride(String),
    #[error(
        "`tags`: the job's and its definition `{definition}`'s are {found} in all, more than the limit of {limit}"
    )]
    TooManyTags {
        definition: String,
        found: usize,
        limit: usize,
    },
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
    if job.command.is_some() && !def.command_override {
        return Err(ResolveError::CommandOverride(def.name.clone()));
    }
    let tags = crate::tags::merged(&def.tags, &job.tags);
    if tags.len() > crate::tags::MAX_TAGS {
        return Err(ResolveError::TooManyTags {
            definition: def.name.clone(),
            found: tags.len(),
            limit: crate::tags::MAX_TAGS,
        });
    }
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
        job_role: def.job_role.clone(),
        interruptible: def.interruptible,
        expected_seconds: def.expected_seconds.or(def.runs.mean_seconds()),
        tags,
        daily_limit_usd: def.daily_limit_usd,
        retry_rules: job
            .retry_rules
            .clone()
            .unwrap_or_else(|| def.retry_rules.clone()),
        depends_on: job.depends_on.clone(),
        array: job.array,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::parse;

    pub(crate) fn definition() -> JobDefinition {
        JobDefinition {
            daily_limit_usd: None,
            retry_rules: Vec::new(),
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
            job_role: None,
            interruptible: true,
            command_override: true,
            expected_seconds: None,
            runs: Default::default(),
            tags: Default::default(),
        }
    }

    #[test]
    fn a_jobs_retry_rules_replace_its_definitions() {
        use crate::retry::{Action, RetryRule};
        let rule = |code: &str| RetryRule {
            on_exit_code: Some(code.into()),
            on_reason: None,
            action: Action::Exit,
        };
        let def = JobDefinition {
            retry_rules: vec![rule("2"), rule("3")],
            ..definition()
        };
        let body = r#"{"job_id":"j","definition":"render"}"#;
        let plain = crate::job::parse(body, "m").unwrap();
        assert_eq!(
            resolve(&plain, Some(&def)).unwrap().retry_rules,
            def.retry_rules
        );
        let own = crate::job::parse(
            r#"{"job_id":"j","definition":"render","retry_rules":[{"on_exit_code":"9","action":"exit"}]}"#,
            "m",
        )
        .unwrap();
        assert_eq!(
            resolve(&own, Some(&def)).unwrap().retry_rules,
            vec![rule("9")]
        );
        let bad = JobDefinition {
            retry_rules: vec![rule("x")],
            ..definition()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.starts_with("job definition `render`: `retry_rules` rule 1: `on_exit_code` may contain only digits"), "{e}");
    }

    #[test]
    fn a_job_carries_its_definitions_tags_under_its_own() {
        let def = JobDefinition {
            tags: [("team", "vision"), ("tier", "batch")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ..definition()
        };
        let job = parse(
            r#"{"definition":"render","tags":{"team":"render","run":"7"}}"#,
            "m-1",
        )
        .unwrap();
        let resolved = resolve(&job, Some(&def)).unwrap();
        let tags: Vec<(&str, &str)> = resolved
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tags, [("run", "7"), ("team", "render"), ("tier", "batch")]);
        // Together more than a task takes: refused, with both counted.
        let full = JobDefinition {
            tags: (0..46).map(|i| (format!("d{i}"), "v".into())).collect(),
            ..definition()
        };
        assert_eq!(
            resolve(&job, Some(&full)).unwrap_err().to_string(),
            "`tags`: the job's and its definition `render`'s are 48 in all, more than the limit of 47"
        );
        // A definition's own tags follow AWS's rules.
        let bad = JobDefinition {
            tags: [("aws:team".to_string(), "x".to_string())].into(),
            ..definition()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "job definition `render`: `tags` key `aws:team` is reserved: tag keys starting with aws: (in any case) are AWS's"
        );
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
    fn a_definition_may_keep_jobs_to_its_own_command() {
        let own = JobDefinition {
            command_override: false,
            ..definition()
        };
        let named = parse(
            r#"{"definition":"render","command":["sh","-c","id"]}"#,
            "m-1",
        )
        .unwrap();
        let err = resolve(&named, Some(&own)).unwrap_err();
        assert_eq!(err, ResolveError::CommandOverride("render".into()));
        assert!(err.to_string().contains("command_override: false"), "{err}");
        // Without a command of its own, the job runs the definition's.
        let plain = parse(r#"{"definition":"render"}"#, "m-1").unwrap();
        assert_eq!(resolve(&plain, Some(&own)).unwrap().command, own.command);
        // Allowed unless the definition says otherwise, and said only then.
        let read: JobDefinition = serde_json::from_value(serde_json::json!({
            "name": "render", "task_definition": "render:3", "container": "main",
            "cpu": 1024, "memory": 2048, "timeout_seconds": 600, "max_attempts": 3, "fargate": true,
        }))
        .unwrap();
        assert!(read.command_override);
        assert!(
            !serde_json::to_string(&read)
                .unwrap()
                .contains("command_override")
        );
        assert!(
            serde_json::to_string(&own)
                .unwrap()
                .contains("\"command_override\":false")
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

    #[test]
    fn an_unknown_field_is_refused() {
        let mut v = serde_json::to_value(definition()).unwrap();
        v["fargte"] = serde_json::json!(true);
        let err = serde_json::from_value::<JobDefinition>(v).unwrap_err();
        assert!(err.to_string().contains("unknown field `fargte`"), "{err}");
    }

    #[test]
    fn a_job_role_is_a_role_arn() {
        let with = |role: &str| JobDefinition {
            job_role: Some(role.into()),
            ..definition()
        };
        assert_eq!(
            with("arn:aws:iam::123456789012:role/team/berth-job-x").validate(),
            Ok(())
        );
        for bad in [
            "berth-job-x",
            "arn:aws:iam::1234:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:s3:::123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
        ] {
            let err = with(bad).validate().unwrap_err().to_string();
            assert!(
                err.contains("`job_role` must be an IAM role ARN"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn names_outside_the_prefixes_are_refused() {
        let prefixes = Prefixes {
            task_definition: "berth-prod_".into(),
            task_function: "berth-prod_task-".into(),
            job_role: "berth-prod_job-".into(),
        };
        let good = JobDefinition {
            task_definition:
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/berth-prod_render:3".into(),
            lambda_function: Some(
                "arn:aws:lambda:eu-west-1:123456789012:function:berth-prod_task-r:live".into(),
            ),
            job_role: Some("arn:aws:iam::123456789012:role/berth-prod_job-r".into()),
            ..definition()
        };
        assert_eq!(good.check_prefixes(&prefixes), Ok(()));
        assert_eq!(good.check_prefixes(&Prefixes::default()), Ok(()));
        let cases = [
            (
                JobDefinition {
                    task_definition: "berth-dev_render:1".into(),
                    ..good.clone()
                },
                "`task_definition` names the task definition family `berth-dev_render`, outside `berth-prod_*`",
            ),
            (
                JobDefinition {
                    lambda_function: Some("berth-dev_task-r".into()),
                    ..good.clone()
                },
                "`lambda_function` names the function `berth-dev_task-r`, outside `berth-prod_task-*`",
            ),
            (
                JobDefinition {
                    job_role: Some("arn:aws:iam::123456789012:role/admin".into()),
                    ..good.clone()
                },
                "`job_role` names the role `admin`, outside `berth-prod_job-*`",
            ),
        ];
        for (def, says) in cases {
            let err = def.check_prefixes(&prefixes).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_definition_must_fit_its_task_definition() {
        let facts = TaskDefinitionFacts {
            awsvpc: true,
            sized: true,
            fargate: true,
            containers: vec!["sidecar".into(), "main".into()],
            architecture: None,
        };
        assert_eq!(definition().check_task_definition(&facts), Ok(()));
        let other = JobDefinition {
            container: "app".into(),
            ..definition()
        };
        assert_eq!(
            other.check_task_definition(&facts).unwrap_err().to_string(),
            "job definition `render`: `container` `app` is not a container of task definition `render:3` (it has: sidecar, main)"
        );
        let ec2_only = TaskDefinitionFacts {
            fargate: false,
            ..facts
        };
        assert!(
            definition()
                .check_task_definition(&ec2_only)
                .unwrap_err()
                .to_string()
                .contains(
                    "`fargate` is true, but task definition `render:3` does not list FARGATE"
                )
        );
        let ec2_def = JobDefinition {
            fargate: false,
            ..definition()
        };
        assert_eq!(ec2_def.check_task_definition(&ec2_only), Ok(()));
    }

    #[test]
    fn empty_names_and_commands_are_refused() {
        for (def, says) in [
            (
                JobDefinition {
                    container: " ".into(),
                    ..definition()
                },
                "`container` is required",
            ),
            (
                JobDefinition {
                    lambda_function: Some(String::new()),
                    ..definition()
                },
                "`lambda_function` must not be empty",
            ),
            (
                JobDefinition {
                    command: Some(vec![]),
                    ..definition()
                },
                "`command` must not be empty",
            ),
        ] {
            let err = def.validate().unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
