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
//! - its `arn:aws:states:::states:startExecution` task fails with
//!   `States.Runtime` (`'StateMachineArn'`: the ASL's parameter names reach
//!   botocore unrenamed), so the router of `infra/cordon.yaml` runs on it up
//!   to its `Start PLAYBOOK` task: the test checks that task's scheduled
//!   parameters (the routed machine, the case id as name, the finding as
//!   input), then starts that execution itself and runs it to `Contained`.
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

/// The router as `infra/cordon.yaml` deploys it: its `DefinitionString`'s
/// `Fn::Sub` with the function's ARN and each playbook machine's ARN (by
/// the machine's logical id) put in, as CloudFormation does. Also the
/// playbook machines' (logical id, name) pairs, from the same template.
fn router_from_template() -> (String, Vec<(String, String)>) {
    let path = cordon_tests::repo_root().join("infra/cordon.yaml");
    let text = std::fs::read_to_string(&path).expect("infra/cordon.yaml");
    let template = cordon_core::yaml::parse(&text).expect("yaml").value;
    let resources = template["Resources"].as_object().expect("resources");
    let router = resources["RouterStateMachine"]["Properties"]["DefinitionString"]["Fn::Sub"]
        .as_str()
        .expect("the router's Fn::Sub string")
        .to_string();
    let machines = resources
        .iter()
        .filter(|(id, r)| {
            r["Type"] == "AWS::StepFunctions::StateMachine" && id.as_str() != "RouterStateMachine"
        })
        .map(|(id, r)| {
            let name = r["Properties"]["StateMachineName"].as_str().expect("name");
            (id.clone(), name.to_string())
        })
        .collect();
    (router, machines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_starts_the_playbook_machine_the_lambda_routes_a_guardduty_finding_to() {
    let aws = emulator().await;
    let sfn = Sfn::new(&aws).await;
    // The Lambda's answer to the router's `Route` task is the real handler's,
    // on a real finding about a real instance of the emulator: the routing
    // is `cordon route`'s, not a canned playbook name.
    let (_, raw) = cordon_tests::s3_journal_world(&aws, "cordon-router").await;
    let finding: Value = serde_json::from_str(&raw).expect("finding");
    let config = cordon_lambda::Config::from_lookup(|name| {
        (name == "CORDON_JOURNAL").then(|| "s3://cordon-router/cases/".to_string())
    })
    .expect("config");
    let handler = cordon_lambda::Handler::new(aws.clients().clone(), config).expect("handler");
    let route_payload =
        json!({"mode": "plan", "finding": finding, "playbook-set": handler.playbook_set()});
    let planned = handler.handle(route_payload.clone()).await.expect("plan");
    let routed = planned.playbook.clone().expect("a playbook answers");
    let case = planned.case_id.clone();
    let answer = serde_json::to_value(&planned).expect("answer");

    let (mut router, machines) = router_from_template();
    router = router.replace("${CordonFunction.Arn}", FUNCTION);
    let mut arns = std::collections::BTreeMap::new();
    for (logical_id, name) in &machines {
        let playbook = name.strip_prefix("cordon-").expect("cordon-<playbook>");
        let arn = sfn
            .create(name, &definition(playbook, APPROVAL_TIMEOUT))
            .await;
        router = router.replace(&format!("${{{logical_id}}}"), &arn);
        arns.insert(playbook.to_string(), arn);
    }
    assert!(!router.contains("${"), "a variable left: {router}");
    assert_eq!(arns.len(), shipped().0.len(), "one machine per playbook");
    let router: Value = serde_json::from_str(&router).expect("the router is JSON");
    let router_arn = sfn.create("cordon-router", &router).await;

    // The router's plan, then the chosen machine's own Plan and each step.
    let steps = answer["steps"].as_array().expect("steps").len();
    let mut answers = vec![answer.clone(), answer.clone()];
    answers.extend((0..steps).map(|_| step_answer("continue")));
    sfn.answers(&answers).await;
    let delivery = |name: &str| {
        sfn.client
            .start_execution()
            .state_machine_arn(&router_arn)
            .name(name)
            .input(raw.clone())
            .send()
    };
    let execution = delivery("delivery-1")
        .await
        .expect("StartExecution")
        .execution_arn()
        .to_string();
    let done = sfn.finish(&execution).await;
    assert_eq!(
        done.entered(),
        ["Route", "Choose playbook", &format!("Start {routed}")],
        "the router picks the playbook the Lambda routed to"
    );
    assert_eq!(
        done.payloads()[0],
        route_payload,
        "the Lambda gets the finding and the pinned set"
    );
    // What the `Start` task asks Step Functions for: the routed playbook's
    // machine, the case id as execution name, the finding as its input.
    let start = done
        .history
        .iter()
        .filter_map(|e| e.task_scheduled_event_details())
        .map(|d| serde_json::from_str::<Value>(d.parameters()).expect("parameters"))
        .find(|p| p.get("StateMachineArn").is_some())
        .expect("the Start task was scheduled");
    assert_eq!(
        start["StateMachineArn"],
        arns[&routed].as_str(),
        "{start:#}"
    );
    assert_eq!(start["Name"], case.as_str(), "{start:#}");
    let input = start["Input"].as_str().map_or_else(
        || start["Input"].clone(),
        |s| serde_json::from_str(s).expect("input"),
    );
    assert_eq!(input, finding, "{start:#}");
    // The emulator cannot run that call: moto 5.2.5's Step Functions passes
    // the ASL's `StateMachineArn` to botocore unrenamed (its port of the
    // parameter normalisation is a no-op), and botocore's serializer fails
    // on the key. This assertion fails once moto runs it: then assert the
    // router's own SUCCEEDED here instead of starting the machine below.
    let failures: Vec<(Option<String>, Option<String>)> = done
        .history
        .iter()
        .filter_map(|e| e.task_failed_event_details())
        .map(|d| (d.error().map(str::to_string), d.cause().map(str::to_string)))
        .collect();
    assert_eq!(
        failures,
        [(
            Some("States.Runtime".to_string()),
            Some("'StateMachineArn'".to_string())
        )],
        "the emulator's known gap changed"
    );
    assert_eq!(done.status, "FAILED");

    // Started as the task asked, the routed playbook's machine runs the case
    // to its end; a second start under the case's name (a duplicate
    // delivery) is refused by Step Functions, which the router's `Catch`
    // turns into `Already started`.
    let child = sfn
        .client
        .start_execution()
        .state_machine_arn(start["StateMachineArn"].as_str().expect("arn"))
        .name(start["Name"].as_str().expect("name"))
        .input(input.to_string())
        .send()
        .await
        .expect("StartExecution")
        .execution_arn()
        .to_string();
    let ran = sfn.finish(&child).await;
    assert_eq!(
        (
            ran.status.as_str(),
            ran.entered().last().map(String::as_str)
        ),
        ("SUCCEEDED", Some("Contained")),
        "{:#?}",
        ran.entered()
    );
    assert_eq!(
        ran.payloads()[0]["finding"],
        finding,
        "the playbook machine gets the finding"
    );
    assert_eq!(ran.payloads()[0]["playbook"], routed.as_str());
    let duplicate = sfn
        .client
        .start_execution()
        .state_machine_arn(arns[&routed].as_str())
        .name(case.as_str())
        .input(input.to_string())
        .send()
        .await
        .expect_err("the case's execution name is taken");
    assert!(
        duplicate
            .as_service_error()
            .is_some_and(|e| e.is_execution_already_exists()),
        "{duplicate:?}"
    );
    let catch = &router["States"][format!("Start {routed}")]["Catch"][0];
    assert_eq!(
        catch["ErrorEquals"],
        json!(["StepFunctions.ExecutionAlreadyExistsException"])
    );
    assert_eq!(catch["Next"], "Already started");

    // An answer naming no playbook ends `No playbook`, starting nothing.
    let mut none = answer.clone();
    none.as_object_mut().expect("object").remove("playbook");
    sfn.answers(&[none]).await;
    let nothing = delivery("delivery-3")
        .await
        .expect("StartExecution")
        .execution_arn()
        .to_string();
    let nothing = sfn.finish(&nothing).await;
    assert_eq!(
        nothing.entered().last().map(String::as_str),
        Some("No playbook"),
        "{:#?}",
        nothing.entered()
    );
}
