//! `berth simulate`: a day of jobs through berth and the alternatives, on
//! the simulator (berth-sim); no AWS account is involved.

use std::path::PathBuf;

use berth_core::capacity::LargestContainer;
use berth_sim::figures::{self, InstanceType};
use berth_sim::{Builtin, Outcome, Policy, Settings, Trace, report};

use crate::{CliError, largest, spot_price};

/// `berth simulate`'s flags.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// A CSV trace (see docs/simulator.md), or a built-in one: sparse-day, steady,
    /// burst, seed-mix.
    #[arg(long, default_value = "sparse-day")]
    pub trace: String,
    /// `all`, or any of berth, two-alarms, capacity-provider, aws-batch,
    /// aws-batch-fargate, always-on, all-fargate, all-lambda-where-possible.
    #[arg(long = "policy", num_args = 1.., default_value = "all")]
    pub policies: Vec<String>,
    /// The group's instance types (repeat): the other policies launch the
    /// first, berth's scaler chooses among them. Default: m5.large,
    /// m5a.large, m6i.large for the others, template.yaml's InstanceTypes for
    /// berth.
    #[arg(long = "instance-type")]
    pub instance_types: Vec<String>,
    /// table (for people) or json (for scripts); `--output json` does the same.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write a plot of each policy's day here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write a plot of each policy's launches per second against AWS's
    /// rate limits here (SVG).
    #[arg(long)]
    pub plot_launches: Option<PathBuf>,
    /// AWS's rate limits on launches, Lambda's starts and the driver's
    /// trigger (`berth simulate --assumptions` lists each with its source);
    /// `off`: every call succeeds at once.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub limits: Switch,
    /// The seed of the built-in traces and of every draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many jobs a built-in trace has (default: its own).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The group's maximum size (ClusterMaxSize).
    #[arg(long, default_value_t = 10)]
    pub max_size: u32,
    /// The largest container, as CPU:MEMORY (LargestContainerCpu/Memory);
    /// default: the largest of the trace's definitions.
    #[arg(long, value_parser = largest)]
    pub largest: Option<LargestContainer>,
    /// Spot interruptions per instance-month.
    #[arg(long, default_value_t = berth_sim::figures::SPOT_INTERRUPTIONS_PER_INSTANCE_MONTH.value)]
    pub spot_interruptions: f64,
    /// berth's scaler: largest containers kept schedulable while the
    /// cluster runs tasks (Headroom).
    #[arg(long, default_value_t = 0)]
    pub headroom: u32,
    /// berth's scaler: seconds an instance stays idle before it drains
    /// (ScaleInAfterSeconds).
    #[arg(long, default_value_t = berth_core::scaling::DEFAULT_SCALE_IN_AFTER_SECONDS)]
    pub scale_in_after: u32,
    /// The size of always-on (default: the cheapest size for the trace).
    #[arg(long)]
    pub always_on: Option<u32>,
    /// berth never uses Fargate Spot (FargateSpot=false): jobs that
    /// tolerate interruption go on Fargate on demand too.
    #[arg(long)]
    pub no_fargate_spot: bool,
    /// Fargate Spot interruptions per task-hour (assumed; AWS publishes no rate).
    #[arg(long, default_value_t = berth_sim::figures::FARGATE_SPOT_INTERRUPTIONS_PER_TASK_HOUR.value)]
    pub fargate_spot_interruptions: f64,
    /// The share of Fargate Spot launches that find no capacity (assumed).
    #[arg(long, default_value_t = berth_sim::figures::FARGATE_SPOT_SHORTFALL.value)]
    pub fargate_spot_shortfall: f64,
    /// Instances' Spot price as a fraction of on demand, where no
    /// --spot-price is given (the template's Prices, spot_fraction).
    #[arg(long, default_value_t = berth_core::prices::SPOT_PRICE_FRACTION.value)]
    pub spot_fraction: f64,
    /// An instance type's Spot price, USD per hour, as TYPE=PRICE (as the
    /// deployed scaler observes them with DescribeSpotPriceHistory);
    /// repeatable.
    #[arg(long = "spot-price", value_parser = spot_price)]
    pub spot_prices: Vec<(String, f64)>,
    /// Write the trace used as CSV here.
    #[arg(long)]
    pub write_trace: Option<PathBuf>,
    /// Print every figure the simulator uses, with its source, and stop.
    #[arg(long)]
    pub assumptions: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl SimulateArgs {
    /// What the flags ask; `json`: the answer as JSON.
    pub fn into_simulate(self, json: bool) -> Simulate {
        Simulate {
            trace: self.trace,
            policies: self.policies,
            instance_types: self.instance_types,
            json: json || self.format == Format::Json,
            plot: self.plot,
            plot_launches: self.plot_launches,
            limits: self.limits == Switch::On,
            seed: self.seed,
            jobs: self.jobs,
            max_size: self.max_size,
            largest: self.largest,
            spot_interruptions: self.spot_interruptions,
            always_on: self.always_on,
            headroom: self.headroom,
            scale_in_after: self.scale_in_after,
            fargate_spot: !self.no_fargate_spot,
            fargate_spot_interruptions: self.fargate_spot_interruptions,
            fargate_spot_shortfall: self.fargate_spot_shortfall,
            spot_fraction: self.spot_fraction,
            spot_prices: self.spot_prices,
            write_trace: self.write_trace,
        }
    }
}

/// What `berth simulate` was asked.
#[derive(Debug, Clone)]
pub struct Simulate {
    /// A CSV file, or a built-in trace's name.
    pub trace: String,
    /// `all`, or policy names.
    pub policies: Vec<String>,
    pub instance_types: Vec<String>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    /// Plot the launches per second against the limits here.
    pub plot_launches: Option<PathBuf>,
    /// AWS's rate limits on (see `berth_sim::limits`).
    pub limits: bool,
    pub seed: u64,
    /// Jobs in a built-in trace.
    pub jobs: Option<usize>,
    pub max_size: u32,
    pub largest: Option<LargestContainer>,
    pub spot_interruptions: f64,
    pub always_on: Option<u32>,
    pub headroom: u32,
    pub scale_in_after: u32,
    pub fargate_spot: bool,
    pub fargate_spot_interruptions: f64,
    pub fargate_spot_shortfall: f64,
    pub spot_fraction: f64,
    /// Observed Spot prices by instance type, USD per hour.
    pub spot_prices: Vec<(String, f64)>,
    /// Write the trace used as CSV here.
    pub write_trace: Option<PathBuf>,
}

/// Every figure the simulator uses, with its source: berth-core's price
/// model, then the simulator's own.
pub fn assumptions() -> String {
    let mut out = String::new();
    for f in berth_core::prices::ALL.iter().chain(figures::ALL) {
        out.push_str(&format!(
            "{:<40} {:>14} {:<32} {}\n",
            f.name,
            trim(f.value),
            f.unit,
            f.source
        ));
    }
    out.push_str(
        "\ninstance types (on demand, USD per hour, us-east-1; what ECS registers, by berth-core's catalog):\n",
    );
    for t in figures::INSTANCE_TYPES {
        out.push_str(&format!(
            "{:<14} ${:.3}  {}\n",
            t.name,
            t.on_demand_hour,
            t.registered()
        ));
    }
    out
}

fn trim(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Simulate {
    pub fn run(&self) -> Result<String, CliError> {
        let trace = self.trace()?;
        if let Some(path) = &self.write_trace {
            std::fs::write(path, trace.to_csv())
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
        }
        let (settings, outcomes) = self.outcomes(&trace)?;
        self.finish(&trace, &settings, &outcomes)
    }

    /// Each policy's outcome on `trace`, and the settings they ran with.
    pub fn outcomes(&self, trace: &Trace) -> Result<(Settings, Vec<Outcome>), CliError> {
        let policies = self.policies()?;
        let instance_types = self
            .instance_types
            .iter()
            .map(|name| {
                InstanceType::find(name).ok_or_else(|| {
                    let known: Vec<&str> = figures::INSTANCE_TYPES.iter().map(|t| t.name).collect();
                    CliError::Input(format!(
                        "unknown instance type `{name}`; the simulator knows {}",
                        known.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prices = berth_core::prices::Prices {
            spot_fraction: self.spot_fraction,
            spot: self.spot_prices.iter().cloned().collect(),
            ..Default::default()
        };
        prices
            .validate()
            .map_err(|e| CliError::Input(e.to_string()))?;
        let settings = Settings {
            allowed: if instance_types.is_empty() {
                Settings::default().allowed
            } else {
                instance_types.clone()
            },
            instance_types: if instance_types.is_empty() {
                Settings::default().instance_types
            } else {
                instance_types
            },
            max_size: self.max_size,
            largest: self.largest,
            spot_interruptions_per_month: self.spot_interruptions,
            fargate_spot: self.fargate_spot,
            fargate_spot_interruptions_per_hour: self.fargate_spot_interruptions,
            fargate_spot_shortfall: self.fargate_spot_shortfall,
            prices,
            always_on: self.always_on,
            headroom: self.headroom,
            scale_in_after_s: self.scale_in_after,
            limits: self.limits,
            seed: self.seed,
            ..Settings::default()
        };
        let outcomes = berth_sim::compare(trace, &policies, &settings);
        Ok((settings, outcomes))
    }

    fn finish(
        &self,
        trace: &Trace,
        settings: &Settings,
        outcomes: &[Outcome],
    ) -> Result<String, CliError> {
        let mut out = String::new();
        if let Some(path) = &self.plot {
            let title = format!(
                "berth simulate --trace {} (seed {}): {} jobs",
                trace.name,
                self.seed,
                trace.jobs.len()
            );
            let svg = berth_sim::plot::svg(outcomes, &title).map_err(CliError::Failed)?;
            std::fs::write(path, svg)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
            if !self.json {
                out.push_str(&format!("plot: {}\n", path.display()));
            }
        }
        if let Some(path) = &self.plot_launches {
            let title = format!(
                "berth simulate --trace {} (seed {}): launches a second against AWS's limits",
                trace.name, self.seed,
            );
            let svg = berth_sim::plot::launches_svg(outcomes, &title).map_err(CliError::Failed)?;
            std::fs::write(path, svg)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
            if !self.json {
                out.push_str(&format!("plot of launches: {}\n", path.display()));
            }
        }
        if self.json {
            out.push_str(&report::json(outcomes));
            return Ok(out);
        }
        out.insert_str(0, &self.header(trace, settings));
        out.push_str(&report::table(outcomes));
        out.push('\n');
        if outcomes
            .iter()
            .any(|o| o.pace.as_ref().is_some_and(|p| p.throttled_calls > 0))
        {
            out.push_str(&report::pace_table(outcomes));
            out.push('\n');
        }
        out.push_str(&notes(outcomes));
        Ok(out)
    }

    /// The trace `--trace` names: a built-in one, else a CSV file.
    pub fn trace(&self) -> Result<Trace, CliError> {
        if let Some(builtin) = Builtin::parse(&self.trace) {
            return Ok(builtin.generate(self.jobs, self.seed));
        }
        let path = PathBuf::from(&self.trace);
        let file = std::fs::File::open(&path).map_err(|e| {
            let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
            CliError::Input(format!(
                "no trace `{}` ({e}): give a CSV file or one of {}",
                self.trace,
                names.join(", ")
            ))
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| self.trace.clone(), |s| s.to_string_lossy().into_owned());
        Trace::from_csv(&name, std::io::BufReader::new(file))
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
    }

    fn policies(&self) -> Result<Vec<Policy>, CliError> {
        let mut out = Vec::new();
        for name in self.policies.iter().flat_map(|p| p.split(',')) {
            if name == "all" {
                out.extend(Policy::ALL);
                continue;
            }
            let p = Policy::parse(name).ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                CliError::Input(format!(
                    "unknown policy `{name}`; one of all, {}",
                    names.join(", ")
                ))
            })?;
            out.push(p);
        }
        out.dedup();
        if out.is_empty() {
            out.extend(Policy::ALL);
        }
        Ok(out)
    }

    fn header(&self, trace: &Trace, settings: &Settings) -> String {
        let types: Vec<&str> = settings.instance_types.iter().map(|t| t.name).collect();
        let largest = match settings.largest {
            Some(l) => format!("largest container {} (given)", l.resources()),
            None => {
                let scaling_types: Vec<_> = settings.allowed.iter().map(|t| t.scaling()).collect();
                let (kept, left_out) =
                    berth_core::scaling::largest_container(&trace.definitions, &scaling_types);
                let all =
                    LargestContainer::of(trace.definitions.iter().map(|(_, r)| r.resources()));
                let show = |l: Option<LargestContainer>| {
                    l.map_or_else(|| "none".to_owned(), |l| l.resources().to_string())
                };
                let mut text = format!("largest container {}", show(all));
                if !left_out.is_empty() {
                    let names: Vec<&str> = left_out.iter().map(|u| u.definition.as_str()).collect();
                    text.push_str(&format!(
                        "; berth's scaler leaves out {} (no instance type it may launch runs it): {}",
                        names.join(", "),
                        show(kept)
                    ));
                }
                text
            }
        };
        format!(
            "trace {}: {} jobs over {:.0} h (seed {}); AWS's rate limits {}; group of {} (launches {}; berth's scaler launches the type that runs what waits for least among {} types), Spot at {}, at most {}; Fargate Spot {}; {largest}\n",
            trace.name,
            trace.jobs.len(),
            trace.span_s / 3600.0,
            self.seed,
            if settings.limits { "on" } else { "off" },
            types.join(", "),
            types.first().unwrap_or(&"?"),
            settings.allowed.len(),
            if settings.prices.spot.is_empty() {
                format!(
                    "{:.0}% of on demand, assumed",
                    settings.prices.spot_fraction * 100.0
                )
            } else {
                let given: Vec<String> = settings
                    .prices
                    .spot
                    .iter()
                    .map(|(t, p)| format!("{t} ${p}/h"))
                    .collect();
                format!(
                    "{} as given, else {:.0}% of on demand",
                    given.join(", "),
                    settings.prices.spot_fraction * 100.0
                )
            },
            settings.max_size,
            if settings.fargate_spot {
                format!(
                    "for jobs that tolerate interruption ({} interruptions per task-hour, {:.0}% of launches short of capacity, assumed)",
                    trim(settings.fargate_spot_interruptions_per_hour),
                    settings.fargate_spot_shortfall * 100.0
                )
            } else {
                "not used".into()
            },
        )
    }
}

/// What the table does not say by itself.
fn notes(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        if let Some(n) = o.always_on_instances {
            out.push_str(&format!(
                "always-on: {n} instance(s), the cheapest fixed size for this trace\n"
            ));
        }
        if o.jobs_failed > 0 {
            out.push_str(&format!(
                "{}: {} job(s) never ran to their end: no room where they fit within six hours, or stopped under them more than five times\n",
                o.policy, o.jobs_failed
            ));
        }
        if o.jobs_unrunnable > 0 {
            out.push_str(&format!(
                "{}: {} job(s) cannot run there at all (a GPU, or too large)\n",
                o.policy, o.jobs_unrunnable
            ));
        }
        if o.jobs > 0 && o.instances_30_min_after_last_job > 0 && o.always_on_instances.is_none() {
            out.push_str(&format!(
                "{}: {} instance(s) still up 30 minutes after the last job\n",
                o.policy, o.instances_30_min_after_last_job
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(limits: bool, plot_launches: Option<PathBuf>) -> Simulate {
        Simulate {
            trace: "burst-10k".into(),
            policies: vec!["berth".into()],
            instance_types: Vec::new(),
            json: false,
            plot: None,
            plot_launches,
            limits,
            seed: 1,
            jobs: Some(2_000),
            max_size: 10,
            largest: None,
            spot_interruptions: figures::SPOT_INTERRUPTIONS_PER_INSTANCE_MONTH.value,
            always_on: None,
            headroom: 0,
            scale_in_after: berth_core::scaling::DEFAULT_SCALE_IN_AFTER_SECONDS,
            fargate_spot: true,
            fargate_spot_interruptions: figures::FARGATE_SPOT_INTERRUPTIONS_PER_TASK_HOUR.value,
            fargate_spot_shortfall: figures::FARGATE_SPOT_SHORTFALL.value,
            spot_fraction: berth_core::prices::SPOT_PRICE_FRACTION.value,
            spot_prices: Vec::new(),
            write_trace: None,
        }
    }

    /// 2,000 jobs in a minute are more than RunTask's 100 at once and 20 a
    /// second let through: the pace table says so, and the launch plot is
    /// drawn against the limits; with `--limits off` neither.
    #[test]
    fn a_burst_shows_its_pace_against_the_limits_unless_they_are_off() {
        let plot = std::env::temp_dir().join(format!("berth-launches-{}.svg", std::process::id()));
        let out = burst(true, Some(plot.clone())).run().unwrap();
        assert!(out.contains("AWS's rate limits on"), "{out}");
        assert!(out.contains("launches against AWS's rate limits"), "{out}");
        let svg = std::fs::read_to_string(&plot).unwrap();
        std::fs::remove_file(&plot).unwrap();
        assert!(svg.contains("<svg") && svg.contains("RunTask limit, 20/s"));
        assert!(svg.contains("berth: last launch"));

        let out = burst(false, None).run().unwrap();
        assert!(out.contains("AWS's rate limits off"), "{out}");
        assert!(!out.contains("launches against AWS's rate limits"), "{out}");
    }
}
