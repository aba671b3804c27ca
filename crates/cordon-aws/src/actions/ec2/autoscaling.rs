//! `detach-from-autoscaling`: takes the instance out of its Auto Scaling
//! group so the group can neither terminate it (scale-in, failed health check)
//! nor keep routing work to it, and puts it back on rollback.
//!
//! # Why detach without decrementing, and never touch the minimum
//!
//! `DetachInstances` is always called with `ShouldDecrementDesiredCapacity=false`:
//! the group keeps its desired capacity and launches a replacement, so the
//! service keeps its capacity and the instance under investigation is never
//! the one the group terminates. AWS only refuses a detach for the group's
//! minimum size when the desired capacity is decremented; since cordon never
//! decrements, the minimum never blocks the step and is never lowered to make
//! the detach pass (lowering it would leave a group that may shrink below what
//! its owners consider safe, and hide that from them).
//!
//! An instance already in `Standby` is left there: the group neither replaces
//! nor terminates standby instances and load balancers get none of its
//! traffic, which is what detaching is for (AWS-NOTES: "detach … or put in
//! Standby"). Instances the group is launching are retried (`Conflict`); ones
//! it is already terminating fail clearly, since no API call saves them.
//!
//! # Rollback restores membership, never capacity
//!
//! Capacity is the group's owners' (and their scaling policies') business: a
//! group scaled from 4 to 12 during the incident stays at 12 after the
//! rollback. Undo only puts the instance back in its group (and its scale-in
//! protection back as it was); min/max/desired as they read at undo time are
//! what the group keeps, and any difference from the pre-state is reported in
//! the undo result as drift, never written over.
//!
//! `AttachInstances` raises the desired capacity by one and fails if that
//! would exceed the maximum. Attaching first and then lowering the desired
//! capacity would make the group scale in, and its termination policy
//! (oldest launch template first, by default) may pick the very instance just
//! re-attached. So undo first lowers the desired capacity by one (lowering
//! the minimum with it for that moment only when they are equal), letting
//! the group retire one of its current, interchangeable members — typically
//! the replacement — then attaches the instance, which brings desired back to
//! what it was, then puts the minimum back. A group scaled to zero has no
//! member to retire: the instance joins on top (desired 0 → 1), and when the
//! maximum is 0 it is raised to 1, the least that lets it join; the undo
//! result says so. The price is one instance fewer for the moments between
//! the calls; a crash in that moment can leave the minimum lowered by one,
//! which a retried rollback cannot tell from an owner's change.
//!
//! Restoring needs `autoscaling:UpdateAutoScalingGroup` (and
//! `autoscaling:SetInstanceProtection` when the instance's scale-in protection
//! must be put back), and `ec2:DescribeInstances` to check the instance can be
//! attached before the group is shrunk.

use aws_sdk_autoscaling::types::AutoScalingInstanceDetails;
use cordon_core::action::DetachFromAutoscaling as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::describe_instance;
use crate::actions::{Ctx, Handler};
use crate::ops;

/// The handler for `detach-from-autoscaling`.
#[derive(Debug)]
pub struct DetachFromAutoscaling;

/// The instance's group membership and the group's capacity, before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoscalingPreState {
    pub instance_id: String,
    /// `None` when the instance is in no Auto Scaling group (the step changes nothing).
    pub membership: Option<GroupMembership>,
}

/// Which group the instance was in, in what state, and the group's size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupMembership {
    pub group_name: String,
    /// `InService`, `Standby`, `Pending`, … as Auto Scaling reports it.
    pub lifecycle_state: String,
    /// Restored on rollback: `AttachInstances` applies the group's default instead.
    pub protected_from_scale_in: bool,
    pub capacity: Capacity,
}

/// A group's size limits: what rollback puts back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Capacity {
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
}

/// What apply did: the detach, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoscalingOutcome {
    /// Whether the instance was detached now.
    pub changed: bool,
    /// Why nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The group it was detached from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Always false: the group keeps its desired capacity (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_decrement_desired_capacity: Option<bool>,
    /// What a responder should keep in mind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl AutoscalingOutcome {
    fn unchanged(reason: String) -> Self {
        AutoscalingOutcome {
            changed: false,
            reason: Some(reason),
            group: None,
            should_decrement_desired_capacity: None,
            note: None,
        }
    }
}

/// What undo did, in order, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AutoscalingUndone {
    /// Whether anything was changed now.
    pub changed: bool,
    /// Why nothing was to be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The group the instance went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Each change made, in order.
    #[serde(default)]
    pub done: Vec<String>,
    /// How the group's capacity differs from the pre-state (scaled during the
    /// incident): reported, left as the group's owners set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_drift: Option<String>,
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {}, max {}, desired {}",
            self.min_size, self.max_size, self.desired_capacity
        )
    }
}

/// How undo re-attaches the instance within the group's capacity as it reads
/// now (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reattach {
    /// Set before `AttachInstances`; `None` when the group has room as it is.
    before: Option<Capacity>,
    /// Set after it, putting back what `before` changed only for the moment.
    after: Option<Capacity>,
}

/// The drift undo reports (and leaves) when the group's capacity changed since the pre-state.
fn capacity_drift(before: Capacity, now: Capacity) -> Option<String> {
    (now != before).then(|| {
        format!(
            "the group's capacity was {before} at the pre-state and is {now} now (changed during the incident): left as it is"
        )
    })
}

fn reattach(now: Capacity) -> Reattach {
    if now.desired_capacity >= 1 {
        let lowered = now.desired_capacity - 1;
        let before = Capacity {
            desired_capacity: lowered,
            min_size: now.min_size.min(lowered),
            max_size: now.max_size,
        };
        // Attaching brings desired back to now's; only a lowered minimum is left to restore.
        let after = (before.min_size != now.min_size).then_some(now);
        Reattach {
            before: Some(before),
            after,
        }
    } else {
        // No member to retire: the instance joins on top and needs room for one.
        let before = (now.max_size < 1).then_some(Capacity { max_size: 1, ..now });
        Reattach {
            before,
            after: None,
        }
    }
}

/// Lifecycle states in which the group will neither replace nor terminate the
/// instance, nor send it load-balancer traffic: nothing to detach.
fn is_standby(state: &str) -> bool {
    matches!(state, "Standby" | "EnteringStandby")
}

fn is_detaching(state: &str) -> bool {
    matches!(state, "Detaching" | "Detached")
}

fn is_terminating(state: &str) -> bool {
    state.starts_with("Terminating") || state == "Terminated"
}

/// The instance's Auto Scaling membership, if any.
async fn membership(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Option<AutoScalingInstanceDetails>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(instance_id);
    let out = clients
        .call(
            &ops::AUTOSCALING_DESCRIBE_AUTO_SCALING_INSTANCES,
            instance_id,
            request,
        )
        .await?;
    Ok(out
        .auto_scaling_instances()
        .iter()
        .find(|i| i.instance_id() == Some(instance_id))
        .cloned())
}

/// The group's current min/max/desired; a deleted group is a clear error.
async fn capacity(ctx: Ctx<'_>, group: &str) -> Result<Capacity, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group);
    let out = clients
        .call(
            &ops::AUTOSCALING_DESCRIBE_AUTO_SCALING_GROUPS,
            group,
            request,
        )
        .await?;
    let found = out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(group))
        .ok_or_else(|| {
            ActionError::new(
                ErrorKind::NotFound,
                format!("Auto Scaling group {group}"),
                "Auto Scaling group not found",
                "the group was deleted; recreate it or restore its instances by hand",
            )
        })?;
    Ok(Capacity {
        min_size: found.min_size().unwrap_or(0),
        max_size: found.max_size().unwrap_or(0),
        desired_capacity: found.desired_capacity().unwrap_or(0),
    })
}

/// `UpdateAutoScalingGroup` with the three size limits only.
async fn set_capacity(ctx: Ctx<'_>, group: &str, to: Capacity) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .min_size(to.min_size)
        .max_size(to.max_size)
        .desired_capacity(to.desired_capacity);
    clients
        .call(&ops::AUTOSCALING_UPDATE_AUTO_SCALING_GROUP, group, request)
        .await?;
    info!(group, capacity = %to, "Auto Scaling group capacity set");
    Ok(())
}

/// The clear error for a lifecycle state Auto Scaling does not detach from:
/// retryable while the instance is still launching, final otherwise.
fn refuse_detach(instance_id: &str, group: &str, state: &str) -> ActionError {
    if state.starts_with("Pending") {
        return ActionError::new(
            ErrorKind::Conflict,
            instance_id,
            format!("the instance is still launching into Auto Scaling group {group} ({state})"),
            "Auto Scaling only detaches InService instances; cordon retries once it is in service",
        );
    }
    if is_terminating(state) {
        return ActionError::new(
            ErrorKind::InvalidState,
            instance_id,
            format!("Auto Scaling group {group} is already terminating the instance ({state})"),
            "detaching cannot stop it: snapshot its volumes now, and complete any lifecycle hook only after evidence is safe",
        );
    }
    ActionError::new(
        ErrorKind::InvalidState,
        instance_id,
        format!("the instance is {state} in Auto Scaling group {group} and cannot be detached"),
        "only InService instances can be detached; move it to InService or Standby, then resume the case",
    )
}

impl Handler for DetachFromAutoscaling {
    type Params = Params;
    type PreState = AutoscalingPreState;
    type Outcome = AutoscalingOutcome;
    type Undone = AutoscalingUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<AutoscalingPreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let Some(member) = membership(ctx, instance_id).await? else {
            return Ok(AutoscalingPreState {
                instance_id: instance_id.clone(),
                membership: None,
            });
        };
        let group_name = member
            .auto_scaling_group_name()
            .unwrap_or_default()
            .to_string();
        let capacity = capacity(ctx, &group_name).await?;
        Ok(AutoscalingPreState {
            instance_id: instance_id.clone(),
            membership: Some(GroupMembership {
                lifecycle_state: member.lifecycle_state().unwrap_or_default().to_string(),
                protected_from_scale_in: member.protected_from_scale_in().unwrap_or(false),
                group_name,
                capacity,
            }),
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AutoscalingPreState,
    ) -> Result<AutoscalingOutcome, ActionError> {
        let Some(before) = &pre.membership else {
            return Ok(AutoscalingOutcome::unchanged(format!(
                "instance {} is in no Auto Scaling group; nothing to detach",
                pre.instance_id
            )));
        };
        // Decide on the live state: after a crash the detach may already be
        // done. A pre-state this attempt read a moment ago is that state; a
        // detach the world has moved past since fails, and is read again below.
        let current = if ctx.fresh_pre_state() {
            None
        } else {
            let Some(current) = membership(ctx, &pre.instance_id).await? else {
                return Ok(AutoscalingOutcome::unchanged(format!(
                    "instance {} was already detached from {}",
                    pre.instance_id, before.group_name
                )));
            };
            Some(current)
        };
        let group = current.as_ref().map_or(before.group_name.as_str(), |c| {
            c.auto_scaling_group_name().unwrap_or_default()
        });
        let state = current
            .as_ref()
            .map_or(before.lifecycle_state.as_str(), |c| {
                c.lifecycle_state().unwrap_or_default()
            });
        if group != before.group_name {
            return Err(ActionError::new(
                ErrorKind::InvalidState,
                &pre.instance_id,
                format!(
                    "the instance moved from Auto Scaling group {} to {group} since its pre-state was read",
                    before.group_name
                ),
                "someone else is changing the group; check with its owners, then roll back or resume the case",
            ));
        }
        if is_standby(state) {
            return Ok(AutoscalingOutcome::unchanged(format!(
                "instance {} is in {state} in {group}: the group neither replaces nor terminates it and sends it no load-balancer traffic; left as is",
                pre.instance_id
            )));
        }
        if is_detaching(state) {
            return Ok(AutoscalingOutcome::unchanged(format!(
                "instance {} is already being detached from {group}",
                pre.instance_id
            )));
        }
        if state != "InService" {
            return Err(refuse_detach(&pre.instance_id, group, state));
        }
        let clients = ctx.clients();
        let request = clients
            .autoscaling
            .detach_instances()
            .auto_scaling_group_name(group)
            .instance_ids(&pre.instance_id)
            .should_decrement_desired_capacity(false);
        let result = clients
            .call(
                &ops::AUTOSCALING_DETACH_INSTANCES,
                &pre.instance_id,
                request,
            )
            .await;
        if let Err(e) = result {
            // A concurrent detach wins the race: that is the goal, not a failure.
            if membership(ctx, &pre.instance_id).await?.is_none() {
                return Ok(AutoscalingOutcome::unchanged(format!(
                    "instance {} was detached from {group} concurrently",
                    pre.instance_id
                )));
            }
            return Err(e.into());
        }
        info!(instance = %pre.instance_id, group, "detached from Auto Scaling group");
        Ok(AutoscalingOutcome {
            changed: true,
            reason: None,
            group: Some(group.to_string()),
            should_decrement_desired_capacity: Some(false),
            note: Some(format!(
                "the group launches a replacement to keep its desired capacity of {}",
                before.capacity.desired_capacity
            )),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AutoscalingPreState,
        _outcome: &AutoscalingOutcome,
    ) -> Result<(), ActionError> {
        if pre.membership.is_none() {
            return Ok(());
        }
        match membership(ctx, &pre.instance_id).await? {
            None => Ok(()),
            Some(m)
                if m.lifecycle_state()
                    .is_some_and(|s| is_detaching(s) || is_standby(s)) =>
            {
                Ok(())
            }
            Some(m) => Err(ActionError::new(
                ErrorKind::Verification,
                &pre.instance_id,
                format!(
                    "the instance is still {} in Auto Scaling group {}",
                    m.lifecycle_state().unwrap_or("a member"),
                    m.auto_scaling_group_name().unwrap_or("?")
                ),
                "Auto Scaling may not have caught up yet; cordon retries, then check the group's activity history",
            )),
        }
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AutoscalingPreState,
        _outcome: Option<&AutoscalingOutcome>,
    ) -> Result<AutoscalingUndone, ActionError> {
        let Some(before) = &pre.membership else {
            return Ok(AutoscalingUndone {
                changed: false,
                reason: Some(
                    "the instance was in no Auto Scaling group; nothing to restore".to_string(),
                ),
                group: None,
                done: Vec::new(),
                capacity_drift: None,
            });
        };
        let group = before.group_name.as_str();
        let mut done: Vec<String> = Vec::new();
        let mut drift = None;
        let mut current = membership(ctx, &pre.instance_id).await?;
        match &current {
            Some(m) if m.auto_scaling_group_name() != Some(group) => {
                return Err(ActionError::new(
                    ErrorKind::InvalidState,
                    &pre.instance_id,
                    format!(
                        "the instance is now in Auto Scaling group {} rather than {group}",
                        m.auto_scaling_group_name().unwrap_or("?")
                    ),
                    "detach it from that group by hand if it does not belong there, then roll back again",
                ));
            }
            Some(m) if m.lifecycle_state().is_some_and(is_detaching) => {
                return Err(ActionError::new(
                    ErrorKind::Conflict,
                    &pre.instance_id,
                    format!("the instance is still being detached from {group}"),
                    "Auto Scaling finishes within a minute; cordon retries",
                ));
            }
            Some(_) => {}
            None => {
                // Fail before shrinking the group if the instance cannot go back.
                let instance = describe_instance(ctx, &pre.instance_id).await?;
                let state = instance
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string());
                if state.as_deref() != Some("running") {
                    return Err(ActionError::new(
                        ErrorKind::InvalidState,
                        &pre.instance_id,
                        format!(
                            "the instance is {} and Auto Scaling only attaches running instances",
                            state.as_deref().unwrap_or("in an unknown state")
                        ),
                        "start the instance (if it is safe to), then roll back again",
                    ));
                }
                let now = capacity(ctx, group).await?;
                drift = capacity_drift(before.capacity, now);
                let plan = reattach(now);
                if let Some(room) = plan.before {
                    set_capacity(ctx, group, room).await?;
                    done.push(format!(
                        "made room in {group} for the instance ({room}; it was {now})"
                    ));
                }
                let clients = ctx.clients();
                let request = clients
                    .autoscaling
                    .attach_instances()
                    .auto_scaling_group_name(group)
                    .instance_ids(&pre.instance_id);
                let result = clients
                    .call(
                        &ops::AUTOSCALING_ATTACH_INSTANCES,
                        &pre.instance_id,
                        request,
                    )
                    .await;
                current = membership(ctx, &pre.instance_id).await?;
                // Attached concurrently (or the error came after it took): fine.
                if let Err(e) = result
                    && current.is_none()
                {
                    let mut err = ActionError::from(e);
                    err.hint = format!(
                        "{}; the group's desired capacity may be one below what it was ({now}) until rollback succeeds",
                        err.hint
                    );
                    return Err(err);
                }
                info!(instance = %pre.instance_id, group, "attached to Auto Scaling group again");
                done.push(format!("attached {} to {group}", pre.instance_id));
                if let Some(back) = plan.after {
                    set_capacity(ctx, group, back).await?;
                    done.push(format!("put {group} back to {back}"));
                }
            }
        }
        if drift.is_none() {
            drift = capacity_drift(before.capacity, capacity(ctx, group).await?);
        }
        let protected = current
            .as_ref()
            .and_then(|m| m.protected_from_scale_in())
            .unwrap_or(false);
        if protected != before.protected_from_scale_in {
            let clients = ctx.clients();
            let request = clients
                .autoscaling
                .set_instance_protection()
                .auto_scaling_group_name(group)
                .instance_ids(&pre.instance_id)
                .protected_from_scale_in(before.protected_from_scale_in);
            clients
                .call(
                    &ops::AUTOSCALING_SET_INSTANCE_PROTECTION,
                    &pre.instance_id,
                    request,
                )
                .await?;
            done.push(format!(
                "set scale-in protection back to {}",
                before.protected_from_scale_in
            ));
        }
        if let Some(drift) = &drift {
            warn!(group, "{drift}");
        }
        Ok(AutoscalingUndone {
            changed: !done.is_empty(),
            reason: None,
            group: Some(group.to_string()),
            done,
            capacity_drift: drift,
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AutoscalingPreState,
    ) -> Result<(), ActionError> {
        let current = membership(ctx, &pre.instance_id).await?;
        let Some(before) = &pre.membership else {
            return match current {
                None => Ok(()),
                Some(m) => Err(ActionError::new(
                    ErrorKind::Verification,
                    &pre.instance_id,
                    format!(
                        "the instance is in Auto Scaling group {} but was in none before the case",
                        m.auto_scaling_group_name().unwrap_or("?")
                    ),
                    "cordon did not put it there; detach it by hand if it should not be in the group",
                )),
            };
        };
        let group = before.group_name.as_str();
        let in_group = current.as_ref().filter(|m| {
            m.auto_scaling_group_name() == Some(group)
                && m.lifecycle_state()
                    .is_some_and(|s| !is_detaching(s) && !is_terminating(s))
        });
        let Some(member) = in_group else {
            return Err(ActionError::new(
                ErrorKind::Verification,
                &pre.instance_id,
                format!("the instance is not back in Auto Scaling group {group}"),
                "Auto Scaling may not have caught up yet; cordon retries, then check the group's activity history",
            ));
        };
        let protected = member.protected_from_scale_in().unwrap_or(false);
        if protected != before.protected_from_scale_in {
            return Err(ActionError::new(
                ErrorKind::Verification,
                &pre.instance_id,
                format!(
                    "the instance's scale-in protection is {protected} but was {} before the case",
                    before.protected_from_scale_in
                ),
                "set it back with SetInstanceProtection, then roll back again",
            ));
        }
        // Capacity is the group's owners' to set; undo reports drift, never undoes it.
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &AutoscalingPreState) -> Vec<String> {
        match &pre.membership {
            Some(m) if m.lifecycle_state == "InService" => vec![format!(
                "{} auto-scaling-group-name={} instance-ids={} should-decrement-desired-capacity=false (the group launches a replacement to keep desired capacity {})",
                ops::AUTOSCALING_DETACH_INSTANCES.iam_action,
                m.group_name,
                pre.instance_id,
                m.capacity.desired_capacity
            )],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_states() {
        assert!(is_standby("Standby") && is_standby("EnteringStandby"));
        assert!(!is_standby("InService"));
        assert!(is_detaching("Detaching") && is_detaching("Detached"));
        assert!(is_terminating("Terminating:Wait") && is_terminating("Terminated"));
        assert!(!is_terminating("InService"));
    }

    #[test]
    fn reattaching_keeps_the_capacity_the_group_has_now() {
        let cap = |min_size, max_size, desired_capacity| Capacity {
            min_size,
            max_size,
            desired_capacity,
        };
        // Room is made by retiring one member; attaching brings desired back.
        assert_eq!(
            reattach(cap(1, 6, 5)),
            Reattach {
                before: Some(cap(1, 6, 4)),
                after: None
            }
        );
        // A minimum equal to desired is lowered for the moment only.
        assert_eq!(
            reattach(cap(3, 6, 3)),
            Reattach {
                before: Some(cap(2, 6, 2)),
                after: Some(cap(3, 6, 3))
            }
        );
        // Scaled to zero: nothing to retire; the least room for one.
        assert_eq!(
            reattach(cap(0, 4, 0)),
            Reattach {
                before: None,
                after: None
            }
        );
        assert_eq!(
            reattach(cap(0, 0, 0)),
            Reattach {
                before: Some(cap(0, 1, 0)),
                after: None
            }
        );
    }

    #[test]
    fn launching_instances_are_retried_terminating_ones_are_not() {
        assert_eq!(
            refuse_detach("i-1", "web", "Pending:Wait").kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            refuse_detach("i-1", "web", "Terminating").kind,
            ErrorKind::InvalidState
        );
        assert_eq!(
            refuse_detach("i-1", "web", "Warmed:Stopped").kind,
            ErrorKind::InvalidState
        );
    }
}
