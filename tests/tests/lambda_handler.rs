//! The Step Functions task handler against the emulator, with the payloads
//! the generated state machine sends: a whole case step by step, retries and
//! overlapping invocations, rollback, and each stable error name from a real cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_aws::s3_journal::S3Journal;
use cordon_core::journal::JournalStore;
use cordon_core::plan::CaseId;
use cordon_lambda::{Config, ErrorName, Handler, TaskOutput};
use cordon_tests::{EmulatorGuard, emulator, s3_journal_world};
use serde_json::{Value, json};

const BUCKET: &str = "cordon-lambda";
const PREFIX: &str = "cases/";

fn handler(aws: &EmulatorGuard) -> Handler {
    let config = Config::from_lookup(|name| match name {
        "CORDON_JOURNAL" => Some(format!("s3://{BUCKET}/{PREFIX}")),
        _ => None,
    })
    .unwrap();
    Handler::new(aws.clients().clone(), config).unwrap()
}

fn event(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

/// The security groups of each of the instance's ENIs, and its termination protection.
async fn instance_state(
    clients: &AwsClients,
    instance: &str,
) -> (BTreeMap<String, Vec<String>>, bool) {
    let enis = clients
        .ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let groups = enis
        .network_interfaces()
        .iter()
        .map(|eni| {
            let mut ids: Vec<String> = eni
                .groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect();
            ids.sort();
            (
                eni.network_interface_id().unwrap_or_default().to_string(),
                ids,
            )
        })
        .collect();
    let protection = clients
        .ec2
        .describe_instance_attribute()
        .instance_id(instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap()
        .disable_api_termination()
        .and_then(|b| b.value())
        .unwrap_or(false);
    (groups, protection)
}

async fn plan(handler: &Handler, raw: &str) -> TaskOutput {
    handler
        .handle(json!({
            "mode": "plan",
            "finding": event(raw),
            "playbook": "ec2-compromised-high",
            "playbook-set": handler.playbook_set(),
        }))
        .await
        .unwrap()
}

async fn step(
    handler: &Handler,
    case: &str,
    id: &str,
) -> Result<TaskOutput, cordon_lambda::TaskError> {
    handler
        .handle(json!({"mode": "step", "case-id": case, "step": id, "playbook-set": handler.playbook_set()}))
        .await
}

fn mutations(clients: &AwsClients, op: &str) -> u64 {
    clients.calls.operations().get(op).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_runs_step_by_step_to_completed_and_rolls_back_exactly() {
    let aws = emulator().await;
    let (fixture, raw) = s3_journal_world(&aws, BUCKET).await;
    let instance = fixture.instance("web-01").unwrap().id.clone();
    let before = instance_state(aws.clients(), &instance).await;
    let handler = handler(&aws);

    let opened = plan(&handler, &raw).await;
    assert_eq!(opened.playbook.as_deref(), Some("ec2-compromised-high"));
    assert_eq!(opened.status, "running", "{}", opened.message);
    assert_eq!(opened.outcome, "done");
    let steps = opened.steps.clone().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.id == "isolate" && s.contains && s.needs.is_empty())
    );
    // The same delivery again (an EventBridge retry): the same case, nothing new.
    let again = plan(&handler, &raw).await;
    assert_eq!(again.case_id, opened.case_id);

    // Graph order: every step's needs come before it in the plan.
    let mut last = None;
    for s in &steps {
        let out = step(&handler, &opened.case_id, &s.id).await.unwrap();
        assert_eq!(
            out.next.as_deref(),
            Some("continue"),
            "{}: {}",
            s.id,
            out.message
        );
        assert!(
            matches!(
                out.step_status.as_deref(),
                Some("verified" | "skipped" | "failed")
            ),
            "{}: {:?}",
            s.id,
            out.step_status
        );
        last = Some(out);
    }
    let last = last.unwrap();
    assert!(
        matches!(
            last.status.as_str(),
            "completed" | "completed-with-failures"
        ),
        "{}",
        last.message
    );
    let contained = instance_state(aws.clients(), &instance).await;
    assert_ne!(contained, before, "nothing was contained");

    let case = CaseId::parse(&opened.case_id).unwrap();
    let verified = cordon_aws::manifest::verify_case(aws.clients(), BUCKET, PREFIX, &case, None)
        .await
        .unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);

    let rolled = handler
        .handle(json!({"mode": "rollback", "case-id": opened.case_id, "reason": "test"}))
        .await
        .unwrap();
    assert!(
        matches!(
            rolled.status.as_str(),
            "rolled-back" | "rolled-back-except-credentials"
        ),
        "{}",
        rolled.message
    );
    assert_eq!(instance_state(aws.clients(), &instance).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_or_overlapping_step_mutates_once() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let handler = handler(&aws);
    let opened = plan(&handler, &raw).await;
    let case = opened.case_id.clone();
    step(&handler, &case, "isolate").await.unwrap();
    aws.clients().calls.reset();

    // A retry of a verified step: no mutating call at all.
    let first = step(&handler, &case, "protect").await.unwrap();
    assert_eq!(first.step_status.as_deref(), Some("verified"));
    let once = mutations(aws.clients(), "EC2.ModifyInstanceAttribute");
    assert!(once > 0, "{:?}", aws.clients().calls.operations());
    let retry = step(&handler, &case, "protect").await.unwrap();
    assert_eq!(retry.step_status.as_deref(), Some("verified"));
    assert_eq!(
        mutations(aws.clients(), "EC2.ModifyInstanceAttribute"),
        once
    );

    // Two invocations at once: one runs, the other is told to retry (or finds it done).
    let (a, b) = tokio::join!(step(&handler, &case, "tag"), step(&handler, &case, "tag"));
    for result in [&a, &b] {
        match result {
            Ok(out) => assert_eq!(out.step_status.as_deref(), Some("verified")),
            Err(e) => assert_eq!(e.name, ErrorName::InProgress, "{e}"),
        }
    }
    assert!(a.is_ok() || b.is_ok());
    assert_eq!(
        mutations(aws.clients(), "EC2.CreateTags"),
        1,
        "{:?}",
        aws.clients().calls.operations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_name_has_a_real_cause() {
    let aws = emulator().await;
    let (_, raw) = s3_journal_world(&aws, BUCKET).await;
    let handler = handler(&aws);
    let name = |r: Result<TaskOutput, cordon_lambda::TaskError>| match r {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => {
            assert!(!e.message.is_empty());
            e.name
        }
    };
    // Malformed finding, hostile id, unknown keys in the task input.
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": {"id": 3}}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    let mut hostile = event(&raw);
    hostile["resource"]["instanceDetails"]["instanceId"] = json!("i-../../etc");
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": hostile}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "step", "case-id": "x", "step": "a", "extra": 1}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    // Another playbook pinned than the finding routes to.
    assert_eq!(
        name(
            handler
                .handle(json!({"mode": "plan", "finding": event(&raw), "playbook": "ec2-low"}))
                .await
        ),
        ErrorName::InvalidFinding
    );
    // A state machine generated from another playbook set.
    assert_eq!(
        name(
            handler
                .handle(
                    json!({"mode": "plan", "finding": event(&raw), "playbook-set": "0".repeat(64)})
                )
                .await
        ),
        ErrorName::PlaybookSetMismatch
    );
    // Unknown case, unknown step.
    assert_eq!(
        name(step(&handler, "case-0123456789abcdef0123", "isolate").await),
        ErrorName::NotFound
    );
    let opened = plan(&handler, &raw).await;
    assert_eq!(
        name(step(&handler, &opened.case_id, "no-such-step").await),
        ErrorName::NotFound
    );
    // A step before the steps it needs.
    assert_eq!(
        name(step(&handler, &opened.case_id, "store-evidence").await),
        ErrorName::NotReady
    );
    // Another worker holds the case's lease.
    let other = S3Journal::new(aws.clients().clone(), BUCKET, PREFIX);
    let case = CaseId::parse(&opened.case_id).unwrap();
    let lease = other.lock(&case).await.unwrap();
    assert_eq!(
        name(step(&handler, &opened.case_id, "isolate").await),
        ErrorName::InProgress
    );
    other.release(&case, lease).await.unwrap();
    step(&handler, &opened.case_id, "isolate").await.unwrap();
}
