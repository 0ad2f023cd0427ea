//! Routing: where a resolved job runs, `auto` or forced, with a one-line
//! reason. A plan only ever names places the job fits.
//!
//! `auto` takes the cheapest route that meets the job's start, by the price
//! model ([`crate::prices`]):
//! 1. a GPU, a job larger than Fargate or a definition that does not allow
//!    Fargate: EC2 only (it waits for capacity when there is no room);
//! 2. room on a running instance: EC2, tried first for every ECS job (the
//!    instance is paid for already, so the job costs nothing more there);
//! 3. Lambda, where the job fits it and is expected to cost no more there
//!    than on Fargate (which bills a minute at least, from the image pull):
//!    expected by its definition's `expected_seconds`, else the mean of the
//!    definition's runs; a definition's first job, with neither, is priced
//!    at its timeout, the longest it can run;
//! 4. Fargate Spot, for a job that tolerates interruption (its definition's
//!    choice, yes unless it says otherwise) and has been interrupted fewer
//!    than `max_interruptions` times; when Fargate Spot has no capacity the
//!    driver goes on to Fargate at once;
//! 5. otherwise Fargate.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::definition::ResolvedJob;
use crate::job::Processor;
use crate::launch::LaunchNumber;
use crate::limits::{ecs, fargate, lambda};
use crate::prices::{Arch, Prices};

/// Where a job runs, as recorded in the job store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Route {
    #[serde(rename = "LAMBDA")]
    Lambda,
    #[serde(rename = "EC2")]
    Ec2,
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "FARGATE_SPOT")]
    FargateSpot,
}

impl Route {
    pub const ALL: [Self; 4] = [Self::Lambda, Self::Ec2, Self::Fargate, Self::FargateSpot];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lambda => "LAMBDA",
            Self::Ec2 => "EC2",
            Self::Fargate => "FARGATE",
            Self::FargateSpot => "FARGATE_SPOT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// An ECS task (on an instance or on Fargate).
    pub fn is_ecs(self) -> bool {
        self != Self::Lambda
    }

    /// On Fargate, Spot or not.
    pub fn is_fargate(self) -> bool {
        matches!(self, Self::Fargate | Self::FargateSpot)
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

/// A launch on Fargate: the task's size, and whether on Fargate Spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnFargate {
    pub size: FargateSize,
    pub spot: bool,
}

impl OnFargate {
    pub fn route(self) -> Route {
        if self.spot {
            Route::FargateSpot
        } else {
            Route::Fargate
        }
    }
}

/// Where to launch a job, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Invoke this Lambda function.
    Lambda { function: String },
    /// RunTask on the EC2 capacity; when it has no room, on Fargate this
    /// way if the job may go there, else wait for capacity.
    Ec2 { fargate_fallback: Option<OnFargate> },
    /// RunTask on Fargate (on Fargate Spot when `spot`; with no Fargate
    /// Spot capacity, on Fargate).
    Fargate(OnFargate),
}

impl Plan {
    /// The route tried first.
    pub fn route(&self) -> Route {
        match self {
            Self::Lambda { .. } => Route::Lambda,
            Self::Ec2 { .. } => Route::Ec2,
            Self::Fargate(f) => f.route(),
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

/// What routing knows beside the job: the prices, how long the job is
/// expected to run, and how often it has been interrupted.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub prices: &'a Prices,
    /// Seconds the job is expected to run: its definition's
    /// `expected_seconds`; `None` when unknown.
    pub expected_seconds: Option<f64>,
    /// Interruptions by the infrastructure so far.
    pub interruptions: u32,
    /// Interruptions on Spot before the job goes on demand
    /// (`BERTH_MAX_INTERRUPTIONS`).
    pub max_interruptions: u32,
    /// Whether the deployment uses Fargate Spot at all
    /// (`BERTH_FARGATE_SPOT`).
    pub fargate_spot: bool,
    /// The instance types the cluster may launch (`BERTH_INSTANCE_TYPES`);
    /// a job only EC2 runs that none holds is refused. `None`: not known,
    /// nothing refused for it.
    pub ec2_types: Option<&'a [crate::scaling::InstanceType]>,
}

impl<'a> Context<'a> {
    /// A first attempt at the list prices, with the job's own expected run.
    pub fn first(prices: &'a Prices, job: &ResolvedJob) -> Self {
        Self {
            prices,
            expected_seconds: job.expected_seconds.map(f64::from),
            interruptions: 0,
            max_interruptions: crate::stop::DEFAULT_MAX_INTERRUPTIONS,
            fargate_spot: true,
            ec2_types: None,
        }
    }

    /// Whether the job goes on Fargate Spot: the deployment uses it, the
    /// job tolerates interruption and has not been interrupted
    /// `max_interruptions` times yet.
    pub fn spot(&self, job: &ResolvedJob) -> bool {
        self.fargate_spot && job.interruptible && self.interruptions < self.max_interruptions
    }
}

/// A definition's successful runs so far: their count and their whole
/// seconds in all (the definitions table's `runs` and `run_seconds`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runs {
    pub count: u64,
    pub seconds: u64,
}

impl Runs {
    pub fn record(&mut self, seconds: f64) {
        self.count += 1;
        self.seconds += seconds.max(0.0).round() as u64;
    }

    /// Their mean, in whole seconds (at least 1); `None` before the first.
    pub fn mean_seconds(&self) -> Option<u32> {
        (self.count > 0).then(|| {
            u32::try_from(self.seconds.div_ceil(self.count))
                .unwrap_or(u32::MAX)
                .max(1)
        })
    }
}

/// What the job is expected to cost on each paid route that runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub lambda: Option<f64>,
    pub fargate: Option<f64>,
}

/// The expected cost of `job` on Lambda and on Fargate (Spot where it goes
/// there), for a run of `seconds`.
pub fn costs(job: &ResolvedJob, ctx: &Context<'_>, seconds: f64) -> Costs {
    let arch = Arch::X86_64;
    Costs {
        lambda: lambda_fit(job)
            .ok()
            .map(|_| ctx.prices.lambda(job.cpu, job.memory, arch, seconds)),
        fargate: fargate_fit(job)
            .ok()
            .map(|size| ctx.prices.fargate(size, arch, ctx.spot(job), seconds)),
    }
}

/// Decides where `job` runs. A job only EC2 runs is refused when no
/// instance type of the group holds it.
pub fn route(job: &ResolvedJob, ctx: &Context<'_>) -> Result<Decision, RouteError> {
    let decision = choose(job, ctx)?;
    if let (
        Plan::Ec2 {
            fargate_fallback: None,
        },
        Some(types),
    ) = (&decision.plan, ctx.ec2_types)
    {
        let need = crate::scaling::Room::new(job.cpu, job.memory, job.gpu);
        if let Some(why) = crate::scaling::unplaceable(need, types) {
            return Err(RouteError {
                processor: job.processor,
                reason: format!("{}; {why}", decision.reason),
            });
        }
    }
    Ok(decision)
}

fn choose(job: &ResolvedJob, ctx: &Context<'_>) -> Result<Decision, RouteError> {
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
            Ok(size) => {
                let on = OnFargate {
                    size,
                    spot: ctx.spot(job),
                };
                Ok(decision(
                    Plan::Fargate(on),
                    format!(
                        "forced: processor fargate, {} task size {}",
                        show_fargate(on),
                        show_size(size)
                    ),
                ))
            }
            Err(why) => refuse(why),
        },
        Processor::Auto => auto(job, ctx),
    }
}

fn auto(job: &ResolvedJob, ctx: &Context<'_>) -> Result<Decision, RouteError> {
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
    let on_lambda = lambda_fit(job);
    if let Err(not_ecs) = ecs_fit(job) {
        return match on_lambda {
            Ok(function) => Ok(decision(
                Plan::Lambda { function },
                format!("fits Lambda; {not_ecs}"),
            )),
            Err(not_lambda) => Err(RouteError {
                processor: Processor::Auto,
                reason: format!("{not_lambda}; {not_ecs}"),
            }),
        };
    }
    let size = match fargate_fit(job) {
        Ok(size) => size,
        Err(not_fargate) => {
            return Ok(match on_lambda {
                Ok(function) => decision(
                    Plan::Lambda { function },
                    format!("fits Lambda; not Fargate: {not_fargate}"),
                ),
                Err(not_lambda) => decision(
                    Plan::Ec2 {
                        fargate_fallback: None,
                    },
                    format!("{not_lambda}; EC2 only: {not_fargate}"),
                ),
            });
        }
    };
    let on = OnFargate {
        size,
        spot: ctx.spot(job),
    };
    let on_fargate = |why: String| {
        decision(
            Plan::Ec2 {
                fargate_fallback: Some(on),
            },
            format!(
                "{why}; EC2 when an instance has room (paid for already), else {} {}",
                show_fargate(on),
                show_size(size)
            ),
        )
    };
    let function = match on_lambda {
        Ok(function) => function,
        Err(not_lambda) => return Ok(on_fargate(not_lambda)),
    };
    // With no expected run yet (a definition's first job), the job is
    // priced at its timeout, the longest it can run: Lambda only where it
    // costs no more even then.
    let (seconds, known) = match ctx.expected_seconds {
        Some(s) => (s, "a"),
        None => (
            f64::from(job.timeout_seconds),
            "no run to go by yet; at its timeout, a",
        ),
    };
    let c = costs(job, ctx, seconds);
    let (lambda, fargate) = (c.lambda.unwrap_or(f64::MAX), c.fargate.unwrap_or(f64::MAX));
    let priced = format!(
        "{known} {seconds:.0} s run costs ${lambda:.6} on Lambda, ${fargate:.6} on {}",
        show_fargate(on)
    );
    Ok(if lambda <= fargate {
        decision(Plan::Lambda { function }, format!("fits Lambda: {priced}"))
    } else {
        on_fargate(priced)
    })
}

fn show_fargate(on: OnFargate) -> &'static str {
    if on.spot { "Fargate Spot" } else { "Fargate" }
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

    /// A first attempt at the list prices, with no expected run.
    fn route_first(j: &ResolvedJob) -> Result<Decision, RouteError> {
        route(j, &Context::first(&Prices::default(), j))
    }

    fn with(prices: &Prices, expected: f64, interruptions: u32) -> Context<'_> {
        Context {
            prices,
            expected_seconds: Some(expected),
            interruptions,
            max_interruptions: 2,
            fargate_spot: true,
            ec2_types: None,
        }
    }

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
            interruptible: true,
            expected_seconds: None,
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
            fargate_fallback: Some(OnFargate {
                size: FargateSize { cpu, memory },
                spot: true,
            }),
        };
        let rows: Vec<(ResolvedJob, Plan, &str)> = vec![
            (
                job(),
                fb(1024, 2048),
                "no run to go by yet; at its timeout, a 300 s run costs $0.010000 on Lambda, $0.001296 on Fargate Spot; EC2 when an instance has room",
            ),
            (
                ResolvedJob {
                    timeout_seconds: 5,
                    ..job()
                },
                Plan::Lambda {
                    function: "render-fn".into(),
                },
                "fits Lambda: no run to go by yet; at its timeout, a 5 s run costs $0.000167 on Lambda",
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
                "definition `render` has no Lambda function; EC2 when an instance has room (paid for already), else Fargate Spot 1024 cpu / 2048 MiB",
            ),
            (
                ResolvedJob {
                    timeout_seconds: 901,
                    ..job()
                },
                fb(1024, 2048),
                "timeout 901 s is over Lambda's 900 s; EC2 when an instance has room",
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
            let d = route_first(&j).unwrap_or_else(|e| panic!("{j:?}: {e}"));
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
            route_first(&forced(Processor::Ec2)).unwrap().plan,
            Plan::Ec2 {
                fargate_fallback: None
            }
        );
        assert_eq!(
            route_first(&forced(Processor::Fargate)).unwrap().plan,
            Plan::Fargate(OnFargate {
                size: FargateSize {
                    cpu: 1024,
                    memory: 2048
                },
                spot: true,
            })
        );
        assert_eq!(
            route_first(&forced(Processor::Lambda))
                .unwrap()
                .plan
                .route(),
            Route::Lambda
        );

        let e = route_first(&ResolvedJob {
            gpu: 2,
            ..forced(Processor::Fargate)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `fargate` cannot run this job: gpu=2: Fargate has no GPUs"
        );
        let e = route_first(&ResolvedJob {
            lambda_function: None,
            ..forced(Processor::Lambda)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `lambda` cannot run this job: definition `render` has no Lambda function"
        );
        let e = route_first(&ResolvedJob {
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
        assert_eq!(route_first(&big).unwrap().plan.route(), Route::Lambda);
        let e = route_first(&ResolvedJob {
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
            route_first(&ResolvedJob {
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

    /// The break-evens of the list prices, worked by hand for a job of
    /// 1 vCPU and 2 GiB: on Lambda 2 GB-s a second at $0.0000166667, plus
    /// $0.0000002 a request; on Fargate Spot 0.3 times (1 * 0.04048 + 2 *
    /// 0.004445) = $0.0148113 an hour for a minute at least, from the pull:
    /// Lambda is cheaper below 7.40 s. On Fargate on demand (a job that
    /// does not tolerate interruption, or one interrupted twice when two
    /// are allowed): $0.04937 an hour, Lambda is cheaper below 24.68 s.
    #[test]
    fn lambda_and_fargate_break_even_where_the_prices_say() {
        let prices = Prices::default();
        let cases = [
            (7.0, true, 0, Route::Lambda),
            (8.0, true, 0, Route::Ec2),
            (24.0, false, 0, Route::Lambda),
            (25.0, false, 0, Route::Ec2),
            (24.0, true, 2, Route::Lambda),
            (25.0, true, 2, Route::Ec2),
            (3600.0, true, 0, Route::Ec2),
        ];
        for (expected, interruptible, interruptions, want) in cases {
            let j = ResolvedJob {
                interruptible,
                ..job()
            };
            let d = route(&j, &with(&prices, expected, interruptions)).unwrap();
            assert_eq!(d.plan.route(), want, "{expected} s: {}", d.reason);
            if let Plan::Ec2 {
                fargate_fallback: Some(on),
            } = d.plan
            {
                assert_eq!(on.spot, interruptible && interruptions < 2, "{}", d.reason);
                assert!(d.reason.contains("on Fargate"), "{}", d.reason);
            }
        }
        // At 8 s the two prices, as the reason gives them.
        let d = route(&job(), &with(&prices, 8.0, 0)).unwrap();
        assert!(
            d.reason.starts_with("a 8 s run costs $0.000267 on Lambda, $0.000247 on Fargate Spot; EC2 when an instance has room"),
            "{}",
            d.reason
        );
        // Deeper Fargate Spot discounts move the break-even down.
        let cheap = Prices {
            fargate_spot_fraction: 0.1,
            ..Prices::default()
        };
        assert_eq!(
            route(&job(), &with(&cheap, 3.0, 0)).unwrap().plan.route(),
            Route::Ec2
        );
        assert_eq!(
            route(&job(), &with(&cheap, 2.0, 0)).unwrap().plan.route(),
            Route::Lambda
        );
    }

    /// A job only EC2 runs that no type of the group holds is refused,
    /// with the largest type in the reason; one that may go elsewhere is
    /// not, nor anything when the types are not known.
    #[test]
    fn a_job_no_instance_type_holds_is_refused_when_only_ec2_runs_it() {
        let prices = Prices::default();
        let m5 = crate::scaling::InstanceType::known("m5.large").unwrap();
        let types = [m5];
        let ctx = |types| Context {
            ec2_types: types,
            ..Context::first(&prices, &job())
        };
        let gpu = ResolvedJob { gpu: 1, ..job() };
        let e = route(&gpu, &ctx(Some(&types))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "processor `auto` cannot run this job: gpu=1: only EC2 has GPUs; no instance type of the group holds 1024 CPU units / 2048 MiB / 1 GPU (the largest is m5.large, 2048 CPU units / 7985 MiB)"
        );
        assert!(route(&gpu, &ctx(None)).is_ok(), "types unknown");
        let huge = ResolvedJob {
            cpu: 4096,
            memory: 16_384,
            processor: Processor::Ec2,
            ..job()
        };
        let e = route(&huge, &ctx(Some(&types))).unwrap_err();
        assert!(e.reason.contains("holds 4096 CPU units / 16384 MiB"), "{e}");
        assert!(
            route(&huge, &ctx(Some(&[])))
                .unwrap_err()
                .reason
                .contains("the group has none")
        );
        // Fargate takes it where no instance can.
        let big = ResolvedJob {
            processor: Processor::Auto,
            ..huge
        };
        assert_eq!(
            route(&big, &ctx(Some(&types))).unwrap().plan.route(),
            Route::Ec2,
            "EC2 room first, Fargate Spot when there is none"
        );
    }

    #[test]
    fn a_forced_fargate_goes_on_demand_when_it_must() {
        let prices = Prices::default();
        let forced = ResolvedJob {
            processor: Processor::Fargate,
            ..job()
        };
        let spot = |j: &ResolvedJob, n| match route(j, &with(&prices, 60.0, n)).unwrap().plan {
            Plan::Fargate(on) => on.spot,
            other => panic!("{other:?}"),
        };
        assert!(spot(&forced, 0));
        assert!(spot(&forced, 1));
        assert!(!spot(&forced, 2), "past MaxInterruptions, on demand");
        let steady = ResolvedJob {
            interruptible: false,
            ..forced
        };
        assert!(!spot(&steady, 0));
        assert_eq!(Route::parse("FARGATE_SPOT"), Some(Route::FargateSpot));
        assert_eq!(
            serde_json::to_string(&Route::FargateSpot).unwrap(),
            "\"FARGATE_SPOT\""
        );
    }

    proptest! {
        /// A route is always feasible for the job, the fallback too.
        #[test]
        fn a_plan_only_names_places_the_job_fits(
            j in any_job(),
            expected in prop::option::of(1.0f64..4000.0),
            interruptions in 0u32..4,
        ) {
            let prices = Prices::default();
            let ctx = Context { prices: &prices, expected_seconds: expected, interruptions, max_interruptions: 2, fargate_spot: true, ec2_types: None };
            match route(&j, &ctx) {
                Ok(d) => {
                    match &d.plan {
                        Plan::Lambda { function } => {
                            prop_assert_eq!(lambda_fit(&j), Ok(function.clone()));
                            prop_assert!(j.gpu == 0 && j.memory <= lambda::MAX_MEMORY_MIB);
                            prop_assert!(j.timeout_seconds <= lambda::MAX_TIMEOUT_SECONDS);
                        }
                        Plan::Ec2 { fargate_fallback } => {
                            prop_assert!(ecs_fit(&j).is_ok());
                            if let Some(on) = fargate_fallback {
                                prop_assert_eq!(fargate_fit(&j), Ok(on.size));
                            }
                        }
                        Plan::Fargate(on) => {
                            prop_assert_eq!(fargate_fit(&j), Ok(on.size));
                        }
                    }
                    if let Plan::Ec2 { fargate_fallback: Some(on) } | Plan::Fargate(on) = d.plan {
                        let s = on.size;
                        prop_assert!(j.gpu == 0 && j.fargate_allowed);
                        prop_assert!(is_valid_fargate_pair(s.cpu, s.memory));
                        prop_assert!(s.cpu >= j.cpu && s.memory >= j.memory);
                        // Spot exactly when the job tolerates it and has
                        // not used up its interruptions.
                        prop_assert_eq!(on.spot, j.interruptible && interruptions < 2);
                    }
                    // A forced processor is never overridden.
                    let forced = match j.processor {
                        Processor::Auto => None,
                        Processor::Lambda => Some(vec![Route::Lambda]),
                        Processor::Ec2 => Some(vec![Route::Ec2]),
                        Processor::Fargate => Some(vec![Route::Fargate, Route::FargateSpot]),
                    };
                    if let Some(r) = forced {
                        prop_assert!(r.contains(&d.plan.route()));
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

        /// `auto`'s paid route is never dearer than another paid route that
        /// runs the job: Lambda only where it costs no more than Fargate for
        /// the expected run, Fargate only where Lambda costs more or cannot
        /// run it.
        #[test]
        fn the_chosen_route_is_never_dearer_than_another(
            j in any_job(),
            expected in 1.0f64..4000.0,
            interruptions in 0u32..4,
            spot_fraction in 0.05f64..1.0,
        ) {
            let prices = Prices { fargate_spot_fraction: spot_fraction, ..Prices::default() };
            let ctx = Context { prices: &prices, expected_seconds: Some(expected), interruptions, max_interruptions: 2, fargate_spot: true, ec2_types: None };
            let j = ResolvedJob { processor: Processor::Auto, gpu: 0, ..j };
            let c = costs(&j, &ctx, expected);
            if let Ok(d) = route(&j, &ctx) {
                match d.plan {
                    Plan::Lambda { .. } => {
                        if ecs_fit(&j).is_ok() {
                            prop_assert!(c.lambda.unwrap() <= c.fargate.unwrap_or(f64::MAX), "{}", d.reason);
                        }
                    }
                    Plan::Ec2 { fargate_fallback: Some(_) } => {
                        prop_assert!(c.fargate.unwrap() < c.lambda.unwrap_or(f64::MAX), "{}", d.reason);
                    }
                    Plan::Ec2 { fargate_fallback: None } => {
                        prop_assert!(c.lambda.is_none() && c.fargate.is_none());
                    }
                    Plan::Fargate(_) => prop_assert!(false, "auto never forces Fargate"),
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
