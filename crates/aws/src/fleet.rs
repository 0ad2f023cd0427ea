//! The Auto Scaling group of the cluster's instances, as the scaler acts on
//! it: its size, its instances, terminating one. (The container instances'
//! side is [`crate::ecs::EcsCluster`]'s.)

use aws_sdk_autoscaling::types::LifecycleState;

use crate::AwsError;

/// berth's Auto Scaling group.
#[derive(Debug, Clone)]
pub struct Fleet {
    autoscaling: aws_sdk_autoscaling::Client,
    group: String,
    #[cfg(feature = "ec2")]
    ec2: Option<aws_sdk_ec2::Client>,
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

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.group
    }

    /// The group's size and instances.
    pub async fn group(&self) -> Result<Group, AwsError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("autoscaling:DescribeAutoScalingGroups", e))?;
        let group = out.auto_scaling_groups().first().ok_or_else(|| AwsError {
            operation: "autoscaling:DescribeAutoScalingGroups",
            code: None,
            message: format!("no Auto Scaling group `{}`", self.group),
            retryable: false,
        })?;
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
