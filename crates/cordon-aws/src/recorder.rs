//! Which action made which AWS call: the evidence that an action's declared
//! permissions ([`ActionKind::permissions`]) match what it really calls, in
//! the manner of Cloud Custodian's permission checks.
//!
//! [`crate::actions::AwsActions`] runs every handler call inside
//! [`run_as`], which marks the task with the action's kind
//! (`tokio::task_local!`); the call path reads the mark ([`current_action`])
//! and records the call under it. Calls made outside any action (intake,
//! evidence verification, the CLI's caller identity) record `None`.
//!
//! The recorder keeps one count per (action, operation, IAM action), which is
//! bounded by the table in [`crate::ops`], plus the most recent calls with
//! their resources for tests and debugging; a long-running worker's memory
//! does not grow with the number of calls it makes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cordon_core::action::ActionKind;

use crate::ops::Op;

tokio::task_local! {
    static RUNNING: ActionKind;
}

/// Runs `future` as the work of action `kind`: every AWS call it makes is
/// recorded under that kind.
pub async fn run_as<F: Future>(kind: ActionKind, future: F) -> F::Output {
    RUNNING.scope(kind, future).await
}

/// The action the current task works for, if any.
pub fn current_action() -> Option<ActionKind> {
    RUNNING.try_with(|kind| *kind).ok()
}

/// `future` marked with the current task's action, for work handed to a
/// spawned task (task-locals do not cross `tokio::spawn`).
pub fn carry_action<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let kind = current_action();
    async move {
        match kind {
            Some(kind) => RUNNING.scope(kind, future).await,
            None => future.await,
        }
    }
}

/// How many of the latest calls are kept with their resources.
pub const RECENT_CALLS: usize = 4096;

/// One call as the recorder saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The action whose handler made the call; `None` outside any action.
    pub action: Option<ActionKind>,
    /// The operation's row.
    pub op: &'static Op,
    /// What the call was about.
    pub resource: String,
}

#[derive(Debug, Default)]
struct Calls {
    counts: BTreeMap<(Option<ActionKind>, &'static Op), u64>,
    recent: VecDeque<RecordedCall>,
}

/// Records every call made through [`crate::client::AwsClients`]. Clones
/// share the record.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder {
    calls: Arc<Mutex<Calls>>,
}

impl CallRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a call of `op` on `resource` by the current task's action.
    pub fn record(&self, op: &'static Op, resource: &str) {
        let action = current_action();
        let mut calls = self.lock();
        *calls.counts.entry((action, op)).or_default() += 1;
        if calls.recent.len() == RECENT_CALLS {
            calls.recent.pop_front();
        }
        calls.recent.push_back(RecordedCall {
            action,
            op,
            resource: resource.to_string(),
        });
    }

    /// The IAM actions each action's calls needed (their own; see
    /// [`Op::implied`] for those AWS checks on the caller's behalf).
    pub fn iam_actions_by_kind(&self) -> BTreeMap<ActionKind, BTreeSet<&'static str>> {
        let mut out: BTreeMap<ActionKind, BTreeSet<&'static str>> = BTreeMap::new();
        for (action, op) in self.lock().counts.keys() {
            if let Some(kind) = action {
                out.entry(*kind).or_default().insert(op.iam_action);
            }
        }
        out
    }

    /// The operations each action called (`None`: calls outside any action).
    pub fn ops_by_kind(&self) -> BTreeMap<Option<ActionKind>, BTreeSet<&'static Op>> {
        let mut out: BTreeMap<Option<ActionKind>, BTreeSet<&'static Op>> = BTreeMap::new();
        for (action, op) in self.lock().counts.keys() {
            out.entry(*action).or_default().insert(*op);
        }
        out
    }

    /// Calls per (action, operation).
    pub fn counts(&self) -> BTreeMap<(Option<ActionKind>, &'static Op), u64> {
        self.lock().counts.clone()
    }

    /// The latest calls (at most [`RECENT_CALLS`]), oldest first.
    pub fn recent(&self) -> Vec<RecordedCall> {
        self.lock().recent.iter().cloned().collect()
    }

    /// Forgets everything recorded, e.g. after a test's set-up.
    pub fn reset(&self) {
        let mut calls = self.lock();
        calls.counts.clear();
        calls.recent.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        // Each update is a count increment and a push: a panic elsewhere
        // cannot leave the record half-written.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{EC2_CREATE_TAGS, EC2_DESCRIBE_INSTANCES, STS_GET_CALLER_IDENTITY};

    #[tokio::test]
    async fn attributes_calls_to_the_running_action() {
        let recorder = CallRecorder::new();
        recorder.record(&STS_GET_CALLER_IDENTITY, "caller");
        run_as(ActionKind::TagResource, async {
            recorder.record(&EC2_DESCRIBE_INSTANCES, "i-1");
            // Work handed to another task keeps its action when carried.
            let carried = recorder.clone();
            tokio::spawn(carry_action(async move {
                carried.record(&EC2_CREATE_TAGS, "i-1");
            }))
            .await
            .expect("task");
        })
        .await;
        assert_eq!(current_action(), None);
        assert_eq!(
            recorder.iam_actions_by_kind(),
            BTreeMap::from([(
                ActionKind::TagResource,
                BTreeSet::from(["ec2:DescribeInstances", "ec2:CreateTags"])
            )])
        );
        let ops = recorder.ops_by_kind();
        assert_eq!(ops[&None], BTreeSet::from([&STS_GET_CALLER_IDENTITY]));
        let recent = recorder.recent();
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[1].action, Some(ActionKind::TagResource));
        assert_eq!(recent[1].resource, "i-1");
        recorder.clone().reset();
        assert!(recorder.counts().is_empty());
    }

    #[test]
    fn keeps_counts_of_all_calls_but_only_the_latest_resources() {
        let recorder = CallRecorder::new();
        for i in 0..RECENT_CALLS + 10 {
            recorder.record(&EC2_DESCRIBE_INSTANCES, &format!("i-{i}"));
        }
        assert_eq!(
            recorder.counts()[&(None, &EC2_DESCRIBE_INSTANCES)],
            (RECENT_CALLS + 10) as u64
        );
        let recent = recorder.recent();
        assert_eq!(recent.len(), RECENT_CALLS);
        assert_eq!(recent[0].resource, "i-10");
    }
}
