//! Why building, reading or cleaning up a fixture failed: what, on which
//! resource, and what to do.

use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::fixture::OwnedResource;
use crate::spec::SpecProblem;

/// One failure of the fixture builder.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The spec has problems; nothing was created.
    #[error("the environment spec has {} problem(s), nothing was created:\n  {}", .0.len(), join(.0))]
    InvalidSpec(Vec<SpecProblem>),
    /// An AWS call failed.
    #[error(
        "{operation} failed for {resource}: {code}: {message}; fix what AWS names, then clean up what the run created"
    )]
    Aws {
        /// The IAM action of the call, e.g. `ec2:RunInstances`.
        operation: &'static str,
        /// What it was called for (a logical name or an id).
        resource: String,
        /// AWS's error code (`InvalidVpcID.NotFound`), or the kind of
        /// failure when no answer came.
        code: String,
        /// AWS's message.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request could not be built (a bug of the builder).
    #[error(
        "could not build the {operation} request for {resource}: {source}; report this as a cordon bug"
    )]
    Request {
        /// The IAM action of the call.
        operation: &'static str,
        /// What it was for.
        resource: String,
        /// What the SDK said.
        #[source]
        source: aws_sdk_iam::error::BuildError,
    },
    /// A call succeeded but its answer lacked what the builder needs.
    #[error("{operation} for {resource} returned no {what}; the endpoint is not behaving like AWS")]
    Incomplete {
        /// The IAM action of the call.
        operation: &'static str,
        /// What it was called for.
        resource: String,
        /// The missing part of the answer.
        what: &'static str,
    },
    /// A resource did not reach the state the builder waits for.
    #[error(
        "{resource} did not become {state} within {waited:?}; check it in the console and clean up"
    )]
    Timeout {
        /// The resource.
        resource: String,
        /// The state waited for.
        state: &'static str,
        /// How long the builder waited.
        waited: Duration,
    },
    /// A lookup by logical name that the fixture does not have.
    #[error("the fixture has no {kind} named `{name}`")]
    Unknown {
        /// `instance`, `user`, …
        kind: &'static str,
        /// The logical name asked for.
        name: String,
    },
}

impl FixtureError {
    /// Whether AWS said the resource does not exist (cleanup counts that as done).
    pub fn is_not_found(&self) -> bool {
        match self {
            FixtureError::Aws { code, message, .. } => {
                code.contains("NotFound")
                    || code == "NoSuchEntity"
                    || (code == "ValidationError" && message.contains("not found"))
            }
            _ => false,
        }
    }
}

fn join(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// A failed provisioning run, with everything it created before failing, so
/// the caller can hand that to [`cleanup`](crate::cleanup).
#[derive(Debug, thiserror::Error)]
#[error("{source} ({} resource(s) were created before the failure; clean them up)", .created.len())]
pub struct ProvisionError {
    /// What went wrong.
    #[source]
    pub source: FixtureError,
    /// What exists now, in creation order.
    pub created: Vec<OwnedResource>,
}

/// Maps an SDK error of `operation` on `resource` to a [`FixtureError`] that
/// quotes AWS's code and message.
pub(crate) fn aws<E, R>(
    operation: &'static str,
    resource: &str,
) -> impl FnOnce(SdkError<E, R>) -> FixtureError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let resource = resource.to_string();
    move |err| {
        let (code, message) = match err.as_service_error() {
            Some(service) => (
                service.code().unwrap_or("Unknown").to_string(),
                service.message().unwrap_or("no message").to_string(),
            ),
            None => ("NoAnswer".to_string(), err.to_string()),
        };
        FixtureError::Aws {
            operation,
            resource,
            code,
            message,
            source: Box::new(err),
        }
    }
}

/// The error for an answer that lacks `what`.
pub(crate) fn incomplete(
    operation: &'static str,
    resource: &str,
    what: &'static str,
) -> FixtureError {
    FixtureError::Incomplete {
        operation,
        resource: resource.to_string(),
        what,
    }
}
