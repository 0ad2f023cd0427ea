//! The local AWS (moto's server) beyond what the SDK clients do: Query API
//! calls (IAM, EC2, CloudFormation) in one of its accounts, an access key
//! that acts in that account, and container instances backed by EC2
//! instances.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A 12-digit account id no other account made here (in this process or a
/// recent run) has: each account of the local AWS keeps its own state.
pub fn new_account_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let base = (nanos / 1000 + u64::from(std::process::id()) * 7919) % 900_000_000_000;
    format!(
        "{:012}",
        100_000_000_000 + (base + n * 104_729) % 900_000_000_000
    )
}

/// One account of the local AWS.
#[derive(Debug, Clone)]
pub struct Account {
    pub endpoint: String,
    pub region: String,
    pub id: String,
    http: reqwest::Client,
}

impl Account {
    pub fn new(endpoint: &str, region: &str, id: &str) -> Self {
        crate::proxy::assert_loopback(endpoint);
        Self {
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            id: id.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Calls a Query API action of `service` in this account; the XML answer.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut form = vec![("Action", action), ("Version", version)];
        form.extend_from_slice(params);
        // moto routes by the credential scope of the Authorization header;
        // it does not check signatures.
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=local/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0",
            self.region
        );
        let resp = self
            .http
            .post(&self.endpoint)
            .header("authorization", auth)
            .header("x-moto-account-id", &self.id)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("{service} {action}: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{service} {action} answered {status}: {body}"));
        }
        Ok(body)
    }

    /// An access key of a new IAM user `user`: whoever uses it acts in this
    /// account (the local AWS maps a known access key to its account).
    pub async fn access_key(&self, user: &str) -> Result<(String, String), String> {
        let params = [("UserName", user)];
        self.query("iam", "2010-05-08", "CreateUser", &params)
            .await?;
        let xml = self
            .query("iam", "2010-05-08", "CreateAccessKey", &params)
            .await?;
        let id = xml_values(&xml, "AccessKeyId").pop();
        let secret = xml_values(&xml, "SecretAccessKey").pop();
        id.zip(secret)
            .ok_or_else(|| format!("no access key in {xml}"))
    }

    /// Starts an EC2 instance of `instance_type`; its id.
    pub async fn run_instance(&self, instance_type: &str) -> Result<String, String> {
        let xml = self
            .query(
                "ec2",
                "2016-11-15",
                "RunInstances",
                &[
                    ("ImageId", "ami-12c6146b"),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                    ("InstanceType", instance_type),
                ],
            )
            .await?;
        xml_values(&xml, "instanceId")
            .into_iter()
            .next()
            .ok_or_else(|| format!("no instance id in {xml}"))
    }

    /// Registers a new container instance, backed by a new EC2 instance of
    /// [`INSTANCE_TYPE`], with `cluster`; its ARN.
    pub async fn add_container_instance(
        &self,
        ecs: &aws_sdk_ecs::Client,
        cluster: &str,
    ) -> Result<String, String> {
        self.add_container_instance_of(ecs, cluster, INSTANCE_TYPE)
            .await
    }

    /// Registers a new container instance, backed by a new EC2 instance of
    /// `instance_type`, with `cluster`: it registers that type's CPU,
    /// memory, GPUs and architecture, as the ECS agent would. Its ARN.
    pub async fn add_container_instance_of(
        &self,
        ecs: &aws_sdk_ecs::Client,
        cluster: &str,
        instance_type: &str,
    ) -> Result<String, String> {
        let instance_id = self.run_instance(instance_type).await?;
        let document = serde_json::json!({ "instanceId": instance_id, "region": self.region });
        ecs.register_container_instance()
            .cluster(cluster)
            .instance_identity_document(document.to_string())
            .send()
            .await
            .map_err(|e| format!("register container instance: {e}"))?
            .container_instance
            .and_then(|ci| ci.container_instance_arn)
            .ok_or_else(|| "no container instance ARN".to_owned())
    }
}

/// The type of the local run's container instances: 4 vCPUs and 8 GiB,
/// which ECS registers as 4096 CPU units and 7,985 MiB.
pub const INSTANCE_TYPE: &str = "c5.xlarge";

/// The CPU units and MiB of the task definitions below.
pub const TASK_CPU: i32 = 1024;
pub const TASK_MEMORY: i32 = 2048;

/// The image of the local run's task definitions (`scripts/local-images`).
pub const JOB_IMAGE: &str = "berth-local/job:1";

/// Seconds between SIGTERM and SIGKILL when a task of the local run is
/// stopped (ECS's `stopTimeout`; 30 by default).
pub const STOP_TIMEOUT_SECONDS: i32 = 5;

/// The log group of the local run's task definitions' containers.
pub const TASK_LOG_GROUP: &str = "/berth/local/tasks";

/// Registers the task definitions the local run and the tests use, each
/// with one container `main` of `TASK_CPU` / `TASK_MEMORY` that logs with
/// `awslogs` to [`TASK_LOG_GROUP`], its streams prefixed with the family:
/// `render` may run on Fargate too (awsvpc), `train` is EC2 only.
pub async fn register_task_definitions(ecs: &aws_sdk_ecs::Client) -> Result<(), String> {
    use aws_sdk_ecs::types::{
        Compatibility, ContainerDefinition, LogConfiguration, LogDriver, NetworkMode,
    };
    for (family, network, fargate) in [
        ("render", NetworkMode::Awsvpc, true),
        ("train", NetworkMode::Bridge, false),
    ] {
        let mut compatibilities = vec![Compatibility::Ec2];
        if fargate {
            compatibilities.push(Compatibility::Fargate);
        }
        ecs.register_task_definition()
            .family(family)
            .network_mode(network)
            .set_requires_compatibilities(Some(compatibilities))
            .cpu(TASK_CPU.to_string())
            .memory(TASK_MEMORY.to_string())
            .container_definitions(
                ContainerDefinition::builder()
                    .name("main")
                    .image(JOB_IMAGE)
                    .stop_timeout(STOP_TIMEOUT_SECONDS)
                    .cpu(TASK_CPU)
                    .memory(TASK_MEMORY)
                    .essential(true)
                    .log_configuration(
                        LogConfiguration::builder()
                            .log_driver(LogDriver::Awslogs)
                            .options("awslogs-group", TASK_LOG_GROUP)
                            .options("awslogs-stream-prefix", family)
                            .build()
                            .map_err(|e| e.to_string())?,
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("register task definition {family}: {e}"))?;
    }
    Ok(())
}

/// The text of every `<tag>…</tag>` in `xml`, in order.
/// The tasks of `cluster` named in `arns`, described a hundred at a time.
pub async fn describe_tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    arns: &[String],
) -> Result<Vec<aws_sdk_ecs::types::Task>, String> {
    let mut tasks = Vec::with_capacity(arns.len());
    for chunk in arns.chunks(100) {
        let out = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| format!("describe tasks: {e}"))?;
        tasks.extend(out.tasks.unwrap_or_default());
    }
    Ok(tasks)
}

pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}
