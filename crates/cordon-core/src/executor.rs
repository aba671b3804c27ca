//! The executor: runs a plan with a write-ahead journal, resumes from it
//! after a crash, and rolls back from the pre-states it saved.
//!
//! For each step: skip if the journal says it is done; read the pre-state;
//! journal it durably *before* any mutation; apply; verify by reading back;
//! journal the outcome. A step found prepared but not verified after a crash
//! reuses its journaled pre-state (the live resource may already be changed)
//! and re-applies, so `apply` implementations must be idempotent.
//!
//! Steps start once the steps they need are finished ([`Plan::needs`]: the
//! step before, unless the playbook declares `needs`), so the steps of a
//! graph that are ready run together, up to [`Executor::concurrent_steps`].
//! They share the case's session behind one lock: records are appended one
//! at a time, each step's own records in write-ahead order. Rollback walks
//! the graph in reverse. A sequential plan runs exactly as before: one step
//! at a time, in order.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span, warn};

use crate::action::{ActionKind, Reversibility, UndoGate};
use crate::journal::{
    CaseState, CaseStatus, ErrorRecord, JournalError, JournalEvent, JournalRecord, JournalStore,
    StepState,
};
use crate::plan::{CaseId, Plan, PlannedStep, Target};
use crate::playbook::OnFailure;
use crate::provenance::Provenance;

mod concurrent;
mod resource_claims;

use concurrent::{Running, Shared};

/// Classes of failure, for retry decisions and for stable error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "kebab-case")]
pub enum ErrorKind {
    Throttled,
    AccessDenied,
    NotFound,
    InvalidState,
    Timeout,
    /// Eventual consistency or a concurrent change; worth another attempt.
    Conflict,
    /// The post-condition did not hold on read-back.
    Verification,
    /// The step was refused by its own safety policy (e.g. two keys already).
    Refused,
    /// Something the step relies on is not configured (e.g. no SNS topic for
    /// an optional `notify`): the step is journaled as skipped, not failed.
    NotConfigured,
    Other,
}

impl ErrorKind {
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::Timeout
                | ErrorKind::Conflict
                | ErrorKind::Verification
        )
    }
}

/// A failure of one action on one resource: what, where and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({resource}): {hint}")]
pub struct ActionError {
    pub kind: ErrorKind,
    pub resource: String,
    pub message: String,
    pub hint: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ActionError {
    pub fn new(
        kind: ErrorKind,
        resource: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            resource: resource.into(),
            message: message.into(),
            hint: hint.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn record(&self) -> ErrorRecord {
        ErrorRecord {
            kind: self.kind.to_string(),
            resource: self.resource.clone(),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }
    }
}

/// A pre-state re-read after a failed verification: the journaled pre-state
/// plus what it lacked.
#[derive(Debug, Clone, PartialEq)]
pub struct Amendment {
    /// The step's whole pre-state from now on.
    pub pre_state: Value,
    /// The resources added to it, for the record.
    pub added: Vec<String>,
}

/// The AWS side of each action, implemented in `cordon-aws` (and by test doubles).
pub trait Actions: Send + Sync {
    /// Reads the pre-state of exactly what the step will change. Must not mutate.
    fn read_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;

    /// Whether the step's pre-state may be read ahead, while the steps it
    /// needs still run: only when none of the plan's other steps changes what
    /// it reads (it is then the same read, sooner). The executor uses such a
    /// read within [`Executor::prefetch_window`], journaled as the step's
    /// `step-prepared` when the step starts, and reads again otherwise.
    fn prefetchable(&self, _plan: &Plan, _step: &PlannedStep) -> bool {
        false
    }

    /// Applies the step from its pre-state; idempotent (a re-apply after a crash is safe).
    fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;

    /// [`Actions::apply`], for steps that journal progress as they go (an
    /// isolation phase begun, a key about to be created): each
    /// [`Progress::record`] is durable before it returns.
    fn apply_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        progress: &Progress<'_>,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send {
        let _ = progress;
        self.apply(plan, step, pre_state)
    }

    /// Reads the resource back and checks the post-condition.
    fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: &Value,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// After a failed verification: re-reads live state and returns the
    /// pre-state amended with the resources the journaled one lacks (an ENI
    /// attached since, say), or `None` when nothing is missing. Must never
    /// record cordon's own containment (an isolation group) as a resource's
    /// original state.
    fn amend_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> impl Future<Output = Result<Option<Amendment>, ActionError>> + Send {
        let _ = (plan, step, pre_state);
        async { Ok(None) }
    }

    /// [`Actions::undo`], for steps whose undo depends on what they journaled
    /// while applying: `progress` holds the step's progress records, oldest
    /// first (a key about to be created, say, when no outcome says which key).
    fn undo_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: Option<&Value>,
        progress: &[Value],
    ) -> impl Future<Output = Result<Value, ActionError>> + Send {
        let _ = progress;
        self.undo(plan, step, pre_state, outcome)
    }

    /// Puts the resource back at `pre_state`; `outcome` is absent when the step
    /// crashed between preparing and applying. Must tolerate a half-applied or
    /// already-undone resource.
    fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: Option<&Value>,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;

    /// Reads the resource back and checks it equals `pre_state`.
    fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

    /// The mutating calls `apply` would make from this pre-state, one line each (dry run).
    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre_state: &Value) -> Vec<String>;
}

/// Where a step's durable progress records go while it applies.
pub struct Progress<'a> {
    sink: Option<&'a (dyn ProgressSink + 'a)>,
    step: String,
    earlier: Vec<Value>,
    fresh: bool,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("step", &self.step)
            .field("journaled", &self.sink.is_some())
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl Progress<'_> {
    /// Progress that goes nowhere: dry runs and handler tests without a journal.
    pub fn discard() -> Progress<'static> {
        Progress::replay(Vec::new())
    }

    /// Progress that goes nowhere, after `earlier` records: handler tests
    /// replaying what an interrupted attempt journaled.
    pub fn replay(earlier: Vec<Value>) -> Progress<'static> {
        Progress {
            sink: None,
            step: String::new(),
            earlier,
            fresh: false,
        }
    }

    /// The step's progress records journaled before this apply (by earlier,
    /// interrupted or failed attempts in this epoch), oldest first: what a
    /// re-apply must know to finish, not repeat, what they began.
    pub fn earlier(&self) -> &[Value] {
        &self.earlier
    }

    /// Whether records reach a journal. Only then does an empty
    /// [`Progress::earlier`] prove that no earlier attempt of the step in this
    /// epoch began: every attempt journals before it changes anything.
    pub fn journaled(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether the pre-state this apply gets was read by this run for this
    /// attempt (when the step started, or ahead of it within
    /// [`Executor::prefetch_window`]), and journaled: no apply of the step in
    /// this epoch came between that read and this one, so the pre-state *is*
    /// the live state as of a moment ago.
    /// A pre-state loaded from the journal (a retry, a resume) is not fresh:
    /// an earlier apply may have changed things since. An apply may then act
    /// on the pre-state instead of reading the same thing again, provided the
    /// change it makes fails, or is checked, when the world moved meanwhile.
    pub fn fresh_pre_state(&self) -> bool {
        self.fresh && self.sink.is_some()
    }

    /// Journals `progress` for the step, durably, before returning. A step must
    /// not go on with what the record announces if this fails.
    pub async fn record(&self, progress: Value) -> Result<(), ActionError> {
        let Some(sink) = self.sink else {
            return Ok(());
        };
        sink.write_progress(&self.step, progress)
            .await
            .map_err(|e| {
                ActionError::new(
                    ErrorKind::Other,
                    self.step.clone(),
                    format!("could not journal the progress of step `{}`", self.step),
                    "nothing more was changed; fix the journal store and resume the case",
                )
                .with_source(e)
            })
    }
}

/// Something that journals a step's progress records (the executor's session).
trait ProgressSink: Send + Sync {
    fn write_progress<'b>(
        &'b self,
        step: &'b str,
        progress: Value,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'b>>;
}

/// A human's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved {
        approver: String,
    },
    Refused {
        approver: String,
        reason: String,
    },
    /// Nobody answered yet: the case pauses, awaiting approval.
    Pending,
    /// Nobody answered within the approval timeout: the case stops.
    TimedOut {
        waited: Duration,
    },
}

/// Decides approvals: the CLI prompts, `--yes`/`--approve` pre-approve, the Lambda waits for a task token.
pub trait Approver: Send + Sync {
    fn decide(&self, plan: &Plan, step: &PlannedStep) -> impl Future<Output = Decision> + Send;

    /// Decides whether a gated undo (one that re-arms credentials or deletes
    /// evidence) may run during a requested rollback. Never asked during an
    /// automatic rollback after a failure. Default: not approved.
    fn decide_undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        gate: UndoGate,
    ) -> impl Future<Output = Decision> + Send {
        let _ = (plan, step, gate);
        async { Decision::Pending }
    }
}

/// Why a run or rollback stopped short of its goal (beyond the journaled step errors).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("case {case} has no step `{step}`; `cordon status {case}` lists its steps")]
    UnknownStep { case: CaseId, step: String },
    /// A step was asked to run before the steps it needs were done.
    #[error(
        "step `{step}` of case {case} cannot run yet: it needs {} done first; run the steps in graph order (`cordon status {case}` shows them)",
        waiting.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
    )]
    NotReady {
        case: CaseId,
        step: String,
        waiting: Vec<String>,
    },
    #[error("step `{step}` of case {case} does not need approval")]
    NoApprovalNeeded { case: CaseId, step: String },
    #[error("step `{step}` of case {case} was already decided ({detail})")]
    AlreadyDecided {
        case: CaseId,
        step: String,
        detail: String,
    },
    /// The playbook limits who may approve the step, and this identity may not.
    #[error(
        "{approver} may not approve step `{step}` of case {case}: {why}; the step stays unapproved (`cordon approve {case} {step}` by an allowed identity)"
    )]
    NotAnApprover {
        case: CaseId,
        step: String,
        approver: String,
        why: String,
    },
}

/// What a run or rollback means for whoever started it. The same meanings, and
/// names, for every front door: the CLI's exit codes and the Lambda's outcome names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumIter)]
#[strum(serialize_all = "kebab-case")]
pub enum Outcome {
    /// Done and verified (also: a requested rollback finished, nothing to do).
    Done,
    /// Failed or stopped; the containment state needs a human. Also: rolled
    /// back except credential containment, interrupted, loop guard or fleet
    /// cap tripped, paused.
    NeedsHuman,
    /// The input was invalid (finding, playbooks, case, usage); nothing changed.
    InvalidInput,
    /// Waiting for a human: an approval, or an updated finding that changes the plan.
    AwaitingDecision,
    /// A step failed and the case was rolled back to the exact pre-state.
    RolledBack,
    /// Rollback could not undo every step.
    RollbackIncomplete,
    /// Every step ran; some failed under `on-failure: continue`.
    CompletedWithFailures,
    /// Nobody answered an approval within the timeout; the case stopped.
    ApprovalTimedOut,
}

impl Outcome {
    /// The CLI's exit code for this outcome (documented in `cordon --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::NeedsHuman => 1,
            Outcome::InvalidInput => 2,
            Outcome::AwaitingDecision => 3,
            Outcome::RolledBack => 4,
            Outcome::RollbackIncomplete => 5,
            Outcome::CompletedWithFailures => 6,
            Outcome::ApprovalTimedOut => 124,
        }
    }

    /// What the code means, one line, for `--help` and the README.
    pub fn meaning(self) -> &'static str {
        match self {
            Outcome::Done => "done and verified (or nothing to do)",
            Outcome::NeedsHuman => {
                "failed or stopped: the containment state needs a human (also: rolled back except credentials, interrupted, loop guard, fleet cap, paused)"
            }
            Outcome::InvalidInput => {
                "invalid input (usage, finding, playbooks, unknown case): nothing changed"
            }
            Outcome::AwaitingDecision => {
                "waiting for a human: an approval, or an updated finding that changes the plan"
            }
            Outcome::RolledBack => {
                "a step failed and the case was rolled back to the exact pre-state"
            }
            Outcome::RollbackIncomplete => "rollback incomplete: some undo failed",
            Outcome::CompletedWithFailures => {
                "completed with failures (steps under on-failure: continue)"
            }
            Outcome::ApprovalTimedOut => "an approval timed out; the case stopped",
        }
    }

    /// The outcome of a case resting in `status` after a forward run.
    fn of_status(status: CaseStatus) -> Outcome {
        match status {
            CaseStatus::Completed | CaseStatus::RolledBack => Outcome::Done,
            CaseStatus::CompletedWithFailures => Outcome::CompletedWithFailures,
            CaseStatus::AwaitingApproval => Outcome::AwaitingDecision,
            CaseStatus::Stopped | CaseStatus::RolledBackExceptCredentials => Outcome::NeedsHuman,
            CaseStatus::RollbackIncomplete => Outcome::RollbackIncomplete,
        }
    }
}

/// What a run or rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub case_id: CaseId,
    pub status: CaseStatus,
    /// True when the journal already had the case at rest and nothing was done.
    pub no_op: bool,
    /// A step failed for good during this call (even if its rollback then succeeded).
    pub step_failed: bool,
    /// What the call means for whoever started it (exit code, Lambda outcome).
    pub outcome: Outcome,
    pub message: String,
}

/// Limits on automatic action against one resource (see [`Executor::loop_guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGuard {
    /// At most this many cases or epochs may act on one resource in `window`.
    pub max_triggers: u32,
    pub window: Duration,
}

impl Default for LoopGuard {
    /// Three times in 24 hours, as mature remediation systems default to.
    fn default() -> Self {
        Self {
            max_triggers: 3,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// A fleet-wide cap on containment (see [`Executor::fleet_cap`]): a flood of
/// findings, forged or real, must not isolate half the fleet before a human looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCap {
    /// At most this many distinct instances isolated, by every case together, in `window`.
    pub max_instances: u32,
    pub window: Duration,
}

impl Default for FleetCap {
    /// 20 instances in 10 minutes.
    fn default() -> Self {
        Self {
            max_instances: 20,
            window: Duration::from_secs(600),
        }
    }
}

/// The switch is on: what it is and how to turn it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// The switch, e.g. `file .cordon/cases/PAUSE`.
    pub switch: String,
    /// One sentence saying how to unpause.
    pub unpause: String,
}

/// A switch that halts all automatic action at once (a file, an SSM
/// parameter), checked before every step that has not run yet.
pub trait PauseSwitch: Send + Sync {
    /// `Some` when automatic action must stop. A switch that cannot be read
    /// answers paused: a broken brake must not read as "go".
    fn paused(&self) -> std::pin::Pin<Box<dyn Future<Output = Option<Paused>> + Send + '_>>;
}

/// Drives plans through an [`Actions`] implementation with a [`JournalStore`].
pub struct Executor<'a, A, J, P> {
    actions: &'a A,
    journal: &'a J,
    approver: &'a P,
    observer: Option<&'a (dyn Fn(&JournalRecord) + Send + Sync)>,
    /// Test hook: abort the process right after writing this record
    /// (crash-safety tests). Absent from builds without `crash-hooks`.
    #[cfg(feature = "crash-hooks")]
    crash_after_record: Option<u64>,
    /// Set by a signal handler: finish the step in flight, journal, then stop.
    interrupt: Option<&'a AtomicBool>,
    /// Open a new epoch when an updated finding changes the plan, instead of asking.
    accept_replan: bool,
    loop_guard: Option<LoopGuard>,
    fleet_cap: Option<FleetCap>,
    /// Instances the other cases of this process were admitted to isolate.
    fleet_ledger: Option<&'a crate::fleet::FleetLedger>,
    pause: Option<&'a dyn PauseSwitch>,
    /// Journaled with `case-opened` and `epoch-opened`.
    provenance: Option<Provenance>,
    /// At most this many steps of one case run at once.
    concurrent_steps: usize,
    /// How long a pre-state read ahead stands for the step's own read.
    prefetch_window: Duration,
}

/// How long a pre-state read ahead ([`Actions::prefetchable`]) stands for
/// the step's own read: the steps it waits on take a few round trips; a step
/// that waited longer (an approval) reads again.
pub const DEFAULT_PREFETCH_WINDOW: Duration = Duration::from_secs(5);

/// How many steps of one case run at once unless told otherwise: more than
/// the shipped playbooks ever have ready together, few enough to stay far
/// below AWS's throttling buckets.
pub const DEFAULT_CONCURRENT_STEPS: usize = 8;

impl Report {
    fn new(case: &CaseId, status: CaseStatus, message: String) -> Self {
        Self {
            case_id: case.clone(),
            status,
            no_op: false,
            step_failed: false,
            outcome: Outcome::of_status(status),
            message,
        }
    }

    /// The journal already had the case at rest; nothing was done.
    fn no_op(case: &CaseId, status: CaseStatus, message: String) -> Self {
        Self {
            no_op: true,
            ..Self::new(case, status, message)
        }
    }

    /// A step failed for good during this call.
    fn failed(case: &CaseId, status: CaseStatus, message: String) -> Self {
        Self {
            step_failed: true,
            ..Self::new(case, status, message)
        }
    }

    fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

impl<A, J, P> std::fmt::Debug for Executor<'_, A, J, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// One case being worked on: the lock, the folded state, and where the chain ends.
struct Session<'j, J: JournalStore> {
    journal: &'j J,
    case: CaseId,
    state: CaseState,
    /// The case was opened by this call (no earlier records).
    fresh: bool,
    observer: Option<&'j (dyn Fn(&JournalRecord) + Send + Sync)>,
    #[cfg(feature = "crash-hooks")]
    crash_after_record: Option<u64>,
    lock: J::Lock,
}

impl<J: JournalStore> Session<'_, J> {
    async fn write(&mut self, event: JournalEvent) -> Result<(), JournalError> {
        let record = JournalRecord::new(
            self.state.next_seq,
            now_rfc3339(),
            self.state.last_hash.clone(),
            event,
        );
        self.journal.append(&self.case, &record).await?;
        self.state.apply_record(&record);
        self.state.next_seq += 1;
        self.state.last_hash = record.hash();
        if let Some(observer) = self.observer {
            observer(&record);
        }
        #[cfg(feature = "crash-hooks")]
        if self.crash_after_record == Some(record.seq) {
            // Simulates a kill -9 right after a durable write; no destructors, no flush.
            std::process::abort();
        }
        Ok(())
    }

    /// Fails if this worker no longer holds the case (see [`JournalStore::fence`]).
    /// Takes `&mut self` so that a step holding the shared session across
    /// this call needs the session to be `Send`, not `Sync`.
    async fn fence(&mut self) -> Result<(), JournalError> {
        self.journal.fence(&self.case, &self.lock).await
    }

    /// Gives the case up (see [`JournalStore::release`]); a failure only makes
    /// the next worker wait for the lease to expire, so it is logged, not returned.
    async fn close(self) {
        let case = self.case;
        if let Err(e) = self.journal.release(&case, self.lock).await {
            warn!(%case, error = %e, "the case's lease was not released; the next worker waits for it to expire");
        }
    }

    /// Journals that `step` waits for approval, once per wait.
    async fn request_approval(
        &mut self,
        step: &PlannedStep,
        current: &StepState,
    ) -> Result<(), JournalError> {
        if current.approval_requested {
            return Ok(());
        }
        self.write(JournalEvent::ApprovalRequested {
            step: step.id.clone(),
            reason: step.approval.reason.clone().unwrap_or_default(),
        })
        .await
    }

    fn step_state(&self, id: &str) -> StepState {
        self.state.step(id).cloned().unwrap_or_default()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// SHA-256 (hex) of the finding's raw text, pinned in the journal.
pub fn finding_digest(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// How an updated finding's plan differs from the journaled one.
enum PlanChange {
    /// Same playbook, same steps.
    None,
    /// Only steps not yet applied differ: re-plan those.
    UntouchedSteps(Vec<PlannedStep>),
    /// The change matters (another playbook, or an applied step's target changed).
    Matters(String),
}

fn compare_plans(state: &CaseState, plan: &Plan) -> PlanChange {
    let old = &state.plan;
    if old.playbook != plan.playbook {
        return PlanChange::Matters(format!(
            "it now routes to playbook `{}` instead of `{}` (severity {} → {})",
            plan.playbook, old.playbook, old.finding.severity_band, plan.finding.severity_band
        ));
    }
    if old.finding.severity_band != plan.finding.severity_band {
        return PlanChange::Matters(format!(
            "its severity moved from {} to {} ({} → {})",
            old.finding.severity_band,
            plan.finding.severity_band,
            old.finding.severity,
            plan.finding.severity
        ));
    }
    let ids = |p: &Plan| p.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if ids(old) != ids(plan) {
        return PlanChange::Matters(format!(
            "playbook `{}` now has other steps than the case was opened with",
            plan.playbook
        ));
    }
    let mut untouched = Vec::new();
    for (was, now) in old.steps.iter().zip(&plan.steps) {
        if was == now {
            continue;
        }
        let touched = state.step(&was.id).is_some_and(StepState::touched);
        if touched {
            return PlanChange::Matters(format!(
                "step `{}` was already applied to {}, and the updated finding changes it",
                was.id,
                was.target.label()
            ));
        }
        untouched.push(now.clone());
    }
    if untouched.is_empty() {
        PlanChange::None
    } else {
        PlanChange::UntouchedSteps(untouched)
    }
}

/// What changed between two deliveries of a finding, in a few words.
fn describe_update(old: &Plan, new: &Plan) -> String {
    let mut parts = Vec::new();
    if old.finding.severity != new.finding.severity {
        parts.push(format!(
            "severity {} → {}",
            old.finding.severity, new.finding.severity
        ));
    }
    if old.finding.updated_at != new.finding.updated_at {
        parts.push(format!(
            "updated-at {} → {}",
            old.finding.updated_at.as_deref().unwrap_or("-"),
            new.finding.updated_at.as_deref().unwrap_or("-")
        ));
    }
    if parts.is_empty() {
        "content changed".to_string()
    } else {
        parts.join(", ")
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time, if it parses.
fn unix_seconds(at: &str) -> Option<i64> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

impl<'a, A: Actions, J: JournalStore, P: Approver> Executor<'a, A, J, P> {
    pub fn new(actions: &'a A, journal: &'a J, approver: &'a P) -> Self {
        Self {
            actions,
            journal,
            approver,
            observer: None,
            #[cfg(feature = "crash-hooks")]
            crash_after_record: None,
            interrupt: None,
            accept_replan: false,
            loop_guard: None,
            fleet_cap: None,
            fleet_ledger: None,
            pause: None,
            provenance: None,
            concurrent_steps: DEFAULT_CONCURRENT_STEPS,
            prefetch_window: DEFAULT_PREFETCH_WINDOW,
        }
    }

    /// How long a pre-state read ahead stands for the step's own read
    /// (default [`DEFAULT_PREFETCH_WINDOW`]); zero reads every pre-state when
    /// its step starts.
    pub fn prefetch_window(mut self, window: Duration) -> Self {
        self.prefetch_window = window;
        self
    }

    /// At most `n` steps of the case run at once (at least one); the steps a
    /// playbook declares independent (`needs`) run together up to this bound.
    pub fn concurrent_steps(mut self, n: usize) -> Self {
        self.concurrent_steps = n.max(1);
        self
    }

    /// Called with every record as it is written (timelines, logs).
    pub fn observe(mut self, observer: &'a (dyn Fn(&JournalRecord) + Send + Sync)) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Test hook: abort the process right after record `seq` is durable.
    /// Only in builds with the `crash-hooks` feature (the tests' builds).
    #[cfg(feature = "crash-hooks")]
    pub fn crash_after_record(mut self, seq: Option<u64>) -> Self {
        self.crash_after_record = seq;
        self
    }

    /// A flag a signal handler sets: the step in flight finishes (an isolation
    /// never stops between its phases), the journal says so, the case stops.
    pub fn interrupt_on(mut self, flag: &'a AtomicBool) -> Self {
        self.interrupt = Some(flag);
        self
    }

    /// When an updated finding changes the plan in a way that matters, open a
    /// new epoch with the new plan instead of asking.
    pub fn accept_replan(mut self, accept: bool) -> Self {
        self.accept_replan = accept;
        self
    }

    /// Refuse automatic action on a resource (instance, key, user, role) that
    /// `guard.max_triggers` cases or epochs already acted on within `guard.window`.
    /// A decision by `approver` on `step` the playbook does not allow.
    fn check_approver(
        session: &Session<'_, J>,
        step: &PlannedStep,
        approver: &str,
    ) -> Result<(), ExecError> {
        match step
            .approval
            .refuses(approver, session.state.opened_by.as_deref())
        {
            None => Ok(()),
            Some(why) => Err(ExecError::NotAnApprover {
                case: session.case.clone(),
                step: step.id.clone(),
                approver: approver.to_string(),
                why,
            }),
        }
    }

    pub fn loop_guard(mut self, guard: Option<LoopGuard>) -> Self {
        self.loop_guard = guard;
        self
    }

    /// Refuse to open containment that would take the instances isolated by
    /// every case in the journal store within `cap.window` past `cap.max_instances`.
    pub fn fleet_cap(mut self, cap: Option<FleetCap>) -> Self {
        self.fleet_cap = cap;
        self
    }

    /// Counts the instances the other cases of this process (a burst) were
    /// admitted to isolate against the fleet cap too, not only the journaled ones.
    pub fn fleet_ledger(mut self, ledger: Option<&'a crate::fleet::FleetLedger>) -> Self {
        self.fleet_ledger = ledger;
        self
    }

    /// Checked before every step not yet run: when on, the case stops there.
    pub fn pause_switch(mut self, switch: &'a dyn PauseSwitch) -> Self {
        self.pause = Some(switch);
        self
    }

    /// How the finding was checked and as whom the case acts: journaled in
    /// the `case-opened` or `epoch-opened` record this executor writes.
    pub fn provenance(mut self, provenance: Option<Provenance>) -> Self {
        self.provenance = provenance;
        self
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .is_some_and(|f| f.load(AtomicOrdering::SeqCst))
    }

    /// Claims the case and folds its journal. With `new_case`, an absent journal
    /// is started with that plan; without, an absent journal is an error.
    async fn open(
        &self,
        case: &CaseId,
        new_case: Option<(&Plan, &str)>,
    ) -> Result<Session<'a, J>, ExecError> {
        let lock = self.journal.lock(case).await?;
        let records = self.journal.load(case).await?;
        if !records.is_empty() {
            return Ok(Session {
                journal: self.journal,
                case: case.clone(),
                state: CaseState::from_records(case, &records)?,
                fresh: false,
                observer: self.observer,
                #[cfg(feature = "crash-hooks")]
                crash_after_record: self.crash_after_record,
                lock,
            });
        }
        let Some((plan, finding_raw)) = new_case else {
            return Err(JournalError::UnknownCase { case: case.clone() }.into());
        };
        let mut session = Session {
            journal: self.journal,
            case: case.clone(),
            state: CaseState::new(plan.clone()),
            fresh: true,
            observer: self.observer,
            #[cfg(feature = "crash-hooks")]
            crash_after_record: self.crash_after_record,
            lock,
        };
        session
            .write(JournalEvent::CaseOpened {
                plan: Box::new(plan.clone()),
                finding_sha256: finding_digest(finding_raw),
                cordon_version: env!("CARGO_PKG_VERSION").to_string(),
                provenance: self.provenance.clone(),
            })
            .await?;
        Ok(session)
    }

    /// Runs `plan` (new case) or continues it (existing case).
    ///
    /// The same finding again: a finished case is a no-op; a rolled-back case
    /// opens a new epoch; an updated finding re-plans the steps not yet applied,
    /// or, when the change matters, waits for a decision (see [`Executor::accept_replan`]).
    pub async fn run(&self, plan: &Plan, finding_raw: &str) -> Result<Report, ExecError> {
        self.run_scoped(plan, finding_raw, Scope::Every)
            .await
            .map(|driven| driven.report(&plan.case_id))
    }

    /// Opens the case for `plan` exactly as [`Executor::run`] does (guards,
    /// epochs, an updated finding) but runs no step: a Step Functions `plan`
    /// task, whose state machine then runs each step with [`Executor::run_step`].
    pub async fn open_case(&self, plan: &Plan, finding_raw: &str) -> Result<PartReport, ExecError> {
        let driven = self.run_scoped(plan, finding_raw, Scope::Nothing).await?;
        Ok(driven.part(&plan.case_id, None))
    }

    /// Runs exactly one step of a journaled case, as [`Executor::run`] runs
    /// each (write-ahead, fenced, approval re-checked), under the case's lock.
    /// A step already done is a no-op; a step whose needs (with no graph: the
    /// step before) are not done is refused with [`ExecError::NotReady`].
    /// After the last step the case rests as `run` would have left it.
    pub async fn run_step(&self, case: &CaseId, step: &str) -> Result<PartReport, ExecError> {
        let mut session = self.open(case, None).await?;
        let driven = self.drive_step(&mut session, step).await;
        let state = session.state.step(step).cloned();
        session.close().await;
        Ok(driven?.part(case, state))
    }

    async fn drive_step(
        &self,
        session: &mut Session<'a, J>,
        step: &str,
    ) -> Result<Driven, ExecError> {
        let case = session.case.clone();
        let plan = session.state.plan.clone();
        let Some(planned) = plan.step(step) else {
            return Err(ExecError::UnknownStep {
                case,
                step: step.to_string(),
            });
        };
        let current = session.step_state(step);
        if current.done() {
            let message = format!("step `{step}` of case {case} is already done; nothing to do");
            return Ok(Driven::Running {
                status: session.state.status,
                no_op: true,
                message,
            });
        }
        let waiting: Vec<String> = plan
            .needs(planned)
            .into_iter()
            .filter(|need| !finished_for_dependents(&plan, &session.step_state(need), need))
            .map(str::to_string)
            .collect();
        // In a case at rest (stopped, rolled back) a step whose needs are not
        // done is no caller's mistake, only too late: it reports "not run".
        if !waiting.is_empty() && !session.state.status.is_some_and(is_finished) {
            return Err(ExecError::NotReady {
                case,
                step: step.to_string(),
                waiting,
            });
        }
        self.drive(session, Mode::Resume, Scope::Step(step)).await
    }

    async fn run_scoped(
        &self,
        plan: &Plan,
        finding_raw: &str,
        scope: Scope<'_>,
    ) -> Result<Driven, ExecError> {
        if let Some(report) = self.guard_loops(plan, finding_raw).await? {
            return Ok(Driven::Rested(report));
        }
        if let Some(report) = self.guard_fleet(plan, finding_raw).await? {
            return Ok(Driven::Rested(report));
        }
        let mut session = self.open(&plan.case_id, Some((plan, finding_raw))).await?;
        let report = if session.fresh {
            self.drive(&mut session, Mode::Run, scope).await
        } else {
            self.rerun(&mut session, plan, finding_raw, scope).await
        };
        session.close().await;
        report
    }

    /// A finding for an existing case: decide what the delivery means.
    async fn rerun(
        &self,
        session: &mut Session<'a, J>,
        plan: &Plan,
        finding_raw: &str,
        scope: Scope<'_>,
    ) -> Result<Driven, ExecError> {
        let case = session.case.clone();
        let digest = finding_digest(finding_raw);
        match session.state.status {
            Some(CaseStatus::RolledBack) => {
                let epoch = session.state.epoch + 1;
                session
                    .write(JournalEvent::EpochOpened {
                        epoch,
                        plan: Box::new(plan.clone()),
                        finding_sha256: digest,
                        reason: "the case was rolled back and its finding arrived again"
                            .to_string(),
                        provenance: self.provenance.clone(),
                    })
                    .await?;
                info!(%case, epoch, "rolled-back case contained again in a new epoch");
                return self.drive(session, Mode::Run, scope).await;
            }
            Some(
                status @ (CaseStatus::RollbackIncomplete | CaseStatus::RolledBackExceptCredentials),
            ) => {
                return Ok(Driven::Rested(Report::no_op(
                    &case,
                    status,
                    format!(
                        "case {case} is {status}; finish its rollback (`cordon rollback {case}`) before it can run again"
                    ),
                )));
            }
            _ => {}
        }
        if digest != session.state.finding_sha256 {
            session
                .write(JournalEvent::FindingUpdated {
                    finding_sha256: digest,
                    updated_at: plan.finding.updated_at.clone(),
                    severity: plan.finding.severity,
                    change: describe_update(&session.state.plan, plan),
                })
                .await?;
        }
        match compare_plans(&session.state, plan) {
            PlanChange::None => {}
            PlanChange::UntouchedSteps(steps) => {
                let ids: Vec<String> = steps.iter().map(|s| format!("`{}`", s.id)).collect();
                session
                    .write(JournalEvent::PlanAmended {
                        reason: format!(
                            "the finding was updated; re-planned {} (not yet applied)",
                            ids.join(", ")
                        ),
                        steps,
                    })
                    .await?;
                if session.state.status.is_some_and(is_finished) {
                    // Nothing left to run in a finished case; the amendment is on record.
                    return self.drive(session, Mode::Run, scope).await;
                }
            }
            PlanChange::Matters(why) => {
                if !self.accept_replan {
                    let status = session.state.status.unwrap_or(CaseStatus::Stopped);
                    return Ok(Driven::Rested(
                        Report::no_op(
                            &case,
                            status,
                            format!(
                                "the finding of case {case} was updated and {why}; run again with `--accept-replan` to contain it in a new epoch on top of what is done, or leave the case as it is"
                            ),
                        )
                        .with_outcome(Outcome::AwaitingDecision),
                    ));
                }
                let epoch = session.state.epoch + 1;
                session
                    .write(JournalEvent::EpochOpened {
                        epoch,
                        plan: Box::new(plan.clone()),
                        finding_sha256: finding_digest(finding_raw),
                        reason: format!("the finding was updated and {why}; re-plan accepted"),
                        provenance: self.provenance.clone(),
                    })
                    .await?;
            }
        }
        self.drive(session, Mode::Run, scope).await
    }

    /// Loop guard: a resource acted on too often stops automatic action.
    ///
    /// For a Config evaluation the guard is also kept per (resource, rule):
    /// the same resource failing the same rule again within the window after
    /// a case remediated it (and was not rolled back) escalates to a human at
    /// once. Remediating again would fight whatever reverts the change, a
    /// deployment tool most likely, and each round would look like success.
    async fn guard_loops(
        &self,
        plan: &Plan,
        finding_raw: &str,
    ) -> Result<Option<Report>, ExecError> {
        let Some(guard) = self.loop_guard else {
            return Ok(None);
        };
        let resources = plan.resources();
        if resources.is_empty() {
            return Ok(None);
        }
        let rule = plan.finding.config_rule.as_deref();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let since = now - guard.window.as_secs() as i64;
        let mut triggers = 0u32;
        let mut this_case_would_trigger = true;
        let mut remediated_before: Vec<CaseId> = Vec::new();
        for case in self.journal.cases().await? {
            let records = match self.journal.load(&case).await {
                Ok(records) => records,
                Err(e) => {
                    warn!(%case, error = %e, "loop guard: unreadable journal skipped");
                    continue;
                }
            };
            let mut last_status = None;
            let mut same_rule = false;
            for record in &records {
                let opened_plan = match &record.event {
                    JournalEvent::CaseOpened { plan, .. }
                    | JournalEvent::EpochOpened { plan, .. } => Some(plan),
                    JournalEvent::CaseFinished { status } => {
                        last_status = Some(*status);
                        None
                    }
                    _ => None,
                };
                if let Some(opened) = opened_plan
                    && unix_seconds(&record.at).is_some_and(|t| t >= since)
                    && opened.resources().iter().any(|r| resources.contains(r))
                {
                    triggers += 1;
                    same_rule |= rule.is_some() && opened.finding.config_rule.as_deref() == rule;
                }
            }
            if case == plan.case_id {
                // Re-delivery to a case that will not open a new epoch is no new trigger.
                this_case_would_trigger = last_status == Some(CaseStatus::RolledBack);
            } else if same_rule && last_status != Some(CaseStatus::RolledBack) {
                remediated_before.push(case);
            }
        }
        if !this_case_would_trigger {
            return Ok(None);
        }
        let reason = match rule {
            Some(rule) if !remediated_before.is_empty() => format!(
                "{} failed Config rule {} again within {} h of case {} acting on it: escalated to a human instead of remediating again (something, a deployment tool most likely, may be reverting the change)",
                resources.join(", "),
                crate::text::preview(rule),
                guard.window.as_secs() / 3600,
                remediated_before
                    .iter()
                    .map(CaseId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ if triggers >= guard.max_triggers => format!(
                "{} acted on {triggers} time(s) in the last {} h (limit {}): automatic action stopped to avoid flapping; a human decides",
                resources.join(", "),
                guard.window.as_secs() / 3600,
                guard.max_triggers
            ),
            _ => return Ok(None),
        };
        let event = JournalEvent::LoopGuardTripped {
            resources,
            reason: reason.clone(),
        };
        self.stop_before_acting(plan, finding_raw, event, "the loop guard", &reason)
            .await
            .map(Some)
    }

    /// A guard stopped automatic action before any change: journal the trip
    /// (in a new epoch for a rolled-back case, so its history shows it), mark
    /// every step not run, and stop the case.
    async fn stop_before_acting(
        &self,
        plan: &Plan,
        finding_raw: &str,
        trip: JournalEvent,
        guard: &str,
        reason: &str,
    ) -> Result<Report, ExecError> {
        let mut session = self.open(&plan.case_id, Some((plan, finding_raw))).await?;
        if !session.fresh && session.state.status == Some(CaseStatus::RolledBack) {
            session
                .write(JournalEvent::EpochOpened {
                    epoch: session.state.epoch + 1,
                    plan: Box::new(plan.clone()),
                    finding_sha256: finding_digest(finding_raw),
                    reason: "the finding arrived again".to_string(),
                    provenance: self.provenance.clone(),
                })
                .await?;
        }
        session.write(trip).await?;
        self.stop_case(
            &mut session,
            None,
            &format!("{guard} stopped automatic action"),
        )
        .await?;
        session.close().await;
        Ok(Report::new(
            &plan.case_id,
            CaseStatus::Stopped,
            format!("case {}: {reason}", plan.case_id),
        ))
    }

    /// Fleet cap: the instances `plan` would isolate, on top of those every
    /// case isolated within the window (pre-state written, counted from the
    /// journals), must stay within the cap; else the case stops before any change.
    async fn guard_fleet(
        &self,
        plan: &Plan,
        finding_raw: &str,
    ) -> Result<Option<Report>, ExecError> {
        let Some(cap) = self.fleet_cap else {
            return Ok(None);
        };
        let isolate_steps: Vec<&PlannedStep> = plan
            .steps
            .iter()
            .filter(|s| s.kind() == ActionKind::IsolateInstance)
            .collect();
        let targets: std::collections::BTreeSet<&str> = isolate_steps
            .iter()
            .filter_map(|s| match &s.target {
                Target::Instance(i) => Some(i.instance_id.as_str()),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let since = now - cap.window.as_secs() as i64;
        let mut isolated = std::collections::BTreeSet::new();
        for case in self.journal.cases().await? {
            let records = match self.journal.load(&case).await {
                Ok(records) => records,
                Err(e) => {
                    warn!(%case, error = %e, "fleet cap: unreadable journal skipped");
                    continue;
                }
            };
            if case == plan.case_id
                && let Ok(state) = CaseState::from_records(&case, &records)
                && state.status != Some(CaseStatus::RolledBack)
                && isolate_steps
                    .iter()
                    .all(|s| state.step(&s.id).is_some_and(StepState::touched))
            {
                // This case isolated its instances already: no new containment.
                return Ok(None);
            }
            let mut current: Option<&Plan> = None;
            for record in &records {
                match &record.event {
                    JournalEvent::CaseOpened { plan, .. }
                    | JournalEvent::EpochOpened { plan, .. } => current = Some(plan),
                    JournalEvent::StepPrepared { step, .. }
                        if unix_seconds(&record.at).is_some_and(|t| t >= since) =>
                    {
                        if let Some(Target::Instance(instance)) = current
                            .and_then(|p| p.step(step))
                            .filter(|s| s.kind() == ActionKind::IsolateInstance)
                            .map(|s| &s.target)
                        {
                            isolated.insert(instance.instance_id.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        isolated.retain(|instance| !targets.contains(instance.as_str()));
        let max = cap.max_instances as usize;
        let admitted = match self.fleet_ledger {
            Some(ledger) => ledger.admit(&mut isolated, &targets, max),
            None => isolated.len() + targets.len() <= max,
        };
        if admitted {
            return Ok(None);
        }
        let minutes = cap.window.as_secs().div_ceil(60);
        let reason = format!(
            "the fleet cap stopped automatic action: {} instance(s) isolated in the last {minutes} min, and isolating {} more would pass the limit of {} (--fleet-cap-max, --fleet-cap-window); a human decides (`cordon resume {}` goes on)",
            isolated.len(),
            targets.iter().copied().collect::<Vec<_>>().join(", "),
            cap.max_instances,
            plan.case_id
        );
        let event = JournalEvent::FleetCapTripped {
            isolated: isolated.into_iter().collect(),
            limit: cap.max_instances,
            window_seconds: cap.window.as_secs(),
            reason: reason.clone(),
        };
        self.stop_before_acting(plan, finding_raw, event, "the fleet cap", &reason)
            .await
            .map(Some)
    }

    /// Continues a case from its journal, with the plan it was opened with:
    /// every step not yet done runs (a stopped case resumes from its first
    /// step not done; a completed-with-failures case retries its failed steps).
    pub async fn resume(&self, case: &CaseId) -> Result<Report, ExecError> {
        let mut session = self.open(case, None).await?;
        let report = self.drive(&mut session, Mode::Resume, Scope::Every).await;
        session.close().await;
        report.map(|driven| driven.report(case))
    }

    /// Records a human's decision on a step that needs approval (e.g. `cordon approve`
    /// from another terminal), then continues the case from its journal.
    pub async fn decide(
        &self,
        case: &CaseId,
        step: &str,
        decision: Decision,
    ) -> Result<Report, ExecError> {
        let mut session = self.open(case, None).await?;
        let report = self.decide_in(&mut session, step, decision).await;
        session.close().await;
        report
    }

    /// Records a human's decision on a step that needs approval, with the
    /// same checks as [`Executor::decide`], and runs nothing: the Step
    /// Functions front door (`cordon approve --task-token`), where the state
    /// machine's next task runs the step under its own lease and re-checks
    /// the journaled approver.
    pub async fn record_decision(
        &self,
        case: &CaseId,
        step: &str,
        decision: Decision,
    ) -> Result<(), ExecError> {
        let mut session = self.open(case, None).await?;
        let recorded = Self::record_decision_in(&mut session, step, decision).await;
        session.close().await;
        recorded
    }

    async fn decide_in(
        &self,
        session: &mut Session<'a, J>,
        step: &str,
        decision: Decision,
    ) -> Result<Report, ExecError> {
        Self::record_decision_in(session, step, decision).await?;
        let case = session.case.clone();
        self.drive(session, Mode::Resume, Scope::Every)
            .await
            .map(|driven| driven.report(&case))
    }

    async fn record_decision_in(
        session: &mut Session<'a, J>,
        step: &str,
        decision: Decision,
    ) -> Result<(), ExecError> {
        let case = &session.case.clone();
        let Some(planned) = session.state.plan.step(step).cloned() else {
            return Err(ExecError::UnknownStep {
                case: case.clone(),
                step: step.to_string(),
            });
        };
        if !planned.approval.required {
            return Err(ExecError::NoApprovalNeeded {
                case: case.clone(),
                step: step.to_string(),
            });
        }
        let current = session.step_state(step);
        if let Some(by) = current.approved_by.as_ref().or(current.refused_by.as_ref()) {
            let verdict = if current.approved_by.is_some() {
                "approved"
            } else {
                "refused"
            };
            return Err(ExecError::AlreadyDecided {
                case: case.clone(),
                step: step.to_string(),
                detail: format!("{verdict} by {by}"),
            });
        }
        match decision {
            Decision::Approved { approver } => {
                Self::check_approver(session, &planned, &approver)?;
                session
                    .write(JournalEvent::ApprovalGranted {
                        step: step.to_string(),
                        approver,
                    })
                    .await?
            }
            Decision::Refused { approver, reason } => {
                session
                    .write(JournalEvent::ApprovalRefused {
                        step: step.to_string(),
                        approver,
                        reason,
                    })
                    .await?
            }
            Decision::Pending | Decision::TimedOut { .. } => {}
        }
        Ok(())
    }

    /// Runs the steps of `scope` not done yet, unless the case rests where
    /// running them makes no sense; then says how the case stands.
    async fn drive(
        &self,
        session: &mut Session<'a, J>,
        mode: Mode,
        scope: Scope<'_>,
    ) -> Result<Driven, ExecError> {
        if let Some(report) = self.at_rest(session, mode).await? {
            return Ok(Driven::Rested(report));
        }
        let plan = session.state.plan.clone();
        let run = self.run_graph(session, &plan, scope).await;
        let partial = !matches!(scope, Scope::Every);
        if partial
            && run.halt.is_none()
            && run.awaiting.is_empty()
            && plan.steps.iter().any(|s| !run.finished.contains(&s.id))
        {
            let left = plan
                .steps
                .iter()
                .filter(|s| !run.finished.contains(&s.id))
                .count();
            let case = &session.case;
            let message = match scope {
                Scope::Step(step) if run.finished.contains(step) => {
                    format!("case {case}: step `{step}` done; {left} step(s) to go")
                }
                Scope::Step(step) => format!(
                    "case {case}: step `{step}` did not run (its needs are not done); {left} step(s) to go"
                ),
                _ => format!("case {case} is open; {left} step(s) to go"),
            };
            return Ok(Driven::Running {
                status: session.state.status,
                no_op: false,
                message,
            });
        }
        self.finish_run(session, &plan, run)
            .await
            .map(Driven::Rested)
    }

    /// The report of a case that must not run on (finished, being rolled
    /// back, stopped by the loop guard, a resource held by another case).
    async fn at_rest(
        &self,
        session: &mut Session<'a, J>,
        mode: Mode,
    ) -> Result<Option<Report>, ExecError> {
        let case = session.case.clone();
        if session.state.rollback_started && !session.state.status.is_some_and(is_finished) {
            return Ok(Some(Report::no_op(
                &case,
                CaseStatus::Stopped,
                format!(
                    "case {case} is being rolled back; run `cordon rollback {case}` to finish it"
                ),
            )
            .with_outcome(Outcome::NeedsHuman)));
        }
        match session.state.status {
            Some(status @ CaseStatus::Completed) => {
                return Ok(Some(Report::no_op(
                    &case,
                    status,
                    format!("case {case} is already {status}; nothing to do"),
                )));
            }
            Some(status @ CaseStatus::CompletedWithFailures) if mode == Mode::Run => {
                return Ok(Some(Report::no_op(
                    &case,
                    status,
                    format!(
                        "case {case} is already {status}; `cordon resume {case}` retries the failed steps"
                    ),
                )));
            }
            Some(
                status @ (CaseStatus::RolledBack
                | CaseStatus::RollbackIncomplete
                | CaseStatus::RolledBackExceptCredentials),
            ) => {
                let next = match status {
                    CaseStatus::RolledBack => {
                        "deliver its finding again (`cordon run`) to contain it in a new epoch"
                            .to_string()
                    }
                    _ => format!("`cordon rollback {case}` finishes the rollback"),
                };
                return Ok(Some(Report::no_op(
                    &case,
                    status,
                    format!("case {case} is {status}; {next}"),
                )));
            }
            _ => {}
        }
        if session.state.loop_guard.is_some() && mode == Mode::Run {
            let status = session.state.status.unwrap_or(CaseStatus::Stopped);
            return Ok(Some(Report::no_op(
                &case,
                status,
                format!(
                    "case {case} was stopped by the loop guard; `cordon resume {case}` if a human decides to go on"
                ),
            )
            .with_outcome(Outcome::NeedsHuman)));
        }
        self.claim_resources(session).await
    }

    /// Runs every step of `plan` not done yet, each once the steps it needs
    /// are finished, up to [`Executor::concurrent_steps`] at once. Stops
    /// starting steps at the first failure under `stop` or `rollback`, a
    /// refused or timed-out approval, a signal, the pause switch or an error;
    /// the steps already running finish (and are journaled) either way.
    async fn run_graph(&self, session: &mut Session<'a, J>, plan: &Plan, scope: Scope<'_>) -> Run {
        let case = session.case.clone();
        let mut run = Run::default();
        for step in &plan.steps {
            let state = session.step_state(&step.id);
            // A whole run retries the steps that failed under `continue`; a
            // partial one leaves them to their own task and goes on past them.
            let finished = match scope {
                Scope::Every => state.done(),
                Scope::Nothing | Scope::Step(_) => finished_for_dependents(plan, &state, &step.id),
            };
            if finished {
                run.finished.insert(step.id.clone());
            }
        }
        let shared = Shared::new(session);
        let mut running: Running<'_, Finished> = Running::new();
        let mut started: BTreeSet<usize> = BTreeSet::new();
        let mut steps_running = 0;
        // Pre-states that no other step changes are read alongside the steps
        // they wait on (once one of those has read its own), rather than one
        // round after those finish.
        if !self.prefetch_window.is_zero() {
            for step in &plan.steps {
                let waits = !plan
                    .needs(step)
                    .iter()
                    .all(|need| run.finished.contains(*need));
                if waits
                    && scope.admits(&step.id)
                    && !run.finished.contains(&step.id)
                    && self.actions.prefetchable(plan, step)
                    && shared.step_state(&step.id).await.pre_state.is_none()
                {
                    let shared = &shared;
                    running.push(async move {
                        shared.first_started().await;
                        if let Ok(pre) = self.actions.read_pre_state(plan, step).await {
                            shared.keep_prefetched(&step.id, pre);
                        }
                        Finished::Prefetch
                    });
                }
            }
        }
        loop {
            while run.halt.is_none() && steps_running < self.concurrent_steps {
                let ready = plan.steps.iter().enumerate().find(|(pos, step)| {
                    !started.contains(pos)
                        && scope.admits(&step.id)
                        && !run.finished.contains(&step.id)
                        && plan
                            .needs(step)
                            .iter()
                            .all(|need| run.finished.contains(*need))
                });
                let Some((pos, step)) = ready else {
                    break;
                };
                if self.interrupted() {
                    run.halt = Some(Halt::Interrupted(step.id.clone()));
                    break;
                }
                if let Some(switch) = self.pause
                    && let Some(paused) = switch.paused().await
                {
                    run.halt = Some(Halt::Paused(step.id.clone(), paused));
                    break;
                }
                started.insert(pos);
                steps_running += 1;
                let span =
                    info_span!("step", case_id = %case, playbook = %plan.playbook, step = %step.id);
                let shared = &shared;
                running.push(async move {
                    let outcome = self.execute_step(shared, plan, step).instrument(span).await;
                    Finished::Step(pos, outcome)
                });
            }
            // Nothing runs and nothing can start: reads ahead still under way
            // are for steps that will not run now.
            if steps_running == 0 {
                break;
            }
            let Some(Finished::Step(pos, outcome)) = running.next().await else {
                continue;
            };
            steps_running -= 1;
            shared.mark_started();
            let id = plan.steps[pos].id.clone();
            let halt = match outcome {
                Err(e) => Some(Halt::Error(e)),
                Ok(StepOutcome::Done | StepOutcome::Failed(OnFailure::Continue)) => {
                    run.finished.insert(id);
                    None
                }
                Ok(StepOutcome::AwaitingApproval) => {
                    run.awaiting.push(id);
                    None
                }
                Ok(StepOutcome::Failed(policy)) => Some(Halt::Failed(id, policy)),
                Ok(StepOutcome::Refused) => Some(Halt::Refused(id)),
                Ok(StepOutcome::TimedOut) => Some(Halt::TimedOut(id)),
            };
            // The first reason to stop decides; an error (the journal failing) beats any.
            match (&run.halt, halt) {
                (_, None) => {}
                (None, Some(halt)) => run.halt = Some(halt),
                (Some(Halt::Error(_)), Some(_)) => {}
                (Some(_), Some(error @ Halt::Error(_))) => run.halt = Some(error),
                (Some(_), Some(_)) => {}
            }
        }
        drop(running);
        shared.into_inner();
        run
    }

    /// Journals how the run ended and says what it means.
    async fn finish_run(
        &self,
        session: &mut Session<'a, J>,
        plan: &Plan,
        run: Run,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        match run.halt {
            Some(Halt::Error(e)) => return Err(e),
            Some(Halt::Interrupted(next)) => return self.stop_interrupted(session, &next).await,
            Some(Halt::Paused(next, paused)) => {
                return self.stop_paused(session, &next, paused).await;
            }
            Some(Halt::TimedOut(step)) => {
                self.stop_case(
                    session,
                    None,
                    &format!("the approval of `{step}` timed out"),
                )
                .await?;
                return Ok(Report::new(
                    &case,
                    CaseStatus::Stopped,
                    format!(
                        "nobody approved `{step}` in time; the case stopped (`cordon approve {case} {step}` continues it)"
                    ),
                )
                .with_outcome(Outcome::ApprovalTimedOut));
            }
            Some(Halt::Refused(step)) => {
                self.stop_case(
                    session,
                    Some(&step),
                    "an earlier step's approval was refused",
                )
                .await?;
                return Ok(Report::new(
                    &case,
                    CaseStatus::Stopped,
                    format!("approval of `{step}` was refused; the remaining steps were not run"),
                ));
            }
            Some(Halt::Failed(step, OnFailure::Stop)) => {
                self.stop_case(
                    session,
                    None,
                    &format!("the case stopped after `{step}` failed"),
                )
                .await?;
                return Ok(Report::failed(
                    &case,
                    CaseStatus::Stopped,
                    format!(
                        "step `{step}` failed: {}; the case stopped (`cordon resume {case}` runs every step not done, `cordon rollback {case}` undoes)",
                        last_error(session, &step)
                    ),
                ));
            }
            Some(Halt::Failed(step, _)) => {
                let failure = last_error(session, &step);
                self.mark_not_run(session, None, &format!("rolled back after `{step}` failed"))
                    .await?;
                let report = self
                    .rollback_session(
                        session,
                        &format!("step `{step}` failed"),
                        RollbackKind::Automatic,
                    )
                    .await?;
                let outcome = match report.status {
                    CaseStatus::RolledBack => Outcome::RolledBack,
                    other => Outcome::of_status(other),
                };
                return Ok(Report {
                    message: format!("step `{step}` failed: {failure}; {}", report.message),
                    step_failed: true,
                    outcome,
                    ..report
                });
            }
            None => {}
        }
        if !run.awaiting.is_empty() {
            // A re-run of a case already waiting adds nothing to the audit trail.
            if session.state.status != Some(CaseStatus::AwaitingApproval) {
                session
                    .write(JournalEvent::CaseFinished {
                        status: CaseStatus::AwaitingApproval,
                    })
                    .await?;
            }
            let waiting: Vec<String> = run.awaiting.iter().map(|s| format!("`{s}`")).collect();
            let first = &run.awaiting[0];
            let message = if waiting.len() == 1 {
                format!(
                    "step `{first}` waits for approval: `cordon approve {case} {first}` continues the case"
                )
            } else {
                format!(
                    "steps {} wait for approval: `cordon approve {case} STEP` continues the case",
                    waiting.join(", ")
                )
            };
            return Ok(Report::new(&case, CaseStatus::AwaitingApproval, message));
        }
        let blocked: Vec<&PlannedStep> = plan
            .steps
            .iter()
            .filter(|s| !run.finished.contains(&s.id))
            .collect();
        if let Some(first) = blocked.first() {
            // Only a journaled plan whose needs form a cycle or name an unknown
            // step gets here (validation refuses both): never "completed".
            self.stop_case(
                session,
                None,
                "its needs can never be met (a cycle, or a step the plan does not have)",
            )
            .await?;
            return Ok(Report::failed(
                &case,
                CaseStatus::Stopped,
                format!(
                    "case {case}: step `{}` needs steps that can never be done ({}); the case stopped",
                    first.id,
                    plan.needs(first).join(", ")
                ),
            ));
        }
        // One pass: the steps that failed for good, and those skipped without failing.
        let (mut failed, mut skipped) = (Vec::new(), Vec::new());
        for step in &plan.steps {
            let Some(state) = session.state.step(&step.id) else {
                continue;
            };
            if state.failed_final.is_some() {
                failed.push(format!("`{}`", step.id));
            } else if state.skipped.is_some() {
                skipped.push(format!("`{}`", step.id));
            }
        }
        let status = if failed.is_empty() {
            CaseStatus::Completed
        } else {
            CaseStatus::CompletedWithFailures
        };
        session.write(JournalEvent::CaseFinished { status }).await?;
        let message = if failed.is_empty() && skipped.is_empty() {
            format!("case {case}: every step done and verified")
        } else if failed.is_empty() {
            format!(
                "case {case}: every step done and verified, except {} skipped (`cordon status {case}` says why)",
                skipped.join(", ")
            )
        } else {
            format!(
                "case {case}: every step ran, but {} failed (`cordon status {case}` says why; `cordon resume {case}` retries them)",
                failed.join(", ")
            )
        };
        Ok(Report::new(&case, status, message))
    }

    /// A signal asked us to stop: the step in flight has finished; say so and stop.
    async fn stop_interrupted(
        &self,
        session: &mut Session<'a, J>,
        next: &str,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        session
            .write(JournalEvent::CaseInterrupted {
                reason: format!("interrupted by a signal before step `{next}`"),
            })
            .await?;
        session
            .write(JournalEvent::CaseFinished {
                status: CaseStatus::Stopped,
            })
            .await?;
        Ok(Report::new(
            &case,
            CaseStatus::Stopped,
            format!(
                "case {case} interrupted before step `{next}`; every step so far finished and is journaled (`cordon resume {case}` continues)"
            ),
        ))
    }

    /// The pause switch is on: stop before `next`, journaled; resume goes on.
    async fn stop_paused(
        &self,
        session: &mut Session<'a, J>,
        next: &str,
        paused: Paused,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        session
            .write(JournalEvent::CasePaused {
                before_step: next.to_string(),
                switch: paused.switch.clone(),
            })
            .await?;
        self.stop_case(session, None, &format!("paused by {}", paused.switch))
            .await?;
        Ok(Report::new(
            &case,
            CaseStatus::Stopped,
            format!(
                "case {case} paused before step `{next}` by {}: {}, then `cordon resume {case}`",
                paused.switch, paused.unpause
            ),
        ))
    }

    /// Stops the case: every step not run yet (but `except`) is journaled
    /// "not run" (`reason`), then the case rests `stopped`.
    async fn stop_case(
        &self,
        session: &mut Session<'a, J>,
        except: Option<&str>,
        reason: &str,
    ) -> Result<(), ExecError> {
        self.mark_not_run(session, except, reason).await?;
        session
            .write(JournalEvent::CaseFinished {
                status: CaseStatus::Stopped,
            })
            .await?;
        Ok(())
    }

    /// Journals "not run" for each step (but `except`) that has not run, in
    /// plan order, so the record shows where the case stopped. Resume runs them.
    async fn mark_not_run(
        &self,
        session: &mut Session<'a, J>,
        except: Option<&str>,
        reason: &str,
    ) -> Result<(), ExecError> {
        let plan = session.state.plan.clone();
        for later in plan.steps.iter().filter(|s| Some(s.id.as_str()) != except) {
            let state = session.step_state(&later.id);
            // A step that was tried (even one that failed before its
            // pre-state) is journaled failed, not "not run".
            if state.done() || state.touched() || state.not_run.is_some() || state.attempts > 0 {
                continue;
            }
            session
                .write(JournalEvent::StepNotRun {
                    step: later.id.clone(),
                    reason: reason.to_string(),
                })
                .await?;
        }
        Ok(())
    }

    async fn execute_step(
        &self,
        shared: &Shared<'_, 'a, J>,
        plan: &Plan,
        step: &PlannedStep,
    ) -> Result<StepOutcome, ExecError> {
        let current = shared.step_state(&step.id).await;
        if current.done() {
            return Ok(StepOutcome::Done);
        }
        if current.failed_final.is_some() {
            // A resumed case retries a step that failed for good last time.
            info!("retrying step that failed before");
        }
        if let Target::Unresolved { reason } = &step.target {
            // Never "done" with nothing done: the step fails and its policy applies.
            let error = ActionError::new(
                ErrorKind::Refused,
                step.target.label(),
                format!("step `{}` has nothing to act on: {reason}", step.id),
                "use a playbook whose steps fit this finding (`cordon route` says which matched)",
            );
            shared
                .write(JournalEvent::StepFailed {
                    step: step.id.clone(),
                    attempt: current.attempts + 1,
                    error: error.record(),
                    retrying: false,
                })
                .await?;
            return Ok(StepOutcome::Failed(step.on_failure));
        }
        // An approval journaled earlier is checked again before the step runs
        // (the plan may have been amended since, or the journal edited).
        if step.approval.required
            && let Some(by) = &current.approved_by
        {
            shared
                .with(|session| Self::check_approver(session, step, by))
                .await?;
        }
        if step.approval.required && current.approved_by.is_none() {
            if let Some(approver) = &current.refused_by {
                warn!(%approver, "approval was refused");
                return Ok(StepOutcome::Refused);
            }
            let asking = shared.asking().await;
            let decision = self.approver.decide(plan, step).await;
            drop(asking);
            match decision {
                Decision::Approved { approver } => {
                    if let Err(refused) = shared
                        .with(|session| Self::check_approver(session, step, &approver))
                        .await
                    {
                        shared.request_approval(step, &current).await?;
                        return Err(refused);
                    }
                    shared
                        .write(JournalEvent::ApprovalGranted {
                            step: step.id.clone(),
                            approver,
                        })
                        .await?;
                }
                Decision::Refused { approver, reason } => {
                    shared
                        .write(JournalEvent::ApprovalRefused {
                            step: step.id.clone(),
                            approver,
                            reason,
                        })
                        .await?;
                    return Ok(StepOutcome::Refused);
                }
                Decision::Pending => {
                    shared.request_approval(step, &current).await?;
                    return Ok(StepOutcome::AwaitingApproval);
                }
                Decision::TimedOut { waited } => {
                    shared.request_approval(step, &current).await?;
                    shared
                        .write(JournalEvent::ApprovalTimedOut {
                            step: step.id.clone(),
                            waited_ms: waited.as_millis() as u64,
                        })
                        .await?;
                    return Ok(StepOutcome::TimedOut);
                }
            }
        }
        let max_attempts = step.retry.max_attempts.max(1);
        let mut attempt = current.attempts;
        loop {
            attempt += 1;
            match self.attempt(shared, plan, step, attempt).await? {
                Ok(()) => return Ok(StepOutcome::Done),
                Err(error) if error.kind == ErrorKind::NotConfigured => {
                    // Nothing was tried: not a failure of the step, and not
                    // silently "done" either.
                    let reason = format!("not configured: {error}");
                    warn!(step = %step.id, %reason, "step skipped");
                    shared
                        .write(JournalEvent::StepSkipped {
                            step: step.id.clone(),
                            reason,
                        })
                        .await?;
                    return Ok(StepOutcome::Done);
                }
                Err(error) => {
                    let retrying =
                        error.kind.retryable() && attempt - current.attempts < max_attempts;
                    warn!(attempt, retrying, error = %error, "step attempt failed");
                    shared
                        .write(JournalEvent::StepFailed {
                            step: step.id.clone(),
                            attempt,
                            error: error.record(),
                            retrying,
                        })
                        .await?;
                    if retrying {
                        tokio::time::sleep(backoff(step, attempt - current.attempts)).await;
                        continue;
                    }
                    if step.best_effort {
                        shared
                            .write(JournalEvent::StepSkipped {
                                step: step.id.clone(),
                                reason: format!("best-effort step failed: {error}"),
                            })
                            .await?;
                        return Ok(StepOutcome::Done);
                    }
                    return Ok(StepOutcome::Failed(step.on_failure));
                }
            }
        }
    }

    /// The step's pre-state read ahead within the window, else read now.
    async fn read_or_take_pre_state(
        &self,
        shared: &Shared<'_, 'a, J>,
        plan: &Plan,
        step: &PlannedStep,
    ) -> Result<Value, ActionError> {
        match shared.take_prefetched(&step.id, self.prefetch_window) {
            Some(pre) => Ok(pre),
            None => self.actions.read_pre_state(plan, step).await,
        }
    }

    /// One attempt: prepare (unless already journaled), apply (unless already
    /// journaled), verify. After a failed verification the live state is re-read
    /// first, and a pre-state that lacks a resource is amended (journaled) and
    /// the step re-applied.
    async fn attempt(
        &self,
        shared: &Shared<'_, 'a, J>,
        plan: &Plan,
        step: &PlannedStep,
        attempt: u32,
    ) -> Result<Result<(), ActionError>, ExecError> {
        let known = shared.step_state(&step.id).await;
        let mut outcome = known.outcome.clone();
        let fresh = known.pre_state.is_none();
        let pre_state = match known.pre_state {
            Some(pre) => {
                if known.last_failure_kind.as_deref() == Some("verification") {
                    match self.actions.amend_pre_state(plan, step, &pre).await {
                        Ok(Some(amendment)) => {
                            shared
                                .write(JournalEvent::StepPreStateAmended {
                                    step: step.id.clone(),
                                    pre_state: amendment.pre_state.clone(),
                                    added: amendment.added,
                                })
                                .await?;
                            outcome = None;
                            amendment.pre_state
                        }
                        Ok(None) => pre,
                        Err(e) => return Ok(Err(e)),
                    }
                } else {
                    pre
                }
            }
            None => match self.read_or_take_pre_state(shared, plan, step).await {
                Ok(pre) => {
                    shared
                        .write(JournalEvent::StepPrepared {
                            step: step.id.clone(),
                            attempt,
                            pre_state: pre.clone(),
                        })
                        .await?;
                    shared.mark_started();
                    pre
                }
                Err(e) => return Ok(Err(e)),
            },
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                shared.fence().await?;
                let started = Instant::now();
                let applied = {
                    let progress = Progress {
                        sink: Some(shared),
                        step: step.id.clone(),
                        earlier: known.progress.clone(),
                        fresh,
                    };
                    self.actions
                        .apply_with_progress(plan, step, &pre_state, &progress)
                        .await
                };
                match applied {
                    Ok(outcome) => {
                        shared
                            .write(JournalEvent::StepApplied {
                                step: step.id.clone(),
                                outcome: outcome.clone(),
                                duration_ms: started.elapsed().as_millis() as u64,
                            })
                            .await?;
                        outcome
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        let started = Instant::now();
        match self.actions.verify(plan, step, &pre_state, &outcome).await {
            Ok(()) => {
                shared
                    .write(JournalEvent::StepVerified {
                        step: step.id.clone(),
                        duration_ms: started.elapsed().as_millis() as u64,
                    })
                    .await?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// Undoes every step that was prepared, newest epoch first and newest step
    /// first, and verifies each. Idempotent. An undo that re-arms credentials or
    /// deletes evidence runs only with the approver's explicit approval (asked
    /// through [`Approver::decide_undo`]); otherwise it is kept, journaled, and
    /// the case ends `rolled-back-except-credentials` when credentials stay contained.
    pub async fn rollback(&self, case: &CaseId, reason: &str) -> Result<Report, ExecError> {
        let mut session = self.open(case, None).await?;
        let report = if session.state.status == Some(CaseStatus::RolledBack) {
            Ok(Report::no_op(
                case,
                CaseStatus::RolledBack,
                format!("case {case} is already rolled back; nothing to do"),
            ))
        } else {
            match self.refuse_rollback_if_held(&session).await {
                Ok(Some(refused)) => Ok(refused),
                Ok(None) => {
                    self.rollback_session(&mut session, reason, RollbackKind::Requested)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        session.close().await;
        report
    }

    async fn rollback_session(
        &self,
        session: &mut Session<'a, J>,
        reason: &str,
        kind: RollbackKind,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        session
            .write(JournalEvent::RollbackStarted {
                reason: reason.to_string(),
            })
            .await?;
        let mut incomplete = Vec::new();
        let mut kept_credentials = Vec::new();
        let mut kept_evidence = Vec::new();
        let mut undone = 0usize;
        let current_epoch = session.state.epoch;
        let epochs: Vec<(u32, Plan)> = session
            .state
            .epochs()
            .into_iter()
            .rev()
            .map(|(epoch, plan, _, _)| (epoch, plan.clone()))
            .collect();
        for (epoch, plan) in epochs {
            let epoch_tag = (epoch != current_epoch).then_some(epoch);
            let shared = Shared::new(session);
            let mut running: Running<'_, (usize, Result<Undo, ExecError>)> = Running::new();
            let mut started: BTreeSet<usize> = BTreeSet::new();
            let mut finished: BTreeSet<&str> = BTreeSet::new();
            let mut error = None;
            loop {
                while error.is_none() && running.len() < self.concurrent_steps {
                    // A step is undone once every step that needs it is; newest first.
                    let unstarted = || {
                        plan.steps
                            .iter()
                            .enumerate()
                            .rev()
                            .filter(|(pos, _)| !started.contains(pos))
                    };
                    let ready = unstarted()
                        .find(|(_, step)| {
                            plan.dependents(&step.id)
                                .iter()
                                .all(|d| finished.contains(d.id.as_str()))
                        })
                        // Needs that form a cycle (a hand-made journal) must not
                        // leave steps undone: the rest go newest first.
                        .or_else(|| unstarted().next().filter(|_| running.len() == 0));
                    let Some((pos, step)) = ready else {
                        break;
                    };
                    started.insert(pos);
                    let shared = &shared;
                    let plan = &plan;
                    running.push(async move {
                        let undo = self
                            .undo_step(shared, plan, epoch, epoch_tag, step, kind)
                            .await;
                        (pos, undo)
                    });
                }
                let Some((pos, undo)) = running.next().await else {
                    break;
                };
                finished.insert(plan.steps[pos].id.as_str());
                let step = plan.steps[pos].id.clone();
                match undo {
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                    Ok(Undo::Nothing) => {}
                    Ok(Undo::Done) => undone += 1,
                    // Re-opening to the world is kept like re-arming credentials:
                    // the case's containment stays until a human decides.
                    Ok(Undo::Kept(UndoGate::Credentials(_) | UndoGate::Exposure(_))) => {
                        kept_credentials.push(step)
                    }
                    Ok(Undo::Kept(UndoGate::Evidence(_))) => kept_evidence.push(step),
                    Ok(Undo::Failed(why)) => incomplete.push(format!("{step}: {why}")),
                }
            }
            drop(running);
            shared.into_inner();
            if let Some(error) = error {
                return Err(error);
            }
        }
        let status = if !incomplete.is_empty() {
            CaseStatus::RollbackIncomplete
        } else if !kept_credentials.is_empty() {
            CaseStatus::RolledBackExceptCredentials
        } else {
            CaseStatus::RolledBack
        };
        if status == CaseStatus::RolledBack {
            self.release_resources(session).await?;
        }
        session.write(JournalEvent::CaseFinished { status }).await?;
        let mut message = match status {
            CaseStatus::RollbackIncomplete => format!(
                "case {case}: rollback incomplete ({}); fix the cause and run `cordon rollback {case}` again",
                incomplete.join("; ")
            ),
            CaseStatus::RolledBackExceptCredentials => format!(
                "case {case} rolled back except the steps whose undo needs approval: {undone} step(s) undone and verified; kept {} (their undo re-arms credentials or exposes a resource to the internet again: `cordon rollback {case} --approve-undo STEP` when a human decides)",
                kept_credentials
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!("case {case} rolled back: {undone} step(s) undone and verified"),
        };
        if !kept_evidence.is_empty() {
            message.push_str(&format!(
                "; evidence kept from {} (deleting it needs `--approve-undo`)",
                kept_evidence
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let report = Report::new(&case, status, message);
        Ok(match status {
            CaseStatus::RolledBack => report.with_outcome(Outcome::Done),
            _ => report,
        })
    }

    /// Undoes one step of `epoch` from its journaled pre-state and verifies
    /// it (nothing when it was never prepared or is undone already).
    async fn undo_step(
        &self,
        shared: &Shared<'_, 'a, J>,
        plan: &Plan,
        epoch: u32,
        epoch_tag: Option<u32>,
        step: &PlannedStep,
        kind: RollbackKind,
    ) -> Result<Undo, ExecError> {
        let case = shared.with(|session| session.case.clone()).await;
        let state = shared
            .with(|session| step_state_in(&session.state, epoch, &step.id))
            .await;
        let Some(pre_state) = state.pre_state.clone() else {
            return Ok(Undo::Nothing);
        };
        if state.rollback_verified {
            return Ok(Undo::Nothing);
        }
        if let Some(gate) = step.action.undo_gate()
            && state.undo_approved_by.is_none()
        {
            let decision = match kind {
                RollbackKind::Automatic => Decision::Pending,
                RollbackKind::Requested => {
                    let asking = shared.asking().await;
                    let decision = self.approver.decide_undo(plan, step, gate).await;
                    drop(asking);
                    decision
                }
            };
            match decision {
                Decision::Approved { approver } => {
                    shared
                        .write(JournalEvent::UndoApproved {
                            step: step.id.clone(),
                            epoch: epoch_tag,
                            approver,
                        })
                        .await?;
                }
                other => {
                    let why = match (kind, other) {
                        (RollbackKind::Automatic, _) => {
                            format!("kept by the automatic rollback: undo {}", gate.reason())
                        }
                        (_, Decision::Refused { approver, reason }) => {
                            format!("undo refused by {approver}: {reason}")
                        }
                        _ => format!(
                            "kept: undo {} and needs approval (`cordon rollback {case} --approve-undo {}`)",
                            gate.reason(),
                            step.id
                        ),
                    };
                    shared
                        .write(JournalEvent::UndoKept {
                            step: step.id.clone(),
                            epoch: epoch_tag,
                            reason: why,
                        })
                        .await?;
                    return Ok(Undo::Kept(gate));
                }
            }
        }
        shared.fence().await?;
        let span = info_span!("rollback", case_id = %case, playbook = %plan.playbook, step = %step.id, epoch);
        let result = async {
            if step.reversibility == Reversibility::Irreversible
                && state.outcome.is_some()
                && step.action.undo_gate().is_none()
            {
                return Err(ActionError::new(
                    ErrorKind::Refused,
                    step.target.label(),
                    format!("step `{}` is irreversible and was applied", step.id),
                    "restore by hand (see the step's pre-state in the journal)",
                ));
            }
            let result = if state.rolled_back {
                None
            } else {
                Some(
                    retry_action(step, || {
                        self.actions.undo_with_progress(
                            plan,
                            step,
                            &pre_state,
                            state.outcome.as_ref(),
                            &state.progress,
                        )
                    })
                    .await?,
                )
            };
            retry_action(step, || self.actions.verify_undone(plan, step, &pre_state)).await?;
            Ok(result)
        }
        .instrument(span)
        .await;
        match result {
            Ok(result) => {
                if let Some(result) = result {
                    shared
                        .write(JournalEvent::StepRolledBack {
                            step: step.id.clone(),
                            epoch: epoch_tag,
                            result,
                        })
                        .await?;
                }
                shared
                    .write(JournalEvent::StepRollbackVerified {
                        step: step.id.clone(),
                        epoch: epoch_tag,
                    })
                    .await?;
                Ok(Undo::Done)
            }
            Err(error) => {
                shared
                    .write(JournalEvent::StepRollbackFailed {
                        step: step.id.clone(),
                        epoch: epoch_tag,
                        error: error.record(),
                    })
                    .await?;
                Ok(Undo::Failed(error.to_string()))
            }
        }
    }

    /// What a run would do, without doing it: reads pre-states (read-only calls) and
    /// lists the mutating calls each step would make. Writes no journal.
    pub async fn dry_run(&self, plan: &Plan) -> Vec<DryRunStep> {
        let mut out = Vec::new();
        for step in &plan.steps {
            let entry = match &step.target {
                Target::Unresolved { reason } => DryRunStep {
                    step: step.id.clone(),
                    calls: Vec::new(),
                    note: Some(format!("would fail: nothing to act on ({reason})")),
                },
                _ => match self.actions.read_pre_state(plan, step).await {
                    Ok(pre) => DryRunStep {
                        step: step.id.clone(),
                        calls: self.actions.describe_apply(plan, step, &pre),
                        note: step.approval.required.then(|| {
                            format!(
                                "needs approval: {}",
                                step.approval.reason.clone().unwrap_or_default()
                            )
                        }),
                    },
                    Err(e) => DryRunStep {
                        step: step.id.clone(),
                        calls: Vec::new(),
                        note: Some(format!("would fail reading its pre-state: {e}")),
                    },
                },
            };
            out.push(entry);
        }
        out
    }
}

/// A step's state in a given epoch.
fn step_state_in(state: &CaseState, epoch: u32, id: &str) -> StepState {
    if epoch == state.epoch {
        return state.step(id).cloned().unwrap_or_default();
    }
    state
        .earlier
        .iter()
        .find(|e| e.epoch == epoch)
        .and_then(|e| e.steps.get(id))
        .cloned()
        .unwrap_or_default()
}

/// Finished statuses (the case rests).
fn is_finished(status: CaseStatus) -> bool {
    !matches!(status, CaseStatus::AwaitingApproval)
}

/// Which steps a call runs: all of them (`run`, `resume`, `approve`), none
/// (the Step Functions `plan` task opens the case), or one (a `step` task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'s> {
    Every,
    Nothing,
    Step(&'s str),
}

impl Scope<'_> {
    fn admits(self, id: &str) -> bool {
        match self {
            Scope::Every => true,
            Scope::Nothing => false,
            Scope::Step(step) => step == id,
        }
    }
}

/// How a call left the case: at rest (a [`Report`]), or with steps to go
/// (a partial call), and why.
enum Driven {
    Rested(Report),
    Running {
        /// The status last journaled (`None`: running), which a partial call
        /// leaves as it is (a stopped case whose later step was asked for).
        status: Option<CaseStatus>,
        no_op: bool,
        message: String,
    },
}

impl Driven {
    /// A whole run never leaves steps to go; should it, the case is said to be
    /// stopped, which `resume` continues.
    fn report(self, case: &CaseId) -> Report {
        match self {
            Driven::Rested(report) => report,
            Driven::Running { message, .. } => {
                Report::new(case, CaseStatus::Stopped, message).with_outcome(Outcome::NeedsHuman)
            }
        }
    }

    fn part(self, case: &CaseId, step: Option<StepState>) -> PartReport {
        match self {
            Driven::Rested(report) => PartReport {
                case_id: report.case_id,
                status: Some(report.status),
                outcome: report.outcome,
                no_op: report.no_op,
                message: report.message,
                step,
            },
            Driven::Running {
                status,
                no_op,
                message,
            } => PartReport {
                case_id: case.clone(),
                status,
                outcome: status.map_or(Outcome::Done, Outcome::of_status),
                no_op,
                message,
                step,
            },
        }
    }
}

/// What a partial call ([`Executor::open_case`], [`Executor::run_step`]) did.
#[derive(Debug, Clone, PartialEq)]
pub struct PartReport {
    pub case_id: CaseId,
    /// Where the case rests; `None` while steps are still to run.
    pub status: Option<CaseStatus>,
    /// What the call means: [`Outcome::Done`] while steps are still to run.
    pub outcome: Outcome,
    /// Nothing was done: the step was done already, or the case at rest.
    pub no_op: bool,
    pub message: String,
    /// The step's journaled state after the call ([`Executor::run_step`] only).
    pub step: Option<StepState>,
}

/// Whether the steps that need `id` may run: it is done, or it failed for
/// good under `on-failure: continue`.
fn finished_for_dependents(plan: &Plan, state: &StepState, id: &str) -> bool {
    state.done()
        || (state.failed_final.is_some()
            && plan
                .step(id)
                .is_some_and(|s| s.on_failure == OnFailure::Continue))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A finding was delivered (`cordon run`, Step Functions).
    Run,
    /// A human asked to continue (`resume`, `approve`).
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RollbackKind {
    /// After a step failed under `on-failure: rollback`: never re-arms credentials.
    Automatic,
    /// A human asked for it: gated undos are asked for.
    Requested,
}

/// One step of a dry run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct DryRunStep {
    pub step: String,
    pub calls: Vec<String>,
    pub note: Option<String>,
}

/// The step's final error as one sentence: what failed, on which resource, what to do.
fn last_error<J: JournalStore>(session: &Session<'_, J>, step: &str) -> String {
    match session
        .state
        .step(step)
        .and_then(|s| s.failed_final.clone())
    {
        Some(e) => format!("{} ({}): {}", e.message, e.resource, e.hint),
        None => "see `cordon status` for the journaled error".to_string(),
    }
}

/// What rolling back one step did.
enum Undo {
    /// Nothing to undo: never prepared, or undone and verified already.
    Nothing,
    Done,
    /// A gated undo (credentials, evidence) kept in place.
    Kept(UndoGate),
    /// The undo or its verification failed (journaled).
    Failed(String),
}

/// What one of the futures a case runs together came to.
enum Finished {
    /// A step, at its position in the plan.
    Step(usize, Result<StepOutcome, ExecError>),
    /// A pre-state read ahead (kept in [`Shared`] when it succeeded).
    Prefetch,
}

/// Why a run stopped starting steps.
enum Halt {
    /// A step failed for good under `stop` or `rollback`.
    Failed(String, OnFailure),
    Refused(String),
    TimedOut(String),
    /// A signal arrived before this step started.
    Interrupted(String),
    /// The pause switch was on before this step started.
    Paused(String, Paused),
    Error(ExecError),
}

/// What [`Executor::run_graph`] got done.
#[derive(Default)]
struct Run {
    /// Steps done, or failed under `continue` (their needs are met either way).
    finished: BTreeSet<String>,
    /// Steps waiting for a human, in the order they asked.
    awaiting: Vec<String>,
    halt: Option<Halt>,
}

enum StepOutcome {
    Done,
    AwaitingApproval,
    TimedOut,
    Refused,
    Failed(OnFailure),
}

fn backoff(step: &PlannedStep, retry_number: u32) -> Duration {
    let base = step
        .retry
        .initial_backoff_ms
        .saturating_mul(1u64 << retry_number.saturating_sub(1).min(16));
    let capped = base.min(step.retry.max_backoff_ms);
    // Jitter from the clock's sub-millisecond noise: enough to de-synchronise
    // concurrent cases without a random-number dependency.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = if capped > 1 {
        nanos % (capped / 2).max(1)
    } else {
        0
    };
    Duration::from_millis(capped / 2 + jitter)
}

async fn retry_action<T, F, Fut>(step: &PlannedStep, mut f: F) -> Result<T, ActionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ActionError>>,
{
    let max_attempts = step.retry.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind.retryable() && attempt < max_attempts => {
                tokio::time::sleep(backoff(step, attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
