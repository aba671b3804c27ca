//! Resource claims over the S3 journal (issue 10 item 6): two findings on one
//! instance, as two Lambda invocations would run them. The second case finds
//! the instance claimed beside the cases in the bucket, stops naming the
//! holder and changes nothing; the claim is released (rewritten, the bucket
//! denies deletes) when the holder is rolled back, and the second case then
//! contains the instance from its true original state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_aws::s3_journal::S3Journal;
use cordon_core::claims::{ClaimAnswer, ResourceClaim};
use cordon_core::executor::{Executor, Outcome, Report};
use cordon_core::journal::{CaseStatus, JournalEvent, JournalStore};
use cordon_core::plan::Plan;
use cordon_gameday::{diff_states, snapshot_state};
use cordon_tests::{ApproveAll, emulator, plan_for, s3_journal_world, scratch_dir};
use serde_json::{Value, json};

const BUCKET: &str = "cordon-claims";
const PREFIX: &str = "cases/";

fn playbook() -> Value {
    json!({
        "name": "claims-test",
        "match": {},
        "on-failure": "stop",
        "steps": [
            {"id": "protect", "action": "enable-termination-protection"},
            {"id": "isolate", "action": "isolate-instance"},
        ]
    })
}

/// The same finding with another id: another case on the same instance.
fn with_id(raw: &str, id: &str) -> String {
    let mut finding: Value = serde_json::from_str(raw).unwrap();
    let slot = if finding.get("detail").is_some() {
        &mut finding["detail"]["id"]
    } else {
        &mut finding["id"]
    };
    assert!(slot.is_string(), "the finding has an id: {raw}");
    *slot = Value::String(id.to_string());
    finding.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_findings_on_one_instance_over_the_s3_journal() {
    let aws = emulator().await;
    let (fixture, raw) = s3_journal_world(&aws, BUCKET).await;
    let other_raw = with_id(&raw, "0123456789abcdef0123456789abcdef");
    let first: Plan = plan_for(&raw, playbook());
    let second: Plan = plan_for(&other_raw, playbook());
    assert_ne!(first.case_id, second.case_id);
    let instance = format!("instance:{}", fixture.instances["web-01"].id);
    assert_eq!(first.resources(), std::slice::from_ref(&instance));

    let clients = AwsClients::from_sdk_config(aws.sdk_config()).unwrap();
    let journal = S3Journal::new(clients.clone(), BUCKET, PREFIX);
    let actions = AwsActions::new(
        clients.clone(),
        EvidenceStore::LocalDir(scratch_dir("s3-claims")),
    );
    let exec = Executor::new(&actions, &journal, &ApproveAll);
    let run = |plan: &Plan, raw: &str| {
        let (plan, raw) = (plan.clone(), raw.to_string());
        let exec = &exec;
        async move { Box::pin(exec.run(&plan, &raw)).await.expect("run") }
    };
    let rollback = |plan: &Plan| {
        let case = plan.case_id.clone();
        let exec = &exec;
        async move {
            Box::pin(exec.rollback(&case, "test"))
                .await
                .expect("rollback")
        }
    };
    let before = snapshot_state(aws.clients(), &fixture).await.unwrap();

    let report: Report = run(&first, &raw).await;
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let held = journal.resource_claim(&instance).await.unwrap().unwrap();
    assert_eq!(held.case_id, first.case_id);
    let contained = snapshot_state(aws.clients(), &fixture).await.unwrap();

    let not_s3 = || {
        clients
            .calls
            .operations()
            .into_iter()
            .filter(|(op, _)| !op.to_ascii_lowercase().starts_with("s3"))
            .collect::<Vec<_>>()
    };
    let calls_before = not_s3();
    let report = run(&second, &other_raw).await;
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(report.outcome, Outcome::NeedsHuman);
    assert!(
        report
            .message
            .contains(&format!("held by case {}", first.case_id)),
        "{}",
        report.message
    );
    let records = journal.load(&second.case_id).await.unwrap();
    assert!(
        !records
            .iter()
            .any(|r| matches!(r.event, JournalEvent::StepPrepared { .. })),
        "the second case read a pre-state"
    );
    assert_eq!(
        not_s3(),
        calls_before,
        "the second case called AWS beyond its journal"
    );
    assert!(
        diff_states(
            &contained,
            &snapshot_state(aws.clients(), &fixture).await.unwrap()
        )
        .is_empty()
    );

    let report = rollback(&first).await;
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(
        journal.resource_claim(&instance).await.unwrap(),
        None,
        "released"
    );
    let report = run(&second, &other_raw).await;
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let report = rollback(&second).await;
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    let after = snapshot_state(aws.clients(), &fixture).await.unwrap();
    let diffs = diff_states(&before, &after);
    assert!(
        diffs.is_empty(),
        "not back at the original state: {diffs:#?}"
    );
}

#[tokio::test]
async fn s3_claims_are_conditional_creates_and_compare_and_swap_takeovers() {
    let aws = emulator().await;
    evidence_bucket::init(aws.clients(), BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("evidence bucket");
    let journal = S3Journal::new(aws.clients().clone(), BUCKET, PREFIX);
    let a = cordon_core::plan::CaseId::parse("case-aaaaaaaaaaaaaaaaaaaa").unwrap();
    let b = cordon_core::plan::CaseId::parse("case-bbbbbbbbbbbbbbbbbbbb").unwrap();
    let resource = "user:alice";
    let mine = ResourceClaim::new(resource, &a, "2026-01-01T00:00:00Z".into());
    let theirs = ResourceClaim::new(resource, &b, "2026-01-01T00:00:01Z".into());

    assert_eq!(
        journal.claim_resource(&mine, None).await.unwrap(),
        ClaimAnswer::Claimed { new: true }
    );
    assert_eq!(
        journal.claim_resource(&mine, None).await.unwrap(),
        ClaimAnswer::Claimed { new: false }
    );
    assert_eq!(
        journal.claim_resource(&theirs, None).await.unwrap(),
        ClaimAnswer::HeldBy(mine.clone())
    );
    // A takeover names the claim it replaces: a different one is not replaced.
    let other = ResourceClaim::new(resource, &b, "1999-01-01T00:00:00Z".into());
    assert_eq!(
        journal.claim_resource(&theirs, Some(&other)).await.unwrap(),
        ClaimAnswer::HeldBy(mine.clone())
    );
    assert_eq!(
        journal.claim_resource(&theirs, Some(&mine)).await.unwrap(),
        ClaimAnswer::Claimed { new: true }
    );
    assert!(
        !journal.release_resource(resource, &a).await.unwrap(),
        "not a's any more"
    );
    assert!(journal.release_resource(resource, &b).await.unwrap());
    assert_eq!(journal.resource_claim(resource).await.unwrap(), None);
    // A released claim is free again for anyone.
    assert_eq!(
        journal.claim_resource(&mine, None).await.unwrap(),
        ClaimAnswer::Claimed { new: true }
    );
    // Never a path out of the claims folder.
    let bad = ResourceClaim::new("user:../../x", &a, "now".into());
    assert!(journal.claim_resource(&bad, None).await.is_err());
    assert!(
        journal.cases().await.unwrap().is_empty(),
        "claims are not cases"
    );
}
