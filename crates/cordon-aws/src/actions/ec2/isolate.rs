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
//!
//! # The window in the allow-all group
//!
//! Between the two swaps an ENI is open to the world. The phase boundaries
//! are journaled as progress records, durably, before each is crossed:
//! `{"phase": "untrack-begun", "network-interfaces": [...]}` before the
//! first swap, `{"phase": "isolation-done", ...}` once ENIs are in the
//! isolation group, `{"phase": "reverted", ...}` when the second swap failed
//! and ENIs were put back in their own groups. An ENI with `untrack-begun`
//! and neither of the others after it may be open ([`open_interfaces`]);
//! `status` flags it. The executor only stops between steps, so an
//! interrupted run always finishes the second phase. When the second swap
//! and the way back both fail, the error names exactly the ENIs left open.
//!
//! # Cordon's own groups are never anyone's original state
//!
//! An ENI found already in an isolation or untrack group (another case's, or
//! an earlier epoch's; recognised by name, the way cordon finds those groups
//! in every VPC) is recorded with its original groups *unknown*: it goes
//! straight to the isolation group (never through the allow-all one, since
//! there is nothing to revert it to), and rollback leaves it isolated rather
//! than "restoring" cordon's own containment, or worse, the allow-all group.
//! That holds for the first pre-state and for an amendment after drift (an
//! ENI attached since the pre-state was read: resume re-reads the instance,
//! journals the newcomers with their live groups, and re-applies).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, NetworkInterface, ResourceType, SecurityGroup, Tag,
    TagSpecification,
};
use cordon_core::action::IsolateInstance as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::{
    BoxedCall, Sent, attached_interfaces, describe_instance, filter, instance_network_interfaces,
    interface_group_ids, join_all, network_interfaces_by_id, read_instance, read_scope,
    send_reconciled, try_join_all,
};
use crate::actions::{Amended, Ctx, Handler};
use crate::call::items;
use crate::client::AwsClients;
use crate::ops;
use crate::read_cache::{EarlyAnswers, ReadCache, ReadTicket, Scope};

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
    /// Set when the ENI was found in one of cordon's own groups: its original
    /// groups are unknown, so it is isolated directly and rollback leaves it
    /// isolated. Says which group it was found in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_unknown: Option<String>,
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
    /// ENIs whose original groups are unknown (found in cordon's own groups):
    /// left in, or moved to, the isolation group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_isolated: Vec<String>,
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

/// Progress record: ENIs about to enter the allow-all group.
pub const PHASE_UNTRACK_BEGUN: &str = "untrack-begun";
/// Progress record: ENIs in the isolation group.
pub const PHASE_ISOLATION_DONE: &str = "isolation-done";
/// Progress record: ENIs put back in their own groups after the second swap failed.
pub const PHASE_REVERTED: &str = "reverted";

/// `{"phase": phase, "network-interfaces": ids}`.
fn phase_record(phase: &str, ids: &[String]) -> Value {
    json!({"phase": phase, "network-interfaces": ids})
}

/// The ENIs an `isolate-instance` step's progress records leave possibly
/// open: named by an `untrack-begun` record and by no `isolation-done` or
/// `reverted` record after it. Sorted; empty when every phase closed.
pub fn open_interfaces(progress: &[Value]) -> Vec<String> {
    let mut open = BTreeSet::new();
    for record in progress {
        let ids = record["network-interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        match record["phase"].as_str() {
            Some(PHASE_UNTRACK_BEGUN) => open.extend(ids.map(str::to_string)),
            Some(PHASE_ISOLATION_DONE | PHASE_REVERTED) => {
                for id in ids {
                    open.remove(id);
                }
            }
            _ => {}
        }
    }
    open.into_iter().collect()
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
pub(crate) fn allows_all(rules: &[IpPermission], v6: bool) -> bool {
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
pub(crate) fn rule_summary(rules: &[IpPermission]) -> Vec<String> {
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
    clients: &AwsClients,
    filters: Vec<Filter>,
    label: &str,
) -> Result<Vec<SecurityGroup>, ActionError> {
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
    clients: &AwsClients,
    vpcs: &[String],
    names: &[String],
) -> Result<Vec<SecurityGroup>, ActionError> {
    let filters = vec![filter("vpc-id", vpcs)?, filter("group-name", names)?];
    describe_groups(clients, filters, &vpcs.join(",")).await
}

async fn groups_by_id(ctx: Ctx<'_>, ids: &[String]) -> Result<Vec<SecurityGroup>, ActionError> {
    describe_groups(
        ctx.clients(),
        vec![filter("group-id", ids)?],
        &ids.join(","),
    )
    .await
}

/// What creating a group came to.
#[derive(Debug)]
enum Made {
    /// This call created it: a new group with EC2's default rules.
    Created(String),
    /// It exists already: found by the read that reconciled a timed-out
    /// attempt (`Some`), or answered `InvalidGroup.Duplicate` (`None`: look it up).
    Exists(Option<SecurityGroup>),
}

/// Creates a tagged group. `CreateSecurityGroup` is sent once per attempt
/// ([`ops::Op::send_once`]): after an attempt that may have created the group
/// without answering (a timeout), the group is looked up by name and VPC
/// first, and only sent again if it is not there ([`send_reconciled`]).
async fn create_group(
    ctx: Ctx<'_>,
    vpc_id: &str,
    name: &str,
    role: &str,
) -> Result<Made, ActionError> {
    let clients = ctx.clients();
    let description = match role {
        ISOLATION_ROLE => {
            "cordon isolation: no ingress, no egress. Shared by every instance cordon isolates in this VPC; do not add rules."
        }
        _ => {
            "cordon untrack: allow-all group an ENI passes through for a moment so its tracked connections are cut. Do not use."
        }
    };
    let op = &ops::EC2_CREATE_SECURITY_GROUP;
    let request = || {
        clients
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
            )
    };
    let find = || async {
        let found = find_groups(ctx.clients(), &[vpc_id.to_string()], &[name.to_string()]).await?;
        Ok(found.into_iter().next())
    };
    match send_reconciled(ctx, op, vpc_id, request, find).await? {
        Ok(Sent::Answered(out)) => out
            .group_id()
            .map(|id| Made::Created(id.to_string()))
            .ok_or_else(|| {
                ActionError::new(
                    ErrorKind::Other,
                    vpc_id,
                    format!("{op} for `{name}` returned no group id"),
                    "retry; if it persists, create the group by hand",
                )
            }),
        Ok(Sent::Found(group)) => Ok(Made::Exists(Some(group))),
        Err(e) if e.code() == Some("InvalidGroup.Duplicate") => Ok(Made::Exists(None)),
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
    // Another case of the same process (a burst) may have revoked the same
    // default rule a moment earlier: a rule already gone is what this wants
    // (some endpoints answer InvalidPermission.NotFound instead of success).
    match clients
        .try_call(&ops::EC2_REVOKE_SECURITY_GROUP_EGRESS, group_id, request)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("InvalidPermission.NotFound") => Ok(()),
        Err(e) => Err(e.into()),
    }
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
            Made::Created(id) => {
                // A new group allows all egress; isolation allows none.
                revoke_egress(ctx, &id, vec![any_traffic_v4(), any_traffic_v6()]).await?;
                return Ok((id, true, Vec::new()));
            }
            Made::Exists(Some(group)) => Some(group),
            // Lost a creation race to another worker: use its group.
            Made::Exists(None) => {
                find_groups(ctx.clients(), &[vpc_id.to_string()], &[name.to_string()])
                    .await?
                    .into_iter()
                    .next()
            }
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
            Made::Created(id) => (id, true, Vec::new(), vec![any_traffic_v4()]),
            Made::Exists(Some(group)) => (
                group.group_id().unwrap_or_default().to_string(),
                false,
                group.ip_permissions().to_vec(),
                group.ip_permissions_egress().to_vec(),
            ),
            Made::Exists(None) => {
                let group = find_groups(ctx.clients(), &[vpc_id.to_string()], &[name.to_string()])
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

/// The names of cordon's groups a step with `p` uses in each VPC.
fn group_names(p: &Params) -> Vec<String> {
    let mut names = vec![p.isolation_group_name.clone()];
    if p.cut_tracked_connections {
        names.push(untrack_group_name(&p.isolation_group_name));
    }
    names
}

/// Looks up `names` in `vpcs` (one filtered DescribeSecurityGroups) and
/// keeps what it found, present or absent, in the read cache.
async fn look_up_groups(
    ctx: Ctx<'_>,
    vpcs: &[String],
    names: &[String],
) -> Result<Vec<SecurityGroup>, ActionError> {
    let reads = &ctx.clients().reads;
    let scope = read_scope(ctx);
    let ids: Vec<&str> = vpcs.iter().map(String::as_str).collect();
    let ticket = reads.begin(&ids);
    let found = find_groups(ctx.clients(), vpcs, names).await;
    if let Ok(found) = &found {
        for (vpc, name, group) in pair_groups(found, vpcs, names) {
            reads.store_group(&ticket, &scope, vpc, name, group);
        }
    }
    reads.end(ticket);
    found
}

/// Every (VPC, group name) asked about, with the group of `found` it names,
/// `None` when there is none.
fn pair_groups<'a>(
    found: &'a [SecurityGroup],
    vpcs: &'a [String],
    names: &'a [String],
) -> impl Iterator<Item = (&'a String, &'a String, Option<&'a SecurityGroup>)> {
    vpcs.iter().flat_map(move |vpc| {
        names.iter().map(move |name| {
            let group = found
                .iter()
                .find(|g| g.vpc_id() == Some(vpc) && g.group_name() == Some(name));
            (vpc, name, group)
        })
    })
}

/// The groups `names` in `vpcs` that exist: from the read cache where a
/// lookup (the pre-state's, usually) left every one of a VPC's groups,
/// present or absent; one DescribeSecurityGroups for the other VPCs.
async fn known_groups(
    ctx: Ctx<'_>,
    vpcs: &[String],
    names: &[String],
) -> Result<Vec<SecurityGroup>, ActionError> {
    let reads = &ctx.clients().reads;
    let scope = read_scope(ctx);
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for vpc in vpcs {
        let cached: Option<Vec<Option<SecurityGroup>>> = names
            .iter()
            .map(|name| reads.group(&scope, vpc, name))
            .collect();
        match cached {
            Some(groups) => known.extend(groups.into_iter().flatten()),
            None => unknown.push(vpc.clone()),
        }
    }
    if !unknown.is_empty() {
        known.extend(look_up_groups(ctx, &unknown, names).await?);
    }
    Ok(known)
}

/// Drops the cached groups of `vpcs`, so the next attempt looks them up:
/// after a failure, a cached group may be what went wrong (deleted since).
fn forget_groups(ctx: Ctx<'_>, p: &Params, vpcs: &[String]) {
    let scope = read_scope(ctx);
    for vpc in vpcs {
        for name in group_names(p) {
            ctx.clients().reads.forget_group(&scope, vpc, &name);
        }
    }
}

/// The instance's attached ENIs, kept in the read cache for apply.
async fn read_interfaces_for_reuse(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<NetworkInterface>, ActionError> {
    let reads = &ctx.clients().reads;
    let ticket = reads.begin(&[instance_id]);
    match instance_network_interfaces(ctx, instance_id).await {
        Ok(enis) => {
            reads.store_interfaces(ticket, &read_scope(ctx), instance_id, &enis);
            Ok(enis)
        }
        Err(e) => {
            reads.end(ticket);
            Err(e)
        }
    }
}

/// Each pre-state ENI's groups from the pre-state's own read, when it is
/// still in the cache (nothing changed those ENIs since) and covers them all.
fn reused_live_groups(
    ctx: Ctx<'_>,
    pre: &IsolationPreState,
) -> Option<BTreeMap<String, Vec<String>>> {
    let enis = ctx
        .clients()
        .reads
        .take_interfaces(&read_scope(ctx), &pre.instance_id)?;
    let live: BTreeMap<String, Vec<String>> = enis
        .iter()
        .filter_map(|eni| {
            Some((
                eni.network_interface_id()?.to_string(),
                interface_group_ids(eni),
            ))
        })
        .collect();
    pre.interfaces
        .iter()
        .all(|i| live.contains_key(&i.network_interface_id))
        .then_some(live)
}

/// Finds or creates the groups of every VPC: one DescribeSecurityGroups for
/// all of them (none when the pre-state's lookup is cached), then each
/// VPC's (and each group's) set-up concurrently.
async fn ensure_groups(
    ctx: Ctx<'_>,
    p: &Params,
    vpcs: &[String],
) -> Result<Vec<VpcGroups>, ActionError> {
    let untrack_name = untrack_group_name(&p.isolation_group_name);
    let names = group_names(p);
    let found = known_groups(ctx, vpcs, &names).await?;
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

/// The ENI's groups as its pre-state; when it sits in one of cordon's own
/// groups for `p` (found by name, as cordon finds them), its original groups
/// are recorded as unknown rather than as that group.
fn interface_groups(eni: &NetworkInterface, p: &Params) -> Result<InterfaceGroups, ActionError> {
    let untrack = untrack_group_name(&p.isolation_group_name);
    let ours = eni.groups().iter().find(|g| {
        g.group_name()
            .is_some_and(|n| n == p.isolation_group_name || n == untrack)
    });
    let original_unknown = ours.map(|g| {
        format!(
            "found in cordon's group {} ({}): its own groups are unknown, so rollback leaves it isolated",
            g.group_id().unwrap_or_default(),
            g.group_name().unwrap_or_default()
        )
    });
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
        original_unknown,
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

/// An ENI whose original groups are unknown never passes through the
/// allow-all group: there would be nothing to put it back to.
fn plan_swap(live: Option<&[String]>, groups: &VpcGroups, original_known: bool) -> Swap {
    match live {
        None => Swap::Gone,
        Some(live) if live == [groups.isolation_group_id.clone()] => Swap::Done,
        Some(live) => match &groups.untrack_group_id {
            Some(untrack) if original_known && live != [untrack.clone()] => Swap::Both,
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
        for eni in pre
            .interfaces
            .iter()
            .filter(|e| e.original_unknown.is_none())
        {
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
            let swap = plan_swap(
                live.get(&eni.network_interface_id).map(Vec::as_slice),
                g,
                eni.original_unknown.is_none(),
            );
            Some((eni, *g, swap))
        })
        .collect()
}

/// Where one ENI ended up after apply.
#[derive(Debug)]
enum Landing {
    /// In exactly the isolation group (now, or since an earlier attempt).
    Isolated,
    /// Deleted since the pre-state was read.
    Gone,
    /// Not isolated, and never left its own groups.
    Failed(ActionError),
    /// Not isolated; put back in its own groups.
    Reverted(ActionError),
    /// Not isolated and possibly still in the allow-all group: the way back
    /// failed too (`revert`), or there is no known way back.
    Open {
        error: ActionError,
        revert: Option<ActionError>,
    },
}

/// Puts an ENI whose isolation failed back in its own groups, or says it is open.
async fn revert(ctx: Ctx<'_>, eni: &InterfaceGroups, error: ActionError) -> Landing {
    if eni.original_unknown.is_some() {
        return Landing::Open {
            error,
            revert: None,
        };
    }
    match set_groups(ctx, &eni.network_interface_id, &eni.security_group_ids).await {
        Ok(()) => Landing::Reverted(error),
        Err(back) => Landing::Open {
            error,
            revert: Some(back),
        },
    }
}

/// Both phases, every ENI at once, each ENI on its own: into the allow-all
/// group when it needs to pass through it, then into the isolation group as
/// soon as that answered (not after every other ENI's first swap). An ENI
/// that cannot be isolated after it entered (or may have entered) the
/// allow-all group is put back in its own groups rather than left open.
async fn swap_interfaces(
    ctx: Ctx<'_>,
    plans: &[SwapPlan<'_>],
    live: &BTreeMap<String, Vec<String>>,
) -> Vec<Landing> {
    join_all(
        plans
            .iter()
            .map(|(eni, g, swap)| async move {
                let id = &eni.network_interface_id;
                let first = match (swap, &g.untrack_group_id) {
                    (Swap::Both, Some(untrack)) => {
                        set_groups(ctx, id, std::slice::from_ref(untrack)).await
                    }
                    _ => Ok(()),
                };
                match (swap, first) {
                    (Swap::Done, _) => Landing::Isolated,
                    (Swap::Gone, _) => Landing::Gone,
                    // The first swap may have gone through before failing (a
                    // timeout, say): put the ENI back to be sure.
                    (Swap::Both, Err(e)) => revert(ctx, eni, e).await,
                    (Swap::Both | Swap::Isolate, Ok(())) => {
                        let isolated =
                            set_groups(ctx, id, std::slice::from_ref(&g.isolation_group_id)).await;
                        let Err(e) = isolated else {
                            return Landing::Isolated;
                        };
                        let was_open = *swap == Swap::Both
                            || g.untrack_group_id.as_ref().is_some_and(|untrack| {
                                live.get(id).is_some_and(|now| now.contains(untrack))
                            });
                        if was_open {
                            revert(ctx, eni, e).await
                        } else {
                            Landing::Failed(e)
                        }
                    }
                    // Phase 1 makes no call for an ENI going straight to isolation.
                    (Swap::Isolate, Err(e)) => Landing::Failed(e),
                }
            })
            .collect(),
    )
    .await
}

/// Each ENI's result, from its plan and where it landed.
fn interface_result(
    (eni, g, swap): &SwapPlan<'_>,
    landing: &Landing,
    live: &BTreeMap<String, Vec<String>>,
) -> InterfaceResult {
    let before = || {
        live.get(&eni.network_interface_id)
            .cloned()
            .unwrap_or_default()
    };
    let (groups_after, note) = match landing {
        Landing::Isolated => (
            vec![g.isolation_group_id.clone()],
            match (swap, &eni.original_unknown) {
                (Swap::Done, _) => Some("already isolated by an earlier attempt".to_string()),
                (_, Some(why)) => Some(why.clone()),
                _ => None,
            },
        ),
        Landing::Gone => (
            Vec::new(),
            Some("deleted since the pre-state was read".to_string()),
        ),
        Landing::Failed(_) => (before(), Some("failed".to_string())),
        Landing::Reverted(_) => (
            eni.security_group_ids.clone(),
            Some("failed; put back in its own groups".to_string()),
        ),
        Landing::Open { .. } => (
            before(),
            Some("failed; OPEN: may still be in the allow-all group".to_string()),
        ),
    };
    InterfaceResult {
        network_interface_id: eni.network_interface_id.clone(),
        vpc_id: eni.vpc_id.clone(),
        groups_before: eni.security_group_ids.clone(),
        passed_through: match (swap, landing) {
            (Swap::Both, Landing::Isolated) => g.untrack_group_id.clone(),
            _ => None,
        },
        groups_after,
        note,
    }
}

/// The ids of the ENIs whose landing `pick` selects.
fn landed(plans: &[SwapPlan<'_>], landings: &[Landing], pick: fn(&Landing) -> bool) -> Vec<String> {
    plans
        .iter()
        .zip(landings)
        .filter(|(_, l)| pick(l))
        .map(|((eni, _, _), _)| eni.network_interface_id.clone())
        .collect()
}

/// The step's error when any ENI was not isolated: the ENIs left open first,
/// by name, since every second they stay open counts.
fn isolation_error(
    plans: &[SwapPlan<'_>],
    landings: Vec<Landing>,
    isolated: usize,
) -> Option<ActionError> {
    let total = landings.len();
    let open = landed(plans, &landings, |l| matches!(l, Landing::Open { .. }));
    let untrack: BTreeSet<&str> = plans
        .iter()
        .filter_map(|(_, g, _)| g.untrack_group_id.as_deref())
        .collect();
    let mut first_revert = None;
    let mut first = None;
    for landing in landings {
        match landing {
            Landing::Open { error, revert } => {
                first_revert = first_revert.or(revert);
                first = first.or(Some(error));
            }
            Landing::Failed(error) | Landing::Reverted(error) => first = first.or(Some(error)),
            Landing::Isolated | Landing::Gone => {}
        }
    }
    let first = first?;
    if open.is_empty() {
        return Some(ActionError {
            message: format!(
                "{} ({isolated} of {total} network interfaces isolated; the rest keep their own groups)",
                first.message
            ),
            ..first
        });
    }
    let back = first_revert.map_or_else(
        || "their own groups are unknown (they were found in cordon's groups)".to_string(),
        |e| format!("putting them back in their own groups failed too: {e}"),
    );
    Some(ActionError {
        resource: open.join(", "),
        message: format!(
            "network interfaces {} are OPEN, possibly still in the allow-all group {}: isolating them failed ({}), and {back} ({isolated} of {total} network interfaces isolated)",
            open.join(", "),
            untrack.into_iter().collect::<Vec<_>>().join(", "),
            first.message
        ),
        hint: format!(
            "move {} into the isolation group (or their own groups) by hand now, or resume the case at once; {}",
            open.join(", "),
            first.hint
        ),
        ..first
    })
}

/// Apply's work: the groups ready and each ENI's live groups known (both
/// from the pre-state's reads when cached, else read now, concurrently),
/// then every ENI swapped, each phase boundary journaled first.
async fn isolate(
    ctx: Ctx<'_>,
    p: &Params,
    pre: &IsolationPreState,
    vpcs: &[String],
) -> Result<IsolationOutcome, ActionError> {
    let reused = reused_live_groups(ctx, pre);
    let (groups, live) = tokio::join!(ensure_groups(ctx, p, vpcs), async {
        match reused {
            Some(live) => Ok(live),
            None => live_groups(ctx, &pre.interfaces).await,
        }
    });
    let (groups, live) = (groups?, live?);

    let plans = plan_swaps(pre, &groups, &live);
    let entering: Vec<String> = plans
        .iter()
        .filter(|(_, g, swap)| *swap == Swap::Both && g.untrack_group_id.is_some())
        .map(|(eni, _, _)| eni.network_interface_id.clone())
        .collect();
    if !entering.is_empty() {
        ctx.record_progress(phase_record(PHASE_UNTRACK_BEGUN, &entering))
            .await?;
    }
    let landings = swap_interfaces(ctx, &plans, &live).await;
    let interfaces: Vec<InterfaceResult> = plans
        .iter()
        .zip(&landings)
        .map(|(plan, landing)| interface_result(plan, landing, &live))
        .collect();
    let isolated = landed(&plans, &landings, |l| matches!(l, Landing::Isolated));
    let reverted = landed(&plans, &landings, |l| matches!(l, Landing::Reverted(_)));
    if !isolated.is_empty() {
        ctx.record_progress(phase_record(PHASE_ISOLATION_DONE, &isolated))
            .await?;
    }
    if !reverted.is_empty() {
        ctx.record_progress(phase_record(PHASE_REVERTED, &reverted))
            .await?;
    }
    if let Some(error) = isolation_error(&plans, landings, isolated.len()) {
        return Err(error);
    }
    Ok(IsolationOutcome {
        groups,
        interfaces,
        still_tracked: STILL_TRACKED.to_string(),
    })
}

/// The VPCs the finding names for the instance's ENIs (a head start only:
/// the pre-state reads the live ENIs).
/// The ids of the isolation and untrack groups the plan's isolate step uses
/// for `ctx`'s instance, as far as this process has looked them up (the
/// read cache): where the instance's ENIs are once isolated. A guess for a
/// step that reads the instance's groups alongside its ENIs; never a pre-state.
pub(super) fn known_isolation_group_ids(ctx: Ctx<'_>) -> Vec<String> {
    let Ok(target) = ctx.instance() else {
        return Vec::new();
    };
    let scope = read_scope(ctx);
    let reads = &ctx.clients().reads;
    let mut ids = Vec::new();
    for step in &ctx.plan.steps {
        let (
            cordon_core::action::Action::IsolateInstance(p),
            cordon_core::plan::Target::Instance(t),
        ) = (&step.action, &step.target)
        else {
            continue;
        };
        if t.instance_id != target.instance_id {
            continue;
        }
        for vpc in named_vpcs(t) {
            for name in group_names(p) {
                if let Some(Some(group)) = reads.group(&scope, &vpc, &name)
                    && let Some(id) = group.group_id()
                {
                    ids.push(id.to_string());
                }
            }
        }
    }
    ids
}

fn named_vpcs(target: &cordon_core::plan::InstanceTarget) -> Vec<String> {
    let vpcs: BTreeSet<String> = target
        .network_interfaces
        .iter()
        .filter_map(|eni| eni.vpc_id.as_ref().map(|v| v.as_str().to_string()))
        .collect();
    vpcs.into_iter().collect()
}

/// ENIs read before the case opened, if they can stand as the pre-state:
/// none may be in an isolation or untrack group. One that is may be held by
/// another case that was rolling back when they were read (its claim
/// released since), and a pre-state taken mid-rollback would make this
/// case's own rollback restore the wrong groups; the pre-state then reads
/// again, after this case's claims.
fn usable_early_interfaces(
    enis: Vec<NetworkInterface>,
    p: &Params,
) -> Option<Vec<NetworkInterface>> {
    let names = group_names(p);
    let in_cordon_group = enis.iter().any(|eni| {
        eni.groups()
            .iter()
            .any(|g| g.group_name().is_some_and(|n| names.iter().any(|c| c == n)))
    });
    (!in_cordon_group).then_some(enis)
}

/// The reads an isolation step's pre-state makes (the instance, its attached
/// ENIs, its VPCs' isolation groups), made alongside the caller-identity
/// check, before the case opens: for a finding in the caller's own account
/// and region (the common case) the first step's pre-state is then ready as
/// soon as the case has claimed its resources, one round trip sooner.
///
/// They are made with the caller's own clients before the case's account is
/// known, so [`EarlyReads::keep`] is for a case that turned out to act in
/// the caller's own account and region only; for any other they are dropped.
#[derive(Debug)]
pub struct EarlyReads {
    /// The cache of the clients that made them, where their ticket lives.
    cache: ReadCache,
    ticket: ReadTicket,
    answers: EarlyAnswers,
}

impl EarlyReads {
    /// The instance as read, for the protected-tag guard (`None`: the read
    /// failed or found no such instance; the guard then reads on its own).
    pub fn instance(&self) -> Option<&aws_sdk_ec2::types::Instance> {
        self.answers.instance.as_ref()
    }

    /// Keeps the reads for the case's pre-states in the read cache of
    /// `clients` (the case's, in the caller's own account), in `scope` (the
    /// finding's account and the case clients' region). The cache drops them
    /// if a mutating call named the instance, its ENIs or its VPCs since
    /// they were sent, and they stand for a few seconds only
    /// ([`crate::read_cache::INTERFACES_REUSE_WINDOW`]). Clients that do not
    /// share the cache they were made with get nothing.
    pub fn keep(self, clients: &AwsClients, scope: &Scope) {
        if clients.reads.shares(&self.cache) {
            self.cache.store_early(self.ticket, scope, self.answers);
        } else {
            self.cache.end(self.ticket);
        }
    }

    /// Drops the reads (a case in another account or region).
    pub fn drop_reads(self) {
        self.cache.end(self.ticket);
    }
}

/// Makes [`EarlyReads`] for `plan`'s isolation step, if it has one on an
/// instance: DescribeInstances, DescribeNetworkInterfaces by attachment and
/// one DescribeSecurityGroups for the isolation groups of the VPCs the
/// finding names, all at once. A failed read is left out (the pre-state
/// makes it again and reports its error).
pub async fn early_reads(
    clients: &AwsClients,
    plan: &cordon_core::plan::Plan,
) -> Option<EarlyReads> {
    let (p, target) = plan
        .steps
        .iter()
        .find_map(|step| match (&step.action, &step.target) {
            (
                cordon_core::action::Action::IsolateInstance(p),
                cordon_core::plan::Target::Instance(t),
            ) => Some((p, t)),
            _ => None,
        })?;
    let instance_id = target.instance_id.clone();
    let vpcs = named_vpcs(target);
    let names = group_names(p);
    let mut ids: Vec<&str> = vec![instance_id.as_str()];
    ids.extend(
        target
            .network_interfaces
            .iter()
            .map(|e| e.network_interface_id.as_str()),
    );
    ids.extend(vpcs.iter().map(String::as_str));
    let cache = clients.reads.clone();
    let ticket = cache.begin(&ids);
    let groups = async {
        if vpcs.is_empty() {
            return Vec::new();
        }
        let Ok(found) = find_groups(clients, &vpcs, &names).await else {
            return Vec::new();
        };
        pair_groups(&found, &vpcs, &names)
            .map(|(vpc, name, group)| (vpc.clone(), name.clone(), group.cloned()))
            .collect()
    };
    let (instance, interfaces, groups) = tokio::join!(
        async { read_instance(clients, &instance_id).await.ok().flatten() },
        async { attached_interfaces(clients, &instance_id).await.ok() },
        groups
    );
    Some(EarlyReads {
        cache,
        ticket,
        answers: EarlyAnswers {
            instance_id,
            instance,
            interfaces,
            groups,
        },
    })
}

impl Handler for IsolateInstance {
    type Params = Params;
    type PreState = IsolationPreState;
    type Outcome = IsolationOutcome;
    type Undone = IsolationUndone;

    /// Reads every ENI attached to the instance now (DescribeNetworkInterfaces
    /// by attachment, not the finding's list), concurrently with the instance
    /// describe that turns a missing or terminated instance into a clear error.
    async fn pre_state(ctx: Ctx<'_>, p: &Params) -> Result<IsolationPreState, ActionError> {
        let target = ctx.instance()?;
        let instance_id = &target.instance_id;
        let named_vpcs = named_vpcs(target);
        let scope = read_scope(ctx);
        let reads = &ctx.clients().reads;
        let early = reads
            .take_early_interfaces(&scope, instance_id)
            .and_then(|enis| usable_early_interfaces(enis, p));
        if early.is_none() {
            // Not used for the pre-state: not for apply either.
            let _ = reads.take_interfaces(&scope, instance_id);
        }
        let names = group_names(p);
        let groups_known = named_vpcs
            .iter()
            .all(|vpc| names.iter().all(|n| reads.group(&scope, vpc, n).is_some()));
        let (instance, enis, _) = tokio::join!(
            describe_instance(ctx, instance_id),
            async {
                match early {
                    Some(enis) => Ok(enis),
                    None => read_interfaces_for_reuse(ctx, instance_id).await,
                }
            },
            async {
                if named_vpcs.is_empty() || groups_known {
                    return;
                }
                // Only a head start for apply: if it fails, apply looks again.
                if let Err(e) = look_up_groups(ctx, &named_vpcs, &group_names(p)).await {
                    tracing::debug!(error = %e, "looking up the isolation groups early failed");
                }
            }
        );
        let instance = instance?;
        let enis = enis?;
        let interfaces: Vec<InterfaceGroups> = enis
            .iter()
            .map(|eni| interface_groups(eni, p))
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
    /// the isolation group, journaling each phase boundary first (see the
    /// module docs). The isolation group is ready before any ENI moves, so no
    /// ENI is left in the allow-all group if group set-up fails; if the
    /// second swap fails for an ENI, it is put back to its own groups rather
    /// than left open, and the error names any ENI that could not be.
    async fn apply(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &IsolationPreState,
    ) -> Result<IsolationOutcome, ActionError> {
        let vpcs = distinct_vpcs(&pre.interfaces);
        let applied = isolate(ctx, p, pre, &vpcs).await;
        if applied.is_err() {
            forget_groups(ctx, p, &vpcs);
        }
        applied
    }

    /// Every ENI attached now (not only those in the pre-state) must be in
    /// exactly its VPC's isolation group, that group must have no rules, and
    /// no ENI of the pre-state (attached or not) may be in an allow-all group.
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
        let enis = enis?;
        // The pre-state's ENIs still attached are in `enis`; only one detached
        // since needs its own read (one more round trip, rarely).
        let mut known: BTreeMap<String, Vec<String>> = enis
            .iter()
            .filter_map(|eni| {
                let id = eni.network_interface_id()?;
                Some((id.to_string(), interface_group_ids(eni)))
            })
            .collect();
        let detached: Vec<InterfaceGroups> = pre
            .interfaces
            .iter()
            .filter(|i| !known.contains_key(&i.network_interface_id))
            .cloned()
            .collect();
        if !detached.is_empty() {
            known.extend(live_groups(ctx, &detached).await?);
        }
        for (id, now) in known {
            if let Some(untrack) = outcome
                .groups
                .iter()
                .filter_map(|g| g.untrack_group_id.as_ref())
                .find(|u| now.contains(u))
            {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &id,
                    format!("network interface is OPEN: it is in the allow-all group {untrack}"),
                    "the step re-applies and moves it to the isolation group; if it persists, move it by hand now",
                ));
            }
        }
        let hint = "EC2 is eventually consistent; the step is retried, and if it persists check who else changes the ENI's groups";
        let recorded: BTreeSet<&str> = pre
            .interfaces
            .iter()
            .map(|i| i.network_interface_id.as_str())
            .collect();
        for eni in &enis {
            let id = eni.network_interface_id().unwrap_or_default();
            let vpc = eni.vpc_id().unwrap_or_default();
            let have = interface_group_ids(eni);
            let isolated = outcome
                .groups
                .iter()
                .find(|g| g.vpc_id == vpc)
                .filter(|g| have == [g.isolation_group_id.clone()]);
            if isolated.is_some() {
                continue;
            }
            if !recorded.contains(id) {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    id,
                    format!(
                        "network interface in {vpc} (groups [{}]) was attached after the pre-state was read, and is not isolated",
                        have.join(", ")
                    ),
                    "the step is retried: it re-reads the instance, records the new interface's groups and isolates it",
                ));
            }
            return Err(ActionError::new(
                ErrorKind::Verification,
                id,
                format!(
                    "network interface is in [{}], not only in its VPC's isolation group",
                    have.join(", ")
                ),
                hint,
            ));
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
    /// left alone, so a half-applied or already-undone state is fine). An ENI
    /// whose original groups are unknown stays isolated (and is moved there
    /// if an interrupted apply left it in the allow-all group). The isolation
    /// and untrack groups are kept: they are shared by every case in the VPC
    /// and reused by the next one.
    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IsolationPreState,
        outcome: Option<&IsolationOutcome>,
    ) -> Result<IsolationUndone, ActionError> {
        let live = live_groups(ctx, &pre.interfaces).await?;
        let mut restored = Vec::new();
        let mut already = Vec::new();
        let mut gone = Vec::new();
        let mut left_isolated = Vec::new();
        let mut calls: Vec<BoxedCall<'_, ()>> = Vec::new();
        for eni in &pre.interfaces {
            let id = &eni.network_interface_id;
            let Some(now) = live.get(id) else {
                gone.push(id.clone());
                continue;
            };
            if eni.original_unknown.is_some() {
                left_isolated.push(id.clone());
                let groups = outcome
                    .into_iter()
                    .flat_map(|o| &o.groups)
                    .find(|g| g.vpc_id == eni.vpc_id);
                if let Some(g) = groups
                    && g.untrack_group_id.as_ref().is_some_and(|u| now.contains(u))
                {
                    calls.push(Box::pin(set_groups(
                        ctx,
                        id,
                        std::slice::from_ref(&g.isolation_group_id),
                    )));
                }
                continue;
            }
            if as_set(now) == as_set(&eni.security_group_ids) {
                already.push(id.clone());
            } else {
                restored.push(id.clone());
                calls.push(Box::pin(set_groups(ctx, id, &eni.security_group_ids)));
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
            left_isolated,
            groups_kept:
                "the isolation groups stay: they are shared per VPC and reused by later cases"
                    .to_string(),
        })
    }

    /// Each ENI's groups equal its pre-state groups, as sets. ENIs deleted
    /// since (the instance terminated, say) have nothing to restore and are
    /// not counted against the rollback; ENIs whose original groups are
    /// unknown stay isolated by design.
    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IsolationPreState,
    ) -> Result<(), ActionError> {
        let live = live_groups(ctx, &pre.interfaces).await?;
        for eni in pre
            .interfaces
            .iter()
            .filter(|e| e.original_unknown.is_none())
        {
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

    /// ENIs attached since the pre-state was read, with their live groups
    /// (or "original unknown" when those are cordon's own); ENIs already in
    /// the pre-state are never re-read into it.
    async fn amend(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &IsolationPreState,
    ) -> Result<Option<Amended<IsolationPreState>>, ActionError> {
        let attached = instance_network_interfaces(ctx, &pre.instance_id).await?;
        let recorded: BTreeSet<&str> = pre
            .interfaces
            .iter()
            .map(|i| i.network_interface_id.as_str())
            .collect();
        let new: Vec<InterfaceGroups> = attached
            .iter()
            .filter(|eni| !recorded.contains(eni.network_interface_id().unwrap_or_default()))
            .map(|eni| interface_groups(eni, p))
            .collect::<Result<_, _>>()?;
        if new.is_empty() {
            return Ok(None);
        }
        let added = new.iter().map(|i| i.network_interface_id.clone()).collect();
        let mut amended = pre.clone();
        amended.interfaces.extend(new);
        Ok(Some(Amended {
            pre: amended,
            added,
        }))
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
        assert_eq!(plan_swap(Some(&s(&["sg-iso"])), &g, true), Swap::Done);
        assert_eq!(plan_swap(Some(&s(&["sg-open"])), &g, true), Swap::Isolate);
        assert_eq!(plan_swap(Some(&s(&["sg-a", "sg-b"])), &g, true), Swap::Both);
        assert_eq!(
            plan_swap(Some(&s(&["sg-iso", "sg-a"])), &g, true),
            Swap::Both
        );
        assert_eq!(plan_swap(None, &g, true), Swap::Gone);
        assert_eq!(
            plan_swap(Some(&s(&["sg-a"])), &groups(None), true),
            Swap::Isolate
        );
        // Nothing to put an ENI of unknown origin back to: never through allow-all.
        assert_eq!(
            plan_swap(Some(&s(&["sg-iso", "sg-a"])), &g, false),
            Swap::Isolate
        );
        assert_eq!(plan_swap(Some(&s(&["sg-iso"])), &g, false), Swap::Done);
    }

    #[test]
    fn open_interfaces_are_those_that_entered_allow_all_and_never_left() {
        let begun = phase_record(PHASE_UNTRACK_BEGUN, &["eni-1".into(), "eni-2".into()]);
        assert_eq!(
            open_interfaces(std::slice::from_ref(&begun)),
            vec!["eni-1", "eni-2"]
        );
        let done = phase_record(PHASE_ISOLATION_DONE, &["eni-1".into()]);
        assert_eq!(
            open_interfaces(&[begun.clone(), done.clone()]),
            vec!["eni-2"]
        );
        let reverted = phase_record(PHASE_REVERTED, &["eni-2".into()]);
        assert!(open_interfaces(&[begun.clone(), done.clone(), reverted.clone()]).is_empty());
        // A later attempt opening eni-1 again counts from its own record on.
        let again = phase_record(PHASE_UNTRACK_BEGUN, &["eni-1".into()]);
        assert_eq!(
            open_interfaces(&[begun, done, reverted, again]),
            vec!["eni-1"]
        );
        // Other steps' records (a key about to be created) are not about ENIs.
        assert!(
            open_interfaces(&[json!({"phase": "creating-key", "existing-keys": []})]).is_empty()
        );
        assert_eq!(
            serde_json::to_string(&phase_record(PHASE_UNTRACK_BEGUN, &["eni-9".into()])).unwrap(),
            r#"{"phase":"untrack-begun","network-interfaces":["eni-9"]}"#
        );
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
                    original_unknown: None,
                },
                InterfaceGroups {
                    network_interface_id: "eni-2".into(),
                    vpc_id: "vpc-1".into(),
                    device_index: Some(1),
                    security_group_ids: vec!["sg-b".into()],
                    original_unknown: None,
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
