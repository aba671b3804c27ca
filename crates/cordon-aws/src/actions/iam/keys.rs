//! Access keys: `deactivate-access-key` and `rotate-access-key`.
//!
//! Both act on exactly the key the finding names. Deactivating every key of
//! the user is the classic mistake of incident-response tooling (it breaks
//! the user's working keys along with the stolen one); here any other key of
//! the user is only read, so verification can prove it was left alone.
//!
//! Rotation puts the replacement key straight into Secrets Manager. The
//! secret access key exists in this process only inside [`SecretText`], from
//! the `CreateAccessKey` answer until `CreateSecret` has been sent; it never
//! reaches the journal, the logs or an error message.
//!
//! # Which keys rotation may delete
//!
//! Only keys it created itself and never stored (their secret died with an
//! interrupted attempt, so nobody can use them), and on undo the replacement
//! it stored. It knows which keys those are from its progress records,
//! journaled durably around `CreateAccessKey`:
//! `{"phase": "creating-key", "existing-keys": [...]}` just before it,
//! `{"phase": "key-created", "access-key-id": "..."}` as soon as it answers,
//! `{"phase": "key-not-created", "reason": "..."}` when IAM refused. A key is
//! the step's own when a `key-created` record names it, or when the last
//! `creating-key` record has no answer recorded (a crash in between) and the
//! key is not among its `existing-keys`. A key that appeared any other way
//! (an operator's, between a refused attempt and a resume) is never deleted,
//! and counts against IAM's two-key limit like any other.

use std::fmt;

use aws_sdk_iam::types::StatusType;
use aws_sdk_secretsmanager::types::Tag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_core::action::{
    DeactivateAccessKey as DeactivateParams, RotateAccessKey as RotateParams, WhenTwoKeys,
};
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::finding::KeyKind;
use cordon_core::plan::AccessKeyTarget;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{KeyState, access_key_target, is_no_such_entity, key_statuses, list_keys, timestamp};
use crate::actions::{Ctx, Handler};
use crate::ops;

const ACTIVE: &str = "Active";
const INACTIVE: &str = "Inactive";
/// Days Secrets Manager keeps a rotated key's secret after a rollback, so a
/// rollback done by mistake can still be recovered (`RestoreSecret`).
pub const SECRET_RECOVERY_WINDOW_DAYS: i64 = 7;

/// Tag on the secret naming the case; undo only deletes a secret carrying its own case.
pub const TAG_CASE_ID: &str = "cordon:case-id";
/// Tag on the secret with the exact IAM user name (the secret's name may have it sanitized).
pub const TAG_USER: &str = "cordon:user";
/// Tag on the secret naming the replaced (compromised) key.
pub const TAG_OLD_KEY: &str = "cordon:old-access-key-id";
/// Tag on the secret naming the key it holds, so a re-run can find and reuse it
/// without ever reading the secret value.
pub const TAG_NEW_KEY: &str = "cordon:new-access-key-id";

/// Text that must never be shown: a secret access key, or the secret string
/// holding one. Debug and Display print `[redacted]`; it is neither `Clone`
/// nor `Serialize`, so it cannot leak into the journal or be copied around,
/// and its bytes are overwritten when it is dropped.
pub struct SecretText(String);

impl SecretText {
    /// The secret itself, only to hand it to the one request that stores it.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// The secret string stored in Secrets Manager: the usual
/// `{"AccessKeyId":…,"SecretAccessKey":…}` shape tools read credentials from.
fn secret_string(access_key_id: &str, secret: &SecretText) -> SecretText {
    // Built by hand so no serializable value ever holds the secret; both
    // fields are escaped as JSON strings.
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let secret_json = SecretText(quote(secret.expose()));
    SecretText(format!(
        "{{\"AccessKeyId\":{},\"SecretAccessKey\":{}}}",
        quote(access_key_id),
        secret_json.expose()
    ))
}

/// When the key was last used, as IAM reports it (evidence of what the attacker did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LastUsed {
    /// RFC 3339; absent when the key was never used.
    pub date: Option<String>,
    /// The service last called with the key (e.g. `s3`).
    pub service_name: Option<String>,
    /// The region of that last call.
    pub region: Option<String>,
}

/// Refuses keys IAM cannot act on, before any call is made.
fn check_long_term(ctx: Ctx<'_>, key: &AccessKeyTarget) -> Result<(), ActionError> {
    let resource = ctx.step.target.label();
    match key.key_kind {
        KeyKind::Temporary => {
            return Err(ActionError::new(
                ErrorKind::Refused,
                resource,
                format!(
                    "{} is a temporary (ASIA) key issued by STS, which IAM cannot deactivate or rotate",
                    key.access_key_id
                ),
                "use the `revoke-role-sessions` action on the role that issued it instead",
            ));
        }
        KeyKind::Unknown => {
            return Err(ActionError::new(
                ErrorKind::Refused,
                resource,
                format!(
                    "{} is not an IAM user's long-term access key id (AKIA…)",
                    key.access_key_id
                ),
                "check the finding's accessKeyDetails; only AKIA keys of IAM users can be acted on",
            ));
        }
        KeyKind::LongTerm => {}
    }
    match key.user_type.as_deref() {
        None | Some("IAMUser") => Ok(()),
        Some("Root") => Err(ActionError::new(
            ErrorKind::Refused,
            resource,
            format!("{} belongs to the account's root user", key.access_key_id),
            "root keys can only be managed by signing in as root: delete the key there and enable MFA",
        )),
        Some(other) => Err(ActionError::new(
            ErrorKind::Refused,
            resource,
            format!(
                "{} belongs to a {other} principal, not an IAM user",
                key.access_key_id
            ),
            "act on the principal that issued it (e.g. `revoke-role-sessions` for a role)",
        )),
    }
}

/// The named key's entry in the user's key list, or NotFound naming both.
fn find_named<'k>(
    keys: &'k [KeyState],
    key_id: &str,
    user: &str,
) -> Result<&'k KeyState, ActionError> {
    keys.iter().find(|k| k.access_key_id == key_id).ok_or_else(|| {
        ActionError::new(
            ErrorKind::NotFound,
            key_id,
            format!("access key {key_id} is not a key of IAM user {user}"),
            "it was deleted already, or the finding names another user: check `aws iam list-access-keys` for the user",
        )
    })
}

async fn update_status(
    ctx: Ctx<'_>,
    user: &str,
    key_id: &str,
    status: &str,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .iam
        .update_access_key()
        .user_name(user)
        .access_key_id(key_id)
        .status(StatusType::from(status));
    clients
        .call(&ops::IAM_UPDATE_ACCESS_KEY, key_id, request)
        .await?;
    Ok(())
}

/// Deletes a key; already gone is success. Returns whether it was deleted now.
async fn delete_key(ctx: Ctx<'_>, user: &str, key_id: &str) -> Result<bool, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .iam
        .delete_access_key()
        .user_name(user)
        .access_key_id(key_id);
    match clients
        .try_call(&ops::IAM_DELETE_ACCESS_KEY, key_id, request)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_no_such_entity(&e) => {
            // Either the key or the user is gone; a second list tells which.
            let keys = list_keys(ctx, user).await?;
            if keys.iter().any(|k| k.access_key_id == key_id) {
                Err(e.into())
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// deactivate-access-key

/// Deactivates exactly the key the finding names.
#[derive(Debug)]
pub struct DeactivateAccessKey;

/// What deactivation changes (the named key's status) and what it must not
/// (every other key of the user, recorded so verification can prove it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeactivatePreState {
    pub user_name: String,
    pub access_key_id: String,
    /// The named key's status before the step.
    pub status: String,
    /// Every key of the user, the named one included.
    pub keys: Vec<KeyState>,
    /// When and where the named key was last used.
    pub last_used: Option<LastUsed>,
}

/// What deactivation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeactivateOutcome {
    pub user_name: String,
    pub access_key_id: String,
    pub previous_status: String,
    /// False when the key was already inactive and no call was made.
    pub changed: bool,
    /// The user's other keys, deliberately left as they were.
    pub other_keys_untouched: Vec<String>,
}

/// What undoing the deactivation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeactivateUndone {
    pub access_key_id: String,
    /// The status put back (the pre-state's).
    pub restored_status: String,
    /// False when the key already had it.
    pub changed: bool,
}

async fn last_used(ctx: Ctx<'_>, key_id: &str) -> Result<(Option<String>, LastUsed), ActionError> {
    let clients = ctx.clients();
    let request = clients.iam.get_access_key_last_used().access_key_id(key_id);
    let out = clients
        .call(&ops::IAM_GET_ACCESS_KEY_LAST_USED, key_id, request)
        .await?;
    let used = out.access_key_last_used();
    let known = |s: &str| (!s.is_empty() && s != "N/A").then(|| s.to_string());
    Ok((
        out.user_name().map(str::to_string),
        LastUsed {
            date: used.and_then(|u| u.last_used_date()).and_then(timestamp),
            service_name: used.and_then(|u| known(u.service_name())),
            region: used.and_then(|u| known(u.region())),
        },
    ))
}

impl Handler for DeactivateAccessKey {
    type Params = DeactivateParams;
    type PreState = DeactivatePreState;
    type Outcome = DeactivateOutcome;
    type Undone = DeactivateUndone;

    async fn pre_state(
        ctx: Ctx<'_>,
        _p: &DeactivateParams,
    ) -> Result<DeactivatePreState, ActionError> {
        let key = access_key_target(ctx)?;
        check_long_term(ctx, key)?;
        let key_id = key.access_key_id.as_str();
        // Listing first: a missing user fails here, before anything else is asked.
        let (user, keys, used) = match &key.user_name {
            Some(user) => {
                let keys = list_keys(ctx, user).await?;
                find_named(&keys, key_id, user)?;
                let (_, used) = last_used(ctx, key_id).await?;
                (user.clone(), keys, used)
            }
            None => {
                // The finding names no user: ask IAM whose key it is.
                let (owner, used) = last_used(ctx, key_id).await?;
                let owner = owner.ok_or_else(|| {
                    ActionError::new(
                        ErrorKind::NotFound,
                        key_id,
                        format!("IAM does not say which user owns access key {key_id}"),
                        "find the owner with `aws iam get-access-key-last-used` and deactivate it by hand",
                    )
                })?;
                let keys = list_keys(ctx, &owner).await?;
                (owner, keys, used)
            }
        };
        let status = find_named(&keys, key_id, &user)?.status.clone();
        Ok(DeactivatePreState {
            user_name: user,
            access_key_id: key_id.to_string(),
            status,
            keys,
            last_used: Some(used),
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &DeactivateParams,
        pre: &DeactivatePreState,
    ) -> Result<DeactivateOutcome, ActionError> {
        let changed = pre.status != INACTIVE;
        if changed {
            update_status(ctx, &pre.user_name, &pre.access_key_id, INACTIVE).await?;
        }
        info!(
            access_key_id = %pre.access_key_id,
            user = %pre.user_name,
            changed,
            "access key deactivated"
        );
        Ok(DeactivateOutcome {
            user_name: pre.user_name.clone(),
            access_key_id: pre.access_key_id.clone(),
            previous_status: pre.status.clone(),
            changed,
            other_keys_untouched: pre
                .keys
                .iter()
                .filter(|k| k.access_key_id != pre.access_key_id)
                .map(|k| k.access_key_id.clone())
                .collect(),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &DeactivateParams,
        pre: &DeactivatePreState,
        _outcome: &DeactivateOutcome,
    ) -> Result<(), ActionError> {
        let live = list_keys(ctx, &pre.user_name).await?;
        let key = find_named(&live, &pre.access_key_id, &pre.user_name)?;
        if key.status != INACTIVE {
            return Err(ActionError::new(
                ErrorKind::Verification,
                pre.access_key_id.clone(),
                format!(
                    "access key {} still reads as {}",
                    pre.access_key_id, key.status
                ),
                "IAM may not have caught up yet; the step is retried",
            ));
        }
        for other in pre
            .keys
            .iter()
            .filter(|k| k.access_key_id != pre.access_key_id)
        {
            let now = live
                .iter()
                .find(|k| k.access_key_id == other.access_key_id)
                .map_or("deleted", |k| k.status.as_str());
            if now != other.status {
                return Err(ActionError::new(
                    ErrorKind::InvalidState,
                    other.access_key_id.clone(),
                    format!(
                        "another key of user {}, {}, changed from {} to {now} while its named key was deactivated",
                        pre.user_name, other.access_key_id, other.status
                    ),
                    "cordon never touches keys the finding does not name: someone else is changing this user's keys; find out who",
                ));
            }
        }
        Ok(())
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &DeactivateParams,
        pre: &DeactivatePreState,
        _outcome: Option<&DeactivateOutcome>,
    ) -> Result<DeactivateUndone, ActionError> {
        let live = list_keys(ctx, &pre.user_name).await?;
        let Some(key) = live.iter().find(|k| k.access_key_id == pre.access_key_id) else {
            return Err(ActionError::new(
                ErrorKind::NotFound,
                pre.access_key_id.clone(),
                format!(
                    "access key {} of user {} was deleted after it was deactivated, so it cannot be set back to {}",
                    pre.access_key_id, pre.user_name, pre.status
                ),
                "if the user still needs a key, create one by hand (or run rotate-access-key)",
            ));
        };
        let changed = key.status != pre.status;
        if changed {
            update_status(ctx, &pre.user_name, &pre.access_key_id, &pre.status).await?;
        }
        info!(access_key_id = %pre.access_key_id, status = %pre.status, changed, "access key status restored");
        Ok(DeactivateUndone {
            access_key_id: pre.access_key_id.clone(),
            restored_status: pre.status.clone(),
            changed,
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &DeactivateParams,
        pre: &DeactivatePreState,
    ) -> Result<(), ActionError> {
        // Keys created since (an operator's replacement) are not this step's.
        let live: Vec<KeyState> = list_keys(ctx, &pre.user_name)
            .await?
            .into_iter()
            .filter(|l| pre.keys.iter().any(|k| k.access_key_id == l.access_key_id))
            .collect();
        if key_statuses(&live) == key_statuses(&pre.keys) {
            return Ok(());
        }
        Err(ActionError::new(
            ErrorKind::Verification,
            format!("user {}", pre.user_name),
            format!(
                "the user's access keys are not back at their pre-state: expected {:?}, found {:?}",
                key_statuses(&pre.keys),
                key_statuses(&live)
            ),
            "a later step may not be rolled back yet, or someone changed the keys; compare with the journal",
        ))
    }

    fn describe(_ctx: Ctx<'_>, _p: &DeactivateParams, pre: &DeactivatePreState) -> Vec<String> {
        let others: Vec<&str> = pre
            .keys
            .iter()
            .filter(|k| k.access_key_id != pre.access_key_id)
            .map(|k| k.access_key_id.as_str())
            .collect();
        let untouched = if others.is_empty() {
            String::new()
        } else {
            format!("; other keys left as they are: {}", others.join(", "))
        };
        if pre.status == INACTIVE {
            vec![format!(
                "(no call: access key {} of user {} is already Inactive{untouched})",
                pre.access_key_id, pre.user_name
            )]
        } else {
            vec![format!(
                "{} user={} key={} status=Inactive (only this key{untouched})",
                ops::IAM_UPDATE_ACCESS_KEY.iam_action,
                pre.user_name,
                pre.access_key_id
            )]
        }
    }
}

// ---------------------------------------------------------------------------
// rotate-access-key

/// Progress record: a key is about to be created; the user's keys before it.
pub const PHASE_CREATING_KEY: &str = "creating-key";
/// Progress record: `CreateAccessKey` answered with this key.
pub const PHASE_KEY_CREATED: &str = "key-created";
/// Progress record: `CreateAccessKey` was refused; no key was created.
pub const PHASE_KEY_NOT_CREATED: &str = "key-not-created";

/// The keys among `live` this step created, judged from its progress records
/// (see the module docs): named by a `key-created` record, or absent from the
/// `existing-keys` of a last `creating-key` record that got no answer. Empty
/// when no key was ever about to be created. In `live` order.
pub fn created_by_step(progress: &[Value], live: &[KeyState]) -> Vec<String> {
    let mut created: Vec<&str> = Vec::new();
    let mut unanswered: Option<Vec<&str>> = None;
    for record in progress {
        match record["phase"].as_str() {
            Some(PHASE_CREATING_KEY) => {
                unanswered = Some(
                    record["existing-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect(),
                );
            }
            Some(PHASE_KEY_CREATED) => {
                created.extend(record["access-key-id"].as_str());
                unanswered = None;
            }
            Some(PHASE_KEY_NOT_CREATED) => unanswered = None,
            _ => {}
        }
    }
    live.iter()
        .map(|k| k.access_key_id.as_str())
        .filter(|id| {
            created.contains(id)
                || unanswered
                    .as_ref()
                    .is_some_and(|existing| !existing.contains(id))
        })
        .map(str::to_string)
        .collect()
}

/// Creates a replacement key for the named key's user and stores it in Secrets Manager.
#[derive(Debug)]
pub struct RotateAccessKey;

/// The user's keys before rotation, and the secret's (deterministic) name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RotatePreState {
    pub user_name: String,
    /// The key the finding names (the one being replaced); it is not changed here.
    pub old_access_key_id: String,
    /// Every key of the user: any key absent from this list later is one this step created.
    pub keys: Vec<KeyState>,
    /// `<prefix><case-id>/<user>`.
    pub secret_name: String,
}

/// What rotation did. Ids and ARNs only: the secret stays in Secrets Manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RotateOutcome {
    pub user_name: String,
    pub old_access_key_id: String,
    pub new_access_key_id: String,
    pub secret_name: String,
    pub secret_arn: String,
    pub secret_version_id: Option<String>,
    /// The KMS key the secret is encrypted with; `None` is the account's default key.
    pub kms_key_id: Option<String>,
    /// True when a re-run found the secret of an earlier attempt and reused it.
    pub reused_existing_secret: bool,
    /// The inactive other key deleted to make room (`when-two-keys: delete-inactive-other`).
    /// Its secret was never known to IAM's API; it cannot be restored.
    pub deleted_other_key: Option<KeyState>,
    /// Keys an interrupted earlier attempt created whose secret was never stored
    /// (so nobody could use them); deleted before creating the replacement.
    pub discarded_unstored_keys: Vec<String>,
    /// Keys of the user that appeared since the pre-state and that this step
    /// did not create (an operator's): left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_left_alone: Vec<String>,
}

/// What undoing the rotation did: the replacement key deleted, its secret
/// scheduled for deletion (recoverable for a while), and what cannot come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RotateUndone {
    pub deleted_access_keys: Vec<String>,
    /// Keys of the user this step did not create (absent from the pre-state
    /// all the same): never deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_left_alone: Vec<String>,
    pub secret_arn: Option<String>,
    /// When Secrets Manager deletes the secret for good (RFC 3339).
    pub secret_deletion_date: Option<String>,
    pub secret_recovery_window_days: i64,
    /// An irreversible part of the step (a deleted inactive other key), said plainly.
    pub not_restored: Option<String>,
}

/// `<prefix><case-id>/<user>`, with any character Secrets Manager refuses in a
/// name (IAM allows `,` in user names) replaced by `_`. The exact user name is
/// in the `cordon:user` tag.
pub fn secret_name(prefix: &str, case_id: &str, user: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
    let user: String = user
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    format!("{prefix}{case_id}/{user}")
}

/// A secret as `DescribeSecret` shows it (metadata only, never the value).
#[derive(Debug)]
struct SecretInfo {
    arn: String,
    deleted_date: Option<String>,
    case_id: Option<String>,
    new_access_key_id: Option<String>,
    current_version_id: Option<String>,
}

/// Schedules a secret's deletion with the recovery window; returns the date.
async fn schedule_deletion(ctx: Ctx<'_>, arn: &str) -> Result<String, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .secretsmanager
        .delete_secret()
        .secret_id(arn)
        .recovery_window_in_days(SECRET_RECOVERY_WINDOW_DAYS);
    let out = clients
        .call(&ops::SECRETSMANAGER_DELETE_SECRET, arn, request)
        .await?;
    Ok(out
        .deletion_date()
        .and_then(timestamp)
        .unwrap_or_else(|| "scheduled".to_string()))
}

async fn describe_secret(ctx: Ctx<'_>, secret_id: &str) -> Result<Option<SecretInfo>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .secretsmanager
        .describe_secret()
        .secret_id(secret_id);
    let out = match clients
        .try_call(&ops::SECRETSMANAGER_DESCRIBE_SECRET, secret_id, request)
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let tag = |key: &str| {
        out.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let current_version_id = out.version_ids_to_stages().and_then(|versions| {
        versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .map(|(version, _)| version.clone())
    });
    Ok(Some(SecretInfo {
        arn: out.arn().unwrap_or(secret_id).to_string(),
        // The date itself only serves evidence; an unformattable one still means "deleted".
        deleted_date: out
            .deleted_date()
            .map(|d| timestamp(d).unwrap_or_else(|| "scheduled".to_string())),
        case_id: tag(TAG_CASE_ID),
        new_access_key_id: tag(TAG_NEW_KEY),
        current_version_id,
    }))
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Creates the new key; its secret goes straight into a [`SecretText`].
/// Journals `creating-key` first and the answer as soon as it comes (see the
/// module docs); an unjournaled new key is deleted again at once.
async fn create_key(
    ctx: Ctx<'_>,
    user: &str,
    existing: &[KeyState],
) -> Result<(String, SecretText), ActionError> {
    let existing: Vec<&str> = existing.iter().map(|k| k.access_key_id.as_str()).collect();
    ctx.record_progress(json!({"phase": PHASE_CREATING_KEY, "existing-keys": existing}))
        .await?;
    let clients = ctx.clients();
    let request = clients.iam.create_access_key().user_name(user);
    let out = match clients
        .try_call(
            &ops::IAM_CREATE_ACCESS_KEY,
            &format!("user {user}"),
            request,
        )
        .await
    {
        Ok(out) => out,
        Err(e) => {
            // IAM answered with an error: certainly no key. (A timeout is no
            // answer: the key may exist, and the record stays unanswered.)
            if let Some(refusal) = e.service_error() {
                let reason = refusal.code().unwrap_or("refused").to_string();
                if let Err(journal) = ctx
                    .record_progress(json!({"phase": PHASE_KEY_NOT_CREATED, "reason": reason}))
                    .await
                {
                    warn!(error = %journal, "could not journal that no key was created");
                }
            }
            return Err(e.into());
        }
    };
    // Moved out, not copied: the SDK's output is consumed here.
    let Some(key) = out.access_key else {
        return Err(ActionError::new(
            ErrorKind::Other,
            format!("user {user}"),
            format!("{} answered without a key", ops::IAM_CREATE_ACCESS_KEY),
            "check in IAM whether a key was created for the user and delete it; then resume",
        ));
    };
    let (id, secret) = (key.access_key_id, SecretText(key.secret_access_key));
    if let Err(error) = ctx
        .record_progress(json!({"phase": PHASE_KEY_CREATED, "access-key-id": id}))
        .await
    {
        drop(secret);
        return Err(discard_new_key(ctx, user, &id, error).await);
    }
    Ok((id, secret))
}

/// Deletes a new key the step cannot go on with (its secret is lost, or it
/// could not be journaled) and says so in `error`.
async fn discard_new_key(
    ctx: Ctx<'_>,
    user: &str,
    key_id: &str,
    mut error: ActionError,
) -> ActionError {
    let cleanup = match delete_key(ctx, user, key_id).await {
        Ok(_) => format!("the new key {key_id} was deleted again"),
        Err(e) => format!("deleting the new key {key_id} failed too ({e}); delete it by hand"),
    };
    error.message = format!("{}; {cleanup}", error.message);
    error
}

/// Stores the new key in Secrets Manager; returns the secret's ARN and version id.
async fn store_key(
    ctx: Ctx<'_>,
    pre: &RotatePreState,
    params: &RotateParams,
    new_key_id: &str,
    secret: &SecretText,
) -> Result<(String, Option<String>), ActionError> {
    let clients = ctx.clients();
    let value = secret_string(new_key_id, secret);
    let mut request = clients
        .secretsmanager
        .create_secret()
        .name(&pre.secret_name)
        .description(format!(
            "Replacement access key {new_key_id} for IAM user {}, created by cordon for case {} (replaces {})",
            pre.user_name,
            ctx.case_id(),
            pre.old_access_key_id
        ))
        .secret_string(value.expose())
        .tags(tag(TAG_CASE_ID, ctx.case_id()))
        .tags(tag(TAG_USER, &pre.user_name))
        .tags(tag(TAG_OLD_KEY, &pre.old_access_key_id))
        .tags(tag(TAG_NEW_KEY, new_key_id));
    if let Some(kms) = &params.kms_key_id {
        request = request.kms_key_id(kms);
    }
    let result = clients
        .try_call(
            &ops::SECRETSMANAGER_CREATE_SECRET,
            &pre.secret_name,
            request,
        )
        .await;
    drop(value);
    match result {
        Ok(out) => Ok((
            out.arn().unwrap_or(&pre.secret_name).to_string(),
            out.version_id().map(str::to_string),
        )),
        Err(e) => {
            let exists = e
                .service_error()
                .is_some_and(|s| s.is_resource_exists_exception());
            let mut error = ActionError::from(e);
            if exists {
                // Another worker stored its key first; a retry reuses that secret.
                error.kind = ErrorKind::Conflict;
            }
            Err(error)
        }
    }
}

impl RotateAccessKey {
    /// The inactive other key an earlier, interrupted attempt deleted: allowed
    /// by the parameters, in the pre-state, gone now.
    fn deleted_earlier(
        pre: &RotatePreState,
        params: &RotateParams,
        live: &[KeyState],
    ) -> Option<KeyState> {
        if params.when_two_keys != WhenTwoKeys::DeleteInactiveOther {
            return None;
        }
        pre.keys
            .iter()
            .find(|k| {
                k.access_key_id != pre.old_access_key_id
                    && k.status == INACTIVE
                    && !live.iter().any(|l| l.access_key_id == k.access_key_id)
            })
            .cloned()
    }

    /// Deletes this step's own unstored leftovers from earlier, interrupted
    /// attempts, then decides the other key's fate under IAM's two-key limit.
    /// Returns (the inactive other key deleted, the leftovers deleted, keys
    /// left alone, the keys the new one is created beside).
    async fn make_room(
        ctx: Ctx<'_>,
        pre: &RotatePreState,
        params: &RotateParams,
        live: Vec<KeyState>,
    ) -> Result<Room, ActionError> {
        // Keys this step created whose secret was never stored (no secret
        // exists, or apply would have reused it): nobody can use them.
        let leftovers = created_by_step(ctx.earlier_progress(), &live);
        for id in &leftovers {
            warn!(access_key_id = %id, "deleting a key an interrupted attempt created but never stored");
            delete_key(ctx, &pre.user_name, id).await?;
        }
        let known = |id: &str| pre.keys.iter().any(|k| k.access_key_id == id);
        let live: Vec<KeyState> = live
            .into_iter()
            .filter(|k| !leftovers.contains(&k.access_key_id))
            .collect();
        let left_alone: Vec<String> = live
            .iter()
            .filter(|k| !known(&k.access_key_id))
            .map(|k| k.access_key_id.clone())
            .collect();
        let mut deleted_other = Self::deleted_earlier(pre, params, &live);
        let mut beside = live.clone();
        if live.len() >= 2 {
            let ids: Vec<&str> = live.iter().map(|k| k.access_key_id.as_str()).collect();
            let others: Vec<&KeyState> = live
                .iter()
                .filter(|k| k.access_key_id != pre.old_access_key_id)
                .collect();
            let resource = format!("user {}", pre.user_name);
            match (params.when_two_keys, others.as_slice()) {
                (_, [other]) if !known(&other.access_key_id) => {
                    return Err(ActionError::new(
                        ErrorKind::Refused,
                        resource,
                        format!(
                            "user {} already has two access keys ({}), IAM's limit, and {} appeared after the case began and was not created by cordon: cordon never deletes such a key; nothing was changed",
                            pre.user_name,
                            ids.join(", "),
                            other.access_key_id
                        ),
                        "find out who created it (CloudTrail CreateAccessKey); delete one key by hand and resume, or leave the user's keys as they are",
                    ));
                }
                (WhenTwoKeys::Refuse, _) => {
                    return Err(ActionError::new(
                        ErrorKind::Refused,
                        resource,
                        format!(
                            "user {} already has two access keys ({}), IAM's limit, so no replacement can be created; nothing was changed",
                            pre.user_name,
                            ids.join(", ")
                        ),
                        "delete or deactivate-and-delete the other key by hand and resume, or set `when-two-keys: delete-inactive-other` on the step (deletes the other key only if it is inactive; irreversible, needs approval)",
                    ));
                }
                (WhenTwoKeys::DeleteInactiveOther, [other]) if other.status == INACTIVE => {
                    info!(access_key_id = %other.access_key_id, user = %pre.user_name, "deleting the user's inactive other key to make room");
                    delete_key(ctx, &pre.user_name, &other.access_key_id).await?;
                    deleted_other = Some((*other).clone());
                    beside.retain(|k| k.access_key_id != other.access_key_id);
                }
                (WhenTwoKeys::DeleteInactiveOther, [other]) => {
                    return Err(ActionError::new(
                        ErrorKind::Refused,
                        resource,
                        format!(
                            "user {} already has two access keys and the other one, {}, is {}: cordon only deletes an inactive key; nothing was changed",
                            pre.user_name, other.access_key_id, other.status
                        ),
                        "deactivate the other key (after checking nothing uses it) and resume",
                    ));
                }
                (WhenTwoKeys::DeleteInactiveOther, _) => {
                    return Err(ActionError::new(
                        ErrorKind::Refused,
                        resource,
                        format!(
                            "user {} has two access keys ({}) and neither is the finding's key {}; nothing was changed",
                            pre.user_name,
                            ids.join(", "),
                            pre.old_access_key_id
                        ),
                        "decide by hand which key to delete, then resume",
                    ));
                }
            }
        }
        Ok(Room {
            deleted_other,
            discarded: leftovers,
            left_alone,
            beside,
        })
    }
}

/// What making room for the new key did, and what it found.
#[derive(Debug)]
struct Room {
    /// The inactive other key deleted (now or by an earlier attempt).
    deleted_other: Option<KeyState>,
    /// This step's own unstored keys from earlier attempts, deleted.
    discarded: Vec<String>,
    /// Keys that appeared since the pre-state and are not this step's.
    left_alone: Vec<String>,
    /// The keys the new one is created beside.
    beside: Vec<KeyState>,
}

impl Handler for RotateAccessKey {
    type Params = RotateParams;
    type PreState = RotatePreState;
    type Outcome = RotateOutcome;
    type Undone = RotateUndone;

    async fn pre_state(ctx: Ctx<'_>, params: &RotateParams) -> Result<RotatePreState, ActionError> {
        let key = access_key_target(ctx)?;
        check_long_term(ctx, key)?;
        let Some(user) = key.user_name.clone() else {
            return Err(ActionError::new(
                ErrorKind::NotFound,
                key.access_key_id.clone(),
                format!(
                    "the finding names no IAM user for access key {}",
                    key.access_key_id
                ),
                "rotate the key by hand for its owner (`aws iam get-access-key-last-used` names it)",
            ));
        };
        let keys = list_keys(ctx, &user).await?;
        find_named(&keys, &key.access_key_id, &user)?;
        Ok(RotatePreState {
            secret_name: secret_name(&params.secret_name_prefix, ctx.case_id(), &user),
            user_name: user,
            old_access_key_id: key.access_key_id.clone(),
            keys,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        params: &RotateParams,
        pre: &RotatePreState,
    ) -> Result<RotateOutcome, ActionError> {
        let live = list_keys(ctx, &pre.user_name).await?;
        let outcome =
            |new_key: String, arn: String, version: Option<String>, reused: bool, room: Room| {
                RotateOutcome {
                    user_name: pre.user_name.clone(),
                    old_access_key_id: pre.old_access_key_id.clone(),
                    new_access_key_id: new_key,
                    secret_name: pre.secret_name.clone(),
                    secret_arn: arn,
                    secret_version_id: version,
                    kms_key_id: params.kms_key_id.clone(),
                    reused_existing_secret: reused,
                    deleted_other_key: room.deleted_other,
                    discarded_unstored_keys: room.discarded,
                    keys_left_alone: room.left_alone,
                }
            };

        // A re-run after a crash: the key and its secret may both exist already.
        if let Some(existing) = describe_secret(ctx, &pre.secret_name).await? {
            if existing.deleted_date.is_some() {
                return Err(ActionError::new(
                    ErrorKind::InvalidState,
                    existing.arn,
                    format!(
                        "secret {} is scheduled for deletion (an earlier rollback of this case)",
                        pre.secret_name
                    ),
                    "restore it (`aws secretsmanager restore-secret`) to reuse it, or delete it for good, then resume",
                ));
            }
            return match existing.new_access_key_id {
                Some(id) if live.iter().any(|k| k.access_key_id == id) => {
                    let room = Room {
                        deleted_other: Self::deleted_earlier(pre, params, &live),
                        discarded: Vec::new(),
                        left_alone: Vec::new(),
                        beside: Vec::new(),
                    };
                    info!(new_access_key_id = %id, secret_arn = %existing.arn, "reusing the replacement key stored by an earlier attempt");
                    Ok(outcome(
                        id,
                        existing.arn,
                        existing.current_version_id,
                        true,
                        room,
                    ))
                }
                other => Err(ActionError::new(
                    ErrorKind::InvalidState,
                    existing.arn,
                    format!(
                        "secret {} already exists but names {}, not a current key of user {}",
                        pre.secret_name,
                        other.as_deref().unwrap_or("no key"),
                        pre.user_name
                    ),
                    "delete that secret (its key is gone) or use another `secret-name-prefix`, then resume",
                )),
            };
        }

        let room = Self::make_room(ctx, pre, params, live).await?;
        let (new_key_id, secret) = create_key(ctx, &pre.user_name, &room.beside).await?;
        let stored = store_key(ctx, pre, params, &new_key_id, &secret).await;
        drop(secret);
        let (arn, version) = match stored {
            Ok(stored) => stored,
            // The secret is gone with this process: nobody could ever use
            // the new key, so remove it rather than leave a live orphan.
            Err(error) => {
                return Err(discard_new_key(ctx, &pre.user_name, &new_key_id, error).await);
            }
        };
        info!(
            user = %pre.user_name,
            old_access_key_id = %pre.old_access_key_id,
            new_access_key_id = %new_key_id,
            secret_arn = %arn,
            "replacement key stored in Secrets Manager"
        );
        Ok(outcome(new_key_id, arn, version, false, room))
    }

    async fn verify(
        ctx: Ctx<'_>,
        _params: &RotateParams,
        pre: &RotatePreState,
        outcome: &RotateOutcome,
    ) -> Result<(), ActionError> {
        let live = list_keys(ctx, &pre.user_name).await?;
        let new_key = &outcome.new_access_key_id;
        match live.iter().find(|k| &k.access_key_id == new_key) {
            Some(k) if k.status == ACTIVE => {}
            found => {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    new_key.clone(),
                    format!(
                        "the new access key {new_key} of user {} is {}",
                        pre.user_name,
                        found.map_or("missing", |k| k.status.as_str())
                    ),
                    "IAM may not have caught up yet; the step is retried",
                ));
            }
        }
        let secret = describe_secret(ctx, &outcome.secret_arn).await?;
        match secret {
            Some(s)
                if s.deleted_date.is_none()
                    && s.new_access_key_id.as_deref() == Some(new_key.as_str()) =>
            {
                Ok(())
            }
            _ => Err(ActionError::new(
                ErrorKind::Verification,
                outcome.secret_arn.clone(),
                format!(
                    "secret {} is missing, scheduled for deletion, or does not name key {new_key}",
                    outcome.secret_name
                ),
                "Secrets Manager may not have caught up yet; the step is retried",
            )),
        }
    }

    /// Deletes the replacement key (the outcome's; without an outcome, the one
    /// this case's secret names) and the step's own unstored keys (from its
    /// progress records), never any other key; schedules this case's secret
    /// for deletion.
    async fn undo(
        ctx: Ctx<'_>,
        params: &RotateParams,
        pre: &RotatePreState,
        outcome: Option<&RotateOutcome>,
    ) -> Result<RotateUndone, ActionError> {
        let live = list_keys(ctx, &pre.user_name).await?;
        let secret_id = outcome.map_or(pre.secret_name.as_str(), |o| o.secret_arn.as_str());
        let found = describe_secret(ctx, secret_id).await?;
        let secret = found
            .as_ref()
            .filter(|s| s.case_id.as_deref() == Some(ctx.case_id()));
        let mut ours: Vec<String> = match outcome {
            Some(o) => vec![o.new_access_key_id.clone()],
            None => created_by_step(ctx.earlier_progress(), &live),
        };
        ours.extend(secret.as_ref().and_then(|s| s.new_access_key_id.clone()));
        ours.sort();
        ours.dedup();
        let mut deleted_keys = Vec::new();
        for key in live.iter().filter(|k| ours.contains(&k.access_key_id)) {
            if delete_key(ctx, &pre.user_name, &key.access_key_id).await? {
                deleted_keys.push(key.access_key_id.clone());
            }
        }
        let keys_left_alone: Vec<String> = live
            .iter()
            .filter(|k| {
                !ours.contains(&k.access_key_id)
                    && !pre.keys.iter().any(|p| p.access_key_id == k.access_key_id)
            })
            .map(|k| k.access_key_id.clone())
            .collect();
        if !keys_left_alone.is_empty() {
            warn!(keys = ?keys_left_alone, user = %pre.user_name, "keys this step did not create are left alone");
        }

        let deletion_date = match (&found, secret) {
            (Some(f), _) if f.deleted_date.is_some() => f.deleted_date.clone(),
            (Some(f), Some(_)) => Some(schedule_deletion(ctx, &f.arn).await?),
            (Some(f), None) => {
                warn!(secret_arn = %f.arn, "secret is not tagged with this case; left alone");
                None
            }
            (None, _) => None,
        };
        let secret_arn = found.map(|f| f.arn);

        // A deleted inactive other key cannot come back: say so.
        let gone_other = match outcome {
            Some(o) => o.deleted_other_key.clone(),
            None => Self::deleted_earlier(pre, params, &live),
        };
        let not_restored = gone_other.map(|k| {
            format!(
                "access key {} ({}) was deleted to make room for the replacement; IAM cannot bring a deleted key back (irreversible by design)",
                k.access_key_id, k.status
            )
        });
        info!(user = %pre.user_name, deleted = ?deleted_keys, secret_deletion = ?deletion_date, "rotation undone");
        Ok(RotateUndone {
            deleted_access_keys: deleted_keys,
            keys_left_alone,
            secret_arn,
            secret_deletion_date: deletion_date,
            secret_recovery_window_days: SECRET_RECOVERY_WINDOW_DAYS,
            not_restored,
        })
    }

    /// Every key of the pre-state is there with its status (but for an
    /// inactive other key the step was allowed to delete), the replacement
    /// named by this case's secret is gone, and the secret is scheduled for
    /// deletion. Keys that appeared since and are not the step's (an
    /// operator's) are not the step's to judge.
    async fn verify_undone(
        ctx: Ctx<'_>,
        params: &RotateParams,
        pre: &RotatePreState,
    ) -> Result<(), ActionError> {
        let (live, secret) = tokio::join!(
            list_keys(ctx, &pre.user_name),
            describe_secret(ctx, &pre.secret_name)
        );
        let (live, secret) = (live?, secret?);
        let secret = secret.filter(|s| s.case_id.as_deref() == Some(ctx.case_id()));
        let replacement = secret.as_ref().and_then(|s| s.new_access_key_id.as_deref());
        let expected: Vec<KeyState> = pre
            .keys
            .iter()
            .filter(|k| {
                let deletable = params.when_two_keys == WhenTwoKeys::DeleteInactiveOther
                    && k.access_key_id != pre.old_access_key_id
                    && k.status == INACTIVE;
                !deletable || live.iter().any(|l| l.access_key_id == k.access_key_id)
            })
            .cloned()
            .collect();
        let relevant: Vec<KeyState> = live
            .iter()
            .filter(|l| {
                pre.keys.iter().any(|k| k.access_key_id == l.access_key_id)
                    || replacement == Some(l.access_key_id.as_str())
            })
            .cloned()
            .collect();
        if key_statuses(&relevant) != key_statuses(&expected) {
            return Err(ActionError::new(
                ErrorKind::Verification,
                format!("user {}", pre.user_name),
                format!(
                    "the user's access keys are not back at their pre-state: expected {:?}, found {:?}",
                    key_statuses(&expected),
                    key_statuses(&relevant)
                ),
                "delete the replacement key by hand if it is still there, then roll back again",
            ));
        }
        match secret {
            Some(secret) if secret.deleted_date.is_none() => Err(ActionError::new(
                ErrorKind::Verification,
                secret.arn,
                format!("secret {} is not scheduled for deletion", pre.secret_name),
                "schedule its deletion by hand (`aws secretsmanager delete-secret`) and roll back again",
            )),
            _ => Ok(()),
        }
    }

    fn describe(ctx: Ctx<'_>, params: &RotateParams, pre: &RotatePreState) -> Vec<String> {
        let mut calls = Vec::new();
        if pre.keys.len() >= 2 {
            let other = pre
                .keys
                .iter()
                .find(|k| k.access_key_id != pre.old_access_key_id);
            match (params.when_two_keys, other) {
                (WhenTwoKeys::DeleteInactiveOther, Some(other)) if other.status == INACTIVE => calls.push(format!(
                    "{} user={} key={} (the inactive other key, to stay within two keys; irreversible)",
                    ops::IAM_DELETE_ACCESS_KEY.iam_action, pre.user_name, other.access_key_id
                )),
                _ => {
                    return vec![format!(
                        "(no call: refused, user {} already has two access keys and when-two-keys is {})",
                        pre.user_name,
                        match params.when_two_keys {
                            WhenTwoKeys::Refuse => "refuse",
                            WhenTwoKeys::DeleteInactiveOther => "delete-inactive-other but the other key is active",
                        }
                    )];
                }
            }
        }
        calls.push(format!(
            "{} user={}",
            ops::IAM_CREATE_ACCESS_KEY.iam_action,
            pre.user_name
        ));
        calls.push(format!(
            "{} name={} kms-key={} tags {TAG_CASE_ID}={}, {TAG_USER}={}, {TAG_OLD_KEY}={}, {TAG_NEW_KEY}=<new key id> (the new key's secret goes only there)",
            ops::SECRETSMANAGER_CREATE_SECRET.iam_action,
            pre.secret_name,
            params.kms_key_id.as_deref().unwrap_or("(account default)"),
            ctx.case_id(),
            pre.user_name,
            pre.old_access_key_id
        ));
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_never_shows() {
        let secret = SecretText("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        let json = secret_string("AKIAEXAMPLE", &secret);
        assert_eq!(format!("{json:?} {json}"), "[redacted] [redacted]");
        let parsed: Value = serde_json::from_str(json.expose()).expect("secret string is JSON");
        assert_eq!(parsed["AccessKeyId"], "AKIAEXAMPLE");
        assert_eq!(
            parsed["SecretAccessKey"],
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
    }

    #[test]
    fn only_keys_the_step_created_are_its_own() {
        let key = |id: &str| KeyState {
            access_key_id: id.to_string(),
            status: ACTIVE.to_string(),
            created: None,
        };
        let live = vec![key("AKIAOLD"), key("AKIAMINE"), key("AKIAOPERATOR")];
        // Never about to create a key: nothing is the step's.
        assert!(created_by_step(&[], &live).is_empty());
        // A crash after `creating-key`, before the answer was journaled: the
        // keys absent from its list.
        let creating =
            json!({"phase": "creating-key", "existing-keys": ["AKIAOLD", "AKIAOPERATOR"]});
        assert_eq!(
            created_by_step(std::slice::from_ref(&creating), &live),
            vec!["AKIAMINE"]
        );
        // The answer journaled: exactly that key, whatever appeared besides.
        let before = json!({"phase": "creating-key", "existing-keys": ["AKIAOLD"]});
        let created = json!({"phase": "key-created", "access-key-id": "AKIAMINE"});
        assert_eq!(
            created_by_step(&[before.clone(), created], &live),
            vec!["AKIAMINE"]
        );
        // IAM refused: no key was created, so a key that appeared later is not the step's.
        let refused = json!({"phase": "key-not-created", "reason": "LimitExceeded"});
        assert!(created_by_step(&[before, refused], &live).is_empty());
        // Other steps' records say nothing about keys.
        assert!(created_by_step(&[json!({"phase": "untrack-begun"})], &live).is_empty());
    }

    #[test]
    fn secret_names() {
        assert_eq!(
            secret_name("cordon/rotated-keys/", "case-0123", "alice"),
            "cordon/rotated-keys/case-0123/alice"
        );
        assert_eq!(secret_name("p/", "case-1", "a,b+c@d"), "p/case-1/a_b+c@d");
    }
}
