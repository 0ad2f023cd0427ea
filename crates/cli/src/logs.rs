//! `berth logs`: a job's output, launch by launch, from CloudWatch Logs:
//! an ECS launch's task writes through its container's `awslogs` driver, a
//! Lambda-route launch through the task runtime into its function's log
//! group ([`berth_core::logs`]).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_aws::EcsCluster;
use berth_aws::logs::{Cursor, JobLogs, OutputLine, Source};
use berth_aws::store::JobRecord;
use berth_core::launch::LaunchNumber;
use berth_core::logs::{AwsLogs, OutputStream, lambda_log_group, task_id};
use berth_core::{JobStatus, Route};
use serde::Serialize;

use crate::{Berth, CliError};

/// One launch that started the job, and where its output is.
#[derive(Debug, Clone)]
pub struct Launch {
    pub launch: LaunchNumber,
    pub route: Route,
    /// The ECS task ARN or the Lambda request id.
    pub id: Option<String>,
    /// Where its output is, or why it cannot be read.
    pub source: Result<Source, String>,
}

impl Launch {
    /// `launch 2: ECS task 0f1e… on EC2`, for the header of its lines.
    pub fn title(&self) -> String {
        let what = match (self.route, self.id.as_deref()) {
            (Route::Lambda, Some(id)) if !id.is_empty() => format!("Lambda request {id}"),
            (Route::Lambda, _) => "Lambda".to_owned(),
            (route, Some(arn)) => format!("ECS task {} on {}", task_id(arn), route.as_str()),
            (route, None) => format!("ECS on {}", route.as_str()),
        };
        match &self.source {
            Ok(source) => format!("launch {}: {what} ({})", self.launch, source.describe()),
            Err(why) => format!("launch {}: {what}: {why}", self.launch),
        }
    }
}

/// A line as `--output json` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
pub struct LineView<'a> {
    pub job_id: &'a str,
    pub launch: LaunchNumber,
    pub route: &'static str,
    /// ISO 8601, UTC.
    pub at: String,
    /// `stdout` or `stderr` where the log tells (Lambda); `null` for ECS,
    /// whose `awslogs` driver does not.
    pub stream: Option<OutputStream>,
    pub line: &'a str,
}

impl Berth {
    /// The launches of `record` that started the job (oldest first), each
    /// with where its output is.
    pub async fn launches(&self, record: &JobRecord) -> Vec<Launch> {
        self.launches_known(record, &BTreeMap::new()).await
    }

    /// As [`Berth::launches`], taking the sources in `known` as found
    /// (an ECS launch's stream costs two ECS calls to find).
    async fn launches_known(
        &self,
        record: &JobRecord,
        known: &BTreeMap<LaunchNumber, Source>,
    ) -> Vec<Launch> {
        let mut started: BTreeMap<LaunchNumber, (Route, Option<String>)> = BTreeMap::new();
        for end in &record.history {
            if let Some(route) = end.route {
                started.insert(end.launch, (route, end.id.clone()));
            }
        }
        let running = matches!(record.status, JobStatus::Dispatched | JobStatus::Running);
        if let (true, Some(route)) = (running, record.route) {
            let id = match route {
                Route::Lambda => record.request_id.clone(),
                _ => record.task_arn.clone(),
            };
            started.entry(record.launch).or_insert((route, id));
        }
        let mut launches = Vec::with_capacity(started.len());
        for (launch, (route, id)) in started {
            let source = match known.get(&launch) {
                Some(source) => Ok(source.clone()),
                None => self.source(record, launch, route, id.as_deref()).await,
            };
            launches.push(Launch {
                launch,
                route,
                id,
                source,
            });
        }
        launches
    }

    async fn source(
        &self,
        record: &JobRecord,
        launch: LaunchNumber,
        route: Route,
        id: Option<&str>,
    ) -> Result<Source, String> {
        let job = record
            .job
            .as_ref()
            .ok_or("the record keeps no resolved job")?;
        if route == Route::Lambda {
            let function = job
                .lambda_function
                .as_deref()
                .ok_or("its definition names no Lambda function")?;
            return Ok(Source::Tagged {
                group: lambda_log_group(function),
                job_id: record.job_id.clone(),
                launch,
            });
        }
        let task_arn = id.ok_or("no task was recorded for it")?;
        let ecs = EcsCluster::for_deployment(&self.settings, &self.clients);
        let (driver, options) = ecs
            .container_log_configuration(task_arn, &job.task_definition, &job.container)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "task definition `{}` has no container `{}`",
                    job.task_definition, job.container
                )
            })?;
        let logs = AwsLogs::from_options(&job.container, driver.as_deref(), &options)
            .map_err(|e| e.to_string())?;
        let stream = logs
            .stream(&job.container, task_arn)
            .map_err(|e| e.to_string())?;
        Ok(Source::Stream {
            group: logs.group,
            stream,
        })
    }
}

/// How long `berth logs --follow` waits for a job's record (its message
/// taken from the queue by the driver) before the id counts as unknown.
pub const WAIT_FOR_RECORD: Duration = Duration::from_secs(60);

/// What `berth logs` does: prints the job's output through `print` (a
/// launch's header through `header`), once or, with `follow`, until the job
/// has ended and its last lines are in (waiting up to [`WAIT_FOR_RECORD`]
/// for a job just submitted to be recorded). Returns the job's record as it
/// last read it.
pub async fn logs(
    berth: &Berth,
    reader: &JobLogs,
    job_id: &str,
    only: Option<LaunchNumber>,
    follow: Option<Duration>,
    mut print: impl FnMut(&Launch, &OutputLine),
    mut header: impl FnMut(&Launch),
) -> Result<JobRecord, CliError> {
    let mut cursors: BTreeMap<LaunchNumber, Cursor> = BTreeMap::new();
    let mut known: BTreeMap<LaunchNumber, Source> = BTreeMap::new();
    // Empty reads since the job was seen ended: logs arrive a few seconds
    // after they are written (the awslogs driver batches them).
    let mut quiet_after_end = 0;
    let started = std::time::Instant::now();
    loop {
        let record = match (berth.status(job_id).await, follow) {
            (Ok(record), _) => record,
            (Err(CliError::Failed(_)), Some(every)) if started.elapsed() < WAIT_FOR_RECORD => {
                tokio::time::sleep(every).await;
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        let ended = record.status.is_final();
        let mut any = false;
        for launch in berth.launches_known(&record, &known).await {
            if only.is_some_and(|n| n != launch.launch) {
                continue;
            }
            let fresh = !cursors.contains_key(&launch.launch);
            let cursor = cursors.entry(launch.launch).or_default();
            if fresh {
                header(&launch);
            }
            let Ok(source) = &launch.source else {
                continue;
            };
            known.insert(launch.launch, source.clone());
            let lines = reader.read(source, cursor).await?;
            any |= !lines.is_empty();
            for line in &lines {
                print(&launch, line);
            }
        }
        let Some(every) = follow else {
            return Ok(record);
        };
        if ended {
            quiet_after_end = if any { 0 } else { quiet_after_end + 1 };
            if quiet_after_end >= 2 {
                return Ok(record);
            }
        }
        tokio::time::sleep(every).await;
    }
}
