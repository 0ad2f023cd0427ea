//! What a run costs, in parts that add up to the total.

use berth_core::routing::FargateSize;
use serde::Serialize;

use crate::figures::{self as f, InstanceType};

/// USD, by what it pays for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    /// EC2 instances (Spot unless said otherwise).
    pub ec2: f64,
    /// The instances' root volumes.
    pub ebs: f64,
    pub fargate: f64,
    /// Jobs run as Lambda invocations.
    pub lambda_jobs: f64,
    /// berth's own functions: the driver, ecs-runner, the capacity metric.
    pub functions: f64,
    /// SQS and DynamoDB requests.
    pub requests: f64,
    /// Metrics, alarms, PutMetricData, the dashboard and logs.
    pub cloudwatch: f64,
}

impl Cost {
    pub fn parts(&self) -> [(&'static str, f64); 7] {
        [
            ("ec2", self.ec2),
            ("ebs", self.ebs),
            ("fargate", self.fargate),
            ("lambda_jobs", self.lambda_jobs),
            ("functions", self.functions),
            ("requests", self.requests),
            ("cloudwatch", self.cloudwatch),
        ]
    }

    pub fn total(&self) -> f64 {
        self.parts().iter().map(|(_, v)| v).sum()
    }
}

/// An instance running for `seconds`: (EC2, EBS).
pub fn instance(t: &InstanceType, spot: bool, seconds: f64) -> (f64, f64) {
    let hours = seconds / 3600.0;
    let hourly = if spot {
        t.spot_hour()
    } else {
        t.on_demand_hour
    };
    let ebs =
        f::INSTANCE_ROOT_VOLUME_GB.value * f::EBS_GP3_GB_MONTH.value / f::HOURS_PER_MONTH.value;
    (hours * hourly, hours * ebs)
}

/// A Fargate task of `size` billed for `seconds` (one minute at least).
pub fn fargate(size: FargateSize, seconds: f64, spot: bool) -> f64 {
    let hours = seconds.max(f::FARGATE_MINIMUM_SECONDS.value) / 3600.0;
    let vcpu = f64::from(size.cpu) / 1024.0;
    let gb = f64::from(size.memory) / 1024.0;
    let price = hours * (vcpu * f::FARGATE_VCPU_HOUR.value + gb * f::FARGATE_GB_HOUR.value);
    if spot {
        price * f::FARGATE_SPOT_FRACTION.value
    } else {
        price
    }
}

/// A job run as one invocation of a function with `memory` MiB.
pub fn lambda_job(memory: u32, seconds: f64) -> f64 {
    f64::from(memory.max(128)) / 1024.0 * seconds * f::LAMBDA_GB_SECOND_X86.value
        + f::LAMBDA_REQUEST.value
}

/// `invocations` of one of berth's functions, `seconds` each.
pub fn function(invocations: f64, seconds: f64) -> f64 {
    invocations
        * (f::FUNCTION_MEMORY_GB.value * seconds * f::LAMBDA_GB_SECOND_ARM.value
            + f::LAMBDA_REQUEST.value)
}

/// A monthly price for `hours`.
pub fn monthly(price: f64, hours: f64) -> f64 {
    price * hours / f::HOURS_PER_MONTH.value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_prices() {
        // 1 vCPU / 2 GB on Fargate for 10 minutes: (0.04048 + 2 * 0.004445) / 6.
        let ten_min = fargate(
            FargateSize {
                cpu: 1024,
                memory: 2048,
            },
            600.0,
            false,
        );
        assert!((ten_min - 0.008228).abs() < 1e-6, "{ten_min}");
        // Under a minute is billed as a minute.
        let short = fargate(
            FargateSize {
                cpu: 1024,
                memory: 2048,
            },
            5.0,
            false,
        );
        assert!((short * 10.0 - ten_min).abs() < 1e-9);
        // An m5.large for an hour: 0.096 on demand, 40% of it on Spot.
        let m5 = InstanceType::find("m5.large").unwrap();
        let (od, ebs) = instance(m5, false, 3600.0);
        let (spot, _) = instance(m5, true, 3600.0);
        assert!((od - 0.096).abs() < 1e-12 && (spot - 0.0384).abs() < 1e-12);
        assert!((ebs - 30.0 * 0.08 / 730.0).abs() < 1e-12);
        // 1 GB for 10 s on Lambda, plus the request.
        let l = lambda_job(1024, 10.0);
        assert!((l - (10.0 * 0.000_016_666_7 + 0.000_000_2)).abs() < 1e-12);
    }

    #[test]
    fn the_parts_add_up_to_the_total() {
        let c = Cost {
            ec2: 1.0,
            ebs: 0.5,
            fargate: 0.25,
            lambda_jobs: 0.125,
            functions: 0.0625,
            requests: 0.03125,
            cloudwatch: 0.015625,
        };
        assert_eq!(c.total(), 1.984375);
    }
}
