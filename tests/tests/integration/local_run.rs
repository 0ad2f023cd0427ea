//! The local run as a user starts and stops it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{local_aws, workspace_root};

/// The local run as a user meets it: what it prints is all a shell needs
/// to reach it (in an environment with nothing else, `berth` lists its
/// definitions and runs a job to its end); told to stop with SIGTERM (as
/// `timeout`, `kill` or a process manager does), it stops everything it
/// started, as on Ctrl-C: its `cargo lambda watch` and the functions under
/// it.
#[test]
fn the_local_run_is_reached_with_what_it_prints_and_stopped_by_sigterm() {
    // The local AWS of the tests: the run uses it, and leaves it running.
    let aws = local_aws();
    let state = kept_state("sigterm");
    let Run {
        mut run,
        output,
        port,
        seen,
        exports,
    } = Run::start(&state, &[]);
    for needed in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "BERTH_JOBS_TABLE",
        "BERTH_QUEUE_URL",
    ] {
        assert!(
            exports.iter().any(|(k, _)| k == needed),
            "{needed} not printed:\n{seen}"
        );
    }
    let berth = |args: &[&str]| berth_with(&exports, args);
    let (code, listed, stderr) = berth(&["definitions", "list"]);
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["render", "train", "reindex", "thumbnail"] {
        assert!(listed.contains(name), "{name}:\n{listed}");
    }
    let (code, id, stderr) = berth(&["submit", "--definition", "thumbnail", "--env", "INPUT=x"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, watched, stderr) =
        berth(&["watch", id.trim(), "--interval", "1", "--timeout", "120"]);
    assert_eq!(code, Some(0), "{watched}{stderr}");
    assert!(watched.contains("SUCCEEDED"), "{watched}");
    // The run's own window told the job's way as it went.
    let id = id.trim();
    let told = format!("job {id} SUCCEEDED LAMBDA launch 1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut activity = String::new();
    while !activity.contains(&told) {
        let Ok(line) = output.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            panic!("the run never said `{told}`:\n{activity}");
        };
        activity.push_str(&line);
        activity.push('\n');
    }
    assert!(activity.contains(&format!("job {id} ")), "{activity}");

    // Its console: the URL it printed opens it and shows the job; without
    // the token, nothing.
    let url = seen
        .lines()
        .find_map(|l| l.strip_prefix("console: "))
        .unwrap_or_else(|| panic!("no console URL:\n{seen}"));
    let (head, _) = http_get(url, None);
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie: "))
        .and_then(|l| l["set-cookie: ".len()..].split(';').next())
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    let jobs = url.split('?').next().unwrap();
    let (head, page) = http_get(jobs, Some(cookie));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(page.contains(&format!(r#"href="/jobs/{id}""#)), "{page}");
    // The job's page: its output, as `berth logs` read it above.
    let (head, page) = http_get(&jobs.replace("/jobs", &format!("/jobs/{id}")), Some(cookie));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(page.contains("thumbnail of x"), "{page}");
    let (head, _) = http_get(jobs, None);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    // `berth logs`: the Lambda-route job's output, from its function's log
    // group, the launch's header on stderr.
    let (code, out, stderr) = berth(&["logs", id]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(out, "thumbnail of x\n", "{stderr}");
    assert!(
        stderr.contains("== launch 1: Lambda request ")
            && stderr.contains("/aws/lambda/berth-lambda-task-processor"),
        "{stderr}"
    );
    // An ECS job, followed from its submission to its end: its task's
    // awslogs stream (here the played container's lines).
    let (code, ecs_id, stderr) = berth(&[
        "submit",
        "--definition",
        "render",
        "--env",
        "PLAY_SECONDS=2",
        "--",
        "berth-job",
        "render",
        "s1",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let ecs_id = ecs_id.trim();
    let (code, out, stderr) = berth(&["logs", "--follow", "--interval", "1", ecs_id]);
    assert_eq!(code, Some(0), "{stderr}");
    if seen.contains("ECS tasks run as real containers") {
        assert!(
            out.contains("rendering scene s1 for 2 s")
                && out
                    .trim_end()
                    .ends_with("wrote /work/s1.frame, 65536 bytes"),
            "{out}{stderr}"
        );
    } else {
        assert!(
            out.contains("a played container (no Docker engine): `berth-job render s1`, for 2 s")
                && out.trim_end().ends_with("exit code 0"),
            "{out}{stderr}"
        );
    }
    assert!(
        stderr.contains("== launch 1: ECS task ")
            && stderr.contains("/berth/local/tasks render/main/"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("job {ecs_id} ended SUCCEEDED")),
        "{stderr}"
    );
    // As JSON: one object per line, with its launch, route and time.
    let (code, out, stderr) = berth(&["--output", "json", "logs", id]);
    assert_eq!(code, Some(0), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["job_id"], id);
    assert_eq!(line["launch"], 1);
    assert_eq!(line["route"], "LAMBDA");
    assert_eq!(line["stream"], "stdout");
    assert_eq!(line["line"], "thumbnail of x");
    assert!(line["at"].as_str().unwrap().ends_with('Z'), "{line}");
    // An unknown job is an error, at once without --follow.
    let (code, _, stderr) = berth(&["logs", "no-such-job"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no job `no-such-job`"), "{stderr}");
    let port = port.unwrap_or_else(|| panic!("no watch port in:\n{seen}"));
    let listening = || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok();
    assert!(listening(), "cargo lambda watch listens on {port}:\n{seen}");
    let watch = processes_with(&["lambda", "watch", &port.to_string()]);
    assert!(!watch.is_empty(), "cargo lambda watch is running");

    let killed = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("terminated (SIGTERM)"), "{stderr}");
    assert!(!listening(), "cargo lambda watch still listens on {port}");
    for pid in &watch {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "cargo lambda watch (pid {pid}) is still running"
        );
    }
    // The local AWS the run did not start is left as it was.
    assert!(TcpStream::connect(aws.endpoint.trim_start_matches("http://")).is_ok());
    let _ = std::fs::remove_file(&state);
}

/// Started again while the local AWS runs, the local run takes up its
/// last account: the same key, so a shell that took its variables still
/// reaches it, and the jobs it ran; `--reset` starts from a new account.
#[test]
fn the_local_run_keeps_its_account_across_restarts_unless_reset() {
    let aws = local_aws();
    let state = kept_state("restart");
    let first = Run::start(&state, &[]);
    assert!(
        first.seen.contains("the account is kept in"),
        "{}",
        first.seen
    );
    let (code, id, stderr) = berth_with(
        &first.exports,
        &["submit", "--definition", "thumbnail", "--env", "INPUT=kept"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let id = id.trim().to_owned();
    let (code, out, stderr) = berth_with(&first.exports, &["watch", &id, "--timeout", "120"]);
    assert_eq!(code, Some(0), "{out}{stderr}");
    let exports = first.exports.clone();
    first.stop();

    let again = Run::start(&state, &[]);
    assert!(
        again.seen.contains("taking up the last run's account"),
        "{}",
        again.seen
    );
    assert_eq!(again.exports, exports, "the same variables reach it");
    let (code, status, stderr) = berth_with(&exports, &["status", &id]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(status.contains("SUCCEEDED"), "{status}");
    let (code, out, stderr) = berth_with(&exports, &["logs", &id]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "thumbnail of kept\n"),
        "{stderr}"
    );
    again.stop();

    let reset = Run::start(&state, &["--reset"]);
    let key = |e: &[(String, String)]| {
        e.iter()
            .find(|(k, _)| k == "AWS_ACCESS_KEY_ID")
            .map(|(_, v)| v.clone())
    };
    assert_ne!(key(&reset.exports), key(&exports), "a new account");
    let (code, _, stderr) = berth_with(&reset.exports, &["status", &id]);
    assert_eq!(
        code,
        Some(1),
        "the last account's job is not in the new one"
    );
    assert!(stderr.contains(&format!("no job `{id}`")), "{stderr}");
    reset.stop();
    assert!(TcpStream::connect(aws.endpoint.trim_start_matches("http://")).is_ok());
    let _ = std::fs::remove_file(&state);
}

/// With a Docker engine, the local run's ECS tasks are real containers and
/// end as ECS ends them: a job's output is in its task's log stream; exit
/// code 3 fails the attempt with code 3; a cancel stops the container with
/// SIGTERM, which its process sees; a timeout kills a container that
/// ignores SIGTERM; an interruption stops the first container and the
/// second runs to its end. Without an engine this says so and passes,
/// unless `BERTH_REQUIRE_ENGINE` is set.
#[test]
fn real_containers_end_as_ecs_ends_them() {
    let _aws = local_aws();
    let state = kept_state("real");
    let run = Run::start(&state, &["--reset"]);
    if !run.seen.contains("ECS tasks run as real containers") {
        assert!(
            std::env::var_os("BERTH_REQUIRE_ENGINE").is_none(),
            "no real containers:\n{}",
            run.seen
        );
        eprintln!("no Docker engine with the job image: nothing to run this test on");
        run.stop();
        return;
    }
    let e = &run.exports;
    let account = run
        .seen
        .lines()
        .find_map(|l| l.strip_prefix("provisioned account "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no account in:\n{}", run.seen))
        .to_owned();
    let submit = |args: &[&str]| {
        let mut all = vec!["submit", "--definition", "render"];
        all.extend_from_slice(args);
        let (code, id, stderr) = berth_with(e, &all);
        assert_eq!(code, Some(0), "{stderr}");
        id.trim().to_owned()
    };
    let render = submit(&["--", "berth-job", "render", "s1"]);
    let fail = submit(&["--max-attempts", "1", "--", "berth-job", "fail", "3"]);
    let cancel = submit(&["--", "berth-job", "sleep", "300"]);
    let stubborn = submit(&["--timeout", "3", "--", "berth-job", "stubborn", "300"]);
    let interrupted = submit(&[
        "--env",
        "PLAY_INTERRUPT=1",
        "--env",
        "PLAY_SECONDS=4",
        "--",
        "berth-job",
        "render",
        "s8",
    ]);
    // Interrupted on Fargate Spot, then short of Fargate Spot capacity:
    // its second launch goes on Fargate on demand at once.
    let short = submit(&[
        "--env",
        "PLAY_INTERRUPT=1",
        "--env",
        "PLAY_SPOT_SHORTFALL=2",
        "--env",
        "PLAY_SECONDS=4",
        "--",
        "berth-job",
        "render",
        "s9",
    ]);
    let logs = |id: &str| berth_with(e, &["logs", id]).1;
    let wait_for = |id: &str, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = logs(id);
            if text.contains(what) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never printed {what:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait_for(&cancel, "sleeping 300 s");
    let (code, _, stderr) = berth_with(e, &["cancel", &cancel]);
    assert_eq!(code, Some(0), "{stderr}");
    let jobs = watched(
        e,
        &[&render, &fail, &cancel, &stubborn, &interrupted, &short],
        180,
    );
    let job = |id: &str| jobs[id].clone();
    assert_eq!(job(&render)["status"], "SUCCEEDED", "{jobs:?}");
    wait_for(&render, "wrote /work/s1.frame, 65536 bytes");

    assert_eq!(job(&fail)["status"], "FAILED", "{jobs:?}");
    let (_, status, _) = berth_with(e, &["--output", "json", "status", &fail]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["exit_code"], 3, "{status}");
    wait_for(&fail, "failing with exit code 3");

    assert_eq!(job(&cancel)["status"], "CANCELLED", "{jobs:?}");
    wait_for(&cancel, "got SIGTERM, stopping");

    assert_eq!(job(&stubborn)["status"], "TIMED_OUT", "{jobs:?}");
    let text = wait_for(&stubborn, "ignoring SIGTERM for 300 s");
    assert!(!text.contains("got SIGTERM"), "{text}");

    assert_eq!(job(&interrupted)["status"], "SUCCEEDED", "{jobs:?}");
    assert_eq!(job(&interrupted)["attempts"], 2, "{jobs:?}");
    let (_, first, _) = berth_with(e, &["logs", "--launch", "1", &interrupted]);
    assert!(first.contains("got SIGTERM, stopping"), "{first}");
    let (_, second, _) = berth_with(e, &["logs", "--launch", "2", &interrupted]);
    assert!(
        second.contains("launch 2: wrote /work/s8.frame"),
        "{second}"
    );

    // Renders tolerate interruption: Fargate Spot, and again after one.
    assert_eq!(job(&render)["route"], "FARGATE_SPOT", "{jobs:?}");
    assert_eq!(job(&interrupted)["route"], "FARGATE_SPOT", "{jobs:?}");
    // Interrupted on Fargate Spot, then none there: on demand, and the
    // interruption is not a failure of the job.
    assert_eq!(job(&short)["status"], "SUCCEEDED", "{jobs:?}");
    assert_eq!(job(&short)["route"], "FARGATE", "{jobs:?}");
    let (_, status, _) = berth_with(e, &["--output", "json", "status", &short]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["interruptions"], 1, "{status}");
    assert_eq!(status["history"][0]["route"], "FARGATE_SPOT", "{status}");
    assert_eq!(status["history"][0]["outcome"], "INTERRUPTED", "{status}");
    assert_eq!(status["history"][1]["route"], "FARGATE", "{status}");
    assert_eq!(status["history"][1]["outcome"], "SUCCEEDED", "{status}");

    // Every container is gone while the run goes on: ended, or stopped
    // (the stubborn one killed after its grace), then removed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let own = workspace_root().join(berth_local::engine::OWN_SOCKET);
        let engine = berth_local::engine::Engine::connect_or(&own).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = engine.labelled("berth.account", &account).await.unwrap();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "containers left: {left:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // Stopped, the run takes its running containers with it.
    let left_running = submit(&["--", "berth-job", "sleep", "300"]);
    wait_for(&left_running, "sleeping 300 s");
    run.stop();
    rt.block_on(async {
        let own = workspace_root().join(berth_local::engine::OWN_SOCKET);
        let engine = berth_local::engine::Engine::connect_or(&own).await.unwrap();
        let left = engine.labelled("berth.account", &account).await.unwrap();
        assert!(left.is_empty(), "containers left after the run: {left:?}");
    });
    let _ = std::fs::remove_file(&state);
}

/// Where a test's local run keeps its account (not the developer's own).
pub(crate) fn kept_state(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "berth-local-run-{name}-{}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// A `berth-local run`, with what it printed up to `ready`.
pub(crate) struct Run {
    run: std::process::Child,
    /// Its later lines, as they come.
    pub(crate) output: std::sync::mpsc::Receiver<String>,
    /// The port of its `cargo lambda watch`.
    port: Option<u16>,
    pub(crate) seen: String,
    /// The `export NAME='value'` lines, as a shell would take them.
    pub(crate) exports: Vec<(String, String)>,
}

impl Run {
    pub(crate) fn start(state: &std::path::Path, args: &[&str]) -> Self {
        let state = state.to_string_lossy();
        let mut all = vec!["run", "--state", &state];
        all.extend_from_slice(args);
        let mut run = Self::spawn(&all);
        run.read_until(|line| line == "ready", Duration::from_secs(300));
        run
    }

    /// `berth-local ARGS`, its output read as it comes.
    pub(crate) fn spawn(args: &[&str]) -> Self {
        let mut run = Command::new(berth_tests::built_binary("berth-local"))
            .args(args)
            .current_dir(workspace_root())
            .env("CARGO_MANIFEST_DIR", workspace_root().join("crates/local"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, output) = std::sync::mpsc::channel::<String>();
        let stdout = run.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            run,
            output,
            port: None,
            seen: String::new(),
            exports: Vec::new(),
        }
    }

    /// Reads its lines into `seen` until one is what `until` asks, within
    /// `within`; that line, or `None` when it never came. The `export`
    /// lines read are its exports.
    pub(crate) fn read_until(
        &mut self,
        until: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut found = None;
        while let Ok(line) = self
            .output
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push_str(&line);
            self.seen.push('\n');
            if let Some(rest) = line.strip_prefix("cargo lambda watch on http://127.0.0.1:") {
                self.port = rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
            }
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                self.exports
                    .push((k.to_owned(), v.trim_matches('\'').to_owned()));
            }
            if until(&line) {
                found = Some(line);
                break;
            }
        }
        found
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.run.id()
    }

    /// Everything it has printed so far, as one text (what a failing test
    /// shows).
    pub(crate) fn said(&mut self) -> &str {
        while let Ok(line) = self.output.try_recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        &self.seen
    }

    /// SIGTERM, and its end.
    pub(crate) fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.run.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.run.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "still running 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `berth` with `exports` alone in its environment; (exit code,
/// stdout, stderr).
pub(crate) fn berth_with(
    exports: &[(String, String)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let out = Command::new(berth_tests::built_binary("berth"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(exports.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `berth --output json watch IDS --timeout SECONDS`: each job as it
/// ended (or stood at the timeout), by id.
pub(crate) fn watched(
    exports: &[(String, String)],
    ids: &[&str],
    timeout: u32,
) -> std::collections::HashMap<String, serde_json::Value> {
    let mut args = vec!["--output", "json", "watch"];
    args.extend_from_slice(ids);
    let timeout = timeout.to_string();
    args.extend(["--timeout", timeout.as_str()]);
    let (_, out, stderr) = berth_with(exports, &args);
    let jobs: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{stderr}"));
    let jobs: std::collections::HashMap<String, serde_json::Value> = jobs
        .into_iter()
        .map(|j| (j["job_id"].as_str().unwrap().to_owned(), j))
        .collect();
    for id in ids {
        assert!(jobs.contains_key(*id), "{id} not in {jobs:?}");
    }
    jobs
}

/// The processes whose command line holds every one of `words`.
fn processes_with(words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if words.iter().all(|w| args.iter().any(|a| a == w)) {
            found.push(pid);
        }
    }
    found
}

/// A plain HTTP/1.1 GET of `url` (`http://127.0.0.1:PORT/...`), with the
/// console's cookie when given: the head (its lines `\n`-separated) and
/// the body.
fn http_get(url: &str, cookie: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.replace("\r\n", "\n"), body.to_owned())
}
