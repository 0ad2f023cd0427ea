//! Any bytes as an SQS message body: the parser never panics; a rejection
//! always names its rule (a `field.rule` or `body.rule` code and a message);
//! an accepted job, written back as a message, parses to the same job.
#![no_main]

use berth_core::job::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SQS bodies are text: invalid UTF-8 never reaches the driver.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    match parse(body, "fuzz-message-id") {
        Ok(job) => {
            let again = serde_json::to_string(&job).expect("a job serializes");
            assert_eq!(parse(&again, "other-id").as_ref(), Ok(&job), "{again}");
        }
        Err(e) => {
            let code = e.code();
            let (scope, rule) = code.split_once('.').expect("a code is scope.rule");
            assert!(!scope.is_empty() && !rule.is_empty(), "{code}");
            assert!(e.to_string().len() > 10, "{e}");
        }
    }
});
