//! A deterministic snapshot of every attribute of a fixture that cordon's
//! playbooks can change, and a field-by-field diff between two snapshots.
//!
//! The snapshot is the yardstick for "rollback is exact": take one before a
//! run, one after `cordon rollback`, and [`diff_states`] must be empty.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, InstanceAttributeName};
use cordon_aws::client::AwsClients;
use serde_json::{Map, Value, json};

use crate::error::{FixtureError, aws};
use crate::fixture::{Fixture, Instance};
use crate::principal::Principal;

fn tags_map<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let map: BTreeMap<&str, &str> = tags.into_iter().collect();
    json!(map)
}

fn sorted_object(map: BTreeMap<String, Value>) -> Value {
    Value::Object(map.into_iter().collect::<Map<String, Value>>())
}

/// Every instance, interface, volume, Auto Scaling group, target group, user
/// and role of the fixture as it is now: keys sorted, lists sorted, no
/// timestamps, request ids or association ids. Instances, groups, users and
/// roles are keyed by logical name, interfaces and volumes by id (so a
/// detached one still shows up).
pub async fn snapshot_state(
    clients: &AwsClients,
    fixture: &Fixture,
) -> Result<Value, FixtureError> {
    Ok(json!({
        "instances": instances_state(clients, fixture).await?,
        "network-interfaces": interfaces_state(clients, fixture).await?,
        "volumes": volumes_state(clients, fixture).await?,
        "auto-scaling-groups": auto_scaling_state(clients, fixture).await?,
        "target-groups": target_groups_state(clients, fixture).await?,
        "users": users_state(clients, fixture).await?,
        "roles": roles_state(clients, fixture).await?,
    }))
}

async fn instances_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    if fixture.instances.is_empty() {
        return Ok(json!({}));
    }
    let ec2 = &clients.ec2;
    let ids: Vec<String> = fixture.instances.values().map(|i| i.id.clone()).collect();
    let resource = ids.join(", ");
    let described = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(aws("ec2:DescribeInstances", &resource))?;
    let associations = ec2
        .describe_iam_instance_profile_associations()
        .filters(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(ids))
                .build(),
        )
        .send()
        .await
        .map_err(aws("ec2:DescribeIamInstanceProfileAssociations", &resource))?;
    let mut out = BTreeMap::new();
    for (name, record) in &fixture.instances {
        let Some(instance) = described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(record.id.as_str()))
        else {
            out.insert(
                name.clone(),
                json!({"instance-id": record.id, "state": null}),
            );
            continue;
        };
        let mut block_devices = BTreeMap::new();
        for m in instance.block_device_mappings() {
            let ebs = m.ebs();
            block_devices.insert(
                m.device_name().unwrap_or_default().to_string(),
                json!({
                    "volume-id": ebs.and_then(|e| e.volume_id()),
                    "delete-on-termination": ebs.and_then(|e| e.delete_on_termination()),
                }),
            );
        }
        // ARN only: association ids change on re-association.
        let mut profiles: Vec<&str> = associations
            .iam_instance_profile_associations()
            .iter()
            .filter(|a| a.instance_id() == Some(record.id.as_str()))
            .filter(|a| {
                a.state()
                    .map(|s| matches!(s.as_str(), "associated" | "associating"))
                    .unwrap_or(true)
            })
            .filter_map(|a| a.iam_instance_profile().and_then(|p| p.arn()))
            .collect();
        profiles.sort_unstable();
        let (protection, shutdown) = protection(clients, record).await?;
        out.insert(
            name.clone(),
            json!({
                "instance-id": record.id,
                "state": instance.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()),
                "disable-api-termination": protection,
                "instance-initiated-shutdown-behavior": shutdown,
                "block-devices": sorted_object(block_devices),
                "instance-profile-associations": profiles,
                "tags": tags_map(instance.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            }),
        );
    }
    Ok(sorted_object(out))
}

/// (DisableApiTermination, InstanceInitiatedShutdownBehavior) of an instance.
async fn protection(
    clients: &AwsClients,
    instance: &Instance,
) -> Result<(bool, String), FixtureError> {
    let attr = |name: InstanceAttributeName| {
        clients
            .ec2
            .describe_instance_attribute()
            .instance_id(&instance.id)
            .attribute(name)
            .send()
    };
    let protection = attr(InstanceAttributeName::DisableApiTermination)
        .await
        .map_err(aws("ec2:DescribeInstanceAttribute", &instance.id))?
        .disable_api_termination()
        .and_then(AttributeBooleanValue::value)
        .unwrap_or(false);
    let shutdown = attr(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .await
        .map_err(aws("ec2:DescribeInstanceAttribute", &instance.id))?
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap_or("stop")
        .to_string();
    Ok((protection, shutdown))
}

async fn interfaces_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    let ids: Vec<String> = fixture
        .instances
        .values()
        .flat_map(Instance::eni_ids)
        .collect();
    if ids.is_empty() {
        return Ok(json!({}));
    }
    let out = clients
        .ec2
        .describe_network_interfaces()
        .set_network_interface_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(aws("ec2:DescribeNetworkInterfaces", &ids.join(", ")))?;
    let mut enis = BTreeMap::new();
    for ni in out.network_interfaces() {
        let mut groups: Vec<&str> = ni.groups().iter().filter_map(|g| g.group_id()).collect();
        groups.sort_unstable();
        let attachment = ni.attachment().map(|a| {
            json!({
                "instance-id": a.instance_id(),
                "device-index": a.device_index(),
                "delete-on-termination": a.delete_on_termination(),
            })
        });
        enis.insert(
            ni.network_interface_id().unwrap_or_default().to_string(),
            json!({
                "groups": groups,
                "attachment": attachment,
                "source-dest-check": ni.source_dest_check(),
                "tags": tags_map(ni.tag_set().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            }),
        );
    }
    Ok(sorted_object(enis))
}

async fn volumes_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    let ids = volume_ids(fixture);
    if ids.is_empty() {
        return Ok(json!({}));
    }
    let out = clients
        .ec2
        .describe_volumes()
        .set_volume_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(aws("ec2:DescribeVolumes", &ids.join(", ")))?;
    let mut volumes = BTreeMap::new();
    for v in out.volumes() {
        let mut attachments: Vec<Value> = v
            .attachments()
            .iter()
            .map(|a| {
                json!({
                    "instance-id": a.instance_id(),
                    "device": a.device(),
                    "delete-on-termination": a.delete_on_termination(),
                })
            })
            .collect();
        attachments.sort_by_key(|a| a.to_string());
        volumes.insert(
            v.volume_id().unwrap_or_default().to_string(),
            json!({
                "attachments": attachments,
                "tags": tags_map(v.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            }),
        );
    }
    Ok(sorted_object(volumes))
}

async fn auto_scaling_state(
    clients: &AwsClients,
    fixture: &Fixture,
) -> Result<Value, FixtureError> {
    let mut groups = BTreeMap::new();
    for (name, record) in &fixture.auto_scaling_groups {
        let out = clients
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&record.name)
            .send()
            .await
            .map_err(aws("autoscaling:DescribeAutoScalingGroups", &record.name))?;
        let state = out.auto_scaling_groups().first().map(|g| {
            let mut members: Vec<&str> = g
                .instances()
                .iter()
                .filter_map(|i| i.instance_id())
                .collect();
            members.sort_unstable();
            json!({
                "min-size": g.min_size(),
                "max-size": g.max_size(),
                "desired-capacity": g.desired_capacity(),
                "instances": members,
            })
        });
        groups.insert(name.clone(), state.unwrap_or(Value::Null));
    }
    Ok(sorted_object(groups))
}

async fn target_groups_state(
    clients: &AwsClients,
    fixture: &Fixture,
) -> Result<Value, FixtureError> {
    let mut groups = BTreeMap::new();
    for (name, record) in &fixture.target_groups {
        let state = match clients
            .elbv2
            .describe_target_health()
            .target_group_arn(&record.arn)
            .send()
            .await
        {
            Ok(out) => {
                let targets: BTreeSet<String> = out
                    .target_health_descriptions()
                    .iter()
                    .filter_map(|d| d.target())
                    .map(|t| {
                        format!(
                            "{}:{}",
                            t.id().unwrap_or_default(),
                            t.port().unwrap_or_default()
                        )
                    })
                    .collect();
                json!({ "exists": true, "targets": targets })
            }
            Err(_) => json!({ "exists": false, "targets": [] }),
        };
        groups.insert(name.clone(), state);
    }
    Ok(sorted_object(groups))
}

async fn users_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    let iam = &clients.iam;
    let mut users = BTreeMap::new();
    for (name, record) in &fixture.users {
        let user = &record.name;
        let principal = Principal::User(user);
        let keys = principal.access_keys(clients).await?;
        let password = match iam.get_login_profile().user_name(user).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                false
            }
            Err(e) => return Err(aws("iam:GetLoginProfile", user)(e)),
        };
        users.insert(
            name.clone(),
            json!({
                "access-keys": keys,
                "inline-policies": principal.inline_policies(clients).await?,
                "attached-policies": principal.attached_policies(clients).await?,
                "console-password": password,
            }),
        );
    }
    Ok(sorted_object(users))
}

async fn roles_state(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    let mut roles = BTreeMap::new();
    for (name, record) in &fixture.roles {
        let principal = Principal::Role(&record.name);
        roles.insert(
            name.clone(),
            json!({
                "inline-policies": principal.inline_policies(clients).await?,
                "attached-policies": principal.attached_policies(clients).await?,
            }),
        );
    }
    Ok(sorted_object(roles))
}

fn volume_ids(fixture: &Fixture) -> Vec<String> {
    fixture
        .instances
        .values()
        .flat_map(Instance::volume_ids)
        .collect()
}

/// Side effects a dry run must never have: security groups in the fixture's
/// VPCs and snapshots of its volumes (sorted ids).
pub async fn side_effects(clients: &AwsClients, fixture: &Fixture) -> Result<Value, FixtureError> {
    let vpcs: Vec<String> = fixture.vpcs.values().map(|v| v.id.clone()).collect();
    let mut groups: Vec<String> = Vec::new();
    if !vpcs.is_empty() {
        let out = clients
            .ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name("vpc-id")
                    .set_values(Some(vpcs.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(aws("ec2:DescribeSecurityGroups", &vpcs.join(", ")))?;
        groups = out
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        groups.sort();
    }
    let snapshots = volume_snapshots(clients, fixture).await?;
    let snapshot_ids: Vec<&str> = snapshots
        .iter()
        .filter_map(|s| s["snapshot-id"].as_str())
        .collect();
    Ok(json!({ "security-groups": groups, "snapshots": snapshot_ids }))
}

/// Snapshots of the fixture's volumes: id, volume id and tags, by id.
pub async fn volume_snapshots(
    clients: &AwsClients,
    fixture: &Fixture,
) -> Result<Vec<Value>, FixtureError> {
    let ids = volume_ids(fixture);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = clients
        .ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .send()
        .await
        .map_err(aws("ec2:DescribeSnapshots", &ids.join(", ")))?;
    let mut snaps: Vec<Value> = out
        .snapshots()
        .iter()
        .filter(|s| s.volume_id().is_some_and(|v| ids.iter().any(|f| f == v)))
        .map(|s| {
            json!({
                "snapshot-id": s.snapshot_id(),
                "volume-id": s.volume_id(),
                "tags": tags_map(s.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))),
            })
        })
        .collect();
    snaps.sort_by_key(|s| s["snapshot-id"].to_string());
    Ok(snaps)
}

/// Field-by-field differences between two snapshots, each as
/// `PATH: BEFORE -> AFTER` with a JSON path (`$.network-interfaces.eni-….groups`).
pub fn diff_states(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", a, b, &mut out);
    out
}

fn diff_at(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff_at(&p, l, r, out),
                    (Some(l), None) => out.push(format!("{p}: {l} -> (absent)")),
                    (None, Some(r)) => out.push(format!("{p}: (absent) -> {r}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff_at(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_paths() {
        let a = json!({"x": {"g": ["sg-1", "sg-2"], "p": true}, "k": 1});
        let b = json!({"x": {"g": ["sg-9"], "p": false}, "n": 2});
        let d = diff_states(&a, &b);
        assert_eq!(
            d,
            vec![
                "$.k: 1 -> (absent)",
                "$.n: (absent) -> 2",
                "$.x.g: [\"sg-1\",\"sg-2\"] -> [\"sg-9\"]",
                "$.x.p: true -> false",
            ]
        );
        assert!(diff_states(&a, &a).is_empty());
    }
}
