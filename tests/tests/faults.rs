//! Fault injection against the emulator: the evidence for which faults reach
//! AWS. A creation sent once (`CreateSecurityGroup`) meets each kind; the
//! emulator is then asked whether the group exists. Only the lost-answer
//! kinds may leave one behind; every other kind must not reach AWS at all.

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_aws::faults::{FaultInjector, FaultKind, FaultPlan, FaultRule, FaultWhen};
use cordon_aws::ops::{EC2_CREATE_SECURITY_GROUP, EC2_CREATE_TAGS};
use cordon_core::executor::ErrorKind;
use cordon_tests::emulator;

fn every(kind: FaultKind, operation: &str) -> FaultInjector {
    FaultInjector::new(FaultPlan {
        seed: 0,
        rules: vec![FaultRule {
            kind,
            operation: Some(operation.to_owned()),
            when: FaultWhen::Every,
        }],
    })
    .expect("plan")
}

async fn new_vpc(clients: &AwsClients, cidr: &str) -> String {
    clients
        .ec2
        .create_vpc()
        .cidr_block(cidr)
        .send()
        .await
        .expect("CreateVpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned()
}

async fn groups_named(clients: &AwsClients, vpc: &str, name: &str) -> usize {
    clients
        .ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()
        .len()
}

#[tokio::test]
async fn only_lost_answers_reach_aws_and_each_fault_is_classified_as_the_real_one() {
    let aws = emulator().await;
    let plain = aws.clients();
    let vpc = new_vpc(plain, "10.9.0.0/16").await;
    for kind in FaultKind::ALL {
        let injector = every(kind, "ec2:CreateSecurityGroup");
        let clients = AwsClients::builder(aws.sdk_config())
            .faults(injector.clone())
            .build()
            .expect("clients");
        let name = format!("fault-{kind}");
        let failed = clients
            .try_call(
                &EC2_CREATE_SECURITY_GROUP,
                &vpc,
                clients
                    .ec2
                    .create_security_group()
                    .group_name(&name)
                    .description("fault injection test")
                    .vpc_id(&vpc),
            )
            .await
            .expect_err("every attempt is faulted");
        // Sent once: one attempt, however it failed.
        assert_eq!(injector.injected().len(), 1, "{kind}");
        assert_eq!(
            groups_named(plain, &vpc, &name).await,
            usize::from(kind.reaches_aws()),
            "{kind}: reached the emulator?"
        );
        // A refusal changed nothing; anything else may have.
        let refused = matches!(kind, FaultKind::Throttling | FaultKind::AccessDenied);
        assert_eq!(failed.may_have_taken_effect(), !refused, "{kind}");
        assert_eq!(
            failed.is_throttling(),
            kind == FaultKind::Throttling,
            "{kind}"
        );
        let error = failed.into_error();
        let expected = match kind {
            FaultKind::Throttling => ErrorKind::Throttled,
            FaultKind::AccessDenied => ErrorKind::AccessDenied,
            FaultKind::Timeout | FaultKind::TimeoutAfterSend => ErrorKind::Timeout,
            FaultKind::ServerError
            | FaultKind::ConnectionReset
            | FaultKind::ConnectionResetAfterSend => ErrorKind::Other,
        };
        assert_eq!(error.kind, expected, "{kind}: {error}");
    }
}

/// An idempotent call is retried by the SDK: a throttled first attempt is
/// answered by the second, which alone reaches the emulator.
#[tokio::test]
async fn a_throttled_first_attempt_is_retried_and_the_retry_lands() {
    let aws = emulator().await;
    let plain = aws.clients();
    let vpc = new_vpc(plain, "10.8.0.0/16").await;
    let injector = FaultInjector::new(FaultPlan {
        seed: 0,
        rules: vec![FaultRule {
            kind: FaultKind::Throttling,
            operation: Some("ec2:CreateTags".to_owned()),
            when: FaultWhen::Nth(vec![1]),
        }],
    })
    .expect("plan");
    let clients = AwsClients::builder(aws.sdk_config())
        .faults(injector.clone())
        .build()
        .expect("clients");
    clients
        .call(
            &EC2_CREATE_TAGS,
            &vpc,
            clients.ec2.create_tags().resources(&vpc).tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("cordon:test")
                    .value("retried")
                    .build(),
            ),
        )
        .await
        .expect("the retry succeeds");
    assert_eq!(injector.injected().len(), 1);
    assert_eq!(
        clients.calls.snapshot()["EC2.CreateTags"],
        2,
        "two attempts"
    );
    let tags = plain
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(&vpc).build())
        .send()
        .await
        .expect("DescribeTags");
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some("cordon:test") && t.value() == Some("retried"))
    );
}
