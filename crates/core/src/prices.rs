//! The price model: what a job costs on each route and what an instance
//! costs, as data with their sources. One model for the driver's routing,
//! the scaler, the simulator and each job's cost.
//!
//! The defaults are AWS's us-east-1 list prices without free tiers. A
//! deployment overrides any of them with `BERTH_PRICES` (the template's
//! `Prices` parameter), a JSON object of [`Prices`]' fields; the Spot prices
//! of instance types it has observed go in [`Prices::spot`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::routing::FargateSize;

/// One figure: its value, its unit and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub source: &'static str,
}

/// Declares figures as constants, and `ALL`, every one in order.
#[macro_export]
macro_rules! figures {
    ($( $(#[$doc:meta])* $name:ident = $value:expr, $unit:literal, $source:literal; )*) => {
        $( $(#[$doc])* pub const $name: $crate::prices::Figure = $crate::prices::Figure {
            name: stringify!($name),
            value: $value,
            unit: $unit,
            source: $source,
        }; )*
        /// Every figure, in the order of its file.
        pub const ALL: &[$crate::prices::Figure] = &[$($name),*];
    };
}

figures! {
    LAMBDA_GB_SECOND_X86 = 0.000_016_666_7, "USD per GB-second",
        "AWS Lambda pricing, us-east-1, x86, first tier";
    LAMBDA_GB_SECOND_ARM = 0.000_013_333_4, "USD per GB-second",
        "AWS Lambda pricing, us-east-1, arm64, first tier";
    LAMBDA_REQUEST = 0.000_000_2, "USD per request",
        "AWS Lambda pricing: $0.20 per million requests";
    LAMBDA_MIB_PER_VCPU = 1769.0, "MiB per vCPU",
        "AWS Lambda developer guide: a function with 1,769 MB has the equivalent of one vCPU";
    FARGATE_VCPU_HOUR_X86 = 0.04048, "USD per vCPU-hour",
        "AWS Fargate pricing, us-east-1, Linux/x86";
    FARGATE_GB_HOUR_X86 = 0.004445, "USD per GB-hour",
        "AWS Fargate pricing, us-east-1, Linux/x86";
    FARGATE_VCPU_HOUR_ARM = 0.03238, "USD per vCPU-hour",
        "AWS Fargate pricing, us-east-1, Linux/ARM (20% below x86)";
    FARGATE_GB_HOUR_ARM = 0.00356, "USD per GB-hour",
        "AWS Fargate pricing, us-east-1, Linux/ARM (20% below x86)";
    FARGATE_SPOT_FRACTION = 0.30, "of the Fargate price",
        "AWS Fargate pricing: Fargate Spot runs at up to a 70% discount (assumed: the full 70%); Linux/x86 and, since 2024, Linux/ARM";
    FARGATE_MINIMUM_SECONDS = 60.0, "seconds",
        "AWS Fargate pricing: billed per second with a one-minute minimum";
    FARGATE_PULL_SECONDS = 15.0, "seconds",
        "assumed: Fargate bills from the start of the image pull (AWS Fargate pricing), this long before the container runs";
    SPOT_PRICE_FRACTION = 0.40, "of the on-demand price",
        "assumed where no Spot price was observed: Spot prices move by zone and hour; AWS's Auto Scaling guide's example table shows c5 Spot at 47-56% of on-demand and the Spot Instance Advisor lists larger savings for m5";
    EC2_MINIMUM_SECONDS = 60.0, "seconds",
        "Amazon EC2 pricing: Linux instances are billed per second with a 60-second minimum";
    EBS_GP3_GB_MONTH = 0.08, "USD per GB-month",
        "Amazon EBS pricing, us-east-1, gp3";
    INSTANCE_ROOT_VOLUME_GB = 30.0, "GB",
        "the ECS-optimized Amazon Linux 2023 AMI's root volume";
    HOURS_PER_MONTH = 730.0, "hours",
        "the AWS Pricing Calculator's month";
}

/// On-demand prices of EC2 instance types, USD per hour (Amazon EC2
/// on-demand pricing, us-east-1, Linux). Their sizes come from the catalog
/// of AWS's instance types (`scaling::InstanceType::known`).
pub const ON_DEMAND_HOUR: &[(&str, f64)] = &[
    // General purpose (m), compute (c) and memory (r), x86 and Graviton, 2
    // to 64 vCPUs: the allowed set template.yaml launches by default. Each
    // size of a family costs in proportion to its vCPUs.
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
    ("m5.4xlarge", 0.768),
    ("m5.8xlarge", 1.536),
    ("m5.12xlarge", 2.304),
    ("m5.16xlarge", 3.072),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("m6i.2xlarge", 0.384),
    ("m6i.4xlarge", 0.768),
    ("m6i.8xlarge", 1.536),
    ("m6i.12xlarge", 2.304),
    ("m6i.16xlarge", 3.072),
    ("m7i.large", 0.1008),
    ("m7i.xlarge", 0.2016),
    ("m7i.2xlarge", 0.4032),
    ("m7i.4xlarge", 0.8064),
    ("m7i.8xlarge", 1.6128),
    ("m7i.12xlarge", 2.4192),
    ("m7i.16xlarge", 3.2256),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("c5.2xlarge", 0.34),
    ("c5.4xlarge", 0.68),
    ("c5.9xlarge", 1.53),
    ("c5.12xlarge", 2.04),
    ("c6i.large", 0.085),
    ("c6i.xlarge", 0.17),
    ("c6i.2xlarge", 0.34),
    ("c6i.4xlarge", 0.68),
    ("c6i.8xlarge", 1.36),
    ("c6i.12xlarge", 2.04),
    ("c6i.16xlarge", 2.72),
    ("c7i.large", 0.0892),
    ("c7i.xlarge", 0.1785),
    ("c7i.2xlarge", 0.357),
    ("c7i.4xlarge", 0.714),
    ("c7i.8xlarge", 1.428),
    ("c7i.12xlarge", 2.142),
    ("c7i.16xlarge", 2.856),
    ("r5.large", 0.126),
    ("r5.xlarge", 0.252),
    ("r5.2xlarge", 0.504),
    ("r5.4xlarge", 1.008),
    ("r5.8xlarge", 2.016),
    ("r5.12xlarge", 3.024),
    ("r5.16xlarge", 4.032),
    ("r6i.large", 0.126),
    ("r6i.xlarge", 0.252),
    ("r6i.2xlarge", 0.504),
    ("r6i.4xlarge", 1.008),
    ("r6i.8xlarge", 2.016),
    ("r6i.12xlarge", 3.024),
    ("r6i.16xlarge", 4.032),
    ("r7i.large", 0.1323),
    ("r7i.xlarge", 0.2646),
    ("r7i.2xlarge", 0.5292),
    ("r7i.4xlarge", 1.0584),
    ("r7i.8xlarge", 2.1168),
    ("r7i.12xlarge", 3.1752),
    ("r7i.16xlarge", 4.2336),
    ("m6g.large", 0.077),
    ("m6g.xlarge", 0.154),
    ("m6g.2xlarge", 0.308),
    ("m6g.4xlarge", 0.616),
    ("m6g.8xlarge", 1.232),
    ("m6g.12xlarge", 1.848),
    ("m6g.16xlarge", 2.464),
    ("m7g.large", 0.0816),
    ("m7g.xlarge", 0.1632),
    ("m7g.2xlarge", 0.3264),
    ("m7g.4xlarge", 0.6528),
    ("m7g.8xlarge", 1.3056),
    ("m7g.12xlarge", 1.9584),
    ("m7g.16xlarge", 2.6112),
    ("c6g.large", 0.068),
    ("c6g.xlarge", 0.136),
    ("c6g.2xlarge", 0.272),
    ("c6g.4xlarge", 0.544),
    ("c6g.8xlarge", 1.088),
    ("c6g.12xlarge", 1.632),
    ("c6g.16xlarge", 2.176),
    ("c7g.large", 0.0725),
    ("c7g.xlarge", 0.145),
    ("c7g.2xlarge", 0.29),
    ("c7g.4xlarge", 0.58),
    ("c7g.8xlarge", 1.16),
    ("c7g.12xlarge", 1.74),
    ("c7g.16xlarge", 2.32),
    ("r6g.large", 0.1008),
    ("r6g.xlarge", 0.2016),
    ("r6g.2xlarge", 0.4032),
    ("r6g.4xlarge", 0.8064),
    ("r6g.8xlarge", 1.6128),
    ("r6g.12xlarge", 2.4192),
    ("r6g.16xlarge", 3.2256),
    ("r7g.large", 0.1071),
    ("r7g.xlarge", 0.2142),
    ("r7g.2xlarge", 0.4284),
    ("r7g.4xlarge", 0.8568),
    ("r7g.8xlarge", 1.7136),
    ("r7g.12xlarge", 2.5704),
    ("r7g.16xlarge", 3.4272),
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g4dn.4xlarge", 1.204),
    ("g4dn.8xlarge", 2.176),
    ("g4dn.12xlarge", 3.912),
    ("g4dn.16xlarge", 4.352),
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("g5.4xlarge", 1.624),
    ("g5.8xlarge", 2.448),
    ("g5.12xlarge", 5.672),
    ("g5.16xlarge", 4.096),
    ("g6.xlarge", 0.8048),
    ("g6.2xlarge", 0.9776),
    ("g6.4xlarge", 1.3232),
    ("g6.8xlarge", 2.0144),
    ("g6.12xlarge", 4.6016),
    ("g6.16xlarge", 3.3968),
    ("m5a.large", 0.086),
    ("m4.2xlarge", 0.4),
];

/// A CPU architecture, as ECS names it (`runtimePlatform.cpuArchitecture`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Arch {
    #[default]
    #[serde(rename = "X86_64")]
    X86_64,
    #[serde(rename = "ARM64")]
    Arm64,
}

impl Arch {
    /// The architecture a container instance's `ecs.cpu-architecture`
    /// attribute names.
    pub fn from_ecs_attribute(value: &str) -> Option<Self> {
        match value {
            "x86_64" => Some(Self::X86_64),
            "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }

    /// The value of a container instance's `ecs.cpu-architecture`
    /// attribute for this architecture.
    pub fn ecs_attribute(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::X86_64 => "X86_64",
            Self::Arm64 => "ARM64",
        })
    }
}

/// The prices berth decides with: the list prices unless overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    pub lambda_gb_second_x86: f64,
    pub lambda_gb_second_arm64: f64,
    pub lambda_request: f64,
    pub fargate_vcpu_hour_x86: f64,
    pub fargate_gb_hour_x86: f64,
    pub fargate_vcpu_hour_arm64: f64,
    pub fargate_gb_hour_arm64: f64,
    /// Fargate Spot's price as a fraction of Fargate's.
    pub fargate_spot_fraction: f64,
    pub fargate_minimum_seconds: f64,
    /// Billed before the container runs: the image pull.
    pub fargate_pull_seconds: f64,
    /// An instance's Spot price as a fraction of its on-demand price, where
    /// no Spot price of its type was observed.
    pub spot_fraction: f64,
    /// On-demand prices per instance-hour, by type, over the list's.
    pub on_demand: BTreeMap<String, f64>,
    /// Observed Spot prices per instance-hour, by type
    /// (`DescribeSpotPriceHistory`).
    pub spot: BTreeMap<String, f64>,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            lambda_gb_second_x86: LAMBDA_GB_SECOND_X86.value,
            lambda_gb_second_arm64: LAMBDA_GB_SECOND_ARM.value,
            lambda_request: LAMBDA_REQUEST.value,
            fargate_vcpu_hour_x86: FARGATE_VCPU_HOUR_X86.value,
            fargate_gb_hour_x86: FARGATE_GB_HOUR_X86.value,
            fargate_vcpu_hour_arm64: FARGATE_VCPU_HOUR_ARM.value,
            fargate_gb_hour_arm64: FARGATE_GB_HOUR_ARM.value,
            fargate_spot_fraction: FARGATE_SPOT_FRACTION.value,
            fargate_minimum_seconds: FARGATE_MINIMUM_SECONDS.value,
            fargate_pull_seconds: FARGATE_PULL_SECONDS.value,
            spot_fraction: SPOT_PRICE_FRACTION.value,
            on_demand: BTreeMap::new(),
            spot: BTreeMap::new(),
        }
    }
}

/// Prices that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prices: {0}")]
pub struct PricesError(pub String);

impl Prices {
    /// Reads overrides of the list prices from JSON (`BERTH_PRICES`); an
    /// empty text is the list prices.
    pub fn from_json(text: &str) -> Result<Self, PricesError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let prices: Self =
            serde_json::from_str(text).map_err(|e| PricesError(format!("not valid: {e}")))?;
        prices.validate()?;
        Ok(prices)
    }

    /// Every price is a finite number, not negative; fractions are at most 1.
    pub fn validate(&self) -> Result<(), PricesError> {
        let scalars = [
            ("lambda_gb_second_x86", self.lambda_gb_second_x86),
            ("lambda_gb_second_arm64", self.lambda_gb_second_arm64),
            ("lambda_request", self.lambda_request),
            ("fargate_vcpu_hour_x86", self.fargate_vcpu_hour_x86),
            ("fargate_gb_hour_x86", self.fargate_gb_hour_x86),
            ("fargate_vcpu_hour_arm64", self.fargate_vcpu_hour_arm64),
            ("fargate_gb_hour_arm64", self.fargate_gb_hour_arm64),
            ("fargate_spot_fraction", self.fargate_spot_fraction),
            ("fargate_minimum_seconds", self.fargate_minimum_seconds),
            ("fargate_pull_seconds", self.fargate_pull_seconds),
            ("spot_fraction", self.spot_fraction),
        ];
        let per_type = self
            .on_demand
            .iter()
            .chain(&self.spot)
            .map(|(k, v)| (k.as_str(), *v));
        for (name, v) in scalars.into_iter().chain(per_type) {
            if !(v.is_finite() && v >= 0.0) {
                return Err(PricesError(format!(
                    "`{name}` must be a number of at least 0, found {v}"
                )));
            }
        }
        for (name, v) in [
            ("fargate_spot_fraction", self.fargate_spot_fraction),
            ("spot_fraction", self.spot_fraction),
        ] {
            if v > 1.0 {
                return Err(PricesError(format!(
                    "`{name}` must be at most 1, found {v}"
                )));
            }
        }
        Ok(())
    }

    /// A Fargate task of `size` for an hour.
    pub fn fargate_hour(&self, size: FargateSize, arch: Arch, spot: bool) -> f64 {
        let (vcpu_hour, gb_hour) = match arch {
            Arch::X86_64 => (self.fargate_vcpu_hour_x86, self.fargate_gb_hour_x86),
            Arch::Arm64 => (self.fargate_vcpu_hour_arm64, self.fargate_gb_hour_arm64),
        };
        let hour =
            f64::from(size.cpu) / 1024.0 * vcpu_hour + f64::from(size.memory) / 1024.0 * gb_hour;
        if spot {
            hour * self.fargate_spot_fraction
        } else {
            hour
        }
    }

    /// The seconds Fargate bills for a container that runs `run_seconds`:
    /// from the image pull, one minute at least.
    pub fn fargate_billed_seconds(&self, run_seconds: f64) -> f64 {
        (run_seconds + self.fargate_pull_seconds).max(self.fargate_minimum_seconds)
    }

    /// A job that runs `run_seconds` on Fargate.
    pub fn fargate(&self, size: FargateSize, arch: Arch, spot: bool, run_seconds: f64) -> f64 {
        self.fargate_hour(size, arch, spot) * self.fargate_billed_seconds(run_seconds) / 3600.0
    }

    /// The memory a Lambda function needs to give a job `cpu` units and
    /// `memory` MiB: Lambda's CPU grows with its memory.
    pub fn lambda_memory(&self, cpu: u32, memory: u32) -> u32 {
        let for_cpu = (f64::from(cpu) / 1024.0 * LAMBDA_MIB_PER_VCPU.value).ceil() as u32;
        memory.max(for_cpu).max(128)
    }

    /// A job of `cpu` units and `memory` MiB that runs `seconds` as one
    /// invocation.
    pub fn lambda(&self, cpu: u32, memory: u32, arch: Arch, seconds: f64) -> f64 {
        self.lambda_invocation(self.lambda_memory(cpu, memory), arch, seconds)
    }

    /// An invocation of a function of `memory_mib` that runs `seconds`:
    /// its GB-seconds and the request.
    pub fn lambda_invocation(&self, memory_mib: u32, arch: Arch, seconds: f64) -> f64 {
        self.lambda_gb_second(arch) * f64::from(memory_mib) / 1024.0 * seconds + self.lambda_request
    }

    pub fn lambda_gb_second(&self, arch: Arch) -> f64 {
        match arch {
            Arch::X86_64 => self.lambda_gb_second_x86,
            Arch::Arm64 => self.lambda_gb_second_arm64,
        }
    }

    /// An instance of `name` for an hour, on demand.
    pub fn on_demand_hour(&self, name: &str) -> Option<f64> {
        self.on_demand.get(name).copied().or_else(|| {
            ON_DEMAND_HOUR
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p)
        })
    }

    /// An instance of `name` for an hour on Spot: its observed price, else
    /// the assumed fraction of its on-demand price.
    pub fn spot_hour(&self, name: &str) -> Option<f64> {
        self.spot
            .get(name)
            .copied()
            .or_else(|| Some(self.on_demand_hour(name)? * self.spot_fraction))
    }

    /// These prices with `observed` Spot prices over the configured ones
    /// (a type observed now is priced as observed).
    pub fn with_observed_spot(&self, observed: &BTreeMap<String, f64>) -> Self {
        let mut prices = self.clone();
        prices
            .spot
            .extend(observed.iter().map(|(k, v)| (k.clone(), *v)));
        prices
    }

    pub fn instance_hour(&self, name: &str, spot: bool) -> Option<f64> {
        if spot {
            self.spot_hour(name)
        } else {
            self.on_demand_hour(name)
        }
    }

    /// An instance's root volume for an hour.
    pub fn root_volume_hour(&self) -> f64 {
        INSTANCE_ROOT_VOLUME_GB.value * EBS_GP3_GB_MONTH.value / HOURS_PER_MONTH.value
    }
}

/// One Spot price per instance type from the zones' quotes
/// (`DescribeSpotPriceHistory`'s, one per type and zone): the median of the
/// type's quotes, as the group's instances land in any of the zones (the
/// upper of the two middle quotes where their number is even). A quote that
/// is not a positive, finite price is left out.
pub fn observed_spot(quotes: &[(String, f64)]) -> BTreeMap<String, f64> {
    let mut by_type: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (kind, price) in quotes {
        if price.is_finite() && *price > 0.0 {
            by_type.entry(kind).or_default().push(*price);
        }
    }
    by_type
        .into_iter()
        .map(|(kind, mut prices)| {
            prices.sort_by(f64::total_cmp);
            (kind.to_owned(), prices[prices.len() / 2])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: FargateSize = FargateSize {
        cpu: 1024,
        memory: 2048,
    };

    #[test]
    fn hand_computed_prices() {
        let p = Prices::default();
        // 1 vCPU / 2 GB on Fargate for 10 minutes and its pull:
        // (0.04048 + 2 * 0.004445) * 615 / 3600.
        let ten_min = p.fargate(SIZE, Arch::X86_64, false, 600.0);
        assert!((ten_min - 0.008_434).abs() < 1e-6, "{ten_min}");
        // Under a minute with the pull is billed as a minute.
        let short = p.fargate(SIZE, Arch::X86_64, false, 5.0);
        assert!((short - 0.049_37 / 60.0).abs() < 1e-9, "{short}");
        // Spot is 30% of it; ARM is 20% below x86.
        let spot = p.fargate(SIZE, Arch::X86_64, true, 600.0);
        assert!((spot - ten_min * 0.3).abs() < 1e-12);
        let arm = p.fargate_hour(SIZE, Arch::Arm64, false);
        assert!((arm / p.fargate_hour(SIZE, Arch::X86_64, false) - 0.8).abs() < 0.001);
        // An m5.large for an hour: 0.096 on demand, 40% of it on Spot
        // unless a Spot price was observed.
        assert_eq!(p.on_demand_hour("m5.large"), Some(0.096));
        assert!((p.spot_hour("m5.large").unwrap() - 0.0384).abs() < 1e-12);
        let observed = Prices {
            spot: [("m5.large".to_string(), 0.031)].into(),
            ..Prices::default()
        };
        assert_eq!(observed.spot_hour("m5.large"), Some(0.031));
        assert_eq!(p.spot_hour("x9.unknown"), None);
        // 1 GB for 10 s on Lambda, plus the request; a vCPU takes 1,769 MiB.
        let l = p.lambda(512, 1024, Arch::X86_64, 10.0);
        assert!((l - (10.0 * 0.000_016_666_7 + 0.000_000_2)).abs() < 1e-12);
        assert_eq!(p.lambda_memory(1024, 512), 1769);
        assert_eq!(p.lambda_memory(128, 6), 222);
        assert_eq!(p.lambda_memory(0, 6), 128);
    }

    #[test]
    fn overrides_are_read_and_checked() {
        let p = Prices::from_json(r#"{"fargate_spot_fraction":0.25,"spot":{"c6g.large":0.02}}"#)
            .unwrap();
        assert_eq!(p.fargate_spot_fraction, 0.25);
        assert_eq!(p.spot_hour("c6g.large"), Some(0.02));
        assert_eq!(p.lambda_request, LAMBDA_REQUEST.value);
        assert_eq!(Prices::from_json(" ").unwrap(), Prices::default());
        let typo = Prices::from_json(r#"{"fargate_spot_fracton":0.25}"#).unwrap_err();
        assert!(
            typo.0.contains("unknown field `fargate_spot_fracton`"),
            "{typo}"
        );
        let e = Prices::from_json(r#"{"spot_fraction":1.5}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "prices: `spot_fraction` must be at most 1, found 1.5"
        );
        let e = Prices::from_json(r#"{"spot":{"m5.large":-1}}"#).unwrap_err();
        assert!(
            e.0.contains("`m5.large` must be a number of at least 0"),
            "{e}"
        );
    }

    #[test]
    fn every_figure_names_a_source_and_is_listed_once() {
        let mut names: Vec<&str> = ALL.iter().map(|f| f.name).collect();
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
        for (name, price) in ON_DEMAND_HOUR {
            let t = crate::scaling::InstanceType::known(name);
            assert!(t.is_some_and(|t| t.room.cpu > 0), "{name}");
            assert!(*price > 0.0);
        }
    }

    #[test]
    fn observed_spot_prices_are_each_types_median_over_its_zones() {
        let quotes = [
            ("m5.large".to_string(), 0.041),
            ("m5.large".to_string(), 0.035),
            ("m5.large".to_string(), 0.038),
            ("c6g.large".to_string(), 0.03),
            ("c6g.large".to_string(), 0.02),
            ("r5.large".to_string(), f64::NAN),
            ("r5.large".to_string(), 0.0),
        ];
        let observed = observed_spot(&quotes);
        assert_eq!(
            observed,
            [
                ("c6g.large".to_string(), 0.03),
                ("m5.large".to_string(), 0.038)
            ]
            .into()
        );
        // Observed over configured; the rest as before.
        let configured = Prices {
            spot: [
                ("m5.large".to_string(), 0.05),
                ("m5a.large".to_string(), 0.03),
            ]
            .into(),
            ..Prices::default()
        };
        let now = configured.with_observed_spot(&observed);
        assert_eq!(now.spot_hour("m5.large"), Some(0.038));
        assert_eq!(now.spot_hour("m5a.large"), Some(0.03));
        assert_eq!(
            now.spot_hour("r5.large"),
            Some(0.126 * SPOT_PRICE_FRACTION.value),
            "not observed: the assumed fraction of on demand"
        );
    }
}
