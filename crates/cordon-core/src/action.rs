//! The closed set of actions a playbook step can run.
//!
//! One enum, one params struct per variant. Every question the engine asks of
//! an action (what it targets, which IAM permissions it needs, whether it can be
//! undone, whether it needs approval) is an exhaustive `match`, so adding a
//! variant is a compile error until every answer is given.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an action operates on; the planner resolves it from the finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// An EC2 instance (and its ENIs and volumes).
    Instance,
    /// An IAM access key (and its user).
    AccessKey,
    /// An IAM user.
    User,
    /// An IAM role (from an assumed-role key or an instance profile).
    Role,
    /// The case itself (evidence, notification).
    Case,
}

/// What rolling the action back does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reversibility {
    /// Undo restores the recorded pre-state exactly.
    Restores,
    /// The action only creates evidence (snapshots, captures); undo keeps it on purpose.
    KeepsEvidence,
    /// The action changes nothing that can be put back (a sent notification).
    NothingToUndo,
    /// The action destroys state that cannot be recreated; always approval-gated.
    Irreversible,
}

/// The closed action set. Serialized as `action: <kebab-name>` plus `with: {params}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, strum::EnumDiscriminants)]
#[serde(tag = "action", content = "with", rename_all = "kebab-case")]
#[strum_discriminants(
    name(ActionKind),
    derive(
        Hash,
        PartialOrd,
        Ord,
        Serialize,
        Deserialize,
        JsonSchema,
        strum::Display,
        strum::EnumString,
        strum::VariantNames,
        strum::EnumIter
    ),
    serde(rename_all = "kebab-case"),
    strum(serialize_all = "kebab-case")
)]
pub enum Action {
    /// Tag the instance (and its volumes and ENIs) with the case id and finding.
    TagResource(TagResource),
    /// Keep the instance and its disks for forensics: no API termination, stop on shutdown,
    /// keep EBS volumes when the instance goes.
    EnableTerminationProtection(EnableTerminationProtection),
    /// Move every ENI to an allow-all group (cutting tracked connections), then to the
    /// per-VPC isolation group with no ingress and no egress.
    IsolateInstance(IsolateInstance),
    /// Snapshot every attached EBS volume, tagged with the case.
    SnapshotVolumes(SnapshotVolumes),
    /// Disassociate the instance profile so no new role credentials reach the instance.
    DetachInstanceProfile(DetachInstanceProfile),
    /// Invalidate every session of a role issued before now (inline deny on token issue time).
    RevokeRoleSessions(RevokeRoleSessions),
    /// Detach the instance from its Auto Scaling group so it is not replaced or terminated.
    DetachFromAutoscaling(DetachFromAutoscaling),
    /// Deregister the instance from every load balancer target group.
    DeregisterFromLoadBalancers(DeregisterFromLoadBalancers),
    /// Deactivate exactly the access key the finding names.
    DeactivateAccessKey(DeactivateAccessKey),
    /// Create a replacement key and put it straight into Secrets Manager.
    RotateAccessKey(RotateAccessKey),
    /// Attach an explicit deny-all inline policy to the user.
    QuarantineUser(QuarantineUser),
    /// Delete the user's console password (login profile). Irreversible.
    DeleteLoginProfile(DeleteLoginProfile),
    /// Record the instance's full description as evidence.
    CaptureInstanceMetadata(CaptureInstanceMetadata),
    /// Record the instance's console output as evidence.
    CaptureConsoleOutput(CaptureConsoleOutput),
    /// Start or reuse an Amazon Detective investigation and store its indicators.
    EnrichWithDetective(EnrichWithDetective),
    /// Store everything the case produced in the evidence bucket.
    StoreEvidence(StoreEvidence),
    /// Tell the responders: a message on an SNS topic.
    Notify(Notify),
}

fn yes() -> bool {
    true
}

/// Tags to put on the instance and, optionally, on its volumes and ENIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TagResource {
    /// Tag keys and values. Values may use `{case_id}`, `{finding_id}`, `{finding_type}`,
    /// `{severity}` and `{playbook}`, filled in at plan time.
    #[serde(default = "default_case_tags")]
    pub tags: BTreeMap<String, String>,
    /// Tag the instance's EBS volumes too.
    #[serde(default = "yes")]
    pub include_volumes: bool,
    /// Tag the instance's network interfaces too.
    #[serde(default = "yes")]
    pub include_network_interfaces: bool,
}

fn default_case_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cordon:case-id".to_string(), "{case_id}".to_string()),
        ("cordon:finding-id".to_string(), "{finding_id}".to_string()),
    ])
}

impl Default for TagResource {
    fn default() -> Self {
        Self {
            tags: default_case_tags(),
            include_volumes: true,
            include_network_interfaces: true,
        }
    }
}

/// Preserve the instance and its disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnableTerminationProtection {
    /// Set `InstanceInitiatedShutdownBehavior=stop` so a shutdown from inside keeps the instance.
    #[serde(default = "yes")]
    pub stop_on_shutdown: bool,
    /// Set `DeleteOnTermination=false` on every EBS mapping.
    #[serde(default = "yes")]
    pub keep_volumes: bool,
}

impl Default for EnableTerminationProtection {
    fn default() -> Self {
        Self {
            stop_on_shutdown: true,
            keep_volumes: true,
        }
    }
}

/// Network isolation of every ENI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IsolateInstance {
    /// Name of the per-VPC isolation group (found by name and tag, created if absent).
    #[serde(default = "default_isolation_group")]
    pub isolation_group_name: String,
    /// Pass through an allow-all group first so tracked connections are cut.
    /// Turn off only when the instance must keep no transient allow-all exposure.
    #[serde(default = "yes")]
    pub cut_tracked_connections: bool,
}

fn default_isolation_group() -> String {
    "cordon-isolation".to_string()
}

impl Default for IsolateInstance {
    fn default() -> Self {
        Self {
            isolation_group_name: default_isolation_group(),
            cut_tracked_connections: true,
        }
    }
}

/// EBS snapshots of every attached volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnapshotVolumes {
    /// Wait until every snapshot is `completed` before the step counts as done.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait for completion, in seconds (when `wait` is on).
    #[serde(default)]
    pub wait_timeout_seconds: Option<u64>,
    /// Delete the snapshots on rollback. Off by default: snapshots are evidence,
    /// and rolling back containment must not destroy it.
    #[serde(default)]
    pub delete_on_rollback: bool,
}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DetachInstanceProfile {}

/// Session revocation for a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RevokeRoleSessions {
    /// Name of the inline deny policy put on the role.
    #[serde(default = "default_revoke_policy")]
    pub policy_name: String,
}

fn default_revoke_policy() -> String {
    "AWSRevokeOlderSessions".to_string()
}

impl Default for RevokeRoleSessions {
    fn default() -> Self {
        Self {
            policy_name: default_revoke_policy(),
        }
    }
}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DetachFromAutoscaling {}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeregisterFromLoadBalancers {}

/// No parameters: the key is the one the finding names, never any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeactivateAccessKey {}

/// What to do when the user already has two keys (IAM's hard limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WhenTwoKeys {
    /// Refuse to rotate, changing nothing.
    #[default]
    Refuse,
    /// Delete the user's other key if, and only if, it is inactive. Irreversible: approval-gated.
    DeleteInactiveOther,
}

/// Key rotation into Secrets Manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RotateAccessKey {
    /// Prefix of the secret's name; the case id and user name follow.
    #[serde(default = "default_secret_prefix")]
    pub secret_name_prefix: String,
    /// KMS key (id, ARN or alias) encrypting the secret; the account's default key when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// What to do when the user already has two keys.
    #[serde(default)]
    pub when_two_keys: WhenTwoKeys,
}

fn default_secret_prefix() -> String {
    "cordon/rotated-keys/".to_string()
}

impl Default for RotateAccessKey {
    fn default() -> Self {
        Self {
            secret_name_prefix: default_secret_prefix(),
            kms_key_id: None,
            when_two_keys: WhenTwoKeys::Refuse,
        }
    }
}

/// Deny-all for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuarantineUser {
    /// Name of the inline deny-all policy.
    #[serde(default = "default_quarantine_policy")]
    pub policy_name: String,
}

fn default_quarantine_policy() -> String {
    "CordonQuarantineDenyAll".to_string()
}

impl Default for QuarantineUser {
    fn default() -> Self {
        Self {
            policy_name: default_quarantine_policy(),
        }
    }
}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeleteLoginProfile {}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureInstanceMetadata {}

/// Console output capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureConsoleOutput {
    /// Ask for the latest output (Nitro instances) rather than the last buffered one.
    #[serde(default)]
    pub latest: bool,
}

/// Detective enrichment; best effort, never blocks containment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnrichWithDetective {
    /// Hours before the finding's first event to include in the investigation scope.
    #[serde(default = "default_lookback_hours")]
    pub lookback_hours: u32,
    /// How long to poll the investigation, in seconds.
    #[serde(default = "default_detective_timeout")]
    pub timeout_seconds: u64,
}

fn default_lookback_hours() -> u32 {
    24
}

fn default_detective_timeout() -> u64 {
    120
}

impl Default for EnrichWithDetective {
    fn default() -> Self {
        Self {
            lookback_hours: default_lookback_hours(),
            timeout_seconds: default_detective_timeout(),
        }
    }
}

/// Evidence upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreEvidence {
    /// Evidence bucket; the run's configured bucket when absent.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Key prefix; the case id follows.
    #[serde(default = "default_evidence_prefix")]
    pub prefix: String,
}

fn default_evidence_prefix() -> String {
    "cases/".to_string()
}

impl Default for StoreEvidence {
    fn default() -> Self {
        Self {
            bucket: None,
            prefix: default_evidence_prefix(),
        }
    }
}

/// A message to responders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Notify {
    /// SNS topic ARN; the run's configured topic when absent.
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// Subject line; may use the same placeholders as tags.
    #[serde(default = "default_notify_subject")]
    pub subject: String,
}

fn default_notify_subject() -> String {
    "cordon: {finding_type} (severity {severity}) on case {case_id}".to_string()
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            topic_arn: None,
            subject: default_notify_subject(),
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        ActionKind::from(self)
    }

    /// Builds an action from its name and its `with:` parameters (absent ⇒ defaults).
    pub fn from_parts(
        kind: ActionKind,
        with: Option<serde_json::Value>,
    ) -> Result<Self, serde_json::Error> {
        let with = with.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        serde_json::from_value(serde_json::json!({ "action": kind.to_string(), "with": with }))
    }
}

impl ActionKind {
    /// What the action needs resolved from the finding.
    pub fn target_kind(self) -> TargetKind {
        use ActionKind::*;
        match self {
            TagResource
            | EnableTerminationProtection
            | IsolateInstance
            | SnapshotVolumes
            | DetachInstanceProfile
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | CaptureInstanceMetadata
            | CaptureConsoleOutput => TargetKind::Instance,
            DeactivateAccessKey | RotateAccessKey => TargetKind::AccessKey,
            QuarantineUser | DeleteLoginProfile => TargetKind::User,
            RevokeRoleSessions => TargetKind::Role,
            EnrichWithDetective | StoreEvidence | Notify => TargetKind::Case,
        }
    }

    /// The IAM permissions the action needs, least privilege. Infra's policy is
    /// generated from these lists.
    pub fn permissions(self) -> &'static [&'static str] {
        use ActionKind::*;
        match self {
            TagResource => &[
                "ec2:DescribeInstances",
                "ec2:DescribeTags",
                "ec2:CreateTags",
                "ec2:DeleteTags",
            ],
            EnableTerminationProtection => &[
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceAttribute",
                "ec2:ModifyInstanceAttribute",
            ],
            IsolateInstance => &[
                "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:CreateSecurityGroup",
                "ec2:CreateTags",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:ModifyNetworkInterfaceAttribute",
            ],
            SnapshotVolumes => &[
                "ec2:DescribeInstances",
                "ec2:DescribeVolumes",
                "ec2:DescribeSnapshots",
                "ec2:CreateSnapshot",
                "ec2:CreateTags",
                "ec2:DeleteSnapshot",
            ],
            DetachInstanceProfile => &[
                "ec2:DescribeIamInstanceProfileAssociations",
                "ec2:DisassociateIamInstanceProfile",
                "ec2:AssociateIamInstanceProfile",
                "iam:PassRole",
            ],
            RevokeRoleSessions => &[
                "ec2:DescribeIamInstanceProfileAssociations",
                "iam:GetInstanceProfile",
                "iam:GetRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
            ],
            DetachFromAutoscaling => &[
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DetachInstances",
                "autoscaling:AttachInstances",
                // Rollback frees a slot before re-attaching, then restores capacity and protection.
                "autoscaling:UpdateAutoScalingGroup",
                "autoscaling:SetInstanceProtection",
                "ec2:DescribeInstances",
            ],
            DeregisterFromLoadBalancers => &[
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DeregisterTargets",
                "elasticloadbalancing:RegisterTargets",
            ],
            DeactivateAccessKey => &[
                "iam:ListAccessKeys",
                "iam:GetAccessKeyLastUsed",
                "iam:UpdateAccessKey",
            ],
            RotateAccessKey => &[
                "iam:ListAccessKeys",
                "iam:CreateAccessKey",
                "iam:DeleteAccessKey",
                "secretsmanager:CreateSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:TagResource",
                "kms:GenerateDataKey",
                "kms:Encrypt",
            ],
            QuarantineUser => &[
                "iam:GetUserPolicy",
                "iam:PutUserPolicy",
                "iam:DeleteUserPolicy",
            ],
            DeleteLoginProfile => &["iam:GetLoginProfile", "iam:DeleteLoginProfile"],
            CaptureInstanceMetadata => &[
                "ec2:DescribeInstances",
                "ec2:DescribeVolumes",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
            ],
            CaptureConsoleOutput => &["ec2:GetConsoleOutput"],
            EnrichWithDetective => &[
                "detective:ListGraphs",
                "detective:ListInvestigations",
                "detective:StartInvestigation",
                "detective:GetInvestigation",
                "detective:ListIndicators",
                // The role behind an instance finding comes from its instance profile.
                "ec2:DescribeIamInstanceProfileAssociations",
                "iam:GetInstanceProfile",
            ],
            StoreEvidence => &[
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "kms:GenerateDataKey",
                "kms:Decrypt",
            ],
            Notify => &["sns:Publish"],
        }
    }

    /// Whether the step needs approval even when the playbook does not ask for it.
    /// Returns the reason shown to the approver.
    pub fn inherent_approval(self) -> Option<&'static str> {
        use ActionKind::*;
        match self {
            RevokeRoleSessions => Some(
                "revokes every session of the role issued before now, including other instances and users sharing it",
            ),
            DeleteLoginProfile => {
                Some("deletes the console password: it cannot be restored, only reset")
            }
            TagResource
            | EnableTerminationProtection
            | IsolateInstance
            | SnapshotVolumes
            | DetachInstanceProfile
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | DeactivateAccessKey
            | RotateAccessKey
            | QuarantineUser
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence
            | Notify => None,
        }
    }

    pub fn reversibility(self) -> Reversibility {
        use ActionKind::*;
        match self {
            TagResource
            | EnableTerminationProtection
            | IsolateInstance
            | DetachInstanceProfile
            | RevokeRoleSessions
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | DeactivateAccessKey
            | RotateAccessKey
            | QuarantineUser => Reversibility::Restores,
            SnapshotVolumes
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence => Reversibility::KeepsEvidence,
            Notify => Reversibility::NothingToUndo,
            DeleteLoginProfile => Reversibility::Irreversible,
        }
    }

    /// Best-effort steps record their failure and never stop containment.
    pub fn best_effort(self) -> bool {
        use ActionKind::*;
        match self {
            EnrichWithDetective => true,
            TagResource
            | EnableTerminationProtection
            | IsolateInstance
            | SnapshotVolumes
            | DetachInstanceProfile
            | RevokeRoleSessions
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | DeactivateAccessKey
            | RotateAccessKey
            | QuarantineUser
            | DeleteLoginProfile
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | StoreEvidence
            | Notify => false,
        }
    }
}

impl Action {
    /// Irreversible once parameters are considered (e.g. rotation allowed to delete a key).
    pub fn reversibility(&self) -> Reversibility {
        match self {
            Action::RotateAccessKey(p) if p.when_two_keys == WhenTwoKeys::DeleteInactiveOther => {
                Reversibility::Irreversible
            }
            other => other.kind().reversibility(),
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_action_declares_permissions() {
        for kind in ActionKind::iter() {
            assert!(
                !kind.permissions().is_empty(),
                "{kind} lists no IAM permissions"
            );
        }
    }

    #[test]
    fn every_action_builds_from_defaults_and_round_trips() {
        for kind in ActionKind::iter() {
            let action = Action::from_parts(kind, None).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(action.kind(), kind);
            let json = serde_json::to_value(&action).unwrap();
            assert_eq!(json["action"], kind.to_string());
            let back: Action = serde_json::from_value(json).unwrap();
            assert_eq!(back, action);
        }
    }

    #[test]
    fn unknown_parameter_is_rejected() {
        let err = Action::from_parts(
            ActionKind::IsolateInstance,
            Some(serde_json::json!({"isolation-group": "x"})),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `isolation-group`"),
            "{err}"
        );
    }
}
