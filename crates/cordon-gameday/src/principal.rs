//! IAM users and roles where only the call differs: their policies, read
//! for the state snapshot and removed for cleanup.

use std::collections::BTreeMap;

use cordon_aws::client::AwsClients;
use serde_json::Value;

use crate::error::{FixtureError, aws};

/// An IAM user or role, by name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Principal<'a> {
    /// A user.
    User(&'a str),
    /// A role.
    Role(&'a str),
}

impl Principal<'_> {
    /// Puts each inline policy (name to document).
    pub(crate) async fn put_inline_policies(
        self,
        clients: &AwsClients,
        policies: &BTreeMap<String, Value>,
    ) -> Result<(), FixtureError> {
        let iam = &clients.iam;
        for (policy, document) in policies {
            let document = document.to_string();
            match self {
                Principal::User(name) => iam
                    .put_user_policy()
                    .user_name(name)
                    .policy_name(policy)
                    .policy_document(document)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:PutUserPolicy", name))?,
                Principal::Role(name) => iam
                    .put_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .policy_document(document)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:PutRolePolicy", name))?,
            }
        }
        Ok(())
    }

    /// A user's access keys: id to status (`Active`, `Inactive`); none for a role.
    pub(crate) async fn access_keys(
        self,
        clients: &AwsClients,
    ) -> Result<BTreeMap<String, String>, FixtureError> {
        let Principal::User(name) = self else {
            return Ok(BTreeMap::new());
        };
        let out = clients
            .iam
            .list_access_keys()
            .user_name(name)
            .send()
            .await
            .map_err(aws("iam:ListAccessKeys", name))?;
        Ok(out
            .access_key_metadata()
            .iter()
            .map(|k| {
                (
                    k.access_key_id().unwrap_or_default().to_string(),
                    k.status()
                        .map(|s| s.as_str())
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect())
    }

    /// Names of its inline policies, sorted.
    pub(crate) async fn inline_policies(
        self,
        clients: &AwsClients,
    ) -> Result<Vec<String>, FixtureError> {
        let iam = &clients.iam;
        let mut names = match self {
            Principal::User(name) => iam
                .list_user_policies()
                .user_name(name)
                .send()
                .await
                .map_err(aws("iam:ListUserPolicies", name))?
                .policy_names()
                .to_vec(),
            Principal::Role(name) => iam
                .list_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(aws("iam:ListRolePolicies", name))?
                .policy_names()
                .to_vec(),
        };
        names.sort();
        Ok(names)
    }

    /// ARNs of the managed policies attached to it, sorted.
    pub(crate) async fn attached_policies(
        self,
        clients: &AwsClients,
    ) -> Result<Vec<String>, FixtureError> {
        let iam = &clients.iam;
        let attached = match self {
            Principal::User(name) => iam
                .list_attached_user_policies()
                .user_name(name)
                .send()
                .await
                .map_err(aws("iam:ListAttachedUserPolicies", name))?
                .attached_policies()
                .to_vec(),
            Principal::Role(name) => iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(aws("iam:ListAttachedRolePolicies", name))?
                .attached_policies()
                .to_vec(),
        };
        let mut arns: Vec<String> = attached
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect();
        arns.sort();
        Ok(arns)
    }

    /// Deletes its inline policies and detaches its managed ones (IAM
    /// deletes neither with the principal).
    pub(crate) async fn remove_policies(self, clients: &AwsClients) -> Result<(), FixtureError> {
        let iam = &clients.iam;
        for policy in self.inline_policies(clients).await? {
            match self {
                Principal::User(name) => iam
                    .delete_user_policy()
                    .user_name(name)
                    .policy_name(&policy)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:DeleteUserPolicy", name))?,
                Principal::Role(name) => iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(&policy)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:DeleteRolePolicy", name))?,
            }
        }
        for arn in self.attached_policies(clients).await? {
            match self {
                Principal::User(name) => iam
                    .detach_user_policy()
                    .user_name(name)
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:DetachUserPolicy", name))?,
                Principal::Role(name) => iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map(drop)
                    .map_err(aws("iam:DetachRolePolicy", name))?,
            }
        }
        Ok(())
    }
}
