//! Capacity math: how many of the largest containers the EC2 cluster can
//! still place (`SchedulableContainers`), how many one instance holds, and
//! the scale-out / scale-in thresholds that keep the cluster from flapping.

use std::fmt;

use serde::{Deserialize, Serialize};

/// CPU units and MiB of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: u32,
    pub memory: u32,
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} CPU units / {} MiB", self.cpu, self.memory)
    }
}

/// The largest container the cluster must always be able to start. Both
/// values are non-zero by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LargestContainer(Resources);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the largest container needs positive CPU and memory, found {0}")]
pub struct ZeroContainer(pub Resources);

impl LargestContainer {
    pub fn new(cpu: u32, memory: u32) -> Result<Self, ZeroContainer> {
        let r = Resources { cpu, memory };
        if cpu == 0 || memory == 0 {
            Err(ZeroContainer(r))
        } else {
            Ok(Self(r))
        }
    }

    /// The largest of several containers, resource by resource (the
    /// container that must fit is the one needing the most of each).
    pub fn of(containers: impl IntoIterator<Item = Resources>) -> Option<Self> {
        let max = containers.into_iter().reduce(|a, b| Resources {
            cpu: a.cpu.max(b.cpu),
            memory: a.memory.max(b.memory),
        })?;
        Self::new(max.cpu, max.memory).ok()
    }

    pub fn resources(self) -> Resources {
        self.0
    }
}

/// How many `largest` containers fit in `free`:
/// `floor(min(cpu / cpu_largest, memory / memory_largest))`.
pub fn containers_that_fit(free: Resources, largest: LargestContainer) -> u32 {
    let l = largest.0;
    (free.cpu / l.cpu).min(free.memory / l.memory)
}

/// The state of a container instance as far as the metric is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    Active,
    Draining,
    /// On its way in: its ENI trunk is being attached (ECS puts an
    /// instance in REGISTERING only with `awsvpcTrunking` on).
    Registering,
    /// Any other ECS status (DEREGISTERING, INACTIVE, ...).
    Other,
}

impl InstanceStatus {
    pub fn from_ecs(status: &str) -> Self {
        match status {
            "ACTIVE" => Self::Active,
            "DRAINING" => Self::Draining,
            "REGISTERING" => Self::Registering,
            _ => Self::Other,
        }
    }
}

/// One container instance of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContainerInstance {
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub remaining: Resources,
}

impl ContainerInstance {
    /// Only ACTIVE instances with a connected agent take new tasks.
    pub fn accepts_tasks(&self) -> bool {
        self.status == InstanceStatus::Active && self.agent_connected
    }
}

/// `SchedulableContainers`: the largest containers the cluster can still
/// place, summed over the instances that accept tasks.
pub fn schedulable_containers<'a>(
    instances: impl IntoIterator<Item = &'a ContainerInstance>,
    largest: LargestContainer,
) -> u64 {
    instances
        .into_iter()
        .filter(|i| i.accepts_tasks())
        .map(|i| u64::from(containers_that_fit(i.remaining, largest)))
        .sum()
}

/// The most largest containers any one of `instance_types` (their registered
/// resources) holds when empty. Scale-in removes one instance, so this is
/// what the metric may fall by.
pub fn most_per_instance(
    instance_types: impl IntoIterator<Item = Resources>,
    largest: LargestContainer,
) -> u32 {
    instance_types
        .into_iter()
        .map(|r| containers_that_fit(r, largest))
        .max()
        .unwrap_or(0)
}

/// The two alarm thresholds on `SchedulableContainers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Scale out when the metric is below this (`LessThanThreshold`).
    pub scale_out_below: u32,
    /// Scale in when the metric is above this (`GreaterThanThreshold`).
    pub scale_in_above: u32,
}

/// The thresholds for a cluster whose largest instance holds
/// `per_instance` largest containers, keeping at least `headroom` (>= 1)
/// of them schedulable.
///
/// Removing an instance takes up to `per_instance` off the metric; a
/// scale-in must leave it at `headroom` or more, or the scale-out alarm
/// fires straight away: scale in only above `per_instance + headroom - 1`.
/// With the usual headroom of 1 that is "above `per_instance`".
pub fn thresholds(per_instance: u32, headroom: u32) -> Thresholds {
    let headroom = headroom.max(1);
    Thresholds {
        scale_out_below: headroom,
        scale_in_above: per_instance + headroom - 1,
    }
}

/// A scale-in threshold that would make the cluster scale out and in again
/// and again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "scale-in threshold {scale_in_above} would loop: one instance holds {per_instance} of the \
     largest containers, so removing it can drop SchedulableContainers from {lowest_scale_in} to \
     {after}, below the scale-out threshold {scale_out_below}; scale in only above {needed}"
)]
pub struct ScaleInLoop {
    pub scale_in_above: u32,
    pub scale_out_below: u32,
    pub per_instance: u32,
    /// The smallest metric value that triggers a scale-in.
    pub lowest_scale_in: u32,
    /// The metric after that scale-in, at worst.
    pub after: u32,
    /// The smallest scale-in threshold that does not loop.
    pub needed: u32,
}

/// Checks that a scale-in never leaves the cluster below the scale-out
/// threshold.
pub fn check_scale_in(t: Thresholds, per_instance: u32) -> Result<(), ScaleInLoop> {
    let lowest_scale_in = t.scale_in_above.saturating_add(1);
    let after = lowest_scale_in.saturating_sub(per_instance);
    if after >= t.scale_out_below {
        return Ok(());
    }
    Err(ScaleInLoop {
        scale_in_above: t.scale_in_above,
        scale_out_below: t.scale_out_below,
        per_instance,
        lowest_scale_in,
        after,
        needed: thresholds(per_instance, t.scale_out_below).scale_in_above,
    })
}

/// The thresholds for a cluster of `instance_types` (their registered
/// resources) and why, in words for the person setting the alarms.
pub fn explain_thresholds(
    instance_types: &[Resources],
    largest: LargestContainer,
    headroom: u32,
) -> String {
    let l = largest.resources();
    let mut out = format!("largest container: {l}\n");
    for r in instance_types {
        out.push_str(&format!(
            "instance {r}: holds min({} / {}, {} / {}) = min({}, {}) = {} largest containers\n",
            r.cpu,
            l.cpu,
            r.memory,
            l.memory,
            r.cpu / l.cpu,
            r.memory / l.memory,
            containers_that_fit(*r, largest)
        ));
    }
    let per_instance = most_per_instance(instance_types.iter().copied(), largest);
    let t = thresholds(per_instance, headroom);
    out.push_str(&format!(
        "scale out when SchedulableContainers < {} (alarm LessThanThreshold {}): {} largest container(s) must always fit\n",
        t.scale_out_below, t.scale_out_below, t.scale_out_below
    ));
    out.push_str(&format!(
        "scale in  when SchedulableContainers > {} (alarm GreaterThanThreshold {}): removing one instance takes up \
         to {per_instance} off the metric, so at {} or more at least {} still fit and no scale-out follows\n",
        t.scale_in_above,
        t.scale_in_above,
        t.scale_in_above + 1,
        t.scale_out_below
    ));
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn r(cpu: u32, memory: u32) -> Resources {
        Resources { cpu, memory }
    }

    fn active(cpu: u32, memory: u32) -> ContainerInstance {
        ContainerInstance {
            status: InstanceStatus::Active,
            agent_connected: true,
            remaining: r(cpu, memory),
        }
    }

    fn largest(cpu: u32, memory: u32) -> LargestContainer {
        LargestContainer::new(cpu, memory).unwrap()
    }

    /// The seed's worked example: an m4.2xlarge (8 vCPU, 32 GiB) and a
    /// largest container of 1024 CPU / 4096 MiB hold min(8, 8) = 8, so
    /// scale-in needs a threshold above 8.
    #[test]
    fn the_seed_example_m4_2xlarge_holds_8() {
        let m4_2xlarge = r(8192, 32_768);
        let l = largest(1024, 4096);
        assert_eq!(most_per_instance([m4_2xlarge], l), 8);
        let t = thresholds(8, 1);
        assert_eq!(
            t,
            Thresholds {
                scale_out_below: 1,
                scale_in_above: 8
            }
        );
        assert_eq!(check_scale_in(t, 8), Ok(()));
        let e = check_scale_in(
            Thresholds {
                scale_out_below: 1,
                scale_in_above: 7,
            },
            8,
        )
        .unwrap_err();
        assert_eq!((e.lowest_scale_in, e.after, e.needed), (8, 0, 8));
        assert_eq!(
            e.to_string(),
            "scale-in threshold 7 would loop: one instance holds 8 of the largest containers, so \
             removing it can drop SchedulableContainers from 8 to 0, below the scale-out threshold 1; \
             scale in only above 8"
        );
    }

    #[test]
    fn the_explanation_gives_the_seed_thresholds() {
        let text = explain_thresholds(&[r(8192, 32_768)], largest(1024, 4096), 1);
        assert!(
            text.contains("min(8192 / 1024, 32768 / 4096) = min(8, 8) = 8 largest containers"),
            "{text}"
        );
        assert!(
            text.contains("scale out when SchedulableContainers < 1 (alarm LessThanThreshold 1)"),
            "{text}"
        );
        assert!(
            text.contains(
                "scale in  when SchedulableContainers > 8 (alarm GreaterThanThreshold 8)"
            ),
            "{text}"
        );
    }

    #[test]
    fn per_instance_is_the_smaller_of_cpu_and_memory() {
        let l = largest(1024, 4096);
        let rows = [
            (r(8192, 32_768), 8),
            (r(8192, 16_384), 4), // memory-bound
            (r(2048, 32_768), 2), // cpu-bound
            (r(1023, 32_768), 0),
            (r(4096, 7482), 1), // the local AWS's fixed instance size
            (r(0, 0), 0),
        ];
        for (free, n) in rows {
            assert_eq!(containers_that_fit(free, l), n, "{free}");
        }
    }

    #[test]
    fn only_active_instances_with_a_connected_agent_count() {
        let l = largest(1024, 2048);
        let draining = ContainerInstance {
            status: InstanceStatus::Draining,
            ..active(8192, 16_384)
        };
        let disconnected = ContainerInstance {
            agent_connected: false,
            ..active(8192, 16_384)
        };
        let registering = ContainerInstance {
            status: InstanceStatus::from_ecs("REGISTERING"),
            ..active(8192, 16_384)
        };
        let cluster = [
            active(4096, 8192),
            active(2048, 1024),
            draining,
            disconnected,
            registering,
        ];
        assert_eq!(schedulable_containers(&cluster, l), 4);
        assert_eq!(schedulable_containers(&[], l), 0);
        assert_eq!(
            InstanceStatus::from_ecs("DRAINING"),
            InstanceStatus::Draining
        );
        assert_eq!(
            InstanceStatus::from_ecs("REGISTERING"),
            InstanceStatus::Registering
        );
    }

    #[test]
    fn the_largest_container_is_taken_resource_by_resource() {
        let l = LargestContainer::of([r(512, 8192), r(2048, 1024), r(1024, 2048)]).unwrap();
        assert_eq!(l.resources(), r(2048, 8192));
        assert_eq!(LargestContainer::of([]), None);
        assert_eq!(LargestContainer::new(0, 512), Err(ZeroContainer(r(0, 512))));
    }

    #[test]
    fn headroom_raises_both_thresholds() {
        let t = thresholds(8, 3);
        assert_eq!(
            t,
            Thresholds {
                scale_out_below: 3,
                scale_in_above: 10
            }
        );
        assert!(check_scale_in(t, 8).is_ok());
        assert!(
            check_scale_in(
                Thresholds {
                    scale_in_above: 9,
                    ..t
                },
                8
            )
            .is_err()
        );
        assert_eq!(
            thresholds(8, 0),
            thresholds(8, 1),
            "a headroom of 0 would never scale out"
        );
    }

    fn any_instance() -> impl Strategy<Value = ContainerInstance> {
        (0u32..70_000, 0u32..300_000, 0..3u8, any::<bool>()).prop_map(|(cpu, mem, s, agent)| {
            ContainerInstance {
                status: [
                    InstanceStatus::Active,
                    InstanceStatus::Draining,
                    InstanceStatus::Other,
                ][s as usize],
                agent_connected: agent,
                remaining: r(cpu, mem),
            }
        })
    }

    proptest! {
        /// No container is counted that does not fit, and every one that
        /// fits is counted.
        #[test]
        fn the_count_is_exactly_what_fits(cpu in 0u32..200_000, mem in 0u32..2_000_000, lc in 1u32..20_000, lm in 1u32..200_000) {
            let n = containers_that_fit(r(cpu, mem), largest(lc, lm));
            prop_assert!(u64::from(n) * u64::from(lc) <= u64::from(cpu));
            prop_assert!(u64::from(n) * u64::from(lm) <= u64::from(mem));
            prop_assert!(u64::from(n + 1) * u64::from(lc) > u64::from(cpu) || u64::from(n + 1) * u64::from(lm) > u64::from(mem));
        }

        #[test]
        fn the_cluster_sum_skips_what_takes_no_tasks(instances in prop::collection::vec(any_instance(), 0..50), lc in 1u32..5000, lm in 1u32..20_000) {
            let l = largest(lc, lm);
            let expected: u64 = instances.iter().filter(|i| i.accepts_tasks()).map(|i| u64::from(containers_that_fit(i.remaining, l))).sum();
            prop_assert_eq!(schedulable_containers(&instances, l), expected);
            let active_only: Vec<_> = instances.iter().filter(|i| i.status == InstanceStatus::Active && i.agent_connected).copied().collect();
            prop_assert_eq!(schedulable_containers(&active_only, l), expected);
        }

        /// A suggested scale-in threshold is always above what one instance
        /// holds, and never loops.
        #[test]
        fn suggested_thresholds_never_loop(types in prop::collection::vec((1u32..100_000, 1u32..800_000), 1..6), lc in 1u32..20_000, lm in 1u32..100_000, headroom in 0u32..20) {
            let l = largest(lc, lm);
            let per_instance = most_per_instance(types.iter().map(|&(c, m)| r(c, m)), l);
            let t = thresholds(per_instance, headroom);
            prop_assert!(t.scale_in_above >= per_instance);
            prop_assert!(t.scale_in_above + 1 > per_instance, "scale-in only above what one instance holds");
            prop_assert!(check_scale_in(t, per_instance).is_ok());
            // One less would loop.
            if t.scale_in_above > 0 {
                let lower = Thresholds { scale_in_above: t.scale_in_above - 1, ..t };
                prop_assert!(check_scale_in(lower, per_instance).is_err());
            }
            // After removing the fullest-capacity instance at the lowest
            // scale-in value, the metric is still at the scale-out threshold.
            prop_assert!(t.scale_in_above + 1 - per_instance >= t.scale_out_below);
        }
    }
}
