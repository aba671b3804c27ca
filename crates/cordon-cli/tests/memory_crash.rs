//! Crash safety of `capture-memory`'s SendCommand (issue 15): the `cordon`
//! binary is killed right after SSM answers SendCommand, before the command
//! id is journaled (`CORDON_TEST_CRASH_AFTER_CALL`), and right after each
//! journal record in turn (`CORDON_TEST_CRASH_AFTER_RECORD`); every resume
//! must leave exactly one command in SSM, the one the case's journal names.
//! Both hooks need the crash-hooks feature (`scripts/test` builds with it).
//!
//! The emulator runs no SSM agent, so the host's upload is done ahead: the
//! image is at the case's key before the run, and the emulator reports the
//! command successful at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_gameday::provision;
use cordon_tests::EmulatorGuard;
use serde_json::{Value, json};

const BUCKET: &str = "cordon-evidence-memory-crash";

/// Memory first, then a tag: a crash also lands between the steps.
const PLAYBOOK: &str = r#"
name: memory-crash
description: capture-memory crash-safety test.
priority: 200
match:
  resource-types: [Instance]
on-failure: stop
steps:
  - id: memory
    action: capture-memory
    with:
      command: "avml --url '{upload_url}' /tmp/m.lime"
      time-budget-seconds: 600
  - id: tag
    action: tag-resource
    needs: [memory]
"#;

/// A case directory: finding, playbooks, state.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, finding: &Value) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cordon-memory-crash-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("playbooks")).unwrap();
        std::fs::write(dir.join("finding.json"), finding.to_string()).unwrap();
        std::fs::write(dir.join("playbooks/test.yaml"), PLAYBOOK).unwrap();
        Dir(dir)
    }

    fn cordon(&self, aws: &EmulatorGuard, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.0.join("state"))
            .env_remove("CORDON_TEST_CRASH_AFTER_RECORD")
            .env_remove("CORDON_TEST_CRASH_AFTER_CALL")
            .env_remove("CORDON_PLAYBOOKS")
            .env_remove("AWS_PROFILE");
        for (k, v) in aws.env() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("spawn cordon");
        eprintln!(
            "$ cordon {} => {:?}\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        out
    }

    /// `cordon run` with one crash hook armed.
    fn run(&self, aws: &EmulatorGuard, hook: (&str, String)) -> Output {
        let finding = self.0.join("finding.json");
        let playbooks = self.0.join("playbooks");
        self.cordon(
            aws,
            &[
                "run",
                &finding.to_string_lossy(),
                "--yes",
                "--playbooks",
                &playbooks.to_string_lossy(),
                "--evidence-bucket",
                BUCKET,
            ],
            &[hook],
        )
    }

    fn resume(&self, aws: &EmulatorGuard, case_id: &str) -> Output {
        self.cordon(aws, &["resume", case_id, "--evidence-bucket", BUCKET], &[])
    }

    /// The memory step's progress records and the command its applied
    /// outcome names.
    fn journal(&self, case_id: &str) -> (Vec<Value>, Option<String>) {
        let text = std::fs::read_to_string(
            self.0
                .join("state/cases")
                .join(case_id)
                .join("journal.jsonl"),
        )
        .expect("journal");
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &Value| r["event"]["step"] == "memory")
            .collect();
        let progress = records
            .iter()
            .filter(|r| r["event"]["event"] == "step-progress")
            .map(|r| r["event"]["progress"].clone())
            .collect();
        let applied = records
            .iter()
            .find(|r| r["event"]["event"] == "step-applied")
            .and_then(|r| r["event"]["outcome"]["command-id"].as_str())
            .map(str::to_string);
        (progress, applied)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh world: one instance, the evidence bucket, the host's image at
/// the case's key. Returns the finding, the instance id and the case id.
async fn world(aws: &EmulatorGuard) -> (Value, String, String) {
    aws.reset().await;
    let clients = aws.clients();
    let env = provision(
        clients,
        &cordon_tests::one_instance_environment("10.62.0.0/16"),
    )
    .await
    .expect("provision");
    evidence_bucket::init(clients, BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("evidence bucket");
    let instance_id = env.instances["app"].id.clone();
    let finding = env.instance_finding("app").expect("finding").detail();
    let plan = cordon_tests::plan_steps(
        &finding.to_string(),
        "case-id",
        json!([{"id": "tag", "action": "tag-resource"}]),
    );
    let case_id = plan.case_id.as_str().to_string();
    clients
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(format!("cases/{case_id}/memory/{instance_id}.lime"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"image"))
        .send()
        .await
        .expect("the host's upload");
    (finding, instance_id, case_id)
}

/// The ids of the commands SSM holds for the instance.
async fn command_ids(clients: &AwsClients, instance_id: &str) -> Vec<String> {
    clients
        .ssm
        .list_commands()
        .instance_id(instance_id)
        .send()
        .await
        .expect("ListCommands")
        .commands()
        .iter()
        .filter_map(|c| c.command_id().map(str::to_string))
        .collect()
}

/// Issue 15 gap: killed between SendCommand's answer and its journal record,
/// the resumed case adopts the command the dead run sent (found by the
/// marker of the intent journaled before sending): one command in SSM. On
/// the old code the resume sent a second command.
#[tokio::test]
async fn a_crash_right_after_send_command_resumes_with_the_same_command() {
    let aws = cordon_tests::emulator().await;
    let (finding, instance_id, case_id) = world(&aws).await;
    let dir = Dir::new("after-send", &finding);
    let out = dir.run(
        &aws,
        ("CORDON_TEST_CRASH_AFTER_CALL", "ssm:SendCommand".into()),
    );
    assert_eq!(
        out.status.code(),
        None,
        "the binary ignored CORDON_TEST_CRASH_AFTER_CALL: build the tests with \
         `--features cordon-cli/crash-hooks` (scripts/test does)"
    );
    let sent = command_ids(aws.clients(), &instance_id).await;
    assert_eq!(sent.len(), 1, "the dead run's command reached SSM");
    let (progress, _) = dir.journal(&case_id);
    assert_eq!(
        progress.len(),
        1,
        "only the intent was journaled: {progress:?}"
    );
    assert_eq!(progress[0]["phase"], "command-intended", "{progress:?}");
    assert!(progress[0]["marker"].is_string(), "{progress:?}");

    let out = dir.resume(&aws, &case_id);
    assert_eq!(out.status.code(), Some(0), "the resume completes");
    assert_eq!(
        command_ids(aws.clients(), &instance_id).await,
        sent,
        "no second command"
    );
    let (progress, applied) = dir.journal(&case_id);
    assert_eq!(applied.as_deref(), Some(sent[0].as_str()), "{progress:?}");
}

/// Killed right after each journal record in turn, then resumed: every
/// resume completes with exactly one command in SSM, the journal's.
#[tokio::test]
async fn a_crash_at_every_record_then_resume_leaves_exactly_one_command() {
    let aws = cordon_tests::emulator().await;
    let mut n = 0u64;
    loop {
        let (finding, instance_id, case_id) = world(&aws).await;
        let dir = Dir::new(&format!("record{n}"), &finding);
        let out = dir.run(&aws, ("CORDON_TEST_CRASH_AFTER_RECORD", n.to_string()));
        if out.status.code() == Some(0) {
            assert!(
                n > 4,
                "the binary ignored CORDON_TEST_CRASH_AFTER_RECORD: build the tests with \
                 `--features cordon-cli/crash-hooks` (scripts/test does)"
            );
            assert_eq!(command_ids(aws.clients(), &instance_id).await.len(), 1);
            break;
        }
        assert_eq!(out.status.code(), None, "record {n}: expected an abort");
        let out = dir.resume(&aws, &case_id);
        assert_eq!(
            out.status.code(),
            Some(0),
            "record {n}: the resume completes"
        );
        let sent = command_ids(aws.clients(), &instance_id).await;
        assert_eq!(sent.len(), 1, "record {n}: exactly one command: {sent:?}");
        let (_, applied) = dir.journal(&case_id);
        assert_eq!(applied.as_deref(), Some(sent[0].as_str()), "record {n}");
        n += 1;
        assert!(n < 100, "the run never completed");
    }
    eprintln!("capture-memory: {n} crash points");
}
