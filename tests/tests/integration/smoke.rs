//! The local AWS answers each service berth uses the way the real one does,
//! through the real SDK clients (the newest aws-sdk-cloudwatch included).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, Statistic};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ecs::types::{ContainerDefinition, LaunchType, Resource};
use berth_tests::TestAccount;

#[tokio::test]
async fn sqs_send_receive_delete() {
    let aws = TestAccount::new().await;
    let sqs = &aws.clients.sqs;
    let url = sqs
        .create_queue()
        .queue_name("jobs")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    berth_tests::assert_loopback(&url);

    sqs.send_message()
        .queue_url(&url)
        .message_body(r#"{"definition":"render"}"#)
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].body.as_deref(),
        Some(r#"{"definition":"render"}"#)
    );

    let handle = messages[0].receipt_handle.clone().unwrap();
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(handle)
        .send()
        .await
        .unwrap();
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap();
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        again.messages.unwrap_or_default().is_empty(),
        "a deleted message is not delivered again"
    );
}

#[tokio::test]
async fn dynamodb_conditional_put_fails_the_second_time() {
    let aws = TestAccount::new().await;
    let ddb = &aws.clients.dynamodb;
    aws.create_table("jobs", "job_id").await;

    let put = || {
        ddb.put_item()
            .table_name("jobs")
            .item("job_id", AttributeValue::S("job-1".into()))
            .item("status", AttributeValue::S("ACCEPTED".into()))
            .condition_expression("attribute_not_exists(job_id)")
    };
    put().send().await.expect("the first put creates the item");
    let err = put()
        .send()
        .await
        .expect_err("the second put must fail its condition");
    assert!(
        err.into_service_error()
            .is_conditional_check_failed_exception(),
        "the failure is a condition failure, not another error"
    );
}

#[tokio::test]
async fn ecs_run_task_on_ec2_takes_resources() {
    let aws = TestAccount::new().await;
    let ecs = &aws.clients.ecs;
    ecs.create_cluster()
        .cluster_name("berth")
        .send()
        .await
        .unwrap();
    let instance_arn = aws.add_container_instance("berth").await;
    ecs.register_task_definition()
        .family("render")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image("busybox")
                .cpu(256)
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let remaining = || async {
        let out = ecs
            .describe_container_instances()
            .cluster("berth")
            .container_instances(&instance_arn)
            .send()
            .await
            .unwrap();
        let ci = out.container_instances.unwrap().remove(0);
        let value = |rs: &[Resource], name: &str| {
            rs.iter()
                .find(|r| r.name() == Some(name))
                .map(|r| r.integer_value)
                .unwrap()
        };
        let remaining = ci.remaining_resources.unwrap();
        let registered = ci.registered_resources.unwrap();
        (
            value(&remaining, "CPU"),
            value(&remaining, "MEMORY"),
            value(&registered, "CPU"),
            value(&registered, "MEMORY"),
        )
    };
    let (cpu, mem, reg_cpu, reg_mem) = remaining().await;
    assert_eq!(
        (cpu, mem),
        (reg_cpu, reg_mem),
        "an empty instance has all of its resources"
    );

    let out = ecs
        .run_task()
        .cluster("berth")
        .task_definition("render")
        .launch_type(LaunchType::Ec2)
        .send()
        .await
        .unwrap();
    assert_eq!(out.tasks().len(), 1, "failures: {:?}", out.failures());
    assert_eq!(
        out.tasks()[0].container_instance_arn(),
        Some(instance_arn.as_str())
    );

    let (cpu_after, mem_after, _, _) = remaining().await;
    assert_eq!(
        (cpu_after, mem_after),
        (cpu - 256, mem - 512),
        "remainingResources drop by the container's cpu and memory"
    );
}

#[tokio::test]
async fn cloudwatch_put_then_get_statistics() {
    let aws = TestAccount::new().await;
    let cw = &aws.clients.cloudwatch;
    let dimension = Dimension::builder()
        .name("ClusterName")
        .value("berth")
        .build();
    cw.put_metric_data()
        .namespace("berth")
        .metric_data(
            MetricDatum::builder()
                .metric_name("SchedulableContainers")
                .dimensions(dimension.clone())
                .value(7.0)
                .unit(StandardUnit::Count)
                .timestamp(DateTime::from(SystemTime::now()))
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData over RPC v2 CBOR");

    let now = SystemTime::now();
    let stats = cw
        .get_metric_statistics()
        .namespace("berth")
        .metric_name("SchedulableContainers")
        .dimensions(dimension)
        .start_time(DateTime::from(now - Duration::from_secs(600)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .period(60)
        .statistics(Statistic::Maximum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .expect("GetMetricStatistics over RPC v2 CBOR");
    let points = stats.datapoints();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].maximum, Some(7.0));
    assert_eq!(points[0].sample_count, Some(1.0));
    let ts = points[0].timestamp.expect("a timestamp");
    let age = now
        .duration_since(SystemTime::try_from(ts).unwrap())
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(120),
        "the datapoint is from now, not {age:?} ago"
    );

    // A service error comes back as one, with its code.
    let err = cw
        .get_dashboard()
        .dashboard_name("missing")
        .send()
        .await
        .expect_err("no such dashboard");
    let err = err.into_service_error();
    assert!(
        err.is_dashboard_not_found_error(),
        "error code carried through: {err:?}"
    );
}

#[tokio::test]
async fn accounts_are_isolated() {
    let (a, b) = (TestAccount::new().await, TestAccount::new().await);
    assert_ne!(a.id, b.id);
    a.clients
        .sqs
        .create_queue()
        .queue_name("mine")
        .send()
        .await
        .unwrap();
    let seen_by_b = b.clients.sqs.list_queues().send().await.unwrap();
    assert!(
        seen_by_b.queue_urls().is_empty(),
        "{:?}",
        seen_by_b.queue_urls()
    );
    let seen_by_a = a.clients.sqs.list_queues().send().await.unwrap();
    assert_eq!(seen_by_a.queue_urls().len(), 1);
}
