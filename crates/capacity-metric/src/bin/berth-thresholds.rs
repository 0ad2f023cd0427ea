//! berth-thresholds: the scale-out and scale-in thresholds for the two
//! SchedulableContainers alarms, and why.
//!
//!   berth-thresholds --instance 8192:32768 --largest 1024:4096
//!   berth-thresholds --instance 8192:32768 --instance 4096:30720 --largest 1024:4096 --check 7

use std::process::ExitCode;

use berth_core::capacity::{
    LargestContainer, Resources, Thresholds, check_scale_in, explain_thresholds, most_per_instance,
};
use clap::Parser;

/// The scale-out and scale-in thresholds for the SchedulableContainers alarms.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// An instance type's CPU units and MiB, as CPU:MEMORY (repeat for each type).
    #[arg(long = "instance", value_parser = resources, required = true)]
    instances: Vec<Resources>,
    /// The largest container's CPU units and MiB, as CPU:MEMORY.
    #[arg(long, value_parser = largest)]
    largest: LargestContainer,
    /// How many largest containers must always fit (the scale-out threshold).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    headroom: u32,
    /// Check an existing scale-in threshold; exit 1 when it would loop.
    #[arg(long)]
    check: Option<u32>,
}

fn resources(s: &str) -> Result<Resources, String> {
    let (cpu, memory) = s
        .split_once(':')
        .ok_or_else(|| format!("expected CPU:MEMORY, found {s:?}"))?;
    let number = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} must be a whole number, found {v:?}"))
    };
    Ok(Resources {
        cpu: number(cpu, "CPU")?,
        memory: number(memory, "MEMORY")?,
    })
}

fn largest(s: &str) -> Result<LargestContainer, String> {
    let r = resources(s)?;
    LargestContainer::new(r.cpu, r.memory).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    print!(
        "{}",
        explain_thresholds(&args.instances, args.largest, args.headroom)
    );
    if let Some(scale_in_above) = args.check {
        let per_instance = most_per_instance(args.instances.iter().copied(), args.largest);
        let t = Thresholds {
            scale_out_below: args.headroom,
            scale_in_above,
        };
        if let Err(problem) = check_scale_in(t, per_instance) {
            eprintln!("{problem}");
            return ExitCode::from(1);
        }
        println!("scale-in threshold {scale_in_above} does not loop");
    }
    ExitCode::SUCCESS
}
