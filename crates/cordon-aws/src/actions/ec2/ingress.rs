//! `revoke-open-ingress`: removes from one security group the ingress rules
//! open to the whole internet (`0.0.0.0/0`, `::/0`) that cover the ports the
//! step names, and nothing else.
//!
//! A rule covers a port when its protocol is all traffic (`-1`), or TCP or
//! UDP with the port inside its range. Only the world-open address range of
//! such a rule is revoked: the same rule's other ranges, referenced groups
//! and prefix lists stay. Each revoked range is recorded exactly (protocol,
//! port range, CIDR, description), and undo authorizes exactly those again.
//!
//! Undo re-opens the ports to the internet, so it needs a human's explicit
//! approval ([`cordon_core::action::Action::undo_gate`]); an automatic
//! rollback after a failure leaves the group closed.

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, SecurityGroup};
use cordon_core::action::RevokeOpenIngress as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::filter;
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::ops;

/// The `revoke-open-ingress` handler.
#[derive(Debug)]
pub struct RevokeOpenIngress;

const WORLD_V4: &str = "0.0.0.0/0";
const WORLD_V6: &str = "::/0";

/// One world-open ingress range, exactly as the group had it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OpenRule {
    /// `tcp`, `udp` or `-1` (all traffic), as EC2 reports it.
    pub protocol: String,
    /// First port (`-1` for all traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    /// Last port (`-1` for all traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    /// `0.0.0.0/0` or `::/0`.
    pub cidr: String,
    /// The rule's description, restored with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl OpenRule {
    /// The permission naming exactly this range (what revoke and authorize send).
    fn permission(&self) -> IpPermission {
        let mut permission = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        if self.cidr == WORLD_V6 {
            permission = permission.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(&self.cidr)
                    .set_description(self.description.clone())
                    .build(),
            );
        } else {
            permission = permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(&self.cidr)
                    .set_description(self.description.clone())
                    .build(),
            );
        }
        permission.build()
    }

    /// The same range, whatever its description: what revoke matches on.
    fn same_range(&self, other: &OpenRule) -> bool {
        self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.cidr == other.cidr
    }

    fn describe(&self) -> String {
        let ports = match (self.from_port, self.to_port) {
            (Some(from), Some(to)) if from == to => format!("{from}"),
            (Some(from), Some(to)) if from >= 0 => format!("{from}-{to}"),
            _ => "all".to_string(),
        };
        let description = self
            .description
            .as_deref()
            .map(|d| format!(" ({d:?})"))
            .unwrap_or_default();
        format!("{} {ports} from {}{description}", self.protocol, self.cidr)
    }
}

/// Whether a permission of `protocol` over `from..=to` lets `port` in.
fn covers(protocol: &str, from: Option<i32>, to: Option<i32>, port: u16) -> bool {
    let port = i32::from(port);
    match protocol {
        "-1" | "all" => true,
        "tcp" | "udp" | "6" | "17" => {
            from.is_some_and(|f| f <= port) && to.is_some_and(|t| port <= t)
        }
        _ => false,
    }
}

/// The world-open ranges of `group` whose permission `wanted` accepts
/// (by protocol and port range), sorted.
fn world_ranges(
    group: &SecurityGroup,
    wanted: impl Fn(&str, Option<i32>, Option<i32>) -> bool,
) -> Vec<OpenRule> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let protocol = permission.ip_protocol().unwrap_or_default();
        let (from, to) = (permission.from_port(), permission.to_port());
        if !wanted(protocol, from, to) {
            continue;
        }
        let v4 = permission
            .ip_ranges()
            .iter()
            .filter(|r| r.cidr_ip() == Some(WORLD_V4))
            .map(|r| (WORLD_V4, r.description()));
        let v6 = permission
            .ipv6_ranges()
            .iter()
            .filter(|r| r.cidr_ipv6() == Some(WORLD_V6))
            .map(|r| (WORLD_V6, r.description()));
        for (cidr, description) in v4.chain(v6) {
            rules.push(OpenRule {
                protocol: protocol.to_string(),
                from_port: from,
                to_port: to,
                cidr: cidr.to_string(),
                description: description.map(str::to_string),
            });
        }
    }
    rules.sort();
    rules
}

/// The world-open ranges of `group` covering any of `ports`.
fn open_rules(group: &SecurityGroup, ports: &[u16]) -> Vec<OpenRule> {
    world_ranges(group, |protocol, from, to| {
        ports.iter().any(|p| covers(protocol, from, to, *p))
    })
}

/// Every world-open range of the group, whatever its ports: which recorded
/// ranges are (still, or again) there.
fn all_open_rules(group: &SecurityGroup) -> Vec<OpenRule> {
    world_ranges(group, |_, _, _| true)
}

async fn describe_group(ctx: Ctx<'_>, group_id: &str) -> Result<SecurityGroup, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_security_groups()
        .filters(filter("group-id", [group_id])?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SECURITY_GROUPS, group_id, request)
        .await?;
    items(&pages, |page| page.security_groups())
        .into_iter()
        .find(|g| g.group_id() == Some(group_id))
        .ok_or_else(|| {
            ActionError::new(
                ErrorKind::NotFound,
                group_id,
                "security group not found",
                "check the finding's account and region match the credentials cordon runs with",
            )
        })
}

/// The group's world-open ingress on the step's ports, before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IngressPreState {
    pub group_id: String,
    /// The ports the step closes.
    pub ports: Vec<u16>,
    /// Exactly what apply revokes and undo authorizes again; empty when
    /// nothing was open.
    pub open_rules: Vec<OpenRule>,
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IngressOutcome {
    /// The ranges revoked now.
    pub revoked: Vec<String>,
}

/// What undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IngressUndone {
    /// The ranges authorized again now.
    pub restored: Vec<String>,
}

async fn revoke(ctx: Ctx<'_>, group_id: &str, rules: &[OpenRule]) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .revoke_security_group_ingress()
        .group_id(group_id)
        .set_ip_permissions(Some(rules.iter().map(OpenRule::permission).collect()));
    clients
        .call(&ops::EC2_REVOKE_SECURITY_GROUP_INGRESS, group_id, request)
        .await?;
    Ok(())
}

async fn authorize(ctx: Ctx<'_>, group_id: &str, rules: &[OpenRule]) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(group_id)
        .set_ip_permissions(Some(rules.iter().map(OpenRule::permission).collect()));
    clients
        .call(
            &ops::EC2_AUTHORIZE_SECURITY_GROUP_INGRESS,
            group_id,
            request,
        )
        .await?;
    Ok(())
}

fn lines(rules: &[OpenRule]) -> Vec<String> {
    rules.iter().map(OpenRule::describe).collect()
}

impl Handler for RevokeOpenIngress {
    type Params = Params;
    type PreState = IngressPreState;
    type Outcome = IngressOutcome;
    type Undone = IngressUndone;

    async fn pre_state(ctx: Ctx<'_>, p: &Params) -> Result<IngressPreState, ActionError> {
        let group_id = ctx.security_group()?;
        let group = describe_group(ctx, group_id).await?;
        Ok(IngressPreState {
            group_id: group_id.to_string(),
            ports: p.ports.clone(),
            open_rules: open_rules(&group, &p.ports),
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IngressPreState,
    ) -> Result<IngressOutcome, ActionError> {
        if pre.open_rules.is_empty() {
            return Ok(IngressOutcome { revoked: vec![] });
        }
        // Only what is still there: a re-apply after a crash must not fail
        // on a range the first attempt already revoked.
        let live = all_open_rules(&describe_group(ctx, &pre.group_id).await?);
        let still: Vec<OpenRule> = pre
            .open_rules
            .iter()
            .filter(|r| live.iter().any(|l| l.same_range(r)))
            .cloned()
            .collect();
        if !still.is_empty() {
            revoke(ctx, &pre.group_id, &still).await?;
        }
        Ok(IngressOutcome {
            revoked: lines(&still),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IngressPreState,
        _outcome: &IngressOutcome,
    ) -> Result<(), ActionError> {
        let group = describe_group(ctx, &pre.group_id).await?;
        let open = open_rules(&group, &pre.ports);
        if open.is_empty() {
            return Ok(());
        }
        Err(ActionError::new(
            ErrorKind::Verification,
            &pre.group_id,
            format!(
                "still open to the internet on ports {:?}: {}",
                pre.ports,
                lines(&open).join("; ")
            ),
            "the step is retried; if it persists check who else authorizes ingress on the group (a deployment tool re-adding the rule)",
        ))
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IngressPreState,
        _outcome: Option<&IngressOutcome>,
    ) -> Result<IngressUndone, ActionError> {
        if pre.open_rules.is_empty() {
            return Ok(IngressUndone { restored: vec![] });
        }
        let live = all_open_rules(&describe_group(ctx, &pre.group_id).await?);
        let missing: Vec<OpenRule> = pre
            .open_rules
            .iter()
            .filter(|r| !live.iter().any(|l| l.same_range(r)))
            .cloned()
            .collect();
        if !missing.is_empty() {
            authorize(ctx, &pre.group_id, &missing).await?;
        }
        Ok(IngressUndone {
            restored: lines(&missing),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &IngressPreState,
    ) -> Result<(), ActionError> {
        let live = all_open_rules(&describe_group(ctx, &pre.group_id).await?);
        let absent: Vec<&OpenRule> = pre
            .open_rules
            .iter()
            .filter(|r| !live.contains(r))
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        Err(ActionError::new(
            ErrorKind::Verification,
            &pre.group_id,
            format!(
                "not back as recorded: {}",
                absent
                    .iter()
                    .map(|r| r.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "rollback retries; if it persists authorize the rules by hand from the step's pre-state",
        ))
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &IngressPreState) -> Vec<String> {
        if pre.open_rules.is_empty() {
            return vec![];
        }
        vec![format!(
            "{} {} {}",
            ops::EC2_REVOKE_SECURITY_GROUP_INGRESS.iam_action,
            pre.group_id,
            lines(&pre.open_rules).join("; ")
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> SecurityGroup {
        let perm =
            |protocol: &str, from: i32, to: i32, v4: &[(&str, Option<&str>)], v6: &[&str]| {
                let mut p = IpPermission::builder()
                    .ip_protocol(protocol)
                    .from_port(from)
                    .to_port(to);
                for (cidr, description) in v4 {
                    p = p.ip_ranges(
                        IpRange::builder()
                            .cidr_ip(*cidr)
                            .set_description(description.map(str::to_string))
                            .build(),
                    );
                }
                for cidr in v6 {
                    p = p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(*cidr).build());
                }
                p.build()
            };
        SecurityGroup::builder()
            .group_id("sg-12345678")
            .ip_permissions(perm(
                "tcp",
                22,
                22,
                &[(WORLD_V4, Some("ssh from anywhere")), ("10.0.0.0/8", None)],
                &[WORLD_V6],
            ))
            .ip_permissions(perm("tcp", 443, 443, &[(WORLD_V4, None)], &[]))
            .ip_permissions(perm("tcp", 3000, 3400, &[(WORLD_V4, None)], &[]))
            .ip_permissions(perm("udp", 53, 53, &[(WORLD_V4, None)], &[]))
            .ip_permissions(perm("-1", -1, -1, &[("192.168.0.0/16", None)], &[]))
            .build()
    }

    #[test]
    fn only_world_open_ranges_covering_the_ports_are_chosen() {
        let rules = open_rules(&group(), &[22, 3389]);
        let shown: Vec<String> = lines(&rules);
        assert_eq!(
            shown,
            [
                "tcp 22 from 0.0.0.0/0 (\"ssh from anywhere\")",
                "tcp 22 from ::/0",
                "tcp 3000-3400 from 0.0.0.0/0",
            ]
        );
        assert!(open_rules(&group(), &[8080]).is_empty());
    }

    #[test]
    fn all_traffic_covers_every_port_and_icmp_none() {
        assert!(covers("-1", Some(-1), Some(-1), 22));
        assert!(covers("tcp", Some(20), Some(23), 22));
        assert!(!covers("tcp", Some(23), Some(25), 22));
        assert!(!covers("icmp", Some(-1), Some(-1), 22));
    }

    #[test]
    fn every_world_open_range_is_seen_when_restoring() {
        let all = all_open_rules(&group());
        assert!(all.iter().any(|r| r.from_port == Some(443)));
        assert!(all.iter().any(|r| r.protocol == "udp"));
    }
}
