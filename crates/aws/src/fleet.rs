//! The Auto Scaling group of the cluster's instances, as the scaler acts on
//! it: its size, its instances, terminating one. (The container instances'
//! side is [`crate::ecs::EcsCluster`]'s.)

use aws_sdk_autoscaling::types::LifecycleState;

use crate::AwsError;

/// The most instance types a mixed instances policy takes (Auto Scaling's
/// quota: 40 overrides a group).
pub const MAX_OVERRIDES: usize = 40;

/// berth's Auto Scaling group.
#[derive(Debug, Clone)]
pub struct Fleet {
    autoscaling: aws_sdk_autoscaling::Client,
    group: String,
    templates: Option<LaunchTemplates>,
    #[cfg(feature = "ec2")]
    ec2: Option<aws_sdk_ec2::Client>,
}

/// A launch template and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: String,
    pub version: String,
}

/// The launch template for each class of instance type: its architecture's
/// ECS-optimized AMI, or the ECS GPU-optimized AMI for a type with GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplates {
    pub x86_64: Template,
    pub arm64: Option<Template>,
    pub gpu: Option<Template>,
}

impl LaunchTemplates {
    /// `x86_64=ID:VERSION,arm64=ID:VERSION,gpu=ID:VERSION` (x86_64 needed,
    /// the others optional).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (mut x86_64, mut arm64, mut gpu) = (None, None, None);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (class, spec) = part
                .split_once('=')
                .ok_or_else(|| format!("expected CLASS=ID:VERSION, found {part:?}"))?;
            let (id, version) = spec
                .split_once(':')
                .filter(|(id, v)| !id.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("expected ID:VERSION for {class}, found {spec:?}"))?;
            let template = Some(Template {
                id: id.to_owned(),
                version: version.to_owned(),
            });
            match class {
                "x86_64" => x86_64 = template,
                "arm64" => arm64 = template,
                "gpu" => gpu = template,
                other => {
                    return Err(format!(
                        "unknown class {other:?}: expected x86_64, arm64 or gpu"
                    ));
                }
            }
        }
        Ok(Self {
            x86_64: x86_64.ok_or("no x86_64 launch template")?,
            arm64,
            gpu,
        })
    }

    /// The template instances of type `name` launch from; `None` for a
    /// type of a class with none (or unknown to the catalog).
    pub fn of(&self, name: &str) -> Option<&Template> {
        let kind = berth_core::scaling::InstanceType::known(name)?;
        if kind.room.gpu > 0 {
            return self.gpu.as_ref();
        }
        match berth_core::scaling::choice::architecture(name)? {
            berth_core::prices::Arch::X86_64 => Some(&self.x86_64),
            berth_core::prices::Arch::Arm64 => self.arm64.as_ref(),
        }
    }
}

impl std::fmt::Display for LaunchTemplates {
    /// As [`LaunchTemplates::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let classes = [
            ("x86_64", Some(&self.x86_64)),
            ("arm64", self.arm64.as_ref()),
            ("gpu", self.gpu.as_ref()),
        ];
        let mut first = true;
        for (class, template) in classes {
            if let Some(t) = template {
                let comma = if first { "" } else { "," };
                write!(f, "{comma}{class}={}:{}", t.id, t.version)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The Auto Scaling group as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Its instances that are launching or in service (not those on their
    /// way out).
    pub instances: Vec<GroupInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub id: String,
    pub instance_type: String,
    pub protected: bool,
}

impl Fleet {
    pub fn new(autoscaling: aws_sdk_autoscaling::Client, group: impl Into<String>) -> Self {
        Self {
            autoscaling,
            group: group.into(),
            templates: None,
            #[cfg(feature = "ec2")]
            ec2: None,
        }
    }

    /// The same group, with EC2 to tell when its instances launched.
    #[cfg(feature = "ec2")]
    pub fn with_ec2(self, ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            ec2: Some(ec2),
            ..self
        }
    }

    /// When (epoch ms) each of `instance_ids` launched, as EC2 says; empty
    /// without EC2 (see [`Fleet::with_ec2`]). An instance EC2 no longer
    /// knows is left out.
    #[cfg(feature = "ec2")]
    pub async fn launched(
        &self,
        instance_ids: &[String],
    ) -> Result<std::collections::HashMap<String, u64>, AwsError> {
        let mut launched = std::collections::HashMap::new();
        let Some(ec2) = &self.ec2 else {
            return Ok(launched);
        };
        if instance_ids.is_empty() {
            return Ok(launched);
        }
        let mut pages = ec2
            .describe_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("ec2:DescribeInstances", e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), Some(at)) = (i.instance_id(), i.launch_time()) {
                    let ms = at.to_millis().ok().and_then(|ms| u64::try_from(ms).ok());
                    if let Some(ms) = ms {
                        launched.insert(id.to_owned(), ms);
                    }
                }
            }
        }
        Ok(launched)
    }

    /// The current Spot price of each of `types` in each availability zone
    /// of the region (Linux, USD per hour), as `(type, price)` quotes, from
    /// `DescribeSpotPriceHistory` asked for the price in effect now; none
    /// without EC2 (see [`Fleet::with_ec2`]). berth-core's
    /// [`berth_core::prices::observed_spot`] makes one price per type of
    /// them.
    #[cfg(feature = "ec2")]
    pub async fn spot_quotes(&self, types: &[String]) -> Result<Vec<(String, f64)>, AwsError> {
        let mut quotes = Vec::new();
        let Some(ec2) = &self.ec2 else {
            return Ok(quotes);
        };
        if types.is_empty() {
            return Ok(quotes);
        }
        let mut pages = ec2
            .describe_spot_price_history()
            .set_instance_types(Some(
                types
                    .iter()
                    .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now(),
            ))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("ec2:DescribeSpotPriceHistory", e))?;
            for quote in page.spot_price_history() {
                let price = quote.spot_price().and_then(|p| p.parse::<f64>().ok());
                if let (Some(kind), Some(price)) = (quote.instance_type(), price) {
                    quotes.push((kind.as_str().to_owned(), price));
                }
            }
        }
        Ok(quotes)
    }

    /// The same group, launching each type from its class's template (see
    /// [`Fleet::launch_types`]).
    pub fn with_launch_templates(self, templates: Option<LaunchTemplates>) -> Self {
        Self { templates, ..self }
    }

    /// Whether the scaler chooses the types the group launches (it has
    /// their launch templates).
    pub fn chooses_types(&self) -> bool {
        self.templates.is_some()
    }

    /// Whether the group can launch type `name` as the scaler chose it:
    /// its class has a launch template (any, without templates).
    pub fn can_launch(&self, name: &str) -> bool {
        self.templates.as_ref().is_none_or(|t| t.of(name).is_some())
    }

    /// Makes `types` (the cheapest first) the ones the group launches next,
    /// each from its class's launch template, the group's Spot allocation
    /// (`price-capacity-optimized`) choosing among them; the group's
    /// instances distribution (on-demand base and share) stays as it is.
    /// Without launch templates (see [`Fleet::with_launch_templates`]) the
    /// group is left as it is. A type whose class has no template is left
    /// out; none left is an error.
    pub async fn launch_types(&self, types: &[String]) -> Result<(), AwsError> {
        use aws_sdk_autoscaling::types::{
            LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
            MixedInstancesPolicy,
        };
        let Some(templates) = &self.templates else {
            return Ok(());
        };
        let spec = |t: &Template| {
            LaunchTemplateSpecification::builder()
                .launch_template_id(&t.id)
                .version(&t.version)
                .build()
        };
        let overrides: Vec<LaunchTemplateOverrides> = types
            .iter()
            .filter_map(|name| {
                let template = templates.of(name)?;
                Some(
                    LaunchTemplateOverrides::builder()
                        .instance_type(name)
                        .launch_template_specification(spec(template))
                        .build(),
                )
            })
            .take(MAX_OVERRIDES)
            .collect();
        if overrides.is_empty() {
            return Err(AwsError {
                operation: "autoscaling:UpdateAutoScalingGroup",
                code: None,
                message: format!(
                    "no launch template for any of {}: the group is not changed",
                    types.join(", ")
                ),
                retryable: false,
            });
        }
        // The distribution as it is: an update without it may reset it.
        let distribution = self
            .describe()
            .await?
            .mixed_instances_policy()
            .and_then(|p| p.instances_distribution())
            .cloned();
        let policy = MixedInstancesPolicy::builder()
            .launch_template(
                LaunchTemplate::builder()
                    .launch_template_specification(spec(&templates.x86_64))
                    .set_overrides(Some(overrides))
                    .build(),
            )
            .set_instances_distribution(distribution)
            .build();
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&self.group)
            .mixed_instances_policy(policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("autoscaling:UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.group
    }

    /// The group as Auto Scaling describes it.
    async fn describe(&self) -> Result<aws_sdk_autoscaling::types::AutoScalingGroup, AwsError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("autoscaling:DescribeAutoScalingGroups", e))?;
        out.auto_scaling_groups()
            .first()
            .cloned()
            .ok_or_else(|| AwsError {
                operation: "autoscaling:DescribeAutoScalingGroups",
                code: None,
                message: format!("no Auto Scaling group `{}`", self.group),
                retryable: false,
            })
    }

    /// The group's size and instances.
    pub async fn group(&self) -> Result<Group, AwsError> {
        let group = &self.describe().await?;
        let size = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        let instances = group
            .instances()
            .iter()
            .filter(|i| {
                !matches!(
                    i.lifecycle_state(),
                    Some(
                        LifecycleState::Terminating
                            | LifecycleState::TerminatingProceed
                            | LifecycleState::TerminatingWait
                            | LifecycleState::Terminated
                            | LifecycleState::Detaching
                            | LifecycleState::Detached
                    )
                )
            })
            .filter_map(|i| {
                Some(GroupInstance {
                    id: i.instance_id()?.to_owned(),
                    instance_type: i.instance_type().unwrap_or_default().to_owned(),
                    protected: i.protected_from_scale_in().unwrap_or(false),
                })
            })
            .collect();
        Ok(Group {
            desired: size(group.desired_capacity),
            min: size(group.min_size),
            max: size(group.max_size),
            instances,
        })
    }

    /// Sets the group's desired capacity (its cooldown does not hold the
    /// scaler back: the scaler launches only for demand).
    pub async fn set_desired(&self, desired: u32) -> Result<(), AwsError> {
        self.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(&self.group)
            .desired_capacity(i32::try_from(desired).unwrap_or(i32::MAX))
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("autoscaling:SetDesiredCapacity", e))?;
        Ok(())
    }

    /// Terminates an instance and, with `decrement`, takes it off the
    /// desired capacity, so that nothing replaces it (Auto Scaling refuses
    /// a decrement below the group's minimum). Its scale-in protection
    /// (which keeps Auto Scaling's own choices off berth's instances) is
    /// lifted first.
    pub async fn terminate(&self, instance_id: &str, decrement: bool) -> Result<(), AwsError> {
        self.autoscaling
            .set_instance_protection()
            .auto_scaling_group_name(&self.group)
            .instance_ids(instance_id)
            .protected_from_scale_in(false)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("autoscaling:SetInstanceProtection", e))?;
        self.autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("autoscaling:TerminateInstanceInAutoScalingGroup", e)
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_autoscaling::Client;
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::update_auto_scaling_group::UpdateAutoScalingGroupOutput;
    use aws_sdk_autoscaling::types::{
        AutoScalingGroup, InstancesDistribution, MixedInstancesPolicy,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    /// The group as described: on-demand base 1 and 20% above it.
    fn described() -> aws_smithy_mocks::Rule {
        mock!(Client::describe_auto_scaling_groups).then_output(|| {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(
                    AutoScalingGroup::builder()
                        .auto_scaling_group_name("g")
                        .mixed_instances_policy(
                            MixedInstancesPolicy::builder()
                                .instances_distribution(
                                    InstancesDistribution::builder()
                                        .on_demand_base_capacity(1)
                                        .on_demand_percentage_above_base_capacity(20)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn the_chosen_types_launch_each_from_its_template_and_the_distribution_stays() {
        let templates = LaunchTemplates::parse("x86_64=lt-1:3,arm64=lt-2:1,gpu=lt-3:2").unwrap();
        let update = mock!(Client::update_auto_scaling_group)
            .match_requests(|r| {
                let Some(policy) = r.mixed_instances_policy() else {
                    return false;
                };
                let kept = policy.instances_distribution().is_some_and(|d| {
                    d.on_demand_base_capacity() == Some(1)
                        && d.on_demand_percentage_above_base_capacity() == Some(20)
                });
                let launch = policy.launch_template();
                let overrides: Vec<(String, String, String)> = launch
                    .map(|l| l.overrides())
                    .unwrap_or_default()
                    .iter()
                    .map(|o| {
                        let spec = o.launch_template_specification();
                        (
                            o.instance_type().unwrap_or_default().to_owned(),
                            spec.and_then(|s| s.launch_template_id())
                                .unwrap_or_default()
                                .to_owned(),
                            spec.and_then(|s| s.version())
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect();
                let base = launch
                    .and_then(|l| l.launch_template_specification())
                    .and_then(|s| s.launch_template_id());
                kept && base == Some("lt-1")
                    && overrides
                        == [
                            ("m7g.large".into(), "lt-2".into(), "1".into()),
                            ("g4dn.xlarge".into(), "lt-3".into(), "2".into()),
                            ("m5.large".into(), "lt-1".into(), "3".into()),
                        ]
            })
            .then_output(|| UpdateAutoScalingGroupOutput::builder().build());
        let described = described();
        let client = mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&described, &update]
        );
        let fleet = Fleet::new(client, "g").with_launch_templates(Some(templates));
        assert!(fleet.chooses_types());
        // A type the catalog does not know has no template: left out.
        let types = ["m7g.large", "g4dn.xlarge", "x9.mega", "m5.large"].map(String::from);
        fleet.launch_types(&types).await.unwrap();
        assert_eq!(update.num_calls(), 1);

        // Only Graviton types and no arm64 template: the group is not
        // changed, and the scaler is told why.
        let x86 = LaunchTemplates::parse("x86_64=lt-1:3").unwrap();
        let fleet = fleet.with_launch_templates(Some(x86));
        assert!(fleet.can_launch("m5.large") && !fleet.can_launch("m7g.large"));
        let error = fleet
            .launch_types(&["m7g.large".to_owned()])
            .await
            .unwrap_err();
        assert!(
            error
                .message
                .contains("no launch template for any of m7g.large"),
            "{error}"
        );
        assert_eq!(update.num_calls(), 1);
        // Without templates the group is left as it is.
        let fleet = fleet.with_launch_templates(None);
        assert!(!fleet.chooses_types());
        fleet.launch_types(&types).await.unwrap();
        assert_eq!((update.num_calls(), described.num_calls()), (1, 1));
    }

    #[test]
    fn each_class_of_type_launches_from_its_template() {
        let t = LaunchTemplates::parse("x86_64=lt-1:3, arm64=lt-2:1,gpu=lt-3:$Latest").unwrap();
        assert_eq!(t.of("m5.large").map(|t| t.id.as_str()), Some("lt-1"));
        assert_eq!(t.of("m7g.large").map(|t| t.id.as_str()), Some("lt-2"));
        let gpu = t.of("g4dn.xlarge").unwrap();
        assert_eq!((gpu.id.as_str(), gpu.version.as_str()), ("lt-3", "$Latest"));
        assert_eq!(t.of("x9.mega"), None);
        assert_eq!(LaunchTemplates::parse(&t.to_string()), Ok(t.clone()));
        let x86 = LaunchTemplates::parse("x86_64=lt-1:1").unwrap();
        assert_eq!(x86.of("m7g.large"), None, "no arm64 template");
        assert!(
            LaunchTemplates::parse("arm64=lt-2:1")
                .unwrap_err()
                .contains("x86_64")
        );
        assert!(
            LaunchTemplates::parse("x86_64=lt-1")
                .unwrap_err()
                .contains("ID:VERSION")
        );
        assert!(
            LaunchTemplates::parse("mips=lt-1:1")
                .unwrap_err()
                .contains("unknown class")
        );
    }
}
