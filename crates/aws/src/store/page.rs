//! A page of the jobs in one status, through the status index: what a
//! console lists, in a table of any size.

use std::collections::{BTreeMap, HashMap};

use berth_core::{JobStatus, Route};

use super::{JobStore, JobSummary, attr, n, s};
use crate::AwsError;

/// Which jobs of a status a page holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageOf<'a> {
    /// Changed at or before this time (epoch ms); from the newest when
    /// `None`.
    pub at_or_before_ms: Option<i64>,
    /// Changed at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    pub definition: Option<&'a str>,
    pub route: Option<Route>,
}

impl JobStore {
    /// One page of the jobs in `status`, the most recently changed first:
    /// those `of` describes, at most `limit`. One query, read a page at a
    /// time until `limit` match: a console's page of a table of any size.
    pub async fn page(
        &self,
        status: JobStatus,
        of: PageOf<'_>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, AwsError> {
        let (mut query, filtered) = self.query_of(status, of);
        // A page of DynamoDB's no larger than needed, unless a filter drops
        // items from it.
        if !filtered {
            query = query.limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        }
        self.collect(query, limit).await
    }

    /// How many jobs in `status` `of` describes: the status index counted
    /// (DynamoDB reads every matching item of it to count them).
    pub async fn count(&self, status: JobStatus, of: PageOf<'_>) -> Result<u64, AwsError> {
        let (query, _) = self.query_of(status, of);
        let mut pages = query
            .select(aws_sdk_dynamodb::types::Select::Count)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            count += u64::try_from(page.count()).unwrap_or(0);
        }
        Ok(count)
    }

    /// The query of the jobs in `status` `of` describes, newest first, and
    /// whether a filter drops items from its pages.
    fn query_of(
        &self,
        status: JobStatus,
        of: PageOf<'_>,
    ) -> (
        aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        bool,
    ) {
        let mut query = self.by_status(status).scan_index_forward(false);
        let key = match (of.since_ms, of.at_or_before_ms) {
            (None, None) => None,
            (None, Some(_)) => Some("#status = :status AND #updated <= :before"),
            (Some(_), None) => Some("#status = :status AND #updated >= :since"),
            (Some(_), Some(_)) => Some("#status = :status AND #updated BETWEEN :since AND :before"),
        };
        if let Some(key) = key {
            query = query
                .key_condition_expression(key)
                .expression_attribute_names("#updated", attr::UPDATED_AT);
        }
        if let Some(before) = of.at_or_before_ms {
            query = query.expression_attribute_values(":before", n(before));
        }
        if let Some(since) = of.since_ms {
            query = query.expression_attribute_values(":since", n(since));
        }
        let mut filters = Vec::new();
        if let Some(definition) = of.definition {
            filters.push("#definition = :definition");
            query = query
                .expression_attribute_names("#definition", attr::DEFINITION)
                .expression_attribute_values(":definition", s(definition));
        }
        if let Some(route) = of.route {
            filters.push("#route = :route");
            query = query
                .expression_attribute_names("#route", attr::ROUTE)
                .expression_attribute_values(":route", s(route.as_str()));
        }
        let filtered = !filters.is_empty();
        if filtered {
            query = query.filter_expression(filters.join(" AND "));
        }
        (query, filtered)
    }

    /// The tags of each of `job_ids` that has a record, read by key (the
    /// status index does not carry them).
    pub async fn tags_of(
        &self,
        job_ids: &[&str],
    ) -> Result<HashMap<String, BTreeMap<String, String>>, AwsError> {
        let items = self.batch_get(job_ids, &[attr::JOB_ID, attr::JOB]).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
                let id = text(attr::JOB_ID)?;
                let tags = text(attr::JOB)
                    .and_then(|j| serde_json::from_str::<berth_core::ResolvedJob>(j).ok())
                    .map(|j| j.tags)
                    .unwrap_or_default();
                Some((id.clone(), tags))
            })
            .collect())
    }
}
