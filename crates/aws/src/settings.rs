//! The functions' configuration, read from their environment once at start.
//! The variable names are part of berth's contract (the template sets them,
//! the tests rely on them).

use berth_core::capacity::LargestContainer;

/// Declares each variable's constant, and `ALL`, the list of them.
macro_rules! variables {
    ($($name:ident = $value:literal;)*) => {
        $(pub const $name: &str = $value;)*

        /// Every variable above: an empty value is the same as an unset one.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

variables! {
    JOBS_TABLE = "BERTH_JOBS_TABLE";
    DEFINITIONS_TABLE = "BERTH_DEFINITIONS_TABLE";
    CLUSTER = "BERTH_CLUSTER";
    QUEUE_URL = "BERTH_QUEUE_URL";
    DLQ_URL = "BERTH_DLQ_URL";
    EC2_CAPACITY_PROVIDER = "BERTH_EC2_CAPACITY_PROVIDER";
    FARGATE_SUBNETS = "BERTH_FARGATE_SUBNETS";
    FARGATE_SECURITY_GROUPS = "BERTH_FARGATE_SECURITY_GROUPS";
    FARGATE_SPOT = "BERTH_FARGATE_SPOT";
    PRICES = "BERTH_PRICES";
    SCALER_RULE = "BERTH_SCALER_RULE";
    SCALER_FUNCTION = "BERTH_SCALER_FUNCTION";
    FARGATE_PUBLIC_IP = "BERTH_FARGATE_PUBLIC_IP";
    LARGEST_CPU = "BERTH_LARGEST_CPU";
    LARGEST_MEMORY = "BERTH_LARGEST_MEMORY";
    INSTANCE_GROUP = "BERTH_INSTANCE_GROUP";
    INSTANCE_TYPES = "BERTH_INSTANCE_TYPES";
    INSTANCE_VCPUS = "BERTH_INSTANCE_VCPUS";
    INSTANCE_MEMORY_GIB = "BERTH_INSTANCE_MEMORY_GIB";
    INSTANCE_ARCHITECTURES = "BERTH_INSTANCE_ARCHITECTURES";
    LAUNCH_TEMPLATES = "BERTH_LAUNCH_TEMPLATES";
    SCALE_IN_AFTER_SECONDS = "BERTH_SCALE_IN_AFTER_SECONDS";
    HEADROOM = "BERTH_HEADROOM";
    MAX_INTERRUPTIONS = "BERTH_MAX_INTERRUPTIONS";
    MAX_RECEIVES = "BERTH_MAX_RECEIVES";
    STRANDED_AFTER_SECONDS = "BERTH_STRANDED_AFTER_SECONDS";
    SPENDING_DAY_SECONDS = "BERTH_SPENDING_DAY_SECONDS";
    HEARTBEAT_SECONDS = "BERTH_HEARTBEAT_SECONDS";
    TASK_DEFINITION_PREFIX = "BERTH_TASK_DEFINITION_PREFIX";
    TASK_FUNCTION_PREFIX = "BERTH_TASK_FUNCTION_PREFIX";
    JOB_ROLE_PREFIX = "BERTH_JOB_ROLE_PREFIX";
    STACK = "BERTH_STACK";
}

pub use berth_core::stop::DEFAULT_MAX_INTERRUPTIONS;

use berth_core::definition::Prefixes;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub jobs_table: String,
    pub definitions_table: String,
    pub cluster: String,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub ec2_capacity_provider: Option<String>,
    pub fargate_subnets: Vec<String>,
    pub fargate_security_groups: Vec<String>,
    /// Jobs that tolerate interruption run on Fargate Spot (unset: yes).
    pub fargate_spot: bool,
    /// The price model routing and the scaler decide with: the list
    /// prices, overridden by `BERTH_PRICES` (a JSON object of
    /// [`Prices`](berth_core::prices::Prices)' fields).
    pub prices: berth_core::prices::Prices,
    /// Fargate tasks get a public IP: their subnets are public ones, whose
    /// way out is an internet gateway rather than a NAT gateway.
    pub fargate_public_ip: bool,
    /// How many times a job interrupted by the infrastructure (Spot
    /// reclaim, host lost) is re-dispatched before it fails.
    pub max_interruptions: u32,
    /// The job queue's redrive `maxReceiveCount`: at that receive the driver
    /// ends a job it could not launch, before the redrive moves its message.
    pub max_receives: Option<u32>,
    /// How long a job waiting to launch stays quiet before the sweep takes
    /// its message for lost (ecs-runner's default: 20 minutes).
    pub stranded_after_seconds: Option<u32>,
    /// What a day of a spending limit is: a UTC day, unless
    /// `BERTH_SPENDING_DAY_SECONDS` makes it shorter (the local run's soak,
    /// which sees days turn).
    pub spending_day: berth_core::spending::SpendingDay,
    /// How often the task runtime touches a running job's record, 1 to 60
    /// seconds (`None`: every minute, [`LAMBDA_HEARTBEAT_SECONDS`]).
    ///
    /// [`LAMBDA_HEARTBEAT_SECONDS`]: berth_core::launch::LAMBDA_HEARTBEAT_SECONDS
    pub heartbeat_seconds: Option<u32>,
    /// Configured largest container; `None`: derive it from the definitions.
    pub largest: Option<LargestContainer>,
    /// The capacity metric's schedule rule (`BERTH_SCALER_RULE`): it turns
    /// it off at rest. `None`: it runs on whatever calls it.
    pub scaler_rule: Option<String>,
    /// The capacity metric's function (`BERTH_SCALER_FUNCTION`): the driver
    /// wakes it when a job waits for capacity.
    pub scaler_function: Option<String>,
    /// The instance types the cluster may launch (empty: not known): a job
    /// only EC2 runs that none holds is refused. `BERTH_INSTANCE_TYPES`
    /// names types and families; a family stands for its sizes within
    /// `BERTH_INSTANCE_VCPUS` and `BERTH_INSTANCE_MEMORY_GIB` (`LOW-HIGH`)
    /// and of `BERTH_INSTANCE_ARCHITECTURES` (berth-core's
    /// [`Allowed`](berth_core::scaling::choice::Allowed)).
    pub instance_types: Vec<String>,
    /// The scaler's settings, when the cluster has an Auto Scaling group.
    pub scaling: Option<ScalingSettings>,
    /// The names this stack may run (empty: any, as in the local run).
    pub prefixes: Prefixes,
}

/// What the scaler is given: the group, its instance types, how long an
/// instance stays idle before it drains, and the headroom kept while the
/// cluster is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingSettings {
    pub group: String,
    pub instance_types: Vec<String>,
    /// The launch template of each class of type (`BERTH_LAUNCH_TEMPLATES`:
    /// `x86_64=ID:VERSION,arm64=…,gpu=…`); `None`: the group launches
    /// from its own configuration, whatever the scaler chose.
    pub launch_templates: Option<crate::fleet::LaunchTemplates>,
    pub scale_in_after_seconds: u32,
    pub headroom: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name}: {reason}")]
    Unusable { name: &'static str, reason: String },
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let optional = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| optional(name).ok_or(SettingsError::Missing(name));
        let list = |name: &str| -> Vec<String> {
            optional(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let number = |name: &'static str| -> Result<Option<u32>, SettingsError> {
            optional(name)
                .map(|v| {
                    v.parse::<u32>().map_err(|_| SettingsError::Invalid {
                        name,
                        value: v,
                        expected: "a whole number",
                    })
                })
                .transpose()
        };
        let flag_or = |name: &'static str, unset: bool| match optional(name).as_deref() {
            None => Ok(unset),
            Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(SettingsError::Invalid {
                name,
                value: other.into(),
                expected: "true or false",
            }),
        };
        let fargate_spot = flag_or(FARGATE_SPOT, true)?;
        let fargate_public_ip = flag_or(FARGATE_PUBLIC_IP, false)?;
        let prices = berth_core::prices::Prices::from_json(&optional(PRICES).unwrap_or_default())
            .map_err(|e| SettingsError::Unusable {
            name: PRICES,
            reason: e.to_string(),
        })?;
        let largest = match (number(LARGEST_CPU)?, number(LARGEST_MEMORY)?) {
            (None, None) => None,
            (Some(cpu), Some(memory)) => {
                Some(
                    LargestContainer::new(cpu, memory).map_err(|e| SettingsError::Invalid {
                        name: LARGEST_CPU,
                        value: e.0.to_string(),
                        expected: "positive values",
                    })?,
                )
            }
            (Some(_), None) => return Err(SettingsError::Missing(LARGEST_MEMORY)),
            (None, Some(_)) => return Err(SettingsError::Missing(LARGEST_CPU)),
        };
        let range = |name: &'static str| -> Result<Option<(u32, u32)>, SettingsError> {
            optional(name)
                .map(|v| {
                    berth_core::scaling::choice::range(&v)
                        .map_err(|reason| SettingsError::Unusable { name, reason })
                })
                .transpose()
        };
        let architectures = list(INSTANCE_ARCHITECTURES)
            .iter()
            .map(|a| match a.as_str() {
                "x86_64" => Ok(berth_core::prices::Arch::X86_64),
                "arm64" => Ok(berth_core::prices::Arch::Arm64),
                other => Err(SettingsError::Invalid {
                    name: INSTANCE_ARCHITECTURES,
                    value: other.into(),
                    expected: "x86_64 or arm64",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed = berth_core::scaling::choice::Allowed {
            entries: list(INSTANCE_TYPES),
            vcpus: range(INSTANCE_VCPUS)?.unwrap_or((0, u32::MAX)),
            memory_gib: range(INSTANCE_MEMORY_GIB)?.unwrap_or((0, u32::MAX)),
            architectures: if architectures.is_empty() {
                vec![
                    berth_core::prices::Arch::X86_64,
                    berth_core::prices::Arch::Arm64,
                ]
            } else {
                architectures
            },
        };
        let instance_types = allowed.types();
        if !allowed.entries.is_empty() && instance_types.is_empty() {
            return Err(SettingsError::Unusable {
                name: INSTANCE_TYPES,
                reason: "no instance type of these families has the vCPUs, memory and architecture allowed".into(),
            });
        }
        let launch_templates = optional(LAUNCH_TEMPLATES)
            .map(|v| {
                crate::fleet::LaunchTemplates::parse(&v).map_err(|reason| SettingsError::Unusable {
                    name: LAUNCH_TEMPLATES,
                    reason,
                })
            })
            .transpose()?;
        let scaling = match optional(INSTANCE_GROUP) {
            None => None,
            Some(group) => {
                if instance_types.is_empty() {
                    return Err(SettingsError::Missing(INSTANCE_TYPES));
                }
                Some(ScalingSettings {
                    group,
                    instance_types: instance_types.clone(),
                    launch_templates,
                    scale_in_after_seconds: number(SCALE_IN_AFTER_SECONDS)?
                        .unwrap_or(berth_core::scaling::DEFAULT_SCALE_IN_AFTER_SECONDS),
                    headroom: number(HEADROOM)?.unwrap_or(0),
                })
            }
        };
        Ok(Self {
            scaler_rule: optional(SCALER_RULE),
            scaler_function: optional(SCALER_FUNCTION),
            instance_types,
            scaling,
            jobs_table: required(JOBS_TABLE)?,
            definitions_table: required(DEFINITIONS_TABLE)?,
            cluster: required(CLUSTER)?,
            queue_url: optional(QUEUE_URL),
            dlq_url: optional(DLQ_URL),
            ec2_capacity_provider: optional(EC2_CAPACITY_PROVIDER),
            fargate_subnets: list(FARGATE_SUBNETS),
            fargate_security_groups: list(FARGATE_SECURITY_GROUPS),
            fargate_spot,
            prices,
            fargate_public_ip,
            max_interruptions: number(MAX_INTERRUPTIONS)?.unwrap_or(DEFAULT_MAX_INTERRUPTIONS),
            max_receives: number(MAX_RECEIVES)?,
            stranded_after_seconds: number(STRANDED_AFTER_SECONDS)?,
            spending_day: match number(SPENDING_DAY_SECONDS)? {
                Some(0) => {
                    return Err(SettingsError::Invalid {
                        name: SPENDING_DAY_SECONDS,
                        value: "0".into(),
                        expected: "seconds in a day of a spending limit, at least 1",
                    });
                }
                Some(seconds) => berth_core::spending::SpendingDay {
                    length_ms: i64::from(seconds) * 1000,
                    offset_ms: 0,
                },
                None => berth_core::spending::SpendingDay::default(),
            },
            heartbeat_seconds: match number(HEARTBEAT_SECONDS)? {
                Some(s) if !(1..=berth_core::launch::LAMBDA_HEARTBEAT_SECONDS).contains(&s) => {
                    return Err(SettingsError::Invalid {
                        name: HEARTBEAT_SECONDS,
                        value: s.to_string(),
                        expected: "1 to 60 seconds",
                    });
                }
                seconds => seconds,
            },
            largest,
            prefixes: Prefixes {
                task_definition: optional(TASK_DEFINITION_PREFIX).unwrap_or_default(),
                task_function: optional(TASK_FUNCTION_PREFIX).unwrap_or_default(),
                job_role: optional(JOB_ROLE_PREFIX).unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        (JOBS_TABLE, "jobs"),
        (DEFINITIONS_TABLE, "defs"),
        (CLUSTER, "berth"),
    ];

    #[test]
    fn reads_every_variable() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (QUEUE_URL, "http://q"),
            (FARGATE_SUBNETS, "subnet-1, subnet-2,"),
            (FARGATE_SECURITY_GROUPS, "sg-1"),
            (FARGATE_SPOT, "true"),
            (FARGATE_PUBLIC_IP, "true"),
            (LARGEST_CPU, "1024"),
            (LARGEST_MEMORY, "4096"),
            (EC2_CAPACITY_PROVIDER, " "),
            (INSTANCE_GROUP, "berth-instances"),
            (INSTANCE_TYPES, "m5.large, m6i.large"),
            (SCALE_IN_AFTER_SECONDS, "600"),
            (TASK_DEFINITION_PREFIX, "berth-prod_"),
            (TASK_FUNCTION_PREFIX, "berth-prod_task-"),
            (JOB_ROLE_PREFIX, "berth-prod_job-"),
        ]);
        let s = read(&vars).unwrap();
        assert_eq!(
            s.prefixes,
            Prefixes {
                task_definition: "berth-prod_".into(),
                task_function: "berth-prod_task-".into(),
                job_role: "berth-prod_job-".into(),
            }
        );
        assert_eq!(
            (
                s.jobs_table.as_str(),
                s.definitions_table.as_str(),
                s.cluster.as_str()
            ),
            ("jobs", "defs", "berth")
        );
        assert_eq!(s.queue_url.as_deref(), Some("http://q"));
        assert_eq!(s.fargate_subnets, ["subnet-1", "subnet-2"]);
        assert_eq!(s.fargate_security_groups, ["sg-1"]);
        assert!(s.fargate_spot);
        assert!(
            read(&BASE).unwrap().fargate_spot,
            "Fargate Spot unless said"
        );
        assert_eq!(read(&BASE).unwrap().prices, Default::default());
        assert!(s.fargate_public_ip);
        assert!(
            !read(&BASE).unwrap().fargate_public_ip,
            "private by default"
        );
        assert_eq!(s.largest, Some(LargestContainer::new(1024, 4096).unwrap()));
        assert_eq!(s.ec2_capacity_provider, None, "blank is unset");
        assert_eq!(
            s.scaling,
            Some(ScalingSettings {
                group: "berth-instances".into(),
                instance_types: vec!["m5.large".into(), "m6i.large".into()],
                launch_templates: None,
                scale_in_after_seconds: 600,
                headroom: 0,
            })
        );
        assert_eq!(read(&BASE).unwrap().scaling, None, "no group, no scaler");
        assert_eq!(s.instance_types, ["m5.large", "m6i.large"]);
        assert!(read(&BASE).unwrap().instance_types.is_empty());
    }

    #[test]
    fn the_allowed_types_are_families_within_ranges() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (INSTANCE_GROUP, "berth-instances"),
            (INSTANCE_TYPES, "m7g, g4dn, c5.large"),
            (INSTANCE_VCPUS, "2-8"),
            (INSTANCE_MEMORY_GIB, "8-16"),
            (INSTANCE_ARCHITECTURES, "x86_64"),
            (LAUNCH_TEMPLATES, "x86_64=lt-1:2,gpu=lt-3:1"),
        ]);
        let s = read(&vars).unwrap();
        // m7g is arm64; g4dn within the ranges; a name as given.
        assert_eq!(s.instance_types, ["g4dn.xlarge", "c5.large"]);
        let scaling = s.scaling.unwrap();
        assert_eq!(scaling.instance_types, s.instance_types);
        let templates = scaling.launch_templates.unwrap();
        assert_eq!(templates.gpu.map(|t| t.id), Some("lt-3".to_owned()));
        for (name, value, says) in [
            (
                INSTANCE_VCPUS,
                "64-2",
                "BERTH_INSTANCE_VCPUS: \"64-2\": the low end",
            ),
            (
                INSTANCE_ARCHITECTURES,
                "i386",
                "BERTH_INSTANCE_ARCHITECTURES=\"i386\": expected x86_64 or arm64",
            ),
            (
                LAUNCH_TEMPLATES,
                "arm64=lt-2:1",
                "BERTH_LAUNCH_TEMPLATES: no x86_64",
            ),
            (
                INSTANCE_TYPES,
                "m7g",
                "BERTH_INSTANCE_TYPES: no instance type",
            ),
        ] {
            let mut bad = vars.clone();
            bad.retain(|(k, _)| *k != name);
            bad.push((name, value));
            let error = read(&bad).unwrap_err().to_string();
            assert!(error.starts_with(says), "{error}");
        }
    }

    #[test]
    fn says_what_is_missing_or_wrong() {
        assert_eq!(read(&BASE[..2]), Err(SettingsError::Missing(CLUSTER)));
        let mut vars = BASE.to_vec();
        vars.push((FARGATE_SPOT, "yes"));
        assert_eq!(
            read(&vars).unwrap_err().to_string(),
            "BERTH_FARGATE_SPOT=\"yes\": expected true or false"
        );
        let mut vars = BASE.to_vec();
        vars.push((FARGATE_PUBLIC_IP, "TRUE"));
        assert_eq!(
            read(&vars).unwrap_err().to_string(),
            "BERTH_FARGATE_PUBLIC_IP=\"TRUE\": expected true or false"
        );
        let mut vars = BASE.to_vec();
        vars.push((LARGEST_CPU, "1024"));
        assert_eq!(read(&vars), Err(SettingsError::Missing(LARGEST_MEMORY)));
        vars.push((LARGEST_MEMORY, "4GiB"));
        assert_eq!(
            read(&vars).unwrap_err().to_string(),
            "BERTH_LARGEST_MEMORY=\"4GiB\": expected a whole number"
        );
        let mut vars = BASE.to_vec();
        vars.push((PRICES, r#"{"spot_fraction":0.3}"#));
        assert_eq!(read(&vars).unwrap().prices.spot_fraction, 0.3);
        let mut vars = BASE.to_vec();
        vars.push((PRICES, r#"{"spot_fracton":0.3}"#));
        let e = read(&vars).unwrap_err().to_string();
        assert!(
            e.starts_with("BERTH_PRICES: prices: not valid: unknown field `spot_fracton`"),
            "{e}"
        );
        let mut vars = BASE.to_vec();
        vars.push((INSTANCE_GROUP, "g"));
        assert_eq!(read(&vars), Err(SettingsError::Missing(INSTANCE_TYPES)));
        let mut vars = BASE.to_vec();
        vars.push((HEARTBEAT_SECONDS, "5"));
        assert_eq!(read(&vars).unwrap().heartbeat_seconds, Some(5));
        for out_of_range in ["0", "61"] {
            let mut vars = BASE.to_vec();
            vars.push((HEARTBEAT_SECONDS, out_of_range));
            assert_eq!(
                read(&vars).unwrap_err().to_string(),
                format!("BERTH_HEARTBEAT_SECONDS=\"{out_of_range}\": expected 1 to 60 seconds")
            );
        }
    }
}
