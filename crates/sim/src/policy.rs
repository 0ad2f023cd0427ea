//! The policies compared: berth as deployed, and what a user would run
//! instead.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// berth as template.yaml deploys it: Lambda, EC2 first (bin-packed),
    /// Fargate when EC2 has no room; the scaler (berth-core's `scaling`)
    /// adds instances for jobs waiting for capacity or fallen back to
    /// Fargate, and drains and terminates instances idle for its quiet
    /// period.
    Berth,
    /// berth before its scaler, as the seed designs it: two alarms on
    /// `SchedulableContainers` (below the scale-out threshold for a minute:
    /// +1; above the scale-in threshold `berth thresholds` gives, for 15
    /// minutes: -1), tasks placed anywhere, Auto Scaling's default
    /// termination.
    SchedulableAlarms,
    /// The seed's anti-pattern: berth's routing, with a CPU-reservation and
    /// a memory-reservation alarm pair scaling the same group.
    TwoAlarms,
    /// berth's routing with ECS managed scaling (a capacity provider at
    /// target 100%, managed termination protection): EC2 jobs wait in
    /// PROVISIONING instead of going to Fargate.
    CapacityProvider,
    /// AWS Batch with a managed EC2 Spot compute environment (0 vCPUs at
    /// rest); every job, small ones too, waits RUNNABLE for room.
    AwsBatch,
    /// AWS Batch on Fargate.
    AwsBatchFargate,
    /// berth's routing with a fixed number of instances and no scaling.
    AlwaysOn,
    /// Every job on Fargate.
    AllFargate,
    /// Lambda where the job fits Lambda, Fargate otherwise.
    AllLambdaWherePossible,
}

impl Policy {
    pub const ALL: [Self; 9] = [
        Self::Berth,
        Self::SchedulableAlarms,
        Self::TwoAlarms,
        Self::CapacityProvider,
        Self::AwsBatch,
        Self::AwsBatchFargate,
        Self::AlwaysOn,
        Self::AllFargate,
        Self::AllLambdaWherePossible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Berth => "berth",
            Self::SchedulableAlarms => "schedulable-alarms",
            Self::TwoAlarms => "two-alarms",
            Self::CapacityProvider => "capacity-provider",
            Self::AwsBatch => "aws-batch",
            Self::AwsBatchFargate => "aws-batch-fargate",
            Self::AlwaysOn => "always-on",
            Self::AllFargate => "all-fargate",
            Self::AllLambdaWherePossible => "all-lambda-where-possible",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether jobs go through berth's queue, driver and job store (and pay
    /// for them).
    pub fn uses_berth(self) -> bool {
        !matches!(self, Self::AwsBatch | Self::AwsBatchFargate)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
