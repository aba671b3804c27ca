//! Playbook loading under hostile input: an alias bomb, deep nesting, a huge
//! file, out-of-range numbers. Each must fail fast with a located error, in
//! bounded memory.
//!
//! The counting allocator below caps this test binary at 1 GiB (an allocation
//! past it aborts the binary: the test fails instead of the machine running
//! out of memory) and records the peak, which every test bounds far lower.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use cordon_core::validate::{Problem, load_playbooks, validate_text};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, 1024 * 1024 * 1024);

/// Peak heap of the whole test binary (all tests, as they run in parallel).
const PEAK_LIMIT: usize = 256 * 1024 * 1024;

fn assert_bounded(what: &str) {
    let peak = ALLOCATOR.max_allocated();
    assert!(
        peak < PEAK_LIMIT,
        "{what}: the heap peaked at {} MiB",
        peak / (1024 * 1024)
    );
}

fn problems(text: &str) -> (Vec<Problem>, Duration) {
    let started = Instant::now();
    let result = validate_text(text, "hostile.yaml");
    let took = started.elapsed();
    (
        result.expect_err("a hostile playbook must be refused"),
        took,
    )
}

/// The classic "billion laughs", as YAML: each anchor is a list of ten
/// aliases to the one before, so `n` levels expand to 10^n nodes.
fn alias_bomb(levels: usize) -> String {
    let mut text = String::from("name: laughs\nlaugh0: &laugh0 \"lol\"\n");
    for level in 1..=levels {
        let refs = vec![format!("*laugh{}", level - 1); 10].join(", ");
        text.push_str(&format!("laugh{level}: &laugh{level} [{refs}]\n"));
    }
    text
}

#[test]
fn a_small_alias_bomb_is_refused_at_once() {
    let bomb = alias_bomb(14);
    assert!(
        (1_500..=1_700).contains(&bomb.len()),
        "the bomb is {} bytes",
        bomb.len()
    );
    let (problems, took) = problems(&bomb);
    assert!(
        took < Duration::from_millis(500),
        "took {took:?} to refuse the bomb"
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let shown = problems[0].to_string();
    assert!(
        shown.starts_with("hostile.yaml:") && shown.contains("expands to more than"),
        "{shown}"
    );
    assert!(problems[0].location.is_some(), "{shown}");
    assert_bounded("alias bomb");
}

#[test]
fn aliases_within_the_budget_still_work() {
    // A handful of aliases, as people use them to share a retry policy.
    let text = "name: shared-retry\nmatch: {finding-types: [\"*:EC2/*\"]}\nsteps:\n\
                - {id: a, action: notify, retry: &retry {max-attempts: 3, initial-backoff-ms: 100}}\n\
                - {id: b, action: notify, retry: *retry}\n";
    let (playbook, _) = validate_text(text, "shared-retry.yaml").unwrap();
    assert_eq!(playbook.steps[1].retry.max_attempts, 3);
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    for (what, text) in [
        ("block sequences", "- ".repeat(200_000) + "x\n"),
        ("flow sequences", "[".repeat(200) + &"]".repeat(200)),
        (
            "block mappings",
            (0..5_000)
                .map(|depth| format!("{}k{depth}:\n", "  ".repeat(depth)))
                .collect::<String>(),
        ),
    ] {
        let (problems, took) = problems(&text);
        assert_eq!(problems.len(), 1, "{what}: {problems:#?}");
        assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    }
    assert_bounded("deep nesting");
}

#[test]
fn nesting_through_aliases_counts_too() {
    // Each level nests the previous one: 20 levels of 5 deep is 100 deep.
    let mut text = String::from("a0: &a0 [[[[[x]]]]]\n");
    for level in 1..20 {
        text.push_str(&format!("a{level}: &a{level} [[[[[*a{}]]]]]\n", level - 1));
    }
    let (problems, _) = problems(&text);
    assert!(
        problems[0].message.contains("nesting deeper than"),
        "{problems:#?}"
    );
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read_whole() {
    // Twice the 1 MiB limit.
    let huge = format!(
        "name: big\ndescription: \"{}\"\n",
        "x".repeat(2 * 1024 * 1024)
    );
    let (problems, _) = problems(&huge);
    assert!(
        problems[0].message.contains("byte limit for a playbook"),
        "{problems:#?}"
    );
    let dir = std::env::temp_dir().join(format!("cordon-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.yaml");
    std::fs::write(&file, &huge).unwrap();
    let problems = load_playbooks(&file).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].message.contains("byte limit for a playbook"),
        "{problems:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_bounded("oversized file");
}

#[test]
fn long_keys_over_many_nodes_cannot_multiply_paths() {
    // Every element's path repeats the 500 KB key: 400 of them would be 200 MB of paths.
    // (An explicit `? key` lifts YAML's 1024-character limit on implicit keys.)
    let text = format!(
        "? \"{}\"\n: [{}]\n",
        "k".repeat(500_000),
        vec!["0"; 400].join(",")
    );
    let (problems, took) = problems(&text);
    assert!(
        problems[0].message.contains("bytes of paths"),
        "{problems:#?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_bounded("long keys");
}

fn playbook_with(step: &str) -> String {
    format!(
        "name: bounded\nmatch: {{finding-types: [\"*:EC2/*\"], resource-types: [Instance]}}\npriority: 5\nsteps:\n{step}"
    )
}

#[test]
fn every_numeric_parameter_is_bounded() {
    let cases = [
        (
            "  - id: snap\n    action: snapshot-volumes\n    with: {wait: true, wait-timeout-seconds: 99999999}\n",
            "steps[0].with.wait-timeout-seconds",
            7,
        ),
        (
            "  - id: enrich\n    action: enrich-with-detective\n    with: {lookback-hours: 100000}\n",
            "steps[0].with.lookback-hours",
            7,
        ),
        (
            "  - id: enrich\n    action: enrich-with-detective\n    with: {timeout-seconds: 0}\n",
            "steps[0].with.timeout-seconds",
            7,
        ),
        (
            "  - id: n\n    action: notify\n    retry: {max-attempts: 1000}\n",
            "steps[0].retry.max-attempts",
            7,
        ),
        (
            "  - id: n\n    action: notify\n    retry: {initial-backoff-ms: 1, max-backoff-ms: 86400000}\n",
            "steps[0].retry.max-backoff-ms",
            7,
        ),
    ];
    for (step, path, line) in cases {
        let text = playbook_with(step);
        let problems = validate_text(&text, "bounded.yaml").unwrap_err();
        assert_eq!(problems.len(), 1, "{path}: {problems:#?}");
        let problem = &problems[0];
        assert_eq!(problem.path, path);
        assert_eq!(problem.location.map(|(l, _)| l), Some(line), "{problem}");
        assert!(
            problem.message.contains("out of range: allowed"),
            "{problem}"
        );
        assert!(problem.hint.is_some(), "{problem}");
    }
    let text = playbook_with("  - id: n\n    action: notify\n")
        .replace("priority: 5", "priority: 2000000000");
    let problems = validate_text(&text, "bounded.yaml").unwrap_err();
    assert_eq!(problems[0].path, "priority", "{problems:#?}");
    assert_eq!(problems[0].location, Some((3, 1)));
}

#[test]
fn step_ids_with_invisible_characters_are_refused() {
    let text = playbook_with("  - id: \"isolate\\e[8m\"\n    action: notify\n");
    let problems = validate_text(&text, "ids.yaml").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, "steps[0].id");
    assert!(
        !problems[0].to_string().contains('\u{1b}'),
        "{}",
        problems[0]
    );
}
