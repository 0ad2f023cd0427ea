//! `cargo lambda watch` for tests: berth's real function binaries, run the way
//! Lambda runs them, talking to one test account of the local AWS. The
//! account is reached through an IAM access key created in it (the local
//! AWS maps a known access key to its account), so functions need no special
//! header. Stopped, with every function it started, when dropped.

use std::process::Command;

use berth_local::watch::{Watch, WatchConfig, cargo_lambda, free_port};

use crate::{TestAccount, workspace_root};

pub struct LambdaWatch {
    watch: Watch,
    pub port: u16,
}

/// The binaries `cargo lambda watch` runs in the tests.
pub const FUNCTIONS: [&str; 5] = [
    "berth-driver",
    "berth-ecs-runner",
    "berth-lambda-task-processor",
    "berth-capacity-metric",
    "berth-test-recorder",
];

impl LambdaWatch {
    /// Starts `cargo lambda watch` on a free loopback port; the functions it
    /// runs get `env` and act in `account`. Their Lambda client points back at
    /// the watch server, so an invoke from one function runs another.
    pub async fn start(account: &TestAccount, env: &[(&str, String)]) -> Self {
        let (key, secret) = account.access_key().await;
        let port = free_port().unwrap();
        let root = workspace_root();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let watch = Watch::start(WatchConfig {
            root: &root,
            functions: &FUNCTIONS,
            port,
            endpoint: &account.local.endpoint,
            lambda_endpoint: &format!("http://127.0.0.1:{port}"),
            region: &account.local.region,
            key: (&key, &secret),
            env: &env,
            log: std::env::temp_dir()
                .join(format!("berth-watch-{}-{port}.log", std::process::id())),
            job_lines: None,
            reload: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Self { watch, port }
    }

    /// `cargo lambda invoke FUNCTION --data-file FILE` against this watch
    /// server; the function's answer.
    pub fn invoke_file(&self, function: &str, data_file: &str) -> serde_json::Value {
        let out = Command::new(cargo_lambda(&workspace_root()))
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
        self.watch.output()
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.watch.log);
    }
}
