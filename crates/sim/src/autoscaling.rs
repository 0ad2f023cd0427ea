//! Amazon EC2 Auto Scaling, as far as the cluster's group needs it: step
//! scaling with instance warm-up, and the choice of instance to terminate.

/// What the group knows of one of its instances when it scales in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: usize,
    /// Milliseconds since the start of the simulation.
    pub launched: u64,
    /// Instance scale-in protection.
    pub protected: bool,
}

/// Which instance a scale-in terminates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationPolicy {
    /// Auto Scaling's default (user guide, "Configure termination policies"):
    /// with one launch template and one zone, the instance closest to its
    /// next billing hour, then at random.
    Default,
    /// The oldest instance first.
    OldestInstance,
}

/// The instance to terminate among `members` at `now`: never a protected
/// one. `tie` picks among equals (the default policy's "at random").
pub fn choose(
    members: &[Member],
    policy: TerminationPolicy,
    now: u64,
    mut tie: impl FnMut(usize) -> usize,
) -> Option<usize> {
    const HOUR: u64 = 3_600_000;
    let open: Vec<&Member> = members.iter().filter(|m| !m.protected).collect();
    let best: Vec<&Member> = match policy {
        TerminationPolicy::OldestInstance => {
            let oldest = open.iter().map(|m| m.launched).min()?;
            open.into_iter().filter(|m| m.launched == oldest).collect()
        }
        TerminationPolicy::Default => {
            // Closest to the next billing hour: the most time into its
            // current hour.
            let into_hour = |m: &Member| now.saturating_sub(m.launched) % HOUR;
            let most = open.iter().map(|m| into_hour(m)).max()?;
            open.into_iter().filter(|m| into_hour(m) == most).collect()
        }
    };
    match best.len() {
        0 => None,
        1 => Some(best[0].id),
        n => Some(best[tie(n) % n].id),
    }
}

/// The desired capacity after a step scaling policy adds `adjustment`
/// instances. Instances still warming up count as capacity already added:
/// the group scales out from the capacity that has finished warming, so an
/// alarm that fires again while the last instance warms adds nothing more
/// (user guide, "Step and simple scaling policies", instance warm-up).
pub fn scale_out(desired: u32, warmed: u32, adjustment: u32, max: u32) -> u32 {
    desired.max((warmed + adjustment).min(max))
}

/// The desired capacity after a step scaling policy removes `adjustment`
/// instances; no scale-in while any instance warms up (user guide, "Set
/// the default instance warmup": warm-up blocks dynamic scale-in).
pub fn scale_in(desired: u32, adjustment: u32, min: u32, warming: bool) -> u32 {
    if warming {
        desired
    } else {
        desired.saturating_sub(adjustment).max(min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn m(id: usize, launched_min: u64, protected: bool) -> Member {
        Member {
            id,
            launched: launched_min * MIN,
            protected,
        }
    }

    #[test]
    fn the_default_policy_takes_the_instance_closest_to_its_billing_hour() {
        // At minute 130: instance 0 is 10 min into its third hour, 1 is 50
        // min into its first, 2 is 40 min into its second.
        let members = [m(0, 0, false), m(1, 80, false), m(2, 30, false)];
        let at = 130 * MIN;
        assert_eq!(
            choose(&members, TerminationPolicy::Default, at, |_| 0),
            Some(1)
        );
        assert_eq!(
            choose(&members, TerminationPolicy::OldestInstance, at, |_| 0),
            Some(0)
        );
        // Protected instances are never chosen; with all protected, none.
        let protected = [m(0, 0, false), m(1, 80, true), m(2, 30, true)];
        assert_eq!(
            choose(&protected, TerminationPolicy::Default, at, |_| 0),
            Some(0)
        );
        let all = [m(0, 0, true), m(1, 80, true)];
        assert_eq!(choose(&all, TerminationPolicy::Default, at, |_| 0), None);
        assert_eq!(
            choose(&all, TerminationPolicy::OldestInstance, at, |_| 0),
            None
        );
    }

    #[test]
    fn ties_are_broken_by_the_draw() {
        let members = [m(0, 10, false), m(1, 10, false), m(2, 10, false)];
        let mut asked = 0;
        let chosen = choose(&members, TerminationPolicy::Default, 30 * MIN, |n| {
            asked = n;
            2
        });
        assert_eq!((chosen, asked), (Some(2), 3));
    }

    #[test]
    fn warming_instances_hold_back_more_scaling() {
        // One instance in service, one warming: another breach adds nothing.
        assert_eq!(scale_out(2, 1, 1, 10), 2);
        // Once it has warmed, the next breach adds one.
        assert_eq!(scale_out(2, 2, 1, 10), 3);
        // Never above the maximum, never below the current desired.
        assert_eq!(scale_out(10, 10, 1, 10), 10);
        assert_eq!(scale_out(0, 0, 1, 10), 1);
        assert_eq!(scale_in(3, 1, 0, true), 3);
        assert_eq!(scale_in(3, 1, 0, false), 2);
        assert_eq!(scale_in(1, 1, 1, false), 1);
    }
}
