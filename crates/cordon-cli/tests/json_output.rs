//! `--output json` is a public format: every command prints exactly one JSON
//! document on stdout, `format-version` first, kebab-case keys, and the
//! documents match their golden files in `tests/golden/`. Run through the
//! binary with no AWS reachable: routing and planning need none, and
//! `status`, `cases`, `resume` and `rollback` of finished cases read only the
//! journal (here the real format-1 journals of `tests/fixtures/journals-v1/`).
//! The documents that need AWS (`run`, `run --dry-run`, `triage`) have goldens
//! from unit tests in `src/output.rs`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p cordon-cli --test suite json_output::` rewrites the golden files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::golden;
use crate::schema_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
/// The output format these goldens were written in.
const OUTPUT_FORMAT: u64 = 2;
/// Keys whose keys are data, not format: action pre-states and outcomes, tag
/// maps, operation counts.
const OPAQUE: &[&str] = &[
    "pre-state",
    "outcome",
    "result",
    "tags",
    "api-calls",
    "api-rounds",
];

/// A state directory of its own, removed afterwards.
struct State(PathBuf);

impl State {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cordon-json-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Installs a format-1 fixture journal as a case; returns its case id.
    fn install(&self, fixture: &str) -> String {
        let path = format!("{ROOT}/tests/fixtures/journals-v1/{fixture}.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let case = first["event"]["plan"]["case-id"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = self.0.join("cases").join(&case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("journal.jsonl"), text).unwrap();
        case
    }

    fn journal(&self, case: &str) -> Vec<u8> {
        std::fs::read(self.0.join("cases").join(case).join("journal.jsonl")).unwrap()
    }

    /// Runs `cordon ARGS --output json`; AWS points at a closed local port.
    fn cordon(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .args(["--output", "json"])
            .current_dir(&self.0)
            .env("CORDON_STATE_DIR", &self.0)
            // The embedded set (the shipped playbooks), so the plan's
            // `playbook-set` origin is the same on every machine.
            .env_remove("CORDON_PLAYBOOKS")
            .env_remove("CORDON_EVIDENCE_BUCKET")
            .env_remove("CORDON_NOTIFY_TOPIC_ARN")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn finding(name: &str) -> String {
    format!("{ROOT}/tests/fixtures/findings/{name}")
}

/// The one document on stdout, checked for shape and against the published
/// schema `schema`; exit code 0 required.
fn one_document(out: &Output, what: &str, schema: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    only_document(out, what, schema)
}

/// The one document on stdout, whatever the exit code, checked for shape and
/// against the published schema `schema`.
fn only_document(out: &Output, what: &str, schema: &str) -> String {
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
    let document = &documents[0];
    let first = document.as_object().unwrap().keys().next().cloned();
    assert_eq!(first.as_deref(), Some("format-version"), "{what}");
    assert_eq!(document["format-version"], OUTPUT_FORMAT, "{what}");
    let bad = golden::non_kebab_keys(document, OPAQUE);
    assert!(bad.is_empty(), "{what}: keys not in kebab-case: {bad:?}");
    schema_check::assert_valid(schema, document);
    text
}

fn check(name: &str, text: &str) {
    golden::check(&Path::new(GOLDEN).join(name), text);
}

#[test]
fn route_and_plan_documents() {
    let state = State::new("route");
    let key = finding("iam-user-key.json");
    let archived = finding("ec2-medium.json");

    let route = one_document(&state.cordon(&["route", &key]), "route", "route");
    check("route.json", &route);
    assert!(route.contains("\"result\": \"matched\""), "{route}");

    let no_match = one_document(
        &state.cordon(&["route", &archived]),
        "route, no match",
        "route",
    );
    check("route-no-match.json", &no_match);
    assert!(no_match.contains("\"result\": \"no-match\""), "{no_match}");

    check(
        "plan.json",
        &one_document(&state.cordon(&["plan", &key]), "plan", "plan"),
    );

    // No playbook: `plan` and `run` answer with the route document, and nothing runs.
    let plan_none = one_document(
        &state.cordon(&["plan", &archived]),
        "plan, no match",
        "plan",
    );
    assert_eq!(plan_none, no_match);
    let run_none = one_document(&state.cordon(&["run", &archived]), "run, no match", "run");
    assert_eq!(run_none, no_match);
}

/// `also-matched` is kebab-case now; the format-1 name still reads.
#[test]
fn route_reads_its_format_1_key() {
    let old = r#"{"result":"matched","reason":{"playbook":"p","priority":1,"matched":[]},"also_matched":["q (priority 0)"]}"#;
    let route: cordon_core::route::Route = serde_json::from_str(old).unwrap();
    let now = serde_json::to_value(&route).unwrap();
    assert_eq!(now["also-matched"][0], "q (priority 0)");
}

#[test]
fn status_cases_rollback_and_resume_of_format_1_journals() {
    let state = State::new("cases");
    let fixtures = [
        "ec2-compromised-high",
        "iam-user-key-compromised",
        "iam-temporary-credentials",
    ];
    let cases: Vec<String> = fixtures.iter().map(|f| state.install(f)).collect();
    let case = &cases[2];
    let before = state.journal(case);

    let status = one_document(&state.cordon(&["status", case]), "status", "status");
    check("status.json", &status);
    let value: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(value["status"], "rolled-back");
    let journal = value["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 10);
    assert!(
        journal
            .iter()
            .all(|r| r["format-version"] == 2 && r["event"].get("duration_ms").is_none()),
        "records are shown in the current journal format"
    );

    check(
        "cases.json",
        &one_document(&state.cordon(&["cases"]), "cases", "cases"),
    );

    // Finished cases: nothing to do, and nothing written.
    check(
        "rollback.json",
        &one_document(&state.cordon(&["rollback", case]), "rollback", "run"),
    );
    check(
        "resume.json",
        &one_document(&state.cordon(&["resume", case]), "resume", "run"),
    );
    assert_eq!(
        state.journal(case),
        before,
        "a no-op must not write the journal"
    );
}

#[test]
fn every_golden_file_is_checked() {
    let names = [
        // here
        "route.json",
        "route-no-match.json",
        "plan.json",
        "status.json",
        "cases.json",
        "rollback.json",
        "resume.json",
        // src/output.rs
        "dry-run.json",
        "run.json",
        "triage.json",
    ];
    golden::assert_exactly(Path::new(GOLDEN), &names.map(String::from));
}
/// The schema check is strict: a key the schema does not declare (at the top
/// or inside a `oneOf` branch), a missing required key, a wrong type and a
/// second document on stdout all fail.
#[test]
fn the_schema_check_rejects_what_a_script_would_trip_on() {
    let state = State::new("strict");
    let out = state.cordon(&["plan", &finding("iam-user-key.json")]);
    let text = one_document(&out, "plan", "plan");
    let plan: Value = serde_json::from_str(&text).unwrap();
    let schema = schema_check::published("plan");
    assert!(schema_check::violations(&schema, &plan).is_empty());

    let mut extra = plan.clone();
    extra["surprise"] = Value::from(1);
    let mut nested = plan.clone();
    nested["steps"][0]["target"]["surprise"] = Value::from(1);
    let mut missing = plan.clone();
    missing.as_object_mut().unwrap().remove("steps");
    let mut wrong = plan.clone();
    wrong["steps"][0]["index"] = Value::from("one");
    for (what, document) in [
        ("undeclared key", extra),
        ("undeclared key in a branch", nested),
        ("missing key", missing),
        ("wrong type", wrong),
    ] {
        assert!(
            !schema_check::violations(&schema, &document).is_empty(),
            "{what} passed the schema check"
        );
    }

    let mut twice = out.clone();
    twice.stdout.extend_from_slice(&out.stdout);
    let second = std::panic::catch_unwind(|| one_document(&twice, "plan twice", "plan"));
    assert!(second.is_err(), "two documents on stdout passed");
}

/// `doctor` with no AWS reachable: checks fail, the document is still one
/// document of its schema.
#[test]
fn doctor_document_without_aws() {
    let state = State::new("doctor");
    let out = state.cordon(&["doctor"]);
    let text = only_document(&out, "doctor", "doctor");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["ready"], false, "{text}");
}

/// A fault plan using every `when` form, as `cordon --inject-faults` reads
/// it, matches its published schema; an unknown key does not.
#[test]
fn a_fault_plan_matches_its_published_schema() {
    let text = "seed: 7\nrules:\n\
        - kind: throttling\n  operation: ec2:ModifyNetworkInterfaceAttribute\n  when: { nth: [2] }\n\
        - kind: access-denied\n  when: every\n\
        - kind: timeout-after-send\n  operation: ec2:CreateSnapshot\n  when: { random: { probability: 0.2 } }\n";
    let plan = cordon_aws::faults::FaultPlan::parse(text).unwrap();
    let document = serde_json::to_value(&plan).unwrap();
    schema_check::assert_valid("fault-plan", &document);
    let mut extra = document.clone();
    extra["rules"][0]["extra"] = Value::from(1);
    assert!(!schema_check::violations(&schema_check::published("fault-plan"), &extra).is_empty());
}

/// Every published schema names a document this file or `src/output.rs`
/// checks a real document against.
#[test]
fn every_published_schema_is_exercised() {
    let mut names: Vec<String> = std::fs::read_dir(format!("{ROOT}/docs/schemas"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let exercised = [
        // here
        "cases",
        "doctor",
        "plan",
        "route",
        "run",
        "status",        // tests/task_token.rs
        "task-approval", // src/output.rs
        "dry-run",
        "triage", // src/report.rs
        "report", // tests/gameday.rs (the shipped scenarios' `faults:` are fault plans)
        "gameday-scenario",
        "gameday-scorecard",
        "fault-plan",
    ];
    let mut expected: Vec<String> = exercised
        .iter()
        .map(|n| format!("{n}.schema.json"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}
