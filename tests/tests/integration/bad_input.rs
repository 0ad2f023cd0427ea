//! The bad-input corpus (`tests/corpus/bad-messages.json`): every kind of
//! malformed message a queue can carry, each with the specific reason it
//! must be kept with. Through the queue and the driver: none is launched,
//! none is retried, none is lost.

use berth_core::JobStatus;
use berth_driver::{Outcome, usable_job_id};
use berth_tests::stack::Stack;
use berth_tests::workspace_root;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    case: String,
    body: String,
    /// `rejected` (recorded REJECTED) or `dead-lettered` (no usable job id).
    outcome: String,
    reason: String,
}

#[tokio::test]
async fn every_malformed_message_is_kept_with_its_specific_reason() {
    let text =
        std::fs::read_to_string(workspace_root().join("tests/corpus/bad-messages.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 40, "the corpus was read");
    let stack = Stack::new(1).await;
    let bodies: Vec<&str> = cases.iter().map(|c| c.body.as_str()).collect();
    let ids = stack.send(&bodies).await;
    let mut records = Vec::new();
    while records.len() < cases.len() {
        records.extend(stack.receive().await);
    }
    let handled = stack.driver().handle_batch(records).await;
    assert_eq!(handled.len(), cases.len());

    let mut dead_lettered = 0;
    for h in &handled {
        let i = ids.iter().position(|id| *id == h.message_id).unwrap();
        let case = &cases[i];
        let reason = match (&h.outcome, case.outcome.as_str()) {
            (Outcome::Rejected { reason }, "rejected") => reason,
            (Outcome::DeadLettered { reason }, "dead-lettered") => {
                dead_lettered += 1;
                reason
            }
            (other, expected) => panic!("{}: {expected} expected, got {other:?}", case.case),
        };
        assert!(
            reason.contains(&case.reason),
            "{}: the reason {reason:?} does not say {:?}",
            case.case,
            case.reason
        );
        assert!(!h.outcome.redeliver(), "{}: never retried", case.case);
        if case.outcome == "rejected" {
            let job_id = usable_job_id(&case.body, &h.message_id).unwrap();
            let record = stack.record(&job_id).await;
            assert_eq!(record.status, JobStatus::Rejected, "{}", case.case);
            assert_eq!(
                record.reason.as_deref(),
                Some(reason.as_str()),
                "{}",
                case.case
            );
            assert_eq!(record.attempts, 0, "{}: never launched", case.case);
        }
    }
    // Each message without a usable job id is on the dead-letter queue, as
    // sent, with its reason.
    let letters = stack.dead_letters().await;
    assert_eq!(letters.len(), dead_lettered);
    for (body, reason) in letters {
        let case = cases
            .iter()
            .find(|c| c.body == body)
            .expect("a corpus body");
        assert!(reason.contains(&case.reason), "{}: {reason}", case.case);
    }
    assert_eq!(stack.task_count().await, 0, "nothing was launched");
}
