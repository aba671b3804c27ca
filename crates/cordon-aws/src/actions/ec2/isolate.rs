//! `isolate-instance`: cuts the instance off the network, every ENI of it.
//!
//! Security groups do not cut connections they already track, so each ENI
//! first moves to an allow-all "untrack" group (which makes its flows
//! untracked), then to the isolation group (no ingress, no egress), which
//! drops those untracked flows at once. Every ENI is swapped on its own with
//! `ModifyNetworkInterfaceAttribute`: `ModifyInstanceAttribute --groups` only
//! touches the primary ENI and AWS refuses it for multi-ENI instances.
//!
//! Both groups exist once per VPC, found by VPC and name, created on first
//! use and reused by every case after: one group per run would leak groups
//! and hit the per-VPC quota during an incident with many instances.
//!
//! Some traffic stays tracked whatever the groups say (ICMP; flows through
//! NAT gateways, NLB, GWLB, transit gateways): the outcome says so, so the
//! evidence does not overstate what isolation achieved.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, NetworkInterface, ResourceType, SecurityGroup, Tag,
    TagSpecification,
};
use cordon_core::action::IsolateInstance as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    BoxedCall, describe_instance, filter, instance_network_interfaces, interface_group_ids,
    join_all, network_interfaces_by_id, try_join_all,
};
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::ops;

/// The `isolate-instance` handler.
#[derive(Debug)]
pub struct IsolateInstance;

/// Every ENI of the instance with its own groups, as read live before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsolationPreState {
    /// The instance the ENIs were attached to.
    #[serde(alias = "instance_id")]
    pub instance_id: String,
    /// Ordered by device index.
    pub interfaces: Vec<InterfaceGroups>,
}

/// One ENI's groups before isolation: what undo puts back, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceGroups {
    /// The ENI.
    #[serde(alias = "network_interface_id")]
    pub network_interface_id: String,
    /// Its VPC, which decides the isolation group it gets.
    #[serde(alias = "vpc_id")]
    pub vpc_id: String,
    /// Attachment device index (0 = primary), for people reading the journal.
    #[serde(alias = "device_index")]
    pub device_index: Option<i32>,
    /// Security group ids in the order AWS returned them.
    #[serde(alias = "security_group_ids")]
    pub security_group_ids: Vec<String>,
}

/// What apply did; verify reads the group ids from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsolationOutcome {
    /// The groups used in each VPC.
    pub groups: Vec<VpcGroups>,
    /// What happened to each ENI.
    pub interfaces: Vec<InterfaceResult>,
    /// What isolation by security group cannot stop.
    #[serde(alias = "still_tracked")]
    pub still_tracked: String,
}

/// The isolation (and untrack) group of one VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VpcGroups {
    /// The VPC.
    #[serde(alias = "vpc_id")]
    pub vpc_id: String,
    /// The group with no rules every ENI of this VPC ends in.
    #[serde(alias = "isolation_group_id")]
    pub isolation_group_id: String,
    /// The allow-all group ENIs pass through; absent when tracked connections are not cut.
    #[serde(alias = "untrack_group_id")]
    pub untrack_group_id: Option<String>,
    /// Groups this run created (the rest were found and reused).
    pub created: Vec<String>,
    /// Rules this run removed from or added to a reused group to make it fit for purpose.
    pub repaired: Vec<String>,
}

/// One ENI's swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceResult {
    /// The ENI.
    #[serde(alias = "network_interface_id")]
    pub network_interface_id: String,
    /// Its VPC.
    #[serde(alias = "vpc_id")]
    pub vpc_id: String,
    /// Groups it had before the step (from the pre-state).
    #[serde(alias = "groups_before")]
    pub groups_before: Vec<String>,
    /// The allow-all group it passed through, when it did in this run.
    #[serde(alias = "passed_through")]
    pub passed_through: Option<String>,
    /// Groups it has now.
    #[serde(alias = "groups_after")]
    pub groups_after: Vec<String>,
    /// Anything unusual: already isolated by an earlier attempt, or deleted since.
    pub note: Option<String>,
}

/// What undo did to each ENI of the pre-state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsolationUndone {
    /// ENIs put back in their own groups now.
    pub restored: Vec<String>,
    /// ENIs already back (a half-applied or already-undone step).
    pub already_restored: Vec<String>,
    /// ENIs deleted since: nothing to put back.
    pub gone: Vec<String>,
    /// Why the isolation groups are not deleted.
    pub groups_kept: String,
}

/// Tag on the isolation groups, so people (and cordon) can tell what they are for.
pub const ROLE_TAG: &str = "cordon:role";
const ISOLATION_ROLE: &str = "isolation";
const UNTRACK_ROLE: &str = "untrack";
const ALL_PROTOCOLS: &str = "-1";
const ANY_V4: &str = "0.0.0.0/0";
const ANY_V6: &str = "::/0";

/// The caveat recorded with every isolation (see AWS-NOTES, "Isolating an instance").
pub const STILL_TRACKED: &str = "Security groups only stop what they track: ICMP and flows through NAT gateways, \
Network Load Balancers, Gateway Load Balancers and transit gateways stay tracked and may live on until they idle out; \
isolate those paths (NACLs, route tables, load balancer deregistration) if the threat uses them.";

/// Name of the allow-all group that goes with isolation group `name`.
pub fn untrack_group_name(name: &str) -> String {
    format!("{name}-untrack")
}

fn any_traffic_v4() -> IpPermission {
    IpPermission::builder()
        .ip_protocol(ALL_PROTOCOLS)
        .ip_ranges(IpRange::builder().cidr_ip(ANY_V4).build())
        .build()
}

fn any_traffic_v6() -> IpPermission {
    IpPermission::builder()
        .ip_protocol(ALL_PROTOCOLS)
        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6(ANY_V6).build())
        .build()
}

/// Whether `rules` hold an all-protocols rule for the whole IPv4 (or IPv6) space.
fn allows_all(rules: &[IpPermission], v6: bool) -> bool {
    rules.iter().any(|r| {
        r.ip_protocol() == Some(ALL_PROTOCOLS)
            && if v6 {
                r.ipv6_ranges()
                    .iter()
                    .any(|x| x.cidr_ipv6() == Some(ANY_V6))
            } else {
                r.ip_ranges().iter().any(|x| x.cidr_ip() == Some(ANY_V4))
            }
    })
}

/// One line per rule, for outcomes and errors.
fn rule_summary(rules: &[IpPermission]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let mut peers: Vec<String> = Vec::new();
            peers.extend(
                r.ip_ranges()
                    .iter()
                    .filter_map(|x| x.cidr_ip().map(str::to_string)),
            );
            peers.extend(
                r.ipv6_ranges()
                    .iter()
                    .filter_map(|x| x.cidr_ipv6().map(str::to_string)),
            );
            peers.extend(
                r.prefix_list_ids()
                    .iter()
                    .filter_map(|x| x.prefix_list_id().map(str::to_string)),
            );
            peers.extend(
                r.user_id_group_pairs()
                    .iter()
                    .filter_map(|x| x.group_id().map(str::to_string)),
            );
            let ports = match (r.from_port(), r.to_port()) {
                (Some(from), Some(to)) if from == to => format!(":{from}"),
                (Some(from), Some(to)) => format!(":{from}-{to}"),
                _ => String::new(),
            };
            format!(
                "{}{ports} {}",
                r.ip_protocol().unwrap_or("?"),
                peers.join(",")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// AWS calls, one function each.

/// Security groups matching every one of `filters` (paginated).
async fn describe_groups(
    ctx: Ctx<'_>,
    filters: Vec<Filter>,
    label: &str,
) -> Result<Vec<SecurityGroup>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters));
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SECURITY_GROUPS, label, request)
        .await?;
    Ok(items(&pages, |page| page.security_groups()))
}

/// The groups named `names` in `vpcs`: one filtered DescribeSecurityGroups for all VPCs.
async fn find_groups(
    ctx: Ctx<'_>,
    vpcs: &[String],
    names: &[String],
) -> Result<Vec<SecurityGroup>, ActionError> {
    let filters = vec![filter("vpc-id", vpcs), filter("group-name", names)];
    describe_groups(ctx, filters, &vpcs.join(",")).await
}

async fn groups_by_id(ctx: Ctx<'_>, ids: &[String]) -> Result<Vec<SecurityGroup>, ActionError> {
    describe_groups(ctx, vec![filter("group-id", ids)], &ids.join(",")).await
}

/// Creates a tagged group; `None` when another worker created it first.
async fn create_group(
    ctx: Ctx<'_>,
    vpc_id: &str,
    name: &str,
    role: &str,
) -> Result<Option<String>, ActionError> {
    let clients = ctx.clients();
    let description = match role {
        ISOLATION_ROLE => {
            "cordon isolation: no ingress, no egress. Shared by every instance cordon isolates in this VPC; do not add rules."
        }
        _ => {
            "cordon untrack: allow-all group an ENI passes through for a moment so its tracked connections are cut. Do not use."
        }
    };
    let request = clients
        .ec2
        .create_security_group()
        .vpc_id(vpc_id)
        .group_name(name)
        .description(description)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key(ROLE_TAG).value(role).build())
                .build(),
        );
    let op = &ops::EC2_CREATE_SECURITY_GROUP;
    match clients.try_call(op, vpc_id, request).await {
        Ok(out) => out
            .group_id()
            .map(|id| Some(id.to_string()))
            .ok_or_else(|| {
                ActionError::new(
                    ErrorKind::Other,
                    vpc_id,
                    format!("{op} for `{name}` returned no group id"),
                    "retry; if it persists, create the group by hand",
                )
            }),
        Err(e) if e.code() == Some("InvalidGroup.Duplicate") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn revoke_egress(
    ctx: Ctx<'_>,
    group_id: &str,
    rules: Vec<IpPermission>,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    // AWS answers success (listing `UnknownIpPermissions`) for rules that are
    // not there, so revoking the IPv6 default where there is none is harmless.
    let request = clients
        .ec2
        .revoke_security_group_egress()
        .group_id(group_id)
        .set_ip_permissions(Some(rules));
    clients
        .call(&ops::EC2_REVOKE_SECURITY_GROUP_EGRESS, group_id, request)
        .await?;
    Ok(())
}

async fn authorize(
    ctx: Ctx<'_>,
    group_id: &str,
    ingress: bool,
    rules: Vec<IpPermission>,
) -> Result<(), ActionError> {
    if rules.is_empty() {
        return Ok(());
    }
    let clients = ctx.clients();
    let result = if ingress {
        let request = clients
            .ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(rules));
        clients
            .try_call(
                &ops::EC2_AUTHORIZE_SECURITY_GROUP_INGRESS,
                group_id,
                request,
            )
            .await
            .map(drop)
            .map_err(|e| (e.code() == Some(DUPLICATE_RULE), e.into_error()))
    } else {
        let request = clients
            .ec2
            .authorize_security_group_egress()
            .group_id(group_id)
            .set_ip_permissions(Some(rules));
        clients
            .try_call(&ops::EC2_AUTHORIZE_SECURITY_GROUP_EGRESS, group_id, request)
            .await
            .map(drop)
            .map_err(|e| (e.code() == Some(DUPLICATE_RULE), e.into_error()))
    };
    match result {
        // The rule is there already: what authorizing it is for.
        Err((true, _)) | Ok(()) => Ok(()),
        Err((false, e)) => Err(e.into()),
    }
}

/// The answer to authorizing a rule a group already has.
const DUPLICATE_RULE: &str = "InvalidPermission.Duplicate";

async fn set_groups(ctx: Ctx<'_>, eni_id: &str, groups: &[String]) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(eni_id)
        .set_groups(Some(groups.to_vec()));
    clients
        .call(
            &ops::EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE,
            eni_id,
            request,
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding or creating the groups.

/// The isolation group of `vpc_id`, made to have no rules at all.
///
/// A reused group with egress rules (typically a run that crashed between
/// creating the group and revoking its default egress rule) has them revoked.
/// A reused group with ingress rules is refused, changing nothing: only a
/// person adds those (say, for a forensic workstation), and cordon should
/// neither strip them silently nor call an instance isolated that is not.
async fn ensure_isolation_group(
    ctx: Ctx<'_>,
    vpc_id: &str,
    name: &str,
    found: Option<SecurityGroup>,
) -> Result<(String, bool, Vec<String>), ActionError> {
    let existing = match found {
        Some(group) => Some(group),
        None => match create_group(ctx, vpc_id, name, ISOLATION_ROLE).await? {
            Some(id) => {
                // A new group allows all egress; isolation allows none.
                revoke_egress(ctx, &id, vec![any_traffic_v4(), any_traffic_v6()]).await?;
                return Ok((id, true, Vec::new()));
            }
            // Lost a creation race to another worker: use its group.
            None => find_groups(ctx, &[vpc_id.to_string()], &[name.to_string()])
                .await?
                .into_iter()
                .next(),
        },
    };
    let Some(group) = existing else {
        return Err(ActionError::new(
            ErrorKind::Conflict,
            vpc_id,
            format!(
                "security group `{name}` both exists ({}) and does not ({})",
                ops::EC2_CREATE_SECURITY_GROUP,
                ops::EC2_DESCRIBE_SECURITY_GROUPS
            ),
            "EC2 is eventually consistent; the step is retried",
        ));
    };
    let id = group.group_id().unwrap_or_default().to_string();
    if !group.ip_permissions().is_empty() {
        return Err(ActionError::new(
            ErrorKind::Refused,
            &id,
            format!(
                "isolation group `{name}` in {vpc_id} has ingress rules ({}), so it would not isolate",
                rule_summary(group.ip_permissions()).join("; ")
            ),
            "remove its ingress rules, or set another isolation-group-name in the playbook, then resume the case",
        ));
    }
    let mut repaired = Vec::new();
    if !group.ip_permissions_egress().is_empty() {
        repaired = rule_summary(group.ip_permissions_egress())
            .into_iter()
            .map(|r| format!("{id}: revoked egress {r}"))
            .collect();
        warn!(group = %id, rules = ?repaired, "isolation group had egress rules; revoking them");
        revoke_egress(ctx, &id, group.ip_permissions_egress().to_vec()).await?;
    }
    Ok((id, false, repaired))
}

/// The allow-all group of `vpc_id`: all protocols from and to 0.0.0.0/0 and ::/0.
/// A reused group missing one of those rules gets it added.
async fn ensure_untrack_group(
    ctx: Ctx<'_>,
    vpc_id: &str,
    name: &str,
    found: Option<SecurityGroup>,
) -> Result<(String, bool, Vec<String>), ActionError> {
    let (id, created, ingress, egress) = match found {
        Some(group) => (
            group.group_id().unwrap_or_default().to_string(),
            false,
            group.ip_permissions().to_vec(),
            group.ip_permissions_egress().to_vec(),
        ),
        None => match create_group(ctx, vpc_id, name, UNTRACK_ROLE).await? {
            // A new group has the IPv4 allow-all egress rule (and, in an IPv6
            // VPC, the IPv6 one: adding it again is answered Duplicate, which is fine).
            Some(id) => (id, true, Vec::new(), vec![any_traffic_v4()]),
            None => {
                let group = find_groups(ctx, &[vpc_id.to_string()], &[name.to_string()])
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        ActionError::new(
                            ErrorKind::Conflict,
                            vpc_id,
                            format!("security group `{name}` both exists and does not"),
                            "EC2 is eventually consistent; the step is retried",
                        )
                    })?;
                (
                    group.group_id().unwrap_or_default().to_string(),
                    false,
                    group.ip_permissions().to_vec(),
                    group.ip_permissions_egress().to_vec(),
                )
            }
        },
    };
    let missing = |rules: &[IpPermission]| {
        let mut out = Vec::new();
        if !allows_all(rules, false) {
            out.push(any_traffic_v4());
        }
        if !allows_all(rules, true) {
            out.push(any_traffic_v6());
        }
        out
    };
    let (add_in, add_out) = (missing(&ingress), missing(&egress));
    let mut repaired = Vec::new();
    if !created {
        repaired.extend(
            rule_summary(&add_in)
                .into_iter()
                .map(|r| format!("{id}: added ingress {r}")),
        );
        repaired.extend(
            rule_summary(&add_out)
                .into_iter()
                .map(|r| format!("{id}: added egress {r}")),
        );
    }
    let (a, b) = tokio::join!(
        authorize(ctx, &id, true, add_in),
        authorize(ctx, &id, false, add_out)
    );
    a?;
    b?;
    Ok((id, created, repaired))
}

/// Finds or creates the groups of every VPC: one DescribeSecurityGroups for
/// all of them, then each VPC's (and each group's) set-up concurrently.
async fn ensure_groups(
    ctx: Ctx<'_>,
    p: &Params,
    vpcs: &[String],
) -> Result<Vec<VpcGroups>, ActionError> {
    let untrack_name = untrack_group_name(&p.isolation_group_name);
    let mut names = vec![p.isolation_group_name.clone()];
    if p.cut_tracked_connections {
        names.push(untrack_name.clone());
    }
    let found = find_groups(ctx, vpcs, &names).await?;
    let pick = |vpc: &str, name: &str| {
        found
            .iter()
            .find(|g| g.vpc_id() == Some(vpc) && g.group_name() == Some(name))
            .cloned()
    };
    let per_vpc = vpcs.iter().map(|vpc| {
        let isolation = pick(vpc, &p.isolation_group_name);
        let untrack = pick(vpc, &untrack_name);
        let untrack_name = untrack_name.clone();
        async move {
            let (isolation, untrack) = tokio::join!(
                ensure_isolation_group(ctx, vpc, &p.isolation_group_name, isolation),
                async {
                    match p.cut_tracked_connections {
                        true => ensure_untrack_group(ctx, vpc, &untrack_name, untrack)
                            .await
                            .map(Some),
                        false => Ok(None),
                    }
                }
            );
            let (isolation_group_id, iso_created, mut repaired) = isolation?;
            let untrack = untrack?;
            let mut created = Vec::new();
            if iso_created {
                created.push(isolation_group_id.clone());
            }
            if let Some((id, true, _)) = &untrack {
                created.push(id.clone());
            }
            if let Some((_, _, fixes)) = &untrack {
                repaired.extend(fixes.iter().cloned());
            }
            Ok(VpcGroups {
                vpc_id: vpc.clone(),
                isolation_group_id,
                untrack_group_id: untrack.map(|(id, _, _)| id),
                created,
                repaired,
            })
        }
    });
    try_join_all(per_vpc.collect()).await
}

// ---------------------------------------------------------------------------
// Reading the interfaces.

fn interface_groups(eni: &NetworkInterface) -> Result<InterfaceGroups, ActionError> {
    let id = eni.network_interface_id().unwrap_or_default().to_string();
    let vpc_id = eni.vpc_id().map(str::to_string).ok_or_else(|| {
        ActionError::new(
            ErrorKind::InvalidState,
            &id,
            "network interface has no VPC, so there is no isolation group to move it to",
            "isolate this interface by hand",
        )
    })?;
    Ok(InterfaceGroups {
        network_interface_id: id,
        vpc_id,
        device_index: eni.attachment().and_then(|a| a.device_index()),
        security_group_ids: interface_group_ids(eni),
    })
}

fn distinct_vpcs(interfaces: &[InterfaceGroups]) -> Vec<String> {
    let set: BTreeSet<&String> = interfaces.iter().map(|i| &i.vpc_id).collect();
    set.into_iter().cloned().collect()
}

fn as_set(groups: &[String]) -> BTreeSet<&String> {
    groups.iter().collect()
}

/// One ENI's plan in apply, from its live groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// Already in exactly the isolation group: an earlier attempt finished it.
    /// Passing it through allow-all again would only re-open it.
    Done,
    /// Straight to the isolation group (already in the untrack group, or not cutting).
    Isolate,
    /// Untrack group first, then the isolation group.
    Both,
    /// Deleted since the pre-state was read: nothing left to isolate.
    Gone,
}

fn plan_swap(live: Option<&[String]>, groups: &VpcGroups) -> Swap {
    match live {
        None => Swap::Gone,
        Some(live) if live == [groups.isolation_group_id.clone()] => Swap::Done,
        Some(live) => match &groups.untrack_group_id {
            Some(untrack) if live != [untrack.clone()] => Swap::Both,
            _ => Swap::Isolate,
        },
    }
}

fn describe_lines(p: &Params, pre: &IsolationPreState) -> Vec<String> {
    let name = &p.isolation_group_name;
    let untrack = untrack_group_name(name);
    let create = ops::EC2_CREATE_SECURITY_GROUP.iam_action;
    let revoke = ops::EC2_REVOKE_SECURITY_GROUP_EGRESS.iam_action;
    let authorize_in = ops::EC2_AUTHORIZE_SECURITY_GROUP_INGRESS.iam_action;
    let authorize_out = ops::EC2_AUTHORIZE_SECURITY_GROUP_EGRESS.iam_action;
    let swap = ops::EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.iam_action;
    let mut lines = Vec::new();
    for vpc in distinct_vpcs(&pre.interfaces) {
        lines.push(format!(
            "{create} {name} in {vpc} tagged {ROLE_TAG}={ISOLATION_ROLE}, then {revoke} of its default rule (only if absent; otherwise reused)"
        ));
        if p.cut_tracked_connections {
            lines.push(format!(
                "{create} {untrack} in {vpc} tagged {ROLE_TAG}={UNTRACK_ROLE}, then {authorize_in} and {authorize_out} all traffic {ANY_V4} and {ANY_V6} (only if absent; otherwise reused)"
            ));
        }
    }
    if p.cut_tracked_connections {
        for eni in &pre.interfaces {
            lines.push(format!(
                "{swap} {} groups=[{untrack} of {}]",
                eni.network_interface_id, eni.vpc_id
            ));
        }
    }
    for eni in &pre.interfaces {
        lines.push(format!(
            "{swap} {} groups=[{name} of {}]",
            eni.network_interface_id, eni.vpc_id
        ));
    }
    lines
}

/// One ENI's part in apply: the ENI, its VPC's groups and its swap.
type SwapPlan<'a> = (&'a InterfaceGroups, &'a VpcGroups, Swap);

/// Each ENI's groups as they read now, by ENI id (deleted ENIs are absent).
async fn live_groups(
    ctx: Ctx<'_>,
    interfaces: &[InterfaceGroups],
) -> Result<BTreeMap<String, Vec<String>>, ActionError> {
    let ids: Vec<String> = interfaces
        .iter()
        .map(|i| i.network_interface_id.clone())
        .collect();
    Ok(network_interfaces_by_id(ctx, &ids)
        .await?
        .iter()
        .map(|n| {
            (
                n.network_interface_id().unwrap_or_default().to_string(),
                interface_group_ids(n),
            )
        })
        .collect())
}

/// Decides each ENI's swap from its live groups; ENIs of a VPC without
/// groups (never: every VPC of the pre-state gets them) are left out.
fn plan_swaps<'a>(
    pre: &'a IsolationPreState,
    groups: &'a [VpcGroups],
    live: &BTreeMap<String, Vec<String>>,
) -> Vec<SwapPlan<'a>> {
    let by_vpc: BTreeMap<&str, &VpcGroups> =
        groups.iter().map(|g| (g.vpc_id.as_str(), g)).collect();
    pre.interfaces
        .iter()
        .filter_map(|eni| {
            let g = by_vpc.get(eni.vpc_id.as_str())?;
            let swap = plan_swap(live.get(&eni.network_interface_id).map(Vec::as_slice), g);
            Some((eni, *g, swap))
        })
        .collect()
}

/// Phase 1: every ENI that needs it into the allow-all group, at once.
async fn pass_through_untrack(
    ctx: Ctx<'_>,
    plans: &[SwapPlan<'_>],
) -> Vec<Result<(), ActionError>> {
    join_all(
        plans
            .iter()
            .map(|(eni, g, swap)| async move {
                match (swap, &g.untrack_group_id) {
                    (Swap::Both, Some(untrack)) => {
                        set_groups(
                            ctx,
                            &eni.network_interface_id,
                            std::slice::from_ref(untrack),
                        )
                        .await
                    }
                    _ => Ok(()),
                }
            })
            .collect(),
    )
    .await
}

/// Phase 2: every ENI whose phase 1 went through into the isolation group.
/// An ENI that cannot be isolated is put back in its own groups rather than
/// left in the allow-all group.
async fn move_to_isolation(
    ctx: Ctx<'_>,
    plans: &[SwapPlan<'_>],
    phase1: &[Result<(), ActionError>],
) -> Vec<Result<(), ActionError>> {
    join_all(
        plans
            .iter()
            .zip(phase1)
            .map(|((eni, g, swap), first)| async move {
                if !matches!((swap, first), (Swap::Both | Swap::Isolate, Ok(()))) {
                    return Ok(());
                }
                let id = &eni.network_interface_id;
                let isolated =
                    set_groups(ctx, id, std::slice::from_ref(&g.isolation_group_id)).await;
                if isolated.is_err()
                    && let Err(back) = set_groups(ctx, id, &eni.security_group_ids).await
                {
                    warn!(eni = %id, error = %back, "could not move the ENI out of the allow-all group");
                }
                isolated
            })
            .collect(),
    )
    .await
}

/// Each ENI's result from its plan and its two phases, and the failures.
fn interface_results(
    plans: &[SwapPlan<'_>],
    live: &BTreeMap<String, Vec<String>>,
    phase1: Vec<Result<(), ActionError>>,
    phase2: Vec<Result<(), ActionError>>,
) -> (Vec<InterfaceResult>, Vec<ActionError>) {
    let mut interfaces = Vec::new();
    let mut errors = Vec::new();
    for (((eni, g, swap), first), second) in plans.iter().zip(phase1).zip(phase2) {
        let failed = first.err().or(second.err());
        let (groups_after, note) = match (swap, &failed) {
            (_, Some(_)) => (
                live.get(&eni.network_interface_id)
                    .cloned()
                    .unwrap_or_default(),
                Some("failed".to_string()),
            ),
            (Swap::Gone, None) => (
                Vec::new(),
                Some("deleted since the pre-state was read".to_string()),
            ),
            (Swap::Done, None) => (
                vec![g.isolation_group_id.clone()],
                Some("already isolated by an earlier attempt".to_string()),
            ),
            _ => (vec![g.isolation_group_id.clone()], None),
        };
        interfaces.push(InterfaceResult {
            network_interface_id: eni.network_interface_id.clone(),
            vpc_id: eni.vpc_id.clone(),
            groups_before: eni.security_group_ids.clone(),
            passed_through: match swap {
                Swap::Both if failed.is_none() => g.untrack_group_id.clone(),
                _ => None,
            },
            groups_after,
            note,
        });
        errors.extend(failed);
    }
    (interfaces, errors)
}

impl Handler for IsolateInstance {
    type Params = Params;
    type PreState = IsolationPreState;
    type Outcome = IsolationOutcome;
    type Undone = IsolationUndone;

    /// Reads every ENI attached to the instance now (DescribeNetworkInterfaces
    /// by attachment, not the finding's list), concurrently with the instance
    /// describe that turns a missing or terminated instance into a clear error.
    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<IsolationPreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let (instance, enis) = tokio::join!(
            describe_instance(ctx, instance_id),
            instance_network_interfaces(ctx, instance_id)
        );
        let instance = instance?;
        let enis = enis?;
        let interfaces: Vec<InterfaceGroups> = enis
            .iter()
            .map(interface_groups)
            .collect::<Result<_, _>>()?;
        // Both reads must agree on the ENI set; a gap means one is stale.
        let listed: BTreeSet<&str> = interfaces
            .iter()
            .map(|i| i.network_interface_id.as_str())
            .collect();
        if let Some(missing) = instance
            .network_interfaces()
            .iter()
            .filter_map(|n| n.network_interface_id())
            .find(|id| !listed.contains(id))
        {
            return Err(ActionError::new(
                ErrorKind::Conflict,
                instance_id,
                format!(
                    "network interface {missing} is attached but not yet listed by {}",
                    ops::EC2_DESCRIBE_NETWORK_INTERFACES
                ),
                "EC2 is eventually consistent; the step is retried",
            ));
        }
        if interfaces.is_empty() {
            return Err(ActionError::new(
                ErrorKind::InvalidState,
                instance_id,
                "instance has no network interface attached: there is nothing to isolate",
                "check the instance's state; if it is stopped with no ENI, skip this step",
            ));
        }
        Ok(IsolationPreState {
            instance_id: instance_id.clone(),
            interfaces,
        })
    }

    /// Finds or creates the groups and, concurrently, re-reads each ENI's
    /// groups; then swaps all ENIs to the untrack group at once, then all to
    /// the isolation group. The isolation group is ready before any ENI moves,
    /// so no ENI is left in the allow-all group if group set-up fails; if the
    /// second swap fails for an ENI, it is put back to its own groups rather
    /// than left open.
    async fn apply(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &IsolationPreState,
    ) -> Result<IsolationOutcome, ActionError> {
        let vpcs = distinct_vpcs(&pre.interfaces);
        let (groups, live) = tokio::join!(
            ensure_groups(ctx, p, &vpcs),
            live_groups(ctx, &pre.interfaces)
        );
        let (groups, live) = (groups?, live?);
        let plans = plan_swaps(pre, &groups, &live);
        let phase1 = pass_through_untrack(ctx, &plans).await;
        let phase2 = move_to_isolation(ctx, &plans, &phase1).await;
        let (interfaces, errors) = interface_results(&plans, &live, phase1, phase2);
        if let Some(first) = errors.into_iter().next() {
            let isolated = interfaces
                .iter()
                .filter(|i| i.note.as_deref() != Some("failed"))
                .count();
            return Err(ActionError {
                message: format!(
                    "{} ({isolated} of {} network interfaces isolated; the rest keep their own groups)",
                    first.message,
                    interfaces.len()
                ),
                ..first
            });
        }
        Ok(IsolationOutcome {
            groups,
            interfaces,
            still_tracked: STILL_TRACKED.to_string(),
        })
    }

    /// Every ENI attached now (not only those in the pre-state) must be in
    /// exactly its VPC's isolation group, and that group must have no rules.
    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IsolationPreState,
        outcome: &IsolationOutcome,
    ) -> Result<(), ActionError> {
        let group_ids: Vec<String> = outcome
            .groups
            .iter()
            .map(|g| g.isolation_group_id.clone())
            .collect();
        let (enis, groups) = tokio::join!(
            instance_network_interfaces(ctx, &pre.instance_id),
            groups_by_id(ctx, &group_ids)
        );
        let hint = "EC2 is eventually consistent; the step is retried, and if it persists check who else changes the ENI's groups";
        for eni in enis? {
            let id = eni.network_interface_id().unwrap_or_default();
            let vpc = eni.vpc_id().unwrap_or_default();
            let Some(g) = outcome.groups.iter().find(|g| g.vpc_id == vpc) else {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    id,
                    format!(
                        "network interface in {vpc} was attached after the pre-state was read, and is not isolated"
                    ),
                    "roll the case back and run it again so the new interface is recorded and isolated",
                ));
            };
            let have = interface_group_ids(&eni);
            if have != [g.isolation_group_id.clone()] {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    id,
                    format!(
                        "network interface is in [{}], not only in isolation group {}",
                        have.join(", "),
                        g.isolation_group_id
                    ),
                    hint,
                ));
            }
        }
        let groups = groups?;
        for id in &group_ids {
            let Some(group) = groups.iter().find(|g| g.group_id() == Some(id)) else {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    id,
                    "isolation group not found",
                    "EC2 is eventually consistent; the step is retried",
                ));
            };
            if !group.ip_permissions().is_empty() || !group.ip_permissions_egress().is_empty() {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    id,
                    format!(
                        "isolation group has rules (ingress: {}; egress: {})",
                        rule_summary(group.ip_permissions()).join(", "),
                        rule_summary(group.ip_permissions_egress()).join(", ")
                    ),
                    "remove every rule from the isolation group; someone changed it while the case ran",
                ));
            }
        }
        Ok(())
    }

    /// Puts each ENI back in its own original groups (ENIs already there are
    /// left alone, so a half-applied or already-undone state is fine). The
    /// isolation and untrack groups are kept: they are shared by every case
    /// in the VPC and reused by the next one.
    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IsolationPreState,
        _outcome: Option<&IsolationOutcome>,
    ) -> Result<IsolationUndone, ActionError> {
        let live = live_groups(ctx, &pre.interfaces).await?;
        let mut restored = Vec::new();
        let mut already = Vec::new();
        let mut gone = Vec::new();
        let mut calls: Vec<BoxedCall<'_, ()>> = Vec::new();
        for eni in &pre.interfaces {
            match live.get(&eni.network_interface_id) {
                None => gone.push(eni.network_interface_id.clone()),
                Some(now) if as_set(now) == as_set(&eni.security_group_ids) => {
                    already.push(eni.network_interface_id.clone())
                }
                Some(_) => {
                    restored.push(eni.network_interface_id.clone());
                    calls.push(Box::pin(set_groups(
                        ctx,
                        &eni.network_interface_id,
                        &eni.security_group_ids,
                    )));
                }
            }
        }
        try_join_all(calls).await?;
        if !gone.is_empty() {
            warn!(interfaces = ?gone, "network interfaces deleted since isolation; nothing to restore on them");
        }
        Ok(IsolationUndone {
            restored,
            already_restored: already,
            gone,
            groups_kept:
                "the isolation groups stay: they are shared per VPC and reused by later cases"
                    .to_string(),
        })
    }

    /// Each ENI's groups equal its pre-state groups, as sets. ENIs deleted
    /// since (the instance terminated, say) have nothing to restore and are
    /// not counted against the rollback.
    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IsolationPreState,
    ) -> Result<(), ActionError> {
        let live = live_groups(ctx, &pre.interfaces).await?;
        for eni in &pre.interfaces {
            let Some(now) = live.get(&eni.network_interface_id) else {
                continue;
            };
            if as_set(now) != as_set(&eni.security_group_ids) {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &eni.network_interface_id,
                    format!(
                        "network interface is in [{}], but was in [{}] before the case",
                        now.join(", "),
                        eni.security_group_ids.join(", ")
                    ),
                    "rollback retries; if it persists set the groups back by hand (see the step's pre-state)",
                ));
            }
        }
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, p: &Params, pre: &IsolationPreState) -> Vec<String> {
        describe_lines(p, pre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(untrack: Option<&str>) -> VpcGroups {
        VpcGroups {
            vpc_id: "vpc-1".into(),
            isolation_group_id: "sg-iso".into(),
            untrack_group_id: untrack.map(str::to_string),
            created: vec![],
            repaired: vec![],
        }
    }

    /// Every object key in `value`, however deep.
    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    out.push(key.clone());
                    keys(inner, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn journaled_values_read_snake_case_and_write_kebab_case() {
        let old = serde_json::json!({
            "groups": [{"vpc_id": "vpc-1", "isolation_group_id": "sg-iso",
                        "untrack_group_id": "sg-open", "created": [], "repaired": []}],
            "interfaces": [{"network_interface_id": "eni-1", "vpc_id": "vpc-1",
                            "groups_before": ["sg-a"], "passed_through": "sg-open",
                            "groups_after": ["sg-iso"], "note": null}],
            "still_tracked": "ICMP",
        });
        let outcome: IsolationOutcome = serde_json::from_value(old).expect("v1 outcome");
        assert_eq!(outcome.groups[0].isolation_group_id, "sg-iso");
        assert_eq!(
            outcome.interfaces[0].passed_through.as_deref(),
            Some("sg-open")
        );
        let written = serde_json::to_value(&outcome).expect("encodes");
        let mut names = Vec::new();
        keys(&written, &mut names);
        assert!(names.iter().all(|k| !k.contains('_')), "{names:?}");
        assert_eq!(written["groups"][0]["isolation-group-id"], "sg-iso");
        let back: IsolationOutcome = serde_json::from_value(written).expect("v2 outcome");
        assert_eq!(back, outcome);
    }

    #[test]
    fn swap_plan_never_reopens_an_isolated_interface() {
        let g = groups(Some("sg-open"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(plan_swap(Some(&s(&["sg-iso"])), &g), Swap::Done);
        assert_eq!(plan_swap(Some(&s(&["sg-open"])), &g), Swap::Isolate);
        assert_eq!(plan_swap(Some(&s(&["sg-a", "sg-b"])), &g), Swap::Both);
        assert_eq!(plan_swap(Some(&s(&["sg-iso", "sg-a"])), &g), Swap::Both);
        assert_eq!(plan_swap(None, &g), Swap::Gone);
        assert_eq!(plan_swap(Some(&s(&["sg-a"])), &groups(None)), Swap::Isolate);
    }

    #[test]
    fn allow_all_detection() {
        let rules = vec![any_traffic_v4()];
        assert!(allows_all(&rules, false));
        assert!(!allows_all(&rules, true));
        let tcp = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip(ANY_V4).build())
            .build();
        assert!(!allows_all(std::slice::from_ref(&tcp), false));
        assert_eq!(rule_summary(&[tcp]), vec!["tcp:22 0.0.0.0/0"]);
    }

    #[test]
    fn describe_lists_both_phases_per_interface() {
        let pre = IsolationPreState {
            instance_id: "i-1".into(),
            interfaces: vec![
                InterfaceGroups {
                    network_interface_id: "eni-1".into(),
                    vpc_id: "vpc-1".into(),
                    device_index: Some(0),
                    security_group_ids: vec!["sg-a".into()],
                },
                InterfaceGroups {
                    network_interface_id: "eni-2".into(),
                    vpc_id: "vpc-1".into(),
                    device_index: Some(1),
                    security_group_ids: vec!["sg-b".into()],
                },
            ],
        };
        let lines = describe_lines(&Params::default(), &pre);
        let swaps: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("ec2:ModifyNetworkInterfaceAttribute"))
            .collect();
        assert_eq!(
            swaps,
            vec![
                "ec2:ModifyNetworkInterfaceAttribute eni-1 groups=[cordon-isolation-untrack of vpc-1]",
                "ec2:ModifyNetworkInterfaceAttribute eni-2 groups=[cordon-isolation-untrack of vpc-1]",
                "ec2:ModifyNetworkInterfaceAttribute eni-1 groups=[cordon-isolation of vpc-1]",
                "ec2:ModifyNetworkInterfaceAttribute eni-2 groups=[cordon-isolation of vpc-1]",
            ]
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("ec2:CreateSecurityGroup"))
                .count(),
            2
        );
        assert!(lines.iter().all(|l| !l.contains("ModifyInstanceAttribute")));
    }
}
