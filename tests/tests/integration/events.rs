//! Every sample in events/ is what AWS sends the function it is for: each
//! parses as its aws_lambda_events type, and a file no test knows fails.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use berth_tests::workspace_root;

#[test]
fn every_sample_event_parses_as_its_aws_type() {
    let dir = workspace_root().join("events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        match name.as_str() {
            n if n.starts_with("driver-sqs") => {
                let event: SqsEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!event.records.is_empty(), "{name}");
                for r in &event.records {
                    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"), "{name}");
                    assert!(
                        r.message_id.is_some() && r.receipt_handle.is_some() && r.body.is_some(),
                        "{name}"
                    );
                    assert!(
                        r.attributes.contains_key("ApproximateReceiveCount"),
                        "{name}"
                    );
                }
            }
            n if n.starts_with("capacity-metric-schedule") => {
                let event: EventBridgeEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(event.detail_type, "Scheduled Event", "{name}");
                assert_eq!(event.source, "aws.events", "{name}");
            }
            _ => panic!("{name}: no test knows which event type it is; add it here"),
        }
        seen += 1;
    }
    assert!(seen > 0, "events/ is empty");
}
