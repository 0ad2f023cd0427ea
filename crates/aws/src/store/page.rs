//! A page of the jobs in one status, through the status index: what a
//! console lists, in a table of any size.

use berth_core::{JobStatus, Route};

use super::{JobStore, JobSummary, attr, n, s};
use crate::AwsError;

impl JobStore {
    /// One page of the jobs in `status`, the most recently changed first:
    /// those changed at or before `at_or_before_ms` (from the newest when
    /// `None`), of `definition` and on `route` when given, at most `limit`.
    /// One query, read a page at a time until `limit` match: a console's
    /// page of a table of any size.
    pub async fn page(
        &self,
        status: JobStatus,
        at_or_before_ms: Option<i64>,
        definition: Option<&str>,
        route: Option<Route>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, AwsError> {
        let mut query = self.by_status(status).scan_index_forward(false);
        if let Some(before) = at_or_before_ms {
            query = query
                .key_condition_expression("#status = :status AND #updated <= :before")
                .expression_attribute_names("#updated", attr::UPDATED_AT)
                .expression_attribute_values(":before", n(before));
        }
        let mut filters = Vec::new();
        if let Some(definition) = definition {
            filters.push("#definition = :definition");
            query = query
                .expression_attribute_names("#definition", attr::DEFINITION)
                .expression_attribute_values(":definition", s(definition));
        }
        if let Some(route) = route {
            filters.push("#route = :route");
            query = query
                .expression_attribute_names("#route", attr::ROUTE)
                .expression_attribute_values(":route", s(route.as_str()));
        }
        if !filters.is_empty() {
            query = query.filter_expression(filters.join(" AND "));
        }
        // A page of DynamoDB's no larger than needed, unless a filter drops
        // items from it.
        if filters.is_empty() {
            query = query.limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        }
        self.collect(query, limit).await
    }
}
