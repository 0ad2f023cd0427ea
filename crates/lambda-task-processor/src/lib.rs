//! berth-lambda-task-processor: runs small, short jobs as Lambda invocations.

pub mod launch;

pub use launch::LambdaLauncher;
