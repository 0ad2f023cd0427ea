//! Every figure the simulator uses, in one place, each with its source.
//!
//! The prices of the places jobs run are berth-core's price model
//! ([`berth_core::prices`]), the one the driver and the scaler decide with;
//! the rest are here. Prices are AWS's us-east-1 list prices without free
//! tiers (an account may spend its free tier elsewhere). Where AWS documents
//! no figure (how often Fargate Spot interrupts, how often AWS Batch scales
//! down), the value is marked *assumed* and says what it rests on. `berth
//! simulate --assumptions` prints both tables.

use berth_core::prices::ON_DEMAND_HOUR;
pub use berth_core::prices::{
    EBS_GP3_GB_MONTH, FARGATE_MINIMUM_SECONDS, FARGATE_PULL_SECONDS, Figure, HOURS_PER_MONTH,
    INSTANCE_ROOT_VOLUME_GB, LAMBDA_GB_SECOND_ARM, LAMBDA_GB_SECOND_X86, LAMBDA_REQUEST,
    SPOT_PRICE_FRACTION,
};

berth_core::figures! {
    // Prices.
    SQS_REQUEST = 0.000_000_4, "USD per request",
        "Amazon SQS pricing, us-east-1, standard queue: $0.40 per million requests";
    DYNAMODB_WRITE_UNIT = 0.000_000_625, "USD per write request unit",
        "Amazon DynamoDB on-demand pricing, us-east-1: $0.625 per million (since November 2024)";
    DYNAMODB_READ_UNIT = 0.000_000_125, "USD per read request unit",
        "Amazon DynamoDB on-demand pricing, us-east-1: $0.125 per million (since November 2024)";
    CLOUDWATCH_METRIC_MONTH = 0.30, "USD per custom metric-month",
        "Amazon CloudWatch pricing: first 10,000 metrics, prorated by the hour";
    CLOUDWATCH_ALARM_MONTH = 0.10, "USD per alarm-month",
        "Amazon CloudWatch pricing: standard-resolution metric alarm";
    CLOUDWATCH_PUT_METRIC_DATA = 0.000_01, "USD per request",
        "Amazon CloudWatch pricing: $0.01 per 1,000 API requests";
    CLOUDWATCH_DASHBOARD_MONTH = 3.0, "USD per dashboard-month",
        "Amazon CloudWatch pricing (berth's template creates one dashboard)";
    BERTH_ALARMS = 2.0, "alarms",
        "template.yaml: an alarm on each dead-letter queue (jobs, lifecycle events)";
    CLOUDWATCH_LOGS_GB = 0.50, "USD per GB ingested",
        "Amazon CloudWatch Logs pricing, us-east-1, standard ingestion";

    // The path of a job.
    SQS_TO_DRIVER_SECONDS = 1.0, "seconds",
        "template.yaml: the driver's SQS trigger batches for up to 1 s (MaximumBatchingWindowInSeconds)";
    REQUEUE_SECONDS = 3.0, "seconds",
        "assumed: an ECS event reaches ecs-runner in about a second, and the next attempt goes through the queue and the driver";
    EVENT_TO_FUNCTION_SECONDS = 1.0, "seconds",
        "assumed: an ECS event reaches ecs-runner through EventBridge in about a second";
    LAMBDA_START_SECONDS = 1.0, "seconds",
        "assumed: an asynchronous invoke of a container-image function, cold start included";
    EC2_TASK_START_SECONDS = 5.0, "seconds",
        "assumed: RunTask to RUNNING on a registered instance that has the image cached";
    FARGATE_TASK_START_SECONDS = 45.0, "seconds",
        "assumed: Fargate provisions, attaches the task's network interface and pulls the image (tens of seconds)";
    INSTANCE_IN_SERVICE_SECONDS = 30.0, "seconds",
        "assumed: from Auto Scaling's launch to the instance running and InService";
    INSTANCE_REGISTERED_SECONDS = berth_core::scaling::REGISTRATION_SECONDS as f64, "seconds",
        "from launch to the ECS agent registering the instance: 30-40 s in public measurements (aws/amazon-ecs-agent#2309, aws/karpenter-provider-aws#3827 and #6165)";
    SPOT_WARNING_SECONDS = 120.0, "seconds",
        "Amazon EC2 user guide: a Spot interruption notice comes two minutes before the instance is reclaimed";
    SPOT_INTERRUPTIONS_PER_INSTANCE_MONTH = 0.05, "interruptions per instance-month",
        "the Spot Instance Advisor's lowest bracket (\"<5%\" a month) for common types; set with --spot-interruptions";
    FARGATE_SPOT_INTERRUPTIONS_PER_TASK_HOUR = 0.01, "interruptions per task-hour",
        "assumed: AWS publishes no rate for Fargate Spot; a task is told two minutes before (SIGTERM) and stopped with SpotInterruption; set with --fargate-spot-interruptions";
    FARGATE_SPOT_SHORTFALL = 0.02, "of Fargate Spot launches",
        "assumed: AWS publishes no rate; RunTask on FARGATE_SPOT fails with no capacity, and ECS does not fall back itself (aws/containers-roadmap#852); set with --fargate-spot-shortfall";

    // berth's scaling as template.yaml deploys it.
    CAPACITY_METRIC_PERIOD_SECONDS = 60.0, "seconds",
        "template.yaml: the capacity metric and its scaler run every minute; CloudWatch evaluates one-minute alarms as often";
    CLUSTER_MAX_SIZE = 10.0, "instances",
        "template.yaml: ClusterMaxSize default";

    // The seed's alarms (schedulable-alarms), as template.yaml deployed them
    // before the scaler.
    SCALE_OUT_EVALUATION_PERIODS = 1.0, "periods",
        "SchedulableContainersLow: below the scale-out threshold, 1 of 1, missing data treated as missing";
    SCALE_IN_EVALUATION_PERIODS = 15.0, "periods",
        "SchedulableContainersHigh: above the scale-in threshold, 15 of 15, missing data not breaching";
    INSTANCE_WARMUP_SECONDS = 180.0, "seconds",
        "the step scaling policies' EstimatedInstanceWarmup";

    // The alternatives.
    TWO_ALARMS_HIGH_PERCENT = 75.0, "percent reserved",
        "assumed: a common choice for CPUReservation / MemoryReservation scale-out alarms (1 of 1 minute)";
    TWO_ALARMS_LOW_PERCENT = 40.0, "percent reserved",
        "assumed: a common choice for the scale-in alarms on the same metrics";
    TWO_ALARMS_SCALE_IN_PERIODS = 5.0, "periods",
        "assumed: scale-in alarms over 5 one-minute periods";
    PROVISIONING_RETRY_SECONDS = 15.0, "seconds",
        "ECS places tasks waiting in PROVISIONING about every 15 seconds (as AWS describes cluster auto scaling)";
    MANAGED_SCALING_TARGET_PERCENT = 100.0, "percent",
        "ECS capacity provider managed scaling, targetCapacity 100";
    MANAGED_SCALING_WARMUP_SECONDS = 300.0, "seconds",
        "ECS API reference, ManagedScaling.instanceWarmupPeriod default";
    MANAGED_SCALE_IN_PERIODS = 15.0, "periods",
        "ECS cluster auto scaling: the target tracking policy scales in after 15 one-minute datapoints below target";
    MANAGED_SCALING_FROM_ZERO_PERCENT = 200.0, "percent",
        "ECS cluster auto scaling: CapacityProviderReservation is 200 while tasks wait and no instance runs";
    BATCH_SCHEDULER_SECONDS = 30.0, "seconds",
        "assumed: how often the AWS Batch scheduler places RUNNABLE jobs and sizes the compute environment";
    BATCH_JOB_START_SECONDS = 20.0, "seconds",
        "assumed: AWS Batch's own overhead from placement to RUNNING (STARTING), beyond the container's start";
    BATCH_IDLE_SCALE_DOWN_SECONDS = 600.0, "seconds",
        "assumed: AWS Batch terminates an instance idle this long (it documents no figure without a scale-down delay)";

    // AWS's rate limits, as a burst meets them (berth simulate --limits on).
    RUN_TASK_BURST = 100.0, "calls",
        "Amazon ECS developer guide, Fargate throttling quotas: RunTask, a burst of 100 calls";
    RUN_TASK_PER_SECOND = 20.0, "calls per second",
        "Amazon ECS developer guide, Fargate throttling quotas: RunTask, 20 calls a second sustained (berth launches one task a call)";
    FARGATE_LAUNCH_BURST = 100.0, "tasks",
        "Amazon ECS developer guide, Fargate throttling quotas: task launches, a burst of 100, on demand and on Fargate Spot each";
    FARGATE_LAUNCHES_PER_SECOND = 20.0, "tasks per second",
        "Amazon ECS developer guide, Fargate throttling quotas: 20 task launches a second sustained, on demand and on Fargate Spot each";
    LAMBDA_CONCURRENCY = 1000.0, "invocations at once",
        "AWS Lambda developer guide, Lambda quotas: an account's concurrency, 1,000 by default";
    LAMBDA_NEW_ENVIRONMENTS_PER_10_SECONDS = 1000.0, "execution environments",
        "AWS Lambda developer guide, Lambda scaling behavior: each function adds up to 1,000 execution environments every 10 seconds";
    SQS_TRIGGER_FIRST_BATCHES = 5.0, "batches at once",
        "AWS Lambda developer guide, SQS scaling: the event source starts with five concurrent batches";
    SQS_TRIGGER_BATCHES_PER_MINUTE = 300.0, "batches at once, added a minute",
        "AWS Lambda developer guide, SQS scaling: up to 300 more concurrent invocations a minute while messages wait";
    SQS_TRIGGER_MOST_BATCHES = 1000.0, "batches at once",
        "AWS Lambda developer guide, SQS scaling: at most 1,000, or the mapping's MaximumConcurrency";
    DRIVER_CONCURRENCY = 10.0, "batches at once",
        "template.yaml: DriverConcurrency default, the driver's reserved concurrency and its trigger's MaximumConcurrency";
    DRIVER_BATCH_SIZE = 10.0, "messages",
        "template.yaml: the trigger's BatchSize";
    DRIVER_BATCH_SECONDS = 0.2, "seconds",
        "make bench-driver: a batch of 10 takes 0.1-0.2 s with AWS's latency on every call";
    DYNAMODB_NEW_TABLE_WRITES_PER_SECOND = 4000.0, "write request units per second",
        "Amazon DynamoDB developer guide, on-demand capacity: a new table serves up to 4,000 writes a second at once";
    RUN_INSTANCES_BUCKET = 1000.0, "instances",
        "Amazon EC2 API reference, request throttling: RunInstances resource rate limit, a bucket of 1,000 instances";
    RUN_INSTANCES_REFILL_PER_SECOND = 2.0, "instances per second",
        "Amazon EC2 API reference, request throttling: the RunInstances instance bucket refills at 2 a second";
    SDK_TRIES = 3.0, "tries",
        "AWS SDKs and Tools reference, retry behavior: the standard mode tries a call three times";
    SDK_RETRY_BASE_SECONDS = 1.0, "seconds",
        "AWS SDKs and Tools reference, retry behavior: exponential backoff with full jitter from a base of 1 s";
    SDK_RETRY_MAX_SECONDS = 20.0, "seconds",
        "AWS SDKs and Tools reference, retry behavior: the longest backoff, 20 s";
    QUEUE_MAX_RECEIVES = 50.0, "receives",
        "template.yaml: the job queue's maxReceiveCount (BERTH_MAX_RECEIVES): a job throttled at it goes on in a new message";

    // berth's own running costs.
    FUNCTION_MEMORY_GB = 0.25, "GB",
        "template.yaml: MemorySize 256 for berth's functions";
    DRIVER_SECONDS_PER_JOB = 0.1, "seconds",
        "make bench-driver: a batch of 10 takes about 0.1-0.2 s against AWS's latency";
    ECS_RUNNER_SECONDS_PER_EVENT = 0.03, "seconds",
        "assumed: one conditional write per task event";
    CRON_SECONDS = 0.3, "seconds",
        "assumed: the capacity metric and the sweep each run about this long a minute";
    SQS_REQUESTS_PER_JOB = 3.0, "requests",
        "a job's send, receive and delete";
    SQS_POLLS_PER_MINUTE = 15.0, "requests per minute",
        "Lambda's SQS event source polls with 5 long polls of up to 20 s each";
    DYNAMODB_WRITES_PER_JOB = 6.0, "write request units",
        "accept, launch claim, launch record, RUNNING, end (records under 1 KB, one with history near 2 KB)";
    DYNAMODB_READS_PER_JOB = 2.0, "read request units",
        "the definitions lookup and a read of the record";
    LOG_BYTES_PER_INVOCATION = 1500.0, "bytes",
        "assumed: START/END/REPORT lines and one JSON log line of the decision";
    EMF_METRICS_WHILE_BUSY = 8.0, "custom metrics",
        "crates/aws/src/metrics.rs: the dashboard's per-route and per-status counts, billed in hours they are emitted";
}

/// The figure's value as whole milliseconds (for figures in seconds).
pub fn ms(f: Figure) -> u64 {
    (f.value * 1000.0).round() as u64
}

/// One EC2 instance type the simulator can price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    /// USD per hour, on demand, us-east-1, Linux (berth-core's list).
    pub on_demand_hour: f64,
}

/// The instance types the simulator knows: berth-core's price list. Their
/// sizes come from berth-core's catalog of AWS's instance types.
pub const INSTANCE_TYPES: [InstanceType; ON_DEMAND_HOUR.len()] = {
    let mut out = [InstanceType {
        name: "",
        on_demand_hour: 0.0,
    }; ON_DEMAND_HOUR.len()];
    let mut i = 0;
    while i < ON_DEMAND_HOUR.len() {
        out[i] = InstanceType {
            name: ON_DEMAND_HOUR[i].0,
            on_demand_hour: ON_DEMAND_HOUR[i].1,
        };
        i += 1;
    }
    out
};

/// The instance types of the other policies' groups (AWS Batch's, the
/// seed's, ECS managed scaling's, always-on): three alike, as a group of
/// one size is made.
pub const DEFAULT_INSTANCE_TYPES: [&str; 3] = ["m5.large", "m5a.large", "m6i.large"];

/// The types berth's scaler may launch by default: template.yaml's
/// InstanceTypes, InstanceVcpus, InstanceMemoryGiB and
/// InstanceArchitectures (berth-core's `Allowed`).
pub const DEFAULT_ALLOWED: &str =
    "m5,m6i,m7i,c5,c6i,c7i,r5,r6i,r7i,m6g,m7g,c6g,c7g,r6g,r7g,g4dn,g5,g6";
pub const DEFAULT_ALLOWED_VCPUS: &str = "2-64";
pub const DEFAULT_ALLOWED_MEMORY_GIB: &str = "4-512";
pub const DEFAULT_ALLOWED_ARCHITECTURES: &str = "x86_64,arm64";

/// [`DEFAULT_ALLOWED`]'s types, each priced.
pub fn default_allowed() -> Vec<&'static InstanceType> {
    use berth_core::scaling::choice::{Allowed, range};
    let allowed = Allowed {
        entries: DEFAULT_ALLOWED.split(',').map(String::from).collect(),
        vcpus: range(DEFAULT_ALLOWED_VCPUS).unwrap_or((0, u32::MAX)),
        memory_gib: range(DEFAULT_ALLOWED_MEMORY_GIB).unwrap_or((0, u32::MAX)),
        architectures: DEFAULT_ALLOWED_ARCHITECTURES
            .split(',')
            .filter_map(berth_core::prices::Arch::from_ecs_attribute)
            .collect(),
    };
    allowed
        .types()
        .iter()
        .filter_map(|n| InstanceType::find(n))
        .collect()
}

impl InstanceType {
    pub fn find(name: &str) -> Option<&'static InstanceType> {
        INSTANCE_TYPES.iter().find(|t| t.name == name)
    }

    /// The type as berth's scaler sees it: what ECS registers of it.
    pub fn scaling(&self) -> berth_core::scaling::InstanceType {
        berth_core::scaling::InstanceType::known(self.name).unwrap_or_else(|| {
            berth_core::scaling::InstanceType {
                name: self.name.into(),
                room: berth_core::scaling::Room::default(),
            }
        })
    }

    /// What the ECS agent registers (berth-core's estimate).
    pub fn registered(&self) -> berth_core::scaling::Room {
        self.scaling().room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_names_a_source_and_is_listed_once() {
        let mut names: Vec<&str> = ALL
            .iter()
            .chain(berth_core::prices::ALL)
            .map(|f| f.name)
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for f in ALL {
            assert!(!f.source.is_empty() && !f.unit.is_empty(), "{f:?}");
            assert!(f.value.is_finite() && f.value >= 0.0, "{f:?}");
        }
    }

    #[test]
    fn every_priced_type_is_in_the_catalog() {
        for name in DEFAULT_INSTANCE_TYPES {
            assert!(InstanceType::find(name).is_some(), "{name}");
        }
        let allowed = default_allowed();
        assert!(allowed.len() > 100, "{}", allowed.len());
        assert!(allowed.iter().any(|t| t.registered().gpu > 0));
        assert!(
            allowed
                .iter()
                .any(|t| t.registered().arch == berth_core::prices::Arch::Arm64)
        );
        for t in INSTANCE_TYPES {
            assert!(t.registered().cpu > 0, "{}", t.name);
        }
        assert_eq!(
            InstanceType::find("g4dn.xlarge").unwrap().registered().gpu,
            1
        );
    }
}
