//! The policies compared: berth as deployed, and what a user would run
//! instead.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// berth as template.yaml deploys it: each job on its cheapest route
    /// (berth-core's `routing`): room on a running instance, Lambda where
    /// it costs less for the job's expected run, Fargate Spot for jobs that
    /// tolerate interruption, Fargate; the scaler (berth-core's `scaling`)
    /// starts instances for jobs only EC2 runs and for work on Fargate
    /// where an instance costs less, and drains and terminates instances
    /// idle past the ski-rental break-even.
    Berth,
    /// berth before its scaler, as the seed designs it (routing included:
    /// Lambda wherever a job fits it, EC2 first, Fargate on demand when EC2
    /// has no room): two alarms on
    /// `SchedulableContainers` (below the scale-out threshold for a minute:
    /// +1; above the scale-in threshold `berth thresholds` gives, for 15
    /// minutes: -1), tasks placed anywhere, Auto Scaling's default
    /// termination.
    SchedulableAlarms,
    /// The seed's anti-pattern: the seed's routing, with a CPU-reservation
    /// and a memory-reservation alarm pair scaling the same group.
    TwoAlarms,
    /// The seed's routing with ECS managed scaling (a capacity provider at
    /// target 100%, managed termination protection): EC2 jobs wait in
    /// PROVISIONING instead of going to Fargate.
    CapacityProvider,
    /// AWS Batch with a managed EC2 Spot compute environment (0 vCPUs at
    /// rest); every job, small ones too, waits RUNNABLE for room.
    AwsBatch,
    /// AWS Batch on Fargate.
    AwsBatchFargate,
    /// The seed's routing with a fixed number of instances and no scaling.
    AlwaysOn,
    /// Every job on Fargate.
    AllFargate,
    /// Every job on Fargate Spot, through berth's queue and job store: on
    /// Fargate on demand when Fargate Spot has no capacity, and after
    /// `MaxInterruptions` interruptions.
    AllFargateSpot,
    /// Lambda where the job fits Lambda, Fargate otherwise.
    AllLambdaWherePossible,
    /// Not a policy one can deploy: every job at its cheapest exact price
    /// (Fargate Spot by the second with no minimum and no pull, Lambda, or
    /// its share of the cheapest Spot instance that holds it, packed
    /// perfectly with no idle and no boot), started at once. The limit no
    /// scheduler beats.
    LowerBound,
}

impl Policy {
    pub const ALL: [Self; 11] = [
        Self::Berth,
        Self::SchedulableAlarms,
        Self::TwoAlarms,
        Self::CapacityProvider,
        Self::AwsBatch,
        Self::AwsBatchFargate,
        Self::AlwaysOn,
        Self::AllFargate,
        Self::AllFargateSpot,
        Self::AllLambdaWherePossible,
        Self::LowerBound,
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
            Self::AllFargateSpot => "all-fargate-spot",
            Self::AllLambdaWherePossible => "all-lambda-where-possible",
            Self::LowerBound => "lower-bound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether jobs go through berth's queue, driver and job store (and pay
    /// for them).
    pub fn uses_berth(self) -> bool {
        !matches!(
            self,
            Self::AwsBatch | Self::AwsBatchFargate | Self::LowerBound
        )
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
