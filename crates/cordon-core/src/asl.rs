//! Amazon States Language (ASL) state machines generated from a playbook
//! (`cordon export-asl`): the Step Functions front door runs the same step
//! graph as the CLI, one Lambda invocation per step, with the decisions the
//! executor takes in-process (retry, on-failure policy, approvals, rollback)
//! expressed as ASL states so that Step Functions' own history shows them.
//!
//! The shape, and the contract with the Lambda task it calls
//! (docs/step-functions.md):
//! - `Plan` (mode `plan`) opens the case from the execution input (the
//!   EventBridge event), pinned to this playbook and playbook set. Its result
//!   *replaces* the input: the finding is never carried past `Plan`, so every
//!   later payload is a few hundred bytes, far from Step Functions' 256 KB
//!   limit, and each state's output keeps the case id.
//! - The step graph by level ([`crate::plan::graph_levels`], what `cordon
//!   plan` shows): a level of one step is that step's states; a level of
//!   several is a `Parallel` state with one branch per step. ASL's `Parallel`
//!   is fork-join, and a step graph is not always series-parallel, so a step
//!   waits for its whole previous level rather than only for its needs: every
//!   need is still met, at the price of some overlap.
//! - Each step is a Task (mode `step`) whose `Retry` retries the transient
//!   errors (`Cordon.Throttled`/`Cordon.Timeout` with the step's own retry
//!   policy, `Cordon.InProgress` while another invocation holds the case's
//!   lease, and Lambda's own service errors), all with exponential backoff
//!   and full jitter; its `Catch` sends any other error to the rollback
//!   branch or the stop state per the step's on-failure policy; a Choice on
//!   `$.next` (the Lambda's verdict) routes the result the same way.
//! - An approval-gated step is preceded by `Approve STEP`, a
//!   `.waitForTaskToken` Task (mode `decide`) bounded by the approval
//!   timeout: SendTaskSuccess goes on to the step (which re-checks the
//!   journaled approver), `Cordon.ApprovalRefused` stops, `States.Timeout`
//!   journals the timeout (mode `decide`, `timed-out`) and ends
//!   `ApprovalTimedOut`.
//! - Inside a `Parallel` branch no state may jump out, so a branch ends with
//!   a small verdict (`next`: continue, rollback, stop or
//!   approval-timed-out); after the join, a Pass state reduces the verdicts
//!   of all branches (`$[*].next`) to booleans with `States.ArrayContains`
//!   (array elements are never addressed one by one: the emulator's JSONPath
//!   reads `$[0].x` as a one-element array), and a Choice routes on them:
//!   rollback first (a failure whose policy is rollback undoes
//!   the case whatever the others did), then approval timed out, then stop.
//!   The other branches' steps run to their end first, as the executor lets
//!   running steps finish.
//! - End states tell the outcomes apart: `Contained` (Succeed), and Fail
//!   states with stable error names `Cordon.Stopped`, `Cordon.RolledBack`,
//!   `Cordon.RollbackIncomplete`, `Cordon.ApprovalTimedOut`.
//!
//! Key order is the insertion order (serde_json's `preserve_order`), states
//! in graph order, so the output is stable byte for byte (golden files).

use serde_json::{Map, Value, json};

use crate::plan::{approval_need, graph_levels};
use crate::playbook::{OnFailure, Playbook, RetryPolicy, Step};

/// The default `--lambda-arn`: a CloudFormation `DefinitionSubstitutions`
/// placeholder, so a template embeds the exported definition as is and
/// names its function in one place.
pub const DEFAULT_LAMBDA_ARN: &str = "${CordonFunctionArn}";
/// The default approval wait: an hour for a responder to answer the SNS
/// message before the case stops with `approval-timed-out`.
pub const DEFAULT_APPROVAL_TIMEOUT_SECONDS: u64 = 3_600;
/// A standard workflow runs at most a year; a longer wait could never end.
pub const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 31_536_000;
/// Step Functions refuses longer state names.
pub const MAX_STATE_NAME_CHARS: usize = 80;

/// Resource of a Task answered by the Lambda at once.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
/// Resource of a Task that waits for SendTaskSuccess/SendTaskFailure.
pub const LAMBDA_INVOKE_WAIT: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";

/// The stable error names of the contract (thrown by the Lambda, or ending
/// an execution), matched by `Retry`/`Catch` and by whoever reads a failed
/// execution.
pub mod errors {
    /// AWS throttled the step's calls beyond its own retries.
    pub const THROTTLED: &str = "Cordon.Throttled";
    /// A call did not answer in time.
    pub const TIMEOUT: &str = "Cordon.Timeout";
    /// Another invocation holds the case's lease.
    pub const IN_PROGRESS: &str = "Cordon.InProgress";
    /// SendTaskFailure of a refused approval (`cordon approve --refuse`).
    pub const APPROVAL_REFUSED: &str = "Cordon.ApprovalRefused";
    /// End state: the case stopped with what was done in place.
    pub const STOPPED: &str = "Cordon.Stopped";
    /// End state: the case was rolled back.
    pub const ROLLED_BACK: &str = "Cordon.RolledBack";
    /// End state: the rollback could not restore everything.
    pub const ROLLBACK_INCOMPLETE: &str = "Cordon.RollbackIncomplete";
    /// End state: nobody answered an approval in time.
    pub const APPROVAL_TIMED_OUT: &str = "Cordon.ApprovalTimedOut";
    /// Step Functions' own name for a Task that outlived `TimeoutSeconds`.
    pub const STATES_TIMEOUT: &str = "States.Timeout";
    /// Step Functions' catch-all.
    pub const STATES_ALL: &str = "States.ALL";
}

/// Lambda's own transient failures, which AWS recommends retrying on every
/// Lambda Task; safe here because every mode of the task is idempotent.
const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// Names of the fixed states.
pub mod states {
    pub const PLAN: &str = "Plan";
    pub const ROLLBACK: &str = "Rollback";
    pub const AFTER_ROLLBACK: &str = "After rollback";
    pub const CONTAINED: &str = "Contained";
    pub const STOPPED: &str = "Stopped";
    pub const ROLLED_BACK: &str = "RolledBack";
    pub const ROLLBACK_INCOMPLETE: &str = "RollbackIncomplete";
    pub const APPROVAL_TIMED_OUT: &str = "ApprovalTimedOut";
}

/// The `next` verdicts a step's result (or a branch's end) carries.
mod next {
    pub const CONTINUE: &str = "continue";
    pub const ROLLBACK: &str = "rollback";
    pub const STOP: &str = "stop";
    /// Only at the end of a `Parallel` branch whose approval timed out.
    pub const APPROVAL_TIMED_OUT: &str = "approval-timed-out";
}

/// What the definition is generated for, besides the playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AslOptions {
    /// The task's function: an ARN, or a `${Name}` substitution.
    pub lambda_arn: String,
    /// `cordon_core::validate::set_digest` of the set the playbook is from:
    /// the Lambda refuses to act on a state machine made from another set.
    pub playbook_set: String,
    /// `TimeoutSeconds` of every `Approve STEP` state.
    pub approval_timeout_seconds: u64,
}

/// Why no definition could be generated.
#[derive(Debug, thiserror::Error)]
pub enum AslError {
    #[error(
        "--lambda-arn {0:?} is neither a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME) nor a CloudFormation substitution such as ${{CordonFunctionArn}}"
    )]
    LambdaArn(String),
    #[error(
        "an approval timeout of {0} s is out of range: Step Functions waits 1 s to a year ({MAX_APPROVAL_TIMEOUT_SECONDS} s)"
    )]
    ApprovalTimeout(u64),
    #[error(
        "playbook `{playbook}`: the state name {name:?} is longer than Step Functions' {MAX_STATE_NAME_CHARS} characters; shorten the id of step `{step}`"
    )]
    NameTooLong {
        playbook: String,
        step: String,
        name: String,
    },
    #[error(
        "playbook `{playbook}`: step `{step}` can never start (its needs form a cycle or name no step); `cordon validate` says why"
    )]
    Unreachable { playbook: String, step: String },
    #[error("playbook `{playbook}`: the playbook set hash {hash:?} is not a hex SHA-256")]
    PlaybookSet { playbook: String, hash: String },
}

/// Whether `arn` names a Lambda function (optionally with a version or
/// alias), or is a CloudFormation `${Name}` substitution.
pub fn is_lambda_target(arn: &str) -> bool {
    if let Some(name) = arn.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.');
    }
    let parts: Vec<&str> = arn.split(':').collect();
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    matches!(parts.len(), 7 | 8)
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && word(parts[1])
        && parts[2] == "lambda"
        && word(parts[3])
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5] == "function"
        && word(parts[6])
        && parts[6].len() <= 64
        && parts.get(7).is_none_or(|q| word(q))
}

/// The state machine for `playbook` (validated, from the set hashed in
/// `options.playbook_set`).
pub fn state_machine(playbook: &Playbook, options: &AslOptions) -> Result<Value, AslError> {
    if !is_lambda_target(&options.lambda_arn) {
        return Err(AslError::LambdaArn(options.lambda_arn.clone()));
    }
    if !(1..=MAX_APPROVAL_TIMEOUT_SECONDS).contains(&options.approval_timeout_seconds) {
        return Err(AslError::ApprovalTimeout(options.approval_timeout_seconds));
    }
    if options.playbook_set.len() != 64
        || !options.playbook_set.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(AslError::PlaybookSet {
            playbook: playbook.name.clone(),
            hash: options.playbook_set.clone(),
        });
    }
    let levels = graph_levels(&playbook.steps, |s| s.id.as_str(), |s| playbook.needs(s));
    if let Some(lost) = playbook
        .steps
        .iter()
        .find(|s| !levels.iter().flatten().any(|l| l.id == s.id))
    {
        return Err(AslError::Unreachable {
            playbook: playbook.name.clone(),
            step: lost.id.clone(),
        });
    }
    let generator = Generator { playbook, options };
    generator.check_names()?;
    let mut states = Map::new();
    let first = levels
        .first()
        .map(|level| generator.level_entry(0, level))
        .unwrap_or_else(|| states::CONTAINED.to_string());
    states.insert(states::PLAN.to_string(), generator.plan(&first));
    for (i, level) in levels.iter().enumerate() {
        let after = levels
            .get(i + 1)
            .map(|next| generator.level_entry(i + 1, next))
            .unwrap_or_else(|| states::CONTAINED.to_string());
        match level.as_slice() {
            [step] => generator.sequential_step(&mut states, step, &after),
            steps => generator.parallel_level(&mut states, i, steps, &after),
        }
    }
    generator.end_states(&mut states);
    Ok(json!({
        "Comment": format!(
            "cordon playbook {} (playbook set {}), generated by `cordon export-asl`: regenerate rather than edit",
            playbook.name, options.playbook_set
        ),
        "StartAt": states::PLAN,
        "States": states,
    }))
}

struct Generator<'a> {
    playbook: &'a Playbook,
    options: &'a AslOptions,
}

fn approve_name(step: &Step) -> String {
    format!("Approve {}", step.id)
}
fn run_name(step: &Step) -> String {
    format!("Run {}", step.id)
}
fn after_name(step: &Step) -> String {
    format!("After {}", step.id)
}
fn record_timeout_name(step: &Step) -> String {
    format!("Record approval timeout {}", step.id)
}
fn verdict_name(step: &Step, verdict: &str) -> String {
    format!("{} {verdict}", step.id)
}
fn level_name(index: usize) -> String {
    format!("Level {}", index + 1)
}
fn verdicts_name(index: usize) -> String {
    format!("Verdicts of level {}", index + 1)
}
fn after_level_name(index: usize) -> String {
    format!("After level {}", index + 1)
}

/// `$['key']`: bracket notation, because cordon's keys are kebab-case and a
/// `-` in dot notation is not read the same by every JSONPath reader.
fn path(key: &str) -> String {
    format!("$['{key}']")
}
fn payload_path(key: &str) -> String {
    format!("$.Payload['{key}']")
}

impl Generator<'_> {
    fn check_names(&self) -> Result<(), AslError> {
        for step in &self.playbook.steps {
            let longest = record_timeout_name(step);
            if longest.chars().count() > MAX_STATE_NAME_CHARS {
                return Err(AslError::NameTooLong {
                    playbook: self.playbook.name.clone(),
                    step: step.id.clone(),
                    name: longest,
                });
            }
        }
        Ok(())
    }

    fn gated(step: &Step) -> bool {
        approval_need(step).required
    }

    fn on_failure(&self, step: &Step) -> OnFailure {
        step.on_failure.unwrap_or(self.playbook.on_failure)
    }

    /// The first state of a level.
    fn level_entry(&self, index: usize, level: &[&Step]) -> String {
        match level {
            [step] if Self::gated(step) => approve_name(step),
            [step] => run_name(step),
            _ => level_name(index),
        }
    }

    /// Type, Resource, Parameters of a Task invoking the cordon Lambda.
    fn task(&self, resource: &str, comment: Option<String>, payload: Value) -> Map<String, Value> {
        let mut task = Map::new();
        task.insert("Type".into(), json!("Task"));
        if let Some(comment) = comment {
            task.insert("Comment".into(), json!(comment));
        }
        task.insert("Resource".into(), json!(resource));
        task.insert(
            "Parameters".into(),
            json!({ "FunctionName": self.options.lambda_arn, "Payload": payload }),
        );
        task
    }

    fn plan(&self, next: &str) -> Value {
        let mut task = self.task(
            LAMBDA_INVOKE,
            Some("Opens the case; the finding stops here. No Catch: a refused finding or playbook set fails the execution with the task's error name.".into()),
            json!({
                "mode": "plan",
                "finding.$": "$",
                "playbook": self.playbook.name,
                "playbook-set": self.options.playbook_set,
            }),
        );
        task.insert(
            "ResultSelector".into(),
            json!({
                "case-id.$": payload_path("case-id"),
                "status.$": payload_path("status"),
                "outcome.$": payload_path("outcome"),
            }),
        );
        task.insert("ResultPath".into(), json!("$"));
        task.insert("Retry".into(), retry(&RetryPolicy::default()));
        task.insert("Next".into(), json!(next));
        Value::Object(task)
    }

    /// The Task running one step; its output is the step's verdict.
    fn run(&self, step: &Step, on_error: &str, next: Value) -> Value {
        let mut task = self.task(
            LAMBDA_INVOKE,
            (!step.description.is_empty()).then(|| step.description.clone()),
            json!({
                "mode": "step",
                "case-id.$": path("case-id"),
                "step": step.id,
                "playbook-set": self.options.playbook_set,
            }),
        );
        task.insert(
            "ResultSelector".into(),
            json!({
                "case-id.$": payload_path("case-id"),
                "step.$": payload_path("step"),
                "step-status.$": payload_path("step-status"),
                "status.$": payload_path("status"),
                "outcome.$": payload_path("outcome"),
                "next.$": payload_path("next"),
            }),
        );
        task.insert("ResultPath".into(), json!("$"));
        task.insert("Retry".into(), retry(&step.retry));
        task.insert(
            "Catch".into(),
            json!([{ "ErrorEquals": [errors::STATES_ALL], "ResultPath": "$.error", "Next": on_error }]),
        );
        if let Value::Object(next) = next {
            task.extend(next);
        }
        Value::Object(task)
    }

    /// The wait for a decision before a gated step. The approval
    /// (`{"decision", "approver"}` from SendTaskSuccess) is kept under
    /// `$.approval` for the history; the step itself re-checks the journal.
    fn approve(&self, step: &Step, refused: &str, timed_out: &str, next: &str) -> Value {
        let mut task = self.task(
            LAMBDA_INVOKE_WAIT,
            Some(format!(
                "Waits for `cordon approve CASE {} --task-token TOKEN` (SendTaskSuccess) or its refusal (SendTaskFailure {}).",
                step.id,
                errors::APPROVAL_REFUSED
            )),
            json!({
                "mode": "decide",
                "case-id.$": path("case-id"),
                "step": step.id,
                "task-token.$": "$$.Task.Token",
            }),
        );
        task.insert(
            "TimeoutSeconds".into(),
            json!(self.options.approval_timeout_seconds),
        );
        task.insert("ResultPath".into(), json!("$.approval"));
        task.insert("Retry".into(), retry(&RetryPolicy::default()));
        task.insert(
            "Catch".into(),
            json!([
                { "ErrorEquals": [errors::STATES_TIMEOUT], "ResultPath": "$.error", "Next": timed_out },
                { "ErrorEquals": [errors::APPROVAL_REFUSED], "ResultPath": "$.error", "Next": refused },
                { "ErrorEquals": [errors::STATES_ALL], "ResultPath": "$.error", "Next": refused },
            ]),
        );
        task.insert("Next".into(), json!(next));
        Value::Object(task)
    }

    /// Journals that nobody answered (the case stops `approval-timed-out`).
    /// A failure to journal it still ends the same way: the wait is over.
    fn record_timeout(&self, step: &Step, next: &str) -> Value {
        let mut task = self.task(
            LAMBDA_INVOKE,
            None,
            json!({
                "mode": "decide",
                "case-id.$": path("case-id"),
                "step": step.id,
                "timed-out": true,
            }),
        );
        task.insert("ResultPath".into(), Value::Null);
        task.insert("Retry".into(), retry(&RetryPolicy::default()));
        task.insert(
            "Catch".into(),
            json!([{ "ErrorEquals": [errors::STATES_ALL], "ResultPath": "$.error", "Next": next }]),
        );
        task.insert("Next".into(), json!(next));
        Value::Object(task)
    }

    /// Where a thrown error of `step` goes. A thrown error is not a step
    /// failure the journal knows of, so under `on-failure: continue` it
    /// stops rather than going on past a step neither done nor failed.
    fn error_route(&self, step: &Step) -> &'static str {
        match self.on_failure(step) {
            OnFailure::Rollback => next::ROLLBACK,
            OnFailure::Stop | OnFailure::Continue => next::STOP,
        }
    }

    /// A level of one step: the states route straight to the end states.
    fn sequential_step(&self, states: &mut Map<String, Value>, step: &Step, after: &str) {
        let on_error = match self.error_route(step) {
            next::ROLLBACK => states::ROLLBACK,
            _ => states::STOPPED,
        };
        if Self::gated(step) {
            states.insert(
                approve_name(step),
                self.approve(
                    step,
                    states::STOPPED,
                    &record_timeout_name(step),
                    &run_name(step),
                ),
            );
            states.insert(
                record_timeout_name(step),
                self.record_timeout(step, states::APPROVAL_TIMED_OUT),
            );
        }
        states.insert(
            run_name(step),
            self.run(step, on_error, json!({ "Next": after_name(step) })),
        );
        states.insert(
            after_name(step),
            json!({
                "Type": "Choice",
                "Choices": [
                    { "Variable": path("next"), "StringEquals": next::CONTINUE, "Next": after },
                    { "Variable": path("next"), "StringEquals": next::ROLLBACK, "Next": states::ROLLBACK },
                ],
                "Default": states::STOPPED,
            }),
        );
    }

    /// A level of several steps: one `Parallel` branch per step, each ending
    /// with its verdict, then a Choice over every branch's verdict.
    fn parallel_level(
        &self,
        states: &mut Map<String, Value>,
        index: usize,
        steps: &[&Step],
        after: &str,
    ) {
        let branches: Vec<Value> = steps.iter().map(|step| self.branch(step)).collect();
        states.insert(
            level_name(index),
            json!({
                "Type": "Parallel",
                "Comment": format!(
                    "{} together: they need only steps of earlier levels.",
                    steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
                "Branches": branches,
                "ResultSelector": { "verdicts.$": "$[*].next" },
                "ResultPath": "$.level",
                "Catch": [{ "ErrorEquals": [errors::STATES_ALL], "ResultPath": "$.error", "Next": states::STOPPED }],
                "Next": verdicts_name(index),
            }),
        );
        let gated = steps.iter().any(|s| Self::gated(s));
        let contains =
            |verdict: &str| format!("States.ArrayContains($.level.verdicts, '{verdict}')");
        let mut found = Map::new();
        found.insert("case-id.$".into(), json!(path("case-id")));
        found.insert("rollback.$".into(), json!(contains(next::ROLLBACK)));
        if gated {
            found.insert(
                "approval-timed-out.$".into(),
                json!(contains(next::APPROVAL_TIMED_OUT)),
            );
        }
        found.insert("stop.$".into(), json!(contains(next::STOP)));
        states.insert(
            verdicts_name(index),
            json!({
                "Type": "Pass",
                "Parameters": found,
                "Next": after_level_name(index),
            }),
        );
        let mut choices = vec![
            json!({ "Variable": path("rollback"), "BooleanEquals": true, "Next": states::ROLLBACK }),
        ];
        if gated {
            choices.push(json!({ "Variable": path("approval-timed-out"), "BooleanEquals": true, "Next": states::APPROVAL_TIMED_OUT }));
        }
        choices.push(
            json!({ "Variable": path("stop"), "BooleanEquals": true, "Next": states::STOPPED }),
        );
        states.insert(
            after_level_name(index),
            json!({
                "Type": "Choice",
                "Choices": choices,
                "Default": after,
            }),
        );
    }

    /// One step as a `Parallel` branch: its output is always a verdict
    /// object with `case-id` and `next`.
    fn branch(&self, step: &Step) -> Value {
        let mut states = Map::new();
        let verdict = |name: &str| -> Value {
            json!({
                "Type": "Pass",
                "Parameters": { "case-id.$": path("case-id"), "step": step.id, "next": name },
                "End": true,
            })
        };
        let failed = verdict_name(step, "failed");
        let run = self.run(step, &failed, json!({ "End": true }));
        let start = if Self::gated(step) {
            let refused = verdict_name(step, "refused");
            let timed_out = verdict_name(step, "approval timed out");
            states.insert(
                approve_name(step),
                self.approve(step, &refused, &record_timeout_name(step), &run_name(step)),
            );
            states.insert(run_name(step), run);
            states.insert(
                record_timeout_name(step),
                self.record_timeout(step, &timed_out),
            );
            states.insert(refused, verdict(next::STOP));
            states.insert(timed_out, verdict(next::APPROVAL_TIMED_OUT));
            approve_name(step)
        } else {
            states.insert(run_name(step), run);
            run_name(step)
        };
        states.insert(failed, verdict(self.error_route(step)));
        json!({ "StartAt": start, "States": states })
    }

    fn end_states(&self, states: &mut Map<String, Value>) {
        let mut rollback = self.task(
            LAMBDA_INVOKE,
            None,
            json!({
                "mode": "rollback",
                "case-id.$": path("case-id"),
                "reason": "a step failed under on-failure: rollback",
            }),
        );
        rollback.insert(
            "ResultSelector".into(),
            json!({
                "case-id.$": payload_path("case-id"),
                "status.$": payload_path("status"),
                "outcome.$": payload_path("outcome"),
            }),
        );
        rollback.insert("ResultPath".into(), json!("$"));
        rollback.insert("Retry".into(), retry(&RetryPolicy::default()));
        rollback.insert(
            "Catch".into(),
            json!([{ "ErrorEquals": [errors::STATES_ALL], "ResultPath": "$.error", "Next": states::ROLLBACK_INCOMPLETE }]),
        );
        rollback.insert("Next".into(), json!(states::AFTER_ROLLBACK));
        states.insert(states::ROLLBACK.into(), Value::Object(rollback));
        states.insert(
            states::AFTER_ROLLBACK.into(),
            json!({
                "Type": "Choice",
                "Choices": [
                    { "Variable": path("status"), "StringEquals": "rolled-back", "Next": states::ROLLED_BACK },
                    { "Variable": path("status"), "StringEquals": "rolled-back-except-credentials", "Next": states::ROLLED_BACK },
                ],
                "Default": states::ROLLBACK_INCOMPLETE,
            }),
        );
        states.insert(
            states::CONTAINED.into(),
            json!({ "Type": "Succeed", "Comment": "Every step ran; `cordon status CASE` shows each." }),
        );
        let fail =
            |error: &str, cause: &str| json!({ "Type": "Fail", "Error": error, "Cause": cause });
        states.insert(
            states::STOPPED.into(),
            fail(
                errors::STOPPED,
                "The case stopped with what was done in place; `cordon status CASE` says why, then resume or roll back.",
            ),
        );
        states.insert(
            states::ROLLED_BACK.into(),
            fail(
                errors::ROLLED_BACK,
                "A step failed and the case was rolled back (credential undos stay in place until approved).",
            ),
        );
        states.insert(
            states::ROLLBACK_INCOMPLETE.into(),
            fail(
                errors::ROLLBACK_INCOMPLETE,
                "The rollback could not restore everything; `cordon status CASE` lists what is left.",
            ),
        );
        if !self.playbook.steps.iter().any(Self::gated) {
            return;
        }
        states.insert(
            states::APPROVAL_TIMED_OUT.into(),
            fail(
                errors::APPROVAL_TIMED_OUT,
                "Nobody answered an approval in time; the case stopped (resume or roll back).",
            ),
        );
    }
}

/// Whole seconds, at least 1 (ASL intervals are integers).
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// The retriers of a Task: the step's own policy for throttling and
/// timeouts (`max-attempts` counts the first attempt, ASL's `MaxAttempts`
/// does not), a patient one while another invocation holds the lease, and
/// Lambda's service errors; exponential backoff with full jitter, so the
/// retries of many executions spread out.
fn retry(policy: &RetryPolicy) -> Value {
    let interval = seconds(policy.initial_backoff_ms);
    json!([
        {
            "ErrorEquals": [errors::THROTTLED, errors::TIMEOUT],
            "IntervalSeconds": interval,
            "MaxAttempts": policy.max_attempts.saturating_sub(1),
            "BackoffRate": 2.0,
            "MaxDelaySeconds": seconds(policy.max_backoff_ms).max(interval),
            "JitterStrategy": "FULL",
        },
        {
            "ErrorEquals": [errors::IN_PROGRESS],
            "IntervalSeconds": 2,
            "MaxAttempts": 8,
            "BackoffRate": 2.0,
            "MaxDelaySeconds": 60,
            "JitterStrategy": "FULL",
        },
        {
            "ErrorEquals": LAMBDA_SERVICE_ERRORS,
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 2.0,
            "JitterStrategy": "FULL",
        },
    ])
}

/// What is wrong with a definition's structure, every problem at once
/// (empty: none): every `StartAt`, `Next`, `Default` and `Catch` target
/// names a state of its own scope (the machine, or one `Parallel` branch),
/// every state is reachable from its scope's `StartAt`, state names are
/// unique across the machine and at most 80 characters, `Succeed`/`Fail`
/// states are terminal and every other state either goes on or ends.
/// `cordon export-asl` refuses to print a definition that fails it.
pub fn structural_problems(definition: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    check_scope(definition, "the machine", &mut seen, &mut problems);
    problems
}

fn check_scope(
    scope: &Value,
    label: &str,
    seen: &mut std::collections::BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let Some(states) = scope.get("States").and_then(Value::as_object) else {
        problems.push(format!("{label} has no States"));
        return;
    };
    let start = scope.get("StartAt").and_then(Value::as_str).unwrap_or("");
    if !states.contains_key(start) {
        problems.push(format!("{label}: StartAt {start:?} names no state"));
    }
    let mut edges: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, state) in states {
        if !seen.insert(name.clone()) {
            problems.push(format!("state name {name:?} is used twice"));
        }
        if name.chars().count() > MAX_STATE_NAME_CHARS {
            problems.push(format!(
                "state name {name:?} is longer than {MAX_STATE_NAME_CHARS} characters"
            ));
        }
        let kind = state.get("Type").and_then(Value::as_str).unwrap_or("");
        let mut targets: Vec<&str> = Vec::new();
        let next = state.get("Next").and_then(Value::as_str);
        let end = state.get("End").and_then(Value::as_bool) == Some(true);
        match kind {
            "Succeed" | "Fail" => {
                if next.is_some() || state.get("End").is_some() {
                    problems.push(format!("{name:?} ({kind}) is terminal but has Next or End"));
                }
                if kind == "Fail" && state.get("Error").and_then(Value::as_str).is_none() {
                    problems.push(format!("{name:?} (Fail) has no stable Error name"));
                }
            }
            "Choice" => {
                if next.is_some() || state.get("End").is_some() {
                    problems.push(format!("{name:?} (Choice) has Next or End"));
                }
                let choices = state.get("Choices").and_then(Value::as_array);
                if choices.is_none_or(|c| c.is_empty()) {
                    problems.push(format!("{name:?} (Choice) has no Choices"));
                }
                for choice in choices.into_iter().flatten() {
                    match choice.get("Next").and_then(Value::as_str) {
                        Some(target) => targets.push(target),
                        None => problems.push(format!("{name:?}: a choice rule has no Next")),
                    }
                }
                if let Some(default) = state.get("Default").and_then(Value::as_str) {
                    targets.push(default);
                }
            }
            "Task" | "Pass" | "Parallel" | "Wait" | "Map" => {
                match (next, end) {
                    (Some(target), false) => targets.push(target),
                    (None, true) => {}
                    _ => problems.push(format!(
                        "{name:?} ({kind}) needs exactly one of Next and End"
                    )),
                }
                if kind == "Parallel" {
                    let branches = state.get("Branches").and_then(Value::as_array);
                    if branches.is_none_or(|b| b.is_empty()) {
                        problems.push(format!("{name:?} (Parallel) has no Branches"));
                    }
                    for (i, branch) in branches.into_iter().flatten().enumerate() {
                        check_scope(
                            branch,
                            &format!("branch {} of {name:?}", i + 1),
                            seen,
                            problems,
                        );
                    }
                }
            }
            other => problems.push(format!("{name:?} has an unknown Type {other:?}")),
        }
        for catcher in state
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match catcher.get("Next").and_then(Value::as_str) {
                Some(target) => targets.push(target),
                None => problems.push(format!("{name:?}: a Catch has no Next")),
            }
        }
        for target in &targets {
            if !states.contains_key(*target) {
                problems.push(format!(
                    "{label}: {name:?} goes to {target:?}, which names no state of {label}"
                ));
            }
        }
        edges.push((name.as_str(), targets));
    }
    let mut reached = std::collections::BTreeSet::new();
    let mut todo = vec![start];
    while let Some(name) = todo.pop() {
        if !reached.insert(name) {
            continue;
        }
        if let Some((_, targets)) = edges.iter().find(|(n, _)| *n == name) {
            todo.extend(targets.iter().copied());
        }
    }
    for name in states.keys() {
        if !reached.contains(name.as_str()) {
            problems.push(format!("{label}: {name:?} is never reached from {start:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{load_playbook_texts, set_digest};

    fn shipped() -> (Vec<Playbook>, String) {
        let loaded = load_playbook_texts("embedded", cordon_playbooks::EMBEDDED)
            .expect("the shipped set validates");
        let digest = set_digest(&loaded);
        (loaded.into_iter().map(|l| l.playbook).collect(), digest)
    }

    fn options(digest: &str) -> AslOptions {
        AslOptions {
            lambda_arn: "arn:aws:lambda:us-east-1:123456789012:function:cordon".into(),
            playbook_set: digest.into(),
            approval_timeout_seconds: 900,
        }
    }

    fn playbook(yaml: &str) -> Playbook {
        crate::validate::validate_text(yaml, "test.yaml")
            .expect("a valid playbook")
            .0
    }

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_shipped_playbook_gives_a_sound_state_machine() {
        let (playbooks, digest) = shipped();
        assert!(!playbooks.is_empty());
        for playbook in &playbooks {
            let definition = state_machine(playbook, &options(&digest)).expect("generated");
            let problems = structural_problems(&definition);
            assert!(problems.is_empty(), "{}: {problems:#?}", playbook.name);
            let text = definition.to_string();
            assert!(
                text.contains(&digest),
                "{}: the set hash is pinned",
                playbook.name
            );
            // The finding is read once, by Plan, and replaced by its result.
            assert_eq!(text.matches("\"finding.$\":\"$\"").count(), 1);
            assert_eq!(definition["States"]["Plan"]["ResultPath"], json!("$"));
            for step in &playbook.steps {
                assert!(
                    text.contains(&format!("\"Run {}\"", step.id)),
                    "{}: step {} has a Task",
                    playbook.name,
                    step.id
                );
            }
        }
    }

    #[test]
    fn the_same_playbook_gives_the_same_bytes() {
        let (playbooks, digest) = shipped();
        for playbook in &playbooks {
            let a = serde_json::to_string_pretty(
                &state_machine(playbook, &options(&digest)).expect("generated"),
            )
            .expect("json");
            let b = serde_json::to_string_pretty(
                &state_machine(playbook, &options(&digest)).expect("generated"),
            )
            .expect("json");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn independent_steps_run_in_one_parallel_state_by_level() {
        let p = playbook(
            r#"
name: graph
match: { resource-types: [Instance] }
on-failure: stop
steps:
  - { id: isolate, action: isolate-instance, needs: [] }
  - { id: tag, action: tag-resource, needs: [isolate], with: { tags: { a: b } } }
  - { id: snapshot, action: snapshot-volumes, needs: [isolate], on-failure: rollback }
  - { id: store, action: store-evidence, needs: [tag, snapshot] }
"#,
        );
        let d = state_machine(&p, &options(DIGEST)).expect("generated");
        assert!(
            structural_problems(&d).is_empty(),
            "{:#?}",
            structural_problems(&d)
        );
        let states = d["States"].as_object().expect("states");
        let names: Vec<&str> = states.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "Plan",
                "Run isolate",
                "After isolate",
                "Level 2",
                "Verdicts of level 2",
                "After level 2",
                "Run store",
                "After store",
                "Rollback",
                "After rollback",
                "Contained",
                "Stopped",
                "RolledBack",
                "RollbackIncomplete",
            ]
        );
        assert_eq!(states["Plan"]["Next"], "Run isolate");
        assert_eq!(states["After isolate"]["Choices"][0]["Next"], "Level 2");
        assert_eq!(states["After isolate"]["Default"], "Stopped");
        // on-failure: stop (the playbook's) sends a thrown error to Stopped;
        // the step's own rollback sends its branch's verdict to rollback.
        assert_eq!(states["Run isolate"]["Catch"][0]["Next"], "Stopped");
        let branches = states["Level 2"]["Branches"].as_array().expect("branches");
        assert_eq!(branches.len(), 2);
        assert_eq!(branches[0]["StartAt"], "Run tag");
        assert_eq!(
            branches[0]["States"]["tag failed"]["Parameters"]["next"],
            "stop"
        );
        assert_eq!(
            branches[1]["States"]["snapshot failed"]["Parameters"]["next"],
            "rollback"
        );
        let verdicts = &states["Verdicts of level 2"]["Parameters"];
        assert_eq!(
            verdicts["rollback.$"],
            "States.ArrayContains($.level.verdicts, 'rollback')"
        );
        assert!(
            verdicts.get("approval-timed-out.$").is_none(),
            "no step of the level waits"
        );
        let after = &states["After level 2"];
        assert_eq!(after["Choices"][0]["Variable"], "$['rollback']");
        assert_eq!(after["Choices"][0]["Next"], "Rollback");
        assert_eq!(after["Choices"][1]["Next"], "Stopped");
        assert_eq!(after["Default"], "Run store");
        assert_eq!(states["After store"]["Choices"][0]["Next"], "Contained");
    }

    #[test]
    fn a_sequential_playbook_runs_its_steps_in_written_order() {
        let p = playbook(
            r#"
name: seq
match: { resource-types: [Instance] }
steps:
  - { id: a, action: enable-termination-protection }
  - { id: b, action: snapshot-volumes }
"#,
        );
        let d = state_machine(&p, &options(DIGEST)).expect("generated");
        assert_eq!(d["States"]["Plan"]["Next"], "Run a");
        assert_eq!(d["States"]["After a"]["Choices"][0]["Next"], "Run b");
        assert_eq!(d["States"]["After b"]["Choices"][0]["Next"], "Contained");
        // The playbook's default on-failure is rollback.
        assert_eq!(d["States"]["Run a"]["Catch"][0]["Next"], "Rollback");
        assert!(d.to_string().find("Level").is_none());
    }

    #[test]
    fn a_gated_step_waits_for_its_token_bounded_by_the_approval_timeout() {
        let p = playbook(
            r#"
name: gated
match: { resource-types: [Instance] }
on-failure: stop
steps:
  - { id: isolate, action: isolate-instance, approval: required }
  - { id: snap, action: snapshot-volumes, needs: [], approvers: ["arn:aws:iam::123456789012:role/Lead"] }
  - { id: tag, action: tag-resource, needs: [], with: { tags: { a: b } } }
"#,
        );
        let mut o = options(DIGEST);
        o.approval_timeout_seconds = 42;
        let d = state_machine(&p, &o).expect("generated");
        assert!(
            structural_problems(&d).is_empty(),
            "{:#?}",
            structural_problems(&d)
        );
        let branches = d["States"]["Level 1"]["Branches"]
            .as_array()
            .expect("branches");
        let gated = &branches[0];
        assert_eq!(gated["StartAt"], "Approve isolate");
        let approve = &gated["States"]["Approve isolate"];
        assert_eq!(approve["Resource"], LAMBDA_INVOKE_WAIT);
        assert_eq!(approve["TimeoutSeconds"], 42);
        assert_eq!(
            approve["Parameters"]["Payload"]["task-token.$"],
            "$$.Task.Token"
        );
        assert_eq!(approve["Catch"][0]["ErrorEquals"][0], "States.Timeout");
        assert_eq!(
            approve["Catch"][0]["Next"],
            "Record approval timeout isolate"
        );
        assert_eq!(
            approve["Catch"][1]["ErrorEquals"][0],
            "Cordon.ApprovalRefused"
        );
        assert_eq!(
            gated["States"]["isolate refused"]["Parameters"]["next"],
            "stop"
        );
        assert_eq!(
            gated["States"]["Record approval timeout isolate"]["Parameters"]["Payload"]["timed-out"],
            true
        );
        assert_eq!(
            branches[1]["StartAt"], "Approve snap",
            "approvers imply approval"
        );
        assert_eq!(branches[2]["StartAt"], "Run tag");
    }

    #[test]
    fn retries_follow_the_step_policy_with_backoff_and_full_jitter() {
        let p = playbook(
            r#"
name: retry
match: { resource-types: [Instance] }
steps:
  - { id: a, action: isolate-instance, retry: { max-attempts: 5, initial-backoff-ms: 1500, max-backoff-ms: 20000 } }
"#,
        );
        let d = state_machine(&p, &options(DIGEST)).expect("generated");
        let retry = &d["States"]["Run a"]["Retry"];
        assert_eq!(
            retry[0]["ErrorEquals"],
            json!(["Cordon.Throttled", "Cordon.Timeout"])
        );
        assert_eq!(retry[0]["MaxAttempts"], 4);
        assert_eq!(retry[0]["IntervalSeconds"], 2);
        assert_eq!(retry[0]["MaxDelaySeconds"], 20);
        assert_eq!(retry[1]["ErrorEquals"], json!(["Cordon.InProgress"]));
        for r in retry.as_array().expect("retriers") {
            assert_eq!(r["JitterStrategy"], "FULL");
            assert_eq!(r["BackoffRate"], 2.0);
        }
    }

    #[test]
    fn bad_options_are_refused_naming_what_to_fix() {
        let (playbooks, digest) = shipped();
        let p = &playbooks[0];
        for arn in [
            "cordon",
            "arn:aws:lambda:us-east-1:12345:function:cordon",
            "arn:aws:s3:::bucket",
            "${}",
            "${Cordon Fn}",
        ] {
            let mut o = options(&digest);
            o.lambda_arn = arn.into();
            assert!(
                matches!(state_machine(p, &o), Err(AslError::LambdaArn(_))),
                "{arn}"
            );
        }
        for arn in [
            DEFAULT_LAMBDA_ARN,
            "arn:aws:lambda:eu-west-1:123456789012:function:cordon:live",
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:c_1",
        ] {
            let mut o = options(&digest);
            o.lambda_arn = arn.into();
            assert!(state_machine(p, &o).is_ok(), "{arn}");
        }
        let mut o = options(&digest);
        o.approval_timeout_seconds = 0;
        assert!(matches!(
            state_machine(p, &o),
            Err(AslError::ApprovalTimeout(0))
        ));
        let mut o = options(&digest);
        o.playbook_set = "abc".into();
        assert!(matches!(
            state_machine(p, &o),
            Err(AslError::PlaybookSet { .. })
        ));
    }

    #[test]
    fn a_step_id_too_long_for_a_state_name_is_refused() {
        let id = "x".repeat(70);
        let p = playbook(&format!(
            "name: long\nmatch: {{ resource-types: [Instance] }}\nsteps:\n  - {{ id: {id}, action: isolate-instance }}\n"
        ));
        let err = state_machine(&p, &options(DIGEST)).expect_err("too long");
        assert!(err.to_string().contains(&id), "{err}");
    }

    #[test]
    fn the_structural_check_finds_each_kind_of_mistake() {
        let (playbooks, digest) = shipped();
        let good = state_machine(&playbooks[0], &options(&digest)).expect("generated");
        let broken = |f: &dyn Fn(&mut Value)| {
            let mut d = good.clone();
            f(&mut d);
            structural_problems(&d)
        };
        let dangling = broken(&|d| d["States"]["Plan"]["Next"] = json!("Nowhere"));
        assert!(
            dangling.iter().any(|p| p.contains("\"Nowhere\"")),
            "{dangling:#?}"
        );
        let unreachable = broken(&|d| {
            d["States"]["Lost"] = json!({ "Type": "Pass", "End": true });
        });
        assert!(
            unreachable
                .iter()
                .any(|p| p.contains("\"Lost\" is never reached")),
            "{unreachable:#?}"
        );
        let not_terminal = broken(&|d| d["States"]["Stopped"]["Next"] = json!("Contained"));
        assert!(
            not_terminal.iter().any(|p| p.contains("is terminal")),
            "{not_terminal:#?}"
        );
        let no_end = broken(&|d| {
            d["States"]["Plan"]
                .as_object_mut()
                .expect("plan")
                .remove("Next");
        });
        assert!(
            no_end
                .iter()
                .any(|p| p.contains("exactly one of Next and End")),
            "{no_end:#?}"
        );
        let bad_start = broken(&|d| d["StartAt"] = json!("Begin"));
        assert!(
            bad_start.iter().any(|p| p.contains("StartAt")),
            "{bad_start:#?}"
        );
    }
}
