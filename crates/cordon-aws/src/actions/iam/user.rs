//! User containment: `quarantine-user` (attaches cordon's managed deny-all
//! policy, whose explicit deny beats any allow, so it works whatever else the
//! user is granted) and `delete-login-profile` (the console password;
//! irreversible).
//!
//! Quarantine attaches one managed policy,
//! `arn:<partition>:iam::<account>:policy/cordon/<policy-name>` (created once
//! from `cordon policy --quarantine-policy`), rather than writing an inline
//! policy: the role then needs `iam:AttachUserPolicy` limited by
//! `iam:PolicyARN` to that one policy, where `iam:PutUserPolicy` on any user
//! could as well write an allow. Journals of the versions that wrote an inline
//! policy keep their pre-state shape ([`InlineQuarantine`]) and roll back as
//! those versions did.

use cordon_core::action::{
    DeleteLoginProfile as DeleteLoginProfileParams, QuarantineUser as QuarantineParams,
};
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::ids::IdKind;
use cordon_core::policy::CORDON_IAM_PATH;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{
    PolicyHolder, PolicyRestored, is_missing, is_no_such_entity, same_document, timestamp,
    user_target,
};
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::ops;

/// Denies every request the user makes, until rollback.
#[derive(Debug)]
pub struct QuarantineUser;

/// What the step will change: whether the user has cordon's managed deny
/// policy attached. Journals of the inline-policy versions hold the other shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuarantinePreState {
    /// The managed policy's attachment before the step.
    Managed(ManagedQuarantine),
    /// Written by the versions that put an inline deny-all policy.
    Inline(InlineQuarantine),
}

/// The user and whether the managed deny policy was attached before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagedQuarantine {
    pub user_name: String,
    /// `arn:<partition>:iam::<account>:policy/cordon/<policy-name>`.
    pub policy_arn: String,
    /// Attached already (by another case or by hand): undo leaves it attached.
    pub attached_before: bool,
}

/// The pre-state the inline-policy versions journaled: the user, and the
/// previous content of the inline policy they wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InlineQuarantine {
    pub user_name: String,
    pub policy_name: String,
    /// The user's inline policy of that name before the step (URL-decoded), if any.
    pub previous_document: Option<String>,
}

/// What the quarantine did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuarantineOutcome {
    /// The managed policy is attached.
    Managed(ManagedQuarantined),
    /// What the inline-policy versions journaled.
    Inline(InlineQuarantined),
}

/// The managed deny policy is attached to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagedQuarantined {
    pub user_name: String,
    pub policy_arn: String,
    /// False when it was attached before the step.
    pub newly_attached: bool,
}

/// The inline-policy versions' outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InlineQuarantined {
    pub user_name: String,
    pub policy_name: String,
    /// True when a policy of the same name existed and its content was replaced.
    pub replaced_previous_policy: bool,
}

/// How undo lifted the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuarantineLifted {
    /// The managed policy detached (or left, when it was attached before).
    Managed(Detached),
    /// The inline policy put back as it was.
    Inline(PolicyRestored),
}

/// What undo did with the managed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Detached {
    pub user_name: String,
    pub policy_arn: String,
    /// False when it stays attached (it was before the step) or was gone already.
    pub detached: bool,
}

/// The explicit deny-all document: the managed policy's content
/// (`cordon policy --quarantine-policy`), and what the inline-policy versions wrote.
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

/// The managed policy's ARN in the finding's partition and account, from
/// validated parts only.
fn policy_arn(ctx: Ctx<'_>, p: &QuarantineParams) -> Result<String, ActionError> {
    let finding = &ctx.plan.finding;
    let parts = [
        (IdKind::Partition, finding.partition.as_str()),
        (IdKind::Account, finding.account_id.as_str()),
        (IdKind::PolicyName, p.policy_name.as_str()),
    ];
    for (kind, value) in parts {
        kind.check(value).map_err(|e| {
            ActionError::new(
                ErrorKind::InvalidState,
                format!("step {}", ctx.step.id),
                format!("cannot name the quarantine policy: {e}"),
                "fix the finding or the step's policy-name",
            )
        })?;
    }
    Ok(format!(
        "arn:{}:iam::{}:policy{CORDON_IAM_PATH}{}",
        finding.partition, finding.account_id, p.policy_name
    ))
}

/// The ARNs of cordon's managed policies (path `/cordon/`) attached to `user`.
async fn attached_policies(ctx: Ctx<'_>, user: &str) -> Result<Vec<String>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .iam
        .list_attached_user_policies()
        .user_name(user)
        .path_prefix(CORDON_IAM_PATH);
    let pages = clients
        .paginate(
            &ops::IAM_LIST_ATTACHED_USER_POLICIES,
            &format!("user {user}"),
            request,
        )
        .await?;
    Ok(items(&pages, |page| page.attached_policies())
        .iter()
        .filter_map(|policy| policy.policy_arn().map(str::to_owned))
        .collect())
}

async fn is_attached(ctx: Ctx<'_>, user: &str, arn: &str) -> Result<bool, ActionError> {
    Ok(attached_policies(ctx, user).await?.iter().any(|a| a == arn))
}

/// The managed policy does not exist: it is created once, by a human.
fn missing_policy(arn: &str, name: &str) -> ActionError {
    ActionError::new(
        ErrorKind::NotFound,
        format!("policy {arn}"),
        format!("the managed quarantine policy {arn} does not exist"),
        format!(
            "create it once in that account: `cordon policy --quarantine-policy > quarantine.json` then \
             `aws iam create-policy --path {CORDON_IAM_PATH} --policy-name {name} --policy-document file://quarantine.json`"
        ),
    )
}

/// A step prepared by an inline-policy version cannot be applied by this one.
fn prepared_inline(user: &str) -> ActionError {
    ActionError::new(
        ErrorKind::Refused,
        format!("user {user}"),
        "this quarantine step was prepared by a cordon version that wrote an inline policy",
        "roll the case back (`cordon rollback CASE`), then run it again to quarantine with the managed policy",
    )
}

impl Handler for QuarantineUser {
    type Params = QuarantineParams;
    type PreState = QuarantinePreState;
    type Outcome = QuarantineOutcome;
    type Undone = QuarantineLifted;

    async fn pre_state(
        ctx: Ctx<'_>,
        p: &QuarantineParams,
    ) -> Result<QuarantinePreState, ActionError> {
        let arn = policy_arn(ctx, p)?;
        let user = user_target(ctx)?;
        let attached_before = is_attached(ctx, &user, &arn).await?;
        Ok(QuarantinePreState::Managed(ManagedQuarantine {
            user_name: user,
            policy_arn: arn,
            attached_before,
        }))
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &QuarantineParams,
        pre: &QuarantinePreState,
    ) -> Result<QuarantineOutcome, ActionError> {
        let pre = match pre {
            QuarantinePreState::Managed(pre) => pre,
            QuarantinePreState::Inline(pre) => return Err(prepared_inline(&pre.user_name)),
        };
        let clients = ctx.clients();
        let request = clients
            .iam
            .attach_user_policy()
            .user_name(&pre.user_name)
            .policy_arn(&pre.policy_arn);
        let resource = format!("user {}", pre.user_name);
        match clients
            .try_call(&ops::IAM_ATTACH_USER_POLICY, &resource, request)
            .await
        {
            Ok(_) => {}
            // IAM names a missing user "the user with name X"; anything else
            // missing is the policy.
            Err(e) if is_no_such_entity(&e) && !is_missing(&e, "user with name") => {
                return Err(missing_policy(&pre.policy_arn, &p.policy_name));
            }
            Err(e) => return Err(e.into()),
        }
        info!(user = %pre.user_name, policy = %pre.policy_arn, attached_before = pre.attached_before, "user quarantined");
        Ok(QuarantineOutcome::Managed(ManagedQuarantined {
            user_name: pre.user_name.clone(),
            policy_arn: pre.policy_arn.clone(),
            newly_attached: !pre.attached_before,
        }))
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
        _outcome: &QuarantineOutcome,
    ) -> Result<(), ActionError> {
        let (user, holds, what) = match pre {
            QuarantinePreState::Managed(pre) => (
                &pre.user_name,
                is_attached(ctx, &pre.user_name, &pre.policy_arn).await?,
                format!("managed policy {} is not attached", pre.policy_arn),
            ),
            QuarantinePreState::Inline(pre) => {
                let live = PolicyHolder::User(&pre.user_name)
                    .get(ctx, &pre.policy_name)
                    .await?;
                let holds = live
                    .as_deref()
                    .is_some_and(|live| same_document(live, &deny_all_document()));
                let what = format!(
                    "inline policy `{}` is not the deny-all policy",
                    pre.policy_name
                );
                (&pre.user_name, holds, what)
            }
        };
        if holds {
            return Ok(());
        }
        Err(ActionError::new(
            ErrorKind::Verification,
            format!("user {user}"),
            what,
            "IAM may not have caught up yet; the step is retried",
        ))
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
        _outcome: Option<&QuarantineOutcome>,
    ) -> Result<QuarantineLifted, ActionError> {
        let pre = match pre {
            QuarantinePreState::Managed(pre) => pre,
            QuarantinePreState::Inline(pre) => {
                let result = PolicyHolder::User(&pre.user_name)
                    .restore(ctx, &pre.policy_name, pre.previous_document.as_deref())
                    .await?;
                info!(user = %pre.user_name, policy = %pre.policy_name, "user quarantine (inline policy) lifted");
                return Ok(QuarantineLifted::Inline(result));
            }
        };
        let mut detached = false;
        if !pre.attached_before {
            let clients = ctx.clients();
            let request = clients
                .iam
                .detach_user_policy()
                .user_name(&pre.user_name)
                .policy_arn(&pre.policy_arn);
            let resource = format!("user {}", pre.user_name);
            match clients
                .try_call(&ops::IAM_DETACH_USER_POLICY, &resource, request)
                .await
            {
                Ok(_) => detached = true,
                // Not attached (apply never ran, or undone already): nothing to lift.
                Err(e) if is_no_such_entity(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        info!(user = %pre.user_name, policy = %pre.policy_arn, detached, "user quarantine lifted");
        Ok(QuarantineLifted::Managed(Detached {
            user_name: pre.user_name.clone(),
            policy_arn: pre.policy_arn.clone(),
            detached,
        }))
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &QuarantineParams,
        pre: &QuarantinePreState,
    ) -> Result<(), ActionError> {
        let pre = match pre {
            QuarantinePreState::Managed(pre) => pre,
            QuarantinePreState::Inline(pre) => {
                return PolicyHolder::User(&pre.user_name)
                    .verify_equals(ctx, &pre.policy_name, pre.previous_document.as_deref())
                    .await;
            }
        };
        let attached = is_attached(ctx, &pre.user_name, &pre.policy_arn).await?;
        if attached == pre.attached_before {
            return Ok(());
        }
        let (was, is) = if pre.attached_before {
            ("attached", "detached")
        } else {
            ("not attached", "attached")
        };
        Err(ActionError::new(
            ErrorKind::Verification,
            format!("user {}", pre.user_name),
            format!(
                "managed policy {} is not back at its pre-state: it was {was}, now it is {is}",
                pre.policy_arn
            ),
            "IAM may not have caught up yet; if it does not settle, compare the user's attached policies with the journaled pre-state",
        ))
    }

    fn describe(_ctx: Ctx<'_>, _p: &QuarantineParams, pre: &QuarantinePreState) -> Vec<String> {
        match pre {
            QuarantinePreState::Managed(pre) => {
                let already = if pre.attached_before {
                    " (attached already; undo leaves it attached)"
                } else {
                    ""
                };
                vec![format!(
                    "{} user={} policy={} Deny * on *{already}",
                    ops::IAM_ATTACH_USER_POLICY.iam_action,
                    pre.user_name,
                    pre.policy_arn
                )]
            }
            QuarantinePreState::Inline(pre) => vec![format!(
                "(no call: user {} was prepared by the inline-policy version; roll the case back)",
                pre.user_name
            )],
        }
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
