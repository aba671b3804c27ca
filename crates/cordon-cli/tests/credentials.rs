//! Compromised credentials end to end through the `cordon` binary against the
//! emulator: approval from a second process, refusal, session revocation for
//! temporary keys, and no secret in any byte a run writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use cordon_gameday::{EnvironmentSpec, Fixture};
use cordon_tests::{
    ACCOUNT_ID, EmulatorGuard, attached_user_policies, create_quarantine_policy, emulator,
};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cordon-cred-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cordon(aws: &EmulatorGuard, state: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .envs(aws.env())
        .env("CORDON_STATE_DIR", state)
        .env("CORDON_PLAYBOOKS", repo().join("playbooks"))
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cordon runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the test's users and roles with the Game Day fixture builder.
async fn environment(aws: &EmulatorGuard, spec: Value) -> Fixture {
    let spec: EnvironmentSpec = serde_json::from_value(spec).unwrap();
    cordon_gameday::provision(aws.clients(), &spec)
        .await
        .unwrap()
}

/// A key finding `finding_id` for `user` and `key_id` (AKIA: IAMUser; ASIA:
/// AssumedRole with `user` as the role), written to a file.
fn key_finding(
    env: &Fixture,
    dir: &Path,
    key_id: &str,
    user: &str,
    user_type: &str,
    finding_id: &str,
) -> PathBuf {
    let mut finding = env.key_finding(key_id, Some(user), user_type);
    finding.id = Some(finding_id.to_string());
    let path = dir.join(format!("{finding_id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&finding.detail()).unwrap()).unwrap();
    path
}

/// A user with one access key, in an account holding cordon's managed
/// quarantine policy; the fixture and the key's id.
async fn user_with_key(aws: &EmulatorGuard, user: &str) -> (Fixture, String) {
    let env = environment(aws, json!({"users": [{"name": user, "access-keys": 1}]})).await;
    create_quarantine_policy(aws.clients()).await;
    let key = env.users[user].access_keys[0].id.clone();
    (env, key)
}

fn case_id(out: &Output) -> String {
    let all = text(out);
    let start = all.find("case-").expect("output names the case");
    all[start..start + 25].to_string()
}

fn every_byte_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

#[tokio::test]
async fn approval_from_a_second_process_completes_the_case_and_no_secret_leaks() {
    let aws = emulator().await;
    let dir = temp_dir("approve");
    let state = dir.join("state");
    let (env, key_id) = user_with_key(&aws, "deploy-bot").await;
    let finding = key_finding(
        &env,
        &dir,
        &key_id,
        "deploy-bot",
        "IAMUser",
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
    );

    // Not a terminal, no --yes: the approval-gated step waits.
    let first = cordon(&aws, &state, &["run", finding.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    let case = case_id(&first);
    let keys = aws
        .clients()
        .iam
        .list_access_keys()
        .user_name("deploy-bot")
        .send()
        .await
        .unwrap();
    let old = keys
        .access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key_id.as_str()))
        .unwrap();
    assert_eq!(old.status().map(|s| s.as_str()), Some("Inactive"));
    assert!(
        attached_user_policies(aws.clients(), "deploy-bot")
            .await
            .is_empty(),
        "quarantine ran before approval"
    );

    // A second process approves; the case completes.
    let second = cordon(&aws, &state, &["approve", &case, "quarantine"]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(
        attached_user_policies(aws.clients(), "deploy-bot").await,
        [format!(
            "arn:aws:iam::{ACCOUNT_ID}:policy/cordon/CordonQuarantineDenyAll"
        )]
    );
    let journal =
        std::fs::read_to_string(state.join("cases").join(&case).join("journal.jsonl")).unwrap();
    let granted: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"]["event"] == "approval-granted")
        .collect();
    assert_eq!(granted.len(), 1);
    assert!(
        granted[0]["event"]["approver"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:"),
        "{}",
        granted[0]
    );

    // The rotated secret exists, and none of what the run wrote contains it.
    let secrets = aws
        .clients()
        .secretsmanager
        .list_secrets()
        .send()
        .await
        .unwrap();
    let arn = secrets.secret_list()[0].arn().unwrap().to_string();
    let value = aws
        .clients()
        .secretsmanager
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    let secret: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    let secret_key = secret["SecretAccessKey"].as_str().unwrap().to_string();
    assert!(secret_key.len() >= 20);
    let mut written = every_byte_under(&state);
    for out in [&first, &second] {
        written.extend(&out.stdout);
        written.extend(&out.stderr);
    }
    let haystack = String::from_utf8_lossy(&written);
    assert!(
        !haystack.contains(&secret_key),
        "the secret access key leaked into logs, output or the case directory"
    );
    assert!(
        haystack.contains(&arn),
        "the secret's ARN should be recorded"
    );

    // A rollback without approval undoes the rotation but keeps the
    // compromised key deactivated and the user quarantined (exit 1).
    let kept = cordon(&aws, &state, &["rollback", &case]);
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept));
    assert!(
        text(&kept).contains("rolled back except the steps whose undo needs approval"),
        "{}",
        text(&kept)
    );
    let keys = aws
        .clients()
        .iam
        .list_access_keys()
        .user_name("deploy-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.access_key_metadata().len(), 1, "the new key is gone");
    assert_eq!(
        keys.access_key_metadata()[0].status().map(|s| s.as_str()),
        Some("Inactive"),
        "the compromised key stays deactivated"
    );
    // Approved, the rollback re-arms the key and lifts the quarantine.
    let back = cordon(
        &aws,
        &state,
        &[
            "rollback",
            &case,
            "--approve-undo",
            "deactivate-key",
            "--approve-undo",
            "quarantine",
        ],
    );
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    let keys = aws
        .clients()
        .iam
        .list_access_keys()
        .user_name("deploy-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.access_key_metadata().len(), 1);
    assert_eq!(
        keys.access_key_metadata()[0].status().map(|s| s.as_str()),
        Some("Active")
    );
    let described = aws
        .clients()
        .secretsmanager
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    assert!(described.deleted_date().is_some());
}

#[tokio::test]
async fn refused_approval_leaves_the_step_unrun_and_journaled() {
    let aws = emulator().await;
    let dir = temp_dir("refuse");
    let state = dir.join("state");
    let (env, key_id) = user_with_key(&aws, "ci-runner").await;
    let finding = key_finding(
        &env,
        &dir,
        &key_id,
        "ci-runner",
        "IAMUser",
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
    );
    let first = cordon(&aws, &state, &["run", finding.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    let case = case_id(&first);
    let refused = cordon(
        &aws,
        &state,
        &[
            "approve",
            &case,
            "quarantine",
            "--refuse",
            "--reason",
            "owner is on it",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        attached_user_policies(aws.clients(), "ci-runner")
            .await
            .is_empty()
    );
    let status = cordon(&aws, &state, &["status", &case, "--output", "json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["status"], "stopped");
    let events: Vec<&str> = status["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"approval-refused"), "{events:?}");
    // A second decision on the same step is refused clearly.
    let again = cordon(&aws, &state, &["approve", &case, "quarantine"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already decided"), "{}", text(&again));
}

#[tokio::test]
async fn temporary_credentials_route_to_session_revocation_and_roll_back() {
    let aws = emulator().await;
    let dir = temp_dir("asia");
    let state = dir.join("state");
    let iam = &aws.clients().iam;
    let env = environment(&aws, json!({"roles": [{"name": "web-app-role"}]})).await;
    let finding = key_finding(
        &env,
        &dir,
        "ASIAEXAMPLE1234567890",
        "web-app-role",
        "AssumedRole",
        "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
    );

    let routed = cordon(&aws, &state, &["route", finding.to_str().unwrap()]);
    assert!(
        text(&routed).contains("playbook: iam-temporary-credentials"),
        "{}",
        text(&routed)
    );
    let planned = cordon(&aws, &state, &["plan", finding.to_str().unwrap()]);
    assert!(
        text(&planned).contains("every session of role web-app-role"),
        "{}",
        text(&planned)
    );

    let run = cordon(&aws, &state, &["run", finding.to_str().unwrap(), "--yes"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let policy = iam
        .get_role_policy()
        .role_name("web-app-role")
        .policy_name("AWSRevokeOlderSessions")
        .send()
        .await
        .unwrap();
    // IAM returns policy documents URL-encoded.
    let document: Value =
        serde_json::from_str(&cordon_tests::percent_decode(policy.policy_document())).unwrap();
    let statement = &document["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Action"], "*");
    assert!(
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string(),
        "{document}"
    );

    let case = case_id(&run);
    let kept = cordon(&aws, &state, &["rollback", &case]);
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept));
    let names = iam
        .list_role_policies()
        .role_name("web-app-role")
        .send()
        .await
        .unwrap();
    assert_eq!(
        names.policy_names().len(),
        1,
        "the session revocation stays without approval"
    );
    let back = cordon(
        &aws,
        &state,
        &["rollback", &case, "--approve-undo", "revoke-sessions"],
    );
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    let names = iam
        .list_role_policies()
        .role_name("web-app-role")
        .send()
        .await
        .unwrap();
    assert!(names.policy_names().is_empty());
}
