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
use cordon_core::executor::{Actions, ErrorKind, Executor, Progress};
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{Plan, Target};
use cordon_gameday::{EnvironmentSpec, Fixture};
use cordon_tests::{
    ACCOUNT_ID, ApproveAll, ApproveUndo, EmulatorGuard, Lifecycle, attached_user_policies,
    create_quarantine_policy, emulator, local_actions, plan_steps,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Environments, findings, plans

/// Builds a test's users, roles and instances (an environment spec as JSON).
async fn environment(aws: &EmulatorGuard, spec: Value) -> Fixture {
    let spec: EnvironmentSpec = serde_json::from_value(spec).expect("environment spec");
    cordon_gameday::provision(aws.clients(), &spec)
        .await
        .expect("provision")
}

/// Users with that many access keys each.
async fn users(aws: &EmulatorGuard, users: &[(&str, u8)]) -> Fixture {
    let users: Vec<Value> = users
        .iter()
        .map(|(name, keys)| json!({"name": name, "access-keys": keys}))
        .collect();
    environment(aws, json!({ "users": users })).await
}

/// A finding `id` that `key_id` was used from outside AWS, naming the user
/// (or role) as GuardDuty does.
fn key_finding(
    env: &Fixture,
    id: &str,
    key_id: &str,
    user: Option<&str>,
    user_type: &str,
) -> String {
    let mut finding = env.key_finding(key_id, user, user_type);
    finding.id = Some(id.to_string());
    finding.detail().to_string()
}

fn make_plan(finding: &str, steps: Value) -> Plan {
    plan_steps(finding, "iam-test", steps)
}

// ---------------------------------------------------------------------------
// Everything the handlers produce, kept for the secret scan

#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    /// Every phase the lifecycle went through so far.
    fn record(&mut self, life: &Lifecycle<'_, AwsActions>) {
        self.0.push(life.produced());
    }

    fn text(&self) -> String {
        self.0.join("\n")
    }

    /// Panics if `secret` is anywhere in what was recorded.
    fn assert_free_of(&self, secret: &str) {
        assert!(
            !self.text().contains(secret),
            "the secret access key leaked"
        );
    }
}

// ---------------------------------------------------------------------------
// Emulator read-backs

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

/// The document of an inline policy (decoded: IAM, and the emulator,
/// return documents URL-encoded), or `None` when there is no such policy.
fn policy_document<E>(
    operation: &str,
    result: Result<String, aws_sdk_iam::error::SdkError<E>>,
) -> Option<String>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(document) => Some(decode_policy_document(&document)),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchEntity") => None,
        Err(e) => panic!("{operation}: {e:?}"),
    }
}

async fn role_policy(clients: &AwsClients, role: &str, policy: &str) -> Option<String> {
    let result = clients
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await
        .map(|out| out.policy_document().to_string());
    policy_document("GetRolePolicy", result)
}

async fn attach_policy(clients: &AwsClients, user: &str, arn: &str) {
    clients
        .iam
        .attach_user_policy()
        .user_name(user)
        .policy_arn(arn)
        .send()
        .await
        .expect("AttachUserPolicy");
}

async fn put_user_policy(clients: &AwsClients, user: &str, policy: &str, document: &str) {
    clients
        .iam
        .put_user_policy()
        .user_name(user)
        .policy_name(policy)
        .policy_document(document)
        .send()
        .await
        .expect("PutUserPolicy");
}

async fn user_policy(clients: &AwsClients, user: &str, policy: &str) -> Option<String> {
    let result = clients
        .iam
        .get_user_policy()
        .user_name(user)
        .policy_name(policy)
        .send()
        .await
        .map(|out| out.policy_document().to_string());
    policy_document("GetUserPolicy", result)
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
    let env = users(&aws, &[("alice", 1)]).await;
    let (user_arn, old) = (
        env.users["alice"].arn.clone(),
        env.users["alice"].access_keys[0].id.clone(),
    );
    let kms_key = clients.kms.create_key().send().await.expect("CreateKey");
    let kms_key_id = kms_key
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .expect("key id");
    let finding = key_finding(&env, "f-rotate", &old, Some("alice"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "rotate", "action": "rotate-access-key", "with": {"kms-key-id": kms_key_id}}
        ]),
    );
    assert!(!plan.step("rotate").expect("rotate").approval.required);
    let (actions, _) = local_actions(clients, "rotate");
    let before = key_list(clients, "alice").await;
    let mut log = Transcript::default();

    let mut deactivate = Lifecycle::new(&actions, &plan, "deactivate").counting(&clients.calls);
    let (deactivate_pre, deactivate_out) = deactivate.forward().await.expect("deactivate");
    let deactivate_calls = deactivate.calls();
    let mut rotate = Lifecycle::new(&actions, &plan, "rotate").counting(&clients.calls);
    let (_, rotate_out) = rotate.forward().await.expect("rotate");
    let rotate_calls = rotate.calls();
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
    log.record(&deactivate);
    log.record(&rotate);
    log.assert_free_of(&stored_secret);

    // Roll back in reverse order, as the executor does.
    let undone = rotate.rollback().await.expect("undo rotate");
    assert_eq!(undone["deleted-access-keys"], json!([new]));
    assert_eq!(undone["not-restored"], Value::Null);
    deactivate.rollback().await.expect("undo deactivate");
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
    let again = rotate.undo().await.expect("undo rotate again");
    assert_eq!(again["deleted-access-keys"], json!([]));
    deactivate.rollback().await.expect("undo deactivate again");
    assert_eq!(key_list(clients, "alice").await, before);
    log.record(&deactivate);
    log.record(&rotate);
    log.assert_free_of(&stored_secret);
}

#[tokio::test]
async fn deactivate_touches_only_the_named_key() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("frank", 2)]).await;
    let keys: Vec<String> = env.users["frank"]
        .access_keys
        .iter()
        .map(|k| k.id.clone())
        .collect();
    let finding = key_finding(&env, "f-only-named", &keys[1], Some("frank"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "deactivate", "action": "deactivate-access-key"}]),
    );
    let (actions, _) = local_actions(clients, "only-named");
    let mut life = Lifecycle::new(&actions, &plan, "deactivate");
    let (_, out) = life.forward().await.expect("deactivate");
    let expected = sorted(vec![pair(&keys[0], "Active"), pair(&keys[1], "Inactive")]);
    assert_eq!(key_list(clients, "frank").await, expected);
    assert_eq!(out["other-keys-untouched"], json!([keys[0]]));
    // Applying again (a resumed case) changes nothing more.
    life.apply().await.expect("re-apply");
    assert_eq!(key_list(clients, "frank").await, expected);
    // Someone else deactivating the other key is caught by verification.
    set_status(clients, "frank", &keys[0], "Inactive").await;
    let err = life
        .verify_outcome(&out)
        .await
        .expect_err("other key changed");
    assert_eq!(err.kind, ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains(&keys[0]), "{err}");
    set_status(clients, "frank", &keys[0], "Active").await;
    life.undo_with(Some(&out)).await.expect("undo");
    life.verify_undone().await.expect("verify undone");
    assert_eq!(
        key_list(clients, "frank").await,
        sorted(vec![pair(&keys[0], "Active"), pair(&keys[1], "Active")])
    );
    // The finding need not name the user: IAM says whose key it is.
    let finding = key_finding(&env, "f-no-user", &keys[1], None, "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "deactivate", "action": "deactivate-access-key"}]),
    );
    let (pre, _) = Lifecycle::new(&actions, &plan, "deactivate")
        .forward()
        .await
        .expect("deactivate without user name");
    assert_eq!(pre["user-name"], "frank");
}

#[tokio::test]
async fn two_keys_are_refused_unless_the_other_is_inactive_and_deletion_is_allowed() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("bob", 2)]).await;
    let keys = &env.users["bob"].access_keys;
    let (named, other) = (keys[0].id.clone(), keys[1].id.clone());
    let finding = key_finding(&env, "f-two-keys", &named, Some("bob"), "IAMUser");
    let (actions, _) = local_actions(clients, "two-keys");
    let mut log = Transcript::default();
    let before = key_list(clients, "bob").await;

    // Default policy: refused, nothing changed, no secret.
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    clients.calls.reset();
    let mut refused = Lifecycle::new(&actions, &plan, "rotate");
    let err = refused.forward().await.expect_err("refused");
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
    refused.pre_state().await.expect("pre-state");
    refused
        .undo_without_outcome()
        .await
        .expect("undo refused step");
    refused.verify_undone().await.expect("verify undone");
    assert_eq!(key_list(clients, "bob").await, before);
    log.record(&refused);

    // Deletion allowed but the other key is active: still refused.
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key", "with": {"when-two-keys": "delete-inactive-other"}}]),
    );
    assert!(
        plan.step("rotate").expect("rotate").approval.required,
        "irreversible rotation needs approval"
    );
    let mut rotate = Lifecycle::new(&actions, &plan, "rotate");
    let err = rotate.forward().await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(
        err.message.contains(&other) && err.message.contains("Active"),
        "{err}"
    );
    assert_eq!(key_list(clients, "bob").await, before);
    assert_eq!(secret_count(clients).await, 0);

    // The other key inactive: it is deleted, and recorded (id and status only).
    set_status(clients, "bob", &other, "Inactive").await;
    let (_, out) = rotate.forward().await.expect("rotate");
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
    let undone = rotate.rollback().await.expect("undo");
    let note = undone["not-restored"]
        .as_str()
        .expect("irreversibility noted");
    assert!(note.contains(&other), "{note}");
    assert_eq!(key_list(clients, "bob").await, vec![pair(&named, "Active")]);
    log.record(&rotate);
    log.assert_free_of(&stored_secret);
}

#[tokio::test]
async fn rotate_recovers_from_interrupted_attempts() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("grace", 1)]).await;
    let key = env.users["grace"].access_keys[0].id.clone();
    let finding = key_finding(&env, "f-interrupted", &key, Some("grace"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    let (actions, _) = local_actions(clients, "interrupted");
    let mut life = Lifecycle::new(&actions, &plan, "rotate");
    life.pre_state().await.expect("pre-state");

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
    let refused = life
        .apply()
        .await
        .expect_err("a key the step did not create counts against the limit");
    assert_eq!(refused.kind, ErrorKind::Refused, "{refused}");
    assert!(refused.message.contains(&orphan), "{refused}");
    assert_eq!(key_list(clients, "grace").await.len(), 2);
    // The interrupted attempt journaled `creating-key` before CreateAccessKey:
    // the re-apply knows the orphan is its own, unstored, and deletes it.
    let journaled = Progress::replay(vec![
        json!({"phase": "creating-key", "existing-keys": [key]}),
    ]);
    let out = actions
        .apply_with_progress(&plan, life.step(), life.pre(), &journaled)
        .await
        .expect("apply");
    assert_eq!(out["discarded-unstored-keys"], json!([orphan]));
    life.verify_outcome(&out).await.expect("verify");
    let new = out["new-access-key-id"].as_str().expect("new").to_string();

    // A crash after CreateSecret, before the outcome was journaled: re-apply reuses it.
    let again = life.apply().await.expect("re-apply");
    assert_eq!(again["reused-existing-secret"], true);
    assert_eq!(again["new-access-key-id"], json!(new));
    assert_eq!(again["secret-arn"], out["secret-arn"]);
    assert_eq!(key_list(clients, "grace").await.len(), 2);

    // Undo without an outcome finds the key (not in the pre-state) and the secret by name.
    let undone = life
        .undo_without_outcome()
        .await
        .expect("undo without outcome");
    assert_eq!(undone["deleted-access-keys"], json!([new]));
    life.verify_undone().await.expect("verify undone");
    assert_eq!(key_list(clients, "grace").await, vec![pair(&key, "Active")]);

    // After a rollback the secret is scheduled for deletion: a re-apply says so instead of guessing.
    let err = life
        .apply()
        .await
        .expect_err("secret scheduled for deletion");
    assert_eq!(err.kind, ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("restore-secret"), "{err}");
}

#[tokio::test]
async fn an_operators_key_made_after_a_refused_rotation_survives_the_resume() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("heidi", 2)]).await;
    let keys = &env.users["heidi"].access_keys;
    let (named, other) = (keys[0].id.clone(), keys[1].id.clone());
    let finding = key_finding(&env, "f-operator", &named, Some("heidi"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([{"id": "rotate", "action": "rotate-access-key", "on-failure": "stop", "retry": {"max-attempts": 1}}]),
    );
    let (actions, dir) = local_actions(clients, "operator");
    let journal = LocalJournal::new(&dir);
    let executor = Executor::new(&actions, &journal, &ApproveAll);

    // Two keys: rotation refuses, changing nothing.
    let report = executor.run(&plan, &finding).await.expect("run");
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(key_list(clients, "heidi").await.len(), 2);

    // An operator makes room by hand and creates a key of their own.
    clients
        .iam
        .delete_access_key()
        .user_name("heidi")
        .access_key_id(&other)
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
        sorted(vec![pair(&named, "Active"), pair(&operators, "Active")]),
        "the operator's key survives"
    );
    assert!(
        report.message.contains(&operators) && report.message.contains("not created by cordon"),
        "{}",
        report.message
    );
    assert_eq!(secret_count(clients).await, 0);
}

#[tokio::test]
async fn an_iam_users_temporary_key_revokes_that_users_sessions_until_an_approved_rollback() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("ivan", 1)]).await;
    // GetSessionToken credentials: an ASIA key whose user type is IAMUser.
    let finding = key_finding(
        &env,
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
    let (actions, dir) = local_actions(clients, "user-sessions");
    let journal = LocalJournal::new(&dir);

    let before = time::OffsetDateTime::now_utc();
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
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
    let kept = Executor::new(&actions, &journal, &ApproveAll)
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
    let mut life = Lifecycle::new(&actions, &plan, "revoke");
    let (pre, outcome) = life.forward().await.expect("revoke");
    assert_eq!(pre["previous-document"], json!(previous));
    assert_eq!(outcome["replaced-previous-policy"], json!(true));
    life.rollback().await.expect("undo");
    assert_eq!(
        user_policy(clients, "ivan", "AWSRevokeOlderSessions").await,
        Some(previous)
    );
}

#[tokio::test]
async fn assumed_role_key_revokes_the_role_sessions() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = environment(&aws, json!({"roles": [{"name": "web-role"}]})).await;
    let finding = key_finding(
        &env,
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
    let (actions, _) = local_actions(clients, "asia");

    // IAM cannot deactivate or rotate an STS key: a clear refusal pointing the right way.
    for id in ["deactivate", "rotate"] {
        let err = Lifecycle::new(&actions, &plan, id)
            .forward()
            .await
            .expect_err("ASIA refused");
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains("revoke-role-sessions"), "{err}");
    }

    let revoke = plan.step("revoke").expect("revoke");
    assert!(revoke.approval.required);
    assert!(matches!(&revoke.target, Target::Role { role_name: Some(r), .. } if r == "web-role"));
    let mut life = Lifecycle::new(&actions, &plan, "revoke");
    let (pre, out) = life.forward().await.expect("revoke");
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
    life.rollback().await.expect("undo");
    assert_eq!(
        role_policy(clients, "web-role", "AWSRevokeOlderSessions").await,
        None
    );
    // Twice is harmless.
    life.rollback().await.expect("undo again");

    // A role that does not exist: NotFound naming it, at pre-state, before any change.
    let missing = make_plan(
        &key_finding(
            &env,
            "f-no-role",
            "ASIAEXAMPLENOROLE000",
            Some("no-such-role"),
            "AssumedRole",
        ),
        json!([{"id": "revoke", "action": "revoke-role-sessions"}]),
    );
    let err = Lifecycle::new(&actions, &missing, "revoke")
        .forward()
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
    let mut life = Lifecycle::new(&actions, &plan, "revoke");
    let (pre, out) = life.forward().await.expect("revoke over existing policy");
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
    assert!(life.dry_run().join(" ").contains("replaces"));
    life.rollback().await.expect("undo");
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
    let env = environment(
        &aws,
        json!({
            "vpcs": [{"name": "vpc", "cidr": "10.30.0.0/16",
                      "subnets": [{"name": "subnet", "cidr": "10.30.1.0/24"}]}],
            "roles": [{"name": "app-role"}],
            "instance-profiles": [{"name": "app-profile", "role": "app-role"}],
            "instances": [{"name": "app", "subnet": "subnet", "image-id": "ami-12c6146b",
                           "instance-profile": "app-profile"}]
        }),
    )
    .await;
    let instance_id = env.instances["app"].id.clone();
    let associations = clients
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-id")
                .values(&instance_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeIamInstanceProfileAssociations");
    let association_id = associations.iam_instance_profile_associations()[0]
        .association_id()
        .expect("association id")
        .to_string();

    let mut finding = env.instance_finding("app").expect("instance finding");
    finding.id = Some("f-instance".to_string());
    let plan = make_plan(
        &finding.detail().to_string(),
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
    let (actions, _) = local_actions(clients, "instance");
    let mut life = Lifecycle::new(&actions, &plan, "revoke");
    let (pre, _) = life.forward().await.expect("revoke");
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
    life.rollback().await.expect("undo");
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
    let pre = life.pre_state().await.expect("pre-state after detach");
    assert_eq!(pre["role-name"], "app-role");
    assert_eq!(pre["role-source"]["association-id"], Value::Null);
}

#[tokio::test]
async fn quarantine_user_and_delete_login_profile() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = environment(
        &aws,
        json!({"users": [{"name": "dave", "access-keys": 1, "console-password": true}]}),
    )
    .await;
    let key = env.users["dave"].access_keys[0].id.clone();
    let finding = key_finding(&env, "f-user", &key, Some("dave"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "quarantine", "action": "quarantine-user"},
            {"id": "password", "action": "delete-login-profile"}
        ]),
    );
    let (actions, _) = local_actions(clients, "user");

    // Without the managed policy: one line naming it and how to create it,
    // and nothing changed.
    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:policy/cordon/CordonQuarantineDenyAll");
    let mut quarantine = Lifecycle::new(&actions, &plan, "quarantine");
    let err = quarantine
        .forward()
        .await
        .expect_err("no managed policy yet");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line}");
    for part in [
        arn.as_str(),
        "does not exist",
        "cordon policy --quarantine-policy",
        "aws iam create-policy --path /cordon/ --policy-name CordonQuarantineDenyAll",
    ] {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
    assert!(attached_user_policies(clients, "dave").await.is_empty());

    assert_eq!(create_quarantine_policy(clients).await, arn);
    let (pre, out) = quarantine.forward().await.expect("quarantine");
    assert_eq!(
        pre,
        json!({"user-name": "dave", "policy-arn": arn, "attached-before": false})
    );
    assert_eq!(out["newly-attached"], true);
    assert_eq!(
        attached_user_policies(clients, "dave").await,
        [arn.as_str()]
    );
    assert_eq!(
        user_policy(clients, "dave", "CordonQuarantineDenyAll").await,
        None
    );
    let undone = quarantine.rollback().await.expect("undo quarantine");
    assert_eq!(undone["detached"], true);
    assert!(attached_user_policies(clients, "dave").await.is_empty());

    // Attached before the step (another case holds it, or a human put it
    // there): undo leaves it attached.
    attach_policy(clients, "dave", &arn).await;
    let (pre, out) = quarantine.forward().await.expect("quarantine again");
    assert_eq!(pre["attached-before"], true);
    assert_eq!(out["newly-attached"], false);
    let undone = quarantine.rollback().await.expect("undo keeps it");
    assert_eq!(undone["detached"], false);
    assert_eq!(
        attached_user_policies(clients, "dave").await,
        [arn.as_str()]
    );
    clients
        .iam
        .detach_user_policy()
        .user_name("dave")
        .policy_arn(&arn)
        .send()
        .await
        .expect("DetachUserPolicy");

    // A journal of the inline-policy version rolls back as that version did:
    // its deny-all inline policy goes, a policy it replaced comes back.
    let deny_all = cordon_aws::actions::iam::user::deny_all_document();
    let previous = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;
    for before in [None, Some(previous)] {
        put_user_policy(clients, "dave", "CordonQuarantineDenyAll", &deny_all).await;
        let mut old = Lifecycle::new(&actions, &plan, "quarantine");
        old.set_pre_state(json!({
            "user-name": "dave",
            "policy-name": "CordonQuarantineDenyAll",
            "previous-document": before
        }));
        let old_outcome = json!({
            "user-name": "dave",
            "policy-name": "CordonQuarantineDenyAll",
            "replaced-previous-policy": before.is_some()
        });
        old.verify_outcome(&old_outcome)
            .await
            .expect("the old quarantine verifies");
        assert_eq!(
            old.dry_run(),
            ["(no call: user dave was prepared by the inline-policy version; roll the case back)"]
        );
        let err = old
            .apply()
            .await
            .expect_err("an old prepared step is not applied");
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
        let undone = old
            .undo_with(Some(&old_outcome))
            .await
            .expect("undo of the inline quarantine");
        let restored = if before.is_some() {
            "previous-document"
        } else {
            "no-policy"
        };
        assert_eq!(undone["restored"], restored, "{undone}");
        old.verify_undone()
            .await
            .expect("back at the old pre-state");
        assert_eq!(
            user_policy(clients, "dave", "CordonQuarantineDenyAll")
                .await
                .as_deref(),
            before
        );
    }
    assert!(attached_user_policies(clients, "dave").await.is_empty());

    // The console password: deleted, and its undo refused.
    let mut password = Lifecycle::new(&actions, &plan, "password");
    assert!(password.step().approval.required);
    let (pre, out) = password.forward().await.expect("delete login profile");
    assert!(pre["login-profile"].is_object(), "{pre}");
    assert_eq!(out["deleted"], true);
    let gone = clients
        .iam
        .get_login_profile()
        .user_name("dave")
        .send()
        .await;
    assert!(gone.is_err(), "login profile still there");
    let err = password.undo().await.expect_err("undo refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("cannot be restored"), "{err}");
    // A second run finds no password and changes nothing; its undo has nothing to do.
    let (pre, out) = password
        .forward()
        .await
        .expect("delete login profile again");
    assert_eq!(pre["login-profile"], Value::Null);
    assert_eq!(out["deleted"], false);
    password.rollback().await.expect("nothing to undo");
}

#[tokio::test]
async fn missing_user_or_key_is_not_found_and_changes_nothing() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = users(&aws, &[("erin", 1)]).await;
    let before = key_list(clients, "erin").await;
    let (actions, _) = local_actions(clients, "missing");
    let steps = json!([
        {"id": "deactivate", "action": "deactivate-access-key"},
        {"id": "rotate", "action": "rotate-access-key"},
        {"id": "quarantine", "action": "quarantine-user"},
        {"id": "password", "action": "delete-login-profile"}
    ]);
    clients.calls.reset();

    let ghost = make_plan(
        &key_finding(
            &env,
            "f-ghost",
            "AKIAGHOSTGHOSTGHOST1",
            Some("ghost"),
            "IAMUser",
        ),
        steps.clone(),
    );
    for id in ["deactivate", "rotate", "quarantine", "password"] {
        let err = Lifecycle::new(&actions, &ghost, id)
            .forward()
            .await
            .expect_err("missing user");
        assert_eq!(err.kind, ErrorKind::NotFound, "{id}: {err}");
        assert!(err.to_string().contains("ghost"), "{id}: {err}");
    }

    let missing_key = make_plan(
        &key_finding(
            &env,
            "f-missing-key",
            "AKIAMISSINGMISSING12",
            Some("erin"),
            "IAMUser",
        ),
        steps,
    );
    for id in ["deactivate", "rotate"] {
        let err = Lifecycle::new(&actions, &missing_key, id)
            .forward()
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
    let env = users(&aws, &[("heidi", 1)]).await;
    let key = env.users["heidi"].access_keys[0].id.clone();
    let finding = key_finding(&env, "f-secret-scan", &key, Some("heidi"), "IAMUser");
    let plan = make_plan(
        &finding,
        json!([
            {"id": "deactivate", "action": "deactivate-access-key"},
            {"id": "rotate", "action": "rotate-access-key"}
        ]),
    );
    let (actions, _) = local_actions(clients, "secret-scan");
    let mut log = Transcript::default();
    let traces = Captured::default();

    // Everything the handlers do runs under a TRACE subscriber (the SDK's own events included).
    let guard = capture(&traces);
    tracing::trace!("capture started");
    let mut deactivate = Lifecycle::new(&actions, &plan, "deactivate");
    deactivate.forward().await.expect("deactivate");
    let mut rotate = Lifecycle::new(&actions, &plan, "rotate");
    let (_, out) = rotate.forward().await.expect("rotate");
    log.0.push(format!("{out:?}"));
    rotate.apply().await.expect("re-apply");
    rotate.verify().await.expect("verify");
    // Another case cannot make a third key: its refusal must not carry the secret either.
    let other_case = make_plan(
        &key_finding(&env, "f-secret-scan-2", &key, Some("heidi"), "IAMUser"),
        json!([{"id": "rotate", "action": "rotate-access-key"}]),
    );
    let mut refused = Lifecycle::new(&actions, &other_case, "rotate");
    let err = refused.forward().await.expect_err("two keys");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    log.record(&refused);
    drop(guard);

    // Read the secret outside the capture (the test's own read must not pollute it).
    let (stored_id, secret) = stored_key(clients, out["secret-arn"].as_str().expect("arn")).await;
    assert_eq!(stored_id, out["new-access-key-id"].as_str().expect("id"));
    assert!(secret.len() >= 20, "implausible secret");

    let guard = capture(&traces);
    rotate.undo_with(Some(&out)).await.expect("undo rotate");
    rotate.verify_undone().await.expect("verify undone");
    deactivate.rollback().await.expect("undo deactivate");
    drop(guard);
    log.record(&deactivate);
    log.record(&rotate);

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
