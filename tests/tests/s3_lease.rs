//! Concurrent workers on one case over the S3 journal (issue 10 item 7): the
//! case's lease keeps a second worker (a Step Functions retry overlapping a
//! slow first attempt) from re-applying a step the first is still applying;
//! a killed worker's case is taken over once its lease expires; a worker
//! whose lease was taken over is fenced before its next change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cordon_aws::actions::AwsActions;
use cordon_aws::client::AwsClients;
use cordon_aws::evidence::EvidenceStore;
use cordon_aws::evidence_bucket::{self, DEFAULT_KMS_ALIAS};
use cordon_aws::s3_journal::S3Journal;
use cordon_core::action::Reversibility;
use cordon_core::executor::{ActionError, Actions, Amendment, ExecError, Executor, Progress};
use cordon_core::journal::{CaseStatus, JournalError, JournalStore};
use cordon_core::plan::{Plan, PlannedStep};
use cordon_tests::{ApproveAll, emulator, plan_for, s3_journal_world, scratch_dir};
use serde_json::{Value, json};
use tokio::sync::Notify;

const BUCKET: &str = "cordon-lease";
const PREFIX: &str = "cases/";
/// The step a slow worker is held in, after its pre-state is journaled.
const HELD_STEP: &str = "protect";

/// [`AwsActions`] that stop inside `apply` of [`HELD_STEP`] until let go: a
/// worker slowed down mid-step (a long AWS call, a paused Lambda).
struct HeldActions {
    inner: AwsActions,
    /// Whether this worker is the slow one (the others run straight through).
    hold: bool,
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Actions for HeldActions {
    async fn read_pre_state(&self, plan: &Plan, step: &PlannedStep) -> Result<Value, ActionError> {
        self.inner.read_pre_state(plan, step).await
    }

    async fn apply(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Value, ActionError> {
        self.inner.apply(plan, step, pre).await
    }

    async fn apply_with_progress(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        progress: &Progress<'_>,
    ) -> Result<Value, ActionError> {
        if self.hold && step.id == HELD_STEP {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner
            .apply_with_progress(plan, step, pre, progress)
            .await
    }

    async fn verify(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: &Value,
    ) -> Result<(), ActionError> {
        self.inner.verify(plan, step, pre, outcome).await
    }

    async fn amend_pre_state(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<Option<Amendment>, ActionError> {
        self.inner.amend_pre_state(plan, step, pre).await
    }

    async fn undo(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
        outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        self.inner.undo(plan, step, pre, outcome).await
    }

    async fn verify_undone(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        pre: &Value,
    ) -> Result<(), ActionError> {
        self.inner.verify_undone(plan, step, pre).await
    }

    fn describe_apply(&self, plan: &Plan, step: &PlannedStep, pre: &Value) -> Vec<String> {
        self.inner.describe_apply(plan, step, pre)
    }
}

/// One worker: its own clients (so its calls are counted apart), journal
/// store (its own lease holder id) and evidence directory.
struct Worker {
    clients: AwsClients,
    journal: S3Journal,
    actions: HeldActions,
}

impl Worker {
    fn new(config: &aws_config::SdkConfig, name: &str, lease: Duration, hold: bool) -> Self {
        let clients = AwsClients::from_sdk_config(config).unwrap();
        let journal = S3Journal::new(clients.clone(), BUCKET, PREFIX).with_lease(lease);
        let inner = AwsActions::new(
            clients.clone(),
            EvidenceStore::LocalDir(scratch_dir(&format!("lease-{name}"))),
        );
        Worker {
            clients,
            journal,
            actions: HeldActions {
                inner,
                hold,
                entered: Arc::new(Notify::new()),
                release: Arc::new(Notify::new()),
            },
        }
    }

    async fn run(
        &self,
        plan: &Plan,
        raw: &str,
    ) -> Result<cordon_core::executor::Report, ExecError> {
        // Boxed: the executor's future is large, and a test thread's stack is small.
        Box::pin(Executor::new(&self.actions, &self.journal, &ApproveAll).run(plan, raw)).await
    }

    fn mutating(&self) -> u64 {
        self.clients.calls.mutating_total()
    }
}

/// A compromised instance, the evidence bucket holding the journal, and the
/// plan of a three-step containment that holds on [`HELD_STEP`].
async fn case(aws: &cordon_tests::EmulatorGuard) -> (Plan, String) {
    let (_, raw) = s3_journal_world(aws, BUCKET).await;
    let plan = plan_for(
        &raw,
        json!({
            "name": "lease-test",
            "match": {},
            "on-failure": "stop",
            "steps": [
                {"id": "tag", "action": "tag-resource", "with": {"tags": {"cordon:case-id": "{case_id}"}}},
                {"id": HELD_STEP, "action": "enable-termination-protection"},
                {"id": "isolate", "action": "isolate-instance"},
            ]
        }),
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| s.reversibility != Reversibility::Irreversible)
    );
    (plan, raw)
}

/// The events of the case's journal, by name.
async fn events(journal: &S3Journal, plan: &Plan) -> Vec<(String, Option<String>)> {
    journal
        .load(&plan.case_id)
        .await
        .expect("load")
        .iter()
        .map(|r| {
            (
                r.event.name().to_string(),
                r.event.step().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_on_a_case_in_flight_changes_nothing() {
    let aws = emulator().await;
    let (plan, raw) = case(&aws).await;
    let config = aws.sdk_config().clone();
    let first = Worker::new(&config, "first", Duration::from_secs(60), true);
    let second = Worker::new(&config, "second", Duration::from_secs(60), false);

    let (first_report, second_report) = tokio::join!(first.run(&plan, &raw), async {
        // The first worker is inside `protect`, its pre-state journaled.
        first.actions.entered.notified().await;
        let report = second.run(&plan, &raw).await;
        first.actions.release.notify_one();
        report
    });

    let err = second_report.expect_err("the second worker must not run the case");
    assert!(
        matches!(err, ExecError::Journal(JournalError::Locked { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("lease"), "{err}");
    assert_eq!(second.mutating(), 0, "the second worker changed something");

    let report = first_report.expect("first worker");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let applied: Vec<String> = events(&first.journal, &plan)
        .await
        .into_iter()
        .filter(|(name, _)| name == "step-applied")
        .filter_map(|(_, step)| step)
        .collect();
    assert_eq!(
        applied,
        ["tag", HELD_STEP, "isolate"],
        "each step applied once"
    );

    // Released at the end: the next worker (the next task) need not wait.
    let next = Worker::new(&config, "next", Duration::from_secs(60), false);
    let report = next.run(&plan, &raw).await.expect("next worker");
    assert!(report.no_op, "{}", report.message);
    assert_eq!(next.mutating(), 2, "only taking the lease and releasing it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_case_is_taken_over_when_its_lease_expires() {
    let aws = emulator().await;
    let (plan, raw) = case(&aws).await;
    let config = aws.sdk_config().clone();
    let lease = Duration::from_secs(2);
    let killed = Arc::new(Worker::new(&config, "killed", lease, true));

    let task = {
        let killed = Arc::clone(&killed);
        let (plan, raw) = (plan.clone(), raw.clone());
        tokio::spawn(async move { killed.run(&plan, &raw).await })
    };
    killed.actions.entered.notified().await;
    // Killed mid-step: no release, no more records.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let other = Worker::new(&config, "other", lease, false);
    let err = other
        .run(&plan, &raw)
        .await
        .expect_err("the lease is still live");
    assert!(
        matches!(err, ExecError::Journal(JournalError::Locked { .. })),
        "{err}"
    );
    assert_eq!(other.mutating(), 0);

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    // A resume (the case exists): it takes the expired lease over, reuses the
    // journaled pre-state of the step in flight and finishes.
    let report =
        Box::pin(Executor::new(&other.actions, &other.journal, &ApproveAll).resume(&plan.case_id))
            .await
            .expect("takeover");
    assert_eq!(report.status, CaseStatus::Completed, "{}", report.message);
    let prepared: Vec<Option<String>> = events(&other.journal, &plan)
        .await
        .into_iter()
        .filter(|(name, _)| name == "step-prepared")
        .map(|(_, step)| step)
        .collect();
    assert_eq!(
        prepared,
        [
            Some("tag".to_string()),
            Some(HELD_STEP.to_string()),
            Some("isolate".to_string())
        ],
        "the step in flight kept its first pre-state"
    );
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_is_fenced() {
    let aws = emulator().await;
    evidence_bucket::init(aws.clients(), BUCKET, DEFAULT_KMS_ALIAS, None)
        .await
        .expect("evidence bucket");
    let case = cordon_core::plan::CaseId::parse("case-0123456789abcdef0123").unwrap();
    let config = aws.sdk_config().clone();
    let lease = Duration::from_secs(1);
    let slow = Worker::new(&config, "slow", lease, false);
    let fast = Worker::new(&config, "fast", lease, false);

    let slow_lock = slow.journal.lock(&case).await.expect("first lease");
    assert_eq!(slow_lock.token(), 1);
    slow.journal
        .fence(&case, &slow_lock)
        .await
        .expect("still ours");
    let err = fast.journal.lock(&case).await.expect_err("live lease");
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let fast_lock = fast.journal.lock(&case).await.expect("takeover");
    assert_eq!(fast_lock.token(), 2, "the fencing token grows on takeover");
    let err = slow
        .journal
        .fence(&case, &slow_lock)
        .await
        .expect_err("fenced");
    assert!(matches!(err, JournalError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("fencing token 2"), "{err}");
    // The fenced worker's release leaves the new holder's lease alone.
    slow.journal
        .release(&case, slow_lock)
        .await
        .expect("release");
    fast.journal
        .fence(&case, &fast_lock)
        .await
        .expect("still the holder");
}
