//! CloudWatch Logs: a job's output where its launches wrote it (feature
//! `logs`: the CLI reads it, the local run writes what AWS would). Where
//! each route writes is in [`berth_core::logs`].

use std::collections::HashMap;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use berth_core::launch::LaunchNumber;
use berth_core::logs::{JobLine, OutputStream};

use crate::AwsError;

/// Where one launch's output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An ECS task's container: its `awslogs` stream.
    Stream { group: String, stream: String },
    /// A Lambda-route launch: the lines the task runtime tagged with the job
    /// and the launch, in the function's log group.
    Tagged {
        group: String,
        job_id: String,
        launch: LaunchNumber,
    },
}

impl Source {
    /// Where it is, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Stream { group, stream } => format!("{group} {stream}"),
            Self::Tagged { group, job_id, .. } => format!("{group}, lines tagged {job_id}"),
        }
    }
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// When CloudWatch Logs took it, in epoch milliseconds.
    pub at: i64,
    /// Which stream of the process wrote it, where the log tells (the
    /// `awslogs` driver does not).
    pub stream: Option<OutputStream>,
    pub line: String,
}

/// Where reading a source left off: the next read returns only what came
/// after it.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    /// GetLogEvents' forward token.
    token: Option<String>,
    /// FilterLogEvents: the newest event seen, and the events seen at it.
    since: i64,
    seen: HashMap<String, i64>,
}

#[derive(Debug, Clone)]
pub struct JobLogs {
    logs: Client,
    /// The streams [`JobLogs::put`] has made (or found) so far.
    made: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

impl JobLogs {
    pub fn new(logs: Client) -> Self {
        Self {
            logs,
            made: std::sync::Arc::default(),
        }
    }

    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(config))
    }

    /// The lines of `source` after `cursor`, oldest first. A group or stream
    /// that does not exist yet (nothing written so far) has none.
    pub async fn read(
        &self,
        source: &Source,
        cursor: &mut Cursor,
    ) -> Result<Vec<OutputLine>, AwsError> {
        let read = match source {
            Source::Stream { group, stream } => self.stream(group, stream, cursor).await,
            Source::Tagged {
                group,
                job_id,
                launch,
            } => self.tagged(group, job_id, *launch, cursor).await,
        };
        match read {
            Err(e) if e.is_code("ResourceNotFoundException") => Ok(Vec::new()),
            other => other,
        }
    }

    async fn stream(
        &self,
        group: &str,
        stream: &str,
        cursor: &mut Cursor,
    ) -> Result<Vec<OutputLine>, AwsError> {
        let mut lines = Vec::new();
        loop {
            let out = self
                .logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(cursor.token.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("logs:GetLogEvents", e))?;
            lines.extend(out.events().iter().map(|e| OutputLine {
                at: e.timestamp().unwrap_or_default(),
                stream: None,
                line: e.message().unwrap_or_default().to_owned(),
            }));
            // The same token back: the end of the stream, for now.
            let next = out.next_forward_token().map(str::to_owned);
            let end = next.is_none() || next == cursor.token || out.events().is_empty();
            if next.is_some() {
                cursor.token = next;
            }
            if end {
                return Ok(lines);
            }
        }
    }

    async fn tagged(
        &self,
        group: &str,
        job_id: &str,
        launch: LaunchNumber,
        cursor: &mut Cursor,
    ) -> Result<Vec<OutputLine>, AwsError> {
        let mut lines = Vec::new();
        let mut newest = cursor.since;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .logs
                .filter_log_events()
                .log_group_name(group)
                .filter_pattern(JobLine::filter_pattern(job_id))
                .start_time(cursor.since)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("logs:FilterLogEvents", e))?;
            for event in out.events() {
                let id = event.event_id().unwrap_or_default();
                let at = event.timestamp().unwrap_or_default();
                if cursor.seen.insert(id.to_owned(), at).is_some() {
                    continue;
                }
                newest = newest.max(at);
                let Some(tagged) = event.message().and_then(JobLine::read) else {
                    continue;
                };
                if tagged.job_id == job_id && tagged.launch == launch {
                    lines.push(OutputLine {
                        at,
                        stream: Some(tagged.stream),
                        line: tagged.line,
                    });
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        // Events are read again from the newest one's millisecond on (more
        // may arrive with the same time); the ids seen before it can go.
        cursor.since = newest;
        cursor.seen.retain(|_, at| *at >= newest);
        lines.sort_by_key(|l| l.at);
        Ok(lines)
    }

    /// Writes `events` (epoch milliseconds, message) to `group`/`stream`,
    /// making both first when they do not exist, as a log driver does.
    pub async fn put(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
    ) -> Result<(), AwsError> {
        if events.is_empty() {
            return Ok(());
        }
        let key = (group.to_owned(), stream.to_owned());
        let known = self.made.lock().is_ok_and(|made| made.contains(&key));
        if !known {
            self.make(group, stream).await?;
            if let Ok(mut made) = self.made.lock() {
                made.insert(key);
            }
        }
        let mut sorted: Vec<&(i64, String)> = events.iter().collect();
        sorted.sort_by_key(|(at, _)| *at);
        // PutLogEvents takes 10,000 events at most.
        for chunk in sorted.chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|(at, message)| {
                    InputLogEvent::builder()
                        .timestamp(*at)
                        .message(message)
                        .build()
                        .map_err(|e| AwsError {
                            operation: "logs:PutLogEvents",
                            code: None,
                            message: e.to_string(),
                            retryable: false,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.logs
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(batch))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("logs:PutLogEvents", e))?;
        }
        Ok(())
    }

    /// Makes `group` and its `stream`, where they are not yet (what a
    /// create makes may exist already: that is no error).
    async fn make(&self, group: &str, stream: &str) -> Result<(), AwsError> {
        let made = |e: AwsError| {
            if e.is_code("ResourceAlreadyExistsException") {
                Ok(())
            } else {
                Err(e)
            }
        };
        if let Err(e) = self
            .logs
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
        {
            made(AwsError::from_sdk("logs:CreateLogGroup", e))?;
        }
        let stream_made = self
            .logs
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await;
        if let Err(e) = stream_made {
            made(AwsError::from_sdk("logs:CreateLogStream", e))?;
        }
        Ok(())
    }
}
