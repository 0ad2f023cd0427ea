//! The discrete-event simulation of one policy on one trace.
//!
//! Time is in milliseconds from the start of the trace. Events at the same
//! time run in the order they were scheduled, and every draw comes from one
//! seeded generator, so the same settings always give the same outcome.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

use berth_core::capacity::{self, ContainerInstance, InstanceStatus, LargestContainer};
use berth_core::definition::ResolvedJob;
use berth_core::launch::{MAX_CAPACITY_WAIT_SECONDS, capacity_backoff_seconds};
use berth_core::prices::{Arch, Prices};
use berth_core::room::{Ask, NoRoomMemory};
use berth_core::routing::{self, Context, FargateSize, OnFargate, Plan, Runs};
use berth_core::scaling::{self, Demand, Member as ScalingMember, MemberState, Room};
use berth_core::stop::{self, EcsStop, Next, Tries};
use berth_core::{Processor, Route};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::autoscaling::{self, Member, TerminationPolicy};
use crate::cloudwatch::{Alarm, AlarmState, Comparison, MissingData};
use crate::cost::{self, Cost};
use crate::ecs::{self, Strategy};
use crate::figures::{self as f, InstanceType, ms};
use crate::limits::{Buckets, Call, DriverGate, LambdaPool};
use crate::policy::Policy;
use crate::report::PricedAttempt;
use crate::report::{self, Outcome, Sample, ScaleEvent, ScaleKind};
use crate::trace::Trace;
use berth_core::cost::{self as attempt, Usage};

mod paced;

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
/// A run stops this long after the trace's span whatever is left; what is
/// left then is reported lost.
const GIVE_UP_AFTER_MS: u64 = 7 * 24 * 3600 * SECOND;

/// What a simulation is run with, beside the trace and the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The group's instance types for the other policies; instances are
    /// launched as the first.
    pub instance_types: Vec<&'static InstanceType>,
    /// The types berth's scaler may launch: for the jobs that wait, the one
    /// on which they cost least (berth-core's plan).
    pub allowed: Vec<&'static InstanceType>,
    pub max_size: u32,
    /// The largest container; `None`: the largest of the trace's
    /// definitions, as the capacity metric derives it.
    pub largest: Option<LargestContainer>,
    /// berth's scaler: largest containers kept schedulable while the
    /// cluster is in use (0: none).
    pub headroom: u32,
    /// berth's scaler: how long an instance stays idle before it drains.
    pub scale_in_after_s: u32,
    /// berth's scaler: how recent a Fargate fallback counts as demand.
    pub fallback_window_s: u32,
    pub spot_interruptions_per_month: f64,
    /// Fargate Spot interruptions per task-hour.
    pub fargate_spot_interruptions_per_hour: f64,
    /// The share of Fargate Spot launches that find no capacity.
    pub fargate_spot_shortfall: f64,
    /// berth uses Fargate Spot for jobs that tolerate interruption
    /// (template.yaml's FargateSpot).
    pub fargate_spot: bool,
    /// The price model berth decides with and the run is priced by.
    pub prices: Prices,
    /// The size of `always-on`; `None`: the cheapest size for the trace.
    pub always_on: Option<u32>,
    /// AWS's rate limits ([`crate::limits`]) on the driver's calls, the
    /// launches and Lambda's starts; off: every call succeeds at once.
    pub limits: bool,
    /// The driver remembers where EC2 had no room (berth-core's `room`);
    /// off: it asks EC2 for every job that may run there.
    pub no_room_memory: bool,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instance_types: f::DEFAULT_INSTANCE_TYPES
                .iter()
                .filter_map(|n| InstanceType::find(n))
                .collect(),
            allowed: f::default_allowed(),
            max_size: f::CLUSTER_MAX_SIZE.value as u32,
            largest: None,
            headroom: 0,
            scale_in_after_s: scaling::DEFAULT_SCALE_IN_AFTER_SECONDS,
            fallback_window_s: scaling::FALLBACK_WINDOW_SECONDS,
            spot_interruptions_per_month: f::SPOT_INTERRUPTIONS_PER_INSTANCE_MONTH.value,
            fargate_spot_interruptions_per_hour: f::FARGATE_SPOT_INTERRUPTIONS_PER_TASK_HOUR.value,
            fargate_spot_shortfall: f::FARGATE_SPOT_SHORTFALL.value,
            fargate_spot: true,
            prices: Prices::default(),
            always_on: None,
            limits: true,
            no_room_memory: true,
            seed: 1,
        }
    }
}

/// Where each job of a trace may run, worked out once by berth-core.
#[derive(Debug, Clone)]
pub struct Plans {
    /// The seed's routing (Lambda wherever the job fits it, EC2 first,
    /// Fargate on demand when EC2 has no room), for the policies that keep
    /// it (an error: the driver rejects the job).
    seed: Vec<Result<Plan, String>>,
    /// Each job as the driver resolves it, for berth's routing at dispatch
    /// (an index into `kinds`).
    kind: Vec<usize>,
    kinds: Vec<ResolvedJob>,
    /// Whether the job fits Lambda, were its definition to name a function.
    lambda_anywhere: Vec<bool>,
    /// The Fargate size, were its definition to allow Fargate.
    fargate_anywhere: Vec<Option<FargateSize>>,
    need: Vec<Room>,
}

impl Plans {
    /// The Fargate size of job `j`, were its definition to allow Fargate.
    pub fn fargate_size(&self, j: usize) -> Option<FargateSize> {
        self.fargate_anywhere[j]
    }

    /// Whether job `j` fits Lambda, were its definition to name a function.
    pub fn fits_lambda(&self, j: usize) -> bool {
        self.lambda_anywhere[j]
    }

    /// What job `j` asks of an instance.
    pub fn need(&self, j: usize) -> Room {
        self.need[j]
    }

    pub fn new(trace: &Trace) -> Self {
        type Key = (String, u32, u32, u32, u32, bool, bool);
        type Routes = (Result<Plan, String>, bool, Option<FargateSize>, usize);
        let mut cache: HashMap<Key, Routes> = HashMap::new();
        let mut kinds = Vec::new();
        let mut plans = Self {
            seed: Vec::with_capacity(trace.jobs.len()),
            kind: Vec::with_capacity(trace.jobs.len()),
            kinds: Vec::new(),
            lambda_anywhere: Vec::with_capacity(trace.jobs.len()),
            fargate_anywhere: Vec::with_capacity(trace.jobs.len()),
            need: Vec::with_capacity(trace.jobs.len()),
        };
        for j in &trace.jobs {
            let key = (
                j.definition.clone(),
                j.cpu,
                j.memory,
                j.gpu,
                j.timeout_s,
                j.lambda,
                j.fargate,
            );
            let (seed, lambda, fargate, kind) = cache
                .entry(key)
                .or_insert_with(|| {
                    let mut job = ResolvedJob {
                        daily_limit_usd: None,
                        retry_rules: Vec::new(),
                        depends_on: Vec::new(),
                        array: None,
                        // A message id's length: what the payload limits see.
                        job_id: "00000000-0000-0000-0000-000000000000".into(),
                        definition: j.definition.clone(),
                        task_definition: format!("berth-{}", j.definition),
                        container: "main".into(),
                        lambda_function: j.lambda.then(|| format!("berth-task-{}", j.definition)),
                        command: None,
                        environment: Default::default(),
                        cpu: j.cpu,
                        memory: j.memory,
                        gpu: j.gpu,
                        timeout_seconds: j.timeout_s,
                        max_attempts: 1,
                        processor: Processor::Auto,
                        fargate_allowed: j.fargate,
                        job_role: None,
                        interruptible: true,
                        expected_seconds: None,
                        tags: Default::default(),
                    };
                    let prices = Prices::default();
                    let seed_routing = Context {
                        fargate_spot: false,
                        ..Context::first(&prices, &job)
                    };
                    let seed = routing::route(&job, &seed_routing)
                        .map(|d| d.plan)
                        .map_err(|e| e.to_string());
                    kinds.push(job.clone());
                    let kind = kinds.len() - 1;
                    job.lambda_function = Some(format!("berth-task-{}", j.definition));
                    job.fargate_allowed = true;
                    let lambda = routing::lambda_fit(&job).is_ok();
                    let fargate = routing::fargate_fit(&job).ok();
                    (seed, lambda, fargate, kind)
                })
                .clone();
            plans.seed.push(seed);
            plans.kind.push(kind);
            plans.lambda_anywhere.push(lambda);
            plans.fargate_anywhere.push(fargate);
            plans.need.push(Room::new(j.cpu, j.memory, j.gpu));
        }
        plans.kinds = kinds;
        plans
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Submit(usize),
    /// A delivery of a job's message becomes visible: the driver takes it
    /// as its trigger's batches let it (limits on).
    Arrive(usize, u32),
    /// A delivery of a job's message (its number, see `Job::delivery`).
    Dispatch(usize, u32),
    /// The SDK's retry of a throttled launch of a delivery.
    Retry(usize, u32),
    /// Lambda's queue of asynchronous invocations tries its next.
    LambdaPoll,
    TaskStart(usize),
    TaskEnd(usize),
    InService(usize),
    Registered(usize),
    SpotWarning(usize),
    SpotReclaim(usize),
    /// Fargate Spot takes a task back.
    FargateReclaim(usize),
    /// The driver's wake-up reaches berth's capacity metric.
    Wake,
    Tick,
    PlacePass,
}

/// Jobs waiting in PROVISIONING (capacity provider) or RUNNABLE (Batch),
/// in order, with how many wait for each kind of room.
#[derive(Debug, Default)]
struct Waiting {
    order: VecDeque<usize>,
    counts: HashMap<Room, u32>,
}

impl Waiting {
    fn push(&mut self, j: usize, need: Room) {
        self.order.push_back(j);
        *self.counts.entry(need).or_default() += 1;
    }

    fn left(&mut self, need: Room) {
        if let Some(c) = self.counts.get_mut(&need) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&need);
            }
        }
    }

    fn needs(&self) -> Vec<(Room, u32)> {
        self.counts.iter().map(|(n, c)| (*n, *c)).collect()
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Succeeded,
    TimedOut,
    /// Never ran: no capacity in time, or never placed.
    Failed,
    /// The policy has nowhere to run it.
    Unrunnable,
}

#[derive(Debug, Clone, Default)]
struct Job {
    end: Option<End>,
    first_start: Option<u64>,
    task: Option<usize>,
    first_wait: Option<u64>,
    waits: u32,
    dispatches: u32,
    ran_on: Option<Route>,
    interruptions: u32,
    /// Deliveries of its message on their way to the driver.
    pending: u32,
    /// Its message's current delivery: one released early (room appeared
    /// for it) replaces the one held for its backoff, which then never
    /// comes.
    delivery: u32,
    queued: bool,
    /// Counted in the ECS load (see [`ScaleEvent`]).
    in_ecs_load: bool,
    /// The SDK's tries of the launch in hand (limits on).
    tries: u32,
    /// Receives of its message that ended throttled, since its last new
    /// message.
    throttled_receives: u32,
    /// When it first launched: RunTask answered, or its invocation started.
    launched: Option<(u64, Call)>,
    /// The driver's execution environment that has its current delivery.
    environment: usize,
    /// The dispatch in which the driver's RunTask on EC2 found no room:
    /// the SDK's retries of its throttled Fargate call do not ask again.
    ec2_had_no_room: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Ec2(usize),
    /// On Fargate; on Fargate Spot when `spot`.
    Fargate(FargateSize, bool),
    Lambda,
}

#[derive(Debug, Clone)]
struct Task {
    job: usize,
    place: Place,
    /// On Fargate because EC2 had no room.
    fallback: bool,
    launched: u64,
    started: Option<u64>,
    alive: bool,
    /// A Lambda invocation holding one of the account's concurrency.
    holding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Active,
    /// Drained by a Spot warning.
    Draining,
    /// Drained by berth's scaler.
    Retiring,
    Terminated,
}

#[derive(Debug, Clone)]
struct Instance {
    /// Its type.
    kind: &'static InstanceType,
    spot: bool,
    launched: u64,
    in_service: Option<u64>,
    terminated: Option<u64>,
    state: State,
    free: Room,
    tasks: Vec<usize>,
    busy_since: Option<u64>,
    busy_ms: u64,
    /// When its last task ended, or it registered with none.
    idle_since: Option<u64>,
}

/// The metric an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    SchedulableContainers,
    CpuReservation,
    MemoryReservation,
    CapacityProviderReservation,
}

/// What an alarm does when in ALARM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    StepOut,
    StepIn,
    /// Target tracking: scale out to the capacity the metric asks for.
    TrackOut,
    /// Target tracking: scale in to it.
    TrackIn,
}

struct Sim<'a> {
    policy: Policy,
    settings: &'a Settings,
    trace: &'a Trace,
    plans: &'a Plans,
    launch_type: &'static InstanceType,
    empty: Room,
    largest: Option<LargestContainer>,
    now: u64,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    rng: ChaCha8Rng,
    jobs: Vec<Job>,
    tasks: Vec<Task>,
    instances: Vec<Instance>,
    live: Vec<usize>,
    desired: u32,
    min: u32,
    max: u32,
    termination: TerminationPolicy,
    warmup_ms: u64,
    awaiting_replacement: u32,
    alarms: Vec<(Alarm, Watched, Action)>,
    queue: Waiting,
    strategy: Strategy,
    /// berth: jobs waiting for capacity, and recent Fargate fallbacks.
    waiting_for_capacity: BTreeSet<usize>,
    fallbacks: VecDeque<(u64, usize)>,
    /// berth: each definition's successful runs so far.
    runs: HashMap<String, Runs>,
    fargate_spot_shortfalls: u32,
    /// berth: whether the capacity metric's schedule is on, whether a
    /// wake-up is on its way, and its runs so far.
    scaler_on: bool,
    wake_pending: bool,
    scaler_runs: u64,
    /// berth: whether work of some definition on Fargate could fill an
    /// instance that costs less (then the scaler never rests).
    could_pay: bool,
    types: Vec<scaling::InstanceType>,
    metric_minutes: u64,
    metric_hours: BTreeSet<u64>,
    // What is measured.
    submitted: usize,
    ended: usize,
    last_end: u64,
    horizon: Option<u64>,
    running: [u32; 3],
    /// What the jobs needing ECS ask, in instances (see [`ScaleEvent`]).
    ecs_load: f64,
    scale_events: Vec<ScaleEvent>,
    scale_outs: u32,
    scale_ins: u32,
    killed_by_scale_in: u32,
    interrupted: u32,
    cost: Cost,
    /// Each attempt's cost, as the runtime records it.
    attempts: Vec<PricedAttempt>,
    series: Vec<Sample>,
    metric: Option<f64>,
    busy_hours: BTreeSet<u64>,
    extra_dispatches: u64,
    /// Container instance events ecs-runner handles (berth: an instance
    /// registered, a task placed on one or gone from it), and the jobs
    /// they released.
    instance_events: u64,
    released: u64,
    ecs_tasks: u64,
    minutes: u64,
    // AWS's rate limits (limits on).
    buckets: Buckets,
    lambda: LambdaPool,
    driver: DriverGate,
    lambda_poll_at: Option<u64>,
    throttled_calls: u64,
    throttled_deliveries: u64,
    carried_on: u64,
    /// Each driver execution environment's memory of where EC2 had no
    /// room, and the next to take a delivery.
    no_room: Vec<NoRoomMemory>,
    next_environment: usize,
}

/// Runs `policy` on `trace`.
pub fn simulate(trace: &Trace, plans: &Plans, policy: Policy, settings: &Settings) -> Outcome {
    if policy == Policy::LowerBound {
        return crate::bound::outcome(trace, plans, settings);
    }
    let mut sim = Sim::new(trace, plans, policy, settings);
    if policy == Policy::Berth {
        sim.could_pay = sim.could_pay();
        // A day of a deployment that runs already: at midnight its scaler's
        // schedule is off if the cluster rests.
        sim.scaler_on = sim.min > 0 || sim.could_pay;
    }
    sim.run();
    sim.outcome()
}

impl<'a> Sim<'a> {
    fn new(trace: &'a Trace, plans: &'a Plans, policy: Policy, settings: &'a Settings) -> Self {
        let launch_type = settings
            .instance_types
            .first()
            .copied()
            .or_else(|| InstanceType::find(f::DEFAULT_INSTANCE_TYPES[0]))
            .unwrap_or(&f::INSTANCE_TYPES[0]);
        let group_types = if policy == Policy::Berth {
            &settings.allowed
        } else {
            &settings.instance_types
        };
        let largest = settings.largest.or_else(|| {
            if policy == Policy::Berth {
                // The scaler leaves out what no type it may launch can run.
                let types: Vec<scaling::InstanceType> =
                    group_types.iter().map(|t| t.scaling()).collect();
                scaling::largest_container(&trace.definitions, &types).0
            } else {
                LargestContainer::of(trace.definitions.iter().map(|(_, r)| r.resources()))
            }
        });
        let empty = launch_type.registered();
        let per_instance = largest.map_or(0, |l| {
            capacity::most_per_instance(
                settings
                    .instance_types
                    .iter()
                    .map(|t| t.registered().resources()),
                l,
            )
        });
        // The seed's alarms at template.yaml's ScaleOutThreshold of 1, and
        // the scale-in threshold `berth thresholds` gives for it.
        let thresholds = capacity::thresholds(per_instance, 1);
        let (min, max) = match policy {
            // With no instance ECS publishes no reservation, so two alarms
            // on it could never scale out from zero.
            Policy::TwoAlarms => (1, settings.max_size),
            Policy::AlwaysOn => {
                let n = settings.always_on.unwrap_or(0);
                (n, n)
            }
            _ => (0, settings.max_size),
        };
        let alarms = match policy {
            Policy::SchedulableAlarms => {
                let n_in = f::SCALE_IN_EVALUATION_PERIODS.value as usize;
                vec![
                    (
                        Alarm::new(
                            "SchedulableContainersLow",
                            Comparison::LessThan,
                            f64::from(thresholds.scale_out_below),
                            (1, f::SCALE_OUT_EVALUATION_PERIODS.value as usize),
                            MissingData::Missing,
                        ),
                        Watched::SchedulableContainers,
                        Action::StepOut,
                    ),
                    (
                        Alarm::new(
                            "SchedulableContainersHigh",
                            Comparison::GreaterThan,
                            f64::from(thresholds.scale_in_above),
                            (n_in, n_in),
                            MissingData::NotBreaching,
                        ),
                        Watched::SchedulableContainers,
                        Action::StepIn,
                    ),
                ]
            }
            Policy::TwoAlarms => {
                let high = f::TWO_ALARMS_HIGH_PERCENT.value;
                let low = f::TWO_ALARMS_LOW_PERCENT.value;
                let n = f::TWO_ALARMS_SCALE_IN_PERIODS.value as usize;
                let alarm = |name, cmp, threshold, m_of_n| {
                    Alarm::new(name, cmp, threshold, m_of_n, MissingData::Missing)
                };
                vec![
                    (
                        alarm("CPUReservationHigh", Comparison::GreaterThan, high, (1, 1)),
                        Watched::CpuReservation,
                        Action::StepOut,
                    ),
                    (
                        alarm(
                            "MemoryReservationHigh",
                            Comparison::GreaterThan,
                            high,
                            (1, 1),
                        ),
                        Watched::MemoryReservation,
                        Action::StepOut,
                    ),
                    (
                        alarm("CPUReservationLow", Comparison::LessThan, low, (n, n)),
                        Watched::CpuReservation,
                        Action::StepIn,
                    ),
                    (
                        alarm("MemoryReservationLow", Comparison::LessThan, low, (n, n)),
                        Watched::MemoryReservation,
                        Action::StepIn,
                    ),
                ]
            }
            Policy::CapacityProvider => {
                let target = f::MANAGED_SCALING_TARGET_PERCENT.value;
                let n = f::MANAGED_SCALE_IN_PERIODS.value as usize;
                vec![
                    (
                        Alarm::new(
                            "CapacityProviderReservationHigh",
                            Comparison::GreaterThan,
                            target,
                            (1, 1),
                            MissingData::Missing,
                        ),
                        Watched::CapacityProviderReservation,
                        Action::TrackOut,
                    ),
                    (
                        Alarm::new(
                            "CapacityProviderReservationLow",
                            Comparison::LessThan,
                            target,
                            (n, n),
                            MissingData::Missing,
                        ),
                        Watched::CapacityProviderReservation,
                        Action::TrackIn,
                    ),
                ]
            }
            _ => Vec::new(),
        };
        let warmup_ms = match policy {
            Policy::CapacityProvider => ms(f::MANAGED_SCALING_WARMUP_SECONDS),
            _ => ms(f::INSTANCE_WARMUP_SECONDS),
        };
        let strategy = match policy {
            Policy::AwsBatch | Policy::Berth => Strategy::Binpack,
            _ => Strategy::Random,
        };
        Self {
            policy,
            settings,
            trace,
            plans,
            launch_type,
            empty,
            largest,
            now: 0,
            heap: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(settings.seed ^ policy_salt(policy)),
            jobs: vec![Job::default(); trace.jobs.len()],
            tasks: Vec::with_capacity(trace.jobs.len()),
            instances: Vec::new(),
            live: Vec::new(),
            desired: min,
            min,
            max,
            termination: TerminationPolicy::Default,
            warmup_ms,
            awaiting_replacement: 0,
            alarms,
            queue: Waiting::default(),
            strategy,
            waiting_for_capacity: BTreeSet::new(),
            fallbacks: VecDeque::new(),
            runs: HashMap::new(),
            fargate_spot_shortfalls: 0,
            scaler_on: true,
            wake_pending: false,
            scaler_runs: 0,
            could_pay: false,
            types: group_types.iter().map(|t| t.scaling()).collect(),
            metric_minutes: 0,
            metric_hours: BTreeSet::new(),
            submitted: 0,
            ended: 0,
            last_end: 0,
            horizon: None,
            running: [0; 3],
            ecs_load: 0.0,
            scale_events: Vec::new(),
            scale_outs: 0,
            scale_ins: 0,
            killed_by_scale_in: 0,
            interrupted: 0,
            cost: Cost::default(),
            attempts: Vec::new(),
            series: Vec::new(),
            metric: None,
            busy_hours: BTreeSet::new(),
            extra_dispatches: 0,
            instance_events: 0,
            released: 0,
            ecs_tasks: 0,
            minutes: 0,
            buckets: Buckets::default(),
            lambda: LambdaPool::default(),
            driver: DriverGate::new(f::DRIVER_CONCURRENCY.value as u32),
            lambda_poll_at: None,
            throttled_calls: 0,
            throttled_deliveries: 0,
            carried_on: 0,
            no_room: vec![NoRoomMemory::default(); f::DRIVER_CONCURRENCY.value as usize],
            next_environment: 0,
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    fn run(&mut self) {
        for (i, j) in self.trace.jobs.iter().enumerate() {
            let t = (j.submit_s * 1000.0).round() as u64;
            self.at(t, Ev::Submit(i));
        }
        // The group starts at its minimum, already in service.
        for _ in 0..self.min {
            let i = self.launch(false);
            let inst = &mut self.instances[i];
            inst.launched = 0;
            inst.in_service = Some(0);
            inst.state = State::Active;
            inst.idle_since = Some(0);
        }
        self.heap
            .retain(|Reverse((_, _, ev))| !matches!(ev, Ev::InService(_) | Ev::Registered(_)));
        self.at(0, Ev::Tick);
        if matches!(
            self.policy,
            Policy::CapacityProvider | Policy::AwsBatch | Policy::AwsBatchFargate
        ) {
            self.at(0, Ev::PlacePass);
        }
        let give_up = (self.trace.span_s * 1000.0) as u64 + GIVE_UP_AFTER_MS;
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
            if self.horizon.is_some_and(|h| t > h) || t > give_up {
                break;
            }
            self.now = t;
            match ev {
                Ev::Submit(j) => self.submit(j),
                Ev::Arrive(j, delivery) => {
                    let at = self.driver.admit(self.now);
                    self.at(at, Ev::Dispatch(j, delivery));
                }
                Ev::Dispatch(j, delivery) => {
                    if delivery == self.jobs[j].delivery {
                        self.dispatch(j);
                    } else {
                        self.jobs[j].pending -= 1;
                    }
                }
                Ev::Retry(j, delivery) => {
                    self.jobs[j].pending -= 1;
                    if delivery == self.jobs[j].delivery && self.jobs[j].end.is_none() {
                        self.decide(j);
                    }
                }
                Ev::LambdaPoll => {
                    self.lambda_poll_at = None;
                    self.start_queued_invocations();
                }
                Ev::TaskStart(t) => self.task_start(t),
                Ev::TaskEnd(t) => self.task_end(t),
                Ev::InService(i) => {
                    if self.instances[i].state != State::Terminated {
                        self.instances[i].in_service = Some(self.now);
                    }
                }
                Ev::Registered(i) => self.registered(i),
                Ev::SpotWarning(i) => self.spot_warning(i),
                Ev::SpotReclaim(i) => self.spot_reclaim(i),
                Ev::FargateReclaim(t) => self.fargate_reclaim(t),
                Ev::Wake => {
                    self.wake_pending = false;
                    self.scaler_runs += 1;
                    let rests = self.berth_scaler();
                    self.scaler_on |= !rests;
                    self.reconcile();
                }
                Ev::Tick => self.tick(),
                Ev::PlacePass => self.place_pass(),
            }
        }
        let end = self.horizon.unwrap_or(self.now);
        self.now = end;
    }

    // --- Jobs -------------------------------------------------------------

    fn submit(&mut self, j: usize) {
        self.submitted += 1;
        self.busy_hours.insert(self.now / (3600 * SECOND));
        match self.policy {
            Policy::AwsBatch => {
                if self.plans.need[j].fits(self.empty) {
                    self.enqueue(j);
                } else {
                    self.end(j, End::Unrunnable);
                }
            }
            Policy::AwsBatchFargate => {
                if self.plans.fargate_anywhere[j].is_some() {
                    self.enqueue(j);
                } else {
                    self.end(j, End::Unrunnable);
                }
            }
            _ => self.deliver(j, self.now + ms(f::SQS_TO_DRIVER_SECONDS)),
        }
    }

    /// The job's message reaches the driver at `t`.
    fn deliver(&mut self, j: usize, t: u64) {
        self.jobs[j].pending += 1;
        let delivery = self.jobs[j].delivery;
        if self.settings.limits {
            self.at(t, Ev::Arrive(j, delivery));
        } else {
            self.at(t, Ev::Dispatch(j, delivery));
        }
    }

    /// berth's ecs-runner on a container instance's event (it registered,
    /// or a task left it): the jobs waiting for capacity that instance `i`'s
    /// room holds are released, their held deliveries made visible now.
    fn release_onto(&mut self, i: usize) {
        if self.policy != Policy::Berth || self.instances[i].state != State::Active {
            return;
        }
        self.instance_events += 1;
        let waiting: Vec<(Room, usize)> = self
            .waiting_for_capacity
            .iter()
            .filter(|&&j| self.jobs[j].end.is_none())
            .map(|&j| (self.plans.need[j], j))
            .collect();
        let at = self.now + ms(f::EVENT_TO_FUNCTION_SECONDS) + ms(f::SQS_TO_DRIVER_SECONDS);
        for j in scaling::release(&waiting, self.instances[i].free) {
            self.jobs[j].delivery += 1;
            self.released += 1;
            self.deliver(j, at);
        }
    }

    fn enqueue(&mut self, j: usize) {
        self.enter_ecs_load(j);
        self.jobs[j].queued = true;
        self.queue.push(j, self.plans.need[j]);
    }

    /// The driver takes the job's message (berth's pipeline).
    fn dispatch(&mut self, j: usize) {
        self.jobs[j].pending -= 1;
        if self.jobs[j].end.is_some() {
            return;
        }
        self.jobs[j].dispatches += 1;
        // The batches the trigger runs at once, each its own environment.
        let environments = if self.settings.limits {
            self.driver.batches(self.now)
        } else {
            self.no_room.len()
        };
        self.jobs[j].environment =
            self.next_environment % environments.clamp(1, self.no_room.len());
        self.next_environment += 1;
        if self.jobs[j].dispatches > 1 {
            self.extra_dispatches += 1;
        }
        // The record's accept and launch claim.
        if self.settings.limits && !self.buckets.writes.try_take(self.now) {
            self.throttled_calls += 1;
            self.throttled(j);
            return;
        }
        self.decide(j);
    }

    /// The driver routes the job and launches it.
    fn decide(&mut self, j: usize) {
        let on_demand = |size| OnFargate { size, spot: false };
        match self.policy {
            Policy::AllFargate => match self.plans.fargate_anywhere[j] {
                Some(size) => self.launch_plan(j, Some(Plan::Fargate(on_demand(size)))),
                None => self.end(j, End::Unrunnable),
            },
            Policy::AllFargateSpot => match self.plans.fargate_anywhere[j] {
                Some(size) => {
                    let spot = self.jobs[j].interruptions < stop::DEFAULT_MAX_INTERRUPTIONS;
                    self.launch_plan(j, Some(Plan::Fargate(OnFargate { size, spot })));
                }
                None => self.end(j, End::Unrunnable),
            },
            Policy::AllLambdaWherePossible => {
                if self.plans.lambda_anywhere[j] {
                    self.start_lambda(j);
                } else if let Some(size) = self.plans.fargate_anywhere[j] {
                    self.launch_plan(j, Some(Plan::Fargate(on_demand(size))));
                } else {
                    self.end(j, End::Unrunnable);
                }
            }
            Policy::Berth => {
                let job = &self.plans.kinds[self.plans.kind[j]];
                let ctx = Context {
                    prices: &self.settings.prices,
                    // The definition's expected run, else the mean of its
                    // runs so far, as the driver resolves it.
                    expected_seconds: job
                        .expected_seconds
                        .or_else(|| self.runs.get(&job.definition)?.mean_seconds())
                        .map(f64::from),
                    interruptions: self.jobs[j].interruptions,
                    max_interruptions: stop::DEFAULT_MAX_INTERRUPTIONS,
                    fargate_spot: self.settings.fargate_spot,
                    ec2_types: Some(&self.types),
                };
                let plan = routing::route(job, &ctx).map(|d| d.plan);
                self.launch_plan(j, plan.ok());
            }
            _ => {
                let plan = self.plans.seed[j].clone().ok();
                self.launch_plan(j, plan);
            }
        }
    }

    /// Launches the job as `plan` says; `None`: the driver rejects it.
    fn launch_plan(&mut self, j: usize, plan: Option<Plan>) {
        match plan {
            None => self.end(j, End::Unrunnable),
            Some(Plan::Lambda { .. }) => self.start_lambda(j),
            Some(Plan::Fargate(on)) => {
                if self.call(j, Call::RunTaskFargate(on.spot)) {
                    self.start_fargate(j, on);
                }
            }
            Some(Plan::Ec2 { fargate_fallback }) => {
                let need = self.plans.need[j];
                let environment = self.jobs[j].environment;
                // The driver: EC2's "no room" of a moment ago spares the
                // RunTask that would place nothing (berth-core's `room`).
                let asked = self.jobs[j].ec2_had_no_room == Some(self.jobs[j].dispatches);
                let ask = match fargate_fallback {
                    _ if asked => Ask::NoRoom,
                    Some(_) if self.settings.no_room_memory => {
                        self.no_room[environment].ask(need, self.now)
                    }
                    _ => Ask::Ec2,
                };
                let room = match ask {
                    Ask::Ec2 => self.find_room(j),
                    Ask::NoRoom => None,
                };
                if let Some(i) = room {
                    if self.call(j, Call::RunTaskEc2) {
                        self.no_room[environment].saw_room();
                        self.start_ec2(j, i, ms(f::EC2_TASK_START_SECONDS));
                    }
                    return;
                }
                if self.policy == Policy::CapacityProvider {
                    if self.plans.need[j].fits(self.empty) {
                        self.enqueue(j);
                    } else {
                        self.end(j, End::Failed);
                    }
                    return;
                }
                if ask == Ask::Ec2 {
                    // The driver's RunTask on EC2 placed nothing: it spent
                    // RunTask's limit all the same.
                    if !self.spend(j, Call::RunTaskEc2) {
                        return;
                    }
                    self.jobs[j].ec2_had_no_room = Some(self.jobs[j].dispatches);
                    let no_instances = self.no_instances();
                    self.no_room[environment].saw_no_room(need, no_instances, self.now);
                }
                if let Some(on) = fargate_fallback {
                    if !self.call(j, Call::RunTaskFargate(on.spot)) {
                        return;
                    }
                    self.start_fargate(j, on);
                    if let Some(t) = self.jobs[j].task {
                        self.tasks[t].fallback = true;
                        self.fallbacks.push_back((self.now, t));
                    }
                } else {
                    self.wait_for_capacity(j);
                }
            }
        }
    }

    /// Whether the cluster has no container instance registered (ECS's
    /// "No Container Instances were found in your cluster").
    fn no_instances(&self) -> bool {
        self.live
            .iter()
            .all(|&i| self.instances[i].state == State::Pending)
    }

    /// A draw in [0, 1) for the job's current attempt: the same for every
    /// policy, so that all of them meet the same Fargate Spot weather.
    fn draw(&self, j: usize, salt: u64) -> f64 {
        let key = self.settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (j as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ u64::from(self.jobs[j].dispatches).wrapping_mul(0x94D0_49BB_1331_11EB)
            ^ salt;
        ChaCha8Rng::seed_from_u64(key).random::<f64>()
    }

    /// `WAITING_FOR_CAPACITY`: the message comes back after the driver's
    /// backoff; after berth's longest wait the job fails. berth's driver
    /// wakes the scaler, once for its batch.
    fn wait_for_capacity(&mut self, j: usize) {
        // Until an instance comes for it, the environment's jobs ask EC2
        // first.
        self.no_room[self.jobs[j].environment].expect_room(self.now);
        if self.policy == Policy::Berth && !self.wake_pending {
            self.wake_pending = true;
            self.at(self.now + ms(f::LAMBDA_START_SECONDS), Ev::Wake);
        }
        self.enter_ecs_load(j);
        self.waiting_for_capacity.insert(j);
        let job = &mut self.jobs[j];
        let first = *job.first_wait.get_or_insert(self.now);
        if self.now - first >= u64::from(MAX_CAPACITY_WAIT_SECONDS) * SECOND {
            self.end(j, End::Failed);
            return;
        }
        let backoff = u64::from(capacity_backoff_seconds(job.waits)) * SECOND;
        job.waits += 1;
        self.deliver(j, self.now + backoff + ms(f::SQS_TO_DRIVER_SECONDS));
    }

    fn enter_ecs_load(&mut self, j: usize) {
        if !self.jobs[j].in_ecs_load {
            self.jobs[j].in_ecs_load = true;
            self.ecs_load += self.weight(j);
        }
    }

    /// A job's share of an instance: the larger of its CPU and memory shares.
    fn weight(&self, j: usize) -> f64 {
        let n = self.plans.need[j];
        (f64::from(n.cpu) / f64::from(self.empty.cpu.max(1)))
            .max(f64::from(n.memory) / f64::from(self.empty.memory.max(1)))
    }

    fn end(&mut self, j: usize, end: End) {
        let job = &mut self.jobs[j];
        if job.end.is_some() {
            return;
        }
        job.end = Some(end);
        self.waiting_for_capacity.remove(&j);
        if job.in_ecs_load {
            self.ecs_load -= self.weight(j);
        }
        self.ended += 1;
        self.last_end = self.now;
        self.busy_hours.insert(self.now / (3600 * SECOND));
    }

    // --- Tasks ------------------------------------------------------------

    fn new_task(&mut self, j: usize, place: Place) -> usize {
        self.waiting_for_capacity.remove(&j);
        let t = self.tasks.len();
        self.tasks.push(Task {
            job: j,
            place,
            fallback: false,
            launched: self.now,
            started: None,
            alive: true,
            holding: false,
        });
        self.jobs[j].task = Some(t);
        t
    }

    fn start_lambda(&mut self, j: usize) {
        let t = self.new_task(j, Place::Lambda);
        if !self.settings.limits {
            self.at(self.now + ms(f::LAMBDA_START_SECONDS), Ev::TaskStart(t));
            return;
        }
        self.lambda.queue.push_back(t);
        self.start_queued_invocations();
    }

    /// RunTask on Fargate; on Fargate Spot with no capacity, at once on
    /// Fargate on demand (as the driver does).
    fn start_fargate(&mut self, j: usize, on: OnFargate) {
        self.enter_ecs_load(j);
        self.ecs_tasks += 1;
        let mut spot = on.spot;
        if spot && self.draw(j, 1) < self.settings.fargate_spot_shortfall {
            self.fargate_spot_shortfalls += 1;
            spot = false;
        }
        let t = self.new_task(j, Place::Fargate(on.size, spot));
        let delay = match self.policy {
            Policy::AwsBatchFargate => {
                ms(f::BATCH_JOB_START_SECONDS) + ms(f::FARGATE_TASK_START_SECONDS)
            }
            _ => ms(f::FARGATE_TASK_START_SECONDS),
        };
        self.at(self.now + delay, Ev::TaskStart(t));
    }

    fn start_ec2(&mut self, j: usize, i: usize, delay: u64) {
        self.enter_ecs_load(j);
        self.ecs_tasks += 1;
        if self.policy == Policy::Berth {
            // The instance's room changed: its event reaches ecs-runner.
            self.instance_events += 1;
        }
        let t = self.new_task(j, Place::Ec2(i));
        let need = self.plans.need[j];
        let inst = &mut self.instances[i];
        inst.free.take(need);
        if inst.tasks.is_empty() {
            inst.busy_since = Some(self.now);
        }
        inst.tasks.push(t);
        inst.idle_since = None;
        self.at(self.now + delay, Ev::TaskStart(t));
    }

    fn task_start(&mut self, t: usize) {
        if !self.tasks[t].alive {
            return;
        }
        self.tasks[t].started = Some(self.now);
        let job = self.tasks[t].job;
        self.running[route_index(self.tasks[t].place)] += 1;
        self.jobs[job].first_start.get_or_insert(self.now);
        let spec = &self.trace.jobs[job];
        let run_s = spec.duration_s.min(f64::from(spec.timeout_s));
        let run_ms = (run_s * 1000.0).round() as u64;
        let rate = self.settings.fargate_spot_interruptions_per_hour;
        if let (Place::Fargate(_, true), true) = (self.tasks[t].place, rate > 0.0) {
            // Exponential time to Fargate Spot taking the task back.
            let hours = -(1.0 - self.draw(job, 2)).ln() / rate;
            let reclaim_ms = (hours * 3_600_000.0) as u64;
            if reclaim_ms < run_ms {
                self.at(self.now + reclaim_ms, Ev::FargateReclaim(t));
                return;
            }
        }
        self.at(self.now + run_ms, Ev::TaskEnd(t));
    }

    /// Fargate Spot stopped the task (SpotInterruption): it is paid to
    /// here, and the job goes back as ecs-runner sends it back.
    fn fargate_reclaim(&mut self, t: usize) {
        if !self.tasks[t].alive {
            return;
        }
        self.stop_task(t);
        self.interrupted += 1;
        self.interrupted_job(self.tasks[t].job);
    }

    fn task_end(&mut self, t: usize) {
        if !self.tasks[t].alive {
            return;
        }
        self.stop_task(t);
        let j = self.tasks[t].job;
        let spec = &self.trace.jobs[j];
        self.jobs[j].ran_on = Some(match self.tasks[t].place {
            Place::Ec2(_) => Route::Ec2,
            Place::Fargate(_, false) => Route::Fargate,
            Place::Fargate(_, true) => Route::FargateSpot,
            Place::Lambda => Route::Lambda,
        });
        let end = if spec.duration_s > f64::from(spec.timeout_s) {
            End::TimedOut
        } else {
            self.runs
                .entry(spec.definition.clone())
                .or_default()
                .record(spec.duration_s);
            End::Succeeded
        };
        self.end(j, end);
    }

    /// Stops a task and pays for what it ran; frees its room.
    fn stop_task(&mut self, t: usize) {
        let task = &mut self.tasks[t];
        task.alive = false;
        if std::mem::take(&mut task.holding) {
            self.lambda.release();
            if !self.lambda.queue.is_empty() && self.lambda_poll_at.is_none() {
                self.lambda_poll_at = Some(self.now);
                self.at(self.now, Ev::LambdaPoll);
            }
        }
        let task = &self.tasks[t];
        let place = task.place;
        let job = task.job;
        let run_s = task.started.map_or(0.0, |s| (self.now - s) as f64 / 1000.0);
        let launched = task.launched;
        if task.started.is_some() {
            self.running[route_index(place)] -= 1;
        }
        self.jobs[job].task = None;
        // What the attempt cost, as the runtime prices it.
        let prices = &self.settings.prices;
        let spec = &self.trace.jobs[job];
        let started = self.tasks[t].started;
        let mut pull_started = None;
        let usage = match place {
            Place::Lambda => started.map(|_| Usage::Lambda {
                memory_mib: prices.lambda_memory(spec.cpu, spec.memory),
                arch: Arch::X86_64,
                seconds: run_s,
            }),
            Place::Fargate(size, spot) => {
                let from =
                    launched + ms(f::FARGATE_TASK_START_SECONDS) - ms(f::FARGATE_PULL_SECONDS);
                pull_started = Some(from);
                Some(Usage::Fargate {
                    size,
                    arch: Arch::X86_64,
                    spot,
                    billed_seconds: attempt::fargate_billed_seconds(
                        prices,
                        Some(from as i64),
                        None,
                        self.now as i64,
                    ),
                })
            }
            Place::Ec2(i) => {
                let (inst, need) = (&self.instances[i], self.plans.need[job]);
                let room = inst.kind.registered();
                Some(Usage::Ec2 {
                    instance_type: inst.kind.name.to_owned(),
                    spot: inst.spot,
                    share: attempt::share(need.cpu, need.memory, room.cpu, room.memory),
                    seconds: run_s,
                })
            }
        };
        if let Some(usage) = usage {
            let usd = attempt::price(prices, &usage).map_or(0.0, |c| c.usd);
            match place {
                Place::Lambda => self.cost.lambda_jobs += usd,
                // An instance is paid for whole, at its end.
                Place::Ec2(_) => {}
                Place::Fargate(..) => self.cost.fargate += usd,
            }
            self.attempts.push(PricedAttempt {
                job,
                launched_ms: launched,
                pull_started_ms: pull_started,
                started_ms: started,
                stopped_ms: self.now,
                usage,
                usd,
            });
        }
        match place {
            Place::Lambda | Place::Fargate(..) => {}
            Place::Ec2(i) => {
                let need = self.plans.need[job];
                let now = self.now;
                let inst = &mut self.instances[i];
                inst.free.give(need);
                if let Some(pos) = inst.tasks.iter().position(|&x| x == t) {
                    inst.tasks.swap_remove(pos);
                }
                if inst.tasks.is_empty() {
                    if let Some(since) = inst.busy_since.take() {
                        inst.busy_ms += now - since;
                    }
                    inst.idle_since = Some(now);
                }
                self.release_onto(i);
            }
        }
    }

    // --- Instances --------------------------------------------------------

    /// An instance of the group's first type; `counted`: a scale-out (not a
    /// replacement or the starting capacity).
    fn launch(&mut self, counted: bool) -> usize {
        let i = self.instances.len();
        let spot = true;
        self.instances.push(Instance {
            kind: self.launch_type,
            spot,
            launched: self.now,
            in_service: None,
            terminated: None,
            state: State::Pending,
            free: self.launch_type.registered(),
            tasks: Vec::new(),
            busy_since: None,
            busy_ms: 0,
            idle_since: None,
        });
        self.live.push(i);
        self.at(
            self.now + ms(f::INSTANCE_IN_SERVICE_SECONDS),
            Ev::InService(i),
        );
        self.at(
            self.now + ms(f::INSTANCE_REGISTERED_SECONDS),
            Ev::Registered(i),
        );
        let per_hour = self.settings.spot_interruptions_per_month / f::HOURS_PER_MONTH.value;
        if let (true, Ok(d)) = (spot && per_hour > 0.0, Exp::new(per_hour)) {
            let hours: f64 = d.sample(&mut self.rng);
            let warn_at = self.now + (hours * 3_600_000.0) as u64;
            self.at(warn_at, Ev::SpotWarning(i));
        }
        if counted {
            self.scale_outs += 1;
            self.scale_events.push(ScaleEvent {
                at_ms: self.now,
                kind: ScaleKind::Launch,
                load: self.ecs_load,
            });
        }
        i
    }

    fn registered(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        if inst.state != State::Pending {
            return;
        }
        inst.state = State::Active;
        inst.idle_since = Some(self.now);
        if matches!(self.policy, Policy::CapacityProvider | Policy::AwsBatch) {
            self.place_queue();
        }
        self.release_onto(i);
    }

    fn spot_warning(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        if inst.state == State::Terminated {
            return;
        }
        // The ECS agent drains a Spot instance on its interruption notice
        // (ECS_ENABLE_SPOT_INSTANCE_DRAINING in template.yaml).
        inst.state = State::Draining;
        self.at(self.now + ms(f::SPOT_WARNING_SECONDS), Ev::SpotReclaim(i));
    }

    fn spot_reclaim(&mut self, i: usize) {
        if self.instances[i].state == State::Terminated {
            return;
        }
        self.terminate(i, false);
        if self.has_group() {
            self.awaiting_replacement += 1;
            self.reconcile();
        }
    }

    /// Terminates an instance; its tasks end with it and go back.
    fn terminate(&mut self, i: usize, by_scale_in: bool) {
        let now = self.now;
        let inst = &mut self.instances[i];
        inst.state = State::Terminated;
        inst.terminated = Some(now);
        if let Some(since) = inst.busy_since.take() {
            inst.busy_ms += now - since;
        }
        let tasks = std::mem::take(&mut inst.tasks);
        self.live.retain(|&x| x != i);
        if by_scale_in {
            self.scale_ins += 1;
            self.scale_events.push(ScaleEvent {
                at_ms: now,
                kind: ScaleKind::Terminate,
                load: self.ecs_load,
            });
        }
        for t in tasks {
            self.stop_task(t);
            let j = self.tasks[t].job;
            if by_scale_in {
                self.killed_by_scale_in += 1;
            } else {
                self.interrupted += 1;
            }
            self.interrupted_job(j);
        }
        self.instances[i].idle_since = None;
    }

    /// A job whose instance went away under it: berth-core decides, as
    /// ecs-runner does, whether it runs again or fails.
    fn interrupted_job(&mut self, j: usize) {
        let outcome = stop::classify(&EcsStop {
            stop_code: Some("TerminationNotice"),
            stopped_reason: Some("Host EC2 (instance i-0) terminated."),
            ..EcsStop::default()
        });
        let tries = Tries {
            failures: 0,
            max_attempts: 1,
            interruptions: self.jobs[j].interruptions,
            max_interruptions: stop::DEFAULT_MAX_INTERRUPTIONS,
        };
        self.jobs[j].interruptions += 1;
        match stop::next(outcome, tries) {
            Next::Retry { delay_seconds, .. } => {
                let delay = u64::from(delay_seconds) * SECOND;
                match self.policy {
                    // AWS Batch retries it too (a retry strategy with
                    // enough attempts is assumed).
                    Policy::AwsBatch => self.enqueue(j),
                    _ => self.deliver(j, self.now + delay + ms(f::REQUEUE_SECONDS)),
                }
            }
            _ => self.end(j, End::Failed),
        }
    }

    fn has_group(&self) -> bool {
        matches!(
            self.policy,
            Policy::Berth
                | Policy::SchedulableAlarms
                | Policy::TwoAlarms
                | Policy::CapacityProvider
                | Policy::AlwaysOn
        )
    }

    fn find_room(&mut self, j: usize) -> Option<usize> {
        let need = self.plans.need[j];
        let instances = &self.instances;
        // A job that may run elsewhere is kept off GPU instances (berth's
        // placement constraint): taking free room there would keep a dear
        // instance up.
        let elsewhere = self.plans.fargate_anywhere[j].is_some() || self.plans.lambda_anywhere[j];
        let off_gpus = self.policy == Policy::Berth && need.gpu == 0 && elsewhere;
        let candidates = self
            .live
            .iter()
            .filter(|&&i| instances[i].state == State::Active)
            .filter(|&&i| !(off_gpus && instances[i].kind.registered().gpu > 0))
            .map(|&i| (i, instances[i].free));
        let rng = &mut self.rng;
        ecs::place(candidates, need, self.strategy, |n| rng.random_range(0..n))
    }

    // --- Auto Scaling -----------------------------------------------------

    /// Launches or terminates until the group has its desired capacity.
    fn reconcile(&mut self) {
        let count = self.live.len() as u32;
        if count < self.desired {
            for _ in count..self.desired {
                // RunInstances over its bucket: the group tries again at
                // its next look.
                if self.settings.limits && !self.buckets.run_instances.try_take(self.now) {
                    break;
                }
                let replacement = self.awaiting_replacement > 0;
                self.awaiting_replacement = self.awaiting_replacement.saturating_sub(1);
                self.launch(!replacement);
            }
        } else if count > self.desired {
            self.awaiting_replacement = 0;
            for _ in self.desired..count {
                let members: Vec<Member> = self
                    .live
                    .iter()
                    .map(|&i| Member {
                        id: i,
                        launched: self.instances[i].launched,
                        protected: self.protected(i),
                    })
                    .collect();
                let rng = &mut self.rng;
                match autoscaling::choose(&members, self.termination, self.now, |n| {
                    rng.random_range(0..n)
                }) {
                    Some(i) => self.terminate(i, true),
                    None => break,
                }
            }
        }
    }

    /// Scale-in protection: ECS's managed termination protection keeps
    /// instances with tasks for the capacity provider.
    fn protected(&self, i: usize) -> bool {
        self.policy == Policy::CapacityProvider && !self.instances[i].tasks.is_empty()
    }

    fn warmed(&self) -> (u32, bool) {
        let mut warmed = 0;
        for &i in &self.live {
            let done = self.instances[i]
                .in_service
                .is_some_and(|s| s + self.warmup_ms <= self.now);
            warmed += u32::from(done);
        }
        (warmed, warmed < self.live.len() as u32)
    }

    fn tick(&mut self) {
        self.minutes += 1;
        let schedulable = self.schedulable_containers();
        let reservation = self.reservation();
        let cpr = self.capacity_provider_reservation();
        self.metric = match self.policy {
            Policy::Berth | Policy::SchedulableAlarms => schedulable,
            Policy::TwoAlarms => reservation.map(|(cpu, _)| cpu),
            Policy::CapacityProvider => cpr,
            Policy::AwsBatch | Policy::AwsBatchFargate => Some(self.queue.len() as f64),
            _ => None,
        };
        let (warmed, warming) = self.warmed();
        let mut actions = Vec::new();
        for (alarm, watched, action) in &mut self.alarms {
            let datapoint = match watched {
                Watched::SchedulableContainers => schedulable,
                Watched::CpuReservation => reservation.map(|(cpu, _)| cpu),
                Watched::MemoryReservation => reservation.map(|(_, mem)| mem),
                Watched::CapacityProviderReservation => cpr,
            };
            if alarm.evaluate(datapoint) == AlarmState::Alarm {
                actions.push(*action);
            }
        }
        for action in actions {
            self.desired = match action {
                Action::StepOut => autoscaling::scale_out(self.desired, warmed, 1, self.max),
                Action::StepIn => autoscaling::scale_in(self.desired, 1, self.min, warming),
                Action::TrackOut => self.desired.max(self.instances_needed().min(self.max)),
                Action::TrackIn if !warming => {
                    self.desired.min(self.instances_needed().max(self.min))
                }
                Action::TrackIn => self.desired,
            };
            self.reconcile();
        }
        if self.policy == Policy::Berth && self.scaler_on {
            self.scaler_runs += 1;
            if self.berth_scaler() {
                // At rest: the schedule goes off until the driver wakes it.
                self.scaler_on = false;
            }
        }
        if self.has_group() {
            self.reconcile();
        }
        if self.scales_on_schedulable() && (!self.live.is_empty() || self.policy != Policy::Berth) {
            self.metric_minutes += 1;
            self.metric_hours.insert(self.now / (3600 * SECOND));
        }
        self.sample();
        let done = self.ended == self.jobs.len() && self.submitted == self.jobs.len();
        if done && self.horizon.is_none() {
            let span = (self.trace.span_s * 1000.0) as u64;
            let h = span.max(self.last_end + 30 * MINUTE + MINUTE);
            self.horizon = Some(h.div_ceil(MINUTE) * MINUTE);
        }
        self.at(self.now + ms(f::CAPACITY_METRIC_PERIOD_SECONDS), Ev::Tick);
    }

    /// The capacity metric's run with berth's scaler: berth-core decides,
    /// the group acts.
    /// Whether jobs of some definition of the trace, on Fargate at the price
    /// the next would pay, could fill an instance that costs less, as the
    /// capacity metric asks of the registered definitions.
    fn could_pay(&self) -> bool {
        let prices = &self.settings.prices;
        let elsewhere = scaling::elsewhere(
            self.plans.kinds.iter().filter(|k| k.fargate_allowed),
            prices,
            self.settings.fargate_spot,
        );
        scaling::could_pay(&elsewhere, &self.types, prices)
    }

    /// Returns whether it is at rest.
    fn berth_scaler(&mut self) -> bool {
        let window = u64::from(self.settings.fallback_window_s) * SECOND;
        while self
            .fallbacks
            .front()
            .is_some_and(|(at, _)| *at + window < self.now)
        {
            self.fallbacks.pop_front();
        }
        let members: Vec<ScalingMember<usize>> = self
            .live
            .iter()
            .map(|&i| {
                let inst = &self.instances[i];
                ScalingMember {
                    id: i,
                    state: match inst.state {
                        State::Pending => MemberState::Launching,
                        State::Active => MemberState::Active,
                        State::Retiring => MemberState::Retiring,
                        _ => MemberState::Draining,
                    },
                    free: inst.free,
                    tasks: inst.tasks.len() as u32,
                    idle_since: inst.idle_since,
                    launched: Some(inst.launched),
                }
            })
            .collect();
        let mut waiting: HashMap<Room, u32> = HashMap::new();
        for &j in &self.waiting_for_capacity {
            *waiting.entry(self.plans.need[j]).or_default() += 1;
        }
        // Still on Fargate, priced as the next job like each would pay
        // (berth-core's `elsewhere`, as the capacity metric prices them).
        let on_fargate = self.fallbacks.iter().filter_map(|&(_, t)| {
            let task = &self.tasks[t];
            (task.alive && matches!(task.place, Place::Fargate(..)))
                .then(|| &self.plans.kinds[self.plans.kind[task.job]])
        });
        let fell_back = scaling::elsewhere(
            on_fargate,
            &self.settings.prices,
            self.settings.fargate_spot,
        );
        let demand = Demand {
            waiting: waiting.into_iter().collect(),
            fell_back,
        };
        let prices = &self.settings.prices;
        let config = scaling::Config {
            min: self.min,
            max: self.max,
            quiet_ms: u64::from(self.settings.scale_in_after_s) * SECOND,
            headroom: self.settings.headroom,
            prices,
        };
        let plan = scaling::plan(
            self.now,
            &members,
            &demand,
            &self.types,
            self.largest,
            config,
        );
        for i in plan.terminate {
            self.terminate(i, true);
            self.desired = self.desired.saturating_sub(1);
        }
        for i in plan.drain {
            self.instances[i].state = State::Retiring;
        }
        for i in plan.reactivate {
            self.instances[i].state = State::Active;
        }
        self.desired += plan.add;
        // The group launches the cheapest of the types the plan chose.
        if let Some(kind) = plan.types.first().and_then(|n| InstanceType::find(n)) {
            self.launch_type = kind;
        }
        plan.at_rest && !self.could_pay
    }

    fn scales_on_schedulable(&self) -> bool {
        matches!(self.policy, Policy::Berth | Policy::SchedulableAlarms)
    }

    /// `SchedulableContainers`, by berth-core, over the cluster's instances
    /// as ECS describes them.
    fn schedulable_containers(&self) -> Option<f64> {
        if !matches!(self.policy, Policy::Berth | Policy::SchedulableAlarms) {
            return None;
        }
        let largest = self.largest?;
        let instances: Vec<ContainerInstance> = self
            .live
            .iter()
            .map(|&i| {
                let inst = &self.instances[i];
                ContainerInstance {
                    status: match inst.state {
                        State::Active => InstanceStatus::Active,
                        State::Draining | State::Retiring => InstanceStatus::Draining,
                        _ => InstanceStatus::Other,
                    },
                    agent_connected: inst.state != State::Pending,
                    remaining: inst.free.resources(),
                }
            })
            .collect();
        Some(capacity::schedulable_containers(&instances, largest) as f64)
    }

    /// ECS managed scaling's CapacityProviderReservation: M / N.
    fn capacity_provider_reservation(&self) -> Option<f64> {
        if self.policy != Policy::CapacityProvider {
            return None;
        }
        let n = self.live.len() as u32;
        let m = self.instances_needed();
        Some(match (n, m) {
            (0, 0) => f::MANAGED_SCALING_TARGET_PERCENT.value,
            (0, _) => f::MANAGED_SCALING_FROM_ZERO_PERCENT.value,
            (n, m) => f64::from(m) / f64::from(n) * 100.0,
        })
    }

    /// ECS managed scaling's M: with tasks waiting in PROVISIONING, the
    /// instances there are plus those the waiting tasks need; else the
    /// instances running a task.
    fn instances_needed(&self) -> u32 {
        let n = self.live.len() as u32;
        if self.queue.is_empty() {
            return self
                .live
                .iter()
                .filter(|&&i| !self.instances[i].tasks.is_empty())
                .count() as u32;
        }
        let room: Vec<Room> = self
            .live
            .iter()
            .filter(|&&i| matches!(self.instances[i].state, State::Active | State::Pending))
            .map(|&i| self.instances[i].free)
            .collect();
        n + scaling::instances_needed(&self.queue.needs(), &room, self.empty)
    }

    /// Two alarms: ECS's CPUReservation and MemoryReservation for the
    /// cluster, evaluated here since they are two datapoints a minute.
    fn reservation(&self) -> Option<(f64, f64)> {
        if self.policy != Policy::TwoAlarms {
            return None;
        }
        let active: Vec<&Instance> = self
            .live
            .iter()
            .map(|&i| &self.instances[i])
            .filter(|i| matches!(i.state, State::Active | State::Draining))
            .collect();
        if active.is_empty() {
            return None;
        }
        let total = active.len() as f64;
        let cpu: f64 = active
            .iter()
            .map(|i| f64::from(self.empty.cpu - i.free.cpu))
            .sum();
        let mem: f64 = active
            .iter()
            .map(|i| f64::from(self.empty.memory - i.free.memory))
            .sum();
        Some((
            cpu / (total * f64::from(self.empty.cpu)) * 100.0,
            mem / (total * f64::from(self.empty.memory)) * 100.0,
        ))
    }

    fn sample(&mut self) {
        let metric = self.metric;
        let running: u32 = self.running.iter().sum();
        let waiting = (self.submitted - self.ended) as u32 - running;
        self.series.push(Sample {
            t_s: self.now as f64 / 1000.0,
            instances: self.live.len() as u32,
            ec2_tasks: self.running[0],
            fargate_tasks: self.running[1],
            lambda_tasks: self.running[2],
            waiting,
            metric,
        });
    }

    // --- Queues: PROVISIONING and RUNNABLE ---------------------------------

    fn place_pass(&mut self) {
        match self.policy {
            Policy::CapacityProvider => {
                self.place_queue();
                self.at(self.now + ms(f::PROVISIONING_RETRY_SECONDS), Ev::PlacePass);
            }
            Policy::AwsBatch => {
                self.place_queue();
                self.batch_scale();
                self.at(self.now + ms(f::BATCH_SCHEDULER_SECONDS), Ev::PlacePass);
            }
            Policy::AwsBatchFargate => {
                while let Some(j) = self.queue.order.pop_front() {
                    self.queue.left(self.plans.need[j]);
                    self.jobs[j].queued = false;
                    if let Some(size) = self.plans.fargate_anywhere[j] {
                        self.start_fargate(j, OnFargate { size, spot: false });
                    }
                }
                self.at(self.now + ms(f::BATCH_SCHEDULER_SECONDS), Ev::PlacePass);
            }
            _ => {}
        }
    }

    /// Places waiting jobs in order; a job that does not fit does not hold
    /// back smaller ones behind it.
    fn place_queue(&mut self) {
        let delay = match self.policy {
            Policy::AwsBatch => ms(f::BATCH_JOB_START_SECONDS),
            _ => ms(f::EC2_TASK_START_SECONDS),
        };
        let kinds = self.queue.counts.len();
        let mut failed: Vec<Room> = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        while let Some(j) = self.queue.order.pop_front() {
            let need = self.plans.need[j];
            if failed.contains(&need) {
                kept.push_back(j);
                continue;
            }
            match self.find_room(j) {
                Some(i) => {
                    self.queue.left(need);
                    self.jobs[j].queued = false;
                    self.start_ec2(j, i, delay);
                }
                None => {
                    failed.push(need);
                    kept.push_back(j);
                    // Once no kind of room waited for is left, the rest
                    // stays as it is.
                    if failed.len() == kinds {
                        kept.extend(self.queue.order.drain(..));
                    }
                }
            }
        }
        self.queue.order = kept;
    }

    /// AWS Batch sizes its compute environment for the RUNNABLE jobs and
    /// lets instances go once idle.
    fn batch_scale(&mut self) {
        if !self.queue.is_empty() {
            let needs = self.queue.needs();
            let room: Vec<Room> = self
                .live
                .iter()
                .filter(|&&i| self.instances[i].state == State::Pending)
                .map(|&i| self.instances[i].free)
                .collect();
            let more = scaling::instances_needed(&needs, &room, self.empty);
            let open = self.max.saturating_sub(self.live.len() as u32);
            for _ in 0..more.min(open) {
                self.launch(true);
            }
        }
        let idle_for = ms(f::BATCH_IDLE_SCALE_DOWN_SECONDS);
        let idle: Vec<usize> = self
            .live
            .iter()
            .copied()
            .filter(|&i| {
                let inst = &self.instances[i];
                inst.state == State::Active
                    && inst.idle_since.is_some_and(|s| s + idle_for <= self.now)
            })
            .collect();
        for i in idle {
            self.terminate(i, true);
        }
    }

    // --- The outcome --------------------------------------------------------

    fn outcome(mut self) -> Outcome {
        let end = self.now;
        let hours = end as f64 / 3_600_000.0;
        let (mut instance_ms, mut idle_ms) = (0u64, 0u64);
        let mut peak = 0;
        for inst in &self.instances {
            let until = inst.terminated.unwrap_or(end);
            let life = until.saturating_sub(inst.launched);
            let busy = inst.busy_ms + inst.busy_since.map_or(0, |s| until.saturating_sub(s));
            instance_ms += life;
            idle_ms += life.saturating_sub(busy);
            let (ec2, ebs) = cost::instance(
                &self.settings.prices,
                inst.kind.name,
                inst.spot,
                life as f64 / 1000.0,
            );
            self.cost.ec2 += ec2;
            self.cost.ebs += ebs;
        }
        for s in &self.series {
            peak = peak.max(s.instances);
        }
        // Tasks still running at the end are paid to the end.
        for t in 0..self.tasks.len() {
            if self.tasks[t].alive {
                self.stop_task(t);
            }
        }
        self.berth_running_costs(hours);

        let mut waits: Vec<f64> = Vec::new();
        let mut ec2_only_waits: Vec<f64> = Vec::new();
        let (mut ok, mut timed_out, mut failed, mut unrunnable) = (0, 0, 0, 0);
        let (mut unfinished, mut lost) = (0, 0);
        let mut routes = [0usize; 4];
        for (i, job) in self.jobs.iter().enumerate() {
            match job.end {
                Some(End::Succeeded) => ok += 1,
                Some(End::TimedOut) => timed_out += 1,
                Some(End::Failed) => failed += 1,
                Some(End::Unrunnable) => unrunnable += 1,
                // Waiting, or on its way: the run gave up on it.
                None if job.queued || job.pending > 0 || job.task.is_some() => unfinished += 1,
                // Nowhere at all: dropped.
                None => lost += 1,
            }
            if let Some(start) = job.first_start {
                let submit = (self.trace.jobs[i].submit_s * 1000.0).round() as u64;
                let wait = start.saturating_sub(submit) as f64 / 1000.0;
                waits.push(wait);
                if self.plans.fargate_anywhere[i].is_none() && !self.plans.lambda_anywhere[i] {
                    ec2_only_waits.push(wait);
                }
            }
            match job.ran_on {
                Some(Route::Ec2) => routes[0] += 1,
                Some(Route::Fargate) => routes[1] += 1,
                Some(Route::Lambda) => routes[2] += 1,
                Some(Route::FargateSpot) => routes[3] += 1,
                None => {}
            }
        }
        waits.sort_by(f64::total_cmp);
        ec2_only_waits.sort_by(f64::total_cmp);
        let ran: usize = routes.iter().sum();
        let after = self.last_end + 30 * MINUTE;
        let at_rest = self
            .series
            .iter()
            .find(|s| s.t_s * 1000.0 >= after as f64)
            .map_or(0, |s| s.instances);
        Outcome {
            policy: self.policy.name().into(),
            trace: self.trace.name.clone(),
            cost_usd: self.cost.total(),
            cost: self.cost,
            wait_p50_s: report::quantile(&waits, 0.5),
            wait_p95_s: report::quantile(&waits, 0.95),
            wait_max_s: waits.last().copied().unwrap_or(0.0),
            ec2_only_wait_p95_s: (!ec2_only_waits.is_empty())
                .then(|| report::quantile(&ec2_only_waits, 0.95)),
            instance_hours: instance_ms as f64 / 3_600_000.0,
            idle_instance_hours: idle_ms as f64 / 3_600_000.0,
            scale_events: self.scale_outs + self.scale_ins,
            scale_outs: self.scale_outs,
            scale_ins: self.scale_ins,
            flaps: report::flaps(&self.scale_events),
            tasks_killed_by_scale_in: self.killed_by_scale_in,
            tasks_interrupted: self.interrupted,
            fargate_share: if ran == 0 {
                0.0
            } else {
                (routes[1] + routes[3]) as f64 / ran as f64
            },
            jobs: self.jobs.len(),
            jobs_succeeded: ok,
            jobs_timed_out: timed_out,
            jobs_failed: failed,
            jobs_unrunnable: unrunnable,
            jobs_unfinished: unfinished,
            jobs_lost: lost,
            runs_ec2: routes[0],
            runs_fargate: routes[1],
            runs_lambda: routes[2],
            runs_fargate_spot: routes[3],
            fargate_spot_shortfalls: self.fargate_spot_shortfalls,
            capacity_metric_runs: match self.policy {
                Policy::Berth => self.scaler_runs,
                Policy::SchedulableAlarms => self.minutes,
                _ => 0,
            },
            compute_vs_lower_bound: None,
            peak_instances: peak,
            instances_30_min_after_last_job: at_rest,
            always_on_instances: (self.policy == Policy::AlwaysOn).then_some(self.min),
            jobs_priced_usd: self.attempts.iter().map(|a| a.usd).sum(),
            attempts: std::mem::take(&mut self.attempts),
            metric_name: match self.policy {
                Policy::Berth | Policy::SchedulableAlarms => "SchedulableContainers",
                Policy::TwoAlarms => "CPUReservation %",
                Policy::CapacityProvider => "CapacityProviderReservation %",
                Policy::AwsBatch | Policy::AwsBatchFargate => "RUNNABLE jobs",
                _ => "",
            },
            series: std::mem::take(&mut self.series),
            pace: self.pace(),
        }
    }

    /// What berth's queue, functions, job store and CloudWatch cost.
    fn berth_running_costs(&mut self, hours: f64) {
        let minutes = self.minutes as f64;
        let busy_hours = self.busy_hours.len() as f64;
        let alarms = self.alarms.len() as f64;
        let on_schedulable = self.scales_on_schedulable();
        let capacity_metric_runs = match self.policy {
            Policy::Berth => self.scaler_runs as f64,
            Policy::SchedulableAlarms => minutes,
            _ => 0.0,
        };
        let c = &mut self.cost;
        c.cloudwatch += cost::monthly(f::CLOUDWATCH_ALARM_MONTH.value, hours) * alarms;
        if !self.policy.uses_berth() {
            return;
        }
        let jobs = self.jobs.len() as f64;
        let dispatches = jobs + self.extra_dispatches as f64;
        // Each ECS task's RUNNING and STOPPED events; with berth, the
        // container instance events too (each reads the jobs waiting).
        let events = 2.0 * self.ecs_tasks as f64 + self.instance_events as f64;
        // The sweep runs every minute; the capacity metric with the seed's
        // alarms every minute, berth's while its schedule is on and when the
        // driver wakes it.
        let cron = minutes + capacity_metric_runs;
        c.functions += cost::function(dispatches, f::DRIVER_SECONDS_PER_JOB.value)
            + cost::function(events, f::ECS_RUNNER_SECONDS_PER_EVENT.value)
            + cost::function(cron, f::CRON_SECONDS.value);
        c.requests += (jobs * f::SQS_REQUESTS_PER_JOB.value
            + 2.0 * self.extra_dispatches as f64
            + minutes * f::SQS_POLLS_PER_MINUTE.value)
            * f::SQS_REQUEST.value
            + (jobs * f::DYNAMODB_WRITES_PER_JOB.value + 2.0 * self.extra_dispatches as f64)
                * f::DYNAMODB_WRITE_UNIT.value
            + (dispatches * f::DYNAMODB_READS_PER_JOB.value + self.instance_events as f64)
                * f::DYNAMODB_READ_UNIT.value;
        let invocations = dispatches + events + cron;
        c.cloudwatch += invocations * f::LOG_BYTES_PER_INVOCATION.value / 1e9
            * f::CLOUDWATCH_LOGS_GB.value
            + cost::monthly(f::CLOUDWATCH_DASHBOARD_MONTH.value, hours)
            + cost::monthly(f::CLOUDWATCH_ALARM_MONTH.value, hours) * f::BERTH_ALARMS.value
            + cost::monthly(f::CLOUDWATCH_METRIC_MONTH.value, busy_hours)
                * f::EMF_METRICS_WHILE_BUSY.value;
        if on_schedulable {
            // SchedulableContainers and (berth's scaler)
            // JobsWaitingForCapacity, in the hours they are published
            // (berth's scaler: while the cluster has instances).
            let metric_hours = self.metric_hours.len() as f64;
            c.cloudwatch += cost::monthly(f::CLOUDWATCH_METRIC_MONTH.value, metric_hours) * 2.0
                + self.metric_minutes as f64 * f::CLOUDWATCH_PUT_METRIC_DATA.value;
        }
    }
}

fn route_index(place: Place) -> usize {
    match place {
        Place::Ec2(_) => 0,
        Place::Fargate(..) => 1,
        Place::Lambda => 2,
    }
}

/// Each policy draws from its own stream of the seed.
fn policy_salt(policy: Policy) -> u64 {
    (policy as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
