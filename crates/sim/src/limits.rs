//! AWS's rate limits as the simulator meets them: token buckets for the
//! calls and launches AWS meters (each figure in [`crate::figures`] with its
//! source), Lambda's concurrency and its pace of new execution
//! environments, the SQS trigger's ramp of concurrent driver batches, and
//! the SDK's own retries of a throttled call.
//!
//! [`floor`] is the least time the limits allow a set of launches: each
//! job launched, in submission order, at the first moment every limit on
//! its route lets it. No policy can launch the jobs sooner.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use berth_core::Route;

use crate::figures as f;

/// What counts as a whole token (the refill's float sums fall short of 1 by
/// rounding).
const WHOLE: f64 = 1.0 - 1e-9;

/// A token bucket: `capacity` tokens, refilled at `per_s` a second, full
/// at the start (a quiet account). Times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    capacity: f64,
    per_s: f64,
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    pub fn new(capacity: f64, per_s: f64) -> Self {
        Self {
            capacity,
            per_s,
            tokens: capacity,
            at_ms: 0,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        if now_ms > self.at_ms {
            let added = (now_ms - self.at_ms) as f64 / 1000.0 * self.per_s;
            self.tokens = (self.tokens + added).min(self.capacity);
            self.at_ms = now_ms;
        }
    }

    /// Takes a token at `now_ms` if there is one.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens >= WHOLE {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Whether a token is there at `now_ms`, taking none.
    pub fn has(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= WHOLE
    }

    /// The first moment from `now_ms` at which a token is there.
    pub fn ready_at(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        if self.tokens >= WHOLE || self.per_s <= 0.0 {
            return now_ms;
        }
        let wait_ms = ((1.0 - self.tokens) / self.per_s * 1000.0).ceil() as u64;
        now_ms + wait_ms.max(1)
    }
}

/// The limits a launch meets, by what the driver calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// RunTask on the cluster's instances.
    RunTaskEc2,
    /// RunTask on Fargate; on Fargate Spot when `true`.
    RunTaskFargate(bool),
    /// An asynchronous Invoke: Lambda queues it and starts it as its
    /// concurrency and its pace of new environments let it.
    Invoke,
}

impl Call {
    pub fn of(route: Route) -> Self {
        match route {
            Route::Ec2 => Self::RunTaskEc2,
            Route::Fargate => Self::RunTaskFargate(false),
            Route::FargateSpot => Self::RunTaskFargate(true),
            Route::Lambda => Self::Invoke,
        }
    }
}

/// The account's buckets, as a burst finds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// RunTask calls (one task a call, as the driver makes them).
    pub run_task: Bucket,
    pub fargate: Bucket,
    pub fargate_spot: Bucket,
    /// The table's writes (the driver's accept and launch claim).
    pub writes: Bucket,
    /// RunInstances (Auto Scaling's launches).
    pub run_instances: Bucket,
    /// Lambda's new execution environments, per function.
    pub new_environments: Bucket,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            run_task: Bucket::new(f::RUN_TASK_BURST.value, f::RUN_TASK_PER_SECOND.value),
            fargate: Bucket::new(
                f::FARGATE_LAUNCH_BURST.value,
                f::FARGATE_LAUNCHES_PER_SECOND.value,
            ),
            fargate_spot: Bucket::new(
                f::FARGATE_LAUNCH_BURST.value,
                f::FARGATE_LAUNCHES_PER_SECOND.value,
            ),
            writes: Bucket::new(
                f::DYNAMODB_NEW_TABLE_WRITES_PER_SECOND.value,
                f::DYNAMODB_NEW_TABLE_WRITES_PER_SECOND.value,
            ),
            run_instances: Bucket::new(
                f::RUN_INSTANCES_BUCKET.value,
                f::RUN_INSTANCES_REFILL_PER_SECOND.value,
            ),
            new_environments: Bucket::new(
                f::LAMBDA_NEW_ENVIRONMENTS_PER_10_SECONDS.value,
                f::LAMBDA_NEW_ENVIRONMENTS_PER_10_SECONDS.value / 10.0,
            ),
        }
    }
}

impl Buckets {
    /// Makes `call` at `now_ms` if its buckets let it (taking their
    /// tokens); an Invoke always passes (Lambda queues it).
    pub fn call(&mut self, call: Call, now_ms: u64) -> bool {
        match call {
            Call::Invoke => true,
            Call::RunTaskEc2 => self.run_task.try_take(now_ms),
            Call::RunTaskFargate(spot) => {
                let launches = if spot {
                    &mut self.fargate_spot
                } else {
                    &mut self.fargate
                };
                // Both or neither: a throttled call launches nothing.
                if self.run_task.has(now_ms) && launches.has(now_ms) {
                    self.run_task.try_take(now_ms) && launches.try_take(now_ms)
                } else {
                    false
                }
            }
        }
    }

    /// The first moment from `now_ms` at which `call` would pass.
    fn ready_at(&mut self, call: Call, now_ms: u64) -> u64 {
        match call {
            Call::Invoke => now_ms,
            Call::RunTaskEc2 => self.run_task.ready_at(now_ms),
            Call::RunTaskFargate(spot) => {
                let launches = if spot {
                    &mut self.fargate_spot
                } else {
                    &mut self.fargate
                };
                self.run_task
                    .ready_at(now_ms)
                    .max(launches.ready_at(now_ms))
            }
        }
    }
}

/// Lambda's side of an asynchronous invoke: an invocation starts when the
/// account's concurrency has room and either an idle environment is there
/// or a new one may be made; otherwise it waits in Lambda's queue, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaPool {
    pub concurrency: u32,
    pub busy: u32,
    pub idle: u32,
    pub queue: VecDeque<usize>,
}

impl Default for LambdaPool {
    fn default() -> Self {
        Self {
            concurrency: f::LAMBDA_CONCURRENCY.value as u32,
            busy: 0,
            idle: 0,
            queue: VecDeque::new(),
        }
    }
}

impl LambdaPool {
    /// Starts one invocation at `now_ms` if the limits let it.
    pub fn try_start(&mut self, buckets: &mut Buckets, now_ms: u64) -> bool {
        if self.busy >= self.concurrency {
            return false;
        }
        if self.idle > 0 {
            self.idle -= 1;
        } else if !buckets.new_environments.try_take(now_ms) {
            return false;
        }
        self.busy += 1;
        true
    }

    /// An invocation ended: its environment stays, idle.
    pub fn release(&mut self) {
        self.busy = self.busy.saturating_sub(1);
        self.idle += 1;
    }
}

/// The driver as Lambda's SQS trigger runs it: up to `batches` batches at
/// once, each of up to 10 messages taking `batch_ms`. The trigger starts
/// with [`f::SQS_TRIGGER_FIRST_BATCHES`] when messages appear after a quiet
/// spell and adds [`f::SQS_TRIGGER_BATCHES_PER_MINUTE`] a minute up to the
/// mapping's `MaximumConcurrency`. Messages are taken in the order they
/// become visible.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverGate {
    max_batches: f64,
    batch_ms: f64,
    /// When the driver is next free to take a message.
    next_ms: f64,
    ramp_from_ms: u64,
}

impl DriverGate {
    pub fn new(max_batches: u32) -> Self {
        Self {
            max_batches: f64::from(max_batches.max(1)),
            batch_ms: f::DRIVER_BATCH_SECONDS.value * 1000.0,
            next_ms: 0.0,
            ramp_from_ms: 0,
        }
    }

    /// When a message visible at `now_ms` is taken by the driver.
    pub fn admit(&mut self, now_ms: u64) -> u64 {
        let now = now_ms as f64;
        // Quiet for a minute: the trigger has scaled back down.
        if now > self.next_ms + 60_000.0 {
            self.ramp_from_ms = now_ms;
        }
        let batches = self.ramped(now_ms);
        let per_message_ms = self.batch_ms / (batches * f::DRIVER_BATCH_SIZE.value);
        let at = self.next_ms.max(now);
        self.next_ms = at + per_message_ms;
        at.ceil() as u64
    }

    /// The batches the trigger runs at once at `now_ms`.
    pub fn batches(&self, now_ms: u64) -> usize {
        self.ramped(now_ms).floor() as usize
    }

    fn ramped(&self, now_ms: u64) -> f64 {
        let minutes = now_ms.saturating_sub(self.ramp_from_ms) as f64 / 60_000.0;
        (f::SQS_TRIGGER_FIRST_BATCHES.value + f::SQS_TRIGGER_BATCHES_PER_MINUTE.value * minutes)
            .min(f::SQS_TRIGGER_MOST_BATCHES.value)
            .min(self.max_batches)
    }
}

/// The SDK's delay before its `retry`-th retry (1, 2) of a throttled call,
/// for a `draw` in [0, 1): the standard mode's exponential backoff with
/// full jitter, from 1 s.
pub fn sdk_retry_ms(retry: u32, draw: f64) -> u64 {
    let base = f::SDK_RETRY_BASE_SECONDS.value * f64::from(1u32 << retry.saturating_sub(1).min(5));
    (base.min(f::SDK_RETRY_MAX_SECONDS.value) * draw.clamp(0.0, 1.0) * 1000.0) as u64
}

/// One job for [`floor`]: when its message reaches the driver, the call
/// that launches it, and for an invocation how long it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Launch {
    pub ready_ms: u64,
    pub call: Call,
    pub run_ms: u64,
}

/// The least time from the first job's `ready_ms` by which the limits let
/// every one of `launches` launch (an ECS task's RunTask answered, an
/// invocation started), each at the first moment its limits allow, in the
/// order they are ready: ECS's launches in one line, Lambda's queue in
/// another. In milliseconds; 0 for none.
pub fn floor(launches: &[Launch]) -> u64 {
    let mut order: Vec<&Launch> = launches.iter().collect();
    order.sort_by_key(|l| l.ready_ms);
    let Some(first) = order.first().map(|l| l.ready_ms) else {
        return 0;
    };
    let mut buckets = Buckets::default();
    let mut pool = LambdaPool::default();
    // When each busy invocation ends.
    let mut ends: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut last = first;
    // The last launch of each line: none goes before it.
    let (mut invoked, mut ran) = (first, first);
    for l in order {
        let at = match l.call {
            Call::Invoke => {
                let mut t = l.ready_ms.max(invoked);
                loop {
                    while ends.peek().is_some_and(|Reverse(e)| *e <= t) {
                        ends.pop();
                        pool.release();
                    }
                    if pool.try_start(&mut buckets, t) {
                        break;
                    }
                    // Whichever comes first: an end, or a new environment.
                    let env = buckets.new_environments.ready_at(t);
                    t = match ends.peek() {
                        Some(Reverse(e)) if pool.busy >= pool.concurrency => *e,
                        Some(Reverse(e)) => (*e).min(env),
                        None => env,
                    };
                }
                ends.push(Reverse(t + l.run_ms));
                invoked = t;
                t
            }
            call => {
                let mut t = buckets.ready_at(call, l.ready_ms.max(ran));
                while !buckets.call(call, t) {
                    t = buckets.ready_at(call, t + 1);
                }
                ran = t;
                t
            }
        };
        last = last.max(at);
    }
    last - first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let mut b = Bucket::new(100.0, 20.0);
        assert!((0..100).all(|_| b.try_take(0)));
        assert!(!b.try_take(0));
        assert_eq!(b.ready_at(0), 50, "one token every 50 ms");
        assert!(b.try_take(50));
        // Ten seconds later: 200 tokens' worth, capped at 100.
        assert!((0..100).all(|_| b.try_take(10_050)));
        assert!(!b.try_take(10_050));
    }

    /// The issue's own figure: 10,000 Fargate tasks at once cannot start in
    /// under (10,000 - 100) / 20 = 495 s.
    #[test]
    fn ten_thousand_fargate_tasks_take_at_least_495_seconds() {
        let launches: Vec<Launch> = (0..10_000)
            .map(|_| Launch {
                ready_ms: 0,
                call: Call::RunTaskFargate(false),
                run_ms: 0,
            })
            .collect();
        assert_eq!(floor(&launches), 495_000);
        // Half on Fargate Spot: the RunTask calls still bind (one bucket).
        let mixed: Vec<Launch> = (0..10_000)
            .map(|i| Launch {
                ready_ms: 0,
                call: Call::RunTaskFargate(i % 2 == 0),
                run_ms: 0,
            })
            .collect();
        assert_eq!(floor(&mixed), 495_000);
    }

    #[test]
    fn invocations_wait_for_concurrency_and_new_environments() {
        // 3,000 invocations of 60 s at once: 1,000 new environments at
        // once, then concurrency binds until the first end at 60 s, whose
        // environments are reused; the last 1,000 start at 120 s.
        let launches: Vec<Launch> = (0..3_000)
            .map(|_| Launch {
                ready_ms: 0,
                call: Call::Invoke,
                run_ms: 60_000,
            })
            .collect();
        assert_eq!(floor(&launches), 120_000);
        // 1,500 short ones: the 1,000 burst, then 100 a second.
        let short: Vec<Launch> = (0..1_500)
            .map(|_| Launch {
                ready_ms: 0,
                call: Call::Invoke,
                run_ms: 1,
            })
            .collect();
        let t = floor(&short);
        // Once the first ones end (1 ms), their environments are reused:
        // the 1,000 burst and reuse start them all at once.
        assert!(t <= 10, "{t}");
    }

    #[test]
    fn the_driver_takes_messages_as_its_batches_ramp() {
        let mut gate = DriverGate::new(10);
        // 5 batches of 10 in 200 ms: a message every 4 ms at first.
        assert_eq!(gate.admit(0), 0);
        assert_eq!(gate.admit(0), 4);
        // A minute in, 10 batches: every 2 ms.
        let a = gate.admit(60_000);
        let b = gate.admit(60_000);
        assert_eq!(b - a, 2);
    }

    #[test]
    fn the_sdk_backs_off_with_full_jitter() {
        assert_eq!(sdk_retry_ms(1, 0.0), 0);
        assert_eq!(sdk_retry_ms(1, 0.5), 500);
        assert_eq!(sdk_retry_ms(2, 0.5), 1_000);
        assert_eq!(sdk_retry_ms(9, 1.0), 20_000);
    }
}
