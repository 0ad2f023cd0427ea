//! A local Auto Scaling group for the cluster, and what EC2 and the ECS
//! agent do around it on AWS: the local AWS keeps the group and launches
//! and terminates its instances; [`Boots`] registers an instance with the
//! cluster once it has booted, and deregisters the container instances of
//! those that left the group.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::LifecycleState;

use berth_aws::fleet::{LaunchTemplates, Template};

use crate::moto::{Account, xml_values};

/// The group's name in the local run.
pub const GROUP: &str = "berth-instances";
/// The group's instance type: the local AWS registers its instances as the
/// ECS agent would, 4096 CPU units and 7,985 MiB.
pub use crate::moto::INSTANCE_TYPE;

/// The instance types the local run's scaler may launch: its usual type,
/// general purpose and memory types of 2 to 64 vCPUs, and GPU types.
pub const ALLOWED_TYPES: &str = "c5.xlarge,m5,r5,g4dn";
/// The vCPUs of the allowed families' sizes.
pub const ALLOWED_VCPUS: &str = "2-64";

/// The classes of instance type, each launched from a template of its own
/// (template.yaml's three: x86, Graviton, GPU).
const CLASSES: [&str; 3] = ["x86_64", "arm64", "gpu"];

/// Creates the group (empty, instances protected from scale-in, as
/// template.yaml makes it), launching [`INSTANCE_TYPE`] from the x86
/// launch template until the scaler chooses others, and a launch template
/// for each class of type ([`launch_templates`]).
pub async fn create_group(
    autoscaling: &aws_sdk_autoscaling::Client,
    moto: &Account,
    min: u32,
    max: u32,
) -> Result<LaunchTemplates, String> {
    use aws_sdk_autoscaling::types::{
        LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
    };
    for class in CLASSES {
        moto.query(
            "ec2",
            "2016-11-15",
            "CreateLaunchTemplate",
            &[
                ("LaunchTemplateName", &format!("{GROUP}-{class}")),
                ("LaunchTemplateData.ImageId", "ami-12c6146b"),
            ],
        )
        .await?;
    }
    let templates = launch_templates(moto).await?;
    let subnets = xml_values(
        &moto
            .query("ec2", "2016-11-15", "DescribeSubnets", &[])
            .await?,
        "subnetId",
    );
    let x86 = LaunchTemplateSpecification::builder()
        .launch_template_id(&templates.x86_64.id)
        .version(&templates.x86_64.version)
        .build();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(GROUP)
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(x86.clone())
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type(INSTANCE_TYPE)
                                .launch_template_specification(x86)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .min_size(i32::try_from(min).unwrap_or(0))
        .max_size(i32::try_from(max).unwrap_or(0))
        .desired_capacity(i32::try_from(min).unwrap_or(0))
        .vpc_zone_identifier(subnets.first().cloned().unwrap_or_default())
        .new_instances_protected_from_scale_in(true)
        .send()
        .await
        .map_err(|e| format!("create auto scaling group: {e}"))?;
    Ok(templates)
}

/// The group's launch templates, one per class of type, as the local AWS
/// holds them.
pub async fn launch_templates(moto: &Account) -> Result<LaunchTemplates, String> {
    let [x86_64, arm64, gpu] = CLASSES;
    Ok(LaunchTemplates {
        x86_64: template(moto, x86_64).await?,
        arm64: Some(template(moto, arm64).await?),
        gpu: Some(template(moto, gpu).await?),
    })
}

/// The launch template of `class`, its latest version.
async fn template(moto: &Account, class: &str) -> Result<Template, String> {
    let xml = moto
        .query(
            "ec2",
            "2016-11-15",
            "DescribeLaunchTemplates",
            &[("LaunchTemplateName.1", &format!("{GROUP}-{class}"))],
        )
        .await?;
    let id = xml_values(&xml, "launchTemplateId")
        .into_iter()
        .next()
        .ok_or_else(|| format!("no launch template {GROUP}-{class}"))?;
    let version = xml_values(&xml, "latestVersionNumber")
        .into_iter()
        .next()
        .unwrap_or_else(|| "1".into());
    Ok(Template { id, version })
}

/// Instances of the group on their way into the cluster.
#[derive(Debug)]
pub struct Boots {
    /// How long an instance takes from launch to its agent registering.
    pub boot: Duration,
    booting: HashMap<String, Instant>,
}

/// What one [`Boots::sync`] did: EC2 instance ids.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub registered: Vec<String>,
    /// The container instances of those registered.
    pub joined: Vec<String>,
    pub deregistered: Vec<String>,
    /// Instances in the group, and container instances in the cluster.
    pub group: usize,
    pub cluster: usize,
}

impl Boots {
    pub fn new(boot: Duration) -> Self {
        Self {
            boot,
            booting: HashMap::new(),
        }
    }

    /// Registers the group's booted instances with `cluster` and
    /// deregisters the container instances whose EC2 instance left it.
    pub async fn sync(
        &mut self,
        autoscaling: &aws_sdk_autoscaling::Client,
        ecs: &aws_sdk_ecs::Client,
        cluster: &str,
        region: &str,
    ) -> Result<Synced, String> {
        let group = autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .map_err(|e| format!("describe auto scaling groups: {e}"))?;
        let in_group: HashSet<String> = group
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| {
                matches!(
                    i.lifecycle_state(),
                    Some(LifecycleState::InService | LifecycleState::Pending)
                )
            })
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let arns = ecs
            .list_container_instances()
            .cluster(cluster)
            .send()
            .await
            .map_err(|e| format!("list container instances: {e}"))?
            .container_instance_arns
            .unwrap_or_default();
        let mut registered: HashMap<String, String> = HashMap::new();
        if !arns.is_empty() {
            let described = ecs
                .describe_container_instances()
                .cluster(cluster)
                .set_container_instances(Some(arns))
                .send()
                .await
                .map_err(|e| format!("describe container instances: {e}"))?;
            for ci in described.container_instances() {
                if let (Some(ec2), Some(arn)) = (ci.ec2_instance_id(), ci.container_instance_arn())
                {
                    registered.insert(ec2.to_owned(), arn.to_owned());
                }
            }
        }
        let mut synced = Synced {
            group: in_group.len(),
            ..Synced::default()
        };
        self.booting.retain(|id, _| in_group.contains(id));
        for id in &in_group {
            if registered.contains_key(id) {
                continue;
            }
            let since = *self.booting.entry(id.clone()).or_insert_with(Instant::now);
            if since.elapsed() < self.boot {
                continue;
            }
            let document = serde_json::json!({ "instanceId": id, "region": region });
            let joined = ecs
                .register_container_instance()
                .cluster(cluster)
                .instance_identity_document(document.to_string())
                .send()
                .await
                .map_err(|e| format!("register container instance: {e}"))?;
            if let Some(arn) = joined
                .container_instance()
                .and_then(|ci| ci.container_instance_arn())
            {
                synced.joined.push(arn.to_owned());
            }
            self.booting.remove(id);
            synced.registered.push(id.clone());
        }
        for (ec2, arn) in &registered {
            if in_group.contains(ec2) {
                continue;
            }
            ecs.deregister_container_instance()
                .cluster(cluster)
                .container_instance(arn)
                .force(true)
                .send()
                .await
                .map_err(|e| format!("deregister container instance: {e}"))?;
            synced.deregistered.push(ec2.clone());
        }
        synced.cluster = registered.len() + synced.registered.len() - synced.deregistered.len();
        Ok(synced)
    }
}
