//! `notify` draws on SNS's own throttle bucket, never on EC2's: a burst of
//! isolations that has spent EC2's budgets must not hold up the page to the
//! responders. SNS is answered by aws-smithy-mocks; the clock is paused, so
//! any wait for a rate-limit token shows as elapsed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use aws_sdk_sns::Client;
use aws_sdk_sns::operation::get_topic_attributes::GetTopicAttributesOutput;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use cordon_aws::actions::AwsActions;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::ops;
use cordon_aws::ratelimit::Bucket;
use cordon_core::action::ActionKind;
use cordon_core::executor::Actions;
use cordon_core::finding::parse_single_finding;
use cordon_core::plan::plan;
use cordon_core::route::RouteReason;
use cordon_core::validate::validate_text;
use tokio::time::Instant;

const TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:responders";

const PLAYBOOK: &str = r#"
name: notify-test
description: Page the responders.
priority: 10
match:
  finding-types: ["*:IAMUser/*"]
steps:
  - id: page
    action: notify
    with:
      topic-arn: arn:aws:sns:us-east-1:111122223333:responders
"#;

#[tokio::test(start_paused = true)]
async fn notify_does_not_wait_on_ec2_budgets() {
    let attributes = mock!(Client::get_topic_attributes)
        .then_output(|| GetTopicAttributesOutput::builder().build());
    let publish =
        mock!(Client::publish).then_output(|| PublishOutput::builder().message_id("m-1").build());
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&attributes, &publish]);
    let mut clients = common::offline_clients();
    clients.sns = sns;

    // A burst of isolations has spent EC2's read and write budgets.
    for _ in 0..Bucket::Ec2NonMutating.capacity() {
        clients.limits.acquire(Bucket::Ec2NonMutating).await;
    }
    for _ in 0..Bucket::Ec2Mutating.capacity() {
        clients.limits.acquire(Bucket::Ec2Mutating).await;
    }

    let text = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/findings/iam-user-key.json"),
    )
    .unwrap();
    let finding = parse_single_finding(&text, "iam-user-key.json").unwrap();
    let (playbook, _) = validate_text(PLAYBOOK, "notify.yaml").unwrap();
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: Vec::new(),
    };
    let plan = plan(&finding, &playbook, reason);
    let step = plan.step("page").unwrap();
    let dir = std::env::temp_dir().join(format!("cordon-notify-{}", std::process::id()));
    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(dir));

    let start = Instant::now();
    let pre = actions.read_pre_state(&plan, step).await.unwrap();
    let outcome = actions.apply(&plan, step, &pre).await.unwrap();
    actions.verify(&plan, step, &pre, &outcome).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "notify waited for EC2's tokens"
    );
    assert_eq!(outcome["message-id"], "m-1");
    assert_eq!(outcome["topic-arn"], TOPIC);
    assert_eq!(publish.num_calls(), 1);
    assert_eq!(
        clients.recorder.ops_by_kind()[&Some(ActionKind::Notify)]
            .iter()
            .map(|op| op.bucket)
            .collect::<Vec<_>>(),
        [
            ops::SNS_GET_TOPIC_ATTRIBUTES.bucket,
            ops::SNS_PUBLISH.bucket
        ]
    );
}
