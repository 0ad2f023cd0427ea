use super::*;

#[test]
fn a_launch_says_where_it_went_or_why_not() {
    let placed = Launched::of(
        Route::Ec2,
        Ok(Placement::Placed {
            task_arn: "t".into(),
        }),
        None,
    );
    assert_eq!(
        placed,
        Launched::On {
            route: Route::Ec2,
            task_arn: "t".into()
        }
    );
    let ec2 = Launched::of(
        Route::Ec2,
        Ok(Placement::NoRoom {
            reason: "RESOURCE:MEMORY".into(),
        }),
        None,
    );
    let Launched::NoRoom { reason } = &ec2 else {
        panic!("{ec2:?}");
    };
    assert_eq!(reason, "EC2 has no room (RESOURCE:MEMORY)");
    // Fargate after EC2: the reason tells both.
    let fargate = Launched::of(
        Route::Fargate,
        Ok(Placement::NoRoom {
            reason: "capacity".into(),
        }),
        Some(reason),
    );
    assert_eq!(
        fargate,
        Launched::NoRoom {
            reason: "EC2 has no room (RESOURCE:MEMORY); Fargate has no room (capacity)".into()
        }
    );
    let failed = LaunchError::Permanent("no such task definition".into());
    assert_eq!(
        Launched::of(Route::Fargate, Err(failed.clone()), None),
        Launched::Failed(failed)
    );
    let throttled = LaunchError::Retryable(AwsError {
        operation: "ecs:RunTask",
        code: Some("ThrottlingException".into()),
        message: "Rate exceeded".into(),
        retryable: true,
    });
    assert!(matches!(
        Launched::of(Route::Ec2, Err(throttled), None),
        Launched::Failed(LaunchError::Retryable(_))
    ));
}

#[test]
fn a_relaunch_names_the_launch_it_follows() {
    let mut m = SqsMessage::default();
    assert_eq!(relaunch_after(&m), None, "a job's own message");
    let mut attribute = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    attribute.string_value = Some("3".into());
    attribute.data_type = Some("Number".into());
    m.message_attributes
        .insert(RELAUNCH_ATTRIBUTE.into(), attribute.clone());
    assert_eq!(relaunch_after(&m), Some(3));
    attribute.string_value = Some("three".into());
    m.message_attributes
        .insert(RELAUNCH_ATTRIBUTE.into(), attribute);
    assert_eq!(relaunch_after(&m), None);
}
