//! Journals written before pre-states and outcomes were typed and kebab-case
//! (`tests/fixtures/journals-v1`, real journals in that format) stay readable:
//! every journaled pre-state, outcome and rollback result decodes into the
//! handler types of its step's action, which is what `resume` and `rollback`
//! read. Decoded and written again, each value is the same as before but for
//! its keys, now kebab-case: no field was lost on the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use cordon_aws::actions::{Journaled, decode_journaled};
use cordon_core::action::{Action, ActionKind};
use serde::Deserialize;
use serde_json::{Value, json};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/journals-v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// `value` with every key spelled kebab-case and null fields left out (the
/// new types omit some absent values the old code wrote as null). Fine for
/// these fixtures: none of their user-data keys (tag keys) holds a `_`.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.replace('_', "-"), normalized(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// The journaled values of one record: (what, value), by the v1 keys.
fn journaled(event: &Value) -> Vec<(Journaled, &Value)> {
    let mut out = Vec::new();
    if let Some(pre) = event.get("pre_state") {
        out.push((Journaled::PreState, pre));
    }
    if let Some(outcome) = event.get("outcome") {
        out.push((Journaled::Outcome, outcome));
    }
    if event["event"] == "step-rolled-back"
        && let Some(result) = event.get("result")
    {
        out.push((Journaled::Undone, result));
    }
    out
}

#[test]
fn every_journaled_value_of_the_v1_journals_decodes() {
    let files = fixtures();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut kinds_seen: BTreeSet<ActionKind> = BTreeSet::new();
    let mut decoded = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut actions: BTreeMap<String, Action> = BTreeMap::new();
        for (line, record) in text.lines().enumerate() {
            let record: Value = serde_json::from_str(record)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), line + 1));
            let event = &record["event"];
            if event["event"] == "case-opened" {
                for step in event["plan"]["steps"].as_array().unwrap() {
                    let action = Action::deserialize(&step["action"]).unwrap();
                    actions.insert(step["id"].as_str().unwrap().to_string(), action);
                }
            }
            for (part, value) in journaled(event) {
                let step = event["step"].as_str().unwrap();
                let action = actions
                    .get(step)
                    .unwrap_or_else(|| panic!("{}: no plan step {step}", path.display()));
                let written = decode_journaled(action, step, part, value).unwrap_or_else(|e| {
                    panic!("{}:{}: {part:?} of {step}: {e}", path.display(), line + 1)
                });
                assert_eq!(
                    normalized(&written),
                    normalized(value),
                    "{}:{}: {part:?} of {step} changed on the way through its type",
                    path.display(),
                    line + 1
                );
                assert!(
                    !written.to_string().contains("_id\""),
                    "{}:{}: {written}",
                    path.display(),
                    line + 1
                );
                kinds_seen.insert(action.kind());
                decoded += 1;
            }
        }
    }
    // Ten EC2 steps and four IAM steps, each with a pre-state, an outcome and
    // a rollback result.
    assert_eq!(decoded, 14 * 3);
    assert_eq!(kinds_seen.len(), 14, "{kinds_seen:?}");
}

#[test]
fn a_mangled_value_is_refused_with_the_step_named() {
    let action = Action::from_parts(ActionKind::IsolateInstance, None).unwrap();
    let err = decode_journaled(
        &action,
        "isolate",
        Journaled::PreState,
        &json!({"interfaces": []}),
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("pre-state of step `isolate` is unreadable"),
        "{err}"
    );
}

#[test]
fn notify_pre_states_of_either_spelling_decode() {
    // No v1 fixture has a notify step; its pre-state was snake_case then.
    let action = Action::from_parts(ActionKind::Notify, None).unwrap();
    for pre in [
        json!({"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "subject": "s"}),
        json!({"topic-arn": "arn:aws:sns:us-east-1:123456789012:t", "subject": "s"}),
    ] {
        let written = decode_journaled(&action, "notify", Journaled::PreState, &pre).unwrap();
        assert_eq!(written["topic-arn"], "arn:aws:sns:us-east-1:123456789012:t");
    }
}
