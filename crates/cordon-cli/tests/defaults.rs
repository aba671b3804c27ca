//! Issue 12 item 4: sane defaults. A `notify` step with no SNS topic
//! configured is journaled as skipped with a warning and the case completes
//! (exit 0), unless the playbook marks it `required: true`. On the old code
//! an unmatched finding with no topic ended "rolled back".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run(aws: &cordon_tests::EmulatorGuard, state: &Path, playbooks: &Path) -> Output {
    let finding = format!("{ROOT}/tests/fixtures/findings/s3-bucket.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args(["run", &finding, "--yes", "--playbooks"])
        .arg(playbooks)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CORDON_NOTIFY_TOPIC_ARN")
        .env_remove("CORDON_PLAYBOOKS")
        .env_remove("CORDON_TEST_CRASH_AFTER_RECORD");
    for (k, v) in aws.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn journal(state: &Path) -> Vec<Value> {
    let cases = state.join("cases");
    let case = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("case-")
        })
        .expect("a case");
    std::fs::read_to_string(case.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(journal: &[Value]) -> Vec<String> {
    journal
        .iter()
        .map(|r| r["event"]["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_step_without_a_topic_is_skipped_unless_required() {
    let aws = cordon_tests::emulator().await;

    // The shipped default playbook: skipped with a warning, completed, exit 0.
    let state = cordon_tests::scratch_dir("optional");
    let out = run(&aws, &state, &Path::new(ROOT).join("playbooks"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "an unconfigured pager is not a failure"
    );
    let records = journal(&state);
    let skipped = records
        .iter()
        .find(|r| r["event"]["event"] == "step-skipped")
        .expect("the notify step is journaled as skipped");
    let reason = skipped["event"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not configured") && reason.contains("no SNS topic"),
        "{reason}"
    );
    let kinds = events(&records);
    assert!(
        !kinds
            .iter()
            .any(|k| k.starts_with("undo") || k.contains("rollback")),
        "{kinds:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("except `notify` skipped")
            && !stdout.contains("every step done and verified\n"),
        "the summary does not claim the skipped step was done: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped"), "a warning says so: {stderr}");

    // Marked required: the step fails and the case does not end completed.
    let state = cordon_tests::scratch_dir("required");
    let playbooks = cordon_tests::scratch_dir("required-playbooks");
    let text = std::fs::read_to_string(Path::new(ROOT).join("playbooks/default-notify.yaml"))
        .unwrap()
        .replace(
            "    action: notify",
            "    action: notify\n    with:\n      required: true",
        );
    std::fs::write(playbooks.join("default-notify.yaml"), text).unwrap();
    let out = run(&aws, &state, &playbooks);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a required notify without a topic fails"
    );
    let kinds = events(&journal(&state));
    assert!(kinds.contains(&"step-failed".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"step-skipped".to_string()), "{kinds:?}");
}
