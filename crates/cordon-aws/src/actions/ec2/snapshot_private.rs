//! `make-snapshot-private`: removes the `all` group from the snapshot's
//! `createVolumePermission`, so no other account can create a volume from it.
//!
//! Accounts the snapshot is shared with by id keep their permission: sharing
//! with a named account is a decision, sharing with everyone is the exposure
//! AWS Config's `ebs-snapshot-public-restorable-check` reports. The pre-state
//! is the whole permission list; undo adds `all` back when it was there.

use aws_sdk_ec2::types::{OperationType, SnapshotAttributeName};
use cordon_core::action::MakeSnapshotPrivate as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::actions::{Ctx, Handler};
use crate::ops;

/// The `make-snapshot-private` handler.
#[derive(Debug)]
pub struct MakeSnapshotPrivate;

const ALL: &str = "all";

/// The snapshot's volume-creation permissions before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotPermissionsPreState {
    pub snapshot_id: String,
    /// Groups allowed to create volumes (`all` is public).
    pub groups: Vec<String>,
    /// Accounts allowed to create volumes; never changed by the step.
    pub user_ids: Vec<String>,
}

impl SnapshotPermissionsPreState {
    /// Whether anyone may create a volume from the snapshot (group `all`).
    pub(crate) fn public(&self) -> bool {
        self.groups.iter().any(|g| g == ALL)
    }
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotPermissionsOutcome {
    /// The call made; empty when the snapshot was not public.
    pub changed: Vec<String>,
}

/// What undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotPermissionsUndone {
    /// The call made; empty when nothing needed restoring.
    pub restored: Vec<String>,
}

/// The snapshot's `createVolumePermission` now, groups and accounts sorted.
pub(crate) async fn read(
    ctx: Ctx<'_>,
    snapshot_id: &str,
) -> Result<SnapshotPermissionsPreState, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission);
    let out = clients
        .call(&ops::EC2_DESCRIBE_SNAPSHOT_ATTRIBUTE, snapshot_id, request)
        .await?;
    let permissions = out.create_volume_permissions();
    let mut groups: Vec<String> = permissions
        .iter()
        .filter_map(|p| p.group().map(|g| g.as_str().to_string()))
        .collect();
    let mut user_ids: Vec<String> = permissions
        .iter()
        .filter_map(|p| p.user_id().map(str::to_string))
        .collect();
    groups.sort();
    user_ids.sort();
    Ok(SnapshotPermissionsPreState {
        snapshot_id: snapshot_id.to_string(),
        groups,
        user_ids,
    })
}

/// The journal's and the dry run's words for one change of group `all`.
pub(crate) fn line(operation: OperationType, snapshot_id: &str) -> String {
    format!(
        "{} {snapshot_id} createVolumePermission {} group=all",
        ops::EC2_MODIFY_SNAPSHOT_ATTRIBUTE.iam_action,
        operation.as_str()
    )
}

/// Adds or removes group `all`, leaving the accounts shared with by id as they are.
pub(crate) async fn modify(
    ctx: Ctx<'_>,
    snapshot_id: &str,
    operation: OperationType,
) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .modify_snapshot_attribute()
        .snapshot_id(snapshot_id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .operation_type(operation)
        .group_names(ALL);
    clients
        .call(&ops::EC2_MODIFY_SNAPSHOT_ATTRIBUTE, snapshot_id, request)
        .await?;
    Ok(())
}

fn mismatch(snapshot_id: &str, what: String, hint: &str) -> ActionError {
    ActionError::new(ErrorKind::Verification, snapshot_id, what, hint)
}

/// Verification that `live` (read back after the change) is not public.
pub(crate) fn check_private(live: &SnapshotPermissionsPreState) -> Result<(), ActionError> {
    if live.public() {
        return Err(mismatch(
            &live.snapshot_id,
            "createVolumePermission still grants group `all`: the snapshot is public".into(),
            "the step is retried; if it persists check who else shares the snapshot",
        ));
    }
    Ok(())
}

/// Undo for one snapshot: adds group `all` back when `pre` had it and the
/// snapshot lacks it now. Returns the call made, if any.
pub(crate) async fn restore(
    ctx: Ctx<'_>,
    pre: &SnapshotPermissionsPreState,
) -> Result<Option<String>, ActionError> {
    if !pre.public() || read(ctx, &pre.snapshot_id).await?.public() {
        return Ok(None);
    }
    modify(ctx, &pre.snapshot_id, OperationType::Add).await?;
    Ok(Some(line(OperationType::Add, &pre.snapshot_id)))
}

/// Verification that the snapshot's groups are back at `pre`'s.
pub(crate) async fn check_restored(
    ctx: Ctx<'_>,
    pre: &SnapshotPermissionsPreState,
) -> Result<(), ActionError> {
    let live = read(ctx, &pre.snapshot_id).await?;
    if live.groups != pre.groups {
        return Err(mismatch(
            &pre.snapshot_id,
            format!(
                "createVolumePermission groups read back {:?}, but were {:?} before the case",
                live.groups, pre.groups
            ),
            "rollback retries; if it persists share the snapshot by hand as the pre-state records",
        ));
    }
    Ok(())
}

impl Handler for MakeSnapshotPrivate {
    type Params = Params;
    type PreState = SnapshotPermissionsPreState;
    type Outcome = SnapshotPermissionsOutcome;
    type Undone = SnapshotPermissionsUndone;

    async fn pre_state(
        ctx: Ctx<'_>,
        _p: &Params,
    ) -> Result<SnapshotPermissionsPreState, ActionError> {
        read(ctx, ctx.snapshot()?).await
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &SnapshotPermissionsPreState,
    ) -> Result<SnapshotPermissionsOutcome, ActionError> {
        if !pre.public() {
            return Ok(SnapshotPermissionsOutcome { changed: vec![] });
        }
        // Removing a group the snapshot no longer has is accepted: a
        // re-apply after a crash sends the same call.
        modify(ctx, &pre.snapshot_id, OperationType::Remove).await?;
        Ok(SnapshotPermissionsOutcome {
            changed: vec![line(OperationType::Remove, &pre.snapshot_id)],
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &SnapshotPermissionsPreState,
        _outcome: &SnapshotPermissionsOutcome,
    ) -> Result<(), ActionError> {
        check_private(&read(ctx, &pre.snapshot_id).await?)
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &SnapshotPermissionsPreState,
        _outcome: Option<&SnapshotPermissionsOutcome>,
    ) -> Result<SnapshotPermissionsUndone, ActionError> {
        Ok(SnapshotPermissionsUndone {
            restored: restore(ctx, pre).await?.into_iter().collect(),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &SnapshotPermissionsPreState,
    ) -> Result<(), ActionError> {
        check_restored(ctx, pre).await
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &SnapshotPermissionsPreState) -> Vec<String> {
        if pre.public() {
            vec![line(OperationType::Remove, &pre.snapshot_id)]
        } else {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_all_makes_it_public() {
        let mut pre = SnapshotPermissionsPreState {
            snapshot_id: "snap-12345678".into(),
            groups: vec![],
            user_ids: vec!["111122223333".into()],
        };
        assert!(!pre.public());
        pre.groups.push(ALL.into());
        assert!(pre.public());
        assert_eq!(
            line(OperationType::Remove, "snap-12345678"),
            "ec2:ModifySnapshotAttribute snap-12345678 createVolumePermission remove group=all"
        );
    }
}
