//! The executor against an in-memory world: every crash point can be resumed
//! and rolled back, policies and approvals behave, and the journal is written
//! ahead of every mutation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cordon_core::action::UndoGate;
use cordon_core::claims::{ClaimAnswer, ResourceClaim};
use cordon_core::executor::{
    ActionError, Actions, Amendment, Approver, Decision, ErrorKind, ExecError, Executor, FleetCap,
    LoopGuard, Outcome, PauseSwitch, Paused, Progress, Report,
};
use cordon_core::finding::parse_single_finding;
use cordon_core::journal::{CaseStatus, JournalError, JournalEvent, JournalRecord, JournalStore};
use cordon_core::local_store::LocalJournal;
use cordon_core::plan::{CaseId, Plan, PlannedStep, plan};
use cordon_core::playbook::Playbook;
use cordon_core::route::RouteReason;
use cordon_core::validate::validate_text;
use serde_json::{Value, json};

const FINDING: &str = r#"{"schemaVersion":"2.0","accountId":"111122223333","region":"us-east-1","partition":"aws",
"id":"f00dfeedf00dfeedf00dfeedf00dfeed","type":"Backdoor:EC2/Spambot","severity":8,
"resource":{"resourceType":"Instance","instanceDetails":{"instanceId":"i-0123456789abcdef0","networkInterfaces":[]}},
"service":{"resourceRole":"ACTOR"}}"#;

fn playbook(on_failure: &str, steps: &[(&str, &str, &str)]) -> Playbook {
    let mut text = format!(
        "name: test\npriority: 1\nmatch:\n  resource-types: [Instance]\non-failure: {on_failure}\nsteps:\n"
    );
    for (id, action, extra) in steps {
        text.push_str(&format!("  - id: {id}\n    action: {action}\n    retry: {{max-attempts: 3, initial-backoff-ms: 1, max-backoff-ms: 2}}\n{extra}"));
    }
    validate_text(&text, "test.yaml")
        .expect("test playbook is valid")
        .0
}

fn make_plan(playbook: &Playbook) -> (Plan, String) {
    let finding = parse_single_finding(FINDING, "finding").unwrap();
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: vec![],
    };
    (plan(&finding, playbook, reason), finding.raw.clone())
}

/// A world of named integer resources; each step sets its own resource to 1.
#[derive(Default)]
struct World {
    values: Mutex<BTreeMap<String, i64>>,
    /// step id -> remaining failures of that kind before apply succeeds
    failures: Mutex<BTreeMap<String, (u32, ErrorKind)>>,
    /// step id -> remaining failures of its pre-state read
    read_failures: Mutex<BTreeMap<String, u32>>,
    log: Mutex<Vec<String>>,
    /// step id -> resource that appears at the step's next apply
    drift: Mutex<BTreeMap<String, String>>,
    /// Steps whose first apply waits until all of them have started.
    apply_together: Option<Meeting>,
    /// Steps whose first undo waits until all of them have started.
    undo_together: Option<Meeting>,
    /// step id -> signal its verification waits for (once)
    verify_waits: Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>,
    /// step id -> signal its apply waits for (once)
    apply_waits: Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>,
    /// step id -> signal its pre-state read gives (each read)
    read_signals: Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>,
    /// Steps whose pre-state may be read ahead.
    prefetchable: Mutex<BTreeSet<String>>,
}

/// Steps that wait for each other once: only steps running concurrently get
/// past it, so an executor running them one after another hangs there.
struct Meeting {
    steps: Vec<&'static str>,
    barrier: tokio::sync::Barrier,
    met: AtomicBool,
}

impl Meeting {
    fn of(steps: Vec<&'static str>) -> Option<Self> {
        Some(Self {
            barrier: tokio::sync::Barrier::new(steps.len()),
            steps,
            met: AtomicBool::new(false),
        })
    }

    async fn attend(meeting: &Option<Self>, step: &str) {
        if let Some(m) = meeting
            && m.steps.contains(&step)
            && !m.met.load(Ordering::SeqCst)
        {
            m.barrier.wait().await;
            m.met.store(true, Ordering::SeqCst);
        }
    }
}

impl World {
    /// The first applies of `apply` and the first undos of `undo` each wait
    /// until all of them have started.
    fn together(apply: Vec<&'static str>, undo: Vec<&'static str>) -> Self {
        Self {
            apply_together: Meeting::of(apply),
            undo_together: Meeting::of(undo),
            ..Self::default()
        }
    }

    fn get(&self, key: &str) -> i64 {
        *self.values.lock().unwrap().get(key).unwrap_or(&0)
    }
    fn snapshot(&self) -> BTreeMap<String, i64> {
        self.values.lock().unwrap().clone()
    }
    /// The next apply of `step` also makes resource `late` (owned by `step`) appear,
    /// unchanged: like an ENI attached after the pre-state was read.
    fn drift_on_apply(&self, step: &str, late: &str) {
        self.drift
            .lock()
            .unwrap()
            .insert(step.to_string(), late.to_string());
    }
    /// The resources step `step` owns: its own name and `step.*`.
    fn owned(&self, step: &str) -> BTreeMap<String, i64> {
        let prefix = format!("{step}.");
        let values = self.values.lock().unwrap();
        let mut out: BTreeMap<String, i64> = values
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        out.insert(step.to_string(), *values.get(step).unwrap_or(&0));
        out
    }
    fn fail(&self, step: &str, times: u32, kind: ErrorKind) {
        self.failures
            .lock()
            .unwrap()
            .insert(step.to_string(), (times, kind));
    }
}

impl Actions for World {
    fn prefetchable(&self, _plan: &Plan, step: &PlannedStep) -> bool {
        self.prefetchable.lock().unwrap().contains(&step.id)
    }

    async fn read_pre_state(&self, _plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        self.log.lock().unwrap().push(format!("read {}", step.id));
        let signal = self.read_signals.lock().unwrap().get(&step.id).cloned();
        if let Some(signal) = signal {
            signal.notify_one();
        }
        if let Some(left) = self.read_failures.lock().unwrap().get_mut(&step.id)
            && *left > 0
        {
            *left -= 1;
            return Err(ActionError::new(
                ErrorKind::NotFound,
                step.id.clone(),
                "injected read failure",
                "test",
            ));
        }
        Ok(json!({ "value": self.get(&step.id), "owned": self.owned(&step.id) }))
    }

    async fn apply(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Value, ActionError> {
        Meeting::attend(&self.apply_together, &step.id).await;
        let wait = self.apply_waits.lock().unwrap().remove(&step.id);
        if let Some(signal) = wait {
            signal.notified().await;
        }
        self.log.lock().unwrap().push(format!("apply {}", step.id));
        if let Some((left, kind)) = self.failures.lock().unwrap().get_mut(&step.id)
            && *left > 0
        {
            *left -= 1;
            return Err(ActionError::new(
                *kind,
                step.id.clone(),
                "injected failure",
                "test",
            ));
        }
        {
            let mut values = self.values.lock().unwrap();
            let owned: Vec<String> = pre["owned"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_else(|| vec![step.id.clone()]);
            for key in owned {
                values.insert(key, 1);
            }
        }
        if let Some(late) = self.drift.lock().unwrap().remove(&step.id) {
            self.values.lock().unwrap().insert(late, 0);
        }
        Ok(json!({ "set": 1 }))
    }

    async fn verify(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        _pre: &Value,
        _outcome: &Value,
    ) -> Result<(), ActionError> {
        let wait = self.verify_waits.lock().unwrap().remove(&step.id);
        if let Some(signal) = wait {
            signal.notified().await;
        }
        if self.owned(&step.id).values().all(|v| *v == 1) {
            Ok(())
        } else {
            Err(ActionError::new(
                ErrorKind::Verification,
                step.id.clone(),
                "not applied",
                "test",
            ))
        }
    }

    async fn undo(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        _outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        Meeting::attend(&self.undo_together, &step.id).await;
        self.log.lock().unwrap().push(format!("undo {}", step.id));
        if let Some((left, kind)) = self
            .failures
            .lock()
            .unwrap()
            .get_mut(&format!("undo:{}", step.id))
            && *left > 0
        {
            *left -= 1;
            return Err(ActionError::new(
                *kind,
                step.id.clone(),
                "injected undo failure",
                "test",
            ));
        }
        let mut values = self.values.lock().unwrap();
        match pre["owned"].as_object() {
            Some(owned) => {
                for (key, value) in owned {
                    values.insert(key.clone(), value.as_i64().unwrap());
                }
            }
            None => {
                values.insert(step.id.clone(), pre["value"].as_i64().unwrap());
            }
        }
        Ok(json!({}))
    }

    async fn verify_undone(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<(), ActionError> {
        let back = match pre["owned"].as_object() {
            Some(owned) => owned
                .iter()
                .all(|(k, v)| self.get(k) == v.as_i64().unwrap()),
            None => self.get(&step.id) == pre["value"].as_i64().unwrap(),
        };
        if back {
            Ok(())
        } else {
            Err(ActionError::new(
                ErrorKind::Verification,
                step.id.clone(),
                "not undone",
                "test",
            ))
        }
    }

    async fn amend_pre_state(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Option<Amendment>, ActionError> {
        let mut amended = pre.clone();
        let mut added = Vec::new();
        for (key, value) in self.owned(&step.id) {
            if pre["owned"].get(&key).is_some() {
                continue;
            }
            if value == 1 {
                // Already contained by someone: its original state is unknown.
                return Err(ActionError::new(
                    ErrorKind::Refused,
                    key,
                    "already applied, original unknown",
                    "test",
                ));
            }
            amended["owned"][&key] = json!(value);
            added.push(key);
        }
        Ok((!added.is_empty()).then_some(Amendment {
            pre_state: amended,
            added,
        }))
    }

    fn describe_apply(&self, _plan: &Plan, step: &PlannedStep, _pre: &Value) -> Vec<String> {
        vec![format!("set {} = 1", step.id)]
    }
}

struct Approve(Decision);

impl Approver for Approve {
    async fn decide(&self, _plan: &Plan, _step: &PlannedStep) -> Decision {
        self.0.clone()
    }
}

/// Sees each record once it is stored.
type OnAppend = Box<dyn Fn(&JournalRecord) + Send + Sync>;

/// A local journal that fails every append after `budget` records: a process that died there.
struct Crashing {
    inner: LocalJournal,
    budget: AtomicU64,
    on_append: Option<OnAppend>,
}

impl JournalStore for Crashing {
    type Lock = <LocalJournal as JournalStore>::Lock;
    async fn lock(&self, case: &CaseId) -> Result<Self::Lock, JournalError> {
        self.inner.lock(case).await
    }
    async fn load(&self, case: &CaseId) -> Result<Vec<JournalRecord>, JournalError> {
        self.inner.load(case).await
    }
    async fn append(&self, case: &CaseId, record: &JournalRecord) -> Result<(), JournalError> {
        if self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_err()
        {
            return Err(JournalError::Io {
                location: "test".into(),
                message: "simulated crash".into(),
                source: None,
            });
        }
        self.inner.append(case, record).await?;
        if let Some(hook) = &self.on_append {
            hook(record);
        }
        Ok(())
    }
    async fn cases(&self) -> Result<Vec<CaseId>, JournalError> {
        self.inner.cases().await
    }
    async fn claim_resource(
        &self,
        claim: &ResourceClaim,
        take_over: Option<&ResourceClaim>,
    ) -> Result<ClaimAnswer, JournalError> {
        self.inner.claim_resource(claim, take_over).await
    }
    async fn resource_claim(&self, resource: &str) -> Result<Option<ResourceClaim>, JournalError> {
        self.inner.resource_claim(resource).await
    }
    async fn release_resource(&self, resource: &str, case: &CaseId) -> Result<bool, JournalError> {
        self.inner.release_resource(resource, case).await
    }
}

fn three_steps() -> Playbook {
    playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", ""),
            ("c", "enable-termination-protection", ""),
        ],
    )
}

async fn records(journal: &LocalJournal, case: &CaseId) -> Vec<JournalRecord> {
    journal.load(case).await.unwrap()
}

#[tokio::test]
async fn run_journals_pre_state_before_each_mutation_and_rerun_is_a_no_op() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed);
    assert_eq!(
        world.snapshot(),
        BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1)])
    );
    let recs = records(&journal, &plan.case_id).await;
    for step in ["a", "b", "c"] {
        let pos = |name: &str| {
            recs.iter()
                .position(|r| r.event.step() == Some(step) && r.event.name() == name)
                .unwrap()
        };
        assert!(pos("step-prepared") < pos("step-applied"));
        assert!(pos("step-applied") < pos("step-verified"));
    }
    assert!(cordon_core::journal::verify_chain(&recs).is_ok());

    let before = recs.len();
    world.log.lock().unwrap().clear();
    let again = exec.run(&plan, &raw).await.unwrap();
    assert!(again.no_op, "{}", again.message);
    assert_eq!(records(&journal, &plan.case_id).await.len(), before);
    assert!(
        world.log.lock().unwrap().is_empty(),
        "a no-op run touched the world"
    );
}

#[tokio::test]
async fn every_crash_point_resumes_to_completion_and_rolls_back_exactly() {
    crash_at_every_record(&three_steps(), |_, _, _| {}).await;
}

/// Crashes a run of `playbook` after each record in turn (a journal that
/// fails from then on), then rolls back, or resumes to completion and rolls
/// back; `after_resume(crash point, journal as the crash left it, world log
/// of the resume)` adds checks of the resume.
async fn crash_at_every_record(
    playbook: &Playbook,
    after_resume: impl Fn(u64, &[JournalRecord], &[String]),
) {
    let (plan, raw) = make_plan(playbook);
    let steps = plan.steps.len();
    // Learn the record count of an uncrashed run.
    let full = {
        let dir = tempdir();
        let journal = LocalJournal::new(&dir);
        let world = World::default();
        let approver = Approve(Decision::Pending);
        Executor::new(&world, &journal, &approver)
            .run(&plan, &raw)
            .await
            .unwrap();
        records(&journal, &plan.case_id).await.len() as u64
    };
    for crash_after in 0..full {
        for then_rollback in [false, true] {
            let dir = tempdir();
            let world = World::default();
            let approver = Approve(Decision::Pending);
            let crashing = Crashing {
                inner: LocalJournal::new(&dir),
                budget: AtomicU64::new(crash_after + 1),
                on_append: None,
            };
            let crashed = Executor::new(&world, &crashing, &approver)
                .run(&plan, &raw)
                .await;
            assert!(
                crashed.is_err() || crash_after + 1 >= full,
                "crash at {crash_after} did not stop the run"
            );
            let journal = LocalJournal::new(&dir);
            let before = records(&journal, &plan.case_id).await;
            // Nothing was changed without its pre-state journaled first.
            for (step, value) in world.snapshot() {
                if value == 1 {
                    at_record(&before, &step, "step-prepared");
                }
            }
            world.log.lock().unwrap().clear();
            let exec = Executor::new(&world, &journal, &approver);
            if then_rollback {
                let report = exec.rollback(&plan.case_id, "test").await.unwrap();
                assert_eq!(
                    report.status,
                    CaseStatus::RolledBack,
                    "crash at {crash_after}: {}",
                    report.message
                );
                assert!(
                    world.snapshot().values().all(|v| *v == 0),
                    "crash at {crash_after}: {:?}",
                    world.snapshot()
                );
                let again = exec.rollback(&plan.case_id, "test").await.unwrap();
                assert!(again.no_op);
            } else {
                let report = exec.resume(&plan.case_id).await.unwrap();
                assert_eq!(
                    report.status,
                    CaseStatus::Completed,
                    "crash at {crash_after}: {}",
                    report.message
                );
                assert_eq!(world.snapshot().len(), steps);
                assert!(world.snapshot().values().all(|v| *v == 1));
                after_resume(crash_after, &before, &world.log.lock().unwrap());
                exec.rollback(&plan.case_id, "test").await.unwrap();
                assert!(world.snapshot().values().all(|v| *v == 0));
            }
            let recs = records(&journal, &plan.case_id).await;
            assert!(cordon_core::journal::verify_chain(&recs).is_ok());
        }
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_journaled() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 2, ErrorKind::Throttled);
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let report = Executor::new(&world, &journal, &approver)
        .run(&plan, &raw)
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed);
    let recs = records(&journal, &plan.case_id).await;
    let failures: Vec<_> = recs
        .iter()
        .filter_map(|r| match &r.event {
            JournalEvent::StepFailed {
                step,
                attempt,
                retrying,
                ..
            } if step == "b" => Some((*attempt, *retrying)),
            _ => None,
        })
        .collect();
    assert_eq!(failures, vec![(1, true), (2, true)]);
    // The pre-state was read once: retries reuse it.
    assert_eq!(
        world
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "read b")
            .count(),
        1
    );
}

/// How [`b_fails_for_good`] ends under each policy: the case status and a, b, c.
const POLICY_ENDS: [(&str, CaseStatus, [i64; 3]); 3] = [
    ("stop", CaseStatus::Stopped, [1, 0, 0]),
    ("continue", CaseStatus::CompletedWithFailures, [1, 0, 1]),
    ("rollback", CaseStatus::RolledBack, [0, 0, 0]),
];

/// Three steps under `policy`, the second failing for good (not retried).
fn b_fails_for_good(policy: &str) -> (World, Plan, String) {
    let world = World::default();
    world.fail("b", 10, ErrorKind::NotFound);
    let pb = playbook(
        policy,
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", ""),
            ("c", "enable-termination-protection", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    (world, plan, raw)
}

#[tokio::test]
async fn failure_policies() {
    for (policy, expected_status, expected) in POLICY_ENDS {
        let dir = tempdir();
        let journal = LocalJournal::new(&dir);
        let (world, plan, raw) = b_fails_for_good(policy);
        let approver = Approve(Decision::Pending);
        let report = Executor::new(&world, &journal, &approver)
            .run(&plan, &raw)
            .await
            .unwrap();
        assert_eq!(
            report.status, expected_status,
            "{policy}: {}",
            report.message
        );
        let got = [world.get("a"), world.get("b"), world.get("c")];
        assert_eq!(got, expected, "{policy}");
        // NotFound is not retried.
        assert_eq!(
            world
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| *l == "apply b")
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn approvals_pause_resume_and_refuse() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", "    approval: required\n"),
            ("c", "enable-termination-protection", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);

    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::AwaitingApproval);
    assert_eq!((world.get("a"), world.get("b")), (1, 0));
    // Asking again while it waits writes nothing new.
    let waiting = records(&journal, &plan.case_id).await.len();
    let again = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(again.status, CaseStatus::AwaitingApproval);
    assert_eq!(records(&journal, &plan.case_id).await.len(), waiting);
    let report = exec
        .decide(
            &plan.case_id,
            "b",
            Decision::Approved {
                approver: "arn:aws:iam::111122223333:user/alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(world.get("c"), 1);
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| matches!(&r.event, JournalEvent::ApprovalGranted { approver, .. } if approver.ends_with("user/alice"))));

    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let refuse = Approve(Decision::Refused {
        approver: "bob".into(),
        reason: "too risky".into(),
    });
    let report = Executor::new(&world, &journal, &refuse)
        .run(&plan, &raw)
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Stopped);
    assert_eq!((world.get("a"), world.get("b"), world.get("c")), (1, 0, 0));
    let recs = records(&journal, &plan.case_id).await;
    assert!(
        recs.iter()
            .any(|r| matches!(&r.event, JournalEvent::StepNotRun { step, .. } if step == "c"))
    );
}

#[tokio::test]
async fn dry_run_changes_nothing_and_writes_no_journal() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, _) = make_plan(&three_steps());
    let steps = Executor::new(&world, &journal, &approver)
        .dry_run(&plan)
        .await;
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[1].calls, vec!["set b = 1".to_string()]);
    assert!(world.snapshot().is_empty());
    assert!(journal.cases().await.unwrap().is_empty());
}

#[tokio::test]
async fn local_store_rejects_a_second_claim_of_a_record_and_drops_a_torn_tail() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    Executor::new(&world, &journal, &approver)
        .run(&plan, &raw)
        .await
        .unwrap();
    let recs = records(&journal, &plan.case_id).await;
    let err = journal.append(&plan.case_id, &recs[1]).await.unwrap_err();
    assert!(
        matches!(err, JournalError::Conflict { seq: 1, .. }),
        "{err}"
    );

    let path = journal.case_dir(&plan.case_id).join("journal.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\": 99, \"torn");
    std::fs::write(&path, text).unwrap();
    assert_eq!(records(&journal, &plan.case_id).await.len(), recs.len());

    let _held = journal.lock(&plan.case_id).await.unwrap();
    let locked = journal.lock(&plan.case_id).await.unwrap_err();
    assert!(matches!(locked, JournalError::Locked { .. }), "{locked}");
}

/// An append finds its place from where this process left the journal, not
/// by re-reading every record; a journal another process (another store)
/// wrote to since, or left with a torn tail, is read again in full, so a
/// stale sequence number is still a conflict and the torn bytes still go.
#[tokio::test]
async fn local_store_reads_again_a_journal_written_elsewhere_since_its_last_append() {
    let dir = tempdir();
    let ours = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    Executor::new(&world, &ours, &approver)
        .run(&plan, &raw)
        .await
        .unwrap();
    let case = &plan.case_id;
    let recs = records(&ours, case).await;
    let next = |seq: u64, prev: &JournalRecord| {
        JournalRecord::new(
            seq,
            "2026-11-27T00:00:00Z",
            prev.hash(),
            JournalEvent::CaseFinished {
                status: CaseStatus::Completed,
            },
        )
    };
    let theirs = LocalJournal::new(&dir);
    let n = recs.len() as u64;
    let their_record = next(n, recs.last().unwrap());
    theirs.append(case, &their_record).await.unwrap();
    let stale = ours.append(case, &next(n, recs.last().unwrap())).await;
    assert!(
        matches!(stale, Err(JournalError::Conflict { seq, .. }) if seq == n),
        "{stale:?}"
    );
    let path = ours.case_dir(case).join("journal.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"seq\": 99, \"torn");
    std::fs::write(&path, text).unwrap();
    ours.append(case, &next(n + 1, &their_record))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("torn"), "{text}");
    assert_eq!(records(&ours, case).await.len() as u64, n + 2);
    // And its own appends follow one another without a re-read.
    let last = records(&ours, case).await.pop().unwrap();
    ours.append(case, &next(n + 2, &last)).await.unwrap();
    assert_eq!(records(&theirs, case).await.len() as u64, n + 3);
}

fn tempdir() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cordon-exec-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// Case lifecycle (issue 9). Each of these failed on the code before the fix.

#[tokio::test]
async fn resume_after_a_stop_runs_every_step_not_run() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 1, ErrorKind::NotFound);
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!((world.get("a"), world.get("b"), world.get("c")), (1, 0, 0));
    let report = exec.resume(&plan.case_id).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(
        (world.get("a"), world.get("b"), world.get("c")),
        (1, 1, 1),
        "resume skipped a step journaled as not run"
    );
}

/// A step whose pre-state read failed was tried: the journal says it failed,
/// and must not also call it "not run" (found by the case report; the graph
/// executor stopped marking the failed step as the exception).
#[tokio::test]
async fn a_step_failed_before_its_pre_state_is_failed_not_also_not_run() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world
        .read_failures
        .lock()
        .unwrap()
        .insert("b".to_string(), 1);
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    let not_run: Vec<String> = records(&journal, &plan.case_id)
        .await
        .iter()
        .filter_map(|r| match &r.event {
            JournalEvent::StepNotRun { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(not_run, ["c"], "only the step never tried is not run");
    let report = exec.resume(&plan.case_id).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!((world.get("a"), world.get("b"), world.get("c")), (1, 1, 1));
}

#[tokio::test]
async fn approving_a_later_gated_step_of_a_stopped_case_runs_it() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", ""),
            (
                "c",
                "enable-termination-protection",
                "    approval: required\n",
            ),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 1, ErrorKind::NotFound);
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    let report = exec
        .decide(
            &plan.case_id,
            "c",
            Decision::Approved {
                approver: "arn:aws:iam::111122223333:user/alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!((world.get("b"), world.get("c")), (1, 1));
}

#[tokio::test]
async fn a_rolled_back_case_runs_again_in_a_new_epoch() {
    let pb = playbook(
        "rollback",
        &[("a", "tag-resource", ""), ("b", "isolate-instance", "")],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 1, ErrorKind::NotFound);
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!((world.get("a"), world.get("b")), (0, 0));
    // The cause is fixed and the finding arrives again: it is contained this time.
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert!(!report.no_op);
    assert_eq!((world.get("a"), world.get("b")), (1, 1));
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| r.event.name() == "epoch-opened"));
    // Rolling back the new epoch puts everything back again.
    let report = exec.rollback(&plan.case_id, "test").await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!((world.get("a"), world.get("b")), (0, 0));
}

#[tokio::test]
async fn drift_after_the_pre_state_is_amended_not_verified_forever() {
    // Step `b` owns every resource named `b*`; one appears after its pre-state was read.
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.drift_on_apply("b", "b.late");
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    let report = if report.status == CaseStatus::Completed {
        report
    } else {
        exec.resume(&plan.case_id).await.unwrap()
    };
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!((world.get("b"), world.get("b.late")), (1, 1));
    let recs = records(&journal, &plan.case_id).await;
    assert!(
        recs.iter()
            .any(|r| r.event.name() == "step-pre-state-amended"),
        "the amendment is journaled"
    );
    exec.rollback(&plan.case_id, "test").await.unwrap();
    assert_eq!((world.get("b"), world.get("b.late")), (0, 0));
}

#[tokio::test]
async fn a_step_whose_target_cannot_be_resolved_never_ends_completed() {
    // An ASIA key of an IAM user: no role to revoke sessions of.
    let finding = r#"{"schemaVersion":"2.0","accountId":"111122223333","region":"us-east-1","partition":"aws",
"id":"abcabcabcabcabcabcabcabcabcabc01","type":"UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS","severity":8,
"resource":{"resourceType":"AccessKey","accessKeyDetails":{"accessKeyId":"ASIAY34FZKBOKMUTVV7A","userName":"alice","userType":"IAMUser"}},
"service":{"resourceRole":"TARGET"}}"#;
    let text = "name: t\npriority: 1\nmatch:\n  resource-types: [AccessKey]\non-failure: stop\nsteps:\n  - id: revoke\n    action: revoke-role-sessions\n";
    let pb = validate_text(text, "t.yaml").unwrap().0;
    let finding = parse_single_finding(finding, "finding").unwrap();
    let reason = RouteReason {
        playbook: pb.name.clone(),
        priority: pb.priority,
        matched: vec![],
    };
    let plan = plan(&finding, &pb, reason);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Approved {
        approver: "alice".into(),
    });
    let report = Executor::new(&world, &journal, &approver)
        .run(&plan, &finding.raw)
        .await
        .unwrap();
    assert_ne!(
        report.status,
        CaseStatus::Completed,
        "nothing was contained: {}",
        report.message
    );
}

#[tokio::test]
async fn continue_failures_end_completed_with_failures_and_resume_retries_them() {
    let pb = playbook(
        "continue",
        &[("a", "tag-resource", ""), ("b", "isolate-instance", "")],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 1, ErrorKind::NotFound);
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::CompletedWithFailures);
    assert_eq!(report.outcome, Outcome::CompletedWithFailures);
    assert_eq!(report.outcome.exit_code(), 6);
    // The same finding again changes nothing and says the same.
    let again = exec.run(&plan, &raw).await.unwrap();
    assert!(again.no_op);
    assert_eq!(again.outcome.exit_code(), 6);
    let report = exec.resume(&plan.case_id).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(world.get("b"), 1);
}

/// The AKIA finding and a playbook over it: deactivate (credential
/// containment, undo gated), then a step that fails.
fn key_case(on_failure: &str) -> (Plan, String) {
    let finding = r#"{"schemaVersion":"2.0","accountId":"111122223333","region":"us-east-1","partition":"aws",
"id":"abcabcabcabcabcabcabcabcabcabc02","type":"UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS","severity":8,
"resource":{"resourceType":"AccessKey","accessKeyDetails":{"accessKeyId":"AKIAY34FZKBOKMUTVV7A","userName":"alice","userType":"IAMUser"}},
"service":{"resourceRole":"TARGET"}}"#;
    let text = format!(
        "name: k\npriority: 1\nmatch:\n  resource-types: [AccessKey]\non-failure: {on_failure}\nsteps:\n  - id: deactivate\n    action: deactivate-access-key\n  - id: rotate\n    action: rotate-access-key\n    retry: {{max-attempts: 1}}\n"
    );
    let pb = validate_text(&text, "k.yaml").unwrap().0;
    let finding = parse_single_finding(finding, "finding").unwrap();
    let reason = RouteReason {
        playbook: pb.name.clone(),
        priority: pb.priority,
        matched: vec![],
    };
    (plan(&finding, &pb, reason), finding.raw.clone())
}

/// Approves every undo it is asked about.
struct ApproveUndo;

impl Approver for ApproveUndo {
    async fn decide(&self, _plan: &Plan, _step: &PlannedStep) -> Decision {
        Decision::Pending
    }
    async fn decide_undo(&self, _plan: &Plan, _step: &PlannedStep, _gate: UndoGate) -> Decision {
        Decision::Approved {
            approver: "arn:aws:iam::111122223333:user/carol".into(),
        }
    }
}

#[tokio::test]
async fn automatic_rollback_keeps_credential_containment_and_a_requested_one_asks() {
    let (plan, raw) = key_case("rollback");
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("rotate", 1, ErrorKind::NotFound);
    let pending = Approve(Decision::Pending);
    let report = Executor::new(&world, &journal, &pending)
        .run(&plan, &raw)
        .await
        .unwrap();
    assert_eq!(
        report.status,
        CaseStatus::RolledBackExceptCredentials,
        "{}",
        report.message
    );
    assert_eq!(report.outcome.exit_code(), 1);
    assert_eq!(world.get("deactivate"), 1, "the key stays deactivated");
    assert!(
        report.message.contains("`deactivate`"),
        "{}",
        report.message
    );
    // A requested rollback without approval keeps it too.
    let report = Executor::new(&world, &journal, &pending)
        .rollback(&plan.case_id, "test")
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::RolledBackExceptCredentials);
    assert_eq!(world.get("deactivate"), 1);
    // With approval, the key is re-armed and the case fully rolled back.
    let report = Executor::new(&world, &journal, &ApproveUndo)
        .rollback(&plan.case_id, "test")
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 0);
    assert_eq!(world.get("deactivate"), 0);
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| matches!(&r.event,
        JournalEvent::UndoApproved { step, approver, .. } if step == "deactivate" && approver.ends_with("carol"))));
}

#[tokio::test]
async fn a_failed_step_rolled_back_exactly_exits_four() {
    let pb = playbook(
        "rollback",
        &[("a", "tag-resource", ""), ("b", "isolate-instance", "")],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    world.fail("b", 1, ErrorKind::NotFound);
    let approver = Approve(Decision::Pending);
    let report = Executor::new(&world, &journal, &approver)
        .run(&plan, &raw)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.outcome.exit_code(), 4);
}

#[tokio::test]
async fn an_approval_that_times_out_stops_the_case_and_can_still_be_given() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", "    approval: required\n"),
            ("c", "enable-termination-protection", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let timeout = Approve(Decision::TimedOut {
        waited: std::time::Duration::from_millis(5),
    });
    let exec = Executor::new(&world, &journal, &timeout);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped);
    assert_eq!(report.outcome, Outcome::ApprovalTimedOut);
    assert_eq!(report.outcome.exit_code(), 124);
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| r.event.name() == "approval-timed-out"));
    assert!(
        recs.iter()
            .any(|r| matches!(&r.event, JournalEvent::StepNotRun { step, .. } if step == "b"))
    );
    let report = exec
        .decide(
            &plan.case_id,
            "b",
            Decision::Approved {
                approver: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!((world.get("b"), world.get("c")), (1, 1));
}

/// Sets the interrupt flag while step `a` applies, as a signal would.
struct Interrupting<'f> {
    world: World,
    flag: &'f AtomicBool,
}

impl Actions for Interrupting<'_> {
    async fn read_pre_state(&self, plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        self.world.read_pre_state(plan, step).await
    }
    async fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Value, ActionError> {
        self.world.apply(plan, step, pre).await
    }
    async fn apply_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        progress: &Progress<'_>,
    ) -> Result<Value, ActionError> {
        progress.record(json!({"phase": "begin"})).await?;
        self.flag.store(true, Ordering::SeqCst);
        let out = self.world.apply(plan, step, pre).await;
        progress.record(json!({"phase": "end"})).await?;
        out
    }
    async fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: &Value,
    ) -> Result<(), ActionError> {
        self.world.verify(plan, step, pre, outcome).await
    }
    async fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        self.world.undo(plan, step, pre, outcome).await
    }
    async fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<(), ActionError> {
        self.world.verify_undone(plan, step, pre).await
    }
    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre: &Value) -> Vec<String> {
        self.world.describe_apply(plan, step, pre)
    }
}

#[tokio::test]
async fn an_interrupt_finishes_the_step_in_flight_journals_and_stops() {
    let flag = AtomicBool::new(false);
    let actions = Interrupting {
        world: World::default(),
        flag: &flag,
    };
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    let report = Executor::new(&actions, &journal, &approver)
        .interrupt_on(&flag)
        .run(&plan, &raw)
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(actions.world.get("a"), 1, "the step in flight finished");
    assert_eq!(actions.world.get("b"), 0);
    let recs = records(&journal, &plan.case_id).await;
    let names: Vec<&str> = recs.iter().map(|r| r.event.name()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("step-progress") < pos("step-applied"), "{names:?}");
    assert!(names.contains(&"case-interrupted"), "{names:?}");
    flag.store(false, Ordering::SeqCst);
    let report = Executor::new(&actions, &journal, &approver)
        .resume(&plan.case_id)
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
}

#[tokio::test]
async fn an_updated_finding_is_journaled_replans_untouched_steps_and_asks_when_it_matters() {
    // Nothing is applied before `a` is approved, so every step is re-plannable.
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", "    approval: required\n"),
            ("b", "isolate-instance", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::AwaitingApproval);

    // Same steps, new count and severity within the band: journaled, nothing else.
    let raw2 = raw.replace("\"severity\":8", "\"severity\":8.5");
    let finding2 = parse_single_finding(&raw2, "finding").unwrap();
    let plan2 = plan_for(&finding2, &pb);
    let before = records(&journal, &plan.case_id).await.len();
    let report = exec.run(&plan2, &raw2).await.unwrap();
    assert_eq!(
        report.status,
        CaseStatus::AwaitingApproval,
        "{}",
        report.message
    );
    let recs = records(&journal, &plan.case_id).await;
    assert_eq!(recs[before].event.name(), "finding-updated");

    // A new ENI on the instance: no step is applied yet, so both are re-planned.
    let raw3 = raw2.replace(
        "\"networkInterfaces\":[]",
        "\"networkInterfaces\":[{\"networkInterfaceId\":\"eni-0123456789abcdef0\",\"vpcId\":\"vpc-0123456789abcdef0\",\"securityGroups\":[]}]",
    );
    let finding3 = parse_single_finding(&raw3, "finding").unwrap();
    let plan3 = plan_for(&finding3, &pb);
    let report = exec.run(&plan3, &raw3).await.unwrap();
    assert_eq!(
        report.status,
        CaseStatus::AwaitingApproval,
        "{}",
        report.message
    );
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| r.event.name() == "plan-amended"));
    let state = cordon_core::journal::CaseState::from_records(&plan.case_id, &recs).unwrap();
    assert_eq!(
        state.plan.step("a").unwrap().target,
        plan3.step("a").unwrap().target
    );
    assert_eq!(
        state.plan.step("b").unwrap().target,
        plan3.step("b").unwrap().target
    );
    assert_ne!(
        state.plan.step("b").unwrap().target,
        plan.step("b").unwrap().target
    );

    // The same playbook and steps, but the severity left its band (high → medium):
    // that matters too, so it asks, and nothing is journaled as amended.
    let raw_medium = raw3.replace("\"severity\":8.5", "\"severity\":5");
    let medium = parse_single_finding(&raw_medium, "finding").unwrap();
    let plan_medium = plan_for(&medium, &pb);
    let before = records(&journal, &plan.case_id).await.len();
    let report = exec.run(&plan_medium, &raw_medium).await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::AwaitingDecision,
        "{}",
        report.message
    );
    assert!(report.message.contains("severity"), "{}", report.message);
    let recs = records(&journal, &plan.case_id).await;
    assert_eq!(
        recs[before..]
            .iter()
            .map(|r| r.event.name())
            .collect::<Vec<_>>(),
        ["finding-updated"]
    );

    // Another playbook answers the updated finding: that matters, so it asks.
    let other = playbook("stop", &[("z", "tag-resource", "")]);
    let mut other = other;
    other.name = "other".into();
    let plan4 = plan_for(&finding3, &other);
    let report = exec.run(&plan4, &raw3).await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::AwaitingDecision,
        "{}",
        report.message
    );
    assert!(
        report.message.contains("--accept-replan"),
        "{}",
        report.message
    );

    // Accepted: a new epoch on top; rollback unwinds both to the original state.
    let report = exec
        .decide(
            &plan.case_id,
            "a",
            Decision::Approved {
                approver: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let report = Executor::new(&world, &journal, &pending)
        .accept_replan(true)
        .run(&plan4, &raw3)
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(world.get("z"), 1);
    let report = exec.rollback(&plan.case_id, "test").await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert!(
        world.snapshot().values().all(|v| *v == 0),
        "{:?}",
        world.snapshot()
    );
}

fn plan_for(finding: &cordon_core::finding::Finding, pb: &Playbook) -> Plan {
    let reason = RouteReason {
        playbook: pb.name.clone(),
        priority: pb.priority,
        matched: vec![],
    };
    plan(finding, pb, reason)
}

#[tokio::test]
async fn the_loop_guard_stops_a_resource_contained_and_rolled_back_too_often() {
    let pb = playbook(
        "rollback",
        &[("a", "tag-resource", ""), ("b", "isolate-instance", "")],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let guard = LoopGuard {
        max_triggers: 3,
        window: std::time::Duration::from_secs(3600),
    };
    let exec = Executor::new(&world, &journal, &approver).loop_guard(Some(guard));
    for round in 0..3 {
        world.fail("b", 1, ErrorKind::NotFound);
        let report = exec.run(&plan, &raw).await.unwrap();
        assert_eq!(
            report.status,
            CaseStatus::RolledBack,
            "round {round}: {}",
            report.message
        );
    }
    // A different finding on the same instance counts too.
    let raw2 = raw.replace(
        "f00dfeedf00dfeedf00dfeedf00dfeed",
        "f00dfeedf00dfeedf00dfeedf00dbeef",
    );
    let finding2 = parse_single_finding(&raw2, "finding").unwrap();
    let plan2 = plan_for(&finding2, &pb);
    let report = exec.run(&plan2, &raw2).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 1);
    assert!(
        report.message.contains("instance:i-0123456789abcdef0"),
        "{}",
        report.message
    );
    assert_eq!(world.get("a"), 0, "nothing was applied");
    let recs = records(&journal, &plan2.case_id).await;
    assert!(recs.iter().any(|r| r.event.name() == "loop-guard-tripped"));
}

#[tokio::test]
async fn every_rollback_crash_point_rolls_back_exactly_on_the_next_rollback() {
    let (plan, raw) = make_plan(&three_steps());
    for crash_after_rollback_record in 0.. {
        let dir = tempdir();
        let world = World::default();
        let approver = Approve(Decision::Pending);
        let journal = LocalJournal::new(&dir);
        Executor::new(&world, &journal, &approver)
            .run(&plan, &raw)
            .await
            .unwrap();
        let written = records(&journal, &plan.case_id).await.len() as u64;
        let crashing = Crashing {
            inner: LocalJournal::new(&dir),
            budget: AtomicU64::new(crash_after_rollback_record + 1),
            on_append: None,
        };
        let crashed = Executor::new(&world, &crashing, &approver)
            .rollback(&plan.case_id, "test")
            .await;
        let finished = crashed.is_ok();
        let report = Executor::new(&world, &journal, &approver)
            .rollback(&plan.case_id, "test")
            .await
            .unwrap();
        assert_eq!(
            report.status,
            CaseStatus::RolledBack,
            "crash after rollback record {crash_after_rollback_record}: {}",
            report.message
        );
        assert!(
            world.snapshot().values().all(|v| *v == 0),
            "crash after rollback record {crash_after_rollback_record}: {:?}",
            world.snapshot()
        );
        let recs = records(&journal, &plan.case_id).await;
        assert!(cordon_core::journal::verify_chain(&recs).is_ok());
        assert!(recs.len() as u64 > written);
        if finished {
            break;
        }
    }
}

#[tokio::test]
async fn every_crash_point_of_a_resume_after_a_stop_and_of_a_new_epoch_finishes() {
    for scenario in ["resume-after-stop", "new-epoch"] {
        let policy = if scenario == "new-epoch" {
            "rollback"
        } else {
            "stop"
        };
        let pb = playbook(
            policy,
            &[
                ("a", "tag-resource", ""),
                ("b", "isolate-instance", ""),
                ("c", "enable-termination-protection", ""),
            ],
        );
        let (plan, raw) = make_plan(&pb);
        for crash_after in 0.. {
            let dir = tempdir();
            let world = World::default();
            world.fail("b", 1, ErrorKind::NotFound);
            let approver = Approve(Decision::Pending);
            let journal = LocalJournal::new(&dir);
            Executor::new(&world, &journal, &approver)
                .run(&plan, &raw)
                .await
                .unwrap();
            let crashing = Crashing {
                inner: LocalJournal::new(&dir),
                budget: AtomicU64::new(crash_after + 1),
                on_append: None,
            };
            let exec = Executor::new(&world, &crashing, &approver);
            let crashed = if scenario == "new-epoch" {
                exec.run(&plan, &raw).await
            } else {
                exec.resume(&plan.case_id).await
            };
            let finished = crashed.is_ok();
            let exec = Executor::new(&world, &journal, &approver);
            let report = exec.resume(&plan.case_id).await;
            let report = match report {
                Ok(r) if r.status == CaseStatus::Completed => r,
                // The crash came before the new epoch was journaled: deliver again.
                _ => exec.run(&plan, &raw).await.unwrap(),
            };
            assert_eq!(
                report.status,
                CaseStatus::Completed,
                "{scenario}, crash at {crash_after}: {}",
                report.message
            );
            assert!(
                world.snapshot().values().all(|v| *v == 1),
                "{scenario} {crash_after}"
            );
            exec.rollback(&plan.case_id, "test").await.unwrap();
            assert!(
                world.snapshot().values().all(|v| *v == 0),
                "{scenario} {crash_after}"
            );
            if finished {
                break;
            }
        }
    }
}

#[tokio::test]
async fn the_summary_tells_time_to_contain_and_time_waiting_for_approval() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", "    approval: required\n"),
            ("c", "enable-termination-protection", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    exec.run(&plan, &raw).await.unwrap();
    let summary_of = |recs: &[JournalRecord]| {
        let state = cordon_core::journal::CaseState::from_records(&plan.case_id, recs).unwrap();
        cordon_core::summary::summarize(&state, recs)
    };
    let waiting = summary_of(&records(&journal, &plan.case_id).await);
    assert_eq!(waiting.status, "awaiting-approval");
    assert_eq!(
        waiting.time_to_contain_ms, None,
        "isolation is not done yet"
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    exec.decide(
        &plan.case_id,
        "b",
        Decision::Approved {
            approver: "alice".into(),
        },
    )
    .await
    .unwrap();
    let done = summary_of(&records(&journal, &plan.case_id).await);
    assert_eq!(done.status, "completed");
    assert!(done.approval_wait_ms >= 30, "{done:?}");
    let ttc = done.time_to_contain_ms.expect("contained");
    assert!(ttc >= done.approval_wait_ms, "{done:?}");
    assert!(done.flags.is_empty(), "{done:?}");
}

#[tokio::test]
async fn an_undo_that_fails_leaves_the_rollback_incomplete_and_rollback_again_finishes_it() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "enable-termination-protection", ""),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Approved {
        approver: "alice".into(),
    });
    let exec = Executor::new(&world, &journal, &approver);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.outcome, Outcome::Done, "{}", report.message);

    // Step `a`'s undo fails for good (its resource is gone): `b` is still undone.
    world.fail("undo:a", 1, ErrorKind::NotFound);
    let report = exec.rollback(&plan.case_id, "test").await.unwrap();
    assert_eq!(
        report.status,
        CaseStatus::RollbackIncomplete,
        "{}",
        report.message
    );
    assert_eq!(report.outcome, Outcome::RollbackIncomplete);
    assert_eq!(report.outcome.exit_code(), 5);
    assert_eq!(world.get("b"), 0, "the other step is undone");
    assert_eq!(world.get("a"), 1, "the failed undo left `a` applied");

    // The same finding cannot run again until the rollback is finished.
    let report = exec.run(&plan, &raw).await.unwrap();
    assert!(report.no_op, "{}", report.message);
    assert!(
        report.message.contains("cordon rollback"),
        "{}",
        report.message
    );

    // Fixed: rollback again continues where it stopped.
    let report = exec.rollback(&plan.case_id, "test").await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 0);
    assert_eq!(world.snapshot().values().sum::<i64>(), 0);
}

#[test]
fn every_outcome_has_its_own_exit_code_and_meaning() {
    use strum::IntoEnumIterator;
    let outcomes: Vec<Outcome> = Outcome::iter().collect();
    let codes: std::collections::BTreeSet<u8> = outcomes.iter().map(|o| o.exit_code()).collect();
    assert_eq!(
        codes.len(),
        outcomes.len(),
        "two outcomes share an exit code"
    );
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6, 124],
        "the documented exit codes (README, docs/lifecycle.md) changed"
    );
    let meanings: std::collections::BTreeSet<&str> = outcomes.iter().map(|o| o.meaning()).collect();
    assert_eq!(meanings.len(), outcomes.len());
}

/// A second finding (another id, so another case) on the same instance.
fn second_finding_plan(playbook: &Playbook) -> (Plan, String) {
    let text = FINDING.replace(
        "f00dfeedf00dfeedf00dfeedf00dfeed",
        "0badc0de0badc0de0badc0de0badc0de",
    );
    let finding = parse_single_finding(&text, "finding").unwrap();
    let reason = RouteReason {
        playbook: playbook.name.clone(),
        priority: playbook.priority,
        matched: vec![],
    };
    (plan(&finding, playbook, reason), finding.raw.clone())
}

/// A journal store, a world whose resources both cases share (one instance),
/// and the plans of two findings on it.
struct TwoCases {
    journal: LocalJournal,
    world: World,
    approver: Approve,
    first: Plan,
    first_raw: String,
    second: Plan,
    second_raw: String,
}

fn two_cases() -> TwoCases {
    let (first, first_raw) = make_plan(&three_steps());
    let (second, second_raw) = second_finding_plan(&three_steps());
    assert_ne!(first.case_id, second.case_id);
    TwoCases {
        journal: LocalJournal::new(tempdir()),
        world: World::default(),
        approver: Approve(Decision::Pending),
        first,
        first_raw,
        second,
        second_raw,
    }
}

fn kinds(records: &[JournalRecord]) -> Vec<&'static str> {
    records.iter().map(|r| r.event.name()).collect()
}

#[tokio::test]
async fn a_second_case_on_a_held_resource_stops_naming_the_holder_and_runs_once_it_is_rolled_back()
{
    const INSTANCE: &str = "instance:i-0123456789abcdef0";
    for first_rollback in ["holder", "refused"] {
        let t = two_cases();
        let (journal, world) = (&t.journal, &t.world);
        let (first, first_raw, second, second_raw) =
            (&t.first, &t.first_raw, &t.second, &t.second_raw);
        let exec = Executor::new(world, journal, &t.approver);

        let report = exec.run(first, first_raw).await.unwrap();
        assert_eq!(report.status, CaseStatus::Completed);
        let held = journal.resource_claim(INSTANCE).await.unwrap().unwrap();
        assert_eq!(held.case_id, first.case_id, "kept while contained");

        // Before claims, this case journaled the first case's containment (1)
        // as the original state, and its rollback left the instance contained.
        let report = exec.run(second, second_raw).await.unwrap();
        assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
        assert_eq!(report.outcome, Outcome::NeedsHuman);
        assert!(
            report
                .message
                .contains(&format!("held by case {}", first.case_id)),
            "{}",
            report.message
        );
        let recs = records(journal, &second.case_id).await;
        assert!(
            !kinds(&recs).contains(&"step-prepared"),
            "the second case read a pre-state: {:?}",
            kinds(&recs)
        );
        assert!(recs.iter().any(|r| matches!(&r.event,
            JournalEvent::ResourceBusy { resource, holder, .. }
                if resource == INSTANCE && *holder == first.case_id)));

        match first_rollback {
            "holder" => {
                // Roll back the holder, then deliver the second finding again:
                // it contains the instance from the true original state.
                let report = exec.rollback(&first.case_id, "test").await.unwrap();
                assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
                assert_eq!(journal.resource_claim(INSTANCE).await.unwrap(), None);
                assert!(world.snapshot().values().all(|v| *v == 0));
                let report = exec.run(second, second_raw).await.unwrap();
                assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
                assert!(world.snapshot().values().all(|v| *v == 1));
                let report = exec.rollback(&second.case_id, "test").await.unwrap();
                assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
            }
            _ => {
                // Roll back the refused case first: it changed nothing, holds
                // nothing, and leaves the holder's containment alone.
                let report = exec.rollback(&second.case_id, "test").await.unwrap();
                assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
                assert!(world.snapshot().values().all(|v| *v == 1));
                let held = journal.resource_claim(INSTANCE).await.unwrap().unwrap();
                assert_eq!(held.case_id, first.case_id);
                let report = exec.rollback(&first.case_id, "test").await.unwrap();
                assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
            }
        }
        assert!(
            world.snapshot().values().all(|v| *v == 0),
            "{first_rollback} first: not back at the original state: {:?}",
            world.snapshot()
        );
        assert_eq!(journal.resource_claim(INSTANCE).await.unwrap(), None);
        for case in [&first.case_id, &second.case_id] {
            assert!(cordon_core::journal::verify_chain(&records(journal, case).await).is_ok());
        }
    }
}

#[tokio::test]
async fn rolling_back_a_case_whose_resource_another_case_holds_is_refused() {
    let t = two_cases();
    let (journal, world) = (&t.journal, &t.world);
    let (first, first_raw, second, second_raw) = (&t.first, &t.first_raw, &t.second, &t.second_raw);
    let exec = Executor::new(world, journal, &t.approver);
    exec.run(first, first_raw).await.unwrap();
    // The first case as an older cordon left it: contained, but no claim.
    std::fs::remove_dir_all(journal.claims_dir()).unwrap();
    let report = exec.run(second, second_raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);

    let before = records(journal, &first.case_id).await.len();
    let report = exec.rollback(&first.case_id, "test").await.unwrap();
    assert_eq!(report.outcome, Outcome::NeedsHuman, "{}", report.message);
    assert!(
        report
            .message
            .contains(&format!("held contained by case {}", second.case_id)),
        "{}",
        report.message
    );
    assert!(!report.message.contains('\n'));
    assert!(
        world.snapshot().values().all(|v| *v == 1),
        "the refused rollback opened what the other case holds"
    );
    assert_eq!(records(journal, &first.case_id).await.len(), before);

    // In the order the claims allow, both roll back.
    let report = exec.rollback(&second.case_id, "test").await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    let report = exec.rollback(&first.case_id, "test").await.unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert!(world.snapshot().values().all(|v| *v == 0));
}

#[tokio::test]
async fn a_stale_claim_of_a_rolled_back_case_is_taken_over_and_journaled() {
    const INSTANCE: &str = "instance:i-0123456789abcdef0";
    let t = two_cases();
    let (journal, world) = (&t.journal, &t.world);
    let (first, first_raw, second, second_raw) = (&t.first, &t.first_raw, &t.second, &t.second_raw);
    let exec = Executor::new(world, journal, &t.approver);
    exec.run(first, first_raw).await.unwrap();
    exec.rollback(&first.case_id, "test").await.unwrap();
    // A crash between the rollback and letting go leaves the claim behind.
    let stale = ResourceClaim::new(INSTANCE, &first.case_id, "2026-01-01T00:00:00Z".into());
    assert_eq!(
        journal.claim_resource(&stale, None).await.unwrap(),
        ClaimAnswer::Claimed { new: true }
    );
    let report = exec.run(second, second_raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let recs = records(journal, &second.case_id).await;
    assert!(recs.iter().any(|r| matches!(&r.event,
        JournalEvent::ResourceClaimed { resource, taken_over_from: Some(from) }
            if resource == INSTANCE && *from == first.case_id)));
    let held = journal.resource_claim(INSTANCE).await.unwrap().unwrap();
    assert_eq!(held.case_id, second.case_id);
}

/// The fixture finding about another instance (and so another case).
fn finding_on(instance: &str) -> (Plan, String) {
    let raw = FINDING
        .replace("i-0123456789abcdef0", instance)
        .replace("f00dfeedf00dfeedf00dfeedf00dfeed", &format!("f-{instance}"));
    let finding = parse_single_finding(&raw, "finding").unwrap();
    let pb = playbook(
        "stop",
        &[("a", "tag-resource", ""), ("b", "isolate-instance", "")],
    );
    (plan_for(&finding, &pb), raw)
}

#[tokio::test]
async fn the_fleet_cap_counts_isolations_in_its_window_across_cases() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);

    // An isolation journaled an hour ago: outside a 10-minute window.
    let (old, old_raw) = finding_on("i-0000000000000000a");
    let an_hour_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let opened = JournalRecord::new(
        0,
        an_hour_ago.clone(),
        cordon_core::journal::GENESIS_HASH,
        JournalEvent::CaseOpened {
            plan: Box::new(old.clone()),
            finding_sha256: cordon_core::executor::finding_digest(&old_raw),
            cordon_version: "test".to_string(),
            provenance: None,
        },
    );
    let prepared = JournalRecord::new(
        1,
        an_hour_ago,
        opened.hash(),
        JournalEvent::StepPrepared {
            step: "b".to_string(),
            attempt: 1,
            pre_state: json!({}),
        },
    );
    journal.append(&old.case_id, &opened).await.unwrap();
    journal.append(&old.case_id, &prepared).await.unwrap();

    let cap = |max| {
        Some(FleetCap {
            max_instances: max,
            window: std::time::Duration::from_secs(600),
        })
    };
    let (first, first_raw) = finding_on("i-0000000000000000b");
    let exec = Executor::new(&world, &journal, &approver).fleet_cap(cap(1));
    let report = exec.run(&first, &first_raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);

    let (second, second_raw) = finding_on("i-0000000000000000c");
    let before = world.snapshot();
    let report = exec.run(&second, &second_raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 1);
    assert!(report.message.contains("fleet cap"), "{}", report.message);
    assert_eq!(world.snapshot(), before, "nothing was applied");
    let recs = records(&journal, &second.case_id).await;
    let tripped = recs
        .iter()
        .find_map(|r| match &r.event {
            JournalEvent::FleetCapTripped {
                isolated, limit, ..
            } => Some((isolated, *limit)),
            _ => None,
        })
        .expect("the trip is journaled");
    assert_eq!(tripped, (&vec!["i-0000000000000000b".to_string()], 1));
    assert!(
        recs.iter().any(|r| r.event.name() == "step-not-run"),
        "the steps are marked not run"
    );

    // The first case again: no new containment, no trip.
    let report = exec.run(&first, &first_raw).await.unwrap();
    assert!(report.no_op, "{}", report.message);

    // With room for two, the stopped case goes on when delivered again.
    let exec = Executor::new(&world, &journal, &approver).fleet_cap(cap(2));
    let report = exec.run(&second, &second_raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
}

/// A switch turned on after `after` checks.
struct SwitchAfter {
    checks: AtomicU64,
    after: u64,
}

impl PauseSwitch for SwitchAfter {
    fn paused(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Paused>> + Send + '_>> {
        let n = self.checks.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            (n >= self.after).then(|| Paused {
                switch: "the test switch".to_string(),
                unpause: "turn it off".to_string(),
            })
        })
    }
}

#[tokio::test]
async fn the_pause_switch_stops_before_the_next_step_and_resume_goes_on() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&three_steps());
    // Off for the first step, on from the second.
    let switch = SwitchAfter {
        checks: AtomicU64::new(0),
        after: 1,
    };
    let exec = Executor::new(&world, &journal, &approver).pause_switch(&switch);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 1);
    let second = &plan.steps[1].id;
    assert!(
        report.message.contains(&format!(
            "paused before step `{second}` by the test switch: turn it off"
        )),
        "{}",
        report.message
    );
    let done: Vec<i64> = plan.steps.iter().map(|s| world.get(&s.id)).collect();
    assert_eq!(done, vec![1, 0, 0], "only the first step ran");
    let recs = records(&journal, &plan.case_id).await;
    assert!(recs.iter().any(|r| matches!(
        &r.event,
        JournalEvent::CasePaused { before_step, .. } if before_step == second
    )));

    let off = SwitchAfter {
        checks: AtomicU64::new(0),
        after: u64::MAX,
    };
    let exec = Executor::new(&world, &journal, &approver).pause_switch(&off);
    let report = exec.resume(&plan.case_id).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let done: Vec<i64> = plan.steps.iter().map(|s| world.get(&s.id)).collect();
    assert_eq!(done, vec![1, 1, 1]);
}

/// Who may approve: an identity the playbook does not name is refused when
/// the decision is made (nothing journaled as granted, the step does not
/// run); a named one is accepted. With self-approval forbidden, the identity
/// that opened the case (its provenance's caller) may not approve, another may.
#[tokio::test]
async fn only_the_named_approvers_and_never_the_opener_when_forbidden_may_approve() {
    const LEAD: &str = "arn:aws:sts::111122223333:assumed-role/IncidentLead/*";
    let pb = playbook(
        "stop",
        &[(
            "a",
            "tag-resource",
            &format!("    approvers: [\"{LEAD}\"]\n    self-approval: forbidden\n"),
        )],
    );
    let (plan, raw) = make_plan(&pb);
    let step = plan.step("a").unwrap();
    assert!(step.approval.required, "approvers imply approval");
    assert!(step.approval.is_restricted());
    let opener = "arn:aws:sts::111122223333:assumed-role/IncidentLead/alice";
    let provenance = cordon_core::provenance::Provenance {
        caller: Some(opener.to_string()),
        ..Default::default()
    };
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();

    // Someone else's role, at the prompt: refused, nothing granted, nothing run.
    let mallory = Approve(Decision::Approved {
        approver: "arn:aws:sts::111122223333:assumed-role/Developer/mallory (prompt)".into(),
    });
    let err = Executor::new(&world, &journal, &mallory)
        .provenance(Some(provenance.clone()))
        .run(&plan, &raw)
        .await
        .expect_err("not an approver");
    assert!(matches!(err, ExecError::NotAnApprover { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("only arn:aws:sts::111122223333:assumed-role/IncidentLead/*"),
        "{err}"
    );
    let names: Vec<&str> = records(&journal, &plan.case_id)
        .await
        .iter()
        .map(|r| r.event.name())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert!(names.contains(&"approval-requested"), "{names:?}");
    assert!(!names.contains(&"approval-granted"), "{names:?}");
    assert_eq!(world.get("a"), 0);
    // The restricted plan is journaled in format 3.
    let first = &records(&journal, &plan.case_id).await[0];
    assert_eq!(first.format_version(), 3);

    // The opener, from another terminal: a lead, but self-approval is forbidden.
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    let err = exec
        .decide(
            &plan.case_id,
            "a",
            Decision::Approved {
                approver: format!("{opener} (cordon approve)"),
            },
        )
        .await
        .expect_err("self-approval");
    assert!(err.to_string().contains("self-approval"), "{err}");
    assert_eq!(world.get("a"), 0);

    // Another lead: granted, and the step runs.
    let report = exec
        .decide(
            &plan.case_id,
            "a",
            Decision::Approved {
                approver:
                    "arn:aws:sts::111122223333:assumed-role/IncidentLead/bob (cordon approve)"
                        .into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert_eq!(world.get("a"), 1);
}

#[test]
fn approver_patterns_must_be_arns() {
    let text = "name: t\nmatch: {resource-types: [Instance]}\nsteps:\n  - id: a\n    action: tag-resource\n    approvers: [\"alice\", \"arn:aws:iam::111122223333:user/bob\"]\n";
    let problems = validate_text(text, "t.yaml").expect_err("alice is not an ARN");
    let text = format!("{problems:?}");
    assert!(text.contains("approvers[0]"), "{text}");
    assert!(!text.contains("approvers[1]"), "{text}");
}

// ---------------------------------------------------------------------------
// Step graphs (issue 11, item 3). Concurrency is proven structurally, never by
// timing: the steps that must run together each wait on a barrier that only
// opens once all of them have started, so an executor running them one after
// another never gets past the first (the timeout turns that into a failure).

/// Fails the test instead of hanging when steps that must overlap do not.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: the steps that must run together never did"))
}

/// The position of the first record of `kind` for `step`.
fn at_record(recs: &[JournalRecord], step: &str, kind: &str) -> usize {
    recs.iter()
        .position(|r| r.event.step() == Some(step) && r.event.name() == kind)
        .unwrap_or_else(|| panic!("no {kind} of {step}: {:?}", kinds(recs)))
}

/// a and b need nothing; c needs both.
fn two_independent_then_one() -> Playbook {
    playbook(
        "stop",
        &[
            ("a", "isolate-instance", "    needs: []\n"),
            ("b", "tag-resource", "    needs: []\n"),
            ("c", "enable-termination-protection", "    needs: [a, b]\n"),
        ],
    )
}

#[tokio::test]
async fn independent_steps_run_together_each_journaled_ahead_by_one_writer() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::together(vec!["a", "b"], vec![]);
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&two_independent_then_one());
    let report = within(
        "run",
        Executor::new(&world, &journal, &approver).run(&plan, &raw),
    )
    .await
    .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let recs = records(&journal, &plan.case_id).await;
    // One writer: sequence numbers 0, 1, 2, ... and an unbroken hash chain.
    assert!(recs.iter().enumerate().all(|(i, r)| r.seq == i as u64));
    assert!(cordon_core::journal::verify_chain(&recs).is_ok());
    // Write-ahead per step: pre-state, then apply, then verification.
    for step in ["a", "b", "c"] {
        assert!(at_record(&recs, step, "step-prepared") < at_record(&recs, step, "step-applied"));
        assert!(at_record(&recs, step, "step-applied") < at_record(&recs, step, "step-verified"));
    }
    // Interleaved: each of a and b was prepared before the other applied.
    assert!(at_record(&recs, "a", "step-prepared") < at_record(&recs, "b", "step-applied"));
    assert!(at_record(&recs, "b", "step-prepared") < at_record(&recs, "a", "step-applied"));
    // c waited for both.
    for need in ["a", "b"] {
        assert!(at_record(&recs, need, "step-verified") < at_record(&recs, "c", "step-prepared"));
    }
}

#[tokio::test]
async fn a_step_waiting_for_approval_does_not_hold_up_independent_steps() {
    let pb = playbook(
        "stop",
        &[
            (
                "a",
                "isolate-instance",
                "    approval: required\n    needs: []\n",
            ),
            ("b", "tag-resource", "    needs: []\n"),
            ("c", "enable-termination-protection", "    needs: [a]\n"),
            ("d", "snapshot-volumes", "    needs: [b]\n"),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let pending = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &pending);
    let report = exec.run(&plan, &raw).await.unwrap();
    assert_eq!(
        report.status,
        CaseStatus::AwaitingApproval,
        "{}",
        report.message
    );
    assert_eq!(
        [
            world.get("a"),
            world.get("b"),
            world.get("c"),
            world.get("d")
        ],
        [0, 1, 0, 1],
        "b and d do not need a: they ran while a waits; c needs a: it waits too"
    );
    let recs = records(&journal, &plan.case_id).await;
    assert!(
        recs.iter().all(|r| r.event.step() != Some("c")),
        "{:?}",
        kinds(&recs)
    );
    let report = exec
        .decide(
            &plan.case_id,
            "a",
            Decision::Approved {
                approver: "arn:aws:iam::111122223333:user/alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    assert!(world.snapshot().values().all(|v| *v == 1));
}

#[tokio::test]
async fn a_failure_under_stop_lets_running_steps_finish_starts_nothing_new_and_resume_follows_the_graph()
 {
    // a and b run together (barrier); a fails for good; b, already running,
    // finishes; c (needs a) and d (needs b) never start.
    let pb = playbook(
        "stop",
        &[
            ("a", "isolate-instance", "    needs: []\n"),
            ("b", "tag-resource", "    needs: []\n"),
            ("c", "enable-termination-protection", "    needs: [a]\n"),
            ("d", "snapshot-volumes", "    needs: [b]\n"),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    // b's verification waits until a's final failure is journaled, so b is
    // still running when the executor learns of it, however the two race.
    let a_failed = Arc::new(tokio::sync::Notify::new());
    let signal = a_failed.clone();
    let journal = Crashing {
        inner: LocalJournal::new(&dir),
        budget: AtomicU64::new(u64::MAX),
        on_append: Some(Box::new(move |record: &JournalRecord| {
            if let JournalEvent::StepFailed {
                step,
                retrying: false,
                ..
            } = &record.event
                && step == "a"
            {
                signal.notify_one();
            }
        })),
    };
    let world = World::together(vec!["a", "b"], vec![]);
    world.fail("a", 1, ErrorKind::NotFound);
    world
        .verify_waits
        .lock()
        .unwrap()
        .insert("b".into(), a_failed);
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver);
    let report = within("run", exec.run(&plan, &raw)).await.unwrap();
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert!(report.step_failed);
    assert_eq!(
        [
            world.get("a"),
            world.get("b"),
            world.get("c"),
            world.get("d")
        ],
        [0, 1, 0, 0]
    );
    let recs = records(&journal.inner, &plan.case_id).await;
    assert!(
        recs.iter()
            .any(|r| r.event.step() == Some("b") && r.event.name() == "step-verified")
    );
    for never in ["c", "d"] {
        let names: Vec<&str> = recs
            .iter()
            .filter(|r| r.event.step() == Some(never))
            .map(|r| r.event.name())
            .collect();
        assert_eq!(names, ["step-not-run"], "{never}");
    }
    // Resume runs exactly the steps not done: a, c and d, never b again.
    world.log.lock().unwrap().clear();
    let report = within("resume", exec.resume(&plan.case_id)).await;
    let report = report.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let applied: BTreeSet<String> = world
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("apply ").map(str::to_string))
        .collect();
    assert_eq!(
        applied,
        BTreeSet::from(["a".into(), "c".into(), "d".into()])
    );
}

#[tokio::test]
async fn rollback_undoes_a_step_only_after_every_step_needing_it_concurrently_where_independent() {
    // a first; b and c need a; d needs b and c. Undo: d, then b and c
    // together (barrier), then a.
    let pb = playbook(
        "stop",
        &[
            ("a", "isolate-instance", "    needs: []\n"),
            ("b", "tag-resource", "    needs: [a]\n"),
            ("c", "enable-termination-protection", "    needs: [a]\n"),
            ("d", "snapshot-volumes", "    needs: [b, c]\n"),
        ],
    );
    let (plan, raw) = make_plan(&pb);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::together(vec!["b", "c"], vec!["b", "c"]);
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver);
    let report = within("run", exec.run(&plan, &raw)).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    world.log.lock().unwrap().clear();
    let report = within("rollback", exec.rollback(&plan.case_id, "test"))
        .await
        .unwrap();
    assert_eq!(report.status, CaseStatus::RolledBack, "{}", report.message);
    assert!(world.snapshot().values().all(|v| *v == 0));
    let log = world.log.lock().unwrap().clone();
    let pos = |s: &str| log.iter().position(|l| l == &format!("undo {s}")).unwrap();
    assert!(pos("d") < pos("b") && pos("d") < pos("c"), "{log:?}");
    assert!(pos("b") < pos("a") && pos("c") < pos("a"), "{log:?}");
    let recs = records(&journal, &plan.case_id).await;
    for (dependent, need) in [("d", "b"), ("d", "c"), ("b", "a"), ("c", "a")] {
        assert!(
            at_record(&recs, dependent, "step-rollback-verified")
                < at_record(&recs, need, "step-rolled-back"),
            "{dependent} is verified undone before {need} is undone: {:?}",
            kinds(&recs)
        );
    }
}

#[tokio::test]
async fn every_crash_point_among_concurrent_steps_resumes_exactly_the_steps_not_done_and_rolls_back_exactly()
 {
    crash_at_every_record(&two_independent_then_one(), |crash_after, before, log| {
        // Exactly the steps with no journaled apply are applied again; a step
        // applied before the crash is only verified.
        let not_applied: BTreeSet<String> = ["a", "b", "c"]
            .into_iter()
            .filter(|s| {
                !before
                    .iter()
                    .any(|r| r.event.step() == Some(*s) && r.event.name() == "step-applied")
            })
            .map(str::to_string)
            .collect();
        let applied: BTreeSet<String> = log
            .iter()
            .filter_map(|l| l.strip_prefix("apply ").map(str::to_string))
            .collect();
        assert_eq!(applied, not_applied, "crash at {crash_after}");
    })
    .await;
}

/// One step at a time (a Step Functions `step` task per step): each call runs
/// exactly its step, write-ahead; a done step is a no-op; a step before its
/// needs is refused; the case rests as `run` would leave it.
#[tokio::test]
async fn steps_run_one_at_a_time_end_where_run_ends() {
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let (plan, raw) = make_plan(&two_independent_then_one());
    let exec = Executor::new(&world, &journal, &approver);
    let opened = exec.open_case(&plan, &raw).await.unwrap();
    assert_eq!(opened.status, None, "{}", opened.message);
    assert!(world.log.lock().unwrap().is_empty(), "open ran a step");
    let case = &plan.case_id;

    let early = exec.run_step(case, "c").await.unwrap_err();
    match &early {
        ExecError::NotReady { waiting, .. } => assert_eq!(waiting, &["a", "b"]),
        other => panic!("expected NotReady, got {other}"),
    }
    assert_eq!(world.get("c"), 0);

    let a = exec.run_step(case, "a").await.unwrap();
    assert_eq!(a.status, None, "{}", a.message);
    assert!(a.step.as_ref().is_some_and(|s| s.verified));
    assert_eq!(world.snapshot(), BTreeMap::from([("a".into(), 1)]));
    let again = exec.run_step(case, "a").await.unwrap();
    assert!(again.no_op, "{}", again.message);
    assert_eq!(
        world
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "apply a")
            .count(),
        1,
        "a done step ran again"
    );
    assert!(matches!(
        exec.run_step(case, "c").await,
        Err(ExecError::NotReady { .. })
    ));
    exec.run_step(case, "b").await.unwrap();
    let last = exec.run_step(case, "c").await.unwrap();
    assert_eq!(last.status, Some(CaseStatus::Completed), "{}", last.message);
    assert_eq!(last.outcome, Outcome::Done);
    let recs = records(&journal, case).await;
    assert!(cordon_core::journal::verify_chain(&recs).is_ok());
    for step in ["a", "b", "c"] {
        assert!(at_record(&recs, step, "step-prepared") < at_record(&recs, step, "step-applied"));
    }
    assert!(matches!(
        exec.run_step(case, "nope").await,
        Err(ExecError::UnknownStep { .. })
    ));
}

/// A step failing under each policy, run step by step, leaves the case as a
/// whole run does: stopped, completed with failures, rolled back.
#[tokio::test]
async fn a_failed_step_run_alone_follows_its_policy_as_run_does() {
    for (policy, expected_status, expected) in POLICY_ENDS {
        let dir = tempdir();
        let journal = LocalJournal::new(&dir);
        let (world, plan, raw) = b_fails_for_good(policy);
        let approver = Approve(Decision::Pending);
        let exec = Executor::new(&world, &journal, &approver);
        exec.open_case(&plan, &raw).await.unwrap();
        let mut last = None;
        for step in ["a", "b", "c"] {
            last = Some(exec.run_step(&plan.case_id, step).await.unwrap());
        }
        let last = last.unwrap();
        assert_eq!(
            last.status,
            Some(expected_status),
            "{policy}: {}",
            last.message
        );
        let got = [world.get("a"), world.get("b"), world.get("c")];
        assert_eq!(got, expected, "{policy}");
    }
}

/// A Config evaluation of `ec2-imdsv2-check` on i-0a1b2c3d4e5f60718, recorded at `at`.
fn config_evaluation(rule: &str, at: &str) -> (cordon_core::finding::Finding, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/config/instance-imdsv2-detail.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("2024-06-12T10:10:00.000Z", at)
        .replace("ec2-imdsv2-check", rule);
    let finding = parse_single_finding(&text, "evaluation").unwrap();
    (finding, text)
}

/// Opens a case for the `ec2-imdsv2-check` evaluation recorded at 10:10 and
/// runs it to completion (then rolls it back, when `roll_back`); then runs
/// the evaluation of the same rule on the same instance recorded at 11:10.
/// Returns the journal's directory, both plans and the second run's report.
async fn the_rule_fails_again(roll_back: bool) -> (std::path::PathBuf, Plan, Plan, Report) {
    let pb = playbook("rollback", &[("a", "tag-resource", "")]);
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = World::default();
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver).loop_guard(Some(LoopGuard::default()));
    let (first, raw1) = config_evaluation("ec2-imdsv2-check", "2024-06-12T10:10:00.000Z");
    let plan1 = plan_for(&first, &pb);
    assert_eq!(
        plan1.finding.config_rule.as_deref(),
        Some("ec2-imdsv2-check")
    );
    let report = exec.run(&plan1, &raw1).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    // The same event again is the same case: nothing new, no trip.
    let again = exec.run(&plan1, &raw1).await.unwrap();
    assert_eq!(again.status, CaseStatus::Completed, "{}", again.message);
    if roll_back {
        let rolled = exec.rollback(&plan1.case_id, "test").await.unwrap();
        assert_eq!(rolled.status, CaseStatus::RolledBack, "{}", rolled.message);
    }
    let (second, raw2) = config_evaluation("ec2-imdsv2-check", "2024-06-12T11:10:00.000Z");
    let plan2 = plan_for(&second, &pb);
    assert_ne!(
        plan2.case_id, plan1.case_id,
        "a later evaluation is a new case"
    );
    let report = exec.run(&plan2, &raw2).await.unwrap();
    (dir, plan1, plan2, report)
}

#[tokio::test]
async fn a_resource_failing_the_same_config_rule_again_escalates_instead_of_remediating() {
    // Far below the count limit (3), the guard escalates the second failure.
    let (dir, plan1, plan2, report) = the_rule_fails_again(false).await;
    assert_eq!(report.status, CaseStatus::Stopped, "{}", report.message);
    assert_eq!(report.outcome.exit_code(), 1);
    for words in [
        "instance:i-0a1b2c3d4e5f60718",
        "failed Config rule \"ec2-imdsv2-check\" again",
        plan1.case_id.as_str(),
        "escalated to a human",
    ] {
        assert!(
            report.message.contains(words),
            "{words}: {}",
            report.message
        );
    }
    let journal = LocalJournal::new(&dir);
    let recs = records(&journal, &plan2.case_id).await;
    assert!(recs.iter().any(|r| r.event.name() == "loop-guard-tripped"));
    assert!(
        !recs.iter().any(|r| matches!(
            r.event,
            JournalEvent::StepPrepared { .. } | JournalEvent::StepApplied { .. }
        )),
        "nothing was remediated again"
    );

    // Another rule on the same resource is another question: the loop guard
    // lets it through (the resource lock of the completed case still holds it).
    let (world, approver) = (World::default(), Approve(Decision::Pending));
    let exec = Executor::new(&world, &journal, &approver).loop_guard(Some(LoopGuard::default()));
    let pb = playbook("rollback", &[("a", "tag-resource", "")]);
    let (other, raw3) = config_evaluation("ec2-instance-no-public-ip", "2024-06-12T11:20:00.000Z");
    let plan3 = plan_for(&other, &pb);
    let report = exec.run(&plan3, &raw3).await.unwrap();
    assert!(
        !report.message.contains("Config rule"),
        "{}",
        report.message
    );
    let recs = records(&journal, &plan3.case_id).await;
    assert!(!recs.iter().any(|r| r.event.name() == "loop-guard-tripped"));
}

#[tokio::test]
async fn a_config_rule_failing_again_after_a_rollback_is_no_loop() {
    let (_, _, _, report) = the_rule_fails_again(true).await;
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
}

/// a, then b and c (both need a); b's pre-state may be read ahead, c's not.
fn prefetch_plan() -> (Plan, String) {
    make_plan(&playbook(
        "stop",
        &[
            ("a", "isolate-instance", "    needs: []\n"),
            ("b", "tag-resource", "    needs: [a]\n"),
            ("c", "enable-termination-protection", "    needs: [a]\n"),
        ],
    ))
}

fn prefetching_world() -> World {
    let world = World::default();
    world.prefetchable.lock().unwrap().insert("b".into());
    world
}

fn position(log: &[String], line: &str) -> usize {
    log.iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line} not in {log:?}"))
}

#[tokio::test]
async fn a_pre_state_read_ahead_is_read_while_the_step_it_needs_runs_and_journaled_when_its_step_starts()
 {
    let (plan, raw) = prefetch_plan();
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = prefetching_world();
    // a's apply waits for b's pre-state read: only a read ahead lets the run
    // finish (an executor reading b's pre-state after a hangs here).
    let read_b = Arc::new(tokio::sync::Notify::new());
    world
        .read_signals
        .lock()
        .unwrap()
        .insert("b".into(), read_b.clone());
    world.apply_waits.lock().unwrap().insert("a".into(), read_b);
    let approver = Approve(Decision::Pending);
    let exec = Executor::new(&world, &journal, &approver);
    let report = within("run", exec.run(&plan, &raw)).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let log = world.log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|l| *l == "read b").count(), 1, "{log:?}");
    assert!(
        position(&log, "read b") < position(&log, "apply a"),
        "{log:?}"
    );
    // c is not read ahead: its pre-state is read once a is done.
    assert!(
        position(&log, "apply a") < position(&log, "read c"),
        "{log:?}"
    );
    // The read ahead is journaled as b's pre-state when b starts, after a
    // is verified, and before b applies.
    let recs = records(&journal, &plan.case_id).await;
    assert!(at_record(&recs, "a", "step-verified") < at_record(&recs, "b", "step-prepared"));
    assert!(at_record(&recs, "b", "step-prepared") < at_record(&recs, "b", "step-applied"));
    assert_eq!(world.get("b"), 1);
}

#[tokio::test]
async fn a_pre_state_read_ahead_that_is_too_old_or_failed_is_read_again_when_its_step_starts() {
    // Too old: a zero window reads every pre-state when its step starts.
    let (plan, raw) = prefetch_plan();
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = prefetching_world();
    let approver = Approve(Decision::Pending);
    let exec =
        Executor::new(&world, &journal, &approver).prefetch_window(std::time::Duration::ZERO);
    let report = within("run", exec.run(&plan, &raw)).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let log = world.log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|l| *l == "read b").count(), 1, "{log:?}");
    assert!(
        position(&log, "apply a") < position(&log, "read b"),
        "{log:?}"
    );

    // Failed: the read ahead fails, the step reads for itself and goes on.
    let dir = tempdir();
    let journal = LocalJournal::new(&dir);
    let world = prefetching_world();
    world.read_failures.lock().unwrap().insert("b".into(), 1);
    let exec = Executor::new(&world, &journal, &approver);
    let report = within("run", exec.run(&plan, &raw)).await.unwrap();
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let log = world.log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|l| *l == "read b").count(), 2, "{log:?}");
    assert!(position(&log, "apply a") < log.iter().rposition(|l| l == "read b").unwrap());
    let recs = records(&journal, &plan.case_id).await;
    assert!(
        !recs
            .iter()
            .any(|r| r.event.step() == Some("b") && r.event.name() == "step-failed"),
        "a failed read ahead is no failure of the step"
    );
}
