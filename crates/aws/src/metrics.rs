//! berth's own metrics, as CloudWatch embedded metric format (EMF) lines on
//! standard output: Lambda sends them to CloudWatch Logs, which turns them
//! into metrics in the `berth` namespace. No API call on the job's path and
//! no `cloudwatch:PutMetricData` permission.
//!
//! | metric | dimensions | emitted by |
//! |---|---|---|
//! | `Dispatched` | `Route` | the driver, a job launched |
//! | `FargateFallbacks` | none | the driver, EC2 had no room and Fargate took the job |
//! | `FargateSpotShortfalls` | none | the driver, Fargate Spot had no capacity and Fargate on demand was tried |
//! | `WaitingForCapacity`, `Rejected`, `DeadLettered`, `LaunchFailed` | none | the driver |
//! | `LaunchRetries` | none | the driver, a launch hit a 5xx or a lost connection and its message comes back |
//! | `Throttled` | none | the driver, AWS throttled a job's launch or a write of its record; its message comes back spread out, or goes on in a new one |
//! | `Retries` | none | the driver, any other retryable error (the tables, a launch in progress elsewhere) |
//! | `JobsEnded` | `Status` | ecs-runner and the task processor, a job reached its end state |
//! | `Requeued` | none | ecs-runner, an attempt ended and another was queued |
//! | `InstancesAdded`, `InstancesDrained`, `InstancesTerminated` | none | the capacity metric's scaler |
//!
//! Every metric also has the dimension `Stack`, the stack's name
//! (`BERTH_STACK`, `berth` when unset), so that stacks in one account keep
//! their metrics apart.
//!
//! The capacity metric's `SchedulableContainers` and
//! `UnplaceableDefinitions` are put with PutMetricData ([`ClusterMetrics`]),
//! with the dimensions `Stack` and `ClusterName`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::AwsError;

/// The namespace of berth's metrics (SchedulableContainers included).
pub const NAMESPACE: &str = "berth";

/// One EMF line: each metric in `metrics` counted once under `dimensions`.
pub fn line(timestamp_ms: u64, dimensions: &[(&str, &str)], metrics: &[(&str, f64)]) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let definitions: Vec<Value> = metrics
        .iter()
        // A cost is in dollars, which CloudWatch has no unit for.
        .map(|(name, _)| json!({ "Name": name, "Unit": if name.ends_with("USD") { "None" } else { "Count" } }))
        .collect();
    let mut object = Map::new();
    object.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        object.insert((*name).into(), json!(value));
    }
    for (name, value) in metrics {
        object.insert((*name).into(), json!(value));
    }
    Value::Object(object).to_string()
}

/// The dimension every metric of berth carries.
pub const STACK_DIMENSION: &str = "Stack";

/// The stack's name, the value of every metric's `Stack` dimension.
pub fn stack() -> &'static str {
    static STACK: OnceLock<String> = OnceLock::new();
    STACK.get_or_init(|| {
        std::env::var(crate::settings::STACK)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| NAMESPACE.to_owned())
    })
}

/// `dimensions` with the stack's first.
fn with_stack<'a>(stack: &'a str, dimensions: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![(STACK_DIMENSION, stack)];
    all.extend_from_slice(dimensions);
    all
}

/// Writes one EMF line to standard output, where Lambda picks it up.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64)]) {
    if metrics.is_empty() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    println!("{}", line(now, &with_stack(stack(), dimensions), metrics));
}

/// One count of `metric`, with at most one dimension.
pub fn count(metric: &str, dimension: Option<(&str, &str)>) {
    emit(dimension.as_slice(), &[(metric, 1.0)]);
}

/// Metrics of the cluster published with PutMetricData (the capacity
/// metric's, which alarms and dashboards read as soon as they are put),
/// with the dimension `ClusterName`.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    cloudwatch: aws_sdk_cloudwatch::Client,
    cluster: String,
}

impl ClusterMetrics {
    pub fn new(cloudwatch: aws_sdk_cloudwatch::Client, cluster: impl Into<String>) -> Self {
        Self {
            cloudwatch,
            cluster: cluster.into(),
        }
    }

    /// Puts each of `metrics` (a count) now.
    pub async fn publish(&self, metrics: &[(&str, f64)]) -> Result<(), AwsError> {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let dimensions = vec![
            Dimension::builder()
                .name(STACK_DIMENSION)
                .value(stack())
                .build(),
            Dimension::builder()
                .name("ClusterName")
                .value(&self.cluster)
                .build(),
        ];
        let now = DateTime::from(SystemTime::now());
        let data = metrics
            .iter()
            .map(|(name, value)| {
                MetricDatum::builder()
                    .metric_name(*name)
                    .set_dimensions(Some(dimensions.clone()))
                    .value(*value)
                    .unit(StandardUnit::Count)
                    .timestamp(now)
                    .build()
            })
            .collect();
        self.cloudwatch
            .put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(data))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("cloudwatch:PutMetricData", e))?;
        Ok(())
    }
}

/// The capacity metric: how many of the largest containers the cluster can
/// still place.
pub const SCHEDULABLE_CONTAINERS: &str = "SchedulableContainers";
/// How many jobs wait for capacity on the cluster (the scaler's count).
pub const JOBS_WAITING: &str = "JobsWaitingForCapacity";

/// One metric's values over a time, oldest first: (epoch ms, value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    pub metric: String,
    pub points: Vec<(i64, f64)>,
}

impl ClusterMetrics {
    /// Each of `names` over `[since_ms, until_ms)`, its maximum in each
    /// `period_s`, for this cluster, whatever the stack named its `Stack`
    /// dimension (ListMetrics finds it). A metric never published has no
    /// points.
    pub async fn history(
        &self,
        names: &[&str],
        since_ms: i64,
        until_ms: i64,
        period_s: i32,
    ) -> Result<Vec<History>, AwsError> {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{DimensionFilter, Metric, MetricDataQuery, MetricStat};
        let mut queries = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let listed = self
                .cloudwatch
                .list_metrics()
                .namespace(NAMESPACE)
                .metric_name(*name)
                .dimensions(
                    DimensionFilter::builder()
                        .name("ClusterName")
                        .value(&self.cluster)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("cloudwatch:ListMetrics", e))?;
            let Some(found) = listed.metrics().first() else {
                continue;
            };
            let metric = Metric::builder()
                .namespace(NAMESPACE)
                .metric_name(*name)
                .set_dimensions(found.dimensions.clone())
                .build();
            queries.push(
                MetricDataQuery::builder()
                    .id(format!("m{k}"))
                    .label(*name)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(metric)
                            .period(period_s)
                            .stat("Maximum")
                            .build(),
                    )
                    .build(),
            );
        }
        let mut out: Vec<History> = names
            .iter()
            .map(|n| History {
                metric: (*n).to_owned(),
                points: Vec::new(),
            })
            .collect();
        if queries.is_empty() {
            return Ok(out);
        }
        let mut pages = self
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(DateTime::from_millis(since_ms))
            .end_time(DateTime::from_millis(until_ms))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("cloudwatch:GetMetricData", e))?;
            for result in page.metric_data_results() {
                let Some(k) = result
                    .id()
                    .and_then(|id| id.strip_prefix('m'))
                    .and_then(|k| k.parse::<usize>().ok())
                    .filter(|k| *k < out.len())
                else {
                    continue;
                };
                let points = result
                    .timestamps()
                    .iter()
                    .zip(result.values())
                    .filter_map(|(t, v)| Some((t.to_millis().ok()?, *v)));
                out[k].points.extend(points);
            }
        }
        for h in &mut out {
            h.points.sort_by_key(|(t, _)| *t);
            h.points.dedup_by_key(|(t, _)| *t);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_carries_the_stack() {
        let dims = with_stack("berth-prod", &[("Route", "EC2")]);
        let v: Value = serde_json::from_str(&line(0, &dims, &[("Dispatched", 1.0)])).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack", "Route"]])
        );
        assert_eq!(v["Stack"], "berth-prod");
        let v: Value =
            serde_json::from_str(&line(0, &with_stack("s", &[]), &[("Rejected", 1.0)])).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stack"]])
        );
    }

    #[test]
    fn a_line_is_a_valid_emf_document() {
        let text = line(
            1_795_000_000_000,
            &[("Route", "EC2")],
            &[("Dispatched", 1.0)],
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_795_000_000_000u64);
        assert_eq!(spec["Namespace"], "berth");
        assert_eq!(spec["Dimensions"], json!([["Route"]]));
        assert_eq!(
            spec["Metrics"],
            json!([{"Name": "Dispatched", "Unit": "Count"}])
        );
        // Every dimension and metric named is a top-level member.
        assert_eq!(v["Route"], "EC2");
        assert_eq!(v["Dispatched"], 1.0);
        assert!(!text.contains('\n'), "one line");
    }

    #[test]
    fn without_dimensions_the_set_is_empty() {
        let v: Value = serde_json::from_str(&line(1, &[], &[("Rejected", 1.0)])).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(v["Rejected"], 1.0);
    }
}
