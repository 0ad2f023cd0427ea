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
use berth_aws::fleet::Group;
use berth_aws::store::now_ms;
use berth_aws::{AwsError, EcsCluster, Fleet, JobStore};
use berth_core::ResolvedJob;
use berth_core::capacity::{InstanceStatus, LargestContainer};
use berth_core::prices::Arch;
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

/// How long observed Spot prices hold before EC2 is asked again (they move
/// over hours and days; one call an hour).
pub const SPOT_PRICES_MAX_AGE: Duration = Duration::from_secs(3600);

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
    /// Jobs waiting for capacity, whether or not the group can run them.
    pub waiting: u32,
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
    /// When the members not yet registered launched. Unknown on an error
    /// (logged): the registration deadline then waits for a later run.
    async fn launched(&self, seen: &[Seen<'_>]) -> HashMap<String, u64> {
        let ids: Vec<String> = seen
            .iter()
            .filter(|s| s.container.is_none())
            .map(|s| s.id.clone())
            .collect();
        self.fleet.launched(&ids).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "launch times unknown: the registration deadline waits");
            HashMap::new()
        })
    }

    /// Terminates member `seen` if it is still one to go: re-read just
    /// before, a registered instance must still be drained with no task
    /// (another run, or a reclaim's end, may have changed it). `decrement`:
    /// its desired capacity goes with it (not below the group's minimum,
    /// which Auto Scaling refuses). Whether it was terminated.
    async fn terminate(&self, seen: &Seen<'_>, decrement: bool) -> Result<bool, AwsError> {
        if let Some(o) = seen.container {
            let now = self.cluster.container_instance(&o.arn).await?;
            let still =
                now.is_some_and(|n| n.tasks == 0 && n.instance.status != InstanceStatus::Active);
            if !still {
                return Ok(false);
            }
        }
        self.fleet.terminate(&seen.id, decrement).await?;
        Ok(true)
    }

    /// This scaler at the Spot prices of its group's types as observed within
    /// [`SPOT_PRICES_MAX_AGE`]: kept in the jobs table, or asked of EC2 when
    /// those are older (and kept). Where neither answers, the prices it had,
    /// with a warning: a price is an estimate, never a reason not to scale.
    pub async fn at_current_prices(&self) -> Scaler {
        let now = now_ms();
        let kept = self.store.spot_prices().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "kept Spot prices unread: asking EC2");
            None
        });
        let max_age = SPOT_PRICES_MAX_AGE.as_millis() as i64;
        let observed = match kept {
            Some(kept) if now - kept.at_ms < max_age => Some(kept),
            kept => match self.fleet.spot_quotes(&self.instance_types).await {
                Ok(quotes) if !quotes.is_empty() => {
                    let fresh = berth_aws::store::ObservedSpot {
                        at_ms: now,
                        prices: berth_core::prices::observed_spot(&quotes),
                    };
                    tracing::info!(prices = ?fresh.prices, "Spot prices observed");
                    if let Err(e) = self.store.keep_spot_prices(&fresh).await {
                        tracing::warn!(error = %e, "Spot prices not kept: asked again next run");
                    }
                    Some(fresh)
                }
                Ok(_) => kept,
                Err(e) => {
                    tracing::warn!(error = %e, "Spot prices unknown: the last kept, else the configured ones");
                    kept
                }
            },
        };
        let mut scaler = self.clone();
        if let Some(observed) = observed {
            scaler.prices = self.prices.with_observed_spot(&observed.prices);
        }
        scaler
    }

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
        scaling::could_pay(&elsewhere, types, &self.prices)
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
        // Each waiting job's architecture, its task definition's (read once
        // each, and kept a while).
        let mut archs: HashMap<String, Arch> = HashMap::new();
        for j in &asked.waiting {
            if !archs.contains_key(&j.task_definition) {
                let arch = self.cluster.architecture_of(&j.task_definition).await;
                archs.insert(j.task_definition.clone(), arch);
            }
        }
        let demand = Demand {
            waiting: by_need(&asked.waiting, &archs),
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
        let launched = self.launched(&seen).await;
        let mut idle_marks: Vec<(&Observed, Option<u64>)> = Vec::new();
        let members: Vec<Member<usize>> = seen
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (member, mark) = member(
                    k,
                    &group.instances[k].instance_type,
                    s.container,
                    launched.get(s.id.as_str()).copied(),
                    types,
                    now,
                );
                if let (Some(o), Some(mark)) = (s.container, mark) {
                    idle_marks.push((o, mark));
                }
                member
            })
            .collect();
        let config = Config {
            min: group.min,
            max: group.max,
            quiet_ms: self.scale_in_after.as_millis() as u64,
            headroom: self.headroom,
            prices: &self.prices,
        };
        // With launch templates, the types it has a template for. Without,
        // the group launches its own types, whichever it picks: the plan
        // can count on no more room than the smallest of them has.
        let planned: Vec<InstanceType> = if self.fleet.chooses_types() {
            types
                .iter()
                .filter(|t| self.fleet.can_launch(&t.name))
                .cloned()
                .collect()
        } else {
            let smallest = scaling::smallest(types);
            types
                .iter()
                .map(|t| InstanceType {
                    name: t.name.clone(),
                    room: smallest,
                })
                .collect()
        };
        let plan = scaling::plan(now, &members, &demand, &planned, largest, config);

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
        // One at a time, each re-checked just before: one refused must not
        // hold back the others or the scale-out.
        let mut reasons = plan.reasons;
        let mut terminated: Vec<usize> = Vec::new();
        let mut desired = group.desired;
        for k in &plan.terminate {
            match self.terminate(&seen[*k], desired > group.min).await {
                Ok(true) => {
                    terminated.push(*k);
                    if desired > group.min {
                        desired -= 1;
                    }
                }
                Ok(false) => reasons.push(format!(
                    "keep {}: it took a task, or was taken back, since the plan",
                    seen[*k].id
                )),
                Err(e) => {
                    tracing::warn!(instance_id = seen[*k].id, error = %e, "instance not terminated");
                    reasons.push(format!("{} not terminated: {e}", seen[*k].id));
                }
            }
        }
        let staying = group.instances.len() as u32 - terminated.len() as u32;
        let after = match resize(&group, desired, staying, plan.add) {
            Some(after) => {
                // What the group launches: the types chosen for the jobs.
                if after > staying && !plan.types.is_empty() {
                    self.fleet.launch_types(&plan.types).await?;
                }
                self.fleet.set_desired(after).await?;
                after
            }
            None => desired,
        };
        // The demand the group can run, as the plan counted it.
        let runnable = |needs: &[(Room, u32)]| -> u32 {
            needs
                .iter()
                .filter(|(n, _)| scaling::fit(*n, types) != scaling::Fit::None)
                .map(|(_, c)| c)
                .sum()
        };
        let ids = |list: &[usize]| list.iter().map(|k| seen[*k].id.clone()).collect::<Vec<_>>();
        let scaling = Scaling {
            desired: (group.desired, after),
            added: plan.add,
            drained: ids(&plan.drain),
            reactivated: ids(&plan.reactivate),
            terminated: ids(&terminated),
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
            waiting: u32::try_from(asked.waiting.len()).unwrap_or(u32::MAX),
            reasons,
            at_rest: plan.at_rest,
        };
        for reason in &scaling.reasons {
            tracing::info!(
                group = self.fleet.name(),
                decision = reason.as_str(),
                "scaling"
            );
        }
        // Kept for `berth console`; a decision not kept is still logged.
        if let Err(e) = self
            .store
            .record_decisions(now_ms(), scaling.desired, &scaling.reasons)
            .await
        {
            tracing::warn!(error = %e, "scaling decisions not kept");
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

/// The desired capacity to set, if it changes: the instances the group
/// has that stay, and those the plan adds, within the group's bounds.
/// Counted from its instances, not from its desired capacity (`desired`): a
/// launch that failed (no Spot capacity) is not on its way, and must not
/// be asked for again on top of itself each run.
fn resize(group: &Group, desired: u32, staying: u32, add: u32) -> Option<u32> {
    let after = (staying + add).clamp(group.min, group.max.max(group.min));
    (add > 0 || desired > after).then_some(after)
}

/// A change to an instance's [`IDLE_SINCE`] mark: set it (to when), or
/// clear it (`None`).
type IdleMark = Option<u64>;

/// Member `k` of the group (of `instance_type`, launched at `launched`) as
/// the plan sees it, from its container instance if it has registered; and
/// the change its idle mark needs.
///
/// Room ECS will not place on is not counted: none on an instance whose
/// agent is disconnected, none on one that refused a task for room CPU and
/// memory do not tell ([`berth_aws::ecs::REFUSED`]) until a task stops
/// there. An instance its infrastructure reclaims goes, whatever the
/// scaler planned for it. An instance is idle since its last task stopped
/// at the earliest ([`berth_aws::ecs::TASK_STOPPED`]), not since a sample
/// happened to find it empty.
fn member(
    k: usize,
    instance_type: &str,
    container: Option<&Observed>,
    launched: Option<u64>,
    types: &[InstanceType],
    now: u64,
) -> (Member<usize>, Option<IdleMark>) {
    let launching = |free: Room| Member {
        id: k,
        state: MemberState::Launching,
        free,
        tasks: 0,
        idle_since: None,
        launched,
    };
    let Some(o) = container else {
        // Its type as registered, else as the catalog has it (a type the
        // group launched before the allowed set changed).
        let room = types
            .iter()
            .find(|t| t.name == instance_type)
            .map(|t| t.room)
            .or_else(|| InstanceType::known(instance_type).map(|t| t.room))
            .unwrap_or_else(|| scaling::smallest(types));
        return (launching(room), None);
    };
    let state = match o.instance.status {
        _ if o.reclaimed.is_some() => MemberState::Draining,
        InstanceStatus::Active => MemberState::Active,
        // On its way in (its ENI trunk being attached).
        InstanceStatus::Registering => return (launching(o.registered), None),
        InstanceStatus::Draining if o.retiring.is_some() => MemberState::Retiring,
        _ => MemberState::Draining,
    };
    let refused = o
        .refused
        .is_some_and(|at| o.task_stopped.is_none_or(|stopped| stopped < at));
    let free = if !o.instance.agent_connected || refused {
        Room::default()
    } else {
        o.remaining
    };
    let marked: Option<u64> = o.idle_since.as_deref().and_then(|v| v.parse().ok());
    let (idle_since, mark) = match (state, o.tasks) {
        (MemberState::Active, 0) => {
            let since = marked.unwrap_or(now).max(o.task_stopped.unwrap_or(0));
            (Some(since), marked.is_none().then_some(Some(now)))
        }
        (_, 0) => (marked, None),
        _ => (None, marked.is_some().then_some(None)),
    };
    let member = Member {
        id: k,
        state,
        free,
        tasks: o.tasks,
        idle_since,
        launched,
    };
    (member, mark)
}

/// Jobs counted by what each needs, on the architecture of its task
/// definition (`archs`, x86 for one not there).
fn by_need(jobs: &[ResolvedJob], archs: &HashMap<String, Arch>) -> Vec<(Room, u32)> {
    let mut counts: HashMap<Room, u32> = HashMap::new();
    for j in jobs {
        let arch = archs.get(&j.task_definition).copied().unwrap_or_default();
        *counts
            .entry(Room::new(j.cpu, j.memory, j.gpu).on(arch))
            .or_default() += 1;
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
            market: None,
            task_stopped: None,
            refused: None,
            reclaimed: None,
        }
    }

    /// Member 0 (an m5.large) as the plan sees `o` at minute 10.
    fn seen_as(o: &Observed) -> (Member<usize>, Option<IdleMark>) {
        let types = [InstanceType::known("m5.large").expect("in the catalog")];
        member(0, "m5.large", Some(o), Some(0), &types, 10 * MIN)
    }

    const MIN: u64 = 60_000;

    /// Another run took the instance back (or a task landed on it) after
    /// this run planned to terminate it: re-read just before, it stays.
    #[tokio::test]
    async fn an_instance_taken_back_since_the_plan_is_not_terminated() {
        use aws_sdk_ecs::operation::describe_container_instances::DescribeContainerInstancesOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let now_as = |status: &'static str, tasks: i32| {
            mock!(aws_sdk_ecs::Client::describe_container_instances).then_output(move || {
                DescribeContainerInstancesOutput::builder()
                    .container_instances(
                        aws_sdk_ecs::types::ContainerInstance::builder()
                            .container_instance_arn("ci-2048-7680")
                            .status(status)
                            .running_tasks_count(tasks)
                            .build(),
                    )
                    .build()
            })
        };
        let (back, busy, still) = (
            now_as("ACTIVE", 0),
            now_as("DRAINING", 1),
            now_as("DRAINING", 0),
        );
        let ecs = mock_client!(aws_sdk_ecs, RuleMode::Sequential, [&back, &busy, &still]);
        let protection = mock!(aws_sdk_autoscaling::Client::set_instance_protection).then_output(|| {
            aws_sdk_autoscaling::operation::set_instance_protection::SetInstanceProtectionOutput::builder().build()
        });
        let terminated = mock!(aws_sdk_autoscaling::Client::terminate_instance_in_auto_scaling_group)
            .then_output(|| {
                aws_sdk_autoscaling::operation::terminate_instance_in_auto_scaling_group::TerminateInstanceInAutoScalingGroupOutput::builder().build()
            });
        let autoscaling = mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&protection, &terminated]
        );
        let scaler = Scaler {
            fleet: Fleet::new(autoscaling, "berth-instances"),
            cluster: EcsCluster::new(ecs, "berth", Default::default()),
            store: JobStore::new(mock_client!(aws_sdk_dynamodb, []), "jobs"),
            instance_types: vec!["m5.large".into()],
            scale_in_after: Duration::ZERO,
            headroom: 0,
            prices: Default::default(),
            fargate_spot: true,
        };
        let mut o = observed("m5.large", 2048, 7680);
        o.instance.status = InstanceStatus::Draining;
        let seen = Seen {
            id: "i-1".into(),
            container: Some(&o),
        };
        assert!(
            !scaler.terminate(&seen, true).await.unwrap(),
            "taken back: ACTIVE"
        );
        assert!(
            !scaler.terminate(&seen, true).await.unwrap(),
            "a task landed"
        );
        assert_eq!(terminated.num_calls(), 0);
        assert!(
            scaler.terminate(&seen, true).await.unwrap(),
            "still drained, empty"
        );
        assert_eq!(terminated.num_calls(), 1);
    }

    /// The Spot prices kept in the table while they are fresh; the last
    /// kept ones where EC2 gives none; the configured ones where nothing
    /// can be read.
    #[tokio::test]
    async fn the_scaler_prices_spot_as_last_observed() {
        use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
        use aws_sdk_dynamodb::types::AttributeValue;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let kept = |at_ms: i64| {
            mock!(aws_sdk_dynamodb::Client::get_item)
                .match_requests(|r| {
                    r.key().and_then(|k| k.get("job_id"))
                        == Some(&AttributeValue::S(berth_aws::store::SPOT_PRICES_KEY.into()))
                })
                .then_output(move || {
                    GetItemOutput::builder()
                        .item("job_id", AttributeValue::S("berth:spot-prices".into()))
                        .item("prices", AttributeValue::S(r#"{"m5.large":0.0312}"#.into()))
                        .item("updated_at", AttributeValue::N(at_ms.to_string()))
                        .build()
                })
        };
        let configured = berth_core::prices::Prices {
            spot: [
                ("m5.large".to_string(), 0.05),
                ("c5.large".to_string(), 0.03),
            ]
            .into(),
            ..Default::default()
        };
        let scaler_with = |ddb| Scaler {
            fleet: Fleet::new(mock_client!(aws_sdk_autoscaling, []), "berth-instances"),
            cluster: EcsCluster::new(mock_client!(aws_sdk_ecs, []), "berth", Default::default()),
            store: JobStore::new(ddb, "jobs"),
            instance_types: vec!["m5.large".into(), "c5.large".into()],
            scale_in_after: Duration::ZERO,
            headroom: 0,
            prices: configured.clone(),
            fargate_spot: true,
        };
        let fresh = kept(now_ms() - 60_000);
        let scaler = scaler_with(mock_client!(aws_sdk_dynamodb, [&fresh]))
            .at_current_prices()
            .await;
        assert_eq!(scaler.prices.spot_hour("m5.large"), Some(0.0312), "kept");
        assert_eq!(
            scaler.prices.spot_hour("c5.large"),
            Some(0.03),
            "configured"
        );
        // Older than an hour, and EC2 (not given here) says nothing: still
        // the last observed.
        let stale = kept(now_ms() - 2 * SPOT_PRICES_MAX_AGE.as_millis() as i64);
        let scaler = scaler_with(mock_client!(aws_sdk_dynamodb, [&stale]))
            .at_current_prices()
            .await;
        assert_eq!(scaler.prices.spot_hour("m5.large"), Some(0.0312));
        // The table unreadable: the configured prices, and the run goes on.
        let unreadable = mock!(aws_sdk_dynamodb::Client::get_item).then_error(|| {
            GetItemError::ProvisionedThroughputExceededException(
                aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                    .message("slow down")
                    .build(),
            )
        });
        let scaler = scaler_with(mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&unreadable]
        ))
        .at_current_prices()
        .await;
        assert_eq!(scaler.prices.spot_hour("m5.large"), Some(0.05));
    }

    #[test]
    fn launches_that_failed_are_not_asked_for_again_on_top() {
        let group = |desired, instances: usize| Group {
            desired,
            min: 0,
            max: 10,
            instances: vec![
                berth_aws::fleet::GroupInstance {
                    id: "i".into(),
                    instance_type: "m5.large".into(),
                    protected: true,
                };
                instances
            ],
        };
        // One instance there, two more asked for last run that Spot could
        // not give: one more job waiting asks for 2 in all, not 4.
        assert_eq!(resize(&group(3, 1), 3, 1, 1), Some(2));
        // Nothing added: the launches that never came are let go.
        assert_eq!(resize(&group(3, 1), 3, 1, 0), Some(1));
        // In step: nothing to set.
        assert_eq!(resize(&group(1, 1), 1, 1, 0), None);
        // Within the bounds.
        assert_eq!(resize(&group(9, 9), 9, 9, 5), Some(10));
        let floor = Group {
            min: 1,
            ..group(1, 0)
        };
        assert_eq!(resize(&floor, 1, 0, 0), None, "the minimum holds");
    }

    #[test]
    fn room_ecs_will_not_place_on_is_not_counted() {
        let room = Room::new(2048, 7680, 0);
        let healthy = observed("m5.large", 2048, 7680);
        assert_eq!(seen_as(&healthy).0.free, room);
        // Its agent is gone: ECS places nothing there.
        let mut gone = healthy.clone();
        gone.instance.agent_connected = false;
        assert_eq!(seen_as(&gone).0.free, Room::default());
        // ECS refused a task there for want of a network interface: no room
        // until a task stops there, whatever CPU and memory say.
        let mut refused = healthy.clone();
        refused.refused = Some(5 * MIN);
        assert_eq!(seen_as(&refused).0.free, Room::default());
        refused.task_stopped = Some(4 * MIN);
        assert_eq!(seen_as(&refused).0.free, Room::default(), "an older stop");
        refused.task_stopped = Some(6 * MIN);
        assert_eq!(seen_as(&refused).0.free, room, "a task stopped since");
    }

    #[test]
    fn an_instance_registering_is_on_its_way_not_draining() {
        let mut o = observed("m5.large", 2048, 7680);
        o.instance.status = InstanceStatus::Registering;
        let (m, mark) = seen_as(&o);
        assert_eq!(m.state, MemberState::Launching);
        assert_eq!((m.free, m.launched, mark), (o.registered, Some(0), None));
    }

    #[test]
    fn an_instance_spot_reclaims_goes_even_if_the_scaler_drained_it_first() {
        let mut o = observed("m5.large", 2048, 7680);
        o.instance.status = InstanceStatus::Draining;
        o.retiring = Some((2 * MIN).to_string());
        assert_eq!(seen_as(&o).0.state, MemberState::Retiring);
        o.reclaimed = Some(3 * MIN);
        assert_eq!(
            seen_as(&o).0.state,
            MemberState::Draining,
            "never taken back"
        );
        // Reclaimed while active (ECS drains it a moment later).
        let mut active = observed("m5.large", 2048, 7680);
        active.reclaimed = Some(3 * MIN);
        assert_eq!(seen_as(&active).0.state, MemberState::Draining);
    }

    #[test]
    fn an_instance_is_idle_since_its_last_task_stopped_not_since_a_sample() {
        let mut o = observed("m5.large", 2048, 7680);
        // Marked idle by a sample at minute 1, between short jobs; a task
        // stopped at minute 9: idle since minute 9.
        o.idle_since = Some(MIN.to_string());
        o.task_stopped = Some(9 * MIN);
        let (m, mark) = seen_as(&o);
        assert_eq!((m.idle_since, mark), (Some(9 * MIN), None));
        // No mark yet: idle since now, and marked so.
        o.idle_since = None;
        let (m, mark) = seen_as(&o);
        assert_eq!((m.idle_since, mark), (Some(10 * MIN), Some(Some(10 * MIN))));
        // A task on it: not idle, and the mark goes.
        o.idle_since = Some(MIN.to_string());
        o.tasks = 1;
        let (m, mark) = seen_as(&o);
        assert_eq!((m.idle_since, mark), (None, Some(None)));
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
            daily_limit_usd: None,
            retry_rules: Vec::new(),
            depends_on: Vec::new(),
            array: None,
            job_id: "j".into(),
            definition: "d".into(),
            task_definition: if gpu > 0 { "graviton" } else { "td" }.into(),
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
            tags: Default::default(),
        };
        let jobs = [
            job(1024, 2048, 0),
            job(512, 1024, 0),
            job(1024, 2048, 0),
            job(1024, 2048, 1),
        ];
        let archs = HashMap::from([("graviton".to_owned(), Arch::Arm64)]);
        assert_eq!(
            by_need(&jobs, &archs),
            [
                (Room::new(512, 1024, 0), 1),
                (Room::new(1024, 2048, 0), 2),
                (Room::new(1024, 2048, 1).on(Arch::Arm64), 1),
            ]
        );
    }
}
