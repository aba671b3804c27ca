//! The stable error names the state machine matches (`ErrorEquals`), and the
//! one place each cause is given its name.

use cordon_aws::accounts::AccountError;
use cordon_aws::errors::CallError;
use cordon_core::executor::{ActionError, ErrorKind, ExecError};
use cordon_core::journal::JournalError;
use lambda_runtime::Diagnostic;

/// A Lambda error type (`errorType`): transient ones are retried by the
/// state machine, hard ones caught. Business outcomes are never errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumIter)]
pub enum ErrorName {
    /// AWS throttled a call (after the SDK's own retries). Retry.
    #[strum(serialize = "Cordon.Throttled")]
    Throttled,
    /// A call timed out. Retry.
    #[strum(serialize = "Cordon.Timeout")]
    Timeout,
    /// Another invocation holds the case's lease (or took it over). Retry.
    #[strum(serialize = "Cordon.InProgress")]
    InProgress,
    /// The Lambda's role may not do what the task needs. Catch.
    #[strum(serialize = "Cordon.AccessDenied")]
    AccessDenied,
    /// The finding or the task input is malformed or hostile. Catch.
    #[strum(serialize = "Cordon.InvalidFinding")]
    InvalidFinding,
    /// Unknown case or step, or a missing resource or setting. Catch.
    #[strum(serialize = "Cordon.NotFound")]
    NotFound,
    /// The state machine pins another playbook set than this Lambda embeds. Catch.
    #[strum(serialize = "Cordon.PlaybookSetMismatch")]
    PlaybookSetMismatch,
    /// A step invoked before the steps it needs are done. Catch, never retry.
    #[strum(serialize = "Cordon.NotReady")]
    NotReady,
    /// Anything else (a corrupt journal, an unexpected AWS error). Catch.
    #[strum(serialize = "Cordon.Internal")]
    Internal,
}

/// A task that failed: its stable name and one sentence naming the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct TaskError {
    pub name: ErrorName,
    pub message: String,
}

impl TaskError {
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
}

impl From<TaskError> for Diagnostic {
    fn from(error: TaskError) -> Diagnostic {
        Diagnostic {
            error_type: error.name.to_string(),
            error_message: error.message,
        }
    }
}

/// The name of a failure by its class.
pub fn kind_name(kind: ErrorKind) -> ErrorName {
    match kind {
        ErrorKind::Throttled => ErrorName::Throttled,
        ErrorKind::Timeout => ErrorName::Timeout,
        ErrorKind::Conflict => ErrorName::InProgress,
        ErrorKind::AccessDenied => ErrorName::AccessDenied,
        ErrorKind::NotFound | ErrorKind::NotConfigured => ErrorName::NotFound,
        ErrorKind::InvalidState
        | ErrorKind::Verification
        | ErrorKind::Refused
        | ErrorKind::Other => ErrorName::Internal,
    }
}

/// The name of an engine error: the one place journal, lease and input
/// errors meet their names.
pub fn exec_name(error: &ExecError) -> ErrorName {
    match error {
        ExecError::Journal(
            JournalError::Locked { .. }
            | JournalError::Conflict { .. }
            | JournalError::Fenced { .. },
        ) => ErrorName::InProgress,
        ExecError::Journal(JournalError::UnknownCase { .. }) | ExecError::UnknownStep { .. } => {
            ErrorName::NotFound
        }
        ExecError::Journal(JournalError::Io { source, .. }) => source
            .as_deref()
            .and_then(|s| s.downcast_ref::<CallError>())
            .map_or(ErrorName::Internal, |call| kind_name(call.kind)),
        ExecError::Journal(JournalError::Corrupt { .. } | JournalError::NewerFormat(_)) => {
            ErrorName::Internal
        }
        ExecError::NotReady { .. } => ErrorName::NotReady,
        ExecError::NoApprovalNeeded { .. } | ExecError::AlreadyDecided { .. } => {
            ErrorName::InvalidFinding
        }
        ExecError::NotAnApprover { .. } => ErrorName::AccessDenied,
    }
}

pub(crate) fn exec_error(error: ExecError) -> TaskError {
    TaskError::new(exec_name(&error), error.to_string())
}

pub(crate) fn call_error(error: &CallError) -> TaskError {
    TaskError::new(kind_name(error.kind), error.to_string())
}

/// Why a case cannot act in its finding's account. A role that cannot be
/// assumed is `Cordon.AccessDenied` (unless STS throttled or timed out:
/// retried), saying what to deploy; a malformed account or region in the
/// finding is `Cordon.InvalidFinding`.
pub(crate) fn account_error(error: &AccountError) -> TaskError {
    match error {
        AccountError::AssumeRole {
            account,
            role,
            caller,
            code,
            source,
            ..
        } => {
            let name = match kind_name(source.kind) {
                transient @ (ErrorName::Throttled | ErrorName::Timeout) => transient,
                _ => ErrorName::AccessDenied,
            };
            TaskError::new(
                name,
                format!(
                    "the case's finding is from account {account} and this Lambda (as {caller}) cannot assume {role} there ({code}): deploy infra/member-account.yaml in account {account} with SecurityAccountLambdaRoleArn set to this Lambda's role and the same ExternalId as CORDON_EXTERNAL_ID (or set CORDON_ASSUME_ROLE_NAME to the role deployed there); nothing was changed"
                ),
            )
        }
        AccountError::Malformed { .. } => {
            TaskError::new(ErrorName::InvalidFinding, error.to_string())
        }
        AccountError::ExternalId => TaskError::new(
            ErrorName::InvalidFinding,
            "CORDON_EXTERNAL_ID must be 2 to 1224 of A-Z a-z 0-9 + = , . @ : / _ -: nothing was changed",
        ),
        AccountError::CallerIdentity { source } => {
            TaskError::new(kind_name(source.kind), error.to_string())
        }
        AccountError::NoCredentials { .. } => {
            TaskError::new(ErrorName::AccessDenied, error.to_string())
        }
        AccountError::Clients(_) => TaskError::new(ErrorName::Internal, error.to_string()),
    }
}

pub(crate) fn action_error(error: &ActionError) -> TaskError {
    TaskError::new(kind_name(error.kind), error.to_string())
}

/// An error whose cause is a failed AWS call somewhere in its chain.
pub(crate) fn of_error(error: &(dyn std::error::Error + 'static)) -> TaskError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // A boxed source (`Box<CallError>`) is its own type to `downcast_ref`.
        let call = current
            .downcast_ref::<CallError>()
            .or_else(|| current.downcast_ref::<Box<CallError>>().map(|b| &**b));
        if let Some(call) = call {
            return TaskError::new(kind_name(call.kind), error.to_string());
        }
        cause = current.source();
    }
    TaskError::new(ErrorName::Internal, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::plan::CaseId;
    use strum::IntoEnumIterator;

    fn case() -> CaseId {
        CaseId::parse("case-0123456789abcdef0123").expect("a case id")
    }

    fn call(kind: ErrorKind, code: &str) -> CallError {
        CallError {
            op: &cordon_aws::ops::S3_PUT_OBJECT,
            resource: "s3://bucket/cases/x".to_string(),
            kind,
            code: code.to_string(),
            detail: String::new(),
            status: Some(503),
            source: Box::new(std::io::Error::other(code.to_string())),
        }
    }

    fn journal_io(kind: ErrorKind, code: &str) -> ExecError {
        ExecError::Journal(JournalError::Io {
            location: "s3://bucket/cases/x".to_string(),
            message: "cannot write".to_string(),
            source: Some(Box::new(call(kind, code))),
        })
    }

    /// One cause of each name, through the functions the handler uses.
    fn causes() -> Vec<(ErrorName, TaskError)> {
        vec![
            (
                ErrorName::Throttled,
                exec_error(journal_io(ErrorKind::Throttled, "SlowDown")),
            ),
            (
                ErrorName::Timeout,
                call_error(&call(ErrorKind::Timeout, "TimeoutError")),
            ),
            (
                ErrorName::InProgress,
                exec_error(ExecError::Journal(JournalError::Locked {
                    case: case(),
                    detail: "held".to_string(),
                })),
            ),
            (
                ErrorName::AccessDenied,
                exec_error(journal_io(ErrorKind::AccessDenied, "AccessDenied")),
            ),
            (
                ErrorName::InvalidFinding,
                exec_error(ExecError::NoApprovalNeeded {
                    case: case(),
                    step: "tag".to_string(),
                }),
            ),
            (
                ErrorName::NotFound,
                exec_error(ExecError::Journal(JournalError::UnknownCase {
                    case: case(),
                })),
            ),
            (
                ErrorName::PlaybookSetMismatch,
                TaskError::new(ErrorName::PlaybookSetMismatch, "pinned another set"),
            ),
            (
                ErrorName::NotReady,
                exec_error(ExecError::NotReady {
                    case: case(),
                    step: "c".to_string(),
                    waiting: vec!["a".to_string()],
                }),
            ),
            (
                ErrorName::Internal,
                exec_error(ExecError::Journal(JournalError::Corrupt {
                    case: case(),
                    seq: 3,
                    reason: "hash chain broken".to_string(),
                })),
            ),
        ]
    }

    #[test]
    fn every_name_has_a_cause_and_reaches_the_diagnostic() {
        let causes = causes();
        for name in ErrorName::iter() {
            let (_, error) = causes
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no cause for {name}"));
            assert_eq!(error.name, name, "{error}");
            assert!(name.to_string().starts_with("Cordon."));
            let diagnostic: Diagnostic = error.clone().into();
            assert_eq!(diagnostic.error_type, name.to_string());
            assert!(!diagnostic.error_message.is_empty());
        }
    }

    #[test]
    fn lease_and_record_races_are_in_progress_not_failures() {
        for error in [
            ExecError::Journal(JournalError::Conflict {
                case: case(),
                seq: 4,
            }),
            ExecError::Journal(JournalError::Fenced {
                case: case(),
                detail: "token 2 > 1".to_string(),
            }),
        ] {
            assert_eq!(exec_name(&error), ErrorName::InProgress, "{error}");
        }
    }

    #[test]
    fn an_error_chain_is_named_by_the_call_inside() {
        let wrapped = cordon_aws::protected::ProtectedTagError {
            resource: "i-0123456789abcdef0".to_string(),
            tag: "cordon:protected".to_string(),
            source: Box::new(call(ErrorKind::AccessDenied, "UnauthorizedOperation")),
        };
        let error = of_error(&wrapped);
        assert_eq!(error.name, ErrorName::AccessDenied);
        assert!(
            error.message.contains("i-0123456789abcdef0"),
            "{}",
            error.message
        );
    }
}
