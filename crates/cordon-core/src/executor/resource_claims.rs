//! The executor's side of resource claims (see [`crate::claims`]): claim every
//! resource of the plan before a forward run changes any, release them when
//! the case ends rolled back, and refuse to roll back a case whose resource
//! another case holds contained.

use tracing::{info, warn};

use super::{ExecError, Executor, Outcome, Report, Session, now_rfc3339};
use crate::claims::{ClaimAnswer, ResourceClaim};
use crate::executor::{Actions, Approver};
use crate::journal::{CaseState, CaseStatus, JournalEvent, JournalStore};

impl<'a, A: Actions, J: JournalStore, P: Approver> Executor<'a, A, J, P> {
    /// Claims every resource of the current plan before the case changes any.
    ///
    /// `Some(report)`: another case holds one of them. The case then journals
    /// `resource-busy` naming the holder, lets go of what this call claimed,
    /// marks its steps not run and stops (exit 1): it never reads the holder's
    /// containment as the resource's original state. Delivering the finding
    /// again (or `resume`) after the holder is rolled back runs it.
    pub(super) async fn claim_resources(
        &self,
        session: &mut Session<'a, J>,
    ) -> Result<Option<Report>, ExecError> {
        let case = session.case.clone();
        let mut claimed_now = Vec::new();
        for resource in session.state.plan.resources() {
            let claim = ResourceClaim::new(&resource, &case, now_rfc3339());
            let mut answer = self.journal.claim_resource(&claim, None).await?;
            let mut taken_over_from = None;
            if let ClaimAnswer::HeldBy(held) = &answer
                && self.claim_is_stale(held).await?
            {
                taken_over_from = Some(held.case_id.clone());
                answer = self.journal.claim_resource(&claim, Some(held)).await?;
            }
            match answer {
                ClaimAnswer::Claimed { new } => {
                    if new {
                        claimed_now.push(resource.clone());
                    }
                    if new || !session.state.claimed.contains(&resource) {
                        session
                            .write(JournalEvent::ResourceClaimed {
                                resource,
                                taken_over_from,
                            })
                            .await?;
                    }
                }
                ClaimAnswer::HeldBy(held) => {
                    return self
                        .refuse_busy(session, &resource, &held, claimed_now)
                        .await
                        .map(Some);
                }
            }
        }
        Ok(None)
    }

    /// A claim whose case was rolled back (and crashed before letting go), or
    /// whose case has no journal, holds nothing: the next case takes it over.
    async fn claim_is_stale(&self, held: &ResourceClaim) -> Result<bool, ExecError> {
        let records = self.journal.load(&held.case_id).await?;
        if records.is_empty() {
            return Ok(true);
        }
        let state = CaseState::from_records(&held.case_id, &records)?;
        Ok(state.status == Some(CaseStatus::RolledBack))
    }

    /// The status of the case holding a claim, for messages.
    async fn holder_status(&self, held: &ResourceClaim) -> String {
        match self.journal.load(&held.case_id).await {
            Ok(records) => CaseState::from_records(&held.case_id, &records)
                .ok()
                .and_then(|s| s.status)
                .map_or_else(|| "running".to_string(), |s| s.to_string()),
            Err(_) => "unreadable".to_string(),
        }
    }

    async fn refuse_busy(
        &self,
        session: &mut Session<'a, J>,
        resource: &str,
        held: &ResourceClaim,
        claimed_now: Vec<String>,
    ) -> Result<Report, ExecError> {
        let case = session.case.clone();
        let holder = &held.case_id;
        let holder_status = self.holder_status(held).await;
        for mine in claimed_now {
            self.release_one(session, &mine).await?;
        }
        let reason = format!(
            "{resource} is held by case {holder} ({holder_status}) since {}; acting on it now would record that case's containment as its original state",
            held.claimed_at
        );
        session
            .write(JournalEvent::ResourceBusy {
                resource: resource.to_string(),
                holder: holder.clone(),
                reason: reason.clone(),
            })
            .await?;
        self.stop_case(
            session,
            None,
            &format!("{resource} is held by case {holder}"),
        )
        .await?;
        info!(%case, %holder, resource, "resource held by another case; case stopped");
        Ok(Report::new(
            &case,
            CaseStatus::Stopped,
            format!(
                "case {case} did not act: {resource} is held by case {holder} ({holder_status}); roll that case back first (`cordon rollback {holder}`), then deliver this finding again or `cordon resume {case}`"
            ),
        )
        .with_outcome(Outcome::NeedsHuman))
    }

    async fn release_one(
        &self,
        session: &mut Session<'a, J>,
        resource: &str,
    ) -> Result<(), ExecError> {
        if self
            .journal
            .release_resource(resource, &session.case)
            .await?
            || session.state.claimed.contains(resource)
        {
            session
                .write(JournalEvent::ResourceReleased {
                    resource: resource.to_string(),
                })
                .await?;
        }
        Ok(())
    }

    /// Lets go of every resource of every epoch the case holds: called once
    /// every undo is verified, before the case is journaled rolled back.
    pub(super) async fn release_resources(
        &self,
        session: &mut Session<'a, J>,
    ) -> Result<(), ExecError> {
        for resource in session.state.resources() {
            self.release_one(session, &resource).await?;
        }
        Ok(())
    }

    /// Before a requested rollback: `Some(report)` refusing it when a resource
    /// the case changed is held by another case that still holds it, since
    /// undoing this case's steps would open what that case keeps contained.
    pub(super) async fn refuse_rollback_if_held(
        &self,
        session: &Session<'a, J>,
    ) -> Result<Option<Report>, ExecError> {
        let case = &session.case;
        let touched = session
            .state
            .epochs()
            .iter()
            .any(|(_, _, steps, _)| steps.values().any(|s| !s.unwound()));
        if !touched {
            return Ok(None);
        }
        for resource in session.state.resources() {
            let Some(held) = self.journal.resource_claim(&resource).await? else {
                continue;
            };
            if held.case_id == *case || self.claim_is_stale(&held).await? {
                continue;
            }
            let holder = &held.case_id;
            let holder_status = self.holder_status(&held).await;
            warn!(%case, %holder, resource, "rollback refused: another case holds the resource");
            let status = session.state.status.unwrap_or(CaseStatus::Stopped);
            return Ok(Some(
                Report::no_op(
                    case,
                    status,
                    format!(
                        "case {case} was not rolled back: {resource} is held contained by case {holder} ({holder_status}); roll back case {holder} first (`cordon rollback {holder}`), then this one"
                    ),
                )
                .with_outcome(Outcome::NeedsHuman),
            ));
        }
        Ok(None)
    }
}
