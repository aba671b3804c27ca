//! Turning SDK errors into one clear [`ActionError`]: what failed, on which
//! resource, and what to do. The SDK error is kept as the source.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_core::executor::{ActionError, ErrorKind};

/// Classifies an SDK error. `operation` is the API name (`ModifyNetworkInterfaceAttribute`),
/// `permission` the IAM action it needs, `resource` the id it was called on.
pub fn sdk_error<E, R>(
    err: SdkError<E, R>,
    operation: &str,
    permission: &str,
    resource: &str,
) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, code, detail) = match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown").to_string();
            let detail = inner.message().unwrap_or("").to_string();
            (classify_code(&code), code, detail)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Timeout,
            "Timeout".to_string(),
            "the request timed out".to_string(),
        ),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Other
            };
            (
                kind,
                "DispatchFailure".to_string(),
                "could not reach the AWS endpoint".to_string(),
            )
        }
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
    let hint = match kind {
        ErrorKind::Throttled => {
            "AWS is throttling this account; retry shortly (cordon backs off on its own)"
                .to_string()
        }
        ErrorKind::AccessDenied => format!("grant `{permission}` to the identity cordon runs as"),
        ErrorKind::NotFound => {
            "check the id is right and still exists in this account and region".to_string()
        }
        ErrorKind::InvalidState => {
            "the resource is not in a state that allows this; check it in the console".to_string()
        }
        ErrorKind::Timeout => "check network access to the AWS endpoint and retry".to_string(),
        _ => "see the AWS error above; fix the cause and resume the case".to_string(),
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {}", first_line(&detail))
    };
    ActionError::new(
        kind,
        resource,
        format!("{operation} failed with {code}{detail}"),
        hint,
    )
    .with_source(err)
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
