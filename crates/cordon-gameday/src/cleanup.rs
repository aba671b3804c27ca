//! Finding and deleting what a provisioning run created: from its
//! [`Fixture`] inventory, or (after a crash lost the fixture) from the owner
//! tag on the resources themselves.
//!
//! Cleanup deletes dependencies first ([`ResourceKind`]'s order), tries every
//! resource even when one fails, and counts "not found" as deleted, so
//! running it twice is harmless.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;

use crate::error::{FixtureError, aws};
use crate::fixture::{Fixture, OwnedResource, ResourceKind};
use crate::ledger::CreationLog;
use crate::principal::Principal;
use crate::provision::{wait_for, wait_for_instances, wait_for_volume_available};
use crate::{OWNER_TAG, iam_path};

/// What a cleanup did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Deleted (or already gone), in deletion order.
    pub deleted: Vec<OwnedResource>,
    /// Left behind, each with why.
    pub failed: Vec<(OwnedResource, FixtureError)>,
}

impl CleanupReport {
    /// Whether everything is gone.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Fixture {
    /// Deletes everything this run created; see [`cleanup`].
    pub async fn cleanup(&self, clients: &AwsClients) -> CleanupReport {
        cleanup(clients, &self.resources).await
    }
}

/// Deletes `resources`, dependencies first: users, load balancers, target
/// groups, Auto Scaling groups (force: the instances they launched go too),
/// launch templates, instances (termination protection lifted first: a
/// Game Day may have left it on), interfaces, volumes, instance profiles,
/// roles (with every policy, cordon's session revocation included),
/// security groups, subnets, and VPCs (with any group still in them, such as
/// cordon's isolation groups: nothing outside the run lives in a VPC it
/// created). Snapshots cordon took are evidence and stay.
pub async fn cleanup(clients: &AwsClients, resources: &[OwnedResource]) -> CleanupReport {
    let ordered: BTreeSet<&OwnedResource> = resources.iter().collect();
    let mut report = CleanupReport::default();
    let mut terminating = Vec::new();
    for resource in ordered {
        if resource.kind != ResourceKind::Instance && !terminating.is_empty() {
            // Interfaces, volumes and groups wait for the instances to be gone.
            finish_terminating(clients, &mut terminating, &mut report).await;
        }
        let result = match resource.kind {
            ResourceKind::Instance => match terminate(clients, &resource.id).await {
                Ok(()) => {
                    terminating.push(resource.clone());
                    continue;
                }
                Err(err) => Err(err),
            },
            _ => delete(clients, resource).await,
        };
        record(&mut report, resource, result);
    }
    finish_terminating(clients, &mut terminating, &mut report).await;
    report
}

fn record(report: &mut CleanupReport, resource: &OwnedResource, result: Result<(), FixtureError>) {
    match result {
        Ok(()) => report.deleted.push(resource.clone()),
        Err(err) if err.is_not_found() => report.deleted.push(resource.clone()),
        Err(err) => report.failed.push((resource.clone(), err)),
    }
}

/// Lifts termination protection (a Game Day's containment may have left it
/// on), so the instance can be terminated.
async fn lift_protection(clients: &AwsClients, id: &str) -> Result<(), FixtureError> {
    clients
        .ec2
        .modify_instance_attribute()
        .instance_id(id)
        .disable_api_termination(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(false)
                .build(),
        )
        .send()
        .await
        .map_err(aws("ec2:ModifyInstanceAttribute", id))?;
    Ok(())
}

/// Lifts termination protection and terminates one instance.
async fn terminate(clients: &AwsClients, id: &str) -> Result<(), FixtureError> {
    lift_protection(clients, id).await?;
    clients
        .ec2
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(aws("ec2:TerminateInstances", id))?;
    Ok(())
}

/// Waits for the instances being terminated to be gone, and records them.
async fn finish_terminating(
    clients: &AwsClients,
    terminating: &mut Vec<OwnedResource>,
    report: &mut CleanupReport,
) {
    if terminating.is_empty() {
        return;
    }
    let ids: Vec<String> = terminating.iter().map(|r| r.id.clone()).collect();
    let waited = wait_for_instances(clients, &ids, "terminated").await;
    match waited {
        Ok(()) => report.deleted.append(terminating),
        Err(err) => {
            let mut first = Some(err);
            for instance in terminating.drain(..) {
                let err = first.take().unwrap_or_else(|| FixtureError::Timeout {
                    resource: instance.id.clone(),
                    state: "terminated",
                    waited: std::time::Duration::ZERO,
                });
                report.failed.push((instance, err));
            }
        }
    }
}

async fn delete(clients: &AwsClients, resource: &OwnedResource) -> Result<(), FixtureError> {
    let id = resource.id.as_str();
    let (ec2, elb) = (&clients.ec2, &clients.elbv2);
    match resource.kind {
        ResourceKind::User => delete_user(clients, id).await,
        ResourceKind::LoadBalancer => elb
            .delete_load_balancer()
            .load_balancer_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(aws("elasticloadbalancing:DeleteLoadBalancer", id)),
        ResourceKind::TargetGroup => elb
            .delete_target_group()
            .target_group_arn(id)
            .send()
            .await
            .map(drop)
            .map_err(aws("elasticloadbalancing:DeleteTargetGroup", id)),
        ResourceKind::AutoScalingGroup => delete_auto_scaling_group(clients, id).await,
        ResourceKind::LaunchTemplate => ec2
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
            .map(drop)
            .map_err(aws("ec2:DeleteLaunchTemplate", id)),
        ResourceKind::Instance => terminate(clients, id).await,
        ResourceKind::NetworkInterface => delete_interface(clients, id).await,
        ResourceKind::Volume => delete_volume(clients, id).await,
        ResourceKind::InstanceProfile => delete_instance_profile(clients, id).await,
        ResourceKind::Role => delete_role(clients, id).await,
        ResourceKind::ManagedPolicy => delete_managed_policy(clients, id).await,
        ResourceKind::SecurityGroup => ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map(drop)
            .map_err(aws("ec2:DeleteSecurityGroup", id)),
        ResourceKind::Subnet => ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .map(drop)
            .map_err(aws("ec2:DeleteSubnet", id)),
        ResourceKind::Vpc => delete_vpc(clients, id).await,
    }
}

async fn delete_user(clients: &AwsClients, user: &str) -> Result<(), FixtureError> {
    let iam = &clients.iam;
    for key in Principal::User(user).access_keys(clients).await?.keys() {
        iam.delete_access_key()
            .user_name(user)
            .access_key_id(key)
            .send()
            .await
            .map_err(aws("iam:DeleteAccessKey", user))?;
    }
    match iam.delete_login_profile().user_name(user).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) => {}
        Err(e) => return Err(aws("iam:DeleteLoginProfile", user)(e)),
    }
    Principal::User(user).remove_policies(clients).await?;
    iam.delete_user()
        .user_name(user)
        .send()
        .await
        .map_err(aws("iam:DeleteUser", user))?;
    Ok(())
}

/// Force-deletes a group (which terminates its instances, so their
/// termination protection goes first) and waits for it to be gone.
async fn delete_auto_scaling_group(clients: &AwsClients, name: &str) -> Result<(), FixtureError> {
    let autoscaling = clients.autoscaling.clone();
    let out = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(aws("autoscaling:DescribeAutoScalingGroups", name))?;
    for id in out
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id())
    {
        lift_protection(clients, id).await?;
    }
    autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(name)
        .force_delete(true)
        .send()
        .await
        .map_err(aws("autoscaling:DeleteAutoScalingGroup", name))?;
    wait_for(name, "deleted", || {
        let request = autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send();
        async move {
            let out = request
                .await
                .map_err(aws("autoscaling:DescribeAutoScalingGroups", name))?;
            Ok(out.auto_scaling_groups().is_empty().then_some(()))
        }
    })
    .await
}

/// Detaches an extra interface still attached, then deletes it. A primary
/// interface (device 0) cannot be detached; its instance is terminated by
/// now, which deleted or released it.
async fn delete_interface(clients: &AwsClients, id: &str) -> Result<(), FixtureError> {
    let ec2 = clients.ec2.clone();
    let out = ec2
        .describe_network_interfaces()
        .network_interface_ids(id)
        .send()
        .await
        .map_err(aws("ec2:DescribeNetworkInterfaces", id))?;
    let attachment = out
        .network_interfaces()
        .first()
        .and_then(|n| n.attachment())
        .filter(|a| a.device_index() != Some(0))
        .and_then(|a| a.attachment_id())
        .map(str::to_string);
    if let Some(attachment) = attachment {
        ec2.detach_network_interface()
            .attachment_id(&attachment)
            .force(true)
            .send()
            .await
            .map_err(aws("ec2:DetachNetworkInterface", id))?;
        wait_for(id, "available", || {
            let request = ec2
                .describe_network_interfaces()
                .network_interface_ids(id)
                .send();
            async move {
                let out = request
                    .await
                    .map_err(aws("ec2:DescribeNetworkInterfaces", id))?;
                let free = out
                    .network_interfaces()
                    .iter()
                    .all(|n| n.status().is_some_and(|s| s.as_str() == "available"));
                Ok(free.then_some(()))
            }
        })
        .await?;
    }
    ec2.delete_network_interface()
        .network_interface_id(id)
        .send()
        .await
        .map_err(aws("ec2:DeleteNetworkInterface", id))?;
    Ok(())
}

/// Detaches a volume still attached, then deletes it.
async fn delete_volume(clients: &AwsClients, id: &str) -> Result<(), FixtureError> {
    let ec2 = clients.ec2.clone();
    let out = ec2
        .describe_volumes()
        .volume_ids(id)
        .send()
        .await
        .map_err(aws("ec2:DescribeVolumes", id))?;
    let attached = out
        .volumes()
        .first()
        .is_some_and(|v| !v.attachments().is_empty());
    if attached {
        ec2.detach_volume()
            .volume_id(id)
            .force(true)
            .send()
            .await
            .map_err(aws("ec2:DetachVolume", id))?;
        wait_for_volume_available(clients, id).await?;
    }
    ec2.delete_volume()
        .volume_id(id)
        .send()
        .await
        .map_err(aws("ec2:DeleteVolume", id))?;
    Ok(())
}

async fn delete_instance_profile(clients: &AwsClients, name: &str) -> Result<(), FixtureError> {
    let iam = &clients.iam;
    let out = iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(aws("iam:GetInstanceProfile", name))?;
    let roles: Vec<String> = out
        .instance_profile()
        .map(|p| {
            p.roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    for role in roles {
        iam.remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(&role)
            .send()
            .await
            .map_err(aws("iam:RemoveRoleFromInstanceProfile", name))?;
    }
    iam.delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(aws("iam:DeleteInstanceProfile", name))?;
    Ok(())
}

async fn delete_role(clients: &AwsClients, role: &str) -> Result<(), FixtureError> {
    let iam = &clients.iam;
    Principal::Role(role).remove_policies(clients).await?;
    let profiles = iam
        .list_instance_profiles_for_role()
        .role_name(role)
        .send()
        .await
        .map_err(aws("iam:ListInstanceProfilesForRole", role))?;
    for profile in profiles.instance_profiles() {
        iam.remove_role_from_instance_profile()
            .instance_profile_name(profile.instance_profile_name())
            .role_name(role)
            .send()
            .await
            .map_err(aws("iam:RemoveRoleFromInstanceProfile", role))?;
    }
    iam.delete_role()
        .role_name(role)
        .send()
        .await
        .map_err(aws("iam:DeleteRole", role))?;
    Ok(())
}

/// Detaches the policy (ARN `arn`) from every user, role and group, then deletes it.
///
/// Only a policy carrying [`OWNER_TAG`] is deleted: the journal names the
/// quarantine policy by its ARN before creating it, so a policy someone
/// else created in between (untagged, as a deployment's is) stays.
async fn delete_managed_policy(clients: &AwsClients, arn: &str) -> Result<(), FixtureError> {
    let iam = &clients.iam;
    let tags = iam
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .map_err(aws("iam:ListPolicyTags", arn))?;
    if !tags.tags().iter().any(|t| t.key() == OWNER_TAG) {
        return Err(FixtureError::NotOwned {
            resource: arn.to_string(),
        });
    }
    let out = iam
        .list_entities_for_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(aws("iam:ListEntitiesForPolicy", arn))?;
    for user in out.policy_users() {
        if let Some(name) = user.user_name() {
            iam.detach_user_policy()
                .user_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws("iam:DetachUserPolicy", name))?;
        }
    }
    for role in out.policy_roles() {
        if let Some(name) = role.role_name() {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws("iam:DetachRolePolicy", name))?;
        }
    }
    for group in out.policy_groups() {
        if let Some(name) = group.group_name() {
            iam.detach_group_policy()
                .group_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws("iam:DetachGroupPolicy", name))?;
        }
    }
    iam.delete_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(aws("iam:DeletePolicy", arn))?;
    Ok(())
}

/// Deletes everything the creation journal `log` says its run created:
/// the resources it names, and every resource carrying the run's owner tag
/// (which covers a creation whose answer was lost before its id was
/// journaled). Errors only when the tag search itself fails; what could not
/// be deleted is in the report.
pub async fn cleanup_journaled(
    clients: &AwsClients,
    log: &CreationLog,
) -> Result<CleanupReport, FixtureError> {
    let mut resources = log.known.clone();
    for found in discover(clients, &log.run.owner).await? {
        if !resources.contains(&found) {
            resources.push(found);
        }
    }
    Ok(cleanup(clients, &resources).await)
}

/// Deletes the groups left in the VPC (not its default group), then the VPC.
async fn delete_vpc(clients: &AwsClients, id: &str) -> Result<(), FixtureError> {
    let ec2 = &clients.ec2;
    let out = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(id).build())
        .send()
        .await
        .map_err(aws("ec2:DescribeSecurityGroups", id))?;
    for group in out.security_groups() {
        if group.group_name() == Some("default") {
            continue;
        }
        if let Some(group_id) = group.group_id() {
            match ec2.delete_security_group().group_id(group_id).send().await {
                Ok(_) => {}
                Err(e) => {
                    let err = aws("ec2:DeleteSecurityGroup", group_id)(e);
                    if !err.is_not_found() {
                        return Err(err);
                    }
                }
            }
        }
    }
    ec2.delete_vpc()
        .vpc_id(id)
        .send()
        .await
        .map_err(aws("ec2:DeleteVpc", id))?;
    Ok(())
}

/// Every resource of the run `owner`, found from AWS itself: what to clean
/// up when the fixture of a crashed run was lost. EC2 resources by their
/// owner tag (terminated instances left out), Auto Scaling groups and load
/// balancing by the tag too, IAM resources by the run's IAM path.
pub async fn discover(
    clients: &AwsClients,
    owner: &str,
) -> Result<Vec<OwnedResource>, FixtureError> {
    let mut found = discover_ec2(clients, owner).await?;
    found.extend(discover_auto_scaling(clients, owner).await?);
    found.extend(discover_load_balancing(clients, owner).await?);
    found.extend(discover_iam(clients, owner).await?);
    found.sort();
    found.dedup();
    Ok(found)
}

/// Runs one describe or list call (`$call`, with any extra builder calls),
/// paginated, and adds each item's id (`$id`) as a resource of `$kind`.
macro_rules! collect_ids {
    ($found:ident, $kind:expr, $op:literal, $resource:expr, $request:expr, $id:expr) => {{
        let items: Vec<_> = $request
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(aws($op, $resource))?;
        $found.extend(items.iter().filter_map($id).map(|id| OwnedResource {
            kind: $kind,
            id: id.to_string(),
        }));
    }};
}

/// Each kind is described with a tag filter (not `DescribeTags`, which may
/// still list the tags of deleted resources), so only what exists is found.
async fn discover_ec2(
    clients: &AwsClients,
    owner: &str,
) -> Result<Vec<OwnedResource>, FixtureError> {
    let ec2 = &clients.ec2;
    let tagged = || {
        Filter::builder()
            .name(format!("tag:{OWNER_TAG}"))
            .values(owner)
            .build()
    };
    let mut found = Vec::new();
    collect_ids!(
        found,
        ResourceKind::Vpc,
        "ec2:DescribeVpcs",
        owner,
        ec2.describe_vpcs().filters(tagged()),
        |v: &aws_sdk_ec2::types::Vpc| v.vpc_id()
    );
    collect_ids!(
        found,
        ResourceKind::Subnet,
        "ec2:DescribeSubnets",
        owner,
        ec2.describe_subnets().filters(tagged()),
        |s: &aws_sdk_ec2::types::Subnet| s.subnet_id()
    );
    collect_ids!(
        found,
        ResourceKind::SecurityGroup,
        "ec2:DescribeSecurityGroups",
        owner,
        ec2.describe_security_groups().filters(tagged()),
        |g: &aws_sdk_ec2::types::SecurityGroup| g.group_id()
    );
    collect_ids!(
        found,
        ResourceKind::NetworkInterface,
        "ec2:DescribeNetworkInterfaces",
        owner,
        ec2.describe_network_interfaces().filters(tagged()),
        |n: &aws_sdk_ec2::types::NetworkInterface| n.network_interface_id()
    );
    collect_ids!(
        found,
        ResourceKind::Volume,
        "ec2:DescribeVolumes",
        owner,
        ec2.describe_volumes().filters(tagged()),
        |v: &aws_sdk_ec2::types::Volume| v.volume_id()
    );
    collect_ids!(
        found,
        ResourceKind::LaunchTemplate,
        "ec2:DescribeLaunchTemplates",
        owner,
        ec2.describe_launch_templates().filters(tagged()),
        |t: &aws_sdk_ec2::types::LaunchTemplate| t.launch_template_id()
    );
    let live = ["pending", "running", "stopping", "stopped", "shutting-down"];
    let reservations: Vec<_> = ec2
        .describe_instances()
        .filters(tagged())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(live.iter().map(|s| s.to_string()).collect()))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(aws("ec2:DescribeInstances", owner))?;
    found.extend(
        reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id())
            .map(|id| OwnedResource {
                kind: ResourceKind::Instance,
                id: id.to_string(),
            }),
    );
    Ok(found)
}

async fn discover_auto_scaling(
    clients: &AwsClients,
    owner: &str,
) -> Result<Vec<OwnedResource>, FixtureError> {
    use aws_sdk_autoscaling::types::{Filter as AsgFilter, TagDescription};
    let mut found = Vec::new();
    collect_ids!(
        found,
        ResourceKind::AutoScalingGroup,
        "autoscaling:DescribeTags",
        owner,
        clients
            .autoscaling
            .describe_tags()
            .filters(AsgFilter::builder().name("key").values(OWNER_TAG).build())
            .filters(AsgFilter::builder().name("value").values(owner).build()),
        |t: &TagDescription| t.resource_id()
    );
    Ok(found)
}

async fn discover_load_balancing(
    clients: &AwsClients,
    owner: &str,
) -> Result<Vec<OwnedResource>, FixtureError> {
    use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, TargetGroup};
    let elb = &clients.elbv2;
    let mut candidates = Vec::new();
    collect_ids!(
        candidates,
        ResourceKind::TargetGroup,
        "elasticloadbalancing:DescribeTargetGroups",
        owner,
        elb.describe_target_groups(),
        |g: &TargetGroup| g.target_group_arn()
    );
    collect_ids!(
        candidates,
        ResourceKind::LoadBalancer,
        "elasticloadbalancing:DescribeLoadBalancers",
        owner,
        elb.describe_load_balancers(),
        |l: &LoadBalancer| l.load_balancer_arn()
    );
    let mut found = Vec::new();
    // DescribeTags takes at most 20 ARNs.
    for chunk in candidates.chunks(20) {
        let out = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.iter().map(|r| r.id.clone()).collect()))
            .send()
            .await
            .map_err(aws("elasticloadbalancing:DescribeTags", owner))?;
        for description in out.tag_descriptions() {
            let owned = description
                .tags()
                .iter()
                .any(|t| t.key() == Some(OWNER_TAG) && t.value() == Some(owner));
            if owned {
                found.extend(
                    chunk
                        .iter()
                        .filter(|r| description.resource_arn() == Some(r.id.as_str()))
                        .cloned(),
                );
            }
        }
    }
    Ok(found)
}

async fn discover_iam(
    clients: &AwsClients,
    owner: &str,
) -> Result<Vec<OwnedResource>, FixtureError> {
    use aws_sdk_iam::types::{InstanceProfile, Role, User};
    let (iam, path) = (&clients.iam, iam_path(owner));
    let mut found = Vec::new();
    collect_ids!(
        found,
        ResourceKind::User,
        "iam:ListUsers",
        &path,
        iam.list_users().path_prefix(&path),
        |u: &User| u.path().starts_with(&path).then(|| u.user_name())
    );
    collect_ids!(
        found,
        ResourceKind::Role,
        "iam:ListRoles",
        &path,
        iam.list_roles().path_prefix(&path),
        |r: &Role| r.path().starts_with(&path).then(|| r.role_name())
    );
    collect_ids!(
        found,
        ResourceKind::InstanceProfile,
        "iam:ListInstanceProfiles",
        &path,
        iam.list_instance_profiles().path_prefix(&path),
        |p: &InstanceProfile| {
            p.path()
                .starts_with(&path)
                .then(|| p.instance_profile_name())
        }
    );
    Ok(found)
}
