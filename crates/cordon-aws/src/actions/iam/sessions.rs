//! `revoke-role-sessions` and `revoke-user-sessions`: an inline policy on the
//! role (or IAM user) denying everything to credentials issued before now
//! (`aws:TokenIssueTime`), the same mechanism as the console's "Revoke active
//! sessions" (policy `AWSRevokeOlderSessions`).
//!
//! Credentials already handed out (an instance's role credentials, an
//! attacker's `ASIA…` key) stay valid until they expire, whatever is done to
//! the instance profile; this is what stops them. For a role it hits every
//! session of the role, on every instance and principal using it, hence the
//! planner gates it behind approval. For an IAM user it hits the user's
//! temporary credentials (`GetSessionToken`, console sessions): requests
//! signed with its long-term keys carry no token issue time, so the policy
//! leaves them alone (`deactivate-access-key` is for those).

use aws_sdk_ec2::types::IamInstanceProfileAssociationState;
use cordon_core::action::RevokeRoleSessions as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::plan::Target;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::info;

use cordon_core::action::RevokeUserSessions as UserParams;

use super::{PolicyHolder, PolicyRestored, same_document, user_target};
use crate::actions::ec2::profile_associations;
use crate::actions::{Ctx, Handler, wrong_target};
use crate::ops;

/// Revokes every session of the target role issued before the step runs.
#[derive(Debug)]
pub struct RevokeRoleSessions;

/// Where the role's name came from, for the evidence trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "from",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum RoleSource {
    /// The finding named it (an assumed-role access key).
    Finding,
    /// Resolved at run time through the instance's profile.
    InstanceProfile {
        /// The instance the finding is about.
        instance_id: Option<String>,
        /// The profile whose role was taken.
        instance_profile_arn: String,
        /// The live association, when the profile was still attached; absent when
        /// it had been detached already and the finding's profile ARN was used.
        association_id: Option<String>,
    },
}

/// The role, and the previous content of the policy the step will write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevokePreState {
    pub role_name: String,
    pub role_source: RoleSource,
    pub policy_name: String,
    /// The inline policy of that name before the step (URL-decoded), if the role had
    /// one: apply replaces its content, undo puts it back exactly.
    pub previous_document: Option<String>,
}

/// What the step wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevokeOutcome {
    pub role_name: String,
    pub policy_name: String,
    /// Sessions issued before this instant are denied everything.
    pub token_issue_time: String,
    /// True when a policy of the same name existed and its content was replaced.
    pub replaced_previous_policy: bool,
}

/// The deny-everything-issued-before-`cutoff` policy.
pub fn revoke_document(cutoff: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}}
        }]
    })
    .to_string()
}

/// Now, rounded up to the next whole second (RFC 3339, UTC). Rounding up
/// errs on the side of revoking a session issued in the same second as the
/// step rather than letting one slip through.
fn cutoff_now() -> Result<String, ActionError> {
    let now = OffsetDateTime::now_utc();
    let whole = now.replace_nanosecond(0).unwrap_or(now);
    let cutoff = if whole < now {
        whole + time::Duration::SECOND
    } else {
        whole
    };
    cutoff.format(&Rfc3339).map_err(|e| {
        ActionError::new(
            ErrorKind::Other,
            "clock",
            format!("cannot format the current time: {e}"),
            "check the system clock",
        )
    })
}

/// The instance profile's name from its ARN (`…:instance-profile/path/name`).
fn profile_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The role the step acts on: named by the finding, or the role of the
/// instance's profile (its live association first, else the profile the
/// finding saw, since an earlier `detach-instance-profile` step may have
/// removed the association already).
async fn resolve_role(ctx: Ctx<'_>) -> Result<(String, RoleSource), ActionError> {
    let (instance_id, finding_profile) = match &ctx.step.target {
        Target::Role {
            role_name: Some(role),
            ..
        } => return Ok((role.clone(), RoleSource::Finding)),
        Target::Role {
            role_name: None,
            instance_id,
            instance_profile_arn,
        } => (instance_id.clone(), instance_profile_arn.clone()),
        other => return Err(wrong_target(ctx.step, other)),
    };
    let clients = ctx.clients();
    let mut association = None;
    if let Some(instance) = &instance_id {
        // `associating` counts too: the instance gets that role's
        // credentials moments later.
        association = profile_associations(ctx, instance)
            .await?
            .iter()
            .find_map(|a| {
                if !matches!(
                    a.state(),
                    Some(
                        IamInstanceProfileAssociationState::Associated
                            | IamInstanceProfileAssociationState::Associating
                    )
                ) {
                    return None;
                }
                let arn = a.iam_instance_profile()?.arn()?.to_string();
                Some((arn, a.association_id().map(str::to_string)))
            });
    }
    let (profile_arn, association_id) = match (association, finding_profile) {
        (Some((arn, id)), _) => (arn, id),
        (None, Some(arn)) => (arn, None),
        (None, None) => {
            return Err(ActionError::new(
                ErrorKind::NotFound,
                ctx.step.target.label(),
                format!(
                    "instance {} has no instance profile, so there is no role whose sessions to revoke",
                    instance_id.as_deref().unwrap_or("(unknown)")
                ),
                "if credentials were stolen from it, find the role in CloudTrail and revoke its sessions by hand",
            ));
        }
    };
    let name = profile_name(&profile_arn);
    let request = clients
        .iam
        .get_instance_profile()
        .instance_profile_name(name);
    let out = clients
        .call(&ops::IAM_GET_INSTANCE_PROFILE, &profile_arn, request)
        .await?;
    let role = out
        .instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.role_name().to_string())
        .ok_or_else(|| {
            ActionError::new(
                ErrorKind::NotFound,
                profile_arn.clone(),
                format!(
                    "instance profile {name} has no role, so there are no role sessions to revoke"
                ),
                "check CloudTrail for the role the instance used and revoke its sessions by hand",
            )
        })?;
    Ok((
        role,
        RoleSource::InstanceProfile {
            instance_id,
            instance_profile_arn: profile_arn,
            association_id,
        },
    ))
}

/// Puts the deny-before-now policy on `holder`; returns the cut-off written.
async fn revoke(
    ctx: Ctx<'_>,
    holder: PolicyHolder<'_>,
    policy: &str,
    replaced: bool,
) -> Result<String, ActionError> {
    let cutoff = cutoff_now()?;
    holder.put(ctx, policy, &revoke_document(&cutoff)).await?;
    info!(
        principal = %holder.label(),
        policy,
        token_issue_time = %cutoff,
        replaced_previous_policy = replaced,
        "sessions issued before the cut-off revoked"
    );
    Ok(cutoff)
}

/// Checks `holder`'s policy denies what was issued before `cutoff`.
async fn verify_revoked(
    ctx: Ctx<'_>,
    holder: PolicyHolder<'_>,
    policy: &str,
    cutoff: &str,
) -> Result<(), ActionError> {
    let live = holder.get(ctx, policy).await?;
    let expected = revoke_document(cutoff);
    if live
        .as_deref()
        .is_some_and(|live| same_document(live, &expected))
    {
        return Ok(());
    }
    Err(ActionError::new(
        ErrorKind::Verification,
        holder.label(),
        format!("inline policy `{policy}` does not deny sessions issued before {cutoff}"),
        "IAM may not have caught up yet; the step is retried",
    ))
}

/// The dry-run line of a revocation.
fn describe_revoke(action: &str, holder: PolicyHolder<'_>, policy: &str, replaces: bool) -> String {
    let replaces = if replaces {
        " (replaces the existing policy of that name; undo restores it)"
    } else {
        ""
    };
    format!(
        "{action} {} policy={policy} Deny * when aws:TokenIssueTime < <time of apply>{replaces}",
        holder.label()
    )
}

impl Handler for RevokeRoleSessions {
    type Params = Params;
    type PreState = RevokePreState;
    type Outcome = RevokeOutcome;
    type Undone = PolicyRestored;

    async fn pre_state(ctx: Ctx<'_>, p: &Params) -> Result<RevokePreState, ActionError> {
        let policy = p.policy_name.as_str();
        let (role, source) = resolve_role(ctx).await?;
        let previous = PolicyHolder::Role(&role).get(ctx, policy).await?;
        Ok(RevokePreState {
            role_name: role,
            role_source: source,
            policy_name: policy.to_string(),
            previous_document: previous,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &RevokePreState,
    ) -> Result<RevokeOutcome, ActionError> {
        let replaced = pre.previous_document.is_some();
        let holder = PolicyHolder::Role(&pre.role_name);
        let cutoff = revoke(ctx, holder, &pre.policy_name, replaced).await?;
        Ok(RevokeOutcome {
            role_name: pre.role_name.clone(),
            policy_name: pre.policy_name.clone(),
            token_issue_time: cutoff,
            replaced_previous_policy: replaced,
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &RevokePreState,
        outcome: &RevokeOutcome,
    ) -> Result<(), ActionError> {
        let holder = PolicyHolder::Role(&pre.role_name);
        verify_revoked(ctx, holder, &pre.policy_name, &outcome.token_issue_time).await
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &RevokePreState,
        _outcome: Option<&RevokeOutcome>,
    ) -> Result<PolicyRestored, ActionError> {
        let result = PolicyHolder::Role(&pre.role_name)
            .restore(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await?;
        info!(role = %pre.role_name, policy = %pre.policy_name, "role session revocation undone");
        Ok(result)
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &RevokePreState,
    ) -> Result<(), ActionError> {
        PolicyHolder::Role(&pre.role_name)
            .verify_equals(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &RevokePreState) -> Vec<String> {
        vec![describe_revoke(
            ops::IAM_PUT_ROLE_POLICY.iam_action,
            PolicyHolder::Role(&pre.role_name),
            &pre.policy_name,
            pre.previous_document.is_some(),
        )]
    }
}

/// Revokes every temporary-credential session of the target IAM user issued
/// before the step runs.
#[derive(Debug)]
pub struct RevokeUserSessions;

/// The user, and the previous content of the policy the step will write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevokeUserPreState {
    pub user_name: String,
    pub policy_name: String,
    /// The user's inline policy of that name before the step (URL-decoded),
    /// if it had one: apply replaces its content, undo puts it back exactly.
    pub previous_document: Option<String>,
}

/// What the step wrote on the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevokeUserOutcome {
    pub user_name: String,
    pub policy_name: String,
    /// Temporary credentials issued before this instant are denied everything.
    pub token_issue_time: String,
    /// True when a policy of the same name existed and its content was replaced.
    pub replaced_previous_policy: bool,
}

impl Handler for RevokeUserSessions {
    type Params = UserParams;
    type PreState = RevokeUserPreState;
    type Outcome = RevokeUserOutcome;
    type Undone = PolicyRestored;

    async fn pre_state(ctx: Ctx<'_>, p: &UserParams) -> Result<RevokeUserPreState, ActionError> {
        let user = user_target(ctx)?;
        let previous = PolicyHolder::User(&user).get(ctx, &p.policy_name).await?;
        Ok(RevokeUserPreState {
            user_name: user,
            policy_name: p.policy_name.clone(),
            previous_document: previous,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &UserParams,
        pre: &RevokeUserPreState,
    ) -> Result<RevokeUserOutcome, ActionError> {
        let replaced = pre.previous_document.is_some();
        let holder = PolicyHolder::User(&pre.user_name);
        let cutoff = revoke(ctx, holder, &pre.policy_name, replaced).await?;
        Ok(RevokeUserOutcome {
            user_name: pre.user_name.clone(),
            policy_name: pre.policy_name.clone(),
            token_issue_time: cutoff,
            replaced_previous_policy: replaced,
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &UserParams,
        pre: &RevokeUserPreState,
        outcome: &RevokeUserOutcome,
    ) -> Result<(), ActionError> {
        let holder = PolicyHolder::User(&pre.user_name);
        verify_revoked(ctx, holder, &pre.policy_name, &outcome.token_issue_time).await
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &UserParams,
        pre: &RevokeUserPreState,
        _outcome: Option<&RevokeUserOutcome>,
    ) -> Result<PolicyRestored, ActionError> {
        let result = PolicyHolder::User(&pre.user_name)
            .restore(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await?;
        info!(user = %pre.user_name, policy = %pre.policy_name, "user session revocation undone");
        Ok(result)
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &UserParams,
        pre: &RevokeUserPreState,
    ) -> Result<(), ActionError> {
        PolicyHolder::User(&pre.user_name)
            .verify_equals(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await
    }

    fn describe(_ctx: Ctx<'_>, _p: &UserParams, pre: &RevokeUserPreState) -> Vec<String> {
        vec![describe_revoke(
            ops::IAM_PUT_USER_POLICY.iam_action,
            PolicyHolder::User(&pre.user_name),
            &pre.policy_name,
            pre.previous_document.is_some(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn cutoff_is_whole_seconds_utc() {
        let cutoff = cutoff_now().expect("the clock formats");
        assert!(cutoff.ends_with('Z'), "{cutoff}");
        assert!(!cutoff.contains('.'), "{cutoff}");
        assert!(
            OffsetDateTime::parse(&cutoff, &Rfc3339).expect("RFC 3339")
                >= OffsetDateTime::now_utc() - time::Duration::SECOND
        );
    }

    #[test]
    fn document_denies_older_tokens() {
        let doc: Value =
            serde_json::from_str(&revoke_document("2024-01-02T03:04:05Z")).expect("JSON");
        let statement = &doc["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Action"], "*");
        assert_eq!(
            statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2024-01-02T03:04:05Z"
        );
    }

    #[test]
    fn profile_names_from_arns() {
        assert_eq!(
            profile_name("arn:aws:iam::123456789012:instance-profile/web"),
            "web"
        );
        assert_eq!(
            profile_name("arn:aws:iam::123456789012:instance-profile/a/b/web"),
            "web"
        );
    }
}
