//! `--output json` of the commands that need AWS, through the binary on the
//! emulator (json_output.rs covers the ones that need none): a real
//! single-case `run`, `run --dry-run`, a run waiting for approval,
//! `approve`, and `status` each print exactly one document, valid against
//! its published schema (issue 12 item 4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::schema_check;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn cordon(aws: &cordon_tests::EmulatorGuard, state: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args(args)
        .args(["--output", "json"])
        .env("CORDON_STATE_DIR", state)
        .env_remove("CORDON_NOTIFY_TOPIC_ARN")
        .env_remove("CORDON_PLAYBOOKS")
        .env_remove("CORDON_TEST_CRASH_AFTER_RECORD");
    for (k, v) in aws.env() {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The one document on stdout, valid against `schema`.
fn one_document(out: &Output, what: &str, schema: &str) -> Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let documents: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON: {e}\n{text}"));
    assert_eq!(
        documents.len(),
        1,
        "{what}: one document on stdout:\n{text}"
    );
    schema_check::assert_valid(schema, &documents[0]);
    documents.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_that_need_aws_print_one_valid_document() {
    let aws = cordon_tests::emulator().await;
    let finding = format!("{ROOT}/tests/fixtures/findings/s3-bucket.json");

    // The shipped default playbook: a real run that completes (notify skipped).
    let state = cordon_tests::scratch_dir("json-live-run");
    let out = cordon(&aws, &state, &["run", &finding, "--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_document(&out, "run --dry-run", "dry-run");
    let out = cordon(&aws, &state, &["run", &finding, "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = one_document(&out, "run", "run");
    let case = run["case-id"]
        .as_str()
        .expect("the run names its case")
        .to_string();
    let out = cordon(&aws, &state, &["status", &case]);
    one_document(&out, "status", "status");

    // A gated step: the run waits (exit 3), approve runs it.
    let state = cordon_tests::scratch_dir("json-live-approve");
    let playbooks = cordon_tests::scratch_dir("json-live-playbooks");
    let text = std::fs::read_to_string(Path::new(ROOT).join("playbooks/default-notify.yaml"))
        .unwrap()
        .replace(
            "    action: notify",
            "    action: notify\n    approval: required",
        );
    std::fs::write(playbooks.join("default-notify.yaml"), text).unwrap();
    let pb = playbooks.to_string_lossy().into_owned();
    let out = cordon(&aws, &state, &["run", &finding, "--playbooks", &pb]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_document(&out, "run awaiting approval", "run");
    let out = cordon(&aws, &state, &["approve", &case, "notify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_document(&out, "approve", "run");
}
