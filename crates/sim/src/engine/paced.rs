//! berth's pipeline under AWS's rate limits ([`crate::limits`]): the
//! driver's launch calls, its throttled outcome, Lambda's queue of
//! asynchronous invocations, and the launches' pace against the floor.

use berth_core::launch::{draw_for, throttle_backoff_seconds};

use super::{End, Ev, SECOND, Sim};
use crate::figures::{self as f, ms};
use crate::limits::{self, Call};
use crate::policy::Policy;
use crate::report;

impl Sim<'_> {
    /// The driver's launch call for job `j` (limits on): made when its
    /// buckets let it; else the SDK tries it again after its backoff, and
    /// after its last try the job is throttled. Whether it was made.
    pub(super) fn call(&mut self, j: usize, call: Call) -> bool {
        let made = self.spend(j, call);
        if made && self.settings.limits {
            self.jobs[j].launched.get_or_insert((self.now, call));
        }
        made
    }

    /// A call of the driver's for job `j` that spends the limits as
    /// [`Sim::call`] does but launches nothing (a RunTask on EC2 that
    /// found no room). Whether it was made.
    pub(super) fn spend(&mut self, j: usize, call: Call) -> bool {
        if !self.settings.limits {
            return true;
        }
        if self.buckets.call(call, self.now) {
            self.jobs[j].tries = 0;
            return true;
        }
        self.throttled_calls += 1;
        let job = &mut self.jobs[j];
        job.tries += 1;
        if job.tries < f::SDK_TRIES.value as u32 {
            let retry = job.tries;
            let delivery = job.delivery;
            job.pending += 1;
            let draw = self.draw(j, 0x5D4_0000 ^ u64::from(retry));
            self.at(
                self.now + limits::sdk_retry_ms(retry, draw),
                Ev::Retry(j, delivery),
            );
        } else {
            self.jobs[j].tries = 0;
            self.throttled(j);
        }
        false
    }

    /// A throttled outcome (berth's `Outcome::Throttled`): the message
    /// comes back after berth-core's spread delay, as the driver sets it;
    /// at the queue's last receive it goes on in a new message.
    pub(super) fn throttled(&mut self, j: usize) {
        self.throttled_deliveries += 1;
        let job = &mut self.jobs[j];
        job.throttled_receives += 1;
        let receives = job.throttled_receives;
        if receives >= f::QUEUE_MAX_RECEIVES.value as u32 {
            job.throttled_receives = 0;
            self.carried_on += 1;
        }
        let key = format!("{}:{j}", self.settings.seed);
        let delay = u64::from(throttle_backoff_seconds(receives, draw_for(&key, receives)));
        self.deliver(j, self.now + delay * SECOND + ms(f::SQS_TO_DRIVER_SECONDS));
    }

    /// Lambda starts the invocations waiting in its queue, in order, as its
    /// concurrency and its pace of new environments let it; when only the
    /// pace holds them, it looks again when the next environment may come.
    pub(super) fn start_queued_invocations(&mut self) {
        while let Some(&t) = self.lambda.queue.front() {
            if !self.tasks[t].alive {
                self.lambda.queue.pop_front();
                continue;
            }
            if !self.lambda.try_start(&mut self.buckets, self.now) {
                if self.lambda.busy < self.lambda.concurrency {
                    let at = self.buckets.new_environments.ready_at(self.now);
                    if self.lambda_poll_at.is_none_or(|p| p > at) {
                        self.lambda_poll_at = Some(at);
                        self.at(at, Ev::LambdaPoll);
                    }
                }
                return;
            }
            self.lambda.queue.pop_front();
            self.invocation_started(t);
        }
    }

    pub(super) fn invocation_started(&mut self, t: usize) {
        self.tasks[t].holding = true;
        let j = self.tasks[t].job;
        self.jobs[j]
            .launched
            .get_or_insert((self.now, Call::Invoke));
        self.at(self.now + ms(f::LAMBDA_START_SECONDS), Ev::TaskStart(t));
    }

    /// The launches against the limits (limits on, berth's pipeline and
    /// the other policies whose driver calls AWS itself).
    pub(super) fn pace(&self) -> Option<report::Pace> {
        if !self.settings.limits
            || matches!(self.policy, Policy::AwsBatch | Policy::AwsBatchFargate)
        {
            return None;
        }
        let first = self
            .trace
            .jobs
            .iter()
            .map(|j| (j.submit_s * 1000.0).round() as u64)
            .min()?;
        let mut launches = Vec::new();
        let (mut ecs_per_s, mut lambda_per_s) = (Vec::new(), Vec::new());
        let mut last = first;
        for (i, job) in self.jobs.iter().enumerate() {
            let Some((at, call)) = job.launched else {
                continue;
            };
            let spec = &self.trace.jobs[i];
            launches.push(limits::Launch {
                ready_ms: (spec.submit_s * 1000.0).round() as u64 + ms(f::SQS_TO_DRIVER_SECONDS),
                call,
                run_ms: (spec.duration_s.min(f64::from(spec.timeout_s)) * 1000.0) as u64
                    + ms(f::LAMBDA_START_SECONDS),
            });
            last = last.max(at);
            let second = (at.saturating_sub(first) / SECOND) as usize;
            let per_s = if call == Call::Invoke {
                &mut lambda_per_s
            } else {
                &mut ecs_per_s
            };
            if per_s.len() <= second {
                per_s.resize(second + 1, 0);
            }
            per_s[second] += 1;
        }
        let seconds = ecs_per_s.len().max(lambda_per_s.len());
        ecs_per_s.resize(seconds, 0);
        lambda_per_s.resize(seconds, 0);
        Some(report::Pace {
            floor_s: limits::floor(&launches) as f64 / 1000.0
                + (launches.iter().map(|l| l.ready_ms).min().unwrap_or(first) - first) as f64
                    / 1000.0,
            launched_by_s: (last - first) as f64 / 1000.0,
            throttled_calls: self.throttled_calls,
            throttled_deliveries: self.throttled_deliveries,
            carried_on: self.carried_on,
            failed_after_throttling: self
                .jobs
                .iter()
                .filter(|j| j.end == Some(End::Failed) && j.throttled_receives > 0)
                .count(),
            ecs_per_s,
            lambda_per_s,
        })
    }
}
