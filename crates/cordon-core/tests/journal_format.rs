//! The journal is a public, long-lived format. These tests pin it:
//!
//! - one golden file per record kind, in the current format
//!   (`tests/golden-journal/<kind>.json`), and the same record as format 1
//!   wrote it (`tests/golden-journal/v1/<kind>.jsonl`, produced by the commit
//!   before format 2), which must still read back to the same record;
//! - the real format-1 journals in `tests/fixtures/journals-v1/` load through
//!   the local store, fold, and verify their hash chains;
//! - a case opened by format 1 and resumed by this build verifies across the
//!   boundary, and folds to what the old code recorded;
//! - a record from a newer cordon is refused with an error saying so.
//!
//! `UPDATE_GOLDEN=1 cargo test -p cordon-core --test journal_format` rewrites
//! the current-format files (never the v1 ones: those are history).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/golden.rs"]
mod golden;

use std::path::{Path, PathBuf};

use cordon_core::action::UndoGate;
use cordon_core::executor::{ActionError, Actions, Approver, Decision, Executor};
use cordon_core::finding::parse_single_finding;
use cordon_core::journal::{
    BASE_FORMAT_VERSION, CaseState, CaseStatus, ErrorRecord, FORMAT_VERSION, GENESIS_HASH,
    JournalError, JournalEvent, JournalEventKind, JournalRecord, JournalStore,
    RESTRICTED_FORMAT_VERSION, verify_chain,
};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan, PlannedStep, plan};
use cordon_core::route::RouteReason;
use cordon_core::validate::validate_text;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strum::IntoEnumIterator;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden-journal");
const V1_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/journals-v1"
);

const FINDING: &str = r#"{"schemaVersion":"2.0","accountId":"111122223333","region":"us-east-1","partition":"aws",
"id":"f00dfeedf00dfeedf00dfeedf00dfeed","type":"Backdoor:EC2/Spambot","severity":8,
"resource":{"resourceType":"Instance","instanceDetails":{"instanceId":"i-0123456789abcdef0","networkInterfaces":[]}},
"service":{"resourceRole":"ACTOR"}}"#;

const PLAYBOOK: &str = "name: golden\npriority: 1\nmatch:\n  resource-types: [Instance]\non-failure: stop\nsteps:\n  - id: tag\n    action: tag-resource\n";

fn small_plan() -> Plan {
    let finding = parse_single_finding(FINDING, "finding").unwrap();
    let playbook = validate_text(PLAYBOOK, "golden.yaml").unwrap().0;
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: vec!["resource type Instance".to_string()],
    };
    plan(&finding, &playbook, reason)
}

fn error() -> ErrorRecord {
    ErrorRecord {
        kind: "throttled".to_string(),
        resource: "i-0123456789abcdef0".to_string(),
        message: "Rate exceeded".to_string(),
        hint: "wait and resume the case".to_string(),
    }
}

/// One representative event of each kind, with every key present.
fn representative(kind: JournalEventKind) -> JournalEvent {
    let step = || "tag".to_string();
    match kind {
        JournalEventKind::CaseOpened => JournalEvent::CaseOpened {
            plan: Box::new(small_plan()),
            finding_sha256: "ab".repeat(32),
            cordon_version: "0.1.0".to_string(),
            provenance: Some(provenance()),
        },
        JournalEventKind::ApprovalRequested => JournalEvent::ApprovalRequested {
            step: step(),
            reason: "touches every session of the role".to_string(),
        },
        JournalEventKind::ApprovalGranted => JournalEvent::ApprovalGranted {
            step: step(),
            approver: "arn:aws:sts::111122223333:assumed-role/responder/alice (--yes)".to_string(),
        },
        JournalEventKind::ApprovalRefused => JournalEvent::ApprovalRefused {
            step: step(),
            approver: "arn:aws:sts::111122223333:assumed-role/responder/bob".to_string(),
            reason: "owner is on it".to_string(),
        },
        JournalEventKind::StepPrepared => JournalEvent::StepPrepared {
            step: step(),
            attempt: 1,
            pre_state: json!({"instance-id": "i-0123456789abcdef0", "tags": {"Name": "web"}}),
        },
        JournalEventKind::StepApplied => JournalEvent::StepApplied {
            step: step(),
            outcome: json!({"tagged": ["i-0123456789abcdef0"]}),
            duration_ms: 42,
        },
        JournalEventKind::StepVerified => JournalEvent::StepVerified {
            step: step(),
            duration_ms: 7,
        },
        JournalEventKind::StepFailed => JournalEvent::StepFailed {
            step: step(),
            attempt: 2,
            error: error(),
            retrying: true,
        },
        JournalEventKind::StepSkipped => JournalEvent::StepSkipped {
            step: step(),
            reason: "the finding names no instance".to_string(),
        },
        JournalEventKind::StepNotRun => JournalEvent::StepNotRun {
            step: step(),
            reason: "the case stopped before it".to_string(),
        },
        JournalEventKind::RollbackStarted => JournalEvent::RollbackStarted {
            reason: "requested from the CLI".to_string(),
        },
        JournalEventKind::StepRolledBack => JournalEvent::StepRolledBack {
            step: step(),
            epoch: None,
            result: json!({"removed-tags": ["cordon:case-id"]}),
        },
        JournalEventKind::StepRollbackVerified => JournalEvent::StepRollbackVerified {
            step: step(),
            epoch: None,
        },
        JournalEventKind::StepRollbackFailed => JournalEvent::StepRollbackFailed {
            step: step(),
            epoch: None,
            error: error(),
        },
        JournalEventKind::CaseFinished => JournalEvent::CaseFinished {
            status: CaseStatus::RollbackIncomplete,
        },
        JournalEventKind::EpochOpened => JournalEvent::EpochOpened {
            epoch: 2,
            plan: Box::new(small_plan()),
            finding_sha256: "cd".repeat(32),
            reason: "the case was rolled back and its finding arrived again".to_string(),
            provenance: Some(provenance()),
        },
        JournalEventKind::FindingUpdated => JournalEvent::FindingUpdated {
            finding_sha256: "ef".repeat(32),
            updated_at: Some("2026-01-06T16:53:02.104Z".to_string()),
            severity: 8.5,
            change: "severity 8 → 8.5".to_string(),
        },
        JournalEventKind::PlanAmended => JournalEvent::PlanAmended {
            steps: small_plan().steps,
            reason: "the finding was updated; re-planned `tag` (not yet applied)".to_string(),
        },
        JournalEventKind::StepPreStateAmended => JournalEvent::StepPreStateAmended {
            step: step(),
            pre_state: json!({"instance-id": "i-0123456789abcdef0", "tags": {"Name": "web"}}),
            added: vec!["eni-0123456789abcdef0".to_string()],
        },
        JournalEventKind::StepProgress => JournalEvent::StepProgress {
            step: step(),
            progress: json!({"phase": "untrack-begun", "network-interfaces": ["eni-0123456789abcdef0"]}),
        },
        JournalEventKind::ApprovalTimedOut => JournalEvent::ApprovalTimedOut {
            step: step(),
            waited_ms: 600_000,
        },
        JournalEventKind::CaseInterrupted => JournalEvent::CaseInterrupted {
            reason: "interrupted by a signal before step `tag`".to_string(),
        },
        JournalEventKind::UndoApproved => JournalEvent::UndoApproved {
            step: step(),
            epoch: None,
            approver: "arn:aws:sts::111122223333:assumed-role/responder/carol".to_string(),
        },
        JournalEventKind::UndoKept => JournalEvent::UndoKept {
            step: step(),
            epoch: Some(1),
            reason: "kept by the automatic rollback: undo reactivates the compromised access key"
                .to_string(),
        },
        JournalEventKind::LoopGuardTripped => JournalEvent::LoopGuardTripped {
            resources: vec!["instance:i-0123456789abcdef0".to_string()],
            reason: "instance:i-0123456789abcdef0 acted on 3 time(s) in the last 24 h (limit 3)"
                .to_string(),
        },
        JournalEventKind::FleetCapTripped => JournalEvent::FleetCapTripped {
            isolated: vec!["i-0123456789abcdef0".to_string()],
            limit: 1,
            window_seconds: 600,
            reason: "1 instance(s) isolated in the last 10 min (limit 1)".to_string(),
        },
        JournalEventKind::CasePaused => JournalEvent::CasePaused {
            before_step: step(),
            switch: "file .cordon/cases/PAUSE".to_string(),
        },
        JournalEventKind::ResourceClaimed => JournalEvent::ResourceClaimed {
            resource: "instance:i-0123456789abcdef0".to_string(),
            taken_over_from: Some(CaseId::parse("case-00112233445566778899").unwrap()),
        },
        JournalEventKind::ResourceReleased => JournalEvent::ResourceReleased {
            resource: "instance:i-0123456789abcdef0".to_string(),
        },
        JournalEventKind::ResourceBusy => JournalEvent::ResourceBusy {
            resource: "instance:i-0123456789abcdef0".to_string(),
            holder: CaseId::parse("case-00112233445566778899").unwrap(),
            reason: "instance:i-0123456789abcdef0 is held by case case-00112233445566778899 (completed) since 2026-01-06T15:50:00Z; acting on it now would record that case's containment as its original state".to_string(),
        },
    }
}

/// Every key of a case's provenance: verified at the source, acting through a
/// role assumed in the finding's account.
fn provenance() -> cordon_core::provenance::Provenance {
    cordon_core::provenance::Provenance {
        source_verified: true,
        source: Some(
            "GuardDuty GetFindings, detector 5ab6c7d8e9f00112233445566778899a in us-east-1"
                .to_string(),
        ),
        caller: Some("arn:aws:sts::111122223333:assumed-role/responder/alice".to_string()),
        assumed_role: Some("arn:aws:iam::222233334444:role/cordon-responder".to_string()),
        acting_as: Some(
            "arn:aws:sts::222233334444:assumed-role/cordon-responder/cordon-case".to_string(),
        ),
        region: Some("us-east-1".to_string()),
    }
}

fn representative_record(kind: JournalEventKind) -> JournalRecord {
    JournalRecord::new(
        3,
        "2026-01-06T15:53:02.104Z",
        "5d".repeat(32),
        representative(kind),
    )
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[test]
fn every_record_kind_matches_its_golden_file() {
    for kind in JournalEventKind::iter() {
        let record = representative_record(kind);
        let mut pretty = serde_json::to_string_pretty(&record).unwrap();
        pretty.push('\n');
        golden::check(&Path::new(GOLDEN).join(format!("{kind}.json")), &pretty);

        // What a store writes is the same document on one line, and the hash covers it.
        let stored = record.stored_text();
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(stored, serde_json::to_string(&reparsed).unwrap(), "{kind}");
        assert_eq!(record.hash(), sha256(&stored), "{kind}");
        assert_eq!(record.event.name(), kind.to_string());
        assert_eq!(reparsed["event"]["event"], kind.to_string());
        assert_eq!(reparsed["format-version"], BASE_FORMAT_VERSION);
    }
    let expected: Vec<String> = JournalEventKind::iter()
        .map(|k| format!("{k}.json"))
        .collect();
    golden::assert_exactly(Path::new(GOLDEN), &expected);
}

/// Every key of a current-format record, at any depth outside the
/// action-defined `pre-state`/`outcome`/`result` values, is kebab-case.
#[test]
fn current_records_use_kebab_case_keys_only() {
    for kind in JournalEventKind::iter() {
        let value = serde_json::to_value(representative_record(kind)).unwrap();
        let bad = golden::non_kebab_keys(&value, &["pre-state", "outcome", "result"]);
        assert!(bad.is_empty(), "{kind}: keys not in kebab-case: {bad:?}");
    }
}

/// The v1 lines were written by the commit before format 2 from these same
/// representative records: each reads back to the same record, keeping its
/// bytes (and so its hash), though this build would now write it differently.
/// The record kinds format 1 had; later kinds were never written in format 1.
const FORMAT_1_KINDS: [&str; 15] = [
    "case-opened",
    "approval-requested",
    "approval-granted",
    "approval-refused",
    "step-prepared",
    "step-applied",
    "step-verified",
    "step-failed",
    "step-skipped",
    "step-not-run",
    "rollback-started",
    "step-rolled-back",
    "step-rollback-verified",
    "step-rollback-failed",
    "case-finished",
];

#[test]
fn format_1_records_of_every_kind_still_read() {
    let dir = Path::new(GOLDEN).join("v1");
    for name in FORMAT_1_KINDS {
        let kind: JournalEventKind = name.parse().expect("a kind this build knows");
        let path = dir.join(format!("{kind}.jsonl"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let line = text
            .strip_suffix('\n')
            .expect("one line, newline-terminated");
        let record =
            JournalRecord::from_stored(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Format 1 predates the case's provenance: it reads as absent.
        let mut expected = representative_record(kind);
        if let JournalEvent::CaseOpened { provenance, .. } = &mut expected.event {
            *provenance = None;
        }
        assert_eq!(record, expected, "{kind}");
        assert_eq!(record.format_version(), 1, "{kind}");
        assert_eq!(record.stored_text(), line, "{kind}");
        assert_eq!(record.hash(), sha256(line), "{kind}");
        // Through serde (as the evidence code reads journals) the bytes are kept too.
        let via_serde: JournalRecord = serde_json::from_str(line).unwrap();
        assert_eq!(via_serde.hash(), sha256(line), "{kind}");
    }
    let steps_with_snake_keys = [
        "case-opened",
        "step-prepared",
        "step-applied",
        "step-verified",
    ];
    for kind in steps_with_snake_keys {
        let line = std::fs::read_to_string(dir.join(format!("{kind}.jsonl"))).unwrap();
        let current = representative_record(kind.parse().unwrap())
            .stored_text()
            .into_owned();
        assert_ne!(
            line.trim_end(),
            current,
            "{kind}: format 2 renamed keys of this kind"
        );
    }
}

/// A temporary state directory holding copies of journal files.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "cordon-journal-format-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        Self { root }
    }

    fn journal(&self) -> LocalJournal {
        LocalJournal::new(&self.root)
    }

    /// Installs `lines` as the journal of the case the first line opens.
    fn install(&self, lines: &[&str]) -> CaseId {
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        let case = CaseId::parse(first["event"]["plan"]["case-id"].as_str().unwrap()).unwrap();
        let dir = self.root.join(case.as_str());
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join("journal.jsonl"), text).unwrap();
        case
    }

    fn lines(&self, case: &CaseId) -> Vec<String> {
        std::fs::read_to_string(self.root.join(case.as_str()).join("journal.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixture(name: &str) -> String {
    let path = format!("{V1_FIXTURES}/{name}.jsonl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the fixture file itself says, read as plain JSON: the last status, and
/// per step which of verified / rolled back / rollback verified it reached.
fn said_by_file(lines: &[&str]) -> (String, Vec<(String, [bool; 3])>) {
    let mut status = String::new();
    let mut steps: Vec<(String, [bool; 3])> = Vec::new();
    for line in lines {
        let event = &serde_json::from_str::<Value>(line).unwrap()["event"];
        let kind = event["event"].as_str().unwrap();
        if kind == "case-finished" {
            status = event["status"].as_str().unwrap().to_string();
        }
        let Some(step) = event["step"].as_str() else {
            continue;
        };
        let index = match kind {
            "step-verified" => 0,
            "step-rolled-back" => 1,
            "step-rollback-verified" => 2,
            _ => continue,
        };
        match steps.iter_mut().find(|(s, _)| s == step) {
            Some((_, flags)) => flags[index] = true,
            None => {
                let mut flags = [false; 3];
                flags[index] = true;
                steps.push((step.to_string(), flags));
            }
        }
    }
    (status, steps)
}

fn folded(state: &CaseState) -> (String, Vec<(String, [bool; 3])>) {
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let steps = state
        .plan
        .steps
        .iter()
        .map(|planned| {
            let s = state.step(&planned.id).unwrap();
            (
                planned.id.clone(),
                [s.verified, s.rolled_back, s.rollback_verified],
            )
        })
        .filter(|(_, flags)| flags.iter().any(|f| *f))
        .collect();
    (status, steps)
}

const FIXTURES: [(&str, usize, usize); 3] = [
    // (file, records, steps)
    ("ec2-compromised-high", 54, 10),
    ("iam-user-key-compromised", 20, 3),
    ("iam-temporary-credentials", 10, 1),
];

#[tokio::test]
async fn format_1_journals_load_fold_and_verify() {
    for (name, count, step_count) in FIXTURES {
        let text = fixture(name);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), count, "{name}");
        let scratch = Scratch::new(name);
        let case = scratch.install(&lines);

        let records = scratch.journal().load(&case).await.unwrap();
        assert_eq!(records.len(), count, "{name}");
        verify_chain(&records).unwrap_or_else(|e| panic!("{name}: chain breaks: {e:?}"));
        for (record, line) in records.iter().zip(&lines) {
            assert_eq!(record.format_version(), 1, "{name}");
            assert_eq!(
                record.stored_text(),
                *line,
                "{name}: stored text kept byte for byte"
            );
        }
        // The chain is over the stored bytes: this build serializes these records
        // differently, so re-serializing could never have verified them.
        assert!(
            records
                .iter()
                .zip(&lines)
                .all(|(r, l)| serde_json::to_string(r).unwrap() != *l),
            "{name}: format 2 writes every record differently"
        );
        for pair in records.windows(2) {
            assert_eq!(pair[1].prev_hash, sha256(&pair[0].stored_text()), "{name}");
        }

        let state = CaseState::from_records(&case, &records).unwrap();
        assert_eq!(state.plan.case_id, case);
        assert_eq!(state.plan.steps.len(), step_count, "{name}");
        assert_eq!(state.status, Some(CaseStatus::RolledBack), "{name}");
        assert_eq!(folded(&state), said_by_file(&lines), "{name}");
        for planned in &state.plan.steps {
            let step = state.step(&planned.id).unwrap();
            assert!(
                step.verified && step.rollback_verified,
                "{name}: {}",
                planned.id
            );
            assert!(step.pre_state.is_some() && step.outcome.is_some(), "{name}");
        }
        assert_eq!(state.last_hash, sha256(lines[count - 1]));
        assert_eq!(scratch.journal().cases().await.unwrap(), vec![case]);
    }
}

/// Accepts every step: the new code's side of a resumed case.
#[derive(Debug)]
struct AcceptAll;

impl Actions for AcceptAll {
    async fn read_pre_state(&self, _: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        Ok(json!({ "step": step.id }))
    }
    async fn apply(&self, _: &Plan, _: &PlannedStep, _: &Value) -> Result<Value, ActionError> {
        Ok(json!({ "applied": true }))
    }
    async fn verify(
        &self,
        _: &Plan,
        _: &PlannedStep,
        _: &Value,
        _: &Value,
    ) -> Result<(), ActionError> {
        Ok(())
    }
    async fn undo(
        &self,
        _: &Plan,
        _: &PlannedStep,
        _: &Value,
        _: Option<&Value>,
    ) -> Result<Value, ActionError> {
        Ok(json!({ "undone": true }))
    }
    async fn verify_undone(&self, _: &Plan, _: &PlannedStep, _: &Value) -> Result<(), ActionError> {
        Ok(())
    }
    fn describe_apply(&self, _: &Plan, _: &PlannedStep, _: &Value) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Debug)]
struct ApproveAll;

impl Approver for ApproveAll {
    async fn decide(&self, _: &Plan, _: &PlannedStep) -> Decision {
        Decision::Approved {
            approver: "arn:aws:sts::123456789012:user/responder (--yes)".to_string(),
        }
    }
    async fn decide_undo(&self, _: &Plan, _: &PlannedStep, _: UndoGate) -> Decision {
        Decision::Approved {
            approver: "arn:aws:sts::123456789012:user/responder (--approve-undo)".to_string(),
        }
    }
}

/// A case opened by format 1 and interrupted before its last step is resumed
/// and then rolled back by this build: the journal holds format-1 records
/// followed by format-2 records, its chain verifies across the boundary, the
/// old lines are untouched, and it folds to what the old code recorded when it
/// ran the same case to the end.
#[tokio::test]
async fn format_1_case_resumed_and_rolled_back_by_this_build() {
    for (name, _, _) in FIXTURES {
        let text = fixture(name);
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines
            .iter()
            .rposition(|l| l.contains(r#""event":"step-prepared""#))
            .unwrap();
        let old = &lines[..cut];
        let scratch = Scratch::new(&format!("resume-{name}"));
        let case = scratch.install(old);
        let journal = scratch.journal();

        let executor = Executor::new(&AcceptAll, &journal, &ApproveAll);
        let report = executor.resume(&case).await.unwrap();
        assert_eq!(
            report.status,
            CaseStatus::Completed,
            "{name}: {}",
            report.message
        );
        let report = executor.rollback(&case, "format test").await.unwrap();
        assert_eq!(
            report.status,
            CaseStatus::RolledBack,
            "{name}: {}",
            report.message
        );

        let stored = scratch.lines(&case);
        assert_eq!(
            &stored[..cut],
            old,
            "{name}: old records are never rewritten"
        );
        let records = journal.load(&case).await.unwrap();
        verify_chain(&records).unwrap_or_else(|e| panic!("{name}: chain breaks: {e:?}"));
        assert!(records[..cut].iter().all(|r| r.format_version() == 1));
        assert!(
            records[cut..]
                .iter()
                .all(|r| r.format_version() == BASE_FORMAT_VERSION)
        );
        assert_eq!(
            records[cut].prev_hash,
            sha256(old[cut - 1]),
            "{name}: the boundary"
        );
        // The resumed case claims its resources first, then prepares the next step.
        let new_line: Value = stored[cut..]
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|line| line["event"]["event"] == "step-prepared")
            .unwrap_or_else(|| panic!("{name}: no step prepared after the resume"));
        assert_eq!(new_line["format-version"], BASE_FORMAT_VERSION);
        assert!(
            new_line["event"].get("pre-state").is_some(),
            "{name}: {new_line}"
        );

        let state = CaseState::from_records(&case, &records).unwrap();
        let original: Vec<&str> = lines.clone();
        assert_eq!(folded(&state), said_by_file(&original), "{name}");
    }
}

#[tokio::test]
async fn a_record_from_a_newer_cordon_is_refused_naming_case_and_version() {
    let plan = small_plan();
    let opened = JournalRecord::new(
        0,
        "2026-01-06T15:53:02Z",
        GENESIS_HASH,
        JournalEvent::CaseOpened {
            plan: Box::new(plan.clone()),
            finding_sha256: "ab".repeat(32),
            cordon_version: "0.1.0".to_string(),
            provenance: None,
        },
    );
    let next = |event: Value| {
        json!({
            "format-version": FORMAT_VERSION,
            "seq": 1,
            "at": "2026-01-06T15:53:03Z",
            "prev-hash": opened.hash(),
            "event": event,
        })
    };
    let cases = [
        (
            {
                let mut v = next(json!({"event": "case-finished", "status": "completed"}));
                v["format-version"] = json!(FORMAT_VERSION + 1);
                v
            },
            format!("format-version {}", FORMAT_VERSION + 1),
        ),
        (
            next(json!({"event": "case-split", "into": 2})),
            "`case-split`, unknown to this cordon".to_string(),
        ),
        (
            next(json!({"event": "case-finished", "status": "archived"})),
            "`archived`, unknown to this cordon".to_string(),
        ),
    ];
    for (i, (line, detail)) in cases.into_iter().enumerate() {
        let scratch = Scratch::new(&format!("newer-{i}"));
        let case = scratch.install(&[&opened.stored_text(), &line.to_string()]);
        assert_eq!(case, plan.case_id);
        let err = scratch
            .journal()
            .load(&case)
            .await
            .expect_err("newer record");
        assert!(matches!(err, JournalError::NewerFormat(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "record 1 of the journal of case {case} was written by a newer cordon ({detail}; \
                 this cordon reads format-version 1 to {FORMAT_VERSION}): upgrade cordon"
            )
        );
    }
}

#[test]
fn a_damaged_record_is_corrupt_not_newer() {
    let err = JournalRecord::from_stored(
        r#"{"seq":0,"at":"x","prev-hash":"y","event":{"event":"step-verified","step":"a"}}"#,
    )
    .expect_err("duration-ms missing");
    let err = err.in_journal(&small_plan().case_id, 0);
    assert!(
        matches!(err, JournalError::Corrupt { seq: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("duration-ms"), "{err}");
}

/// The `case-opened` record of `plan`.
fn opened(plan: &Plan) -> JournalRecord {
    JournalRecord::new(
        0,
        "2026-11-27T00:00:00Z",
        GENESIS_HASH,
        JournalEvent::CaseOpened {
            plan: Box::new(plan.clone()),
            finding_sha256: "ab".repeat(32),
            cordon_version: "0.1.0".to_string(),
            provenance: None,
        },
    )
}

/// A plan that restricts who may approve is written in format 3 (an older
/// cordon, which would ignore the restriction, refuses it); every other
/// record stays in format 2; both read back, and the restriction survives.
#[test]
fn approval_restrictions_are_written_in_format_3_and_nothing_else_is() {
    let mut plan = small_plan();
    assert_eq!(opened(&plan).format_version(), BASE_FORMAT_VERSION);
    plan.steps[0].approval.required = true;
    plan.steps[0].approval.approvers =
        vec!["arn:aws:sts::111122223333:assumed-role/IncidentLead/*".to_string()];
    plan.steps[0].approval.forbid_self_approval = true;
    let restricted = opened(&plan);
    assert_eq!(restricted.format_version(), RESTRICTED_FORMAT_VERSION);
    assert_eq!(RESTRICTED_FORMAT_VERSION, 3);
    let text = restricted.stored_text();
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["format-version"], 3);
    assert_eq!(
        stored["event"]["plan"]["steps"][0]["approval"]["forbid-self-approval"],
        true
    );
    let back = JournalRecord::from_stored(&text).unwrap();
    assert_eq!(back, restricted);
    assert_eq!(back.format_version(), 3);
    assert_eq!(back.hash(), restricted.hash());
}

/// A plan whose steps declare `needs` is written in format 4 (an older
/// cordon would run it in written order, which need not respect the needs,
/// so it refuses it instead); the needs survive the round trip, a plan of a
/// sequential playbook stays in format 2 without a `needs` key, and a
/// journaled plan without `needs` reads as sequential.
#[test]
fn a_step_graph_is_written_in_format_4_and_a_sequential_plan_is_not() {
    let mut plan = small_plan();
    let mut second = plan.steps[0].clone();
    second.id = "second".to_string();
    second.index = 2;
    plan.steps.push(second);
    let sequential = opened(&plan);
    assert_eq!(sequential.format_version(), BASE_FORMAT_VERSION);
    assert!(!sequential.stored_text().contains("\"needs\""));
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    for (i, step) in plan.steps.iter().enumerate() {
        let wanted: Vec<&str> = if i == 0 {
            vec![]
        } else {
            vec![ids[i - 1].as_str()]
        };
        assert_eq!(plan.needs(step), wanted, "sequential needs of {}", step.id);
    }
    for step in &mut plan.steps {
        step.needs = Some(Vec::new());
    }
    plan.steps[1].needs = Some(vec![ids[0].clone()]);
    let graph = opened(&plan);
    assert_eq!(graph.format_version(), FORMAT_VERSION);
    assert_eq!(FORMAT_VERSION, 4);
    let text = graph.stored_text();
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["format-version"], 4);
    assert_eq!(
        stored["event"]["plan"]["steps"][1]["needs"],
        json!([ids[0]])
    );
    let back = JournalRecord::from_stored(&text).unwrap();
    assert_eq!(back, graph);
    assert_eq!(back.hash(), graph.hash());
}
