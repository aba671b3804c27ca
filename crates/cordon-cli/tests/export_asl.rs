//! `cordon export-asl` against golden files: the Step Functions state machine
//! of every shipped playbook, as `--all --out DIR` writes it with the default
//! Lambda ARN placeholder (what infra/ embeds). A change to a shipped
//! playbook or to the generator shows up here as a reviewable diff. Bless
//! with `UPDATE_GOLDEN=1 cargo test -p cordon-cli --test suite export_asl::`, then
//! review it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::golden;

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/asl")
}

/// Runs `cordon` from the repository root with no playbook set from the
/// caller's environment.
fn cordon(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .current_dir(repo())
        .env_remove("CORDON_PLAYBOOKS")
        .output()
        .expect("cordon runs")
}

fn shipped_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("playbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let line = text.lines().find(|l| l.starts_with("name: ")).unwrap();
            line["name: ".len()..].trim().to_string()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_shipped_playbook_matches_its_golden_state_machine() {
    let out_dir = std::env::temp_dir().join(format!("cordon-asl-{}", std::process::id()));
    let out = cordon(&["export-asl", "--all", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    for name in shipped_names() {
        let file = format!("{name}.asl.json");
        let text = std::fs::read_to_string(out_dir.join(&file)).expect("written by --all");
        golden::check(&golden_dir().join(&file), &text);
        // One playbook by name prints the same document.
        let one = cordon(&["export-asl", &name]);
        assert_eq!(one.status.code(), Some(0));
        assert_eq!(String::from_utf8(one.stdout).unwrap(), text, "{name}");
        files.push(file);
    }
    std::fs::remove_dir_all(&out_dir).ok();
    golden::assert_exactly(&golden_dir(), &files);
}

#[test]
fn a_playbook_file_and_a_lambda_arn_are_taken() {
    let arn = "arn:aws:lambda:eu-west-1:111122223333:function:cordon:live";
    let out = cordon(&[
        "export-asl",
        "playbooks/ec2-low.yaml",
        "--lambda-arn",
        arn,
        "--approval-timeout",
        "15m",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["States"]["Plan"]["Parameters"]["FunctionName"], arn);
    assert_eq!(
        value["States"]["Plan"]["Parameters"]["Payload"]["playbook"],
        "ec2-low"
    );
}

#[test]
fn bad_requests_are_refused_with_what_to_do() {
    for (args, says) in [
        (
            &["export-asl", "no-such-playbook"][..],
            "no playbook named no-such-playbook",
        ),
        (
            &["export-asl", "ec2-low", "--lambda-arn", "cordon"][..],
            "--lambda-arn \"cordon\"",
        ),
        (
            &["export-asl", "ec2-low", "--approval-timeout", "0s"][..],
            "out of range",
        ),
    ] {
        let out = cordon(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = cordon(&["export-asl", "--all"]);
    assert_eq!(out.status.code(), Some(2), "--all needs --out");
}
