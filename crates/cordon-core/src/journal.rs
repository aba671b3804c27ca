//! The write-ahead journal: an append-only, hash-chained sequence of records per
//! case. A step's pre-state is journaled durably before anything is changed, so
//! a crash at any point leaves enough to resume or roll back.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::plan::{CaseId, Plan};

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One journal record. `prev_hash` chains it to the record before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JournalRecord {
    /// 0-based position in the case's journal.
    pub seq: u64,
    /// RFC 3339 UTC time the record was written.
    pub at: String,
    /// SHA-256 (hex) of the previous record's canonical JSON, or [`GENESIS_HASH`].
    pub prev_hash: String,
    pub event: JournalEvent,
}

impl JournalRecord {
    /// SHA-256 of this record's canonical JSON (its serialisation by this crate).
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum JournalEvent {
    /// The case began with this plan; `finding-sha256` pins the finding received.
    CaseOpened {
        plan: Box<Plan>,
        finding_sha256: String,
        cordon_version: String,
    },
    /// A step waits for a human.
    ApprovalRequested { step: String, reason: String },
    /// A human approved the step; `approver` is their verified identity.
    ApprovalGranted { step: String, approver: String },
    /// A human refused the step.
    ApprovalRefused {
        step: String,
        approver: String,
        reason: String,
    },
    /// The pre-state of exactly what the step will change, written before any change.
    StepPrepared {
        step: String,
        attempt: u32,
        pre_state: Value,
    },
    /// The step's mutations were applied.
    StepApplied {
        step: String,
        outcome: Value,
        duration_ms: u64,
    },
    /// The post-condition was read back and holds.
    StepVerified { step: String, duration_ms: u64 },
    /// An attempt failed; `retrying` says whether another attempt follows.
    StepFailed {
        step: String,
        attempt: u32,
        error: ErrorRecord,
        retrying: bool,
    },
    /// The step did not apply (target absent from the finding, best-effort failure, ...).
    StepSkipped { step: String, reason: String },
    /// The step was never run (approval refused, case stopped before it).
    StepNotRun { step: String, reason: String },
    /// Rollback of the case began.
    RollbackStarted { reason: String },
    /// A step was undone from its pre-state.
    StepRolledBack { step: String, result: Value },
    /// The resource was read back and equals its pre-state.
    StepRollbackVerified { step: String },
    /// Undoing a step failed; rollback goes on with the other steps.
    StepRollbackFailed { step: String, error: ErrorRecord },
    /// The case reached a resting state.
    CaseFinished { status: CaseStatus },
}

impl JournalEvent {
    /// The step the event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            JournalEvent::ApprovalRequested { step, .. }
            | JournalEvent::ApprovalGranted { step, .. }
            | JournalEvent::ApprovalRefused { step, .. }
            | JournalEvent::StepPrepared { step, .. }
            | JournalEvent::StepApplied { step, .. }
            | JournalEvent::StepVerified { step, .. }
            | JournalEvent::StepFailed { step, .. }
            | JournalEvent::StepSkipped { step, .. }
            | JournalEvent::StepNotRun { step, .. }
            | JournalEvent::StepRolledBack { step, .. }
            | JournalEvent::StepRollbackVerified { step }
            | JournalEvent::StepRollbackFailed { step, .. } => Some(step),
            JournalEvent::CaseOpened { .. }
            | JournalEvent::RollbackStarted { .. }
            | JournalEvent::CaseFinished { .. } => None,
        }
    }

    /// Short kebab name, for timelines.
    pub fn name(&self) -> &'static str {
        match self {
            JournalEvent::CaseOpened { .. } => "case-opened",
            JournalEvent::ApprovalRequested { .. } => "approval-requested",
            JournalEvent::ApprovalGranted { .. } => "approval-granted",
            JournalEvent::ApprovalRefused { .. } => "approval-refused",
            JournalEvent::StepPrepared { .. } => "step-prepared",
            JournalEvent::StepApplied { .. } => "step-applied",
            JournalEvent::StepVerified { .. } => "step-verified",
            JournalEvent::StepFailed { .. } => "step-failed",
            JournalEvent::StepSkipped { .. } => "step-skipped",
            JournalEvent::StepNotRun { .. } => "step-not-run",
            JournalEvent::RollbackStarted { .. } => "rollback-started",
            JournalEvent::StepRolledBack { .. } => "step-rolled-back",
            JournalEvent::StepRollbackVerified { .. } => "step-rollback-verified",
            JournalEvent::StepRollbackFailed { .. } => "step-rollback-failed",
            JournalEvent::CaseFinished { .. } => "case-finished",
        }
    }
}

/// Where a case rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum CaseStatus {
    /// Every step ran (or was skipped by policy) and verified.
    Completed,
    /// A step waits for approval; `cordon approve` or `cordon resume` continues.
    AwaitingApproval,
    /// Stopped by a failure or a refused approval; what was done stays done.
    Stopped,
    /// Everything done was undone and verified.
    RolledBack,
    /// Rollback could not undo every step; see the failed records.
    RollbackIncomplete,
}

/// An error as journaled: no source chain, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorRecord {
    pub kind: String,
    pub resource: String,
    pub message: String,
    pub hint: String,
}

/// Journal storage failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "case {case} is being worked on by another cordon process ({detail}); wait for it or check `cordon status {case}`"
    )]
    Locked { case: CaseId, detail: String },
    #[error(
        "journal of case {case}: record {seq} already exists: another writer claimed it; re-run to pick up its progress"
    )]
    Conflict { case: CaseId, seq: u64 },
    #[error("journal of case {case} is corrupt at record {seq}: {reason}")]
    Corrupt {
        case: CaseId,
        seq: u64,
        reason: String,
    },
    #[error("no journal for case {case}: `cordon cases` lists the known cases")]
    UnknownCase { case: CaseId },
    #[error("journal store {location}: {message}")]
    Io {
        location: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Where journals live. Implementations: a local directory (CLI) and S3 (Lambda).
pub trait JournalStore: Send + Sync {
    /// Held while a process works on a case; dropping it releases the case.
    type Lock: Send;

    /// Claims the case for this process, failing fast if another holds it.
    fn lock(&self, case: &CaseId) -> impl Future<Output = Result<Self::Lock, JournalError>> + Send;

    /// Every record of the case, in order (empty for a new case).
    fn load(
        &self,
        case: &CaseId,
    ) -> impl Future<Output = Result<Vec<JournalRecord>, JournalError>> + Send;

    /// Durably appends `record`; fails with [`JournalError::Conflict`] if its `seq` exists.
    fn append(
        &self,
        case: &CaseId,
        record: &JournalRecord,
    ) -> impl Future<Output = Result<(), JournalError>> + Send;

    /// Every case in the store.
    fn cases(&self) -> impl Future<Output = Result<Vec<CaseId>, JournalError>> + Send;
}

/// Checks the hash chain and numbering; returns the first bad record's seq and why.
pub fn verify_chain(records: &[JournalRecord]) -> Result<(), (u64, String)> {
    let mut prev = GENESIS_HASH.to_string();
    for (i, record) in records.iter().enumerate() {
        if record.seq != i as u64 {
            return Err((i as u64, format!("expected seq {i}, found {}", record.seq)));
        }
        if record.prev_hash != prev {
            return Err((
                record.seq,
                "prev-hash does not match the record before it".to_string(),
            ));
        }
        prev = record.hash();
    }
    Ok(())
}

/// Per-step state folded from the journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepState {
    pub pre_state: Option<Value>,
    pub attempts: u32,
    pub outcome: Option<Value>,
    pub verified: bool,
    pub failed_final: Option<ErrorRecord>,
    pub skipped: Option<String>,
    pub not_run: Option<String>,
    pub approval_requested: bool,
    pub approved_by: Option<String>,
    pub refused_by: Option<String>,
    pub rolled_back: bool,
    pub rollback_verified: bool,
    pub rollback_failed: Option<ErrorRecord>,
}

impl StepState {
    /// Did the step change (or possibly change) anything that rollback must consider?
    pub fn touched(&self) -> bool {
        self.pre_state.is_some()
    }

    /// Nothing more to do for this step on a forward run.
    pub fn done(&self) -> bool {
        self.verified
            || self.skipped.is_some()
            || self.not_run.is_some()
            || self.failed_final.is_some()
    }
}

/// The case as the journal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseState {
    pub plan: Plan,
    pub steps: BTreeMap<String, StepState>,
    pub status: Option<CaseStatus>,
    pub rollback_started: bool,
    pub next_seq: u64,
    pub last_hash: String,
}

impl CaseState {
    /// A case about to be opened with `plan`.
    pub fn new(plan: Plan) -> Self {
        Self {
            steps: plan
                .steps
                .iter()
                .map(|s| (s.id.clone(), StepState::default()))
                .collect(),
            plan,
            status: None,
            rollback_started: false,
            next_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
        }
    }

    /// Folds the records; the first must open the case.
    pub fn from_records(case: &CaseId, records: &[JournalRecord]) -> Result<Self, JournalError> {
        let corrupt = |seq: u64, reason: String| JournalError::Corrupt {
            case: case.clone(),
            seq,
            reason,
        };
        verify_chain(records).map_err(|(seq, reason)| corrupt(seq, reason))?;
        let Some(first) = records.first() else {
            return Err(JournalError::UnknownCase { case: case.clone() });
        };
        let JournalEvent::CaseOpened { plan, .. } = &first.event else {
            return Err(corrupt(
                0,
                "the first record does not open the case".to_string(),
            ));
        };
        let mut state = CaseState {
            plan: (**plan).clone(),
            steps: plan
                .steps
                .iter()
                .map(|s| (s.id.clone(), StepState::default()))
                .collect(),
            status: None,
            rollback_started: false,
            next_seq: records.len() as u64,
            last_hash: records
                .last()
                .map(JournalRecord::hash)
                .unwrap_or_else(|| GENESIS_HASH.to_string()),
        };
        for record in &records[1..] {
            if let Some(step) = record.event.step()
                && !state.steps.contains_key(step)
            {
                return Err(corrupt(
                    record.seq,
                    format!("names step `{step}`, which is not in the plan"),
                ));
            }
            state.apply(&record.event);
        }
        Ok(state)
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        self.steps.entry(id.to_string()).or_default()
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &JournalEvent) {
        match event {
            JournalEvent::CaseOpened { .. } => {}
            JournalEvent::ApprovalRequested { step, .. } => {
                self.step_mut(step).approval_requested = true
            }
            JournalEvent::ApprovalGranted { step, approver } => {
                self.step_mut(step).approved_by = Some(approver.clone())
            }
            JournalEvent::ApprovalRefused { step, approver, .. } => {
                self.step_mut(step).refused_by = Some(approver.clone())
            }
            JournalEvent::StepPrepared {
                step,
                attempt,
                pre_state,
            } => {
                let s = self.step_mut(step);
                // The first pre-state is the truth: later attempts reuse it.
                if s.pre_state.is_none() {
                    s.pre_state = Some(pre_state.clone());
                }
                s.attempts = s.attempts.max(*attempt);
            }
            JournalEvent::StepApplied { step, outcome, .. } => {
                self.step_mut(step).outcome = Some(outcome.clone())
            }
            JournalEvent::StepVerified { step, .. } => self.step_mut(step).verified = true,
            JournalEvent::StepFailed {
                step,
                attempt,
                error,
                retrying,
            } => {
                let s = self.step_mut(step);
                s.attempts = s.attempts.max(*attempt);
                if !retrying {
                    s.failed_final = Some(error.clone());
                }
            }
            JournalEvent::StepSkipped { step, reason } => {
                self.step_mut(step).skipped = Some(reason.clone())
            }
            JournalEvent::StepNotRun { step, reason } => {
                self.step_mut(step).not_run = Some(reason.clone())
            }
            JournalEvent::RollbackStarted { .. } => self.rollback_started = true,
            JournalEvent::StepRolledBack { step, .. } => self.step_mut(step).rolled_back = true,
            JournalEvent::StepRollbackVerified { step } => {
                self.step_mut(step).rollback_verified = true
            }
            JournalEvent::StepRollbackFailed { step, error } => {
                self.step_mut(step).rollback_failed = Some(error.clone())
            }
            JournalEvent::CaseFinished { status } => self.status = Some(*status),
        }
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.get(id)
    }
}
