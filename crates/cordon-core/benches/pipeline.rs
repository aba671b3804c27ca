//! parse + route + plan per finding: the work cordon does before its first
//! API call, which a burst of findings pays once per finding (issue 11
//! target: at most 50 µs per finding).
//!
//! `scripts/bench` reads criterion's estimates from
//! `$CARGO_TARGET_DIR/criterion/per-finding/*/new/estimates.json`.

use std::hint::black_box;
use std::path::Path;

use cordon_core::finding::{Finding, parse_single_finding};
use cordon_core::plan::{Plan, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::{Route, route};
use cordon_core::validate::load_playbooks;
use criterion::{Criterion, criterion_group, criterion_main};

/// Findings that exercise the shipped playbooks: an EventBridge event and a
/// bare finding for a two-ENI instance, and a leaked IAM user key.
const FINDINGS: [(&str, &str); 3] = [
    (
        "event-ec2-high",
        include_str!("../../../tests/fixtures/findings/event-ec2-high.json"),
    ),
    (
        "instance-two-enis",
        include_str!("../../../tests/fixtures/findings/instance-two-enis.json"),
    ),
    (
        "iam-user-key",
        include_str!("../../../tests/fixtures/findings/iam-user-key.json"),
    ),
];

fn shipped_playbooks() -> Vec<Playbook> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    match load_playbooks(&dir) {
        Ok(loaded) => loaded.into_iter().map(|l| l.playbook).collect(),
        Err(problems) => panic!("the shipped playbooks do not validate: {problems:?}"),
    }
}

fn parse(raw: &str) -> Finding {
    match parse_single_finding(raw, "bench") {
        Ok(finding) => finding,
        Err(e) => panic!("bench finding does not parse: {e}"),
    }
}

fn route_and_plan(finding: &Finding, playbooks: &[Playbook]) -> Plan {
    match route(finding, playbooks) {
        (Route::Matched { reason, .. }, Some(playbook)) => plan(finding, playbook, reason),
        (other, _) => panic!("bench finding matches no playbook: {other:?}"),
    }
}

fn per_finding(c: &mut Criterion) {
    let playbooks = shipped_playbooks();
    let mut group = c.benchmark_group("per-finding");
    for (name, raw) in FINDINGS {
        group.bench_function(format!("parse-route-plan/{name}"), |b| {
            b.iter(|| route_and_plan(&parse(black_box(raw)), black_box(&playbooks)))
        });
        let finding = parse(raw);
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| parse(black_box(raw)))
        });
        group.bench_function(format!("route-plan/{name}"), |b| {
            b.iter(|| route_and_plan(black_box(&finding), black_box(&playbooks)))
        });
    }
    group.finish();
}

criterion_group!(benches, per_finding);
criterion_main!(benches);
