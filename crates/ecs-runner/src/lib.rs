//! berth-ecs-runner: runs jobs on ECS, on the cluster's EC2 capacity first and
//! on Fargate when EC2 has no room.

pub mod launch;

pub use launch::{EcsLauncher, FargateNetwork, Placement};
