//! The executor against an in-memory world: every crash point can be resumed
//! and rolled back, policies and approvals behave, and the journal is written
//! ahead of every mutation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cordon_core::executor::{ActionError, Actions, Approver, Decision, ErrorKind, Executor};
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
    log: Mutex<Vec<String>>,
    /// step id -> resource that appears at the step's next apply
    drift: Mutex<BTreeMap<String, String>>,
}

impl World {
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
    async fn read_pre_state(&self, _plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        self.log.lock().unwrap().push(format!("read {}", step.id));
        Ok(json!({ "value": self.get(&step.id), "owned": self.owned(&step.id) }))
    }

    async fn apply(
        &self,
        _plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Value, ActionError> {
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
        self.log.lock().unwrap().push(format!("undo {}", step.id));
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

/// A local journal that fails every append after `budget` records: a process that died there.
struct Crashing {
    inner: LocalJournal,
    budget: AtomicU64,
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
        self.inner.append(case, record).await
    }
    async fn cases(&self) -> Result<Vec<CaseId>, JournalError> {
        self.inner.cases().await
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
    let (plan, raw) = make_plan(&three_steps());
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
            };
            let crashed = Executor::new(&world, &crashing, &approver)
                .run(&plan, &raw)
                .await;
            assert!(
                crashed.is_err() || crash_after + 1 >= full,
                "crash at {crash_after} did not stop the run"
            );
            let journal = LocalJournal::new(&dir);
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
                assert_eq!(world.snapshot().len(), 3);
                assert!(world.snapshot().values().all(|v| *v == 1));
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

#[tokio::test]
async fn failure_policies() {
    for (policy, expected_status, expected) in [
        ("stop", CaseStatus::Stopped, [1, 0, 0]),
        ("continue", CaseStatus::Completed, [1, 0, 1]),
        ("rollback", CaseStatus::RolledBack, [0, 0, 0]),
    ] {
        let dir = tempdir();
        let journal = LocalJournal::new(&dir);
        let world = World::default();
        world.fail("b", 10, ErrorKind::NotFound);
        let approver = Approve(Decision::Pending);
        let pb = playbook(
            policy,
            &[
                ("a", "tag-resource", ""),
                ("b", "isolate-instance", ""),
                ("c", "enable-termination-protection", ""),
            ],
        );
        let (plan, raw) = make_plan(&pb);
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

#[tokio::test]
async fn approving_a_later_gated_step_of_a_stopped_case_runs_it() {
    let pb = playbook(
        "stop",
        &[
            ("a", "tag-resource", ""),
            ("b", "isolate-instance", ""),
            ("c", "enable-termination-protection", "    approval: required\n"),
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
