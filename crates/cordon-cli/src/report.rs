//! `cordon report CASE`: the case report to paste into a ticket, rendered from
//! the journal and the evidence manifest alone (no AWS call, except reading
//! the manifest when the case keeps its evidence in S3).
//!
//! One model ([`CaseReport`]) is built from the hash-chain-checked journal,
//! then rendered as Markdown, as one self-contained HTML file (inline CSS,
//! the timeline as an inline SVG chart, a Content-Security-Policy that
//! forbids every fetch and script), or as one JSON document whose schema
//! ([`json_schema`]) is published in `docs/schemas/report.schema.json`.
//!
//! Everything in a finding is attacker-influenced, and so is much of what a
//! pre-state holds (tag values, names). Every such value is escaped for the
//! format it lands in: in Markdown it is a code span (no link, image, HTML or
//! table cell can come out of it), in HTML it is entity-escaped text. Control
//! and bidi characters are first made visible ([`escape`]) in both.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use cordon_aws::actions::evidence::StoreOutcome;
use cordon_aws::evidence::EvidenceRef;
use cordon_aws::manifest::{MANIFEST_NAME, Manifest};
use cordon_core::action::ActionKind;
use cordon_core::journal::{
    CaseState, CaseStatus, ErrorRecord, JournalEvent, JournalRecord, JournalStore,
};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan};
use cordon_core::provenance::Provenance;
use cordon_core::summary::summarize;
use cordon_core::text::escape;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::render::event_detail;

/// The report format this build prints (`format-version` of the JSON document).
pub const FORMAT_VERSION: u32 = 1;

/// `cordon report`'s own arguments (the state directory comes with the
/// other case commands' flags).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The case (`cordon cases` lists them).
    #[arg(required_unless_present = "schema")]
    pub case: Option<String>,
    /// Print the JSON Schema of the `--format json` document instead.
    #[arg(long, conflicts_with = "case")]
    pub schema: bool,
    /// md: Markdown for a ticket; html: one self-contained file with the
    /// timeline as a chart; json: one document (schema in docs/schemas/).
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
}

/// How the report is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
    Json,
}

/// Everything a ticket needs about one case.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CaseReport {
    /// The report format (1); versioned as the other outputs (`docs/formats.md`).
    pub format_version: u32,
    pub case_id: String,
    /// Where the case rests (`running` while no `case-finished` followed its
    /// last activity: in progress, or its process was killed).
    pub status: String,
    /// What the status leaves to do, in words.
    pub next: String,
    pub finding: FindingReport,
    /// Which playbook answered the finding in the current epoch, and why.
    pub route: RouteReport,
    /// From the finding reaching cordon to the verification of the last
    /// containing step of the current epoch; `null` while one is not verified.
    pub time_to_contain_ms: Option<u64>,
    /// Time the current epoch spent waiting for approvals.
    pub approval_wait_ms: u64,
    /// What must not be missed (an ENI left open, failures, credentials kept).
    pub flags: Vec<String>,
    /// Every epoch, oldest first, each with its steps.
    pub epochs: Vec<EpochReport>,
    /// The evidence the case stored, from its manifest; absent when no
    /// evidence step was applied.
    pub evidence: Option<EvidenceReport>,
    /// Every journal record, in a few words.
    pub timeline: Vec<TimelineEntry>,
    /// Commands to check the case and its evidence, or to undo it.
    pub commands: Vec<CommandHint>,
    /// The journal the report was made from.
    pub journal: JournalPin,
}

/// The finding as the current epoch's plan summarised it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct FindingReport {
    pub id: String,
    #[serde(rename = "type")]
    pub finding_type: String,
    pub severity: f64,
    pub severity_band: String,
    pub resource_type: String,
    /// The resources the plan acts on (`instance:i-…`, `access-key:AKIA…`, …).
    pub resources: Vec<String>,
    pub account_id: String,
    pub region: String,
    pub updated_at: Option<String>,
    /// SHA-256 of the finding as last received.
    pub sha256: String,
}

/// The route of one plan.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RouteReport {
    pub playbook: String,
    pub priority: i64,
    /// Each condition of the playbook the finding met.
    pub matched: Vec<String>,
}

/// One epoch of the case.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct EpochReport {
    pub epoch: u32,
    pub opened_at: String,
    /// Why the epoch was opened (absent for the first).
    pub reason: Option<String>,
    pub route: RouteReport,
    /// The identity that opened it and as whom it acted.
    pub provenance: Option<ProvenanceReport>,
    pub steps: Vec<StepReport>,
}

/// Where the finding came from and as whom the epoch acted.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ProvenanceReport {
    pub source_verified: bool,
    pub source: Option<String>,
    pub caller: Option<String>,
    pub acting_as: Option<String>,
}

/// One step: what it changed (pre-state → post-state), who approved it,
/// how it failed, how it was undone.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct StepReport {
    pub index: usize,
    pub id: String,
    pub action: String,
    pub target: String,
    /// `done`, `failed`, `skipped`, `not-run`, `rolled-back`, `rollback-failed`,
    /// `kept` (undo needs approval), `awaiting-approval`, `interrupted`, `pending`.
    pub result: String,
    pub attempts: u32,
    /// The pre-state journaled before any change (its latest amendment).
    pub pre_state: Option<Value>,
    /// What the step applied (its outcome).
    pub post_state: Option<Value>,
    /// The two above flattened to `path = value` lines: `same` in both,
    /// `removed` (pre-state only) or `added` (post-state only).
    pub diff: Vec<DiffLine>,
    pub approval: Option<ApprovalReport>,
    pub failures: Vec<FailureReport>,
    pub skipped: Option<String>,
    pub not_run: Option<String>,
    pub verified_at: Option<String>,
    pub rollback: Option<RollbackReport>,
}

/// One line of a step's pre-state → post-state diff.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct DiffLine {
    /// `same`, `removed` or `added`.
    pub change: String,
    /// `key.key[index]` into the pre-state or post-state.
    pub path: String,
    pub value: Value,
}

/// Who decided on a step that needed approval, and when.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct ApprovalReport {
    pub requested_at: Option<String>,
    /// The verified identity (STS) of the approver.
    pub granted_by: Option<String>,
    pub granted_at: Option<String>,
    pub refused_by: Option<String>,
    pub refused_at: Option<String>,
    pub timed_out_at: Option<String>,
}

/// One failed attempt.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct FailureReport {
    pub attempt: u32,
    pub at: String,
    pub kind: String,
    pub resource: String,
    pub message: String,
    pub hint: String,
    pub retrying: bool,
}

/// How a step was undone.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RollbackReport {
    pub undone_at: Option<String>,
    pub result: Option<Value>,
    /// The resource was read back and equals its pre-state.
    pub verified_at: Option<String>,
    pub failed: Option<FailureReport>,
    /// The undo needs an approval it did not get (credentials kept contained).
    pub kept: Option<String>,
    pub undo_approved_by: Option<String>,
}

/// The case's evidence, as its manifest pins it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct EvidenceReport {
    /// `s3` or `local` (the case directory).
    pub store: String,
    /// The manifest as the `store-evidence` step journaled it.
    pub manifest: StoredObject,
    /// The manifest read now hashes to what the journal recorded.
    pub manifest_matches_journal: bool,
    /// Why the manifest could not be read or does not match (absent when it does).
    pub problem: Option<String>,
    /// Each object the manifest pins (from the journal when it cannot be read).
    pub objects: Vec<StoredObject>,
    /// Evidence the step could not keep, and why.
    pub not_stored: Vec<String>,
    /// The manifest's signature object, when the run signed it.
    pub signature: Option<String>,
}

/// One stored object version.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct StoredObject {
    /// `s3://bucket/key`, a `file://` URL, or a key relative to the manifest's place.
    pub location: String,
    /// `null` in an unversioned store (the case directory).
    pub version_id: Option<String>,
    pub size: u64,
    pub sha256: String,
}

/// One journal record in a few words.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TimelineEntry {
    pub seq: u64,
    pub at: String,
    /// Milliseconds since the case was opened.
    pub offset_ms: u64,
    pub epoch: u32,
    pub step: Option<String>,
    pub event: String,
    pub detail: String,
}

/// A command for the responder, and what it is for.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CommandHint {
    pub purpose: String,
    pub command: String,
}

/// The journal the report was made from: its length and last hash, so the
/// report can be tied to exactly that journal.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct JournalPin {
    pub records: u64,
    pub last_hash: String,
}

/// The JSON Schema of the `--format json` document.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(CaseReport)).unwrap_or(Value::Null)
}

/// What the evidence step recorded, and the manifest as read now.
#[derive(Debug, Clone)]
pub struct EvidenceInput {
    pub outcome: StoreOutcome,
    /// The manifest's bytes as read now, or why they could not be read.
    pub manifest: Result<Vec<u8>, String>,
}

/// Runs `cordon report`: loads and checks the journal, reads the manifest,
/// prints the report. The result is the exit code.
pub async fn run(args: &ReportArgs, journal: &LocalJournal, state_dir: &Path) -> Result<u8> {
    let Some(case) = &args.case else {
        let schema = serde_json::to_string_pretty(&json_schema())
            .context("cannot encode the report's JSON Schema")?;
        println!("{schema}");
        return Ok(0);
    };
    let case = CaseId::parse(case).map_err(|e| anyhow!(e))?;
    let records = journal.load(&case).await?;
    let state = CaseState::from_records(&case, &records)?;
    let evidence = match evidence_outcome(&state, &records) {
        Some(outcome) => Some(read_evidence(outcome, &journal.case_dir(&case)).await),
        None => None,
    };
    let report = build(&state, &records, evidence.as_ref(), state_dir);
    let text = match args.format {
        ReportFormat::Md => markdown(&report),
        ReportFormat::Html => html(&report),
        ReportFormat::Json => {
            let mut text = serde_json::to_string_pretty(&report)
                .context("cannot encode the report as JSON")?;
            text.push('\n');
            text
        }
    };
    print!("{text}");
    Ok(0)
}

/// The newest applied `store-evidence` outcome of any epoch.
fn evidence_outcome(state: &CaseState, records: &[JournalRecord]) -> Option<StoreOutcome> {
    let evidence_steps: Vec<&str> = state
        .epochs()
        .into_iter()
        .flat_map(|(_, plan, _, _)| plan.steps.iter())
        .filter(|s| s.kind() == ActionKind::StoreEvidence)
        .map(|s| s.id.as_str())
        .collect();
    records.iter().rev().find_map(|r| match &r.event {
        JournalEvent::StepApplied { step, outcome, .. }
            if evidence_steps.contains(&step.as_str()) =>
        {
            serde_json::from_value(outcome.clone()).ok()
        }
        _ => None,
    })
}

/// Reads the manifest the outcome names: from the case directory, or the
/// exact S3 version the step wrote (the only AWS call `report` makes).
async fn read_evidence(outcome: StoreOutcome, case_dir: &Path) -> EvidenceInput {
    let manifest = match &outcome {
        StoreOutcome::Local(_) => {
            let path = case_dir.join(MANIFEST_NAME);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        StoreOutcome::Bucket(b) => read_s3_manifest(&b.bucket, &b.manifest).await,
    };
    EvidenceInput { outcome, manifest }
}

async fn read_s3_manifest(bucket: &str, manifest: &EvidenceRef) -> Result<Vec<u8>, String> {
    let key = manifest
        .location
        .strip_prefix(&format!("s3://{bucket}/"))
        .ok_or_else(|| format!("{} is not in s3://{bucket}", manifest.location))?;
    let clients = cordon_aws::client::AwsClients::from_env()
        .await
        .map_err(|e| format!("cannot reach S3 to read {}: {e}", manifest.location))?;
    cordon_aws::evidence::get_s3(&clients, bucket, key, manifest.version_id.as_deref())
        .await
        .map_err(|e| format!("cannot read {}: {e}", manifest.location))
}

/// Builds the report. Pure: the journal, the evidence as read, and the state
/// directory the commands should name.
pub fn build(
    state: &CaseState,
    records: &[JournalRecord],
    evidence: Option<&EvidenceInput>,
    state_dir: &Path,
) -> CaseReport {
    let summary = summarize(state, records);
    let plan = &state.plan;
    let f = &plan.finding;
    let case_id = plan.case_id.to_string();
    let epochs = epochs(state, records);
    let evidence = evidence.map(evidence_report);
    let first_at = records.first().map(|r| r.at.as_str()).unwrap_or_default();
    let mut epoch = 1;
    let timeline = records
        .iter()
        .map(|r| {
            if let JournalEvent::EpochOpened { epoch: e, .. } = &r.event {
                epoch = *e;
            }
            TimelineEntry {
                seq: r.seq,
                at: r.at.clone(),
                offset_ms: elapsed_ms(first_at, &r.at).unwrap_or(0),
                epoch,
                step: r.event.step().map(str::to_owned),
                event: r.event.name().to_string(),
                detail: event_detail(&r.event),
            }
        })
        .collect();
    CaseReport {
        format_version: FORMAT_VERSION,
        case_id: case_id.clone(),
        status: summary.status.clone(),
        next: CaseStatus::next_steps(state.status).to_string(),
        finding: FindingReport {
            id: f.id.clone(),
            finding_type: f.finding_type.clone(),
            severity: f.severity,
            severity_band: f.severity_band.clone(),
            resource_type: f.resource_type.clone(),
            resources: plan.resources(),
            account_id: f.account_id.clone(),
            region: f.region.clone(),
            updated_at: f.updated_at.clone(),
            sha256: state.finding_sha256.clone(),
        },
        route: route_report(plan),
        time_to_contain_ms: summary.time_to_contain_ms,
        approval_wait_ms: summary.approval_wait_ms,
        flags: summary.flags.clone(),
        commands: commands(
            &plan.case_id,
            state,
            &epochs,
            evidence.as_ref(),
            &summary.open_network_interfaces,
            state_dir,
        ),
        epochs,
        evidence,
        timeline,
        journal: JournalPin {
            records: state.next_seq,
            last_hash: state.last_hash.clone(),
        },
    }
}

fn route_report(plan: &Plan) -> RouteReport {
    RouteReport {
        playbook: plan.playbook.clone(),
        priority: i64::from(plan.route.priority),
        matched: plan.route.matched.clone(),
    }
}

fn provenance_report(p: &Provenance) -> ProvenanceReport {
    ProvenanceReport {
        source_verified: p.source_verified,
        source: p.source.clone(),
        caller: p.caller.clone(),
        acting_as: p.acting_as.clone(),
    }
}

fn failure(attempt: u32, at: &str, error: &ErrorRecord, retrying: bool) -> FailureReport {
    FailureReport {
        attempt,
        at: at.to_string(),
        kind: error.kind.clone(),
        resource: error.resource.clone(),
        message: error.message.clone(),
        hint: error.hint.clone(),
        retrying,
    }
}

/// Every epoch with its steps, from the records (the folded state has no times).
fn epochs(state: &CaseState, records: &[JournalRecord]) -> Vec<EpochReport> {
    let mut out: Vec<EpochReport> = state
        .epochs()
        .into_iter()
        .map(|(epoch, plan, steps, opened_at)| EpochReport {
            epoch,
            opened_at: opened_at.to_string(),
            reason: None,
            route: route_report(plan),
            provenance: None,
            steps: plan
                .steps
                .iter()
                .map(|s| {
                    let folded = steps.get(&s.id).cloned().unwrap_or_default();
                    StepReport {
                        index: s.index,
                        id: s.id.clone(),
                        action: s.kind().to_string(),
                        target: s.target.label(),
                        result: step_result(&folded).to_string(),
                        attempts: folded.attempts,
                        pre_state: folded.pre_state.clone(),
                        post_state: folded.outcome.clone(),
                        diff: diff(folded.pre_state.as_ref(), folded.outcome.as_ref()),
                        approval: None,
                        failures: Vec::new(),
                        skipped: folded.skipped.clone(),
                        not_run: folded.not_run.clone(),
                        verified_at: None,
                        rollback: None,
                    }
                })
                .collect(),
        })
        .collect();
    let mut current = 1u32;
    for record in records {
        let at = record.at.as_str();
        match &record.event {
            JournalEvent::CaseOpened { provenance, .. } => {
                if let Some(e) = out.iter_mut().find(|e| e.epoch == 1) {
                    e.provenance = provenance.as_ref().map(provenance_report);
                }
            }
            JournalEvent::EpochOpened {
                epoch,
                reason,
                provenance,
                ..
            } => {
                current = *epoch;
                if let Some(e) = out.iter_mut().find(|e| e.epoch == *epoch) {
                    e.reason = Some(reason.clone());
                    e.provenance = provenance.as_ref().map(provenance_report);
                }
            }
            event => {
                let Some(step) = event.step() else { continue };
                let epoch = event.epoch().unwrap_or(current);
                let Some(s) = out
                    .iter_mut()
                    .find(|e| e.epoch == epoch)
                    .and_then(|e| e.steps.iter_mut().find(|s| s.id == step))
                else {
                    continue;
                };
                step_event(s, event, at);
            }
        }
    }
    out
}

/// Adds what one record says about a step.
fn step_event(s: &mut StepReport, event: &JournalEvent, at: &str) {
    fn approval(s: &mut StepReport) -> &mut ApprovalReport {
        s.approval.get_or_insert_with(ApprovalReport::default)
    }
    fn rollback(s: &mut StepReport) -> &mut RollbackReport {
        s.rollback.get_or_insert_with(RollbackReport::default)
    }
    let at_owned = Some(at.to_string());
    match event {
        JournalEvent::ApprovalRequested { .. } => approval(s).requested_at = at_owned,
        JournalEvent::ApprovalGranted { approver, .. } => {
            let a = approval(s);
            a.granted_by = Some(approver.clone());
            a.granted_at = at_owned;
        }
        JournalEvent::ApprovalRefused { approver, .. } => {
            let a = approval(s);
            a.refused_by = Some(approver.clone());
            a.refused_at = at_owned;
        }
        JournalEvent::ApprovalTimedOut { .. } => approval(s).timed_out_at = at_owned,
        JournalEvent::StepFailed {
            attempt,
            error,
            retrying,
            ..
        } => s.failures.push(failure(*attempt, at, error, *retrying)),
        JournalEvent::StepVerified { .. } => s.verified_at = at_owned,
        JournalEvent::StepRolledBack { result, .. } => {
            let r = rollback(s);
            r.undone_at = at_owned;
            r.result = Some(result.clone());
        }
        JournalEvent::StepRollbackVerified { .. } => rollback(s).verified_at = at_owned,
        JournalEvent::StepRollbackFailed { error, .. } => {
            rollback(s).failed = Some(failure(0, at, error, false))
        }
        JournalEvent::UndoApproved { approver, .. } => {
            rollback(s).undo_approved_by = Some(approver.clone())
        }
        JournalEvent::UndoKept { reason, .. } => rollback(s).kept = Some(reason.clone()),
        _ => {}
    }
}

/// One word for where a step ended.
fn step_result(s: &cordon_core::journal::StepState) -> &'static str {
    if s.rollback_verified {
        "rolled-back"
    } else if s.undo_kept.is_some() {
        "kept"
    } else if s.rollback_failed.is_some() {
        "rollback-failed"
    } else if s.verified {
        "done"
    } else if s.failed_final.is_some() {
        "failed"
    } else if s.skipped.is_some() {
        "skipped"
    } else if s.not_run.is_some() {
        "not-run"
    } else if s.approval_requested && s.approved_by.is_none() {
        "awaiting-approval"
    } else if s.touched() {
        "interrupted"
    } else {
        "pending"
    }
}

/// `value` as `(path, leaf)` pairs; an array of scalars is one leaf.
fn flatten(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                flatten(inner, &join(key), out);
            }
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, inner) in items.iter().enumerate() {
                flatten(inner, &format!("{path}[{i}]"), out);
            }
        }
        leaf => out.push((path.to_string(), leaf.clone())),
    }
}

/// `value` as `path = value` lines.
fn flat_lines(value: &Value) -> Vec<String> {
    let mut leaves = Vec::new();
    flatten(value, "", &mut leaves);
    leaves
        .iter()
        .map(|(path, leaf)| format!("{path} = {leaf}"))
        .collect()
}

/// The pre-state and the post-state as diff lines: what both hold (`same`),
/// then what only the pre-state holds (`removed`), then the post-state's own (`added`).
fn diff(pre: Option<&Value>, post: Option<&Value>) -> Vec<DiffLine> {
    let lines = |v: Option<&Value>| {
        let mut out = Vec::new();
        if let Some(v) = v {
            flatten(v, "", &mut out);
        }
        out
    };
    let (before, after) = (lines(pre), lines(post));
    let line = |change: &str, (path, value): &(String, Value)| DiffLine {
        change: change.to_string(),
        path: path.clone(),
        value: value.clone(),
    };
    let mut out: Vec<DiffLine> = before
        .iter()
        .filter(|l| after.contains(l))
        .map(|l| line("same", l))
        .collect();
    out.extend(
        before
            .iter()
            .filter(|l| !after.contains(l))
            .map(|l| line("removed", l)),
    );
    out.extend(
        after
            .iter()
            .filter(|l| !before.contains(l))
            .map(|l| line("added", l)),
    );
    out
}

fn evidence_report(input: &EvidenceInput) -> EvidenceReport {
    let (store, manifest, journaled, not_stored, signature) = match &input.outcome {
        StoreOutcome::Bucket(b) => (
            "s3",
            &b.manifest,
            &b.objects,
            &b.not_stored,
            b.signature.as_ref().map(|s| s.location.clone()),
        ),
        StoreOutcome::Local(l) => ("local", &l.manifest, &l.objects, &l.not_stored, None),
    };
    let object = |o: &cordon_aws::manifest::ManifestObject| StoredObject {
        location: o.key.clone(),
        version_id: o.version_id.clone(),
        size: o.size,
        sha256: o.sha256.clone(),
    };
    let read = input.manifest.as_ref().map_err(Clone::clone).and_then(|bytes| {
        let digest = hex::encode(Sha256::digest(bytes));
        if digest != manifest.sha256 {
            return Err(format!(
                "the manifest read now (SHA-256 {digest}) is not the one the journal recorded: run `cordon evidence verify`"
            ));
        }
        Manifest::from_json(bytes, &manifest.location).map_err(|e| e.to_string())
    });
    let (objects, problem) = match read {
        Ok(m) => (m.objects.iter().map(object).collect(), None),
        Err(why) => (journaled.iter().map(object).collect(), Some(why)),
    };
    EvidenceReport {
        store: store.to_string(),
        manifest: StoredObject {
            location: manifest.location.clone(),
            version_id: manifest.version_id.clone(),
            size: manifest.size,
            sha256: manifest.sha256.clone(),
        },
        manifest_matches_journal: problem.is_none(),
        problem,
        objects,
        not_stored: not_stored.clone(),
        signature,
    }
}

/// `arg` quoted for a POSIX shell when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@,+-".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The commands that check the case and its evidence, and that move it on.
fn commands(
    case: &CaseId,
    state: &CaseState,
    epochs: &[EpochReport],
    evidence: Option<&EvidenceReport>,
    open_enis: &[String],
    state_dir: &Path,
) -> Vec<CommandHint> {
    let dir = if state_dir == Path::new(".cordon") {
        String::new()
    } else {
        format!(" --state-dir {}", shell_quote(&state_dir.to_string_lossy()))
    };
    let mut out = Vec::new();
    let mut hint = |purpose: &str, command: String| {
        out.push(CommandHint {
            purpose: purpose.to_string(),
            command,
        })
    };
    hint(
        "where the case is, step by step",
        format!("cordon status {case}{dir}"),
    );
    if !open_enis.is_empty() {
        hint(
            "ask AWS whether the ENIs the journal flags OPEN are still open",
            format!("cordon status {case} --live{dir}"),
        );
    }
    match evidence {
        Some(e) if e.store == "s3" => {
            let bucket_key = e
                .manifest
                .location
                .strip_prefix("s3://")
                .unwrap_or_default();
            let (bucket, key) = bucket_key.split_once('/').unwrap_or((bucket_key, ""));
            let prefix = key
                .strip_suffix(&format!("{case}/{MANIFEST_NAME}"))
                .unwrap_or("cases/");
            let signed = if e.signature.is_some() {
                " --signing-key KEY"
            } else {
                ""
            };
            hint(
                "re-read every evidence object and the journal, and check them against the manifest",
                format!(
                    "cordon evidence verify {case} --bucket {} --prefix {}{signed}",
                    shell_quote(bucket),
                    shell_quote(prefix)
                ),
            );
        }
        Some(_) => hint(
            "hash the evidence files in the case directory; compare with the SHA-256 column",
            format!(
                "(cd {} && sha256sum {MANIFEST_NAME} {})",
                shell_quote(
                    &state_dir
                        .join("cases")
                        .join(case.as_str())
                        .to_string_lossy()
                ),
                evidence
                    .map(|e| {
                        e.objects
                            .iter()
                            .map(|o| shell_quote(&o.location))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default()
            ),
        ),
        None => {}
    }
    match state.status {
        Some(CaseStatus::Stopped | CaseStatus::CompletedWithFailures) => {
            hint(
                "run every step not done",
                format!("cordon resume {case}{dir}"),
            );
            hint(
                "undo everything done, from the journaled pre-states",
                format!("cordon rollback {case}{dir}"),
            );
        }
        Some(CaseStatus::AwaitingApproval) => {
            for step in waiting_steps(epochs) {
                hint(
                    "approve the step that waits (or add --refuse)",
                    format!("cordon approve {case} {}{dir}", shell_quote(step)),
                );
            }
            hint(
                "undo everything done, from the journaled pre-states",
                format!("cordon rollback {case}{dir}"),
            );
        }
        Some(CaseStatus::Completed) => hint(
            "undo everything done, from the journaled pre-states",
            format!("cordon rollback {case}{dir}"),
        ),
        Some(CaseStatus::RolledBackExceptCredentials) => {
            let kept: Vec<String> = epochs
                .iter()
                .flat_map(|e| &e.steps)
                .filter(|s| s.result == "kept")
                .map(|s| format!(" --approve-undo {}", shell_quote(&s.id)))
                .collect();
            hint(
                "re-arm the kept credentials, if that is what you want",
                format!("cordon rollback {case}{}{dir}", kept.concat()),
            );
        }
        Some(CaseStatus::RollbackIncomplete) => hint(
            "continue the rollback where it stopped (fix the named resource first)",
            format!("cordon rollback {case}{dir}"),
        ),
        Some(CaseStatus::RolledBack) => {}
        None => hint(
            "continue the case from its journal once no process holds it",
            format!("cordon resume {case}{dir}"),
        ),
    }
    out
}

fn waiting_steps(epochs: &[EpochReport]) -> Vec<&str> {
    epochs
        .last()
        .map(|e| {
            e.steps
                .iter()
                .filter(|s| s.result == "awaiting-approval")
                .map(|s| s.id.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Milliseconds from one RFC 3339 time to another.
fn elapsed_ms(from: &str, to: &str) -> Option<u64> {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let d = parse(to)? - parse(from)?;
    u64::try_from(d.whole_milliseconds()).ok()
}

/// A duration for people: `850 ms`, `12.345 s`.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{}.{:03} s", ms / 1000, ms % 1000)
    }
}

/// How an untrusted value is written into a rendering.
trait Escaper {
    /// Text in running prose or a table cell.
    fn text(&self, text: &str) -> String;
}

/// Markdown: every untrusted value is a code span, so no link, image, HTML
/// or emphasis can come out of it, and `|` is escaped so it stays in its
/// table cell.
#[derive(Debug, Clone, Copy)]
struct Md;

impl Escaper for Md {
    fn text(&self, text: &str) -> String {
        md_code(text)
    }
}

/// A Markdown code span holding `text` literally, on one line (control and
/// bidi characters made visible), with a fence longer than any run of
/// backticks inside, and `|` escaped (GFM tables split cells on it even
/// inside code spans, and render `\|` as `|` there).
fn md_code(text: &str) -> String {
    let visible = escape(text).replace('|', "\\|");
    if visible.is_empty() {
        return "` `".to_string();
    }
    let longest = visible.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {visible} {fence}")
}

/// A fenced Markdown code block holding `lines` literally.
fn md_block(info: &str, lines: &[String]) -> String {
    let longest = lines
        .iter()
        .flat_map(|l| l.split(|c| c != '`').map(str::len))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let mut out = format!("{fence}{info}\n");
    for line in lines {
        out.push_str(&escape(line));
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// A diff line as text: `-`, `+` or ` `, path, value as JSON.
fn diff_text(line: &DiffLine) -> String {
    let sign = match line.change.as_str() {
        "removed" => '-',
        "added" => '+',
        _ => ' ',
    };
    format!("{sign} {} = {}", line.path, line.value)
}

fn or_dash(value: Option<&str>, e: &impl Escaper) -> String {
    value.map_or_else(|| "-".to_string(), |v| e.text(v))
}

/// The report as Markdown, for a ticket.
pub fn markdown(r: &CaseReport) -> String {
    let e = Md;
    let mut out = String::new();
    let _ = writeln!(out, "# Case report {}\n", e.text(&r.case_id));
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Status | {} |", e.text(&r.status));
    let _ = writeln!(out, "| Next | {} |", e.text(&r.next));
    let _ = writeln!(
        out,
        "| Time to contain | {} |",
        r.time_to_contain_ms
            .map_or_else(|| "not contained".to_string(), duration)
    );
    let _ = writeln!(
        out,
        "| Waiting for approval | {} |",
        duration(r.approval_wait_ms)
    );
    let _ = writeln!(out, "| Epochs | {} |", r.epochs.len());
    let flags: Vec<String> = r.flags.iter().map(|f| e.text(f)).collect();
    let _ = writeln!(
        out,
        "| Flags | {} |",
        if flags.is_empty() {
            "none".to_string()
        } else {
            flags.join(", ")
        }
    );
    let _ = writeln!(out, "\n## Finding\n");
    let f = &r.finding;
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Type | {} |", e.text(&f.finding_type));
    let _ = writeln!(
        out,
        "| Severity | {} ({}) |",
        f.severity,
        e.text(&f.severity_band)
    );
    let resources: Vec<String> = f.resources.iter().map(|x| e.text(x)).collect();
    let _ = writeln!(
        out,
        "| Resource | {} {} |",
        e.text(&f.resource_type),
        resources.join(", ")
    );
    let _ = writeln!(out, "| Account | {} |", e.text(&f.account_id));
    let _ = writeln!(out, "| Region | {} |", e.text(&f.region));
    let _ = writeln!(out, "| Finding id | {} |", e.text(&f.id));
    let _ = writeln!(
        out,
        "| Updated | {} |",
        or_dash(f.updated_at.as_deref(), &e)
    );
    let _ = writeln!(out, "| Finding SHA-256 | {} |", e.text(&f.sha256));
    let _ = writeln!(out, "\n## Route\n");
    let _ = writeln!(
        out,
        "Playbook {} (priority {}), because:\n",
        e.text(&r.route.playbook),
        r.route.priority
    );
    for why in &r.route.matched {
        let _ = writeln!(out, "- {}", e.text(why));
    }
    for epoch in &r.epochs {
        md_epoch(&mut out, epoch, &e);
    }
    if let Some(ev) = &r.evidence {
        md_evidence(&mut out, ev, &e);
    }
    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| Time | # | Epoch | Step | Event | Detail |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for t in &r.timeline {
        let _ = writeln!(
            out,
            "| +{} | {} | {} | {} | {} | {} |",
            duration(t.offset_ms),
            t.seq,
            t.epoch,
            or_dash(t.step.as_deref(), &e),
            e.text(&t.event),
            e.text(&t.detail)
        );
    }
    let _ = writeln!(out, "\n## Commands\n");
    for c in &r.commands {
        let _ = writeln!(out, "{}:\n", escape(&c.purpose));
        out.push_str(&md_block("sh", std::slice::from_ref(&c.command)));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Made from the journal's {} records (hash chain checked; last hash {}).",
        r.journal.records,
        e.text(&r.journal.last_hash)
    );
    out
}

fn md_epoch(out: &mut String, epoch: &EpochReport, e: &Md) {
    let _ = writeln!(
        out,
        "\n## Epoch {}: steps\n\nOpened {}, playbook {}.",
        epoch.epoch,
        e.text(&epoch.opened_at),
        e.text(&epoch.route.playbook)
    );
    if let Some(reason) = &epoch.reason {
        let _ = writeln!(out, "Why: {}.", e.text(reason));
    }
    if let Some(p) = &epoch.provenance {
        let _ = writeln!(
            out,
            "Started by {}, acting as {}; finding {}.",
            or_dash(p.caller.as_deref(), e),
            or_dash(p.acting_as.as_deref(), e),
            if p.source_verified {
                "verified at its source"
            } else {
                "not verified at its source"
            }
        );
    }
    for s in &epoch.steps {
        let _ = writeln!(
            out,
            "\n### {}. {} ({}) on {}: {}\n",
            s.index,
            e.text(&s.id),
            e.text(&s.action),
            e.text(&s.target),
            e.text(&s.result)
        );
        let _ = writeln!(out, "- Attempts: {}", s.attempts);
        if let Some(at) = &s.verified_at {
            let _ = writeln!(out, "- Verified: {}", e.text(at));
        }
        if let Some(a) = &s.approval {
            md_approval(out, a, e);
        }
        for f in &s.failures {
            let _ = writeln!(
                out,
                "- Failed (attempt {}, {}{}): {} on {}: {}; hint: {}",
                f.attempt,
                e.text(&f.at),
                if f.retrying { ", retried" } else { "" },
                e.text(&f.kind),
                e.text(&f.resource),
                e.text(&f.message),
                e.text(&f.hint)
            );
        }
        if let Some(why) = &s.skipped {
            let _ = writeln!(out, "- Skipped: {}", e.text(why));
        }
        if let Some(why) = &s.not_run {
            let _ = writeln!(out, "- Not run: {}", e.text(why));
        }
        if let Some(rb) = &s.rollback {
            md_rollback(out, rb, e);
        }
        if !s.diff.is_empty() {
            let _ = writeln!(out, "\nPre-state → post-state:\n");
            let lines: Vec<String> = s.diff.iter().map(diff_text).collect();
            out.push_str(&md_block("diff", &lines));
        }
    }
}

fn md_approval(out: &mut String, a: &ApprovalReport, e: &Md) {
    if let Some(at) = &a.requested_at {
        let _ = writeln!(out, "- Approval requested: {}", e.text(at));
    }
    if let Some(by) = &a.granted_by {
        let _ = writeln!(
            out,
            "- Approved by {} at {}",
            e.text(by),
            or_dash(a.granted_at.as_deref(), e)
        );
    }
    if let Some(by) = &a.refused_by {
        let _ = writeln!(
            out,
            "- Refused by {} at {}",
            e.text(by),
            or_dash(a.refused_at.as_deref(), e)
        );
    }
    if let Some(at) = &a.timed_out_at {
        let _ = writeln!(out, "- Nobody approved in time: {}", e.text(at));
    }
}

fn md_rollback(out: &mut String, rb: &RollbackReport, e: &Md) {
    if let Some(at) = &rb.undone_at {
        let _ = writeln!(out, "- Undone: {}", e.text(at));
    }
    if let Some(at) = &rb.verified_at {
        let _ = writeln!(out, "- Back at its pre-state (read back): {}", e.text(at));
    }
    if let Some(result) = &rb.result {
        let _ = writeln!(out, "\nWhat the undo did:\n");
        out.push_str(&md_block("text", &flat_lines(result)));
    }
    if let Some(f) = &rb.failed {
        let _ = writeln!(
            out,
            "- Undo FAILED ({}): {} on {}: {}; hint: {}",
            e.text(&f.at),
            e.text(&f.kind),
            e.text(&f.resource),
            e.text(&f.message),
            e.text(&f.hint)
        );
    }
    if let Some(why) = &rb.kept {
        let _ = writeln!(out, "- Kept (undo needs approval): {}", e.text(why));
    }
    if let Some(by) = &rb.undo_approved_by {
        let _ = writeln!(out, "- Undo approved by {}", e.text(by));
    }
}

fn md_evidence(out: &mut String, ev: &EvidenceReport, e: &Md) {
    let _ = writeln!(out, "\n## Evidence\n");
    let _ = writeln!(
        out,
        "Manifest {} (version {}, SHA-256 {}), stored {}: {}.",
        e.text(&ev.manifest.location),
        or_dash(ev.manifest.version_id.as_deref(), e),
        e.text(&ev.manifest.sha256),
        if ev.store == "s3" {
            "in S3"
        } else {
            "in the case directory"
        },
        match &ev.problem {
            None => "read now, it is the one the journal recorded".to_string(),
            Some(why) => format!("PROBLEM: {}", e.text(why)),
        }
    );
    if let Some(sig) = &ev.signature {
        let _ = writeln!(out, "Signed: {}.", e.text(sig));
    }
    let _ = writeln!(out, "\n| Object | Version id | Size | SHA-256 |");
    let _ = writeln!(out, "|---|---|---|---|");
    for o in &ev.objects {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            e.text(&o.location),
            or_dash(o.version_id.as_deref(), e),
            o.size,
            e.text(&o.sha256)
        );
    }
    for why in &ev.not_stored {
        let _ = writeln!(out, "\nNot stored: {}", e.text(why));
    }
}

/// HTML: entity-escaped text (control and bidi characters made visible first).
#[derive(Debug, Clone, Copy)]
struct Html;

impl Escaper for Html {
    fn text(&self, text: &str) -> String {
        html_escape(text)
    }
}

/// `text` safe in HTML element content and in quoted attribute values.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in escape(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No fetch, no script, no frame: the page is its own inline style and SVG.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d2327;padding:0 1em}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em;margin-bottom:.3em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
code{font:12px ui-monospace,monospace;background:#f4f4f4;padding:0 3px;word-break:break-all}\
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font:12px ui-monospace,monospace}\
.same{color:#555}.removed{color:#a00;background:#fdecec}.added{color:#070;background:#eafbea}\
.status{font-weight:bold}.flag{color:#a00;font-weight:bold}\
svg text{font:11px system-ui,sans-serif}";

/// The report as one self-contained HTML file.
pub fn html(r: &CaseReport) -> String {
    let e = Html;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <title>cordon case report {}</title><style>{STYLE}</style></head><body>\n",
        e.text(&r.case_id)
    );
    let _ = writeln!(
        out,
        "<h1>Case report <code>{}</code></h1>",
        e.text(&r.case_id)
    );
    let _ = writeln!(out, "<table>");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row(
        &mut out,
        "Status",
        format!("<span class=\"status\">{}</span>", e.text(&r.status)),
    );
    row(&mut out, "Next", e.text(&r.next));
    row(
        &mut out,
        "Time to contain",
        r.time_to_contain_ms
            .map_or_else(|| "not contained".to_string(), duration),
    );
    row(
        &mut out,
        "Waiting for approval",
        duration(r.approval_wait_ms),
    );
    row(&mut out, "Epochs", r.epochs.len().to_string());
    let flags: Vec<String> = r
        .flags
        .iter()
        .map(|f| format!("<span class=\"flag\">{}</span>", e.text(f)))
        .collect();
    row(
        &mut out,
        "Flags",
        if flags.is_empty() {
            "none".to_string()
        } else {
            flags.join(", ")
        },
    );
    let _ = writeln!(out, "</table>\n<h2>Finding</h2>\n<table>");
    let f = &r.finding;
    let code = |t: &str| format!("<code>{}</code>", e.text(t));
    row(&mut out, "Type", code(&f.finding_type));
    row(
        &mut out,
        "Severity",
        format!("{} ({})", f.severity, e.text(&f.severity_band)),
    );
    let resources: Vec<String> = f.resources.iter().map(|x| code(x)).collect();
    row(
        &mut out,
        "Resource",
        format!("{} {}", code(&f.resource_type), resources.join(", ")),
    );
    row(&mut out, "Account", code(&f.account_id));
    row(&mut out, "Region", code(&f.region));
    row(&mut out, "Finding id", code(&f.id));
    row(
        &mut out,
        "Updated",
        f.updated_at
            .as_deref()
            .map_or_else(|| "-".to_string(), code),
    );
    row(&mut out, "Finding SHA-256", code(&f.sha256));
    let _ = writeln!(
        out,
        "</table>\n<h2>Route</h2>\n<p>Playbook <code>{}</code> (priority {}), because:</p><ul>",
        e.text(&r.route.playbook),
        r.route.priority
    );
    for why in &r.route.matched {
        let _ = writeln!(out, "<li>{}</li>", e.text(why));
    }
    let _ = writeln!(out, "</ul>\n<h2>Timeline</h2>");
    out.push_str(&svg_timeline(r));
    for epoch in &r.epochs {
        html_epoch(&mut out, epoch);
    }
    if let Some(ev) = &r.evidence {
        html_evidence(&mut out, ev);
    }
    let _ = writeln!(
        out,
        "<h2>Journal</h2>\n<table><tr><th>Time</th><th>#</th><th>Epoch</th><th>Step</th><th>Event</th><th>Detail</th></tr>"
    );
    for t in &r.timeline {
        let _ = writeln!(
            out,
            "<tr><td>+{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            duration(t.offset_ms),
            t.seq,
            t.epoch,
            t.step.as_deref().map_or_else(|| "-".to_string(), code),
            e.text(&t.event),
            e.text(&t.detail)
        );
    }
    let _ = writeln!(out, "</table>\n<h2>Commands</h2>");
    for c in &r.commands {
        let _ = writeln!(
            out,
            "<p>{}:</p><pre>{}</pre>",
            e.text(&c.purpose),
            e.text(&c.command)
        );
    }
    let _ = writeln!(
        out,
        "<p>Made from the journal's {} records (hash chain checked; last hash <code>{}</code>).</p>\n</body></html>",
        r.journal.records,
        e.text(&r.journal.last_hash)
    );
    out
}

fn html_epoch(out: &mut String, epoch: &EpochReport) {
    let e = Html;
    let _ = writeln!(
        out,
        "<h2>Epoch {}: steps</h2>\n<p>Opened {}, playbook <code>{}</code>.",
        epoch.epoch,
        e.text(&epoch.opened_at),
        e.text(&epoch.route.playbook)
    );
    if let Some(reason) = &epoch.reason {
        let _ = write!(out, " Why: {}.", e.text(reason));
    }
    if let Some(p) = &epoch.provenance {
        let _ = write!(
            out,
            " Started by <code>{}</code>, acting as <code>{}</code>.",
            e.text(p.caller.as_deref().unwrap_or("-")),
            e.text(p.acting_as.as_deref().unwrap_or("-"))
        );
    }
    let _ = writeln!(out, "</p>");
    for s in &epoch.steps {
        let _ = writeln!(
            out,
            "<h3>{}. <code>{}</code> ({}) on <code>{}</code>: <span class=\"status\">{}</span></h3>\n<ul><li>Attempts: {}</li>",
            s.index,
            e.text(&s.id),
            e.text(&s.action),
            e.text(&s.target),
            e.text(&s.result),
            s.attempts
        );
        let mut item = |text: String| {
            let _ = writeln!(out, "<li>{text}</li>");
        };
        if let Some(at) = &s.verified_at {
            item(format!("Verified: {}", e.text(at)));
        }
        if let Some(a) = &s.approval {
            if let Some(at) = &a.requested_at {
                item(format!("Approval requested: {}", e.text(at)));
            }
            if let Some(by) = &a.granted_by {
                item(format!(
                    "Approved by <code>{}</code> at {}",
                    e.text(by),
                    e.text(a.granted_at.as_deref().unwrap_or("-"))
                ));
            }
            if let Some(by) = &a.refused_by {
                item(format!(
                    "Refused by <code>{}</code> at {}",
                    e.text(by),
                    e.text(a.refused_at.as_deref().unwrap_or("-"))
                ));
            }
            if let Some(at) = &a.timed_out_at {
                item(format!("Nobody approved in time: {}", e.text(at)));
            }
        }
        for f in &s.failures {
            item(format!(
                "<span class=\"flag\">Failed</span> (attempt {}, {}{}): {} on <code>{}</code>: {}; hint: {}",
                f.attempt,
                e.text(&f.at),
                if f.retrying { ", retried" } else { "" },
                e.text(&f.kind),
                e.text(&f.resource),
                e.text(&f.message),
                e.text(&f.hint)
            ));
        }
        if let Some(why) = &s.skipped {
            item(format!("Skipped: {}", e.text(why)));
        }
        if let Some(why) = &s.not_run {
            item(format!("Not run: {}", e.text(why)));
        }
        if let Some(rb) = &s.rollback {
            if let Some(at) = &rb.undone_at {
                item(format!("Undone: {}", e.text(at)));
            }
            if let Some(at) = &rb.verified_at {
                item(format!("Back at its pre-state (read back): {}", e.text(at)));
            }
            if let Some(result) = &rb.result {
                item(format!(
                    "What the undo did:<pre>{}</pre>",
                    flat_lines(result)
                        .iter()
                        .map(|l| e.text(l))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            if let Some(f) = &rb.failed {
                item(format!(
                    "<span class=\"flag\">Undo failed</span> ({}): {} on <code>{}</code>: {}; hint: {}",
                    e.text(&f.at),
                    e.text(&f.kind),
                    e.text(&f.resource),
                    e.text(&f.message),
                    e.text(&f.hint)
                ));
            }
            if let Some(why) = &rb.kept {
                item(format!("Kept (undo needs approval): {}", e.text(why)));
            }
            if let Some(by) = &rb.undo_approved_by {
                item(format!("Undo approved by <code>{}</code>", e.text(by)));
            }
        }
        let _ = writeln!(out, "</ul>");
        if !s.diff.is_empty() {
            let _ = write!(out, "<p>Pre-state → post-state:</p><pre>");
            for line in &s.diff {
                let _ = writeln!(
                    out,
                    "<span class=\"{}\">{}</span>",
                    e.text(&line.change),
                    e.text(&diff_text(line))
                );
            }
            let _ = writeln!(out, "</pre>");
        }
    }
}

fn html_evidence(out: &mut String, ev: &EvidenceReport) {
    let e = Html;
    let _ = writeln!(
        out,
        "<h2>Evidence</h2>\n<p>Manifest <code>{}</code> (version <code>{}</code>, SHA-256 <code>{}</code>), stored {}: {}.</p>",
        e.text(&ev.manifest.location),
        e.text(ev.manifest.version_id.as_deref().unwrap_or("-")),
        e.text(&ev.manifest.sha256),
        if ev.store == "s3" {
            "in S3"
        } else {
            "in the case directory"
        },
        match &ev.problem {
            None => "read now, it is the one the journal recorded".to_string(),
            Some(why) => format!("<span class=\"flag\">PROBLEM: {}</span>", e.text(why)),
        }
    );
    if let Some(sig) = &ev.signature {
        let _ = writeln!(out, "<p>Signed: <code>{}</code>.</p>", e.text(sig));
    }
    let _ = writeln!(
        out,
        "<table><tr><th>Object</th><th>Version id</th><th>Size</th><th>SHA-256</th></tr>"
    );
    for o in &ev.objects {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            e.text(&o.location),
            e.text(o.version_id.as_deref().unwrap_or("-")),
            o.size,
            e.text(&o.sha256)
        );
    }
    let _ = writeln!(out, "</table>");
    for why in &ev.not_stored {
        let _ = writeln!(out, "<p>Not stored: {}</p>", e.text(why));
    }
}

/// One bar of the timeline chart: a step of an epoch, from its first record
/// to its last, with a mark for each record.
struct Lane {
    label: String,
    marks: Vec<(u64, &'static str, String)>,
}

/// The colour of a record's mark.
fn mark_colour(event: &str) -> &'static str {
    match event {
        "step-failed" | "step-rollback-failed" | "approval-refused" | "approval-timed-out" => {
            "#c62828"
        }
        "approval-requested" | "approval-granted" => "#f9a825",
        "step-verified" | "step-rollback-verified" => "#2e7d32",
        "step-rolled-back" | "rollback-started" => "#6a1b9a",
        _ => "#1565c0",
    }
}

/// The timeline as an inline SVG chart: one lane per step (and one for the
/// case's own records), time running left to right from the case's opening.
fn svg_timeline(r: &CaseReport) -> String {
    let e = Html;
    let mut lanes: Vec<Lane> = Vec::new();
    let mut index: BTreeMap<(u32, String), usize> = BTreeMap::new();
    for t in &r.timeline {
        let key = (t.epoch, t.step.clone().unwrap_or_default());
        let at = *index.entry(key.clone()).or_insert_with(|| {
            lanes.push(Lane {
                label: match &t.step {
                    Some(step) if r.epochs.len() > 1 => format!("{step} (epoch {})", t.epoch),
                    Some(step) => step.clone(),
                    None => "case".to_string(),
                },
                marks: Vec::new(),
            });
            lanes.len() - 1
        });
        lanes[at]
            .marks
            .push((t.offset_ms, mark_colour(&t.event), t.event.clone()));
    }
    let total = r.timeline.last().map_or(0, |t| t.offset_ms).max(1);
    let (left, width, row) = (220u64, 640u64, 24u64);
    let height = row * (lanes.len() as u64) + 40;
    let x = |ms: u64| left + ms * width / total;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"timeline of the case\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">\n",
        left + width + 20,
        left + width + 20
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = 10 + row * i as u64;
        let from = lane.marks.first().map_or(0, |m| m.0);
        let to = lane.marks.last().map_or(0, |m| m.0);
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{}\">{}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"10\" fill=\"#90caf9\"/>",
            y + 12,
            e.text(&lane.label),
            x(from),
            y + 3,
            (x(to) - x(from)).max(2)
        );
        for (ms, colour, event) in &lane.marks {
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{colour}\"><title>{} +{}</title></circle>",
                x(*ms),
                y + 8,
                e.text(event),
                duration(*ms)
            );
        }
    }
    let axis = 10 + row * lanes.len() as u64;
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{axis}\" x2=\"{}\" y2=\"{axis}\" stroke=\"#555\"/>\
         <text x=\"{left}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">+{}</text>",
        left + width,
        axis + 14,
        left + width,
        axis + 14,
        duration(total)
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::output::golden;
    use serde_json::json;

    /// The published schema is the one this build prints (`cordon report
    /// --schema`); a change to it is a format change (`docs/formats.md`).
    #[test]
    fn the_published_json_schema_is_current() {
        let mut text = serde_json::to_string_pretty(&json_schema()).unwrap();
        text.push('\n');
        golden::check(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/report.schema.json"),
            &text,
        );
        let schema: Value = serde_json::from_str(&text).unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required.first(), Some(&"format-version"), "{required:?}");
        assert!(required.contains(&"epochs") && required.contains(&"timeline"));
    }

    #[test]
    fn a_code_span_keeps_backticks_pipes_and_newlines_inside() {
        assert_eq!(md_code("a"), "` a `");
        assert_eq!(md_code("a`b``c"), "``` a`b``c ```");
        assert_eq!(md_code("x|y"), "` x\\|y `");
        assert_eq!(md_code("l1\nl2"), "` l1\\nl2 `");
    }

    #[test]
    fn html_escape_leaves_no_markup() {
        assert_eq!(
            html_escape("<img src=x onerror=\"a('b')\">&"),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn diff_marks_what_both_hold_and_what_each_alone_holds() {
        let pre = json!({"instance-id": "i-1", "groups": ["sg-a", "sg-b"]});
        let post = json!({"instance-id": "i-1", "groups": ["sg-iso"]});
        let lines: Vec<String> = diff(Some(&pre), Some(&post))
            .iter()
            .map(diff_text)
            .collect();
        assert_eq!(
            lines,
            vec![
                "  instance-id = \"i-1\"",
                "- groups = [\"sg-a\",\"sg-b\"]",
                "+ groups = [\"sg-iso\"]",
            ]
        );
    }

    #[test]
    fn shell_quote_quotes_what_a_shell_would_split_or_expand() {
        assert_eq!(shell_quote("case-0123"), "case-0123");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm)"), "'$(rm)'");
    }
}
