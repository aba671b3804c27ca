//! Issue 12 item 6: shell completions, man pages, and `cordon cases`
//! filters (`--status`, `--since`), through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn cordon(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .env("CORDON_STATE_DIR", state)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap()
}

#[test]
fn completions_for_every_shell_name_the_commands() {
    let state = cordon_tests::scratch_dir("completions");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cordon(&state, &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for command in ["run", "rollback", "resume", "playbooks", "cases"] {
            assert!(text.contains(command), "{shell} completion lacks {command}");
        }
    }
    let out = cordon(&state, &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_for_cordon_and_each_command() {
    let state = cordon_tests::scratch_dir("man");
    let out = cordon(&state, &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains(".TH cordon 1"),
        "{page}"
    );
    let dir = state.join("man");
    let out = cordon(&state, &["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let run = std::fs::read_to_string(dir.join("cordon-run.1")).unwrap();
    assert!(
        run.contains(".TH cordon\\-run 1") || run.contains(".TH cordon-run 1"),
        "{run}"
    );
    assert!(
        run.contains("dry\\-run"),
        "the run page documents its options"
    );
}

/// Installs a fixture journal, cut after its first `case-finished` when `first_end`.
fn install(state: &Path, fixture: &str, first_end: bool) {
    let text =
        std::fs::read_to_string(format!("{ROOT}/tests/fixtures/journals-v1/{fixture}.jsonl"))
            .unwrap();
    let mut kept = Vec::new();
    for line in text.lines() {
        kept.push(line);
        let record: Value = serde_json::from_str(line).unwrap();
        if first_end && record["event"]["event"] == "case-finished" {
            break;
        }
    }
    let first: Value = serde_json::from_str(kept[0]).unwrap();
    let case = first["event"]["plan"]["case-id"].as_str().unwrap();
    let dir = state.join("cases").join(case);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("journal.jsonl"), kept.join("\n") + "\n").unwrap();
}

fn statuses(state: &Path, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["cases", "--output", "json"];
    args.extend_from_slice(filters);
    let out = cordon(state, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<String> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    found
}

#[test]
fn cases_filter_by_status_and_age() {
    let state = cordon_tests::scratch_dir("cases");
    install(&state, "ec2-compromised-high", true);
    install(&state, "iam-temporary-credentials", false);
    install(&state, "iam-user-key-compromised", false);
    assert_eq!(
        statuses(&state, &[]),
        ["completed", "rolled-back", "rolled-back"]
    );
    assert_eq!(statuses(&state, &["--status", "completed"]), ["completed"]);
    assert_eq!(
        statuses(&state, &["--status", "rolled-back"]),
        ["rolled-back", "rolled-back"]
    );
    assert_eq!(
        statuses(
            &state,
            &["--status", "rolled-back", "--status", "completed"]
        )
        .len(),
        3
    );
    // The fixtures were opened long before this test ran.
    assert!(statuses(&state, &["--since", "1s"]).is_empty());
    assert_eq!(statuses(&state, &["--since", "36500d"]).len(), 3);
    assert_eq!(statuses(&state, &["--since", "99999999999d"]).len(), 3);
    let out = cordon(&state, &["cases", "--status", "contained"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a case state"));
}

/// `cordon … | head`: the reader goes away; cordon stops quietly with 141
/// (as SIGPIPE would), not with a panic and a backtrace.
#[test]
fn a_reader_that_goes_away_ends_cordon_quietly() {
    let state = cordon_tests::scratch_dir("pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["completions", "bash"])
        .env("CORDON_STATE_DIR", &state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before cordon writes its (large) script.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
