//! Support for berth's integration tests: the local AWS, started once per test
//! process through `scripts/local-aws start` (or reused when it already runs),
//! an isolated moto account per test, and berth's SDK clients pointed at it.
//!
//! Every client built here talks to a loopback endpoint only: the endpoint
//! comes from the script and is checked before any client is built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use berth_local::proxy;
pub mod stack;
pub mod watch;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::{Credentials, Intercept, SharedInterceptor};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use berth_aws::Clients;

/// The running local AWS.
#[derive(Debug, Clone)]
pub struct LocalAws {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub region: String,
}

/// The workspace root. Cargo names the package's directory when it runs a
/// test, and that is preferred to the one compiled in: two checkouts that
/// share a target dir may share this library's build.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Starts the local AWS, or reuses the one already running; once per process.
pub fn local_aws() -> &'static LocalAws {
    static LOCAL: OnceLock<LocalAws> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let script = workspace_root().join("scripts/local-aws");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/local-aws start failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("scripts/local-aws start printed no {name}:\n{stdout}"))
                .to_owned()
        };
        let endpoint = var("AWS_ENDPOINT_URL");
        assert_loopback(&endpoint);
        LocalAws {
            endpoint,
            region: var("AWS_DEFAULT_REGION"),
        }
    })
}

pub use berth_local::proxy::assert_loopback;

/// Builds the workspace's binary `name` (debug) and returns its path.
pub fn built_binary(name: &str) -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--bin", name])
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(status.success(), "cargo build --bin {name} failed");
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
        .join("debug")
        .join(name)
}

/// Adds moto's `x-moto-account-id` header: each account's state in the local
/// AWS is its own, so tests running side by side do not see each other.
#[derive(Debug)]
struct MotoAccount(String);

impl Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// Fails every call of one operation before it is sent, as if the function
/// had stopped just before making it.
#[derive(Debug)]
struct StopBefore(&'static str);

impl Intercept for StopBefore {
    fn name(&self) -> &'static str {
        "StopBefore"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name());
        if operation == Some(self.0) {
            return Err(format!("stopped before {}", self.0).into());
        }
        Ok(())
    }
}

/// Fails every call of one operation before it is sent while its switch
/// is on, as a run of errors the SDK's retries do not outlast would.
#[derive(Debug)]
struct FailWhile {
    operation: &'static str,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Intercept for FailWhile {
    fn name(&self) -> &'static str {
        "FailWhile"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name());
        if operation == Some(self.operation) && self.on.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("{} failed", self.operation).into());
        }
        Ok(())
    }
}

/// Loses the answers of the first `remaining` successful calls of one
/// operation after the local AWS has served them, as a dropped connection
/// would: the write is made, the caller sees a transient error, and the
/// SDK's retry makes the call again.
#[derive(Debug)]
struct LoseAnswers {
    operation: &'static str,
    remaining: std::sync::atomic::AtomicU32,
}

impl Intercept for LoseAnswers {
    fn name(&self) -> &'static str {
        "LoseAnswers"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
        use aws_smithy_runtime_api::client::result::ConnectorError;
        if cfg.load::<Metadata>().map(|m| m.name()) != Some(self.operation) {
            return Ok(());
        }
        let Some(result) = context.output_or_error_mut() else {
            return Ok(());
        };
        let lose = result.is_ok()
            && self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose {
            *result = Err(OrchestratorError::connector(ConnectorError::io(
                "connection dropped after the call was served".into(),
            )));
        }
        Ok(())
    }
}

/// One test's own AWS account in the local AWS, with clients for it.
#[derive(Debug, Clone)]
pub struct TestAccount {
    pub id: String,
    pub local: LocalAws,
    pub sdk_config: SdkConfig,
    pub clients: Clients,
    moto: berth_local::moto::Account,
}

impl TestAccount {
    /// A fresh, empty account.
    pub async fn new() -> Self {
        Self::via(&local_aws().endpoint).await
    }

    /// A fresh, empty account whose clients reach the local AWS through
    /// `endpoint` (a loopback proxy in front of it).
    pub async fn via(endpoint: &str) -> Self {
        assert_loopback(endpoint);
        let local = local_aws().clone();
        let id = berth_local::moto::new_account_id();
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(local.region.clone()))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "local-aws",
            ))
            .load()
            .await;
        let interceptor = SharedInterceptor::new(MotoAccount(id.clone()));
        let clients = Clients::with_interceptors(&sdk_config, &[interceptor]);
        let moto = berth_local::moto::Account::new(&local.endpoint, &local.region, &id);
        Self {
            id,
            local,
            sdk_config,
            clients,
            moto,
        }
    }

    /// Clients for this account whose calls of `operation` (`RunTask`,
    /// `UpdateItem`, ...) never leave: a function built on them stops just
    /// before that call.
    pub fn clients_stopping_before(&self, operation: &'static str) -> Clients {
        self.clients_with(SharedInterceptor::new(StopBefore(operation)))
    }

    /// Clients for this account whose calls of `operation` fail while `on`
    /// is set.
    pub fn clients_failing_while(
        &self,
        operation: &'static str,
        on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Clients {
        self.clients_with(SharedInterceptor::new(FailWhile { operation, on }))
    }

    /// Clients for this account that lose the answers of the first `times`
    /// successful calls of `operation` (`UpdateItem`, ...) after they were
    /// served; the SDK retries each.
    pub fn clients_losing_answers(&self, operation: &'static str, times: u32) -> Clients {
        self.clients_with(SharedInterceptor::new(LoseAnswers {
            operation,
            remaining: times.into(),
        }))
    }

    /// Clients for this account that sign with `credentials` (a job role's,
    /// say) instead of the account's own.
    pub async fn clients_signing_as(&self, credentials: Credentials) -> Clients {
        let endpoint = self
            .sdk_config
            .endpoint_url()
            .unwrap_or(&self.local.endpoint);
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(self.local.region.clone()))
            .credentials_provider(credentials)
            .load()
            .await;
        Clients::with_interceptors(
            &config,
            &[SharedInterceptor::new(MotoAccount(self.id.clone()))],
        )
    }

    /// Clients for this account with `interceptor` on every call.
    fn clients_with(&self, interceptor: SharedInterceptor) -> Clients {
        let interceptors = [
            SharedInterceptor::new(MotoAccount(self.id.clone())),
            interceptor,
        ];
        Clients::with_interceptors(&self.sdk_config, &interceptors)
    }

    /// This account of the local AWS, for berth-local's helpers.
    pub fn moto(&self) -> &berth_local::moto::Account {
        &self.moto
    }

    /// Calls an EC2 Query API action (the tests need only a few EC2 calls)
    /// and returns the XML answer.
    pub async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", action, params).await
    }

    /// Calls a Query API action of `service` in this account and returns the
    /// XML answer.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> String {
        self.moto
            .query(service, version, action, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates an on-demand DynamoDB table with a string partition key.
    pub async fn create_table(&self, table: &str, key: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        let attribute = AttributeDefinition::builder()
            .attribute_name(key)
            .attribute_type(ScalarAttributeType::S);
        let schema = KeySchemaElement::builder()
            .attribute_name(key)
            .key_type(KeyType::Hash);
        self.clients
            .dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute.build().unwrap())
            .key_schema(schema.build().unwrap())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTable {table}: {e:?}"));
    }

    /// Starts an EC2 instance in the local AWS and returns its id.
    pub async fn run_instance(&self) -> String {
        self.moto
            .run_instance(berth_local::moto::INSTANCE_TYPE)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Registers a new container instance (backed by a new EC2 instance)
    /// with `cluster` and returns its ARN.
    pub async fn add_container_instance(&self, cluster: &str) -> String {
        self.moto
            .add_container_instance(&self.clients.ecs, cluster)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, backed by an EC2 instance of `instance_type` (registered
    /// with its CPU, memory, GPUs and architecture).
    pub async fn add_container_instance_of(&self, cluster: &str, instance_type: &str) -> String {
        self.moto
            .add_container_instance_of(&self.clients.ecs, cluster, instance_type)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An access key of a new IAM user of this account: whoever uses it acts
    /// in this account of the local AWS.
    pub async fn access_key(&self) -> (String, String) {
        self.moto
            .access_key(&format!("berth-{}", self.id))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// CPU time of the calling thread (Linux: /proc/thread-self/schedstat), for
/// benchmarks that run the code they measure on one thread.
pub fn thread_cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    std::time::Duration::from_nanos(
        stat.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

pub use berth_local::moto::xml_values;
