//! `capture-instance-metadata` and `capture-console-output`: read-only evidence
//! captures. They change nothing in AWS; each writes one evidence object and
//! records its location, size and SHA-256 as the step's outcome.
//!
//! Rollback keeps the evidence: it undoes containment, not the record of what
//! the instance looked like. Deleting it would break the case's manifest and
//! hash chain, and an Object Lock bucket would refuse it anyway.

use aws_sdk_ec2::types::{Instance, IpPermission, NetworkInterface, SecurityGroup, Tag, Volume};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use cordon_core::action::{
    CaptureConsoleOutput as ConsoleParams, CaptureInstanceMetadata as MetadataParams,
};
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use super::{describe_instance, filter, instance_network_interfaces};
use crate::actions::{Ctx, Handler};
use crate::call::items;
use crate::evidence::{EvidenceRef, EvidenceStore, get_s3, sha256_hex};
use crate::ops;

/// The handler for `capture-instance-metadata`.
#[derive(Debug)]
pub struct CaptureInstanceMetadata;

/// The handler for `capture-console-output`.
#[derive(Debug)]
pub struct CaptureConsoleOutput;

/// Captures change nothing, so there is nothing to restore: the pre-state only
/// names the instance (and, where it was read, the state it was in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CapturePreState {
    pub instance_id: String,
    pub instance_state: Option<String>,
}

/// What `capture-instance-metadata` stored: the evidence object and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataOutcome {
    /// Where the document is, its size and SHA-256.
    #[serde(flatten)]
    pub evidence: EvidenceRef,
    pub instance_id: String,
    /// How many of each the document describes.
    pub network_interfaces: usize,
    pub volumes: usize,
    pub security_groups: usize,
}

/// What `capture-console-output` stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConsoleOutcome {
    /// Where the output is, its size and SHA-256.
    #[serde(flatten)]
    pub evidence: EvidenceRef,
    pub instance_id: String,
    /// Whether the latest output was asked for (Nitro instances).
    pub latest: bool,
    /// EC2 had no output to give.
    pub empty: bool,
    /// When EC2 took the output (RFC 3339).
    pub console_timestamp: Option<String>,
    /// Why an empty capture is not a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Rollback of a capture: the evidence stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CaptureUndone {
    /// Always false: a capture changed nothing.
    pub changed: bool,
    /// The evidence kept; absent when the capture never completed.
    pub kept: Option<String>,
    /// Why it is kept.
    pub reason: String,
}

/// The evidence object name for an instance's metadata document.
pub fn metadata_evidence_name(instance_id: &str) -> String {
    format!("instance-metadata-{instance_id}.json")
}

/// The evidence object name for an instance's console output.
pub fn console_evidence_name(instance_id: &str) -> String {
    format!("console-output-{instance_id}.txt")
}

/// Reads an evidence object back from where [`EvidenceRef::location`] says it
/// is, so verification re-hashes what was stored rather than trusting the
/// store's own checksum (the emulator accepts wrong ones; see DESIGN).
pub async fn read_evidence(ctx: Ctx<'_>, evidence: &EvidenceRef) -> Result<Vec<u8>, ActionError> {
    if let Some(path) = evidence.location.strip_prefix("file://") {
        return tokio::fs::read(path).await.map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Other
            };
            ActionError::new(
                kind,
                &evidence.location,
                format!("cannot read the evidence back: {e}"),
                "the evidence file was moved or deleted; run the capture again (resume after rolling the step back)",
            )
        });
    }
    if let Some((bucket, key)) = evidence
        .location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    {
        // The store's own clients when it has them: the evidence bucket may
        // live in another account than the one being contained.
        let clients = match &ctx.aws.evidence {
            EvidenceStore::S3 { clients, .. } => clients.as_ref(),
            EvidenceStore::LocalDir(_) => ctx.clients(),
        };
        return get_s3(clients, bucket, key, evidence.version_id.as_deref()).await;
    }
    Err(ActionError::new(
        ErrorKind::Other,
        &evidence.location,
        "cordon cannot read evidence back from this kind of location",
        "report this as a cordon bug",
    ))
}

/// Re-hashes the stored object and compares it with the size and SHA-256
/// recorded when it was written.
async fn verify_evidence(ctx: Ctx<'_>, evidence: &EvidenceRef) -> Result<(), ActionError> {
    let bytes = read_evidence(ctx, evidence).await?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != evidence.sha256 || bytes.len() as u64 != evidence.size {
        return Err(ActionError::new(
            ErrorKind::Verification,
            &evidence.location,
            format!(
                "the stored evidence does not match what was written (SHA-256 {sha256}, {} bytes; expected {}, {} bytes)",
                bytes.len(),
                evidence.sha256,
                evidence.size
            ),
            "treat the object as tampered with: keep it for the record and capture again",
        ));
    }
    Ok(())
}

fn kept(evidence: Option<&EvidenceRef>) -> CaptureUndone {
    match evidence {
        Some(evidence) => CaptureUndone {
            changed: false,
            kept: Some(evidence.location.clone()),
            reason: "evidence is kept on rollback: it records what was seen, and the case manifest depends on it".to_string(),
        },
        None => CaptureUndone {
            changed: false,
            kept: None,
            reason: "the capture never completed; nothing was recorded, and any evidence file it wrote is kept".to_string(),
        },
    }
}

fn timestamp(at: Option<&DateTime>) -> Option<String> {
    at.and_then(|t| t.fmt(Format::DateTime).ok())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn tags(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"key": t.key(), "value": t.value()}))
            .collect(),
    )
}

fn instance_json(i: &Instance) -> Value {
    json!({
        "instance-id": i.instance_id(),
        "instance-type": i.instance_type().map(|t| t.as_str()),
        "state": i.state().and_then(|s| s.name()).map(|n| n.as_str()),
        "state-reason": i.state_reason().and_then(|r| r.message()),
        "launch-time": timestamp(i.launch_time()),
        "image-id": i.image_id(),
        "architecture": i.architecture().map(|a| a.as_str()),
        "platform-details": i.platform_details(),
        "key-name": i.key_name(),
        "availability-zone": i.placement().and_then(|p| p.availability_zone()),
        "vpc-id": i.vpc_id(),
        "subnet-id": i.subnet_id(),
        "private-ip-address": i.private_ip_address(),
        "private-dns-name": i.private_dns_name(),
        "public-ip-address": i.public_ip_address(),
        "public-dns-name": i.public_dns_name(),
        "iam-instance-profile": i.iam_instance_profile().map(|p| json!({"arn": p.arn(), "id": p.id()})),
        "security-groups": i.security_groups().iter()
            .map(|g| json!({"group-id": g.group_id(), "group-name": g.group_name()}))
            .collect::<Vec<_>>(),
        "metadata-options": i.metadata_options().map(|m| json!({
            "http-tokens": m.http_tokens().map(|t| t.as_str()),
            "http-endpoint": m.http_endpoint().map(|e| e.as_str()),
            "http-put-response-hop-limit": m.http_put_response_hop_limit(),
        })),
        "root-device-name": i.root_device_name(),
        "block-device-mappings": i.block_device_mappings().iter().map(|b| json!({
            "device-name": b.device_name(),
            "volume-id": b.ebs().and_then(|e| e.volume_id()),
            "delete-on-termination": b.ebs().and_then(|e| e.delete_on_termination()),
        })).collect::<Vec<_>>(),
        "source-dest-check": i.source_dest_check(),
        "monitoring": i.monitoring().and_then(|m| m.state()).map(|s| s.as_str()),
        "tags": tags(i.tags()),
    })
}

fn eni_json(n: &NetworkInterface) -> Value {
    json!({
        "network-interface-id": n.network_interface_id(),
        "interface-type": n.interface_type().map(|t| t.as_str()),
        "status": n.status().map(|s| s.as_str()),
        "description": n.description(),
        "vpc-id": n.vpc_id(),
        "subnet-id": n.subnet_id(),
        "availability-zone": n.availability_zone(),
        "mac-address": n.mac_address(),
        "source-dest-check": n.source_dest_check(),
        "attachment": n.attachment().map(|a| json!({
            "attachment-id": a.attachment_id(),
            "device-index": a.device_index(),
            "status": a.status().map(|s| s.as_str()),
            "delete-on-termination": a.delete_on_termination(),
            "attach-time": timestamp(a.attach_time()),
        })),
        "groups": n.groups().iter()
            .map(|g| json!({"group-id": g.group_id(), "group-name": g.group_name()}))
            .collect::<Vec<_>>(),
        "private-ip-addresses": n.private_ip_addresses().iter().map(|p| json!({
            "private-ip-address": p.private_ip_address(),
            "primary": p.primary(),
            "public-ip": p.association().and_then(|a| a.public_ip()),
        })).collect::<Vec<_>>(),
        "ipv6-addresses": n.ipv6_addresses().iter().map(|a| a.ipv6_address()).collect::<Vec<_>>(),
        "public-ip": n.association().and_then(|a| a.public_ip()),
        "tags": tags(n.tag_set()),
    })
}

fn volume_json(v: &Volume) -> Value {
    json!({
        "volume-id": v.volume_id(),
        "size-gib": v.size(),
        "volume-type": v.volume_type().map(|t| t.as_str()),
        "encrypted": v.encrypted(),
        "kms-key-id": v.kms_key_id(),
        "iops": v.iops(),
        "throughput": v.throughput(),
        "snapshot-id": v.snapshot_id(),
        "state": v.state().map(|s| s.as_str()),
        "availability-zone": v.availability_zone(),
        "create-time": timestamp(v.create_time()),
        "attachments": v.attachments().iter().map(|a| json!({
            "instance-id": a.instance_id(),
            "device": a.device(),
            "state": a.state().map(|s| s.as_str()),
            "delete-on-termination": a.delete_on_termination(),
            "attach-time": timestamp(a.attach_time()),
        })).collect::<Vec<_>>(),
        "tags": tags(v.tags()),
    })
}

fn rules_json(rules: &[IpPermission]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| {
                json!({
                    "ip-protocol": r.ip_protocol(),
                    "from-port": r.from_port(),
                    "to-port": r.to_port(),
                    "ipv4-ranges": r.ip_ranges().iter()
                        .map(|x| json!({"cidr": x.cidr_ip(), "description": x.description()}))
                        .collect::<Vec<_>>(),
                    "ipv6-ranges": r.ipv6_ranges().iter()
                        .map(|x| json!({"cidr": x.cidr_ipv6(), "description": x.description()}))
                        .collect::<Vec<_>>(),
                    "prefix-lists": r.prefix_list_ids().iter()
                        .map(|x| json!({"prefix-list-id": x.prefix_list_id(), "description": x.description()}))
                        .collect::<Vec<_>>(),
                    "groups": r.user_id_group_pairs().iter()
                        .map(|x| json!({
                            "group-id": x.group_id(),
                            "user-id": x.user_id(),
                            "vpc-id": x.vpc_id(),
                            "description": x.description(),
                        }))
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn security_group_json(g: &SecurityGroup) -> Value {
    json!({
        "group-id": g.group_id(),
        "group-name": g.group_name(),
        "description": g.description(),
        "vpc-id": g.vpc_id(),
        "owner-id": g.owner_id(),
        "ingress": rules_json(g.ip_permissions()),
        "egress": rules_json(g.ip_permissions_egress()),
        "tags": tags(g.tags()),
    })
}

/// Every EBS volume attached to the instance (filtered, paginated; a
/// terminated instance has none rather than failing the call).
pub(super) async fn instance_volumes(
    ctx: Ctx<'_>,
    instance_id: &str,
) -> Result<Vec<Volume>, ActionError> {
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", [instance_id])?);
    let pages = clients
        .paginate(&ops::EC2_DESCRIBE_VOLUMES, instance_id, request)
        .await?;
    Ok(items(&pages, |page| page.volumes()))
}

/// The groups the instance's ENIs are most likely in when its capture runs:
/// those the finding saw, and the isolation groups the plan's isolate step
/// uses (when this process has looked them up).
fn guessed_group_ids(ctx: Ctx<'_>) -> Vec<String> {
    let mut ids: Vec<String> = ctx.instance().map_or_else(
        |_| Vec::new(),
        |target| {
            target
                .network_interfaces
                .iter()
                .flat_map(|eni| {
                    eni.security_group_ids
                        .iter()
                        .map(|g| g.as_str().to_string())
                })
                .collect()
        },
    );
    ids.extend(super::isolate::known_isolation_group_ids(ctx));
    ids.sort();
    ids.dedup();
    // The finding's ids are the attacker's to choose: a long list is no
    // guess worth a call (the groups are then read once the ENIs are known).
    if ids.len() > MAX_GUESSED_GROUPS {
        ids.clear();
    }
    ids
}

/// At most this many groups are read on a guess (five ENIs of five groups,
/// as EC2's default quotas allow, and the isolation groups).
const MAX_GUESSED_GROUPS: usize = 27;

/// The given security groups, in the order asked for.
async fn security_groups(
    ctx: Ctx<'_>,
    instance_id: &str,
    group_ids: &[String],
) -> Result<Vec<SecurityGroup>, ActionError> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let clients = ctx.clients();
    let request = clients
        .ec2
        .describe_security_groups()
        .set_group_ids(Some(group_ids.to_vec()));
    let out = clients
        .call(&ops::EC2_DESCRIBE_SECURITY_GROUPS, instance_id, request)
        .await?;
    let mut found = out.security_groups().to_vec();
    found.sort_by_key(|g| {
        group_ids
            .iter()
            .position(|id| Some(id.as_str()) == g.group_id())
    });
    Ok(found)
}

impl Handler for CaptureInstanceMetadata {
    type Params = MetadataParams;
    type PreState = CapturePreState;
    type Outcome = MetadataOutcome;
    type Undone = CaptureUndone;

    /// No AWS call: a capture changes nothing to restore, and the apply's
    /// first read (`DescribeInstances`) fails as clearly for a missing
    /// instance, a round later than a read here would have, which would delay
    /// the capture by that round every time.
    async fn pre_state(ctx: Ctx<'_>, _p: &MetadataParams) -> Result<CapturePreState, ActionError> {
        Ok(CapturePreState {
            instance_id: ctx.instance()?.instance_id.clone(),
            instance_state: None,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &MetadataParams,
        pre: &CapturePreState,
    ) -> Result<MetadataOutcome, ActionError> {
        let id = pre.instance_id.as_str();
        // Three reads by the instance id, none needing another's answer, and
        // the groups its ENIs are most likely in: one round. Any group the
        // reads show that the guess missed is read after them.
        let guessed = guessed_group_ids(ctx);
        let (instance, enis, volumes, guessed) = tokio::try_join!(
            describe_instance(ctx, id),
            instance_network_interfaces(ctx, id),
            instance_volumes(ctx, id),
            async { Ok(security_groups(ctx, id, &guessed).await.unwrap_or_default()) }
        )?;
        let mut group_ids: Vec<String> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .chain(
                enis.iter()
                    .flat_map(|n| n.groups())
                    .filter_map(|g| g.group_id()),
            )
            .map(str::to_string)
            .collect();
        group_ids.sort();
        group_ids.dedup();
        let missed: Vec<String> = group_ids
            .iter()
            .filter(|g| !guessed.iter().any(|s| s.group_id() == Some(g.as_str())))
            .cloned()
            .collect();
        let mut read = guessed;
        read.extend(security_groups(ctx, id, &missed).await?);
        // Exactly the groups the instance and its ENIs are in, in id order.
        let groups: Vec<SecurityGroup> = group_ids
            .iter()
            .filter_map(|g| {
                read.iter()
                    .find(|s| s.group_id() == Some(g.as_str()))
                    .cloned()
            })
            .collect();
        let document = json!({
            "kind": "cordon/instance-metadata",
            "version": 1,
            "case-id": ctx.case_id(),
            "captured-at": now(),
            "region": ctx.clients().region,
            "instance": instance_json(&instance),
            "network-interfaces": enis.iter().map(eni_json).collect::<Vec<_>>(),
            "volumes": volumes.iter().map(volume_json).collect::<Vec<_>>(),
            "security-groups": groups.iter().map(security_group_json).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec_pretty(&document).map_err(|e| {
            ActionError::new(
                ErrorKind::Other,
                id,
                format!("cannot serialize the instance metadata: {e}"),
                "report this as a cordon bug",
            )
        })?;
        let evidence = ctx
            .aws
            .evidence
            .put(&ctx.plan.case_id, &metadata_evidence_name(id), bytes)
            .await?;
        info!(instance = id, location = %evidence.location, sha256 = %evidence.sha256, "instance metadata captured");
        Ok(MetadataOutcome {
            evidence,
            instance_id: id.to_string(),
            network_interfaces: enis.len(),
            volumes: volumes.len(),
            security_groups: groups.len(),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &MetadataParams,
        _pre: &CapturePreState,
        outcome: &MetadataOutcome,
    ) -> Result<(), ActionError> {
        verify_evidence(ctx, &outcome.evidence).await
    }

    async fn undo(
        _ctx: Ctx<'_>,
        _p: &MetadataParams,
        _pre: &CapturePreState,
        outcome: Option<&MetadataOutcome>,
    ) -> Result<CaptureUndone, ActionError> {
        Ok(kept(outcome.map(|o| &o.evidence)))
    }

    async fn verify_undone(
        _ctx: Ctx<'_>,
        _p: &MetadataParams,
        _pre: &CapturePreState,
    ) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _p: &MetadataParams, pre: &CapturePreState) -> Vec<String> {
        vec![format!(
            "evidence: write {} to the case's evidence store (read-only on the instance)",
            metadata_evidence_name(&pre.instance_id)
        )]
    }
}

impl Handler for CaptureConsoleOutput {
    type Params = ConsoleParams;
    type PreState = CapturePreState;
    type Outcome = ConsoleOutcome;
    type Undone = CaptureUndone;

    /// No AWS call: the step's only permission is `ec2:GetConsoleOutput`, which
    /// itself fails clearly (`InvalidInstanceID.NotFound`) for a missing instance.
    async fn pre_state(ctx: Ctx<'_>, _p: &ConsoleParams) -> Result<CapturePreState, ActionError> {
        Ok(CapturePreState {
            instance_id: ctx.instance()?.instance_id.clone(),
            instance_state: None,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &ConsoleParams,
        pre: &CapturePreState,
    ) -> Result<ConsoleOutcome, ActionError> {
        let id = pre.instance_id.as_str();
        let latest = p.latest;
        let clients = ctx.clients();
        let request = clients
            .ec2
            .get_console_output()
            .instance_id(id)
            .latest(latest);
        let out = clients
            .call(&ops::EC2_GET_CONSOLE_OUTPUT, id, request)
            .await
            .map_err(|e| {
                let mut err = ActionError::from(e);
                if latest && err.kind == ErrorKind::Other {
                    err.hint = format!(
                        "{}; `latest: true` only works on Nitro instances: set it to false for older types",
                        err.hint
                    );
                }
                err
            })?;
        let encoded = out.output().unwrap_or_default().trim();
        let bytes = aws_smithy_types::base64::decode(encoded).map_err(|e| {
            ActionError::new(
                ErrorKind::Other,
                id,
                format!("EC2 returned console output that is not valid base64: {e}"),
                "retry the capture; if it persists, capture the console from the EC2 console by hand",
            )
        })?;
        let empty = bytes.is_empty();
        let evidence = ctx
            .aws
            .evidence
            .put(&ctx.plan.case_id, &console_evidence_name(id), bytes)
            .await?;
        info!(instance = id, location = %evidence.location, empty, "console output captured");
        Ok(ConsoleOutcome {
            evidence,
            instance_id: id.to_string(),
            latest,
            empty,
            console_timestamp: timestamp(out.timestamp()),
            note: empty.then(|| {
                "EC2 had no console output for the instance (it may have just started, or be a type that buffers none)".to_string()
            }),
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &ConsoleParams,
        _pre: &CapturePreState,
        outcome: &ConsoleOutcome,
    ) -> Result<(), ActionError> {
        verify_evidence(ctx, &outcome.evidence).await
    }

    async fn undo(
        _ctx: Ctx<'_>,
        _p: &ConsoleParams,
        _pre: &CapturePreState,
        outcome: Option<&ConsoleOutcome>,
    ) -> Result<CaptureUndone, ActionError> {
        Ok(kept(outcome.map(|o| &o.evidence)))
    }

    async fn verify_undone(
        _ctx: Ctx<'_>,
        _p: &ConsoleParams,
        _pre: &CapturePreState,
    ) -> Result<(), ActionError> {
        Ok(())
    }

    fn describe(_ctx: Ctx<'_>, _p: &ConsoleParams, pre: &CapturePreState) -> Vec<String> {
        vec![format!(
            "evidence: write {} to the case's evidence store (read-only on the instance)",
            console_evidence_name(&pre.instance_id)
        )]
    }
}
