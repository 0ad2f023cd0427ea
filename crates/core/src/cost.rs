//! What one attempt cost, by the price model ([`crate::prices`]): the same
//! functions price an attempt the runtime records and one the simulator
//! runs.
//!
//! - **Lambda**: the function's memory for the invocation's billed
//!   duration (GB-seconds), and the request.
//! - **Fargate**: its size for the seconds it is billed (from the start of
//!   the image pull to the task's stop, one minute at least), on demand or
//!   Spot.
//! - **EC2**: the task's share of its instance (its reserved CPU or memory
//!   share, the larger) over its run, at the instance's price: Spot as
//!   observed (else the assumed fraction of on demand), or on demand.
//!
//! An estimate: data transfer, logs, image storage and berth's own
//! functions are left out (`berth simulate` prices berth's functions).

use serde::{Deserialize, Serialize};

use crate::Route;
use crate::prices::{Arch, Prices};
use crate::routing::FargateSize;

/// What an attempt used, as far as its price goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// An invocation of a function of `memory_mib` for `seconds`.
    Lambda {
        memory_mib: u32,
        arch: Arch,
        seconds: f64,
    },
    /// A Fargate task of `size`, billed `billed_seconds` before the
    /// minimum ([`fargate_billed_seconds`]).
    Fargate {
        size: FargateSize,
        arch: Arch,
        spot: bool,
        billed_seconds: f64,
    },
    /// A task holding `share` of an instance of `instance_type` for
    /// `seconds`.
    Ec2 {
        instance_type: String,
        spot: bool,
        share: f64,
        seconds: f64,
    },
}

/// An attempt's cost: USD, its route and what it was priced on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptCost {
    pub usd: f64,
    pub route: Route,
    /// The figures it was priced on, for a reader
    /// (`Fargate Spot 1 vCPU 2 GiB x86, 75 s billed`).
    pub basis: String,
}

/// Why an attempt could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no price for instance type `{0}`: add it to the `Prices` parameter's `on_demand`")]
pub struct Unpriced(pub String);

/// The seconds Fargate bills a task for: from the start of its image pull
/// (else its start) to its stop, one minute at least; nothing for a task
/// that never began to pull. Times in epoch milliseconds.
pub fn fargate_billed_seconds(
    prices: &Prices,
    pull_started_ms: Option<i64>,
    started_ms: Option<i64>,
    stopped_ms: i64,
) -> f64 {
    match pull_started_ms.or(started_ms) {
        Some(from) => seconds_between(from, stopped_ms).max(prices.fargate_minimum_seconds),
        None => 0.0,
    }
}

/// A task's share of its instance: its reserved CPU or memory share, the
/// larger, at most the whole instance. An instance with no room given
/// counts as wholly taken.
pub fn share(cpu: u32, memory: u32, instance_cpu: u32, instance_memory: u32) -> f64 {
    let part = |of: u32, whole: u32| {
        if whole == 0 {
            1.0
        } else {
            f64::from(of) / f64::from(whole)
        }
    };
    part(cpu, instance_cpu)
        .max(part(memory, instance_memory))
        .min(1.0)
}

/// Seconds from `from` to `to` (epoch milliseconds); none when `to` is
/// not later.
pub fn seconds_between(from: i64, to: i64) -> f64 {
    (to.saturating_sub(from)).max(0) as f64 / 1000.0
}

/// What `usage` cost at `prices`.
pub fn price(prices: &Prices, usage: &Usage) -> Result<AttemptCost, Unpriced> {
    Ok(match usage {
        Usage::Lambda {
            memory_mib,
            arch,
            seconds,
        } => {
            let gb_seconds = f64::from(*memory_mib) / 1024.0 * seconds;
            AttemptCost {
                usd: prices.lambda_invocation(*memory_mib, *arch, *seconds),
                route: Route::Lambda,
                basis: format!(
                    "Lambda {memory_mib} MB {}, {seconds:.3} s: {gb_seconds:.3} GB-s and the request",
                    arch_name(*arch)
                ),
            }
        }
        Usage::Fargate {
            size,
            arch,
            spot,
            billed_seconds,
        } => AttemptCost {
            usd: prices.fargate_hour(*size, *arch, *spot) * billed_seconds / 3600.0,
            route: if *spot {
                Route::FargateSpot
            } else {
                Route::Fargate
            },
            basis: format!(
                "{} {} vCPU {} GiB {}, {billed_seconds:.0} s billed",
                if *spot { "Fargate Spot" } else { "Fargate" },
                trim(f64::from(size.cpu) / 1024.0),
                trim(f64::from(size.memory) / 1024.0),
                arch_name(*arch)
            ),
        },
        Usage::Ec2 {
            instance_type,
            spot,
            share,
            seconds,
        } => {
            let hour = prices
                .instance_hour(instance_type, *spot)
                .ok_or_else(|| Unpriced(instance_type.clone()))?;
            AttemptCost {
                usd: hour * share * seconds / 3600.0,
                route: Route::Ec2,
                basis: format!(
                    "{:.1}% of {instance_type} {} at ${hour:.4}/h, {seconds:.0} s",
                    share * 100.0,
                    if *spot { "Spot" } else { "on demand" },
                ),
            }
        }
    })
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86",
        Arch::Arm64 => "arm64",
    }
}

/// A number without a needless fraction: 1, 0.5, 0.25.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// USD as a reader wants it: cents to the hundredth below a dollar.
pub fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".to_owned()
    } else if v < 0.01 {
        // Six places at most, no trailing zeros: $0.001, $0.000417.
        let places = format!("{v:.6}");
        format!("${}", places.trim_end_matches('0'))
    } else if v < 1.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_BY_TWO: FargateSize = FargateSize {
        cpu: 1024,
        memory: 2048,
    };

    #[test]
    fn fargate_bills_from_the_pull_a_minute_at_least_and_spot_at_its_fraction() {
        let p = Prices::default();
        // Pulled at 0, started at 12 s, stopped at 312 s: 312 s billed.
        let billed = fargate_billed_seconds(&p, Some(0), Some(12_000), 312_000);
        assert_eq!(billed, 312.0);
        let on_demand = price(
            &p,
            &Usage::Fargate {
                size: ONE_BY_TWO,
                arch: Arch::X86_64,
                spot: false,
                billed_seconds: billed,
            },
        )
        .unwrap();
        // (0.04048 + 2 * 0.004445) per hour, for 312 s.
        let by_hand = (0.04048 + 2.0 * 0.004445) * 312.0 / 3600.0;
        assert!((on_demand.usd - by_hand).abs() < 1e-12, "{on_demand:?}");
        assert_eq!(on_demand.route, Route::Fargate);
        assert_eq!(on_demand.basis, "Fargate 1 vCPU 2 GiB x86, 312 s billed");
        // A 5 s task is billed a minute; Spot is 30% of it.
        let short = fargate_billed_seconds(&p, Some(1_000), Some(9_000), 14_000);
        assert_eq!(short, 60.0);
        let spot = price(
            &p,
            &Usage::Fargate {
                size: ONE_BY_TWO,
                arch: Arch::X86_64,
                spot: true,
                billed_seconds: short,
            },
        )
        .unwrap();
        let by_hand = (0.04048 + 2.0 * 0.004445) * 0.30 * 60.0 / 3600.0;
        assert!((spot.usd - by_hand).abs() < 1e-12, "{spot:?}");
        assert_eq!(spot.route, Route::FargateSpot);
        // No pull time: from its start; never started: nothing billed.
        assert_eq!(fargate_billed_seconds(&p, None, Some(0), 90_000), 90.0);
        assert_eq!(fargate_billed_seconds(&p, None, None, 90_000), 0.0);
    }

    #[test]
    fn lambda_bills_its_memory_for_its_duration_and_the_request() {
        let p = Prices::default();
        let cost = price(
            &p,
            &Usage::Lambda {
                memory_mib: 2048,
                arch: Arch::Arm64,
                seconds: 12.5,
            },
        )
        .unwrap();
        // 2 GB for 12.5 s at arm64's rate, and $0.20 per million requests.
        let by_hand = 2.0 * 12.5 * 0.000_013_333_4 + 0.000_000_2;
        assert!((cost.usd - by_hand).abs() < 1e-15, "{cost:?}");
        assert_eq!(cost.route, Route::Lambda);
        assert!(cost.basis.contains("25.000 GB-s"), "{}", cost.basis);
    }

    #[test]
    fn an_ec2_task_pays_its_larger_share_of_its_instance() {
        let p = Prices::default();
        // 1 vCPU and 6 GiB of a c5.xlarge's 4096 units and 7,680 MiB: the
        // memory share, 0.8, is the larger.
        let s = share(1024, 6144, 4096, 7680);
        assert!((s - 0.8).abs() < 1e-12);
        let spot = price(
            &p,
            &Usage::Ec2 {
                instance_type: "c5.xlarge".into(),
                spot: true,
                share: s,
                seconds: 1800.0,
            },
        )
        .unwrap();
        // c5.xlarge: $0.17/h on demand, 40% of it on Spot where none was
        // observed; 0.8 of it for half an hour.
        let by_hand = 0.17 * 0.40 * 0.8 * 0.5;
        assert!((spot.usd - by_hand).abs() < 1e-12, "{spot:?}");
        assert_eq!(spot.basis, "80.0% of c5.xlarge Spot at $0.0680/h, 1800 s");
        // An observed Spot price stands over the fraction.
        let observed = Prices {
            spot: [("c5.xlarge".to_owned(), 0.0668)].into(),
            ..Prices::default()
        };
        let at_observed = price(
            &observed,
            &Usage::Ec2 {
                instance_type: "c5.xlarge".into(),
                spot: true,
                share: 0.25,
                seconds: 3600.0,
            },
        )
        .unwrap();
        assert!((at_observed.usd - 0.0668 * 0.25).abs() < 1e-12);
        // More than the instance is the instance; an unknown type is said.
        assert_eq!(share(8192, 1024, 4096, 7680), 1.0);
        let unknown = price(
            &p,
            &Usage::Ec2 {
                instance_type: "x9.huge".into(),
                spot: false,
                share: 0.5,
                seconds: 60.0,
            },
        );
        assert_eq!(unknown, Err(Unpriced("x9.huge".into())));
    }

    #[test]
    fn dollars_read_as_a_reader_expects() {
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(0.000_416_7), "$0.000417");
        assert_eq!(usd(0.001), "$0.001");
        assert_eq!(usd(0.0412), "$0.0412");
        assert_eq!(usd(12.345), "$12.35");
    }
}
