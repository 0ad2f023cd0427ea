//! Routing: where a resolved job runs, `auto` or forced, with a one-line
//! reason. A plan only ever names places the job fits.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::definition::ResolvedJob;
use crate::job::Processor;
use crate::launch::LaunchNumber;
use crate::limits::{ecs, fargate, lambda};

/// Where a job runs, as recorded in the job store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Route {
    Lambda,
    Ec2,
    Fargate,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lambda => "LAMBDA",
            Self::Ec2 => "EC2",
            Self::Fargate => "FARGATE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Lambda, Self::Ec2, Self::Fargate]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid Fargate task size covering a job's cpu and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FargateSize {
    pub cpu: u32,
    pub memory: u32,
}

/// Where to launch a job, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Invoke this Lambda function.
    Lambda { function: String },
    /// RunTask on the EC2 capacity; when it has no room, Fargate with this
    /// size if the job may go there, else wait for capacity.
    Ec2 {
        fargate_fallback: Option<FargateSize>,
    },
    /// RunTask on Fargate with this size.
    Fargate { size: FargateSize },
}

impl Plan {
    /// The route tried first.
    pub fn route(&self) -> Route {
        match self {
            Self::Lambda { .. } => Route::Lambda,
            Self::Ec2 { .. } => Route::Ec2,
            Self::Fargate { .. } => Route::Fargate,
        }
    }
}

/// A plan and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    pub reason: String,
}

/// The job cannot run where it asked to (or, for `auto`, anywhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("processor `{processor}` cannot run this job: {reason}")]
pub struct RouteError {
    pub processor: Processor,
    pub reason: String,
}

/// Decides where `job` runs.
pub fn route(job: &ResolvedJob) -> Result<Decision, RouteError> {
    let refuse = |reason: String| {
        Err(RouteError {
            processor: job.processor,
            reason,
        })
    };
    match job.processor {
        Processor::Lambda => match lambda_fit(job) {
            Ok(function) => Ok(decision(
                Plan::Lambda { function },
                "forced: processor lambda".into(),
            )),
            Err(why) => refuse(why),
        },
        Processor::Ec2 => match ecs_fit(job) {
            Ok(()) => Ok(decision(
                Plan::Ec2 {
                    fargate_fallback: None,
                },
                "forced: processor ec2".into(),
            )),
            Err(why) => refuse(why),
        },
        Processor::Fargate => match fargate_fit(job) {
            Ok(size) => Ok(decision(
                Plan::Fargate { size },
                format!("forced: processor fargate, task size {}", show_size(size)),
            )),
            Err(why) => refuse(why),
        },
        Processor::Auto => auto(job),
    }
}

fn auto(job: &ResolvedJob) -> Result<Decision, RouteError> {
    if job.gpu > 0 {
        return match ecs_fit(job) {
            Ok(()) => Ok(decision(
                Plan::Ec2 {
                    fargate_fallback: None,
                },
                format!("gpu={}: only EC2 has GPUs", job.gpu),
            )),
            Err(why) => Err(RouteError {
                processor: Processor::Auto,
                reason: why,
            }),
        };
    }
    let not_lambda = match lambda_fit(job) {
        Ok(function) => {
            return Ok(decision(Plan::Lambda { function }, "fits Lambda".into()));
        }
        Err(why) => why,
    };
    if let Err(not_ecs) = ecs_fit(job) {
        return Err(RouteError {
            processor: Processor::Auto,
            reason: format!("{not_lambda}; {not_ecs}"),
        });
    }
    Ok(match fargate_fit(job) {
        Ok(size) => decision(
            Plan::Ec2 {
                fargate_fallback: Some(size),
            },
            format!(
                "{not_lambda}; EC2 first, Fargate {} when EC2 has no room",
                show_size(size)
            ),
        ),
        Err(not_fargate) => decision(
            Plan::Ec2 {
                fargate_fallback: None,
            },
            format!("{not_lambda}; EC2 only: {not_fargate}"),
        ),
    })
}

fn decision(plan: Plan, reason: String) -> Decision {
    Decision { plan, reason }
}

/// The Lambda function that can run `job`, or why none can.
pub fn lambda_fit(job: &ResolvedJob) -> Result<String, String> {
    let Some(function) = job.lambda_function.clone() else {
        return Err(format!(
            "definition `{}` has no Lambda function",
            job.definition
        ));
    };
    if job.gpu > lambda::MAX_GPU {
        return Err(format!("gpu={}: Lambda has no GPUs", job.gpu));
    }
    if job.memory > lambda::MAX_MEMORY_MIB {
        return Err(format!(
            "memory {} MiB is over Lambda's {} MiB",
            job.memory,
            lambda::MAX_MEMORY_MIB
        ));
    }
    if job.cpu > lambda::MAX_CPU_UNITS {
        return Err(format!(
            "cpu {} is over Lambda's {} units",
            job.cpu,
            lambda::MAX_CPU_UNITS
        ));
    }
    if job.timeout_seconds > lambda::MAX_TIMEOUT_SECONDS {
        return Err(format!(
            "timeout {} s is over Lambda's {} s",
            job.timeout_seconds,
            lambda::MAX_TIMEOUT_SECONDS
        ));
    }
    let payload = lambda_payload_bytes(job);
    if payload > lambda::MAX_ASYNC_PAYLOAD_BYTES {
        return Err(format!(
            "payload {payload} bytes is over Lambda's async limit of {} bytes",
            lambda::MAX_ASYNC_PAYLOAD_BYTES
        ));
    }
    Ok(function)
}

/// The size of the job as an asynchronous invoke payload.
pub fn lambda_payload_bytes(job: &ResolvedJob) -> usize {
    serde_json::to_vec(job).map_or(usize::MAX, |v| v.len())
}

/// The smallest Fargate task size that covers `job`, or why there is none.
pub fn fargate_fit(job: &ResolvedJob) -> Result<FargateSize, String> {
    if !job.fargate_allowed {
        return Err(format!(
            "definition `{}` does not allow Fargate",
            job.definition
        ));
    }
    if job.gpu > fargate::MAX_GPU {
        return Err(format!("gpu={}: Fargate has no GPUs", job.gpu));
    }
    ecs_fit(job)?;
    fargate_size(job.cpu, job.memory).ok_or_else(|| {
        format!(
            "{} cpu / {} MiB is over Fargate's largest task ({} cpu / {} MiB)",
            job.cpu,
            job.memory,
            fargate::MAX_CPU_UNITS,
            fargate::MAX_MEMORY_MIB
        )
    })
}

/// The smallest valid Fargate task size with at least `cpu` units and
/// `memory` MiB.
pub fn fargate_size(cpu: u32, memory: u32) -> Option<FargateSize> {
    fargate::TASK_SIZES
        .iter()
        .filter(|(c, _)| *c >= cpu)
        .find_map(|(c, mem)| {
            mem.at_least(memory)
                .map(|m| FargateSize { cpu: *c, memory: m })
        })
}

/// Whether the job's overrides fit what RunTask accepts.
pub fn ecs_fit(job: &ResolvedJob) -> Result<(), String> {
    let chars = overrides_chars(job);
    if chars > ecs::MAX_OVERRIDES_CHARS {
        return Err(format!(
            "command and environment take {chars} characters of ECS overrides, over the limit of {}",
            ecs::MAX_OVERRIDES_CHARS
        ));
    }
    Ok(())
}

/// The length of the RunTask `overrides` berth sends for `job`, framing
/// included, as ECS counts it: at its longest launch number, and with the
/// larger of the task sizes it may be sent with (its own on EC2, the Fargate
/// size that covers it).
pub fn overrides_chars(job: &ResolvedJob) -> usize {
    let mut sizes = vec![(job.cpu, job.memory)];
    if let Some(size) = fargate_size(job.cpu, job.memory) {
        sizes.push((size.cpu, size.memory));
    }
    sizes
        .into_iter()
        .map(|size| {
            let sent = crate::launch::overrides(job, LaunchNumber::MAX, Some(size));
            serde_json::to_string(&sent).map_or(usize::MAX, |t| t.chars().count())
        })
        .max()
        .unwrap_or(0)
}

fn show_size(size: FargateSize) -> String {
    format!("{} cpu / {} MiB", size.cpu, size.memory)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::limits::message as lim;

    fn job() -> ResolvedJob {
        ResolvedJob {
            job_id: "j".into(),
            definition: "render".into(),
            task_definition: "render:1".into(),
            container: "main".into(),
            lambda_function: Some("render-fn".into()),
            command: None,
            environment: BTreeMap::new(),
            cpu: 1024,
            memory: 2048,
            gpu: 0,
            timeout_seconds: 300,
            max_attempts: 3,
            processor: Processor::Auto,
            fargate_allowed: true,
            job_role: None,
        }
    }

    #[test]
    fn the_overrides_size_counts_all_that_run_task_sends() {
        // berth's own variables, the GPU requirement and the task size go
        // with every launch.
        let plain = overrides_chars(&job());
        let gpu = overrides_chars(&ResolvedJob { gpu: 1, ..job() });
        assert!(gpu > plain + "resourceRequirements".len(), "{plain} {gpu}");
        let sent = crate::launch::overrides(&job(), u32::MAX, Some((1024, 2048)));
        let text = serde_json::to_string(&sent).unwrap();
        assert!(
            text.contains("BERTH_JOB_ID") && text.contains("4294967295"),
            "{text}"
        );
        assert_eq!(plain, text.chars().count());
    }

    #[test]
    fn auto_routing_table() {
        let fb = |cpu, memory| Plan::Ec2 {
            fargate_fallback: Some(FargateSize { cpu, memory }),
        };
        let rows: Vec<(ResolvedJob, Plan, &str)> = vec![
            (
                job(),
                Plan::Lambda {
                    function: "render-fn".into(),
                },
                "fits Lambda",
            ),
            (
                ResolvedJob { gpu: 1, ..job() },
                Plan::Ec2 {
                    fargate_fallback: None,
                },
                "gpu=1: only EC2 has GPUs",
            ),
            (
                ResolvedJob {
                    lambda_function: None,
                    ..job()
                },
                fb(1024, 2048),
                "definition `render` has no Lambda function; EC2 first, Fargate 1024 cpu / 2048 MiB when EC2 has no room",
            ),
            (
                ResolvedJob {
                    timeout_seconds: 901,
                    ..job()
                },
                fb(1024, 2048),
                "timeout 901 s is over Lambda's 900 s; EC2 first",
            ),
            (
                ResolvedJob {
                    memory: 10_241,
                    cpu: 3000,
                    ..job()
                },
                fb(4096, 11_264),
                "memory 10241 MiB is over Lambda's 10240 MiB",
            ),
            (
                ResolvedJob { cpu: 6145, ..job() },
                fb(8192, 16_384),
                "cpu 6145 is over Lambda's 6144 units",
            ),
            (
                ResolvedJob {
                    lambda_function: None,
                    fargate_allowed: false,
                    ..job()
                },
                Plan::Ec2 {
                    fargate_fallback: None,
                },
                "EC2 only: definition `render` does not allow Fargate",
            ),
            (
                ResolvedJob {
                    lambda_function: None,
                    cpu: 32_768,
                    ..job()
                },
                Plan::Ec2 {
                    fargate_fallback: None,
                },
                "EC2 only: 32768 cpu / 2048 MiB is over Fargate's largest task",
            ),
        ];
        for (j, plan, reason) in rows {
            let d = route(&j).unwrap_or_else(|e| panic!("{j:?}: {e}"));
            assert_eq!(d.plan, plan, "{j:?}");
            assert!(
                d.reason.contains(reason),
                "{:?} does not say {reason:?}",
                d.reason
            );
        }
    }

    #[test]
    fn forced_routes_are_honoured_or_refused_with_the_reason() {
        let forced = |p| ResolvedJob {
            processor: p,
            ..job()
        };
        assert_eq!(
            route(&forced(Processor::Ec2)).unwrap().plan,
            Plan::Ec2 {
                fargate_fallback: None
            }
        );
        assert_eq!(
            route(&forced(Processor::Fargate)).unwrap().plan,
            Plan::Fargate {
                size: FargateSize {
                    cpu: 1024,
                    memory: 2048
                }
            }
        );
        assert_eq!(
            route(&forced(Processor::Lambda)).unwrap().plan.route(),
            Route::Lambda
        );

        let e = route(&ResolvedJob {
            gpu: 2,
            ..forced(Processor::Fargate)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `fargate` cannot run this job: gpu=2: Fargate has no GPUs"
        );
        let e = route(&ResolvedJob {
            lambda_function: None,
            ..forced(Processor::Lambda)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `lambda` cannot run this job: definition `render` has no Lambda function"
        );
        let e = route(&ResolvedJob {
            fargate_allowed: false,
            ..forced(Processor::Fargate)
        })
        .unwrap_err();
        assert!(e.reason.contains("does not allow Fargate"));
    }

    #[test]
    fn overrides_too_large_for_ecs_go_to_lambda_or_are_refused() {
        let mut big = job();
        for i in 0..200 {
            big.environment
                .insert(format!("VARIABLE_{i:03}"), "x".repeat(30));
        }
        assert!(overrides_chars(&big) > ecs::MAX_OVERRIDES_CHARS);
        assert_eq!(route(&big).unwrap().plan.route(), Route::Lambda);
        let e = route(&ResolvedJob {
            lambda_function: None,
            ..big.clone()
        })
        .unwrap_err();
        assert!(
            e.reason
                .contains("of ECS overrides, over the limit of 8192"),
            "{e}"
        );
        assert!(
            route(&ResolvedJob {
                processor: Processor::Ec2,
                ..big
            })
            .is_err()
        );
    }

    #[test]
    fn fargate_sizes_round_up_to_a_valid_pair() {
        let size = |c, m| fargate_size(c, m).map(|s| (s.cpu, s.memory));
        assert_eq!(size(128, 6), Some((256, 512)));
        assert_eq!(size(256, 1500), Some((256, 2048)));
        assert_eq!(size(256, 2049), Some((512, 3072)));
        assert_eq!(size(1024, 3000), Some((1024, 3072)));
        assert_eq!(size(4096, 30_721), Some((8192, 32_768)));
        assert_eq!(size(16_384, 122_880), Some((16_384, 122_880)));
        assert_eq!(size(16_385, 1024), None);
        assert_eq!(size(1024, 122_881), None);
    }

    fn is_valid_fargate_pair(cpu: u32, memory: u32) -> bool {
        fargate::TASK_SIZES
            .iter()
            .any(|(c, mem)| *c == cpu && mem.at_least(memory) == Some(memory))
    }

    fn any_job() -> impl Strategy<Value = ResolvedJob> {
        (
            (
                lim::CPU_MIN..=40_000u64,
                lim::MEMORY_MIN..=200_000u64,
                0..=2u64,
                lim::TIMEOUT_MIN..=2000u64,
            ),
            (
                any::<bool>(),
                any::<bool>(),
                prop::sample::select(Processor::ALL.to_vec()),
            ),
            prop::collection::btree_map("[A-Z_]{1,12}", ".{0,40}", 0..40),
        )
            .prop_map(
                |((cpu, memory, gpu, timeout), (has_fn, fargate, processor), environment)| {
                    ResolvedJob {
                        cpu: cpu as u32,
                        memory: memory as u32,
                        gpu: gpu as u32,
                        timeout_seconds: timeout as u32,
                        lambda_function: has_fn.then(|| "fn".to_string()),
                        fargate_allowed: fargate,
                        processor,
                        environment,
                        ..job()
                    }
                },
            )
    }

    proptest! {
        /// A route is always feasible for the job, the fallback too.
        #[test]
        fn a_plan_only_names_places_the_job_fits(j in any_job()) {
            match route(&j) {
                Ok(d) => {
                    match &d.plan {
                        Plan::Lambda { function } => {
                            prop_assert_eq!(lambda_fit(&j), Ok(function.clone()));
                            prop_assert!(j.gpu == 0 && j.memory <= lambda::MAX_MEMORY_MIB);
                            prop_assert!(j.timeout_seconds <= lambda::MAX_TIMEOUT_SECONDS);
                        }
                        Plan::Ec2 { fargate_fallback } => {
                            prop_assert!(ecs_fit(&j).is_ok());
                            if let Some(size) = fargate_fallback {
                                prop_assert_eq!(fargate_fit(&j), Ok(*size));
                            }
                        }
                        Plan::Fargate { size } => {
                            prop_assert_eq!(fargate_fit(&j), Ok(*size));
                        }
                    }
                    if let Plan::Ec2 { fargate_fallback: Some(s) } | Plan::Fargate { size: s } = d.plan {
                        prop_assert!(j.gpu == 0 && j.fargate_allowed);
                        prop_assert!(is_valid_fargate_pair(s.cpu, s.memory));
                        prop_assert!(s.cpu >= j.cpu && s.memory >= j.memory);
                    }
                    // A forced processor is never overridden.
                    let forced = match j.processor {
                        Processor::Auto => None,
                        Processor::Lambda => Some(Route::Lambda),
                        Processor::Ec2 => Some(Route::Ec2),
                        Processor::Fargate => Some(Route::Fargate),
                    };
                    if let Some(r) = forced {
                        prop_assert_eq!(d.plan.route(), r);
                    }
                    if j.gpu > 0 {
                        prop_assert_eq!(d.plan.route(), Route::Ec2);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e.processor, j.processor);
                    if j.processor == Processor::Auto {
                        prop_assert!(lambda_fit(&j).is_err() && ecs_fit(&j).is_err());
                    }
                }
            }
        }

        /// The Fargate size is the smallest valid pair covering the job.
        #[test]
        fn fargate_size_is_the_smallest_cover(cpu in 1u32..20_000, memory in 1u32..130_000) {
            let all: Vec<(u32, u32)> = fargate::TASK_SIZES
                .iter()
                .flat_map(|(c, _)| (512..=122_880).step_by(512).filter(move |m| is_valid_fargate_pair(*c, *m)).map(move |m| (*c, m)))
                .collect();
            let best = all.iter().filter(|(c, m)| *c >= cpu && *m >= memory).min_by_key(|(c, m)| (*c, *m)).copied();
            prop_assert_eq!(fargate_size(cpu, memory).map(|s| (s.cpu, s.memory)), best);
        }
    }
}
