//! Acting in the finding's account and region, never the caller's by accident.
//!
//! A resource name in a finding (a role, a user) only means something in the
//! finding's account and region: a finding from account B naming role `app`
//! must never touch role `app` in the account cordon happens to run in. So
//! before any change the finding's account is compared with the caller's STS
//! identity: the same account acts with the caller's credentials; another
//! account is acted on only through a role assumed there
//! (`arn:<partition>:iam::<account>:role/<name>`, external id optional), and
//! every client of the case uses those credentials. Clients are always built
//! for the finding's region.

use aws_credential_types::Credentials;
use cordon_core::ids::{IdError, IdKind};

use crate::client::{AwsClients, ClientError};
use crate::errors::CallError;
use crate::ops;

/// Default name of the role assumed in a finding's account.
pub const DEFAULT_RESPONDER_ROLE: &str = cordon_core::policy::RESPONDER_ROLE_NAME;

/// How to reach a finding's account when it is not the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossAccount {
    /// The role's name in every member account (`--assume-role-name`).
    pub role_name: String,
    /// The external id the role's trust policy asks for, if any.
    pub external_id: Option<String>,
}

impl Default for CrossAccount {
    fn default() -> Self {
        Self {
            role_name: DEFAULT_RESPONDER_ROLE.to_string(),
            external_id: None,
        }
    }
}

/// Where and as whom a case acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The finding's account.
    pub account: String,
    /// The finding's region: every client of the case is built for it.
    pub region: String,
    /// The identity cordon was started as.
    pub caller: String,
    /// The role assumed in the finding's account, when it is not the caller's.
    pub assumed_role: Option<String>,
    /// The identity every call of the case is made as.
    pub acting_as: String,
}

/// Why cordon cannot act in the finding's account; one sentence saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// An account, region, partition or role name that would go into an ARN is malformed.
    #[error("{what} {source}: nothing was changed")]
    Malformed {
        what: &'static str,
        #[source]
        source: IdError,
    },
    /// The external id has a form STS never accepts.
    #[error(
        "--external-id must be 2 to 1224 of A-Z a-z 0-9 + = , . @ : / _ -: nothing was changed"
    )]
    ExternalId,
    /// STS could not say who cordon runs as.
    #[error("cannot tell which account cordon runs in (STS GetCallerIdentity): {source}")]
    CallerIdentity {
        #[source]
        source: Box<CallError>,
    },
    /// The role in the finding's account could not be assumed.
    #[error(
        "the finding is from account {account} and cordon (as {caller}) cannot assume {role} there ({code}): create the role in account {account} with a trust policy that lets {caller} call sts:AssumeRole{external}, or name another with --assume-role-name; nothing was changed"
    )]
    AssumeRole {
        account: String,
        role: String,
        caller: String,
        code: String,
        external: &'static str,
        #[source]
        source: Box<CallError>,
    },
    /// STS answered without credentials (never seen; refused rather than guessed).
    #[error("STS AssumeRole for {role} returned no credentials: nothing was changed")]
    NoCredentials { role: String },
    /// The clients for the finding's region could not be built.
    #[error(transparent)]
    Clients(#[from] ClientError),
}

/// The caller's identity: (account, ARN).
pub async fn caller_identity(clients: &AwsClients) -> Result<(String, String), AccountError> {
    let out = clients
        .call(
            &ops::STS_GET_CALLER_IDENTITY,
            "caller",
            clients.sts.get_caller_identity(),
        )
        .await
        .map_err(|e| AccountError::CallerIdentity {
            source: Box::new(e),
        })?;
    Ok((
        out.account().unwrap_or_default().to_string(),
        out.arn().unwrap_or_default().to_string(),
    ))
}

fn checked(what: &'static str, kind: IdKind, value: &str) -> Result<(), AccountError> {
    kind.check(value)
        .map_err(|source| AccountError::Malformed { what, source })
}

fn external_id_ok(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'_' | b'-'
                )
        })
}

/// The caller's own clients for `region` (the same clients when it is the
/// caller's region): what a case in the caller's own account acts with, and
/// what reads made before the account is known (the protected-tag guard's,
/// alongside the caller-identity check) use.
pub fn own_account_clients(
    caller_clients: &AwsClients,
    region: &str,
) -> Result<AwsClients, AccountError> {
    checked("the finding's region", IdKind::Region, region)?;
    if caller_clients.region == region {
        return Ok(caller_clients.clone());
    }
    // One budget per account and region for the whole process: every case
    // of a burst in this region draws on the same buckets.
    let mut clients = caller_clients.derive(region, None)?;
    clients.limits = caller_clients.limits.in_region(region);
    Ok(clients)
}

/// The clients a case on a finding from (`partition`, `account`, `region`)
/// acts through, and as whom: the caller's own in the finding's region when
/// the accounts match, else a role assumed in the finding's account
/// (`session` names the STS session, e.g. the case id). The clients share
/// the caller's call counter and recorder.
pub async fn acting_clients(
    caller_clients: &AwsClients,
    partition: &str,
    account: &str,
    region: &str,
    cross: &CrossAccount,
    session: &str,
) -> Result<(AwsClients, Scope), AccountError> {
    checked("the finding's partition", IdKind::Partition, partition)?;
    checked("the finding's account", IdKind::Account, account)?;
    checked("the finding's region", IdKind::Region, region)?;
    let (caller_account, caller) = caller_identity(caller_clients).await?;
    if caller_account == account {
        let clients = own_account_clients(caller_clients, region)?;
        let scope = Scope {
            account: account.to_string(),
            region: region.to_string(),
            caller: caller.clone(),
            assumed_role: None,
            acting_as: caller,
        };
        return Ok((clients, scope));
    }
    checked("--assume-role-name", IdKind::RoleName, &cross.role_name)?;
    if let Some(id) = &cross.external_id
        && !external_id_ok(id)
    {
        return Err(AccountError::ExternalId);
    }
    let role = format!("arn:{partition}:iam::{account}:role/{}", cross.role_name);
    let request = caller_clients
        .sts
        .assume_role()
        .role_arn(&role)
        .role_session_name(session)
        .set_external_id(cross.external_id.clone());
    let out = caller_clients
        .call(&ops::STS_ASSUME_ROLE, &role, request)
        .await
        .map_err(|e| AccountError::AssumeRole {
            account: account.to_string(),
            role: role.clone(),
            caller: caller.clone(),
            code: e.code.clone(),
            external: if cross.external_id.is_some() {
                " with the external id given"
            } else {
                ""
            },
            source: Box::new(e),
        })?;
    let Some(granted) = out.credentials() else {
        return Err(AccountError::NoCredentials { role });
    };
    let expiry = std::time::SystemTime::try_from(*granted.expiration()).ok();
    let credentials = Credentials::new(
        granted.access_key_id(),
        granted.secret_access_key(),
        Some(granted.session_token().to_string()),
        expiry,
        "cordon-assume-role",
    );
    let acting_as = out
        .assumed_role_user()
        .map(|u| u.arn().to_string())
        .unwrap_or_else(|| format!("{role} (session {session})"));
    let mut clients = caller_clients.derive(region, Some(credentials))?;
    clients.limits = caller_clients.limits.scoped(account, region);
    let scope = Scope {
        account: account.to_string(),
        region: region.to_string(),
        caller,
        assumed_role: Some(role),
        acting_as,
    };
    Ok((clients, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_checked_against_sts_format() {
        assert!(external_id_ok("Unique-ID_1234"));
        assert!(!external_id_ok("x"));
        assert!(!external_id_ok("has space"));
        assert!(!external_id_ok("new\nline"));
    }
}
