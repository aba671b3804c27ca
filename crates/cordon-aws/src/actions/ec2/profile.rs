//! `detach-instance-profile`: takes the instance's IAM role away so it gets no
//! new credentials, and can hand the same profile back on rollback.
//!
//! Credentials the instance already holds stay valid until they expire; that
//! is `revoke-role-sessions`' job (see AWS-NOTES, "Isolating an instance").
//! Only EC2's association API is used, so the step needs nothing but the
//! permissions listed for it (no `ec2:DescribeInstances`): a missing instance
//! simply has no association and the step reports that it changed nothing.

use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileAssociationState, IamInstanceProfileSpecification,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use crate::actions::{Ctx, Handler};
use crate::errors::sdk_error;

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

/// Every association of the instance that is not yet fully gone (paginated,
/// filtered by instance, so one call in practice).
async fn associations(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<ProfileAssociation>, ActionError> {
    let clients = ctx.clients();
    let mut found = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        clients
            .limit("DescribeIamInstanceProfileAssociations")
            .await;
        let out = clients
            .ec2
            .describe_iam_instance_profile_associations()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .values(instance_id)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("state")
                    .values("associating")
                    .values("associated")
                    .values("disassociating")
                    .build(),
            )
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    e,
                    "DescribeIamInstanceProfileAssociations",
                    "ec2:DescribeIamInstanceProfileAssociations",
                    instance_id,
                )
            })?;
        for association in out.iam_instance_profile_associations() {
            if association
                .instance_id()
                .is_some_and(|id| id != instance_id)
            {
                continue;
            }
            let (Some(association_id), Some(profile_arn)) = (
                association.association_id(),
                association.iam_instance_profile().and_then(|p| p.arn()),
            ) else {
                continue;
            };
            found.push(ProfileAssociation {
                association_id: association_id.to_string(),
                profile_arn: profile_arn.to_string(),
                profile_name: profile_name(profile_arn),
                state: association
                    .state()
                    .map(IamInstanceProfileAssociationState::as_str)
                    .unwrap_or("associated")
                    .to_string(),
            });
        }
        match out.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => return Ok(found),
        }
    }
}

impl Handler for DetachInstanceProfile {
    type PreState = ProfilePreState;

    async fn pre_state(ctx: Ctx<'_>) -> Result<ProfilePreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let current = associations(ctx, instance_id).await?;
        // One active association at most (EC2 allows no more); a disassociating
        // one is already on its way out and is nothing to restore.
        Ok(ProfilePreState {
            instance_id: instance_id.clone(),
            association: current.into_iter().find(ProfileAssociation::is_active),
        })
    }

    async fn apply(ctx: Ctx<'_>, pre: &ProfilePreState) -> Result<Value, ActionError> {
        let Some(before) = &pre.association else {
            let mut outcome = json!({
                "changed": false,
                "reason": format!("instance {} had no instance profile associated; nothing to detach", pre.instance_id),
            });
            if let Some(arn) = ctx
                .instance()
                .ok()
                .and_then(|i| i.instance_profile_arn.as_deref())
            {
                outcome["note"] = json!(format!(
                    "the finding named profile {arn}, but it was no longer associated when the step ran"
                ));
            }
            return Ok(outcome);
        };
        // Re-read: after a crash the association may already be gone (or replaced).
        let current = associations(ctx, &pre.instance_id).await?;
        let clients = ctx.clients();
        let mut detached = Vec::new();
        for association in current.iter().filter(|a| a.is_active()) {
            clients.limit("DisassociateIamInstanceProfile").await;
            let result = clients
                .ec2
                .disassociate_iam_instance_profile()
                .association_id(&association.association_id)
                .send()
                .await;
            match result {
                Ok(_) => {
                    info!(instance = %pre.instance_id, profile = %association.profile_arn, "instance profile disassociated");
                    detached.push(json!({
                        "association-id": association.association_id,
                        "profile-arn": association.profile_arn,
                    }));
                }
                // Gone between the read and the call: that is the goal.
                Err(e) if e.code() == Some("InvalidAssociationID.NotFound") => {}
                Err(e) => {
                    return Err(sdk_error(
                        e,
                        "DisassociateIamInstanceProfile",
                        "ec2:DisassociateIamInstanceProfile",
                        &pre.instance_id,
                    ));
                }
            }
        }
        if detached.is_empty() {
            return Ok(json!({
                "changed": false,
                "reason": format!(
                    "profile {} was already disassociated from instance {}",
                    before.profile_arn, pre.instance_id
                ),
            }));
        }
        Ok(json!({
            "changed": true,
            "disassociated": detached,
            "note": "credentials already issued to the instance stay valid until they expire",
        }))
    }

    async fn verify(
        ctx: Ctx<'_>,
        pre: &ProfilePreState,
        _outcome: &Value,
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
        pre: &ProfilePreState,
        _outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let Some(before) = &pre.association else {
            return Ok(
                json!({"changed": false, "reason": "the instance had no instance profile; nothing to restore"}),
            );
        };
        let current = associations(ctx, &pre.instance_id).await?;
        if let Some(active) = current.iter().find(|a| a.is_active()) {
            if active.profile_arn == before.profile_arn {
                return Ok(json!({
                    "changed": false,
                    "reason": format!("profile {} is already associated", before.profile_arn),
                }));
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
        clients.limit("AssociateIamInstanceProfile").await;
        let out = clients
            .ec2
            .associate_iam_instance_profile()
            .instance_id(&pre.instance_id)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(&before.profile_arn)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                let conflict = e.code() == Some("IncorrectState");
                let mut err = sdk_error(
                    e,
                    "AssociateIamInstanceProfile",
                    "ec2:AssociateIamInstanceProfile and iam:PassRole on the profile's role",
                    &pre.instance_id,
                );
                if conflict {
                    // An association still winding down: worth another attempt.
                    err.kind = ErrorKind::Conflict;
                }
                err
            })?;
        info!(instance = %pre.instance_id, profile = %before.profile_arn, "instance profile associated again");
        Ok(json!({
            "changed": true,
            "association-id": out.iam_instance_profile_association().and_then(|a| a.association_id()),
            "profile-arn": before.profile_arn,
        }))
    }

    async fn verify_undone(ctx: Ctx<'_>, pre: &ProfilePreState) -> Result<(), ActionError> {
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

    fn describe(_ctx: Ctx<'_>, pre: &ProfilePreState) -> Vec<String> {
        match &pre.association {
            None => Vec::new(),
            Some(a) => vec![format!(
                "ec2:DisassociateIamInstanceProfile association-id={} (instance {}, profile {})",
                a.association_id, pre.instance_id, a.profile_arn
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
