//! The fault matrix of issue 14 (see `cordon_tests::fault_matrix`): a
//! seeded sample in `scripts/test`, the whole matrix in `scripts/fault-matrix`.
//! Kill cells need the binary built with `--features cordon-cli/crash-hooks`
//! (both scripts build it so).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use cordon_aws::faults::FaultKind;
use cordon_tests::fault_matrix::{
    Cell, Tally, Target, clean_run, fault_cells, kill_cells, run_cell,
};
use serde_json::Value;

/// The binary kill cells run: this build's, or the copy `scripts/fault-matrix`
/// names in `FAULT_MATRIX_CORDON` (so a rebuild meanwhile cannot replace it).
fn cordon() -> PathBuf {
    std::env::var_os("FAULT_MATRIX_CORDON").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_cordon")),
        PathBuf::from,
    )
}

/// Every cell of both targets: each fault kind at each (operation, ordinal)
/// of the clean run, and a kill after each journal record.
async fn all_cells(aws: &cordon_tests::EmulatorGuard, kinds: &[FaultKind]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for target in Target::ALL {
        let clean = clean_run(aws, target).await;
        eprintln!(
            "{}: clean run made {} calls and {} journal records",
            target.playbook(),
            clean.calls.len(),
            clean.records
        );
        cells.extend(fault_cells(target, &clean, kinds));
        cells.extend(kill_cells(target, &clean));
    }
    cells
}

/// SplitMix64: a fixed seed picks the same cells on every machine.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn run(aws: &cordon_tests::EmulatorGuard, cells: &[Cell]) -> Tally {
    let mut tally = Tally::default();
    for (i, cell) in cells.iter().enumerate() {
        let outcome = run_cell(aws, cell, &cordon()).await;
        eprintln!(
            "[{}/{}] {cell}: {} in {:.1}s{}",
            i + 1,
            cells.len(),
            outcome
                .ending
                .map_or("OUTSIDE the allowed states".to_string(), |e| e.to_string()),
            outcome.elapsed.as_secs_f64(),
            if outcome.problems.is_empty() {
                String::new()
            } else {
                format!(": {}", outcome.problems.join("; "))
            }
        );
        tally.add(&outcome);
    }
    tally
}

/// The seeded sample `scripts/test` runs: a few cells of every kind, on
/// both playbooks, the same cells every time.
#[tokio::test]
async fn a_seeded_sample_of_the_fault_matrix_ends_in_allowed_states() {
    const SEED: u64 = 14;
    const PER_TARGET_FAULTS: usize = 7;
    const PER_TARGET_KILLS: usize = 2;
    let started = Instant::now();
    let aws = cordon_tests::emulator().await;
    // The timeouts cost an attempt's full budget each; the sample keeps one of each kind per target.
    let cells = all_cells(&aws, &FaultKind::ALL).await;
    let mut state = SEED;
    let mut sample = Vec::new();
    for target in Target::ALL {
        for kind in FaultKind::ALL {
            let of_kind: Vec<&Cell> = cells
                .iter()
                .filter(|c| matches!(c, Cell::Fault { target: t, kind: k, .. } if *t == target && *k == kind))
                .collect();
            let pick = of_kind[(next(&mut state) % of_kind.len() as u64) as usize];
            sample.push(pick.clone());
        }
        let kills: Vec<&Cell> = cells
            .iter()
            .filter(|c| matches!(c, Cell::Kill { target: t, .. } if *t == target))
            .collect();
        for _ in 0..PER_TARGET_KILLS {
            sample.push(kills[(next(&mut state) % kills.len() as u64) as usize].clone());
        }
    }
    assert_eq!(
        sample.len(),
        Target::ALL.len() * (PER_TARGET_FAULTS + PER_TARGET_KILLS)
    );
    let tally = run(&aws, &sample).await;
    eprintln!("{}", tally.summary());
    eprintln!("sample took {:.1}s", started.elapsed().as_secs_f64());
    assert!(tally.failures.is_empty(), "{}", tally.summary());
}

/// The whole matrix: `scripts/fault-matrix` runs it (ignored otherwise; it
/// takes many minutes). `FAULT_MATRIX_KINDS=throttling,timeout` limits the kinds.
#[tokio::test]
#[ignore = "the full matrix takes many minutes: scripts/fault-matrix"]
async fn full_fault_matrix() {
    let started = Instant::now();
    let aws = cordon_tests::emulator().await;
    let kinds: Vec<FaultKind> = match std::env::var("FAULT_MATRIX_KINDS") {
        Ok(list) if !list.is_empty() => list
            .split(',')
            .map(|k| serde_json::from_value(Value::from(k.trim())).expect("a fault kind"))
            .collect(),
        _ => FaultKind::ALL.to_vec(),
    };
    let mut cells = all_cells(&aws, &kinds).await;
    // `FAULT_MATRIX_CELLS="access-denied on ec2:ModifyNetworkInterfaceAttribute"`
    // re-runs the cells whose description contains one of the `;`-separated texts.
    if let Ok(only) = std::env::var("FAULT_MATRIX_CELLS") {
        cells.retain(|cell| {
            only.split(';')
                .any(|text| cell.to_string().contains(text.trim()))
        });
    }
    // `FAULT_MATRIX_DONE=LOG` skips the cells an interrupted run's output
    // (LOG) shows finished, to complete it.
    if let Ok(log) = std::env::var("FAULT_MATRIX_DONE") {
        let log = std::fs::read_to_string(&log).expect("FAULT_MATRIX_DONE names a readable log");
        let done: Vec<&str> = log
            .lines()
            .filter(|line| line.starts_with('['))
            .filter_map(|line| line.split_once("] ").map(|(_, rest)| rest))
            .collect();
        cells.retain(|cell| {
            let prefix = format!("{cell}: ");
            !done.iter().any(|line| line.starts_with(&prefix))
        });
    }
    let tally = run(&aws, &cells).await;
    println!("{}", tally.summary());
    println!("fault matrix took {:.0}s", started.elapsed().as_secs_f64());
    assert!(tally.failures.is_empty(), "{}", tally.summary());
}

/// `--inject-faults` and `--fault-log` on the binary: one warning line, the
/// fault in the run's JSON document and in the log, and the run still
/// contains (a throttled first attempt is retried).
#[tokio::test]
async fn inject_faults_warns_logs_and_reports_what_it_injected() {
    let aws = cordon_tests::emulator().await;
    let spec = serde_json::from_value(serde_json::json!({
        "users": [{"name": "deploy-bot", "access-keys": 1}]
    }))
    .unwrap();
    let fixture = cordon_gameday::provision(aws.clients(), &spec)
        .await
        .unwrap();
    cordon_tests::create_quarantine_policy(aws.clients()).await;
    let dir = cordon_tests::scratch_dir("inject-faults-cli");
    let finding = dir.join("finding.json");
    std::fs::write(
        &finding,
        fixture
            .access_key_finding("deploy-bot")
            .unwrap()
            .detail()
            .to_string(),
    )
    .unwrap();
    let plan = dir.join("faults.yaml");
    std::fs::write(
        &plan,
        "rules:\n  - kind: throttling\n    operation: iam:UpdateAccessKey\n    when: { nth: [1] }\n",
    )
    .unwrap();
    let log = dir.join("faults.jsonl");
    let cordon = |args: &[&std::ffi::OsStr]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"));
        cmd.args(args)
            .env_remove("CORDON_TEST_CRASH_AFTER_RECORD")
            .env_remove("CORDON_PLAYBOOKS");
        for (k, v) in aws.env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = cordon(&[
        "--inject-faults".as_ref(),
        plan.as_os_str(),
        "--fault-log".as_ref(),
        log.as_os_str(),
        "run".as_ref(),
        finding.as_os_str(),
        "--yes".as_ref(),
        "--output".as_ref(),
        "json".as_ref(),
        "--state-dir".as_ref(),
        dir.join("state").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARNING: injecting AWS faults"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout.rfind("\n{").map_or(0, |i| i + 1);
    let document: Value = serde_json::from_str(&stdout[start..]).unwrap();
    let injected = document["injected-faults"].as_array().unwrap().clone();
    assert_eq!(injected.len(), 1, "{document}");
    assert_eq!(injected[0]["operation"], "iam:UpdateAccessKey");
    assert_eq!(injected[0]["ordinal"], 1);
    assert_eq!(injected[0]["kind"], "throttling");
    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged, injected);
    assert_eq!(document["status"], "completed", "{document}");

    // A plan naming an operation cordon never calls: exit 2, one line, no AWS call.
    std::fs::write(
        &plan,
        r#"{"rules": [{"kind": "timeout", "operation": "ec2:TerminateInstances", "when": "every"}]}"#,
    )
    .unwrap();
    let out = cordon(&[
        "--inject-faults".as_ref(),
        plan.as_os_str(),
        "run".as_ref(),
        finding.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("fault rule 1: cordon has no operation `ec2:TerminateInstances`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
