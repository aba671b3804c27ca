//! `tag-resource`: marks the instance (and its volumes and ENIs) as part of a
//! case, so responders and other tooling see at a glance what is under
//! investigation. Undo restores each key to its previous value, or removes it
//! where it was absent.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Tag;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::{BoxedCall, describe_instance, filter, try_join_all};
use crate::actions::{Ctx, Handler};
use crate::ops;

/// The `tag-resource` handler.
#[derive(Debug)]
pub struct TagResource;

/// What the tagged keys held before the step, per resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TagPreState {
    /// Instance first, then volumes, then ENIs, as found live (not as the finding saw them).
    pub resources: Vec<TaggedResource>,
}

/// One resource and the previous value of each key the step sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaggedResource {
    /// Instance, volume or ENI id.
    #[serde(alias = "resource_id")]
    pub resource_id: String,
    /// `instance`, `volume` or `network-interface`, for people reading the journal.
    #[serde(alias = "resource_type")]
    pub resource_type: String,
    /// Key → previous value; `None` when the key was absent (undo deletes it).
    /// The keys are the user's tag keys, kept exactly as they are.
    pub tags: BTreeMap<String, Option<String>>,
}

/// What apply set, and on which resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TagOutcome {
    /// Every resource of the pre-state.
    pub tagged: Vec<String>,
    /// Key → value set on each of them.
    pub tags: BTreeMap<String, String>,
}

/// What undo put back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TagUndone {
    /// Resources where a previous value was written back.
    pub restored_values_on: BTreeSet<String>,
    /// Resources where keys absent before were removed.
    pub removed_keys_from: BTreeSet<String>,
}

impl TagPreState {
    fn resource_ids(&self) -> Vec<String> {
        self.resources
            .iter()
            .map(|r| r.resource_id.clone())
            .collect()
    }
}

/// Current values of `keys` on `resource_ids`: (resource, key) → value.
/// One filtered, paginated DescribeTags for all resources at once.
async fn current_tags(
    ctx: Ctx<'_>,
    resource_ids: &[String],
    keys: &[String],
) -> Result<BTreeMap<(String, String), String>, ActionError> {
    let mut found = BTreeMap::new();
    if resource_ids.is_empty() || keys.is_empty() {
        return Ok(found);
    }
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_tags()
        .filters(filter("resource-id", resource_ids)?)
        .filters(filter("key", keys)?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_TAGS, &resource_ids[0], request)
        .await?;
    for tag in pages.iter().flat_map(|page| page.tags()) {
        if let (Some(id), Some(key)) = (tag.resource_id(), tag.key()) {
            found.insert(
                (id.to_string(), key.to_string()),
                tag.value().unwrap_or_default().to_string(),
            );
        }
    }
    Ok(found)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

async fn create_tags(
    ctx: Ctx<'_>,
    resources: Vec<String>,
    tags: Vec<Tag>,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let label = resources.join(",");
    let request = clients
        .ec2
        .create_tags()
        .set_resources(Some(resources))
        .set_tags(Some(tags));
    clients.call(&ops::EC2_CREATE_TAGS, &label, request).await?;
    Ok(())
}

async fn delete_tags(
    ctx: Ctx<'_>,
    resources: Vec<String>,
    keys: Vec<String>,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let label = resources.join(",");
    let request = clients
        .ec2
        .delete_tags()
        .set_resources(Some(resources))
        // Key only: deletes whatever value the key holds now, back to "absent".
        .set_tags(Some(
            keys.iter().map(|k| Tag::builder().key(k).build()).collect(),
        ));
    clients.call(&ops::EC2_DELETE_TAGS, &label, request).await?;
    Ok(())
}

/// The calls that put `pre` back: per previous (key, value), one CreateTags on
/// every resource that had it; per set of absent keys, one DeleteTags.
/// (key, previous value) → resources to set it back on.
type Restores = BTreeMap<(String, String), Vec<String>>;
/// Keys that were absent → resources to delete them from.
type Deletes = BTreeMap<Vec<String>, Vec<String>>;

fn restore_plan(pre: &TagPreState) -> (Restores, Deletes) {
    let mut restore = Restores::new();
    let mut delete = Deletes::new();
    for resource in &pre.resources {
        let mut absent = Vec::new();
        for (key, value) in &resource.tags {
            match value {
                Some(value) => restore
                    .entry((key.clone(), value.clone()))
                    .or_default()
                    .push(resource.resource_id.clone()),
                None => absent.push(key.clone()),
            }
        }
        if !absent.is_empty() {
            delete
                .entry(absent)
                .or_default()
                .push(resource.resource_id.clone());
        }
    }
    (restore, delete)
}

impl Handler for TagResource {
    type Params = cordon_core::action::TagResource;
    type PreState = TagPreState;
    type Outcome = TagOutcome;
    type Undone = TagUndone;

    async fn pre_state(ctx: Ctx<'_>, p: &Self::Params) -> Result<TagPreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let instance = describe_instance(ctx, instance_id).await?;
        let mut targets: Vec<(String, &str)> = vec![(instance_id.clone(), "instance")];
        if p.include_volumes {
            targets.extend(
                instance
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs().and_then(|e| e.volume_id()))
                    .map(|v| (v.to_string(), "volume")),
            );
        }
        if p.include_network_interfaces {
            targets.extend(
                instance
                    .network_interfaces()
                    .iter()
                    .filter_map(|n| n.network_interface_id())
                    .map(|n| (n.to_string(), "network-interface")),
            );
        }
        let ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
        let keys: Vec<String> = p.tags.keys().cloned().collect();
        let current = current_tags(ctx, &ids, &keys).await?;
        let resources = targets
            .into_iter()
            .map(|(resource_id, resource_type)| TaggedResource {
                tags: keys
                    .iter()
                    .map(|k| {
                        (
                            k.clone(),
                            current.get(&(resource_id.clone(), k.clone())).cloned(),
                        )
                    })
                    .collect(),
                resource_id,
                resource_type: resource_type.to_string(),
            })
            .collect();
        Ok(TagPreState { resources })
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &Self::Params,
        pre: &TagPreState,
    ) -> Result<TagOutcome, ActionError> {
        let ids = pre.resource_ids();
        if !ids.is_empty() && !p.tags.is_empty() {
            create_tags(
                ctx,
                ids.clone(),
                p.tags.iter().map(|(k, v)| tag(k, v)).collect(),
            )
            .await?;
        }
        Ok(TagOutcome {
            tagged: ids,
            tags: p.tags.clone(),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        p: &Self::Params,
        pre: &TagPreState,
        _outcome: &TagOutcome,
    ) -> Result<(), ActionError> {
        let keys: Vec<String> = p.tags.keys().cloned().collect();
        let current = current_tags(ctx, &pre.resource_ids(), &keys).await?;
        for resource in &pre.resources {
            for (key, want) in &p.tags {
                let have = current.get(&(resource.resource_id.clone(), key.clone()));
                if have != Some(want) {
                    return Err(ActionError::new(
                        ErrorKind::Verification,
                        resource.resource_id.clone(),
                        format!("tag `{key}` reads back as {have:?}, not {want:?}"),
                        "tags are eventually consistent; the step is retried, and if it persists check who else tags this resource",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Self::Params,
        pre: &TagPreState,
        _outcome: Option<&TagOutcome>,
    ) -> Result<TagUndone, ActionError> {
        // Setting a value or deleting an absent key is a no-op when already
        // done, so the same calls serve a half-applied or already-undone state.
        let (restore, delete) = restore_plan(pre);
        let mut calls = Vec::new();
        for ((key, value), resources) in &restore {
            calls.push(
                Box::pin(create_tags(ctx, resources.clone(), vec![tag(key, value)]))
                    as BoxedCall<'_, ()>,
            );
        }
        for (keys, resources) in &delete {
            calls.push(Box::pin(delete_tags(ctx, resources.clone(), keys.clone())));
        }
        try_join_all(calls).await?;
        Ok(TagUndone {
            restored_values_on: restore.values().flatten().cloned().collect(),
            removed_keys_from: delete.values().flatten().cloned().collect(),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Self::Params,
        pre: &TagPreState,
    ) -> Result<(), ActionError> {
        let keys: BTreeSet<String> = pre
            .resources
            .iter()
            .flat_map(|r| r.tags.keys().cloned())
            .collect();
        let keys: Vec<String> = keys.into_iter().collect();
        let current = current_tags(ctx, &pre.resource_ids(), &keys).await?;
        for resource in &pre.resources {
            for (key, want) in &resource.tags {
                let have = current.get(&(resource.resource_id.clone(), key.clone()));
                if have != want.as_ref() {
                    return Err(ActionError::new(
                        ErrorKind::Verification,
                        resource.resource_id.clone(),
                        format!(
                            "tag `{key}` reads back as {}, but was {} before the case",
                            shown(have),
                            shown(want.as_ref())
                        ),
                        "tags are eventually consistent; rollback retries, and if it persists set the tag by hand",
                    ));
                }
            }
        }
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, p: &Self::Params, pre: &TagPreState) -> Vec<String> {
        if pre.resources.is_empty() || p.tags.is_empty() {
            return Vec::new();
        }
        let tags: Vec<String> = p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![format!(
            "{} {} tags=[{}]",
            ops::EC2_CREATE_TAGS.iam_action,
            pre.resource_ids().join(","),
            tags.join(", ")
        )]
    }
}

fn shown(value: Option<&String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "absent".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_groups_calls_by_value_and_absent_keys() {
        let pre = TagPreState {
            resources: vec![
                TaggedResource {
                    resource_id: "i-1".into(),
                    resource_type: "instance".into(),
                    tags: BTreeMap::from([("a".into(), Some("old".into())), ("b".into(), None)]),
                },
                TaggedResource {
                    resource_id: "vol-1".into(),
                    resource_type: "volume".into(),
                    tags: BTreeMap::from([("a".into(), None), ("b".into(), None)]),
                },
                TaggedResource {
                    resource_id: "eni-1".into(),
                    resource_type: "network-interface".into(),
                    tags: BTreeMap::from([("a".into(), Some("old".into())), ("b".into(), None)]),
                },
            ],
        };
        let (restore, delete) = restore_plan(&pre);
        assert_eq!(
            restore,
            BTreeMap::from([(
                ("a".to_string(), "old".to_string()),
                vec!["i-1".to_string(), "eni-1".to_string()]
            )])
        );
        assert_eq!(
            delete,
            BTreeMap::from([
                (
                    vec!["a".to_string(), "b".to_string()],
                    vec!["vol-1".to_string()]
                ),
                (
                    vec!["b".to_string()],
                    vec!["i-1".to_string(), "eni-1".to_string()]
                ),
            ])
        );
    }
}
