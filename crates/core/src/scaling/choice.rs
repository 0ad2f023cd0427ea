//! Which instance type to launch for the jobs that wait: the types on which
//! they cost least, chosen as Karpenter chooses, first fit decreasing over
//! the allowed types.
//!
//! The largest job still waiting decides which types can be considered (the
//! ones it fits); each of those is packed, largest job first, with as many
//! of the waiting jobs as one instance holds; of the [`LOOKAHEAD`] cheapest
//! per job it takes, the one with which the whole set costs least (the
//! rest packed after it) wins, and the types within [`EQUAL_FIT`] of it
//! that take the same jobs go with it, for EC2 to choose among by Spot price
//! and capacity (`price-capacity-optimized`). Its jobs are taken off, and
//! the next instance is chosen for the rest, until every job that some type
//! holds has an instance.

use crate::prices::Arch;

use super::{InstanceType, Room};

/// How much dearer an instance of the same fit may be and still be offered
/// to EC2 with the cheapest: Spot prices move, and EC2's
/// `price-capacity-optimized` picks among them by the capacity it has.
pub const EQUAL_FIT: f64 = 1.10;

/// Instances to launch: `count` of any of `types` (the cheapest first),
/// for `jobs` of the waiting jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub types: Vec<String>,
    pub count: u32,
    pub jobs: u32,
    /// What one instance of the cheapest type costs an hour.
    pub hourly: f64,
}

/// The instances that run `waiting` (each need with how many jobs ask it)
/// for least, over `types` priced an hour by `hourly` (a
/// type with no price is not chosen). A need no priced type holds is left
/// out: [`super::unplaceable`] says why.
pub fn choose(
    waiting: &[(Room, u32)],
    types: &[InstanceType],
    hourly: impl Fn(&InstanceType) -> Option<f64>,
) -> Vec<Launch> {
    let priced: Vec<(&InstanceType, f64)> = types
        .iter()
        .filter_map(|t| hourly(t).map(|h| (t, h)))
        .collect();
    let mut left: Vec<(Room, u32)> = waiting
        .iter()
        .copied()
        .filter(|(need, count)| *count > 0 && priced.iter().any(|(t, _)| need.fits(t.room)))
        .collect();
    left.sort_unstable_by_key(|(need, _)| std::cmp::Reverse(*need));
    pack(left, &priced, LOOKAHEAD)
}

/// How many of the instances the largest waiting job could start are
/// weighed by what the whole set would cost, the rest of the jobs packed
/// after them: the cheapest per job alone can take jobs an instance of
/// their own would run for less (a 16-vCPU job and a GPU job on one large
/// GPU instance, where a memory instance and a small GPU one cost less).
const LOOKAHEAD: usize = 6;

/// [`choose`] on `left` (largest first, each held by a priced type),
/// weighing the `lookahead` cheapest instances per job for the largest by
/// the cost of the whole set.
fn pack(
    mut left: Vec<(Room, u32)>,
    priced: &[(&InstanceType, f64)],
    lookahead: usize,
) -> Vec<Launch> {
    let mut launches: Vec<Launch> = Vec::new();
    while let Some(&(largest, _)) = left.first() {
        // Each type the largest job fits, with the jobs one instance of it
        // takes.
        let mut offers: Vec<(&InstanceType, f64, Vec<u32>)> = priced
            .iter()
            .filter(|(t, _)| largest.fits(t.room))
            .map(|&(t, h)| (t, h, one_instance(&left, t.room)))
            .collect();
        let per_job = |h: f64, taken: &[u32]| h / f64::from(taken.iter().sum::<u32>().max(1));
        offers.sort_by(|a, b| {
            per_job(a.1, &a.2)
                .total_cmp(&per_job(b.1, &b.2))
                .then_with(|| a.0.name.cmp(&b.0.name))
        });
        if offers.is_empty() {
            break;
        }
        // The whole set's cost an hour with each of the first offers.
        let mut best = 0;
        if lookahead > 0 {
            let total = |k: usize| {
                let (_, h, taken) = &offers[k];
                let mut rest = left.clone();
                for ((_, have), want) in rest.iter_mut().zip(taken) {
                    *have -= want;
                }
                rest.retain(|(_, have)| *have > 0);
                h + pack(rest, priced, 0)
                    .iter()
                    .map(|l| l.hourly * f64::from(l.count))
                    .sum::<f64>()
            };
            let totals: Vec<f64> = (0..offers.len().min(lookahead)).map(total).collect();
            for (k, t) in totals.iter().enumerate() {
                if *t < totals[best] - 1e-12 {
                    best = k;
                }
            }
        }
        let (_, best_hourly, taken) = offers[best].clone();
        let best_per_job = per_job(best_hourly, &taken);
        let types: Vec<String> = offers
            .iter()
            .filter(|(_, h, t)| *t == taken && per_job(*h, t) <= best_per_job * EQUAL_FIT)
            .map(|(t, _, _)| t.name.clone())
            .collect();
        // As many instances alike as the same jobs fill again.
        let mut count = 0;
        while left
            .iter()
            .zip(&taken)
            .all(|((_, have), want)| have >= want)
            && taken.iter().any(|&k| k > 0)
        {
            for ((_, have), want) in left.iter_mut().zip(&taken) {
                *have -= want;
            }
            count += 1;
        }
        let jobs = taken.iter().sum::<u32>() * count;
        left.retain(|(_, have)| *have > 0);
        match launches.last_mut() {
            Some(last) if last.types == types => {
                last.count += count;
                last.jobs += jobs;
            }
            _ => launches.push(Launch {
                types,
                count,
                jobs,
                hourly: best_hourly,
            }),
        }
    }
    launches
}

/// How many of each of `needs` (largest first) one instance of `room`
/// takes, first fit.
fn one_instance(needs: &[(Room, u32)], room: Room) -> Vec<u32> {
    let mut free = room;
    needs
        .iter()
        .map(|&(need, count)| {
            let k = need.fits_times(free).min(count);
            for _ in 0..k {
                free.take(need);
            }
            k
        })
        .collect()
}

/// The CPU architecture of instance type `name`, by the catalog; `None`
/// for a type it does not know.
pub fn architecture(name: &str) -> Option<Arch> {
    super::catalog_entry(name)?.3
}

/// The instance types berth may launch, as template.yaml gives them: type
/// names (`m5.large`) and families (`m7g`), a family standing for its sizes
/// whose vCPUs and memory are within the ranges and whose architecture is
/// allowed. A family's bare-metal sizes are left out (they boot in
/// minutes, not seconds), and so are GPU types of any architecture but
/// x86 (the ECS GPU-optimized AMI is x86 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub entries: Vec<String>,
    pub vcpus: (u32, u32),
    pub memory_gib: (u32, u32),
    pub architectures: Vec<Arch>,
}

impl Allowed {
    /// The allowed types' names, in the catalog's order; a name the catalog
    /// does not know is kept (the scaler says it cannot size it).
    pub fn types(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for entry in &self.entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if entry.contains('.') {
                if !out.iter().any(|t| t == entry) {
                    out.push(entry.to_owned());
                }
                continue;
            }
            for (name, vcpus, memory_mib, gpus, arch) in super::catalog() {
                let family = name.split('.').next().unwrap_or_default();
                let arch_allowed = arch.is_some_and(|a| self.architectures.contains(&a));
                let within = |v: u32, (lo, hi): (u32, u32)| lo <= v && v <= hi;
                if family == entry
                    && !name.contains("metal")
                    && arch_allowed
                    && !(gpus > 0 && arch != Some(Arch::X86_64))
                    && within(vcpus, self.vcpus)
                    && within(memory_mib / 1024, self.memory_gib)
                    && !out.iter().any(|t| t == name)
                {
                    out.push(name.to_owned());
                }
            }
        }
        out
    }
}

/// A range of whole numbers written `LOW-HIGH` (or one number).
pub fn range(s: &str) -> Result<(u32, u32), String> {
    let number = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("expected LOW-HIGH in whole numbers, found {s:?}"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (number(lo)?, number(hi)?),
        None => (number(s)?, number(s)?),
    };
    if lo > hi {
        return Err(format!("{s:?}: the low end is above the high end"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> Vec<InstanceType> {
        names
            .iter()
            .map(|n| InstanceType::known(n).expect("in the catalog"))
            .collect()
    }

    /// Spot prices an hour: about 40% of on demand, us-east-1.
    fn spot(t: &InstanceType) -> Option<f64> {
        Some(match t.name.as_str() {
            "m5.large" => 0.0384,
            "m5.xlarge" => 0.0768,
            "m5.4xlarge" => 0.3072,
            "m5.8xlarge" => 0.6144,
            "r5.4xlarge" => 0.4032,
            "c5.xlarge" => 0.068,
            "m6i.large" => 0.0384,
            "g4dn.xlarge" => 0.2104,
            "g4dn.2xlarge" => 0.3008,
            _ => return None,
        })
    }

    const GIB: u32 = 1024;

    #[test]
    fn a_huge_job_starts_a_type_that_fits_it_not_the_first_type() {
        let allowed = types(&[
            "m5.large",
            "m5.xlarge",
            "m5.4xlarge",
            "m5.8xlarge",
            "r5.4xlarge",
        ]);
        // 16 vCPUs and 64 GiB: an m5.4xlarge registers 97.5% of its 64 GiB,
        // too little; an r5.4xlarge (128 GiB) holds it for less than an
        // m5.8xlarge.
        let huge = Room::new(16 * 1024, 64 * GIB, 0);
        let launches = choose(&[(huge, 1)], &allowed, spot);
        assert_eq!(launches.len(), 1, "{launches:?}");
        assert_eq!(launches[0].types, ["r5.4xlarge"]);
        assert_eq!((launches[0].count, launches[0].jobs), (1, 1));
    }

    #[test]
    fn a_gpu_job_starts_a_gpu_type_that_holds_it() {
        let allowed = types(&["m5.large", "m5.xlarge", "g4dn.xlarge", "g4dn.2xlarge"]);
        // 4 vCPUs, 16 GiB and a GPU: more memory than a g4dn.xlarge
        // registers, so the 2xlarge.
        let train = Room::new(4096, 16 * GIB, 1);
        assert_eq!(
            choose(&[(train, 1)], &allowed, spot)[0].types,
            ["g4dn.2xlarge"]
        );
        let small = Room::new(1024, 4 * GIB, 1);
        assert_eq!(
            choose(&[(small, 1)], &allowed, spot)[0].types,
            ["g4dn.xlarge"]
        );
    }

    #[test]
    fn many_small_jobs_fill_the_type_that_costs_least_per_job() {
        let allowed = types(&["m5.large", "m6i.large", "m5.xlarge", "c5.xlarge"]);
        // Eight jobs of 1 vCPU / 2 GiB: a c5.xlarge takes 3 (7,985 MiB), an
        // m5.xlarge 4 for a little more; an m5.large 2 for half. m5.large
        // and m6i.large (the same size and price) are offered together.
        let job = Room::new(1024, 2 * GIB, 0);
        let launches = choose(&[(job, 8)], &allowed, spot);
        assert_eq!(launches.len(), 1, "{launches:?}");
        let l = &launches[0];
        assert_eq!(l.types, ["m5.large", "m6i.large"]);
        assert_eq!((l.count, l.jobs), (4, 8));
    }

    #[test]
    fn jobs_share_the_instance_a_larger_one_needs_and_nothing_holds_is_skipped() {
        let allowed = types(&["m5.large", "m5.xlarge", "g4dn.xlarge"]);
        let waiting = [
            (Room::new(1024, 2 * GIB, 1), 1),
            (Room::new(1024, 2 * GIB, 0), 3),
            (Room::new(64 * 1024, 256 * GIB, 0), 1),
        ];
        let launches = choose(&waiting, &allowed, spot);
        let all: Vec<(&str, u32, u32)> = launches
            .iter()
            .map(|l| (l.types[0].as_str(), l.count, l.jobs))
            .collect();
        // The GPU instance the GPU job needs has room for the three small
        // ones: $0.21 for all four, where two m5.large more would add
        // $0.077. The 64-vCPU job fits no type: left out.
        assert_eq!(all, [("g4dn.xlarge", 1, 4)], "{launches:?}");
        // Without the GPU job, the small ones go on m5.large.
        let launches = choose(&waiting[1..], &allowed, spot);
        assert_eq!(launches[0].types[0], "m5.large");
        assert_eq!(
            (launches[0].count, launches[0].jobs),
            (2, 3),
            "{launches:?}"
        );
        assert!(choose(&[(Room::new(1024, 2048, 0), 1)], &allowed, |_| None).is_empty());
    }

    #[test]
    fn a_large_job_and_a_gpu_job_go_where_the_two_cost_least() {
        let allowed = types(&["r5.4xlarge", "g4dn.xlarge", "g4dn.8xlarge", "m5.large"]);
        let price = |t: &InstanceType| {
            Some(match t.name.as_str() {
                "r5.4xlarge" => 0.4032,
                "g4dn.xlarge" => 0.2104,
                "g4dn.8xlarge" => 0.8704,
                "m5.large" => 0.0384,
                _ => return None,
            })
        };
        // 16 vCPUs fill an r5.4xlarge; a g4dn.8xlarge takes the three at
        // $0.29 a job, but an r5.4xlarge and a g4dn.xlarge (the GPU job and
        // the small one) cost $0.61 for the three, not $0.87.
        let waiting = [
            (Room::new(16 * 1024, 64 * GIB, 0), 1),
            (Room::new(1024, 2 * GIB, 1), 1),
            (Room::new(1024, 2 * GIB, 0), 1),
        ];
        let launches = choose(&waiting, &allowed, price);
        let all: Vec<(&str, u32, u32)> = launches
            .iter()
            .map(|l| (l.types[0].as_str(), l.count, l.jobs))
            .collect();
        assert_eq!(all, [("r5.4xlarge", 1, 1), ("g4dn.xlarge", 1, 2)]);
    }

    #[test]
    fn the_catalog_knows_each_type_s_architecture() {
        assert_eq!(architecture("m6g.large"), Some(Arch::Arm64));
        assert_eq!(architecture("m5.large"), Some(Arch::X86_64));
        assert_eq!(architecture("g4dn.xlarge"), Some(Arch::X86_64));
        assert_eq!(architecture("mac2.metal"), None, "Macs are left out");
        assert_eq!(architecture("x9.mega"), None);
    }

    fn allowed(entries: &[&str]) -> Allowed {
        Allowed {
            entries: entries.iter().map(|e| e.to_string()).collect(),
            vcpus: (2, 64),
            memory_gib: (0, 1024),
            architectures: vec![Arch::X86_64, Arch::Arm64],
        }
    }

    #[test]
    fn a_family_stands_for_its_sizes_within_the_ranges() {
        let m5 = allowed(&["m5"]).types();
        assert!(m5.contains(&"m5.large".to_owned()), "{m5:?}");
        assert!(m5.contains(&"m5.16xlarge".to_owned()), "64 vCPUs: {m5:?}");
        assert!(!m5.iter().any(|t| t == "m5.24xlarge"), "96 vCPUs: {m5:?}");
        assert!(!m5.iter().any(|t| t.contains("metal")), "{m5:?}");
        let small = Allowed {
            vcpus: (2, 4),
            memory_gib: (8, 8),
            ..allowed(&["m5", "c5", "m7g"])
        };
        assert_eq!(small.types(), ["m5.large", "c5.xlarge", "m7g.large"]);
        let x86 = Allowed {
            architectures: vec![Arch::X86_64],
            ..allowed(&["m7g", "m6i.large"])
        };
        assert_eq!(x86.types(), ["m6i.large"], "a name is kept as given");
        // Arm GPU types have no ECS GPU AMI.
        assert!(allowed(&["g5g"]).types().is_empty());
        assert!(
            allowed(&["g4dn"])
                .types()
                .contains(&"g4dn.xlarge".to_owned())
        );
    }

    #[test]
    fn ranges_are_read_or_refused() {
        assert_eq!(range("2-64"), Ok((2, 64)));
        assert_eq!(range("8"), Ok((8, 8)));
        assert!(range("64-2").unwrap_err().contains("low end"));
        assert!(range("two").unwrap_err().contains("LOW-HIGH"));
    }

    #[test]
    fn every_type_the_template_allows_by_default_has_a_price() {
        let prices = crate::prices::Prices::default();
        let default = allowed(&[
            "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "m6g", "m7g", "c6g", "c7g",
            "r6g", "r7g", "g4dn", "g5", "g6",
        ]);
        let types = default.types();
        assert!(types.len() > 100, "{}", types.len());
        let unpriced: Vec<&String> = types
            .iter()
            .filter(|t| prices.on_demand_hour(t).is_none())
            .collect();
        assert!(unpriced.is_empty(), "{unpriced:?}");
    }
}
