//! The IAM credential actions against the emulator: deactivate exactly the
//! named key, rotate it into Secrets Manager (and never leak its secret),
//! revoke a role's sessions, quarantine a user, delete a console password —
//! each applied, verified, undone and checked back at its pre-state.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use aws_credential_types::Credentials;
use cordon_aws::actions::AwsActions;
use cordon_aws::actions::iam::decode_policy_document;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_core::executor::{ActionError, Actions, Decision, ErrorKind, Executor, Progress};
use cordon_core::finding::{Finding, parse_single_finding};
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{Plan, Target, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::RouteReason;
use cordon_tests::{ACCOUNT_ID, EmulatorGuard, emulator};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Findings, playbooks, plans

fn access_key_finding(id: &str, key_id: &str, user: Option<&str>, user_type: &str) -> Finding {
    let mut details = json!({
        "accessKeyId": key_id,
        "principalId": "AIDAEXAMPLEPRINCIPAL",
        "userType": user_type,
    });
    if let Some(user) = user {
        details["userName"] = json!(user);
    }
    let finding = json!({
        "schemaVersion": "2.0",
        "accountId": ACCOUNT_ID,
        "region": "us-east-1",
        "partition": "aws",
        "id": id,
        "arn": format!("arn:aws:guardduty:us-east-1:{ACCOUNT_ID}:detector/d/finding/{id}"),
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "severity": 8,
        "createdAt": "2024-05-01T10:00:00.000Z",
        "updatedAt": "2024-05-01T10:00:00.000Z",
        "title": "Credentials used from outside AWS",
        "description": "test finding",
        "resource": {"resourceType": "AccessKey", "accessKeyDetails": details},
        "service": {
            "serviceName": "guardduty",
            "detectorId": "d",
            "archived": false,
            "count": 1,
            "resourceRole": "TARGET",
            "eventFirstSeen": "2024-05-01T09:00:00.000Z",
            "eventLastSeen": "2024-05-01T09:30:00.000Z",
            "action": {"actionType": "AWS_API_CALL"}
        }
    });
    parse_single_finding(&finding.to_string(), "test").expect("test finding parses")
}

fn instance_finding(id: &str, instance_id: &str, profile_arn: &str) -> Finding {
    let finding = json!({
        "schemaVersion": "2.0",
        "accountId": ACCOUNT_ID,
        "region": "us-east-1",
        "partition": "aws",
        "id": id,
        "type": "Backdoor:EC2/C&CActivity.B",
        "severity": 8,
        "resource": {
            "resourceType": "Instance",
            "instanceDetails": {
                "instanceId": instance_id,
                "iamInstanceProfile": {"arn": profile_arn, "id": "AIPAEXAMPLE"},
                "networkInterfaces": []
            }
        },
        "service": {"serviceName": "guardduty", "resourceRole": "ACTOR", "archived": false}
    });
    parse_single_finding(&finding.to_string(), "test").expect("test finding parses")
}

fn make_plan(finding: &Finding, steps: Value) -> Plan {
    let playbook: Playbook = serde_json::from_value(json!({
        "name": "iam-test",
        "match": {},
        "steps": steps,
    }))
    .expect("test playbook parses");
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: 0,
        matched: vec!["test".to_string()],
    };
    plan(finding, &playbook, reason)
}

fn actions(aws: &EmulatorGuard, name: &str) -> AwsActions {
    let dir = std::env::temp_dir().join(format!("cordon-iam-{}-{name}", std::process::id()));
    AwsActions::new(aws.clients().clone(), EvidenceStore::LocalDir(dir))
}

// ---------------------------------------------------------------------------
// Everything the handlers produce, kept for the secret scan

#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn json(&mut self, value: &Value) {
        self.0.push(value.to_string());
        self.0.push(format!("{value:?}"));
        self.0.push(format!("{value:#}"));
    }

    fn error(&mut self, error: &ActionError) {
        self.0.push(error.to_string());
        self.0.push(format!("{error:?}"));
        let mut source = std::error::Error::source(error);
        while let Some(e) = source {
            self.0.push(format!("{e} {e:?}"));
            source = e.source();
        }
    }

    fn lines(&mut self, lines: &[String]) {
        self.0.extend(lines.iter().cloned());
    }

    fn text(&self) -> String {
        self.0.join("\n")
    }
}

/// Reads the pre-state, applies and verifies, recording everything.
async fn run_step(
    actions: &AwsActions,
    plan: &Plan,
    id: &str,
    log: &mut Transcript,
) -> Result<(Value, Value), ActionError> {
    let step = plan.step(id).expect("step in plan");
    let result = async {
        let pre = actions.read_pre_state(plan, step).await?;
        log.json(&pre);
        log.lines(&actions.describe_apply(plan, step, &pre));
        let outcome = actions.apply(plan, step, &pre).await?;
        log.json(&outcome);
        actions.verify(plan, step, &pre, &outcome).await?;
        Ok((pre, outcome))
    }
    .await;
    if let Err(error) = &result {
        log.error(error);
    }
    result
}

/// Undoes and checks the resource is back at its pre-state.
async fn undo_step(
    actions: &AwsActions,
    plan: &Plan,
    id: &str,
    pre: &Value,
    outcome: Option<&Value>,
    log: &mut Transcript,
) -> Result<Value, ActionError> {
    let step = plan.step(id).expect("step in plan");
    let result = async {
        let result = actions.undo(plan, step, pre, outcome).await?;
        log.json(&result);
        actions.verify_undone(plan, step, pre).await?;
        Ok(result)
    }
    .await;
    if let Err(error) = &result {
        log.error(error);
    }
    result
}

// ---------------------------------------------------------------------------
// Emulator fixtures and read-backs

async fn create_user(clients: &AwsClients, user: &str, keys: usize) -> (String, Vec<String>) {
    let created = clients
        .iam
        .create_user()
        .user_name(user)
        .send()
        .await
        .expect("CreateUser");
    let arn = created
        .user()
        .map(|u| u.arn().to_string())
        .expect("user arn");
    let mut ids = Vec::new();
    for _ in 0..keys {
        let key = clients
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .expect("CreateAccessKey");
        ids.push(
            key.access_key()
                .map(|k| k.access_key_id().to_string())
                .expect("key id"),
        );
    }
    (arn, ids)
}

/// `(id, status)` of every key of the user, sorted.
async fn key_list(clients: &AwsClients, user: &str) -> Vec<(String, String)> {
    let out = clients
        .iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("ListAccessKeys");
    let mut keys: Vec<(String, String)> = out
        .access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap_or_default().to_string(),
                k.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn pair(id: &str, status: &str) -> (String, String) {
    (id.to_string(), status.to_string())
}

fn sorted(mut keys: Vec<(String, String)>) -> Vec<(String, String)> {
    keys.sort();
    keys
}

async fn set_status(clients: &AwsClients, user: &str, key: &str, status: &str) {
    clients
        .iam
        .update_access_key()
        .user_name(user)
        .access_key_id(key)
        .status(status.into())
        .send()
        .await
        .expect("UpdateAccessKey");
}

async fn secret_count(clients: &AwsClients) -> usize {
    clients
        .secretsmanager
        .list_secrets()
        .include_planned_deletion(true)
        .send()
        .await
        .expect("ListSecrets")
        .secret_list()
        .len()
}

/// The stored `(AccessKeyId, SecretAccessKey)`.
async fn stored_key(clients: &AwsClients, secret_arn: &str) -> (String, String) {
    let value = clients
        .secretsmanager
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .expect("GetSecretValue");
    let parsed: Value = serde_json::from_str(value.secret_string().expect("secret string"))
        .expect("secret is JSON");
    (
        parsed["AccessKeyId"]
            .as_str()
            .expect("AccessKeyId")
            .to_string(),
        parsed["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .to_string(),
    )
}

async fn role_policy(clients: &AwsClients, role: &str, policy: &str) -> Option<String> {
    match clients
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
    {
        // IAM (and the emulator) return documents URL-encoded.
        Ok(out) => Some(decode_policy_document(out.policy_document())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetRolePolicy: {e:?}"),
    }
}

async fn user_policy(clients: &AwsClients, user: &str, policy: &str) -> Option<String> {
    match clients
        .iam
        .get_user_policy()
        .user_name(user)
        .policy_name(policy)
        .send()
        .await
    {
        // IAM (and the emulator) return documents URL-encoded.
        Ok(out) => Some(decode_policy_document(out.policy_document())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(e) => panic!("GetUserPolicy: {e:?}"),
    }
}

async fn create_role(clients: &AwsClients, role: &str) {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    });
    clients
        .iam
        .create_role()
        .role_name(role)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("CreateRole");
}

fn token_issue_time(document: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(document).ok()?;
    doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .map(str::to_string)
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn deactivate_and_rotate_then_roll_back() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (user_arn, keys) = create_user(clients, "alice", 1).await;
    let old = keys[0].clone();
    let kms_key = clients.kms.create_key().send().await.expect("CreateKey");
    let kms_key_id = kms_key
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .expect("key id");
    let finding = access_key_finding("f-rotate", &old, Some("alice"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "rotate", "action": "rotate-access-key", "with": {"kms-key-id": kms_key_id}}
        ]),
    );
    assert!(!plan.step("rotate").expect("rotate").approval.required);
    let actions = actions(&aws, "rotate");
    let before = key_list(clients, "alice").await;
    let mut log = Transcript::default();

    clients.calls.reset();
    let (deactivate_pre, deactivate_out) = run_step(&actions, &plan, "deactivate", &mut log)
        .await
        .expect("deactivate");
    let deactivate_calls = clients.calls.operations();
    clients.calls.reset();
    let (rotate_pre, rotate_out) = run_step(&actions, &plan, "rotate", &mut log)
        .await
        .expect("rotate");
    let rotate_calls = clients.calls.operations();
    eprintln!("deactivate calls: {deactivate_calls:?}\nrotate calls: {rotate_calls:?}");
    assert_eq!(deactivate_calls.get("IAM.UpdateAccessKey"), Some(&1));
    assert_eq!(rotate_calls.get("IAM.CreateAccessKey"), Some(&1));
    assert_eq!(rotate_calls.get("SecretsManager.CreateSecret"), Some(&1));
    assert_eq!(deactivate_out["changed"], true);
    assert_eq!(deactivate_pre["keys"].as_array().map(Vec::len), Some(1));

    let new = rotate_out["new-access-key-id"]
        .as_str()
        .expect("new key id")
        .to_string();
    assert_ne!(new, old);
    assert_eq!(
        key_list(clients, "alice").await,
        sorted(vec![pair(&new, "Active"), pair(&old, "Inactive")])
    );
    let secret_arn = rotate_out["secret-arn"]
        .as_str()
        .expect("secret arn")
        .to_string();
    let case = plan.case_id.to_string();
    assert_eq!(
        rotate_out["secret-name"],
        format!("cordon/rotated-keys/{case}/alice")
    );
    assert_eq!(rotate_out["kms-key-id"], json!(kms_key_id));
    let described = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&secret_arn)
        .send()
        .await
        .expect("DescribeSecret");
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for expected in [
        ("cordon:case-id", case.as_str()),
        ("cordon:user", "alice"),
        ("cordon:old-access-key-id", old.as_str()),
        ("cordon:new-access-key-id", new.as_str()),
    ] {
        assert!(
            tags.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{tags:?} lacks {expected:?}"
        );
    }
    assert_eq!(described.kms_key_id(), Some(kms_key_id.as_str()));

    // The stored key works: the emulator knows it as alice's.
    let (stored_id, stored_secret) = stored_key(clients, &secret_arn).await;
    assert_eq!(stored_id, new);
    assert!(!stored_secret.is_empty());
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(aws.sdk_config())
            .credentials_provider(Credentials::new(
                &stored_id,
                &stored_secret,
                None,
                None,
                "rotated",
            ))
            .build(),
    );
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity with the new key");
    assert_eq!(identity.arn(), Some(user_arn.as_str()));
    assert!(
        !log.text().contains(&stored_secret),
        "the secret access key leaked"
    );

    // Roll back in reverse order, as the executor does.
    let undone = undo_step(
        &actions,
        &plan,
        "rotate",
        &rotate_pre,
        Some(&rotate_out),
        &mut log,
    )
    .await
    .expect("undo rotate");
    assert_eq!(undone["deleted-access-keys"], json!([new]));
    assert_eq!(undone["not-restored"], Value::Null);
    undo_step(
        &actions,
        &plan,
        "deactivate",
        &deactivate_pre,
        Some(&deactivate_out),
        &mut log,
    )
    .await
    .expect("undo deactivate");
    assert_eq!(key_list(clients, "alice").await, before);
    assert_eq!(before, vec![pair(&old, "Active")]);
    let described = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&secret_arn)
        .send()
        .await
        .expect("DescribeSecret");
    assert!(
        described.deleted_date().is_some(),
        "secret not scheduled for deletion"
    );

    // Rolling back twice is harmless. (Only the first step's read-back can be
    // repeated now: the rotation's pre-state had the old key already inactive.)
    let step = |id: &str| plan.step(id).expect("step");
    let again = actions
        .undo(&plan, step("rotate"), &rotate_pre, Some(&rotate_out))
        .await
        .expect("undo rotate again");
    assert_eq!(again["deleted-access-keys"], json!([]));
    log.json(&again);
    undo_step(
        &actions,
        &plan,
        "deactivate",
        &deactivate_pre,
        Some(&deactivate_out),
        &mut log,
    )
    .await
    .expect("undo deactivate again");
    assert_eq!(key_list(clients, "alice").await, before);
    assert!(
        !log.text().contains(&stored_secret),
        "the secret access key leaked"
    );
}

#[tokio::test]
async fn deactivate_touches_only_the_named_key() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "frank", 2).await;
    let finding = access_key_finding("f-only-named", &keys[1], Some("frank"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "deactivate", "action": "deactivate-access-key"}]),
    );
    let actions = actions(&aws, "only-named");
    let mut log = Transcript::default();
    let (pre, out) = run_step(&actions, &plan, "deactivate", &mut log)
        .await
        .expect("deactivate");
    let expected = sorted(vec![pair(&keys[0], "Active"), pair(&keys[1], "Inactive")]);
    assert_eq!(key_list(clients, "frank").await, expected);
    assert_eq!(out["other-keys-untouched"], json!([keys[0]]));
    // Applying again (a resumed case) changes nothing more.
    let step = plan.step("deactivate").expect("step");
    actions.apply(&plan, step, &pre).await.expect("re-apply");
    assert_eq!(key_list(clients, "frank").await, expected);
    // Someone else deactivating the other key is caught by verification.
    set_status(clients, "frank", &keys[0], "Inactive").await;
    let err = actions
        .verify(&plan, step, &pre, &out)
        .await
        .expect_err("other key changed");
    assert_eq!(err.kind, ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains(&keys[0]), "{err}");
    set_status(clients, "frank", &keys[0], "Active").await;
    undo_step(&actions, &plan, "deactivate", &pre, Some(&out), &mut log)
        .await
        .expect("undo");
    assert_eq!(
        key_list(clients, "frank").await,
        sorted(vec![pair(&keys[0], "Active"), pair(&keys[1], "Active")])
    );
    // The finding need not name the user: IAM says whose key it is.
    let finding = access_key_finding("f-no-user", &keys[1], None, "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "deactivate", "action": "deactivate-access-key"}]),
    );
    let (pre, _) = run_step(&actions, &plan, "deactivate", &mut log)
        .await
        .expect("deactivate without user name");
    assert_eq!(pre["user-name"], "frank");
}

#[tokio::test]
async fn two_keys_are_refused_unless_the_other_is_inactive_and_deletion_is_allowed() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "bob", 2).await;
    let (named, other) = (keys[0].clone(), keys[1].clone());
    let finding = access_key_finding("f-two-keys", &named, Some("bob"), "IAMUser");
    let actions = actions(&aws, "two-keys");
    let mut log = Transcript::default();
    let before = key_list(clients, "bob").await;

    // Default policy: refused, nothing changed, no secret.
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    clients.calls.reset();
    let err = run_step(&actions, &plan, "rotate", &mut log)
        .await
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("delete-inactive-other"), "{err}");
    assert!(
        err.message.contains(&named) && err.message.contains(&other),
        "{err}"
    );
    assert_eq!(
        clients.calls.mutating_total(),
        0,
        "{:?}",
        clients.calls.snapshot()
    );
    assert_eq!(key_list(clients, "bob").await, before);
    assert_eq!(secret_count(clients).await, 0);
    // Rolling back the refused step (prepared, never applied) is a no-op.
    let step = plan.step("rotate").expect("step");
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    undo_step(&actions, &plan, "rotate", &pre, None, &mut log)
        .await
        .expect("undo refused step");
    assert_eq!(key_list(clients, "bob").await, before);

    // Deletion allowed but the other key is active: still refused.
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key", "with": {"when-two-keys": "delete-inactive-other"}}]),
    );
    assert!(
        plan.step("rotate").expect("rotate").approval.required,
        "irreversible rotation needs approval"
    );
    let err = run_step(&actions, &plan, "rotate", &mut log)
        .await
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(
        err.message.contains(&other) && err.message.contains("Active"),
        "{err}"
    );
    assert_eq!(key_list(clients, "bob").await, before);
    assert_eq!(secret_count(clients).await, 0);

    // The other key inactive: it is deleted, and recorded (id and status only).
    set_status(clients, "bob", &other, "Inactive").await;
    let (pre, out) = run_step(&actions, &plan, "rotate", &mut log)
        .await
        .expect("rotate");
    assert_eq!(out["deleted-other-key"]["access-key-id"], json!(other));
    assert_eq!(out["deleted-other-key"]["status"], "Inactive");
    let new = out["new-access-key-id"]
        .as_str()
        .expect("new key")
        .to_string();
    let expected = sorted(vec![pair(&named, "Active"), pair(&new, "Active")]);
    assert_eq!(key_list(clients, "bob").await, expected);
    let (stored_id, stored_secret) =
        stored_key(clients, out["secret-arn"].as_str().expect("arn")).await;
    assert_eq!(stored_id, new);

    // Undo removes the new key; the deleted inactive key cannot come back, and says so.
    let undone = undo_step(&actions, &plan, "rotate", &pre, Some(&out), &mut log)
        .await
        .expect("undo");
    let note = undone["not-restored"]
        .as_str()
        .expect("irreversibility noted");
    assert!(note.contains(&other), "{note}");
    assert_eq!(key_list(clients, "bob").await, vec![pair(&named, "Active")]);
    assert!(
        !log.text().contains(&stored_secret),
        "the secret access key leaked"
    );
}

#[tokio::test]
async fn rotate_recovers_from_interrupted_attempts() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "grace", 1).await;
    let finding = access_key_finding("f-interrupted", &keys[0], Some("grace"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    let step = plan.step("rotate").expect("step");
    let actions = actions(&aws, "interrupted");
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");

    // A crash between CreateAccessKey and CreateSecret left a key nobody holds the secret of.
    let orphan = clients
        .iam
        .create_access_key()
        .user_name("grace")
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key()
        .map(|k| k.access_key_id().to_string())
        .expect("id");
    // Without a record of a key about to be created, that key is not the step's:
    // with it, the user has two keys and rotation refuses, deleting nothing.
    let refused = actions
        .apply(&plan, step, &pre)
        .await
        .expect_err("a key the step did not create counts against the limit");
    assert_eq!(refused.kind, ErrorKind::Refused, "{refused}");
    assert!(refused.message.contains(&orphan), "{refused}");
    assert_eq!(key_list(clients, "grace").await.len(), 2);
    // The interrupted attempt journaled `creating-key` before CreateAccessKey:
    // the re-apply knows the orphan is its own, unstored, and deletes it.
    let journaled = Progress::replay(vec![
        json!({"phase": "creating-key", "existing-keys": [keys[0]]}),
    ]);
    let out = actions
        .apply_with_progress(&plan, step, &pre, &journaled)
        .await
        .expect("apply");
    assert_eq!(out["discarded-unstored-keys"], json!([orphan]));
    actions
        .verify(&plan, step, &pre, &out)
        .await
        .expect("verify");
    let new = out["new-access-key-id"].as_str().expect("new").to_string();

    // A crash after CreateSecret, before the outcome was journaled: re-apply reuses it.
    let again = actions.apply(&plan, step, &pre).await.expect("re-apply");
    assert_eq!(again["reused-existing-secret"], true);
    assert_eq!(again["new-access-key-id"], json!(new));
    assert_eq!(again["secret-arn"], out["secret-arn"]);
    assert_eq!(key_list(clients, "grace").await.len(), 2);

    // Undo without an outcome finds the key (not in the pre-state) and the secret by name.
    let undone = actions
        .undo(&plan, step, &pre, None)
        .await
        .expect("undo without outcome");
    assert_eq!(undone["deleted-access-keys"], json!([new]));
    actions
        .verify_undone(&plan, step, &pre)
        .await
        .expect("verify undone");
    assert_eq!(
        key_list(clients, "grace").await,
        vec![pair(&keys[0], "Active")]
    );

    // After a rollback the secret is scheduled for deletion: a re-apply says so instead of guessing.
    let err = actions
        .apply(&plan, step, &pre)
        .await
        .expect_err("secret scheduled for deletion");
    assert_eq!(err.kind, ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("restore-secret"), "{err}");
}

#[tokio::test]
async fn an_operators_key_made_after_a_refused_rotation_survives_the_resume() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "heidi", 2).await;
    let finding = access_key_finding("f-operator", &keys[0], Some("heidi"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key", "on-failure": "stop", "retry": {"max-attempts": 1}}]),
    );
    let actions = actions(&aws, "operator");
    let dir = std::env::temp_dir().join(format!(
        "cordon-iam-{}-operator-journal",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = LocalJournal::new(&dir);
    let executor = Executor::new(&actions, &journal, &cordon_tests::ApproveAll);

    // Two keys: rotation refuses, changing nothing.
    let report = executor.run(&plan, &finding.raw).await.expect("run");
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(key_list(clients, "heidi").await.len(), 2);

    // An operator makes room by hand and creates a key of their own.
    clients
        .iam
        .delete_access_key()
        .user_name("heidi")
        .access_key_id(&keys[1])
        .send()
        .await
        .expect("DeleteAccessKey");
    let operators = clients
        .iam
        .create_access_key()
        .user_name("heidi")
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key()
        .map(|k| k.access_key_id().to_string())
        .expect("id");

    // Resume: the operator's key is not the step's, so it is never deleted.
    let report = executor.resume(&plan.case_id).await.expect("resume");
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(
        key_list(clients, "heidi").await,
        sorted(vec![pair(&keys[0], "Active"), pair(&operators, "Active")]),
        "the operator's key survives"
    );
    assert!(
        report.message.contains(&operators) && report.message.contains("not created by cordon"),
        "{}",
        report.message
    );
    assert_eq!(secret_count(clients).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Approves every step and, unlike [`cordon_tests::ApproveAll`], every gated undo.
struct ApproveUndo;

impl cordon_core::executor::Approver for ApproveUndo {
    async fn decide(&self, _plan: &Plan, _step: &cordon_core::plan::PlannedStep) -> Decision {
        Decision::Approved {
            approver: "test".to_string(),
        }
    }

    async fn decide_undo(
        &self,
        _plan: &Plan,
        _step: &cordon_core::plan::PlannedStep,
        _gate: cordon_core::action::UndoGate,
    ) -> Decision {
        Decision::Approved {
            approver: "test".to_string(),
        }
    }
}

#[tokio::test]
async fn an_iam_users_temporary_key_revokes_that_users_sessions_until_an_approved_rollback() {
    let aws = emulator().await;
    let clients = aws.clients();
    create_user(clients, "ivan", 1).await;
    // GetSessionToken credentials: an ASIA key whose user type is IAMUser.
    let finding = access_key_finding(
        "f-user-session",
        "ASIAEXAMPLETEMP00099",
        Some("ivan"),
        "IAMUser",
    );
    let plan = make_plan(
        &finding,
        json!([{"id": "revoke", "action": "revoke-user-sessions", "on-failure": "stop"}]),
    );
    assert_eq!(
        plan.step("revoke").expect("step").target,
        Target::User {
            user_name: "ivan".to_string()
        }
    );
    let actions = actions(&aws, "user-sessions");
    let dir = std::env::temp_dir().join(format!(
        "cordon-iam-{}-user-sessions-journal",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = LocalJournal::new(&dir);

    let before = time::OffsetDateTime::now_utc();
    let report = Executor::new(&actions, &journal, &cordon_tests::ApproveAll)
        .run(&plan, &finding.raw)
        .await
        .expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let document = user_policy(clients, "ivan", "AWSRevokeOlderSessions")
        .await
        .expect("the deny policy is on the user");
    let doc: Value = serde_json::from_str(&document).expect("JSON");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert_eq!(doc["Statement"][0]["Action"], "*");
    assert_eq!(doc["Statement"][0]["Resource"], "*");
    let cutoff = token_issue_time(&document).expect("DateLessThan aws:TokenIssueTime");
    let cutoff =
        time::OffsetDateTime::parse(&cutoff, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    assert!(
        cutoff >= before.replace_nanosecond(0).expect("whole second")
            && cutoff <= time::OffsetDateTime::now_utc() + time::Duration::SECOND,
        "{cutoff} is the time of the step"
    );

    // A rollback without approval keeps the revocation: it re-arms credentials.
    let kept = Executor::new(&actions, &journal, &cordon_tests::ApproveAll)
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(
        kept.status,
        CaseStatus::RolledBackExceptCredentials,
        "{}",
        kept.message
    );
    assert!(
        user_policy(clients, "ivan", "AWSRevokeOlderSessions")
            .await
            .is_some()
    );

    // Approved, the undo removes exactly what the step added.
    let report = Executor::new(&actions, &journal, &ApproveUndo)
        .rollback(&plan.case_id, "test")
        .await
        .expect("rollback");
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(
        user_policy(clients, "ivan", "AWSRevokeOlderSessions").await,
        None
    );

    // A policy of that name that was there before comes back exactly.
    let previous = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}).to_string();
    clients
        .iam
        .put_user_policy()
        .user_name("ivan")
        .policy_name("AWSRevokeOlderSessions")
        .policy_document(&previous)
        .send()
        .await
        .expect("PutUserPolicy");
    let mut log = Transcript::default();
    let (pre, outcome) = run_step(&actions, &plan, "revoke", &mut log)
        .await
        .expect("revoke");
    assert_eq!(pre["previous-document"], json!(previous));
    assert_eq!(outcome["replaced-previous-policy"], json!(true));
    undo_step(&actions, &plan, "revoke", &pre, Some(&outcome), &mut log)
        .await
        .expect("undo");
    assert_eq!(
        user_policy(clients, "ivan", "AWSRevokeOlderSessions").await,
        Some(previous)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn assumed_role_key_revokes_the_role_sessions() {
    let aws = emulator().await;
    let clients = aws.clients();
    create_role(clients, "web-role").await;
    let finding = access_key_finding(
        "f-asia",
        "ASIAEXAMPLETEMPORARY",
        Some("web-role"),
        "AssumedRole",
    );
    let plan = make_plan(
        &finding,
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "rotate", "action": "rotate-access-key"},
            {"id": "revoke", "action": "revoke-role-sessions"}
        ]),
    );
    let actions = actions(&aws, "asia");
    let mut log = Transcript::default();

    // IAM cannot deactivate or rotate an STS key: a clear refusal pointing the right way.
    for id in ["deactivate", "rotate"] {
        let err = run_step(&actions, &plan, id, &mut log)
            .await
            .expect_err("ASIA refused");
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains("revoke-role-sessions"), "{err}");
    }

    let revoke = plan.step("revoke").expect("revoke");
    assert!(revoke.approval.required);
    assert!(matches!(&revoke.target, Target::Role { role_name: Some(r), .. } if r == "web-role"));
    let (pre, out) = run_step(&actions, &plan, "revoke", &mut log)
        .await
        .expect("revoke");
    assert_eq!(pre["previous-document"], Value::Null);
    assert_eq!(out["replaced-previous-policy"], false);
    let document = role_policy(clients, "web-role", "AWSRevokeOlderSessions")
        .await
        .expect("policy present");
    let cutoff = token_issue_time(&document).expect("aws:TokenIssueTime condition");
    assert_eq!(out["token-issue-time"], json!(cutoff));
    let doc: Value = serde_json::from_str(&document).expect("JSON");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert_eq!(doc["Statement"][0]["Action"], "*");
    undo_step(&actions, &plan, "revoke", &pre, Some(&out), &mut log)
        .await
        .expect("undo");
    assert_eq!(
        role_policy(clients, "web-role", "AWSRevokeOlderSessions").await,
        None
    );
    // Twice is harmless.
    undo_step(&actions, &plan, "revoke", &pre, Some(&out), &mut log)
        .await
        .expect("undo again");

    // A role that does not exist: NotFound naming it, at pre-state, before any change.
    let missing = make_plan(
        &access_key_finding(
            "f-no-role",
            "ASIAEXAMPLENOROLE000",
            Some("no-such-role"),
            "AssumedRole",
        ),
        json!([{"id": "revoke", "action": "revoke-role-sessions"}]),
    );
    let err = run_step(&actions, &missing, "revoke", &mut log)
        .await
        .expect_err("missing role");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-role"), "{err}");

    // A policy of that name already there, with other content: replaced, then restored exactly.
    let original = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Effect\": \"Deny\", \"Action\": \"s3:DeleteBucket\", \"Resource\": \"*\"}\n  ]\n}";
    clients
        .iam
        .put_role_policy()
        .role_name("web-role")
        .policy_name("AWSRevokeOlderSessions")
        .policy_document(original)
        .send()
        .await
        .expect("PutRolePolicy");
    let (pre, out) = run_step(&actions, &plan, "revoke", &mut log)
        .await
        .expect("revoke over existing policy");
    assert_eq!(pre["previous-document"], json!(original));
    assert_eq!(out["replaced-previous-policy"], true);
    assert!(
        token_issue_time(
            &role_policy(clients, "web-role", "AWSRevokeOlderSessions")
                .await
                .expect("policy")
        )
        .is_some()
    );
    let step = plan.step("revoke").expect("step");
    assert!(
        actions
            .describe_apply(&plan, step, &pre)
            .join(" ")
            .contains("replaces")
    );
    undo_step(&actions, &plan, "revoke", &pre, Some(&out), &mut log)
        .await
        .expect("undo");
    assert_eq!(
        role_policy(clients, "web-role", "AWSRevokeOlderSessions")
            .await
            .as_deref(),
        Some(original)
    );
}

#[tokio::test]
async fn instance_profile_role_is_resolved_at_run_time() {
    let aws = emulator().await;
    let clients = aws.clients();
    create_role(clients, "app-role").await;
    let profile = clients
        .iam
        .create_instance_profile()
        .instance_profile_name("app-profile")
        .send()
        .await
        .expect("CreateInstanceProfile");
    let profile_arn = profile
        .instance_profile()
        .map(|p| p.arn().to_string())
        .expect("profile arn");
    clients
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name("app-profile")
        .role_name("app-role")
        .send()
        .await
        .expect("AddRoleToInstanceProfile");
    let run = clients
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    let instance_id = run.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();
    let association = clients
        .ec2
        .associate_iam_instance_profile()
        .instance_id(&instance_id)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(&profile_arn)
                .build(),
        )
        .send()
        .await
        .expect("AssociateIamInstanceProfile");
    let association_id = association
        .iam_instance_profile_association()
        .and_then(|a| a.association_id())
        .expect("association id")
        .to_string();

    let finding = instance_finding("f-instance", &instance_id, &profile_arn);
    let plan = make_plan(
        &finding,
        json!([{"id": "revoke", "action": "revoke-role-sessions"}]),
    );
    assert!(matches!(
        &plan.step("revoke").expect("step").target,
        Target::Role {
            role_name: None,
            instance_id: Some(_),
            ..
        }
    ));
    let actions = actions(&aws, "instance");
    let mut log = Transcript::default();
    let (pre, out) = run_step(&actions, &plan, "revoke", &mut log)
        .await
        .expect("revoke");
    assert_eq!(pre["role-name"], "app-role");
    assert_eq!(pre["role-source"]["from"], "instance-profile");
    assert_eq!(pre["role-source"]["association-id"], json!(association_id));
    assert!(
        token_issue_time(
            &role_policy(clients, "app-role", "AWSRevokeOlderSessions")
                .await
                .expect("policy")
        )
        .is_some()
    );
    undo_step(&actions, &plan, "revoke", &pre, Some(&out), &mut log)
        .await
        .expect("undo");
    assert_eq!(
        role_policy(clients, "app-role", "AWSRevokeOlderSessions").await,
        None
    );

    // After a detach-instance-profile step the association is gone: the finding's profile still names the role.
    clients
        .ec2
        .disassociate_iam_instance_profile()
        .association_id(&association_id)
        .send()
        .await
        .expect("DisassociateIamInstanceProfile");
    let step = plan.step("revoke").expect("step");
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state after detach");
    assert_eq!(pre["role-name"], "app-role");
    assert_eq!(pre["role-source"]["association-id"], Value::Null);
}

#[tokio::test]
async fn quarantine_user_and_delete_login_profile() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "dave", 1).await;
    clients
        .iam
        .create_login_profile()
        .user_name("dave")
        .password("Correct-Horse-Battery-9")
        .send()
        .await
        .expect("CreateLoginProfile");
    let finding = access_key_finding("f-user", &keys[0], Some("dave"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "quarantine", "action": "quarantine-user"},
            {"id": "password", "action": "delete-login-profile"}
        ]),
    );
    let actions = actions(&aws, "user");
    let mut log = Transcript::default();

    let (pre, out) = run_step(&actions, &plan, "quarantine", &mut log)
        .await
        .expect("quarantine");
    let policy = user_policy(clients, "dave", "CordonQuarantineDenyAll")
        .await
        .expect("deny-all present");
    let doc: Value = serde_json::from_str(&policy).expect("JSON");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert_eq!(doc["Statement"][0]["Action"], "*");
    assert_eq!(doc["Statement"][0]["Resource"], "*");
    undo_step(&actions, &plan, "quarantine", &pre, Some(&out), &mut log)
        .await
        .expect("undo quarantine");
    assert_eq!(
        user_policy(clients, "dave", "CordonQuarantineDenyAll").await,
        None
    );

    // With a previous policy of the same name, undo puts it back.
    let previous = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;
    clients
        .iam
        .put_user_policy()
        .user_name("dave")
        .policy_name("CordonQuarantineDenyAll")
        .policy_document(previous)
        .send()
        .await
        .expect("PutUserPolicy");
    let (pre, out) = run_step(&actions, &plan, "quarantine", &mut log)
        .await
        .expect("quarantine over existing");
    assert_eq!(out["replaced-previous-policy"], true);
    undo_step(&actions, &plan, "quarantine", &pre, Some(&out), &mut log)
        .await
        .expect("undo quarantine");
    assert_eq!(
        user_policy(clients, "dave", "CordonQuarantineDenyAll")
            .await
            .as_deref(),
        Some(previous)
    );

    // The console password: deleted, and its undo refused.
    let step = plan.step("password").expect("step");
    assert!(step.approval.required);
    let (pre, out) = run_step(&actions, &plan, "password", &mut log)
        .await
        .expect("delete login profile");
    assert!(pre["login-profile"].is_object(), "{pre}");
    assert_eq!(out["deleted"], true);
    let gone = clients
        .iam
        .get_login_profile()
        .user_name("dave")
        .send()
        .await;
    assert!(gone.is_err(), "login profile still there");
    let err = actions
        .undo(&plan, step, &pre, Some(&out))
        .await
        .expect_err("undo refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("cannot be restored"), "{err}");
    // A second run finds no password and changes nothing; its undo has nothing to do.
    let (pre, out) = run_step(&actions, &plan, "password", &mut log)
        .await
        .expect("delete login profile again");
    assert_eq!(pre["login-profile"], Value::Null);
    assert_eq!(out["deleted"], false);
    undo_step(&actions, &plan, "password", &pre, Some(&out), &mut log)
        .await
        .expect("nothing to undo");
}

#[tokio::test]
async fn missing_user_or_key_is_not_found_and_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    create_user(clients, "erin", 1).await;
    let before = key_list(clients, "erin").await;
    let actions = actions(&aws, "missing");
    let steps = json!([
        {"id": "deactivate", "action": "deactivate-access-key"},
        {"id": "rotate", "action": "rotate-access-key"},
        {"id": "quarantine", "action": "quarantine-user"},
        {"id": "password", "action": "delete-login-profile"}
    ]);
    let mut log = Transcript::default();
    clients.calls.reset();

    let ghost = make_plan(
        &access_key_finding("f-ghost", "AKIAGHOSTGHOSTGHOST1", Some("ghost"), "IAMUser"),
        steps.clone(),
    );
    for id in ["deactivate", "rotate", "quarantine", "password"] {
        let err = run_step(&actions, &ghost, id, &mut log)
            .await
            .expect_err("missing user");
        assert_eq!(err.kind, ErrorKind::NotFound, "{id}: {err}");
        assert!(err.to_string().contains("ghost"), "{id}: {err}");
    }

    let missing_key = make_plan(
        &access_key_finding(
            "f-missing-key",
            "AKIAMISSINGMISSING12",
            Some("erin"),
            "IAMUser",
        ),
        steps,
    );
    for id in ["deactivate", "rotate"] {
        let err = run_step(&actions, &missing_key, id, &mut log)
            .await
            .expect_err("missing key");
        assert_eq!(err.kind, ErrorKind::NotFound, "{id}: {err}");
        assert!(
            err.to_string().contains("AKIAMISSINGMISSING12"),
            "{id}: {err}"
        );
        assert_eq!(err.resource, "AKIAMISSINGMISSING12");
    }
    assert_eq!(
        clients.calls.mutating_total(),
        0,
        "{:?}",
        clients.calls.snapshot()
    );
    assert_eq!(key_list(clients, "erin").await, before);
    assert_eq!(secret_count(clients).await, 0);
}

/// A `MakeWriter` into a shared buffer, for capturing `tracing` output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture(buffer: &Captured) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

#[tokio::test]
async fn the_secret_access_key_appears_nowhere() {
    let aws = emulator().await;
    let clients = aws.clients();
    let (_, keys) = create_user(clients, "heidi", 1).await;
    let finding = access_key_finding("f-secret-scan", &keys[0], Some("heidi"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "rotate", "action": "rotate-access-key"}
        ]),
    );
    let actions = actions(&aws, "secret-scan");
    let step = plan.step("rotate").expect("step");
    let mut log = Transcript::default();
    let traces = Captured::default();

    // Everything the handlers do runs under a TRACE subscriber (the SDK's own events included).
    let guard = capture(&traces);
    tracing::trace!("capture started");
    let (deactivate_pre, deactivate_out) = run_step(&actions, &plan, "deactivate", &mut log)
        .await
        .expect("deactivate");
    let (pre, out) = run_step(&actions, &plan, "rotate", &mut log)
        .await
        .expect("rotate");
    log.0.push(format!("{out:?}"));
    let again = actions.apply(&plan, step, &pre).await.expect("re-apply");
    log.json(&again);
    actions
        .verify(&plan, step, &pre, &again)
        .await
        .expect("verify");
    // Another case cannot make a third key: its refusal must not carry the secret either.
    let other_case = make_plan(
        &access_key_finding("f-secret-scan-2", &keys[0], Some("heidi"), "IAMUser"),
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    let err = run_step(&actions, &other_case, "rotate", &mut log)
        .await
        .expect_err("two keys");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    drop(guard);

    // Read the secret outside the capture (the test's own read must not pollute it).
    let (stored_id, secret) = stored_key(clients, out["secret-arn"].as_str().expect("arn")).await;
    assert_eq!(stored_id, out["new-access-key-id"].as_str().expect("id"));
    assert!(secret.len() >= 20, "implausible secret");

    let guard = capture(&traces);
    undo_step(&actions, &plan, "rotate", &pre, Some(&out), &mut log)
        .await
        .expect("undo rotate");
    undo_step(
        &actions,
        &plan,
        "deactivate",
        &deactivate_pre,
        Some(&deactivate_out),
        &mut log,
    )
    .await
    .expect("undo deactivate");
    drop(guard);

    let traces = traces.text();
    // The SDK's own TRACE events for the two calls that carry the secret were captured.
    assert!(
        traces.contains("IAM.CreateAccessKey{"),
        "SDK events for CreateAccessKey not captured"
    );
    assert!(
        traces.contains("Secrets Manager.CreateSecret{"),
        "SDK events for CreateSecret not captured"
    );
    assert!(
        traces.contains("capture started"),
        "tracing capture did not work"
    );
    assert!(
        traces.contains("replacement key stored in Secrets Manager"),
        "handler events not captured"
    );
    assert!(
        traces.lines().count() > 20,
        "too little TRACE output to be meaningful:\n{traces}"
    );
    assert!(
        !traces.contains(&secret),
        "the secret access key reached the logs"
    );
    let produced = log.text();
    assert!(!produced.is_empty());
    assert!(
        !produced.contains(&secret),
        "the secret access key reached a pre-state, outcome or error"
    );
    // Its JSON-escaped form too (a `/` in the secret may be escaped in JSON).
    assert!(!produced.contains(&secret.replace('/', "\\/")));
}
