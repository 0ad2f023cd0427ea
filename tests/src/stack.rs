//! A berth deployment inside one test account of the local AWS, made as the
//! local run makes one (`berth_local::deployment`), with the tests' job
//! definitions; and the SQS side of the event source mapping (receive, hand
//! a real `SqsEvent` to the driver).

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_ecs::types::DesiredStatus;
use berth_aws::ecs::{ContainerChange, TaskChange};
use berth_aws::metrics::ClusterMetrics;
use berth_aws::queue::REASON_ATTRIBUTE;
use berth_aws::store::JobRecord;
use berth_aws::{Clients, Definitions, EcsCluster, JobStore, Settings};
use berth_core::JobDefinition;
use berth_driver::{Driver, Tuning};
use berth_ecs_runner::Lifecycle;
use berth_local::deployment::{Deployment, Instances, Options};

use crate::TestAccount;

pub const CLUSTER: &str = berth_local::deployment::CLUSTER_NAME;
/// The container of every test task definition: 1024 CPU units, 2048 MiB,
/// so three fit on one of the local AWS's container instances (4096 / 7482).
pub use berth_local::moto::{TASK_CPU, TASK_MEMORY};

pub struct Stack {
    pub aws: TestAccount,
    pub settings: Settings,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Stack {
    /// A deployment with `instances` container instances in its cluster.
    pub async fn new(instances: usize) -> Self {
        Self::in_account(TestAccount::new().await, instances).await
    }

    /// The same, in `aws`.
    pub async fn in_account(aws: TestAccount, instances: usize) -> Self {
        let options = Options {
            existing: false,
            instances: Instances::Fixed(instances),
            visibility_timeout: 120,
            max_receives: None,
        };
        let deployment = Deployment::provision(&aws.clients, aws.moto(), &options)
            .await
            .unwrap_or_else(|e| panic!("provisioning: {e}"));
        let stack = Self {
            aws,
            settings: deployment.settings,
            queue_url: deployment.queue_url,
            dlq_url: deployment.dlq_url,
        };
        for def in [render(), train()] {
            stack.definitions().put(&def).await.unwrap();
        }
        stack
    }

    pub fn clients(&self) -> &Clients {
        &self.aws.clients
    }

    /// The driver as the function builds it, on this stack's clients.
    pub fn driver(&self) -> Driver {
        Driver::new(&self.settings, self.clients(), Tuning::default())
    }

    /// ecs-runner's lifecycle as the function builds it, with no backoff
    /// before a failed job's next attempt.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle::for_deployment(&self.settings, self.clients())
            .unwrap()
            .with_retry_delay_cap(0)
    }

    /// An "ECS Task State Change" detail for the task of `job_id`'s
    /// `launch`, as ECS would send it, in `last_status`.
    pub async fn task_change(&self, job_id: &str, launch: u32, last_status: &str) -> TaskChange {
        let task = self
            .tasks_of(job_id, launch)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no task for {job_id} launch {launch}"));
        TaskChange {
            cluster_arn: task.cluster_arn.clone().unwrap_or_default(),
            task_arn: task.task_arn.clone().unwrap(),
            last_status: last_status.into(),
            started_by: task.started_by.clone(),
            launch_type: task.launch_type.as_ref().map(|l| l.as_str().to_owned()),
            containers: vec![ContainerChange {
                name: "main".into(),
                ..ContainerChange::default()
            }],
            ..TaskChange::default()
        }
    }

    /// The same, STOPPED: `stop_code` and `reason` as ECS gives them, and
    /// the job container's exit code.
    pub async fn task_stopped(
        &self,
        job_id: &str,
        launch: u32,
        stop_code: &str,
        reason: &str,
        exit_code: Option<i32>,
    ) -> TaskChange {
        let mut change = self.task_change(job_id, launch, "STOPPED").await;
        change.stop_code = Some(stop_code.into());
        change.stopped_reason = Some(reason.into());
        change.containers[0].exit_code = exit_code;
        change
    }

    /// The job container of `job_id`'s `launch` exited with `code`.
    pub async fn task_exited(&self, job_id: &str, launch: u32, code: i32) -> TaskChange {
        self.task_stopped(
            job_id,
            launch,
            "EssentialContainerExited",
            "Essential container in task exited",
            Some(code),
        )
        .await
    }

    /// The cluster as the functions see it.
    pub fn cluster(&self) -> EcsCluster {
        EcsCluster::for_deployment(&self.settings, self.clients())
    }

    /// The capacity metric's PutMetricData for this cluster.
    pub fn cluster_metrics(&self) -> ClusterMetrics {
        ClusterMetrics::new(self.clients().cloudwatch.clone(), CLUSTER)
    }

    pub fn store(&self) -> JobStore {
        JobStore::new(self.clients().dynamodb.clone(), &self.settings.jobs_table)
    }

    /// Registers task definition `family` with `containers` (each of
    /// `TASK_CPU` / `TASK_MEMORY`); one that may run on Fargate is `awsvpc`
    /// with a task size and lists FARGATE.
    pub async fn register_task_definition(&self, family: &str, fargate: bool, containers: &[&str]) {
        use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
        let mut compatibilities = vec![Compatibility::Ec2];
        let mut req = self.clients().ecs.register_task_definition().family(family);
        if fargate {
            compatibilities.push(Compatibility::Fargate);
            req = req
                .network_mode(NetworkMode::Awsvpc)
                .cpu((TASK_CPU * containers.len() as i32).to_string())
                .memory((TASK_MEMORY * containers.len() as i32).to_string());
        }
        for name in containers {
            req = req.container_definitions(
                ContainerDefinition::builder()
                    .name(*name)
                    .image("busybox")
                    .cpu(TASK_CPU)
                    .memory(TASK_MEMORY)
                    .essential(true)
                    .build(),
            );
        }
        req.set_requires_compatibilities(Some(compatibilities))
            .send()
            .await
            .unwrap_or_else(|e| panic!("register task definition {family}: {e:?}"));
    }

    pub fn definitions(&self) -> Definitions {
        Definitions::new(
            self.clients().dynamodb.clone(),
            &self.settings.definitions_table,
        )
    }

    pub async fn record(&self, job_id: &str) -> JobRecord {
        self.store()
            .get(job_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no record for {job_id}"))
    }

    /// Sends job messages; returns their message ids.
    pub async fn send(&self, bodies: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for body in bodies {
            let out = self
                .clients()
                .sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(*body)
                .send()
                .await
                .unwrap();
            ids.push(out.message_id.unwrap());
        }
        ids
    }

    /// Receives what the queue delivers now, as the records of an `SqsEvent`
    /// (what Lambda's event source mapping hands the driver).
    pub async fn receive(&self) -> Vec<SqsMessage> {
        let mut records = Vec::new();
        loop {
            let batch = berth_local::sqs::receive(
                &self.clients().sqs,
                &self.queue_url,
                &self.aws.local.region,
                &self.aws.id,
            )
            .await
            .unwrap();
            if batch.is_empty() {
                return records;
            }
            records.extend(batch);
        }
    }

    /// Makes the messages received with `handles` visible again at once, as
    /// the end of their backoff would; returns what the queue then delivers.
    pub async fn redeliver(&self, handles: &[String]) -> Vec<SqsMessage> {
        for handle in handles {
            self.clients()
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        self.receive().await
    }

    /// Deletes the messages of `records` from the job queue (a message lost).
    pub async fn delete(&self, records: &[SqsMessage]) {
        for m in records {
            self.clients()
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }

    /// Sends `bodies` and hands what the queue delivers now to `driver`
    /// ([`Stack::deliver`]): the message ids it named as failures.
    pub async fn send_to(&self, driver: &Driver, bodies: &[&str]) -> Vec<String> {
        self.send(bodies).await;
        self.deliver(driver, self.receive().await).await
    }

    /// Hands `records` to the driver's Lambda handler, deletes the messages
    /// it did not name as failures (as the event source mapping does), and
    /// returns the ids it named.
    pub async fn deliver(&self, driver: &Driver, records: Vec<SqsMessage>) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = records.clone();
        let response = driver
            .handle(lambda_runtime::LambdaEvent::new(
                event,
                lambda_runtime::Context::default(),
            ))
            .await
            .expect("the driver never fails a whole batch");
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        for r in records {
            if !failed.contains(r.message_id.as_ref().unwrap()) {
                self.clients()
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(r.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        failed
    }

    /// Hands what the queue delivers now to the driver, as the event
    /// source mapping would, deletes those messages, and returns each
    /// job's outcome.
    pub async fn drive(&self) -> Vec<(String, berth_driver::Outcome)> {
        let records = self.receive().await;
        let handled = self.driver().handle_batch(records.clone()).await;
        for r in records {
            self.clients()
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(r.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
        handled
            .into_iter()
            .map(|h| (h.job_id.unwrap_or_default(), h.outcome))
            .collect()
    }

    /// The messages on the dead-letter queue: (body, berth-reason).
    pub async fn dead_letters(&self) -> Vec<(String, String)> {
        let mut letters = Vec::new();
        loop {
            let out = self
                .clients()
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return letters;
            }
            letters.extend(messages.into_iter().map(|m| {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value.clone())
                    .unwrap_or_default();
                (m.body.unwrap_or_default(), reason)
            }));
        }
    }

    /// The tasks berth started for `job_id`'s launch `launch`, running or
    /// stopped.
    pub async fn tasks_of(&self, job_id: &str, launch: u32) -> Vec<aws_sdk_ecs::types::Task> {
        let arns = self
            .task_arns(Some(berth_core::launch::started_by(job_id, launch)))
            .await;
        if arns.is_empty() {
            return Vec::new();
        }
        self.clients()
            .ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .set_tasks(Some(arns))
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .unwrap()
            .tasks
            .unwrap_or_default()
    }

    /// The value of `name` in the job container's environment overrides of
    /// `job_id`'s `launch`.
    pub async fn task_env(&self, job_id: &str, launch: u32, name: &str) -> Option<String> {
        let task = self.tasks_of(job_id, launch).await.into_iter().next()?;
        task.overrides()?.container_overrides()[0]
            .environment()
            .iter()
            .find(|kv| kv.name() == Some(name))
            .and_then(|kv| kv.value().map(str::to_owned))
    }

    /// The CLI's library on this stack.
    pub fn cli(&self) -> berth_cli::Berth {
        berth_cli::Berth::new(self.settings.clone(), self.clients().clone())
    }

    /// The cluster's container instances, described.
    pub async fn container_instances(&self) -> Vec<aws_sdk_ecs::types::ContainerInstance> {
        let ecs = &self.clients().ecs;
        let arns = ecs
            .list_container_instances()
            .cluster(CLUSTER)
            .send()
            .await
            .unwrap()
            .container_instance_arns
            .unwrap_or_default();
        if arns.is_empty() {
            return Vec::new();
        }
        ecs.describe_container_instances()
            .cluster(CLUSTER)
            .set_container_instances(Some(arns))
            .send()
            .await
            .unwrap()
            .container_instances
            .unwrap_or_default()
    }

    /// Every task in the cluster, running or stopped.
    pub async fn task_count(&self) -> usize {
        self.task_arns(None).await.len()
    }

    /// The tasks of the cluster (started by `started_by`, when given):
    /// ListTasks lists running tasks unless asked for stopped ones.
    async fn task_arns(&self, started_by: Option<String>) -> Vec<String> {
        let mut arns = Vec::new();
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let listed = self
                .clients()
                .ecs
                .list_tasks()
                .cluster(CLUSTER)
                .set_started_by(started_by.clone())
                .desired_status(status)
                .send()
                .await
                .unwrap();
            arns.extend(listed.task_arns.unwrap_or_default());
        }
        arns
    }
}

/// `render`: an ECS job that may fall back to Fargate; no Lambda function.
pub fn render() -> JobDefinition {
    JobDefinition {
        daily_limit_usd: None,
        retry_rules: Vec::new(),
        name: "render".into(),
        task_definition: "render".into(),
        container: "main".into(),
        lambda_function: None,
        command: None,
        cpu: TASK_CPU as u32,
        memory: TASK_MEMORY as u32,
        gpu: 0,
        timeout_seconds: 600,
        max_attempts: 3,
        fargate: true,
        job_role: None,
        interruptible: true,
        command_override: true,
        expected_seconds: None,
        runs: Default::default(),
        tags: Default::default(),
    }
}

/// `train`: a GPU job, EC2 only.
pub fn train() -> JobDefinition {
    JobDefinition {
        name: "train".into(),
        task_definition: "train".into(),
        gpu: 1,
        fargate: false,
        ..render()
    }
}
