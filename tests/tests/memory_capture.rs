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
use aws_sdk_ssm::operation::cancel_command::{CancelCommandError, CancelCommandOutput};
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use cordon_aws::actions::AwsActions;
use cordon_aws::actions::ec2::memory;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::{EvidenceStore, sha256_hex};
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_aws::faults::{FaultInjector, FaultKind, FaultPlan, FaultRule, FaultWhen};
use cordon_core::executor::{Actions, ErrorKind, Executor, Progress};
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

    let sent = cordon_tests::ssm_commands(clients, &instance_id).await;
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
    assert_eq!(
        cordon_tests::ssm_commands(clients, &instance_id)
            .await
            .len(),
        1,
        "sent once"
    );

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
    // An acquisition that never ends.
    let cancel = mock!(SsmClient::cancel_command)
        .match_requests(|r| r.command_id() == Some("cmd-never-ends") && r.instance_ids().len() == 1)
        .then_output(|| CancelCommandOutput::builder().build());
    let (actions, send) = still_running(actions, "cmd-never-ends", &cancel);
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
            .contains("did not finish within its 2s budget; cordon cancelled it (CancelCommand)"),
        "{failed}"
    );
    // Past the budget the command is cancelled, so the host stops streaming;
    // the cancellation is journaled before the failure.
    assert_eq!(cancel.num_calls(), 1, "CancelCommand sent");
    let cancelled = memory_progress(&records)
        .into_iter()
        .find(|p| p["phase"] == "command-cancelled")
        .expect("the cancellation is journaled");
    assert_eq!(
        cancelled,
        json!({"phase": "command-cancelled", "command-id": "cmd-never-ends"})
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"]["event"] == "step-verified" && r["event"]["step"] == "isolate"),
        "isolation proceeds without the image: {text}"
    );
}

/// `actions` with SSM answered by mocks (the emulator reports every command
/// successful at once): SendCommand (the returned rule) answers
/// `command_id`, which stays InProgress forever; `cancel` answers
/// CancelCommand.
fn still_running(
    actions: AwsActions,
    command_id: &'static str,
    cancel: &Rule,
) -> (AwsActions, Rule) {
    let send = mock!(SsmClient::send_command).then_output(move || {
        SendCommandOutput::builder()
            .command(Command::builder().command_id(command_id).build())
            .build()
    });
    let status = mock!(SsmClient::get_command_invocation).then_output(|| {
        GetCommandInvocationOutput::builder()
            .status(CommandInvocationStatus::InProgress)
            .build()
    });
    let mut clients = actions.clients.clone();
    clients.ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&send, &status, cancel]);
    (AwsActions { clients, ..actions }, send)
}

/// The `step-progress` records of the `memory` step, in order.
fn memory_progress(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["event"]["event"] == "step-progress" && r["event"]["step"] == "memory")
        .map(|r| r["event"]["progress"].clone())
        .collect()
}

fn journal_records(dir: &std::path::Path, case: &cordon_core::plan::CaseId) -> Vec<Value> {
    std::fs::read_to_string(journal_path(dir, case))
        .expect("journal")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The host's upload, done ahead (the emulator runs no agent): the image at
/// the case's key.
async fn seed_image(clients: &AwsClients, key: &str, image: Vec<u8>) {
    clients
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(image))
        .send()
        .await
        .expect("the host's upload");
}

/// One instance, S3 evidence and a one-step capture plan.
struct MemoryWorld {
    actions: AwsActions,
    dir: std::path::PathBuf,
    plan: cordon_core::plan::Plan,
    finding: String,
    instance_id: String,
    /// Where the image goes.
    key: String,
}

/// A [`MemoryWorld`] whose capture has `budget` seconds.
async fn memory_world(clients: &AwsClients, name: &str, budget: u64) -> MemoryWorld {
    let env = provision(
        clients,
        &cordon_tests::one_instance_environment("10.61.0.0/16"),
    )
    .await
    .expect("provision");
    let instance_id = env.instances["app"].id.clone();
    let (actions, dir) = s3_actions(clients, name).await;
    let finding = env
        .instance_finding("app")
        .expect("finding")
        .detail()
        .to_string();
    let plan = plan_steps(
        &finding,
        "memory",
        json!([{"id": "memory", "action": "capture-memory",
                "with": {"command": "avml --url '{upload_url}' /tmp/m.lime", "time-budget-seconds": budget}}]),
    );
    let key = format!("cases/{}/memory/{instance_id}.lime", plan.case_id.as_str());
    MemoryWorld {
        actions,
        dir,
        plan,
        finding,
        instance_id,
        key,
    }
}

/// Issue 15 gap: SendCommand is sent once. Its first attempt reaches SSM and
/// the answer is lost (the per-attempt timeout fires): cordon reads the
/// instance's commands for the marker it journaled in a write-ahead intent,
/// adopts the command it finds, and never sends a second one. On the old
/// code the lost answer failed the step (the call is not retried), and a
/// retry or resume sent a second command.
#[tokio::test]
async fn a_lost_send_command_answer_is_found_by_its_marker_and_not_sent_again() {
    let aws = emulator().await;
    let plain = aws.clients();
    let injector = FaultInjector::new(FaultPlan {
        seed: 0,
        rules: vec![FaultRule {
            kind: FaultKind::TimeoutAfterSend,
            operation: Some("ssm:SendCommand".to_owned()),
            when: FaultWhen::Nth(vec![1]),
        }],
    })
    .expect("plan");
    let clients = AwsClients::builder(aws.sdk_config())
        .faults(injector.clone())
        .build()
        .expect("clients");
    let MemoryWorld {
        actions,
        dir,
        plan,
        finding,
        instance_id,
        key,
    } = memory_world(&clients, "memory-lost-answer", 600).await;
    let image = b"a memory image whose command's answer was lost".to_vec();
    seed_image(plain, &key, image.clone()).await;
    let journal = LocalJournal::new(dir.join("journal"));
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
        .await
        .expect("run");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let faults: Vec<_> = injector
        .injected()
        .into_iter()
        .map(|f| (f.operation, f.kind))
        .collect();
    assert_eq!(
        faults,
        [("ssm:SendCommand".to_owned(), FaultKind::TimeoutAfterSend)],
        "the first attempt reached SSM and lost its answer"
    );

    let sent = cordon_tests::ssm_commands(plain, &instance_id).await;
    assert_eq!(sent.len(), 1, "one command in SSM: {sent:?}");
    let records = journal_records(&dir, &plan.case_id);
    let progress = memory_progress(&records);
    assert_eq!(
        progress.len(),
        2,
        "an intent, then the command: {progress:?}"
    );
    assert_eq!(progress[0]["phase"], "command-intended");
    assert_eq!(progress[1]["phase"], "command-sent");
    let marker = progress[0]["marker"].as_str().expect("the intent's marker");
    assert!(
        marker.starts_with(&format!("cordon:{}:memory:", plan.case_id.as_str())),
        "{marker}"
    );
    assert_eq!(progress[0]["key"], key.as_str());
    assert_eq!(
        sent[0].comment(),
        Some(marker),
        "the marker is the command's comment"
    );
    assert_eq!(progress[1]["command-id"], sent[0].command_id().expect("id"));
    assert_eq!(progress[1]["marker"], marker);
    let applied = records
        .iter()
        .find(|r| r["event"]["event"] == "step-applied")
        .expect("applied");
    assert_eq!(
        applied["event"]["outcome"]["command-id"],
        progress[1]["command-id"]
    );
    assert_eq!(
        applied["event"]["outcome"]["evidence"]["sha256"],
        sha256_hex(&image)
    );
    let listed = clients
        .recorder
        .counts()
        .into_iter()
        .filter(|((_, op), _)| op.name == "ListCommands")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert_eq!(listed, 1, "one read reconciled the lost answer");
}

/// Issue 15 gap: a run that journaled its intent and crashed before the
/// command's id (whether or not SendCommand reached SSM) resumes by reading
/// the instance's commands for the marker: it adopts the command the
/// crashed run sent, and sends one only when SSM has none. The handler is
/// replayed with the crashed run's progress (the CLI's crash test kills a
/// real process at that point). On the old code, a resume sent again.
#[tokio::test]
async fn a_resume_after_an_intent_adopts_the_command_sent_or_sends_exactly_one() {
    let aws = emulator().await;
    let clients = aws.clients();
    let MemoryWorld {
        actions,
        plan,
        instance_id,
        key,
        ..
    } = memory_world(clients, "memory-intent", 600).await;
    seed_image(clients, &key, b"image".to_vec()).await;
    let step = plan.steps.iter().find(|s| s.id == "memory").expect("step");
    let pre = actions
        .read_pre_state(&plan, step)
        .await
        .expect("pre-state");
    let intent = |marker: &str| {
        json!({"phase": "command-intended", "marker": marker, "key": key,
               "sent-at": 1_700_000_000, "url-expires-at": 1_700_000_600})
    };

    // The crashed run's command reached SSM: adopted, none sent.
    let marker = format!("cordon:{}:memory:crashed-run", plan.case_id.as_str());
    let crashed = clients
        .ssm
        .send_command()
        .instance_ids(&instance_id)
        .document_name("AWS-RunShellScript")
        .comment(&marker)
        .parameters("commands", vec!["true".to_string()])
        .send()
        .await
        .expect("the crashed run's SendCommand")
        .command()
        .and_then(|c| c.command_id())
        .expect("id")
        .to_string();
    let outcome = actions
        .apply_with_progress(&plan, step, &pre, &Progress::replay(vec![intent(&marker)]))
        .await
        .expect("adopted");
    assert_eq!(outcome["command-id"], crashed.as_str(), "{outcome}");
    assert_eq!(
        cordon_tests::ssm_commands(clients, &instance_id)
            .await
            .len(),
        1,
        "none sent"
    );

    // An intent SSM never saw (the crash came before the call): one sent.
    let outcome = actions
        .apply_with_progress(
            &plan,
            step,
            &pre,
            &Progress::replay(vec![intent("cordon:case:memory:never-sent")]),
        )
        .await
        .expect("sent");
    let now = cordon_tests::ssm_commands(clients, &instance_id).await;
    assert_eq!(now.len(), 2, "exactly one more: {now:?}");
    assert_ne!(outcome["command-id"], crashed.as_str());
    let new = now
        .iter()
        .find(|c| c.command_id() != Some(crashed.as_str()))
        .expect("the new command");
    assert!(
        new.comment().is_some_and(|c| c
            .starts_with(&format!("cordon:{}:memory:", plan.case_id.as_str()))
            && c != "cordon:case:memory:never-sent"),
        "a new intent's marker: {:?}",
        new.comment()
    );
}

/// Issue 15 gap: the image is read back and hashed as it streams; a
/// multi-megabyte object completes with cordon's own SHA-256 and size.
#[tokio::test]
async fn a_multi_megabyte_image_is_hashed_as_it_streams() {
    let aws = emulator().await;
    let clients = aws.clients();
    let MemoryWorld {
        actions, plan, key, ..
    } = memory_world(clients, "memory-big", 600).await;
    let image: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    seed_image(clients, &key, image.clone()).await;
    let mut life = Lifecycle::new(&actions, &plan, "memory");
    let (_, outcome) = life.forward().await.expect("capture");
    assert_eq!(outcome["evidence"]["size"], image.len());
    assert_eq!(outcome["evidence"]["sha256"], sha256_hex(&image));
}

/// Issue 15 gap: a read-back whose stream stops sending fails once no chunk
/// has come for the idle limit, naming the object and how far it got; the
/// stalled server here answers a GetObject with its headers and the first
/// megabyte of a 16 MiB body, then holds the connection open, silent.
#[tokio::test]
async fn a_stalled_read_back_fails_after_the_idle_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client closed before its request ended");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 16777216\r\nContent-Type: application/octet-stream\r\n\r\n",
            )
            .await
            .expect("head");
        socket
            .write_all(&vec![1u8; 1024 * 1024])
            .await
            .expect("first megabyte");
        socket.flush().await.expect("flush");
        std::future::pending::<()>().await;
    });
    let config = cordon_tests::sdk_config_for(&format!("http://127.0.0.1:{port}")).await;
    let clients = AwsClients::from_sdk_config(&config).expect("clients");
    let idle = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = memory::hash_object(&clients, "bucket", "cases/c/memory/i.lime", idle)
        .await
        .expect_err("stalled");
    let took = started.elapsed();
    server.abort();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(
        err.message
            .contains("no data for 2s after 1048576 bytes: the stream stalled"),
        "{err}"
    );
    assert!(
        err.message.contains("s3://bucket/cases/c/memory/i.lime")
            || err.resource.contains("s3://bucket"),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "failed fast: {took:?}"
    );
}

/// Issue 15 gap: past the budget the command is cancelled; when SSM refuses
/// the cancellation, the refusal is journaled and the step's error says so
/// in one line (it is not hidden). The emulator has no CancelCommand, so
/// SSM is answered by mocks here; what a real account's agent does on
/// cancellation only a real account shows.
#[tokio::test]
async fn a_refused_cancellation_is_journaled_and_reported_in_one_line() {
    let aws = emulator().await;
    let clients = aws.clients();
    let MemoryWorld {
        actions,
        dir,
        plan,
        finding,
        ..
    } = memory_world(clients, "memory-cancel-refused", 1).await;
    let cancel = mock!(SsmClient::cancel_command).then_error(|| {
        CancelCommandError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User is not authorized to perform: ssm:CancelCommand")
                .build(),
        )
    });
    let (actions, _) = still_running(actions, "cmd-still-running", &cancel);
    let journal = LocalJournal::new(dir.join("journal"));
    let report = Executor::new(&actions, &journal, &ApproveAll)
        .run(&plan, &finding)
        .await
        .expect("run");
    assert_ne!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(cancel.num_calls(), 1);
    let records = journal_records(&dir, &plan.case_id);
    let cancelled = memory_progress(&records)
        .into_iter()
        .find(|p| p["phase"] == "command-cancelled")
        .expect("the cancellation is journaled");
    let refused = cancelled["cancel-refused"]
        .as_str()
        .expect("refused, with why");
    assert!(refused.contains("AccessDenied"), "{refused}");
    assert!(!refused.contains('\n'), "one line: {refused}");
    let failed = records
        .iter()
        .find(|r| r["event"]["event"] == "step-failed")
        .expect("failed");
    let error = failed["event"]["error"].to_string();
    assert!(
        error.contains("did not finish within its 1s budget; cordon could not cancel it, the host may still be uploading"),
        "{error}"
    );
    assert!(error.contains("AccessDenied"), "{error}");
}
