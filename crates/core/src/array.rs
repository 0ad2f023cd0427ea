//! Array jobs: one message asks for `size` children (2 to
//! [`MAX_ARRAY_SIZE`]), each the parent's job with its index. A child's id
//! is `<parent>:<index>`, index from 0; it sees `BERTH_ARRAY_INDEX` and
//! `BERTH_ARRAY_SIZE`.
//!
//! The parent is one record. It releases its children in order, as many
//! as its concurrency cap (`max_running`) allows: children released and not
//! ended are never more than the cap. It ends as AWS Batch's arrays do:
//! `SUCCEEDED` when every child succeeded, `FAILED` once every child has
//! ended and one did not.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::definition::ResolvedJob;
use crate::dependency::{Condition, Verdict};
use crate::{JobStatus, Problem};

/// The most children an array may have (AWS Batch's limit).
pub const MAX_ARRAY_SIZE: u32 = 10_000;

/// The environment variable with a child's index.
pub const ENV_INDEX: &str = "BERTH_ARRAY_INDEX";
/// The environment variable with its array's size.
pub const ENV_SIZE: &str = "BERTH_ARRAY_SIZE";

/// What an array job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    /// How many children.
    pub size: u32,
    /// At most this many children released and not ended at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// One child at a time, in order: child i runs once child i − 1 has
    /// ended as this condition says; once one has not, the children after
    /// it never run (AWS Batch's `SEQUENTIAL`, with Slurm's conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<Condition>,
}

impl ArraySpec {
    /// Checks the size and the cap.
    pub fn validate(&self) -> Result<(), Problem> {
        if !(2..=MAX_ARRAY_SIZE).contains(&self.size) {
            return Err(Problem::Invalid(format!(
                "`size` must be between 2 and {MAX_ARRAY_SIZE}, found {}",
                self.size
            )));
        }
        if self.sequential.is_some() && self.max_running.is_some() {
            return Err(Problem::Invalid(
                "`sequential` runs one child at a time: leave `max_running` out".into(),
            ));
        }
        if let Some(k) = self.max_running
            && !(1..=self.size).contains(&k)
        {
            return Err(Problem::Invalid(format!(
                "`max_running` must be between 1 and the size, {}, found {k}",
                self.size
            )));
        }
        Ok(())
    }
}

/// The id of child `index` of `parent`.
pub fn child_id(parent: &str, index: u32) -> String {
    format!("{parent}:{index}")
}

/// The parent and index of a child's id; `None` for any other id.
pub fn parent_of(id: &str) -> Option<(&str, u32)> {
    let (parent, index) = id.rsplit_once(':')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, index.parse().ok()?))
}

/// Child `index` of the array `parent` (as it was resolved): the parent's
/// job under the child's id, with its index and the array's size in its
/// environment, and no array of its own.
pub fn child_job(parent: &ResolvedJob, index: u32) -> ResolvedJob {
    let mut child = parent.clone();
    child.job_id = child_id(&parent.job_id, index);
    child.array = None;
    child.depends_on = Vec::new();
    let size = parent.array.map_or(0, |a| a.size);
    child
        .environment
        .insert(ENV_INDEX.into(), index.to_string());
    child.environment.insert(ENV_SIZE.into(), size.to_string());
    child
}

/// What an array does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Release these children (none when the range is empty).
    Release(Range<u32>),
    /// These children will never run: count them as not succeeded.
    GiveUp(Range<u32>),
}

/// Another array, as one bound to it child by child (`N_TO_N`) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// What each of its children must do.
    pub condition: Condition,
    /// The array's own status.
    pub status: JobStatus,
    /// The indices of its children that ended `SUCCEEDED`, and otherwise.
    pub succeeded: BTreeSet<u32>,
    pub failed: BTreeSet<u32>,
}

impl Upstream {
    /// How child `index` ended (any end but `SUCCEEDED` reads `FAILED`: the
    /// conditions tell them apart no further), `None` while it has not. A
    /// child of an array that ended without it (cancelled before it was
    /// released) ended as the array did.
    pub fn child(&self, index: u32) -> Option<JobStatus> {
        if self.succeeded.contains(&index) {
            Some(JobStatus::Succeeded)
        } else if self.failed.contains(&index) {
            Some(JobStatus::Failed)
        } else {
            Some(self.status).filter(|s| s.is_final())
        }
    }
}

/// What an array bound child by child does next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Each {
    /// Release these children.
    pub release: Vec<u32>,
    /// These will never run: count them as not succeeded.
    pub never: Vec<u32>,
}

/// Where an array's children stand, as its parent's record counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Children {
    pub size: u32,
    /// Children `0..released` have been released (their messages sent);
    /// for an array bound child by child, how many are in `sent`.
    pub released: u32,
    /// An array bound child by child (`N_TO_N`) releases its children out
    /// of order: the indices released or given up.
    pub sent: BTreeSet<u32>,
    /// The indices of those that ended `SUCCEEDED`.
    pub succeeded: BTreeSet<u32>,
    /// The indices of those that ended otherwise.
    pub failed: BTreeSet<u32>,
}

impl Children {
    /// The indices of the children released (or given up).
    pub fn released_indices(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        if self.sent.is_empty() {
            Box::new(0..self.released)
        } else {
            Box::new(self.sent.iter().copied())
        }
    }

    /// Children that have ended.
    pub fn ended(&self) -> u32 {
        u32::try_from(self.succeeded.len() + self.failed.len()).unwrap_or(u32::MAX)
    }

    /// What to do next for an array of `spec`: release these children, or
    /// (sequential, the last released child having ended otherwise than its
    /// condition) give up on the children from `released` on.
    pub fn next(&self, spec: &ArraySpec) -> Next {
        let Some(condition) = spec.sequential else {
            return Next::Release(self.to_release(spec.max_running));
        };
        if let Some(last) = self.released.checked_sub(1)
            && self.released < self.size
        {
            let ended = if self.succeeded.contains(&last) {
                Some(JobStatus::Succeeded)
            } else if self.failed.contains(&last) {
                Some(JobStatus::Failed)
            } else {
                None
            };
            if let Some(status) = ended
                && condition.verdict(status) == Verdict::Never
            {
                return Next::GiveUp(self.released..self.size);
            }
        }
        Next::Release(self.to_release(Some(1)))
    }

    /// What an array bound child by child to `upstreams` (`N_TO_N`) does
    /// next: gives up each child not yet sent for which one of them ended
    /// otherwise than its condition, and releases, lowest index first and
    /// as many as the cap `max_running` allows, each child for which every
    /// one ended as its condition says.
    pub fn each(&self, max_running: Option<u32>, upstreams: &[Upstream]) -> Each {
        let sent = u32::try_from(self.sent.len()).unwrap_or(u32::MAX);
        let under_way = sent.saturating_sub(self.ended());
        let mut room = max_running.map_or(u32::MAX, |k| k.saturating_sub(under_way));
        let mut each = Each::default();
        for i in (0..self.size).filter(|i| !self.sent.contains(i)) {
            let verdicts = upstreams
                .iter()
                .map(|u| u.child(i).map(|status| u.condition.verdict(status)));
            let mut met = true;
            let mut never = false;
            for verdict in verdicts {
                match verdict {
                    Some(Verdict::Met) => {}
                    Some(Verdict::Never) => never = true,
                    _ => met = false,
                }
            }
            if never {
                each.never.push(i);
            } else if met && room > 0 {
                each.release.push(i);
                room -= 1;
            }
        }
        each
    }

    /// The children to release now under a cap of `max_running`: released
    /// and not ended stay at most the cap.
    pub fn to_release(&self, max_running: Option<u32>) -> Range<u32> {
        let limit = max_running
            .map_or(self.size, |k| self.ended().saturating_add(k))
            .min(self.size);
        self.released..limit.max(self.released)
    }

    /// The parent's end, once every child has ended: `SUCCEEDED`, or
    /// `FAILED` with how many failed and the first of them.
    pub fn end(&self) -> Option<(JobStatus, Option<String>)> {
        if self.ended() < self.size {
            return None;
        }
        Some(match self.failed.first() {
            None => (JobStatus::Succeeded, None),
            Some(first) => (
                JobStatus::Failed,
                Some(format!(
                    "{} of {} children did not succeed; the first is index {first}",
                    self.failed.len(),
                    self.size
                )),
            ),
        })
    }

    /// The children's counts, for a parent that has not ended: those not
    /// released yet, those under way, those that ended each way.
    pub fn summary(&self) -> String {
        let ended = self.ended();
        format!(
            "children: {} SUCCEEDED, {} not succeeded, {} under way, {} not released",
            self.succeeded.len(),
            self.failed.len(),
            self.released.saturating_sub(ended),
            self.size.saturating_sub(self.released)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_of_children() {
        assert_eq!(child_id("render", 7), "render:7");
        assert_eq!(parent_of("render:7"), Some(("render", 7)));
        assert_eq!(parent_of("a:b:12"), Some(("a:b", 12)));
        for not_a_child in ["render", "render:", "render:x", "render:-1"] {
            assert_eq!(parent_of(not_a_child), None, "{not_a_child}");
        }
    }

    #[test]
    fn sizes_and_caps_are_checked() {
        let spec = |size, max_running| ArraySpec {
            size,
            max_running,
            sequential: None,
        };
        assert!(spec(2, None).validate().is_ok());
        assert!(spec(10_000, Some(10_000)).validate().is_ok());
        for (bad, why) in [
            (spec(1, None), "`size` must be between 2 and 10000, found 1"),
            (spec(10_001, None), "found 10001"),
            (
                spec(10, Some(0)),
                "`max_running` must be between 1 and the size, 10, found 0",
            ),
            (spec(10, Some(11)), "found 11"),
            (
                ArraySpec {
                    sequential: Some(crate::dependency::Condition::Succeeded),
                    ..spec(10, Some(2))
                },
                "`sequential` runs one child at a time",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn release_end_and_summary_by_the_counts() {
        let mut c = Children {
            size: 10,
            ..Children::default()
        };
        assert_eq!(c.to_release(Some(3)), 0..3);
        assert_eq!(c.to_release(None), 0..10);
        c.released = 3;
        assert_eq!(c.to_release(Some(3)), 3..3, "three under way");
        c.succeeded.insert(1);
        c.failed.insert(0);
        assert_eq!(c.to_release(Some(3)), 3..5);
        assert_eq!(c.end(), None);
        assert_eq!(
            c.summary(),
            "children: 1 SUCCEEDED, 1 not succeeded, 1 under way, 7 not released"
        );
        c.released = 10;
        c.succeeded.extend(2..9);
        c.failed.insert(9);
        assert_eq!(
            c.end(),
            Some((
                JobStatus::Failed,
                Some("2 of 10 children did not succeed; the first is index 0".into())
            ))
        );
        c.failed = BTreeSet::new();
        c.succeeded.extend([0, 9]);
        assert_eq!(c.end(), Some((JobStatus::Succeeded, None)));
    }

    #[test]
    fn a_sequential_array_runs_one_child_at_a_time_and_gives_up_after_a_failure() {
        use crate::dependency::Condition;
        let spec = |condition| ArraySpec {
            size: 5,
            max_running: None,
            sequential: Some(condition),
        };
        let mut c = Children {
            size: 5,
            ..Children::default()
        };
        assert_eq!(c.next(&spec(Condition::Succeeded)), Next::Release(0..1));
        c.released = 1;
        assert_eq!(
            c.next(&spec(Condition::Succeeded)),
            Next::Release(1..1),
            "0 under way"
        );
        c.succeeded.insert(0);
        assert_eq!(c.next(&spec(Condition::Succeeded)), Next::Release(1..2));
        c.released = 2;
        c.failed.insert(1);
        assert_eq!(c.next(&spec(Condition::Succeeded)), Next::GiveUp(2..5));
        assert_eq!(c.next(&spec(Condition::Ended)), Next::Release(2..3));
        assert_eq!(c.next(&spec(Condition::Failed)), Next::Release(2..3));
        // Given up: every child counted, the array ends FAILED.
        c.released = 5;
        c.failed.extend(2..5);
        assert_eq!(c.end().map(|(s, _)| s), Some(JobStatus::Failed));
    }

    #[test]
    fn a_child_by_child_array_follows_the_children_of_its_upstreams() {
        let upstream = |condition, status, succeeded: &[u32], failed: &[u32]| Upstream {
            condition,
            status,
            succeeded: succeeded.iter().copied().collect(),
            failed: failed.iter().copied().collect(),
        };
        let mut c = Children {
            size: 6,
            ..Children::default()
        };
        let a = upstream(Condition::Succeeded, JobStatus::Accepted, &[0, 1, 4], &[2]);
        assert_eq!(
            c.each(None, std::slice::from_ref(&a)),
            Each {
                release: vec![0, 1, 4],
                never: vec![2]
            }
        );
        assert_eq!(c.each(Some(2), std::slice::from_ref(&a)).release, [0, 1]);
        // 0 and 1 under way, 2 given up: a cap of 2 lets none go.
        c.sent.extend([0, 1, 2]);
        c.failed.insert(2);
        assert_eq!(c.each(Some(2), std::slice::from_ref(&a)), Each::default());
        c.succeeded.insert(0);
        assert_eq!(c.each(Some(2), std::slice::from_ref(&a)).release, [4]);
        // Every upstream must be met; one that is not gives the child up.
        let b = upstream(Condition::Failed, JobStatus::Accepted, &[4], &[3]);
        assert_eq!(
            c.each(None, &[a.clone(), b]),
            Each {
                release: vec![],
                never: vec![4]
            }
        );
        // An upstream cancelled before it released 5: 5 ended so.
        let cancelled = upstream(Condition::Ended, JobStatus::Cancelled, &[], &[]);
        assert_eq!(cancelled.child(5), Some(JobStatus::Cancelled));
        assert_eq!(c.each(None, &[cancelled]).release, [3, 4, 5]);
        let gone = upstream(Condition::Succeeded, JobStatus::Cancelled, &[], &[]);
        assert_eq!(c.each(None, &[gone]).never, [3, 4, 5]);
    }

    proptest! {
        /// However an upstream's children end, and whichever of this
        /// array's end first, a child is released only once its upstream
        /// child succeeded, given up only once it did not, never both nor
        /// twice, the cap holds, and every child ends.
        #[test]
        fn child_by_child_holds_whatever_order_upstream_children_end_in(size in 2u32..40, cap in proptest::option::of(1u32..6), order in proptest::collection::vec((any::<u16>(), any::<bool>(), any::<bool>()), 0..300)) {
            let mut up = Upstream { condition: Condition::Succeeded, status: JobStatus::Accepted, succeeded: BTreeSet::new(), failed: BTreeSet::new() };
            let mut c = Children { size, ..Children::default() };
            let mut steps = order.into_iter();
            loop {
                let each = c.each(cap, std::slice::from_ref(&up));
                for i in &each.release {
                    prop_assert!(up.succeeded.contains(i), "{} released before its upstream succeeded", i);
                    prop_assert!(c.sent.insert(*i), "{} released twice", i);
                }
                for i in &each.never {
                    prop_assert!(up.failed.contains(i));
                    prop_assert!(c.sent.insert(*i), "{} given up after it was sent", i);
                    c.failed.insert(*i);
                }
                c.released = c.sent.len() as u32;
                let under_way: Vec<u32> = c.sent.iter().copied().filter(|i| !c.succeeded.contains(i) && !c.failed.contains(i)).collect();
                if let Some(k) = cap { prop_assert!(under_way.len() as u32 <= k); }
                let up_open: Vec<u32> = (0..size).filter(|i| up.child(*i).is_none()).collect();
                if under_way.is_empty() && up_open.is_empty() {
                    break;
                }
                let (pick, which, ok) = steps.next().unwrap_or((0, under_way.is_empty(), true));
                // End one of ours, or one of the upstream's.
                let (pool, set_of) = if (which && !up_open.is_empty()) || under_way.is_empty() { (up_open, 0) } else { (under_way, 1) };
                let i = pool[pick as usize % pool.len()];
                match (set_of, ok) {
                    (0, true) => { up.succeeded.insert(i); }
                    (0, false) => { up.failed.insert(i); }
                    (_, true) => { c.succeeded.insert(i); }
                    (_, false) => { c.failed.insert(i); }
                }
            }
            prop_assert_eq!(c.ended(), size, "every child ended");
            prop_assert!(c.failed.is_superset(&up.failed));
        }

        /// However the children end, released and not ended never pass the
        /// cap, every child is released once, and the array ends when the
        /// last child does.
        #[test]
        fn a_cap_holds_whatever_order_children_end_in(size in 2u32..60, cap in 1u32..8, picks in proptest::collection::vec((any::<u8>(), any::<bool>()), 0..200)) {
            let cap = cap.min(size);
            let mut c = Children { size, ..Children::default() };
            let mut picks = picks.into_iter();
            loop {
                let r = c.to_release(Some(cap));
                c.released = r.end;
                let under_way: Vec<u32> = (0..c.released).filter(|i| !c.succeeded.contains(i) && !c.failed.contains(i)).collect();
                prop_assert!(under_way.len() as u32 <= cap);
                if under_way.is_empty() {
                    break;
                }
                let (pick, ok) = picks.next().unwrap_or((0, true));
                let i = under_way[pick as usize % under_way.len()];
                if ok { c.succeeded.insert(i); } else { c.failed.insert(i); }
            }
            prop_assert_eq!(c.released, size);
            prop_assert!(c.end().is_some());
            prop_assert_eq!(c.end().unwrap().0 == JobStatus::Succeeded, c.failed.is_empty());
        }
    }
}
