//! The scaler: each minute, berth-core's [`scaling::plan`] on what the
//! cluster, its Auto Scaling group and the job store say, then acted on.
//!
//! State between runs lives on the container instances as ECS attributes:
//! `berth.idle-since` (when an instance last ran no task) and
//! `berth.retiring` (the scaler drained it). Instances start protected from
//! scale-in (template.yaml), so Auto Scaling never picks one of its own
//! accord; the scaler terminates only drained instances that run nothing,
//! lifting the protection first.

use std::collections::HashMap;
use std::time::Duration;

use berth_aws::ecs::{IDLE_SINCE, Observed, RETIRING};
use berth_aws::store::now_ms;
use berth_aws::{AwsError, EcsCluster, Fleet, JobStore};
use berth_core::ResolvedJob;
use berth_core::capacity::{InstanceStatus, LargestContainer};
use berth_core::scaling::{self, Config, Demand, InstanceType, Member, MemberState, Room};
use serde::Serialize;

/// What the scaler needs besides the cluster.
#[derive(Debug, Clone)]
pub struct Scaler {
    pub fleet: Fleet,
    /// The cluster of the group's instances.
    pub cluster: EcsCluster,
    pub store: JobStore,
    /// The group's instance types (BERTH_INSTANCE_TYPES).
    pub instance_types: Vec<String>,
    pub scale_in_after: Duration,
    pub headroom: u32,
    /// What instances and Fargate cost (`BERTH_PRICES`).
    pub prices: berth_core::prices::Prices,
    /// Jobs that tolerate interruption go on Fargate Spot
    /// (`BERTH_FARGATE_SPOT`).
    pub fargate_spot: bool,
}

/// What one run of the scaler saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scaling {
    /// The group's desired capacity before and after.
    pub desired: (u32, u32),
    pub added: u32,
    /// EC2 instance ids.
    pub drained: Vec<String>,
    pub reactivated: Vec<String>,
    pub terminated: Vec<String>,
    /// Jobs asking for EC2 room the group can give: waiting for capacity,
    /// fallen back to Fargate lately.
    pub demand: (u32, u32),
    /// Why, one line per decision.
    pub reasons: Vec<String>,
    /// Nothing may need the scaler until something new asks (berth-core's
    /// [`scaling::Plan::at_rest`]).
    pub at_rest: bool,
}

/// One member of the group and where it is in the cluster.
struct Seen<'a> {
    id: String,
    container: Option<&'a Observed>,
}

impl Scaler {
    /// Whether jobs of one of `definitions`, on Fargate at the price the
    /// next would pay, could fill an instance of `types` that costs less,
    /// margin included.
    pub fn could_pay(
        &self,
        definitions: &[berth_core::JobDefinition],
        types: &[InstanceType],
    ) -> bool {
        let elsewhere: Vec<scaling::Elsewhere> = definitions
            .iter()
            .filter(|d| d.fargate)
            .filter_map(|d| {
                let size = berth_core::routing::fargate_size(d.cpu, d.memory)?;
                let spot = self.fargate_spot && d.interruptible;
                Some(scaling::Elsewhere {
                    need: Room::new(d.cpu, d.memory, d.gpu),
                    count: 1,
                    hourly: self
                        .prices
                        .fargate_hour(size, berth_core::prices::Arch::X86_64, spot),
                })
            })
            .collect();
        let threshold = scaling::instance_hourly(types, &self.prices) * scaling::PAYS_MARGIN;
        scaling::would_pay(&elsewhere, scaling::smallest(types), threshold)
    }

    /// The group's instance types as ECS registers them (see
    /// [`instance_types`]).
    pub fn instance_types(&self, observed: &[Observed]) -> Vec<InstanceType> {
        instance_types(&self.instance_types, observed)
    }

    pub async fn run(
        &self,
        observed: &[Observed],
        types: &[InstanceType],
        largest: Option<LargestContainer>,
    ) -> Result<Scaling, AwsError> {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        let group = self.fleet.group().await?;
        let window_ms = i64::from(scaling::FALLBACK_WINDOW_SECONDS) * 1000;
        let asked = self.store.ec2_demand(now_ms() - window_ms).await?;
        let demand = Demand {
            waiting: by_need(&asked.waiting),
            fell_back: scaling::elsewhere(&asked.fell_back, &self.prices, self.fargate_spot),
        };

        // The group's instances, with their container instances where
        // they have registered.
        let by_ec2: HashMap<&str, &Observed> = observed
            .iter()
            .map(|o| (o.ec2_instance_id.as_str(), o))
            .collect();
        let seen: Vec<Seen> = group
            .instances
            .iter()
            .map(|i| Seen {
                id: i.id.clone(),
                container: by_ec2.get(i.id.as_str()).copied(),
            })
            .collect();
        let launching_room = |name: &str| {
            types
                .iter()
                .find(|t| t.name == name)
                .map_or_else(|| scaling::smallest(types), |t| t.room)
        };
        let mut idle_marks: Vec<(&Observed, Option<u64>)> = Vec::new();
        let members: Vec<Member<usize>> = seen
            .iter()
            .enumerate()
            .map(|(k, s)| match s.container {
                None => Member {
                    id: k,
                    state: MemberState::Launching,
                    free: launching_room(&group.instances[k].instance_type),
                    tasks: 0,
                    idle_since: None,
                },
                Some(o) => {
                    let state = match o.instance.status {
                        InstanceStatus::Active => MemberState::Active,
                        _ if o.retiring.is_some() => MemberState::Retiring,
                        _ => MemberState::Draining,
                    };
                    let marked = o.idle_since.as_deref().and_then(|v| v.parse().ok());
                    let idle_since = match (state, o.tasks) {
                        (MemberState::Active, 0) => {
                            if marked.is_none() {
                                idle_marks.push((o, Some(now)));
                            }
                            Some(marked.unwrap_or(now))
                        }
                        (_, 0) => marked,
                        _ => {
                            if marked.is_some() {
                                idle_marks.push((o, None));
                            }
                            None
                        }
                    };
                    Member {
                        id: k,
                        state,
                        free: o.remaining,
                        tasks: o.tasks,
                        idle_since,
                    }
                }
            })
            .collect();
        let config = Config {
            min: group.min,
            max: group.max,
            quiet_ms: self.scale_in_after.as_millis() as u64,
            headroom: self.headroom,
            instance_hourly: scaling::instance_hourly(types, &self.prices),
        };
        let plan = scaling::plan(now, &members, &demand, types, largest, config);

        // Since when each instance has been idle.
        for (o, mark) in idle_marks {
            match mark {
                Some(at) => {
                    self.cluster
                        .put_attribute(&o.arn, IDLE_SINCE, &at.to_string())
                        .await?
                }
                None => {
                    let old = o.idle_since.as_deref().unwrap_or_default();
                    self.cluster
                        .delete_attribute(&o.arn, IDLE_SINCE, old)
                        .await?;
                }
            }
        }
        let container = |k: &usize| seen[*k].container;
        let drained: Vec<&Observed> = plan.drain.iter().filter_map(container).collect();
        for o in &drained {
            self.cluster
                .put_attribute(&o.arn, RETIRING, &now.to_string())
                .await?;
        }
        let arns = |list: &[&Observed]| list.iter().map(|o| o.arn.clone()).collect::<Vec<_>>();
        self.cluster.drain(&arns(&drained)).await?;
        let back: Vec<&Observed> = plan.reactivate.iter().filter_map(container).collect();
        self.cluster.activate(&arns(&back)).await?;
        for o in &back {
            let since = o.retiring.as_deref().unwrap_or_default();
            self.cluster
                .delete_attribute(&o.arn, RETIRING, since)
                .await?;
            // Its quiet period starts again.
            self.cluster
                .put_attribute(&o.arn, IDLE_SINCE, &now.to_string())
                .await?;
        }
        for k in &plan.terminate {
            self.fleet.terminate(&seen[*k].id).await?;
        }
        let after = group.desired.saturating_sub(plan.terminate.len() as u32) + plan.add;
        if plan.add > 0 {
            self.fleet.set_desired(after.min(group.max)).await?;
        }
        // The demand the group can run, as the plan counted it.
        let runnable = |needs: &[(Room, u32)]| -> u32 {
            needs
                .iter()
                .filter(|(n, _)| scaling::fit(*n, types) == scaling::Fit::Every)
                .map(|(_, c)| c)
                .sum()
        };
        let ids = |list: &[usize]| list.iter().map(|k| seen[*k].id.clone()).collect::<Vec<_>>();
        let scaling = Scaling {
            desired: (group.desired, after.min(group.max)),
            added: plan.add,
            drained: ids(&plan.drain),
            reactivated: ids(&plan.reactivate),
            terminated: ids(&plan.terminate),
            demand: (
                runnable(&demand.waiting),
                runnable(
                    &demand
                        .fell_back
                        .iter()
                        .map(|e| (e.need, e.count))
                        .collect::<Vec<_>>(),
                ),
            ),
            reasons: plan.reasons,
            at_rest: plan.at_rest,
        };
        for reason in &scaling.reasons {
            tracing::info!(
                group = self.fleet.name(),
                decision = reason.as_str(),
                "scaling"
            );
        }
        // Counted only when something happened: a metric costs in the
        // hours it is emitted.
        let emit = |counted: usize, metric: &[(&str, f64)]| {
            if counted > 0 {
                berth_aws::metrics::emit(&[], metric);
            }
        };
        let (added, drained, terminated) = (
            scaling.added as usize,
            scaling.drained.len(),
            scaling.terminated.len(),
        );
        emit(added, &[("InstancesAdded", added as f64)]);
        emit(drained, &[("InstancesDrained", drained as f64)]);
        emit(terminated, &[("InstancesTerminated", terminated as f64)]);
        Ok(scaling)
    }
}

/// The instance types `names` as ECS registers them: from the container
/// instances of each type in `observed` when there are any, else from
/// berth-core's catalog. Unknown types are left out (and logged).
pub fn instance_types(names: &[String], observed: &[Observed]) -> Vec<InstanceType> {
    names
        .iter()
        .filter_map(|name| {
            let seen = observed
                .iter()
                .filter(|o| o.instance_type.as_deref() == Some(name.as_str()))
                .map(|o| o.registered)
                .min_by_key(|r| (r.cpu, r.memory));
            match (seen, InstanceType::known(name)) {
                (Some(room), _) => Some(InstanceType {
                    name: name.clone(),
                    room,
                }),
                (None, Some(t)) => Some(t),
                (None, None) => {
                    tracing::error!(
                        instance_type = name.as_str(),
                        "unknown instance type: the scaler cannot size it"
                    );
                    None
                }
            }
        })
        .collect()
}

/// Jobs counted by what each needs.
fn by_need(jobs: &[ResolvedJob]) -> Vec<(Room, u32)> {
    let mut counts: HashMap<Room, u32> = HashMap::new();
    for j in jobs {
        *counts.entry(Room::new(j.cpu, j.memory, j.gpu)).or_default() += 1;
    }
    let mut out: Vec<(Room, u32)> = counts.into_iter().collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::capacity::{ContainerInstance, Resources};
    use berth_core::{Processor, ResolvedJob};

    fn observed(instance_type: &str, cpu: u32, memory: u32) -> Observed {
        let room = Room::new(cpu, memory, 0);
        Observed {
            arn: format!("ci-{cpu}-{memory}"),
            ec2_instance_id: "i-1".into(),
            instance_type: Some(instance_type.into()),
            instance: ContainerInstance {
                status: InstanceStatus::Active,
                agent_connected: true,
                remaining: Resources { cpu, memory },
            },
            registered: room,
            remaining: room,
            tasks: 0,
            idle_since: None,
            retiring: None,
        }
    }

    #[test]
    fn instance_types_are_sized_as_registered_else_from_the_catalog() {
        let names = [
            "c5.xlarge".to_owned(),
            "m5.large".to_owned(),
            "x9.mega".to_owned(),
        ];
        // Two c5.xlarge registered a little differently: the smaller holds.
        let seen = [
            observed("c5.xlarge", 4096, 7482),
            observed("c5.xlarge", 4096, 7400),
        ];
        let types = instance_types(&names, &seen);
        assert_eq!(types.len(), 2, "the unknown type is left out: {types:?}");
        assert_eq!(types[0].name, "c5.xlarge");
        assert_eq!(types[0].room, Room::new(4096, 7400, 0));
        assert_eq!(
            types[1],
            InstanceType::known("m5.large").expect("in the catalog")
        );
    }

    #[test]
    fn demand_is_counted_by_need() {
        let job = |cpu, memory, gpu| ResolvedJob {
            job_id: "j".into(),
            definition: "d".into(),
            task_definition: "td".into(),
            container: "main".into(),
            lambda_function: None,
            command: None,
            environment: Default::default(),
            cpu,
            memory,
            gpu,
            timeout_seconds: 60,
            max_attempts: 1,
            processor: Processor::Auto,
            fargate_allowed: true,
            job_role: None,
            interruptible: true,
            expected_seconds: None,
        };
        let jobs = [
            job(1024, 2048, 0),
            job(512, 1024, 0),
            job(1024, 2048, 0),
            job(1024, 2048, 1),
        ];
        assert_eq!(
            by_need(&jobs),
            [
                (Room::new(512, 1024, 0), 1),
                (Room::new(1024, 2048, 0), 2),
                (Room::new(1024, 2048, 1), 1),
            ]
        );
    }
}
