//! The protected-resource guard: a resource carrying the protected tag
//! (`cordon:protected` by default) is touched by no playbook step without an
//! approval that names the step, whatever the playbook says.
//!
//! The tags are read live, before the plan is shown and the case opened (a
//! finding's own copy of an instance's tags may be stale or forged), from the
//! account and region the case acts in: EC2 instances, IAM users and roles.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Instance;
use cordon_core::executor::ErrorKind;
use cordon_core::plan::Plan;

use crate::client::AwsClients;
use crate::errors::CallError;
use crate::ops;

/// The default protected tag key.
pub const DEFAULT_PROTECTED_TAG: &str = "cordon:protected";

/// The tags could not be read, so the guard cannot say a resource is unprotected.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the tags of {resource} to check the protected tag `{tag}`: {source}; nothing was changed"
)]
pub struct ProtectedTagError {
    pub resource: String,
    pub tag: String,
    #[source]
    pub source: Box<CallError>,
}

/// The resources of `plan` (keys as [`Plan::resources`] names them) that
/// carry `tag_key`, each with the sentence the plan shows. A resource that no
/// longer exists is not protected (its step fails on its own); any other
/// failure to read tags is an error: the guard never guesses "unprotected".
pub async fn protected_resources(
    clients: &AwsClients,
    plan: &Plan,
    tag_key: &str,
) -> Result<BTreeMap<String, String>, ProtectedTagError> {
    protected_resources_given(clients, plan, tag_key, None).await
}

/// [`protected_resources`], with an instance of the plan already described
/// (by the same clients, alongside: the early reads of an isolation step)
/// read from that description instead of described again.
pub async fn protected_resources_given(
    clients: &AwsClients,
    plan: &Plan,
    tag_key: &str,
    described: Option<&Instance>,
) -> Result<BTreeMap<String, String>, ProtectedTagError> {
    let mut out = BTreeMap::new();
    let resources = plan.resources();
    let fail = |resource: &str, e: CallError| ProtectedTagError {
        resource: resource.to_string(),
        tag: tag_key.to_string(),
        source: Box::new(e),
    };
    let why = |what: &str, value: &str| {
        format!(
            "{what} carries the protected tag `{tag_key}` (value {}): only an approval naming this step runs it",
            cordon_core::text::preview(value)
        )
    };
    let instances: Vec<&str> = resources
        .iter()
        .filter_map(|r| r.strip_prefix("instance:"))
        .collect();
    for instance in instances {
        let output;
        let found: Vec<&Instance> = match described.filter(|d| d.instance_id() == Some(instance)) {
            Some(known) => vec![known],
            None => {
                let request = clients.ec2.describe_instances().instance_ids(instance);
                let answer = clients
                    .call(&ops::EC2_DESCRIBE_INSTANCES, instance, request)
                    .await;
                output = match answer {
                    Ok(output) => output,
                    Err(e) if e.kind == ErrorKind::NotFound => continue,
                    Err(e) => return Err(fail(instance, e)),
                };
                output
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .collect()
            }
        };
        let value = found
            .into_iter()
            .flat_map(|i| i.tags())
            .find(|t| t.key() == Some(tag_key))
            .map(|t| t.value().unwrap_or_default().to_string());
        if let Some(value) = value {
            out.insert(
                format!("instance:{instance}"),
                why(&format!("instance {instance}"), &value),
            );
        }
    }
    for resource in &resources {
        let answer = if let Some(user) = resource.strip_prefix("user:") {
            let request = clients.iam.list_user_tags().user_name(user);
            clients
                .call(&ops::IAM_LIST_USER_TAGS, resource, request)
                .await
                .map(|output| tag_value(output.tags(), tag_key))
        } else if let Some(role) = resource.strip_prefix("role:") {
            let request = clients.iam.list_role_tags().role_name(role);
            clients
                .call(&ops::IAM_LIST_ROLE_TAGS, resource, request)
                .await
                .map(|output| tag_value(output.tags(), tag_key))
        } else {
            continue;
        };
        match answer {
            Ok(Some(value)) => {
                out.insert(
                    resource.clone(),
                    why(&resource.replacen(':', " ", 1), &value),
                );
            }
            Ok(None) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(fail(resource, e)),
        }
    }
    Ok(out)
}

/// The value of the IAM tag `key`, if the resource carries it.
fn tag_value(tags: &[aws_sdk_iam::types::Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == key)
        .map(|t| t.value().to_string())
}
