//! The approver's answer to a Step Functions approval wait (`cordon approve
//! CASE STEP --task-token TOKEN --journal s3://…`): the decision is journaled
//! in the case's S3 journal first ([`Executor::record_decision`], the same
//! checks as a local approval, the approver's verified identity), then the
//! waiting `Approve STEP` state is answered with SendTaskSuccess or
//! SendTaskFailure (`Cordon.ApprovalRefused`).
//!
//! A task token is a bearer secret (it travelled through SNS): it is held in
//! a [`TaskToken`] whose `Debug` shows only a short SHA-256 prefix, it is
//! sent only as the SDK call's parameter, and no error or log line carries
//! it, nor AWS's message about it (only the error code).

use cordon_core::executor::{Actions, Approver, Decision, ExecError, Executor};
use cordon_core::journal::JournalStore;
use cordon_core::plan::CaseId;
use sha2::{Digest, Sha256};

use crate::client::AwsClients;
use crate::ops;

/// Step Functions' longest task token.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// The error a refused approval fails the waiting state with (the state
/// machine's `Catch` matches it).
pub const APPROVAL_REFUSED: &str = cordon_core::asl::errors::APPROVAL_REFUSED;

/// A Step Functions task token. Never shown: `Debug` and [`TaskToken::fingerprint`]
/// give the first 12 hex digits of its SHA-256, enough to correlate with
/// what the Lambda journaled when it asked.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskToken(String);

impl TaskToken {
    /// Checks the token's shape (1 to 1024 printable ASCII characters, no
    /// spaces) without ever quoting it back.
    pub fn new(token: &str) -> Result<Self, TaskTokenError> {
        let token = token.trim();
        let fits = !token.is_empty()
            && token.len() <= MAX_TOKEN_CHARS
            && token.bytes().all(|b| b.is_ascii_graphic());
        if fits {
            Ok(Self(token.to_string()))
        } else {
            Err(TaskTokenError::Malformed)
        }
    }

    /// The first 12 hex digits of the token's SHA-256.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskToken(sha256:{}…)", self.fingerprint())
    }
}

/// Why an approval could not be answered. No variant carries the token.
#[derive(Debug, thiserror::Error)]
pub enum TaskTokenError {
    #[error(
        "the task token is malformed (1 to {MAX_TOKEN_CHARS} printable characters, no spaces): copy it whole from the approval message"
    )]
    Malformed,
    #[error(
        "step `{step}` of case {case}: the decision was not journaled, so the execution was not answered: {source}"
    )]
    Journal {
        case: CaseId,
        step: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error(
        "step `{step}` of case {case}: the decision is journaled, but Step Functions refused the answer ({code}): the execution no longer waits on this token (it timed out, was answered or stopped), or the token is from another account or region; `cordon status` and the execution's history say which"
    )]
    Rejected {
        case: CaseId,
        step: String,
        /// AWS's error code only: its message may quote the token.
        code: String,
    },
}

/// Journals `decision` on `step` of `case` through `executor` (whose journal
/// is the case's S3 journal), then answers the waiting execution: approved ⇒
/// SendTaskSuccess with `{"decision": "approved", "approver": ARN}`, refused
/// ⇒ SendTaskFailure with [`APPROVAL_REFUSED`] and who refused and why.
/// `Pending`/`TimedOut` are not answers and change nothing.
pub async fn answer<A: Actions, J: JournalStore, P: Approver>(
    executor: &Executor<'_, A, J, P>,
    clients: &AwsClients,
    case: &CaseId,
    step: &str,
    decision: Decision,
    token: &TaskToken,
) -> Result<(), TaskTokenError> {
    executor
        .record_decision(case, step, decision.clone())
        .await
        .map_err(|source| TaskTokenError::Journal {
            case: case.clone(),
            step: step.to_string(),
            source: Box::new(source),
        })?;
    // What the call is about, in errors and the call record: never the token.
    let about = format!("{case}/{step}");
    let rejected = |e: crate::errors::CallError| TaskTokenError::Rejected {
        case: case.clone(),
        step: step.to_string(),
        code: e.code,
    };
    match decision {
        Decision::Approved { approver } => {
            let output = serde_json::json!({ "decision": "approved", "approver": approver });
            let request = clients
                .sfn
                .send_task_success()
                .task_token(&token.0)
                .output(output.to_string());
            clients
                .call(&ops::STATES_SEND_TASK_SUCCESS, &about, request)
                .await
                .map_err(rejected)?;
        }
        Decision::Refused { approver, reason } => {
            let cause = if reason.is_empty() {
                format!("refused by {approver}")
            } else {
                format!("refused by {approver}: {reason}")
            };
            let request = clients
                .sfn
                .send_task_failure()
                .task_token(&token.0)
                .error(APPROVAL_REFUSED)
                .cause(cause);
            clients
                .call(&ops::STATES_SEND_TASK_FAILURE, &about, request)
                .await
                .map_err(rejected)?;
        }
        Decision::Pending | Decision::TimedOut { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_shown_only_its_fingerprint() {
        let token = TaskToken::new("AQCEAAAAKgAAAAMAAAAAAAAAAdsecretpart").expect("valid");
        let shown = format!("{token:?}");
        assert!(!shown.contains("secretpart"), "{shown}");
        assert_eq!(shown, format!("TaskToken(sha256:{}…)", token.fingerprint()));
        assert_eq!(token.fingerprint().len(), 12);
    }

    #[test]
    fn malformed_tokens_are_refused_without_being_quoted() {
        for bad in [
            "",
            "  ",
            "has space inside",
            "tab\there",
            &"x".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            let err = TaskToken::new(bad).expect_err(bad);
            assert!(!err.to_string().contains("space inside"));
        }
        assert!(TaskToken::new(" trimmed-token \n").is_ok());
    }
}
