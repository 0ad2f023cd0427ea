//! Every limit berth checks, as data in one place, each with its source.
//!
//! AWS limits are quoted from the service documentation named beside them;
//! berth's own limits say why they are what they are.

/// One CPU unit in ECS terms: 1024 units are one vCPU.
pub const CPU_UNITS_PER_VCPU: u32 = 1024;

/// The job message as it arrives on the queue.
pub mod message {
    /// berth's own cap on a job message body, in bytes. A quarter of SQS's
    /// 1 MiB message limit (SQS quotas, "Message size"), so that a job always
    /// fits an asynchronous Lambda invoke payload with room to spare.
    pub const MAX_BODY_BYTES: usize = 256 * 1024;
    /// `job_id`: 1 to 64 characters; DynamoDB keys and ECS `startedBy`
    /// (at most 128 characters) both take it whole.
    pub const JOB_ID_MAX_CHARS: usize = 64;
    /// `definition`: a name of at most 128 characters, like an ECS task
    /// definition family ("up to 255 letters", berth keeps it shorter).
    pub const DEFINITION_MAX_CHARS: usize = 128;
    /// `command`: at most this many arguments.
    pub const COMMAND_MAX_ARGS: usize = 256;
    /// `environment`: at most this many variables.
    pub const ENVIRONMENT_MAX_VARS: usize = 256;
    /// `environment`: names and values together, in bytes. ECS container
    /// overrides may total 8,192 characters (ECS API reference, RunTask,
    /// `overrides`); this leaves room for the command and the JSON framing.
    pub const ENVIRONMENT_MAX_BYTES: usize = 6 * 1024;
    /// Environment variable names berth sets itself and a job may not.
    pub const RESERVED_ENV_PREFIX: &str = "BERTH_";
    /// `cpu`: CPU units, 128 (0.125 vCPU) to 196,608 (192 vCPU): the task
    /// CPU range for Linux on EC2 (ECS developer guide, "Task definition
    /// parameters", Task size).
    pub const CPU_MIN: u64 = 128;
    pub const CPU_MAX: u64 = 196_608;
    /// `memory`: MiB, 6 (the Docker daemon's minimum for a container, ECS
    /// developer guide, "Container definitions", memory) to 24 TiB (the
    /// largest EC2 instances, u-24tb1, hold 24,576 GiB).
    pub const MEMORY_MIN: u64 = 6;
    pub const MEMORY_MAX: u64 = 24 * 1024 * 1024;
    /// `gpu`: 0 to 16, the most GPUs of any EC2 instance type ECS supports
    /// (p2.16xlarge).
    pub const GPU_MAX: u64 = 16;
    /// `timeout_seconds`: 1 second to 7 days, berth's own bound so that a
    /// typo cannot keep a task (and its instance) alive indefinitely.
    pub const TIMEOUT_MIN: u64 = 1;
    pub const TIMEOUT_MAX: u64 = 7 * 24 * 3600;
    /// `max_attempts`: 1 to 10 (berth's job message contract).
    pub const MAX_ATTEMPTS_MIN: u64 = 1;
    pub const MAX_ATTEMPTS_MAX: u64 = 10;
}

/// AWS Lambda, as a place to run a job (Lambda developer guide, "Lambda
/// quotas").
pub mod lambda {
    /// Function memory, 128 MiB to 10,240 MiB.
    pub const MAX_MEMORY_MIB: u32 = 10_240;
    /// Lambda allocates CPU in proportion to memory, up to 6 vCPUs at the
    /// memory maximum.
    pub const MAX_CPU_UNITS: u32 = 6 * super::CPU_UNITS_PER_VCPU;
    /// Lambda has no GPUs.
    pub const MAX_GPU: u32 = 0;
    /// Function timeout, at most 900 seconds (15 minutes).
    pub const MAX_TIMEOUT_SECONDS: u32 = 900;
    /// Invocation payload for asynchronous invokes (`InvocationType=Event`):
    /// 1 MB since October 2025 (it was 256 KB before).
    pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1_000_000;
}

/// AWS Fargate (ECS developer guide, "Task size" table for Fargate; Linux).
pub mod fargate {
    use super::CPU_UNITS_PER_VCPU;

    /// The valid task sizes: each CPU value with the memory values (MiB) it
    /// may be paired with.
    pub const TASK_SIZES: &[(u32, FargateMemory)] = &[
        (256, FargateMemory::Values(&[512, 1024, 2048])),
        (
            512,
            FargateMemory::Range {
                min: 1024,
                max: 4096,
                step: 1024,
            },
        ),
        (
            1024,
            FargateMemory::Range {
                min: 2048,
                max: 8192,
                step: 1024,
            },
        ),
        (
            2048,
            FargateMemory::Range {
                min: 4096,
                max: 16_384,
                step: 1024,
            },
        ),
        (
            4096,
            FargateMemory::Range {
                min: 8192,
                max: 30_720,
                step: 1024,
            },
        ),
        (
            8192,
            FargateMemory::Range {
                min: 16_384,
                max: 61_440,
                step: 4096,
            },
        ),
        (
            16_384,
            FargateMemory::Range {
                min: 32_768,
                max: 122_880,
                step: 8192,
            },
        ),
    ];
    /// Fargate has no GPUs.
    pub const MAX_GPU: u32 = 0;
    /// The largest task: 16 vCPU, 120 GiB.
    pub const MAX_CPU_UNITS: u32 = 16 * CPU_UNITS_PER_VCPU;
    pub const MAX_MEMORY_MIB: u32 = 120 * 1024;

    /// The memory values one Fargate CPU value may be paired with.
    #[derive(Debug, Clone, Copy)]
    pub enum FargateMemory {
        Values(&'static [u32]),
        Range { min: u32, max: u32, step: u32 },
    }

    impl FargateMemory {
        /// The smallest valid value of at least `mib`, if any.
        pub fn at_least(&self, mib: u32) -> Option<u32> {
            match *self {
                Self::Values(values) => values.iter().copied().find(|&v| v >= mib),
                Self::Range { min, max, step } => {
                    let v = if mib <= min {
                        min
                    } else {
                        min + (mib - min).div_ceil(step) * step
                    };
                    (v <= max).then_some(v)
                }
            }
        }
    }
}

/// Amazon ECS.
pub mod ecs {
    /// RunTask `overrides`: at most 8,192 characters, JSON framing included
    /// (ECS API reference, RunTask).
    pub const MAX_OVERRIDES_CHARS: usize = 8192;
    /// RunTask `startedBy`: at most 128 characters (ECS API reference).
    pub const MAX_STARTED_BY_CHARS: usize = 128;
    /// DescribeContainerInstances takes at most 100 instances per call
    /// (ECS API reference).
    pub const DESCRIBE_CONTAINER_INSTANCES_MAX: usize = 100;
    /// RunTask `clientToken`: at most 64 characters (ECS API reference).
    pub const MAX_CLIENT_TOKEN_CHARS: usize = 64;
}
