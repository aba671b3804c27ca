//! IAM-side actions: access keys (deactivate, rotate into Secrets Manager),
//! role session revocation, user quarantine and console password removal.
//!
//! Shared here: resolving the user a step acts on, reading a user's keys, and
//! inline policies on a role or a user (read, put, delete, compare), which
//! both `revoke-role-sessions` and `quarantine-user` are built on.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cordon_core::executor::{ActionError, ErrorKind};
use cordon_core::plan::{AccessKeyTarget, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ctx, wrong_target};
use crate::errors::Failed;
use crate::ops;

pub mod keys;
pub mod sessions;
pub mod user;

/// Whether an SDK error is IAM's `NoSuchEntity` about the sub-resource named
/// by `needle` (e.g. "polic", "login profile") rather than about its owner.
///
/// IAM answers `NoSuchEntity` both for a missing role/user and for a missing
/// policy or login profile on an existing one; only the message tells them
/// apart ("The role policy with name X cannot be found." vs "The role with
/// name X cannot be found."; the emulator words them differently but keeps
/// the same nouns). Mistaking a missing owner for a missing policy would let
/// a step journal "no previous policy" for a role that does not exist.
fn is_missing<E>(err: &Failed<E>, needle: &str) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    is_no_such_entity(err)
        && err
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains(needle))
}

/// Whether an SDK error is plain `NoSuchEntity`, whatever it is about.
fn is_no_such_entity<E>(err: &Failed<E>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    err.service_error()
        .is_some_and(|s| s.code() == Some("NoSuchEntity"))
}

/// Formats an AWS timestamp for the journal (RFC 3339); `None` when unrepresentable.
fn timestamp(date: &aws_smithy_types::DateTime) -> Option<String> {
    date.fmt(aws_smithy_types::date_time::Format::DateTime).ok()
}

/// The access key a step targets, or a clear error when the step's target is something else.
fn access_key_target<'a>(ctx: Ctx<'a>) -> Result<&'a AccessKeyTarget, ActionError> {
    match &ctx.step.target {
        Target::AccessKey(key) => Ok(key),
        other => Err(wrong_target(ctx.step, other)),
    }
}

/// The IAM user a step targets (a `user` target, or the owner of an access key target).
fn user_target(ctx: Ctx<'_>) -> Result<String, ActionError> {
    match &ctx.step.target {
        Target::User { user_name } => Ok(user_name.clone()),
        Target::AccessKey(AccessKeyTarget {
            user_name: Some(user_name),
            ..
        }) => Ok(user_name.clone()),
        other => Err(wrong_target(ctx.step, other)),
    }
}

/// One access key of a user as IAM lists it: enough to check nothing else changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeyState {
    /// `AKIA…` id; never a secret.
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// When the key was created (RFC 3339), for evidence.
    pub created: Option<String>,
}

/// Every access key of `user`, sorted by id. At most two exist (IAM's hard
/// limit), so one unpaginated call always sees them all.
async fn list_keys(ctx: Ctx<'_>, user: &str) -> Result<Vec<KeyState>, ActionError> {
    let clients = ctx.clients();
    let request = clients.iam.list_access_keys().user_name(user);
    let out = clients
        .call(&ops::IAM_LIST_ACCESS_KEYS, &format!("user {user}"), request)
        .await?;
    let mut keys: Vec<KeyState> = out
        .access_key_metadata()
        .iter()
        .filter_map(|k| {
            Some(KeyState {
                access_key_id: k.access_key_id()?.to_string(),
                status: k.status().map(|s| s.as_str().to_string())?,
                created: k.create_date().and_then(timestamp),
            })
        })
        .collect();
    keys.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
    Ok(keys)
}

/// `(id, status)` of each key, the part of a key list that rollback must restore.
fn key_statuses(keys: &[KeyState]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.access_key_id.as_str(), k.status.as_str()))
        .collect();
    out.sort_unstable();
    out
}

/// How undo put an inline policy back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyRestored {
    pub policy_name: String,
    /// `previous-document` (put back as it was) or `no-policy` (removed).
    pub restored: String,
    /// With `no-policy`: whether a policy was there to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

/// Who holds an inline policy: the two principals cordon puts deny policies on.
#[derive(Debug, Clone, Copy)]
enum PolicyHolder<'a> {
    Role(&'a str),
    User(&'a str),
}

impl PolicyHolder<'_> {
    fn label(&self) -> String {
        match self {
            PolicyHolder::Role(name) => format!("role {name}"),
            PolicyHolder::User(name) => format!("user {name}"),
        }
    }

    /// The inline policy's document (URL-decoded), or `None` when the holder has no policy of that name.
    async fn get(&self, ctx: Ctx<'_>, policy: &str) -> Result<Option<String>, ActionError> {
        let clients = ctx.clients();
        let label = self.label();
        let document = match self {
            PolicyHolder::Role(role) => {
                let request = clients
                    .iam
                    .get_role_policy()
                    .role_name(*role)
                    .policy_name(policy);
                match clients
                    .try_call(&ops::IAM_GET_ROLE_POLICY, &label, request)
                    .await
                {
                    Ok(out) => out.policy_document().to_string(),
                    Err(e) if is_missing(&e, "polic") => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            PolicyHolder::User(user) => {
                let request = clients
                    .iam
                    .get_user_policy()
                    .user_name(*user)
                    .policy_name(policy);
                match clients
                    .try_call(&ops::IAM_GET_USER_POLICY, &label, request)
                    .await
                {
                    Ok(out) => out.policy_document().to_string(),
                    Err(e) if is_missing(&e, "polic") => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(Some(decode_policy_document(&document)))
    }

    /// Creates or replaces the inline policy.
    async fn put(&self, ctx: Ctx<'_>, policy: &str, document: &str) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let label = self.label();
        match self {
            PolicyHolder::Role(role) => {
                let request = clients
                    .iam
                    .put_role_policy()
                    .role_name(*role)
                    .policy_name(policy)
                    .policy_document(document);
                clients
                    .call(&ops::IAM_PUT_ROLE_POLICY, &label, request)
                    .await?;
            }
            PolicyHolder::User(user) => {
                let request = clients
                    .iam
                    .put_user_policy()
                    .user_name(*user)
                    .policy_name(policy)
                    .policy_document(document);
                clients
                    .call(&ops::IAM_PUT_USER_POLICY, &label, request)
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes the inline policy; already absent is success (undo must tolerate it).
    /// Returns whether a policy was deleted.
    async fn delete(&self, ctx: Ctx<'_>, policy: &str) -> Result<bool, ActionError> {
        let clients = ctx.clients();
        let label = self.label();
        let result = match self {
            PolicyHolder::Role(role) => {
                let request = clients
                    .iam
                    .delete_role_policy()
                    .role_name(*role)
                    .policy_name(policy);
                clients
                    .try_call(&ops::IAM_DELETE_ROLE_POLICY, &label, request)
                    .await
                    .map(drop)
                    .map_err(|e| (is_missing(&e, "polic"), e.into_error()))
            }
            PolicyHolder::User(user) => {
                let request = clients
                    .iam
                    .delete_user_policy()
                    .user_name(*user)
                    .policy_name(policy);
                clients
                    .try_call(&ops::IAM_DELETE_USER_POLICY, &label, request)
                    .await
                    .map(drop)
                    .map_err(|e| (is_missing(&e, "polic"), e.into_error()))
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(e.into()),
        }
    }

    /// Puts `pre` back: the previous document exactly, or no policy at all.
    async fn restore(
        &self,
        ctx: Ctx<'_>,
        policy: &str,
        pre: Option<&str>,
    ) -> Result<PolicyRestored, ActionError> {
        match pre {
            Some(document) => {
                self.put(ctx, policy, document).await?;
                Ok(PolicyRestored {
                    policy_name: policy.to_string(),
                    restored: "previous-document".to_string(),
                    deleted: None,
                })
            }
            None => {
                let deleted = self.delete(ctx, policy).await?;
                Ok(PolicyRestored {
                    policy_name: policy.to_string(),
                    restored: "no-policy".to_string(),
                    deleted: Some(deleted),
                })
            }
        }
    }

    /// Checks the live policy equals `pre` (compared as parsed JSON).
    async fn verify_equals(
        &self,
        ctx: Ctx<'_>,
        policy: &str,
        pre: Option<&str>,
    ) -> Result<(), ActionError> {
        let live = self.get(ctx, policy).await?;
        let same = match (&live, pre) {
            (None, None) => true,
            (Some(live), Some(pre)) => same_document(live, pre),
            _ => false,
        };
        if same {
            return Ok(());
        }
        let (was, is) = match (pre.is_some(), live.is_some()) {
            (true, true) => ("another document", "a different one"),
            (true, false) => ("a document", "none"),
            _ => ("none", "one"),
        };
        Err(ActionError::new(
            ErrorKind::Verification,
            self.label(),
            format!(
                "inline policy `{policy}` is not back at its pre-state: it had {was}, now has {is}"
            ),
            "compare the policy with the journaled pre-state and fix it by hand if it does not settle",
        ))
    }
}

/// IAM returns inline policy documents URL-encoded (RFC 3986); the emulator
/// returns them as stored. Text that already parses as JSON is kept as it is,
/// so a literal `%` inside a plain document is never mangled.
pub fn decode_policy_document(text: &str) -> String {
    if serde_json::from_str::<Value>(text).is_ok() {
        return text.to_string();
    }
    percent_decode(text)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether two policy documents say the same thing: equal as JSON (key order
/// and whitespace aside), or equal as text when either is not JSON.
pub fn same_document(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_documents_only() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Sid":"100%25","Effect":"Deny"}]}"#;
        assert_eq!(decode_policy_document(plain), plain);
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_policy_document(encoded),
            r#"{"Version":"2012-10-17","Statement":[]}"#
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn compares_documents_as_json() {
        assert!(same_document(r#"{"a": 1, "b": [2]}"#, r#"{"b":[2],"a":1}"#));
        assert!(!same_document(r#"{"a": 1}"#, r#"{"a": 2}"#));
        assert!(same_document("not json", "not json"));
    }
}
