//! berth-local's library: what the local run, the soak and the benchmarks
//! share.

pub mod proxy;
pub mod sqs;
