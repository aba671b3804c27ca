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

use crate::claims::{ClaimAnswer, ResourceClaim};
use crate::format::{self, NewerFormat};
use crate::plan::{CaseId, Plan, PlannedStep};
use crate::provenance::Provenance;

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The journal format this build writes.
///
/// 1: records before versioning (no `format-version` key; `pre_state`,
/// `finding_sha256`, `cordon_version` and `duration_ms` in snake_case).
/// 2: `format-version` on every record, every key kebab-case.
/// 3: a plan whose steps restrict who may approve them (`approvers`,
/// `forbid-self-approval`).
/// An older cordon ignoring those keys would let anyone approve, so only the
/// records that carry them are written as 3 ([`JournalRecord::format_version`]);
/// every other record stays [`BASE_FORMAT_VERSION`], readable by older builds.
/// 4: a plan whose steps declare `needs` (a step graph). An older cordon
/// would run it in written order, which need not respect the needs, so only
/// the records carrying such a plan are written as 4.
/// Every version up to this one is read; see `docs/formats.md`.
pub const FORMAT_VERSION: u32 = 4;

/// The version of a record carrying approval restrictions and no step graph.
pub const RESTRICTED_FORMAT_VERSION: u32 = 3;

/// The version of a record that carries nothing an older reader must not ignore.
pub const BASE_FORMAT_VERSION: u32 = 2;

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

    /// The version a new record is written in: [`FORMAT_VERSION`] when it
    /// carries a step graph, [`RESTRICTED_FORMAT_VERSION`] when it carries
    /// approval restrictions, else [`BASE_FORMAT_VERSION`].
    fn version_for(event: &JournalEvent) -> u32 {
        let steps: &[PlannedStep] = match event {
            JournalEvent::CaseOpened { plan, .. } | JournalEvent::EpochOpened { plan, .. } => {
                &plan.steps
            }
            JournalEvent::PlanAmended { steps, .. } => steps,
            _ => &[],
        };
        if steps.iter().any(|s| s.needs.is_some()) {
            FORMAT_VERSION
        } else if steps.iter().any(|s| s.approval.is_restricted()) {
            RESTRICTED_FORMAT_VERSION
        } else {
            BASE_FORMAT_VERSION
        }
    }

    /// The format version of the stored text (for a new record, the one it is written in).
    pub fn format_version(&self) -> u32 {
        self.stored.as_ref().map_or_else(
            || Self::version_for(&self.event),
            |stored| stored.format_version,
        )
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
            format_version: Self::version_for(&self.event),
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
        /// Whether the finding was verified at its source, and as whom the case
        /// acts (absent from journals written before cordon recorded it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance: Option<Provenance>,
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
    /// A step was undone from its pre-state. `epoch` names an earlier epoch
    /// being unwound (absent: the current one).
    StepRolledBack {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
        result: Value,
    },
    /// The resource was read back and equals its pre-state.
    StepRollbackVerified {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
    },
    /// Undoing a step failed; rollback goes on with the other steps.
    StepRollbackFailed {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
        error: ErrorRecord,
    },
    /// The case reached a resting state.
    CaseFinished { status: CaseStatus },
    /// A new epoch of the case began with a fresh plan and fresh pre-states: the
    /// case was rolled back and its finding arrived again, or an updated finding
    /// changed the plan and a human accepted it. Earlier epochs stay as they were
    /// journaled; rollback unwinds the epochs newest first.
    EpochOpened {
        epoch: u32,
        plan: Box<Plan>,
        finding_sha256: String,
        reason: String,
        /// As in `case-opened`: source verification and acting identity of this epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance: Option<Provenance>,
    },
    /// The same finding (same case) arrived again with different content.
    FindingUpdated {
        finding_sha256: String,
        updated_at: Option<String>,
        severity: f64,
        change: String,
    },
    /// Steps not yet applied were re-planned from an updated finding; steps
    /// already applied keep the plan they were applied with.
    PlanAmended {
        steps: Vec<PlannedStep>,
        reason: String,
    },
    /// After a failed verification the live state was re-read: from now on the
    /// step's pre-state is `pre_state` (the first one plus the resources it
    /// lacked, listed in `added`). The first pre-state stays in the journal.
    StepPreStateAmended {
        step: String,
        pre_state: Value,
        added: Vec<String>,
    },
    /// Durable progress inside a step, written before the step goes on (an
    /// isolation phase begun or finished, a key about to be created).
    StepProgress { step: String, progress: Value },
    /// Nobody answered an approval request in time; the case stopped.
    ApprovalTimedOut { step: String, waited_ms: u64 },
    /// The process was asked to stop (a signal); in-flight work finished first.
    CaseInterrupted { reason: String },
    /// A human approved an undo that re-arms credentials or deletes evidence.
    UndoApproved {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
        approver: String,
    },
    /// Rollback left the step in place: its undo needs an approval it did not get.
    UndoKept {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u32>,
        reason: String,
    },
    /// Automatic action stopped: a resource was contained or re-triggered too often.
    LoopGuardTripped {
        resources: Vec<String>,
        reason: String,
    },
    /// The case claimed `resource` before changing it (see [`crate::claims`]);
    /// `taken-over-from` names a rolled-back case whose stale claim it replaced.
    ResourceClaimed {
        resource: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        taken_over_from: Option<CaseId>,
    },
    /// The case let `resource` go: it ended rolled back.
    ResourceReleased { resource: String },
    /// Another case (`holder`) holds `resource`: this case did not act on it
    /// and stopped, so it never records the holder's containment as the
    /// resource's original state. It runs once the holder is rolled back.
    ResourceBusy {
        resource: String,
        holder: CaseId,
        reason: String,
    },
    /// Automatic action stopped before any change: the fleet-wide cap on
    /// instances isolated per window was reached (counted from the journals).
    FleetCapTripped {
        /// The instances isolated (pre-state written) in the window, by any case.
        isolated: Vec<String>,
        limit: u32,
        window_seconds: u64,
        reason: String,
    },
    /// The pause switch was on before `before-step`: the case stopped there.
    CasePaused { before_step: String, switch: String },
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
            | JournalEvent::StepRollbackVerified { step, .. }
            | JournalEvent::StepRollbackFailed { step, .. }
            | JournalEvent::StepPreStateAmended { step, .. }
            | JournalEvent::StepProgress { step, .. }
            | JournalEvent::ApprovalTimedOut { step, .. }
            | JournalEvent::UndoApproved { step, .. }
            | JournalEvent::UndoKept { step, .. } => Some(step),
            JournalEvent::CaseOpened { .. }
            | JournalEvent::RollbackStarted { .. }
            | JournalEvent::CaseFinished { .. }
            | JournalEvent::EpochOpened { .. }
            | JournalEvent::FindingUpdated { .. }
            | JournalEvent::PlanAmended { .. }
            | JournalEvent::CaseInterrupted { .. }
            | JournalEvent::LoopGuardTripped { .. }
            | JournalEvent::ResourceClaimed { .. }
            | JournalEvent::ResourceReleased { .. }
            | JournalEvent::ResourceBusy { .. }
            | JournalEvent::FleetCapTripped { .. }
            | JournalEvent::CasePaused { .. } => None,
        }
    }

    /// The earlier epoch a rollback record is about (`None`: the current epoch).
    pub fn epoch(&self) -> Option<u32> {
        match self {
            JournalEvent::StepRolledBack { epoch, .. }
            | JournalEvent::StepRollbackVerified { epoch, .. }
            | JournalEvent::StepRollbackFailed { epoch, .. }
            | JournalEvent::UndoApproved { epoch, .. }
            | JournalEvent::UndoKept { epoch, .. } => *epoch,
            _ => None,
        }
    }

    /// The record kind as journaled (`event` key), for timelines.
    pub fn name(&self) -> &'static str {
        JournalEventKind::from(self).into()
    }
}

/// Where a case rests.
///
/// The case lifecycle (one epoch; a rolled-back case, or an accepted re-plan,
/// opens the next epoch and starts again at `open`):
///
/// ```text
///   open ──▶ running ⇄ awaiting-approval
///              │
///              ├──▶ completed                  every step verified
///              ├──▶ completed-with-failures    some step failed under `on-failure: continue`
///              │                               (or a best-effort step failed); `resume` retries them
///              ├──▶ stopped                    a step failed under `stop`, an approval was refused
///              │                               or timed out, or the process was interrupted;
///              │                               `resume` runs every step not yet done
///              └──▶ rollback ──▶ rolled-back                     every applied step undone and verified
///                            ├─▶ rolled-back-except-credentials  undo that would re-arm credentials
///                            │                                   was kept (no approval); `rollback
///                            │                                   --approve-undo STEP` finishes it
///                            └─▶ rollback-incomplete             some undo failed; `rollback` again
/// ```
///
/// `running` and `open` are not journaled as statuses: a case whose journal
/// has no `case-finished` after its last epoch began is running (or was
/// interrupted by a crash, and `resume` continues it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumIter,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum CaseStatus {
    /// Every step ran and verified.
    Completed,
    /// Every step ran; some failed under `on-failure: continue` (or were best effort).
    CompletedWithFailures,
    /// A step waits for approval; `cordon approve` or `cordon resume` continues.
    AwaitingApproval,
    /// Stopped by a failure or a refused approval; what was done stays done.
    Stopped,
    /// Everything done was undone and verified.
    RolledBack,
    /// Rollback could not undo every step; see the failed records.
    RollbackIncomplete,
    /// Everything was undone except credential containment, whose undo needs an
    /// explicit approval (it would re-arm compromised credentials).
    RolledBackExceptCredentials,
}

impl CaseStatus {
    /// The transitions out of a status, as the commands that take them (the
    /// state machine above, for `cordon status`). `None` is a case with no
    /// `case-finished` after its last activity: running, or killed.
    pub fn next_steps(status: Option<CaseStatus>) -> &'static str {
        match status {
            None => {
                "running, or its process was killed: `cordon resume CASE` continues it from the journal once no process holds it"
            }
            Some(CaseStatus::Completed) => {
                "at rest; `cordon rollback CASE` undoes it; an updated finding is re-planned or asks"
            }
            Some(CaseStatus::CompletedWithFailures) => {
                "`cordon resume CASE` retries the failed steps; `cordon rollback CASE` undoes everything"
            }
            Some(CaseStatus::AwaitingApproval) => {
                "`cordon approve CASE STEP` (or `--refuse`), or `cordon resume CASE` to be asked again"
            }
            Some(CaseStatus::Stopped) => {
                "`cordon resume CASE` runs every step not done; `cordon rollback CASE` undoes what was done"
            }
            Some(CaseStatus::RolledBack) => {
                "at rest at the pre-state; `cordon run` with its finding contains it again in a new epoch"
            }
            Some(CaseStatus::RolledBackExceptCredentials) => {
                "`cordon rollback CASE --approve-undo STEP` undoes a kept step (re-arming credentials, or exposing a resource to the internet again), if a human decides to"
            }
            Some(CaseStatus::RollbackIncomplete) => {
                "`cordon rollback CASE` again continues the rollback where it stopped (fix the named resource first)"
            }
        }
    }
}

/// Who opened a case or epoch: the human caller, not a role assumed for it.
fn opener(provenance: Option<&Provenance>) -> Option<String> {
    provenance.and_then(|p| p.caller.clone())
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
    /// Another worker took the case over (this worker's lease expired and a
    /// newer fencing token was issued): this one must stop changing anything.
    #[error(
        "case {case} was taken over by another worker ({detail}); this worker stopped before changing anything more: `cordon status {case}` shows where the case is"
    )]
    Fenced { case: CaseId, detail: String },
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

    /// Checked before every change to AWS (apply and undo): fails with
    /// [`JournalError::Fenced`] when `lock` no longer holds the case (a lease
    /// that expired and was taken over), and may extend it. A store whose lock
    /// cannot be lost (an OS file lock held by a live process) has nothing to check.
    fn fence(
        &self,
        _case: &CaseId,
        _lock: &Self::Lock,
    ) -> impl Future<Output = Result<(), JournalError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Gives the case up at the end of a call, so the next worker (the next
    /// Step Functions task) need not wait for a lease to expire. Dropping the
    /// lock without it is safe, only slower for the next worker.
    fn release(
        &self,
        _case: &CaseId,
        _lock: Self::Lock,
    ) -> impl Future<Output = Result<(), JournalError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Claims `claim.resource` for `claim.case_id` atomically, visible to every
    /// case in this store (see [`crate::claims`]): created when nobody holds
    /// it; `Claimed { new: false }` when the case already does; written over
    /// the stored claim only when that claim equals `take_over` (a stale claim
    /// the caller checked); otherwise `HeldBy` the stored claim.
    fn claim_resource(
        &self,
        claim: &ResourceClaim,
        take_over: Option<&ResourceClaim>,
    ) -> impl Future<Output = Result<ClaimAnswer, JournalError>> + Send;

    /// The claim holding `resource`, if any (a released claim holds nothing).
    fn resource_claim(
        &self,
        resource: &str,
    ) -> impl Future<Output = Result<Option<ResourceClaim>, JournalError>> + Send;

    /// Lets `resource` go if `case` holds it; `true` when it did (and no longer does).
    fn release_resource(
        &self,
        resource: &str,
        case: &CaseId,
    ) -> impl Future<Output = Result<bool, JournalError>> + Send;
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
    /// The pre-state rollback restores: the first one journaled, or its latest amendment.
    pub pre_state: Option<Value>,
    pub attempts: u32,
    pub outcome: Option<Value>,
    pub verified: bool,
    /// The step's last attempt failed for good (cleared when it later verifies).
    pub failed_final: Option<ErrorRecord>,
    /// The kind of the most recent failed attempt (`verification`, `throttled`, ...).
    pub last_failure_kind: Option<String>,
    pub skipped: Option<String>,
    /// Journaled "not run" (the case stopped before it). Not "done": resume runs it.
    pub not_run: Option<String>,
    pub approval_requested: bool,
    pub approved_by: Option<String>,
    pub refused_by: Option<String>,
    pub approval_timed_out: bool,
    /// The pre-state was amended after a failed verification.
    pub amended: bool,
    /// Durable progress records of the step, oldest first.
    pub progress: Vec<Value>,
    pub rolled_back: bool,
    pub rollback_verified: bool,
    pub rollback_failed: Option<ErrorRecord>,
    pub undo_approved_by: Option<String>,
    pub undo_kept: Option<String>,
}

impl StepState {
    /// Did the step change (or possibly change) anything that rollback must consider?
    pub fn touched(&self) -> bool {
        self.pre_state.is_some()
    }

    /// Nothing more to do for this step on a forward run: verified, or skipped by
    /// design. A step that failed, or was journaled "not run", still runs on resume.
    pub fn done(&self) -> bool {
        self.verified || (self.skipped.is_some() && self.failed_final.is_none())
    }

    /// Undone and verified (or never touched): nothing left for rollback.
    pub fn unwound(&self) -> bool {
        !self.touched() || self.rollback_verified
    }
}

/// One epoch of a case: the plan it ran and what happened to each step.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochState {
    /// 1-based.
    pub epoch: u32,
    pub plan: Plan,
    pub steps: BTreeMap<String, StepState>,
    /// When the epoch was opened (the finding reached cordon), RFC 3339.
    pub opened_at: String,
}

impl EpochState {
    fn new(epoch: u32, plan: Plan, opened_at: String) -> Self {
        Self {
            epoch,
            steps: plan
                .steps
                .iter()
                .map(|s| (s.id.clone(), StepState::default()))
                .collect(),
            plan,
            opened_at,
        }
    }
}

/// The case as the journal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseState {
    /// The current epoch's plan (with amendments).
    pub plan: Plan,
    /// The current epoch, 1-based.
    pub epoch: u32,
    /// The current epoch's steps.
    pub steps: BTreeMap<String, StepState>,
    /// When the current epoch was opened, RFC 3339 (empty before the first record).
    pub opened_at: String,
    /// Epochs before the current one, oldest first.
    pub earlier: Vec<EpochState>,
    pub status: Option<CaseStatus>,
    pub rollback_started: bool,
    /// SHA-256 of the finding as last received.
    pub finding_sha256: String,
    /// Why the last run was interrupted, if it was and nothing ran since.
    pub interrupted: Option<String>,
    /// The loop guard stopped automatic action on this case.
    pub loop_guard: Option<String>,
    /// Resources the journal says the case claimed and has not released.
    pub claimed: std::collections::BTreeSet<String>,
    /// The verified identity that opened the current epoch (the caller in the
    /// epoch's provenance), for steps that forbid self-approval.
    pub opened_by: Option<String>,
    pub next_seq: u64,
    pub last_hash: String,
}

impl CaseState {
    /// A case about to be opened with `plan`.
    pub fn new(plan: Plan) -> Self {
        let first = EpochState::new(1, plan, String::new());
        Self {
            plan: first.plan,
            epoch: 1,
            steps: first.steps,
            opened_at: String::new(),
            earlier: Vec::new(),
            status: None,
            rollback_started: false,
            finding_sha256: String::new(),
            interrupted: None,
            loop_guard: None,
            claimed: Default::default(),
            opened_by: None,
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
        let mut state = CaseState::new((**plan).clone());
        for record in records {
            if let Some(step) = record.event.step() {
                let known = match record.event.epoch() {
                    Some(epoch) if epoch != state.epoch => state
                        .earlier
                        .iter()
                        .find(|e| e.epoch == epoch)
                        .is_some_and(|e| e.steps.contains_key(step)),
                    _ => state.steps.contains_key(step),
                };
                if !known {
                    return Err(corrupt(
                        record.seq,
                        format!("names step `{step}`, which is not in the plan"),
                    ));
                }
            }
            state.apply_record(record);
        }
        state.next_seq = records.len() as u64;
        state.last_hash = records
            .last()
            .map(JournalRecord::hash)
            .unwrap_or_else(|| GENESIS_HASH.to_string());
        Ok(state)
    }

    /// The state of step `id` in `epoch` (`None`: the current epoch).
    fn step_in(&mut self, id: &str, epoch: Option<u32>) -> &mut StepState {
        match epoch {
            Some(e) if e != self.epoch => {
                if let Some(earlier) = self.earlier.iter_mut().find(|x| x.epoch == e) {
                    return earlier.steps.entry(id.to_string()).or_default();
                }
                self.steps.entry(id.to_string()).or_default()
            }
            _ => self.steps.entry(id.to_string()).or_default(),
        }
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        self.step_in(id, None)
    }

    /// Folds one record into the state.
    pub fn apply_record(&mut self, record: &JournalRecord) {
        match &record.event {
            JournalEvent::CaseOpened {
                finding_sha256,
                provenance,
                ..
            } => {
                self.opened_at = record.at.clone();
                self.finding_sha256 = finding_sha256.clone();
                self.opened_by = opener(provenance.as_ref());
            }
            JournalEvent::EpochOpened {
                epoch,
                plan,
                finding_sha256,
                provenance,
                ..
            } => {
                self.opened_by = opener(provenance.as_ref());
                let next = EpochState::new(*epoch, (**plan).clone(), record.at.clone());
                let done = EpochState {
                    epoch: self.epoch,
                    plan: std::mem::replace(&mut self.plan, next.plan),
                    steps: std::mem::replace(&mut self.steps, next.steps),
                    opened_at: std::mem::replace(&mut self.opened_at, next.opened_at),
                };
                self.earlier.push(done);
                self.epoch = *epoch;
                self.status = None;
                self.rollback_started = false;
                self.interrupted = None;
                self.loop_guard = None;
                self.finding_sha256 = finding_sha256.clone();
            }
            JournalEvent::FindingUpdated { finding_sha256, .. } => {
                self.finding_sha256 = finding_sha256.clone();
            }
            JournalEvent::PlanAmended { steps, .. } => {
                for step in steps {
                    if let Some(slot) = self.plan.steps.iter_mut().find(|s| s.id == step.id) {
                        *slot = step.clone();
                    }
                }
            }
            JournalEvent::ApprovalRequested { step, .. } => {
                self.step_mut(step).approval_requested = true
            }
            JournalEvent::ApprovalGranted { step, approver } => {
                self.step_mut(step).approved_by = Some(approver.clone())
            }
            JournalEvent::ApprovalRefused { step, approver, .. } => {
                self.step_mut(step).refused_by = Some(approver.clone())
            }
            JournalEvent::ApprovalTimedOut { step, .. } => {
                self.step_mut(step).approval_timed_out = true
            }
            JournalEvent::StepPrepared {
                step,
                attempt,
                pre_state,
            } => {
                self.interrupted = None;
                let s = self.step_mut(step);
                // The first pre-state is the truth: later attempts reuse it.
                if s.pre_state.is_none() {
                    s.pre_state = Some(pre_state.clone());
                }
                s.attempts = s.attempts.max(*attempt);
            }
            JournalEvent::StepPreStateAmended {
                step, pre_state, ..
            } => {
                let s = self.step_mut(step);
                s.pre_state = Some(pre_state.clone());
                s.amended = true;
                // The amended resources are applied anew.
                s.outcome = None;
            }
            JournalEvent::StepProgress { step, progress } => {
                self.step_mut(step).progress.push(progress.clone())
            }
            JournalEvent::StepApplied { step, outcome, .. } => {
                self.step_mut(step).outcome = Some(outcome.clone())
            }
            JournalEvent::StepVerified { step, .. } => {
                let s = self.step_mut(step);
                s.verified = true;
                s.failed_final = None;
                s.last_failure_kind = None;
            }
            JournalEvent::StepFailed {
                step,
                attempt,
                error,
                retrying,
            } => {
                let s = self.step_mut(step);
                s.attempts = s.attempts.max(*attempt);
                s.last_failure_kind = Some(error.kind.clone());
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
            JournalEvent::StepRolledBack { step, epoch, .. } => {
                self.step_in(step, *epoch).rolled_back = true
            }
            JournalEvent::StepRollbackVerified { step, epoch } => {
                let s = self.step_in(step, *epoch);
                s.rollback_verified = true;
                s.undo_kept = None;
            }
            JournalEvent::StepRollbackFailed { step, epoch, error } => {
                self.step_in(step, *epoch).rollback_failed = Some(error.clone())
            }
            JournalEvent::UndoApproved {
                step,
                epoch,
                approver,
            } => self.step_in(step, *epoch).undo_approved_by = Some(approver.clone()),
            JournalEvent::UndoKept {
                step,
                epoch,
                reason,
            } => self.step_in(step, *epoch).undo_kept = Some(reason.clone()),
            JournalEvent::CaseInterrupted { reason } => self.interrupted = Some(reason.clone()),
            JournalEvent::LoopGuardTripped { reason, .. } => self.loop_guard = Some(reason.clone()),
            JournalEvent::ResourceClaimed { resource, .. } => {
                self.claimed.insert(resource.clone());
            }
            JournalEvent::ResourceReleased { resource } => {
                self.claimed.remove(resource);
            }
            JournalEvent::ResourceBusy { .. } => {}
            // Both stop the case (a `case-finished` follows); neither is a
            // standing refusal: the cap's window moves on, the switch is turned off.
            JournalEvent::FleetCapTripped { .. } | JournalEvent::CasePaused { .. } => {}
            JournalEvent::CaseFinished { status } => self.status = Some(*status),
        }
    }

    /// Every epoch, oldest first, the current one last (read-only views).
    pub fn epochs(&self) -> Vec<(u32, &Plan, &BTreeMap<String, StepState>, &str)> {
        let mut out: Vec<_> = self
            .earlier
            .iter()
            .map(|e| (e.epoch, &e.plan, &e.steps, e.opened_at.as_str()))
            .collect();
        out.push((self.epoch, &self.plan, &self.steps, self.opened_at.as_str()));
        out
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.get(id)
    }

    /// The resources of every epoch's plan ([`Plan::resources`]), sorted and distinct.
    pub fn resources(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .epochs()
            .iter()
            .flat_map(|(_, plan, _, _)| plan.resources())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
