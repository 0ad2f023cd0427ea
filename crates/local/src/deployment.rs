//! One berth deployment in an account of the local AWS, made the one way
//! the local run and the tests both use: the job queue and its dead-letter
//! queue, the jobs and definitions tables, the cluster with its container
//! instances (fixed, or an empty Auto Scaling group), the task definitions,
//! and the settings that name them, as template.yaml's `BERTH_*` variables
//! would.

use aws_sdk_sqs::types::QueueAttributeName;
use berth_aws::settings::{
    CLUSTER, DEFINITIONS_TABLE, DLQ_URL, FARGATE_SECURITY_GROUPS, FARGATE_SUBNETS, INSTANCE_GROUP,
    INSTANCE_TYPES, INSTANCE_VCPUS, JOBS_TABLE, LAUNCH_TEMPLATES, MAX_RECEIVES, QUEUE_URL,
    SCALE_IN_AFTER_SECONDS,
};
use berth_aws::{Clients, Settings};

use crate::moto::{Account, xml_values};

/// The names of the deployment's resources.
pub const CLUSTER_NAME: &str = "berth";
pub const QUEUE_NAME: &str = "berth-jobs";
pub const DLQ_NAME: &str = "berth-dlq";
pub const JOBS_TABLE_NAME: &str = "berth-jobs";
pub const DEFINITIONS_TABLE_NAME: &str = "berth-definitions";

/// The cluster's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// This many container instances, registered now.
    Fixed(usize),
    /// An empty Auto Scaling group of at most `max` instances, which the
    /// scaler grows; idle ones drain after `scale_in_after` seconds.
    Group { max: u32, scale_in_after: u32 },
}

/// How the deployment is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub instances: Instances,
    /// The job queue's visibility timeout, in seconds.
    pub visibility_timeout: u32,
    /// After this many receives the queue moves a message to the
    /// dead-letter queue (its redrive policy); `None`: never.
    pub max_receives: Option<u32>,
    /// The account holds the deployment already (a local run started
    /// again): nothing is made, the settings are read.
    pub existing: bool,
}

/// A deployment as provisioned.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub settings: Settings,
    /// The `BERTH_*` variables the functions are given.
    pub vars: Vec<(&'static str, String)>,
    pub queue_url: String,
    pub dlq_url: String,
}

impl Deployment {
    /// Makes the deployment in `moto`'s account, on `clients` (of that
    /// account).
    pub async fn provision(
        clients: &Clients,
        moto: &Account,
        options: &Options,
    ) -> Result<Self, String> {
        let (queue_url, dlq_url) = if options.existing {
            let url = |name: &'static str| async move {
                clients
                    .sqs
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map(|o| o.queue_url.unwrap_or_default())
                    .map_err(|e| format!("queue {name}: {e}"))
            };
            (url(QUEUE_NAME).await?, url(DLQ_NAME).await?)
        } else {
            Self::make(clients, moto, options).await?
        };
        Self::describe(moto, options, queue_url, dlq_url).await
    }

    /// Makes the resources; the queues' URLs.
    async fn make(
        clients: &Clients,
        moto: &Account,
        options: &Options,
    ) -> Result<(String, String), String> {
        let sqs = &clients.sqs;
        let dlq_url = sqs
            .create_queue()
            .queue_name(DLQ_NAME)
            .send()
            .await
            .map_err(|e| format!("create queue {DLQ_NAME}: {e}"))?
            .queue_url
            .unwrap_or_default();
        let mut queue = sqs.create_queue().queue_name(QUEUE_NAME).attributes(
            QueueAttributeName::VisibilityTimeout,
            options.visibility_timeout.to_string(),
        );
        if let Some(max) = options.max_receives {
            let dlq_arn = format!("arn:aws:sqs:{}:{}:{DLQ_NAME}", moto.region, moto.id);
            queue = queue.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max })
                    .to_string(),
            );
        }
        let queue_url = queue
            .send()
            .await
            .map_err(|e| format!("create queue {QUEUE_NAME}: {e}"))?
            .queue_url
            .unwrap_or_default();
        berth_aws::schema::create_jobs_table(&clients.dynamodb, JOBS_TABLE_NAME)
            .await
            .map_err(|e| e.to_string())?;
        berth_aws::schema::create_definitions_table(&clients.dynamodb, DEFINITIONS_TABLE_NAME)
            .await
            .map_err(|e| e.to_string())?;

        clients
            .ecs
            .create_cluster()
            .cluster_name(CLUSTER_NAME)
            .send()
            .await
            .map_err(|e| format!("create cluster: {e}"))?;
        match options.instances {
            Instances::Fixed(n) => {
                for _ in 0..n {
                    moto.add_container_instance(&clients.ecs, CLUSTER_NAME)
                        .await?;
                }
            }
            Instances::Group { max, .. } => {
                crate::fleet::create_group(&clients.autoscaling, moto, 0, max).await?;
            }
        }
        crate::moto::register_task_definitions(&clients.ecs).await?;
        Ok((queue_url, dlq_url))
    }

    /// The settings of the deployment in `moto`'s account.
    async fn describe(
        moto: &Account,
        options: &Options,
        queue_url: String,
        dlq_url: String,
    ) -> Result<Self, String> {
        let ec2 = |action| moto.query("ec2", "2016-11-15", action, &[]);
        let subnets = xml_values(&ec2("DescribeSubnets").await?, "subnetId");
        let groups = xml_values(&ec2("DescribeSecurityGroups").await?, "groupId");

        let mut vars = vec![
            (JOBS_TABLE, JOBS_TABLE_NAME.to_owned()),
            (DEFINITIONS_TABLE, DEFINITIONS_TABLE_NAME.to_owned()),
            (CLUSTER, CLUSTER_NAME.to_owned()),
            (QUEUE_URL, queue_url.clone()),
            (DLQ_URL, dlq_url.clone()),
            (
                FARGATE_SUBNETS,
                subnets.first().cloned().unwrap_or_default(),
            ),
            (
                FARGATE_SECURITY_GROUPS,
                groups.first().cloned().unwrap_or_default(),
            ),
        ];
        if let Some(max) = options.max_receives {
            vars.push((MAX_RECEIVES, max.to_string()));
        }
        if let Instances::Group { scale_in_after, .. } = options.instances {
            vars.extend([
                (INSTANCE_GROUP, crate::fleet::GROUP.to_owned()),
                (INSTANCE_TYPES, crate::fleet::ALLOWED_TYPES.to_owned()),
                (INSTANCE_VCPUS, crate::fleet::ALLOWED_VCPUS.to_owned()),
                (
                    LAUNCH_TEMPLATES,
                    crate::fleet::launch_templates(moto).await?.to_string(),
                ),
                (SCALE_IN_AFTER_SECONDS, scale_in_after.to_string()),
            ]);
        }
        let settings = Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            settings,
            vars,
            queue_url,
            dlq_url,
        })
    }
}
