//! `enable-termination-protection`: keeps the instance and its disks for
//! forensics. No API termination, a shutdown from inside only stops the
//! instance, and EBS volumes survive a termination anyway.
//!
//! `DisableApiStop` is never set: a responder may need to stop the instance
//! later (to image memory-less disks, or to move it), and that attribute
//! would block it.
//!
//! EC2 modifies one attribute per `ModifyInstanceAttribute` call, so apply
//! makes up to three calls; they are independent and go out concurrently.
//! The shutdown behaviour is set through the `Attribute`/`Value` form of the
//! call, which AWS documents for `instanceInitiatedShutdownBehavior` and which
//! the emulator (moto 5.2.5) understands: it misreads the
//! `InstanceInitiatedShutdownBehavior.Value` form as a request to clear the
//! instance's security groups.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, EbsInstanceBlockDeviceSpecification, InstanceAttributeName,
    InstanceBlockDeviceMappingSpecification,
};
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::{BoxedCall, describe_instance, join_all, try_join_all};
use crate::actions::{Ctx, Handler};
use crate::ops;

/// The `enable-termination-protection` handler.
#[derive(Debug)]
pub struct EnableTerminationProtection;

/// The three attributes as they were before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProtectionPreState {
    /// The instance the attributes belong to.
    #[serde(alias = "instance_id")]
    pub instance_id: String,
    /// `DisableApiTermination`.
    #[serde(alias = "disable_api_termination")]
    pub disable_api_termination: bool,
    /// `InstanceInitiatedShutdownBehavior`: `stop` or `terminate`.
    #[serde(alias = "shutdown_behavior")]
    pub shutdown_behavior: String,
    /// Every EBS block-device mapping, by device name.
    #[serde(alias = "ebs_mappings")]
    pub ebs_mappings: Vec<EbsMapping>,
}

/// One EBS mapping's `DeleteOnTermination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EbsMapping {
    /// Device name, e.g. `/dev/xvda`: what `ModifyInstanceAttribute` keys on.
    #[serde(alias = "device_name")]
    pub device_name: String,
    /// The volume mapped there, so a later remapping is noticed.
    #[serde(alias = "volume_id")]
    pub volume_id: String,
    /// `DeleteOnTermination`.
    #[serde(alias = "delete_on_termination")]
    pub delete_on_termination: bool,
}

/// The calls apply made, one line each (as in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProtectionOutcome {
    /// Empty when the instance was already protected.
    pub changed: Vec<String>,
}

/// The calls undo made, one line each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProtectionUndone {
    /// Empty when every attribute was already back.
    pub restored: Vec<String>,
}

/// The attributes as they read now; the same shape as the pre-state.
type Live = ProtectionPreState;

const STOP: &str = "stop";

async fn attribute(
    ctx: Ctx<'_>,
    instance_id: &str,
    name: InstanceAttributeName,
) -> Result<Attribute, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(name.clone());
    let out = clients
        .call(&ops::EC2_DESCRIBE_INSTANCE_ATTRIBUTE, instance_id, request)
        .await?;
    Ok(match name {
        InstanceAttributeName::DisableApiTermination => Attribute::Flag(
            out.disable_api_termination()
                .and_then(|v| v.value())
                .unwrap_or(false),
        ),
        _ => Attribute::Text(
            out.instance_initiated_shutdown_behavior()
                .and_then(|v| v.value())
                .unwrap_or(STOP)
                .to_string(),
        ),
    })
}

/// One attribute's value as `DescribeInstanceAttribute` answers it.
#[derive(Debug)]
enum Attribute {
    Flag(bool),
    Text(String),
}

/// Reads the three attributes: DescribeInstances (block devices; moto 5.2.5
/// returns no `blockDeviceMapping` attribute, and the instance describe is
/// needed anyway to tell a missing or terminated instance apart) and the two
/// DescribeInstanceAttribute calls, all concurrently.
async fn read(ctx: Ctx<'_>, instance_id: &str) -> Result<Live, ActionError> {
    let (instance, attributes) = tokio::join!(
        describe_instance(ctx, instance_id),
        join_all(vec![
            attribute(
                ctx,
                instance_id,
                InstanceAttributeName::DisableApiTermination
            ),
            attribute(
                ctx,
                instance_id,
                InstanceAttributeName::InstanceInitiatedShutdownBehavior
            ),
        ])
    );
    // The instance's own error (not found, terminated) is the clearest one.
    let instance = instance?;
    let attributes: Vec<Attribute> = attributes.into_iter().collect::<Result<_, _>>()?;
    let ebs_mappings = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            Some(EbsMapping {
                device_name: m.device_name()?.to_string(),
                volume_id: ebs.volume_id().unwrap_or_default().to_string(),
                delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
            })
        })
        .collect();
    Ok(Live {
        instance_id: instance_id.to_string(),
        disable_api_termination: matches!(attributes.first(), Some(Attribute::Flag(true))),
        shutdown_behavior: match attributes.get(1) {
            Some(Attribute::Text(behavior)) => behavior.clone(),
            _ => STOP.to_string(),
        },
        ebs_mappings,
    })
}

/// The change apply makes from `pre`: only what differs from the target.
#[derive(Debug, Default, PartialEq, Eq)]
struct Change {
    disable_api_termination: Option<bool>,
    shutdown_behavior: Option<String>,
    /// Device name → DeleteOnTermination.
    delete_on_termination: Vec<(String, bool)>,
}

impl Change {
    fn is_empty(&self) -> bool {
        *self == Change::default()
    }

    /// From `from` to the hardened state the params ask for.
    fn harden(
        p: &cordon_core::action::EnableTerminationProtection,
        from: &ProtectionPreState,
    ) -> Change {
        Change {
            disable_api_termination: (!from.disable_api_termination).then_some(true),
            shutdown_behavior: (p.stop_on_shutdown && from.shutdown_behavior != STOP)
                .then(|| STOP.to_string()),
            delete_on_termination: if p.keep_volumes {
                from.ebs_mappings
                    .iter()
                    .filter(|m| m.delete_on_termination)
                    .map(|m| (m.device_name.clone(), false))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// From `live` back to `pre`, for what differs; mappings no longer on the
    /// instance (or now holding another volume) cannot be restored and are skipped.
    fn restore(pre: &ProtectionPreState, live: &Live) -> Change {
        Change {
            disable_api_termination: (live.disable_api_termination != pre.disable_api_termination)
                .then_some(pre.disable_api_termination),
            shutdown_behavior: (live.shutdown_behavior != pre.shutdown_behavior)
                .then(|| pre.shutdown_behavior.clone()),
            delete_on_termination: pre
                .ebs_mappings
                .iter()
                .filter(|m| {
                    live.ebs_mappings.iter().any(|l| {
                        l.device_name == m.device_name
                            && l.volume_id == m.volume_id
                            && l.delete_on_termination != m.delete_on_termination
                    })
                })
                .map(|m| (m.device_name.clone(), m.delete_on_termination))
                .collect(),
        }
    }

    fn describe(&self, instance_id: &str) -> Vec<String> {
        let call = ops::EC2_MODIFY_INSTANCE_ATTRIBUTE.iam_action;
        let mut lines = Vec::new();
        if let Some(v) = self.disable_api_termination {
            lines.push(format!("{call} {instance_id} DisableApiTermination={v}"));
        }
        if let Some(v) = &self.shutdown_behavior {
            lines.push(format!(
                "{call} {instance_id} InstanceInitiatedShutdownBehavior={v}"
            ));
        }
        if !self.delete_on_termination.is_empty() {
            let mappings: Vec<String> = self
                .delete_on_termination
                .iter()
                .map(|(device, v)| format!("{device}:DeleteOnTermination={v}"))
                .collect();
            lines.push(format!(
                "{call} {instance_id} BlockDeviceMappings=[{}]",
                mappings.join(", ")
            ));
        }
        lines
    }

    /// Makes the calls concurrently (one attribute per call, as EC2 requires).
    async fn send(&self, ctx: Ctx<'_>, instance_id: &str) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let modify = || {
            clients
                .ec2
                .modify_instance_attribute()
                .instance_id(instance_id)
        };
        let mut requests = Vec::new();
        if let Some(v) = self.disable_api_termination {
            requests.push(
                modify().disable_api_termination(AttributeBooleanValue::builder().value(v).build()),
            );
        }
        if let Some(v) = self.shutdown_behavior.clone() {
            requests.push(
                modify()
                    .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                    .value(v),
            );
        }
        if !self.delete_on_termination.is_empty() {
            let mappings = self
                .delete_on_termination
                .iter()
                .map(|(device, v)| {
                    InstanceBlockDeviceMappingSpecification::builder()
                        .device_name(device)
                        .ebs(
                            EbsInstanceBlockDeviceSpecification::builder()
                                .delete_on_termination(*v)
                                .build(),
                        )
                        .build()
                })
                .collect();
            requests.push(modify().set_block_device_mappings(Some(mappings)));
        }
        let calls: Vec<BoxedCall<'_, ()>> = requests
            .into_iter()
            .map(|request| {
                Box::pin(async move {
                    clients
                        .call(&ops::EC2_MODIFY_INSTANCE_ATTRIBUTE, instance_id, request)
                        .await?;
                    Ok(())
                }) as BoxedCall<'_, ()>
            })
            .collect();
        try_join_all(calls).await.map(drop)
    }
}

fn mismatch(instance_id: &str, what: String, hint: &str) -> ActionError {
    ActionError::new(ErrorKind::Verification, instance_id, what, hint)
}

impl Handler for EnableTerminationProtection {
    type Params = cordon_core::action::EnableTerminationProtection;
    type PreState = ProtectionPreState;
    type Outcome = ProtectionOutcome;
    type Undone = ProtectionUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Self::Params) -> Result<ProtectionPreState, ActionError> {
        read(ctx, &ctx.instance()?.instance_id).await
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &Self::Params,
        pre: &ProtectionPreState,
    ) -> Result<ProtectionOutcome, ActionError> {
        // Computed from the journaled pre-state, so a re-apply after a crash
        // makes the same (idempotent) calls whatever was already done.
        let change = Change::harden(p, pre);
        change.send(ctx, &pre.instance_id).await?;
        Ok(ProtectionOutcome {
            changed: change.describe(&pre.instance_id),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        p: &Self::Params,
        pre: &ProtectionPreState,
        _outcome: &ProtectionOutcome,
    ) -> Result<(), ActionError> {
        let live = read(ctx, &pre.instance_id).await?;
        let hint = "EC2 attributes are eventually consistent; the step is retried, and if it persists check who else modifies the instance";
        if !live.disable_api_termination {
            return Err(mismatch(
                &pre.instance_id,
                "DisableApiTermination reads back false".into(),
                hint,
            ));
        }
        if p.stop_on_shutdown && live.shutdown_behavior != STOP {
            return Err(mismatch(
                &pre.instance_id,
                format!(
                    "InstanceInitiatedShutdownBehavior reads back {:?}, not \"stop\"",
                    live.shutdown_behavior
                ),
                hint,
            ));
        }
        if p.keep_volumes
            && let Some(m) = live.ebs_mappings.iter().find(|m| m.delete_on_termination)
        {
            return Err(mismatch(
                &pre.instance_id,
                format!(
                    "{} ({}) still has DeleteOnTermination=true",
                    m.device_name, m.volume_id
                ),
                hint,
            ));
        }
        Ok(())
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Self::Params,
        pre: &ProtectionPreState,
        _outcome: Option<&ProtectionOutcome>,
    ) -> Result<ProtectionUndone, ActionError> {
        // Read first and write back only what differs: works the same from a
        // fully applied, half-applied or already-undone instance.
        let live = read(ctx, &pre.instance_id).await?;
        let change = Change::restore(pre, &live);
        if !change.is_empty() {
            change.send(ctx, &pre.instance_id).await?;
        }
        Ok(ProtectionUndone {
            restored: change.describe(&pre.instance_id),
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Self::Params,
        pre: &ProtectionPreState,
    ) -> Result<(), ActionError> {
        let live = read(ctx, &pre.instance_id).await?;
        let hint = "rollback retries; if it persists set the attribute back by hand (see the step's pre-state)";
        if live.disable_api_termination != pre.disable_api_termination {
            return Err(mismatch(
                &pre.instance_id,
                format!(
                    "DisableApiTermination reads back {}, but was {} before the case",
                    live.disable_api_termination, pre.disable_api_termination
                ),
                hint,
            ));
        }
        if live.shutdown_behavior != pre.shutdown_behavior {
            return Err(mismatch(
                &pre.instance_id,
                format!(
                    "InstanceInitiatedShutdownBehavior reads back {:?}, but was {:?} before the case",
                    live.shutdown_behavior, pre.shutdown_behavior
                ),
                hint,
            ));
        }
        for m in &pre.ebs_mappings {
            // A volume detached since cannot carry the attribute back; that is
            // not this step's doing, so only mappings still in place are checked.
            let Some(l) = live
                .ebs_mappings
                .iter()
                .find(|l| l.device_name == m.device_name && l.volume_id == m.volume_id)
            else {
                continue;
            };
            if l.delete_on_termination != m.delete_on_termination {
                return Err(mismatch(
                    &pre.instance_id,
                    format!(
                        "{} ({}) reads back DeleteOnTermination={}, but it was {} before the case",
                        m.device_name,
                        m.volume_id,
                        l.delete_on_termination,
                        m.delete_on_termination
                    ),
                    hint,
                ));
            }
        }
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, p: &Self::Params, pre: &ProtectionPreState) -> Vec<String> {
        Change::harden(p, pre).describe(&pre.instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre() -> ProtectionPreState {
        ProtectionPreState {
            instance_id: "i-1".into(),
            disable_api_termination: false,
            shutdown_behavior: "terminate".into(),
            ebs_mappings: vec![
                EbsMapping {
                    device_name: "/dev/xvda".into(),
                    volume_id: "vol-1".into(),
                    delete_on_termination: true,
                },
                EbsMapping {
                    device_name: "/dev/sdf".into(),
                    volume_id: "vol-2".into(),
                    delete_on_termination: false,
                },
            ],
        }
    }

    #[test]
    fn harden_changes_only_what_differs_and_never_disable_api_stop() {
        let p = cordon_core::action::EnableTerminationProtection::default();
        let lines = Change::harden(&p, &pre()).describe("i-1");
        assert_eq!(
            lines,
            vec![
                "ec2:ModifyInstanceAttribute i-1 DisableApiTermination=true",
                "ec2:ModifyInstanceAttribute i-1 InstanceInitiatedShutdownBehavior=stop",
                "ec2:ModifyInstanceAttribute i-1 BlockDeviceMappings=[/dev/xvda:DeleteOnTermination=false]",
            ]
        );
        assert!(lines.iter().all(|l| !l.contains("DisableApiStop")));
        let hardened = ProtectionPreState {
            disable_api_termination: true,
            shutdown_behavior: "stop".into(),
            ebs_mappings: vec![],
            ..pre()
        };
        assert!(Change::harden(&p, &hardened).is_empty());
    }

    #[test]
    fn restore_skips_what_is_already_back_and_remapped_devices() {
        let mut live = pre();
        live.disable_api_termination = true;
        live.ebs_mappings[0].delete_on_termination = false;
        live.ebs_mappings[1].volume_id = "vol-other".into();
        live.ebs_mappings[1].delete_on_termination = true;
        let change = Change::restore(&pre(), &live);
        assert_eq!(
            change,
            Change {
                disable_api_termination: Some(false),
                shutdown_behavior: None,
                delete_on_termination: vec![("/dev/xvda".into(), true)],
            }
        );
        assert!(Change::restore(&pre(), &pre()).is_empty());
    }
}
