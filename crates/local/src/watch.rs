//! `cargo lambda watch` running berth's real function binaries against the
//! local AWS, the way Lambda runs them. Stopped, with every function it
//! started, when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where the functions run and what they see.
#[derive(Debug, Clone)]
pub struct WatchConfig<'a> {
    /// The workspace root.
    pub root: &'a Path,
    /// The function binaries, built before the server starts so that no
    /// invocation spends its deadline compiling.
    pub functions: &'a [&'a str],
    /// The loopback port to serve on.
    pub port: u16,
    /// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_LAMBDA` of the functions.
    pub endpoint: &'a str,
    pub lambda_endpoint: &'a str,
    pub region: &'a str,
    /// The access key the functions act with.
    pub key: (&'a str, &'a str),
    /// The functions' other variables (BERTH_*, ...).
    pub env: &'a [(String, String)],
    /// Where the server and the functions write.
    pub log: PathBuf,
    /// Where the lines a Lambda-route job wrote (the task runtime's tagged
    /// lines) go too, with when each was written (epoch milliseconds).
    pub job_lines: Option<tokio::sync::mpsc::UnboundedSender<(i64, String)>>,
    /// Rebuild and restart a function when its source changes.
    pub reload: bool,
}

pub struct Watch {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// The cargo-lambda installed by `make tools` (into `.venv/`), else the one
/// on PATH.
pub fn cargo_lambda(root: &Path) -> PathBuf {
    let venv = root.join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

/// A free loopback port.
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()
        .map(|a| a.port())
}

impl Watch {
    /// Builds the functions, starts the server and waits (a minute at most)
    /// until it listens.
    pub async fn start(config: WatchConfig<'_>) -> Result<Self, String> {
        for bin in config.functions {
            let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--quiet", "--bin", bin])
                .current_dir(config.root)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("cargo build --bin {bin} failed"));
            }
        }
        let out = std::fs::File::create(&config.log).map_err(|e| e.to_string())?;
        let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(cargo_lambda(config.root));
        cmd.args(["lambda", "watch"]);
        if !config.reload {
            cmd.arg("--ignore-changes");
        }
        cmd.args([
            "--invoke-address",
            "127.0.0.1",
            "-P",
            &config.port.to_string(),
        ])
        .current_dir(config.root)
        .env("AWS_ENDPOINT_URL", config.endpoint)
        .env("AWS_ENDPOINT_URL_LAMBDA", config.lambda_endpoint)
        .env("AWS_REGION", config.region)
        .env("AWS_DEFAULT_REGION", config.region)
        .env("AWS_ACCESS_KEY_ID", config.key.0)
        .env("AWS_SECRET_ACCESS_KEY", config.key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::from(writer.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(writer))
        .process_group(0);
        for (k, v) in config.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start cargo lambda watch (run `make tools`): {e}"))?;
        // The pipe's writing end is the server's alone now: the copy below
        // ends when the server and its functions have.
        drop(cmd);
        let job_lines = config.job_lines.clone();
        std::thread::spawn(move || copy_output(reader, out, job_lines.as_ref()));
        let watch = Self {
            child,
            port: config.port,
            log: config.log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, watch.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "cargo lambda watch did not listen:\n{}",
                    watch.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(watch)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server and its functions printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Copies the server's output to its log file, and each of the task
/// runtime's tagged lines to `job_lines` as well.
fn copy_output(
    from: std::io::PipeReader,
    mut to: std::fs::File,
    job_lines: Option<&tokio::sync::mpsc::UnboundedSender<(i64, String)>>,
) {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let _ = to.write_all(&line);
        let Some(tx) = job_lines else { continue };
        if let Ok(text) = std::str::from_utf8(&line)
            && berth_core::logs::JobLine::read(text).is_some()
        {
            let _ = tx.send((berth_aws::store::now_ms(), text.trim_end().to_owned()));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The server and every function it runs share its process group:
        // asked to stop, then made to.
        let group = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
