//! berth-local's library: what the local run, the soak and the benchmarks
//! share.

pub mod deployment;
pub mod engine;
pub mod fleet;
pub mod moto;
pub mod proxy;
pub mod sqs;
pub mod watch;
