//! berth's integration tests, against the local AWS with the real SDK
//! clients. One test binary: each module is one area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arrays;
mod bad_input;
mod browser;
mod capacity;
mod cli;
mod console;
mod cost;
mod crash;
mod dependencies;
mod driver;
mod driver_ecs_answers;
mod engine;
mod events;
mod lifecycle;
mod local_run;
mod sam_local;
mod scaler;
mod smoke;
mod stranded;
mod task_processor;
mod template;
mod throttled;
mod timing;
mod watch;
