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
    /// The recorder's logical clock when the call was sent: every start and
    /// every answer ticks it once, so two calls' ticks give their causal order.
    pub started: u64,
    /// The clock when the answer (or the failure) came back; `None` while in flight.
    pub finished: Option<u64>,
}

/// Hands [`CallRecorder::finish`] the call that was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a call's answer is recorded by passing its ticket to `finish`"]
pub struct CallTicket(u64);

#[derive(Debug, Default)]
struct Calls {
    counts: BTreeMap<(Option<ActionKind>, &'static Op), u64>,
    recent: VecDeque<RecordedCall>,
    clock: u64,
}

impl Calls {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The number of sequential rounds in `calls`: the longest chain of calls
/// each sent only after the one before it was answered. Calls in flight
/// together share a round, so this is the number of round trips the calls
/// cost on a network, whatever its latency: the figure the isolate step's
/// "fewest round trips" is held to (see `docs/round-trips.md`).
pub fn sequential_rounds(calls: &[RecordedCall]) -> usize {
    let mut depth: Vec<usize> = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        let before = calls[..i]
            .iter()
            .zip(&depth)
            .filter(|(earlier, _)| earlier.finished.is_some_and(|f| f < call.started))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
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

    /// Records a call of `op` on `resource` by the current task's action,
    /// as sent now.
    pub fn record(&self, op: &'static Op, resource: &str) -> CallTicket {
        let action = current_action();
        let mut calls = self.lock();
        *calls.counts.entry((action, op)).or_default() += 1;
        if calls.recent.len() == RECENT_CALLS {
            calls.recent.pop_front();
        }
        let started = calls.tick();
        calls.recent.push_back(RecordedCall {
            action,
            op,
            resource: resource.to_string(),
            started,
            finished: None,
        });
        CallTicket(started)
    }

    /// Records that the call `ticket` was answered (or failed) now.
    pub fn finish(&self, ticket: CallTicket) {
        let mut calls = self.lock();
        let finished = calls.tick();
        // Calls in flight are among the latest, so the search is short.
        if let Some(call) = calls
            .recent
            .iter_mut()
            .rev()
            .find(|call| call.started == ticket.0)
        {
            call.finished = Some(finished);
        }
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

    /// Forgets everything recorded, e.g. after a test's set-up. The clock
    /// keeps running, so a call in flight across the reset cannot be confused
    /// with a later one.
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
        let _ = recorder.record(&STS_GET_CALLER_IDENTITY, "caller");
        run_as(ActionKind::TagResource, async {
            let _ = recorder.record(&EC2_DESCRIBE_INSTANCES, "i-1");
            // Work handed to another task keeps its action when carried.
            let carried = recorder.clone();
            tokio::spawn(carry_action(async move {
                let _ = carried.record(&EC2_CREATE_TAGS, "i-1");
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
    fn rounds_are_the_longest_chain_of_calls_sent_after_an_answer() {
        let recorder = CallRecorder::new();
        // Round 1: two reads in flight together.
        let a = recorder.record(&EC2_DESCRIBE_INSTANCES, "i-1");
        let b = recorder.record(&EC2_DESCRIBE_INSTANCES, "i-2");
        recorder.finish(a);
        // Round 2: sent after `a` answered, while `b` is still in flight.
        let c = recorder.record(&EC2_CREATE_TAGS, "i-1");
        recorder.finish(b);
        recorder.finish(c);
        assert_eq!(sequential_rounds(&recorder.recent()), 2);
        // Round 3: after `c`.
        let d = recorder.record(&EC2_CREATE_TAGS, "i-2");
        recorder.finish(d);
        let recent = recorder.recent();
        assert_eq!(sequential_rounds(&recent), 3);
        assert!(recent.iter().all(|call| call.finished.is_some()));
        assert_eq!(sequential_rounds(&[]), 0);
    }

    #[test]
    fn keeps_counts_of_all_calls_but_only_the_latest_resources() {
        let recorder = CallRecorder::new();
        for i in 0..RECENT_CALLS + 10 {
            let _ = recorder.record(&EC2_DESCRIBE_INSTANCES, &format!("i-{i}"));
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
