//! What a responder needs to know about a case at a glance, read from its
//! journal alone: status and epoch, time to contain, time spent waiting for
//! approvals, and the flags that must not be missed (an ENI left open between
//! the two isolation phases, steps that failed, credentials kept contained).
//!
//! Shared by `cordon cases`/`status`, the Lambda's outputs and Game Day
//! scorecards, so "time to contain" means the same everywhere: from the case
//! (or its current epoch) being opened, i.e. the finding reaching cordon, to
//! the verification of its last containing step ([`ActionKind::contains`]).
//!
//! [`ActionKind::contains`]: crate::action::ActionKind::contains

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::action::ActionKind;
use crate::journal::{CaseState, CaseStatus, JournalEvent, JournalRecord};

/// The progress phase that moves ENIs into the allow-all untrack group.
pub const PHASE_UNTRACK_BEGUN: &str = "untrack-begun";
/// The progress phase after which those ENIs are in the isolation group.
pub const PHASE_ISOLATION_DONE: &str = "isolation-done";
/// The progress phase after which those ENIs are back in their own groups.
pub const PHASE_REVERTED: &str = "reverted";

/// One case, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CaseSummary {
    pub case_id: String,
    pub playbook: String,
    pub finding_id: String,
    pub finding_type: String,
    pub severity: f64,
    /// Where the case rests; `running` while no `case-finished` followed the
    /// last activity (in progress, or interrupted by a crash).
    pub status: String,
    /// The current epoch, 1-based.
    pub epoch: u32,
    /// When the current epoch was opened (RFC 3339).
    pub opened_at: String,
    /// From the epoch being opened to its last containing step verified;
    /// absent while a containing step is not verified (or there is none).
    pub time_to_contain_ms: Option<u64>,
    /// Time spent waiting for approvals in the current epoch (answered or not).
    pub approval_wait_ms: u64,
    /// ENIs that entered the allow-all untrack group and were not seen leaving
    /// it: open to the world until someone resumes or rolls back the case.
    pub open_network_interfaces: Vec<String>,
    /// Things a human must not miss, e.g. `OPEN ENI`, `completed-with-failures`.
    pub flags: Vec<String>,
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn millis(at: &str) -> Option<i128> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() / 1_000_000)
}

fn elapsed(from: &str, to: &str) -> Option<u64> {
    let (a, b) = (millis(from)?, millis(to)?);
    u64::try_from(b - a).ok()
}

/// ENI ids named by a progress record of `phase`.
fn phase_enis<'v>(progress: &'v Value, phase: &str) -> Vec<&'v str> {
    if progress.get("phase").and_then(Value::as_str) != Some(phase) {
        return Vec::new();
    }
    progress
        .get("network-interfaces")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// ENIs that entered the untrack group (phase 1 of isolation) and were not
/// seen in the isolation group, back in their own groups, or rolled back since.
pub fn open_network_interfaces(records: &[JournalRecord]) -> Vec<String> {
    // ENI -> the isolation step that opened it.
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    for record in records {
        match &record.event {
            JournalEvent::StepProgress { step, progress } => {
                for eni in phase_enis(progress, PHASE_UNTRACK_BEGUN) {
                    open.insert(eni.to_string(), step.clone());
                }
                for phase in [PHASE_ISOLATION_DONE, PHASE_REVERTED] {
                    for eni in phase_enis(progress, phase) {
                        open.remove(eni);
                    }
                }
            }
            JournalEvent::StepRollbackVerified { step, .. } => {
                open.retain(|_, opener| opener != step);
            }
            _ => {}
        }
    }
    open.into_keys().collect()
}

/// The records of the current epoch (from its `case-opened`/`epoch-opened` on).
fn current_epoch(records: &[JournalRecord]) -> &[JournalRecord] {
    let start = records
        .iter()
        .rposition(|r| {
            matches!(
                r.event,
                JournalEvent::CaseOpened { .. } | JournalEvent::EpochOpened { .. }
            )
        })
        .unwrap_or(0);
    &records[start..]
}

/// Summarises a case from its folded state and its records.
pub fn summarize(state: &CaseState, records: &[JournalRecord]) -> CaseSummary {
    let epoch_records = current_epoch(records);
    let containing: BTreeSet<&str> = state
        .plan
        .steps
        .iter()
        .filter(|s| ActionKind::contains(s.kind()))
        .map(|s| s.id.as_str())
        .collect();
    let mut verified_at: BTreeMap<&str, &str> = BTreeMap::new();
    let mut requested_at: BTreeMap<&str, &str> = BTreeMap::new();
    let mut approval_wait_ms = 0u64;
    for record in epoch_records {
        match &record.event {
            JournalEvent::StepVerified { step, .. } => {
                verified_at.insert(step.as_str(), record.at.as_str());
            }
            JournalEvent::ApprovalRequested { step, .. } => {
                requested_at.insert(step.as_str(), record.at.as_str());
            }
            JournalEvent::ApprovalGranted { step, .. }
            | JournalEvent::ApprovalRefused { step, .. }
            | JournalEvent::ApprovalTimedOut { step, .. } => {
                if let Some(asked) = requested_at.remove(step.as_str()) {
                    approval_wait_ms += elapsed(asked, &record.at).unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    // Requests still unanswered count up to the last record.
    if let Some(last) = epoch_records.last() {
        for asked in requested_at.values() {
            approval_wait_ms += elapsed(asked, &last.at).unwrap_or(0);
        }
    }
    let time_to_contain_ms =
        if !containing.is_empty() && containing.iter().all(|s| verified_at.contains_key(s)) {
            containing
                .iter()
                .filter_map(|s| verified_at.get(s))
                .filter_map(|at| elapsed(&state.opened_at, at))
                .max()
        } else {
            None
        };
    let open = open_network_interfaces(records);
    let mut flags = Vec::new();
    if !open.is_empty() {
        flags.push(format!("OPEN ENI {}", open.join(",")));
    }
    match state.status {
        Some(CaseStatus::CompletedWithFailures) => flags.push("completed-with-failures".into()),
        Some(CaseStatus::RolledBackExceptCredentials) => {
            flags.push("undo kept: needs approval".into())
        }
        Some(CaseStatus::RollbackIncomplete) => flags.push("rollback incomplete".into()),
        _ => {}
    }
    if state.interrupted.is_some() {
        flags.push("interrupted".into());
    }
    if state.loop_guard.is_some() {
        flags.push("loop guard".into());
    }
    if state.status.is_none() {
        flags.push("in progress or crashed: resume".into());
    }
    CaseSummary {
        case_id: state.plan.case_id.to_string(),
        playbook: state.plan.playbook.clone(),
        finding_id: state.plan.finding.id.clone(),
        finding_type: state.plan.finding.finding_type.clone(),
        severity: state.plan.finding.severity,
        status: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "running".to_string()),
        epoch: state.epoch,
        opened_at: state.opened_at.clone(),
        time_to_contain_ms,
        approval_wait_ms,
        open_network_interfaces: open,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: u64, at: &str, event: JournalEvent) -> JournalRecord {
        JournalRecord::new(seq, at, "x", event)
    }

    fn progress(seq: u64, phase: &str, enis: &[&str]) -> JournalRecord {
        record(
            seq,
            "2026-01-01T00:00:00Z",
            JournalEvent::StepProgress {
                step: "isolate".into(),
                progress: json!({"phase": phase, "network-interfaces": enis}),
            },
        )
    }

    #[test]
    fn an_eni_between_the_phases_is_open_until_isolated_reverted_or_rolled_back() {
        let begun = progress(1, PHASE_UNTRACK_BEGUN, &["eni-a", "eni-b"]);
        assert_eq!(
            open_network_interfaces(std::slice::from_ref(&begun)),
            vec!["eni-a", "eni-b"]
        );
        let half = vec![begun.clone(), progress(2, PHASE_ISOLATION_DONE, &["eni-a"])];
        assert_eq!(open_network_interfaces(&half), vec!["eni-b"]);
        let reverted = vec![
            begun.clone(),
            progress(2, PHASE_REVERTED, &["eni-a", "eni-b"]),
        ];
        assert!(open_network_interfaces(&reverted).is_empty());
        let rolled_back = vec![
            begun,
            record(
                2,
                "2026-01-01T00:00:01Z",
                JournalEvent::StepRollbackVerified {
                    step: "isolate".into(),
                    epoch: None,
                },
            ),
        ];
        assert!(open_network_interfaces(&rolled_back).is_empty());
    }
}
