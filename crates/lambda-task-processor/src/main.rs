//! berth-lambda-task-processor: the entrypoint of a Lambda container image
//! that also holds a job's program. Each invocation (an asynchronous invoke
//! by the driver, payload: the job and its launch) runs the job's command as
//! a child process and records it in the job store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_aws::{JobQueue, JobStore, Settings};
use berth_core::launch::LambdaTask;
use berth_lambda_task_processor::sandbox::Sandbox;
use berth_lambda_task_processor::{Ran, Runtime};
use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};

/// The image's own command for jobs and definitions that name none: a JSON
/// array of strings, or words separated by spaces.
const DEFAULT_COMMAND: &str = "BERTH_COMMAND";

/// The directory emptied after each job (`/tmp` on Lambda): what a job
/// writes there is not left for the next. Unset, nothing is removed (as
/// under `cargo lambda watch`, where `/tmp` is the developer's).
const SCRATCH: &str = "BERTH_SCRATCH";

/// The invocation's deadline. Lambda gives it in epoch milliseconds; an
/// emulator may give something else (`cargo lambda watch` sends its invoke
/// timeout): a deadline already past is taken as Lambda's longest, 900 s
/// from now, so the job's own timeout decides.
fn invocation_deadline(deadline_ms: u64) -> SystemTime {
    let now = SystemTime::now();
    let given = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    if given > now {
        given
    } else {
        tracing::warn!(
            deadline_ms,
            "the invocation's deadline is already past; using 900 s from now"
        );
        now + Duration::from_secs(900)
    }
}

#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    // The job runs once per launch: recording its start and its end are
    // writes that a run of throttling or 5xx answers must not lose.
    let clients = berth_aws::Clients::new(&berth_aws::load_sdk_config_with_attempts(8).await);
    let default_command = std::env::var(DEFAULT_COMMAND).ok().and_then(|v| {
        serde_json::from_str::<Vec<String>>(&v)
            .ok()
            .or_else(|| Some(v.split_whitespace().map(String::from).collect()))
            .filter(|c: &Vec<String>| !c.is_empty())
    });
    let mut runtime = Runtime::new(
        JobStore::new(clients.dynamodb.clone(), &settings.jobs_table),
        settings
            .queue_url
            .as_ref()
            .map(|url| JobQueue::new(clients.sqs.clone(), url)),
        default_command,
    )
    .with_sandbox(Sandbox::new(
        std::env::var_os(SCRATCH).map(std::path::PathBuf::from),
    ))
    .with_roles(berth_aws::JobRoles::new(clients.sts.clone()))
    .with_definitions(berth_aws::Definitions::for_deployment(&settings, &clients))
    .with_prices(settings.prices.clone())
    .with_spending_day(settings.spending_day);
    if let Some(seconds) = settings.heartbeat_seconds {
        runtime.heartbeat = Duration::from_secs(u64::from(seconds));
    }
    if let Err(why) = &runtime.protected {
        tracing::error!(
            problem = why.as_str(),
            "jobs will not run: the runtime cannot keep its credentials from them"
        );
    }
    let runtime = &runtime;
    run(service_fn(
        move |event: LambdaEvent<LambdaTask>| async move {
            let deadline = invocation_deadline(event.context.deadline);
            let task = event.payload;
            // Boxed: the run's future is deep for the compiler's layout.
            let ran = Box::pin(runtime.run(&task, &event.context.request_id, deadline)).await?;
            if runtime.must_exit() {
                // The job's end is recorded; Lambda retries this invoke in
                // another sandbox, which finds it so and runs nothing.
                std::process::exit(1);
            }
            match &ran {
                Ran::Skipped { status } => tracing::info!(
                    job_id = task.job.job_id,
                    launch = task.launch,
                    status = status.map_or("unknown", |s| s.as_str()),
                    "launch not run: it is not the job's current one, or it ran already"
                ),
                Ran::Ended {
                    status, exit_code, ..
                } => {
                    if status.is_final() {
                        berth_aws::metrics::count("JobsEnded", Some(("Status", status.as_str())));
                    }
                    tracing::info!(
                        job_id = task.job.job_id,
                        launch = task.launch,
                        status = status.as_str(),
                        exit_code,
                        "job ended"
                    )
                }
            }
            Ok::<_, Error>(ran.answer(&task))
        },
    ))
    .await
}
