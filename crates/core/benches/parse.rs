//! The job message parser on bodies near the 256 KiB limit: an ordinary job
//! with a large environment, and bodies built to be slow (a wide array under
//! a long key, values full of control characters). Parsing must stay linear
//! in the body's size. Prints MB/s per body; never fails.

use std::hint::black_box;
use std::time::{Duration, Instant};

use berth_core::job;

const LIMIT: usize = berth_core::limits::message::MAX_BODY_BYTES;

fn bodies() -> Vec<(&'static str, String)> {
    let env: Vec<String> = (0..200)
        .map(|i| format!(r#""VAR_{i}":"{}""#, "v".repeat(20)))
        .collect();
    let ordinary = format!(
        r#"{{"job_id":"j-1","definition":"render","command":[{}],"environment":{{{}}}}}"#,
        vec![r#""--frame""#; 200].join(","),
        env.join(",")
    );
    // An unknown field whose value is a wide array, under a long key: a
    // path copied per element costs key length × elements.
    let key = "k".repeat(LIMIT / 2);
    let elements = (LIMIT / 2 - 64) / 2;
    let wide = format!(
        r#"{{"definition":"render","environment":{{"{key}":[{}]}}}}"#,
        vec!["1"; elements].join(",")
    );
    // Control characters everywhere a value is quoted back.
    let controls = "\u{1}".repeat((LIMIT - 64) / 6);
    let escaped = serde_json::to_string(&controls).unwrap_or_default();
    let quoted = format!(r#"{{"definition":"render","processor":{escaped}}}"#);
    vec![
        ("ordinary job, 200 variables", ordinary),
        ("a wide array under a long key", wide),
        ("a value of control characters", quoted),
    ]
}

fn main() {
    println!(
        "{:<32} {:>10} {:>12} {:>10} {:>14}",
        "body", "bytes", "parse µs", "MB/s", "reason bytes"
    );
    for (name, body) in bodies() {
        let runs = 20;
        let mut best = Duration::MAX;
        let mut reason = 0;
        for _ in 0..runs {
            let start = Instant::now();
            let parsed = black_box(job::parse(black_box(&body), "m-1"));
            best = best.min(start.elapsed());
            reason = parsed.err().map_or(0, |e| e.to_string().len());
        }
        let mb_s = body.len() as f64 / best.as_secs_f64() / 1e6;
        println!(
            "{name:<32} {:>10} {:>12.0} {mb_s:>10.1} {reason:>14}",
            body.len(),
            best.as_secs_f64() * 1e6
        );
    }
}
