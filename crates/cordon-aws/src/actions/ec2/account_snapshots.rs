//! `make-account-snapshots-private`: the answer to AWS Config's periodic
//! `ebs-snapshot-public-restorable-check`, which evaluates the account, not a
//! snapshot. Every snapshot the account owns in the region that anyone may
//! create a volume from loses its public (`all`) permission, each exactly as
//! `make-snapshot-private` does it (that module's per-snapshot parts are
//! used here); accounts a snapshot is shared with by id keep theirs.
//!
//! The pre-state is the list of public snapshots, each with its whole
//! permission list as read, journaled before the first change. It is found
//! with `DescribeSnapshots` (`OwnerIds=[self]`, `RestorableByUserIds=[all]`:
//! AWS answers with the public ones only), then each candidate's
//! `createVolumePermission` is read and only those granting group `all` are
//! kept: that read is the exact pre-state of each, and it keeps the step
//! right where a `DescribeSnapshots` answer is wider than asked (the local
//! emulator ignores both parameters). Only snapshots whose owner is the
//! target account are kept, for the same reason.
//!
//! More public snapshots than the step's `max-snapshots` refuses the step
//! before any change: so many public snapshots at once are worth a look
//! (a data-sharing programme, a public AMI pipeline) before they all go
//! private.
//!
//! Apply re-reads each snapshot before removing its permission, so a resume
//! after a crash finishes only what is left; undo adds `all` back to the
//! snapshots of the pre-state that lack it now, which is what the step took.
//! Calls about several snapshots go out [`CONCURRENCY`] at a time.

use std::future::Future;

use aws_sdk_ec2::types::OperationType;
use cordon_core::action::MakeAccountSnapshotsPrivate as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::snapshot_private::{
    SnapshotPermissionsPreState, check_private, check_restored, line, modify, read, restore,
};
use super::try_join_all;
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::ops;

/// The `make-account-snapshots-private` handler.
#[derive(Debug)]
pub struct MakeAccountSnapshotsPrivate;

/// How many snapshots are read or changed at once. The EC2 throttle buckets
/// bound the rate; this bounds what one step has in flight.
pub const CONCURRENCY: usize = 8;

/// The account's public snapshots before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountSnapshotsPreState {
    pub account_id: String,
    pub region: String,
    /// Each public snapshot with its whole permission list as read, by id.
    pub snapshots: Vec<SnapshotPermissionsPreState>,
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountSnapshotsOutcome {
    /// The calls made by this attempt (a resumed apply lists only what was left).
    pub changed: Vec<String>,
}

/// What undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountSnapshotsUndone {
    /// The calls made; empty when nothing needed restoring.
    pub restored: Vec<String>,
}

/// `f` for every item, [`CONCURRENCY`] at a time, outputs in input order;
/// the first failure stops the chunks after it.
async fn each<'a, T, R, Fut>(
    items: &'a [T],
    f: impl Fn(&'a T) -> Fut,
) -> Result<Vec<R>, ActionError>
where
    Fut: Future<Output = Result<R, ActionError>>,
{
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(CONCURRENCY) {
        out.extend(try_join_all(chunk.iter().map(&f).collect()).await?);
    }
    Ok(out)
}

/// The snapshot's permissions now, or `None` when it was deleted since the
/// pre-state was read (a deleted snapshot is public to no one).
async fn read_present(
    ctx: Ctx<'_>,
    snapshot_id: &str,
) -> Result<Option<SnapshotPermissionsPreState>, ActionError> {
    match read(ctx, snapshot_id).await {
        Ok(live) => Ok(Some(live)),
        Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The ids of the snapshots `account` owns that AWS lists as restorable by
/// everyone (every page), sorted.
async fn candidates(ctx: Ctx<'_>, account: &str, label: &str) -> Result<Vec<String>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .restorable_by_user_ids("all")
        .max_results(1000);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SNAPSHOTS, label, request)
        .await?;
    let mut ids: Vec<String> = items(&pages, |page| page.snapshots())
        .iter()
        .filter(|s| s.owner_id() == Some(account))
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The refusal when more than `cap` snapshots are public.
fn too_many(label: &str, at_least: usize, listed: usize, cap: u32) -> ActionError {
    ActionError::new(
        ErrorKind::Refused,
        label,
        format!(
            "at least {at_least} of the {listed} snapshots listed as restorable by everyone are public, more than the step's `max-snapshots` ({cap}); nothing was changed"
        ),
        "look at them first (`aws ec2 describe-snapshots --owner-ids self --restorable-by-user-ids all`), then raise `with: max-snapshots` in the playbook or make them private in batches",
    )
}

impl Handler for MakeAccountSnapshotsPrivate {
    type Params = Params;
    type PreState = AccountSnapshotsPreState;
    type Outcome = AccountSnapshotsOutcome;
    type Undone = AccountSnapshotsUndone;

    async fn pre_state(ctx: Ctx<'_>, p: &Params) -> Result<AccountSnapshotsPreState, ActionError> {
        let (account_id, region) = ctx.account()?;
        let label = ctx.step.target.label();
        let ids = candidates(ctx, account_id, &label).await?;
        let cap = usize::try_from(p.max_snapshots).unwrap_or(usize::MAX);
        let mut snapshots = Vec::new();
        // Chunk by chunk, so that an account with thousands of public
        // snapshots is refused after a few reads, not thousands.
        for chunk in ids.chunks(CONCURRENCY) {
            let read = try_join_all(chunk.iter().map(|id| read_present(ctx, id)).collect()).await?;
            snapshots.extend(read.into_iter().flatten().filter(|s| s.public()));
            if snapshots.len() > cap {
                return Err(too_many(
                    &label,
                    snapshots.len(),
                    ids.len(),
                    p.max_snapshots,
                ));
            }
        }
        Ok(AccountSnapshotsPreState {
            account_id: account_id.to_string(),
            region: region.to_string(),
            snapshots,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AccountSnapshotsPreState,
    ) -> Result<AccountSnapshotsOutcome, ActionError> {
        let changed = each(&pre.snapshots, |snapshot| async move {
            let id = &snapshot.snapshot_id;
            match read_present(ctx, id).await? {
                Some(live) if live.public() => {
                    modify(ctx, id, OperationType::Remove).await?;
                    Ok(Some(line(OperationType::Remove, id)))
                }
                _ => Ok(None),
            }
        })
        .await?;
        Ok(AccountSnapshotsOutcome {
            changed: changed.into_iter().flatten().collect(),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AccountSnapshotsPreState,
        _outcome: &AccountSnapshotsOutcome,
    ) -> Result<(), ActionError> {
        each(&pre.snapshots, |snapshot| async move {
            match read_present(ctx, &snapshot.snapshot_id).await? {
                Some(live) => check_private(&live),
                None => Ok(()),
            }
        })
        .await?;
        Ok(())
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AccountSnapshotsPreState,
        _outcome: Option<&AccountSnapshotsOutcome>,
    ) -> Result<AccountSnapshotsUndone, ActionError> {
        let restored = each(&pre.snapshots, |snapshot| restore(ctx, snapshot)).await?;
        Ok(AccountSnapshotsUndone {
            restored: restored.into_iter().flatten().collect(),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &AccountSnapshotsPreState,
    ) -> Result<(), ActionError> {
        each(&pre.snapshots, |snapshot| check_restored(ctx, snapshot)).await?;
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &AccountSnapshotsPreState) -> Vec<String> {
        pre.snapshots
            .iter()
            .map(|s| line(OperationType::Remove, &s.snapshot_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_count_and_the_option_on_one_line() {
        let error = too_many("account 123456789012 in us-east-1", 51, 60, 50);
        let shown = error.to_string();
        assert_eq!(error.kind, ErrorKind::Refused);
        assert!(!shown.contains('\n'), "{shown}");
        for words in ["at least 51", "`max-snapshots` (50)", "nothing was changed"] {
            assert!(shown.contains(words), "{shown}");
        }
    }
}
