//! Real containers on the Docker engine (`scripts/local-engine`), with the
//! job image `scripts/local-images` makes: output, exit codes, ECS's stop
//! (SIGTERM, then SIGKILL after the grace period), the host's network and
//! the limits. Without an engine these tests say so and pass, unless
//! `BERTH_REQUIRE_ENGINE` is set (CI sets it, having started one).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_local::engine::{Engine, Line, Spec, State};
use futures::StreamExt;

const IMAGE: &str = "berth-local/job:1";

/// The engine, or `None` (the test has nothing to run on) when there is
/// none and none is required.
async fn engine() -> Option<Engine> {
    let required = std::env::var_os("BERTH_REQUIRE_ENGINE").is_some();
    let own = berth_tests::workspace_root().join(berth_local::engine::OWN_SOCKET);
    match Engine::connect_or(&own).await {
        Ok(engine) if engine.has_image(IMAGE).await => Some(engine),
        Ok(_) if required => panic!("no image {IMAGE}: run scripts/local-images"),
        Err(e) if required => panic!("no Docker engine: {e}"),
        _ => {
            eprintln!("no Docker engine with {IMAGE}: nothing to run this test on");
            None
        }
    }
}

fn spec(args: &[&str]) -> Spec {
    static N: AtomicU32 = AtomicU32::new(0);
    Spec {
        name: format!(
            "berth-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        image: IMAGE.into(),
        command: (!args.is_empty()).then(|| args.iter().map(|a| (*a).to_owned()).collect()),
        environment: vec![
            ("BERTH_JOB_ID".into(), "job-1".into()),
            ("BERTH_LAUNCH".into(), "1".into()),
        ],
        ..Spec::default()
    }
}

/// A container of `spec`, its lines gathered as they come.
struct Running {
    id: String,
    lines: Arc<Mutex<Vec<Line>>>,
}

impl Running {
    async fn start(engine: &Engine, spec: &Spec) -> Self {
        let id = engine.run(spec).await.unwrap();
        let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
        let sink = lines.clone();
        let mut stream = Box::pin(engine.lines(&id));
        tokio::spawn(async move {
            while let Some(line) = stream.next().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self { id, lines }
    }

    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|l| format!("{}{}\n", if l.stderr { "err: " } else { "" }, l.text))
            .collect()
    }

    /// Waits until a line holds `what`.
    async fn said(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "never said {what:?}:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the end of the container's process; its exit code.
    async fn exit_code(&self, engine: &Engine) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match engine.state(&self.id).await.unwrap() {
                State::Exited { code, .. } => return code,
                State::Gone => panic!("container {} is gone", self.id),
                State::Running => {}
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn remove(self, engine: &Engine) {
        engine.remove(&self.id).await.unwrap();
        assert_eq!(engine.state(&self.id).await.unwrap(), State::Gone);
    }
}

#[tokio::test]
async fn a_jobs_output_and_exit_code_are_its_processs() {
    let Some(engine) = engine().await else { return };
    let failing = Running::start(&engine, &spec(&["berth-job", "fail"])).await;
    assert_eq!(failing.exit_code(&engine).await, 3);
    failing
        .said("err: berth-job job-1 launch 1: failing with exit code 3")
        .await;
    failing.remove(&engine).await;

    let render = Running::start(&engine, &spec(&["berth-job", "render", "s1"])).await;
    assert_eq!(render.exit_code(&engine).await, 0);
    render
        .said("berth-job job-1 launch 1: wrote /work/s1.frame, 65536 bytes")
        .await;
    render.remove(&engine).await;

    // No command: the image's own, as the played containers ran.
    let mut played = spec(&[]);
    played.environment.extend([
        ("PLAY_SECONDS".to_owned(), "0".to_owned()),
        ("PLAY_EXIT".to_owned(), "5".to_owned()),
    ]);
    let played = Running::start(&engine, &played).await;
    assert_eq!(played.exit_code(&engine).await, 5);
    played.said("done, exit code 5").await;
    played.remove(&engine).await;
}

#[tokio::test]
async fn a_stop_sends_sigterm_and_the_process_ends_on_it() {
    let Some(engine) = engine().await else { return };
    let job = Running::start(&engine, &spec(&["berth-job", "sleep", "300"])).await;
    job.said("sleeping 300 s").await;
    engine.stop(&job.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(job.exit_code(&engine).await, 143);
    job.said("got SIGTERM, stopping").await;
    job.remove(&engine).await;
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_is_killed_after_the_grace() {
    let Some(engine) = engine().await else { return };
    let job = Running::start(&engine, &spec(&["berth-job", "stubborn", "300"])).await;
    job.said("ignoring SIGTERM").await;
    let asked = Instant::now();
    engine.stop(&job.id, Duration::from_secs(2)).await.unwrap();
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "it had its grace"
    );
    assert_eq!(job.exit_code(&engine).await, 137, "SIGKILL");
    assert!(!job.text().contains("got SIGTERM"), "{}", job.text());
    job.remove(&engine).await;
}

/// A job reaches the local AWS on loopback: the container has the host's
/// network. Its CPU and memory are limited as its task asks.
#[tokio::test]
async fn a_container_has_the_hosts_network_and_its_limits() {
    let Some(engine) = engine().await else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ =
                stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\nfrom the host 127");
        }
    });
    let script = format!(
        "wget -q -O- http://127.0.0.1:{port}/; echo; \
         cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    );
    let mut limited = spec(&["sh", "-c", &script]);
    limited.cpu = Some(512);
    limited.memory = Some(256);
    let job = Running::start(&engine, &limited).await;
    assert_eq!(job.exit_code(&engine).await, 0, "{}", job.text());
    job.said("from the host 127").await;
    // 256 MiB; half a vCPU: 50,000 µs of each 100,000 µs period.
    job.said("268435456").await;
    job.said("50000").await;
    job.remove(&engine).await;
}
