//! `cargo lambda watch` for tests: berth's real function binaries, run the way
//! Lambda runs them, talking to one test account of the local AWS. The
//! account is reached through an IAM access key created in it (the local
//! AWS maps a known access key to its account), so functions need no special
//! header. Stopped, with every function it started, when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestAccount, workspace_root, xml_values};

pub struct LambdaWatch {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// The cargo-lambda installed by `make tools` (into `.venv/`), else the one
/// on PATH.
fn cargo_lambda() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

impl TestAccount {
    /// An access key of a new IAM user of this account: whoever uses it acts
    /// in this account of the local AWS.
    pub async fn access_key(&self) -> (String, String) {
        let user = format!("berth-{}", self.id);
        self.query("iam", "2010-05-08", "CreateUser", &[("UserName", &user)])
            .await;
        let xml = self
            .query(
                "iam",
                "2010-05-08",
                "CreateAccessKey",
                &[("UserName", &user)],
            )
            .await;
        let id = xml_values(&xml, "AccessKeyId")
            .pop()
            .expect("an access key id");
        let secret = xml_values(&xml, "SecretAccessKey")
            .pop()
            .expect("a secret key");
        (id, secret)
    }
}

/// The binaries `cargo lambda watch` runs in the tests.
pub const FUNCTIONS: [&str; 5] = [
    "berth-driver",
    "berth-ecs-runner",
    "berth-lambda-task-processor",
    "berth-capacity-metric",
    "berth-test-recorder",
];

/// Builds each function binary as `cargo lambda watch` will run it (`cargo
/// run --bin NAME`), so that no invocation spends its deadline compiling.
fn build_functions() {
    for bin in FUNCTIONS {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "--bin", bin])
            .current_dir(workspace_root())
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "cargo build --bin {bin} failed");
    }
}

impl LambdaWatch {
    /// Starts `cargo lambda watch` on a free loopback port; the functions it
    /// runs get `env` and act in `account`. Their Lambda client points back at
    /// the watch server, so an invoke from one function runs another.
    pub async fn start(account: &TestAccount, env: &[(&str, String)]) -> Self {
        build_functions();
        let (key, secret) = account.access_key().await;
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("berth-watch-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(cargo_lambda());
        cmd.args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--invoke-address",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(workspace_root())
        .env("AWS_ENDPOINT_URL", &account.local.endpoint)
        .env(
            "AWS_ENDPOINT_URL_LAMBDA",
            format!("http://127.0.0.1:{port}"),
        )
        .env("AWS_REGION", &account.local.region)
        .env("AWS_DEFAULT_REGION", &account.local.region)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cargo lambda watch: {e}"));
        let watch = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen:\n{}",
                watch.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        watch
    }

    /// `cargo lambda invoke FUNCTION --data-file FILE` against this watch
    /// server; the function's answer.
    pub fn invoke_file(&self, function: &str, data_file: &str) -> serde_json::Value {
        let out = Command::new(cargo_lambda())
            .args([
                "lambda",
                "invoke",
                function,
                "--invoke-address",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .args(["--data-file", data_file, "--output-format", "json"])
            .current_dir(workspace_root())
            .output()
            .expect("cargo lambda invoke runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo lambda invoke {function} failed:\n{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// What the watch server and its functions printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // The server and every function it runs share its process group.
        let group = format!("-{}", self.child.id());
        let kill = |signal: &str| {
            Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status()
        };
        let _ = kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
