//! Real containers on a Docker engine, through its Engine API (bollard):
//! what the local run's ECS tasks run on when an engine is reachable
//! (`scripts/local-engine`, or the one `DOCKER_HOST` names). A container
//! runs as ECS would run a task's container: the image, the command and
//! environment (with the task's overrides), CPU and memory limits, and the
//! host's network, so that a job reaches the local AWS on loopback. A stop
//! is ECS's: SIGTERM, then SIGKILL after the grace period.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::{Stream, StreamExt};

/// The socket of `scripts/local-engine`'s engine, under the workspace.
pub const OWN_SOCKET: &str = ".local-aws/engine/docker.sock";

/// What a container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// The container's name (unique on the engine).
    pub name: String,
    pub image: String,
    /// `None`: the image's own command.
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    /// CPU units (1,024 a vCPU), as a CPU limit.
    pub cpu: Option<u32>,
    /// MiB, as a hard memory limit.
    pub memory: Option<u32>,
    pub labels: Vec<(String, String)>,
}

/// Where a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Its process ended with this code (137 after SIGKILL, 143 after a
    /// SIGTERM it ended on).
    Exited {
        code: i64,
        oom_killed: bool,
    },
    /// The engine knows no such container.
    Gone,
}

/// A line the container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stderr: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

fn err(e: bollard::errors::Error) -> String {
    e.to_string()
}

impl Engine {
    /// The engine that `DOCKER_HOST` names, else the one at `own` (the
    /// socket of `scripts/local-engine`) when it is there, else the default
    /// socket; when it answers within two seconds. The API version is the
    /// engine's.
    pub async fn connect_or(own: &std::path::Path) -> Result<Self, String> {
        let docker = if std::env::var_os("DOCKER_HOST").is_none() && own.exists() {
            Docker::connect_with_socket(
                &own.display().to_string(),
                120,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(err)?
        } else {
            Docker::connect_with_local_defaults().map_err(err)?
        };
        let docker = tokio::time::timeout(Duration::from_secs(2), docker.negotiate_version())
            .await
            .map_err(|_| "the Docker engine did not answer in 2 s".to_owned())?
            .map_err(err)?;
        docker.ping().await.map_err(err)?;
        Ok(Self { docker })
    }

    /// Whether the engine has `image`.
    pub async fn has_image(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// Creates and starts a container for `spec`; its id.
    pub async fn run(&self, spec: &Spec) -> Result<String, String> {
        let host = HostConfig {
            network_mode: Some("host".into()),
            memory: spec.memory.map(|m| i64::from(m) * 1024 * 1024),
            // At most this machine's CPUs (the engine refuses more): a task
            // of 16 vCPUs runs here on what there is.
            nano_cpus: spec.cpu.map(|c| {
                let here = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
                (i64::from(c) * 1_000_000_000 / 1024).min(here * 1_000_000_000)
            }),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            env: Some(
                spec.environment
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(spec.labels.iter().cloned().collect()),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| format!("create container {}: {e}", spec.name))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| format!("start container {}: {e}", spec.name))?;
        Ok(created.id)
    }

    /// Where container `id` is.
    pub async fn state(&self, id: &str) -> Result<State, String> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => {
                let s = c.state.unwrap_or_default();
                if s.running == Some(true) {
                    Ok(State::Running)
                } else {
                    Ok(State::Exited {
                        code: s.exit_code.unwrap_or(-1),
                        oom_killed: s.oom_killed == Some(true),
                    })
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(State::Gone),
            Err(e) => Err(err(e)),
        }
    }

    /// Stops container `id` as ECS stops a task: SIGTERM, then SIGKILL
    /// after `grace`. Returns once it has ended.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), String> {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Stopped already.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Removes container `id`, running or not.
    pub async fn remove(&self, id: &str) -> Result<(), String> {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(err)
    }

    /// The ids of the containers labelled `key=value`, running or not.
    pub async fn labelled(&self, key: &str, value: &str) -> Result<Vec<String>, String> {
        let filter = format!("{key}={value}");
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&std::collections::HashMap::from([(
                "label",
                vec![filter.as_str()],
            )]))
            .build();
        Ok(self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(err)?
            .into_iter()
            .filter_map(|c| c.id)
            .collect())
    }

    /// The lines container `id` writes, from its start, as they come, until
    /// it has ended.
    pub fn lines(&self, id: &str) -> impl Stream<Item = Line> + use<> {
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        self.docker
            .logs(id, Some(options))
            .filter_map(|out| async move {
                let (stderr, message) = match out.ok()? {
                    LogOutput::StdErr { message } => (true, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (false, message)
                    }
                    LogOutput::StdIn { .. } => return None,
                };
                let text = String::from_utf8_lossy(&message)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                Some(Line { stderr, text })
            })
    }
}
