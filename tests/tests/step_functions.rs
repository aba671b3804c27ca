//! The state machines `cordon export-asl` generates for the shipped
//! playbooks, created and *executed* on the emulator's Step Functions
//! (`/moto-api/config` `execute_state_machine`), with every Lambda task
//! answered by the emulator's Docker-free Lambda from a queue of canned,
//! contract-shaped answers (`/moto-api/static/lambda-simple/response`).
//!
//! What is executed for real: the Plan → step graph → end state routing,
//! `Parallel` levels and their verdicts, `ResultSelector`/`ResultPath` (the
//! finding never travels past Plan), the `.waitForTaskToken` approval wait
//! resumed by SendTaskSuccess, refused by SendTaskFailure
//! (`Cordon.ApprovalRefused`) and ended by `TimeoutSeconds`
//! (`States.Timeout`), the rollback branch and each end state's error name.
//!
//! What the emulator cannot run, and how it is covered instead:
//! - its Lambda always succeeds (it returns the next queued answer, or
//!   echoes the payload), so no task ever throws a `Cordon.*` error: each
//!   generated `Retry`/`Catch` is exercised by replacing the Task that
//!   carries it with a `Parallel` state holding the very same `Retry`,
//!   `Catch` and `Next`, whose one branch is a `Fail` state throwing the
//!   stable name (a `Parallel` fails with its branch's error). Attempts are
//!   counted from the history. The `Cordon.InProgress` retrier's intervals
//!   are shortened to 1 s there (its 8 attempts would take minutes); its
//!   name and attempt count are the generated ones.
//! - its CreateStateMachine checks only the grammar (it accepts a `Next`
//!   naming no state, or an unreachable state), so every definition also
//!   passes [`asl::structural_problems`].
//! - the queue of answers is shared by all invocations: steps of one
//!   `Parallel` level take them in whatever order they run, so answers
//!   that may race are identical.
//! - its JSONPath reads `$[0].x` as a one-element array (moto issue 7825),
//!   which is why the generator never addresses one branch's result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEvent;
use cordon_core::asl::{self, AslOptions};
use cordon_core::playbook::Playbook;
use cordon_core::validate::{load_playbook_texts, set_digest};
use cordon_tests::{ACCOUNT_ID, EmulatorGuard, REGION, emulator};
use serde_json::{Value, json};

const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:cordon";
const ROLE: &str = "arn:aws:iam::123456789012:role/cordon-state-machine";
const CASE: &str = "case-0123456789abcdef0123";
/// Long enough never to end a test that answers; the timeout test sets its own.
const APPROVAL_TIMEOUT: u64 = 300;

fn shipped() -> (Vec<Playbook>, String) {
    let loaded = load_playbook_texts("embedded", cordon_playbooks::EMBEDDED).expect("valid");
    let digest = set_digest(&loaded);
    (loaded.into_iter().map(|l| l.playbook).collect(), digest)
}

fn definition(name: &str, approval_timeout_seconds: u64) -> Value {
    let (playbooks, digest) = shipped();
    let playbook = playbooks.iter().find(|p| p.name == name).expect("shipped");
    let options = AslOptions {
        lambda_arn: FUNCTION.into(),
        playbook_set: digest,
        approval_timeout_seconds,
    };
    asl::state_machine(playbook, &options).expect("generated")
}

/// The finding the executions start with: a real EventBridge event.
fn event() -> Value {
    let path = cordon_tests::repo_root().join("tests/fixtures/findings/event-ec2-high.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// What the Lambda answers, per the contract (docs/step-functions.md).
fn plan_answer() -> Value {
    json!({
        "format-version": 1, "case-id": CASE, "status": "running", "outcome": "done",
        "exit-code": 0, "message": "The case is open.", "playbook": "p", "playbook-set": "x", "steps": [],
    })
}

fn step_answer(next: &str) -> Value {
    let failed = next != "continue";
    json!({
        "format-version": 1, "case-id": CASE,
        "status": if failed { "stopped" } else { "running" },
        "outcome": if failed { "needs-human" } else { "done" },
        "exit-code": if failed { 1 } else { 0 },
        "message": "m", "step": "s",
        "step-status": if failed { "failed" } else { "verified" },
        "next": next,
    })
}

fn rollback_answer(status: &str) -> Value {
    json!({
        "format-version": 1, "case-id": CASE, "status": status, "outcome": "rolled-back",
        "exit-code": 5, "message": "m",
    })
}

/// An answer any mode can take (plan, step, decide, rollback): for the
/// invocations that race for the queue.
fn any_answer() -> Value {
    let mut answer = step_answer("continue");
    answer["status"] = json!("rolled-back");
    answer
}

struct Sfn<'a> {
    aws: &'a EmulatorGuard,
    client: aws_sdk_sfn::Client,
}

impl<'a> Sfn<'a> {
    async fn new(aws: &'a EmulatorGuard) -> Sfn<'a> {
        aws.moto_api(
            "/moto-api/config",
            json!({ "stepfunctions": { "execute_state_machine": true }, "lambda": { "use_docker": false } }),
        )
        .await;
        Sfn {
            aws,
            client: aws_sdk_sfn::Client::new(aws.sdk_config()),
        }
    }

    async fn answers(&self, answers: &[Value]) {
        let results: Vec<String> = answers.iter().map(Value::to_string).collect();
        self.aws
            .moto_api(
                "/moto-api/static/lambda-simple/response",
                json!({ "account_id": ACCOUNT_ID, "region": REGION, "results": results }),
            )
            .await;
    }

    async fn create(&self, name: &str, definition: &Value) -> String {
        let problems = asl::structural_problems(definition);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        self.client
            .create_state_machine()
            .name(name)
            .definition(definition.to_string())
            .role_arn(ROLE)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStateMachine {name}: {e:?}"))
            .state_machine_arn()
            .to_string()
    }

    /// Starts an execution named like the case (as the infra's router does).
    async fn start(&self, machine: &str, name: &str) -> String {
        self.client
            .start_execution()
            .state_machine_arn(machine)
            .name(name)
            .input(event().to_string())
            .send()
            .await
            .expect("StartExecution")
            .execution_arn()
            .to_string()
    }

    async fn history(&self, execution: &str) -> Vec<HistoryEvent> {
        self.client
            .get_execution_history()
            .execution_arn(execution)
            .max_results(1000)
            .send()
            .await
            .expect("GetExecutionHistory")
            .events()
            .to_vec()
    }

    /// Waits for the end; the final status, error and the history.
    async fn finish(&self, execution: &str) -> Finished {
        let started = Instant::now();
        loop {
            let d = self
                .client
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .expect("DescribeExecution");
            if d.status().as_str() != "RUNNING" {
                return Finished {
                    status: d.status().as_str().to_string(),
                    error: d.error().map(str::to_string),
                    history: self.history(execution).await,
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{execution} still runs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The task token the waiting `Approve` state handed the Lambda, read
    /// from the payload in the execution history (as the Lambda would
    /// receive it and put it in the SNS message).
    async fn token(&self, execution: &str) -> String {
        let started = Instant::now();
        loop {
            let history = self.history(execution).await;
            if let Some(token) = payloads(&history).iter().find_map(|p| {
                p.get("task-token")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }) {
                return token;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no approval wait in {execution}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Debug)]
struct Finished {
    status: String,
    error: Option<String>,
    history: Vec<HistoryEvent>,
}

impl Finished {
    fn entered(&self) -> Vec<String> {
        self.history
            .iter()
            .filter_map(|e| e.state_entered_event_details())
            .map(|d| d.name().to_string())
            .collect()
    }

    fn entered_times(&self, state: &str) -> usize {
        self.entered().iter().filter(|n| *n == state).count()
    }

    fn payloads(&self) -> Vec<Value> {
        payloads(&self.history)
    }
}

/// The Lambda payload of every scheduled task, in order.
fn payloads(history: &[HistoryEvent]) -> Vec<Value> {
    history
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .map(|d| {
            let parameters: Value = serde_json::from_str(d.parameters()).expect("parameters");
            parameters["Payload"].clone()
        })
        .collect()
}

#[tokio::test]
async fn every_shipped_state_machine_is_accepted_by_create_state_machine() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    let (playbooks, _) = shipped();
    for playbook in &playbooks {
        let arn = sfn
            .create(
                &playbook.name,
                &definition(&playbook.name, APPROVAL_TIMEOUT),
            )
            .await;
        assert!(arn.ends_with(&format!(":stateMachine:{}", playbook.name)));
    }
    // The emulator does parse the definition: a broken one is refused.
    let refused = sfn
        .client
        .create_state_machine()
        .name("broken")
        .definition(r#"{"StartAt":"A","States":{"A":{"Type":"Bogus"}}}"#)
        .role_arn(ROLE)
        .send()
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn the_happy_path_runs_every_step_once_and_ends_contained() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    let machine = sfn
        .create(
            "high",
            &definition("ec2-compromised-high", APPROVAL_TIMEOUT),
        )
        .await;
    let mut answers = vec![plan_answer()];
    answers.extend((0..10).map(|_| step_answer("continue")));
    sfn.answers(&answers).await;
    let execution = sfn.start(&machine, CASE).await;
    let done = sfn.finish(&execution).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_deref()),
        ("SUCCEEDED", None),
        "{:#?}",
        done.entered()
    );
    assert_eq!(done.entered().last().map(String::as_str), Some("Contained"));

    let payloads = done.payloads();
    assert_eq!(payloads[0]["mode"], "plan");
    assert_eq!(payloads[0]["playbook"], "ec2-compromised-high");
    assert_eq!(payloads[0]["finding"], event(), "Plan gets the whole event");
    let (_, digest) = shipped();
    assert_eq!(payloads[0]["playbook-set"], digest.as_str());
    let steps: Vec<&str> = payloads[1..]
        .iter()
        .map(|p| p["step"].as_str().expect("step"))
        .collect();
    assert_eq!(steps.len(), 10, "{steps:?}");
    assert_eq!(steps[0], "isolate", "isolation first, alone");
    assert_eq!(steps[9], "store-evidence", "evidence last, after the rest");
    let mut distinct = steps.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "every step once: {steps:?}");
    for p in &payloads[1..] {
        assert_eq!(p["mode"], "step");
        assert_eq!(p["case-id"], CASE);
        assert!(p.get("finding").is_none(), "the finding stops at Plan: {p}");
        assert!(p.to_string().len() < 512, "small task input: {p}");
    }
}

#[tokio::test]
async fn a_failed_step_is_routed_into_the_rollback_branch() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    // ec2-low: its two steps run together and roll back on failure.
    let machine = sfn
        .create("low", &definition("ec2-low", APPROVAL_TIMEOUT))
        .await;
    for (rolled_back, error) in [
        ("rolled-back", "Cordon.RolledBack"),
        ("rolled-back-except-credentials", "Cordon.RolledBack"),
        ("rollback-incomplete", "Cordon.RollbackIncomplete"),
    ] {
        // Which step takes which answer is a race: the verdict is the same.
        sfn.answers(&[
            plan_answer(),
            step_answer("rollback"),
            step_answer("continue"),
            rollback_answer(rolled_back),
        ])
        .await;
        let execution = sfn.start(&machine, &format!("{CASE}-{rolled_back}")).await;
        let done = sfn.finish(&execution).await;
        assert_eq!(done.status, "FAILED");
        assert_eq!(
            done.error.as_deref(),
            Some(error),
            "{rolled_back}: {:#?}",
            done.entered()
        );
        let rollback = done.payloads().last().cloned().expect("payloads");
        assert_eq!(rollback["mode"], "rollback");
        assert_eq!(rollback["case-id"], CASE);
        assert_eq!(done.entered_times("Rollback"), 1);
    }

    // A sequential step's `stop` verdict ends Stopped; nothing after it runs.
    let machine = sfn
        .create(
            "key",
            &definition("iam-user-key-compromised", APPROVAL_TIMEOUT),
        )
        .await;
    sfn.answers(&[plan_answer(), step_answer("stop")]).await;
    let execution = sfn.start(&machine, CASE).await;
    let done = sfn.finish(&execution).await;
    assert_eq!(
        done.error.as_deref(),
        Some("Cordon.Stopped"),
        "{:#?}",
        done.entered()
    );
    assert_eq!(done.payloads().len(), 2, "plan and the one step");
    assert_eq!(done.entered_times("Rollback"), 0);
}

#[tokio::test]
async fn an_approval_wait_resumes_on_send_task_success() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    // revoke-sessions always waits for approval.
    let machine = sfn
        .create(
            "temp",
            &definition("iam-temporary-credentials", APPROVAL_TIMEOUT),
        )
        .await;
    sfn.answers(&[plan_answer(), any_answer(), step_answer("continue")])
        .await;
    let execution = sfn.start(&machine, CASE).await;
    let token = sfn.token(&execution).await;
    // Still waiting: the step has not been invoked.
    let waiting = payloads(&sfn.history(&execution).await);
    assert_eq!(
        waiting.last().map(|p| p["mode"].clone()),
        Some(json!("decide"))
    );
    assert_eq!(
        waiting.last().map(|p| p["step"].clone()),
        Some(json!("revoke-sessions"))
    );
    sfn.client
        .send_task_success()
        .task_token(&token)
        .output(
            json!({ "decision": "approved", "approver": "arn:aws:iam::123456789012:user/lead" })
                .to_string(),
        )
        .send()
        .await
        .expect("SendTaskSuccess");
    let done = sfn.finish(&execution).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_deref()),
        ("SUCCEEDED", None),
        "{:#?}",
        done.entered()
    );
    let modes: Vec<Value> = done.payloads().iter().map(|p| p["mode"].clone()).collect();
    assert_eq!(modes, [json!("plan"), json!("decide"), json!("step")]);
}

#[tokio::test]
async fn a_refused_approval_stops_the_case_without_running_the_step() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    // quarantine waits for approval in a Parallel branch beside rotate-key.
    let machine = sfn
        .create(
            "key",
            &definition("iam-user-key-compromised", APPROVAL_TIMEOUT),
        )
        .await;
    sfn.answers(&[
        plan_answer(),
        step_answer("continue"),
        any_answer(),
        any_answer(),
    ])
    .await;
    let execution = sfn.start(&machine, CASE).await;
    let token = sfn.token(&execution).await;
    sfn.client
        .send_task_failure()
        .task_token(&token)
        .error(asl::errors::APPROVAL_REFUSED)
        .cause("refused by arn:aws:iam::123456789012:user/lead")
        .send()
        .await
        .expect("SendTaskFailure");
    let done = sfn.finish(&execution).await;
    assert_eq!(
        done.error.as_deref(),
        Some("Cordon.Stopped"),
        "{:#?}",
        done.entered()
    );
    assert_eq!(done.entered_times("quarantine refused"), 1);
    assert_eq!(done.entered_times("Run quarantine"), 0);
    assert_eq!(
        done.entered_times("Run rotate-key"),
        1,
        "the other branch ran to its end"
    );
    assert!(
        !done
            .payloads()
            .iter()
            .any(|p| p["step"] == "quarantine" && p["mode"] == "step"),
        "the refused step never ran"
    );
}

#[tokio::test]
async fn an_approval_nobody_answers_times_out_and_is_journaled() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    let machine = sfn
        .create("temp", &definition("iam-temporary-credentials", 2))
        .await;
    sfn.answers(&[plan_answer(), any_answer(), any_answer()])
        .await;
    let execution = sfn.start(&machine, CASE).await;
    let done = sfn.finish(&execution).await;
    assert_eq!(
        done.error.as_deref(),
        Some("Cordon.ApprovalTimedOut"),
        "{:#?}",
        done.entered()
    );
    let last = done.payloads().last().cloned().expect("payloads");
    assert_eq!(
        last,
        json!({ "mode": "decide", "case-id": CASE, "step": "revoke-sessions", "timed-out": true })
    );
    assert_eq!(done.entered_times("Run revoke-sessions"), 0);
}

/// `definition` with the Task `state` (top level or in a branch) replaced by
/// a `Parallel` state keeping its `Retry`, `Catch`, `Next`/`End`, whose one
/// branch throws `error`.
fn throwing(mut definition: Value, state: &str, error: &str) -> Value {
    /// The (Parallel state, branch) pairs leading to `state`'s scope.
    fn route(states: &Value, state: &str) -> Option<Vec<(String, usize)>> {
        let map = states.as_object()?;
        if map.contains_key(state) {
            return Some(Vec::new());
        }
        for (name, value) in map {
            let branches = value.get("Branches").and_then(Value::as_array);
            for (i, branch) in branches.into_iter().flatten().enumerate() {
                if let Some(mut rest) = route(&branch["States"], state) {
                    rest.insert(0, (name.clone(), i));
                    return Some(rest);
                }
            }
        }
        None
    }
    let mut scope = &mut definition["States"];
    for (name, branch) in route(scope, state).expect("state") {
        scope = &mut scope[&name]["Branches"][branch]["States"];
    }
    let task = &mut scope[state];
    let mut thrower = json!({
        "Type": "Parallel",
        "Branches": [{ "StartAt": "Throw", "States": { "Throw": { "Type": "Fail", "Error": error, "Cause": "thrown by the test" } } }],
    });
    for key in ["Retry", "Catch", "Next", "End"] {
        if let Some(value) = task.get(key) {
            thrower[key] = value.clone();
        }
    }
    *task = thrower;
    definition
}

/// Shortens a retrier's waits, keeping its names and attempts.
fn quick(mut definition: Value, state: &str, error: &str) -> Value {
    for retrier in definition["States"][state]["Retry"]
        .as_array_mut()
        .expect("retry")
    {
        if retrier["ErrorEquals"]
            .as_array()
            .expect("names")
            .contains(&json!(error))
        {
            retrier["IntervalSeconds"] = json!(1);
            retrier["MaxDelaySeconds"] = json!(1);
        }
    }
    definition
}

#[tokio::test]
async fn each_generated_retry_and_catch_matches_the_stable_error_names() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    let key = || definition("iam-user-key-compromised", APPROVAL_TIMEOUT);
    // (machine, its definition, expected attempts of the thrower, end error)
    let cases: Vec<(&str, Value, usize, &str)> = vec![
        // deactivate-key: the default retry policy (3 attempts in all), on-failure stop.
        (
            "throttled",
            throwing(key(), "Run deactivate-key", "Cordon.Throttled"),
            3,
            "Cordon.Stopped",
        ),
        (
            "timeout",
            throwing(key(), "Run deactivate-key", "Cordon.Timeout"),
            3,
            "Cordon.Stopped",
        ),
        (
            "in-progress",
            quick(
                throwing(key(), "Run deactivate-key", "Cordon.InProgress"),
                "Run deactivate-key",
                "Cordon.InProgress",
            ),
            9,
            "Cordon.Stopped",
        ),
        (
            "lambda",
            throwing(
                key(),
                "Run deactivate-key",
                "Lambda.TooManyRequestsException",
            ),
            4,
            "Cordon.Stopped",
        ),
        // Hard errors are caught at once, never retried.
        (
            "denied",
            throwing(key(), "Run deactivate-key", "Cordon.AccessDenied"),
            1,
            "Cordon.Stopped",
        ),
        (
            "not-ready",
            throwing(key(), "Run deactivate-key", "Cordon.NotReady"),
            1,
            "Cordon.Stopped",
        ),
        // A step in a Parallel branch, on-failure rollback: its branch's
        // verdict sends the case into rollback.
        (
            "branch",
            throwing(
                definition("ec2-low", APPROVAL_TIMEOUT),
                "Run tag",
                "Cordon.NotFound",
            ),
            1,
            "Cordon.RolledBack",
        ),
        // Plan has no Catch: a refused finding fails the execution with its name.
        (
            "plan",
            throwing(key(), "Plan", "Cordon.InvalidFinding"),
            1,
            "Cordon.InvalidFinding",
        ),
        (
            "plan-set",
            throwing(key(), "Plan", "Cordon.PlaybookSetMismatch"),
            1,
            "Cordon.PlaybookSetMismatch",
        ),
    ];
    // Every invocation may take any answer: the executions run together.
    sfn.answers(&vec![any_answer(); 3 * cases.len()]).await;
    let mut running = Vec::new();
    for (name, definition, attempts, error) in &cases {
        let machine = sfn.create(name, definition).await;
        running.push((name, sfn.start(&machine, CASE).await, *attempts, *error));
    }
    for (name, execution, attempts, error) in running {
        let done = sfn.finish(&execution).await;
        assert_eq!(done.status, "FAILED", "{name}");
        assert_eq!(
            done.error.as_deref(),
            Some(error),
            "{name}: {:#?}",
            done.entered()
        );
        assert_eq!(done.entered_times("Throw"), attempts, "{name}: attempts");
    }
}
