//! One driver for an action's lifecycle: pre-state → dry run → apply →
//! verify → undo → verify-undone, as the executor runs it, with each phase's
//! result and the AWS calls it made recorded.
//!
//! Step by step, for tests that look at AWS between phases:
//!
//! ```no_run
//! # async fn example(actions: &cordon_aws::actions::AwsActions, plan: &cordon_core::plan::Plan) {
//! use cordon_tests::Lifecycle;
//! let mut life = Lifecycle::new(actions, plan, "isolate").counting(&actions.clients.calls);
//! let (pre, outcome) = life.forward().await.expect("pre-state, dry run, apply, verify");
//! // … read the ENIs back …
//! life.rollback().await.expect("undo, verify-undone");
//! # }
//! ```
//!
//! Or all at once, for every step of a plan ([`run_every_step`]): what the
//! permission test needs to run each shipped action with a call recorder on.

use std::collections::BTreeMap;
use std::fmt;

use cordon_aws::client::{CallCounter, is_read_only};
use cordon_core::action::ActionKind;
use cordon_core::executor::{ActionError, Actions};
use cordon_core::plan::{Plan, PlannedStep};
use serde_json::Value;

/// One phase of a step's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Read what the step will change.
    PreState,
    /// Describe the calls apply would make (no call).
    DryRun,
    /// Make the change.
    Apply,
    /// Read it back and check it.
    Verify,
    /// Put the resource back at its pre-state.
    Undo,
    /// Read it back and check it equals the pre-state.
    VerifyUndone,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::PreState => "pre-state",
            Phase::DryRun => "dry-run",
            Phase::Apply => "apply",
            Phase::Verify => "verify",
            Phase::Undo => "undo",
            Phase::VerifyUndone => "verify-undone",
        })
    }
}

/// What one phase did.
#[derive(Debug)]
pub struct PhaseRecord {
    /// Which phase.
    pub phase: Phase,
    /// Its value (pre-state, outcome, undo result; the dry run's lines as a
    /// JSON array; `null` for the verifications), or its error.
    pub result: Result<Value, ActionError>,
    /// Requests sent during the phase, per `Service.Operation` (empty when
    /// the driver counts nothing).
    pub calls: BTreeMap<String, u64>,
}

/// Every phase a step went through.
#[derive(Debug)]
pub struct LifecycleReport {
    /// The step's id.
    pub step: String,
    /// Its action.
    pub action: ActionKind,
    /// Its phases, in the order they ran.
    pub phases: Vec<PhaseRecord>,
}

impl LifecycleReport {
    /// The last run of `phase`.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseRecord> {
        self.phases.iter().rev().find(|p| p.phase == phase)
    }

    /// The first phase that failed.
    pub fn failure(&self) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.result.is_err())
    }

    /// Panics, naming the step, phase and error, unless every phase succeeded.
    pub fn assert_ok(&self) {
        if let Some(PhaseRecord {
            phase,
            result: Err(err),
            ..
        }) = self.failure()
        {
            panic!(
                "step `{}` ({}) failed at {phase}: {err} (kind {:?}, resource {})",
                self.step, self.action, err.kind, err.resource
            );
        }
    }

    /// Requests sent over all phases, per `Service.Operation`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        sum_calls(&self.phases)
    }

    /// Everything the handler produced (see [`produced`]).
    pub fn produced(&self) -> String {
        produced(&self.phases)
    }
}

/// Everything phases produced, in every form it could be written (JSON
/// compact and pretty, Debug, each error with its sources): what a secret
/// scan searches.
pub fn produced(phases: &[PhaseRecord]) -> String {
    let mut out = Vec::new();
    for phase in phases {
        match &phase.result {
            Ok(value) => {
                out.push(value.to_string());
                out.push(format!("{value:?}"));
                out.push(format!("{value:#}"));
            }
            Err(err) => {
                out.push(err.to_string());
                out.push(format!("{err:?}"));
                let mut source = std::error::Error::source(err);
                while let Some(e) = source {
                    out.push(format!("{e} {e:?}"));
                    source = e.source();
                }
            }
        }
    }
    out.join("\n")
}

/// Drives one step of a plan through its lifecycle, phase by phase.
///
/// The driver keeps the pre-state and the last successful outcome, so each
/// phase gets what the executor would give it; tests that simulate a crash
/// call [`Lifecycle::undo_without_outcome`] or set a journaled pre-state
/// with [`Lifecycle::set_pre_state`].
#[derive(Debug)]
pub struct Lifecycle<'a, A> {
    actions: &'a A,
    plan: &'a Plan,
    step: &'a PlannedStep,
    calls: Option<CallCounter>,
    pre_state: Option<Value>,
    outcome: Option<Value>,
    phases: Vec<PhaseRecord>,
}

impl<'a, A: Actions> Lifecycle<'a, A> {
    /// The lifecycle of step `step_id` of `plan`. Panics if the plan has no
    /// such step (the test's own plan is wrong).
    pub fn new(actions: &'a A, plan: &'a Plan, step_id: &str) -> Self {
        let step = plan
            .step(step_id)
            .unwrap_or_else(|| panic!("plan {} has no step `{step_id}`", plan.playbook));
        Self::for_step(actions, plan, step)
    }

    /// The lifecycle of one planned step.
    pub fn for_step(actions: &'a A, plan: &'a Plan, step: &'a PlannedStep) -> Self {
        Self {
            actions,
            plan,
            step,
            calls: None,
            pre_state: None,
            outcome: None,
            phases: Vec::new(),
        }
    }

    /// Records the requests each phase sends, from this counter (reset at
    /// the start of every phase).
    pub fn counting(mut self, calls: &CallCounter) -> Self {
        self.calls = Some(calls.clone());
        self
    }

    /// The step being driven.
    pub fn step(&self) -> &'a PlannedStep {
        self.step
    }

    /// The pre-state the next phases use. Panics before one was read or set.
    pub fn pre(&self) -> &Value {
        self.pre_state.as_ref().unwrap_or_else(|| {
            panic!(
                "step `{}`: no pre-state yet; call pre_state() or set_pre_state() first",
                self.step.id
            )
        })
    }

    /// The outcome of the last successful apply.
    pub fn outcome(&self) -> Option<&Value> {
        self.outcome.as_ref()
    }

    /// Every phase so far.
    pub fn phases(&self) -> &[PhaseRecord] {
        &self.phases
    }

    /// Everything the handler produced so far (see [`produced`]).
    pub fn produced(&self) -> String {
        produced(&self.phases)
    }

    /// The requests every phase so far sent, per `Service.Operation`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        sum_calls(&self.phases)
    }

    /// The requests the last phase sent.
    pub fn last_calls(&self) -> &BTreeMap<String, u64> {
        static NONE: BTreeMap<String, u64> = BTreeMap::new();
        self.phases.last().map_or(&NONE, |p| &p.calls)
    }

    /// The mutating requests the last phase sent.
    pub fn last_mutating(&self) -> BTreeMap<String, u64> {
        mutating(self.last_calls())
    }

    fn begin(&self) {
        if let Some(calls) = &self.calls {
            calls.reset();
        }
    }

    fn end<T>(
        &mut self,
        phase: Phase,
        result: Result<Value, ActionError>,
        keep: impl FnOnce(&Value) -> T,
    ) -> Result<T, ActionError> {
        let calls = self
            .calls
            .as_ref()
            .map(CallCounter::snapshot)
            .unwrap_or_default();
        if self.calls.is_some() {
            eprintln!("step `{}` {phase}: {calls:?}", self.step.id);
        }
        let kept = result.as_ref().map(keep).map_err(clone_error);
        self.phases.push(PhaseRecord {
            phase,
            result,
            calls,
        });
        kept
    }

    /// Reads the pre-state (again, if there was one: the step's resources
    /// may have changed since).
    pub async fn pre_state(&mut self) -> Result<Value, ActionError> {
        self.begin();
        let result = self.actions.read_pre_state(self.plan, self.step).await;
        if let Ok(pre) = &result {
            self.pre_state = Some(pre.clone());
        }
        self.end(Phase::PreState, result, Value::clone)
    }

    /// Uses `pre` as the pre-state, as if read from the journal.
    pub fn set_pre_state(&mut self, pre: Value) {
        self.pre_state = Some(pre);
    }

    /// The calls apply would make from the pre-state (a dry run).
    pub fn dry_run(&mut self) -> Vec<String> {
        self.begin();
        let lines = self
            .actions
            .describe_apply(self.plan, self.step, self.pre());
        let value = Value::from(lines.clone());
        // A dry run cannot fail.
        let _ = self.end(Phase::DryRun, Ok(value), |_| ());
        lines
    }

    /// Applies the step from the pre-state; a success becomes the outcome
    /// later phases see.
    pub async fn apply(&mut self) -> Result<Value, ActionError> {
        self.begin();
        let result = self.actions.apply(self.plan, self.step, self.pre()).await;
        if let Ok(outcome) = &result {
            self.outcome = Some(outcome.clone());
        }
        self.end(Phase::Apply, result, Value::clone)
    }

    /// Verifies the last outcome. Panics if nothing was applied.
    pub async fn verify(&mut self) -> Result<(), ActionError> {
        let outcome = self
            .outcome
            .clone()
            .unwrap_or_else(|| panic!("step `{}`: verify before a successful apply", self.step.id));
        self.verify_outcome(&outcome).await
    }

    /// Verifies a given outcome (e.g. one a re-apply returned).
    pub async fn verify_outcome(&mut self, outcome: &Value) -> Result<(), ActionError> {
        self.begin();
        let result = self
            .actions
            .verify(self.plan, self.step, self.pre(), outcome)
            .await
            .map(|()| Value::Null);
        self.end(Phase::Verify, result, |_| ())
    }

    /// Undoes with the last outcome (none if nothing was applied), as a
    /// rollback after the outcome was journaled does.
    pub async fn undo(&mut self) -> Result<Value, ActionError> {
        let outcome = self.outcome.clone();
        self.undo_with(outcome.as_ref()).await
    }

    /// Undoes with no outcome: a crash between preparing and journaling
    /// the outcome (whether or not apply ran).
    pub async fn undo_without_outcome(&mut self) -> Result<Value, ActionError> {
        self.undo_with(None).await
    }

    /// Undoes with a given outcome (e.g. the first of two applies, as
    /// journaled before a crash).
    pub async fn undo_with(&mut self, outcome: Option<&Value>) -> Result<Value, ActionError> {
        self.begin();
        let result = self
            .actions
            .undo(self.plan, self.step, self.pre(), outcome)
            .await;
        self.end(Phase::Undo, result, Value::clone)
    }

    /// Checks the resource is back at the pre-state.
    pub async fn verify_undone(&mut self) -> Result<(), ActionError> {
        self.begin();
        let result = self
            .actions
            .verify_undone(self.plan, self.step, self.pre())
            .await
            .map(|()| Value::Null);
        self.end(Phase::VerifyUndone, result, |_| ())
    }

    /// Pre-state, dry run, apply, verify; stops at the first failure.
    /// Returns (pre-state, outcome).
    pub async fn forward(&mut self) -> Result<(Value, Value), ActionError> {
        let pre = self.pre_state().await?;
        self.dry_run();
        let outcome = self.apply().await?;
        self.verify().await?;
        Ok((pre, outcome))
    }

    /// Undo (with the last outcome), then verify-undone. Returns what undo said.
    pub async fn rollback(&mut self) -> Result<Value, ActionError> {
        let undone = self.undo().await?;
        self.verify_undone().await?;
        Ok(undone)
    }

    /// Every phase in order, stopping at the first failure.
    pub async fn run(mut self) -> LifecycleReport {
        if self.forward().await.is_ok() {
            let _ = self.rollback().await;
        }
        self.report()
    }

    /// What happened so far.
    pub fn report(self) -> LifecycleReport {
        LifecycleReport {
            step: self.step.id.clone(),
            action: self.step.kind(),
            phases: self.phases,
        }
    }
}

fn sum_calls(phases: &[PhaseRecord]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for phase in phases {
        for (op, n) in &phase.calls {
            *all.entry(op.clone()).or_insert(0) += n;
        }
    }
    all
}

/// An [`ActionError`] is not `Clone` (its source is boxed): the copy a phase
/// returns keeps everything but the source, which stays in the record.
fn clone_error(err: &ActionError) -> ActionError {
    ActionError::new(err.kind, &err.resource, &err.message, &err.hint)
}

/// Runs every step of `plan`, in plan order, through its whole lifecycle
/// (each rolled back before the next starts), counting calls with `calls`.
pub async fn run_every_step<A: Actions>(
    actions: &A,
    plan: &Plan,
    calls: Option<&CallCounter>,
) -> Vec<LifecycleReport> {
    let mut reports = Vec::new();
    for step in &plan.steps {
        let mut life = Lifecycle::for_step(actions, plan, step);
        if let Some(calls) = calls {
            life = life.counting(calls);
        }
        reports.push(life.run().await);
    }
    reports
}

/// The mutating entries of a per-operation call count.
pub fn mutating(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls
        .iter()
        .filter(|(key, _)| !is_read_only(key.split_once('.').map_or(key.as_str(), |(_, op)| op)))
        .map(|(key, n)| (key.clone(), *n))
        .collect()
}
