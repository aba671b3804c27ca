//! User containment: `quarantine-user` (an explicit deny-all inline policy,
//! which beats any allow, so it works whatever else the user is granted) and
//! `delete-login-profile` (the console password; irreversible).

use cordon_core::action::Action;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use super::{PolicyHolder, is_missing, same_document, timestamp, user_target, wrong_params};
use crate::actions::{Ctx, Handler};
use crate::errors::sdk_error;

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

fn quarantine_policy<'a>(ctx: Ctx<'a>) -> Result<&'a str, ActionError> {
    match &ctx.step.action {
        Action::QuarantineUser(params) => Ok(&params.policy_name),
        _ => Err(wrong_params(ctx)),
    }
}

impl Handler for QuarantineUser {
    type PreState = QuarantinePreState;

    async fn pre_state(ctx: Ctx<'_>) -> Result<QuarantinePreState, ActionError> {
        let policy = quarantine_policy(ctx)?;
        let user = user_target(ctx)?;
        let previous = PolicyHolder::User(&user).get(ctx, policy).await?;
        Ok(QuarantinePreState {
            user_name: user,
            policy_name: policy.to_string(),
            previous_document: previous,
        })
    }

    async fn apply(ctx: Ctx<'_>, pre: &QuarantinePreState) -> Result<Value, ActionError> {
        PolicyHolder::User(&pre.user_name)
            .put(ctx, &pre.policy_name, &deny_all_document())
            .await?;
        let replaced = pre.previous_document.is_some();
        info!(user = %pre.user_name, policy = %pre.policy_name, replaced_previous_policy = replaced, "user quarantined");
        Ok(serde_json::json!({
            "user-name": pre.user_name,
            "policy-name": pre.policy_name,
            "replaced-previous-policy": replaced,
        }))
    }

    async fn verify(
        ctx: Ctx<'_>,
        pre: &QuarantinePreState,
        _outcome: &Value,
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
        pre: &QuarantinePreState,
        _outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let result = PolicyHolder::User(&pre.user_name)
            .restore(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await?;
        info!(user = %pre.user_name, policy = %pre.policy_name, "user quarantine lifted");
        Ok(result)
    }

    async fn verify_undone(ctx: Ctx<'_>, pre: &QuarantinePreState) -> Result<(), ActionError> {
        PolicyHolder::User(&pre.user_name)
            .verify_equals(ctx, &pre.policy_name, pre.previous_document.as_deref())
            .await
    }

    fn describe(_ctx: Ctx<'_>, pre: &QuarantinePreState) -> Vec<String> {
        let replaces = if pre.previous_document.is_some() {
            " (replaces the user's existing policy of that name; undo restores it)"
        } else {
            ""
        };
        vec![format!(
            "iam:PutUserPolicy user={} policy={} Deny * on *{replaces}",
            pre.user_name, pre.policy_name
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

async fn login_profile(ctx: Ctx<'_>, user: &str) -> Result<Option<LoginProfileState>, ActionError> {
    let clients = ctx.clients();
    clients.limit("IAM.GetLoginProfile").await;
    match clients.iam.get_login_profile().user_name(user).send().await {
        Ok(out) => Ok(out.login_profile().map(|p| LoginProfileState {
            created: timestamp(p.create_date()),
            password_reset_required: p.password_reset_required(),
        })),
        Err(e) if is_missing(&e, "login profile") => Ok(None),
        Err(e) => Err(sdk_error(
            e,
            "GetLoginProfile",
            "iam:GetLoginProfile",
            &format!("user {user}"),
        )),
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
    type PreState = DeleteLoginProfilePreState;

    async fn pre_state(ctx: Ctx<'_>) -> Result<DeleteLoginProfilePreState, ActionError> {
        if !matches!(ctx.step.action, Action::DeleteLoginProfile(_)) {
            return Err(wrong_params(ctx));
        }
        let user = user_target(ctx)?;
        let profile = login_profile(ctx, &user).await?;
        Ok(DeleteLoginProfilePreState {
            user_name: user,
            login_profile: profile,
        })
    }

    async fn apply(ctx: Ctx<'_>, pre: &DeleteLoginProfilePreState) -> Result<Value, ActionError> {
        let mut deleted = false;
        if pre.login_profile.is_some() {
            let clients = ctx.clients();
            clients.limit("IAM.DeleteLoginProfile").await;
            match clients
                .iam
                .delete_login_profile()
                .user_name(&pre.user_name)
                .send()
                .await
            {
                Ok(_) => {}
                // Gone already: an earlier, interrupted attempt deleted it.
                Err(e) if is_missing(&e, "login profile") => {}
                Err(e) => {
                    return Err(sdk_error(
                        e,
                        "DeleteLoginProfile",
                        "iam:DeleteLoginProfile",
                        &format!("user {}", pre.user_name),
                    ));
                }
            }
            deleted = true;
        }
        info!(user = %pre.user_name, deleted, "console password removed");
        Ok(serde_json::json!({
            "user-name": pre.user_name,
            "deleted": deleted,
        }))
    }

    async fn verify(
        ctx: Ctx<'_>,
        pre: &DeleteLoginProfilePreState,
        _outcome: &Value,
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
        pre: &DeleteLoginProfilePreState,
        outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let deleted = outcome
            .and_then(|o| o.get("deleted"))
            .and_then(Value::as_bool);
        if pre.login_profile.is_none() || deleted == Some(false) {
            return Ok(serde_json::json!({"nothing-to-undo": "the user had no console password"}));
        }
        if login_profile(ctx, &pre.user_name).await?.is_some() {
            return Ok(
                serde_json::json!({"nothing-to-undo": "the console password was never deleted"}),
            );
        }
        Err(cannot_restore(&pre.user_name))
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
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

    fn describe(_ctx: Ctx<'_>, pre: &DeleteLoginProfilePreState) -> Vec<String> {
        match &pre.login_profile {
            Some(_) => vec![format!(
                "iam:DeleteLoginProfile user={} (irreversible: the password can only be reset, never restored)",
                pre.user_name
            )],
            None => vec![format!(
                "(no call: user {} has no console password)",
                pre.user_name
            )],
        }
    }
}
