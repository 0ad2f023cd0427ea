//! berth-lambda-task-processor: runs small, short jobs as Lambda invocations:
//! the launch side (an asynchronous invoke) and the runtime inside the
//! function that runs the job's program.

pub mod launch;
pub mod runtime;

pub use launch::LambdaLauncher;
pub use runtime::{Ran, Runtime};
