//! `notify`: one SNS message to the responders with the case's summary.
//!
//! A sent message cannot be unsent, so undo has nothing to do; and a crash
//! between publishing and journaling it means the message may go out twice
//! on resume — a duplicate page is better than a missing one.

use cordon_core::action::Action;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Ctx, Handler};
use crate::errors::sdk_error;

/// The `notify` handler.
#[derive(Debug)]
pub struct Notify;

/// Where the message goes and what it says, fixed before sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyPreState {
    pub topic_arn: String,
    pub subject: String,
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
    type PreState = NotifyPreState;

    async fn pre_state(ctx: Ctx<'_>) -> Result<NotifyPreState, ActionError> {
        let Action::Notify(params) = &ctx.step.action else {
            return Err(super::wrong_target(ctx.step, &ctx.step.target));
        };
        let topic_arn = params
            .topic_arn
            .clone()
            .or_else(|| ctx.aws.notify_topic.clone())
            .ok_or_else(|| {
                ActionError::new(
                    ErrorKind::Refused,
                    format!("step {}", ctx.step.id),
                    "no SNS topic to notify",
                    "set `topic-arn` in the step's `with:` or CORDON_NOTIFY_TOPIC_ARN",
                )
            })?;
        let clients = ctx.clients();
        clients.limit("GetTopicAttributes").await;
        clients
            .sns
            .get_topic_attributes()
            .topic_arn(&topic_arn)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    e,
                    "GetTopicAttributes",
                    "sns:GetTopicAttributes",
                    &topic_arn,
                )
            })?;
        let subject: String = params.subject.chars().take(MAX_SUBJECT).collect();
        Ok(NotifyPreState { topic_arn, subject })
    }

    async fn apply(ctx: Ctx<'_>, pre: &NotifyPreState) -> Result<Value, ActionError> {
        let clients = ctx.clients();
        clients.limit("Publish").await;
        let out = clients
            .sns
            .publish()
            .topic_arn(&pre.topic_arn)
            .subject(&pre.subject)
            .message(message(ctx))
            .send()
            .await
            .map_err(|e| sdk_error(e, "Publish", "sns:Publish", &pre.topic_arn))?;
        Ok(json!({ "topic-arn": pre.topic_arn, "message-id": out.message_id() }))
    }

    async fn verify(
        _ctx: Ctx<'_>,
        pre: &NotifyPreState,
        outcome: &Value,
    ) -> Result<(), ActionError> {
        match outcome.get("message-id").and_then(Value::as_str) {
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
        _pre: &NotifyPreState,
        _outcome: Option<&Value>,
    ) -> Result<Value, ActionError> {
        Ok(json!({ "note": "a sent notification cannot be unsent; nothing to undo" }))
    }

    async fn verify_undone(_ctx: Ctx<'_>, _pre: &NotifyPreState) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, pre: &NotifyPreState) -> Vec<String> {
        vec![format!(
            "sns:Publish topic={} subject={:?}",
            pre.topic_arn, pre.subject
        )]
    }
}
