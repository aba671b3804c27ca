//! `detach-instance-profile`: takes the instance's IAM role away so it gets no
//! new credentials, and can hand the same profile back on rollback.
//!
//! Credentials the instance already holds stay valid until they expire; that
//! is `revoke-role-sessions`' job (see AWS-NOTES, "Isolating an instance").
//! Only EC2's association API is used, so the step needs nothing but the
//! permissions listed for it (no `ec2:DescribeInstances`): a missing instance
//! simply has no association and the step reports that it changed nothing.

use aws_sdk_ec2::types::{IamInstanceProfileAssociationState, IamInstanceProfileSpecification};
use cordon_core::action::DetachInstanceProfile as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::profile_associations;
use crate::actions::{Ctx, Handler};
use crate::ops;

/// The handler for `detach-instance-profile`.
#[derive(Debug)]
pub struct DetachInstanceProfile;

/// What the instance had associated before cordon touched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProfilePreState {
    pub instance_id: String,
    /// `None` when no profile was associated (the step then changes nothing).
    pub association: Option<ProfileAssociation>,
}

/// One instance-profile association, as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProfileAssociation {
    pub association_id: String,
    /// Undo associates this ARN again, so it is what rollback depends on.
    pub profile_arn: String,
    /// Derived from the ARN, for people reading the journal.
    pub profile_name: Option<String>,
    /// `associating`, `associated` or `disassociating`.
    pub state: String,
}

/// What apply did: the associations it removed, or why it changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProfileOutcome {
    /// Whether an association was removed now.
    pub changed: bool,
    /// Why nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The associations removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disassociated: Option<Vec<Disassociated>>,
    /// What a responder should keep in mind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One association removed by apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Disassociated {
    pub association_id: String,
    pub profile_arn: String,
}

/// What undo did: the association it made, or why it made none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProfileUndone {
    /// Whether the profile was associated again now.
    pub changed: bool,
    /// Why nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The new association's id, when EC2 returned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The profile associated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_arn: Option<String>,
}

impl ProfileUndone {
    fn unchanged(reason: impl Into<String>) -> Self {
        ProfileUndone {
            changed: false,
            reason: Some(reason.into()),
            association_id: None,
            profile_arn: None,
        }
    }
}

impl ProfileOutcome {
    fn unchanged(reason: String) -> Self {
        ProfileOutcome {
            changed: false,
            reason: Some(reason),
            disassociated: None,
            note: None,
        }
    }
}

impl ProfileAssociation {
    /// Counts as attached: the instance has, or is about to have, the role.
    fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "associated" | "associating")
    }
}

/// The last path segment of an instance-profile ARN is its name.
fn profile_name(arn: &str) -> Option<String> {
    arn.split_once(":instance-profile/")
        .and_then(|(_, rest)| rest.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// Every association of the instance that is not yet fully gone.
async fn associations(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<ProfileAssociation>, ActionError> {
    Ok(profile_associations(ctx, instance_id)
        .await?
        .iter()
        .filter(|association| association.instance_id().is_none_or(|id| id == instance_id))
        .filter_map(|association| {
            let association_id = association.association_id()?;
            let profile_arn = association.iam_instance_profile()?.arn()?;
            Some(ProfileAssociation {
                association_id: association_id.to_string(),
                profile_arn: profile_arn.to_string(),
                profile_name: profile_name(profile_arn),
                state: association
                    .state()
                    .map(IamInstanceProfileAssociationState::as_str)
                    .unwrap_or("associated")
                    .to_string(),
            })
        })
        .collect())
}

impl Handler for DetachInstanceProfile {
    type Params = Params;
    type PreState = ProfilePreState;
    type Outcome = ProfileOutcome;
    type Undone = ProfileUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<ProfilePreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let current = associations(ctx, instance_id).await?;
        // One active association at most (EC2 allows no more); a disassociating
        // one is already on its way out and is nothing to restore.
        Ok(ProfilePreState {
            instance_id: instance_id.clone(),
            association: current.into_iter().find(ProfileAssociation::is_active),
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ProfilePreState,
    ) -> Result<ProfileOutcome, ActionError> {
        let Some(before) = &pre.association else {
            let mut outcome = ProfileOutcome::unchanged(format!(
                "instance {} had no instance profile associated; nothing to detach",
                pre.instance_id
            ));
            outcome.note = ctx
                .instance()
                .ok()
                .and_then(|i| i.instance_profile_arn.as_deref())
                .map(|arn| {
                    format!(
                        "the finding named profile {arn}, but it was no longer associated when the step ran"
                    )
                });
            return Ok(outcome);
        };
        // Re-read: after a crash the association may already be gone (or
        // replaced). A pre-state this attempt read a moment ago is that
        // reading; an association gone since fails the call, which is handled.
        let current = if ctx.fresh_pre_state() {
            vec![before.clone()]
        } else {
            associations(ctx, &pre.instance_id).await?
        };
        let clients = ctx.clients();
        let mut detached = Vec::new();
        for association in current.iter().filter(|a| a.is_active()) {
            let request = clients
                .ec2
                .disassociate_iam_instance_profile()
                .association_id(&association.association_id);
            let result = clients
                .try_call(
                    &ops::EC2_DISASSOCIATE_IAM_INSTANCE_PROFILE,
                    &pre.instance_id,
                    request,
                )
                .await;
            match result {
                Ok(_) => {
                    info!(instance = %pre.instance_id, profile = %association.profile_arn, "instance profile disassociated");
                    detached.push(Disassociated {
                        association_id: association.association_id.clone(),
                        profile_arn: association.profile_arn.clone(),
                    });
                }
                // Gone between the read and the call: that is the goal.
                Err(e) if e.code() == Some("InvalidAssociationID.NotFound") => {}
                Err(e) => return Err(e.into()),
            }
        }
        if detached.is_empty() {
            return Ok(ProfileOutcome::unchanged(format!(
                "profile {} was already disassociated from instance {}",
                before.profile_arn, pre.instance_id
            )));
        }
        Ok(ProfileOutcome {
            changed: true,
            reason: None,
            disassociated: Some(detached),
            note: Some(
                "credentials already issued to the instance stay valid until they expire"
                    .to_string(),
            ),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ProfilePreState,
        _outcome: &ProfileOutcome,
    ) -> Result<(), ActionError> {
        if pre.association.is_none() {
            return Ok(());
        }
        let current = associations(ctx, &pre.instance_id).await?;
        match current.iter().find(|a| a.is_active()) {
            None => Ok(()),
            Some(still) => Err(ActionError::new(
                ErrorKind::Verification,
                &pre.instance_id,
                format!(
                    "instance profile {} is still {} after disassociating it",
                    still.profile_arn, still.state
                ),
                "EC2 may not have caught up yet; cordon retries, then check the instance's IAM role in the console",
            )),
        }
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ProfilePreState,
        _outcome: Option<&ProfileOutcome>,
    ) -> Result<ProfileUndone, ActionError> {
        let Some(before) = &pre.association else {
            return Ok(ProfileUndone::unchanged(
                "the instance had no instance profile; nothing to restore",
            ));
        };
        let current = associations(ctx, &pre.instance_id).await?;
        if let Some(active) = current.iter().find(|a| a.is_active()) {
            if active.profile_arn == before.profile_arn {
                return Ok(ProfileUndone::unchanged(format!(
                    "profile {} is already associated",
                    before.profile_arn
                )));
            }
            return Err(ActionError::new(
                ErrorKind::InvalidState,
                &pre.instance_id,
                format!(
                    "the instance now has a different instance profile ({}) than before the case ({})",
                    active.profile_arn, before.profile_arn
                ),
                "cordon does not replace a profile it did not remove: disassociate it by hand if it should not be there, then roll back again",
            ));
        }
        if current.iter().any(|a| a.state == "disassociating") {
            return Err(ActionError::new(
                ErrorKind::Conflict,
                &pre.instance_id,
                "the instance profile is still being disassociated",
                "EC2 finishes this within seconds; cordon retries",
            ));
        }
        let clients = ctx.clients();
        let request = clients
            .ec2
            .associate_iam_instance_profile()
            .instance_id(&pre.instance_id)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(&before.profile_arn)
                    .build(),
            );
        let out = clients
            .try_call(
                &ops::EC2_ASSOCIATE_IAM_INSTANCE_PROFILE,
                &pre.instance_id,
                request,
            )
            .await
            .map_err(|e| {
                let conflict = e.code() == Some("IncorrectState");
                let mut err = ActionError::from(e);
                if conflict {
                    // An association still winding down: worth another attempt.
                    err.kind = ErrorKind::Conflict;
                }
                err
            })?;
        info!(instance = %pre.instance_id, profile = %before.profile_arn, "instance profile associated again");
        Ok(ProfileUndone {
            changed: true,
            reason: None,
            association_id: out
                .iam_instance_profile_association()
                .and_then(|a| a.association_id())
                .map(str::to_string),
            profile_arn: Some(before.profile_arn.clone()),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ProfilePreState,
    ) -> Result<(), ActionError> {
        let current = associations(ctx, &pre.instance_id).await?;
        let active = current.iter().find(|a| a.is_active());
        match (&pre.association, active) {
            (None, None) => Ok(()),
            (Some(before), Some(now))
                if now.profile_arn == before.profile_arn && now.state == "associated" =>
            {
                Ok(())
            }
            (Some(before), Some(now)) if now.profile_arn == before.profile_arn => {
                Err(ActionError::new(
                    ErrorKind::Verification,
                    &pre.instance_id,
                    format!(
                        "instance profile {} is still {}",
                        before.profile_arn, now.state
                    ),
                    "EC2 finishes associating within seconds; cordon retries",
                ))
            }
            (before, now) => Err(ActionError::new(
                ErrorKind::Verification,
                &pre.instance_id,
                format!(
                    "the instance's profile is {} but was {} before the case",
                    now.map_or("none", |a| a.profile_arn.as_str()),
                    before.as_ref().map_or("none", |a| a.profile_arn.as_str()),
                ),
                "associate or disassociate the profile by hand to match the journaled pre-state, then roll back again",
            )),
        }
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &ProfilePreState) -> Vec<String> {
        match &pre.association {
            None => Vec::new(),
            Some(a) => vec![format!(
                "{} association-id={} (instance {}, profile {})",
                ops::EC2_DISASSOCIATE_IAM_INSTANCE_PROFILE.iam_action,
                a.association_id,
                pre.instance_id,
                a.profile_arn
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_name_from_arn() {
        assert_eq!(
            profile_name("arn:aws:iam::123456789012:instance-profile/web").as_deref(),
            Some("web")
        );
        assert_eq!(
            profile_name("arn:aws:iam::123456789012:instance-profile/team/a/web").as_deref(),
            Some("web")
        );
        assert_eq!(profile_name("not-an-arn"), None);
    }
}
