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
    let cells = all_cells(&aws, &kinds).await;
    let tally = run(&aws, &cells).await;
    println!("{}", tally.summary());
    println!("fault matrix took {:.0}s", started.elapsed().as_secs_f64());
    assert!(tally.failures.is_empty(), "{}", tally.summary());
}
