//! Scaling the cluster's instances on demand: what the scaler (the capacity
//! metric's run, each minute while it is not at rest) does to the Auto
//! Scaling group.
//!
//! - **Out, for what only EC2 runs, and where EC2 pays.** Jobs waiting for
//!   capacity get the instances they need, packed onto the room the cluster
//!   has and the instances on their way; work that went to Fargate lately
//!   and still runs there starts an instance only where the jobs that fill
//!   it cost more there than [`PAYS_MARGIN`] times the instance. Nothing is
//!   launched while nothing is asked of the cluster.
//! - **In, only what is idle.** An instance with no task for the quiet period
//!   (by default the ski-rental break-even, [`idle_break_even_seconds`]) is
//!   drained (nothing new lands on it), and terminated on a later run if it
//!   is still empty; an instance with tasks is never chosen. With no work
//!   the cluster comes down to its minimum, 0 by default, and the plan says
//!   it is at rest.
//! - **Only what the group can run.** A job that fits no instance type of
//!   the group is never scaled for (that would grow the group to its maximum
//!   for nothing); [`fit`] says which definitions those are.
//!
//! No flapping follows: an instance is launched only for demand the cluster
//! cannot hold, counting what is already on its way, and removed only after
//! a quiet period longer than any launch.

use std::fmt;

use crate::capacity::{LargestContainer, Resources, containers_that_fit};
use crate::prices::Arch;

pub mod choice;

/// CPU units, MiB and GPUs of a CPU architecture: what a task asks, or
/// what an instance has. A task runs only on an instance of its
/// architecture (berth places it there: ECS's `memberOf` constraint on
/// `ecs.cpu-architecture`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Room {
    pub cpu: u32,
    pub memory: u32,
    pub gpu: u32,
    pub arch: Arch,
}

impl Room {
    /// x86 room (see [`Room::on`]).
    pub fn new(cpu: u32, memory: u32, gpu: u32) -> Self {
        Self {
            cpu,
            memory,
            gpu,
            arch: Arch::X86_64,
        }
    }

    /// The same room, of `arch`.
    pub fn on(self, arch: Arch) -> Self {
        Self { arch, ..self }
    }

    /// Whether `self` (a need) fits in `free`.
    pub fn fits(self, free: Room) -> bool {
        self.arch == free.arch
            && self.cpu <= free.cpu
            && self.memory <= free.memory
            && self.gpu <= free.gpu
    }

    /// How many of `self` (a need) fit in `free`.
    pub fn fits_times(self, free: Room) -> u32 {
        if self.arch != free.arch {
            return 0;
        }
        let per = |have: u32, want: u32| have.checked_div(want).unwrap_or(u32::MAX);
        per(free.cpu, self.cpu)
            .min(per(free.memory, self.memory))
            .min(per(free.gpu, self.gpu))
    }

    /// Gives back what [`Room::take`] took.
    pub fn give(&mut self, need: Room) {
        self.cpu += need.cpu;
        self.memory += need.memory;
        self.gpu += need.gpu;
    }

    pub fn take(&mut self, need: Room) {
        self.cpu = self.cpu.saturating_sub(need.cpu);
        self.memory = self.memory.saturating_sub(need.memory);
        self.gpu = self.gpu.saturating_sub(need.gpu);
    }

    pub fn resources(self) -> Resources {
        Resources {
            cpu: self.cpu,
            memory: self.memory,
        }
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} CPU units / {} MiB", self.cpu, self.memory)?;
        if self.gpu > 0 {
            write!(f, " / {} GPU", self.gpu)?;
        }
        if self.arch != Arch::X86_64 {
            write!(f, " ({})", self.arch.ecs_attribute())?;
        }
        Ok(())
    }
}

/// What ECS registers of an x86 instance type for tasks: all its CPU,
/// about 97.5% of its memory (ECS developer guide, "Reserving Amazon ECS
/// Linux container instance memory": an m4.large's 8 GiB registers 7,985
/// MiB), its GPUs.
pub fn registered(vcpus: u32, memory_mib: u32, gpus: u32) -> Room {
    Room::new(
        vcpus * crate::limits::CPU_UNITS_PER_VCPU,
        (u64::from(memory_mib) * 7985 / 8192) as u32,
        gpus,
    )
}

/// One instance type of the group, as ECS would register it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    pub name: String,
    pub room: Room,
}

/// Every EC2 instance type's vCPUs, memory, GPUs and CPU architecture
/// (AWS's DescribeInstanceTypes; `scripts/instance-types` writes the file).
const CATALOG: &str = include_str!("instance_types.csv");

/// One type of the catalog: vCPUs, memory (MiB), GPUs and architecture
/// (`None`: neither x86 nor Graviton).
type Entry = (u32, u32, u32, Option<Arch>);

/// Every type of the catalog, in its order (by name).
fn catalog() -> impl Iterator<Item = (&'static str, u32, u32, u32, Option<Arch>)> {
    CATALOG
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(',');
            let name = f.next()?;
            let mut num = || f.next()?.parse::<u32>().ok();
            let (vcpus, memory, gpus) = (num()?, num()?, num()?);
            let arch = match f.next()? {
                "arm64" => Some(Arch::Arm64),
                "x86_64" => Some(Arch::X86_64),
                _ => None,
            };
            Some((name, vcpus, memory, gpus, arch))
        })
}

/// The catalog entry of type `name`, read from the catalog once.
fn catalog_entry(name: &str) -> Option<Entry> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<&'static str, Entry>> =
        std::sync::OnceLock::new();
    INDEX
        .get_or_init(|| {
            catalog()
                .map(|(n, vcpus, memory, gpus, arch)| (n, (vcpus, memory, gpus, arch)))
                .collect()
        })
        .get(name)
        .copied()
}

impl InstanceType {
    /// `name` as ECS would register it, from AWS's figures; `None` for a
    /// type the catalog does not know.
    pub fn known(name: &str) -> Option<Self> {
        let (vcpus, memory, gpus, arch) = catalog_entry(name)?;
        let arch = arch.unwrap_or_default();
        Some(Self {
            name: name.to_owned(),
            room: registered(vcpus, memory, gpus).on(arch),
        })
    }
}

/// Where a job definition stands with the group's instance types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Any instance the group launches can run it.
    Every,
    /// Only these types can: the scaler launches one of them for it.
    Some(Vec<String>),
    /// No type of the group can: it never runs on EC2.
    None,
}

/// `names` as ECS registers them, by the catalog (an unknown name is left
/// out); `None` for no names: the instance types are not known.
pub fn known_types(names: &[String]) -> Option<Vec<InstanceType>> {
    (!names.is_empty()).then(|| {
        names
            .iter()
            .filter_map(|n| InstanceType::known(n))
            .collect()
    })
}

/// Whether `need` fits in `room` on its architecture, whatever the
/// architecture `need` names (where a job's architecture is not yet known).
fn fits_some_arch(need: Room, room: Room) -> bool {
    need.on(room.arch).fits(room)
}

/// Why no instance of `types` (of any architecture) can run a job of
/// `need`, naming the largest of them; `None` when one can.
pub fn unplaceable(need: Room, types: &[InstanceType]) -> Option<String> {
    if types.iter().any(|t| fits_some_arch(need, t.room)) {
        return None;
    }
    let largest = types
        .iter()
        .max_by_key(|t| (t.room.gpu, t.room.cpu, t.room.memory))
        .map_or_else(
            || "the group has none".to_owned(),
            |t| format!("the largest is {}, {}", t.name, t.room),
        );
    Some(format!(
        "no instance type of the group holds {need} ({largest})"
    ))
}

/// Where `need` stands with `types`, of whatever architecture (no types:
/// it fits none).
pub fn fit(need: Room, types: &[InstanceType]) -> Fit {
    let fitting: Vec<String> = types
        .iter()
        .filter(|t| fits_some_arch(need, t.room))
        .map(|t| t.name.clone())
        .collect();
    if types.is_empty() || fitting.is_empty() {
        Fit::None
    } else if fitting.len() == types.len() {
        Fit::Every
    } else {
        Fit::Some(fitting)
    }
}

/// A job definition that the group cannot always run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub definition: String,
    pub need: Room,
    pub fit: Fit,
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fit {
            Fit::None => write!(
                f,
                "job definition `{}` ({}) fits no instance type of the group: its jobs never run on EC2, and the group is not scaled for them",
                self.definition, self.need
            ),
            Fit::Some(types) => write!(
                f,
                "job definition `{}` ({}) fits only {} of the group's instance types: the scaler launches one of those for its jobs",
                self.definition,
                self.need,
                types.join(", ")
            ),
            Fit::Every => write!(
                f,
                "job definition `{}` fits every instance type",
                self.definition
            ),
        }
    }
}

/// The largest container over the definitions some instance type of the
/// group can run, and the definitions left out (those none can).
pub fn largest_container(
    definitions: &[(String, Room)],
    types: &[InstanceType],
) -> (Option<LargestContainer>, Vec<Unplaceable>) {
    let mut left_out = Vec::new();
    let mut kept = Vec::new();
    for (name, need) in definitions {
        match fit(*need, types) {
            Fit::Every | Fit::Some(_) => kept.push(need.resources()),
            other => left_out.push(Unplaceable {
                definition: name.clone(),
                need: *need,
                fit: other,
            }),
        }
    }
    (LargestContainer::of(kept), left_out)
}

/// The room every type of the group has: the smallest of each resource. An
/// instance the group launches has at least this much.
pub fn smallest(types: &[InstanceType]) -> Room {
    let min = |f: fn(&InstanceType) -> u32| types.iter().map(f).min().unwrap_or(0);
    Room {
        cpu: min(|t| t.room.cpu),
        memory: min(|t| t.room.memory),
        gpu: min(|t| t.room.gpu),
        arch: types.first().map(|t| t.room.arch).unwrap_or_default(),
    }
}

/// What packing a demand onto instances takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// New instances needed beyond the room given.
    pub new: u32,
    /// Of those, the ones the demand fills: no more of it fits there.
    pub full: u32,
}

/// Packs `needs` (each with how many tasks ask it) onto `free`, then onto
/// new instances of `empty` room: first fit, largest first. Needs that
/// `empty` cannot hold are left out.
pub fn pack(needs: &[(Room, u32)], free: &[Room], empty: Room) -> Packed {
    let (bins, sorted) = fill(needs, free, empty);
    let new = &bins[free.len()..];
    Packed {
        new: new.len() as u32,
        full: new
            .iter()
            .filter(|bin| !sorted.iter().any(|(n, _)| n.fits(**bin)))
            .count() as u32,
    }
}

/// The room left on `free` and on the new instances of `empty` room once
/// `needs` are packed as [`pack`] packs them (`free`'s first, in order),
/// and the needs that `empty` holds, largest first.
fn fill(needs: &[(Room, u32)], free: &[Room], empty: Room) -> (Vec<Room>, Vec<(Room, u32)>) {
    let mut sorted: Vec<(Room, u32)> = needs
        .iter()
        .copied()
        .filter(|(n, count)| *count > 0 && n.fits(empty))
        .collect();
    sorted.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
    let mut bins: Vec<Room> = free.to_vec();
    for &(need, mut count) in &sorted {
        // First fit of identical tasks fills each bin in turn.
        for bin in bins.iter_mut() {
            if count == 0 {
                break;
            }
            let k = need.fits_times(*bin).min(count);
            for _ in 0..k {
                bin.take(need);
            }
            count -= k;
        }
        let per_bin = need.fits_times(empty).max(1);
        while count > 0 {
            let k = per_bin.min(count);
            let mut bin = empty;
            for _ in 0..k {
                bin.take(need);
            }
            bins.push(bin);
            count -= k;
        }
    }
    (bins, sorted)
}

/// How many new instances of `empty` room pay for themselves running the
/// `elsewhere` jobs: packed as [`pack`] packs, after the room `free` has,
/// the new instances the jobs fill (no more of them fits) and whose jobs
/// cost more than `threshold` an hour where they run now.
pub fn paying(elsewhere: &[Elsewhere], free: &[Room], empty: Room, threshold: f64) -> u32 {
    let mut sorted: Vec<Elsewhere> = elsewhere
        .iter()
        .copied()
        .filter(|e| e.count > 0 && e.need.fits(empty))
        .collect();
    sorted.sort_unstable_by_key(|e| std::cmp::Reverse(e.need));
    let mut bins: Vec<(Room, f64)> = free.iter().map(|r| (*r, 0.0)).collect();
    let existing = bins.len();
    for e in &sorted {
        let mut count = e.count;
        for (bin, value) in bins.iter_mut() {
            if count == 0 {
                break;
            }
            let k = e.need.fits_times(*bin).min(count);
            for _ in 0..k {
                bin.take(e.need);
            }
            *value += f64::from(k) * e.hourly;
            count -= k;
        }
        let per_bin = e.need.fits_times(empty).max(1);
        while count > 0 {
            let k = per_bin.min(count);
            let mut bin = empty;
            for _ in 0..k {
                bin.take(e.need);
            }
            bins.push((bin, f64::from(k) * e.hourly));
            count -= k;
        }
    }
    bins[existing..]
        .iter()
        .filter(|(bin, value)| *value > threshold && !sorted.iter().any(|e| e.need.fits(*bin)))
        .count() as u32
}

/// Which of the jobs `waiting` (each with what it needs) the room `free`
/// of an instance holds, packed largest first: the ones to release at
/// once when the instance registers or a task leaves it, rather than after
/// their backoff.
pub fn release<T: Clone>(waiting: &[(Room, T)], free: Room) -> Vec<T> {
    let mut order: Vec<&(Room, T)> = waiting.iter().collect();
    order.sort_by_key(|(need, _)| std::cmp::Reverse(*need));
    let mut left = free;
    let mut out = Vec::new();
    for (need, job) in order {
        if need.fits(left) {
            left.take(*need);
            out.push(job.clone());
        }
    }
    out
}

/// How many new instances of `empty` room the `needs` take after filling
/// `free` (see [`pack`]).
pub fn instances_needed(needs: &[(Room, u32)], free: &[Room], empty: Room) -> u32 {
    pack(needs, free, empty).new
}

/// Where an instance of the group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// In the group, not yet registered with the cluster.
    Launching,
    /// Takes tasks.
    Active,
    /// Drained by the scaler: takes no new tasks, and goes once empty unless
    /// demand brings it back.
    Retiring,
    /// Drained by the infrastructure (a Spot interruption or rebalance
    /// warning): it goes.
    Draining,
}

/// One instance of the group, as the scaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<Id> {
    pub id: Id,
    pub state: MemberState,
    /// What it has left (a launching instance: what it will have).
    pub free: Room,
    /// Tasks on it, running or about to.
    pub tasks: u32,
    /// Since when (milliseconds) it has had no task; `None` while it has.
    pub idle_since: Option<u64>,
    /// When (milliseconds) it was launched, where known: an instance still
    /// [`MemberState::Launching`] past [`REGISTRATION_DEADLINE_SECONDS`]
    /// never will register.
    pub launched: Option<u64>,
}

/// The scaler's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config<'a> {
    pub min: u32,
    pub max: u32,
    /// How long an instance is idle before it is drained.
    pub quiet_ms: u64,
    /// While the cluster runs tasks, keep at least this many largest
    /// containers schedulable (0: none).
    pub headroom: u32,
    /// What instances cost: a type is launched for the jobs that cost
    /// least on it, and work running elsewhere starts one only
    /// where it would pay [`PAYS_MARGIN`] times its price ([`hourly`]).
    pub prices: &'a crate::prices::Prices,
}

/// What an instance of `t` costs an hour at Spot, with its root volume;
/// `None` for a type with no price (never launched).
pub fn hourly(t: &InstanceType, prices: &crate::prices::Prices) -> Option<f64> {
    prices
        .spot_hour(&t.name)
        .map(|h| h + prices.root_volume_hour())
}

/// What jobs ask of EC2 that it does not give them now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    /// Jobs waiting for capacity (EC2 only), by need.
    pub waiting: Vec<(Room, u32)>,
    /// Jobs that went to Fargate lately for want of EC2 room and still run
    /// there, by need, with what each costs there an hour.
    pub fell_back: Vec<Elsewhere>,
}

/// Jobs of one need running off the cluster, and what each costs an hour
/// where it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Elsewhere {
    pub need: Room,
    pub count: u32,
    pub hourly: f64,
}

/// Jobs on Fargate, by need, with what the next job like each pays there an
/// hour: on Fargate Spot where it would go there (the deployment uses it
/// and the job tolerates interruption), else on demand, whatever the one
/// running found.
pub fn elsewhere<'a>(
    jobs: impl IntoIterator<Item = &'a crate::ResolvedJob>,
    prices: &crate::prices::Prices,
    fargate_spot: bool,
) -> Vec<Elsewhere> {
    let mut out: Vec<Elsewhere> = Vec::new();
    for job in jobs {
        let Some(size) = crate::routing::fargate_size(job.cpu, job.memory) else {
            continue;
        };
        let spot = fargate_spot && job.interruptible;
        let hourly = prices.fargate_hour(size, crate::prices::Arch::X86_64, spot);
        let need = Room::new(job.cpu, job.memory, job.gpu);
        match out
            .iter_mut()
            .find(|e| e.need == need && e.hourly == hourly)
        {
            Some(e) => e.count += 1,
            None => out.push(Elsewhere {
                need,
                count: 1,
                hourly,
            }),
        }
    }
    out.sort_by(|a, b| a.need.cmp(&b.need).then(a.hourly.total_cmp(&b.hourly)));
    out
}

/// Whether any of `elsewhere` would pay for an instance of one of `types`
/// that it filled: more an hour than [`PAYS_MARGIN`] times its price.
pub fn could_pay(
    elsewhere: &[Elsewhere],
    types: &[InstanceType],
    prices: &crate::prices::Prices,
) -> bool {
    pays_on_some(elsewhere, types, |t| hourly(t, prices))
}

/// [`could_pay`], each type priced an hour by `hourly`.
fn pays_on_some(
    elsewhere: &[Elsewhere],
    types: &[InstanceType],
    hourly: impl Fn(&InstanceType) -> Option<f64>,
) -> bool {
    !elsewhere.is_empty()
        && types
            .iter()
            .any(|t| hourly(t).is_some_and(|h| would_pay(elsewhere, t.room, h * PAYS_MARGIN)))
}

/// Whether any of `elsewhere` would pay for an instance of `empty` room
/// that it filled: more an hour than `threshold`.
pub fn would_pay(elsewhere: &[Elsewhere], empty: Room, threshold: f64) -> bool {
    elsewhere
        .iter()
        .any(|e| e.need.fits(empty) && e.hourly * f64::from(e.need.fits_times(empty)) > threshold)
}

/// How much an instance started for work that runs elsewhere must save over
/// its own price: it bills from its launch, takes no task until it
/// registers, and idles between jobs and through its quiet period at the
/// end (docs/scaling.md).
pub const PAYS_MARGIN: f64 = 1.25;

/// How long an instance takes from its launch to registering with the
/// cluster, as published: 30-40 s for an ECS-optimized AMI
/// (aws/amazon-ecs-agent#2309, aws/karpenter-provider-aws#3827 and #6165).
pub const REGISTRATION_SECONDS: u32 = 40;

/// How long the scaler waits for a launched instance to register with the
/// cluster before it gives it up (terminates it and plans without its
/// room): well past the published 30-40 s and a GPU AMI's slower boot;
/// an instance that has not registered by then (bad user data, no route to
/// ECS) never will. Karpenter waits 15 minutes; a job waiting for the
/// instance should not.
pub const REGISTRATION_DEADLINE_SECONDS: u32 = 600;

/// EC2 bills a Linux instance per second with a one-minute minimum.
pub const EC2_MINIMUM_SECONDS: u32 = 60;

/// The ski-rental break-even of an idle instance: keeping it idle costs its
/// price by the second; draining it costs, when work that needs it
/// returns, a new instance billed from its launch for at least a minute
/// and through its registration before it takes a task. An idle instance is
/// kept as long as that relaunch costs, then drained: whatever comes next,
/// this costs at most twice what the best choice made knowing the future
/// would (the deterministic ski-rental bound).
pub const fn idle_break_even_seconds(registration_seconds: u32) -> u32 {
    let relaunch = if registration_seconds > EC2_MINIMUM_SECONDS {
        registration_seconds
    } else {
        EC2_MINIMUM_SECONDS
    };
    relaunch + registration_seconds
}

/// What the scaler does this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<Id> {
    /// Instances to add to the group's desired capacity.
    pub add: u32,
    /// The types they may be (any one of them, the cheapest first): the
    /// type on which the jobs they are for cost least
    /// ([`choice::choose`]), with those within [`choice::EQUAL_FIT`] of
    /// it. Empty when nothing is added.
    pub types: Vec<String>,
    /// Idle instances to drain (set `DRAINING`): they retire.
    pub drain: Vec<Id>,
    /// Retiring instances to take back (set `ACTIVE`): demand came back.
    pub reactivate: Vec<Id>,
    /// Drained, empty instances, and instances that never registered, to
    /// terminate, decrementing the desired capacity.
    pub terminate: Vec<Id>,
    /// Why, one line per decision; empty when nothing changes.
    pub reasons: Vec<String>,
    /// Whether nothing may need the scaler until something new asks: no
    /// instance stays, none is added, no job waits for capacity, no work
    /// runs on Fargate that a full instance would run for less.
    pub at_rest: bool,
}

impl<Id> Plan<Id> {
    pub fn is_empty(&self) -> bool {
        self.add == 0
            && self.drain.is_empty()
            && self.reactivate.is_empty()
            && self.terminate.is_empty()
    }
}

/// How long an instance stays idle before the scaler drains it, unless
/// configured (`ScaleInAfterSeconds`): the ski-rental break-even,
/// [`idle_break_even_seconds`] at the published registration time.
pub const DEFAULT_SCALE_IN_AFTER_SECONDS: u32 = idle_break_even_seconds(REGISTRATION_SECONDS);

/// How recent a fall back to Fargate is to count as demand: a job that
/// fell back within this window and still runs says EC2 lacked room.
pub const FALLBACK_WINDOW_SECONDS: u32 = 300;

/// What the jobs need beyond the room the cluster has, as [`plan`] counts
/// it.
struct Needed {
    /// Instances for the waiting jobs, by type.
    launches: Vec<choice::Launch>,
    /// The type that most instances of, filled with work on Fargate, pay
    /// for themselves: its name, how many, what one costs an hour.
    pays: Option<(String, u32, f64)>,
}

impl Needed {
    fn wanted(&self) -> u32 {
        self.launches.iter().map(|l| l.count).sum::<u32>()
            + self.pays.as_ref().map_or(0, |(_, n, _)| *n)
    }
}

/// `needs` packed onto `free` (first fit, largest first): the room left on
/// each, and the needs that do not fit there.
fn place(needs: &[(Room, u32)], free: &[Room]) -> (Vec<Room>, Vec<(Room, u32)>) {
    let mut sorted: Vec<(Room, u32)> = needs.iter().copied().filter(|(_, c)| *c > 0).collect();
    sorted.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
    let mut bins = free.to_vec();
    let mut over = Vec::new();
    for (need, mut count) in sorted {
        for bin in bins.iter_mut() {
            let k = need.fits_times(*bin).min(count);
            for _ in 0..k {
                bin.take(need);
            }
            count -= k;
        }
        if count > 0 {
            over.push((need, count));
        }
    }
    (bins, over)
}

/// The cheapest types (within [`choice::EQUAL_FIT`]) that hold `need`.
fn cheapest_holding(
    need: Room,
    types: &[InstanceType],
    prices: &crate::prices::Prices,
) -> Vec<String> {
    choice::choose(&[(need, 1)], types, |t| hourly(t, prices))
        .into_iter()
        .next()
        .map(|l| l.types)
        .unwrap_or_default()
}

/// Decides this run's scaling at `now` (milliseconds).
pub fn plan<Id: Clone + PartialEq>(
    now: u64,
    members: &[Member<Id>],
    demand: &Demand,
    types: &[InstanceType],
    largest: Option<LargestContainer>,
    config: Config<'_>,
) -> Plan<Id> {
    let mut plan = Plan {
        add: 0,
        types: Vec::new(),
        drain: Vec::new(),
        reactivate: Vec::new(),
        terminate: Vec::new(),
        reasons: Vec::new(),
        at_rest: false,
    };
    // Each type's price, looked up once a run.
    let priced: std::collections::HashMap<&str, f64> = types
        .iter()
        .filter_map(|t| Some((t.name.as_str(), hourly(t, config.prices)?)))
        .collect();
    let hourly = |t: &InstanceType| priced.get(t.name.as_str()).copied();
    let count = |needs: &[(Room, u32)]| needs.iter().map(|(_, c)| c).sum::<u32>();
    // What no priced type holds is never scaled for (the driver refuses it
    // at submission).
    let held = |n: Room| types.iter().any(|t| n.fits(t.room) && hourly(t).is_some());
    let waiting: Vec<(Room, u32)> = demand
        .waiting
        .iter()
        .copied()
        .filter(|(n, _)| held(*n))
        .collect();
    let elsewhere: Vec<Elsewhere> = demand
        .fell_back
        .iter()
        .copied()
        .filter(|e| held(e.need))
        .collect();
    // Launched long ago and still not registered: it never will. It goes,
    // and its room is not counted on.
    let overdue = |m: &Member<Id>| {
        m.state == MemberState::Launching
            && m.launched.is_some_and(|at| {
                at.saturating_add(u64::from(REGISTRATION_DEADLINE_SECONDS) * 1000) <= now
            })
    };

    // Jobs waiting have nowhere else to go: they get what they need, on the
    // type on which they cost least. Jobs on Fargate
    // already run: instances are started for the like of them only where
    // they pay, filled with work that costs more elsewhere than the
    // instance does, margin included.
    // While work runs on Fargate that a full instance would run for less,
    // the next job like it would take an idle instance's room: no idle
    // instance is drained meanwhile.
    let would_pay = pays_on_some(&elsewhere, types, hourly);
    // New instances for the waiting jobs, then for work elsewhere that
    // pays on what room is left; and whether anything asks for room.
    let needed = |room: &[Room]| -> Needed {
        let (left, over) = place(&waiting, room);
        let launches = choice::choose(&over, types, hourly);
        let pays = types
            .iter()
            .filter(|_| !elsewhere.is_empty())
            .filter_map(|t| {
                let h = hourly(t)?;
                let n = paying(&elsewhere, &left, t.room, h * PAYS_MARGIN);
                (n > 0).then(|| (t.name.clone(), n, h))
            })
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)));
        Needed { launches, pays }
    };
    let mut room: Vec<Room> = members
        .iter()
        .filter(|m| matches!(m.state, MemberState::Active | MemberState::Launching) && !overdue(m))
        .map(|m| m.free)
        .collect();
    let mut need = needed(&room);
    // Retiring instances come back, the emptiest first, before new ones
    // start.
    if need.wanted() > 0 {
        let mut retiring: Vec<&Member<Id>> = members
            .iter()
            .filter(|m| m.state == MemberState::Retiring)
            .collect();
        retiring.sort_by_key(|m| m.tasks);
        for m in retiring {
            if need.wanted() == 0 {
                break;
            }
            plan.reactivate.push(m.id.clone());
            room.push(m.free);
            need = needed(&room);
        }
        if !plan.reactivate.is_empty() {
            plan.reasons.push(format!(
                "take back {} draining instance(s): jobs need room",
                plan.reactivate.len()
            ));
        }
    }

    // Drained and empty: it goes, and its desired capacity with it, so
    // nothing replaces it.
    for m in members {
        let retiring = m.state == MemberState::Retiring && !plan.reactivate.contains(&m.id);
        if (retiring || m.state == MemberState::Draining) && m.tasks == 0 {
            plan.terminate.push(m.id.clone());
        }
    }
    if !plan.terminate.is_empty() {
        plan.reasons.push(format!(
            "terminate {} drained instance(s) with no task",
            plan.terminate.len()
        ));
    }
    let unregistered: Vec<Id> = members
        .iter()
        .filter(|m| overdue(m))
        .map(|m| m.id.clone())
        .collect();
    if !unregistered.is_empty() {
        plan.reasons.push(format!(
            "terminate {} instance(s) not registered with the cluster {REGISTRATION_DEADLINE_SECONDS} s after launch",
            unregistered.len()
        ));
        plan.terminate.extend(unregistered);
    }
    let staying = members.len() as u32 - plan.terminate.len() as u32;
    let open = config.max.saturating_sub(staying);
    // One set of types a run (the group launches from one list): the
    // first the waiting jobs need, else the one that pays; the rest on the
    // next run, with the room on its way counted.
    let chosen: Option<(Vec<String>, u32)> = match need.launches.first() {
        Some(l) => Some((l.types.clone(), l.count)),
        None => need.pays.as_ref().map(|(t, n, _)| (vec![t.clone()], *n)),
    };
    if let (Some((kinds, wanted)), true) = (chosen, open > 0) {
        let add = wanted.min(open);
        plan.add = add;
        plan.types = kinds;
        let mut why = Vec::new();
        if let Some(l) = need.launches.first() {
            why.push(format!(
                "{} job(s) waiting for capacity on {}, where the jobs that wait cost least",
                l.jobs,
                plan.types.join(" or ")
            ));
        } else if let Some((_, pays, _)) = &need.pays {
            why.push(format!(
                "{} job(s) on Fargate fill {pays} {} that cost less than Fargate for them",
                elsewhere.iter().map(|e| e.count).sum::<u32>(),
                plan.types.join(" or ")
            ));
        }
        let later: u32 = need.launches.iter().skip(1).map(|l| l.count).sum();
        if later > 0 {
            why.push(format!(
                "{later} instance(s) of other types for the other {} waiting job(s) on the next run",
                count(&waiting).saturating_sub(need.launches[0].jobs)
            ));
        }
        plan.reasons.push(format!(
            "add {add} instance(s): {}{}",
            why.join("; "),
            if add < wanted {
                " (the group is at its maximum)"
            } else {
                ""
            },
        ));
    }
    // Whether anything asks for room.
    let unmet = need.wanted() > 0 || would_pay;

    // Headroom while the cluster is in use: a retiring instance comes
    // back before a new one starts.
    let in_use = members.iter().any(|m| m.tasks > 0);
    let keeps_headroom = in_use && config.headroom > 0 && largest.is_some();
    let holds = |m: &Member<Id>, reactivated: &[Id]| -> u32 {
        let counts = (matches!(m.state, MemberState::Active | MemberState::Launching)
            && !overdue(m))
            || reactivated.contains(&m.id);
        match largest {
            Some(l) if counts => containers_that_fit(m.free.resources(), l),
            _ => 0,
        }
    };
    let mut schedulable: u32 = members.iter().map(|m| holds(m, &plan.reactivate)).sum();
    if plan.add == 0 && keeps_headroom && schedulable < config.headroom {
        let back = members
            .iter()
            .filter(|m| m.state == MemberState::Retiring && !plan.reactivate.contains(&m.id))
            .min_by_key(|m| m.tasks);
        let why = format!(
            "{schedulable} largest container(s) schedulable while the cluster is in use, below the headroom of {}",
            config.headroom
        );
        match back {
            Some(m) => {
                plan.reactivate.push(m.id.clone());
                plan.terminate.retain(|id| *id != m.id);
                schedulable += holds(m, &plan.reactivate);
                plan.reasons
                    .push(format!("take back a draining instance: {why}"));
            }
            None if open > 0 => {
                let need = largest.map_or_else(Room::default, |l| {
                    let r = l.resources();
                    Room::new(r.cpu, r.memory, 0)
                });
                plan.add = 1;
                plan.types = cheapest_holding(need, types, config.prices);
                plan.reasons.push(format!("add 1 instance: {why}"));
            }
            None => {}
        }
    }
    let staying = members.len() as u32 - plan.terminate.len() as u32;

    // The group's minimum.
    let after = staying + plan.add;
    if after < config.min {
        let more = config.min - after;
        plan.add += more;
        if plan.types.is_empty() {
            plan.types = cheapest_holding(Room::default(), types, config.prices);
        }
        plan.reasons.push(format!(
            "add {more} instance(s): the group's minimum is {}",
            config.min
        ));
    }

    // Idle long enough, and nothing asked: drain, longest idle first. A job
    // waiting for capacity comes back only after its backoff, so while one
    // waits the room it will take is kept.
    if plan.add == 0 && plan.reactivate.is_empty() && !unmet && waiting.is_empty() {
        let mut idle: Vec<(usize, u64)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state == MemberState::Active && m.tasks == 0)
            .filter_map(|(i, m)| m.idle_since.map(|s| (i, s)))
            .filter(|(_, s)| s.saturating_add(config.quiet_ms) <= now)
            .collect();
        idle.sort_by_key(|&(i, s)| (s, i));
        let mut remaining = staying;
        for (i, since) in idle {
            if remaining <= config.min {
                break;
            }
            let m = &members[i];
            if keeps_headroom {
                let h = holds(m, &plan.reactivate);
                if schedulable - h < config.headroom {
                    continue;
                }
                schedulable -= h;
            }
            remaining -= 1;
            plan.drain.push(m.id.clone());
            plan.reasons.push(format!(
                "drain an instance idle for {} s",
                now.saturating_sub(since) / 1000
            ));
        }
    }
    plan.at_rest = staying == 0 && plan.add == 0 && waiting.is_empty() && !would_pay;
    plan
}

#[cfg(test)]
mod tests;
