//! `capture-memory` (issue 15 item 4) against the emulator: the SSM command
//! and its parameters (the upload URL present, pointing at the case's key,
//! no credentials), the image cordon hashes by reading it back from S3, the
//! manifest entry, and a time budget that runs out while isolation goes on.
//!
//! The emulator's SSM records commands and reports them successful at once;
//! no agent runs them. So the test plays the host: it takes the URL out of
//! the command and PUTs an "image" there. What only a real account shows:
//! the agent running the tool, the acquisition and the upload itself.

use aws_sdk_ssm::Client as SsmClient;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::{EvidenceStore, sha256_hex};
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_core::executor::Executor;
use cordon_core::journal::CaseStatus;
use cordon_core::local_store::LocalJournal;
use cordon_gameday::provision;
use cordon_tests::{ApproveAll, Lifecycle, emulator, plan_steps, put_presigned, scratch_dir};
use serde_json::{Value, json};

const BUCKET: &str = "cordon-evidence-memory";

/// Actions writing evidence to an SSE-KMS, versioned evidence bucket.
async fn s3_actions(clients: &AwsClients, name: &str) -> (AwsActions, std::path::PathBuf) {
    evidence_bucket::init(clients, BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("evidence bucket");
    let dir = scratch_dir(name);
    let store = EvidenceStore::S3 {
        clients: Box::new(clients.clone()),
        bucket: BUCKET.to_string(),
        prefix: "cases/".to_string(),
        kms_key: None,
        retention: false,
        signing_key: None,
    };
    let actions = AwsActions::new(clients.clone(), store).with_case_root(Some(dir.clone()));
    (actions, dir)
}

/// The commands sent to `instance_id`, as the emulator recorded them.
async fn commands(clients: &AwsClients, instance_id: &str) -> Vec<Command> {
    clients
        .ssm
        .list_commands()
        .instance_id(instance_id)
        .send()
        .await
        .expect("ListCommands")
        .commands()
        .to_vec()
}

#[tokio::test]
async fn capture_memory_sends_a_presigned_upload_and_hashes_what_reached_s3() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(
        clients,
        &cordon_tests::one_instance_environment("10.60.0.0/16"),
    )
    .await
    .expect("provision");
    let instance_id = env.instances["app"].id.clone();
    let (actions, dir) = s3_actions(clients, "capture-memory").await;
    let finding = env
        .instance_finding("app")
        .expect("finding")
        .detail()
        .to_string();
    let plan = plan_steps(
        &finding,
        "memory",
        json!([
            {"id": "memory", "action": "capture-memory", "on-failure": "continue",
             "with": {"command": "avml --url '{upload_url}' /tmp/m.lime", "time-budget-seconds": 600}},
            {"id": "evidence", "action": "store-evidence", "needs": ["memory"]}
        ]),
    );
    let key = format!("cases/{}/memory/{instance_id}.lime", plan.case_id.as_str());
    let journal = LocalJournal::new(dir.join("journal"));

    // The emulator reports the command done, but no host uploaded anything:
    // the step fails saying so, and the steps after it still run.
    let first = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
        .await
        .expect("run");
    assert_eq!(
        first.status,
        CaseStatus::CompletedWithFailures,
        "{}",
        first.message
    );

    let sent = commands(clients, &instance_id).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let command = &sent[0];
    assert_eq!(command.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(command.instance_ids(), std::slice::from_ref(&instance_id));
    let parameters = command.parameters().expect("parameters");
    let script = &parameters["commands"][0];
    let url = script
        .strip_prefix("avml --url '")
        .and_then(|rest| rest.strip_suffix("' /tmp/m.lime"))
        .unwrap_or_else(|| panic!("the URL replaces the placeholder: {script}"));
    assert!(
        url.contains(&format!("/{BUCKET}/{key}?")),
        "the URL is for the case's key only: {url}"
    );
    assert!(
        url.contains("X-Amz-Expires=600"),
        "valid for the budget: {url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let secret = aws
        .sdk_config()
        .credentials_provider()
        .expect("credentials");
    let secret = aws_credential_types::provider::ProvideCredentials::provide_credentials(&secret)
        .await
        .expect("credentials")
        .secret_access_key()
        .to_string();
    assert!(!script.contains(&secret), "no secret in the command");
    assert!(!url.contains("X-Amz-Security-Token"), "{url}");

    // The URL never reaches the journal.
    let journal_text = std::fs::read_to_string(journal_path(&dir, &plan.case_id)).expect("journal");
    let signature = url.split("X-Amz-Signature=").nth(1).expect("signature");
    assert!(
        !journal_text.contains(signature),
        "the signature is not journaled"
    );

    // The host uploads; resuming the case retries the step, which picks up
    // the same command from its journaled progress (no second command).
    let image = "pretend this is a LiME memory image";
    assert_eq!(put_presigned(url, image).await, 200);
    let second = Executor::new(&actions, &journal, &ApproveAll)
        .resume(&plan.case_id)
        .await
        .expect("resume");
    assert_eq!(second.status, CaseStatus::Completed, "{}", second.message);
    assert_eq!(commands(clients, &instance_id).await.len(), 1, "sent once");

    // cordon's own hash of what is in S3, in the journal.
    let text = std::fs::read_to_string(journal_path(&dir, &plan.case_id)).expect("journal");
    let applied: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["event"]["event"] == "step-applied" && r["event"]["step"] == "memory")
        .expect("memory applied");
    let evidence = &applied["event"]["outcome"]["evidence"];
    assert_eq!(
        evidence["sha256"],
        sha256_hex(image.as_bytes()),
        "{applied}"
    );
    assert_eq!(evidence["location"], format!("s3://{BUCKET}/{key}"));
    assert!(!text.contains(signature), "the signature is not journaled");

    // The manifest pins the image with the SHA-256 cordon read back.
    let mut evidence_step = Lifecycle::new(&actions, &plan, "evidence");
    evidence_step.forward().await.expect("store evidence");
    let manifest_key = format!("cases/{}/manifest.json", plan.case_id.as_str());
    let manifest = clients
        .s3
        .get_object()
        .bucket(BUCKET)
        .key(&manifest_key)
        .send()
        .await
        .expect("manifest")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let entry = manifest["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["key"] == key.as_str())
        .unwrap_or_else(|| panic!("the image is in the manifest: {manifest:#}"));
    assert_eq!(entry["sha256"], sha256_hex(image.as_bytes()));
    assert_eq!(entry["size"], image.len());
}

fn journal_path(dir: &std::path::Path, case: &cordon_core::plan::CaseId) -> std::path::PathBuf {
    dir.join("journal")
        .join(case.as_str())
        .join("journal.jsonl")
}

#[tokio::test]
async fn a_memory_capture_past_its_budget_fails_and_isolation_proceeds() {
    let aws = emulator().await;
    let clients = aws.clients();
    let env = provision(
        clients,
        &cordon_tests::one_instance_environment("10.60.0.0/16"),
    )
    .await
    .expect("provision");
    let (actions, dir) = s3_actions(clients, "capture-memory-budget").await;
    // An acquisition that never ends: SSM answered by mocks (the emulator
    // reports every command successful at once).
    let send = mock!(SsmClient::send_command).then_output(|| {
        SendCommandOutput::builder()
            .command(Command::builder().command_id("cmd-never-ends").build())
            .build()
    });
    let status = mock!(SsmClient::get_command_invocation).then_output(|| {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::InProgress)
            .build()
    });
    let mut with_mock = clients.clone();
    with_mock.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&send, &status]);
    let actions = AwsActions {
        clients: with_mock,
        ..actions
    };
    let finding = env
        .instance_finding("app")
        .expect("finding")
        .detail()
        .to_string();
    let plan = plan_steps(
        &finding,
        "memory-then-isolate",
        json!([
            {"id": "memory", "action": "capture-memory", "on-failure": "continue",
             "with": {"time-budget-seconds": 2}},
            {"id": "isolate", "action": "isolate-instance", "needs": ["memory"]}
        ]),
    );
    let journal = LocalJournal::new(dir.join("journal"));
    let started = std::time::Instant::now();
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
        .await
        .expect("run");
    assert_eq!(
        report.status,
        CaseStatus::CompletedWithFailures,
        "{}",
        report.message
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(send.num_calls(), 1);
    let text = std::fs::read_to_string(journal_path(&dir, &plan.case_id)).expect("journal");
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed = records
        .iter()
        .find(|r| r["event"]["event"] == "step-failed" && r["event"]["step"] == "memory")
        .expect("memory failed");
    assert!(
        failed
            .to_string()
            .contains("did not finish within its 2s budget"),
        "{failed}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"]["event"] == "step-verified" && r["event"]["step"] == "isolate"),
        "isolation proceeds without the image: {text}"
    );
}
