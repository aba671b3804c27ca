//! Crash safety of the remediation actions (issue 15): the `cordon` binary
//! is killed right after each journal record in turn (the crash-hooks
//! feature), then the case is resumed (every other crash point) and rolled
//! back. A resumed case must end remediated, every rollback exactly at the
//! state before the case. `capture-memory`'s SendCommand is crash-tested
//! here too, killed right after SSM answers it (`CORDON_TEST_CRASH_AFTER_CALL`)
//! and after each record: every resume leaves exactly one command in SSM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use cordon_aws::client::AwsClients;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_gameday::provision;
use cordon_tests::EmulatorGuard;
use serde_json::{Value, json};

/// Enforce IMDSv2, then tag: two steps, so a crash also lands between them.
const IMDSV2_PLAYBOOK: &str = r#"
name: imdsv2-crash
description: enforce-imdsv2 crash-safety test.
priority: 200
match:
  resource-types: [Instance]
on-failure: stop
steps:
  - id: imdsv2
    action: enforce-imdsv2
  - id: tag
    action: tag-resource
"#;

/// A case directory: finding, playbooks, state.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, finding: &Value, playbook: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cordon-remediation-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("playbooks")).unwrap();
        std::fs::write(dir.join("finding.json"), finding.to_string()).unwrap();
        std::fs::write(dir.join("playbooks/test.yaml"), playbook).unwrap();
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
                .take(8)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        out
    }

    fn run(&self, aws: &EmulatorGuard, crash_after: u64) -> Output {
        self.run_with(
            aws,
            &[],
            ("CORDON_TEST_CRASH_AFTER_RECORD", crash_after.to_string()),
        )
    }

    /// `cordon run` of the case's finding and playbooks with `extra`
    /// arguments and one crash hook armed.
    fn run_with(&self, aws: &EmulatorGuard, extra: &[&str], hook: (&str, String)) -> Output {
        let finding = self.0.join("finding.json");
        let playbooks = self.0.join("playbooks");
        let (finding, playbooks) = (finding.to_string_lossy(), playbooks.to_string_lossy());
        let mut args = vec!["run", &finding, "--yes", "--playbooks", &playbooks];
        args.extend_from_slice(extra);
        self.cordon(aws, &args, &[hook])
    }

    fn case_id(&self) -> String {
        let cases: Vec<String> = std::fs::read_dir(self.0.join("state/cases"))
            .expect("cases dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("case-"))
            .collect();
        assert_eq!(cases.len(), 1, "one case expected: {cases:?}");
        cases[0].clone()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a crash test needs of one remediation: its world and how to read it.
trait Remediated {
    /// The state the action changes, as JSON to compare.
    async fn state(&self, clients: &AwsClients) -> Value;
    /// Whether `state` shows the remediation in force.
    fn remediated(&self, state: &Value) -> bool;
}

/// Crashes the run after each record in turn; resumes (even crash points)
/// and rolls back. Returns the number of crash points.
/// `rollback` is the rollback's extra arguments (`--approve-undo STEP` for
/// an approval-gated undo).
async fn crash_at_every_record<R: Remediated>(
    aws: &EmulatorGuard,
    name: &str,
    playbook: &str,
    rollback: &[&str],
    set_up: impl AsyncFn(&EmulatorGuard) -> (R, Value),
) -> u64 {
    let mut n = 0u64;
    loop {
        aws.reset().await;
        let (world, finding) = set_up(aws).await;
        let before = world.state(aws.clients()).await;
        assert!(
            !world.remediated(&before),
            "the set-up must need remediating: {before}"
        );
        let dir = Dir::new(&format!("{name}{n}"), &finding, playbook);
        let out = dir.run(aws, n);
        if out.status.code() == Some(0) {
            assert!(
                n > 0,
                "the binary ignored CORDON_TEST_CRASH_AFTER_RECORD: build the tests with \
                 `--features cordon-cli/crash-hooks` (scripts/test does)"
            );
            let now = world.state(aws.clients()).await;
            assert!(world.remediated(&now), "the full run remediates: {now}");
            return n;
        }
        assert_eq!(
            out.status.code(),
            None,
            "record {n}: expected an abort, got {:?}",
            out.status
        );
        let case_id = dir.case_id();
        if n.is_multiple_of(2) {
            // `--yes`: a step needing approval (deleting evidence on rollback)
            // is asked again when the crash came before its approval was journaled.
            let out = dir.cordon(aws, &["resume", &case_id, "--yes"], &[]);
            assert_eq!(out.status.code(), Some(0), "record {n}: resume completes");
            let now = world.state(aws.clients()).await;
            assert!(world.remediated(&now), "record {n}: resumed: {now}");
        }
        let mut args = vec!["rollback", case_id.as_str()];
        args.extend_from_slice(rollback);
        let out = dir.cordon(aws, &args, &[]);
        assert_eq!(out.status.code(), Some(0), "record {n}: rollback completes");
        assert_eq!(
            world.state(aws.clients()).await,
            before,
            "record {n}: rollback restores exactly"
        );
        n += 1;
        assert!(n < 100, "the run never completed");
    }
}

/// One instance in its own VPC (`cidr`): its id and a finding about it.
async fn one_instance(aws: &EmulatorGuard, cidr: &str) -> (String, Value) {
    let env = provision(aws.clients(), &cordon_tests::one_instance_environment(cidr))
        .await
        .expect("provision");
    let instance_id = env.instances["app"].id.clone();
    let finding = env.instance_finding("app").expect("finding").detail();
    (instance_id, finding)
}

/// The instance whose metadata options `enforce-imdsv2` changes.
struct Imds {
    instance_id: String,
}

impl Remediated for Imds {
    async fn state(&self, clients: &AwsClients) -> Value {
        cordon_tests::metadata_options(clients, &self.instance_id).await
    }

    fn remediated(&self, state: &Value) -> bool {
        state["http-tokens"] == "required"
    }
}

#[tokio::test]
async fn enforce_imdsv2_crash_at_every_record_then_resume_or_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(&aws, "imdsv2", IMDSV2_PLAYBOOK, &[], async |aws| {
        let (instance_id, finding) = one_instance(aws, "10.40.0.0/16").await;
        cordon_tests::set_metadata_options(aws.clients(), &instance_id, "optional", 3, true).await;
        (Imds { instance_id }, finding)
    })
    .await;
    eprintln!("enforce-imdsv2: {n} crash points");
    assert!(n >= 4, "every step's records were crash points: {n}");
}

/// Snapshot every volume; the snapshots go on rollback (so the world is back
/// exactly): the step whose first attempt skips the lookup for earlier
/// snapshots (it journals `creating-snapshots` first).
const VOLUME_SNAPSHOTS_PLAYBOOK: &str = r#"
name: snapshot-crash
description: snapshot-volumes crash-safety test.
priority: 200
match:
  resource-types: [Instance]
on-failure: stop
steps:
  - id: snapshot
    action: snapshot-volumes
    with:
      delete-on-rollback: true
"#;

/// The instance whose volumes `snapshot-volumes` snapshots.
struct VolumeSnapshots {
    instance_id: String,
}

impl Remediated for VolumeSnapshots {
    /// The number of snapshots of each volume attached to the instance.
    async fn state(&self, clients: &AwsClients) -> Value {
        let volumes = clients
            .ec2
            .describe_volumes()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("attachment.instance-id")
                    .values(&self.instance_id)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeVolumes");
        let ids: Vec<&str> = volumes
            .volumes()
            .iter()
            .map(|v| v.volume_id().expect("volume id"))
            .collect();
        json!(cordon_tests::snapshots_per_volume(clients, &ids).await)
    }

    /// Exactly one snapshot of every volume: none missing, none taken twice.
    fn remediated(&self, state: &Value) -> bool {
        state
            .as_object()
            .is_some_and(|counts| !counts.is_empty() && counts.values().all(|n| *n == json!(1)))
    }
}

/// A crash after any record (the `creating-snapshots` record before the
/// first CreateSnapshot among them) and then resume leaves exactly one
/// snapshot per volume; the approved rollback deletes them.
#[tokio::test]
async fn snapshot_volumes_crash_at_every_record_then_resume_or_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(
        &aws,
        "snapshots",
        VOLUME_SNAPSHOTS_PLAYBOOK,
        &["--approve-undo", "snapshot"],
        async |aws| {
            let (instance_id, finding) = one_instance(aws, "10.41.0.0/16").await;
            (VolumeSnapshots { instance_id }, finding)
        },
    )
    .await;
    eprintln!("snapshot-volumes: {n} crash points");
    assert!(n >= 4, "every record was a crash point: {n}");
}

/// Block the bucket's public access, then tag nothing: one step on a bucket.
const BUCKET_PLAYBOOK: &str = r#"
name: bucket-crash
description: block-bucket-public-access crash-safety test.
priority: 200
match:
  resource-types: [S3Bucket]
on-failure: stop
steps:
  - id: block
    action: block-bucket-public-access
"#;

/// The bucket whose public access block `block-bucket-public-access` changes.
struct Bucket {
    name: String,
}

impl Remediated for Bucket {
    async fn state(&self, clients: &AwsClients) -> Value {
        cordon_tests::public_access_block(clients, &self.name).await
    }

    fn remediated(&self, state: &Value) -> bool {
        *state == json!([true, true, true, true])
    }
}

#[tokio::test]
async fn block_bucket_public_access_crash_at_every_record_then_resume_or_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(
        &aws,
        "bucket",
        BUCKET_PLAYBOOK,
        &["--approve-undo", "block"],
        async |aws| {
            let name = "cordon-crash-open".to_string();
            aws.clients()
                .s3
                .create_bucket()
                .bucket(&name)
                .send()
                .await
                .expect("CreateBucket");
            let finding: Value =
                serde_json::from_str(&cordon_tests::s3_bucket_finding(&name)).unwrap();
            (Bucket { name }, finding)
        },
    )
    .await;
    eprintln!("block-bucket-public-access: {n} crash points");
    assert!(n >= 3, "every record was a crash point: {n}");
}

/// Revoke SSH and RDP open to the world on the group a Config rule names.
const INGRESS_PLAYBOOK: &str = r#"
name: ingress-crash
description: revoke-open-ingress crash-safety test.
priority: 200
match:
  sources: [config]
on-failure: stop
steps:
  - id: revoke
    action: revoke-open-ingress
    with:
      ports: [22, 3389]
"#;

/// The group whose world-open ingress `revoke-open-ingress` revokes.
struct Ingress {
    group_id: String,
}

impl Remediated for Ingress {
    async fn state(&self, clients: &AwsClients) -> Value {
        json!(cordon_tests::ingress_rules(clients, &self.group_id).await)
    }

    fn remediated(&self, state: &Value) -> bool {
        let rules = state.as_array().unwrap();
        !rules.iter().any(|r| {
            r.as_str().unwrap().contains(" 0.0.0.0/0 ") && r.as_str().unwrap().contains("(22)")
        })
    }
}

#[tokio::test]
async fn revoke_open_ingress_crash_at_every_record_then_resume_or_approved_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(
        &aws,
        "ingress",
        INGRESS_PLAYBOOK,
        &["--approve-undo", "revoke"],
        async |aws| {
            let group_id = cordon_tests::open_security_group(aws.clients(), "crash").await;
            let finding: Value = serde_json::from_str(&cordon_tests::config_event(
                "restricted-ssh",
                "AWS::EC2::SecurityGroup",
                &group_id,
            ))
            .unwrap();
            (Ingress { group_id }, finding)
        },
    )
    .await;
    eprintln!("revoke-open-ingress: {n} crash points");
    assert!(n >= 3, "every record was a crash point: {n}");
}

/// Make the snapshot a Config rule names private.
const SNAPSHOT_PLAYBOOK: &str = r#"
name: snapshot-crash
description: make-snapshot-private crash-safety test.
priority: 200
match:
  sources: [config]
on-failure: stop
steps:
  - id: private
    action: make-snapshot-private
"#;

/// The snapshot whose public permission `make-snapshot-private` removes.
struct Snapshot {
    snapshot_id: String,
}

impl Remediated for Snapshot {
    async fn state(&self, clients: &AwsClients) -> Value {
        json!(cordon_tests::volume_permissions(clients, &self.snapshot_id).await)
    }

    fn remediated(&self, state: &Value) -> bool {
        *state == json!(["user:111122223333"])
    }
}

#[tokio::test]
async fn make_snapshot_private_crash_at_every_record_then_resume_or_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(
        &aws,
        "snapshot",
        SNAPSHOT_PLAYBOOK,
        &["--approve-undo", "private"],
        async |aws| {
            let snapshot_id = cordon_tests::public_snapshot(aws.clients()).await;
            let finding: Value = serde_json::from_str(&cordon_tests::config_event(
                "ebs-snapshot-public-restorable-check",
                "AWS::EC2::Snapshot",
                &snapshot_id,
            ))
            .unwrap();
            (Snapshot { snapshot_id }, finding)
        },
    )
    .await;
    eprintln!("make-snapshot-private: {n} crash points");
    assert!(n >= 3, "every record was a crash point: {n}");
}

/// Make every public snapshot of the account private, on the account-level
/// evaluation of the Config rule.
const ACCOUNT_SNAPSHOTS_PLAYBOOK: &str = r#"
name: account-snapshots-crash
description: make-account-snapshots-private crash-safety test.
priority: 200
match:
  sources: [config]
  resource-types: ["AWS::::Account"]
on-failure: stop
steps:
  - id: private
    action: make-account-snapshots-private
"#;

/// The account's own snapshots (two public, one of them also shared by id;
/// one shared by id only) whose public permission the sweep removes.
struct AccountSnapshots {
    snapshot_ids: Vec<String>,
}

impl Remediated for AccountSnapshots {
    async fn state(&self, clients: &AwsClients) -> Value {
        let mut all = Vec::new();
        for id in &self.snapshot_ids {
            all.push(json!(cordon_tests::volume_permissions(clients, id).await));
        }
        json!(all)
    }

    fn remediated(&self, state: &Value) -> bool {
        *state == json!([[], ["user:111122223333"], ["user:444455556666"]])
    }
}

#[tokio::test]
async fn make_account_snapshots_private_crash_at_every_record_then_resume_or_rollback() {
    let aws = cordon_tests::emulator().await;
    let n = crash_at_every_record(
        &aws,
        "account-snapshots",
        ACCOUNT_SNAPSHOTS_PLAYBOOK,
        &["--approve-undo", "private"],
        async |aws| {
            let clients = aws.clients();
            let snapshot_ids = vec![
                cordon_tests::shared_snapshot(clients, true, &[]).await,
                cordon_tests::shared_snapshot(clients, true, &["111122223333"]).await,
                cordon_tests::shared_snapshot(clients, false, &["444455556666"]).await,
            ];
            let finding: Value = serde_json::from_str(&cordon_tests::config_event(
                "ebs-snapshot-public-restorable-check",
                "AWS::::Account",
                cordon_tests::ACCOUNT_ID,
            ))
            .unwrap();
            (AccountSnapshots { snapshot_ids }, finding)
        },
    )
    .await;
    eprintln!("make-account-snapshots-private: {n} crash points");
    assert!(n >= 3, "every record was a crash point: {n}");
}

const MEMORY_BUCKET: &str = "cordon-evidence-memory-crash";

/// Memory first, then a tag: a crash also lands between the steps. The
/// emulator runs no SSM agent, so the host's upload is done ahead: the image
/// is at the case's key before the run, and the emulator reports the command
/// successful at once.
const MEMORY_PLAYBOOK: &str = r#"
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

/// `cordon run` of the memory playbook, with one crash hook armed.
fn memory_run(dir: &Dir, aws: &EmulatorGuard, hook: (&str, String)) -> Output {
    dir.run_with(aws, &["--evidence-bucket", MEMORY_BUCKET], hook)
}

fn memory_resume(dir: &Dir, aws: &EmulatorGuard, case_id: &str) -> Output {
    dir.cordon(
        aws,
        &["resume", case_id, "--evidence-bucket", MEMORY_BUCKET],
        &[],
    )
}

/// The memory step's progress records and the command its applied outcome names.
fn memory_journal(dir: &Dir, case_id: &str) -> (Vec<Value>, Option<String>) {
    let text = std::fs::read_to_string(
        dir.0
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

/// A fresh world: one instance, the evidence bucket, the host's image at
/// the case's key. Returns the finding, the instance id and the case id.
async fn memory_world(aws: &EmulatorGuard) -> (Value, String, String) {
    aws.reset().await;
    let clients = aws.clients();
    let env = provision(
        clients,
        &cordon_tests::one_instance_environment("10.62.0.0/16"),
    )
    .await
    .expect("provision");
    evidence_bucket::init(clients, MEMORY_BUCKET, DEFAULT_KMS_ALIAS, None)
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
        .bucket(MEMORY_BUCKET)
        .key(format!("cases/{case_id}/memory/{instance_id}.lime"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"image"))
        .send()
        .await
        .expect("the host's upload");
    (finding, instance_id, case_id)
}

/// The ids of the commands SSM holds for the instance.
async fn command_ids(clients: &AwsClients, instance_id: &str) -> Vec<String> {
    cordon_tests::ssm_commands(clients, instance_id)
        .await
        .iter()
        .filter_map(|c| c.command_id().map(str::to_string))
        .collect()
}

/// Issue 15 gap: killed between SendCommand's answer and its journal record,
/// the resumed case adopts the command the dead run sent (found by the
/// marker of the intent journaled before sending): one command in SSM. On
/// the old code the resume sent a second command.
#[tokio::test]
async fn capture_memory_crash_right_after_send_command_resumes_with_the_same_command() {
    let aws = cordon_tests::emulator().await;
    let (finding, instance_id, case_id) = memory_world(&aws).await;
    let dir = Dir::new("memory-after-send", &finding, MEMORY_PLAYBOOK);
    let out = memory_run(
        &dir,
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
    let (progress, _) = memory_journal(&dir, &case_id);
    assert_eq!(
        progress.len(),
        1,
        "only the intent was journaled: {progress:?}"
    );
    assert_eq!(progress[0]["phase"], "command-intended", "{progress:?}");
    assert!(progress[0]["marker"].is_string(), "{progress:?}");

    let out = memory_resume(&dir, &aws, &case_id);
    assert_eq!(out.status.code(), Some(0), "the resume completes");
    assert_eq!(
        command_ids(aws.clients(), &instance_id).await,
        sent,
        "no second command"
    );
    let (progress, applied) = memory_journal(&dir, &case_id);
    assert_eq!(applied.as_deref(), Some(sent[0].as_str()), "{progress:?}");
}

/// Killed right after each journal record in turn, then resumed: every
/// resume completes with exactly one command in SSM, the journal's.
#[tokio::test]
async fn capture_memory_crash_at_every_record_then_resume_leaves_exactly_one_command() {
    let aws = cordon_tests::emulator().await;
    let mut n = 0u64;
    loop {
        let (finding, instance_id, case_id) = memory_world(&aws).await;
        let dir = Dir::new(&format!("memory{n}"), &finding, MEMORY_PLAYBOOK);
        let out = memory_run(
            &dir,
            &aws,
            ("CORDON_TEST_CRASH_AFTER_RECORD", n.to_string()),
        );
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
        let out = memory_resume(&dir, &aws, &case_id);
        assert_eq!(
            out.status.code(),
            Some(0),
            "record {n}: the resume completes"
        );
        let sent = command_ids(aws.clients(), &instance_id).await;
        assert_eq!(sent.len(), 1, "record {n}: exactly one command: {sent:?}");
        let (_, applied) = memory_journal(&dir, &case_id);
        assert_eq!(applied.as_deref(), Some(sent[0].as_str()), "record {n}");
        n += 1;
        assert!(n < 100, "the run never completed");
    }
    eprintln!("capture-memory: {n} crash points");
}
