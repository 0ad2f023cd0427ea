//! The job message's rules, field by field.

use super::*;
use serde_json::json;

#[test]
fn a_rejection_quotes_at_most_a_bounded_length_of_what_was_sent() {
    // Escaped in JSON, a control character each: the reason's quoting
    // would escape them again.
    let huge = "\\u0001".repeat(40_000);
    let long_key = "k".repeat(100_000);
    let bodies = [
        format!(r#"{{"definition":"render","processor":"{huge}"}}"#),
        format!(r#"{{"definition":"render","{long_key}":1}}"#),
        format!(r#"{{"definition":"render","environment":{{"{long_key}":"v"}}}}"#),
        format!(r#"{{"definition":"render","environment":{{"BERTH_{long_key}":"v"}}}}"#),
        format!(
            r#"{{"job_id":"{}","definition":"render"}}"#,
            "é".repeat(30_000)
        ),
        format!(r#"{{"definition":"render","environment":{{"{long_key}":{{"a":1,"a":2}}}}}}"#),
    ];
    for body in &bodies {
        let reason = parse(body, "m-1").unwrap_err().to_string();
        let start = crate::text::cut(&reason, 200);
        assert!(reason.len() < 1024, "{} bytes: {start}", reason.len());
    }
}

#[test]
fn nul_characters_in_a_command_or_an_environment_are_refused() {
    let cases = [
        (
            r#"{"definition":"d","command":["sh","-c","echo\u0000"]}"#,
            "command[2]",
        ),
        (
            r#"{"definition":"d","environment":{"A":"x\u0000y"}}"#,
            "environment.A",
        ),
    ];
    for (body, field) in cases {
        let err = parse(body, "m-1").unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}

fn ok(body: Value) -> JobRequest {
    parse(&body.to_string(), "msg-1").unwrap_or_else(|e| panic!("{body} rejected: {e}"))
}

fn err(body: Value) -> MessageError {
    match parse(&body.to_string(), "msg-1") {
        Ok(job) => panic!("{body} accepted as {job:?}"),
        Err(e) => e,
    }
}

/// Merges `extra` into the smallest valid message.
fn with(extra: Value) -> Value {
    let mut body = json!({"definition": "render"});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    body
}

#[test]
fn the_smallest_message_takes_every_default() {
    let job = ok(json!({"definition": "render"}));
    assert_eq!(
        job.job_id, "msg-1",
        "the SQS message id stands in for a missing job_id"
    );
    assert_eq!(job.definition, "render");
    assert_eq!(job.processor, Processor::Auto);
    assert!(job.command.is_none() && job.environment.is_empty());
    assert!(job.cpu.is_none() && job.memory.is_none() && job.gpu.is_none());
    assert!(job.timeout_seconds.is_none() && job.max_attempts.is_none());
}

#[test]
fn every_field_is_read() {
    let job = ok(json!({
        "job_id": "job_42-A", "definition": "render", "command": ["echo", "hi"],
        "environment": {"MODE": "fast", "_X1": ""}, "cpu": 2048, "memory": 4096, "gpu": 1,
        "timeout_seconds": 60, "processor": "ec2", "max_attempts": 3
    }));
    assert_eq!(job.job_id, "job_42-A");
    assert_eq!(job.command, Some(vec!["echo".into(), "hi".into()]));
    assert_eq!(
        job.environment.get("MODE").map(String::as_str),
        Some("fast")
    );
    assert_eq!(job.environment.get("_X1").map(String::as_str), Some(""));
    assert_eq!(
        (
            job.cpu,
            job.memory,
            job.gpu,
            job.timeout_seconds,
            job.max_attempts
        ),
        (Some(2048), Some(4096), Some(1), Some(60), Some(3))
    );
    assert_eq!(job.processor, Processor::Ec2);
}

/// One row per rule of the contract's job-message table: a message that
/// keeps the rule, one that breaks it, and the error's code and text.
#[test]
fn each_rule_accepts_and_rejects() {
    let long_id = "a".repeat(65);
    let rows: Vec<(Value, Value, &str, &str)> = vec![
        // job_id
        (
            json!({"job_id": "a"}),
            json!({"job_id": ""}),
            "job_id.length",
            "`job_id`: must be 1 to 64 characters long, found 0",
        ),
        (
            json!({"job_id": "a".repeat(64)}),
            json!({"job_id": long_id}),
            "job_id.length",
            "found 65",
        ),
        (
            json!({"job_id": "A-z_0"}),
            json!({"job_id": "a/b"}),
            "job_id.characters",
            "found \"a/b\"",
        ),
        (
            json!({"job_id": "x"}),
            json!({"job_id": 7}),
            "job_id.type",
            "`job_id`: must be a string, found a number 7",
        ),
        // definition
        (
            json!({"definition": "etl-v2"}),
            json!({"definition": null}),
            "definition.missing",
            "`definition`: is required",
        ),
        (
            json!({"definition": "etl_v2"}),
            json!({"definition": "etl v2"}),
            "definition.characters",
            "found \"etl v2\"",
        ),
        (
            json!({"definition": "e"}),
            json!({"definition": ""}),
            "definition.length",
            "found 0",
        ),
        // command
        (
            json!({"command": ["sh", "-c", "exit 0"]}),
            json!({"command": "sh -c"}),
            "command.type",
            "must be an array of strings, found a string",
        ),
        (
            json!({"command": ["x"]}),
            json!({"command": []}),
            "command.empty",
            "`command`: must not be empty",
        ),
        (
            json!({"command": ["x"]}),
            json!({"command": ["x", 1]}),
            "command[1].type",
            "`command[1]`: must be a string, found a number 1",
        ),
        (
            json!({"command": vec!["a"; 256]}),
            json!({"command": vec!["a"; 257]}),
            "command.count",
            "257 entries, more than the limit of 256",
        ),
        // environment
        (
            json!({"environment": {"A_1": "v"}}),
            json!({"environment": {"1A": "v"}}),
            "environment.characters",
            "found \"1A\"",
        ),
        (
            json!({"environment": {"a": "v"}}),
            json!({"environment": {"A-B": "v"}}),
            "environment.characters",
            "found \"A-B\"",
        ),
        (
            json!({"environment": {"A": "1"}}),
            json!({"environment": {"A": 1}}),
            "environment.type",
            "`environment.A`: must be a string, found a number 1",
        ),
        (
            json!({"environment": {}}),
            json!({"environment": ["A=1"]}),
            "environment.type",
            "must be an object of strings",
        ),
        (
            json!({"environment": {"MY_BERTH": "x"}}),
            json!({"environment": {"BERTH_JOB_ID": "x"}}),
            "environment.reserved",
            "`environment.BERTH_JOB_ID`: is reserved",
        ),
        (
            json!({"environment": {"BIG": "x".repeat(lim::ENVIRONMENT_MAX_BYTES - 3)}}),
            json!({"environment": {"BIG": "x".repeat(lim::ENVIRONMENT_MAX_BYTES - 2)}}),
            "environment.size",
            "`environment`: is 6145 bytes, more than the limit of 6144",
        ),
        // cpu
        (
            json!({"cpu": 128}),
            json!({"cpu": 127}),
            "cpu.range",
            "`cpu`: must be between 128 and 196608, found 127",
        ),
        (
            json!({"cpu": 196_608}),
            json!({"cpu": 196_609}),
            "cpu.range",
            "found 196609",
        ),
        (
            json!({"cpu": 1024}),
            json!({"cpu": -5}),
            "cpu.range",
            "found -5",
        ),
        (
            json!({"cpu": 1024}),
            json!({"cpu": 1.5}),
            "cpu.type",
            "`cpu`: must be an integer, found a number 1.5",
        ),
        (
            json!({"cpu": 1024}),
            json!({"cpu": "1024"}),
            "cpu.type",
            "found a string \"1024\"",
        ),
        (
            json!({"cpu": 1024}),
            json!({"cpu": 1e30}),
            "cpu.type",
            "must be an integer",
        ),
        // memory
        (
            json!({"memory": 6}),
            json!({"memory": 5}),
            "memory.range",
            "`memory`: must be between 6 and 25165824, found 5",
        ),
        (
            json!({"memory": 512}),
            json!({"memory": u64::MAX}),
            "memory.range",
            "found 18446744073709551615",
        ),
        // gpu
        (
            json!({"gpu": 0}),
            json!({"gpu": 17}),
            "gpu.range",
            "`gpu`: must be between 0 and 16, found 17",
        ),
        (
            json!({"gpu": 16}),
            json!({"gpu": true}),
            "gpu.type",
            "found a boolean true",
        ),
        // timeout_seconds
        (
            json!({"timeout_seconds": 1}),
            json!({"timeout_seconds": 0}),
            "timeout_seconds.range",
            "must be between 1 and 604800, found 0",
        ),
        (
            json!({"timeout_seconds": 604_800}),
            json!({"timeout_seconds": 604_801}),
            "timeout_seconds.range",
            "found 604801",
        ),
        // processor
        (
            json!({"processor": "fargate"}),
            json!({"processor": "FARGATE"}),
            "processor.value",
            "`processor`: must be one of auto, lambda, ec2, fargate, found \"FARGATE\"",
        ),
        (
            json!({"processor": "auto"}),
            json!({"processor": ["ec2"]}),
            "processor.type",
            "must be a string",
        ),
        // max_attempts
        (
            json!({"max_attempts": 1}),
            json!({"max_attempts": 0}),
            "max_attempts.range",
            "`max_attempts`: must be between 1 and 10, found 0",
        ),
        (
            json!({"max_attempts": 10}),
            json!({"max_attempts": 11}),
            "max_attempts.range",
            "found 11",
        ),
        // depends_on
        (
            json!({"depends_on": ["a", {"job_id": "b", "condition": "ended"}, "arr:3"]}),
            json!({"depends_on": [{"job_id": "b", "condition": "afterok"}]}),
            "depends_on.invalid",
            "unknown variant `afterok`, expected one of `succeeded`",
        ),
        (
            json!({"depends_on": []}),
            json!({"depends_on": "a"}),
            "depends_on.type",
            "must be an array of job ids or {job_id, condition} objects, found a string",
        ),
        (
            json!({"depends_on": ["a"]}),
            json!({"depends_on": ["a", "a"]}),
            "depends_on.invalid",
            "`depends_on`: `a` is named more than once",
        ),
        (
            json!({"depends_on": [{"job_id": "a", "type": "N_TO_N"}], "array": {"size": 4}}),
            json!({"depends_on": [{"job_id": "a", "type": "n_to_n"}]}),
            "depends_on.invalid",
            "`a` is `n_to_n`, which binds an array's children: the job needs `array`",
        ),
        (
            json!({"depends_on": [{"job_id": "a", "type": "n_to_n", "condition": "ended"}], "array": {"size": 4, "max_running": 2}}),
            json!({"depends_on": [{"job_id": "a", "type": "n_to_n"}], "array": {"size": 4, "sequential": "ended"}}),
            "depends_on.invalid",
            "a `sequential` array cannot have it",
        ),
        // array
        (
            json!({"array": {"size": 10000, "max_running": 5}}),
            json!({"array": {"size": 10001}}),
            "array.invalid",
            "`array`: `size` must be between 2 and 10000, found 10001",
        ),
        (
            json!({"array": {"size": 2}}),
            json!({"array": 5}),
            "array.type",
            "must be an object {size, max_running}, found a number",
        ),
        (
            json!({"array": {"size": 3, "max_running": 3}}),
            json!({"array": {"size": 3, "max_running": 4}}),
            "array.invalid",
            "`max_running` must be between 1 and the size, 3, found 4",
        ),
        // retry_rules
        (
            json!({"retry_rules": [{"on_exit_code": "137", "action": "retry"}]}),
            json!({"retry_rules": [{"on_exit_code": "137", "action": "again"}]}),
            "retry_rules.invalid",
            "unknown variant `again`",
        ),
        (
            json!({"retry_rules": []}),
            json!({"retry_rules": {"on_exit_code": "1"}}),
            "retry_rules.type",
            "must be an array of rules, found an object",
        ),
        (
            json!({"retry_rules": [{"on_reason": "OutOfMemory*", "action": "exit"}]}),
            json!({"retry_rules": [{"on_reason": "Out-of-memory", "action": "exit"}]}),
            "retry_rules.invalid",
            "`retry_rules`: rule 1: `on_reason` may contain only letters",
        ),
    ];
    for (good, bad, code, text) in rows {
        ok(with(good));
        let e = err(with(bad.clone()));
        assert_eq!(e.code(), code, "{bad}: {e}");
        assert!(
            e.to_string().contains(text),
            "{bad}: {e:?} does not say {text:?}"
        );
    }
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let e = err(json!({"definition": "render", "cpus": 2}));
    assert_eq!(
        e,
        MessageError::UnknownField {
            field: "cpus".into()
        }
    );
    assert!(
        e.to_string()
            .starts_with("unknown field `cpus` (the fields are: job_id, definition")
    );
    assert_eq!(e.field(), Some("cpus"));
}

/// The fuzz target's corpus (`fuzz/corpus/job_message`, kept from its
/// runs), replayed with the target's checks: no panic, every rejection
/// names its rule, every accepted job round-trips.
#[test]
fn the_fuzz_corpus_replays_cleanly() {
    // The directory Cargo names when it runs the test, not the one
    // compiled in: another checkout may have built this test binary.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("fuzz/corpus/job_message");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(body) = std::str::from_utf8(&bytes) else {
            continue;
        };
        replayed += 1;
        match parse(body, "fuzz-message-id") {
            Ok(job) => {
                let again = serde_json::to_string(&job).unwrap();
                assert_eq!(parse(&again, "other-id"), Ok(job), "{}", path.display());
            }
            Err(e) => {
                let code = e.code();
                let (scope, rule) = code.split_once('.').unwrap();
                assert!(
                    !scope.is_empty() && !rule.is_empty(),
                    "{}: {code}",
                    path.display()
                );
            }
        }
    }
    assert!(replayed >= 50, "the corpus was read: {replayed} inputs");
}

#[test]
fn a_key_given_twice_is_ambiguous_and_rejected() {
    let e = parse(r#"{"definition":"render","definition":"train"}"#, "m").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`definition`: appears more than once; the message is ambiguous"
    );
    assert_eq!(e.code(), "definition.duplicate");
    let e = parse(
        r#"{"definition":"render","environment":{"A":"1","B":"2","A":"3"}}"#,
        "m",
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("environment.A"));
    assert_eq!(e.code(), "environment.duplicate");
    // The same name in two objects is no repetition.
    parse(
        r#"{"definition":"render","environment":{"definition":"x"}}"#,
        "m",
    )
    .unwrap();
}

#[test]
fn the_body_must_be_a_json_object_within_the_size_limit() {
    let e = parse("{not json", "m").unwrap_err();
    assert_eq!(e.code(), "body.json");
    assert!(
        e.to_string()
            .starts_with("message body is not JSON: key must be a string"),
        "{e}"
    );
    assert_eq!(
        parse("[1]", "m").unwrap_err(),
        MessageError::NotAnObject { found: "an array" }
    );
    assert_eq!(parse("", "m").unwrap_err().code(), "body.json");

    let pad = |n: usize| format!(r#"{{"definition":"d","command":["{}"]}}"#, "x".repeat(n));
    let fixed = pad(0).len();
    assert!(parse(&pad(lim::MAX_BODY_BYTES - fixed), "m").is_ok());
    assert_eq!(
        parse(&pad(lim::MAX_BODY_BYTES - fixed + 1), "m").unwrap_err(),
        MessageError::BodyTooLarge {
            size: lim::MAX_BODY_BYTES + 1,
            limit: lim::MAX_BODY_BYTES
        }
    );
}

#[test]
fn null_reads_as_not_given() {
    let job = ok(json!({"definition": "render", "cpu": null, "job_id": null}));
    assert_eq!((job.cpu, job.job_id.as_str()), (None, "msg-1"));
}

#[test]
fn a_message_id_that_is_not_a_valid_job_id_is_reported() {
    let e = parse(r#"{"definition":"d"}"#, "bad id").unwrap_err();
    assert_eq!(e.code(), "job_id.characters");
}

#[test]
fn unicode_is_measured_in_characters_and_refused_in_names() {
    let e = err(json!({"definition": "rendér"}));
    assert_eq!(e.code(), "definition.characters");
    let e = err(json!({"definition": "d", "environment": {"NAMÉ": "x"}}));
    assert_eq!(e.code(), "environment.characters");
    // Values may hold any text but NUL (which no argument or variable
    // of a process can hold: see the test of that).
    ok(
        json!({"definition": "d", "environment": {"GREETING": "héllo 🌍"}, "command": ["ëcho", "\u{1}\t"]}),
    );
    // Long wrong-type values are shown cut on a character boundary.
    let e = err(json!({"definition": "d", "cpu": "é".repeat(100)}));
    assert!(e.to_string().ends_with("…"), "{e}");
}
