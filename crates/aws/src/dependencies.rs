//! Jobs that wait for others (berth-core's [`berth_core::dependency`]):
//! recording one `PENDING`, tying it to what it waits for, and moving it on
//! once they end.
//!
//! A job waiting on others is named in each one's `dependents` (a string
//! set; adding a name twice adds nothing). Whoever ends a job reads that set
//! after the end is written, and a job tied to a dependency reads the
//! dependency's status after it is tied: with both reads strongly
//! consistent, at least one of the two sees the other, so no dependent is
//! missed. A `PENDING` job leaves that state in one conditional write
//! (`ACCEPTED` with its message sent, or `FAILED`), so it is released at
//! most once; the sweep checks `PENDING` jobs that have been quiet, which
//! covers an end whose dependents were never read (a function stopped
//! half way) and a release whose message was lost (the 20-minute rule for
//! `ACCEPTED` jobs).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use berth_core::dependency::{self, Decision};
use berth_core::{JobStatus, ResolvedJob};

use crate::store::{Change, Changed, Created, attr, now_ms};
use crate::{AwsError, JobQueue, JobStore};

/// The string set on a job of the jobs waiting on it.
pub const DEPENDENTS: &str = "dependents";

/// How many jobs one end moves on at most, down a chain of failures; the
/// sweep moves on the rest.
const CASCADE_MAX: usize = 1_000;

/// What checking a `PENDING` job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// It is not `PENDING` (moved on already, or gone: `None`).
    NotPending(Option<JobStatus>),
    /// Its dependencies are met: `ACCEPTED`, its message sent.
    Released,
    /// Its dependencies are met, and there is no queue here to send its
    /// message: it stays `PENDING` for one that has.
    Runnable,
    /// One can no longer be met: `FAILED` with this reason.
    Failed(String),
    /// These have not ended.
    Waiting(Vec<String>),
}

/// What moving on from a job's end needs: its status, the jobs waiting on
/// it, and the arrays bound to its children one to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndFacts {
    pub status: JobStatus,
    pub dependents: Vec<String>,
    pub each_dependents: Vec<String>,
}

impl JobStore {
    /// Records a valid job that waits on others as `PENDING`, with
    /// `reason`, no launch claimed (its launch number is 0: its first launch
    /// is claimed as 1 once it is released).
    pub async fn accept_pending(
        &self,
        job: &ResolvedJob,
        message_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Created, AwsError> {
        self.accept_as(job, message_id, JobStatus::Pending, Some(reason), now_ms)
            .await
    }

    /// Ties `dependent` to `dependency`: names it in the dependency's
    /// `dependents`. `false` when the dependency is not recorded.
    pub async fn add_dependent(&self, dependency: &str, dependent: &str) -> Result<bool, AwsError> {
        self.add_to_set(dependency, DEPENDENTS, dependent).await
    }

    /// Adds `member` to the string set `set` of recorded job `job_id`;
    /// `false` when it is not recorded.
    pub(crate) async fn add_to_set(
        &self,
        job_id: &str,
        set: &str,
        member: &str,
    ) -> Result<bool, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(job_id.into()))
            .update_expression("ADD #set :member")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#set", set)
            .expression_attribute_names("#id", attr::JOB_ID)
            .expression_attribute_values(":member", AttributeValue::Ss(vec![member.into()]));
        Ok(matches!(
            self.conditional_update(req).await?,
            Changed::Applied
        ))
    }

    /// Sets the reason of a job while it is `PENDING`: the jobs it waits
    /// for.
    pub async fn note_waiting(
        &self,
        job_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Changed, AwsError> {
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(job_id.into()))
            .update_expression("SET #reason = :reason, #updated = :now")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(JobStatus::Pending.as_str().into()),
            );
        self.conditional_update(req).await
    }

    /// The jobs waiting on `job_id`, read consistently.
    pub async fn dependents_of(&self, job_id: &str) -> Result<Vec<String>, AwsError> {
        Ok(self
            .end_facts(job_id)
            .await?
            .map(|facts| facts.dependents)
            .unwrap_or_default())
    }

    /// The status of `job_id` and the jobs waiting on it, read
    /// consistently; `None` when it is not recorded.
    pub async fn end_facts(&self, job_id: &str) -> Result<Option<EndFacts>, AwsError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(job_id.into()))
            .projection_expression("#dependents, #each, #status")
            .expression_attribute_names("#dependents", DEPENDENTS)
            .expression_attribute_names("#each", crate::array::EACH_DEPENDENTS)
            .expression_attribute_names("#status", attr::STATUS)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let Some(status) = item
            .get(attr::STATUS)
            .and_then(|v| v.as_s().ok())
            .and_then(|s| JobStatus::parse(s))
        else {
            return Ok(None);
        };
        let set = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_ss().ok())
                .cloned()
                .unwrap_or_default()
        };
        Ok(Some(EndFacts {
            status,
            dependents: set(DEPENDENTS),
            each_dependents: set(crate::array::EACH_DEPENDENTS),
        }))
    }

    /// The status of each of `job_ids` that is recorded, read consistently.
    pub async fn statuses(&self, job_ids: &[&str]) -> Result<HashMap<String, JobStatus>, AwsError> {
        let items = self
            .batch_get(job_ids, &[attr::JOB_ID, attr::STATUS])
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = item.get(attr::JOB_ID).and_then(|v| v.as_s().ok())?;
                let status = item
                    .get(attr::STATUS)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|s| JobStatus::parse(s))?;
                Some((id.clone(), status))
            })
            .collect())
    }
}

/// What `job` waits on now: berth-core's decision over its dependencies'
/// statuses as they are recorded.
pub async fn decide(store: &JobStore, job: &ResolvedJob) -> Result<Decision, AwsError> {
    let ids: Vec<&str> = job.depends_on.iter().map(|d| d.job_id.as_str()).collect();
    let statuses = store.statuses(&ids).await?;
    Ok(dependency::decide(&job.depends_on, |id| {
        statuses.get(id).copied()
    }))
}

/// Ties a `PENDING` job to each dependency it waits for, then decides
/// again (one may have ended meanwhile, before it was tied) and moves the
/// job on as [`check`] does.
pub async fn tie(
    store: &JobStore,
    queue: Option<&JobQueue>,
    job_id: &str,
    waiting: &[String],
) -> Result<Checked, AwsError> {
    for dependency in waiting {
        store.add_dependent(dependency, job_id).await?;
    }
    check(store, queue, job_id).await
}

/// Moves a `PENDING` job whose dependencies are met to `ACCEPTED`, in one
/// conditional write: only one caller releases it.
pub async fn release(store: &JobStore, job_id: &str) -> Result<Changed, AwsError> {
    let change = Change {
        reason: Some("its dependencies are met".into()),
        expect_status: Some(JobStatus::Pending),
        ..Change::default()
    };
    store
        .transition(job_id, JobStatus::Accepted, change, now_ms())
        .await
}

/// Moves a `PENDING` job on by its dependencies as they stand: releases
/// it (one conditional write to `ACCEPTED`, then its message), fails it
/// (then the jobs waiting on it, down the chain), or leaves it waiting.
pub async fn check(
    store: &JobStore,
    queue: Option<&JobQueue>,
    job_id: &str,
) -> Result<Checked, AwsError> {
    let checked = check_one(store, queue, job_id).await?;
    if matches!(checked, Checked::Failed(_)) {
        ended(store, queue, job_id).await?;
    }
    Ok(checked)
}

async fn check_one(
    store: &JobStore,
    queue: Option<&JobQueue>,
    job_id: &str,
) -> Result<Checked, AwsError> {
    let Some(record) = store.get(job_id).await? else {
        return Ok(Checked::NotPending(None));
    };
    let Some(job) = record
        .job
        .as_ref()
        .filter(|_| record.status == JobStatus::Pending)
    else {
        return Ok(Checked::NotPending(Some(record.status)));
    };
    let now = now_ms();
    match decide(store, job).await? {
        Decision::Run => {
            let Some(queue) = queue else {
                return Ok(Checked::Runnable);
            };
            match release(store, job_id).await? {
                Changed::Applied => {
                    queue
                        .requeue(job_id, &job.definition, record.launch, 0)
                        .await?;
                    Ok(Checked::Released)
                }
                Changed::Refused(now_is) => Ok(Checked::NotPending(now_is.map(|r| r.status))),
            }
        }
        Decision::Fail(reason) => {
            let change = Change {
                reason: Some(reason.clone()),
                expect_status: Some(JobStatus::Pending),
                ..Change::default()
            };
            match store
                .transition(job_id, JobStatus::Failed, change, now)
                .await?
            {
                Changed::Applied => Ok(Checked::Failed(reason)),
                Changed::Refused(now_is) => Ok(Checked::NotPending(now_is.map(|r| r.status))),
            }
        }
        Decision::Wait(ids) => {
            let reason = dependency::waiting_reason(&ids);
            if record.reason.as_deref() != Some(reason.as_str()) {
                store.note_waiting(job_id, &reason, now).await?;
            }
            Ok(Checked::Waiting(ids))
        }
    }
}

/// After `job_id` ended: counts its end on its array's parent, when it is
/// a child (which may release the next children or end the parent), and
/// checks each job waiting on it, and on down the chain for each that
/// fails so or parent that ends so (at most [`CASCADE_MAX`] jobs; the sweep
/// takes the rest). Returns the jobs it moved on.
pub async fn ended(
    store: &JobStore,
    queue: Option<&JobQueue>,
    job_id: &str,
) -> Result<Vec<(String, Checked)>, AwsError> {
    let mut moved = Vec::new();
    let mut ends = vec![job_id.to_owned()];
    while let Some(end) = ends.pop() {
        let Some(facts) = store.end_facts(&end).await? else {
            continue;
        };
        if !facts.status.is_final() {
            continue;
        }
        let mut each_dependents = facts.each_dependents;
        if let Some((parent, index)) = berth_core::array::parent_of(&end) {
            store
                .count_child_end(parent, index, facts.status == JobStatus::Succeeded)
                .await?;
            let advanced =
                crate::array::advance(store, queue, parent, crate::array::END_BUDGET).await?;
            if let crate::array::Advanced::Ended(_) = advanced {
                ends.push(parent.to_owned());
            }
            // The arrays bound to the parent child by child: one of theirs
            // may go now.
            if let Some(parent_facts) = store.end_facts(parent).await? {
                each_dependents.extend(parent_facts.each_dependents);
            }
        }
        for array in each_dependents {
            let advanced =
                crate::array::advance(store, queue, &array, crate::array::END_BUDGET).await?;
            if let crate::array::Advanced::Ended(_) = advanced {
                ends.push(array);
            }
        }
        for dependent in facts.dependents {
            if moved.len() >= CASCADE_MAX {
                return Ok(moved);
            }
            let checked = check_one(store, queue, &dependent).await?;
            if matches!(checked, Checked::Failed(_)) {
                ends.push(dependent.clone());
            }
            if !matches!(checked, Checked::NotPending(_) | Checked::Waiting(_)) {
                moved.push((dependent, checked));
            }
        }
    }
    Ok(moved)
}

/// [`ended`] where its failure must not undo what the caller did: the
/// sweep moves the dependents on within a minute.
pub async fn after_end(store: &JobStore, queue: Option<&JobQueue>, job_id: &str) {
    if let Err(e) = ended(store, queue, job_id).await {
        tracing::warn!(job_id, error = %e, "dependents not checked; the sweep will");
    }
}
