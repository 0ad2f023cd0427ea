//! What an attempt used, read from what AWS says of it, for berth-core's
//! [`berth_core::cost::price`]: an ECS task from its stopped state (its
//! pull, start and stop, its size, its instance), a Lambda invocation from
//! its function's memory and how long it ran; and the record of each
//! attempt's cost in its job's item.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecs::primitives::{DateTime, DateTimeFormat};
use berth_core::Route;
use berth_core::cost::{self, AttemptCost, Usage};
use berth_core::launch::LaunchNumber;
use berth_core::prices::{Arch, Prices};
use berth_core::routing::FargateSize;
use berth_core::scaling::Room;

use crate::AwsError;
use crate::ecs::{Observed, TaskChange};
use crate::store::{JobStore, attr};

/// The instance an EC2 task ran on, as far as its price goes.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFacts {
    pub instance_type: String,
    pub spot: bool,
    /// What it registered with ECS: the whole its tasks take shares of.
    pub registered: Room,
}

impl InstanceFacts {
    /// From the container instance as ECS describes it. An instance that
    /// does not say how it was bought (no `berth.market` attribute) is
    /// priced at Spot, as the template's group buys every instance by
    /// default; `None` when it names no type.
    pub fn of(observed: &Observed) -> Option<Self> {
        Some(Self {
            instance_type: observed.instance_type.clone()?,
            spot: observed.market.as_deref() != Some("on-demand"),
            registered: observed.registered,
        })
    }
}

/// Epoch milliseconds of an RFC 3339 time, as ECS writes them.
pub fn epoch_ms(at: &str) -> Option<i64> {
    DateTime::from_str(at, DateTimeFormat::DateTime)
        .ok()?
        .to_millis()
        .ok()
}

/// What a stopped ECS task used, billed as `prices` say. `job_size` is what the job reserved (CPU
/// units, MiB), its share of an instance; `arch` the job's where the task
/// does not say. `None` when the task has not stopped, or ran on EC2 with
/// no instance known.
pub fn task_usage(
    prices: &Prices,
    task: &TaskChange,
    job_size: (u32, u32),
    arch: Arch,
    instance: Option<&InstanceFacts>,
) -> Option<Usage> {
    let stopped = epoch_ms(task.stopped_at.as_deref()?)?;
    let pull = task.pull_started_at.as_deref().and_then(epoch_ms);
    let started = task.started_at.as_deref().and_then(epoch_ms);
    let arch = task
        .attributes
        .iter()
        .find(|a| a.name == "ecs.cpu-architecture")
        .and_then(|a| Arch::from_ecs_attribute(a.value.as_deref()?))
        .unwrap_or(arch);
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u32>().ok());
    match task.route() {
        route @ (Route::Fargate | Route::FargateSpot) => Some(Usage::Fargate {
            size: FargateSize {
                cpu: number(&task.cpu).unwrap_or(job_size.0),
                memory: number(&task.memory).unwrap_or(job_size.1),
            },
            arch,
            spot: route == Route::FargateSpot,
            billed_seconds: cost::fargate_billed_seconds(prices, pull, started, stopped),
        }),
        _ => {
            let instance = instance?;
            Some(Usage::Ec2 {
                instance_type: instance.instance_type.clone(),
                spot: instance.spot,
                share: cost::share(
                    job_size.0,
                    job_size.1,
                    instance.registered.cpu,
                    instance.registered.memory,
                ),
                seconds: started.map_or(0.0, |s| cost::seconds_between(s, stopped)),
            })
        }
    }
}

/// What an invocation used: a function of `memory_mib` on `arch`, for
/// `seconds`.
pub fn invocation_usage(seconds: f64, memory_mib: u32, arch: Arch) -> Usage {
    Usage::Lambda {
        memory_mib,
        arch,
        seconds,
    }
}

/// This function's memory, as Lambda tells it
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`); `None` outside Lambda.
pub fn function_memory() -> Option<u32> {
    std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// The architecture this code runs on.
pub fn this_arch() -> Arch {
    if cfg!(target_arch = "aarch64") {
        Arch::Arm64
    } else {
        Arch::X86_64
    }
}

/// An attempt's cost into its record's map, and its part of the total...
pub(crate) const INTO_MAP: &str = "SET #costs.#launch = :entry ADD #total :usd";
/// ...once: while the record exists and has no cost for the launch.
pub(crate) const NOT_YET_RECORDED: &str =
    "attribute_exists(#id) AND attribute_not_exists(#costs.#launch)";

/// An attempt's cost as the job's record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCost {
    pub launch: LaunchNumber,
    pub cost: AttemptCost,
    /// When it was recorded, epoch milliseconds.
    pub at: i64,
}

/// USD kept to the nano-dollar: DynamoDB adds numbers exactly, and no
/// price is finer.
pub(crate) fn dollars(usd: f64) -> AttributeValue {
    AttributeValue::N(((usd * 1e9).round() / 1e9).to_string())
}

pub(crate) fn cost_value(cost: &AttemptCost, at: i64) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("usd".to_owned(), dollars(cost.usd)),
        (
            "route".to_owned(),
            AttributeValue::S(cost.route.as_str().into()),
        ),
        ("basis".to_owned(), AttributeValue::S(cost.basis.clone())),
        ("at".to_owned(), AttributeValue::N(at.to_string())),
    ]))
}

/// The attempts' costs a job item keeps, oldest launch first.
pub(crate) fn recorded_costs(v: Option<&AttributeValue>) -> Vec<RecordedCost> {
    let Some(Ok(map)) = v.map(AttributeValue::as_m) else {
        return Vec::new();
    };
    let mut costs: Vec<RecordedCost> = map
        .iter()
        .filter_map(|(launch, v)| {
            let m = v.as_m().ok()?;
            let num = |k: &str| m.get(k)?.as_n().ok()?.parse::<f64>().ok();
            Some(RecordedCost {
                launch: launch.parse().ok()?,
                cost: AttemptCost {
                    usd: num("usd")?,
                    route: Route::parse(m.get("route")?.as_s().ok()?)?,
                    basis: m
                        .get("basis")
                        .and_then(|b| b.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                },
                at: num("at").map_or(0, |at| at as i64),
            })
        })
        .collect();
    costs.sort_by_key(|c| c.launch);
    costs
}

/// A job's costs, as `berth cost` reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct CostedJob {
    pub job_id: String,
    pub definition: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub costs: Vec<RecordedCost>,
}

impl JobStore {
    /// Every job with a cost recorded, with its definition, tags and each
    /// attempt's cost: a scan of the jobs table for the items with costs,
    /// reading only those attributes.
    pub async fn costed_jobs(&self) -> Result<Vec<CostedJob>, AwsError> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("attribute_exists(#total)")
            .projection_expression("#id, #definition, #job, #costs")
            .expression_attribute_names("#total", attr::COST_USD)
            .expression_attribute_names("#id", attr::JOB_ID)
            .expression_attribute_names("#definition", attr::DEFINITION)
            .expression_attribute_names("#job", attr::JOB)
            .expression_attribute_names("#costs", attr::COSTS)
            .into_paginator()
            .send();
        let mut jobs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Scan", e))?;
            for item in page.items() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let Some(job_id) = text(attr::JOB_ID) else {
                    continue;
                };
                let tags = text(attr::JOB)
                    .and_then(|j| serde_json::from_str::<berth_core::ResolvedJob>(&j).ok())
                    .map(|j| j.tags)
                    .unwrap_or_default();
                jobs.push(CostedJob {
                    job_id,
                    definition: text(attr::DEFINITION),
                    tags,
                    costs: recorded_costs(item.get(attr::COSTS)),
                });
            }
        }
        Ok(jobs)
    }

    /// Every job recorded in `[since_ms, until_ms)`, whole: a scan of the
    /// jobs table (what `berth console` replays in the simulator).
    pub async fn recorded_between(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<crate::store::JobRecord>, AwsError> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .filter_expression("#created >= :since AND #created < :until")
            .expression_attribute_names("#created", attr::CREATED_AT)
            .expression_attribute_values(":since", AttributeValue::N(since_ms.to_string()))
            .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
            .into_paginator()
            .send();
        let mut jobs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Scan", e))?;
            jobs.extend(page.items().iter().filter_map(crate::store::record));
        }
        Ok(jobs)
    }

    /// What each of `job_ids` cost so far (the jobs priced yet), read by
    /// key: the status index does not carry costs.
    pub async fn costs_of(&self, job_ids: &[&str]) -> Result<HashMap<String, f64>, AwsError> {
        let items = self
            .batch_get(job_ids, &[attr::JOB_ID, attr::COST_USD])
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = item.get(attr::JOB_ID).and_then(|v| v.as_s().ok())?;
                let usd = item
                    .get(attr::COST_USD)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<f64>().ok())?;
                Some((id.clone(), usd))
            })
            .collect())
    }

    /// Records what launch `launch` of `job_id` cost, once: its entry in
    /// the record's `costs` and its part of `cost_usd`, in one write that
    /// holds only while the launch has no entry (a repeated event, or the
    /// sweep reading the same end, adds nothing). `false` when it was
    /// recorded already or the job has no record.
    pub async fn record_cost(
        &self,
        job_id: &str,
        launch: LaunchNumber,
        cost: &AttemptCost,
        now_ms: i64,
    ) -> Result<bool, AwsError> {
        let key = launch.to_string();
        for _ in 0..2 {
            let into_map = self
                .ddb
                .update_item()
                .table_name(&self.table)
                .key(attr::JOB_ID, AttributeValue::S(job_id.into()))
                .update_expression(INTO_MAP)
                .condition_expression(NOT_YET_RECORDED)
                .expression_attribute_names("#id", attr::JOB_ID)
                .expression_attribute_names("#costs", attr::COSTS)
                .expression_attribute_names("#launch", &key)
                .expression_attribute_names("#total", attr::COST_USD)
                .expression_attribute_values(":entry", cost_value(cost, now_ms))
                .expression_attribute_values(":usd", dollars(cost.usd))
                .send()
                .await;
            let e = match into_map {
                Ok(_) => return Ok(true),
                Err(e) => e,
            };
            match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => return Ok(false),
                // A record written before costs were kept has no map to
                // add to: it gets one holding this entry.
                _ if e.code() == Some("ValidationException") => {}
                _ => return Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
            }
            let first = self
                .ddb
                .update_item()
                .table_name(&self.table)
                .key(attr::JOB_ID, AttributeValue::S(job_id.into()))
                .update_expression("SET #costs = :costs ADD #total :usd")
                .condition_expression("attribute_exists(#id) AND attribute_not_exists(#costs)")
                .expression_attribute_names("#id", attr::JOB_ID)
                .expression_attribute_names("#costs", attr::COSTS)
                .expression_attribute_names("#total", attr::COST_USD)
                .expression_attribute_values(
                    ":costs",
                    AttributeValue::M(HashMap::from([(key.clone(), cost_value(cost, now_ms))])),
                )
                .expression_attribute_values(":usd", dollars(cost.usd))
                .send()
                .await;
            match first {
                Ok(_) => return Ok(true),
                Err(e) => match e.as_service_error() {
                    // Another end made the map meanwhile, or the record is
                    // gone: once more into the map.
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => {}
                    _ => return Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
                },
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sim::figures::InstanceType;
    use berth_sim::report::PricedAttempt;
    use berth_sim::trace::{Trace, TraceJob};
    use berth_sim::{Policy, Settings, simulate};

    /// 2026-12-01T00:00:00Z: where the simulated day starts.
    const START_MS: i64 = 1_796_083_200_000;

    fn at(sim_ms: u64) -> String {
        DateTime::from_millis(START_MS + sim_ms as i64)
            .fmt(DateTimeFormat::DateTime)
            .unwrap()
    }

    fn job(
        submit_s: f64,
        cpu: u32,
        memory: u32,
        gpu: u32,
        lambda: bool,
        fargate: bool,
    ) -> TraceJob {
        TraceJob {
            submit_s,
            definition: format!("d{cpu}-{gpu}"),
            cpu,
            memory,
            gpu,
            // A job that fits Lambda says it is short.
            duration_s: if lambda { 2.5 } else { 97.0 },
            timeout_s: if lambda { 5 } else { 600 },
            lambda,
            fargate,
        }
    }

    /// What the runtime records for an attempt the simulator ran: the
    /// task's stopped state as ECS would describe it, or the invocation's
    /// length, read by the runtime's own functions.
    fn as_the_runtime_prices(prices: &Prices, trace: &Trace, a: &PricedAttempt) -> f64 {
        let spec = &trace.jobs[a.job];
        let usage = match &a.usage {
            Usage::Lambda { .. } => invocation_usage(
                cost::seconds_between(a.started_ms.unwrap() as i64, a.stopped_ms as i64),
                prices.lambda_memory(spec.cpu, spec.memory),
                Arch::X86_64,
            ),
            Usage::Fargate { size, spot, .. } => {
                let task: TaskChange = serde_json::from_value(serde_json::json!({
                    "taskArn": "arn:aws:ecs:us-east-1:1:task/c/t",
                    "lastStatus": "STOPPED",
                    "launchType": "FARGATE",
                    "capacityProviderName": if *spot { "FARGATE_SPOT" } else { "FARGATE" },
                    "cpu": size.cpu.to_string(),
                    "memory": size.memory.to_string(),
                    "pullStartedAt": at(a.pull_started_ms.unwrap()),
                    "startedAt": a.started_ms.map(at),
                    "stoppedAt": at(a.stopped_ms),
                }))
                .unwrap();
                task_usage(prices, &task, (spec.cpu, spec.memory), Arch::X86_64, None).unwrap()
            }
            Usage::Ec2 {
                instance_type,
                spot,
                ..
            } => {
                let task: TaskChange = serde_json::from_value(serde_json::json!({
                    "taskArn": "arn:aws:ecs:us-east-1:1:task/c/t",
                    "lastStatus": "STOPPED",
                    "launchType": "EC2",
                    "containerInstanceArn": "arn:aws:ecs:us-east-1:1:container-instance/c/i",
                    "startedAt": a.started_ms.map(at),
                    "stoppedAt": at(a.stopped_ms),
                }))
                .unwrap();
                let instance = InstanceFacts {
                    instance_type: instance_type.clone(),
                    spot: *spot,
                    registered: InstanceType::find(instance_type).unwrap().registered(),
                };
                task_usage(
                    prices,
                    &task,
                    (spec.cpu, spec.memory),
                    Arch::X86_64,
                    Some(&instance),
                )
                .unwrap()
            }
        };
        cost::price(prices, &usage).unwrap().usd
    }

    #[test]
    fn the_simulator_and_the_runtime_price_an_attempt_alike() {
        let trace = Trace::new(
            "three-routes",
            vec![
                // Lambda; Fargate; EC2 only (a GPU).
                job(10.0, 256, 512, 0, true, true),
                job(20.0, 2048, 4096, 0, false, true),
                job(30.0, 4096, 8192, 1, false, false),
            ],
        );
        for fargate_spot in [true, false] {
            let settings = Settings {
                fargate_spot,
                fargate_spot_interruptions_per_hour: 0.0,
                spot_interruptions_per_month: 0.0,
                fargate_spot_shortfall: 0.0,
                ..Settings::default()
            };
            let out = simulate(
                &trace,
                &berth_sim::Plans::new(&trace),
                Policy::Berth,
                &settings,
            );
            let routes: Vec<&str> = out
                .attempts
                .iter()
                .map(|a| match &a.usage {
                    Usage::Lambda { .. } => "lambda",
                    Usage::Fargate { spot: true, .. } => "fargate-spot",
                    Usage::Fargate { .. } => "fargate",
                    Usage::Ec2 { .. } => "ec2",
                })
                .collect();
            let fargate = if fargate_spot {
                "fargate-spot"
            } else {
                "fargate"
            };
            assert_eq!(routes, ["lambda", fargate, "ec2"]);
            for a in &out.attempts {
                assert!(a.usd > 0.0, "{a:?}");
                let runtime = as_the_runtime_prices(&settings.prices, &trace, a);
                assert_eq!(runtime, a.usd, "{a:?}");
            }
        }
    }

    #[test]
    fn a_task_is_read_from_its_stopped_state() {
        let prices = Prices::default();
        let task: TaskChange = serde_json::from_value(serde_json::json!({
            "taskArn": "t",
            "lastStatus": "STOPPED",
            "capacityProviderName": "FARGATE_SPOT",
            "cpu": "1024",
            "memory": "2048",
            "pullStartedAt": "2026-12-01T10:00:00.000Z",
            "startedAt": "2026-12-01T10:00:20.500Z",
            "stoppedAt": "2026-12-01T10:05:00Z",
            "attributes": [{ "name": "ecs.cpu-architecture", "value": "arm64" }],
        }))
        .unwrap();
        let usage = task_usage(&prices, &task, (512, 1024), Arch::X86_64, None).unwrap();
        assert_eq!(
            usage,
            Usage::Fargate {
                size: FargateSize {
                    cpu: 1024,
                    memory: 2048
                },
                arch: Arch::Arm64,
                spot: true,
                billed_seconds: 300.0,
            }
        );
        // Not stopped: nothing to price; on EC2 with no instance known:
        // neither.
        let running = TaskChange {
            stopped_at: None,
            ..task.clone()
        };
        assert_eq!(
            task_usage(&prices, &running, (512, 1024), Arch::X86_64, None),
            None
        );
        let on_ec2 = TaskChange {
            capacity_provider_name: None,
            launch_type: Some("EC2".into()),
            ..task
        };
        assert_eq!(
            task_usage(&prices, &on_ec2, (512, 1024), Arch::X86_64, None),
            None
        );
        // An instance that does not say how it was bought is Spot.
        let observed = |market: Option<&str>| Observed {
            arn: "ci".into(),
            ec2_instance_id: "i-1".into(),
            instance_type: Some("c5.xlarge".into()),
            instance: berth_core::capacity::ContainerInstance {
                status: berth_core::capacity::InstanceStatus::Active,
                agent_connected: true,
                remaining: berth_core::capacity::Resources { cpu: 0, memory: 0 },
            },
            registered: Room::new(4096, 7680, 0),
            remaining: Room::default(),
            tasks: 1,
            idle_since: None,
            retiring: None,
            market: market.map(str::to_owned),
            task_stopped: None,
            refused: None,
            reclaimed: None,
        };
        assert!(InstanceFacts::of(&observed(None)).unwrap().spot);
        assert!(InstanceFacts::of(&observed(Some("spot"))).unwrap().spot);
        assert!(
            !InstanceFacts::of(&observed(Some("on-demand")))
                .unwrap()
                .spot
        );
        let facts = InstanceFacts::of(&observed(None)).unwrap();
        let usage = task_usage(
            &prices,
            &on_ec2_task(),
            (1024, 6144),
            Arch::X86_64,
            Some(&facts),
        )
        .unwrap();
        assert_eq!(
            usage,
            Usage::Ec2 {
                instance_type: "c5.xlarge".into(),
                spot: true,
                share: 0.8,
                seconds: 279.5,
            }
        );
    }

    fn on_ec2_task() -> TaskChange {
        serde_json::from_value(serde_json::json!({
            "taskArn": "t",
            "lastStatus": "STOPPED",
            "launchType": "EC2",
            "containerInstanceArn": "ci",
            "pullStartedAt": "2026-12-01T10:00:00.000Z",
            "startedAt": "2026-12-01T10:00:20.500Z",
            "stoppedAt": "2026-12-01T10:05:00Z",
        }))
        .unwrap()
    }
}
