//! What a run costs, in parts that add up to the total. Jobs are priced
//! by berth-core's [`berth_core::cost::price`], as the runtime prices
//! them; instances by its price model, whole.

use berth_core::prices::Prices;
use serde::Serialize;

use crate::figures as f;

/// USD, by what it pays for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    /// EC2 instances (Spot unless said otherwise).
    pub ec2: f64,
    /// The instances' root volumes.
    pub ebs: f64,
    /// Fargate and Fargate Spot tasks.
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

    /// What running the jobs cost: instances and their volumes, Fargate,
    /// Lambda jobs; not berth's own running.
    pub fn compute(&self) -> f64 {
        self.ec2 + self.ebs + self.fargate + self.lambda_jobs
    }
}

/// An instance of `name` running for `seconds` (billed a minute at least):
/// (EC2, EBS).
pub fn instance(prices: &Prices, name: &str, spot: bool, seconds: f64) -> (f64, f64) {
    let hours = seconds.max(berth_core::prices::EC2_MINIMUM_SECONDS.value) / 3600.0;
    let hourly = prices.instance_hour(name, spot).unwrap_or(0.0);
    (hours * hourly, hours * prices.root_volume_hour())
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
        let p = Prices::default();
        // An m5.large for an hour: 0.096 on demand, 40% of it on Spot.
        let (od, ebs) = instance(&p, "m5.large", false, 3600.0);
        let (spot, _) = instance(&p, "m5.large", true, 3600.0);
        assert!((od - 0.096).abs() < 1e-12 && (spot - 0.0384).abs() < 1e-12);
        assert!((ebs - 30.0 * 0.08 / 730.0).abs() < 1e-12);
        // A minute at least.
        let (blip, _) = instance(&p, "m5.large", false, 1.0);
        assert!((blip - 0.096 / 60.0).abs() < 1e-12);
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
        assert_eq!(c.compute(), 1.875);
    }
}
