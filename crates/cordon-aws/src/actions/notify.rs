//! `notify`: one SNS message to the responders with the case's summary.
//!
//! A sent message cannot be unsent, so undo has nothing to do; and a crash
//! between publishing and journaling it means the message may go out twice
//! on resume — a duplicate page is better than a missing one.

use cordon_core::action::Notify as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Ctx, Handler};
use crate::ops;

/// The `notify` handler.
#[derive(Debug)]
pub struct Notify;

/// Where the message goes and what it says, fixed before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NotifyPreState {
    #[serde(alias = "topic_arn")]
    pub topic_arn: String,
    pub subject: String,
}

/// The message SNS accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NotifyOutcome {
    pub topic_arn: String,
    /// SNS's id for the message; what verify checks.
    pub message_id: Option<String>,
}

/// A sent message cannot be unsent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NotifyUndone {
    pub note: String,
}

/// SNS subjects are limited to 100 characters.
const MAX_SUBJECT: usize = 100;

fn message(ctx: Ctx<'_>) -> String {
    let plan = ctx.plan;
    let body = json!({
        "case-id": plan.case_id,
        "playbook": plan.playbook,
        "finding": plan.finding,
        "steps": plan.steps.iter().map(|s| json!({
            "id": s.id,
            "action": s.kind().to_string(),
            "target": s.target.label(),
            "approval-required": s.approval.required,
        })).collect::<Vec<_>>(),
        "next": format!("cordon status {}", plan.case_id),
    });
    serde_json::to_string_pretty(&body).unwrap_or_default()
}

impl Handler for Notify {
    type Params = Params;
    type PreState = NotifyPreState;
    type Outcome = NotifyOutcome;
    type Undone = NotifyUndone;

    async fn pre_state(ctx: Ctx<'_>, params: &Params) -> Result<NotifyPreState, ActionError> {
        let topic_arn = params
            .topic_arn
            .clone()
            .or_else(|| ctx.aws.notify_topic.clone())
            .ok_or_else(|| {
                // Optional unless the playbook says `required: true`: skipped, not failed.
                let kind = if params.required {
                    ErrorKind::Refused
                } else {
                    ErrorKind::NotConfigured
                };
                ActionError::new(
                    kind,
                    format!("step {}", ctx.step.id),
                    "no SNS topic to notify",
                    "set `topic-arn` in the step's `with:` or CORDON_NOTIFY_TOPIC_ARN",
                )
            })?;
        let clients = ctx.clients();
        let request = clients.sns.get_topic_attributes().topic_arn(&topic_arn);
        clients
            .call(&ops::SNS_GET_TOPIC_ATTRIBUTES, &topic_arn, request)
            .await?;
        let subject: String = params.subject.chars().take(MAX_SUBJECT).collect();
        Ok(NotifyPreState { topic_arn, subject })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _params: &Params,
        pre: &NotifyPreState,
    ) -> Result<NotifyOutcome, ActionError> {
        let clients = ctx.clients();
        let request = clients
            .sns
            .publish()
            .topic_arn(&pre.topic_arn)
            .subject(&pre.subject)
            .message(message(ctx));
        let out = clients
            .call(&ops::SNS_PUBLISH, &pre.topic_arn, request)
            .await?;
        Ok(NotifyOutcome {
            topic_arn: pre.topic_arn.clone(),
            message_id: out.message_id().map(str::to_string),
        })
    }

    async fn verify(
        _ctx: Ctx<'_>,
        _params: &Params,
        pre: &NotifyPreState,
        outcome: &NotifyOutcome,
    ) -> Result<(), ActionError> {
        match outcome.message_id.as_deref() {
            Some(id) if !id.is_empty() => Ok(()),
            _ => Err(ActionError::new(
                ErrorKind::Verification,
                pre.topic_arn.clone(),
                "SNS accepted the message but returned no message id",
                "check the topic's delivery status; the step is retried",
            )),
        }
    }

    async fn undo(
        _ctx: Ctx<'_>,
        _params: &Params,
        _pre: &NotifyPreState,
        _outcome: Option<&NotifyOutcome>,
    ) -> Result<NotifyUndone, ActionError> {
        Ok(NotifyUndone {
            note: "a sent notification cannot be unsent; nothing to undo".to_string(),
        })
    }

    async fn verify_undone(
        _ctx: Ctx<'_>,
        _params: &Params,
        _pre: &NotifyPreState,
    ) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _params: &Params, pre: &NotifyPreState) -> Vec<String> {
        vec![format!(
            "{} topic={} subject={:?}",
            ops::SNS_PUBLISH.iam_action,
            pre.topic_arn,
            pre.subject
        )]
    }
}
