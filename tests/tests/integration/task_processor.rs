//! The Lambda-side runtime with real child processes, recording in the
//! local AWS's job store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use berth_aws::JobQueue;
use berth_aws::store::{Change, Created};
use berth_core::launch::LambdaTask;
use berth_core::logs::JobLine;
use berth_core::{JobStatus, Route, job, resolve};
use berth_lambda_task_processor::runtime::Stream;
use berth_lambda_task_processor::{Ran, Runtime};
use berth_tests::stack::{Stack, render};

/// What the job wrote, line by line, with when each line arrived.
type Lines = Arc<Mutex<Vec<(Stream, Instant, usize, String)>>>;

/// A job recorded and dispatched on the Lambda route, as the driver leaves it.
pub(crate) async fn dispatched(stack: &Stack, body: &str) -> LambdaTask {
    dispatched_with_role(stack, body, None).await
}

/// The same, of a definition that names `job_role`.
async fn dispatched_with_role(stack: &Stack, body: &str, job_role: Option<String>) -> LambdaTask {
    let request = job::parse(body, "m-1").unwrap();
    let definition = berth_core::JobDefinition {
        lambda_function: Some("berth-task-demo".into()),
        job_role,
        ..render()
    };
    let job = resolve(&request, Some(&definition)).unwrap();
    let store = stack.store();
    assert_eq!(store.accept(&job, "m-1", 0).await.unwrap(), Created::New);
    let change = Change {
        route: Some(Route::Lambda),
        add_attempt: true,
        expect_launch: Some(1),
        ..Change::default()
    };
    store
        .transition(&job.job_id, JobStatus::Dispatched, change, 1)
        .await
        .unwrap();
    LambdaTask { job, launch: 1 }
}

fn runtime(stack: &Stack) -> (Runtime, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let mut rt = Runtime::new(stack.store(), None, None).with_output(Arc::new(move |s, l| {
        // Each line of the job comes tagged with the job and its launch.
        let text = std::str::from_utf8(l).unwrap();
        let tagged = JobLine::read(text).unwrap_or_else(|| panic!("not a tagged line: {text}"));
        assert_eq!((tagged.launch, tagged.stream), (1, s), "{text}");
        let line = tagged.line;
        let mut v = sink.lock().unwrap();
        // Keep the first characters only: the size is what the tests count.
        v.push((
            s,
            Instant::now(),
            line.len(),
            line.chars().take(80).collect(),
        ));
    }));
    rt.grace = Duration::from_millis(500);
    rt.margin = Duration::from_millis(200);
    (rt, lines)
}

fn far() -> SystemTime {
    SystemTime::now() + Duration::from_secs(900)
}

#[tokio::test]
async fn a_job_that_succeeds_gets_its_environment_and_its_output_logged() {
    let stack = Stack::new(0).await;
    let (rt, lines) = runtime(&stack);
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-ok","definition":"render","environment":{"GREETING":"hello"},
            "command":["sh","-c","echo \"$GREETING from $BERTH_JOB_ID/$BERTH_LAUNCH\"; test \"$GREETING\" = hello"]}"#,
    )
    .await;
    let ran = rt.run(&task, "req-1", far()).await.unwrap();
    assert_eq!(
        ran,
        Ran::Ended {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            reason: None
        }
    );
    let r = stack.record("l-ok").await;
    assert_eq!((r.status, r.exit_code), (JobStatus::Succeeded, Some(0)));
    assert_eq!(r.request_id.as_deref(), Some("req-1"));
    assert_eq!(r.history[0].outcome, "SUCCEEDED");
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, Stream::Stdout);
    assert_eq!(lines[0].3, "hello from l-ok/1");
}

/// The invoke's payload names the job and its launch, nothing more: one
/// that says another command and another job role (whoever may invoke the
/// function wrote it) runs the job as the driver recorded it.
#[tokio::test]
async fn the_job_runs_as_recorded_whatever_the_invoke_payload_says() {
    let stack = Stack::new(0).await;
    let (rt, lines) = runtime(&stack);
    let recorded = dispatched(
        &stack,
        r#"{"job_id":"l-pointer","definition":"render","command":["echo","as recorded"]}"#,
    )
    .await;
    let mut forged = recorded.clone();
    forged.job.command = Some(vec!["echo".into(), "forged".into()]);
    forged.job.job_role = Some(format!("arn:aws:iam::{}:role/admin", stack.aws.id));
    forged.job.timeout_seconds = 86_400;
    let ran = rt.run(&forged, "req-forged", far()).await.unwrap();
    assert_eq!(
        ran,
        Ran::Ended {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            reason: None
        },
        "no job role assumed: the record names none"
    );
    let said: Vec<String> = lines.lock().unwrap().iter().map(|l| l.3.clone()).collect();
    assert_eq!(said, ["as recorded"]);
    let r = stack.record("l-pointer").await;
    let timeout = i64::from(recorded.job.timeout_seconds);
    assert!(
        r.deadline
            .is_some_and(|d| d <= berth_aws::store::now_ms() / 1000 + timeout),
        "the deadline is the recorded job's: {:?}",
        r.deadline
    );
}

/// A job whose definition names a job role runs with that role's
/// credentials, assumed for it (the session named after the job), and sees
/// nothing of the runtime's own: not its keys, not its `BERTH_*` settings.
#[tokio::test]
async fn a_job_with_a_job_role_gets_that_roles_credentials_alone() {
    let stack = Stack::new(0).await;
    let (rt, _) = runtime(&stack);
    let rt = rt.with_roles(berth_aws::JobRoles::new(stack.clients().sts.clone()));
    let out = std::env::temp_dir().join(format!("berth-role-env-{}", stack.aws.id));
    let role = format!("arn:aws:iam::{}:role/berth-job-reader", stack.aws.id);
    let body = serde_json::json!({
        "job_id": "l-role", "definition": "render",
        "environment": {"OUT": out.display().to_string()},
        "command": ["sh", "-c", "env > \"$OUT\""],
    });
    let task = dispatched_with_role(&stack, &body.to_string(), Some(role)).await;
    let ran = rt.run(&task, "req-role", far()).await.unwrap();
    assert!(
        matches!(
            &ran,
            Ran::Ended {
                status: JobStatus::Succeeded,
                ..
            }
        ),
        "{ran:?}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let env: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(
        !env.keys().any(|k| k.starts_with("BERTH_")
            && !["BERTH_JOB_ID", "BERTH_LAUNCH", "BERTH_ATTEMPT"].contains(k)),
        "{text}"
    );
    assert!(!env.contains_key("AWS_LAMBDA_RUNTIME_API"), "{text}");
    let key = env
        .get("AWS_ACCESS_KEY_ID")
        .copied()
        .unwrap_or_else(|| panic!("no key: {text}"));
    assert_ne!(key, "testing", "the runtime's own key reached the job");
    // Who the job is to AWS: the role, in a session named after the job.
    let credentials = aws_sdk_sqs::config::Credentials::new(
        key,
        env["AWS_SECRET_ACCESS_KEY"],
        Some(env["AWS_SESSION_TOKEN"].to_owned()),
        None,
        "job",
    );
    let as_job = stack.aws.clients_signing_as(credentials).await;
    let me = as_job.sts.get_caller_identity().send().await.unwrap();
    assert_eq!(
        me.arn(),
        Some(
            format!(
                "arn:aws:sts::{}:assumed-role/berth-job-reader/l-role",
                stack.aws.id
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn a_failing_job_records_its_exit_code_and_the_end_of_its_stderr() {
    let stack = Stack::new(0).await;
    let (rt, _) = runtime(&stack);
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-bad","definition":"render","max_attempts":1,
            "command":["sh","-c","for i in $(seq 1 30); do echo line $i >&2; done; echo boom >&2; exit 3"]}"#,
    )
    .await;
    let ran = rt.run(&task, "req-2", far()).await.unwrap();
    assert!(
        matches!(
            &ran,
            Ran::Ended {
                status: JobStatus::Failed,
                exit_code: Some(3),
                ..
            }
        ),
        "{ran:?}"
    );
    let r = stack.record("l-bad").await;
    assert_eq!(
        (r.status, r.exit_code, r.failures),
        (JobStatus::Failed, Some(3), 1)
    );
    let reason = r.reason.unwrap();
    assert!(
        reason.starts_with("exit code 3; stderr ends:\n"),
        "{reason}"
    );
    assert!(reason.ends_with("line 30\nboom"), "{reason}");
    assert!(
        !reason.contains("line 11\n"),
        "only the last 20 lines: {reason}"
    );
}

#[tokio::test]
async fn a_job_past_its_timeout_is_stopped_and_timed_out() {
    let stack = Stack::new(0).await;
    let (rt, _) = runtime(&stack);
    // Ignores SIGTERM, so it takes SIGKILL after the grace period.
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-slow","definition":"render","timeout_seconds":1,
            "command":["sh","-c","trap '' TERM; sleep 30"]}"#,
    )
    .await;
    let started = Instant::now();
    let ran = rt.run(&task, "req-3", far()).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    assert!(
        matches!(&ran, Ran::Ended { status: JobStatus::TimedOut, reason: Some(r), .. } if r.contains("timeout of 1 s")),
        "{ran:?}"
    );
    assert_eq!(stack.record("l-slow").await.status, JobStatus::TimedOut);

    // Lambda's deadline comes first: stopped before it, with time to record.
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-deadline","definition":"render","timeout_seconds":600,"command":["sleep","30"]}"#,
    )
    .await;
    let deadline = SystemTime::now() + Duration::from_secs(2);
    let ran = rt.run(&task, "req-4", deadline).await.unwrap();
    assert!(
        SystemTime::now() < deadline,
        "recorded before Lambda's deadline"
    );
    assert!(
        matches!(&ran, Ran::Ended { status: JobStatus::TimedOut, reason: Some(r), .. } if r.contains("Lambda function's deadline")),
        "{ran:?}"
    );
}

#[tokio::test]
async fn output_larger_than_a_lambda_response_is_streamed() {
    let stack = Stack::new(0).await;
    let (rt, lines) = runtime(&stack);
    // 8 MB of output (Lambda answers at most 6 MB), after a first line and a pause.
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-big","definition":"render",
            "command":["sh","-c","echo first; sleep 1; head -c 8000000 /dev/zero | tr '\\0' x | fold -w 99"]}"#,
    )
    .await;
    let ran = rt.run(&task, "req-5", far()).await.unwrap();
    assert!(
        matches!(
            ran,
            Ran::Ended {
                status: JobStatus::Succeeded,
                ..
            }
        ),
        "{ran:?}"
    );
    let lines = lines.lock().unwrap();
    let bytes: usize = lines.iter().map(|l| l.2).sum();
    assert!(bytes > 8_000_000, "{bytes}");
    let first = lines[0].1;
    let last = lines.last().unwrap().1;
    assert_eq!(lines[0].3, "first");
    assert!(
        last.duration_since(first) >= Duration::from_millis(900),
        "the first line was passed on while the job still ran"
    );
}

#[tokio::test]
async fn a_duplicate_invocation_runs_nothing() {
    let stack = Stack::new(0).await;
    let (rt, _) = runtime(&stack);
    let marker = std::env::temp_dir().join(format!("berth-dup-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let body = format!(
        r#"{{"job_id":"l-dup","definition":"render","command":["sh","-c","echo ran >> {}"]}}"#,
        marker.display()
    );
    let task = dispatched(&stack, &body).await;
    assert!(matches!(
        rt.run(&task, "req-6", far()).await.unwrap(),
        Ran::Ended {
            status: JobStatus::Succeeded,
            ..
        }
    ));
    // Lambda delivers the same event again, and an older launch turns up.
    assert_eq!(
        rt.run(&task, "req-6-retry", far()).await.unwrap(),
        Ran::Skipped {
            status: Some(JobStatus::Succeeded)
        }
    );
    let old = LambdaTask {
        launch: 0,
        ..task.clone()
    };
    assert!(matches!(
        rt.run(&old, "req-7", far()).await.unwrap(),
        Ran::Skipped { .. }
    ));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
    let _ = std::fs::remove_file(&marker);
}

#[tokio::test]
async fn lost_answers_to_taking_and_ending_the_launch_still_run_the_job_once() {
    let stack = Stack::new(0).await;
    let runs = std::env::temp_dir().join(format!("berth-lost-answers-{}", stack.aws.id));
    let task = dispatched(
        &stack,
        &format!(
            r#"{{"job_id":"l-lost","definition":"render","command":["sh","-c","echo run >> {}"]}}"#,
            runs.display()
        ),
    )
    .await;
    // Both writes, DISPATCHED → RUNNING and RUNNING → SUCCEEDED, are made
    // and their answers lost; the SDK retries each.
    let clients = stack.aws.clients_losing_answers("UpdateItem", 2);
    let rt = Runtime::new(
        berth_aws::JobStore::new(clients.dynamodb.clone(), &stack.settings.jobs_table),
        None,
        None,
    );
    let ran = rt.run(&task, "req-lost", far()).await.unwrap();
    assert_eq!(
        ran,
        Ran::Ended {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            reason: None
        }
    );
    let r = stack.record("l-lost").await;
    assert_eq!((r.status, r.history.len()), (JobStatus::Succeeded, 1));
    // Lambda's retry of the same invocation runs nothing more.
    let again = rt.run(&task, "req-lost", far()).await.unwrap();
    assert_eq!(
        again,
        Ran::Skipped {
            status: Some(JobStatus::Succeeded)
        }
    );
    let ran_times = std::fs::read_to_string(&runs).unwrap().lines().count();
    let _ = std::fs::remove_file(&runs);
    assert_eq!(ran_times, 1);
}

/// The job failed and went back to `ACCEPTED` for its next attempt, but the
/// queue refused that attempt's message: the invocation fails, and Lambda's
/// retry of it (the same request id) sends the message and runs nothing.
#[tokio::test]
async fn a_retried_invocation_sends_the_next_attempt_whose_message_was_lost() {
    let stack = Stack::new(0).await;
    let runs = std::env::temp_dir().join(format!("berth-lost-requeue-{}", stack.aws.id));
    let task = dispatched(
        &stack,
        &format!(
            r#"{{"job_id":"l-requeue","definition":"render","max_attempts":2,"command":["sh","-c","echo run >> {}; exit 1"]}}"#,
            runs.display()
        ),
    )
    .await;
    let refusing = stack.aws.clients_stopping_before("SendMessage");
    let rt = Runtime::new(
        stack.store(),
        Some(JobQueue::new(refusing.sqs.clone(), &stack.queue_url)),
        None,
    );
    assert!(rt.run(&task, "req-rq", far()).await.is_err());
    let r = stack.record("l-requeue").await;
    assert_eq!(
        (r.status, r.failures, r.claimed_at),
        (JobStatus::Accepted, 1, None)
    );
    assert!(stack.receive().await.is_empty(), "no next attempt queued");

    let mut rt = Runtime::new(
        stack.store(),
        Some(JobQueue::new(stack.clients().sqs.clone(), &stack.queue_url)),
        None,
    );
    rt.dispatch_wait = Duration::from_secs(1);
    assert_eq!(
        rt.run(&task, "req-rq", far()).await.unwrap(),
        Ran::Skipped {
            status: Some(JobStatus::Accepted)
        }
    );
    // Queued, due when the record says the next attempt is (the first
    // retry's 10 s), not sooner.
    let next_try_at = stack.record("l-requeue").await.next_try_at.unwrap();
    assert!(next_try_at > berth_aws::store::now_ms(), "{next_try_at}");
    assert!(stack.receive().await.is_empty(), "not due yet");
    let delayed = stack
        .clients()
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        delayed
            .attributes()
            .and_then(|a| a
                .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed))
            .map(String::as_str),
        Some("1"),
        "the next attempt is queued"
    );
    let ran_times = std::fs::read_to_string(&runs).unwrap().lines().count();
    let _ = std::fs::remove_file(&runs);
    assert_eq!(ran_times, 1);
}

/// While the job runs, the runtime touches its record, so that the sweep
/// tells a long run from a sandbox that died with its job.
#[tokio::test]
async fn the_runtime_touches_the_record_while_the_job_runs() {
    let stack = Stack::new(0).await;
    let (mut rt, _) = runtime(&stack);
    rt.heartbeat = Duration::from_millis(200);
    let task = dispatched(
        &stack,
        r#"{"job_id":"l-beat","definition":"render","command":["sleep","1.5"]}"#,
    )
    .await;
    let running = tokio::spawn({
        let task = task.clone();
        async move { rt.run(&task, "req-beat", far()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = stack.record("l-beat").await;
    assert_eq!(started.status, JobStatus::Running);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = stack.record("l-beat").await;
    assert_eq!(later.status, JobStatus::Running);
    assert!(
        later.updated_at > started.updated_at,
        "touched while it ran: {:?} then {:?}",
        started.updated_at,
        later.updated_at
    );
    assert!(matches!(
        running.await.unwrap().unwrap(),
        Ran::Ended {
            status: JobStatus::Succeeded,
            ..
        }
    ));
}

/// A job cancelled while it runs on the Lambda route is stopped by the
/// runtime at its next heartbeat, not left to run out its time beside
/// what berth records; the cancel's end stands, and nothing of the run is
/// written over it.
#[tokio::test]
async fn a_job_cancelled_while_it_runs_is_stopped_at_the_next_heartbeat() {
    let stack = Stack::new(0).await;
    let (mut rt, _) = runtime(&stack);
    rt.heartbeat = Duration::from_millis(200);
    let pid_file = std::env::temp_dir().join(format!("berth-cancel-{}", stack.aws.id));
    let _ = std::fs::remove_file(&pid_file);
    let body = serde_json::json!({
        "job_id": "l-cancel", "definition": "render",
        "environment": {"PID_FILE": pid_file.display().to_string()},
        "command": ["sh", "-c", "echo $$ > \"$PID_FILE\"; exec sleep 60"],
    });
    let task = dispatched(&stack, &body.to_string()).await;
    let running = tokio::spawn({
        let task = task.clone();
        async move { rt.run(&task, "req-cancel", far()).await }
    });
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = pid.trim().parse::<u32>()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cancelled = berth_aws::operations::cancel(
        &stack.store(),
        &stack.cluster(),
        None,
        "l-cancel",
        Some("no longer wanted"),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            cancelled,
            berth_aws::operations::Cancelled::Cancelled { .. }
        ),
        "{cancelled:?}"
    );
    let ran = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stopped within a heartbeat and the grace, not after its 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(
        ran,
        Ran::Skipped {
            status: Some(JobStatus::Cancelled)
        }
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the job's process {pid} is gone"
    );
    let r = stack.record("l-cancel").await;
    assert_eq!(r.status, JobStatus::Cancelled);
    assert!(r.reason.unwrap_or_default().contains("no longer wanted"));
    let _ = std::fs::remove_file(&pid_file);
}

/// A run whose end could not be recorded (the job store refused every
/// try) fails its invocation; Lambda's retry of it, in the same warm
/// sandbox, records that end: the job is not run again, nor left RUNNING
/// for the sweep to call dead.
#[tokio::test]
async fn a_run_whose_end_was_not_recorded_is_recorded_by_the_retry() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stack = Stack::new(0).await;
    let failing = Arc::new(AtomicBool::new(false));
    let clients = stack
        .aws
        .clients_failing_while("UpdateItem", failing.clone());
    let store = berth_aws::JobStore::new(clients.dynamodb.clone(), &stack.settings.jobs_table);
    let mut rt = Runtime::new(store, None, None);
    rt.grace = Duration::from_millis(500);
    rt.margin = Duration::from_millis(200);
    let marker = std::env::temp_dir().join(format!("berth-unrecorded-{}", stack.aws.id));
    let _ = std::fs::remove_file(&marker);
    let body = serde_json::json!({
        "job_id": "l-unrecorded", "definition": "render",
        "environment": {"MARKER": marker.display().to_string()},
        "command": ["sh", "-c", "echo ran >> \"$MARKER\"; sleep 1"],
    });
    let task = dispatched(&stack, &body.to_string()).await;
    let running = tokio::spawn({
        let (rt, task) = (rt.clone(), task.clone());
        async move { rt.run(&task, "req-unrecorded", far()).await }
    });
    while stack.record("l-unrecorded").await.status != JobStatus::Running {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failing.store(true, Ordering::SeqCst);
    let first = running.await.unwrap();
    assert!(first.is_err(), "{first:?}");
    assert_eq!(
        stack.record("l-unrecorded").await.status,
        JobStatus::Running
    );

    failing.store(false, Ordering::SeqCst);
    let retried = rt.run(&task, "req-unrecorded", far()).await.unwrap();
    assert_eq!(
        retried,
        Ran::Ended {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            reason: None
        }
    );
    assert_eq!(
        stack.record("l-unrecorded").await.status,
        JobStatus::Succeeded
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "ran\n",
        "run once"
    );
    let _ = std::fs::remove_file(&marker);
}

/// The driver invoked the function but its record of the launch is late
/// (throttled, or the driver stopped after the invoke): past its wait, the
/// runtime records the launch itself and runs the job, once; the driver's
/// own write then finds it taken. The job does not sit DISPATCHED for hours
/// with nothing to run it.
#[tokio::test]
async fn a_launch_the_driver_has_not_recorded_is_recorded_by_the_runtime_and_run() {
    let stack = Stack::new(0).await;
    let (mut rt, lines) = runtime(&stack);
    rt.dispatch_wait = Duration::from_millis(300);
    let request = job::parse(
        r#"{"job_id":"l-late","definition":"render","command":["echo","ran"]}"#,
        "m-1",
    )
    .unwrap();
    let definition = berth_core::JobDefinition {
        lambda_function: Some("berth-task-demo".into()),
        ..render()
    };
    let job = resolve(&request, Some(&definition)).unwrap();
    let store = stack.store();
    // Accepted with launch 1 claimed; the invoke is made, its record not.
    assert_eq!(store.accept(&job, "m-1", 0).await.unwrap(), Created::New);
    let r = stack.record("l-late").await;
    assert_eq!((r.status, r.launch), (JobStatus::Accepted, 1));
    assert!(r.claimed_at.is_some());
    let task = LambdaTask { job, launch: 1 };
    let ran = rt.run(&task, "req-late", far()).await.unwrap();
    assert_eq!(
        ran,
        Ran::Ended {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            reason: None
        }
    );
    let said: Vec<String> = lines.lock().unwrap().iter().map(|l| l.3.clone()).collect();
    assert_eq!(said, ["ran"]);
    let r = stack.record("l-late").await;
    assert_eq!(
        (r.status, r.attempts, r.route, r.launch),
        (JobStatus::Succeeded, 1, Some(Route::Lambda), 1)
    );

    // The driver's write comes at last: refused, nothing counted twice.
    let change = Change {
        route: Some(Route::Lambda),
        add_attempt: true,
        expect_launch: Some(1),
        ..Change::default()
    };
    assert!(matches!(
        store
            .transition("l-late", JobStatus::Dispatched, change, 2)
            .await
            .unwrap(),
        berth_aws::store::Changed::Refused(_)
    ));
    assert_eq!(stack.record("l-late").await.attempts, 1);
}
