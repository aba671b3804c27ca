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
    /// An S3 bucket.
    Bucket,
    /// A VPC security group.
    SecurityGroup,
    /// An EBS snapshot.
    Snapshot,
    /// An AWS account in one region (account-level Config evaluations).
    Account,
}

/// What rolling the action back does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// Invalidate every temporary-credential session of an IAM user issued before now
    /// (`GetSessionToken` credentials, console sessions): inline deny on token issue time.
    RevokeUserSessions(RevokeUserSessions),
    /// Detach the instance from its Auto Scaling group so it is not replaced or terminated.
    DetachFromAutoscaling(DetachFromAutoscaling),
    /// Deregister the instance from every load balancer target group.
    DeregisterFromLoadBalancers(DeregisterFromLoadBalancers),
    /// Deactivate exactly the access key the finding names.
    DeactivateAccessKey(DeactivateAccessKey),
    /// Create a replacement key and put it straight into Secrets Manager.
    RotateAccessKey(RotateAccessKey),
    /// Attach cordon's managed deny-all policy (`/cordon/CordonQuarantineDenyAll`) to the user.
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
    /// Require IMDSv2 session tokens on the instance (`HttpTokens=required`), keeping
    /// its hop limit, endpoint state, IPv6 endpoint and tag access as they were.
    EnforceImdsv2(EnforceImdsv2),
    /// Turn on all four settings of the bucket's own public access block; the
    /// account-level block is left alone.
    BlockBucketPublicAccess(BlockBucketPublicAccess),
    /// Revoke the security group's ingress open to the whole internet
    /// (`0.0.0.0/0`, `::/0`) on the named ports, recording each rule exactly.
    /// Undo re-opens them, so it needs explicit approval.
    RevokeOpenIngress(RevokeOpenIngress),
    /// Remove the public (`all`) volume-creation permission from the snapshot;
    /// accounts it is shared with by id keep theirs.
    MakeSnapshotPrivate(MakeSnapshotPrivate),
    /// Remove the public (`all`) volume-creation permission from every
    /// snapshot the account owns in the region, up to `max-snapshots` (more
    /// refuses before any change); accounts shared with by id keep theirs.
    MakeAccountSnapshotsPrivate(MakeAccountSnapshotsPrivate),
    /// Acquire the instance's volatile memory through SSM Run Command, the
    /// image streamed by the host to the evidence bucket through a presigned
    /// PUT of one key; cordon hashes it by reading it back from S3.
    CaptureMemory(CaptureMemory),
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

/// Session revocation for an IAM user's temporary credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RevokeUserSessions {
    /// Name of the inline deny policy put on the user.
    #[serde(default = "default_revoke_policy")]
    pub policy_name: String,
}

impl Default for RevokeUserSessions {
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
    /// Name of the managed deny-all policy to attach, under the IAM path `/cordon/`
    /// of the finding's account (create it once from `cordon policy --quarantine-policy`).
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
    /// Fail the step (and apply `on-failure`) when no topic is configured.
    /// By default such a step is journaled as skipped, with a warning: a
    /// missing pager must not undo containment. Written only when set, so
    /// plans and journals without it read and hash as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

fn default_notify_subject() -> String {
    "cordon: {finding_type} (severity {severity}) on case {case_id}".to_string()
}

/// No parameters: every metadata option but `HttpTokens` keeps its value, so an
/// instance whose containers need a hop limit of 2 keeps working with tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnforceImdsv2 {}

/// No parameters: all four settings (`BlockPublicAcls`, `IgnorePublicAcls`,
/// `BlockPublicPolicy`, `RestrictPublicBuckets`) are turned on, as AWS Config's
/// `s3-bucket-level-public-access-prohibited` rule checks by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BlockBucketPublicAccess {}

/// The ports whose world-open ingress is revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RevokeOpenIngress {
    /// A world-open rule is revoked when it lets any of these ports in (TCP
    /// or UDP with the port in its range, or all traffic). SSH and RDP by
    /// default, as AWS Config's `restricted-ssh` and `restricted-common-ports`.
    #[serde(default = "default_open_ports")]
    pub ports: Vec<u16>,
}

fn default_open_ports() -> Vec<u16> {
    vec![22, 3389]
}

impl Default for RevokeOpenIngress {
    fn default() -> Self {
        Self {
            ports: default_open_ports(),
        }
    }
}

/// No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MakeSnapshotPrivate {}

/// The account-wide sweep of public snapshots, bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MakeAccountSnapshotsPrivate {
    /// The most public snapshots the step changes. More than this refuses
    /// the step before any change (a blast-radius guard: a responder looks
    /// at so many public snapshots first, then raises this or acts by hand).
    #[serde(default = "default_max_snapshots")]
    pub max_snapshots: u32,
}

fn default_max_snapshots() -> u32 {
    50
}

impl Default for MakeAccountSnapshotsPrivate {
    fn default() -> Self {
        Self {
            max_snapshots: default_max_snapshots(),
        }
    }
}

/// Where the upload URL goes in a memory acquisition command.
pub const UPLOAD_URL_PLACEHOLDER: &str = "{upload_url}";

/// Memory acquisition on the instance (SSM agent required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureMemory {
    /// The shell command (`AWS-RunShellScript`) that acquires memory and PUTs
    /// the image to `{upload_url}`, a presigned URL valid for one key of the
    /// evidence bucket only; the host gets no credentials. AVML by default.
    #[serde(default = "default_memory_command")]
    pub command: String,
    /// How long cordon waits for the acquisition, in seconds, from the moment
    /// the command is sent; also how long the upload URL is valid. Past it
    /// the step fails, and steps that need it run anyway under
    /// `on-failure: continue`: containment is never blocked on evidence.
    #[serde(default = "default_memory_budget")]
    pub time_budget_seconds: u64,
}

fn default_memory_command() -> String {
    "avml --compress --delete --url '{upload_url}' /var/tmp/cordon-memory.lime".to_string()
}

fn default_memory_budget() -> u64 {
    1800
}

impl Default for CaptureMemory {
    fn default() -> Self {
        Self {
            command: default_memory_command(),
            time_budget_seconds: default_memory_budget(),
        }
    }
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            topic_arn: None,
            subject: default_notify_subject(),
            required: false,
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
            | CaptureConsoleOutput
            | EnforceImdsv2
            | CaptureMemory => TargetKind::Instance,
            DeactivateAccessKey | RotateAccessKey => TargetKind::AccessKey,
            QuarantineUser | DeleteLoginProfile | RevokeUserSessions => TargetKind::User,
            RevokeRoleSessions => TargetKind::Role,
            EnrichWithDetective | StoreEvidence | Notify => TargetKind::Case,
            BlockBucketPublicAccess => TargetKind::Bucket,
            RevokeOpenIngress => TargetKind::SecurityGroup,
            MakeSnapshotPrivate => TargetKind::Snapshot,
            MakeAccountSnapshotsPrivate => TargetKind::Account,
        }
    }

    /// The IAM actions of the calls this action's handler makes (pre-state,
    /// apply, verify, undo, verify-undone), for every parameter value: the
    /// superset [`Action::permissions`] narrows by parameters. Permissions AWS
    /// checks without a call of that name are in [`IMPLIED_PERMISSIONS`];
    /// `cordon policy` (see [`crate::policy`]) grants both.
    ///
    /// Evidence writers list the S3 calls of the deployed evidence store
    /// (`s3:PutObject`, and `s3:GetObject`/`s3:GetObjectVersion` where verify
    /// re-reads a versioned object); a local evidence directory needs none.
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
                // Only with `delete-on-rollback: true` (see `Action::permissions`).
                "ec2:DeleteSnapshot",
            ],
            DetachInstanceProfile => &[
                "ec2:DescribeIamInstanceProfileAssociations",
                "ec2:DisassociateIamInstanceProfile",
                "ec2:AssociateIamInstanceProfile",
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
                // Undo deletes the new key; `delete-inactive-other` deletes the old one.
                "iam:DeleteAccessKey",
                "secretsmanager:CreateSecret",
                "secretsmanager:DescribeSecret",
                "secretsmanager:DeleteSecret",
            ],
            QuarantineUser => &[
                "iam:ListAttachedUserPolicies",
                // Limited to cordon's managed deny policy by `iam:PolicyARN` (`cordon policy`).
                "iam:AttachUserPolicy",
                "iam:DetachUserPolicy",
                // Rolling back a journal of the versions that wrote an inline policy.
                "iam:GetUserPolicy",
                "iam:DeleteUserPolicy",
            ],
            RevokeUserSessions => &[
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
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
            ],
            CaptureConsoleOutput => &[
                "ec2:GetConsoleOutput",
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
            ],
            EnrichWithDetective => &[
                "detective:ListGraphs",
                "detective:ListInvestigations",
                "detective:StartInvestigation",
                "detective:GetInvestigation",
                "detective:ListIndicators",
                // The role behind an instance finding comes from its instance profile.
                "iam:GetInstanceProfile",
                "s3:PutObject",
            ],
            StoreEvidence => &[
                "s3:ListBucketVersions",
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
            ],
            Notify => &["sns:GetTopicAttributes", "sns:Publish"],
            EnforceImdsv2 => &["ec2:DescribeInstances", "ec2:ModifyInstanceMetadataOptions"],
            // DeletePublicAccessBlock (undo where the bucket had none) is
            // authorized as s3:PutBucketPublicAccessBlock.
            BlockBucketPublicAccess => &[
                "s3:GetBucketPublicAccessBlock",
                "s3:PutBucketPublicAccessBlock",
            ],
            RevokeOpenIngress => &[
                "ec2:DescribeSecurityGroups",
                "ec2:RevokeSecurityGroupIngress",
                // Undo, approval-gated: the recorded rules authorized again.
                "ec2:AuthorizeSecurityGroupIngress",
            ],
            MakeSnapshotPrivate => &[
                "ec2:DescribeSnapshotAttribute",
                "ec2:ModifySnapshotAttribute",
            ],
            MakeAccountSnapshotsPrivate => &[
                "ec2:DescribeSnapshots",
                "ec2:DescribeSnapshotAttribute",
                "ec2:ModifySnapshotAttribute",
            ],
            CaptureMemory => &[
                // Presigning the host's upload: S3 authorizes that PUT as
                // cordon, for the one key the URL names.
                "s3:PutObject",
                "ssm:SendCommand",
                "ssm:GetCommandInvocation",
                // Finding a command sent by an attempt (or a crashed run)
                // that never heard the answer, before sending another.
                "ssm:ListCommands",
                // Stopping an acquisition still running past its budget.
                "ssm:CancelCommand",
                // Reading the image back to hash it, then its version to verify.
                "s3:GetObject",
                "s3:GetObjectVersion",
            ],
        }
    }

    /// The rows of [`IMPLIED_PERMISSIONS`] that apply to this action, for any
    /// parameter value ([`Action::implied_permissions`] narrows by parameters).
    pub fn implied_permissions(self) -> impl Iterator<Item = &'static ImpliedPermission> {
        IMPLIED_PERMISSIONS
            .iter()
            .filter(move |row| row.actions.contains(&self))
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
            | RevokeUserSessions
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence
            | Notify
            | EnforceImdsv2
            | BlockBucketPublicAccess
            | RevokeOpenIngress
            | MakeSnapshotPrivate
            | MakeAccountSnapshotsPrivate
            | CaptureMemory => None,
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
            | QuarantineUser
            | RevokeUserSessions
            | EnforceImdsv2
            | BlockBucketPublicAccess
            | RevokeOpenIngress
            | MakeSnapshotPrivate
            | MakeAccountSnapshotsPrivate => Reversibility::Restores,
            SnapshotVolumes
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence
            | CaptureMemory => Reversibility::KeepsEvidence,
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
            | RevokeUserSessions
            | DeleteLoginProfile
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | StoreEvidence
            | Notify
            | EnforceImdsv2
            | BlockBucketPublicAccess
            | RevokeOpenIngress
            | MakeSnapshotPrivate
            | MakeAccountSnapshotsPrivate
            | CaptureMemory => false,
        }
    }

    /// Whether the action contains the threat (cuts it off) rather than keeping
    /// evidence or informing people. Time to contain runs from the case being
    /// opened to the verification of its last containing step.
    pub fn contains(self) -> bool {
        use ActionKind::*;
        match self {
            IsolateInstance
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | DetachInstanceProfile
            | RevokeRoleSessions
            | RevokeUserSessions
            | DeactivateAccessKey
            | QuarantineUser
            | DeleteLoginProfile
            | EnforceImdsv2
            | BlockBucketPublicAccess
            | RevokeOpenIngress
            | MakeSnapshotPrivate
            | MakeAccountSnapshotsPrivate => true,
            TagResource
            | EnableTerminationProtection
            | SnapshotVolumes
            | RotateAccessKey
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence
            | Notify
            | CaptureMemory => false,
        }
    }

    /// Whether the action preserves evidence (snapshots, captures, the
    /// evidence store). Time to evidence complete, in Game Day scorecards,
    /// runs from the case being opened to the verification of its last
    /// evidence step.
    pub fn preserves_evidence(self) -> bool {
        use ActionKind::*;
        match self {
            SnapshotVolumes
            | CaptureInstanceMetadata
            | CaptureConsoleOutput
            | EnrichWithDetective
            | StoreEvidence
            | CaptureMemory => true,
            IsolateInstance
            | DetachFromAutoscaling
            | DeregisterFromLoadBalancers
            | DetachInstanceProfile
            | RevokeRoleSessions
            | RevokeUserSessions
            | DeactivateAccessKey
            | QuarantineUser
            | DeleteLoginProfile
            | TagResource
            | EnableTerminationProtection
            | RotateAccessKey
            | Notify
            | EnforceImdsv2
            | BlockBucketPublicAccess
            | RevokeOpenIngress
            | MakeSnapshotPrivate
            | MakeAccountSnapshotsPrivate => false,
        }
    }
}

/// Why undoing a step needs a human's explicit approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoGate {
    /// The undo re-arms compromised credentials (reactivates a key, lifts a
    /// session revocation or a quarantine). An automatic rollback keeps it in place.
    Credentials(&'static str),
    /// The undo deletes evidence.
    Evidence(&'static str),
    /// The undo re-opens a resource to the whole internet (a revoked
    /// world-open ingress rule, a bucket's public access block, a public
    /// snapshot). Like credentials, an automatic rollback keeps the
    /// containment in place.
    Exposure(&'static str),
}

impl UndoGate {
    /// What the undo would do, for the approver.
    pub fn reason(self) -> &'static str {
        match self {
            UndoGate::Credentials(reason)
            | UndoGate::Evidence(reason)
            | UndoGate::Exposure(reason) => reason,
        }
    }
}

/// When a row of [`IMPLIED_PERMISSIONS`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImpliedWhen {
    /// Whenever the action runs.
    Always,
    /// Only when the step names a customer managed KMS key (`kms-key-id`):
    /// the AWS managed key of a service needs no KMS permission of the caller.
    CustomerKey,
}

/// A permission AWS checks on cordon's behalf although no call of that name is
/// made: the call that carries it is one of the action's own
/// ([`ActionKind::permissions`]), and a call recorder never sees this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpliedPermission {
    /// The IAM action AWS authorizes.
    pub permission: &'static str,
    /// The IAM action of the call that carries it.
    pub carried_by: &'static str,
    /// The cordon actions that make that call.
    pub actions: &'static [ActionKind],
    /// When it applies.
    pub when: ImpliedWhen,
    /// Why AWS asks for it, for `cordon policy --output text` and reviewers.
    pub reason: &'static str,
}

/// Every action writing evidence to the S3 evidence store.
const EVIDENCE_WRITERS: &[ActionKind] = &[
    ActionKind::CaptureMemory,
    ActionKind::CaptureInstanceMetadata,
    ActionKind::CaptureConsoleOutput,
    ActionKind::EnrichWithDetective,
    ActionKind::StoreEvidence,
];

/// Every action reading evidence back from the S3 evidence store (verification re-hashes it).
const EVIDENCE_READERS: &[ActionKind] = &[
    ActionKind::CaptureMemory,
    ActionKind::CaptureInstanceMetadata,
    ActionKind::CaptureConsoleOutput,
    ActionKind::StoreEvidence,
];

/// Permissions no API call shows, each with its reason. Sources: the EC2 user
/// guide "Grant permission to tag resources during creation"
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html>),
/// "Grant permissions to attach an IAM role to an instance"
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/permission-to-pass-iam-roles.html>),
/// S3 "Using server-side encryption with AWS KMS keys"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html>),
/// Secrets Manager "Secret encryption and decryption"
/// (<https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html>)
/// and its CreateSecret reference (tags need `secretsmanager:TagResource`), and
/// SNS "Key management"
/// (<https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html>).
pub const IMPLIED_PERMISSIONS: &[ImpliedPermission] = &[
    ImpliedPermission {
        permission: "ec2:CreateTags",
        carried_by: "ec2:CreateSecurityGroup",
        actions: &[ActionKind::IsolateInstance],
        when: ImpliedWhen::Always,
        reason: "the isolation and untrack groups are created with their `cordon:role` tag \
                 (TagSpecifications); EC2 authorizes ec2:CreateTags for tags applied at creation",
    },
    ImpliedPermission {
        permission: "ec2:CreateTags",
        carried_by: "ec2:CreateSnapshot",
        actions: &[ActionKind::SnapshotVolumes],
        when: ImpliedWhen::Always,
        reason: "snapshots are created tagged with the case (TagSpecifications); EC2 authorizes \
                 ec2:CreateTags for tags applied at creation",
    },
    ImpliedPermission {
        permission: "iam:PassRole",
        carried_by: "ec2:AssociateIamInstanceProfile",
        actions: &[ActionKind::DetachInstanceProfile],
        when: ImpliedWhen::Always,
        reason: "undo associates the instance profile again, which passes its role to EC2",
    },
    ImpliedPermission {
        permission: "secretsmanager:TagResource",
        carried_by: "secretsmanager:CreateSecret",
        actions: &[ActionKind::RotateAccessKey],
        when: ImpliedWhen::Always,
        reason: "the secret is created with its case, user and key tags, which Secrets Manager \
                 authorizes as secretsmanager:TagResource",
    },
    ImpliedPermission {
        permission: "kms:GenerateDataKey",
        carried_by: "secretsmanager:CreateSecret",
        actions: &[ActionKind::RotateAccessKey],
        when: ImpliedWhen::CustomerKey,
        reason: "Secrets Manager asks KMS for a data key under the step's customer key, as the caller",
    },
    ImpliedPermission {
        permission: "kms:Decrypt",
        carried_by: "secretsmanager:CreateSecret",
        actions: &[ActionKind::RotateAccessKey],
        when: ImpliedWhen::CustomerKey,
        reason: "Secrets Manager decrypts the secret's data key under the step's customer key, as the caller",
    },
    ImpliedPermission {
        permission: "kms:GenerateDataKey",
        carried_by: "s3:PutObject",
        actions: EVIDENCE_WRITERS,
        when: ImpliedWhen::Always,
        reason: "the evidence bucket encrypts with SSE-KMS under a customer key: S3 asks KMS \
                 for a data key on the writer's behalf",
    },
    ImpliedPermission {
        permission: "kms:Decrypt",
        carried_by: "s3:GetObject",
        actions: EVIDENCE_READERS,
        when: ImpliedWhen::Always,
        reason: "reading SSE-KMS evidence back to re-hash it makes S3 decrypt its data key on \
                 the reader's behalf",
    },
    ImpliedPermission {
        permission: "kms:GenerateDataKey",
        carried_by: "sns:Publish",
        actions: &[ActionKind::Notify],
        when: ImpliedWhen::Always,
        reason: "an SSE-encrypted responder topic makes SNS ask KMS for a data key on the publisher's behalf",
    },
    ImpliedPermission {
        permission: "kms:Decrypt",
        carried_by: "sns:Publish",
        actions: &[ActionKind::Notify],
        when: ImpliedWhen::Always,
        reason: "an SSE-encrypted responder topic makes SNS decrypt its cached data key on the \
                 publisher's behalf",
    },
];

/// What, outside the actions, a front door (CLI, Lambda) calls AWS for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrontDoor {
    /// Journaling who approved a step.
    Approvals,
    /// Fetching findings from GuardDuty (`run --finding-id`, `triage`).
    Intake,
    /// The S3 journal store (`<prefix><case-id>/journal/` in the evidence bucket).
    S3Journal,
    /// Acting on a finding from another account through a role there.
    CrossAccount,
    /// The blast-radius guards: the protected tag and the pause switch.
    Guards,
    /// Signing each case's evidence manifest (`--evidence-signing-key`);
    /// granted only when `cordon policy` is given that key.
    EvidenceSigning,
    /// Answering a Step Functions approval wait (`cordon approve
    /// --task-token`): the approver's identity only, see [`APPROVER_PERMISSIONS`].
    TaskTokenApprovals,
}

/// A permission a front door needs that no action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontDoorPermission {
    /// The IAM action.
    pub permission: &'static str,
    /// Which part of the front door needs it.
    pub door: FrontDoor,
    /// Why.
    pub reason: &'static str,
}

/// What the approver's own identity needs for `cordon approve CASE STEP
/// --task-token TOKEN --journal s3://…`: who it is, the case's S3 journal,
/// and answering the waiting execution. Deliberately apart from
/// [`FRONT_DOOR_PERMISSIONS`] (the role policy of cordon's role, the
/// Lambda's included): a role that could SendTaskSuccess could approve its
/// own approval waits.
pub const APPROVER_PERMISSIONS: &[FrontDoorPermission] = &[
    FrontDoorPermission {
        permission: "sts:GetCallerIdentity",
        door: FrontDoor::Approvals,
        reason: "the approver's identity is journaled with the decision",
    },
    FrontDoorPermission {
        permission: "s3:ListBucket",
        door: FrontDoor::S3Journal,
        reason: "lists the case's journal records",
    },
    FrontDoorPermission {
        permission: "s3:GetObject",
        door: FrontDoor::S3Journal,
        reason: "reads the case's journal records and lease",
    },
    FrontDoorPermission {
        permission: "s3:PutObject",
        door: FrontDoor::S3Journal,
        reason: "journals the decision (conditional create) under the case's lease",
    },
    FrontDoorPermission {
        permission: "kms:GenerateDataKey",
        door: FrontDoor::S3Journal,
        reason: "journal records are SSE-KMS encrypted",
    },
    FrontDoorPermission {
        permission: "kms:Decrypt",
        door: FrontDoor::S3Journal,
        reason: "reading SSE-KMS journal records back",
    },
    FrontDoorPermission {
        permission: "states:SendTaskSuccess",
        door: FrontDoor::TaskTokenApprovals,
        reason: "resumes the execution waiting in `Approve STEP` once the approval is journaled",
    },
    FrontDoorPermission {
        permission: "states:SendTaskFailure",
        door: FrontDoor::TaskTokenApprovals,
        reason: "ends the wait with Cordon.ApprovalRefused once the refusal is journaled",
    },
];

/// The front doors' own permissions: documented here so `cordon policy`
/// grants them next to the actions', and nothing else.
pub const FRONT_DOOR_PERMISSIONS: &[FrontDoorPermission] = &[
    FrontDoorPermission {
        permission: "sts:GetCallerIdentity",
        door: FrontDoor::Approvals,
        reason: "the approver's identity is journaled with every approval",
    },
    FrontDoorPermission {
        permission: "sts:AssumeRole",
        door: FrontDoor::CrossAccount,
        reason: "acts on a finding from another account through the responder role there",
    },
    FrontDoorPermission {
        permission: "iam:ListUserTags",
        door: FrontDoor::Guards,
        reason: "reads the protected tag of a user a step would touch",
    },
    FrontDoorPermission {
        permission: "iam:ListRoleTags",
        door: FrontDoor::Guards,
        reason: "reads the protected tag of a role a step would touch",
    },
    FrontDoorPermission {
        permission: "ssm:GetParameter",
        door: FrontDoor::Guards,
        reason: "reads the pause switch (--pause-parameter) before every step",
    },
    FrontDoorPermission {
        permission: "guardduty:ListDetectors",
        door: FrontDoor::Intake,
        reason: "finds the region's detector when none is given",
    },
    FrontDoorPermission {
        permission: "guardduty:GetFindings",
        door: FrontDoor::Intake,
        reason: "fetches a finding by id, kept byte for byte as evidence",
    },
    FrontDoorPermission {
        permission: "guardduty:ListFindings",
        door: FrontDoor::Intake,
        reason: "lists open findings for `cordon triage`",
    },
    FrontDoorPermission {
        permission: "s3:ListBucket",
        door: FrontDoor::S3Journal,
        reason: "lists a case's journal records and the cases under the journal prefix",
    },
    FrontDoorPermission {
        permission: "s3:GetObject",
        door: FrontDoor::S3Journal,
        reason: "reads journal records and the case's lease",
    },
    FrontDoorPermission {
        permission: "s3:PutObject",
        door: FrontDoor::S3Journal,
        reason: "appends journal records (conditional create, If-None-Match); takes, extends and releases the case's lease (If-None-Match, If-Match)",
    },
    FrontDoorPermission {
        permission: "kms:GenerateDataKey",
        door: FrontDoor::S3Journal,
        reason: "journal records are SSE-KMS encrypted like the evidence beside them",
    },
    FrontDoorPermission {
        permission: "kms:Decrypt",
        door: FrontDoor::S3Journal,
        reason: "reading SSE-KMS journal records back",
    },
    FrontDoorPermission {
        permission: "kms:Sign",
        door: FrontDoor::EvidenceSigning,
        reason: "signs each case's evidence manifest (ECDSA_SHA_256 over its digest) with --evidence-signing-key",
    },
];

impl Action {
    /// The IAM actions of the calls this step can make with its parameters:
    /// [`ActionKind::permissions`] without the calls its parameters rule out,
    /// and without the instance-profile lookups when the step never meets an
    /// instance finding (`instance_findings`: its playbook's `resource-types`
    /// allow `Instance`): only an instance's role is found through its profile.
    pub fn permissions(&self, instance_findings: bool) -> Vec<&'static str> {
        let instance_only: &[&str] = match self.kind() {
            ActionKind::RevokeRoleSessions => &[
                "ec2:DescribeIamInstanceProfileAssociations",
                "iam:GetInstanceProfile",
            ],
            ActionKind::EnrichWithDetective => &["iam:GetInstanceProfile"],
            _ => &[],
        };
        let deletes_snapshots = match self {
            Action::SnapshotVolumes(p) => p.delete_on_rollback,
            _ => true,
        };
        self.kind()
            .permissions()
            .iter()
            .copied()
            .filter(|p| instance_findings || !instance_only.contains(p))
            .filter(|p| deletes_snapshots || *p != "ec2:DeleteSnapshot")
            .collect()
    }

    /// The implied permissions this step needs with its parameters.
    pub fn implied_permissions(&self) -> Vec<&'static ImpliedPermission> {
        let customer_key = match self {
            Action::RotateAccessKey(p) => p.kms_key_id.is_some(),
            _ => false,
        };
        self.kind()
            .implied_permissions()
            .filter(|row| row.when == ImpliedWhen::Always || customer_key)
            .collect()
    }
}

impl Action {
    /// Irreversible once parameters are considered (e.g. rotation allowed to
    /// delete a key, snapshots deleted again on rollback).
    pub fn reversibility(&self) -> Reversibility {
        match self {
            Action::RotateAccessKey(p) if p.when_two_keys == WhenTwoKeys::DeleteInactiveOther => {
                Reversibility::Irreversible
            }
            Action::SnapshotVolumes(p) if p.delete_on_rollback => Reversibility::Irreversible,
            other => other.kind().reversibility(),
        }
    }

    /// Whether undoing this step needs explicit approval, and why. Rollback asks
    /// for it (`cordon rollback CASE --approve-undo STEP`); an automatic rollback
    /// after a failure never undoes such a step.
    pub fn undo_gate(&self) -> Option<UndoGate> {
        match self {
            Action::DeactivateAccessKey(_) => Some(UndoGate::Credentials(
                "reactivates the compromised access key",
            )),
            Action::RevokeRoleSessions(_) => Some(UndoGate::Credentials(
                "lifts the session revocation: credentials issued before it work again",
            )),
            Action::QuarantineUser(_) => Some(UndoGate::Credentials(
                "lifts the quarantine: the user's credentials work again",
            )),
            Action::RevokeUserSessions(_) => Some(UndoGate::Credentials(
                "lifts the session revocation: the user's temporary credentials issued before it work again",
            )),
            Action::RevokeOpenIngress(_) => Some(UndoGate::Exposure(
                "re-opens the revoked ports of the security group to the whole internet",
            )),
            Action::BlockBucketPublicAccess(_) => Some(UndoGate::Exposure(
                "lifts the bucket's public access block: a public policy or ACL exposes its objects again",
            )),
            Action::MakeSnapshotPrivate(_) => Some(UndoGate::Exposure(
                "makes the snapshot public again: anyone can create a volume from it",
            )),
            Action::MakeAccountSnapshotsPrivate(_) => Some(UndoGate::Exposure(
                "makes the account's snapshots the step made private public again: anyone can create volumes from them",
            )),
            Action::SnapshotVolumes(p) if p.delete_on_rollback => Some(UndoGate::Evidence(
                "deletes the snapshots taken as evidence",
            )),
            Action::SnapshotVolumes(_)
            | Action::TagResource(_)
            | Action::EnableTerminationProtection(_)
            | Action::IsolateInstance(_)
            | Action::DetachInstanceProfile(_)
            | Action::DetachFromAutoscaling(_)
            | Action::DeregisterFromLoadBalancers(_)
            | Action::RotateAccessKey(_)
            | Action::DeleteLoginProfile(_)
            | Action::CaptureInstanceMetadata(_)
            | Action::CaptureConsoleOutput(_)
            | Action::EnrichWithDetective(_)
            | Action::StoreEvidence(_)
            | Action::Notify(_)
            | Action::EnforceImdsv2(_)
            | Action::CaptureMemory(_) => None,
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
    fn permission_lists_hold_no_duplicates_or_wildcards() {
        for kind in ActionKind::iter() {
            let mut seen = std::collections::BTreeSet::new();
            for permission in kind.permissions() {
                assert!(seen.insert(permission), "{kind} lists {permission} twice");
                assert!(!permission.contains('*'), "{kind}: {permission}");
            }
        }
    }

    #[test]
    fn every_implied_permission_rides_on_a_call_its_actions_make() {
        for row in IMPLIED_PERMISSIONS {
            assert!(!row.actions.is_empty(), "{row:?}");
            for kind in row.actions {
                assert!(
                    kind.permissions().contains(&row.carried_by),
                    "{kind} does not call {} (implied {})",
                    row.carried_by,
                    row.permission
                );
                assert!(
                    !kind.permissions().contains(&row.permission),
                    "{kind} lists {} as a call of its own and as implied",
                    row.permission
                );
            }
        }
    }

    #[test]
    fn parameters_narrow_permissions() {
        let keep = Action::from_parts(ActionKind::SnapshotVolumes, None).unwrap();
        assert!(!keep.permissions(true).contains(&"ec2:DeleteSnapshot"));
        let delete = Action::from_parts(
            ActionKind::SnapshotVolumes,
            Some(serde_json::json!({"delete-on-rollback": true})),
        )
        .unwrap();
        assert!(delete.permissions(true).contains(&"ec2:DeleteSnapshot"));

        let revoke = Action::from_parts(ActionKind::RevokeRoleSessions, None).unwrap();
        assert!(revoke.permissions(true).contains(&"iam:GetInstanceProfile"));
        assert_eq!(
            revoke.permissions(false),
            [
                "iam:GetRolePolicy",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy"
            ]
        );

        let kms = |action: &Action| -> Vec<&str> {
            action
                .implied_permissions()
                .iter()
                .filter(|row| row.permission.starts_with("kms:"))
                .map(|row| row.permission)
                .collect()
        };
        let managed_key = Action::from_parts(ActionKind::RotateAccessKey, None).unwrap();
        assert!(kms(&managed_key).is_empty());
        let customer_key = Action::from_parts(
            ActionKind::RotateAccessKey,
            Some(serde_json::json!({"kms-key-id": "alias/responders"})),
        )
        .unwrap();
        assert_eq!(kms(&customer_key), ["kms:GenerateDataKey", "kms:Decrypt"]);
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
