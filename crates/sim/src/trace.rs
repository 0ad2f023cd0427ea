//! Traces: the jobs of a day, from a CSV file or a built-in generator.
//!
//! A CSV trace has a header and one job per row:
//!
//! ```text
//! submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate
//! 32400,render,1024,2048,0,420,3600,false,true
//! ```
//!
//! `submit_s` is seconds from the start of the day, `cpu` CPU units, `memory`
//! MiB, `duration_s` how long the job's container runs, `lambda` whether its
//! definition names a Lambda function, `fargate` whether it may run on
//! Fargate. Lines starting with `#` are comments.

use std::fmt;
use std::io::Read;

use berth_core::JobDefinition;
use berth_core::capacity::Resources;
use berth_core::scaling::Room;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};

/// One job of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceJob {
    pub submit_s: f64,
    pub definition: String,
    pub cpu: u32,
    pub memory: u32,
    #[serde(default)]
    pub gpu: u32,
    pub duration_s: f64,
    pub timeout_s: u32,
    pub lambda: bool,
    pub fargate: bool,
}

impl TraceJob {
    pub fn resources(&self) -> Resources {
        Resources {
            cpu: self.cpu,
            memory: self.memory,
        }
    }
}

/// The jobs of a trace, in order of submission, over `span_s` seconds
/// (whole days), and the job definitions registered meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub name: String,
    pub jobs: Vec<TraceJob>,
    pub span_s: f64,
    /// Each definition with the most its jobs ask: what the deployment has
    /// registered (the capacity metric derives its largest container from
    /// these).
    pub definitions: Vec<(String, Room)>,
}

pub const DAY_SECONDS: f64 = 86_400.0;

/// A trace that cannot be read, with the row it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("trace row {row}: {reason}")]
    Row { row: usize, reason: String },
    #[error("trace: {0}")]
    Other(String),
}

impl Trace {
    /// Reads a CSV trace (see the module's documentation).
    pub fn from_csv(name: &str, input: impl Read) -> Result<Self, TraceError> {
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(input);
        let mut jobs = Vec::new();
        for (i, row) in reader.deserialize::<TraceJob>().enumerate() {
            // Row 1 is the header.
            let row_no = i + 2;
            let job = row.map_err(|e| TraceError::Row {
                row: row_no,
                reason: e.to_string(),
            })?;
            check(&job).map_err(|reason| TraceError::Row {
                row: row_no,
                reason,
            })?;
            jobs.push(job);
        }
        if jobs.is_empty() {
            return Err(TraceError::Other("no jobs".into()));
        }
        Ok(Self::new(name, jobs))
    }

    /// A trace of `jobs`, sorted by submission, over whole days, with the
    /// definitions they use.
    pub fn new(name: &str, mut jobs: Vec<TraceJob>) -> Self {
        jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
        let last = jobs.last().map_or(0.0, |j| j.submit_s);
        let span_s = ((last / DAY_SECONDS).floor() + 1.0) * DAY_SECONDS;
        let mut definitions: Vec<(String, Room)> = Vec::new();
        for job in &jobs {
            let need = Room::new(job.cpu, job.memory, job.gpu);
            match definitions
                .iter_mut()
                .find(|(name, _)| *name == job.definition)
            {
                Some((_, r)) => {
                    r.cpu = r.cpu.max(need.cpu);
                    r.memory = r.memory.max(need.memory);
                    r.gpu = r.gpu.max(need.gpu);
                }
                None => definitions.push((job.definition.clone(), need)),
            }
        }
        Self {
            name: name.to_owned(),
            jobs,
            span_s,
            definitions,
        }
    }

    /// The trace as CSV, readable by [`Trace::from_csv`].
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        for job in &self.jobs {
            // Writing to a Vec cannot fail.
            let _ = w.serialize(job);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// A row's values against the limits a job definition has (berth-core's).
fn check(job: &TraceJob) -> Result<(), String> {
    if !(job.submit_s.is_finite() && job.submit_s >= 0.0) {
        return Err(format!(
            "`submit_s` must be 0 or more, found {}",
            job.submit_s
        ));
    }
    if !(job.duration_s.is_finite() && job.duration_s > 0.0) {
        return Err(format!(
            "`duration_s` must be above 0, found {}",
            job.duration_s
        ));
    }
    berth_core::job::validate_definition_name(&job.definition).map_err(|e| e.to_string())?;
    JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: job.definition.clone(),
        task_definition: job.definition.clone(),
        container: "main".into(),
        lambda_function: None,
        command: None,
        cpu: job.cpu,
        memory: job.memory,
        gpu: job.gpu,
        timeout_seconds: job.timeout_s,
        max_attempts: 1,
        fargate: job.fargate,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    }
    .validate()
    .map_err(|e| e.to_string())
}

/// The built-in traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// A working day: a trickle of small jobs, two 3-minute bursts and two
    /// longer waves of rendering, two GPU jobs, quiet nights.
    SparseDay,
    /// Jobs arriving at a constant rate all day.
    Steady,
    /// One large burst at 10:00 and nothing else.
    Burst,
    /// The seed's case against two alarms: CPU-heavy, memory-light jobs
    /// through the working day.
    SeedMix,
    /// A day with no job, with sparse-day's definitions registered: what a
    /// deployment costs at rest.
    Idle,
    /// A working week, Monday to Sunday: office hours of short and long
    /// jobs with two bursts a day, a nightly batch, a few GPU and very
    /// large jobs on weekdays, quiet nights and weekends
    /// (examples/week.csv is its seed 1).
    Week,
    /// 10,000 jobs submitted within one minute at 10:00, as a Batch user
    /// submits an array: a third small and short (Lambda can run them),
    /// the rest rendering and transcoding; AWS's rate limits bind first.
    Burst10k,
}

impl Builtin {
    pub const ALL: [Self; 7] = [
        Self::SparseDay,
        Self::Steady,
        Self::Burst,
        Self::SeedMix,
        Self::Idle,
        Self::Week,
        Self::Burst10k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SparseDay => "sparse-day",
            Self::Steady => "steady",
            Self::Burst => "burst",
            Self::SeedMix => "seed-mix",
            Self::Idle => "idle",
            Self::Week => "week",
            Self::Burst10k => "burst-10k",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    /// How many jobs the trace has unless told otherwise.
    pub fn default_jobs(self) -> usize {
        match self {
            Self::SparseDay => 800,
            Self::Steady => 2000,
            Self::Burst => 500,
            Self::SeedMix => 600,
            Self::Idle => 0,
            Self::Week => 1645,
            Self::Burst10k => 10_000,
        }
    }

    /// The trace, with `jobs` jobs (its default when `None`), the same for
    /// the same seed.
    pub fn generate(self, jobs: Option<usize>, seed: u64) -> Trace {
        let n = jobs.unwrap_or(self.default_jobs());
        let mut g = Generator::new(seed);
        match self {
            Self::SparseDay => {
                // Two GPU jobs a day per 800 jobs; the rest split between
                // a trickle of small jobs, two bursts (a batch submitted at
                // once) and two waves (a pipeline feeding jobs for a while).
                let train = (n / 400).max(1).min(n);
                let trickle = (n - train) * 2 / 5;
                let bursts = n - train - trickle;
                g.poisson(
                    trickle,
                    7.0 * 3600.0,
                    20.0 * 3600.0,
                    &[(&THUMBNAIL, 7), (&RENDER, 3)],
                );
                let events = [(9.0, 180.0), (11.0, 2400.0), (14.0, 180.0), (16.0, 5400.0)];
                for (i, (hour, width)) in events.into_iter().enumerate() {
                    let k = bursts / 4 + usize::from(i < bursts % 4);
                    g.burst(k, hour * 3600.0, width, &[(&RENDER, 7), (&TRANSCODE, 3)]);
                }
                g.poisson(train, 10.0 * 3600.0, 15.0 * 3600.0, &[(&TRAIN, 1)]);
            }
            Self::Steady => g.poisson(
                n,
                0.0,
                DAY_SECONDS,
                &[(&THUMBNAIL, 8), (&RENDER, 9), (&TRANSCODE, 3)],
            ),
            Self::Burst => g.burst(n, 10.0 * 3600.0, 120.0, &[(&RENDER, 6), (&TRANSCODE, 4)]),
            Self::SeedMix => g.poisson(n, 8.0 * 3600.0, 18.0 * 3600.0, &[(&CRUNCH, 1)]),
            Self::Idle => {}
            Self::Burst10k => g.burst(
                n,
                10.0 * 3600.0,
                60.0,
                &[(&THUMBNAIL, 3), (&RENDER, 5), (&TRANSCODE, 2)],
            ),
            Self::Week => {
                // Per weekday: a trickle through office hours, two bursts,
                // the nightly batch, two GPU jobs and one very large one;
                // a little on the weekend. Scaled to `n` jobs in all.
                let scale = n as f64 / self.default_jobs() as f64;
                let k = |count: f64| (count * scale).round() as usize;
                const HOUR: f64 = 3600.0;
                for day in 0..7 {
                    let at = f64::from(day) * DAY_SECONDS;
                    if day >= 5 {
                        g.poisson(
                            k(15.0),
                            at + 8.0 * HOUR,
                            at + 20.0 * HOUR,
                            &[(&THUMBNAIL, 2), (&RENDER, 1)],
                        );
                        continue;
                    }
                    g.burst(k(100.0), at + HOUR, 60.0, &[(&REPORT, 1)]);
                    g.poisson(
                        k(120.0),
                        at + 9.0 * HOUR,
                        at + 18.0 * HOUR,
                        &[(&THUMBNAIL, 5), (&RENDER, 3), (&TRANSCODE, 2)],
                    );
                    g.burst(k(60.0), at + 10.5 * HOUR, 300.0, &[(&RENDER, 1)]);
                    g.burst(k(40.0), at + 15.0 * HOUR, 600.0, &[(&TRANSCODE, 1)]);
                    g.poisson(k(2.0), at + 9.0 * HOUR, at + 17.0 * HOUR, &[(&TRAIN, 1)]);
                    g.poisson(k(1.0), at + 9.0 * HOUR, at + 17.0 * HOUR, &[(&SIMULATE, 1)]);
                }
            }
        }
        let mut trace = Trace::new(self.name(), g.jobs);
        if self == Self::Idle {
            trace.definitions = [THUMBNAIL, RENDER, TRANSCODE, TRAIN]
                .iter()
                .map(|s| (s.definition.to_owned(), Room::new(s.cpu, s.memory, s.gpu)))
                .collect();
        }
        trace
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kind of job the generators draw from: a job definition and how long
/// its jobs run (log-normal around `median_s`).
struct Shape {
    definition: &'static str,
    cpu: u32,
    memory: u32,
    gpu: u32,
    timeout_s: u32,
    lambda: bool,
    fargate: bool,
    median_s: f64,
    sigma: f64,
}

/// Small and short: fits Lambda.
const THUMBNAIL: Shape = Shape {
    definition: "thumbnail",
    cpu: 512,
    memory: 1024,
    gpu: 0,
    timeout_s: 300,
    lambda: true,
    fargate: true,
    median_s: 15.0,
    sigma: 0.6,
};
const RENDER: Shape = Shape {
    definition: "render",
    cpu: 1024,
    memory: 2048,
    gpu: 0,
    timeout_s: 3600,
    lambda: false,
    fargate: true,
    median_s: 480.0,
    sigma: 0.5,
};
const TRANSCODE: Shape = Shape {
    definition: "transcode",
    cpu: 2048,
    memory: 4096,
    gpu: 0,
    timeout_s: 7200,
    lambda: false,
    fargate: true,
    median_s: 900.0,
    sigma: 0.5,
};
/// examples/definitions.json's `train`: a GPU, 4 vCPU and 16 GiB.
const TRAIN: Shape = Shape {
    definition: "train",
    cpu: 4096,
    memory: 16_384,
    gpu: 1,
    timeout_s: 14_400,
    lambda: false,
    fargate: false,
    median_s: 3600.0,
    sigma: 0.3,
};
/// The nightly batch's report: 1 vCPU, 4 GiB, about 20 minutes.
const REPORT: Shape = Shape {
    definition: "report",
    cpu: 1024,
    memory: 4096,
    gpu: 0,
    timeout_s: 7200,
    lambda: false,
    fargate: true,
    median_s: 1200.0,
    sigma: 0.4,
};
/// Very large: 32 vCPU and 128 GiB, beyond Fargate's largest task.
const SIMULATE: Shape = Shape {
    definition: "simulate",
    cpu: 32_768,
    memory: 131_072,
    gpu: 0,
    timeout_s: 14_400,
    lambda: false,
    fargate: false,
    median_s: 3600.0,
    sigma: 0.3,
};
/// The seed's "high CPU but low memory reservation".
const CRUNCH: Shape = Shape {
    definition: "crunch",
    cpu: 1024,
    memory: 256,
    gpu: 0,
    timeout_s: 3600,
    lambda: false,
    fargate: true,
    median_s: 600.0,
    sigma: 0.3,
};

struct Generator {
    rng: ChaCha8Rng,
    jobs: Vec<TraceJob>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            jobs: Vec::new(),
        }
    }

    /// `n` jobs at a constant rate between `from` and `to` seconds.
    fn poisson(&mut self, n: usize, from: f64, to: f64, mix: &[(&Shape, u32)]) {
        if n == 0 {
            return;
        }
        let Ok(gap) = Exp::new(n as f64 / (to - from)) else {
            return;
        };
        let mut t = from;
        for _ in 0..n {
            t += gap.sample(&mut self.rng);
            // Wrap what runs past the window back into it.
            let at = from + (t - from) % (to - from);
            self.job(at, mix);
        }
    }

    /// `n` jobs spread evenly at random over `width` seconds from `at`.
    fn burst(&mut self, n: usize, at: f64, width: f64, mix: &[(&Shape, u32)]) {
        for _ in 0..n {
            let t = at + self.rng.random_range(0.0..width);
            self.job(t, mix);
        }
    }

    fn job(&mut self, submit_s: f64, mix: &[(&Shape, u32)]) {
        let total: u32 = mix.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        let shape = mix
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(mix[0].0, |(s, _)| *s);
        let duration = LogNormal::new(shape.median_s.ln(), shape.sigma)
            .map_or(shape.median_s, |d| d.sample(&mut self.rng));
        // Generated jobs end well inside their timeout.
        let duration_s = duration.clamp(1.0, f64::from(shape.timeout_s) * 0.9);
        self.jobs.push(TraceJob {
            submit_s: (submit_s * 1000.0).round() / 1000.0,
            definition: shape.definition.into(),
            cpu: shape.cpu,
            memory: shape.memory,
            gpu: shape.gpu,
            duration_s: (duration_s * 1000.0).round() / 1000.0,
            timeout_s: shape.timeout_s,
            lambda: shape.lambda,
            fargate: shape.fargate,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_trace() {
        for b in Builtin::ALL {
            let a = b.generate(None, 7);
            assert_eq!(a, b.generate(None, 7), "{b}");
            if b != Builtin::Idle {
                assert_ne!(a.jobs, b.generate(None, 8).jobs, "{b}");
            }
            assert_eq!(a.jobs.len(), b.default_jobs(), "{b}");
            assert!(a.jobs.windows(2).all(|w| w[0].submit_s <= w[1].submit_s));
            let days = if b == Builtin::Week { 7.0 } else { 1.0 };
            assert!(a.jobs.iter().all(|j| j.submit_s < days * DAY_SECONDS));
            assert_eq!(a.span_s, days * DAY_SECONDS);
        }
    }

    #[test]
    fn the_week_works_weekdays_and_rests_at_weekends() {
        let t = Builtin::Week.generate(None, 1);
        let day = |j: &TraceJob| (j.submit_s / DAY_SECONDS) as usize;
        let hour = |j: &TraceJob| (j.submit_s % DAY_SECONDS) / 3600.0;
        let mut per_day = [0usize; 7];
        for j in &t.jobs {
            per_day[day(j)] += 1;
        }
        assert!(per_day[..5].iter().all(|&n| n > 300), "{per_day:?}");
        assert!(per_day[5..].iter().all(|&n| n <= 15), "{per_day:?}");
        // The nightly batch at 01:00, and nothing else before 08:00.
        let batch = t.jobs.iter().filter(|j| j.definition == "report").count();
        assert_eq!(batch, 500);
        assert!(
            t.jobs
                .iter()
                .filter(|j| hour(j) < 8.0)
                .all(|j| j.definition == "report" && (1.0..1.02).contains(&hour(j)))
        );
        // A few GPU and very large jobs, on weekdays.
        assert_eq!(t.jobs.iter().filter(|j| j.gpu > 0).count(), 10);
        let huge: Vec<&TraceJob> = t
            .jobs
            .iter()
            .filter(|j| j.definition == "simulate")
            .collect();
        assert_eq!(huge.len(), 5);
        assert!(
            huge.iter()
                .all(|j| j.cpu > 16 * 1024 && !j.fargate && day(j) < 5)
        );
    }

    #[test]
    fn sparse_day_is_quiet_at_night_and_busy_by_day() {
        let t = Builtin::SparseDay.generate(None, 1);
        let night = t
            .jobs
            .iter()
            .filter(|j| j.submit_s < 7.0 * 3600.0 || j.submit_s > 20.0 * 3600.0)
            .count();
        assert_eq!(night, 0);
        let nine = t
            .jobs
            .iter()
            .filter(|j| (9.0 * 3600.0..9.0 * 3600.0 + 180.0).contains(&j.submit_s))
            .count();
        assert!(nine >= 100, "{nine} jobs in the 09:00 burst");
        assert_eq!(t.jobs.iter().filter(|j| j.gpu > 0).count(), 2);
    }

    #[test]
    fn csv_round_trips_and_names_the_bad_row() {
        let t = Builtin::Burst.generate(Some(20), 3);
        let back = Trace::from_csv("burst", t.to_csv().as_bytes()).unwrap();
        assert_eq!(back, t);

        let csv = "# a comment\nsubmit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
                   10,render,1024,2048,0,60,600,false,true\n\
                   20,render,64,2048,0,60,600,false,true\n";
        let e = Trace::from_csv("x", csv.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "trace row 3: job definition `render`: `cpu` must be between 128 and 196608, found 64"
        );
        let e = Trace::from_csv("x", "submit_s,definition\n1,render\n".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("trace row 2: "), "{e}");
        let e = Trace::from_csv(
            "x",
            "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n".as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "trace: no jobs");
    }

    #[test]
    fn definitions_take_the_most_each_job_asks() {
        let mut t = Builtin::SeedMix.generate(Some(3), 1);
        t.jobs[1].cpu = 2048;
        let t = Trace::new("x", t.jobs);
        assert_eq!(
            t.definitions,
            vec![("crunch".to_owned(), Room::new(2048, 256, 0))]
        );
        assert_eq!(Builtin::Idle.generate(None, 1).definitions.len(), 4);
    }
}
