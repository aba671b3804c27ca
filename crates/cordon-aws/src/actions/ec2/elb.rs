//! `deregister-from-load-balancers`: stops every ELBv2 target group from
//! sending the instance traffic (and the instance from answering clients
//! through them), and registers it back, on the same ports, on rollback.
//!
//! ELBv2 cannot look a target up by instance, so the pre-state lists every
//! target group of type `instance` in the region (paginated) and asks each for
//! its targets, a few groups at a time. That scan is shared by the cases of a
//! burst for a few seconds (`read_cache::TARGET_SCAN_REUSE_WINDOW`); a case
//! reusing another's scan asks only the groups it names the instance in.
//! Target groups of type `ip` are not
//! searched: matching them needs the instance's private addresses, which this
//! step's permissions do not cover; `isolate-instance` cuts that traffic at
//! the network interface anyway.
//!
//! Deregistration is not instant: targets drain for the group's deregistration
//! delay (300 s by default) while in-flight requests finish. Draining counts
//! as deregistered, both for the post-condition and when reading the
//! pre-state (a draining target is already on its way out; nothing to restore).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealthDescription, TargetHealthReasonEnum, TargetHealthStateEnum,
    TargetTypeEnum,
};
use cordon_core::action::DeregisterFromLoadBalancers as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, Span, info};

use crate::actions::ec2::read_scope;
use crate::actions::{Ctx, Handler};
use crate::client::AwsClients;
use crate::ops;
use crate::read_cache::{ScannedGroup, TargetScan};
use crate::recorder::carry_action;

/// Target groups queried at once: fast for accounts with many groups, gentle
/// on the shared ELB API budget.
const CONCURRENT_GROUPS: usize = 8;
/// Largest page `DescribeTargetGroups` returns.
const PAGE_SIZE: i32 = 400;

/// The handler for `deregister-from-load-balancers`.
#[derive(Debug)]
pub struct DeregisterFromLoadBalancers;

/// Where the instance was registered before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElbPreState {
    pub instance_id: String,
    /// Empty when the instance is in no target group (the step changes nothing).
    pub registrations: Vec<GroupRegistration>,
}

/// The instance's registrations in one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupRegistration {
    pub target_group_arn: String,
    pub target_group_name: Option<String>,
    /// One entry per port: an instance can be registered on several ports of one group.
    pub targets: Vec<RegisteredTarget>,
}

/// A target exactly as registered, so rollback registers the same thing back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisteredTarget {
    pub id: String,
    pub port: Option<i32>,
    pub availability_zone: Option<String>,
}

/// What apply did in each target group, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElbOutcome {
    /// Whether any target was deregistered now.
    pub changed: bool,
    /// Why nothing was to be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One entry per target group of the pre-state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<GroupResult>,
    /// What a responder should keep in mind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One target group's part of apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupResult {
    pub target_group_arn: String,
    /// `id:port`, comma-separated.
    pub targets: String,
    /// `deregistered`, `already-deregistered` or `target-group-deleted`.
    pub result: String,
}

/// What undo registered again, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElbUndone {
    /// Whether any target was registered now.
    pub changed: bool,
    /// Why nothing was to be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The targets registered again, per group.
    #[serde(default)]
    pub registered: Vec<GroupRegistered>,
}

/// Targets registered again in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupRegistered {
    pub target_group_arn: String,
    /// `id:port`, comma-separated.
    pub targets: String,
}

impl RegisteredTarget {
    fn description(&self) -> TargetDescription {
        TargetDescription::builder()
            .id(&self.id)
            .set_port(self.port)
            .set_availability_zone(self.availability_zone.clone())
            .build()
    }

    fn matches(&self, described: &TargetDescription) -> bool {
        described.id() == Some(self.id.as_str())
            && (self.port.is_none() || described.port() == self.port)
    }
}

impl std::fmt::Display for RegisteredTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

fn targets_label(targets: &[RegisteredTarget]) -> String {
    targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Registered and not on its way out: what the load balancer may route to.
fn is_registered(health: &TargetHealthDescription) -> bool {
    let Some(th) = health.target_health() else {
        return true;
    };
    th.state() != Some(&TargetHealthStateEnum::Draining)
        && th.reason() != Some(&TargetHealthReasonEnum::NotRegistered)
}

/// Runs the tasks at most [`CONCURRENT_GROUPS`] at a time; results in input
/// order. Each task keeps the step's action, so its calls are recorded under it.
async fn concurrently<F, R>(tasks: Vec<F>) -> Result<Vec<R>, ActionError>
where
    F: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(CONCURRENT_GROUPS));
    let mut set = JoinSet::new();
    let count = tasks.len();
    for (index, task) in tasks.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        set.spawn(
            carry_action(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _permit = permits.acquire_owned().await;
                (index, task.await)
            })
            .instrument(Span::current()),
        );
    }
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (index, result) = joined.map_err(|e| {
            ActionError::new(
                ErrorKind::Other,
                "target groups",
                format!("a target-group call did not complete: {e}"),
                "report this as a cordon bug; resume the case to retry",
            )
        })?;
        results[index] = Some(result);
    }
    Ok(results.into_iter().flatten().collect())
}

/// The region's target groups that can hold instance targets: (ARN, name).
async fn instance_target_groups(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<(String, Option<String>)>, ActionError> {
    let clients = ctx.clients();
    let request = clients.elbv2.describe_target_groups().page_size(PAGE_SIZE);
    let pages = clients
        .paginate(&ops::ELBV2_DESCRIBE_TARGET_GROUPS, instance_id, request)
        .await?;
    Ok(pages
        .iter()
        .flat_map(|page| page.target_groups())
        .filter(|group| {
            group
                .target_type()
                .is_none_or(|t| *t == TargetTypeEnum::Instance)
        })
        .filter_map(|group| {
            let arn = group.target_group_arn()?;
            Some((
                arn.to_string(),
                group.target_group_name().map(str::to_string),
            ))
        })
        .collect())
}

/// Every instance target group of the region with its targets: one
/// `DescribeTargetGroups` (paginated) and one `DescribeTargetHealth` per
/// group, a few at a time. Kept in the read cache and shared by the cases of
/// a burst ([`crate::read_cache::ReadCache::target_scan`]).
async fn scan_target_groups(ctx: Ctx<'_>, instance_id: &str) -> Result<TargetScan, ActionError> {
    let taken = Instant::now();
    let groups = instance_target_groups(ctx, instance_id).await?;
    let clients = ctx.clients();
    let lookups = groups
        .iter()
        .map(|(arn, _)| target_health(clients.clone(), arn.clone(), None))
        .collect();
    let mut scanned = Vec::new();
    for ((arn, name), health) in groups.into_iter().zip(concurrently(lookups).await?) {
        // A group deleted since it was listed holds nothing.
        if let Some(targets) = health? {
            scanned.push(ScannedGroup { arn, name, targets });
        }
    }
    Ok(TargetScan {
        taken,
        groups: scanned,
    })
}

/// Whether `instance_id` is among the targets (in any state).
fn has_target(targets: &[TargetHealthDescription], instance_id: &str) -> bool {
    targets
        .iter()
        .any(|h| h.target().and_then(|t| t.id()) == Some(instance_id))
}

/// `DescribeTargetHealth` for a group (all its targets, or just `targets`);
/// `None` when the group no longer exists.
async fn target_health(
    clients: AwsClients,
    group_arn: String,
    targets: Option<Vec<RegisteredTarget>>,
) -> Result<Option<Vec<TargetHealthDescription>>, ActionError> {
    let request = clients
        .elbv2
        .describe_target_health()
        .target_group_arn(&group_arn)
        .set_targets(targets.map(|ts| ts.iter().map(RegisteredTarget::description).collect()));
    match clients
        .try_call(&ops::ELBV2_DESCRIBE_TARGET_HEALTH, &group_arn, request)
        .await
    {
        Ok(out) => Ok(Some(out.target_health_descriptions().to_vec())),
        Err(e) if e.code() == Some(GROUP_NOT_FOUND) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// ELBv2's answer about a target group that does not exist (any more).
const GROUP_NOT_FOUND: &str = "TargetGroupNotFound";

/// The pre-state's targets of `group` that are registered right now.
async fn still_registered(
    clients: AwsClients,
    group: GroupRegistration,
) -> Result<Option<Vec<RegisteredTarget>>, ActionError> {
    let Some(health) = target_health(
        clients,
        group.target_group_arn.clone(),
        Some(group.targets.clone()),
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(
        group
            .targets
            .into_iter()
            .filter(|t| {
                health
                    .iter()
                    .any(|h| h.target().is_some_and(|d| t.matches(d)) && is_registered(h))
            })
            .collect(),
    ))
}

/// What deregistering from one group came to.
#[derive(Debug)]
enum Deregistered {
    Now(Vec<RegisteredTarget>),
    Already,
    GroupDeleted,
}

/// Deregisters whichever of the group's pre-state targets are still registered.
/// Reading first keeps a re-run after a crash free of mutating calls; a
/// pre-state read a moment ago by this attempt (`fresh`) is that reading.
async fn deregister(
    clients: AwsClients,
    group: GroupRegistration,
    fresh: bool,
) -> Result<Deregistered, ActionError> {
    let left = if fresh {
        group.targets.clone()
    } else {
        match still_registered(clients.clone(), group.clone()).await? {
            None => return Ok(Deregistered::GroupDeleted),
            Some(left) if left.is_empty() => return Ok(Deregistered::Already),
            Some(left) => left,
        }
    };
    let request = clients
        .elbv2
        .deregister_targets()
        .target_group_arn(&group.target_group_arn)
        .set_targets(Some(
            left.iter().map(RegisteredTarget::description).collect(),
        ));
    let result = clients
        .try_call(
            &ops::ELBV2_DEREGISTER_TARGETS,
            &group.target_group_arn,
            request,
        )
        .await;
    match result {
        Ok(_) => Ok(Deregistered::Now(left)),
        Err(e) if e.code() == Some(GROUP_NOT_FOUND) => Ok(Deregistered::GroupDeleted),
        // Deregistered by someone else since the read: the state we want.
        Err(e) if e.code() == Some("InvalidTarget") => {
            match still_registered(clients, group.clone()).await? {
                None => Ok(Deregistered::GroupDeleted),
                Some(now) if now.is_empty() => Ok(Deregistered::Already),
                Some(_) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Registers whichever of the group's pre-state targets are not registered now;
/// returns those it registered.
async fn register_missing(
    clients: AwsClients,
    group: GroupRegistration,
) -> Result<Vec<RegisteredTarget>, ActionError> {
    let Some(registered) = still_registered(clients.clone(), group.clone()).await? else {
        return Err(group_deleted(&group));
    };
    let missing: Vec<RegisteredTarget> = group
        .targets
        .iter()
        .filter(|t| !registered.contains(t))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let request = clients
        .elbv2
        .register_targets()
        .target_group_arn(&group.target_group_arn)
        .set_targets(Some(
            missing.iter().map(RegisteredTarget::description).collect(),
        ));
    clients
        .try_call(
            &ops::ELBV2_REGISTER_TARGETS,
            &group.target_group_arn,
            request,
        )
        .await
        .map_err(|e| {
            if e.code() == Some(GROUP_NOT_FOUND) {
                return group_deleted(&group);
            }
            ActionError::from(e)
        })?;
    Ok(missing)
}

fn group_deleted(group: &GroupRegistration) -> ActionError {
    ActionError::new(
        ErrorKind::NotFound,
        &group.target_group_arn,
        "the target group no longer exists, so the instance cannot be registered in it again",
        format!(
            "recreate the target group and register {} by hand",
            targets_label(&group.targets)
        ),
    )
}

impl Handler for DeregisterFromLoadBalancers {
    type Params = Params;
    type PreState = ElbPreState;
    type Outcome = ElbOutcome;
    type Undone = ElbUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<ElbPreState, ActionError> {
        let instance_id = ctx.instance()?.instance_id.clone();
        let clients = ctx.clients();
        let (scan, scanned_now) = clients
            .reads
            .target_scan(&read_scope(ctx), || scan_target_groups(ctx, &instance_id))
            .await?;
        // Only the groups the scan saw the instance in; asked again unless
        // this case made the scan itself, so a reused scan only names groups.
        let candidates: Vec<&ScannedGroup> = scan
            .groups
            .iter()
            .filter(|group| has_target(&group.targets, &instance_id))
            .collect();
        let healths = if scanned_now {
            candidates.iter().map(|g| Some(g.targets.clone())).collect()
        } else {
            let lookups = candidates
                .iter()
                .map(|g| target_health(clients.clone(), g.arn.clone(), None))
                .collect();
            concurrently(lookups)
                .await?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut registrations = Vec::new();
        for (group, health) in candidates.into_iter().zip(healths) {
            // A group deleted since it was listed holds nothing to restore.
            let Some(health) = health else { continue };
            let targets: Vec<RegisteredTarget> = health
                .iter()
                .filter(|h| is_registered(h))
                .filter_map(|h| h.target())
                .filter(|t| t.id() == Some(instance_id.as_str()))
                .map(|t| RegisteredTarget {
                    id: instance_id.clone(),
                    port: t.port(),
                    availability_zone: t.availability_zone().map(str::to_string),
                })
                .collect();
            if !targets.is_empty() {
                registrations.push(GroupRegistration {
                    target_group_arn: group.arn.clone(),
                    target_group_name: group.name.clone(),
                    targets,
                });
            }
        }
        registrations.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
        Ok(ElbPreState {
            instance_id,
            registrations,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ElbPreState,
    ) -> Result<ElbOutcome, ActionError> {
        if pre.registrations.is_empty() {
            return Ok(ElbOutcome {
                changed: false,
                reason: Some(format!(
                    "instance {} is registered in no target group; nothing to deregister",
                    pre.instance_id
                )),
                target_groups: Vec::new(),
                note: None,
            });
        }
        let clients = ctx.clients();
        let calls = pre
            .registrations
            .iter()
            .map(|group| deregister(clients.clone(), group.clone(), ctx.fresh_pre_state()))
            .collect();
        let mut groups = Vec::new();
        let mut changed = false;
        for (group, result) in pre.registrations.iter().zip(concurrently(calls).await?) {
            let (result, targets) = match result? {
                Deregistered::Now(targets) => {
                    changed = true;
                    info!(instance = %pre.instance_id, target_group = %group.target_group_arn, "deregistered from target group");
                    ("deregistered", targets)
                }
                Deregistered::Already => ("already-deregistered", group.targets.clone()),
                Deregistered::GroupDeleted => ("target-group-deleted", group.targets.clone()),
            };
            groups.push(GroupResult {
                target_group_arn: group.target_group_arn.clone(),
                targets: targets_label(&targets),
                result: result.to_string(),
            });
        }
        Ok(ElbOutcome {
            changed,
            reason: None,
            target_groups: groups,
            note: Some(
                "in-flight requests drain for each group's deregistration delay (300 s by default)"
                    .to_string(),
            ),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ElbPreState,
        _outcome: &ElbOutcome,
    ) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let checks = pre
            .registrations
            .iter()
            .map(|group| still_registered(clients.clone(), group.clone()))
            .collect();
        for (group, left) in pre.registrations.iter().zip(concurrently(checks).await?) {
            match left? {
                Some(left) if !left.is_empty() => {
                    return Err(ActionError::new(
                        ErrorKind::Verification,
                        &group.target_group_arn,
                        format!(
                            "{} is still registered after deregistering it",
                            targets_label(&left)
                        ),
                        "ELB may not have caught up yet; cordon retries, then check the target group in the console",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ElbPreState,
        _outcome: Option<&ElbOutcome>,
    ) -> Result<ElbUndone, ActionError> {
        if pre.registrations.is_empty() {
            return Ok(ElbUndone {
                changed: false,
                reason: Some("the instance was in no target group; nothing to restore".to_string()),
                registered: Vec::new(),
            });
        }
        let clients = ctx.clients();
        let calls = pre
            .registrations
            .iter()
            .map(|group| register_missing(clients.clone(), group.clone()))
            .collect();
        let results = concurrently(calls).await?;
        // The instance is a target again: a scan kept from before would not say so.
        clients.reads.forget_target_scan(&read_scope(ctx));
        let mut registered = Vec::new();
        for (group, result) in pre.registrations.iter().zip(results) {
            let done = result?;
            if !done.is_empty() {
                info!(instance = %pre.instance_id, target_group = %group.target_group_arn, "registered in target group again");
                registered.push(GroupRegistered {
                    target_group_arn: group.target_group_arn.clone(),
                    targets: targets_label(&done),
                });
            }
        }
        Ok(ElbUndone {
            changed: !registered.is_empty(),
            reason: None,
            registered,
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ElbPreState,
    ) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let checks = pre
            .registrations
            .iter()
            .map(|group| still_registered(clients.clone(), group.clone()))
            .collect();
        for (group, registered) in pre.registrations.iter().zip(concurrently(checks).await?) {
            let Some(registered) = registered? else {
                return Err(group_deleted(group));
            };
            let missing: Vec<RegisteredTarget> = group
                .targets
                .iter()
                .filter(|t| !registered.contains(t))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &group.target_group_arn,
                    format!(
                        "{} is not registered in the target group again",
                        targets_label(&missing)
                    ),
                    "ELB may not have caught up yet; cordon retries, then register it by hand",
                ));
            }
        }
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &ElbPreState) -> Vec<String> {
        pre.registrations
            .iter()
            .map(|group| {
                format!(
                    "{} target-group-arn={} targets={}",
                    ops::ELBV2_DEREGISTER_TARGETS.iam_action,
                    group.target_group_arn,
                    targets_label(&group.targets)
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::TargetHealth;

    use super::*;

    fn health(
        state: TargetHealthStateEnum,
        reason: Option<TargetHealthReasonEnum>,
    ) -> TargetHealthDescription {
        TargetHealthDescription::builder()
            .target(TargetDescription::builder().id("i-1").port(80).build())
            .target_health(
                TargetHealth::builder()
                    .state(state)
                    .set_reason(reason)
                    .build(),
            )
            .build()
    }

    #[test]
    fn draining_and_not_registered_targets_are_out() {
        assert!(is_registered(&health(TargetHealthStateEnum::Healthy, None)));
        assert!(is_registered(&health(
            TargetHealthStateEnum::Unused,
            Some(TargetHealthReasonEnum::NotInUse)
        )));
        assert!(!is_registered(&health(
            TargetHealthStateEnum::Draining,
            None
        )));
        assert!(!is_registered(&health(
            TargetHealthStateEnum::Unused,
            Some(TargetHealthReasonEnum::NotRegistered)
        )));
    }

    #[test]
    fn targets_match_on_id_and_port() {
        let target = RegisteredTarget {
            id: "i-1".to_string(),
            port: Some(80),
            availability_zone: None,
        };
        assert!(target.matches(&TargetDescription::builder().id("i-1").port(80).build()));
        assert!(!target.matches(&TargetDescription::builder().id("i-1").port(81).build()));
        assert!(!target.matches(&TargetDescription::builder().id("i-2").port(80).build()));
        assert_eq!(target.to_string(), "i-1:80");
    }
}
