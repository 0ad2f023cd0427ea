//! berth-ecs-runner: runs jobs on ECS, on the cluster's EC2 capacity first and
//! on Fargate when EC2 has no room, and follows them to their end.

pub mod events;
pub mod launch;
pub mod lifecycle;

pub use launch::{EcsLauncher, FargateNetwork, Placement};
pub use lifecycle::Lifecycle;
