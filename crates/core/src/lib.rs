//! berth-core: berth's pure logic. No AWS SDK, no async runtime, no I/O: the
//! functions feed it what they read from AWS and act on what it decides.
//!
//! - [`job`]: the v1 job message, parsed and validated;
//! - [`array`]: array jobs: children, their release under a cap, the parent's end;
//! - [`attempt`]: the end of an attempt, settled in one place;
//! - [`dependency`]: jobs that wait for others, their conditions, cycles;
//! - [`definition`]: job definitions (the allowlist) and resolving a job;
//! - [`limits`]: every limit of Lambda, Fargate, ECS and the message, with sources;
//! - [`logs`]: where a job's output is in CloudWatch Logs;
//! - [`cost`]: what one attempt cost, by the price model;
//! - [`prices`]: the price model: each route's and each instance's price, with sources;
//! - [`retry`]: retry rules: what a failed attempt does next, by exit code and reason;
//! - [`room`]: where EC2 had no room a moment ago, as one driver remembers it;
//! - [`routing`]: where a job runs (the cheapest route that meets its start), and why;
//! - [`launch`]: idempotency tokens, `startedBy`, backoffs, resuming a recorded job;
//! - [`capacity`]: `SchedulableContainers` and the scaling thresholds;
//! - [`scaling`]: when the cluster grows and which idle instances go;
//! - [`spending`]: a definition's spending limit, over the UTC day;
//! - [`state`]: the job state machine;
//! - [`stop`]: what a stopped ECS task means for its job;
//! - [`text`]: cutting text to a size; spans of time as people read them.

pub mod array;
pub mod attempt;
pub mod capacity;
pub mod cost;
pub mod definition;
pub mod dependency;
pub mod job;
pub mod launch;
pub mod limits;
pub mod logs;
pub mod prices;
pub mod retry;
pub mod room;
pub mod routing;
pub mod scaling;
pub mod spending;
pub mod state;
pub mod stop;
pub mod tags;
pub mod text;

pub use definition::{JobDefinition, ResolveError, ResolvedJob, resolve};
pub use job::{JobRequest, MessageError, Problem, Processor};
pub use routing::{Decision, Plan, Route, RouteError};
pub use state::JobStatus;
