//! The console's simulate view: a built-in trace or an uploaded CSV, the
//! policies to compare, and `berth simulate`'s table and plot, run by the
//! same flags (`SimulateArgs`) and simulator.

use berth_sim::{Builtin, Outcome, Policy, Trace};
use clap::Parser;

use crate::CliError;
use crate::simulate::SimulateArgs;

/// The policies a new form has ticked.
pub const DEFAULT_POLICIES: [&str; 3] = ["berth", "all-fargate-spot", "aws-batch"];
/// The most jobs a run from the console simulates: a few seconds of work.
pub const MOST_JOBS: usize = 20_000;

/// What the form asks, as `berth simulate`'s flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// A built-in trace's name (ignored when a CSV comes with the form).
    pub trace: String,
    pub policies: Vec<String>,
    /// Jobs in a built-in trace (its own number when empty).
    pub jobs: String,
    pub seed: String,
    /// AWS's rate limits on.
    pub limits: bool,
    /// The group's instance types (the simulator's own when empty).
    pub instance_types: Vec<String>,
}

impl Asked {
    /// The form as a query string's (or a multipart form's) pairs give it.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut asked = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "trace" => asked.trace = v,
                "policy" => asked.policies.push(v),
                "jobs" => asked.jobs = v,
                "seed" => asked.seed = v,
                "limits" => asked.limits = v == "on",
                _ => {}
            }
        }
        asked
    }

    /// The new form's choices.
    pub fn new_form() -> Self {
        Self {
            trace: Builtin::SparseDay.name().into(),
            policies: DEFAULT_POLICIES.iter().map(|p| (*p).to_owned()).collect(),
            jobs: String::new(),
            seed: "1".into(),
            limits: true,
            instance_types: Vec::new(),
        }
    }

    /// `berth simulate`'s flags for this form.
    fn args(&self) -> Result<SimulateArgs, CliError> {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            args: SimulateArgs,
        }
        if self.policies.is_empty() {
            return Err(CliError::Input("pick at least one policy".into()));
        }
        let mut argv = vec!["simulate".to_owned(), "--trace".into(), self.trace.clone()];
        argv.push("--policy".into());
        argv.extend(self.policies.iter().cloned());
        for (flag, value) in [("--jobs", &self.jobs), ("--seed", &self.seed)] {
            if !value.trim().is_empty() {
                argv.extend([flag.to_owned(), value.trim().to_owned()]);
            }
        }
        argv.extend([
            "--limits".into(),
            if self.limits { "on" } else { "off" }.into(),
        ]);
        for t in &self.instance_types {
            argv.extend(["--instance-type".to_owned(), t.clone()]);
        }
        Flags::try_parse_from(argv)
            .map(|f| f.args)
            .map_err(|e| CliError::Input(first_line(&e.to_string())))
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// What a run gives the page: its outcomes and a plot of them.
#[derive(Debug, Clone)]
pub struct Ran {
    pub title: String,
    pub jobs: usize,
    pub outcomes: Vec<Outcome>,
    pub plot: Result<String, String>,
}

/// Each of `asked`'s policies on `trace` (blocking).
pub fn outcomes_of(asked: &Asked, trace: &Trace) -> Result<Vec<Outcome>, CliError> {
    let (_, outcomes) = asked.args()?.into_simulate(false).outcomes(trace)?;
    Ok(outcomes)
}

/// Runs the simulator as the form asks, on `csv` (an uploaded trace: its
/// name and text) or the built-in trace the form names. Blocking: seconds
/// of work for a day of jobs.
pub fn run(asked: &Asked, csv: Option<(&str, &[u8])>) -> Result<Ran, CliError> {
    let args = asked.args()?;
    let seed = args.seed;
    let simulate = args.into_simulate(false);
    let trace = match csv {
        Some((name, bytes)) => {
            Trace::from_csv(name, bytes).map_err(|e| CliError::Input(e.to_string()))?
        }
        None => {
            if Builtin::parse(&simulate.trace).is_none() {
                return Err(CliError::Input(format!(
                    "no built-in trace `{}`",
                    simulate.trace
                )));
            }
            simulate.trace()?
        }
    };
    if trace.jobs.len() > MOST_JOBS {
        return Err(CliError::Input(format!(
            "{} jobs: the console simulates at most {MOST_JOBS}; `berth simulate` runs any number",
            trace.jobs.len()
        )));
    }
    let (_, outcomes) = simulate.outcomes(&trace)?;
    let title = format!(
        "berth simulate --trace {} (seed {seed}): {} jobs",
        trace.name,
        trace.jobs.len()
    );
    let plot = berth_sim::plot::svg(&outcomes, &title);
    Ok(Ran {
        title,
        jobs: trace.jobs.len(),
        outcomes,
        plot,
    })
}

/// Every policy's name, for the form.
pub fn policies() -> impl Iterator<Item = &'static str> {
    Policy::ALL.into_iter().map(Policy::name)
}

/// Every built-in trace, its name and default number of jobs.
pub fn traces() -> impl Iterator<Item = (&'static str, usize)> {
    Builtin::ALL
        .into_iter()
        .map(|b| (b.name(), b.default_jobs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_read_by_berth_simulate_s_own_flags() {
        let asked = Asked {
            jobs: "40".into(),
            ..Asked::new_form()
        };
        let ran = run(&asked, None).unwrap();
        assert_eq!(ran.jobs, 40);
        let names: Vec<&str> = ran.outcomes.iter().map(|o| o.policy.as_str()).collect();
        assert_eq!(names, DEFAULT_POLICIES);
        assert!(ran.plot.as_ref().unwrap().starts_with("<svg"));

        let bad = Asked {
            jobs: "many".into(),
            ..Asked::new_form()
        };
        let e = run(&bad, None).unwrap_err().to_string();
        assert!(e.contains("many"), "{e}");
        let none = Asked {
            policies: Vec::new(),
            ..Asked::new_form()
        };
        assert!(
            run(&none, None)
                .unwrap_err()
                .to_string()
                .contains("at least one policy")
        );
        let unknown = Asked {
            policies: vec!["cheapest".into()],
            ..Asked::new_form()
        };
        assert!(
            run(&unknown, None)
                .unwrap_err()
                .to_string()
                .contains("cheapest")
        );
    }

    #[test]
    fn an_uploaded_trace_is_simulated_and_a_bad_one_says_its_row() {
        let csv = "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
                   10,render,1024,2048,0,120,600,false,true\n\
                   20,render,1024,2048,0,60,600,false,true\n";
        let ran = run(&Asked::new_form(), Some(("mine", csv.as_bytes()))).unwrap();
        assert_eq!(ran.jobs, 2);
        assert!(ran.title.contains("--trace mine"), "{}", ran.title);
        let bad = "submit_s,definition\nsoon,render\n";
        let e = run(&Asked::new_form(), Some(("bad", bad.as_bytes())))
            .unwrap_err()
            .to_string();
        assert!(e.contains("row"), "{e}");
    }
}
