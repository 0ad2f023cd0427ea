//! berth-ecs-runner: follows jobs on ECS to their end. Task state changes
//! and Spot warnings arrive from EventBridge, the timeout sweep from a
//! schedule; the launches themselves are the driver's.

pub mod events;
pub mod lifecycle;

pub use lifecycle::Lifecycle;
