//! berth-lambda-task-processor: the runtime inside a Lambda-route job's
//! function, which runs the job's program and records its attempt. (The
//! driver launches the job: `berth_aws::lambda`.)

pub mod runtime;
pub mod sandbox;

pub use runtime::{Ran, Runtime};
