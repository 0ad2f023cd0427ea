//! Array jobs against the local AWS: children ending by their index under
//! retry rules with the parent's summary and end, a concurrency cap, the
//! fan-out of a large array from one submission, and cancel of a parent.

use std::collections::BTreeMap;

use berth_aws::array::{self, Advanced};
use berth_core::JobStatus;
use berth_core::array::child_id;
use berth_driver::Outcome;
use berth_tests::stack::Stack;

/// Hands everything the queue delivers to the driver until it delivers
/// nothing; returns each job's outcomes, in order.
async fn drain(stack: &Stack) -> Vec<(String, Outcome)> {
    let mut all = Vec::new();
    loop {
        let outcomes = stack.drive().await;
        if outcomes.is_empty() {
            return all;
        }
        all.extend(outcomes);
    }
}

/// Ends `id`'s `launch` with `code`, through ecs-runner.
async fn exit(stack: &Stack, id: &str, launch: u32, code: i32) {
    let stopped = stack.task_exited(id, launch, code).await;
    stack.lifecycle().task_changed(&stopped).await.unwrap();
}

/// Children exit by their index: `i % 10 == 3` with 137 (a rule retries
/// it; the retry succeeds), `i % 10 == 7` with 2 (a rule ends it at once),
/// the rest 0.
async fn children_end_by_the_rules(size: u32) {
    let stack = Stack::new(2).await;
    let body = format!(
        r#"{{"job_id":"frames","definition":"render","max_attempts":3,"array":{{"size":{size}}},"retry_rules":[{{"on_exit_code":"137","action":"retry"}},{{"on_exit_code":"2","action":"exit"}}]}}"#
    );
    stack.send(&[&body]).await;
    let first = drain(&stack).await;
    let dispatched = first
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Dispatched { launch: 1, .. }))
        .count();
    assert_eq!(dispatched, size as usize, "every child launched once");
    assert!(
        first
            .iter()
            .any(|(id, o)| id == "frames" && matches!(o, Outcome::Array { .. }))
    );
    let parent = stack.record("frames").await;
    assert_eq!(parent.status, JobStatus::Accepted);
    assert_eq!(parent.children.as_ref().unwrap().released, size);

    let code = |i: u32| match i % 10 {
        3 => 137,
        7 => 2,
        _ => 0,
    };
    for i in 0..size {
        exit(&stack, &child_id("frames", i), 1, code(i)).await;
    }
    // The 137s come back once, and succeed.
    let retried = drain(&stack).await;
    let expected_retries = (0..size).filter(|i| i % 10 == 3).count();
    assert_eq!(retried.len(), expected_retries, "{retried:?}");
    for (id, outcome) in &retried {
        assert!(
            matches!(outcome, Outcome::Dispatched { launch: 2, .. }),
            "{id}: {outcome:?}"
        );
        exit(&stack, id, 2, 0).await;
        assert_eq!(
            stack.task_env(id, 2, "BERTH_ATTEMPT").await.as_deref(),
            Some("2")
        );
    }
    for i in 0..size {
        let r = stack.record(&child_id("frames", i)).await;
        let (status, launches) = match code(i) {
            137 => (JobStatus::Succeeded, 2),
            2 => (JobStatus::Failed, 1),
            _ => (JobStatus::Succeeded, 1),
        };
        assert_eq!((r.status, r.launch), (status, launches), "child {i}");
        if code(i) == 2 {
            assert_eq!(
                r.reason.as_deref(),
                Some("exit code 2 (retry rule 2 (on_exit_code 2: exit))"),
                "child {i}"
            );
        }
    }
    let env = stack.task_env("frames:5", 1, "BERTH_ARRAY_INDEX").await;
    assert_eq!(env.as_deref(), Some("5"));
    let env = stack.task_env("frames:5", 1, "BERTH_ARRAY_SIZE").await;
    assert_eq!(env.as_deref(), Some(size.to_string().as_str()));

    let failed = (0..size).filter(|i| i % 10 == 7).count() as u32;
    let parent = stack.record("frames").await;
    assert_eq!(parent.status, JobStatus::Failed);
    assert_eq!(
        parent.reason.as_deref(),
        Some(format!("{failed} of {size} children did not succeed; the first is index 7").as_str())
    );
    let children = parent.children.unwrap();
    assert_eq!(
        (
            children.succeeded.len() as u32,
            children.failed.len() as u32
        ),
        (size - failed, failed)
    );
    // `berth status`'s summary, and `berth list --array`.
    let cli = stack.cli();
    let summary = cli
        .children_summary(&stack.record("frames").await)
        .await
        .unwrap();
    assert_eq!(
        summary,
        Some(BTreeMap::from([
            ("FAILED".to_owned(), failed),
            ("SUCCEEDED".to_owned(), size - failed)
        ]))
    );
    let listed = cli
        .list_array("frames", Some(JobStatus::Failed), None, 3)
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, ["frames:7", "frames:17", "frames:27"]);
    assert!(stack.receive().await.is_empty(), "nothing more queued");
}

#[tokio::test]
async fn an_array_of_60_ends_child_by_child_as_its_retry_rules_say() {
    children_end_by_the_rules(60).await;
}

/// The issue's size; minutes on the local AWS, so run on its own:
/// `cargo test -p berth-tests --test integration -- --ignored arrays::`.
#[tokio::test]
#[ignore]
async fn an_array_of_1000_ends_child_by_child_as_its_retry_rules_say() {
    children_end_by_the_rules(1_000).await;
}

#[tokio::test]
async fn a_cap_of_5_never_has_more_than_5_children_under_way() {
    let stack = Stack::new(2).await;
    stack
        .send(&[r#"{"job_id":"capped","definition":"render","array":{"size":20,"max_running":5}}"#])
        .await;
    let mut launched: Vec<String> = Vec::new();
    let mut ended = 0;
    let mut most = 0;
    loop {
        for (id, outcome) in drain(&stack).await {
            if let Outcome::Dispatched { .. } = outcome {
                launched.push(id);
            }
        }
        let under_way: Vec<&String> = launched.iter().skip(ended).collect();
        most = most.max(under_way.len());
        assert!(under_way.len() <= 5, "{under_way:?}");
        let Some(next) = under_way.first().map(|s| s.to_string()) else {
            break;
        };
        // End the oldest under way; the cap lets one more go.
        exit(&stack, &next, 1, 0).await;
        ended += 1;
    }
    assert_eq!(most, 5);
    assert_eq!(launched.len(), 20, "each child once: {launched:?}");
    let mut sorted = launched.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 20);
    let parent = stack.record("capped").await;
    assert_eq!(parent.status, JobStatus::Succeeded, "{:?}", parent.children);
}

/// Takes every message off the queue; returns the ids of the children's
/// among them. The queue is kept short as the fan-out goes: the local AWS
/// (moto) slows with every message a queue holds.
async fn take_children(stack: &Stack) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let records = stack.receive().await;
        if records.is_empty() {
            return ids;
        }
        for r in records {
            if r.message_attributes
                .contains_key(berth_aws::queue::ARRAY_CHILD_ATTRIBUTE)
            {
                let body: serde_json::Value =
                    serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
                ids.push(body["job_id"].as_str().unwrap().to_owned());
            }
            stack
                .clients()
                .sqs
                .delete_message()
                .queue_url(&stack.queue_url)
                .receipt_handle(r.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn fanned_out(size: u32) {
    let stack = Stack::new(1).await;
    let body = format!(r#"{{"job_id":"big","definition":"render","array":{{"size":{size}}}}}"#);
    stack.send(&[&body]).await;
    // The driver takes the one message: the parent is recorded and its
    // first children released; the rest is left to its message, put back.
    let records = stack.receive().await;
    assert_eq!(records.len(), 1);
    let handled = stack.driver().handle_batch(records).await;
    assert_eq!(
        handled[0].outcome,
        Outcome::Array {
            released: array::DELIVERY_BUDGET,
            more: true
        }
    );
    let mut children = take_children(&stack).await;
    // The parent's message, delivered again and again, as the queue would.
    let queue = berth_aws::JobQueue::new(stack.clients().sqs.clone(), &stack.queue_url);
    let mut released = array::DELIVERY_BUDGET;
    while released < size {
        match array::advance(&stack.store(), Some(&queue), "big", array::DELIVERY_BUDGET)
            .await
            .unwrap()
        {
            Advanced::Budget(n) | Advanced::Released(n) => released += n,
            other => panic!("{other:?}"),
        }
        children.extend(take_children(&stack).await);
    }
    assert_eq!(released, size);
    let parent = stack.record("big").await;
    assert_eq!(parent.children.unwrap().released, size);
    // One message a child, each child once.
    assert_eq!(children.len(), size as usize);
    children.sort_by_key(|id| berth_core::array::parent_of(id).unwrap().1);
    children.dedup();
    assert_eq!(children.len(), size as usize);
    assert_eq!(children.last().unwrap(), &child_id("big", size - 1));
    // Nothing more to release.
    assert_eq!(
        array::advance(&stack.store(), Some(&queue), "big", array::DELIVERY_BUDGET)
            .await
            .unwrap(),
        Advanced::Released(0)
    );
}

#[tokio::test]
async fn an_array_of_1200_is_one_submission_fanned_out_by_the_driver() {
    fanned_out(1_200).await;
}

/// The largest array: run on its own (`--ignored arrays::`).
#[tokio::test]
#[ignore]
async fn an_array_of_10000_is_one_submission_fanned_out_by_the_driver() {
    fanned_out(10_000).await;
}

#[tokio::test]
async fn cancel_of_a_parent_cancels_every_child_not_ended() {
    let stack = Stack::new(2).await;
    stack
        .send(&[r#"{"job_id":"doomed","definition":"render","array":{"size":10}}"#])
        .await;
    drain(&stack).await;
    for i in 0..3 {
        exit(&stack, &child_id("doomed", i), 1, 0).await;
    }
    let queue = berth_aws::JobQueue::new(stack.clients().sqs.clone(), &stack.queue_url);
    let cancelled = berth_aws::operations::cancel(
        &stack.store(),
        &stack.cluster(),
        Some(&queue),
        "doomed",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        cancelled,
        berth_aws::operations::Cancelled::Cancelled { stopped_task: None }
    );
    assert_eq!(stack.record("doomed").await.status, JobStatus::Cancelled);
    for i in 0..10 {
        let r = stack.record(&child_id("doomed", i)).await;
        let want = if i < 3 {
            JobStatus::Succeeded
        } else {
            JobStatus::Cancelled
        };
        assert_eq!(r.status, want, "child {i}");
        if i >= 3 {
            assert_eq!(
                r.reason.as_deref(),
                Some("berth: cancelled: its array doomed was cancelled")
            );
            let task = &stack.tasks_of(&r.job_id, 1).await[0];
            assert_eq!(task.desired_status(), Some("STOPPED"), "child {i}'s task");
        }
    }
    assert!(drain(&stack).await.is_empty());
}

#[tokio::test]
async fn a_sequential_array_runs_its_children_in_order_and_stops_after_a_failure() {
    let stack = Stack::new(2).await;
    stack
        .send(&[r#"{"job_id":"steps","definition":"render","max_attempts":1,"array":{"size":4,"sequential":"succeeded"}}"#])
        .await;
    // One child at a time: 0, then 1 once 0 succeeded.
    let first = drain(&stack).await;
    let launched: Vec<&str> = first
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Dispatched { .. }))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(launched, ["steps:0"]);
    exit(&stack, "steps:0", 1, 0).await;
    let next = drain(&stack).await;
    assert!(
        matches!(next.as_slice(), [(id, Outcome::Dispatched { .. })] if id == "steps:1"),
        "{next:?}"
    );
    // 1 fails: 2 and 3 never run, and the array ends FAILED.
    exit(&stack, "steps:1", 1, 2).await;
    assert!(drain(&stack).await.is_empty(), "nothing more released");
    let parent = stack.record("steps").await;
    assert_eq!(parent.status, JobStatus::Failed);
    assert_eq!(
        parent.reason.as_deref(),
        Some("3 of 4 children did not succeed; the first is index 1")
    );
    for i in 2..4 {
        assert!(
            stack
                .store()
                .get(&child_id("steps", i))
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// The ids of the children `outcomes` launched.
fn launched(outcomes: &[(String, Outcome)]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Dispatched { .. }))
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn an_n_to_n_array_runs_child_i_after_child_i_under_its_cap() {
    let stack = Stack::new(2).await;
    stack
        .send(&[r#"{"job_id":"shots","definition":"render","max_attempts":1,"array":{"size":6}}"#])
        .await;
    assert_eq!(launched(&drain(&stack).await).len(), 6);
    let grades = r#"{"job_id":"grades","definition":"render","array":{"size":6,"max_running":2},"depends_on":[{"job_id":"shots","type":"N_TO_N"}]}"#;
    stack
        .send(&[
            grades,
            r#"{"job_id":"odd","definition":"render","array":{"size":5},"depends_on":[{"job_id":"shots","type":"n_to_n"}]}"#,
        ])
        .await;
    let first = drain(&stack).await;
    assert!(
        launched(&first).is_empty(),
        "no child of shots ended: {first:?}"
    );
    let odd = stack.record("odd").await;
    assert_eq!(odd.status, JobStatus::Rejected);
    assert_eq!(
        odd.reason.as_deref(),
        Some(
            "`depends_on`: `shots` is `n_to_n`, which needs an array of 5 as this one is; it is an array of 6"
        )
    );
    let parent = stack.record("grades").await;
    assert_eq!(
        parent.status,
        JobStatus::Accepted,
        "it does not wait itself"
    );
    assert_eq!(
        stack
            .store()
            .end_facts("shots")
            .await
            .unwrap()
            .unwrap()
            .each_dependents,
        ["grades"]
    );

    // shots' children end out of order, 2 failing: each grades child goes
    // once its own has succeeded and the cap of 2 lets it.
    let mut ended_shots = Vec::new();
    let mut under_way: Vec<String> = Vec::new();
    let mut all = Vec::new();
    let mut most = 0;
    for (i, code) in [(3, 0), (2, 2), (0, 0), (1, 0), (4, 0), (5, 0)] {
        exit(&stack, &child_id("shots", i), 1, code).await;
        ended_shots.push(i);
        for id in launched(&drain(&stack).await) {
            let (_, index) = berth_core::array::parent_of(&id).unwrap();
            assert!(ended_shots.contains(&index), "{id} before shots:{index}");
            under_way.push(id.clone());
            all.push(id);
        }
        most = most.max(under_way.len());
    }
    assert_eq!(all, ["grades:3", "grades:0"], "the cap holds the rest");
    // Each end of a grades child lets the lowest waiting one go.
    while let Some(next) = under_way.first().cloned() {
        exit(&stack, &next, 1, 0).await;
        under_way.remove(0);
        let now = launched(&drain(&stack).await);
        under_way.extend(now.iter().cloned());
        all.extend(now);
        most = most.max(under_way.len());
    }
    assert_eq!(most, 2);
    assert_eq!(
        all,
        ["grades:3", "grades:0", "grades:1", "grades:4", "grades:5"]
    );
    assert!(
        stack.store().get("grades:2").await.unwrap().is_none(),
        "shots:2 failed: grades:2 never runs"
    );
    let parent = stack.record("grades").await;
    assert_eq!(parent.status, JobStatus::Failed);
    assert_eq!(
        parent.reason.as_deref(),
        Some("1 of 6 children did not succeed; the first is index 2")
    );
    let summary = stack.cli().children_summary(&parent).await.unwrap();
    assert_eq!(
        summary,
        Some(BTreeMap::from([
            ("FAILED".to_owned(), 1),
            ("SUCCEEDED".to_owned(), 5)
        ])),
        "a child given up counts as FAILED"
    );
    assert!(stack.receive().await.is_empty(), "nothing more queued");
}

#[tokio::test]
async fn children_claimed_and_never_sent_go_when_the_parent_comes_back() {
    let stack = Stack::new(2).await;
    stack
        .send(&[r#"{"job_id":"cuts","definition":"render","max_attempts":1,"array":{"size":3}}"#])
        .await;
    drain(&stack).await;
    let mixes = r#"{"job_id":"mixes","definition":"render","array":{"size":3},"depends_on":[{"job_id":"cuts","type":"n_to_n","condition":"ended"}]}"#;
    stack.send(&[mixes]).await;
    drain(&stack).await;
    // A function that claimed mixes:1 and stopped before it sent it.
    let store = stack.store();
    assert!(matches!(
        store.claim_children("mixes", 0, &[1], &[]).await.unwrap(),
        berth_aws::store::Changed::Applied
    ));
    exit(&stack, "cuts:1", 1, 3).await;
    assert!(
        launched(&drain(&stack).await).is_empty(),
        "claimed: not released again"
    );
    // The parent's message again (the sweep puts it back once it is
    // quiet): the claimed child is sent.
    stack.send(&[mixes]).await;
    assert_eq!(launched(&drain(&stack).await), ["mixes:1"]);
    exit(&stack, "cuts:0", 1, 0).await;
    assert_eq!(launched(&drain(&stack).await), ["mixes:0"]);
    // The upstream cancelled: cuts:2 ends CANCELLED, which meets `ended`.
    stack.cli().cancel("cuts", None).await.unwrap();
    assert_eq!(launched(&drain(&stack).await), ["mixes:2"]);
}

#[tokio::test]
async fn an_end_recorded_and_not_counted_is_counted_when_the_parent_comes_back() {
    let stack = Stack::new(2).await;
    let pair = r#"{"job_id":"pair","definition":"render","max_attempts":1,"array":{"size":2}}"#;
    stack.send(&[pair]).await;
    assert_eq!(launched(&drain(&stack).await).len(), 2);
    exit(&stack, "pair:1", 1, 0).await;
    // pair:0's end written by a function that stopped before it counted
    // it on the parent.
    let store = stack.store();
    let change = berth_aws::store::Change {
        reason: Some("stopped by hand".into()),
        ..Default::default()
    };
    let written = store
        .transition(
            "pair:0",
            JobStatus::Cancelled,
            change,
            berth_aws::store::now_ms(),
        )
        .await
        .unwrap();
    assert!(matches!(written, berth_aws::store::Changed::Applied));
    assert_eq!(stack.record("pair").await.status, JobStatus::Accepted);
    // The parent's message again: the end is counted, and the array ends.
    stack.send(&[pair]).await;
    drain(&stack).await;
    let parent = stack.record("pair").await;
    assert_eq!(parent.status, JobStatus::Failed);
    assert_eq!(
        parent.reason.as_deref(),
        Some("1 of 2 children did not succeed; the first is index 0")
    );
}
