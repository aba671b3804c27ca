//! User containment: `quarantine-user` (an explicit deny-all inline policy,
//! which beats any allow, so it works whatever else the user is granted) and
//! `delete-login-profile` (the console password; irreversible).

use cordon_core::action::{
    DeleteLoginProfile as DeleteLoginProfileParams, QuarantineUser as QuarantineParams,
};
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{PolicyHolder, PolicyRestored, is_missing, same_document, timestamp, user_target};
use crate::actions::{Ctx, Handler};
use crate::ops;

/// Denies every request the user makes, until rollback.
#[derive(Debug)]
pub struct QuarantineUser;

/// The user, and the previous content of the policy the step will write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QuarantinePreState {
    pub user_name: String,
    pub policy_name: String,
    /// The user's inline policy of that name before the step (URL-decoded), if any.
    pub previous_document: Option<String>,
}

/// What the quarantine wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QuarantineOutcome {
    pub user_name: String,
    pub policy_name: String,
    /// True when a policy of the same name existed and its content was replaced.
    pub replaced_previous_policy: bool,
}

/// The explicit deny-all document.
pub fn deny_all_document() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CordonQuarantineDenyAll",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*"
        }]
    })
    .to_string()
}

impl Handler for QuarantineUser {
    type Params = QuarantineParams;
    type PreState = QuarantinePreState;
    type Outcome = QuarantineOutcome;
    type Undone = PolicyRestored;

    async fn pre_state(
        ctx: Ctx<'_>,
        p: &QuarantineParams,
    ) -> Result<QuarantinePreState, ActionError> {
        let policy = p.policy_name.as_str();
        let user = user_target(ctx)?;
        let previous = PolicyHolder::User(&user).get(ctx, policy).await?;
        Ok(QuarantinePreState {
            user_name: user,
            policy_name: policy.to_string(),
            previous_document: previous,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
    ) -> Result<QuarantineOutcome, ActionError> {
        PolicyHolder::User(&pre.user_name)
            .put(ctx, &pre.policy_name, &deny_all_document())
            .await?;
        let replaced = pre.previous_document.is_some();
        info!(user = %pre.user_name, policy = %pre.policy_name, replaced_previous_policy = replaced, "user quarantined");
        Ok(QuarantineOutcome {
            user_name: pre.user_name.clone(),
            policy_name: pre.policy_name.clone(),
            replaced_previous_policy: replaced,
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
        _outcome: &QuarantineOutcome,
    ) -> Result<(), ActionError> {
        let live = PolicyHolder::User(&pre.user_name)
            .get(ctx, &pre.policy_name)
            .await?;
        if live
            .as_deref()
            .is_some_and(|live| same_document(live, &deny_all_document()))
        {
            return Ok(());
        }
        Err(ActionError::new(
            ErrorKind::Verification,
            format!("user {}", pre.user_name),
            format!(
                "inline policy `{}` is not the deny-all policy",
                pre.policy_name
            ),
            "IAM may not have caught up yet; the step is retried",
        ))
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
        _outcome: Option<&QuarantineOutcome>,
    ) -> Result<PolicyRestored, ActionError> {
        let result = PolicyHolder::User(&pre.user_name)
            .restore(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await?;
        info!(user = %pre.user_name, policy = %pre.policy_name, "user quarantine lifted");
        Ok(result)
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
    ) -> Result<(), ActionError> {
        PolicyHolder::User(&pre.user_name)
            .verify_equals(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await
    }

    fn describe(_ctx: Ctx<'_>, _p: &QuarantineParams, pre: &QuarantinePreState) -> Vec<String> {
        let replaces = if pre.previous_document.is_some() {
            " (replaces the user's existing policy of that name; undo restores it)"
        } else {
            ""
        };
        vec![format!(
            "{} user={} policy={} Deny * on *{replaces}",
            ops::IAM_PUT_USER_POLICY.iam_action,
            pre.user_name,
            pre.policy_name
        )]
    }
}

/// Deletes the user's console password. Irreversible: a password cannot be
/// read back, so it cannot be put back, only reset by a human.
#[derive(Debug)]
pub struct DeleteLoginProfile;

/// The user's login profile as it was (metadata only; IAM never returns a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoginProfileState {
    pub created: Option<String>,
    pub password_reset_required: bool,
}

/// Whether the user had a console password before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeleteLoginProfilePreState {
    pub user_name: String,
    pub login_profile: Option<LoginProfileState>,
}

/// What deleting the console password did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeleteLoginProfileOutcome {
    pub user_name: String,
    /// False when the user had no console password.
    pub deleted: bool,
}

/// Rollback of a password deletion that needed none (anything else is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeleteLoginProfileUndone {
    /// Why there was nothing to undo.
    pub nothing_to_undo: String,
}

async fn login_profile(ctx: Ctx<'_>, user: &str) -> Result<Option<LoginProfileState>, ActionError> {
    let clients = ctx.clients();
    let request = clients.iam.get_login_profile().user_name(user);
    match clients
        .try_call(
            &ops::IAM_GET_LOGIN_PROFILE,
            &format!("user {user}"),
            request,
        )
        .await
    {
        Ok(out) => Ok(out.login_profile().map(|p| LoginProfileState {
            created: timestamp(p.create_date()),
            password_reset_required: p.password_reset_required(),
        })),
        Err(e) if is_missing(&e, "login profile") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn cannot_restore(user: &str) -> ActionError {
    ActionError::new(
        ErrorKind::Refused,
        format!("user {user}"),
        format!(
            "the console password of user {user} was deleted and cannot be restored, only reset"
        ),
        "if the user must sign in again, a human sets a new password (`aws iam create-login-profile`) once the incident is closed",
    )
}

impl Handler for DeleteLoginProfile {
    type Params = DeleteLoginProfileParams;
    type PreState = DeleteLoginProfilePreState;
    type Outcome = DeleteLoginProfileOutcome;
    type Undone = DeleteLoginProfileUndone;

    async fn pre_state(
        ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
    ) -> Result<DeleteLoginProfilePreState, ActionError> {
        let user = user_target(ctx)?;
        let profile = login_profile(ctx, &user).await?;
        Ok(DeleteLoginProfilePreState {
            user_name: user,
            login_profile: profile,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
        pre: &DeleteLoginProfilePreState,
    ) -> Result<DeleteLoginProfileOutcome, ActionError> {
        let mut deleted = false;
        if pre.login_profile.is_some() {
            let clients = ctx.clients();
            let request = clients.iam.delete_login_profile().user_name(&pre.user_name);
            let resource = format!("user {}", pre.user_name);
            match clients
                .try_call(&ops::IAM_DELETE_LOGIN_PROFILE, &resource, request)
                .await
            {
                Ok(_) => {}
                // Gone already: an earlier, interrupted attempt deleted it.
                Err(e) if is_missing(&e, "login profile") => {}
                Err(e) => return Err(e.into()),
            }
            deleted = true;
        }
        info!(user = %pre.user_name, deleted, "console password removed");
        Ok(DeleteLoginProfileOutcome {
            user_name: pre.user_name.clone(),
            deleted,
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
        pre: &DeleteLoginProfilePreState,
        _outcome: &DeleteLoginProfileOutcome,
    ) -> Result<(), ActionError> {
        match login_profile(ctx, &pre.user_name).await? {
            None => Ok(()),
            Some(_) => Err(ActionError::new(
                ErrorKind::Verification,
                format!("user {}", pre.user_name),
                format!("user {} still has a console password", pre.user_name),
                "IAM may not have caught up yet; the step is retried",
            )),
        }
    }

    /// Nothing to undo when the password is still there (the step never got
    /// to delete it) or there never was one; otherwise refused.
    async fn undo(
        ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
        pre: &DeleteLoginProfilePreState,
        outcome: Option<&DeleteLoginProfileOutcome>,
    ) -> Result<DeleteLoginProfileUndone, ActionError> {
        let nothing = |why: &str| DeleteLoginProfileUndone {
            nothing_to_undo: why.to_string(),
        };
        if pre.login_profile.is_none() || outcome.is_some_and(|o| !o.deleted) {
            return Ok(nothing("the user had no console password"));
        }
        if login_profile(ctx, &pre.user_name).await?.is_some() {
            return Ok(nothing("the console password was never deleted"));
        }
        Err(cannot_restore(&pre.user_name))
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
        pre: &DeleteLoginProfilePreState,
    ) -> Result<(), ActionError> {
        let live = login_profile(ctx, &pre.user_name).await?;
        match (&pre.login_profile, live) {
            (Some(_), None) => Err(cannot_restore(&pre.user_name)),
            (None, Some(_)) => Err(ActionError::new(
                ErrorKind::Verification,
                format!("user {}", pre.user_name),
                format!(
                    "user {} has a console password now but had none before the step",
                    pre.user_name
                ),
                "someone created one since; check who, and delete it by hand if it is not legitimate",
            )),
            _ => Ok(()),
        }
    }

    fn describe(
        _ctx: Ctx<'_>,
        _p: &DeleteLoginProfileParams,
        pre: &DeleteLoginProfilePreState,
    ) -> Vec<String> {
        match &pre.login_profile {
            Some(_) => vec![format!(
                "{} user={} (irreversible: the password can only be reset, never restored)",
                ops::IAM_DELETE_LOGIN_PROFILE.iam_action,
                pre.user_name
            )],
            None => vec![format!(
                "(no call: user {} has no console password)",
                pre.user_name
            )],
        }
    }
}
