//! Where a job's output is in CloudWatch Logs.
//!
//! - An ECS job's container writes through the `awslogs` log driver of its
//!   task definition: to the group `awslogs-group`, in the stream
//!   `<awslogs-stream-prefix>/<container>/<task id>` ([`AwsLogs::stream`]).
//! - A Lambda-route job's process writes through the task runtime, which
//!   tags each line with the job and launch ([`JobLine`], one JSON object per
//!   line) in its function's log group (`/aws/lambda/<function>` unless the
//!   function's logging configuration names another). Many jobs share that
//!   group, one after another in one sandbox's stream: a job's lines are
//!   found by the job id and told apart by the tag.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::launch::LaunchNumber;
use crate::text::cut;

/// Which of the job's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Most bytes of a job's line in one tagged line: a CloudWatch Logs event
/// holds 256 KiB, and JSON may write a byte as six (`\u001b`). A longer
/// line is split over several tagged lines.
pub const LINE_MAX_BYTES: usize = 32 * 1024;

/// One line of a Lambda-route job's output, as the task runtime writes it to
/// its function's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLine {
    pub job_id: String,
    pub launch: LaunchNumber,
    pub stream: OutputStream,
    /// The line without its line end; bytes that are not UTF-8 are replaced
    /// (U+FFFD).
    pub line: String,
}

impl JobLine {
    /// The tagged lines for `bytes` (one line of the job's output, with or
    /// without its line end), each ending in `\n`: one, or more for a line
    /// longer than [`LINE_MAX_BYTES`].
    pub fn tag(job_id: &str, launch: LaunchNumber, stream: OutputStream, bytes: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(bytes);
        let mut rest = text.trim_end_matches(['\n', '\r']);
        let mut out = Vec::with_capacity(rest.len() + 96);
        loop {
            let part = cut(rest, LINE_MAX_BYTES);
            // A line of characters wider than the bound still moves on.
            let part = if part.is_empty() && !rest.is_empty() {
                &rest[..rest.chars().next().map_or(0, char::len_utf8)]
            } else {
                part
            };
            let line = Self {
                job_id: job_id.to_owned(),
                launch,
                stream,
                line: part.to_owned(),
            };
            if serde_json::to_writer(&mut out, &line).is_ok() {
                out.push(b'\n');
            }
            rest = &rest[part.len()..];
            if rest.is_empty() {
                return out;
            }
        }
    }

    /// The tagged line in a log event's message, if it is one.
    pub fn read(message: &str) -> Option<Self> {
        let message = message.trim_end();
        if !message.starts_with('{') {
            return None;
        }
        serde_json::from_str(message).ok()
    }

    /// A CloudWatch Logs filter pattern that matches the lines of `job_id`
    /// (and of any job whose id contains it: [`JobLine::read`] and the job
    /// id tell them apart). Job ids are letters, digits, `_` and `-`, which
    /// a quoted term takes as they are.
    pub fn filter_pattern(job_id: &str) -> String {
        format!("\"{job_id}\"")
    }
}

/// The log group of a Lambda function named by name or ARN
/// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`), by
/// Lambda's default.
pub fn lambda_log_group(function: &str) -> String {
    let name = match function.strip_prefix("arn:") {
        Some(_) => function.split(':').nth(6).unwrap_or(function),
        None => function,
    };
    format!("/aws/lambda/{name}")
}

/// The id of a task (the last part of its ARN).
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// A container's `awslogs` log configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogs {
    pub group: String,
    pub region: Option<String>,
    pub stream_prefix: Option<String>,
}

/// Why a container's output cannot be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    #[error(
        "container `{container}` does not log to CloudWatch Logs (its log driver is {driver}, not awslogs)"
    )]
    NotAwsLogs { container: String, driver: String },
    #[error("container `{container}` has no `awslogs-group` option")]
    NoGroup { container: String },
    #[error(
        "container `{container}` has no `awslogs-stream-prefix`: its streams are named after Docker's container ids, which ECS does not report"
    )]
    NoStreamPrefix { container: String },
}

impl AwsLogs {
    /// The configuration of `container` from its log driver and options.
    pub fn from_options(
        container: &str,
        driver: Option<&str>,
        options: &HashMap<String, String>,
    ) -> Result<Self, LogsError> {
        match driver {
            Some("awslogs") => {}
            other => {
                return Err(LogsError::NotAwsLogs {
                    container: container.to_owned(),
                    driver: other.unwrap_or("not set").to_owned(),
                });
            }
        }
        let group = options
            .get("awslogs-group")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| LogsError::NoGroup {
                container: container.to_owned(),
            })?;
        Ok(Self {
            group: group.clone(),
            region: options.get("awslogs-region").cloned(),
            stream_prefix: options
                .get("awslogs-stream-prefix")
                .filter(|p| !p.is_empty())
                .cloned(),
        })
    }

    /// The stream the `awslogs` driver writes `container` of `task_arn` to:
    /// `<prefix>/<container>/<task id>`.
    pub fn stream(&self, container: &str, task_arn: &str) -> Result<String, LogsError> {
        let prefix = self
            .stream_prefix
            .as_deref()
            .ok_or_else(|| LogsError::NoStreamPrefix {
                container: container.to_owned(),
            })?;
        Ok(format!("{prefix}/{container}/{}", task_id(task_arn)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_line_reads_back_as_the_line_without_its_end() {
        let tagged = JobLine::tag("job-1", 2, OutputStream::Stderr, b"half \xff done\r\n");
        assert!(tagged.ends_with(b"}\n"));
        let text = String::from_utf8(tagged).unwrap();
        let line = JobLine::read(&text).unwrap();
        assert_eq!(line.job_id, "job-1");
        assert_eq!(line.launch, 2);
        assert_eq!(line.stream, OutputStream::Stderr);
        assert_eq!(line.line, "half \u{fffd} done");
        // A line of the job that is itself JSON stays inside the tag.
        let json = JobLine::tag("j", 1, OutputStream::Stdout, br#"{"job_id":"other"}"#);
        let read = JobLine::read(std::str::from_utf8(&json).unwrap()).unwrap();
        assert_eq!(read.job_id, "j");
        assert_eq!(read.line, r#"{"job_id":"other"}"#);
    }

    #[test]
    fn a_line_longer_than_a_log_event_is_split_and_nothing_lost() {
        let mut long = "é".repeat(LINE_MAX_BYTES);
        long.push_str("\u{1b}end");
        let tagged = JobLine::tag("j", 1, OutputStream::Stdout, long.as_bytes());
        let lines: Vec<JobLine> = std::str::from_utf8(&tagged)
            .unwrap()
            .lines()
            .map(|l| {
                assert!(l.len() < 256 * 1024);
                JobLine::read(l).unwrap()
            })
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.line.len() <= LINE_MAX_BYTES));
        let joined: String = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(joined, long);
        // An empty line is one empty tagged line.
        let empty = JobLine::tag("j", 1, OutputStream::Stdout, b"\n");
        let empty = JobLine::read(std::str::from_utf8(&empty).unwrap()).unwrap();
        assert_eq!(empty.line, "");
    }

    #[test]
    fn other_log_lines_are_not_job_lines() {
        for message in [
            "START RequestId: 1 Version: $LATEST",
            r#"{"level":"INFO","message":"took the launch"}"#,
            "{not json",
        ] {
            assert_eq!(JobLine::read(message), None, "{message}");
        }
    }

    #[test]
    fn a_functions_log_group_is_named_after_its_name() {
        assert_eq!(
            lambda_log_group("berth-dev_task-x"),
            "/aws/lambda/berth-dev_task-x"
        );
        assert_eq!(
            lambda_log_group(
                "arn:aws:lambda:eu-west-1:123456789012:function:berth-dev_task-x:live"
            ),
            "/aws/lambda/berth-dev_task-x"
        );
    }

    #[test]
    fn an_awslogs_stream_is_prefix_container_and_task_id() {
        let options = HashMap::from([
            ("awslogs-group".to_owned(), "/berth/dev/tasks".to_owned()),
            ("awslogs-stream-prefix".to_owned(), "render".to_owned()),
        ]);
        let logs = AwsLogs::from_options("main", Some("awslogs"), &options).unwrap();
        assert_eq!(logs.group, "/berth/dev/tasks");
        assert_eq!(
            logs.stream("main", "arn:aws:ecs:us-east-1:1:task/berth/0f1e2d3c")
                .unwrap(),
            "render/main/0f1e2d3c"
        );
        let without = AwsLogs::from_options(
            "main",
            Some("awslogs"),
            &HashMap::from([("awslogs-group".to_owned(), "g".to_owned())]),
        )
        .unwrap();
        assert!(matches!(
            without.stream("main", "t"),
            Err(LogsError::NoStreamPrefix { .. })
        ));
        assert!(matches!(
            AwsLogs::from_options("main", Some("json-file"), &options),
            Err(LogsError::NotAwsLogs { .. })
        ));
        assert!(matches!(
            AwsLogs::from_options("main", Some("awslogs"), &HashMap::new()),
            Err(LogsError::NoGroup { .. })
        ));
    }
}
