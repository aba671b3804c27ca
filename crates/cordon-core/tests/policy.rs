//! The role policy for the shipped playbooks grants every permission their
//! steps need (calls and implied), the front doors' own, and nothing as a
//! wildcard action. The byte-for-byte output is pinned by the CLI's golden
//! files (`crates/cordon-cli/tests/policy.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use cordon_core::action::{APPROVER_PERMISSIONS, FRONT_DOOR_PERMISSIONS, FrontDoor};
use cordon_core::playbook::Playbook;
use cordon_core::policy::{Effect, PolicyOptions, RolePolicy, role_policy, step_needs};
use cordon_core::validate::load_playbooks;

fn shipped() -> Vec<Playbook> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    load_playbooks(&dir)
        .expect("the shipped playbooks are valid")
        .into_iter()
        .map(|l| l.playbook)
        .collect()
}

fn shipped_policy(opts: &PolicyOptions) -> RolePolicy {
    role_policy(&shipped(), opts).expect("the shipped playbooks give a policy")
}

#[test]
fn no_statement_allows_a_wildcard_action() {
    let policy = shipped_policy(&PolicyOptions::default());
    for statement in &policy.document.statements {
        assert_eq!(statement.effect, Effect::Allow, "{statement:?}");
        assert!(!statement.action.is_empty(), "{statement:?}");
        assert!(!statement.resource.is_empty(), "{statement:?}");
        for action in &statement.action {
            let (service, name) = action.split_once(':').expect("service:Action");
            assert!(
                !service.is_empty() && !name.is_empty() && !action.contains(['*', '?']),
                "statement {} allows `{action}`",
                statement.sid
            );
        }
    }
}

#[test]
fn every_permission_of_every_shipped_step_is_granted() {
    let policy = shipped_policy(&PolicyOptions::default());
    let granted = policy.document.allowed_actions();
    for playbook in shipped() {
        for step in &playbook.steps {
            let (calls, implied) = step_needs(&playbook, step);
            let needed = calls
                .into_iter()
                .chain(implied.iter().map(|r| r.permission));
            for permission in needed {
                assert!(
                    granted.contains(permission),
                    "{}/{} needs {permission}, which no statement grants",
                    playbook.name,
                    step.id
                );
            }
        }
    }
    for row in FRONT_DOOR_PERMISSIONS {
        if row.door == FrontDoor::EvidenceSigning {
            assert!(
                !granted.contains(row.permission),
                "{row:?} without a signing key"
            );
            continue;
        }
        assert!(granted.contains(row.permission), "{row:?}");
    }
}

#[test]
fn nothing_is_granted_that_no_step_or_front_door_needs() {
    let policy = shipped_policy(&PolicyOptions::default());
    let mut needed: BTreeSet<String> = FRONT_DOOR_PERMISSIONS
        .iter()
        .filter(|r| r.door != FrontDoor::EvidenceSigning)
        .map(|r| r.permission.to_string())
        .collect();
    for playbook in shipped() {
        for step in &playbook.steps {
            let (calls, implied) = step_needs(&playbook, step);
            needed.extend(calls.iter().map(|p| p.to_string()));
            needed.extend(implied.iter().map(|r| r.permission.to_string()));
        }
    }
    assert_eq!(policy.document.allowed_actions(), needed);
    // No shipped snapshot step deletes snapshots on rollback, so no statement may;
    // session revocation only meets access-key findings, so no instance-profile read.
    assert!(!needed.contains("ec2:DeleteSnapshot"));
    assert!(!needed.contains("iam:GetInstanceProfile"));
    // Every permission says why it is there.
    for statement in &policy.document.statements {
        for action in &statement.action {
            let why = &policy.needs[&(statement.sid.clone(), action.clone())];
            assert!(!why.is_empty(), "{}: {action}", statement.sid);
        }
    }
}

#[test]
fn statements_are_unique_sorted_and_stable() {
    let opts = PolicyOptions::default();
    let first = shipped_policy(&opts);
    let sids: Vec<&str> = first
        .document
        .statements
        .iter()
        .map(|s| s.sid.as_str())
        .collect();
    let mut sorted = sids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sids, sorted);
    for statement in &first.document.statements {
        let mut actions = statement.action.clone();
        actions.sort();
        assert_eq!(actions, statement.action);
    }
    assert_eq!(first, shipped_policy(&opts));
}

#[test]
fn account_region_and_bucket_narrow_every_arn() {
    let opts = PolicyOptions::new("aws", "123456789012", "eu-west-1")
        .unwrap()
        .with_evidence_bucket(Some("acme-evidence"))
        .unwrap();
    let policy = shipped_policy(&opts);
    for statement in &policy.document.statements {
        for resource in statement.resource.iter().filter(|r| *r != "*") {
            assert!(resource.starts_with("arn:aws:"), "{resource}");
            let parts: Vec<&str> = resource.splitn(6, ':').collect();
            match parts[2] {
                // Config names any bucket with an open public access block.
                "s3" if statement.sid == "S3BucketPublicAccessBlock" => {
                    assert_eq!(parts[5], "*", "{resource}")
                }
                "s3" => assert!(parts[5].starts_with("acme-evidence"), "{resource}"),
                // The responder role is assumed in the findings' other
                // accounts: it is the one IAM ARN in any account.
                "iam" if parts[5] == "role/cordon-responder" => {
                    assert_eq!(statement.sid, "StsAssumeResponderRole", "{resource}")
                }
                "iam" => assert_eq!(parts[4], "123456789012", "{resource}"),
                _ => {
                    assert_eq!(parts[3], "eu-west-1", "{resource}");
                    let no_account = resource.contains(":snapshot/");
                    assert!(no_account || parts[4] == "123456789012", "{resource}");
                }
            }
        }
    }
    let text = serde_json::to_string(&policy.document).unwrap();
    assert!(!text.contains("REPLACE-WITH-EVIDENCE-BUCKET"));
}

#[test]
fn a_signing_key_grants_kms_sign_on_that_key_only() {
    let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let opts = PolicyOptions::new("aws", "123456789012", "eu-west-1")
        .unwrap()
        .with_evidence_signing_key(Some(key))
        .unwrap();
    let policy = shipped_policy(&opts);
    let sign: Vec<_> = policy
        .document
        .statements
        .iter()
        .filter(|s| s.action.iter().any(|a| a == "kms:Sign"))
        .collect();
    assert_eq!(sign.len(), 1, "one statement grants kms:Sign");
    assert_eq!(sign[0].action, vec!["kms:Sign".to_string()]);
    assert_eq!(sign[0].resource, vec![key.to_string()]);
    let text = serde_json::to_string(&sign[0]).unwrap();
    assert!(
        text.contains("ECDSA_SHA_256") && text.contains("DIGEST"),
        "{text}"
    );

    // An alias is matched by kms:RequestAlias, never by a wider resource alone.
    let opts = PolicyOptions::new("aws", "123456789012", "eu-west-1")
        .unwrap()
        .with_evidence_signing_key(Some("alias/cordon-evidence"))
        .unwrap();
    let policy = shipped_policy(&opts);
    let sign = policy
        .document
        .statements
        .iter()
        .find(|s| s.action.iter().any(|a| a == "kms:Sign"))
        .unwrap();
    let text = serde_json::to_string(sign).unwrap();
    assert!(
        text.contains("kms:RequestAlias") && text.contains("alias/cordon-evidence"),
        "{text}"
    );

    for bad in [
        "*",
        "alias/*",
        "key/../x",
        "arn:aws:kms:eu-west-1:123456789012:key/*",
        "alias/aws/s3",
    ] {
        assert!(
            PolicyOptions::default()
                .with_evidence_signing_key(Some(bad))
                .is_err(),
            "{bad} must be refused"
        );
    }
}

/// A customer-managed policy holds at most 6,144 characters (whitespace not
/// counted): the shipped playbooks' narrowed policy, signing key included,
/// must fit one.
#[test]
fn the_narrowed_shipped_policy_fits_one_managed_policy() {
    let opts = PolicyOptions::new("aws", "123456789012", "eu-west-1")
        .unwrap()
        .with_evidence_bucket(Some("acme-evidence"))
        .unwrap()
        .with_notify_topic(Some("arn:aws:sns:eu-west-1:123456789012:cordon"))
        .unwrap()
        .with_evidence_signing_key(Some(
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ))
        .unwrap();
    let policy = shipped_policy(&opts);
    let text = serde_json::to_string(&policy.document).unwrap();
    let counted = text.chars().filter(|c| !c.is_whitespace()).count();
    assert!(counted <= 6_144, "{counted} characters: split the policy");
}

#[test]
fn only_the_approver_may_answer_an_approval_wait() {
    let answers = ["states:SendTaskSuccess", "states:SendTaskFailure"];
    let role = shipped_policy(&PolicyOptions::default());
    let granted = role.document.allowed_actions();
    for action in answers {
        assert!(
            !granted.iter().any(|a| a.as_str() == action),
            "cordon's role (the Lambda's) must not answer its own approval waits: {action}"
        );
        assert!(
            !FRONT_DOOR_PERMISSIONS
                .iter()
                .any(|p| p.permission == action),
            "{action}"
        );
        assert!(
            APPROVER_PERMISSIONS
                .iter()
                .any(|p| p.permission == action && p.door == FrontDoor::TaskTokenApprovals),
            "{action}"
        );
    }
    assert!(APPROVER_PERMISSIONS.iter().all(|p| !p.reason.is_empty()));
}
