//! The executor: runs a plan step by step with a write-ahead journal, resumes
//! from it after a crash, and rolls back from the pre-states it saved.
//!
//! For each step: skip if the journal says it is done; read the pre-state;
//! journal it durably *before* any mutation; apply; verify by reading back;
//! journal the outcome. A step found prepared but not verified after a crash
//! reuses its journaled pre-state (the live resource may already be changed)
//! and re-applies, so `apply` implementations must be idempotent.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span, warn};

use crate::action::Reversibility;
use crate::journal::{
    CaseState, CaseStatus, ErrorRecord, JournalError, JournalEvent, JournalRecord, JournalStore,
};
use crate::plan::{CaseId, Plan, PlannedStep, Target};
use crate::playbook::OnFailure;

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

/// The AWS side of each action, implemented in `cordon-aws` (and by test doubles).
pub trait Actions: Send + Sync {
    /// Reads the pre-state of exactly what the step will change. Must not mutate.
    fn read_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;

    /// Applies the step from its pre-state; idempotent (a re-apply after a crash is safe).
    fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
    ) -> impl Future<Output = Result<Value, ActionError>> + Send;

    /// Reads the resource back and checks the post-condition.
    fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre_state: &Value,
        outcome: &Value,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;

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
}

/// Decides approvals: the CLI prompts, `--yes`/`--approve` pre-approve, the Lambda waits for a task token.
pub trait Approver: Send + Sync {
    fn decide(&self, plan: &Plan, step: &PlannedStep) -> impl Future<Output = Decision> + Send;
}

/// Why a run or rollback stopped short of its goal (beyond the journaled step errors).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "case {case} was opened by a different plan (playbook {journaled}); resume it, or roll it back first"
    )]
    PlanMismatch { case: CaseId, journaled: String },
    #[error("case {case} has no step `{step}`; `cordon status {case}` lists its steps")]
    UnknownStep { case: CaseId, step: String },
    #[error("step `{step}` of case {case} does not need approval")]
    NoApprovalNeeded { case: CaseId, step: String },
    #[error("step `{step}` of case {case} was already decided ({detail})")]
    AlreadyDecided {
        case: CaseId,
        step: String,
        detail: String,
    },
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
    pub message: String,
}

/// Drives plans through an [`Actions`] implementation with a [`JournalStore`].
pub struct Executor<'a, A, J, P> {
    actions: &'a A,
    journal: &'a J,
    approver: &'a P,
    observer: Option<&'a (dyn Fn(&JournalRecord) + Send + Sync)>,
    /// Test hook: abort the process right after writing this record (crash-safety tests).
    crash_after_record: Option<u64>,
}

impl Report {
    fn new(case: &CaseId, status: CaseStatus, message: String) -> Self {
        Self {
            case_id: case.clone(),
            status,
            no_op: false,
            step_failed: false,
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
    observer: Option<&'j (dyn Fn(&JournalRecord) + Send + Sync)>,
    crash_after_record: Option<u64>,
    _lock: J::Lock,
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
        self.state.apply(&record.event);
        self.state.next_seq += 1;
        self.state.last_hash = record.hash();
        if let Some(observer) = self.observer {
            observer(&record);
        }
        if self.crash_after_record == Some(record.seq) {
            // Simulates a kill -9 right after a durable write; no destructors, no flush.
            std::process::abort();
        }
        Ok(())
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

impl<'a, A: Actions, J: JournalStore, P: Approver> Executor<'a, A, J, P> {
    pub fn new(actions: &'a A, journal: &'a J, approver: &'a P) -> Self {
        Self {
            actions,
            journal,
            approver,
            observer: None,
            crash_after_record: None,
        }
    }

    /// Called with every record as it is written (timelines, logs).
    pub fn observe(mut self, observer: &'a (dyn Fn(&JournalRecord) + Send + Sync)) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Test hook: abort the process right after record `seq` is durable.
    pub fn crash_after_record(mut self, seq: Option<u64>) -> Self {
        self.crash_after_record = seq;
        self
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
                observer: self.observer,
                crash_after_record: self.crash_after_record,
                _lock: lock,
            });
        }
        let Some((plan, finding_raw)) = new_case else {
            return Err(JournalError::UnknownCase { case: case.clone() }.into());
        };
        let mut session = Session {
            journal: self.journal,
            case: case.clone(),
            state: CaseState::new(plan.clone()),
            observer: self.observer,
            crash_after_record: self.crash_after_record,
            _lock: lock,
        };
        session
            .write(JournalEvent::CaseOpened {
                plan: Box::new(plan.clone()),
                finding_sha256: finding_digest(finding_raw),
                cordon_version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .await?;
        Ok(session)
    }

    /// Runs `plan` (new case) or continues it (existing case). Re-running a finished case is a no-op.
    pub async fn run(&self, plan: &Plan, finding_raw: &str) -> Result<Report, ExecError> {
        let mut session = self.open(&plan.case_id, Some((plan, finding_raw))).await?;
        if session.state.plan.playbook != plan.playbook || session.state.plan.steps != plan.steps {
            return Err(ExecError::PlanMismatch {
                case: plan.case_id.clone(),
                journaled: session.state.plan.playbook.clone(),
            });
        }
        self.drive(&mut session).await
    }

    /// Continues a case from its journal, with the plan it was opened with.
    pub async fn resume(&self, case: &CaseId) -> Result<Report, ExecError> {
        let mut session = self.open(case, None).await?;
        self.drive(&mut session).await
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
        let current = session.state.step(step).cloned().unwrap_or_default();
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
            Decision::Pending => {}
        }
        self.drive(&mut session).await
    }

    async fn drive(&self, session: &mut Session<'a, J>) -> Result<Report, ExecError> {
        let case = session.case.clone();
        match session.state.status {
            Some(
                status @ (CaseStatus::Completed
                | CaseStatus::RolledBack
                | CaseStatus::RollbackIncomplete),
            ) => {
                return Ok(Report::no_op(
                    &case,
                    status,
                    format!("case {case} is already {status}; nothing to do"),
                ));
            }
            _ if session.state.rollback_started => {
                return Ok(Report::no_op(
                    &case,
                    CaseStatus::Stopped,
                    format!(
                        "case {case} is being rolled back; run `cordon rollback {case}` to finish it"
                    ),
                ));
            }
            _ => {}
        }
        let plan = session.state.plan.clone();
        for step in &plan.steps {
            let span =
                info_span!("step", case_id = %case, playbook = %plan.playbook, step = %step.id);
            let outcome = self.run_step(session, &plan, step).instrument(span).await?;
            match outcome {
                StepOutcome::Done => {}
                StepOutcome::AwaitingApproval => {
                    // A re-run of a case already waiting adds nothing to the audit trail.
                    if session.state.status != Some(CaseStatus::AwaitingApproval) {
                        session
                            .write(JournalEvent::CaseFinished {
                                status: CaseStatus::AwaitingApproval,
                            })
                            .await?;
                    }
                    return Ok(Report::new(
                        &case,
                        CaseStatus::AwaitingApproval,
                        format!(
                            "step `{}` waits for approval: `cordon approve {case} {}` continues the case",
                            step.id, step.id
                        ),
                    ));
                }
                StepOutcome::Refused => {
                    self.mark_not_run(
                        session,
                        &plan,
                        step.index,
                        "an earlier step's approval was refused",
                    )
                    .await?;
                    session
                        .write(JournalEvent::CaseFinished {
                            status: CaseStatus::Stopped,
                        })
                        .await?;
                    return Ok(Report::new(
                        &case,
                        CaseStatus::Stopped,
                        format!(
                            "approval of `{}` was refused; the remaining steps were not run",
                            step.id
                        ),
                    ));
                }
                StepOutcome::Failed(policy) => match policy {
                    OnFailure::Continue => {}
                    OnFailure::Stop => {
                        self.mark_not_run(
                            session,
                            &plan,
                            step.index,
                            &format!("the case stopped after `{}` failed", step.id),
                        )
                        .await?;
                        session
                            .write(JournalEvent::CaseFinished {
                                status: CaseStatus::Stopped,
                            })
                            .await?;
                        return Ok(Report::failed(
                            &case,
                            CaseStatus::Stopped,
                            format!(
                                "step `{}` failed: {}; the case stopped (`cordon resume {case}` retries, `cordon rollback {case}` undoes)",
                                step.id,
                                last_error(session, &step.id)
                            ),
                        ));
                    }
                    OnFailure::Rollback => {
                        let failure = last_error(session, &step.id);
                        self.mark_not_run(
                            session,
                            &plan,
                            step.index,
                            &format!("rolled back after `{}` failed", step.id),
                        )
                        .await?;
                        let report = self
                            .rollback_session(session, &format!("step `{}` failed", step.id))
                            .await?;
                        return Ok(Report {
                            message: format!(
                                "step `{}` failed: {}; {}",
                                step.id, failure, report.message
                            ),
                            step_failed: true,
                            ..report
                        });
                    }
                },
            }
        }
        session
            .write(JournalEvent::CaseFinished {
                status: CaseStatus::Completed,
            })
            .await?;
        Ok(Report::new(
            &case,
            CaseStatus::Completed,
            format!("case {case}: every step done"),
        ))
    }

    async fn mark_not_run(
        &self,
        session: &mut Session<'a, J>,
        plan: &Plan,
        after_index: usize,
        reason: &str,
    ) -> Result<(), ExecError> {
        for later in plan.steps.iter().filter(|s| s.index > after_index) {
            let done = session
                .state
                .step(&later.id)
                .is_some_and(|s| s.done() || s.touched());
            if !done {
                session
                    .write(JournalEvent::StepNotRun {
                        step: later.id.clone(),
                        reason: reason.to_string(),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn run_step(
        &self,
        session: &mut Session<'a, J>,
        plan: &Plan,
        step: &PlannedStep,
    ) -> Result<StepOutcome, ExecError> {
        let current = session.state.step(&step.id).cloned().unwrap_or_default();
        if current.verified || current.skipped.is_some() || current.not_run.is_some() {
            return Ok(StepOutcome::Done);
        }
        if current.failed_final.is_some() {
            // A resumed case retries a step that failed for good last time.
            info!("retrying step that failed before");
        }
        if let Target::Unresolved { reason } = &step.target {
            session
                .write(JournalEvent::StepSkipped {
                    step: step.id.clone(),
                    reason: reason.clone(),
                })
                .await?;
            return Ok(StepOutcome::Done);
        }
        if step.approval.required && current.approved_by.is_none() {
            if let Some(approver) = &current.refused_by {
                warn!(%approver, "approval was refused");
                return Ok(StepOutcome::Refused);
            }
            match self.approver.decide(plan, step).await {
                Decision::Approved { approver } => {
                    session
                        .write(JournalEvent::ApprovalGranted {
                            step: step.id.clone(),
                            approver,
                        })
                        .await?;
                }
                Decision::Refused { approver, reason } => {
                    session
                        .write(JournalEvent::ApprovalRefused {
                            step: step.id.clone(),
                            approver,
                            reason,
                        })
                        .await?;
                    return Ok(StepOutcome::Refused);
                }
                Decision::Pending => {
                    if !current.approval_requested {
                        session
                            .write(JournalEvent::ApprovalRequested {
                                step: step.id.clone(),
                                reason: step.approval.reason.clone().unwrap_or_default(),
                            })
                            .await?;
                    }
                    return Ok(StepOutcome::AwaitingApproval);
                }
            }
        }
        let max_attempts = step.retry.max_attempts.max(1);
        let mut attempt = current.attempts;
        loop {
            attempt += 1;
            match self.attempt(session, plan, step, attempt).await? {
                Ok(()) => return Ok(StepOutcome::Done),
                Err(error) => {
                    let retrying =
                        error.kind.retryable() && attempt - current.attempts < max_attempts;
                    warn!(attempt, retrying, error = %error, "step attempt failed");
                    session
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
                        session
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

    /// One attempt: prepare (unless already journaled), apply (unless already journaled), verify.
    async fn attempt(
        &self,
        session: &mut Session<'a, J>,
        plan: &Plan,
        step: &PlannedStep,
        attempt: u32,
    ) -> Result<Result<(), ActionError>, ExecError> {
        let known = session.state.step(&step.id).cloned().unwrap_or_default();
        let pre_state = match known.pre_state {
            Some(pre) => pre,
            None => match self.actions.read_pre_state(plan, step).await {
                Ok(pre) => {
                    session
                        .write(JournalEvent::StepPrepared {
                            step: step.id.clone(),
                            attempt,
                            pre_state: pre.clone(),
                        })
                        .await?;
                    pre
                }
                Err(e) => return Ok(Err(e)),
            },
        };
        let outcome = match known.outcome {
            Some(outcome) => outcome,
            None => {
                let started = Instant::now();
                match self.actions.apply(plan, step, &pre_state).await {
                    Ok(outcome) => {
                        session
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
                session
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

    /// Undoes every step that was prepared, newest first, and verifies each. Idempotent.
    pub async fn rollback(&self, case: &CaseId, reason: &str) -> Result<Report, ExecError> {
        let mut session = self.open(case, None).await?;
        if session.state.status == Some(CaseStatus::RolledBack) {
            return Ok(Report::no_op(
                case,
                CaseStatus::RolledBack,
                format!("case {case} is already rolled back; nothing to do"),
            ));
        }
        self.rollback_session(&mut session, reason).await
    }

    async fn rollback_session(
        &self,
        session: &mut Session<'a, J>,
        reason: &str,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        let plan = session.state.plan.clone();
        session
            .write(JournalEvent::RollbackStarted {
                reason: reason.to_string(),
            })
            .await?;
        let mut incomplete = Vec::new();
        let mut undone = 0usize;
        for step in plan.steps.iter().rev() {
            let state = session.state.step(&step.id).cloned().unwrap_or_default();
            let Some(pre_state) = state.pre_state.clone() else {
                continue;
            };
            if state.rollback_verified {
                continue;
            }
            let span =
                info_span!("rollback", case_id = %case, playbook = %plan.playbook, step = %step.id);
            let result = async {
                if step.reversibility == Reversibility::Irreversible && state.outcome.is_some() {
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
                            self.actions
                                .undo(&plan, step, &pre_state, state.outcome.as_ref())
                        })
                        .await?,
                    )
                };
                retry_action(step, || self.actions.verify_undone(&plan, step, &pre_state)).await?;
                Ok(result)
            }
            .instrument(span)
            .await;
            match result {
                Ok(result) => {
                    if let Some(result) = result {
                        session
                            .write(JournalEvent::StepRolledBack {
                                step: step.id.clone(),
                                result,
                            })
                            .await?;
                    }
                    session
                        .write(JournalEvent::StepRollbackVerified {
                            step: step.id.clone(),
                        })
                        .await?;
                    undone += 1;
                }
                Err(error) => {
                    session
                        .write(JournalEvent::StepRollbackFailed {
                            step: step.id.clone(),
                            error: error.record(),
                        })
                        .await?;
                    incomplete.push(format!("{}: {error}", step.id));
                }
            }
        }
        let status = if incomplete.is_empty() {
            CaseStatus::RolledBack
        } else {
            CaseStatus::RollbackIncomplete
        };
        session.write(JournalEvent::CaseFinished { status }).await?;
        let message = if incomplete.is_empty() {
            format!("case {case} rolled back: {undone} step(s) undone and verified")
        } else {
            format!(
                "case {case}: rollback incomplete ({}); fix the cause and run `cordon rollback {case}` again",
                incomplete.join("; ")
            )
        };
        Ok(Report::new(&case, status, message))
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
                    note: Some(format!("would be skipped: {reason}")),
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

/// One step of a dry run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

enum StepOutcome {
    Done,
    AwaitingApproval,
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
