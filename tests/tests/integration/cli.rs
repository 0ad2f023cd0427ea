//! The `berth` CLI against the local AWS: its commands in-process on a test
//! account, and the binary itself for bad input (one line, non-zero exit).

use std::process::Command;

use berth_cli::{Berth, Submission};
use berth_core::{JobStatus, Route};
use berth_tests::stack::Stack;
use berth_tests::workspace_root;

fn berth(stack: &Stack) -> Berth {
    Berth::new(stack.settings.clone(), stack.clients().clone())
}

#[tokio::test]
async fn submit_status_list_and_cancel() {
    let stack = Stack::new(1).await;
    let cli = berth(&stack);
    let submission = Submission {
        definition: Some("render".into()),
        job_id: Some("cli-1".into()),
        command: vec!["render".into(), "--fast".into()],
        environment: vec![("SCENE".into(), "s1".into())],
        tags: vec![("team".into(), "vision".into())],
        cpu: Some(512),
        ..Submission::default()
    };
    assert_eq!(cli.submit(&submission).await.unwrap(), "cli-1");
    // Without a job id, the CLI gives the job one.
    let anonymous = cli
        .submit(&Submission {
            definition: Some("render".into()),
            ..Submission::default()
        })
        .await
        .unwrap();
    let failed = stack.deliver(&stack.driver(), stack.receive().await).await;
    assert!(failed.is_empty());

    let r = cli.status("cli-1").await.unwrap();
    assert_eq!(
        (r.status, r.route),
        (JobStatus::Dispatched, Some(Route::Ec2))
    );
    let job = r.job.clone().unwrap();
    assert_eq!(job.cpu, 512);
    assert_eq!(job.tags.get("team").map(String::as_str), Some("vision"));
    let shown_tagged = berth_cli::describe(&r);
    assert!(
        shown_tagged.contains("tags          team=vision"),
        "{shown_tagged}"
    );
    let shown = berth_cli::describe(&cli.status(&anonymous).await.unwrap());
    assert!(
        shown.contains(&format!("job           {anonymous}")),
        "{shown}"
    );
    assert!(shown.contains("status        DISPATCHED"), "{shown}");

    let listed = cli
        .list(Some(JobStatus::Dispatched), None, 10)
        .await
        .unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|j| j.job_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec!["cli-1", anonymous.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(
        cli.list(None, Some(Route::Lambda), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let table = berth_cli::table(&listed);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cli-1") && l.contains("DISPATCHED") && l.contains("EC2")),
        "{table}"
    );
    // A 36-character UUID keeps the columns: STATUS starts at one place on
    // every line.
    assert_eq!(anonymous.len(), 36);
    let at: Vec<Option<usize>> = table
        .lines()
        .map(|l| l.find("STATUS").or_else(|| l.find("DISPATCHED")))
        .collect();
    assert_eq!(at.len(), 3, "{table}");
    assert!(at.iter().all(|a| *a == at[0] && a.is_some()), "{table}");
    assert!(at[0].unwrap() > 36, "{table}");

    let said = cli.cancel("cli-1", Some("changed my mind")).await.unwrap();
    assert!(said.starts_with("cli-1: CANCELLED, task arn:"), "{said}");
    assert_eq!(
        cli.status("cli-1").await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(
        cli.list(Some(JobStatus::Cancelled), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(cli.cancel("nobody", None).await.is_err());
    assert!(
        cli.status("nobody")
            .await
            .unwrap_err()
            .to_string()
            .contains("no job `nobody`")
    );
}

/// Each kind of bad definition is refused with its reason, and a file with
/// one bad definition registers none of it.
#[tokio::test]
async fn definitions_put_refuses_each_bad_definition() {
    let stack = Stack::new(0).await;
    let mut settings = stack.settings.clone();
    settings.prefixes = berth_core::definition::Prefixes {
        task_definition: "berth-dev_".into(),
        task_function: "berth-dev_task-".into(),
        job_role: "berth-dev_job-".into(),
    };
    let cli = Berth::new(settings, stack.clients().clone());
    stack
        .register_task_definition("berth-dev_web", true, &["sidecar", "app"])
        .await;
    stack
        .register_task_definition("berth-dev_batch", false, &["main"])
        .await;
    let good = serde_json::json!({
        "name": "web", "task_definition": "berth-dev_web:1", "container": "app",
        "lambda_function": "berth-dev_task-web",
        "job_role": format!("arn:aws:iam::{}:role/berth-dev_job-web", "123456789012"),
        "cpu": 1024, "memory": 2048, "timeout_seconds": 60, "max_attempts": 1, "fargate": true
    });
    let with = |changes: serde_json::Value| {
        let mut def = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            def[k] = v.clone();
        }
        def
    };
    let cases = [
        (
            with(serde_json::json!({"fargte": false})),
            "unknown field `fargte`",
        ),
        (with(serde_json::json!({"cpu": 0})), "`cpu` must be between"),
        (
            with(serde_json::json!({"task_definition": "berth-prod_web"})),
            "`task_definition` names the task definition family `berth-prod_web`, outside `berth-dev_*`",
        ),
        (
            with(serde_json::json!({"lambda_function": "berth-prod_task-web"})),
            "`lambda_function` names the function `berth-prod_task-web`, outside `berth-dev_task-*`",
        ),
        (
            with(serde_json::json!({"job_role": "arn:aws:iam::123456789012:role/admin"})),
            "`job_role` names the role `admin`, outside `berth-dev_job-*`",
        ),
        (
            with(serde_json::json!({"job_role": "berth-dev_job-web"})),
            "`job_role` must be an IAM role ARN",
        ),
        (
            with(serde_json::json!({"task_definition": "berth-dev_nothing"})),
            "task definition `berth-dev_nothing` cannot be read",
        ),
        (
            with(serde_json::json!({"container": "main"})),
            "`container` `main` is not a container of task definition `berth-dev_web:1` (it has: sidecar, app)",
        ),
        (
            with(serde_json::json!({"task_definition": "berth-dev_batch", "container": "main"})),
            "`fargate` is true, but task definition `berth-dev_batch` does not list FARGATE",
        ),
    ];
    let file = std::env::temp_dir().join(format!("berth-bad-defs-{}.json", stack.aws.id));
    for (bad, says) in cases {
        // The good one first: nothing of the file is written.
        std::fs::write(&file, serde_json::json!([good, bad]).to_string()).unwrap();
        let err = cli.put_definitions(&file).await.unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
        let names: Vec<String> = cli
            .definitions_list()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(!names.contains(&"web".to_owned()), "{bad}: {names:?}");
    }
    std::fs::write(&file, serde_json::json!([good]).to_string()).unwrap();
    let (names, _) = cli.put_definitions(&file).await.unwrap();
    assert_eq!(names, ["web"]);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn definitions_put_and_list() {
    let stack = Stack::new(0).await;
    let cli = berth(&stack);
    let file = std::env::temp_dir().join(format!("berth-defs-{}.json", stack.aws.id));
    stack
        .register_task_definition("berth-encode", true, &["main"])
        .await;
    std::fs::write(
        &file,
        r#"[{"name":"encode","task_definition":"berth-encode","container":"main",
             "cpu":2048,"memory":4096,"timeout_seconds":3600,"max_attempts":2,"fargate":true}]"#,
    )
    .unwrap();
    let (names, warnings) = cli.put_definitions(&file).await.unwrap();
    assert_eq!((names, warnings), (vec!["encode".to_owned()], vec![]));
    let names: Vec<String> = cli
        .definitions_list()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["encode", "render", "train"]);
    // The README's example file registers as it is, once its task
    // definitions are (step 3 of deploying; the stack makes
    // berth-dev_example).
    stack
        .register_task_definition("berth-dev_example", true, &["main"])
        .await;
    stack
        .register_task_definition("berth-dev_render", true, &["main"])
        .await;
    stack
        .register_task_definition("berth-dev_thumbnail", true, &["main"])
        .await;
    stack
        .register_task_definition("berth-dev_train", false, &["main"])
        .await;
    let example = workspace_root().join("examples/definitions.json");
    let (names, warnings) = cli.put_definitions(&example).await.unwrap();
    assert_eq!(names, ["example", "render", "thumbnail", "train"]);
    assert!(
        warnings.is_empty(),
        "no instance group, nothing to check: {warnings:?}"
    );
    // With the template's default instance types, `train` (a GPU, 16 GiB)
    // fits none: said when it is registered.
    let mut with_group = stack.settings.clone();
    with_group.scaling = Some(berth_aws::settings::ScalingSettings {
        group: "berth-instances".into(),
        instance_types: vec!["m5.large".into(), "m5a.large".into(), "m6i.large".into()],
        launch_templates: None,
        scale_in_after_seconds: 900,
        headroom: 0,
    });
    let cli_with_group = Berth::new(with_group, stack.clients().clone());
    let (_, warnings) = cli_with_group.put_definitions(&example).await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: job definition `train`")
            && warnings[0].contains("fits no instance type of the group"),
        "{warnings:?}"
    );

    std::fs::write(&file, r#"{"name":"bad","task_definition":"x","container":"main","cpu":0,"memory":4096,"timeout_seconds":60,"max_attempts":1,"fargate":false}"#).unwrap();
    let err = cli.put_definitions(&file).await.unwrap_err().to_string();
    assert!(err.contains("definition `bad`"), "{err}");
    std::fs::remove_file(&file).unwrap();
}

/// Runs the `berth` binary against `stack`, named by the BERTH_*
/// variables; (exit code, stdout, stderr).
pub(crate) fn run_berth(
    stack: &Stack,
    key: &(String, String),
    args: &[&str],
) -> (i32, String, String) {
    run_berth_with(stack, key, args, true)
}

/// Runs the `berth` binary in `stack`'s account, with or without the
/// BERTH_* variables; (exit code, stdout, stderr).
fn run_berth_with(
    stack: &Stack,
    key: &(String, String),
    args: &[&str],
    berth_vars: bool,
) -> (i32, String, String) {
    let s = &stack.settings;
    let mut command = Command::new(berth_tests::built_binary("berth"));
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", &stack.aws.local.endpoint)
        .env("AWS_REGION", &stack.aws.local.region)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    for var in [
        "BERTH_JOBS_TABLE",
        "BERTH_DEFINITIONS_TABLE",
        "BERTH_CLUSTER",
        "BERTH_QUEUE_URL",
        "BERTH_DLQ_URL",
        "BERTH_STACK",
    ] {
        command.env_remove(var);
    }
    if berth_vars {
        command
            .env("BERTH_JOBS_TABLE", &s.jobs_table)
            .env("BERTH_DEFINITIONS_TABLE", &s.definitions_table)
            .env("BERTH_CLUSTER", &s.cluster)
            .env("BERTH_QUEUE_URL", &stack.queue_url);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_input_gets_one_line_and_a_non_zero_exit() {
    let stack = Stack::new(0).await;
    let key = stack.aws.access_key().await;
    let dir = std::env::temp_dir().join(format!("berth-cli-{}", stack.aws.id));
    std::fs::create_dir_all(&dir).unwrap();
    let invalid = dir.join("invalid.json");
    std::fs::write(&invalid, "{\"definition\": ").unwrap();
    let unknown_field = dir.join("typo.json");
    std::fs::write(&unknown_field, r#"{"definition":"render","cpus":2}"#).unwrap();
    let missing = dir.join("missing.json");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["submit", "--file", missing.to_str().unwrap()],
            "cannot read",
        ),
        (
            vec!["submit", "--file", invalid.to_str().unwrap()],
            "message body is not JSON",
        ),
        (
            vec!["submit", "--file", unknown_field.to_str().unwrap()],
            "unknown field `cpus`",
        ),
        (
            vec!["submit", "--definition", "nope"],
            "unknown job definition `nope`",
        ),
        (vec!["submit"], "needs --definition"),
        (
            vec!["definitions", "put", invalid.to_str().unwrap()],
            "not JSON",
        ),
        (vec!["status", "nobody"], "no job `nobody`"),
        // Checked as the driver will: a forced processor the job cannot use.
        (
            vec!["submit", "--definition", "render", "--processor", "lambda"],
            "processor `lambda` cannot run this job: definition `render` has no Lambda function",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run_berth(&stack, &key, &args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("berth: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // And a good one goes through, printing the job id.
    let (code, stdout, stderr) = run_berth(
        &stack,
        &key,
        &[
            "submit",
            "--definition",
            "render",
            "--job-id",
            "from-cli",
            "--env",
            "A=1",
        ],
    );
    assert_eq!((code, stdout.trim()), (0, "from-cli"), "{stderr}");
    // Once recorded, its id is taken: a second job of that id would not run.
    stack.deliver(&stack.driver(), stack.receive().await).await;
    let again = ["submit", "--definition", "render", "--job-id", "from-cli"];
    let (code, stdout, stderr) = run_berth(&stack, &key, &again);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains("job `from-cli` exists already (DISPATCHED)"),
        "{stderr}"
    );
    // `--n-to-n` sends the dependency child by child; the driver checks
    // that it names an array of the same size.
    let follows = [
        "submit",
        "--definition",
        "render",
        "--job-id",
        "follows",
        "--array-size",
        "2",
        "--n-to-n",
        "from-cli:ended",
    ];
    let (code, stdout, stderr) = run_berth(&stack, &key, &follows);
    assert_eq!((code, stdout.trim()), (0, "follows"), "{stderr}");
    stack.deliver(&stack.driver(), stack.receive().await).await;
    let r = stack.record("follows").await;
    assert_eq!(r.status, JobStatus::Rejected);
    assert_eq!(
        r.reason.as_deref(),
        Some(
            "`depends_on`: `from-cli` is `n_to_n`, which needs an array of 2 as this one is; it is no array"
        )
    );
    let (code, _, stderr) = run_berth(
        &stack,
        &key,
        &[
            "submit",
            "--definition",
            "render",
            "--array-size",
            "2",
            "--n-to-n",
            "a:1",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`a:1` is an array's child; --n-to-n names an array"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each option says what it takes: units, and the values allowed.
#[tokio::test]
async fn every_option_says_its_units_and_values() {
    let stack = Stack::new(0).await;
    let key = stack.aws.access_key().await;
    let help = |args: &[&str]| {
        let (code, stdout, stderr) = run_berth(&stack, &key, args);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let submit = help(&["submit", "--help"]);
    for said in [
        "CPU units, 1024 a vCPU",
        "Memory in MiB",
        "GPUs, 0 to 16",
        "Seconds the job may run",
        "auto (berth decides), lambda, ec2 or fargate",
        "default: a new\n          UUID",
    ] {
        let flat = submit.split_whitespace().collect::<Vec<_>>().join(" ");
        let said = said
            .replace("\n", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            flat.contains(&said),
            "submit --help lacks {said:?}:\n{submit}"
        );
    }
    // Every argument and option of every command says what it is.
    let commands: &[&[&str]] = &[
        &["submit"],
        &["status"],
        &["list"],
        &["watch"],
        &["logs"],
        &["cancel"],
        &["definitions", "put"],
        &["definitions", "list"],
        &["simulate"],
        &["thresholds"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let text = help(&args);
        let lines: Vec<&str> = text.lines().collect();
        let items = lines.iter().enumerate().filter(|(_, l)| {
            let t = l.trim_start();
            l.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'))
        });
        let mut seen = 0;
        for (i, line) in items {
            seen += 1;
            // Words, not just `[default: 2]` or `[env: X=]`.
            let words = |t: &str| {
                let mut rest = t.trim().to_owned();
                while let (Some(a), Some(b)) = (rest.find('['), rest.find(']')) {
                    if a > b
                        || !rest[a..].starts_with("[default:")
                            && !rest[a..].starts_with("[env:")
                            && !rest[a..].starts_with("[possible values:")
                            && !rest[a..].starts_with("[aliases:")
                    {
                        break;
                    }
                    rest.replace_range(a..=b, "");
                }
                !rest.trim().is_empty()
            };
            let spec_end = line.trim_start().find("  ");
            let same_line = spec_end.is_some_and(|e| words(&line.trim_start()[e..]));
            let next_line = lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with("          ") && words(n));
            assert!(
                same_line || next_line,
                "{command:?}: `{}` has no help text:\n{text}",
                line.trim()
            );
        }
        assert!(seen >= 2, "{command:?}: no options read:\n{text}");
    }

    let list = help(&["list", "--help"]);
    for status in JobStatus::ALL {
        assert!(list.contains(status.as_str()), "{status:?}:\n{list}");
    }
    for route in ["LAMBDA", "EC2", "FARGATE", "FARGATE_SPOT"] {
        assert!(list.contains(route), "{route}:\n{list}");
    }
}

/// `--stack` finds the tables, queue and cluster from a stack's outputs;
/// `watch` follows a job until it ends, and says so when it does not.
#[tokio::test]
async fn watch_a_job_of_a_stack_named_by_its_outputs() {
    let stack = Stack::new(1).await;
    let key = stack.aws.access_key().await;
    let s = &stack.settings;
    let template = serde_json::json!({
        "Resources": {"Probe": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "berth-stack-probe"}}},
        "Outputs": {
            "JobsTableName": {"Value": s.jobs_table},
            "DefinitionsTableName": {"Value": s.definitions_table},
            "ClusterName": {"Value": s.cluster},
            "JobQueueUrl": {"Value": stack.queue_url},
            "JobDeadLetterQueueUrl": {"Value": {"Ref": "Probe"}},
        }
    });
    stack
        .aws
        .query(
            "cloudformation",
            "2010-05-15",
            "CreateStack",
            &[
                ("StackName", "berth-app"),
                ("TemplateBody", &template.to_string()),
            ],
        )
        .await;
    let berth = |args: &[&str]| run_berth_with(&stack, &key, args, false);

    // Without the variables or a stack, berth says what it misses.
    let (code, _, stderr) = berth(&["list"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("BERTH_JOBS_TABLE"), "{stderr}");
    let (code, _, stderr) = berth(&["--stack", "nope", "list"]);
    assert_eq!((code, stderr.lines().count()), (1, 1), "{stderr}");
    assert!(stderr.contains("no stack `nope`"), "{stderr}");

    let (code, stdout, stderr) = berth(&[
        "--stack",
        "berth-app",
        "submit",
        "--definition",
        "render",
        "--job-id",
        "watched",
    ]);
    assert_eq!((code, stdout.trim()), (0, "watched"), "{stderr}");

    // Not yet taken from the queue: still going at the timeout.
    let (code, stdout, stderr) = berth(&[
        "--stack",
        "berth-app",
        "watch",
        "watched",
        "--interval",
        "1",
        "--timeout",
        "2",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("watched") && stdout.contains("QUEUED"),
        "{stdout}"
    );
    assert_eq!(
        stderr.trim(),
        "berth: some jobs had not ended after 2 s",
        "{stderr}"
    );

    // Dispatched and run to its end, the watch ends with it.
    stack.deliver(&stack.driver(), stack.receive().await).await;
    assert_eq!(stack.record("watched").await.status, JobStatus::Dispatched);
    let lifecycle = stack.lifecycle();
    lifecycle
        .task_changed(&stack.task_exited("watched", 1, 0).await)
        .await
        .unwrap();
    let (code, stdout, stderr) = berth(&["--stack", "berth-app", "watch", "watched"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("SUCCEEDED") && stdout.contains("EC2"),
        "{stdout}"
    );
    // With no job named, nothing is left to watch.
    let (code, stdout, _) = berth(&["--stack", "berth-app", "watch"]);
    assert_eq!((code, stdout.trim()), (0, "no job is running or waiting"));

    // A job that ends otherwise than SUCCEEDED ends the watch with exit 1.
    let (code, _, stderr) = berth(&[
        "--stack",
        "berth-app",
        "submit",
        "--definition",
        "render",
        "--job-id",
        "doomed",
        "--max-attempts",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    stack.deliver(&stack.driver(), stack.receive().await).await;
    lifecycle
        .task_changed(&stack.task_exited("doomed", 1, 3).await)
        .await
        .unwrap();
    let (code, stdout, stderr) = berth(&["--stack", "berth-app", "watch", "watched", "doomed"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        "berth: 1 of 2 jobs did not succeed (FAILED: doomed)"
    );

    // For scripts: JSON, with stable names and ISO 8601 times, parsed back.
    let json = |args: &[&str]| {
        let mut all = vec!["--stack", "berth-app", "--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = berth(&all);
        let value: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}{stderr}"));
        (code, value)
    };
    let is_iso = |v: &serde_json::Value| {
        v.as_str().is_some_and(|t| {
            t.len() >= 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.starts_with("20")
        })
    };
    let (code, job) = json(&["status", "watched"]);
    assert_eq!(code, 0);
    assert_eq!(job["job_id"], "watched");
    assert_eq!(job["status"], "SUCCEEDED");
    assert_eq!(job["route"], "EC2");
    assert_eq!(job["routes"], serde_json::json!(["EC2"]));
    assert!(job["reason"].is_null(), "{job}");
    assert!(
        job["next_try_at"].is_null() && job["waiting_since"].is_null(),
        "{job}"
    );
    for time in ["created_at", "dispatched_at", "ended_at"] {
        assert!(is_iso(&job[time]), "{time}: {job}");
    }
    assert!(
        job["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{job}"
    );
    assert_eq!(job["history"][0]["outcome"], "SUCCEEDED");
    assert!(is_iso(&job["history"][0]["ended_at"]), "{job}");
    assert_eq!(job["job"]["definition"], "render");

    let (code, doomed) = json(&["watch", "doomed"]);
    assert_eq!(code, 1, "a job that failed fails the watch in JSON too");
    assert_eq!(doomed[0]["status"], "FAILED");
    assert_eq!(doomed[0]["routes"], serde_json::json!(["EC2"]), "{doomed}");
    assert!(
        doomed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exit code 3")),
        "{doomed}"
    );

    let (code, listed) = json(&["list", "--status", "succeeded"]);
    assert_eq!(code, 0);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["job_id"], "watched");
    assert!(is_iso(&listed[0]["updated_at"]), "{listed}");

    let (code, t) = json(&[
        "thresholds",
        "--instance",
        "m5.large",
        "--instance",
        "4096:16384",
        "--largest",
        "1024:4096",
    ]);
    assert_eq!(code, 0);
    assert_eq!(t["instances"][1]["holds"], 4, "{t}");
    assert_eq!(
        (&t["per_instance"], &t["scale_in_above"]),
        (&4.into(), &4.into()),
        "{t}"
    );
    // A looping scale-in threshold: said in the JSON, and exit 1.
    let (code, t) = json(&[
        "thresholds",
        "--instance",
        "4096:16384",
        "--largest",
        "1024:4096",
        "--check",
        "1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(t["check"]["loops"], true, "{t}");
    assert!(
        t["check"]["problem"]
            .as_str()
            .unwrap()
            .contains("would loop"),
        "{t}"
    );

    let (code, defs) = json(&["definitions", "list"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = defs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["render", "train"]);

    // As text: times, and the attempts counted in words.
    let (_, text, _) = berth(&["--stack", "berth-app", "status", "doomed"]);
    assert!(
        text.contains(
            "attempts      1 started; 1 failed of 1 allowed; 0 interrupted; 0 waits for capacity"
        ),
        "{text}"
    );
    assert!(text.contains("created       20"), "{text}");
    assert!(text.contains("attempt 1     EC2 FAILED at 20"), "{text}");
    // A job id nothing ever recorded is not waited on for ever.
    let (code, _, stderr) = berth(&[
        "--stack",
        "berth-app",
        "watch",
        "ghost",
        "--interval",
        "1",
        "--wait-for-record",
        "1",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("berth: no record of ghost after 1 s"),
        "{stderr}"
    );
}

/// Without `--job-id` the CLI makes the job's id before sending it: when
/// SendMessage's answer is lost and the SDK sends the message again, both
/// copies name one job, and it runs once.
#[tokio::test]
async fn a_submission_sent_twice_by_a_retry_is_one_job() {
    let stack = Stack::new(1).await;
    let lossy = Berth::new(
        stack.settings.clone(),
        stack.aws.clients_losing_answers("SendMessage", 1),
    );
    let id = lossy
        .submit(&Submission {
            definition: Some("render".into()),
            ..Submission::default()
        })
        .await
        .unwrap();
    let records = stack.receive().await;
    assert_eq!(records.len(), 2, "the SDK sent it again");
    assert!(stack.deliver(&stack.driver(), records).await.is_empty());
    let r = stack.record(&id).await;
    assert_eq!((r.status, r.attempts), (JobStatus::Dispatched, 1), "{r:?}");
    assert_eq!(stack.task_count().await, 1, "one job, launched once");
}
