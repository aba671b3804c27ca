//! Turning SDK errors into one clear error: what failed, on which resource,
//! and what to do. The SDK error is kept as the source.
//!
//! The call path ([`crate::client::AwsClients::call`]) returns a [`CallError`]:
//! the operation's row, the resource, and the failure classified once. Callers
//! that must treat a particular answer as success (a group that already
//! exists, a key already gone) use [`crate::client::AwsClients::try_call`] and
//! look at the typed [`Failed`] first.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_core::executor::{ActionError, ErrorKind};

use crate::ops::Op;

/// A failed AWS call, classified: the operation, the resource it was called
/// on, the kind of failure and AWS's own code and message.
#[derive(Debug, thiserror::Error)]
#[error("{} ({resource}): {}", self.message(), self.hint())]
pub struct CallError {
    /// The operation's row.
    pub op: &'static Op,
    /// What the call was about (an id, an ARN, `s3://bucket/key`).
    pub resource: String,
    /// The failure's class, for retries and stable error names.
    pub kind: ErrorKind,
    /// AWS's error code (`UnauthorizedOperation`), or what went wrong on the way.
    pub code: String,
    /// The first line of AWS's message; may be empty.
    pub detail: String,
    /// The HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// The SDK's error.
    #[source]
    pub source: BoxError,
}

impl CallError {
    /// `{Operation} failed with {code}: {detail}`.
    pub fn message(&self) -> String {
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", self.detail)
        };
        format!("{} failed with {}{detail}", self.op.name, self.code)
    }

    /// What to do about it, by kind; for access denied, the IAM action to grant.
    pub fn hint(&self) -> String {
        match self.kind {
            ErrorKind::Throttled => {
                "AWS is throttling this account; retry shortly (cordon backs off on its own)"
                    .to_string()
            }
            ErrorKind::AccessDenied => {
                let actions: Vec<String> =
                    self.op.iam_actions().map(|a| format!("`{a}`")).collect();
                format!(
                    "grant {} to the identity cordon runs as",
                    join_and(&actions)
                )
            }
            ErrorKind::NotFound => {
                "check the id is right and still exists in this account and region".to_string()
            }
            ErrorKind::InvalidState => {
                "the resource is not in a state that allows this; check it in the console"
                    .to_string()
            }
            ErrorKind::Timeout => "check network access to the AWS endpoint and retry".to_string(),
            _ => "see the AWS error above; fix the cause and resume the case".to_string(),
        }
    }

    /// Classifies an SDK error for `op` on `resource`.
    pub fn from_sdk<E>(op: &'static Op, resource: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (kind, code, detail) = match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown").to_string();
                let detail = inner.message().unwrap_or("").to_string();
                let kind = match (classify_code(&code), status) {
                    // Some services answer throttling or denial with a bare status.
                    (ErrorKind::Other, Some(429)) => ErrorKind::Throttled,
                    (ErrorKind::Other, Some(401 | 403)) => ErrorKind::AccessDenied,
                    (kind, _) => kind,
                };
                (kind, code, detail)
            }
            SdkError::TimeoutError(_) => (
                ErrorKind::Timeout,
                "Timeout".to_string(),
                "the request timed out".to_string(),
            ),
            // A timeout is the endpoint not answering in time (every
            // attempt's budget spent), not the endpoint being out of reach.
            SdkError::DispatchFailure(failure) if failure.is_timeout() => (
                ErrorKind::Timeout,
                "Timeout".to_string(),
                "no answer within any attempt's time budget".to_string(),
            ),
            SdkError::DispatchFailure(_) => (
                ErrorKind::Other,
                "DispatchFailure".to_string(),
                "could not reach the AWS endpoint".to_string(),
            ),
            SdkError::ResponseError(_) => (
                ErrorKind::Other,
                "ResponseError".to_string(),
                "unreadable response".to_string(),
            ),
            SdkError::ConstructionFailure(_) => (
                ErrorKind::Other,
                "ConstructionFailure".to_string(),
                "the request could not be built".to_string(),
            ),
            _ => (ErrorKind::Other, "Unknown".to_string(), String::new()),
        };
        CallError {
            op,
            resource: resource.to_string(),
            kind,
            code,
            detail: first_line(&detail).to_string(),
            status,
            source: Box::new(err),
        }
    }
}

impl From<CallError> for ActionError {
    fn from(err: CallError) -> Self {
        let (message, hint) = (err.message(), err.hint());
        ActionError {
            kind: err.kind,
            resource: err.resource,
            message,
            hint,
            source: Some(err.source),
        }
    }
}

/// A call that failed, before classification: the SDK's typed error, so a
/// caller can accept an expected answer (`InvalidGroup.Duplicate`, a 404)
/// and turn anything else into a [`CallError`] with `?`.
#[derive(Debug)]
pub struct Failed<E> {
    op: &'static Op,
    resource: String,
    error: SdkError<E, HttpResponse>,
}

impl<E> Failed<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    pub(crate) fn new(op: &'static Op, resource: &str, error: SdkError<E, HttpResponse>) -> Self {
        Failed {
            op,
            resource: resource.to_string(),
            error,
        }
    }

    /// AWS's error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        self.error.code()
    }

    /// AWS's error message, when there is one.
    pub fn message(&self) -> Option<&str> {
        self.error.message()
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.error.raw_response().map(|r| r.status().as_u16())
    }

    /// The raw answer's body, when the SDK buffered it (an emulator's
    /// malformed but readable reply).
    pub fn raw_body(&self) -> Option<&[u8]> {
        self.error.raw_response().and_then(|r| r.body().bytes())
    }

    /// The service's modelled error, when AWS answered with one.
    pub fn service_error(&self) -> Option<&E> {
        self.error.as_service_error()
    }

    /// Whether the call may have taken effect although it failed: no answer
    /// came (a timed-out attempt, a dropped connection, an unreadable reply)
    /// or AWS answered with a server error. A call sent once
    /// ([`Op::send_once`]) that failed this way is reconciled by a read
    /// before it is sent again; a refusal (any 4xx answer, and throttling,
    /// which EC2 and S3 answer with 503) changed nothing.
    pub fn may_have_taken_effect(&self) -> bool {
        match &self.error {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => {
                self.status().is_some_and(|status| status >= 500) && !self.is_throttling()
            }
            _ => false,
        }
    }

    /// Whether AWS refused the call for the request rate: it changed nothing
    /// and may be sent again after a pause.
    pub fn is_throttling(&self) -> bool {
        self.service_error().is_some()
            && (self
                .code()
                .is_some_and(|code| classify_code(code) == ErrorKind::Throttled)
                || self.status() == Some(429))
    }

    /// Classified, for everything the caller does not handle itself.
    pub fn into_error(self) -> CallError {
        CallError::from_sdk(self.op, &self.resource, self.error)
    }
}

impl<E> From<Failed<E>> for CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(failed: Failed<E>) -> Self {
        failed.into_error()
    }
}

impl<E> From<Failed<E>> for ActionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(failed: Failed<E>) -> Self {
        failed.into_error().into()
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Maps AWS error codes (EC2, IAM, S3, Secrets Manager, ...) to a kind.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "RequestThrottled"
        | "LimitExceededException"
        | "SnapshotCreationPerVolumeRateExceeded" => ErrorKind::Throttled,
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException" => ErrorKind::AccessDenied,
        "IncorrectInstanceState"
        | "IncorrectState"
        | "InvalidStateException"
        | "InvalidRequestException" => ErrorKind::InvalidState,
        "ConcurrentModification" | "ConcurrentModificationException" | "DependencyViolation" => {
            ErrorKind::Conflict
        }
        "NoSuchEntity"
        | "NoSuchBucket"
        | "NoSuchKey"
        | "ResourceNotFoundException"
        | "TargetGroupNotFound"
        | "LoadBalancerNotFound" => ErrorKind::NotFound,
        c if c.ends_with(".NotFound") || c.ends_with("NotFound") || c.ends_with(".Malformed") => {
            ErrorKind::NotFound
        }
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(classify_code("RequestLimitExceeded"), ErrorKind::Throttled);
        assert_eq!(
            classify_code("UnauthorizedOperation"),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify_code("InvalidInstanceID.NotFound"),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_code("InvalidNetworkInterfaceID.NotFound"),
            ErrorKind::NotFound
        );
        assert_eq!(classify_code("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(
            classify_code("IncorrectInstanceState"),
            ErrorKind::InvalidState
        );
        assert_eq!(classify_code("ValidationError"), ErrorKind::Other);
        assert_eq!(classify_code("Whatever"), ErrorKind::Other);
    }
}
