//! The cluster's instances as the scaler acts on them: the Auto Scaling
//! group (its size, its instances, terminating one), and the container
//! instances' state and berth's attributes on them (when one went idle,
//! that the scaler drained it).

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ecs::types::{Attribute, ContainerInstanceStatus};

use crate::AwsError;

/// The ECS attribute holding when (epoch ms) an instance last had no task.
pub const IDLE_SINCE: &str = "berth.idle-since";
/// The ECS attribute marking an instance the scaler drained (epoch ms).
pub const RETIRING: &str = "berth.retiring";

/// The group and the cluster of berth's instances.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub cluster: String,
    pub group: String,
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

    /// Terminates an instance and takes it off the desired capacity, so
    /// that nothing replaces it. Its scale-in protection (which keeps Auto
    /// Scaling's own choices off berth's instances) is lifted first.
    pub async fn terminate(&self, instance_id: &str) -> Result<(), AwsError> {
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
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("autoscaling:TerminateInstanceInAutoScalingGroup", e)
            })?;
        Ok(())
    }

    /// Sets container instances `ACTIVE` or `DRAINING`.
    pub async fn set_state(
        &self,
        container_instances: &[String],
        status: ContainerInstanceStatus,
    ) -> Result<(), AwsError> {
        if container_instances.is_empty() {
            return Ok(());
        }
        self.ecs
            .update_container_instances_state()
            .cluster(&self.cluster)
            .set_container_instances(Some(container_instances.to_vec()))
            .status(status)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:UpdateContainerInstancesState", e))?;
        Ok(())
    }

    /// Sets berth's attribute `name` on a container instance.
    pub async fn put_attribute(
        &self,
        container_instance: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        self.ecs
            .put_attributes()
            .cluster(&self.cluster)
            .attributes(attribute(container_instance, name, Some(value))?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:PutAttributes", e))?;
        Ok(())
    }

    /// Removes berth's attribute `name` (now `value`) from a container
    /// instance.
    pub async fn delete_attribute(
        &self,
        container_instance: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        self.ecs
            .delete_attributes()
            .cluster(&self.cluster)
            .attributes(attribute(container_instance, name, Some(value))?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ecs:DeleteAttributes", e))?;
        Ok(())
    }
}

fn attribute(target: &str, name: &str, value: Option<&str>) -> Result<Attribute, AwsError> {
    Attribute::builder()
        .name(name)
        .set_value(value.map(str::to_owned))
        .target_id(target)
        .build()
        .map_err(|e| AwsError {
            operation: "ecs:PutAttributes",
            code: None,
            message: e.to_string(),
            retryable: false,
        })
}
