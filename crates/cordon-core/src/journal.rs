//! The write-ahead journal: an append-only, hash-chained sequence of records per
//! case. A step's pre-state is journaled durably before anything is changed, so
//! a crash at any point leaves enough to resume or roll back.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::format::{self, NewerFormat};
use crate::plan::{CaseId, Plan};

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The journal format this build writes.
///
/// 1: records before versioning (no `format-version` key; `pre_state`,
/// `finding_sha256`, `cordon_version` and `duration_ms` in snake_case).
/// 2: `format-version` on every record, every key kebab-case.
/// Every version up to this one is read; see `docs/formats.md`.
pub const FORMAT_VERSION: u32 = 2;

/// One journal record. `prev_hash` chains it to the record before.
///
/// The chain hashes records *as stored*: a record read from a store keeps the
/// exact text it was read from, so a journal written by an older cordon (whose
/// records this build would serialize differently) still verifies, and a
/// journal may hold older records followed by newer ones. A new record is
/// stored as [`JournalRecord::stored_text`] gives it, which is what it hashes.
/// Editing the fields of a record read from a store changes neither its stored
/// text nor its hash: history is not rewritten in memory either.
#[derive(Debug, Clone)]
pub struct JournalRecord {
    /// 0-based position in the case's journal.
    pub seq: u64,
    /// RFC 3339 UTC time the record was written.
    pub at: String,
    /// SHA-256 (hex) of the previous record's stored text, or [`GENESIS_HASH`].
    pub prev_hash: String,
    pub event: JournalEvent,
    /// The text a store held, for a record read from one.
    stored: Option<StoredText>,
}

#[derive(Debug, Clone)]
struct StoredText {
    text: Arc<str>,
    format_version: u32,
}

/// The record as written in the current format (`format-version` first).
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RecordOut<'a> {
    format_version: u32,
    seq: u64,
    at: &'a str,
    prev_hash: &'a str,
    event: &'a JournalEvent,
}

/// The record as read, in any version up to [`FORMAT_VERSION`] (the keys of
/// the envelope never changed; `format-version` is read by [`format::stored_version`]).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RecordIn {
    seq: u64,
    at: String,
    prev_hash: String,
    event: JournalEvent,
}

/// Why stored text is not a record this build can use.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A newer cordon wrote it: its version, or a kind or value, is unknown here.
    #[error(transparent)]
    Newer(NewerFormat),
    /// Not a journal record (truncated, edited, or not JSON).
    #[error("unreadable record: {0}")]
    Unreadable(#[source] serde_json::Error),
}

impl RecordError {
    /// The error as the store of `case` reports it for the record at `seq`.
    pub fn in_journal(self, case: &CaseId, seq: u64) -> JournalError {
        match self {
            RecordError::Newer(newer) => JournalError::NewerFormat(NewerFormat {
                what: format!("record {seq} of the journal of case {case}"),
                ..newer
            }),
            RecordError::Unreadable(e) => JournalError::Corrupt {
                case: case.clone(),
                seq,
                reason: format!("unreadable record: {e}"),
            },
        }
    }
}

impl JournalRecord {
    /// A new record, to be appended in the current format.
    pub fn new(
        seq: u64,
        at: impl Into<String>,
        prev_hash: impl Into<String>,
        event: JournalEvent,
    ) -> Self {
        Self {
            seq,
            at: at.into(),
            prev_hash: prev_hash.into(),
            event,
            stored: None,
        }
    }

    /// Reads one record from the exact text a store holds (one JSON object), in
    /// any journal format up to [`FORMAT_VERSION`]; the text is kept for [`Self::hash`].
    pub fn from_stored(text: &str) -> Result<Self, RecordError> {
        let newer = |detail: String| {
            RecordError::Newer(NewerFormat {
                what: "a journal record".to_string(),
                detail,
                newest: FORMAT_VERSION,
            })
        };
        let version = format::stored_version(text).map_err(RecordError::Unreadable)?;
        if version > FORMAT_VERSION {
            return Err(newer(format!("format-version {version}")));
        }
        let record: RecordIn =
            serde_json::from_str(text).map_err(|e| match format::unknown_variant(&e) {
                Some(name) => newer(format!("`{name}`, unknown to this cordon")),
                None => RecordError::Unreadable(e),
            })?;
        Ok(Self {
            seq: record.seq,
            at: record.at,
            prev_hash: record.prev_hash,
            event: record.event,
            stored: Some(StoredText {
                text: text.into(),
                format_version: version,
            }),
        })
    }

    /// The record's text in the store: as read for a stored record, else its
    /// serialization in the current format (what the stores write).
    pub fn stored_text(&self) -> Cow<'_, str> {
        match &self.stored {
            Some(stored) => Cow::Borrowed(&stored.text),
            // serde_json fails only on a map with non-string keys or a Serialize
            // impl that errors; a record holds strings, numbers, derived types and
            // `Value`s (whose keys are strings), so this cannot fail.
            None => Cow::Owned(serde_json::to_string(self).expect("a journal record serializes")),
        }
    }

    /// The format version of the stored text ([`FORMAT_VERSION`] for a new record).
    pub fn format_version(&self) -> u32 {
        self.stored
            .as_ref()
            .map_or(FORMAT_VERSION, |stored| stored.format_version)
    }

    /// SHA-256 (hex) of [`Self::stored_text`]: the link the next record's `prev-hash` holds.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.stored_text().as_bytes()))
    }
}

/// Records are equal when they say the same thing, whatever format stored them.
impl PartialEq for JournalRecord {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
            && self.at == other.at
            && self.prev_hash == other.prev_hash
            && self.event == other.event
    }
}

/// Always the current format, with `format-version` first.
impl Serialize for JournalRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RecordOut {
            format_version: FORMAT_VERSION,
            seq: self.seq,
            at: &self.at,
            prev_hash: &self.prev_hash,
            event: &self.event,
        }
        .serialize(serializer)
    }
}

/// Any format up to [`FORMAT_VERSION`], keeping the exact text for the hash
/// chain. Only serde_json can hand over that text, so records deserialize
/// from serde_json input only (`from_str`, `from_slice`, `from_reader`).
impl<'de> Deserialize<'de> for JournalRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<RawValue>>::deserialize(deserializer)?;
        JournalRecord::from_stored(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// What happened.
///
/// Adding a kind is an additive change (the format version stays): give it a
/// golden file (`crates/cordon-core/tests/journal_format.rs`); an older cordon
/// meeting it refuses the journal as written by a newer one. Renaming or
/// removing a key bumps [`FORMAT_VERSION`], and the old name stays readable
/// (`alias`), as the snake_case names of format 1 do below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[serde(
    tag = "event",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[strum_discriminants(
    name(JournalEventKind),
    derive(
        strum::Display,
        strum::EnumString,
        strum::IntoStaticStr,
        strum::VariantNames,
        strum::EnumIter
    ),
    strum(serialize_all = "kebab-case")
)]
pub enum JournalEvent {
    /// The case began with this plan; `finding-sha256` pins the finding received.
    CaseOpened {
        plan: Box<Plan>,
        #[serde(alias = "finding_sha256")]
        finding_sha256: String,
        #[serde(alias = "cordon_version")]
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
        #[serde(alias = "pre_state")]
        pre_state: Value,
    },
    /// The step's mutations were applied.
    StepApplied {
        step: String,
        outcome: Value,
        #[serde(alias = "duration_ms")]
        duration_ms: u64,
    },
    /// The post-condition was read back and holds.
    StepVerified {
        step: String,
        #[serde(alias = "duration_ms")]
        duration_ms: u64,
    },
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

    /// The record kind as journaled (`event` key), for timelines.
    pub fn name(&self) -> &'static str {
        JournalEventKind::from(self).into()
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
    /// A newer cordon wrote part of the journal; this build must not guess at it.
    #[error(transparent)]
    NewerFormat(NewerFormat),
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

    /// Every record of the case, in order (empty for a new case), each read
    /// with [`JournalRecord::from_stored`] from the exact text stored, so the
    /// hash chain is checked against what was written.
    fn load(
        &self,
        case: &CaseId,
    ) -> impl Future<Output = Result<Vec<JournalRecord>, JournalError>> + Send;

    /// Durably appends `record` as [`JournalRecord::stored_text`] gives it (the
    /// text its hash covers); fails with [`JournalError::Conflict`] if its `seq` exists.
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
