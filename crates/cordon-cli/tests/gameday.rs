//! Every shipped Game Day scenario passes on the emulator, run as a responder
//! runs it: `cordon gameday run gameday/NAME.yaml` (which starts its own
//! emulator and runs cordon as a child process). The burst runs reduced
//! (`--scale 5`); `scripts/bench`-style full runs use the file as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::schema_check;

/// Every scenario in `gameday/`, each with a test below.
const SHIPPED: &[&str] = &[
    "burst-50",
    "crypto-miner",
    "crypto-miner-killed-mid-isolation",
    "demo-instance-and-key",
    "instance-credentials-outside-aws",
    "instance-credentials-throttling-storm",
    "leaked-key",
    "leaked-key-access-denied",
    "two-findings-one-instance",
    "user-temporary-credentials",
];

fn repo() -> PathBuf {
    cordon_tests::repo_root()
}

/// Runs `cordon gameday ARGS`; the exit code and the scorecard JSON (`--output json`).
fn gameday(args: &[&str], out: &Path) -> (Option<i32>, Value) {
    let run = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("gameday")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--emulator")
        .arg(cordon_tests::moto_server_path())
        .args(["--output", "json"])
        .current_dir(repo())
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("cordon runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let card = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no scorecard ({e}); stdout: {stdout}\nstderr: {}\ncordon.log: {}",
            String::from_utf8_lossy(&run.stderr),
            std::fs::read_to_string(out.join("cordon.log")).unwrap_or_default()
        )
    });
    (run.status.code(), card)
}

fn failures(card: &Value) -> Vec<String> {
    card["expectations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["passed"] == false)
        .map(|e| format!("{} (actual: {})", e["expectation"], e["actual"]))
        .collect()
}

/// Runs a shipped scenario and asserts it passed, with the scorecard files.
fn shipped(name: &str, extra: &[&str]) -> Value {
    let out = cordon_tests::scratch_dir(&format!("gameday-{name}"));
    let file = format!("gameday/{name}.yaml");
    let mut args = vec!["run", file.as_str()];
    args.extend_from_slice(extra);
    let (code, card) = gameday(&args, &out);
    assert_eq!(
        (code, card["passed"].as_bool()),
        (Some(0), Some(true)),
        "{name} failed: {:#?}\nrollback differences: {}\ncleanup: {}",
        failures(&card),
        card["rollback"]["differences"],
        card["cleanup-failed"]
    );
    assert_eq!(card["scenario"], name);
    assert_eq!(
        card["rollback"]["restored"], card["rollback"]["resources"],
        "every resource restored"
    );
    let md = std::fs::read_to_string(out.join("scorecard.md")).expect("scorecard.md");
    assert!(md.contains("```mermaid\ngantt"), "{md}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("scorecard.json")).expect("scorecard.json"),
    )
    .expect("JSON");
    assert_eq!(json, card, "the file is what was printed");
    schema_check::assert_valid("gameday-scorecard", &card);
    card
}

fn contained_every_case(card: &Value) {
    for case in card["cases"].as_array().expect("cases") {
        assert!(
            case["time-to-contain-ms"].is_u64(),
            "time to contain measured: {case}"
        );
        assert_eq!(case["rollback-status"], "rolled-back", "{case}");
    }
}

#[test]
fn every_scenario_file_is_valid_and_tested() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("gameday"))
        .expect("gameday/")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "yaml").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    found.sort();
    assert_eq!(found, SHIPPED, "each shipped scenario has a test here");
    for name in SHIPPED {
        let text =
            std::fs::read_to_string(repo().join(format!("gameday/{name}.yaml"))).expect("scenario");
        let doc = cordon_core::yaml::parse(&text).expect("YAML");
        schema_check::assert_valid("gameday-scenario", &doc.value);
        if let Some(plan) = doc.value.get("faults") {
            schema_check::assert_valid("fault-plan", plan);
        }
    }
    let files: Vec<String> = SHIPPED
        .iter()
        .map(|n| format!("gameday/{n}.yaml"))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["gameday", "validate"])
        .args(&files)
        .current_dir(repo())
        .output()
        .expect("cordon runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_invalid_scenario_is_refused_with_file_line_and_column_before_anything_runs() {
    let dir = cordon_tests::scratch_dir("gameday-invalid");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\nenvironment: {}\nfindings:\n  - {instance: ghost}\nexpect: {}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["gameday", "run"])
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--emulator")
        .arg(dir.join("no-such-emulator"))
        .output()
        .expect("cordon runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:4:6: findings[0].instance: no instance named `ghost`"),
        "{stderr}"
    );
    assert!(!dir.join("out").exists(), "nothing ran");
}

#[test]
fn the_scenario_schema_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["schema", "--scenario"])
        .output()
        .expect("cordon runs");
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        schema["properties"]["process-faults"].is_object(),
        "{schema}"
    );
    assert!(schema["properties"]["faults"].is_object(), "{schema}");
}

#[test]
fn crypto_miner() {
    let card = shipped("crypto-miner", &[]);
    contained_every_case(&card);
    let rounds = card["api-rounds"].as_u64().expect("rounds counted");
    assert!(
        (4..=card["api-calls"].as_u64().unwrap_or(0)).contains(&rounds),
        "at least isolation's 4 rounds, at most one per call: {rounds}"
    );
    assert_eq!(card["evidence"][0]["verified"], true);
    assert!(card["time-to-evidence-ms"].is_u64());
}

#[test]
fn crypto_miner_killed_mid_isolation() {
    let card = shipped("crypto-miner-killed-mid-isolation", &[]);
    contained_every_case(&card);
    let fault = card["faults"][0]["fault"].as_str().expect("a fault");
    assert!(fault.starts_with("SIGKILL at journal record 3"), "{fault}");
}

#[test]
fn demo_instance_and_key() {
    let card = shipped("demo-instance-and-key", &[]);
    contained_every_case(&card);
    assert_eq!(card["cases"].as_array().map(Vec::len), Some(2));
}

#[test]
fn leaked_key() {
    let card = shipped("leaked-key", &[]);
    contained_every_case(&card);
}

#[test]
fn leaked_key_access_denied() {
    let card = shipped("leaked-key-access-denied", &[]);
    assert_eq!(card["faults"][0]["layer"], "aws");
    assert!(
        card["faults"][0]["fault"]
            .as_str()
            .is_some_and(|f| f.contains("access-denied") && f.contains("iam:CreateAccessKey")),
        "{}",
        card["faults"]
    );
}

#[test]
fn instance_credentials_outside_aws() {
    let card = shipped("instance-credentials-outside-aws", &[]);
    contained_every_case(&card);
}

#[test]
fn instance_credentials_throttling_storm() {
    let card = shipped("instance-credentials-throttling-storm", &[]);
    contained_every_case(&card);
    assert!(
        card["throttled"].as_u64() >= Some(3),
        "{}",
        card["throttled"]
    );
    assert!(card["faults"].as_array().is_some_and(|f| f.len() >= 3));
}

#[test]
fn user_temporary_credentials() {
    let card = shipped("user-temporary-credentials", &[]);
    contained_every_case(&card);
}

#[test]
fn two_findings_one_instance() {
    let card = shipped("two-findings-one-instance", &[]);
    assert_eq!(card["cases"].as_array().map(Vec::len), Some(2));
}

#[test]
fn burst_50_reduced() {
    let card = shipped("burst-50", &["--scale", "5"]);
    assert_eq!(card["cases"].as_array().map(Vec::len), Some(5));
    contained_every_case(&card);
}

#[test]
fn a_scenario_whose_expectation_fails_exits_1_and_the_report_counts_it() {
    let dir = cordon_tests::scratch_dir("gameday-failing");
    let text = std::fs::read_to_string(repo().join("gameday/user-temporary-credentials.yaml"))
        .expect("scenario");
    let wrong = text
        .replace(
            "name: user-temporary-credentials",
            "name: expects-the-wrong-thing",
        )
        .replace("      keys: active", "      keys: inactive");
    let file = dir.join("wrong.yaml");
    std::fs::write(&file, wrong).expect("write");
    let runs = dir.join("runs");
    let file_arg = file.display().to_string();
    let (code, card) = gameday(&["run", &file_arg], &runs.join("wrong"));
    assert_eq!(code, Some(1), "a failed expectation fails the Game Day");
    assert_eq!(card["passed"], false);
    assert_eq!(
        failures(&card),
        vec![
            "\"users.analyst.keys = inactive (every key the environment gave)\" (actual: \"false (statuses: Active)\")"
        ]
    );
    assert_eq!(
        card["cleanup-failed"],
        serde_json::json!([]),
        "cleaned up anyway"
    );

    let report = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["gameday", "report"])
        .arg(&runs)
        .args(["--output", "json"])
        .output()
        .expect("cordon runs");
    assert!(report.status.success());
    let kpis: Value = serde_json::from_slice(&report.stdout).expect("JSON");
    assert_eq!(kpis["game-days"], 1);
    assert_eq!(kpis["passed"], 0);
    assert_eq!(kpis["success-rate"], 0.0);
    assert_eq!(kpis["time-to-contain-ms"]["count"], 1);
}

/// A shipped scenario with `edit` applied to its text, run from a scratch file.
fn edited(name: &str, as_name: &str, edit: impl Fn(String) -> String) -> (Option<i32>, Value) {
    let dir = cordon_tests::scratch_dir(&format!("gameday-{as_name}"));
    let text =
        std::fs::read_to_string(repo().join(format!("gameday/{name}.yaml"))).expect("scenario");
    let text = edit(text.replacen(&format!("name: {name}\n"), &format!("name: {as_name}\n"), 1));
    let file = dir.join(format!("{as_name}.yaml"));
    std::fs::write(&file, text).expect("write");
    let file_arg = file.display().to_string();
    gameday(&["run", &file_arg], &dir.join("out"))
}

#[test]
fn a_round_trip_budget_is_enforced_like_the_call_budget() {
    let (code, card) = edited("leaked-key", "leaked-key-few-rounds", |text| {
        text.replace("  max-api-rounds: 35", "  max-api-rounds: 2")
    });
    assert_eq!(code, Some(1), "the budget fails the Game Day");
    let failed = failures(&card);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0].starts_with("\"max-api-rounds = 2\""),
        "{failed:#?}"
    );
    assert!(
        card["api-rounds"].as_u64() > Some(2),
        "{}",
        card["api-rounds"]
    );
}

#[test]
fn sigterm_during_isolation_phase_1_finishes_the_step_then_resume_contains() {
    let (code, card) = edited("crypto-miner", "crypto-miner-sigterm", |text| {
        text.replace(
            "findings:\n",
            "process-faults:\n  - sigterm-in-isolation-phase1: {}\nfindings:\n",
        )
    });
    assert_eq!(code, Some(0), "{:#?}", failures(&card));
    let fault = card["faults"][0]["fault"].as_str().expect("a fault");
    assert!(
        fault.starts_with("SIGTERM during isolation phase 1"),
        "{fault}"
    );
    contained_every_case(&card);
}

#[test]
fn a_refused_approval_is_answered_from_another_process_and_the_case_stops() {
    let (code, card) = edited("leaked-key", "leaked-key-refused", |text| {
        text.replace("    quarantine: grant", "    quarantine: refuse")
            .replace("expect:\n", "expect:\n  cases: {leaked-key: stopped}\n")
            .replace("      policies-added: true", "      policies-added: false")
    });
    assert_eq!(code, Some(0), "{:#?}", failures(&card));
    let approval = &card["approvals"][0];
    assert_eq!(approval["step"], "quarantine");
    assert_eq!(approval["answer"], "refused");
    assert!(
        approval["waited-ms"].as_u64() < Some(60_000),
        "answered, not timed out: {approval}"
    );
}

#[test]
fn an_unanswered_approval_times_out_and_the_case_stops() {
    let (code, card) = edited("leaked-key", "leaked-key-timed-out", |text| {
        text.replace(
            "    quarantine: grant",
            "    quarantine: time-out\n  timeout-seconds: 1",
        )
        .replace("expect:\n", "expect:\n  cases: {leaked-key: stopped}\n")
        .replace("      policies-added: true", "      policies-added: false")
    });
    assert_eq!(code, Some(0), "{:#?}", failures(&card));
    assert_eq!(
        card["approvals"][0]["answer"], "timed-out",
        "{}",
        card["approvals"]
    );
    assert!(card["approvals"][0]["waited-ms"].as_u64() >= Some(1000));
    assert!(card["approval-wait-ms"].as_u64() >= Some(1000));
}
