//! What lets the steps of one case run together in one task: the session
//! behind one lock (the journal keeps one writer, its sequence numbers stay
//! strictly increasing, each step's records keep their write-ahead order),
//! and a small set of futures polled in turn.
//!
//! The step futures borrow the session and the plan, so they are polled by
//! the task driving the case rather than spawned: they overlap while they
//! wait on AWS, which is all the concurrency a case needs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ProgressSink, Session};
use crate::journal::{JournalError, JournalEvent, JournalStore, StepState};

/// The session shared by the steps running together.
pub(super) struct Shared<'s, 'a, J: JournalStore> {
    session: tokio::sync::Mutex<&'s mut Session<'a, J>>,
    /// One approval question at a time: a terminal prompt, a wait for
    /// `cordon approve`. Steps that need no approval run meanwhile.
    asking: tokio::sync::Mutex<()>,
    /// Pre-states read ahead, by step, with when their read finished.
    prefetched: std::sync::Mutex<BTreeMap<String, (Instant, Value)>>,
    /// Set once a step of this run journaled its pre-state or finished:
    /// reads ahead wait for it, so the steps that start first read theirs
    /// first (and take the reads made before the case opened).
    started: tokio::sync::watch::Sender<bool>,
}

impl<'s, 'a, J: JournalStore> Shared<'s, 'a, J> {
    pub(super) fn new(session: &'s mut Session<'a, J>) -> Self {
        Self {
            session: tokio::sync::Mutex::new(session),
            asking: tokio::sync::Mutex::new(()),
            prefetched: std::sync::Mutex::new(BTreeMap::new()),
            started: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A step of this run journaled its pre-state, or finished.
    pub(super) fn mark_started(&self) {
        self.started.send_replace(true);
    }

    /// Returns once [`Shared::mark_started`] was called.
    pub(super) async fn first_started(&self) {
        let mut started = self.started.subscribe();
        let _ = started.wait_for(|s| *s).await;
    }

    /// Keeps a pre-state read ahead for `step`.
    pub(super) fn keep_prefetched(&self, step: &str, pre_state: Value) {
        self.prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(step.to_string(), (Instant::now(), pre_state));
    }

    /// The pre-state read ahead for `step`, once, if it is younger than `window`.
    pub(super) fn take_prefetched(&self, step: &str, window: Duration) -> Option<Value> {
        let (read, pre_state) = self
            .prefetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(step)?;
        (read.elapsed() < window).then_some(pre_state)
    }

    /// The session back, once no step runs.
    pub(super) fn into_inner(self) -> &'s mut Session<'a, J> {
        self.session.into_inner()
    }

    /// Appends one record; the lock is held until it is durable, so records
    /// are written one at a time, in the order their steps reached them.
    pub(super) async fn write(&self, event: JournalEvent) -> Result<(), JournalError> {
        self.session.lock().await.write(event).await
    }

    pub(super) async fn step_state(&self, id: &str) -> StepState {
        self.session.lock().await.step_state(id)
    }

    /// Runs `f` on the session, under its lock (reads of the folded state).
    pub(super) async fn with<T>(&self, f: impl FnOnce(&Session<'a, J>) -> T) -> T {
        let session = self.session.lock().await;
        f(&session)
    }

    pub(super) async fn fence(&self) -> Result<(), JournalError> {
        self.session.lock().await.fence().await
    }

    pub(super) async fn request_approval(
        &self,
        step: &crate::plan::PlannedStep,
        current: &StepState,
    ) -> Result<(), JournalError> {
        self.session
            .lock()
            .await
            .request_approval(step, current)
            .await
    }

    /// Holds the approval question for one step.
    pub(super) async fn asking(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.asking.lock().await
    }
}

impl<J: JournalStore> ProgressSink for Shared<'_, '_, J> {
    fn write_progress<'b>(
        &'b self,
        step: &'b str,
        progress: Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'b>> {
        Box::pin(self.write(JournalEvent::StepProgress {
            step: step.to_string(),
            progress,
        }))
    }
}

/// The futures running together, each finishing with its output.
pub(super) struct Running<'f, T> {
    futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'f>>>,
}

impl<'f, T> Running<'f, T> {
    pub(super) fn new() -> Self {
        Self {
            futures: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, future: impl Future<Output = T> + Send + 'f) {
        self.futures.push(Box::pin(future));
    }

    pub(super) fn len(&self) -> usize {
        self.futures.len()
    }

    /// The output of the next future to finish (polled in the order they
    /// were started), or `None` when none runs.
    pub(super) async fn next(&mut self) -> Option<T> {
        if self.futures.is_empty() {
            return None;
        }
        std::future::poll_fn(|cx| {
            for i in 0..self.futures.len() {
                if let Poll::Ready(out) = self.futures[i].as_mut().poll(cx) {
                    drop(self.futures.remove(i));
                    return Poll::Ready(Some(out));
                }
            }
            Poll::Pending
        })
        .await
    }
}
