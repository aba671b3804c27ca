//! The call recorder through `AwsActions` on the emulator: every AWS call a
//! handler makes (pre-state, dry run, apply, verify, undo, verify-undone) is
//! recorded under the action that made it, calls outside any action under
//! none, and each recorded operation is one the SDK really sent.

use std::collections::{BTreeMap, BTreeSet};

use cordon_aws::ops;
use cordon_core::action::ActionKind;
use cordon_gameday::EnvironmentSpec;
use cordon_tests::{
    Lifecycle, Phase, create_quarantine_policy, emulator, local_actions, plan_steps,
};
use serde_json::json;

const USER: &str = "recorded-user";

#[tokio::test]
async fn calls_are_recorded_under_the_action_that_made_them() {
    let aws = emulator().await;
    let clients = aws.clients().clone();
    // Set-up by the fixture builder, straight through the SDK: not cordon's
    // call path, not recorded.
    let spec: EnvironmentSpec =
        serde_json::from_value(json!({"users": [{"name": USER, "access-keys": 1}]})).expect("spec");
    let env = cordon_gameday::provision(&clients, &spec)
        .await
        .expect("provision");
    let key_id = env.users[USER].access_keys[0].id.clone();
    create_quarantine_policy(&clients).await;
    let recorder = clients.recorder.clone();
    assert!(recorder.counts().is_empty(), "set-up was recorded");
    clients.calls.reset();

    let (actions, _) = local_actions(&clients, "recorder");
    let mut finding = env.key_finding(&key_id, Some(USER), "IAMUser");
    finding.id = Some("recorder-finding".to_string());
    let plan = plan_steps(
        &finding.detail().to_string(),
        "recorder-test",
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "quarantine", "action": "quarantine-user"}
        ]),
    );
    for id in ["deactivate", "quarantine"] {
        // Not counting: the driver would reset the counter compared below.
        let report = Lifecycle::new(&actions, &plan, id).run().await;
        report.assert_ok();
        let dry_run = report.phase(Phase::DryRun).expect("dry run");
        assert!(
            dry_run
                .result
                .as_ref()
                .is_ok_and(|lines| lines.as_array().is_some_and(|l| !l.is_empty())),
            "{id}: the dry run lists calls"
        );
    }
    // A call outside any action.
    let identity = clients.sts.get_caller_identity();
    clients
        .call(&ops::STS_GET_CALLER_IDENTITY, "caller", identity)
        .await
        .expect("GetCallerIdentity");

    let by_kind = recorder.iam_actions_by_kind();
    assert_eq!(
        by_kind,
        BTreeMap::from([
            (
                ActionKind::DeactivateAccessKey,
                BTreeSet::from([
                    "iam:ListAccessKeys",
                    "iam:GetAccessKeyLastUsed",
                    "iam:UpdateAccessKey"
                ])
            ),
            (
                ActionKind::QuarantineUser,
                BTreeSet::from([
                    "iam:ListAttachedUserPolicies",
                    "iam:AttachUserPolicy",
                    "iam:DetachUserPolicy"
                ])
            ),
        ])
    );
    for (kind, used) in &by_kind {
        let declared: BTreeSet<&str> = kind.permissions().iter().copied().collect();
        assert!(
            used.is_subset(&declared),
            "{kind} called {:?}, which it does not declare",
            used.difference(&declared).collect::<Vec<_>>()
        );
    }
    let ops_by_kind = recorder.ops_by_kind();
    assert_eq!(
        ops_by_kind.get(&None),
        Some(&BTreeSet::from([&ops::STS_GET_CALLER_IDENTITY])),
        "calls outside an action are recorded under none"
    );
    // Every recorded operation reached the wire under the same name: the
    // table's names are the SDK's.
    let sent = clients.calls.operations();
    let recorded: BTreeSet<String> = ops_by_kind
        .values()
        .flatten()
        .map(|op| op.counter_key())
        .collect();
    let on_the_wire: BTreeSet<String> = sent.keys().cloned().collect();
    assert_eq!(recorded, on_the_wire);
    let total: u64 = recorder.counts().values().sum();
    assert_eq!(total, clients.calls.operations_total());
}
