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
    /// The creation journal could not be written: nothing more is created.
    #[error(transparent)]
    Journal(#[from] Box<crate::ledger::LedgerError>),
    /// Cleanup found a resource without the Game Day tag where it expected
    /// its own, and left it alone.
    #[error(
        "{resource} does not carry the Game Day tag, so cleanup left it alone; delete it yourself if the Game Day made it"
    )]
    NotOwned {
        /// The resource.
        resource: String,
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

impl From<crate::ledger::LedgerError> for FixtureError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        FixtureError::Journal(Box::new(e))
    }
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

/// A scenario file that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read the scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The scenario has problems; each names its file, line and column.
    #[error("the scenario has {} problem(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<cordon_core::validate::Problem>),
}

/// Why a Game Day could not be run to its end (a scenario that runs and
/// fails its expectations is not an error: its scorecard says so).
#[derive(Debug, thiserror::Error)]
pub enum GamedayError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The emulator could not be started.
    #[error(
        "could not start the emulator {program}: {reason}; run scripts/setup, or pass --emulator PATH"
    )]
    Emulator {
        /// The moto_server binary.
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// A file of the run could not be written or read.
    #[error("{path}: {source}; check the --out directory")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cordon child process could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Building, reading or cleaning up the environment failed.
    #[error(transparent)]
    Fixture(Box<FixtureError>),
    /// Provisioning failed (what it created was cleaned up).
    #[error(transparent)]
    Provision(Box<ProvisionError>),
    /// The AWS clients could not be built.
    #[error(transparent)]
    Clients(#[from] cordon_aws::client::ClientError),
    /// A journal of the run could not be read.
    #[error("the journal of case {case} cannot be read: {source}")]
    Journal {
        /// The case.
        case: String,
        /// Why.
        #[source]
        source: Box<cordon_core::journal::JournalError>,
    },
    /// `--target aws` without an allow-list: refused before any change.
    #[error(
        "no --allow-account given: a Game Day on AWS changes only accounts listed with --allow-account ACCOUNT_ID, and the caller is account {account}; nothing was changed"
    )]
    NoAllowList {
        /// The caller's account.
        account: String,
    },
    /// The caller's account is not on the allow-list: refused before any change.
    #[error(
        "account {account} is not on the allow-list (--allow-account {allowed}); nothing was changed: pass --allow-account {account} only if it is a sandbox account for Game Days"
    )]
    AccountNotAllowed {
        /// The caller's account.
        account: String,
        /// The accounts allowed.
        allowed: String,
    },
    /// An existing resource the run would touch lacks the Game Day tag:
    /// refused before any change.
    #[error(
        "{resource} does not carry the tag {tag}; nothing was changed: a Game Day on AWS touches only resources tagged {tag} (tag it if it is meant for Game Days)"
    )]
    Untagged {
        /// The resource.
        resource: String,
        /// The tag it lacks.
        tag: &'static str,
    },
    /// A scorecard directory holds no readable scorecard.
    #[error("{path}: {reason}")]
    Scorecards {
        /// The directory or file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<FixtureError> for GamedayError {
    fn from(e: FixtureError) -> Self {
        GamedayError::Fixture(Box::new(e))
    }
}

impl From<ProvisionError> for GamedayError {
    fn from(e: ProvisionError) -> Self {
        GamedayError::Provision(Box::new(e))
    }
}

impl GamedayError {
    /// Whether the Game Day refused to start (nothing was changed).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GamedayError::NoAllowList { .. }
                | GamedayError::AccountNotAllowed { .. }
                | GamedayError::Untagged { .. }
        )
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> GamedayError + '_ {
        move |source| GamedayError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
