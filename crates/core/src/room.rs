//! What the cluster had no room for a moment ago, as one driver execution
//! environment remembers it.
//!
//! The driver's plan for a job that may run on EC2 or on Fargate is "EC2
//! when an instance has room, else Fargate" ([`crate::routing::Plan::Ec2`]).
//! It asks ECS with a RunTask on the cluster's EC2 capacity; when that
//! places nothing, a second RunTask goes to Fargate. Both calls spend
//! RunTask's limit (20 a second on AWS, [`crate::limits`]), so in a burst on
//! a full or an empty cluster half of that limit would go on asking for
//! room that is not there. The environment therefore remembers the answer:
//!
//! - After EC2 had no room for a need, the same need or a larger one goes
//!   straight to Fargate for [`NO_ROOM_HOLD_MS`]. A smaller need still asks:
//!   it may fit where the larger did not.
//! - After ECS said the cluster has no instance at all, every need goes
//!   straight to Fargate; each further "no instance" doubles that hold, up to
//!   [`EMPTY_CLUSTER_HOLD_MAX_MS`], so that a cluster resting at zero costs
//!   a burst next to nothing.
//! - Once a hold is over, one job looks ([`Ask::Ec2`]); the others go on to
//!   Fargate while its answer is out, for up to [`LOOK_MS`]. Its answer
//!   renews the hold or ends it.
//! - Any task placed on EC2 forgets all of it: an instance has room.
//! - While jobs of the environment wait for an instance the scaler is
//!   starting ([`NoRoomMemory::expect_room`]), for [`EXPECT_ROOM_MS`], every
//!   job asks EC2 first, so that the instance's room is used as soon as it
//!   registers.
//!
//! The cost of the memory is room missed: a task of a remembered need that
//! would fit on an instance that freed room within the hold runs on Fargate
//! instead. The architecture is not part of a need (the driver knows it only
//! from the task definition, inside the launch): a job of one architecture
//! may go to Fargate on the answer for a job of the other, for one hold.

use crate::scaling::Room;

/// How long EC2's "no room" for a need is trusted, in ms.
pub const NO_ROOM_HOLD_MS: u64 = 10_000;
/// The longest hold after repeated "no container instances", in ms.
pub const EMPTY_CLUSTER_HOLD_MAX_MS: u64 = 60_000;
/// How long the other jobs wait for one job's look at EC2, in ms.
pub const LOOK_MS: u64 = 5_000;
/// How long every job asks EC2 after jobs began waiting for an instance,
/// in ms: about the time an instance takes to start and register.
pub const EXPECT_ROOM_MS: u64 = 180_000;
/// Needs remembered at most; the oldest is forgotten first.
const MOST_NEEDS: usize = 16;

/// What the memory says of a launch on EC2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Ask ECS for room on the cluster's instances.
    Ec2,
    /// EC2 had no room for it a moment ago: go straight to Fargate.
    NoRoom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    need: Room,
    until_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Empty {
    until_ms: u64,
    hold_ms: u64,
}

/// One execution environment's memory of where EC2 had no room (see the
/// module's documentation). Times are ms on one clock of the caller's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoRoomMemory {
    needs: Vec<Held>,
    empty: Option<Empty>,
    /// A look at EC2 is out until then.
    looking_until_ms: Option<u64>,
    expect_room_until_ms: Option<u64>,
}

impl NoRoomMemory {
    /// Whether a task of `need` asks EC2 at `now_ms`.
    pub fn ask(&mut self, need: Room, now_ms: u64) -> Ask {
        if self.expect_room_until_ms.is_some_and(|t| now_ms < t) {
            return Ask::Ec2;
        }
        // What is known of this need: held until when, if anything.
        let held = self
            .needs
            .iter()
            .filter(|h| covers(h.need, need))
            .map(|h| h.until_ms)
            .chain(self.empty.map(|e| e.until_ms))
            .max();
        match held {
            None => Ask::Ec2,
            Some(until) if now_ms < until => Ask::NoRoom,
            // The hold is over: one job looks.
            Some(_) if self.looking_until_ms.is_some_and(|t| now_ms < t) => Ask::NoRoom,
            Some(_) => {
                self.looking_until_ms = Some(now_ms + LOOK_MS);
                Ask::Ec2
            }
        }
    }

    /// EC2 had no room for a task of `need` at `now_ms`; `no_instances`:
    /// ECS said the cluster has no container instance at all.
    pub fn saw_no_room(&mut self, need: Room, no_instances: bool, now_ms: u64) {
        self.looking_until_ms = None;
        if no_instances {
            let hold_ms = match self.empty {
                // Still empty since the last time: hold twice as long.
                Some(e) if now_ms <= e.until_ms + EMPTY_CLUSTER_HOLD_MAX_MS => {
                    (e.hold_ms * 2).min(EMPTY_CLUSTER_HOLD_MAX_MS)
                }
                _ => NO_ROOM_HOLD_MS,
            };
            self.empty = Some(Empty {
                until_ms: now_ms + hold_ms,
                hold_ms,
            });
            return;
        }
        // A smaller need held says more; one it covers says nothing new.
        self.needs.retain(|h| !covers(need, h.need));
        if self.needs.len() >= MOST_NEEDS {
            self.needs.remove(0);
        }
        self.needs.push(Held {
            need,
            until_ms: now_ms + NO_ROOM_HOLD_MS,
        });
    }

    /// EC2 placed a task: an instance has room, so nothing held is trusted.
    pub fn saw_room(&mut self) {
        self.needs.clear();
        self.empty = None;
        self.looking_until_ms = None;
    }

    /// Jobs of the environment wait for an instance, which the scaler
    /// starts: every job asks EC2 for the next [`EXPECT_ROOM_MS`].
    pub fn expect_room(&mut self, now_ms: u64) {
        self.expect_room_until_ms = Some(now_ms + EXPECT_ROOM_MS);
    }
}

/// Whether no room for `held` means no room for `need`: `need` asks as much
/// or more of each.
fn covers(held: Room, need: Room) -> bool {
    held.cpu <= need.cpu && held.memory <= need.memory && held.gpu <= need.gpu
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Room = Room {
        cpu: 1024,
        memory: 2048,
        gpu: 0,
        arch: crate::prices::Arch::X86_64,
    };
    const LARGE: Room = Room {
        cpu: 4096,
        memory: 8192,
        gpu: 0,
        arch: crate::prices::Arch::X86_64,
    };

    #[test]
    fn no_room_holds_for_the_need_and_larger_ones_not_smaller() {
        let mut m = NoRoomMemory::default();
        assert_eq!(m.ask(SMALL, 0), Ask::Ec2);
        m.saw_no_room(SMALL, false, 0);
        assert_eq!(m.ask(SMALL, 1_000), Ask::NoRoom);
        assert_eq!(m.ask(LARGE, 1_000), Ask::NoRoom);
        let mut m = NoRoomMemory::default();
        m.saw_no_room(LARGE, false, 0);
        assert_eq!(m.ask(LARGE, 1_000), Ask::NoRoom);
        assert_eq!(m.ask(SMALL, 1_000), Ask::Ec2, "a smaller need may fit");
        // One of more memory but less CPU is not covered either.
        let tall = Room::new(512, 16_384, 0);
        assert_eq!(m.ask(tall, 1_000), Ask::Ec2);
    }

    #[test]
    fn after_the_hold_one_job_looks_and_its_answer_renews_or_ends_it() {
        let mut m = NoRoomMemory::default();
        m.saw_no_room(SMALL, false, 0);
        assert_eq!(m.ask(SMALL, NO_ROOM_HOLD_MS - 1), Ask::NoRoom);
        assert_eq!(m.ask(SMALL, NO_ROOM_HOLD_MS), Ask::Ec2, "the look");
        assert_eq!(
            m.ask(SMALL, NO_ROOM_HOLD_MS + 1),
            Ask::NoRoom,
            "its answer is out"
        );
        // No answer came (the call failed otherwise): another looks.
        let later = NO_ROOM_HOLD_MS + LOOK_MS;
        assert_eq!(m.ask(SMALL, later), Ask::Ec2);
        m.saw_no_room(SMALL, false, later);
        assert_eq!(m.ask(SMALL, later + NO_ROOM_HOLD_MS - 1), Ask::NoRoom);
        m.saw_room();
        assert_eq!(m.ask(SMALL, later + 1), Ask::Ec2);
        assert_eq!(m, NoRoomMemory::default());
    }

    #[test]
    fn an_empty_cluster_holds_every_need_longer_each_time_up_to_a_minute() {
        let mut m = NoRoomMemory::default();
        let mut now = 0;
        for hold in [10_000, 20_000, 40_000, 60_000, 60_000] {
            m.saw_no_room(LARGE, true, now);
            assert_eq!(m.ask(SMALL, now + hold - 1), Ask::NoRoom, "every need");
            assert_eq!(m.ask(SMALL, now + hold), Ask::Ec2, "the look");
            now += hold;
        }
        // Empty again only long after: the hold starts over.
        m.saw_no_room(LARGE, true, now + 10 * EMPTY_CLUSTER_HOLD_MAX_MS);
        let at = now + 10 * EMPTY_CLUSTER_HOLD_MAX_MS + NO_ROOM_HOLD_MS;
        assert_eq!(m.ask(SMALL, at), Ask::Ec2);
    }

    #[test]
    fn while_an_instance_is_expected_every_job_asks_ec2() {
        let mut m = NoRoomMemory::default();
        m.saw_no_room(SMALL, true, 0);
        m.expect_room(1_000);
        assert_eq!(m.ask(SMALL, 1_001), Ask::Ec2);
        assert_eq!(m.ask(SMALL, 1_002), Ask::Ec2, "not one look: every job");
        assert_eq!(m.ask(SMALL, 1_000 + EXPECT_ROOM_MS - 1), Ask::Ec2);
        // Its answers are still learned; once the wait is over they hold.
        m.saw_no_room(SMALL, true, 1_000 + EXPECT_ROOM_MS - 1);
        assert_eq!(m.ask(SMALL, 1_000 + EXPECT_ROOM_MS), Ask::NoRoom);
    }

    #[test]
    fn it_remembers_a_bounded_number_of_needs() {
        let mut m = NoRoomMemory::default();
        for i in 0..100u32 {
            // Each of more CPU and less memory than the last: none covers another.
            m.saw_no_room(Room::new(1000 + i, 100_000 - i, 0), false, 0);
        }
        assert_eq!(m.needs.len(), MOST_NEEDS);
        assert_eq!(m.ask(Room::new(1099, 99_901, 0), 1), Ask::NoRoom);
        assert_eq!(
            m.ask(Room::new(1000, 100_000, 0), 1),
            Ask::Ec2,
            "the oldest went"
        );
    }
}
