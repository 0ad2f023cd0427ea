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

/// A definition's successful runs: their count and their whole seconds in
/// all (as the definitions table keeps them: those of the last week where
/// there are any, else all since the definition was put).
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
/// included, as ECS counts it: at its longest launch and attempt numbers
/// (the driver adds [`crate::launch::ENV_ATTEMPT`] at launch), and with the
/// larger of the task sizes it may be sent with (its own on EC2, the Fargate
/// size that covers it).
pub fn overrides_chars(job: &ResolvedJob) -> usize {
    let job = &crate::launch::at_attempt(job, u32::MAX - 1);
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
mod tests;
