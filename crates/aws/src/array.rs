//! Array jobs (berth-core's [`berth_core::array`]): releasing a parent's
//! children onto the queue, counting their ends on the parent, and ending
//! the parent once the last child has.
//!
//! The parent's record keeps `array_released` (children `0..released` have
//! had their messages sent) and the number sets `array_succeeded` and
//! `array_failed` of the indices that ended. The cursor moves in a write
//! conditional on where it was, after the messages are sent: a function that
//! stops between the two sends them again, and a child's message sent twice
//! creates and launches nothing twice (its job id is its idempotency key).
//! An end is added to a set once whatever repeats it (`ADD` to a set). A
//! parent the driver or the sweep finds waiting is advanced again.
//!
//! An array bound to others child by child (`N_TO_N`) releases out of
//! order: it keeps the indices released or given up in `array_sent`, with
//! `array_released` their count. It claims children in a write conditional
//! on that count, then sends their messages, so concurrent advances never
//! release more than its cap allows; a function that stops between the two
//! leaves children claimed and unsent, which [`catch_up`] sends
//! when the parent's own message comes again (the sweep puts it back once
//! the parent has been quiet). Each array it follows names it in its
//! `n_to_n_dependents`, and a child's end advances those.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use berth_core::array::{self, Children, Next, Upstream};
use berth_core::dependency::{self, Dependency};
use berth_core::{JobStatus, ResolvedJob};

use crate::queue::{ARRAY_CHILD_ATTRIBUTE, attribute};
use crate::store::{Changed, attr, now_ms};
use crate::{AwsError, JobQueue, JobStore};

/// The parent's count of children released.
pub const RELEASED: &str = "array_released";
/// The parent's set of the indices of children that succeeded.
pub const SUCCEEDED: &str = "array_succeeded";
/// ... and of those that ended otherwise.
pub const FAILED: &str = "array_failed";
/// An array bound child by child: the indices released or given up.
pub const SENT: &str = "array_sent";
/// On an array, the arrays bound to it child by child.
pub const EACH_DEPENDENTS: &str = "n_to_n_dependents";

/// Children released between two writes of the cursor.
const CHUNK: u32 = 100;

/// The most children one child's end releases (under a cap, one or two).
pub const END_BUDGET: u32 = 100;

/// The most children one delivery of the parent's message releases; then
/// it is put back on the queue for the rest (a Lambda invocation has a
/// deadline).
pub const DELIVERY_BUDGET: u32 = 1_000;

/// The parent's counts of its children, from its item; `None` unless the
/// job is an array.
pub(crate) fn children(
    item: &HashMap<String, AttributeValue>,
    job: Option<&ResolvedJob>,
) -> Option<Children> {
    let spec = job?.array?;
    let set = |k: &str| -> BTreeSet<u32> {
        item.get(k)
            .and_then(|v| v.as_ns().ok())
            .map(|ns| ns.iter().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default()
    };
    Some(Children {
        size: spec.size,
        released: item
            .get(RELEASED)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        sent: set(SENT),
        succeeded: set(SUCCEEDED),
        failed: set(FAILED),
    })
}

impl JobQueue {
    /// Sends the messages of children `indices` of array `parent` (of
    /// `definition`), ten to a SendMessageBatch.
    pub async fn release_children(
        &self,
        parent: &str,
        definition: &str,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<(), AwsError> {
        let marker = attribute("String", parent)?;
        let ids: Vec<u32> = indices.into_iter().collect();
        for batch in ids.chunks(10) {
            let entries = batch
                .iter()
                .map(|i| {
                    let body = serde_json::json!({
                        "job_id": array::child_id(parent, *i),
                        "definition": definition,
                    });
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.to_string())
                        .message_attributes(ARRAY_CHILD_ATTRIBUTE, marker.clone())
                        .build()
                        .map_err(|e| AwsError {
                            operation: "sqs:SendMessageBatch",
                            code: None,
                            message: e.to_string(),
                            retryable: false,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("sqs:SendMessageBatch", e))?;
            if let Some(failed) = out.failed().first() {
                return Err(AwsError {
                    operation: "sqs:SendMessageBatch",
                    code: Some(failed.code().to_owned()),
                    message: failed.message().unwrap_or_default().to_owned(),
                    retryable: !failed.sender_fault(),
                });
            }
        }
        Ok(())
    }
}

impl JobStore {
    /// Moves the parent's cursor from `from` to `to`, while the parent is
    /// `ACCEPTED` and the cursor is at `from`.
    pub async fn advance_released(
        &self,
        parent: &str,
        from: u32,
        to: u32,
    ) -> Result<Changed, AwsError> {
        let at = if from == 0 {
            "(attribute_not_exists(#released) OR #released = :from)"
        } else {
            "#released = :from"
        };
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(parent.into()))
            .update_expression("SET #released = :to, #updated = :now")
            .condition_expression(format!("#status = :accepted AND {at}"))
            .expression_attribute_names("#released", RELEASED)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(
                ":accepted",
                AttributeValue::S(JobStatus::Accepted.as_str().into()),
            );
        self.conditional_update(req).await
    }

    /// Ends array `parent`, `ACCEPTED` while its children run, in `status`
    /// (`SUCCEEDED` or `FAILED`) with `reason`: the one move of a parent,
    /// which launches nothing itself, outside berth-core's state machine
    /// (whose `SUCCEEDED` comes only from a launch).
    pub async fn finish_array(
        &self,
        parent: &str,
        status: JobStatus,
        reason: Option<&str>,
    ) -> Result<Changed, AwsError> {
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(parent.into()))
            .condition_expression("#status = :accepted AND attribute_exists(#released)")
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#released", RELEASED)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(
                ":accepted",
                AttributeValue::S(JobStatus::Accepted.as_str().into()),
            );
        req = match reason {
            Some(reason) => req
                .update_expression("SET #status = :status, #updated = :now, #reason = :reason")
                .expression_attribute_names("#reason", attr::REASON)
                .expression_attribute_values(":reason", AttributeValue::S(reason.into())),
            None => req
                .update_expression("SET #status = :status, #updated = :now REMOVE #reason")
                .expression_attribute_names("#reason", attr::REASON),
        };
        self.conditional_update(req).await
    }

    /// Counts children `never` of a sequential array, which will never run,
    /// as not succeeded, and moves the cursor past them, while it is at
    /// their start.
    pub async fn give_up_children(
        &self,
        parent: &str,
        never: Range<u32>,
    ) -> Result<Changed, AwsError> {
        let indices: Vec<String> = never.clone().map(|i| i.to_string()).collect();
        if indices.is_empty() {
            return Ok(Changed::Applied);
        }
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(parent.into()))
            .update_expression("SET #released = :to, #updated = :now ADD #failed :never")
            .condition_expression("#status = :accepted AND #released = :from")
            .expression_attribute_names("#released", RELEASED)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#failed", FAILED)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":from", AttributeValue::N(never.start.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(never.end.to_string()))
            .expression_attribute_values(":never", AttributeValue::Ns(indices))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(
                ":accepted",
                AttributeValue::S(JobStatus::Accepted.as_str().into()),
            );
        self.conditional_update(req).await
    }

    /// Claims children of an array bound child by child, while it is
    /// `ACCEPTED` and has `from` sent or given up: adds `release` and
    /// `never` to its sent set (and `never` to its not-succeeded set) and
    /// sets the count. Refused when another advance came first.
    pub async fn claim_children(
        &self,
        parent: &str,
        from: u32,
        release: &[u32],
        never: &[u32],
    ) -> Result<Changed, AwsError> {
        let numbers = |v: &[u32]| AttributeValue::Ns(v.iter().map(u32::to_string).collect());
        let claimed: Vec<u32> = release.iter().chain(never).copied().collect();
        let to = from + u32::try_from(claimed.len()).unwrap_or(u32::MAX);
        let at = if from == 0 {
            "(attribute_not_exists(#released) OR #released = :from)"
        } else {
            "#released = :from"
        };
        let mut req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(parent.into()))
            .condition_expression(format!("#status = :accepted AND {at}"))
            .expression_attribute_names("#released", RELEASED)
            .expression_attribute_names("#sent", SENT)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .expression_attribute_values(":claimed", numbers(&claimed))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(
                ":accepted",
                AttributeValue::S(JobStatus::Accepted.as_str().into()),
            );
        req = if never.is_empty() {
            req.update_expression("SET #released = :to, #updated = :now ADD #sent :claimed")
        } else {
            req.update_expression(
                "SET #released = :to, #updated = :now ADD #sent :claimed, #failed :never",
            )
            .expression_attribute_names("#failed", FAILED)
            .expression_attribute_values(":never", numbers(never))
        };
        self.conditional_update(req).await
    }

    /// Names array `dependent` in array `upstream`'s `n_to_n_dependents`:
    /// each end of one of `upstream`'s children then advances it. `false`
    /// when `upstream` is not recorded.
    pub async fn add_each_dependent(
        &self,
        upstream: &str,
        dependent: &str,
    ) -> Result<bool, AwsError> {
        self.add_to_set(upstream, EACH_DEPENDENTS, dependent).await
    }

    /// Counts child `index`'s end on its parent, once: `false` when it was
    /// counted already or the parent is gone.
    pub async fn count_child_end(
        &self,
        parent: &str,
        index: u32,
        succeeded: bool,
    ) -> Result<bool, AwsError> {
        let set = if succeeded { SUCCEEDED } else { FAILED };
        let req = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key(attr::JOB_ID, AttributeValue::S(parent.into()))
            .update_expression("ADD #set :index SET #updated = :now")
            .condition_expression(
                "attribute_exists(#id) AND NOT contains(#succeeded, :i) AND NOT contains(#failed, :i)",
            )
            .expression_attribute_names("#set", set)
            .expression_attribute_names("#id", attr::JOB_ID)
            .expression_attribute_names("#succeeded", SUCCEEDED)
            .expression_attribute_names("#failed", FAILED)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":index", AttributeValue::Ns(vec![index.to_string()]))
            .expression_attribute_values(":i", AttributeValue::N(index.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()));
        Ok(matches!(
            self.conditional_update(req).await?,
            Changed::Applied
        ))
    }
}

/// What advancing an array did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// Every child has ended: the parent ended so (by this call or an
    /// earlier one).
    Ended(JobStatus),
    /// This many children were released; all that the cap allows are.
    Released(u32),
    /// This many were released, and more may be: the caller's budget is
    /// spent, so someone must advance it again.
    Budget(u32),
    /// Not an array waiting on its children (gone, `PENDING`, or ended).
    Nothing,
}

/// Advances array `parent`: ends it once every child has ended; else
/// releases the children its cap allows (at most `budget` in this call),
/// through `queue` (without one, nothing is released).
pub async fn advance(
    store: &JobStore,
    queue: Option<&JobQueue>,
    parent: &str,
    budget: u32,
) -> Result<Advanced, AwsError> {
    let mut sent = 0;
    loop {
        let Some(record) = store.get(parent).await? else {
            return Ok(Advanced::Nothing);
        };
        let (Some(job), Some(children)) = (record.job.as_ref(), record.children.as_ref()) else {
            return Ok(Advanced::Nothing);
        };
        if record.status.is_final() {
            return Ok(Advanced::Ended(record.status));
        }
        if record.status != JobStatus::Accepted {
            return Ok(Advanced::Nothing);
        }
        if let Some((status, reason)) = children.end() {
            return match store
                .finish_array(parent, status, reason.as_deref())
                .await?
            {
                Changed::Applied => Ok(Advanced::Ended(status)),
                Changed::Refused(now_is) => Ok(match now_is {
                    Some(r) if r.status.is_final() => Advanced::Ended(r.status),
                    _ => Advanced::Nothing,
                }),
            };
        }
        let Some(spec) = job.array else {
            return Ok(Advanced::Nothing);
        };
        let each: Vec<&Dependency> = dependency::each_of(&job.depends_on).collect();
        if !each.is_empty() {
            let upstreams = upstreams(store, &each).await?;
            let next = children.each(spec.max_running, &upstreams);
            let release = match queue {
                Some(_) if sent < budget => {
                    let room = (budget - sent).min(CHUNK) as usize;
                    &next.release[..next.release.len().min(room)]
                }
                _ => &[],
            };
            let never = &next.never[..next.never.len().min(CHUNK as usize * 10)];
            if release.is_empty() && never.is_empty() {
                return Ok(match queue {
                    Some(_) if !next.release.is_empty() => Advanced::Budget(sent),
                    _ => Advanced::Released(sent),
                });
            }
            let claimed = store
                .claim_children(parent, children.released, release, never)
                .await?;
            if let (Changed::Applied, Some(queue)) = (claimed, queue)
                && !release.is_empty()
            {
                queue
                    .release_children(parent, &job.definition, release.iter().copied())
                    .await?;
                sent += u32::try_from(release.len()).unwrap_or(u32::MAX);
            }
            continue;
        }
        let range = match children.next(&spec) {
            Next::Release(range) => range,
            Next::GiveUp(never) => {
                store.give_up_children(parent, never).await?;
                continue;
            }
        };
        let Some(queue) = queue.filter(|_| !range.is_empty()) else {
            return Ok(Advanced::Released(sent));
        };
        if sent >= budget {
            return Ok(Advanced::Budget(sent));
        }
        let chunk = range.start
            ..range
                .end
                .min(range.start + CHUNK)
                .min(range.start + budget - sent);
        queue
            .release_children(parent, &job.definition, chunk.clone())
            .await?;
        if let Changed::Applied = store
            .advance_released(parent, chunk.start, chunk.end)
            .await?
        {
            sent += chunk.end - chunk.start;
        }
    }
}

/// The arrays `each` names, as an array bound to them child by child sees
/// them. One no longer recorded counts as ended without success.
async fn upstreams(store: &JobStore, each: &[&Dependency]) -> Result<Vec<Upstream>, AwsError> {
    let mut upstreams = Vec::with_capacity(each.len());
    for d in each {
        let record = store.get(&d.job_id).await?;
        let (status, children) = match record {
            Some(r) => (r.status, r.children.unwrap_or_default()),
            None => (JobStatus::Failed, Children::default()),
        };
        upstreams.push(Upstream {
            condition: d.condition,
            status,
            succeeded: children.succeeded,
            failed: children.failed,
        });
    }
    Ok(upstreams)
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Children whose end was recorded and not counted, moved on now.
    pub recounted: u32,
    /// Children claimed and never sent, sent now.
    pub resent: u32,
}

/// Catches array `parent` up with its children, for a delivery of its own
/// message (the sweep puts it back once the parent has been quiet): a
/// child whose end is recorded but not counted (the function that ended it
/// stopped before it counted it) is moved on as its end would have been;
/// and, for an array bound child by child, a child it claimed and never
/// sent (the function stopped in between) is sent (a message sent twice
/// creates nothing twice).
pub async fn catch_up(
    store: &JobStore,
    queue: Option<&JobQueue>,
    parent: &str,
) -> Result<CaughtUp, AwsError> {
    let mut caught = CaughtUp::default();
    let Some(record) = store.get(parent).await? else {
        return Ok(caught);
    };
    let (Some(job), Some(children)) = (record.job.as_ref(), record.children.as_ref()) else {
        return Ok(caught);
    };
    if record.status != JobStatus::Accepted {
        return Ok(caught);
    }
    let open: Vec<u32> = children
        .released_indices()
        .filter(|i| !children.succeeded.contains(i) && !children.failed.contains(i))
        .collect();
    let mut lost = Vec::new();
    for chunk in open.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|i| array::child_id(parent, *i)).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let statuses = store.statuses(&refs).await?;
        for (index, id) in chunk.iter().zip(&ids) {
            match statuses.get(id) {
                Some(status) if status.is_final() => {
                    crate::dependencies::ended(store, queue, id).await?;
                    caught.recounted += 1;
                }
                Some(_) => {}
                None => lost.push(*index),
            }
        }
    }
    // Only an array bound child by child claims children before it sends
    // them; any other's unrecorded children are messages on their way.
    if let Some(queue) = queue.filter(|_| !children.sent.is_empty() && !lost.is_empty()) {
        queue
            .release_children(parent, &job.definition, lost.iter().copied())
            .await?;
        caught.resent = u32::try_from(lost.len()).unwrap_or(u32::MAX);
    }
    Ok(caught)
}

pub use berth_core::array::parent_of as parent_of_child;

impl JobStore {
    /// The records of `job_ids` that exist, read
    /// consistently, in no particular order.
    pub async fn records_of(
        &self,
        job_ids: &[&str],
    ) -> Result<Vec<crate::store::JobRecord>, AwsError> {
        let items = self.batch_get(job_ids, &[]).await?;
        Ok(items.iter().filter_map(crate::store::record).collect())
    }
}

/// The children of `parent` released and not ended, by their records.
pub async fn open_children(
    store: &JobStore,
    parent: &str,
    children: &Children,
) -> Result<Vec<String>, AwsError> {
    let ids: Vec<String> = children
        .released_indices()
        .map(|i| array::child_id(parent, i))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let statuses = store.statuses(&refs).await?;
    Ok(ids
        .into_iter()
        .filter(|id| statuses.get(id).is_some_and(|s| !s.is_final()))
        .collect())
}
