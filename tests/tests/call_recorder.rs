//! The call recorder through `AwsActions` on the emulator: every AWS call a
//! handler makes (pre-state, dry run, apply, verify, undo, verify-undone) is
//! recorded under the action that made it, calls outside any action under
//! none, and each recorded operation is one the SDK really sent.

use std::collections::{BTreeMap, BTreeSet};

use cordon_aws::actions::AwsActions;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::ops;
use cordon_core::action::ActionKind;
use cordon_core::executor::Actions;
use cordon_core::finding::parse_single_finding;
use cordon_core::plan::{Plan, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::RouteReason;
use cordon_tests::{ACCOUNT_ID, emulator};
use serde_json::json;

const USER: &str = "recorded-user";

fn key_plan(key_id: &str) -> Plan {
    let finding = json!({
        "schemaVersion": "2.0",
        "accountId": ACCOUNT_ID,
        "region": "us-east-1",
        "partition": "aws",
        "id": "recorder-finding",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "severity": 8,
        "resource": {
            "resourceType": "AccessKey",
            "accessKeyDetails": {
                "accessKeyId": key_id,
                "principalId": "AIDAEXAMPLEPRINCIPAL",
                "userName": USER,
                "userType": "IAMUser"
            }
        },
        "service": {"serviceName": "guardduty", "archived": false}
    });
    let finding = parse_single_finding(&finding.to_string(), "test").expect("test finding parses");
    let playbook: Playbook = serde_json::from_value(json!({
        "name": "recorder-test",
        "match": {},
        "steps": [
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "quarantine", "action": "quarantine-user"}
        ],
    }))
    .expect("test playbook parses");
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: 0,
        matched: vec!["test".to_string()],
    };
    plan(&finding, &playbook, reason)
}

#[tokio::test]
async fn calls_are_recorded_under_the_action_that_made_them() {
    let aws = emulator().await;
    let clients = aws.clients().clone();
    // Set-up straight through the SDK: not cordon's call path, not recorded.
    clients
        .iam
        .create_user()
        .user_name(USER)
        .send()
        .await
        .expect("CreateUser");
    let key = clients
        .iam
        .create_access_key()
        .user_name(USER)
        .send()
        .await
        .expect("CreateAccessKey");
    let key_id = key
        .access_key()
        .map(|k| k.access_key_id().to_string())
        .expect("key id");
    let recorder = clients.recorder.clone();
    assert!(recorder.counts().is_empty(), "set-up was recorded");
    clients.calls.reset();

    let dir = std::env::temp_dir().join(format!("cordon-recorder-{}", std::process::id()));
    let actions = AwsActions::new(clients.clone(), EvidenceStore::LocalDir(dir));
    let plan = key_plan(&key_id);
    for id in ["deactivate", "quarantine"] {
        let step = plan.step(id).expect("step");
        let pre = actions
            .read_pre_state(&plan, step)
            .await
            .expect("pre-state");
        assert!(!actions.describe_apply(&plan, step, &pre).is_empty());
        let outcome = actions.apply(&plan, step, &pre).await.expect("apply");
        actions
            .verify(&plan, step, &pre, &outcome)
            .await
            .expect("verify");
        actions
            .undo(&plan, step, &pre, Some(&outcome))
            .await
            .expect("undo");
        actions
            .verify_undone(&plan, step, &pre)
            .await
            .expect("verify undone");
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
                    "iam:GetUserPolicy",
                    "iam:PutUserPolicy",
                    "iam:DeleteUserPolicy"
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
