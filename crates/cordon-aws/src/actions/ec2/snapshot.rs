//! `snapshot-volumes`: an EBS snapshot of every attached volume, tagged with
//! the case, so the disks' state at containment time is kept as evidence.
//!
//! Snapshots are found again by their case and step tags, so a re-run after a
//! crash reuses what an earlier attempt created instead of taking duplicates
//! (a volume also accepts a new snapshot only every ~15 seconds). The same
//! lookup reconciles a `CreateSnapshot` attempt that got no answer: it is
//! never re-sent before the tags show it took no snapshot.
//!
//! Undo keeps the snapshots unless the step says `delete-on-rollback`: they
//! are evidence, and rolling containment back must not destroy evidence.
//!
//! An instance with no EBS volume fails the step (never "done" with nothing
//! kept). A volume attached after the pre-state was read fails verification;
//! the retry amends the pre-state with it and snapshots it too.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Snapshot, SnapshotState, Tag, TagSpecification};
use cordon_core::action::SnapshotVolumes as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::capture::instance_volumes;
use super::{Sent, describe_instance, filter, send_reconciled, try_join_all};
use crate::actions::{Amended, Ctx, Handler};
use crate::call::items;
use crate::ops;
use cordon_core::progress::TARGET as PROGRESS;

/// The progress record journaled before an attempt's first CreateSnapshot.
pub const PHASE_CREATING_SNAPSHOTS: &str = "creating-snapshots";

/// The `snapshot-volumes` handler.
#[derive(Debug)]
pub struct SnapshotVolumes;

/// The EBS volumes attached when the step started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotPreState {
    /// The instance the volumes were attached to.
    #[serde(alias = "instance_id")]
    pub instance_id: String,
    /// In block-device-mapping order.
    pub volumes: Vec<AttachedVolume>,
}

/// One attached EBS volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AttachedVolume {
    /// The volume.
    #[serde(alias = "volume_id")]
    pub volume_id: String,
    /// Where it is attached, e.g. `/dev/xvda`.
    #[serde(alias = "device_name")]
    pub device_name: String,
}

/// The snapshots taken (or reused), per volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotOutcome {
    /// One per volume of the pre-state.
    pub snapshots: Vec<VolumeSnapshot>,
}

/// What undo did with the case's snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SnapshotUndone {
    /// Kept as evidence (the default).
    Kept {
        /// The snapshots kept.
        kept: Vec<String>,
        /// Why they are kept.
        why: String,
    },
    /// Deleted, as the step's `delete-on-rollback` asks.
    Deleted {
        /// The snapshots deleted (already-gone ones included).
        deleted: Vec<String>,
    },
}

/// One volume's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VolumeSnapshot {
    /// The volume snapshotted.
    #[serde(alias = "volume_id")]
    pub volume_id: String,
    /// Its device name on the instance.
    #[serde(alias = "device_name")]
    pub device_name: String,
    /// The snapshot.
    #[serde(alias = "snapshot_id")]
    pub snapshot_id: String,
    /// `pending` or `completed` when apply returned.
    pub state: String,
    /// True when an earlier attempt of this step had already taken it.
    pub reused: bool,
}

/// Tag keys put on every snapshot.
pub const CASE_TAG: &str = "cordon:case-id";
/// The finding's id.
pub const FINDING_TAG: &str = "cordon:finding-id";
/// The instance the volume was attached to.
pub const INSTANCE_TAG: &str = "cordon:instance-id";
/// The device name the volume had.
pub const DEVICE_TAG: &str = "cordon:device";
/// The step id; with the case id, what finds an earlier attempt's snapshots.
pub const STEP_TAG: &str = "cordon:step";

/// Default bound on waiting for completion.
const DEFAULT_WAIT_SECONDS: u64 = 600;
/// Pause between completion polls.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

fn tag_value<'a>(snapshot: &'a Snapshot, key: &str) -> Option<&'a str> {
    snapshot
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// This case's and this step's snapshots, by tag (one filtered, paginated call).
async fn case_snapshots(ctx: Ctx<'_>) -> Result<Vec<Snapshot>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(&format!("tag:{CASE_TAG}"), [ctx.case_id()])?)
        .filters(filter(&format!("tag:{STEP_TAG}"), [&ctx.step.id])?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SNAPSHOTS, ctx.case_id(), request)
        .await?;
    Ok(items(&pages, |page| page.snapshots()))
}

async fn snapshots_by_id(ctx: Ctx<'_>, ids: &[String]) -> Result<Vec<Snapshot>, ActionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let clients = ctx.clients();
    // A filter, not `SnapshotIds`: a deleted snapshot is absent rather than an error.
    let request = clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter("snapshot-id", ids)?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_SNAPSHOTS, &ids.join(","), request)
        .await?;
    Ok(items(&pages, |page| page.snapshots()))
}

/// The EBS volumes attached to the instance now, with their device names.
async fn attached_volumes(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<AttachedVolume>, ActionError> {
    Ok(instance_volumes(ctx, instance_id)
        .await?
        .iter()
        .filter_map(|v| {
            let attachment = v
                .attachments()
                .iter()
                .find(|a| a.instance_id() == Some(instance_id))?;
            Some(AttachedVolume {
                volume_id: v.volume_id()?.to_string(),
                device_name: attachment.device().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

async fn create_snapshot(
    ctx: Ctx<'_>,
    instance_id: &str,
    volume: &AttachedVolume,
) -> Result<Snapshot, ActionError> {
    let clients = ctx.clients();
    let tags = [
        (CASE_TAG, ctx.case_id()),
        (FINDING_TAG, ctx.plan.finding.id.as_str()),
        (INSTANCE_TAG, instance_id),
        (DEVICE_TAG, volume.device_name.as_str()),
        (STEP_TAG, ctx.step.id.as_str()),
    ];
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Snapshot);
    for (key, value) in tags {
        spec = spec.tags(Tag::builder().key(key).value(value).build());
    }
    let request = || {
        clients
            .ec2
            .create_snapshot()
            .volume_id(&volume.volume_id)
            .description(format!(
                "cordon {}: {} of {instance_id} (finding {})",
                ctx.case_id(),
                volume.device_name,
                ctx.plan.finding.id
            ))
            .tag_specifications(spec.clone().build())
    };
    // A snapshot an unanswered attempt took is found by the case and step
    // tags it was created with, like an earlier attempt's.
    let find = || async {
        let earlier = case_snapshots(ctx).await?;
        Ok(earlier.into_iter().find(|s| {
            s.volume_id() == Some(volume.volume_id.as_str())
                && s.state() != Some(&SnapshotState::Error)
        }))
    };
    let op = &ops::EC2_CREATE_SNAPSHOT;
    let out = match send_reconciled(ctx, op, &volume.volume_id, request, find).await? {
        Ok(Sent::Answered(out)) => out,
        Ok(Sent::Found(snapshot)) => return Ok(snapshot),
        Err(e) => return Err(e.into()),
    };
    Ok(Snapshot::builder()
        .set_snapshot_id(out.snapshot_id().map(str::to_string))
        .set_volume_id(out.volume_id().map(str::to_string))
        .set_state(out.state().cloned())
        .set_tags(Some(out.tags().to_vec()))
        .build())
}

/// Deletes a snapshot; one already gone counts as deleted.
async fn delete_snapshot(ctx: Ctx<'_>, snapshot_id: &str) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients.ec2.delete_snapshot().snapshot_id(snapshot_id);
    match clients
        .try_call(&ops::EC2_DELETE_SNAPSHOT, snapshot_id, request)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("InvalidSnapshot.NotFound") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn failed_snapshot(snapshot: &Snapshot) -> ActionError {
    let id = snapshot.snapshot_id().unwrap_or_default();
    ActionError::new(
        ErrorKind::Other,
        id,
        format!(
            "snapshot of {} failed: {}",
            snapshot.volume_id().unwrap_or("its volume"),
            snapshot.state_message().unwrap_or("no reason given")
        ),
        "the step is retried with a new snapshot; if it keeps failing, snapshot the volume by hand",
    )
}

/// Polls until every snapshot is `completed`, sleeping asynchronously between
/// polls, up to `timeout`. A snapshot in `error` fails at once.
async fn wait_completed(
    ctx: Ctx<'_>,
    ids: &[String],
    timeout: Duration,
) -> Result<(), ActionError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let key = format!("snapshots of step {}", ctx.step.id);
    loop {
        let snapshots = snapshots_by_id(ctx, ids).await?;
        if let Some(bad) = snapshots
            .iter()
            .find(|s| s.state() == Some(&SnapshotState::Error))
        {
            return Err(failed_snapshot(bad));
        }
        let pending: Vec<&str> = ids
            .iter()
            .filter(|id| {
                !snapshots.iter().any(|s| {
                    s.snapshot_id() == Some(id.as_str())
                        && s.state() == Some(&SnapshotState::Completed)
                })
            })
            .map(String::as_str)
            .collect();
        if pending.is_empty() {
            tracing::info!(target: PROGRESS, key = %key, done = true, "{} snapshot(s) completed", ids.len());
            return Ok(());
        }
        let now = Instant::now();
        tracing::info!(
            target: PROGRESS,
            key = %key,
            done = now >= deadline,
            "snapshots: {} of {} completed ({}s of at most {}s)",
            ids.len() - pending.len(),
            ids.len(),
            (now - started).as_secs(),
            timeout.as_secs()
        );
        if now >= deadline {
            return Err(ActionError::new(
                ErrorKind::Timeout,
                pending.join(","),
                format!("snapshots still not completed after {}s", timeout.as_secs()),
                "large volumes take long to snapshot; the step is retried (reusing these snapshots), or raise wait-timeout-seconds",
            ));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

impl Handler for SnapshotVolumes {
    type Params = Params;
    type PreState = SnapshotPreState;
    type Outcome = SnapshotOutcome;
    type Undone = SnapshotUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<SnapshotPreState, ActionError> {
        let instance_id = &ctx.instance()?.instance_id;
        let instance = describe_instance(ctx, instance_id).await?;
        let volumes: Vec<AttachedVolume> = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                Some(AttachedVolume {
                    volume_id: m.ebs()?.volume_id()?.to_string(),
                    device_name: m.device_name()?.to_string(),
                })
            })
            .collect();
        if volumes.is_empty() {
            return Err(ActionError::new(
                ErrorKind::InvalidState,
                instance_id,
                "instance has no EBS volume attached: there is nothing to snapshot (instance-store volumes cannot be snapshotted)",
                "preserve the instance's data by other means (disk and memory acquisition on the host); this step cannot",
            ));
        }
        Ok(SnapshotPreState {
            instance_id: instance_id.clone(),
            volumes,
        })
    }

    /// Reuses the snapshots an earlier attempt of this step took (found by
    /// case and step tags; failed ones are ignored) and creates the missing
    /// ones concurrently, then optionally waits for completion.
    async fn apply(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &SnapshotPreState,
    ) -> Result<SnapshotOutcome, ActionError> {
        // Every attempt journals the volumes it is about to snapshot before
        // its first CreateSnapshot, so on the step's first attempt no snapshot
        // of it can exist yet and the tag lookup (one of EC2's slower reads)
        // is skipped: one round fewer on the way to the evidence.
        let earlier = if ctx.first_attempt() {
            Vec::new()
        } else {
            case_snapshots(ctx).await?
        };
        let mut reused: BTreeMap<&str, &Snapshot> = BTreeMap::new();
        for s in &earlier {
            if s.state() == Some(&SnapshotState::Error) {
                continue;
            }
            if let Some(volume) = s.volume_id() {
                // The newest, when an earlier epoch of the case left one too.
                let newer = reused
                    .get(volume)
                    .is_none_or(|kept| kept.start_time() < s.start_time());
                if newer {
                    reused.insert(volume, s);
                }
            }
        }
        let to_create: Vec<&AttachedVolume> = pre
            .volumes
            .iter()
            .filter(|v| !reused.contains_key(v.volume_id.as_str()))
            .collect();
        if !to_create.is_empty() {
            let volumes: Vec<&str> = to_create.iter().map(|v| v.volume_id.as_str()).collect();
            ctx.record_progress(serde_json::json!({
                "phase": PHASE_CREATING_SNAPSHOTS,
                "volumes": volumes,
            }))
            .await?;
        }
        let created = try_join_all(
            to_create
                .iter()
                .map(|v| create_snapshot(ctx, &pre.instance_id, v))
                .collect(),
        )
        .await?;
        let mut snapshots = Vec::new();
        for volume in &pre.volumes {
            let (snapshot, was_reused) = match reused.get(volume.volume_id.as_str()) {
                Some(s) => (*s, true),
                None => match created
                    .iter()
                    .find(|s| s.volume_id() == Some(volume.volume_id.as_str()))
                {
                    Some(s) => (s, false),
                    None => continue,
                },
            };
            if snapshot.state() == Some(&SnapshotState::Error) {
                return Err(failed_snapshot(snapshot));
            }
            snapshots.push(VolumeSnapshot {
                volume_id: volume.volume_id.clone(),
                device_name: volume.device_name.clone(),
                snapshot_id: snapshot.snapshot_id().unwrap_or_default().to_string(),
                state: snapshot
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reused: was_reused,
            });
        }
        if p.wait {
            let ids: Vec<String> = snapshots.iter().map(|s| s.snapshot_id.clone()).collect();
            let timeout =
                Duration::from_secs(p.wait_timeout_seconds.unwrap_or(DEFAULT_WAIT_SECONDS));
            wait_completed(ctx, &ids, timeout).await?;
            for s in &mut snapshots {
                s.state = SnapshotState::Completed.as_str().to_string();
            }
        }
        Ok(SnapshotOutcome { snapshots })
    }

    /// Each volume has a snapshot that exists, carries the case tags and, when
    /// the step waits, is completed.
    async fn verify(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &SnapshotPreState,
        outcome: &SnapshotOutcome,
    ) -> Result<(), ActionError> {
        let ids: Vec<String> = outcome
            .snapshots
            .iter()
            .map(|s| s.snapshot_id.clone())
            .collect();
        let (live, attached) = tokio::join!(
            snapshots_by_id(ctx, &ids),
            attached_volumes(ctx, &pre.instance_id)
        );
        let live = live?;
        if let Some(new) = attached?
            .into_iter()
            .find(|a| !pre.volumes.iter().any(|v| v.volume_id == a.volume_id))
        {
            return Err(ActionError::new(
                ErrorKind::Verification,
                &new.volume_id,
                format!(
                    "volume attached at {} after the pre-state was read has no snapshot",
                    new.device_name
                ),
                "the step is retried: it records the new volume and snapshots it too",
            ));
        }
        let hint = "EC2 is eventually consistent; the step is retried";
        for volume in &pre.volumes {
            let Some(taken) = outcome
                .snapshots
                .iter()
                .find(|s| s.volume_id == volume.volume_id)
            else {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &volume.volume_id,
                    "volume has no snapshot in the step's outcome",
                    hint,
                ));
            };
            let Some(s) = live
                .iter()
                .find(|s| s.snapshot_id() == Some(taken.snapshot_id.as_str()))
            else {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &taken.snapshot_id,
                    format!("snapshot of {} not found", volume.volume_id),
                    hint,
                ));
            };
            for (key, want) in [(CASE_TAG, ctx.case_id()), (STEP_TAG, ctx.step.id.as_str())] {
                if tag_value(s, key) != Some(want) {
                    return Err(ActionError::new(
                        ErrorKind::Verification,
                        &taken.snapshot_id,
                        format!("snapshot lacks tag {key}={want}"),
                        hint,
                    ));
                }
            }
            if s.state() == Some(&SnapshotState::Error) {
                return Err(failed_snapshot(s));
            }
            if p.wait && s.state() != Some(&SnapshotState::Completed) {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    &taken.snapshot_id,
                    "snapshot is not completed",
                    hint,
                ));
            }
        }
        Ok(())
    }

    /// Keeps the snapshots (evidence) unless `delete-on-rollback`; then deletes
    /// every snapshot of this case and step, found by tag, so a crash between
    /// creating and journaling leaves none behind.
    async fn undo(
        ctx: Ctx<'_>,
        p: &Params,
        _pre: &SnapshotPreState,
        outcome: Option<&SnapshotOutcome>,
    ) -> Result<SnapshotUndone, ActionError> {
        let tagged: Vec<String> = case_snapshots(ctx)
            .await?
            .iter()
            .filter_map(|s| s.snapshot_id().map(str::to_string))
            .collect();
        if !p.delete_on_rollback {
            let mut kept = tagged;
            for s in outcome.iter().flat_map(|o| &o.snapshots) {
                if !kept.contains(&s.snapshot_id) {
                    kept.push(s.snapshot_id.clone());
                }
            }
            return Ok(SnapshotUndone::Kept {
                kept,
                why: "snapshots are evidence; rolling back containment keeps them (set delete-on-rollback to change that)".to_string(),
            });
        }
        try_join_all(tagged.iter().map(|id| delete_snapshot(ctx, id)).collect()).await?;
        Ok(SnapshotUndone::Deleted { deleted: tagged })
    }

    /// With `delete-on-rollback`, no snapshot of this case and step is left.
    /// Otherwise the step changed nothing that needs putting back; only the
    /// volumes' existence is checked.
    async fn verify_undone(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &SnapshotPreState,
    ) -> Result<(), ActionError> {
        if p.delete_on_rollback {
            let left = case_snapshots(ctx).await?;
            if let Some(s) = left.first() {
                return Err(ActionError::new(
                    ErrorKind::Verification,
                    s.snapshot_id().unwrap_or_default(),
                    "snapshot still exists after rollback deleted it",
                    "deletion is eventually consistent; rollback retries",
                ));
            }
            return Ok(());
        }
        let ids: Vec<String> = pre.volumes.iter().map(|v| v.volume_id.clone()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let clients = ctx.clients();
        let request = clients
            .ec2
            .describe_volumes()
            .filters(filter("volume-id", &ids)?);
        let pages = clients
            .paginate(&ops::EC2_DESCRIBE_VOLUMES, &ids.join(","), request)
            .await?;
        let volumes = items(&pages, |page| page.volumes());
        if let Some(missing) = ids
            .iter()
            .find(|id| !volumes.iter().any(|v| v.volume_id() == Some(id.as_str())))
        {
            return Err(ActionError::new(
                ErrorKind::InvalidState,
                missing,
                "volume no longer exists (it was not deleted by cordon; its snapshot is kept)",
                "check who deleted the volume; the case's snapshot still holds its data",
            ));
        }
        Ok(())
    }

    /// Volumes attached since the pre-state was read, added to it.
    async fn amend(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &SnapshotPreState,
    ) -> Result<Option<Amended<SnapshotPreState>>, ActionError> {
        let new: Vec<AttachedVolume> = attached_volumes(ctx, &pre.instance_id)
            .await?
            .into_iter()
            .filter(|a| !pre.volumes.iter().any(|v| v.volume_id == a.volume_id))
            .collect();
        if new.is_empty() {
            return Ok(None);
        }
        let added = new.iter().map(|v| v.volume_id.clone()).collect();
        let mut amended = pre.clone();
        amended.volumes.extend(new);
        Ok(Some(Amended {
            pre: amended,
            added,
        }))
    }

    fn describe(ctx: Ctx<'_>, _p: &Params, pre: &SnapshotPreState) -> Vec<String> {
        pre
            .volumes
            .iter()
            .map(|v| {
                format!(
                    "{} {} tags=[{CASE_TAG}={}, {FINDING_TAG}={}, {INSTANCE_TAG}={}, {DEVICE_TAG}={}, {STEP_TAG}={}] (unless an earlier attempt took it)",
                    ops::EC2_CREATE_SNAPSHOT.iam_action,
                    v.volume_id,
                    ctx.case_id(),
                    ctx.plan.finding.id,
                    pre.instance_id,
                    v.device_name,
                    ctx.step.id
                )
            })
            .collect()
    }
}
